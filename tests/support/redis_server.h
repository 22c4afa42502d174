// SPDX-License-Identifier: MIT
/*
 * A private redis-server for the integration tests: started by the test on a
 * free loopback port in a fresh temporary directory, stopped by its pid.
 * Never touches any other Redis on the machine. Include after the cmocka
 * headers. If redis-server cannot be started the calling test fails (the
 * tests are about Redis: skipping would hide a missing dependency).
 */
#ifndef NORI_TEST_REDIS_SERVER_H
#define NORI_TEST_REDIS_SERVER_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct nori_test_redis {
    pid_t pid;        /* 0 when stopped */
    int port;
    char *dir;        /* owned: temp dir holding the server's files */
    char *password;   /* owned copy, NULL for no --requirepass */
    char url[256];    /* redis://[:password@]127.0.0.1:port */
    char socket_path[4200]; /* the server also listens on this unix socket */
} nori_test_redis;

/*
 * Starts a server on a free port; `password` (may be NULL) becomes
 * --requirepass. Waits until it answers PING. Fails the test on error.
 * The returned struct is malloc'd; release with nori_test_redis_stop.
 */
nori_test_redis *nori_test_redis_start(const char *password);

/* SIGTERM to the server and waitpid; the struct and directory stay, so that
 * nori_test_redis_restart can bring it back on the same port. */
void nori_test_redis_kill(nori_test_redis *r);

/* Starts the server again on the same port (after nori_test_redis_kill). */
void nori_test_redis_restart(nori_test_redis *r);

/* Kills (if running), removes the directory, frees r. NULL-safe. */
void nori_test_redis_stop(nori_test_redis *r);

/* A raw hiredis connection to the server (authenticated when needed), for
 * checks that look under the backend; returns a redisContext *. */
void *nori_test_redis_connect(const nori_test_redis *r);

#endif
