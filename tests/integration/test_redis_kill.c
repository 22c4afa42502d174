// SPDX-License-Identifier: MIT
/*
 * A redis-server killed with SIGKILL (no goodbye on the sockets) while 8
 * threads run mixed get/set/incr/atomic_update through one backend handle,
 * then started again on the same port; and the same load across a 2-second
 * stall (DEBUG SLEEP: every reply late):
 *  - every call returns, with NORI_OK/NORI_MISS or NORI_EBACKEND (nothing
 *    else), and none takes longer than 3 x timeout_ms plus a margin;
 *  - while the server is down, calls do fail (the outage is seen);
 *  - every call started after the server answers again (PING after the
 *    restart, the DEBUG SLEEP reply) succeeds, on the same backend handle
 *    (no re-creation), in every thread.
 * Run under ASan/UBSan like every test (no leak on the error paths) and
 * under ThreadSanitizer (label "concurrency").
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis_server.h"
#include "test_support.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define THREADS 8
#define TIMEOUT_MS 300
/* Scheduling slack on a loaded 2-CPU machine under sanitizers. */
#define MARGIN_MS 700

enum { PHASE_UP, PHASE_DOWN, PHASE_BACK, PHASE_STOP };

static nori_test_redis *server;
static nori_backend *backend;
static _Atomic int phase;
static _Atomic double restarted_at; /* ms, monotonic; 0 until the server is back */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

typedef struct {
    int id;
    long calls[3], failed[3]; /* per phase: up, down, back */
    long failed_after_restart; /* calls started after the restart that failed */
    long unexpected;           /* a return code other than OK/MISS/EBACKEND */
    double max_ms;
    char last_failure[256];
} worker;

/* One call of kind i % 4 on shared keys (set/get/incr) or the thread's own
 * key (atomic_update: shared keys would make WATCH give up under contention,
 * which is a legitimate EBACKEND unrelated to the fault). */
static int one_call(worker *w, long i)
{
    char key[64];
    switch (i % 4) {
    case 0:
        snprintf(key, sizeof key, "kill:v:%ld", i % 50);
        return nori_backend_set(backend, key, "value", 5, 60);
    case 1: {
        snprintf(key, sizeof key, "kill:v:%ld", (i / 4) % 50);
        nori_buf b;
        int rc = nori_backend_get(backend, key, &b);
        if (rc == NORI_OK)
            nori_buf_free(&b);
        return rc;
    }
    case 2: {
        int64_t n;
        return nori_backend_incr(backend, "kill:counter", 0, &n);
    }
    default: {
        snprintf(key, sizeof key, "kill:upd:%d", w->id);
        nori_buf out;
        int rc = nori_backend_atomic_update(backend, key, nori_test_add_one, NULL, 0, &out);
        if (rc == NORI_OK)
            nori_buf_free(&out);
        return rc;
    }
    }
}

static void *run(void *arg)
{
    worker *w = arg;
    for (long i = 0;; i++) {
        int ph = atomic_load(&phase);
        if (ph == PHASE_STOP)
            break;
        double t0 = now_ms();
        double back = atomic_load(&restarted_at);
        int rc = one_call(w, i + w->id);
        double dt = now_ms() - t0;
        if (dt > w->max_ms)
            w->max_ms = dt;
        /* A call spanning a phase change belongs to the later phase (a call
         * started just before the kill may fail). */
        int ph_end = atomic_load(&phase);
        if (ph_end > ph)
            ph = ph_end < PHASE_STOP ? ph_end : PHASE_BACK;
        w->calls[ph]++;
        if (rc == NORI_OK || rc == NORI_MISS)
            continue;
        w->failed[ph]++;
        if (rc != NORI_EBACKEND)
            w->unexpected++;
        if (back > 0 && t0 >= back)
            w->failed_after_restart++;
        snprintf(w->last_failure, sizeof w->last_failure, "call %ld (kind %ld): %s: %s", i,
                 (i + w->id) % 4, nori_strerror(rc), nori_last_error());
        /* During the outage the calls fail fast: pace them a little so the
         * log of attempts stays small and the restart gets CPU. */
        if (ph == PHASE_DOWN)
            sleep_ms(5);
    }
    return NULL;
}

/* The server's outage: kill (SIGKILL, then restart on the same port) or
 * stall (DEBUG SLEEP on a raw connection, which returns when it ends). */
typedef enum { FAULT_KILL, FAULT_STALL } fault_kind;

static void inject(fault_kind fault)
{
    if (fault == FAULT_KILL) {
        /* SIGKILL by pid: the server dies mid-command, sockets reset. */
        pid_t pid = server->pid;
        assert_int_equal(kill(pid, SIGKILL), 0);
        int status;
        while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
            ;
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        server->pid = 0;
        sleep_ms(1500);
        nori_test_redis_restart(server); /* same port; returns once PING answers */
    } else {
        /* Redis runs one command at a time: for 2 s every call's reply is
         * late, so each must give up at its command timeout. */
        redisContext *c = nori_test_redis_connect(server);
        assert_non_null(c);
        redisReply *r = redisCommand(c, "DEBUG SLEEP 2");
        assert_true(r != NULL && r->type == REDIS_REPLY_STATUS);
        freeReplyObject(r);
        redisFree(c);
    }
}

/* 8 threads of mixed calls through one backend across the fault; the
 * assertions of the file comment. */
static void run_with_fault(fault_kind fault)
{
    server = nori_test_redis_start(NULL);
    char url[400];
    /* The circuit breaker is off here: this test is about reconnecting, and
     * checks that every call after the recovery succeeds, where an open
     * breaker fails calls fast for its cool-down by design (its own test is
     * test_redis_breaker). */
    snprintf(url, sizeof url, "%s?timeout_ms=%d&connect_timeout_ms=%d&circuit_failures=0",
             server->url, TIMEOUT_MS, TIMEOUT_MS);
    assert_nori(nori_redis_backend_new(url, &backend), NORI_OK);

    worker w[THREADS];
    pthread_t th[THREADS];
    memset(w, 0, sizeof w);
    atomic_store(&phase, PHASE_UP);
    atomic_store(&restarted_at, 0.0);
    for (int i = 0; i < THREADS; i++) {
        w[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, run, &w[i]), 0);
    }
    sleep_ms(1000);

    atomic_store(&phase, PHASE_DOWN);
    inject(fault);
    atomic_store(&restarted_at, now_ms());
    atomic_store(&phase, PHASE_BACK);
    sleep_ms(1500);
    atomic_store(&phase, PHASE_STOP);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);

    double max_ms = 0;
    long down_calls = 0, down_failed = 0;
    for (int i = 0; i < THREADS; i++) {
        print_message("thread %d: up %ld calls (%ld failed), down %ld (%ld failed), back %ld "
                      "(%ld failed, %ld after the server was back), max %.1f ms\n",
                      i, w[i].calls[0], w[i].failed[0], w[i].calls[1], w[i].failed[1],
                      w[i].calls[2], w[i].failed[2], w[i].failed_after_restart, w[i].max_ms);
        if (w[i].unexpected > 0 || w[i].failed[PHASE_UP] > 0 || w[i].failed_after_restart > 0)
            fail_msg("thread %d: unexpected failure; last: %s", i, w[i].last_failure);
        /* Each thread did real work before and after the outage. */
        assert_true(w[i].calls[PHASE_UP] > 10);
        assert_true(w[i].calls[PHASE_BACK] - w[i].failed[PHASE_BACK] > 10);
        if (w[i].max_ms > max_ms)
            max_ms = w[i].max_ms;
        down_calls += w[i].calls[PHASE_DOWN];
        down_failed += w[i].failed[PHASE_DOWN];
    }
    print_message("max call duration %.1f ms (bound %d ms)\n", max_ms,
                  3 * TIMEOUT_MS + MARGIN_MS);
    assert_true(max_ms < 3 * TIMEOUT_MS + MARGIN_MS);
    /* The outage was seen: calls made while the server was out failed. */
    assert_true(down_calls > 0);
    assert_true(down_failed > 0);

    /* The counter works after the outage, through the same handle. */
    int64_t n1, n2;
    assert_nori(nori_backend_incr(backend, "kill:counter", 0, &n1), NORI_OK);
    assert_nori(nori_backend_incr(backend, "kill:counter", 0, &n2), NORI_OK);
    assert_int_equal(n2, n1 + 1);

    nori_backend_free(backend);
    backend = NULL;
    nori_test_redis_stop(server);
    server = NULL;
}

static void test_sigkill_under_load(void **state)
{
    (void)state;
    run_with_fault(FAULT_KILL);
}

static void test_stall_under_load(void **state)
{
    (void)state;
    run_with_fault(FAULT_STALL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigkill_under_load),
        cmocka_unit_test(test_stall_under_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
