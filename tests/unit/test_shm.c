// SPDX-License-Identifier: MIT
/*
 * The shared-memory backend in one process: names, creation and attachment
 * checks (owner, mode, layout version, truncation, corruption, symbolic
 * links), unlink, LRU order, both bounds, large values, expiry, the mapping's
 * size and the overhead per entry. Processes and crashes:
 * tests/integration/test_shm_procs.c and test_shm_crash.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "clock.h"
#include "shm/internal.h"
#include "shm/shm.h"
#include "test_support.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static _Atomic int64_t fake_now_ms = 1000000; /* the virtual clock (clock.h) */

static char name[64];

/* A fresh segment name per test. */
static int setup(void **state)
{
    (void)state;
    static int n;
    snprintf(name, sizeof name, "nori-test-shm-%ld-%d", (long)getpid(), n++);
    (void)nori_shm_backend_unlink(name);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    (void)nori_shm_backend_unlink(name);
    /* A killed creator's temporary file (the next creator would remove it
     * once a minute old). */
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -f /dev/shm/%s.tmp-*", name);
    if (system(cmd) != 0)
        print_message("could not remove %s's temporary files\n", name);
    nori__clock_override(NULL, NULL);
    return 0;
}

static nori_backend *new_shm(size_t max_keys, size_t max_bytes)
{
    nori_backend *b = NULL;
    assert_nori(nori__shm_backend_new_opts(name, max_keys, max_bytes, false, &b), NORI_OK);
    return b;
}

static void set_str(nori_backend *b, const char *key, const char *val, int64_t ttl)
{
    assert_nori(nori_backend_set(b, key, val, strlen(val), ttl), NORI_OK);
}

static void assert_value(nori_backend *b, const char *key, const char *expected)
{
    nori_buf out;
    assert_nori(nori_backend_get(b, key, &out), NORI_OK);
    assert_int_equal(out.len, strlen(expected));
    assert_string_equal(out.data, expected);
    nori_buf_free(&out);
}

static void assert_missing(nori_backend *b, const char *key)
{
    nori_buf out = {(char *)"sentinel", 8};
    assert_nori(nori_backend_get(b, key, &out), NORI_MISS);
    assert_null(out.data);
}

static uint64_t entries(nori_backend *b)
{
    nori_backend_stats st;
    assert_nori(nori_backend_get_stats(b, &st), NORI_OK);
    return st.entries;
}

static void path_of(char *out, size_t cap)
{
    snprintf(out, cap, "/dev/shm/%s", name);
}

static void assert_error_mentions(const char *what)
{
    if (strstr(nori_last_error(), what) == NULL)
        fail_msg("error '%s' does not mention '%s'", nori_last_error(), what);
}

/* ---- names ---- */

static void test_names(void **state)
{
    (void)state;
    nori_backend *b = NULL;
    assert_nori(nori_shm_backend_new(NULL, 10, 1 << 20, &b), NORI_EINVAL);
    assert_nori(nori_shm_backend_new("", 10, 1 << 20, &b), NORI_EINVAL);
    assert_error_mentions("empty");
    assert_nori(nori_shm_backend_new("a/b", 10, 1 << 20, &b), NORI_EINVAL);
    assert_error_mentions("'/'");
    assert_nori(nori_shm_backend_new("/abs", 10, 1 << 20, &b), NORI_EINVAL);
    assert_nori(nori_shm_backend_new("..", 10, 1 << 20, &b), NORI_EINVAL);
    assert_nori(nori_shm_backend_new(".", 10, 1 << 20, &b), NORI_EINVAL);
    assert_nori(nori_shm_backend_new("a\nb", 10, 1 << 20, &b), NORI_EINVAL);
    char longname[NORI_SHM_NAME_MAX + 2];
    memset(longname, 'n', sizeof longname);
    longname[NORI_SHM_NAME_MAX + 1] = '\0';
    assert_nori(nori_shm_backend_new(longname, 10, 1 << 20, &b), NORI_EINVAL);
    assert_error_mentions("the limit is 200");
    assert_null(b);
    assert_nori(nori_shm_backend_unlink("x/y"), NORI_EINVAL);
    /* Exactly at the limit: accepted. */
    longname[NORI_SHM_NAME_MAX] = '\0';
    (void)nori_shm_backend_unlink(longname);
    assert_nori(nori_shm_backend_new(longname, 10, 1 << 20, &b), NORI_OK);
    nori_backend_free(b);
    assert_nori(nori_shm_backend_unlink(longname), NORI_OK);
    assert_nori(nori_shm_backend_unlink(longname), NORI_MISS);
}

static void test_sizes_refused(void **state)
{
    (void)state;
    nori_backend *b = NULL;
    assert_nori(nori_shm_backend_new(name, 0, 1 << 20, &b), NORI_EINVAL);
    assert_nori(nori_shm_backend_new(name, 10, 1000, &b), NORI_EINVAL);
    assert_error_mentions("CACHE_MAX_BYTES");
    assert_nori(nori_shm_backend_new(name, 10, (size_t)NORI_SHM_MAX_BYTES + 1, &b), NORI_EINVAL);
    assert_nori(nori_shm_backend_new(name, SHM_MAX_KEYS + 1, 1 << 20, &b), NORI_EINVAL);
    assert_null(b);
    assert_int_equal(nori_shm_segment_bytes(0, 1 << 20), 0);
    struct stat st;
    char path[128];
    path_of(path, sizeof path);
    assert_int_equal(stat(path, &st), -1); /* nothing created */
}

/* ---- creation and attachment ---- */

static void test_created_0600_owned_and_sized(void **state)
{
    (void)state;
    nori_backend *b = new_shm(10000, 256 << 20);
    struct stat st;
    char path[128];
    path_of(path, sizeof path);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_uid, geteuid());
    assert_int_equal((size_t)st.st_size, nori_shm_segment_bytes(10000, 256 << 20));
    /* The mapping: the arena plus a fixed part documented in cache.h. */
    size_t fixed = (size_t)st.st_size - ((size_t)256 << 20);
    print_message("mapping of 10000 keys, 256 MiB: %zu bytes = arena + %zu\n",
                  (size_t)st.st_size, fixed);
    assert_true(fixed < 2 << 20);
    nori_shm_stats ss;
    assert_nori(nori_shm_backend_get_stats(b, &ss), NORI_OK);
    assert_int_equal(ss.segment_bytes, st.st_size);
    assert_int_equal(ss.creator_pid, getpid());
    assert_string_equal(nori_backend_kind(b), "shm");
    assert_nori(nori_backend_verify(b), NORI_OK);
    char *d = NULL;
    assert_nori(nori_backend_describe(b, &d), NORI_OK);
    assert_non_null(strstr(d, "mode: shm"));
    free(d);
    nori_backend_free(b);
}

static void test_attach_sees_same_data(void **state)
{
    (void)state;
    nori_backend *a = new_shm(100, 1 << 20);
    nori_backend *b = new_shm(100, 1 << 20);
    set_str(a, "k", "from a", 0);
    assert_value(b, "k", "from a");
    set_str(b, "k", "from b", 0);
    assert_value(a, "k", "from b");
    nori_shm_stats sa, sb;
    nori_shm_backend_get_stats(a, &sa);
    nori_shm_backend_get_stats(b, &sb);
    assert_int_equal(sa.generation, sb.generation);
    /* Other sizes: refused, naming both. */
    nori_backend *c = NULL;
    assert_nori(nori_shm_backend_new(name, 101, 1 << 20, &c), NORI_EINVAL);
    assert_error_mentions("max_keys 100");
    assert_null(c);
    nori_backend_free(a);
    nori_backend_free(b);
}

static void test_unlink_keeps_mapped_users(void **state)
{
    (void)state;
    nori_backend *a = new_shm(100, 1 << 20);
    set_str(a, "k", "v", 0);
    assert_nori(nori_shm_backend_unlink(name), NORI_OK);
    assert_nori(nori_shm_backend_unlink(name), NORI_MISS);
    assert_value(a, "k", "v"); /* still mapped */
    set_str(a, "k2", "v2", 0);
    nori_backend *b = new_shm(100, 1 << 20); /* a new segment */
    assert_missing(b, "k");
    nori_shm_stats sa, sb;
    nori_shm_backend_get_stats(a, &sa);
    nori_shm_backend_get_stats(b, &sb);
    assert_int_not_equal(sa.generation, sb.generation);
    nori_backend_free(a);
    nori_backend_free(b);
}

static void test_other_owner_refused(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        print_message("skipped: needs root to give a segment to another user\n");
        skip();
    }
    nori_backend *a = new_shm(100, 1 << 20);
    nori_backend_free(a);
    char path[128];
    path_of(path, sizeof path);
    assert_int_equal(chown(path, 65534, 65534), 0);
    nori_backend *b = NULL;
    assert_nori(nori_shm_backend_new(name, 100, 1 << 20, &b), NORI_EINVAL);
    assert_error_mentions("belongs to uid 65534");
    assert_error_mentions(name);
    assert_null(b);
}

static void test_mode_refused(void **state)
{
    (void)state;
    nori_backend_free(new_shm(100, 1 << 20));
    char path[128];
    path_of(path, sizeof path);
    assert_int_equal(chmod(path, 0644), 0);
    nori_backend *b = NULL;
    assert_nori(nori_shm_backend_new(name, 100, 1 << 20, &b), NORI_EINVAL);
    assert_error_mentions("mode 0644");
    assert_null(b);
}

static void test_symlink_refused(void **state)
{
    (void)state;
    char path[128], target[160];
    path_of(path, sizeof path);
    snprintf(target, sizeof target, "%s.target", path);
    int fd = open(target, O_CREAT | O_RDWR, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(symlink(target, path), 0);
    nori_backend *b = NULL;
    assert_nori(nori_shm_backend_new(name, 100, 1 << 20, &b), NORI_EINVAL);
    assert_error_mentions("symbolic link");
    unlink(target);
}

static void test_truncated_refused(void **state)
{
    (void)state;
    nori_backend_free(new_shm(100, 1 << 20));
    char path[128];
    path_of(path, sizeof path);
    assert_int_equal(truncate(path, 8192), 0);
    nori_backend *b = NULL;
    assert_nori(nori_shm_backend_new(name, 100, 1 << 20, &b), NORI_EINVAL);
    assert_error_mentions("truncated");
    assert_int_equal(truncate(path, 100), 0);
    assert_nori(nori_shm_backend_new(name, 100, 1 << 20, &b), NORI_EINVAL);
    assert_error_mentions("too short");
    assert_int_equal(truncate(path, 0), 0);
    assert_nori(nori_shm_backend_new(name, 100, 1 << 20, &b), NORI_EINVAL);
    assert_null(b);
}

/* Rewrites the segment's header through a callback, then attaches. */
static void forge(void (*change)(unsigned char *h), bool seal, const char *expect)
{
    nori_backend_free(new_shm(100, 1 << 20));
    char path[128];
    path_of(path, sizeof path);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char h[512];
    size_t hb = nori__shm_header_bytes();
    assert_true(hb <= sizeof h);
    assert_int_equal(pread(fd, h, hb, 0), (ssize_t)hb);
    change(h);
    if (seal)
        nori__shm_header_seal(h);
    assert_int_equal(pwrite(fd, h, hb, 0), (ssize_t)hb);
    close(fd);
    nori_backend *b = NULL;
    assert_nori(nori_shm_backend_new(name, 100, 1 << 20, &b), NORI_EINVAL);
    assert_error_mentions(expect);
    assert_error_mentions(name);
    assert_null(b);
    assert_nori(nori_shm_backend_unlink(name), NORI_OK);
}

static void flip_max_keys(unsigned char *h)
{
    h[offsetof(shm_header, max_keys)] ^= 1;
}

static void other_version(unsigned char *h)
{
    uint32_t v = 2;
    memcpy(h + offsetof(shm_header, layout_version), &v, sizeof v);
}

static void bad_magic(unsigned char *h)
{
    memcpy(h, "redis!!!", 8);
}

static void moved_arena(unsigned char *h)
{
    uint64_t off;
    memcpy(&off, h + offsetof(shm_header, off_arena), sizeof off);
    off += 4096;
    memcpy(h + offsetof(shm_header, off_arena), &off, sizeof off);
}

static void other_uid(unsigned char *h)
{
    uint32_t uid = 4242;
    memcpy(h + offsetof(shm_header, owner_uid), &uid, sizeof uid);
}

static void test_corrupted_headers_refused(void **state)
{
    (void)state;
    forge(flip_max_keys, false, "checksum");
    forge(other_version, true, "layout version 2");
    forge(bad_magic, false, "not a nori-cache segment");
    forge(moved_arena, true, "layout does not match");
    forge(other_uid, true, "uid 4242");
}

/* A creator that died before publishing left a temporary file: the next
 * creator removes it once it is old, and never maps it. */
static void test_dead_creator_leftover(void **state)
{
    (void)state;
    char tmp[160];
    snprintf(tmp, sizeof tmp, "/dev/shm/%s.tmp-99999-0123456789abcdef", name);
    int fd = open(tmp, O_CREAT | O_RDWR, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 65536), 0);
    close(fd);
    struct timespec old[2] = {{time(NULL) - 3600, 0}, {time(NULL) - 3600, 0}};
    assert_int_equal(utimensat(AT_FDCWD, tmp, old, 0), 0);
    nori_backend *b = new_shm(100, 1 << 20);
    struct stat st;
    assert_int_equal(stat(tmp, &st), -1);
    assert_int_equal(errno, ENOENT);
    set_str(b, "k", "v", 0);
    nori_backend_free(b);
}

static int create_paused(void *arg)
{
    (void)arg;
    nori__shm_pause_at("create");
    nori_backend *b = NULL;
    int rc = nori__shm_backend_new_opts(name, 100, 1 << 20, false, &b);
    if (rc != NORI_OK)
        return 1;
    /* Resumed after another process published the name: it attached that
     * one (its own was never published). */
    rc = nori_backend_set(b, "from-child", "c", 1, 0);
    nori_backend_free(b);
    return rc == NORI_OK ? 0 : 2;
}

/* A creator stopped (then killed, or resumed) with its segment built but
 * not published: nobody waits for it or maps its half: another process
 * creates and publishes its own; the resumed one attaches that one. */
static void test_creator_stopped_mid_creation(void **state)
{
    (void)state;
    for (int resume = 0; resume <= 1; resume++) {
        fflush(stdout);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            _exit(create_paused(NULL));
        nori_test_wait_stopped((int)pid);
        nori_backend *b = new_shm(100, 1 << 20); /* at once: no wait */
        set_str(b, "from-parent", "p", 0);
        if (resume) {
            assert_int_equal(kill(pid, SIGCONT), 0);
        } else {
            assert_int_equal(kill(pid, SIGKILL), 0);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (resume) {
            assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
            assert_value(b, "from-child", "c");
        } else {
            assert_true(WIFSIGNALED(status));
        }
        assert_int_equal(nori__shm_audit(b), resume ? 2 : 1);
        nori_backend_free(b);
        assert_nori(nori_shm_backend_unlink(name), NORI_OK);
    }
}

/* Processes that create the same name at once all end on one segment. */
static void test_create_race(void **state)
{
    (void)state;
    enum { N = 6 };
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            char c;
            close(go[1]);
            if (read(go[0], &c, 1) != 0)
                _exit(3);
            nori_backend *b = NULL;
            if (nori__shm_backend_new_opts(name, 100, 1 << 20, false, &b) != NORI_OK)
                _exit(1);
            char key[16];
            snprintf(key, sizeof key, "k%d", i);
            int rc = nori_backend_set(b, key, "v", 1, 0);
            nori_backend_free(b);
            _exit(rc == NORI_OK ? 0 : 2);
        }
    }
    close(go[0]);
    close(go[1]); /* all start now */
    for (int i = 0; i < N; i++) {
        int status;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    nori_backend *b = new_shm(100, 1 << 20);
    assert_int_equal(entries(b), N);
    assert_int_equal(nori__shm_audit(b), N);
    nori_backend_free(b);
}

/* ---- LRU ---- */

static void test_lru_evicts_oldest_and_reads_refresh(void **state)
{
    (void)state;
    nori_backend *b = new_shm(3, 1 << 20);
    set_str(b, "a", "1", 0);
    set_str(b, "b", "2", 0);
    set_str(b, "c", "3", 0);
    assert_value(b, "a", "1"); /* a refreshed: b is the oldest */
    set_str(b, "d", "4", 0);
    assert_missing(b, "b");
    assert_value(b, "a", "1");
    assert_value(b, "c", "3");
    assert_value(b, "d", "4");
    /* Read order a, c, d; then c's update refreshes it: a is the oldest. */
    set_str(b, "c", "3b", 0);
    set_str(b, "e", "5", 0);
    assert_missing(b, "a");
    assert_value(b, "d", "4");
    assert_value(b, "c", "3b");
    assert_int_equal(entries(b), 3);
    nori_backend_stats st;
    assert_nori(nori_backend_get_stats(b, &st), NORI_OK);
    assert_int_equal(st.evictions, 2);
    assert_int_equal(nori__shm_audit(b), 3);
    nori_backend_free(b);
}

static void test_lru_exact_across_shards(void **state)
{
    (void)state;
    enum { N = 200, NEW = 100 };
    nori_backend *b = new_shm(N, 1 << 20);
    char key[32];
    int order[N];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        set_str(b, key, key, 0);
        order[i] = i;
    }
    unsigned seed = 12345;
    for (int i = N - 1; i > 0; i--) {
        int j = (int)(rand_r(&seed) % (unsigned)(i + 1));
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "key-%d", order[i]);
        assert_value(b, key, key);
    }
    for (int i = 0; i < NEW; i++) {
        snprintf(key, sizeof key, "new-%d", i);
        set_str(b, key, "v", 0);
        assert_int_equal(nori__shm_audit(b), N);
    }
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "key-%d", order[i]);
        if (i < NEW)
            assert_missing(b, key);
        else
            assert_value(b, key, key);
    }
    nori_backend_free(b);
}

static int append_bang(const nori_buf *cur, nori_buf *next, void *ud)
{
    (void)ud;
    size_t n = cur != NULL ? cur->len : 0;
    next->data = malloc(n + 1);
    if (n > 0)
        memcpy(next->data, cur->data, n);
    next->data[n] = '!';
    next->len = n + 1;
    return 0;
}

static void test_lru_writes_refresh(void **state)
{
    (void)state;
    nori_backend *b = new_shm(3, 1 << 20);
    int64_t v;
    set_str(b, "x", "1", 0);
    set_str(b, "y", "1", 0);
    set_str(b, "z", "1", 0);
    assert_nori(nori_backend_incr(b, "x", 0, &v), NORI_OK); /* y oldest */
    assert_nori(nori_backend_atomic_update(b, "y", append_bang, NULL, 0, NULL), NORI_OK);
    set_str(b, "w", "1", 0); /* z was the oldest */
    assert_missing(b, "z");
    assert_value(b, "x", "2");
    assert_value(b, "y", "1!");
    nori_backend_free(b);
}

/* ---- bounds, sizes, values ---- */

static void test_byte_bound_and_large_values(void **state)
{
    (void)state;
    nori_backend *b = new_shm(1000, 1 << 20);
    assert_nori(nori_backend_set_max_value(b, 4 << 20), NORI_OK);
    size_t n = 300 * 1024;
    unsigned char *big = malloc(2 << 20);
    for (size_t i = 0; i < (2 << 20); i++)
        big[i] = (unsigned char)(i * 7 + 3);
    char key[16];
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "big%d", i);
        assert_nori(nori_backend_set(b, key, big + i, n, 0), NORI_OK);
        nori_backend_stats st;
        nori_backend_get_stats(b, &st);
        assert_true(st.bytes <= (1 << 20));
        assert_true(nori__shm_audit(b) >= 0);
    }
    /* Only the last three fit: 3 x (300 KiB + a chunk) <= 1 MiB < 4 x. */
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "big%d", i);
        nori_buf out;
        int rc = nori_backend_get(b, key, &out);
        if (i < 7) {
            assert_int_equal(rc, NORI_MISS);
            continue;
        }
        assert_nori(rc, NORI_OK);
        assert_int_equal(out.len, n);
        assert_memory_equal(out.data, big + i, n);
        nori_buf_free(&out);
    }
    /* Larger than the bound alone: ETOOBIG, nothing written. */
    assert_nori(nori_backend_set(b, "huge", big, (size_t)(2 << 20) - 100, 0), NORI_ETOOBIG);
    assert_error_mentions("CACHE_MAX_BYTES");
    assert_missing(b, "huge");
    free(big);
    nori_backend_free(b);
}

static void test_get_into(void **state)
{
    (void)state;
    nori_backend *b = new_shm(10, 1 << 20);
    set_str(b, "k", "hello", 0);
    char buf[8];
    size_t len = 99;
    assert_nori(nori_backend_get_into(b, "k", buf, sizeof buf, &len), NORI_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "hello", 5);
    assert_nori(nori_backend_get_into(b, "k", buf, 3, &len), NORI_ETOOBIG);
    assert_int_equal(len, 5);
    assert_nori(nori_backend_get_into(b, "nope", buf, sizeof buf, &len), NORI_MISS);
    assert_int_equal(len, 0);
    nori_backend_free(b);
}

/* Overhead per entry: fill max_keys with 16-byte keys and 64-byte values;
 * everything the segment needs beyond the raw bytes, per entry. */
static void test_overhead_per_entry(void **state)
{
    (void)state;
    enum { N = 100000 };
    size_t max_bytes = (size_t)N * 128;
    nori_backend *b = new_shm(N, max_bytes);
    char key[17], val[64];
    memset(val, 'v', sizeof val);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "key:%011d", i);
        assert_nori(nori_backend_set(b, key, val, sizeof val, 0), NORI_OK);
    }
    assert_int_equal(entries(b), N);
    nori_shm_stats ss;
    assert_nori(nori_shm_backend_get_stats(b, &ss), NORI_OK);
    uint64_t used_pages = ss.max_bytes / SHM_PAGE + SHM_NCLASSES - ss.free_pages;
    uint64_t fixed = ss.segment_bytes - (ss.max_bytes / SHM_PAGE + SHM_NCLASSES) * SHM_PAGE;
    double per = ((double)used_pages * SHM_PAGE + (double)fixed) / N - 80.0;
    print_message("overhead: %.1f bytes per entry (16-byte keys, 64-byte values, %d entries; "
                  "pages used %" PRIu64 ", fixed part %" PRIu64 " bytes)\n",
                  per, N, used_pages, fixed);
    assert_true(per <= 64.0);
    assert_int_equal(nori__shm_audit(b), N);
    nori_backend_free(b);
}

static void test_max_keys_every_moment(void **state)
{
    (void)state;
    nori_backend *b = new_shm(5, 1 << 20);
    char key[16];
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "k%d", i);
        set_str(b, key, key, 0);
        assert_int_equal(nori__shm_audit(b), i < 5 ? i + 1 : 5);
    }
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "k%d", i);
        if (i < 45)
            assert_missing(b, key);
        else
            assert_value(b, key, key);
    }
    nori_backend_free(b);
}

/* ---- expiry ---- */

static void test_expiry_lazy_and_swept(void **state)
{
    (void)state;
    nori__clock_override(&fake_now_ms, &fake_now_ms);
    nori_backend *b = new_shm(100, 1 << 20);
    set_str(b, "short", "x", 1);
    set_str(b, "forever", "y", 0);
    for (int i = 0; i < 20; i++) {
        char key[16];
        snprintf(key, sizeof key, "sweep%d", i);
        set_str(b, key, "z", 2);
    }
    fake_now_ms += 999;
    assert_value(b, "short", "x"); /* never early */
    fake_now_ms += 1;
    assert_missing(b, "short");
    fake_now_ms += 1000;
    assert_int_equal(nori__shm_sweep_now(b), 20);
    assert_int_equal(entries(b), 1);
    nori_backend_stats st;
    nori_backend_get_stats(b, &st);
    assert_int_equal(st.expired, 21);
    assert_int_equal(nori__shm_audit(b), 1);
    nori_backend_free(b);
}

/* The expiry thread of a handle removes what nobody reads. */
static void test_sweeper_thread(void **state)
{
    (void)state;
    nori_backend *b = NULL;
    assert_nori(nori_shm_backend_new(name, 1000, 1 << 20, &b), NORI_OK);
    for (int i = 0; i < 200; i++) {
        char key[16];
        snprintf(key, sizeof key, "t%d", i);
        set_str(b, key, "v", 1);
    }
    /* Bounded wait: the thread runs every 100 ms; allow 10 s on a loaded
     * machine. */
    for (int i = 0; i < 1000 && entries(b) > 0; i++) {
        struct timespec d = {0, 10000000};
        nanosleep(&d, NULL);
    }
    assert_int_equal(entries(b), 0);
    nori_backend_free(b);
}

static void test_lock_timeout_setting(void **state)
{
    (void)state;
    nori_backend *b = new_shm(10, 1 << 20);
    assert_nori(nori_shm_backend_set_lock_timeout(b, 0), NORI_EINVAL);
    assert_nori(nori_shm_backend_set_lock_timeout(b, 3600001), NORI_EINVAL);
    assert_nori(nori_shm_backend_set_lock_timeout(b, 50), NORI_OK);
    nori_backend *m = NULL;
    assert_nori(nori_memory_backend_new(10, &m), NORI_OK);
    assert_nori(nori_shm_backend_set_lock_timeout(m, 50), NORI_EINVAL);
    nori_shm_stats ss;
    assert_nori(nori_shm_backend_get_stats(m, &ss), NORI_EINVAL);
    nori_backend_free(m);
    nori_backend_free(b);
}

/* nori_metrics_write: the segment's series next to the common ones. */
static void test_metrics(void **state)
{
    (void)state;
    nori_backend *b = new_shm(10, 1 << 20);
    set_str(b, "k", "v", 0);
    nori_metrics_sources src = {b, NULL, NULL, 0};
    nori_buf out;
    assert_nori(nori_metrics_write(&src, &out), NORI_OK);
    static const char *const want[] = {
        "nori_backend_info{kind=\"shm\"} 1", "nori_cache_entries 1", "nori_cache_max_keys 10",
        "nori_cache_max_bytes 1048576",         "nori_shm_repairs_total 0",
        "nori_shm_owner_died_total 0",          "nori_shm_lock_timeouts_total 0",
        "nori_shm_free_pages ",                 "nori_shm_segment_bytes "};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (strstr(out.data, want[i]) == NULL)
            fail_msg("no '%s' in:\n%s", want[i], out.data);
    nori_buf_free(&out);
    nori_backend_free(b);
}

static int reenter(const nori_buf *cur, nori_buf *next, void *ud)
{
    (void)cur;
    (void)next;
    nori_backend *b = ud;
    nori_buf v;
    return nori_backend_get(b, "k", &v) == NORI_EINVAL ? 1 : 0;
}

static void test_reentry_refused(void **state)
{
    (void)state;
    nori_backend *b = new_shm(10, 1 << 20);
    nori_backend *same = new_shm(10, 1 << 20); /* another handle, same segment */
    assert_nori(nori_backend_atomic_update(b, "k", reenter, b, 0, NULL), NORI_EABORT);
    assert_nori(nori_backend_atomic_update(b, "k", reenter, same, 0, NULL), NORI_EABORT);
    nori_backend_free(same);
    nori_backend_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sizes_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_created_0600_owned_and_sized, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_sees_same_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unlink_keeps_mapped_users, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_owner_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mode_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupted_headers_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_creator_leftover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_creator_stopped_mid_creation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lru_evicts_oldest_and_reads_refresh, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lru_exact_across_shards, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lru_writes_refresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_byte_bound_and_large_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_into, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overhead_per_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_keys_every_moment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_lazy_and_swept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweeper_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_timeout_setting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reentry_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
