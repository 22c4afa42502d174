/*
 * The connection pool of the Redis backend; see pool.h.
 *
 * Why a stack of idle contexts behind one mutex: the lock is held only to
 * push or pop a pointer (never during I/O or connecting), so contention costs
 * nanoseconds next to a network round trip; the most recently used context
 * is reused first, which keeps the set of warm connections small.
 */
#include "redis/wire/pool.h"

#include "clock.h"
#include "backend.h"
#include "error.h"
#include "redis/wire/resolve.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int nori__redis_pool_init(nori__redis_pool *p, const nori__redis_url *url)
{
    p->url = url;
    p->nidle = 0;
    p->check_role = false;
    p->idle = calloc((size_t)url->pool_size, sizeof *p->idle);
    p->idle_since = calloc((size_t)url->pool_size, sizeof *p->idle_since);
    if (p->idle == NULL || p->idle_since == NULL) {
        free(p->idle);
        free(p->idle_since);
        return nori__fail(NORI_ENOMEM, "out of memory creating a Redis connection pool");
    }
    pthread_mutex_init(&p->lock, NULL);
    return NORI_OK;
}

void nori__redis_pool_destroy(nori__redis_pool *p)
{
    for (int i = 0; i < p->nidle; i++)
        redisFree(p->idle[i]);
    free(p->idle);
    free(p->idle_since);
    p->idle = NULL;
    p->idle_since = NULL;
    p->nidle = 0;
    pthread_mutex_destroy(&p->lock);
}

const nori__redis_limits nori__redis_small_replies = {
    .max_bulk = (size_t)1 << 20,
    .max_total = (size_t)64 << 20,
    .max_elements = NORI__REDIS_MAX_REPLY_ELEMENTS,
};

const char *nori__redis_describe_error(const redisContext *c)
{
    return c->errstr[0] ? c->errstr : "connection lost";
}

/* Runs one setup command (AUTH, SELECT) on a fresh context. `what` names the
 * step in the message; the arguments themselves are never printed, as they
 * may hold the password. */
static int setup_command(nori__redis_pool *p, redisContext *c, const char *what, int argc,
                         const char **argv, nori__connect_failure *why)
{
    int64_t deadline = nori__real_ms() + p->url->timeout_ms;
    redisReply *r =
        nori__redis_io_command(c, deadline, &nori__redis_small_replies, argc, argv, NULL);
    if (r == NULL) {
        *why = c->err == NORI__REDIS_ERR_TIMEOUT ? NORI__CONNECT_SLOW
               : c->err == REDIS_ERR_EOF || c->err == REDIS_ERR_IO ? NORI__CONNECT_REFUSED
                                                                  : NORI__CONNECT_FAILED;
        return nori__fail(NORI_EBACKEND, "redis %s: %s failed: %s", p->url->display, what,
                          nori__redis_describe_error(c));
    }
    int rc = NORI_OK;
    if (r->type == REDIS_REPLY_ERROR)
        rc = nori__fail(NORI_EBACKEND, "redis %s: %s refused by the server: %.200s",
                        p->url->display, what, r->str);
    freeReplyObject(r);
    return rc;
}

/*
 * check_role: whether c's server is still the master (pool.h). 0 yes; 1
 * it is not (the error set: the caller asks the sentinels again); -1 no
 * answer (the error set, *why says how; c is dead).
 */
static int confirm_master(nori__redis_pool *p, redisContext *c, nori__connect_failure *why)
{
    const char *argv[] = {"ROLE"};
    int64_t deadline = nori__real_ms() + p->url->timeout_ms;
    redisReply *r = nori__redis_io_command(c, deadline, &nori__redis_small_replies, 1, argv, NULL);
    if (r == NULL) {
        *why = c->err == NORI__REDIS_ERR_TIMEOUT ? NORI__CONNECT_SLOW : NORI__CONNECT_REFUSED;
        nori__fail(NORI_EBACKEND, "redis %s: ROLE failed: %s", p->url->display,
                   nori__redis_describe_error(c));
        return -1;
    }
    bool array = r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                 r->element[0]->type == REDIS_REPLY_STRING;
    bool master =
        r->type == REDIS_REPLY_ERROR || (array && strcmp(r->element[0]->str, "master") == 0);
    int rc = 0;
    if (!master) {
        *why = NORI__CONNECT_FAILED;
        nori__fail(NORI_EBACKEND,
                   "redis %s: the server is no longer the master (ROLE: %.32s); the sentinels are "
                   "asked again",
                   p->url->display, array ? r->element[0]->str : "unexpected reply");
        rc = 1;
    }
    freeReplyObject(r);
    return rc;
}

/* Connects and sets up a new context. On failure nothing is left open. */
static int connect_new(nori__redis_pool *p, redisContext **out, nori__connect_failure *why)
{
    const nori__redis_url *u = p->url;
    redisContext *c;
    char failure[256];
    bool slow = false;
    if (u->is_unix) {
        c = redisConnectUnixWithTimeout(u->path, nori__ms_timeval(u->connect_timeout_ms));
        if (c != NULL && c->err) {
            slow = strstr(c->errstr, "timed out") != NULL;
            snprintf(failure, sizeof failure, "%s", c->errstr);
            redisFree(c);
            c = NULL;
        } else if (c == NULL) {
            snprintf(failure, sizeof failure, "out of memory");
        }
    } else {
        /* The host name's lookup is bounded too (resolve.h). */
        c = nori__redis_connect_tcp(u->host, u->port, u->connect_timeout_ms, failure,
                                    sizeof failure, &slow);
    }
    if (c == NULL) {
        /* hiredis's text, e.g. "Connection refused" or "Connection timed
         * out" (connect_timeout_ms elapsed), or the lookup's. */
        *why = slow ? NORI__CONNECT_SLOW : NORI__CONNECT_REFUSED;
        if (strcmp(failure, "out of memory") == 0)
            return nori__fail(NORI_ENOMEM, "out of memory connecting to redis %s", u->display);
        return nori__fail(NORI_EBACKEND, "redis %s: cannot connect: %s (connect timeout %d ms)",
                          u->display, failure, u->connect_timeout_ms);
    }
    /* Every later command is sent and answered before a deadline (io.h);
     * without it a hung server would block the caller forever. */
    int rc = NORI_OK;
    if (nori__redis_io_prepare(c) != 0)
        rc = nori__fail(NORI_EBACKEND, "redis %s: cannot set up the connection: %s",
                        u->display, c->errstr);
    /* Keepalive (TCP only) notices a peer that vanished without closing. */
    if (rc == NORI_OK && !u->is_unix && redisEnableKeepAlive(c) != REDIS_OK)
        rc = nori__fail(NORI_EBACKEND, "redis %s: cannot enable TCP keepalive: %s", u->display,
                        c->errstr);
    if (rc == NORI_OK && u->password != NULL) {
        if (u->user != NULL) {
            const char *argv[] = {"AUTH", u->user, u->password};
            rc = setup_command(p, c, "AUTH (user and password)", 3, argv, why);
        } else {
            const char *argv[] = {"AUTH", u->password};
            rc = setup_command(p, c, "AUTH (password)", 2, argv, why);
        }
    }
    if (rc == NORI_OK && u->db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", u->db);
        const char *argv[] = {"SELECT", db};
        rc = setup_command(p, c, "SELECT", 2, argv, why);
    }
    if (rc == NORI_OK && p->check_role && confirm_master(p, c, why) != 0)
        rc = NORI_EBACKEND;
    if (rc != NORI_OK) {
        redisFree(c);
        return rc;
    }
    *out = c;
    return NORI_OK;
}

/*
 * An idle connection whose socket is readable has been closed by the server
 * (a restart, a timeout, CLIENT KILL): there are no replies pending on an
 * idle context, so readable means EOF or an error. Checking costs one poll(2)
 * with a zero timeout and saves the caller a failed command after a restart.
 */
static bool looks_closed(redisContext *c)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    int n = poll(&pfd, 1, 0);
    return n != 0; /* readable, hung up, or poll failed */
}

/* Closes every idle context. */
static void close_idle(nori__redis_pool *p)
{
    redisContext *stale[NORI_REDIS_MAX_POOL_SIZE];
    pthread_mutex_lock(&p->lock);
    int n = p->nidle;
    memcpy(stale, p->idle, (size_t)n * sizeof *stale);
    p->nidle = 0;
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < n; i++)
        redisFree(stale[i]);
}

int nori__redis_pool_acquire(nori__redis_pool *p, redisContext **out, nori__connect_failure *why)
{
    *why = NORI__CONNECT_FAILED;
    for (;;) {
        redisContext *c = NULL;
        int64_t since = 0;
        pthread_mutex_lock(&p->lock);
        if (p->nidle > 0) {
            c = p->idle[--p->nidle];
            since = p->idle_since[p->nidle];
        }
        pthread_mutex_unlock(&p->lock);
        if (c == NULL)
            return connect_new(p, out, why);
        if (looks_closed(c)) {
            redisFree(c);
            continue;
        }
        int role = p->check_role && nori__real_ms() - since > NORI_REDIS_ROLE_IDLE_MS
                       ? confirm_master(p, c, why)
                       : 0;
        if (role == 0) {
            *out = c;
            return NORI_OK;
        }
        bool dead = c->err == REDIS_ERR_EOF || c->err == REDIS_ERR_IO;
        redisFree(c);
        if (role > 0) {
            close_idle(p); /* they all lead to the demoted server */
            return NORI_EBACKEND;
        }
        if (!dead)
            return NORI_EBACKEND; /* a timeout: the server is slow */
        /* Closed under us since looks_closed: like a closed one, skip it. */
    }
}

void nori__redis_pool_release(nori__redis_pool *p, redisContext *c, bool reusable)
{
    if (c == NULL)
        return;
    redisContext *stale[NORI_REDIS_MAX_POOL_SIZE];
    int nstale = 0;
    /* Input left unread in the reader after the replies that were asked
     * for (a server that answered more than it was asked, in the same
     * read) would be taken as the next user's reply, for another key: a
     * cross-key leak. Such a connection is never lent again. */
    bool unread = c->reader != NULL && c->reader->len > c->reader->pos;
    bool keep = reusable && c->err == 0 && !unread;
    pthread_mutex_lock(&p->lock);
    if (keep && p->nidle < p->url->pool_size) {
        p->idle_since[p->nidle] = nori__real_ms();
        p->idle[p->nidle++] = c;
        c = NULL;
    } else if (c->err == REDIS_ERR_EOF || c->err == REDIS_ERR_IO) {
        /* The connection broke (not merely a slow reply): the siblings most
         * likely point at the same dead server. Take them out under the
         * lock, close them outside it. A timeout alone does not drain the
         * pool, so a slow server does not cause a storm of reconnects. */
        nstale = p->nidle;
        memcpy(stale, p->idle, (size_t)nstale * sizeof *stale);
        p->nidle = 0;
    }
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < nstale; i++)
        redisFree(stale[i]);
    if (c != NULL)
        redisFree(c);
}
