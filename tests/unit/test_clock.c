// SPDX-License-Identifier: MIT
/*
 * The library's clock (src/clock.h): the real reads and conversions, and
 * the virtual clock that tests install in its place: reads, sleeps and
 * timed waits that end only when the clock is advanced past them (or, for
 * a timed wait, when signalled), no wakeup lost between a waiter's look at
 * the time and its wait, and the runner that moves time by itself. Label
 * "concurrency": run under ThreadSanitizer too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_support.h"
#include "virtual_clock.h"

#include "clock.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#define START 1000000

static int teardown(void **state)
{
    (void)state;
    nori_test_clock_uninstall();
    return 0;
}

/* ---- real time ---- */

static void test_real_reads_and_conversions(void **state)
{
    (void)state;
    int64_t a = nori__real_ms(), b = nori__now_ms(), c = nori__real_ms();
    assert_true(a <= b && b <= c); /* no virtual clock: the same clock */
    assert_true(nori__now_coarse_ms() <= nori__now_ms());
    int64_t wall = nori__wall_ms();
    time_t t = time(NULL);
    assert_true(wall / 1000 >= t - 1 && wall / 1000 <= t + 1);
    assert_true(nori__real_us() / 1000 >= a && nori__real_ns() / 1000000 >= a);

    struct timespec ts = nori__ms_timespec(2345);
    assert_int_equal(ts.tv_sec, 2);
    assert_int_equal(ts.tv_nsec, 345000000L);
    assert_int_equal(nori__timespec_ms(&ts), 2345);
    struct timeval tv = nori__ms_timeval(1999);
    assert_int_equal(tv.tv_sec, 1);
    assert_int_equal(tv.tv_usec, 999000);
    ts = nori__ms_timespec(-5); /* a duration is never negative */
    assert_int_equal(ts.tv_sec, 0);
    assert_int_equal(ts.tv_nsec, 0);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    struct timespec in = nori__timespec_in(CLOCK_MONOTONIC, 1500);
    int64_t d = nori__timespec_ms(&in) - nori__timespec_ms(&now);
    assert_true(d >= 1500 && d < 1500 + 1000);
    assert_true(in.tv_nsec >= 0 && in.tv_nsec < 1000000000L);

    assert_int_equal(nori__poll_ms(nori__real_ms() - 10), 0);
    assert_int_equal(nori__poll_ms(INT64_MAX), INT32_MAX);
    int p = nori__poll_ms(nori__real_ms() + 5000);
    assert_true(p > 4000 && p <= 5000);

    assert_true(nori__deadline_after(INT64_MAX) == INT64_MAX); /* saturates */
    int64_t now_ms = nori__now_ms();
    assert_true(nori__deadline_after(-7) >= now_ms && nori__deadline_after(-7) <= now_ms + 1000);
    assert_true(nori__deadline_passed(now_ms));
    assert_false(nori__deadline_passed(now_ms + 60000));
    assert_int_equal(nori__ms_left(now_ms - 1), 0);
}

/* The wait for another thread's progress: four yields, then naps of 50 us
 * doubling to 1 ms. */
static void test_nap_backoff(void **state)
{
    (void)state;
    long nap = 0;
    const long want[] = {1, 2, 3, 4, 50000, 100000, 200000, 400000, 800000, 1000000, 1000000};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        nori__nap_backoff(&nap);
        assert_int_equal(nap, want[i]);
    }
}

typedef struct holder {
    pthread_mutex_t *m;
    atomic_bool holding, release;
} holder;

static void *hold_until_told(void *arg)
{
    holder *h = arg;
    pthread_mutex_lock(h->m);
    atomic_store(&h->holding, true);
    long nap = 0;
    while (!atomic_load(&h->release))
        nori__nap_backoff(&nap);
    pthread_mutex_unlock(h->m);
    return NULL;
}

#ifndef __SANITIZE_THREAD__
static pthread_mutex_t held;

static void *hold_and_die(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&held); /* never unlocked: the owner dies */
    return NULL;
}
#endif

/* pthread_mutex_timedlock with a bound: on a robust mutex whose owner died
 * it says so (EOWNERDEAD) and holds the lock; held by a live thread it
 * times out, after the bound. */
static void test_mutex_lock_within(void **state)
{
    (void)state;
    pthread_t t;
#ifndef __SANITIZE_THREAD__
    /* Not under TSan: its pthread_mutex_timedlock takes only 0 for "locked"
     * (its pthread_mutex_lock knows EOWNERDEAD), so it would report the
     * unlock of a lock it thinks is not held. */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    assert_int_equal(pthread_mutex_init(&held, &ma), 0);
    pthread_mutexattr_destroy(&ma);
    assert_int_equal(pthread_create(&t, NULL, hold_and_die, NULL), 0);
    pthread_join(t, NULL);
    assert_int_equal(nori__mutex_lock_within(&held, 1000), EOWNERDEAD);
    assert_int_equal(pthread_mutex_consistent(&held), 0);
    pthread_mutex_unlock(&held);
    assert_int_equal(nori__mutex_lock_within(&held, 1000), 0);
    pthread_mutex_unlock(&held);
    pthread_mutex_destroy(&held);
#endif

    pthread_mutex_t busy = PTHREAD_MUTEX_INITIALIZER;
    holder h = {&busy, false, false};
    assert_int_equal(pthread_create(&t, NULL, hold_until_told, &h), 0);
    long nap = 0;
    while (!atomic_load(&h.holding))
        nori__nap_backoff(&nap);
    int64_t t0 = nori__real_ms();
    assert_int_equal(nori__mutex_lock_within(&busy, 50), ETIMEDOUT);
    /* CLOCK_REALTIME measures that bound: a wall-clock step could shorten
     * it, so only a wide floor is asserted. */
    assert_true(nori__real_ms() - t0 >= 40);
    atomic_store(&h.release, true);
    pthread_join(t, NULL);
    assert_int_equal(nori__mutex_lock_within(&busy, 50), 0);
    pthread_mutex_unlock(&busy);
}

/* ---- the virtual clock ---- */

static void test_virtual_reads(void **state)
{
    (void)state;
    nori_test_clock_install(START);
    assert_int_equal(nori__now_ms(), START);
    assert_int_equal(nori__now_coarse_ms(), START);
    assert_int_equal(nori__wall_ms(), START);
    assert_int_equal(nori__wall_s(), START / 1000);
    struct timespec w = nori__wall_timespec();
    assert_int_equal(nori__timespec_ms(&w), START);
    nori__clock_advance(1234);
    assert_int_equal(nori__now_ms(), START + 1234);
    assert_int_equal(nori__wall_ms(), START + 1234);
    assert_int_equal(nori__ms_left(START + 2000), 2000 - 1234);
    assert_int_equal(nori__clock_next_wake(), INT64_MAX);
    assert_int_equal(nori__clock_blocked(), 0);
    int64_t real = nori__real_ms(); /* real time goes on */
    assert_true(real > START + 1234 || real < START);
    nori_test_clock_uninstall();
    assert_true(nori__now_ms() != START + 1234);
    nori__clock_advance(5); /* without a virtual clock: nothing */
}

/* Only the wall clock virtual (forked processes sharing a test clock): the
 * monotonic base, sleeps included, stays real. */
static void test_virtual_wall_alone(void **state)
{
    (void)state;
    static _Atomic int64_t wall = 1700000000000;
    nori__clock_override(NULL, &wall);
    assert_int_equal(nori__wall_ms(), 1700000000000);
    int64_t t0 = nori__real_ms();
    assert_true(nori__now_ms() >= t0 && nori__now_ms() < t0 + 1000);
    nori__sleep_ms(20);
    assert_true(nori__real_ms() - t0 >= 20);
    nori__clock_advance(10);
    assert_int_equal(nori__wall_ms(), 1700000000010);
    nori__clock_override(NULL, NULL);
}

typedef struct sleeper {
    int64_t ms;
    atomic_bool done;
    int64_t woke_at;
} sleeper;

static void *sleep_thread(void *arg)
{
    sleeper *s = arg;
    nori__sleep_ms(s->ms);
    s->woke_at = nori__now_ms();
    atomic_store(&s->done, true);
    return NULL;
}

/* A sleep ends when the clock is advanced past its end, not before, and
 * not by the passing of real time. */
static void test_virtual_sleep(void **state)
{
    (void)state;
    nori_test_clock_install(START);
    sleeper s = {.ms = 100};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, sleep_thread, &s), 0);
    assert_true(nori__clock_await_blocked(1, 10000));
    assert_int_equal(nori__clock_next_wake(), START + 100);
    nori__clock_advance(99);
    assert_true(nori__clock_await_blocked(1, 10000)); /* still asleep */
    assert_false(atomic_load(&s.done));
    nori__clock_advance(1);
    pthread_join(t, NULL);
    assert_true(atomic_load(&s.done));
    assert_int_equal(s.woke_at, START + 100);
    assert_int_equal(nori__clock_blocked(), 0);
    nori__sleep_ms(0); /* nothing to wait for */
    nori__sleep_until(START); /* passed */
}

typedef struct waiter {
    pthread_mutex_t m;
    pthread_cond_t c;
    bool signalled;
    int64_t deadline;
    int rc;
    atomic_bool done;
} waiter;

static void *wait_thread(void *arg)
{
    waiter *w = arg;
    pthread_mutex_lock(&w->m);
    int rc = 0;
    while (!w->signalled && rc == 0)
        rc = nori__cond_wait_until(&w->c, &w->m, w->deadline);
    w->rc = rc;
    pthread_mutex_unlock(&w->m);
    atomic_store(&w->done, true);
    return NULL;
}

/* One wait, whatever ended it. */
static void *wait_once_thread(void *arg)
{
    waiter *w = arg;
    pthread_mutex_lock(&w->m);
    w->rc = nori__cond_wait_until(&w->c, &w->m, w->deadline);
    pthread_mutex_unlock(&w->m);
    atomic_store(&w->done, true);
    return NULL;
}

static void waiter_init(waiter *w, int64_t deadline)
{
    pthread_mutex_init(&w->m, NULL);
    assert_int_equal(nori__cond_init(&w->c), 0);
    w->signalled = false;
    w->deadline = deadline;
    w->rc = -1;
    atomic_store(&w->done, false);
}

static void waiter_destroy(waiter *w)
{
    pthread_cond_destroy(&w->c);
    pthread_mutex_destroy(&w->m);
}

/* A timed wait ends on a signal (0) with the clock still, or when the clock
 * is advanced to its deadline (ETIMEDOUT). */
static void test_virtual_timed_wait(void **state)
{
    (void)state;
    nori_test_clock_install(START);
    waiter w;
    waiter_init(&w, START + 150);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wait_thread, &w), 0);
    assert_true(nori__clock_await_blocked(1, 10000));
    pthread_mutex_lock(&w.m);
    w.signalled = true;
    pthread_cond_signal(&w.c);
    pthread_mutex_unlock(&w.m);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, 0);
    assert_int_equal(nori__now_ms(), START);

    w.signalled = false;
    atomic_store(&w.done, false);
    assert_int_equal(pthread_create(&t, NULL, wait_thread, &w), 0);
    assert_true(nori__clock_await_blocked(1, 10000));
    nori__clock_advance(149);
    assert_true(nori__clock_await_blocked(1, 10000));
    assert_false(atomic_load(&w.done));
    nori__clock_advance(1);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, ETIMEDOUT);

    /* A deadline already passed: at once. */
    pthread_mutex_lock(&w.m);
    assert_int_equal(nori__cond_wait_until(&w.c, &w.m, START), ETIMEDOUT);
    pthread_mutex_unlock(&w.m);
    waiter_destroy(&w);
}

/* Replacing the virtual clock wakes whoever waits on it. */
static void test_virtual_replaced(void **state)
{
    (void)state;
    nori_test_clock_install(START);
    sleeper s = {.ms = 1000000};
    waiter w;
    waiter_init(&w, START + 1000000);
    pthread_t ts, tw;
    assert_int_equal(pthread_create(&ts, NULL, sleep_thread, &s), 0);
    assert_int_equal(pthread_create(&tw, NULL, wait_once_thread, &w), 0);
    assert_true(nori__clock_await_blocked(2, 10000));
    nori_test_clock_uninstall();
    pthread_join(ts, NULL);
    pthread_join(tw, NULL);
    assert_true(atomic_load(&s.done));
    assert_int_equal(w.rc, 0); /* woken, unsignalled: the caller looks again */
    waiter_destroy(&w);
}

/*
 * No lost wakeup: waiters keep waiting 1 ms of virtual time while another
 * thread keeps advancing it by 1 ms. A wait that missed its advance would
 * never end (time only moves on, its deadline stays passed and nobody
 * would wake it); the test bounds that at 60 s of real time.
 */
#define STRESS_WAITERS 4
#define STRESS_ROUNDS 3000

static atomic_int stress_done;
static pthread_mutex_t stress_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stress_c;

static void *stress_waiter(void *arg)
{
    (void)arg;
    for (int i = 0; i < STRESS_ROUNDS; i++) {
        pthread_mutex_lock(&stress_m);
        int64_t deadline = nori__now_ms() + 1;
        while (nori__cond_wait_until(&stress_c, &stress_m, deadline) == 0)
            ;
        pthread_mutex_unlock(&stress_m);
        if (i % 2 == 0)
            nori__sleep_ms(1); /* sleepers too */
    }
    atomic_fetch_add(&stress_done, 1);
    return NULL;
}

static void test_virtual_no_lost_wakeup(void **state)
{
    (void)state;
    nori_test_clock_install(START);
    assert_int_equal(nori__cond_init(&stress_c), 0);
    atomic_store(&stress_done, 0);
    pthread_t t[STRESS_WAITERS];
    for (int i = 0; i < STRESS_WAITERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, stress_waiter, NULL), 0);
    int64_t until = nori__real_ms() + 60000;
    while (atomic_load(&stress_done) < STRESS_WAITERS && nori__real_ms() < until)
        nori__clock_advance(1);
    assert_int_equal(atomic_load(&stress_done), STRESS_WAITERS);
    for (int i = 0; i < STRESS_WAITERS; i++)
        pthread_join(t[i], NULL);
    pthread_cond_destroy(&stress_c);
}

/* Nobody waiting: the look for a blocked thread ends at its bound. */
static void test_await_blocked_bound(void **state)
{
    (void)state;
    nori_test_clock_install(START);
    int64_t t0 = nori__real_ms();
    assert_false(nori__clock_await_blocked(1, 50));
    assert_true(nori__real_ms() - t0 >= 50);
}

static void *three_sleeps(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++)
        nori__sleep_ms(1000);
    return NULL;
}

/* The runner moves time whenever a thread waits: three sleeps of 1 s end
 * without anyone advancing the clock, 3 s of virtual time later. */
static void test_runner(void **state)
{
    (void)state;
    nori_test_clock_install(START);
    nori_test_clock_run();
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, three_sleeps, NULL), 0);
    pthread_join(t, NULL);
    assert_int_equal(nori_test_clock_now(), START + 3000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_reads_and_conversions),
        cmocka_unit_test(test_nap_backoff),
        cmocka_unit_test(test_mutex_lock_within),
        cmocka_unit_test_teardown(test_virtual_reads, teardown),
        cmocka_unit_test_teardown(test_virtual_wall_alone, teardown),
        cmocka_unit_test_teardown(test_virtual_sleep, teardown),
        cmocka_unit_test_teardown(test_virtual_timed_wait, teardown),
        cmocka_unit_test_teardown(test_virtual_replaced, teardown),
        cmocka_unit_test_teardown(test_virtual_no_lost_wakeup, teardown),
        cmocka_unit_test_teardown(test_await_blocked_bound, teardown),
        cmocka_unit_test_teardown(test_runner, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
