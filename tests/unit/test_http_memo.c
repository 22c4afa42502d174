// SPDX-License-Identifier: MIT
/*
 * The decoded-entry memo (src/http/memo.c): a hit on a JSON entry copies an
 * earlier decode, but only when key and raw bytes both match what the
 * backend returned now. These tests check that it never serves a stale or a
 * foreign entry: bytes rewritten by another client (also with the same
 * length), a different key holding equal bytes, keys sharing a slot, many
 * threads alternating values; and, on a private redis-server (plain and
 * with the near cache), that a response cache answers another client's
 * rewrite of its entry with the new response.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis_server.h"
#include "test_support.h"

#include "clock.h"
#include "http/internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* When every entry of a test was stored: one instant for all, so that
 * entries with bodies of equal length have encodings of equal length
 * (stored_at is written as a decimal of varying length, e.g. "...1.5" or
 * "...1.2299999"). */
static int64_t stored_at_ms(void)
{
    static int64_t at;
    if (at == 0)
        at = nori__wall_ms();
    return at;
}

/* A JSON entry (the Redis form) for body, stored at stored_at_ms(), fresh
 * for 60 s. */
static nori_buf entry(const char *body)
{
    nori_http_response r;
    nori_http_response_init(&r);
    assert_nori(nori_http_response_set_media_type(&r, "text/plain"), NORI_OK);
    char disp[48];
    snprintf(disp, sizeof disp, "%.40s", body);
    assert_nori(nori_http_response_add_header(&r, "Content-Disposition", disp), NORI_OK);
    assert_nori(nori_http_response_set_body(&r, body, strlen(body)), NORI_OK);
    assert_nori(nori__http_ensure_etag(&r), NORI_OK);
    nori__entry_meta m = NORI__META(stored_at_ms(), 60000);
    nori_buf out;
    assert_nori(nori__entry_encode_json_meta(&r, &m, &out), NORI_OK);
    nori_http_response_clear(&r);
    return out;
}

static nori_buf copy_buf(const nori_buf *b)
{
    nori_buf c = {malloc(b->len + 1), b->len};
    assert_non_null(c.data);
    memcpy(c.data, b->data, b->len);
    c.data[b->len] = '\0';
    return c;
}

/* Decodes raw for key through m and checks the result is body's entry, and
 * exactly what a plain decode of the same bytes gives. */
static void expect_decode(nori__memo *m, const char *key, const nori_buf *raw, const char *body)
{
    nori_buf in = copy_buf(raw), in2 = copy_buf(raw);
    nori_http_response r, plain;
    nori_http_response_init(&r);
    nori_http_response_init(&plain);
    nori__entry_meta meta, pmeta;
    assert_nori(nori__memo_decode(m, key, &in, &r, &meta), NORI_OK);
    assert_null(in.data);
    assert_nori(nori__entry_decode_meta(&in2, false, &plain, &pmeta), NORI_OK);
    assert_int_equal(r.body_len, strlen(body));
    assert_memory_equal(r.body, body, r.body_len);
    char disp[48];
    snprintf(disp, sizeof disp, "%.40s", body);
    assert_string_equal(nori_http_response_header(&r, "Content-Disposition"), disp);
    assert_int_equal(r.status, plain.status);
    assert_string_equal(r.media_type, plain.media_type);
    assert_int_equal(r.n_headers, plain.n_headers);
    for (size_t i = 0; i < r.n_headers; i++) {
        assert_string_equal(r.headers[i].name, plain.headers[i].name);
        assert_string_equal(r.headers[i].value, plain.headers[i].value);
    }
    assert_true(meta.stored_at_ms == pmeta.stored_at_ms && meta.fresh_ms == pmeta.fresh_ms);
    nori_http_response_clear(&r);
    nori_http_response_clear(&plain);
}

static nori__memo_stats stats(nori__memo *m)
{
    nori__memo_stats s;
    nori__memo_get_stats(m, &s);
    return s;
}

static void test_same_bytes_hit(void **state)
{
    (void)state;
    nori__memo *m;
    assert_nori(nori__memo_new(NORI__MEMO_MAX_BYTES, &m), NORI_OK);
    nori_buf a = entry("alpha");
    expect_decode(m, "view:/a:", &a, "alpha");
    assert_int_equal(stats(m).hits, 0);
    assert_int_equal(stats(m).stores, 1);
    expect_decode(m, "view:/a:", &a, "alpha");
    expect_decode(m, "view:/a:", &a, "alpha");
    assert_int_equal(stats(m).hits, 2);
    assert_true(stats(m).bytes > a.len);
    nori_buf_free(&a);
    nori__memo_free(m);
}

/* Another client rewrote the entry: other bytes, even of the same length
 * (the bodies differ in one byte), are decoded afresh, never answered from
 * the memo of the old ones. */
static void test_rewritten_bytes(void **state)
{
    (void)state;
    nori__memo *m;
    assert_nori(nori__memo_new(NORI__MEMO_MAX_BYTES, &m), NORI_OK);
    nori_buf a = entry("version-1"), b = entry("version-2"), c = entry("a longer version 3");
    assert_int_equal(a.len, b.len);
    for (int round = 0; round < 3; round++) {
        expect_decode(m, "view:/p:", &a, "version-1");
        expect_decode(m, "view:/p:", &a, "version-1");
        expect_decode(m, "view:/p:", &b, "version-2");
        expect_decode(m, "view:/p:", &b, "version-2");
        expect_decode(m, "view:/p:", &c, "a longer version 3");
    }
    /* Each value's second read was a hit, the changes were not. */
    assert_int_equal(stats(m).hits, 6);
    nori_buf_free(&a);
    nori_buf_free(&b);
    nori_buf_free(&c);
    nori__memo_free(m);
}

/* A different key holding equal bytes does not use the first key's memo;
 * and with many more keys than slots, each key's answer is its own. */
static void test_foreign_key(void **state)
{
    (void)state;
    nori__memo *m;
    assert_nori(nori__memo_new(NORI__MEMO_MAX_BYTES, &m), NORI_OK);
    nori_buf a = entry("shared bytes");
    expect_decode(m, "view:/one:", &a, "shared bytes");
    expect_decode(m, "view:/two:", &a, "shared bytes");
    assert_int_equal(stats(m).hits, 0); /* the second key's first read is not a hit */
    enum { N = 700 }; /* far more keys than slots: slots are shared */
    static nori_buf vals[N];
    char key[64], body[64];
    for (int i = 0; i < N; i++) {
        snprintf(body, sizeof body, "body of key %d", i);
        vals[i] = entry(body);
    }
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < N; i++) {
            snprintf(key, sizeof key, "view:/k%d:", i);
            snprintf(body, sizeof body, "body of key %d", i);
            expect_decode(m, key, &vals[i], body);
            /* The neighbour's bytes under this key: the neighbour's body
             * (decoding is a function of the bytes), whatever the slot held. */
            snprintf(body, sizeof body, "body of key %d", (i + 1) % N);
            expect_decode(m, key, &vals[(i + 1) % N], body);
        }
    for (int i = 0; i < N; i++)
        nori_buf_free(&vals[i]);
    nori_buf_free(&a);
    assert_true(stats(m).bytes <= NORI__MEMO_MAX_BYTES);
    nori__memo_free(m);
}

static void test_bounds(void **state)
{
    (void)state;
    nori__memo *m;
    assert_nori(nori__memo_new(64 * 1024, &m), NORI_OK);
    /* Over max / 8: decoded every time, never kept. */
    char *big = malloc(20000);
    memset(big, 'x', 19999);
    big[19999] = '\0';
    nori_buf b = entry(big);
    expect_decode(m, "view:/big:", &b, big);
    expect_decode(m, "view:/big:", &b, big);
    assert_int_equal(stats(m).stores, 0);
    assert_int_equal(stats(m).hits, 0);
    assert_int_equal(stats(m).bytes, 0);
    nori_buf_free(&b);
    free(big);
    /* Many small ones: the total stays under the bound. */
    char key[32], body[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof key, "view:/s%d:", i);
        snprintf(body, sizeof body, "small %d", i);
        nori_buf s = entry(body);
        expect_decode(m, key, &s, body);
        nori_buf_free(&s);
        assert_true(stats(m).bytes <= 64 * 1024);
    }
    /* Garbage is an error, never a memo entry. */
    nori_buf bad = {strdup("{\"status_code\": 200}"), 20};
    nori_http_response r;
    nori_http_response_init(&r);
    nori__entry_meta meta;
    assert_nori(nori__memo_decode(m, "view:/bad:", &bad, &r, &meta), NORI_ETYPE);
    assert_null(bad.data);
    assert_null(r.body);
    nori__memo_free(m);
}

/* Threads read one hot key (and a few others) while its value alternates
 * between two entries of the same length: every answer is the decode of
 * the bytes that thread passed in. TSan: the concurrency label. */
typedef struct {
    nori__memo *m;
    const nori_buf *vals;
    unsigned seed;
} thread_arg;

static void *reader(void *p)
{
    thread_arg *a = p;
    static const char *const bodies[] = {"hot value A", "hot value B"};
    for (int i = 0; i < 3000; i++) {
        a->seed = a->seed * 1103515245u + 12345u;
        int which = (a->seed >> 16) & 1;
        char key[32];
        snprintf(key, sizeof key, "view:/t%u:", (a->seed >> 20) % 3);
        nori_buf in = copy_buf(&a->vals[which]);
        nori_http_response r;
        nori_http_response_init(&r);
        nori__entry_meta meta;
        if (nori__memo_decode(a->m, key, &in, &r, &meta) != NORI_OK ||
            r.body_len != strlen(bodies[which]) ||
            memcmp(r.body, bodies[which], r.body_len) != 0 ||
            strcmp(nori_http_response_header(&r, "Content-Disposition"), bodies[which]) != 0) {
            nori_http_response_clear(&r);
            return (void *)1;
        }
        nori_http_response_clear(&r);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    nori__memo *m;
    assert_nori(nori__memo_new(NORI__MEMO_MAX_BYTES, &m), NORI_OK);
    nori_buf vals[2] = {entry("hot value A"), entry("hot value B")};
    assert_int_equal(vals[0].len, vals[1].len);
    pthread_t t[8];
    thread_arg args[8];
    for (unsigned i = 0; i < 8; i++) {
        args[i] = (thread_arg){m, vals, i * 7919u + 1};
        assert_int_equal(pthread_create(&t[i], NULL, reader, &args[i]), 0);
    }
    int bad = 0;
    for (int i = 0; i < 8; i++) {
        void *res;
        pthread_join(t[i], &res);
        bad += res != NULL;
    }
    assert_int_equal(bad, 0);
    assert_true(stats(m).hits > 0);
    nori_buf_free(&vals[0]);
    nori_buf_free(&vals[1]);
    nori__memo_free(m);
}

/* ------------------------------------------- through a cache on Redis */

typedef struct {
    nori_test_redis *server;
    nori_backend *b;
    nori_http_cache *c;
    nori_backend *other; /* another client of the same Redis (no near cache) */
    int near;
} fixture;

static int handler(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)ud;
    char body[128];
    snprintf(body, sizeof body, "handler body for %s", req->path);
    (void)nori_http_response_set_media_type(resp, "text/plain");
    return nori_http_response_set_body(resp, body, strlen(body));
}

static int setup_common(void **state, int near)
{
    fixture *f = calloc(1, sizeof *f);
    f->server = nori_test_redis_start(NULL);
    assert_nori(nori_redis_backend_new(f->server->url, &f->b), NORI_OK);
    if (near)
        assert_nori(nori_redis_backend_enable_near(f->b, 1000, 0, 0), NORI_OK);
    f->near = near;
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = f->b;
    assert_nori(nori_http_cache_new(&o, &f->c), NORI_OK);
    assert_nori(nori_redis_backend_new(f->server->url, &f->other), NORI_OK);
    *state = f;
    return 0;
}

static int setup_plain(void **state)
{
    return setup_common(state, 0);
}

static int setup_near(void **state)
{
    return setup_common(state, 1);
}

static int teardown(void **state)
{
    fixture *f = *state;
    nori_backend_free(f->other);
    nori_http_cache_free(f->c);
    nori_backend_free(f->b);
    nori_test_redis_stop(f->server);
    free(f);
    return 0;
}

static void other_set(fixture *f, const char *key, const char *val, size_t len)
{
    assert_nori(nori_backend_set(f->other, key, val, len, 60), NORI_OK);
}

/* Serves GET path until the body is `want` (at once on plain Redis; with
 * the near cache, once the invalidation has arrived: bounded by 3 s). Every
 * answer on the way must be `want` or `old`, and a HIT. */
static void expect_served(fixture *f, const char *path, const char *want, const char *old)
{
    nori_http_request rq = {"GET", path, "", NULL, NULL, NULL, 0, NULL};
    for (int i = 0;; i++) {
        nori_http_response r;
        nori_http_response_init(&r);
        assert_nori(nori_http_cache_serve(f->c, &rq, handler, NULL, &r), NORI_OK);
        assert_int_equal(r.origin, NORI_HTTP_HIT);
        bool is_want = r.body_len == strlen(want) && memcmp(r.body, want, r.body_len) == 0;
        if (!is_want) {
            if (old == NULL || !f->near)
                print_error("%s: got %.*s, want %s\n", path, (int)r.body_len, r.body, want);
            assert_true(old != NULL && f->near && i < 3000);
            const char *o = old != NULL ? old : "";
            assert_int_equal(r.body_len, strlen(o));
            assert_memory_equal(r.body, o, r.body_len);
        }
        nori_http_response_clear(&r);
        if (is_want)
            return;
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void test_cache_other_client(void **state)
{
    fixture *f = *state;
    nori__memo *m = nori__http_cache_memo(f->c);
    nori_http_request rq = {"GET", "/page", "", NULL, NULL, NULL, 0, NULL};
    nori_http_response r;
    nori_http_response_init(&r);
    assert_nori(nori_http_cache_serve(f->c, &rq, handler, NULL, &r), NORI_OK);
    assert_int_equal(r.origin, NORI_HTTP_MISS);
    nori_http_response_clear(&r);
    const char *h = "handler body for /page";
    expect_served(f, "/page", h, NULL);
    uint64_t hits0 = stats(m).hits;
    expect_served(f, "/page", h, NULL);
    expect_served(f, "/page", h, NULL);
    assert_true(stats(m).hits >= hits0 + 2); /* the memo is in use */
    nori_http_cache_stats cs;
    nori_http_cache_get_stats(f->c, &cs);
    assert_int_equal(cs.memo_hits, stats(m).hits);
    assert_int_equal(cs.memo_bytes, stats(m).bytes);
    assert_true(cs.memo_bytes > 0);

    /* Another client rewrites the entry in Redis. */
    char key[NORI_MAX_KEY_LEN + 1], key2[NORI_MAX_KEY_LEN + 1];
    assert_nori(nori_http_cache_key(f->c, &rq, key, sizeof key), NORI_OK);
    nori_buf v = entry("rewritten by another client");
    other_set(f, key, v.data, v.len);
    nori_buf_free(&v);
    expect_served(f, "/page", "rewritten by another client", h);
    expect_served(f, "/page", "rewritten by another client", NULL);
    /* Same length, one byte different. */
    v = entry("rewritten by another clienT");
    other_set(f, key, v.data, v.len);
    nori_buf_free(&v);
    expect_served(f, "/page", "rewritten by another clienT", "rewritten by another client");

    /* A different key holding equal bytes: its own decode, its own answer. */
    nori_http_request rq2 = {"GET", "/copy", "", NULL, NULL, NULL, 0, NULL};
    assert_nori(nori_http_cache_key(f->c, &rq2, key2, sizeof key2), NORI_OK);
    assert_nori(nori_backend_get(f->b, key, &v), NORI_OK);
    other_set(f, key2, v.data, v.len);
    nori_buf_free(&v);
    uint64_t hits1 = stats(m).hits, misses1 = stats(m).misses;
    expect_served(f, "/copy", "rewritten by another clienT", NULL);
    assert_int_equal(stats(m).hits, hits1);
    assert_int_equal(stats(m).misses, misses1 + 1);
    /* ... and rewriting one key leaves the other's answer alone. */
    v = entry("only the copy changed");
    other_set(f, key2, v.data, v.len);
    nori_buf_free(&v);
    expect_served(f, "/copy", "only the copy changed", "rewritten by another clienT");
    expect_served(f, "/page", "rewritten by another clienT", NULL);
}

int main(void)
{
    const struct CMUnitTest memo_cases[] = {
        cmocka_unit_test(test_same_bytes_hit),
        cmocka_unit_test(test_rewritten_bytes),
        cmocka_unit_test(test_foreign_key),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_threads),
    };
    const struct CMUnitTest redis_cases[] = {
        cmocka_unit_test(test_cache_other_client),
    };
    int failed = cmocka_run_group_tests_name("memo", memo_cases, NULL, NULL);
    failed += cmocka_run_group_tests_name("plain redis", redis_cases, setup_plain, teardown);
    failed += cmocka_run_group_tests_name("redis + near cache", redis_cases, setup_near,
                                          teardown);
    return failed;
}
