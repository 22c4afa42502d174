// SPDX-License-Identifier: MIT
/*
 * The bulk calls (issue 13 item 3) on both backends: get_many, set_many and
 * delete_many answer per key, exactly as the single-key calls would
 * (binary values, misses, bad keys, values over the limit, a key of another
 * type on Redis), and report the first failure; on Redis every key of a
 * call shares one round trip, so a dead server fails them all with
 * NORI_EBACKEND.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis_server.h"
#include "test_support.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static nori_test_redis *server;

typedef struct fixture {
    nori_backend *b;
    bool redis;
} fixture;

static int group_setup(void **state)
{
    (void)state;
    server = nori_test_redis_start(NULL);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    nori_test_redis_stop(server);
    return 0;
}

static int memory_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_nori(nori_memory_backend_new(1000, &f->b), NORI_OK);
    *state = f;
    return 0;
}

static int redis_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char url[300];
    snprintf(url, sizeof url, "%s?timeout_ms=500&connect_timeout_ms=500", server->url);
    assert_nori(nori_redis_backend_new(url, &f->b), NORI_OK);
    assert_nori(nori_backend_flush(f->b), NORI_OK);
    f->redis = true;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    nori_backend_free(f->b);
    free(f);
    return 0;
}

static void test_get_many(void **state)
{
    fixture *f = *state;
    assert_nori(nori_backend_set(f->b, "a", "alpha", 5, 0), NORI_OK);
    assert_nori(nori_backend_set(f->b, "bin", "x\0y", 3, 0), NORI_OK);
    assert_nori(nori_backend_set(f->b, "empty", "", 0, 0), NORI_OK);
    char long_key[NORI_MAX_KEY_LEN + 2];
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    const char *keys[] = {"a", "missing", "bin", "", "empty", NULL, long_key, "a"};
    size_t n = sizeof keys / sizeof *keys;
    nori_get_result res[8];
    nori_backend_stats before;
    assert_nori(nori_backend_get_stats(f->b, &before), NORI_OK);
    /* The first failure is the empty key, at index 3. */
    assert_nori(nori_backend_get_many(f->b, keys, n, res), NORI_EINVAL);
    assert_non_null(strstr(nori_last_error(), "empty"));
    assert_int_equal(res[0].rc, NORI_OK);
    assert_int_equal(res[0].value.len, 5);
    assert_string_equal(res[0].value.data, "alpha");
    assert_int_equal(res[1].rc, NORI_MISS);
    assert_null(res[1].value.data);
    assert_int_equal(res[2].rc, NORI_OK);
    assert_int_equal(res[2].value.len, 3);
    assert_memory_equal(res[2].value.data, "x\0y", 4); /* NUL-terminated too */
    assert_int_equal(res[3].rc, NORI_EINVAL);
    assert_int_equal(res[4].rc, NORI_OK);
    assert_int_equal(res[4].value.len, 0);
    assert_non_null(res[4].value.data);
    assert_int_equal(res[5].rc, NORI_EINVAL);
    assert_int_equal(res[6].rc, NORI_ETOOBIG);
    assert_int_equal(res[7].rc, NORI_OK);
    assert_string_equal(res[7].value.data, "alpha");
    nori_get_results_free(res, n);
    assert_null(res[0].value.data);
    nori_backend_stats after;
    assert_nori(nori_backend_get_stats(f->b, &after), NORI_OK);
    assert_int_equal(after.hits - before.hits, 4);
    assert_int_equal(after.misses - before.misses, 1);

    /* All good: NORI_OK even with misses. */
    const char *good[] = {"a", "missing"};
    assert_nori(nori_backend_get_many(f->b, good, 2, res), NORI_OK);
    nori_get_results_free(res, 2);
}

static void test_bulk_argument_errors(void **state)
{
    fixture *f = *state;
    nori_get_result res[2];
    const char *keys[] = {"a", "b"};
    assert_nori(nori_backend_get_many(f->b, keys, 0, res), NORI_OK);
    assert_nori(nori_backend_get_many(f->b, NULL, 2, res), NORI_EINVAL);
    assert_int_equal(res[0].rc, NORI_EINVAL);
    assert_nori(nori_backend_get_many(f->b, keys, 2, NULL), NORI_EINVAL);
    assert_nori(nori_backend_get_many(NULL, keys, 2, res), NORI_EINVAL);
    assert_nori(nori_backend_get_many(f->b, keys, NORI_MAX_BULK + 1, res), NORI_EINVAL);
    assert_non_null(strstr(nori_last_error(), "limit"));
    int codes[2] = {1, 1};
    assert_nori(nori_backend_delete_many(f->b, NULL, 2, codes), NORI_EINVAL);
    assert_int_equal(codes[1], NORI_EINVAL);
    assert_nori(nori_backend_set_many(f->b, NULL, 2, codes), NORI_EINVAL);
    assert_nori(nori_backend_set_many(f->b, NULL, 0, NULL), NORI_OK);
}

static void test_set_many_and_delete_many(void **state)
{
    fixture *f = *state;
    assert_nori(nori_backend_set_max_value(f->b, 100), NORI_OK);
    char big[101];
    memset(big, 'b', sizeof big);
    nori_set_item items[] = {
        {"s1", "one", 3, 0},
        {"s2", "t\0o", 3, 60},
        {"s3", big, sizeof big, 0}, /* over the 100-byte limit */
        {"s4", NULL, 0, 0},
        {"s5", "five", 4, -1}, /* bad ttl */
        {"s6", NULL, 2, 0},    /* NULL value with a length */
    };
    int codes[6];
    assert_nori(nori_backend_set_many(f->b, items, 6, codes), NORI_ETOOBIG);
    int want[] = {NORI_OK, NORI_OK, NORI_ETOOBIG, NORI_OK, NORI_EINVAL, NORI_EINVAL};
    for (int i = 0; i < 6; i++)
        assert_int_equal(codes[i], want[i]);
    nori_buf v;
    assert_nori(nori_backend_get(f->b, "s2", &v), NORI_OK);
    assert_memory_equal(v.data, "t\0o", 3);
    nori_buf_free(&v);
    assert_nori(nori_backend_get(f->b, "s3", &v), NORI_MISS);
    assert_nori(nori_backend_get(f->b, "s4", &v), NORI_OK);
    assert_int_equal(v.len, 0);
    nori_buf_free(&v);
    if (f->redis) {
        redisContext *c = nori_test_redis_connect(server);
        redisReply *r = redisCommand(c, "TTL cache:s2");
        assert_true(r->integer > 50 && r->integer <= 60);
        freeReplyObject(r);
        r = redisCommand(c, "TTL cache:s1");
        assert_int_equal(r->integer, -1);
        freeReplyObject(r);
        redisFree(c);
    }
    /* results may be NULL. */
    nori_set_item more[] = {{"s7", "7", 1, 0}};
    assert_nori(nori_backend_set_many(f->b, more, 1, NULL), NORI_OK);

    const char *keys[] = {"s1", "nope", "", "s2", "s7"};
    int dcodes[5];
    assert_nori(nori_backend_delete_many(f->b, keys, 5, dcodes), NORI_EINVAL);
    int dwant[] = {NORI_OK, NORI_OK, NORI_EINVAL, NORI_OK, NORI_OK};
    for (int i = 0; i < 5; i++)
        assert_int_equal(dcodes[i], dwant[i]);
    nori_get_result res[3];
    const char *gone[] = {"s1", "s2", "s7"};
    assert_nori(nori_backend_get_many(f->b, gone, 3, res), NORI_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(res[i].rc, NORI_MISS);
    assert_nori(nori_backend_delete_many(f->b, gone, 3, NULL), NORI_OK);
}

/* Many keys at once, round trip to the last byte. */
static void test_many_keys(void **state)
{
    fixture *f = *state;
    enum { N = 500 };
    static char names[N][16], vals[N][32];
    nori_set_item items[N];
    const char *keys[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "m%d", i);
        snprintf(vals[i], sizeof vals[i], "value-%d", i * 7);
        items[i] = (nori_set_item){names[i], vals[i], strlen(vals[i]), 300};
        keys[i] = names[i];
    }
    assert_nori(nori_backend_set_many(f->b, items, N, NULL), NORI_OK);
    static nori_get_result res[N];
    assert_nori(nori_backend_get_many(f->b, keys, N, res), NORI_OK);
    for (int i = 0; i < N; i++) {
        assert_int_equal(res[i].rc, NORI_OK);
        assert_string_equal(res[i].value.data, vals[i]);
    }
    nori_get_results_free(res, N);
    assert_nori(nori_backend_delete_many(f->b, keys, N, NULL), NORI_OK);
}

/* Redis only: a key of another type fails alone (as get would: WRONGTYPE). */
static void test_wrong_type_key(void **state)
{
    fixture *f = *state;
    redisContext *c = nori_test_redis_connect(server);
    freeReplyObject(redisCommand(c, "RPUSH cache:lst x"));
    redisFree(c);
    assert_nori(nori_backend_set(f->b, "ok", "1", 1, 0), NORI_OK);
    const char *keys[] = {"ok", "lst", "missing"};
    nori_get_result res[3];
    assert_nori(nori_backend_get_many(f->b, keys, 3, res), NORI_EBACKEND);
    assert_non_null(strstr(nori_last_error(), "WRONGTYPE"));
    assert_non_null(strstr(nori_last_error(), "lst"));
    assert_int_equal(res[0].rc, NORI_OK);
    assert_int_equal(res[1].rc, NORI_EBACKEND);
    assert_int_equal(res[2].rc, NORI_MISS);
    nori_get_results_free(res, 3);
}

/* Redis only: a value over the limit in a get_many fails the round trip. */
static void test_value_over_limit(void **state)
{
    fixture *f = *state;
    char big[200];
    memset(big, 'v', sizeof big);
    assert_nori(nori_backend_set(f->b, "big", big, sizeof big, 0), NORI_OK);
    assert_nori(nori_backend_set(f->b, "small", "s", 1, 0), NORI_OK);
    assert_nori(nori_backend_set_max_value(f->b, 100), NORI_OK);
    const char *keys[] = {"small", "big"};
    nori_get_result res[2];
    assert_nori(nori_backend_get_many(f->b, keys, 2, res), NORI_ETOOBIG);
    assert_int_equal(res[0].rc, NORI_ETOOBIG);
    assert_int_equal(res[1].rc, NORI_ETOOBIG);
    assert_null(res[0].value.data);
    /* The backend keeps working. */
    const char *one[] = {"small"};
    assert_nori(nori_backend_get_many(f->b, one, 1, res), NORI_OK);
    nori_get_results_free(res, 1);
}

/* Redis only: with the server gone, every key fails, nothing hangs. */
static void test_server_down(void **state)
{
    fixture *f = *state;
    nori_test_redis_kill(server);
    const char *keys[] = {"a", "", "b"};
    nori_get_result res[3];
    assert_nori(nori_backend_get_many(f->b, keys, 3, res), NORI_EBACKEND);
    assert_int_equal(res[0].rc, NORI_EBACKEND);
    assert_int_equal(res[1].rc, NORI_EINVAL);
    assert_int_equal(res[2].rc, NORI_EBACKEND);
    nori_set_item items[] = {{"a", "1", 1, 0}, {"b", "2", 1, 0}};
    int codes[3];
    assert_nori(nori_backend_set_many(f->b, items, 2, codes), NORI_EBACKEND);
    assert_int_equal(codes[1], NORI_EBACKEND);
    assert_nori(nori_backend_delete_many(f->b, keys, 3, codes), NORI_EBACKEND);
    nori_test_redis_restart(server);
    assert_nori(nori_backend_set_many(f->b, items, 2, codes), NORI_OK);
}

#define BOTH(t)                                                                                \
    cmocka_unit_test_setup_teardown(t, memory_setup, teardown),                                \
        cmocka_unit_test_setup_teardown(t, redis_setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_get_many),
        BOTH(test_bulk_argument_errors),
        BOTH(test_set_many_and_delete_many),
        BOTH(test_many_keys),
        cmocka_unit_test_setup_teardown(test_wrong_type_key, redis_setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_over_limit, redis_setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_down, redis_setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
