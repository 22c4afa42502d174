// SPDX-License-Identifier: MIT
/*
 * The memory backend's room under contention (src/memory/evict.c): the two
 * bounds are taken by compare-and-swap, and a write that finds no room
 * evicts first, never blocking on a busy shard while it holds a lock.
 *  - progress when more threads insert new keys than max_keys allows (a
 *    livelock once), with the bound audited under all the locks meanwhile;
 *  - a slow atomic_update callback on the least recently used key's shard
 *    does not stall an unrelated insert: it evicts from another shard;
 *  - a write that waits for the place an atomic_update callback holds (on a
 *    new key, while it runs) waits without burning a core: it backs off to
 *    short sleeps (it spun on sched_yield() once, a full core for as long
 *    as the user's callback ran).
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
#include <stdatomic.h>
#include <stdbool.h>
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

/* ---- progress with more inserting threads than places ---- */

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

/* ---- a slow callback on the LRU victim's shard ---- */

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

/* ---- a wait for room held by a callback ---- */

static double ms_of(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static atomic_int in_callback;

/* Holds the backend's only place (a new key) for 500 ms. */
static int slow_new_key(const nori_buf *cur, nori_buf *next, void *ud)
{
    (void)cur;
    (void)ud;
    atomic_store(&in_callback, 1);
    struct timespec d = {0, 500 * 1000000L};
    nanosleep(&d, NULL);
    next->data = strdup("v");
    next->len = 1;
    return 0;
}

static void *updater(void *arg)
{
    nori_backend *b = arg;
    assert_int_equal(nori_backend_atomic_update(b, "first", slow_new_key, NULL, 0, NULL),
                     NORI_OK);
    return NULL;
}

static void test_wait_for_room_does_not_spin(void **state)
{
    (void)state;
    watchdog(20);
    nori_backend *b;
    assert_int_equal(nori_memory_backend_new(1, &b), NORI_OK);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, updater, b), 0);
    double until = ms_of(CLOCK_MONOTONIC) + 5000;
    while (!atomic_load(&in_callback) && ms_of(CLOCK_MONOTONIC) < until)
        usleep(1000);
    assert_true(atomic_load(&in_callback));
    /* A key on another shard: the set does not queue on the callback's
     * shard lock, it waits for room. */
    char second[32];
    for (int i = 0;; i++) {
        snprintf(second, sizeof second, "second-%d", i);
        if (nori__memory_shard_index(b, second) != nori__memory_shard_index(b, "first"))
            break;
    }
    double wall0 = ms_of(CLOCK_MONOTONIC), cpu0 = ms_of(CLOCK_THREAD_CPUTIME_ID);
    /* Needs the place the callback holds: waits until "first" lands, then
     * evicts it. */
    assert_int_equal(nori_backend_set(b, second, "w", 1, 0), NORI_OK);
    double wall = ms_of(CLOCK_MONOTONIC) - wall0, cpu = ms_of(CLOCK_THREAD_CPUTIME_ID) - cpu0;
    pthread_join(t, NULL);
    print_message("set waited %.1f ms wall, %.1f ms CPU\n", wall, cpu);
    nori_buf v;
    assert_int_equal(nori_backend_get(b, second, &v), NORI_OK);
    nori_buf_free(&v);
    nori_backend_free(b);
    alarm(0);
    /* It did wait for the callback (the bound holds) ... */
    assert_true(wall > 200);
    /* ... without burning a core meanwhile (the old loop took 15-100% of
     * the wall time, depending on what else ran). */
    assert_true(cpu < wall / 10);
}

/* An optional argument runs only the tests whose name matches it. */
int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_progress_more_threads_than_places),
        cmocka_unit_test(test_slow_callback_on_victim_does_not_stall_insert),
        cmocka_unit_test(test_wait_for_room_does_not_spin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
