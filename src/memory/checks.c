// SPDX-License-Identifier: MIT
/*
 * The memory backend's checks for tests and benchmarks (memory/memory.h):
 * an audit under every shard lock, where a key lives, the size of its
 * block, and a sweep on demand.
 */
#include "memory/internal.h"

#include "error.h"
#include "memory/memory.h"

#include <malloc.h>
#include <string.h>


int64_t nori__memory_audit_bytes(nori_backend *b, size_t *bytes)
{
    mem_backend *mb = nori__mem_as_memory(b);
    if (mb == NULL)
        return -1;
    for (int i = 0; i < NSHARDS; i++)
        shard_lock(&mb->shards[i]);
    int64_t total = 0;
    size_t held = 0;
    bool ok = true;
    for (int i = 0; i < NSHARDS; i++) {
        ok = ok && nori__mem_do_audit_shard(&mb->shards[i], &held);
        total += (int64_t)atomic_load_explicit(&mb->shards[i].count, memory_order_relaxed);
    }
    /* The global counters include the room of writes in flight. */
    ok = ok && atomic_load_explicit(&mb->places, memory_order_relaxed) >= (size_t)total &&
         atomic_load_explicit(&mb->bytes, memory_order_relaxed) >= held;
    for (int i = NSHARDS - 1; i >= 0; i--)
        shard_unlock(&mb->shards[i]);
    if (bytes != NULL)
        *bytes = held;
    return ok ? total : -1;
}

int64_t nori__memory_audit(nori_backend *b)
{
    return nori__memory_audit_bytes(b, NULL);
}

int nori__memory_shard_index(nori_backend *b, const char *key)
{
    mem_backend *mb = nori__mem_as_memory(b);
    if (mb == NULL)
        return -1;
    return (int)(shard_of(mb, nori__hash_key(mb->seed, key, strlen(key))) - mb->shards);
}

uint64_t nori__memory_key_hash(nori_backend *b, const char *key)
{
    mem_backend *mb = nori__mem_as_memory(b);
    return mb != NULL ? nori__hash_key(mb->seed, key, strlen(key)) : 0;
}

size_t nori__memory_buckets(nori_backend *b, int shard)
{
    mem_backend *mb = nori__mem_as_memory(b);
    if (mb == NULL || shard < 0 || shard >= NSHARDS)
        return 0;
    mem_shard *s = &mb->shards[shard];
    shard_lock(s);
    size_t n = do_table(s)->nbuckets;
    shard_unlock(s);
    return n;
}

int nori__memory_rebuild_table(nori_backend *b, int shard, size_t nbuckets)
{
    mem_backend *mb = nori__mem_as_memory(b);
    if (mb == NULL || shard < 0 || shard >= NSHARDS)
        return nori__fail(NORI_EINVAL, "rebuild_table: not a memory backend, or no shard %d",
                          shard);
    mem_shard *s = &mb->shards[shard];
    shard_lock(s);
    int rc = nori__mem_do_rebuild(s, nbuckets);
    nori__mem_do_reclaim(s);
    shard_unlock(s);
    return rc;
}

size_t nori__memory_block_size(nori_backend *b, const char *key)
{
    mem_backend *mb = nori__mem_as_memory(b);
    if (mb == NULL)
        return 0;
    size_t klen = strlen(key);
    uint64_t hash = nori__hash_key(mb->seed, key, klen);
    mem_shard *s = shard_of(mb, hash);
    shard_lock(s);
    mem_link *l = nori__mem_do_find_link(s, key, klen, hash);
    mem_entry *e = l != NULL ? link_get(l) : NULL;
    size_t size = e == NULL ? 0
                  : (entry_flags(e) & MAPPED) ? page_round(entry_size(entry_klen(e), e->vlen,
                                                                 entry_has_expiry(e)))
                                         : malloc_usable_size(e);
    shard_unlock(s);
    return size;
}

size_t nori__memory_sweep_now(nori_backend *b)
{
    mem_backend *mb = nori__mem_as_memory(b);
    if (mb == NULL)
        return 0;
    size_t removed = 0, n;
    /* A pass that shrinks a table continues over the new one from its first
     * bucket, for the buckets the old one had left: it may not see every
     * entry. The pass after it does. */
    while ((n = nori__mem_sweep_cycle(mb, INT64_MAX / 2, true)) > 0)
        removed += n;
    return removed;
}
