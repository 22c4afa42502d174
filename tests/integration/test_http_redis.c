// SPDX-License-Identifier: MIT
/*
 * The response cache on Redis, in one process and across processes that
 * share the server (forked here, each with its own backend and cache):
 *  - a write to a path while a GET's fill of that path is running: once the
 *    write has returned, no GET is answered with what that fill produced;
 *  - background refreshes (stale_while_revalidate): one handler run per
 *    expiry however many requests and processes see the stale entry;
 *  - lifetimes and lease values at the ends of int64;
 *  - what another client left at an entry's keys: a value over the
 *    backend's limit is overwritten, a lease not taken by this library is
 *    not waited for.
 * Every process reads one test clock in shared memory (entries' stored-at
 * times); Redis keeps the entries for lifetime + window in real time, which
 * these tests never reach. NORI_TEST_TOPOLOGY=cluster|sentinel runs the
 * same cases on that set-up (test_http_redis_cluster, _sentinel), and
 * NORI_TEST_BACKEND=shm on a shared-memory segment instead of Redis
 * (test_http_shm).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis_topology.h"
#include "test_support.h"

#include "clock.h"
#include "http/internal.h"
#include "nori/http.h"
#include "shm/shm.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROCS 4

/* What every process of a case shares (MAP_SHARED, lock-free atomics). */
typedef struct {
    _Atomic int64_t now; /* the test clock */
    /* a write during a fill */
    _Atomic int version;      /* the "database": writes bump it */
    _Atomic int get_runs;     /* GET handler runs */
    _Atomic int first_inside; /* the first GET run has read the version */
    _Atomic int released;     /* ... and may answer now */
    /* refreshes */
    _Atomic int r_runs;          /* handler runs for /r */
    _Atomic int m_runs[PROCS + 1]; /* handler runs for /m0 .. /m<PROCS> */
    _Atomic int stale_answers;   /* STALE answers for /r this round */
    _Atomic int hold_r;          /* /r's handler waits for hold_r STALE answers */
} shared_state;

static shared_state *sh;
static nori_test_topology *topo;
static char shm_name[64]; /* NORI_TEST_BACKEND=shm: the segment, else "" */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits (bounded) until *v >= want; true when it got there. Polls: the
 * waiters may be in other processes. */
static bool wait_at_least(_Atomic int *v, int want, int ms)
{
    for (int i = 0; i < ms && atomic_load(v) < want; i++)
        sleep_ms(1);
    return atomic_load(v) >= want;
}

static int group_setup(void **state)
{
    (void)state;
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(sh != MAP_FAILED);
    const char *backend = getenv("NORI_TEST_BACKEND");
    if (backend != NULL && strcmp(backend, "shm") == 0) {
        snprintf(shm_name, sizeof shm_name, "nori-test-http-%ld", (long)getpid());
        (void)nori_shm_backend_unlink(shm_name);
        return 0;
    }
    topo = nori_test_topology_start();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    nori_test_topology_stop(topo);
    if (shm_name[0] != '\0')
        (void)nori_shm_backend_unlink(shm_name);
    munmap(sh, sizeof *sh);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    memset(sh, 0, sizeof *sh);
    atomic_store(&sh->now, 1700000000000);
    /* The wall clock only: entries' stored-at times. Nothing blocks on it,
     * so the other processes need no one to advance it for them. */
    nori__clock_override(NULL, &sh->now);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    nori__clock_override(NULL, NULL);
    return 0;
}

static nori_backend *new_backend(void)
{
    nori_backend *b;
    /* Without its expiry thread: these cases fork, and ThreadSanitizer
     * refuses threads started in the child of a multi-threaded process. */
    int rc = shm_name[0] != '\0'
                 ? nori__shm_backend_new_opts(shm_name, 1000, 8 << 20, false, &b)
                 : nori_redis_backend_new(topo->url, &b);
    return rc == NORI_OK ? b : NULL;
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
    nori_http_request rq = {method, path, "", NULL, NULL, NULL, 0, NULL};
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

/* ------------------------------------------------ a write during a fill */

/* GET: reads the version, and on the first run waits until the test lets
 * it answer (a slow query). Anything else: a write, 201. */
static int db_handler(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)ud;
    if (strcmp(req->method, "GET") != 0) {
        atomic_fetch_add(&sh->version, 1);
        resp->status = 201;
        return nori_http_response_set_body(resp, "written", 7);
    }
    int run = atomic_fetch_add(&sh->get_runs, 1) + 1;
    int v = atomic_load(&sh->version);
    if (run == 1) {
        atomic_store(&sh->first_inside, 1);
        wait_at_least(&sh->released, 1, 30000);
    }
    char body[32];
    int n = snprintf(body, sizeof body, "version %d", v);
    return nori_http_response_set_body(resp, body, (size_t)n);
}

typedef struct {
    nori_http_cache *c;
    _Atomic int done;
    char body[64];
} get_arg;

static void *get_thread(void *p)
{
    get_arg *g = p;
    serve_copy(g->c, "GET", "/w", db_handler, NULL, g->body);
    atomic_store(&g->done, 1);
    return NULL;
}

/* One process: the fill that read version 0 is held while a POST writes
 * and returns; a GET sent then is answered with version 1 without waiting
 * for the held fill, and the held fill's response is not stored. */
static void test_write_during_fill_threads(void **state)
{
    (void)state;
    nori_backend *b = new_backend();
    assert_non_null(b);
    nori_http_cache *c = new_cache(b, "wdf", 0, 1, 60000);
    assert_non_null(c);
    get_arg first = {.c = c}, after = {.c = c};
    pthread_t t1, t2;
    assert_int_equal(pthread_create(&t1, NULL, get_thread, &first), 0);
    assert_true(wait_at_least(&sh->first_inside, 1, 10000));
    char body[64];
    assert_nori(serve_copy(c, "POST", "/w", db_handler, NULL, body), NORI_OK);
    assert_int_equal(pthread_create(&t2, NULL, get_thread, &after), 0);
    bool answered_while_held = wait_at_least(&after.done, 1, 10000);
    atomic_store(&sh->released, 1);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    assert_string_equal(first.body, "version 0");
    assert_string_equal(after.body, "version 1");
    assert_true(answered_while_held);
    nori_http_origin o;
    assert_nori(serve_copy(c, "GET", "/w", db_handler, &o, body), NORI_OK);
    assert_string_equal(body, "version 1");
    assert_int_equal(o, NORI_HTTP_HIT);
    nori_http_cache_free(c);
    nori_backend_free(b);
}

/* The held fill runs in another process (holding the key's lease): the
 * write and the GETs after it in this one. A GET sent after the write is
 * answered with version 1 (the write's deletion took the lease too, so it
 * does not wait for the held fill), and so is every GET after: the held
 * fill's response is not stored. */
static void test_write_during_fill_processes(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        nori_backend *cb = new_backend();
        nori_http_cache *cc = cb != NULL ? new_cache(cb, "wdfp", 0, 1, 5000) : NULL;
        char body[64];
        if (cc == NULL || serve_copy(cc, "GET", "/w", db_handler, NULL, body) != NORI_OK)
            _exit(2);
        /* It was sent before the write: the old version is its answer. */
        int rc = strcmp(body, "version 0") == 0 ? 0 : 3;
        nori_http_cache_free(cc);
        nori_backend_free(cb);
        _exit(rc);
    }
    nori_backend *b = new_backend();
    assert_non_null(b);
    nori_http_cache *c = new_cache(b, "wdfp", 0, 1, 5000);
    assert_non_null(c);
    assert_true(wait_at_least(&sh->first_inside, 1, 10000));
    char body[64];
    assert_nori(serve_copy(c, "POST", "/w", db_handler, NULL, body), NORI_OK);
    get_arg after = {.c = c};
    pthread_t t2;
    assert_int_equal(pthread_create(&t2, NULL, get_thread, &after), 0);
    atomic_store(&sh->released, 1);
    pthread_join(t2, NULL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_string_equal(after.body, "version 1");
    nori_http_origin o;
    assert_nori(serve_copy(c, "GET", "/w", db_handler, &o, body), NORI_OK);
    assert_string_equal(body, "version 1");
    nori_http_cache_free(c);
    nori_backend_free(b);
}

/* ------------------------------------------------------------ refreshes */

/* /r and /m<i> count their runs; /r's run waits (bounded) until hold_r
 * STALE answers were given, so that every process has asked for its
 * refresh before any refresh stores. */
static int count_handler(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)ud;
    int run;
    if (strcmp(req->path, "/r") == 0) {
        int hold = atomic_load(&sh->hold_r);
        if (hold > 0)
            wait_at_least(&sh->stale_answers, hold, 10000);
        run = atomic_fetch_add(&sh->r_runs, 1) + 1;
    } else {
        int i = atoi(req->path + 2);
        if (i < 0 || i > PROCS)
            return NORI_EINVAL;
        run = atomic_fetch_add(&sh->m_runs[i], 1) + 1;
    }
    char body[32];
    int n = snprintf(body, sizeof body, "%s run %d", req->path, run);
    return nori_http_response_set_body(resp, body, (size_t)n);
}

/* A process of the refresh case: a stale /r (its refresh is queued), then
 * its own stale marker /m<i>, whose refresh runs after /r's on the single
 * refresh thread; once the marker ran, /r's refresh is over. */
static void refresh_child(int i, int marker_runs)
{
    nori_backend *b = new_backend();
    nori_http_cache *c = b != NULL ? new_cache(b, "refresh", 30, 1, 5000) : NULL;
    if (c == NULL)
        _exit(2);
    nori_http_origin o;
    char path[8];
    snprintf(path, sizeof path, "/m%d", i);
    if (serve_copy(c, "GET", "/r", count_handler, &o, NULL) != NORI_OK || o != NORI_HTTP_STALE)
        _exit(3);
    atomic_fetch_add(&sh->stale_answers, 1);
    if (serve_copy(c, "GET", path, count_handler, &o, NULL) != NORI_OK || o != NORI_HTTP_STALE)
        _exit(4);
    if (!wait_at_least(&sh->m_runs[i], marker_runs, 20000))
        _exit(5);
    nori_http_cache_free(c);
    nori_backend_free(b);
    _exit(0);
}

/* PROCS processes on one Redis see the same stale entry at once: one
 * handler run per expiry (the refresh takes the key's lease; the others
 * find it taken, or find the entry already refreshed). */
static void test_refresh_once_across_processes(void **state)
{
    (void)state;
    nori_backend *b = new_backend();
    assert_non_null(b);
    nori_http_cache *c = new_cache(b, "refresh", 30, 1, 5000);
    assert_non_null(c);
    char path[8], body[64];
    nori_http_origin o;
    assert_nori(serve_copy(c, "GET", "/r", count_handler, &o, NULL), NORI_OK);
    for (int i = 0; i < PROCS; i++) {
        snprintf(path, sizeof path, "/m%d", i);
        assert_nori(serve_copy(c, "GET", path, count_handler, &o, NULL), NORI_OK);
    }
    for (int round = 1; round <= 2; round++) {
        atomic_fetch_add(&sh->now, 15000); /* stale, within the 30 s window */
        atomic_store(&sh->stale_answers, 0);
        atomic_store(&sh->hold_r, PROCS);
        pid_t pids[PROCS];
        for (int i = 0; i < PROCS; i++) {
            pids[i] = fork();
            assert_true(pids[i] >= 0);
            if (pids[i] == 0)
                refresh_child(i, round + 1);
        }
        for (int i = 0; i < PROCS; i++) {
            int status;
            assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fail_msg("process %d failed (status %d)", i, status);
        }
        assert_int_equal(atomic_load(&sh->r_runs), 1 + round);
        assert_nori(serve_copy(c, "GET", "/r", count_handler, &o, body), NORI_OK);
        assert_int_equal(o, NORI_HTTP_HIT);
        char want[32];
        snprintf(want, sizeof want, "/r run %d", 1 + round);
        assert_string_equal(body, want);
    }
    nori_http_cache_free(c);
    nori_backend_free(b);
}

#define STALE_THREADS 20
#define STALE_ROUNDS 20

typedef struct {
    nori_http_cache *c;
    pthread_barrier_t *start;
} stale_arg;

static void *stale_thread(void *p)
{
    stale_arg *a = p;
    pthread_barrier_wait(a->start);
    serve_copy(a->c, "GET", "/r", count_handler, NULL, NULL);
    return NULL;
}

/* 20 concurrent GETs of one key in its stale window, round after round: one
 * refresh run per round. A marker refresh queued after theirs on the single
 * refresh thread tells when the round's refreshes are over. */
static void test_stale_window_one_refresh(void **state)
{
    (void)state;
    nori_backend *b = new_backend();
    assert_non_null(b);
    nori_http_cache *c = new_cache(b, "window", 30, 1, 5000);
    assert_non_null(c);
    nori_http_origin o;
    assert_nori(serve_copy(c, "GET", "/r", count_handler, &o, NULL), NORI_OK);
    assert_nori(serve_copy(c, "GET", "/m0", count_handler, &o, NULL), NORI_OK);
    int extra = 0;
    for (int round = 1; round <= STALE_ROUNDS; round++) {
        atomic_fetch_add(&sh->now, 15000);
        int before = atomic_load(&sh->r_runs);
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, STALE_THREADS);
        pthread_t t[STALE_THREADS];
        stale_arg a = {c, &start};
        for (int i = 0; i < STALE_THREADS; i++)
            assert_int_equal(pthread_create(&t[i], NULL, stale_thread, &a), 0);
        for (int i = 0; i < STALE_THREADS; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&start);
        assert_nori(serve_copy(c, "GET", "/m0", count_handler, &o, NULL), NORI_OK);
        assert_int_equal(o, NORI_HTTP_STALE);
        assert_true(wait_at_least(&sh->m_runs[0], round + 1, 20000));
        int runs = atomic_load(&sh->r_runs) - before;
        if (runs != 1) {
            print_message("round %d: %d refresh runs\n", round, runs);
            extra++;
        }
    }
    assert_int_equal(extra, 0);
    nori_http_cache_free(c);
    nori_backend_free(b);
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

/* ------------------------------------------------ what another client left
 *
 * These two cases run on the real clock (no setup): a lease is judged by the
 * time in its token against now. */

static int left_calls;

static int left_handler(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)req;
    (void)ud;
    left_calls++;
    char text[64];
    int n = snprintf(text, sizeof text, "call %d", left_calls);
    resp->status = 200;
    assert_int_equal(nori_http_response_set_body(resp, text, (size_t)n), NORI_OK);
    return nori_http_response_set_media_type(resp, "text/plain");
}

static nori_http_origin serve_left(nori_http_cache *c, const char *path)
{
    nori_http_origin o;
    assert_nori(serve_copy(c, "GET", path, left_handler, &o, NULL), NORI_OK);
    return o;
}

/*
 * An entry over the backend's value limit (the limit was lowered, or
 * another client wrote it) is an undecodable entry: a miss that the fresh
 * response overwrites. The Redis backend's NORI_ETOOBIG for such a GET was
 * taken as a failing backend: counted as an error, the fresh response not
 * stored, so the URL ran its handler on every request for as long as the
 * oversized entry lived (forever without a TTL). The memory backend's case
 * is test_http_cache's test_entry_over_limit_is_miss.
 */
static void test_oversized_redis_entry_is_overwritten(void **state)
{
    (void)state;
    if (shm_name[0] != '\0') {
        print_message("skipped on shm: another Redis client's write is the subject\n");
        skip();
    }
    left_calls = 0;
    nori_backend *b = new_backend();
    assert_non_null(b);
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = b;
    o.prefix = "oversized";
    nori_http_cache *c;
    assert_nori(nori_http_cache_new(&o, &c), NORI_OK);
    char key[256];
    assert_nori(nori_http_cache_key(c,
                                    &(nori_http_request){"GET", "/big", "", NULL, NULL, NULL, 0,
                                                         NULL},
                                    key, sizeof key),
                NORI_OK);
    assert_nori(nori_backend_set_max_value(b, 100000), NORI_OK);
    /* The wire key (the backend's "cache:" prefix), on the master that
     * holds it: the backend's own write lands there. */
    char wire[512];
    snprintf(wire, sizeof wire, "cache:%s", key);
    redisContext *raw = nori_test_topology_connect(topo, wire);
    assert_nori(nori_backend_set(b, key, "p", 1, 0), NORI_OK);
    redisReply *rr = redisCommand(raw, "EXISTS %s", wire);
    assert_true(rr != NULL && rr->type == REDIS_REPLY_INTEGER && rr->integer == 1);
    freeReplyObject(rr);
    /* Another client leaves a 200 KB value, with no TTL, there. */
    char *big = malloc(200000);
    assert_non_null(big);
    memset(big, 'x', 200000);
    rr = redisCommand(raw, "SET %s %b", wire, big, (size_t)200000);
    assert_true(rr != NULL && rr->type == REDIS_REPLY_STATUS);
    freeReplyObject(rr);
    free(big);
    nori_buf probe;
    assert_nori(nori_backend_get(b, key, &probe), NORI_ETOOBIG);

    assert_int_equal(serve_left(c, "/big"), NORI_HTTP_MISS); /* an undecodable entry: a miss */
    nori_http_origin second = serve_left(c, "/big");       /* ... the response overwrote */
    nori_http_cache_stats st;
    nori_http_cache_get_stats(c, &st);
    print_message("second request: %s, handler runs %d, errors %llu, stores %llu\n",
                  nori_http_origin_name(second), left_calls, (unsigned long long)st.errors,
                  (unsigned long long)st.stores);
    redisFree(raw);
    nori_http_cache_free(c);
    nori_backend_free(b);
    assert_int_equal(second, NORI_HTTP_HIT);
    assert_int_equal(left_calls, 1);
}

static double real_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/*
 * Another client leaves a lease "{key}:lock" that no process of this
 * library took: no TTL, or a token that is not one of ours, or one of ours
 * whose time is long past. Every miss of the key used to wait
 * lock_timeout_ms (here 1500 ms, 5 s by default) before running the
 * handler, after every expiry, for as long as the forged lease lived
 * (forever without a TTL). A lease whose token is not a recent one of this
 * library's is not waited for; a genuine one still is.
 */
static void test_forged_lease_not_waited_for(void **state)
{
    (void)state;
    left_calls = 0;
    nori_backend *b = new_backend();
    assert_non_null(b);
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = b;
    o.prefix = "forged";
    o.lock_timeout_ms = 1500;
    nori_http_cache *c;
    assert_nori(nori_http_cache_new(&o, &c), NORI_OK);
    nori_http_request rq = {"GET", "/f", "", NULL, NULL, NULL, 0, NULL};
    char key[256], lease[300];
    assert_nori(nori_http_cache_key(c, &rq, key, sizeof key), NORI_OK);
    snprintf(lease, sizeof lease, "%s:lock", key);
    const char *forged[] = {"forged-by-someone", "1234-1000000000.000000000-7", ""};
    double worst = 0;
    for (int i = 0; i < 3; i++) {
        assert_nori(nori_backend_delete(b, key), NORI_OK);
        assert_nori(nori_backend_set(b, lease, forged[i], strlen(forged[i]), 0), NORI_OK);
        left_calls = 0;
        double t0 = real_now_ms();
        assert_int_equal(serve_left(c, "/f"), NORI_HTTP_MISS);
        double took = real_now_ms() - t0;
        print_message("forged lease '%s': the miss took %.0f ms\n", forged[i], took);
        if (took > worst)
            worst = took;
        assert_int_equal(left_calls, 1);
    }
    /* A genuine lease (taken by a process of this library just now) is
     * still waited for: coalescing across processes holds. */
    assert_nori(nori_backend_delete(b, key), NORI_OK);
    assert_nori(nori_backend_delete(b, lease), NORI_OK);
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    char genuine[64];
    snprintf(genuine, sizeof genuine, "%d-%lld.%09ld-%d", 999999, (long long)rt.tv_sec,
             rt.tv_nsec, 1);
    int added = 0;
    assert_nori(nori_backend_add(b, lease, genuine, strlen(genuine), 400, &added), NORI_OK);
    assert_true(added);
    double t0 = real_now_ms();
    assert_int_equal(serve_left(c, "/f"), NORI_HTTP_MISS);
    double waited = real_now_ms() - t0;
    print_message("genuine lease (400 ms): the miss took %.0f ms\n", waited);
    nori_http_cache_free(c);
    nori_backend_free(b);
    assert_true(worst < 500);
    assert_true(waited >= 300);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_write_during_fill_threads),
        T(test_write_during_fill_processes),
        T(test_refresh_once_across_processes),
        T(test_stale_window_one_refresh),
        T(test_endless_max_age),
        T(test_lease_time_extremes),
        cmocka_unit_test(test_oversized_redis_entry_is_overwritten),
        cmocka_unit_test(test_forged_lease_not_waited_for),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
