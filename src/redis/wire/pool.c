// SPDX-License-Identifier: MIT
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
#include "error.h"

#include <poll.h>
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

/* Reports a failed dial or ROLE check; returns its code. */
static int report(const nori__redis_pool *p, const nori__redis_dial_error *err)
{
    if (err->not_master)
        return nori__fail(err->code, "redis %s: %s; the sentinels are asked again",
                          p->url->display, err->text);
    return nori__redis_dial_fail(p->url->display, err);
}

/* Opens a new connection (dial.h: connect, keepalive, AUTH, SELECT, and
 * ROLE with check_role). On failure nothing is left open. */
static int connect_new(nori__redis_pool *p, redisContext **out, nori__connect_failure *why)
{
    nori__redis_dial_opts o;
    nori__redis_dial_opts_of_url(&o, p->url);
    o.check_role = p->check_role;
    nori__redis_dial_error err;
    redisContext *c = nori__redis_dial(&o, &err);
    if (c == NULL) {
        *why = err.kind;
        return report(p, &err);
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
        nori__redis_dial_error err = {.code = NORI_OK};
        int role = p->check_role && nori__real_ms() - since > NORI_REDIS_ROLE_IDLE_MS
                       ? nori__redis_confirm_master(c, p->url->timeout_ms, &err)
                       : 0;
        if (role == 0) {
            *out = c;
            return NORI_OK;
        }
        bool dead = c->err == REDIS_ERR_EOF || c->err == REDIS_ERR_IO;
        redisFree(c);
        *why = err.kind;
        report(p, &err);
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
