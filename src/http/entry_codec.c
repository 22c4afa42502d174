// SPDX-License-Identifier: MIT
/*
 * The entry codec: how a response is written into a cache value and read
 * back.
 *
 * Two encodings:
 *  - Nori's JSON object (backends whose traits say NORI__ENTRY_JSON, such
 *    as Redis), so C and Python services can serve each other's entries:
 *      {"body_b64": "...", "status_code": 200, "media_type": "...",
 *       "headers": {"content-disposition": "..."}, "stored_at": ...}
 *    (entry_json.c). Reads also accept the pre-v1.19 shape
 *    {"body": "<utf-8 text>", ...}.
 *  - A binary record (NORI__ENTRY_BINARY: the memory backend), laid out
 *    body first:
 *      body | meta | u32 meta_len | "NRB3"
 *      meta = u16 status | u16 n_headers | u32 media_len (0xFFFFFFFF = none)
 *             | i64 stored_at_ms | i64 fresh_ms | i64 age_ms | i64 swr_ms
 *             | i64 sie_ms | u32 flags
 *             | media | n_headers x (u32 name_len | name | u32 value_len | value)
 *    (integers little-endian). Putting the body at offset 0 means the block
 *    returned by nori_backend_get() IS the body block: a hit hands it to the
 *    adapter as is, with no base64, no JSON and no copy. The trailer at the
 *    end lets the decoder find the metadata from the length alone. Records
 *    of the previous version ("NRB2": no age, windows or flags; at most the
 *    few headers it kept) are still read, as entries with age 0.
 *
 * What an entry holds, and the checks both encodings make: entry_fields.c.
 *
 * Decoding is strict and total: any inconsistency is NORI_ETYPE (a miss for
 * the cache), never a crash or an out-of-bounds read.
 */
#include "http/internal.h"

#include "clock.h"
#include "error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------- binary record */

static const char binary_magic[4] = {'N', 'R', 'B', '3'};
static const char binary_magic_v2[4] = {'N', 'R', 'B', '2'};
#define NO_MEDIA UINT32_MAX
#define META_FIXED 52    /* the fixed part of an NRB3 record's metadata */
#define META_FIXED_V2 24 /* ... of an NRB2 record's */

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

/* Little-endian loads: one instruction each on the hosts this runs on. */
static int64_t get_i64(const unsigned char *p)
{
    uint64_t u;
    memcpy(&u, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    u = __builtin_bswap64(u);
#endif
    return (int64_t)u;
}

static uint16_t get_u16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t u;
    memcpy(&u, p, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    u = __builtin_bswap32(u);
#endif
    return u;
}

int nori__entry_encode_binary(const nori_http_response *r, nori_buf *out)
{
    nori__entry_meta meta = NORI__META(-1, -1);
    return nori__entry_encode_binary_meta(r, &meta, out);
}

int nori__entry_encode_binary_meta(const nori_http_response *r, const nori__entry_meta *em,
                                   nori_buf *out)
{
    const char *media = nori__entry_media_type(r);
    size_t nh = 0;
    int rc = nori__entry_check_fields(r, media, &nh);
    if (rc != NORI_OK)
        return rc;
    size_t meta = META_FIXED + (media ? strlen(media) : 0);
    for (size_t i = 0; i < r->n_headers; i++)
        if (nori__entry_header_stored(r, i))
            meta += 8 + strlen(r->headers[i].name) + strlen(r->headers[i].value);
    if (meta > UINT32_MAX - 1 || nh > UINT16_MAX)
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
    size_t ml = media != NULL ? strlen(media) : 0;
    put_u32(m + 4, media != NULL ? (uint32_t)ml : NO_MEDIA);
    put_i64(m + 8, em->stored_at_ms);
    put_i64(m + 16, em->fresh_ms);
    put_i64(m + 24, em->age_ms);
    put_i64(m + 32, em->swr_ms);
    put_i64(m + 40, em->sie_ms);
    put_u32(m + 48, em->flags & NORI__META_STORED);
    m += META_FIXED;
    if (media != NULL) {
        memcpy(m, media, ml);
        m += ml;
    }
    for (size_t i = 0; i < r->n_headers; i++) {
        const nori_http_header *h = &r->headers[i];
        if (!nori__entry_header_stored(r, i))
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

/* Appends one decoded header line to r, taking name and value over (freed
 * on failure). */
static int adopt_header(nori_http_response *r, char *name, char *value)
{
    if (r->n_headers == r->cap_headers) {
        size_t cap = r->cap_headers ? r->cap_headers * 2 : 8;
        nori_http_header *h = realloc(r->headers, cap * sizeof *h);
        if (h == NULL) {
            free(name);
            free(value);
            return nori__fail(NORI_ENOMEM, "out of memory decoding an entry");
        }
        r->headers = h;
        r->cap_headers = cap;
    }
    r->headers[r->n_headers].name = name;
    r->headers[r->n_headers].value = value;
    r->n_headers++;
    return NORI_OK;
}

/* Parses the binary record in `in` into r; on NORI_OK r->body adopts in->data.
 * v2: a record of the previous version (NRB2). */
static int decode_binary(nori_buf *in, bool v2, nori_http_response *r, nori__entry_meta *em)
{
    const unsigned char *p = (const unsigned char *)in->data;
    size_t len = in->len;
    size_t fixed = v2 ? META_FIXED_V2 : META_FIXED;
    uint32_t meta = get_u32(p + len - 8);
    if (meta < fixed || meta > len - 8)
        return nori__fail(NORI_ETYPE, "binary cache entry: bad metadata length");
    size_t body_len = len - 8 - meta;
    const unsigned char *m = p + body_len, *end = m + meta;
    int status = get_u16(m);
    size_t nh = get_u16(m + 2);
    uint32_t ml = get_u32(m + 4);
    em->stored_at_ms = get_i64(m + 8);
    em->fresh_ms = get_i64(m + 16);
    if (!v2) {
        em->age_ms = get_i64(m + 24);
        em->swr_ms = get_i64(m + 32);
        em->sie_ms = get_i64(m + 40);
        em->flags = get_u32(m + 48);
    }
    m += fixed;
    if (em->stored_at_ms < -1 || em->fresh_ms < -1 || em->age_ms < 0 || em->swr_ms < 0 ||
        em->sie_ms < 0 || (em->flags & ~NORI__META_STORED) != 0)
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
    size_t bytes = 0;
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
        /* The encoder writes only the lines entries hold, with values it
         * checked: any other name (Content-Length, an empty one) or value
         * means the record is not ours, so it is refused. */
        size_t vl = strlen(fields[1]);
        bytes += strlen(fields[0]) + vl + 4;
        if (nori__entry_header_check(fields[0], fields[1], vl) != NORI_OK ||
            bytes > NORI_HTTP_MAX_ENTRY_HEADER_BYTES) {
            free(fields[0]);
            free(fields[1]);
            return nori__fail(NORI_ETYPE, "binary cache entry: a header it cannot hold");
        }
        if ((fields[0][0] == 'S' || fields[0][0] == 's') && strcasecmp(fields[0], "Set-Cookie") == 0)
            em->flags |= NORI__META_SET_COOKIE;
        if ((rc = adopt_header(r, fields[0], fields[1])) != NORI_OK)
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

/* ---------------------------------------------------------------- both */

int nori__entry_decode(nori_buf *in, bool accept_binary, nori_http_response *r)
{
    nori__entry_meta em;
    return nori__entry_decode_meta(in, accept_binary, r, &em);
}

int nori__entry_decode_meta(nori_buf *in, bool accept_binary, nori_http_response *r,
                            nori__entry_meta *em)
{
    nori_http_response_clear(r);
    *em = NORI__META(-1, -1);
    int rc;
    bool binary = accept_binary && in->data != NULL && in->len >= 16;
    if (in->data == NULL) {
        rc = nori__fail(NORI_ETYPE, "empty cache entry");
    } else if (binary && memcmp(in->data + in->len - 4, binary_magic, 4) == 0) {
        rc = decode_binary(in, false, r, em);
    } else if (binary && memcmp(in->data + in->len - 4, binary_magic_v2, 4) == 0) {
        rc = decode_binary(in, true, r, em);
    } else {
        rc = nori__entry_decode_json(in, r, em);
    }
    if (rc != NORI_OK) {
        nori_http_response_clear(r);
        *em = NORI__META(-1, -1);
    }
    nori_buf_free(in);
    return rc;
}
