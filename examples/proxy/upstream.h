// SPDX-License-Identifier: MIT
/*
 * The origin side of nori-proxy: one HTTP exchange with the origin through
 * libcurl, as a nori_http_handler_fn, so that the response cache calls it on
 * a miss (and on every request it does not store: other methods, bypasses).
 *
 * What goes upstream: the request's method, raw path and query, its body,
 * and every request header except the hop-by-hop ones (Connection and the
 * fields it names, Keep-Alive, TE, Transfer-Encoding, Upgrade, Proxy-*)
 * and those the transport rewrites (Content-Length: recomputed from the
 * body; Expect: the 100-continue was answered by libmicrohttpd already).
 * Host: the origin's (from the origin URL), the client's in
 * X-Forwarded-Host; or the client's own with preserve_host.
 *
 * What comes back: the status (any, 1xx interim responses skipped), every
 * response header but the hop-by-hop ones and Content-Length (libmicrohttpd
 * writes the body's length itself; a HEAD keeps it, see nori/mhd.h),
 * Content-Type as the media type, and the body byte for byte: no redirect
 * is followed, no content coding is undone.
 *
 * Failures are answers, never errors of the handler: an origin that cannot
 * be reached or breaks the exchange is 502 Bad Gateway, one that does not
 * answer within the bounds is 504 Gateway Timeout, a body over
 * max_response_bytes is 502. The cache stores none of them (5xx).
 *
 * Threads: the handler may run on any number of threads at once. Each
 * exchange takes a curl easy handle from a pool (up to 64 idle ones are
 * kept, each with its kept-alive connections to the origin) and gives it
 * back, so a connection is reused by whichever thread comes next; DNS
 * answers are shared through a curl share object.
 */
#ifndef NORI_PROXY_UPSTREAM_H
#define NORI_PROXY_UPSTREAM_H

#include "nori/http.h"

#include <stddef.h>

typedef struct {
    const char *origin;      /* http:// or https:// URL, optionally with a base path */
    long connect_timeout_ms; /* TCP (and TLS) connect bound; > 0 */
    long timeout_ms;         /* the whole exchange, connect included; > 0 */
    size_t max_response_bytes; /* larger origin bodies are answered 502 */
    int preserve_host;       /* forward the client's Host instead of the origin's */
} proxy_upstream_config;

typedef struct proxy_upstream proxy_upstream;

/* Validates cfg (the origin URL: scheme, host, no query or fragment) and
 * sets up libcurl. 0, or -1 with a message on stderr. cfg->origin is
 * copied. Call once, before any thread uses the handler. */
int proxy_upstream_new(const proxy_upstream_config *cfg, proxy_upstream **out);

/* Frees u and its pooled handles. No handler call may be running.
 * NULL-safe. */
void proxy_upstream_free(proxy_upstream *u);

/* The nori_http_handler_fn: ud is the proxy_upstream. Returns NORI_OK (the
 * origin's answer, or 502/504), or NORI_ENOMEM. */
int proxy_upstream_handler(const nori_http_request *req, nori_http_response *resp, void *ud);

/* The Host value sent upstream (the origin's authority). Borrowed from u. */
const char *proxy_upstream_origin_host(const proxy_upstream *u);

#endif
