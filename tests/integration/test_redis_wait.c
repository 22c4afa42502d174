// SPDX-License-Identifier: MIT
/*
 * wait_replicas / wait_timeout_ms (src/redis/wire/conn.c): with the option, every
 * write of the Redis backend is followed, in the same round trip, by
 * "WAIT wait_replicas wait_timeout_ms", and a write that fewer replicas
 * acknowledged is NORI_EBACKEND ("may be lost if the master fails now").
 * Against a real master and a real replica (REPLICAOF), started here:
 *  - each acknowledged write is already on the replica when the call
 *    returns (read there at once), for set, incr, atomic_update, delete,
 *    set_many;
 *  - with the replica stopped (SIGSTOP), writes fail after about
 *    wait_timeout_ms with the shortfall named, reads are unaffected, a
 *    write that wrote nothing (SET NX on a taken key) is not an error;
 *    after SIGCONT writes succeed again;
 *  - asking for more replicas than exist always fails, naming the counts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis_server.h"
#include "test_support.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static nori_test_redis *master, *replica;
static redisContext *on_replica;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int group_setup(void **state)
{
    (void)state;
    master = nori_test_redis_start(NULL);
    replica = nori_test_redis_start(NULL);
    on_replica = nori_test_redis_connect(replica);
    redisReply *r = redisCommand(on_replica, "REPLICAOF 127.0.0.1 %d", master->port);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    /* Bounded wait for the link (a few hundred ms on loopback). */
    double until = now_ms() + 20000;
    bool up = false;
    while (!up && now_ms() < until) {
        r = redisCommand(on_replica, "INFO replication");
        assert_non_null(r);
        up = strstr(r->str, "master_link_status:up") != NULL;
        freeReplyObject(r);
        if (!up) {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    assert_true(up);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    redisFree(on_replica);
    nori_test_redis_stop(replica);
    nori_test_redis_stop(master);
    return 0;
}

static nori_backend *backend(int replicas, int wait_ms)
{
    char url[400];
    snprintf(url, sizeof url, "%s?timeout_ms=2000&wait_replicas=%d&wait_timeout_ms=%d",
             master->url, replicas, wait_ms);
    nori_backend *b;
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    return b;
}

/* The replica's value of key ("cache:" + key), or NULL. */
static char *replica_get(const char *key)
{
    redisReply *r = redisCommand(on_replica, "GET cache:%s", key);
    assert_non_null(r);
    char *v = r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
    freeReplyObject(r);
    return v;
}

static int append_x(const nori_buf *cur, nori_buf *next, void *ud)
{
    (void)ud;
    size_t len = cur != NULL ? cur->len : 0;
    next->data = malloc(len + 2);
    if (next->data == NULL)
        return NORI_ENOMEM;
    if (len > 0)
        memcpy(next->data, cur->data, len);
    next->data[len] = 'x';
    next->data[len + 1] = '\0';
    next->len = len + 1;
    return NORI_OK;
}

static void test_acknowledged_writes_are_on_the_replica(void **state)
{
    (void)state;
    nori_backend *b = backend(1, 500);
    char want[32];
    for (int i = 1; i <= 200; i++) {
        int64_t n;
        assert_nori(nori_backend_incr(b, "w:ctr", 0, &n), NORI_OK);
        assert_int_equal(n, i);
        /* Read on the replica at once: the WAIT made it arrive there. */
        char *v = replica_get("w:ctr");
        snprintf(want, sizeof want, "%d", i);
        assert_non_null(v);
        assert_string_equal(v, want);
        free(v);
    }
    assert_nori(nori_backend_set(b, "w:s", "value", 5, 60), NORI_OK);
    char *v = replica_get("w:s");
    assert_non_null(v);
    assert_string_equal(v, "value");
    free(v);
    assert_nori(nori_backend_atomic_update(b, "w:s", append_x, NULL, 60, NULL), NORI_OK);
    v = replica_get("w:s");
    assert_non_null(v);
    assert_string_equal(v, "valuex");
    free(v);
    assert_nori(nori_backend_delete(b, "w:s"), NORI_OK);
    assert_null(replica_get("w:s"));
    nori_set_item items[2] = {{"w:m1", "one", 3, 0}, {"w:m2", "two", 3, 0}};
    int rcs[2];
    assert_nori(nori_backend_set_many(b, items, 2, rcs), NORI_OK);
    assert_int_equal(rcs[0], NORI_OK);
    assert_int_equal(rcs[1], NORI_OK);
    v = replica_get("w:m2");
    assert_non_null(v);
    assert_string_equal(v, "two");
    free(v);
    nori_backend_free(b);
}

static void test_stopped_replica(void **state)
{
    (void)state;
    nori_backend *b = backend(1, 300);
    assert_nori(nori_backend_set(b, "w:lease", "held", 4, 60), NORI_OK);
    assert_int_equal(kill(replica->pid, SIGSTOP), 0);
    double t0 = now_ms();
    int rc = nori_backend_set(b, "w:k", "v1", 2, 60);
    double took = now_ms() - t0;
    print_message("set with the replica stopped: %.0f ms: %s\n", took, nori_last_error());
    assert_nori(rc, NORI_EBACKEND);
    assert_non_null(strstr(nori_last_error(), "only 0 of the 1 replicas"));
    assert_non_null(strstr(nori_last_error(), "'w:k'"));
    assert_true(took >= 250 && took < 1500);
    int64_t n;
    assert_nori(nori_backend_incr(b, "w:c2", 0, &n), NORI_EBACKEND);
    assert_non_null(strstr(nori_last_error(), "may be lost"));
    /* Reads do not wait. */
    nori_buf out = {NULL, 0};
    t0 = now_ms();
    assert_nori(nori_backend_get(b, "w:lease", &out), NORI_OK);
    assert_true(now_ms() - t0 < 250);
    nori_buf_free(&out);
    /* A write that wrote nothing has nothing to wait for: SET NX on a taken
     * key answers "not added" as usual. */
    int added = -1;
    assert_nori(nori_backend_add(b, "w:lease", "other", 5, 10000, &added), NORI_OK);
    assert_int_equal(added, 0);
    assert_int_equal(kill(replica->pid, SIGCONT), 0);
    /* Once the replica is back (it catches up on its own), writes succeed. */
    double until = now_ms() + 10000;
    while ((rc = nori_backend_set(b, "w:k", "v2", 2, 60)) != NORI_OK && now_ms() < until)
        ;
    assert_nori(rc, NORI_OK);
    char *v = replica_get("w:k");
    assert_non_null(v);
    assert_string_equal(v, "v2");
    free(v);
    nori_backend_free(b);
}

/* A write that fails only on its WAIT leaves the near cache alone (its
 * connection and tracking are intact): with the replica stopped, another
 * key's local copy stays and is still served locally; the written key's
 * copy is dropped (the write was applied on the master). Before, every
 * such write emptied the near cache (flushes_tracking_lost). */
static void test_near_cache_survives_a_wait_shortfall(void **state)
{
    (void)state;
    nori_backend *b = backend(1, 200);
    assert_nori(nori_redis_backend_enable_near(b, 1000, 1 << 20, 0), NORI_OK);
    assert_nori(nori_backend_set(b, "w:hot", "hot", 3, 60), NORI_OK);
    assert_nori(nori_backend_set(b, "w:cold", "c0", 2, 60), NORI_OK);
    /* Read until local: a read is kept once the near cache's listener
     * has proved tracking (bounded). */
    nori_near_stats st;
    double until = now_ms() + 10000;
    do {
        nori_buf v = {NULL, 0};
        assert_nori(nori_backend_get(b, "w:hot", &v), NORI_OK);
        nori_buf_free(&v);
        v = (nori_buf){NULL, 0};
        assert_nori(nori_backend_get(b, "w:cold", &v), NORI_OK);
        nori_buf_free(&v);
        assert_nori(nori_backend_get_near_stats(b, &st), NORI_OK);
    } while (st.entries < 2 && now_ms() < until);
    assert_int_equal(st.entries, 2);
    uint64_t lost_before = st.flushes_tracking_lost;
    assert_int_equal(kill(replica->pid, SIGSTOP), 0);
    int rc = nori_backend_set(b, "w:cold", "c1", 2, 60);
    assert_int_equal(kill(replica->pid, SIGCONT), 0);
    assert_nori(rc, NORI_EBACKEND);
    assert_non_null(strstr(nori_last_error(), "only 0 of the 1 replicas"));
    assert_nori(nori_backend_get_near_stats(b, &st), NORI_OK);
    assert_int_equal(st.flushes_tracking_lost, lost_before);
    assert_int_equal(st.entries, 1); /* w:hot kept, w:cold dropped */
    uint64_t hits = st.hits;
    nori_buf v = {NULL, 0};
    assert_nori(nori_backend_get(b, "w:hot", &v), NORI_OK);
    nori_buf_free(&v);
    v = (nori_buf){NULL, 0};
    assert_nori(nori_backend_get(b, "w:cold", &v), NORI_OK);
    assert_int_equal(v.len, 2);
    assert_memory_equal(v.data, "c1", 2); /* the master's value, not the old copy */
    nori_buf_free(&v);
    assert_nori(nori_backend_get_near_stats(b, &st), NORI_OK);
    assert_int_equal(st.hits, hits + 1);
    nori_backend_free(b);
}

static void test_more_replicas_than_exist(void **state)
{
    (void)state;
    nori_backend *b = backend(2, 100);
    assert_nori(nori_backend_set(b, "w:two", "v", 1, 60), NORI_EBACKEND);
    assert_non_null(strstr(nori_last_error(), "only 1 of the 2 replicas"));
    assert_non_null(strstr(nori_last_error(), "within 100 ms"));
    nori_backend_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acknowledged_writes_are_on_the_replica),
        cmocka_unit_test(test_stopped_replica),
        cmocka_unit_test(test_near_cache_survives_a_wait_shortfall),
        cmocka_unit_test(test_more_replicas_than_exist),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
