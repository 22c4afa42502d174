// SPDX-License-Identifier: MIT
/*
 * Checks shared by the near cache tests on several nodes (test_near_cluster.c,
 * test_near_sentinel.c): process A is a backend with a near cache, B a plain
 * backend (another client) that writes.
 *
 *  - near_make_local(): reads a key through A until A serves it locally;
 *  - near_wait_for(): how long until A reads what B wrote (bounded);
 *  - near_delay_limit_us(): the invalidation bound of test_near_listener (200 ms;
 *    NEAR_STRICT=1: 50 ms, the figure);
 *  - acks + near_readers: B's writer records when each value was
 *    acknowledged; A's reader threads check that every value they read is not
 *    older than the last value B had acknowledged `bound` before the read
 *    started (a stale read), and never goes back. The bound is there because
 *    invalidations are asynchronous: Redis's client-side caching promises
 *    that a change reaches the listener, not that it arrives before the
 *    writer's reply; test_near_listener measures the same delay.
 *
 *  - near_pair_open() / near_pair_close(): A and B on one set-up's URL;
 *  - near_failover(): a master SIGKILLed while A reads and B writes, the
 *    checks both multi-node suites make of it, and near_tracks_again()
 *    after it.
 *
 * Include after the cmocka headers and test_support.h. Every wait is bounded.
 */
#ifndef NORI_TEST_NEAR_CHECKS_H
#define NORI_TEST_NEAR_CHECKS_H

#include "redis_cluster.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline int64_t near_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline void near_pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static inline int64_t near_delay_limit_us(void)
{
    const char *strict = getenv("NEAR_STRICT");
    return strict != NULL && strcmp(strict, "1") == 0 ? 50000 : 200000;
}

static inline nori_near_stats near_stats_of(nori_backend *a)
{
    nori_near_stats st;
    assert_nori(nori_backend_get_near_stats(a, &st), NORI_OK);
    return st;
}

static inline uint64_t near_flushes_lost(const nori_near_stats *st)
{
    return st->flushes_listener_lost + st->flushes_heartbeat + st->flushes_tracking_lost +
           st->flushes_topology;
}

static inline int64_t near_wait_for(nori_backend *a, const char *key, const char *want, int64_t t0);

/* Reads key through A until it is served locally (3 s at most): the node's
 * listener starts at its first read and subscribes in the background. A
 * change B just made may still be on its way to A's listener: A is first
 * given the bound of near_wait_for to read it. */
static inline void near_make_local(nori_backend *a, const char *key, const char *want)
{
    near_wait_for(a, key, want, near_now_us());
    int64_t deadline = near_now_us() + 3000000;
    for (;;) {
        uint64_t hits = near_stats_of(a).hits;
        nori_buf v;
        int rc = nori_backend_get(a, key, &v);
        if (rc != NORI_OK)
            fail_msg("A: get %s: %s: %s", key, nori_strerror(rc), nori_last_error());
        if (strcmp(v.data, want) != 0)
            fail_msg("A read %s as %s, expected %s", key, v.data, want);
        nori_buf_free(&v);
        if (near_stats_of(a).hits > hits)
            return;
        if (near_now_us() > deadline)
            fail_msg("A never served %s locally within 3 s", key);
        near_pause_ms(2);
    }
}

/* Waits up to 1 s for A to read want (NULL: a miss); returns the delay in
 * us from t0. Errors count as "not yet". */
static inline int64_t near_wait_for(nori_backend *a, const char *key, const char *want, int64_t t0)
{
    for (;;) {
        nori_buf v;
        int rc = nori_backend_get(a, key, &v);
        bool ok = want == NULL ? rc == NORI_MISS : rc == NORI_OK && strcmp(v.data, want) == 0;
        if (rc == NORI_OK)
            nori_buf_free(&v);
        int64_t now = near_now_us();
        if (ok)
            return now - t0;
        if (now - t0 > 1000000)
            fail_msg("A still did not read %s as %s 1 s after B's change", key,
                     want != NULL ? want : "(miss)");
        struct timespec gap = {0, 50000};
        nanosleep(&gap, NULL);
    }
}

/* Waits up to 1 s for A's count of server flushes (FLUSHALL/FLUSHDB) to
 * pass `before`: the store counts a flush once it has emptied every shard,
 * so a reader may see the key gone a moment before the count moves. */
static inline bool near_server_flushed(nori_backend *a, uint64_t before)
{
    int64_t deadline = near_now_us() + 1000000;
    while (near_stats_of(a).flushes_server <= before) {
        if (near_now_us() > deadline)
            return false;
        near_pause_ms(1);
    }
    return true;
}

static inline int near_cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

/* ---- B's acknowledged writes, and A's readers checking against them ---- */

#define NEAR_MAX_KEYS 64
#define NEAR_RING 256

typedef struct {
    pthread_mutex_t lock;
    int nkeys;
    char names[NEAR_MAX_KEYS][32];
    /* per key: the last NEAR_RING acknowledged values (increasing) and when */
    long value[NEAR_MAX_KEYS][NEAR_RING];
    int64_t at_us[NEAR_MAX_KEYS][NEAR_RING];
    unsigned count[NEAR_MAX_KEYS];
} near_acks;

static inline void near_acks_init(near_acks *k)
{
    memset(k, 0, sizeof *k);
    pthread_mutex_init(&k->lock, NULL);
}

static inline void near_acks_note(near_acks *k, int key, long value, int64_t at_us)
{
    pthread_mutex_lock(&k->lock);
    unsigned i = k->count[key]++ % NEAR_RING;
    k->value[key][i] = value;
    k->at_us[key][i] = at_us;
    pthread_mutex_unlock(&k->lock);
}

/* The newest value of key acknowledged at or before t_us; -1 when none is
 * known (nothing that old is left in the ring: no check). */
static inline long near_acks_before(near_acks *k, int key, int64_t t_us)
{
    long best = -1;
    pthread_mutex_lock(&k->lock);
    unsigned n = k->count[key] < NEAR_RING ? k->count[key] : NEAR_RING;
    for (unsigned j = 0; j < n; j++) {
        unsigned i = (k->count[key] - 1 - j) % NEAR_RING;
        if (k->at_us[key][i] <= t_us) {
            best = k->value[key][i];
            break;
        }
    }
    pthread_mutex_unlock(&k->lock);
    return best;
}

/* B's writer: value n (a global sequence, so increasing per key) to keys in
 * turn, until stop. */
typedef struct {
    pthread_t thread;
    nori_backend *b;
    near_acks *acks;
    atomic_bool *stop;
    long writes, failures;
    char last_error[256];
} near_writer;

static inline void *near_writer_main(void *arg)
{
    near_writer *w = arg;
    long seq = 1000;
    while (!atomic_load(w->stop)) {
        for (int k = 0; k < w->acks->nkeys && !atomic_load(w->stop); k++) {
            char v[24];
            int len = snprintf(v, sizeof v, "%ld", ++seq);
            int rc = nori_backend_set(w->b, w->acks->names[k], v, (size_t)len, 0);
            if (rc == NORI_OK) {
                near_acks_note(w->acks, k, seq, near_now_us());
                w->writes++;
            } else {
                w->failures++;
                snprintf(w->last_error, sizeof w->last_error, "%s", nori_last_error());
            }
        }
    }
    return NULL;
}

/* One of A's readers. */
typedef struct {
    pthread_t thread;
    nori_backend *a;
    near_acks *acks;
    atomic_bool *stop;
    long reads, errors, stale, back;
    int64_t last_error_start_us; /* when the last failed read started */
    char stale_text[256];
    char last_error[256];
} near_reader;

static inline void *near_reader_main(void *arg)
{
    near_reader *r = arg;
    long last[NEAR_MAX_KEYS];
    for (int k = 0; k < NEAR_MAX_KEYS; k++)
        last[k] = -1;
    int64_t bound = near_delay_limit_us();
    while (!atomic_load(r->stop)) {
        for (int k = 0; k < r->acks->nkeys && !atomic_load(r->stop); k++) {
            int64_t start = near_now_us();
            long must = near_acks_before(r->acks, k, start - bound);
            nori_buf v;
            int rc = nori_backend_get(r->a, r->acks->names[k], &v);
            r->reads++;
            if (rc != NORI_OK) {
                r->errors++;
                r->last_error_start_us = start;
                snprintf(r->last_error, sizeof r->last_error, "%s: %s", nori_strerror(rc),
                         nori_last_error());
                continue;
            }
            long n = strtol(v.data, NULL, 10);
            nori_buf_free(&v);
            if (n < must) {
                r->stale++;
                snprintf(r->stale_text, sizeof r->stale_text,
                         "%s read as %ld, but %ld was acknowledged more than %lld ms before the "
                         "read began",
                         r->acks->names[k], n, must, (long long)(bound / 1000));
            }
            if (n < last[k])
                r->back++;
            last[k] = n;
        }
    }
    return NULL;
}

/* ---- A and B on a multi-node set-up ---- */

/* A (a near cache of 10000 keys) and B (plain) on url. */
static inline void near_pair_open(const char *url, nori_backend **a, nori_backend **b)
{
    assert_nori(nori_redis_backend_new(url, a), NORI_OK);
    assert_nori(nori_redis_backend_enable_near(*a, 10000, 0, 0), NORI_OK);
    assert_nori(nori_redis_backend_new(url, b), NORI_OK);
}

static inline void near_pair_close(nori_backend *a, nori_backend *b)
{
    nori_backend_free(a);
    nori_backend_free(b);
}

/* B's write of key, which must succeed. */
static inline void near_set(nori_backend *b, const char *key, const char *val)
{
    assert_nori(nori_backend_set(b, key, val, strlen(val), 0), NORI_OK);
}

/* The GET calls an INFO commandstats text counts (0 when none). */
static inline long long near_get_calls(const char *info)
{
    const char *p = strstr(info, "cmdstat_get:calls=");
    return p != NULL ? strtoll(p + strlen("cmdstat_get:calls="), NULL, 10) : 0;
}

/* ---- a master killed ---- */

/* One of A's readers during a failover: keys[0..n) in turn until stop. */
typedef struct {
    pthread_t thread;
    nori_backend *a;
    const char *const *keys; /* keys[0] is on the master that is killed */
    int nkeys;
    atomic_bool *stop;
    _Atomic int64_t *after_acked_us; /* when B's "after" on keys[0] was acknowledged; 0: not yet */
    long reads, errors, wrong, stale, late_errors;
    char wrong_text[256], last_error[256];
} near_failover_reader;

/* Every value read must be "before" or "after"; "before" on keys[0] once
 * B's "after" was acknowledged more than the bound before the read began is
 * a stale read; a failed read that began 2 s after it is a late error. */
static inline void *near_failover_read(void *arg)
{
    near_failover_reader *r = arg;
    while (!atomic_load(r->stop)) {
        for (int k = 0; k < r->nkeys; k++) {
            int64_t start = near_now_us();
            int64_t acked = atomic_load(r->after_acked_us);
            nori_buf v;
            int rc = nori_backend_get(r->a, r->keys[k], &v);
            r->reads++;
            if (rc != NORI_OK) {
                r->errors++;
                /* every call that starts well after the failover succeeds */
                if (acked != 0 && start > acked + 2000000)
                    r->late_errors++;
                snprintf(r->last_error, sizeof r->last_error, "%s", nori_last_error());
                continue;
            }
            if (strcmp(v.data, "before") != 0 && strcmp(v.data, "after") != 0) {
                r->wrong++;
                snprintf(r->wrong_text, sizeof r->wrong_text, "%s read as %s", r->keys[k],
                         v.data);
            } else if (k == 0 && strcmp(v.data, "before") == 0 && acked != 0 &&
                       start > acked + near_delay_limit_us()) {
                r->stale++;
            }
            nori_buf_free(&v);
        }
    }
    return NULL;
}

/*
 * With "before" in keys[0..n) (on the victim's replica too: written there
 * with WAIT, so that a write lost at the failover cannot pass for a stale
 * read) and local in A: a reader reads them through A while `victim` is
 * SIGKILLed and B writes "after" to keys[0] until the promoted replica
 * takes it (write_bound_ms at most); the reader goes on 2.5 s more. B's
 * write must be accepted, and A's reads are never wrong, never stale,
 * never failing 2 s after the write. `what` prefixes the figures printed.
 */
static inline void near_failover(nori_backend *a, nori_backend *b, const char *const *keys,
                                 int nkeys, nori_test_node *victim, int write_bound_ms,
                                 const char *what)
{
    atomic_bool stop;
    atomic_init(&stop, false);
    _Atomic int64_t acked;
    atomic_init(&acked, 0);
    near_failover_reader fr = {
        .a = a, .keys = keys, .nkeys = nkeys, .stop = &stop, .after_acked_us = &acked};
    assert_int_equal(pthread_create(&fr.thread, NULL, near_failover_read, &fr), 0);
    near_pause_ms(100);
    nori_test_node_kill(victim, SIGKILL);
    int64_t killed = near_now_us();
    int rc = NORI_EBACKEND;
    while (rc != NORI_OK && near_now_us() < killed + (int64_t)write_bound_ms * 1000) {
        rc = nori_backend_set(b, keys[0], "after", 5, 0);
        if (rc != NORI_OK)
            near_pause_ms(50);
    }
    int64_t t_ack = near_now_us();
    atomic_store(&acked, t_ack);
    near_pause_ms(2500);
    atomic_store(&stop, true);
    pthread_join(fr.thread, NULL);
    print_message("%s: B's write accepted %.0f ms after the kill; A: %ld reads, %ld errors "
                  "(last: %s)\n",
                  what, (t_ack - killed) / 1000.0, fr.reads, fr.errors,
                  fr.errors > 0 ? fr.last_error : "none");
    assert_nori(rc, NORI_OK);
    if (fr.wrong > 0)
        fail_msg("%ld wrong reads, last: %s", fr.wrong, fr.wrong_text);
    assert_int_equal(fr.stale, 0);
    assert_int_equal(fr.late_errors, 0);
}

/* After a failover: A reads B's "after" on key, keeps it locally, and sees
 * B's next write within the bound (A tracks the new master). */
static inline void near_tracks_again(nori_backend *a, nori_backend *b, const char *key)
{
    near_wait_for(a, key, "after", near_now_us());
    near_make_local(a, key, "after");
    int64_t t0 = near_now_us();
    near_set(b, key, "after2");
    assert_true(near_wait_for(a, key, "after2", t0) <= near_delay_limit_us());
}

#endif
