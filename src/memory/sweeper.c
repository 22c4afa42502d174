// SPDX-License-Identifier: MIT
/*
 * Active expiry for the memory backend: one thread per backend removes
 * expired entries that nobody reads, so their memory goes back without any
 * call. The model is Redis's activeExpireCycle (expire.c): a cycle every
 * SWEEP_PERIOD_MS with a time budget of a quarter of the period, and small
 * steps that never hold a lock long.
 *
 * A cycle visits the shards in turn, continuing where the previous cycle
 * stopped. In each shard it looks at SWEEP_CHUNK buckets per lock hold from
 * the shard's cursor; it stays on the shard while more than a tenth of the
 * entries looked at had expired (there is probably more to reclaim), and
 * moves on otherwise ("stop early when few are expired"). The cycle ends
 * when the budget is spent or every shard was visited. When it ran out of
 * budget while the last step still found many expired entries, the next
 * cycle starts after SWEEP_BACKLOG_PERIOD_MS instead. So a store where
 * everything expired at once is emptied fast (1M entries: about a second),
 * while a store with few expired entries costs a few microseconds per shard
 * per cycle.
 *
 * Memory: freed entries go back to malloc; glibc keeps freed memory in its
 * arenas, so after cycles that freed SWEEP_TRIM_BYTES (64 MiB), and after
 * the first cycle that frees nothing following such frees, the sweeper
 * calls malloc_trim(0), which returns the free pages of every arena to the
 * system (docs/BENCHMARKS.md has the measurement that made this the choice:
 * without it 1M expired entries left 64 MiB resident). Entries of 16 KiB and
 * more have pages of their own and go back when unmapped (entry.c).
 *
 * Stopping: nori_backend_free() sets sweep_stop under sweep_lock, signals
 * the condition the thread waits on between cycles, and joins it. A cycle
 * in progress ends within its budget (each step is short), so free waits at
 * most about SWEEP_BUDGET_US.
 *
 * fork(): a cycle's steps hold shard locks; fork() waits until no other
 * thread holds a lock of the backend (fork.c), so it waits for the step in
 * progress, and the child never inherits a lock held by this thread. The child has no expiry
 * thread (expiry there is lazy only); its nori_backend_free() sees the other
 * pid and does not join a thread that does not exist in it.
 */
#include "memory/internal.h"

#include "clock.h"
#include "error.h"

#include <errno.h>
#include <malloc.h>
#include <unistd.h>

#define SWEEP_PERIOD_MS 100
/* After a cycle that ran out of budget while entries were still expiring
 * fast, the next one starts this soon (50% of a core while the backlog
 * lasts; Redis's fast cycles play the same part). */
#define SWEEP_BACKLOG_PERIOD_MS 25
#define SWEEP_BUDGET_US 25000
#define SWEEP_CHUNK 32
#define SWEEP_STALE_PERCENT 10
#ifndef NORI_MEMORY_TRIM_BYTES /* -D to measure other choices; 0: never (docs/BENCHMARKS.md) */
#define NORI_MEMORY_TRIM_BYTES (64 * 1024 * 1024)
#endif
#define SWEEP_TRIM_BYTES ((size_t)NORI_MEMORY_TRIM_BYTES)

size_t nori__mem_sweep_cycle(mem_backend *mb, int64_t budget_us, bool full)
{
    /* The budget is CPU time spent holding shard locks: real time, even
     * under a test's virtual clock (which paces the cycles, below). */
    int64_t start = nori__real_us();
    size_t removed = 0, freed = 0;
    mb->sweep_backlog = false;
    for (int visited = 0; visited < NSHARDS; visited++) {
        mem_shard *s = &mb->shards[mb->sweep_next_shard];
        mb->sweep_next_shard = (mb->sweep_next_shard + 1) % NSHARDS;
        if (atomic_load_explicit(&s->count, memory_order_relaxed) == 0) {
            shard_lock(s);
            nori__mem_do_reclaim(s); /* entries removed by others, waiting for readers */
            shard_unlock(s);
            continue;
        }
        /* At most one pass over the shard's buckets per cycle. */
        shard_lock(s); /* the table may be replaced and freed: read it locked */
        size_t buckets = atomic_load_explicit(&s->table, memory_order_relaxed)->nbuckets;
        shard_unlock(s);
        for (size_t done = 0; done < buckets; done += SWEEP_CHUNK) {
            size_t examined = 0;
            shard_lock(s);
            size_t n = nori__mem_do_sweep_chunk(s, SWEEP_CHUNK, nori__now_ms(), &examined, &freed);
            if (n > 0)
                nori__mem_do_maybe_shrink(s);
            nori__mem_do_reclaim(s);
            shard_unlock(s);
            removed += n;
            if (nori__real_us() - start >= budget_us) {
                mb->sweep_backlog = n * 100 > examined * SWEEP_STALE_PERCENT;
                goto out;
            }
            if (!full && n * 100 <= examined * SWEEP_STALE_PERCENT)
                break; /* few expired here: move on */
        }
    }
out:
    atomic_fetch_add_explicit(&mb->sweep_cycles, 1, memory_order_relaxed);
    mb->freed_since_trim += freed;
    /* Trim every SWEEP_TRIM_BYTES freed (not more often: malloc_trim walks
     * every arena's free chunks, tens of milliseconds on a large heap), and
     * once more when a burst of expiry is over (this cycle removed nothing),
     * so that the tail of the burst and the bucket arrays shrunk with it go
     * back too. */
#if NORI_MEMORY_TRIM_BYTES
    if (mb->freed_since_trim >= SWEEP_TRIM_BYTES || (removed == 0 && mb->freed_since_trim > 0)) {
        mb->freed_since_trim = 0;
        malloc_trim(0);
    }
#endif
    return removed;
}

static void *sweeper_main(void *arg)
{
    mem_backend *mb = arg;
    pthread_mutex_lock(&mb->sweep_lock);
    while (!mb->sweep_stop) {
        int64_t until =
            nori__deadline_after(mb->sweep_backlog ? SWEEP_BACKLOG_PERIOD_MS : SWEEP_PERIOD_MS);
        int rc = 0;
        while (!mb->sweep_stop && rc != ETIMEDOUT)
            rc = nori__cond_wait_until(&mb->sweep_cond, &mb->sweep_lock, until);
        if (mb->sweep_stop)
            break;
        pthread_mutex_unlock(&mb->sweep_lock);
        nori__mem_sweep_cycle(mb, SWEEP_BUDGET_US, false);
        pthread_mutex_lock(&mb->sweep_lock);
    }
    pthread_mutex_unlock(&mb->sweep_lock);
    return NULL;
}

int nori__mem_sweeper_start(mem_backend *mb)
{
    if (nori__cond_init(&mb->sweep_cond) != 0)
        return NORI_ENOMEM;
    pthread_mutex_init(&mb->sweep_lock, NULL);
    mb->sweep_stop = false;
    if (pthread_create(&mb->sweeper, NULL, sweeper_main, mb) != 0) {
        pthread_cond_destroy(&mb->sweep_cond);
        pthread_mutex_destroy(&mb->sweep_lock);
        return nori__fail(NORI_ENOMEM, "memory backend: cannot start the expiry thread");
    }
    mb->has_sweeper = true;
    mb->sweeper_pid = getpid();
    return NORI_OK;
}

void nori__mem_sweeper_stop(mem_backend *mb)
{
    if (!mb->has_sweeper)
        return;
    if (getpid() != mb->sweeper_pid) { /* a forked child: the thread is not here */
        mb->has_sweeper = false;
        return;
    }
    pthread_mutex_lock(&mb->sweep_lock);
    mb->sweep_stop = true;
    pthread_cond_signal(&mb->sweep_cond);
    pthread_mutex_unlock(&mb->sweep_lock);
    pthread_join(mb->sweeper, NULL);
    pthread_cond_destroy(&mb->sweep_cond);
    pthread_mutex_destroy(&mb->sweep_lock);
    mb->has_sweeper = false;
}
