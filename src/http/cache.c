/*
 * The response cache: looks a GET request up, serves it from the cache or
 * runs the handler and stores what may be stored (DESIGN 5). The key shape
 * is in http_key.c, the value format in entry_codec.c.
 *
 * Fail open: every cache failure (backend error, undecodable entry, key too
 * long) is counted and the handler's response is served; the request itself
 * never fails because of the cache.
 */
#include "http_internal.h"

#include "error.h"

#include <ctype.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct nori_http_cache {
    int64_t ttl;
    char *prefix;
    nori_http_key_fn key_fn;
    void *key_fn_ud;
    char **vary_on; /* lower-cased copies */
    size_t n_vary_on;
    nori_backend *backend; /* borrowed; NULL = default backend */
    _Atomic uint64_t hits, misses, stores, errors;
};

void nori_http_cache_options_init(nori_http_cache_options *o)
{
    memset(o, 0, sizeof *o);
    o->ttl = 60;
    o->prefix = "view";
}

void nori_http_cache_free(nori_http_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n_vary_on; i++)
        free(c->vary_on[i]);
    free(c->vary_on);
    free(c->prefix);
    free(c);
}

int nori_http_cache_new(const nori_http_cache_options *opts, nori_http_cache **out)
{
    nori_http_cache_options defaults;
    if (out == NULL)
        return nori__fail(NORI_EINVAL, "out is NULL");
    if (opts == NULL) {
        nori_http_cache_options_init(&defaults);
        opts = &defaults;
    }
    if (opts->ttl < 0 || opts->ttl > NORI_MAX_TTL)
        return nori__fail(NORI_EINVAL, "response cache ttl %lld is out of range",
                          (long long)opts->ttl);
    const char *prefix = opts->prefix != NULL ? opts->prefix : "view";
    if (prefix[0] == '\0')
        return nori__fail(NORI_EINVAL, "response cache prefix is empty");
    if (opts->n_vary_on > 0 && opts->vary_on == NULL)
        return nori__fail(NORI_EINVAL, "vary_on is NULL with n_vary_on > 0");
    for (size_t i = 0; i < opts->n_vary_on; i++)
        if (opts->vary_on[i] == NULL || opts->vary_on[i][0] == '\0')
            return nori__fail(NORI_EINVAL, "vary_on[%zu] is empty", i);

    nori_http_cache *c = calloc(1, sizeof *c);
    if (c == NULL || (c->prefix = strdup(prefix)) == NULL)
        goto oom;
    if (opts->n_vary_on > 0 &&
        (c->vary_on = calloc(opts->n_vary_on, sizeof *c->vary_on)) == NULL)
        goto oom;
    for (size_t i = 0; i < opts->n_vary_on; i++) {
        if ((c->vary_on[i] = strdup(opts->vary_on[i])) == NULL)
            goto oom;
        c->n_vary_on++;
        /* Names are lower-cased once here: the key uses the lower-case form,
         * and header lookups are case-insensitive anyway. */
        for (char *p = c->vary_on[i]; *p != '\0'; p++)
            *p = (char)tolower((unsigned char)*p);
    }
    c->ttl = opts->ttl;
    c->key_fn = opts->key_fn;
    c->key_fn_ud = opts->key_fn_ud;
    c->backend = opts->backend;
    *out = c;
    return NORI_OK;
oom:
    nori_http_cache_free(c);
    return nori__fail(NORI_ENOMEM, "out of memory creating a response cache");
}

void nori_http_cache_get_stats(const nori_http_cache *c, nori_http_cache_stats *out)
{
    if (c == NULL || out == NULL)
        return;
    out->hits = atomic_load_explicit(&c->hits, memory_order_relaxed);
    out->misses = atomic_load_explicit(&c->misses, memory_order_relaxed);
    out->stores = atomic_load_explicit(&c->stores, memory_order_relaxed);
    out->errors = atomic_load_explicit(&c->errors, memory_order_relaxed);
}

static void count(_Atomic uint64_t *counter)
{
    atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

int nori_http_cache_key(const nori_http_cache *c, const nori_http_request *req, char *out,
                        size_t cap)
{
    if (c == NULL || req == NULL || out == NULL || cap == 0)
        return nori__fail(NORI_EINVAL, "bad arguments to nori_http_cache_key");
    char comp[NORI_MAX_KEY_LEN + 1];
    const char *keycomp = NULL;
    if (c->key_fn != NULL) {
        int n = c->key_fn(req, c->key_fn_ud, comp, sizeof comp);
        if (n < 0)
            return NORI_MISS;
        if ((size_t)n >= sizeof comp)
            return nori__fail(NORI_ETOOBIG, "key function output is %d bytes, over the key limit",
                              n);
        keycomp = comp;
    }
    return nori__http_key_build(c->prefix, keycomp, req->path, req->query,
                                (const char *const *)c->vary_on, c->n_vary_on, req, out, cap);
}

/* Runs the handler on a fresh response. */
static int run_handler(const nori_http_request *req, nori_http_handler_fn handler, void *ud,
                       nori_http_response *resp, nori_http_origin origin)
{
    nori_http_response_clear(resp);
    int rc = handler(req, resp, ud);
    resp->origin = origin;
    return rc;
}

int nori_http_cache_serve(nori_http_cache *c, const nori_http_request *req,
                          nori_http_handler_fn handler, void *ud, nori_http_response *resp)
{
    if (req == NULL || handler == NULL || resp == NULL || req->method == NULL)
        return nori__fail(NORI_EINVAL, "bad arguments to nori_http_cache_serve");
    if (c == NULL || strcmp(req->method, "GET") != 0)
        return run_handler(req, handler, ud, resp, NORI_HTTP_BYPASS);

    char key[NORI_MAX_KEY_LEN + 1];
    int rc = nori_http_cache_key(c, req, key, sizeof key);
    if (rc != NORI_OK) {
        if (rc != NORI_MISS) /* too long: uncacheable, and the app should know */
            count(&c->errors);
        return run_handler(req, handler, ud, resp, NORI_HTTP_BYPASS);
    }

    nori_backend *b = c->backend;
    bool can_store = true;
    if (b == NULL && nori_get_backend(&b) != NORI_OK) {
        count(&c->errors);
        b = NULL;
    }
    if (b != NULL) {
        bool memory = strcmp(nori_backend_kind(b), "memory") == 0;
        nori_buf val;
        rc = nori_backend_get(b, key, &val);
        if (rc == NORI_OK) {
            nori_http_response_clear(resp);
            if (nori__entry_decode(&val, memory, resp) == NORI_OK) {
                resp->origin = NORI_HTTP_HIT;
                count(&c->hits);
                return NORI_OK;
            }
            /* Undecodable: a miss; the fresh response overwrites it. */
            count(&c->errors);
        } else if (rc < 0) {
            /* Backend failing: do not wait on it a second time for the store. */
            count(&c->errors);
            can_store = false;
        }
    }
    count(&c->misses);
    rc = run_handler(req, handler, ud, resp, NORI_HTTP_MISS);
    if (rc != NORI_OK || b == NULL || !can_store || !nori_http_response_storable(resp))
        return rc;

    nori_buf enc;
    bool memory = strcmp(nori_backend_kind(b), "memory") == 0;
    int erc = memory ? nori__entry_encode_binary(resp, &enc) : nori__entry_encode_json(resp, &enc);
    if (erc == NORI_OK) {
        erc = nori_backend_set(b, key, enc.data, enc.len, c->ttl);
        nori_buf_free(&enc);
    }
    count(erc == NORI_OK ? &c->stores : &c->errors);
    return rc;
}
