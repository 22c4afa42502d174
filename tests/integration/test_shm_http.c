// SPDX-License-Identifier: MIT
/*
 * The response cache on a shared-memory segment, across worker processes
 * (the cases shared with Redis run in test_http_shm: test_http_redis with
 * NORI_TEST_BACKEND=shm):
 *  - the flight slots: a waiter in another process sleeps until the fill
 *    ends (no polling) and learns at once that its filler died;
 *  - 64 concurrent first requests for one page, from 4 processes of 16
 *    threads: one handler run;
 *  - a worker SIGKILLed during a fill: the others take over at once, long
 *    before the cache's lock timeout, and nobody waits for it;
 *  - a worker stopped while it holds the page's shard lock: the others'
 *    requests are answered by the handler within the segment's lock
 *    timeout (fail open), the failed store counted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backend.h"
#include "nori/http.h"
#include "shm/shm.h"
#include "shm_checks.h"
#include "test_support.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct {
    _Atomic int runs;
    _Atomic int ready;      /* processes / threads at the start line */
    _Atomic int go;
    _Atomic int inside;     /* a handler run started */
    _Atomic int coalesced;  /* summed over processes */
    _Atomic int block;      /* handlers block (until killed) */
} shared_state;

static shared_state *sh;
static char name[64];

static int setup(void **state)
{
    (void)state;
    static int n;
    snprintf(name, sizeof name, "nori-test-shmhttp-%ld-%d", (long)getpid(), n++);
    (void)nori_shm_backend_unlink(name);
    sh = shm_test_shared(sizeof *sh);
    return sh != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    (void)nori_shm_backend_unlink(name);
    munmap(sh, sizeof *sh);
    return 0;
}

static nori_backend *open_shm(void)
{
    nori_backend *b = NULL;
    if (nori__shm_backend_new_opts(name, 1000, 8 << 20, false, &b) != NORI_OK)
        return NULL;
    return b;
}

static nori_http_cache *new_cache(nori_backend *b, int64_t lock_timeout_ms)
{
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = b;
    o.prefix = "page";
    o.lock_timeout_ms = lock_timeout_ms;
    nori_http_cache *c = NULL;
    return nori_http_cache_new(&o, &c) == NORI_OK ? c : NULL;
}

static int page_handler(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)req;
    (void)ud;
    int run = atomic_fetch_add(&sh->runs, 1) + 1;
    atomic_store(&sh->inside, 1);
    if (atomic_load(&sh->block))
        for (;;)
            pause(); /* a slow fill, ended by SIGKILL */
    shm_test_sleep_us(300000); /* the slow query being modelled */
    char body[32];
    int n = snprintf(body, sizeof body, "run %d", run);
    return nori_http_response_set_body(resp, body, (size_t)n);
}

static int serve(nori_http_cache *c, nori_http_origin *origin, char body[64])
{
    nori_http_request rq = {"GET", "/p", "", NULL, NULL, NULL, 0, NULL};
    nori_http_response r;
    nori_http_response_init(&r);
    int rc = nori_http_cache_serve(c, &rq, page_handler, NULL, &r);
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

/* ---- the flight slots themselves ---- */

static int claim_then_release(void *arg)
{
    int64_t hold_us = (int64_t)(intptr_t)arg;
    nori_backend *b = open_shm();
    if (b == NULL || nori__backend_fill_claim(b, "k:lock") != NORI_OK)
        return 10;
    atomic_store(&sh->inside, 1);
    if (hold_us < 0)
        for (;;)
            pause(); /* until SIGKILL */
    shm_test_sleep_us(hold_us);
    nori__backend_fill_release(b, "k:lock");
    nori_backend_free(b);
    return 0;
}

static void wait_inside(void)
{
    for (int i = 0; i < 10000 && !atomic_load(&sh->inside); i++)
        shm_test_sleep_us(1000);
    assert_true(atomic_load(&sh->inside));
}

static void test_fill_slots(void **state)
{
    (void)state;
    nori_backend *b = open_shm();
    assert_non_null(b);
    assert_true(nori__backend_traits(b)->waits_for_fills);
    /* Nothing marked: nothing to wait for. */
    assert_nori(nori__backend_fill_wait(b, "k:lock", 1000), NORI_MISS);
    /* Another process fills for 300 ms: the wait ends when it does. */
    pid_t pid = shm_test_spawn(claim_then_release, (void *)(intptr_t)300000);
    wait_inside();
    int64_t t0 = shm_test_now_us();
    assert_nori(nori__backend_fill_wait(b, "k:lock", 20000), NORI_OK);
    int64_t waited = shm_test_now_us() - t0;
    assert_true(waited < 20000000); /* woken, not timed out */
    assert_int_equal(WEXITSTATUS(shm_test_wait(pid, 30000)), 0);
    /* A filler that is killed: the waiter learns it at once. */
    atomic_store(&sh->inside, 0);
    pid = shm_test_spawn(claim_then_release, (void *)(intptr_t)-1);
    wait_inside();
    shm_test_sleep_us(50000);
    assert_int_equal(kill(pid, SIGKILL), 0);
    t0 = shm_test_now_us();
    assert_nori(nori__backend_fill_wait(b, "k:lock", 20000), NORI_EABORT);
    assert_true(shm_test_now_us() - t0 < 10000000);
    assert_true(WIFSIGNALED(shm_test_wait(pid, 30000)));
    /* The slot is free again; a claim in this thread is released by it. */
    assert_nori(nori__backend_fill_wait(b, "k:lock", 1000), NORI_MISS);
    assert_nori(nori__backend_fill_claim(b, "k:lock"), NORI_OK);
    nori__backend_fill_release(b, "k:lock");
    assert_nori(nori__backend_fill_wait(b, "k:lock", 1000), NORI_MISS);
    /* A held slot times out its waiter within the bound given. */
    atomic_store(&sh->inside, 0);
    pid = shm_test_spawn(claim_then_release, (void *)(intptr_t)-1);
    wait_inside();
    t0 = shm_test_now_us();
    assert_nori(nori__backend_fill_wait(b, "k:lock", 200), NORI_EBACKEND);
    waited = shm_test_now_us() - t0;
    assert_true(waited >= 190000 && waited < 5200000);
    kill(pid, SIGKILL);
    shm_test_wait(pid, 30000);
    nori_backend_free(b);
}

/* ---- 64 first requests from 4 processes ---- */

enum { PROCS = 4, THREADS = 16 };

typedef struct {
    nori_http_cache *c;
    int ok;
} req_thread;

static void *request_thread(void *arg)
{
    req_thread *t = arg;
    atomic_fetch_add(&sh->ready, 1);
    while (!atomic_load(&sh->go))
        shm_test_sleep_us(100);
    char body[64];
    t->ok = serve(t->c, NULL, body) == NORI_OK && strcmp(body, "run 1") == 0;
    return NULL;
}

static int requesting_process(void *arg)
{
    (void)arg;
    nori_backend *b = open_shm();
    nori_http_cache *c = b != NULL ? new_cache(b, 20000) : NULL;
    if (c == NULL)
        return 10;
    pthread_t th[THREADS];
    req_thread t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        t[i] = (req_thread){c, 0};
        if (pthread_create(&th[i], NULL, request_thread, &t[i]) != 0)
            return 11;
    }
    int bad = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        bad += !t[i].ok;
    }
    nori_http_cache_stats st;
    nori_http_cache_get_stats(c, &st);
    atomic_fetch_add(&sh->coalesced, (int)st.coalesced);
    nori_http_cache_free(c);
    nori_backend_free(b);
    return bad == 0 ? 0 : 12;
}

static void test_64_first_requests_one_run(void **state)
{
    (void)state;
    pid_t pids[PROCS];
    for (int i = 0; i < PROCS; i++)
        pids[i] = shm_test_spawn(requesting_process, NULL);
    for (int i = 0; i < 30000 && atomic_load(&sh->ready) < PROCS * THREADS; i++)
        shm_test_sleep_us(1000);
    assert_int_equal(atomic_load(&sh->ready), PROCS * THREADS);
    atomic_store(&sh->go, 1);
    for (int i = 0; i < PROCS; i++) {
        int status = shm_test_wait(pids[i], 60000);
        if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("process %d: status %d", i, status);
    }
    assert_int_equal(atomic_load(&sh->runs), 1);
    print_message("64 first requests from %d processes: %d handler run, %d answered from its "
                  "fill\n",
                  PROCS, atomic_load(&sh->runs), atomic_load(&sh->coalesced));
    assert_int_equal(atomic_load(&sh->coalesced), PROCS * THREADS - 1);
}

/* ---- a filler killed, a shard holder stopped ---- */

static int filling_process(void *arg)
{
    (void)arg;
    nori_backend *b = open_shm();
    nori_http_cache *c = b != NULL ? new_cache(b, 30000) : NULL;
    if (c == NULL)
        return 10;
    serve(c, NULL, NULL); /* blocks in the handler until killed */
    return 11;
}

static void test_killed_filler_blocks_nobody(void **state)
{
    (void)state;
    atomic_store(&sh->block, 1);
    pid_t pid = shm_test_spawn(filling_process, NULL);
    wait_inside(); /* it holds the page's lease and flight slot now */
    nori_backend *b = open_shm();
    nori_http_cache *c = new_cache(b, 30000);
    assert_non_null(c);
    atomic_store(&sh->block, 0);
    /* This request waits for that fill (up to 30 s)... */
    pthread_t th;
    req_thread t = {c, 0};
    atomic_store(&sh->go, 1);
    assert_int_equal(pthread_create(&th, NULL, request_thread, &t), 0);
    shm_test_sleep_us(300000);
    /* ... until the filler is killed: then at once it runs the handler. */
    int64_t t0 = shm_test_now_us();
    assert_int_equal(kill(pid, SIGKILL), 0);
    pthread_join(th, NULL);
    int64_t after_kill = shm_test_now_us() - t0;
    print_message("the waiter answered %.0f ms after its filler was killed (lock timeout "
                  "30000 ms)\n",
                  (double)after_kill / 1000.0);
    /* The handler takes 300 ms; 10 s leaves room for a loaded machine and
     * is a third of the wait it would have been. */
    assert_true(after_kill < 10000000);
    assert_int_equal(atomic_load(&sh->runs), 2);
    assert_true(WIFSIGNALED(shm_test_wait(pid, 30000)));
    (void)t.ok; /* "run 2": it ran the handler itself */
    nori_http_origin o;
    char body[64];
    assert_nori(serve(c, &o, body), NORI_OK);
    assert_int_equal(o, NORI_HTTP_HIT);
    assert_string_equal(body, "run 2");
    nori_http_cache_free(c);
    nori_backend_free(b);
}

typedef struct {
    int held[2];
    char key[64];
} holder_args;

static int block_forever(const nori_buf *cur, nori_buf *next, void *ud)
{
    (void)cur;
    (void)next;
    holder_args *h = ud;
    if (write(h->held[1], "h", 1) != 1)
        _exit(20);
    for (;;)
        pause();
    return 1;
}

static int shard_holder(void *arg)
{
    holder_args *h = arg;
    nori_backend *b = open_shm();
    if (b == NULL)
        return 10;
    nori_backend_atomic_update(b, h->key, block_forever, h, 0, NULL);
    return 11;
}

static void test_stopped_holder_fails_open(void **state)
{
    (void)state;
    nori_backend *b = open_shm();
    nori_http_cache *c = new_cache(b, 5000);
    assert_non_null(c);
    assert_nori(nori_shm_backend_set_lock_timeout(b, 300), NORI_OK);
    /* A key in the same shard as the page's entry. */
    char page_key[NORI_MAX_KEY_LEN + 1];
    nori_http_request rq = {"GET", "/p", "", NULL, NULL, NULL, 0, NULL};
    assert_nori(nori_http_cache_key(c, &rq, page_key, sizeof page_key), NORI_OK);
    holder_args h;
    int shard = nori__shm_shard_index(b, page_key);
    for (int i = 0;; i++) {
        snprintf(h.key, sizeof h.key, "other%d", i);
        if (nori__shm_shard_index(b, h.key) == shard)
            break;
    }
    assert_int_equal(pipe(h.held), 0);
    pid_t pid = shm_test_spawn(shard_holder, &h);
    char ch;
    assert_int_equal(read(h.held[0], &ch, 1), 1);
    assert_int_equal(kill(pid, SIGSTOP), 0);
    nori_http_cache_stats before, after;
    nori_http_cache_get_stats(c, &before);
    int64_t t0 = shm_test_now_us();
    nori_http_origin o;
    char body[64];
    assert_nori(serve(c, &o, body), NORI_OK);
    int64_t took = shm_test_now_us() - t0;
    assert_int_equal(o, NORI_HTTP_MISS);
    assert_string_equal(body, "run 1"); /* the handler's response, served */
    nori_http_cache_get_stats(c, &after);
    assert_int_equal(after.stores, before.stores); /* the store timed out */
    assert_true(after.errors > before.errors);
    print_message("served in %.0f ms with the page's shard held by a stopped process (lock "
                  "timeout 300 ms)\n",
                  (double)took / 1000.0);
    assert_true(took < 300000 * 3 + 5000000); /* a few lock timeouts at most */
    kill(pid, SIGKILL);
    shm_test_wait(pid, 30000);
    /* Repaired at once: the next request stores. */
    assert_nori(serve(c, &o, body), NORI_OK);
    assert_nori(serve(c, &o, body), NORI_OK);
    assert_int_equal(o, NORI_HTTP_HIT);
    nori_http_cache_free(c);
    nori_backend_free(b);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_fill_slots),
        T(test_64_first_requests_one_run),
        T(test_killed_filler_blocks_nobody),
        T(test_stopped_holder_fails_open),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
