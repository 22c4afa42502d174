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
 * interleave. On a shared backend (nori__traits.shared: Redis, shm) the
 * bucket's generation is also a key "{prefix}#gen:{bucket}" (never an entry
 * key: an entry has a ':'-separated path and query after the prefix)
 * holding the bucket's last SHARED_RECENT bumps, newest first, each a
 * random token and the hash of the scope it was for:
 *     "<32 hex token>.<16 hex scope hash>,<token>.<scope>,..."
 * A random token, not a counter, so that a flush or an eviction followed by
 * bumps can never bring back the value a fill read before. A bump is an
 * atomic_update of that list. The store is nori__backend_set_guarded (one
 * step that compares the key's whole value and writes the entry): against
 * the value the fill read, or, when the bucket moved meanwhile only for
 * other scopes (the read value's newest token is still in the list, and
 * every bump above it is another scope's), against the value just read. A
 * busy bucket thus costs a fill its store only when its own scope was
 * written, or more than SHARED_RECENT writes came meanwhile: the safe side.
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
/* Bumps kept in a shared backend's generation key (its value stays under
 * SHARED_RECENT * 50 bytes). More than the process remembers: the bumps of
 * every process sharing the backend land there. */
#define SHARED_RECENT 8
#define TOKEN_HEX 32
#define SCOPE_HEX 16
#define BUMP_LEN (TOKEN_HEX + 1 + SCOPE_HEX) /* "<token>.<scope>" */

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

/* Whether v[0..n) is a list of bumps "<token>.<scope>,..." (at most
 * SHARED_RECENT); *count gets their number. Anything else (a value some
 * other writer left) is not, and then only equality lets a fill store. */
static bool bumps_parse(const char *v, size_t n, size_t *count)
{
    *count = 0;
    if (v == NULL || n == 0 || (n + 1) % (BUMP_LEN + 1) != 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        size_t at = i % (BUMP_LEN + 1);
        char c = v[i];
        bool ok = at == TOKEN_HEX ? c == '.'
                  : at == BUMP_LEN ? c == ','
                                   : (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
        if (!ok)
            return false;
    }
    *count = (n + 1) / (BUMP_LEN + 1);
    return *count <= SHARED_RECENT;
}

static uint64_t bump_scope(const char *bump)
{
    uint64_t h = 0;
    for (int i = 0; i < SCOPE_HEX; i++) {
        char c = bump[TOKEN_HEX + 1 + i];
        h = h << 4 | (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    return h;
}

/*
 * Whether the bumps in cur since the fill read `read` were all for other
 * scopes than `scope`: read's newest token is in cur, and none above it is
 * scope's. read absent (never bumped, or flushed): every bump of cur came
 * since, so cur must hold them all (fewer than it keeps).
 */
static bool only_others_since(const nori_buf *read, const nori_buf *cur, uint64_t scope)
{
    size_t nread, ncur;
    if (!bumps_parse(cur->data, cur->len, &ncur))
        return false;
    bool had = read->data != NULL;
    if (had && !bumps_parse(read->data, read->len, &nread))
        return false;
    for (size_t i = 0; i < ncur; i++) {
        const char *bump = cur->data + i * (BUMP_LEN + 1);
        if (had && memcmp(bump, read->data, TOKEN_HEX) == 0)
            return true;
        if (bump_scope(bump) == scope)
            return false;
    }
    return !had && ncur < SHARED_RECENT;
}

static int shared_store(nori__gens *g, nori_backend *b, const nori__gen_guard *gd,
                        const char *key, const void *val, size_t len, int64_t ttl, int *stored)
{
    /* Bumps in this process since the read are known one by one: one of
     * this scope, and the backend need not be asked. */
    pthread_mutex_t *lock = &g->locks[gd->bucket % STRIPES];
    pthread_mutex_lock(lock);
    uint64_t now = atomic_load(&g->gen[gd->bucket]);
    bool local_ok = now == gd->local || do_only_others_bumped(g, gd, now);
    pthread_mutex_unlock(lock);
    if (!local_ok)
        return NORI_OK;
    int rc = nori__backend_set_guarded(b, key, val, len, ttl, gd->key, gd->remote.data,
                                       gd->remote.len, stored);
    if (rc != NORI_OK || *stored)
        return rc;
    /* The bucket moved: by other scopes only? Then against what it holds
     * now (a bump between this read and that store refuses it again). */
    nori_buf cur;
    rc = nori_backend_get(b, gd->key, &cur);
    if (rc == NORI_MISS)
        return NORI_OK; /* flushed or evicted meanwhile: superseded */
    if (rc != NORI_OK)
        return rc;
    if (only_others_since(&gd->remote, &cur, gd->scope))
        rc = nori__backend_set_guarded(b, key, val, len, ttl, gd->key, cur.data, cur.len, stored);
    nori_buf_free(&cur);
    return rc;
}

int nori__gen_store(nori__gens *g, nori_backend *b, const nori__gen_guard *gd, const char *key,
                    const void *val, size_t len, int64_t ttl, int *stored)
{
    *stored = 0;
    if (!gd->ok)
        return nori__fail(NORI_EBACKEND, "generation of %.64s unknown: not stored", key);
    if (gd->shared)
        return shared_store(g, b, gd, key, val, len, ttl, stored);
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

/* atomic_update's step of a bump: ud (the new bump) first, then the newest
 * SHARED_RECENT - 1 of the list (a value that is no list is dropped). The
 * same result however often it runs (Redis may run it again). */
static int push_bump(const nori_buf *current, nori_buf *next, void *ud)
{
    size_t n = 0;
    if (current != NULL && !bumps_parse(current->data, current->len, &n))
        n = 0;
    if (n > SHARED_RECENT - 1)
        n = SHARED_RECENT - 1;
    size_t len = BUMP_LEN + n * (BUMP_LEN + 1);
    char *v = malloc(len + 1);
    if (v == NULL)
        return 1;
    memcpy(v, ud, BUMP_LEN);
    if (n > 0) {
        v[BUMP_LEN] = ',';
        memcpy(v + BUMP_LEN + 1, current->data, n * (BUMP_LEN + 1) - 1);
    }
    v[len] = '\0';
    next->data = v;
    next->len = len;
    return 0;
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
    char key[NORI_MAX_KEY_LEN + 1], bump[BUMP_LEN + 1];
    int rc = gen_key(prefix, bucket, key, sizeof key);
    if (rc != NORI_OK)
        return rc;
    /* 128 random bits: no two bumps, in any process, write the same value. */
    snprintf(bump, sizeof bump, "%016" PRIx64 "%016" PRIx64 ".%016" PRIx64, nori__hash_seed(),
             nori__hash_seed(), h);
    return nori_backend_atomic_update(b, key, push_bump, bump, 0, NULL);
}
