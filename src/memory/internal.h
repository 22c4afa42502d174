/*
 * The memory backend's shared internals: the entry, the shard, the backend,
 * and the few functions its parts (store.c, sweeper.c) call in each other.
 * Locking rule everywhere: functions named do_* are called with their
 * shard's lock held.
 */
#ifndef NORI_SRC_MEMORY_INTERNAL_H
#define NORI_SRC_MEMORY_INTERNAL_H

#include "backend.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A power of two; see store.c for why 64. */
#define NSHARDS 64
#define NSHARDS_BITS 6
/* Counter stripes for hits and misses, written by readers without a lock. */
#define NSTRIPES 64
#define EMPTY_STAMP UINT64_MAX

typedef struct mem_entry mem_entry;
typedef _Atomic(mem_entry *) mem_link;

/*
 * An entry: a 39-byte header, then the expiry time only when it has one,
 * then the key and the value, each NUL-terminated. Immutable once linked,
 * except `stamp` and `touched`, which lock-free readers write.
 */
struct mem_entry {
    mem_link hnext; /* next entry in the same bucket; readers follow it */
    union {
        mem_entry *lru_prev; /* more recently used neighbour (under the lock) */
        uint64_t retired_at; /* once unlinked: the epoch it was retired in */
    };
    mem_entry *lru_next;     /* less recently used neighbour; once unlinked: next retired */
    _Atomic uint64_t stamp;  /* last access, see next_stamp() */
    uint32_t vlen;
    uint16_t kflags;         /* key length (low 14 bits) | HAS_EXPIRY | MAPPED */
    _Atomic uint8_t touched; /* a lock-free read refreshed stamp since the entry was placed */
    char data[];             /* [int64 expires_ms] key NUL value NUL */
};

#define HAS_EXPIRY 0x8000u
#define MAPPED 0x4000u /* the entry has pages of its own (mmap), see entry_alloc() */
#define KLEN_MASK 0x3fffu

/* A bucket array, replaced whole when it grows (readers may hold the old one). */
typedef struct mem_table {
    size_t mask;               /* buckets - 1 */
    struct mem_table *retired; /* next retired table */
    uint64_t retired_at;
    mem_link b[];
} mem_table;

typedef struct mem_backend mem_backend;

typedef struct mem_shard {
    /* Read by lock-free readers on every lookup; written only on growth. */
    alignas(64) _Atomic(mem_table *) table;
    _Atomic unsigned resize_seq; /* odd while entries move to a new table */
    mem_backend *mb;
    _Atomic uint64_t *tail_stamp; /* -> mb->tail_stamps[this shard] */

    /* Everything below is written under the lock. */
    alignas(64) pthread_mutex_t lock;
    mem_entry *lru_head; /* most recently used */
    mem_entry *lru_tail; /* least recently used */
    mem_entry *limbo;    /* unlinked entries waiting for readers to leave */
    size_t limbo_count, limbo_bytes;
    mem_table *retired_tables;
    size_t sweep_cursor; /* the sweeper's next bucket */
    /* Read without the lock by get_stats (so it works from a callback). */
    _Atomic size_t count;
    _Atomic size_t bytes; /* charged bytes of the entries held, see entry_charge() */
    _Atomic uint64_t evictions, expired;
} mem_shard;

typedef struct {
    alignas(64) _Atomic uint64_t hits;
    _Atomic uint64_t misses;
} mem_stripe;

struct mem_backend {
    nori_backend base; /* must be first */
    size_t max_keys;
    _Atomic size_t max_bytes; /* 0: no byte bound */
    uint64_t seed;
    /* Entries held plus room reserved by writes in flight; each is only ever
     * raised by compare-and-swap below its bound. */
    alignas(64) _Atomic size_t places;
    _Atomic size_t bytes;

    /* The active expiry thread (sweeper.c). */
    pthread_t sweeper;
    bool has_sweeper;
    pthread_mutex_t sweep_lock;
    pthread_cond_t sweep_cond;
    bool sweep_stop;               /* under sweep_lock */
    _Atomic uint64_t sweep_cycles; /* cycles run, for tests and stats */
    size_t sweep_next_shard;       /* the sweeper thread's own */
    size_t freed_since_trim;       /* the sweeper thread's own */

    /* Each shard's tail stamp, packed so that finding the oldest tail reads
     * a few cache lines. Written under the shard's lock, read without it. */
    alignas(64) _Atomic uint64_t tail_stamps[NSHARDS];
    mem_shard shards[NSHARDS];
    mem_stripe stripes[NSTRIPES];
};

/* Adds to a counter that only the holder of its shard's lock writes: a plain
 * load and store, no locked instruction. */
#define SHARD_ADD(field, n)                                                                   \
    atomic_store_explicit(&(field), atomic_load_explicit(&(field), memory_order_relaxed) + (n), \
                          memory_order_relaxed)

static inline void shard_lock(mem_shard *s)
{
    pthread_mutex_lock(&s->lock);
}

static inline void shard_unlock(mem_shard *s)
{
    pthread_mutex_unlock(&s->lock);
}

/* store.c: removes the shard's expired entries in the next `nbuckets`
 * buckets from its sweep cursor; returns how many, adds the bytes freed to
 * *freed and the entries looked at to *examined. */
size_t nori__mem_do_sweep_chunk(mem_shard *s, size_t nbuckets, int64_t now, size_t *examined,
                                size_t *freed);

/* store.c: halves the shard's bucket array while it is mostly empty. */
void nori__mem_do_maybe_shrink(mem_shard *s);

/* store.c: frees what readers can no longer see. */
void nori__mem_do_reclaim(mem_shard *s);

/* sweeper.c */
int nori__mem_sweeper_start(mem_backend *mb);
void nori__mem_sweeper_stop(mem_backend *mb);
/* One cycle, within `budget_us`; returns the entries removed. `full`: a
 * whole pass over every shard, without stopping early (tests). */
size_t nori__mem_sweep_cycle(mem_backend *mb, int64_t budget_us, bool full);

#endif
