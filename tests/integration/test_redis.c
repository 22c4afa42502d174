// SPDX-License-Identifier: MIT
/*
 * Redis-only checks: what the backend leaves on the server, seen through a
 * raw hiredis connection (the wire format shared with Nori's Python code),
 * URL handling, verify, and CACHE_BACKEND=redis end to end.
 *
 * NORI_TEST_TOPOLOGY=cluster|sentinel (tests/support/redis_topology.h; CTest
 * entries test_redis_cluster, test_redis_sentinel) runs the same cases on a
 * Redis Cluster or through Sentinel; the raw checks then look at the master
 * that owns each key. Skipped there, saying why: test_password_forms and
 * test_unix_socket (one server's unix socket and URL forms), and on the
 * cluster test_db_and_auth (a cluster has only db 0; the harness's cluster
 * has no password). Through Sentinel, test_db_and_auth uses the sentinel
 * URL form (/mymaster/3 and a wrong password).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis_topology.h"
#include "test_support.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct fixture {
    nori_test_topology *topo; /* one server unless NORI_TEST_TOPOLOGY says otherwise */
    nori_backend *b;
} fixture;

static int group_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->topo = nori_test_topology_start();
    print_message("Redis set-up: %s (%s)\n", f->topo->name, f->topo->url);
    assert_nori(nori_redis_backend_new(f->topo->url, &f->b), NORI_OK);
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    nori_backend_free(f->b);
    nori_test_topology_stop(f->topo);
    free(f);
    return 0;
}

static bool one_server(const fixture *f)
{
    return f->topo->kind == NORI_TEST_TOPOLOGY_SERVER;
}

/* Ends the case as skipped on a cluster or sentinel set-up, saying why. */
#define SKIP_UNLESS_ONE_SERVER(f, why)                                                      \
    do {                                                                                    \
        if (!one_server(f)) {                                                               \
            print_message("skipped on %s: %s; covered by test_redis on one server\n",     \
                          (f)->topo->name, why);                                            \
            skip();                                                                         \
        }                                                                                   \
    } while (0)

static int case_setup(void **state)
{
    fixture *f = *state;
    assert_nori(nori_backend_flush(f->b), NORI_OK);
    return 0;
}

/* Runs a raw command on a fresh connection to the master that owns `key`
 * (the Redis key the command touches; NULL: any master); the reply is owned
 * by the caller. */
static redisReply *raw(fixture *f, const char *key, const char *fmt, ...)
{
    redisContext *c = nori_test_topology_connect(f->topo, key);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (r == NULL)
        fail_msg("raw command '%s' (key %s): %s", fmt, key != NULL ? key : "-", c->errstr);
    redisFree(c);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("raw command '%s' (key %s): %s", fmt, key != NULL ? key : "-", r->str);
    return r;
}

/* fmt takes the key as its one argument. */
static long long raw_int(fixture *f, const char *fmt, const char *key)
{
    redisReply *r = raw(f, key, fmt, key);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* The sum of an integer command's replies (DBSIZE) over every master. */
static long long sum_over_masters(fixture *f, const char *cmd)
{
    void *m[8];
    int n = nori_test_topology_masters(f->topo, m, 8);
    long long sum = 0;
    for (int i = 0; i < n; i++) {
        redisReply *r = redisCommand(m[i], cmd);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_INTEGER);
        sum += r->integer;
        freeReplyObject(r);
        redisFree(m[i]);
    }
    return sum;
}

/* How many keys match pattern on every master together. */
static size_t keys_over_masters(fixture *f, const char *pattern)
{
    void *m[8];
    int n = nori_test_topology_masters(f->topo, m, 8);
    size_t count = 0;
    for (int i = 0; i < n; i++) {
        redisReply *r = redisCommand(m[i], "KEYS %s", pattern);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);
        count += r->elements;
        freeReplyObject(r);
        redisFree(m[i]);
    }
    return count;
}

static void test_keys_carry_prefix(void **state)
{
    fixture *f = *state;
    assert_nori(nori_backend_set(f->b, "user:42", "{\"a\":1}", 7, 0), NORI_OK);
    redisReply *r = raw(f, "cache:user:42", "GET cache:user:42");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "{\"a\":1}");
    freeReplyObject(r);
    assert_int_equal(raw_int(f, "EXISTS %s", "user:42"), 0);
    int64_t n;
    assert_nori(nori_backend_incr(f->b, "hits", 0, &n), NORI_OK);
    r = raw(f, "cache:hits", "GET cache:hits");
    assert_string_equal(r->str, "1");
    freeReplyObject(r);
    assert_nori(nori_backend_delete(f->b, "user:42"), NORI_OK);
    assert_int_equal(raw_int(f, "EXISTS %s", "cache:user:42"), 0);
}

static void test_server_ttl(void **state)
{
    fixture *f = *state;
    assert_nori(nori_backend_set(f->b, "t", "v", 1, 100), NORI_OK);
    long long ttl = raw_int(f, "TTL %s", "cache:t");
    assert_true(ttl > 0 && ttl <= 100);
    assert_nori(nori_backend_set(f->b, "p", "v", 1, 0), NORI_OK);
    assert_int_equal(raw_int(f, "TTL %s", "cache:p"), -1);
    /* incr: TTL applied on creation only; a later ttl does not extend. */
    int64_t n;
    assert_nori(nori_backend_incr(f->b, "c", 50, &n), NORI_OK);
    ttl = raw_int(f, "TTL %s", "cache:c");
    assert_true(ttl > 0 && ttl <= 50);
    assert_nori(nori_backend_incr(f->b, "c", 5000, &n), NORI_OK);
    ttl = raw_int(f, "TTL %s", "cache:c");
    assert_true(ttl > 0 && ttl <= 50);
    assert_nori(nori_backend_incr(f->b, "c0", 0, &n), NORI_OK);
    assert_nori(nori_backend_incr(f->b, "c0", 30, &n), NORI_OK);
    assert_int_equal(raw_int(f, "TTL %s", "cache:c0"), -1);
}

static int write_abc(const nori_buf *cur, nori_buf *next, void *ud)
{
    (void)cur;
    (void)ud;
    next->data = malloc(3);
    memcpy(next->data, "abc", 3);
    next->len = 3;
    return 0;
}

static void test_keepttl(void **state)
{
    fixture *f = *state;
    assert_nori(nori_backend_set(f->b, "k", "v", 1, 1000), NORI_OK);
    /* Lower the server TTL below the one set, to tell "kept" from "reset". */
    freeReplyObject(raw(f, "cache:k", "EXPIRE cache:k 77"));
    assert_nori(nori_backend_atomic_update(f->b, "k", write_abc, NULL, 0, NULL), NORI_OK);
    long long ttl = raw_int(f, "TTL %s", "cache:k");
    assert_true(ttl > 70 && ttl <= 77);
    assert_nori(nori_backend_atomic_update(f->b, "k", write_abc, NULL, 500, NULL), NORI_OK);
    ttl = raw_int(f, "TTL %s", "cache:k");
    assert_true(ttl > 400 && ttl <= 500);
    assert_nori(nori_backend_atomic_update(f->b, "nk", write_abc, NULL, 0, NULL), NORI_OK);
    assert_int_equal(raw_int(f, "TTL %s", "cache:nk"), -1);
}

static void test_flush_leaves_other_keys(void **state)
{
    fixture *f = *state;
    /* Keys outside the prefix that were there before (the cluster harness
     * leaves one on each master) must stay too. */
    long long before = sum_over_masters(f, "DBSIZE");
    freeReplyObject(raw(f, "other:key", "SET other:key keep"));
    freeReplyObject(raw(f, "cachex", "SET cachex nope"));
    freeReplyObject(raw(f, "xcache:y", "SET xcache:y nope"));
    /* More than one SCAN batch of cache: keys. */
    for (int i = 0; i < 2500; i++) {
        char k[32];
        snprintf(k, sizeof k, "bulk%d", i);
        assert_nori(nori_backend_set(f->b, k, "v", 1, i % 3 == 0 ? 0 : 600), NORI_OK);
    }
    assert_nori(nori_backend_flush(f->b), NORI_OK);
    assert_int_equal(keys_over_masters(f, "cache:*"), 0);
    assert_int_equal(sum_over_masters(f, "DBSIZE"), before + 3);
    redisReply *r = raw(f, "other:key", "GET other:key");
    assert_string_equal(r->str, "keep");
    freeReplyObject(r);
    /* One DEL per key: on a cluster the three live in different slots. */
    static const char *const others[] = {"other:key", "cachex", "xcache:y"};
    for (int i = 0; i < 3; i++)
        freeReplyObject(raw(f, others[i], "DEL %s", others[i]));
}

static void test_foreign_values(void **state)
{
    fixture *f = *state;
    /* Written by another client, e.g. Nori's Python cache_set of a dict. */
    const char *json = "{\"body_b64\": \"aGk=\", \"status_code\": 200, \"media_type\": \"text/plain\"}";
    freeReplyObject(raw(f, "cache:view:/x:", "SET cache:view:/x: %s", json));
    freeReplyObject(raw(f, "cache:plain", "SET cache:plain %s", "hello world"));
    freeReplyObject(raw(f, "cache:bin", "SET cache:bin %b", "a\0b", (size_t)3));
    nori_buf v;
    assert_nori(nori_backend_get(f->b, "view:/x:", &v), NORI_OK);
    assert_string_equal(v.data, json);
    nori_buf_free(&v);
    assert_nori(nori_backend_get(f->b, "plain", &v), NORI_OK);
    assert_string_equal(v.data, "hello world");
    nori_buf_free(&v);
    assert_nori(nori_backend_get(f->b, "bin", &v), NORI_OK);
    assert_int_equal(v.len, 3);
    assert_memory_equal(v.data, "a\0b", 3);
    nori_buf_free(&v);
    /* A counter another client INCRed is a counter here too. */
    freeReplyObject(raw(f, "cache:fc", "INCRBY cache:fc 41"));
    int64_t n;
    assert_nori(nori_backend_incr(f->b, "fc", 0, &n), NORI_OK);
    assert_int_equal(n, 42);
    /* A key of another type is a server error, not a crash. */
    freeReplyObject(raw(f, "cache:list", "LPUSH cache:list x"));
    assert_nori(nori_backend_get(f->b, "list", &v), NORI_EBACKEND);
    assert_non_null(strstr(nori_last_error(), "WRONGTYPE"));
    assert_nori(nori_backend_incr(f->b, "list", 0, &n), NORI_EBACKEND);
    /* The connection that got the error reply is still usable. */
    assert_nori(nori_backend_get(f->b, "plain", &v), NORI_OK);
    nori_buf_free(&v);
}

/* The script cache can be emptied under the backend: EVAL takes over. On a
 * cluster the script runs on the key's master, whose cache is emptied. */
static void test_noscript_fallback(void **state)
{
    fixture *f = *state;
    int64_t n;
    assert_nori(nori_backend_incr(f->b, "s", 0, &n), NORI_OK);
    freeReplyObject(raw(f, "cache:s", "SCRIPT FLUSH"));
    assert_nori(nori_backend_incr(f->b, "s", 0, &n), NORI_OK);
    assert_int_equal(n, 2);
    redisReply *r = raw(f, "cache:s", "SCRIPT EXISTS 137df22802a5543446842ecc7afe8dbcae3fa515");
    assert_int_equal(r->element[0]->integer, 1);
    freeReplyObject(r);
}

static void test_url_errors(void **state)
{
    (void)state;
    nori_backend *b = NULL;
    assert_nori(nori_redis_backend_new("rediss://:s3cret@127.0.0.1:6379", &b), NORI_EINVAL);
    assert_null(b);
    assert_non_null(strstr(nori_last_error(), "TLS"));
    assert_null(strstr(nori_last_error(), "s3cret"));
    assert_nori(nori_redis_backend_new("http://127.0.0.1", &b), NORI_EINVAL);
    assert_nori(nori_redis_backend_new("redis://127.0.0.1:6379?nope=1", &b), NORI_EINVAL);
    assert_nori(nori_redis_backend_new(NULL, &b), NORI_EINVAL);
    assert_null(b);
}

/* test_db_and_auth through Sentinel: the master's password and a db number
 * in the redis+sentinel:// form. */
static void db_and_auth_through_sentinel(fixture *f)
{
    const nori_test_sentinel *s = f->topo->sentinel;
    char hosts[128], url[400];
    snprintf(hosts, sizeof hosts, "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", s->sentinel[0].port,
             s->sentinel[1].port, s->sentinel[2].port);
    nori_backend *b;
    snprintf(url, sizeof url, "redis+sentinel://:wrong-pass@%s/mymaster", hosts);
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    assert_nori(nori_backend_verify(b), NORI_EBACKEND);
    assert_non_null(strstr(nori_last_error(), "AUTH"));
    assert_null(strstr(nori_last_error(), "wrong-pass"));
    assert_non_null(strstr(nori_last_error(), "***"));
    nori_backend_free(b);
    snprintf(url, sizeof url, "redis+sentinel://default:%s@%s/mymaster/3", s->password, hosts);
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    assert_nori(nori_backend_verify(b), NORI_OK);
    assert_nori(nori_backend_set(b, "indb3", "v", 1, 0), NORI_OK);
    redisContext *c = nori_test_topology_connect(f->topo, NULL);
    redisReply *r = redisCommand(c, "EXISTS cache:indb3");
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    freeReplyObject(redisCommand(c, "SELECT 3"));
    r = redisCommand(c, "EXISTS cache:indb3");
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    freeReplyObject(redisCommand(c, "DEL cache:indb3"));
    redisFree(c);
    nori_backend_free(b);
}

static void test_db_and_auth(void **state)
{
    fixture *f = *state;
    if (f->topo->kind == NORI_TEST_TOPOLOGY_SENTINEL) {
        db_and_auth_through_sentinel(f);
        return;
    }
    SKIP_UNLESS_ONE_SERVER(f, "a cluster has only db 0, and the test cluster no password");
    nori_test_redis *s = nori_test_redis_start("pw-Secret_1");
    char url[300];
    nori_backend *b;
    /* Wrong password: lazy, so creation succeeds and the first call fails. */
    snprintf(url, sizeof url, "redis://:wrong-pass@127.0.0.1:%d", s->port);
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    assert_nori(nori_backend_verify(b), NORI_EBACKEND);
    assert_non_null(strstr(nori_last_error(), "AUTH"));
    assert_null(strstr(nori_last_error(), "wrong-pass"));
    assert_non_null(strstr(nori_last_error(), "***"));
    nori_backend_free(b);
    /* Right password with an explicit user (default), db 3. */
    snprintf(url, sizeof url, "redis://default:pw-Secret_1@127.0.0.1:%d/3", s->port);
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    assert_nori(nori_backend_verify(b), NORI_OK);
    assert_nori(nori_backend_set(b, "indb3", "v", 1, 0), NORI_OK);
    redisContext *c = nori_test_redis_connect(s);
    assert_non_null(c);
    redisReply *r = redisCommand(c, "EXISTS cache:indb3");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    freeReplyObject(redisCommand(c, "SELECT 3"));
    r = redisCommand(c, "EXISTS cache:indb3");
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    redisFree(c);
    nori_backend_free(b);
    nori_test_redis_stop(s);
}

/* The password in the forms issue 10 item 19 names, against a real
 * password-protected server: redis://PASSWORD@host (Lettuce's form) and
 * unix:///path?password=P&user=U&db=N (redis-py's form). A wrong password
 * in either form is refused by the server without the password shown. */
static void test_password_forms(void **state)
{
    SKIP_UNLESS_ONE_SERVER((fixture *)*state, "the unix:// and password@host forms address one "
                                              "server");
    nori_test_redis *s = nori_test_redis_start("Sup3rS3cret");
    char url[4400];
    nori_backend *b;
    snprintf(url, sizeof url, "redis://Sup3rS3cret@127.0.0.1:%d", s->port);
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    assert_nori(nori_backend_verify(b), NORI_OK);
    assert_nori(nori_backend_set(b, "lettuce", "1", 1, 0), NORI_OK);
    nori_backend_free(b);

    snprintf(url, sizeof url, "unix://%s?user=default&password=Sup3rS3cret&db=4&timeout_ms=500",
             s->socket_path);
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    assert_nori(nori_backend_verify(b), NORI_OK);
    assert_nori(nori_backend_set(b, "redis-py", "2", 1, 0), NORI_OK);
    nori_backend_free(b);
    redisContext *c = nori_test_redis_connect(s);
    assert_non_null(c);
    freeReplyObject(redisCommand(c, "SELECT 4"));
    redisReply *r = redisCommand(c, "EXISTS cache:redis-py");
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    redisFree(c);

    snprintf(url, sizeof url, "unix://%s?password=Wr0ngPassw0rd", s->socket_path);
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    assert_nori(nori_backend_verify(b), NORI_EBACKEND);
    assert_non_null(strstr(nori_last_error(), "AUTH"));
    assert_null(strstr(nori_last_error(), "Wr0ngPassw0rd"));
    assert_non_null(strstr(nori_last_error(), "password=***"));
    nori_backend_free(b);
    snprintf(url, sizeof url, "redis://Wr0ngPassw0rd@127.0.0.1:%d", s->port);
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    assert_nori(nori_backend_verify(b), NORI_EBACKEND);
    assert_null(strstr(nori_last_error(), "Wr0ngPassw0rd"));
    assert_non_null(strstr(nori_last_error(), "redis://***@127.0.0.1"));
    nori_backend_free(b);
    nori_test_redis_stop(s);
}

static void test_unix_socket(void **state)
{
    fixture *f = *state;
    SKIP_UNLESS_ONE_SERVER(f, "a unix socket reaches one server");
    char url[4300];
    snprintf(url, sizeof url, "unix://%s?db=2&timeout_ms=500", f->topo->server->socket_path);
    nori_backend *b;
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    assert_nori(nori_backend_verify(b), NORI_OK);
    assert_nori(nori_backend_set(b, "via-unix", "u", 1, 0), NORI_OK);
    int64_t n;
    assert_nori(nori_backend_incr(b, "uc", 0, &n), NORI_OK);
    nori_backend_free(b);
    /* It went to db 2, not db 0. */
    assert_int_equal(raw_int(f, "EXISTS %s", "cache:via-unix"), 0);
    redisContext *c = nori_test_topology_connect(f->topo, NULL);
    freeReplyObject(redisCommand(c, "SELECT 2"));
    redisReply *r = redisCommand(c, "EXISTS cache:via-unix");
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    freeReplyObject(redisCommand(c, "DEL cache:via-unix cache:uc"));
    redisFree(c);
}

/* connected_clients of the master that owns cache:pooled, minus the raw
 * connection that asks. */
static long long backend_clients(fixture *f)
{
    redisReply *r = raw(f, "cache:pooled", "INFO clients");
    const char *p = strstr(r->str, "connected_clients:");
    assert_non_null(p);
    long long n = strtoll(p + strlen("connected_clients:"), NULL, 10);
    freeReplyObject(r);
    return n - 1;
}

typedef struct {
    nori_backend *b;
    int failures;
} pool_job;

static void *pool_worker(void *arg)
{
    pool_job *j = arg;
    for (int i = 0; i < 300; i++) {
        nori_buf v;
        if (nori_backend_get(j->b, "pooled", &v) != NORI_OK)
            j->failures++;
        nori_buf_free(&v);
    }
    return NULL;
}

/* Threads beyond pool_size get connections of their own, but only
 * pool_size stay open afterwards; freeing the backend closes them all. */
static void test_pool_bound(void **state)
{
    fixture *f = *state;
    long long before = backend_clients(f);
    char url[600];
    snprintf(url, sizeof url, "%s?pool_size=2", f->topo->url);
    nori_backend *b;
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    assert_int_equal(backend_clients(f) - before, 0); /* lazy: nothing yet */
    assert_nori(nori_backend_set(b, "pooled", "p", 1, 0), NORI_OK);
    pthread_t t[8];
    pool_job jobs[8] = {{0}};
    for (int i = 0; i < 8; i++) {
        jobs[i].b = b;
        assert_int_equal(pthread_create(&t[i], NULL, pool_worker, &jobs[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(jobs[i].failures, 0);
    }
    long long open = backend_clients(f) - before;
    assert_true(open >= 1 && open <= 2);
    nori_backend_free(b);
    for (int i = 0; i < 100 && backend_clients(f) != before; i++)
        usleep(10 * 1000);
    assert_int_equal(backend_clients(f), before);
}

static void test_backend_from_env(void **state)
{
    fixture *f = *state;
    setenv("CACHE_BACKEND", "redis", 1);
    setenv("REDIS_URL", f->topo->url, 1);
    nori_backend *b;
    assert_nori(nori_backend_from_env(&b), NORI_OK);
    assert_string_equal(nori_backend_kind(b), "redis");
    assert_nori(nori_backend_set(b, "env", "yes", 3, 0), NORI_OK);
    nori_backend_free(b);
    /* The convenience API on the default backend sees the same key. */
    nori_buf v;
    assert_nori(nori_cache_get("env", &v), NORI_OK);
    assert_string_equal(v.data, "yes");
    nori_buf_free(&v);
    nori_reset_backend();
    unsetenv("CACHE_BACKEND");
    unsetenv("REDIS_URL");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_keys_carry_prefix, case_setup),
        cmocka_unit_test_setup(test_server_ttl, case_setup),
        cmocka_unit_test_setup(test_keepttl, case_setup),
        cmocka_unit_test_setup(test_flush_leaves_other_keys, case_setup),
        cmocka_unit_test_setup(test_foreign_values, case_setup),
        cmocka_unit_test_setup(test_noscript_fallback, case_setup),
        cmocka_unit_test(test_url_errors),
        cmocka_unit_test(test_db_and_auth),
        cmocka_unit_test(test_password_forms),
        cmocka_unit_test_setup(test_unix_socket, case_setup),
        cmocka_unit_test_setup(test_pool_bound, case_setup),
        cmocka_unit_test_setup(test_backend_from_env, case_setup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
