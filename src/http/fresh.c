// SPDX-License-Identifier: MIT
/*
 * Validators of the response cache: the strong ETag derived from the body, and
 * the conditional-request rules of RFC 9110 13.1.1/13.1.3 and 15.4.5.
 * Entries are stamped with the wall clock (nori__wall_ms, clock.h): their
 * stored-at times are compared by every process sharing a backend, each
 * with its own monotonic origin.
 */
#include "http/internal.h"

#include "clock.h"
#include "error.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* -------------------------------------------------------------- ETag */

void nori__http_derived_etag(const char *body, size_t len, char tag[NORI__ETAG_DERIVED_SIZE])
{
    /* Deterministic in the body bytes alone (no per-process salt), so every
     * process sharing a Redis derives the same tag for the same body: two
     * 64-bit FNV-1a variants and the length. */
    uint64_t a = 1469598103934665603ULL, b = 0x84222325cbf29ce4ULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)body[i];
        a = (a ^ c) * 1099511628211ULL;
        b = (b ^ c) * 0x100000001b3ULL + (uint64_t)i;
    }
    snprintf(tag, NORI__ETAG_DERIVED_SIZE, "\"%016" PRIx64 "%016" PRIx64 "-%zx\"", a, b, len);
}

int nori__http_ensure_etag(nori_http_response *r)
{
    if (nori_http_response_header(r, "ETag") != NULL)
        return NORI_OK;
    char tag[NORI__ETAG_DERIVED_SIZE];
    nori__http_derived_etag(r->body, r->body_len, tag);
    return nori_http_response_add_header(r, "ETag", tag);
}

/* --------------------------------------------------- conditional GET */

/* The opaque-tag of an entity-tag (W/ dropped): weak comparison. */
static void opaque(const char *s, size_t n, const char **o, size_t *on)
{
    if (n >= 2 && s[0] == 'W' && s[1] == '/') {
        s += 2;
        n -= 2;
    }
    *o = s;
    *on = n;
}

/* RFC 9110 13.1.2: If-None-Match is "*" or a list of entity-tags compared
 * weakly. 1 when the stored etag matches. */
static int none_match(const char *inm, const char *etag)
{
    const char *eo;
    size_t en;
    opaque(etag, strlen(etag), &eo, &en);
    const char *p = inm;
    while (*p != '\0') {
        p += strspn(p, " \t,");
        if (*p == '\0')
            break;
        if (*p == '*')
            return 1;
        const char *start = p;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        if (*p != '"') { /* malformed member: skip to the next comma */
            p += strcspn(p, ",");
            continue;
        }
        const char *close = strchr(p + 1, '"');
        if (close == NULL)
            break;
        const char *to;
        size_t tn;
        opaque(start, (size_t)(close + 1 - start), &to, &tn);
        if (tn == en && memcmp(to, eo, en) == 0)
            return 1;
        p = close + 1;
    }
    return 0;
}

/* An HTTP-date in any of its three forms, whatever the locale (date.c). */
static int parse_http_date(const char *s, int64_t *out)
{
    return nori__http_date_parse(s, strlen(s), nori__wall_ms() / 1000, out) == NORI_OK;
}

int nori__http_not_modified(const nori_http_request *req, const nori_http_response *r)
{
    const char *inm = nori_http_request_header(req, "If-None-Match");
    if (inm != NULL) {
        const char *etag = nori_http_response_header(r, "ETag");
        return etag != NULL && none_match(inm, etag);
    }
    /* If-Modified-Since only without If-None-Match (RFC 9110 13.1.3). */
    const char *ims = nori_http_request_header(req, "If-Modified-Since");
    const char *lm = nori_http_response_header(r, "Last-Modified");
    int64_t t_ims, t_lm;
    return ims != NULL && lm != NULL && parse_http_date(ims, &t_ims) &&
           parse_http_date(lm, &t_lm) && t_lm <= t_ims;
}

int nori__http_make_304(nori_http_response *r)
{
    /* RFC 9110 15.4.5: the fields a 200 would have carried among
     * Cache-Control, Content-Location, Date, ETag, Expires and Vary; no
     * other representation metadata, no body. */
    static const char *const keep[] = {"Cache-Control", "Content-Location", "Date",
                                       "ETag",          "Expires",          "Vary",
                                       "Age"};
    size_t o = 0;
    for (size_t i = 0; i < r->n_headers; i++) {
        bool k = false;
        for (size_t j = 0; j < sizeof keep / sizeof keep[0] && !k; j++)
            k = strcasecmp(r->headers[i].name, keep[j]) == 0;
        if (k) {
            r->headers[o++] = r->headers[i];
        } else {
            free(r->headers[i].name);
            free(r->headers[i].value);
        }
    }
    r->n_headers = o;
    r->status = 304;
    /* RFC 9110 8.6: a 304 may carry Content-Length only as the length the
     * 200 would have had. Recorded before the body goes, so the adapter can
     * send that instead of its server library's "Content-Length: 0". */
    char len[24];
    snprintf(len, sizeof len, "%zu", r->body_len);
    nori_http_response_take_body(r, NULL, 0);
    int rc = nori_http_response_add_header(r, "Content-Length", len);
    int rc2 = nori_http_response_set_media_type(r, NULL);
    return rc != NORI_OK ? rc : rc2;
}
