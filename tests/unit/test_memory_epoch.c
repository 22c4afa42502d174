// SPDX-License-Identifier: MIT
/*
 * The memory backend's lock-free reads and the threads they run on
 * (src/memory/epoch.c): a thread keeps its epoch slot, and with it its hit
 * and miss counter stripe, for its whole life, including the pthread key
 * destructors that run when it exits; a slot handed back is never used by
 * two threads at once; no slot is kept after its thread has gone; with
 * more threads than counter stripes no count is lost; and threads that
 * take their first slot at the same moment see each other's slots whole
 * (the list's lock-free push). Label "concurrency":
 * meaningful under AddressSanitizer (a slot shared by two threads let a
 * writer free an entry still being copied) and ThreadSanitizer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "memory/epoch.h"
#include "memory/memory.h"
#include "test_support.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NKEYS 16
#define MAX_LEN 600

static nori_backend *backend;
static _Atomic int stop;
static _Atomic long wrong, reads;

/* Version v of a key's value: v % 26 + 'a' repeated a length that depends
 * on v, so a torn copy or a copy of freed memory shows. */
static size_t len_of(unsigned v)
{
    return 1 + (v * 37u) % MAX_LEN;
}

static void check_value(const nori_buf *out)
{
    if (out->len == 0 || out->len > MAX_LEN) {
        atomic_fetch_add(&wrong, 1);
        return;
    }
    char c = out->data[0];
    bool ok = c >= 'a' && c <= 'z';
    for (size_t i = 1; ok && i < out->len; i++)
        ok = out->data[i] == c;
    if (!ok || out->data[out->len] != '\0')
        atomic_fetch_add(&wrong, 1);
}

static void read_all(int rounds)
{
    char key[16];
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < NKEYS; k++) {
            snprintf(key, sizeof key, "k%d", k);
            nori_buf out;
            int rc = nori_backend_get(backend, key, &out);
            atomic_fetch_add(&reads, 1);
            if (rc == NORI_OK) {
                check_value(&out);
                nori_buf_free(&out);
            } else if (rc != NORI_MISS) {
                atomic_fetch_add(&wrong, 1);
            }
        }
}

static void *writer(void *arg)
{
    unsigned v = (unsigned)(uintptr_t)arg;
    char key[16], val[MAX_LEN];
    while (!atomic_load(&stop)) {
        v++;
        int k = (int)(v % NKEYS);
        snprintf(key, sizeof key, "k%d", k);
        size_t len = len_of(v);
        memset(val, 'a' + (int)(v % 26), len);
        if (nori_backend_set(backend, key, val, len, 0) != NORI_OK)
            atomic_fetch_add(&wrong, 1);
    }
    return NULL;
}

/* An application's per-thread state, flushed at thread exit by a key
 * destructor that reads the cache. The key is created after the library's
 * first read, so its destructor runs after the library's own. */
static pthread_key_t app_key;
static _Atomic int rearm_rounds; /* re-arm the key this many times (more destructor rounds) */

static void app_flush(void *p)
{
    read_all(4);
    intptr_t round = (intptr_t)p;
    if (round < atomic_load(&rearm_rounds))
        pthread_setspecific(app_key, (void *)(round + 1));
}

static void *short_lived(void *arg)
{
    (void)arg;
    read_all(1); /* takes an epoch slot */
    pthread_setspecific(app_key, (void *)1);
    return NULL;
}

static void run_short_lived(int batches, int per_batch)
{
    for (int b = 0; b < batches; b++) {
        pthread_t t[8];
        for (int i = 0; i < per_batch; i++)
            assert_int_equal(pthread_create(&t[i], NULL, short_lived, NULL), 0);
        for (int i = 0; i < per_batch; i++)
            pthread_join(t[i], NULL);
    }
}

/* No expiry thread: it takes an epoch slot of its own (for its locks), and
 * the tests count the slots. */
static void setup_backend(void)
{
    assert_nori(nori__memory_backend_new_opts(1000, false, &backend), NORI_OK);
    char key[16], val[MAX_LEN];
    for (int k = 0; k < NKEYS; k++) {
        snprintf(key, sizeof key, "k%d", k);
        memset(val, 'a', len_of(0));
        assert_nori(nori_backend_set(backend, key, val, len_of(0), 0), NORI_OK);
    }
    read_all(1); /* the library's slot key exists before app_key */
}

/*
 * Threads exit while reading from a key destructor, new threads start
 * meanwhile and writers replace the values. Before the fix the exiting
 * thread kept using the slot it had handed back, a new thread took the same
 * slot, and whichever left its read section first marked the slot idle
 * while the other was still copying: a writer then freed the entry under
 * the copy (ASan: heap-use-after-free in copy_to_new_buf, freed by
 * nori__mem_do_reclaim; without ASan torn values or a corrupted heap).
 * The counts are exact too: a thread that shared a released slot also
 * shared its counter stripe, and their unlocked increments lost counts.
 */
static void test_reads_from_key_destructors(void **state)
{
    (void)state;
    atomic_store(&stop, 0);
    atomic_store(&wrong, 0);
    setup_backend();
    assert_int_equal(pthread_key_create(&app_key, app_flush), 0);
    atomic_store(&rearm_rounds, 1);
    unsigned in_use_before = nori__epoch_slots_in_use();
    nori_backend_stats st0;
    assert_nori(nori_backend_get_stats(backend, &st0), NORI_OK);
    long reads0 = atomic_load(&reads);
    pthread_t w[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&w[i], NULL, writer, (void *)(uintptr_t)(i * 1000)), 0);
    run_short_lived(150, 8);
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(w[i], NULL);
    assert_int_equal(atomic_load(&wrong), 0);
    nori_backend_stats st;
    assert_nori(nori_backend_get_stats(backend, &st), NORI_OK);
    long counted = (long)(st.hits + st.misses - st0.hits - st0.misses);
    print_message("%ld reads, %ld counted\n", atomic_load(&reads) - reads0, counted);
    assert_int_equal(counted, atomic_load(&reads) - reads0);
    /* Every exited thread's slot is free again (the writers read nothing). */
    assert_int_equal(nori__epoch_slots_in_use(), in_use_before);
    pthread_key_delete(app_key);
    nori_backend_free(backend);
}

/*
 * A destructor that re-arms its key makes the thread run several destructor
 * rounds, each reading after the library's key was cleared: every read is
 * protected, and when the thread has gone no slot stays taken.
 */
static void test_no_slot_kept_after_exit(void **state)
{
    (void)state;
    atomic_store(&stop, 0);
    atomic_store(&wrong, 0);
    setup_backend();
    assert_int_equal(pthread_key_create(&app_key, app_flush), 0);
    /* Reads in destructor rounds 1 to 3. Not in round 4, the last glibc
     * runs: ThreadSanitizer finalises the thread's state there, and any
     * malloc after that crashes inside TSan. */
    atomic_store(&rearm_rounds, 3);
    unsigned in_use_before = nori__epoch_slots_in_use();
    unsigned total_before = nori__epoch_slot_count();
    pthread_t w;
    assert_int_equal(pthread_create(&w, NULL, writer, (void *)(uintptr_t)7), 0);
    run_short_lived(100, 2);
    atomic_store(&stop, 1);
    pthread_join(w, NULL);
    assert_int_equal(atomic_load(&wrong), 0);
    assert_int_equal(nori__epoch_slots_in_use(), in_use_before);
    /* At most 2 short-lived threads, the writer and this one at once. */
    print_message("%u slots before, %u after\n", total_before, nori__epoch_slot_count());
    assert_true(nori__epoch_slot_count() <= (total_before > 4 ? total_before : 4));
    pthread_key_delete(app_key);
    nori_backend_free(backend);
}

/*
 * More threads than counter stripes (64) read at once: every read is
 * counted. All MANY threads take a slot first; then only the threads with
 * slots 0-3 and 64-67 read on (the main thread, which holds one of the low
 * slots, does not), the low slots pinned to one CPU and the high ones to
 * another, so that a pair i, 64 + i runs in parallel. Before the fix slot 64 + i shared stripe i with slot i: it
 * added atomically while the owner added with a plain load and store, and
 * counts were lost.
 */
#define MANY 80
#define MANY_READS 300000
#define PAIRS 4

static pthread_barrier_t many_start;
static _Atomic long many_reads;
static cpu_set_t cpus; /* the CPUs this process may use */

static void *many_reader(void *arg)
{
    (void)arg;
    nori_buf out;
    if (nori_backend_get(backend, "k0", &out) == NORI_OK)
        nori_buf_free(&out);
    atomic_fetch_add(&many_reads, 1);
    pthread_barrier_wait(&many_start); /* every thread holds its slot */
    unsigned slot = nori__epoch_slot_index();
    if (slot % 64 >= PAIRS || slot >= 64 + PAIRS)
        return NULL;
    if (CPU_COUNT(&cpus) >= 2) {
        /* The first usable CPU for the low slots, the second for the others. */
        int want = slot < 64 ? 0 : 1, seen = 0;
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &cpus) && seen++ == want) {
                cpu_set_t one;
                CPU_ZERO(&one);
                CPU_SET(c, &one);
                pthread_setaffinity_np(pthread_self(), sizeof one, &one);
                break;
            }
    }
    for (int i = 0; i < MANY_READS; i++)
        if (nori_backend_get(backend, "k0", &out) == NORI_OK)
            nori_buf_free(&out);
    atomic_fetch_add(&many_reads, MANY_READS);
    return NULL;
}

static void test_counts_with_more_threads_than_stripes(void **state)
{
    (void)state;
    setup_backend();
    assert_int_equal(sched_getaffinity(0, sizeof cpus, &cpus), 0);
    unsigned mine = nori__epoch_slot_index();
    long busy = 2 * PAIRS - (mine < PAIRS);
    atomic_store(&many_reads, 0);
    nori_backend_stats st0;
    assert_nori(nori_backend_get_stats(backend, &st0), NORI_OK);
    pthread_barrier_init(&many_start, NULL, MANY);
    pthread_t t[MANY];
    for (int i = 0; i < MANY; i++)
        assert_int_equal(pthread_create(&t[i], NULL, many_reader, NULL), 0);
    for (int i = 0; i < MANY; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&many_start);
    nori_backend_stats st;
    assert_nori(nori_backend_get_stats(backend, &st), NORI_OK);
    print_message("%ld reads, %llu counted\n", atomic_load(&many_reads),
                  (unsigned long long)(st.hits - st0.hits));
    assert_true(atomic_load(&many_reads) == MANY + busy * MANY_READS); /* every slot was taken */
    assert_int_equal(st.misses, st0.misses);
    assert_int_equal(st.hits - st0.hits, (uint64_t)atomic_load(&many_reads));
    nori_backend_free(backend);
}

/* ---- first reads of many threads at once ---- */

#define FIRST_THREADS 8
#define FIRST_ROUNDS 40

static nori_backend *first_backend;
static pthread_barrier_t first_start;

static void *first_read(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&first_start);
    nori_buf v;
    int rc = nori_backend_get(first_backend, "k", &v);
    if (rc == NORI_OK)
        nori_buf_free(&v);
    return NULL;
}

/*
 * The epoch slots are published by a lock-free push; a thread reading the
 * list while another pushes its new slot must see that slot's fields
 * (acquire). With a relaxed load the push read s->next->index too early:
 * ThreadSanitizer reported a data race in test_http_coalesce (two request
 * threads doing their first read at once). Here many fresh threads do
 * their first read at the same moment, round after round.
 */
static void test_first_reads_at_once(void **state)
{
    (void)state;
    alarm(60);
    assert_int_equal(nori_memory_backend_new(100, &first_backend), NORI_OK);
    assert_int_equal(nori_backend_set(first_backend, "k", "v", 1, 0), NORI_OK);
    for (int r = 0; r < FIRST_ROUNDS; r++) {
        pthread_t t[FIRST_THREADS];
        pthread_barrier_init(&first_start, NULL, FIRST_THREADS);
        for (int i = 0; i < FIRST_THREADS; i++)
            assert_int_equal(pthread_create(&t[i], NULL, first_read, NULL), 0);
        for (int i = 0; i < FIRST_THREADS; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&first_start);
    }
    nori_backend_free(first_backend);
    alarm(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_from_key_destructors),
        cmocka_unit_test(test_no_slot_kept_after_exit),
        cmocka_unit_test(test_counts_with_more_threads_than_stripes),
        cmocka_unit_test(test_first_reads_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
