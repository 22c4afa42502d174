// SPDX-License-Identifier: MIT
/*
 * The near cache as the Redis backend uses it: one store (near.h) for all
 * nodes, one invalidation listener per node it reads from (registry.h,
 * listener.h), and the tracked read.
 *
 * The tracked read (a local miss), run by the topology's router on the
 * connection of the node that serves the key: one round trip of
 *     CLIENT TRACKINGINFO; GET cache:key; PTTL cache:key
 * after marking the key "fill in progress". The reply is kept only when
 *  - TRACKINGINFO shows tracking on, with its redirect equal to the id of
 *    that node's listener, proved now (the proof, taken on the same
 *    connection just before the GET, that any later change of the key on
 *    that node reaches the listener), and the id is still the same once the
 *    reply is in (a listener lost meanwhile withdrew it);
 *  - the read was the operation's first attempt: a reply that follows a
 *    MOVED, an ASK, a retry after an error, is returned but not kept;
 *  - the topology still routes the key to the node that answered, checked
 *    after the reply: a slot moved or a new master named before that check
 *    fails it, one after it flushes the store (the topology's moved hook,
 *    backend.c), which discards the fill or the value.
 * A connection without that proof gets `CLIENT ID` and
 * `CLIENT TRACKING on REDIRECT <listener id>` after the read (so its next
 * read may fill), and is registered with the node's listener, whose
 * heartbeat checks that it still exists with tracking on (Redis drops
 * tracking silently when a connection is killed).
 *
 * Needs Redis 6.2 or newer (CLIENT TRACKINGINFO); on an older server every
 * read goes to Redis (nothing is kept), which is slower but never stale.
 */
#ifndef NORI_SRC_REDIS_NEAR_CLIENT_H
#define NORI_SRC_REDIS_NEAR_CLIENT_H

#include "redis/wire/conn.h"
#include "redis/near/listener.h"
#include "redis/near/near.h"
#include "redis/near/registry.h"
#include "redis/route/topology.h"

typedef struct nori__near_client nori__near_client;

/*
 * Creates the store with the given bounds (see nori__near_new) and an empty
 * listener registry (check_role, on_not_master, ud: see registry.h).
 * `key_prefix` is the backend's key prefix ("cache:").
 * NORI_OK with *out owned by the caller (nori__near_client_stop), or
 * NORI_EINVAL / NORI_ENOMEM.
 */
int nori__near_client_start(const nori__near_limits *limits, const char *key_prefix,
                            bool check_role, nori__near_not_master_fn on_not_master, void *ud,
                            nori__near_client **out);

/* Starts node's listener now rather than at its first read (the one server
 * of a standalone backend: its first reads can then be kept). */
void nori__near_client_watch(nori__near_client *nc, const nori__redis_node *node);

/* Stops every listener and frees the store. NULL-safe. */
void nori__near_client_stop(nori__near_client *nc);

/*
 * get through the near cache, in two steps so that a local hit builds
 * nothing: nori__near_client_local() is the local copy (NORI_OK with *out
 * owned by the caller, NORI_MISS, or NORI_ENOMEM); on NORI_MISS,
 * nori__near_client_fetch() is the tracked read, as a body of
 * nori__topo_call on attempt `a` (`first`: the operation's first attempt;
 * `wkey` is the key as stored in Redis). Returns as the backend's get does:
 * NORI_OK with *out owned by the caller, NORI_MISS, NORI__REDIRECTED (the
 * router follows it), or an error (*out left {NULL, 0}). A value longer than
 * max_value (the backend's value limit) is NORI_ETOOBIG and is not kept.
 */
int nori__near_client_local(nori__near_client *nc, const char *key, size_t klen, nori_buf *out);
int nori__near_client_fetch(nori__near_client *nc, nori__redis_topo *topo, nori__topo_attempt *a,
                            bool first, const char *key, size_t klen, const char *wkey,
                            size_t wklen, size_t max_value, nori_buf *out);

/* Tests only: when set, called by fetch between reading the replies and
 * keeping the value, to let a test change the key in that window (the race
 * of the client-side caching guide, made deterministic). Not thread-safe to
 * change while reads run. */
extern void (*nori__near_test_after_reply)(const char *key);

/* Tests only: when set, called by fetch on its first attempt after the
 * fill's marker is placed (or refused) and before the read is sent, to let
 * a test interleave other threads' reads with this one. Same rules. */
extern void (*nori__near_test_before_read)(const char *key);

/* This process wrote key (whatever the outcome): drop the local copy. */
void nori__near_client_drop(nori__near_client *nc, const char *key, size_t klen);

/* This process flushed or deleted by prefix: drop every local copy. */
void nori__near_client_flush(nori__near_client *nc);

/* The store (for stats) and the listeners. */
nori__near *nori__near_client_store(nori__near_client *nc);
nori__near_registry *nori__near_client_registry(nori__near_client *nc);

#endif
