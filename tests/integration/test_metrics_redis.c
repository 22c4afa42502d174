// SPDX-License-Identifier: MIT
/*
 * nori_metrics_write() on a Redis backend (a private redis-server): every
 * call is timed, the circuit breaker's state is a label set with one 1 that
 * follows the breaker (frozen server: open), the in-process series are
 * absent, and a near cache adds its series. promtool accepts every text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "metrics_checks.h"
#include "redis_server.h"
#include "test_support.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static nori_test_redis *server;

static int setup(void **state)
{
    (void)state;
    server = nori_test_redis_start(NULL);
    return server == NULL;
}

static int teardown(void **state)
{
    (void)state;
    nori_test_redis_stop(server);
    return 0;
}

static char *render(nori_backend *b)
{
    nori_metrics_sources src = {b, NULL, NULL, 0};
    nori_buf out;
    assert_nori(nori_metrics_write(&src, &out), NORI_OK);
    metrics_check_text(out.data);
    metrics_check_promtool(out.data);
    return out.data;
}

static void test_every_call_timed_and_circuit_labels(void **state)
{
    (void)state;
    char url[512];
    snprintf(url, sizeof url, "%s?timeout_ms=100&circuit_failures=2&circuit_cooldown_ms=60000",
             server->url);
    nori_backend *b;
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    assert_nori(nori_backend_set(b, "m:k", "v", 1, 0), NORI_OK);
    for (int i = 0; i < 7; i++) {
        nori_buf v;
        assert_nori(nori_backend_get(b, "m:k", &v), NORI_OK);
        nori_buf_free(&v);
    }
    char *t = render(b);
    assert_int_equal(metrics_value(t, "nori_backend_call_duration_seconds_count{op=\"get\"}"), 7);
    assert_int_equal(metrics_value(t, "nori_backend_call_duration_seconds_count{op=\"set\"}"), 1);
    assert_int_equal(metrics_value(t, "nori_backend_info{kind=\"redis\"}"), 1);
    assert_int_equal(metrics_value(t, "nori_redis_circuit_state{state=\"closed\"}"), 1);
    assert_int_equal(metrics_value(t, "nori_redis_circuit_state{state=\"open\"}"), 0);
    assert_int_equal(metrics_value(t, "nori_redis_circuit_state{state=\"half_open\"}"), 0);
    assert_null(strstr(t, "nori_cache_entries"));
    assert_null(strstr(t, "nori_cache_evictions_total"));
    assert_null(strstr(t, "nori_near_"));
    free(t);

    /* A frozen server: two timeouts open the breaker. */
    assert_int_equal(kill(server->pid, SIGSTOP), 0);
    for (int i = 0; i < 3; i++) {
        nori_buf v;
        assert_true(nori_backend_get(b, "m:k", &v) < 0);
    }
    assert_int_equal(kill(server->pid, SIGCONT), 0);
    t = render(b);
    assert_int_equal(metrics_value(t, "nori_redis_circuit_state{state=\"open\"}"), 1);
    assert_int_equal(metrics_value(t, "nori_redis_circuit_state{state=\"closed\"}"), 0);
    assert_int_equal(metrics_value(t, "nori_redis_circuit_opens_total"), 1);
    assert_true(metrics_value(t, "nori_redis_timeouts_total") >= 2);
    assert_true(metrics_value(t, "nori_backend_errors_total") >= 3);
    free(t);
    nori_backend_free(b);
}

static void test_near_cache_series(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori_redis_backend_new(server->url, &b), NORI_OK);
    assert_nori(nori_redis_backend_enable_near(b, 100, 0, 0), NORI_OK);
    char *t = render(b);
    assert_true(metrics_value(t, "nori_near_hits_total") >= 0);
    assert_true(metrics_value(t, "nori_near_flushes_total{cause=\"db_changed\"}") >= 0);
    assert_true(metrics_value(t, "nori_near_active") >= 0);
    assert_int_equal(metrics_value(t, "nori_redis_circuit_state{state=\"closed\"}"), 1);
    free(t);
    nori_backend_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_call_timed_and_circuit_labels),
        cmocka_unit_test(test_near_cache_series),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
