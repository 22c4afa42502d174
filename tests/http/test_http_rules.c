// SPDX-License-Identifier: MIT
/* nori-demo end to end for issue 11, on memory and (NAME_redis) on a
 * private redis-server: coalesced first requests, STALE within
 * stale_while_revalidate with one background refresh, the simulated
 * database outage, 304 for matching validators, HEAD, invalidation after
 * POST /products, 405 for a method a route does not declare (nothing
 * invalidated), and the new metrics. NAME_redis runs again on a Redis
 * Cluster and through Sentinel (NAME_cluster, NAME_sentinel:
 * NORI_TEST_TOPOLOGY, tests/support/redis_topology.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_support.h"

#include "demo_fixture.h"
#include "http_client.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static test_demo_fixture fx;

static int group_setup(void **state)
{
    (void)state;
#ifdef NORI_DEMO_ON_REDIS
    return test_demo_fixture_start(&fx, NORI_DEMO_EXE, "rules", NULL, true);
#else
    return test_demo_fixture_start(&fx, NORI_DEMO_EXE, "rules", NULL, false);
#endif
}

static int group_teardown(void **state)
{
    (void)state;
    test_demo_fixture_stop(&fx);
    return 0;
}

static test_http_response get(const char *target, const char *headers)
{
    return test_demo_fixture_get(&fx, target, headers);
}

static const char *xcache(const test_http_response *r)
{
    static __thread char buf[16];
    return test_http_header(r, "X-Cache", buf, sizeof buf) ? buf : "-";
}

static uint64_t metric(const char *series)
{
    test_http_response r = get("/metrics", NULL);
    assert_int_equal(r.status, 200);
    char pat[160];
    snprintf(pat, sizeof pat, "\n%s ", series);
    const char *p = strstr(r.body, pat);
    if (p == NULL)
        fail_msg("metric %s missing from:\n%s", series, r.body);
    uint64_t v = strtoull(p + strlen(pat), NULL, 10);
    test_http_response_free(&r);
    return v;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void post(const char *target, int want_status)
{
    test_http_response r;
    assert_int_equal(test_http_once(fx.demo.port, "POST", target, NULL, "", &r), 0);
    if (r.status != want_status)
        fail_msg("POST %s: %d %s, expected %d", target, r.status, r.body, want_status);
    test_http_response_free(&r);
}

typedef struct {
    const char *target;
    int port; /* 0: the fixture's demo */
    pthread_barrier_t *start;
    test_http_response r;
    int ok;
} getter;

static void *get_thread(void *p)
{
    getter *g = p;
    pthread_barrier_wait(g->start);
    g->ok = test_http_once(g->port ? g->port : fx.demo.port, "GET", g->target, NULL, NULL,
                           &g->r) == 0;
    return NULL;
}

/* 32 concurrent first requests for one page: the database is queried once
 * and every client gets the same body. */
static void test_coalesced_first_requests(void **state)
{
    (void)state;
    uint64_t q0 = metric("nori_db_queries_total");
    enum { N = 32 };
    pthread_t t[N];
    getter g[N];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N);
    for (int i = 0; i < N; i++) {
        g[i] = (getter){.target = "/products?page=64", .start = &start};
        assert_int_equal(pthread_create(&t[i], NULL, get_thread, &g[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    int misses = 0;
    for (int i = 0; i < N; i++) {
        assert_true(g[i].ok);
        assert_int_equal(g[i].r.status, 200);
        assert_int_equal(g[i].r.body_len, g[0].r.body_len);
        assert_memory_equal(g[i].r.body, g[0].r.body, g[0].r.body_len);
        misses += strcmp(xcache(&g[i].r), "MISS") == 0;
    }
    for (int i = 0; i < N; i++)
        test_http_response_free(&g[i].r);
    assert_int_equal(misses, 1);
    assert_int_equal(metric("nori_db_queries_total"), q0 + 1);
}

/* /stock: ttl 1 s, stale_while_revalidate 30 s. After the second, a
 * request is answered STALE at once with the old body; one background
 * refresh replaces it. */
static void test_stock_stale_while_revalidate(void **state)
{
    (void)state;
    test_http_response a = get("/stock?item=7", NULL);
    assert_string_equal(xcache(&a), "MISS");
    sleep_ms(1100); /* let the 1 s lifetime pass: time itself is under test */
    uint64_t refreshes0 = metric("nori_cache_background_refreshes_total{result=\"run\"}");
    int64_t t0 = now_ms();
    test_http_response s = get("/stock?item=7", NULL);
    int64_t took = now_ms() - t0;
    assert_string_equal(xcache(&s), "STALE");
    assert_int_equal(s.body_len, a.body_len);
    assert_memory_equal(s.body, a.body, a.body_len);
    assert_true(took < 500);
    char age[16];
    assert_non_null(test_http_header(&s, "Age", age, sizeof age));
    assert_true(atoi(age) >= 1);
    test_http_response_free(&s);
    /* Bounded wait for the refresh, then a HIT with a new body. */
    for (int i = 0; i < 500 && metric("nori_cache_background_refreshes_total{result=\"run\"}") == refreshes0; i++)
        sleep_ms(10);
    assert_int_equal(metric("nori_cache_background_refreshes_total{result=\"run\"}"), refreshes0 + 1);
    test_http_response h = get("/stock?item=7", NULL);
    assert_string_equal(xcache(&h), "HIT");
    assert_false(h.body_len == a.body_len && memcmp(h.body, a.body, a.body_len) == 0);
    test_http_response_free(&h);
    test_http_response_free(&a);
    assert_true(metric("nori_cache_stale_total{reason=\"revalidate\"}") >= 1);
}

/* The simulated outage: handlers that need the database answer 503, /hello
 * and /metrics still answer, /stock keeps serving its stale entry. */
static void test_outage(void **state)
{
    (void)state;
    test_http_response a = get("/stock?item=8", NULL);
    assert_string_equal(xcache(&a), "MISS");
    post("/admin/db?state=down", 200);
    test_http_response r = get("/dashboard/uncached", NULL);
    assert_int_equal(r.status, 503);
    test_http_response_free(&r);
    r = get("/products?page=99", NULL);
    assert_int_equal(r.status, 503);
    assert_string_equal(xcache(&r), "MISS");
    test_http_response_free(&r);
    r = get("/hello", NULL);
    assert_int_equal(r.status, 200);
    test_http_response_free(&r);
    sleep_ms(1100);
    for (int i = 0; i < 3; i++) {
        r = get("/stock?item=8", NULL);
        assert_int_equal(r.status, 200);
        assert_string_equal(xcache(&r), "STALE");
        assert_memory_equal(r.body, a.body, a.body_len);
        test_http_response_free(&r);
    }
    /* Long form (NORI_TEST_LONG=1, about 31 s more): past the 30 s
     * stale_while_revalidate window, within stale_if_error, the failing
     * handler runs in the foreground and the stale entry answers for it. */
    if (getenv("NORI_TEST_LONG") != NULL) {
        uint64_t se0 = metric("nori_cache_stale_total{reason=\"error\"}");
        sleep_ms(31000);
        r = get("/stock?item=8", NULL);
        assert_int_equal(r.status, 200);
        assert_string_equal(xcache(&r), "STALE");
        assert_memory_equal(r.body, a.body, a.body_len);
        test_http_response_free(&r);
        assert_int_equal(metric("nori_cache_stale_total{reason=\"error\"}"), se0 + 1);
    }
    /* The 503 was not stored: back up, the page is fresh again. */
    post("/admin/db?state=up", 200);
    r = get("/products?page=99", NULL);
    assert_int_equal(r.status, 200);
    test_http_response_free(&r);
    test_http_response_free(&a);
    post("/admin/db?state=sideways", 400);
}

/* ETag and If-None-Match: 304 for a matching tag, a weak one, a list, *;
 * 200 for others. */
static void test_not_modified(void **state)
{
    (void)state;
    test_http_response a = get("/products?page=63", NULL);
    char etag[128], hdr[300];
    assert_non_null(test_http_header(&a, "ETag", etag, sizeof etag));
    test_http_response_free(&a);
    const char *fmts[] = {"If-None-Match: %s\r\n", "If-None-Match: W/%s\r\n",
                          "If-None-Match: \"other\", %s\r\n", "If-None-Match: *\r\n%.0s"};
    uint64_t n0 = metric("nori_cache_not_modified_total");
    for (int i = 0; i < 4; i++) {
        snprintf(hdr, sizeof hdr, fmts[i], etag);
        test_http_response r = get("/products?page=63", hdr);
        if (r.status != 304)
            fail_msg("%s -> %d", hdr, r.status);
        assert_int_equal(r.body_len, 0);
        char v[128];
        assert_string_equal(test_http_header(&r, "ETag", v, sizeof v), etag);
        test_http_response_free(&r);
    }
    test_http_response r = get("/products?page=63", "If-None-Match: \"other\"\r\n");
    assert_int_equal(r.status, 200);
    assert_string_equal(xcache(&r), "HIT");
    size_t len200 = r.body_len;
    test_http_response_free(&r);
    assert_int_equal(metric("nori_cache_not_modified_total"), n0 + 4);
    /* RFC 9110 8.6: a 304's Content-Length, if any, is the 200's length
     * (libmicrohttpd alone would say 0), sent once; and the connection
     * stays usable: a 200 follows on it, read whole. */
    int fd = test_http_connect(fx.demo.port);
    assert_true(fd >= 0);
    snprintf(hdr, sizeof hdr, "If-None-Match: %s\r\n", etag);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(test_http_request(fd, i ? "HEAD" : "GET", "/products?page=63", hdr,
                                           NULL, 0, &r), 0);
        assert_int_equal(r.status, 304);
        assert_int_equal(r.body_len, 0);
        char cl[32];
        assert_non_null(test_http_header(&r, "Content-Length", cl, sizeof cl));
        assert_int_equal(strtoull(cl, NULL, 10), len200);
        int n = 0;
        for (const char *p = r.head; *p != '\0'; p++)
            n += strncasecmp(p, "\r\nContent-Length:", 17) == 0;
        assert_int_equal(n, 1);
        test_http_response_free(&r);
    }
    assert_int_equal(test_http_request(fd, "GET", "/products?page=63", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, len200);
    test_http_response_free(&r);
    close(fd);
    /* Vary on a vary-on route. */
    r = get("/greeting", "Accept-Language: es\r\n");
    char v[64];
    assert_string_equal(test_http_header(&r, "Vary", v, sizeof v), "accept-language");
    test_http_response_free(&r);
}

/* POST /products: 201, and every cached /products?... is gone. */
static void test_post_invalidates(void **state)
{
    (void)state;
    const char *pages[] = {"/products?page=61", "/products?page=62"};
    for (int i = 0; i < 2; i++) {
        test_http_response r = get(pages[i], NULL);
        test_http_response_free(&r);
        r = get(pages[i], NULL);
        assert_string_equal(xcache(&r), "HIT");
        test_http_response_free(&r);
    }
    uint64_t inv0 = metric("nori_cache_invalidations_total");
    test_http_response r;
    assert_int_equal(test_http_once(fx.demo.port, "POST", "/products", NULL, "name=x", &r), 0);
    assert_int_equal(r.status, 201);
    assert_string_equal(xcache(&r), "BYPASS");
    test_http_response_free(&r);
    assert_int_equal(metric("nori_cache_invalidations_total"), inv0 + 1);
    for (int i = 0; i < 2; i++) {
        r = get(pages[i], NULL);
        assert_string_equal(xcache(&r), "MISS");
        test_http_response_free(&r);
    }
}

/* A method the route does not declare is refused by the adapter (405 with
 * Allow) before the handler and the cache: /dashboard is GET only, so a
 * POST or DELETE to it can no longer invalidate its entry. */
static void test_undeclared_method_refused(void **state)
{
    (void)state;
    const char *page = "/dashboard?m=405";
    test_http_response r = get(page, NULL);
    test_http_response_free(&r);
    r = get(page, NULL);
    assert_string_equal(xcache(&r), "HIT");
    test_http_response_free(&r);
    uint64_t inv0 = metric("nori_cache_invalidations_total");
    static const char *const unsafe[] = {"POST", "DELETE", "PUT", "PATCH"};
    char allow[64];
    for (size_t i = 0; i < sizeof unsafe / sizeof unsafe[0]; i++) {
        assert_int_equal(test_http_once(fx.demo.port, unsafe[i], page, NULL,
                                        i == 0 ? "x=1" : NULL, &r),
                         0);
        if (r.status != 405)
            fail_msg("%s %s: %d %s, expected 405", unsafe[i], page, r.status, r.body);
        assert_non_null(test_http_header(&r, "Allow", allow, sizeof allow));
        assert_string_equal(allow, "GET, HEAD");
        assert_string_equal(r.body, "method not allowed\n");
        assert_string_equal(xcache(&r), "-"); /* the cache was not involved */
        test_http_response_free(&r);
    }
    assert_int_equal(metric("nori_cache_invalidations_total"), inv0);
    r = get(page, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(xcache(&r), "HIT");
    test_http_response_free(&r);
    /* HEAD comes with GET. */
    assert_int_equal(test_http_once(fx.demo.port, "HEAD", page, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(xcache(&r), "HIT");
    test_http_response_free(&r);
    /* Each route says what it serves. */
    static const struct {
        const char *method, *target, *allow;
    } refused[] = {{"PUT", "/products", "GET, HEAD, POST"},
                   {"GET", "/login", "POST"},
                   {"HEAD", "/admin/db", "POST"},
                   {"DELETE", "/metrics", "GET, HEAD"}};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        assert_int_equal(
            test_http_once(fx.demo.port, refused[i].method, refused[i].target, NULL, NULL, &r),
            0);
        assert_int_equal(r.status, 405);
        assert_non_null(test_http_header(&r, "Allow", allow, sizeof allow));
        assert_string_equal(allow, refused[i].allow);
        test_http_response_free(&r);
    }
}

#ifdef NORI_DEMO_ON_REDIS
#include <hiredis/hiredis.h>

/* Two nori-demo processes on one Redis, same prefix, 32 concurrent first
 * requests each for /dashboard (a query of about 20 ms, so the requests
 * overlap): the database is queried once in total (the lease). */
static void test_two_processes_one_run(void **state)
{
    (void)state;
    char db[600], log[600];
    snprintf(db, sizeof db, "%s/demo2.db", fx.tmpdir);
    snprintf(log, sizeof log, "%s/demo2.log", fx.tmpdir);
    test_demo second;
    assert_int_equal(test_demo_start(&second, NORI_DEMO_EXE, db, fx.prefix, log, 120), 0);
    uint64_t q0 = metric("nori_db_queries_total");
    int port1 = fx.demo.port;
    enum { N = 64 };
    pthread_t t[N];
    getter g[N];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N);
    for (int i = 0; i < N; i++) {
        g[i] = (getter){.target = "/dashboard", .start = &start,
                        .port = i % 2 ? second.port : port1};
        assert_int_equal(pthread_create(&t[i], NULL, get_thread, &g[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    /* The second process's own count, from its /metrics. */
    test_http_response m;
    assert_int_equal(test_http_once(second.port, "GET", "/metrics", NULL, NULL, &m), 0);
    const char *p = strstr(m.body, "\nnori_db_queries_total ");
    assert_non_null(p);
    uint64_t q2 = strtoull(p + strlen("\nnori_db_queries_total "), NULL, 10);
    test_http_response_free(&m);
    int stop = test_demo_stop(&second, 10);
    if (stop != 0) {
        test_demo_print_log(&second);
        fail_msg("second nori-demo stopped with %d", stop);
    }
    int misses = 0;
    for (int i = 0; i < N; i++) {
        if (!g[i].ok || g[i].r.status != 200 || g[i].r.body_len != g[0].r.body_len ||
            memcmp(g[i].r.body, g[0].r.body, g[0].r.body_len) != 0)
        {
            char x0[16], xi[16];
            snprintf(x0, sizeof x0, "%s", g[0].ok ? xcache(&g[0].r) : "-");
            snprintf(xi, sizeof xi, "%s", g[i].ok ? xcache(&g[i].r) : "-");
            fail_msg("request %d (port %d): ok %d status %d X-Cache %s, %zu bytes \"%.200s\"; "
                     "request 0: X-Cache %s, %zu bytes \"%.200s\"",
                     i, g[i].port, g[i].ok, g[i].ok ? g[i].r.status : 0, xi,
                     g[i].ok ? g[i].r.body_len : 0, g[i].ok && g[i].r.body ? g[i].r.body : "",
                     x0, g[0].ok ? g[0].r.body_len : 0,
                     g[0].ok && g[0].r.body ? g[0].r.body : "");
        }
        misses += strcmp(xcache(&g[i].r), "MISS") == 0;
    }
    /* Freed only now: every response is compared with g[0]. */
    for (int i = 0; i < N; i++)
        test_http_response_free(&g[i].r);
    uint64_t q1 = metric("nori_db_queries_total") - q0;
    if (q1 + q2 != 1)
        fail_msg("database queried %llu + %llu times for one page, %d misses (lock timeouts "
                 "%llu, cache errors %llu in the first process)",
                 (unsigned long long)q1, (unsigned long long)q2, misses,
                 (unsigned long long)metric("nori_cache_lock_timeouts_total"),
                 (unsigned long long)metric("nori_cache_errors_total"));
    assert_int_equal(misses, 1);
}

/* A holder that died mid-fill (its lease left in Redis, as a SIGKILLed
 * process leaves it) does not block others past the lease. */
static void test_dead_holder(void **state)
{
    (void)state;
    char key[128];
    snprintf(key, sizeof key, "cache:%s:/products:page=71:lock", fx.prefix);
    redisContext *c = nori_test_topology_connect(fx.redis, key); /* the key's master */
    assert_non_null(c);
    /* A token as a process of this library writes it ("pid-sec.nsec-seq",
     * taken now): a lease that is not one is not waited for. */
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    redisReply *r =
        redisCommand(c, "SET %s 4242-%lld.%09ld-1 PX 1500", key, (long long)rt.tv_sec,
                     rt.tv_nsec);
    assert_true(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    redisFree(c);
    int64_t t0 = now_ms();
    test_http_response a = get("/products?page=71", NULL);
    int64_t took = now_ms() - t0;
    assert_int_equal(a.status, 200);
    assert_string_equal(xcache(&a), "MISS");
    test_http_response_free(&a);
    if (took < 1200 || took > 4500)
        fail_msg("answered after %lld ms; the dead lease lasted 1500 ms", (long long)took);
}
#endif

static void test_clean_stop(void **state)
{
    (void)state;
    test_demo_fixture_assert_clean_stop(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coalesced_first_requests),
        cmocka_unit_test(test_stock_stale_while_revalidate),
        cmocka_unit_test(test_outage),
        cmocka_unit_test(test_not_modified),
        cmocka_unit_test(test_post_invalidates),
        cmocka_unit_test(test_undeclared_method_refused),
#ifdef NORI_DEMO_ON_REDIS
        cmocka_unit_test(test_two_processes_one_run),
        cmocka_unit_test(test_dead_holder),
#endif
        cmocka_unit_test(test_clean_stop),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
