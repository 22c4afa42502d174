// SPDX-License-Identifier: MIT
/*
 * Fixtures of the cluster suites.
 *
 *  - A real cluster (test_cluster.c, test_cluster_bulk.c): one Redis Cluster
 *    of 3 masters + 3 replicas for the whole program (redis_cluster.h) and a
 *    backend on it, started by cluster_group_setup and stopped by
 *    cluster_group_teardown; and the looks under the backend both suites
 *    take (a node's keys, an INFO field, who masters a slot).
 *  - Scripted fake nodes (test_cluster_fake.c, test_cluster_bulk.c): servers
 *    of fake_redis.h that say cluster_enabled:1 and serve a slot map.
 *
 * Backend keys are written "cache:" + key on the wire. Include after the
 * cmocka headers. Failures fail the test; every wait is bounded.
 */
#ifndef NORI_TEST_CLUSTER_FIXTURE_H
#define NORI_TEST_CLUSTER_FIXTURE_H

#include "fake_redis.h"
#include "nori/cache.h"
#include "redis_cluster.h"

#include <hiredis/hiredis.h>

/* ---- a real cluster ---- */

extern nori_test_cluster *cluster; /* the program's cluster, between the group's set-up and
                                      teardown */
extern nori_backend *backend;      /* a backend on it (cluster->url) */

int cluster_group_setup(void **state);
int cluster_group_teardown(void **state);

/* A raw connection to node i (the caller's to redisFree). */
redisContext *cluster_node_conn(int i);

/* Keys matching pattern on node i, counted with SCAN. */
long cluster_count_keys(int i, const char *pattern);

/* A numeric field of an INFO section of node i ("field:123"); for
 * commandstats the field is e.g. "cmdstat_get:calls=" (0 when absent). */
long long cluster_info_field(int i, const char *section, const char *field);

/* The master node indices, in node order, into out[0..3); returns 3. */
int cluster_masters(int *out);

/* owner[slot] = the index of the node that masters it (CLUSTER SLOTS of
 * node 0), for every slot (owner has NORI_CLUSTER_SLOTS entries). */
void cluster_slot_owners(int *owner);

/* The slot of backend key `key` ("cache:" + key). */
unsigned cluster_wire_slot(const char *key);

/* The node index that masters backend key `key`, by owner[] above. */
int cluster_key_owner(const int *owner, const char *key);

/* ---- scripted fake nodes ---- */

#define FAKE_CLUSTER_INFO "$17\r\ncluster_enabled:1\r\n"

/* A fake cluster node whose map gives slots first..last to itself (INFO,
 * CLUSTER SLOTS and ASKING answered). */
nori_fake_redis *fake_cluster_node(int first, int last);

/* A backend on fake node f: "redis://127.0.0.1:<port>" + opts ("" or
 * "?timeout_ms=200"...). */
nori_backend *fake_cluster_backend(const nori_fake_redis *f, const char *opts);

#endif
