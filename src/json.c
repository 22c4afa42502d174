// SPDX-License-Identifier: MIT
/*
 * JSON values in the cache (include/nori/json.h), built only on the public
 * key-value API: the bytes stored are JSON text, so every backend (memory,
 * Redis) carries them unchanged and a Python client reads them with
 * json.loads.
 *
 * Writing validates first and serialises second, so a refused value never
 * reaches the backend. Reading tries JSON, then tells "not JSON at all"
 * (plain text, handed back as a string) apart from "JSON that jansson cannot
 * hold" (refused), because confusing the two would silently change a value's
 * type.
 */
#include "nori/json.h"

#include "error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest JSON path reported in an error message; longer ones end in "...". */
#define PATH_MAX_LEN 200

/* ------------------------------------------------------------------------ */
/* UTF-8                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above
 * U+10FFFF, which is what jansson and Python's decoder both accept. Returns
 * the offset of the first invalid byte, or len when all of it is valid.
 */
static size_t utf8_invalid_at(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) {
            n = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 3;
            if (c == 0xE0)
                lo = 0xA0; /* overlong */
            else if (c == 0xED)
                hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            else if (c == 0xF4)
                hi = 0x8F; /* above U+10FFFF */
        } else {
            return i;
        }
        if (len - i < n || s[i + 1] < lo || s[i + 1] > hi)
            return i;
        for (size_t k = 2; k < n; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
        i += n;
    }
    return len;
}

static const char *field_name(const char *field)
{
    return field != NULL && field[0] != '\0' ? field : "value";
}

/* ------------------------------------------------------------------------ */
/* Validation before writing                                                */
/* ------------------------------------------------------------------------ */

/* The JSON path of the value being checked, e.g. "profile.tags[2]". */
typedef struct {
    char text[PATH_MAX_LEN + 4];
    size_t len;
    int real_precision; /* largest precision any real needs to round-trip */
} walk_state;

/* Appends to the path; returns the old length so the caller can restore it. */
static size_t path_push(walk_state *w, const char *fmt, const char *key, size_t klen, size_t index)
{
    size_t old = w->len;
    if (w->len >= PATH_MAX_LEN)
        return old;
    char piece[PATH_MAX_LEN + 1];
    int n;
    if (key != NULL) {
        /* Keys may hold NULs or bad bytes (that is what is being checked):
         * print only their printable ASCII. */
        char clean[PATH_MAX_LEN + 1];
        size_t m = 0;
        for (size_t i = 0; i < klen && m < PATH_MAX_LEN; i++) {
            unsigned char c = (unsigned char)key[i];
            clean[m++] = c >= 0x20 && c < 0x7F ? (char)c : '?';
        }
        clean[m] = '\0';
        n = snprintf(piece, sizeof piece, w->len == 0 ? "%s" : ".%s", clean);
    } else {
        n = snprintf(piece, sizeof piece, fmt, index);
    }
    size_t room = PATH_MAX_LEN - w->len;
    size_t take = n < 0 ? 0 : (size_t)n;
    if (take > room) {
        memcpy(w->text + w->len, piece, room);
        memcpy(w->text + PATH_MAX_LEN, "...", 4);
        w->len = PATH_MAX_LEN;
    } else {
        memcpy(w->text + w->len, piece, take);
        w->len += take;
        w->text[w->len] = '\0';
    }
    return old;
}

static void path_pop(walk_state *w, size_t old)
{
    w->len = old;
    w->text[old] = '\0';
}

static const char *path_or_root(const walk_state *w)
{
    return w->len == 0 ? "(top level)" : w->text;
}

/*
 * Smallest %.*g precision (1..17) that reads back as exactly v and, like
 * Python's repr, keeps plain notation for 1 <= |v| < 1e16: %.1g would print
 * 100.0 as "1e+02" where Python writes "100.0".
 */
static int real_precision(double v)
{
    char buf[40];
    double mag = v < 0 ? -v : v;
    bool want_plain = mag >= 1.0 && mag < 1e16;
    for (int p = 1; p < 17; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, v);
        if (strtod(buf, NULL) == v && !(want_plain && strchr(buf, 'e') != NULL))
            return p;
    }
    return 17;
}

/*
 * Checks everything set_json refuses, depth first. The depth bound also stops
 * a value that contains itself (jansson allows building one; json_dumps would
 * fail on it, but only after we had nothing useful to say).
 */
static int check_value(const json_t *v, walk_state *w, int depth)
{
    if (depth > NORI_JSON_MAX_DEPTH)
        return nori__fail(NORI_EINVAL,
                          "%s: nested deeper than %d levels (or the value contains itself)",
                          path_or_root(w), NORI_JSON_MAX_DEPTH);
    switch (json_typeof(v)) {
    case JSON_STRING: {
        size_t len = json_string_length(v);
        size_t bad = utf8_invalid_at((const unsigned char *)json_string_value(v), len);
        if (bad != len)
            return nori__fail(NORI_ETYPE, "%s: string is not valid UTF-8 (byte %zu of %zu)",
                              path_or_root(w), bad, len);
        return NORI_OK;
    }
    case JSON_REAL: {
        double d = json_real_value(v);
        /* jansson refuses to build these; checked anyway because a NaN
         * written as JSON could not be read back by anyone. */
        if (!isfinite(d))
            return nori__fail(NORI_ETYPE, "%s: real is %s, which JSON cannot represent",
                              path_or_root(w), isnan(d) ? "NaN" : "infinite");
        int p = real_precision(d);
        if (p > w->real_precision)
            w->real_precision = p;
        return NORI_OK;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n; i++) {
            size_t old = path_push(w, "[%zu]", NULL, 0, i);
            int rc = check_value(json_array_get(v, i), w, depth + 1);
            if (rc != NORI_OK)
                return rc;
            path_pop(w, old);
        }
        return NORI_OK;
    }
    case JSON_OBJECT: {
        /* jansson's iterators take a non-const object but do not modify it. */
        json_t *obj = (json_t *)v;
        for (void *it = json_object_iter(obj); it != NULL;
             it = json_object_iter_next(obj, it)) {
            const char *k = json_object_iter_key(it);
            size_t klen = json_object_iter_key_len(it);
            size_t old = path_push(w, NULL, k, klen, 0);
            size_t bad = utf8_invalid_at((const unsigned char *)k, klen);
            if (bad != klen)
                return nori__fail(NORI_ETYPE, "%s: object key is not valid UTF-8 (byte %zu of %zu)",
                                  path_or_root(w), bad, klen);
            int rc = check_value(json_object_iter_value(it), w, depth + 1);
            if (rc != NORI_OK)
                return rc;
            path_pop(w, old);
        }
        return NORI_OK;
    }
    default: /* integer, true, false, null */
        return NORI_OK;
    }
}

/*
 * Validates v and returns its JSON text in *text (malloc'd by us, len bytes
 * plus a NUL). Sized with a first json_dumpb pass rather than json_dumps,
 * because json_dumps allocates with jansson's allocator, which an
 * application may replace (json_set_alloc_funcs), while the backends free
 * nori_buf data with free().
 */
static int encode(const json_t *v, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    if (v == NULL)
        return nori__fail(NORI_EINVAL, "value is NULL");
    walk_state w = {.len = 0, .real_precision = 1};
    w.text[0] = '\0';
    int rc = check_value(v, &w, 1);
    if (rc != NORI_OK)
        return rc;
    size_t flags = JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(w.real_precision);
    size_t need = json_dumpb(v, NULL, 0, flags);
    if (need == 0) /* every JSON text is at least one byte: this is a failure */
        return nori__fail(NORI_ENOMEM, "out of memory serialising the value");
    char *buf = malloc(need + 1);
    if (buf == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory serialising %zu bytes", need);
    if (json_dumpb(v, buf, need, flags) != need) {
        free(buf);
        return nori__fail(NORI_ENOMEM, "out of memory serialising the value");
    }
    buf[need] = '\0';
    *text = buf;
    *len = need;
    return NORI_OK;
}

/* ------------------------------------------------------------------------ */
/* Decoding what is stored                                                  */
/* ------------------------------------------------------------------------ */

static json_t *parse(const char *data, size_t len, json_error_t *err)
{
    return json_loadb(data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, err);
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int c = (unsigned char)p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* What is_python_only_json found (a bit set). */
enum { PY_NONFINITE = 1, PY_LONE_SURROGATE = 2 };

/*
 * Python's json.dumps writes documents jansson cannot read: NaN, Infinity
 * and -Infinity by default, and a lone UTF-16 surrogate escape ("\ud800")
 * for a str holding one. To tell such a document from plain text, blank the
 * non-finite tokens (outside strings) into 0 and turn each lone surrogate
 * escape into "\u0020" (inside strings), then parse again: if that parses,
 * the original was JSON (to Python) that no jansson value can hold. Returns
 * the PY_* bits of what was found, or 0 when the text is not such JSON.
 */
static int is_python_only_json(const char *data, size_t len)
{
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, len);
    int found = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        if (in_string) {
            if (copy[i] == '"') {
                in_string = false;
            } else if (copy[i] == '\\' && i + 1 < len) {
                i++;
                if (copy[i] != 'u' || len - i < 5)
                    continue;
                int cu = hex4(copy + i + 1);
                if (cu < 0xD800 || cu > 0xDFFF) {
                    i += 4;
                    continue;
                }
                /* A high surrogate followed by a low one is a pair: keep both. */
                if (cu <= 0xDBFF && len - i >= 11 && copy[i + 5] == '\\' &&
                    copy[i + 6] == 'u') {
                    int lo = hex4(copy + i + 7);
                    if (lo >= 0xDC00 && lo <= 0xDFFF) {
                        i += 10;
                        continue;
                    }
                }
                memcpy(copy + i + 1, "0020", 4);
                i += 4;
                found |= PY_LONE_SURROGATE;
            }
            continue;
        }
        if (copy[i] == '"') {
            in_string = true;
            continue;
        }
        static const char *const tokens[] = {"NaN", "Infinity"};
        for (size_t t = 0; t < 2; t++) {
            size_t tl = strlen(tokens[t]);
            if (len - i >= tl && memcmp(copy + i, tokens[t], tl) == 0) {
                copy[i] = '0';
                memset(copy + i + 1, ' ', tl - 1);
                i += tl - 1;
                found |= PY_NONFINITE;
                break;
            }
        }
    }
    if (found != 0) {
        json_error_t err;
        json_t *v = parse(copy, len, &err);
        if (v == NULL)
            found = 0;
        json_decref(v);
    }
    free(copy);
    return found;
}

/*
 * jansson stops at the first number it cannot hold, even when the text goes
 * on to be malformed. Parsing again with integers read as doubles tells
 * "valid JSON with a huge integer" (refused) from "not JSON" (text).
 */
static bool is_json_with_overflow(const char *data, size_t len)
{
    json_error_t err;
    json_t *v = json_loadb(data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL,
                           &err);
    json_decref(v);
    /* Still an overflow: a real beyond double range (Python reads it as inf). */
    return v != NULL || json_error_code(&err) == json_error_numeric_overflow;
}

/* Turns stored bytes into a JSON value (see "Reading" in nori/json.h).
 * `op` and `key` only name the call in error messages. */
static int decode(const char *op, const char *key, const char *data, size_t len, json_t **out)
{
    json_error_t err;
    json_t *v = parse(data, len, &err);
    if (v != NULL) {
        *out = v;
        return NORI_OK;
    }
    enum json_error_code code = json_error_code(&err);
    if (code == json_error_out_of_memory)
        return nori__fail(NORI_ENOMEM, "%s '%.64s': out of memory parsing %zu bytes", op, key,
                          len);
    if (code == json_error_numeric_overflow && is_json_with_overflow(data, len))
        return nori__fail(NORI_ETYPE,
                          "%s '%.64s': stored JSON holds a number beyond int64/double range "
                          "at byte %d",
                          op, key, err.position);
    if (code == json_error_stack_overflow)
        return nori__fail(NORI_ETYPE, "%s '%.64s': stored JSON is nested deeper than %d levels",
                          op, key, NORI_JSON_MAX_DEPTH);
    int python_only = is_python_only_json(data, len);
    if (python_only != 0)
        return nori__fail(NORI_ETYPE,
                          "%s '%.64s': stored JSON holds %s%s%s, which jansson cannot represent",
                          op, key, (python_only & PY_NONFINITE) ? "NaN or Infinity" : "",
                          python_only == (PY_NONFINITE | PY_LONE_SURROGATE) ? " and " : "",
                          (python_only & PY_LONE_SURROGATE)
                              ? "a lone UTF-16 surrogate escape (such as \\ud800)"
                              : "");
    size_t bad = utf8_invalid_at((const unsigned char *)data, len);
    if (bad != len)
        return nori__fail(NORI_ETYPE,
                          "%s '%.64s': stored value is neither JSON nor UTF-8 text "
                          "(byte %zu of %zu); read it with nori_backend_get",
                          op, key, bad, len);
    /* Plain text from another client: hand it back as a string, as Nori does. */
    v = json_stringn_nocheck(data, len);
    if (v == NULL)
        return nori__fail(NORI_ENOMEM, "%s '%.64s': out of memory", op, key);
    *out = v;
    return NORI_OK;
}

/* Puts "op 'key': " before the message of a failure that did not know them. */
static int name_call(int rc, const char *op, const char *key)
{
    char detail[512];
    snprintf(detail, sizeof detail, "%s", nori_last_error());
    return nori__fail(rc, "%s '%.64s': %s", op, key != NULL ? key : "(null)", detail);
}

/* ------------------------------------------------------------------------ */
/* Backend calls                                                            */
/* ------------------------------------------------------------------------ */

int nori_backend_set_json(nori_backend *b, const char *key, const json_t *value, int64_t ttl)
{
    char *text;
    size_t len;
    int rc = encode(value, &text, &len);
    if (rc != NORI_OK)
        return name_call(rc, "set_json", key);
    rc = nori_backend_set(b, key, text, len, ttl);
    free(text);
    return rc;
}

int nori_backend_get_json(nori_backend *b, const char *key, json_t **out)
{
    if (out == NULL)
        return nori__fail(NORI_EINVAL, "get_json: out is NULL");
    *out = NULL;
    nori_buf buf;
    int rc = nori_backend_get(b, key, &buf);
    if (rc != NORI_OK)
        return rc;
    rc = decode("get_json", key, buf.data, buf.len, out);
    nori_buf_free(&buf);
    return rc;
}

/*
 * State shared with the byte-level callback. Failures inside it must come
 * back as their own code, not as the NORI_EABORT the backend reports for any
 * non-zero return, so the callback keeps the code and message here.
 */
typedef struct {
    nori_json_update_fn fn;
    void *ud;
    const char *key;
    json_t *result; /* the value of the last run (Redis may run it again) */
    int rc;         /* NORI_OK, or the failure to report instead of EABORT */
    char msg[512];
} json_update_ctx;

static int update_fail(json_update_ctx *c, int rc)
{
    c->rc = rc;
    snprintf(c->msg, sizeof c->msg, "%s", nori_last_error());
    return 1;
}

static int json_update_cb(const nori_buf *current, nori_buf *next, void *ud)
{
    json_update_ctx *c = ud;
    json_decref(c->result);
    c->result = NULL;
    c->rc = NORI_OK;
    json_t *cur = NULL;
    if (current != NULL) {
        int rc = decode("atomic_update_json", c->key, current->data, current->len, &cur);
        if (rc != NORI_OK)
            return update_fail(c, rc);
    }
    json_t *v = c->fn(cur, c->ud);
    json_decref(cur);
    if (v == NULL)
        return 1; /* declined: the backend reports NORI_EABORT */
    char *text;
    size_t len;
    int rc = encode(v, &text, &len);
    if (rc != NORI_OK) {
        json_decref(v);
        return update_fail(c, name_call(rc, "atomic_update_json", c->key));
    }
    c->result = v;
    next->data = text;
    next->len = len;
    return 0;
}

int nori_backend_atomic_update_json(nori_backend *b, const char *key, nori_json_update_fn fn,
                                    void *ud, int64_t ttl, json_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (fn == NULL)
        return nori__fail(NORI_EINVAL, "atomic_update_json: fn is NULL");
    json_update_ctx c = {.fn = fn, .ud = ud, .key = key != NULL ? key : "", .rc = NORI_OK};
    int rc = nori_backend_atomic_update(b, key, json_update_cb, &c, ttl, NULL);
    if (rc == NORI_EABORT && c.rc != NORI_OK)
        rc = nori__fail(c.rc, "%s", c.msg);
    if (rc == NORI_OK && out != NULL)
        *out = c.result;
    else
        json_decref(c.result);
    return rc;
}

int nori_cache_set_json(const char *key, const json_t *value, int64_t ttl)
{
    nori_backend *b;
    int rc = nori_get_backend(&b);
    return rc != NORI_OK ? rc : nori_backend_set_json(b, key, value, ttl);
}

int nori_cache_get_json(const char *key, json_t **out)
{
    if (out != NULL)
        *out = NULL;
    nori_backend *b;
    int rc = nori_get_backend(&b);
    return rc != NORI_OK ? rc : nori_backend_get_json(b, key, out);
}

int nori_cache_atomic_update_json(const char *key, nori_json_update_fn fn, void *ud,
                                  int64_t ttl, json_t **out)
{
    if (out != NULL)
        *out = NULL;
    nori_backend *b;
    int rc = nori_get_backend(&b);
    return rc != NORI_OK ? rc : nori_backend_atomic_update_json(b, key, fn, ud, ttl, out);
}

/* ------------------------------------------------------------------------ */
/* Typed constructors                                                       */
/* ------------------------------------------------------------------------ */

static int new_string(const char *s, size_t len, const char *field, json_t **out)
{
    /* Our own output is ASCII or already checked: skip jansson's UTF-8 pass. */
    *out = json_stringn_nocheck(s, len);
    if (*out == NULL)
        return nori__fail(NORI_ENOMEM, "%s: out of memory building a string", field_name(field));
    return NORI_OK;
}

int nori_json_string(const char *s, size_t len, const char *field, json_t **out)
{
    if (out == NULL)
        return nori__fail(NORI_EINVAL, "%s: out is NULL", field_name(field));
    *out = NULL;
    if (s == NULL && len > 0)
        return nori__fail(NORI_EINVAL, "%s: string is NULL with length %zu", field_name(field),
                          len);
    size_t bad = utf8_invalid_at((const unsigned char *)s, len);
    if (bad != len)
        return nori__fail(NORI_ETYPE, "%s: string is not valid UTF-8 (byte %zu of %zu)",
                          field_name(field), bad, len);
    return new_string(len > 0 ? s : "", len, field, out);
}

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

static int range_fail(const char *field, const char *what, long value, long lo, long hi)
{
    return nori__fail(NORI_ETYPE, "%s: %s %ld is out of range %ld..%ld", field_name(field), what,
                      value, lo, hi);
}

/* Python's date(year, month, day) checks, in its order. */
static int check_date(int y, int m, int d, const char *field)
{
    if (y < 1 || y > 9999)
        return range_fail(field, "year", y, 1, 9999);
    if (m < 1 || m > 12)
        return range_fail(field, "month", m, 1, 12);
    int dim = days_in_month(y, m);
    if (d < 1 || d > dim) {
        if (m == 2 && d == 29)
            return nori__fail(NORI_ETYPE, "%s: day 29 of February in %d, which is not a leap year",
                              field_name(field), y);
        return nori__fail(NORI_ETYPE, "%s: day %d is out of range 1..%d for %04d-%02d",
                          field_name(field), d, dim, y, m);
    }
    return NORI_OK;
}

int nori_json_date(const nori_date *d, const char *field, json_t **out)
{
    if (out == NULL)
        return nori__fail(NORI_EINVAL, "%s: out is NULL", field_name(field));
    *out = NULL;
    if (d == NULL)
        return nori__fail(NORI_EINVAL, "%s: date is NULL", field_name(field));
    int rc = check_date(d->year, d->month, d->day, field);
    if (rc != NORI_OK)
        return rc;
    char buf[16];
    int n = snprintf(buf, sizeof buf, "%04d-%02d-%02d", d->year, d->month, d->day);
    return new_string(buf, (size_t)n, field, out);
}

int nori_json_datetime(const nori_datetime *dt, const char *field, json_t **out)
{
    if (out == NULL)
        return nori__fail(NORI_EINVAL, "%s: out is NULL", field_name(field));
    *out = NULL;
    if (dt == NULL)
        return nori__fail(NORI_EINVAL, "%s: datetime is NULL", field_name(field));
    int rc = check_date(dt->year, dt->month, dt->day, field);
    if (rc != NORI_OK)
        return rc;
    if (dt->hour < 0 || dt->hour > 23)
        return range_fail(field, "hour", dt->hour, 0, 23);
    if (dt->minute < 0 || dt->minute > 59)
        return range_fail(field, "minute", dt->minute, 0, 59);
    if (dt->second < 0 || dt->second > 59)
        return range_fail(field, "second", dt->second, 0, 59);
    if (dt->microsecond < 0 || dt->microsecond > 999999)
        return range_fail(field, "microsecond", dt->microsecond, 0, 999999);
    /* Python's timezone() requires -timedelta(hours=24) < offset < timedelta(hours=24). */
    if (dt->has_offset && (dt->offset_seconds <= -86400 || dt->offset_seconds >= 86400))
        return range_fail(field, "UTC offset (seconds)", dt->offset_seconds, -86399, 86399);

    char buf[48];
    int n = snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d", dt->year, dt->month,
                     dt->day, dt->hour, dt->minute, dt->second);
    if (dt->microsecond != 0)
        n += snprintf(buf + n, sizeof buf - (size_t)n, ".%06d", dt->microsecond);
    if (dt->has_offset) {
        /* Python prints a negative offset as "-" and the magnitude, never
         * "-1 day, ...": hours and minutes always, seconds only when set. */
        int32_t off = dt->offset_seconds;
        char sign = off < 0 ? '-' : '+';
        int32_t mag = off < 0 ? -off : off;
        n += snprintf(buf + n, sizeof buf - (size_t)n, "%c%02d:%02d", sign, (int)(mag / 3600),
                      (int)(mag / 60 % 60));
        if (mag % 60 != 0)
            n += snprintf(buf + n, sizeof buf - (size_t)n, ":%02d", (int)(mag % 60));
    }
    return new_string(buf, (size_t)n, field, out);
}

int nori_json_uuid(const unsigned char bytes[16], const char *field, json_t **out)
{
    if (out == NULL)
        return nori__fail(NORI_EINVAL, "%s: out is NULL", field_name(field));
    *out = NULL;
    if (bytes == NULL)
        return nori__fail(NORI_EINVAL, "%s: UUID bytes are NULL", field_name(field));
    static const char hex[] = "0123456789abcdef";
    char buf[37];
    size_t n = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            buf[n++] = '-';
        buf[n++] = hex[bytes[i] >> 4];
        buf[n++] = hex[bytes[i] & 0xF];
    }
    buf[n] = '\0';
    return new_string(buf, n, field, out);
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Largest exponent magnitude accepted; keeps the arithmetic far from overflow. */
#define DECIMAL_MAX_EXP 1000000000LL

int nori_json_decimal(const char *text, const char *field, json_t **out)
{
    if (out == NULL)
        return nori__fail(NORI_EINVAL, "%s: out is NULL", field_name(field));
    *out = NULL;
    if (text == NULL)
        return nori__fail(NORI_EINVAL, "%s: decimal text is NULL", field_name(field));

    /* Parse: sign? (digits ('.' digits?)? | '.' digits) ([eE] sign? digits)? */
    const char *p = text;
    bool negative = false;
    if (*p == '+' || *p == '-')
        negative = *p++ == '-';
    const char *int_start = p;
    while (is_digit(*p))
        p++;
    size_t int_len = (size_t)(p - int_start);
    const char *frac_start = p;
    size_t frac_len = 0;
    if (*p == '.') {
        frac_start = ++p;
        while (is_digit(*p))
            p++;
        frac_len = (size_t)(p - frac_start);
    }
    long long exp = 0;
    bool syntax_ok = int_len + frac_len > 0;
    if (syntax_ok && (*p == 'e' || *p == 'E')) {
        p++;
        bool exp_neg = false;
        if (*p == '+' || *p == '-')
            exp_neg = *p++ == '-';
        if (!is_digit(*p))
            syntax_ok = false;
        while (is_digit(*p)) {
            if (exp <= DECIMAL_MAX_EXP)
                exp = exp * 10 + (*p - '0');
            p++;
        }
        if (exp > DECIMAL_MAX_EXP)
            return nori__fail(NORI_ETYPE, "%s: decimal '%.40s' has an exponent beyond 10^9",
                              field_name(field), text);
        if (exp_neg)
            exp = -exp;
    }
    if (!syntax_ok || *p != '\0')
        return nori__fail(NORI_ETYPE,
                          "%s: '%.40s' is not a decimal number (expected [sign]digits[.digits]"
                          "[e[sign]digits])",
                          field_name(field), text);

    /*
     * Python's str(Decimal) is the General Decimal Arithmetic
     * to-scientific-string: the coefficient is the digits without the point
     * and without leading zeros (at least "0"), the exponent counts the
     * fraction digits. Plain notation when exp <= 0 and the adjusted
     * exponent (exp + digits - 1) >= -6, otherwise d.dddE+n.
     */
    size_t ndig = int_len + frac_len;
    char *coef = malloc(ndig + 1);
    if (coef == NULL)
        return nori__fail(NORI_ENOMEM, "%s: out of memory", field_name(field));
    memcpy(coef, int_start, int_len);
    memcpy(coef + int_len, frac_start, frac_len);
    size_t lead = 0;
    while (lead + 1 < ndig && coef[lead] == '0')
        lead++;
    const char *digits = coef + lead;
    size_t nd = ndig - lead;
    exp -= (long long)frac_len;
    long long adjusted = exp + (long long)nd - 1;

    /* Worst case: sign, "0.", 6 zeros, the digits, "E+", 11 exponent digits. */
    size_t cap = nd + 32;
    char *buf = malloc(cap);
    if (buf == NULL) {
        free(coef);
        return nori__fail(NORI_ENOMEM, "%s: out of memory", field_name(field));
    }
    size_t n = 0;
    if (negative)
        buf[n++] = '-';
    if (exp <= 0 && adjusted >= -6) {
        long long point = (long long)nd + exp; /* digits before the point */
        if (exp == 0) {
            memcpy(buf + n, digits, nd);
            n += nd;
        } else if (point > 0) {
            memcpy(buf + n, digits, (size_t)point);
            n += (size_t)point;
            buf[n++] = '.';
            memcpy(buf + n, digits + point, nd - (size_t)point);
            n += nd - (size_t)point;
        } else {
            buf[n++] = '0';
            buf[n++] = '.';
            for (long long z = 0; z < -point; z++)
                buf[n++] = '0';
            memcpy(buf + n, digits, nd);
            n += nd;
        }
    } else {
        buf[n++] = digits[0];
        if (nd > 1) {
            buf[n++] = '.';
            memcpy(buf + n, digits + 1, nd - 1);
            n += nd - 1;
        }
        n += (size_t)snprintf(buf + n, cap - n, "E%+lld", adjusted);
    }
    free(coef);
    int rc = new_string(buf, n, field, out);
    free(buf);
    return rc;
}
