// SPDX-License-Identifier: MIT
/*
 * The circuit breaker of one Redis server.
 *
 * Why: with the server frozen (SIGSTOP, a stuck disk, a network black hole)
 * every call waits its full timeout, so every thread that touches the cache
 * is stuck for timeout_ms, and a service whose worker threads all wait stops
 * answering even the routes that never use the cache. After `threshold`
 * consecutive failures that cost a wait, the breaker opens: calls fail at
 * once with NORI_EBACKEND "circuit open" for `cooldown_ms`. Then one call
 * (the probe) is let through while the others keep failing fast: its
 * success closes the breaker, its failure opens it for another cool-down.
 *
 * What counts: a command that got no reply by its deadline, and a connect
 * that timed out. On one server a refused or reset connection does not: it
 * fails in microseconds, so it stalls nobody, and counting it would only
 * delay recovery after a restart. On a cluster or through Sentinel it does
 * (nori__redis_breaker_refused): there a refused connection starts the
 * routed call's waits (back-off, map refresh, up to NORI_TOPO_RETRY_MS), so
 * with every node down each call would cost seconds. Any reply (even an
 * error reply) is a success and resets the count. threshold 0 disables the
 * breaker.
 */
#ifndef NORI_SRC_REDIS_WIRE_BREAKER_H
#define NORI_SRC_REDIS_WIRE_BREAKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct nori__redis_breaker {
    int threshold;   /* consecutive slow failures that open it; 0: never */
    int cooldown_ms; /* how long it stays open before a probe */
    pthread_mutex_t lock; /* guards the transitions and open_until, why */
    _Atomic int state;    /* NORI_CIRCUIT_CLOSED / _OPEN / _HALF_OPEN (cache.h) */
    _Atomic int failures; /* consecutive slow failures */
    int64_t open_until;   /* nori__now_ms() time at which a probe may go */
    char why[160];        /* the failure that opened it, for the fast-fail message */
    _Atomic uint64_t opens;    /* times it opened */
    _Atomic uint64_t rejected; /* calls failed fast */
    _Atomic uint64_t timeouts; /* slow failures seen (commands and connects) */
} nori__redis_breaker;

void nori__redis_breaker_init(nori__redis_breaker *b, int threshold, int cooldown_ms);
void nori__redis_breaker_destroy(nori__redis_breaker *b);

/*
 * Before a call. NORI_OK: go ahead (*probe is true when this call is the one
 * probe of a half-open breaker: report its outcome, or leave). Otherwise
 * NORI_EBACKEND with a message naming `display`, the cool-down left and the
 * failure that opened the breaker.
 */
int nori__redis_breaker_enter(nori__redis_breaker *b, const char *display, bool *probe);

/* A reply arrived: closes the breaker and resets the count. */
void nori__redis_breaker_success(nori__redis_breaker *b);

/* A slow failure (timeout); `why` is kept for the fast-fail message. Opens
 * the breaker when the count reaches the threshold, or when `probe`. */
void nori__redis_breaker_failure(nori__redis_breaker *b, bool probe, const char *why);

/* How long a breaker opened by refused connections stays open before the
 * next probe (at most the configured cool-down). */
#define NORI__REDIS_REFUSED_COOLDOWN_MS 100

/* A refused (or reset) connection on a node whose refusals cost waits (a
 * cluster or Sentinel node): counted like a slow failure, without adding
 * to the timeouts counter; the breaker it opens is probed again after
 * NORI__REDIS_REFUSED_COOLDOWN_MS, since a refused probe costs nothing. */
void nori__redis_breaker_refused(nori__redis_breaker *b, bool probe, const char *why);

/* The probe ended with neither a reply nor a slow failure (a refused
 * connection, ENOMEM): the next call may probe at once. */
void nori__redis_breaker_leave(nori__redis_breaker *b);

#endif
