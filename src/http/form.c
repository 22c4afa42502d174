// SPDX-License-Identifier: MIT
/*
 * Small request helpers for handlers: header lookup through the adapter's
 * callback, and application/x-www-form-urlencoded field lookup (query
 * strings and POST form bodies).
 */
#include "error.h"
#include "hex.h"
#include "nori/http.h"

#include <string.h>

const char *nori_http_request_header(const nori_http_request *req, const char *name)
{
    if (req == NULL || req->header == NULL || name == NULL)
        return NULL;
    return req->header(req->header_ud, name);
}

int nori_http_request_each_header(const nori_http_request *req, nori_http_header_visit_fn visit,
                                  void *visit_ud)
{
    if (req == NULL || visit == NULL)
        return NORI_EINVAL;
    if (req->each_header == NULL)
        return 0;
    return req->each_header(req->header_ud, visit, visit_ud);
}

/* Decodes s[0..len) into out[cap]; returns the decoded length or -1 when it
 * does not fit. A '%' not followed by two hex digits is kept literally, as
 * browsers and most servers do. */
static long form_decode(const char *s, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%' && i + 2 < len && nori__hex_digit(s[i + 1]) >= 0 &&
                   nori__hex_digit(s[i + 2]) >= 0) {
            c = (char)(nori__hex_digit(s[i + 1]) * 16 + nori__hex_digit(s[i + 2]));
            i += 2;
        }
        if (o + 1 >= cap)
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return (long)o;
}

int nori_http_form_value(const char *s, size_t len, const char *name, char *out,
                         size_t cap)
{
    if ((s == NULL && len > 0) || name == NULL || out == NULL || cap == 0)
        return nori__fail(NORI_EINVAL, "bad arguments to nori_http_form_value");
    out[0] = '\0';
    char dname[256];
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && s[end] != '&')
            end++;
        size_t eq = i;
        while (eq < end && s[eq] != '=')
            eq++;
        long n = form_decode(s + i, eq - i, dname, sizeof dname);
        if (n >= 0 && strcmp(dname, name) == 0) {
            size_t vstart = eq < end ? eq + 1 : end;
            if (form_decode(s + vstart, end - vstart, out, cap) < 0) {
                out[0] = '\0';
                return nori__fail(NORI_ETOOBIG, "form field %s does not fit in %zu bytes",
                                  name, cap);
            }
            return NORI_OK;
        }
        i = end + 1;
    }
    return NORI_MISS;
}
