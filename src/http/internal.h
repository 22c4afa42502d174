// SPDX-License-Identifier: MIT
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

/* The end of the list member at p (RFC 9110 5.6.1): the next ',' outside a
 * quoted string (a backslash escapes the next character inside one), or
 * the terminating NUL. */
const char *nori__http_member_end(const char *p);

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
/* ... its age when it was received (seconds; absent = 0). */
#define NORI_ENTRY_FIELD_AGE "initial_age"
/* ... the response's own stale windows (seconds; absent = none). */
#define NORI_ENTRY_FIELD_SWR "stale_while_revalidate"
#define NORI_ENTRY_FIELD_SIE "stale_if_error"
/* ... true when it must never be served stale (absent = false). */
#define NORI_ENTRY_FIELD_NO_STALE "must_revalidate"

/* Freshness metadata stored with an entry (both encodings). Fields past
 * fresh_ms are 0 when an initialiser names only the first two. */
typedef struct {
    int64_t stored_at_ms; /* when the response was received (nori__wall_ms); -1 = unknown
                             (Python's) */
    int64_t fresh_ms;     /* freshness lifetime; -1 = no limit / unknown */
    int64_t age_ms;       /* its age when received (RFC 9111 4.2.3 corrected_initial_age) */
    int64_t swr_ms;       /* the response's own stale-while-revalidate; 0 = none */
    int64_t sie_ms;       /* the response's own stale-if-error; 0 = none */
    uint32_t flags;       /* NORI__META_* */
} nori__entry_meta;

/* Metadata with only the first two fields set (the others 0). */
#define NORI__META(stored_at_ms, fresh_ms) ((nori__entry_meta){(stored_at_ms), (fresh_ms), 0, 0, 0, 0})

/* Stored: never serve it stale (must-revalidate, proxy-revalidate, s-maxage,
 * no-cache): neither stale window applies. */
#define NORI__META_NO_STALE 0x1u
/* The flags an entry stores; the others are set by the decoder. */
#define NORI__META_STORED 0x1u
/* Set by the decoder: the entry holds a Set-Cookie header (an entry of the
 * RFC 9111 rules; the application rules never store one). */
#define NORI__META_SET_COOKIE 0x100u

/* true when `name` is an RFC 9110 field name (a token) of at most
 * NORI_HTTP_MAX_HEADER_NAME bytes. */
bool nori__http_field_name_ok(const char *name, size_t len);

/* true when header `name` (any case) is one an entry may hold: any field
 * name but the connection-specific ones (Connection, Keep-Alive, TE,
 * Trailer, Transfer-Encoding, Upgrade, Proxy-*), Content-Length (the
 * adapter sends the body's), Content-Type (stored as the media type) and
 * Age (computed for each answer). The fields a response's Connection
 * header names are left out of its entry too (nori__entry_encode_*). */
bool nori__entry_keeps_header(const char *name);

/* true for the statuses an entry may hold: 200..599 but 304 (no
 * representation). Which of them a cache stores depends on its rules
 * (policy.c); a 206 is held only under its request's range key. */
bool nori__entry_status_ok(int status);

/* NORI_OK when header `name` may be held by an entry and value[0..len)
 * can be stored and sent back as is (bounded, no control bytes but HTAB);
 * NORI_ETYPE with a message otherwise. */
int nori__entry_header_check(const char *name, const char *value, size_t len);

/* The same for a media type (Content-Type). */
int nori__entry_media_check(const char *media, size_t len);

/*
 * The memory backend's record: body first, then the metadata, then a
 * trailer (metadata length + magic). *out receives a new buffer owned by
 * the caller. NORI_OK, NORI_ENOMEM, or NORI_ETYPE when the response cannot
 * be stored exactly (status, a header or the media type refused by the
 * checks above, more than NORI_HTTP_MAX_ENTRY_HEADERS headers or
 * NORI_HTTP_MAX_ENTRY_HEADER_BYTES bytes of them).
 */
int nori__entry_encode_binary(const nori_http_response *r, nori_buf *out);

/* Nori's JSON entry: {"body_b64", "status_code", "media_type", "headers",
 * "stored_at", ...}. Header lines of one name are joined into one member
 * (", ", RFC 9110 5.3). NORI_ETYPE as above, and also when the media type or
 * a header is not UTF-8 (a JSON string cannot carry it) or Set-Cookie comes
 * more than once (its lines cannot be joined). */
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

/* true when a JSON entry can carry m's times (seconds under 9.2e15). */
bool nori__entry_meta_json_ok(const nori__entry_meta *m);

/* entry_json.c: Nori's JSON object, decoded (entry_codec.c dispatches). */
int nori__entry_decode_json(const nori_buf *in, nori_http_response *r, nori__entry_meta *m);

/* entry_fields.c: the checks both encodings make. */
int nori__entry_check_fields(const nori_http_response *r, const char *media, size_t *n_kept);
bool nori__entry_header_stored(const nori_http_response *r, size_t i);
const char *nori__entry_media_type(const nori_http_response *r);
bool nori__utf8_valid(const char *s, size_t n);

/* Standard base64 with padding. *out is a new NUL-terminated buffer. */
int nori__base64_encode(const void *data, size_t len, nori_buf *out);

/*
 * Strict standard base64: length a multiple of 4, only the alphabet, at most
 * two '=' and only at the end, zero padding bits. *out is a new buffer (one
 * NUL byte after the data). NORI_OK, NORI_ETYPE on bad input, NORI_ENOMEM.
 */
int nori__base64_decode(const char *s, size_t len, nori_buf *out);

/* ---- http/policy.c ---- */

/* What a cache's options say about storing and freshness (setup.c fills it
 * from nori_http_cache_options). */
typedef struct {
    bool rfc;                   /* NORI_HTTP_RULES_RFC9111 */
    int64_t ttl;                /* seconds; application rules: the heuristic freshness;
                                   RFC 9111 rules: a cap; 0 = none */
    unsigned heuristic_percent; /* RFC 9111 rules: heuristic freshness (0 = none) */
    int64_t keep_ms;            /* how long a stale entry with validators is kept */
    char **targeted;            /* RFC 9213 field names, priority order (copies) */
    size_t n_targeted;
} nori__rules;

/* Cache-Control directives (RFC 9111 5.2.2) of a response. */
enum {
    NORI__CC_NO_STORE = 1u << 0,
    NORI__CC_NO_CACHE = 1u << 1, /* also qualified: no-cache="f" */
    NORI__CC_PRIVATE = 1u << 2,  /* also qualified */
    NORI__CC_PUBLIC = 1u << 3,
    NORI__CC_MUST_REVALIDATE = 1u << 4,
    NORI__CC_PROXY_REVALIDATE = 1u << 5,
    NORI__CC_MUST_UNDERSTAND = 1u << 6,
    NORI__CC_MAX_AGE = 1u << 7, /* present: max_age holds its value */
    NORI__CC_S_MAXAGE = 1u << 8,
    NORI__CC_SWR = 1u << 9,
    NORI__CC_SIE = 1u << 10
};
/* A directive's argument that is not delta-seconds ("-1", "'5'", "1.5"). */
#define NORI__CC_BAD (-1)
/* What a delta-seconds over the representable is read as (RFC 9111 1.2.2). */
#define NORI__DELTA_MAX 2147483648LL

typedef struct {
    unsigned has;                     /* NORI__CC_* */
    int64_t max_age, s_maxage, swr, sie; /* seconds, or NORI__CC_BAD */
} nori__cc;

/* Parses the lines of field `name` of r (all of them, as one list). The
 * first occurrence of a directive counts. false (and *out empty) when r has
 * no such field. */
bool nori__cc_parse(const nori_http_response *r, const char *name, nori__cc *out);

/* The Cache-Control that decides for a cache with these rules: the first
 * of its targeted fields (RFC 9213) that r carries with at least one
 * directive, else Cache-Control. true when a targeted field decided (then
 * Expires does not count either). */
bool nori__cc_of(const nori__rules *rules, const nori_http_response *r, nori__cc *out);

/* An age that says "stale": an invalid Age field (see policy.c). */
#define NORI__AGE_INVALID (INT64_MAX / 4)

/* The Age of r in seconds: 0 without the field, NORI__AGE_INVALID unless it
 * is one line holding one delta-seconds. */
int64_t nori__http_age_value(const nori_http_response *r);

/* true when r carries its own validator: an ETag or a Last-Modified. */
bool nori__http_has_validator(const nori_http_response *r);

/*
 * Whether r, a handler's answer to a GET sent at request_ms and received at
 * response_ms, may be stored under `rules`, and how (RFC 9111 3, 4.2): on
 * true *m holds stored_at = response_ms, the freshness lifetime (capped),
 * the corrected initial age, the response's own stale windows and flags.
 * The vary rules are the caller's (entries.c).
 */
bool nori__http_judge(const nori__rules *rules, const nori_http_response *r, int64_t request_ms,
                      int64_t response_ms, nori__entry_meta *m);

/* true when r states its freshness (s-maxage, max-age or Expires, as the
 * rules read them): what a POST's response needs to be reused (RFC 9110
 * 9.3.3). */
bool nori__http_explicit_freshness(const nori__rules *rules, const nori_http_response *r);

/* The current age of an entry at now_ms (RFC 9111 4.2.3), saturating. */
int64_t nori__http_current_age(const nori__entry_meta *m, int64_t now_ms);

/* ---- http/vary.c ---- */

/* Bytes of a names record's value (the names of one response's Vary). */
#define NORI__VARY_NAMES_MAX 512

/*
 * The request headers r's Vary names that the key does not hold already
 * (skip: the route's vary_on, lower-case), lower-cased, sorted, each once,
 * joined by ',' into out[NORI__VARY_NAMES_MAX] ("" when none). 1 when there
 * are such names, 0 when none, -1 when r cannot be stored as a variant:
 * `Vary: *`, a name that is not a token, or names over the bound.
 */
int nori__vary_names(const nori_http_response *r, char *const *skip, size_t n_skip, char *out);

/* true when a names record's value is one nori__vary_names could write. */
bool nori__vary_names_ok(const char *names, size_t len);

/* "{key}:vary", the key of the names record of key's URL, into
 * out[NORI_MAX_KEY_LEN + 1]; false when too long. */
bool nori__vary_names_key(const char *key, char *out);

/*
 * The key of the variant of `key` that req selects, for the names record
 * `names`: "{key}:v=" then, for each name, E(name)=E(value) or E(name)
 * alone when req lacks the header, joined by ','; E escapes ':', '%', ','
 * and '='. The value is normalised: the header's lines joined with ',',
 * OWS around the list members dropped (not inside quoted strings), and
 * lower-cased for the lists whose members are case-insensitive
 * (Accept-Encoding, Accept-Language, Accept-Charset). NORI_OK, or
 * NORI_ETOOBIG when over NORI_MAX_KEY_LEN (then the variant is neither
 * stored nor found).
 */
int nori__vary_key(const char *key, const char *names, const nori_http_request *req,
                   char out[NORI_MAX_KEY_LEN + 1]);

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

/* Bytes of a derived ETag, quotes and NUL included. */
#define NORI__ETAG_DERIVED_SIZE 64
/* The strong ETag derived from body[0..len) (the same in every process). */
void nori__http_derived_etag(const char *body, size_t len, char tag[NORI__ETAG_DERIVED_SIZE]);

/* Adds a strong ETag derived from the body bytes when r has none. */
int nori__http_ensure_etag(nori_http_response *r);

/* 1 when req's validators say the client's copy of r is current:
 * If-None-Match (weak comparison, lists, *), else If-Modified-Since against
 * Last-Modified. */
int nori__http_not_modified(const nori_http_request *req, const nori_http_response *r);

/* Turns r into its 304 Not Modified form (RFC 9110 15.4.5). */
int nori__http_make_304(nori_http_response *r);

/* ---- http/validate.c ---- */

/*
 * A conditional request to the handler for a stored response (RFC 9111
 * 4.3.1): the request it wraps, with If-None-Match and If-Modified-Since
 * replaced by the stored response's validators (its ETag, unless the cache
 * derived it; its Last-Modified) for the header lookup and the
 * enumeration alike. Everything is borrowed: valid while inner and stored
 * are.
 */
typedef struct {
    nori_http_request req; /* what the handler is given */
    const nori_http_request *inner;
    const char *inm, *ims; /* the validators sent; NULL = that one not sent */
} nori__cond_req;

/* Fills *cr for inner and stored; false (cr unusable) when stored has no
 * validator to send. */
bool nori__cond_request(nori__cond_req *cr, const nori_http_request *inner,
                        const nori_http_response *stored);

/*
 * A 304 answered a conditional request for stored (RFC 9111 3.2, 4.3.4):
 * each field of fresh replaces every line of that name in stored, but the
 * fields that describe the stored body's bytes (ETag, Content-Encoding,
 * Content-Range, Content-MD5, Digest, Content-Digest, Repr-Digest) and those
 * no entry holds (Age and Content-Type excepted: the Age is the new age,
 * a media type replaces the stored one). NORI_OK or NORI_ENOMEM (stored
 * then holds some of the updates).
 */
int nori__http_update_headers(nori_http_response *stored, const nori_http_response *fresh);

/*
 * The key under which a 206, the answer to req's single byte range, is kept:
 * "{key}:r=" + the Range value escaped (':', '%', ',', '='), into
 * out[NORI_MAX_KEY_LEN + 1]. Only for a GET with `Range: bytes=` one range
 * and no If-Range; resp (NULL at lookup) must then be a 206 with one
 * `Content-Range: bytes ...`. false otherwise, or when too long. A range
 * entry is replayed as it came, to the same range only: never cut, never
 * completed.
 */
bool nori__http_range_key(const char *key, const nori_http_request *req,
                          const nori_http_response *resp, char out[NORI_MAX_KEY_LEN + 1]);

/* Removes every line named `name` from r. */
void nori__http_remove_header(nori_http_response *r, const char *name);

/*
 * A 200 from the cache answering a GET with one byte range (RFC 9110 14):
 * when req has `Range: bytes=<one range>` (and no If-Range, or one that
 * names r's strong ETag or its Last-Modified exactly), r becomes the 206
 * of that range with its Content-Range. Several ranges, another unit, a
 * range past the end or a malformed one leave r the whole 200, which a
 * server may always send. NORI_OK or NORI_ENOMEM (r unchanged).
 */
int nori__http_apply_range(const nori_http_request *req, nori_http_response *r);

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

/* The bucket of scope (tests). */
unsigned nori__gen_bucket(const char *scope);

/* What a fill read before its handler ran. */
typedef struct {
    uint64_t scope;  /* the scope's hash */
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
