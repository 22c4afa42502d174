// SPDX-License-Identifier: MIT
/*
 * The topology's state and its node registry (topology_registry.c), shared
 * by the topology's files, each above the ones it uses:
 *   topology_describe.c  what `noricache check` prints
 *   topology.c           routing, refresh, mode
 *   topology_sentinel.c  the master through Sentinel, and following the
 *                        sentinels' announcements
 *   topology_registry.c  the node registry
 * Not for other files: they use topology.h.
 */
#ifndef NORI_SRC_REDIS_ROUTE_TOPOLOGY_REGISTRY_H
#define NORI_SRC_REDIS_ROUTE_TOPOLOGY_REGISTRY_H

#include "redis/route/sentinel_watch.h"
#include "redis/route/topology_types.h"
#include "redis/route/url_topology.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct topo_node {
    nori__redis_url url;   /* owned: the template's settings with this node's address */
    nori__redis_node node; /* its pool */
} topo_node;

struct nori__redis_topo {
    const nori__redis_target *target; /* borrowed */
    const nori_backend *backend;      /* borrowed: the owner, for its value limit */
    _Atomic int mode;
    pthread_mutex_t lock; /* serialises registry growth, refreshes, map, sentinel state */
    _Atomic(topo_node *) nodes[NORI_CLUSTER_MAX_NODES];
    _Atomic size_t nnodes;
    _Atomic uint16_t owner[NORI_CLUSTER_SLOTS]; /* cluster: registry index or NORI_SLOT_UNSERVED */
    _Atomic int master;                        /* standalone, sentinel: registry index or -1 */
    _Atomic long long last_refresh_ms;
    _Atomic unsigned long refresh_gen; /* successful refreshes so far */
    nori__slot_map map;  /* under lock: the last CLUSTER SLOTS, for masters() and describe */
    bool have_map;       /* under lock */
    int sentinel_first;  /* under lock: the sentinel to ask first */
    /* Under lock: through Sentinel, the thread that follows the sentinels'
     * announcements, started with the first master resolved. */
    nori__sentinel_watch *watch;
    nori__topo_moved_fn moved_fn; /* set before sharing (nori__topo_on_moved) */
    void *moved_ud;
};

/* Node i of the registry (i < nnodes). Lock-free. */
static inline topo_node *nori__topo_node(const nori__redis_topo *t, size_t i)
{
    return atomic_load_explicit(&t->nodes[i], memory_order_acquire);
}

/* ---- topology_registry.c ---- */

/* Registry index of host:port (host NULL: the template's own address), or
 * -1. Lock-free. */
int nori__topo_find(const nori__redis_topo *t, const char *host, int port);

/* Index of host:port in the registry (host NULL: the template's own
 * address), adding it when new. Called with t->lock held. -1 on error. */
int nori__topo_do_node_at(nori__redis_topo *t, const char *host, int port);

/* The same, taking t->lock only when the node is new. */
int nori__topo_node_at(nori__redis_topo *t, const char *host, int port);

/* Closes a node's idle connections (the master changed, or it failed):
 * the next borrow connects afresh. Connections lent out are not touched. */
void nori__topo_drain(nori__redis_node *n);

/* Keys changed node: tell the near cache (topology.h). */
void nori__topo_notify_moved(const nori__redis_topo *t);

/* ---- topology_sentinel.c ---- */

/* Through Sentinel: asks the sentinels (t->sentinel_first first) and makes
 * the master they name, checked with ROLE, the one routed to; on a new
 * master drops the old one's idle connections. Starts the sentinel watch
 * with the first master resolved (again in a forked child). Called with
 * t->lock held. NORI_OK, or an error from nori__sentinel_resolve (or
 * NORI_ENOMEM: no watch thread). */
int nori__topo_do_resolve(nori__redis_topo *t);

#endif
