/*
 * The topology's state, shared by topology.c (routing, refresh, mode) and
 * topology_describe.c (what `noricache check` prints). Not for other files:
 * they use topology.h.
 */
#ifndef NORI_SRC_REDIS_TOPOLOGY_IMPL_H
#define NORI_SRC_REDIS_TOPOLOGY_IMPL_H

#include "redis/topology.h"

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
    nori__topo_moved_fn moved_fn; /* set before sharing (nori__topo_on_moved) */
    void *moved_ud;
};

/* Node i of the registry (i < nnodes). Lock-free. */
static inline topo_node *nori__topo_node(const nori__redis_topo *t, size_t i)
{
    return atomic_load_explicit(&t->nodes[i], memory_order_acquire);
}

#endif
