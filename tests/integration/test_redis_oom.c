// SPDX-License-Identifier: MIT
/*
 * A private redis-server out of memory: `maxmemory 1mb` with
 * `maxmemory-policy noeviction` (CONFIG SET), after a filler value has taken
 * it over the limit. Writes (set, incr, atomic_update) fail with
 * NORI_EBACKEND and a message carrying the server's OOM text, and write
 * nothing; reads and PING still work; the response cache on that backend
 * still serves: a stored entry is a hit, a new route's handler response is
 * served and the failed store is counted as an error. Once the limit is
 * lifted the same handles store again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis_server.h"
#include "test_support.h"

#include <hiredis/hiredis.h>
#include <nori/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static nori_test_redis *server;

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

/* Runs a command on the raw connection and checks it answered OK. */
static void raw_ok(redisContext *c, const char *fmt, const char *arg)
{
    redisReply *r = redisCommand(c, fmt, arg);
    assert_non_null(r);
    if (r->type != REDIS_REPLY_STATUS)
        fail_msg("%s: reply type %d: %s", fmt, r->type, r->type == REDIS_REPLY_ERROR ? r->str : "");
    freeReplyObject(r);
}

static int handler(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    int *runs = ud;
    (*runs)++;
    char body[128];
    snprintf(body, sizeof body, "page %s, run %d\n", req->path, *runs);
    int rc = nori_http_response_set_body(resp, body, strlen(body));
    return rc ? rc : nori_http_response_set_media_type(resp, "text/plain");
}

/* Serves GET path through cache; returns the origin and checks the body. */
static nori_http_origin serve(nori_http_cache *cache, const char *path, int *runs,
                              const char *expect_prefix)
{
    nori_http_request req = {"GET", path, "", NULL, NULL, NULL, 0, NULL};
    nori_http_response resp;
    nori_http_response_init(&resp);
    assert_nori(nori_http_cache_serve(cache, &req, handler, runs, &resp), NORI_OK);
    assert_int_equal(resp.status, 200);
    assert_non_null(resp.body);
    assert_true(resp.body_len >= strlen(expect_prefix));
    assert_memory_equal(resp.body, expect_prefix, strlen(expect_prefix));
    nori_http_origin o = resp.origin;
    nori_http_response_clear(&resp);
    return o;
}

static void expect_oom(int rc, const char *what)
{
    if (rc != NORI_EBACKEND)
        fail_msg("%s under OOM: got %d (%s), expected NORI_EBACKEND", what, rc,
                 nori_strerror(rc));
    const char *msg = nori_last_error();
    print_message("%s: %s\n", what, msg);
    if (strstr(msg, "OOM") == NULL || strstr(msg, "maxmemory") == NULL)
        fail_msg("%s: the message does not carry the server's OOM text: %s", what, msg);
}

static void test_out_of_memory(void **state)
{
    (void)state;
    char url[400];
    snprintf(url, sizeof url, "%s?timeout_ms=1000", server->url);
    nori_backend *b;
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = b;
    nori_http_cache *cache;
    assert_nori(nori_http_cache_new(&o, &cache), NORI_OK);
    int runs = 0;

    /* Before the limit: a value, a counter and a cached page. */
    assert_nori(nori_backend_set(b, "oom:kept", "still here", 10, 0), NORI_OK);
    int64_t n;
    assert_nori(nori_backend_incr(b, "oom:counter", 0, &n), NORI_OK);
    assert_int_equal(serve(cache, "/old", &runs, "page /old, run 1"), NORI_HTTP_MISS);
    assert_int_equal(serve(cache, "/old", &runs, "page /old, run 1"), NORI_HTTP_HIT);

    /* 2 MB of filler, then a 1 MB limit with no eviction: every write is
     * refused from now on, whatever the server's baseline use. */
    redisContext *c = nori_test_redis_connect(server);
    assert_non_null(c);
    size_t filler_len = 2u << 20;
    char *filler = malloc(filler_len);
    assert_non_null(filler);
    memset(filler, 'f', filler_len);
    redisReply *r = redisCommand(c, "SET oom:filler %b", filler, filler_len);
    assert_true(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    free(filler);
    raw_ok(c, "CONFIG SET maxmemory-policy %s", "noeviction");
    raw_ok(c, "CONFIG SET maxmemory %s", "1mb");

    /* Writes: refused with the server's text, nothing written. */
    expect_oom(nori_backend_set(b, "oom:new", "x", 1, 60), "set");
    expect_oom(nori_backend_incr(b, "oom:counter", 0, &n), "incr");
    expect_oom(nori_backend_incr(b, "oom:fresh-counter", 60, &n), "incr (new key)");
    nori_buf out;
    expect_oom(nori_backend_atomic_update(b, "oom:upd", nori_test_add_one, NULL, 0, &out), "atomic_update");
    nori_buf v;
    assert_nori(nori_backend_get(b, "oom:new", &v), NORI_MISS);
    assert_nori(nori_backend_get(b, "oom:upd", &v), NORI_MISS);
    assert_nori(nori_backend_get(b, "oom:counter", &v), NORI_OK);
    assert_string_equal(v.data, "1"); /* the refused incr did not count */
    nori_buf_free(&v);

    /* Reads and PING still work. */
    assert_nori(nori_backend_get(b, "oom:kept", &v), NORI_OK);
    assert_string_equal(v.data, "still here");
    nori_buf_free(&v);
    assert_nori(nori_backend_verify(b), NORI_OK);

    /* The HTTP layer still serves: the stored page is a hit; a new page is
     * the handler's response each time, its refused store counted. */
    nori_http_cache_stats before, after;
    nori_http_cache_get_stats(cache, &before);
    assert_int_equal(serve(cache, "/old", &runs, "page /old, run 1"), NORI_HTTP_HIT);
    assert_int_equal(serve(cache, "/new", &runs, "page /new, run 2"), NORI_HTTP_MISS);
    assert_int_equal(serve(cache, "/new", &runs, "page /new, run 3"), NORI_HTTP_MISS);
    nori_http_cache_get_stats(cache, &after);
    assert_int_equal(after.hits, before.hits + 1);
    assert_int_equal(after.stores, before.stores);
    assert_int_equal(after.errors, before.errors + 2);

    /* The limit lifted: the same handles write again. */
    raw_ok(c, "CONFIG SET maxmemory %s", "0");
    assert_nori(nori_backend_set(b, "oom:new", "x", 1, 60), NORI_OK);
    assert_nori(nori_backend_incr(b, "oom:counter", 0, &n), NORI_OK);
    assert_int_equal(n, 2);
    assert_int_equal(serve(cache, "/new", &runs, "page /new, run 4"), NORI_HTTP_MISS);
    assert_int_equal(serve(cache, "/new", &runs, "page /new, run 4"), NORI_HTTP_HIT);

    redisFree(c);
    nori_http_cache_free(cache);
    nori_backend_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
