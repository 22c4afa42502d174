/*
 * Regression tests for the outside review of the memory backend (issue 10):
 *  - item 1: progress when more threads insert new keys than max_keys allows
 *    (a livelock before), with the bound audited under the locks meanwhile;
 *  - item 2: the re-entry guard survives a callback that calls another
 *    backend, get_stats works from a callback, and a slow callback on the
 *    least recently used key does not stall an unrelated insert;
 *  - item 15: a small overwrite does not keep a much larger block;
 *  - item 22: get_into(NULL, 0) of an empty value.
 * A hang is the failure mode of several of these: a watchdog (alarm) turns
 * it into a failed test instead of a stuck CI job. Label "concurrency":
 * also run under ThreadSanitizer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "memory/memory.h"
#include "test_support.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void on_watchdog(int sig)
{
    (void)sig;
    static const char msg[] = "watchdog: the test hung (deadlock or livelock)\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(1);
}

/* Every test here fails (instead of hanging) after `seconds`. */
static void watchdog(unsigned seconds)
{
    signal(SIGALRM, on_watchdog);
    alarm(seconds);
}

static struct timespec deadline_in_ms(long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- item 1: progress with more inserting threads than places ---- */

#define INSERTS_PER_THREAD 2000

typedef struct {
    nori_backend *b;
    int id;
    int errors;
} inserter;

typedef struct {
    nori_backend *b;
    size_t max_keys;
    _Atomic int *stop;
    pthread_barrier_t *started;
    int over_bound;
    int audits;
} auditor;

static void *insert_run(void *arg)
{
    inserter *w = arg;
    char key[48];
    for (int i = 0; i < INSERTS_PER_THREAD; i++) {
        snprintf(key, sizeof key, "t%d-k%d", w->id, i);
        if (nori_backend_set(w->b, key, "v", 1, 0) != NORI_OK) {
            if (w->errors++ == 0)
                print_error("set %s: %s\n", key, nori_last_error());
        }
    }
    return NULL;
}

static void *audit_run(void *arg)
{
    auditor *a = arg;
    bool first = true;
    while (!atomic_load(a->stop)) {
        int64_t held = nori__memory_audit(a->b);
        if (held < 0 || (size_t)held > a->max_keys)
            a->over_bound++;
        a->audits++;
        if (first) /* the inserters start once the auditor runs */
            pthread_barrier_wait(a->started);
        first = false;
    }
    return NULL;
}

static void check_progress(size_t max_keys, int nthreads)
{
    nori_backend *b;
    assert_nori(nori_memory_backend_new(max_keys, &b), NORI_OK);
    pthread_t threads[32], audit_thread;
    inserter workers[32];
    _Atomic int stop = 0;
    pthread_barrier_t started;
    pthread_barrier_init(&started, NULL, 2);
    auditor a = {b, max_keys, &stop, &started, 0, 0};
    assert_int_equal(pthread_create(&audit_thread, NULL, audit_run, &a), 0);
    pthread_barrier_wait(&started);
    double start = now_s();
    for (int t = 0; t < nthreads; t++) {
        workers[t] = (inserter){b, t, 0};
        assert_int_equal(pthread_create(&threads[t], NULL, insert_run, &workers[t]), 0);
    }
    for (int t = 0; t < nthreads; t++) {
        pthread_join(threads[t], NULL);
        assert_int_equal(workers[t].errors, 0);
    }
    double took = now_s() - start;
    atomic_store(&stop, 1);
    pthread_join(audit_thread, NULL);
    pthread_barrier_destroy(&started);
    assert_int_equal(a.over_bound, 0);
    assert_true(a.audits > 0);
    int64_t held = nori__memory_audit(b);
    assert_true(held >= 0 && (size_t)held <= max_keys);
    print_message("max_keys=%zu threads=%d: %d inserts in %.3f s, %d audits\n", max_keys,
                  nthreads, nthreads * INSERTS_PER_THREAD, took, a.audits);
    nori_backend_free(b);
}

static void test_progress_more_threads_than_places(void **state)
{
    (void)state;
    watchdog(60); /* the whole table below takes well under a second when it works */
    check_progress(1, 4);
    check_progress(2, 4);
    check_progress(4, 8);
    check_progress(8, 16);
    check_progress(16, 32);
    alarm(0);
}

/* ---- item 2: the re-entry guard ---- */

static nori_backend *backend_a, *backend_b;
static int nested_set_rc, nested_stats_rc, nested_b_rc;

static int b_callback(const nori_buf *cur, nori_buf *next, void *ud)
{
    (void)cur;
    (void)ud;
    next->data = strdup("b");
    next->len = 1;
    return 0;
}

/* A's callback: updates B (whose callback runs and returns), then calls A. */
static int a_callback(const nori_buf *cur, nori_buf *next, void *ud)
{
    (void)cur;
    (void)next;
    (void)ud;
    nested_b_rc = nori_backend_atomic_update(backend_b, "kb", b_callback, NULL, 0, NULL);
    nested_set_rc = nori_backend_set(backend_a, "ka", "x", 1, 0);
    nori_backend_stats st;
    nested_stats_rc = nori_backend_get_stats(backend_a, &st);
    return 1;
}

static void test_reentry_guard_survives_nested_backend(void **state)
{
    (void)state;
    watchdog(20);
    assert_nori(nori_memory_backend_new(10, &backend_a), NORI_OK);
    assert_nori(nori_memory_backend_new(10, &backend_b), NORI_OK);
    assert_nori(nori_backend_set(backend_a, "ka", "old", 3, 0), NORI_OK);
    assert_nori(nori_backend_atomic_update(backend_a, "ka", a_callback, NULL, 0, NULL),
                NORI_EABORT);
    assert_nori(nested_b_rc, NORI_OK);          /* another backend is fine */
    assert_nori(nested_set_rc, NORI_EINVAL);    /* the same backend is refused, not a deadlock */
    assert_nori(nested_stats_rc, NORI_OK);      /* get_stats takes no lock: no deadlock */
    nori_buf out;
    assert_nori(nori_backend_get(backend_a, "ka", &out), NORI_OK);
    assert_string_equal(out.data, "old"); /* the refused set wrote nothing */
    nori_buf_free(&out);
    assert_nori(nori_backend_get(backend_b, "kb", &out), NORI_OK);
    assert_string_equal(out.data, "b");
    nori_buf_free(&out);
    nori_backend_free(backend_a);
    nori_backend_free(backend_b);
    alarm(0);
}

/* ---- item 2: a slow callback on the LRU victim's shard ---- */

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int entered;
    int released;
    int timed_out;
} gate;

static gate slow_gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};

/* Holds the shard lock of its key until the test releases it (at most 3 s). */
static int slow_callback(const nori_buf *cur, nori_buf *next, void *ud)
{
    (void)cur;
    (void)next;
    (void)ud;
    pthread_mutex_lock(&slow_gate.lock);
    slow_gate.entered = 1;
    pthread_cond_broadcast(&slow_gate.cond);
    struct timespec until = deadline_in_ms(3000);
    while (!slow_gate.released) {
        if (pthread_cond_timedwait(&slow_gate.cond, &slow_gate.lock, &until) == ETIMEDOUT) {
            slow_gate.timed_out = 1;
            break;
        }
    }
    pthread_mutex_unlock(&slow_gate.lock);
    return 1; /* writes nothing */
}

static void *slow_update_run(void *arg)
{
    nori_backend *b = arg;
    (void)nori_backend_atomic_update(b, "victim", slow_callback, NULL, 0, NULL);
    return NULL;
}

/* A key whose shard differs from every shard in `avoid`. */
static void key_outside(nori_backend *b, const char *stem, const int *avoid, int navoid,
                        char *out, size_t size)
{
    for (int i = 0;; i++) {
        snprintf(out, size, "%s-%d", stem, i);
        int shard = nori__memory_shard_index(b, out);
        int clash = 0;
        for (int j = 0; j < navoid; j++)
            clash |= shard == avoid[j];
        if (!clash)
            return;
    }
}

static void test_slow_callback_on_victim_does_not_stall_insert(void **state)
{
    (void)state;
    watchdog(20);
    nori_backend *b;
    assert_nori(nori_memory_backend_new(3, &b), NORI_OK);
    int shards[3];
    shards[0] = nori__memory_shard_index(b, "victim");
    char second[32], third[32], fresh[32];
    key_outside(b, "second", shards, 1, second, sizeof second);
    shards[1] = nori__memory_shard_index(b, second);
    key_outside(b, "third", shards, 2, third, sizeof third);
    shards[2] = nori__memory_shard_index(b, third);
    key_outside(b, "fresh", shards, 3, fresh, sizeof fresh);
    assert_nori(nori_backend_set(b, "victim", "1", 1, 0), NORI_OK); /* least recently used */
    assert_nori(nori_backend_set(b, second, "2", 1, 0), NORI_OK);
    assert_nori(nori_backend_set(b, third, "3", 1, 0), NORI_OK);

    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, slow_update_run, b), 0);
    pthread_mutex_lock(&slow_gate.lock);
    struct timespec until = deadline_in_ms(5000);
    while (!slow_gate.entered)
        assert_int_not_equal(pthread_cond_timedwait(&slow_gate.cond, &slow_gate.lock, &until),
                             ETIMEDOUT);
    pthread_mutex_unlock(&slow_gate.lock);

    /* The store is full and the LRU entry's shard is held by the callback:
     * the insert evicts from another shard instead of waiting. */
    assert_nori(nori_backend_set(b, fresh, "4", 1, 0), NORI_OK);
    pthread_mutex_lock(&slow_gate.lock);
    int waited_out = slow_gate.timed_out;
    slow_gate.released = 1;
    pthread_cond_broadcast(&slow_gate.cond);
    pthread_mutex_unlock(&slow_gate.lock);
    pthread_join(t, NULL);
    assert_false(waited_out); /* the set returned while the callback still held its lock */

    nori_buf out;
    assert_nori(nori_backend_get(b, second, &out), NORI_MISS); /* the next oldest went */
    assert_nori(nori_backend_get(b, "victim", &out), NORI_OK);
    nori_buf_free(&out);
    assert_nori(nori_backend_get(b, fresh, &out), NORI_OK);
    nori_buf_free(&out);
    nori_backend_free(b);
    alarm(0);
}

/* ---- item 15: a small overwrite does not keep a large block ---- */

static void test_small_overwrite_releases_large_block(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori_memory_backend_new(10, &b), NORI_OK);
    size_t big = 1024 * 1024;
    char *val = calloc(1, big);
    assert_non_null(val);
    assert_nori(nori_backend_set(b, "k", val, big, 0), NORI_OK);
    free(val);
    assert_true(nori__memory_block_size(b, "k") >= big);
    assert_nori(nori_backend_set(b, "k", "eleven byte", 11, 0), NORI_OK);
    size_t block = nori__memory_block_size(b, "k");
    print_message("block after the small overwrite: %zu bytes\n", block);
    assert_true(block > 0 && block < 256);
    /* A same-sized overwrite gets a block of the same size (entries are
     * immutable once linked: lock-free readers may still copy the old one). */
    assert_nori(nori_backend_set(b, "k", "ELEVEN BYTE", 11, 0), NORI_OK);
    assert_int_equal(nori__memory_block_size(b, "k"), block);
    nori_buf out;
    assert_nori(nori_backend_get(b, "k", &out), NORI_OK);
    assert_string_equal(out.data, "ELEVEN BYTE");
    nori_buf_free(&out);
    nori_backend_free(b);
}

/* ---- item 22: get_into(NULL, 0) of an empty value ---- */

static void test_get_into_null_buffer_empty_value(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori_memory_backend_new(10, &b), NORI_OK);
    assert_nori(nori_backend_set(b, "empty", NULL, 0, 0), NORI_OK);
    size_t len = 99;
    /* memcpy(NULL, ..., 0) before: undefined behaviour, caught by UBSan. */
    assert_nori(nori_backend_get_into(b, "empty", NULL, 0, &len), NORI_OK);
    assert_int_equal(len, 0);
    assert_nori(nori_backend_set(b, "one", "x", 1, 0), NORI_OK);
    assert_nori(nori_backend_get_into(b, "one", NULL, 0, &len), NORI_ETOOBIG);
    assert_int_equal(len, 1);
    nori_backend_free(b);
}

/* An optional argument runs only the tests whose name matches it. */
int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_progress_more_threads_than_places),
        cmocka_unit_test(test_reentry_guard_survives_nested_backend),
        cmocka_unit_test(test_slow_callback_on_victim_does_not_stall_insert),
        cmocka_unit_test(test_small_overwrite_releases_large_block),
        cmocka_unit_test(test_get_into_null_buffer_empty_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
