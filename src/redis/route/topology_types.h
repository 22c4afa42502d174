// SPDX-License-Identifier: MIT
/*
 * The vocabulary of routing: the topology's modes, its handle, one attempt
 * of an operation and the body run in it. Shared by topology.h (the
 * operations, for the rest of the backend) and topology_registry.h (the
 * topology's state, for its own files), which both include it, so that the
 * topology's lower files need not include the operations' header.
 */
#ifndef NORI_SRC_REDIS_ROUTE_TOPOLOGY_TYPES_H
#define NORI_SRC_REDIS_ROUTE_TOPOLOGY_TYPES_H

#include "redis/route/cluster_slots.h"
#include "redis/wire/conn.h"

#include <stdbool.h>

/* What a topology routes over (nori__topo_mode): not found out yet (a
 * redis:// URL before its first redirection or whole-keyspace call), one
 * server, a Redis Cluster, the master that sentinels name. */
enum { NORI_TOPO_UNKNOWN = 0, NORI_TOPO_SINGLE, NORI_TOPO_CLUSTER, NORI_TOPO_SENTINEL };

/* Returned by a body when the server redirected the command (see
 * nori__topo_redirected); never reaches the caller of nori__topo_call. */
#define NORI__REDIRECTED 100

typedef struct nori__redis_topo nori__redis_topo;

/* One attempt of an operation: the connection borrowed for it, and what
 * the server redirected to (filled by nori__topo_redirected). */
typedef struct nori__topo_attempt {
    nori__redis_conn conn;
    nori__redirect redirect;
    bool readonly; /* the server answered READONLY (sentinel: it is a replica now) */
} nori__topo_attempt;

/* The body of an operation, run on the key's node. Returns a NORI_* code, or
 * NORI__REDIRECTED after nori__topo_redirected returned true. */
typedef int (*nori__topo_body)(nori__topo_attempt *a, void *ctx);

/* Told that keys changed node (nori__topo_on_moved). */
typedef void (*nori__topo_moved_fn)(void *ud);

#endif
