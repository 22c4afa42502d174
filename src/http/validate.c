// SPDX-License-Identifier: MIT
/*
 * Validation and the answers built from a stored response: the conditional
 * request a stale entry sends to the handler (RFC 9111 4.3.1), the update
 * a 304 brings to the stored headers (3.2, 4.3.4), and a byte range of a
 * stored 200 (RFC 9110 14).
 */
#include "http/internal.h"

#include "error.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* -------------------------------------------- the conditional request */

static bool is_validator_field(const char *name)
{
    return strcasecmp(name, "If-None-Match") == 0 || strcasecmp(name, "If-Modified-Since") == 0;
}

static const char *cond_header(void *ud, const char *name)
{
    const nori__cond_req *cr = ud;
    if (strcasecmp(name, "If-None-Match") == 0)
        return cr->inm;
    if (strcasecmp(name, "If-Modified-Since") == 0)
        return cr->ims;
    return nori_http_request_header(cr->inner, name);
}

typedef struct {
    nori_http_header_visit_fn visit;
    void *visit_ud;
} cond_walk;

static int cond_visit(void *ud, const char *name, const char *value)
{
    const cond_walk *w = ud;
    return is_validator_field(name) ? 0 : w->visit(w->visit_ud, name, value);
}

static int cond_each(void *ud, nori_http_header_visit_fn visit, void *visit_ud)
{
    const nori__cond_req *cr = ud;
    cond_walk w = {visit, visit_ud};
    int rc = nori_http_request_each_header(cr->inner, cond_visit, &w);
    if (rc == 0 && cr->inm != NULL)
        rc = visit(visit_ud, "If-None-Match", cr->inm);
    if (rc == 0 && cr->ims != NULL)
        rc = visit(visit_ud, "If-Modified-Since", cr->ims);
    return rc;
}

bool nori__cond_request(nori__cond_req *cr, const nori_http_request *inner,
                        const nori_http_response *stored)
{
    cr->inner = inner;
    cr->inm = nori_http_response_header(stored, "ETag");
    cr->ims = nori_http_response_header(stored, "Last-Modified");
    if (cr->inm != NULL) {
        /* The tag the application rules derive from the body means
         * nothing to the handler: it never made it. */
        char derived[NORI__ETAG_DERIVED_SIZE];
        nori__http_derived_etag(stored->body, stored->body_len, derived);
        if (strcmp(derived, cr->inm) == 0 || cr->inm[0] == '\0')
            cr->inm = NULL;
    }
    if (cr->ims != NULL && cr->ims[0] == '\0')
        cr->ims = NULL;
    if (cr->inm == NULL && cr->ims == NULL)
        return false;
    cr->req = *inner;
    cr->req.header = cond_header;
    cr->req.header_ud = cr;
    cr->req.each_header = cond_each;
    return true;
}

/* ------------------------------------------------------ the 304 update */

void nori__http_remove_header(nori_http_response *r, const char *name)
{
    size_t o = 0;
    for (size_t i = 0; i < r->n_headers; i++) {
        if (strcasecmp(r->headers[i].name, name) == 0) {
            free(r->headers[i].name);
            free(r->headers[i].value);
        } else {
            r->headers[o++] = r->headers[i];
        }
    }
    r->n_headers = o;
}

/* Fields a 304 does not change in the stored response: they describe the
 * bytes of the body this cache holds, which the 304 confirmed as they are
 * (a browser-style exception of RFC 9111 3.2; for the ETag, also 4.3.4:
 * the stored response was selected by its own validator). */
static bool keeps_stored(const char *name)
{
    static const char *const body_fields[] = {"ETag",           "Content-Encoding",
                                              "Content-Range",  "Content-MD5",
                                              "Digest",         "Content-Digest",
                                              "Repr-Digest",    "Content-Length"};
    for (size_t i = 0; i < sizeof body_fields / sizeof body_fields[0]; i++)
        if (strcasecmp(name, body_fields[i]) == 0)
            return true;
    return false;
}

static bool updates_from_304(const char *name)
{
    if (keeps_stored(name))
        return false;
    /* Age is the new response's age (the entry keeps it as metadata, not
     * as a line); other fields no entry holds stay out. */
    return strcasecmp(name, "Age") == 0 ||
           (nori__entry_keeps_header(name) && strcasecmp(name, "Content-Type") != 0);
}

int nori__http_update_headers(nori_http_response *stored, const nori_http_response *fresh)
{
    /* The stored Age line, if any, is not the response's age any more. */
    nori__http_remove_header(stored, "Age");
    for (size_t i = 0; i < fresh->n_headers; i++) {
        const char *name = fresh->headers[i].name;
        if (!updates_from_304(name) || fresh->headers[i].value[0] == '\0')
            continue; /* an empty line is no update (entry_codec.c) */
        /* The first line of a name in fresh replaces every stored line of
         * it; fresh's later lines of the name are added after. */
        bool first = true;
        for (size_t k = 0; k < i && first; k++)
            first = strcasecmp(fresh->headers[k].name, name) != 0;
        if (first)
            nori__http_remove_header(stored, name);
        int rc = nori_http_response_add_header(stored, name, fresh->headers[i].value);
        if (rc != NORI_OK)
            return rc;
    }
    if (fresh->media_type != NULL)
        return nori_http_response_set_media_type(stored, fresh->media_type);
    return NORI_OK;
}

/* -------------------------------------------------------------- ranges */

/* Digits at *p as a byte position; false when none or over 2^62. */
static bool position(const char **p, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    if (*s < '0' || *s > '9')
        return false;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > ((uint64_t)1 << 62) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *p = s;
    *out = v;
    return true;
}

/* One range of `Range: bytes=...` over a body of len bytes, as
 * [*first, *last]; false when it is not exactly one satisfiable range. */
static bool one_range(const char *v, uint64_t len, uint64_t *first, uint64_t *last)
{
    if (strncasecmp(v, "bytes=", 6) != 0 || len == 0)
        return false;
    const char *p = v + 6;
    while (*p == ' ' || *p == '\t')
        p++;
    uint64_t a = 0, b = 0;
    if (*p == '-') {
        p++;
        if (!position(&p, &b) || b == 0)
            return false;
        a = b >= len ? 0 : len - b; /* the last b bytes */
        b = len - 1;
    } else {
        if (!position(&p, &a) || *p++ != '-')
            return false;
        if (*p >= '0' && *p <= '9') {
            if (!position(&p, &b) || b < a)
                return false;
        } else {
            b = len - 1;
        }
        if (a >= len)
            return false; /* unsatisfiable: the whole 200 instead */
        if (b >= len)
            b = len - 1;
    }
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '\0')
        return false; /* several ranges, or not a range */
    *first = a;
    *last = b;
    return true;
}

/* If-Range (RFC 9110 13.1.5): a strong ETag equal to r's, or a date equal
 * to r's Last-Modified; anything else asks for the whole representation. */
static bool if_range_holds(const char *ir, const nori_http_response *r)
{
    if (ir == NULL)
        return true;
    if (ir[0] == '"') {
        const char *etag = nori_http_response_header(r, "ETag");
        return etag != NULL && etag[0] == '"' && strcmp(etag, ir) == 0;
    }
    const char *lm = nori_http_response_header(r, "Last-Modified");
    return lm != NULL && strcmp(lm, ir) == 0;
}

int nori__http_apply_range(const nori_http_request *req, nori_http_response *r)
{
    if (r->status != 200 || strcmp(req->method, "GET") != 0)
        return NORI_OK;
    const char *range = nori_http_request_header(req, "Range");
    uint64_t first, last;
    if (range == NULL || !one_range(range, r->body_len, &first, &last) ||
        !if_range_holds(nori_http_request_header(req, "If-Range"), r))
        return NORI_OK;
    char cr[96];
    snprintf(cr, sizeof cr, "bytes %llu-%llu/%zu", (unsigned long long)first,
             (unsigned long long)last, r->body_len);
    int rc = nori_http_response_add_header(r, "Content-Range", cr);
    if (rc != NORI_OK)
        return rc;
    size_t n = (size_t)(last - first + 1);
    memmove(r->body, r->body + first, n);
    r->body_len = n;
    r->status = 206;
    return NORI_OK;
}

/* ------------------------------------------------------- range entries */

bool nori__http_range_key(const char *key, const nori_http_request *req,
                          const nori_http_response *resp, char out[NORI_MAX_KEY_LEN + 1])
{
    uint64_t first, last;
    const char *range = nori_http_request_header(req, "Range");
    if (strcmp(req->method, "GET") != 0 || range == NULL ||
        nori_http_request_header(req, "If-Range") != NULL ||
        !one_range(range, (uint64_t)1 << 62, &first, &last))
        return false;
    if (resp != NULL) {
        const char *cr = nori_http_response_header(resp, "Content-Range");
        const char *mt = resp->media_type;
        if (resp->status != 206 || cr == NULL || strncasecmp(cr, "bytes ", 6) != 0 ||
            (mt != NULL && strncasecmp(mt, "multipart/byteranges", 20) == 0))
            return false;
    }
    static const char hex[] = "0123456789ABCDEF";
    size_t n = (size_t)snprintf(out, NORI_MAX_KEY_LEN + 1, "%s:r=", key);
    if (n > NORI_MAX_KEY_LEN)
        return false;
    for (const char *p = range; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        bool esc = c == ':' || c == '%' || c == ',' || c == '=';
        if (n + (esc ? 3 : 1) > NORI_MAX_KEY_LEN)
            return false;
        if (esc) {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    return true;
}
