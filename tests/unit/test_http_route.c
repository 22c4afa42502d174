// SPDX-License-Identifier: MIT
/*
 * The route methods shared by the adapters (src/http/route.c): which
 * methods a methods mask serves (0 = GET and HEAD, HEAD with GET,
 * case-sensitive names), the Allow value, and the 405 response.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_support.h"

#include "nori/http.h"

#include <string.h>

static void test_allowed(void **state)
{
    (void)state;
    /* 0: the safe default, GET and HEAD only. */
    assert_true(nori_http_method_allowed(0, "GET"));
    assert_true(nori_http_method_allowed(0, "HEAD"));
    static const char *const unsafe[] = {"POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
    for (size_t i = 0; i < sizeof unsafe / sizeof unsafe[0]; i++)
        assert_false(nori_http_method_allowed(0, unsafe[i]));
    /* HEAD comes with GET, not the other way round. */
    assert_true(nori_http_method_allowed(NORI_HTTP_GET | NORI_HTTP_POST, "HEAD"));
    assert_false(nori_http_method_allowed(NORI_HTTP_HEAD, "GET"));
    assert_true(nori_http_method_allowed(NORI_HTTP_HEAD, "HEAD"));
    /* A POST-only route serves neither GET nor HEAD. */
    assert_true(nori_http_method_allowed(NORI_HTTP_POST, "POST"));
    assert_false(nori_http_method_allowed(NORI_HTTP_POST, "GET"));
    assert_false(nori_http_method_allowed(NORI_HTTP_POST, "HEAD"));
    assert_true(nori_http_method_allowed(NORI_HTTP_DELETE, "DELETE"));
    assert_true(nori_http_method_allowed(NORI_HTTP_PATCH, "PATCH"));
    assert_true(nori_http_method_allowed(NORI_HTTP_PUT, "PUT"));
    assert_true(nori_http_method_allowed(NORI_HTTP_OPTIONS, "OPTIONS"));
    /* Case-sensitive (RFC 9110 9.1); unknown or absent methods are refused,
     * whatever the mask. */
    assert_false(nori_http_method_allowed(0, "get"));
    assert_false(nori_http_method_allowed(NORI_HTTP_POST, "post"));
    assert_false(nori_http_method_allowed(NORI_HTTP_METHODS_ALL, "PROPFIND"));
    assert_false(nori_http_method_allowed(NORI_HTTP_METHODS_ALL, "GETX"));
    assert_false(nori_http_method_allowed(NORI_HTTP_METHODS_ALL, ""));
    assert_false(nori_http_method_allowed(NORI_HTTP_METHODS_ALL, NULL));
    /* NORI_HTTP_ANY_METHOD: every token, named or not, still case-sensitive
     * in that "get" is a method of its own; never an empty or non-token name. */
    static const char *const any[] = {"GET", "HEAD", "POST", "PROPFIND", "M-SEARCH", "get", "X!"};
    for (size_t i = 0; i < sizeof any / sizeof any[0]; i++)
        assert_true(nori_http_method_allowed(NORI_HTTP_ANY_METHOD, any[i]));
    assert_false(nori_http_method_allowed(NORI_HTTP_ANY_METHOD, ""));
    assert_false(nori_http_method_allowed(NORI_HTTP_ANY_METHOD, "GE T"));
    assert_false(nori_http_method_allowed(NORI_HTTP_ANY_METHOD, "GET/"));
    assert_false(nori_http_method_allowed(NORI_HTTP_ANY_METHOD | NORI_HTTP_GET, NULL));
    /* Reserved bits are ignored: alone they leave the default. */
    assert_true(nori_http_method_allowed(0x100, "GET"));
    assert_false(nori_http_method_allowed(0x100, "POST"));
}

static void test_allow_value(void **state)
{
    (void)state;
    char out[NORI_HTTP_ALLOW_MAX];
    assert_nori(nori_http_allow_value(0, out, sizeof out), NORI_OK);
    assert_string_equal(out, "GET, HEAD");
    assert_nori(nori_http_allow_value(NORI_HTTP_GET, out, sizeof out), NORI_OK);
    assert_string_equal(out, "GET, HEAD");
    assert_nori(nori_http_allow_value(NORI_HTTP_POST, out, sizeof out), NORI_OK);
    assert_string_equal(out, "POST");
    assert_nori(nori_http_allow_value(NORI_HTTP_DELETE | NORI_HTTP_GET | NORI_HTTP_POST, out,
                                      sizeof out),
                NORI_OK);
    assert_string_equal(out, "GET, HEAD, POST, DELETE");
    assert_nori(nori_http_allow_value(~0u, out, sizeof out), NORI_OK);
    assert_string_equal(out, "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
    assert_true(strlen(out) < NORI_HTTP_ALLOW_MAX);
    /* Exactly enough room, then one byte short: refused, never cut. */
    char small[10];
    assert_nori(nori_http_allow_value(0, small, 10), NORI_OK);
    assert_string_equal(small, "GET, HEAD");
    assert_nori(nori_http_allow_value(0, small, 9), NORI_ETOOBIG);
    assert_string_equal(small, "");
    assert_nori(nori_http_allow_value(0, NULL, 10), NORI_EINVAL);
    assert_nori(nori_http_allow_value(0, small, 0), NORI_EINVAL);
}

static void test_not_allowed_response(void **state)
{
    (void)state;
    nori_http_response r;
    nori_http_response_init(&r);
    assert_nori(nori_http_response_set_body(&r, "old", 3), NORI_OK);
    assert_nori(nori_http_response_add_header(&r, "X-Old", "1"), NORI_OK);
    assert_nori(nori_http_response_not_allowed(&r, NORI_HTTP_GET | NORI_HTTP_POST), NORI_OK);
    assert_int_equal(r.status, 405);
    assert_int_equal(r.origin, NORI_HTTP_BYPASS);
    assert_string_equal(nori_http_response_header(&r, "Allow"), "GET, HEAD, POST");
    assert_null(nori_http_response_header(&r, "X-Old"));
    assert_string_equal(r.media_type, "text/plain");
    assert_int_equal(r.body_len, strlen("method not allowed\n"));
    assert_memory_equal(r.body, "method not allowed\n", r.body_len);
    /* Not something the cache would ever store. */
    assert_false(nori_http_response_storable(&r));
    nori_http_response_clear(&r);
    assert_nori(nori_http_response_not_allowed(NULL, 0), NORI_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allowed),
        cmocka_unit_test(test_allow_value),
        cmocka_unit_test(test_not_allowed_response),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
