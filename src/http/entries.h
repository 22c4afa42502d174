// SPDX-License-Identifier: MIT
/*
 * The response cache's state, and its entries in the backend: the bottom
 * layer of the files that make up the cache. entries.c reads an entry
 * (lookup), writes one (store, guarded by the path's generation) and
 * computes keys; lease.c (coalescing across processes), revalidate.c
 * (background refreshes) and cache.c (serving) build on it, in that order,
 * and nothing here calls up into them. The other parts of src/http/ see
 * the cache through http/internal.h only.
 */
#ifndef NORI_SRC_HTTP_ENTRIES_H
#define NORI_SRC_HTTP_ENTRIES_H

#include "http/internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct nori_http_cache {
    nori__rules rules; /* storing and freshness (policy.c); rules.ttl is the route's ttl */
    char *prefix;
    nori_http_key_fn key_fn;
    void *key_fn_ud;
    char **vary_on; /* lower-cased copies */
    size_t n_vary_on;
    char *vary_header; /* "accept-language, ..." sent as Vary; NULL without vary_on */
    char **refresh_headers; /* copies */
    size_t n_refresh_headers;
    nori_backend *backend; /* borrowed; NULL = default backend */
    int allow_authorized, allow_cookie;
    int64_t swr_ms, sie_ms, lock_timeout_ms, hfm_ms;
    size_t refresh_threads;
    nori__flights *flights;
    nori__gens *gens; /* invalidation generations (generation.c) */
    pthread_mutex_t refresher_lock;
    nori__refresher *refresher; /* started on the first background refresh */
    nori__memo *memo; /* decoded JSON entries (backends with NORI__ENTRY_JSON) */
    _Atomic uint64_t hits, misses, stores, errors;
    _Atomic uint64_t bypass_method, bypass_authorization, bypass_cookie;
    _Atomic uint64_t not_encodable, too_big, unsendable;
    _Atomic uint64_t coalesced, lock_timeouts, hit_for_miss, stale_revalidate, stale_error;
    _Atomic uint64_t refreshes, refreshes_dropped, not_modified, invalidations;
    _Atomic uint64_t superseded, refreshes_skipped;
    _Atomic uint64_t revalidations, revalidated;
};

static inline void count(_Atomic uint64_t *counter)
{
    atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

typedef enum {
    NORI__LOOK_ABSENT, /* no entry, or one past every window */
    NORI__LOOK_MISS,   /* undecodable, or not for these rules (counted) */
    NORI__LOOK_ERROR,  /* the backend failed (counted): do not write to it either */
    NORI__LOOK_FRESH,
    NORI__LOOK_STALE_SWR, /* within stale_while_revalidate */
    NORI__LOOK_STALE      /* stale, kept: to revalidate, and to answer a failure with
                             within stale_if_error */
} nori__lookup_result;

/* Reads key's entry into *resp (initialised by the caller) and *meta, and
 * classifies it at now_ms. When key has no entry and req is not NULL, the
 * variant of key that req selects is read instead, if the URL has a names
 * record (vary.c). quiet: an undecodable entry is not counted (the
 * caller's first lookup counted it). */
nori__lookup_result nori__http_lookup(nori_http_cache *c, nori_backend *b, const char *key,
                                      const nori_http_request *req, nori_http_response *resp,
                                      nori__entry_meta *meta, int64_t now_ms, bool quiet);

/* Whether an entry (meta, held in resp) judged at now_ms may answer a
 * failure of its handler: within the longer of the route's and its own
 * stale_if_error, and not must-revalidate. */
bool nori__http_within_stale_if_error(const nori_http_cache *c, const nori__entry_meta *m,
                                      int64_t now_ms);

typedef enum {
    NORI__STORE_NO,        /* not stored: unstorable, or failed (counted) */
    NORI__STORE_DONE,      /* stored */
    NORI__STORE_SUPERSEDED /* a write to the path came while the handler ran */
} nori__store_result;

/* Stores resp, the answer to req (sent at request_ms, received at
 * now_ms), under key, or under the variant of key req selects when resp
 * varies, when the rules allow and no write to the path came since guard
 * was read (see entries.c). Counts the outcome. *meta (may be NULL)
 * receives the entry's metadata as the rules judge it, stored or not. */
nori__store_result nori__http_store(nori_http_cache *c, nori_backend *b, const char *key,
                                    const nori_http_request *req, nori_http_response *resp,
                                    int64_t request_ms, int64_t now_ms,
                                    const nori__gen_guard *guard, nori__entry_meta *meta);

/* Reads the generation guarding a store of req's response, before its
 * handler runs; false (counted) when it cannot be known. */
bool nori__http_read_guard(nori_http_cache *c, nori_backend *b, const nori_http_request *req,
                           nori__gen_guard *g);

/* The in-process generation of req's path: the epoch of its flights. */
uint64_t nori__http_path_epoch(nori_http_cache *c, const nori_http_request *req);

/* ---- invalidate.c ---- */

/* true for a method that is not safe (RFC 9110 9.2.1): any but GET, HEAD,
 * OPTIONS and TRACE. */
bool nori__http_unsafe_method(const char *m);

/*
 * The path a Location / Content-Location value v names on req's own origin,
 * into out[cap]: a path-absolute reference ("/a/b?q"), an absolute URI or
 * network-path reference whose authority is req's Host ("http://host/a",
 * "//host/a"), or a relative path resolved against the directory of req's
 * path ("b" from "/a/x" is "/a/b"). *query: its query (inside v, up to a
 * '#'), or NULL. false for anything else: another host, dot segments, too
 * long.
 */
bool nori__http_location_path(const nori_http_request *req, const char *v, char *out,
                              size_t cap, const char **query);

/* RFC 9111 4.4: resp, a 2xx or 3xx answer to the unsafe request req,
 * invalidates req's path and the same-origin paths of its Location and
 * Content-Location (see invalidate.c). Failures are counted. */
void nori__http_invalidate(nori_http_cache *c, const nori_http_request *req,
                           const nori_http_response *resp);

#endif
