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

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>

typedef struct epoch_slot {
    alignas(64) _Atomic uint64_t active; /* 0: outside a read section; else its epoch */
    _Atomic int in_use;                  /* owned by a live thread */
    unsigned index;                      /* 0, 1, 2, ... in creation order */
    struct epoch_slot *next;             /* immutable once the slot is published */
} epoch_slot;

static _Atomic(epoch_slot *) slots;
static _Atomic uint64_t global_epoch = 1;
static pthread_key_t slot_key;
static pthread_once_t slot_key_once = PTHREAD_ONCE_INIT;
static _Thread_local epoch_slot *my_slot;
static _Thread_local unsigned depth;
/*
 * Set when slot_key's destructor has run on this thread: the thread is
 * exiting and has handed its slot back. Destructors of keys created after
 * slot_key run after it, and may still read the cache (an application that
 * flushes per-thread state at exit). Such a thread must not keep the slot it
 * handed back (a new thread may own it already: the two would share it, and
 * the first to leave its section would mark it idle while the other still
 * copies). Nor may it take a slot for good, whose destructor round may be
 * over (PTHREAD_DESTRUCTOR_ITERATIONS). So each of its read sections
 * borrows a free slot and hands it back when the section ends. (A thread
 * whose very first read comes from a destructor in the last round, after
 * slot_key's turn, takes a slot that no destructor hands back: 64 bytes,
 * never reused. Nothing tells such a thread from one starting its work.)
 */
static _Thread_local bool exiting;

static void give_back(epoch_slot *s)
{
    atomic_store_explicit(&s->active, 0, memory_order_release);
    atomic_store_explicit(&s->in_use, 0, memory_order_release);
}

/* slot_key's destructor, on the exiting thread: the slot goes back to the
 * pool and the thread forgets it (see `exiting`). */
static void release_slot(void *p)
{
    give_back(p);
    my_slot = NULL;
    depth = 0; /* a section left open by pthread_exit() ended with the slot */
    exiting = true;
}

/* In a forked child only the forking thread exists: the other threads'
 * slots would stay "in a read section" forever and hold every retired
 * entry; they are released. */
static void forget_other_threads(void)
{
    for (epoch_slot *s = atomic_load_explicit(&slots, memory_order_acquire); s != NULL;
         s = s->next)
        if (s != my_slot)
            give_back(s);
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
    /* An exiting thread borrows the slot for one section (see `exiting`);
     * any other keeps it until slot_key's destructor hands it back. */
    if (!exiting && pthread_setspecific(slot_key, s) != 0) {
        give_back(s);
        return NULL;
    }
    my_slot = s;
    return s;
}

bool nori__epoch_enter(void)
{
    if (depth++ > 0)
        return true;
    epoch_slot *s = my_slot;
    if (s == NULL && (s = acquire_slot()) == NULL) {
        depth = 0;
        return false;
    }
    uint64_t e = atomic_load_explicit(&global_epoch, memory_order_relaxed);
    /* seq_cst: the store is ordered before every later load of this thread
     * (on x86 one xchg). */
    atomic_exchange_explicit(&s->active, e, memory_order_seq_cst);
    return true;
}

void nori__epoch_exit(void)
{
    if (--depth > 0)
        return;
    epoch_slot *s = my_slot;
    atomic_store_explicit(&s->active, 0, memory_order_release);
    if (exiting) { /* a borrowed slot */
        my_slot = NULL;
        atomic_store_explicit(&s->in_use, 0, memory_order_release);
    }
}

/* Outside a section, an exiting thread holds no slot: UINT32_MAX. */
unsigned nori__epoch_slot_index(void)
{
    return my_slot != NULL ? my_slot->index : UINT32_MAX;
}

uint64_t nori__epoch_now(void)
{
    return atomic_load_explicit(&global_epoch, memory_order_seq_cst);
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
    atomic_fetch_add_explicit(&global_epoch, 1, memory_order_seq_cst);
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
