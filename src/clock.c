// SPDX-License-Identifier: MIT
/*
 * Time: the real clocks, and the virtual clock that tests install in their
 * place (see clock.h).
 *
 * The virtual clock's waiters. A thread blocked on the virtual clock is
 * registered in a list under v.lock with its deadline: a sleeper waits on
 * v.cond, which every advance broadcasts under v.lock (it checks the time
 * under that lock too, so it cannot miss one). A timed waiter waits on its
 * own condition variable with its own mutex (the caller's: the library's
 * signals must still reach it). An advance cannot broadcast that condition
 * under v.lock alone: the waiter reads the time under v.lock, releases it,
 * and only then enters pthread_cond_wait, so a broadcast in between would
 * be lost. So the advancing thread takes the waiter's mutex (which the
 * waiter holds from before it read the time until it is inside
 * pthread_cond_wait) and broadcasts under it, as any signaller of that
 * condition does.
 *
 * Lock order: a waiter's mutex, then v.lock. The advancing thread never
 * holds both: it marks the waiter `pinned` under v.lock (the waiter may not
 * unregister, its record lives on its stack), releases v.lock, takes the
 * mutex, broadcasts, releases it, and unpins under v.lock. A waiter woken
 * meanwhile that finds itself pinned releases its mutex (so the advancing
 * thread can take it) and waits on v.cond until unpinned. A waiter is
 * kicked once: it then returns, and its caller's next wait registers anew.
 */
#include "clock.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stddef.h>

/* ---- real clocks ---- */

static int64_t read_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Milliseconds without the 64-bit division of read_ns: the coarse read is
 * on the memory backend's get path. */
static int64_t read_ms(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t nori__real_ns(void)
{
    return read_ns(CLOCK_MONOTONIC);
}

int64_t nori__real_us(void)
{
    return read_ns(CLOCK_MONOTONIC) / 1000;
}

int64_t nori__real_ms(void)
{
    return read_ms(CLOCK_MONOTONIC);
}

int nori__poll_ms(int64_t real_deadline)
{
    int64_t left = real_deadline - nori__real_ms();
    return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

/* ---- conversions ---- */

struct timespec nori__ms_timespec(int64_t ms)
{
    if (ms < 0)
        ms = 0;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    return ts;
}

struct timeval nori__ms_timeval(int64_t ms)
{
    if (ms < 0)
        ms = 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

int64_t nori__timespec_ms(const struct timespec *ts)
{
    return (int64_t)ts->tv_sec * 1000 + ts->tv_nsec / 1000000;
}

struct timespec nori__timespec_in(clockid_t clk, int64_t ms)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    struct timespec d = nori__ms_timespec(ms);
    ts.tv_sec += d.tv_sec;
    ts.tv_nsec += d.tv_nsec;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* ---- the virtual clock's state ---- */

typedef struct vwaiter {
    struct vwaiter *prev, *next;
    int64_t deadline;
    pthread_cond_t *cond; /* NULL: a sleeper, on v.cond */
    pthread_mutex_t *mutex;
    bool pinned; /* an advancing thread is about to take mutex: stay registered */
    bool kicked; /* woken by an advance (or the clock's replacement) */
} vwaiter;

/* The virtual times, or NULL: the real clocks. */
static _Atomic(_Atomic int64_t *) vnow;  /* the monotonic base */
static _Atomic(_Atomic int64_t *) vwall; /* the wall clock */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC: time moved, a waiter came, a pin ended */
    vwaiter *waiters;
} v = {.lock = PTHREAD_MUTEX_INITIALIZER};
static pthread_once_t v_once = PTHREAD_ONCE_INIT;

static void v_init(void)
{
    nori__cond_init(&v.cond);
}

static inline _Atomic int64_t *virtual_cell(void)
{
    return atomic_load_explicit(&vnow, memory_order_acquire);
}

static inline _Atomic int64_t *virtual_wall(void)
{
    return atomic_load_explicit(&vwall, memory_order_acquire);
}

/* Called with v.lock held (as the do_* functions below). */
static void do_link(vwaiter *w)
{
    w->prev = NULL;
    w->next = v.waiters;
    if (v.waiters != NULL)
        v.waiters->prev = w;
    v.waiters = w;
    pthread_cond_broadcast(&v.cond); /* for nori__clock_await_blocked */
}

static void do_unlink(vwaiter *w)
{
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        v.waiters = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
}

/*
 * Wakes the timed waiters whose deadline *now passed (all: every one),
 * each once, by the protocol above. Sleepers are woken by the caller's
 * broadcast of v.cond. Releases v.lock while it takes a waiter's mutex.
 */
static void do_kick(_Atomic int64_t *now, bool all)
{
    for (;;) {
        vwaiter *w = v.waiters;
        while (w != NULL && (w->cond == NULL || w->kicked || w->pinned ||
                             (!all && atomic_load(now) < w->deadline)))
            w = w->next;
        if (w == NULL)
            return;
        w->pinned = true;
        pthread_mutex_unlock(&v.lock);
        pthread_mutex_lock(w->mutex);
        pthread_cond_broadcast(w->cond);
        pthread_mutex_unlock(w->mutex);
        pthread_mutex_lock(&v.lock);
        w->pinned = false;
        w->kicked = true;
        pthread_cond_broadcast(&v.cond); /* the waiter may be waiting for the pin to end */
    }
}

/* ---- logical time ---- */

int64_t nori__now_ms(void)
{
    _Atomic int64_t *c = virtual_cell();
    if (c != NULL)
        return atomic_load_explicit(c, memory_order_acquire);
    return nori__real_ms();
}

int64_t nori__now_coarse_ms(void)
{
    _Atomic int64_t *c = virtual_cell();
    if (c != NULL)
        return atomic_load_explicit(c, memory_order_acquire);
    return read_ms(CLOCK_MONOTONIC_COARSE);
}

struct timespec nori__wall_timespec(void)
{
    _Atomic int64_t *c = virtual_wall();
    if (c != NULL)
        return nori__ms_timespec(atomic_load_explicit(c, memory_order_acquire));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts;
}

int64_t nori__wall_ms(void)
{
    _Atomic int64_t *c = virtual_wall();
    if (c != NULL)
        return atomic_load_explicit(c, memory_order_acquire);
    return read_ms(CLOCK_REALTIME);
}

int64_t nori__wall_s(void)
{
    return nori__wall_ms() / 1000;
}

int64_t nori__deadline_after(int64_t timeout_ms)
{
    int64_t now = nori__now_ms();
    if (timeout_ms <= 0)
        return now;
    return timeout_ms > INT64_MAX - now ? INT64_MAX : now + timeout_ms;
}

int64_t nori__ms_left(int64_t deadline)
{
    int64_t now = nori__now_ms();
    return deadline > now ? deadline - now : 0;
}

bool nori__deadline_passed(int64_t deadline)
{
    return nori__now_ms() >= deadline;
}

void nori__sleep_until(int64_t deadline)
{
    _Atomic int64_t *c = virtual_cell();
    if (c != NULL) {
        pthread_once(&v_once, v_init);
        pthread_mutex_lock(&v.lock);
        vwaiter w = {.deadline = deadline};
        do_link(&w);
        while (virtual_cell() == c && atomic_load(c) < deadline)
            pthread_cond_wait(&v.cond, &v.lock);
        do_unlink(&w);
        pthread_mutex_unlock(&v.lock);
        return;
    }
    struct timespec at = nori__ms_timespec(deadline);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) == EINTR)
        ;
}

void nori__sleep_ms(int64_t ms)
{
    if (ms > 0)
        nori__sleep_until(nori__deadline_after(ms));
}

int nori__cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);
    if (rc != 0)
        return rc;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    rc = pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
    return rc;
}

int nori__real_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *mutex,
                               int64_t real_deadline)
{
    struct timespec at = nori__ms_timespec(real_deadline);
    return pthread_cond_timedwait(cond, mutex, &at) == ETIMEDOUT ? ETIMEDOUT : 0;
}

int nori__cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *mutex, int64_t deadline)
{
    _Atomic int64_t *c = virtual_cell();
    if (c == NULL)
        return nori__real_cond_wait_until(cond, mutex, deadline);
    pthread_once(&v_once, v_init);
    pthread_mutex_lock(&v.lock);
    if (virtual_cell() != c) { /* replaced meanwhile: as a wakeup */
        pthread_mutex_unlock(&v.lock);
        return 0;
    }
    if (atomic_load(c) >= deadline) {
        pthread_mutex_unlock(&v.lock);
        return ETIMEDOUT;
    }
    vwaiter w = {.deadline = deadline, .cond = cond, .mutex = mutex};
    do_link(&w);
    pthread_mutex_unlock(&v.lock);
    pthread_cond_wait(cond, mutex);
    pthread_mutex_lock(&v.lock);
    while (w.pinned) {
        /* An advance is about to take mutex to signal us: let it. */
        pthread_mutex_unlock(mutex);
        while (w.pinned)
            pthread_cond_wait(&v.cond, &v.lock);
        pthread_mutex_unlock(&v.lock); /* lock order: mutex first */
        pthread_mutex_lock(mutex);
        pthread_mutex_lock(&v.lock);
    }
    do_unlink(&w);
    int rc = virtual_cell() == c && atomic_load(c) >= deadline ? ETIMEDOUT : 0;
    pthread_mutex_unlock(&v.lock);
    return rc;
}

/* ---- real waits ---- */

void nori__nap_backoff(long *nap_ns)
{
    if (*nap_ns < 4) {
        (*nap_ns)++;
        sched_yield();
        return;
    }
    *nap_ns = *nap_ns < 50000 ? 50000 : *nap_ns * 2 > 1000000 ? 1000000 : *nap_ns * 2;
    struct timespec d = {0, *nap_ns};
    nanosleep(&d, NULL);
}

int nori__mutex_lock_within(pthread_mutex_t *m, int64_t timeout_ms)
{
    struct timespec until = nori__timespec_in(CLOCK_REALTIME, timeout_ms);
    return pthread_mutex_timedlock(m, &until);
}

/* ---- the virtual clock's controls ---- */

void nori__clock_override(_Atomic int64_t *mono, _Atomic int64_t *wall)
{
    pthread_once(&v_once, v_init);
    pthread_mutex_lock(&v.lock);
    _Atomic int64_t *old = virtual_cell();
    atomic_store_explicit(&vwall, wall, memory_order_release);
    atomic_store_explicit(&vnow, mono, memory_order_release);
    pthread_cond_broadcast(&v.cond); /* sleepers see the clock replaced */
    if (old != NULL)
        do_kick(old, true);
    pthread_mutex_unlock(&v.lock);
}

void nori__clock_advance(int64_t ms)
{
    pthread_once(&v_once, v_init);
    pthread_mutex_lock(&v.lock);
    _Atomic int64_t *c = virtual_cell(), *w = virtual_wall();
    if (w != NULL && w != c && ms > 0)
        atomic_fetch_add(w, ms);
    if (c != NULL && ms > 0) {
        atomic_fetch_add(c, ms);
        pthread_cond_broadcast(&v.cond);
        do_kick(c, false);
    }
    pthread_mutex_unlock(&v.lock);
}

/* Waiters still waiting for the time to pass. Called with v.lock held. */
static int do_count_blocked(_Atomic int64_t *c, int64_t *next)
{
    int n = 0;
    *next = INT64_MAX;
    int64_t now = c != NULL ? atomic_load(c) : INT64_MAX;
    for (const vwaiter *w = v.waiters; w != NULL; w = w->next) {
        if (w->kicked || now >= w->deadline)
            continue;
        n++;
        if (w->deadline < *next)
            *next = w->deadline;
    }
    return n;
}

int nori__clock_blocked(void)
{
    pthread_once(&v_once, v_init);
    int64_t next;
    pthread_mutex_lock(&v.lock);
    int n = do_count_blocked(virtual_cell(), &next);
    pthread_mutex_unlock(&v.lock);
    return n;
}

int64_t nori__clock_next_wake(void)
{
    pthread_once(&v_once, v_init);
    int64_t next;
    pthread_mutex_lock(&v.lock);
    do_count_blocked(virtual_cell(), &next);
    pthread_mutex_unlock(&v.lock);
    return next;
}

bool nori__clock_await_blocked(int n, int64_t real_timeout_ms)
{
    pthread_once(&v_once, v_init);
    int64_t until = nori__real_ms() + real_timeout_ms, next;
    pthread_mutex_lock(&v.lock);
    int have;
    while ((have = do_count_blocked(virtual_cell(), &next)) < n &&
           nori__real_cond_wait_until(&v.cond, &v.lock, until) == 0)
        ;
    if (have < n)
        have = do_count_blocked(virtual_cell(), &next);
    pthread_mutex_unlock(&v.lock);
    return have >= n;
}
