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
static size_t encoded_size_bound(const nori_http_response *r, nori__entry_format format)
{
    size_t meta = 256 + (r->media_type ? strlen(r->media_type) : 0);
    for (size_t i = 0; i < r->n_headers; i++)
        meta += strlen(r->headers[i].name) + strlen(r->headers[i].value) + 16;
    size_t body = format == NORI__ENTRY_BINARY ? r->body_len : (r->body_len + 2) / 3 * 4;
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
    nori__entry_format format = nori__backend_traits(b)->entry_format;
    if (encoded_size_bound(resp, format) > nori_backend_max_value(b)) {
        count(&c->too_big);
        return NORI__STORE_NO;
    }
    if (nori__http_ensure_etag(resp) != NORI_OK) {
        count(&c->errors);
        return NORI__STORE_NO;
    }
    nori__entry_meta meta = {now_ms, fresh_ms};
    nori_buf enc;
    int erc = format == NORI__ENTRY_BINARY ? nori__entry_encode_binary_meta(resp, &meta, &enc)
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

