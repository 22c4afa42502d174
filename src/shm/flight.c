// SPDX-License-Identifier: MIT
/*
 * Flight slots: fills of the response cache across processes. A filler
 * holds the robust mutex of the slot its key hashes to for as long as its
 * fill runs; a waiter in another process sleeps on that mutex with a
 * deadline, and wakes when the fill ends or its filler dies (EOWNERDEAD).
 */
#include "shm/internal.h"

#include "error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>


static shm_flight *flight_of(shm_backend *sb, const char *key, size_t klen, uint64_t *h)
{
    *h = shm_hash(sb, key, klen) | 1u; /* never 0, "free" */
    return &sb->flights[*h % sb->nflights];
}

static int32_t my_tid(void)
{
    return (int32_t)gettid();
}

int nori__shm_fill_claim(shm_backend *sb, const char *key, size_t klen)
{
    uint64_t h;
    shm_flight *f = flight_of(sb, key, klen, &h);
    int rc = nori__shm_lock_take_for(sb, &f->lock, -1, NULL);
    if (rc == EBUSY)
        return NORI_MISS; /* another fill holds the slot: this one's waiters poll */
    if (rc != 0)
        return nori__shm_lock_error(sb, &f->lock, "flight slot", (int)(f - sb->flights), rc);
    atomic_store_explicit(&f->owner_tid, my_tid(), memory_order_relaxed);
    atomic_store_explicit(&f->key_hash, h, memory_order_release);
    return NORI_OK;
}

void nori__shm_fill_release(shm_backend *sb, const char *key, size_t klen)
{
    uint64_t h;
    shm_flight *f = flight_of(sb, key, klen, &h);
    /* Only the claim of this thread (a forked child's copy of a claim is
     * not the child's: the parent releases it). */
    if (atomic_load_explicit(&f->key_hash, memory_order_relaxed) != h ||
        atomic_load_explicit(&f->owner_tid, memory_order_relaxed) != my_tid() ||
        atomic_load_explicit(&f->lock.owner_pid, memory_order_relaxed) !=
            atomic_load_explicit(&sb->pid, memory_order_relaxed))
        return;
    atomic_store_explicit(&f->key_hash, 0, memory_order_relaxed);
    atomic_store_explicit(&f->owner_tid, 0, memory_order_relaxed);
    nori__shm_lock_release(&f->lock);
}

int nori__shm_fill_wait(shm_backend *sb, const char *key, size_t klen, int64_t timeout_ms)
{
    uint64_t h;
    shm_flight *f = flight_of(sb, key, klen, &h);
    if (atomic_load_explicit(&f->key_hash, memory_order_acquire) != h)
        return NORI_MISS;
    bool died = false;
    int rc = nori__shm_lock_take_for(sb, &f->lock, timeout_ms > 0 ? timeout_ms : 0, &died);
    if (rc == ETIMEDOUT)
        return nori__fail(NORI_EBACKEND,
                          "shm segment '%s': the fill of '%.64s' in pid %d is still running after "
                          "%lld ms",
                          sb->name, key,
                          atomic_load_explicit(&f->lock.owner_pid, memory_order_relaxed),
                          (long long)timeout_ms);
    if (rc != 0)
        return nori__shm_lock_error(sb, &f->lock, "flight slot", (int)(f - sb->flights), rc);
    /* The fill ended (or its filler died, leaving its mark): the slot is
     * free again. */
    if (died || atomic_load_explicit(&f->key_hash, memory_order_relaxed) == h)
        atomic_store_explicit(&f->key_hash, 0, memory_order_relaxed);
    nori__shm_lock_release(&f->lock);
    return died ? nori__fail(NORI_EABORT, "shm segment '%s': the process filling '%.64s' died",
                             sb->name, key)
                : NORI_OK;
}
