/*
 * Internal interface between the parts of the response cache (src/http/):
 * key building (key.c), the entry codec (entry_codec.c) and the cache itself
 * (cache.c). Exposed to the white-box unit tests through the static
 * library.
 */
#ifndef NORI_SRC_HTTP_INTERNAL_H
#define NORI_SRC_HTTP_INTERNAL_H

#include "nori/http.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- saturating arithmetic ----
 *
 * For lifetimes, ages and deadlines in ms: a max-age of 2^63-1 on a route
 * without a ttl cap, a hostile entry or lease value, or a test clock at the
 * end of its range must clamp, never overflow (undefined behaviour). */
static inline int64_t nori__sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static inline int64_t nori__sat_sub(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_sub_overflow(a, b, &r))
        return b < 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static inline int64_t nori__sat_mul(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r))
        return (a < 0) == (b < 0) ? INT64_MAX : INT64_MIN;
    return r;
}

/* ---- http/response.c ---- */

/* 1 when the comma-separated header value `list` holds `token`
 * (case-insensitive, arguments ignored: "no-cache=\"x\"" holds no-cache). */
int nori__http_has_token(const char *list, const char *token);

/* ---- http/key.c ---- */

/*
 * Writes `{prefix}[:{E(keycomp)}]:{E(path)}:{E(query)}[:vary={pairs}]` into
 * out[cap], NUL-terminated, where E escapes ':' and '%' and the vary pairs
 * `name=value` (names lower-cased, a missing header gives "") escape ':',
 * '%', ',' and '='. keycomp NULL = no key-function component; query NULL is
 * "". vary_on holds n_vary names, already lower-case. Returns NORI_OK, or
 * NORI_ETOOBIG when the key exceeds NORI_MAX_KEY_LEN or cap - 1 (out is then
 * left NUL-terminated but meaningless: never use a truncated key).
 */
int nori__http_key_build(const char *prefix, const char *keycomp, const char *path,
                         const char *query, const char *const *vary_on, size_t n_vary,
                         const nori_http_request *req, char *out, size_t cap);

/* ---- http/entry_codec.c ---- */

/* The JSON field, added to Nori's entry, holding when the entry was stored
 * (Unix seconds). Nori's Python decorator ignores it; its absence marks an
 * entry Python wrote. */
#define NORI_ENTRY_FIELD_STORED_AT "stored_at"
/* ... and for how long it is fresh (seconds; absent = no limit). */
#define NORI_ENTRY_FIELD_FRESH_FOR "fresh_for"

/* Freshness metadata stored with an entry (both encodings). */
typedef struct {
    int64_t stored_at_ms; /* wall-clock ms (nori__wall_ms); -1 = unknown (Python's) */
    int64_t fresh_ms;     /* freshness lifetime; -1 = no limit / unknown */
} nori__entry_meta;

/* true when header `name` (any case) is one of those stored with an entry. */
bool nori__entry_keeps_header(const char *name);

/* true for the statuses an entry may hold: 2xx but 204, 205 and 206. */
bool nori__entry_status_ok(int status);

/* NORI_OK when header `name` is kept and value[0..len) can be stored and
 * sent back as is (bounded, no control bytes; an ETag is an entity-tag);
 * NORI_ETYPE with a message otherwise. */
int nori__entry_header_check(const char *name, const char *value, size_t len);

/* The same for a media type (Content-Type). */
int nori__entry_media_check(const char *media, size_t len);

/*
 * The memory backend's record: body first, then the metadata, then a
 * trailer (metadata length + magic). *out receives a new buffer owned by
 * the caller. NORI_OK, NORI_ENOMEM, or NORI_ETYPE when the response cannot
 * be stored exactly (status, a kept header or the media type refused by the
 * checks above).
 */
int nori__entry_encode_binary(const nori_http_response *r, nori_buf *out);

/* Nori's JSON entry: {"body_b64", "status_code", "media_type", "headers",
 * "stored_at"}. NORI_ETYPE as above, and also when the media type or a
 * kept header is not UTF-8 (a JSON string cannot carry it). */
int nori__entry_encode_json(const nori_http_response *r, nori_buf *out);

/*
 * Decodes an entry and takes ownership of in->data (in becomes {NULL,0}
 * whatever the result). accept_binary: also recognise the binary record
 * (memory backend). On NORI_OK *r (initialised by the caller, cleared here
 * first) holds the response; on a binary record r->body is in->data itself,
 * so no body byte is copied. A malformed entry is NORI_ETYPE with a message
 * saying why, and r is left empty. NORI_ENOMEM on allocation failure.
 */
int nori__entry_decode(nori_buf *in, bool accept_binary, nori_http_response *r);

/* The same, with freshness metadata (the plain forms above store "unknown"
 * for binary, and "now, no limit" for JSON). */
int nori__entry_encode_binary_meta(const nori_http_response *r, const nori__entry_meta *m,
                                   nori_buf *out);
int nori__entry_encode_json_meta(const nori_http_response *r, const nori__entry_meta *m,
                                 nori_buf *out);

/* nori__entry_decode that also reports the freshness metadata (-1 fields
 * when the entry has none, e.g. one written by Nori's Python). */
int nori__entry_decode_meta(nori_buf *in, bool accept_binary, nori_http_response *r,
                            nori__entry_meta *m);

/* Standard base64 with padding. *out is a new NUL-terminated buffer. */
int nori__base64_encode(const void *data, size_t len, nori_buf *out);

/*
 * Strict standard base64: length a multiple of 4, only the alphabet, at most
 * two '=' and only at the end, zero padding bits. *out is a new buffer (one
 * NUL byte after the data). NORI_OK, NORI_ETYPE on bad input, NORI_ENOMEM.
 */
int nori__base64_decode(const char *s, size_t len, nori_buf *out);

/* ---- http/memo.c ---- */

/*
 * Decoded-entry memo (see memo.c): decoding a JSON entry that this cache
 * decoded before for the same key, from the very same bytes, copies the
 * earlier result instead of parsing again. Never a source of truth: used
 * only when key and raw bytes both match what the backend returned now.
 */
typedef struct nori__memo nori__memo;
typedef struct {
    uint64_t hits, misses, stores;
    size_t bytes;
} nori__memo_stats;

/* A memo holding at most max_bytes (entries over max_bytes / 8 are not kept). */
int nori__memo_new(size_t max_bytes, nori__memo **out);
void nori__memo_free(nori__memo *m);
/* nori__entry_decode_meta(in, false, r, meta) for the value of key, through
 * the memo (m NULL: plain decode). Same ownership and results. */
int nori__memo_decode(nori__memo *m, const char *key, nori_buf *in, nori_http_response *r,
                      nori__entry_meta *meta);
void nori__memo_get_stats(nori__memo *m, nori__memo_stats *out);
/* The bound each response cache gives its memo. */
#define NORI__MEMO_MAX_BYTES ((size_t)4 * 1024 * 1024)
/* Tests: the memo of a response cache (cache.c). */
nori__memo *nori__http_cache_memo(nori_http_cache *c);

/* ---- http/fresh.c ---- */

/* Freshness lifetime of r in ms: Cache-Control s-maxage, else max-age,
 * capped by route_ttl (seconds; 0 = no cap); neither: route_ttl (or -1 =
 * no limit when route_ttl is 0). Expires is ignored. */
int64_t nori__http_lifetime_ms(const nori_http_response *r, int64_t route_ttl);

/* Adds a strong ETag derived from the body bytes when r has none. */
int nori__http_ensure_etag(nori_http_response *r);

/* 1 when req's validators say the client's copy of r is current:
 * If-None-Match (weak comparison, lists, *), else If-Modified-Since against
 * Last-Modified. */
int nori__http_not_modified(const nori_http_request *req, const nori_http_response *r);

/* Turns r into its 304 Not Modified form (RFC 9110 15.4.5). */
int nori__http_make_304(nori_http_response *r);

/* ---- http/date.c ---- */

/* An IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") and its NUL. */
#define NORI_HTTP_DATE_SIZE 30
/* The instants an HTTP-date can name: years 0000 to 9999 (Unix seconds). */
#define NORI_HTTP_DATE_MIN (-62167219200LL) /* Sat, 01 Jan 0000 00:00:00 GMT */
#define NORI_HTTP_DATE_MAX 253402300799LL   /* Fri, 31 Dec 9999 23:59:59 GMT */

/*
 * Parses s[0..len) as an HTTP-date (RFC 9110 5.6.7), whatever the locale:
 * IMF-fixdate, or the obsolete rfc850-date and asctime-date forms, exactly
 * as the grammar spells them (case-sensitive English names, fixed digit
 * counts, single spaces, no surrounding whitespace). Strict otherwise: a
 * weekday that is not the date's, a day past the month's end, an hour over
 * 23, a minute over 59, a second over 60 (60 is a leap second, read as the
 * next second) or any trailing byte makes it invalid. An rfc850 two-digit
 * year that would lie more than 50 years after now_s (Unix seconds) is taken
 * from the century before. NORI_OK and *out (Unix seconds, in
 * NORI_HTTP_DATE_MIN..MAX); NORI_EINVAL with a message naming the form.
 */
int nori__http_date_parse(const char *s, size_t len, int64_t now_s, int64_t *out);

/*
 * Writes t (Unix seconds) as an IMF-fixdate into out, NUL-terminated.
 * NORI_OK; NORI_ERANGE when t is outside NORI_HTTP_DATE_MIN..MAX (out is
 * then ""); NORI_EINVAL for out NULL. Locale-free, thread-safe.
 */
int nori__http_date_format(int64_t t, char out[NORI_HTTP_DATE_SIZE]);

/* ---- http/flight.c ---- */

typedef struct nori__flights nori__flights;
typedef struct nori__flight nori__flight;
typedef enum {
    NORI__FLIGHT_NONE,      /* could not coalesce (out of memory): just run */
    NORI__FLIGHT_LEADER,    /* this caller fills the key, then calls finish */
    NORI__FLIGHT_WAITER,    /* another fill is running: call wait */
    NORI__FLIGHT_REENTRANT  /* the running fill is this thread's own: do not wait */
} nori__flight_role;
enum { NORI__FLIGHT_STORED = 1, NORI__FLIGHT_NOT_STORED = 2, NORI__FLIGHT_TIMEOUT = 3 };

int nori__flights_new(nori__flights **out);
void nori__flights_free(nori__flights *t);
/* Joins or starts the fill of key. owned: the leader is this thread (a
 * background fill sets its owner later with set_owner). epoch: the key's
 * invalidation generation now (nori__gen_epoch); a fill begun under
 * another one is not joined but replaced in the table. */
nori__flight_role nori__flight_join(nori__flights *t, const char *key, bool owned,
                                    uint64_t epoch, nori__flight **f);
void nori__flight_set_owner(nori__flights *t, nori__flight *f);
/* Waiter: waits for the fill up to timeout_ms; returns NORI__FLIGHT_*; f is
 * released (must not be used afterwards). */
int nori__flight_wait(nori__flights *t, nori__flight *f, int64_t timeout_ms);
/* Waiter that will not wait after all: drops its reference. */
void nori__flight_release(nori__flights *t, nori__flight *f);
/* Leader: the fill is over (stored or not); wakes the waiters, releases f. */
void nori__flight_finish(nori__flights *t, nori__flight *f, bool stored);
/* Hit-for-miss memory. */
bool nori__hfm_active(nori__flights *t, const char *key, int64_t now_ms);
void nori__hfm_set(nori__flights *t, const char *key, int64_t until_ms);
void nori__hfm_clear(nori__flights *t, const char *key);

/* ---- http/generation.c ---- */

/* Buckets the invalidation scopes are hashed into (the same in every
 * process sharing a backend: the number is part of the key names). */
#define NORI__GEN_BUCKETS 1024

/* A cache's in-process generations (one counter per bucket). */
typedef struct nori__gens nori__gens;
int nori__gens_new(nori__gens **out);
void nori__gens_free(nori__gens *g);

/* The invalidation scope of req: "{prefix}:{E(path)}:", or "{prefix}:"
 * with whole_prefix (a route with a key function). NORI_OK or
 * NORI_ETOOBIG. */
int nori__gen_scope(const char *prefix, bool whole_prefix, const nori_http_request *req,
                    char *out, size_t cap);

/* The in-process generation of scope now: a flight begun under another
 * value is not joined (see nori__flight_join). Lock-free. */
uint64_t nori__gen_epoch(nori__gens *g, const char *scope);

/* What a fill read before its handler ran. */
typedef struct {
    unsigned bucket;
    uint64_t local;  /* the in-process generation */
    bool shared;     /* b is shared (nori__traits): key/remote are used */
    bool ok;         /* read; false: unknown, so the fill stores nothing */
    nori_buf remote; /* the value of key; data NULL: absent */
    char key[NORI_MAX_KEY_LEN + 1];
} nori__gen_guard;

/* Reads scope's generation (on a shared backend also its key: one GET).
 * Never fails: a failed read leaves out->ok false. Clear with
 * nori__gen_guard_clear. */
void nori__gen_read(nori__gens *g, nori_backend *b, const char *prefix, const char *scope,
                    nori__gen_guard *out);
void nori__gen_guard_clear(nori__gen_guard *gd);

/* nori_backend_set(b, key, val, len, ttl) only if the generation read into
 * gd did not move, atomically with respect to nori__gen_bump (memory: under
 * the bucket's lock; shared: nori__backend_set_guarded). NORI_OK with
 * *stored 1 (written) or 0 (superseded by a write: nothing written), or the
 * backend's error (*stored 0; also when gd->ok is false). */
int nori__gen_store(nori__gens *g, nori_backend *b, const nori__gen_guard *gd, const char *key,
                    const void *val, size_t len, int64_t ttl, int *stored);

/* A successful write to scope: moves its generation, in the process and on
 * a shared backend (a fresh random token in its key). Call before deleting
 * the scope's entries. NORI_OK or the backend's error (the in-process
 * generation moved anyway). */
int nori__gen_bump(nori__gens *g, nori_backend *b, const char *prefix, const char *scope);

/* ---- http/refresh.c ---- */

typedef struct nori__refresher nori__refresher;
typedef void (*nori__refresh_fn)(void *arg);
int nori__refresher_new(size_t n_threads, nori__refresher **out);
/* Queues run(arg) on a worker; on NORI_OK exactly one of run(arg) or, when
 * the pool is freed first, drop(arg) is called. An error means neither. */
int nori__refresher_submit(nori__refresher *r, nori__refresh_fn run, nori__refresh_fn drop,
                           void *arg);
/* Stops the workers (waits for running jobs, drops queued ones). */
void nori__refresher_free(nori__refresher *r);

#endif
