// SPDX-License-Identifier: MIT
/* The response cache on a backend it knows only by its traits (src/backend.h):
 * a probe backend of kind "probe" (neither memory nor Redis) in front of a
 * memory backend, declaring each combination of shared / not shared and
 * binary / JSON entries. Each trait must decide exactly what it says:
 * shared takes the cross-process lease during a fill, writes entries through
 * set_guarded and keeps the invalidation generation in the backend; the
 * entry format decides the stored bytes and whether hits go through the
 * decoded-entry memo. Shared + binary is what a shared-memory backend
 * declares. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_support.h"

#include "backend.h"
#include "http/internal.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    nori_backend base;
    nori_backend *inner; /* a memory backend holding the keys */
    pthread_mutex_t lock; /* set_guarded's check and write as one step */
    int plain_sets, guarded_sets, gen_sets;
} probe_backend;

#define PROBE(b) ((probe_backend *)(b))
#define INNER(b) (PROBE(b)->inner)

static int probe_get(nori_backend *b, const char *key, size_t klen, nori_buf *out)
{
    return INNER(b)->ops->get(INNER(b), key, klen, out);
}
static int probe_set(nori_backend *b, const char *key, size_t klen, const void *val, size_t len,
                     int64_t ttl)
{
    if (strstr(key, "#gen:") != NULL)
        PROBE(b)->gen_sets++;
    else
        PROBE(b)->plain_sets++;
    return INNER(b)->ops->set(INNER(b), key, klen, val, len, ttl);
}
static int probe_del(nori_backend *b, const char *key, size_t klen)
{
    return INNER(b)->ops->del(INNER(b), key, klen);
}
static int probe_delete_prefix(nori_backend *b, const char *prefix, size_t plen)
{
    return INNER(b)->ops->delete_prefix(INNER(b), prefix, plen);
}
static int probe_incr(nori_backend *b, const char *key, size_t klen, int64_t ttl, int64_t *out)
{
    return INNER(b)->ops->incr(INNER(b), key, klen, ttl, out);
}
static int probe_update(nori_backend *b, const char *key, size_t klen, nori_update_fn fn,
                        void *ud, int64_t ttl, nori_buf *out)
{
    if (strstr(key, "#gen:") != NULL)
        PROBE(b)->gen_sets++; /* a generation bump: the list of bumps updated */
    return INNER(b)->ops->atomic_update(INNER(b), key, klen, fn, ud, ttl, out);
}
static int probe_verify(nori_backend *b)
{
    return INNER(b)->ops->verify(INNER(b));
}
static int probe_add(nori_backend *b, const char *key, size_t klen, const void *val, size_t len,
                     int64_t ttl_ms, int *added)
{
    return INNER(b)->ops->add(INNER(b), key, klen, val, len, ttl_ms, added);
}
static int probe_delete_if_equal(nori_backend *b, const char *key, size_t klen, const void *val,
                                 size_t len, int *deleted)
{
    return INNER(b)->ops->delete_if_equal(INNER(b), key, klen, val, len, deleted);
}
/* Writes key only when guard holds exactly expect (absent when NULL). */
static int probe_set_guarded(nori_backend *b, const char *key, size_t klen, const void *val,
                             size_t len, int64_t ttl, const char *guard, size_t glen,
                             const void *expect, size_t elen, int *stored)
{
    probe_backend *p = PROBE(b);
    pthread_mutex_lock(&p->lock);
    p->guarded_sets++;
    nori_buf cur = {NULL, 0};
    int rc = p->inner->ops->get(p->inner, guard, glen, &cur);
    bool same = rc == NORI_MISS ? expect == NULL
                                : rc == NORI_OK && expect != NULL && cur.len == elen &&
                                      memcmp(cur.data, expect, elen) == 0;
    nori_buf_free(&cur);
    *stored = 0;
    rc = rc == NORI_MISS ? NORI_OK : rc;
    if (rc == NORI_OK && same) {
        rc = p->inner->ops->set(p->inner, key, klen, val, len, ttl);
        *stored = rc == NORI_OK;
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}
static void probe_stats(nori_backend *b, nori_backend_stats *out)
{
    INNER(b)->ops->stats(INNER(b), out);
}
static void probe_destroy(nori_backend *b)
{
    pthread_mutex_destroy(&PROBE(b)->lock);
    nori_backend_free(INNER(b));
    free(b);
}

#define PROBE_OPS(shared_, format_)                                                         \
    {                                                                                       \
        .kind = "probe", .traits = {.shared = (shared_), .entry_format = (format_)},        \
        .get = probe_get, .set = probe_set, .del = probe_del,                               \
        .delete_prefix = probe_delete_prefix, .incr = probe_incr,                           \
        .atomic_update = probe_update, .verify = probe_verify, .add = probe_add,            \
        .delete_if_equal = probe_delete_if_equal, .set_guarded = probe_set_guarded,         \
        .stats = probe_stats, .destroy = probe_destroy,                                     \
    }

static const nori_backend_ops local_binary_ops = PROBE_OPS(false, NORI__ENTRY_BINARY);
static const nori_backend_ops local_json_ops = PROBE_OPS(false, NORI__ENTRY_JSON);
static const nori_backend_ops shared_binary_ops = PROBE_OPS(true, NORI__ENTRY_BINARY);
static const nori_backend_ops shared_json_ops = PROBE_OPS(true, NORI__ENTRY_JSON);

static probe_backend *probe_new(const nori_backend_ops *ops)
{
    probe_backend *p = calloc(1, sizeof *p);
    assert_non_null(p);
    assert_nori(nori_memory_backend_new(100, &p->inner), NORI_OK);
    pthread_mutex_init(&p->lock, NULL);
    nori__backend_init(&p->base, ops);
    return p;
}

/* The handler notes whether the key's lease was held while it ran. */
typedef struct {
    nori_http_cache *c;
    probe_backend *p;
    int calls;
    bool lease_seen;
} app;

static bool lease_held(app *a, const nori_http_request *req)
{
    char key[NORI_MAX_KEY_LEN + 1], lease[NORI_MAX_KEY_LEN + 8];
    assert_nori(nori_http_cache_key(a->c, req, key, sizeof key), NORI_OK);
    snprintf(lease, sizeof lease, "%s:lock", key);
    nori_buf v;
    int rc = nori_backend_get(a->p->inner, lease, &v);
    nori_buf_free(&v);
    return rc == NORI_OK;
}

static int handler(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    app *a = ud;
    a->calls++;
    if (strcmp(req->method, "GET") == 0)
        a->lease_seen = lease_held(a, req);
    return nori_http_response_set_body(resp, "probe body", 10);
}

static nori_http_origin serve(app *a, const char *method)
{
    nori_http_request rq = {method, "/p", "", NULL, NULL, NULL, 0, NULL};
    nori_http_response r;
    nori_http_response_init(&r);
    assert_nori(nori_http_cache_serve(a->c, &rq, handler, a, &r), NORI_OK);
    assert_int_equal(r.body_len, 10);
    assert_memory_equal(r.body, "probe body", 10);
    nori_http_origin o = r.origin;
    nori_http_response_clear(&r);
    return o;
}

static void check_traits(const nori_backend_ops *ops)
{
    bool shared = ops->traits.shared;
    bool binary = ops->traits.entry_format == NORI__ENTRY_BINARY;
    probe_backend *p = probe_new(ops);
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = &p->base;
    app a = {NULL, p, 0, false};
    assert_nori(nori_http_cache_new(&o, &a.c), NORI_OK);

    /* The fill: under the cross-process lease only when shared, and
     * written through set_guarded only when shared. */
    assert_int_equal(serve(&a, "GET"), NORI_HTTP_MISS);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.lease_seen, shared);
    assert_int_equal(p->guarded_sets, shared ? 1 : 0);
    assert_int_equal(p->plain_sets, shared ? 0 : 1);
    nori_http_request rq = {"GET", "/p", "", NULL, NULL, NULL, 0, NULL};
    assert_false(lease_held(&a, &rq)); /* released after the fill */

    /* The stored bytes: the binary record (body first, "NRB3" last) or
     * Nori's JSON entry. */
    char key[NORI_MAX_KEY_LEN + 1];
    assert_nori(nori_http_cache_key(a.c, &rq, key, sizeof key), NORI_OK);
    nori_buf v;
    assert_nori(nori_backend_get(p->inner, key, &v), NORI_OK);
    if (binary) {
        assert_true(v.len > 14);
        assert_memory_equal(v.data, "probe body", 10);
        assert_memory_equal(v.data + v.len - 4, "NRB3", 4);
    } else {
        assert_int_equal(v.data[0], '{');
        assert_non_null(strstr(v.data, "\"body_b64\""));
    }
    nori_buf_free(&v);

    /* Hits: JSON entries through the memo (the second hit is the memo's),
     * binary records decoded in place. */
    assert_int_equal(serve(&a, "GET"), NORI_HTTP_HIT);
    assert_int_equal(serve(&a, "GET"), NORI_HTTP_HIT);
    assert_int_equal(a.calls, 1);
    nori_http_cache_stats s;
    nori_http_cache_get_stats(a.c, &s);
    assert_int_equal(s.memo_hits, binary ? 0 : 1);

    /* A write: its generation goes to the backend only when shared, and
     * the entry goes either way. */
    assert_int_equal(serve(&a, "POST"), NORI_HTTP_BYPASS);
    assert_int_equal(p->gen_sets, shared ? 1 : 0);
    assert_int_equal(serve(&a, "GET"), NORI_HTTP_MISS);
    assert_int_equal(a.calls, 3);
    nori_http_cache_get_stats(a.c, &s);
    assert_int_equal(s.stores, 2);
    assert_int_equal(s.errors, 0);

    nori_http_cache_free(a.c);
    nori_backend_free(&p->base);
}

static void test_local_binary(void **state)
{
    (void)state;
    check_traits(&local_binary_ops); /* the memory backend's traits */
}

static void test_shared_json(void **state)
{
    (void)state;
    check_traits(&shared_json_ops); /* Redis's */
}

static void test_shared_binary(void **state)
{
    (void)state;
    check_traits(&shared_binary_ops); /* a shared-memory backend's */
}

static void test_local_json(void **state)
{
    (void)state;
    check_traits(&local_json_ops);
}

/* The real backends declare what the cache relies on. */
static void test_backends_declare(void **state)
{
    (void)state;
    nori_backend *b;
    assert_nori(nori_memory_backend_new(10, &b), NORI_OK);
    assert_false(nori__backend_traits(b)->shared);
    assert_int_equal(nori__backend_traits(b)->entry_format, NORI__ENTRY_BINARY);
    nori_backend_free(b);
    /* The Redis backend connects lazily: nothing needs to listen. */
    assert_nori(nori_redis_backend_new("redis://127.0.0.1:1?connect_timeout_ms=100", &b), NORI_OK);
    assert_true(nori__backend_traits(b)->shared);
    assert_int_equal(nori__backend_traits(b)->entry_format, NORI__ENTRY_JSON);
    assert_non_null(b->ops->set_guarded); /* a shared backend must offer it */
    assert_nori(nori_redis_backend_enable_near(b, 10, 0, 1000), NORI_OK);
    assert_true(nori__backend_traits(b)->shared); /* the near cache keeps them */
    assert_int_equal(nori__backend_traits(b)->entry_format, NORI__ENTRY_JSON);
    assert_non_null(b->ops->set_guarded);
    nori_backend_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_local_binary),  cmocka_unit_test(test_shared_json),
        cmocka_unit_test(test_shared_binary), cmocka_unit_test(test_local_json),
        cmocka_unit_test(test_backends_declare),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
