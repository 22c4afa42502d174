// SPDX-License-Identifier: MIT
/*
 * A scripted fake Redis server for the tests: a thread on a free loopback
 * port that answers each command with the next reply queued for it, for what
 * a real server cannot produce on demand (MOVED, ASK, TRYAGAIN, CLUSTERDOWN,
 * a slot nobody serves, a node that stalls or hangs up). Include after the
 * cmocka headers.
 *
 * Replies are raw RESP text ("+OK\r\n", "$-1\r\n", "-MOVED 3999 127.0.0.1:7001\r\n").
 * A command is matched by its name, case-insensitively ("GET"), or by its
 * first two words ("CLUSTER SLOTS"). Queued replies are used once each, in
 * order; then the command's default (if set); then "-ERR fake: unscripted".
 * Two special replies: NORI_FAKE_STALL reads on but never answers that
 * connection again (a hung node), NORI_FAKE_CLOSE closes it.
 */
#ifndef NORI_TEST_FAKE_REDIS_H
#define NORI_TEST_FAKE_REDIS_H

#define NORI_FAKE_STALL "<stall>"
#define NORI_FAKE_CLOSE "<close>"

typedef struct nori_fake_redis nori_fake_redis;

/* Starts the server thread; fails the test on error. */
nori_fake_redis *nori_fake_redis_start(void);

int nori_fake_redis_port(const nori_fake_redis *f);

/* Queues one reply for cmd (copied). Thread-safe. */
void nori_fake_redis_reply(nori_fake_redis *f, const char *cmd, const char *resp);

/* The reply for cmd once its queue is empty (copied; replaces an earlier one). */
void nori_fake_redis_default(nori_fake_redis *f, const char *cmd, const char *resp);

/* How many commands named cmd were received ("GET"; "CLUSTER SLOTS",
 * "SENTINEL GET-MASTER-ADDR-BY-NAME", "SCRIPT LOAD" with two words). */
int nori_fake_redis_count(nori_fake_redis *f, const char *cmd);

/* Every command received so far, names only, '|'-separated ("ASKING|GET").
 * malloc'd, the caller frees. */
char *nori_fake_redis_log(nori_fake_redis *f);

/* Stops the thread, closes every connection, frees f. NULL-safe. */
void nori_fake_redis_stop(nori_fake_redis *f);

#endif
