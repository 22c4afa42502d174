// SPDX-License-Identifier: MIT
/*
 * A small closed-loop HTTP/1.1 keep-alive load client, for the rows wrk
 * cannot measure: wrk's http_parser waits for a body after a 304 that
 * carries the 200's Content-Length (RFC 9110 8.6 allows it), while RFC 9112
 * 6.3 says a 304 always ends at the empty line after its headers.
 *
 *   http_load [-m GET|HEAD] [-T TIMEOUT_S] HOST PORT PATH SECONDS CONNECTIONS
 *             THREADS [HEADER...]
 *
 * CONNECTIONS keep-alive connections spread over THREADS threads (poll(2)
 * per thread); each connection sends one request, reads the whole response,
 * then sends the next (no pipelining). Responses are framed by RFC 9112 6.3:
 * 1xx, 204, 304 and responses to HEAD have no body, every other response
 * needs a Content-Length; Transfer-Encoding (chunked) and close-delimited
 * bodies are refused with an error, as is anything malformed. Prints
 * "Requests/sec:" (the same label as wrk, so scripts read either) and the
 * responses by status. Every wait is bounded: a connect or a request whose
 * response has not fully arrived after TIMEOUT_S (default 10) seconds makes
 * http_load exit 1 with a message naming the connection and its state.
 * A connection the server closes between responses (Connection: close, or
 * EOF with nothing outstanding) is reopened and counted as a reconnect.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* A response header block larger than this is an error, as in most servers
 * and proxies (nginx's large_client_header_buffers is 8 KiB per line). */
#define HEAD_MAX 16384

enum conn_state { C_CONNECTING, C_SENDING, C_HEAD, C_BODY };

static const char *const state_name[] = {"connecting", "sending the request",
                                         "reading the response header",
                                         "reading the response body"};

struct conn {
    int fd;
    int id; /* global index, for messages */
    enum conn_state st;
    size_t sent;        /* bytes of the request written */
    char buf[HEAD_MAX]; /* response bytes not yet consumed */
    size_t len;
    uint64_t body_left; /* body bytes still to skip */
    int status;         /* status of the response being read */
    int close_after;    /* the server ends the connection after it */
    double t_start;     /* when the connect or the request began */
};

struct options {
    struct addrinfo *addr;
    const char *host, *port;
    int head; /* method HEAD: responses never have a body */
    char *request;
    size_t request_len;
    double start, deadline, timeout;
};

struct worker {
    pthread_t tid;
    const struct options *opt;
    struct conn *conns;
    int nconns;
    uint64_t by_status[600];
    uint64_t done, reconnects, body_bytes;
    double latency_sum; /* seconds, over `done` responses */
    double end;
    char err[512]; /* non-empty: this thread failed */
};

/* Set by the first thread that fails, so the others stop at once. */
static atomic_int failed;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(struct worker *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, sizeof w->err, fmt, ap);
    va_end(ap);
    atomic_store(&failed, 1);
    return -1;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static int conn_open(struct worker *w, struct conn *c)
{
    const struct addrinfo *a = w->opt->addr;
    int one = 1;

    c->fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (c->fd < 0)
        return fail(w, "connection %d: socket: %s", c->id, strerror(errno));
    /* Requests are small and each waits for its answer: no Nagle delay. */
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->len = 0;
    c->sent = 0;
    c->t_start = now_s();
    if (connect(c->fd, a->ai_addr, a->ai_addrlen) == 0) {
        c->st = C_SENDING;
        return 0;
    }
    if (errno != EINPROGRESS)
        return fail(w, "connection %d: connect to %s:%s: %s", c->id, w->opt->host, w->opt->port,
                    strerror(errno));
    c->st = C_CONNECTING;
    return 0;
}

/* Case-insensitive: does the comma-separated list [v, v+n) hold `token`? */
static int has_token(const char *v, size_t n, const char *token)
{
    size_t tl = strlen(token), i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, token, tl) == 0)
            return 1;
    }
    return 0;
}

/*
 * Parse the header block buf[0, hlen) (ending with the empty line) of the
 * response on `c`: sets c->status, c->body_left, c->close_after. Returns 0,
 * or -1 after fail() naming what was wrong.
 */
static int parse_head(struct worker *w, struct conn *c, const char *buf, size_t hlen)
{
    const char *p = buf, *end = buf + hlen;
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    int minor, have_cl = 0, keep_alive = 0;
    uint64_t cl = 0;

    /* status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF */
    if (!eol || eol - p < 13 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') ||
        p[8] != ' ' || p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' ||
        p[11] > '9' || (p[12] != ' ' && p[12] != '\r'))
        return fail(w, "connection %d: bad status line: \"%.*s\"", c->id,
                    (int)(eol ? eol - p : (end - p > 60 ? 60 : end - p)), p);
    minor = p[7] - '0';
    c->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    c->close_after = 0;
    p = eol + 1;

    while (p < end) {
        eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol || eol[-1] != '\r')
            return fail(w, "connection %d: header line not ended by CRLF", c->id);
        size_t n = (size_t)(eol - 1 - p);
        if (n == 0)
            break; /* the empty line */
        if (*p == ' ' || *p == '\t')
            return fail(w, "connection %d: obsolete line folding in the response header", c->id);
        const char *colon = memchr(p, ':', n);
        if (!colon || colon == p)
            return fail(w, "connection %d: header line without a name: \"%.*s\"", c->id, (int)n,
                        p);
        size_t nl = (size_t)(colon - p);
        const char *v = colon + 1, *ve = p + n;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t vl = (size_t)(ve - v);

        if (nl == 17 && strncasecmp(p, "Transfer-Encoding", nl) == 0)
            return fail(w,
                        "connection %d: response %d has Transfer-Encoding: %.*s; http_load "
                        "frames bodies by Content-Length only (no chunked)",
                        c->id, c->status, (int)vl, v);
        if (nl == 14 && strncasecmp(p, "Content-Length", nl) == 0) {
            uint64_t x = 0;
            if (vl == 0 || vl > 18)
                return fail(w, "connection %d: bad Content-Length \"%.*s\"", c->id, (int)vl, v);
            for (size_t i = 0; i < vl; i++) {
                if (v[i] < '0' || v[i] > '9')
                    return fail(w, "connection %d: bad Content-Length \"%.*s\"", c->id, (int)vl,
                                v);
                x = x * 10 + (uint64_t)(v[i] - '0');
            }
            if (have_cl && x != cl)
                return fail(w,
                            "connection %d: two different Content-Length values (%" PRIu64
                            " and %" PRIu64 ")",
                            c->id, cl, x);
            have_cl = 1;
            cl = x;
        }
        if (nl == 10 && strncasecmp(p, "Connection", nl) == 0) {
            if (has_token(v, vl, "close"))
                c->close_after = 1;
            if (has_token(v, vl, "keep-alive"))
                keep_alive = 1;
        }
        p = eol + 1;
    }
    if (minor == 0 && !keep_alive)
        c->close_after = 1;

    /* RFC 9112 6.3, items 1 and 2 (CONNECT is never sent). */
    if (c->status == 101)
        return fail(w, "connection %d: 101 Switching Protocols to a GET", c->id);
    if (w->opt->head || c->status < 200 || c->status == 204 || c->status == 304) {
        c->body_left = 0;
        return 0;
    }
    if (!have_cl)
        return fail(w,
                    "connection %d: response %d without Content-Length (a body delimited by "
                    "closing the connection): not supported",
                    c->id, c->status);
    c->body_left = cl;
    return 0;
}

/* Write as much of the request as the socket takes; on completion the
 * connection waits for the response. */
static int conn_send(struct worker *w, struct conn *c)
{
    const struct options *o = w->opt;
    while (c->sent < o->request_len) {
        ssize_t n = send(c->fd, o->request + c->sent, o->request_len - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == EINTR)
                continue;
            return fail(w, "connection %d: send: %s", c->id, strerror(errno));
        }
        c->sent += (size_t)n;
    }
    c->st = C_HEAD;
    return 0;
}

static int conn_start_request(struct worker *w, struct conn *c, double now)
{
    c->sent = 0;
    c->st = C_SENDING;
    c->t_start = now;
    return conn_send(w, c);
}

/* Consume buffered response bytes; a completed response is counted and the
 * next request started (or the connection reopened). */
static int conn_process(struct worker *w, struct conn *c)
{
    for (;;) {
        if (c->st == C_HEAD) {
            const char *e = NULL;
            for (size_t i = 3; i < c->len; i++)
                if (c->buf[i] == '\n' && c->buf[i - 1] == '\r' && c->buf[i - 2] == '\n' &&
                    c->buf[i - 3] == '\r') {
                    e = c->buf + i + 1;
                    break;
                }
            if (!e) {
                if (c->len == sizeof c->buf)
                    return fail(w, "connection %d: response header larger than %d bytes", c->id,
                                HEAD_MAX);
                return 0;
            }
            size_t hlen = (size_t)(e - c->buf);
            if (parse_head(w, c, c->buf, hlen) < 0)
                return -1;
            memmove(c->buf, e, c->len - hlen);
            c->len -= hlen;
            if (c->status < 200)
                continue; /* interim response: the final one follows */
            c->st = C_BODY;
        }
        if (c->st == C_BODY) {
            size_t take = c->len < c->body_left ? c->len : (size_t)c->body_left;
            memmove(c->buf, c->buf + take, c->len - take);
            c->len -= take;
            c->body_left -= take;
            w->body_bytes += take;
            if (c->body_left > 0)
                return 0;
            double now = now_s();
            if (now < w->opt->deadline) {
                w->done++;
                w->by_status[c->status]++;
                w->latency_sum += now - c->t_start;
            }
            if (c->len > 0)
                return fail(w, "connection %d: %zu bytes after the end of response %d", c->id,
                            c->len, c->status);
            if (now >= w->opt->deadline)
                return 0;
            if (c->close_after) {
                conn_close(c);
                w->reconnects++;
                return conn_open(w, c);
            }
            return conn_start_request(w, c, now);
        }
        return 0;
    }
}

static int conn_read(struct worker *w, struct conn *c)
{
    for (;;) {
        /* In the body, read over what was consumed: bodies are skipped. */
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == EINTR)
                continue;
            return fail(w, "connection %d: recv (%s): %s", c->id, state_name[c->st],
                        strerror(errno));
        }
        if (n == 0) {
            /* Closed with the request answered by nothing at all: a server
             * ending an idle keep-alive connection races our request; reopen.
             * Closed within a response: the framing was broken. */
            if (c->st == C_HEAD && c->len == 0) {
                conn_close(c);
                w->reconnects++;
                return conn_open(w, c);
            }
            return fail(w, "connection %d: closed by the server while %s", c->id,
                        state_name[c->st]);
        }
        int full = (size_t)n == sizeof c->buf - c->len;
        c->len += (size_t)n;
        if (conn_process(w, c) < 0)
            return -1;
        /* A short read took all the kernel had: wait for poll rather than
         * pay a recv that only says EAGAIN (one syscall per response). */
        if (!full)
            return 0;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    const struct options *o = w->opt;
    struct pollfd *pfd = calloc((size_t)w->nconns, sizeof *pfd);

    if (!pfd) {
        fail(w, "out of memory for %d pollfds", w->nconns);
        return NULL;
    }
    for (int i = 0; i < w->nconns; i++)
        if (conn_open(w, &w->conns[i]) < 0)
            goto out;

    for (;;) {
        double now = now_s();
        if (atomic_load(&failed) || now >= o->deadline)
            break;
        for (int i = 0; i < w->nconns; i++) {
            struct conn *c = &w->conns[i];
            if (now - c->t_start > o->timeout) {
                fail(w, "connection %d: no complete response after %.1f s (%s, %zu bytes "
                        "buffered); the server stalled",
                     c->id, o->timeout, state_name[c->st], c->len);
                goto out;
            }
            pfd[i].fd = c->fd;
            pfd[i].events = (c->st == C_CONNECTING || c->st == C_SENDING) ? POLLOUT : POLLIN;
            pfd[i].revents = 0;
        }
        /* Wake at least every 100 ms to check the deadline and the timeout. */
        double left = o->deadline - now;
        int ms = left < 0.1 ? (int)(left * 1000) + 1 : 100;
        int r = poll(pfd, (nfds_t)w->nconns, ms);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            fail(w, "poll: %s", strerror(errno));
            goto out;
        }
        for (int i = 0; i < w->nconns && r > 0; i++) {
            struct conn *c = &w->conns[i];
            if (!pfd[i].revents)
                continue;
            if (c->st == C_CONNECTING) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err) {
                    fail(w, "connection %d: connect to %s:%s: %s", c->id, o->host, o->port,
                         strerror(err));
                    goto out;
                }
                if (conn_start_request(w, c, now_s()) < 0)
                    goto out;
            } else if (c->st == C_SENDING) {
                if (pfd[i].revents & (POLLERR | POLLHUP)) {
                    fail(w, "connection %d: closed by the server while %s", c->id,
                         state_name[c->st]);
                    goto out;
                }
                if (conn_send(w, c) < 0)
                    goto out;
            } else if (conn_read(w, c) < 0) {
                goto out;
            }
        }
    }
out:
    w->end = now_s();
    for (int i = 0; i < w->nconns; i++)
        conn_close(&w->conns[i]);
    free(pfd);
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: http_load [-m GET|HEAD] [-T TIMEOUT_S] HOST PORT PATH SECONDS "
                    "CONNECTIONS THREADS [HEADER...]\n"
                    "  HEADER is \"Name: value\", e.g. 'If-None-Match: \"abc\"'\n");
    exit(2);
}

static long parse_pos(const char *what, const char *s, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *s == '\0' || *end != '\0' || v < 1 || v > max) {
        fprintf(stderr, "http_load: %s must be an integer in 1..%ld, got \"%s\"\n", what, max, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    struct options o = {0};
    const char *method = "GET";
    double timeout = 10;
    int opt;

    while ((opt = getopt(argc, argv, "+m:T:")) != -1) {
        if (opt == 'm') {
            if (strcmp(optarg, "GET") != 0 && strcmp(optarg, "HEAD") != 0) {
                fprintf(stderr, "http_load: -m must be GET or HEAD, got \"%s\"\n", optarg);
                return 2;
            }
            method = optarg;
        } else if (opt == 'T') {
            timeout = (double)parse_pos("-T (timeout, seconds)", optarg, 3600);
        } else {
            usage();
        }
    }
    argv += optind;
    argc -= optind;
    if (argc < 6)
        usage();
    o.host = argv[0];
    o.port = argv[1];
    const char *path = argv[2];
    long secs = parse_pos("SECONDS", argv[3], 86400);
    long nconns = parse_pos("CONNECTIONS", argv[4], 10000);
    long nthreads = parse_pos("THREADS", argv[5], 256);
    if (nthreads > nconns) {
        fprintf(stderr, "http_load: THREADS (%ld) must not exceed CONNECTIONS (%ld)\n", nthreads,
                nconns);
        return 2;
    }
    if (path[0] != '/' || strpbrk(path, " \r\n")) {
        fprintf(stderr, "http_load: PATH must start with '/' and hold no space or CR/LF: \"%s\"\n",
                path);
        return 2;
    }
    o.head = strcmp(method, "HEAD") == 0;
    o.timeout = timeout;

    /* The request, built once: every connection sends the same bytes. */
    size_t cap = strlen(method) + strlen(path) + strlen(o.host) + strlen(o.port) + 64;
    for (int i = 6; i < argc; i++) {
        const char *h = argv[i], *colon = strchr(h, ':');
        if (!colon || colon == h || strpbrk(h, "\r\n")) {
            fprintf(stderr, "http_load: HEADER must be \"Name: value\" on one line, got \"%s\"\n",
                    h);
            return 2;
        }
        cap += strlen(h) + 2;
    }
    o.request = malloc(cap);
    if (!o.request) {
        fprintf(stderr, "http_load: out of memory\n");
        return 1;
    }
    int n = snprintf(o.request, cap, "%s %s HTTP/1.1\r\nHost: %s:%s\r\n", method, path, o.host,
                     o.port);
    o.request_len = (size_t)n;
    for (int i = 6; i < argc; i++)
        o.request_len += (size_t)snprintf(o.request + o.request_len, cap - o.request_len,
                                          "%s\r\n", argv[i]);
    o.request_len += (size_t)snprintf(o.request + o.request_len, cap - o.request_len, "\r\n");

    struct addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(o.host, o.port, &hints, &o.addr);
    if (gai != 0) {
        fprintf(stderr, "http_load: cannot resolve %s:%s: %s\n", o.host, o.port,
                gai_strerror(gai));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);

    struct worker *ws = calloc((size_t)nthreads, sizeof *ws);
    struct conn *cs = calloc((size_t)nconns, sizeof *cs);
    if (!ws || !cs) {
        fprintf(stderr, "http_load: out of memory for %ld connections\n", nconns);
        return 1;
    }
    for (long i = 0; i < nconns; i++) {
        cs[i].fd = -1;
        cs[i].id = (int)i;
    }
    o.start = now_s();
    o.deadline = o.start + (double)secs;
    long next = 0;
    for (long t = 0; t < nthreads; t++) {
        long k = nconns / nthreads + (t < nconns % nthreads);
        ws[t].opt = &o;
        ws[t].conns = cs + next;
        ws[t].nconns = (int)k;
        next += k;
        int e = pthread_create(&ws[t].tid, NULL, worker_main, &ws[t]);
        if (e) {
            fprintf(stderr, "http_load: pthread_create: %s\n", strerror(e));
            return 1;
        }
    }

    uint64_t by_status[600] = {0}, done = 0, reconnects = 0, bytes = 0;
    double lat = 0, end = o.start;
    int rc = 0;
    for (long t = 0; t < nthreads; t++) {
        pthread_join(ws[t].tid, NULL);
        if (ws[t].err[0]) {
            fprintf(stderr, "http_load: %s\n", ws[t].err);
            rc = 1;
        }
        for (int s = 0; s < 600; s++)
            by_status[s] += ws[t].by_status[s];
        done += ws[t].done;
        reconnects += ws[t].reconnects;
        bytes += ws[t].body_bytes;
        lat += ws[t].latency_sum;
        if (ws[t].end > end)
            end = ws[t].end;
    }
    if (end > o.deadline)
        end = o.deadline;
    double elapsed = end - o.start;
    if (rc == 0 && done == 0) {
        /* The failure wrk shows as 0 requests/s: make it an error. */
        fprintf(stderr, "http_load: no response completed in %lds\n", secs);
        rc = 1;
    }
    if (rc != 0)
        goto done; /* no figures from a failed run: a script must not read them */

    printf("http_load %s http://%s:%s%s, %lds, %ld connections, %ld threads\n", method, o.host,
           o.port, path, secs, nconns, nthreads);
    printf("  %" PRIu64 " responses in %.2fs, %" PRIu64 " body bytes read, %" PRIu64
           " reconnects, mean latency %.3f ms\n",
           done, elapsed, bytes, reconnects, done ? lat / (double)done * 1e3 : 0.0);
    for (int s = 100; s < 600; s++)
        if (by_status[s])
            printf("  status %d: %" PRIu64 "\n", s, by_status[s]);
    printf("Requests/sec: %.2f\n", elapsed > 0 ? (double)done / elapsed : 0.0);
done:

    freeaddrinfo(o.addr);
    free(o.request);
    free(ws);
    free(cs);
    return rc;
}
