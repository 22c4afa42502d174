// SPDX-License-Identifier: MIT
/*
 * Epoch-based reclamation (see epoch.h). The classic scheme (Fraser 2004;
 * Hart et al. 2007), kept minimal: one global epoch, one slot per thread.
 *
 * Why it is safe: a reader stores its epoch e with a sequentially consistent
 * exchange before it reads any shared pointer. A writer unlinks object X,
 * then reads the epoch r to tag X. A reader that can still reach X loaded
 * its epoch before the unlink became visible, so e <= r. A reader whose
 * slot shows 0 has either left (its release store of 0 orders all its reads
 * of X before the free) or enters later and cannot reach X.
 */
#include "memory/epoch.h"

#include "clock.h"

#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>

typedef nori__epoch_slot epoch_slot;

static _Atomic(epoch_slot *) slots;
_Atomic uint64_t nori__epoch_global = 1;
static pthread_key_t slot_key;
static pthread_once_t slot_key_once = PTHREAD_ONCE_INIT;
MEM_THREAD_LOCAL epoch_slot *nori__epoch_mine;
MEM_THREAD_LOCAL unsigned nori__epoch_depth;    /* read sections, nested */
static MEM_THREAD_LOCAL unsigned lock_depth; /* lock marks, nested */
/* Lock marks of threads that could get no slot (out of memory), and whether
 * this thread's outermost mark is counted there. */
static _Atomic unsigned slotless_marks;
static MEM_THREAD_LOCAL bool marked_slotless;
/*
 * Set when slot_key's destructor has run on this thread: the thread is
 * exiting and has handed its slot back. Destructors of keys created after
 * slot_key run after it, and may still read the cache (an application that
 * flushes per-thread state at exit). Such a thread must not keep the slot it
 * handed back (a new thread may own it already: the two would share it, and
 * the first to leave its section would mark it idle while the other still
 * copies). Nor may it take a slot for good, whose destructor round may be
 * over (PTHREAD_DESTRUCTOR_ITERATIONS). So each of its read sections (and
 * lock marks) borrows a free slot and hands it back when the last one ends.
 * (A thread whose very first read comes from a destructor in the last
 * round, after slot_key's turn, takes a slot that no destructor hands back:
 * 128 bytes, never reused. Nothing tells such a thread from one starting
 * its work.)
 */
MEM_THREAD_LOCAL bool nori__epoch_exiting;

static void give_back(epoch_slot *s)
{
    atomic_store_explicit(&s->active, 0, memory_order_release);
    atomic_store_explicit(&s->locked, 0, memory_order_release);
    atomic_store_explicit(&s->in_use, 0, memory_order_release);
}

/* slot_key's destructor, on the exiting thread: the slot goes back to the
 * pool and the thread forgets it (see `nori__epoch_exiting`). */
static void release_slot(void *p)
{
    give_back(p);
    nori__epoch_mine = NULL;
    nori__epoch_depth = 0; /* sections left open by pthread_exit() ended with the slot */
    lock_depth = 0;
    nori__epoch_exiting = true;
}

/* In a forked child only the forking thread exists: the other threads'
 * slots would stay "in a read section" forever and hold every retired
 * entry; they are released, and their lock marks with them. */
static void forget_other_threads(void)
{
    for (epoch_slot *s = atomic_load_explicit(&slots, memory_order_acquire); s != NULL;
         s = s->next)
        if (s != nori__epoch_mine)
            give_back(s);
    atomic_store_explicit(&slotless_marks, marked_slotless ? 1 : 0, memory_order_relaxed);
}

static void make_key(void)
{
    (void)pthread_key_create(&slot_key, release_slot);
    (void)pthread_atfork(NULL, NULL, forget_other_threads);
}

static epoch_slot *acquire_slot(void)
{
    pthread_once(&slot_key_once, make_key);
    epoch_slot *s;
    for (s = atomic_load_explicit(&slots, memory_order_acquire); s != NULL; s = s->next) {
        int free_slot = 0;
        if (atomic_load_explicit(&s->in_use, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong(&s->in_use, &free_slot, 1))
            break;
    }
    if (s == NULL) {
        s = aligned_alloc(64, sizeof *s);
        if (s == NULL)
            return NULL;
        atomic_init(&s->active, 0);
        atomic_init(&s->locked, 0);
        atomic_init(&s->in_use, 1);
        /* Acquire, also on a failed exchange: s->next->index was written
         * by the thread that published that slot (relaxed here was a data
         * race TSan reports, and test_http_coalesce runs under TSan). */
        s->next = atomic_load_explicit(&slots, memory_order_acquire);
        do
            s->index = s->next != NULL ? s->next->index + 1 : 0;
        while (!atomic_compare_exchange_weak_explicit(&slots, &s->next, s, memory_order_release,
                                                      memory_order_acquire));
    }
    /* An exiting thread borrows the slot for one section (see `nori__epoch_exiting`);
     * any other keeps it until slot_key's destructor hands it back. */
    if (!nori__epoch_exiting && pthread_setspecific(slot_key, s) != 0) {
        give_back(s);
        return NULL;
    }
    nori__epoch_mine = s;
    return s;
}

/* After the end of a read section or of a lock mark: an exiting thread
 * hands its borrowed slot back once it is in neither. */
static void section_ended(epoch_slot *s)
{
    if (nori__epoch_exiting && nori__epoch_depth == 0 && lock_depth == 0 &&
        s == nori__epoch_mine) {
        nori__epoch_mine = NULL;
        atomic_store_explicit(&s->in_use, 0, memory_order_release);
    }
}

/* nori__epoch_enter() (epoch.h) when the thread has no slot yet: takes one,
 * then enters. */
bool nori__epoch_enter_slow(void)
{
    epoch_slot *s = acquire_slot();
    if (s == NULL) {
        nori__epoch_depth = 0;
        return false;
    }
    uint64_t e = atomic_load_explicit(&nori__epoch_global, memory_order_relaxed);
    atomic_exchange_explicit(&s->active, e, memory_order_seq_cst); /* see nori__epoch_enter() */
    return true;
}

void nori__epoch_exit_borrowed(void)
{
    section_ended(nori__epoch_mine);
}

/* ---- lock marks (fork.c has the why) ---- */

static _Atomic int forking; /* a fork is being prepared */

/* Marks the thread; true for the outermost mark, whose seq_cst store is
 * ordered before the caller's load of `forking`. */
static bool lock_mark(void)
{
    if (lock_depth++ > 0)
        return false;
    epoch_slot *s = nori__epoch_mine;
    if (s == NULL && (s = acquire_slot()) == NULL) {
        /* No slot (out of memory): a shared counter does the slot's work. */
        marked_slotless = true;
        atomic_fetch_add_explicit(&slotless_marks, 1, memory_order_seq_cst);
        return true;
    }
    atomic_exchange_explicit(&s->locked, 1, memory_order_seq_cst);
    return true;
}

static void lock_unmark(void)
{
    if (--lock_depth > 0)
        return;
    if (marked_slotless) {
        marked_slotless = false;
        atomic_fetch_sub_explicit(&slotless_marks, 1, memory_order_release);
        return;
    }
    epoch_slot *s = nori__epoch_mine;
    atomic_store_explicit(&s->locked, 0, memory_order_release);
    if (nori__epoch_exiting)
        section_ended(s);
}

/*
 * Steps back while a fork is prepared: unmarked, waits until fork() has
 * returned (yields, then naps of 50 us doubling to 1 ms). It polls the flag
 * rather than wait on a lock the prepare handler holds: a waiter of a
 * pthread lock or condition is registered in the lock's own state, which
 * the child would inherit with waiters that never leave (glibc's rwlock
 * counts a waiting reader as a reader), and the child's own next fork()
 * would wait for them forever.
 */
static void wait_for_fork(void)
{
    lock_unmark();
    long nap_ns = 0;
    while (atomic_load_explicit(&forking, memory_order_acquire))
        nori__nap_backoff(&nap_ns);
}

/* Marks the thread (*outermost: the outermost mark); false when a fork is
 * pending and it stepped back: the caller starts again. */
static bool mark_for_lock(bool *outermost)
{
    *outermost = lock_mark();
    if (*outermost && atomic_load_explicit(&forking, memory_order_seq_cst)) {
        wait_for_fork();
        return false;
    }
    return true;
}

#define WAIT_SLICE_MS 1

void nori__epoch_lock(pthread_mutex_t *m)
{
    bool outermost;
    for (;;) {
        if (!mark_for_lock(&outermost))
            continue;
        if (pthread_mutex_trylock(m) == 0)
            return;
        if (!outermost) { /* holds another lock: cannot step back */
            pthread_mutex_lock(m);
            return;
        }
        for (;;) { /* busy: wait in slices, stepping back for a fork */
            int rc = nori__mutex_lock_within(m, WAIT_SLICE_MS);
            if (rc == 0)
                return;
            if (rc != ETIMEDOUT && rc != EINTR) { /* not with a valid mutex */
                pthread_mutex_lock(m);
                return;
            }
            if (atomic_load_explicit(&forking, memory_order_seq_cst))
                break;
        }
        wait_for_fork();
    }
}

bool nori__epoch_trylock(pthread_mutex_t *m)
{
    bool outermost;
    if (!mark_for_lock(&outermost))
        return false; /* a fork is pending: busy */
    if (pthread_mutex_trylock(m) == 0)
        return true;
    lock_unmark();
    return false;
}

void nori__epoch_unlock(pthread_mutex_t *m)
{
    pthread_mutex_unlock(m);
    lock_unmark();
}

void nori__epoch_fork_begin(void)
{
    atomic_store_explicit(&forking, 1, memory_order_seq_cst);
}

void nori__epoch_fork_end(void)
{
    atomic_store_explicit(&forking, 0, memory_order_release);
}

bool nori__epoch_others_marked(void)
{
    for (epoch_slot *s = atomic_load_explicit(&slots, memory_order_acquire); s != NULL;
         s = s->next)
        if (s != nori__epoch_mine && atomic_load_explicit(&s->locked, memory_order_seq_cst) != 0)
            return true;
    unsigned mine = marked_slotless ? 1 : 0;
    return atomic_load_explicit(&slotless_marks, memory_order_seq_cst) > mine;
}

uint64_t nori__epoch_now(void)
{
    return atomic_load_explicit(&nori__epoch_global, memory_order_seq_cst);
}

/* Looking costs a cache miss per slot of a thread that reads: with more
 * slots than this the answer is "yes" without looking (the caller then
 * defers the free, which is always correct). */
#define ANY_READER_MAX_SLOTS 8

bool nori__epoch_any_reader(void)
{
    int n = 0;
    for (epoch_slot *s = atomic_load_explicit(&slots, memory_order_acquire); s != NULL;
         s = s->next)
        if (++n > ANY_READER_MAX_SLOTS ||
            atomic_load_explicit(&s->active, memory_order_seq_cst) != 0)
            return true;
    return false;
}

uint64_t nori__epoch_safe(void)
{
    atomic_fetch_add_explicit(&nori__epoch_global, 1, memory_order_seq_cst);
    uint64_t oldest = UINT64_MAX;
    for (epoch_slot *s = atomic_load_explicit(&slots, memory_order_acquire); s != NULL;
         s = s->next) {
        uint64_t a = atomic_load_explicit(&s->active, memory_order_seq_cst);
        if (a != 0 && a < oldest)
            oldest = a;
    }
    return oldest;
}

unsigned nori__epoch_slot_count(void)
{
    unsigned n = 0;
    for (epoch_slot *s = atomic_load_explicit(&slots, memory_order_acquire); s != NULL;
         s = s->next)
        n++;
    return n;
}

unsigned nori__epoch_slots_in_use(void)
{
    unsigned n = 0;
    for (epoch_slot *s = atomic_load_explicit(&slots, memory_order_acquire); s != NULL;
         s = s->next)
        n += atomic_load_explicit(&s->in_use, memory_order_acquire) != 0;
    return n;
}
