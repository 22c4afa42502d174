// SPDX-License-Identifier: MIT
/*
 * Checks of the shared-memory backend for tests (shm/shm.h): an audit under
 * every shard lock, where a key lives, a sweep on demand.
 */
#include "shm/internal.h"

#include "shm/shm.h"

#include "error.h"

#include <string.h>

/* Walks the arena: free pages, slab pages and the chunks they have in use.
 * With every shard locked nothing allocates or frees (every arena section
 * runs inside a shard's), so the counts are exact. */
static bool audit_arena(shm_backend *sb, uint64_t entries, uint64_t bytes, uint64_t large_pages)
{
    shm_global *g = sb->g;
    uint64_t free_listed = 0;
    for (uint32_t i = LD(&g->free_head); i != 0; i = LD(&sb->pages[i - 1].next)) {
        if (i > sb->npages || ++free_listed > sb->npages)
            return false;
        if (SHM_PAGE_CLS(LD(&sb->pages[i - 1].clsused)) != 0)
            return false;
    }
    uint64_t slab_pages = 0, chunks = 0;
    for (uint64_t i = 0; i < sb->npages; i++) {
        uint32_t cu = LD(&sb->pages[i].clsused);
        if (SHM_PAGE_CLS(cu) != 0) {
            slab_pages++;
            chunks += SHM_PAGE_USED(cu);
        }
    }
    uint64_t slots_used = 0;
    for (uint64_t w = 0; w < (sb->nslots + 63) / 64; w++)
        slots_used += (uint64_t)__builtin_popcountll(LD(&sb->slotmap[w]));
    slots_used -= (64 - sb->nslots % 64) % 64; /* the last word's padding bits */
    return free_listed == LD(&g->free_pages) && slots_used == entries &&
           LD(&g->free_slots) == sb->nslots - entries &&
           free_listed + slab_pages + large_pages == sb->npages && chunks == entries &&
           LD(&g->places) == entries && LD(&g->bytes) == bytes &&
           atomic_load_explicit(&g->log.n, memory_order_relaxed) == 0;
}

int64_t nori__shm_audit(nori_backend *b)
{
    shm_backend *sb = nori__shm_as_shm(b);
    if (sb == NULL)
        return -1;
    /* First each shard alone: a shard left open by a dead process is
     * repaired now, with its lock and the arena's only (ThreadSanitizer's
     * deadlock detector tracks 64 locks per thread: the pass below holds
     * 64 already). */
    for (int i = 0; i < SHM_NSHARDS; i++)
        if (nori__shm_shard_lock(sb, &sb->shards[i]) == NORI_OK)
            nori__shm_shard_unlock(sb, &sb->shards[i]);
    int locked = 0;
    for (; locked < SHM_NSHARDS; locked++)
        if (nori__shm_shard_lock(sb, &sb->shards[locked]) != NORI_OK)
            break; /* the message says which lock */
    bool ok = locked == SHM_NSHARDS;
    /* An arena section left open by a dead process is rolled back by the
     * next holder of the arena lock: take it. Not as a 65th lock (the
     * deadlock detector of ThreadSanitizer tracks 64): the last shard is
     * let go meanwhile; whoever takes it finishes any arena section before
     * letting it go, and every other shard stays held, so the arena is
     * quiet again once it is back. */
    if (ok && atomic_load_explicit(&sb->g->log.n, memory_order_acquire) != 0) {
        shm_shard *last = &sb->shards[SHM_NSHARDS - 1];
        nori__shm_shard_unlock(sb, last);
        locked--;
        ok = nori__shm_arena_lock(sb) == NORI_OK;
        if (ok)
            nori__shm_arena_unlock(sb);
        ok = ok && nori__shm_shard_lock(sb, last) == NORI_OK;
        if (ok)
            locked++;
    }
    uint64_t entries = 0, bytes = 0, large_pages = 0;
    for (int i = 0; ok && i < SHM_NSHARDS; i++) {
        shm_shard *s = &sb->shards[i];
        ok = nori__shm_do_audit_shard(sb, s, &entries, &bytes);
        if (!ok)
            nori__fail(NORI_EBACKEND, "audit: shard %d disagrees with itself", i);
        for (uint32_t r = LD(&s->lru_head); ok && r != 0; r = LD(&shm_entry_at(sb, r)->lru_next)) {
            shm_entry *e = shm_entry_at(sb, r);
            if (LD(&e->flags) & SHM_LARGE)
                large_pages += shm_value_pages(LD(&e->vlen));
        }
    }
    if (ok && !(ok = audit_arena(sb, entries, bytes, large_pages)))
        nori__fail(NORI_EBACKEND,
                   "audit: the arena disagrees with the shards (%llu entries, %llu bytes; room "
                   "counted %llu places, %llu bytes)",
                   (unsigned long long)entries, (unsigned long long)bytes,
                   (unsigned long long)LD(&sb->g->places), (unsigned long long)LD(&sb->g->bytes));
    for (int i = locked - 1; i >= 0; i--)
        nori__shm_shard_unlock(sb, &sb->shards[i]);
    return ok ? (int64_t)entries : -1;
}

int nori__shm_shard_index(nori_backend *b, const char *key)
{
    shm_backend *sb = nori__shm_as_shm(b);
    if (sb == NULL)
        return -1;
    return (int)shm_shard_index(shm_hash(sb, key, strlen(key)));
}

size_t nori__shm_sweep_now(nori_backend *b)
{
    shm_backend *sb = nori__shm_as_shm(b);
    return sb != NULL ? nori__shm_sweep_cycle(sb, INT64_MAX / 2, true) : 0;
}

int nori__shm_shard_owner(nori_backend *b, int shard)
{
    shm_backend *sb = nori__shm_as_shm(b);
    if (sb == NULL || shard < 0 || shard >= SHM_NSHARDS)
        return -1;
    return atomic_load_explicit(&sb->shards[shard].lock.owner_pid, memory_order_relaxed);
}
