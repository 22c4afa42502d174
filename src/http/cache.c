// SPDX-License-Identifier: MIT
/*
 * The response cache: looks a GET (or HEAD) request up, serves it from the
 * cache or runs the handler and stores what may be stored (nori/http.h,
 * "Semantics"; the steps: docs/ARCHITECTURE.md).
 * This file serves requests, step by step (below); creating the cache is
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
#include "clock.h"
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

/* Headers every GET/HEAD answer of a vary-on route carries. */
static int add_vary(const nori_http_cache *c, nori_http_response *resp)
{
    if (c->vary_header == NULL || nori_http_response_header(resp, "Vary") != NULL)
        return NORI_OK;
    return nori_http_response_add_header(resp, "Vary", c->vary_header);
}

/* A response about to leave from the cache (HIT or STALE): Age, Vary, and
 * the conditional request's 304, or the range a GET asked for. */
static void finish_cached(nori_http_cache *c, const nori_http_request *req,
                          nori_http_response *resp, const nori__entry_meta *meta,
                          int64_t now_ms, nori_http_origin origin)
{
    resp->origin = origin;
    int64_t age = nori__http_current_age(meta, now_ms) / 1000;
    char v[32];
    /* RFC 9111 5.1: an age past 2^31 is sent as 2^31. */
    snprintf(v, sizeof v, "%lld", (long long)(age < NORI__DELTA_MAX ? age : NORI__DELTA_MAX));
    /* Allocation failures here only lose a header; the answer stays right. */
    (void)nori_http_response_add_header(resp, "Age", v);
    (void)add_vary(c, resp);
    if (nori__http_not_modified(req, resp)) {
        (void)nori__http_make_304(resp);
        count(&c->not_modified);
    } else if (c->rules.rfc) {
        (void)nori__http_apply_range(req, resp);
    }
}

/* ------------------------------------------------------------ serving */

/*
 * Serving, in named steps (as Varnish's cache_req_fsm.c): each step does
 * one thing to the request's state and returns the next step.
 *
 *   recv --not GET/HEAD, credentials, no key--> pass
 *    |
 *   lookup --fresh--> hit --> deliver
 *    |     --within stale_while_revalidate--> stale --> deliver
 *    |     --stale, kept (to revalidate, or for stale_if_error): kept aside
 *    |
 *   miss --another fill's entry (in process or across)--> hit
 *    |
 *   fetch (conditional when an entry kept aside has validators)
 *    |
 *   store --> deliver
 *    |  +--a 304 to the conditional: the kept entry, its headers updated,
 *    |     stored again and answered (origin HIT) --> deliver
 *    |  +--handler failed, the kept entry within stale_if_error
 *    |     --> stale_if_error --> deliver
 *
 * pass and deliver end the request; serve_end() lets go of whatever a
 * step still holds.
 */
typedef enum {
    STEP_RECV,
    STEP_PASS,
    STEP_LOOKUP,
    STEP_HIT,
    STEP_STALE,
    STEP_MISS,
    STEP_FETCH,
    STEP_STORE,
    STEP_STALE_IF_ERROR,
    STEP_DELIVER,
    STEP_DONE
} serve_step;

/* One request on its way through the steps. */
typedef struct {
    nori_http_cache *c;
    const nori_http_request *req;
    nori_http_handler_fn handler;
    void *ud;
    nori_http_response *resp; /* the answer */
    bool skip_lookup;         /* serve_again: the entry found could not be sent */
    nori_backend *b;          /* NULL: the backend could not be had (counted) */
    bool may_store;           /* a GET on a backend that answers */
    bool absent;              /* the lookup found no entry at all */
    int64_t now;              /* when the entry in resp was judged */
    int64_t sent;             /* when the handler was called (the request time) */
    nori_http_origin answer;  /* HIT or STALE: resp is an entry (meta); MISS: the handler's */
    nori__entry_meta meta;    /* of the entry in resp */
    nori_http_response stale; /* origin STALE: a stale entry kept aside, to revalidate and
                                 to answer a failure within stale_if_error */
    nori__entry_meta stale_meta;
    bool conditional;         /* the handler was given cond.req, with stale's validators */
    nori__cond_req cond;
    nori__flight_role role;  /* in-process coalescing */
    nori__flight *flight;    /* the leader's flight, until it is finished */
    bool leased;             /* the cross-process lease is ours to release */
    bool guarded;            /* guard was read: the response may be stored */
    nori__gen_guard guard;
    int rc; /* the answer's: the handler's, or NORI_OK from the cache */
    nori__store_result stored;
    char key[NORI_MAX_KEY_LEN + 1];
    char lease_key[NORI_MAX_KEY_LEN + 1], token[64];
} serve_state;

/* Method, credentials, key, backend: whether the cache is consulted. */
static serve_step step_recv(serve_state *s)
{
    nori_http_cache *c = s->c;
    bool head = strcmp(s->req->method, "HEAD") == 0;
    if (!head && strcmp(s->req->method, "GET") != 0) {
        count(&c->bypass_method);
        return STEP_PASS;
    }
    /* Credentials: the response may be this user's alone (RFC 9111 3.5).
     * A key function scopes entries itself, so it lifts the bypass. */
    if (c->key_fn == NULL) {
        if (!c->allow_authorized && nori_http_request_header(s->req, "Authorization") != NULL) {
            count(&c->bypass_authorization);
            return STEP_PASS;
        }
        if (!c->allow_cookie && nori_http_request_header(s->req, "Cookie") != NULL) {
            count(&c->bypass_cookie);
            return STEP_PASS;
        }
    }
    int rc = nori_http_cache_key(c, s->req, s->key, sizeof s->key);
    if (rc != NORI_OK) {
        if (rc != NORI_MISS) /* too long: uncacheable, and the app should know */
            count(&c->errors);
        return STEP_PASS;
    }
    s->b = c->backend;
    if (s->b == NULL && nori_get_backend(&s->b) != NORI_OK) {
        count(&c->errors);
        s->b = NULL;
    }
    /* HEAD never stores: its response has no body. */
    s->may_store = s->b != NULL && !head;
    return STEP_LOOKUP;
}

/* Whether the answer to a POST is the representation of its own target,
 * which a GET may then reuse (RFC 9110 9.3.3, RFC 9111 rules): a 2xx with
 * a Content-Location that names exactly the request's path and query, and
 * a freshness it states. */
static bool post_reusable(const serve_state *s)
{
    const nori_http_cache *c = s->c;
    const nori_http_response *r = s->resp;
    const char *cl = nori_http_response_header(r, "Content-Location"), *query;
    char path[NORI_MAX_KEY_LEN + 1];
    if (!c->rules.rfc || strcmp(s->req->method, "POST") != 0 || r->status < 200 ||
        r->status > 299 || cl == NULL ||
        !nori__http_location_path(s->req, cl, path, sizeof path, &query) ||
        strcmp(path, s->req->path) != 0)
        return false;
    const char *want = s->req->query != NULL ? s->req->query : "";
    size_t qn = query != NULL ? strcspn(query, "#") : 0;
    return qn == strlen(want) && (qn == 0 || memcmp(query, want, qn) == 0) &&
           nori__http_explicit_freshness(&c->rules, r);
}

/* Stores a POST's answer as its target's GET entry, under the rules a GET
 * would meet (credentials, key); after the POST's own invalidation, so that
 * it replaces what that removed. */
static void store_post(serve_state *s)
{
    nori_http_cache *c = s->c;
    nori_http_request as_get = *s->req;
    as_get.method = "GET";
    as_get.body = NULL;
    as_get.body_len = 0;
    if (c->key_fn == NULL &&
        ((!c->allow_authorized && nori_http_request_header(s->req, "Authorization") != NULL) ||
         (!c->allow_cookie && nori_http_request_header(s->req, "Cookie") != NULL)))
        return;
    nori_backend *b = c->backend;
    if ((b == NULL && nori_get_backend(&b) != NORI_OK) ||
        nori_http_cache_key(c, &as_get, s->key, sizeof s->key) != NORI_OK)
        return;
    nori__gen_guard guard;
    if (!nori__http_read_guard(c, b, &as_get, &guard))
        return;
    (void)nori__http_store(c, b, s->key, &as_get, s->resp, s->sent, nori__wall_ms(),
                           &guard, NULL);
    nori__gen_guard_clear(&guard);
}

/* Not for the cache: the handler answers, and a successful unsafe request
 * invalidates what is cached for its path and its locations. A POST whose
 * answer is its target's representation is then stored for the GETs. */
static serve_step step_pass(serve_state *s)
{
    s->sent = nori__wall_ms();
    s->rc = run_handler(s->req, s->handler, s->ud, s->resp, NORI_HTTP_BYPASS);
    if (s->rc == NORI_OK && nori__http_unsafe_method(s->req->method) &&
        s->resp->status >= 200 && s->resp->status <= 399) {
        nori__http_invalidate(s->c, s->req, s->resp);
        if (post_reusable(s))
            store_post(s);
    }
    return STEP_DONE;
}

/* The entry in resp is stale: kept aside, to validate and for a failure. */
static void keep_aside(serve_state *s)
{
    s->stale = *s->resp;
    s->stale.origin = NORI_HTTP_STALE;
    nori_http_response_init(s->resp);
    s->stale_meta = s->meta;
}

static serve_step step_lookup(serve_state *s)
{
    s->now = nori__wall_ms();
    if (s->b == NULL || s->skip_lookup)
        return STEP_MISS;
    nori__lookup_result l = nori__http_lookup(s->c, s->b, s->key, s->req, s->resp, &s->meta,
                                              s->now, false);
    s->absent = l == NORI__LOOK_ABSENT;
    switch (l) {
    case NORI__LOOK_FRESH:
        return STEP_HIT;
    case NORI__LOOK_STALE_SWR:
        return STEP_STALE;
    case NORI__LOOK_STALE:
        keep_aside(s);
        return STEP_MISS;
    case NORI__LOOK_ERROR:
        s->may_store = false; /* no second wait on a failing backend */
        return STEP_MISS;
    case NORI__LOOK_ABSENT:
    case NORI__LOOK_MISS:
        break;
    }
    return STEP_MISS;
}

/* resp holds a fresh entry (s->meta, judged at s->now). */
static serve_step step_hit(serve_state *s)
{
    count(&s->c->hits);
    s->answer = NORI_HTTP_HIT;
    s->rc = NORI_OK;
    return STEP_DELIVER;
}

/* resp holds an entry within stale_while_revalidate: it answers at once,
 * and one refresh runs in the background. */
static serve_step step_stale(serve_state *s)
{
    count(&s->c->stale_revalidate);
    nori__http_schedule_refresh(s->c, s->key, s->req, s->handler, s->ud, s->resp, &s->meta);
    s->answer = NORI_HTTP_STALE;
    s->rc = NORI_OK;
    return STEP_DELIVER;
}

/* Looks the key up again, into a response of its own: when the entry is
 * fresh (or, with swr_ok, within stale_while_revalidate) it becomes the
 * answer, judged at now. */
static bool look_again(serve_state *s, int64_t now, bool swr_ok)
{
    nori_http_response found;
    nori_http_response_init(&found);
    nori__entry_meta m = NORI__META(-1, -1);
    nori__lookup_result l =
        nori__http_lookup(s->c, s->b, s->key, s->req, &found, &m, now, false);
    if (l == NORI__LOOK_FRESH || (swr_ok && l == NORI__LOOK_STALE_SWR)) {
        nori_http_response_clear(s->resp);
        *s->resp = found;
        s->meta = m;
        s->now = now;
        return true;
    }
    nori_http_response_clear(&found);
    return false;
}

/* The leader's flight is over: wake its waiters. */
static void end_flight(serve_state *s, bool stored)
{
    nori__flight_finish(s->c->flights, s->flight, stored);
    s->flight = NULL;
}

/* A waiter: the entry the leader stored answers, else the handler runs
 * here (not stored, gone already, another variant, or timed out). */
static serve_step miss_wait(serve_state *s)
{
    int w = nori__flight_wait(s->c->flights, s->flight, s->c->lock_timeout_ms);
    s->flight = NULL; /* released by the wait */
    if (w == NORI__FLIGHT_STORED) {
        if (look_again(s, nori__wall_ms(), true)) {
            count(&s->c->coalesced);
            return STEP_HIT;
        }
    } else if (w == NORI__FLIGHT_TIMEOUT) {
        count(&s->c->lock_timeouts);
    }
    return STEP_FETCH;
}

/* The in-process leader: a last look, then the lease across processes. */
static serve_step miss_lead(serve_state *s)
{
    /* Between our lookup and the join another fill may have finished:
     * look again before running the handler a second time. */
    if (s->absent && look_again(s, s->now, false)) {
        end_flight(s, true);
        return STEP_HIT;
    }
    /* On a shared backend the leader also takes the key's lease, or waits
     * for the holder's fill. */
    if (!nori__backend_traits(s->b)->shared)
        return STEP_FETCH;
    nori__entry_meta m;
    switch (nori__http_remote_lease(s->c, s->b, s->key, s->req, s->lease_key, s->token, s->resp,
                                    &m)) {
    case NORI__LEASE_SERVED:
        end_flight(s, true);
        count(&s->c->coalesced);
        s->meta = m;
        s->now = nori__wall_ms();
        return STEP_HIT;
    case NORI__LEASE_HELD:
        s->leased = true;
        break;
    case NORI__LEASE_NONE:
        break;
    }
    return STEP_FETCH;
}

/* Nothing to answer from: coalesce with the other fills of the key. One
 * fill per key in this process; not for HEAD (it does not fill), not when
 * the backend fails, not for a key remembered as unstorable (hit-for-miss:
 * waiting would not help). */
static serve_step step_miss(serve_state *s)
{
    nori_http_cache *c = s->c;
    if (s->may_store && c->lock_timeout_ms > 0) {
        if (c->hfm_ms > 0 && nori__hfm_active(c->flights, s->key, s->now))
            count(&c->hit_for_miss);
        else
            s->role = nori__flight_join(c->flights, s->key, true,
                                        nori__http_path_epoch(c, s->req), &s->flight);
    }
    switch (s->role) {
    case NORI__FLIGHT_WAITER:
        return miss_wait(s);
    case NORI__FLIGHT_LEADER:
        return miss_lead(s);
    case NORI__FLIGHT_REENTRANT:
        /* The handler filling this key asked for it again: answer
         * uncached, without waiting for ourselves and without storing
         * (the outer fill stores). */
        s->may_store = false;
        break;
    case NORI__FLIGHT_NONE:
        break;
    }
    return STEP_FETCH;
}

/* Runs the handler, after reading the generation that guards its store;
 * conditional (RFC 9111 4.3.1) when an entry kept aside has validators. */
static serve_step step_fetch(serve_state *s)
{
    count(&s->c->misses);
    s->guarded = s->may_store && nori__http_read_guard(s->c, s->b, s->req, &s->guard);
    const nori_http_request *req = s->req;
    if (s->stale.origin == NORI_HTTP_STALE && s->may_store &&
        nori__cond_request(&s->cond, s->req, &s->stale)) {
        s->conditional = true;
        req = &s->cond.req;
        count(&s->c->revalidations);
    }
    s->sent = nori__wall_ms();
    s->rc = run_handler(req, s->handler, s->ud, s->resp, NORI_HTTP_MISS);
    return STEP_STORE;
}

/* A 304 answered the conditional request: the entry kept aside, with the
 * 304's headers (RFC 9111 3.2), becomes the answer and the response to
 * store. false when out of memory (the 304 is then passed on). */
static bool take_validated(serve_state *s)
{
    if (nori__http_update_headers(&s->stale, s->resp) != NORI_OK) {
        count(&s->c->errors);
        return false;
    }
    nori_http_response_clear(s->resp);
    *s->resp = s->stale;
    nori_http_response_init(&s->stale);
    s->answer = NORI_HTTP_HIT;
    count(&s->c->revalidated);
    return true;
}

/* Stores what may be stored, and ends the fill: the lease goes, the
 * waiters wake, and an unstorable key is remembered. */
static serve_step step_store(serve_state *s)
{
    nori_http_cache *c = s->c;
    s->now = nori__wall_ms();
    s->stored = NORI__STORE_NO;
    bool validated = s->conditional && s->rc == NORI_OK && s->resp->status == 304 &&
                     take_validated(s);
    if (s->rc == NORI_OK && s->guarded)
        s->stored = nori__http_store(c, s->b, s->key, s->req, s->resp, s->sent, s->now,
                                     &s->guard, &s->meta);
    else if (validated)
        (void)nori__http_judge(&c->rules, s->resp, s->sent, s->now, &s->meta);
    if (s->guarded) {
        nori__gen_guard_clear(&s->guard);
        s->guarded = false;
    }
    if (s->leased) {
        nori__http_lease_release(s->b, s->lease_key, s->token);
        s->leased = false;
    }
    if (s->role == NORI__FLIGHT_LEADER) {
        /* Unstorable: remember it, so the next requests do not queue. (Not
         * when a write superseded it: the next fill stores; nor for a 304
         * to the client's own conditional request, which says nothing of
         * the resource.) */
        if (s->stored == NORI__STORE_NO && c->hfm_ms > 0 && s->resp->status != 304)
            nori__hfm_set(c->flights, s->key, nori__sat_add(nori__wall_ms(), c->hfm_ms));
        end_flight(s, s->stored == NORI__STORE_DONE);
    } else if (s->stored == NORI__STORE_DONE && s->role == NORI__FLIGHT_NONE && c->hfm_ms > 0 &&
               c->lock_timeout_ms > 0) {
        nori__hfm_clear(c->flights, s->key); /* storable again */
    }
    if (validated) {
        /* Its age is now the 304's, sent by finish_cached. */
        nori__http_remove_header(s->resp, "Age");
        return STEP_DELIVER;
    }
    if (s->stale.origin == NORI_HTTP_STALE && (s->rc < 0 || s->resp->status >= 500) &&
        nori__http_within_stale_if_error(c, &s->stale_meta, s->now))
        return STEP_STALE_IF_ERROR;
    return STEP_DELIVER;
}

/* The handler failed: the stale entry kept aside beats an error page. */
static serve_step step_stale_if_error(serve_state *s)
{
    nori_http_response_clear(s->resp);
    *s->resp = s->stale;
    nori_http_response_init(&s->stale);
    s->meta = s->stale_meta;
    count(&s->c->stale_error);
    s->answer = NORI_HTTP_STALE;
    s->rc = NORI_OK;
    return STEP_DELIVER;
}

/* The answer's last headers, and the conditional request's 304. */
static serve_step step_deliver(serve_state *s)
{
    if (s->answer != NORI_HTTP_MISS) {
        finish_cached(s->c, s->req, s->resp, &s->meta, s->now, s->answer);
    } else if (s->rc == NORI_OK) {
        (void)add_vary(s->c, s->resp);
        if (s->stored == NORI__STORE_DONE && nori__http_not_modified(s->req, s->resp)) {
            (void)nori__http_make_304(s->resp);
            count(&s->c->not_modified);
        } else if (s->stored == NORI__STORE_DONE && s->c->rules.rfc) {
            (void)nori__http_apply_range(s->req, s->resp);
        }
    }
    return STEP_DONE;
}

/* One step of the request: a switch, not a table of pointers, so that the
 * compiler can inline each step into the loop of serve(). */
static serve_step run_step(serve_state *s, serve_step step)
{
    switch (step) {
    case STEP_RECV:
        return step_recv(s);
    case STEP_PASS:
        return step_pass(s);
    case STEP_LOOKUP:
        return step_lookup(s);
    case STEP_HIT:
        return step_hit(s);
    case STEP_STALE:
        return step_stale(s);
    case STEP_MISS:
        return step_miss(s);
    case STEP_FETCH:
        return step_fetch(s);
    case STEP_STORE:
        return step_store(s);
    case STEP_STALE_IF_ERROR:
        return step_stale_if_error(s);
    case STEP_DELIVER:
        return step_deliver(s);
    case STEP_DONE:
        break;
    }
    return STEP_DONE;
}

/* Lets go of whatever the last step left held (the steps above let go of
 * their own on every path; this is the net under new ones). */
static void serve_end(serve_state *s)
{
    if (s->guarded)
        nori__gen_guard_clear(&s->guard);
    if (s->leased)
        nori__http_lease_release(s->b, s->lease_key, s->token);
    if (s->role == NORI__FLIGHT_LEADER && s->flight != NULL)
        end_flight(s, false);
    if (s->stale.origin == NORI_HTTP_STALE) /* else it holds nothing */
        nori_http_response_clear(&s->stale);
}

/*
 * What the route knows, told to the caches downstream: an answer of a
 * route with a key function is one user's (or tenant's), so it says
 * `Cache-Control: private` unless the handler chose its own Cache-Control
 * (a CDN in front would otherwise serve one user's page to the next).
 */
static void tell_downstream(const nori_http_cache *c, const nori_http_request *req,
                            nori_http_response *resp)
{
    if (c->key_fn != NULL && nori_http_response_header(resp, "Cache-Control") == NULL &&
        (strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0))
        (void)nori_http_response_add_header(resp, "Cache-Control", "private");
}

static int serve(nori_http_cache *c, const nori_http_request *req,
                 nori_http_handler_fn handler, void *ud, nori_http_response *resp,
                 bool skip_lookup)
{
    if (req == NULL || handler == NULL || resp == NULL || req->method == NULL)
        return nori__fail(NORI_EINVAL, "bad arguments to nori_http_cache_serve");
    if (c == NULL)
        return run_handler(req, handler, ud, resp, NORI_HTTP_BYPASS);
    /* Field by field: the key buffers need no clearing. */
    serve_state s;
    s.c = c;
    s.req = req;
    s.handler = handler;
    s.ud = ud;
    s.resp = resp;
    s.skip_lookup = skip_lookup;
    s.b = NULL;
    s.may_store = false;
    s.absent = false;
    s.now = 0;
    s.sent = 0;
    s.answer = NORI_HTTP_MISS;
    s.meta = NORI__META(-1, -1);
    nori_http_response_init(&s.stale);
    s.stale_meta = NORI__META(-1, -1);
    s.conditional = false;
    s.role = NORI__FLIGHT_NONE;
    s.flight = NULL;
    s.leased = false;
    s.guarded = false;
    s.rc = NORI_OK;
    s.stored = NORI__STORE_NO;
    for (serve_step step = STEP_RECV; step != STEP_DONE;)
        step = run_step(&s, step);
    serve_end(&s);
    if (s.rc == NORI_OK)
        tell_downstream(c, req, resp);
    return s.rc;
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
