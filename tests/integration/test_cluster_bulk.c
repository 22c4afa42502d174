// SPDX-License-Identifier: MIT
/*
 * The bulk calls (get_many, set_many, delete_many) against a real Redis
 * Cluster (3 masters + 3 replicas, one cluster for the whole program):
 *  - keys over all three masters (each found on the master of its slot)
 *    and hash-tagged keys agree with the single-key calls, TTLs are set;
 *  - one pipelined round trip per master, not one per key: each master's
 *    total_reads_processed (INFO stats) grows by a few reads for 40 keys,
 *    and its cmdstat_get calls by exactly its own keys;
 *  - a key of another type on one node (WRONGTYPE) fails alone;
 *  - a map made stale by a reshard (MOVED) and bulk calls during a reshard
 *    (MOVED and ASK) give zero failed keys;
 *  - on scripted fake nodes (tests/support/fake_redis.c): a key answered
 *    MOVED is sent again alone to the new owner while the others are read
 *    from the pipeline; a cluster that answers CLUSTERDOWN to every key
 *    ends the call after one retry budget, not one per key; a node that
 *    sends the first bytes of its replies and stalls fails its own keys
 *    only, the replies of another node already in are taken;
 *  - (last) a SIGSTOPped master fails only its own keys, within the bound
 *    of cache.h (its round trip's timeout_ms plus a map refresh), the other
 *    masters' keys succeed, and the backend recovers after SIGCONT.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cluster_fixture.h"
#include "redis/route/cluster_slots.h"
#include "test_support.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Keys per master in the round-trip test: far more than the few reads a
 * pipeline costs the server. */
#define PER_MASTER 40

/* Keys "prefix<k>", PER_MASTER of them on each master: names[m * PER_MASTER + t]
 * lies on master mi[m]. */
static void keys_per_master(const int *owner, const int *mi, const char *prefix,
                            char names[][32])
{
    int count[3] = {0, 0, 0};
    for (int k = 0; count[0] + count[1] + count[2] < 3 * PER_MASTER; k++) {
        char key[32];
        snprintf(key, sizeof key, "%s%d", prefix, k);
        int o = cluster_key_owner(owner, key);
        for (int m = 0; m < 3; m++)
            if (o == mi[m] && count[m] < PER_MASTER)
                snprintf(names[m * PER_MASTER + count[m]++], 32, "%s", key);
        assert_true(k < 100000);
    }
}

/* Keys over all masters and hash-tagged keys: set_many writes each on the
 * master of its slot with its TTL, get_many and delete_many agree with the
 * single-key calls. */
static void test_agrees_with_single_calls(void **state)
{
    (void)state;
    static int owner[NORI_CLUSTER_SLOTS];
    cluster_slot_owners(owner);
    enum { PLAIN = 60, TAGGED = 10, N = PLAIN + TAGGED };
    char names[N][32], vals[N][32];
    const char *keys[N];
    nori_set_item items[N];
    bool on[NORI_TEST_CLUSTER_NODES] = {false};
    for (int i = 0; i < N; i++) {
        if (i < PLAIN)
            snprintf(names[i], sizeof names[i], "ab:%d", i);
        else
            snprintf(names[i], sizeof names[i], "{user7}.f%d", i);
        snprintf(vals[i], sizeof vals[i], "value-%d", i);
        keys[i] = names[i];
        /* Every third key without expiry, the others with 60 s or 120 s. */
        items[i] = (nori_set_item){names[i], vals[i], strlen(vals[i]), i % 3 == 0 ? 0 : 60 * (i % 3)};
        on[cluster_key_owner(owner, names[i])] = true;
    }
    int spread = 0;
    for (int i = 0; i < NORI_TEST_CLUSTER_NODES; i++)
        spread += on[i];
    assert_int_equal(spread, 3);
    int rcs[N];
    assert_nori(nori_backend_set_many(backend, items, N, rcs), NORI_OK);
    /* Each key on the master of its slot, with its TTL; the tagged ones together. */
    int tag_node = cluster_key_owner(owner, names[PLAIN]);
    for (int i = 0; i < N; i++) {
        int o = cluster_key_owner(owner, names[i]);
        if (i >= PLAIN)
            assert_int_equal(o, tag_node);
        redisContext *c = cluster_node_conn(o);
        redisReply *r = redisCommand(c, "CLUSTER KEYSLOT cache:%s", names[i]);
        char wire[64];
        snprintf(wire, sizeof wire, "cache:%.31s", names[i]);
        assert_int_equal(r->integer, nori__cluster_keyslot(wire, strlen(wire)));
        freeReplyObject(r);
        r = redisCommand(c, "GET cache:%s", names[i]);
        assert_int_equal(r->type, REDIS_REPLY_STRING);
        assert_string_equal(r->str, vals[i]);
        freeReplyObject(r);
        r = redisCommand(c, "TTL cache:%s", names[i]);
        if (items[i].ttl == 0)
            assert_int_equal(r->integer, -1);
        else
            assert_true(r->integer > items[i].ttl - 10 && r->integer <= items[i].ttl);
        freeReplyObject(r);
        redisFree(c);
    }
    /* get_many (with a missing key and a duplicate) = single gets. */
    const char *mixed[N + 2];
    memcpy(mixed, keys, sizeof keys);
    mixed[N] = "ab:absent";
    mixed[N + 1] = keys[5];
    nori_get_result res[N + 2];
    nori_backend_stats before, after;
    assert_nori(nori_backend_get_stats(backend, &before), NORI_OK);
    assert_nori(nori_backend_get_many(backend, mixed, N + 2, res), NORI_OK);
    assert_nori(nori_backend_get_stats(backend, &after), NORI_OK);
    assert_int_equal(after.hits - before.hits, N + 1);
    assert_int_equal(after.misses - before.misses, 1);
    for (int i = 0; i < N + 2; i++) {
        nori_buf v = {NULL, 0};
        int rc = nori_backend_get(backend, mixed[i], &v);
        assert_int_equal(res[i].rc, rc);
        if (rc == NORI_OK) {
            assert_int_equal(res[i].value.len, v.len);
            assert_memory_equal(res[i].value.data, v.data, v.len);
        } else {
            assert_null(res[i].value.data);
        }
        nori_buf_free(&v);
    }
    nori_get_results_free(res, N + 2);
    /* delete_many of every other key (and a missing one). */
    const char *del[N / 2 + 1];
    for (int i = 0; i < N / 2; i++)
        del[i] = keys[2 * i];
    del[N / 2] = "ab:absent";
    assert_nori(nori_backend_delete_many(backend, del, N / 2 + 1, rcs), NORI_OK);
    assert_nori(nori_backend_get_many(backend, keys, N, res), NORI_OK);
    for (int i = 0; i < N; i++) {
        nori_buf v = {NULL, 0};
        int rc = nori_backend_get(backend, keys[i], &v);
        assert_int_equal(rc, i % 2 == 0 ? NORI_MISS : NORI_OK);
        assert_int_equal(res[i].rc, rc);
        nori_buf_free(&v);
    }
    nori_get_results_free(res, N);
    assert_nori(nori_backend_delete_many(backend, keys, N, NULL), NORI_OK);
}

/* One round trip per master: the server reads a pipeline of 40 GETs in one
 * or two reads, where 40 single GETs cost it 40. */
static void test_one_round_trip_per_node(void **state)
{
    (void)state;
    static int owner[NORI_CLUSTER_SLOTS];
    cluster_slot_owners(owner);
    int mi[3];
    cluster_masters(mi);
    static char names[3 * PER_MASTER][32];
    keys_per_master(owner, mi, "rt:", names);
    const char *keys[3 * PER_MASTER];
    nori_set_item items[3 * PER_MASTER];
    for (int i = 0; i < 3 * PER_MASTER; i++) {
        keys[i] = names[i];
        items[i] = (nori_set_item){names[i], "v", 1, 60};
    }
    /* Warm up: every master's pool holds a connection. */
    assert_nori(nori_backend_set_many(backend, items, 3 * PER_MASTER, NULL), NORI_OK);
    nori_get_result res[3 * PER_MASTER];
    long long reads[3], gets[3];
    for (int m = 0; m < 3; m++) {
        gets[m] = cluster_info_field(mi[m], "commandstats", "cmdstat_get:calls=");
        reads[m] = cluster_info_field(mi[m], "stats", "total_reads_processed:");
    }
    assert_nori(nori_backend_get_many(backend, keys, 3 * PER_MASTER, res), NORI_OK);
    for (int i = 0; i < 3 * PER_MASTER; i++)
        assert_int_equal(res[i].rc, NORI_OK);
    nori_get_results_free(res, 3 * PER_MASTER);
    for (int m = 0; m < 3; m++) {
        /* This INFO's own read, the pipeline's (one or two), a replica's
         * REPLCONF ACK (one a second): a handful, never 40. */
        long long dr = cluster_info_field(mi[m], "stats", "total_reads_processed:") - reads[m];
        long long dg = cluster_info_field(mi[m], "commandstats", "cmdstat_get:calls=") - gets[m];
        print_message("master %d (port %d): %lld GETs in %lld reads\n", mi[m],
                      cluster->node[mi[m]].port, dg, dr);
        assert_int_equal(dg, PER_MASTER);
        assert_true(dr <= 6);
    }
    /* set_many too: its SETs reach each master in a few reads. */
    for (int m = 0; m < 3; m++)
        reads[m] = cluster_info_field(mi[m], "stats", "total_reads_processed:");
    assert_nori(nori_backend_set_many(backend, items, 3 * PER_MASTER, NULL), NORI_OK);
    for (int m = 0; m < 3; m++)
        assert_true(cluster_info_field(mi[m], "stats", "total_reads_processed:") - reads[m] <= 6);
    assert_nori(nori_backend_delete_many(backend, keys, 3 * PER_MASTER, NULL), NORI_OK);
}

/* A key of another type fails alone, with the server's WRONGTYPE. */
static void test_wrong_type_fails_one_key(void **state)
{
    (void)state;
    static int owner[NORI_CLUSTER_SLOTS];
    cluster_slot_owners(owner);
    redisContext *c = cluster_node_conn(cluster_key_owner(owner, "wt:list"));
    freeReplyObject(redisCommand(c, "RPUSH cache:wt:list x"));
    redisFree(c);
    enum { N = 30 };
    char names[N][32];
    const char *keys[N];
    nori_set_item items[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], i == 17 ? "wt:list" : "wt:%d", i);
        keys[i] = names[i];
        items[i] = (nori_set_item){names[i], names[i], strlen(names[i]), 60};
    }
    nori_get_result res[N];
    assert_nori(nori_backend_get_many(backend, keys, N, res), NORI_EBACKEND);
    assert_non_null(strstr(nori_last_error(), "WRONGTYPE"));
    assert_non_null(strstr(nori_last_error(), "wt:list"));
    for (int i = 0; i < N; i++)
        assert_int_equal(res[i].rc, i == 17 ? NORI_EBACKEND : NORI_MISS);
    nori_get_results_free(res, N);
    /* SET overwrites any type: set_many succeeds for every key, the list too. */
    int rcs[N];
    assert_nori(nori_backend_set_many(backend, items, N, rcs), NORI_OK);
    assert_nori(nori_backend_get_many(backend, keys, N, res), NORI_OK);
    for (int i = 0; i < N; i++)
        assert_string_equal(res[i].value.data, names[i]);
    nori_get_results_free(res, N);
    assert_nori(nori_backend_delete_many(backend, keys, N, rcs), NORI_OK);
}

/* ---- resharding ---- */

#define RS_KEYS 300

typedef struct bulker {
    pthread_t thread;
    int id;
    atomic_bool *stop;
    long calls, failed_keys, wrong_values;
    char last_error[256];
} bulker;

/* Writes, reads back and deletes RS_KEYS keys over all slots, round after
 * round; counts every key that failed or read back another value. */
static void *bulk_work(void *arg)
{
    bulker *w = arg;
    static __thread char names[RS_KEYS][32], vals[RS_KEYS][32];
    const char *keys[RS_KEYS];
    nori_set_item items[RS_KEYS];
    nori_get_result res[RS_KEYS];
    int rcs[RS_KEYS];
    for (int i = 0; i < RS_KEYS; i++) {
        snprintf(names[i], sizeof names[i], "rs%d:%d", w->id, i);
        keys[i] = names[i];
    }
    for (int round = 0; !atomic_load(w->stop); round++) {
        for (int i = 0; i < RS_KEYS; i++) {
            snprintf(vals[i], sizeof vals[i], "%d.%d", round, i);
            items[i] = (nori_set_item){names[i], vals[i], strlen(vals[i]), 60};
        }
        int rc = nori_backend_set_many(backend, items, RS_KEYS, rcs);
        for (int i = 0; i < RS_KEYS; i++)
            w->failed_keys += rcs[i] != NORI_OK;
        if (rc != NORI_OK)
            snprintf(w->last_error, sizeof w->last_error, "set_many: %s", nori_last_error());
        rc = nori_backend_get_many(backend, keys, RS_KEYS, res);
        for (int i = 0; i < RS_KEYS; i++) {
            w->failed_keys += res[i].rc != NORI_OK;
            w->wrong_values += res[i].rc == NORI_OK && strcmp(res[i].value.data, vals[i]) != 0;
        }
        if (rc != NORI_OK)
            snprintf(w->last_error, sizeof w->last_error, "get_many: %s", nori_last_error());
        nori_get_results_free(res, RS_KEYS);
        /* Every fourth round: delete a third of the keys and check them gone. */
        if (round % 4 == 3) {
            rc = nori_backend_delete_many(backend, keys, RS_KEYS / 3, rcs);
            for (int i = 0; i < RS_KEYS / 3; i++)
                w->failed_keys += rcs[i] != NORI_OK;
            if (rc != NORI_OK)
                snprintf(w->last_error, sizeof w->last_error, "delete_many: %s",
                         nori_last_error());
            rc = nori_backend_get_many(backend, keys, RS_KEYS / 3, res);
            for (int i = 0; i < RS_KEYS / 3; i++)
                w->failed_keys += res[i].rc != NORI_MISS;
            nori_get_results_free(res, RS_KEYS / 3);
        }
        w->calls++;
    }
    return NULL;
}

/* A backend whose map predates a reshard gets MOVED for the moved slots'
 * keys (each retried alone); bulk calls running during the reshard get
 * MOVED and ASK: zero failed keys either way. */
static void test_reshard(void **state)
{
    (void)state;
    int slots = getenv("NORI_CLUSTER_LONG") != NULL ? 1000 : 300;
    int mi[3];
    cluster_masters(mi);
    int from = mi[0], to = mi[1];
    /* A second backend, its map read now and not used during the reshard. */
    nori_backend *stale;
    assert_nori(nori_redis_backend_new(cluster->url, &stale), NORI_OK);
    enum { N = 1000 };
    static char names[N][32];
    static const char *keys[N];
    static nori_set_item items[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "st:%d", i);
        keys[i] = names[i];
        items[i] = (nori_set_item){names[i], names[i], strlen(names[i]), 60};
    }
    assert_nori(nori_backend_set_many(stale, items, N, NULL), NORI_OK);
    static int owner[NORI_CLUSTER_SLOTS];
    cluster_slot_owners(owner);
    int moving = 0; /* keys of `stale` in the slots about to move */

    atomic_bool stop;
    atomic_init(&stop, false);
    bulker w[2];
    memset(w, 0, sizeof w);
    for (int i = 0; i < 2; i++) {
        w[i].id = i;
        w[i].stop = &stop;
        assert_int_equal(pthread_create(&w[i].thread, NULL, bulk_work, &w[i]), 0);
    }
    long long start = nori_test_now_ms();
    int rc = nori_test_cluster_reshard(cluster, from, to, slots);
    long long took = nori_test_now_ms() - start;
    atomic_store(&stop, true);
    long calls = 0, failed = 0, wrong = 0;
    for (int i = 0; i < 2; i++) {
        pthread_join(w[i].thread, NULL);
        calls += w[i].calls;
        failed += w[i].failed_keys;
        wrong += w[i].wrong_values;
        if (w[i].failed_keys > 0 || w[i].wrong_values > 0)
            print_message("thread %d: %ld failed keys, %ld wrong values, last: %s\n", i,
                          w[i].failed_keys, w[i].wrong_values, w[i].last_error);
    }
    print_message("resharding %d slots took %lld ms during %ld rounds of bulk calls\n", slots,
                  took, calls);
    assert_int_equal(rc, 0);
    assert_true(calls > 0);
    assert_int_equal(failed, 0);
    assert_int_equal(wrong, 0);

    /* The stale backend: some of its keys moved; all still answer. */
    static int now_owner[NORI_CLUSTER_SLOTS];
    cluster_slot_owners(now_owner);
    for (int i = 0; i < N; i++)
        moving += cluster_key_owner(owner, names[i]) == from &&
                  cluster_key_owner(now_owner, names[i]) == to;
    print_message("%d of the stale backend's %d keys moved\n", moving, N);
    assert_true(moving > 0);
    static nori_get_result res[N];
    assert_nori(nori_backend_get_many(stale, keys, N, res), NORI_OK);
    for (int i = 0; i < N; i++) {
        assert_int_equal(res[i].rc, NORI_OK);
        assert_string_equal(res[i].value.data, names[i]);
    }
    nori_get_results_free(res, N);
    assert_nori(nori_backend_delete_many(stale, keys, N, NULL), NORI_OK);
    nori_backend_free(stale);
}

/* ---- scripted fake nodes ---- */

/* The first GET of the pipeline is MOVED: that key alone goes straight to
 * the new owner (the MOVED fixed the map; the old owner is not asked
 * again); the other four are answered by the pipeline, not sent again. */
static void test_fake_moved_key_alone(void **state)
{
    (void)state;
    nori_fake_redis *a = fake_cluster_node(0, 16383), *bn = fake_cluster_node(0, 16383);
    char moved[128];
    snprintf(moved, sizeof moved, "-MOVED %u 127.0.0.1:%d\r\n",
             nori__cluster_keyslot("cache:k0", 8), nori_fake_redis_port(bn));
    nori_fake_redis_reply(a, "GET", moved);
    nori_fake_redis_default(a, "GET", "$2\r\nva\r\n");
    nori_fake_redis_default(bn, "GET", "$2\r\nvb\r\n");
    nori_backend *b = fake_cluster_backend(a, "");
    const char *keys[] = {"k0", "k1", "k2", "k3", "k4"};
    nori_get_result res[5];
    assert_nori(nori_backend_get_many(b, keys, 5, res), NORI_OK);
    assert_string_equal(res[0].value.data, "vb");
    for (int i = 1; i < 5; i++)
        assert_string_equal(res[i].value.data, "va");
    nori_get_results_free(res, 5);
    assert_int_equal(nori_fake_redis_count(a, "GET"), 5);
    assert_int_equal(nori_fake_redis_count(bn, "GET"), 1);
    nori_backend_free(b);
    nori_fake_redis_stop(a);
    nori_fake_redis_stop(bn);
}

/* CLUSTERDOWN for every key: the keys sent again alone share one retry
 * budget (NORI_TOPO_RETRY_MS, 3 s), so 20 keys end in about one single
 * call's bound (3 s of retries plus an attempt), not 20 of them. */
static void test_fake_clusterdown_bounded(void **state)
{
    (void)state;
    nori_fake_redis *a = fake_cluster_node(0, 16383);
    nori_fake_redis_default(a, "GET", "-CLUSTERDOWN The cluster is down\r\n");
    nori_backend *b = fake_cluster_backend(a, "");
    enum { N = 20 };
    char names[N][16];
    const char *keys[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "d%d", i);
        keys[i] = names[i];
    }
    nori_get_result res[N];
    long long start = nori_test_now_ms();
    assert_nori(nori_backend_get_many(b, keys, N, res), NORI_EBACKEND);
    long long took = nori_test_now_ms() - start;
    print_message("CLUSTERDOWN for %d keys: %lld ms, %d GETs\n", N, took,
                  nori_fake_redis_count(a, "GET"));
    assert_non_null(strstr(nori_last_error(), "CLUSTERDOWN"));
    for (int i = 0; i < N; i++)
        assert_int_equal(res[i].rc, NORI_EBACKEND);
    assert_true(took < 7000);
    nori_backend_free(b);
    nori_fake_redis_stop(a);
}

/* A fake cluster of two nodes: a serves 0..8191, b 8192..16383. */
static void two_node_slots(char *buf, size_t size, int pa, int pb)
{
    snprintf(buf, size,
             "*2\r\n*3\r\n:0\r\n:8191\r\n*3\r\n$9\r\n127.0.0.1\r\n:%d\r\n$40\r\n%040d\r\n"
             "*3\r\n:8192\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:%d\r\n$40\r\n%040d\r\n",
             pa, pa, pb, pb);
}

/* A key (written into buf) whose slot is in [lo, hi]. */
static const char *key_in(char *buf, size_t size, unsigned lo, unsigned hi)
{
    for (int i = 0;; i++) {
        snprintf(buf, size, "key%d", i);
        unsigned s = cluster_wire_slot(buf);
        if (s >= lo && s <= hi)
            return buf;
    }
}

/* Node a sends the first bytes of its reply and stalls; node b answers at
 * once. b's key must succeed: its reply was there long before the deadline.
 * (A bulk call read a node's replies whole once its first bytes were there,
 * so the stalled node held the reading past the deadline, and the healthy
 * node's replies, already waiting in its socket, were failed as "timed
 * out" and counted by its breaker. Replies already there at the deadline
 * are taken.) */
static void test_cluster_bulk_stalled_node_keeps_healthy_replies(void **state)
{
    (void)state;
    nori_fake_redis *a = nori_fake_redis_start(), *bn = nori_fake_redis_start();
    char slots[512];
    two_node_slots(slots, sizeof slots, nori_fake_redis_port(a), nori_fake_redis_port(bn));
    nori_fake_redis *both[2] = {a, bn};
    for (int i = 0; i < 2; i++) {
        nori_fake_redis_default(both[i], "INFO", FAKE_CLUSTER_INFO);
        nori_fake_redis_default(both[i], "CLUSTER SLOTS", slots);
    }
    char ka[32], kb[32];
    key_in(ka, sizeof ka, 0, 8191);
    key_in(kb, sizeof kb, 8192, 16383);
    char url[200];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d?timeout_ms=300", nori_fake_redis_port(a));
    nori_backend *b;
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    /* The bulk call finds out the mode (INFO) and reads the map itself. */
    nori_fake_redis_default(a, "GET", NORI_FAKE_STALL);
    const char *keys[2] = {ka, kb};
    /* Whether a's first bytes come before b's reply is a race: the failure
     * needs them first (seen in 2 of 3 runs), so the call is made 4 times
     * (fewer than circuit_failures, so that a's breaker stays closed). */
    for (int round = 0; round < 4; round++) {
        nori_fake_redis_reply(a, "GET", "$10\r\nabc"); /* 3 of 10 bytes, then nothing */
        nori_fake_redis_reply(bn, "GET", "$2\r\nvb\r\n");
        nori_get_result res[2];
        nori_backend_stats before, after;
        assert_nori(nori_backend_get_stats(b, &before), NORI_OK);
        (void)nori_backend_get_many(b, keys, 2, res);
        assert_nori(nori_backend_get_stats(b, &after), NORI_OK);
        print_message("round %d: a: %d, b: %d (%s)\n", round, res[0].rc, res[1].rc,
                      nori_last_error());
        assert_int_equal(res[0].rc, NORI_EBACKEND);
        assert_nori(res[1].rc, NORI_OK);
        assert_int_equal(res[1].value.len, 2);
        assert_memory_equal(res[1].value.data, "vb", 2);
        /* Only the stalled node's timeout counts towards a breaker. */
        assert_int_equal(after.timeouts - before.timeouts, 1);
        nori_get_results_free(res, 2);
    }
    nori_backend_free(b);
    nori_fake_redis_stop(a);
    nori_fake_redis_stop(bn);
}

/* ---- a stopped master (last: the cluster may fail it over) ---- */

#define STOP_TIMEOUT_MS 300
/* cache.h: the stuck node's round trip (timeout_ms), a map refresh asked of
 * a node that answered, the other nodes' round trips; plus slack for a
 * loaded machine. */
#define STOP_BOUND_MS (2 * STOP_TIMEOUT_MS + 1000)

static void test_stopped_master(void **state)
{
    (void)state;
    char url[300];
    snprintf(url, sizeof url, "%s?timeout_ms=%d&connect_timeout_ms=%d", cluster->url,
             STOP_TIMEOUT_MS, STOP_TIMEOUT_MS);
    nori_backend *b;
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    static int owner[NORI_CLUSTER_SLOTS];
    cluster_slot_owners(owner);
    int mi[3];
    cluster_masters(mi);
    static char names[3 * PER_MASTER][32];
    keys_per_master(owner, mi, "sm:", names);
    const char *keys[3 * PER_MASTER];
    nori_set_item items[3 * PER_MASTER];
    for (int i = 0; i < 3 * PER_MASTER; i++) {
        keys[i] = names[i];
        items[i] = (nori_set_item){names[i], "v", 1, 60};
    }
    assert_nori(nori_backend_set_many(b, items, 3 * PER_MASTER, NULL), NORI_OK);
    int victim = mi[1];
    char port[16];
    snprintf(port, sizeof port, ":%d", cluster->node[victim].port);
    assert_int_equal(kill(cluster->node[victim].pid, SIGSTOP), 0);
    nori_get_result res[3 * PER_MASTER];
    int rcs[3 * PER_MASTER];
    long long t0 = nori_test_now_ms();
    int rc = nori_backend_get_many(b, keys, 3 * PER_MASTER, res);
    long long t1 = nori_test_now_ms();
    char get_error[512];
    snprintf(get_error, sizeof get_error, "%s", nori_last_error());
    int rc_set = nori_backend_set_many(b, items, 3 * PER_MASTER, rcs);
    long long t2 = nori_test_now_ms();
    char set_error[512];
    snprintf(set_error, sizeof set_error, "%s", nori_last_error());
    assert_int_equal(kill(cluster->node[victim].pid, SIGCONT), 0);
    print_message("stopped master: get_many %lld ms (%s), set_many %lld ms (%s)\n", t1 - t0,
                  get_error, t2 - t1, set_error);
    assert_int_equal(rc, NORI_EBACKEND);
    assert_int_equal(rc_set, NORI_EBACKEND);
    assert_non_null(strstr(get_error, port));
    assert_non_null(strstr(set_error, port));
    assert_true(t1 - t0 < STOP_BOUND_MS);
    assert_true(t2 - t1 < STOP_BOUND_MS);
    for (int m = 0; m < 3; m++)
        for (int t = 0; t < PER_MASTER; t++) {
            int i = m * PER_MASTER + t;
            int want = mi[m] == victim ? NORI_EBACKEND : NORI_OK;
            assert_int_equal(res[i].rc, want);
            assert_int_equal(rcs[i], want);
        }
    nori_get_results_free(res, 3 * PER_MASTER);
    /* Back: within 15 s (the breaker's cooldown, or a failover) every key answers. */
    assert_true(nori_test_cluster_wait_ok(cluster, 15000));
    long long until = nori_test_now_ms() + 15000;
    do {
        rc = nori_backend_get_many(b, keys, 3 * PER_MASTER, res);
        nori_get_results_free(res, 3 * PER_MASTER);
        if (rc == NORI_OK)
            break;
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    } while (nori_test_now_ms() < until);
    assert_nori(rc, NORI_OK);
    assert_nori(nori_backend_delete_many(b, keys, 3 * PER_MASTER, NULL), NORI_OK);
    nori_backend_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agrees_with_single_calls),
        cmocka_unit_test(test_one_round_trip_per_node),
        cmocka_unit_test(test_wrong_type_fails_one_key),
        cmocka_unit_test(test_reshard),
        cmocka_unit_test(test_fake_moved_key_alone),
        cmocka_unit_test(test_fake_clusterdown_bounded),
        cmocka_unit_test(test_cluster_bulk_stalled_node_keeps_healthy_replies),
        cmocka_unit_test(test_stopped_master),
    };
    return cmocka_run_group_tests(tests, cluster_group_setup, cluster_group_teardown);
}
