// SPDX-License-Identifier: MIT
/*
 * Background refreshes of the response cache (stale_while_revalidate): the
 * job that outlives the request that found the entry stale, run on the
 * cache's worker pool (refresh.c). One handler run per expiry: a refresh
 * first checks that the entry is still the one served stale, and across
 * processes takes the key's lease (lease.c) without waiting for it.
 */
#include "http/revalidate.h"

#include "backend.h"
#include "clock.h"
#include "error.h"
#include "http/lease.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A request copied for a refresh that outlives it. */
typedef struct {
    nori_http_cache *c;
    nori__flight *flight;
    nori_http_handler_fn handler;
    void *ud;
    char *key, *path, *query;
    char **names, **values;
    size_t n, cap;
    int64_t seen_stored_at; /* stored_at_ms of the stale entry that asked for it */
} refresh_job;

static int copy_one_header(void *ud, const char *name, const char *value)
{
    refresh_job *j = ud;
    if (j->n == j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 8;
        char **n = realloc(j->names, cap * sizeof *n);
        if (n == NULL)
            return 1;
        j->names = n;
        char **v = realloc(j->values, cap * sizeof *v);
        if (v == NULL)
            return 1;
        j->values = v;
        j->cap = cap;
    }
    char *nc = strdup(name), *vc = strdup(value);
    if (nc == NULL || vc == NULL) {
        free(nc);
        free(vc);
        return 1;
    }
    j->names[j->n] = nc;
    j->values[j->n] = vc;
    j->n++;
    return 0;
}

static const char *job_header(void *ud, const char *name)
{
    const refresh_job *j = ud;
    for (size_t i = 0; i < j->n; i++)
        if (strcasecmp(j->names[i], name) == 0)
            return j->values[i];
    return NULL;
}

/* The refresh's copy holds only the headers named in vary_on and
 * refresh_headers: those are all it enumerates. */
static int job_each_header(void *ud, nori_http_header_visit_fn visit, void *visit_ud)
{
    const refresh_job *j = ud;
    for (size_t i = 0; i < j->n; i++) {
        int rc = visit(visit_ud, j->names[i], j->values[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void job_free(refresh_job *j)
{
    for (size_t i = 0; i < j->n; i++) {
        free(j->names[i]);
        free(j->values[i]);
    }
    free(j->names);
    free(j->values);
    free(j->key);
    free(j->path);
    free(j->query);
    free(j);
}

static void refresh_drop(void *arg)
{
    refresh_job *j = arg;
    nori__flight_finish(j->c->flights, j->flight, false);
    job_free(j);
}

/*
 * Whether the entry j saw stale is still the one stored (and still stale).
 * A refresh asked for by a read that came just before another refresh of
 * the entry landed finds the newer entry here, and has nothing to do. The
 * entry read is left in *cur (cleared when not wanted): its validators make
 * the refresh a conditional request.
 */
static bool refresh_wanted(nori_http_cache *c, nori_backend *b, const refresh_job *j,
                           const nori_http_request *req, nori_http_response *cur)
{
    nori_http_response_clear(cur);
    nori__entry_meta m = NORI__META(-1, -1);
    nori__lookup_result l =
        nori__http_lookup(c, b, j->key, req, cur, &m, nori__wall_ms(), true);
    if ((l == NORI__LOOK_STALE_SWR || l == NORI__LOOK_STALE) &&
        m.stored_at_ms == j->seen_stored_at)
        return true;
    nori_http_response_clear(cur);
    return false;
}

/*
 * Across processes (a shared backend, with lock_timeout_ms):
 * the refresh takes the key's lease, as a miss's fill does, but does not
 * wait for it: a lease held elsewhere means another process is filling or
 * refreshing the key already. Once taken, the entry is checked again (a
 * refresh may have landed and let the lease go just before). true: run the
 * handler; *held: the lease is ours to release.
 */
static bool refresh_lease(nori_http_cache *c, nori_backend *b, const refresh_job *j,
                          const nori_http_request *req, nori_http_response *cur,
                          char *lease_key, char *token, bool *held)
{
    *held = false;
    if (!nori__backend_traits(b)->shared || c->lock_timeout_ms == 0 ||
        !nori__http_lease_name(j->key, lease_key))
        return true;
    nori__http_lease_token(token);
    int added = 0;
    if (nori_backend_add(b, lease_key, token, strlen(token), c->lock_timeout_ms, &added) !=
        NORI_OK)
        return true; /* fail open, as a miss does without its lease */
    if (!added)
        return false;
    *held = true;
    if (refresh_wanted(c, b, j, req, cur)) {
        nori__http_lease_mark(b, lease_key); /* misses of the key sleep on it */
        return true;
    }
    nori__http_lease_release(b, lease_key, token);
    *held = false;
    return false;
}

/* Runs the handler on the copied request and stores its response:
 * conditional when the stale entry `cur` has validators, and then a 304
 * refreshes cur's headers and stores it again (RFC 9111 4.3.4). */
static nori__store_result refresh_fill(nori_http_cache *c, nori_backend *b, refresh_job *j,
                                       const nori_http_request *req, nori_http_response *cur)
{
    nori__gen_guard guard;
    bool guarded = nori__http_read_guard(c, b, req, &guard);
    nori__cond_req cond;
    bool conditional = nori__cond_request(&cond, req, cur);
    if (conditional)
        count(&c->revalidations);
    nori_http_response resp;
    nori_http_response_init(&resp);
    nori__store_result stored = NORI__STORE_NO;
    int64_t sent = nori__wall_ms();
    int rc = j->handler(conditional ? &cond.req : req, &resp, j->ud);
    if (rc == NORI_OK && conditional && resp.status == 304) {
        if (nori__http_update_headers(cur, &resp) == NORI_OK) {
            nori_http_response_clear(&resp);
            resp = *cur;
            nori_http_response_init(cur);
            count(&c->revalidated);
        } else {
            count(&c->errors);
        }
    }
    if (rc == NORI_OK && guarded)
        stored = nori__http_store(c, b, j->key, req, &resp, sent, nori__wall_ms(), &guard,
                                  NULL);
    if (guarded)
        nori__gen_guard_clear(&guard);
    nori_http_response_clear(&resp);
    return stored;
}

static void refresh_run(void *arg)
{
    refresh_job *j = arg;
    nori_http_cache *c = j->c;
    /* A handler that calls the cache for its own key from here must not
     * wait for this very refresh. */
    nori__flight_set_owner(c->flights, j->flight);
    nori_http_request req = {"GET", j->path, j->query, job_header, j, NULL, 0, job_each_header};
    /* The copy must map to the same entry: a key function that read a
     * header not copied would otherwise file this response under another
     * key (another user's). */
    char key[NORI_MAX_KEY_LEN + 1];
    if (nori_http_cache_key(c, &req, key, sizeof key) != NORI_OK || strcmp(key, j->key) != 0) {
        count(&c->refreshes_dropped);
        nori__flight_finish(c->flights, j->flight, false);
        job_free(j);
        return;
    }
    nori_backend *b = c->backend;
    char lease_key[NORI_MAX_KEY_LEN + 1], token[64];
    bool held = false;
    nori__store_result stored = NORI__STORE_NO;
    nori_http_response cur;
    nori_http_response_init(&cur);
    if ((b != NULL || nori_get_backend(&b) == NORI_OK) && refresh_wanted(c, b, j, &req, &cur) &&
        refresh_lease(c, b, j, &req, &cur, lease_key, token, &held)) {
        stored = refresh_fill(c, b, j, &req, &cur);
        count(&c->refreshes);
    } else {
        count(&c->refreshes_skipped);
    }
    nori_http_response_clear(&cur);
    if (held)
        nori__http_lease_release(b, lease_key, token);
    nori__flight_finish(c->flights, j->flight, stored == NORI__STORE_DONE);
    job_free(j);
}

/* Copies the request header `name` into j when req has it (and j has
 * not yet); false when out of memory. */
static bool copy_named(refresh_job *j, const nori_http_request *req, const char *name)
{
    const char *v = nori_http_request_header(req, name);
    return v == NULL || job_header(j, name) != NULL || copy_one_header(j, name, v) == 0;
}

/* The request headers the stale entry's Vary names: the refresh's copy
 * needs them to select the same variant. */
static bool copy_vary_named(refresh_job *j, const nori_http_request *req,
                            const nori_http_response *entry)
{
    char names[NORI__VARY_NAMES_MAX];
    if (entry == NULL || nori__vary_names(entry, NULL, 0, names) <= 0)
        return true;
    for (char *p = names; *p != '\0';) {
        char *comma = strchr(p, ',');
        if (comma != NULL)
            *comma = '\0';
        if (!copy_named(j, req, p))
            return false;
        p = comma != NULL ? comma + 1 : p + strlen(p);
    }
    return true;
}

/* Starts one background refresh of key unless one (or a fill) is already
 * running for it. The stale answer (entry, whose metadata is *seen) goes
 * out either way. */
void nori__http_schedule_refresh(nori_http_cache *c, const char *key,
                                 const nori_http_request *req, nori_http_handler_fn handler,
                                 void *ud, const nori_http_response *entry,
                                 const nori__entry_meta *seen)
{
    nori__flight *f;
    nori__flight_role role =
        nori__flight_join(c->flights, key, false, nori__http_path_epoch(c, req), &f);
    if (role == NORI__FLIGHT_WAITER)
        nori__flight_release(c->flights, f);
    if (role != NORI__FLIGHT_LEADER)
        return;
    refresh_job *j = calloc(1, sizeof *j);
    bool ok = j != NULL;
    if (ok) {
        j->c = c;
        j->flight = f;
        j->handler = handler;
        j->ud = ud;
        j->seen_stored_at = seen->stored_at_ms;
        ok = (j->key = strdup(key)) != NULL && (j->path = strdup(req->path)) != NULL &&
             (j->query = strdup(req->query != NULL ? req->query : "")) != NULL;
    }
    for (size_t i = 0; ok && i < c->n_vary_on + c->n_refresh_headers; i++)
        ok = copy_named(j, req, i < c->n_vary_on ? c->vary_on[i]
                                                  : c->refresh_headers[i - c->n_vary_on]);
    if (ok)
        ok = copy_vary_named(j, req, entry);
    if (ok) {
        pthread_mutex_lock(&c->refresher_lock);
        if (c->refresher == NULL)
            ok = nori__refresher_new(c->refresh_threads, &c->refresher) == NORI_OK;
        pthread_mutex_unlock(&c->refresher_lock);
    }
    if (ok && nori__refresher_submit(c->refresher, refresh_run, refresh_drop, j) == NORI_OK)
        return;
    count(&c->refreshes_dropped);
    nori__flight_finish(c->flights, f, false);
    if (j != NULL)
        job_free(j);
}
