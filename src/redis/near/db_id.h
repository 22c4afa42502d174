// SPDX-License-Identifier: MIT
/*
 * The near cache's database identity marker: what tells a listener that the
 * keys of its node's database were replaced wholesale without any
 * invalidation message.
 *
 * Redis (7.0 at least) sends no tracking invalidation for SWAPDB: clients of
 * database 0 see another keyspace at once, and every local copy would stay
 * until its cap (max_ttl_ms). ("Build in db 1, then SWAPDB 0 1" is a common
 * way to reload a data set.) Redis keeps nothing per database that such a
 * swap changes and a client can read (INFO keyspace only counts keys;
 * run_id and the replication ids do not change), so the near cache keeps
 * its own marker in the database: the key `cache:__nori_near_db_id__`
 * (NORI_NEAR_DB_ID_KEY under the backend's prefix), holding a random token,
 * written once with SET NX by the first listener that finds it absent and
 * read by every listener (every process) at each heartbeat on its control
 * connection. A swap brings another database's marker or none: the listener
 * adopts the new one (writing one when absent) and then flushes the store,
 * so that every fill begun before is discarded and every read after it
 * comes from the database that holds the adopted marker.
 *
 * What it covers, and what not:
 *  - SWAPDB on a single server or a sentinel master: bounded by one
 *    heartbeat (500 ms) plus a round trip.
 *  - A flush of the cache (this library's or Python's SCAN cache:* +
 *    UNLINK) deletes the marker too: the next heartbeat writes a new one and
 *    flushes the store once more (harmless: the keys were deleted, and their
 *    invalidations are on their way anyway).
 *  - FLUSHALL, FLUSHDB and DEBUG RELOAD send a "flush everything"
 *    invalidation (the nil payload) already; a restart closes the
 *    listener's connection. A restore that brings back an older copy of the
 *    same database (an RDB saved after the marker was written, loaded
 *    without a restart) keeps the marker and is not detected: it is bounded
 *    by max_ttl_ms only.
 *  - Redis Cluster refuses SWAPDB; the marker's slot lives on one master,
 *    which checks it; the listeners of the other masters get MOVED and
 *    leave it alone (counted as unchecked).
 *  - A node where the marker cannot be read (an ACL that forbids the key,
 *    an error reply) is retried at each heartbeat and counted as unchecked
 *    meanwhile; once it can be read the store is flushed (what was kept in
 *    between may come from another database). A process that may not write
 *    it (read-only ACL) still sees it appear or change when another one
 *    writes it.
 *
 * Thread-safety: a nori__near_db_id belongs to one listener thread.
 */
#ifndef NORI_SRC_REDIS_NEAR_DB_ID_H
#define NORI_SRC_REDIS_NEAR_DB_ID_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

/* The marker's key, after the backend's key prefix ("cache:"). */
#define NORI_NEAR_DB_ID_KEY "__nori_near_db_id__"

typedef enum {
    NORI__DB_ID_UNKNOWN = 0, /* not read yet, or could not be: read again each heartbeat */
    NORI__DB_ID_ABSENT,      /* no marker, and writing one was refused */
    NORI__DB_ID_KNOWN,       /* `token` is the marker read last */
    NORI__DB_ID_OFF,         /* a cluster node that does not serve the marker's slot */
} nori__near_db_id_state;

typedef struct {
    nori__near_db_id_state state;
    size_t len;
    char token[64];
} nori__near_db_id;

typedef enum {
    NORI__DB_ID_SAME,     /* nothing to do */
    NORI__DB_ID_CHANGED,  /* another marker (adopted already): flush the store now */
    NORI__DB_ID_NO_REPLY, /* the connection failed or timed out: c is dead */
} nori__near_db_id_result;

/*
 * One check of the marker `key` (prefix included) on c, whose database is
 * the one the data connections use; each command bounded by timeout_ms.
 * One round trip (GET; SET NX + GET while no marker is known), two when the
 * marker just went (the second writes a new one). `first`: the session's
 * first check (id is reset), before its listener proves tracking: nothing
 * can have been kept yet, so it never asks for a flush.
 */
nori__near_db_id_result nori__near_db_id_check(nori__near_db_id *id, redisContext *c,
                                               const char *key, int timeout_ms, bool first);

#endif
