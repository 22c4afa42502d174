// SPDX-License-Identifier: MIT
/*
 * set_guarded on Redis (backend.h): write an entry only if a guard key
 * still holds what the writer read before it computed the entry. The
 * response cache guards its stores with its invalidation generations this
 * way (src/http/generation.c), across every process sharing the server.
 *
 * One Lua script over both keys: GET guard, compare, SET key [EX ttl]. No
 * write of the guard can fall between the check and the write. The script
 * is sent with EVAL each time (a few hundred bytes; EVAL caches it on the
 * server), as delete_if_equal's is.
 *
 * A script's keys must share one cluster slot (the server answers
 * CROSSSLOT otherwise), and an entry key and a generation key rarely do. On
 * a cluster where they do not, the write is made in three steps instead:
 * GET guard and compare, SET key, GET guard again, and when it moved,
 * delete the entry again if it is still the one written. A guard write
 * between the SET and the second GET is then seen, but for that one round
 * trip a reader may be served the entry. nori/http.h says so.
 */
#include "redis/internal.h"

#include "error.h"
#include "redis/route/cluster_slots.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char GUARDED_SET_SCRIPT[] =
    "local g = redis.call('GET', KEYS[2]) "
    "if ARGV[3] == '1' then if g ~= ARGV[4] then return 0 end "
    "elseif g then return 0 end "
    "if ARGV[2] == '0' then redis.call('SET', KEYS[1], ARGV[1]) "
    "else redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end "
    "return 1";

typedef struct {
    redis_backend *rb;
    const char **argv;
    const size_t *lens;
    const char *key;
    int *stored;
    bool crossslot; /* the server refused the two keys in one script */
} guarded_ctx;

static int guarded_body(nori__topo_attempt *a, void *ctx)
{
    guarded_ctx *g = ctx;
    redisReply *r;
    int rc = nori__redis_conn_command(&a->conn, 9, g->argv, g->lens, &r, "set_guarded (EVAL)",
                                      g->key);
    if (rc != NORI_OK)
        return rc;
    if (nori__topo_redirected(g->rb->topo, a, r))
        rc = NORI__REDIRECTED;
    else if (r->type == REDIS_REPLY_INTEGER)
        *g->stored = r->integer == 1;
    else if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "CROSSSLOT", 9) == 0)
        g->crossslot = true;
    else
        rc = nori__redis_reply_fail(a->conn.node, r, "set_guarded (EVAL)", g->key);
    freeReplyObject(r);
    return rc;
}

/* Whether guard holds expect[0..elen) (expect NULL: is absent). NORI_OK
 * with *same, or the read's error. */
static int guard_is(nori_backend *b, const char *guard, size_t glen, const void *expect,
                    size_t elen, bool *same)
{
    nori_buf v = {NULL, 0};
    int rc = nori__redis_ops.get(b, guard, glen, &v);
    if (rc != NORI_OK && rc != NORI_MISS)
        return rc;
    *same = expect == NULL ? rc == NORI_MISS
                           : rc == NORI_OK && v.len == elen && memcmp(v.data, expect, elen) == 0;
    nori_buf_free(&v);
    return NORI_OK;
}

/* The three steps for keys in different cluster slots (see above). */
static int guarded_steps(nori_backend *b, const char *key, size_t klen, const void *val,
                         size_t len, int64_t ttl, const char *guard, size_t glen,
                         const void *expect, size_t elen, int *stored)
{
    bool same;
    int rc = guard_is(b, guard, glen, expect, elen, &same);
    if (rc != NORI_OK || !same)
        return rc;
    rc = nori__redis_ops.set(b, key, klen, val, len, ttl);
    if (rc != NORI_OK)
        return rc;
    rc = guard_is(b, guard, glen, expect, elen, &same);
    if (rc == NORI_OK && same) {
        *stored = 1;
        return NORI_OK;
    }
    /* Moved, or unknown: take the entry back unless another writer has
     * replaced it meanwhile. */
    int deleted;
    int drc = nori__redis_ops.delete_if_equal(b, key, klen, val, len, &deleted);
    return rc != NORI_OK ? rc : drc;
}

int nori__redis_set_guarded(nori_backend *b, const char *key, size_t klen, const void *val,
                            size_t len, int64_t ttl, const char *guard, size_t glen,
                            const void *expect, size_t elen, int *stored)
{
    redis_backend *rb = (redis_backend *)b;
    wire_key k, g;
    make_key(&k, key, klen);
    make_key(&g, guard, glen);
    if (nori__topo_mode(rb->topo) == NORI_TOPO_CLUSTER &&
        nori__cluster_keyslot(k.s, k.len) != nori__cluster_keyslot(g.s, g.len))
        return guarded_steps(b, key, klen, val, len, ttl, guard, glen, expect, elen, stored);
    char ttl_text[24];
    int ttl_len = snprintf(ttl_text, sizeof ttl_text, "%" PRId64, ttl);
    const char *argv[] = {"EVAL",
                          GUARDED_SET_SCRIPT,
                          "2",
                          k.s,
                          g.s,
                          (const char *)val,
                          ttl_text,
                          expect != NULL ? "1" : "0",
                          expect != NULL ? (const char *)expect : ""};
    const size_t lens[] = {4, sizeof GUARDED_SET_SCRIPT - 1, 1, k.len, g.len, len,
                           (size_t)ttl_len, 1, expect != NULL ? elen : 0};
    guarded_ctx c = {rb, argv, lens, key, stored, false};
    /* Resending after an I/O error is safe: the same check, the same value. */
    int rc = nori__topo_call(rb->topo, k.s, k.len, true, guarded_body, &c, "set_guarded (EVAL)",
                             key);
    if (rc == NORI_OK && c.crossslot) /* the mode was not known yet */
        return guarded_steps(b, key, klen, val, len, ttl, guard, glen, expect, elen, stored);
    return rc;
}
