// SPDX-License-Identifier: MIT
/*
 * nori/fcgi.h - the FastCGI adapter of the response cache (libfcgi).
 *
 * Serves the application's routes (nori_http_route, see nori/http.h: the
 * same handlers and routes as the libmicrohttpd adapter) as a FastCGI
 * responder behind nginx, Apache (mod_proxy_fcgi) or lighttpd:
 *
 *     nori_fcgi_route routes[] = {
 *         {"/dashboard", dashboard, NULL, cache, NORI_HTTP_GET},
 *         {"/products", products, NULL, cache, NORI_HTTP_GET | NORI_HTTP_POST},
 *     };
 *     nori_fcgi_app app = {routes, 2, 0};
 *     nori_fcgi_options o;
 *     nori_fcgi_options_init(&o);
 *     o.address = "127.0.0.1:9000";  // or "/run/app.sock"; NULL: fd 0
 *     nori_fcgi_server *s;
 *     if (nori_fcgi_server_new(&app, &o, &s) == NORI_OK) {
 *         ... wait for a stop signal ...
 *         nori_fcgi_server_free(s);
 *     }
 *
 * and in nginx:  location / { include fastcgi_params; fastcgi_pass 127.0.0.1:9000; }
 *
 * What it does for the application (the rules of the libmicrohttpd adapter,
 * nori/mhd.h, on the FastCGI side):
 *  - The request: REQUEST_METHOD; the decoded path from SCRIPT_NAME +
 *    PATH_INFO, else DOCUMENT_URI, else REQUEST_URI up to '?' with its
 *    %XX escapes decoded (nginx's fastcgi_params send all three); the raw
 *    QUERY_STRING (else what follows '?' in REQUEST_URI); the headers from
 *    the HTTP_* parameters plus CONTENT_TYPE and CONTENT_LENGTH. A header is
 *    looked up by its HTTP name in any case ("Accept-Language" finds
 *    HTTP_ACCEPT_LANGUAGE: CGI maps '-' to '_', so "X-User" and "X_User"
 *    are one header here) and enumerated (nori_http_request_each_header) as
 *    "Accept-Language" in the order the web server sent them. The body is
 *    read from FCGI_STDIN, at most max_body bytes.
 *  - Refusals, before the handler and the cache (no X-Cache on them): no
 *    REQUEST_METHOD, a path that is empty, not absolute or decodes to a NUL
 *    byte, a CONTENT_LENGTH that is not a number, a body shorter than
 *    CONTENT_LENGTH: 400. No route: 404. A method the route does not
 *    declare: 405 with `Allow` (nori_http_response_not_allowed). A body over
 *    max_body: 413. The body of a refused request is read and dropped (up
 *    to max_body plus 1 MiB; past that the connection is closed after the
 *    answer).
 *  - The response, as CGI headers on FCGI_STDOUT: "Status: 200 OK", the
 *    media type as Content-Type, the response's headers, Content-Length,
 *    and `X-Cache: HIT|MISS|STALE|BYPASS` on every response of a route that
 *    has a cache. HEAD: the headers (Content-Length of the GET body; a
 *    handler that answers HEAD with no body and a Content-Length header,
 *    as a proxy relaying the origin's HEAD, announces that one) and no
 *    body. A 304 from the cache: no body, and Content-Length holding the
 *    200's body length (RFC 9110 8.6). Only statuses 200..599 are sent
 *    (anything else becomes 500). A header whose name is not an HTTP token,
 *    whose value holds a control byte (CR, LF, ...), or that the adapter
 *    writes itself (Status, Content-Length) is dropped from a handler's
 *    response; on a hit it makes the entry unsendable, and the request is
 *    served again as a miss (nori_http_cache_serve_again), which overwrites
 *    the entry. The web server reads these headers: nginx acts on
 *    X-Accel-Redirect and the other X-Accel-* headers a handler sets.
 *  - Limits of the protocol library: libfcgi keeps parameters as C
 *    strings, so a parameter value is seen up to its first NUL byte.
 *
 * The server (nori_fcgi_server_new): a listening socket it opens
 * ("HOST:PORT" or a unix socket path), a listening socket the caller opened
 * (nori_fcgi_listen before fork(), so that several processes share it), or
 * the socket a process manager passed as fd 0 (spawn-fcgi, fcgiwrap's
 * style, mod_fcgid: FCGI_LISTENSOCK_FILENO). The server makes that socket
 * non-blocking (its threads, and other processes, race for each
 * connection). A fixed number of threads serve one request at a time each
 * (libfcgi's FCGX_Accept_r on the connection). FCGI_KEEP_CONN is honoured
 * (nginx: `fastcgi_keep_conn on` with an upstream `keepalive`): an idle kept
 * connection waits in the server's epoll set, not on a thread, so a burst of
 * new connections is accepted however many are kept. A TCP connection from
 * an address not in FCGI_WEB_SERVER_ADDRS (libfcgi's comma-separated list,
 * read when the server starts) is closed unanswered; unix sockets are
 * guarded by their file mode. Every wait is bounded:
 *  - reading a request (parameters and body) must end within io_timeout_ms
 *    of its start, and writing the response likewise: past it the
 *    connection is shut down (a web server that stalls or trickles costs a
 *    thread for that long, never longer), counted in `timeouts`;
 *  - a kept connection idle for idle_timeout_ms is closed;
 *  - malformed records, a connection closed mid-request, a write to a web
 *    server that went away: the connection is closed, counted in `broken`,
 *    and the thread goes on (the worker threads block SIGPIPE: a dead peer
 *    gives a write error, never a signal);
 *  - the handler's own run time is the application's: the adapter does not
 *    interrupt it.
 *
 * Signals: libfcgi's FCGX_Init() installs handlers of its own for SIGTERM,
 * SIGUSR1 and SIGPIPE where they are at their default (a SIGTERM would then
 * no longer stop the process). The adapter calls it once, on the first
 * server or nori_fcgi_handle(), and puts the three dispositions back as
 * they were: the application's signal handling is its own.
 *
 * Thread safety: the app and its routes are only read (from every server
 * thread at once); they must stay valid and unchanged until
 * nori_fcgi_server_free() has returned. Servers are independent of each
 * other; each function below may be called from any thread.
 */
#ifndef NORI_FCGI_H
#define NORI_FCGI_H

#include "nori/http.h"

#include <fcgiapp.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One route: nori_http_route (nori/http.h), exactly as in nori/mhd.h. The
 * first route whose path matches wins; everything is borrowed. */
typedef nori_http_route nori_fcgi_route;

typedef struct {
    const nori_fcgi_route *routes; /* borrowed */
    size_t n_routes;
    size_t max_body; /* largest request body accepted, bytes; 0 = 1 MiB */
} nori_fcgi_app;

/*
 * Serves one request that the caller accepted with FCGX_Accept_r(): builds
 * the nori_http_request, reads the body, runs the route's handler through
 * its cache and writes the response to req->out. Does not finish the
 * request: the caller's next FCGX_Accept_r() or FCGX_Finish_r() does. For
 * applications that run their own FCGX_Accept_r loop; the reads and writes
 * are bounded only by what the caller set on the connection (the server
 * below bounds them). libfcgi needs FCGX_Init() before the caller's first
 * FCGX_Accept_r(); called directly, it leaves its signal handlers in place
 * (see "Signals"). Returns NORI_OK when a response was written (a
 * refusal such as 404 or 413 included), NORI_EBACKEND when the connection
 * failed while reading or writing (nothing more can be sent on it),
 * NORI_ENOMEM, or NORI_EINVAL (NULL arguments). Thread-safe for distinct
 * requests.
 */
NORI_EXPORT int nori_fcgi_handle(const nori_fcgi_app *app, FCGX_Request *req);

/* ------------------------------------------------------------------------ */
/* The server                                                               */
/* ------------------------------------------------------------------------ */

typedef struct {
    /* Where to listen: "HOST:PORT" ("127.0.0.1:9000", "[::1]:9000",
     * "localhost:9000"; port 1..65535) or a unix socket path (anything
     * containing '/'). NULL: serve listen_fd. Copied. */
    const char *address;
    /* With address NULL: a listening socket to serve (borrowed, never
     * closed; e.g. from nori_fcgi_listen() before fork()), or -1 (the
     * default): the FastCGI socket inherited as fd 0, refused (NORI_EINVAL)
     * when fd 0 is not a listening socket. */
    int listen_fd;
    size_t threads;          /* serving threads; 0 = 4 */
    int backlog;             /* listen() backlog of a socket it opens; 0 = 1024 */
    int64_t io_timeout_ms;   /* reading one request / writing one response; 0 = 10000 */
    int64_t idle_timeout_ms; /* a kept connection with no request; 0 = 60000 */
    unsigned socket_mode;    /* permissions of a unix socket it creates; 0 = 0660 */
} nori_fcgi_options;

/* Fills *o with the defaults: listen_fd -1, everything else 0 (see above). */
NORI_EXPORT void nori_fcgi_options_init(nori_fcgi_options *o);

/*
 * Opens a listening socket on `address` ("HOST:PORT" or a unix socket path,
 * as nori_fcgi_options.address) with the given backlog (<= 0: 1024) and
 * unix socket mode (0: 0660), close-on-exec. A unix socket path that exists
 * is replaced only when it is a socket nobody listens on (a stale one);
 * a live socket gives NORI_EBACKEND ("in use") and any other file
 * NORI_EINVAL: neither is touched. On success *fd is the socket (the
 * caller closes it, and unlinks a unix socket path when done). NORI_EINVAL
 * (malformed address, path too long, name that does not resolve),
 * NORI_EBACKEND (socket, bind or listen failed: the message names the
 * address and the reason), with *fd untouched.
 */
NORI_EXPORT int nori_fcgi_listen(const char *address, int backlog, unsigned socket_mode,
                                 int *fd);

/*
 * 1 when fd 0 is a listening stream socket (the process was started by a
 * FastCGI process manager: spawn-fcgi, a web server's own spawner), else 0.
 */
NORI_EXPORT int nori_fcgi_inherited(void);

typedef struct nori_fcgi_server nori_fcgi_server;

/*
 * Opens (or takes) the listening socket that *opts names and starts the
 * serving threads. The app is borrowed (see "Thread safety"); opts is
 * copied. NORI_OK with *out owned by the caller (release with
 * nori_fcgi_server_free), NORI_EINVAL (app or out NULL, a bad option, no
 * inherited socket), NORI_EBACKEND (the socket could not be opened),
 * NORI_ENOMEM; on failure nothing is left open and *out is untouched.
 */
NORI_EXPORT int nori_fcgi_server_new(const nori_fcgi_app *app, const nori_fcgi_options *opts,
                                     nori_fcgi_server **out);

/* The listening socket the server serves (for getsockname()). */
NORI_EXPORT int nori_fcgi_server_fd(const nori_fcgi_server *s);

/*
 * Stops the server: no new connection is accepted, requests being served
 * are finished (their handlers run to completion; their reads and writes
 * stay bounded by io_timeout_ms), kept connections are closed, the threads
 * are joined. Closes a socket the server opened and unlinks its unix socket
 * path; a listen_fd passed in stays open. NULL-safe. Must not be called from
 * a handler.
 */
NORI_EXPORT void nori_fcgi_server_free(nori_fcgi_server *s);

/* Counters since the server started (relaxed atomics, read individually). */
typedef struct {
    uint64_t connections;      /* connections accepted */
    uint64_t connections_open; /* connections open now (a gauge) */
    uint64_t requests;         /* requests answered (refusals included) */
    uint64_t refused;          /* of which answered 400, 404, 405 or 413 by the adapter */
    uint64_t broken;           /* connections closed on a protocol, read or write error */
    uint64_t timeouts;         /* connections shut down by io_timeout_ms */
    uint64_t accept_errors;    /* accept() failures other than a lost race */
} nori_fcgi_stats;

/* Copies the counters to *out. NULL arguments are ignored. Thread-safe. */
NORI_EXPORT void nori_fcgi_server_get_stats(const nori_fcgi_server *s, nori_fcgi_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* NORI_FCGI_H */
