// SPDX-License-Identifier: MIT
/*
 * The fixture of the near cache suites on one server (test_near_listener.c,
 * test_near_backend.c, test_near_monotonic.c): a private redis-server with a
 * password, and a raw connection to it that stands for another process
 * (`writer`); for the backend suites, process A (a Redis backend with a near
 * cache) and B (a plain backend, another client), all made fresh for each
 * case by backend_setup and backend_teardown.
 *
 * Include after the cmocka headers and test_support.h. Failures fail the
 * test; every wait is bounded.
 */
#ifndef NORI_TEST_NEAR_FIXTURE_H
#define NORI_TEST_NEAR_FIXTURE_H

#include "nori/cache.h"
#include "redis_server.h"

#include <hiredis/hiredis.h>
#include <stdint.h>

extern nori_test_redis *server;     /* password "near-Secret" */
extern redisContext *writer;        /* "another process" */
extern nori_backend *near_backend;  /* A: with the near cache */
extern nori_backend *plain_backend; /* B: another client of the same server */

/* A fresh server, A, B and writer; all stopped and freed by the teardown. */
int backend_setup(void **state);
int backend_teardown(void **state);

/* A command on c that must not fail (or be refused). */
void ok_command(redisContext *c, const char *fmt, ...);

/* A command on c that must answer an integer: that integer. */
long long int_command(redisContext *c, const char *cmd);

/* The server's total_commands_processed (INFO stats, asked through writer). */
long long commands_processed(void);

/* A's near cache counters. */
nori_near_stats near_stats(void);

/* A's value of key is want (NULL: a miss), now. */
void expect_a(const char *key, const char *want);

/* Reads key through A until it is served locally (bounded). */
void a_make_local(const char *key, const char *want);

/* Waits up to 1 s for A to read want (NULL: a miss); returns the delay in
 * us from t0 (near_now_us() time). */
int64_t a_wait_for(const char *key, const char *want, int64_t t0);

#endif
