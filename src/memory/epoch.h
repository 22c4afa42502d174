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

#include <stdbool.h>
#include <stdint.h>

/* Enters a read section; false when no slot could be allocated (out of
 * memory): the caller then takes the locked path. Sections nest. */
bool nori__epoch_enter(void);
void nori__epoch_exit(void);

/* The calling thread's slot number (0, 1, ...; UINT32_MAX before its first
 * read section, and outside a section once the thread is exiting). No two
 * threads hold one slot at once: the memory backend uses it to give each
 * thread a counter stripe of its own. */
unsigned nori__epoch_slot_index(void);

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
