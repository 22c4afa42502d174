// SPDX-License-Identifier: MIT
/*
 * End to end: the real nori-demo binary, started as a child process, and a
 * real HTTP client over TCP. Runs on whatever backend the environment names
 * (CACHE_BACKEND=redis REDIS_URL=... for Redis); every run uses its own key
 * prefix, so runs sharing a Redis do not see each other's entries.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_support.h"

#include "demo_fixture.h"
#include "http_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static test_demo_fixture fx;

#ifdef NORI_DEMO_ON_REDIS
/* This build of the suite runs the demo on a private redis-server with the
 * default key prefix, and adds the Redis checks at the end of the file.
 * NORI_TEST_TOPOLOGY=cluster|sentinel runs it on that set-up instead
 * (test_http_demo_cluster, test_http_demo_sentinel). */
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "redis_topology.h"
#endif

static int group_setup(void **state)
{
    (void)state;
#ifdef NORI_DEMO_ON_REDIS
    return test_demo_fixture_start(&fx, NORI_DEMO_EXE, "e2e", "view", true);
#else
    return test_demo_fixture_start(&fx, NORI_DEMO_EXE, "e2e", NULL, false);
#endif
}

static int group_teardown(void **state)
{
    (void)state;
    test_demo_fixture_stop(&fx);
    return 0;
}

/* GET with optional extra headers; asserts the transport worked. */
static test_http_response get(const char *target, const char *headers)
{
    return test_demo_fixture_get(&fx, target, headers);
}

/* The X-Cache header ("HIT", "MISS") or "-" when absent. */
static const char *xcache(const test_http_response *r)
{
    static char buf[16];
    return test_http_header(r, "X-Cache", buf, sizeof buf) ? buf : "-";
}

static uint64_t metric(const char *name)
{
    test_http_response r = get("/metrics", NULL);
    assert_int_equal(r.status, 200);
    char pat[128];
    snprintf(pat, sizeof pat, "\n%s ", name);
    const char *p = strstr(r.body, pat);
    if (p == NULL)
        print_error("metric %s missing from:\n%s\n", name, r.body);
    assert_non_null(p);
    uint64_t v = strtoull(p + strlen(pat), NULL, 10);
    test_http_response_free(&r);
    return v;
}

/* 1 when /metrics has no series named `name` (with or without labels). */
static int metric_absent(const char *name)
{
    test_http_response r = get("/metrics", NULL);
    assert_int_equal(r.status, 200);
    char plain[128], labelled[128];
    snprintf(plain, sizeof plain, "\n%s ", name);
    snprintf(labelled, sizeof labelled, "\n%s{", name);
    int absent = strstr(r.body, plain) == NULL && strstr(r.body, labelled) == NULL;
    test_http_response_free(&r);
    return absent;
}

static void test_miss_then_hit(void **state)
{
    (void)state;
    test_http_response a = get("/dashboard", NULL), b = get("/dashboard", NULL);
    assert_int_equal(a.status, 200);
    assert_int_equal(b.status, 200);
    assert_string_equal(xcache(&a), "MISS");
    assert_string_equal(xcache(&b), "HIT");
    assert_int_equal(a.body_len, b.body_len);
    assert_memory_equal(a.body, b.body, a.body_len);
    assert_non_null(strstr(a.body, "\"by_status\""));
    char ct[64];
    assert_string_equal(test_http_header(&b, "Content-Type", ct, sizeof ct), "application/json");
    test_http_response_free(&a);
    test_http_response_free(&b);
}

static void test_db_counter(void **state)
{
    (void)state;
    test_http_response r = get("/dashboard", NULL); /* make sure it is cached */
    test_http_response_free(&r);
    uint64_t q0 = metric("nori_db_queries_total");
    uint64_t h0 = metric("nori_cache_hits_total");
    for (int i = 0; i < 5; i++) {
        r = get("/dashboard", NULL);
        assert_string_equal(xcache(&r), "HIT");
        test_http_response_free(&r);
    }
    assert_int_equal(metric("nori_db_queries_total"), q0);
    assert_int_equal(metric("nori_cache_hits_total"), h0 + 5);
    for (int i = 0; i < 3; i++) {
        r = get("/dashboard/uncached", NULL);
        assert_int_equal(r.status, 200);
        assert_string_equal(xcache(&r), "-"); /* not a cached route */
        test_http_response_free(&r);
    }
    assert_int_equal(metric("nori_db_queries_total"), q0 + 3);
    /* A new products page queries once, then never again within the TTL. */
    for (int i = 0; i < 3; i++) {
        r = get("/products?page=17", NULL);
        assert_string_equal(xcache(&r), i == 0 ? "MISS" : "HIT");
        test_http_response_free(&r);
    }
    assert_int_equal(metric("nori_db_queries_total"), q0 + 4);
}

static void test_post_not_cached(void **state)
{
    (void)state;
    uint64_t q0 = metric("nori_db_queries_total");
    uint64_t s0 = metric("nori_cache_stores_total");
    for (int i = 0; i < 2; i++) {
        test_http_response r;
        assert_int_equal(test_http_once(fx.demo.port, "POST", "/products?page=33", NULL, "x=1", &r), 0);
        assert_int_equal(r.status, 201); /* a write (issue 11): it invalidates /products */
        assert_string_equal(xcache(&r), "BYPASS");
        test_http_response_free(&r);
    }
    assert_int_equal(metric("nori_db_queries_total"), q0 + 2);
    assert_int_equal(metric("nori_cache_stores_total"), s0);
    /* ...and the POSTs left nothing for a GET to hit. */
    test_http_response r = get("/products?page=33", NULL);
    assert_string_equal(xcache(&r), "MISS");
    test_http_response_free(&r);
}

static void test_fail_never_cached(void **state)
{
    (void)state;
    uint64_t s0 = metric("nori_cache_stores_total");
    for (int i = 0; i < 3; i++) {
        test_http_response r = get("/fail", NULL);
        assert_int_equal(r.status, 500);
        assert_string_equal(xcache(&r), "MISS");
        test_http_response_free(&r);
    }
    assert_int_equal(metric("nori_cache_stores_total"), s0);
}

static void test_report_pdf(void **state)
{
    (void)state;
    test_http_response a = get("/report.pdf", NULL), b = get("/report.pdf", NULL);
    assert_string_equal(xcache(&a), "MISS");
    assert_string_equal(xcache(&b), "HIT");
    assert_int_equal(a.body_len, b.body_len);
    assert_memory_equal(a.body, b.body, a.body_len);
    assert_memory_equal(b.body, "%PDF-1.4\n%", 10);
    for (int i = 0; i < 1024; i++)
        assert_int_equal((unsigned char)b.body[10 + i], i & 255);
    char v[128];
    assert_string_equal(test_http_header(&b, "Content-Type", v, sizeof v), "application/pdf");
    assert_string_equal(test_http_header(&b, "Content-Disposition", v, sizeof v),
                        "attachment; filename=\"report.pdf\"");
    test_http_response_free(&a);
    test_http_response_free(&b);
}

/* Sends `target` with `headers` and checks the X-Cache and the body start. */
static void expect(const char *target, const char *headers, const char *x, const char *body)
{
    test_http_response r = get(target, headers);
    assert_int_equal(r.status, 200);
    if (strcmp(xcache(&r), x) != 0)
        print_error("%s [%s]: X-Cache %s, expected %s\n", target, headers ? headers : "",
                    xcache(&r), x);
    assert_string_equal(xcache(&r), x);
    if (body != NULL && strncmp(r.body, body, strlen(body)) != 0)
        print_error("%s: body %s, expected %s\n", target, r.body, body);
    if (body != NULL)
        assert_memory_equal(r.body, body, strlen(body));
    test_http_response_free(&r);
}

static void test_separate_slots(void **state)
{
    (void)state;
    expect("/products?page=1", NULL, "MISS", "{\"page\":1,");
    expect("/products?page=2", NULL, "MISS", "{\"page\":2,");
    expect("/products?page=1", NULL, "HIT", "{\"page\":1,");
    expect("/products?page=2", NULL, "HIT", "{\"page\":2,");

    expect("/greeting", "Accept-Language: fr-FR\r\n", "MISS", "Bonjour!");
    expect("/greeting", "Accept-Language: de\r\n", "MISS", "Hallo!");
    expect("/greeting", NULL, "MISS", "Hello!");
    expect("/greeting", "accept-language: fr-FR\r\n", "HIT", "Bonjour!");
    expect("/greeting", "ACCEPT-LANGUAGE: de\r\n", "HIT", "Hallo!");
    expect("/greeting", NULL, "HIT", "Hello!");
    test_http_response r = get("/greeting", "Accept-Language: de\r\n");
    char v[32];
    assert_string_equal(test_http_header(&r, "Content-Language", v, sizeof v), "de");
    test_http_response_free(&r);

    expect("/me", "X-User: alice\r\n", "MISS", "you are alice");
    expect("/me", "X-User: bob\r\n", "MISS", "you are bob");
    expect("/me", "X-User: alice\r\n", "HIT", "you are alice");
    expect("/me", "X-User: bob\r\n", "HIT", "you are bob");
    /* A user name with the key separator gets its own slot too. */
    expect("/me", "X-User: alice:/me\r\n", "MISS", "you are alice:/me");
    /* Anonymous requests are not cached at all. */
    expect("/me", NULL, "BYPASS", "you are anonymous");
    expect("/me", NULL, "BYPASS", "you are anonymous");
}

/* What a route knows, told to the caches downstream: /greeting varies on
 * Accept-Language and says so; /me is one user's page (a key function) and
 * says private, hit or miss, so that a CDN in front never serves it to
 * another user. */
static void test_downstream_headers(void **state)
{
    (void)state;
    char v[64];
    for (int i = 0; i < 2; i++) {
        test_http_response r = get("/greeting", "Accept-Language: es\r\n");
        assert_string_equal(test_http_header(&r, "X-Cache", v, sizeof v), i ? "HIT" : "MISS");
        assert_string_equal(test_http_header(&r, "Vary", v, sizeof v), "accept-language");
        test_http_response_free(&r);
        r = get("/me", "X-User: carol\r\n");
        assert_string_equal(test_http_header(&r, "X-Cache", v, sizeof v), i ? "HIT" : "MISS");
        assert_string_equal(test_http_header(&r, "Cache-Control", v, sizeof v), "private");
        test_http_response_free(&r);
    }
    test_http_response r = get("/me", NULL);
    assert_string_equal(test_http_header(&r, "Cache-Control", v, sizeof v), "private");
    test_http_response_free(&r);
    /* A shared page says nothing of the kind. */
    r = get("/dashboard", NULL);
    assert_null(test_http_header(&r, "Cache-Control", v, sizeof v));
    test_http_response_free(&r);
}

static void test_login_throttle(void **state)
{
    (void)state;
    char body[160];
    snprintf(body, sizeof body, "user=carol%%40%s&password=x", fx.prefix);
    for (int i = 1; i <= 7; i++) {
        test_http_response r;
        assert_int_equal(test_http_once(fx.demo.port, "POST", "/login", NULL, body, &r), 0);
        assert_int_equal(r.status, i <= 5 ? 200 : 429);
        if (i <= 5) {
            char want[32];
            snprintf(want, sizeof want, "attempt %d of 5", i);
            assert_memory_equal(r.body, want, strlen(want));
        }
        test_http_response_free(&r);
    }
    /* Another user has their own counter; the query string works too. */
    char target[128];
    snprintf(target, sizeof target, "/login?user=dave-%s", fx.prefix);
    test_http_response r;
    assert_int_equal(test_http_once(fx.demo.port, "POST", target, NULL, "", &r), 0);
    assert_int_equal(r.status, 200);
    test_http_response_free(&r);
    assert_int_equal(test_http_once(fx.demo.port, "POST", "/login", NULL, "password=x", &r), 0);
    assert_int_equal(r.status, 400);
    test_http_response_free(&r);
    assert_int_equal(test_http_once(fx.demo.port, "GET", "/login", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 405);
    test_http_response_free(&r);
}

/* Two requests on one TCP connection, no Connection: close: the adapter
 * queues on the second call of the access handler. */
static void test_keep_alive(void **state)
{
    (void)state;
    int fd = test_http_connect(fx.demo.port);
    assert_true(fd >= 0);
    static const char *targets[] = {"/hello", "/dashboard", "/dashboard", "/report.pdf", "/nope"};
    for (int i = 0; i < 5; i++) {
        test_http_response r;
        assert_int_equal(test_http_request(fd, "GET", targets[i], NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, i == 4 ? 404 : 200);
        char v[32];
        const char *conn = test_http_header(&r, "Connection", v, sizeof v);
        if (conn != NULL)
            assert_string_not_equal(conn, "close");
        test_http_response_free(&r);
    }
    /* A POST with a body on the same connection, then a GET again. */
    char body[160];
    snprintf(body, sizeof body, "user=erin-%s", fx.prefix);
    test_http_response r;
    assert_int_equal(test_http_request(fd, "POST", "/login", NULL, body, strlen(body), &r), 0);
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.body, "attempt 1 of 5", 14);
    test_http_response_free(&r);
    assert_int_equal(test_http_request(fd, "GET", "/hello", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello\n");
    test_http_response_free(&r);
    close(fd);
}

static void test_large_body_refused(void **state)
{
    (void)state;
    size_t n = 100 * 1024;
    char *big = malloc(n + 1);
    memset(big, 'a', n);
    memcpy(big, "user=", 5);
    big[n] = '\0';
    int fd = test_http_connect(fx.demo.port);
    assert_true(fd >= 0);
    test_http_response r;
    assert_int_equal(test_http_request(fd, "POST", "/login", NULL, big, n, &r), 0);
    assert_int_equal(r.status, 413);
    test_http_response_free(&r);
    close(fd);
    free(big);
}

/* A client that disconnects mid-upload: the server frees that request's
 * state (the sanitizer build's clean stop proves it) and keeps serving. */
static void test_aborted_upload(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        int fd = test_http_connect(fx.demo.port);
        assert_true(fd >= 0);
        static const char partial[] = "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                      "Content-Type: application/x-www-form-urlencoded\r\n"
                                      "Content-Length: 5000\r\n\r\nuser=frank&pad=xxxxxxxx";
        assert_int_equal(send(fd, partial, sizeof partial - 1, MSG_NOSIGNAL),
                         (ssize_t)(sizeof partial - 1));
        usleep(50 * 1000); /* let the server read the part and call the handler */
        close(fd);
    }
    test_http_response r = get("/hello", NULL);
    assert_int_equal(r.status, 200);
    test_http_response_free(&r);
}

/* Issue 10 item 12: HEAD is answered from the GET entry (same headers, no
 * body, the handler does not run) and never stores. */
static void test_head(void **state)
{
    (void)state;
    int fd = test_http_connect(fx.demo.port);
    assert_true(fd >= 0);
    test_http_response g, h, g2;
    assert_int_equal(test_http_request(fd, "GET", "/report.pdf", NULL, NULL, 0, &g), 0);
    uint64_t q0 = metric("nori_db_queries_total");
    assert_int_equal(test_http_request(fd, "HEAD", "/report.pdf", NULL, NULL, 0, &h), 0);
    assert_int_equal(h.status, 200);
    assert_string_equal(xcache(&h), "HIT");
    assert_int_equal(h.body_len, 0);
    char a[64], b[64];
    assert_string_equal(test_http_header(&h, "Content-Length", a, sizeof a),
                        test_http_header(&g, "Content-Length", b, sizeof b));
    assert_string_equal(test_http_header(&h, "Content-Type", a, sizeof a), "application/pdf");
    assert_non_null(test_http_header(&h, "Content-Disposition", a, sizeof a));
    /* The connection is still in step: the next GET gets its own answer. */
    assert_int_equal(test_http_request(fd, "GET", "/report.pdf", NULL, NULL, 0, &g2), 0);
    assert_int_equal(g2.body_len, g.body_len);
    test_http_response_free(&g);
    test_http_response_free(&h);
    test_http_response_free(&g2);
    /* A HEAD that misses runs the handler and stores nothing. */
    assert_int_equal(test_http_request(fd, "HEAD", "/products?page=55", NULL, NULL, 0, &h), 0);
    assert_string_equal(xcache(&h), "MISS");
    test_http_response_free(&h);
    close(fd);
    test_http_response r = get("/products?page=55", NULL);
    assert_string_equal(xcache(&r), "MISS");
    test_http_response_free(&r);
    assert_int_equal(metric("nori_db_queries_total"), q0 + 2);
}

static void test_metrics(void **state)
{
    (void)state;
    test_http_response r = get("/metrics", NULL);
    assert_int_equal(r.status, 200);
    /* Evictions are the memory backend's (Redis evicts on the server). */
    static const char *names[] = {"nori_cache_hits_total",   "nori_cache_misses_total",
                                  "nori_cache_stores_total", "nori_cache_errors_total",
                                  "nori_db_queries_total",
#ifndef NORI_DEMO_ON_REDIS
                                  "nori_cache_evictions_total"
#endif
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char line[96];
        snprintf(line, sizeof line, "# TYPE %s counter\n%s ", names[i], names[i]);
        assert_non_null(strstr(r.body, line));
    }
    test_http_response_free(&r);
    assert_true(metric("nori_cache_hits_total") >= 10);
    assert_int_equal(metric("nori_cache_errors_total"), 0);
#ifdef NORI_DEMO_ON_REDIS
    /* Only the series that mean something on Redis. */
    assert_true(metric_absent("nori_cache_bytes"));
    assert_true(metric_absent("nori_cache_max_bytes"));
    assert_true(metric_absent("nori_cache_entries"));
    assert_int_equal(metric("nori_redis_circuit_state{state=\"closed\"}"), 1);
    assert_int_equal(metric("nori_redis_circuit_state{state=\"open\"}"), 0);
    if (getenv("CACHE_NEAR_MAX_KEYS") != NULL) {
        /* The near cache is on: hits of the cached routes were served locally. */
        assert_true(metric("nori_near_hits_total") > 0);
        assert_true(metric("nori_near_entries") > 0);
        assert_int_equal(metric("nori_near_active"), 1);
    }
#else
    /* The memory backend holds the entries cached so far, within its bound. */
    uint64_t bytes = metric("nori_cache_bytes"), max_bytes = metric("nori_cache_max_bytes");
    assert_true(bytes > 0);
    assert_true(max_bytes == 0 || bytes <= max_bytes);
    assert_true(metric_absent("nori_redis_circuit_opens_total"));
    assert_true(metric_absent("nori_redis_circuit_state"));
#endif
#ifdef NORI_DEMO_ON_REDIS
    assert_int_equal(metric("nori_redis_circuit_opens_total"), 0);
#endif
}

#ifdef NORI_DEMO_ON_REDIS
/* A raw connection to the master that holds `key` (on one server: the
 * server). */
static redisContext *raw_redis(const char *key)
{
    redisContext *c = nori_test_topology_connect(fx.redis, key);
    assert_non_null(c);
    return c;
}

/* The demo's entries are Nori-shaped JSON under cache:view:{path}:{query},
 * with the body in base64, byte for byte. */
static void test_redis_entry_is_nori_json(void **state)
{
    (void)state;
    test_http_response r = get("/report.pdf", NULL);
    assert_int_equal(r.status, 200);
    redisContext *c = raw_redis("cache:view:/report.pdf:");
    redisReply *reply = redisCommand(c, "GET cache:view:/report.pdf:");
    assert_non_null(reply);
    assert_int_equal(reply->type, REDIS_REPLY_STRING);
    json_error_t err;
    json_t *entry = json_loadb(reply->str, reply->len, 0, &err);
    assert_non_null(entry);
    assert_int_equal(json_integer_value(json_object_get(entry, "status_code")), 200);
    assert_string_equal(json_string_value(json_object_get(entry, "media_type")),
                        "application/pdf");
    const char *b64 = json_string_value(json_object_get(entry, "body_b64"));
    assert_non_null(b64);
    /* Decode with the library's reader: the same bytes come back from a HIT. */
    test_http_response hit = get("/report.pdf", NULL);
    assert_string_equal(xcache(&hit), "HIT");
    assert_int_equal(hit.body_len, r.body_len);
    assert_memory_equal(hit.body, r.body, r.body_len);
    assert_int_equal(strlen(b64), (r.body_len + 2) / 3 * 4);
    json_decref(entry);
    freeReplyObject(reply);
    redisFree(c);
    test_http_response_free(&r);
    test_http_response_free(&hit);
}

/* Entries written by another client (Nori's Python decorator) are served:
 * the current body_b64 shape and the older {"body": text} shape. */
static void test_redis_foreign_entries_served(void **state)
{
    (void)state;
    redisContext *c = raw_redis("cache:view:/products:page=77");
    /* "hello from python\n" in base64 */
    redisReply *a = redisCommand(c, "SET %s %s", "cache:view:/products:page=77",
                                 "{\"body_b64\": \"aGVsbG8gZnJvbSBweXRob24K\", \"status_code\": 200, "
                                 "\"media_type\": \"text/plain\"}");
    redisFree(c);
    c = raw_redis("cache:view:/products:page=78");
    redisReply *b = redisCommand(c, "SET %s %s", "cache:view:/products:page=78",
                                 "{\"body\": \"legacy caf\u00e9\", \"status_code\": 200, "
                                 "\"media_type\": \"text/plain\"}");
    redisFree(c);
    assert_true(a != NULL && a->type == REDIS_REPLY_STATUS);
    assert_true(b != NULL && b->type == REDIS_REPLY_STATUS);
    freeReplyObject(a);
    freeReplyObject(b);
    test_http_response r = get("/products?page=77", NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(xcache(&r), "HIT");
    assert_string_equal(r.body, "hello from python\n");
    test_http_response_free(&r);
    r = get("/products?page=78", NULL);
    assert_string_equal(xcache(&r), "HIT");
    assert_string_equal(r.body, "legacy caf\xc3\xa9");
    test_http_response_free(&r);
}

/* Issue 10 item 26: each cache of the demo has its own prefix, so one
 * cache's keys (or a delete_prefix of it) never touch another's. Issue 11:
 * entries carry stored_at and fresh_for for every process. */
static void test_redis_prefix_per_cache(void **state)
{
    (void)state;
    test_http_response r = get("/greeting", "Accept-Language: fr\r\n");
    test_http_response_free(&r);
    r = get("/me", "X-User: zed\r\n");
    test_http_response_free(&r);
    r = get("/stock?item=2", NULL);
    test_http_response_free(&r);
    static const char *const present[] = {"cache:view.greeting:/greeting::vary=accept-language=fr",
                                          "cache:view.me:user=zed:/me:",
                                          "cache:view.stock:/stock:item=2"};
    for (int i = 0; i < 3; i++) {
        redisContext *c = raw_redis(present[i]);
        redisReply *reply = redisCommand(c, "GET %s", present[i]);
        redisFree(c);
        assert_non_null(reply);
        if (reply->type != REDIS_REPLY_STRING)
            fail_msg("no entry at %s", present[i]);
        json_error_t err;
        json_t *entry = json_loadb(reply->str, reply->len, 0, &err);
        assert_non_null(entry);
        assert_true(json_is_number(json_object_get(entry, "stored_at")));
        assert_true(json_is_number(json_object_get(entry, "fresh_for")));
        json_decref(entry);
        freeReplyObject(reply);
    }
    redisContext *c = raw_redis("cache:view:/greeting::vary=accept-language=fr");
    redisReply *reply = redisCommand(c, "EXISTS cache:view:/greeting::vary=accept-language=fr");
    assert_non_null(reply);
    assert_int_equal(reply->type, REDIS_REPLY_INTEGER); /* not a MOVED: the right node */
    assert_int_equal(reply->integer, 0);
    freeReplyObject(reply);
    redisFree(c);
}

/* With Redis stopped, cached routes still answer 200 (the handler runs) and
 * the errors are counted; when it is back, the cache works again. On a
 * cluster every node is stopped, through Sentinel the master and its
 * replica (the sentinels stay), and all come back on their ports. */
static void test_redis_down_fails_open(void **state)
{
    (void)state;
    uint64_t errors_before = metric("nori_cache_errors_total");
    nori_test_topology_kill(fx.redis);
    const char *routes[] = {"/dashboard", "/products?page=3", "/report.pdf", "/greeting"};
    for (int i = 0; i < 4; i++) {
        test_http_response r = get(routes[i], NULL);
        assert_int_equal(r.status, 200);
        assert_true(r.body_len > 0);
        test_http_response_free(&r);
    }
    assert_true(metric("nori_cache_errors_total") > errors_before);
    /* While the outage lasts, requests do not wait on the dead servers: on
     * one server a refused connection fails at once; on a cluster or
     * through Sentinel, where a refused connection starts retries, the
     * nodes' circuit breakers open after a few and then fail fast. */
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 4; i++) {
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            test_http_response r = get(routes[i], NULL);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
            assert_int_equal(r.status, 200);
            test_http_response_free(&r);
            if (ms >= 500)
                fail_msg("%s took %.0f ms with every Redis node down", routes[i], ms);
        }
    /* Issue 10 item 14: the login throttle fails closed (it answered 200
     * "attempt not counted"). */
    test_http_response lr;
    assert_int_equal(test_http_once(fx.demo.port, "POST", "/login", NULL, "user=frank", &lr), 0);
    assert_int_equal(lr.status, 503);
    test_http_response_free(&lr);
    nori_test_topology_restart(fx.redis);
    /* Back: once the breakers' cool-down (2 s) has passed, a page is
     * stored again (MISS, then HIT). Bounded wait. */
    bool stored = false;
    for (int page = 400; !stored && page < 430; page++) {
        char target[48];
        snprintf(target, sizeof target, "/products?page=%d", page);
        test_http_response a = get(target, NULL), b = get(target, NULL);
        stored = strcmp(xcache(&a), "MISS") == 0 && strcmp(xcache(&b), "HIT") == 0;
        test_http_response_free(&a);
        test_http_response_free(&b);
        if (!stored) {
            struct timespec pause = {0, 250 * 1000 * 1000};
            nanosleep(&pause, NULL);
        }
    }
    assert_true(stored);
}
#endif

/* Last: SIGTERM stops the server cleanly (exit 0; sanitizers would make
 * it non-zero on a leak or an error during shutdown). */
static void test_clean_stop(void **state)
{
    (void)state;
    test_demo_fixture_assert_clean_stop(&fx);
}

/* Runs nori-demo with args (NULL-terminated) and returns its exit status,
 * its stderr in err. It must refuse at once, before binding anything. */
static int run_demo_args(const char **args, char *err, size_t cap)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], STDERR_FILENO);
        close(p[0]);
        close(p[1]);
        const char *argv[8] = {"nori-demo"};
        for (int i = 0; args[i] != NULL && i < 6; i++)
            argv[i + 1] = args[i];
        execv(NORI_DEMO_EXE, (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(p[0], err + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    err[n] = '\0';
    close(p[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A bad command line names the option that was wrong. */
static void test_bad_options_named(void **state)
{
    (void)state;
    char err[512];
    const char *bogus[] = {"--bogus", NULL};
    assert_int_equal(run_demo_args(bogus, err, sizeof err), 2);
    assert_string_equal(err, "nori-demo: --bogus: unknown option (try --help)\n");
    const char *no_value[] = {"--port", NULL};
    assert_int_equal(run_demo_args(no_value, err, sizeof err), 2);
    assert_string_equal(err, "nori-demo: --port: needs a value (try --help)\n");
    const char *empty[] = {"--prefix", "", NULL};
    assert_int_equal(run_demo_args(empty, err, sizeof err), 2);
    assert_string_equal(err, "nori-demo: --prefix: needs a non-empty value (try --help)\n");
    const char *bad_port[] = {"--port", "70000", NULL};
    assert_int_equal(run_demo_args(bad_port, err, sizeof err), 2);
    assert_string_equal(err, "nori-demo: --port 70000 is not a port number\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_miss_then_hit),     cmocka_unit_test(test_db_counter),
        cmocka_unit_test(test_post_not_cached),   cmocka_unit_test(test_fail_never_cached),
        cmocka_unit_test(test_report_pdf),        cmocka_unit_test(test_separate_slots),
        cmocka_unit_test(test_downstream_headers),
        cmocka_unit_test(test_login_throttle),    cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_large_body_refused), cmocka_unit_test(test_aborted_upload),
        cmocka_unit_test(test_metrics),           cmocka_unit_test(test_head),
        cmocka_unit_test(test_bad_options_named),
#ifdef NORI_DEMO_ON_REDIS
        cmocka_unit_test(test_redis_entry_is_nori_json),
        cmocka_unit_test(test_redis_prefix_per_cache),
        cmocka_unit_test(test_redis_foreign_entries_served),
        cmocka_unit_test(test_redis_down_fails_open),
#endif
        cmocka_unit_test(test_clean_stop),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
