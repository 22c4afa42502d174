/*
 * The response cache on Redis, in one process and across processes that
 * share the server: lifetimes and lease values at the ends of int64. Every
 * process reads one test clock in shared memory (entries' stored-at times);
 * Redis keeps the entries for lifetime + window in real time, which these
 * tests never reach. NORI_TEST_TOPOLOGY=cluster|sentinel runs the same
 * cases on that set-up (test_http_redis_cluster, _sentinel).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis_topology.h"
#include "test_support.h"

#include "http_internal.h"
#include "nori/http.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* What every process of a case shares (MAP_SHARED, lock-free atomics). */
typedef struct {
    _Atomic int64_t now; /* the test clock */
} shared_state;

static shared_state *sh;
static nori_test_topology *topo;

static int64_t shared_clock(void)
{
    return atomic_load(&sh->now);
}

static int group_setup(void **state)
{
    (void)state;
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(sh != MAP_FAILED);
    topo = nori_test_topology_start();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    nori_test_topology_stop(topo);
    munmap(sh, sizeof *sh);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    memset(sh, 0, sizeof *sh);
    atomic_store(&sh->now, 1700000000000);
    nori__http_clock_override(shared_clock);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    nori__http_clock_override(NULL);
    return 0;
}

static nori_backend *new_backend(void)
{
    nori_backend *b;
    if (nori_redis_backend_new(topo->url, &b) != NORI_OK)
        return NULL;
    return b;
}

static nori_http_cache *new_cache(nori_backend *b, const char *prefix, int64_t swr,
                                  size_t refresh_threads, int64_t lock_timeout_ms)
{
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = b;
    o.prefix = prefix;
    o.ttl = 10;
    o.stale_while_revalidate = swr;
    o.refresh_threads = refresh_threads;
    o.lock_timeout_ms = lock_timeout_ms;
    nori_http_cache *c = NULL;
    if (nori_http_cache_new(&o, &c) != NORI_OK)
        return NULL;
    return c;
}

/* Serves GET/POST path; copies the body (NUL-terminated) into body[64]. */
static int serve_copy(nori_http_cache *c, const char *method, const char *path,
                      nori_http_handler_fn h, nori_http_origin *origin, char body[64])
{
    nori_http_request rq = {method, path, "", NULL, NULL, NULL, 0};
    nori_http_response r;
    nori_http_response_init(&r);
    int rc = nori_http_cache_serve(c, &rq, h, NULL, &r);
    if (origin != NULL)
        *origin = r.origin;
    if (body != NULL) {
        size_t n = r.body_len < 63 ? r.body_len : 63;
        memcpy(body, r.body != NULL ? r.body : "", n);
        body[n] = '\0';
    }
    nori_http_response_clear(&r);
    return rc;
}

/* ------------------------------------------------------------ extremes */

static int forever_handler(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)req;
    (void)ud;
    int rc = nori_http_response_set_body(resp, "forever", 7);
    return rc ? rc : nori_http_response_add_header(resp, "Cache-Control",
                                                   "max-age=9223372036854775807");
}

/* A max-age of 2^63-1 on a route without a ttl cap, with a stale window:
 * stored (the backend's ttl saturates at NORI_MAX_TTL) and read back (the
 * lifetime written is capped there too, so the JSON entry decodes). */
static void test_endless_max_age(void **state)
{
    (void)state;
    nori_backend *b = new_backend();
    assert_non_null(b);
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = b;
    o.prefix = "endless";
    o.ttl = 0;
    o.stale_while_revalidate = 30;
    nori_http_cache *c;
    assert_nori(nori_http_cache_new(&o, &c), NORI_OK);
    nori_http_origin origin;
    char body[64];
    assert_nori(serve_copy(c, "GET", "/e", forever_handler, &origin, body), NORI_OK);
    assert_int_equal(origin, NORI_HTTP_MISS);
    assert_nori(serve_copy(c, "GET", "/e", forever_handler, &origin, body), NORI_OK);
    assert_int_equal(origin, NORI_HTTP_HIT);
    assert_string_equal(body, "forever");
    nori_http_cache_stats s;
    nori_http_cache_get_stats(c, &s);
    assert_int_equal(s.errors, 0);
    nori_http_cache_free(c);
    nori_backend_free(b);
}

/* A lease value whose time is at the ends of int64 is not a lease of this
 * library: not waited for, and read without overflow (UBSan aborts on a
 * signed overflow in the sanitizer build). */
static void test_lease_time_extremes(void **state)
{
    (void)state;
    nori_backend *b = new_backend();
    assert_non_null(b);
    nori_http_cache *c = new_cache(b, "lease", 0, 1, 5000);
    assert_non_null(c);
    static const char *const tokens[] = {"123-9223372036854775807.000000000-1",
                                         "123--9223372036854775808.999999999-1",
                                         "123-9223372036854775.807000000-1"};
    for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++) {
        char path[16], lease[64];
        snprintf(path, sizeof path, "/l%zu", i);
        snprintf(lease, sizeof lease, "lease:%s::lock", path);
        assert_nori(nori_backend_set(b, lease, tokens[i], strlen(tokens[i]), 60), NORI_OK);
        nori_http_cache_stats before, after;
        nori_http_cache_get_stats(c, &before);
        nori_http_origin o;
        assert_nori(serve_copy(c, "GET", path, forever_handler, &o, NULL), NORI_OK);
        assert_int_equal(o, NORI_HTTP_MISS);
        nori_http_cache_get_stats(c, &after);
        assert_int_equal(after.lock_timeouts, before.lock_timeouts);
        assert_int_equal(after.errors, before.errors + 1);
    }
    nori_http_cache_free(c);
    nori_backend_free(b);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_endless_max_age),
        T(test_lease_time_extremes),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
