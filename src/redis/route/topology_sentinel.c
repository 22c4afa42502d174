// SPDX-License-Identifier: MIT
/*
 * The master through Sentinel: resolving it (sentinel.h) and following the
 * sentinels' announcements (sentinel_watch.h); see topology.h. Uses the
 * node registry (topology_registry.c); the routing core (topology.c) uses
 * this file, never the other way round.
 */
#include "redis/route/topology_registry.h"

#include "clock.h"
#include "error.h"
#include "redis/route/sentinel.h"

#include <stdlib.h>
#include <string.h>

/* The watch heard a switch announced (or may have missed one): the same
 * resolve as a failed call makes, the announcing sentinel asked first.
 * Followed when the master routed to is the announced one. */
static bool on_switch(void *ud, int sentinel, const char *host, int port)
{
    nori__redis_topo *t = ud;
    pthread_mutex_lock(&t->lock);
    if (sentinel >= 0)
        t->sentinel_first = sentinel;
    int rc = nori__topo_do_resolve(t);
    bool followed = rc == NORI_OK;
    if (followed && host != NULL) {
        const topo_node *m = nori__topo_node(t, (size_t)atomic_load(&t->master));
        followed = m->url.port == port && strcmp(m->url.host, host) == 0;
    }
    pthread_mutex_unlock(&t->lock);
    return followed;
}

int nori__topo_do_resolve(nori__redis_topo *t)
{
    char *host = NULL;
    int port = 0;
    int rc = nori__sentinel_resolve(t->target, &t->sentinel_first, &host, &port);
    if (rc != NORI_OK)
        return rc;
    int i = nori__topo_do_node_at(t, host, port);
    free(host);
    if (i < 0)
        return NORI_EBACKEND;
    int old = atomic_load(&t->master);
    if (old != i) {
        if (old >= 0)
            nori__topo_drain(&nori__topo_node(t, (size_t)old)->node);
        atomic_store(&t->master, i);
        if (old >= 0)
            nori__topo_notify_moved(t);
    }
    atomic_store(&t->last_refresh_ms, (long long)nori__now_ms());
    atomic_fetch_add(&t->refresh_gen, 1);
    /* The watch starts once there is a master to move away from; a forked
     * child inherits the parent's, whose thread it does not have. */
    if (t->watch != NULL && !nori__sentinel_watch_here(t->watch)) {
        nori__sentinel_watch_stop(t->watch); /* frees only, in the child */
        t->watch = NULL;
    }
    if (t->watch == NULL)
        rc = nori__sentinel_watch_start(t->target, on_switch, t, &t->watch);
    return rc;
}
