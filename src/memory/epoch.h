// SPDX-License-Identifier: MIT
/*
 * Epoch-based reclamation for the memory backend's lock-free read path.
 *
 * A reader brackets its lookup with nori__epoch_enter()/nori__epoch_exit():
 * entering publishes the global epoch in the thread's own slot (its own
 * cache line: a read writes nothing another thread reads on its hot path).
 * A writer that unlinks an object tags it with nori__epoch_now() and keeps
 * it until nori__epoch_safe() returns a value above that tag: by then every
 * reader that could have seen the object has left its read section.
 *
 * The slots form a process-wide list that only grows (one slot per thread
 * alive at once, reused after a thread exits). A thread owns its slot from
 * its first read section until its pthread key destructor hands it back;
 * read sections it runs after that (from other keys' destructors, as it
 * exits) each borrow a free slot for the section only, so no two threads
 * ever use one slot at once and no slot outlives its thread. All synchronisation is C11
 * atomics, so ThreadSanitizer sees the happens-before edges (liburcu's
 * grace periods are invisible to it).
 */
#ifndef NORI_SRC_MEMORY_EPOCH_H
#define NORI_SRC_MEMORY_EPOCH_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Thread-local state of the memory backend (epoch slots, stamps, callback
 * frames) uses the initial-exec TLS model. In libnoricache.so the default
 * (general-dynamic) model reaches each thread-local variable through a call
 * to __tls_get_addr(): several per get, a sixth of the instructions of a
 * lookup. Initial-exec reads it at a fixed offset from the thread pointer;
 * the cost is a few dozen bytes of the static TLS block, which glibc also
 * reserves for libraries loaded by dlopen().
 */
#define MEM_THREAD_LOCAL _Thread_local __attribute__((tls_model("initial-exec")))

/* A thread's slot. Public here only so that entering and leaving a read
 * section is inline (the read path of every get). */
typedef struct nori__epoch_slot {
    alignas(64) _Atomic uint64_t active; /* 0: outside a read section; else its epoch */
    _Atomic int in_use;                  /* owned by a live thread */
    unsigned index;                      /* 0, 1, 2, ... in creation order */
    struct nori__epoch_slot *next;       /* immutable once the slot is published */
    /* Its own line: written on every lock the thread takes, while writers
     * read `active` of every slot on their retire path. */
    alignas(64) _Atomic unsigned locked; /* 1: holds, or is taking, a lock (nori__epoch_lock) */
} nori__epoch_slot;

/* epoch.c's state, read by the inline functions below only. */
extern _Atomic uint64_t nori__epoch_global;
extern MEM_THREAD_LOCAL nori__epoch_slot *nori__epoch_mine; /* NULL: no slot (yet) */
extern MEM_THREAD_LOCAL unsigned nori__epoch_depth;         /* read sections, nested */
extern MEM_THREAD_LOCAL bool nori__epoch_exiting;           /* see epoch.c */
bool nori__epoch_enter_slow(void);
void nori__epoch_exit_borrowed(void);

/* Enters a read section; false when no slot could be allocated (out of
 * memory): the caller then takes the locked path. Sections nest. */
static inline bool nori__epoch_enter(void)
{
    if (nori__epoch_depth++ > 0)
        return true;
    nori__epoch_slot *s = nori__epoch_mine;
    if (s == NULL)
        return nori__epoch_enter_slow();
    uint64_t e = atomic_load_explicit(&nori__epoch_global, memory_order_relaxed);
    /* seq_cst: the store is ordered before every later load of this thread
     * (on x86 one xchg). */
    atomic_exchange_explicit(&s->active, e, memory_order_seq_cst);
    return true;
}

static inline void nori__epoch_exit(void)
{
    if (--nori__epoch_depth > 0)
        return;
    atomic_store_explicit(&nori__epoch_mine->active, 0, memory_order_release);
    if (nori__epoch_exiting) /* a borrowed slot */
        nori__epoch_exit_borrowed();
}

/* The calling thread's slot number (0, 1, ...; UINT32_MAX before its first
 * read section, and outside a section once the thread is exiting). No two
 * threads hold one slot at once: the memory backend uses it to give each
 * thread a counter stripe of its own. */
static inline unsigned nori__epoch_slot_index(void)
{
    nori__epoch_slot *s = nori__epoch_mine;
    return s != NULL ? s->index : UINT32_MAX;
}

/* The current global epoch: the tag of an object unlinked just before. */
uint64_t nori__epoch_now(void);

/*
 * Whether any thread is in a read section now. A writer that unlinked an
 * object with a seq_cst store and then finds no reader may free it at once:
 * a reader that enters later sees the unlink (its entry is a seq_cst
 * exchange, after this load in the single total order).
 */
bool nori__epoch_any_reader(void); /* "true" without looking past 8 slots */

/* Advances the global epoch and returns the oldest epoch a reader still in
 * a section may hold (UINT64_MAX when none is): an object tagged t may be
 * freed when t < the result. */
uint64_t nori__epoch_safe(void);

/*
 * The memory backend's locks, marked in the thread's slot so that fork()
 * can wait until no other thread holds one (fork.c has the protocol). A
 * thread marks its slot before it takes its outermost lock and unmarks it
 * after letting it go; while a fork is prepared, a thread about to take an
 * outermost lock (or waiting for a busy one) steps back and waits until
 * fork() has returned. nori__epoch_trylock() is false also then.
 *
 * nori__epoch_fork_begin() (the prepare handler) makes new outermost locks
 * wait; nori__epoch_others_marked() says whether a thread other than the
 * caller is still marked; nori__epoch_fork_end() (parent and child handlers)
 * lets them go on.
 */
#include <pthread.h>
void nori__epoch_lock(pthread_mutex_t *m);
bool nori__epoch_trylock(pthread_mutex_t *m);
void nori__epoch_unlock(pthread_mutex_t *m);
void nori__epoch_fork_begin(void);
bool nori__epoch_others_marked(void);
void nori__epoch_fork_end(void);

/* Tests: the slots that exist, and those owned by a thread now. */
unsigned nori__epoch_slot_count(void);
unsigned nori__epoch_slots_in_use(void);

#endif
