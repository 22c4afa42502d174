// SPDX-License-Identifier: MIT
/* nori_http_cache_serve on a real memory backend: hits, misses, what is
 * stored, counters, undecodable entries and failing backends (fail open). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_support.h"
#include "virtual_clock.h"

#include "clock.h"
#include "http/internal.h"
#include "http_test_headers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A handler whose output is chosen by the test, and that counts its runs. */
typedef struct {
    int calls;
    int status;
    const char *extra_name, *extra_value;
    size_t body_len; /* 0: a text body naming the call */
} app;

static int handler(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    app *a = ud;
    a->calls++;
    resp->status = a->status;
    if (a->body_len > 0) {
        char *b = malloc(a->body_len);
        for (size_t i = 0; i < a->body_len; i++)
            b[i] = (char)i;
        nori_http_response_take_body(resp, b, a->body_len);
        assert_nori(nori_http_response_set_media_type(resp, "application/pdf"), NORI_OK);
    } else {
        char text[128];
        int n = snprintf(text, sizeof text, "%s %.64s call %d", req->method, req->path, a->calls);
        assert_nori(nori_http_response_set_body(resp, text, (size_t)n), NORI_OK);
        assert_nori(nori_http_response_set_media_type(resp, "text/plain"), NORI_OK);
    }
    assert_nori(nori_http_response_add_header(resp, "Content-Disposition", "inline"), NORI_OK);
    assert_nori(nori_http_response_add_header(resp, "X-Served-By", "handler"), NORI_OK);
    if (a->extra_name != NULL)
        assert_nori(nori_http_response_add_header(resp, a->extra_name, a->extra_value), NORI_OK);
    return NORI_OK;
}

typedef struct {
    nori_backend *b;
    nori_http_cache *c;
    app a;
    nori_http_response r;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_nori(nori_memory_backend_new(100, &f->b), NORI_OK);
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = f->b;
    assert_nori(nori_http_cache_new(&o, &f->c), NORI_OK);
    f->a.status = 200;
    nori_http_response_init(&f->r);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    nori_http_response_clear(&f->r);
    nori_http_cache_free(f->c);
    nori_backend_free(f->b);
    free(f);
    nori_test_clock_uninstall();
    return 0;
}

static nori_http_request req(const char *method, const char *path, const char *query)
{
    nori_http_request r = {method, path, query, NULL, NULL, NULL, 0, NULL};
    return r;
}

static uint64_t entries(nori_backend *b)
{
    nori_backend_stats s;
    assert_nori(nori_backend_get_stats(b, &s), NORI_OK);
    return s.entries;
}

static void test_miss_then_hit(void **state)
{
    fixture *f = *state;
    nori_http_request rq = req("GET", "/dashboard", "");
    assert_nori(nori_http_cache_serve(f->c, &rq, handler, &f->a, &f->r), NORI_OK);
    assert_int_equal(f->r.origin, NORI_HTTP_MISS);
    assert_string_equal(f->r.body, "GET /dashboard call 1");
    /* A MISS is the handler's own response, all headers included. */
    assert_string_equal(nori_http_response_header(&f->r, "X-Served-By"), "handler");
    for (int i = 0; i < 3; i++) {
        assert_nori(nori_http_cache_serve(f->c, &rq, handler, &f->a, &f->r), NORI_OK);
        assert_int_equal(f->r.origin, NORI_HTTP_HIT);
        assert_int_equal(f->r.body_len, strlen("GET /dashboard call 1"));
        assert_memory_equal(f->r.body, "GET /dashboard call 1", f->r.body_len);
        assert_string_equal(f->r.media_type, "text/plain");
        assert_int_equal(f->r.status, 200);
        assert_string_equal(nori_http_response_header(&f->r, "Content-Disposition"), "inline");
        /* Every end-to-end header comes back on a hit (RFC 9111 3.1). */
        assert_string_equal(nori_http_response_header(&f->r, "X-Served-By"), "handler");
    }
    assert_int_equal(f->a.calls, 1);
    nori_http_cache_stats s;
    nori_http_cache_get_stats(f->c, &s);
    assert_int_equal(s.hits, 3);
    assert_int_equal(s.misses, 1);
    assert_int_equal(s.stores, 1);
    assert_int_equal(s.errors, 0);
    /* The entry is where nori_http_cache_key says, in the binary record. */
    char key[NORI_MAX_KEY_LEN + 1];
    assert_nori(nori_http_cache_key(f->c, &rq, key, sizeof key), NORI_OK);
    assert_string_equal(key, "view:/dashboard:");
    nori_buf v;
    assert_nori(nori_backend_get(f->b, key, &v), NORI_OK);
    assert_memory_equal(v.data + v.len - 4, "NRB3", 4);
    nori_buf_free(&v);
    /* Another query is another entry. */
    rq = req("GET", "/dashboard", "x=1");
    assert_nori(nori_http_cache_serve(f->c, &rq, handler, &f->a, &f->r), NORI_OK);
    assert_int_equal(f->r.origin, NORI_HTTP_MISS);
    assert_int_equal(f->a.calls, 2);
}

static void test_binary_body(void **state)
{
    fixture *f = *state;
    f->a.body_len = 70000;
    nori_http_request rq = req("GET", "/report.pdf", NULL);
    assert_nori(nori_http_cache_serve(f->c, &rq, handler, &f->a, &f->r), NORI_OK);
    nori_http_response first = f->r;
    nori_http_response_init(&f->r);
    assert_nori(nori_http_cache_serve(f->c, &rq, handler, &f->a, &f->r), NORI_OK);
    assert_int_equal(f->r.origin, NORI_HTTP_HIT);
    assert_int_equal(f->r.body_len, 70000);
    assert_memory_equal(f->r.body, first.body, 70000);
    assert_string_equal(f->r.media_type, "application/pdf");
    nori_http_response_clear(&first);
}

static void test_other_methods_pass_through(void **state)
{
    fixture *f = *state;
    static const char *methods[] = {"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "get"};
    for (size_t m = 0; m < 6; m++)
        for (int i = 0; i < 2; i++) {
            nori_http_request rq = req(methods[m], "/login", "");
            assert_nori(nori_http_cache_serve(f->c, &rq, handler, &f->a, &f->r), NORI_OK);
            assert_int_equal(f->r.origin, NORI_HTTP_BYPASS);
        }
    assert_int_equal(f->a.calls, 12);
    nori_http_cache_stats st;
    nori_http_cache_get_stats(f->c, &st);
    assert_int_equal(st.bypass_method, 12);
    assert_int_equal(entries(f->b), 0);
    /* A POST does not read a cached GET entry either. */
    nori_http_request g = req("GET", "/x", ""), p = req("POST", "/x", "");
    assert_nori(nori_http_cache_serve(f->c, &g, handler, &f->a, &f->r), NORI_OK);
    assert_nori(nori_http_cache_serve(f->c, &p, handler, &f->a, &f->r), NORI_OK);
    assert_string_equal(f->r.body, "POST /x call 14");
}

static void test_not_stored(void **state)
{
    fixture *f = *state;
    static const int statuses[] = {100, 301, 304, 404, 500, 503};
    for (size_t i = 0; i < 6; i++) {
        f->a.status = statuses[i];
        nori_http_request rq = req("GET", "/fail", "");
        assert_nori(nori_http_cache_serve(f->c, &rq, handler, &f->a, &f->r), NORI_OK);
        assert_nori(nori_http_cache_serve(f->c, &rq, handler, &f->a, &f->r), NORI_OK);
        assert_int_equal(f->r.origin, NORI_HTTP_MISS);
        assert_int_equal(f->r.status, statuses[i]);
    }
    assert_int_equal(f->a.calls, 12);
    f->a.status = 200;
    f->a.extra_name = "set-cookie";
    f->a.extra_value = "session=1";
    nori_http_request rq = req("GET", "/cookie", "");
    assert_nori(nori_http_cache_serve(f->c, &rq, handler, &f->a, &f->r), NORI_OK);
    assert_nori(nori_http_cache_serve(f->c, &rq, handler, &f->a, &f->r), NORI_OK);
    assert_int_equal(f->r.origin, NORI_HTTP_MISS);
    assert_string_equal(nori_http_response_header(&f->r, "Set-Cookie"), "session=1");
    f->a.extra_name = "Cache-Control";
    f->a.extra_value = "max-age=10, Private";
    assert_nori(nori_http_cache_serve(f->c, &rq, handler, &f->a, &f->r), NORI_OK);
    assert_nori(nori_http_cache_serve(f->c, &rq, handler, &f->a, &f->r), NORI_OK);
    assert_int_equal(f->r.origin, NORI_HTTP_MISS);
    assert_int_equal(f->a.calls, 16);
    assert_int_equal(entries(f->b), 0);
    nori_http_cache_stats s;
    nori_http_cache_get_stats(f->c, &s);
    assert_int_equal(s.stores, 0);
    assert_int_equal(s.misses, 16);
}

/* Vary-on and key function give separate slots; a request the key
 * function opts out of is never cached. */
static int tenant_key(const nori_http_request *rq, void *ud, char *out, size_t cap)
{
    (void)ud;
    const char *t = nori_http_request_header(rq, "X-User");
    return t == NULL ? -1 : snprintf(out, cap, "%s", t);
}

static void test_slots(void **state)
{
    fixture *f = *state;
    const char *vary[] = {"Accept-Language"};
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = f->b;
    o.prefix = "greet";
    o.vary_on = vary;
    o.n_vary_on = 1;
    o.key_fn = tenant_key;
    nori_http_cache *c;
    assert_nori(nori_http_cache_new(&o, &c), NORI_OK);
    test_header h1[] = {{"x-user", "alice"}, {"accept-language", "fr"}};
    test_header h2[] = {{"x-user", "alice"}, {"accept-language", "de"}};
    test_header h3[] = {{"x-user", "bob"}, {"accept-language", "fr"}};
    test_headers t[] = {{h1, 2}, {h2, 2}, {h3, 2}, {NULL, 0}};
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 4; i++) {
            nori_http_request rq = {"GET", "/greeting", "", test_header_lookup, &t[i], NULL, 0, NULL};
            assert_nori(nori_http_cache_serve(c, &rq, handler, &f->a, &f->r), NORI_OK);
            nori_http_origin want = i == 3 ? NORI_HTTP_BYPASS
                                           : round == 0 ? NORI_HTTP_MISS : NORI_HTTP_HIT;
            assert_int_equal(f->r.origin, want);
        }
    assert_int_equal(f->a.calls, 5);
    assert_int_equal(entries(f->b), 3);
    nori_http_cache_free(c);
}

static void test_undecodable_entry_is_miss(void **state)
{
    fixture *f = *state;
    static const char *garbage[] = {"garbage", "{\"body_b64\": \"!!!!\", \"status_code\": 200}",
                                    "{\"status_code\": \"200\"}"};
    nori_http_request rq = req("GET", "/products", "page=1");
    for (int i = 0; i < 3; i++) {
        assert_nori(nori_backend_set(f->b, "view:/products:page=1", garbage[i], strlen(garbage[i]), 0),
                    NORI_OK);
        assert_nori(nori_http_cache_serve(f->c, &rq, handler, &f->a, &f->r), NORI_OK);
        assert_int_equal(f->r.origin, NORI_HTTP_MISS);
        /* The fresh response replaced the bad entry. */
        assert_nori(nori_http_cache_serve(f->c, &rq, handler, &f->a, &f->r), NORI_OK);
        assert_int_equal(f->r.origin, NORI_HTTP_HIT);
    }
    nori_http_cache_stats s;
    nori_http_cache_get_stats(f->c, &s);
    assert_int_equal(s.errors, 3);
    assert_int_equal(f->a.calls, 3);
}

/* An entry written by Nori's Python decorator, found on this backend. */
static void test_python_entry_served(void **state)
{
    fixture *f = *state;
    const char *py = "{\"body_b64\": \"eyJvayI6IHRydWV9\", \"status_code\": 200, "
                     "\"media_type\": \"application/json\"}";
    assert_nori(nori_backend_set(f->b, "view:/api:", py, strlen(py), 60), NORI_OK);
    nori_http_request rq = req("GET", "/api", NULL);
    assert_nori(nori_http_cache_serve(f->c, &rq, handler, &f->a, &f->r), NORI_OK);
    assert_int_equal(f->r.origin, NORI_HTTP_HIT);
    assert_string_equal(f->r.body, "{\"ok\": true}");
    assert_string_equal(f->r.media_type, "application/json");
    assert_int_equal(f->a.calls, 0);
}

/* Cache failures never fail the request. */
static void test_fail_open(void **state)
{
    fixture *f = *state;
    /* A backend that refuses every value: the store fails. */
    assert_nori(nori_backend_set_max_value(f->b, 8), NORI_OK);
    nori_http_request rq = req("GET", "/dashboard", "");
    for (int i = 1; i <= 2; i++) {
        assert_nori(nori_http_cache_serve(f->c, &rq, handler, &f->a, &f->r), NORI_OK);
        assert_int_equal(f->r.origin, NORI_HTTP_MISS);
        assert_int_equal(f->r.status, 200);
        assert_int_equal(f->a.calls, i);
    }
    nori_http_cache_stats s;
    nori_http_cache_get_stats(f->c, &s);
    /* Issue 10 item 17: refused on its size before encoding, not by set. */
    assert_int_equal(s.too_big, 2);
    assert_int_equal(s.errors, 0);
    assert_int_equal(s.stores, 0);

    /* A key over the limit: served uncached, counted as an error. */
    static char path[NORI_MAX_KEY_LEN + 10];
    memset(path, 'x', sizeof path - 1);
    path[0] = '/';
    rq = req("GET", path, "");
    assert_nori(nori_http_cache_serve(f->c, &rq, handler, &f->a, &f->r), NORI_OK);
    assert_int_equal(f->r.origin, NORI_HTTP_BYPASS);
    nori_http_cache_get_stats(f->c, &s);
    assert_int_equal(s.errors, 1);

    /* A Redis server that is not there (once the Redis backend exists). */
    nori_backend *dead;
    if (nori_redis_backend_new("redis://127.0.0.1:1", &dead) != NORI_OK) {
        print_message("redis backend not available (%s): dead-server case skipped\n",
                      nori_last_error());
        return;
    }
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = dead;
    nori_http_cache *c;
    assert_nori(nori_http_cache_new(&o, &c), NORI_OK);
    rq = req("GET", "/dashboard", "");
    assert_nori(nori_http_cache_serve(c, &rq, handler, &f->a, &f->r), NORI_OK);
    assert_int_equal(f->r.origin, NORI_HTTP_MISS);
    assert_int_equal(f->r.status, 200);
    nori_http_cache_get_stats(c, &s);
    assert_true(s.errors >= 1);
    nori_http_cache_free(c);
    nori_backend_free(dead);
}

static nori_http_origin serve_with(fixture *f, nori_http_cache *c, const char *method,
                                   const char *path, test_headers *h)
{
    nori_http_request rq = {method, path, "", test_header_lookup, h, NULL, 0, NULL};
    assert_nori(nori_http_cache_serve(c, &rq, handler, &f->a, &f->r), NORI_OK);
    return f->r.origin;
}

/* Issue 10 item 6: alice's Authorization or Cookie response was served to
 * bob. Such requests bypass unless the route opts in or scopes per user. */
static void test_credentials_bypass(void **state)
{
    fixture *f = *state;
    test_header auth[] = {{"authorization", "Bearer alice"}};
    test_header cookie[] = {{"cookie", "session=alice"}};
    test_headers ha = {auth, 1}, hc = {cookie, 1}, none = {NULL, 0};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(serve_with(f, f->c, "GET", "/cart", &ha), NORI_HTTP_BYPASS);
        assert_int_equal(serve_with(f, f->c, "GET", "/cart", &hc), NORI_HTTP_BYPASS);
        assert_int_equal(serve_with(f, f->c, "HEAD", "/cart", &hc), NORI_HTTP_BYPASS);
    }
    assert_int_equal(f->a.calls, 6);
    assert_int_equal(entries(f->b), 0);
    /* bob (no credentials) gets his own response, not alice's. */
    assert_int_equal(serve_with(f, f->c, "GET", "/cart", &none), NORI_HTTP_MISS);
    nori_http_cache_stats s;
    nori_http_cache_get_stats(f->c, &s);
    assert_int_equal(s.bypass_authorization, 2);
    assert_int_equal(s.bypass_cookie, 4);

    /* Opt-ins. */
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = f->b;
    o.prefix = "optin";
    o.allow_authorized = 1;
    o.allow_cookie = 1;
    nori_http_cache *c;
    assert_nori(nori_http_cache_new(&o, &c), NORI_OK);
    assert_int_equal(serve_with(f, c, "GET", "/pub", &ha), NORI_HTTP_MISS);
    assert_int_equal(serve_with(f, c, "GET", "/pub", &hc), NORI_HTTP_HIT);
    nori_http_cache_free(c);
    /* A key function scopes the entries: no bypass needed. */
    nori_http_cache_options_init(&o);
    o.backend = f->b;
    o.prefix = "scoped";
    o.key_fn = tenant_key;
    assert_nori(nori_http_cache_new(&o, &c), NORI_OK);
    test_header ua[] = {{"x-user", "alice"}, {"authorization", "Bearer alice"}};
    test_headers hua = {ua, 2};
    assert_int_equal(serve_with(f, c, "GET", "/me", &hua), NORI_HTTP_MISS);
    assert_int_equal(serve_with(f, c, "GET", "/me", &hua), NORI_HTTP_HIT);
    nori_http_cache_free(c);
}

/* Issue 10 item 7: a handler's own Vary is honoured; since RFC 9111's
 * generic Vary, a response that varies is stored as a variant of its URL
 * (vary.c), found again only by a request with the same values. */
static void test_handler_vary(void **state)
{
    fixture *f = *state;
    test_headers none = {NULL, 0};
    test_header gz[] = {{"accept-encoding", "gzip"}};
    test_headers hgz = {gz, 1};
    f->a.extra_name = "Vary";
    f->a.extra_value = "Accept-Encoding";
    assert_int_equal(serve_with(f, f->c, "GET", "/gz", &none), NORI_HTTP_MISS);
    assert_int_equal(serve_with(f, f->c, "GET", "/gz", &none), NORI_HTTP_HIT);
    /* The variant and the URL's names record. */
    assert_int_equal(entries(f->b), 2);
    nori_buf v;
    assert_nori(nori_backend_get(f->b, "view:/gz::vary", &v), NORI_OK);
    assert_int_equal(v.len, strlen("accept-encoding"));
    assert_memory_equal(v.data, "accept-encoding", v.len);
    nori_buf_free(&v);
    assert_nori(nori_backend_get(f->b, "view:/gz::v=accept-encoding", &v), NORI_OK);
    nori_buf_free(&v);
    /* Another value: another variant. */
    assert_int_equal(serve_with(f, f->c, "GET", "/gz", &hgz), NORI_HTTP_MISS);
    assert_int_equal(serve_with(f, f->c, "GET", "/gz", &hgz), NORI_HTTP_HIT);
    assert_int_equal(serve_with(f, f->c, "GET", "/gz", &none), NORI_HTTP_HIT);
    assert_int_equal(f->a.calls, 2);
    /* Vary: * never matches: never stored. */
    f->a.extra_value = "*";
    for (int i = 0; i < 2; i++)
        assert_int_equal(serve_with(f, f->c, "GET", "/star", &none), NORI_HTTP_MISS);
    f->a.extra_value = "Accept-Language, *";
    assert_int_equal(serve_with(f, f->c, "GET", "/star", &none), NORI_HTTP_MISS);
    assert_int_equal(entries(f->b), 3);
    /* On a route that varies on Accept-Encoding its key holds the value: the
     * response is stored at the key, as a route's vary_on always did. */
    const char *vary[] = {"accept-encoding", "Accept-Language"};
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = f->b;
    o.vary_on = vary;
    o.n_vary_on = 2;
    o.prefix = "vo";
    nori_http_cache *c;
    assert_nori(nori_http_cache_new(&o, &c), NORI_OK);
    f->a.extra_value = "Accept-Language, ACCEPT-ENCODING";
    assert_int_equal(serve_with(f, c, "GET", "/gz", &hgz), NORI_HTTP_MISS);
    assert_int_equal(serve_with(f, c, "GET", "/gz", &hgz), NORI_HTTP_HIT);
    assert_int_equal(serve_with(f, c, "GET", "/gz", &none), NORI_HTTP_MISS);
    assert_nori(nori_backend_get(f->b, "vo:/gz::vary=accept-encoding=gzip,accept-language=", &v),
                NORI_OK);
    nori_buf_free(&v);
    /* A name outside vary_on makes it a variant of that key. */
    f->a.extra_value = "Accept-Encoding, Cookie";
    test_header gzc[] = {{"accept-encoding", "gzip"}, {"cookie", "a=1"}};
    test_headers hgzc = {gzc, 2};
    o.allow_cookie = 1;
    nori_http_cache_free(c);
    assert_nori(nori_http_cache_new(&o, &c), NORI_OK);
    assert_int_equal(serve_with(f, c, "GET", "/gz2", &hgz), NORI_HTTP_MISS);
    assert_int_equal(serve_with(f, c, "GET", "/gz2", &hgz), NORI_HTTP_HIT);
    assert_int_equal(serve_with(f, c, "GET", "/gz2", &hgzc), NORI_HTTP_MISS);
    assert_nori(nori_backend_get(f->b, "vo:/gz2::vary=accept-encoding=gzip,accept-language=:v=cookie=a%3D1",
                                 &v),
                NORI_OK);
    nori_buf_free(&v);
    nori_http_cache_free(c);
}

/* Issue 10 item 8: 206 and no-cache are never stored. */
static void test_partial_and_no_cache(void **state)
{
    fixture *f = *state;
    test_headers none = {NULL, 0};
    f->a.status = 206;
    for (int i = 0; i < 2; i++)
        assert_int_equal(serve_with(f, f->c, "GET", "/file", &none), NORI_HTTP_MISS);
    f->a.status = 200;
    f->a.extra_name = "Cache-Control";
    f->a.extra_value = "public, no-cache";
    for (int i = 0; i < 2; i++)
        assert_int_equal(serve_with(f, f->c, "GET", "/nc", &none), NORI_HTTP_MISS);
    assert_int_equal(entries(f->b), 0);
    assert_int_equal(f->a.calls, 4);
}

/* Issue 10 item 12: HEAD is served from the GET entry and never stores. */
static void test_head(void **state)
{
    fixture *f = *state;
    test_headers none = {NULL, 0};
    assert_int_equal(serve_with(f, f->c, "HEAD", "/h", &none), NORI_HTTP_MISS);
    assert_int_equal(entries(f->b), 0);
    assert_int_equal(serve_with(f, f->c, "GET", "/h", &none), NORI_HTTP_MISS);
    assert_int_equal(serve_with(f, f->c, "HEAD", "/h", &none), NORI_HTTP_HIT);
    /* Same headers and length as the GET (the adapter sends no body). */
    assert_int_equal(f->r.body_len, 13);
    assert_memory_equal(f->r.body, "GET /h call 2", 13);
    assert_string_equal(nori_http_response_header(&f->r, "Content-Disposition"), "inline");
    assert_int_equal(f->a.calls, 2);
}

/* Issue 10 item 9: a hit the adapter could not send is served again as a
 * miss and overwritten. */
static void test_serve_again(void **state)
{
    fixture *f = *state;
    test_headers none = {NULL, 0};
    assert_int_equal(serve_with(f, f->c, "GET", "/u", &none), NORI_HTTP_MISS);
    assert_int_equal(serve_with(f, f->c, "GET", "/u", &none), NORI_HTTP_HIT);
    nori_http_request rq = {"GET", "/u", "", test_header_lookup, &none, NULL, 0, NULL};
    assert_nori(nori_http_cache_serve_again(f->c, &rq, handler, &f->a, &f->r), NORI_OK);
    assert_int_equal(f->r.origin, NORI_HTTP_MISS);
    assert_string_equal(f->r.body, "GET /u call 2");
    assert_int_equal(serve_with(f, f->c, "GET", "/u", &none), NORI_HTTP_HIT);
    assert_memory_equal(f->r.body, "GET /u call 2", 13);
    nori_http_cache_stats s;
    nori_http_cache_get_stats(f->c, &s);
    assert_int_equal(s.unsendable, 1);
}

/* Issue 10 item 10: a response whose kept header cannot be stored exactly
 * (here CR/LF in the value) is not stored, rather than stored without it. */
static void test_unencodable_not_stored(void **state)
{
    fixture *f = *state;
    test_headers none = {NULL, 0};
    f->a.extra_name = "Content-Disposition";
    f->a.extra_value = "attachment; filename=\"a\r\nb\"";
    for (int i = 0; i < 2; i++)
        assert_int_equal(serve_with(f, f->c, "GET", "/cd", &none), NORI_HTTP_MISS);
    nori_http_cache_stats s;
    nori_http_cache_get_stats(f->c, &s);
    assert_int_equal(s.not_encodable, 2);
    assert_int_equal(entries(f->b), 0);
}

/* Issue 10 item 16: an entry over the backend's value limit is a miss
 * (counted), never served and never a failed request; the fresh response
 * replaces it. */
static void test_entry_over_limit_is_miss(void **state)
{
    fixture *f = *state;
    f->a.body_len = 100000;
    test_headers none = {NULL, 0};
    assert_int_equal(serve_with(f, f->c, "GET", "/big", &none), NORI_HTTP_MISS);
    assert_int_equal(serve_with(f, f->c, "GET", "/big", &none), NORI_HTTP_HIT);
    assert_nori(nori_backend_set_max_value(f->b, 50000), NORI_OK);
    f->a.body_len = 0;
    assert_int_equal(serve_with(f, f->c, "GET", "/big", &none), NORI_HTTP_MISS);
    nori_http_cache_stats s;
    nori_http_cache_get_stats(f->c, &s);
    assert_int_equal(s.errors, 1);
    assert_int_equal(serve_with(f, f->c, "GET", "/big", &none), NORI_HTTP_HIT);
    assert_memory_equal(f->r.body, "GET /big call 2", 15);
}

/* The route's ttl, on the virtual clock (clock.h): a hit until a
 * millisecond before it ends, a miss from then on. */
static void test_ttl_and_default_backend(void **state)
{
    fixture *f = *state;
    nori_test_clock_install(1700000000000);
    setenv("CACHE_BACKEND", "memory", 1);
    nori_reset_backend();
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.ttl = 1;
    nori_http_cache *c;
    assert_nori(nori_http_cache_new(&o, &c), NORI_OK);
    nori_http_request rq = req("GET", "/ttl", "");
    assert_nori(nori_http_cache_serve(c, &rq, handler, &f->a, &f->r), NORI_OK);
    assert_nori(nori_http_cache_serve(c, &rq, handler, &f->a, &f->r), NORI_OK);
    assert_int_equal(f->r.origin, NORI_HTTP_HIT);
    nori_buf v;
    assert_nori(nori_cache_get("view:/ttl:", &v), NORI_OK);
    nori_buf_free(&v);
    nori__clock_advance(999);
    assert_nori(nori_http_cache_serve(c, &rq, handler, &f->a, &f->r), NORI_OK);
    assert_int_equal(f->r.origin, NORI_HTTP_HIT);
    nori__clock_advance(1);
    assert_nori(nori_http_cache_serve(c, &rq, handler, &f->a, &f->r), NORI_OK);
    assert_int_equal(f->r.origin, NORI_HTTP_MISS);
    assert_int_equal(f->a.calls, 2);
    nori_http_cache_free(c);
    nori_reset_backend();
    nori_test_clock_uninstall();
    /* NULL cache: just the handler. */
    assert_nori(nori_http_cache_serve(NULL, &rq, handler, &f->a, &f->r), NORI_OK);
    assert_int_equal(f->r.origin, NORI_HTTP_BYPASS);
    assert_nori(nori_http_cache_serve(f->c, &rq, NULL, NULL, &f->r), NORI_EINVAL);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_miss_then_hit),         T(test_binary_body),
        T(test_other_methods_pass_through), T(test_not_stored),
        T(test_slots),                 T(test_undecodable_entry_is_miss),
        T(test_python_entry_served),   T(test_fail_open),
        T(test_ttl_and_default_backend), T(test_credentials_bypass),
        T(test_handler_vary),          T(test_partial_and_no_cache),
        T(test_head),                  T(test_serve_again),
        T(test_unencodable_not_stored), T(test_entry_over_limit_is_miss),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
