// SPDX-License-Identifier: MIT
/*
 * A FastCGI client for the tests, written from the specification (records
 * built byte by byte), so that a test can play a web server that follows
 * the protocol or one that breaks it: malformed records, half requests,
 * stalls, a close mid-request. Loopback and unix sockets only.
 */
#ifndef NORI_TEST_FCGI_CLIENT_H
#define NORI_TEST_FCGI_CLIENT_H

#include <stddef.h>
#include <stdint.h>

enum {
    FCGI_T_BEGIN = 1,
    FCGI_T_ABORT = 2,
    FCGI_T_END = 3,
    FCGI_T_PARAMS = 4,
    FCGI_T_STDIN = 5,
    FCGI_T_STDOUT = 6,
    FCGI_T_STDERR = 7,
    FCGI_T_GET_VALUES = 9,
    FCGI_T_GET_VALUES_RESULT = 10,
};

/* A growing byte buffer of records to send. */
typedef struct {
    unsigned char *data;
    size_t len, cap;
} fcgi_buf;

void fcgi_buf_free(fcgi_buf *b);
void fcgi_put(fcgi_buf *b, const void *data, size_t len);
/* One record (content up to 65535 bytes, padded to 8). */
void fcgi_record(fcgi_buf *b, int type, int id, const void *content, size_t len);
void fcgi_begin(fcgi_buf *b, int id, int keep_conn);
/* PARAMS records for the NULL-terminated name, value, name, value... list,
 * then the empty PARAMS record. */
void fcgi_params(fcgi_buf *b, int id, const char *const *kv);
/* STDIN records holding data, then the empty STDIN record. */
void fcgi_stdin(fcgi_buf *b, int id, const void *data, size_t len);

/* Connects with 10 s send/receive timeouts. fd or -1. */
int fcgi_connect_unix(const char *path);
int fcgi_connect_tcp(int port, const char *source);
int fcgi_send(int fd, const fcgi_buf *b);

typedef struct {
    int status;        /* from the Status header; 200 when absent */
    char *head;        /* the CGI header block, NUL-terminated */
    unsigned char *body; /* the bytes after the header block (+ a NUL) */
    size_t body_len;
    int app_status, protocol_status; /* from FCGI_END_REQUEST */
} fcgi_response;

/* Reads records for request id until its FCGI_END_REQUEST: 0, or -1 when
 * the connection ended or timed out first. */
int fcgi_read_response(int fd, int id, fcgi_response *out);
void fcgi_response_free(fcgi_response *r);

/* The value of CGI response header `name` (any case) into buf, or NULL. */
const char *fcgi_header(const fcgi_response *r, const char *name, char *buf, size_t cap);

/* One request on fd: BEGIN (keep_conn as given), params, stdin (body may be
 * NULL), then the response. 0 or -1. */
int fcgi_request(int fd, int id, int keep_conn, const char *const *params, const void *body,
                 size_t body_len, fcgi_response *out);

/* Waits up to timeout_ms for the peer to close fd (read returns 0 or an
 * error, after discarding any data). 1 if it closed, 0 on timeout. */
int fcgi_wait_closed(int fd, int timeout_ms);

int64_t fcgi_now_ms(void);

#endif
