// SPDX-License-Identifier: MIT
/*
 * The libmicrohttpd adapter, in-process. Its 304 on the wire (RFC 9110 8.6): an in-process
 * MHD daemon serving a cached route, read with a raw socket client. By
 * default the 304 carries Content-Length equal to the 200's body length,
 * exactly once, no body, and the connection carries on (a 200 follows,
 * read whole). libmicrohttpd alone would write "Content-Length: 0".
 * Also the route's methods: a route initialised without them (the README's
 * four-field form) serves GET and HEAD only, and answers POST with 405 and
 * Allow without running the handler or reading the body into it.
 * And the request's headers, enumerated in the order they were sent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_support.h"
#include "http_client.h"

#include "nori/mhd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const char body200[] = "a cached body of 38 bytes, exactly so.";

static int handler(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)req;
    (void)ud;
    (void)nori_http_response_set_media_type(resp, "text/plain");
    return nori_http_response_set_body(resp, body200, strlen(body200));
}

static int count_content_length(const test_http_response *r)
{
    int n = 0;
    for (const char *p = r->head; *p != '\0'; p++)
        n += strncasecmp(p, "\r\nContent-Length:", 17) == 0;
    return n;
}

/* GET (200, its ETag), then GET and HEAD with that ETag (304s), then a 200
 * again, all on one connection; returns the 304s' Content-Length. */
static unsigned long run(void)
{
    nori_backend *b;
    assert_nori(nori_memory_backend_new(100, &b), NORI_OK);
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = b;
    nori_http_cache *c;
    assert_nori(nori_http_cache_new(&o, &c), NORI_OK);
    nori_mhd_route route = {"/r", handler, NULL, c, NORI_HTTP_GET};
    nori_mhd_app app = {&route, 1, 0};
    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, nori_mhd_handler, &app,
                         NORI_MHD_OPTIONS(&app), MHD_OPTION_END);
    assert_non_null(d);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    assert_non_null(info);
    int fd = test_http_connect(info->port);
    assert_true(fd >= 0);
    test_http_response r;
    assert_int_equal(test_http_request(fd, "GET", "/r", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, strlen(body200));
    char etag[128], hdr[200], cl[32];
    assert_non_null(test_http_header(&r, "ETag", etag, sizeof etag));
    test_http_response_free(&r);
    snprintf(hdr, sizeof hdr, "If-None-Match: %s\r\n", etag);
    unsigned long len = 0;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(test_http_request(fd, i ? "HEAD" : "GET", "/r", hdr, NULL, 0, &r), 0);
        assert_int_equal(r.status, 304);
        assert_int_equal(r.body_len, 0);
        assert_int_equal(count_content_length(&r), 1);
        assert_non_null(test_http_header(&r, "Content-Length", cl, sizeof cl));
        len = strtoul(cl, NULL, 10);
        assert_non_null(test_http_header(&r, "ETag", cl, sizeof cl));
        test_http_response_free(&r);
    }
    assert_int_equal(test_http_request(fd, "GET", "/r", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, strlen(body200));
    assert_memory_equal(r.body, body200, r.body_len);
    test_http_response_free(&r);
    close(fd);
    MHD_stop_daemon(d);
    nori_http_cache_free(c);
    nori_backend_free(b);
    return len;
}

static int handler_runs;

static int counting_handler(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)ud;
    handler_runs++;
    return handler(req, resp, NULL);
}

static void test_default_methods(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori_memory_backend_new(100, &b), NORI_OK);
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = b;
    nori_http_cache *c;
    assert_nori(nori_http_cache_new(&o, &c), NORI_OK);
    /* The form every application wrote before routes had methods: it must
     * keep compiling (-Wextra only notes the missing field) and mean
     * GET + HEAD. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
    nori_mhd_route route = {"/r", counting_handler, NULL, c};
#pragma GCC diagnostic pop
    assert_int_equal(route.methods, 0);
    nori_mhd_app app = {&route, 1, 0};
    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, nori_mhd_handler, &app,
                         NORI_MHD_OPTIONS(&app), MHD_OPTION_END);
    assert_non_null(d);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    assert_non_null(info);
    int fd = test_http_connect(info->port);
    assert_true(fd >= 0);
    test_http_response r;
    char allow[64];
    assert_int_equal(test_http_request(fd, "GET", "/r", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    test_http_response_free(&r);
    assert_int_equal(handler_runs, 1);
    /* On the same connection: refused, and the connection carries on. */
    static const char body[] = "a=1&b=2";
    assert_int_equal(test_http_request(fd, "POST", "/r", NULL, body, sizeof body - 1, &r), 0);
    assert_int_equal(r.status, 405);
    assert_non_null(test_http_header(&r, "Allow", allow, sizeof allow));
    assert_string_equal(allow, "GET, HEAD");
    assert_null(test_http_header(&r, "X-Cache", allow, sizeof allow));
    test_http_response_free(&r);
    assert_int_equal(test_http_request(fd, "DELETE", "/r", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 405);
    test_http_response_free(&r);
    assert_int_equal(handler_runs, 1);
    /* Nothing was invalidated: the entry is still served. */
    assert_int_equal(test_http_request(fd, "HEAD", "/r", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(test_http_header(&r, "X-Cache", allow, sizeof allow));
    assert_string_equal(allow, "HIT");
    test_http_response_free(&r);
    assert_int_equal(test_http_request(fd, "GET", "/r", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(test_http_header(&r, "X-Cache", allow, sizeof allow));
    assert_string_equal(allow, "HIT");
    test_http_response_free(&r);
    assert_int_equal(handler_runs, 1);
    nori_http_cache_stats st;
    nori_http_cache_get_stats(c, &st);
    assert_int_equal(st.invalidations, 0);
    assert_int_equal(st.bypass_method, 0);
    close(fd);
    MHD_stop_daemon(d);
    nori_http_cache_free(c);
    nori_backend_free(b);
}

static void test_length_of_the_200(void **state)
{
    (void)state;
    assert_int_equal(run(), strlen(body200));
}

/* Writes "name=value;" for each header into the body, and stops after the
 * header named "X-Stop" (visit returns 7 there). */
static int echo_visit(void *ud, const char *name, const char *value)
{
    char *out = ud;
    size_t n = strlen(out);
    snprintf(out + n, 1024 - n, "%s=%s;", name, value);
    return strcasecmp(name, "X-Stop") == 0 ? 7 : 0;
}

static int echo_handler(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)ud;
    char out[1024] = "";
    int rc = nori_http_request_each_header(req, echo_visit, out);
    char *p = out + strlen(out);
    snprintf(p, sizeof out - (size_t)(p - out), "rc=%d", rc);
    return nori_http_response_set_body(resp, out, strlen(out));
}

static void test_headers_enumerated_in_order(void **state)
{
    (void)state;
    nori_mhd_route route = {"/echo", echo_handler, NULL, NULL, NORI_HTTP_GET};
    nori_mhd_app app = {&route, 1, 0};
    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, nori_mhd_handler, &app,
                         NORI_MHD_OPTIONS(&app), MHD_OPTION_END);
    assert_non_null(d);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int fd = test_http_connect(info->port);
    assert_true(fd >= 0);
    test_http_response r;
    /* A repeated header is seen once per line, in place. */
    assert_int_equal(test_http_request(fd, "GET", "/echo", "X-A: 1\r\nX-Bee: two words\r\nX-A: 3\r\n",
                                       NULL, 0, &r),
                     0);
    assert_int_equal(r.status, 200);
    char *body = strndup(r.body, r.body_len);
    const char *a1 = strstr(body, "X-A=1;"), *b = strstr(body, "X-Bee=two words;");
    const char *a3 = strstr(body, "X-A=3;");
    assert_non_null(a1);
    assert_non_null(b);
    assert_non_null(a3);
    assert_true(a1 < b && b < a3);
    assert_non_null(strstr(body, "rc=0"));
    free(body);
    test_http_response_free(&r);
    /* A visitor that stops: nothing after it, and its value comes back. */
    assert_int_equal(test_http_request(fd, "GET", "/echo", "X-Stop: now\r\nX-After: no\r\n", NULL,
                                       0, &r),
                     0);
    body = strndup(r.body, r.body_len);
    assert_non_null(strstr(body, "X-Stop=now;rc=7"));
    assert_null(strstr(body, "X-After"));
    free(body);
    test_http_response_free(&r);
    close(fd);
    MHD_stop_daemon(d);
}

static void test_each_header_without_enumeration(void **state)
{
    (void)state;
    char out[1024] = "";
    nori_http_request req = {"GET", "/", "", NULL, NULL, NULL, 0, NULL};
    assert_int_equal(nori_http_request_each_header(&req, echo_visit, out), 0);
    assert_string_equal(out, "");
    assert_int_equal(nori_http_request_each_header(NULL, echo_visit, out), NORI_EINVAL);
    assert_int_equal(nori_http_request_each_header(&req, NULL, out), NORI_EINVAL);
}

int main(void)
{
    const struct CMUnitTest cases[] = {
        cmocka_unit_test(test_length_of_the_200),
        cmocka_unit_test(test_default_methods),
        cmocka_unit_test(test_headers_enumerated_in_order),
        cmocka_unit_test(test_each_header_without_enumeration),
    };
    return cmocka_run_group_tests(cases, NULL, NULL);
}
