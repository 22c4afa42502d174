// SPDX-License-Identifier: MIT
/*
 * Locks of the shared-memory segment and the undo logs that make each
 * locked section atomic with respect to the death of its process.
 *
 * Every lock is a robust, process-shared mutex, taken with a deadline. When
 * its holder died, the next locker gets EOWNERDEAD, marks it consistent at
 * once, and then, like every locker, looks at the lock's log: a log left
 * open (records of a section that never committed, or frees still pending)
 * is finished before the lock is used: the open section is rolled back,
 * the pending frees are done. So the repair does not depend on seeing
 * EOWNERDEAD: a repairer that died or timed out half-way leaves the log
 * open, and the next locker starts over (every rollback step is idempotent
 * or removes its own record in the same arena section).
 *
 * The log of a section: before a word is changed, its offset and old value
 * are appended and the count published (release), and only then is the
 * word stored; a fence orders the count before the store, so a log never
 * misses a store that happened. Bytes rewritten in place are logged whole
 * (at most 64 bytes: larger rewrites take a new chunk). Committing is one
 * store of the count to 0.
 *
 * Readers that take no lock check bucket sequence counters. A rollback must
 * not let one of them accept a view it restores: before restoring anything,
 * the repair makes odd the counter of every bucket the section changed (the
 * section logged each one), and moves each to a new even value once done.
 */
#include "shm/internal.h"

#include "error.h"

#include <errno.h>
#include <signal.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>


int nori__shm_lock_init(shm_lockbox *lb)
{
    pthread_mutexattr_t a;
    if (pthread_mutexattr_init(&a) != 0)
        return NORI_ENOMEM;
    int rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (rc == 0)
        rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (rc == 0)
        rc = pthread_mutex_init(&lb->mutex, &a);
    pthread_mutexattr_destroy(&a);
    atomic_store_explicit(&lb->owner_pid, 0, memory_order_relaxed);
    atomic_store_explicit(&lb->owner_seq, 0, memory_order_relaxed);
    return rc == 0 ? NORI_OK
                   : nori__fail(NORI_EBACKEND, "cannot make a robust process-shared mutex: %s",
                                strerror(rc));
}

/* Tests: the process kills itself (SIGKILL) at the n-th crash point from
 * now: before and after every logged store, between the halves of an
 * in-place rewrite. 0: off. */
static _Atomic long crash_countdown;

void nori__shm_crash_after(long n)
{
    atomic_store_explicit(&crash_countdown, n, memory_order_relaxed);
}

void nori__shm_crash_point(void)
{
    if (atomic_load_explicit(&crash_countdown, memory_order_relaxed) > 0 &&
        atomic_fetch_sub_explicit(&crash_countdown, 1, memory_order_relaxed) == 1)
        kill(getpid(), SIGKILL);
}

/* Tests: the named point where this process stops itself (SIGSTOP). */
static const char *_Atomic pause_point;

void nori__shm_pause_at(const char *point)
{
    atomic_store_explicit(&pause_point, point, memory_order_relaxed);
}

void nori__shm_test_point(const char *point)
{
    const char *p = atomic_load_explicit(&pause_point, memory_order_relaxed);
    if (p != NULL && strcmp(p, point) == 0) {
        atomic_store_explicit(&pause_point, NULL, memory_order_relaxed);
        kill(getpid(), SIGSTOP);
    }
}

static _Noreturn void fatal(const char *what)
{
    /* A bug, never input: dying here leaves the lock to be repaired. */
    fprintf(stderr, "libnoricache: shm backend: %s\n", what);
    abort();
}

/*
 * Takes lb: within wait_ms milliseconds, or only if free (wait_ms < 0).
 * Returns 0, ETIMEDOUT, EBUSY or another errno; EOWNERDEAD is handled here
 * (consistent at once, counted, *died set when died is not NULL).
 */
int nori__shm_lock_take_for(shm_backend *sb, shm_lockbox *lb, int64_t wait_ms, bool *died)
{
    int rc;
    if (wait_ms < 0) {
        rc = pthread_mutex_trylock(&lb->mutex);
    } else {
        int64_t ms = wait_ms;
#ifdef NORI_SHM_TSAN
        /* ThreadSanitizer (GCC 12) intercepts neither clocklock nor an
         * EOWNERDEAD from timedlock: poll trylock, which it follows, until
         * the deadline (sanitizer builds only). */
        int64_t deadline = shm_real_ms() + ms;
        long nap = 0;
        while ((rc = pthread_mutex_trylock(&lb->mutex)) == EBUSY) {
            if (shm_real_ms() >= deadline) {
                rc = ETIMEDOUT;
                break;
            }
            nori__nap_backoff(&nap);
        }
#else
        struct timespec ts = nori__timespec_in(CLOCK_MONOTONIC, ms);
        rc = pthread_mutex_clocklock(&lb->mutex, CLOCK_MONOTONIC, &ts);
#endif
    }
    if (died != NULL)
        *died = rc == EOWNERDEAD;
    if (rc == EOWNERDEAD) {
        pthread_mutex_consistent(&lb->mutex);
        atomic_fetch_add_explicit(&sb->g->owner_died, 1, memory_order_relaxed);
        rc = 0;
    }
    if (rc == 0) {
        atomic_store_explicit(&lb->owner_pid, (int32_t)atomic_load_explicit(&sb->pid,
                                                                            memory_order_relaxed),
                              memory_order_relaxed);
        atomic_fetch_add_explicit(&lb->owner_seq, 1, memory_order_relaxed);
    }
    return rc;
}

int nori__shm_lock_take(shm_backend *sb, shm_lockbox *lb, bool wait)
{
    int64_t wait_ms = wait ? atomic_load_explicit(&sb->lock_timeout_ms, memory_order_relaxed) : -1;
    return nori__shm_lock_take_for(sb, lb, wait_ms, NULL);
}

/* The holder's pid stays after the unlock: a waiter that times out names
 * the holder, or in the instants between an unlock and the next holder's
 * store, the last one. */
void nori__shm_lock_release(shm_lockbox *lb)
{
    pthread_mutex_unlock(&lb->mutex);
}

int nori__shm_lock_timeout(shm_backend *sb, const shm_lockbox *lb, const char *what, int idx)
{
    atomic_fetch_add_explicit(&sb->g->lock_timeouts, 1, memory_order_relaxed);
    int pid = atomic_load_explicit(&((shm_lockbox *)lb)->owner_pid, memory_order_relaxed);
    char where[32];
    if (idx >= 0)
        snprintf(where, sizeof where, "%s %d", what, idx);
    else
        snprintf(where, sizeof where, "%s", what);
    return nori__fail(NORI_EBACKEND,
                      "shm segment '%s': %s is locked by pid %d for more than %lld ms (the lock "
                      "timeout): that process is stopped or stuck",
                      sb->name, where, pid,
                      (long long)atomic_load_explicit(&sb->lock_timeout_ms, memory_order_relaxed));
}

int nori__shm_lock_error(shm_backend *sb, const shm_lockbox *lb, const char *what, int idx, int rc)
{
    if (rc == ETIMEDOUT)
        return nori__shm_lock_timeout(sb, lb, what, idx);
    return nori__fail(NORI_EBACKEND, "shm segment '%s': cannot take the %s %d lock: %s", sb->name,
                      what, idx, strerror(rc));
}

/* ---- the arena lock ---- */

static bool alog_readable(const shm_backend *sb)
{
    uint32_t n = atomic_load_explicit(&sb->g->log.n, memory_order_acquire);
    if (n > SHM_ARENA_LOG_CAP)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        const shm_rec *r = &sb->g->log.rec[i];
        uint64_t t = SHM_REC_TYPE(r->what), off = SHM_REC_OFF(r->what);
        size_t size = t == SHM_REC_W32 ? 4 : 8;
        if ((t != SHM_REC_W32 && t != SHM_REC_W64) || off % size != 0 ||
            off + size > sb->map_bytes)
            return false;
    }
    return true;
}

/* Rolls back the arena's open section, newest record first. */
void nori__shm_arena_rollback(shm_backend *sb)
{
    shm_alog *lg = &sb->g->log;
    uint32_t n = atomic_load_explicit(&lg->n, memory_order_acquire);
    if (n == 0)
        return;
    if (!alog_readable(sb))
        fatal("the arena's undo log is unreadable: the segment is corrupted");
    for (uint32_t i = n; i-- > 0;) {
        const shm_rec *r = &lg->rec[i];
        unsigned char *p = sb->map + SHM_REC_OFF(r->what);
        if (SHM_REC_TYPE(r->what) == SHM_REC_W32)
            ST((uint32_t *)p, (uint32_t)r->old);
        else
            ST((uint64_t *)p, r->old);
    }
    atomic_store_explicit(&lg->n, 0, memory_order_release);
    atomic_fetch_add_explicit(&sb->g->repairs, 1, memory_order_relaxed);
}

int nori__shm_arena_lock(shm_backend *sb)
{
    int rc = nori__shm_lock_take(sb, &sb->g->arena_lock, true);
    if (rc != 0)
        return nori__shm_lock_error(sb, &sb->g->arena_lock, "arena", -1, rc);
    if (atomic_load_explicit(&sb->g->log.n, memory_order_acquire) != 0)
        nori__shm_arena_rollback(sb);
    return NORI_OK;
}

void nori__shm_arena_unlock(shm_backend *sb)
{
    nori__shm_lock_release(&sb->g->arena_lock);
}

/* ---- logged stores ---- */

static void append(shm_backend *sb, shm_rec *rec, _Atomic uint32_t *count, uint32_t cap,
                   uint64_t type, void *p, uint64_t old)
{
    nori__shm_crash_point();
    uint32_t n = atomic_load_explicit(count, memory_order_relaxed);
    if (n >= cap)
        fatal("undo log overflow (a locked section logged more than it may)");
    rec[n].what = SHM_REC_MAKE(type, shm_off(sb, p));
    rec[n].old = old;
    atomic_store_explicit(count, n + 1, memory_order_release);
    /* The count is visible before the store that follows. */
    SHM_FENCE_RELEASE();
}

void nori__shm_log_w32(shm_backend *sb, shm_log *lg, uint32_t *p, uint32_t v)
{
    append(sb, lg->rec, &lg->n, SHM_LOG_CAP, SHM_REC_W32, p, LD(p));
    ST(p, v);
    nori__shm_crash_point();
}

void nori__shm_log_w64(shm_backend *sb, shm_log *lg, uint64_t *p, uint64_t v)
{
    append(sb, lg->rec, &lg->n, SHM_LOG_CAP, SHM_REC_W64, p, LD(p));
    ST(p, v);
    nori__shm_crash_point();
}

void nori__shm_alog_w32(shm_backend *sb, uint32_t *p, uint32_t v)
{
    append(sb, sb->g->log.rec, &sb->g->log.n, SHM_ARENA_LOG_CAP, SHM_REC_W32, p, LD(p));
    ST(p, v);
    nori__shm_crash_point();
}

void nori__shm_alog_w64(shm_backend *sb, uint64_t *p, uint64_t v)
{
    append(sb, sb->g->log.rec, &sb->g->log.n, SHM_ARENA_LOG_CAP, SHM_REC_W64, p, LD(p));
    ST(p, v);
    nori__shm_crash_point();
}

/* Old bytes: the data records first, the header record above them, all
 * published by one store of the count (a reverse walk meets the header
 * first and finds the data below it). */
void nori__shm_log_bytes(shm_backend *sb, shm_log *lg, const void *p, size_t len)
{
    nori__shm_crash_point();
    uint32_t n = atomic_load_explicit(&lg->n, memory_order_relaxed);
    uint32_t k = (uint32_t)((len + sizeof(shm_rec) - 1) / sizeof(shm_rec));
    if (len > 64 || n + k + 1 > SHM_LOG_CAP)
        fatal("undo log overflow (bytes)");
    nori__shm_copy_out(&lg->rec[n], p, len);
    lg->rec[n + k].what = SHM_REC_MAKE(SHM_REC_BYTES, shm_off(sb, p));
    lg->rec[n + k].old = len;
    atomic_store_explicit(&lg->n, n + k + 1, memory_order_release);
    SHM_FENCE_RELEASE();
}

void nori__shm_log_seq(shm_backend *sb, shm_log *lg, shm_bucket *bk)
{
    append(sb, lg->rec, &lg->n, SHM_LOG_CAP, SHM_REC_SEQ, &bk->seq,
           atomic_load_explicit(&bk->seq, memory_order_relaxed));
}

/* Called inside the arena's section: the record and the count are stored
 * through the arena log, so that a rollback of the arena removes them. */
void nori__shm_log_alloc(shm_backend *sb, shm_log *lg, uint32_t ref, uint32_t places,
                         uint64_t charge)
{
    uint32_t n = atomic_load_explicit(&lg->n, memory_order_relaxed);
    if (n >= SHM_LOG_CAP)
        fatal("undo log overflow (alloc)");
    shm_rec *r = &lg->rec[n];
    nori__shm_alog_w64(sb, &r->old, (uint64_t)ref | charge << 32);
    nori__shm_alog_w64(sb, &r->what,
                       SHM_REC_MAKE(SHM_REC_ALLOC, 0) | (places ? SHM_REC_PLACE : 0));
    nori__shm_alog_w32(sb, (uint32_t *)&lg->n, n + 1);
}

void nori__shm_log_pending(shm_backend *sb, shm_log *lg, uint32_t ref, uint32_t places,
                           uint64_t charge)
{
    uint32_t i = atomic_load_explicit(&lg->npending, memory_order_relaxed);
    if (i >= SHM_PENDING_CAP)
        fatal("pending frees overflow");
    shm_pending *p = &lg->pending[i];
    nori__shm_log_w64(sb, lg, &p->charge, charge);
    nori__shm_log_w64(sb, lg, &p->refp, (uint64_t)ref | (uint64_t)places << 32);
    nori__shm_log_w32(sb, lg, (uint32_t *)&lg->npending, i + 1);
}

/* ---- bucket sequence counters ---- */

void nori__shm_do_seq_begin(shm_backend *sb, shm_shard *s, shm_bucket *bk)
{
    nori__shm_log_seq(sb, &s->log, bk);
    uint32_t v = atomic_load_explicit(&bk->seq, memory_order_relaxed);
    atomic_store_explicit(&bk->seq, v | 1u, memory_order_relaxed);
    /* Readers that see any store below see the odd counter too. */
    SHM_FENCE_RELEASE();
}

void nori__shm_do_seq_end(shm_bucket *bk)
{
    uint32_t v = atomic_load_explicit(&bk->seq, memory_order_relaxed);
    atomic_store_explicit(&bk->seq, (v | 1u) + 1u, memory_order_release);
}
