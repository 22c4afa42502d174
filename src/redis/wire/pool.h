// SPDX-License-Identifier: MIT
/*
 * A pool of hiredis connections for one Redis server.
 *
 * A redisContext is not thread-safe, so the pool lends each context to one
 * thread at a time: nori__redis_pool_acquire() pops an idle context (or
 * connects a new one when none is idle), the caller runs its commands, and
 * nori__redis_pool_release() gives it back. A context that saw an error is
 * freed instead of being returned, so the next call connects afresh; at most
 * url->pool_size idle contexts are kept, the surplus is closed.
 *
 * Every new connection is opened by nori__redis_dial (dial.h) with the
 * URL's settings: connect (the host name's lookup and the connect together
 * bounded by connect_timeout_ms), non-blocking mode with bounded reply
 * objects, TCP keepalive, AUTH (with the user when the URL has one) and
 * SELECT, each of these commands bounded by timeout_ms.
 *
 * Through Sentinel (check_role) a connection also confirms that its server
 * is still the master, with ROLE: when it is new, and when it was idle for
 * more than NORI_REDIS_ROLE_IDLE_MS. The sentinels may demote a master
 * without closing a connection, and the announcement that says so
 * (sentinel_watch.h) may be missed; a demoted server answers reads with
 * what it replicates, stale until it has resynchronised. A server that
 * says it is not the master fails the acquire (and its idle connections
 * are closed), so that the caller asks the sentinels again; a ROLE refused
 * by an ACL counts as "master" (the sentinels named it). A busy connection
 * (used within the bound) is not checked: its writes would be answered
 * READONLY, and the sentinels close the connections of a server they
 * reconfigure.
 */
#ifndef NORI_SRC_REDIS_WIRE_POOL_H
#define NORI_SRC_REDIS_WIRE_POOL_H

#include "redis/wire/dial.h"
#include "redis/wire/io.h"
#include "redis/wire/url.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdbool.h>

/* An idle connection unused for longer is checked with ROLE before it is
 * lent (check_role only). */
#define NORI_REDIS_ROLE_IDLE_MS 1000

typedef struct nori__redis_pool {
    pthread_mutex_t lock;           /* guards idle, idle_since and nidle */
    const nori__redis_url *url;     /* borrowed: owned by the backend, outlives the pool */
    redisContext **idle;            /* owned array of url->pool_size slots */
    int64_t *idle_since;            /* owned, parallel to idle: when each was given back */
    int nidle;                      /* idle contexts, owned by the pool while idle */
    bool check_role;                /* set before the pool is used: see above */
} nori__redis_pool;

/* Prepares an empty pool (no connection is made). NORI_OK or NORI_ENOMEM. */
int nori__redis_pool_init(nori__redis_pool *p, const nori__redis_url *url);

/* Closes every idle context and frees the pool's memory. No context may be
 * lent out. */
void nori__redis_pool_destroy(nori__redis_pool *p);

/*
 * Lends a ready context to the caller (*out, owned by the caller until it is
 * released). Returns NORI_OK, NORI_ENOMEM, or NORI_EBACKEND with a message
 * naming the URL (password masked) and why connecting failed; *why then
 * says which kind of failure it was (dial.h), for the circuit breaker.
 */
int nori__redis_pool_acquire(nori__redis_pool *p, redisContext **out, nori__connect_failure *why);

/*
 * Takes back a context lent by acquire. It goes back to the idle stack only
 * when `reusable` is true, c->err is clear, its reader holds no unread
 * input (a surplus reply would answer the next user's command) and the
 * stack has room; otherwise it is freed. A context whose connection broke (EOF, reset, refused; not a
 * mere timeout) also empties the idle stack: its siblings most likely point
 * at the same dead server.
 */
void nori__redis_pool_release(nori__redis_pool *p, redisContext *c, bool reusable);

#endif
