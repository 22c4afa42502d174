// SPDX-License-Identifier: MIT
/*
 * The memory backend and the shared argument checks: LRU order, TTL expiry
 * (on an injected clock, plus one real-time check), incr and atomic_update
 * semantics (the re-entry guard across backends included), limits, binary
 * values, get_into with a NULL buffer of capacity 0.
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
#include <time.h>
#include <unistd.h>

/* ---- an injectable clock ---- */

static _Atomic int64_t fake_now_ms = 1000000;

static void advance_seconds(int64_t s)
{
    nori__clock_advance(s * 1000);
}

static int setup_fake_clock(void **state)
{
    (void)state;
    nori__clock_override(&fake_now_ms, &fake_now_ms);
    return 0;
}

static int teardown_fake_clock(void **state)
{
    (void)state;
    nori__clock_override(NULL, NULL);
    return 0;
}

/* ---- helpers ---- */

static nori_backend *new_mem(size_t max_keys)
{
    nori_backend *b = NULL;
    /* No sweeper: these tests step the injected clock and count expiries. */
    assert_nori(nori__memory_backend_new_opts(max_keys, false, &b), NORI_OK);
    assert_non_null(b);
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
    assert_int_equal(out.len, 0);
}

static uint64_t entries(nori_backend *b)
{
    nori_backend_stats st;
    assert_nori(nori_backend_get_stats(b, &st), NORI_OK);
    return st.entries;
}

/* ---- basic operations ---- */

static void test_set_get_overwrite_delete(void **state)
{
    (void)state;
    nori_backend *b = new_mem(10);
    assert_string_equal(nori_backend_kind(b), "memory");
    assert_missing(b, "k");
    set_str(b, "k", "v1", 0);
    assert_value(b, "k", "v1");
    set_str(b, "k", "a longer second value", 0);
    assert_value(b, "k", "a longer second value");
    assert_int_equal(entries(b), 1);
    assert_nori(nori_backend_delete(b, "k"), NORI_OK);
    assert_missing(b, "k");
    assert_nori(nori_backend_delete(b, "k"), NORI_OK); /* missing key: OK */
    assert_nori(nori_backend_delete(b, "never-existed"), NORI_OK);
    assert_int_equal(entries(b), 0);
    nori_backend_free(b);
}

static void test_flush(void **state)
{
    (void)state;
    nori_backend *b = new_mem(100);
    char key[32];
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "key:%d", i);
        set_str(b, key, "x", 0);
    }
    assert_int_equal(entries(b), 50);
    assert_nori(nori_backend_flush(b), NORI_OK);
    assert_int_equal(entries(b), 0);
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "key:%d", i);
        assert_missing(b, key);
    }
    set_str(b, "after", "flush", 0); /* still usable */
    assert_value(b, "after", "flush");
    nori_backend_free(b);
}

static void test_binary_values(void **state)
{
    (void)state;
    nori_backend *b = new_mem(10);
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    assert_nori(nori_backend_set(b, "bin", all, sizeof all, 0), NORI_OK);
    nori_buf out;
    assert_nori(nori_backend_get(b, "bin", &out), NORI_OK);
    assert_int_equal(out.len, 256);
    assert_memory_equal(out.data, all, 256);
    assert_int_equal(out.data[256], '\0'); /* always NUL-terminated */
    nori_buf_free(&out);
    assert_null(out.data);

    const char nuls[] = {'a', '\0', '\0', 'b', '\0'};
    assert_nori(nori_backend_set(b, "nuls", nuls, sizeof nuls, 0), NORI_OK);
    assert_nori(nori_backend_get(b, "nuls", &out), NORI_OK);
    assert_int_equal(out.len, sizeof nuls);
    assert_memory_equal(out.data, nuls, sizeof nuls);
    nori_buf_free(&out);

    assert_nori(nori_backend_set(b, "empty", NULL, 0, 0), NORI_OK);
    assert_nori(nori_backend_get(b, "empty", &out), NORI_OK);
    assert_int_equal(out.len, 0);
    assert_non_null(out.data);
    assert_string_equal(out.data, "");
    nori_buf_free(&out);
    nori_buf_free(NULL); /* NULL-safe */
    nori_backend_free(b);
}

static void test_get_into(void **state)
{
    (void)state;
    nori_backend *b = new_mem(10);
    char buf[8];
    size_t len = 99;
    assert_nori(nori_backend_get_into(b, "k", buf, sizeof buf, &len), NORI_MISS);
    assert_int_equal(len, 0);
    set_str(b, "k", "1234", 0);
    assert_nori(nori_backend_get_into(b, "k", buf, sizeof buf, &len), NORI_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "1234", 4);
    set_str(b, "big", "123456789", 0);
    memset(buf, 'x', sizeof buf);
    assert_nori(nori_backend_get_into(b, "big", buf, sizeof buf, &len), NORI_ETOOBIG);
    assert_int_equal(len, 9); /* the size needed */
    assert_memory_equal(buf, "xxxxxxxx", 8); /* nothing copied */
    assert_nori(nori_backend_get_into(b, "k", NULL, 4, &len), NORI_EINVAL);
    assert_nori(nori_backend_get_into(b, "k", buf, sizeof buf, NULL), NORI_OK);
    nori_backend_free(b);
}

static void test_get_into_null_buffer_empty_value(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori_memory_backend_new(10, &b), NORI_OK);
    assert_nori(nori_backend_set(b, "empty", NULL, 0, 0), NORI_OK);
    size_t len = 99;
    /* memcpy(NULL, ..., 0) before: undefined behaviour, caught by UBSan. */
    assert_nori(nori_backend_get_into(b, "empty", NULL, 0, &len), NORI_OK);
    assert_int_equal(len, 0);
    assert_nori(nori_backend_set(b, "one", "x", 1, 0), NORI_OK);
    assert_nori(nori_backend_get_into(b, "one", NULL, 0, &len), NORI_ETOOBIG);
    assert_int_equal(len, 1);
    nori_backend_free(b);
}

/* ---- argument checks and limits ---- */

static void test_bad_arguments_change_nothing(void **state)
{
    (void)state;
    nori_backend *b = new_mem(10);
    set_str(b, "k", "original", 0);

    assert_nori(nori_backend_set(b, NULL, "v", 1, 0), NORI_EINVAL);
    assert_non_null(strstr(nori_last_error(), "NULL"));
    assert_nori(nori_backend_set(b, "", "v", 1, 0), NORI_EINVAL);
    assert_non_null(strstr(nori_last_error(), "empty"));
    assert_nori(nori_backend_set(b, "k", "v", 1, -1), NORI_EINVAL);
    assert_non_null(strstr(nori_last_error(), "-1"));
    assert_nori(nori_backend_set(b, "k", "v", 1, NORI_MAX_TTL + 1), NORI_EINVAL);
    assert_nori(nori_backend_set(b, "k", NULL, 5, 0), NORI_EINVAL);
    assert_nori(nori_backend_incr(b, "k", -5, NULL), NORI_EINVAL);
    assert_nori(nori_backend_get(b, NULL, &(nori_buf){0}), NORI_EINVAL);
    assert_nori(nori_backend_get(b, "k", NULL), NORI_EINVAL);
    assert_nori(nori_backend_delete(b, ""), NORI_EINVAL);
    assert_nori(nori_backend_atomic_update(b, "k", NULL, NULL, 0, NULL), NORI_EINVAL);
    assert_nori(nori_backend_set(NULL, "k", "v", 1, 0), NORI_EINVAL);
    assert_value(b, "k", "original");

    nori_backend_stats st;
    assert_nori(nori_backend_get_stats(b, &st), NORI_OK);
    assert_true(st.errors >= 10); /* each refusal counted (the NULL-backend one cannot be) */
    nori_backend_free(b);
}

static void test_key_length_limit(void **state)
{
    (void)state;
    nori_backend *b = new_mem(10);
    char key[NORI_MAX_KEY_LEN + 2];
    memset(key, 'k', sizeof key);
    key[NORI_MAX_KEY_LEN] = '\0'; /* exactly at the limit: accepted */
    set_str(b, key, "at-limit", 0);
    assert_value(b, key, "at-limit");

    key[NORI_MAX_KEY_LEN] = 'k';
    key[NORI_MAX_KEY_LEN + 1] = '\0'; /* one over */
    assert_nori(nori_backend_set(b, key, "v", 1, 0), NORI_ETOOBIG);
    char expect[64];
    snprintf(expect, sizeof expect, "is %d bytes, the limit is %d", NORI_MAX_KEY_LEN + 1,
             NORI_MAX_KEY_LEN);
    assert_non_null(strstr(nori_last_error(), expect));
    assert_nori(nori_backend_get(b, key, &(nori_buf){0}), NORI_ETOOBIG);
    assert_nori(nori_backend_incr(b, key, 0, NULL), NORI_ETOOBIG);
    assert_int_equal(entries(b), 1);
    nori_backend_free(b);
}

static void test_value_size_limit(void **state)
{
    (void)state;
    nori_backend *b = new_mem(10);
    assert_int_equal(nori_backend_max_value(b), NORI_DEFAULT_MAX_VALUE);
    assert_nori(nori_backend_set_max_value(b, 0), NORI_EINVAL);
    assert_nori(nori_backend_set_max_value(b, NORI_MAX_VALUE_LIMIT + 1), NORI_EINVAL);
    assert_nori(nori_backend_set_max_value(b, 100), NORI_OK);
    char big[101];
    memset(big, 'x', sizeof big);
    set_str(b, "k", "small", 0);
    assert_nori(nori_backend_set(b, "k", big, 100, 0), NORI_OK); /* at the limit */
    assert_nori(nori_backend_set(b, "k", big, 101, 0), NORI_ETOOBIG);
    assert_non_null(strstr(nori_last_error(), "101 bytes, the limit is 100"));
    nori_buf out;
    assert_nori(nori_backend_get(b, "k", &out), NORI_OK);
    assert_int_equal(out.len, 100); /* the previous value stands */
    nori_buf_free(&out);
    nori_backend_free(b);
}

static void test_max_keys_zero_refused(void **state)
{
    (void)state;
    nori_backend *b = (nori_backend *)0x1;
    assert_nori(nori_memory_backend_new(0, &b), NORI_EINVAL);
    assert_ptr_equal(b, (nori_backend *)0x1); /* untouched */
    assert_non_null(strstr(nori_last_error(), "max_keys"));
}

static void test_strerror_and_last_error(void **state)
{
    (void)state;
    assert_string_equal(nori_strerror(NORI_OK), "success");
    assert_string_equal(nori_strerror(NORI_ETOOBIG), "key or value over the limit");
    assert_string_equal(nori_strerror(12345), "unknown error code");
    assert_non_null(nori_last_error());
    assert_string_equal(nori_version(), NORI_VERSION_STRING);
}

/* ---- LRU ---- */

static void test_lru_evicts_oldest(void **state)
{
    (void)state;
    nori_backend *b = new_mem(3);
    set_str(b, "a", "1", 0);
    set_str(b, "b", "2", 0);
    set_str(b, "c", "3", 0);
    set_str(b, "d", "4", 0); /* evicts a */
    assert_missing(b, "a");
    assert_value(b, "b", "2");
    assert_value(b, "c", "3");
    assert_value(b, "d", "4");
    nori_backend_stats st;
    assert_nori(nori_backend_get_stats(b, &st), NORI_OK);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.entries, 3);
    nori_backend_free(b);
}

static void test_lru_read_refreshes(void **state)
{
    (void)state;
    /* DESIGN 2: max_keys=3, set a,b,c; get a; set d evicts b. */
    nori_backend *b = new_mem(3);
    set_str(b, "a", "1", 0);
    set_str(b, "b", "2", 0);
    set_str(b, "c", "3", 0);
    assert_value(b, "a", "1");
    set_str(b, "d", "4", 0);
    assert_missing(b, "b");
    assert_value(b, "a", "1");
    assert_value(b, "c", "3");
    assert_value(b, "d", "4");
    nori_backend_free(b);
}

static void test_lru_update_refreshes(void **state)
{
    (void)state;
    nori_backend *b = new_mem(3);
    set_str(b, "a", "1", 0);
    set_str(b, "b", "2", 0);
    set_str(b, "c", "3", 0);
    set_str(b, "a", "1b", 0); /* update refreshes a: b is now the oldest */
    set_str(b, "d", "4", 0);
    assert_missing(b, "b");
    assert_value(b, "a", "1b");

    nori_backend_free(b);

    /* incr of an existing counter refreshes too */
    int64_t v;
    b = new_mem(3);
    set_str(b, "x", "1", 0);
    set_str(b, "y", "1", 0);
    set_str(b, "z", "1", 0);
    assert_nori(nori_backend_incr(b, "x", 0, &v), NORI_OK); /* x refreshed: y oldest */
    set_str(b, "w", "1", 0);
    assert_missing(b, "y");
    assert_value(b, "x", "2");
    nori_backend_free(b);
}

static int append_bang(const nori_buf *cur, nori_buf *next, void *ud)
{
    (void)ud;
    size_t n = cur != NULL ? cur->len : 0;
    next->data = malloc(n + 1);
    if (next->data == NULL)
        return 1;
    if (n > 0)
        memcpy(next->data, cur->data, n);
    next->data[n] = '!';
    next->len = n + 1;
    return 0;
}

static void test_lru_atomic_update_refreshes(void **state)
{
    (void)state;
    nori_backend *b = new_mem(3);
    set_str(b, "a", "1", 0);
    set_str(b, "b", "2", 0);
    set_str(b, "c", "3", 0);
    assert_nori(nori_backend_atomic_update(b, "a", append_bang, NULL, 0, NULL), NORI_OK);
    set_str(b, "d", "4", 0);
    assert_missing(b, "b");
    assert_value(b, "a", "1!");
    nori_backend_free(b);
}

static void test_lru_keeps_exactly_last_five(void **state)
{
    (void)state;
    nori_backend *b = new_mem(5);
    char key[16];
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof key, "k%d", i);
        set_str(b, key, key, 0);
        assert_true(nori__memory_audit(b) == (i < 5 ? i + 1 : 5));
    }
    assert_int_equal(entries(b), 5);
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof key, "k%d", i);
        if (i < 15)
            assert_missing(b, key);
        else
            assert_value(b, key, key);
    }
    nori_backend_stats st;
    assert_nori(nori_backend_get_stats(b, &st), NORI_OK);
    assert_int_equal(st.evictions, 15);
    nori_backend_free(b);
}

/* With keys spread over every shard, the victims are still exactly the least
 * recently used: access 200 keys in a shuffled order, insert 100 new ones,
 * and the first 100 of that order are the ones gone. */
static void test_lru_exact_across_shards(void **state)
{
    (void)state;
    enum { N = 200, NEW = 100 };
    nori_backend *b = new_mem(N);
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
        assert_value(b, key, key); /* refresh in shuffled order (the clock does not move) */
    }
    for (int i = 0; i < NEW; i++) {
        snprintf(key, sizeof key, "new-%d", i);
        set_str(b, key, "v", 0);
        assert_int_equal(nori__memory_audit(b), N);
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

static void test_default_max_keys_is_10000(void **state)
{
    (void)state;
    unsetenv("CACHE_BACKEND");
    unsetenv("CACHE_MAX_KEYS");
    char *dir = nori_test_mkdtemp();
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0); /* no .env here */
    nori_backend *b;
    assert_nori(nori_backend_from_env(&b), NORI_OK);
    assert_int_equal(chdir(cwd), 0);
    char key[16];
    for (int i = 0; i < 10001; i++) {
        snprintf(key, sizeof key, "k%d", i);
        set_str(b, key, "v", 0);
    }
    assert_int_equal(entries(b), 10000);
    assert_missing(b, "k0");
    assert_value(b, "k1", "v");
    assert_value(b, "k10000", "v");
    nori_backend_free(b);
    nori_test_rmtree(dir);
    free(dir);
}

/* ---- TTL ---- */

static void test_ttl_expiry(void **state)
{
    (void)state;
    nori_backend *b = new_mem(10);
    set_str(b, "short", "v", 10);
    set_str(b, "forever", "v", 0);
    advance_seconds(9);
    assert_value(b, "short", "v");
    advance_seconds(1); /* exactly ttl seconds after the write: gone */
    assert_missing(b, "short");
    advance_seconds(100000);
    assert_value(b, "forever", "v");
    nori_backend_stats st;
    assert_nori(nori_backend_get_stats(b, &st), NORI_OK);
    assert_int_equal(st.expired, 1);
    assert_int_equal(st.entries, 1); /* the expired entry was removed on read */
    nori_backend_free(b);
}

static void test_ttl_reset_by_set(void **state)
{
    (void)state;
    nori_backend *b = new_mem(10);
    set_str(b, "k", "v", 10);
    advance_seconds(8);
    set_str(b, "k", "v2", 10); /* a new write starts a new ttl */
    advance_seconds(8);
    assert_value(b, "k", "v2");
    set_str(b, "k", "v3", 0); /* and ttl 0 removes the expiry */
    advance_seconds(1000);
    assert_value(b, "k", "v3");
    nori_backend_free(b);
}

static void test_expired_entry_is_evicted_first_as_tail(void **state)
{
    (void)state;
    nori_backend *b = new_mem(2);
    set_str(b, "old", "v", 5);
    set_str(b, "live", "v", 0);
    advance_seconds(6);
    set_str(b, "new", "v", 0); /* the tail (old) is expired: counted as expired */
    nori_backend_stats st;
    assert_nori(nori_backend_get_stats(b, &st), NORI_OK);
    assert_int_equal(st.expired, 1);
    assert_int_equal(st.evictions, 0);
    assert_value(b, "live", "v");
    assert_value(b, "new", "v");
    nori_backend_free(b);
}

static void test_ttl_real_time(void **state)
{
    (void)state;
    nori__clock_override(NULL, NULL); /* this one test uses the real clock */
    nori_backend *b = new_mem(10);
    set_str(b, "k", "v", 1);
    assert_value(b, "k", "v");
    struct timespec ts = {1, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    assert_missing(b, "k");
    nori_backend_free(b);
    nori__clock_override(&fake_now_ms, &fake_now_ms);
}

/* ---- incr ---- */

static void test_incr_first_and_next(void **state)
{
    (void)state;
    nori_backend *b = new_mem(10);
    int64_t v = 0;
    assert_nori(nori_backend_incr(b, "c", 60, &v), NORI_OK);
    assert_int_equal(v, 1);
    assert_nori(nori_backend_incr(b, "c", 60, &v), NORI_OK);
    assert_int_equal(v, 2);
    assert_value(b, "c", "2"); /* reads back as decimal text */
    assert_nori(nori_backend_incr(b, "c", 0, NULL), NORI_OK); /* out may be NULL */
    assert_value(b, "c", "3");
    nori_backend_free(b);
}

static void test_incr_ttl_only_on_first(void **state)
{
    (void)state;
    nori_backend *b = new_mem(10);
    int64_t v;
    assert_nori(nori_backend_incr(b, "c", 10, &v), NORI_OK);
    advance_seconds(8);
    assert_nori(nori_backend_incr(b, "c", 10, &v), NORI_OK); /* must not extend */
    assert_int_equal(v, 2);
    advance_seconds(2);
    assert_missing(b, "c"); /* expired 10 s after the first increment */
    assert_nori(nori_backend_incr(b, "c", 10, &v), NORI_OK); /* a new window */
    assert_int_equal(v, 1);
    nori_backend_free(b);
}

static void test_incr_keeps_no_expiry(void **state)
{
    (void)state;
    nori_backend *b = new_mem(10);
    set_str(b, "c", "41", 0);
    int64_t v;
    assert_nori(nori_backend_incr(b, "c", 5, &v), NORI_OK); /* ttl ignored: counter exists */
    assert_int_equal(v, 42);
    advance_seconds(1000);
    assert_value(b, "c", "42");

    assert_nori(nori_backend_incr(b, "d", 0, &v), NORI_OK); /* first incr, ttl 0: no expiry */
    advance_seconds(100000);
    assert_value(b, "d", "1");
    nori_backend_free(b);
}

static void test_incr_negative_and_type_errors(void **state)
{
    (void)state;
    nori_backend *b = new_mem(20);
    int64_t v;
    set_str(b, "neg", "-5", 0);
    assert_nori(nori_backend_incr(b, "neg", 0, &v), NORI_OK);
    assert_int_equal(v, -4);
    set_str(b, "zero", "0", 0);
    assert_nori(nori_backend_incr(b, "zero", 0, &v), NORI_OK);
    assert_int_equal(v, 1);

    const char *bad[] = {"abc", "1.5", " 1", "1 ", "+1", "01", "-0", "", "12x", "-",
                         "99999999999999999999", "9223372036854775808"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        set_str(b, "bad", bad[i], 0);
        assert_nori(nori_backend_incr(b, "bad", 0, &v), NORI_ETYPE);
        assert_non_null(strstr(nori_last_error(), "not an int"));
        assert_value(b, "bad", bad[i]); /* untouched */
    }
    const char nul[] = {'1', '\0', '2'};
    assert_nori(nori_backend_set(b, "nul", nul, 3, 0), NORI_OK);
    assert_nori(nori_backend_incr(b, "nul", 0, &v), NORI_ETYPE);
    nori_backend_free(b);
}

static void test_incr_overflow(void **state)
{
    (void)state;
    nori_backend *b = new_mem(10);
    int64_t v;
    set_str(b, "max", "9223372036854775806", 0);
    assert_nori(nori_backend_incr(b, "max", 0, &v), NORI_OK);
    assert_true(v == INT64_MAX);
    assert_nori(nori_backend_incr(b, "max", 0, &v), NORI_ERANGE);
    assert_value(b, "max", "9223372036854775807");
    set_str(b, "min", "-9223372036854775808", 0);
    assert_nori(nori_backend_incr(b, "min", 0, &v), NORI_OK);
    assert_true(v == INT64_MIN + 1);
    nori_backend_free(b);
}

/* ---- atomic_update ---- */

static int decline(const nori_buf *cur, nori_buf *next, void *ud)
{
    (void)cur;
    (void)ud;
    next->data = strdup("should be freed by the library");
    next->len = 5;
    return 7;
}

static int record_current(const nori_buf *cur, nori_buf *next, void *ud)
{
    const nori_buf **seen = ud;
    *seen = cur;
    next->data = NULL;
    next->len = 0;
    return 0;
}

static int oversize(const nori_buf *cur, nori_buf *next, void *ud)
{
    (void)cur;
    (void)ud;
    next->data = calloc(1, 200);
    next->len = 200;
    return 0;
}

static void test_atomic_update_basics(void **state)
{
    (void)state;
    nori_backend *b = new_mem(10);
    const nori_buf *seen = (const nori_buf *)0x1;
    assert_nori(nori_backend_atomic_update(b, "k", record_current, &seen, 0, NULL), NORI_OK);
    assert_null(seen); /* absent: callback gets NULL */
    assert_value(b, "k", ""); /* an empty value was written */

    nori_buf out;
    assert_nori(nori_backend_atomic_update(b, "k", append_bang, NULL, 0, &out), NORI_OK);
    assert_int_equal(out.len, 1);
    assert_string_equal(out.data, "!");
    nori_buf_free(&out);

    assert_nori(nori_backend_atomic_update(b, "k", decline, NULL, 0, &out), NORI_EABORT);
    assert_null(out.data);
    assert_value(b, "k", "!"); /* nothing written */
    assert_nori(nori_backend_atomic_update(b, "new", decline, NULL, 0, NULL), NORI_EABORT);
    assert_missing(b, "new");

    assert_nori(nori_backend_set_max_value(b, 100), NORI_OK);
    assert_nori(nori_backend_atomic_update(b, "k", oversize, NULL, 0, NULL), NORI_ETOOBIG);
    assert_value(b, "k", "!");
    nori_backend_free(b);
}

static void test_atomic_update_ttl(void **state)
{
    (void)state;
    nori_backend *b = new_mem(10);
    set_str(b, "k", "v", 10);
    advance_seconds(5);
    assert_nori(nori_backend_atomic_update(b, "k", append_bang, NULL, 0, NULL), NORI_OK);
    advance_seconds(4);
    assert_value(b, "k", "v!"); /* ttl 0 kept the expiry ... */
    advance_seconds(1);
    assert_missing(b, "k"); /* ... which falls 10 s after the set */

    set_str(b, "p", "v", 0);
    assert_nori(nori_backend_atomic_update(b, "p", append_bang, NULL, 0, NULL), NORI_OK);
    advance_seconds(100000);
    assert_value(b, "p", "v!"); /* no expiry stays no expiry */

    assert_nori(nori_backend_atomic_update(b, "p", append_bang, NULL, 3, NULL), NORI_OK);
    advance_seconds(3);
    assert_missing(b, "p"); /* ttl > 0 sets a new expiry */
    nori_backend_free(b);
}

static nori_backend *reentry_target;
static int reentry_rc;

static int call_the_cache(const nori_buf *cur, nori_buf *next, void *ud)
{
    (void)cur;
    (void)next;
    (void)ud;
    nori_buf tmp;
    reentry_rc = nori_backend_get(reentry_target, "other", &tmp);
    return 1;
}

static void test_atomic_update_callback_reentry_refused(void **state)
{
    (void)state;
    nori_backend *b = new_mem(10);
    reentry_target = b;
    assert_nori(nori_backend_atomic_update(b, "k", call_the_cache, NULL, 0, NULL), NORI_EABORT);
    assert_int_equal(reentry_rc, NORI_EINVAL); /* refused instead of a deadlock */
    set_str(b, "other", "fine afterwards", 0);
    assert_value(b, "other", "fine afterwards");
    nori_backend_free(b);
}

static nori_backend *backend_a, *backend_b;
static int nested_set_rc, nested_stats_rc, nested_b_rc;

static int b_callback(const nori_buf *cur, nori_buf *next, void *ud)
{
    (void)cur;
    (void)ud;
    next->data = strdup("b");
    next->len = 1;
    return 0;
}

/* A's callback: updates B (whose callback runs and returns), then calls A. */
static int a_callback(const nori_buf *cur, nori_buf *next, void *ud)
{
    (void)cur;
    (void)next;
    (void)ud;
    nested_b_rc = nori_backend_atomic_update(backend_b, "kb", b_callback, NULL, 0, NULL);
    nested_set_rc = nori_backend_set(backend_a, "ka", "x", 1, 0);
    nori_backend_stats st;
    nested_stats_rc = nori_backend_get_stats(backend_a, &st);
    return 1;
}

/* The re-entry guard survives a callback that calls another backend (whose
 * own callback runs and returns), get_stats works from a callback, and the
 * same backend is still refused afterwards. A deadlock is the failure mode:
 * the alarm turns it into a failed test. */
static void test_reentry_guard_survives_nested_backend(void **state)
{
    (void)state;
    alarm(20);
    assert_nori(nori_memory_backend_new(10, &backend_a), NORI_OK);
    assert_nori(nori_memory_backend_new(10, &backend_b), NORI_OK);
    assert_nori(nori_backend_set(backend_a, "ka", "old", 3, 0), NORI_OK);
    assert_nori(nori_backend_atomic_update(backend_a, "ka", a_callback, NULL, 0, NULL),
                NORI_EABORT);
    assert_nori(nested_b_rc, NORI_OK);          /* another backend is fine */
    assert_nori(nested_set_rc, NORI_EINVAL);    /* the same backend is refused, not a deadlock */
    assert_nori(nested_stats_rc, NORI_OK);      /* get_stats takes no lock: no deadlock */
    nori_buf out;
    assert_nori(nori_backend_get(backend_a, "ka", &out), NORI_OK);
    assert_string_equal(out.data, "old"); /* the refused set wrote nothing */
    nori_buf_free(&out);
    assert_nori(nori_backend_get(backend_b, "kb", &out), NORI_OK);
    assert_string_equal(out.data, "b");
    nori_buf_free(&out);
    nori_backend_free(backend_a);
    nori_backend_free(backend_b);
    alarm(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_get_overwrite_delete),
        cmocka_unit_test(test_flush),
        cmocka_unit_test(test_binary_values),
        cmocka_unit_test(test_get_into),
        cmocka_unit_test(test_get_into_null_buffer_empty_value),
        cmocka_unit_test(test_bad_arguments_change_nothing),
        cmocka_unit_test(test_key_length_limit),
        cmocka_unit_test(test_value_size_limit),
        cmocka_unit_test(test_max_keys_zero_refused),
        cmocka_unit_test(test_strerror_and_last_error),
        cmocka_unit_test(test_lru_evicts_oldest),
        cmocka_unit_test(test_lru_read_refreshes),
        cmocka_unit_test(test_lru_update_refreshes),
        cmocka_unit_test(test_lru_atomic_update_refreshes),
        cmocka_unit_test(test_lru_keeps_exactly_last_five),
        cmocka_unit_test(test_lru_exact_across_shards),
        cmocka_unit_test(test_default_max_keys_is_10000),
        cmocka_unit_test(test_ttl_expiry),
        cmocka_unit_test(test_ttl_reset_by_set),
        cmocka_unit_test(test_expired_entry_is_evicted_first_as_tail),
        cmocka_unit_test(test_ttl_real_time),
        cmocka_unit_test(test_incr_first_and_next),
        cmocka_unit_test(test_incr_ttl_only_on_first),
        cmocka_unit_test(test_incr_keeps_no_expiry),
        cmocka_unit_test(test_incr_negative_and_type_errors),
        cmocka_unit_test(test_incr_overflow),
        cmocka_unit_test(test_atomic_update_basics),
        cmocka_unit_test(test_atomic_update_ttl),
        cmocka_unit_test(test_atomic_update_callback_reentry_refused),
        cmocka_unit_test(test_reentry_guard_survives_nested_backend),
    };
    return cmocka_run_group_tests(tests, setup_fake_clock, teardown_fake_clock);
}
