// SPDX-License-Identifier: MIT
/*
 * The Redis backend's state, shared by its files: backend.c (the operations
 * of cache.h, one key at a time, routed by topology.c), near_ops.c (the same
 * with a near cache in front) and bulk.c (the bulk
 * calls: one round trip per node, on one server or a cluster; one key at a
 * time, routed, through Sentinel).
 */
#ifndef NORI_SRC_REDIS_INTERNAL_H
#define NORI_SRC_REDIS_INTERNAL_H

#include "backend.h"
#include "redis/wire/conn.h"
#include "redis/route/topology.h"
#include "redis/route/url_topology.h"
#include "redis/wire/url.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Every key of this library lives under this prefix, as in Nori's Python
 * implementation. */
#define KEY_PREFIX "cache:"
#define KEY_PREFIX_LEN (sizeof KEY_PREFIX - 1)

typedef struct redis_backend {
    nori_backend base;          /* must be first */
    nori__redis_target target;  /* owned; target.display names it in messages (passwords masked) */
    nori__redis_topo *topo;     /* owned: the nodes (pool, breaker each), the routing */
    _Atomic bool script_loaded; /* SCRIPT LOAD done once; NOSCRIPT later is handled */
    _Atomic uint64_t hits, misses;
    struct nori__near_client *near; /* set by nori_redis_backend_enable_near (near_ops) */
} redis_backend;

/* "cache:" + key, built on the stack: keys are at most NORI_MAX_KEY_LEN. */
typedef struct {
    char s[KEY_PREFIX_LEN + NORI_MAX_KEY_LEN + 1];
    size_t len;
} wire_key;

static inline void make_key(wire_key *k, const char *key, size_t klen)
{
    memcpy(k->s, KEY_PREFIX, KEY_PREFIX_LEN);
    memcpy(k->s + KEY_PREFIX_LEN, key, klen);
    k->len = KEY_PREFIX_LEN + klen;
    k->s[k->len] = '\0';
}

/* The plain Redis backend's operations (backend.c); the near cache's table
 * (near_ops.c) wraps them. */
extern const nori_backend_ops nori__redis_ops;

/* set_guarded of the ops table (backend.h): one script over both keys,
 * three steps on a cluster whose slots split them (guarded.c). */
int nori__redis_set_guarded(nori_backend *b, const char *key, size_t klen, const void *val,
                            size_t len, int64_t ttl, const char *guard, size_t glen,
                            const void *expect, size_t elen, int *stored);

/* The bulk operations of the ops table (backend.h describes the contract):
 * a pipeline of GETs, SETs or UNLINKs per node (bulk.c). */
void nori__redis_get_many(nori_backend *b, size_t n, const char *const *keys,
                          const size_t *klens, nori_get_result *results);
void nori__redis_set_many(nori_backend *b, size_t n, const nori_set_item *items,
                          const size_t *klens, int *results);
void nori__redis_delete_many(nori_backend *b, size_t n, const char *const *keys,
                             const size_t *klens, int *results);

struct nori__metrics;
/* The backend's own series of nori_metrics_write(), near cache included
 * (metrics.c); both ops tables use it. */
void nori__redis_metrics(nori_backend *b, const nori_backend_stats *st, struct nori__metrics *m);

#endif
