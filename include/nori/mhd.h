// SPDX-License-Identifier: MIT
/*
 * nori/mhd.h - the libmicrohttpd adapter of the response cache.
 *
 * Wraps an application's handlers (nori_http_handler_fn, see nori/http.h) as
 * an MHD access handler, in two lines:
 *
 *     nori_mhd_route routes[] = {
 *         {"/dashboard", dashboard, NULL, cache, NORI_HTTP_GET},
 *         {"/products", products, NULL, cache, NORI_HTTP_GET | NORI_HTTP_POST},
 *     };
 *     nori_mhd_app app = {routes, 2, 0};
 *     d = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD, 8080, NULL, NULL,
 *                          nori_mhd_handler, &app, NORI_MHD_OPTIONS(&app),
 *                          MHD_OPTION_END);
 *
 * What it does for the application:
 *  - Queues the response on the second call of the access handler (or after
 *    the upload is complete), never on the first: a response queued on the
 *    first call makes MHD answer `Connection: close` and loses keep-alive.
 *  - Collects a request body (POST/PUT upload_data chunks) up to max_body
 *    bytes and passes it in nori_http_request.body (larger: 413).
 *  - Passes the raw query string (captured by the URI log callback installed
 *    by NORI_MHD_OPTIONS, since MHD itself only offers decoded arguments).
 *  - Sends the response body without copying it: the malloc()ed body block of
 *    the nori_http_response (on a memory-backend hit, the very block the
 *    backend returned) is handed to MHD, which frees it when done.
 *  - Answers a method the route does not declare (nori_http_route.methods)
 *    with 405 and `Allow` (nori_http_response_not_allowed), before the
 *    handler and before the cache, so it can neither run a GET-only handler
 *    nor invalidate its entries.
 *  - Adds `X-Cache: HIT`, `MISS` or `BYPASS` (the cache was not consulted:
 *    not GET/HEAD, credentials, key opt-out) to every response of a route
 *    that has a cache and that the handler or the cache answered (not to
 *    the adapter's own 404, 405 and 413).
 *  - HEAD: MHD sends the headers of the response (Content-Length of the
 *    body) without the body; the cache serves HEAD from the GET entry. A
 *    handler's HEAD answer with no body and a `Content-Length` header (a
 *    proxy relaying an origin's HEAD) announces that length instead of 0,
 *    as the 304 below does.
 *  - A 304 from the cache carries `Content-Length: <the 200's body length>`
 *    once and no body (RFC 9110 8.6; libmicrohttpd by itself would write
 *    0): a callback response of that size, which MHD announces and never
 *    reads. Clients that read a Content-Length body after a 304 against RFC
 *    9112 6.3 (wrk's http_parser) wait for it; curl, browsers, Python, Go
 *    and Node do not.
 *  - A hit that MHD cannot send (it refuses a header of the stored entry) is
 *    served again as a miss through nori_http_cache_serve_again(), which
 *    overwrites the entry; only statuses 200..599 are sent (anything else
 *    becomes 500), so a stored 1xx can never desynchronise a keep-alive
 *    connection.
 *
 * Connection limits (what an application should set; nori-demo does):
 * libmicrohttpd's defaults let one client hold every connection with
 * half-sent requests (slowloris: 1020 partial connections starved
 * nori-demo), and its timeout is an idle timeout, reset by every byte.
 *    MHD_OPTION_PER_IP_CONNECTION_LIMIT  e.g. 256 (nori-demo); the main
 *        defence: one address cannot take the whole server. Behind a reverse
 *        proxy every client has the proxy's address: enforce it there.
 *    MHD_OPTION_CONNECTION_LIMIT  below the process's file descriptor limit
 *        (nori-demo: 1000).
 *    MHD_OPTION_CONNECTION_TIMEOUT  seconds a connection may stay idle
 *        (nori-demo: 10; the default 0 never closes one).
 *    MHD_OPTION_CONNECTION_MEMORY_LIMIT  bounds the header buffer per
 *        connection (default 32 KiB).
 * A client trickling one byte every few seconds is bounded by the per-address
 * limit, not by the timeout; MHD offers no whole-request deadline.
 *
 * Thread safety: the adapter keeps no global state; the nori_mhd_app and its
 * routes are only read, so any MHD threading model works. They must stay
 * valid and unchanged until MHD_stop_daemon() has returned.
 */
#ifndef NORI_MHD_H
#define NORI_MHD_H

#include "nori/http.h"

#include <microhttpd.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One route: nori_http_route (nori/http.h): path, handler, ud, cache and the
 * methods it serves (0 = GET and HEAD). The first route whose path matches
 * wins; no match is a 404; a method the route does not declare is a 405
 * with `Allow`, answered before the handler and the cache (the request's
 * body is read and dropped). Everything is borrowed. */
typedef nori_http_route nori_mhd_route;

typedef struct {
    const nori_mhd_route *routes; /* borrowed */
    size_t n_routes;
    size_t max_body; /* largest request body accepted, bytes; 0 = 1 MiB */
} nori_mhd_app;

/*
 * The MHD_AccessHandlerCallback to pass to MHD_start_daemon with the
 * nori_mhd_app as its cls. Requires NORI_MHD_OPTIONS(app) among the daemon
 * options. Without them requests are still answered, but never through the
 * cache (without the raw query string, /p?page=1 and /p?page=2 could not be
 * told apart), req.query is "", and the state of a request whose client
 * disconnects mid-upload leaks.
 */
NORI_EXPORT enum MHD_Result nori_mhd_handler(void *cls, struct MHD_Connection *connection,
                                             const char *url, const char *method,
                                             const char *version, const char *upload_data,
                                             size_t *upload_data_size, void **req_cls);

/* MHD_OPTION_URI_LOG_CALLBACK: allocates the per-request state and keeps the
 * raw query string. cls is the nori_mhd_app. */
NORI_EXPORT void *nori_mhd_uri_log(void *cls, const char *uri, struct MHD_Connection *con);

/* MHD_OPTION_NOTIFY_COMPLETED: frees the per-request state if the handler
 * has not already (aborted requests). */
NORI_EXPORT void nori_mhd_completed(void *cls, struct MHD_Connection *connection,
                                    void **req_cls, enum MHD_RequestTerminationCode toe);

/* The daemon options the adapter needs, to put in MHD_start_daemon's list. */
#define NORI_MHD_OPTIONS(app)                                                     \
    MHD_OPTION_URI_LOG_CALLBACK, nori_mhd_uri_log, (void *)(app),                \
        MHD_OPTION_NOTIFY_COMPLETED, nori_mhd_completed, (void *)(app)

#ifdef __cplusplus
}
#endif

#endif /* NORI_MHD_H */
