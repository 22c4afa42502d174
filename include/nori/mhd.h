/*
 * nori/mhd.h - the libmicrohttpd adapter of the response cache.
 *
 * Wraps an application's handlers (nori_http_handler_fn, see nori/http.h) as
 * an MHD access handler, in two lines:
 *
 *     nori_mhd_route routes[] = {{"/dashboard", dashboard, NULL, cache}};
 *     nori_mhd_app app = {routes, 1, 0};
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
 *  - Adds `X-Cache: HIT` or `X-Cache: MISS` to GET responses of cached routes.
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

/* One route: requests whose decoded path equals `path` (NULL = any path) go
 * to handler(req, resp, ud), through `cache` (NULL = never cached). The
 * first matching route wins; no match is a 404. Everything is borrowed. */
typedef struct {
    const char *path;
    nori_http_handler_fn handler;
    void *ud;
    nori_http_cache *cache;
} nori_mhd_route;

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
