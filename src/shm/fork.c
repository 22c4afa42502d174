// SPDX-License-Identifier: MIT
/*
 * fork() and the shared-memory backend.
 *
 * The segment's locks belong to the segment, not to a process: a lock held
 * by another thread of the parent at fork() is released by that thread in
 * the parent, and the child waits for it like any other process (within
 * the lock timeout). The child's copy of the forking thread's robust list
 * is emptied by the C library, so the child never "owns" a parent's lock.
 * What remains process-local is handled here:
 *  - the handle's pid, which the locked sections compare to tell a child
 *    that inherited a section in progress (fork() from an atomic_update
 *    callback: the child writes nothing, see ops.c);
 *  - the expiry thread, which the child does not have: it starts its own at
 *    its first write;
 *  - this registry's own mutex, taken across fork() (prepare/parent/child)
 *    so that the child never inherits it locked.
 */
#include "shm/internal.h"

#include <unistd.h>

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static shm_backend *registry;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void prepare(void)
{
    pthread_mutex_lock(&registry_lock);
}

static void parent(void)
{
    pthread_mutex_unlock(&registry_lock);
}

static void child(void)
{
    pid_t pid = getpid();
    for (shm_backend *sb = registry; sb != NULL; sb = sb->reg_next) {
        atomic_store_explicit(&sb->pid, pid, memory_order_relaxed);
        if (sb->has_sweeper)
            atomic_store_explicit(&sb->want_sweeper, true, memory_order_relaxed);
    }
    pthread_mutex_unlock(&registry_lock);
}

static void register_handlers(void)
{
    (void)pthread_atfork(prepare, parent, child);
}

void nori__shm_fork_init(void)
{
    pthread_once(&atfork_once, register_handlers);
}

void nori__shm_register(shm_backend *sb)
{
    nori__shm_fork_init();
    pthread_mutex_lock(&registry_lock);
    sb->reg_prev = NULL;
    sb->reg_next = registry;
    if (registry != NULL)
        registry->reg_prev = sb;
    registry = sb;
    pthread_mutex_unlock(&registry_lock);
}

void nori__shm_unregister(shm_backend *sb)
{
    pthread_mutex_lock(&registry_lock);
    if (sb->reg_prev != NULL)
        sb->reg_prev->reg_next = sb->reg_next;
    else if (registry == sb)
        registry = sb->reg_next;
    if (sb->reg_next != NULL)
        sb->reg_next->reg_prev = sb->reg_prev;
    sb->reg_prev = sb->reg_next = NULL;
    pthread_mutex_unlock(&registry_lock);
}
