// SPDX-License-Identifier: MIT
/*
 * nori_http_response: the response a handler fills and an adapter sends, and
 * the rules that decide whether it may be stored (nori/http.h, "Semantics").
 */
#include "error.h"
#include "http/internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

void nori_http_response_init(nori_http_response *r)
{
    memset(r, 0, sizeof *r);
    r->status = 200;
    r->origin = NORI_HTTP_BYPASS;
}

void nori_http_response_clear(nori_http_response *r)
{
    if (r == NULL)
        return;
    free(r->media_type);
    for (size_t i = 0; i < r->n_headers; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    free(r->body);
    nori_http_response_init(r);
}

int nori_http_response_set_media_type(nori_http_response *r, const char *media_type)
{
    char *copy = NULL;
    if (r == NULL)
        return nori__fail(NORI_EINVAL, "response is NULL");
    if (media_type != NULL && (copy = strdup(media_type)) == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory copying the media type");
    free(r->media_type);
    r->media_type = copy;
    return NORI_OK;
}

int nori_http_response_add_header(nori_http_response *r, const char *name,
                                  const char *value)
{
    if (r == NULL || name == NULL || name[0] == '\0' || value == NULL)
        return nori__fail(NORI_EINVAL, "header name must be non-empty and value non-NULL");
    if (r->n_headers == r->cap_headers) {
        size_t cap = r->cap_headers ? r->cap_headers * 2 : 4;
        nori_http_header *h = realloc(r->headers, cap * sizeof *h);
        if (h == NULL)
            return nori__fail(NORI_ENOMEM, "out of memory adding header %s", name);
        r->headers = h;
        r->cap_headers = cap;
    }
    char *n = strdup(name), *v = strdup(value);
    if (n == NULL || v == NULL) {
        free(n);
        free(v);
        return nori__fail(NORI_ENOMEM, "out of memory adding header %s", name);
    }
    r->headers[r->n_headers].name = n;
    r->headers[r->n_headers].value = v;
    r->n_headers++;
    return NORI_OK;
}

const char *nori_http_response_header(const nori_http_response *r, const char *name)
{
    if (r == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

int nori_http_response_set_body(nori_http_response *r, const void *data, size_t len)
{
    if (r == NULL || (data == NULL && len > 0))
        return nori__fail(NORI_EINVAL, "body data is NULL with a non-zero length");
    /* One byte more so a text body is also a C string, and so that an empty
     * body is still a block the adapter can hand over. */
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory copying a %zu-byte body", len);
    if (len > 0)
        memcpy(copy, data, len);
    copy[len] = '\0';
    nori_http_response_take_body(r, copy, len);
    return NORI_OK;
}

void nori_http_response_take_body(nori_http_response *r, char *data, size_t len)
{
    if (r == NULL)
        return;
    free(r->body);
    r->body = data;
    r->body_len = data == NULL ? 0 : len;
}

/* true when the comma-separated list `v` holds `token` (case-insensitive),
 * ignoring parameters: "private", "no-store", "private=\"x\"" all count. */
static int has_token(const char *v, const char *token)
{
    size_t tlen = strlen(token);
    const char *p = v;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *start = p;
        while (*p != '\0' && *p != ',' && *p != '=' && *p != ' ' && *p != '\t')
            p++;
        if ((size_t)(p - start) == tlen && strncasecmp(start, token, tlen) == 0)
            return 1;
        /* Skip the rest of this element (a parameter value may be quoted and
         * contain commas: private="a, b"). */
        int quoted = 0;
        while (*p != '\0' && (quoted || *p != ',')) {
            if (*p == '"')
                quoted = !quoted;
            p++;
        }
    }
    return 0;
}

const char *nori__http_member_end(const char *p)
{
    bool quoted = false;
    for (; *p != '\0' && (quoted || *p != ','); p++) {
        if (*p == '\\' && quoted && p[1] != '\0')
            p++;
        else if (*p == '"')
            quoted = !quoted;
    }
    return p;
}

int nori__http_has_token(const char *list, const char *token)
{
    return has_token(list, token);
}

int nori_http_response_storable(const nori_http_response *r)
{
    /* 204/205 carry no content to reuse; a 206 is one range of one request,
     * replayed to a full GET it would truncate the resource. */
    if (r == NULL || r->status < 200 || r->status > 299 || r->status == 204 ||
        r->status == 205 || r->status == 206)
        return 0;
    for (size_t i = 0; i < r->n_headers; i++) {
        const nori_http_header *h = &r->headers[i];
        if (strcasecmp(h->name, "Set-Cookie") == 0)
            return 0;
        /* no-cache: the origin wants every reuse revalidated; this cache
         * does not revalidate, so it must not reuse at all. */
        if (strcasecmp(h->name, "Cache-Control") == 0 &&
            (has_token(h->value, "private") || has_token(h->value, "no-store") ||
             has_token(h->value, "no-cache")))
            return 0;
        if (strcasecmp(h->name, "Vary") == 0 && has_token(h->value, "*"))
            return 0;
    }
    return 1;
}

const char *nori_http_origin_name(nori_http_origin origin)
{
    switch (origin) {
    case NORI_HTTP_HIT:
        return "HIT";
    case NORI_HTTP_MISS:
        return "MISS";
    case NORI_HTTP_STALE:
        return "STALE";
    default:
        return "BYPASS";
    }
}
