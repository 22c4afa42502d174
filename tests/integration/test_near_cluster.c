// SPDX-License-Identifier: MIT
/*
 * The near cache on a Redis Cluster of 3 masters + 3 replicas (one cluster
 * for the whole program): process A is a backend with a near cache, B a
 * plain backend (another client). Checked, in this order (the last two
 * change the topology):
 *  - keys on all three masters become local: A serves them with no GET
 *    reaching any master (INFO commandstats), one listener per master;
 *  - SWAPDB is refused; the database marker is read on its slot's master
 *    only;
 *  - another client's SET (p99 of 200 rounds over the masters), DEL,
 *    PEXPIRE and FLUSHALL on each master reach A within the bound of
 *    test_near_listener (200 ms; NEAR_STRICT=1: 50 ms);
 *  - CLIENT KILL of one master's invalidation connection, then of its data
 *    connections: A's near cache is flushed, reads stay correct, and local
 *    copies come back only with tracking (a later change is seen in time);
 *  - a reshard of 100 slots (holding half of the keys) while B writes and
 *    A reads: no stale read (near_checks.h), no value going back, no error;
 *  - a master SIGKILLed (its replica takes over): A's reads return correct
 *    values throughout, never the old value once B's write on the new
 *    master was acknowledged, and A tracks the new master afterwards.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis/route/cluster_slots.h"
#include "redis_cluster.h"
#include "test_support.h"
#include "near_checks.h"

#include <hiredis/hiredis.h>
#include <signal.h>

static nori_test_cluster *cluster;
static nori_backend *a; /* with a near cache */
static nori_backend *b; /* another client */
static int masters[3];  /* node indices of the masters at start */
static char mkey[3][32]; /* a key on each of them */

static int node_of_key(const char *key)
{
    char wire[64];
    snprintf(wire, sizeof wire, "cache:%s", key);
    return nori_test_cluster_slot_master(cluster, nori__cluster_keyslot(wire, strlen(wire)));
}

static int group_setup(void **state)
{
    (void)state;
    cluster = nori_test_cluster_start();
    int n = 0;
    for (int i = 0; i < NORI_TEST_CLUSTER_NODES && n < 3; i++)
        if (nori_test_node_is_master(&cluster->node[i]))
            masters[n++] = i;
    assert_int_equal(n, 3);
    bool found[3] = {false, false, false};
    for (int j = 0; j < 200 && !(found[0] && found[1] && found[2]); j++) {
        char key[32];
        snprintf(key, sizeof key, "m:%d", j);
        int owner = node_of_key(key);
        for (int m = 0; m < 3; m++) {
            if (owner == masters[m] && !found[m]) {
                snprintf(mkey[m], sizeof mkey[m], "%s", key);
                found[m] = true;
            }
        }
    }
    assert_true(found[0] && found[1] && found[2]);
    near_pair_open(cluster->url, &a, &b);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    near_pair_close(a, b);
    nori_test_cluster_stop(cluster);
    return 0;
}

/* A raw connection to node i, failing the test when it is down. */
static redisContext *raw(int i)
{
    redisContext *c = nori_test_node_connect(&cluster->node[i]);
    if (c == NULL)
        fail_msg("cannot connect to node %d (port %d)", i, cluster->node[i].port);
    return c;
}

static redisReply *raw_command(int i, const char *fmt, ...)
{
    redisContext *c = raw(i);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        fail_msg("node %d: %s: %s", i, fmt, r == NULL ? c->errstr : r->str);
    redisFree(c);
    return r;
}

/* cmdstat_get calls of node i. */
static long long gets_served(int i)
{
    redisReply *r = raw_command(i, "INFO commandstats");
    long long n = near_get_calls(r->str);
    freeReplyObject(r);
    return n;
}

/* Lines of CLIENT LIST TYPE pubsub on node i: our listeners there. */
static int subscribers(int i)
{
    redisReply *r = raw_command(i, "CLIENT LIST TYPE pubsub");
    int n = 0;
    for (const char *p = r->str; (p = strchr(p, '\n')) != NULL; p++)
        n++;
    freeReplyObject(r);
    return n;
}

static void b_set(const char *key, const char *val)
{
    near_set(b, key, val);
}

/* ---- local reads ---- */

static void test_keys_on_all_masters_become_local(void **state)
{
    (void)state;
    for (int m = 0; m < 3; m++)
        b_set(mkey[m], "v0");
    /* Twice: the first redirection A sees (a key not on the seed) finds out
     * the cluster and flushes what was read from the seed before. */
    for (int pass = 0; pass < 2; pass++)
        for (int m = 0; m < 3; m++)
            near_make_local(a, mkey[m], "v0");
    long long before[3];
    for (int m = 0; m < 3; m++)
        before[m] = gets_served(masters[m]);
    uint64_t hits = near_stats_of(a).hits;
    for (int i = 0; i < 1000; i++) {
        for (int m = 0; m < 3; m++) {
            nori_buf v;
            assert_nori(nori_backend_get(a, mkey[m], &v), NORI_OK);
            assert_string_equal(v.data, "v0");
            nori_buf_free(&v);
        }
    }
    nori_near_stats st = near_stats_of(a);
    if (st.hits - hits < 3000)
        print_error("hits %llu of 3000; fills %llu, flushes: own %llu server %llu listener %llu "
                    "heartbeat %llu tracking %llu topology %llu\n",
                    (unsigned long long)(st.hits - hits), (unsigned long long)st.fills,
                    (unsigned long long)st.flushes_own, (unsigned long long)st.flushes_server,
                    (unsigned long long)st.flushes_listener_lost,
                    (unsigned long long)st.flushes_heartbeat,
                    (unsigned long long)st.flushes_tracking_lost,
                    (unsigned long long)st.flushes_topology);
    assert_true(st.hits - hits >= 3000);
    assert_int_equal(st.active, 1);
    for (int m = 0; m < 3; m++) {
        assert_int_equal(gets_served(masters[m]), before[m]); /* no GET reached Redis */
        assert_int_equal(subscribers(masters[m]), 1);         /* one listener per master */
    }
}

/* The database marker (README, near cache): a cluster refuses SWAPDB; the
 * marker lives on the master of its slot, whose listener reads it, and the
 * two other listeners, answered MOVED, leave it alone (db_unchecked). */
static void test_db_marker_on_one_master(void **state)
{
    (void)state;
    const char *marker = "cache:__nori_near_db_id__";
    int owner = nori_test_cluster_slot_master(cluster, nori__cluster_keyslot(marker,
                                                                             strlen(marker)));
    redisReply *r = raw_command(owner, "GET %s", marker);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    freeReplyObject(r);
    redisContext *c = raw(masters[0]);
    r = redisCommand(c, "SWAPDB 0 1");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    redisFree(c);
    assert_int_equal(near_stats_of(a).db_unchecked, 2);
}

/* ---- another client's changes ---- */

static void test_changes_on_each_master_seen(void **state)
{
    (void)state;
    enum { ROUNDS = 200 };
    int64_t delay[ROUNDS];
    char cur[3][32];
    for (int m = 0; m < 3; m++) {
        snprintf(cur[m], sizeof cur[m], "s0");
        b_set(mkey[m], cur[m]);
    }
    for (int i = 0; i < ROUNDS; i++) {
        int m = i % 3;
        near_make_local(a, mkey[m], cur[m]);
        snprintf(cur[m], sizeof cur[m], "s%d", i + 1);
        int64_t t0 = near_now_us();
        b_set(mkey[m], cur[m]);
        delay[i] = near_wait_for(a, mkey[m], cur[m], t0);
    }
    qsort(delay, ROUNDS, sizeof *delay, near_cmp_i64);
    print_message("cluster: B's SET seen by A after p50 %.3f ms, p99 %.3f ms (%d rounds)\n",
                  delay[ROUNDS / 2] / 1000.0, delay[ROUNDS * 99 / 100] / 1000.0, ROUNDS);
    assert_true(delay[ROUNDS * 99 / 100] <= near_delay_limit_us());
    for (int m = 0; m < 3; m++) {
        /* DEL by B */
        near_make_local(a, mkey[m], cur[m]);
        int64_t t0 = near_now_us();
        assert_nori(nori_backend_delete(b, mkey[m]), NORI_OK);
        assert_true(near_wait_for(a, mkey[m], NULL, t0) <= near_delay_limit_us());
        /* PEXPIRE on the master itself */
        b_set(mkey[m], "e");
        near_make_local(a, mkey[m], "e");
        t0 = near_now_us();
        freeReplyObject(raw_command(masters[m], "PEXPIRE cache:%s 1", mkey[m]));
        assert_true(near_wait_for(a, mkey[m], NULL, t0) <= near_delay_limit_us());
        /* FLUSHALL on that master: the nil payload empties A */
        b_set(mkey[m], "f");
        near_make_local(a, mkey[m], "f");
        uint64_t flushes = near_stats_of(a).flushes_server;
        t0 = near_now_us();
        freeReplyObject(raw_command(masters[m], "FLUSHALL"));
        assert_true(near_wait_for(a, mkey[m], NULL, t0) <= near_delay_limit_us());
        assert_true(near_server_flushed(a, flushes));
    }
}

/* ---- losing tracking on one node ---- */

static void all_local(const char *val)
{
    for (int m = 0; m < 3; m++) {
        b_set(mkey[m], val);
        near_make_local(a, mkey[m], val);
    }
}

/* After a loss: reads are correct, a refill needs tracking back (the next
 * change is seen within the bound), on every master. */
static void coherent_again(const char *v1, const char *v2)
{
    for (int m = 0; m < 3; m++) {
        b_set(mkey[m], v1);
        near_wait_for(a, mkey[m], v1, near_now_us());
        near_make_local(a, mkey[m], v1);
        int64_t t0 = near_now_us();
        b_set(mkey[m], v2);
        assert_true(near_wait_for(a, mkey[m], v2, t0) <= near_delay_limit_us());
    }
}

/* Flushes for a loss of tracking (any cause but own and server) so far. */
static uint64_t lost_now(void)
{
    nori_near_stats st = near_stats_of(a);
    return near_flushes_lost(&st);
}

static void wait_flushed(uint64_t before, const char *what)
{
    int64_t deadline = near_now_us() + 3000000;
    while (lost_now() == before) {
        if (near_now_us() > deadline)
            fail_msg("A's near cache was not flushed within 3 s of %s", what);
        near_pause_ms(2);
    }
}

static void test_listener_of_one_node_killed(void **state)
{
    (void)state;
    all_local("k1");
    nori_near_stats st = near_stats_of(a);
    uint64_t before = st.flushes_listener_lost;
    redisReply *r = raw_command(masters[1], "CLIENT KILL TYPE pubsub");
    assert_true(r->integer >= 1);
    freeReplyObject(r);
    int64_t deadline = near_now_us() + 3000000;
    while (near_stats_of(a).flushes_listener_lost == before) {
        if (near_now_us() > deadline)
            fail_msg("the loss of node %d's listener did not flush A within 3 s", masters[1]);
        near_pause_ms(2);
    }
    /* The whole near cache: which node served which entry is not recorded. */
    assert_int_equal(near_stats_of(a).entries, 0);
    for (int m = 0; m < 3; m++) {
        nori_buf v;
        assert_nori(nori_backend_get(a, mkey[m], &v), NORI_OK);
        assert_string_equal(v.data, "k1");
        nori_buf_free(&v);
    }
    coherent_again("k2", "k3");
    assert_int_equal(subscribers(masters[1]), 1); /* its listener came back */
}

static void test_data_connections_of_one_node_killed(void **state)
{
    (void)state;
    all_local("d1");
    uint64_t before = lost_now();
    /* A's data and control connections on that node (and B's): Redis drops
     * their tracking silently; A's heartbeat (CLIENT LIST) notices. */
    freeReplyObject(raw_command(masters[2], "CLIENT KILL TYPE normal SKIPME yes"));
    wait_flushed(before, "CLIENT KILL TYPE normal");
    assert_int_equal(near_stats_of(a).entries, 0);
    coherent_again("d2", "d3");
}

/* ---- manual failover: the old master stays up, as a replica ---- */

/* The replica of master node m (ROLE of each other node), or -1. */
static int replica_of(int m)
{
    for (int i = 0; i < NORI_TEST_CLUSTER_NODES; i++) {
        if (i == m || cluster->node[i].pid <= 0 || nori_test_node_is_master(&cluster->node[i]))
            continue;
        redisReply *r = raw_command(i, "ROLE");
        bool mine = r->type == REDIS_REPLY_ARRAY && r->elements >= 3 &&
                    r->element[2]->type == REDIS_REPLY_INTEGER &&
                    r->element[2]->integer == cluster->node[m].port;
        freeReplyObject(r);
        if (mine)
            return i;
    }
    return -1;
}

static void test_manual_failover(void **state)
{
    (void)state;
    int m = 2, old = masters[m];
    int rep = replica_of(old);
    assert_true(rep >= 0);
    all_local("mf1");
    /* A's local copy came from `old`, which now turns replica without
     * closing any connection: A must still never serve mf1 once B's newer
     * write (on the new master) is acknowledged and the bound has passed. */
    freeReplyObject(raw_command(rep, "CLUSTER FAILOVER"));
    int64_t deadline = near_now_us() + 10000000;
    while (!nori_test_node_is_master(&cluster->node[rep]) || nori_test_node_is_master(&cluster->node[old])) {
        if (near_now_us() > deadline)
            fail_msg("CLUSTER FAILOVER did not complete within 10 s");
        near_pause_ms(10);
    }
    int64_t t0 = near_now_us();
    b_set(mkey[m], "mf2");
    assert_true(near_wait_for(a, mkey[m], "mf2", t0) <= near_delay_limit_us());
    masters[m] = rep;
    coherent_again("mf3", "mf4");
}

/* ---- reshard while reading ---- */

enum { RESHARD_SLOTS = 100, RESHARD_KEYS = 32 };

static void test_reshard_while_reading(void **state)
{
    (void)state;
    int from = nori_test_cluster_slot_master(cluster, 0), to = -1;
    for (int m = 0; m < 3 && to < 0; m++)
        if (masters[m] != from)
            to = masters[m];
    assert_true(from >= 0 && to >= 0);
    static near_acks acks;
    near_acks_init(&acks);
    /* Half of the keys in the slots that move (redis-cli moves the source's
     * lowest slots first, and `from` owns slot 0), half elsewhere. */
    for (int j = 0; acks.nkeys < RESHARD_KEYS && j < 100000; j++) {
        char key[32], wire[40];
        snprintf(key, sizeof key, "rs:%d", j);
        snprintf(wire, sizeof wire, "cache:%s", key);
        unsigned slot = nori__cluster_keyslot(wire, strlen(wire));
        bool moving = slot < RESHARD_SLOTS;
        if (moving ? acks.nkeys % 2 == 0 : acks.nkeys % 2 == 1)
            snprintf(acks.names[acks.nkeys++], sizeof acks.names[0], "%s", key);
    }
    assert_int_equal(acks.nkeys, RESHARD_KEYS);
    for (int k = 0; k < RESHARD_KEYS; k++) {
        b_set(acks.names[k], "0");
        near_acks_note(&acks, k, 0, near_now_us());
    }
    nori_near_stats st0 = near_stats_of(a);
    atomic_bool stop;
    atomic_init(&stop, false);
    near_writer w = {.b = b, .acks = &acks, .stop = &stop};
    near_reader r[2];
    memset(r, 0, sizeof r);
    assert_int_equal(pthread_create(&w.thread, NULL, near_writer_main, &w), 0);
    for (int i = 0; i < 2; i++) {
        r[i].a = a;
        r[i].acks = &acks;
        r[i].stop = &stop;
        assert_int_equal(pthread_create(&r[i].thread, NULL, near_reader_main, &r[i]), 0);
    }
    near_pause_ms(300); /* load before the reshard: a duration, not a synchronisation */
    int64_t t0 = near_now_us();
    int rc = nori_test_cluster_reshard(cluster, from, to, RESHARD_SLOTS);
    int64_t took = near_now_us() - t0;
    near_pause_ms(300);
    atomic_store(&stop, true);
    pthread_join(w.thread, NULL);
    long reads = 0, errors = 0, stale = 0, back = 0;
    for (int i = 0; i < 2; i++) {
        pthread_join(r[i].thread, NULL);
        reads += r[i].reads;
        errors += r[i].errors;
        stale += r[i].stale;
        back += r[i].back;
        if (r[i].stale > 0)
            print_message("reader %d: %ld stale, last: %s\n", i, r[i].stale, r[i].stale_text);
        if (r[i].errors > 0)
            print_message("reader %d: %ld errors, last: %s\n", i, r[i].errors, r[i].last_error);
    }
    if (w.failures > 0)
        print_message("writer: %ld failures, last: %s\n", w.failures, w.last_error);
    nori_near_stats st = near_stats_of(a);
    print_message("reshard of %d slots: %lld ms; B wrote %ld values, A read %ld (%llu local, "
                  "%llu fills, %llu invalidations, %llu topology flushes)\n",
                  RESHARD_SLOTS, (long long)(took / 1000), w.writes, reads,
                  (unsigned long long)(st.hits - st0.hits),
                  (unsigned long long)(st.fills - st0.fills),
                  (unsigned long long)(st.invalidations - st0.invalidations),
                  (unsigned long long)(st.flushes_topology - st0.flushes_topology));
    pthread_mutex_destroy(&acks.lock);
    assert_int_equal(rc, 0);
    assert_int_equal(nori_test_cluster_slot_master(cluster, 0), to);
    assert_int_equal(stale, 0);
    assert_int_equal(back, 0);
    assert_int_equal(errors, 0);
    assert_int_equal(w.failures, 0);
    assert_true(st.hits > st0.hits);
    /* Keys in the moved slots are tracked on their new owner. */
    for (int k = 0; k < 4; k++) {
        char v[16];
        snprintf(v, sizeof v, "after%d", k);
        b_set(acks.names[k], v);
        near_wait_for(a, acks.names[k], v, near_now_us());
        near_make_local(a, acks.names[k], v);
        snprintf(v, sizeof v, "again%d", k);
        int64_t t = near_now_us();
        b_set(acks.names[k], v);
        assert_true(near_wait_for(a, acks.names[k], v, t) <= near_delay_limit_us());
    }
}

/* ---- failover ---- */

static void test_master_killed(void **state)
{
    (void)state;
    int victim = node_of_key(mkey[0]);
    assert_true(victim >= 0);
    for (int m = 1; m < 3; m++)
        b_set(mkey[m], "before");
    /* Written on the victim itself, then WAIT on that connection: its
     * replica has "before", so that a write lost at the failover (the
     * server's behaviour) cannot pass for a stale read. */
    redisContext *c = raw(victim);
    redisReply *r = redisCommand(c, "SET cache:%s before", mkey[0]);
    assert_true(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = redisCommand(c, "WAIT 1 5000");
    assert_true(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer >= 1);
    freeReplyObject(r);
    redisFree(c);
    for (int m = 0; m < 3; m++)
        near_make_local(a, mkey[m], "before");
    uint64_t flushes = lost_now();
    const char *keys[] = {mkey[0], mkey[1], mkey[2]};
    near_failover(a, b, keys, 3, &cluster->node[victim], 20000, "failover");
    assert_true(lost_now() > flushes);
    near_tracks_again(a, b, mkey[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_on_all_masters_become_local),
        cmocka_unit_test(test_db_marker_on_one_master),
        cmocka_unit_test(test_changes_on_each_master_seen),
        cmocka_unit_test(test_listener_of_one_node_killed),
        cmocka_unit_test(test_data_connections_of_one_node_killed),
        cmocka_unit_test(test_manual_failover),
        cmocka_unit_test(test_reshard_while_reading),
        cmocka_unit_test(test_master_killed),
    };
    return cmocka_run_group_tests_name("near cache on a Redis Cluster", tests, group_setup,
                                       group_teardown);
}
