// SPDX-License-Identifier: MIT
/* What the response cache may store: status class and forbidding headers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_support.h"

#include "nori/http.h"

static int storable_with(int status, const char *name, const char *value)
{
    nori_http_response r;
    nori_http_response_init(&r);
    r.status = status;
    assert_nori(nori_http_response_add_header(&r, "Content-Type", "text/plain"), NORI_OK);
    if (name != NULL)
        assert_nori(nori_http_response_add_header(&r, name, value), NORI_OK);
    int s = nori_http_response_storable(&r);
    nori_http_response_clear(&r);
    return s;
}

static void test_status_classes(void **state)
{
    (void)state;
    static const int yes[] = {200, 201, 202, 203, 207, 299};
    /* 206 is one range of one request (issue 10 item 8); 204/205 carry no
     * content to reuse. */
    static const int no[] = {100, 101, 103, 199, 204, 205, 206, 300, 301, 302, 304, 307,
                             400, 401, 403, 404, 429, 499, 500, 502, 503, 599, 0, -1, 1000};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        assert_int_equal(storable_with(yes[i], NULL, NULL), 1);
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        if (storable_with(no[i], NULL, NULL) != 0)
            print_error("status %d would be stored\n", no[i]);
        assert_int_equal(storable_with(no[i], NULL, NULL), 0);
    }
}

static void test_forbidden_headers(void **state)
{
    (void)state;
    static const char *cookie_names[] = {"Set-Cookie", "set-cookie", "SET-COOKIE", "sEt-CoOkIe"};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(storable_with(200, cookie_names[i], "a=1"), 0);
    static const char *cc_no[] = {"private",
                                  "PRIVATE",
                                  "no-store",
                                  "No-Store",
                                  "NO-STORE",
                                  "public, no-store",
                                  "max-age=60,private",
                                  "max-age=0 , private ",
                                  "private=\"Set-Cookie\"",
                                  "no-cache, no-store, must-revalidate",
                                  /* issue 10 item 8: no-cache was served for the whole TTL */
                                  "no-cache",
                                  "No-Cache",
                                  "public, no-cache=\"Set-Cookie\""};
    static const char *cc_names[] = {"Cache-Control", "cache-control", "CACHE-CONTROL"};
    for (size_t n = 0; n < 3; n++)
        for (size_t i = 0; i < sizeof cc_no / sizeof cc_no[0]; i++) {
            if (storable_with(200, cc_names[n], cc_no[i]) != 0)
                print_error("%s: %s would be stored\n", cc_names[n], cc_no[i]);
            assert_int_equal(storable_with(200, cc_names[n], cc_no[i]), 0);
        }
    /* Token match, not substring match; and other directives are fine. */
    static const char *cc_yes[] = {"public, max-age=60", "no-cache-later", "max-age=0",
                                   "x-private", "privateer", "no-store-later",
                                   "community=\"private, no-store\""};
    for (size_t i = 0; i < sizeof cc_yes / sizeof cc_yes[0]; i++) {
        if (storable_with(200, "Cache-Control", cc_yes[i]) != 1)
            print_error("Cache-Control: %s would not be stored\n", cc_yes[i]);
        assert_int_equal(storable_with(200, "Cache-Control", cc_yes[i]), 1);
    }
    /* Headers that merely look alike do not forbid storing. */
    assert_int_equal(storable_with(200, "Set-Cookie2-Info", "x"), 1);
    assert_int_equal(storable_with(200, "X-Cache-Control", "private"), 1);
    assert_int_equal(storable_with(200, "Vary", "Cookie"), 1);
    /* Vary: * can never be matched by a later request (issue 10 item 7). */
    assert_int_equal(storable_with(200, "Vary", "*"), 0);
    assert_int_equal(storable_with(200, "vary", "Accept-Encoding, *"), 0);
}

static void test_response_helpers(void **state)
{
    (void)state;
    nori_http_response r;
    nori_http_response_init(&r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.origin, NORI_HTTP_BYPASS);
    assert_nori(nori_http_response_add_header(&r, "", "x"), NORI_EINVAL);
    assert_nori(nori_http_response_add_header(&r, "X", NULL), NORI_EINVAL);
    for (int i = 0; i < 20; i++)
        assert_nori(nori_http_response_add_header(&r, i % 2 ? "X-A" : "x-b", "v"), NORI_OK);
    assert_int_equal(r.n_headers, 20);
    assert_string_equal(nori_http_response_header(&r, "X-B"), "v");
    assert_nori(nori_http_response_set_body(&r, "a\0b", 3), NORI_OK);
    assert_int_equal(r.body_len, 3);
    assert_memory_equal(r.body, "a\0b", 3);
    assert_nori(nori_http_response_set_body(&r, NULL, 1), NORI_EINVAL);
    assert_nori(nori_http_response_set_body(&r, NULL, 0), NORI_OK);
    assert_int_equal(r.body_len, 0);
    nori_http_response_clear(&r);
    assert_null(r.headers);
    nori_http_response_clear(NULL);
    assert_string_equal(nori_http_origin_name(NORI_HTTP_HIT), "HIT");
    assert_string_equal(nori_http_origin_name(NORI_HTTP_MISS), "MISS");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_classes),
        cmocka_unit_test(test_forbidden_headers),
        cmocka_unit_test(test_response_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
