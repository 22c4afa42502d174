// SPDX-License-Identifier: MIT
/*
 * Room in a shared-memory segment: an allocation takes a place (max_keys)
 * and its charge (max_bytes) under the arena lock, inside the locked
 * section of its shard, so no room is ever held outside a lock (a process
 * that dies holding room has its section rolled back). When a bound or the
 * arena refuses, the least recently used entry of the segment is evicted:
 * the oldest of the shards' published tail stamps, taken from the caller's
 * own shard, or from another shard by trylock (a busy shard is skipped, as
 * on the memory backend, so a slow atomic_update callback on the oldest
 * key's shard does not stall an insert). When every shard holding entries
 * is busy, the caller lets its own lock go and waits for the oldest one
 * (within the lock timeout), then tries again: never waiting for a lock
 * while holding one (but the arena's, and shards in index order), no
 * two processes can wait for each other.
 */
#include "shm/internal.h"

#include "error.h"

#include <inttypes.h>

int nori__shm_too_big(const shm_backend *sb, const char *key, uint64_t charge)
{
    return nori__fail(NORI_ETOOBIG,
                      "the entry for key '%.64s' counts %" PRIu64 " bytes, the shm segment's "
                      "byte bound (CACHE_MAX_BYTES) is %" PRIu64,
                      key, charge, sb->max_bytes);
}

/* The shard whose published tail is the oldest, skipping the `skip` mask;
 * -1 when none holds an entry. */
static int oldest_tail(const shm_backend *sb, uint64_t skip, uint64_t *stamp)
{
    int idx = -1;
    uint64_t oldest = SHM_EMPTY_STAMP;
    for (int i = 0; i < SHM_NSHARDS; i++) {
        if (skip & ((uint64_t)1 << i))
            continue;
        uint64_t st = atomic_load_explicit(&sb->g->tail_stamps[i], memory_order_relaxed);
        if (st < oldest) {
            oldest = st;
            idx = i;
        }
    }
    *stamp = oldest;
    return idx;
}

static uint64_t stamp_of(const shm_backend *sb, uint32_t ref)
{
    return atomic_load_explicit(&sb->stamps[LD(&shm_entry_at(sb, ref)->slot)],
                                memory_order_relaxed) &
           ~(uint64_t)SHM_TOUCHED;
}

/* Evicts entry ref of the locked shard v, counted as expired when it had
 * expired, and commits (its chunk is freed). */
static void do_evict(shm_backend *sb, shm_shard *v, uint32_t ref)
{
    int64_t t = LD(&shm_entry_at(sb, ref)->expires);
    if (t != 0 && t <= shm_now_coarse_ms())
        nori__shm_log_w64(sb, &v->log, &v->expired, LD(&v->expired) + 1);
    else
        nori__shm_log_w64(sb, &v->log, &v->evictions, LD(&v->evictions) + 1);
    nori__shm_do_remove_ref(sb, v, ref);
    nori__shm_do_commit(sb, v);
}

/* Evicts v's oldest entry if its stamp is still `expected`; otherwise
 * republishes v's tail (a reader touched it) and returns false. */
static bool do_evict_if_oldest(shm_backend *sb, shm_shard *v, uint64_t expected)
{
    uint32_t ref = nori__shm_do_oldest(sb, v, 0);
    if (ref == 0 || stamp_of(sb, ref) != expected) {
        nori__shm_do_publish_tail(sb, v);
        return false;
    }
    do_evict(sb, v, ref);
    return true;
}

/*
 * One eviction for the caller, who holds s: the oldest entry of s (other
 * than keep) or of another shard free now. NORI_OK: one evicted; NORI_MISS:
 * nothing evictable without waiting (*busy says which shards were busy);
 * or an error.
 */
static int evict_one(shm_backend *sb, shm_shard *s, uint32_t keep, uint64_t held, uint64_t *busy)
{
    int own = (int)shm_shard_no(sb, s);
    *busy = 0;
    for (;;) {
        uint32_t mine = nori__shm_do_oldest(sb, s, keep);
        uint64_t other;
        int idx = oldest_tail(sb, *busy | held | ((uint64_t)1 << own), &other);
        if (mine != 0 && (idx < 0 || stamp_of(sb, mine) <= other)) {
            do_evict(sb, s, mine);
            return NORI_OK;
        }
        if (idx < 0)
            return NORI_MISS;
        shm_shard *v = &sb->shards[idx];
        int rc = nori__shm_shard_trylock(sb, v);
        if (rc == NORI_MISS) {
            *busy |= (uint64_t)1 << idx;
            continue;
        }
        if (rc != NORI_OK)
            return rc;
        bool done = do_evict_if_oldest(sb, v, other);
        nori__shm_shard_unlock(sb, v);
        if (done)
            return NORI_OK;
    }
}

int nori__shm_wait_for_room(shm_backend *sb, int64_t *deadline, const char *key)
{
    int64_t now = shm_real_ms();
    if (*deadline == 0)
        *deadline = now + atomic_load_explicit(&sb->lock_timeout_ms, memory_order_relaxed);
    else if (now >= *deadline)
        return nori__fail(NORI_EBACKEND,
                          "shm segment '%s': no room for '%.64s' within the lock timeout "
                          "(every entry is held by writes in progress in other processes)",
                          sb->name, key);
    uint64_t other;
    int idx = oldest_tail(sb, 0, &other);
    if (idx < 0) {
        /* All room is held by allocations in flight: they link within
         * microseconds, unless their process died (its section is rolled
         * back here) or is stopped (then the deadline ends the wait). */
        nori__shm_repair_open_shards(sb);
        long nap = 4; /* past the yields: a 50 us nap */
        nori__nap_backoff(&nap);
        return NORI_OK;
    }
    shm_shard *v = &sb->shards[idx];
    int rc = nori__shm_shard_lock(sb, v);
    if (rc != NORI_OK)
        return rc;
    (void)do_evict_if_oldest(sb, v, other);
    nori__shm_shard_unlock(sb, v);
    return NORI_OK;
}

int nori__shm_alloc_evicting(shm_backend *sb, shm_shard *s, uint32_t *keep, int also_held,
                             const char *key, size_t klen, size_t vlen, uint32_t *ref)
{
    uint64_t charge = shm_charge_for(klen, vlen);
    if (charge > sb->max_bytes)
        return nori__shm_too_big(sb, key, charge);
    uint64_t held = also_held >= 0 ? (uint64_t)1 << also_held : 0;
    for (;;) {
        int why = 0;
        uint64_t credit = *keep != 0 ? shm_entry_charge(shm_entry_at(sb, *keep)) : 0;
        int rc = nori__shm_alloc_entry(sb, s, klen, vlen, *keep != 0 ? 0 : 1, credit, ref, &why);
        if (rc != NORI_MISS)
            return rc;
        uint64_t busy;
        rc = evict_one(sb, s, *keep, held, &busy);
        if (rc == NORI_OK) {
            if (why == 3)
                atomic_fetch_add_explicit(&sb->g->frag_evictions, 1, memory_order_relaxed);
            continue;
        }
        if (rc != NORI_MISS)
            return rc;
        if (*keep != 0 && busy == 0) {
            /* Only the entry being replaced is left, and old and new do not
             * fit side by side: the old one goes first. */
            nori__shm_do_remove_ref(sb, s, *keep);
            nori__shm_do_commit(sb, s);
            *keep = 0;
            continue;
        }
        /* Nothing to evict without waiting for a lock while s is held:
         * the caller lets s go and waits (nori__shm_wait_for_room). */
        return SHM_AGAIN;
    }
}
