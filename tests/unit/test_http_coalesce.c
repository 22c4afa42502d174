/* Request coalescing in one process (issue 11 item 1): 64 concurrent first
 * requests run the handler once; waiters are bounded by lock_timeout; an
 * unstorable response releases the waiters and is remembered
 * (hit-for-miss); a handler that asks the cache for its own key does not
 * deadlock. Labelled "concurrency": CI runs it under TSan too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_support.h"

#include "http/internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

typedef struct {
    _Atomic int runs;
    _Atomic int delay_ms;   /* how long the handler takes */
    int status;
    _Atomic int set_cookie; /* makes the response unstorable */
    _Atomic int inside; /* a handler run is in progress */
} app;

static int handler(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)req;
    app *a = ud;
    int run = atomic_fetch_add(&a->runs, 1) + 1;
    atomic_store(&a->inside, 1);
    int delay = atomic_load(&a->delay_ms);
    if (delay > 0)
        sleep_ms(delay); /* the slow handler being modelled, not a synchronization */
    resp->status = a->status ? a->status : 200;
    char body[64];
    int n = snprintf(body, sizeof body, "run %d", run);
    int rc = nori_http_response_set_body(resp, body, (size_t)n);
    if (rc == NORI_OK && atomic_load(&a->set_cookie))
        rc = nori_http_response_add_header(resp, "Set-Cookie", "a=1");
    return rc;
}

typedef struct {
    nori_http_cache *c;
    app *a;
    pthread_barrier_t *start;
    char body[64];
    nori_http_origin origin;
    int64_t elapsed_ms;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *w = p;
    if (w->start != NULL)
        pthread_barrier_wait(w->start);
    nori_http_request rq = {"GET", "/dashboard", "", NULL, NULL, NULL, 0, NULL};
    nori_http_response r;
    nori_http_response_init(&r);
    int64_t t0 = now_ms();
    int rc = nori_http_cache_serve(w->c, &rq, handler, w->a, &r);
    w->elapsed_ms = now_ms() - t0;
    w->origin = r.origin;
    if (rc == NORI_OK && r.body_len < sizeof w->body) {
        memcpy(w->body, r.body, r.body_len);
        w->body[r.body_len] = '\0';
    }
    nori_http_response_clear(&r);
    return NULL;
}

static nori_http_cache *new_cache(nori_backend *b, int64_t lock_timeout_ms)
{
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = b;
    o.lock_timeout_ms = lock_timeout_ms;
    nori_http_cache *c;
    assert_nori(nori_http_cache_new(&o, &c), NORI_OK);
    return c;
}

/* 64 concurrent first requests for one key: one handler run, 64 identical
 * bodies (fails on the code before coalescing: up to 64 runs). */
static void test_one_run_for_64(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori_memory_backend_new(100, &b), NORI_OK);
    nori_http_cache *c = new_cache(b, 5000);
    app a = {.delay_ms = 200};
    enum { N = 64 };
    pthread_t t[N];
    worker_arg w[N];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N);
    for (int i = 0; i < N; i++) {
        w[i] = (worker_arg){.c = c, .a = &a, .start = &start};
        assert_int_equal(pthread_create(&t[i], NULL, worker, &w[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    assert_int_equal(atomic_load(&a.runs), 1);
    int misses = 0;
    for (int i = 0; i < N; i++) {
        assert_string_equal(w[i].body, "run 1");
        misses += w[i].origin == NORI_HTTP_MISS;
    }
    assert_int_equal(misses, 1);
    nori_http_cache_stats s;
    nori_http_cache_get_stats(c, &s);
    assert_int_equal(s.hits, N - 1);
    assert_true(s.coalesced >= 1);
    assert_int_equal(s.stores, 1);
    nori_http_cache_free(c);
    nori_backend_free(b);
}

/* A fill slower than lock_timeout: the waiter gives up after lock_timeout
 * (not after the fill) and runs the handler itself. */
static void test_lock_timeout(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori_memory_backend_new(100, &b), NORI_OK);
    nori_http_cache *c = new_cache(b, 150);
    app a = {.delay_ms = 1500};
    pthread_t leader;
    worker_arg wl = {.c = c, .a = &a};
    assert_int_equal(pthread_create(&leader, NULL, worker, &wl), 0);
    for (int i = 0; i < 5000 && !atomic_load(&a.inside); i++)
        sleep_ms(1); /* bounded wait for the leader to be inside its handler */
    assert_true(atomic_load(&a.inside));
    atomic_store(&a.delay_ms, 0); /* the waiter's own run is quick */
    worker_arg ww = {.c = c, .a = &a};
    worker(&ww);
    assert_true(ww.elapsed_ms >= 140);
    assert_true(ww.elapsed_ms < 1200);
    assert_int_equal(ww.origin, NORI_HTTP_MISS);
    pthread_join(leader, NULL);
    assert_int_equal(atomic_load(&a.runs), 2);
    nori_http_cache_stats s;
    nori_http_cache_get_stats(c, &s);
    assert_int_equal(s.lock_timeouts, 1);
    nori_http_cache_free(c);
    nori_backend_free(b);
}

/* An unstorable response (Set-Cookie) releases the waiters at once (they
 * run the handler themselves, without waiting for lock_timeout), and the
 * key is remembered: the next request does not wait at all. */
static void test_unstorable_releases_waiters(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori_memory_backend_new(100, &b), NORI_OK);
    nori_http_cache *c = new_cache(b, 5000);
    app a = {.delay_ms = 300, .set_cookie = 1};
    enum { N = 8 };
    pthread_t t[N];
    worker_arg w[N];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N);
    for (int i = 0; i < N; i++) {
        w[i] = (worker_arg){.c = c, .a = &a, .start = &start};
        assert_int_equal(pthread_create(&t[i], NULL, worker, &w[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    assert_int_equal(atomic_load(&a.runs), N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(w[i].origin, NORI_HTTP_MISS);
        assert_true(w[i].elapsed_ms < 3000); /* far below lock_timeout + a fill */
    }
    nori_http_cache_stats s;
    nori_http_cache_get_stats(c, &s);
    assert_int_equal(s.lock_timeouts, 0);
    assert_int_equal(s.stores, 0);
    /* Hit-for-miss: the next request skips the single-flight. */
    atomic_store(&a.delay_ms, 0);
    worker_arg one = {.c = c, .a = &a};
    worker(&one);
    nori_http_cache_get_stats(c, &s);
    assert_int_equal(s.hit_for_miss, 1);
    /* Once the response is storable again, it is stored. */
    atomic_store(&a.set_cookie, 0);
    worker(&one);
    worker(&one);
    assert_int_equal(one.origin, NORI_HTTP_HIT);
    nori_http_cache_free(c);
    nori_backend_free(b);
}

/* A handler that calls the cache for its own key (e.g. a fragment of the
 * same page) is answered without waiting for itself. */
static nori_http_cache *reentrant_cache;
static _Atomic int inner_runs;

static int inner(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)req;
    (void)ud;
    atomic_fetch_add(&inner_runs, 1);
    return nori_http_response_set_body(resp, "inner", 5);
}

static int outer(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)ud;
    nori_http_response r;
    nori_http_response_init(&r);
    int rc = nori_http_cache_serve(reentrant_cache, req, inner, NULL, &r);
    assert_int_equal(r.origin, NORI_HTTP_MISS);
    nori_http_response_clear(&r);
    return rc ? rc : nori_http_response_set_body(resp, "outer", 5);
}

static void test_reentrant(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori_memory_backend_new(100, &b), NORI_OK);
    reentrant_cache = new_cache(b, 5000);
    nori_http_request rq = {"GET", "/page", "", NULL, NULL, NULL, 0, NULL};
    nori_http_response r;
    nori_http_response_init(&r);
    int64_t t0 = now_ms();
    assert_nori(nori_http_cache_serve(reentrant_cache, &rq, outer, NULL, &r), NORI_OK);
    assert_true(now_ms() - t0 < 4000); /* not the 5 s lock_timeout */
    assert_int_equal(r.origin, NORI_HTTP_MISS);
    assert_nori(nori_http_cache_serve(reentrant_cache, &rq, outer, NULL, &r), NORI_OK);
    assert_int_equal(r.origin, NORI_HTTP_HIT);
    assert_memory_equal(r.body, "outer", 5);
    assert_int_equal(atomic_load(&inner_runs), 1);
    nori_http_response_clear(&r);
    nori_http_cache_free(reentrant_cache);
    nori_backend_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_run_for_64),
        cmocka_unit_test(test_lock_timeout),
        cmocka_unit_test(test_unstorable_releases_waiters),
        cmocka_unit_test(test_reentrant),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
