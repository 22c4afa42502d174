// SPDX-License-Identifier: MIT
/* Many threads serving through one response cache on one memory backend:
 * every response is the right one for its key, and the counters add up. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_support.h"

#include "nori/http.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define THREADS 8
#define ROUNDS 3000
#define KEYS 40

static _Atomic int handler_runs;

static int handler(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)ud;
    atomic_fetch_add(&handler_runs, 1);
    char body[64];
    int n = snprintf(body, sizeof body, "body of %s", req->query);
    return nori_http_response_set_body(resp, body, (size_t)n);
}

static nori_http_cache *cache;

static void *worker(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    int wrong = 0;
    nori_http_response resp;
    nori_http_response_init(&resp);
    for (int i = 0; i < ROUNDS; i++) {
        seed = seed * 1103515245u + 12345u;
        char query[32], want[64];
        snprintf(query, sizeof query, "k=%u", (seed >> 16) % KEYS);
        snprintf(want, sizeof want, "body of %s", query);
        nori_http_request req = {"GET", "/t", query, NULL, NULL, NULL, 0, NULL};
        if (nori_http_cache_serve(cache, &req, handler, NULL, &resp) != NORI_OK ||
            resp.body_len != strlen(want) || memcmp(resp.body, want, resp.body_len) != 0)
            wrong++;
    }
    nori_http_response_clear(&resp);
    return (void *)(intptr_t)wrong;
}

static void test_threads(void **state)
{
    (void)state;
    nori_backend *b;
    /* Fewer slots than keys: evictions race with reads and writes too. */
    assert_nori(nori_memory_backend_new(KEYS / 2, &b), NORI_OK);
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = b;
    assert_nori(nori_http_cache_new(&o, &cache), NORI_OK);
    pthread_t t[THREADS];
    for (uintptr_t i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, worker, (void *)(i + 1)), 0);
    int wrong = 0;
    for (int i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        wrong += (int)(intptr_t)r;
    }
    assert_int_equal(wrong, 0);
    nori_http_cache_stats s;
    nori_http_cache_get_stats(cache, &s);
    assert_int_equal(s.hits + s.misses, THREADS * ROUNDS);
    assert_int_equal(s.misses, (uint64_t)atomic_load(&handler_runs));
    assert_int_equal(s.stores, s.misses);
    assert_int_equal(s.errors, 0);
    assert_true(s.hits > 0);
    nori_http_cache_free(cache);
    nori_backend_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_threads)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
