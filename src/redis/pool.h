/*
 * A pool of blocking hiredis connections for one Redis backend.
 *
 * A redisContext is not thread-safe, so the pool lends each context to one
 * thread at a time: nori__redis_pool_acquire() pops an idle context (or
 * connects a new one when none is idle), the caller runs its commands, and
 * nori__redis_pool_release() gives it back. A context that saw an error is
 * freed instead of being returned, so the next call connects afresh; at most
 * url->pool_size idle contexts are kept, the surplus is closed.
 *
 * Every new connection is set up the same way, because hiredis forgets
 * settings on reconnect: connect timeout, command timeout (SO_RCVTIMEO /
 * SO_SNDTIMEO through redisSetTimeout), TCP keepalive, AUTH (with the user
 * when the URL has one) and SELECT.
 */
#ifndef NORI_SRC_REDIS_POOL_H
#define NORI_SRC_REDIS_POOL_H

#include "url.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>

typedef struct nori__redis_pool {
    pthread_mutex_t lock;           /* guards idle and nidle */
    const nori__redis_url *url;     /* borrowed: owned by the backend, outlives the pool */
    redisContext **idle;            /* owned array of url->pool_size slots */
    int nidle;                      /* idle contexts, owned by the pool while idle */
} nori__redis_pool;

/* Prepares an empty pool (no connection is made). NORI_OK or NORI_ENOMEM. */
int nori__redis_pool_init(nori__redis_pool *p, const nori__redis_url *url);

/* Closes every idle context and frees the pool's memory. No context may be
 * lent out. */
void nori__redis_pool_destroy(nori__redis_pool *p);

/*
 * Lends a ready context to the caller (*out, owned by the caller until it is
 * released). Returns NORI_OK, NORI_ENOMEM, or NORI_EBACKEND with a message
 * naming the URL (password masked) and why connecting failed.
 */
int nori__redis_pool_acquire(nori__redis_pool *p, redisContext **out);

/*
 * Takes back a context lent by acquire. It goes back to the idle stack only
 * when `reusable` is true, c->err is clear and the stack has room; otherwise
 * it is freed. A context whose connection broke (EOF, reset, refused; not a
 * mere timeout) also empties the idle stack: its siblings most likely point
 * at the same dead server.
 */
void nori__redis_pool_release(nori__redis_pool *p, redisContext *c, bool reusable);

/*
 * Describes why a command on c got no reply (c->err is set) into buf and
 * returns buf. A read that hit SO_RCVTIMEO fails with EAGAIN, which hiredis
 * reports as "Resource temporarily unavailable": this says "timed out (no
 * reply within N ms)" instead.
 */
const char *nori__redis_describe_error(const redisContext *c, int timeout_ms, char *buf,
                                       size_t size);

/*
 * hiredis writes with write(2), so a server that went away between two
 * commands raises SIGPIPE, whose default action kills the process. A library
 * must not change the process's signal dispositions, so every Redis call
 * blocks SIGPIPE on the calling thread for its duration and discards a
 * SIGPIPE it caused itself (the write then fails with EPIPE, an ordinary
 * I/O error).
 */
typedef struct nori__sigpipe_guard {
    sigset_t old_mask;
    bool was_pending; /* a SIGPIPE was already pending: not ours to discard */
} nori__sigpipe_guard;

void nori__sigpipe_block(nori__sigpipe_guard *g);
void nori__sigpipe_restore(nori__sigpipe_guard *g);

#endif
