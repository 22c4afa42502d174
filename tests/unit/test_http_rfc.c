// SPDX-License-Identifier: MIT
/* The response cache by RFC 9111, served end to end through
 * nori_http_cache_serve() on a test clock: headers replayed, Age,
 * revalidation with 304 updates, no-cache, must-revalidate and stale
 * windows, Vary variants, invalidation of locations, ranges, what a route
 * tells downstream caches, bounds, and entries of the previous version.
 * Each case runs on the memory backend (binary records) and on a probe
 * backend that keeps Nori's JSON entries (as Redis does). */
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

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static _Atomic int64_t fake_now = 1700000000000;
static int64_t fake_clock(void)
{
    return atomic_load(&fake_now);
}
static void advance(int64_t ms)
{
    atomic_fetch_add(&fake_now, ms);
}

/* ------------------------------------------------ a JSON-entry backend */

typedef struct {
    nori_backend base;
    nori_backend *inner;
} json_backend;

#define INNER(b) (((json_backend *)(b))->inner)
static int j_get(nori_backend *b, const char *key, size_t klen, nori_buf *out)
{
    return INNER(b)->ops->get(INNER(b), key, klen, out);
}
static int j_set(nori_backend *b, const char *key, size_t klen, const void *val, size_t len,
                 int64_t ttl)
{
    return INNER(b)->ops->set(INNER(b), key, klen, val, len, ttl);
}
static int j_del(nori_backend *b, const char *key, size_t klen)
{
    return INNER(b)->ops->del(INNER(b), key, klen);
}
static int j_delete_prefix(nori_backend *b, const char *prefix, size_t plen)
{
    return INNER(b)->ops->delete_prefix(INNER(b), prefix, plen);
}
static void j_stats(nori_backend *b, nori_backend_stats *out)
{
    INNER(b)->ops->stats(INNER(b), out);
}
static void j_destroy(nori_backend *b)
{
    nori_backend_free(INNER(b));
    free(b);
}
static const nori_backend_ops json_ops = {
    .kind = "json-probe",
    .traits = {.shared = false, .entry_format = NORI__ENTRY_JSON},
    .get = j_get,
    .set = j_set,
    .del = j_del,
    .delete_prefix = j_delete_prefix,
    .stats = j_stats,
    .destroy = j_destroy,
};

/* -------------------------------------------------------- the origin */

#define MAX_H 80

typedef struct {
    int runs;
    int status;
    const char *h[2 * MAX_H + 1]; /* name, value, ..., NULL */
    const char *body;
    int fail;              /* return NORI_EBACKEND */
    int answer_304;        /* 304 (with h304) when the request is conditional */
    const char *h304[16];
    char inm[128], ims[128]; /* what the last request carried */
    char listed[512];        /* the names it enumerated */
} origin;

static int list_name(void *ud, const char *name, const char *value)
{
    (void)value;
    origin *o = ud;
    size_t n = strlen(o->listed);
    snprintf(o->listed + n, sizeof o->listed - n, "%s;", name);
    return 0;
}

static void add_all(nori_http_response *resp, const char *const *h)
{
    for (size_t i = 0; h[i] != NULL; i += 2)
        assert_nori(nori_http_response_add_header(resp, h[i], h[i + 1]), NORI_OK);
}

static int handler(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    origin *o = ud;
    o->runs++;
    const char *inm = nori_http_request_header(req, "If-None-Match");
    const char *ims = nori_http_request_header(req, "If-Modified-Since");
    snprintf(o->inm, sizeof o->inm, "%s", inm ? inm : "");
    snprintf(o->ims, sizeof o->ims, "%s", ims ? ims : "");
    o->listed[0] = '\0';
    nori_http_request_each_header(req, list_name, o);
    if (o->fail)
        return NORI_EBACKEND;
    if (o->answer_304 && (inm != NULL || ims != NULL)) {
        resp->status = 304;
        add_all(resp, o->h304);
        return NORI_OK;
    }
    resp->status = o->status ? o->status : 200;
    add_all(resp, o->h);
    char body[64];
    snprintf(body, sizeof body, "run %d", o->runs);
    const char *b = o->body != NULL ? o->body : body;
    assert_nori(nori_http_response_set_media_type(resp, "text/plain"), NORI_OK);
    return nori_http_response_set_body(resp, b, strlen(b));
}

/* ------------------------------------------------------------ fixture */

typedef struct {
    nori_backend *b;
    nori_http_cache *c;
    origin o;
    nori_http_response r;
    bool json;
} fixture;

static nori_backend *backend_new(bool json)
{
    nori_backend *mem;
    assert_nori(nori_memory_backend_new(1000, &mem), NORI_OK);
    if (!json)
        return mem;
    json_backend *j = calloc(1, sizeof *j);
    assert_non_null(j);
    j->inner = mem;
    nori__backend_init(&j->base, &json_ops);
    return &j->base;
}

static nori_http_cache *cache_new(fixture *f, nori_http_rules rules, int64_t keep,
                                  nori_http_key_fn key_fn)
{
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = f->b;
    o.rules = rules;
    o.ttl = rules == NORI_HTTP_RULES_RFC9111 ? 0 : 60;
    o.keep = keep;
    o.heuristic_percent = rules == NORI_HTTP_RULES_RFC9111 ? 10 : 0;
    o.key_fn = key_fn;
    nori_http_cache *c;
    assert_nori(nori_http_cache_new(&o, &c), NORI_OK);
    return c;
}

static int setup_with(void **state, bool json)
{
    fixture *f = calloc(1, sizeof *f);
    f->json = json;
    f->b = backend_new(json);
    f->c = cache_new(f, NORI_HTTP_RULES_RFC9111, 3600, NULL);
    nori_http_response_init(&f->r);
    atomic_store(&fake_now, 1700000000000);
    nori__clock_override(NULL, &fake_now); /* the wall clock only: HTTP times */
    *state = f;
    return 0;
}
static int setup_binary(void **state)
{
    return setup_with(state, false);
}
static int setup_json(void **state)
{
    return setup_with(state, true);
}

static int teardown(void **state)
{
    fixture *f = *state;
    nori_http_response_clear(&f->r);
    nori_http_cache_free(f->c);
    nori_backend_free(f->b);
    nori__clock_override(NULL, NULL);
    free(f);
    return 0;
}

static int each_of(void *ud, nori_http_header_visit_fn visit, void *visit_ud)
{
    const test_headers *t = ud;
    for (size_t i = 0; i < t->n; i++) {
        int rc = visit(visit_ud, t->h[i].name, t->h[i].value);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static nori_http_origin serve_on(fixture *f, nori_http_cache *c, const char *method,
                                 const char *path, const test_header *h, size_t n)
{
    test_headers t = {h, n};
    nori_http_request rq = {method, path, "", test_header_lookup, &t, NULL, 0, each_of};
    assert_nori(nori_http_cache_serve(c, &rq, handler, &f->o, &f->r), NORI_OK);
    return f->r.origin;
}

static nori_http_origin get(fixture *f, const char *path)
{
    return serve_on(f, f->c, "GET", path, NULL, 0);
}

static const char *hdr(fixture *f, const char *name)
{
    return nori_http_response_header(&f->r, name);
}

static void expect_body(fixture *f, const char *want)
{
    if (f->r.body_len != strlen(want) || memcmp(f->r.body, want, f->r.body_len) != 0)
        fail_msg("body \"%.*s\", expected \"%s\"", (int)f->r.body_len,
                 f->r.body ? f->r.body : "", want);
}

static void set_headers(origin *o, ...)
{
    va_list ap;
    va_start(ap, o);
    size_t i = 0;
    const char *s;
    while ((s = va_arg(ap, const char *)) != NULL && i < 2 * MAX_H)
        o->h[i++] = s;
    o->h[i] = NULL;
    va_end(ap);
}

static nori_http_cache_stats stats(fixture *f)
{
    nori_http_cache_stats s;
    nori_http_cache_get_stats(f->c, &s);
    return s;
}

/* -------------------------------------------------------------- cases */

/* RFC 9111 3.1: every end-to-end header comes back on a hit, in order;
 * the connection's own fields, the fields Connection names, Content-Length
 * and empty lines do not. */
static void test_headers_replayed(void **state)
{
    fixture *f = *state;
    set_headers(&f->o, "Cache-Control", "max-age=60", "X-Total-Count", "42", "Server-Timing",
                "db;dur=53", "Link", "<a>; rel=next", "Connection", "x-hop, Keep-Alive",
                "X-Hop", "1", "Keep-Alive", "timeout=5", "Content-Length", "6", "X-Empty", "",
                "link", "<b>; rel=prev", NULL);
    assert_int_equal(get(f, "/h"), NORI_HTTP_MISS);
    assert_string_equal(hdr(f, "X-Hop"), "1"); /* the miss is the handler's own */
    advance(1000);
    assert_int_equal(get(f, "/h"), NORI_HTTP_HIT);
    assert_int_equal(f->o.runs, 1);
    assert_string_equal(hdr(f, "X-Total-Count"), "42");
    assert_string_equal(hdr(f, "Server-Timing"), "db;dur=53");
    assert_string_equal(hdr(f, "Cache-Control"), "max-age=60");
    assert_string_equal(f->r.media_type, "text/plain");
    static const char *const gone[] = {"Connection", "X-Hop", "Keep-Alive", "Content-Length",
                                       "X-Empty"};
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++)
        if (hdr(f, gone[i]) != NULL)
            fail_msg("%s replayed", gone[i]);
    /* Two Link lines: as they came (binary), or joined (JSON, RFC 9110 5.3). */
    if (f->json) {
        assert_string_equal(hdr(f, "Link"), "<a>; rel=next, <b>; rel=prev");
    } else {
        assert_string_equal(f->r.headers[3].value, "<a>; rel=next");
        assert_string_equal(f->r.headers[4].value, "<b>; rel=prev");
        assert_string_equal(f->r.headers[4].name, "link");
    }
    assert_string_equal(hdr(f, "Age"), "1");
}

/* 4.2.3: the age counts the origin's Age, the handler's time and the time
 * since; a hit says it. */
static void test_age(void **state)
{
    fixture *f = *state;
    set_headers(&f->o, "Cache-Control", "max-age=600", "Age", "30", NULL);
    assert_int_equal(get(f, "/a"), NORI_HTTP_MISS);
    assert_string_equal(hdr(f, "Age"), "30"); /* passed on as it came */
    advance(5000);
    assert_int_equal(get(f, "/a"), NORI_HTTP_HIT);
    assert_string_equal(hdr(f, "Age"), "35");
    size_t ages = 0;
    for (size_t i = 0; i < f->r.n_headers; i++)
        ages += strcasecmp(f->r.headers[i].name, "Age") == 0;
    assert_int_equal(ages, 1);
    /* An Age over the lifetime: stale on arrival, and without a validator
     * not stored. */
    set_headers(&f->o, "Cache-Control", "max-age=600", "Age", "601", NULL);
    assert_int_equal(get(f, "/old"), NORI_HTTP_MISS);
    assert_int_equal(get(f, "/old"), NORI_HTTP_MISS);
    /* An invalid Age: stale. */
    set_headers(&f->o, "Cache-Control", "max-age=600", "Age", "0, 0", NULL);
    assert_int_equal(get(f, "/bad"), NORI_HTTP_MISS);
    assert_int_equal(get(f, "/bad"), NORI_HTTP_MISS);
}

/* 4.3: a stale entry with validators sends them; a 304 refreshes it. */
static void test_revalidation(void **state)
{
    fixture *f = *state;
    set_headers(&f->o, "Cache-Control", "max-age=1", "ETag", "\"v1\"", "Last-Modified",
                "Mon, 01 Jan 2001 00:00:00 GMT", "X-A", "1", "Content-Encoding", "identity",
                NULL);
    f->o.h304[0] = "X-A";
    f->o.h304[1] = "2";
    f->o.h304[2] = "Cache-Control";
    f->o.h304[3] = "max-age=10";
    f->o.h304[4] = "ETag";
    f->o.h304[5] = "\"other\"";
    f->o.h304[6] = "Content-Encoding";
    f->o.h304[7] = "gzip";
    f->o.h304[8] = NULL;
    test_header client[] = {{"If-None-Match", "\"client\""}, {"X-User", "u"}};
    assert_int_equal(serve_on(f, f->c, "GET", "/r", client, 2), NORI_HTTP_MISS);
    expect_body(f, "run 1");
    f->o.answer_304 = 1;
    advance(2000);
    assert_int_equal(serve_on(f, f->c, "GET", "/r", client, 2), NORI_HTTP_HIT);
    assert_int_equal(f->o.runs, 2);
    /* The handler saw the entry's validators, not the client's, in the
     * lookup and the enumeration alike. */
    assert_string_equal(f->o.inm, "\"v1\"");
    assert_string_equal(f->o.ims, "Mon, 01 Jan 2001 00:00:00 GMT");
    assert_string_equal(f->o.listed, "X-User;If-None-Match;If-Modified-Since;");
    assert_int_equal(f->r.status, 200);
    expect_body(f, "run 1");
    assert_string_equal(hdr(f, "X-A"), "2");
    assert_string_equal(hdr(f, "ETag"), "\"v1\"");
    assert_string_equal(hdr(f, "Content-Encoding"), "identity");
    assert_string_equal(hdr(f, "Cache-Control"), "max-age=10");
    assert_string_equal(hdr(f, "Age"), "0");
    nori_http_cache_stats s = stats(f);
    assert_int_equal(s.revalidations, 1);
    assert_int_equal(s.revalidated, 1);
    /* Stored again with the new freshness. */
    advance(9000);
    assert_int_equal(get(f, "/r"), NORI_HTTP_HIT);
    assert_int_equal(f->o.runs, 2);
    assert_string_equal(hdr(f, "X-A"), "2");
    /* A client whose own validator matches the refreshed entry gets 304. */
    advance(2000);
    test_header match[] = {{"If-None-Match", "\"v1\""}};
    assert_int_equal(serve_on(f, f->c, "GET", "/r", match, 1), NORI_HTTP_HIT);
    assert_int_equal(f->r.status, 304);
    assert_int_equal(f->o.runs, 3);
    /* A 200 to the conditional request replaces the entry. */
    advance(11000);
    f->o.answer_304 = 0;
    assert_int_equal(get(f, "/r"), NORI_HTTP_MISS);
    expect_body(f, "run 4");
    assert_int_equal(get(f, "/r"), NORI_HTTP_HIT);
    expect_body(f, "run 4");
}

/* Under the application rules, with keep: the handler's own validator is
 * sent, never the ETag the cache derived from the body. */
static void test_revalidation_app(void **state)
{
    fixture *f = *state;
    nori_http_cache *c = cache_new(f, NORI_HTTP_RULES_APP, 60, NULL);
    set_headers(&f->o, "Cache-Control", "max-age=1", "Last-Modified",
                "Mon, 01 Jan 2001 00:00:00 GMT", NULL);
    f->o.answer_304 = 1;
    f->o.h304[0] = NULL;
    assert_int_equal(serve_on(f, c, "GET", "/app", NULL, 0), NORI_HTTP_MISS);
    assert_non_null(hdr(f, "ETag")); /* derived */
    advance(2000);
    assert_int_equal(serve_on(f, c, "GET", "/app", NULL, 0), NORI_HTTP_HIT);
    assert_string_equal(f->o.inm, "");
    assert_string_equal(f->o.ims, "Mon, 01 Jan 2001 00:00:00 GMT");
    expect_body(f, "run 1");
    nori_http_cache_free(c);
    /* Without keep the stale entry is gone: a plain miss. */
    c = cache_new(f, NORI_HTTP_RULES_APP, 0, NULL);
    assert_int_equal(serve_on(f, c, "GET", "/app0", NULL, 0), NORI_HTTP_MISS);
    advance(2000);
    assert_int_equal(serve_on(f, c, "GET", "/app0", NULL, 0), NORI_HTTP_MISS);
    assert_string_equal(f->o.ims, "");
    nori_http_cache_free(c);
}

/* no-cache: stored, validated before every use. */
static void test_no_cache(void **state)
{
    fixture *f = *state;
    set_headers(&f->o, "Cache-Control", "no-cache", "ETag", "\"n\"", NULL);
    f->o.answer_304 = 1;
    f->o.h304[0] = NULL;
    assert_int_equal(get(f, "/nc"), NORI_HTTP_MISS);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(get(f, "/nc"), NORI_HTTP_HIT);
        assert_string_equal(f->o.inm, "\"n\"");
        expect_body(f, "run 1");
    }
    assert_int_equal(f->o.runs, 4);
    /* Without a validator there is nothing to validate with: not stored. */
    set_headers(&f->o, "Cache-Control", "no-cache", NULL);
    assert_int_equal(get(f, "/nc2"), NORI_HTTP_MISS);
    assert_int_equal(get(f, "/nc2"), NORI_HTTP_MISS);
}

/* Stale answers: the response's own stale-if-error counts; must-revalidate
 * (and s-maxage, no-cache) forbid any, the route's window included. */
static void test_stale_rules(void **state)
{
    fixture *f = *state;
    set_headers(&f->o, "Cache-Control", "max-age=1, stale-if-error=60", NULL);
    assert_int_equal(get(f, "/sie"), NORI_HTTP_MISS);
    advance(5000);
    f->o.status = 503;
    assert_int_equal(get(f, "/sie"), NORI_HTTP_STALE);
    assert_int_equal(f->r.status, 200);
    expect_body(f, "run 1");
    f->o.status = 0;
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = f->b;
    o.rules = NORI_HTTP_RULES_RFC9111;
    o.stale_if_error = 60;
    o.prefix = "sie";
    nori_http_cache *c;
    assert_nori(nori_http_cache_new(&o, &c), NORI_OK);
    static const char *const strict[] = {"max-age=1, must-revalidate",
                                         "max-age=1, proxy-revalidate", "s-maxage=1"};
    for (size_t i = 0; i < 3; i++) {
        char path[16];
        snprintf(path, sizeof path, "/mr%zu", i);
        set_headers(&f->o, "Cache-Control", strict[i], NULL);
        f->o.status = 0;
        assert_int_equal(serve_on(f, c, "GET", path, NULL, 0), NORI_HTTP_MISS);
        advance(5000);
        f->o.status = 503;
        assert_int_equal(serve_on(f, c, "GET", path, NULL, 0), NORI_HTTP_MISS);
        assert_int_equal(f->r.status, 503);
    }
    set_headers(&f->o, "Cache-Control", "max-age=1", NULL);
    f->o.status = 0;
    assert_int_equal(serve_on(f, c, "GET", "/ok", NULL, 0), NORI_HTTP_MISS);
    advance(5000);
    f->o.status = 503;
    assert_int_equal(serve_on(f, c, "GET", "/ok", NULL, 0), NORI_HTTP_STALE);
    nori_http_cache_free(c);
}

/* 4.1: variants, selected by the request's values for the names Vary lists. */
static void test_vary(void **state)
{
    fixture *f = *state;
    set_headers(&f->o, "Cache-Control", "max-age=60", "Vary", "X-Lang, Accept-Language", NULL);
    test_header fr[] = {{"X-Lang", "fr"}, {"Accept-Language", "fr, en"}};
    test_header fr2[] = {{"x-lang", "fr"}, {"accept-language", "FR,EN"}};
    test_header de[] = {{"X-Lang", "de"}, {"Accept-Language", "fr, en"}};
    test_header none[] = {{"Other", "1"}};
    assert_int_equal(serve_on(f, f->c, "GET", "/v", fr, 2), NORI_HTTP_MISS);
    assert_int_equal(serve_on(f, f->c, "GET", "/v", fr2, 2), NORI_HTTP_HIT);
    expect_body(f, "run 1");
    assert_string_equal(hdr(f, "Vary"), "X-Lang, Accept-Language");
    assert_int_equal(serve_on(f, f->c, "GET", "/v", de, 2), NORI_HTTP_MISS);
    assert_int_equal(serve_on(f, f->c, "GET", "/v", none, 1), NORI_HTTP_MISS);
    assert_int_equal(serve_on(f, f->c, "GET", "/v", de, 2), NORI_HTTP_HIT);
    expect_body(f, "run 2");
    assert_int_equal(serve_on(f, f->c, "GET", "/v", none, 1), NORI_HTTP_HIT);
    expect_body(f, "run 3");
    assert_int_equal(f->o.runs, 3);
    /* A HEAD finds the variant too. */
    assert_int_equal(serve_on(f, f->c, "HEAD", "/v", de, 2), NORI_HTTP_HIT);
    /* The names record is bounded by the names, not the values: a flood of
     * distinct values is distinct entries of the backend. */
    nori_buf v;
    assert_nori(nori_backend_get(f->b, "view:/v::vary", &v), NORI_OK);
    assert_int_equal(v.len, strlen("accept-language,x-lang"));
    nori_buf_free(&v);
    /* A response that stops varying: stored at the URL's own key. */
    set_headers(&f->o, "Cache-Control", "max-age=60", NULL);
    assert_int_equal(serve_on(f, f->c, "GET", "/w", fr, 2), NORI_HTTP_MISS);
    assert_int_equal(serve_on(f, f->c, "GET", "/w", de, 2), NORI_HTTP_HIT);
    /* A corrupt names record is ignored (counted). */
    uint64_t errors = stats(f).errors;
    assert_nori(nori_backend_set(f->b, "view:/x::vary", "a b", 3, 0), NORI_OK);
    assert_int_equal(get(f, "/x"), NORI_HTTP_MISS);
    assert_true(stats(f).errors > errors);
}

/* 4.4: unsafe methods invalidate their path and their locations on the
 * same origin, never another host's. */
static void test_invalidation(void **state)
{
    fixture *f = *state;
    set_headers(&f->o, "Cache-Control", "max-age=60", NULL);
    static const char *const paths[] = {"/p", "/a/loc", "/a/cl", "/other", "/a/rel", "/a/b"};
    for (size_t i = 0; i < 6; i++)
        get(f, paths[i]);
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(get(f, paths[i]), NORI_HTTP_HIT);
    set_headers(&f->o, "Location", "/a/loc?x=1", "Content-Location", "http://Example.COM/a/cl",
                NULL);
    test_header host[] = {{"Host", "example.com"}};
    assert_int_equal(serve_on(f, f->c, "M-SEARCH", "/p", host, 1), NORI_HTTP_BYPASS);
    assert_int_equal(stats(f).invalidations, 3);
    set_headers(&f->o, "Cache-Control", "max-age=60", NULL);
    assert_int_equal(get(f, "/p"), NORI_HTTP_MISS);
    assert_int_equal(get(f, "/a/loc"), NORI_HTTP_MISS);
    assert_int_equal(get(f, "/a/cl"), NORI_HTTP_MISS);
    assert_int_equal(get(f, "/other"), NORI_HTTP_HIT);
    /* Another host, a relative reference, dot segments. */
    set_headers(&f->o, "Location", "http://evil.example/other", "Content-Location", "rel",
                NULL);
    assert_int_equal(serve_on(f, f->c, "POST", "/a/b", host, 1), NORI_HTTP_BYPASS);
    set_headers(&f->o, "Cache-Control", "max-age=60", NULL);
    assert_int_equal(get(f, "/other"), NORI_HTTP_HIT);
    assert_int_equal(get(f, "/a/rel"), NORI_HTTP_MISS);
    set_headers(&f->o, "Location", "/a/../other", NULL);
    assert_int_equal(serve_on(f, f->c, "PUT", "/a/b", host, 1), NORI_HTTP_BYPASS);
    set_headers(&f->o, "Cache-Control", "max-age=60", NULL);
    assert_int_equal(get(f, "/other"), NORI_HTTP_HIT);
    /* A failed write invalidates nothing; safe methods never. */
    get(f, "/p");
    f->o.status = 500;
    serve_on(f, f->c, "DELETE", "/p", NULL, 0);
    f->o.status = 0;
    serve_on(f, f->c, "OPTIONS", "/p", NULL, 0);
    assert_int_equal(get(f, "/p"), NORI_HTTP_HIT);
}

/* Ranges of a stored 200 (RFC 9111 rules only). */
static void test_ranges(void **state)
{
    fixture *f = *state;
    set_headers(&f->o, "Cache-Control", "max-age=60", NULL);
    f->o.body = "01234567890";
    test_header r[] = {{"Range", "bytes=0-1"}};
    assert_int_equal(get(f, "/rg"), NORI_HTTP_MISS);
    assert_int_equal(serve_on(f, f->c, "GET", "/rg", r, 1), NORI_HTTP_HIT);
    assert_int_equal(f->r.status, 206);
    expect_body(f, "01");
    assert_string_equal(hdr(f, "Content-Range"), "bytes 0-1/11");
    /* The stored entry is whole. */
    assert_int_equal(get(f, "/rg"), NORI_HTTP_HIT);
    expect_body(f, "01234567890");
    /* A miss that stores answers the range too. */
    assert_int_equal(serve_on(f, f->c, "GET", "/rg2", r, 1), NORI_HTTP_MISS);
    assert_int_equal(f->r.status, 206);
    /* The application rules send the whole 200. */
    nori_http_cache *c = cache_new(f, NORI_HTTP_RULES_APP, 0, NULL);
    serve_on(f, c, "GET", "/rg", NULL, 0);
    assert_int_equal(serve_on(f, c, "GET", "/rg", r, 1), NORI_HTTP_HIT);
    assert_int_equal(f->r.status, 200);
    nori_http_cache_free(c);
}

/* A 206 from the handler is kept for its request's range only, replayed as
 * it came (RFC 9111 rules); never for another range, nor for the
 * resource. */
static void test_range_entries(void **state)
{
    fixture *f = *state;
    f->o.status = 206;
    f->o.body = "01234";
    set_headers(&f->o, "Cache-Control", "max-age=60", "Content-Range", "bytes 5-9/10", NULL);
    test_header last5[] = {{"Range", "bytes=-5"}};
    test_header other[] = {{"Range", "bytes=0-1"}};
    test_header if_range[] = {{"Range", "bytes=-5"}, {"If-Range", "\"x\""}};
    assert_int_equal(serve_on(f, f->c, "GET", "/part", last5, 1), NORI_HTTP_MISS);
    assert_int_equal(serve_on(f, f->c, "GET", "/part", last5, 1), NORI_HTTP_HIT);
    assert_int_equal(f->r.status, 206);
    expect_body(f, "01234");
    assert_string_equal(hdr(f, "Content-Range"), "bytes 5-9/10");
    assert_int_equal(f->o.runs, 1);
    assert_int_equal(serve_on(f, f->c, "GET", "/part", other, 1), NORI_HTTP_MISS);
    assert_int_equal(serve_on(f, f->c, "GET", "/part", if_range, 2), NORI_HTTP_MISS);
    f->o.status = 200;
    f->o.body = "0123456789";
    set_headers(&f->o, "Cache-Control", "max-age=60", NULL);
    assert_int_equal(get(f, "/part"), NORI_HTTP_MISS);
    expect_body(f, "0123456789");
    /* The whole resource, once stored, answers the ranges. */
    assert_int_equal(serve_on(f, f->c, "GET", "/part", other, 1), NORI_HTTP_HIT);
    expect_body(f, "01");
    /* A 206 without Content-Range, or to a request without a range, or
     * under the application rules: not kept. */
    f->o.status = 206;
    assert_int_equal(serve_on(f, f->c, "GET", "/p2", last5, 1), NORI_HTTP_MISS);
    assert_int_equal(serve_on(f, f->c, "GET", "/p2", last5, 1), NORI_HTTP_MISS);
    set_headers(&f->o, "Cache-Control", "max-age=60", "Content-Range", "bytes 0-1/10", NULL);
    assert_int_equal(get(f, "/p3"), NORI_HTTP_MISS);
    assert_int_equal(get(f, "/p3"), NORI_HTTP_MISS);
    nori_http_cache *c = cache_new(f, NORI_HTTP_RULES_APP, 0, NULL);
    assert_int_equal(serve_on(f, c, "GET", "/p4", last5, 1), NORI_HTTP_MISS);
    assert_int_equal(serve_on(f, c, "GET", "/p4", last5, 1), NORI_HTTP_MISS);
    nori_http_cache_free(c);
}

/* RFC 9110 9.3.3: a POST's answer that names its own target in
 * Content-Location and states its freshness is reused by the GETs. */
static void test_post_reused(void **state)
{
    fixture *f = *state;
    set_headers(&f->o, "Cache-Control", "max-age=60", NULL);
    assert_int_equal(get(f, "/form"), NORI_HTTP_MISS);
    set_headers(&f->o, "Expires", "Thu, 01 Jan 2099 00:00:00 GMT", "Content-Location", "/form",
                NULL);
    assert_int_equal(serve_on(f, f->c, "POST", "/form", NULL, 0), NORI_HTTP_BYPASS);
    assert_int_equal(get(f, "/form"), NORI_HTTP_HIT);
    expect_body(f, "run 2");
    /* Another target, no freshness, a cookie the GET would bypass on, the
     * application rules: not reused (the POST still invalidates). */
    static const char *const not_reused[][4] = {
        {"Content-Location", "/elsewhere", "Expires", "Thu, 01 Jan 2099 00:00:00 GMT"},
        {"Content-Location", "/form", "X", "y"},
        {"Content-Location", "/form?a=1", "Cache-Control", "max-age=60"},
    };
    for (size_t i = 0; i < 3; i++) {
        set_headers(&f->o, not_reused[i][0], not_reused[i][1], not_reused[i][2],
                    not_reused[i][3], NULL);
        serve_on(f, f->c, "POST", "/form", NULL, 0);
        set_headers(&f->o, NULL);
        if (get(f, "/form") != NORI_HTTP_MISS)
            fail_msg("case %zu reused", i);
    }
    nori_http_cache *c = cache_new(f, NORI_HTTP_RULES_APP, 0, NULL);
    set_headers(&f->o, "Content-Location", "/form", "Cache-Control", "max-age=60", NULL);
    serve_on(f, c, "POST", "/form", NULL, 0);
    assert_int_equal(serve_on(f, c, "GET", "/form", NULL, 0), NORI_HTTP_MISS);
    nori_http_cache_free(c);
}

static int user_key(const nori_http_request *req, void *ud, char *out, size_t cap)
{
    (void)ud;
    const char *u = nori_http_request_header(req, "X-User");
    return u == NULL ? -1 : snprintf(out, cap, "%s", u);
}

/* A route with a key function tells downstream caches: private. */
static void test_downstream(void **state)
{
    fixture *f = *state;
    nori_http_cache *c = cache_new(f, NORI_HTTP_RULES_APP, 0, user_key);
    test_header alice[] = {{"X-User", "alice"}};
    set_headers(&f->o, NULL);
    assert_int_equal(serve_on(f, c, "GET", "/me", alice, 1), NORI_HTTP_MISS);
    assert_string_equal(hdr(f, "Cache-Control"), "private");
    assert_int_equal(serve_on(f, c, "GET", "/me", alice, 1), NORI_HTTP_HIT);
    assert_string_equal(hdr(f, "Cache-Control"), "private");
    assert_int_equal(serve_on(f, c, "GET", "/me", NULL, 0), NORI_HTTP_BYPASS);
    assert_string_equal(hdr(f, "Cache-Control"), "private");
    set_headers(&f->o, "Cache-Control", "public, max-age=5", NULL);
    assert_int_equal(serve_on(f, c, "GET", "/pub", alice, 1), NORI_HTTP_MISS);
    assert_string_equal(hdr(f, "Cache-Control"), "public, max-age=5");
    assert_int_equal(serve_on(f, c, "POST", "/me", alice, 1), NORI_HTTP_BYPASS);
    nori_http_cache_free(c);
    /* Without a key function nothing is added. */
    set_headers(&f->o, "Expires", "Thu, 01 Jan 2099 00:00:00 GMT", NULL);
    get(f, "/anyone");
    assert_null(hdr(f, "Cache-Control"));
}

/* Bounds: a response over them, or with a line that could not be sent
 * back, is not stored at all (counted). */
static void test_bounds(void **state)
{
    fixture *f = *state;
    static char names[MAX_H][16];
    const char *h[2 * MAX_H + 3];
    size_t n = 0;
    h[n++] = "Cache-Control";
    h[n++] = "max-age=60";
    for (size_t i = 0; i < 64; i++) {
        snprintf(names[i], sizeof names[i], "X-H%zu", i);
        h[n++] = names[i];
        h[n++] = "v";
    }
    h[n] = NULL;
    memcpy(f->o.h, h, (n + 1) * sizeof h[0]);
    assert_int_equal(get(f, "/many"), NORI_HTTP_MISS);
    assert_int_equal(get(f, "/many"), NORI_HTTP_MISS);
    assert_int_equal(stats(f).not_encodable, 2);
    /* 63 + Cache-Control: stored. */
    f->o.h[n - 2] = NULL;
    assert_int_equal(get(f, "/63"), NORI_HTTP_MISS);
    assert_int_equal(get(f, "/63"), NORI_HTTP_HIT);
    /* Bytes. */
    char *big = malloc(4001);
    memset(big, 'b', 4000);
    big[4000] = '\0';
    set_headers(&f->o, "Cache-Control", "max-age=60", "X-1", big, "X-2", big, "X-3", big,
                "X-4", big, "X-5", big, NULL);
    assert_int_equal(get(f, "/bytes"), NORI_HTTP_MISS);
    assert_int_equal(get(f, "/bytes"), NORI_HTTP_MISS);
    free(big);
    /* Header injection: never stored. */
    set_headers(&f->o, "Cache-Control", "max-age=60", "X-Bad", "a\r\nSet-Cookie: x=1", NULL);
    assert_int_equal(get(f, "/crlf"), NORI_HTTP_MISS);
    assert_int_equal(get(f, "/crlf"), NORI_HTTP_MISS);
    set_headers(&f->o, "Cache-Control", "max-age=60", "Bad Name", "x", NULL);
    assert_int_equal(get(f, "/name"), NORI_HTTP_MISS);
    assert_int_equal(get(f, "/name"), NORI_HTTP_MISS);
}

/* Set-Cookie: the RFC rules store it with an explicit freshness; two of
 * them do not fit a JSON entry. */
static void test_set_cookie(void **state)
{
    fixture *f = *state;
    set_headers(&f->o, "Cache-Control", "max-age=60", "Set-Cookie", "a=b", NULL);
    assert_int_equal(get(f, "/sc"), NORI_HTTP_MISS);
    assert_int_equal(get(f, "/sc"), NORI_HTTP_HIT);
    assert_string_equal(hdr(f, "Set-Cookie"), "a=b");
    set_headers(&f->o, "Cache-Control", "max-age=60", "Set-Cookie", "a=b", "Set-Cookie", "c=d",
                NULL);
    assert_int_equal(get(f, "/sc2"), NORI_HTTP_MISS);
    assert_int_equal(get(f, "/sc2"), f->json ? NORI_HTTP_MISS : NORI_HTTP_HIT);
    nori_http_cache *c = cache_new(f, NORI_HTTP_RULES_APP, 0, NULL);
    assert_int_equal(serve_on(f, c, "GET", "/sc3", NULL, 0), NORI_HTTP_MISS);
    assert_int_equal(serve_on(f, c, "GET", "/sc3", NULL, 0), NORI_HTTP_MISS);
    /* An entry holding one (the RFC cache's, same prefix) is served by the
     * application rules without it. */
    assert_int_equal(serve_on(f, c, "GET", "/sc", NULL, 0), NORI_HTTP_HIT);
    assert_null(hdr(f, "Set-Cookie"));
    nori_http_cache_free(c);
}

/* Statuses: what each rule set stores; entries of a status the
 * application rules never store are misses for them. */
static void test_statuses(void **state)
{
    fixture *f = *state;
    set_headers(&f->o, "Cache-Control", "max-age=60", NULL);
    f->o.status = 404;
    assert_int_equal(get(f, "/404"), NORI_HTTP_MISS);
    assert_int_equal(get(f, "/404"), NORI_HTTP_HIT);
    assert_int_equal(f->r.status, 404);
    nori_http_cache *c = cache_new(f, NORI_HTTP_RULES_APP, 0, NULL);
    uint64_t errors;
    nori_http_cache_stats s;
    nori_http_cache_get_stats(c, &s);
    errors = s.errors;
    f->o.status = 200;
    assert_int_equal(serve_on(f, c, "GET", "/404", NULL, 0), NORI_HTTP_MISS);
    nori_http_cache_get_stats(c, &s);
    assert_int_equal(s.errors, errors + 1);
    /* ...and the fresh response overwrites it. */
    assert_int_equal(serve_on(f, c, "GET", "/404", NULL, 0), NORI_HTTP_HIT);
    assert_int_equal(f->r.status, 200);
    f->o.status = 201;
    set_headers(&f->o, NULL);
    assert_int_equal(serve_on(f, c, "GET", "/201", NULL, 0), NORI_HTTP_MISS);
    assert_int_equal(serve_on(f, c, "GET", "/201", NULL, 0), NORI_HTTP_MISS);
    nori_http_cache_free(c);
    /* Heuristic freshness: 10% of the time since Last-Modified. */
    char lm[NORI_HTTP_DATE_SIZE];
    assert_nori(nori__http_date_format(fake_clock() / 1000 - 100, lm), NORI_OK);
    f->o.status = 0;
    set_headers(&f->o, "Last-Modified", lm, NULL);
    assert_int_equal(get(f, "/heur"), NORI_HTTP_MISS);
    advance(9000);
    assert_int_equal(get(f, "/heur"), NORI_HTTP_HIT);
    advance(1500);
    assert_int_equal(get(f, "/heur"), NORI_HTTP_MISS);
    assert_string_equal(f->o.ims, lm); /* revalidated */
}

/* Entries of the previous version are still served: a binary record NRB2,
 * a JSON entry without the new members. */
static void test_previous_entries(void **state)
{
    fixture *f = *state;
    nori_http_cache *c = cache_new(f, NORI_HTTP_RULES_APP, 0, NULL);
    nori_buf old;
    if (f->json) {
        char json[256];
        snprintf(json, sizeof json,
                 "{\"body_b64\":\"aGk=\",\"status_code\":200,\"media_type\":\"text/plain\","
                 "\"headers\":{\"etag\":\"\\\"x\\\"\"},\"stored_at\":%.3f,\"fresh_for\":60}",
                 (double)(fake_clock() - 5000) / 1000.0);
        old.data = strdup(json);
        old.len = strlen(json);
    } else {
        /* body | u16 status | u16 n | u32 media | i64 at | i64 fresh | media | header */
        static const char media[] = "text/plain";
        size_t meta = 24 + 10 + 4 + 4 + 4 + 3, len = 2 + meta + 8;
        unsigned char *p = calloc(1, len + 1);
        memcpy(p, "hi", 2);
        unsigned char *m = p + 2;
        m[0] = 200;
        m[2] = 1;
        m[4] = 10;
        int64_t at = fake_clock() - 5000, fresh = 60000;
        for (int i = 0; i < 8; i++) {
            m[8 + i] = (unsigned char)((uint64_t)at >> (8 * i));
            m[16 + i] = (unsigned char)((uint64_t)fresh >> (8 * i));
        }
        memcpy(m + 24, media, 10);
        m += 34;
        m[0] = 4;
        memcpy(m + 4, "ETag", 4);
        m[8] = 3;
        memcpy(m + 12, "\"x\"", 3);
        m += 15;
        m[0] = (unsigned char)meta;
        memcpy(m + 4, "NRB2", 4);
        old.data = (char *)p;
        old.len = len;
    }
    assert_nori(nori_backend_set(f->b, "view:/old:", old.data, old.len, 0), NORI_OK);
    nori_buf_free(&old);
    assert_int_equal(serve_on(f, c, "GET", "/old", NULL, 0), NORI_HTTP_HIT);
    expect_body(f, "hi");
    assert_string_equal(hdr(f, "ETag"), "\"x\"");
    assert_string_equal(hdr(f, "Age"), "5");
    assert_string_equal(f->r.media_type, "text/plain");
    assert_int_equal(f->o.runs, 0);
    nori_http_cache_free(c);
}

/* RFC 9213 at the cache: a targeted field replaces Cache-Control. */
static void test_targeted(void **state)
{
    fixture *f = *state;
    const char *names[] = {"CDN-Cache-Control"};
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = f->b;
    o.rules = NORI_HTTP_RULES_RFC9111;
    o.targeted_fields = names;
    o.n_targeted_fields = 1;
    o.prefix = "t";
    nori_http_cache *c;
    assert_nori(nori_http_cache_new(&o, &c), NORI_OK);
    set_headers(&f->o, "Cache-Control", "no-store", "CDN-Cache-Control", "max-age=60", NULL);
    assert_int_equal(serve_on(f, c, "GET", "/t", NULL, 0), NORI_HTTP_MISS);
    assert_int_equal(serve_on(f, c, "GET", "/t", NULL, 0), NORI_HTTP_HIT);
    assert_string_equal(hdr(f, "CDN-Cache-Control"), "max-age=60");
    assert_int_equal(get(f, "/t"), NORI_HTTP_MISS); /* the cache without it */
    assert_int_equal(get(f, "/t"), NORI_HTTP_MISS);
    nori_http_cache_free(c);
    /* A bad name is refused at creation. */
    const char *bad[] = {"CDN Cache"};
    o.targeted_fields = bad;
    assert_nori(nori_http_cache_new(&o, &c), NORI_EINVAL);
    o.targeted_fields = NULL;
    assert_nori(nori_http_cache_new(&o, &c), NORI_EINVAL);
    o.n_targeted_fields = 0;
    o.rules = (nori_http_rules)7;
    assert_nori(nori_http_cache_new(&o, &c), NORI_EINVAL);
    o.rules = NORI_HTTP_RULES_RFC9111;
    o.heuristic_percent = 101;
    assert_nori(nori_http_cache_new(&o, &c), NORI_EINVAL);
    o.heuristic_percent = 0;
    o.keep = -1;
    assert_nori(nori_http_cache_new(&o, &c), NORI_EINVAL);
}

#define BOTH(t)                                                                          \
    cmocka_unit_test_setup_teardown(t, setup_binary, teardown),                          \
        cmocka_unit_test_setup_teardown(t, setup_json, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_headers_replayed), BOTH(test_age),        BOTH(test_revalidation),
        BOTH(test_revalidation_app), BOTH(test_no_cache),   BOTH(test_stale_rules),
        BOTH(test_vary),             BOTH(test_invalidation), BOTH(test_ranges),
        BOTH(test_downstream),       BOTH(test_bounds),     BOTH(test_set_cookie),
        BOTH(test_statuses),         BOTH(test_previous_entries), BOTH(test_targeted),
        BOTH(test_range_entries),    BOTH(test_post_reused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
