/*
 * Review of the Redis changes of issues 13 and 10 (send(MSG_NOSIGNAL), WAIT
 * after writes, refusals in the breaker, bulk calls per master and through
 * Sentinel): each case reproduces one finding with scripted fake servers
 * (tests/support/fake_redis.h), so that it is exact and fast.
 *  - Through Sentinel, a bulk write whose WAIT saw too few replicas was sent
 *    a second time key by key (the round trip "failed without timing out",
 *    read as "the master is gone"): every SET ran twice and each waited
 *    again. Only a lost connection sends the keys again alone.
 *  - A server that answers more replies than it was asked for in one read
 *    left the surplus in the reader's buffer of a connection that went back
 *    to the pool: the next call on it, for another key, was answered with
 *    that surplus (a cross-key leak). The pool no longer keeps a connection
 *    with unread input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fake_redis.h"
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROLE_MASTER "*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"

static void addr_reply(char *buf, size_t size, int port)
{
    snprintf(buf, size, "*2\r\n$9\r\n127.0.0.1\r\n$%d\r\n%d\r\n",
             (int)snprintf(NULL, 0, "%d", port), port);
}

#define BULK 10

/* Through Sentinel with wait_replicas=1 and no replica acknowledging (the
 * fake master answers WAIT with 0): set_many sends each SET once, and every
 * key fails naming the shortfall, as on one server and on a cluster. */
static void test_sentinel_bulk_wait_shortfall_sent_once(void **state)
{
    (void)state;
    nori_fake_redis *sent = nori_fake_redis_start();
    nori_fake_redis *m = nori_fake_redis_start();
    char a[128];
    addr_reply(a, sizeof a, nori_fake_redis_port(m));
    nori_fake_redis_default(sent, "SENTINEL GET-MASTER-ADDR-BY-NAME", a);
    nori_fake_redis_default(m, "ROLE", ROLE_MASTER);
    nori_fake_redis_default(m, "SET", "+OK\r\n");
    nori_fake_redis_default(m, "WAIT", ":0\r\n");
    char url[200];
    snprintf(url, sizeof url,
             "redis+sentinel://127.0.0.1:%d/mymaster?wait_replicas=1&wait_timeout_ms=50",
             nori_fake_redis_port(sent));
    nori_backend *b;
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    /* A first write resolves the master (and already falls short). */
    assert_nori(nori_backend_set(b, "warm", "v", 1, 0), NORI_EBACKEND);
    assert_non_null(strstr(nori_last_error(), "wait_replicas"));
    int sets = nori_fake_redis_count(m, "SET");
    assert_int_equal(sets, 1);

    char names[BULK][16];
    nori_set_item items[BULK];
    for (int i = 0; i < BULK; i++) {
        snprintf(names[i], sizeof names[i], "k%d", i);
        items[i] = (nori_set_item){names[i], "v", 1, 60};
    }
    int rcs[BULK];
    int rc = nori_backend_set_many(b, items, BULK, rcs);
    print_message("set_many: %s\n", nori_last_error());
    assert_int_equal(rc, NORI_EBACKEND);
    for (int i = 0; i < BULK; i++)
        assert_int_equal(rcs[i], NORI_EBACKEND);
    assert_non_null(strstr(nori_last_error(), "wait_replicas"));
    /* One SET per key: the writes were done; sending them again alone
     * repeated each write and each WAIT. */
    assert_int_equal(nori_fake_redis_count(m, "SET") - sets, BULK);
    assert_int_equal(nori_fake_redis_count(m, "WAIT"), 2);
    nori_backend_free(b);
    nori_fake_redis_stop(sent);
    nori_fake_redis_stop(m);
}

/* A server that answers one GET with two replies in one write: the surplus
 * must never become the answer of the next call on that connection. */
static void test_surplus_reply_not_served_to_next_key(void **state)
{
    (void)state;
    nori_fake_redis *f = nori_fake_redis_start();
    nori_fake_redis_reply(f, "GET", "$5\r\nalpha\r\n$6\r\nsecret\r\n");
    nori_fake_redis_default(f, "GET", "$-1\r\n");
    char url[200];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", nori_fake_redis_port(f));
    nori_backend *b;
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    nori_buf v = {NULL, 0};
    assert_nori(nori_backend_get(b, "a", &v), NORI_OK);
    assert_int_equal(v.len, 5);
    assert_memory_equal(v.data, "alpha", 5);
    nori_buf_free(&v);
    /* The server answers nil for b; "secret" was the surplus of a's call. */
    int rc = nori_backend_get(b, "b", &v);
    if (rc == NORI_OK)
        fail_msg("get b answered '%.*s', the surplus reply of get a", (int)v.len,
                 (const char *)v.data);
    assert_nori(rc, NORI_MISS);
    assert_int_equal(nori_fake_redis_count(f, "GET"), 2);
    nori_backend_free(b);
    nori_fake_redis_stop(f);
}

/* The same through a bulk call: the surplus after a pipeline's replies. */
static void test_surplus_after_pipeline_not_served(void **state)
{
    (void)state;
    nori_fake_redis *f = nori_fake_redis_start();
    nori_fake_redis_reply(f, "GET", "$2\r\nv1\r\n");
    nori_fake_redis_reply(f, "GET", "$2\r\nv2\r\n$6\r\nsecret\r\n");
    nori_fake_redis_default(f, "GET", "$-1\r\n");
    char url[200];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", nori_fake_redis_port(f));
    nori_backend *b;
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    const char *keys[2] = {"k1", "k2"};
    nori_get_result res[2];
    assert_nori(nori_backend_get_many(b, keys, 2, res), NORI_OK);
    assert_int_equal(res[0].rc, NORI_OK);
    assert_int_equal(res[1].rc, NORI_OK);
    nori_get_results_free(res, 2);
    nori_buf v = {NULL, 0};
    int rc = nori_backend_get(b, "other", &v);
    if (rc == NORI_OK)
        fail_msg("get other answered '%.*s', the surplus of the pipeline", (int)v.len,
                 (const char *)v.data);
    assert_nori(rc, NORI_MISS);
    nori_backend_free(b);
    nori_fake_redis_stop(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sentinel_bulk_wait_shortfall_sent_once),
        cmocka_unit_test(test_surplus_reply_not_served_to_next_key),
        cmocka_unit_test(test_surplus_after_pipeline_not_served),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
