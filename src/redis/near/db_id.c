// SPDX-License-Identifier: MIT
/*
 * The near cache's database identity marker (see db_id.h).
 */
#include "redis/near/db_id.h"

#include "clock.h"
#include "hash.h"
#include "redis/wire/io.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* A fresh token: 128 random bits in hex, with a readable prefix for whoever
 * finds the key in Redis. */
static void new_token(char *buf, size_t size)
{
    snprintf(buf, size, "nori-near-%016" PRIx64 "%016" PRIx64, nori__hash_seed(),
             nori__hash_seed());
}

/* What one GET of the marker says: known (token copied into *id), absent,
 * off (a cluster node without its slot), or unknown (an error reply or a
 * reply of another type: the check is skipped this time). */
static nori__near_db_id_state read_marker(const redisReply *r, nori__near_db_id *out)
{
    if (r->type == REDIS_REPLY_STRING && r->len < sizeof out->token) {
        memcpy(out->token, r->str, r->len);
        out->token[r->len] = '\0';
        out->len = r->len;
        return NORI__DB_ID_KNOWN;
    }
    if (r->type == REDIS_REPLY_NIL)
        return NORI__DB_ID_ABSENT;
    if (r->type == REDIS_REPLY_ERROR &&
        (strncmp(r->str, "MOVED ", 6) == 0 || strncmp(r->str, "ASK ", 4) == 0))
        return NORI__DB_ID_OFF;
    return NORI__DB_ID_UNKNOWN;
}

/*
 * One round trip: GET key, preceded by SET key <new token> NX when `write`.
 * Returns false when c failed (no reply); else *seen is what the GET says
 * and *wrote whether the SET wrote our token.
 */
static bool round_trip(redisContext *c, const char *key, int timeout_ms, bool write,
                       nori__near_db_id *seen, bool *wrote)
{
    char token[sizeof seen->token];
    new_token(token, sizeof token);
    const char *set[] = {"SET", key, token, "NX"};
    const char *get[] = {"GET", key};
    if (write && redisAppendCommandArgv(c, 4, set, NULL) != REDIS_OK)
        return false;
    if (redisAppendCommandArgv(c, 2, get, NULL) != REDIS_OK)
        return false;
    redisReply *replies[2];
    size_t n = write ? 2 : 1;
    if (nori__redis_io_roundtrip(c, nori__real_ms() + timeout_ms, &nori__redis_small_replies,
                                 n, replies) != 0)
        return false;
    redisReply *g = replies[n - 1];
    *wrote = write && replies[0]->type == REDIS_REPLY_STATUS;
    seen->len = 0;
    seen->token[0] = '\0';
    seen->state = read_marker(g, seen);
    *wrote = *wrote && seen->state == NORI__DB_ID_KNOWN && strcmp(seen->token, token) == 0;
    for (size_t i = 0; i < n; i++)
        freeReplyObject(replies[i]);
    return true;
}

static bool same(const nori__near_db_id *a, const nori__near_db_id *b)
{
    if (a->state != b->state)
        return false;
    return a->state != NORI__DB_ID_KNOWN ||
           (a->len == b->len && memcmp(a->token, b->token, a->len) == 0);
}

nori__near_db_id_result nori__near_db_id_check(nori__near_db_id *id, redisContext *c,
                                               const char *key, int timeout_ms, bool first)
{
    if (first)
        memset(id, 0, sizeof *id);
    if (id->state == NORI__DB_ID_OFF)
        return NORI__DB_ID_SAME;
    nori__near_db_id seen;
    bool wrote = false;
    if (!round_trip(c, key, timeout_ms, id->state != NORI__DB_ID_KNOWN, &seen, &wrote))
        return NORI__DB_ID_NO_REPLY;
    if (seen.state == NORI__DB_ID_OFF) {
        /* A cluster node (SWAPDB is refused there): nothing to watch. */
        id->state = NORI__DB_ID_OFF;
        return NORI__DB_ID_SAME;
    }
    if (seen.state == NORI__DB_ID_UNKNOWN)
        return NORI__DB_ID_SAME; /* not readable now: the state stays, asked again */
    if (first) {
        *id = seen;
        return NORI__DB_ID_SAME;
    }
    /* Our own SET NX filled an absent marker: the same keyspace as before
     * (a swap between two databases without a marker cannot be seen). */
    if (same(id, &seen) || (id->state == NORI__DB_ID_ABSENT && wrote)) {
        *id = seen;
        return NORI__DB_ID_SAME;
    }
    /* Another keyspace, or one read for the first time since the session
     * began: adopt its marker (written now when it has none), then the
     * caller flushes, in that order, so that nothing read before the
     * adopted marker is kept. */
    if (seen.state == NORI__DB_ID_ABSENT &&
        !round_trip(c, key, timeout_ms, true, &seen, &wrote))
        return NORI__DB_ID_NO_REPLY;
    *id = seen;
    return NORI__DB_ID_CHANGED;
}
