/*
 * The response cache: looks a GET (or HEAD) request up, serves it from the
 * cache or runs the handler and stores what may be stored (DESIGN 5, 9).
 * This file serves requests; creating the cache is
 * setup.c, reading and writing entries entries.c (the value format is
 * entry_codec.c, the key shape key.c), coalescing across processes
 * lease.c, background refreshes revalidate.c.
 *
 * Fail open: every cache failure (backend error, undecodable entry, key too
 * long) is counted and the handler's response is served; the request itself
 * never fails because of the cache.
 */
#include "http/entries.h"

#include "backend.h"
#include "error.h"
#include "http/lease.h"
#include "http/revalidate.h"

#include <stdio.h>
#include <string.h>

/* Runs the handler on a fresh response. */
static int run_handler(const nori_http_request *req, nori_http_handler_fn handler, void *ud,
                       nori_http_response *resp, nori_http_origin origin)
{
    nori_http_response_clear(resp);
    int rc = handler(req, resp, ud);
    resp->origin = origin;
    return rc;
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
    int64_t now = nori__http_now_ms();
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
    int64_t now = nori__http_now_ms();
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
            now = nori__http_now_ms();
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
    /* Across processes (a shared backend): the in-process leader also
     * takes the key's lease, or waits for the holder's fill. */
    char lease_key[NORI_MAX_KEY_LEN + 1], token[64];
    bool leased = false;
    if (role == NORI__FLIGHT_LEADER && nori__backend_traits(b)->shared) {
        nori__entry_meta m2;
        switch (nori__http_remote_lease(c, b, key, lease_key, token, resp, &m2)) {
        case NORI__LEASE_SERVED:
            nori__flight_finish(c->flights, f, true);
            count(&c->coalesced);
            count(&c->hits);
            finish_cached(c, req, resp, &m2, nori__http_now_ms(), NORI_HTTP_HIT);
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
            nori__hfm_set(c->flights, key, nori__sat_add(nori__http_now_ms(), c->hfm_ms));
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
