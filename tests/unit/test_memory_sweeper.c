// SPDX-License-Identifier: MIT
/*
 * The memory backend's active expiry thread: it reclaims expired entries
 * without any read, at its pace (a cycle every SWEEP_PERIOD_MS, sooner
 * while a backlog lasts), leaves live entries alone, and stops cleanly when
 * the backend is freed, also in the middle of a cycle, without waiting for
 * its next cycle; a child forked meanwhile can use and free the backend
 * (label "concurrency": run under ThreadSanitizer). The first two cases run
 * on the virtual clock (clock.h): the thread wakes only when the test moves
 * time, so the cases measure cycles, not a loaded machine's seconds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "clock.h"
#include "memory/memory.h"
#include "test_support.h"
#include "virtual_clock.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START 1000000
#define PERIOD_MS 100 /* SWEEP_PERIOD_MS */
#define BACKLOG_PERIOD_MS 25 /* SWEEP_BACKLOG_PERIOD_MS */

static double now_s(void)
{
    return (double)nori__real_us() / 1e6;
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int uninstall_clock(void **state)
{
    (void)state;
    nori_test_clock_uninstall();
    return 0;
}

/* Lets the sweeper run one cycle: moves the virtual clock to its next wake,
 * then waits (bounded) until it sleeps again. Returns the pause it took
 * before that cycle, in ms of virtual time. */
static int64_t one_cycle(void)
{
    assert_true(nori__clock_await_blocked(1, 10000));
    int64_t pause = nori__clock_next_wake() - nori_test_clock_now();
    nori__clock_advance(pause);
    assert_true(nori__clock_await_blocked(1, 10000));
    return pause;
}

typedef struct freeing {
    nori_backend *b;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
} freeing;

static void *free_thread(void *arg)
{
    freeing *f = arg;
    nori_backend_free(f->b);
    pthread_mutex_lock(&f->lock);
    f->done = true;
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

/*
 * nori_backend_free(b), bounded: fails the test when it has not returned
 * after 10 s of real time (a free takes at most a cycle's budget, 25 ms;
 * one that waited for the thread's next cycle would wait for the virtual
 * clock, which stands still: forever). Returns the seconds it took.
 */
static double free_within_10s(nori_backend *b)
{
    /* On the heap: when the free does not return, the test fails and the
     * thread still uses it (it is then left to leak). */
    freeing *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->b = b;
    pthread_mutex_init(&f->lock, NULL);
    assert_int_equal(nori__cond_init(&f->cond), 0);
    double t0 = now_s();
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, free_thread, f), 0);
    int64_t until = nori__real_ms() + 10000;
    pthread_mutex_lock(&f->lock);
    while (!f->done && nori__real_cond_wait_until(&f->cond, &f->lock, until) == 0)
        ;
    bool done = f->done;
    pthread_mutex_unlock(&f->lock);
    if (!done)
        fail_msg("nori_backend_free did not return within 10 s");
    pthread_join(t, NULL);
    double took = now_s() - t0;
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->lock);
    free(f);
    return took;
}

static void test_reclaims_without_reads(void **state)
{
    (void)state;
    nori_test_clock_install(START);
    nori_backend *b;
    assert_nori(nori_memory_backend_new(100000, &b), NORI_OK);
    char key[32];
    int n = 20000;
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "ttl:%d", i);
        assert_nori(nori_backend_set(b, key, "0123456789abcdef", 16, 1), NORI_OK);
    }
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "live:%d", i);
        assert_nori(nori_backend_set(b, key, "x", 1, i % 2 == 0 ? 0 : 3600), NORI_OK);
    }
    /* Before the TTL: a cycle every period, removing nothing. */
    nori_backend_stats st;
    while (nori_test_clock_now() + PERIOD_MS < START + 1000)
        assert_int_equal(one_cycle(), PERIOD_MS);
    assert_nori(nori_backend_get_stats(b, &st), NORI_OK);
    assert_int_equal(st.entries, n + 100);
    assert_int_equal(st.expired, 0);
    /* Past it: reclaimed by the cycles alone (no call touches the entries),
     * each a period or a backlog period after the one before. Each cycle
     * has a budget of CPU time, so how many it takes depends on the
     * machine: bounded generously (one is enough on an idle machine). */
    int cycles = 0;
    do {
        int64_t pause = one_cycle();
        assert_true(pause == PERIOD_MS || pause == BACKLOG_PERIOD_MS);
        assert_nori(nori_backend_get_stats(b, &st), NORI_OK);
    } while (st.entries > 100 && ++cycles < 1000);
    print_message("%d entries with ttl 1 s reclaimed %lld ms (virtual) after the last write, "
                  "in %d cycle(s) past the expiry; %llu expired, %llu bytes held\n",
                  n, (long long)(nori_test_clock_now() - START), cycles + 1,
                  (unsigned long long)st.expired, (unsigned long long)st.bytes);
    assert_int_equal(st.entries, 100);
    assert_int_equal(st.expired, n);
    assert_int_equal(st.hits + st.misses, 0);
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "live:%d", i);
        nori_buf out;
        assert_nori(nori_backend_get(b, key, &out), NORI_OK);
        nori_buf_free(&out);
    }
    free_within_10s(b);
}

/* Free right after writes, while a cycle may be running, or while the
 * thread waits for its next cycle: the thread is joined, nothing leaks
 * (ASan) and nothing races (TSan), and free does not wait for the next
 * cycle (free_within_10s). */
static void test_free_stops_the_thread(void **state)
{
    (void)state;
    nori_test_clock_install(START);
    double worst = 0;
    for (int round = 0; round < 30; round++) {
        nori_backend *b;
        assert_nori(nori_memory_backend_new(5000, &b), NORI_OK);
        char key[32];
        for (int i = 0; i < 2000; i++) {
            snprintf(key, sizeof key, "k%d", i);
            assert_nori(nori_backend_set(b, key, "v", 1, 1), NORI_OK);
        }
        /* Rounds 1, 4, 7...: past the TTL, so that the cycle this wakes has
         * work (the free may land in it); the others free a waiting thread. */
        if (round % 3 == 1)
            nori__clock_advance(1000 + PERIOD_MS);
        double took = free_within_10s(b);
        if (took > worst)
            worst = took;
    }
    print_message("slowest free: %.1f ms\n", worst * 1000);
}

/* A child forked while the expiry thread works can use and free the
 * backend: no shard lock inherited locked, no join of a missing thread. */
static void test_fork_while_sweeping(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori_memory_backend_new(100000, &b), NORI_OK);
    char key[32];
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 5000; i++) { /* keeps the sweeper busy */
            snprintf(key, sizeof key, "f%d:%d", round, i);
            assert_nori(nori_backend_set(b, key, "v", 1, 1), NORI_OK);
        }
        pause_ms(round % 4 == 0 ? 30 : 1);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            int ok = nori_backend_set(b, "child", "c", 1, 0) == NORI_OK;
            nori_buf out;
            ok = ok && nori_backend_get(b, "child", &out) == NORI_OK;
            nori_buf_free(&out);
            ok = ok && nori_backend_flush(b) == NORI_OK;
            nori_backend_free(b);
            _exit(ok ? 0 : 1);
        }
        /* Bounded wait for the child: 10 s. */
        int status = -1;
        double t0 = now_s();
        while (waitpid(pid, &status, WNOHANG) == 0) {
            if (now_s() - t0 > 10) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                fail_msg("child %d hung (round %d)", (int)pid, round);
            }
            pause_ms(2);
        }
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    nori_backend_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_reclaims_without_reads, uninstall_clock),
        cmocka_unit_test_teardown(test_free_stops_the_thread, uninstall_clock),
        cmocka_unit_test(test_fork_while_sweeping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
