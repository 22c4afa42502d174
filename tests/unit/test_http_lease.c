// SPDX-License-Identifier: MIT
/* The backend operations the response cache coordinates processes with:
 * the leases it coalesces with (nori_backend_add = set if absent with a TTL
 * in ms, and nori_backend_delete_if_equal = release by token), and the
 * guarded write of its invalidation generations (nori__backend_set_guarded,
 * internal), on the memory backend (on the virtual clock, clock.h: a
 * lease's expiry to the millisecond) and on a private redis-server (whose
 * expiry is real time). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis_server.h"
#include "test_support.h"
#include "virtual_clock.h"

#include "backend.h"
#include "clock.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    nori_backend *b;
    nori_test_redis *server;
} fixture;

#define START 1000000

static int memory_setup(void **state)
{
    nori_test_clock_install(START);
    fixture *f = calloc(1, sizeof *f);
    assert_nori(nori_memory_backend_new(100, &f->b), NORI_OK);
    *state = f;
    return 0;
}

static int redis_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->server = nori_test_redis_start(NULL);
    assert_nori(nori_redis_backend_new(f->server->url, &f->b), NORI_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    nori_backend_free(f->b);
    nori_test_redis_stop(f->server);
    free(f);
    nori_test_clock_uninstall();
    return 0;
}

static void test_add_and_release(void **state)
{
    nori_backend *b = ((fixture *)*state)->b;
    int added = -1, deleted = -1;
    assert_nori(nori_backend_add(b, "lease", "tok-a", 5, 60000, &added), NORI_OK);
    assert_int_equal(added, 1);
    /* Present: a second add writes nothing. */
    assert_nori(nori_backend_add(b, "lease", "tok-b", 5, 60000, &added), NORI_OK);
    assert_int_equal(added, 0);
    nori_buf v;
    assert_nori(nori_backend_get(b, "lease", &v), NORI_OK);
    assert_memory_equal(v.data, "tok-a", 5);
    nori_buf_free(&v);
    /* Only the holder's token releases it. */
    assert_nori(nori_backend_delete_if_equal(b, "lease", "tok-b", 5, &deleted), NORI_OK);
    assert_int_equal(deleted, 0);
    assert_nori(nori_backend_delete_if_equal(b, "lease", "tok-", 4, &deleted), NORI_OK);
    assert_int_equal(deleted, 0);
    assert_nori(nori_backend_get(b, "lease", &v), NORI_OK);
    nori_buf_free(&v);
    assert_nori(nori_backend_delete_if_equal(b, "lease", "tok-a", 5, &deleted), NORI_OK);
    assert_int_equal(deleted, 1);
    assert_nori(nori_backend_get(b, "lease", &v), NORI_MISS);
    assert_nori(nori_backend_delete_if_equal(b, "lease", "tok-a", 5, NULL), NORI_OK);
    /* Free again: add succeeds. */
    assert_nori(nori_backend_add(b, "lease", "tok-c", 5, 60000, &added), NORI_OK);
    assert_int_equal(added, 1);
    /* Bad arguments change nothing. */
    assert_nori(nori_backend_add(b, "x", "v", 1, 0, &added), NORI_EINVAL);
    assert_int_equal(added, 0);
    assert_nori(nori_backend_add(b, "x", "v", 1, -5, NULL), NORI_EINVAL);
    assert_nori(nori_backend_add(b, "", "v", 1, 100, NULL), NORI_EINVAL);
    assert_nori(nori_backend_get(b, "x", &v), NORI_MISS);
}

/* A lease ends by itself: a holder that dies never blocks others past it. */
static void test_lease_expires(void **state)
{
    nori_backend *b = ((fixture *)*state)->b;
    int added;
    assert_nori(nori_backend_add(b, "short", "dead-holder", 11, 150, &added), NORI_OK);
    assert_int_equal(added, 1);
    assert_nori(nori_backend_add(b, "short", "me", 2, 150, &added), NORI_OK);
    assert_int_equal(added, 0);
    if (((fixture *)*state)->server == NULL) { /* memory: on the virtual clock */
        nori__clock_advance(149);
        assert_nori(nori_backend_add(b, "short", "me", 2, 60000, &added), NORI_OK);
        assert_int_equal(added, 0);
        nori__clock_advance(1);
        assert_nori(nori_backend_add(b, "short", "me", 2, 60000, &added), NORI_OK);
        assert_int_equal(added, 1);
        return;
    }
    /* Redis: a bounded wait for the server's expiry, in real time. */
    for (int i = 0; i < 200 && !added; i++) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
        assert_nori(nori_backend_add(b, "short", "me", 2, 60000, &added), NORI_OK);
    }
    assert_int_equal(added, 1);
}

static void expect_entry(nori_backend *b, const char *key, const char *want)
{
    nori_buf v;
    if (want == NULL) {
        assert_nori(nori_backend_get(b, key, &v), NORI_MISS);
        return;
    }
    assert_nori(nori_backend_get(b, key, &v), NORI_OK);
    assert_int_equal(v.len, strlen(want));
    assert_memory_equal(v.data, want, v.len);
    nori_buf_free(&v);
}

/* Writes key only while guard holds what the writer expects (absent:
 * expect NULL); the memory backend offers no such write (the response
 * cache guards its stores in the process there). */
static void test_set_guarded(void **state)
{
    nori_backend *b = ((fixture *)*state)->b;
    int stored = -1;
    if (strcmp(nori_backend_kind(b), "memory") == 0) {
        assert_nori(nori__backend_set_guarded(b, "e", "v", 1, 0, "g", NULL, 0, &stored),
                    NORI_EINVAL);
        assert_int_equal(stored, 0);
        expect_entry(b, "e", NULL);
        return;
    }
    /* Absent guard, absent expected: written (with its ttl). */
    assert_nori(nori__backend_set_guarded(b, "e", "v1", 2, 60, "g", NULL, 0, &stored), NORI_OK);
    assert_int_equal(stored, 1);
    expect_entry(b, "e", "v1");
    /* The guard moves: neither the old expectation nor "absent" writes. */
    assert_nori(nori_backend_set(b, "g", "t1", 2, 0), NORI_OK);
    assert_nori(nori__backend_set_guarded(b, "e", "v2", 2, 60, "g", NULL, 0, &stored), NORI_OK);
    assert_int_equal(stored, 0);
    assert_nori(nori__backend_set_guarded(b, "e", "v2", 2, 60, "g", "t0", 2, &stored), NORI_OK);
    assert_int_equal(stored, 0);
    assert_nori(nori__backend_set_guarded(b, "e", "v2", 2, 60, "g", "t", 1, &stored), NORI_OK);
    assert_int_equal(stored, 0);
    expect_entry(b, "e", "v1");
    /* The value it holds: written, binary-safe, without expiry (ttl 0). */
    assert_nori(nori__backend_set_guarded(b, "e", "v\0\n3", 4, 0, "g", "t1", 2, &stored),
                NORI_OK);
    assert_int_equal(stored, 1);
    nori_buf v;
    assert_nori(nori_backend_get(b, "e", &v), NORI_OK);
    assert_int_equal(v.len, 4);
    assert_memory_equal(v.data, "v\0\n3", 4);
    nori_buf_free(&v);
    expect_entry(b, "g", "t1"); /* the guard itself is never written */
    /* Bad arguments change nothing. */
    assert_nori(nori__backend_set_guarded(b, "e", "x", 1, -1, "g", "t1", 2, &stored), NORI_EINVAL);
    assert_nori(nori__backend_set_guarded(b, "e", "x", 1, 0, "", "t1", 2, &stored), NORI_EINVAL);
    assert_int_equal(stored, 0);
}

int main(void)
{
    const struct CMUnitTest cases[] = {
        cmocka_unit_test(test_add_and_release),
        cmocka_unit_test(test_lease_expires),
        cmocka_unit_test(test_set_guarded),
    };
    int failed = cmocka_run_group_tests_name("memory backend", cases, memory_setup, teardown);
    failed += cmocka_run_group_tests_name("redis backend", cases, redis_setup, teardown);
    return failed;
}
