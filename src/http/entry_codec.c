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
 * What an entry holds (RFC 9111 3.1): the status, the media type, the body,
 * and every header line of the response in order, but those no cache
 * stores: the connection-specific fields and the fields the response's
 * Connection header names, Content-Length (the adapter sends the body's
 * own), Content-Type (the media type) and Age (computed on each answer).
 * Bounded: NORI_HTTP_MAX_ENTRY_HEADERS lines, NORI_HTTP_MAX_ENTRY_HEADER_BYTES
 * bytes of them, NORI_HTTP_MAX_HEADER_NAME / _VALUE bytes each. A response
 * over a bound, or with a line that could not be sent back as it came (a
 * control byte, CR/LF above all, or a name that is not a token), is not
 * stored at all: never stored without the line.
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

/* ------------------------------------------------------------ headers */

/* RFC 9110 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" /
 * "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA. A table: every
 * header of every hit goes through it. */
static const unsigned char tchars[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1,
    ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,
    ['~'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
    ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1,
    ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1,
    ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1,
    ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1,
    ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
    ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1,
    ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1};

bool nori__http_field_name_ok(const char *name, size_t len)
{
    if (len == 0 || len > NORI_HTTP_MAX_HEADER_NAME)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!tchars[(unsigned char)name[i]])
            return false;
    return true;
}

/* The names no entry holds, by length, so that a name is compared with at
 * most two of them. */
static bool never_held(const char *name, size_t len)
{
    const char *a = NULL, *b = NULL;
    switch (len) {
    case 2: a = "TE"; break;
    case 3: a = "Age"; break;
    case 7: a = "Trailer"; b = "Upgrade"; break;
    case 10: a = "Connection"; b = "Keep-Alive"; break;
    case 12: a = "Content-Type"; break;
    case 14: a = "Content-Length"; break;
    case 17: a = "Transfer-Encoding"; break;
    default: break;
    }
    return (a != NULL && strcasecmp(name, a) == 0) || (b != NULL && strcasecmp(name, b) == 0) ||
           (len > 6 && strncasecmp(name, "Proxy-", 6) == 0);
}

bool nori__entry_keeps_header(const char *name)
{
    /* Connection-specific (RFC 9110 7.6.1; RFC 9111 3.1), and what the
     * adapter or the cache writes itself on each answer. */
    size_t len = strlen(name);
    return nori__http_field_name_ok(name, len) && !never_held(name, len);
}

bool nori__entry_status_ok(int status)
{
    /* Final statuses an HTTP/1.1 status line carries, but 304 (no
     * representation to reuse). A 206 is one range of one request: the
     * cache keeps one only under that request's range key (entries.c). */
    return status >= 200 && status <= 599 && status != 304;
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

int nori__entry_header_check(const char *name, const char *value, size_t len)
{
    size_t nl = strlen(name);
    if (!nori__http_field_name_ok(name, nl) || never_held(name, nl))
        return nori__fail(NORI_ETYPE, "header %.64s is not stored with entries", name);
    size_t max = nl == 4 && strcasecmp(name, "ETag") == 0 ? NORI_HTTP_MAX_ETAG
                                                         : NORI_HTTP_MAX_HEADER_VALUE;
    if (!value_ok(value, len, max))
        return nori__fail(NORI_ETYPE,
                          "header %.64s: a %zu-byte value that cannot be sent (control bytes, "
                          "or over %zu bytes)",
                          name, len, max);
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

/* 1 when the comma-separated list `list` names `name` (any case, OWS
 * around the members). */
static bool list_names(const char *list, const char *name)
{
    size_t n = strlen(name);
    const char *p = list;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *start = p;
        while (*p != '\0' && *p != ',')
            p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if ((size_t)(end - start) == n && strncasecmp(start, name, n) == 0)
            return true;
    }
    return false;
}

/*
 * Whether header line i of r goes into its entry: a name entries hold, not
 * named by a Connection line of r (RFC 9111 3.1: such fields are meant for
 * the connection the response came on), with a value. A line with an empty
 * value says nothing a missing line does not, and an adapter cannot always
 * send one (libmicrohttpd refuses it, and drops it from the miss too): it
 * is left out, so that a hit stays sendable and equal to the miss. Names
 * that are not tokens return true here so that the checks refuse the whole
 * response.
 */
bool nori__entry_header_stored(const nori_http_response *r, size_t i)
{
    const char *name = r->headers[i].name;
    if (!nori__http_field_name_ok(name, strlen(name)))
        return true; /* refused by nori__entry_check_fields */
    if (!nori__entry_keeps_header(name) || r->headers[i].value[0] == '\0')
        return false;
    for (size_t k = 0; k < r->n_headers; k++)
        if (strcasecmp(r->headers[k].name, "Connection") == 0 &&
            list_names(r->headers[k].value, name))
            return false;
    return true;
}

/* Strict UTF-8 (RFC 3629): what jansson accepts as a JSON string. */
bool nori__utf8_valid(const char *s, size_t n)
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
 * response that could not come back exactly as it went in is not stored.
 * *n_kept: the header lines that go into the entry. */
int nori__entry_check_fields(const nori_http_response *r, const char *media, size_t *n_kept)
{
    int rc;
    if (!nori__entry_status_ok(r->status))
        return nori__fail(NORI_ETYPE, "status %d is not stored", r->status);
    if (media != NULL && (rc = nori__entry_media_check(media, strlen(media))) != NORI_OK)
        return rc;
    size_t n = 0, bytes = 0;
    for (size_t i = 0; i < r->n_headers; i++) {
        const nori_http_header *h = &r->headers[i];
        if (!nori__entry_header_stored(r, i))
            continue;
        size_t vl = strlen(h->value);
        if ((rc = nori__entry_header_check(h->name, h->value, vl)) != NORI_OK)
            return rc;
        n++;
        bytes += strlen(h->name) + vl + 4;
    }
    if (n > NORI_HTTP_MAX_ENTRY_HEADERS || bytes > NORI_HTTP_MAX_ENTRY_HEADER_BYTES)
        return nori__fail(NORI_ETYPE,
                          "%zu header lines (%zu bytes) to store, the limits are %d (%d bytes)",
                          n, bytes, NORI_HTTP_MAX_ENTRY_HEADERS,
                          NORI_HTTP_MAX_ENTRY_HEADER_BYTES);
    *n_kept = n;
    return NORI_OK;
}

/* The media type to store: the media_type field, or else a Content-Type
 * header the handler set by hand (so a hit still carries it). */
const char *nori__entry_media_type(const nori_http_response *r)
{
    return r->media_type != NULL ? r->media_type : nori_http_response_header(r, "Content-Type");
}

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
