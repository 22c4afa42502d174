// SPDX-License-Identifier: MIT
/*
 * fork() while other threads use the memory backend: the child (one thread,
 * the forking one) can use and free the backend it inherited, and the
 * process-wide default backend, within a bound. Every child is waited for
 * with a bounded wait and killed when it overruns it: a hung child fails
 * the test instead of hanging it. Label "concurrency": also run under
 * ThreadSanitizer.
 *
 * Under AddressSanitizer and ThreadSanitizer the writers' calls are kept
 * away from the instant of fork() (alloc_gate below) and the backends have
 * no expiry thread: GCC 12's ASan allocator has no fork handling
 * (google/sanitizers#1814), and its TSan allocator leaves the lock of a size
 * class's region held in the child when another thread was inside it (seen:
 * a child waiting forever in free(), under
 * SizeClassAllocator64::ReturnToAllocator), so a child forked while another
 * thread is inside the sanitizer's malloc or free can hang in its own,
 * whatever this library does. There the children still run every path of
 * the child (room recounted, slots and locks released) under the
 * sanitizer; forking while the library's locks are held is what the plain
 * build tests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "memory/memory.h"
#include "test_support.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WRITERS 4
#define MAX_WRITERS 16
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define FORKS 30 /* a fork copies the sanitizer's large shadow mappings: slow */
#else
#define FORKS 100
#endif
/* A child does a few dozen calls: 20 s is hundreds of times what it needs,
 * even on a loaded machine under a sanitizer. */
#define CHILD_LIMIT_S 20.0

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pause_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
    nanosleep(&ts, NULL);
}

/* Waits for the child, at most CHILD_LIMIT_S; a child still running then is
 * killed. Returns the child's exit code, or -1 (hung, or killed by a
 * signal) after printing what happened. The caller stops its threads before
 * failing, so that a failure does not leave them running. */
static int wait_child(pid_t pid, const char *what, int round)
{
    int status = -1;
    double t0 = now_s();
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r != 0 || now_s() - t0 > CHILD_LIMIT_S) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            print_error("%s: child %d hung (round %d): killed after %.0f s\n", what, (int)pid,
                        round, CHILD_LIMIT_S);
            return -1;
        }
        pause_us(1000);
    }
    if (!WIFEXITED(status)) {
        print_error("%s: child %d died of signal %d (round %d)\n", what, (int)pid,
                    WIFSIGNALED(status) ? WTERMSIG(status) : -1, round);
        return -1;
    }
    if (WEXITSTATUS(status) != 0)
        print_error("%s: child of round %d failed at step %d\n", what, round,
                    WEXITSTATUS(status));
    return WEXITSTATUS(status);
}

/* ---- the sanitizers' gate (see the opening comment) ---- */

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
static pthread_rwlock_t alloc_gate;

static void gate_make(void)
{
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&alloc_gate, &attr);
    pthread_rwlockattr_destroy(&attr);
}

static void gate_close(void)
{
    pthread_rwlock_wrlock(&alloc_gate);
}

static void gate_open(void)
{
    pthread_rwlock_unlock(&alloc_gate);
}

/* In the child, made anew: glibc counts the writers that were waiting for
 * a read lock at fork() as readers, which never leave in the child, and
 * the child's own fork() (a grandchild) would wait for them forever. */
static void gate_open_in_child(void)
{
    pthread_rwlock_unlock(&alloc_gate);
    pthread_rwlock_destroy(&alloc_gate);
    gate_make();
}

/* After the library's handlers are registered, so that this prepare
 * handler runs first (prepare handlers run in reverse order): a writer it
 * waits for may be waiting for a lock the library's handlers take. */
static void gate_init(void)
{
    nori_reset_backend(); /* registers the default backend's and the memory backend's */
    gate_make();
    pthread_atfork(gate_close, gate_open, gate_open_in_child);
}
#define CALL_BEGIN() pthread_rwlock_rdlock(&alloc_gate)
#define CALL_END() pthread_rwlock_unlock(&alloc_gate)
#define WITH_SWEEPER false
/* A writer inside the gate may wait for the shard lock that a thread
 * forking from inside a callback holds: no writers in that test. */
#define CALLBACK_WRITERS 0
#else
static void gate_init(void)
{
}
#define CALL_BEGIN() ((void)0)
#define CALL_END() ((void)0)
#define WITH_SWEEPER true
#define CALLBACK_WRITERS WRITERS
#endif

/* ---- writers ---- */

typedef struct {
    nori_backend *b;
    unsigned seed;
    int keyspace;
    size_t max_len;
    long slow_us; /* atomic_update callbacks hold their shard's lock this long */
    _Atomic int *stop;
    _Atomic long *ops;
    _Atomic int *started;
    int errors;
} writer;

static int append_x(const nori_buf *cur, nori_buf *next, void *ud)
{
    if (ud != NULL)
        pause_us(*(const long *)ud);
    size_t n = cur != NULL && cur->len < 2000 ? cur->len : 0;
    next->data = malloc(n + 1);
    if (next->data == NULL)
        return 1;
    if (n > 0)
        memcpy(next->data, cur->data, n);
    next->data[n] = 'x';
    next->len = n + 1;
    return 0;
}

/* Every kind of write, and reads: the shard locks, the room counters, the
 * epoch slots and the mapping cache (values of 16 KiB and more) are all in
 * use when the main thread forks. */
static void *write_loop(void *arg)
{
    writer *w = arg;
    char key[32];
    char *val = malloc(w->max_len);
    memset(val, 'w', w->max_len);
    atomic_fetch_add(w->started, 1);
    while (!atomic_load(w->stop)) {
        int k = (int)(rand_r(&w->seed) % (unsigned)w->keyspace);
        int op = (int)(rand_r(&w->seed) % 16);
        snprintf(key, sizeof key, "w:%d", k);
        int rc;
        CALL_BEGIN();
        if (op < 7) {
            size_t len = 1 + rand_r(&w->seed) % w->max_len;
            rc = nori_backend_set(w->b, key, val, len, op == 6 ? 1 : 0);
        } else if (op < 10) {
            nori_buf out;
            rc = nori_backend_get(w->b, key, &out);
            if (rc == NORI_OK)
                nori_buf_free(&out);
        } else if (op < 11) {
            rc = nori_backend_delete(w->b, key);
        } else if (op < 13) {
            snprintf(key, sizeof key, "n:%d", k);
            rc = nori_backend_incr(w->b, key, 0, NULL);
        } else if (op < 15) {
            snprintf(key, sizeof key, "u:%d", k);
            rc = nori_backend_atomic_update(w->b, key, append_x, w->slow_us > 0 ? &w->slow_us : NULL,
                                            0, NULL);
        } else {
            rc = nori_backend_delete_prefix(w->b, k % 4 == 0 ? "w:1" : "n:");
        }
        CALL_END();
        if (rc < 0 && rc != NORI_ENOMEM && w->errors++ == 0)
            print_error("op %d on %s: %s\n", op, key, nori_last_error());
        atomic_fetch_add(w->ops, 1);
    }
    free(val);
    return NULL;
}

typedef struct {
    pthread_t t[MAX_WRITERS];
    writer w[MAX_WRITERS];
    int n;
    _Atomic int stop;
    _Atomic long ops;
    _Atomic int started;
} writers;

static void start_writers(writers *ws, int n, nori_backend *b, int keyspace, size_t max_len,
                          long slow_us)
{
    atomic_init(&ws->stop, 0);
    atomic_init(&ws->ops, 0);
    atomic_init(&ws->started, 0);
    ws->n = n;
    for (int i = 0; i < n; i++) {
        ws->w[i] = (writer){b,        (unsigned)i * 7717u + 11, keyspace, max_len, slow_us,
                            &ws->stop, &ws->ops, &ws->started, 0};
        assert_int_equal(pthread_create(&ws->t[i], NULL, write_loop, &ws->w[i]), 0);
    }
    /* Every writer in its loop (its start-up done) before the first fork;
     * bounded: 10 s. */
    for (int i = 0; i < 10000 && atomic_load(&ws->started) < n; i++)
        pause_us(1000);
    assert_int_equal(atomic_load(&ws->started), n);
}

static void stop_writers(writers *ws)
{
    atomic_store(&ws->stop, 1);
    for (int i = 0; i < ws->n; i++) {
        pthread_join(ws->t[i], NULL);
        assert_int_equal(ws->w[i].errors, 0);
    }
}

/* Lets the writers run a little (a bounded number of yields) so that each
 * fork lands at a different point of their work. */
static void let_writers_run(writers *ws, long ops)
{
    long target = atomic_load(&ws->ops) + ops;
    for (long i = 0; i < 100000 && atomic_load(&ws->ops) < target; i++)
        sched_yield();
}

/* ---- the child's work ---- */

/* set/get/incr/atomic_update/flush on the inherited backend; the exit code
 * says which step failed (0: all went well; 20: a grandchild failed). */
static int child_uses(nori_backend *b)
{
    if (nori_backend_set(b, "child", "c", 1, 0) != NORI_OK)
        return 2;
    nori_buf out;
    if (nori_backend_get(b, "child", &out) != NORI_OK)
        return 3;
    int same = out.len == 1 && out.data[0] == 'c';
    nori_buf_free(&out);
    if (!same)
        return 4;
    int64_t n;
    if (nori_backend_incr(b, "child:n", 0, &n) != NORI_OK)
        return 5;
    if (nori_backend_atomic_update(b, "child:u", append_x, NULL, 0, NULL) != NORI_OK)
        return 6;
    if (nori_backend_flush(b) != NORI_OK)
        return 7;
    if (nori_backend_get(b, "child", &out) != NORI_MISS)
        return 8;
    if (nori__memory_audit(b) != 0)
        return 9;
    return 0;
}

/*
 * Writers of every kind run while the main thread forks, again and again;
 * each child uses, flushes and frees the backend, and every tenth forks a
 * grandchild that does the same. Before the fix the child inherited shard
 * locks (and the mapping cache's lock) held by writers that do not exist in
 * it, and hung in set or flush.
 */
static void test_fork_while_writing(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori__memory_backend_new_opts(2000, WITH_SWEEPER, &b), NORI_OK);
    writers ws;
    start_writers(&ws, WRITERS, b, 3000, 40000, 0);
    int failed = 0;
    for (int round = 0; round < FORKS; round++) {
        let_writers_run(&ws, 50 + round % 7 * 40);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            int rc = child_uses(b);
            if (rc == 0 && round % 10 == 0) {
                /* The child forks in turn: nothing the parent's threads
                 * left behind may hold up the handlers there. */
                pid_t grandchild = fork();
                if (grandchild == 0) {
                    rc = child_uses(b);
                    nori_backend_free(b);
                    _exit(rc);
                }
                rc = grandchild < 0 ? 20 : wait_child(grandchild, "grandchild", round);
                rc = rc == 0 ? 0 : 20;
            }
            nori_backend_free(b);
            _exit(rc);
        }
        if ((failed = wait_child(pid, "fork_while_writing", round)) != 0)
            break;
    }
    stop_writers(&ws);
    assert_int_equal(failed, 0);
    assert_true(nori__memory_audit(b) >= 0);
    nori_backend_free(b);
}

/*
 * Small bounds (8 entries, 8 values of 1000 bytes), 16 writers, and
 * atomic_update callbacks that hold their shard's lock 200 us, so that
 * writers often hold room while they wait for a lock (a write that finds
 * every other shard with entries busy takes its room without a lock and
 * then waits for its shard). The child gets all of the
 * room the bounds allow, not less: room that threads of the parent held at
 * fork() is not counted in the child, where they do not exist (else a child
 * with every place held that way would wait for room forever).
 */
#define SMALL_KEYS 8
#define SMALL_VAL 1000

static int child_fills(nori_backend *b)
{
    if (nori_backend_flush(b) != NORI_OK)
        return 2;
    char key[16], val[SMALL_VAL];
    memset(val, 'c', sizeof val);
    for (int i = 0; i < SMALL_KEYS; i++) {
        snprintf(key, sizeof key, "c%d", i);
        if (nori_backend_set(b, key, val, sizeof val, 0) != NORI_OK)
            return 3;
    }
    for (int i = 0; i < SMALL_KEYS; i++) {
        snprintf(key, sizeof key, "c%d", i);
        nori_buf out;
        if (nori_backend_get(b, key, &out) != NORI_OK)
            return 10 + i; /* evicted: the child had less room than the bounds allow */
        nori_buf_free(&out);
    }
    if (nori__memory_audit(b) != SMALL_KEYS)
        return 4;
    return 0;
}

static void test_fork_child_has_all_room(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori__memory_backend_new_opts(SMALL_KEYS, WITH_SWEEPER, &b), NORI_OK);
    assert_nori(nori_memory_backend_set_max_bytes(
                    b, SMALL_KEYS * nori_memory_entry_bytes(2, SMALL_VAL, 0)),
                NORI_OK);
    writers ws;
    start_writers(&ws, MAX_WRITERS, b, 64, SMALL_VAL, 200);
    int failed = 0;
    for (int round = 0; round < 3 * FORKS; round++) {
        let_writers_run(&ws, 20 + round % 5 * 30);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            int rc = child_fills(b);
            nori_backend_free(b);
            _exit(rc);
        }
        if ((failed = wait_child(pid, "fork_child_has_all_room", round)) != 0)
            break;
    }
    stop_writers(&ws);
    assert_int_equal(failed, 0);
    assert_true(nori__memory_audit(b) >= 0);
    nori_backend_free(b);
}

/*
 * The process-wide default backend: a thread rebuilds it again and again
 * (nori_reset_backend() then a nori_cache_* call builds it under the
 * default backend's lock) while the main thread forks; the child uses
 * nori_cache_* and resets it. Before the fix a child forked while the lock
 * was held hung in its first call.
 */
static _Atomic int rebuild_stop;
static _Atomic long rebuilds;

static void *rebuild_loop(void *arg)
{
    (void)arg;
    while (!atomic_load(&rebuild_stop)) {
        CALL_BEGIN();
        nori_reset_backend();
        if (nori_cache_set("p", "1", 1, 0) != NORI_OK)
            atomic_store(&rebuild_stop, 2);
        CALL_END();
        atomic_fetch_add(&rebuilds, 1);
    }
    return NULL;
}

static void test_fork_default_backend(void **state)
{
    (void)state;
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    char *dir = nori_test_mkdtemp(); /* no .env here */
    assert_int_equal(chdir(dir), 0);
    setenv("CACHE_BACKEND", "memory", 1);
    setenv("CACHE_MAX_KEYS", "1000", 1);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, rebuild_loop, NULL), 0);
    int failed = 0;
    for (int round = 0; round < FORKS; round++) {
        long target = atomic_load(&rebuilds) + 1 + round % 3;
        for (long i = 0; i < 100000 && atomic_load(&rebuilds) < target; i++)
            sched_yield();
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
#ifdef __SANITIZE_THREAD__
            /* ThreadSanitizer cannot start a thread in the child of a
             * multi-threaded fork (its thread registry is the parent's),
             * and building the default backend starts the expiry thread:
             * here the child only takes the default backend's lock. */
            nori_reset_backend();
            _exit(0);
#endif
            int rc = nori_cache_set("child", "c", 1, 0) == NORI_OK ? 0 : 2;
            nori_buf out;
            if (rc == 0 && nori_cache_get("child", &out) != NORI_OK)
                rc = 3;
            else if (rc == 0)
                nori_buf_free(&out);
            if (rc == 0 && nori_cache_flush() != NORI_OK)
                rc = 4;
            nori_reset_backend();
            _exit(rc);
        }
        if ((failed = wait_child(pid, "fork_default_backend", round)) != 0)
            break;
    }
    int rebuild_failed = atomic_exchange(&rebuild_stop, 1);
    pthread_join(t, NULL);
    assert_int_equal(failed, 0);
    assert_int_equal(rebuild_failed, 0);
    nori_reset_backend();
    unsetenv("CACHE_BACKEND");
    unsetenv("CACHE_MAX_KEYS");
    assert_int_equal(chdir(cwd), 0);
    nori_test_rmtree(dir);
    free(dir);
}

/*
 * fork() from inside an atomic_update callback (the shard's lock is held by
 * the forking thread itself) while writers run: neither process deadlocks,
 * the update lands in both, and both go on using the backend.
 */
typedef struct {
    pid_t child;
} fork_in_callback;

static int fork_then_append(const nori_buf *cur, nori_buf *next, void *ud)
{
    fork_in_callback *f = ud;
    f->child = fork();
    return append_x(cur, next, NULL);
}

static void test_fork_inside_callback(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori__memory_backend_new_opts(SMALL_KEYS * 4, WITH_SWEEPER, &b), NORI_OK);
    writers ws;
    start_writers(&ws, CALLBACK_WRITERS, b, 100, 2000, 0);
    int failed = 0;
    for (int round = 0; round < FORKS / 4; round++) {
        let_writers_run(&ws, 50);
        fork_in_callback f = {-1};
        char key[16];
        snprintf(key, sizeof key, "cb:%d", round);
        int rc = nori_backend_atomic_update(b, key, fork_then_append, &f, 0, NULL);
        assert_true(f.child >= 0);
        if (f.child == 0) {
            int code = rc != NORI_OK ? 2 : child_uses(b);
            nori_backend_free(b);
            _exit(code);
        }
        if (rc != NORI_OK)
            print_error("atomic_update: %s\n", nori_last_error());
        if ((failed = wait_child(f.child, "fork_inside_callback", round)) != 0 || rc != NORI_OK) {
            failed = failed != 0 ? failed : rc;
            break;
        }
    }
    stop_writers(&ws);
    assert_int_equal(failed, 0);
    assert_true(nori__memory_audit(b) >= 0);
    nori_backend_free(b);
}

int main(void)
{
    gate_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fork_while_writing),
        cmocka_unit_test(test_fork_child_has_all_room),
        cmocka_unit_test(test_fork_default_backend),
        cmocka_unit_test(test_fork_inside_callback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
