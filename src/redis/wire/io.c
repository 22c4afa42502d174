// SPDX-License-Identifier: MIT
/*
 * Bounded I/O on one hiredis context; see io.h.
 */
#include "redis/wire/io.h"

#include "clock.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

/* ---- reply objects with limits ----
 *
 * The reader calls these while it parses; they build the same redisReply
 * objects as hiredis's defaults (so freeReplyObject frees them), but first
 * charge what they allocate to the round trip in progress. The limits reach
 * them through a thread-local pointer: the reader runs on the calling thread
 * inside nori__redis_io_roundtrip, and a context is used by one thread at a
 * time (the pool lends it). */

typedef struct read_budget {
    const nori__redis_limits *lim;
    size_t bytes;    /* string bytes allocated so far */
    size_t elements; /* array elements allocated so far */
    int exceeded;    /* a create function refused (NORI__REDIS_ERR_*), `why` says why */
    char why[128];
} read_budget;

static _Thread_local read_budget *tl_budget;

/* Status and error lines ("+OK", "-WRONGTYPE ...") are no values: a tiny
 * value limit must not refuse them. */
#define MIN_LINE_LIMIT ((size_t)64 * 1024)

static size_t line_limit(const nori__redis_limits *lim)
{
    return lim->max_bulk > MIN_LINE_LIMIT ? lim->max_bulk : MIN_LINE_LIMIT;
}

static redisReply *new_reply(const redisReadTask *task, int type)
{
    redisReply *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->type = type;
    if (task->parent != NULL) {
        redisReply *parent = task->parent->obj;
        parent->element[task->idx] = r;
    }
    return r;
}

static void *create_string(const redisReadTask *task, char *str, size_t len)
{
    read_budget *b = tl_budget;
    if (b != NULL) {
        size_t limit = task->type == REDIS_REPLY_STRING ? b->lim->max_bulk : line_limit(b->lim);
        if (len > limit || len > b->lim->max_total - b->bytes) {
            b->exceeded = NORI__REDIS_ERR_TOOBIG;
            snprintf(b->why, sizeof b->why, "a reply string of %zu bytes is over the limit of %zu",
                     len, len > limit ? limit : b->lim->max_total);
            return NULL;
        }
        b->bytes += len;
    }
    char *buf = malloc(len + 1);
    if (buf == NULL)
        return NULL;
    redisReply *r = new_reply(task, task->type);
    if (r == NULL) {
        free(buf);
        return NULL;
    }
    memcpy(buf, str, len);
    buf[len] = '\0';
    r->str = buf;
    r->len = len;
    return r;
}

static void *create_array(const redisReadTask *task, int elements)
{
    read_budget *b = tl_budget;
    size_t n = elements > 0 ? (size_t)elements : 0;
    if (b != NULL) {
        if (n > b->lim->max_elements - b->elements) {
            b->exceeded = NORI__REDIS_ERR_TOOMANY;
            snprintf(b->why, sizeof b->why,
                     "a reply array of %zu elements is over the limit of %zu", n,
                     b->lim->max_elements);
            return NULL;
        }
        b->elements += n;
    }
    redisReply **element = NULL;
    if (n > 0) {
        element = calloc(n, sizeof *element);
        if (element == NULL)
            return NULL;
    }
    redisReply *r = new_reply(task, REDIS_REPLY_ARRAY);
    if (r == NULL) {
        free(element);
        return NULL;
    }
    r->element = element;
    r->elements = n;
    return r;
}

static void *create_integer(const redisReadTask *task, long long value)
{
    redisReply *r = new_reply(task, REDIS_REPLY_INTEGER);
    if (r != NULL)
        r->integer = value;
    return r;
}

static void *create_nil(const redisReadTask *task)
{
    return new_reply(task, REDIS_REPLY_NIL);
}

static redisReplyObjectFunctions bounded_functions = {
    create_string, create_array, create_integer, create_nil, freeReplyObject,
};

redisReply *nori__redis_reply_parse(const char *buf, size_t len, const nori__redis_limits *lim)
{
    redisReader *reader = redisReaderCreateWithFunctions(&bounded_functions);
    if (reader == NULL)
        return NULL;
    read_budget budget = {.lim = lim};
    read_budget *saved = tl_budget;
    tl_budget = &budget;
    void *reply = NULL;
    if (redisReaderFeed(reader, buf, len) != REDIS_OK ||
        redisReaderGetReply(reader, &reply) != REDIS_OK)
        reply = NULL;
    tl_budget = saved;
    redisReaderFree(reader);
    return reply;
}

/* ---- the round trip ---- */

const nori__redis_limits nori__redis_small_replies = {
    .max_bulk = (size_t)1 << 20,
    .max_total = (size_t)64 << 20,
    .max_elements = NORI__REDIS_MAX_REPLY_ELEMENTS,
};

const char *nori__redis_describe_error(const redisContext *c)
{
    return c->errstr[0] ? c->errstr : "connection lost";
}

static int set_error(redisContext *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int set_error(redisContext *c, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errstr, sizeof c->errstr, fmt, ap);
    va_end(ap);
    c->err = err;
    return -1;
}

int nori__redis_io_prepare(redisContext *c)
{
    int flags = fcntl(c->fd, F_GETFL);
    if (flags == -1 || fcntl(c->fd, F_SETFL, flags | O_NONBLOCK) == -1)
        return set_error(c, REDIS_ERR_IO, "cannot make the socket non-blocking: %s",
                         strerror(errno));
    /* hiredis treats EAGAIN as an error on a context it believes blocking. */
    c->flags &= ~REDIS_BLOCK;
    c->reader->fn = &bounded_functions;
    return 0;
}

/*
 * Reads a round trip may still make once its deadline has passed, each of
 * what the socket already holds (no waiting): a caller that was busy
 * elsewhere until the deadline (bulk.c reads one node's replies while
 * another's arrive) must not fail replies that came in time. 256 reads of
 * hiredis's 16 KiB are more than a socket's receive buffer holds by
 * default, and bound what a server streaming without pause adds.
 */
#define LATE_READS 256

/* Waits until c's socket is ready for `events` or the deadline passes.
 * late_reads (NULL: none) counts down the looks allowed after it. */
static int wait_ready(redisContext *c, short events, int64_t start, int64_t deadline,
                      int *late_reads)
{
    for (;;) {
        int64_t left = deadline - nori__real_ms();
        if (left <= 0 && (late_reads == NULL || *late_reads <= 0))
            return set_error(c, NORI__REDIS_ERR_TIMEOUT, "timed out (no %s within %lld ms)",
                             events == POLLOUT ? "room to send the command" : "reply",
                             (long long)(deadline - start));
        if (left <= 0)
            (*late_reads)--; /* one look at what is already there, no wait */
        struct pollfd pfd = {.fd = c->fd, .events = events};
        int n = poll(&pfd, 1, left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left);
        if (n > 0)
            return 0; /* ready, or an error/hang-up that the next I/O call reports */
        if (n == 0 && left <= 0 && late_reads != NULL)
            *late_reads = 0; /* nothing was there: the deadline holds */
        if (n == -1 && errno != EINTR)
            return set_error(c, REDIS_ERR_IO, "poll: %s", strerror(errno));
    }
}

/*
 * Sends what c's output buffer holds, as far as the socket takes it now:
 * hiredis's redisBufferWrite, but with send(2) and MSG_NOSIGNAL instead of
 * write(2). Writing to a peer that has gone then fails with EPIPE (an
 * ordinary I/O error) instead of raising SIGPIPE, whose default action
 * kills the application; so no call has to block SIGPIPE around its round
 * trip (that cost four system calls per command). *done is set when the
 * buffer is empty. 0, or -1 with c->err set.
 */
static int send_some(redisContext *c, int *done)
{
    size_t len = sdslen(c->obuf);
    while (len > 0) {
        ssize_t n = send(c->fd, c->obuf, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return set_error(c, REDIS_ERR_IO, "%s", strerror(errno));
        }
        if ((size_t)n == len) {
            sdsfree(c->obuf);
            c->obuf = sdsempty();
            if (c->obuf == NULL)
                return set_error(c, REDIS_ERR_OOM, "out of memory");
        } else {
            sdsrange(c->obuf, n, -1);
        }
        break;
    }
    *done = sdslen(c->obuf) == 0;
    return 0;
}

static int write_all(redisContext *c, int64_t start, int64_t deadline)
{
    if (c->err)
        return -1;
    for (;;) {
        int done = 0;
        if (send_some(c, &done) != 0)
            return -1;
        if (done)
            return 0;
        if (wait_ready(c, POLLOUT, start, deadline, NULL) != 0)
            return -1;
    }
}

int nori__redis_io_flush(redisContext *c, int64_t deadline_ms)
{
    return write_all(c, nori__real_ms(), deadline_ms);
}

/*
 * A bulk string whose header has arrived but whose bytes have not: the
 * reader keeps the header in its buffer (just after the '$' it consumed)
 * until the whole string is there. Refuse it by its announced length, before
 * buffering the bytes. Also refuses a buffered item longer than any allowed
 * item could be (an endless status line).
 */
static int check_pending(redisContext *c, read_budget *b)
{
    const redisReader *r = c->reader;
    if (r->buf == NULL || r->len <= r->pos)
        return 0;
    size_t avail = r->len - r->pos;
    if (r->ridx >= 0 && r->rstack[r->ridx].type == REDIS_REPLY_STRING) {
        const char *p = r->buf + r->pos;
        size_t i = 0;
        unsigned long long len = 0;
        while (i < avail && i < 19 && p[i] >= '0' && p[i] <= '9')
            len = len * 10 + (unsigned long long)(p[i++] - '0');
        if (i == 19 && i < avail && p[i] >= '0' && p[i] <= '9')
            len = ULLONG_MAX; /* 20 digits or more: absurd */
        if (i > 0 && (len > b->lim->max_bulk || len > b->lim->max_total - b->bytes))
            return set_error(c, NORI__REDIS_ERR_TOOBIG,
                             "the reply announces a string of %llu bytes, over the limit of %zu",
                             len, len > b->lim->max_bulk ? b->lim->max_bulk : b->lim->max_total);
    }
    /* Complete replies were taken before this is called, so the buffer holds
     * one item in progress: a bulk string of at most max_bulk bytes plus its
     * header, or a status or error line. */
    if (avail > line_limit(b->lim) + 64)
        return set_error(c, NORI__REDIS_ERR_TOOBIG,
                         "the reply holds an item of more than %zu bytes", line_limit(b->lim));
    return 0;
}

/* Reads what the socket has, waiting for it first when nothing is expected
 * to be there yet. After the deadline every read goes through wait_ready,
 * so that *late_reads bounds them (a server sending without pause would
 * otherwise never meet the deadline). */
static int read_some(redisContext *c, bool wait_first, int64_t start, int64_t deadline,
                     int *late_reads)
{
    for (;;) {
        if ((wait_first || nori__real_ms() >= deadline) &&
            wait_ready(c, POLLIN, start, deadline, late_reads) != 0)
            return -1;
        size_t before = c->reader->len;
        if (redisBufferRead(c) != REDIS_OK)
            return -1;
        if (c->reader->len != before)
            return 0;
        wait_first = true; /* EAGAIN or EINTR: nothing arrived */
    }
}

int nori__redis_io_roundtrip(redisContext *c, int64_t deadline_ms, const nori__redis_limits *lim,
                             size_t n, redisReply **replies)
{
    for (size_t i = 0; i < n; i++)
        replies[i] = NULL;
    if (c->err)
        return -1;
    int64_t start = nori__real_ms();
    read_budget budget = {.lim = lim};
    read_budget *saved = tl_budget;
    tl_budget = &budget;
    int rc = write_all(c, start, deadline_ms);
    size_t got = 0;
    /* Right after sending, the answer cannot be there yet: poll first. A
     * read that filled hiredis's 16 KiB buffer suggests more is waiting. */
    bool wait_first = true;
    int late_reads = LATE_READS;
    while (rc == 0 && got < n) {
        void *reply = NULL;
        if (redisGetReplyFromReader(c, &reply) != REDIS_OK) {
            if (budget.exceeded)
                set_error(c, budget.exceeded, "%s", budget.why);
            rc = -1;
            break;
        }
        if (reply != NULL) {
            replies[got++] = reply;
            continue;
        }
        rc = check_pending(c, &budget);
        if (rc != 0)
            break;
        size_t before = c->reader->len;
        rc = read_some(c, wait_first, start, deadline_ms, &late_reads);
        wait_first = c->reader->len - before < 16 * 1024;
    }
    tl_budget = saved;
    if (rc != 0) {
        for (size_t i = 0; i < got; i++) {
            freeReplyObject(replies[i]);
            replies[i] = NULL;
        }
        if (c->err == 0) /* cannot happen; never leave a failed context usable */
            set_error(c, REDIS_ERR_OTHER, "round trip failed");
    }
    return rc;
}

int nori__redis_io_next_reply(redisContext *c, const nori__redis_limits *lim,
                              nori__redis_reply_charge *charge, void **reply)
{
    *reply = NULL;
    if (c->err)
        return -1;
    /* A reply that spans several reads is charged over all of them: the
     * charge carries what its parts took so far and starts again at 0 with
     * the next reply. */
    read_budget budget = {.lim = lim, .bytes = charge->bytes, .elements = charge->elements};
    read_budget *saved = tl_budget;
    tl_budget = &budget;
    int rc = 0;
    if (redisGetReplyFromReader(c, reply) != REDIS_OK) {
        if (budget.exceeded)
            set_error(c, budget.exceeded, "%s", budget.why);
        rc = -1;
    } else if (*reply == NULL) {
        rc = check_pending(c, &budget);
    }
    tl_budget = saved;
    charge->bytes = *reply != NULL ? 0 : budget.bytes;
    charge->elements = *reply != NULL ? 0 : budget.elements;
    return rc;
}

redisReply *nori__redis_io_command(redisContext *c, int64_t deadline_ms,
                                   const nori__redis_limits *lim, int argc, const char **argv,
                                   const size_t *lens)
{
    if (redisAppendCommandArgv(c, argc, argv, lens) != REDIS_OK) {
        if (c->err == 0)
            set_error(c, REDIS_ERR_OOM, "out of memory queueing a command");
        return NULL;
    }
    redisReply *r;
    if (nori__redis_io_roundtrip(c, deadline_ms, lim, 1, &r) != 0)
        return NULL;
    return r;
}
