/*
 * The entry codec: how a response is written into a cache value and read
 * back.
 *
 * Two encodings:
 *  - Nori's JSON object (backends whose traits say NORI__ENTRY_JSON, such
 *    as Redis), so C and Python services can serve each other's entries:
 *      {"body_b64": "...", "status_code": 200, "media_type": "...",
 *       "headers": {"content-disposition": "..."}}
 *    Reads also accept the pre-v1.19 shape {"body": "<utf-8 text>", ...}.
 *  - A binary record (NORI__ENTRY_BINARY: the memory backend), laid out
 *    body first:
 *      body | meta | u32 meta_len | "NRB2"
 *      meta = u16 status | u16 n_headers | u32 media_len (0xFFFFFFFF = none)
 *             | i64 stored_at_ms | i64 fresh_ms
 *             | media | n_headers x (u32 name_len | name | u32 value_len | value)
 *    (integers little-endian). Putting the body at offset 0 means the block
 *    returned by nori_backend_get() IS the body block: a hit hands it to the
 *    adapter as is, with no base64, no JSON and no copy. The trailer at the
 *    end lets the decoder find the metadata from the length alone.
 *
 * Decoding is strict and total: any inconsistency is NORI_ETYPE (a miss for
 * the cache), never a crash or an out-of-bounds read.
 */
#include "http/internal.h"

#include "clock.h"
#include "error.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/*
 * The headers stored with an entry and replayed on a hit (nori/http.h lists
 * them for users). Security headers travel with the body they protect: a
 * hit without the Content-Disposition or Content-Security-Policy of the
 * miss would serve user-uploaded HTML inline, a page without its
 * X-Frame-Options could be framed. Anything not listed (Set-Cookie above
 * all, Date, Server, Content-Length, Vary) is never stored.
 */
static const char *const kept_headers[] = {
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "ETag",
    "Last-Modified",
    "Cache-Control",
    "Content-Security-Policy",
    "Content-Security-Policy-Report-Only",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "Strict-Transport-Security",
    "Referrer-Policy",
    "Permissions-Policy",
    "Cross-Origin-Resource-Policy",
    "Cross-Origin-Opener-Policy",
    "Cross-Origin-Embedder-Policy",
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Credentials",
    "Access-Control-Expose-Headers",
    "X-Robots-Tag",
    "Link",
};
#define N_KEPT (sizeof kept_headers / sizeof kept_headers[0])

bool nori__entry_keeps_header(const char *name)
{
    for (size_t i = 0; i < N_KEPT; i++)
        if (strcasecmp(name, kept_headers[i]) == 0)
            return true;
    return false;
}

bool nori__entry_status_ok(int status)
{
    /* 2xx only (DESIGN 5), minus the three whose replay would be wrong: 204
     * and 205 have no content to reuse, and 206 is one range of one
     * request, not the whole resource. */
    return status >= 200 && status <= 299 && status != 204 && status != 205 && status != 206;
}

/* A field value the adapter can always send: bounded, no control byte but
 * HTAB (CR/LF would inject header lines, NUL would cut it), no DEL. */
static bool value_ok(const char *v, size_t n, size_t max)
{
    if (n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c == 0x7F)
            return false;
    }
    return true;
}

/* RFC 9110 8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE,
 * etagc = %x21 / %x23-7E / obs-text. */
static bool etag_ok(const char *v, size_t n)
{
    if (n > NORI_HTTP_MAX_ETAG)
        return false;
    size_t i = 0;
    if (n >= 2 && v[0] == 'W' && v[1] == '/')
        i = 2;
    if (n - i < 2 || v[i] != '"' || v[n - 1] != '"')
        return false;
    for (size_t k = i + 1; k < n - 1; k++) {
        unsigned char c = (unsigned char)v[k];
        if (c < 0x21 || c == '"' || c == 0x7F)
            return false;
    }
    return true;
}

int nori__entry_header_check(const char *name, const char *value, size_t len)
{
    if (!nori__entry_keeps_header(name))
        return nori__fail(NORI_ETYPE, "header %.64s is not stored with entries", name);
    if (strcasecmp(name, "ETag") == 0 ? !etag_ok(value, len)
                                      : !value_ok(value, len, NORI_HTTP_MAX_HEADER_VALUE))
        return nori__fail(NORI_ETYPE,
                          "header %s: a %zu-byte value that cannot be sent (control bytes, "
                          "over %d bytes, or not an entity-tag)",
                          name, len, NORI_HTTP_MAX_HEADER_VALUE);
    return NORI_OK;
}

int nori__entry_media_check(const char *media, size_t len)
{
    if (!value_ok(media, len, NORI_HTTP_MAX_MEDIA_TYPE))
        return nori__fail(NORI_ETYPE,
                          "media type of %zu bytes cannot be sent (control bytes or over %d)",
                          len, NORI_HTTP_MAX_MEDIA_TYPE);
    return NORI_OK;
}

/* Strict UTF-8 (RFC 3629): what jansson accepts as a JSON string. */
static bool utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            k = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i <= k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + j] & 0x3F);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return false;
        i += k + 1;
    }
    return true;
}

/* Checks everything the encoders write, before a byte is allocated: a
 * response that could not come back exactly as it went in is not stored. */
static int check_storable_fields(const nori_http_response *r, const char *media, size_t *nkept)
{
    int rc;
    if (!nori__entry_status_ok(r->status))
        return nori__fail(NORI_ETYPE, "status %d is not stored", r->status);
    if (media != NULL && (rc = nori__entry_media_check(media, strlen(media))) != NORI_OK)
        return rc;
    size_t n = 0;
    for (size_t i = 0; i < r->n_headers; i++) {
        const nori_http_header *h = &r->headers[i];
        if (!nori__entry_keeps_header(h->name))
            continue;
        if ((rc = nori__entry_header_check(h->name, h->value, strlen(h->value))) != NORI_OK)
            return rc;
        n++;
    }
    if (n > NORI_HTTP_MAX_ENTRY_HEADERS)
        return nori__fail(NORI_ETYPE, "%zu headers to store, the limit is %d", n,
                          NORI_HTTP_MAX_ENTRY_HEADERS);
    *nkept = n;
    return NORI_OK;
}

/* The media type to store: the media_type field, or else a Content-Type
 * header the handler set by hand (so a hit still carries it). */
static const char *entry_media_type(const nori_http_response *r)
{
    return r->media_type != NULL ? r->media_type : nori_http_response_header(r, "Content-Type");
}

/* ---------------------------------------------------------------- base64 */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int nori__base64_encode(const void *data, size_t len, nori_buf *out)
{
    const unsigned char *p = data;
    size_t olen = (len + 2) / 3 * 4;
    if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
        return nori__fail(NORI_ETOOBIG, "body of %zu bytes is too large to encode", len);
    char *o = malloc(olen + 1);
    if (o == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory encoding %zu bytes", len);
    size_t i = 0, j = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        o[j++] = b64_alphabet[v >> 18];
        o[j++] = b64_alphabet[(v >> 12) & 63];
        o[j++] = b64_alphabet[(v >> 6) & 63];
        o[j++] = b64_alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        o[j++] = b64_alphabet[v >> 18];
        o[j++] = b64_alphabet[(v >> 12) & 63];
        o[j++] = '=';
        o[j++] = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        o[j++] = b64_alphabet[v >> 18];
        o[j++] = b64_alphabet[(v >> 12) & 63];
        o[j++] = b64_alphabet[(v >> 6) & 63];
        o[j++] = '=';
    }
    o[j] = '\0';
    out->data = o;
    out->len = j;
    return NORI_OK;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int nori__base64_decode(const char *s, size_t len, nori_buf *out)
{
    out->data = NULL;
    out->len = 0;
    if (len % 4 != 0)
        return nori__fail(NORI_ETYPE, "base64 length %zu is not a multiple of 4", len);
    size_t pad = 0;
    if (len > 0 && s[len - 1] == '=')
        pad = (len > 1 && s[len - 2] == '=') ? 2 : 1;
    size_t olen = len / 4 * 3 - pad;
    char *o = malloc(olen + 1);
    if (o == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory decoding %zu base64 bytes", len);
    size_t j = 0;
    for (size_t i = 0; i < len; i += 4) {
        bool last = i + 4 == len;
        int v[4];
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)s[i + (size_t)k];
            if (last && c == '=' && k >= 4 - (int)pad) {
                v[k] = 0;
                continue;
            }
            v[k] = b64_value(c);
            if (v[k] < 0) {
                free(o);
                return nori__fail(NORI_ETYPE, "invalid base64 character at offset %zu",
                                  i + (size_t)k);
            }
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                     (uint32_t)v[3];
        size_t n = last ? 3 - pad : 3;
        /* Canonical form only: the bits dropped by the padding must be zero. */
        if (last && ((pad == 1 && (w & 0xFF) != 0) || (pad == 2 && (w & 0xFFFF) != 0))) {
            free(o);
            return nori__fail(NORI_ETYPE, "non-canonical base64 padding bits");
        }
        o[j++] = (char)(w >> 16);
        if (n > 1)
            o[j++] = (char)(w >> 8);
        if (n > 2)
            o[j++] = (char)w;
    }
    o[j] = '\0';
    out->data = o;
    out->len = j;
    return NORI_OK;
}

/* ------------------------------------------------------- binary record */

static const char binary_magic[4] = {'N', 'R', 'B', '2'};
#define NO_MEDIA UINT32_MAX

static void put_u16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_i64(unsigned char *p, int64_t v)
{
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(u >> (8 * i));
}

static int64_t get_i64(const unsigned char *p)
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u |= (uint64_t)p[i] << (8 * i);
    return (int64_t)u;
}

static uint16_t get_u16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

int nori__entry_encode_binary(const nori_http_response *r, nori_buf *out)
{
    nori__entry_meta meta = {-1, -1};
    return nori__entry_encode_binary_meta(r, &meta, out);
}

int nori__entry_encode_binary_meta(const nori_http_response *r, const nori__entry_meta *em,
                                   nori_buf *out)
{
    const char *media = entry_media_type(r);
    size_t nh = 0;
    int rc = check_storable_fields(r, media, &nh);
    if (rc != NORI_OK)
        return rc;
    size_t meta = 2 + 2 + 4 + 16 + (media ? strlen(media) : 0);
    nh = 0;
    for (size_t i = 0; i < r->n_headers; i++) {
        if (!nori__entry_keeps_header(r->headers[i].name))
            continue;
        meta += 8 + strlen(r->headers[i].name) + strlen(r->headers[i].value);
        nh++;
    }
    if (meta > UINT32_MAX - 1 || nh > UINT16_MAX || r->status < 0 || r->status > 999)
        return nori__fail(NORI_ETOOBIG, "response metadata too large to store");
    size_t total = r->body_len + meta + 8;
    unsigned char *p = malloc(total + 1);
    if (p == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory encoding a %zu-byte entry", total);
    if (r->body_len > 0)
        memcpy(p, r->body, r->body_len);
    unsigned char *m = p + r->body_len;
    put_u16(m, (uint16_t)r->status);
    put_u16(m + 2, (uint16_t)nh);
    m += 4;
    size_t ml = media != NULL ? strlen(media) : 0;
    put_u32(m, media != NULL ? (uint32_t)ml : NO_MEDIA);
    put_i64(m + 4, em->stored_at_ms);
    put_i64(m + 12, em->fresh_ms);
    m += 20;
    if (media != NULL) {
        memcpy(m, media, ml);
        m += ml;
    }
    for (size_t i = 0; i < r->n_headers; i++) {
        const nori_http_header *h = &r->headers[i];
        if (!nori__entry_keeps_header(h->name))
            continue;
        size_t nl = strlen(h->name), vl = strlen(h->value);
        put_u32(m, (uint32_t)nl);
        memcpy(m + 4, h->name, nl);
        m += 4 + nl;
        put_u32(m, (uint32_t)vl);
        memcpy(m + 4, h->value, vl);
        m += 4 + vl;
    }
    put_u32(m, (uint32_t)meta);
    memcpy(m + 4, binary_magic, 4);
    p[total] = '\0';
    out->data = (char *)p;
    out->len = total;
    return NORI_OK;
}

/* Copies n bytes at p as a C string; NULs inside are refused (a header or
 * media type with a NUL cannot be sent). */
static int dup_field(const unsigned char *p, size_t n, char **out)
{
    if (memchr(p, '\0', n) != NULL)
        return nori__fail(NORI_ETYPE, "cache entry field contains a NUL byte");
    char *s = malloc(n + 1);
    if (s == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory decoding an entry");
    memcpy(s, p, n);
    s[n] = '\0';
    *out = s;
    return NORI_OK;
}

/* Parses the binary record in `in` into r; on NORI_OK r->body adopts in->data. */
static int decode_binary(nori_buf *in, nori_http_response *r, nori__entry_meta *em)
{
    const unsigned char *p = (const unsigned char *)in->data;
    size_t len = in->len;
    uint32_t meta = get_u32(p + len - 8);
    if (meta < 24 || meta > len - 8)
        return nori__fail(NORI_ETYPE, "binary cache entry: bad metadata length");
    size_t body_len = len - 8 - meta;
    const unsigned char *m = p + body_len, *end = m + meta;
    int status = get_u16(m);
    size_t nh = get_u16(m + 2);
    uint32_t ml = get_u32(m + 4);
    em->stored_at_ms = get_i64(m + 8);
    em->fresh_ms = get_i64(m + 16);
    m += 24;
    if (em->stored_at_ms < -1 || em->fresh_ms < -1)
        return nori__fail(NORI_ETYPE, "binary cache entry: bad freshness fields");
    if (!nori__entry_status_ok(status))
        return nori__fail(NORI_ETYPE, "binary cache entry: status %d is never stored", status);
    if (nh > NORI_HTTP_MAX_ENTRY_HEADERS)
        return nori__fail(NORI_ETYPE, "binary cache entry: %zu headers", nh);
    int rc;
    if (ml != NO_MEDIA) {
        if (ml > (size_t)(end - m))
            return nori__fail(NORI_ETYPE, "binary cache entry: truncated media type");
        if ((rc = nori__entry_media_check((const char *)m, ml)) != NORI_OK)
            return rc;
        if ((rc = dup_field(m, ml, &r->media_type)) != NORI_OK)
            return rc;
        m += ml;
    }
    for (size_t i = 0; i < nh; i++) {
        char *fields[2] = {NULL, NULL};
        for (int k = 0; k < 2; k++) {
            uint32_t l;
            if ((size_t)(end - m) < 4 || (l = get_u32(m)) > (size_t)(end - m) - 4) {
                free(fields[0]);
                return nori__fail(NORI_ETYPE, "binary cache entry: truncated header");
            }
            if ((rc = dup_field(m + 4, l, &fields[k])) != NORI_OK) {
                free(fields[0]);
                return rc;
            }
            m += 4 + l;
        }
        /* The encoder writes only the kept headers with values it checked:
         * any other name (Set-Cookie, an empty one) or value means the record
         * is not ours, so it is refused. */
        if (nori__entry_header_check(fields[0], fields[1], strlen(fields[1])) != NORI_OK) {
            free(fields[0]);
            free(fields[1]);
            return NORI_ETYPE;
        }
        rc = nori_http_response_add_header(r, fields[0], fields[1]);
        free(fields[0]);
        free(fields[1]);
        if (rc != NORI_OK)
            return rc;
    }
    if (m != end)
        return nori__fail(NORI_ETYPE, "binary cache entry: trailing metadata bytes");
    r->status = status;
    nori_http_response_take_body(r, in->data, body_len);
    in->data = NULL;
    in->len = 0;
    return NORI_OK;
}

/* ---------------------------------------------------------------- JSON */

int nori__entry_encode_json(const nori_http_response *r, nori_buf *out)
{
    nori__entry_meta meta = {nori__wall_ms(), -1};
    return nori__entry_encode_json_meta(r, &meta, out);
}

int nori__entry_encode_json_meta(const nori_http_response *r, const nori__entry_meta *em,
                                 nori_buf *out)
{
    const char *media = entry_media_type(r);
    size_t nh;
    int rc = check_storable_fields(r, media, &nh);
    if (rc != NORI_OK)
        return rc;
    /* JSON strings are UTF-8: a media type or kept header with other bytes
     * (Latin-1 in a Content-Disposition filename) cannot travel, and
     * leaving it out would change the response on a hit, so the response is
     * not stored at all. */
    if (media != NULL && !utf8_valid(media, strlen(media)))
        return nori__fail(NORI_ETYPE, "media type is not UTF-8: not stored in a JSON entry");
    for (size_t i = 0; i < r->n_headers; i++)
        if (nori__entry_keeps_header(r->headers[i].name) &&
            !utf8_valid(r->headers[i].value, strlen(r->headers[i].value)))
            return nori__fail(NORI_ETYPE, "header %s is not UTF-8: not stored in a JSON entry",
                              r->headers[i].name);
    nori_buf b64;
    rc = nori__base64_encode(r->body, r->body_len, &b64);
    if (rc != NORI_OK)
        return rc;
    json_t *obj = json_object(), *headers = json_object();
    rc = NORI_ENOMEM;
    if (obj == NULL || headers == NULL)
        goto done;
    /* Nori's field order. */
    json_t *media_json = media != NULL ? json_string(media) : NULL;
    /* The base64 text is ASCII: skip jansson's UTF-8 check of a large string. */
    if (json_object_set_new(obj, "body_b64", json_stringn_nocheck(b64.data, b64.len)) ||
        json_object_set_new(obj, "status_code", json_integer(r->status))) {
        json_decref(media_json);
        goto done;
    }
    /* set_new consumes its value even when it fails. */
    if (json_object_set_new(obj, "media_type", media_json ? media_json : json_null()))
        goto done;
    /* Header names are written lower-case, as Starlette (Nori) keeps them. */
    for (size_t i = 0; i < r->n_headers; i++) {
        const nori_http_header *h = &r->headers[i];
        if (!nori__entry_keeps_header(h->name))
            continue;
        char lname[64];
        size_t n = strlen(h->name);
        if (n >= sizeof lname)
            continue; /* cannot be one of the kept names */
        for (size_t k = 0; k <= n; k++)
            lname[k] = (char)((h->name[k] >= 'A' && h->name[k] <= 'Z') ? h->name[k] + 32
                                                                        : h->name[k]);
        json_t *v = json_string(h->value);
        if (v == NULL || json_object_set_new(headers, lname, v))
            goto done;
    }
    if (json_object_set(obj, "headers", headers))
        goto done;
    /* This library's additions (Nori's Python ignores unknown fields):
     * when the entry was stored and for how long it is fresh, in seconds, so
     * that every process sharing the Redis makes the same fresh/stale
     * decision. */
    int64_t at = em->stored_at_ms >= 0 ? em->stored_at_ms : nori__wall_ms();
    if (json_object_set_new(obj, NORI_ENTRY_FIELD_STORED_AT, json_real((double)at / 1000.0)))
        goto done;
    if (em->fresh_ms >= 0 &&
        json_object_set_new(obj, NORI_ENTRY_FIELD_FRESH_FOR, json_real((double)em->fresh_ms / 1000.0)))
        goto done;
    char *text = json_dumps(obj, JSON_COMPACT);
    if (text == NULL)
        goto done;
    out->data = text;
    out->len = strlen(text);
    rc = NORI_OK;
done:
    if (rc != NORI_OK)
        nori__fail(rc, "out of memory encoding a cache entry as JSON");
    json_decref(headers);
    json_decref(obj);
    nori_buf_free(&b64);
    return rc;
}

/* true when the media type has a charset parameter (any case). */
static bool has_charset(const char *mt)
{
    for (const char *p = mt; *p != '\0'; p++)
        if (strncasecmp(p, "charset=", 8) == 0)
            return true;
    return false;
}

/*
 * Sets the media type of a decoded JSON entry. Nori's Python stores
 * Starlette's bare media type ("text/plain") and Starlette appends
 * "; charset=utf-8" to text/... when it sends the response; an entry written
 * by Python (from_python: no field this library adds) therefore gets the same
 * suffix here, so a C service sends what the Python one would.
 */
static int set_media_type_nori(nori_http_response *r, const char *mt, bool from_python)
{
    if (!from_python || strncasecmp(mt, "text/", 5) != 0 || has_charset(mt))
        return nori_http_response_set_media_type(r, mt);
    char buf[NORI_HTTP_MAX_MEDIA_TYPE + sizeof "; charset=utf-8"];
    int n = snprintf(buf, sizeof buf, "%s; charset=utf-8", mt);
    /* The result must pass the same bound as anything else sent. */
    if (n < 0 || nori__entry_media_check(buf, (size_t)n) != NORI_OK)
        return NORI_ETYPE;
    return nori_http_response_set_media_type(r, buf);
}

/* A non-negative number field in seconds, as milliseconds; -1 when absent.
 * NORI_ETYPE when present but not a finite non-negative number. */
static int seconds_field(json_t *root, const char *name, int64_t *out_ms)
{
    json_t *v = json_object_get(root, name);
    *out_ms = -1;
    if (v == NULL || json_is_null(v))
        return NORI_OK;
    if (!json_is_number(v))
        return nori__fail(NORI_ETYPE, "cache entry: %s is not a number", name);
    double d = json_number_value(v);
    if (!(d >= 0 && d < 9.2e15))
        return nori__fail(NORI_ETYPE, "cache entry: %s is out of range", name);
    *out_ms = (int64_t)(d * 1000.0 + 0.5);
    return NORI_OK;
}

static int decode_json(const nori_buf *in, nori_http_response *r, nori__entry_meta *em)
{
    json_error_t jerr;
    /* JSON_ALLOW_NUL: a legacy text body may contain U+0000 (valid UTF-8). */
    json_t *root = json_loadb(in->data, in->len, JSON_ALLOW_NUL, &jerr);
    if (root == NULL)
        return nori__fail(NORI_ETYPE, "cache entry is not JSON: %s", jerr.text);
    int rc = NORI_ETYPE;
    if (!json_is_object(root)) {
        nori__fail(rc, "cache entry is not a JSON object");
        goto done;
    }
    json_t *status = json_object_get(root, "status_code");
    if (!json_is_integer(status) || json_integer_value(status) < 200 ||
        json_integer_value(status) > 299 ||
        !nori__entry_status_ok((int)json_integer_value(status))) {
        nori__fail(rc, "cache entry: status_code missing or not a stored status");
        goto done;
    }
    json_t *media = json_object_get(root, "media_type");
    if (media != NULL && !json_is_null(media) &&
        (!json_is_string(media) ||
         memchr(json_string_value(media), '\0', json_string_length(media)) != NULL)) {
        nori__fail(rc, "cache entry: media_type is not a string without NULs");
        goto done;
    }
    json_t *headers = json_object_get(root, "headers");
    if (headers != NULL && !json_is_null(headers) && !json_is_object(headers)) {
        nori__fail(rc, "cache entry: headers is not an object");
        goto done;
    }
    if ((rc = seconds_field(root, NORI_ENTRY_FIELD_STORED_AT, &em->stored_at_ms)) != NORI_OK ||
        (rc = seconds_field(root, NORI_ENTRY_FIELD_FRESH_FOR, &em->fresh_ms)) != NORI_OK)
        goto done;
    rc = NORI_ETYPE;
    json_t *b64 = json_object_get(root, "body_b64");
    json_t *text = json_object_get(root, "body");
    nori_buf body = {NULL, 0};
    if (b64 != NULL) {
        if (!json_is_string(b64)) {
            nori__fail(rc, "cache entry: body_b64 is not a string");
            goto done;
        }
        if ((rc = nori__base64_decode(json_string_value(b64), json_string_length(b64),
                                      &body)) != NORI_OK)
            goto done;
    } else if (text != NULL && json_is_string(text)) {
        /* Legacy entries: the body is the text's UTF-8 bytes. */
        if ((rc = nori_http_response_set_body(r, json_string_value(text),
                                              json_string_length(text))) != NORI_OK)
            goto done;
    } else {
        rc = nori__fail(NORI_ETYPE, "cache entry: neither body_b64 nor body is a string");
        goto done;
    }
    if (body.data != NULL)
        nori_http_response_take_body(r, body.data, body.len);
    r->status = (int)json_integer_value(status);
    rc = NORI_OK;
    const char *mt = json_is_string(media) ? json_string_value(media) : NULL;
    size_t nkept = 0;
    const char *key;
    json_t *v;
    json_object_foreach(headers, key, v)
    {
        if (!json_is_string(v)) {
            rc = nori__fail(NORI_ETYPE, "cache entry: header %s is not a string", key);
            goto done;
        }
        if (strcasecmp(key, "content-type") == 0 && mt == NULL &&
            memchr(json_string_value(v), '\0', json_string_length(v)) == NULL)
            mt = json_string_value(v);
        if (!nori__entry_keeps_header(key))
            continue; /* never replay Set-Cookie or anything not in the list */
        /* A kept header this library would not have written (CR/LF, NUL, a
         * 100 KB ETag) makes the whole entry a miss: it is overwritten by the
         * fresh response instead of breaking every hit until it expires. */
        if (++nkept > NORI_HTTP_MAX_ENTRY_HEADERS ||
            (rc = nori__entry_header_check(key, json_string_value(v), json_string_length(v))) !=
                NORI_OK ||
            memchr(json_string_value(v), '\0', json_string_length(v)) != NULL) {
            rc = nori__fail(NORI_ETYPE, "cache entry: header %.64s cannot be replayed", key);
            goto done;
        }
        if ((rc = nori_http_response_add_header(r, key, json_string_value(v))) != NORI_OK)
            goto done;
    }
    if (mt != NULL) {
        if ((rc = nori__entry_media_check(mt, strlen(mt))) != NORI_OK)
            goto done;
        rc = set_media_type_nori(r, mt, json_object_get(root, NORI_ENTRY_FIELD_STORED_AT) == NULL);
    }
done:
    json_decref(root);
    return rc;
}

int nori__entry_decode(nori_buf *in, bool accept_binary, nori_http_response *r)
{
    nori__entry_meta em;
    return nori__entry_decode_meta(in, accept_binary, r, &em);
}

int nori__entry_decode_meta(nori_buf *in, bool accept_binary, nori_http_response *r,
                            nori__entry_meta *em)
{
    nori_http_response_clear(r);
    em->stored_at_ms = -1;
    em->fresh_ms = -1;
    int rc;
    if (in->data == NULL) {
        rc = nori__fail(NORI_ETYPE, "empty cache entry");
    } else if (accept_binary && in->len >= 16 &&
               memcmp(in->data + in->len - 4, binary_magic, 4) == 0) {
        rc = decode_binary(in, r, em);
    } else {
        rc = decode_json(in, r, em);
    }
    if (rc != NORI_OK)
        nori_http_response_clear(r);
    nori_buf_free(in);
    return rc;
}
