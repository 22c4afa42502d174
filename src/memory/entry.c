// SPDX-License-Identifier: MIT
/*
 * The memory backend's entries: one allocation each (header, expiry, key,
 * value), from malloc, or, for entries of MAP_MIN bytes and more, pages of
 * their own with a small cache of freed mappings. The layout and the
 * accessors are in internal.h (the read path inlines them).
 */
#include "memory/internal.h"

#include "error.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

size_t nori_memory_entry_bytes(size_t key_len, size_t value_len, int has_ttl)
{
    return mem_entry_bytes(key_len, value_len, has_ttl != 0);
}

/*
 * Entries of MAP_MIN bytes or more get pages of their own (mmap), the rest
 * come from malloc. Why: memory that glibc's malloc frees stays in the arena
 * of the thread that allocated it, and a later allocation in another
 * thread's arena cannot use it; with values of all sizes written from
 * several threads, a 64 MiB byte bound held 126-189 MiB of RSS that way
 * (docs/BENCHMARKS.md). A mapping goes back to the system the moment it is
 * unmapped, so the large entries, which hold most of the bytes, never
 * strand memory. The cost, two system calls per large write, is small next
 * to copying 16 KiB.
 */
#ifndef NORI_MEMORY_MAP_MIN /* -D to measure other choices (docs/BENCHMARKS.md) */
#define NORI_MEMORY_MAP_MIN ((size_t)16 * 1024)
#endif
#define MAP_MIN ((size_t)NORI_MEMORY_MAP_MIN)

/*
 * A mapping and its unmapping cost two system calls and, in a multi-threaded
 * process, a TLB shootdown on every core; with page faults on top that made
 * large writes 6-8x slower than malloc here. So freed mappings of up to
 * MAP_CACHE_PAGES pages are kept (MAP_CACHE_BYTES in all, outside the byte
 * bound) and reused for the next entry of the same number of pages.
 */
#define MAP_CACHE_BYTES ((size_t)4 * 1024 * 1024)

static mem_entry *entry_alloc(mem_backend *mb, size_t size, bool *mapped)
{
    *mapped = size >= MAP_MIN;
    if (!*mapped)
        return malloc(size);
    size_t len = page_round(size), pages = len / 4096;
    if (pages <= MAP_CACHE_PAGES) {
        nori__epoch_lock(&mb->map_lock);
        void *p = mb->map_free[pages];
        if (p != NULL) {
            memcpy(&mb->map_free[pages], p, sizeof p);
            mb->map_cached -= len;
        }
        nori__epoch_unlock(&mb->map_lock);
        if (p != NULL)
            return p;
    }
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                   -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void map_release(mem_backend *mb, void *p, size_t len)
{
    size_t pages = len / 4096;
    if (pages <= MAP_CACHE_PAGES) {
        nori__epoch_lock(&mb->map_lock);
        bool keep = mb->map_cached + len <= MAP_CACHE_BYTES;
        if (keep) {
            memcpy(p, &mb->map_free[pages], sizeof p);
            mb->map_free[pages] = p;
            mb->map_cached += len;
        }
        nori__epoch_unlock(&mb->map_lock);
        if (keep)
            return;
    }
    munmap(p, len);
}

void nori__mem_entry_free(mem_backend *mb, mem_entry *e)
{
    if (e == NULL)
        return;
    if (entry_flags(e) & MAPPED)
        map_release(mb, e, page_round(entry_size(entry_klen(e), e->vlen, entry_has_expiry(e))));
    else
        free(e);
}

/* Unmaps the kept mappings (the backend is being freed). */
void nori__mem_map_cache_free(mem_backend *mb)
{
    for (size_t pages = 1; pages <= MAP_CACHE_PAGES; pages++) {
        void *p = mb->map_free[pages];
        while (p != NULL) {
            void *next;
            memcpy(&next, p, sizeof next);
            munmap(p, pages * 4096);
            p = next;
        }
    }
    pthread_mutex_destroy(&mb->map_lock);
}

mem_entry *nori__mem_entry_new(mem_backend *mb, const char *key, size_t klen, const void *val,
                            size_t vlen, int64_t expires_ms)
{
    bool mapped;
    mem_entry *e = entry_alloc(mb, entry_size(klen, vlen, expires_ms != 0), &mapped);
    if (e == NULL) {
        nori__fail(NORI_ENOMEM, "out of memory storing %zu bytes under key '%.64s'", vlen, key);
        return NULL;
    }
    e->hash32 = 0; /* set when linked (table.c) */
    e->lru_prev = e->lru_next = NULL;
    atomic_init(&e->stamp, 0);
    atomic_init(&e->kflags,
                (uint16_t)(klen | (expires_ms != 0 ? HAS_EXPIRY : 0) | (mapped ? MAPPED : 0)));
    e->vlen = (uint32_t)vlen;
    if (expires_ms != 0)
        memcpy(e->data, &expires_ms, sizeof expires_ms);
    char *k = e->data + expiry_size(expires_ms != 0);
    memcpy(k, key, klen);
    k[klen] = '\0';
    char *v = k + klen + 1;
    if (vlen > 0)
        memcpy(v, val, vlen);
    v[vlen] = '\0';
    return e;
}
