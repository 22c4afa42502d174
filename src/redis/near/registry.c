// SPDX-License-Identifier: MIT
/*
 * The near cache's per-node listeners (see registry.h).
 *
 * A fixed array of (node, listener) pairs published with release stores and
 * a count, so that the read path's lookup takes no lock; starting a listener
 * takes the mutex, which also makes two threads that miss at once start
 * only one.
 */
#include "redis/near/registry.h"

#include "error.h"
#include "redis/route/cluster_slots.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct near_slot {
    const nori__redis_node *node;
    nori__near_listener *listener;
    struct nori__near_registry *registry;
} near_slot;

struct nori__near_registry {
    nori__near *store; /* borrowed */
    char *prefix;
    bool check_role;
    nori__near_not_master_fn on_not_master;
    void *ud;
    pthread_mutex_t lock; /* serialises starts */
    _Atomic(near_slot *) slots[NORI_CLUSTER_MAX_NODES];
    _Atomic size_t n;
};

int nori__near_registry_new(nori__near *n, const char *key_prefix, bool check_role,
                            nori__near_not_master_fn on_not_master, void *ud,
                            nori__near_registry **out)
{
    nori__near_registry *r = calloc(1, sizeof *r);
    if (r == NULL || (r->prefix = strdup(key_prefix)) == NULL) {
        free(r);
        return nori__fail(NORI_ENOMEM, "near cache: out of memory for its listener registry");
    }
    r->store = n;
    r->check_role = check_role;
    r->on_not_master = on_not_master;
    r->ud = ud;
    pthread_mutex_init(&r->lock, NULL);
    for (size_t i = 0; i < NORI_CLUSTER_MAX_NODES; i++)
        atomic_init(&r->slots[i], NULL);
    atomic_init(&r->n, 0);
    *out = r;
    return NORI_OK;
}

void nori__near_registry_free(nori__near_registry *r)
{
    if (r == NULL)
        return;
    size_t n = atomic_load(&r->n);
    for (size_t i = 0; i < n; i++) {
        near_slot *s = atomic_load(&r->slots[i]);
        nori__near_listener_stop(s->listener);
        free(s);
    }
    pthread_mutex_destroy(&r->lock);
    free(r->prefix);
    free(r);
}

/* A listener's on_not_master: names its node to the registry's owner. */
static void slot_not_master(void *ud)
{
    near_slot *s = ud;
    if (s->registry->on_not_master != NULL)
        s->registry->on_not_master(s->registry->ud, s->node);
}

static nori__near_listener *find(nori__near_registry *r, const nori__redis_node *node)
{
    size_t n = atomic_load_explicit(&r->n, memory_order_acquire);
    for (size_t i = 0; i < n; i++) {
        near_slot *s = atomic_load_explicit(&r->slots[i], memory_order_acquire);
        if (s->node == node)
            return s->listener;
    }
    return NULL;
}

nori__near_listener *nori__near_registry_listener(nori__near_registry *r,
                                                  const nori__redis_node *node)
{
    nori__near_listener *l = find(r, node);
    if (l != NULL)
        return l;
    pthread_mutex_lock(&r->lock);
    l = find(r, node);
    size_t n = atomic_load(&r->n);
    if (l != NULL || n >= NORI_CLUSTER_MAX_NODES)
        goto out;
    near_slot *s = malloc(sizeof *s);
    if (s == NULL)
        goto out;
    const nori__redis_url *url = node->url;
    nori__near_listener_config cfg = {
        .host = url->is_unix ? NULL : url->host,
        .port = url->port,
        .unix_path = url->is_unix ? url->path : NULL,
        .user = url->user,
        .password = url->password,
        .display = url->display,
        .db = url->db,
        .connect_timeout_ms = url->connect_timeout_ms,
        .heartbeat_ms = 0,
        .key_prefix = r->prefix,
        .check_role = r->check_role,
        .on_not_master = slot_not_master,
        .ud = s,
    };
    s->node = node;
    s->registry = r;
    if (nori__near_listener_start(r->store, &cfg, &l) != NORI_OK) {
        free(s);
        l = NULL;
        goto out;
    }
    s->node = node;
    s->listener = l;
    atomic_store_explicit(&r->slots[n], s, memory_order_release);
    atomic_store_explicit(&r->n, n + 1, memory_order_release);
out:
    pthread_mutex_unlock(&r->lock);
    return l;
}

size_t nori__near_registry_count(nori__near_registry *r)
{
    return atomic_load(&r->n);
}

void nori__near_registry_stats(nori__near_registry *r, nori__near_listener_stats *out)
{
    memset(out, 0, sizeof *out);
    size_t n = atomic_load(&r->n);
    for (size_t i = 0; i < n; i++) {
        nori__near_listener_stats one;
        nori__near_listener_get_stats(atomic_load(&r->slots[i])->listener, &one);
        out->connects += one.connects;
        out->messages += one.messages;
        out->pings += one.pings;
        out->tracked += one.tracked;
        out->db_unchecked += one.db_unchecked;
    }
}
