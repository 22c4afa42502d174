// SPDX-License-Identifier: MIT
/*
 * Cluster redirections, deterministically, on scripted fake nodes
 * (tests/support/fake_redis.c): what a real cluster cannot produce on
 * demand. Each case builds a backend on a fake seed that says
 * cluster_enabled:1 and serves a slot map naming fake nodes. The cases
 * that wait (TRYAGAIN, CLUSTERDOWN, a slot nobody serves) run on the
 * virtual clock (clock.h), moved on whenever the call sleeps: the back-off
 * and the retry budget are checked to the millisecond, in no real time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cluster_fixture.h"
#include "redis/route/cluster_slots.h"
#include "redis/route/topology.h"
#include "test_support.h"
#include "virtual_clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define START 1000000

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The virtual clock, run forward whenever the call under test sleeps. */
static int clock_setup(void **state)
{
    (void)state;
    nori_test_clock_install(START);
    nori_test_clock_run();
    return 0;
}

static int clock_teardown(void **state)
{
    (void)state;
    nori_test_clock_uninstall();
    return 0;
}

/*
 * The back-off that topology.c documents: 10 ms, doubling to 200 ms. The
 * virtual time at which a call that keeps waiting gives up, and how many
 * attempts it made: an attempt starts at each pause's end while the time
 * is within NORI_TOPO_RETRY_MS of the first; the one that starts past it
 * still runs (its node is routed to before the budget is judged) and is
 * the last.
 */
static void waiting_call(long long *gives_up_at, int *attempts)
{
    long long t = 0;
    int delay = 10, n = 1;
    while (t < NORI_TOPO_RETRY_MS) {
        t += delay;
        delay = delay < 100 ? delay * 2 : 200;
        n++;
    }
    *gives_up_at = t;
    *attempts = n;
}

static void assert_get(nori_backend *b, const char *key, const char *want)
{
    nori_buf v;
    assert_nori(nori_backend_get(b, key, &v), NORI_OK);
    assert_int_equal(v.len, strlen(want));
    assert_memory_equal(v.data, want, v.len);
    nori_buf_free(&v);
}

/* MOVED: the command is sent again to the new owner, and the map is read
 * again, so the next command for the slot goes straight there. */
static void test_moved(void **state)
{
    (void)state;
    nori_fake_redis *a = fake_cluster_node(0, 16383), *bn = fake_cluster_node(0, 16383);
    char moved[128];
    snprintf(moved, sizeof moved, "-MOVED %u 127.0.0.1:%d\r\n", cluster_wire_slot("k"),
             nori_fake_redis_port(bn));
    nori_fake_redis_reply(a, "GET", moved);
    /* The refresh after the MOVED asks b first, whose map gives it every slot. */
    nori_fake_redis_default(bn, "GET", "$2\r\nvb\r\n");
    nori_backend *b = fake_cluster_backend(a, "");
    assert_get(b, "k", "vb");
    assert_get(b, "other", "vb"); /* the refreshed map sends it to b as well */
    assert_int_equal(nori_fake_redis_count(a, "GET"), 1);
    assert_int_equal(nori_fake_redis_count(bn, "GET"), 2);
    assert_int_equal(nori_fake_redis_count(bn, "CLUSTER SLOTS"), 1);
    nori_backend_free(b);
    nori_fake_redis_stop(a);
    nori_fake_redis_stop(bn);
}

/* ASK: ASKING + the one command at the node named, and no map change: the
 * next command goes to the owner again. */
static void test_ask(void **state)
{
    (void)state;
    nori_fake_redis *a = fake_cluster_node(0, 16383), *bn = fake_cluster_node(0, 16383);
    char ask[128];
    snprintf(ask, sizeof ask, "-ASK %u 127.0.0.1:%d\r\n", cluster_wire_slot("k"), nori_fake_redis_port(bn));
    nori_fake_redis_reply(a, "GET", ask);
    nori_fake_redis_reply(a, "GET", "$2\r\nva\r\n");
    nori_fake_redis_default(bn, "GET", "$2\r\nvb\r\n");
    nori_backend *b = fake_cluster_backend(a, "");
    assert_get(b, "k", "vb");
    char *log = nori_fake_redis_log(bn);
    assert_string_equal(log, "ASKING|GET");
    free(log);
    assert_get(b, "k", "va");
    assert_int_equal(nori_fake_redis_count(a, "CLUSTER SLOTS"), 1); /* no refresh for ASK */
    nori_backend_free(b);
    nori_fake_redis_stop(a);
    nori_fake_redis_stop(bn);
}

/* TRYAGAIN, then CLUSTERDOWN, then success: retried after 10, then 20 ms. */
static void test_tryagain_clusterdown_retried(void **state)
{
    (void)state;
    nori_fake_redis *a = fake_cluster_node(0, 16383);
    nori_fake_redis_reply(a, "SET", "-TRYAGAIN Multiple keys request during rehashing of slot\r\n");
    nori_fake_redis_reply(a, "SET", "-CLUSTERDOWN The cluster is down\r\n");
    nori_fake_redis_reply(a, "SET", "+OK\r\n");
    nori_backend *b = fake_cluster_backend(a, "");
    assert_nori(nori_backend_set(b, "k", "v", 1, 0), NORI_OK);
    assert_int_equal(nori_fake_redis_count(a, "SET"), 3);
    assert_int_equal(nori_test_clock_now() - START, 10 + 20);
    nori_backend_free(b);
    nori_fake_redis_stop(a);
}

/* A cluster that stays down: a bounded number of retries, then an error that
 * says what the server kept answering. */
static void test_clusterdown_gives_up(void **state)
{
    (void)state;
    nori_fake_redis *a = fake_cluster_node(0, 16383);
    nori_fake_redis_default(a, "GET", "-CLUSTERDOWN The cluster is down\r\n");
    nori_backend *b = fake_cluster_backend(a, "");
    nori_buf v;
    assert_nori(nori_backend_get(b, "k", &v), NORI_EBACKEND);
    assert_non_null(strstr(nori_last_error(), "CLUSTERDOWN"));
    long long gives_up_at;
    int attempts;
    waiting_call(&gives_up_at, &attempts);
    assert_int_equal(nori_test_clock_now() - START, gives_up_at);
    assert_int_equal(nori_fake_redis_count(a, "GET"), attempts);
    char want[64];
    snprintf(want, sizeof want, "still redirected after %d attempts", attempts);
    assert_non_null(strstr(nori_last_error(), want));
    nori_backend_free(b);
    nori_fake_redis_stop(a);
}

/* A server that redirects a slot to itself forever (a lying node): bounded. */
static void test_moved_loop_bounded(void **state)
{
    (void)state;
    nori_fake_redis *a = fake_cluster_node(0, 16383);
    char moved[128];
    snprintf(moved, sizeof moved, "-MOVED %u 127.0.0.1:%d\r\n", cluster_wire_slot("k"),
             nori_fake_redis_port(a));
    nori_fake_redis_default(a, "UNLINK", moved);
    nori_backend *b = fake_cluster_backend(a, "");
    assert_nori(nori_backend_delete(b, "k"), NORI_EBACKEND);
    assert_non_null(strstr(nori_last_error(), "still redirected after 16 attempts (last: MOVED"));
    assert_int_equal(nori_fake_redis_count(a, "UNLINK"), 16);
    nori_backend_free(b);
    nori_fake_redis_stop(a);
}

/* A slot no node serves: an error naming the slot, after a bounded wait. */
static void test_slot_not_served(void **state)
{
    (void)state;
    unsigned s = cluster_wire_slot("k");
    nori_fake_redis *a = fake_cluster_node(s == 0 ? 1 : 0, s == 0 ? 16383 : (int)s - 1);
    /* What a real node answers for a slot nobody serves. */
    nori_fake_redis_default(a, "SET", "-CLUSTERDOWN Hash slot not served\r\n");
    nori_backend *b = fake_cluster_backend(a, "");
    assert_nori(nori_backend_set(b, "k", "v", 1, 0), NORI_EBACKEND);
    char want[64];
    snprintf(want, sizeof want, "slot %u is not served", s);
    if (strstr(nori_last_error(), want) == NULL)
        fail_msg("%s", nori_last_error());
    long long gives_up_at;
    int attempts;
    waiting_call(&gives_up_at, &attempts);
    assert_int_equal(nori_test_clock_now() - START, gives_up_at);
    /* Only the first SET, sent before the backend knew it was a cluster:
     * after that the map says no node serves the slot. */
    assert_int_equal(nori_fake_redis_count(a, "SET"), 1);
    nori_backend_free(b);
    nori_fake_redis_stop(a);
}

/* A node that stops answering: the call ends after its retry budget with
 * "timed out", never hangs; incr (not idempotent) is not resent. */
static void test_stalled_node(void **state)
{
    (void)state;
    nori_fake_redis *a = fake_cluster_node(0, 16383);
    nori_fake_redis_default(a, "GET", NORI_FAKE_STALL);
    nori_fake_redis_default(a, "SCRIPT LOAD", "$40\r\n137df22802a5543446842ecc7afe8dbcae3fa515\r\n");
    nori_fake_redis_default(a, "EVALSHA", NORI_FAKE_STALL);
    nori_backend *b = fake_cluster_backend(a, "?timeout_ms=200");
    long long start = now_ms();
    nori_buf v;
    assert_nori(nori_backend_get(b, "k", &v), NORI_EBACKEND);
    assert_non_null(strstr(nori_last_error(), "timed out"));
    assert_true(now_ms() - start < 5000);
    start = now_ms();
    int64_t n;
    assert_nori(nori_backend_incr(b, "k", 0, &n), NORI_EBACKEND);
    assert_non_null(strstr(nori_last_error(), "timed out"));
    assert_true(now_ms() - start < 1500);
    assert_int_equal(nori_fake_redis_count(a, "EVALSHA"), 1);
    nori_backend_free(b);
    nori_fake_redis_stop(a);
}

/* Detection: a seed that is down is skipped for the next ?addr= seed. */
static void test_second_seed(void **state)
{
    (void)state;
    nori_fake_redis *a = fake_cluster_node(0, 16383);
    nori_fake_redis_default(a, "GET", "$1\r\nx\r\n");
    char url[200];
    snprintf(url, sizeof url, "redis://127.0.0.1:1?addr=127.0.0.1:%d&connect_timeout_ms=200",
             nori_fake_redis_port(a));
    nori_backend *b;
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    assert_get(b, "k", "x");
    nori_backend_free(b);
    /* No seed answers: the error names the first and says the others failed. */
    snprintf(url, sizeof url, "redis://127.0.0.1:1?addr=127.0.0.1:2&connect_timeout_ms=200");
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    nori_buf v;
    assert_nori(nori_backend_get(b, "k", &v), NORI_EBACKEND);
    assert_non_null(strstr(nori_last_error(), "127.0.0.1:1"));
    assert_non_null(strstr(nori_last_error(), "1 other seed"));
    nori_backend_free(b);
    nori_fake_redis_stop(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_moved),
        cmocka_unit_test(test_ask),
        cmocka_unit_test_setup_teardown(test_tryagain_clusterdown_retried, clock_setup,
                                        clock_teardown),
        cmocka_unit_test_setup_teardown(test_clusterdown_gives_up, clock_setup, clock_teardown),
        cmocka_unit_test(test_moved_loop_bounded),
        cmocka_unit_test_setup_teardown(test_slot_not_served, clock_setup, clock_teardown),
        cmocka_unit_test(test_stalled_node),
        cmocka_unit_test(test_second_seed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
