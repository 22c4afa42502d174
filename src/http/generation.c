// SPDX-License-Identifier: MIT
/*
 * Invalidation generations of the response cache. A fill whose handler
 * began before a successful write to its path must not store after the
 * write's invalidation: its entry would hold the pre-write representation
 * for the whole ttl, and the client that wrote would read its write back as
 * the old body.
 *
 * A write bumps the generation of its invalidation scope ("{prefix}:{path}:",
 * or "{prefix}:" on a route with a key function, exactly what it deletes)
 * before it deletes the scope's entries. A fill reads the generation before
 * its handler runs and stores only if it did not move since: a store either
 * lands before the bump (so the deletion that follows removes it) or sees
 * the bump and writes nothing. Scopes are hashed into NORI__GEN_BUCKETS
 * buckets, so the state stays bounded whatever paths are written. In the
 * process each bucket also remembers the scopes of its last bumps, so a
 * write to another path of the same bucket does not cost a concurrent fill
 * its store (unless more than a few came meanwhile); on a shared backend
 * it still does (the backend's token says only that the bucket moved).
 *
 * In the process: a counter per bucket, bumped and compared under the
 * bucket's stripe lock, and an unshared backend's write (the memory
 * backend's) happens under that lock too, so a store and a bump cannot
 * interleave. On a shared backend (nori__traits.shared: Redis) the
 * bucket's generation is also a key "{prefix}#gen:{bucket}"
 * (never an entry key: an entry has a ':'-separated path and query after
 * the prefix) holding a random token per bump, not a counter, so that a
 * flush or an eviction followed by bumps can never bring back the value a
 * fill read before. The store there is nori__backend_set_guarded: one
 * script that checks the token and writes the entry.
 */
#include "http/internal.h"

#include "backend.h"
#include "error.h"
#include "hash.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STRIPES 64
/* Bumps remembered per bucket, with the hash of the scope each was for. */
#define RECENT 4

struct nori__gens {
    pthread_mutex_t locks[STRIPES];
    _Atomic uint64_t gen[NORI__GEN_BUCKETS];
    /* recent[bucket][gen % RECENT]: the scope hash of the bump that made
     * gen; written and read under the bucket's stripe lock. */
    uint64_t recent[NORI__GEN_BUCKETS][RECENT];
};

int nori__gens_new(nori__gens **out)
{
    nori__gens *g = calloc(1, sizeof *g);
    if (g == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory creating the generation table");
    for (size_t i = 0; i < STRIPES; i++)
        pthread_mutex_init(&g->locks[i], NULL);
    *out = g;
    return NORI_OK;
}

void nori__gens_free(nori__gens *g)
{
    if (g == NULL)
        return;
    for (size_t i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&g->locks[i]);
    free(g);
}

/* FNV-1a: the same bucket in every process (the key names it), unlike the
 * seeded hash of the in-process tables. */
static uint64_t scope_hash(const char *scope)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)scope; *p != '\0'; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

static unsigned bucket_of(const char *scope)
{
    return (unsigned)(scope_hash(scope) % NORI__GEN_BUCKETS);
}

unsigned nori__gen_bucket(const char *scope)
{
    return bucket_of(scope);
}

/*
 * Whether every bump of gd's bucket since gd was read was for another
 * scope (a write to another path that shares the bucket): then the fill
 * may still store. Only the last RECENT bumps are remembered; more, and it
 * is taken as superseded. Called with the bucket's stripe lock held.
 */
static bool do_only_others_bumped(const nori__gens *g, const nori__gen_guard *gd, uint64_t now)
{
    if (now - gd->local > RECENT)
        return false;
    for (uint64_t v = gd->local + 1; v <= now; v++)
        if (g->recent[gd->bucket][v % RECENT] == gd->scope)
            return false;
    return true;
}

/* Other processes write to b: the generation lives in the backend too. */
static bool shared_backend(const nori_backend *b)
{
    return nori__backend_traits(b)->shared;
}

static int gen_key(const char *prefix, unsigned bucket, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s#gen:%u", prefix, bucket);
    if (n < 0 || (size_t)n >= cap || n > NORI_MAX_KEY_LEN)
        return nori__fail(NORI_ETOOBIG, "generation key of prefix %.64s is over the key limit",
                          prefix);
    return NORI_OK;
}

int nori__gen_scope(const char *prefix, bool whole_prefix, const nori_http_request *req,
                    char *out, size_t cap)
{
    if (whole_prefix) {
        int n = snprintf(out, cap, "%s:", prefix);
        return n >= 0 && (size_t)n < cap && n <= NORI_MAX_KEY_LEN
                   ? NORI_OK
                   : nori__fail(NORI_ETOOBIG, "prefix %.64s is over the key limit", prefix);
    }
    return nori__http_key_build(prefix, NULL, req->path, "", NULL, 0, req, out, cap);
}

uint64_t nori__gen_epoch(nori__gens *g, const char *scope)
{
    return atomic_load(&g->gen[bucket_of(scope)]);
}

void nori__gen_read(nori__gens *g, nori_backend *b, const char *prefix, const char *scope,
                    nori__gen_guard *out)
{
    memset(out, 0, sizeof *out);
    out->scope = scope_hash(scope);
    out->bucket = (unsigned)(out->scope % NORI__GEN_BUCKETS);
    out->local = atomic_load(&g->gen[out->bucket]);
    out->shared = shared_backend(b);
    if (!out->shared) {
        out->ok = true;
        return;
    }
    if (gen_key(prefix, out->bucket, out->key, sizeof out->key) != NORI_OK)
        return;
    int rc = nori_backend_get(b, out->key, &out->remote);
    out->ok = rc == NORI_OK || rc == NORI_MISS; /* MISS: never bumped (or flushed) */
}

void nori__gen_guard_clear(nori__gen_guard *gd)
{
    nori_buf_free(&gd->remote);
}

int nori__gen_store(nori__gens *g, nori_backend *b, const nori__gen_guard *gd, const char *key,
                    const void *val, size_t len, int64_t ttl, int *stored)
{
    *stored = 0;
    if (!gd->ok)
        return nori__fail(NORI_EBACKEND, "generation of %.64s unknown: not stored", key);
    /* A bump in this process since the read: no need to ask the backend
     * (whose token that bump moved too). */
    if (gd->shared) {
        if (atomic_load(&g->gen[gd->bucket]) != gd->local)
            return NORI_OK;
        return nori__backend_set_guarded(b, key, val, len, ttl, gd->key, gd->remote.data,
                                         gd->remote.len, stored);
    }
    /* In the process the bumps are known one by one: a write to another
     * scope of the bucket does not cost this fill its store. */
    pthread_mutex_t *lock = &g->locks[gd->bucket % STRIPES];
    pthread_mutex_lock(lock);
    int rc = NORI_OK;
    uint64_t now = atomic_load(&g->gen[gd->bucket]);
    if (now == gd->local || do_only_others_bumped(g, gd, now)) {
        rc = nori_backend_set(b, key, val, len, ttl);
        *stored = rc == NORI_OK;
    }
    pthread_mutex_unlock(lock);
    return rc;
}

int nori__gen_bump(nori__gens *g, nori_backend *b, const char *prefix, const char *scope)
{
    uint64_t h = scope_hash(scope);
    unsigned bucket = (unsigned)(h % NORI__GEN_BUCKETS);
    pthread_mutex_t *lock = &g->locks[bucket % STRIPES];
    pthread_mutex_lock(lock);
    uint64_t v = atomic_fetch_add(&g->gen[bucket], 1) + 1;
    g->recent[bucket][v % RECENT] = h;
    pthread_mutex_unlock(lock);
    if (!shared_backend(b))
        return NORI_OK;
    char key[NORI_MAX_KEY_LEN + 1], token[40];
    int rc = gen_key(prefix, bucket, key, sizeof key);
    if (rc != NORI_OK)
        return rc;
    /* 128 random bits: no two bumps, in any process, write the same value. */
    int n = snprintf(token, sizeof token, "%016" PRIx64 "%016" PRIx64, nori__hash_seed(),
                     nori__hash_seed());
    return nori_backend_set(b, key, token, (size_t)n, 0);
}
