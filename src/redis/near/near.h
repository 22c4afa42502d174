// SPDX-License-Identifier: MIT
/*
 * The near cache: a bounded in-process copy of values read from Redis, kept
 * coherent by Redis's own invalidation messages (server-assisted client-side
 * caching, CLIENT TRACKING in its RESP2 form: the data connections enable
 * tracking with REDIRECT to one connection subscribed to
 * __redis__:invalidate, see listener.h).
 *
 * This file is the store and its coherence rules; it knows nothing of
 * hiredis. The rules, from the Redis client-side caching guide:
 *
 *  - An invalidation can arrive before the reply of the GET that read the
 *    old value. So a read that wants to keep its reply first marks the key
 *    "fill in progress" (nori__near_fill_begin, before sending the GET), and
 *    stores the reply only if the marker is still there, with its own
 *    ticket, when the reply is in (nori__near_fill_end). An invalidation of
 *    the key removes the marker; so does a flush.
 *  - The store serves and fills only while tracking is proved: each
 *    listener (one per Redis node) says so with nori__near_set_active().
 *    Losing any of them (connection closed, a heartbeat missed, a tracked
 *    data connection gone) flushes everything and bumps the epoch, so a
 *    reply read before the loss, whose fill began in the old epoch, is never
 *    stored. The store is one for all nodes (a key lives on one node at a
 *    time, but moves), so a loss on one node empties it all: simple, and
 *    safe without knowing which node served which entry.
 *  - A local copy never outlives the key's TTL in Redis (PTTL read with the
 *    GET) nor max_ttl_ms (a safety net, default 60 s), counted from the
 *    moment the fill began, i.e. before the GET was sent.
 *
 * Monotonic reads. The invariant: a thread never reads a value older than
 * one it has read before (locally or from Redis, through this store).
 * Redis runs the reads of a key in one order; what could break it is a
 * copy of an older read that is stored, or left in place, after a thread
 * returned a newer read, and served to that thread before the invalidation
 * that removes it is in (the listener is another thread on another
 * connection: nothing orders its messages with the data replies). So:
 *  1. Every read of a key from Redis whose result a caller gets (a value or
 *     a nil), by any thread, filling or not, its own marker still in place
 *     or not, is reported here before the caller gets it: with
 *     nori__near_fill_end (a value its own fill may keep) or
 *     nori__near_note_read (anything else). A read that failed returns
 *     nothing and only ends its fill (nori__near_fill_cancel).
 *  2. A report that finds another fill's marker records what it read: that
 *     fill keeps its reply only if every report it got saw the same value
 *     (compared by a 64-bit hash). A report that finds a copy that differs
 *     from what it read removes the copy.
 *  3. A fill stores its reply only while its own marker is in place; the
 *     marker is placed before the read is sent.
 * Why that is enough: let R be a read a thread returned, reported at t. A
 * copy served to that thread afterwards was either (a) stored before t and
 * still there at t: R's report saw it, so it equals R or was removed; or
 * (b) stored after t by a fill whose marker was in place at t: R's report
 * reached that marker, so the fill's reply equals R or is not kept; or (c)
 * stored by a fill whose marker was placed after t: its read was sent after
 * R's reply was in, so Redis ran it after R and it is not older. A marker
 * that goes (an invalidation, a flush, a write of this process, a newer
 * fill after MARKER_LIFE_MS) takes its reports with it, which is safe: its
 * fill can no longer store, and any later fill reads after all of them.
 * (Through a failover, Redis's asynchronous replication may itself lose
 * the newest writes: the store is flushed then, and reads follow Redis.)
 *
 * Bounds: at most max_keys entries (markers included) and max_bytes bytes
 * (key, value and a fixed per-entry overhead). The store is split into up to
 * 16 shards, each with its own lock, recency list and an equal share of
 * both bounds, so the bounds hold at every instant without any cross-shard
 * coordination; the price is that eviction is per shard, not global, and
 * that a value larger than a shard's byte share is not kept locally (read
 * from Redis every time). Shards are fewer for small bounds (at least 64
 * keys and 1 MiB per shard). Eviction is CLOCK (second chance), close to
 * LRU, so that reads can share the lock (see near.c).
 *
 * Thread-safety: every call may run from any thread at any time, except
 * nori__near_free.
 */
#ifndef NORI_SRC_REDIS_NEAR_NEAR_H
#define NORI_SRC_REDIS_NEAR_NEAR_H

#include "nori/cache.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Default cap on a local copy's life, in ms (the safety net under PTTL). */
#define NORI_NEAR_DEFAULT_MAX_TTL_MS 60000
/* Bytes counted for each entry besides its key and value. */
#define NORI_NEAR_ENTRY_OVERHEAD 64

typedef struct nori__near nori__near;

/* Why the whole store was emptied (counted separately in the stats). */
typedef enum {
    NORI__NEAR_FLUSH_OWN = 0,       /* this process flushed the cache */
    NORI__NEAR_FLUSH_SERVER,        /* nil invalidation payload: FLUSHALL / FLUSHDB */
    NORI__NEAR_FLUSH_LISTENER_LOST, /* the invalidation connection closed or failed */
    NORI__NEAR_FLUSH_HEARTBEAT,     /* a PING on it was not answered in time */
    NORI__NEAR_FLUSH_TRACKING_LOST, /* a tracked data connection is gone or untracked */
    NORI__NEAR_FLUSH_TOPOLOGY,      /* keys changed node: a cluster slot moved, a new
                                       sentinel master */
    NORI__NEAR_FLUSH_DB_CHANGED,    /* the database's identity marker changed or went
                                       (SWAPDB, a flush of the cache: db_id.h) */
    NORI__NEAR_FLUSH_CAUSES
} nori__near_flush_cause;

/* Names for the causes ("own", "server", "listener_lost", "heartbeat",
 * "tracking_lost", "topology", "db_changed"), for stats and metrics. Static
 * strings. */
const char *nori__near_flush_cause_name(nori__near_flush_cause cause);

typedef struct {
    size_t max_keys;    /* 0: no bound on the count (max_bytes must be > 0) */
    size_t max_bytes;   /* 0: no bound on bytes (max_keys must be > 0) */
    int64_t max_ttl_ms; /* 0: NORI_NEAR_DEFAULT_MAX_TTL_MS */
} nori__near_limits;

typedef struct {
    uint64_t hits;            /* get served locally */
    uint64_t misses;          /* get found no usable local copy */
    uint64_t fills;           /* replies stored locally */
    uint64_t fills_discarded; /* replies not stored: invalidated or flushed meanwhile,
                                 tracking not proved, too big, already expired */
    uint64_t invalidations;   /* keys named by invalidation messages */
    uint64_t evictions;       /* entries dropped by the bounds */
    uint64_t flushes[NORI__NEAR_FLUSH_CAUSES];
    uint64_t entries;         /* entries held now (values and markers) */
    uint64_t bytes;           /* bytes held now, as counted against max_bytes */
    bool active;              /* tracking proved: serving and filling */
} nori__near_stats;

/*
 * Creates an empty, inactive store (nothing is served or filled until
 * nori__near_set_active(n, true, ...)). Both bounds 0, or a negative
 * max_ttl_ms: NORI_EINVAL. *out is owned by the caller (nori__near_free).
 */
int nori__near_new(const nori__near_limits *limits, nori__near **out);

/* Frees the store. NULL-safe. No other call may be running or follow. */
void nori__near_free(nori__near *n);

/*
 * The local copy of `key`: NORI_OK with *out a new copy owned by the caller,
 * NORI_MISS (nothing usable: absent, a fill in progress, expired, or the
 * store is inactive), or NORI_ENOMEM. Never talks to anyone.
 */
int nori__near_get(nori__near *n, const char *key, size_t klen, nori_buf *out);

/* A fill in progress, from begin to end. Opaque to the caller. */
typedef struct {
    uint64_t ticket;
    uint64_t epoch;
    int64_t start_ms;
    bool live; /* fill_begin refused because a live copy is there: serve it */
} nori__near_fill;

/*
 * Marks `key` "fill in progress", before the read is sent. Returns false
 * when the reply must not be kept: store inactive; a copy is already there
 * (f->live is then set: serve it with nori__near_get rather than read
 * Redis); or another thread's fill is in flight (it is left alone: under
 * steady concurrent misses of a hot key, replacing it would let no fill
 * finish). The caller that reads Redis anyway reports what it read with
 * nori__near_note_read(f = NULL).
 */
bool nori__near_fill_begin(nori__near *n, const char *key, size_t klen, nori__near_fill *f);

/*
 * A read of `key` from Redis whose result the caller returns, and that is
 * not kept: made without a fill (f NULL), or by the fill `f` when its reply
 * is a nil or may not be kept (not proved). It saw val[0..len) (found) or
 * nothing (!found, a nil). Ends f's fill if its marker is still in place;
 * otherwise tells the fill in flight (or the copy) what was read: rule 2
 * of the monotonic reads above.
 */
void nori__near_note_read(nori__near *n, const char *key, size_t klen, const nori__near_fill *f,
                          const void *val, size_t len, bool found);

/*
 * The value read by the fill begun with `f`, proved (client.h): stores it
 * when f's marker is still in place (nothing invalidated the key or flushed
 * the store since, and every concurrent read reported the same value),
 * tracking is still proved and the bounds allow it. pttl_ms: the key's
 * PTTL read with the value (-1: no expiry; -2 or 0: gone, nothing stored).
 * When f's marker is gone the read is reported as nori__near_note_read
 * does. Returns true when stored. The value is copied.
 */
bool nori__near_fill_end(nori__near *n, const char *key, size_t klen, const nori__near_fill *f,
                         const void *val, size_t len, int64_t pttl_ms);

/* Gives up a fill whose read failed (an error, a redirection: the caller
 * returns no value): removes its marker if it is still the one `f`
 * placed. */
void nori__near_fill_cancel(nori__near *n, const char *key, size_t klen,
                            const nori__near_fill *f);

/* An invalidation message named `key`: drops its copy or marker (counted). */
void nori__near_invalidate(nori__near *n, const char *key, size_t klen);

/* This process wrote `key` (set, delete, incr, atomic_update): drops its
 * copy or marker at once, so the next read goes to Redis (not counted as an
 * invalidation received). */
void nori__near_drop(nori__near *n, const char *key, size_t klen);

/* Empties the store (values and markers), counting `cause`. */
void nori__near_flush(nori__near *n, nori__near_flush_cause cause);

/*
 * One listener proved tracking (active = true: serve and fill from now on)
 * or lost it (false: bump the epoch, then flush counting `cause`; the store
 * stops serving once no listener is proved any more). Calls are counted:
 * each listener pairs every false with an earlier true of its own.
 * Deactivating a store no listener proved changes nothing, counts nothing.
 */
void nori__near_set_active(nori__near *n, bool active, nori__near_flush_cause cause);

/* True while at least one listener has tracking proved. */
bool nori__near_is_active(const nori__near *n);

/* Counters since creation, and the entries and bytes held now. */
void nori__near_get_stats(nori__near *n, nori__near_stats *out);

#endif
