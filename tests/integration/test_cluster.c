// SPDX-License-Identifier: MIT
/*
 * Against a real Redis Cluster (3 masters + 3 replicas, started by the
 * test): our key slots agree with CLUSTER KEYSLOT, the slot map parsed from
 * CLUSTER SLOTS names every master and covers every slot; through the
 * backend, keys spread over every master, hash-tagged keys stay together,
 * flush empties every master's cache:* and nothing else, verify and
 * describe see the whole cluster; and (last) a master is SIGKILLed under
 * load from 8 threads.
 *
 * The failover case runs 2 s of load before the kill and 5 s after it; with
 * NORI_CLUSTER_LONG=1 it runs the long form (3 s before, 7 s after).
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

#define THREADS 8

/* Many keys, with and without hash tags, as the backend puts them on the
 * wire ("cache:" + key): our slot equals the server's for each. */
static void test_keyslot_agrees_with_server(void **state)
{
    (void)state;
    redisContext *c = nori_test_node_connect(&cluster->node[0]);
    assert_non_null(c);
    static const char *const shapes[] = {"cache:k%d",     "cache:{user%d}.profile",
                                         "cache:a{%d}b}", "cache:{}%d",
                                         "cache:{{%d}}",  "cache:x{%d",
                                         "cache:%d}{y}",  "cache:view:/p?page=%d"};
    int n = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        for (int i = 0; i < 250; i++) {
            char key[64];
            snprintf(key, sizeof key, shapes[s], i);
            redisAppendCommand(c, "CLUSTER KEYSLOT %s", key);
        }
        for (int i = 0; i < 250; i++) {
            char key[64];
            snprintf(key, sizeof key, shapes[s], i);
            void *reply;
            assert_int_equal(redisGetReply(c, &reply), REDIS_OK);
            redisReply *r = reply;
            assert_int_equal(r->type, REDIS_REPLY_INTEGER);
            if ((unsigned)r->integer != nori__cluster_keyslot(key, strlen(key)))
                fail_msg("key '%s': server slot %lld, ours %u", key, r->integer,
                         nori__cluster_keyslot(key, strlen(key)));
            freeReplyObject(r);
            n++;
        }
    }
    assert_int_equal(n, 2000);
    redisFree(c);
}

static void test_slot_map_from_server(void **state)
{
    (void)state;
    redisContext *c = nori_test_node_connect(&cluster->node[0]);
    assert_non_null(c);
    redisReply *r = redisCommand(c, "CLUSTER SLOTS");
    nori__slot_map m;
    assert_nori(nori__slot_map_parse(r, "127.0.0.1", "node0", &m), NORI_OK);
    assert_int_equal(m.served, NORI_CLUSTER_SLOTS);
    assert_int_equal(m.nnodes, NORI_TEST_CLUSTER_NODES);
    int masters = 0;
    for (size_t i = 0; i < m.nnodes; i++) {
        masters += m.nodes[i].is_master;
        int port = m.nodes[i].port;
        bool ours = false;
        for (int j = 0; j < NORI_TEST_CLUSTER_NODES; j++)
            ours |= cluster->node[j].port == port;
        assert_true(ours);
        assert_int_equal(strlen(m.nodes[i].id), 40);
    }
    assert_int_equal(masters, 3);
    /* The owner of a slot is the node the server names for it. */
    for (unsigned slot = 0; slot < NORI_CLUSTER_SLOTS; slot += 997) {
        int want = nori_test_cluster_slot_master(cluster, slot);
        assert_true(want >= 0);
        assert_int_equal(m.nodes[m.owner[slot]].port, cluster->node[want].port);
    }
    nori__slot_map_free(&m);
    freeReplyObject(r);
    /* INFO says cluster mode. */
    r = redisCommand(c, "INFO cluster");
    assert_true(nori__info_cluster_enabled(r->str, r->len));
    freeReplyObject(r);
    redisFree(c);
}

static void test_keys_spread_over_masters(void **state)
{
    (void)state;
    for (int i = 0; i < 300; i++) {
        char k[32];
        snprintf(k, sizeof k, "spread:%d", i);
        assert_nori(nori_backend_set(backend, k, k, strlen(k), 0), NORI_OK);
    }
    long total = 0;
    int masters = 0;
    for (int i = 0; i < NORI_TEST_CLUSTER_NODES; i++) {
        if (!nori_test_node_is_master(&cluster->node[i]))
            continue;
        masters++;
        long n = cluster_count_keys(i, "cache:spread:*");
        if (n < 50) /* about 100 each; a node with none would mean no routing */
            fail_msg("master on port %d holds %ld of 300 keys", cluster->node[i].port, n);
        total += n;
    }
    assert_int_equal(masters, 3);
    assert_int_equal(total, 300);
    for (int i = 0; i < 300; i += 37) {
        char k[32];
        snprintf(k, sizeof k, "spread:%d", i);
        nori_buf v;
        assert_nori(nori_backend_get(backend, k, &v), NORI_OK);
        assert_string_equal(v.data, k);
        nori_buf_free(&v);
    }
}

static void test_hash_tags_together(void **state)
{
    (void)state;
    static const char *const keys[] = {"{user42}:profile", "{user42}:cart", "{user42}:seen"};
    for (int k = 0; k < 3; k++)
        assert_nori(nori_backend_set(backend, keys[k], "x", 1, 60), NORI_OK);
    int holders = 0;
    for (int i = 0; i < NORI_TEST_CLUSTER_NODES; i++) {
        if (!nori_test_node_is_master(&cluster->node[i]))
            continue;
        long n = cluster_count_keys(i, "cache:{user42}:*");
        assert_true(n == 0 || n == 3);
        holders += n == 3;
    }
    assert_int_equal(holders, 1);
    /* incr and atomic_update on a tagged key run on the same node. */
    int64_t v;
    assert_nori(nori_backend_incr(backend, "{user42}:visits", 0, &v), NORI_OK);
    assert_nori(nori_backend_atomic_update(backend, "{user42}:visits", nori_test_add_one, NULL, 0,
                                           NULL),
                NORI_OK);
    assert_nori(nori_backend_incr(backend, "{user42}:visits", 0, &v), NORI_OK);
    assert_int_equal(v, 3);
}

/* flush removes cache:* on every master and leaves other keys alone (the
 * harness wrote one nori-test:warmup:N key on each master). */
static void test_flush_every_master_only_cache(void **state)
{
    (void)state;
    for (int i = 0; i < 100; i++) {
        char k[32];
        snprintf(k, sizeof k, "f:%d", i);
        assert_nori(nori_backend_set(backend, k, "v", 1, 0), NORI_OK);
    }
    assert_nori(nori_backend_flush(backend), NORI_OK);
    int masters = 0;
    for (int i = 0; i < NORI_TEST_CLUSTER_NODES; i++) {
        if (!nori_test_node_is_master(&cluster->node[i]))
            continue;
        masters++;
        assert_int_equal(cluster_count_keys(i, "cache:*"), 0);
        assert_int_equal(cluster_count_keys(i, "nori-test:warmup:*"), 1);
    }
    assert_int_equal(masters, 3);
    assert_nori(nori_backend_delete_prefix(backend, "f:"), NORI_OK);
}

/* Bulk calls over keys of many slots: each key is routed to its master. */
static void test_bulk_calls_across_slots(void **state)
{
    (void)state;
    enum { N = 60 };
    char names[N][32];
    const char *keys[N];
    nori_set_item items[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "bulk:%d", i);
        keys[i] = names[i];
        items[i] = (nori_set_item){names[i], names[i], strlen(names[i]), 60};
    }
    int rcs[N];
    assert_nori(nori_backend_set_many(backend, items, N, rcs), NORI_OK);
    nori_get_result res[N];
    assert_nori(nori_backend_get_many(backend, keys, N, res), NORI_OK);
    for (int i = 0; i < N; i++) {
        assert_int_equal(res[i].rc, NORI_OK);
        assert_string_equal(res[i].value.data, names[i]);
    }
    nori_get_results_free(res, N);
    assert_nori(nori_backend_delete_many(backend, keys, N, rcs), NORI_OK);
    assert_nori(nori_backend_get_many(backend, keys, N, res), NORI_OK);
    for (int i = 0; i < N; i++)
        assert_int_equal(res[i].rc, NORI_MISS);
    nori_get_results_free(res, N);
    /* The near cache works on a cluster too (one listener per node; the
     * coherence checks are test_near_cluster's): enabled on a backend that
     * already knows it talks to a cluster, a key read twice is served
     * locally the second time. */
    nori_backend *near = NULL;
    assert_nori(nori_redis_backend_new(cluster->url, &near), NORI_OK);
    assert_nori(nori_backend_verify(near), NORI_OK); /* the mode is known: cluster */
    assert_nori(nori_redis_backend_enable_near(near, 100, 0, 0), NORI_OK);
    assert_nori(nori_backend_set(near, "near:1", "one", 3, 60), NORI_OK);
    nori_near_stats st = {0};
    for (int i = 0; i < 100 && st.hits == 0; i++) {
        nori_buf v;
        assert_nori(nori_backend_get(near, "near:1", &v), NORI_OK);
        assert_string_equal(v.data, "one");
        nori_buf_free(&v);
        assert_nori(nori_backend_get_near_stats(near, &st), NORI_OK);
        if (st.hits == 0) {
            struct timespec gap = {0, 10 * 1000000L};
            nanosleep(&gap, NULL);
        }
    }
    assert_true(st.hits > 0);
    nori_backend_free(near);
}

static void test_verify_and_describe(void **state)
{
    (void)state;
    assert_nori(nori_backend_verify(backend), NORI_OK);
    char *text;
    assert_nori(nori_backend_describe(backend, &text), NORI_OK);
    assert_non_null(strstr(text, "mode: cluster"));
    assert_non_null(strstr(text, "nodes: 6 (3 masters, 3 replicas), slots served: 16384 of 16384"));
    for (int i = 0; i < NORI_TEST_CLUSTER_NODES; i++) {
        char addr[32];
        snprintf(addr, sizeof addr, "127.0.0.1:%d", cluster->node[i].port);
        assert_non_null(strstr(text, addr));
    }
    free(text);
}

#ifdef NORICACHE_PATH
/* `noricache check` prints the topology: mode, every node, roles, slots. */
static void test_cli_check_prints_topology(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "CACHE_BACKEND=redis REDIS_URL='%s' %s check", cluster->url,
             NORICACHE_PATH);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[8192];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    assert_int_equal(pclose(p), 0);
    assert_non_null(strstr(out, "ok: redis redis://127.0.0.1:"));
    assert_non_null(strstr(out, "mode: cluster\n"));
    int masters = 0, replicas = 0;
    for (const char *q = out; (q = strstr(q, "\nmaster 127.0.0.1:")) != NULL; q++)
        masters++;
    for (const char *q = out; (q = strstr(q, "\n  replica 127.0.0.1:")) != NULL; q++)
        replicas++;
    assert_int_equal(masters, 3);
    assert_int_equal(replicas, 3);
    assert_non_null(strstr(out, " slots 0-"));
}
#endif

/* ---- resharding under load ---- */

typedef struct mover {
    pthread_t thread;
    int id;
    atomic_bool *stop;
    long calls, failures, incr_ok;
    char last_error[256];
} mover;

/* Keys over many slots, so that the slots being moved hold some: every
 * operation must succeed through MOVED and ASK. */
static void *move_work(void *arg)
{
    mover *m = arg;
    unsigned seed = (unsigned)m->id * 7919u + 1;
    char ctr[32];
    snprintf(ctr, sizeof ctr, "rctr:%d", m->id);
    while (!atomic_load(m->stop)) {
        char key[32];
        seed = seed * 1103515245u + 12345u;
        snprintf(key, sizeof key, "r:%u", (seed >> 8) % 2000);
        int rc[4];
        nori_buf v;
        int64_t n;
        rc[0] = nori_backend_set(backend, key, "v", 1, 60);
        rc[1] = nori_backend_get(backend, key, &v);
        if (rc[1] == NORI_OK)
            nori_buf_free(&v);
        rc[2] = nori_backend_incr(backend, ctr, 0, &n);
        rc[3] = nori_backend_atomic_update(backend, key, nori_test_add_one, NULL, 0, NULL);
        m->incr_ok += rc[2] == NORI_OK;
        for (int i = 0; i < 4; i++) {
            m->calls++;
            if (rc[i] < 0) {
                m->failures++;
                snprintf(m->last_error, sizeof m->last_error, "%s", nori_last_error());
            }
        }
    }
    return NULL;
}

static void test_resharding_under_load(void **state)
{
    (void)state;
    int slots = getenv("NORI_CLUSTER_LONG") != NULL ? 1000 : 300;
    /* Fill the slots with keys first, so that migrations carry keys. */
    for (int i = 0; i < 2000; i++) {
        char key[32];
        snprintf(key, sizeof key, "r:%d", i);
        assert_nori(nori_backend_set(backend, key, "0", 1, 60), NORI_OK);
    }
    int from = nori_test_cluster_slot_master(cluster, 0), to = -1;
    for (int i = 0; i < NORI_TEST_CLUSTER_NODES && to < 0; i++)
        if (i != from && nori_test_node_is_master(&cluster->node[i]))
            to = i;
    assert_true(from >= 0 && to >= 0);
    atomic_bool stop;
    atomic_init(&stop, false);
    mover m[THREADS];
    memset(m, 0, sizeof m);
    for (int i = 0; i < THREADS; i++) {
        m[i].id = i;
        m[i].stop = &stop;
        assert_int_equal(pthread_create(&m[i].thread, NULL, move_work, &m[i]), 0);
    }
    long long start = nori_test_now_ms();
    int rc = nori_test_cluster_reshard(cluster, from, to, slots);
    long long took = nori_test_now_ms() - start;
    atomic_store(&stop, true);
    long calls = 0, failures = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(m[i].thread, NULL);
        calls += m[i].calls;
        failures += m[i].failures;
        if (m[i].failures > 0)
            print_message("thread %d: %ld failures, last: %s\n", i, m[i].failures,
                          m[i].last_error);
    }
    print_message("resharding %d slots took %lld ms under %ld calls\n", slots, took, calls);
    assert_int_equal(rc, 0);
    assert_int_equal(failures, 0);
    /* The moved slots are served by their new owner, through the backend too. */
    assert_int_equal(nori_test_cluster_slot_master(cluster, 0), to);
    for (int i = 0; i < THREADS; i++) {
        char ctr[32];
        snprintf(ctr, sizeof ctr, "rctr:%d", i);
        nori_buf v;
        assert_nori(nori_backend_get(backend, ctr, &v), NORI_OK);
        assert_int_equal(strtol(v.data, NULL, 10), m[i].incr_ok);
        nori_buf_free(&v);
    }
}

/* ---- failover under load ---- */

/* A call returns within this bound: NORI_TOPO_RETRY_MS (3000) of retries,
 * plus one last attempt (connect 1000 + command 1000 ms), plus slack. */
#define CALL_BOUND_MS 6500

typedef struct worker {
    pthread_t thread;
    int id;
    atomic_bool *stop;
    bool on_victim; /* its keys' master is the one killed: loss possible */
    long incr_ok, incr_maybe, upd_ok, upd_maybe;
    long calls, errors;
    long long first_error_ms, last_error_ms, last_error_start_ms, max_call_ms;
    long long first_write_after_kill_ms; /* thread 0: first acknowledged incr of ctr:0 after it */
    _Atomic long long *kill_at;
    char last_error[256];
} worker;

static void record(worker *w, int rc, long long start, bool is_write, bool *maybe)
{
    long long end = nori_test_now_ms();
    w->calls++;
    if (end - start > w->max_call_ms)
        w->max_call_ms = end - start;
    *maybe = false;
    if (rc < 0) {
        w->errors++;
        if (w->first_error_ms == 0)
            w->first_error_ms = end;
        w->last_error_ms = end;
        w->last_error_start_ms = start;
        snprintf(w->last_error, sizeof w->last_error, "%s", nori_last_error());
        *maybe = is_write;
    }
}

static void *work(void *arg)
{
    worker *w = arg;
    char ctr[32], upd[32], val[32];
    snprintf(ctr, sizeof ctr, "ctr:%d", w->id);
    snprintf(upd, sizeof upd, "upd:%d", w->id);
    snprintf(val, sizeof val, "val:%d", w->id);
    while (!atomic_load(w->stop)) {
        bool maybe;
        long long t0 = nori_test_now_ms();
        int64_t n;
        int rc = nori_backend_incr(backend, ctr, 0, &n);
        record(w, rc, t0, true, &maybe);
        if (rc == NORI_OK) {
            w->incr_ok++;
            long long k = atomic_load(w->kill_at);
            if (k != 0 && t0 > k && w->first_write_after_kill_ms == 0)
                w->first_write_after_kill_ms = nori_test_now_ms();
        }
        w->incr_maybe += maybe;
        t0 = nori_test_now_ms();
        rc = nori_backend_atomic_update(backend, upd, nori_test_add_one, NULL, 0, NULL);
        record(w, rc, t0, true, &maybe);
        if (rc == NORI_OK)
            w->upd_ok++;
        w->upd_maybe += maybe;
        t0 = nori_test_now_ms();
        rc = nori_backend_set(backend, val, "v", 1, 60);
        record(w, rc, t0, true, &maybe);
        t0 = nori_test_now_ms();
        nori_buf v;
        rc = nori_backend_get(backend, val, &v);
        record(w, rc, t0, false, &maybe);
        if (rc == NORI_OK)
            nori_buf_free(&v);
    }
    return NULL;
}

static int64_t read_counter(const char *key)
{
    nori_buf v;
    int rc = nori_backend_get(backend, key, &v);
    if (rc == NORI_MISS)
        return 0;
    assert_nori(rc, NORI_OK);
    int64_t n = strtoll(v.data, NULL, 10);
    nori_buf_free(&v);
    return n;
}

static void test_failover_under_load(void **state)
{
    (void)state;
    bool long_form = getenv("NORI_CLUSTER_LONG") != NULL;
    int before_ms = long_form ? 3000 : 2000, after_ms = long_form ? 7000 : 5000;
    assert_nori(nori_backend_flush(backend), NORI_OK);
    atomic_bool stop;
    atomic_init(&stop, false);
    _Atomic long long kill_at;
    atomic_init(&kill_at, 0);
    /* Kill the master that owns ctr:0, so counters are on the failing node
     * (found before the workers start: no assertion may leave them running). */
    int victim = nori_test_cluster_slot_master(cluster, nori__cluster_keyslot("cache:ctr:0", 11));
    assert_true(victim >= 0);
    worker w[THREADS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < THREADS; i++) {
        w[i].id = i;
        w[i].stop = &stop;
        w[i].kill_at = &kill_at;
        assert_int_equal(pthread_create(&w[i].thread, NULL, work, &w[i]), 0);
    }
    struct timespec ts = {before_ms / 1000, (long)(before_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* load before the fault: a duration, not a synchronisation */
    for (int i = 0; i < THREADS; i++) {
        char k[32];
        snprintf(k, sizeof k, "cache:ctr:%d", i);
        bool ctr = nori_test_cluster_slot_master(cluster, nori__cluster_keyslot(k, strlen(k))) == victim;
        snprintf(k, sizeof k, "cache:upd:%d", i);
        bool upd = nori_test_cluster_slot_master(cluster, nori__cluster_keyslot(k, strlen(k))) == victim;
        w[i].on_victim = ctr || upd;
    }
    unsigned slot0 = nori__cluster_keyslot("cache:ctr:0", 11);
    long long killed = nori_test_now_ms();
    nori_test_node_kill(&cluster->node[victim], SIGKILL);
    atomic_store(&kill_at, nori_test_now_ms()); /* reaped: dead from here on */
    /* The server's own failover time: until the cluster names a new master
     * for the slot (bounded by the run). */
    long long promoted = 0;
    while (nori_test_now_ms() < killed + after_ms) {
        int m = nori_test_cluster_slot_master(cluster, slot0);
        if (promoted == 0 && m >= 0 && m != victim)
            promoted = nori_test_now_ms();
        ts = (struct timespec){0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < THREADS; i++)
        pthread_join(w[i].thread, NULL);

    /* After the failover every call succeeds. */
    assert_true(nori_test_cluster_wait_ok(cluster, 10000));
    long calls = 0, errors = 0;
    long long last_error = 0, last_error_start = 0, max_call = 0;
    for (int i = 0; i < THREADS; i++) {
        calls += w[i].calls;
        errors += w[i].errors;
        if (w[i].errors > 0) {
            print_message("thread %d: %ld errors of %ld calls, last: %s\n", i, w[i].errors,
                          w[i].calls, w[i].last_error);
            /* Errors only inside the failover window: none before the kill. */
            assert_true(w[i].first_error_ms >= killed);
            if (w[i].last_error_ms > last_error)
                last_error = w[i].last_error_ms;
            if (w[i].last_error_start_ms > last_error_start)
                last_error_start = w[i].last_error_start_ms;
        }
        if (w[i].max_call_ms > max_call)
            max_call = w[i].max_call_ms;
    }
    print_message("failover: %ld calls, %ld errors, last error %lld ms after the kill, "
                  "slowest call %lld ms; the cluster promoted a replica after %lld ms, first "
                  "acknowledged write on the failed master's slot after %lld ms\n",
                  calls, errors, last_error ? last_error - killed : 0, max_call,
                  promoted ? promoted - killed : -1,
                  w[0].first_write_after_kill_ms ? w[0].first_write_after_kill_ms - killed : -1);
    assert_true(promoted > 0);
    assert_true(max_call < CALL_BOUND_MS);
    /* Every call that started once the new master was known (plus one map
     * refresh interval and the retries' back-off) succeeded. */
    assert_true(errors == 0 || last_error_start < promoted + 1000);
    assert_true(w[0].first_write_after_kill_ms > 0);
    for (int i = 0; i < THREADS; i++) {
        char k[32];
        snprintf(k, sizeof k, "val:%d", i);
        assert_nori(nori_backend_set(backend, k, "after", 5, 0), NORI_OK);
        int64_t n;
        snprintf(k, sizeof k, "ctr:%d", i);
        int64_t before = read_counter(k);
        assert_nori(nori_backend_incr(backend, k, 0, &n), NORI_OK);
        assert_int_equal(n, before + 1);
        w[i].incr_ok++;
        /* Counters: every acknowledged increment is there, except those the
         * server may lose (acknowledged by the killed master just before
         * the kill, not yet replicated: only for keys on that master); never
         * more than was attempted. Any other difference is a library error. */
        int64_t got = read_counter(k);
        long lost = w[i].incr_ok - got;
        long may_lose = w[i].on_victim ? 20 : 0;
        if (got > w[i].incr_ok + w[i].incr_maybe || lost > may_lose)
            fail_msg("ctr:%d = %lld, %ld acknowledged, %ld maybe applied", i, (long long)got,
                     w[i].incr_ok, w[i].incr_maybe);
        if (lost > 0)
            print_message("ctr:%d lost %ld acknowledged increments at the kill (asynchronous "
                          "replication)\n", i, lost);
        snprintf(k, sizeof k, "upd:%d", i);
        got = read_counter(k);
        lost = w[i].upd_ok - got;
        if (got > w[i].upd_ok + w[i].upd_maybe || lost > may_lose)
            fail_msg("upd:%d = %lld, %ld acknowledged, %ld maybe applied", i, (long long)got,
                     w[i].upd_ok, w[i].upd_maybe);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keyslot_agrees_with_server),
        cmocka_unit_test(test_slot_map_from_server),
        cmocka_unit_test(test_keys_spread_over_masters),
        cmocka_unit_test(test_hash_tags_together),
        cmocka_unit_test(test_flush_every_master_only_cache),
        cmocka_unit_test(test_bulk_calls_across_slots),
        cmocka_unit_test(test_verify_and_describe),
#ifdef NORICACHE_PATH
        cmocka_unit_test(test_cli_check_prints_topology),
#endif
        cmocka_unit_test(test_resharding_under_load),
        cmocka_unit_test(test_failover_under_load), /* last: it kills a master */
    };
    return cmocka_run_group_tests_name("cluster", tests, cluster_group_setup,
                                       cluster_group_teardown);
}
