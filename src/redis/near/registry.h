// SPDX-License-Identifier: MIT
/*
 * The near cache's invalidation listeners, one per Redis node (listener.h),
 * for a backend that may talk to many: the nodes of a Redis Cluster, or the
 * successive masters a Sentinel set-up names.
 *
 * A node's listener is started the first time the near cache reads from
 * that node (or at once, for a node known up front: the one server), not
 * for every node of the slot map: replicas and nodes never read cost
 * nothing, and the registry needs no hook on slot map changes to grow. The
 * price is that the first read of a node is not kept (its listener is not
 * subscribed yet); the next ones are.
 *
 * Listeners are not stopped when their node stops serving keys (a failover,
 * a new sentinel master): the topology flushes the store then (backend.c,
 * NORI__NEAR_FLUSH_TOPOLOGY), the routing check of client.c keeps nothing
 * read from a node that no longer serves the key, and a node coming back is
 * simply tracked again. A dead node's listener retries its connection every
 * 100 ms (bounded by the connect timeout), like the one-server listener;
 * through Sentinel, a demoted master's listener asks it every 2 s whether it
 * is a master again (ROLE), and is not proved meanwhile.
 * Like the topology's node registry, this one only grows, bounded by
 * NORI_CLUSTER_MAX_NODES.
 *
 * Thread-safety: lookups are lock-free and may run from any thread;
 * nori__near_registry_free must run alone.
 */
#ifndef NORI_SRC_REDIS_NEAR_REGISTRY_H
#define NORI_SRC_REDIS_NEAR_REGISTRY_H

#include "redis/wire/conn.h"
#include "redis/near/listener.h"
#include "redis/near/near.h"

typedef struct nori__near_registry nori__near_registry;

/* Called from a listener's thread when its node is found not to be a
 * master (Sentinel only: see check_role in listener.h). */
typedef void (*nori__near_not_master_fn)(void *ud, const nori__redis_node *node);

/* An empty registry for store `n` (borrowed: outlives the registry);
 * key_prefix is copied. check_role: every listener checks that its node is
 * a master (Sentinel), calling on_not_master(ud, node) when it is not.
 * NORI_OK with *out owned by the caller (nori__near_registry_free), or
 * NORI_ENOMEM. */
int nori__near_registry_new(nori__near *n, const char *key_prefix, bool check_role,
                            nori__near_not_master_fn on_not_master, void *ud,
                            nori__near_registry **out);

/* Stops every listener (each withdraws its proof) and frees r. NULL-safe. */
void nori__near_registry_free(nori__near_registry *r);

/*
 * The listener of `node` (borrowed: its URL must outlive the registry),
 * started now when the node has none. NULL when it cannot be started (out
 * of memory, too many nodes): the caller then keeps nothing read from the
 * node (correct, only slower).
 */
nori__near_listener *nori__near_registry_listener(nori__near_registry *r,
                                                  const nori__redis_node *node);

/* Listeners started so far, and their counters summed. */
size_t nori__near_registry_count(nori__near_registry *r);
void nori__near_registry_stats(nori__near_registry *r, nori__near_listener_stats *out);

#endif
