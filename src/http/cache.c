/*
 * The response cache: looks a GET (or HEAD) request up, serves it from the
 * cache or runs the handler and stores what may be stored (DESIGN 5, 9). The
 * key shape is in key.c, the value format in entry_codec.c; coalescing
 * across processes in lease.c, background refreshes in revalidate.c, and
 * the state they share in cache_internal.h.
 *
 * Fail open: every cache failure (backend error, undecodable entry, key too
 * long) is counted and the handler's response is served; the request itself
 * never fails because of the cache.
 */
#include "http/cache_internal.h"

#include "clock.h"
#include "error.h"

#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void nori_http_cache_options_init(nori_http_cache_options *o)
{
    memset(o, 0, sizeof *o);
    o->ttl = 60;
    o->prefix = "view";
    o->lock_timeout_ms = 5000;
    o->hit_for_miss_ms = 5000;
    o->refresh_threads = 2;
}

void nori_http_cache_free(nori_http_cache *c)
{
    if (c == NULL)
        return;
    /* Refreshes first: a running one still uses the tables below. */
    nori__refresher_free(c->refresher);
    nori__flights_free(c->flights);
    nori__gens_free(c->gens);
    nori__memo_free(c->memo);
    pthread_mutex_destroy(&c->refresher_lock);
    for (size_t i = 0; i < c->n_vary_on; i++)
        free(c->vary_on[i]);
    free(c->vary_on);
    for (size_t i = 0; i < c->n_refresh_headers; i++)
        free(c->refresh_headers[i]);
    free(c->refresh_headers);
    free(c->vary_header);
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
    if (opts->stale_while_revalidate < 0 || opts->stale_while_revalidate > NORI_MAX_TTL ||
        opts->stale_if_error < 0 || opts->stale_if_error > NORI_MAX_TTL)
        return nori__fail(NORI_EINVAL,
                          "stale_while_revalidate %lld / stale_if_error %lld out of range",
                          (long long)opts->stale_while_revalidate,
                          (long long)opts->stale_if_error);
    if (opts->lock_timeout_ms < 0 || opts->lock_timeout_ms > 3600 * 1000 ||
        opts->hit_for_miss_ms < 0 || opts->hit_for_miss_ms > NORI_MAX_TTL)
        return nori__fail(NORI_EINVAL, "lock_timeout_ms %lld / hit_for_miss_ms %lld out of range",
                          (long long)opts->lock_timeout_ms, (long long)opts->hit_for_miss_ms);
    if (opts->n_refresh_headers > 0 && opts->refresh_headers == NULL)
        return nori__fail(NORI_EINVAL, "refresh_headers is NULL with n_refresh_headers > 0");
    for (size_t i = 0; i < opts->n_refresh_headers; i++)
        if (opts->refresh_headers[i] == NULL || opts->refresh_headers[i][0] == '\0')
            return nori__fail(NORI_EINVAL, "refresh_headers[%zu] is empty", i);
    if (opts->refresh_threads > 64)
        return nori__fail(NORI_EINVAL, "refresh_threads %zu is over 64", opts->refresh_threads);
    const char *prefix = opts->prefix != NULL ? opts->prefix : "view";
    if (prefix[0] == '\0')
        return nori__fail(NORI_EINVAL, "response cache prefix is empty");
    if (opts->n_vary_on > 0 && opts->vary_on == NULL)
        return nori__fail(NORI_EINVAL, "vary_on is NULL with n_vary_on > 0");
    size_t vary_len = 0;
    for (size_t i = 0; i < opts->n_vary_on; i++) {
        if (opts->vary_on[i] == NULL || opts->vary_on[i][0] == '\0')
            return nori__fail(NORI_EINVAL, "vary_on[%zu] is empty", i);
        vary_len += strlen(opts->vary_on[i]) + 2;
    }

    nori_http_cache *c = calloc(1, sizeof *c);
    if (c == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory creating a response cache");
    pthread_mutex_init(&c->refresher_lock, NULL);
    if ((c->prefix = strdup(prefix)) == NULL || nori__flights_new(&c->flights) != NORI_OK ||
        nori__gens_new(&c->gens) != NORI_OK ||
        nori__memo_new(NORI__MEMO_MAX_BYTES, &c->memo) != NORI_OK)
        goto oom;
    if (opts->n_vary_on > 0 &&
        ((c->vary_on = calloc(opts->n_vary_on, sizeof *c->vary_on)) == NULL ||
         (c->vary_header = calloc(1, vary_len + 1)) == NULL))
        goto oom;
    for (size_t i = 0; i < opts->n_vary_on; i++) {
        if ((c->vary_on[i] = strdup(opts->vary_on[i])) == NULL)
            goto oom;
        c->n_vary_on++;
        /* Names are lower-cased once here: the key uses the lower-case form,
         * and header lookups are case-insensitive anyway. */
        for (char *p = c->vary_on[i]; *p != '\0'; p++)
            *p = (char)tolower((unsigned char)*p);
        if (i > 0)
            strcat(c->vary_header, ", ");
        strcat(c->vary_header, c->vary_on[i]);
    }
    if (opts->n_refresh_headers > 0 &&
        (opts->refresh_headers == NULL ||
         (c->refresh_headers = calloc(opts->n_refresh_headers, sizeof *c->refresh_headers)) ==
             NULL))
        goto oom;
    for (size_t i = 0; i < opts->n_refresh_headers; i++) {
        if (opts->refresh_headers[i] == NULL ||
            (c->refresh_headers[i] = strdup(opts->refresh_headers[i])) == NULL)
            goto oom;
        c->n_refresh_headers++;
    }
    c->ttl = opts->ttl;
    c->key_fn = opts->key_fn;
    c->key_fn_ud = opts->key_fn_ud;
    c->backend = opts->backend;
    c->allow_authorized = opts->allow_authorized != 0;
    c->allow_cookie = opts->allow_cookie != 0;
    c->swr_ms = opts->stale_while_revalidate * 1000;
    c->sie_ms = opts->stale_if_error * 1000;
    c->lock_timeout_ms = opts->lock_timeout_ms;
    c->hfm_ms = opts->hit_for_miss_ms;
    c->refresh_threads = opts->refresh_threads > 0 ? opts->refresh_threads : 1;
    *out = c;
    return NORI_OK;
oom:
    nori_http_cache_free(c);
    return nori__fail(NORI_ENOMEM, "out of memory creating a response cache");
}

nori__memo *nori__http_cache_memo(nori_http_cache *c)
{
    return c->memo;
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
    out->coalesced = LOAD(coalesced);
    out->lock_timeouts = LOAD(lock_timeouts);
    out->hit_for_miss = LOAD(hit_for_miss);
    out->stale_revalidate = LOAD(stale_revalidate);
    out->stale_error = LOAD(stale_error);
    out->refreshes = LOAD(refreshes);
    out->refreshes_dropped = LOAD(refreshes_dropped);
    out->not_modified = LOAD(not_modified);
    out->invalidations = LOAD(invalidations);
    out->superseded = LOAD(superseded);
    out->refreshes_skipped = LOAD(refreshes_skipped);
    nori__memo_stats ms;
    nori__memo_get_stats(c->memo, &ms);
    out->memo_hits = ms.hits;
    out->memo_bytes = ms.bytes;
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

/* ------------------------------------------------------------ storing */

/* The backend's ttl for an entry fresh for fresh_ms (-1: no limit, 0 then:
 * no expiry): the lifetime plus the longer stale window, in seconds
 * rounded up, at most NORI_MAX_TTL. */
static int64_t backend_ttl(const nori_http_cache *c, int64_t fresh_ms)
{
    if (fresh_ms < 0)
        return 0;
    int64_t keep_ms = nori__sat_add(fresh_ms, c->swr_ms > c->sie_ms ? c->swr_ms : c->sie_ms);
    int64_t ttl = keep_ms / 1000 + (keep_ms % 1000 != 0);
    return ttl > NORI_MAX_TTL ? NORI_MAX_TTL : ttl;
}

/*
 * Stores resp under key when the rules allow, with its freshness metadata
 * (stored now, fresh for the lifetime it asks for, capped by the route's
 * ttl and by NORI_MAX_TTL, as long as any backend keeps it); the backend
 * keeps it for that lifetime plus the longer stale window. Only if no write
 * to the path came since `guard` was read (before the handler ran). Adds
 * the derived ETag to resp first, so the miss carries the same tag the hits
 * will. Counts the outcome.
 */
nori__store_result nori__http_store(nori_http_cache *c, nori_backend *b, const char *key,
                                    nori_http_response *resp, int64_t now_ms,
                                    const nori__gen_guard *guard)
{
    if (!nori_http_response_storable(resp) || !vary_covered(c, resp))
        return NORI__STORE_NO;
    int64_t fresh_ms = nori__http_lifetime_ms(resp, c->ttl);
    if (fresh_ms == 0) /* max-age=0: stale at once, nothing to reuse */
        return NORI__STORE_NO;
    if (fresh_ms > NORI_MAX_TTL * 1000)
        fresh_ms = NORI_MAX_TTL * 1000;
    bool memory = strcmp(nori_backend_kind(b), "memory") == 0;
    if (encoded_size_bound(resp, memory) > nori_backend_max_value(b)) {
        count(&c->too_big);
        return NORI__STORE_NO;
    }
    if (nori__http_ensure_etag(resp) != NORI_OK) {
        count(&c->errors);
        return NORI__STORE_NO;
    }
    nori__entry_meta meta = {now_ms, fresh_ms};
    nori_buf enc;
    int erc = memory ? nori__entry_encode_binary_meta(resp, &meta, &enc)
                     : nori__entry_encode_json_meta(resp, &meta, &enc);
    if (erc == NORI_ETYPE) {
        count(&c->not_encodable);
        return NORI__STORE_NO;
    }
    int stored = 0;
    if (erc == NORI_OK) {
        erc = nori__gen_store(c->gens, b, guard, key, enc.data, enc.len,
                              backend_ttl(c, fresh_ms), &stored);
        nori_buf_free(&enc);
    }
    if (erc == NORI_OK && !stored) {
        count(&c->superseded);
        return NORI__STORE_SUPERSEDED;
    }
    if (erc == NORI_ETOOBIG)
        count(&c->too_big);
    else
        count(erc == NORI_OK ? &c->stores : &c->errors);
    return erc == NORI_OK ? NORI__STORE_DONE : NORI__STORE_NO;
}

/*
 * Reads the generation that guards a store of req's response; called
 * before the handler runs. false (counted) when it cannot be known (the
 * backend failed): the response is then not stored.
 */
bool nori__http_read_guard(nori_http_cache *c, nori_backend *b, const nori_http_request *req,
                           nori__gen_guard *g)
{
    char scope[NORI_MAX_KEY_LEN + 1];
    if (nori__gen_scope(c->prefix, c->key_fn != NULL, req, scope, sizeof scope) == NORI_OK) {
        nori__gen_read(c->gens, b, c->prefix, scope, g);
        if (g->ok)
            return true;
        nori__gen_guard_clear(g);
    }
    count(&c->errors);
    return false;
}

/* The in-process generation of req's path: the epoch of the flights of its
 * keys (a write moves it, and later requests start a new fill). */
uint64_t nori__http_path_epoch(nori_http_cache *c, const nori_http_request *req)
{
    char scope[NORI_MAX_KEY_LEN + 1];
    if (nori__gen_scope(c->prefix, c->key_fn != NULL, req, scope, sizeof scope) != NORI_OK)
        return 0; /* too long: the key is too, and nothing is filled */
    return nori__gen_epoch(c->gens, scope);
}

/* ------------------------------------------------------------ reading */

nori__lookup_result nori__http_lookup(nori_http_cache *c, nori_backend *b, const char *key,
                                      nori_http_response *resp, nori__entry_meta *meta,
                                      int64_t now_ms, bool quiet)
{
    nori_buf val;
    int rc = nori_backend_get(b, key, &val);
    if (rc == NORI_MISS)
        return NORI__LOOK_ABSENT;
    if (rc == NORI_ETOOBIG) {
        /* A value over the backend's limit, refused by the backend itself
         * (Redis reads obey the limit): an undecodable entry, a miss that
         * the fresh response overwrites, not a failing backend (that would
         * leave the oversized entry in place and run the handler on every
         * request for as long as it lives). */
        if (!quiet)
            count(&c->errors);
        return NORI__LOOK_MISS;
    }
    if (rc != NORI_OK) {
        count(&c->errors); /* NORI_EBACKEND */
        return NORI__LOOK_ERROR;
    }
    /* A value over the backend's limit (the limit was lowered, or another
     * client wrote it) is not decoded: an undecodable entry, a miss. */
    if (val.len > nori_backend_max_value(b)) {
        nori_buf_free(&val);
        if (!quiet)
            count(&c->errors);
        return NORI__LOOK_MISS;
    }
    bool memory = strcmp(nori_backend_kind(b), "memory") == 0;
    /* JSON entries go through the memo: the near cache answers a hot key
     * with the same bytes until Redis invalidates it, and parsing JSON and
     * base64 on each hit cost more than the rest of the hit. */
    if ((memory ? nori__entry_decode_meta(&val, true, resp, meta)
                : nori__memo_decode(c->memo, key, &val, resp, meta)) != NORI_OK) {
        if (!quiet)
            count(&c->errors); /* a miss; the fresh response overwrites it */
        return NORI__LOOK_MISS;
    }
    /* An entry without freshness fields (Nori's Python wrote it) is fresh
     * for as long as the backend keeps it, as Python would serve it. */
    if (meta->stored_at_ms < 0 || meta->fresh_ms < 0)
        return NORI__LOOK_FRESH;
    int64_t age = nori__sat_sub(now_ms, meta->stored_at_ms);
    if (age < meta->fresh_ms)
        return NORI__LOOK_FRESH;
    if (age < nori__sat_add(meta->fresh_ms, c->swr_ms))
        return NORI__LOOK_STALE_SWR;
    if (age < nori__sat_add(meta->fresh_ms, c->sie_ms))
        return NORI__LOOK_STALE_SIE;
    nori_http_response_clear(resp);
    return NORI__LOOK_ABSENT;
}

static nori__lookup_result lookup(nori_http_cache *c, nori_backend *b, const char *key,
                                  nori_http_response *resp, nori__entry_meta *meta,
                                  int64_t now_ms)
{
    return nori__http_lookup(c, b, key, resp, meta, now_ms, false);
}

/* Headers every GET/HEAD answer of a vary-on route carries. */
static int add_vary(const nori_http_cache *c, nori_http_response *resp)
{
    if (c->vary_header == NULL || nori_http_response_header(resp, "Vary") != NULL)
        return NORI_OK;
    return nori_http_response_add_header(resp, "Vary", c->vary_header);
}

/* A response about to leave from the cache (HIT or STALE): Age, Vary, and
 * the conditional request's 304. */
static void finish_cached(nori_http_cache *c, const nori_http_request *req,
                          nori_http_response *resp, const nori__entry_meta *meta,
                          int64_t now_ms, nori_http_origin origin)
{
    resp->origin = origin;
    int64_t age = meta->stored_at_ms >= 0 && now_ms > meta->stored_at_ms
                      ? (now_ms - meta->stored_at_ms) / 1000
                      : 0;
    char v[32];
    snprintf(v, sizeof v, "%lld", (long long)age);
    /* Allocation failures here only lose a header; the answer stays right. */
    (void)nori_http_response_add_header(resp, "Age", v);
    (void)add_vary(c, resp);
    if (nori__http_not_modified(req, resp)) {
        (void)nori__http_make_304(resp);
        count(&c->not_modified);
    }
}

/* ------------------------------------------------------------ serving */

/* Whether an entry (of known age) is within stale_if_error at now_ms:
 * judged when the answer goes out, since the handler may have run past
 * the window. */
static bool within_stale_if_error(const nori_http_cache *c, const nori__entry_meta *m,
                                  int64_t now_ms)
{
    return nori__sat_sub(now_ms, m->stored_at_ms) < nori__sat_add(m->fresh_ms, c->sie_ms);
}

/* Runs the handler for a cacheable request, stores what may be stored,
 * and answers from `stale` when the handler failed within stale_if_error.
 * *stored tells whether the response was written. */
static int fill(nori_http_cache *c, nori_backend *b, const char *key,
                const nori_http_request *req, nori_http_handler_fn handler, void *ud,
                nori_http_response *resp, bool may_store, nori_http_response *stale,
                const nori__entry_meta *stale_meta, nori__store_result *stored)
{
    count(&c->misses);
    nori__gen_guard guard;
    bool guarded = may_store && nori__http_read_guard(c, b, req, &guard);
    int rc = run_handler(req, handler, ud, resp, NORI_HTTP_MISS);
    *stored = NORI__STORE_NO;
    int64_t now = nori__wall_ms();
    if (rc == NORI_OK && guarded)
        *stored = nori__http_store(c, b, key, resp, now, &guard);
    if (guarded)
        nori__gen_guard_clear(&guard);
    if (stale != NULL && stale->origin == NORI_HTTP_STALE && (rc < 0 || resp->status >= 500) &&
        within_stale_if_error(c, stale_meta, now)) {
        /* stale_if_error: the stale entry beats an error page. */
        nori_http_response_clear(resp);
        *resp = *stale;
        nori_http_response_init(stale);
        finish_cached(c, req, resp, stale_meta, now, NORI_HTTP_STALE);
        count(&c->stale_error);
        return NORI_OK;
    }
    if (rc == NORI_OK) {
        (void)add_vary(c, resp);
        if (*stored == NORI__STORE_DONE && nori__http_not_modified(req, resp)) {
            (void)nori__http_make_304(resp);
            count(&c->not_modified);
        }
    }
    return rc;
}

static bool is_write_method(const char *m)
{
    return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0 ||
           strcmp(m, "DELETE") == 0;
}

/*
 * RFC 9111 4.4: a successful write to a path invalidates what is cached for
 * it. Every entry of the path under this cache's prefix goes: all queries
 * and vary values ("{prefix}:{path}:" is a literal prefix of all of them).
 * With a key function the user's component comes before the path, so no
 * prefix selects one path for every user: the whole cache ("{prefix}:") is
 * invalidated instead.
 * The scope's generation moves first (generation.c): a fill that began
 * before this write either stored before the deletion, which removes its
 * entry, or finds the generation moved and stores nothing.
 */
static void invalidate(nori_http_cache *c, const nori_http_request *req)
{
    nori_backend *b = c->backend;
    if (b == NULL && nori_get_backend(&b) != NORI_OK) {
        count(&c->errors);
        return;
    }
    char scope[NORI_MAX_KEY_LEN + 1];
    int rc = nori__gen_scope(c->prefix, c->key_fn != NULL, req, scope, sizeof scope);
    if (rc == NORI_OK) {
        if (nori__gen_bump(c->gens, b, c->prefix, scope) != NORI_OK)
            count(&c->errors); /* the entries still go; a fill in flight may store */
        rc = nori_backend_delete_prefix(b, scope);
    }
    count(rc == NORI_OK ? &c->invalidations : &c->errors);
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
        int rc = run_handler(req, handler, ud, resp, NORI_HTTP_BYPASS);
        if (rc == NORI_OK && is_write_method(req->method) && resp->status >= 200 &&
            resp->status <= 399)
            invalidate(c, req);
        return rc;
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
    if (b == NULL && nori_get_backend(&b) != NORI_OK) {
        count(&c->errors);
        b = NULL;
    }
    /* HEAD never stores: its response has no body. */
    bool may_store = b != NULL && !head;
    int64_t now = nori__wall_ms();
    nori__entry_meta meta = {-1, -1}, stale_meta = {-1, -1};
    nori_http_response stale;
    nori_http_response_init(&stale);
    nori__store_result stored;
    bool absent = false;
    if (b != NULL && !skip_lookup) {
        nori__lookup_result l = lookup(c, b, key, resp, &meta, now);
        absent = l == NORI__LOOK_ABSENT;
        switch (l) {
        case NORI__LOOK_FRESH:
            count(&c->hits);
            finish_cached(c, req, resp, &meta, now, NORI_HTTP_HIT);
            return NORI_OK;
        case NORI__LOOK_STALE_SWR:
            count(&c->stale_revalidate);
            nori__http_schedule_refresh(c, key, req, handler, ud, &meta);
            finish_cached(c, req, resp, &meta, now, NORI_HTTP_STALE);
            return NORI_OK;
        case NORI__LOOK_STALE_SIE:
            /* Kept aside in case the handler fails. */
            stale = *resp;
            stale.origin = NORI_HTTP_STALE;
            nori_http_response_init(resp);
            stale_meta = meta;
            break;
        case NORI__LOOK_ERROR:
            may_store = false; /* no second wait on a failing backend */
            break;
        case NORI__LOOK_ABSENT:
        case NORI__LOOK_MISS:
            break;
        }
    }

    /* Coalescing: one fill per key in this process. Not for HEAD (it does
     * not fill), not when the backend fails, not for a key remembered as
     * unstorable (hit-for-miss: waiting would not help). */
    nori__flight *f = NULL;
    nori__flight_role role = NORI__FLIGHT_NONE;
    if (may_store && c->lock_timeout_ms > 0) {
        if (c->hfm_ms > 0 && nori__hfm_active(c->flights, key, now))
            count(&c->hit_for_miss);
        else
            role = nori__flight_join(c->flights, key, true, nori__http_path_epoch(c, req), &f);
    }
    if (role == NORI__FLIGHT_WAITER) {
        int w = nori__flight_wait(c->flights, f, c->lock_timeout_ms);
        if (w == NORI__FLIGHT_STORED) {
            now = nori__wall_ms();
            nori_http_response fresh;
            nori_http_response_init(&fresh);
            nori__lookup_result l = lookup(c, b, key, &fresh, &meta, now);
            if (l == NORI__LOOK_FRESH || l == NORI__LOOK_STALE_SWR) {
                nori_http_response_clear(resp);
                *resp = fresh;
                count(&c->coalesced);
                count(&c->hits);
                finish_cached(c, req, resp, &meta, now, NORI_HTTP_HIT);
                nori_http_response_clear(&stale);
                return NORI_OK;
            }
            nori_http_response_clear(&fresh);
        } else if (w == NORI__FLIGHT_TIMEOUT) {
            count(&c->lock_timeouts);
        }
        /* Not stored, gone already, or timed out: run the handler here. */
    } else if (role == NORI__FLIGHT_REENTRANT) {
        /* The handler filling this key asked for it again: answer
         * uncached, without waiting for ourselves and without storing
         * (the outer fill stores). */
        may_store = false;
    } else if (role == NORI__FLIGHT_LEADER && absent) {
        /* Between our lookup and the join another fill may have finished:
         * look again before running the handler a second time. */
        nori_http_response fresh;
        nori_http_response_init(&fresh);
        nori__entry_meta m2;
        if (lookup(c, b, key, &fresh, &m2, now) == NORI__LOOK_FRESH) {
            nori__flight_finish(c->flights, f, true);
            nori_http_response_clear(resp);
            *resp = fresh;
            count(&c->hits);
            finish_cached(c, req, resp, &m2, now, NORI_HTTP_HIT);
            nori_http_response_clear(&stale);
            return NORI_OK;
        }
        nori_http_response_clear(&fresh);
    }
    /* Across processes (any backend but memory, i.e. Redis): the in-process
     * leader also takes the key's lease, or waits for the holder's fill. */
    char lease_key[NORI_MAX_KEY_LEN + 1], token[64];
    bool leased = false;
    if (role == NORI__FLIGHT_LEADER && strcmp(nori_backend_kind(b), "memory") != 0) {
        nori__entry_meta m2;
        switch (nori__http_remote_lease(c, b, key, lease_key, token, resp, &m2)) {
        case NORI__LEASE_SERVED:
            nori__flight_finish(c->flights, f, true);
            count(&c->coalesced);
            count(&c->hits);
            finish_cached(c, req, resp, &m2, nori__wall_ms(), NORI_HTTP_HIT);
            nori_http_response_clear(&stale);
            return NORI_OK;
        case NORI__LEASE_HELD:
            leased = true;
            break;
        case NORI__LEASE_NONE:
            break;
        }
    }
    rc = fill(c, b, key, req, handler, ud, resp, may_store, &stale, &stale_meta, &stored);
    if (leased)
        nori__http_lease_release(b, lease_key, token);
    if (role == NORI__FLIGHT_LEADER) {
        /* Unstorable: remember it, so the next requests do not queue. (Not
         * when a write superseded it: the next fill stores.) */
        if (stored == NORI__STORE_NO && c->hfm_ms > 0)
            nori__hfm_set(c->flights, key, nori__sat_add(nori__wall_ms(), c->hfm_ms));
        nori__flight_finish(c->flights, f, stored == NORI__STORE_DONE);
    } else if (stored == NORI__STORE_DONE && role == NORI__FLIGHT_NONE && c->hfm_ms > 0 &&
               c->lock_timeout_ms > 0) {
        nori__hfm_clear(c->flights, key); /* storable again */
    }
    nori_http_response_clear(&stale);
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
