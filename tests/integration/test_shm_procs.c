// SPDX-License-Identifier: MIT
/*
 * The shared-memory backend across real processes:
 *  - incr from N processes returns exactly 1..N*k between them, and
 *    atomic_update from N processes loses nothing;
 *  - LRU order and both bounds with two processes;
 *  - a holder that is stopped (blocked in a callback, SIGSTOP) makes the
 *    others fail within the lock timeout, naming its pid; killed, it is
 *    repaired at once;
 *  - a process stopped inside an arena section, or between its allocation
 *    and its link: the others' waits end within the lock timeout;
 *  - fork() while another thread holds a lock, and fork() inside an
 *    atomic_update callback: the child never hangs and never writes twice;
 *  - threads of one process with self-checking values (ThreadSanitizer).
 * Children never call cmocka: they report through their exit status.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "shm/shm.h"
#include "shm_checks.h"
#include "test_support.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>

static int setup(void **state)
{
    (void)state;
    return shm_test_segment_setup("procs");
}

static int teardown(void **state)
{
    (void)state;
    shm_test_segment_teardown();
    return 0;
}

static nori_backend *open_shm(size_t max_keys, size_t max_bytes)
{
    nori_backend *b = NULL;
    assert_nori(nori__shm_backend_new_opts(shm_test_name, max_keys, max_bytes, false, &b), NORI_OK);
    return b;
}

static void assert_exit0(pid_t pid, int64_t timeout_ms)
{
    int status = shm_test_wait(pid, timeout_ms);
    if (status == -1)
        fail_msg("child %ld did not finish within %lld ms (killed)", (long)pid,
                 (long long)timeout_ms);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("child %ld failed: status %d (exit %d, signal %d)", (long)pid, status,
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                 WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* ---- incr and atomic_update from N processes ---- */

enum { NPROC = 6, PER = 2000 };

typedef struct {
    _Atomic unsigned char seen[NPROC * PER + 1];
} incr_results;

static incr_results *ir;

static int incr_child(void *arg)
{
    (void)arg;
    nori_backend *b = NULL;
    if (nori__shm_backend_new_opts(shm_test_name, 1000, 1 << 20, false, &b) != NORI_OK)
        return 10;
    for (int i = 0; i < PER; i++) {
        int64_t v = 0;
        if (nori_backend_incr(b, "ctr", 0, &v) != NORI_OK)
            return 11;
        if (v < 1 || v > NPROC * PER || atomic_exchange(&ir->seen[v], 1) != 0)
            return 12; /* out of range, or handed out twice */
        if (nori_backend_atomic_update(b, "au", nori_test_add_one, NULL, 0, NULL) != NORI_OK)
            return 13;
    }
    nori_backend_free(b);
    return 0;
}

static void test_incr_and_update_across_processes(void **state)
{
    (void)state;
    ir = shm_test_shared(sizeof *ir);
    assert_non_null(ir);
    nori_backend *b = open_shm(1000, 1 << 20);
    pid_t pids[NPROC];
    for (int i = 0; i < NPROC; i++)
        pids[i] = shm_test_spawn(incr_child, NULL);
    for (int i = 0; i < NPROC; i++)
        assert_exit0(pids[i], 120000);
    for (int v = 1; v <= NPROC * PER; v++)
        if (!ir->seen[v])
            fail_msg("incr never returned %d", v);
    nori_buf out;
    assert_nori(nori_backend_get(b, "ctr", &out), NORI_OK);
    assert_int_equal(atoll(out.data), NPROC * PER);
    nori_buf_free(&out);
    assert_nori(nori_backend_get(b, "au", &out), NORI_OK);
    assert_int_equal(atoll(out.data), NPROC * PER);
    nori_buf_free(&out);
    assert_true(nori__shm_audit(b) >= 0);
    nori_backend_free(b);
    munmap(ir, sizeof *ir);
}

/* ---- LRU and bounds with two processes ---- */

typedef struct {
    int to_child[2], to_parent[2];
} script;

static int lru_child(void *arg)
{
    script *sc = arg;
    nori_backend *b = NULL;
    if (nori__shm_backend_new_opts(shm_test_name, 3, 1 << 20, false, &b) != NORI_OK)
        return 10;
    char c;
    /* Step 1: read a (after the parent wrote a, b, c). */
    if (read(sc->to_child[0], &c, 1) != 1)
        return 11;
    nori_buf v;
    if (nori_backend_get(b, "a", &v) != NORI_OK)
        return 12;
    nori_buf_free(&v);
    if (write(sc->to_parent[1], "1", 1) != 1)
        return 13;
    /* Step 2: write e (the parent wrote d meanwhile): evicts c. */
    if (read(sc->to_child[0], &c, 1) != 1)
        return 14;
    if (nori_backend_set(b, "e", "5", 1, 0) != NORI_OK)
        return 15;
    if (write(sc->to_parent[1], "2", 1) != 1)
        return 16;
    nori_backend_free(b);
    return 0;
}

static void test_lru_two_processes(void **state)
{
    (void)state;
    script sc;
    assert_int_equal(pipe(sc.to_child), 0);
    assert_int_equal(pipe(sc.to_parent), 0);
    nori_backend *b = open_shm(3, 1 << 20);
    pid_t pid = shm_test_spawn(lru_child, &sc);
    assert_nori(nori_backend_set(b, "a", "1", 1, 0), NORI_OK);
    assert_nori(nori_backend_set(b, "b", "2", 1, 0), NORI_OK);
    assert_nori(nori_backend_set(b, "c", "3", 1, 0), NORI_OK);
    char c;
    assert_int_equal(write(sc.to_child[1], "go", 1), 1);
    assert_int_equal(read(sc.to_parent[0], &c, 1), 1);
    /* The child's read of a made b the oldest. */
    assert_nori(nori_backend_set(b, "d", "4", 1, 0), NORI_OK);
    nori_buf v;
    assert_nori(nori_backend_get(b, "b", &v), NORI_MISS);
    assert_int_equal(write(sc.to_child[1], "go", 1), 1);
    assert_int_equal(read(sc.to_parent[0], &c, 1), 1);
    /* Order before e: c, a, d (a read by the child, d written after). */
    assert_nori(nori_backend_get(b, "c", &v), NORI_MISS);
    assert_nori(nori_backend_get(b, "a", &v), NORI_OK);
    nori_buf_free(&v);
    assert_nori(nori_backend_get(b, "e", &v), NORI_OK);
    nori_buf_free(&v);
    assert_exit0(pid, 30000);
    assert_int_equal(nori__shm_audit(b), 3);
    nori_backend_free(b);
}

static int insert_child(void *arg)
{
    long who = (long)(intptr_t)arg;
    nori_backend *b = NULL;
    if (nori__shm_backend_new_opts(shm_test_name, 100, 1 << 20, false, &b) != NORI_OK)
        return 10;
    char key[32], val[600];
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof key, "p%ld-%d", who, i);
        size_t n = shm_test_make_value(key, (uint64_t)i, (size_t)(i % 500) + 20, val, sizeof val);
        int rc = nori_backend_set(b, key, val, n, 0);
        if (rc != NORI_OK) {
            fprintf(stderr, "writer %ld: set %s: %s\n", who, key, nori_last_error());
            return 11;
        }
    }
    nori_backend_free(b);
    return 0;
}

/* Two processes insert 20,000 keys each into max_keys 100 while this one
 * audits: never more than 100 entries, every structure consistent. */
static void test_bounds_two_writers(void **state)
{
    (void)state;
    nori_backend *b = open_shm(100, 1 << 20);
    pid_t p1 = shm_test_spawn(insert_child, (void *)(intptr_t)1);
    pid_t p2 = shm_test_spawn(insert_child, (void *)(intptr_t)2);
    int audits = 0;
    pid_t left[2] = {p1, p2};
    int64_t deadline = shm_test_now_us() + 120000000;
    while (left[0] != 0 || left[1] != 0) {
        int64_t n = nori__shm_audit(b);
        if (n < 0 || n > 100)
            fail_msg("audit %d: %" PRId64 " entries (%s)", audits, n, nori_last_error());
        audits++;
        for (int i = 0; i < 2; i++) {
            int status;
            if (left[i] != 0 && waitpid(left[i], &status, WNOHANG) == left[i]) {
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                    fail_msg("writer %d failed: status %d", i + 1, status);
                left[i] = 0;
            }
        }
        if (shm_test_now_us() > deadline)
            fail_msg("the writers did not finish within 120 s");
        shm_test_sleep_us(1000);
    }
    print_message("%d audits while two processes inserted\n", audits);
    assert_true(nori__shm_audit(b) == 100);
    nori_backend_stats st;
    nori_backend_get_stats(b, &st);
    assert_int_equal(st.entries, 100);
    assert_int_equal(st.evictions, 40000 - 100);
    nori_backend_free(b);
}

/* ---- a stopped holder, then a dead one ---- */

typedef struct {
    int ready[2];
} holder_args;

static int block_forever(const nori_buf *cur, nori_buf *next, void *ud)
{
    (void)cur;
    (void)next;
    holder_args *h = ud;
    if (write(h->ready[1], "h", 1) != 1)
        _exit(20);
    for (;;)
        pause();
    return 1;
}

static int holder_child(void *arg)
{
    nori_backend *b = NULL;
    if (nori__shm_backend_new_opts(shm_test_name, 100, 1 << 20, false, &b) != NORI_OK)
        return 10;
    nori_backend_atomic_update(b, "held", block_forever, arg, 0, NULL);
    return 11;
}

static void test_stopped_then_dead_holder(void **state)
{
    (void)state;
    nori_backend *b = open_shm(100, 1 << 20);
    assert_nori(nori_backend_set(b, "held", "before", 6, 0), NORI_OK);
    holder_args h;
    assert_int_equal(pipe(h.ready), 0);
    pid_t pid = shm_test_spawn(holder_child, &h);
    char c;
    assert_int_equal(read(h.ready[0], &c, 1), 1); /* it holds the shard now */
    assert_int_equal(nori__shm_shard_owner(b, nori__shm_shard_index(b, "held")), pid);
    assert_nori(nori_shm_backend_set_lock_timeout(b, 300), NORI_OK);
    /* Blocked in its callback: a write waits 300 ms, then fails naming it. */
    int64_t t0 = shm_test_now_us();
    assert_nori(nori_backend_set(b, "held", "after", 5, 0), NORI_EBACKEND);
    int64_t waited = shm_test_now_us() - t0;
    char pidtext[32];
    snprintf(pidtext, sizeof pidtext, "pid %ld", (long)pid);
    if (strstr(nori_last_error(), pidtext) == NULL)
        fail_msg("'%s' does not name %s", nori_last_error(), pidtext);
    /* At least the bound; at most the bound plus 5 s for a loaded machine. */
    assert_true(waited >= 290000);
    assert_true(waited < 5300000);
    /* Stopped (SIGSTOP): the same, for reads that need the lock too. */
    assert_int_equal(kill(pid, SIGSTOP), 0);
    assert_nori(nori_backend_incr(b, "held", 0, NULL), NORI_EBACKEND);
    assert_non_null(strstr(nori_last_error(), pidtext));
    /* A lock-free read of the same key still answers. */
    nori_buf v;
    assert_nori(nori_backend_get(b, "held", &v), NORI_OK);
    assert_string_equal(v.data, "before");
    nori_buf_free(&v);
    nori_shm_stats before, after;
    assert_nori(nori_shm_backend_get_stats(b, &before), NORI_OK);
    /* Killed: the next write takes the lock at once (EOWNERDEAD). */
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status = shm_test_wait(pid, 10000);
    assert_true(WIFSIGNALED(status));
    t0 = shm_test_now_us();
    assert_nori(nori_backend_set(b, "held", "after", 5, 0), NORI_OK);
    assert_true(shm_test_now_us() - t0 < 300000);
    assert_nori(nori_shm_backend_get_stats(b, &after), NORI_OK);
    assert_int_equal(after.owner_died, before.owner_died + 1);
    assert_true(after.lock_timeouts >= 2);
    assert_nori(nori_backend_get(b, "held", &v), NORI_OK);
    assert_string_equal(v.data, "after");
    nori_buf_free(&v);
    assert_true(nori__shm_audit(b) >= 0);
    nori_backend_free(b);
}

/* ---- the other waits: the arena lock, room held by a stopped write ---- */

typedef struct {
    const char *point;
    size_t max_keys;
} pause_args;

static int paused_insert(void *arg)
{
    pause_args *a = arg;
    nori_backend *b = NULL;
    if (nori__shm_backend_new_opts(shm_test_name, a->max_keys, 1 << 20, false, &b) != NORI_OK)
        return 10;
    nori__shm_pause_at(a->point);
    int rc = nori_backend_set(b, "paused-key", "v", 1, 0); /* stops inside */
    return rc == NORI_OK ? 0 : 11;
}

/* A process stopped inside an arena section (it holds the arena lock):
 * another's insert fails after the lock timeout naming it; once killed,
 * the arena section is rolled back and the insert succeeds. A process
 * stopped between its allocation and its link holds the only place of
 * max_keys 1: another's insert waits for room at most the lock timeout. */
static void test_arena_and_room_waits_bounded(void **state)
{
    (void)state;
    for (int room = 0; room <= 1; room++) {
        size_t max_keys = room ? 1 : 100;
        nori_backend *b = open_shm(max_keys, 1 << 20);
        assert_nori(nori_shm_backend_set_lock_timeout(b, 300), NORI_OK);
        pause_args a = {room ? "alloc" : "arena", max_keys};
        pid_t pid = shm_test_spawn(paused_insert, &a);
        nori_test_wait_stopped((int)pid);
        /* A key in another shard than the stopped insert's. */
        char key[32];
        for (int i = 0;; i++) {
            snprintf(key, sizeof key, "other-%d", i);
            if (nori__shm_shard_index(b, key) != nori__shm_shard_index(b, "paused-key"))
                break;
        }
        int64_t t0 = shm_test_now_us();
        assert_nori(nori_backend_set(b, key, "w", 1, 0), NORI_EBACKEND);
        int64_t waited = shm_test_now_us() - t0;
        print_message("%s held by a stopped process: the insert failed after %.0f ms (%s)\n",
                      room ? "the only place" : "the arena lock", (double)waited / 1000.0,
                      nori_last_error());
        assert_true(waited >= 290000);
        assert_true(waited < 5300000); /* the bound, plus 5 s for a loaded machine */
        if (!room) {
            char pidtext[64];
            snprintf(pidtext, sizeof pidtext, "arena is locked by pid %ld", (long)pid);
            assert_non_null(strstr(nori_last_error(), pidtext));
        } else {
            assert_non_null(strstr(nori_last_error(), "no room"));
        }
        assert_int_equal(kill(pid, SIGKILL), 0);
        assert_true(WIFSIGNALED(shm_test_wait(pid, 10000)));
        assert_nori(nori_backend_set(b, key, "w", 1, 0), NORI_OK);
        nori_buf v;
        assert_nori(nori_backend_get(b, "paused-key", &v), NORI_MISS);
        assert_int_equal(nori__shm_audit(b), 1);
        nori_backend_free(b);
        assert_nori(nori_shm_backend_unlink(shm_test_name), NORI_OK);
    }
}

/* ---- fork() ---- */

typedef struct {
    int release[2]; /* the holder thread waits for a byte here */
    int held[2];    /* it writes one here once it holds the lock */
    nori_backend *b;
} thread_hold;

static int hold_until_released(const nori_buf *cur, nori_buf *next, void *ud)
{
    (void)cur;
    thread_hold *t = ud;
    char c;
    if (write(t->held[1], "h", 1) != 1 || read(t->release[0], &c, 1) != 1)
        return 1;
    next->data = malloc(1);
    next->data[0] = 'p';
    next->len = 1;
    return 0;
}

static void *holder_thread(void *arg)
{
    thread_hold *t = arg;
    int rc = nori_backend_atomic_update(t->b, "k", hold_until_released, t, 0, NULL);
    return (void *)(intptr_t)rc;
}

typedef struct {
    nori_backend *b;
    int64_t timeout_ms;
    pid_t parent;
    int expect_timeout;
} fork_child_args;

static int fork_child(void *arg)
{
    fork_child_args *a = arg;
    if (nori_shm_backend_set_lock_timeout(a->b, a->timeout_ms) != NORI_OK)
        return 10;
    int rc = nori_backend_set(a->b, "k", "c", 1, 0);
    if (a->expect_timeout) {
        char pidtext[32];
        snprintf(pidtext, sizeof pidtext, "pid %ld", (long)a->parent);
        return rc == NORI_EBACKEND && strstr(nori_last_error(), pidtext) != NULL ? 0 : 11;
    }
    return rc == NORI_OK ? 0 : 12;
}

/* Another thread holds the key's shard lock at fork(): the child waits for
 * the parent's thread to let it go (it does, in the parent), or fails
 * within its lock timeout naming the parent; it never hangs. */
static void test_fork_while_thread_holds_lock(void **state)
{
    (void)state;
    for (int expect_timeout = 0; expect_timeout <= 1; expect_timeout++) {
        thread_hold t;
        t.b = open_shm(100, 1 << 20);
        assert_int_equal(pipe(t.release), 0);
        assert_int_equal(pipe(t.held), 0);
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, holder_thread, &t), 0);
        char c;
        assert_int_equal(read(t.held[0], &c, 1), 1);
        fork_child_args a = {t.b, expect_timeout ? 200 : 20000, getpid(), expect_timeout};
        pid_t pid = shm_test_spawn(fork_child, &a);
        if (expect_timeout) {
            /* Held until the child is done: it must time out, however late
             * a loaded machine runs it. */
            assert_exit0(pid, 30000);
            assert_int_equal(write(t.release[1], "r", 1), 1);
        } else {
            shm_test_sleep_us(100000);
            assert_int_equal(write(t.release[1], "r", 1), 1);
            assert_exit0(pid, 30000);
        }
        void *ret;
        pthread_join(th, &ret);
        assert_int_equal((intptr_t)ret, NORI_OK);
        nori_buf v;
        assert_nori(nori_backend_get(t.b, "k", &v), NORI_OK);
        assert_string_equal(v.data, expect_timeout ? "p" : "c");
        nori_buf_free(&v);
        nori_backend_free(t.b);
        close(t.release[0]);
        close(t.release[1]);
        close(t.held[0]);
        close(t.held[1]);
    }
}

static int fork_in_callback(const nori_buf *cur, nori_buf *next, void *ud)
{
    pid_t *child = ud;
    fflush(stdout);
    *child = fork();
    int64_t n = cur != NULL ? atoll(cur->data) : 0;
    char text[24];
    int len = snprintf(text, sizeof text, "%lld", (long long)(n + 1));
    next->data = malloc((size_t)len);
    memcpy(next->data, text, (size_t)len);
    next->len = (size_t)len;
    return 0;
}

/* fork() inside a callback: the update completes once, in the parent; the
 * child's call returns NORI_EBACKEND, writes nothing, and its later calls
 * work. */
static void test_fork_inside_callback(void **state)
{
    (void)state;
    nori_backend *b = open_shm(100, 1 << 20);
    assert_nori(nori_backend_set(b, "n", "5", 1, 0), NORI_OK);
    pid_t child = -1;
    int rc = nori_backend_atomic_update(b, "n", fork_in_callback, &child, 0, NULL);
    if (child == 0) {
        int ok = rc == NORI_EBACKEND && strstr(nori_last_error(), "fork()") != NULL;
        /* Later calls in the child work (the parent let the lock go). */
        nori_shm_backend_set_lock_timeout(b, 20000);
        int64_t v = 0;
        ok = ok && nori_backend_incr(b, "other", 0, &v) == NORI_OK && v == 1;
        _exit(ok ? 0 : 1);
    }
    assert_nori(rc, NORI_OK);
    assert_exit0(child, 30000);
    nori_buf v;
    assert_nori(nori_backend_get(b, "n", &v), NORI_OK);
    assert_string_equal(v.data, "6");
    nori_buf_free(&v);
    assert_true(nori__shm_audit(b) >= 0);
    nori_backend_free(b);
}

/* ---- threads of one process ---- */

typedef struct {
    nori_backend *b;
    unsigned seed;
    int64_t until_us;
    int bad;
    long ops;
} thread_args;

static void *mixed_thread(void *arg)
{
    thread_args *a = arg;
    char key[32], val[5000];
    while (shm_test_now_us() < a->until_us) {
        unsigned r = rand_r(&a->seed);
        snprintf(key, sizeof key, "t%u", r % 64);
        unsigned op = (r >> 8) % 10;
        if (op < 5) {
            nori_buf v;
            int rc = nori_backend_get(a->b, key, &v);
            if (rc == NORI_OK && !shm_test_check_value(key, v.data, v.len))
                a->bad++;
            if (rc != NORI_OK && rc != NORI_MISS)
                a->bad++;
            nori_buf_free(&v);
        } else if (op < 8) {
            size_t len = (r >> 12) % 3 == 0 ? (r >> 14) % 4900 + 30 : (r >> 14) % 60 + 20;
            len = shm_test_make_value(key, r, len, val, sizeof val);
            if (nori_backend_set(a->b, key, val, len, (r >> 20) % 4 == 0 ? 1 : 0) != NORI_OK)
                a->bad++;
        } else if (op < 9) {
            if (nori_backend_delete(a->b, key) != NORI_OK)
                a->bad++;
        } else {
            if (nori_backend_incr(a->b, "tctr", 0, NULL) != NORI_OK)
                a->bad++;
        }
        a->ops++;
    }
    return NULL;
}

static void test_threads_self_checking(void **state)
{
    (void)state;
    enum { T = 4 };
    nori_backend *b = NULL;
    assert_nori(nori_shm_backend_new(shm_test_name, 40, 256 * 1024, &b), NORI_OK);
    pthread_t th[T];
    thread_args a[T];
    int64_t until = shm_test_now_us() + 1000000;
    for (int i = 0; i < T; i++) {
        a[i] = (thread_args){b, (unsigned)i * 7919 + 1, until, 0, 0};
        assert_int_equal(pthread_create(&th[i], NULL, mixed_thread, &a[i]), 0);
    }
    long ops = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(a[i].bad, 0);
        ops += a[i].ops;
    }
    print_message("%ld operations from %d threads, no torn or misplaced value\n", ops, T);
    assert_true(nori__shm_audit(b) >= 0);
    nori_backend_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_incr_and_update_across_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lru_two_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bounds_two_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stopped_then_dead_holder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arena_and_room_waits_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_while_thread_holds_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_inside_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_self_checking, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
