// SPDX-License-Identifier: MIT
/*
 * The fields of a cache entry, shared by both encodings (entry_codec.c for
 * the binary record and the dispatch, entry_json.c for Nori's JSON object).
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
 */
#include "http/internal.h"

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
