// SPDX-License-Identifier: MIT
/*
 * The Redis set-up a test program runs its cases on, chosen by the
 * environment, so that one suite runs unchanged on one server, on a Redis
 * Cluster and through Sentinel (issue 13, Tests):
 *
 *   NORI_TEST_TOPOLOGY=server   (default, also when unset or empty) one
 *                               private redis-server (redis_server.h)
 *   NORI_TEST_TOPOLOGY=cluster  3 masters + 3 replicas (redis_cluster.h)
 *   NORI_TEST_TOPOLOGY=sentinel master + replica + 3 sentinels, with a
 *                               password on master and replica
 *
 * Any other value fails the test: a typo must not quietly test one server.
 * Include after the cmocka headers. Start failures fail the test.
 */
#ifndef NORI_TEST_REDIS_TOPOLOGY_H
#define NORI_TEST_REDIS_TOPOLOGY_H

#include <stdbool.h>

#include "redis_cluster.h"
#include "redis_server.h"

typedef enum {
    NORI_TEST_TOPOLOGY_SERVER,
    NORI_TEST_TOPOLOGY_CLUSTER,
    NORI_TEST_TOPOLOGY_SENTINEL,
} nori_test_topology_kind;

typedef struct nori_test_topology {
    nori_test_topology_kind kind;
    const char *name;             /* "server", "cluster" or "sentinel" (static) */
    nori_test_redis *server;      /* owned; kind SERVER only */
    nori_test_cluster *cluster;   /* owned; kind CLUSTER only */
    nori_test_sentinel *sentinel; /* owned; kind SENTINEL only */
    char url[512];                /* the REDIS_URL a backend is given */
} nori_test_topology;

/* The kind NORI_TEST_TOPOLOGY names; fails the test on an unknown value. */
nori_test_topology_kind nori_test_topology_kind_from_env(void);

/* Starts the set-up NORI_TEST_TOPOLOGY names (a cluster or a sentinel set-up
 * takes a few seconds: start one per program, not per case). malloc'd;
 * release with nori_test_topology_stop. */
nori_test_topology *nori_test_topology_start(void);

/* Stops every process of the set-up by pid, removes its directories, frees
 * t. NULL-safe. */
void nori_test_topology_stop(nori_test_topology *t);

/*
 * A raw hiredis connection (a redisContext *, the caller's to redisFree),
 * authenticated when needed, for the checks that look under the backend:
 * on one server, the server; on a cluster, the master that currently owns
 * the slot of `key` (the full Redis key, e.g. "cache:user:42"; NULL means
 * any master); through Sentinel, the master the sentinels name now. Fails
 * the test when there is no such node.
 */
void *nori_test_topology_connect(const nori_test_topology *t, const char *key);

/* Raw connections to every master (one on a server or through Sentinel,
 * three on the cluster), stored in out[0..n-1]; returns n. Each is the
 * caller's to redisFree. Fails the test when a master is unreachable. */
int nori_test_topology_masters(const nori_test_topology *t, void *out[], int max);

/*
 * Stops every data node (the server; all six cluster nodes; master and
 * replica of the sentinel set-up; the sentinels keep running), so that no
 * Redis command can succeed, and nori_test_topology_restart brings them back
 * on the same ports with their roles (data is lost: nothing is persisted).
 * Restart waits until the set-up serves again (cluster_state:ok on every
 * node; the sentinels name the master), bounded by 20 s, and fails the test
 * otherwise. Valid only while no failover has changed the roles.
 */
void nori_test_topology_kill(nori_test_topology *t);
void nori_test_topology_restart(nori_test_topology *t);

#endif
