// SPDX-License-Identifier: MIT
/*
 * Commands on one Redis server: the primitive every Redis operation is built
 * on (the single-node backend today; cluster and sentinel routing reuse it
 * per node).
 *
 * A nori__redis_node is one server: its URL settings (timeouts, AUTH, db),
 * its connection pool and its circuit breaker. A nori__redis_conn is one
 * connection borrowed from a node's pool for the duration of one operation,
 * (writes never raise SIGPIPE: see io.h). Usage:
 *
 *     nori__redis_conn conn;
 *     int rc = nori__redis_conn_open(node, &conn);
 *     if (rc != NORI_OK) return rc;
 *     redisReply *r;
 *     nori__redis_conn_expect_values(&conn, 1);   (GET answers a cache value)
 *     rc = nori__redis_conn_command(&conn, argc, argv, lens, &r, "GET", key);
 *     ... use r, freeReplyObject(r) ...
 *     nori__redis_conn_close(&conn);
 *
 * or, for one command whose reply the caller only inspects,
 * nori__redis_node_call(), which does all of the above.
 *
 * Bounds (io.h): each round trip (one command, or one pipeline) is sent and
 * fully answered within the URL's timeout_ms, measured from its start, or
 * fails with NORI_EBACKEND "timed out". A reply may hold strings up to 1 MiB
 * (64 MiB in all) unless the caller announced values with
 * nori__redis_conn_expect_values(): then each string may be as long as the
 * backend's value limit, and a longer one fails with NORI_ETOOBIG.
 * After any failure without a reply the connection is dead and close frees
 * it. An error after the command was sent means its outcome is unknown: the
 * server may have executed it.
 *
 * Circuit breaker (breaker.h): open makes a call fail fast with
 * NORI_EBACKEND "circuit open" while the node's breaker is open; every round
 * trip reports its outcome to it.
 *
 * Errors are reported through nori__fail with the server's URL (password
 * masked), the operation `op` and the `key` (first 64 bytes) in the message.
 */
#ifndef NORI_SRC_REDIS_WIRE_CONN_H
#define NORI_SRC_REDIS_WIRE_CONN_H

#include "backend.h"
#include "redis/wire/breaker.h"
#include "redis/wire/pool.h"
#include "redis/wire/url.h"

#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nori__redis_node {
    const nori__redis_url *url; /* borrowed: outlives the node */
    const nori_backend *owner;  /* borrowed: its value limit bounds value replies */
    nori__redis_pool pool;
    nori__redis_breaker breaker;
    /* Set by the topology on cluster and Sentinel nodes: a refused
     * connection counts towards the breaker there (breaker.h). */
    _Atomic bool refusals_count;
} nori__redis_node;

/* Prepares the node (no connection is made). The breaker's thresholds come
 * from url (circuit_failures, circuit_cooldown_ms). NORI_OK or NORI_ENOMEM. */
int nori__redis_node_init(nori__redis_node *n, const nori__redis_url *url,
                          const nori_backend *owner);
/* Closes the idle connections; no connection may be borrowed. */
void nori__redis_node_destroy(nori__redis_node *n);

/* Adds the node's breaker state and counters to *out (circuit_state: the
 * highest of the nodes', so "open" shows when any node is open). */
void nori__redis_node_stats(nori__redis_node *n, nori_backend_stats *out);

typedef struct nori__redis_conn {
    nori__redis_node *node;
    redisContext *c;             /* owned by this borrow until close */
    /* Cleared by the caller when the connection may be left in a state the
     * next user must not inherit (WATCH, MULTI, a SCAN cut short); an I/O
     * error also keeps it out of the pool (c->err). */
    bool reusable;
    bool probe;    /* this borrow is the breaker's half-open probe */
    bool decided;  /* the probe's outcome was reported */
    size_t values; /* set by expect_values for the next round trip */
    /* The commands of the round trip in progress when a WAIT follows them
     * (wait_replicas), to judge its reply; borrowed, NULL otherwise. */
    const struct nori__redis_cmd *wait_cmds;
} nori__redis_conn;

/* Borrows a connection of node n (connecting when none is idle). NORI_OK,
 * NORI_ENOMEM or NORI_EBACKEND (also "circuit open"); on failure there is
 * nothing to close. */
int nori__redis_conn_open(nori__redis_node *n, nori__redis_conn *conn);

/* Gives the connection back to the pool (or frees it when it is not
 * reusable or saw an error). */
void nori__redis_conn_close(nori__redis_conn *conn);

/* The next round trip (command or pipeline) answers up to `n` cache values:
 * each string may be as long as the backend's value limit (longer:
 * NORI_ETOOBIG), n of them in all. Applies to that round trip only. */
void nori__redis_conn_expect_values(nori__redis_conn *conn, size_t n);

/*
 * Sends one command and reads its reply. NORI_OK with *reply set (owned by
 * the caller: freeReplyObject), which may be a server error reply
 * (REDIS_REPLY_ERROR) for the caller to judge; or NORI_EBACKEND /
 * NORI_ETOOBIG / NORI_ENOMEM with *reply NULL when no (acceptable) reply
 * came: the connection is then dead and close frees it. argv/lens as for
 * redisCommandArgv (lens NULL: strlen).
 */
int nori__redis_conn_command(nori__redis_conn *conn, int argc, const char **argv,
                             const size_t *lens, redisReply **reply, const char *op,
                             const char *key);

/* One command of a pipeline: argv/lens as for redisCommandArgv. */
typedef struct nori__redis_cmd {
    int argc;
    const char **argv;
    const size_t *lens; /* NULL: strlen of each argument */
} nori__redis_cmd;

/*
 * Sends n commands in one write and reads their n replies: one round trip,
 * one deadline. NORI_OK with replies[0..n) all set (owned by the caller:
 * freeReplyObject each; any may be an error reply); or an error as for
 * nori__redis_conn_command with replies[0..n) all NULL and nothing to free.
 */
int nori__redis_conn_pipeline(nori__redis_conn *conn, size_t n, const nori__redis_cmd *cmds,
                              redisReply **replies, const char *op, const char *key);

/*
 * The two halves of nori__redis_conn_pipeline, for a caller that sends to
 * several nodes before reading any reply, so that they work in parallel
 * (bulk.c): send queues and writes n commands, recv reads their n replies
 * (n > 0), both by the one deadline_ms (nori__real_ms() time base)
 * given by the caller. expect_values, if any, is called before send. After
 * a failed send the connection is dead: do not recv, close it. Errors and
 * ownership of the replies as for nori__redis_conn_pipeline; the breaker
 * hears the outcome of the pair (a failed send, or recv).
 */
int nori__redis_conn_send(nori__redis_conn *conn, size_t n, const nori__redis_cmd *cmds,
                          int64_t deadline_ms, const char *op, const char *key);
int nori__redis_conn_recv(nori__redis_conn *conn, size_t n, redisReply **replies,
                          int64_t deadline_ms, const char *op, const char *key);

/*
 * One command on a connection borrowed for it alone: open, command, close.
 * NORI_OK with *reply owned by the caller (possibly an error reply), or an
 * error with *reply NULL. `values` as for expect_values (0: none).
 */
int nori__redis_node_call(nori__redis_node *n, int argc, const char **argv, const size_t *lens,
                          size_t values, redisReply **reply, const char *op, const char *key);

/* True when the last write of this thread (since its last conn_open) failed
 * only because fewer replicas than wait_replicas acknowledged it: the write
 * was applied and the connection is intact (its tracking too). */
bool nori__redis_conn_wait_fell_short(void);

/* Reports an unexpected reply r (an error reply, with the server's text, or
 * a wrong type) of `op` on `key`: returns NORI_EBACKEND. */
int nori__redis_reply_fail(const nori__redis_node *n, const redisReply *r, const char *op,
                           const char *key);

#endif
