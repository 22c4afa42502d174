// SPDX-License-Identifier: MIT
/*
 * The circuit breaker of one Redis server; see breaker.h.
 *
 * The closed state, the common case, costs one relaxed atomic load per call
 * and nothing else: the lock is taken only on transitions and while open.
 */
#include "redis/wire/breaker.h"

#include "clock.h"
#include "error.h"
#include "nori/cache.h"

#include <stdio.h>

void nori__redis_breaker_init(nori__redis_breaker *b, int threshold, int cooldown_ms)
{
    b->threshold = threshold;
    b->cooldown_ms = cooldown_ms;
    pthread_mutex_init(&b->lock, NULL);
    atomic_init(&b->state, NORI_CIRCUIT_CLOSED);
    atomic_init(&b->failures, 0);
    b->open_until = 0;
    b->why[0] = '\0';
    atomic_init(&b->opens, 0);
    atomic_init(&b->rejected, 0);
    atomic_init(&b->timeouts, 0);
}

void nori__redis_breaker_destroy(nori__redis_breaker *b)
{
    pthread_mutex_destroy(&b->lock);
}

int nori__redis_breaker_enter(nori__redis_breaker *b, const char *display, bool *probe)
{
    *probe = false;
    if (atomic_load_explicit(&b->state, memory_order_acquire) == NORI_CIRCUIT_CLOSED)
        return NORI_OK;
    int64_t now = nori__now_ms();
    pthread_mutex_lock(&b->lock);
    int state = atomic_load_explicit(&b->state, memory_order_relaxed);
    if (state == NORI_CIRCUIT_CLOSED) {
        pthread_mutex_unlock(&b->lock);
        return NORI_OK;
    }
    if (state == NORI_CIRCUIT_OPEN && now >= b->open_until) {
        atomic_store_explicit(&b->state, NORI_CIRCUIT_HALF_OPEN, memory_order_release);
        pthread_mutex_unlock(&b->lock);
        *probe = true;
        return NORI_OK;
    }
    char why[sizeof b->why];
    snprintf(why, sizeof why, "%s", b->why);
    long long left = state == NORI_CIRCUIT_OPEN ? (long long)(b->open_until - now) : 0;
    pthread_mutex_unlock(&b->lock);
    atomic_fetch_add_explicit(&b->rejected, 1, memory_order_relaxed);
    if (state == NORI_CIRCUIT_HALF_OPEN)
        return nori__fail(NORI_EBACKEND,
                          "redis %s: circuit open (a probe call is testing the server; opened "
                          "after %d consecutive failures, last: %s)",
                          display, b->threshold, why);
    return nori__fail(NORI_EBACKEND,
                      "redis %s: circuit open (failing fast for %lld ms more, after %d "
                      "consecutive failures; last: %s)",
                      display, left, b->threshold, why);
}

void nori__redis_breaker_success(nori__redis_breaker *b)
{
    if (atomic_load_explicit(&b->failures, memory_order_relaxed) != 0)
        atomic_store_explicit(&b->failures, 0, memory_order_relaxed);
    if (atomic_load_explicit(&b->state, memory_order_acquire) == NORI_CIRCUIT_CLOSED)
        return;
    /* The server answered (the probe, or a call that was already running
     * when the breaker opened): it is alive. */
    pthread_mutex_lock(&b->lock);
    atomic_store_explicit(&b->state, NORI_CIRCUIT_CLOSED, memory_order_release);
    pthread_mutex_unlock(&b->lock);
}

static void count_failure(nori__redis_breaker *b, bool probe, const char *why, int cooldown_ms);

void nori__redis_breaker_failure(nori__redis_breaker *b, bool probe, const char *why)
{
    atomic_fetch_add_explicit(&b->timeouts, 1, memory_order_relaxed);
    count_failure(b, probe, why, b->cooldown_ms);
}

/*
 * A refused connection costs its probe microseconds, not timeout_ms, so the
 * breaker it opens is probed again soon: a server that restarts in 300 ms is
 * used again about NORI__REDIS_REFUSED_COOLDOWN_MS after it is back, instead
 * of after the whole cool-down, while calls still fail fast in between.
 */
void nori__redis_breaker_refused(nori__redis_breaker *b, bool probe, const char *why)
{
    count_failure(b, probe, why,
                  b->cooldown_ms < NORI__REDIS_REFUSED_COOLDOWN_MS ? b->cooldown_ms
                                                                   : NORI__REDIS_REFUSED_COOLDOWN_MS);
}

static void count_failure(nori__redis_breaker *b, bool probe, const char *why, int cooldown_ms)
{
    if (b->threshold == 0)
        return;
    int n = atomic_fetch_add_explicit(&b->failures, 1, memory_order_relaxed) + 1;
    if (!probe && n < b->threshold)
        return;
    pthread_mutex_lock(&b->lock);
    int state = atomic_load_explicit(&b->state, memory_order_relaxed);
    /* Open (again) when the probe failed, or when the count is reached while
     * closed. Calls that were already running when it opened and fail later
     * do not push the cool-down further. */
    if (probe || state == NORI_CIRCUIT_CLOSED) {
        b->open_until = nori__now_ms() + cooldown_ms;
        snprintf(b->why, sizeof b->why, "%s", why);
        atomic_store_explicit(&b->state, NORI_CIRCUIT_OPEN, memory_order_release);
        atomic_fetch_add_explicit(&b->opens, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&b->lock);
}

void nori__redis_breaker_leave(nori__redis_breaker *b)
{
    pthread_mutex_lock(&b->lock);
    if (atomic_load_explicit(&b->state, memory_order_relaxed) == NORI_CIRCUIT_HALF_OPEN) {
        b->open_until = nori__now_ms();
        atomic_store_explicit(&b->state, NORI_CIRCUIT_OPEN, memory_order_release);
    }
    pthread_mutex_unlock(&b->lock);
}
