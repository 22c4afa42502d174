// SPDX-License-Identifier: MIT
/*
 * The topology's node registry: every server seen (seeds, the nodes of a
 * cluster map, the masters the sentinels named), each with its URL and
 * connection pool; see topology.h for why it only grows. Below both the
 * routing core (topology.c) and the master through Sentinel
 * (topology_sentinel.c), which use it.
 */
#include "redis/route/topology_registry.h"

#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * A copy of the template URL for host:port, with its own display string
 * (never a password). host NULL: the template's own address (also unix://).
 */
static int url_for(const nori__redis_url *tpl, const char *host, int port, nori__redis_url *out)
{
    *out = *tpl;
    out->host = out->path = out->user = out->password = out->display = NULL;
    bool ok = true;
    if (host == NULL) {
        out->host = tpl->host != NULL ? strdup(tpl->host) : NULL;
        out->path = tpl->path != NULL ? strdup(tpl->path) : NULL;
        out->display = strdup(tpl->display);
        ok = (tpl->host == NULL || out->host != NULL) && (tpl->path == NULL || out->path != NULL);
    } else {
        out->is_unix = false;
        out->path = NULL;
        out->host = strdup(host);
        out->port = port;
        char display[400];
        bool v6 = strchr(host, ':') != NULL;
        int n = snprintf(display, sizeof display, "redis://%s%s%s%s%s:%d", tpl->user ? tpl->user : "",
                         tpl->password ? ":***@" : "", v6 ? "[" : "", host, v6 ? "]" : "", port);
        if (tpl->db != 0 && n > 0 && (size_t)n < sizeof display)
            snprintf(display + n, sizeof display - (size_t)n, "/%d", tpl->db);
        out->display = strdup(display);
        ok = out->host != NULL;
    }
    out->user = tpl->user != NULL ? strdup(tpl->user) : NULL;
    out->password = tpl->password != NULL ? strdup(tpl->password) : NULL;
    ok = ok && out->display != NULL && (tpl->user == NULL || out->user != NULL) &&
         (tpl->password == NULL || out->password != NULL);
    if (!ok) {
        nori__redis_url_free(out);
        return nori__fail(NORI_ENOMEM, "out of memory adding a redis node");
    }
    return NORI_OK;
}

int nori__topo_find(const nori__redis_topo *t, const char *host, int port)
{
    size_t n = atomic_load_explicit(&t->nnodes, memory_order_acquire);
    for (size_t i = 0; i < n; i++) {
        const topo_node *tn = nori__topo_node(t, i);
        if (host == NULL) {
            if (i == 0 && t->target->node.is_unix)
                return 0;
            if (!t->target->node.is_unix && tn->url.port == t->target->node.port &&
                strcmp(tn->url.host, t->target->node.host) == 0)
                return (int)i;
        } else if (!tn->url.is_unix && tn->url.port == port && strcmp(tn->url.host, host) == 0) {
            return (int)i;
        }
    }
    return -1;
}

int nori__topo_do_node_at(nori__redis_topo *t, const char *host, int port)
{
    int i = nori__topo_find(t, host, port);
    if (i >= 0)
        return i;
    size_t n = atomic_load_explicit(&t->nnodes, memory_order_relaxed);
    if (n >= NORI_CLUSTER_MAX_NODES) {
        nori__fail(NORI_EBACKEND, "redis %s: more than %d nodes seen, refusing %s:%d",
                   t->target->display, NORI_CLUSTER_MAX_NODES, host ? host : "?", port);
        return -1;
    }
    topo_node *tn = calloc(1, sizeof *tn);
    if (tn == NULL) {
        nori__fail(NORI_ENOMEM, "out of memory adding a redis node");
        return -1;
    }
    if (url_for(&t->target->node, host, port, &tn->url) != NORI_OK) {
        free(tn);
        return -1;
    }
    if (nori__redis_node_init(&tn->node, &tn->url, t->backend) != NORI_OK) {
        nori__redis_url_free(&tn->url);
        free(tn);
        return -1;
    }
    int mode = atomic_load_explicit(&t->mode, memory_order_acquire);
    atomic_init(&tn->node.refusals_count, mode == NORI_TOPO_CLUSTER || mode == NORI_TOPO_SENTINEL);
    /* Through Sentinel a node serves only while it is the master: its
     * connections confirm it (pool.h). */
    tn->node.pool.check_role = mode == NORI_TOPO_SENTINEL;
    atomic_store_explicit(&t->nodes[n], tn, memory_order_release);
    atomic_store_explicit(&t->nnodes, n + 1, memory_order_release);
    return (int)n;
}

int nori__topo_node_at(nori__redis_topo *t, const char *host, int port)
{
    int i = nori__topo_find(t, host, port);
    if (i >= 0)
        return i;
    pthread_mutex_lock(&t->lock);
    i = nori__topo_do_node_at(t, host, port);
    pthread_mutex_unlock(&t->lock);
    return i;
}

void nori__topo_drain(nori__redis_node *n)
{
    nori__redis_pool *p = &n->pool;
    redisContext *stale[NORI_REDIS_MAX_POOL_SIZE];
    pthread_mutex_lock(&p->lock);
    int ns = p->nidle;
    memcpy(stale, p->idle, (size_t)ns * sizeof *stale);
    p->nidle = 0;
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < ns; i++)
        redisFree(stale[i]);
}

void nori__topo_notify_moved(const nori__redis_topo *t)
{
    if (t->moved_fn != NULL)
        t->moved_fn(t->moved_ud);
}
