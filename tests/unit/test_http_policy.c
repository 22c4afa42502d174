// SPDX-License-Identifier: MIT
/* RFC 9111 rules as pure functions (src/http/policy.c, vary.c, validate.c):
 * Cache-Control, Age, Expires and Date parsing, what each rule set stores
 * and for how long, targeted fields, Vary names and variant keys, the 304
 * update, conditional requests and ranges. Cache-level behaviour is
 * test_http_rfc.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_support.h"

#include "http/internal.h"
#include "http_test_headers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A response with header lines given as "Name", "value", ..., NULL. */
static void make(nori_http_response *r, int status, ...)
{
    nori_http_response_init(r);
    r->status = status;
    va_list ap;
    va_start(ap, status);
    const char *name;
    while ((name = va_arg(ap, const char *)) != NULL) {
        const char *value = va_arg(ap, const char *);
        assert_nori(nori_http_response_add_header(r, name, value), NORI_OK);
    }
    va_end(ap);
}

static nori__cc cc_of(const char *value)
{
    nori_http_response r;
    make(&r, 200, "Cache-Control", value, NULL);
    nori__cc cc;
    assert_true(nori__cc_parse(&r, "cache-control", &cc));
    nori_http_response_clear(&r);
    return cc;
}

static void test_cache_control(void **state)
{
    (void)state;
    static const struct {
        const char *v;
        int64_t max_age; /* -2: absent */
    } cases[] = {
        {"max-age=3600", 3600},
        {"MaX-aGe=3600", 3600},
        {"max-age=003600", 3600},
        {"max-age=\"3600\"", 3600},
        {"foobar, max-age=3600", 3600},
        {"extension=\"max-age=3600\", max-age=1", 1},
        {"max-age=1, extension=\"max-age=3600\"", 1},
        {"extension=\"max-age=3600\", max-age=\"1\"", 1},
        {"a=\"x,max-age=9\\\"\", max-age=2", 2},
        {"max-age=1, max-age=1800", 1}, /* the first counts */
        {"max-age='3600'", NORI__CC_BAD},
        {"max-age=-3600", NORI__CC_BAD},
        {"max-age=3600.0", NORI__CC_BAD},
        {"max-age=3600a", NORI__CC_BAD},
        {"max-age=a3600", NORI__CC_BAD},
        {"max-age =3600", NORI__CC_BAD},
        {"max-age= 3600", NORI__CC_BAD},
        {"max-age=", NORI__CC_BAD},
        {"max-age", NORI__CC_BAD},
        {"max-age=\"36", NORI__CC_BAD},
        {"max-age=99999999999", NORI__DELTA_MAX},
        {"max-age=2147483647", 2147483647},
        {"no-store", -2},
        {"s-maxage=5", -2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nori__cc cc = cc_of(cases[i].v);
        if (cases[i].max_age == -2) {
            if (cc.has & NORI__CC_MAX_AGE)
                fail_msg("%s: max-age found", cases[i].v);
        } else if (!(cc.has & NORI__CC_MAX_AGE) || cc.max_age != cases[i].max_age) {
            fail_msg("%s: max-age %lld, expected %lld", cases[i].v, (long long)cc.max_age,
                     (long long)cases[i].max_age);
        }
    }
    nori__cc cc = cc_of("No-Store, PRIVATE=\"x, y\", no-cache=\"Set-Cookie\", public, "
                        "must-revalidate, proxy-revalidate, must-understand, s-maxage=7, "
                        "stale-while-revalidate=30, stale-if-error=60");
    assert_int_equal(cc.has & (NORI__CC_NO_STORE | NORI__CC_PRIVATE | NORI__CC_NO_CACHE |
                               NORI__CC_PUBLIC | NORI__CC_MUST_REVALIDATE |
                               NORI__CC_PROXY_REVALIDATE | NORI__CC_MUST_UNDERSTAND),
                 NORI__CC_NO_STORE | NORI__CC_PRIVATE | NORI__CC_NO_CACHE | NORI__CC_PUBLIC |
                     NORI__CC_MUST_REVALIDATE | NORI__CC_PROXY_REVALIDATE |
                     NORI__CC_MUST_UNDERSTAND);
    assert_int_equal(cc.s_maxage, 7);
    assert_int_equal(cc.swr, 30);
    assert_int_equal(cc.sie, 60);
    /* Token match, not substring; restrictive directives count even when
     * malformed, public only when well-formed. */
    cc = cc_of("no-cache-later, x-private, community=\"private, no-store\"");
    assert_int_equal(cc.has, 0);
    cc = cc_of("no-store junk, public junk");
    assert_int_equal(cc.has, NORI__CC_NO_STORE);
    /* Several lines are one list. */
    nori_http_response r;
    make(&r, 200, "Cache-Control", "max-age=3600", "cache-control", "s-maxage=1", NULL);
    assert_true(nori__cc_parse(&r, "Cache-Control", &cc));
    assert_int_equal(cc.max_age, 3600);
    assert_int_equal(cc.s_maxage, 1);
    nori_http_response_clear(&r);
    make(&r, 200, "X", "y", NULL);
    assert_false(nori__cc_parse(&r, "Cache-Control", &cc));
    nori_http_response_clear(&r);
}

static void test_age(void **state)
{
    (void)state;
    static const struct {
        const char *a, *b;
        int64_t want;
    } cases[] = {{"7200", NULL, 7200},
                 {"0", NULL, 0},
                 {"00012", NULL, 12},
                 {"99999999999", NULL, NORI__DELTA_MAX},
                 {"abc", NULL, NORI__AGE_INVALID},
                 {"-7200", NULL, NORI__AGE_INVALID},
                 {"7200.0", NULL, NORI__AGE_INVALID},
                 {"7200,0", NULL, NORI__AGE_INVALID},
                 {"0, 0", NULL, NORI__AGE_INVALID},
                 {"7200;foo=bar", NULL, NORI__AGE_INVALID},
                 {"", NULL, NORI__AGE_INVALID},
                 {"0", "0", NORI__AGE_INVALID},
                 {"7200", "0", NORI__AGE_INVALID}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nori_http_response r;
        if (cases[i].b != NULL)
            make(&r, 200, "Age", cases[i].a, "age", cases[i].b, NULL);
        else
            make(&r, 200, "Age", cases[i].a, NULL);
        if (nori__http_age_value(&r) != cases[i].want)
            fail_msg("Age %s%s%s: %lld", cases[i].a, cases[i].b ? " / " : "",
                     cases[i].b ? cases[i].b : "", (long long)nori__http_age_value(&r));
        nori_http_response_clear(&r);
    }
    nori_http_response r;
    make(&r, 200, NULL);
    assert_int_equal(nori__http_age_value(&r), 0);
    nori_http_response_clear(&r);
}

/* ------------------------------------------------------------ judging */

static const nori__rules app_rules = {false, 60, 0, 0, NULL, 0};
static const nori__rules rfc_rules = {true, 0, 0, 0, NULL, 0};
static const nori__rules rfc_keep = {true, 0, 10, 3600000, NULL, 0};

#define NOW 1700000000000LL

/* judge with the request sent and answered at NOW. */
static bool judge(const nori__rules *rules, const nori_http_response *r, nori__entry_meta *m)
{
    return nori__http_judge(rules, r, NOW, NOW, m);
}

static void date_at(int64_t offset_s, char out[NORI_HTTP_DATE_SIZE])
{
    assert_nori(nori__http_date_format(NOW / 1000 + offset_s, out), NORI_OK);
}

static void test_statuses(void **state)
{
    (void)state;
    nori__entry_meta m;
    /* With explicit freshness: the application rules store 2xx but
     * 204/205/206; the RFC rules any final status but 304 (a 206 only under
     * its request's range key: nori__http_store's decision). */
    static const int statuses[] = {200, 201, 203, 204, 205, 206, 299, 301, 302, 304,
                                   307, 400, 404, 410, 500, 502, 503, 599, 100, 600};
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        int s = statuses[i];
        nori_http_response r;
        make(&r, s, "Cache-Control", "max-age=60", NULL);
        bool app_ok = s >= 200 && s <= 299 && s != 204 && s != 205 && s != 206;
        bool rfc_ok = s >= 200 && s <= 599 && s != 304;
        if (judge(&app_rules, &r, &m) != app_ok || judge(&rfc_rules, &r, &m) != rfc_ok)
            fail_msg("status %d with max-age", s);
        nori_http_response_clear(&r);
        /* Without: the application rules' ttl only for 200 and 203; the RFC
         * rules store the heuristically cacheable ones, stale without a
         * heuristic (so only with a validator and keep). */
        make(&r, s, "Last-Modified", "Mon, 01 Jan 2001 00:00:00 GMT", NULL);
        bool heur = s == 200 || s == 203 || s == 204 || s == 206 || s == 301 || s == 404 ||
                    s == 410;
        if (judge(&app_rules, &r, &m) != (s == 200 || s == 203) ||
            judge(&rfc_rules, &r, &m) != false || judge(&rfc_keep, &r, &m) != heur)
            fail_msg("status %d without freshness", s);
        if (heur) {
            assert_true(judge(&rfc_keep, &r, &m));
            assert_true(m.fresh_ms > 0); /* 10% of the time since Last-Modified */
        }
        nori_http_response_clear(&r);
    }
    /* public makes any status cacheable by default. */
    nori_http_response r;
    make(&r, 599, "Cache-Control", "public", "ETag", "\"a\"", NULL);
    assert_true(judge(&rfc_keep, &r, &m));
    nori_http_response_clear(&r);
    make(&r, 599, "ETag", "\"a\"", NULL);
    assert_false(judge(&rfc_keep, &r, &m));
    nori_http_response_clear(&r);
    /* must-understand: only statuses RFC 9110 defines, and no-store then
     * does not count. */
    make(&r, 599, "Cache-Control", "max-age=60, must-understand", NULL);
    assert_false(judge(&rfc_rules, &r, &m));
    nori_http_response_clear(&r);
    make(&r, 200, "Cache-Control", "max-age=60, must-understand, no-store", NULL);
    assert_true(judge(&rfc_rules, &r, &m));
    nori_http_response_clear(&r);
}

static void test_forbidding(void **state)
{
    (void)state;
    static const char *const never[] = {"no-store", "private", "max-age=60, private=\"x\"",
                                        "max-age=60, no-store"};
    nori__entry_meta m;
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++) {
        nori_http_response r;
        make(&r, 200, "Cache-Control", never[i], NULL);
        assert_false(judge(&app_rules, &r, &m));
        assert_false(judge(&rfc_keep, &r, &m));
        nori_http_response_clear(&r);
    }
    nori_http_response r;
    make(&r, 200, "Cache-Control", "max-age=60", "Vary", "Accept, *", NULL);
    assert_false(judge(&rfc_rules, &r, &m));
    nori_http_response_clear(&r);
    /* Set-Cookie: never under the application rules; under the RFC rules
     * only with an explicit freshness. */
    make(&r, 200, "Cache-Control", "max-age=60", "Set-Cookie", "a=b", NULL);
    assert_false(judge(&app_rules, &r, &m));
    assert_true(judge(&rfc_rules, &r, &m));
    nori_http_response_clear(&r);
    make(&r, 200, "Last-Modified", "Mon, 01 Jan 2001 00:00:00 GMT", "Set-Cookie", "a=b", NULL);
    assert_false(judge(&rfc_keep, &r, &m));
    nori_http_response_clear(&r);
    /* no-cache: not under the application rules; stored stale, never to be
     * served stale, under the RFC rules (with a validator and keep). */
    make(&r, 200, "Cache-Control", "max-age=600, no-cache", "ETag", "\"v\"", NULL);
    assert_false(judge(&app_rules, &r, &m));
    assert_false(judge(&rfc_rules, &r, &m));
    assert_true(judge(&rfc_keep, &r, &m));
    assert_int_equal(m.fresh_ms, 0);
    assert_true(m.flags & NORI__META_NO_STALE);
    nori_http_response_clear(&r);
}

static void test_lifetimes(void **state)
{
    (void)state;
    char d0[NORI_HTTP_DATE_SIZE], dm10[NORI_HTTP_DATE_SIZE], d10[NORI_HTTP_DATE_SIZE],
        d20[NORI_HTTP_DATE_SIZE], dm7200[NORI_HTTP_DATE_SIZE];
    date_at(0, d0);
    date_at(-10, dm10);
    date_at(10, d10);
    date_at(20, d20);
    date_at(-7200, dm7200);
    static const nori__rules capped = {true, 100, 0, 3600000, NULL, 0};
    struct {
        const char *h[8];
        int64_t fresh, age; /* ms */
        uint32_t flags;
        bool stored;
    } cases[] = {
        {{"Cache-Control", "s-maxage=2, max-age=60"}, 2000, 0, NORI__META_NO_STALE, true},
        {{"Cache-Control", "max-age=60", "Expires", "0"}, 60000, 0, 0, true},
        {{"Expires", d10, "Date", d0}, 10000, 0, 0, true},
        {{"Expires", d10, "Date", "foo"}, 10000, 0, 0, true},
        {{"Expires", d20, "Date", d10}, 10000, 0, 0, true},
        {{"Expires", "0", "Date", d0}, 0, 0, 0, false},
        {{"Expires", dm10, "Date", d0}, 0, 0, 0, false},
        /* Age counted: stale on arrival */
        {{"Cache-Control", "max-age=3600", "Age", "7200", "Date", d0}, 3600000, 7200000, 0,
         false},
        {{"Cache-Control", "max-age=600", "Age", "30"}, 600000, 30000, 0, true},
        /* apparent age from Date */
        {{"Cache-Control", "max-age=3600", "Date", dm7200}, 3600000, 7200000, 0, false},
        {{"Expires", d10, "Date", dm10, "Age", "25"}, 20000, 25000, 0, false},
        {{"Cache-Control", "max-age=60, must-revalidate"}, 60000, 0, NORI__META_NO_STALE, true},
        {{"Cache-Control", "max-age=60, proxy-revalidate"}, 60000, 0, NORI__META_NO_STALE, true},
        {{"Cache-Control", "max-age=99999999999"}, NORI__DELTA_MAX * 1000, 0, 0, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nori_http_response r;
        make(&r, 200, NULL);
        for (size_t k = 0; k < 8 && cases[i].h[k] != NULL; k += 2)
            assert_nori(nori_http_response_add_header(&r, cases[i].h[k], cases[i].h[k + 1]),
                        NORI_OK);
        nori__entry_meta m;
        bool stored = judge(&rfc_rules, &r, &m);
        if (stored != cases[i].stored || m.fresh_ms != cases[i].fresh ||
            m.age_ms != cases[i].age || m.flags != cases[i].flags)
            fail_msg("case %zu: stored %d fresh %lld age %lld flags %u", i, stored,
                     (long long)m.fresh_ms, (long long)m.age_ms, m.flags);
        assert_int_equal(m.stored_at_ms, NOW);
        /* The route's ttl caps it. */
        (void)nori__http_judge(&capped, &r, NOW, NOW, &m);
        assert_true(m.fresh_ms <= 100000);
        nori_http_response_clear(&r);
    }
    /* The time the handler took is part of the age (4.2.3). */
    nori_http_response r;
    make(&r, 200, "Cache-Control", "max-age=60", "Age", "5", NULL);
    nori__entry_meta m;
    assert_true(nori__http_judge(&rfc_rules, &r, NOW - 1500, NOW, &m));
    assert_int_equal(m.age_ms, 6500);
    m.stored_at_ms = NOW;
    assert_int_equal(nori__http_current_age(&m, NOW + 1000), 7500);
    nori_http_response_clear(&r);
    /* The RFC rules take the response's own stale windows, unless it must
     * revalidate; the application rules never. */
    make(&r, 200, "Cache-Control", "max-age=2, stale-while-revalidate=30, stale-if-error=60",
         NULL);
    assert_true(judge(&rfc_rules, &r, &m));
    assert_int_equal(m.swr_ms, 30000);
    assert_int_equal(m.sie_ms, 60000);
    assert_true(judge(&app_rules, &r, &m));
    assert_int_equal(m.swr_ms, 0);
    assert_int_equal(m.sie_ms, 0);
    nori_http_response_clear(&r);
    make(&r, 200, "Cache-Control", "max-age=2, stale-if-error=60, must-revalidate", NULL);
    assert_true(judge(&rfc_rules, &r, &m));
    assert_int_equal(m.sie_ms, 0);
    nori_http_response_clear(&r);
    /* The application rules: the ttl for a 200 without freshness; 0 = no
     * limit. */
    make(&r, 200, NULL);
    assert_true(judge(&app_rules, &r, &m));
    assert_int_equal(m.fresh_ms, 60000);
    static const nori__rules app_unlimited = {false, 0, 0, 0, NULL, 0};
    assert_true(judge(&app_unlimited, &r, &m));
    assert_int_equal(m.fresh_ms, -1);
    nori_http_response_clear(&r);
}

/* RFC 9213: the first targeted field present replaces Cache-Control and
 * Expires; an empty one does not count. */
static void test_targeted(void **state)
{
    (void)state;
    char n1[] = "CDN-Cache-Control", n2[] = "Nori-Cache-Control";
    char *names[] = {n1, n2};
    nori__rules rules = {true, 0, 0, 0, names, 2};
    nori__entry_meta m;
    nori_http_response r;
    make(&r, 200, "Cache-Control", "no-store", "CDN-Cache-Control", "max-age=60", NULL);
    assert_true(judge(&rules, &r, &m));
    assert_int_equal(m.fresh_ms, 60000);
    assert_false(judge(&rfc_rules, &r, &m));
    nori_http_response_clear(&r);
    char d[NORI_HTTP_DATE_SIZE];
    date_at(100, d);
    make(&r, 200, "Expires", d, "cdn-cache-control", "private", NULL);
    assert_false(judge(&rules, &r, &m));
    assert_true(judge(&rfc_rules, &r, &m));
    nori_http_response_clear(&r);
    make(&r, 200, "Nori-Cache-Control", "max-age=5", "CDN-Cache-Control", "max-age=50", NULL);
    assert_true(judge(&rules, &r, &m));
    assert_int_equal(m.fresh_ms, 50000);
    nori_http_response_clear(&r);
    make(&r, 200, "CDN-Cache-Control", " , ", "Cache-Control", "max-age=7", NULL);
    assert_true(judge(&rules, &r, &m));
    assert_int_equal(m.fresh_ms, 7000);
    nori_http_response_clear(&r);
}

/* --------------------------------------------------------------- Vary */

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

static void variant(const test_header *h, size_t n, const char *names, char *out)
{
    test_headers t = {h, n};
    nori_http_request rq = {"GET", "/", "", test_header_lookup, &t, NULL, 0, each_of};
    assert_nori(nori__vary_key("k", names, &rq, out), NORI_OK);
}

static void test_vary(void **state)
{
    (void)state;
    char names[NORI__VARY_NAMES_MAX];
    nori_http_response r;
    make(&r, 200, "Vary", "X-Foo, accept-language", "vary", "X-FOO,Bar", NULL);
    assert_int_equal(nori__vary_names(&r, NULL, 0, names), 1);
    assert_string_equal(names, "accept-language,bar,x-foo");
    assert_true(nori__vary_names_ok(names, strlen(names)));
    char bar[] = "bar";
    char *skip[] = {bar};
    assert_int_equal(nori__vary_names(&r, skip, 1, names), 1);
    assert_string_equal(names, "accept-language,x-foo");
    nori_http_response_clear(&r);
    static const char *const refused[] = {"*", "a, *", "*, *", "a b", "a/b"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        make(&r, 200, "Vary", refused[i], NULL);
        assert_int_equal(nori__vary_names(&r, NULL, 0, names), -1);
        nori_http_response_clear(&r);
    }
    make(&r, 200, "Vary", "", "Vary", " , ", NULL);
    assert_int_equal(nori__vary_names(&r, NULL, 0, names), 0);
    nori_http_response_clear(&r);
    static const char *const bad_records[] = {"", "A", "a,,b", ",a", "a,", "a b", "a:b"};
    for (size_t i = 0; i < sizeof bad_records / sizeof bad_records[0]; i++)
        assert_false(nori__vary_names_ok(bad_records[i], strlen(bad_records[i])));

    /* Variant keys: values normalised, missing differs from empty. */
    char a[NORI_MAX_KEY_LEN + 1], b[NORI_MAX_KEY_LEN + 1];
    test_header h1[] = {{"Foo", "1, 2"}};
    test_header h2[] = {{"foo", "1"}, {"FOO", "2"}};
    test_header h3[] = {{"Foo", " 1 ,2 "}};
    variant(h1, 1, "foo", a);
    assert_string_equal(a, "k:v=foo=1,2");
    variant(h2, 2, "foo", b);
    assert_string_equal(a, b);
    variant(h3, 1, "foo", b);
    assert_string_equal(a, b);
    test_header quoted[] = {{"Foo", "\"a, b\""}};
    variant(quoted, 1, "foo", b);
    assert_string_equal(b, "k:v=foo=\"a%2C b\"");
    test_header empty[] = {{"Foo", ""}};
    variant(empty, 1, "foo", a);
    variant(NULL, 0, "foo", b);
    assert_string_equal(a, "k:v=foo=");
    assert_string_equal(b, "k:v=foo");
    /* Case folded only where the members are case-insensitive. */
    test_header l1[] = {{"Accept-Language", "en, De"}, {"X", "Ab"}};
    test_header l2[] = {{"accept-language", "EN,de"}, {"X", "ab"}};
    variant(l1, 2, "accept-language", a);
    variant(l2, 2, "accept-language", b);
    assert_string_equal(a, b);
    variant(l1, 2, "x", a);
    variant(l2, 2, "x", b);
    assert_string_not_equal(a, b);
    /* Separators in values cannot forge another pair. */
    test_header f1[] = {{"A", "1,b=2"}};
    test_header f2[] = {{"A", "1"}, {"B", "2"}};
    variant(f1, 1, "a,b", a);
    variant(f2, 2, "a,b", b);
    assert_string_not_equal(a, b);
    /* Without enumeration, the lookup alone. */
    test_headers t = {h1, 1};
    nori_http_request rq = {"GET", "/", "", test_header_lookup, &t, NULL, 0, NULL};
    assert_nori(nori__vary_key("k", "foo", &rq, a), NORI_OK);
    assert_string_equal(a, "k:v=foo=1,2");
    /* Too long: refused, never cut. */
    char *big = malloc(2000);
    memset(big, 'x', 1999);
    big[1999] = '\0';
    test_header hb[] = {{"Foo", big}};
    t = (test_headers){hb, 1};
    assert_nori(nori__vary_key("k", "foo", &rq, a), NORI_ETOOBIG);
    free(big);
}

/* ------------------------------------------- 304 updates, validation */

static void test_update_304(void **state)
{
    (void)state;
    nori_http_response stored, fresh;
    make(&stored, 200, "ETag", "\"a\"", "Test-Header", "A", "Cache-Control", "max-age=1",
         "Content-Encoding", "gzip", "X-Keep", "k", "Link", "<a>", "link", "<b>", "Age", "9",
         NULL);
    assert_nori(nori_http_response_set_media_type(&stored, "text/plain"), NORI_OK);
    make(&fresh, 304, "ETag", "\"b\"", "Test-Header", "B", "Cache-Control", "max-age=60",
         "Content-Encoding", "br", "Link", "<c>", "Age", "3", "Connection", "close",
         "Content-Length", "99", "X-Empty", "", NULL);
    assert_nori(nori_http_response_set_media_type(&fresh, "text/plain;charset=utf-8"),
                NORI_OK);
    assert_nori(nori__http_update_headers(&stored, &fresh), NORI_OK);
    assert_string_equal(nori_http_response_header(&stored, "ETag"), "\"a\"");
    assert_string_equal(nori_http_response_header(&stored, "Content-Encoding"), "gzip");
    assert_string_equal(nori_http_response_header(&stored, "Test-Header"), "B");
    assert_string_equal(nori_http_response_header(&stored, "Cache-Control"), "max-age=60");
    assert_string_equal(nori_http_response_header(&stored, "X-Keep"), "k");
    assert_string_equal(nori_http_response_header(&stored, "Age"), "3");
    assert_null(nori_http_response_header(&stored, "Connection"));
    assert_null(nori_http_response_header(&stored, "Content-Length"));
    assert_null(nori_http_response_header(&stored, "X-Empty"));
    assert_string_equal(stored.media_type, "text/plain;charset=utf-8");
    size_t links = 0;
    for (size_t i = 0; i < stored.n_headers; i++)
        links += strcasecmp(stored.headers[i].name, "Link") == 0;
    assert_int_equal(links, 1); /* both stored lines replaced by the 304's */
    assert_string_equal(nori_http_response_header(&stored, "Link"), "<c>");
    nori_http_response_clear(&stored);
    nori_http_response_clear(&fresh);
}

static void test_conditional_request(void **state)
{
    (void)state;
    test_header client[] = {{"If-None-Match", "\"client\""}, {"X-User", "u"},
                            {"If-Modified-Since", "Mon, 01 Jan 2001 00:00:00 GMT"}};
    test_headers t = {client, 3};
    nori_http_request in = {"GET", "/p", "q=1", test_header_lookup, &t, NULL, 0, each_of};
    nori_http_response stored;
    make(&stored, 200, "ETag", "\"s\"", "Last-Modified", "Tue, 02 Jan 2001 00:00:00 GMT", NULL);
    nori__cond_req cr;
    assert_true(nori__cond_request(&cr, &in, &stored));
    const nori_http_request *rq = &cr.req;
    assert_string_equal(rq->path, "/p");
    assert_string_equal(rq->query, "q=1");
    assert_string_equal(nori_http_request_header(rq, "if-none-match"), "\"s\"");
    assert_string_equal(nori_http_request_header(rq, "If-Modified-Since"),
                        "Tue, 02 Jan 2001 00:00:00 GMT");
    assert_string_equal(nori_http_request_header(rq, "X-User"), "u");
    nori_http_response_clear(&stored);
    /* The tag derived from the body is not sent; Last-Modified alone. */
    make(&stored, 200, "Last-Modified", "Tue, 02 Jan 2001 00:00:00 GMT", NULL);
    assert_nori(nori_http_response_set_body(&stored, "body", 4), NORI_OK);
    assert_nori(nori__http_ensure_etag(&stored), NORI_OK);
    assert_true(nori__cond_request(&cr, &in, &stored));
    assert_null(nori_http_request_header(&cr.req, "If-None-Match"));
    assert_non_null(nori_http_request_header(&cr.req, "If-Modified-Since"));
    nori_http_response_clear(&stored);
    /* No validator: no conditional request. */
    make(&stored, 200, "X", "y", NULL);
    assert_false(nori__cond_request(&cr, &in, &stored));
    nori_http_response_clear(&stored);
}

static int count_visit(void *ud, const char *name, const char *value)
{
    char *out = ud;
    size_t n = strlen(out);
    snprintf(out + n, 512 - n, "%s=%s;", name, value);
    return 0;
}

static void test_conditional_enumeration(void **state)
{
    (void)state;
    test_header client[] = {{"If-None-Match", "\"client\""}, {"X-User", "u"},
                            {"if-modified-since", "x"}};
    test_headers t = {client, 3};
    nori_http_request in = {"GET", "/p", "", test_header_lookup, &t, NULL, 0, each_of};
    nori_http_response stored;
    make(&stored, 200, "ETag", "W/\"s\"", NULL);
    nori__cond_req cr;
    assert_true(nori__cond_request(&cr, &in, &stored));
    char out[512] = "";
    assert_int_equal(nori_http_request_each_header(&cr.req, count_visit, out), 0);
    assert_string_equal(out, "X-User=u;If-None-Match=W/\"s\";");
    nori_http_response_clear(&stored);
}

static void range_of(const char *range, const char *if_range, int status, const char *body,
                     const char *content_range)
{
    test_header h[] = {{"Range", range}, {"If-Range", if_range}};
    test_headers t = {h, if_range != NULL ? 2 : 1};
    nori_http_request rq = {"GET", "/", "", test_header_lookup, &t, NULL, 0, NULL};
    nori_http_response r;
    make(&r, 200, "ETag", "\"e\"", "Last-Modified", "Mon, 01 Jan 2001 00:00:00 GMT", NULL);
    assert_nori(nori_http_response_set_body(&r, "0123456789A", 11), NORI_OK);
    assert_nori(nori__http_apply_range(&rq, &r), NORI_OK);
    if (r.status != status || r.body_len != strlen(body) ||
        memcmp(r.body, body, r.body_len) != 0)
        fail_msg("Range %s: %d \"%.*s\"", range, r.status, (int)r.body_len, r.body);
    const char *cr = nori_http_response_header(&r, "Content-Range");
    if (content_range == NULL ? cr != NULL : cr == NULL || strcmp(cr, content_range) != 0)
        fail_msg("Range %s: Content-Range %s", range, cr ? cr : "(none)");
    nori_http_response_clear(&r);
}

static void test_ranges(void **state)
{
    (void)state;
    range_of("bytes=0-1", NULL, 206, "01", "bytes 0-1/11");
    range_of("bytes=1-", NULL, 206, "123456789A", "bytes 1-10/11");
    range_of("bytes=-1", NULL, 206, "A", "bytes 10-10/11");
    range_of("bytes=-50", NULL, 206, "0123456789A", "bytes 0-10/11");
    range_of("BYTES=5-7", NULL, 206, "567", "bytes 5-7/11");
    range_of("bytes=9-100", NULL, 206, "9A", "bytes 9-10/11");
    range_of("bytes=0-1,3-4", NULL, 200, "0123456789A", NULL);
    range_of("bytes=11-", NULL, 200, "0123456789A", NULL);
    range_of("bytes=3-1", NULL, 200, "0123456789A", NULL);
    range_of("bytes=-0", NULL, 200, "0123456789A", NULL);
    range_of("items=0-1", NULL, 200, "0123456789A", NULL);
    range_of("bytes=x-1", NULL, 200, "0123456789A", NULL);
    range_of("bytes=0-1", "\"e\"", 206, "01", "bytes 0-1/11");
    range_of("bytes=0-1", "\"other\"", 200, "0123456789A", NULL);
    range_of("bytes=0-1", "W/\"e\"", 200, "0123456789A", NULL);
    range_of("bytes=0-1", "Mon, 01 Jan 2001 00:00:00 GMT", 206, "01", "bytes 0-1/11");
    range_of("bytes=0-1", "Tue, 02 Jan 2001 00:00:00 GMT", 200, "0123456789A", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_control),   cmocka_unit_test(test_age),
        cmocka_unit_test(test_statuses),        cmocka_unit_test(test_forbidding),
        cmocka_unit_test(test_lifetimes),       cmocka_unit_test(test_targeted),
        cmocka_unit_test(test_vary),            cmocka_unit_test(test_update_304),
        cmocka_unit_test(test_conditional_request),
        cmocka_unit_test(test_conditional_enumeration),
        cmocka_unit_test(test_ranges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
