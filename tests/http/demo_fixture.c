// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "demo_fixture.h"
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* The Redis set-up of the fixtures alive in this process, and how many. */
static nori_test_topology *shared_redis;
static int shared_users;

int test_demo_fixture_start(test_demo_fixture *f, const char *exe, const char *tag,
                            const char *prefix, bool on_redis)
{
    f->tmpdir = nori_test_mkdtemp();
    f->redis = NULL;
    char db[512], log[512];
    snprintf(db, sizeof db, "%s/demo.db", f->tmpdir);
    snprintf(log, sizeof log, "%s/demo.log", f->tmpdir);
    if (prefix != NULL)
        snprintf(f->prefix, sizeof f->prefix, "%s", prefix);
    else
        snprintf(f->prefix, sizeof f->prefix, "%s%ld-%ld", tag, (long)getpid(),
                 (long)time(NULL));
    if (on_redis) {
        if (shared_redis == NULL)
            shared_redis = nori_test_topology_start();
        shared_users++;
        f->redis = shared_redis;
        setenv("CACHE_BACKEND", "redis", 1);
        setenv("REDIS_URL", f->redis->url, 1);
    } else {
        setenv("CACHE_BACKEND", "memory", 1);
    }
    print_message("nori-demo on backend %s (%s REDIS_URL=%s), prefix %s\n",
                  on_redis ? "redis" : "memory", on_redis ? f->redis->name : "",
                  on_redis ? f->redis->url : "-", f->prefix);
    /* Sanitizer builds create the 200k-row database slowly: be patient. */
    return test_demo_start(&f->demo, exe, db, f->prefix, log, 120) == 0 ? 0 : -1;
}

void test_demo_fixture_stop(test_demo_fixture *f)
{
    if (f->demo.pid > 0)
        test_demo_stop(&f->demo, 10);
    nori_test_rmtree(f->tmpdir);
    free(f->tmpdir);
    f->tmpdir = NULL;
    if (f->redis != NULL && --shared_users == 0) {
        nori_test_topology_stop(shared_redis);
        shared_redis = NULL;
    }
    f->redis = NULL;
}

test_http_response test_demo_fixture_get(test_demo_fixture *f, const char *target,
                                         const char *headers)
{
    test_http_response r;
    if (test_http_once(f->demo.port, "GET", target, headers, NULL, &r) != 0)
        test_demo_print_log(&f->demo);
    assert_non_null(r.head);
    return r;
}

void test_demo_fixture_assert_clean_stop(test_demo_fixture *f)
{
    int code = test_demo_stop(&f->demo, 20);
    if (code != 0)
        test_demo_print_log(&f->demo);
    assert_int_equal(code, 0);
}
