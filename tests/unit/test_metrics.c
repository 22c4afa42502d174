// SPDX-License-Identifier: MIT
/*
 * nori_metrics_write(): the text is valid Prometheus exposition (checked by
 * a parser here and by promtool's linter, Debian's `prometheus` package),
 * the series say what each backend means, the histogram counts the timed
 * calls, and bad arguments are refused. The Redis side (circuit breaker,
 * every call timed, no in-process series) is in test_metrics_redis.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_support.h"
#include "metrics_checks.h"

#include "nori/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hello(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)req;
    (void)ud;
    return nori_http_response_set_body(resp, "hello", 5);
}

static void serve(nori_http_cache *c, const char *path)
{
    nori_http_request rq = {"GET", path, "", NULL, NULL, NULL, 0, NULL};
    nori_http_response resp;
    nori_http_response_init(&resp);
    assert_nori(nori_http_cache_serve(c, &rq, hello, NULL, &resp), NORI_OK);
    nori_http_response_clear(&resp);
}

static nori_http_cache *new_cache(nori_backend *b, const char *prefix)
{
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = b;
    o.prefix = prefix;
    nori_http_cache *c;
    assert_nori(nori_http_cache_new(&o, &c), NORI_OK);
    return c;
}

static void test_memory_and_caches(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori_memory_backend_new(100, &b), NORI_OK);
    nori_http_cache *c1 = new_cache(b, "one"), *c2 = new_cache(b, "two");
    serve(c1, "/a"); /* miss */
    serve(c1, "/a"); /* hit */
    serve(c2, "/b"); /* miss */
    nori_http_cache *caches[] = {c1, c2};
    nori_metrics_sources src = {b, caches, NULL, 2};
    nori_buf out;
    assert_nori(nori_metrics_write(&src, &out), NORI_OK);
    metrics_check_text(out.data);
    metrics_check_promtool(out.data);
    /* Summed over the caches, unlabelled. */
    assert_int_equal(metrics_value(out.data, "nori_cache_hits_total"), 1);
    assert_int_equal(metrics_value(out.data, "nori_cache_misses_total"), 2);
    assert_int_equal(metrics_value(out.data, "nori_cache_stores_total"), 2);
    /* Every counter of nori_http_cache_stats has its series, 0 included. */
    assert_int_equal(metrics_value(out.data, "nori_cache_revalidations_total"), 0);
    assert_int_equal(metrics_value(out.data, "nori_cache_revalidated_total"), 0);
    assert_int_equal(metrics_value(out.data, "nori_backend_info{kind=\"memory\"}"), 1);
    /* In-process series, and none of Redis's. */
    assert_int_equal(metrics_value(out.data, "nori_cache_entries"), 2);
    assert_int_equal(metrics_value(out.data, "nori_cache_max_keys"), 100);
    assert_true(metrics_value(out.data, "nori_cache_bytes") > 0);
    assert_null(strstr(out.data, "nori_redis_"));
    assert_null(strstr(out.data, "nori_near_"));
    nori_buf_free(&out);

    /* With names: one series per cache, labelled. */
    const char *names[] = {"one", "two"};
    src.cache_names = names;
    assert_nori(nori_metrics_write(&src, &out), NORI_OK);
    metrics_check_text(out.data);
    assert_int_equal(metrics_value(out.data, "nori_cache_misses_total{cache=\"one\"}"), 1);
    assert_int_equal(metrics_value(out.data, "nori_cache_misses_total{cache=\"two\"}"), 1);
    assert_int_equal(metrics_value(out.data, "nori_cache_hits_total{cache=\"one\"}"), 1);
    assert_int_equal(
        metrics_value(out.data, "nori_cache_bypass_total{cache=\"two\",reason=\"method\"}"), 0);
    assert_int_equal(metrics_value(out.data, "nori_cache_hits_total"), -1);
    nori_buf_free(&out);
    nori_http_cache_free(c1);
    nori_http_cache_free(c2);
    nori_backend_free(b);
}

/* On an in-process backend one call in 64 of a thread is timed: 6400 gets
 * in a row give exactly 100 observations, in cumulative buckets. */
static void test_latency_sampled_in_process(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori_memory_backend_new(100, &b), NORI_OK);
    assert_nori(nori_backend_set(b, "k", "v", 1, 0), NORI_OK);
    for (int i = 0; i < 6400; i++) {
        nori_buf v;
        assert_nori(nori_backend_get(b, "k", &v), NORI_OK);
        nori_buf_free(&v);
    }
    nori_metrics_sources src = {b, NULL, NULL, 0};
    nori_buf out;
    assert_nori(nori_metrics_write(&src, &out), NORI_OK);
    metrics_check_text(out.data);
    assert_int_equal(
        metrics_value(out.data, "nori_backend_call_duration_seconds_count{op=\"get\"}"), 100);
    assert_int_equal(
        metrics_value(out.data,
                      "nori_backend_call_duration_seconds_bucket{op=\"get\",le=\"+Inf\"}"),
        100);
    assert_int_equal(metrics_value(out.data, "nori_backend_gets_total{result=\"hit\"}"), 6400);
    nori_buf_free(&out);
    nori_backend_free(b);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    nori_buf out = {(char *)"x", 1};
    nori_metrics_sources src = {NULL, NULL, NULL, 0};
    assert_nori(nori_metrics_write(NULL, &out), NORI_EINVAL);
    assert_null(out.data);
    assert_nori(nori_metrics_write(&src, NULL), NORI_EINVAL);
    src.n_caches = 1;
    assert_nori(nori_metrics_write(&src, &out), NORI_EINVAL);
    assert_non_null(strstr(nori_last_error(), "caches is NULL"));
    nori_http_cache *none[] = {NULL};
    src.caches = none;
    assert_nori(nori_metrics_write(&src, &out), NORI_EINVAL);
    assert_non_null(strstr(nori_last_error(), "caches[0] is NULL"));
    /* Nothing to render is an empty, valid text. */
    src.n_caches = 0;
    assert_nori(nori_metrics_write(&src, &out), NORI_OK);
    assert_string_equal(out.data, "");
    nori_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_and_caches),
        cmocka_unit_test(test_latency_sampled_in_process),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
