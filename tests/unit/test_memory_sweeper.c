/*
 * The memory backend's active expiry thread, on the real clock: it reclaims
 * expired entries without any read (within about 2 s), leaves live entries
 * alone, and stops cleanly when the backend is freed, also in the middle of
 * a cycle; a child forked meanwhile can use and free the backend (label
 * "concurrency": run under ThreadSanitizer).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "memory/memory.h"
#include "test_support.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_reclaims_without_reads(void **state)
{
    (void)state;
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
    double start = now_s();
    /* Await the condition, polling the stats (no call touches the entries);
     * bounded at 10 s. */
    nori_backend_stats st;
    for (;;) {
        assert_nori(nori_backend_get_stats(b, &st), NORI_OK);
        if (st.entries <= 100 || now_s() - start > 10)
            break;
        pause_ms(20);
    }
    double took = now_s() - start;
    print_message("%d entries with ttl 1 s reclaimed %.2f s after the last write; %llu expired,"
                  " %llu bytes held\n",
                  n, took, (unsigned long long)st.expired, (unsigned long long)st.bytes);
    assert_int_equal(st.entries, 100);
    assert_int_equal(st.expired, n);
    assert_int_equal(st.hits + st.misses, 0);
    assert_true(took < 5.0); /* 1 s ttl + a sweep pass; generous for sanitizer builds */
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "live:%d", i);
        nori_buf out;
        assert_nori(nori_backend_get(b, key, &out), NORI_OK);
        nori_buf_free(&out);
    }
    nori_backend_free(b);
}

static void test_free_stops_the_thread(void **state)
{
    (void)state;
    /* Free right after writes and while cycles may be running: the thread
     * is joined, nothing leaks (ASan) and nothing races (TSan). */
    double worst = 0;
    for (int round = 0; round < 30; round++) {
        nori_backend *b;
        assert_nori(nori_memory_backend_new(5000, &b), NORI_OK);
        char key[32];
        for (int i = 0; i < 2000; i++) {
            snprintf(key, sizeof key, "k%d", i);
            assert_nori(nori_backend_set(b, key, "v", 1, 1), NORI_OK);
        }
        if (round % 3 == 0)
            pause_ms(round * 4); /* sometimes across a cycle boundary */
        double t0 = now_s();
        nori_backend_free(b);
        double t = now_s() - t0;
        if (t > worst)
            worst = t;
    }
    print_message("slowest free: %.1f ms\n", worst * 1000);
    assert_true(worst < 1.0);
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
        cmocka_unit_test(test_reclaims_without_reads),
        cmocka_unit_test(test_free_stops_the_thread),
        cmocka_unit_test(test_fork_while_sweeping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
