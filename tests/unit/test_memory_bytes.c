// SPDX-License-Identifier: MIT
/*
 * The memory backend's byte bound (CACHE_MAX_BYTES): LRU order by bytes for
 * a single thread, values too big for the bound, lowering the bound, the
 * default, the environment variable and its validation, and the stats;
 * the size of the block an entry takes after an overwrite.
 * Also the sweeper's cycle on an injected clock: it removes expired entries
 * and never a live one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "clock.h"
#include "memory/memory.h"
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static _Atomic int64_t fake_now_ms = 1000000; /* the virtual clock (clock.h) */

static nori_backend *new_mem(size_t max_keys, size_t max_bytes)
{
    nori_backend *b = NULL;
    assert_nori(nori__memory_backend_new_opts(max_keys, false, &b), NORI_OK);
    assert_nori(nori_memory_backend_set_max_bytes(b, max_bytes), NORI_OK);
    return b;
}

static void set_n(nori_backend *b, const char *key, size_t n, char fill)
{
    char *v = malloc(n + 1);
    assert_non_null(v);
    memset(v, fill, n);
    assert_nori(nori_backend_set(b, key, v, n, 0), NORI_OK);
    free(v);
}

static int has(nori_backend *b, const char *key)
{
    nori_buf out;
    int rc = nori_backend_get(b, key, &out);
    nori_buf_free(&out);
    assert_true(rc == NORI_OK || rc == NORI_MISS);
    return rc == NORI_OK;
}

static uint64_t stat_bytes(nori_backend *b)
{
    nori_backend_stats st;
    assert_nori(nori_backend_get_stats(b, &st), NORI_OK);
    return st.bytes;
}

static void test_entry_bytes_formula(void **state)
{
    (void)state;
    /* Key and value, the header, NULs, rounded to a size class, + 16. */
    size_t small = nori_memory_entry_bytes(1, 1, 0);
    assert_true(small >= 1 + 1 + 16 && small <= 96);
    assert_true(nori_memory_entry_bytes(1, 1, 1) >= small);
    size_t prev = 0;
    for (size_t v = 0; v < 70000; v += 97) {
        size_t n = nori_memory_entry_bytes(10, v, 0);
        assert_true(n >= v + 10 && n >= prev);
        assert_true(n <= (v + 10 + 64) * 5 / 4 + 32); /* a size class wastes at most a quarter */
        prev = n;
    }
}

static void test_lru_by_bytes(void **state)
{
    (void)state;
    size_t one = nori_memory_entry_bytes(1, 100, 0);
    nori_backend *b = new_mem(100, 3 * one); /* room for three 100-byte values */
    set_n(b, "a", 100, 'a');
    set_n(b, "b", 100, 'b');
    set_n(b, "c", 100, 'c');
    assert_int_equal(stat_bytes(b), 3 * one);
    assert_true(has(b, "a")); /* a is now the most recently used */
    set_n(b, "d", 100, 'd');   /* evicts b, the least recently used */
    assert_false(has(b, "b"));
    assert_true(has(b, "c") && has(b, "d") && has(b, "a"));
    /* A value twice as large needs two places' bytes: c and d go (oldest first). */
    set_n(b, "e", 2 * 100 + 40, 'e');
    assert_false(has(b, "c"));
    assert_false(has(b, "d"));
    assert_true(has(b, "a") && has(b, "e"));
    /* Growing an existing value evicts others, never itself. */
    set_n(b, "a", 2 * 100 + 40, 'A');
    assert_false(has(b, "e"));
    assert_true(has(b, "a"));
    size_t bytes = 0;
    assert_int_equal(nori__memory_audit_bytes(b, &bytes), 1);
    assert_int_equal(bytes, stat_bytes(b));
    assert_true(bytes <= 3 * one);
    nori_backend_free(b);
}

static int grow_to_2000(const nori_buf *cur, nori_buf *next, void *ud)
{
    (void)cur;
    (void)ud;
    next->data = calloc(1, 2000);
    next->len = 2000;
    return next->data == NULL;
}

static void test_too_big_for_the_bound(void **state)
{
    (void)state;
    nori_backend *b = new_mem(100, 1000);
    set_n(b, "keep", 100, 'k');
    set_n(b, "x", 10, 'x');
    uint64_t before = stat_bytes(b);
    char big[2000] = {0};
    assert_nori(nori_backend_set(b, "new", big, sizeof big, 0), NORI_ETOOBIG);
    assert_non_null(strstr(nori_last_error(), "CACHE_MAX_BYTES"));
    assert_nori(nori_backend_set(b, "x", big, sizeof big, 0), NORI_ETOOBIG);
    assert_nori(nori_backend_atomic_update(b, "x", grow_to_2000, NULL, 0, NULL), NORI_ETOOBIG);
    assert_nori(nori_backend_atomic_update(b, "y", grow_to_2000, NULL, 0, NULL), NORI_ETOOBIG);
    /* Nothing was written, nothing was evicted for it. */
    assert_false(has(b, "new"));
    assert_false(has(b, "y"));
    assert_true(has(b, "keep"));
    nori_buf out;
    assert_nori(nori_backend_get(b, "x", &out), NORI_OK);
    assert_int_equal(out.len, 10);
    nori_buf_free(&out);
    assert_int_equal(stat_bytes(b), before);
    assert_int_equal(nori__memory_audit(b), 2);
    nori_backend_free(b);
}

static void test_lowering_and_removing_the_bound(void **state)
{
    (void)state;
    nori_backend *b = new_mem(1000, 0); /* no byte bound */
    char key[16];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "k%d", i);
        set_n(b, key, 1000, 'v');
    }
    nori_backend_stats st;
    assert_nori(nori_backend_get_stats(b, &st), NORI_OK);
    assert_int_equal(st.entries, 100);
    assert_int_equal(st.max_bytes, 0);
    size_t one = nori_memory_entry_bytes(2, 1000, 0);
    assert_nori(nori_memory_backend_set_max_bytes(b, 10 * one + 1), NORI_OK);
    assert_nori(nori_backend_get_stats(b, &st), NORI_OK);
    assert_int_equal(st.max_bytes, 10 * one + 1);
    assert_true(st.bytes <= 10 * one + 1);
    assert_int_equal(st.entries, 10);
    assert_true(has(b, "k99") && has(b, "k90"));
    assert_false(has(b, "k89")); /* the oldest went first */
    assert_int_equal(nori_memory_backend_max_bytes(b), 10 * one + 1);
    nori_backend_free(b);
}

static void test_default_and_other_backends(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori_memory_backend_new(10, &b), NORI_OK);
    assert_int_equal(nori_memory_backend_max_bytes(b), NORI_DEFAULT_MAX_BYTES);
    nori_backend_stats st;
    assert_nori(nori_backend_get_stats(b, &st), NORI_OK);
    assert_int_equal(st.max_bytes, NORI_DEFAULT_MAX_BYTES);
    assert_int_equal(st.bytes, 0);
    nori_backend_free(b);
    nori_backend *r;
    assert_nori(nori_redis_backend_new("redis://127.0.0.1:1", &r), NORI_OK); /* lazy */
    assert_nori(nori_memory_backend_set_max_bytes(r, 100), NORI_EINVAL);
    assert_int_equal(nori_memory_backend_max_bytes(r), 0);
    nori_backend_free(r);
    assert_nori(nori_memory_backend_set_max_bytes(NULL, 100), NORI_EINVAL);
}

static void test_env_variable(void **state)
{
    (void)state;
    char *dir = nori_test_mkdtemp();
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0); /* no .env here */
    unsetenv("CACHE_BACKEND");
    nori_backend *b;
    setenv("CACHE_MAX_BYTES", "123456", 1);
    assert_nori(nori_backend_from_env(&b), NORI_OK);
    assert_int_equal(nori_memory_backend_max_bytes(b), 123456);
    nori_backend_free(b);
    setenv("CACHE_MAX_BYTES", "0", 1);
    assert_nori(nori_backend_from_env(&b), NORI_OK);
    assert_int_equal(nori_memory_backend_max_bytes(b), 0);
    nori_backend_free(b);
    const char *bad[] = {"", "-1", "12x", " 5", "1099511627777", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        setenv("CACHE_MAX_BYTES", bad[i], 1);
        b = NULL;
        assert_nori(nori_backend_from_env(&b), NORI_EINVAL);
        assert_null(b);
        const char *msg = nori_last_error();
        char want[64];
        snprintf(want, sizeof want, "CACHE_MAX_BYTES='%s'", bad[i]);
        if (strstr(msg, want) == NULL || strstr(msg, "environment") == NULL)
            fail_msg("message for %s: %s", bad[i], msg);
    }
    unsetenv("CACHE_MAX_BYTES");
    nori_test_write_file(".env", "CACHE_MAX_BYTES=abc\n");
    assert_nori(nori_backend_from_env(&b), NORI_EINVAL);
    assert_non_null(strstr(nori_last_error(), "CACHE_MAX_BYTES='abc' (from .env)"));
    nori_test_write_file(".env", "CACHE_MAX_BYTES=4096\n");
    assert_nori(nori_backend_from_env(&b), NORI_OK);
    assert_int_equal(nori_memory_backend_max_bytes(b), 4096);
    nori_backend_free(b);
    assert_int_equal(chdir(cwd), 0);
    nori_test_rmtree(dir);
    free(dir);
}

/* Entries of 16 KiB and more have pages of their own: the same semantics. */
static void test_large_entries(void **state)
{
    (void)state;
    nori_backend *b = new_mem(1000, 0);
    char key[16];
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof key, "big%d", i);
        set_n(b, key, 16 * 1024 - 60 + (size_t)i * 3000, (char)('a' + i));
    }
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof key, "big%d", i);
        nori_buf out;
        assert_nori(nori_backend_get(b, key, &out), NORI_OK);
        assert_int_equal(out.len, 16 * 1024 - 60 + (size_t)i * 3000);
        assert_int_equal(out.data[out.len - 1], 'a' + i);
        assert_int_equal(out.data[out.len], '\0');
        nori_buf_free(&out);
        if (i % 2 == 0)
            set_n(b, key, 5, 's'); /* large -> small */
        else
            assert_nori(nori_backend_delete(b, key), NORI_OK);
    }
    size_t bytes = 0, want = 0;
    for (int i = 0; i < 20; i += 2)
        want += nori_memory_entry_bytes(i < 10 ? 4 : 5, 5, 0);
    assert_int_equal(nori__memory_audit_bytes(b, &bytes), 10);
    assert_int_equal(bytes, want);
    set_n(b, "big0", 40000, 'z');
    assert_nori(nori_backend_flush(b), NORI_OK);
    assert_int_equal(nori__memory_audit(b), 0);
    assert_int_equal(stat_bytes(b), 0);
    nori_backend_free(b);
}

/* ---- the sweeper's cycle, on the injected clock ---- */

static void test_sweep_removes_expired_never_live(void **state)
{
    (void)state;
    nori__clock_override(&fake_now_ms, &fake_now_ms);
    nori_backend *b = new_mem(100000, 0);
    char key[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(key, sizeof key, "short:%d", i);
        assert_nori(nori_backend_set(b, key, "v", 1, 10), NORI_OK);
        snprintf(key, sizeof key, "long:%d", i);
        assert_nori(nori_backend_set(b, key, "v", 1, 3600), NORI_OK);
        snprintf(key, sizeof key, "forever:%d", i);
        assert_nori(nori_backend_set(b, key, "v", 1, 0), NORI_OK);
    }
    fake_now_ms += 9999; /* one millisecond before the short ones expire */
    assert_int_equal(nori__memory_sweep_now(b), 0);
    fake_now_ms += 1;
    assert_int_equal(nori__memory_sweep_now(b), 3000);
    nori_backend_stats st;
    assert_nori(nori_backend_get_stats(b, &st), NORI_OK);
    assert_int_equal(st.entries, 6000);
    assert_int_equal(st.expired, 3000);
    assert_int_equal(st.hits, 0); /* no read was needed */
    for (int i = 0; i < 3000; i++) {
        snprintf(key, sizeof key, "long:%d", i);
        assert_true(has(b, key));
        snprintf(key, sizeof key, "forever:%d", i);
        assert_true(has(b, key));
    }
    assert_int_equal(nori__memory_audit(b), 6000);
    nori_backend_free(b);
    nori__clock_override(NULL, NULL);
}

/* A small overwrite does not keep a much larger block: each write gets an
 * entry of its own size (entries are immutable once linked). */
static void test_small_overwrite_releases_large_block(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori_memory_backend_new(10, &b), NORI_OK);
    size_t big = 1024 * 1024;
    char *val = calloc(1, big);
    assert_non_null(val);
    assert_nori(nori_backend_set(b, "k", val, big, 0), NORI_OK);
    free(val);
    assert_true(nori__memory_block_size(b, "k") >= big);
    assert_nori(nori_backend_set(b, "k", "eleven byte", 11, 0), NORI_OK);
    size_t block = nori__memory_block_size(b, "k");
    print_message("block after the small overwrite: %zu bytes\n", block);
    assert_true(block > 0 && block < 256);
    /* A same-sized overwrite gets a block of the same size (entries are
     * immutable once linked: lock-free readers may still copy the old one). */
    assert_nori(nori_backend_set(b, "k", "ELEVEN BYTE", 11, 0), NORI_OK);
    assert_int_equal(nori__memory_block_size(b, "k"), block);
    nori_buf out;
    assert_nori(nori_backend_get(b, "k", &out), NORI_OK);
    assert_string_equal(out.data, "ELEVEN BYTE");
    nori_buf_free(&out);
    nori_backend_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entry_bytes_formula),
        cmocka_unit_test(test_lru_by_bytes),
        cmocka_unit_test(test_too_big_for_the_bound),
        cmocka_unit_test(test_lowering_and_removing_the_bound),
        cmocka_unit_test(test_default_and_other_backends),
        cmocka_unit_test(test_env_variable),
        cmocka_unit_test(test_large_entries),
        cmocka_unit_test(test_small_overwrite_releases_large_block),
        cmocka_unit_test(test_sweep_removes_expired_never_live),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
