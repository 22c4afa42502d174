// SPDX-License-Identifier: MIT
/*
 * A scripted, hostile "Redis server" for the tests: a thread that listens on
 * a free loopback port and answers every command it receives with the same
 * bytes, sent in one go or trickled one byte at a time, then keeps the
 * connection open (stalls) until the client closes it or the test stops the
 * server. It plays what a real server cannot be made to do on demand: a
 * reply that trickles, "*2147483647\r\n", a 300 MB bulk header, a value over
 * the client's limit, silence. Every wait in it is bounded; stop joins the
 * thread. Include after the cmocka headers.
 */
#ifndef NORI_TEST_HOSTILE_SERVER_H
#define NORI_TEST_HOSTILE_SERVER_H

#include <stdatomic.h>
#include <stddef.h>

typedef struct nori_test_hostile nori_test_hostile;

/*
 * Starts the server. Each chunk of bytes received from a client counts as a
 * command and is answered with reply[0..len) (len 0: never answered, the
 * server only reads: a stall), one byte every `byte_interval_ms` ms
 * (0: all at once). Fails the test on error.
 */
nori_test_hostile *nori_test_hostile_start(const void *reply, size_t len, int byte_interval_ms);

/* The loopback port it listens on. */
int nori_test_hostile_port(const nori_test_hostile *h);

/* Bytes of replies written so far, and connections accepted so far. */
size_t nori_test_hostile_bytes_sent(const nori_test_hostile *h);
int nori_test_hostile_connections(const nori_test_hostile *h);

/* Stops the thread, closes every socket, frees h. NULL-safe. */
void nori_test_hostile_stop(nori_test_hostile *h);

#endif
