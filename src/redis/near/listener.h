// SPDX-License-Identifier: MIT
/*
 * The invalidation listener of the near cache: one hiredis connection per
 * Redis node, subscribed to __redis__:invalidate, read by a background
 * thread (registry.h keeps one per node of a cluster or sentinel set-up). Data connections enable tracking with
 * `CLIENT TRACKING on REDIRECT <nori__near_listener_client_id()>`, and Redis
 * then sends here the keys they read when anyone changes them (RESP2 form of
 * client-side caching; hiredis 0.14 has no RESP3).
 *
 * What the thread does:
 *  - connects as every connection of the backend is opened (dial.h: the
 *    host name's lookup and the connect together bounded by
 *    connect_timeout_ms; AUTH, SELECT when configured), reads its CLIENT
 *    ID, subscribes; once the subscription is confirmed, the store is made
 *    active (tracking proved) and the client id is published;
 *  - on each message: every key under `key_prefix` is invalidated in the
 *    store (the prefix stripped); a nil payload (FLUSHALL, FLUSHDB) flushes
 *    the whole store;
 *  - every heartbeat_ms: PINGs the subscribed connection; a PING not
 *    answered before the next one is due is a missed heartbeat. With tracked
 *    data connections registered, it also checks on a second ("control")
 *    connection that each of them still exists with tracking on and a valid
 *    redirect (CLIENT LIST ID ..., flags 't' and not 'R'): Redis drops
 *    tracking silently when a data connection is killed, and over RESP2 tells
 *    nobody, so this is the only way to learn it; and it reads the
 *    database's identity marker there (db_id.h: SWAPDB sends no
 *    invalidation), read first before the store is made active: a changed
 *    marker flushes the store (db_changed);
 *  - on connection loss, a missed heartbeat or a lost tracked connection:
 *    the client id is withdrawn (0), this listener's proof is withdrawn from
 *    the store, which flushes it (the cause counted; near.h), and it
 *    reconnects after a short pause; data
 *    connections must then enable tracking again with the new id before
 *    their replies may be kept.
 *  - with check_role (Sentinel): a node found not to be a master (it was
 *    demoted by a failover) ends the session like a lost connection, and
 *    the listener stays unproved while it is a replica.
 * While nothing changes it sends at most three commands per heartbeat (PING,
 * CLIENT LIST, GET of the marker; and a ROLE every NORI_NEAR_ROLE_BEATS
 * heartbeats with check_role).
 *
 * Every wait is bounded: connect by connect_timeout_ms, commands on the
 * control connection by heartbeat_ms, the reader's poll by heartbeat_ms;
 * nori__near_listener_stop() wakes the thread and joins it.
 */
#ifndef NORI_SRC_REDIS_NEAR_LISTENER_H
#define NORI_SRC_REDIS_NEAR_LISTENER_H

#include "redis/near/near.h"

#include <stdbool.h>
#include <stdint.h>

#define NORI_NEAR_DEFAULT_HEARTBEAT_MS 500

typedef struct nori__near_listener nori__near_listener;

typedef struct {
    const char *host;        /* TCP host; NULL when unix_path is set */
    int port;
    const char *unix_path;   /* unix socket path, or NULL */
    const char *user;        /* AUTH user, or NULL */
    const char *password;    /* AUTH password, or NULL (no AUTH) */
    const char *display;     /* the server's URL with the password masked, for messages */
    int db;                  /* the data connections' database (SELECT when non-zero) */
    int connect_timeout_ms;  /* > 0 */
    int heartbeat_ms;        /* 0: NORI_NEAR_DEFAULT_HEARTBEAT_MS */
    const char *key_prefix;  /* "cache:": only these keys are invalidated, prefix stripped */
    /* Through Sentinel: the node must be a master. ROLE is checked before
     * subscribing and every NORI_NEAR_ROLE_BEATS heartbeats; a node that is
     * not a master is not proved (tracking lost: flush, cause topology;
     * asked again every NORI_NEAR_ROLE_BEATS heartbeats), and
     * on_not_master(ud) is called from the listener thread each time. A
     * refused ROLE (ACL) is taken as "master". */
    bool check_role;
    void (*on_not_master)(void *ud);
    void *ud;
} nori__near_listener_config;

/* ROLE is checked every this many heartbeats (2 s by default), so that the
 * idle cost stays at most 4 commands per second on one node. */
#define NORI_NEAR_ROLE_BEATS 4

/*
 * Starts the listener thread for store `n` (borrowed: it must outlive the
 * listener). The strings of `cfg` are copied. Returns NORI_OK with *out
 * owned by the caller (nori__near_listener_stop), NORI_EINVAL or
 * NORI_ENOMEM. Connecting happens in the thread: use
 * nori__near_listener_wait_active() to wait for it.
 */
int nori__near_listener_start(nori__near *n, const nori__near_listener_config *cfg,
                              nori__near_listener **out);

/* Stops the thread (bounded by the connect timeout at worst), closes its
 * connections, withdraws its proof from the store (which flushes it) if it
 * had one, and frees l. NULL-safe. */
void nori__near_listener_stop(nori__near_listener *l);

/* The CLIENT ID data connections must REDIRECT to; 0 while tracking is not
 * proved (not connected, or being reconnected). */
uint64_t nori__near_listener_client_id(nori__near_listener *l);

/* Waits up to timeout_ms for the listener to be subscribed (client id
 * non-zero). Returns that id, or 0 on timeout. */
uint64_t nori__near_listener_wait_active(nori__near_listener *l, int timeout_ms);

/*
 * Registers a data connection (by its CLIENT ID) that enabled tracking with
 * REDIRECT to `redirect_id`. From now on each heartbeat checks that it still
 * exists with tracking on; if not, the store is flushed (tracking_lost) and
 * the id forgotten. A registration for a redirect id that is no longer the
 * listener's is refused (false): the connection must re-enable tracking.
 * Unregister when the connection is closed on purpose (no flush then).
 */
bool nori__near_listener_track(nori__near_listener *l, uint64_t client_id, uint64_t redirect_id);
void nori__near_listener_untrack(nori__near_listener *l, uint64_t client_id);

/* Counters of the listener itself. */
typedef struct {
    uint64_t connects;        /* subscriptions established */
    uint64_t messages;        /* invalidation messages read */
    uint64_t pings;           /* heartbeats sent */
    uint64_t tracked;         /* data connections registered now */
    uint64_t db_unchecked;    /* 1 while subscribed without a readable marker
                                 (db_id.h: a cluster node without its slot, an
                                 error reply, or none written) */
} nori__near_listener_stats;

void nori__near_listener_get_stats(nori__near_listener *l, nori__near_listener_stats *out);

/* Tests only: when set, called by every listener thread before it applies
 * an invalidation message, so that a test can hold invalidations back for
 * a moment (as a slow network or a descheduled thread would). Atomic: a
 * test sets and clears it while listeners run. */
extern void (*_Atomic nori__near_test_before_message)(void);

#endif
