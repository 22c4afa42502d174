// SPDX-License-Identifier: MIT
/*
 * nori/json.h - JSON values in the cache, on jansson.
 *
 * Stores and reads jansson json_t values through any nori backend, in the
 * wire format Nori's Python side uses, so C and Python services can share one
 * Redis: the value bytes are a JSON document, and the types JSON lacks
 * (datetime, date, UUID, Decimal) are JSON strings spelled exactly as Python
 * spells them (isoformat(), str(uuid), str(Decimal)).
 *
 * Like Nori's Redis serializer, this layer refuses instead of silently
 * converting: a value that cannot be written faithfully (a string that is not
 * valid UTF-8, an impossible date, a malformed decimal, a NaN) is NORI_ETYPE
 * with a message in nori_last_error() that names the offending field, and
 * nothing is written.
 *
 * Conventions (as in nori/cache.h):
 *  - Return codes: NORI_OK, NORI_MISS (gets), or a negative NORI_E* code with
 *    the detail in nori_last_error(). A call that fails writes nothing and
 *    leaves *out NULL.
 *  - Thread safety: every function may be called from any thread, on the same
 *    backend, concurrently. json_t values are not thread-safe in jansson
 *    (reference counts are not atomic in every build): a value passed in must
 *    not be modified by another thread during the call.
 *  - Ownership: values passed in are only read (the caller keeps its
 *    reference). A json_t handed out through `json_t **out` is a new
 *    reference owned by the caller, released with json_decref().
 *
 * Wire format (what set_json writes):
 *  - jansson's json_dumps() with JSON_COMPACT | JSON_ENCODE_ANY: no spaces
 *    (Python's json.dumps writes ", " and ": "; JSON readers, Python's
 *    included, accept both), object keys in insertion order, and any value
 *    at the top level (42, "text", null), as json.dumps does.
 *  - Non-ASCII text is written as raw UTF-8 (not \uXXXX escapes); a NUL
 *    inside a string is written as \u0000.
 *  - Reals: jansson prints every real of a value with one precision, so
 *    set_json picks the smallest one (at most 17 significant digits) at
 *    which each real of the value reads back as the identical double, and
 *    which keeps plain notation for 1 <= |x| < 1e16 as Python's repr does:
 *    0.1 -> 0.1, 100.0 -> 100.0 (as Python writes them); 1e300 -> 1e300
 *    (Python: 1e+300). A value holding both 0.1 and a real that needs 17
 *    digits prints 0.1 as 0.10000000000000001 - still the same double.
 *    Integers are int64 (jansson's json_int_t).
 *  - Nesting deeper than NORI_JSON_MAX_DEPTH levels is NORI_EINVAL (jansson
 *    could not read it back); a value that contains itself is refused the
 *    same way.
 *
 * Reading (what get_json accepts), in this order:
 *  1. a JSON document (any top-level value; \u0000 inside strings allowed)
 *     -> that value;
 *  2. a JSON document that jansson cannot represent, i.e. Python-written
 *     NaN / Infinity / -Infinity, a lone UTF-16 surrogate escape in a string
 *     (json.dumps("a\ud800b") writes "a\ud800b"), or an integer outside int64
 *     -> NORI_ETYPE (handing it back as a string would silently change the
 *     value's type, which is what this layer refuses to do);
 *  3. anything else that is valid UTF-8 (plain text written by another
 *     client, e.g. `noricache set k hello`) -> a JSON string holding those
 *     bytes, as Nori's Python getter does (json.loads fails -> raw text);
 *  4. bytes that are neither JSON nor UTF-8 (binary data written with
 *     nori_backend_set) -> NORI_ETYPE: no JSON value can hold them; read
 *     them with nori_backend_get() instead.
 */
#ifndef NORI_JSON_H
#define NORI_JSON_H

#include <nori/cache.h>

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Deepest nesting set_json writes: jansson's parser limit, so whatever is
 * written can be read back. */
#define NORI_JSON_MAX_DEPTH 2048

/* ------------------------------------------------------------------------ */
/* Storing and reading JSON                                                 */
/* ------------------------------------------------------------------------ */

/*
 * Validates `value` and stores its JSON text under `key` (see "Wire format").
 * value == NULL -> NORI_EINVAL. A string or object key that is not valid
 * UTF-8 (possible through jansson's *_nocheck constructors), or a real that
 * is NaN or infinite -> NORI_ETYPE naming its path ("profile.tags[2]").
 * Key, ttl and value-size rules are those of nori_backend_set().
 * `value` is only read; the caller keeps its reference.
 */
NORI_EXPORT int nori_backend_set_json(nori_backend *b, const char *key, const json_t *value,
                                      int64_t ttl);

/*
 * Reads `key` as JSON (see "Reading"). NORI_OK: *out is a new reference owned
 * by the caller (json_decref it). NORI_MISS: absent or expired, *out = NULL.
 * On error *out = NULL and the stored value is untouched.
 */
NORI_EXPORT int nori_backend_get_json(nori_backend *b, const char *key, json_t **out);

/*
 * The callback of atomic_update_json. `current` is the stored value decoded
 * as get_json would decode it, or NULL when the key is absent or expired. It
 * is borrowed: valid during the call only, and freshly decoded for each call,
 * so the callback may modify it in place and return json_incref(current).
 * Return a new reference to the value to write (the library takes it over),
 * or NULL to write nothing (-> NORI_EABORT).
 *
 * Memory backend: runs once, under the backend's lock: it must be quick and
 * must not call the cache. Redis backend: may run more than once under
 * contention, so it must be idempotent (compute from `current`, not from
 * state kept between calls).
 */
typedef json_t *(*nori_json_update_fn)(json_t *current, void *ud);

/*
 * Read-modify-write of a JSON value without lost updates, on
 * nori_backend_atomic_update() (same ttl rule: ttl > 0 sets a new expiry,
 * ttl == 0 keeps the existing one).
 *  - fn returns NULL -> NORI_EABORT, nothing written;
 *  - the stored value cannot be read as JSON (binary, NaN, int overflow)
 *    -> NORI_ETYPE, fn is not called, nothing written;
 *  - fn's value fails set_json's checks -> NORI_ETYPE / NORI_EINVAL naming
 *    the field, nothing written.
 * On NORI_OK, if out is non-NULL, *out is a new reference to the value
 * written, owned by the caller. On failure *out = NULL.
 */
NORI_EXPORT int nori_backend_atomic_update_json(nori_backend *b, const char *key,
                                                nori_json_update_fn fn, void *ud,
                                                int64_t ttl, json_t **out);

/* The three calls above on the default backend (nori_get_backend()). */
NORI_EXPORT int nori_cache_set_json(const char *key, const json_t *value, int64_t ttl);
NORI_EXPORT int nori_cache_get_json(const char *key, json_t **out);
NORI_EXPORT int nori_cache_atomic_update_json(const char *key, nori_json_update_fn fn,
                                              void *ud, int64_t ttl, json_t **out);

/* ------------------------------------------------------------------------ */
/* Checked constructors for the types JSON lacks                            */
/* ------------------------------------------------------------------------ */
/*
 * Each builds a JSON string spelled exactly as Nori's Python side writes the
 * type, or refuses with NORI_ETYPE and a message that starts with `field`
 * (any label the caller chooses, e.g. "profile.birthday"; NULL -> "value").
 * On NORI_OK *out is a new reference owned by the caller (json_decref it, or
 * hand it to json_object_set_new()). On failure *out = NULL.
 * Reading gives these values back as the JSON strings they are, as
 * json.loads does on the Python side; no parsers back to the structs exist.
 * A NULL input pointer or NULL out is NORI_EINVAL. Pure functions:
 * thread-safe.
 */

/*
 * A string from `len` bytes (NULs allowed). Not valid UTF-8 -> NORI_ETYPE
 * with the field and the byte offset of the first bad byte. (jansson's own
 * json_stringn() returns NULL for this, indistinguishable from out of memory.)
 */
NORI_EXPORT int nori_json_string(const char *s, size_t len, const char *field, json_t **out);

/* A calendar date, Python's datetime.date. */
typedef struct {
    int year;  /* 1 .. 9999 (Python's MINYEAR .. MAXYEAR) */
    int month; /* 1 .. 12 */
    int day;   /* 1 .. days in that month (proleptic Gregorian leap years) */
} nori_date;

/*
 * A date and time, Python's datetime.datetime, naive or with a fixed UTC
 * offset. The wall-clock fields are written as given: the offset only says
 * which zone they are in (nothing is converted to UTC).
 */
typedef struct {
    int year, month, day;    /* as nori_date */
    int hour;                /* 0 .. 23 */
    int minute;              /* 0 .. 59 */
    int second;              /* 0 .. 59 (Python has no leap second) */
    int microsecond;         /* 0 .. 999999 */
    bool has_offset;         /* false: naive (no zone suffix) */
    int32_t offset_seconds;  /* east of UTC, strictly inside -86400 .. 86400
                                (Python's timezone range); 0 -> "+00:00" */
} nori_datetime;

/*
 * "YYYY-MM-DD", Python's date.isoformat(): 2026-01-01.
 * An impossible date (month 13, Feb 30, Feb 29 of a non-leap year, year 0
 * or > 9999) -> NORI_ETYPE naming the field and the bad component.
 */
NORI_EXPORT int nori_json_date(const nori_date *d, const char *field, json_t **out);

/*
 * Python's datetime.isoformat():
 *   naive                 2026-01-01T12:00:00
 *   with microseconds     2026-01-01T12:00:00.500000   (six digits, only when != 0)
 *   with an offset        2026-01-01T12:00:00+02:00, -05:30, +00:00
 *   seconds in the offset 2026-01-01T12:00:00+05:30:15 (only when != 0)
 * Any component out of range (hour 24, second 60, ...) -> NORI_ETYPE naming
 * the field and the component.
 */
NORI_EXPORT int nori_json_datetime(const nori_datetime *dt, const char *field, json_t **out);

/*
 * The canonical lower-case form of a 16-byte UUID (bytes in network order, as
 * Python's UUID(bytes=...)): "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx".
 * Every 16-byte value is accepted (Python's str(uuid) prints any of them).
 */
NORI_EXPORT int nori_json_uuid(const unsigned char bytes[16], const char *field, json_t **out);

/*
 * A decimal number as a JSON string, spelled as Python's str(Decimal(text)).
 * Accepted: optional sign, digits with an optional fraction (or a fraction
 * alone, ".5"), optional exponent ("e" or "E", optional sign, digits), ASCII
 * only. Refused (NORI_ETYPE naming the field): empty text, spaces anywhere,
 * "1.2.3", hex, underscores, NaN, Infinity, an exponent beyond +/-10^9.
 * Text already in Python's form is kept byte for byte ("19.99", "-0.5",
 * "1E+3", "1.50", "-0"); other accepted spellings are normalised the way
 * Python does it: "1e3" -> "1E+3", "+1.5" -> "1.5", ".5" -> "0.5",
 * "5." -> "5", "007" -> "7", "0.0000001" -> "1E-7".
 */
NORI_EXPORT int nori_json_decimal(const char *text, const char *field, json_t **out);

#ifdef __cplusplus
}
#endif

#endif /* NORI_JSON_H */
