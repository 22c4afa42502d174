// SPDX-License-Identifier: MIT
/*
 * Real multi-node Redis set-ups for the integration tests, started on free
 * loopback ports in fresh temporary directories and stopped by pid (never
 * by name). Include after the cmocka headers. Start failures fail the test.
 *
 *  - nori_test_cluster: a Redis Cluster of 3 masters and 3 replicas
 *    (--cluster-node-timeout 1000), created with
 *    `redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes`;
 *    start returns once every node says cluster_state:ok and every replica's
 *    link to its master is up.
 *  - nori_test_sentinel: a master, one replica and 3 redis-sentinel
 *    processes monitoring it as "mymaster" (quorum 2, down-after 1000 ms);
 *    start returns once every sentinel knows the master, the replica and
 *    the two other sentinels. TILT mode is only triggered by a clock jump
 *    of an hour (SENTINEL DEBUG tilt-trigger), so that a stalled test
 *    machine does not stop the failovers the tests wait for.
 */
#ifndef NORI_TEST_REDIS_CLUSTER_H
#define NORI_TEST_REDIS_CLUSTER_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct nori_test_node {
    pid_t pid;   /* 0 when stopped */
    int port;
    int bus_port; /* cluster bus (cluster-port), cluster nodes only */
    char *dir;   /* owned */
} nori_test_node;

#define NORI_TEST_CLUSTER_NODES 6

typedef struct nori_test_cluster {
    nori_test_node node[NORI_TEST_CLUSTER_NODES];
    char url[128];   /* redis://127.0.0.1:<port of node 0> */
} nori_test_cluster;

/* Starts and creates the cluster (a few seconds). malloc'd; stop with
 * nori_test_cluster_stop. */
nori_test_cluster *nori_test_cluster_start(void);

/* Kills every node still running, removes the directories, frees c. NULL-safe. */
void nori_test_cluster_stop(nori_test_cluster *c);

/* Sends sig to node i and reaps it (SIGKILL for a crash, SIGTERM for a stop). */
void nori_test_node_kill(nori_test_node *n, int sig);

/* A raw hiredis connection (a redisContext *) to 127.0.0.1:port, AUTHed with
 * password when given (may be NULL); NULL when it cannot be made. */
void *nori_test_connect_port(int port, const char *password);

/* A raw hiredis connection to node i (a redisContext *), NULL when it is down. */
void *nori_test_node_connect(const nori_test_node *n);

/* Index of the node that currently masters `slot` (asked of any live
 * node), or -1. */
int nori_test_cluster_slot_master(const nori_test_cluster *c, unsigned slot);

/* True when node i currently says it is a master (ROLE). */
bool nori_test_node_is_master(const nori_test_node *n);

/* Waits (at most timeout_ms) until every running node reports
 * cluster_state:ok; returns whether it did. */
bool nori_test_cluster_wait_ok(const nori_test_cluster *c, int timeout_ms);

/* Moves `slots` slots from node `from` to node `to` (both masters) with
 * `redis-cli --cluster reshard`, bounded by 120 s; returns its exit status. */
int nori_test_cluster_reshard(const nori_test_cluster *c, int from, int to, int slots);

typedef struct nori_test_sentinel {
    nori_test_node master;       /* the first master; after a failover see nori_test_sentinel_master */
    nori_test_node replica;
    nori_test_node sentinel[3];
    char *password;              /* owned or NULL: requirepass of master and replica */
    char url[512];               /* redis+sentinel://[:pw@]127.0.0.1:p1,...:p3/mymaster */
} nori_test_sentinel;

/* password may be NULL. malloc'd; stop with nori_test_sentinel_stop. */
nori_test_sentinel *nori_test_sentinel_start(const char *password);

void nori_test_sentinel_stop(nori_test_sentinel *s);

/* The port the sentinels currently name as master (asked of the first live
 * sentinel), or 0. */
int nori_test_sentinel_master_port(const nori_test_sentinel *s);

/* Milliseconds on CLOCK_MONOTONIC, for bounded waits. */
long long nori_test_now_ms(void);

/* Starts a stopped node again on its port and directory, as the set-up
 * started it: a cluster node (it reads its nodes.conf back), or a plain
 * server with `password` (may be NULL) and, when replica_of > 0, as a
 * replica of that port. Returns once it answers PING (10 s at most), false
 * (its log printed) when it does not. */
bool nori_test_node_restart(nori_test_node *n, bool cluster, const char *password,
                            int replica_of);

#endif
