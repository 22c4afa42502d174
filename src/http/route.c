// SPDX-License-Identifier: MIT
/*
 * The methods a route serves (nori_http_route.methods), shared by every
 * adapter: the check an adapter makes before the handler and before the
 * cache, and the 405 answer with its Allow value. In the core rather than
 * in an adapter so that two adapters of one application refuse the same
 * requests with the same answer.
 *
 * Why adapters must refuse undeclared methods: the cache invalidates a
 * path after any 2xx/3xx answer to an unsafe method (RFC 9111 4.4), and a
 * GET-only handler usually answers every method with its page, so without
 * the check any client could empty any page with a POST.
 */
#include "error.h"
#include "nori/http.h"

#include <string.h>

/* In the order of the Allow value (RFC 9110 10.2.1 sets none; this is the
 * order of the method definitions in RFC 9110 9.3, PATCH after PUT). */
static const struct {
    unsigned bit;
    const char *name;
} methods[] = {
    {NORI_HTTP_GET, "GET"},       {NORI_HTTP_HEAD, "HEAD"},     {NORI_HTTP_POST, "POST"},
    {NORI_HTTP_PUT, "PUT"},       {NORI_HTTP_PATCH, "PATCH"},   {NORI_HTTP_DELETE, "DELETE"},
    {NORI_HTTP_OPTIONS, "OPTIONS"},
};

/* 0 means the safe default; GET brings HEAD with it (RFC 9110 9.3.2: HEAD
 * is GET without the body, and the cache serves HEAD from the GET entry). */
static unsigned effective(unsigned mask)
{
    mask &= NORI_HTTP_METHODS_ALL; /* reserved bits are ignored */
    if (mask == 0)
        mask = NORI_HTTP_GET;
    if (mask & NORI_HTTP_GET)
        mask |= NORI_HTTP_HEAD;
    return mask;
}

/* RFC 9110 5.6.2: a method is a token, one or more tchar. */
static int is_token(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s != '\0'; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("!#$%&'*+-.^_`|~", *s) != NULL))
            return 0;
    return 1;
}

int nori_http_method_allowed(unsigned mask, const char *method)
{
    if (method == NULL)
        return 0;
    if (mask & NORI_HTTP_ANY_METHOD)
        return is_token(method);
    unsigned m = effective(mask);
    /* Method names are case-sensitive (RFC 9110 9.1): "get" is not GET. */
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strcmp(method, methods[i].name) == 0)
            return (m & methods[i].bit) != 0;
    return 0;
}

int nori_http_allow_value(unsigned mask, char *out, size_t cap)
{
    if (out == NULL || cap == 0)
        return nori__fail(NORI_EINVAL, "allow_value: out is NULL or cap is 0");
    unsigned m = effective(mask);
    size_t len = 0;
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        if (!(m & methods[i].bit))
            continue;
        size_t n = strlen(methods[i].name) + (len ? 2 : 0);
        if (len + n + 1 > cap) {
            out[0] = '\0';
            return nori__fail(NORI_ETOOBIG, "allow_value: %zu bytes are not enough", cap);
        }
        if (len) {
            memcpy(out + len, ", ", 2);
            len += 2;
            n -= 2;
        }
        memcpy(out + len, methods[i].name, n);
        len += n;
    }
    out[len] = '\0';
    return NORI_OK;
}

int nori_http_response_not_allowed(nori_http_response *resp, unsigned mask)
{
    if (resp == NULL)
        return nori__fail(NORI_EINVAL, "response_not_allowed: resp is NULL");
    char allow[NORI_HTTP_ALLOW_MAX];
    int rc = nori_http_allow_value(mask, allow, sizeof allow);
    if (rc != NORI_OK)
        return rc;
    nori_http_response_clear(resp);
    static const char body[] = "method not allowed\n";
    resp->status = 405;
    if ((rc = nori_http_response_set_media_type(resp, "text/plain")) != NORI_OK ||
        (rc = nori_http_response_add_header(resp, "Allow", allow)) != NORI_OK ||
        (rc = nori_http_response_set_body(resp, body, sizeof body - 1)) != NORI_OK) {
        nori_http_response_clear(resp);
        return rc;
    }
    resp->origin = NORI_HTTP_BYPASS;
    return NORI_OK;
}
