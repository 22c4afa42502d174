// SPDX-License-Identifier: MIT
/*
 * Which server a command goes to: one standalone server, the master the
 * sentinels name, or the master of the key's slot in a Redis Cluster.
 *
 * The mode: a redis+sentinel:// URL is sentinel mode, a unix:// URL one
 * server. For redis:// it is found out lazily: keyed commands go to the
 * first seed as they are (no extra round trip for a single server) until
 * one is redirected (MOVED, ASK, TRYAGAIN, CLUSTERDOWN) or the seed is down
 * and ?addr= seeds exist; then, or on a whole-keyspace call (flush, verify,
 * describe), the first seed that answers INFO decides (cluster_enabled:1 is
 * cluster mode, anything else a standalone server).
 *
 * Nodes are kept in a registry that only grows (bounded by
 * NORI_CLUSTER_MAX_NODES): a node is never freed while the backend lives, so
 * a thread may keep using a node pointer after the map changed, without
 * reference counts. Routing reads atomics only (the slot table and the
 * registry), no lock; a refresh (CLUSTER SLOTS, or asking the sentinels)
 * runs under the topology mutex, one at a time, rate-limited.
 *
 * nori__topo_call() runs one keyed operation with the redirections of the
 * cluster specification: MOVED (retry at the new owner, fix that slot at once
 * and refresh the map), ASK (ASKING + the command at the node named, no map
 * change), TRYAGAIN and CLUSTERDOWN (retry with back-off), READONLY in
 * sentinel mode (the master changed: ask the sentinels again), and a node
 * that cannot be reached (refresh, then retry). Retries are bounded by count
 * and by time: no new attempt starts NORI_TOPO_RETRY_MS after the call
 * began, so a call takes at most that plus one attempt (connect and command
 * timeouts) plus one refresh.
 *
 * Through Sentinel the master is also resolved again, off the calling
 * threads, when a sentinel announces a switch (topology_sentinel.c,
 * sentinel_watch.h), and each node's connections confirm with ROLE that it
 * is still the master when they are new or were idle (pool.h).
 */
#ifndef NORI_SRC_REDIS_ROUTE_TOPOLOGY_H
#define NORI_SRC_REDIS_ROUTE_TOPOLOGY_H

#include "redis/wire/conn.h"
#include "redis/route/cluster_slots.h"
#include "redis/route/topology_types.h"
#include "redis/route/url_topology.h"

#include <stdbool.h>
#include <stddef.h>

/* Most attempts of one operation that end in MOVED or ASK (a lying or
 * flapping cluster must not loop). */
#define NORI_TOPO_MAX_ATTEMPTS 16
/* Most attempts that wait (TRYAGAIN, CLUSTERDOWN, READONLY, an unreachable
 * node, an unserved slot); the back-off grows 10, 20, 40 ... 200 ms, so the
 * time bound below is what ends them. */
#define NORI_TOPO_MAX_WAITS 64
/* Total back-off one operation may sleep across its retries, in ms: a
 * cluster failover with cluster-node-timeout 1000 takes about 2 s. */
#define NORI_TOPO_RETRY_MS 3000
/* A refresh is not repeated within this many ms (unless forced by a MOVED
 * that names a node the map does not know). */
#define NORI_TOPO_REFRESH_MIN_MS 100

/* Creates the topology of target (borrowed: outlives it) for the backend
 * `owner` (borrowed: its value limit bounds value replies). No connection
 * is made. NORI_OK or NORI_ENOMEM. */
int nori__topo_new(const nori__redis_target *target, const nori_backend *owner,
                   nori__redis_topo **out);
void nori__topo_free(nori__redis_topo *t);

/* Finds out the mode if it is not known yet (connects). NORI_OK or NORI_EBACKEND. */
int nori__topo_ready(nori__redis_topo *t);
int nori__topo_mode(const nori__redis_topo *t);

/*
 * Runs body on the node that serves the wire key wkey[0..wlen) (the
 * standalone server or the sentinel master when not a cluster), following
 * redirections. `retry_io`: the body may be run again after an I/O error
 * (only for idempotent commands: a write that timed out may have been
 * applied). Returns the body's result or the last error.
 */
int nori__topo_call(nori__redis_topo *t, const char *wkey, size_t wlen, bool retry_io,
                    nori__topo_body body, void *ctx, const char *op, const char *key);

/*
 * For a body: when r is a redirection (MOVED, ASK, TRYAGAIN, CLUSTERDOWN in
 * cluster mode; READONLY in sentinel mode) records it in a and returns true;
 * the body then frees r and returns NORI__REDIRECTED.
 */
bool nori__topo_redirected(const nori__redis_topo *t, nori__topo_attempt *a, const redisReply *r);

/*
 * The masters to visit for a whole-keyspace operation (flush, verify): at
 * most max nodes into out (pointers stay valid while the backend lives).
 * Returns how many, or a negative NORI_* error (mode unknown and no seed
 * reachable, no master resolved).
 */
int nori__topo_masters(nori__redis_topo *t, nori__redis_node **out, size_t max);

/*
 * The one server when the backend talks to one (a standalone redis:// or
 * unix:// server; finds out the mode first, which may cost an INFO): its
 * node, valid while the backend lives. NULL with *rc NORI_OK on a cluster or
 * through Sentinel, NULL with *rc an error when the mode cannot be found out.
 */
nori__redis_node *nori__topo_single(nori__redis_topo *t, int *rc);

/* Through Sentinel: the master resolved last (it may have moved since:
 * its connections answer READONLY or fail, and the routed path resolves it
 * again), or NULL when none is known yet or the mode is another. */
nori__redis_node *nori__topo_sentinel_master(nori__redis_topo *t);

/* Without connecting: the one server when the mode is standalone, the first
 * seed while the mode is not known yet; NULL on a cluster or through
 * Sentinel (or out of memory). Valid while the backend lives. */
nori__redis_node *nori__topo_seed(nori__redis_topo *t);

/* Adds every node's circuit-breaker state and counters to *out. */
void nori__topo_stats(nori__redis_topo *t, nori_backend_stats *out);

/* Through Sentinel: the counters of the thread that follows the sentinels'
 * announcements (sentinel_watch.h); all 0 before the first master is
 * resolved, and in other modes. Takes the topology lock: never call it from
 * the watch's own thread. */
struct nori__sentinel_watch_stats;
void nori__topo_watch_stats(nori__redis_topo *t, struct nori__sentinel_watch_stats *out);

/* Asks for a fresh map (cluster) or master (sentinel) now. */
int nori__topo_refresh(nori__redis_topo *t);

/*
 * A description of what was found, for `noricache check`: mode, nodes with
 * role and slots, the sentinel master. malloc'd text (the caller frees), or
 * NULL with an error code in *rc.
 */
char *nori__topo_describe(nori__redis_topo *t, int *rc);

/*
 * For the bulk calls on a cluster (bulk.c), which group keys by node
 * themselves: the master that serves `slot` in the current map, without
 * connecting, waiting or setting an error. NULL when no node serves the
 * slot or the mode is not cluster. Lock-free; valid while the backend lives.
 */
nori__redis_node *nori__topo_slot_master(nori__redis_topo *t, unsigned slot);

/* For a bulk call: node `from` answered a key's command with the
 * redirection recorded in a (nori__topo_redirected). A MOVED fixes that
 * slot in the map and refreshes it, as a routed call does, so that the
 * key's retry goes straight to the new owner; other redirections change
 * nothing. May change nori_last_error(). */
void nori__topo_moved(nori__redis_topo *t, const nori__topo_attempt *a,
                      const nori__redis_node *from);

/* A node failed under a bulk call (no reply, or a timeout): the map may be
 * out of date (a failover), so it is read again, unless a refresh was made
 * within NORI_TOPO_REFRESH_MIN_MS; `answered` (NULL: none), a node that
 * answered during the call, is asked first. The refresh is bounded as
 * nori__topo_refresh; its outcome is not the caller's concern (it may change
 * nori_last_error()). */
void nori__topo_node_failed(nori__redis_topo *t, const nori__redis_node *answered);

/* ---- for the near cache (src/redis/near/, backend.c) ---- */

/*
 * fn (nori__topo_moved_fn) is called after keys changed node: a slot of the cluster map got another
 * owner than before (a refresh, a MOVED), the mode was found to be a
 * cluster, or the sentinels named another master. It runs after the new
 * route is stored, under the topology lock or in a routing thread, so it
 * must be quick and must not call the topology. Set once, before the
 * backend is shared (NULL: none).
 */
void nori__topo_on_moved(nori__redis_topo *t, nori__topo_moved_fn fn, void *ud);

/*
 * True when a keyed command on wkey would now be sent to `node` without a
 * redirection: the owner of its slot (cluster), the current master
 * (sentinel), the server (standalone) or, while the mode is unknown, the
 * first seed. Lock-free.
 */
bool nori__topo_routes_to(nori__redis_topo *t, const char *wkey, size_t wlen,
                          const nori__redis_node *node);

#endif
