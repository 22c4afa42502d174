// SPDX-License-Identifier: MIT
/*
 * A small HTTP/1.1 client for the end-to-end tests, over plain sockets: it
 * keeps a connection open across requests (so keep-alive is checkable) and
 * hands back the raw status, headers and body bytes. Responses must carry
 * Content-Length (libmicrohttpd sends it for every buffer response).
 * Loopback only.
 */
#ifndef NORI_TEST_HTTP_CLIENT_H
#define NORI_TEST_HTTP_CLIENT_H

#include <stddef.h>

typedef struct {
    int status;
    char *head; /* status line and headers, NUL-terminated, CRLFs kept */
    char *body; /* body bytes plus a NUL; body_len excludes the NUL */
    size_t body_len;
} test_http_response;

/* Connects to 127.0.0.1:port with 10 s send/receive timeouts. fd or -1. */
int test_http_connect(int port);

/* The same from local address `source` (e.g. "127.0.0.2": the whole of
 * 127.0.0.0/8 is loopback on Linux), which a server counts as another
 * client address; NULL = the kernel's choice. fd or -1. */
int test_http_connect_from(int port, const char *source);

/*
 * Sends one request on fd and reads one response into *out (free with
 * test_http_response_free). extra_headers: "Name: value\r\n" lines or NULL.
 * A body (may be NULL) is sent with Content-Length. 0 on success, -1 on any
 * socket or parse error (with a message on stderr).
 */
int test_http_request(int fd, const char *method, const char *target,
                      const char *extra_headers, const char *body, size_t body_len,
                      test_http_response *out);

/* One request on a fresh connection, closed afterwards. */
int test_http_once(int port, const char *method, const char *target,
                   const char *extra_headers, const char *body, test_http_response *out);

/* The value of header `name` (case-insensitive) copied into buf[cap], or
 * NULL when absent. */
const char *test_http_header(const test_http_response *r, const char *name, char *buf,
                             size_t cap);

/*
 * Sends `len` raw bytes (a request written by hand: any request line,
 * headers, bytes) on a fresh connection and reads one response. 0 on
 * success, -1 when no response could be read (connection reset or closed,
 * timeout).
 */
int test_http_raw(int port, const char *raw, size_t len, test_http_response *out);

void test_http_response_free(test_http_response *r);

#endif
