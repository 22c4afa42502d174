// SPDX-License-Identifier: MIT
/*
 * The Redis backend with a near cache (src/redis/near/): the operations
 * table a backend runs on once nori_redis_backend_enable_near is called. It
 * wraps the plain Redis operations (nori__redis_ops, backend.c): reads go
 * through the local copy, writes drop it.
 */
#include "backend.h"
#include "redis/wire/conn.h"
#include "error.h"
#include "redis/near/client.h"
#include "redis/route/topology.h"
#include "redis/internal.h"

#include <stdatomic.h>
#include <stdbool.h>

/* ---- the near cache (src/redis/near/) ----
 *
 * A backend with a near cache runs on near_ops: get goes through the near
 * client (the local copy, or a tracked read); every write drops the local
 * copy once Redis has answered (or failed: the outcome is then unknown), so
 * that this process reads its own writes; flush and delete_prefix drop every
 * local copy. Everything else is the plain backend's. The tracked read is
 * routed like every keyed command (topology.c): on a cluster to the key's
 * master, through Sentinel to the current master, each node with its own
 * invalidation listener (near/registry.h); the topology tells the near
 * cache when keys change node (near_moved). */

typedef struct near_get_ctx {
    redis_backend *rb;
    const char *key;
    size_t klen;
    const wire_key *k;
    nori_buf *out;
    int attempts;
} near_get_ctx;

/* The tracked read on the key's node; only the first attempt may be kept
 * (client.h). */
static int near_get_body(nori__topo_attempt *a, void *ctx)
{
    near_get_ctx *g = ctx;
    bool first = g->attempts++ == 0;
    return nori__near_client_fetch(g->rb->near, g->rb->topo, a, first, g->key, g->klen, g->k->s,
                                   g->k->len, nori_backend_max_value(&g->rb->base), g->out);
}

static int near_get(nori_backend *b, const char *key, size_t klen, nori_buf *out)
{
    redis_backend *rb = (redis_backend *)b;
    /* A local hit is counted by the store (striped counters: one shared
     * atomic here cost 8 threads on a hot key a contended cache line). */
    int rc = nori__near_client_local(rb->near, key, klen, out);
    if (rc != NORI_MISS)
        return rc;
    wire_key k;
    make_key(&k, key, klen);
    near_get_ctx g = {rb, key, klen, &k, out, 0};
    rc = nori__topo_call(rb->topo, k.s, k.len, true, near_get_body, &g, "GET", key);
    if (rc == NORI_OK || rc == NORI_MISS)
        atomic_fetch_add_explicit(rc == NORI_OK ? &rb->hits : &rb->misses, 1,
                                  memory_order_relaxed);
    return rc;
}

static void near_stats(nori_backend *b, nori_backend_stats *out)
{
    nori__redis_ops.stats(b, out);
    nori__near_stats st;
    nori__near_get_stats(nori__near_client_store(((redis_backend *)b)->near), &st);
    out->hits += st.hits;
}

/*
 * After a write on key: drop its local copy. After NORI_EBACKEND also drop
 * every copy: the connection that failed is freed, and if it had tracking
 * on, Redis forgot the keys it read, so their changes would no longer be
 * announced (the heartbeat would notice within 500 ms; this leaves no
 * window). Errors are rare, and a flush only costs refills. Not after a
 * write that failed only on its WAIT (wait_replicas): its connection and
 * tracking are intact, and a replica that is down would otherwise empty
 * the near cache at every write.
 */
static int near_after_write(nori_backend *b, const char *key, size_t klen, int rc)
{
    redis_backend *rb = (redis_backend *)b;
    if (rc == NORI_EBACKEND && !nori__redis_conn_wait_fell_short())
        nori__near_flush(nori__near_client_store(rb->near), NORI__NEAR_FLUSH_TRACKING_LOST);
    else
        nori__near_client_drop(rb->near, key, klen);
    return rc;
}

static int near_set(nori_backend *b, const char *key, size_t klen, const void *val, size_t len,
                    int64_t ttl)
{
    return near_after_write(b, key, klen, nori__redis_ops.set(b, key, klen, val, len, ttl));
}

static int near_del(nori_backend *b, const char *key, size_t klen)
{
    return near_after_write(b, key, klen, nori__redis_ops.del(b, key, klen));
}

static int near_delete_prefix(nori_backend *b, const char *prefix, size_t plen)
{
    int rc = nori__redis_ops.delete_prefix(b, prefix, plen);
    nori__near_client_flush(((redis_backend *)b)->near);
    return rc;
}

static int near_incr(nori_backend *b, const char *key, size_t klen, int64_t ttl, int64_t *out)
{
    return near_after_write(b, key, klen, nori__redis_ops.incr(b, key, klen, ttl, out));
}

static int near_atomic_update(nori_backend *b, const char *key, size_t klen, nori_update_fn fn,
                              void *ud, int64_t ttl, nori_buf *out)
{
    return near_after_write(b, key, klen, nori__redis_ops.atomic_update(b, key, klen, fn, ud, ttl, out));
}

static int near_add(nori_backend *b, const char *key, size_t klen, const void *val, size_t len,
                    int64_t ttl_ms, int *added)
{
    return near_after_write(b, key, klen, nori__redis_ops.add(b, key, klen, val, len, ttl_ms, added));
}

static int near_delete_if_equal(nori_backend *b, const char *key, size_t klen, const void *val,
                                size_t len, int *deleted)
{
    return near_after_write(b, key, klen, nori__redis_ops.delete_if_equal(b, key, klen, val, len, deleted));
}

static int near_set_guarded(nori_backend *b, const char *key, size_t klen, const void *val,
                            size_t len, int64_t ttl, const char *guard, size_t glen,
                            const void *expect, size_t elen, int *stored)
{
    return near_after_write(b, key, klen,
                            nori__redis_set_guarded(b, key, klen, val, len, ttl, guard, glen,
                                                    expect, elen, stored));
}

static int near_verify(nori_backend *b)
{
    return nori__redis_ops.verify(b);
}

static char *near_describe(nori_backend *b, int *rc)
{
    return nori__redis_ops.describe(b, rc);
}

static void near_destroy(nori_backend *b)
{
    /* The listener thread goes first: it reads the store and the URL. */
    nori__near_client_stop(((redis_backend *)b)->near);
    nori__redis_ops.destroy(b);
}

static const nori_backend_ops redis_near_ops = {
    .kind = "redis",
    .traits = {.shared = true, .entry_format = NORI__ENTRY_JSON, .remote = true},
    .get = near_get,
    .set = near_set,
    .del = near_del,
    .delete_prefix = near_delete_prefix,
    .add = near_add,
    .delete_if_equal = near_delete_if_equal,
    .set_guarded = near_set_guarded,
    .incr = near_incr,
    .atomic_update = near_atomic_update,
    .verify = near_verify,
    .describe = near_describe,
    .stats = near_stats,
    .metrics = nori__redis_metrics,
    .destroy = near_destroy,
};

/* The topology moved keys to another node (a slot, the sentinel master):
 * what was read from the old one may miss its invalidations from now on.
 * May run under the topology lock (topology.h: nori__topo_on_moved), so it
 * does nothing but flush the store, which takes only the store's locks. */
static void near_moved(void *ud)
{
    nori__near_flush(nori__near_client_store(ud), NORI__NEAR_FLUSH_TOPOLOGY);
}

/* Sentinel: a listener found its node demoted. When that node is still the
 * master this process routes to, ask the sentinels now rather than at the
 * next failed call or READONLY (a hot key served locally may make none):
 * the new master flushes the near cache (near_moved). */
static void near_not_master(void *ud, const nori__redis_node *node)
{
    redis_backend *rb = ud;
    if (nori__topo_routes_to(rb->topo, "", 0, node))
        (void)nori__topo_refresh(rb->topo);
}

int nori_redis_backend_enable_near(nori_backend *b, size_t max_keys, size_t max_bytes,
                                   int64_t max_ttl_ms)
{
    if (b == NULL || (b->ops != &nori__redis_ops && b->ops != &redis_near_ops))
        return nori__fail(NORI_EINVAL, "enable_near: not a Redis backend");
    if (b->ops == &redis_near_ops)
        return nori__fail(NORI_EINVAL, "enable_near: this backend already has a near cache");
    redis_backend *rb = (redis_backend *)b;
    nori__near_limits limits = {max_keys, max_bytes, max_ttl_ms};
    /* Through Sentinel each listener checks that its node is a master: the
     * sentinels may demote it without closing a connection. */
    int rc = nori__near_client_start(&limits, KEY_PREFIX, rb->target.sentinel, near_not_master,
                                     rb, &rb->near);
    if (rc != NORI_OK)
        return rc;
    /* One listener per node, started at the node's first read (registry.h);
     * the one server (or the first seed, while the mode is unknown) at once,
     * so that a standalone backend keeps its first reads. No connection is
     * made here. */
    nori__redis_node *seed = nori__topo_seed(rb->topo);
    if (seed != NULL)
        nori__near_client_watch(rb->near, seed);
    nori__topo_on_moved(rb->topo, near_moved, rb->near);
    b->ops = &redis_near_ops;
    return NORI_OK;
}

int nori_backend_get_near_stats(nori_backend *b, nori_near_stats *out)
{
    if (b == NULL || out == NULL)
        return nori__fail(NORI_EINVAL, "get_near_stats: b or out is NULL");
    if (b->ops != &redis_near_ops)
        return nori__fail(NORI_EINVAL, "get_near_stats: this backend has no near cache");
    redis_backend *rb = (redis_backend *)b;
    nori__near_stats st;
    nori__near_get_stats(nori__near_client_store(rb->near), &st);
    nori__near_listener_stats ls;
    nori__near_registry_stats(nori__near_client_registry(rb->near), &ls);
    *out = (nori_near_stats){
        .hits = st.hits,
        .misses = st.misses,
        .fills = st.fills,
        .fills_discarded = st.fills_discarded,
        .invalidations = st.invalidations,
        .evictions = st.evictions,
        .flushes_own = st.flushes[NORI__NEAR_FLUSH_OWN],
        .flushes_server = st.flushes[NORI__NEAR_FLUSH_SERVER],
        .flushes_listener_lost = st.flushes[NORI__NEAR_FLUSH_LISTENER_LOST],
        .flushes_heartbeat = st.flushes[NORI__NEAR_FLUSH_HEARTBEAT],
        .flushes_tracking_lost = st.flushes[NORI__NEAR_FLUSH_TRACKING_LOST],
        .flushes_topology = st.flushes[NORI__NEAR_FLUSH_TOPOLOGY],
        .flushes_db_changed = st.flushes[NORI__NEAR_FLUSH_DB_CHANGED],
        .entries = st.entries,
        .bytes = st.bytes,
        .active = st.active ? 1 : 0,
        .db_unchecked = ls.db_unchecked,
    };
    return NORI_OK;
}
