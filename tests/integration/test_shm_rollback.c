// SPDX-License-Identifier: MIT
/*
 * Every crash point of every kind of write on a shared-memory segment: for
 * each n, a child process performs the write and SIGKILLs itself at its
 * n-th crash point (before and after each logged store of its locked
 * sections, halfway through an in-place rewrite; nori__shm_crash_after),
 * until a child finishes the write. After each death the audit takes every
 * lock (the dead child's sections are rolled back), the segment must agree
 * with itself (chains, lists, pages, chunks, stamp slots, room), the key
 * must hold its old or its new value, never a torn one, and the other
 * entries must be intact. Children never call cmocka: they report through
 * their exit status.
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

static int setup(void **state)
{
    (void)state;
    return shm_test_segment_setup("rollback");
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

/* ---- every crash point of every kind of write ---- */

typedef struct {
    const char *what;
    void (*prepare)(nori_backend *b); /* the state before the write */
    int (*write)(nori_backend *b);    /* the write (in the child) */
    /* Checks the state after a crash at some point (old or new), or after
     * the write completed (done). 0 when it holds. */
    int (*check)(nori_backend *b, bool done);
} crash_case;

static char big_old[20000], big_new[30000];

static int value_is(nori_backend *b, const char *key, const char *val, size_t len)
{
    nori_buf v;
    int rc = nori_backend_get(b, key, &v);
    if (val == NULL) {
        nori_buf_free(&v);
        return rc == NORI_MISS ? 0 : 1;
    }
    int ok = rc == NORI_OK && v.len == len && memcmp(v.data, val, len) == 0;
    nori_buf_free(&v);
    return ok ? 0 : 1;
}

static void fill_some(nori_backend *b, int n)
{
    char key[32], val[64];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "fill-%d", i);
        size_t len = shm_test_make_value(key, 0, 40, val, sizeof val);
        assert_nori(nori_backend_set(b, key, val, len, 0), NORI_OK);
    }
}

static void prep_plain(nori_backend *b)
{
    fill_some(b, 6);
    assert_nori(nori_backend_set(b, "small", "0123456789", 10, 0), NORI_OK);
    assert_nori(nori_backend_set(b, "large", big_old, sizeof big_old, 0), NORI_OK);
    assert_nori(nori_backend_set(b, "ctr", "41", 2, 0), NORI_OK);
    assert_nori(nori_backend_set(b, "view:/a:1", "x", 1, 0), NORI_OK);
    assert_nori(nori_backend_set(b, "view:/a:2", "y", 1, 0), NORI_OK);
}

static int w_insert(nori_backend *b)
{
    return nori_backend_set(b, "new", "fresh value", 11, 0);
}
static int c_insert(nori_backend *b, bool done)
{
    int absent = value_is(b, "new", NULL, 0) == 0;
    int is_new = value_is(b, "new", "fresh value", 11) == 0;
    return done ? !is_new : !(absent || is_new);
}

static int w_rewrite(nori_backend *b)
{
    return nori_backend_set(b, "small", "abcdefghij", 10, 0);
}
static int c_rewrite(nori_backend *b, bool done)
{
    int is_new = value_is(b, "small", "abcdefghij", 10) == 0;
    return done ? !is_new : !(is_new || value_is(b, "small", "0123456789", 10) == 0);
}

static int w_grow(nori_backend *b)
{
    return nori_backend_set(b, "small", big_new, 300, 0); /* another class: a new entry */
}
static int c_grow(nori_backend *b, bool done)
{
    int is_new = value_is(b, "small", big_new, 300) == 0;
    return done ? !is_new : !(is_new || value_is(b, "small", "0123456789", 10) == 0);
}

static int w_large(nori_backend *b)
{
    return nori_backend_set(b, "large", big_new, sizeof big_new, 0);
}
static int c_large(nori_backend *b, bool done)
{
    int is_new = value_is(b, "large", big_new, sizeof big_new) == 0;
    return done ? !is_new : !(is_new || value_is(b, "large", big_old, sizeof big_old) == 0);
}

static int w_delete(nori_backend *b)
{
    return nori_backend_delete(b, "large");
}
static int c_delete(nori_backend *b, bool done)
{
    int gone = value_is(b, "large", NULL, 0) == 0;
    return done ? !gone : !(gone || value_is(b, "large", big_old, sizeof big_old) == 0);
}

static int w_incr(nori_backend *b)
{
    int64_t v;
    return nori_backend_incr(b, "ctr", 0, &v);
}
static int c_incr(nori_backend *b, bool done)
{
    int is_new = value_is(b, "ctr", "42", 2) == 0;
    return done ? !is_new : !(is_new || value_is(b, "ctr", "41", 2) == 0);
}

static int w_prefix(nori_backend *b)
{
    return nori_backend_delete_prefix(b, "view:/a:");
}
static int c_prefix(nori_backend *b, bool done)
{
    int a = value_is(b, "view:/a:1", NULL, 0) == 0;
    int c = value_is(b, "view:/a:2", NULL, 0) == 0;
    int a_old = value_is(b, "view:/a:1", "x", 1) == 0;
    int c_old = value_is(b, "view:/a:2", "y", 1) == 0;
    /* Each key is removed by a section of its own: either state each. */
    return done ? !(a && c) : !((a || a_old) && (c || c_old));
}

static int w_update(nori_backend *b)
{
    return nori_backend_atomic_update(b, "ctr", nori_test_add_one, NULL, 0, NULL);
}

static int w_evicting(nori_backend *b)
{
    /* The segment is full (max_keys 12 in this case): makes room first. */
    char key[16];
    int rc = NORI_OK;
    for (int i = 0; i < 3 && rc == NORI_OK; i++) {
        snprintf(key, sizeof key, "ev%d", i);
        rc = nori_backend_set(b, key, big_new, 2000, 0);
    }
    return rc;
}
static int c_evicting(nori_backend *b, bool done)
{
    nori_backend_stats st;
    nori_backend_get_stats(b, &st);
    if (st.entries > 12)
        return 1;
    return done ? value_is(b, "ev2", big_new, 2000) : 0;
}

static void prep_full(nori_backend *b)
{
    prep_plain(b);
    fill_some(b, 12); /* 6 more than before, and past max_keys */
}

static void run_crash_case(const crash_case *cc, size_t max_keys, int *points)
{
    nori_backend *b = open_shm(max_keys, 1 << 20);
    assert_nori(nori_backend_set_max_value(b, 1 << 20), NORI_OK);
    for (long n = 1;; n++) {
        assert_nori(nori_backend_flush(b), NORI_OK);
        cc->prepare(b);
        fflush(stdout);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            nori__shm_crash_after(n);
            int rc = cc->write(b);
            nori__shm_crash_after(0);
            _exit(rc == NORI_OK ? 0 : 30);
        }
        int status = shm_test_wait(pid, 30000);
        if (status == -1)
            fail_msg("%s, crash point %ld: the child hung", cc->what, n);
        bool done = WIFEXITED(status);
        if (done && WEXITSTATUS(status) != 0)
            fail_msg("%s: the write failed in the child (%d)", cc->what, WEXITSTATUS(status));
        if (!done && !(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
            fail_msg("%s, crash point %ld: child status %d", cc->what, n, status);
        /* The audit takes every lock: the dead child's section is rolled
         * back first, then everything must agree. */
        int64_t held = nori__shm_audit(b);
        if (held < 0)
            fail_msg("%s, crash point %ld: the audit failed after the rollback", cc->what, n);
        if (cc->check(b, done) != 0)
            fail_msg("%s, crash point %ld: the key holds neither the old nor the new value",
                     cc->what, n);
        /* The other entries are untouched (no eviction in these cases). */
        for (int i = 0; i < 6 && max_keys > 12; i++) {
            char key[32], val[64];
            snprintf(key, sizeof key, "fill-%d", i);
            size_t len = shm_test_make_value(key, 0, 40, val, sizeof val);
            if (value_is(b, key, val, len) != 0)
                fail_msg("%s, crash point %ld: %s lost", cc->what, n, key);
        }
        if (done) {
            print_message("%s: %ld crash points, each rolled back\n", cc->what, n - 1);
            *points += (int)(n - 1);
            break;
        }
    }
    nori_backend_free(b);
    assert_nori(nori_shm_backend_unlink(shm_test_name), NORI_OK);
}

static void test_every_crash_point(void **state)
{
    (void)state;
    memset(big_old, 'o', sizeof big_old);
    for (size_t i = 0; i < sizeof big_new; i++)
        big_new[i] = (char)('a' + i % 26);
    const crash_case cases[] = {
        {"insert", prep_plain, w_insert, c_insert},
        {"rewrite in place", prep_plain, w_rewrite, c_rewrite},
        {"replace (new class)", prep_plain, w_grow, c_grow},
        {"replace a large value", prep_plain, w_large, c_large},
        {"delete", prep_plain, w_delete, c_delete},
        {"incr", prep_plain, w_incr, c_incr},
        {"atomic_update", prep_plain, w_update, c_incr},
        {"delete_prefix", prep_plain, w_prefix, c_prefix},
    };
    int points = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        run_crash_case(&cases[i], 100, &points);
    const crash_case evict = {"inserts that evict", prep_full, w_evicting, c_evicting};
    run_crash_case(&evict, 12, &points);
    nori_backend *b = open_shm(100, 1 << 20);
    nori_shm_stats ss;
    assert_nori(nori_shm_backend_get_stats(b, &ss), NORI_OK);
    print_message("%d crash points in all\n", points);
    nori_backend_free(b);
    assert_true(points > 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_crash_point, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
