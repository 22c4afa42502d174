/*
 * The response cache: looks a GET (or HEAD) request up, serves it from the
 * cache or runs the handler and stores what may be stored (DESIGN 5, 9). The
 * key shape is in key.c, the value format in entry_codec.c.
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
#include <strings.h>

struct nori_http_cache {
    int64_t ttl;
    char *prefix;
    nori_http_key_fn key_fn;
    void *key_fn_ud;
    char **vary_on; /* lower-cased copies */
    size_t n_vary_on;
    nori_backend *backend; /* borrowed; NULL = default backend */
    int allow_authorized, allow_cookie;
    _Atomic uint64_t hits, misses, stores, errors;
    _Atomic uint64_t bypass_method, bypass_authorization, bypass_cookie;
    _Atomic uint64_t not_encodable, too_big, unsendable;
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
    c->allow_authorized = opts->allow_authorized != 0;
    c->allow_cookie = opts->allow_cookie != 0;
    *out = c;
    return NORI_OK;
oom:
    nori_http_cache_free(c);
    return nori__fail(NORI_ENOMEM, "out of memory creating a response cache");
}

#define LOAD(field) atomic_load_explicit(&c->field, memory_order_relaxed)

void nori_http_cache_get_stats(const nori_http_cache *c, nori_http_cache_stats *out)
{
    if (c == NULL || out == NULL)
        return;
    out->hits = LOAD(hits);
    out->misses = LOAD(misses);
    out->stores = LOAD(stores);
    out->errors = LOAD(errors);
    out->bypass_method = LOAD(bypass_method);
    out->bypass_authorization = LOAD(bypass_authorization);
    out->bypass_cookie = LOAD(bypass_cookie);
    out->not_encodable = LOAD(not_encodable);
    out->too_big = LOAD(too_big);
    out->unsendable = LOAD(unsendable);
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

static bool in_vary_on(const nori_http_cache *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->n_vary_on; i++)
        if (strlen(c->vary_on[i]) == len && strncasecmp(c->vary_on[i], name, len) == 0)
            return true;
    return false;
}

/*
 * A handler's own Vary says the response depends on those request headers.
 * The entry is keyed on the route's vary_on headers only, so it may be
 * stored only when every name is among them (a gzip body with
 * `Vary: Accept-Encoding` on a route that does not vary on it would reach
 * clients that cannot read it). `Vary: *` is refused by storable().
 */
static bool vary_covered(const nori_http_cache *c, const nori_http_response *r)
{
    for (size_t i = 0; i < r->n_headers; i++) {
        if (strcasecmp(r->headers[i].name, "Vary") != 0)
            continue;
        const char *p = r->headers[i].value;
        while (*p != '\0') {
            p += strspn(p, " \t,");
            size_t n = strcspn(p, " \t,");
            if (n > 0 && !in_vary_on(c, p, n))
                return false;
            p += n;
        }
    }
    return true;
}

/*
 * An upper bound of the encoded entry's size, computed before encoding, so
 * that a 200 MiB response over the backend's limit is not base64-encoded
 * (+270 MiB) only to be refused by set (issue 10 item 17).
 */
static size_t encoded_size_bound(const nori_http_response *r, bool memory)
{
    size_t meta = 256 + (r->media_type ? strlen(r->media_type) : 0);
    for (size_t i = 0; i < r->n_headers; i++)
        meta += strlen(r->headers[i].name) + strlen(r->headers[i].value) + 16;
    size_t body = memory ? r->body_len : (r->body_len + 2) / 3 * 4;
    return body + meta;
}

/* Stores resp under key when the rules allow; counts the outcome. */
static void store(nori_http_cache *c, nori_backend *b, const char *key,
                  const nori_http_response *resp)
{
    if (!nori_http_response_storable(resp) || !vary_covered(c, resp))
        return;
    bool memory = strcmp(nori_backend_kind(b), "memory") == 0;
    if (encoded_size_bound(resp, memory) > nori_backend_max_value(b)) {
        count(&c->too_big);
        return;
    }
    nori_buf enc;
    int erc = memory ? nori__entry_encode_binary(resp, &enc) : nori__entry_encode_json(resp, &enc);
    if (erc == NORI_ETYPE) {
        count(&c->not_encodable);
        return;
    }
    if (erc == NORI_OK) {
        erc = nori_backend_set(b, key, enc.data, enc.len, c->ttl);
        nori_buf_free(&enc);
    }
    if (erc == NORI_ETOOBIG)
        count(&c->too_big);
    else
        count(erc == NORI_OK ? &c->stores : &c->errors);
}

static int serve(nori_http_cache *c, const nori_http_request *req,
                 nori_http_handler_fn handler, void *ud, nori_http_response *resp,
                 bool skip_lookup)
{
    if (req == NULL || handler == NULL || resp == NULL || req->method == NULL)
        return nori__fail(NORI_EINVAL, "bad arguments to nori_http_cache_serve");
    if (c == NULL)
        return run_handler(req, handler, ud, resp, NORI_HTTP_BYPASS);
    bool head = strcmp(req->method, "HEAD") == 0;
    if (!head && strcmp(req->method, "GET") != 0) {
        count(&c->bypass_method);
        return run_handler(req, handler, ud, resp, NORI_HTTP_BYPASS);
    }
    /* Credentials: the response may be this user's alone (RFC 9111 3.5).
     * A key function scopes entries itself, so it lifts the bypass. */
    if (c->key_fn == NULL) {
        if (!c->allow_authorized && nori_http_request_header(req, "Authorization") != NULL) {
            count(&c->bypass_authorization);
            return run_handler(req, handler, ud, resp, NORI_HTTP_BYPASS);
        }
        if (!c->allow_cookie && nori_http_request_header(req, "Cookie") != NULL) {
            count(&c->bypass_cookie);
            return run_handler(req, handler, ud, resp, NORI_HTTP_BYPASS);
        }
    }

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
    if (b != NULL && !skip_lookup) {
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
            /* Backend failing (NORI_EBACKEND, or NORI_ETOOBIG for a value
             * over the limit): a miss, and no second wait on it to store. */
            count(&c->errors);
            can_store = false;
        }
    }
    count(&c->misses);
    rc = run_handler(req, handler, ud, resp, NORI_HTTP_MISS);
    /* HEAD never stores: its response has no body to store. */
    if (rc == NORI_OK && b != NULL && can_store && !head)
        store(c, b, key, resp);
    return rc;
}

int nori_http_cache_serve(nori_http_cache *c, const nori_http_request *req,
                          nori_http_handler_fn handler, void *ud, nori_http_response *resp)
{
    return serve(c, req, handler, ud, resp, false);
}

int nori_http_cache_serve_again(nori_http_cache *c, const nori_http_request *req,
                                nori_http_handler_fn handler, void *ud,
                                nori_http_response *resp)
{
    if (c != NULL) {
        count(&c->unsendable);
        count(&c->errors);
    }
    return serve(c, req, handler, ud, resp, true);
}
