// SPDX-License-Identifier: MIT
/*
 * One semantic suite, run against every backend: the memory backend, the
 * shared-memory backend, and a Redis backend on a private redis-server (one
 * server, a cluster, Sentinel, each with and without a near cache). Every
 * case is written once, so the backends cannot drift apart on DESIGN
 * section 2. The memory and shm backends run on the virtual clock
 * (clock.h), which the TTL cases move; Redis expires keys in real time,
 * which they wait for.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis_cluster.h"
#include "redis_server.h"
#include "test_support.h"
#include "virtual_clock.h"

#include "clock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct fixture {
    nori_backend *b;
    nori_test_redis *server; /* NULL for the memory backend */
    nori_test_cluster *cluster;   /* the cluster group */
    nori_test_sentinel *sentinel; /* the sentinel group */
    char shm_name[64];            /* the shm group's segment, unlinked at the end */
} fixture;

static int memory_setup(void **state)
{
    nori_test_clock_install(1000000);
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_nori(nori_memory_backend_new(1000, &f->b), NORI_OK);
    *state = f;
    return 0;
}

/* A segment of its own, for as many keys as the memory fixture. */
static int shm_setup(void **state)
{
    nori_test_clock_install(1000000);
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->shm_name, sizeof f->shm_name, "nori-test-semantics-%ld", (long)getpid());
    (void)nori_shm_backend_unlink(f->shm_name);
    assert_nori(nori_shm_backend_new(f->shm_name, 1000, 8 << 20, &f->b), NORI_OK);
    *state = f;
    return 0;
}

static int redis_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->server = nori_test_redis_start(NULL);
    assert_nori(nori_redis_backend_new(f->server->url, &f->b), NORI_OK);
    *state = f;
    return 0;
}

/* One cluster and one sentinel set-up for the whole program (each start
 * costs seconds): the plain and the near-cache groups share them, and main
 * stops them at the end. */
static nori_test_cluster *shared_cluster;
static nori_test_sentinel *shared_sentinel;

/* The same cases on a Redis Cluster (3 masters + 3 replicas): keys spread
 * over the masters, flush visits each. */
static int cluster_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    *state = f;
    if (shared_cluster == NULL)
        shared_cluster = nori_test_cluster_start();
    assert_nori(nori_redis_backend_new(shared_cluster->url, &f->b), NORI_OK);
    return 0;
}

/* ... and through Sentinel (master + replica + 3 sentinels, with a password). */
static int sentinel_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    *state = f;
    if (shared_sentinel == NULL)
        shared_sentinel = nori_test_sentinel_start("sentinel-pw");
    assert_nori(nori_redis_backend_new(shared_sentinel->url, &f->b), NORI_OK);
    return 0;
}

/* The near cache on the cluster and through Sentinel: the same semantics. */
static int cluster_near_setup(void **state)
{
    cluster_setup(state);
    fixture *f = *state;
    assert_nori(nori_redis_backend_enable_near(f->b, 1000, 0, 0), NORI_OK);
    return 0;
}

static int sentinel_near_setup(void **state)
{
    sentinel_setup(state);
    fixture *f = *state;
    assert_nori(nori_redis_backend_enable_near(f->b, 1000, 0, 0), NORI_OK);
    return 0;
}

/* The Redis backend with its near cache on: the same semantics. */
static int redis_near_setup(void **state)
{
    redis_setup(state);
    fixture *f = *state;
    assert_nori(nori_redis_backend_enable_near(f->b, 1000, 0, 0), NORI_OK);
    return 0;
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    nori_backend_free(f->b);
    nori_test_redis_stop(f->server);
    nori_test_cluster_stop(f->cluster);
    nori_test_sentinel_stop(f->sentinel);
    if (f->shm_name[0] != '\0')
        assert_nori(nori_shm_backend_unlink(f->shm_name), NORI_OK);
    free(f);
    nori_test_clock_uninstall();
    return 0;
}

/* Each case starts from an empty cache with the default value limit. */
static int case_setup(void **state)
{
    fixture *f = *state;
    assert_nori(nori_backend_flush(f->b), NORI_OK);
    assert_nori(nori_backend_set_max_value(f->b, NORI_DEFAULT_MAX_VALUE), NORI_OK);
    return 0;
}

static nori_backend *backend(void **state)
{
    return ((fixture *)*state)->b;
}

/* Lets ms pass for the backend's TTLs: the memory and shm backends'
 * virtual clock is moved, Redis's real one waited for. */
static void let_pass_ms(void **state, int ms)
{
    const char *kind = nori_backend_kind(backend(state));
    if (strcmp(kind, "memory") == 0 || strcmp(kind, "shm") == 0) {
        nori__clock_advance(ms);
        return;
    }
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

/* Asserts that key holds exactly the string `want`. */
static void assert_value(nori_backend *b, const char *key, const char *want)
{
    nori_buf v;
    assert_nori(nori_backend_get(b, key, &v), NORI_OK);
    assert_int_equal(v.len, strlen(want));
    assert_memory_equal(v.data, want, v.len);
    assert_int_equal(v.data[v.len], '\0');
    nori_buf_free(&v);
}

static void assert_missing(nori_backend *b, const char *key)
{
    nori_buf v = {(char *)"sentinel", 8};
    assert_nori(nori_backend_get(b, key, &v), NORI_MISS);
    assert_null(v.data);
    assert_int_equal(v.len, 0);
}

static void test_get_set_delete_flush(void **state)
{
    nori_backend *b = backend(state);
    assert_missing(b, "a");
    assert_nori(nori_backend_set(b, "a", "one", 3, 0), NORI_OK);
    assert_value(b, "a", "one");
    assert_nori(nori_backend_set(b, "a", "two!", 4, 60), NORI_OK);
    assert_value(b, "a", "two!");
    assert_nori(nori_backend_set(b, "empty", NULL, 0, 0), NORI_OK);
    assert_value(b, "empty", "");
    assert_nori(nori_backend_delete(b, "a"), NORI_OK);
    assert_missing(b, "a");
    assert_nori(nori_backend_delete(b, "a"), NORI_OK); /* missing: still OK */
    for (int i = 0; i < 50; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        assert_nori(nori_backend_set(b, k, k, strlen(k), i % 2 ? 60 : 0), NORI_OK);
    }
    assert_value(b, "k7", "k7");
    assert_nori(nori_backend_flush(b), NORI_OK);
    assert_missing(b, "k7");
    assert_missing(b, "k0");
    assert_missing(b, "empty");
}

/* delete_prefix removes exactly the keys that start with the prefix, taken
 * literally: glob characters in it match only themselves on Redis. */
static void test_delete_prefix(void **state)
{
    nori_backend *b = backend(state);
    static const char *const gone[] = {"view:/p:", "view:/p:page=1", "view:/p:page=2",
                                       "view:/p:\\x"};
    static const char *const kept[] = {"view:/q:", "view:/pp:", "view:", "xview:/p:",
                                       "view:/p", "view*/p:", "v[i]ew:/p:"};
    for (size_t i = 0; i < sizeof gone / sizeof *gone; i++)
        assert_nori(nori_backend_set(b, gone[i], "g", 1, i % 2 ? 60 : 0), NORI_OK);
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++)
        assert_nori(nori_backend_set(b, kept[i], "k", 1, 0), NORI_OK);
    assert_nori(nori_backend_delete_prefix(b, "view:/p:"), NORI_OK);
    for (size_t i = 0; i < sizeof gone / sizeof *gone; i++)
        assert_missing(b, gone[i]);
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++)
        assert_value(b, kept[i], "k");
    /* A glob pattern is literal: nothing starts with "v*". */
    assert_nori(nori_backend_delete_prefix(b, "v*"), NORI_OK);
    assert_nori(nori_backend_delete_prefix(b, "v[i]"), NORI_OK);
    assert_missing(b, "v[i]ew:/p:");
    assert_value(b, "view:/q:", "k");
    /* Bad prefixes change nothing. */
    assert_nori(nori_backend_delete_prefix(b, ""), NORI_EINVAL);
    assert_nori(nori_backend_delete_prefix(b, NULL), NORI_EINVAL);
    assert_value(b, "view:", "k");
    /* Many keys (within the memory fixture's max_keys): several SCAN steps on Redis. */
    for (int i = 0; i < 900; i++) {
        char k[32];
        snprintf(k, sizeof k, "bulk:%d", i);
        assert_nori(nori_backend_set(b, k, "v", 1, 0), NORI_OK);
    }
    assert_nori(nori_backend_delete_prefix(b, "bulk:"), NORI_OK);
    assert_missing(b, "bulk:0");
    assert_missing(b, "bulk:899");
    assert_value(b, "view:/q:", "k");
}

/* All expiry checks share one sleep, to keep the suite fast. */
static void test_ttl_expiry(void **state)
{
    nori_backend *b = backend(state);
    int64_t n;
    assert_nori(nori_backend_set(b, "short", "x", 1, 1), NORI_OK);
    assert_nori(nori_backend_set(b, "forever", "y", 1, 0), NORI_OK);
    /* incr: the first increment sets the TTL, later ones keep it (a larger
     * ttl must not extend it)... */
    assert_nori(nori_backend_incr(b, "ctr", 1, &n), NORI_OK);
    assert_int_equal(n, 1);
    assert_nori(nori_backend_incr(b, "ctr", 100, &n), NORI_OK);
    assert_int_equal(n, 2);
    /* ... and a counter without expiry stays without. */
    assert_nori(nori_backend_incr(b, "ctr0", 0, &n), NORI_OK);
    assert_nori(nori_backend_incr(b, "ctr0", 1, &n), NORI_OK);
    assert_int_equal(n, 2);
    /* incr of an existing plain value with an expiry keeps it. */
    assert_nori(nori_backend_set(b, "num", "41", 2, 1), NORI_OK);
    assert_nori(nori_backend_incr(b, "num", 0, &n), NORI_OK);
    assert_int_equal(n, 42);
    /* An existing "0" is an existing counter: reaching 1 is not creation,
     * so the ttl is not applied (DESIGN 2: "then, and only then"). */
    assert_nori(nori_backend_set(b, "zero", "0", 1, 0), NORI_OK);
    assert_nori(nori_backend_incr(b, "zero", 1, &n), NORI_OK);
    assert_int_equal(n, 1);
    assert_value(b, "short", "x");
    assert_value(b, "ctr", "2");
    let_pass_ms(state, 1600);
    assert_value(b, "zero", "1");
    assert_missing(b, "short");
    assert_missing(b, "ctr");
    assert_missing(b, "num");
    assert_value(b, "forever", "y");
    assert_value(b, "ctr0", "2");
    /* An expired counter starts again at 1. */
    assert_nori(nori_backend_incr(b, "ctr", 0, &n), NORI_OK);
    assert_int_equal(n, 1);
}

static int write_text(const nori_buf *cur, nori_buf *next, void *ud)
{
    (void)cur;
    const char *text = ud;
    next->len = strlen(text);
    next->data = malloc(next->len);
    assert_non_null(next->data);
    memcpy(next->data, text, next->len);
    return 0;
}

static void test_atomic_update_ttl(void **state)
{
    nori_backend *b = backend(state);
    /* ttl 0 keeps an existing expiry. */
    assert_nori(nori_backend_set(b, "keeps", "a", 1, 1), NORI_OK);
    assert_nori(nori_backend_atomic_update(b, "keeps", write_text, "b", 0, NULL), NORI_OK);
    assert_value(b, "keeps", "b");
    /* ttl > 0 sets a new expiry on a persistent key. */
    assert_nori(nori_backend_set(b, "sets", "a", 1, 0), NORI_OK);
    assert_nori(nori_backend_atomic_update(b, "sets", write_text, "b", 1, NULL), NORI_OK);
    /* ttl 0 on a persistent key keeps it persistent; on a new key, none. */
    assert_nori(nori_backend_set(b, "persist", "a", 1, 0), NORI_OK);
    assert_nori(nori_backend_atomic_update(b, "persist", write_text, "b", 0, NULL), NORI_OK);
    assert_nori(nori_backend_atomic_update(b, "fresh", write_text, "c", 0, NULL), NORI_OK);
    let_pass_ms(state, 1600);
    assert_missing(b, "keeps");
    assert_missing(b, "sets");
    assert_value(b, "persist", "b");
    assert_value(b, "fresh", "c");
}

static void test_binary_values(void **state)
{
    nori_backend *b = backend(state);
    unsigned char all[512];
    for (int i = 0; i < 512; i++)
        all[i] = (unsigned char)(i % 256);
    assert_nori(nori_backend_set(b, "bin", all, sizeof all, 0), NORI_OK);
    nori_buf v;
    assert_nori(nori_backend_get(b, "bin", &v), NORI_OK);
    assert_int_equal(v.len, sizeof all);
    assert_memory_equal(v.data, all, sizeof all);
    assert_int_equal(v.data[v.len], '\0');
    nori_buf_free(&v);
    const char nuls[] = {'\0', 'a', '\0', '\0', 'b', '\0'};
    assert_nori(nori_backend_set(b, "nuls", nuls, sizeof nuls, 0), NORI_OK);
    assert_nori(nori_backend_get(b, "nuls", &v), NORI_OK);
    assert_int_equal(v.len, sizeof nuls);
    assert_memory_equal(v.data, nuls, sizeof nuls);
    nori_buf_free(&v);
    /* Keys may hold any byte but NUL, including spaces and glob characters. */
    const char *odd = "a key with spaces * ? [x] \xff\x01";
    assert_nori(nori_backend_set(b, odd, "v", 1, 0), NORI_OK);
    assert_value(b, odd, "v");
}

static void test_incr_semantics(void **state)
{
    nori_backend *b = backend(state);
    int64_t n = 0;
    for (int64_t i = 1; i <= 5; i++) {
        assert_nori(nori_backend_incr(b, "c", 0, &n), NORI_OK);
        assert_int_equal(n, i);
    }
    assert_value(b, "c", "5");
    assert_nori(nori_backend_incr(b, "c", 0, NULL), NORI_OK);
    assert_value(b, "c", "6");
    assert_nori(nori_backend_set(b, "neg", "-2", 2, 0), NORI_OK);
    assert_nori(nori_backend_incr(b, "neg", 0, &n), NORI_OK);
    assert_int_equal(n, -1);
    const char *not_ints[] = {"abc", "1.5", " 1", "01", "+1", "1 ", ""};
    for (size_t i = 0; i < sizeof not_ints / sizeof *not_ints; i++) {
        const char *s = not_ints[i];
        assert_nori(nori_backend_set(b, "t", s, strlen(s), 0), NORI_OK);
        n = 12345;
        assert_nori(nori_backend_incr(b, "t", 0, &n), NORI_ETYPE);
        assert_non_null(strstr(nori_last_error(), "not an int"));
        assert_int_equal(n, 12345);
        assert_value(b, "t", s);
    }
    assert_nori(nori_backend_set(b, "max", "9223372036854775807", 19, 0), NORI_OK);
    assert_nori(nori_backend_incr(b, "max", 0, &n), NORI_ERANGE);
    assert_value(b, "max", "9223372036854775807");
    assert_nori(nori_backend_set(b, "almost", "9223372036854775806", 19, 0), NORI_OK);
    assert_nori(nori_backend_incr(b, "almost", 0, &n), NORI_OK);
    assert_int_equal(n, INT64_MAX);
    assert_nori(nori_backend_set(b, "min", "-9223372036854775808", 20, 0), NORI_OK);
    assert_nori(nori_backend_incr(b, "min", 0, &n), NORI_OK);
    assert_int_equal(n, INT64_MIN + 1);
}

typedef struct {
    int calls;
    bool saw_null;
    char seen[32];
} probe;

static int decline(const nori_buf *cur, nori_buf *next, void *ud)
{
    probe *p = ud;
    p->calls++;
    p->saw_null = cur == NULL;
    if (cur != NULL)
        snprintf(p->seen, sizeof p->seen, "%s", cur->data);
    /* Something placed in next must be freed by the library (ASan checks). */
    next->data = malloc(4);
    memcpy(next->data, "junk", 4);
    next->len = 4;
    return 7;
}

static int append_x(const nori_buf *cur, nori_buf *next, void *ud)
{
    (void)ud;
    size_t len = cur != NULL ? cur->len : 0;
    next->data = malloc(len + 1);
    assert_non_null(next->data);
    if (len > 0)
        memcpy(next->data, cur->data, len);
    next->data[len] = 'x';
    next->len = len + 1;
    return 0;
}

static int write_nothing(const nori_buf *cur, nori_buf *next, void *ud)
{
    (void)cur;
    (void)ud;
    next->data = NULL;
    next->len = 0;
    return 0;
}

static int bad_next(const nori_buf *cur, nori_buf *next, void *ud)
{
    (void)cur;
    (void)ud;
    next->data = NULL;
    next->len = 5; /* length without data: refused */
    return 0;
}

static void test_atomic_update(void **state)
{
    nori_backend *b = backend(state);
    probe p = {0};
    assert_nori(nori_backend_atomic_update(b, "u", decline, &p, 0, NULL), NORI_EABORT);
    assert_true(p.calls >= 1);
    assert_true(p.saw_null);
    assert_missing(b, "u");
    assert_nori(nori_backend_set(b, "u", "orig", 4, 0), NORI_OK);
    memset(&p, 0, sizeof p);
    nori_buf out = {(char *)"sentinel", 8};
    assert_nori(nori_backend_atomic_update(b, "u", decline, &p, 5, &out), NORI_EABORT);
    assert_null(out.data);
    assert_false(p.saw_null);
    assert_string_equal(p.seen, "orig");
    assert_value(b, "u", "orig");

    assert_nori(nori_backend_atomic_update(b, "u", append_x, NULL, 0, &out), NORI_OK);
    assert_int_equal(out.len, 5);
    assert_string_equal(out.data, "origx");
    nori_buf_free(&out);
    assert_value(b, "u", "origx");
    assert_nori(nori_backend_atomic_update(b, "new", append_x, NULL, 0, NULL), NORI_OK);
    assert_value(b, "new", "x");
    assert_nori(nori_backend_atomic_update(b, "new", write_nothing, NULL, 0, &out), NORI_OK);
    assert_int_equal(out.len, 0);
    assert_non_null(out.data);
    assert_int_equal(out.data[0], '\0');
    nori_buf_free(&out);
    assert_value(b, "new", "");
    assert_nori(nori_backend_atomic_update(b, "new", bad_next, NULL, 0, NULL), NORI_EINVAL);
    assert_value(b, "new", "");
    /* A counter written by incr is seen as its decimal text. */
    int64_t n;
    assert_nori(nori_backend_incr(b, "ctr", 0, &n), NORI_OK);
    memset(&p, 0, sizeof p);
    assert_nori(nori_backend_atomic_update(b, "ctr", decline, &p, 0, NULL), NORI_EABORT);
    assert_string_equal(p.seen, "1");
}

static void test_limits(void **state)
{
    nori_backend *b = backend(state);
    char key[NORI_MAX_KEY_LEN + 2];
    memset(key, 'k', sizeof key);
    key[NORI_MAX_KEY_LEN + 1] = '\0';
    assert_nori(nori_backend_set(b, key, "v", 1, 0), NORI_ETOOBIG);
    int64_t n;
    assert_nori(nori_backend_incr(b, key, 0, &n), NORI_ETOOBIG);
    key[NORI_MAX_KEY_LEN] = '\0'; /* exactly at the limit: accepted */
    assert_nori(nori_backend_set(b, key, "v", 1, 0), NORI_OK);
    assert_value(b, key, "v");
    nori_buf v;
    key[NORI_MAX_KEY_LEN] = 'k';
    assert_nori(nori_backend_get(b, key, &v), NORI_ETOOBIG);

    assert_nori(nori_backend_set_max_value(b, 16), NORI_OK);
    char big[17];
    memset(big, 'v', sizeof big);
    assert_nori(nori_backend_set(b, "big", big, 17, 0), NORI_ETOOBIG);
    assert_nori(nori_backend_set(b, "big", big, 16, 0), NORI_OK);
    /* atomic_update that grows the value past the limit writes nothing. */
    nori_buf out = {NULL, 0};
    assert_nori(nori_backend_atomic_update(b, "big", append_x, NULL, 0, &out), NORI_ETOOBIG);
    assert_null(out.data);
    assert_int_equal(out.len, 0);
    assert_nori(nori_backend_get(b, "big", &v), NORI_OK);
    assert_int_equal(v.len, 16);
    nori_buf_free(&v);
    assert_nori(nori_backend_atomic_update(b, "absent", write_text, "0123456789abcdefg", 0, NULL),
                NORI_ETOOBIG);
    assert_missing(b, "absent");

    assert_nori(nori_backend_set(b, "", "v", 1, 0), NORI_EINVAL);
    assert_nori(nori_backend_set(b, NULL, "v", 1, 0), NORI_EINVAL);
    assert_nori(nori_backend_get(b, "", &v), NORI_EINVAL);
    assert_nori(nori_backend_incr(b, NULL, 0, &n), NORI_EINVAL);
    assert_nori(nori_backend_delete(b, ""), NORI_EINVAL);
    assert_nori(nori_backend_set(b, "neg", "v", 1, -1), NORI_EINVAL);
    assert_nori(nori_backend_incr(b, "neg", -5, &n), NORI_EINVAL);
    assert_nori(nori_backend_atomic_update(b, "neg", append_x, NULL, -1, NULL), NORI_EINVAL);
    assert_missing(b, "neg");
    assert_nori(nori_backend_verify(b), NORI_OK);
}

static void test_stats(void **state)
{
    nori_backend *b = backend(state);
    nori_backend_stats before, after;
    assert_nori(nori_backend_get_stats(b, &before), NORI_OK);
    nori_buf v;
    assert_nori(nori_backend_set(b, "s", "1", 1, 0), NORI_OK);
    assert_nori(nori_backend_get(b, "s", &v), NORI_OK);
    nori_buf_free(&v);
    assert_nori(nori_backend_get(b, "nope", &v), NORI_MISS);
    assert_nori(nori_backend_get_stats(b, &after), NORI_OK);
    assert_int_equal(after.hits, before.hits + 1);
    assert_int_equal(after.misses, before.misses + 1);
}

#define CASES                                                                          \
    cmocka_unit_test_setup(test_get_set_delete_flush, case_setup),                     \
        cmocka_unit_test_setup(test_binary_values, case_setup),                        \
        cmocka_unit_test_setup(test_delete_prefix, case_setup),                        \
        cmocka_unit_test_setup(test_incr_semantics, case_setup),                       \
        cmocka_unit_test_setup(test_atomic_update, case_setup),                        \
        cmocka_unit_test_setup(test_limits, case_setup),                               \
        cmocka_unit_test_setup(test_stats, case_setup),                                \
        cmocka_unit_test_setup(test_ttl_expiry, case_setup),                           \
        cmocka_unit_test_setup(test_atomic_update_ttl, case_setup)

int main(void)
{
    const struct CMUnitTest cases[] = {CASES};
    int failed = cmocka_run_group_tests_name("memory backend", cases, memory_setup, group_teardown);
    failed += cmocka_run_group_tests_name("shm backend", cases, shm_setup, group_teardown);
    failed += cmocka_run_group_tests_name("redis backend", cases, redis_setup, group_teardown);
    failed += cmocka_run_group_tests_name("redis cluster backend", cases, cluster_setup,
                                          group_teardown);
    failed += cmocka_run_group_tests_name("redis sentinel backend", cases, sentinel_setup,
                                          group_teardown);
    failed += cmocka_run_group_tests_name("redis backend with near cache", cases, redis_near_setup,
                                          group_teardown);
    failed += cmocka_run_group_tests_name("redis cluster backend with near cache", cases,
                                          cluster_near_setup, group_teardown);
    failed += cmocka_run_group_tests_name("redis sentinel backend with near cache", cases,
                                          sentinel_near_setup, group_teardown);
    nori_test_cluster_stop(shared_cluster);
    nori_test_sentinel_stop(shared_sentinel);
    return failed;
}
