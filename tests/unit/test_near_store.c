// SPDX-License-Identifier: MIT
/*
 * The near cache store on its own (no Redis): fill markers against
 * invalidations and flushes, the epoch across a loss of tracking, TTL caps,
 * both bounds (also under 8 threads), and the counters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "clock.h"
#include "redis/near/near.h"
#include "test_support.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static nori__near *make(size_t keys, size_t bytes, int64_t max_ttl_ms)
{
    nori__near_limits lim = {keys, bytes, max_ttl_ms};
    nori__near *n = NULL;
    assert_nori(nori__near_new(&lim, &n), NORI_OK);
    nori__near_set_active(n, true, NORI__NEAR_FLUSH_OWN);
    return n;
}

/* Fills key with val as a completed read would (PTTL pttl). */
static bool fill(nori__near *n, const char *key, const char *val, int64_t pttl)
{
    nori__near_fill f;
    if (!nori__near_fill_begin(n, key, strlen(key), &f))
        return false;
    return nori__near_fill_end(n, key, strlen(key), &f, val, strlen(val), pttl);
}

static void expect_near(nori__near *n, const char *key, const char *want)
{
    nori_buf b;
    int rc = nori__near_get(n, key, strlen(key), &b);
    if (want == NULL) {
        assert_nori(rc, NORI_MISS);
        assert_null(b.data);
        return;
    }
    assert_nori(rc, NORI_OK);
    assert_int_equal(b.len, strlen(want));
    assert_string_equal(b.data, want);
    nori_buf_free(&b);
}

static void test_limits_refused(void **state)
{
    (void)state;
    nori__near *n = NULL;
    nori__near_limits none = {0, 0, 0};
    assert_nori(nori__near_new(&none, &n), NORI_EINVAL);
    nori__near_limits neg = {10, 0, -1};
    assert_nori(nori__near_new(&neg, &n), NORI_EINVAL);
    assert_null(n);
}

static void test_inactive_serves_and_fills_nothing(void **state)
{
    (void)state;
    nori__near_limits lim = {100, 0, 0};
    nori__near *n = NULL;
    assert_nori(nori__near_new(&lim, &n), NORI_OK);
    nori__near_fill f;
    assert_false(nori__near_fill_begin(n, "k", 1, &f));
    expect_near(n, "k", NULL);
    nori__near_set_active(n, true, NORI__NEAR_FLUSH_OWN);
    assert_true(fill(n, "k", "v", -1));
    expect_near(n, "k", "v");
    nori__near_set_active(n, false, NORI__NEAR_FLUSH_LISTENER_LOST);
    expect_near(n, "k", NULL);
    nori__near_set_active(n, true, NORI__NEAR_FLUSH_OWN);
    expect_near(n, "k", NULL); /* the loss flushed it */
    nori__near_stats st;
    nori__near_get_stats(n, &st);
    assert_int_equal(st.flushes[NORI__NEAR_FLUSH_LISTENER_LOST], 1);
    assert_int_equal(st.entries, 0);
    nori__near_free(n);
}

/* Several listeners (one per Redis node): the loss of one flushes the whole
 * store but it keeps serving what is filled afterwards while another is
 * proved; it stops once none is. */
static void test_active_counts_listeners(void **state)
{
    (void)state;
    nori__near_limits lim = {100, 0, 0};
    nori__near *n = NULL;
    assert_nori(nori__near_new(&lim, &n), NORI_OK);
    nori__near_set_active(n, true, NORI__NEAR_FLUSH_OWN);
    nori__near_set_active(n, true, NORI__NEAR_FLUSH_OWN);
    assert_true(fill(n, "k", "v", -1));
    nori__near_set_active(n, false, NORI__NEAR_FLUSH_LISTENER_LOST);
    assert_true(nori__near_is_active(n));
    expect_near(n, "k", NULL); /* flushed: the lost node may have served it */
    assert_true(fill(n, "k", "w", -1));
    expect_near(n, "k", "w");
    nori__near_set_active(n, false, NORI__NEAR_FLUSH_HEARTBEAT);
    assert_false(nori__near_is_active(n));
    expect_near(n, "k", NULL);
    nori__near_set_active(n, false, NORI__NEAR_FLUSH_HEARTBEAT); /* unpaired: nothing */
    nori__near_stats st;
    nori__near_get_stats(n, &st);
    assert_int_equal(st.flushes[NORI__NEAR_FLUSH_LISTENER_LOST], 1);
    assert_int_equal(st.flushes[NORI__NEAR_FLUSH_HEARTBEAT], 1);
    assert_string_equal(nori__near_flush_cause_name(NORI__NEAR_FLUSH_TOPOLOGY), "topology");
    nori__near_free(n);
}

static void test_fill_and_binary_values(void **state)
{
    (void)state;
    nori__near *n = make(100, 0, 0);
    const char bin[] = "a\0b\xff";
    nori__near_fill f;
    assert_true(nori__near_fill_begin(n, "bin", 3, &f));
    expect_near(n, "bin", NULL); /* a marker is not a value */
    assert_true(nori__near_fill_end(n, "bin", 3, &f, bin, sizeof bin - 1, 5000));
    nori_buf b;
    assert_nori(nori__near_get(n, "bin", 3, &b), NORI_OK);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, bin, 4);
    assert_int_equal(b.data[4], '\0');
    nori_buf_free(&b);
    /* A value already there: no second fill. */
    assert_false(nori__near_fill_begin(n, "bin", 3, &f));
    /* Empty values are values. */
    assert_true(fill(n, "empty", "", -1));
    expect_near(n, "empty", "");
    nori__near_free(n);
}

/* The race of the client-side caching guide, made deterministic: the
 * invalidation comes between sending the GET and reading its reply. */
static void test_invalidation_during_fill_discards_reply(void **state)
{
    (void)state;
    nori__near *n = make(100, 0, 0);
    nori__near_fill f;
    assert_true(nori__near_fill_begin(n, "k", 1, &f));
    nori__near_invalidate(n, "k", 1);
    assert_false(nori__near_fill_end(n, "k", 1, &f, "old", 3, -1));
    expect_near(n, "k", NULL);
    /* An own write during the fill, likewise. */
    assert_true(nori__near_fill_begin(n, "k", 1, &f));
    nori__near_drop(n, "k", 1);
    assert_false(nori__near_fill_end(n, "k", 1, &f, "old", 3, -1));
    expect_near(n, "k", NULL);
    /* A second fill while one is in flight is refused (the first is left
     * alone); what the second reader saw decides whether the first keeps
     * its reply: the same value, kept; another one, neither (which read the
     * server ran first is unknown). */
    nori__near_fill f1, f2;
    assert_true(nori__near_fill_begin(n, "k", 1, &f1));
    assert_false(nori__near_fill_begin(n, "k", 1, &f2));
    assert_false(f2.live);
    nori__near_note_read(n, "k", 1, NULL, "first", 5, true);
    assert_true(nori__near_fill_end(n, "k", 1, &f1, "first", 5, -1));
    expect_near(n, "k", "first");
    nori__near_drop(n, "k", 1);
    assert_true(nori__near_fill_begin(n, "k", 1, &f1));
    nori__near_note_read(n, "k", 1, NULL, "second", 6, true);
    assert_false(nori__near_fill_end(n, "k", 1, &f1, "first", 5, -1));
    expect_near(n, "k", NULL);
    assert_true(nori__near_fill_begin(n, "k", 1, &f1));
    nori__near_note_read(n, "k", 1, NULL, NULL, 0, false); /* saw it gone */
    assert_false(nori__near_fill_end(n, "k", 1, &f1, "first", 5, -1));
    /* A fill that finds a live copy is refused and says so (serve it); a
     * reader that saw another value than the copy drops the copy. */
    assert_true(nori__near_fill_begin(n, "k", 1, &f1));
    assert_true(nori__near_fill_end(n, "k", 1, &f1, "second", 6, -1));
    assert_false(nori__near_fill_begin(n, "k", 1, &f2));
    assert_true(f2.live);
    nori__near_note_read(n, "k", 1, NULL, "second", 6, true);
    expect_near(n, "k", "second");
    nori__near_note_read(n, "k", 1, NULL, "third", 5, true);
    expect_near(n, "k", NULL);
    assert_true(nori__near_fill_begin(n, "k", 1, &f1));
    assert_true(nori__near_fill_end(n, "k", 1, &f1, "second", 6, -1));
    /* A cancelled fill leaves nothing behind. */
    assert_true(nori__near_fill_begin(n, "c", 1, &f));
    nori__near_fill_cancel(n, "c", 1, &f);
    nori__near_stats st;
    nori__near_get_stats(n, &st);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.invalidations, 1);
    assert_int_equal(st.fills, 3);
    assert_int_equal(st.fills_discarded, 4);
    nori__near_free(n);
}

/*
 * A fill whose marker an invalidation removed is still a read of the key:
 * when another fill took the key meanwhile, what the first one read decides
 * whether the second keeps its reply. The sequence from the field: T marks
 * the key, an invalidation removes the marker, F marks it and reads 2920,
 * the key becomes 2921, T's slower read returns 2921 (returned to T's
 * caller), F's reply comes in: F must not keep 2920, or T's next get would
 * go back to it. Both orders of the two replies.
 */
static void test_displaced_fill_reports_its_read(void **state)
{
    (void)state;
    nori__near *n = make(100, 0, 0);
    nori__near_fill t, f;
    /* T's reply first: F's fill learns of it and keeps nothing. */
    assert_true(nori__near_fill_begin(n, "k", 1, &t));
    nori__near_invalidate(n, "k", 1);
    assert_true(nori__near_fill_begin(n, "k", 1, &f));
    assert_false(nori__near_fill_end(n, "k", 1, &t, "2921", 4, -1));
    assert_false(nori__near_fill_end(n, "k", 1, &f, "2920", 4, -1));
    expect_near(n, "k", NULL);
    /* F's reply first and kept: T's newer reply drops that copy. */
    assert_true(nori__near_fill_begin(n, "k", 1, &t));
    nori__near_invalidate(n, "k", 1);
    assert_true(nori__near_fill_begin(n, "k", 1, &f));
    assert_true(nori__near_fill_end(n, "k", 1, &f, "2920", 4, -1));
    assert_false(nori__near_fill_end(n, "k", 1, &t, "2921", 4, -1));
    expect_near(n, "k", NULL);
    /* Both read the same value: F keeps it. */
    assert_true(nori__near_fill_begin(n, "k", 1, &t));
    nori__near_invalidate(n, "k", 1);
    assert_true(nori__near_fill_begin(n, "k", 1, &f));
    assert_false(nori__near_fill_end(n, "k", 1, &t, "2922", 4, -1));
    assert_true(nori__near_fill_end(n, "k", 1, &f, "2922", 4, -1));
    expect_near(n, "k", "2922");
    /* T's displaced read saw the key gone (a nil, not kept): reported too,
     * in both orders. */
    nori__near_drop(n, "k", 1);
    assert_true(nori__near_fill_begin(n, "k", 1, &t));
    nori__near_invalidate(n, "k", 1);
    assert_true(nori__near_fill_begin(n, "k", 1, &f));
    nori__near_note_read(n, "k", 1, &t, NULL, 0, false);
    assert_false(nori__near_fill_end(n, "k", 1, &f, "2922", 4, -1));
    expect_near(n, "k", NULL);
    assert_true(nori__near_fill_begin(n, "k", 1, &t));
    nori__near_invalidate(n, "k", 1);
    assert_true(nori__near_fill_begin(n, "k", 1, &f));
    assert_true(nori__near_fill_end(n, "k", 1, &f, "2922", 4, -1));
    nori__near_note_read(n, "k", 1, &t, NULL, 0, false);
    expect_near(n, "k", NULL);
    /* A value T may not keep (not proved), displaced: the same. */
    assert_true(nori__near_fill_begin(n, "k", 1, &t));
    nori__near_invalidate(n, "k", 1);
    assert_true(nori__near_fill_begin(n, "k", 1, &f));
    nori__near_note_read(n, "k", 1, &t, "2923", 4, true);
    assert_false(nori__near_fill_end(n, "k", 1, &f, "2922", 4, -1));
    expect_near(n, "k", NULL);
    /* Its own marker still in place: the fill just ends (nothing kept, no
     * report to itself), and the next fill goes ahead. */
    assert_true(nori__near_fill_begin(n, "k", 1, &t));
    nori__near_note_read(n, "k", 1, &t, NULL, 0, false);
    nori__near_stats st;
    nori__near_get_stats(n, &st);
    assert_int_equal(st.entries, 0);
    assert_true(nori__near_fill_begin(n, "k", 1, &f));
    assert_true(nori__near_fill_end(n, "k", 1, &f, "2924", 4, -1));
    expect_near(n, "k", "2924");
    nori__near_free(n);
}

static void test_flush_and_loss_during_fill_discard_reply(void **state)
{
    (void)state;
    nori__near *n = make(100, 0, 0);
    nori__near_fill f;
    assert_true(nori__near_fill_begin(n, "k", 1, &f));
    nori__near_flush(n, NORI__NEAR_FLUSH_SERVER);
    assert_false(nori__near_fill_end(n, "k", 1, &f, "old", 3, -1));
    /* Tracking lost and proved again while the read was out: the reply
     * came over a connection whose tracking belonged to the old epoch. */
    assert_true(nori__near_fill_begin(n, "k", 1, &f));
    nori__near_set_active(n, false, NORI__NEAR_FLUSH_HEARTBEAT);
    nori__near_set_active(n, true, NORI__NEAR_FLUSH_OWN);
    assert_false(nori__near_fill_end(n, "k", 1, &f, "old", 3, -1));
    expect_near(n, "k", NULL);
    /* Marker placed after the flush passed, epoch read before it: the
     * epoch alone catches it (simulated by flushing between the two). */
    assert_true(nori__near_fill_begin(n, "k", 1, &f));
    nori__near_flush(n, NORI__NEAR_FLUSH_OWN);
    nori__near_fill stale = f;
    assert_true(nori__near_fill_begin(n, "k", 1, &f));
    stale.ticket = f.ticket; /* same marker, old epoch */
    assert_false(nori__near_fill_end(n, "k", 1, &stale, "old", 3, -1));
    nori__near_stats st;
    nori__near_get_stats(n, &st);
    assert_int_equal(st.flushes[NORI__NEAR_FLUSH_SERVER], 1);
    assert_int_equal(st.flushes[NORI__NEAR_FLUSH_HEARTBEAT], 1);
    assert_int_equal(st.flushes[NORI__NEAR_FLUSH_OWN], 1);
    nori__near_free(n);
}

static _Atomic int64_t fake_now; /* the virtual clock (clock.h) */

static void test_ttl_caps(void **state)
{
    (void)state;
    fake_now = 1000000;
    nori__clock_override(&fake_now, &fake_now);
    nori__near *n = make(100, 0, 2000);
    /* PTTL 500 ms: gone after it (less a margin for the coarse clock). */
    assert_true(fill(n, "short", "v", 500));
    fake_now += 480;
    expect_near(n, "short", "v");
    fake_now += 30;
    expect_near(n, "short", NULL);
    /* No expiry in Redis: the max_ttl cap (2 s here) still applies. */
    assert_true(fill(n, "forever", "v", -1));
    fake_now += 1980;
    expect_near(n, "forever", "v");
    fake_now += 30;
    expect_near(n, "forever", NULL);
    /* PTTL longer than the cap: the cap. */
    assert_true(fill(n, "long", "v", 100000));
    fake_now += 2010;
    expect_near(n, "long", NULL);
    /* Gone (-2), expiring now (0), or too close to keep: not stored. */
    assert_false(fill(n, "gone", "v", -2));
    assert_false(fill(n, "zero", "v", 0));
    assert_false(fill(n, "tiny", "v", 5));
    expect_near(n, "gone", NULL);
    /* The life counts from fill_begin (before the GET was sent). */
    nori__near_fill f;
    assert_true(nori__near_fill_begin(n, "slow", 4, &f));
    fake_now += 400;
    assert_true(nori__near_fill_end(n, "slow", 4, &f, "v", 1, 500));
    fake_now += 110;
    expect_near(n, "slow", NULL);
    nori__near_free(n);
    nori__clock_override(NULL, NULL);
}

static void test_key_bound_lru(void **state)
{
    (void)state;
    nori__near *n = make(3, 0, 0); /* one shard: exact LRU */
    assert_true(fill(n, "a", "1", -1));
    assert_true(fill(n, "b", "2", -1));
    assert_true(fill(n, "c", "3", -1));
    expect_near(n, "a", "1");
    assert_true(fill(n, "d", "4", -1));
    expect_near(n, "b", NULL);
    expect_near(n, "a", "1");
    expect_near(n, "c", "3");
    expect_near(n, "d", "4");
    nori__near_stats st;
    nori__near_get_stats(n, &st);
    assert_int_equal(st.entries, 3);
    assert_int_equal(st.evictions, 1);
    nori__near_free(n);
}

static void test_byte_bound(void **state)
{
    (void)state;
    size_t max = 3 * (NORI_NEAR_ENTRY_OVERHEAD + 1 + 100);
    nori__near *n = make(0, max, 0);
    char v[101], huge[600];
    memset(v, 'x', 100);
    v[100] = '\0';
    memset(huge, 'y', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    assert_true(fill(n, "a", v, -1));
    assert_true(fill(n, "b", v, -1));
    assert_true(fill(n, "c", v, -1));
    nori__near_stats st;
    nori__near_get_stats(n, &st);
    assert_int_equal(st.bytes, max);
    assert_true(fill(n, "d", v, -1));
    expect_near(n, "a", NULL);
    nori__near_get_stats(n, &st);
    assert_int_equal(st.bytes, max);
    /* Larger than the whole bound: never kept (its marker, small, may have
     * taken the place of the least recently used entry). */
    assert_false(fill(n, "huge", huge, -1));
    expect_near(n, "huge", NULL);
    expect_near(n, "d", v);
    nori__near_get_stats(n, &st);
    assert_true(st.bytes <= max);
    assert_int_equal(st.fills_discarded, 1);
    nori__near_free(n);
}

/* ---- 8 threads: the bounds hold at every instant ---- */

enum { THREADS = 8, ROUNDS = 20000, BOUND_KEYS = 2000, MAX_VAL = 16384 };
#define BOUND_BYTES ((size_t)4 * 1024 * 1024)

typedef struct {
    nori__near *n;
    unsigned seed;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *a = p;
    static const char big[MAX_VAL];
    for (int i = 0; i < ROUNDS; i++) {
        unsigned r = a->seed = a->seed * 1103515245u + 12345u;
        char key[32];
        int klen = snprintf(key, sizeof key, "k%u", (r >> 8) % 5000);
        switch ((r >> 4) % 8) {
        case 0:
            nori__near_invalidate(a->n, key, (size_t)klen);
            break;
        case 1: {
            nori__near_fill f;
            if (nori__near_fill_begin(a->n, key, (size_t)klen, &f))
                nori__near_fill_end(a->n, key, (size_t)klen, &f, big, (r >> 18) % MAX_VAL, -1);
            break;
        }
        case 2:
            if ((r >> 16) % 500 == 0)
                nori__near_flush(a->n, NORI__NEAR_FLUSH_OWN);
            break;
        default: {
            nori_buf b;
            if (nori__near_get(a->n, key, (size_t)klen, &b) == NORI_OK)
                nori_buf_free(&b);
            else {
                nori__near_fill f;
                if (nori__near_fill_begin(a->n, key, (size_t)klen, &f))
                    nori__near_fill_end(a->n, key, (size_t)klen, &f, big, r % 512, 100000);
            }
        }
        }
    }
    return NULL;
}

static void test_bounds_under_threads(void **state)
{
    (void)state;
    nori__near *n = make(BOUND_KEYS, BOUND_BYTES, 0);
    pthread_t t[THREADS];
    worker_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (worker_arg){n, (unsigned)i * 7919u + 1u};
        assert_int_equal(pthread_create(&t[i], NULL, worker, &args[i]), 0);
    }
    /* Sampled while they run: each shard is within its share at every
     * instant, so the sum is within the bound. */
    uint64_t max_entries = 0, max_bytes = 0;
    for (int i = 0; i < 200; i++) {
        nori__near_stats st;
        nori__near_get_stats(n, &st);
        if (st.entries > max_entries)
            max_entries = st.entries;
        if (st.bytes > max_bytes)
            max_bytes = st.bytes;
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    nori__near_stats st;
    nori__near_get_stats(n, &st);
    assert_true(max_entries <= BOUND_KEYS);
    assert_true(max_bytes <= BOUND_BYTES);
    assert_true(st.entries <= BOUND_KEYS);
    assert_true(st.bytes <= BOUND_BYTES);
    assert_true(st.hits > 0);
    assert_true(st.evictions > 0);
    /* Everything accounted: emptying the store returns to zero. */
    nori__near_flush(n, NORI__NEAR_FLUSH_OWN);
    nori__near_get_stats(n, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    nori__near_free(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limits_refused),
        cmocka_unit_test(test_inactive_serves_and_fills_nothing),
        cmocka_unit_test(test_active_counts_listeners),
        cmocka_unit_test(test_fill_and_binary_values),
        cmocka_unit_test(test_invalidation_during_fill_discards_reply),
        cmocka_unit_test(test_displaced_fill_reports_its_read),
        cmocka_unit_test(test_flush_and_loss_during_fill_discard_reply),
        cmocka_unit_test(test_ttl_caps),
        cmocka_unit_test(test_key_bound_lru),
        cmocka_unit_test(test_byte_bound),
        cmocka_unit_test(test_bounds_under_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
