// SPDX-License-Identifier: MIT
/*
 * nori/http.h - the response cache of libnoricache (docs/ARCHITECTURE.md,
 * "The response cache in named steps"; docs/HTTP.md).
 *
 * Framework-neutral: an adapter (see nori/mhd.h for libmicrohttpd) builds a
 * nori_http_request view of the request it received, calls
 * nori_http_cache_serve() with the application's handler, and sends the
 * nori_http_response it gets back. The cache sits on any nori_backend, so the
 * same code caches in process memory or in a Redis shared with Nori's Python
 * decorator.
 *
 * Semantics (normative):
 *  - Only GET is stored. GET and HEAD are served from the cache (HEAD from
 *    the GET entry: same headers, the adapter sends no body; a HEAD that
 *    misses runs the handler and stores nothing). Every other method runs
 *    the handler and is never stored (origin NORI_HTTP_BYPASS).
 *  - Requests that carry credentials bypass the cache (origin BYPASS,
 *    counted by reason) on a route without a key function, because the
 *    response may be that user's (RFC 9111 3.5 forbids a shared cache to
 *    reuse a response to a request with Authorization):
 *      Authorization: bypass unless the route sets allow_authorized;
 *      Cookie: bypass unless the route sets allow_cookie. This is the safe
 *      default although most browser traffic carries some cookie
 *      (analytics, consent): the cache cannot know whether the handler reads
 *      the cookie, a wrongly shared page leaks one user's data to the next,
 *      while a wrong bypass only costs speed. Varnish's builtin.vcl decides
 *      the same. A route whose handler never reads cookies (public pages,
 *      assets) sets allow_cookie = 1; a route that does read them scopes its
 *      entries with a key function (which also lifts both bypasses).
 *    Deliberate, under the RFC 9111 rules too: a request with Authorization
 *    bypasses even where RFC 9111 3.5 would let a response marked public,
 *    s-maxage or must-revalidate be stored for others (the cache cannot
 *    tell beforehand, and the bypass costs only speed); and Cookie, which
 *    RFC 9111 does not mention, bypasses as above.
 *  - What is stored depends on the cache's rules (nori_http_rules; the
 *    response's Cache-Control, or its targeted field, see targeted_fields):
 *    never a response with `no-store` (unless `must-understand` with a
 *    status this cache knows), `private` (qualified or not: this is a shared
 *    cache) or `Vary: *`.
 *    Application rules (default): status 2xx but 204, 205 and 206 (a 206 is
 *    one range of one request); no Set-Cookie; no `no-cache`. A response
 *    that states no freshness is stored only with a status cacheable by
 *    default (RFC 9111 4.2.2: of those, 200 and 203), fresh for the ttl.
 *    RFC 9111 rules: any final status but 304 (a 206 only as a range
 *    entry, below; the statuses of RFC 9110 only, with `must-understand`),
 *    when it states its freshness
 *    (s-maxage, max-age, Expires) or, without, when its status is
 *    cacheable by default (200, 203, 204, 206, 300, 301, 308, 404, 405,
 *    410, 414, 501) or it says `public`: then fresh for heuristic_percent of
 *    its age since Last-Modified, else stored stale (to be revalidated). A
 *    Set-Cookie response only when it states its freshness (RFC 9111 7:
 *    Set-Cookie does not inhibit caching; an origin that sets a cookie and a
 *    max-age means it). `no-cache` responses are stored, stale at once.
 *    Both: a response that would be stale on arrival (max-age=0, an Expires
 *    not after its Date, an Age over its lifetime) is stored only when it
 *    has a validator and the cache keeps stale entries (keep).
 *  - A response is stored exactly or not at all: a header or media type
 *    that cannot be encoded (control bytes, a name that is not a token,
 *    over the limits below, non-UTF-8 text in a JSON entry) means not
 *    stored (counted in `not_encodable`), never stored without it. A body
 *    whose encoded entry would exceed the backend's value limit
 *    (nori_backend_max_value) is not stored either, and is not encoded
 *    first (counted in `too_big`).
 *  - Stored with the entry and replayed on a hit: status, media type, body
 *    bytes (binary-safe) and every header line of the response, in order
 *    (RFC 9111 3.1), but: the connection-specific ones (Connection and the
 *    fields it names, Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade,
 *    Proxy-*), Content-Length (the adapter sends the body's length; it
 *    refuses a stored one), Content-Type (travels as the media type), Age
 *    (computed on each answer) and lines with an empty value (an adapter
 *    cannot always send them: libmicrohttpd drops them from the miss too).
 *    At most NORI_HTTP_MAX_ENTRY_HEADERS lines and
 *    NORI_HTTP_MAX_ENTRY_HEADER_BYTES bytes of them. In a JSON entry the
 *    lines of one name are joined with ", " (RFC 9110 5.3), and a response
 *    with two Set-Cookie lines is not encodable (they cannot be joined).
 *    The application rules never replay a Set-Cookie (one in an entry
 *    Nori's Python wrote is left out).
 *  - Entries are read as strictly as they are written: a stored status no
 *    rules store (1xx, 304, 600+; a 206 but under a range key), a header or
 *    media type the encoder
 *    would have refused, more than the bounds: the entry is a miss, counted
 *    in `errors`, and the fresh response overwrites it; so is, under the
 *    application rules, an entry of a status they do not store. Entries of
 *    the previous version (binary records "NRB2", JSON without the new
 *    fields) are read as entries of age 0.
 *    An entry written by Nori's Python (no "stored_at" field) whose media
 *    type is text/... without a charset gets "; charset=utf-8", as
 *    Starlette adds when it sends it.
 *  - Coalescing (single-flight): when a cacheable GET misses, one request
 *    runs the handler; the other requests for the same key in this process
 *    wait on a condition variable (no polling) and are served the stored
 *    response (NORI_HTTP_HIT, counted in `coalesced`). A waiter gives up
 *    after lock_timeout_ms (default 5 s, nginx's proxy_cache_lock_timeout)
 *    and runs the handler itself. A response that cannot be stored (5xx,
 *    Set-Cookie, private...) releases the waiters at once, who each run the
 *    handler, and the key is remembered as such for hit_for_miss_ms
 *    (Varnish's hit-for-miss), so later requests do not queue. A handler
 *    that calls the cache for its own key is answered uncached, never left
 *    waiting for itself. Across processes sharing a backend other than
 *    memory (Redis), the in-process leader also takes a lease "{key}:lock"
 *    (nori_backend_add: SET NX PX, for lock_timeout_ms, with a token unique
 *    to the call) and releases it by token (nori_backend_delete_if_equal);
 *    a process that finds the lease taken polls the entry (5 ms doubling to
 *    50 ms; there is nothing to wait on across processes) until the
 *    holder's fill lands, the lease goes away, or lock_timeout_ms passes.
 *    A holder that dies blocks nobody past its lease. So N processes on one
 *    Redis run the handler once per expiry. A lease whose value is not a
 *    recent token of this library (another client left "{key}:lock",
 *    perhaps without a TTL) is not waited for: counted in `errors`, the
 *    handler runs at once.
 *  - Freshness (RFC 9111 4.2): an entry records when it was received, its
 *    freshness lifetime and its age then. The lifetime is s-maxage (a
 *    shared cache's own; it also forbids stale answers, as
 *    proxy-revalidate), else max-age, else Expires - Date, else the rules'
 *    heuristic (above); never longer than the route's ttl (0: no cap) nor
 *    NORI_MAX_TTL. The age is RFC 9111 4.2.3's corrected_initial_age: the
 *    larger of the time since the response's Date and its Age plus the
 *    handler's run time; a hit's current age adds the time since. A fresh
 *    entry (current age under the lifetime) is a HIT with `Age` (seconds,
 *    at most 2^31). Sums of lifetimes, windows and ages saturate at the
 *    int64 bounds, whatever an entry read from a shared backend claims.
 *    Parsing is strict, as the HTTP caching test suite expects: directives
 *    in any case, quoted arguments read as their content, the first of a
 *    repeated directive counts, an argument that is not delta-seconds
 *    (-1, '5', 1.5) makes max-age / s-maxage invalid and the response stale
 *    (RFC 9111 4.2.1), a delta over 2^31 is 2^31; an invalid Expires means
 *    expired (5.3); an invalid Date means the time the response came.
 *    Deliberate: an Age that is not exactly one delta-seconds (a list, two
 *    lines, a sign, a fraction, parameters) makes the response stale on
 *    arrival, where RFC 9111 5.1 takes a list's first member and ignores an
 *    invalid value: a response this cache cannot age is taken for an old
 *    one (revalidated, never served as fresh), the safe side.
 *  - Revalidation (RFC 9111 4.3): a stale entry still kept (within its stale
 *    windows, or `keep` seconds when it has a validator) that has an ETag
 *    (not one the cache derived) or a Last-Modified makes the handler's
 *    request conditional: the request it is given (header lookup and
 *    enumeration alike) holds If-None-Match / If-Modified-Since with those
 *    values instead of the client's. A 304 answer updates the entry's
 *    headers from it (RFC 9111 3.2; but the fields that describe the stored
 *    body's bytes: ETag, Content-Encoding, Content-Range, Content-MD5,
 *    Digest, Content-Digest, Repr-Digest; a media type replaces the stored
 *    one), which is stored again with its new freshness and answers the
 *    request (origin HIT, counted in `revalidated`; the client gets the
 *    200, or a 304 when its own validators match). Any other answer is a
 *    miss's. In nori-proxy that is a conditional request to the origin; in
 *    an application, a handler that finds its data unchanged answers 304
 *    with no body. Deliberate: a 304 whose ETag differs from the one sent
 *    still updates the entry it answered (RFC 9111 4.3.4 would update none
 *    and need a full request): the 304 answered the cache's own request
 *    about that entry.
 *  - Stale serving (stale_while_revalidate, stale_if_error, seconds, off by
 *    default): within stale_while_revalidate after freshness ends, the
 *    request is answered from the entry at once (NORI_HTTP_STALE, `Age`
 *    shows how old) and one refresh per key runs on the cache's own worker
 *    pool (refresh_threads, started on first use), itself a conditional
 *    request when the entry has validators; within stale_if_error a
 *    handler failure (negative return or 5xx) is answered from the entry.
 *    Under the RFC 9111 rules the response's own `stale-while-revalidate`
 *    and `stale-if-error` directives (RFC 5861) count too: the longer of
 *    the route's window and the response's applies. No stale answer at all
 *    for an entry with must-revalidate, proxy-revalidate, s-maxage or
 *    no-cache (both rules). The backend keeps the entry for what is left of
 *    its lifetime plus the longest window (or keep, with a validator).
 *    stale_if_error is judged when the failure is answered, not when the
 *    request came in: a handler that fails after the window closed sends
 *    its failure. One refresh per expiry, also across processes: a refresh
 *    first reads the entry again and does nothing when it is no longer the
 *    one that was served stale (another refresh replaced it: counted in
 *    `refreshes_skipped`); on a backend other than memory it then takes the
 *    key's lease "{key}:lock" like a miss (for lock_timeout_ms; not with
 *    lock_timeout_ms 0), without waiting: a lease held by another process
 *    means that process is filling or refreshing the key, and this refresh
 *    is skipped too.
 *  - What Nori's Python decorator sees of such an entry: a normal entry (its
 *    extra fields "stored_at", "fresh_for", "initial_age",
 *    "stale_while_revalidate", "stale_if_error", "must_revalidate" are
 *    ignored; "headers" holds every stored header) that lives in Redis for
 *    its lifetime + the window (+ keep), so Python serves it as a hit until
 *    Redis drops it, stale part included; it neither revalidates it nor
 *    sends Age.
 *  - Validators: under the application rules a stored response carries a
 *    strong ETag, the handler's own or one derived from the body bytes
 *    alone (the same in every process); the RFC 9111 rules add none (a
 *    shared cache would send it to an origin that never made it). On a
 *    response from the cache, If-None-Match ("*", a list, weak comparison)
 *    that matches, or else If-Modified-Since not before Last-Modified, gives
 *    304 Not Modified: no body, and only the headers RFC 9110 15.4.5 names
 *    (ETag, Cache-Control, Vary, ...) plus Age, and `Content-Length` holding
 *    the length of the 200's body (RFC 9110 8.6 allows only that value on a
 *    304). An adapter sends it as that number and sends no body; the
 *    libmicrohttpd adapter does (nori/mhd.h).
 *  - Ranges (RFC 9111 rules): a GET with `Range: bytes=` one range (and no
 *    If-Range, or one naming the entry's strong ETag or its Last-Modified)
 *    answered from a stored 200 gets the 206 of that range with its
 *    Content-Range; several ranges, another unit, or a range past the end
 *    get the whole 200, which a server may always send. A 206 from the
 *    handler (one `Content-Range: bytes`, not multipart) to a GET with one
 *    range and no If-Range is kept for that exact Range value only, under
 *    "{key}:r={range}", and replayed as it came to the same range when the
 *    resource itself is not stored; never cut, combined or completed.
 *  - POST (RFC 9111 rules, RFC 9110 9.3.3): a 2xx answer to a POST whose
 *    Content-Location names exactly its target (path and query) and which
 *    states its freshness is stored as the target's GET entry, after the
 *    POST's own invalidation (and under a GET's credential rules).
 *  - Vary (RFC 9111 4.1): a response naming request headers in Vary is
 *    stored as a variant of its URL, under its key plus the values the
 *    request had for those headers (normalised: the lines of a header
 *    joined, whitespace around list members dropped, lower-cased for
 *    Accept-Encoding, Accept-Language and Accept-Charset, whose members are
 *    case-insensitive; a missing header differs from an empty one), and
 *    answers only a request with the same values. The headers a route's
 *    vary_on names are in the key already. A lookup learns the names from
 *    a per-URL names record next to the variants ("{key}:vary", in the
 *    backend, so every process sharing a Redis sees it): a URL whose
 *    responses vary costs one more read per lookup. `Vary: *` is never
 *    stored. Deliberate: members are not reordered (Accept-Language "en, de"
 *    and "de, en" are two variants: some servers read the order as a
 *    preference), and no content negotiation is done.
 *  - A route with vary_on sends `Vary: <its vary_on names>` on every GET and
 *    HEAD answer (unless the handler sent its own), and a route with a key
 *    function sends `Cache-Control: private` unless the handler set a
 *    Cache-Control: caches downstream (a CDN) must not share one user's
 *    answer with another.
 *  - Request Cache-Control and Pragma are ignored (deliberate): no-cache and
 *    max-age=0 would let any client force a miss on every request (the
 *    origin's load is the cache's to protect), max-stale / min-fresh /
 *    only-if-cached would let a client choose staleness the origin did not
 *    allow or get errors, and no-store would let a client keep responses
 *    out of the cache for everyone. RFC 9111 5.2.1 makes them advisory.
 *  - Invalidation (RFC 9111 4.4): a 2xx or 3xx answer to an unsafe method
 *    (any but GET, HEAD, OPTIONS and TRACE: POST, PUT, PATCH, DELETE, and
 *    unknown ones such as M-SEARCH) removes every entry of that path under
 *    the prefix (all queries, vary values and variants:
 *    nori_backend_delete_prefix of "{prefix}:{path}:"), and those of the
 *    paths its Location and Content-Location name on the same origin (a
 *    path, or an absolute URL whose authority is the request's Host; a
 *    relative reference resolved against the request path; one with dot
 *    segments is left alone). On a route with a key function the user's
 *    part precedes the path, so the whole prefix is removed. Counted in
 *    `invalidations` (one per path). Leases of fills in flight for the path
 *    go with the entries.
 *    Once that write has returned, no GET or HEAD of the path is answered
 *    with a response whose handler began before it: a fill (or background
 *    refresh) whose handler was running during the write does not store
 *    its response (counted in `superseded`; its own request, which came
 *    before the write returned, gets it), and a request that comes after
 *    the write does not wait for such a fill but starts its own. How: each
 *    write first moves an invalidation generation of its scope (the prefix
 *    above), then deletes; each fill reads the generation before its handler
 *    runs and stores only if it has not moved, in one atomic step. Scopes
 *    are hashed into 1024 buckets, and each bucket remembers the scopes of
 *    its last writes (four in the process, eight in a shared backend's
 *    generation key), so a write to another path of the same bucket does
 *    not cost a fill its store (more writes than that meanwhile do). On
 *    the memory backend the generation lives in the nori_http_cache (writes
 *    through another cache object with the same prefix are not seen: give
 *    each cache its own prefix). On Redis it is also a key
 *    "{prefix}#gen:{bucket}" (one per bucket that was ever written, no TTL,
 *    removed by flush; never an entry key) holding a random token and the
 *    scope's hash for each of the last eight writes (under 450 bytes), and
 *    the store is one Lua script that compares it and writes the entry,
 *    so this holds across every process sharing the server. Each miss reads
 *    that key once before its handler runs (one more round trip). On a Redis
 *    Cluster a script's keys must share a slot and an entry's key and its
 *    generation key rarely do: there the store compares, writes, compares
 *    again and takes the entry back if the generation moved, so for that
 *    one round trip a request may still be served the superseded entry.
 *    Redis may evict a generation key under an allkeys-* maxmemory policy:
 *    a fill that began while the key was absent, and stores after the token
 *    of a write was evicted again, is not stopped. With a near cache (nori_redis_backend_enable_near) another
 *    process drops its copies when Redis's invalidation message reaches it.
 *    An adapter answers a method its route does not declare with 405
 *    before the cache (see nori_http_route), so only writes a handler
 *    really serves invalidate.
 *  - A cache failure never fails the request: the handler runs and its
 *    response is served; the failure is counted in `errors`. A backend read
 *    that fails (NORI_EBACKEND, or NORI_ETOOBIG for a value over the limit)
 *    is a miss, and nothing is written back to the failing backend.
 *
 * Keys. Nori's shape is `{prefix}:{path}:{query}`, `{prefix}:{k}:{path}:{query}`
 * with a key function returning k, and a suffix `:vary=` + comma-joined
 * `name=value` pairs (lower-cased names, a missing header gives an empty
 * value) with vary-on headers. Taken literally that shape is ambiguous:
 * path "/a:b" + query "c" and path "/a" + query "b:c" both give "view:/a:b:c".
 * This library therefore percent-encodes the separator characters inside
 * every component it inserts: ':' -> %3A and '%' -> %25 in the path, the
 * query and the key-function output (so a component can never contain the
 * ':' that ends it), and additionally ',' -> %2C and '=' -> %3D in vary names
 * and values (so a value cannot forge another name=value pair). The result is
 * injective: two different (key-function output, path, query, vary values)
 * never share an entry.
 * What this changes: a key is byte-identical to Nori's for every request
 * whose path, query and key-function output contain no ':' and no '%', and
 * whose vary values contain none of the four characters - that covers
 * ordinary URLs such as "/products?page=2&sort=name" ("view:/products:page=2&sort=name").
 * A query with percent-escapes ("q=a%20b") or a raw ':' gets a different key
 * ("view:/search:q=a%2520b"); a Python service sharing those Redis entries
 * must apply the same escaping. The prefix is used verbatim: give each cache
 * its own prefix.
 *
 * Keys longer than NORI_MAX_KEY_LEN are never truncated (a truncated key could
 * collide): the request passes through to the handler uncached (origin
 * NORI_HTTP_BYPASS) and is counted in `errors`.
 *
 * Entry encoding. On the memory backend an entry is a compact binary record
 * whose body comes first, so a hit hands the stored bytes to the adapter with
 * no decoding work and no further copy. On Redis (with or without the near
 * cache), whose entries other clients read too, an entry is Nori's JSON object
 *   {"body_b64": "...", "status_code": 200, "media_type": "...", "headers": {...},
 *    "stored_at": ..., "fresh_for": ..., ...}
 * (this library's members after Nori's: see "What Nori's Python decorator
 * sees") and reads also accept the older {"body": "<utf-8 text>", ...}. An entry that
 * cannot be decoded (malformed JSON, wrong types, bad base64) is a miss,
 * counted in `errors`, and is overwritten by the fresh response.
 * Decoded-entry memo: each cache keeps up to 4 MiB of JSON entries it has
 * decoded (256 slots by key; an entry over 512 KiB is not kept). Every hit
 * still reads the backend (the near cache or Redis stays the source of
 * truth); the memo is used only when the key and the raw bytes just read
 * are identical to those it decoded, so a value another client rewrote is
 * decoded afresh. Decoding is a function of the bytes alone, so a memo hit
 * gives exactly the response a decode would.
 *
 * Thread safety: a nori_http_cache may be used by any number of threads at
 * once; nori_http_cache_free() must not run concurrently with other use.
 * A nori_http_response belongs to one thread at a time.
 */
#ifndef NORI_HTTP_H
#define NORI_HTTP_H

#include "nori/cache.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bounds of what an entry may hold (and what a read entry may hold). */
#define NORI_HTTP_MAX_MEDIA_TYPE 256     /* bytes of the media type */
#define NORI_HTTP_MAX_HEADER_NAME 256    /* bytes of one stored header name */
#define NORI_HTTP_MAX_HEADER_VALUE 4096  /* bytes of one stored header value */
#define NORI_HTTP_MAX_ETAG 256           /* bytes of the ETag, W/ and quotes included */
#define NORI_HTTP_MAX_ENTRY_HEADERS 64   /* stored header lines per entry */
/* Bytes of all stored header lines of an entry together (names + values +
 * 4 per line): what a server's header buffer holds (nginx's
 * proxy_buffer_size is 4 or 8 KiB; libmicrohttpd builds the header block in
 * a 32 KiB connection pool shared with the request). */
#define NORI_HTTP_MAX_ENTRY_HEADER_BYTES 16384

/* ------------------------------------------------------------------------ */
/* Requests                                                                 */
/* ------------------------------------------------------------------------ */

/*
 * Looks up request header `name`, case-insensitively. Returns the value, or
 * NULL when the request has no such header. The returned string is owned by
 * the adapter and must stay valid until the request is finished.
 */
typedef const char *(*nori_http_header_fn)(void *ud, const char *name);

/*
 * Called once per request header by nori_http_request_each_header(), in the
 * order the adapter received them (a repeated header once per line). name
 * and value are borrowed for the call only. Return 0 to go on, non-zero to
 * stop.
 */
typedef int (*nori_http_header_visit_fn)(void *visit_ud, const char *name, const char *value);

/*
 * Enumerates the request's headers: calls visit(visit_ud, name, value) for
 * each until visit returns non-zero. Provided by the adapter; returns 0, or
 * the non-zero value that stopped it.
 */
typedef int (*nori_http_headers_fn)(void *ud, nori_http_header_visit_fn visit, void *visit_ud);

/*
 * A read-only view of a request, built by the adapter; nothing is copied.
 * Every pointer is borrowed and valid for the duration of the serve call.
 */
typedef struct {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* decoded path, e.g. "/products" */
    const char *query;  /* raw query string without '?', e.g. "page=2"; NULL or "" = none */
    nori_http_header_fn header; /* may be NULL: the request has no headers */
    void *header_ud;
    const char *body; /* request body (POST); may be NULL when body_len == 0 */
    size_t body_len;
    /* Enumerates every header, called with header_ud (a proxy forwards
     * them); may be NULL: nori_http_request_each_header() then sees none.
     * Last, so that initialisers written before it keep compiling. */
    nori_http_headers_fn each_header;
} nori_http_request;

/* The value of header `name` of req, or NULL (also when req->header is NULL). */
NORI_EXPORT const char *nori_http_request_header(const nori_http_request *req,
                                                 const char *name);

/*
 * Calls visit(visit_ud, name, value) for each header of req, in the order
 * received, until visit returns non-zero. Returns 0 when every header was
 * visited (also when the adapter provides no enumeration: req->each_header
 * NULL), the non-zero value that stopped it, or NORI_EINVAL (req or visit
 * NULL). Runs on the calling thread; the strings are borrowed for the call.
 */
NORI_EXPORT int nori_http_request_each_header(const nori_http_request *req,
                                              nori_http_header_visit_fn visit, void *visit_ud);

/*
 * Finds `name` in an application/x-www-form-urlencoded string (a query
 * string or a form body) of `len` bytes, and writes its decoded value
 * ('+' -> ' ', %XX -> byte) NUL-terminated to out[cap]. Returns NORI_OK,
 * NORI_MISS when the name is absent, NORI_ETOOBIG when the value does not fit
 * (out then holds nothing useful), NORI_EINVAL on bad arguments. s may be NULL
 * when len == 0. Thread-safe (pure function).
 */
NORI_EXPORT int nori_http_form_value(const char *s, size_t len, const char *name,
                                     char *out, size_t cap);

/* ------------------------------------------------------------------------ */
/* Responses                                                                */
/* ------------------------------------------------------------------------ */

typedef enum {
    NORI_HTTP_BYPASS = 0, /* the cache was not consulted (method, credentials, key opt-out,
                             key too long) */
    NORI_HTTP_MISS = 1,   /* consulted, not found (or undecodable, or backend error): handler ran */
    NORI_HTTP_HIT = 2,    /* served from the cache; the handler did not run (also a 304) */
    NORI_HTTP_STALE = 3   /* served from an expired entry: stale_while_revalidate (a refresh
                             runs in the background) or stale_if_error (the handler failed) */
} nori_http_origin;

/* "BYPASS", "MISS", "HIT" or "STALE". Static string. */
NORI_EXPORT const char *nori_http_origin_name(nori_http_origin origin);

typedef struct {
    char *name;  /* owned by the response */
    char *value; /* owned by the response */
} nori_http_header;

/*
 * A response. Initialise with nori_http_response_init(), release with
 * nori_http_response_clear(). Every pointer in it is owned by the response
 * and allocated with malloc(); fill it through the setters below (which copy
 * or adopt), and read the fields directly.
 *
 * `body` is a malloc()ed block whose first body_len bytes are the body (the
 * block may be larger: on a memory-backend hit it is the whole stored entry).
 * An adapter may take the block over to send it without copying: read `body`
 * and `body_len`, then set body = NULL, body_len = 0; it must then free() the
 * block itself.
 */
typedef struct {
    int status;         /* HTTP status; 200 after init */
    char *media_type;   /* Content-Type; NULL = none */
    nori_http_header *headers;
    size_t n_headers;
    size_t cap_headers;
    char *body;
    size_t body_len;
    nori_http_origin origin; /* set by nori_http_cache_serve() */
} nori_http_response;

/* Sets *r to an empty 200 response with no media type, headers or body. */
NORI_EXPORT void nori_http_response_init(nori_http_response *r);

/* Frees everything r owns and re-initialises it. NULL-safe. */
NORI_EXPORT void nori_http_response_clear(nori_http_response *r);

/* Copies media_type (NULL clears it). NORI_OK or NORI_ENOMEM (r unchanged). */
NORI_EXPORT int nori_http_response_set_media_type(nori_http_response *r,
                                                  const char *media_type);

/* Appends a header, copying name and value. NORI_OK, NORI_EINVAL (NULL or
 * empty name, NULL value), NORI_ENOMEM (r unchanged). Duplicates are kept. */
NORI_EXPORT int nori_http_response_add_header(nori_http_response *r, const char *name,
                                              const char *value);

/* The value of the first header named `name` (case-insensitive), or NULL.
 * Borrowed from r: valid until r changes. */
NORI_EXPORT const char *nori_http_response_header(const nori_http_response *r,
                                                  const char *name);

/* Copies len bytes (NULs allowed; data may be NULL when len == 0) as the body,
 * replacing any previous one. NORI_OK or NORI_ENOMEM (r unchanged). */
NORI_EXPORT int nori_http_response_set_body(nori_http_response *r, const void *data,
                                            size_t len);

/* Adopts a malloc()ed block as the body (no copy); r frees it. Replaces and
 * frees any previous body. Never fails. */
NORI_EXPORT void nori_http_response_take_body(nori_http_response *r, char *data,
                                              size_t len);

/*
 * The status and header check of the application rules
 * (NORI_HTTP_RULES_APP): 1 when status is 2xx but 204, 205 and 206, with no
 * Set-Cookie header, no Cache-Control header with a `private`, `no-store`
 * or `no-cache` token, no `Vary: *`. 0 otherwise. The cache also needs a
 * freshness the response states or a status cacheable by default (see
 * "Semantics"). Pure function.
 */
NORI_EXPORT int nori_http_response_storable(const nori_http_response *r);

/* ------------------------------------------------------------------------ */
/* The cache                                                                */
/* ------------------------------------------------------------------------ */

/*
 * Optional per-request key component (per-user / per-tenant scoping). Write
 * the component (any bytes but NUL; it is escaped by the cache) into out[cap]
 * NUL-terminated and return its length, like snprintf: a return >= cap means
 * it did not fit, and the request passes through uncached, counted as an
 * error. Return a negative value to opt this request out of the cache (e.g.
 * an anonymous user): it passes through uncached, not counted as an error.
 * Called on the serving thread; must be thread-safe.
 */
typedef int (*nori_http_key_fn)(const nori_http_request *req, void *ud, char *out,
                                size_t cap);

/*
 * The caching rules a cache follows (nori_http_cache_options.rules); see
 * "Semantics" above for every difference.
 *  - NORI_HTTP_RULES_APP (the default): Nori's rules for an application's
 *    own routes. Status 2xx but 204/205/206; the route's ttl is the
 *    freshness of a 200 or 203 that states none, and caps any it states;
 *    never Set-Cookie; the cache derives an ETag from the body.
 *  - NORI_HTTP_RULES_RFC9111: a shared cache by RFC 9111, for a route
 *    whose responses come from elsewhere (a reverse proxy: nori-proxy uses
 *    it). Any final status that is cacheable by default or states its
 *    freshness; no heuristic freshness unless heuristic_percent says so;
 *    the route's ttl is a cap only (0: none); Set-Cookie stored when the
 *    response states its freshness; no-cache responses stored and
 *    revalidated (with keep); the response's own stale-while-revalidate /
 *    stale-if-error honoured; ranges of stored 200s answered; no ETag added.
 */
typedef enum {
    NORI_HTTP_RULES_APP = 0,
    NORI_HTTP_RULES_RFC9111 = 1
} nori_http_rules;

typedef struct {
    int64_t ttl;        /* seconds (0 = no expiry, as in nori_backend_set); default 60.
                           NORI_HTTP_RULES_RFC9111: a cap on any lifetime (0 = none) */
    const char *prefix; /* key prefix; default "view"; copied by nori_http_cache_new */
    nori_http_key_fn key_fn; /* NULL = none */
    void *key_fn_ud;
    const char *const *vary_on; /* header names (any case); copied; NULL = none */
    size_t n_vary_on;
    /* Borrowed: must outlive the cache. NULL = the process-wide default
     * backend (nori_get_backend), looked up on each request. */
    nori_backend *backend;
    /* Credentials (see "Semantics"): non-zero lets requests with
     * Authorization (allow_authorized) or Cookie (allow_cookie) use the
     * cache on a route without a key function. Default 0: they bypass. */
    int allow_authorized;
    int allow_cookie;
    /* Stale serving (seconds; 0 = off, the default). Within
     * stale_while_revalidate after the entry's freshness ends, a request is
     * answered from it at once (NORI_HTTP_STALE) and one refresh per key
     * runs on the cache's worker pool. Within stale_if_error, a handler
     * failure (a negative return or a 5xx) is answered from it. The backend
     * keeps the entry for its lifetime + the longer window. */
    int64_t stale_while_revalidate;
    int64_t stale_if_error;
    /* Coalescing: how long a request waits for another's fill of the same
     * key before running the handler itself, in ms. Default 5000 (nginx's
     * proxy_cache_lock_timeout); 0 = never wait (no coalescing). */
    int64_t lock_timeout_ms;
    /* How long a key whose response could not be stored is remembered as
     * such (its requests then run the handler without waiting), in ms.
     * Default 5000; 0 = off. */
    int64_t hit_for_miss_ms;
    /* Worker threads for background refreshes, started on the first one.
     * Default 2. */
    size_t refresh_threads;
    /* A background refresh outlives the request that triggered it, so it
     * runs the handler on a copy holding the path, the query, and only the
     * request headers named in vary_on and here (any case; copied; NULL =
     * none): list every header the handler or the key function reads
     * (e.g. "X-User"). The copy's key is recomputed, and a refresh whose key
     * differs from the entry's (the key function needed a header not
     * copied) is dropped, never stored under another user's key. */
    const char *const *refresh_headers;
    size_t n_refresh_headers;
    /* The caching rules (see nori_http_rules). Default NORI_HTTP_RULES_APP. */
    nori_http_rules rules;
    /* NORI_HTTP_RULES_RFC9111 only: heuristic freshness (RFC 9111 4.2.2)
     * of a response that states none, as this percentage of the time since
     * its Last-Modified (RFC 9111 suggests 10), for the statuses cacheable
     * by default or with `public`; capped by ttl. 0 (default): none, such
     * a response is stored stale, to be revalidated. At most 100. */
    unsigned heuristic_percent;
    /* Seconds a stale entry with a validator (ETag, Last-Modified) is kept
     * to be revalidated: a request then sends the handler If-None-Match /
     * If-Modified-Since, and a 304 refreshes the entry (see "Semantics").
     * Default 0: an entry is kept only for its stale windows. At most
     * NORI_MAX_TTL. */
    int64_t keep;
    /* Targeted cache-control fields (RFC 9213), such as "CDN-Cache-Control",
     * in priority order (any case; copied; NULL = none): the first of them
     * a response carries with a directive replaces its Cache-Control and
     * Expires for this cache's decisions. The fields are stored and sent on
     * like any other. */
    const char *const *targeted_fields;
    size_t n_targeted_fields;
} nori_http_cache_options;

/* Fills *o with the defaults: ttl 60, prefix "view", lock_timeout_ms 5000,
 * hit_for_miss_ms 5000, refresh_threads 2, nothing else. */
NORI_EXPORT void nori_http_cache_options_init(nori_http_cache_options *o);

/* An opaque response cache: options plus counters. */
typedef struct nori_http_cache nori_http_cache;

/*
 * Creates a cache from *opts (NULL = defaults). Strings and the vary list are
 * copied; the backend is borrowed. NORI_OK (*out owned by the caller, free
 * with nori_http_cache_free), NORI_EINVAL (ttl < 0 or > NORI_MAX_TTL, empty
 * prefix, empty vary name), NORI_ENOMEM. On failure *out is untouched.
 */
NORI_EXPORT int nori_http_cache_new(const nori_http_cache_options *opts,
                                    nori_http_cache **out);

/* Frees the cache (not its backend): waits for a background refresh that
 * is running, drops queued ones. No serve call may be running. NULL-safe. */
NORI_EXPORT void nori_http_cache_free(nori_http_cache *c);

/*
 * The application's handler: fill `resp` (already initialised, status 200)
 * and return NORI_OK, or return a negative code (the response is then not
 * stored, and the code is returned by nori_http_cache_serve()).
 */
typedef int (*nori_http_handler_fn)(const nori_http_request *req,
                                    nori_http_response *resp, void *ud);

/*
 * Serves `req` through the cache: on a hit fills *resp from the cache
 * (origin NORI_HTTP_HIT, handler not run; a 304 when the request's
 * validators match); otherwise runs handler(req, resp, ud) and stores the
 * response when the rules above allow (origin MISS, or BYPASS when the cache
 * was not consulted), or answers from a stale entry (origin STALE, see
 * stale_while_revalidate / stale_if_error). *resp must be initialised (it is
 * cleared first); the caller owns it afterwards and clears it.
 * Returns NORI_OK, the handler's negative code (unless stale_if_error
 * answered instead), or NORI_EINVAL for NULL arguments. Cache failures are
 * never returned (they are counted).
 * With stale_while_revalidate, a background refresh calls handler(..., ud)
 * after this call has returned: handler and ud must stay valid until
 * nori_http_cache_free() (which waits for a running refresh).
 * c may be NULL: then the handler simply runs (origin BYPASS).
 */
NORI_EXPORT int nori_http_cache_serve(nori_http_cache *c, const nori_http_request *req,
                                      nori_http_handler_fn handler, void *ud,
                                      nori_http_response *resp);

/*
 * For adapters: the hit that nori_http_cache_serve() returned could not be
 * sent (the transport refused a header of the stored entry). Counts it in
 * `unsendable` and `errors`, then serves req as a miss: runs the handler
 * without looking the entry up and stores its response over the entry, so
 * the bad entry does not break the URL until it expires. Same contract as
 * nori_http_cache_serve().
 */
NORI_EXPORT int nori_http_cache_serve_again(nori_http_cache *c, const nori_http_request *req,
                                            nori_http_handler_fn handler, void *ud,
                                            nori_http_response *resp);

/*
 * Builds the key this cache uses for req (without the backend's own prefix,
 * e.g. Redis's "cache:") into out[cap]. Useful to invalidate an entry with
 * nori_backend_delete. NORI_OK; NORI_MISS when the key function opted the
 * request out; NORI_ETOOBIG when the key is longer than NORI_MAX_KEY_LEN or
 * does not fit in cap; NORI_EINVAL on NULL arguments. Thread-safe.
 */
NORI_EXPORT int nori_http_cache_key(const nori_http_cache *c, const nori_http_request *req,
                                    char *out, size_t cap);

/* Counters since the cache was created (relaxed atomics, read individually). */
typedef struct {
    uint64_t hits;   /* GET/HEAD served from the cache */
    uint64_t misses; /* GET/HEAD looked up and not served from the cache */
    uint64_t stores; /* responses written to the cache */
    uint64_t errors; /* backend failures, undecodable entries, oversized keys */
    /* Requests that did not consult the cache, by reason. */
    uint64_t bypass_method;        /* not GET or HEAD */
    uint64_t bypass_authorization; /* Authorization without allow_authorized */
    uint64_t bypass_cookie;        /* Cookie without allow_cookie */
    /* Storable responses that were not stored. */
    uint64_t not_encodable; /* a kept header or media type that cannot be stored exactly */
    uint64_t too_big;       /* encoded entry over the backend's value limit */
    uint64_t unsendable;    /* hits the adapter could not send (nori_http_cache_serve_again) */
    /* Coalescing, stale serving, validators, invalidation. */
    uint64_t coalesced;        /* requests served from another request's fill (waited) */
    uint64_t lock_timeouts;    /* waits that reached lock_timeout_ms (then ran the handler) */
    uint64_t hit_for_miss;     /* requests that skipped waiting: key remembered unstorable */
    uint64_t stale_revalidate; /* STALE answers within stale_while_revalidate */
    uint64_t stale_error;      /* STALE answers within stale_if_error (handler failed) */
    uint64_t refreshes;        /* background refreshes run */
    uint64_t refreshes_dropped; /* background refreshes not queued (queue full, no memory) */
    uint64_t refreshes_skipped; /* background refreshes that found nothing to do: the entry
                                   was refreshed meanwhile, or another process holds its lease */
    uint64_t not_modified;     /* 304 answers */
    uint64_t invalidations;    /* prefix deletions after a successful write */
    uint64_t superseded;       /* responses not stored: a write to their path came while
                                  their handler ran */
    /* Decoded-entry memo (JSON entries, i.e. Redis): reads answered by
     * copying an earlier decode of the same key and bytes, and the bytes it
     * holds now (at most 4 MiB). */
    uint64_t memo_hits;
    uint64_t memo_bytes;
    /* Revalidation: conditional requests given to the handler (a stale
     * entry with validators, on a miss or in a background refresh), and
     * the 304s among them that refreshed the entry (answered from it). */
    uint64_t revalidations;
    uint64_t revalidated;
} nori_http_cache_stats;

/* Copies the counters to *out. NULL arguments are ignored. Thread-safe. */
NORI_EXPORT void nori_http_cache_get_stats(const nori_http_cache *c,
                                           nori_http_cache_stats *out);

/* ------------------------------------------------------------------------ */
/* Routes: what an adapter serves                                           */
/* ------------------------------------------------------------------------ */

/*
 * The methods a route serves, a bitmask for nori_http_route.methods. GET
 * brings HEAD with it. Other bits are reserved and ignored.
 */
#define NORI_HTTP_GET 0x01u
#define NORI_HTTP_HEAD 0x02u
#define NORI_HTTP_POST 0x04u
#define NORI_HTTP_PUT 0x08u
#define NORI_HTTP_PATCH 0x10u
#define NORI_HTTP_DELETE 0x20u
#define NORI_HTTP_OPTIONS 0x40u
#define NORI_HTTP_METHODS_ALL 0x7fu
/* Every method, those not named above included (PROPFIND, M-SEARCH...): for
 * a route that forwards requests (a reverse proxy). Any method name that is
 * an RFC 9110 token is served; such a route never answers 405. The cache
 * handles a method other than GET and HEAD as it handles POST: not stored
 * (BYPASS). Not part of NORI_HTTP_METHODS_ALL; the Allow value of a mask
 * lists the named methods only. */
#define NORI_HTTP_ANY_METHOD 0x80u

/*
 * One route of an adapter (the same type for every adapter; nori/mhd.h
 * calls it nori_mhd_route): requests whose decoded path equals `path`
 * (NULL = any path) go to handler(req, resp, ud) through `cache` (NULL =
 * never cached), if their method is one of `methods`. Everything is
 * borrowed and only read.
 *
 * For handler writers:
 *  - A handler is called only with the methods its route declares. Any
 *    other method is answered by the adapter with 405 Method Not Allowed
 *    and `Allow: <the declared methods>`, before the handler and before the
 *    cache: such a request neither runs the handler nor invalidates
 *    anything.
 *  - methods = 0 (what an initialiser that stops after `cache` gives, e.g.
 *    {"/dashboard", dashboard, NULL, cache}) serves GET and HEAD only: the
 *    safe default, since a 2xx/3xx answer to POST, PUT, PATCH or DELETE
 *    removes every cached entry of the path (see "Invalidation" above).
 *    A handler that writes declares it: NORI_HTTP_GET | NORI_HTTP_POST.
 *  - HEAD is served wherever GET is, by the GET handler (the adapter sends
 *    no body). Method names are case-sensitive: "get" is refused.
 * `methods` is the last field so that initialisers written before it existed
 * keep compiling and mean GET + HEAD (gcc's and clang's -Wextra note the
 * missing field: write it, as NORI_HTTP_GET).
 */
typedef struct {
    const char *path;
    nori_http_handler_fn handler;
    void *ud;
    nori_http_cache *cache;
    unsigned methods; /* NORI_HTTP_GET | ...; 0 = GET and HEAD */
} nori_http_route;

/* Bytes that any Allow value fits in, NUL included. */
#define NORI_HTTP_ALLOW_MAX 64

/*
 * 1 when a route whose methods field is `methods` serves `method` ("GET",
 * "POST", ...; case-sensitive; HEAD wherever GET; 0 = GET and HEAD), else 0
 * (also for a NULL or unknown method, unless `methods` has
 * NORI_HTTP_ANY_METHOD: then 1 for any non-empty token). Pure function,
 * thread-safe.
 */
NORI_EXPORT int nori_http_method_allowed(unsigned methods, const char *method);

/*
 * Writes the Allow value of `methods` (e.g. "GET, HEAD, POST"), NUL-terminated,
 * into out[cap]. NORI_OK; NORI_ETOOBIG when cap is too small (out is then
 * ""; NORI_HTTP_ALLOW_MAX is always enough); NORI_EINVAL for out NULL or
 * cap 0. Thread-safe.
 */
NORI_EXPORT int nori_http_allow_value(unsigned methods, char *out, size_t cap);

/*
 * Makes *resp (initialised; cleared first) the adapter's answer to a method
 * the route does not serve: 405, `Allow: <methods>`, text/plain body
 * "method not allowed\n", origin NORI_HTTP_BYPASS. NORI_OK, NORI_ENOMEM
 * (resp then empty), NORI_EINVAL (resp NULL).
 */
NORI_EXPORT int nori_http_response_not_allowed(nori_http_response *resp, unsigned methods);

#ifdef __cplusplus
}
#endif

#endif /* NORI_HTTP_H */
