// SPDX-License-Identifier: MIT
/*
 * What the topology found, as text for `noricache check`; see topology.h.
 */
#include "redis/route/topology.h"
#include "redis/route/topology_registry.h"

#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A growing text buffer for describe. */
typedef struct text {
    char *s;
    size_t len, cap;
    bool oom;
} text;

static void add(text *b, const char *fmt, ...) NORI__PRINTF(2, 3);
static void add(text *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if (b->s != NULL && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap + (size_t)n + 1) * 2;
        char *s = realloc(b->s, cap);
        if (s == NULL) {
            b->oom = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

char *nori__topo_describe(nori__redis_topo *t, int *rc)
{
    *rc = nori__topo_ready(t);
    if (*rc != NORI_OK)
        return NULL;
    int mode = nori__topo_mode(t);
    if (mode == NORI_TOPO_CLUSTER || mode == NORI_TOPO_SENTINEL) {
        *rc = nori__topo_refresh(t); /* a fresh map or master, not a cached one */
        if (*rc != NORI_OK)
            return NULL;
    }
    text b = {0};
    pthread_mutex_lock(&t->lock);
    if (mode == NORI_TOPO_SINGLE) {
        add(&b, "mode: standalone\nserver: %s\n", nori__topo_node(t, (size_t)atomic_load(&t->master))->url.display);
    } else if (mode == NORI_TOPO_SENTINEL) {
        const topo_node *m = nori__topo_node(t, (size_t)atomic_load(&t->master));
        const nori__redis_addr *s = &t->target->addrs[t->sentinel_first];
        add(&b, "mode: sentinel\nmaster name: %s\nmaster: %s:%d (named by sentinel %s:%d, "
                "checked with ROLE)\nsentinels:",
            t->target->master_name, m->url.host, m->url.port, s->host, s->port);
        for (size_t i = 0; i < t->target->naddrs; i++)
            add(&b, " %s:%d", t->target->addrs[i].host, t->target->addrs[i].port);
        add(&b, "\n");
    } else {
        const nori__slot_map *m = &t->map;
        size_t masters = 0;
        for (size_t i = 0; i < m->nnodes; i++)
            masters += m->nodes[i].is_master;
        add(&b, "mode: cluster\nnodes: %zu (%zu masters, %zu replicas), slots served: %zu of %d\n",
            m->nnodes, masters, m->nnodes - masters, m->served, NORI_CLUSTER_SLOTS);
        for (size_t i = 0; i < m->nnodes; i++) {
            const nori__cluster_node *n = &m->nodes[i];
            if (!n->is_master)
                continue;
            add(&b, "master %s:%d id %.40s slots", n->host, n->port, n->id);
            for (size_t r = 0; r < m->nranges; r++)
                if (m->ranges[r].master == (int)i)
                    add(&b, " %d-%d", m->ranges[r].start, m->ranges[r].end);
            add(&b, "\n");
            for (size_t j = 0; j < m->nnodes; j++)
                if (!m->nodes[j].is_master && m->nodes[j].master == (int)i)
                    add(&b, "  replica %s:%d id %.40s\n", m->nodes[j].host, m->nodes[j].port,
                        m->nodes[j].id);
        }
    }
    pthread_mutex_unlock(&t->lock);
    if (b.oom) {
        free(b.s);
        *rc = nori__fail(NORI_ENOMEM, "out of memory describing the redis topology");
        return NULL;
    }
    return b.s;
}
