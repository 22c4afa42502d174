// SPDX-License-Identifier: MIT
/* Request coalescing in one process (issue 11 item 1): 64 concurrent first
 * requests run the handler once; waiters are bounded by lock_timeout; an
 * unstorable response releases the waiters and is remembered
 * (hit-for-miss) for hit_for_miss_ms; a handler that asks the cache for its
 * own key does not deadlock. The slow handlers, the waits and the windows
 * run on the virtual clock (clock.h), moved by the test: to the
 * millisecond, and whatever the machine's load. Labelled "concurrency": CI
 * runs it under TSan too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_support.h"
#include "virtual_clock.h"

#include "clock.h"
#include "http/internal.h"
#include "memory/memory.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define START 1700000000000

static int64_t now_ms(void)
{
    return nori__now_ms();
}

static int setup(void **state)
{
    (void)state;
    nori_test_clock_install(START);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    nori_test_clock_uninstall();
    return 0;
}

/* Waits (bounded: 30 s of real time) until n threads wait on the virtual
 * clock: the handler sleeping, the requests queued behind it. */
static void await_blocked(int n)
{
    if (!nori__clock_await_blocked(n, 30000))
        fail_msg("%d threads never waited on the clock (%d do)", n, nori__clock_blocked());
}

typedef struct {
    _Atomic int runs;
    _Atomic int delay_ms;   /* how long the handler takes */
    int status;
    _Atomic int set_cookie; /* makes the response unstorable */
} app;

static int handler(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)req;
    app *a = ud;
    int run = atomic_fetch_add(&a->runs, 1) + 1;
    int delay = atomic_load(&a->delay_ms);
    if (delay > 0)
        nori__sleep_ms(delay); /* the slow handler being modelled, in virtual time */
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
    int64_t elapsed_ms; /* virtual time */
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

/* A memory backend without the expiry thread: nothing but the requests
 * and their handlers waits on the virtual clock. */
static nori_backend *new_backend(void)
{
    nori_backend *b;
    assert_nori(nori__memory_backend_new_opts(100, false, &b), NORI_OK);
    return b;
}

static void *worker_thread(void *p)
{
    return worker(p);
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
 * bodies (fails on the code before coalescing: up to 64 runs). All 63
 * others wait for the handler, which takes 200 ms of virtual time: the
 * test moves the clock only once the 64 threads wait on it. */
static void test_one_run_for_64(void **state)
{
    (void)state;
    nori_backend *b = new_backend();
    nori_http_cache *c = new_cache(b, 5000);
    app a = {.delay_ms = 200};
    enum { N = 64 };
    pthread_t t[N];
    worker_arg w[N];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N);
    for (int i = 0; i < N; i++) {
        w[i] = (worker_arg){.c = c, .a = &a, .start = &start};
        assert_int_equal(pthread_create(&t[i], NULL, worker_thread, &w[i]), 0);
    }
    await_blocked(N); /* the handler asleep, 63 requests queued behind it */
    assert_int_equal(nori__clock_next_wake(), START + 200);
    nori__clock_advance(200);
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    assert_int_equal(atomic_load(&a.runs), 1);
    int misses = 0;
    for (int i = 0; i < N; i++) {
        assert_string_equal(w[i].body, "run 1");
        assert_int_equal(w[i].elapsed_ms, 200);
        misses += w[i].origin == NORI_HTTP_MISS;
    }
    assert_int_equal(misses, 1);
    nori_http_cache_stats s;
    nori_http_cache_get_stats(c, &s);
    assert_int_equal(s.hits, N - 1);
    assert_int_equal(s.coalesced, N - 1);
    assert_int_equal(s.stores, 1);
    nori_http_cache_free(c);
    nori_backend_free(b);
}

/* A fill slower than lock_timeout: the waiter gives up after lock_timeout
 * (150 ms, not a millisecond less; not after the fill's 1500 ms) and runs
 * the handler itself. */
static void test_lock_timeout(void **state)
{
    (void)state;
    nori_backend *b = new_backend();
    nori_http_cache *c = new_cache(b, 150);
    app a = {.delay_ms = 1500};
    pthread_t leader, waiter;
    worker_arg wl = {.c = c, .a = &a};
    assert_int_equal(pthread_create(&leader, NULL, worker_thread, &wl), 0);
    await_blocked(1); /* the leader is inside its handler */
    atomic_store(&a.delay_ms, 0); /* the waiter's own run is quick */
    worker_arg ww = {.c = c, .a = &a};
    assert_int_equal(pthread_create(&waiter, NULL, worker_thread, &ww), 0);
    await_blocked(2);
    assert_int_equal(nori__clock_next_wake(), START + 150);
    nori__clock_advance(149);
    await_blocked(2); /* still waiting */
    assert_int_equal(atomic_load(&a.runs), 1);
    nori__clock_advance(1);
    pthread_join(waiter, NULL);
    assert_int_equal(ww.elapsed_ms, 150);
    assert_int_equal(ww.origin, NORI_HTTP_MISS);
    nori__clock_advance(1500 - 150); /* the leader's fill ends */
    pthread_join(leader, NULL);
    assert_int_equal(wl.elapsed_ms, 1500);
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
    nori_backend *b = new_backend();
    nori_http_cache *c = new_cache(b, 5000);
    app a = {.delay_ms = 300, .set_cookie = 1};
    enum { N = 8 };
    pthread_t t[N];
    worker_arg w[N];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N);
    for (int i = 0; i < N; i++) {
        w[i] = (worker_arg){.c = c, .a = &a, .start = &start};
        assert_int_equal(pthread_create(&t[i], NULL, worker_thread, &w[i]), 0);
    }
    await_blocked(N); /* the leader's handler and 7 waiters */
    atomic_store(&a.delay_ms, 0); /* the waiters' own runs are quick */
    nori__clock_advance(300);
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    assert_int_equal(atomic_load(&a.runs), N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(w[i].origin, NORI_HTTP_MISS);
        assert_int_equal(w[i].elapsed_ms, 300); /* the fill's end, not lock_timeout's */
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
    /* Remembered for hit_for_miss_ms (5000 by default) from the last
     * unstorable fill, to the millisecond. */
    nori__clock_advance(4999);
    worker(&one);
    nori_http_cache_get_stats(c, &s);
    assert_int_equal(s.hit_for_miss, 2);
    nori__clock_advance(1); /* 5000 ms after the fill that set it */
    worker(&one);
    nori_http_cache_get_stats(c, &s);
    assert_int_equal(s.hit_for_miss, 2); /* forgotten: it led a fill again */
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
    nori_backend *b = new_backend();
    reentrant_cache = new_cache(b, 5000);
    nori_http_request rq = {"GET", "/page", "", NULL, NULL, NULL, 0, NULL};
    nori_http_response r;
    nori_http_response_init(&r);
    int64_t t0 = nori__real_ms(); /* the real clock: a wait for itself ends, and fails */
    assert_nori(nori_http_cache_serve(reentrant_cache, &rq, outer, NULL, &r), NORI_OK);
    assert_true(nori__real_ms() - t0 < 4000); /* not the 5 s lock_timeout */
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
        cmocka_unit_test_setup_teardown(test_one_run_for_64, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unstorable_releases_waiters, setup, teardown),
        cmocka_unit_test(test_reentrant),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
