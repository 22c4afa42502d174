// SPDX-License-Identifier: MIT
/*
 * The memory backend's hash table (src/memory/table.c): buckets of seven
 * tagged slots with linear probing and overflow counts, tables rebuilt
 * whole when they grow or shrink, lock-free readers.
 *  - keys that all share one home bucket: probing past full buckets,
 *    overflow counts past saturation (255), removals in the middle of a
 *    probe sequence, reinsertion, an audit of the table after each step;
 *  - growth, and shrinking by the sweeper once most entries expired;
 *  - readers never miss a key that stays present, nor read another key's
 *    value, while a writer fills and empties the same buckets and rebuilds
 *    the table under them (labelled "concurrency": also run under TSan).
 * The audit (nori__memory_audit) checks the table's own invariants: every
 * tag matches its entry's hash, every entry is reachable from its home
 * bucket, every overflow count is exact or saturated.
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
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SHARD_BITS 6

static int shard_of_hash(uint64_t h)
{
    return (int)(h >> (64 - SHARD_BITS));
}

/*
 * Fills keys[0..n) with distinct keys "stem-<i>" of shard `shard` whose
 * hash's low 32 bits are below 2^(32 - home_bits): home bucket 0 in any
 * table of up to 2^home_bits buckets (the home is those 32 bits times the
 * bucket count, over 2^32). Returns how many candidates it tried.
 */
static long find_keys(nori_backend *b, const char *stem, int shard, unsigned home_bits,
                      char (*keys)[32], int n)
{
    long tried = 0;
    for (int found = 0; found < n; tried++) {
        snprintf(keys[found], sizeof keys[found], "%s-%ld", stem, tried);
        uint64_t h = nori__memory_key_hash(b, keys[found]);
        if (shard_of_hash(h) == shard && ((h & 0xffffffffu) >> (32 - home_bits)) == 0)
            found++;
    }
    return tried;
}

static void value_of(const char *key, int version, char *out, size_t size)
{
    snprintf(out, size, "%s=v%d", key, version);
}

static void check_value(nori_backend *b, const char *key, int version)
{
    char want[64];
    value_of(key, version, want, sizeof want);
    nori_buf v;
    assert_nori(nori_backend_get(b, key, &v), NORI_OK);
    assert_string_equal(v.data, want);
    nori_buf_free(&v);
}

static void check_absent(nori_backend *b, const char *key)
{
    nori_buf v;
    assert_nori(nori_backend_get(b, key, &v), NORI_MISS);
}

static void set_version(nori_backend *b, const char *key, int version, int64_t ttl)
{
    char v[64];
    value_of(key, version, v, sizeof v);
    assert_nori(nori_backend_set(b, key, v, strlen(v), ttl), NORI_OK);
}

/* ---- one home bucket for every key ---- */

#define COLLIDING 300

static void test_keys_sharing_one_home_bucket(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori__memory_backend_new_opts(100000, false, &b), NORI_OK);
    static char keys[COLLIDING][32];
    /* 300 entries need 64 buckets: 7 bits of home index put them in one
     * bucket up to 128 buckets. */
    long tried = find_keys(b, "same-home", 0, 7, keys, COLLIDING);
    print_message("%d keys of one home bucket among %ld candidates\n", COLLIDING, tried);
    for (int i = 0; i < COLLIDING; i++) {
        set_version(b, keys[i], 1, 0);
        if (i % 25 == 0)
            assert_int_equal(nori__memory_audit(b), i + 1);
    }
    assert_int_equal(nori__memory_audit(b), COLLIDING);
    size_t buckets = nori__memory_buckets(b, 0);
    print_message("shard 0: %zu buckets for %d entries\n", buckets, COLLIDING);
    /* 300 entries from one home fill 43 buckets in a row: the home bucket's
     * overflow count (293 entries past it) is saturated. The table holds
     * them at a load of 11/16 to 14/16: 49 to 63 buckets. */
    assert_true(buckets >= 49 && buckets <= 63);
    for (int i = 0; i < COLLIDING; i++)
        check_value(b, keys[i], 1);

    /* Removals in the middle of the probe sequence: the entries past them
     * stay reachable, the removed ones are gone. */
    for (int i = 0; i < COLLIDING; i += 2)
        assert_nori(nori_backend_delete(b, keys[i]), NORI_OK);
    assert_int_equal(nori__memory_audit(b), COLLIDING / 2);
    for (int i = 0; i < COLLIDING; i++) {
        if (i % 2 == 0)
            check_absent(b, keys[i]);
        else
            check_value(b, keys[i], 1);
    }
    /* Reinserted (into the freed slots) and overwritten in place. */
    for (int i = 0; i < COLLIDING; i += 2)
        set_version(b, keys[i], 2, 0);
    for (int i = 1; i < COLLIDING; i += 2)
        set_version(b, keys[i], 3, 0);
    assert_int_equal(nori__memory_audit(b), COLLIDING);
    for (int i = 0; i < COLLIDING; i++)
        check_value(b, keys[i], i % 2 == 0 ? 2 : 3);

    /* Rebuilt at other sizes: the same entries, found again. */
    assert_nori(nori__memory_rebuild_table(b, 0, 1024), NORI_OK);
    assert_int_equal(nori__memory_buckets(b, 0), 1024);
    assert_int_equal(nori__memory_audit(b), COLLIDING);
    assert_nori(nori__memory_rebuild_table(b, 0, 4), NORI_EINVAL); /* too small: unchanged */
    assert_nori(nori__memory_rebuild_table(b, 0, 0), NORI_EINVAL);
    assert_int_equal(nori__memory_buckets(b, 0), 1024);
    assert_nori(nori__memory_rebuild_table(b, 0, 49), NORI_OK);
    assert_int_equal(nori__memory_audit(b), COLLIDING);
    for (int i = 0; i < COLLIDING; i++)
        check_value(b, keys[i], i % 2 == 0 ? 2 : 3);

    /* Emptied from the front of the probe sequence, then by delete_prefix. */
    for (int i = 0; i < COLLIDING / 2; i++)
        assert_nori(nori_backend_delete(b, keys[i]), NORI_OK);
    assert_int_equal(nori__memory_audit(b), COLLIDING - COLLIDING / 2);
    for (int i = COLLIDING / 2; i < COLLIDING; i++)
        check_value(b, keys[i], i % 2 == 0 ? 2 : 3);
    assert_nori(nori_backend_delete_prefix(b, "same-home-"), NORI_OK);
    assert_int_equal(nori__memory_audit(b), 0);
    for (int i = 0; i < COLLIDING; i++)
        check_absent(b, keys[i]);
    nori_backend_free(b);
}

/* ---- growth, and shrinking once entries expired ---- */

#define MANY 5000
#define KEPT 20

static void test_grows_and_shrinks(void **state)
{
    (void)state;
    nori_test_clock_install(1000000);
    nori_backend *b;
    /* No sweeper thread: the test runs the sweep itself. */
    assert_nori(nori__memory_backend_new_opts(100000, false, &b), NORI_OK);
    static char keys[MANY][32];
    find_keys(b, "grow", 5, 0, keys, MANY);
    size_t start = nori__memory_buckets(b, 5);
    for (int i = 0; i < MANY; i++) {
        set_version(b, keys[i], 1, i < KEPT ? 0 : 10);
        if ((i & (i + 1)) == 0) /* at 1, 3, 7, 15, ...: just after each growth or so */
            assert_int_equal(nori__memory_audit(b), i + 1);
    }
    size_t grown = nori__memory_buckets(b, 5);
    print_message("shard 5: %zu buckets empty, %zu for %d entries\n", start, grown, MANY);
    /* Between 11/16 and 14/16 full: 5000 entries take 817 to 1039 buckets. */
    assert_true(start <= 2 && grown >= 817 && grown <= 1039);
    for (int i = 0; i < MANY; i++)
        check_value(b, keys[i], 1);

    nori__clock_advance(11000); /* all but the first KEPT expire */
    size_t removed = nori__memory_sweep_now(b);
    assert_int_equal(removed, MANY - KEPT);
    size_t shrunk = nori__memory_buckets(b, 5);
    print_message("after expiry: %zu buckets for %d entries\n", shrunk, KEPT);
    assert_true(shrunk < grown / 8);
    assert_int_equal(nori__memory_audit(b), KEPT);
    for (int i = 0; i < MANY; i++) {
        if (i < KEPT)
            check_value(b, keys[i], 1);
        else
            check_absent(b, keys[i]);
    }
    nori_backend_free(b);
    nori_test_clock_uninstall();
}

/* ---- readers while the buckets under them change ---- */

#define STABLE 64
#define CHURN 1500
#define READERS 2

typedef struct {
    nori_backend *b;
    char (*stable)[32];
    _Atomic int *stop;
    long reads, wrong;
} reader_args;

/* Passes of the readers over the stable keys, for the writer's waits. */
static _Atomic long passes;

static void *reader(void *arg)
{
    reader_args *a = arg;
    char want[64], buf[64];
    while (!atomic_load(a->stop)) {
        for (int i = 0; i < STABLE; i++) {
            size_t len = 0;
            int rc = nori_backend_get_into(a->b, a->stable[i], buf, sizeof buf, &len);
            value_of(a->stable[i], 7, want, sizeof want);
            if (rc != NORI_OK || len != strlen(want) || memcmp(buf, want, len) != 0) {
                if (a->wrong++ == 0)
                    print_error("get %s: rc %d, %zu bytes\n", a->stable[i], rc, len);
            }
            a->reads++;
        }
        atomic_fetch_add(&passes, 1);
    }
    return NULL;
}

/*
 * Waits until a reader has completed a pass since `since`, so that reads
 * overlap every state the writer puts the table in, however the threads
 * are scheduled on a loaded machine. Bounded: 20 s without a single pass
 * means the readers are stuck (a generous bound: a pass is 64 gets).
 */
static void wait_for_a_pass(long since)
{
    for (int ms = 0; ms < 20000 && atomic_load(&passes) <= since; ms++) {
        struct timespec d = {0, 1000000};
        nanosleep(&d, NULL);
    }
    if (atomic_load(&passes) <= since)
        print_error("the readers made no pass in 20 s\n");
    assert_true(atomic_load(&passes) > since);
}

static void test_readers_never_miss_during_rebuilds(void **state)
{
    (void)state;
    alarm(120);
    nori_backend *b;
    assert_nori(nori__memory_backend_new_opts(100000, false, &b), NORI_OK);
    /* Stable and churning keys share shard 9 and, for tables of up to 64
     * buckets, one home bucket: the churn inserts into and removes from the
     * probe sequence the stable keys sit in. */
    static char stable[STABLE][32], churn[CHURN][32];
    find_keys(b, "stable", 9, 6, stable, STABLE);
    find_keys(b, "churn", 9, 3, churn, CHURN);
    for (int i = 0; i < STABLE; i++)
        set_version(b, stable[i], 7, 0);
    _Atomic int stop = 0;
    pthread_t t[READERS];
    reader_args args[READERS];
    for (int r = 0; r < READERS; r++) {
        args[r] = (reader_args){b, stable, &stop, 0, 0};
        assert_int_equal(pthread_create(&t[r], NULL, reader, &args[r]), 0);
    }
    /* Sizes that hold 1,564 entries, then 814, then 64 at a load of at most
     * 14/16 (the next round's inserts grow the table again from 16). */
    static const size_t full[] = {300, 2048, 1001}, half[] = {150, 4096, 333};
    for (int round = 0; round < 12; round++) {
        long p = atomic_load(&passes);
        for (int i = 0; i < CHURN; i++)
            set_version(b, churn[i], round, 0);
        wait_for_a_pass(p);
        /* Rebuilt while the readers read: they may be on the old table. */
        p = atomic_load(&passes);
        assert_nori(nori__memory_rebuild_table(b, 9, full[round % 3]), NORI_OK);
        for (int i = 0; i < CHURN; i += 2)
            assert_nori(nori_backend_delete(b, churn[i]), NORI_OK);
        wait_for_a_pass(p);
        p = atomic_load(&passes);
        assert_nori(nori__memory_rebuild_table(b, 9, half[round % 3]), NORI_OK);
        for (int i = 1; i < CHURN; i += 2)
            assert_nori(nori_backend_delete(b, churn[i]), NORI_OK);
        wait_for_a_pass(p);
        p = atomic_load(&passes);
        assert_nori(nori__memory_rebuild_table(b, 9, 16), NORI_OK);
        assert_int_equal(nori__memory_audit(b), STABLE);
        wait_for_a_pass(p);
    }
    atomic_store(&stop, 1);
    long reads = 0;
    for (int r = 0; r < READERS; r++) {
        pthread_join(t[r], NULL);
        reads += args[r].reads;
        assert_int_equal(args[r].wrong, 0);
    }
    print_message("%ld reads of present keys, none missed\n", reads);
    assert_true(reads > 0);
    for (int i = 0; i < STABLE; i++)
        check_value(b, stable[i], 7);
    nori_backend_free(b);
    alarm(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_sharing_one_home_bucket),
        cmocka_unit_test(test_grows_and_shrinks),
        cmocka_unit_test(test_readers_never_miss_during_rebuilds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
