// SPDX-License-Identifier: MIT
/*
 * The fixture of the near cache suites on one server; see near_fixture.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "near_fixture.h"

#include "clock.h"
#include "test_support.h"
#include "virtual_clock.h"
#include "near_checks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

nori_test_redis *server;
redisContext *writer;
nori_backend *near_backend;
nori_backend *plain_backend;

long long int_command(redisContext *c, const char *cmd)
{
    redisReply *r = redisCommand(c, cmd);
    if (r == NULL || r->type != REDIS_REPLY_INTEGER)
        fail_msg("%s: %s", cmd,
                 r == NULL ? c->errstr : r->type == REDIS_REPLY_ERROR ? r->str : "?");
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

void ok_command(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        fail_msg("%s: %s", fmt, r == NULL ? c->errstr : r->str);
    freeReplyObject(r);
}

long long commands_processed(void)
{
    redisReply *r = redisCommand(writer, "INFO stats");
    assert_non_null(r);
    const char *p = strstr(r->str, "total_commands_processed:");
    assert_non_null(p);
    long long n = atoll(p + strlen("total_commands_processed:"));
    freeReplyObject(r);
    return n;
}

int backend_setup(void **state)
{
    (void)state;
    server = nori_test_redis_start("near-Secret");
    /* B checks exactness, not timeouts: a generous deadline keeps a loaded
     * machine (sanitizers, 8 reader threads, parallel ctest) from failing it. */
    char plain_url[512];
    snprintf(plain_url, sizeof plain_url, "%s?timeout_ms=10000", server->url);
    if (nori_redis_backend_new(server->url, &near_backend) != NORI_OK ||
        nori_redis_backend_enable_near(near_backend, 1000, 1 << 20, 0) != NORI_OK ||
        nori_redis_backend_new(plain_url, &plain_backend) != NORI_OK)
        return -1;
    writer = nori_test_redis_connect(server);
    return writer != NULL ? 0 : -1;
}

int backend_teardown(void **state)
{
    (void)state;
    nori_test_clock_uninstall(); /* when a case on the virtual clock failed */
    nori_backend_free(near_backend);
    nori_backend_free(plain_backend);
    near_backend = plain_backend = NULL;
    redisFree(writer);
    writer = NULL;
    nori_test_redis_stop(server);
    return 0;
}

nori_near_stats near_stats(void)
{
    nori_near_stats st;
    assert_nori(nori_backend_get_near_stats(near_backend, &st), NORI_OK);
    return st;
}

/* A's value of key is want (NULL: a miss). */
void expect_a(const char *key, const char *want)
{
    nori_buf v;
    int rc = nori_backend_get(near_backend, key, &v);
    if (want == NULL) {
        assert_nori(rc, NORI_MISS);
        return;
    }
    assert_nori(rc, NORI_OK);
    assert_string_equal(v.data, want);
    nori_buf_free(&v);
}

/* Reads key through A until it is served locally (bounded). */
void a_make_local(const char *key, const char *want)
{
    /* The listener subscribes in the background: a fresh backend, or one
     * whose tracking was just lost, serves nothing locally until then. */
    int64_t deadline = nori__now_ms() + 3000;
    while (!near_stats().active) {
        if (nori__now_ms() > deadline)
            fail_msg("A's near cache did not become active within 3 s");
        near_pause_ms(1);
    }
    for (int i = 0; i < 5; i++) {
        uint64_t hits = near_stats().hits;
        expect_a(key, want);
        if (near_stats().hits > hits)
            return;
    }
    fail_msg("A never served %s locally", key);
}

/* Waits up to 1 s for A to read want (NULL: a miss); returns the delay in us. */
int64_t a_wait_for(const char *key, const char *want, int64_t t0)
{
    for (;;) {
        nori_buf v;
        int rc = nori_backend_get(near_backend, key, &v);
        bool ok = want == NULL ? rc == NORI_MISS
                               : rc == NORI_OK && strcmp(v.data, want) == 0;
        if (rc == NORI_OK)
            nori_buf_free(&v);
        int64_t now = near_now_us();
        if (ok)
            return now - t0;
        if (now - t0 > 1000000)
            fail_msg("A still did not read %s as %s 1 s after B's change", key,
                     want != NULL ? want : "(miss)");
        struct timespec gap = {0, 50000};
        nanosleep(&gap, NULL);
    }
}

