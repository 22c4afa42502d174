// SPDX-License-Identifier: MIT
/*
 * A shard's lock, taken with the repair of a section its last holder left
 * open (lock.c says how the logs make that possible): the open section is
 * rolled back from its log, the bucket sequence counters it touched are
 * moved so that no lock-free reader accepts a view the rollback restores,
 * and the frees it left pending are done. Above slab.c and table.c, whose
 * functions the rollback calls.
 */
#include "shm/internal.h"

#include "error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static bool log_readable(const shm_backend *sb, const shm_shard *s)
{
    const shm_log *lg = &s->log;
    uint32_t n = atomic_load_explicit(&lg->n, memory_order_acquire);
    uint32_t np = atomic_load_explicit(&lg->npending, memory_order_acquire);
    if (n > SHM_LOG_CAP || np > SHM_PENDING_CAP)
        return false;
    for (uint32_t i = n; i-- > 0;) {
        const shm_rec *r = &lg->rec[i];
        uint64_t t = SHM_REC_TYPE(r->what), off = SHM_REC_OFF(r->what);
        if (t == SHM_REC_ALLOC || t == SHM_REC_NONE)
            continue;
        if (t == SHM_REC_BYTES) {
            uint32_t k = (uint32_t)((r->old + sizeof(shm_rec) - 1) / sizeof(shm_rec));
            if (r->old > 64 || k > i || off + r->old > sb->map_bytes)
                return false;
            i -= k;
            continue;
        }
        size_t size = t == SHM_REC_W32 || t == SHM_REC_SEQ ? 4 : 8;
        if ((t != SHM_REC_W32 && t != SHM_REC_W64 && t != SHM_REC_SEQ) || off % size != 0 ||
            off + size > sb->map_bytes)
            return false;
    }
    for (uint32_t i = 0; i < np; i++) {
        uint32_t ref = (uint32_t)lg->pending[i].refp;
        if (ref != 0 && !shm_ref_ok(sb, ref))
            return false;
    }
    return true;
}

/* Makes odd (before) or moves to a new even value (after) the counter of
 * every bucket the open section logged. */
static void seq_pass(shm_backend *sb, shm_log *lg, uint32_t n, bool after)
{
    for (uint32_t i = n; i-- > 0;) {
        const shm_rec *r = &lg->rec[i];
        uint64_t t = SHM_REC_TYPE(r->what);
        if (t == SHM_REC_BYTES) {
            i -= (uint32_t)((r->old + sizeof(shm_rec) - 1) / sizeof(shm_rec));
            continue;
        }
        if (t != SHM_REC_SEQ)
            continue;
        _Atomic uint32_t *seq = (_Atomic uint32_t *)(sb->map + SHM_REC_OFF(r->what));
        uint32_t v = atomic_load_explicit(seq, memory_order_relaxed);
        if (!after) {
            atomic_store_explicit(seq, v | 1u, memory_order_relaxed);
            SHM_FENCE_RELEASE();
        } else {
            atomic_store_explicit(seq, (v | 1u) + 1u, memory_order_release);
        }
    }
}

/*
 * Rolls back shard s's open section and finishes its pending frees. Called
 * with s and the arena locked. Each step survives the repairer's own death:
 * restoring a word is idempotent, an allocation is freed in an arena
 * section that also marks its record undone, and the count goes to 0 last.
 */
static void do_rollback(shm_backend *sb, shm_shard *s)
{
    shm_log *lg = &s->log;
    uint32_t n = atomic_load_explicit(&lg->n, memory_order_acquire);
    if (n > 0) {
        seq_pass(sb, lg, n, false);
        for (uint32_t i = n; i-- > 0;) {
            shm_rec *r = &lg->rec[i];
            uint64_t t = SHM_REC_TYPE(r->what);
            unsigned char *p = sb->map + SHM_REC_OFF(r->what);
            switch (t) {
            case SHM_REC_W32:
                ST((uint32_t *)p, (uint32_t)r->old);
                break;
            case SHM_REC_W64:
                ST((uint64_t *)p, r->old);
                break;
            case SHM_REC_BYTES: {
                uint32_t k = (uint32_t)((r->old + sizeof(shm_rec) - 1) / sizeof(shm_rec));
                nori__shm_copy_in(p, &lg->rec[i - k], (size_t)r->old);
                i -= k;
                break;
            }
            case SHM_REC_ALLOC: {
                uint32_t ref = (uint32_t)r->old;
                uint64_t charge = r->old >> 32;
                uint32_t places = (r->what & SHM_REC_PLACE) ? 1 : 0;
                if (shm_ref_ok(sb, ref))
                    nori__shm_do_free_entry(sb, ref, places, charge, &r->what,
                                            SHM_REC_MAKE(SHM_REC_NONE, 0));
                break;
            }
            default: /* SEQ (after the restores), NONE */
                break;
            }
        }
        seq_pass(sb, lg, n, true);
        atomic_store_explicit(&lg->n, 0, memory_order_release);
    }
    nori__shm_do_free_pending(sb, s);
    nori__shm_do_publish_tail(sb, s);
    /* The tail's placement may have logged and committed moves: nothing
     * to free there. */
    atomic_store_explicit(&lg->n, 0, memory_order_release);
}

/* Finishes the log s was left with. s locked; returns with it locked on
 * NORI_OK, unlocked on error. */
static int repair(shm_backend *sb, shm_shard *s)
{
    int rc = nori__shm_arena_lock(sb);
    if (rc != NORI_OK) {
        nori__shm_lock_release(&s->lock);
        return rc;
    }
    if (log_readable(sb, s)) {
        do_rollback(sb, s);
    } else {
        nori__shm_do_reset_shard(sb, s);
        atomic_fetch_add_explicit(&sb->g->shard_resets, 1, memory_order_relaxed);
    }
    nori__shm_arena_unlock(sb);
    atomic_fetch_add_explicit(&sb->g->repairs, 1, memory_order_relaxed);
    return NORI_OK;
}

int nori__shm_do_chain_broken(shm_backend *sb, shm_shard *s, const char *op, const char *key)
{
    unsigned idx = shm_shard_no(sb, s);
    int rc = nori__shm_arena_lock(sb);
    if (rc != NORI_OK)
        return rc;
    if (log_readable(sb, s))
        do_rollback(sb, s);
    nori__shm_do_reset_shard(sb, s);
    nori__shm_arena_unlock(sb);
    atomic_fetch_add_explicit(&sb->g->shard_resets, 1, memory_order_relaxed);
    return nori__fail(NORI_EBACKEND,
                      "shm segment '%s': %s '%.64s': a bucket chain of shard %u is broken (a "
                      "cycle or an offset outside the arena, written by a faulty process mapping "
                      "the segment); the shard was emptied",
                      sb->name, op, key, idx);
}

static bool log_open(const shm_shard *s)
{
    return atomic_load_explicit(&s->log.n, memory_order_acquire) != 0 ||
           atomic_load_explicit(&s->log.npending, memory_order_acquire) != 0;
}

int nori__shm_shard_lock(shm_backend *sb, shm_shard *s)
{
    int rc = nori__shm_lock_take(sb, &s->lock, true);
    if (rc != 0)
        return nori__shm_lock_error(sb, &s->lock, "shard", (int)shm_shard_no(sb, s), rc);
    return log_open(s) ? repair(sb, s) : NORI_OK;
}

int nori__shm_shard_trylock(shm_backend *sb, shm_shard *s)
{
    int rc = nori__shm_lock_take(sb, &s->lock, false);
    if (rc == EBUSY)
        return NORI_MISS;
    if (rc != 0)
        return nori__shm_lock_error(sb, &s->lock, "shard", (int)shm_shard_no(sb, s), rc);
    return log_open(s) ? repair(sb, s) : NORI_OK;
}

void nori__shm_repair_open_shards(shm_backend *sb)
{
    for (int i = 0; i < SHM_NSHARDS; i++) {
        shm_shard *s = &sb->shards[i];
        /* An open log with a free or dead lock: a section whose process
         * died. A live section in progress keeps its lock (busy: skipped). */
        if (log_open(s) && nori__shm_shard_trylock(sb, s) == NORI_OK)
            nori__shm_shard_unlock(sb, s);
    }
}

void nori__shm_shard_unlock(shm_backend *sb, shm_shard *s)
{
    (void)sb;
    nori__shm_lock_release(&s->lock);
}
