// SPDX-License-Identifier: MIT
/*
 * The memory backend under many threads: counters that lose nothing, and a
 * mixed workload with eviction running that never exceeds max_keys nor
 * returns a value that belongs to another key. Also run under
 * ThreadSanitizer (label "concurrency").
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "memory/memory.h"
#include "test_support.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define THREADS 8
#define INCRS_PER_THREAD 10000
#define UPDATES_PER_THREAD 2000

typedef struct {
    nori_backend *b;
    int64_t *results; /* this thread's slice of the shared results array */
    int count;
    int failures;
} worker;

static void *incr_worker(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < w->count; i++)
        if (nori_backend_incr(w->b, "counter", 60, &w->results[i]) != NORI_OK)
            w->failures++;
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The values seen by all threads together are exactly 1..total. */
static void assert_exactly_one_to_n(int64_t *values, size_t total)
{
    qsort(values, total, sizeof *values, cmp_i64);
    for (size_t i = 0; i < total; i++)
        if (values[i] != (int64_t)i + 1)
            fail_msg("value #%zu is %lld, expected %zu", i, (long long)values[i], i + 1);
}

static void run_workers(nori_backend *b, void *(*fn)(void *), int per_thread, int64_t *results)
{
    pthread_t threads[THREADS];
    worker workers[THREADS];
    for (int t = 0; t < THREADS; t++) {
        workers[t] = (worker){b, results + (size_t)t * per_thread, per_thread, 0};
        assert_int_equal(pthread_create(&threads[t], NULL, fn, &workers[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
        assert_int_equal(workers[t].failures, 0);
    }
}

static void test_concurrent_incr_exact(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori_memory_backend_new(100, &b), NORI_OK);
    size_t total = (size_t)THREADS * INCRS_PER_THREAD;
    int64_t *results = calloc(total, sizeof *results);
    assert_non_null(results);
    run_workers(b, incr_worker, INCRS_PER_THREAD, results);
    assert_exactly_one_to_n(results, total);
    nori_buf out;
    assert_nori(nori_backend_get(b, "counter", &out), NORI_OK);
    assert_int_equal(strtoll(out.data, NULL, 10), (long long)total);
    nori_buf_free(&out);
    free(results);
    nori_backend_free(b);
}

static void *update_worker(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < w->count; i++)
        if (nori_backend_atomic_update(w->b, "state", nori_test_add_one, &w->results[i], 0, NULL) !=
            NORI_OK)
            w->failures++;
    return NULL;
}

static void test_concurrent_atomic_update_loses_nothing(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori_memory_backend_new(100, &b), NORI_OK);
    size_t total = (size_t)THREADS * UPDATES_PER_THREAD;
    int64_t *results = calloc(total, sizeof *results);
    assert_non_null(results);
    run_workers(b, update_worker, UPDATES_PER_THREAD, results);
    assert_exactly_one_to_n(results, total);
    free(results);
    nori_backend_free(b);
}

/* ---- mixed workload with eviction ---- */

#define MIXED_MAX_KEYS 64
#define MIXED_KEYSPACE 512
#define MIXED_OPS 20000

typedef struct {
    nori_backend *b;
    unsigned seed;
    int wrong_values;
    int errors;
    _Atomic int *over_limit;
} mixed_worker;

static void value_for(int k, char *buf, size_t size)
{
    snprintf(buf, size, "value-of-key-%d-%0*d", k, k % 50 + 1, 0); /* varying lengths */
}

static void *mixed_run(void *arg)
{
    mixed_worker *w = arg;
    char key[32], val[96];
    for (int i = 0; i < MIXED_OPS; i++) {
        int k = (int)(rand_r(&w->seed) % MIXED_KEYSPACE);
        int op = (int)(rand_r(&w->seed) % 10);
        snprintf(key, sizeof key, "key:%d", k);
        value_for(k, val, sizeof val);
        int rc;
        if (op < 6) {
            nori_buf out;
            rc = nori_backend_get(w->b, key, &out);
            if (rc == NORI_OK && (out.len != strlen(val) || memcmp(out.data, val, out.len) != 0))
                w->wrong_values++;
            nori_buf_free(&out);
        } else if (op < 9) {
            rc = nori_backend_set(w->b, key, val, strlen(val), (op == 8) ? 1 : 0);
        } else {
            rc = nori_backend_delete(w->b, key);
        }
        if (rc < 0)
            w->errors++;
        if ((i & 255) == 0) {
            /* An instant snapshot under every shard lock: a sum of per-shard
             * counts read one after another could double-count a moving key. */
            int64_t held = nori__memory_audit(w->b);
            if (held < 0 || held > MIXED_MAX_KEYS)
                atomic_fetch_add(w->over_limit, 1);
        }
    }
    return NULL;
}

static void test_mixed_workload_with_eviction(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori_memory_backend_new(MIXED_MAX_KEYS, &b), NORI_OK);
    _Atomic int over_limit = 0;
    pthread_t threads[THREADS];
    mixed_worker workers[THREADS];
    for (int t = 0; t < THREADS; t++) {
        workers[t] = (mixed_worker){b, (unsigned)t * 7919u + 1, 0, 0, &over_limit};
        assert_int_equal(pthread_create(&threads[t], NULL, mixed_run, &workers[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
        assert_int_equal(workers[t].wrong_values, 0);
        assert_int_equal(workers[t].errors, 0);
    }
    assert_int_equal(atomic_load(&over_limit), 0);
    nori_backend_stats st;
    assert_nori(nori_backend_get_stats(b, &st), NORI_OK);
    assert_true(st.entries <= MIXED_MAX_KEYS);
    int64_t held = nori__memory_audit(b);
    assert_true(held >= 0 && held <= MIXED_MAX_KEYS);
    assert_int_equal((uint64_t)held, st.entries);
    assert_true(st.evictions > 0); /* eviction really ran */
    assert_true(st.hits > 0);
    /* After the storm the store is still fully usable and consistent. */
    assert_nori(nori_backend_set(b, "final", "ok", 2, 0), NORI_OK);
    nori_buf out;
    assert_nori(nori_backend_get(b, "final", &out), NORI_OK);
    assert_string_equal(out.data, "ok");
    nori_buf_free(&out);
    nori_backend_free(b);
}

/* ---- both bounds under 8 threads of mixed sizes ---- */

#define BYTES_MAX_KEYS 300
#define BYTES_BOUND (64 * 1024)
#define BYTES_KEYSPACE 1000
#define BYTES_OPS 6000

typedef struct {
    nori_backend *b;
    unsigned seed;
    int wrong_values;
    int errors;
    _Atomic int *stop;
    _Atomic int *over_bound;
} bytes_worker;

/* The value of key k is a run of one byte, its length a function of k
 * (16 bytes to 4 KiB), so a reader can check it belongs to its key. */
static size_t value_len_of(int k)
{
    return 16 + ((size_t)k * 2654435761u) % 4080;
}

static int append_byte(const nori_buf *cur, nori_buf *next, void *ud)
{
    (void)ud;
    size_t n = cur != NULL ? cur->len : 0;
    next->data = malloc(n + 1);
    if (next->data == NULL)
        return 1;
    if (n > 0)
        memcpy(next->data, cur->data, n);
    next->data[n] = 'u';
    next->len = n > 4000 ? 1 : n + 1;
    return 0;
}

static void *bytes_run(void *arg)
{
    bytes_worker *w = arg;
    char key[32];
    char *val = malloc(4096);
    for (int i = 0; i < BYTES_OPS; i++) {
        int k = (int)(rand_r(&w->seed) % BYTES_KEYSPACE);
        int op = (int)(rand_r(&w->seed) % 20);
        snprintf(key, sizeof key, "%s:%d", op >= 16 ? "upd" : "val", k);
        size_t len = value_len_of(k);
        memset(val, 'a' + k % 26, len);
        int rc;
        if (op < 9) {
            nori_buf out;
            rc = nori_backend_get(w->b, key, &out);
            if (rc == NORI_OK && (out.len != len || memcmp(out.data, val, len) != 0))
                w->wrong_values++;
            nori_buf_free(&out);
        } else if (op < 14) {
            rc = nori_backend_set(w->b, key, val, len, op == 13 ? 1 : 0);
        } else if (op < 15) {
            rc = nori_backend_delete(w->b, key);
        } else if (op < 16) {
            snprintf(key, sizeof key, "ctr:%d", k % 50);
            rc = nori_backend_incr(w->b, key, 0, NULL);
        } else {
            rc = nori_backend_atomic_update(w->b, key, append_byte, NULL, 0, NULL);
        }
        if (rc < 0 && w->errors++ == 0)
            print_error("op %d on %s: %s\n", op, key, nori_last_error());
    }
    free(val);
    return NULL;
}

static void *bytes_audit(void *arg)
{
    bytes_worker *w = arg;
    while (!atomic_load(w->stop)) {
        size_t bytes = 0;
        int64_t held = nori__memory_audit_bytes(w->b, &bytes);
        if (held < 0 || held > BYTES_MAX_KEYS || bytes > BYTES_BOUND)
            atomic_fetch_add(w->over_bound, 1);
        nori_backend_stats st;
        if (nori_backend_get_stats(w->b, &st) != NORI_OK)
            atomic_fetch_add(w->over_bound, 1);
    }
    return NULL;
}

static void test_both_bounds_under_threads(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori_memory_backend_new(BYTES_MAX_KEYS, &b), NORI_OK);
    assert_nori(nori_memory_backend_set_max_bytes(b, BYTES_BOUND), NORI_OK);
    _Atomic int stop = 0, over = 0;
    pthread_t threads[THREADS], auditor;
    bytes_worker workers[THREADS], audit = {b, 0, 0, 0, &stop, &over};
    assert_int_equal(pthread_create(&auditor, NULL, bytes_audit, &audit), 0);
    for (int t = 0; t < THREADS; t++) {
        workers[t] = (bytes_worker){b, (unsigned)t * 104729u + 3, 0, 0, &stop, &over};
        assert_int_equal(pthread_create(&threads[t], NULL, bytes_run, &workers[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
        assert_int_equal(workers[t].wrong_values, 0);
        assert_int_equal(workers[t].errors, 0);
    }
    atomic_store(&stop, 1);
    pthread_join(auditor, NULL);
    assert_int_equal(atomic_load(&over), 0);
    nori_backend_stats st;
    assert_nori(nori_backend_get_stats(b, &st), NORI_OK);
    size_t bytes = 0;
    int64_t held = nori__memory_audit_bytes(b, &bytes);
    assert_true(held >= 0 && held <= BYTES_MAX_KEYS);
    assert_true(bytes <= BYTES_BOUND);
    assert_int_equal(st.bytes, bytes);
    assert_true(st.evictions > 0);
    print_message("%llu evictions, %lld entries, %zu bytes held at the end\n",
                  (unsigned long long)st.evictions, (long long)held, bytes);
    nori_backend_free(b);
}

/* ---- lowering the byte bound while writers run ---- */

/*
 * Writers store values of 26 to 48 KB (one fits under the low bound, two do
 * not) while the bound goes up to 1 MB and back down to LOW_BOUND, round
 * after round. Right after nori_memory_backend_set_max_bytes() lowered it,
 * an instant snapshot (every shard locked) must hold at most LOW_BOUND
 * bytes. Before the fix, room a writer had taken under the old bound was
 * linked after the call returned: 70-98 KB held.
 */
#define LOW_BOUND 50000
#define HIGH_BOUND 1000000
#ifdef __SANITIZE_THREAD__
#define LOWER_ROUNDS 3000 /* ThreadSanitizer: 10-20x slower */
#else
#define LOWER_ROUNDS 20000
#endif
#define LOWER_WRITERS 4

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct {
    nori_backend *b;
    unsigned seed;
    _Atomic int *stop;
    _Atomic long *writes;
    int errors;
} lower_writer;

static void *lower_write(void *arg)
{
    lower_writer *w = arg;
    char *val = malloc(48000);
    char key[32];
    memset(val, 'v', 48000);
    while (!atomic_load(w->stop)) {
        snprintf(key, sizeof key, "big:%u", rand_r(&w->seed) % 64);
        size_t len = 26000 + rand_r(&w->seed) % 22000;
        int rc = nori_backend_set(w->b, key, val, len, 0);
        if (rc != NORI_OK && w->errors++ == 0)
            print_error("set %s (%zu bytes): %s\n", key, len, nori_last_error());
        atomic_fetch_add(w->writes, 1);
    }
    free(val);
    return NULL;
}

static void test_lowered_bound_holds_on_return(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori_memory_backend_new(1000, &b), NORI_OK);
    _Atomic int stop = 0;
    _Atomic long writes = 0;
    pthread_t threads[LOWER_WRITERS];
    lower_writer workers[LOWER_WRITERS];
    for (int t = 0; t < LOWER_WRITERS; t++) {
        workers[t] = (lower_writer){b, (unsigned)t * 31337u + 5, &stop, &writes, 0};
        assert_int_equal(pthread_create(&threads[t], NULL, lower_write, &workers[t]), 0);
    }
    int over = 0;
    size_t worst = 0;
    double slowest = 0, total = 0;
    for (int round = 0; round < LOWER_ROUNDS; round++) {
        assert_nori(nori_memory_backend_set_max_bytes(b, HIGH_BOUND), NORI_OK);
        /* Let a few writes land under the high bound (bounded: 1,000,000
         * yields; the writers never stop, so it ends long before). */
        long target = atomic_load(&writes) + 2;
        for (long spin = 0; atomic_load(&writes) < target && spin < 1000000; spin++)
            sched_yield();
        double t0 = now_s();
        assert_nori(nori_memory_backend_set_max_bytes(b, LOW_BOUND), NORI_OK);
        double took = now_s() - t0;
        total += took;
        if (took > slowest)
            slowest = took;
        size_t bytes = 0;
        assert_true(nori__memory_audit_bytes(b, &bytes) >= 0);
        if (bytes > LOW_BOUND) {
            over++;
            if (bytes > worst)
                worst = bytes;
        }
    }
    atomic_store(&stop, 1);
    for (int t = 0; t < LOWER_WRITERS; t++) {
        pthread_join(threads[t], NULL);
        assert_int_equal(workers[t].errors, 0);
    }
    print_message("%d of %d rounds held more than %d bytes right after the call (worst %zu); "
                  "%ld writes; lowering took %.1f us on average, %.1f ms at most\n",
                  over, LOWER_ROUNDS, LOW_BOUND, worst, atomic_load(&writes),
                  total / LOWER_ROUNDS * 1e6, slowest * 1e3);
    assert_int_equal(over, 0);
    nori_backend_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_incr_exact),
        cmocka_unit_test(test_concurrent_atomic_update_loses_nothing),
        cmocka_unit_test(test_mixed_workload_with_eviction),
        cmocka_unit_test(test_both_bounds_under_threads),
        cmocka_unit_test(test_lowered_bound_holds_on_return),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
