// SPDX-License-Identifier: MIT
/*
 * Shared by the two halves of the FastCGI adapter: the request code
 * (adapter.c: parameters, body, response) and the server (server.c:
 * sockets, threads, deadlines). Not installed.
 */
#ifndef NORI_SRC_FCGI_INTERNAL_H
#define NORI_SRC_FCGI_INTERNAL_H

#include "nori/fcgi.h"

/*
 * What the server learns about one request from nori__fcgi_serve(), and the
 * hooks through which it bounds the phases that touch the connection.
 */
typedef struct {
    /* Called when the handler starts (the connection is left alone while
     * it runs: no deadline) and when the response starts to be written
     * (a new deadline). NULL = nothing to do (nori_fcgi_handle). */
    void (*handler_starts)(void *ud);
    void (*writing_starts)(void *ud);
    void *ud;
    /* Out: */
    int refused;     /* answered 400/404/405/413 by the adapter */
    int must_close;  /* the connection cannot carry another request: FCGI_STDIN was
                        not read to its end, or reading or writing it failed */
} nori__fcgi_serve_ctx;

/* nori_fcgi_handle() with the server's hooks (ctx may not be NULL). Same
 * return codes. */
int nori__fcgi_serve(const nori_fcgi_app *app, FCGX_Request *req, nori__fcgi_serve_ctx *ctx);

/* libfcgi's FCGX_Init(), once per process. NORI_OK or NORI_EBACKEND. */
int nori__fcgi_init(void);

#endif
