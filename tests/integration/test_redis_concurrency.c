// SPDX-License-Identifier: MIT
/*
 * Concurrency: increments through incr and through atomic_update lose
 * nothing and duplicate nothing.
 *  - 8 threads x 1000 on one key through one backend handle (memory and
 *    Redis): the returned values are exactly 1..8000.
 *  - 4 forked processes x 1000, each with its own Redis backend: exactly
 *    1..4000 between them, collected through pipes.
 * Also run under ThreadSanitizer (label "concurrency").
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis_server.h"
#include "test_support.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREADS 8
#define PROCS 4
#define PER_WORKER 1000

static nori_test_redis *server;

static int group_setup(void **state)
{
    (void)state;
    server = nori_test_redis_start(NULL);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    nori_test_redis_stop(server);
    server = NULL;
    return 0;
}

/* One increment by either primitive; returns the new value or -1. */
static int64_t increment(nori_backend *b, const char *key, bool use_update)
{
    if (!use_update) {
        int64_t n;
        return nori_backend_incr(b, key, 0, &n) == NORI_OK ? n : -1;
    }
    nori_buf out;
    if (nori_backend_atomic_update(b, key, nori_test_add_one, NULL, 0, &out) != NORI_OK)
        return -1;
    int64_t n = strtoll(out.data, NULL, 10);
    nori_buf_free(&out);
    return n;
}

typedef struct {
    nori_backend *b;
    bool use_update;
    int64_t got[PER_WORKER];
    int failures;
    char error[256];
} worker;

static void *thread_main(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < PER_WORKER; i++) {
        w->got[i] = increment(w->b, "shared", w->use_update);
        if (w->got[i] < 0 && w->failures++ == 0)
            snprintf(w->error, sizeof w->error, "%s", nori_last_error());
    }
    return NULL;
}

/* Asserts that values[0..n) is a permutation of 1..n. */
static void assert_exactly_1_to_n(const int64_t *values, size_t n)
{
    char *seen = calloc(n + 1, 1);
    assert_non_null(seen);
    for (size_t i = 0; i < n; i++) {
        if (values[i] < 1 || (size_t)values[i] > n)
            fail_msg("value %lld out of 1..%zu", (long long)values[i], n);
        if (seen[values[i]])
            fail_msg("value %lld returned twice", (long long)values[i]);
        seen[values[i]] = 1;
    }
    free(seen);
}

static void run_threads(nori_backend *b, bool use_update)
{
    assert_nori(nori_backend_delete(b, "shared"), NORI_OK);
    worker *w = calloc(THREADS, sizeof *w);
    assert_non_null(w);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i].b = b;
        w[i].use_update = use_update;
        assert_int_equal(pthread_create(&t[i], NULL, thread_main, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    int64_t *all = malloc(sizeof(int64_t) * THREADS * PER_WORKER);
    assert_non_null(all);
    for (int i = 0; i < THREADS; i++) {
        if (w[i].failures > 0)
            fail_msg("thread %d: %d failures, first: %s", i, w[i].failures, w[i].error);
        memcpy(all + i * PER_WORKER, w[i].got, sizeof w[i].got);
    }
    assert_exactly_1_to_n(all, THREADS * PER_WORKER);
    nori_buf v;
    assert_nori(nori_backend_get(b, "shared", &v), NORI_OK);
    assert_string_equal(v.data, "8000");
    nori_buf_free(&v);
    free(all);
    free(w);
}

static void test_threads_incr_memory(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori_memory_backend_new(100, &b), NORI_OK);
    run_threads(b, false);
    run_threads(b, true);
    nori_backend_free(b);
}

/*
 * These tests check exactness under contention, not timeouts: a generous
 * per-command deadline keeps a loaded machine (sanitizers, parallel ctest on
 * two cores) from failing a call that a hung server would fail too, only
 * later. The timeout itself is tested in test_redis_faults and
 * test_redis_hostile.
 */
static const char *exact_url(const char *extra)
{
    static char url[300];
    snprintf(url, sizeof url, "%s?timeout_ms=10000%s", server->url, extra);
    return url;
}

static void test_threads_incr_redis(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori_redis_backend_new(exact_url(""), &b), NORI_OK);
    run_threads(b, false);
    nori_backend_free(b);
}

static void test_threads_update_redis(void **state)
{
    (void)state;
    nori_backend *b;
    /* A small pool: threads beyond it open and close extra connections. */
    assert_nori(nori_redis_backend_new(exact_url("&pool_size=2"), &b), NORI_OK);
    run_threads(b, true);
    nori_backend_free(b);
}

/* Child: its own backend, PER_WORKER increments, values written to fd as
 * int64s. Exit status 0 on success. */
static void child_main(int fd, bool use_update)
{
    nori_backend *b;
    if (nori_redis_backend_new(exact_url(""), &b) != NORI_OK)
        _exit(2);
    int64_t got[PER_WORKER];
    for (int i = 0; i < PER_WORKER; i++) {
        got[i] = increment(b, "procs", use_update);
        if (got[i] < 0) {
            fprintf(stderr, "child: %s\n", nori_last_error());
            _exit(3);
        }
    }
    nori_backend_free(b);
    size_t off = 0;
    while (off < sizeof got) {
        ssize_t n = write(fd, (char *)got + off, sizeof got - off);
        if (n <= 0)
            _exit(4);
        off += (size_t)n;
    }
    _exit(0);
}

static void run_processes(bool use_update)
{
    nori_backend *b;
    assert_nori(nori_redis_backend_new(exact_url(""), &b), NORI_OK);
    assert_nori(nori_backend_delete(b, "procs"), NORI_OK);
    pid_t pids[PROCS];
    int fds[PROCS];
    for (int i = 0; i < PROCS; i++) {
        int p[2];
        assert_int_equal(pipe(p), 0);
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            close(p[0]);
            child_main(p[1], use_update);
        }
        close(p[1]);
        fds[i] = p[0];
    }
    int64_t *all = malloc(sizeof(int64_t) * PROCS * PER_WORKER);
    assert_non_null(all);
    for (int i = 0; i < PROCS; i++) {
        char *dst = (char *)(all + i * PER_WORKER);
        size_t want = sizeof(int64_t) * PER_WORKER, off = 0;
        while (off < want) {
            ssize_t n = read(fds[i], dst + off, want - off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            off += (size_t)n;
        }
        close(fds[i]);
        int status;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("child %d failed (status %d)", i, status);
        assert_int_equal(off, want);
    }
    assert_exactly_1_to_n(all, PROCS * PER_WORKER);
    nori_buf v;
    assert_nori(nori_backend_get(b, "procs", &v), NORI_OK);
    assert_string_equal(v.data, "4000");
    nori_buf_free(&v);
    free(all);
    nori_backend_free(b);
}

static void test_processes_incr(void **state)
{
    (void)state;
    run_processes(false);
}

static void test_processes_update(void **state)
{
    (void)state;
    run_processes(true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_incr_memory),
        cmocka_unit_test(test_threads_incr_redis),
        cmocka_unit_test(test_threads_update_redis),
        cmocka_unit_test(test_processes_incr),
        cmocka_unit_test(test_processes_update),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
