// SPDX-License-Identifier: MIT
/*
 * A nori-demo child for one test group: a fresh temporary directory holding
 * its database and log, on the memory backend or on a private Redis set-up
 * that the fixture starts and stops: one redis-server, or the cluster or
 * sentinel set-up NORI_TEST_TOPOLOGY names (tests/support/redis_topology.h).
 * Fixtures alive at the same time in one process share one set-up (a
 * cluster takes seconds to start); their key prefixes keep them apart.
 * Include after the cmocka headers.
 */
#ifndef NORI_TEST_DEMO_FIXTURE_H
#define NORI_TEST_DEMO_FIXTURE_H

#include <stdbool.h>

#include "demo_process.h"
#include "http_client.h"
#include "redis_topology.h"

typedef struct {
    test_demo demo;
    char *tmpdir;
    nori_test_topology *redis; /* shared, NULL on the memory backend */
    char prefix[64];        /* the cache key prefix the demo runs with */
} test_demo_fixture;

/*
 * Starts `exe` with key prefix `prefix` (NULL: "<tag><pid>-<time>", unique
 * per run), on a private Redis set-up when on_redis (CACHE_BACKEND and
 * REDIS_URL are set for the child), else on the memory backend. Returns 0, or
 * -1 with the demo's log printed.
 */
int test_demo_fixture_start(test_demo_fixture *f, const char *exe, const char *tag,
                            const char *prefix, bool on_redis);

/* GET on a fresh connection to the demo; asserts the transport worked (and
 * prints the demo's log when it did not). Free with test_http_response_free. */
test_http_response test_demo_fixture_get(test_demo_fixture *f, const char *target,
                                         const char *headers);

/* SIGTERM, then asserts exit code 0: sanitizer builds make a leak or an
 * error during shutdown a non-zero exit. */
void test_demo_fixture_assert_clean_stop(test_demo_fixture *f);

/* Stops the demo (if still running), removes the directory, and stops the
 * Redis set-up when no other fixture uses it. */
void test_demo_fixture_stop(test_demo_fixture *f);

#endif
