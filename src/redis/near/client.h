/*
 * The near cache as the Redis backend uses it: a store (near.h) plus its
 * invalidation listener (listener.h) for one node, and the tracked read.
 *
 * The tracked read (a local miss): on a borrowed data connection, one round
 * trip of
 *     CLIENT TRACKINGINFO; GET cache:key; PTTL cache:key
 * after marking the key "fill in progress". The reply is kept only when
 * TRACKINGINFO shows tracking on, with its redirect equal to the listener
 * that is proved now: that is the proof, taken on the same connection just
 * before the GET, that any later change of the key will reach the listener.
 * A connection without that proof gets `CLIENT ID` and
 * `CLIENT TRACKING on REDIRECT <listener id>` after the read (so its next
 * read may fill), and is registered with the listener, whose heartbeat
 * checks that it still exists with tracking on (Redis drops tracking
 * silently when a connection is killed).
 *
 * Needs Redis 6.2 or newer (CLIENT TRACKINGINFO); on an older server every
 * read goes to Redis (nothing is kept), which is slower but never stale.
 */
#ifndef NORI_SRC_REDIS_NEAR_CLIENT_H
#define NORI_SRC_REDIS_NEAR_CLIENT_H

#include "redis/conn.h"
#include "redis/near/listener.h"
#include "redis/near/near.h"
#include "redis/url.h"

typedef struct nori__near_client nori__near_client;

/*
 * Creates the store with the given bounds (see nori__near_new) and starts
 * its listener on the server of `url` (borrowed: it must outlive the
 * client). `key_prefix` is the backend's key prefix ("cache:").
 * NORI_OK with *out owned by the caller (nori__near_client_stop), or
 * NORI_EINVAL / NORI_ENOMEM.
 */
int nori__near_client_start(const nori__redis_url *url, const nori__near_limits *limits,
                            const char *key_prefix, nori__near_client **out);

/* Stops the listener and frees the store. NULL-safe. */
void nori__near_client_stop(nori__near_client *nc);

/*
 * get through the near cache, in two steps so that a local hit builds
 * nothing: nori__near_client_local() is the local copy (NORI_OK with *out
 * owned by the caller, NORI_MISS, or NORI_ENOMEM); on NORI_MISS,
 * nori__near_client_fetch() is the tracked read on a connection of `node`
 * (`wkey` is the key as stored in Redis), returning as the backend's get
 * does: NORI_OK with *out owned by the caller, NORI_MISS, or an error (*out
 * left {NULL, 0}). A value longer than max_value (the backend's value limit)
 * is NORI_ETOOBIG and is not kept.
 */
int nori__near_client_local(nori__near_client *nc, const char *key, size_t klen, nori_buf *out);
int nori__near_client_fetch(nori__near_client *nc, nori__redis_node *node, const char *key,
                            size_t klen, const char *wkey, size_t wklen, size_t max_value,
                            nori_buf *out);

/* Tests only: when set, called by fetch between reading the replies and
 * keeping the value, to let a test change the key in that window (the race
 * of the client-side caching guide, made deterministic). Not thread-safe to
 * change while reads run. */
extern void (*nori__near_test_after_reply)(const char *key);

/* This process wrote key (whatever the outcome): drop the local copy. */
void nori__near_client_drop(nori__near_client *nc, const char *key, size_t klen);

/* This process flushed or deleted by prefix: drop every local copy. */
void nori__near_client_flush(nori__near_client *nc);

/* The store (for stats). */
nori__near *nori__near_client_store(nori__near_client *nc);
nori__near_listener *nori__near_client_listener(nori__near_client *nc);

#endif
