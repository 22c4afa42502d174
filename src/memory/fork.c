// SPDX-License-Identifier: MIT
/*
 * fork() and the memory backend. The child has one thread, the one that
 * called fork(), and a copy of every backend as it was at that instant. It
 * may use and free them (README), so at fork() no backend may be in the
 * middle of a change, and no lock it needs may be held by a thread the
 * child does not have.
 *
 * Every lock of the memory backend (each shard's lock, the mapping cache's
 * lock) is taken through nori__epoch_lock()/nori__epoch_trylock() (epoch.c,
 * next to the thread's slot), which first mark the calling thread's epoch
 * slot (a store to a line of its own) and then look at a process-wide
 * `forking` flag. The pthread_atfork prepare handler sets the flag and
 * waits until no other thread is marked. Both sides are seq_cst (a store,
 * then a load), so in their single total order either the handler sees the
 * mark, and waits until the lock is let go, or the thread sees the flag and
 * steps back, unmarked, until fork() has returned. So at the instant of
 * fork() no other thread holds a lock of the memory backend or is in a
 * critical section, and none holds a lock the handler waits for (it holds
 * none of theirs). The handler holds only the registry lock across fork(),
 * not every shard lock: ThreadSanitizer's deadlock detector tracks at most
 * 64 locks held by one thread, and aborts beyond. Threads that stepped back
 * poll the flag instead of waiting on a lock (epoch.c says why).
 *
 * A thread waiting for a busy lock waits in slices of 1 ms and steps back
 * when a fork is pending: the lock may be held by the forking thread itself
 * (fork() from inside an atomic_update callback, whose shard's lock it
 * holds), and the handler would otherwise wait for the waiter forever. A
 * thread that takes a lock while it holds another (a callback calling
 * another backend) cannot step back: it waits. So the one case that still
 * deadlocks is fork() from inside a callback while another thread, inside
 * a callback of its own, waits for the forking thread's shard.
 *
 * The lock-free readers take no lock: their epoch slots are released in the
 * child (epoch.c). Room (the two bounds' counters) that writes in flight
 * had taken without holding a lock belongs to threads the child does not
 * have: the child handler recounts it from the entries held, plus the room
 * of the forking thread's own decision when it forks from inside an
 * atomic_update callback; else the child would have less room than its
 * bounds allow, or none and wait for it forever.
 *
 * fork() therefore waits for every critical section in progress: a sweeper
 * step (a few dozen buckets), a write's link, or an atomic_update callback
 * for as long as it runs.
 */
#include "memory/internal.h"

#include "clock.h"
#include "memory/epoch.h"
#include "memory/memory.h"

MEM_THREAD_LOCAL const callback_frame *nori__mem_active_callbacks;

/* The room the calling thread holds while a decision of mb runs on it. */
static room room_held_here(const mem_backend *mb)
{
    room r = {0, 0};
    for (const callback_frame *f = nori__mem_active_callbacks; f != NULL; f = f->outer)
        if (f->mb == mb) {
            r.places += f->held->places;
            r.bytes += f->held->bytes;
        }
    return r;
}

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static mem_backend *registry; /* every live memory backend, newest first */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void prepare(void)
{
    nori__epoch_fork_begin();
    /* Wait for the critical sections in progress: yields first, then naps
     * of 50 us doubling to 1 ms (an atomic_update callback may run long). */
    long nap_ns = 0;
    while (nori__epoch_others_marked())
        nori__nap_backoff(&nap_ns);
    /* After the wait: a thread in a critical section may free a backend
     * (a callback calling nori_backend_free on another one). */
    pthread_mutex_lock(&registry_lock);
}

static void parent(void)
{
    pthread_mutex_unlock(&registry_lock);
    nori__epoch_fork_end();
}

/* In the child: the room counters are what the entries hold, plus what
 * this thread's own unfinished decision holds. */
static void child(void)
{
    for (mem_backend *mb = registry; mb != NULL; mb = mb->fork_next) {
        room r = room_held_here(mb);
        for (int i = 0; i < NSHARDS; i++) {
            r.places += atomic_load_explicit(&mb->shards[i].count, memory_order_relaxed);
            r.bytes += atomic_load_explicit(&mb->shards[i].bytes, memory_order_relaxed);
        }
        atomic_store_explicit(&mb->places, r.places, memory_order_relaxed);
        atomic_store_explicit(&mb->bytes, r.bytes, memory_order_relaxed);
    }
    parent();
}

static void register_handlers(void)
{
    (void)pthread_atfork(prepare, parent, child);
}

void nori__memory_fork_init(void)
{
    pthread_once(&atfork_once, register_handlers);
}

void nori__mem_fork_register(mem_backend *mb)
{
    nori__memory_fork_init();
    pthread_mutex_lock(&registry_lock);
    mb->fork_prev = NULL;
    mb->fork_next = registry;
    if (registry != NULL)
        registry->fork_prev = mb;
    registry = mb;
    pthread_mutex_unlock(&registry_lock);
}

void nori__mem_fork_unregister(mem_backend *mb)
{
    pthread_mutex_lock(&registry_lock);
    if (mb->fork_prev != NULL)
        mb->fork_prev->fork_next = mb->fork_next;
    else
        registry = mb->fork_next;
    if (mb->fork_next != NULL)
        mb->fork_next->fork_prev = mb->fork_prev;
    pthread_mutex_unlock(&registry_lock);
}
