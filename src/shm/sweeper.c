// SPDX-License-Identifier: MIT
/*
 * Active expiry for the shared-memory backend, Redis's activeExpireCycle
 * as the memory backend runs it (memory/sweeper.c), with one difference:
 * every attached process has an expiry thread, but a cycle runs only when
 * the segment's shared schedule says one is due, and the thread that claims
 * it (a compare-and-swap of the next due time) runs it for everyone. So N
 * workers cost one cycle per period, not N, and expiry goes on as long as
 * any process is attached.
 *
 * A cycle visits the shards in turn from where the last one stopped,
 * SWEEP_CHUNK buckets per lock hold, moving on when few of the entries
 * looked at had expired, within SWEEP_BUDGET_US. A shard whose lock does
 * not come within the lock timeout is skipped (its holder is stopped).
 */
#include "shm/internal.h"

#include "error.h"

#include <errno.h>
#include <unistd.h>

#define SWEEP_PERIOD_MS 100
#define SWEEP_BACKLOG_PERIOD_MS 25
#define SWEEP_BUDGET_US 25000
#define SWEEP_CHUNK 32
#define SWEEP_STALE_PERCENT 10

int nori__shm_do_sweep(shm_backend *sb, shm_shard *s, uint32_t nbuckets, int64_t now,
                       size_t *examined, size_t *removed)
{
    size_t nb = (size_t)sb->bucket_mask + 1;
    if (nbuckets > nb)
        nbuckets = (uint32_t)nb;
    for (uint32_t i = 0; i < nbuckets; i++) {
        uint64_t cur = LD(&s->sweep_cursor);
        ST(&s->sweep_cursor, cur + 1);
        shm_bucket *bk = shm_shard_bucket(sb, s, (size_t)(cur % nb));
        if (!nori__shm_do_chain_sound(sb, s, bk))
            return nori__shm_do_chain_broken(sb, s, "the expiry sweep", "");
        uint32_t *l = (uint32_t *)&bk->head;
        uint32_t ref;
        while ((ref = LD(l)) != 0) {
            shm_entry *e = shm_entry_at(sb, ref);
            (*examined)++;
            int64_t t = LD(&e->expires);
            if (t != 0 && t <= now) {
                int rc = nori__shm_do_checkpoint(sb, s);
                if (rc != NORI_OK)
                    return rc;
                nori__shm_log_w64(sb, &s->log, &s->expired, LD(&s->expired) + 1);
                nori__shm_do_remove(sb, s, bk, l);
                (*removed)++;
            } else {
                l = &e->hnext;
            }
        }
    }
    nori__shm_do_commit(sb, s);
    return NORI_OK;
}

/* One cycle; *backlog: it ran out of budget with entries still expiring. */
static size_t cycle(shm_backend *sb, int64_t budget_us, bool full, bool *backlog)
{
    int64_t start = shm_real_us();
    size_t removed = 0;
    *backlog = false;
    /* Sections left open by dead processes, in shards nobody writes now:
     * their room comes back. */
    nori__shm_repair_open_shards(sb);
    unsigned first = atomic_load_explicit(&sb->g->sweep_shard, memory_order_relaxed);
    unsigned visited = 0;
    for (; visited < SHM_NSHARDS; visited++) {
        shm_shard *s = &sb->shards[(first + visited) % SHM_NSHARDS];
        if (LD(&s->count) == 0)
            continue;
        size_t buckets = (size_t)sb->bucket_mask + 1;
        bool out = false;
        for (size_t done = 0; done < buckets; done += SWEEP_CHUNK) {
            size_t examined = 0, n = 0;
            if (nori__shm_shard_lock(sb, s) != NORI_OK)
                break;
            (void)nori__shm_do_sweep(sb, s, SWEEP_CHUNK, shm_now_ms(), &examined, &n);
            nori__shm_shard_unlock(sb, s);
            removed += n;
            if (shm_real_us() - start >= budget_us) {
                *backlog = n * 100 > examined * SWEEP_STALE_PERCENT;
                out = true;
                break;
            }
            if (!full && n * 100 <= examined * SWEEP_STALE_PERCENT)
                break; /* few expired here: move on */
        }
        if (out)
            break;
    }
    atomic_store_explicit(&sb->g->sweep_shard, (first + visited) % SHM_NSHARDS,
                          memory_order_relaxed);
    atomic_fetch_add_explicit(&sb->sweep_cycles, 1, memory_order_relaxed);
    return removed;
}

size_t nori__shm_sweep_cycle(shm_backend *sb, int64_t budget_us, bool full)
{
    bool backlog;
    return cycle(sb, budget_us, full, &backlog);
}

/* Claims the cycle due now, if any: true when this thread runs it. */
static bool claim(shm_backend *sb, int64_t now, int64_t period)
{
    int64_t due = atomic_load_explicit(&sb->g->next_sweep_ms, memory_order_relaxed);
    if (now < due)
        return false;
    return atomic_compare_exchange_strong_explicit(&sb->g->next_sweep_ms, &due, now + period,
                                                   memory_order_relaxed, memory_order_relaxed);
}

static void *sweeper_main(void *arg)
{
    shm_backend *sb = arg;
    bool backlog = false;
    pthread_mutex_lock(&sb->sweep_lock);
    while (!sb->sweep_stop) {
        int64_t until =
            nori__deadline_after(backlog ? SWEEP_BACKLOG_PERIOD_MS : SWEEP_PERIOD_MS);
        int rc = 0;
        while (!sb->sweep_stop && rc != ETIMEDOUT)
            rc = nori__cond_wait_until(&sb->sweep_cond, &sb->sweep_lock, until);
        if (sb->sweep_stop)
            break;
        pthread_mutex_unlock(&sb->sweep_lock);
        /* The segment's schedule is on real time: processes whose logical
         * clocks differ (a test's virtual one) still share one pace. */
        if (claim(sb, shm_real_ms(), backlog ? SWEEP_BACKLOG_PERIOD_MS : SWEEP_PERIOD_MS))
            cycle(sb, SWEEP_BUDGET_US, false, &backlog);
        else
            backlog = false;
        pthread_mutex_lock(&sb->sweep_lock);
    }
    pthread_mutex_unlock(&sb->sweep_lock);
    return NULL;
}

int nori__shm_sweeper_start(shm_backend *sb)
{
    if (nori__cond_init(&sb->sweep_cond) != 0)
        return nori__fail(NORI_ENOMEM, "shm backend: cannot start the expiry thread");
    pthread_mutex_init(&sb->sweep_lock, NULL);
    sb->sweep_stop = false;
    if (pthread_create(&sb->sweeper, NULL, sweeper_main, sb) != 0) {
        pthread_cond_destroy(&sb->sweep_cond);
        pthread_mutex_destroy(&sb->sweep_lock);
        return nori__fail(NORI_ENOMEM, "shm backend: cannot start the expiry thread");
    }
    sb->has_sweeper = true;
    sb->sweeper_pid = getpid();
    return NORI_OK;
}

void nori__shm_sweeper_stop(shm_backend *sb)
{
    if (!sb->has_sweeper)
        return;
    if (getpid() != sb->sweeper_pid) { /* a forked child: the thread is not here */
        sb->has_sweeper = false;
        return;
    }
    pthread_mutex_lock(&sb->sweep_lock);
    sb->sweep_stop = true;
    pthread_cond_signal(&sb->sweep_cond);
    pthread_mutex_unlock(&sb->sweep_lock);
    pthread_join(sb->sweeper, NULL);
    pthread_cond_destroy(&sb->sweep_cond);
    pthread_mutex_destroy(&sb->sweep_lock);
    sb->has_sweeper = false;
}
