// SPDX-License-Identifier: MIT
/* Freshness, stale serving, validators and invalidation of the response
 * cache, on the memory backend with a test clock for the entries' stored-at
 * times (the backend keeps entries for lifetime + window in real time, which
 * these tests never reach). Some cases run a fill on another thread while
 * the test writes, and are labelled "concurrency" (run under TSan too). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_support.h"

#include "backend.h"
#include "clock.h"
#include "http/internal.h"
#include "http_test_headers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

/* The virtual wall clock (clock.h): entries' stored-at times and ages. The
 * monotonic clock (the memory backend's TTLs) stays real: the cases run
 * the wall clock to the end of int64. */
static _Atomic int64_t fake_now = 1700000000000;
static void advance(int64_t ms)
{
    atomic_fetch_add(&fake_now, ms);
}

typedef struct {
    _Atomic int runs;
    int status;
    int fail;                 /* return NORI_EBACKEND instead of a response */
    const char *h_name, *h_value;
    const char *h2_name, *h2_value;
    pthread_mutex_t gate_lock;
    pthread_cond_t gate_cond;
    int gated, gate_open;     /* refresh runs block until the gate opens */
    int64_t takes_ms;         /* the handler advances the test clock this much */
} app;

static int handler(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)req;
    app *a = ud;
    if (a->gated) {
        pthread_mutex_lock(&a->gate_lock);
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 10; /* bounded */
        while (!a->gate_open && pthread_cond_timedwait(&a->gate_cond, &a->gate_lock, &dl) == 0)
            ;
        pthread_mutex_unlock(&a->gate_lock);
    }
    int run = atomic_fetch_add(&a->runs, 1) + 1;
    if (a->takes_ms > 0)
        advance(a->takes_ms);
    if (a->fail)
        return NORI_EBACKEND;
    resp->status = a->status ? a->status : 200;
    char body[32];
    int n = snprintf(body, sizeof body, "run %d", run);
    int rc = nori_http_response_set_body(resp, body, (size_t)n);
    if (rc == NORI_OK && a->h_name)
        rc = nori_http_response_add_header(resp, a->h_name, a->h_value);
    if (rc == NORI_OK && a->h2_name)
        rc = nori_http_response_add_header(resp, a->h2_name, a->h2_value);
    return rc;
}

typedef struct {
    nori_backend *b;
    nori_http_cache *c;
    app a;
    nori_http_response r;
} fixture;

static nori_http_cache *make_cache(nori_backend *b, int64_t ttl, int64_t swr, int64_t sie,
                                   const char *const *vary, size_t n_vary)
{
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = b;
    o.ttl = ttl;
    o.stale_while_revalidate = swr;
    o.stale_if_error = sie;
    o.vary_on = vary;
    o.n_vary_on = n_vary;
    nori_http_cache *c;
    assert_nori(nori_http_cache_new(&o, &c), NORI_OK);
    return c;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_nori(nori_memory_backend_new(100, &f->b), NORI_OK);
    f->c = make_cache(f->b, 10, 30, 300, NULL, 0);
    pthread_mutex_init(&f->a.gate_lock, NULL);
    pthread_cond_init(&f->a.gate_cond, NULL);
    nori_http_response_init(&f->r);
    atomic_store(&fake_now, 1700000000000);
    nori__clock_override(NULL, &fake_now);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    nori_http_response_clear(&f->r);
    nori_http_cache_free(f->c);
    nori_backend_free(f->b);
    pthread_mutex_destroy(&f->a.gate_lock);
    pthread_cond_destroy(&f->a.gate_cond);
    nori__clock_override(NULL, NULL);
    free(f);
    return 0;
}

static nori_http_origin serve_h(fixture *f, nori_http_cache *c, const char *method,
                                const char *path, const char *query, test_headers *h)
{
    nori_http_request rq = {method, path, query, h ? test_header_lookup : NULL, h, NULL, 0, NULL};
    assert_nori(nori_http_cache_serve(c, &rq, handler, &f->a, &f->r), NORI_OK);
    return f->r.origin;
}

static nori_http_origin serve(fixture *f, const char *path)
{
    return serve_h(f, f->c, "GET", path, "", NULL);
}

static void expect_body(const nori_http_response *r, const char *want)
{
    if (r->body_len != strlen(want) || memcmp(r->body, want, r->body_len) != 0)
        fail_msg("body \"%.*s\", expected \"%s\"", (int)r->body_len, r->body ? r->body : "",
                 want);
}

static nori_http_cache_stats stats(nori_http_cache *c)
{
    nori_http_cache_stats s;
    nori_http_cache_get_stats(c, &s);
    return s;
}

/* Within stale_while_revalidate: answered from the stale entry at once,
 * and exactly one background refresh runs however many requests come. */
static void test_stale_while_revalidate(void **state)
{
    fixture *f = *state;
    assert_int_equal(serve(f, "/s"), NORI_HTTP_MISS);
    advance(5000);
    assert_int_equal(serve(f, "/s"), NORI_HTTP_HIT);
    assert_string_equal(nori_http_response_header(&f->r, "Age"), "5");
    advance(10000); /* 15 s old: stale, within the 30 s window */
    f->a.gated = 1; /* the refresh waits until every stale request is answered */
    for (int i = 0; i < 10; i++) {
        assert_int_equal(serve(f, "/s"), NORI_HTTP_STALE);
        expect_body(&f->r, "run 1");
    }
    pthread_mutex_lock(&f->a.gate_lock);
    f->a.gate_open = 1;
    pthread_cond_broadcast(&f->a.gate_cond);
    pthread_mutex_unlock(&f->a.gate_lock);
    /* Wait (bounded) for the refresh to finish. */
    for (int i = 0; i < 5000 && stats(f->c).refreshes < 1; i++) {
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    nori_http_cache_stats s = stats(f->c);
    assert_int_equal(s.refreshes, 1);
    assert_int_equal(s.stale_revalidate, 10);
    assert_int_equal(atomic_load(&f->a.runs), 2);
    assert_int_equal(serve(f, "/s"), NORI_HTTP_HIT);
    expect_body(&f->r, "run 2");
    /* Past the window (and inside stale_if_error): no stale answer while
     * the handler works; the handler runs in the foreground. */
    advance(10000 + 30000 + 1);
    assert_int_equal(serve(f, "/s"), NORI_HTTP_MISS);
    expect_body(&f->r, "run 3");
}

/* Within stale_if_error: a failing handler (5xx or an error code) is
 * answered with the stale entry; past it, the failure goes out. */
static void test_stale_if_error(void **state)
{
    fixture *f = *state;
    nori_http_cache_free(f->c);
    f->c = make_cache(f->b, 1, 0, 300, NULL, 0);
    assert_int_equal(serve(f, "/e"), NORI_HTTP_MISS);
    advance(60000);
    f->a.status = 503;
    assert_int_equal(serve(f, "/e"), NORI_HTTP_STALE);
    assert_int_equal(f->r.status, 200);
    expect_body(&f->r, "run 1");
    f->a.fail = 1;
    assert_int_equal(serve(f, "/e"), NORI_HTTP_STALE);
    expect_body(&f->r, "run 1");
    assert_int_equal(stats(f->c).stale_error, 2);
    f->a.fail = 0;
    advance(300000);
    assert_int_equal(serve(f, "/e"), NORI_HTTP_MISS);
    assert_int_equal(f->r.status, 503);
}

/* Strong ETag, If-None-Match (weak comparison, lists, *) -> 304,
 * If-Modified-Since only without If-None-Match, Vary on vary-on routes. */
static void test_conditional(void **state)
{
    fixture *f = *state;
    f->a.h_name = "Last-Modified";
    f->a.h_value = "Wed, 21 Oct 2015 07:28:00 GMT";
    f->a.h2_name = "Cache-Control";
    f->a.h2_value = "public";
    assert_int_equal(serve(f, "/c"), NORI_HTTP_MISS);
    const char *e = nori_http_response_header(&f->r, "ETag");
    assert_non_null(e);
    char etag[128];
    snprintf(etag, sizeof etag, "%s", e);
    assert_true(etag[0] == '"');
    /* Derived from the body only: another cache derives the same tag. */
    nori_http_response other;
    nori_http_response_init(&other);
    assert_nori(nori_http_response_set_body(&other, "run 1", 5), NORI_OK);
    assert_nori(nori__http_ensure_etag(&other), NORI_OK);
    assert_string_equal(nori_http_response_header(&other, "ETag"), etag);
    nori_http_response_clear(&other);

    char weak[140], list[200];
    snprintf(weak, sizeof weak, "W/%s", etag);
    snprintf(list, sizeof list, "\"nope\", %s", weak);
    const char *match[] = {etag, weak, list, "*"};
    for (int i = 0; i < 4; i++) {
        test_header h[] = {{"if-none-match", match[i]}};
        test_headers hs = {h, 1};
        assert_int_equal(serve_h(f, f->c, "GET", "/c", "", &hs), NORI_HTTP_HIT);
        if (f->r.status != 304)
            fail_msg("If-None-Match: %s gave %d", match[i], f->r.status);
        assert_int_equal(f->r.body_len, 0);
        assert_null(f->r.media_type);
        /* RFC 9110 8.6: the 200's length ("run 1"), for the adapter to send. */
        assert_string_equal(nori_http_response_header(&f->r, "Content-Length"), "5");
        assert_string_equal(nori_http_response_header(&f->r, "ETag"), etag);
        assert_string_equal(nori_http_response_header(&f->r, "Cache-Control"), "public");
        assert_null(nori_http_response_header(&f->r, "Last-Modified"));
        assert_non_null(nori_http_response_header(&f->r, "Age"));
    }
    const char *nomatch[] = {"\"nope\"", "W/\"nope\", \"x\"", "garbage"};
    for (int i = 0; i < 3; i++) {
        test_header h[] = {{"if-none-match", nomatch[i]},
                           /* If-Modified-Since is ignored when If-None-Match is present */
                           {"if-modified-since", "Thu, 22 Oct 2015 07:28:00 GMT"}};
        test_headers hs = {h, 2};
        assert_int_equal(serve_h(f, f->c, "GET", "/c", "", &hs), NORI_HTTP_HIT);
        assert_int_equal(f->r.status, 200);
        expect_body(&f->r, "run 1");
    }
    test_header later[] = {{"if-modified-since", "Wed, 21 Oct 2015 07:28:00 GMT"}};
    test_header earlier[] = {{"if-modified-since", "Tue, 20 Oct 2015 07:28:00 GMT"}};
    test_headers hl = {later, 1}, he = {earlier, 1};
    serve_h(f, f->c, "GET", "/c", "", &hl);
    assert_int_equal(f->r.status, 304);
    serve_h(f, f->c, "GET", "/c", "", &he);
    assert_int_equal(f->r.status, 200);
    /* HEAD gets the same validator handling. */
    test_header inm[] = {{"if-none-match", etag}};
    test_headers hi = {inm, 1};
    assert_int_equal(serve_h(f, f->c, "HEAD", "/c", "", &hi), NORI_HTTP_HIT);
    assert_int_equal(f->r.status, 304);
    assert_int_equal(stats(f->c).not_modified, 6);
    assert_int_equal(atomic_load(&f->a.runs), 1);

    /* Vary on a vary-on route, on misses and hits. */
    const char *vary[] = {"Accept-Language"};
    nori_http_cache *vc = make_cache(f->b, 10, 0, 0, vary, 1);
    f->a.h_name = f->a.h2_name = NULL;
    assert_int_equal(serve_h(f, vc, "GET", "/v", "", NULL), NORI_HTTP_MISS);
    assert_string_equal(nori_http_response_header(&f->r, "Vary"), "accept-language");
    assert_int_equal(serve_h(f, vc, "GET", "/v", "", NULL), NORI_HTTP_HIT);
    assert_string_equal(nori_http_response_header(&f->r, "Vary"), "accept-language");
    nori_http_cache_free(vc);
}

/* s-maxage, then max-age, then Expires - Date set the lifetime, capped by
 * the route's ttl; none: the ttl (the application rules' heuristic). */
static void test_lifetime(void **state)
{
    fixture *f = *state;
    nori_http_cache_free(f->c);
    f->c = make_cache(f->b, 10, 0, 0, NULL, 0);
    char date[NORI_HTTP_DATE_SIZE], expires[NORI_HTTP_DATE_SIZE];
    static const struct {
        const char *cc;
        int64_t expires_in; /* seconds after Date; with cc NULL */
        int64_t fresh_s;
    } cases[] = {{"max-age=3", 0, 3},
                 {"public, s-maxage=2, max-age=8", 0, 2},
                 {"max-age=100", 0, 10},
                 {NULL, 5, 5},
                 {NULL, 60, 10},
                 {NULL, -1, 10}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[16];
        snprintf(path, sizeof path, "/l%zu", i);
        int64_t now_s;
        f->a.h_name = cases[i].cc ? "Cache-Control" : cases[i].expires_in >= 0 ? "Expires" : NULL;
        f->a.h_value = cases[i].cc ? cases[i].cc : expires;
        f->a.h2_name = "Date";
        f->a.h2_value = date;
        /* The test clock on a second: Date then says exactly when. */
        advance(1000 - atomic_load(&fake_now) % 1000);
        now_s = atomic_load(&fake_now) / 1000;
        assert_nori(nori__http_date_format(now_s, date), NORI_OK);
        assert_nori(nori__http_date_format(now_s + cases[i].expires_in, expires), NORI_OK);
        assert_int_equal(serve(f, path), NORI_HTTP_MISS);
        advance(cases[i].fresh_s * 1000 - 1);
        if (serve(f, path) != NORI_HTTP_HIT)
            fail_msg("case %zu: stale before %lld s", i, (long long)cases[i].fresh_s);
        advance(1);
        if (serve(f, path) != NORI_HTTP_MISS)
            fail_msg("case %zu: still fresh after %lld s", i, (long long)cases[i].fresh_s);
    }
    f->a.h2_name = NULL;
    /* max-age=0, an Expires not after Date, an invalid Expires: stale at
     * once, nothing to reuse, not stored. */
    static const char *const stale[][2] = {{"Cache-Control", "max-age=0"},
                                           {"Cache-Control", "max-age=-5"},
                                           {"Cache-Control", "max-age=\"x\""},
                                           {"Expires", "Thu, 01 Jan 1970 00:00:00 GMT"},
                                           {"Expires", "0"}};
    for (size_t i = 0; i < sizeof stale / sizeof stale[0]; i++) {
        char path[16];
        snprintf(path, sizeof path, "/zero%zu", i);
        f->a.h_name = stale[i][0];
        f->a.h_value = stale[i][1];
        assert_int_equal(serve(f, path), NORI_HTTP_MISS);
        if (serve(f, path) != NORI_HTTP_MISS)
            fail_msg("%s: %s was stored", stale[i][0], stale[i][1]);
    }
}

/* A 2xx/3xx to POST/PUT/PATCH/DELETE removes every entry of the path
 * (all queries and vary values) under the prefix; other paths stay. */
static void test_invalidation(void **state)
{
    fixture *f = *state;
    serve_h(f, f->c, "GET", "/p", "page=1", NULL);
    serve_h(f, f->c, "GET", "/p", "page=2", NULL);
    serve_h(f, f->c, "GET", "/p2", "", NULL);
    assert_int_equal(serve_h(f, f->c, "GET", "/p", "page=1", NULL), NORI_HTTP_HIT);
    /* A failed write invalidates nothing. */
    f->a.status = 500;
    assert_int_equal(serve_h(f, f->c, "POST", "/p", "", NULL), NORI_HTTP_BYPASS);
    f->a.status = 0;
    assert_int_equal(serve_h(f, f->c, "GET", "/p", "page=2", NULL), NORI_HTTP_HIT);
    static const char *const writes[] = {"POST", "PUT", "PATCH", "DELETE"};
    for (int w = 0; w < 4; w++) {
        f->a.status = w == 1 ? 303 : 201;
        assert_int_equal(serve_h(f, f->c, writes[w], "/p", "", NULL), NORI_HTTP_BYPASS);
        f->a.status = 0;
        assert_int_equal(serve_h(f, f->c, "GET", "/p", "page=1", NULL), NORI_HTTP_MISS);
        assert_int_equal(serve_h(f, f->c, "GET", "/p", "page=2", NULL), NORI_HTTP_MISS);
        assert_int_equal(serve_h(f, f->c, "GET", "/p2", "", NULL), NORI_HTTP_HIT);
    }
    assert_int_equal(stats(f->c).invalidations, 4);
}


/* stale_if_error is decided when the answer goes out, not when the request
 * came in: a handler that fails after the window closed sends its failure,
 * not an entry older than the window allows. */
static void test_stale_if_error_at_answer_time(void **state)
{
    fixture *f = *state;
    nori_http_cache_free(f->c);
    f->c = make_cache(f->b, 1, 0, 1, NULL, 0); /* fresh 1 s, then 1 s of stale_if_error */
    assert_int_equal(serve(f, "/late"), NORI_HTTP_MISS);
    advance(1100); /* stale, 0.9 s left of the window */
    f->a.fail = 1;
    /* Fails at once: within the window, the entry answers. */
    assert_int_equal(serve(f, "/late"), NORI_HTTP_STALE);
    expect_body(&f->r, "run 1");
    assert_string_equal(nori_http_response_header(&f->r, "Age"), "1");
    /* Fails 1.6 s later, when the entry is 2.7 s old: past the window. */
    f->a.takes_ms = 1600;
    nori_http_request rq = {"GET", "/late", "", NULL, NULL, NULL, 0, NULL};
    assert_int_equal(nori_http_cache_serve(f->c, &rq, handler, &f->a, &f->r), NORI_EBACKEND);
    assert_int_equal(f->r.origin, NORI_HTTP_MISS);
    assert_null(nori_http_response_header(&f->r, "Age"));
    assert_int_equal(stats(f->c).stale_error, 1);
}

/* Lifetimes and clocks at the ends of int64: a max-age of 2^63-1 on a route
 * without a ttl cap, with stale windows, is stored and served; an entry
 * whose lifetime is near 2^63 ms (another writer's: this cache caps what it
 * writes at NORI_MAX_TTL) read at the far end of the clock is classified
 * without overflow (UBSan aborts on a signed overflow in the sanitizer
 * build; in the normal one the wrapped sum made the entry a miss). */
static void test_lifetime_extremes(void **state)
{
    fixture *f = *state;
    nori_http_cache_free(f->c);
    f->c = make_cache(f->b, 0, 30, 60, NULL, 0);
    static const char *const cc[] = {"max-age=9223372036854775807",
                                     "s-maxage=99999999999999999999999, max-age=1",
                                     "max-age=9223372036854775"};
    for (size_t i = 0; i < sizeof cc / sizeof cc[0]; i++) {
        char path[16];
        snprintf(path, sizeof path, "/huge%zu", i);
        f->a.h_name = "Cache-Control";
        f->a.h_value = cc[i];
        assert_int_equal(serve(f, path), NORI_HTTP_MISS);
        if (serve(f, path) != NORI_HTTP_HIT)
            fail_msg("Cache-Control: %s was not stored", cc[i]);
    }
    /* Stored at 0, fresh for 2^63-6 ms, read at 2^63-2: past the lifetime,
     * within the stale window (whose end saturates at 2^63-1). */
    nori_http_response e;
    nori_http_response_init(&e);
    assert_nori(nori_http_response_set_body(&e, "far", 3), NORI_OK);
    nori__entry_meta m = NORI__META(0, INT64_MAX - 5);
    nori_buf enc;
    assert_nori(nori__entry_encode_binary_meta(&e, &m, &enc), NORI_OK);
    assert_nori(nori_backend_set(f->b, "view:/end:", enc.data, enc.len, 0), NORI_OK);
    nori_buf_free(&enc);
    nori_http_response_clear(&e);
    f->a.gated = 1; /* the refresh waits: nothing else reads the clock meanwhile */
    atomic_store(&fake_now, INT64_MAX - 1);
    assert_int_equal(serve(f, "/end"), NORI_HTTP_STALE);
    expect_body(&f->r, "far");
    pthread_mutex_lock(&f->a.gate_lock);
    f->a.gate_open = 1;
    pthread_cond_broadcast(&f->a.gate_cond);
    pthread_mutex_unlock(&f->a.gate_lock);
    for (int i = 0; i < 5000 && stats(f->c).refreshes < 1; i++) {
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(stats(f->c).refreshes, 1);
    assert_int_equal(serve(f, "/end"), NORI_HTTP_HIT);
    expect_body(&f->r, "run 4");
}

/* ---- a write while a fill is running ---- */

/* A "database" with a version that writes bump; a GET's handler reads the
 * version first, then (on its first run only, when the test holds it)
 * waits before answering, as a slow query would. */
typedef struct {
    _Atomic int version;
    _Atomic int runs;
    _Atomic int first_inside; /* the first run has read the version */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int hold_first, released;
} db_app;

static void db_release(db_app *d)
{
    pthread_mutex_lock(&d->lock);
    d->released = 1;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

static int db_handler(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    db_app *d = ud;
    if (strcmp(req->method, "GET") != 0) {
        atomic_fetch_add(&d->version, 1);
        resp->status = 201;
        return nori_http_response_set_body(resp, "written", 7);
    }
    int run = atomic_fetch_add(&d->runs, 1) + 1;
    int v = atomic_load(&d->version);
    if (run == 1 && d->hold_first) {
        atomic_store(&d->first_inside, 1);
        pthread_mutex_lock(&d->lock);
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 30; /* bounded */
        while (!d->released && pthread_cond_timedwait(&d->cond, &d->lock, &dl) == 0)
            ;
        pthread_mutex_unlock(&d->lock);
    }
    char body[32];
    int n = snprintf(body, sizeof body, "version %d", v);
    return nori_http_response_set_body(resp, body, (size_t)n);
}

typedef struct {
    nori_http_cache *c;
    db_app *d;
    _Atomic int done;
    char body[32];
} db_get;

static void *db_get_thread(void *p)
{
    db_get *g = p;
    nori_http_request rq = {"GET", "/w", "", NULL, NULL, NULL, 0, NULL};
    nori_http_response r;
    nori_http_response_init(&r);
    if (nori_http_cache_serve(g->c, &rq, db_handler, g->d, &r) == NORI_OK &&
        r.body_len < sizeof g->body) {
        memcpy(g->body, r.body, r.body_len);
        g->body[r.body_len] = '\0';
    }
    nori_http_response_clear(&r);
    atomic_store(&g->done, 1);
    return NULL;
}

static bool wait_flag(_Atomic int *flag, int ms)
{
    for (int i = 0; i < ms && !atomic_load(flag); i++) {
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    return atomic_load(flag) != 0;
}

/* A GET whose handler read the data before a successful POST to its path,
 * and answers after it: once the POST has returned, no GET is answered with
 * what that fill produced: not from the cache, and not by joining the fill
 * (the entry it stores would outlive the POST's invalidation for the whole
 * ttl, and the client that wrote would read its write back as the old body). */
static void test_write_during_fill(void **state)
{
    fixture *f = *state;
    nori_http_cache_free(f->c);
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = f->b;
    o.lock_timeout_ms = 60000; /* a waiter would wait for the held fill */
    assert_nori(nori_http_cache_new(&o, &f->c), NORI_OK);
    db_app d = {.hold_first = 1};
    pthread_mutex_init(&d.lock, NULL);
    pthread_cond_init(&d.cond, NULL);
    db_get first = {.c = f->c, .d = &d}, after = {.c = f->c, .d = &d};
    pthread_t t1, t2;
    assert_int_equal(pthread_create(&t1, NULL, db_get_thread, &first), 0);
    assert_true(wait_flag(&d.first_inside, 10000));
    nori_http_request post = {"POST", "/w", "", NULL, NULL, NULL, 0, NULL};
    assert_nori(nori_http_cache_serve(f->c, &post, db_handler, &d, &f->r), NORI_OK);
    assert_int_equal(f->r.status, 201);
    /* The POST has returned. A GET now must not wait for the old fill:
     * it is answered while that fill is still held. */
    assert_int_equal(pthread_create(&t2, NULL, db_get_thread, &after), 0);
    bool answered_while_held = wait_flag(&after.done, 10000);
    db_release(&d);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    assert_string_equal(first.body, "version 0"); /* it came before the POST */
    assert_string_equal(after.body, "version 1");
    assert_true(answered_while_held);
    /* And the old fill's response was not stored. */
    nori_http_request get = {"GET", "/w", "", NULL, NULL, NULL, 0, NULL};
    assert_nori(nori_http_cache_serve(f->c, &get, db_handler, &d, &f->r), NORI_OK);
    expect_body(&f->r, "version 1");
    pthread_mutex_destroy(&d.lock);
    pthread_cond_destroy(&d.cond);
}

/* A write to another path whose scope shares the fill's generation bucket
 * does not cost the fill its store (the bucket remembers which scopes its
 * last writes were for); five writes to such paths meanwhile, more than it
 * remembers, do (the safe side). */
static void test_write_to_bucket_neighbour(void **state)
{
    fixture *f = *state;
    nori_http_cache_free(f->c);
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = f->b;
    assert_nori(nori_http_cache_new(&o, &f->c), NORI_OK);
    char neighbour[5][32];
    int found = 0;
    unsigned want = nori__gen_bucket("view:/w:");
    for (int i = 0; found < 5 && i < 1000000; i++) {
        char scope[48];
        snprintf(neighbour[found], sizeof neighbour[found], "/n%d", i);
        snprintf(scope, sizeof scope, "view:%s:", neighbour[found]);
        if (nori__gen_bucket(scope) == want)
            found++;
    }
    assert_int_equal(found, 5);
    for (int writes = 1; writes <= 5; writes += 4) {
        db_app d = {.hold_first = 1};
        pthread_mutex_init(&d.lock, NULL);
        pthread_cond_init(&d.cond, NULL);
        db_get first = {.c = f->c, .d = &d};
        pthread_t t1;
        assert_int_equal(pthread_create(&t1, NULL, db_get_thread, &first), 0);
        assert_true(wait_flag(&d.first_inside, 10000));
        for (int k = 0; k < writes; k++) {
            nori_http_request post = {"POST", neighbour[k], "", NULL, NULL, NULL, 0, NULL};
            assert_nori(nori_http_cache_serve(f->c, &post, db_handler, &d, &f->r), NORI_OK);
        }
        db_release(&d);
        pthread_join(t1, NULL);
        assert_string_equal(first.body, "version 0");
        nori_http_request get = {"GET", "/w", "", NULL, NULL, NULL, 0, NULL};
        assert_nori(nori_http_cache_serve(f->c, &get, db_handler, &d, &f->r), NORI_OK);
        if (writes == 1) {
            assert_int_equal(f->r.origin, NORI_HTTP_HIT);
            expect_body(&f->r, "version 0");
        } else {
            assert_int_equal(f->r.origin, NORI_HTTP_MISS);
            expect_body(&f->r, "version 5");
        }
        nori_http_request del = {"POST", "/w", "", NULL, NULL, NULL, 0, NULL};
        assert_nori(nori_http_cache_serve(f->c, &del, db_handler, &d, &f->r), NORI_OK);
        pthread_mutex_destroy(&d.lock);
        pthread_cond_destroy(&d.cond);
    }
}

/* Paths whose scopes ("view:<path>:") share /w's generation bucket. */
static void bucket_neighbours(char (*out)[32], int n)
{
    int found = 0;
    unsigned want = nori__gen_bucket("view:/w:");
    for (int i = 0; found < n && i < 10000000; i++) {
        char scope[48];
        snprintf(out[found], sizeof out[found], "/n%d", i);
        snprintf(scope, sizeof scope, "view:%s:", out[found]);
        if (nori__gen_bucket(scope) == want)
            found++;
    }
    assert_int_equal(found, n);
}

/* The same on a shared backend (a shm segment), the writes coming from
 * another cache on it, as from another process: this process knows nothing
 * of them, and only the generation key tells. A write to a neighbour of /w
 * leaves the held fill its store; a write to /w itself, or more writes to
 * neighbours than the key keeps (8), does not. */
static void test_shared_bucket_neighbour(void **state)
{
    fixture *f = *state;
    char name[64];
    snprintf(name, sizeof name, "nori-test-gen-%ld", (long)getpid());
    (void)nori_shm_backend_unlink(name);
    nori_backend *shm;
    assert_nori(nori_shm_backend_new(name, 1000, 4 << 20, &shm), NORI_OK);
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = shm;
    nori_http_cache *here, *other;
    assert_nori(nori_http_cache_new(&o, &here), NORI_OK);
    assert_nori(nori_http_cache_new(&o, &other), NORI_OK);
    char neighbour[9][32];
    bucket_neighbours(neighbour, 9);
    const struct {
        int writes;      /* POSTs by the other cache while the fill is held */
        bool own;        /* ... to /w itself */
        bool stored;     /* the fill's response is stored */
    } cases[] = {{1, false, true}, {3, false, true}, {1, true, false}, {9, false, false}};
    int version = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        db_app d = {.hold_first = 1, .version = version};
        pthread_mutex_init(&d.lock, NULL);
        pthread_cond_init(&d.cond, NULL);
        db_get first = {.c = here, .d = &d};
        pthread_t t1;
        assert_int_equal(pthread_create(&t1, NULL, db_get_thread, &first), 0);
        assert_true(wait_flag(&d.first_inside, 10000));
        for (int k = 0; k < cases[i].writes; k++) {
            nori_http_request post = {"POST", cases[i].own ? "/w" : neighbour[k], "", NULL,
                                      NULL, NULL, 0, NULL};
            assert_nori(nori_http_cache_serve(other, &post, db_handler, &d, &f->r), NORI_OK);
        }
        db_release(&d);
        pthread_join(t1, NULL);
        char want[32];
        snprintf(want, sizeof want, "version %d", version);
        assert_string_equal(first.body, want);
        nori_http_request get = {"GET", "/w", "", NULL, NULL, NULL, 0, NULL};
        assert_nori(nori_http_cache_serve(here, &get, db_handler, &d, &f->r), NORI_OK);
        assert_int_equal(f->r.origin, cases[i].stored ? NORI_HTTP_HIT : NORI_HTTP_MISS);
        if (cases[i].stored)
            expect_body(&f->r, want);
        /* The next case starts with /w not cached. */
        nori_http_request del = {"POST", "/w", "", NULL, NULL, NULL, 0, NULL};
        assert_nori(nori_http_cache_serve(here, &del, db_handler, &d, &f->r), NORI_OK);
        version = d.version;
        pthread_mutex_destroy(&d.lock);
        pthread_cond_destroy(&d.cond);
    }
    nori_http_cache_free(here);
    nori_http_cache_free(other);
    nori_backend_free(shm);
    assert_nori(nori_shm_backend_unlink(name), NORI_OK);
}

/* ---- a refresh that comes after another refresh of the same entry ----
 *
 * A backend in front of the memory backend whose reads on a marked thread
 * stop after reading, until the test lets them go: the test then decides
 * what happens between a request's read of a stale entry and its request
 * for a refresh. */
typedef struct {
    nori_backend base; /* must be first */
    nori_backend *inner;
} held_backend;

static _Thread_local int tl_hold_reads;
static _Atomic int held_read; /* a marked read has read */
static _Atomic int reads_go;  /* the marked read may return */

#define INNER(b) (((held_backend *)(b))->inner)

static int held_get(nori_backend *b, const char *key, size_t klen, nori_buf *out)
{
    int rc = INNER(b)->ops->get(INNER(b), key, klen, out);
    if (tl_hold_reads) {
        atomic_store(&held_read, 1);
        wait_flag(&reads_go, 30000);
    }
    return rc;
}
static int held_set(nori_backend *b, const char *key, size_t klen, const void *val, size_t len,
                    int64_t ttl)
{
    return INNER(b)->ops->set(INNER(b), key, klen, val, len, ttl);
}
static int held_del(nori_backend *b, const char *key, size_t klen)
{
    return INNER(b)->ops->del(INNER(b), key, klen);
}
static int held_delete_prefix(nori_backend *b, const char *prefix, size_t plen)
{
    return INNER(b)->ops->delete_prefix(INNER(b), prefix, plen);
}
static int held_incr(nori_backend *b, const char *key, size_t klen, int64_t ttl, int64_t *out)
{
    return INNER(b)->ops->incr(INNER(b), key, klen, ttl, out);
}
static int held_update(nori_backend *b, const char *key, size_t klen, nori_update_fn fn,
                       void *ud, int64_t ttl, nori_buf *out)
{
    return INNER(b)->ops->atomic_update(INNER(b), key, klen, fn, ud, ttl, out);
}
static int held_verify(nori_backend *b)
{
    return INNER(b)->ops->verify(INNER(b));
}
static int held_add(nori_backend *b, const char *key, size_t klen, const void *val, size_t len,
                    int64_t ttl_ms, int *added)
{
    return INNER(b)->ops->add(INNER(b), key, klen, val, len, ttl_ms, added);
}
static int held_delete_if_equal(nori_backend *b, const char *key, size_t klen, const void *val,
                                size_t len, int *deleted)
{
    return INNER(b)->ops->delete_if_equal(INNER(b), key, klen, val, len, deleted);
}
static void held_stats(nori_backend *b, nori_backend_stats *out)
{
    INNER(b)->ops->stats(INNER(b), out);
}
static void held_destroy(nori_backend *b)
{
    nori_backend_free(INNER(b));
    free(b);
}

static const nori_backend_ops held_ops = {
    .kind = "memory", /* entries in the memory backend's format */
    .get = held_get,
    .set = held_set,
    .del = held_del,
    .delete_prefix = held_delete_prefix,
    .incr = held_incr,
    .atomic_update = held_update,
    .verify = held_verify,
    .add = held_add,
    .delete_if_equal = held_delete_if_equal,
    .stats = held_stats,
    .destroy = held_destroy,
};

static nori_backend *held_backend_new(void)
{
    held_backend *h = calloc(1, sizeof *h);
    assert_non_null(h);
    assert_nori(nori_memory_backend_new(100, &h->inner), NORI_OK);
    nori__backend_init(&h->base, &held_ops);
    return &h->base;
}

typedef struct {
    _Atomic int r, m;
} path_runs;

static int counting_handler(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    path_runs *p = ud;
    int run = atomic_fetch_add(strcmp(req->path, "/r") == 0 ? &p->r : &p->m, 1) + 1;
    char body[32];
    int n = snprintf(body, sizeof body, "%s run %d", req->path, run);
    return nori_http_response_set_body(resp, body, (size_t)n);
}

typedef struct {
    nori_http_cache *c;
    path_runs *runs;
    nori_http_origin origin;
} held_request;

static void *held_request_thread(void *p)
{
    held_request *h = p;
    tl_hold_reads = 1;
    nori_http_request rq = {"GET", "/r", "", NULL, NULL, NULL, 0, NULL};
    nori_http_response r;
    nori_http_response_init(&r);
    if (nori_http_cache_serve(h->c, &rq, counting_handler, h->runs, &r) == NORI_OK)
        h->origin = r.origin;
    nori_http_response_clear(&r);
    return NULL;
}

/* Request B reads the stale entry; meanwhile request A's refresh of that
 * entry runs and stores a new one; then B asks for its refresh. The entry
 * B saw stale is already replaced: B's refresh must not run the handler a
 * second time. A marker refresh of another path, queued after B's on the
 * single refresh thread, tells when B's refresh is over. */
static void test_refresh_after_refresh(void **state)
{
    fixture *f = *state;
    nori_backend *b = held_backend_new();
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = b;
    o.ttl = 10;
    o.stale_while_revalidate = 30;
    o.refresh_threads = 1; /* one queue, in order */
    nori_http_cache *c;
    assert_nori(nori_http_cache_new(&o, &c), NORI_OK);
    path_runs runs = {0, 0};
    nori_http_request r_req = {"GET", "/r", "", NULL, NULL, NULL, 0, NULL};
    nori_http_request m_req = {"GET", "/m", "", NULL, NULL, NULL, 0, NULL};
    assert_nori(nori_http_cache_serve(c, &r_req, counting_handler, &runs, &f->r), NORI_OK);
    assert_nori(nori_http_cache_serve(c, &m_req, counting_handler, &runs, &f->r), NORI_OK);
    advance(15000); /* both stale, within the window */

    atomic_store(&held_read, 0);
    atomic_store(&reads_go, 0);
    held_request hb = {c, &runs, NORI_HTTP_BYPASS};
    pthread_t tb;
    assert_int_equal(pthread_create(&tb, NULL, held_request_thread, &hb), 0);
    assert_true(wait_flag(&held_read, 10000)); /* B has read the stale entry */
    /* A: stale answer, and a refresh that runs and stores a new entry. */
    assert_nori(nori_http_cache_serve(c, &r_req, counting_handler, &runs, &f->r), NORI_OK);
    assert_int_equal(f->r.origin, NORI_HTTP_STALE);
    nori_http_cache_stats s;
    for (int i = 0; i < 10000; i++) {
        nori_http_cache_get_stats(c, &s);
        if (s.refreshes >= 1)
            break;
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(s.refreshes, 1);
    assert_int_equal(atomic_load(&runs.r), 2);
    /* B goes on with what it read: a stale answer, and a refresh request. */
    atomic_store(&reads_go, 1);
    pthread_join(tb, NULL);
    assert_int_equal(hb.origin, NORI_HTTP_STALE);
    /* The marker: /m's refresh is queued after B's. */
    assert_nori(nori_http_cache_serve(c, &m_req, counting_handler, &runs, &f->r), NORI_OK);
    assert_int_equal(f->r.origin, NORI_HTTP_STALE);
    for (int i = 0; i < 10000 && atomic_load(&runs.m) < 2; i++) {
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(atomic_load(&runs.m), 2);
    assert_int_equal(atomic_load(&runs.r), 2); /* B's refresh ran nothing */
    assert_nori(nori_http_cache_serve(c, &r_req, counting_handler, &runs, &f->r), NORI_OK);
    assert_int_equal(f->r.origin, NORI_HTTP_HIT);
    expect_body(&f->r, "/r run 2");
    nori_http_cache_free(c);
    nori_backend_free(b);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_stale_while_revalidate), T(test_stale_if_error), T(test_conditional),
        T(test_lifetime),               T(test_invalidation),
        T(test_stale_if_error_at_answer_time), T(test_lifetime_extremes),
        T(test_write_during_fill),      T(test_write_to_bucket_neighbour), T(test_shared_bucket_neighbour),
        T(test_refresh_after_refresh),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
