// SPDX-License-Identifier: MIT
/*
 * The response cache's entries in the backend: the key of a request, and
 * reading (nori__http_lookup) and writing (nori__http_store) an entry with
 * its freshness metadata. The backend's traits (src/backend.h), never its
 * name, choose the entry format: binary records decoded in place, or
 * Nori's JSON through the decoded-entry memo.
 *
 * Fail open, as the whole cache: a failure here is counted and reported
 * as a miss or a store that did not happen, never as a failed request.
 */
#include "http/entries.h"

#include "backend.h"
#include "error.h"

#include <string.h>
#include <strings.h>

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

/*
 * An upper bound of the encoded entry's size, computed before encoding, so
 * that a 200 MiB response over the backend's limit is not base64-encoded
 * (+270 MiB) only to be refused by set.
 */
static size_t encoded_size_bound(const nori_http_response *r, nori__entry_format format)
{
    size_t meta = 256 + (r->media_type ? strlen(r->media_type) : 0);
    for (size_t i = 0; i < r->n_headers; i++)
        meta += strlen(r->headers[i].name) + strlen(r->headers[i].value) + 16;
    size_t body = format == NORI__ENTRY_BINARY ? r->body_len : (r->body_len + 2) / 3 * 4;
    return body + meta;
}

/* ------------------------------------------------------------ storing */

static int64_t max3(int64_t a, int64_t b, int64_t c)
{
    int64_t m = a > b ? a : b;
    return m > c ? m : c;
}

/* The stale windows that apply to an entry: the longer of the route's and
 * the response's own, none when it must revalidate. */
static void windows(const nori_http_cache *c, const nori__entry_meta *m, int64_t *swr,
                    int64_t *sie)
{
    if (m->flags & NORI__META_NO_STALE) {
        *swr = *sie = 0;
        return;
    }
    *swr = c->swr_ms > m->swr_ms ? c->swr_ms : m->swr_ms;
    *sie = c->sie_ms > m->sie_ms ? c->sie_ms : m->sie_ms;
}

/* ms as a backend ttl: seconds rounded up, 1..NORI_MAX_TTL. */
static int64_t ttl_of(int64_t keep_ms)
{
    int64_t ttl = keep_ms / 1000 + (keep_ms % 1000 != 0);
    if (ttl < 1)
        ttl = 1;
    return ttl > NORI_MAX_TTL ? NORI_MAX_TTL : ttl;
}

/* The backend's ttl for an entry (0: no expiry, for a lifetime without
 * limit): what is left of its freshness plus the longest window in which
 * it is still of use (stale answers, or revalidation when it has a
 * validator), in seconds rounded up, at most NORI_MAX_TTL. */
static int64_t backend_ttl(const nori_http_cache *c, const nori__entry_meta *m, bool validator)
{
    if (m->fresh_ms < 0)
        return 0;
    int64_t swr, sie;
    windows(c, m, &swr, &sie);
    int64_t left = nori__sat_sub(m->fresh_ms, m->age_ms);
    return ttl_of(nori__sat_add(left > 0 ? left : 0,
                                max3(swr, sie, validator ? c->rules.keep_ms : 0)));
}

/* The names record of a URL whose responses vary: written after its
 * variant, for as long as any variant can live (with a route ttl, the cap
 * of every lifetime; else this variant's), and the entry at the URL's own
 * key goes (a response that does not vary, now superseded). Failures are
 * counted; the variant stays stored. */
static void store_names(nori_http_cache *c, nori_backend *b, const char *key, const char *names,
                        int64_t entry_ttl)
{
    char nkey[NORI_MAX_KEY_LEN + 1];
    if (!nori__vary_names_key(key, nkey)) {
        count(&c->errors);
        return;
    }
    int64_t ttl = entry_ttl;
    if (ttl > 0 && c->rules.ttl > 0) {
        nori__entry_meta cap = {0, c->rules.ttl * 1000, 0, 0, 0, 0};
        int64_t t = ttl_of(nori__sat_add(cap.fresh_ms, max3(c->swr_ms, c->sie_ms,
                                                            c->rules.keep_ms)));
        if (t > ttl)
            ttl = t;
    }
    if (nori_backend_set(b, nkey, names, strlen(names), ttl) != NORI_OK ||
        nori_backend_delete(b, key) != NORI_OK)
        count(&c->errors);
}

/*
 * Stores resp under key when the rules allow (policy.c), with its
 * freshness metadata (received now, fresh for the lifetime it asks for,
 * capped by the route's ttl and by NORI_MAX_TTL, its age then); the backend
 * keeps it as long as it can be of use. A response that varies on headers
 * the key does not hold goes under its variant's key, with the URL's names
 * record (vary.c). Only if no write to the path came since `guard` was read
 * (before the handler ran). Under the application rules, adds the derived
 * ETag to resp first, so the miss carries the same tag the hits will.
 * Counts the outcome.
 */
nori__store_result nori__http_store(nori_http_cache *c, nori_backend *b, const char *key,
                                    const nori_http_request *req, nori_http_response *resp,
                                    int64_t request_ms, int64_t now_ms,
                                    const nori__gen_guard *guard, nori__entry_meta *out)
{
    nori__entry_meta meta, unused;
    if (out == NULL)
        out = &unused;
    bool ok = nori__http_judge(&c->rules, resp, request_ms, now_ms, &meta);
    *out = meta;
    if (!ok)
        return NORI__STORE_NO;
    char names[NORI__VARY_NAMES_MAX], vkey[NORI_MAX_KEY_LEN + 1];
    int varies = nori__vary_names(resp, c->vary_on, c->n_vary_on, names);
    if (varies < 0)
        return NORI__STORE_NO;
    if (resp->status == 206) {
        /* One range of one request: kept for that range only (RFC 9111
         * rules), never as the resource. */
        if (!c->rules.rfc || varies > 0 || !nori__http_range_key(key, req, resp, vkey))
            return NORI__STORE_NO;
        key = vkey;
    } else if (varies > 0 && nori__vary_key(key, names, req, vkey) != NORI_OK) {
        count(&c->errors); /* a key too long for its values: uncacheable */
        return NORI__STORE_NO;
    }
    nori__entry_format format = nori__backend_traits(b)->entry_format;
    if (encoded_size_bound(resp, format) > nori_backend_max_value(b)) {
        count(&c->too_big);
        return NORI__STORE_NO;
    }
    /* A shared cache adds no validator of its own: it would send it to an
     * origin that never made it (RFC 9111 rules). */
    if (!c->rules.rfc && nori__http_ensure_etag(resp) != NORI_OK) {
        count(&c->errors);
        return NORI__STORE_NO;
    }
    nori_buf enc;
    int erc = format == NORI__ENTRY_BINARY ? nori__entry_encode_binary_meta(resp, &meta, &enc)
                                           : nori__entry_encode_json_meta(resp, &meta, &enc);
    if (erc == NORI_ETYPE) {
        count(&c->not_encodable);
        return NORI__STORE_NO;
    }
    int stored = 0;
    int64_t ttl = backend_ttl(c, &meta, nori__http_has_validator(resp));
    if (erc == NORI_OK) {
        erc = nori__gen_store(c->gens, b, guard, varies > 0 ? vkey : key, enc.data, enc.len,
                              ttl, &stored);
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
    if (erc != NORI_OK)
        return NORI__STORE_NO;
    if (varies > 0)
        store_names(c, b, key, names, ttl);
    return NORI__STORE_DONE;
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

typedef enum { READ_OK, READ_ABSENT, READ_MISS, READ_ERROR } read_result;

/* Reads and decodes the entry at key. */
static read_result read_entry(nori_http_cache *c, nori_backend *b, const char *key,
                              nori_http_response *resp, nori__entry_meta *meta, bool quiet,
                              bool range)
{
    nori_buf val;
    int rc = nori_backend_get(b, key, &val);
    if (rc == NORI_MISS)
        return READ_ABSENT;
    if (rc == NORI_ETOOBIG) {
        /* A value over the backend's limit, refused by the backend itself
         * (Redis reads obey the limit): an undecodable entry, a miss that
         * the fresh response overwrites, not a failing backend (that would
         * leave the oversized entry in place and run the handler on every
         * request for as long as it lives). */
        if (!quiet)
            count(&c->errors);
        return READ_MISS;
    }
    if (rc != NORI_OK) {
        count(&c->errors); /* NORI_EBACKEND */
        return READ_ERROR;
    }
    /* A value over the backend's limit (the limit was lowered, or another
     * client wrote it) is not decoded: an undecodable entry, a miss. */
    if (val.len > nori_backend_max_value(b)) {
        nori_buf_free(&val);
        if (!quiet)
            count(&c->errors);
        return READ_MISS;
    }
    /* A binary record is decoded in place (its body is the block get
     * returned). JSON entries go through the memo: a near cache answers a
     * hot key with the same bytes until its source invalidates it, and
     * parsing JSON and base64 on each hit cost more than the rest of the
     * hit. Binary records are accepted only from a backend that declares
     * them: on one that other clients write, bytes that happen to end like
     * a record are not trusted as one. */
    bool binary = nori__backend_traits(b)->entry_format == NORI__ENTRY_BINARY;
    if ((binary ? nori__entry_decode_meta(&val, true, resp, meta)
                : nori__memo_decode(c->memo, key, &val, resp, meta)) != NORI_OK) {
        if (!quiet)
            count(&c->errors); /* a miss; the fresh response overwrites it */
        return READ_MISS;
    }
    /* Read as strictly as written: a 206 only under a range key, and a
     * range key holds nothing else; the application rules never store
     * another status (another writer's entry, or one of a cache with other
     * rules under the same prefix): a miss, overwritten. Nor do they replay
     * a Set-Cookie: one in an entry Nori's Python wrote is left out, as
     * this library always did with it. */
    if ((resp->status == 206) != range ||
        (!c->rules.rfc && (resp->status > 299 || resp->status == 204 || resp->status == 205))) {
        nori_http_response_clear(resp);
        if (!quiet)
            count(&c->errors);
        return READ_MISS;
    }
    if (!c->rules.rfc) {
        if (meta->flags & NORI__META_SET_COOKIE)
            nori__http_remove_header(resp, "Set-Cookie");
    }
    return READ_OK;
}

/* The variant of key that req selects, through the URL's names record. */
static read_result read_variant(nori_http_cache *c, nori_backend *b, const char *key,
                                const nori_http_request *req, nori_http_response *resp,
                                nori__entry_meta *meta, bool quiet)
{
    char nkey[NORI_MAX_KEY_LEN + 1], vkey[NORI_MAX_KEY_LEN + 1];
    if (!nori__vary_names_key(key, nkey))
        return READ_ABSENT;
    nori_buf names;
    int rc = nori_backend_get(b, nkey, &names);
    if (rc == NORI_MISS)
        return READ_ABSENT;
    if (rc != NORI_OK) {
        count(&c->errors);
        return rc == NORI_ETOOBIG ? READ_MISS : READ_ERROR;
    }
    read_result r = READ_ABSENT;
    if (!nori__vary_names_ok(names.data, names.len)) {
        if (!quiet)
            count(&c->errors); /* not a record this library wrote: ignored */
    } else if (nori__vary_key(key, names.data, req, vkey) == NORI_OK) {
        r = read_entry(c, b, vkey, resp, meta, quiet, false);
    }
    nori_buf_free(&names);
    return r;
}

bool nori__http_within_stale_if_error(const nori_http_cache *c, const nori__entry_meta *m,
                                      int64_t now_ms)
{
    int64_t swr, sie;
    windows(c, m, &swr, &sie);
    return nori__http_current_age(m, now_ms) < nori__sat_add(m->fresh_ms, sie);
}

nori__lookup_result nori__http_lookup(nori_http_cache *c, nori_backend *b, const char *key,
                                      const nori_http_request *req, nori_http_response *resp,
                                      nori__entry_meta *meta, int64_t now_ms, bool quiet)
{
    read_result r = read_entry(c, b, key, resp, meta, quiet, false);
    if (r == READ_ABSENT && req != NULL)
        r = read_variant(c, b, key, req, resp, meta, quiet);
    char rkey[NORI_MAX_KEY_LEN + 1];
    if (r == READ_ABSENT && req != NULL && c->rules.rfc &&
        nori__http_range_key(key, req, NULL, rkey))
        r = read_entry(c, b, rkey, resp, meta, quiet, true);
    switch (r) {
    case READ_ABSENT:
        return NORI__LOOK_ABSENT;
    case READ_MISS:
        return NORI__LOOK_MISS;
    case READ_ERROR:
        return NORI__LOOK_ERROR;
    case READ_OK:
        break;
    }
    /* An entry without freshness fields (Nori's Python wrote it) is fresh
     * for as long as the backend keeps it, as Python would serve it. */
    if (meta->stored_at_ms < 0 || meta->fresh_ms < 0)
        return NORI__LOOK_FRESH;
    int64_t age = nori__http_current_age(meta, now_ms);
    if (age < meta->fresh_ms)
        return NORI__LOOK_FRESH;
    int64_t swr, sie;
    windows(c, meta, &swr, &sie);
    if (age < nori__sat_add(meta->fresh_ms, swr))
        return NORI__LOOK_STALE_SWR;
    int64_t keep = nori__http_has_validator(resp) ? c->rules.keep_ms : 0;
    if (age < nori__sat_add(meta->fresh_ms, sie > keep ? sie : keep))
        return NORI__LOOK_STALE;
    nori_http_response_clear(resp);
    return NORI__LOOK_ABSENT;
}
