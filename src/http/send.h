// SPDX-License-Identifier: MIT
/*
 * What every adapter decides the same way when it sends a response of the
 * response cache, whatever its transport (libmicrohttpd, FastCGI): which
 * route a path goes to, which status may go on the wire, and the length a
 * bodiless answer announces. Static inline, so that each adapter library
 * carries its own copy and none needs a symbol of another (an application
 * may link both adapters, shared or static).
 */
#ifndef NORI_SRC_HTTP_SEND_H
#define NORI_SRC_HTTP_SEND_H

#include "nori/http.h"

#include <stdint.h>
#include <string.h>

/* The first route whose path is `path` (a NULL route path matches any),
 * or NULL: the adapter answers 404. */
static inline const nori_http_route *nori__send_route(const nori_http_route *routes, size_t n,
                                                      const char *path)
{
    for (size_t i = 0; i < n; i++)
        if (routes[i].path == NULL || strcmp(routes[i].path, path) == 0)
            return &routes[i];
    return NULL;
}

/* The status to send: 200..599 as is, anything else 500. A 1xx would make
 * an HTTP/1.1 client read the next response as this one's. */
static inline int nori__send_status(const nori_http_response *r)
{
    return r->status >= 200 && r->status <= 599 ? r->status : 500;
}

/*
 * The length a bodiless answer announces in its Content-Length, from the
 * Content-Length header of r; -1 when r has none or is not such an answer.
 * A 304 must carry the 200's (RFC 9110 8.6), which the response cache puts
 * there. A HEAD answered by the handler with no body but a Content-Length
 * (a proxy relaying the origin's HEAD) announces that length, as a GET
 * would get it (RFC 9110 9.3.2), where libmicrohttpd alone would say 0.
 * head: the request is a HEAD.
 */
static inline int64_t nori__send_announced_length(const nori_http_response *r, int head)
{
    if (r->status != 304 && !(head && r->body_len == 0))
        return -1;
    const char *v = nori_http_response_header(r, "Content-Length");
    if (v == NULL || *v < '0' || *v > '9' || strlen(v) > 18)
        return -1;
    int64_t n = 0;
    for (; *v >= '0' && *v <= '9'; v++)
        n = n * 10 + (*v - '0');
    return *v == '\0' ? n : -1;
}

#endif
