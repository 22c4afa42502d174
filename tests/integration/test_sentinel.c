/*
 * Sentinel resolution against a real master + replica + 3 sentinels
 * (started by the test): the master is found, a wrong master name and dead
 * sentinels give their distinct errors (never the password), and after a
 * failover the new master is found.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis/sentinel.h"
#include "fake_redis.h"
#include "redis_cluster.h"
#include "test_support.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PASSWORD "s3cret-pw"

static nori_test_sentinel *setup;

static int group_setup(void **state)
{
    (void)state;
    setup = nori_test_sentinel_start(PASSWORD);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    nori_test_sentinel_stop(setup);
    setup = NULL;
    return 0;
}

static void assert_no_password(void)
{
    if (strstr(nori_last_error(), PASSWORD) != NULL)
        fail_msg("the message shows the password: %s", nori_last_error());
}

static void test_resolves_master(void **state)
{
    (void)state;
    nori__redis_target t;
    assert_nori(nori__redis_target_parse(setup->url, &t), NORI_OK);
    int first = 0, port = 0;
    char *host = NULL;
    assert_nori(nori__sentinel_resolve(&t, &first, &host, &port), NORI_OK);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, setup->master.port);
    free(host);
    nori__redis_target_free(&t);
}

static void test_unknown_master_name(void **state)
{
    (void)state;
    char url[600];
    snprintf(url, sizeof url, "redis+sentinel://:" PASSWORD "@127.0.0.1:%d,127.0.0.1:%d/nosuch",
             setup->sentinel[0].port, setup->sentinel[1].port);
    nori__redis_target t;
    assert_nori(nori__redis_target_parse(url, &t), NORI_OK);
    int first = 0, port = 0;
    char *host = NULL;
    assert_nori(nori__sentinel_resolve(&t, &first, &host, &port), NORI_EBACKEND);
    assert_non_null(strstr(nori_last_error(), "unknown master name 'nosuch'"));
    char tried[64];
    snprintf(tried, sizeof tried, "127.0.0.1:%d", setup->sentinel[1].port);
    assert_non_null(strstr(nori_last_error(), tried));
    assert_no_password();
    assert_null(host);
    nori__redis_target_free(&t);
}

static void test_no_sentinel_reachable(void **state)
{
    (void)state;
    /* Ports 1 and 2 on loopback: nothing listens there (connection refused). */
    nori__redis_target t;
    assert_nori(nori__redis_target_parse("redis+sentinel://:" PASSWORD
                                         "@127.0.0.1:1,127.0.0.1:2/mymaster?connect_timeout_ms=200",
                                         &t),
                NORI_OK);
    int first = 0, port = 0;
    char *host = NULL;
    assert_nori(nori__sentinel_resolve(&t, &first, &host, &port), NORI_EBACKEND);
    const char *e = nori_last_error();
    assert_non_null(strstr(e, "no sentinel reachable (tried 127.0.0.1:1: "));
    assert_non_null(strstr(e, "127.0.0.1:2: "));
    assert_null(strstr(e, "unknown master"));
    assert_no_password();
    nori__redis_target_free(&t);

    /* A dead sentinel first in the list is skipped; the next one answers. */
    char url[600];
    snprintf(url, sizeof url, "redis+sentinel://:" PASSWORD "@127.0.0.1:1,127.0.0.1:%d/mymaster",
             setup->sentinel[2].port);
    assert_nori(nori__redis_target_parse(url, &t), NORI_OK);
    assert_nori(nori__sentinel_resolve(&t, &first, &host, &port), NORI_OK);
    assert_int_equal(first, 1); /* ask the one that answered first next time */
    assert_int_equal(port, nori_test_sentinel_master_port(setup));
    free(host);
    nori__redis_target_free(&t);
}

static void test_wrong_password_for_master(void **state)
{
    (void)state;
    char url[600];
    snprintf(url, sizeof url, "redis+sentinel://:wrong-pw@127.0.0.1:%d/mymaster",
             setup->sentinel[0].port);
    nori__redis_target t;
    assert_nori(nori__redis_target_parse(url, &t), NORI_OK);
    int first = 0, port = 0;
    char *host = NULL;
    assert_nori(nori__sentinel_resolve(&t, &first, &host, &port), NORI_EBACKEND);
    assert_non_null(strstr(nori_last_error(), "AUTH refused"));
    assert_null(strstr(nori_last_error(), "wrong-pw"));
    nori__redis_target_free(&t);
}

/*
 * Scripted sentinels: one that hangs (its wait is bounded by timeout_ms and
 * the next is asked), one that names a server whose ROLE says replica (a
 * stale sentinel: not accepted).
 */
static void test_stalled_and_stale_sentinels(void **state)
{
    (void)state;
    nori_fake_redis *hung = nori_fake_redis_start();
    nori_fake_redis *stale = nori_fake_redis_start();
    nori_fake_redis *replica = nori_fake_redis_start();
    nori_fake_redis_default(hung, "SENTINEL GET-MASTER-ADDR-BY-NAME", NORI_FAKE_STALL);
    char reply[128];
    snprintf(reply, sizeof reply, "*2\r\n$9\r\n127.0.0.1\r\n$%d\r\n%d\r\n",
             (int)snprintf(NULL, 0, "%d", nori_fake_redis_port(replica)),
             nori_fake_redis_port(replica));
    nori_fake_redis_default(stale, "SENTINEL GET-MASTER-ADDR-BY-NAME", reply);
    nori_fake_redis_default(replica, "ROLE",
                            "*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6379\r\n"
                            "$9\r\nconnected\r\n:0\r\n");
    char url[300];
    snprintf(url, sizeof url, "redis+sentinel://127.0.0.1:%d,127.0.0.1:%d/mymaster?timeout_ms=200",
             nori_fake_redis_port(hung), nori_fake_redis_port(stale));
    nori__redis_target t;
    assert_nori(nori__redis_target_parse(url, &t), NORI_OK);
    int first = 0, port = 0;
    char *host = NULL;
    long long start = nori_test_now_ms();
    assert_nori(nori__sentinel_resolve(&t, &first, &host, &port), NORI_EBACKEND);
    long long took = nori_test_now_ms() - start;
    const char *e = nori_last_error();
    assert_non_null(strstr(e, "no sentinel named a usable master for 'mymaster'"));
    assert_non_null(strstr(e, "ROLE is not master"));
    assert_true(took < 2000); /* one 200 ms timeout, not a hang */
    assert_int_equal(nori_fake_redis_count(replica, "ROLE"), 1);
    nori__redis_target_free(&t);
    nori_fake_redis_stop(hung);
    nori_fake_redis_stop(stale);
    nori_fake_redis_stop(replica);
}

/* Last: kills the master. The sentinels promote the replica; resolve then
 * names it (and ROLE confirms). */
static void test_failover_resolves_new_master(void **state)
{
    (void)state;
    nori__redis_target t;
    assert_nori(nori__redis_target_parse(setup->url, &t), NORI_OK);
    int old = setup->master.port;
    nori_test_node_kill(&setup->master, SIGKILL);
    long long start = nori_test_now_ms(), deadline = start + 30000;
    int first = 0, port = 0;
    char *host = NULL;
    while (nori_test_now_ms() < deadline) {
        if (nori__sentinel_resolve(&t, &first, &host, &port) == NORI_OK && port != old)
            break;
        free(host);
        host = NULL;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_non_null(host);
    assert_int_equal(port, setup->replica.port);
    print_message("new master resolved %lld ms after the kill\n", nori_test_now_ms() - start);
    free(host);
    nori__redis_target_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolves_master),
        cmocka_unit_test(test_unknown_master_name),
        cmocka_unit_test(test_no_sentinel_reachable),
        cmocka_unit_test(test_wrong_password_for_master),
        cmocka_unit_test(test_stalled_and_stale_sentinels),
        cmocka_unit_test(test_failover_resolves_new_master),
    };
    return cmocka_run_group_tests_name("sentinel", tests, group_setup, group_teardown);
}
