// SPDX-License-Identifier: MIT
/*
 * A private nginx for the tests (Debian's nginx-light): started by the test
 * as its child (`nginx -p DIR -c DIR/nginx.conf -g 'daemon off; ...'`) in a
 * fresh temporary directory that holds its configuration, logs, pid file
 * and temp paths, on a free loopback port, as a FastCGI front for an
 * upstream the test names; stopped by its pid (SIGTERM, then SIGKILL of
 * the master and its workers). Include after the cmocka headers. If nginx
 * cannot be started the calling test fails: run scripts/setup.sh.
 */
#ifndef NORI_TEST_NGINX_H
#define NORI_TEST_NGINX_H

#include <sys/types.h>

typedef struct {
    pid_t pid; /* the master; 0 when stopped */
    int port;  /* http://127.0.0.1:port */
    char *dir; /* owned */
} nori_test_nginx;

/*
 * Starts nginx with one server on 127.0.0.1:<free port> whose location /
 * passes every request to FastCGI `upstream` ("unix:/path" or
 * "127.0.0.1:9000") with Debian's fastcgi_params, keeping `keepalive`
 * idle upstream connections per worker (0: a connection per request).
 * Waits (bounded) until it answers. Fails the test on error.
 */
nori_test_nginx *nori_test_nginx_start(const char *upstream, int keepalive);

/* Prints nginx's error log to stderr (for failures). */
void nori_test_nginx_print_log(const nori_test_nginx *n);

/* Stops nginx (bounded), removes its directory, frees n. NULL-safe. */
void nori_test_nginx_stop(nori_test_nginx *n);

#endif
