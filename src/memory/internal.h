// SPDX-License-Identifier: MIT
/*
 * The memory backend's shared internals: the entry, the shard, the backend,
 * and the few functions its parts (store.c, sweeper.c) call in each other.
 * Locking rule everywhere: functions named do_* are called with their
 * shard's lock held.
 */
#ifndef NORI_SRC_MEMORY_INTERNAL_H
#define NORI_SRC_MEMORY_INTERNAL_H

#include "backend.h"
#include "hash.h"
#include "memory/epoch.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

/* A power of two; see store.c for why 64. */
#define NSHARDS 64
#define NSHARDS_BITS 6
/* Counter stripes for hits and misses, written by readers without a lock:
 * one per epoch slot below NSTRIPES, plus one shared by every other thread. */
#define NSTRIPES 64
#define EMPTY_STAMP UINT64_MAX
/* Large entries' mappings of up to this many pages are kept for reuse. */
#define MAP_CACHE_PAGES 64

typedef struct mem_entry mem_entry;
/* A slot of a bucket: the entry it holds, or NULL. */
typedef _Atomic(mem_entry *) mem_link;

/*
 * An entry: a 34-byte header, then the expiry time only when it has one,
 * then the key and the value, each NUL-terminated. Immutable once linked,
 * except `stamp` and the TOUCHED bit, which lock-free readers write. A
 * reader reads `hash32`, `vlen`, `kflags`, the key and the value; the list
 * links are the writers'. (At most 38 bytes: with a 16-byte key and a
 * 64-byte value a 39th byte would cross a malloc size class and cost 16
 * bytes per entry.)
 */
struct mem_entry {
    union {
        mem_entry *lru_prev; /* more recently used neighbour (under the lock) */
        uint64_t retired_at; /* once unlinked: the epoch it was retired in */
    };
    mem_entry *lru_next;     /* less recently used neighbour; once unlinked: next retired */
    _Atomic uint64_t stamp;  /* last access, see next_stamp() */
    /* The key's hash, low 32 bits: its home bucket, so that growing the
     * table or evicting the entry does not hash the key again, and a
     * cheap check before the key is compared. */
    uint32_t hash32;
    uint32_t vlen;
    /* key length (low 13 bits) | HAS_EXPIRY | MAPPED, fixed at creation,
     * | TOUCHED: a lock-free read refreshed `stamp` since the entry was
     * placed in the recency list (set by readers, cleared under the lock). */
    _Atomic uint16_t kflags;
    char data[];             /* [int64 expires_ms] key NUL value NUL */
};

#define HAS_EXPIRY 0x8000u
#define MAPPED 0x4000u /* the entry has pages of its own (mmap), see entry_alloc() */
#define TOUCHED 0x2000u
#define KLEN_MASK 0x1fffu

/*
 * The hash table: open addressing over buckets of one cache line each,
 * seven slots and a `meta` word (the layout of folly's F14 and of
 * SwissTable, in its simplest form). Byte i of `meta` (i < 7) is slot i's
 * tag, 8 bits of the key's hash (never 0; 0: the slot is free); the top
 * byte counts the entries whose home bucket comes before this one and that
 * live past it (probing is linear, bucket by bucket), saturated at 255. A
 * lookup reads the home bucket's line, compares the 7 tags at once, and
 * touches only the entries whose tag matches (1 in 255 of the others); it
 * goes on to the next bucket only while the overflow count is not 0.
 *
 * Why: with chains, a lookup read the bucket, then every entry before the
 * one it looked for (to follow its link) and compared their keys; two
 * dependent cache misses at least, three at load 1. Here a hit costs the
 * bucket line, usually in cache, and the entry's line.
 *
 * Readers take no lock. The lock holder writes `meta` whole (never a byte
 * alone: mixed-size atomics are not C11) and slots with release stores; a
 * reader loads `meta` (acquire), then a slot (acquire), and checks the key
 * in the entry, so any mix of old and new tags and slots it may see is
 * safe: a stale tag leads to a NULL slot or to an entry of another key. A
 * key never moves within a table (a set of an existing key replaces its
 * slot in place; a removal frees its slot and nothing is shifted), so a
 * reader never misses a key that stays present. A table is replaced whole
 * when it grows or shrinks: the new one is filled, then published, and the
 * old one no longer changes; readers still on it see the table as it was
 * when they loaded it.
 */
#define BUCKET_SLOTS 7
#define OVERFLOW_SHIFT 56
#define OVERFLOW_MAX 255u

typedef struct mem_bucket {
    alignas(64) _Atomic uint64_t meta;
    mem_link slot[BUCKET_SLOTS];
} mem_bucket;

/* A bucket array, replaced whole when it grows (readers may hold the old one). */
typedef struct mem_table {
    size_t nbuckets;           /* any count, see home_bucket() */
    struct mem_table *retired; /* next retired table */
    uint64_t retired_at;
    mem_bucket b[];            /* 64-byte aligned */
} mem_table;

typedef struct mem_backend mem_backend;

typedef struct mem_shard {
    /* Read by lock-free readers on every lookup; written only on growth. */
    alignas(64) _Atomic(mem_table *) table;
    /* The table's bucket count, kept here for prefetch_bucket() only: read
     * with `table` but not as a pair, it may belong to another table. */
    _Atomic size_t nbuckets_hint;
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
    pid_t sweeper_pid;             /* the process the thread runs in (fork) */
    pthread_mutex_t sweep_lock;
    pthread_cond_t sweep_cond;
    bool sweep_stop;               /* under sweep_lock */
    _Atomic uint64_t sweep_cycles; /* cycles run, for tests and stats */
    size_t sweep_next_shard;       /* the sweeper thread's own */
    size_t freed_since_trim;       /* the sweeper thread's own */
    bool sweep_backlog;            /* the sweeper thread's own: the last cycle left work */

    /* The registry of live backends whose room a forked child recounts
     * (fork.c), under its registry lock. */
    mem_backend *fork_prev, *fork_next;

    /* Mappings of large entries kept for reuse (store.c, entry_alloc()):
     * map_free[n] lists free mappings of n pages; map_cached counts their
     * bytes, at most MAP_CACHE_BYTES. */
    pthread_mutex_t map_lock;
    void *map_free[MAP_CACHE_PAGES + 1];
    size_t map_cached;

    /* Each shard's tail stamp, packed so that finding the oldest tail reads
     * a few cache lines. Written under the shard's lock, read without it. */
    alignas(64) _Atomic uint64_t tail_stamps[NSHARDS];
    mem_shard shards[NSHARDS];
    mem_stripe stripes[NSTRIPES + 1]; /* [NSTRIPES]: the shared one */
};

/* Adds to a counter that only the holder of its shard's lock writes: a plain
 * load and store, no locked instruction. */
#define SHARD_ADD(field, n)                                                                   \
    atomic_store_explicit(&(field), atomic_load_explicit(&(field), memory_order_relaxed) + (n), \
                          memory_order_relaxed)

/* Every lock of the memory backend (the shards', the mapping cache's) is
 * taken and let go through epoch.c's nori__epoch_lock() and friends, so
 * that fork() can wait until no other thread holds one (fork.c). A trylock
 * is false also while a fork is being prepared. */
void nori__epoch_lock(pthread_mutex_t *m);
bool nori__epoch_trylock(pthread_mutex_t *m);
void nori__epoch_unlock(pthread_mutex_t *m);

static inline void shard_lock(mem_shard *s)
{
    nori__epoch_lock(&s->lock);
}

static inline bool shard_trylock(mem_shard *s)
{
    return nori__epoch_trylock(&s->lock);
}

static inline void shard_unlock(mem_shard *s)
{
    nori__epoch_unlock(&s->lock);
}

/* A new shard's buckets (14 slots, two cache lines). */
#define INITIAL_BUCKETS 2
/* Unlinked entries kept per shard before a reclaim is tried. Small, so that
 * memory held by retired entries stays a small part of the byte bound. */
#define LIMBO_MAX_COUNT 32
#define LIMBO_MAX_BYTES ((size_t)64 * 1024)
/* Bytes charged per entry beyond its content rounded to a size class: the
 * allocator's chunk header (8) and the entry's share of the bucket array
 * (counted as 8; it is 10.4 to 13.3 bytes, see table.c, partly paid for by
 * the header's 4 bytes fewer than when entries had a chain link). */
#define ENTRY_EXTRA 16

/* Room a write holds while it is not linked in yet. */
typedef struct {
    size_t places, bytes;
} room;

/* ---- entries (inline: the read path uses them) ---- */

static inline unsigned entry_flags(const mem_entry *e)
{
    return atomic_load_explicit(&((mem_entry *)e)->kflags, memory_order_relaxed);
}

/* Sets or clears TOUCHED with a plain load and store: every other bit is
 * fixed at creation, so concurrent setters and the clearing writer can only
 * disagree on TOUCHED itself, and either outcome is a valid order of a
 * concurrent read and an eviction. */
static inline void set_touched(mem_entry *e, bool on)
{
    unsigned f = entry_flags(e);
    atomic_store_explicit(&e->kflags, (uint16_t)(on ? f | TOUCHED : f & ~TOUCHED),
                          memory_order_relaxed);
}

static inline size_t expiry_size(bool has_expiry)
{
    return has_expiry ? sizeof(int64_t) : 0;
}

/* The accessors below from flags the caller loaded (entry_flags()): the
 * read path loads them once, as the compiler does not merge atomic loads. */
static inline const char *key_at(const mem_entry *e, unsigned flags)
{
    return e->data + expiry_size((flags & HAS_EXPIRY) != 0);
}

static inline const char *value_at(const mem_entry *e, unsigned flags)
{
    return key_at(e, flags) + (flags & KLEN_MASK) + 1;
}

/* When the entry expires, in nori__now_ms() milliseconds; 0 = never. */
static inline int64_t expires_at(const mem_entry *e, unsigned flags)
{
    int64_t t = 0;
    if (flags & HAS_EXPIRY)
        memcpy(&t, e->data, sizeof t); /* unaligned: the header is 34 bytes */
    return t;
}

static inline size_t entry_klen(const mem_entry *e)
{
    return entry_flags(e) & KLEN_MASK;
}

static inline bool entry_has_expiry(const mem_entry *e)
{
    return (entry_flags(e) & HAS_EXPIRY) != 0;
}

static inline int64_t entry_expires(const mem_entry *e)
{
    return expires_at(e, entry_flags(e));
}

static inline const char *entry_key(const mem_entry *e)
{
    return key_at(e, entry_flags(e));
}

static inline const char *entry_value(const mem_entry *e)
{
    return value_at(e, entry_flags(e));
}

static inline size_t entry_size(size_t klen, size_t vlen, bool has_expiry)
{
    return offsetof(mem_entry, data) + expiry_size(has_expiry) + klen + 1 + vlen + 1;
}

/* The allocator's size class of n bytes (glibc: 16-byte steps for small
 * chunks; above 128 bytes counted in quarter-power-of-two steps, an upper
 * bound of what malloc, or mmap pages for large blocks, costs). */
static inline size_t size_class(size_t n)
{
    if (n <= 128)
        return (n + 15) & ~(size_t)15;
    size_t p = (size_t)1 << (63 - __builtin_clzll((unsigned long long)(n - 1)));
    size_t step = p / 4;
    return (n + step - 1) / step * step;
}

/* The bytes an entry counts against the byte bound. */
static inline size_t mem_entry_bytes(size_t klen, size_t vlen, bool has_expiry)
{
    return size_class(entry_size(klen, vlen, has_expiry)) + ENTRY_EXTRA;
}

static inline size_t entry_charge(const mem_entry *e)
{
    return mem_entry_bytes(entry_klen(e), e->vlen, entry_has_expiry(e));
}

static inline size_t page_round(size_t n)
{
    return (n + 4095) & ~(size_t)4095;
}

static inline bool expired_at(const mem_entry *e, unsigned flags, int64_t now)
{
    int64_t t = expires_at(e, flags);
    return t != 0 && t <= now;
}

static inline bool is_expired(const mem_entry *e, int64_t now)
{
    return expired_at(e, entry_flags(e), now);
}

static inline uint64_t stamp_of(const mem_entry *e)
{
    return atomic_load_explicit(&e->stamp, memory_order_relaxed);
}


/* The hash's bits: the shard from the top 6, the tag from bits 48-55, the
 * home bucket from the low 32 (hash32, see home_bucket()), so the three
 * choices are independent. */
static inline mem_shard *shard_of(mem_backend *mb, uint64_t hash)
{
    return &mb->shards[hash >> (64 - NSHARDS_BITS)];
}

/*
 * The home bucket of a key among n: hash32 scaled to [0, n) by a multiply
 * and a shift (Lemire's "fastrange"), which works for any n, so a table
 * need not be a power of two: it grows to a load of 11/16, and costs 10 to
 * 13 bytes per entry at any size (table.c).
 */
static inline size_t home_bucket(uint32_t hash32, size_t n)
{
    return (size_t)(((uint64_t)hash32 * n) >> 32);
}

/* The bucket after i in the probe sequence of a table of n buckets. */
static inline size_t next_bucket(size_t i, size_t n)
{
    return i + 1 == n ? 0 : i + 1;
}

/* A slot's tag: 1..255 (0 marks a free slot). */
static inline unsigned hash_tag(uint64_t hash)
{
    unsigned t = (unsigned)(hash >> 48) & 0xffu;
    return t + (t == 0);
}

static inline uint64_t entry_hash(const mem_backend *mb, const mem_entry *e)
{
    return nori__hash_key(mb->seed, entry_key(e), entry_klen(e));
}

static inline mem_table *do_table(mem_shard *s)
{
    return atomic_load_explicit(&s->table, memory_order_relaxed);
}

static inline mem_entry *link_get(mem_link *l)
{
    return atomic_load_explicit(l, memory_order_relaxed);
}

/* The bucket that holds slot l (buckets are 64-byte aligned). */
static inline mem_bucket *bucket_of(mem_link *l)
{
    return (mem_bucket *)((uintptr_t)l & ~(uintptr_t)63);
}

#define BYTES_01 0x0101010101010101ull
#define BYTES_7F 0x7f7f7f7f7f7f7f7full
#define SLOT_HIGH_BITS 0x0080808080808080ull /* bit 7 of the 7 tag bytes */

/* Bit 7 of byte i set for each slot i whose tag byte in `meta` is `tag`
 * (tag 0: the free slots). Exact per byte, no carry between bytes. */
static inline uint64_t slots_tagged(uint64_t meta, unsigned tag)
{
    uint64_t x = meta ^ (BYTES_01 * tag);
    return ~(((x & BYTES_7F) + BYTES_7F) | x | BYTES_7F) & SLOT_HIGH_BITS;
}

static inline unsigned overflow_of(uint64_t meta)
{
    return (unsigned)(meta >> OVERFLOW_SHIFT);
}

/* Key equality for the lookup, inline (a call to memcmp cost as much as
 * the rest of the comparison): words of 8 bytes, the last one overlapping. */
static inline bool keys_equal(const char *a, const char *b, size_t n)
{
    uint64_t x, y;
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8) {
            memcpy(&x, a + i, 8);
            memcpy(&y, b + i, 8);
            if (x != y)
                return false;
        }
        memcpy(&x, a + n - 8, 8);
        memcpy(&y, b + n - 8, 8);
        return x == y;
    }
    if (n >= 4) {
        uint32_t u, v, p, q;
        memcpy(&u, a, 4);
        memcpy(&v, b, 4);
        memcpy(&p, a + n - 4, 4);
        memcpy(&q, b + n - 4, 4);
        return u == v && p == q;
    }
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

/*
 * Starts loading the home bucket's line of `hash`, before the read section
 * is entered: entering is a locked exchange, which later loads wait for,
 * while a prefetch already issued goes on. The table may be replaced and
 * freed meanwhile, so the address is only computed (never dereferenced
 * here) and a prefetch of a stale one does no harm.
 */
static inline void prefetch_bucket(mem_shard *s, uint64_t hash)
{
    uintptr_t t = (uintptr_t)atomic_load_explicit(&s->table, memory_order_relaxed);
    size_t n = atomic_load_explicit(&s->nbuckets_hint, memory_order_relaxed);
    __builtin_prefetch((const void *)(t + offsetof(mem_table, b) +
                                      home_bucket((uint32_t)hash, n) * sizeof(mem_bucket)));
}

/*
 * The lookup, for the lock-free readers (inside an epoch read section) and
 * for the lock holder alike: the entry for `key` in table t, or NULL, and
 * in *slot the slot that holds it, in *flags its flags as loaded (the
 * caller reads key, value and expiry through them, key_at() and the like,
 * without loading them again). `hash` is the key's full hash, computed
 * once by the caller. Touches the home bucket's line and the entries whose
 * tag matches; follows the probe sequence only while buckets report
 * overflow. Bounded by the number of buckets, in case concurrent writes keep
 * every overflow count above 0 while it walks.
 *
 * The slot loads are seq_cst, as is the reader's load of the table pointer
 * (store.c): a writer unlinks (seq_cst store), then may free at once when
 * its seq_cst load of the readers' slots finds none in a section
 * (table.c, do_retire()). A reader whose entry (a seq_cst exchange) comes
 * after that load in the single total order must then see the unlink, and
 * the new table rather than a retired one that still holds the entry; with
 * acquire loads C11 would allow either to be stale (store buffering). On
 * x86 and ARMv8 a seq_cst load is the same instruction as an acquire one.
 */
static inline mem_entry *table_lookup(mem_table *t, const char *key, size_t klen,
                                      uint64_t hash, mem_link **slot, unsigned *flags)
{
    unsigned tag = hash_tag(hash);
    uint32_t h32 = (uint32_t)hash;
    size_t n = t->nbuckets, i = home_bucket(h32, n);
    for (size_t probes = 0; probes < n; probes++) {
        mem_bucket *b = &t->b[i];
        uint64_t meta = atomic_load_explicit(&b->meta, memory_order_acquire);
        for (uint64_t m = slots_tagged(meta, tag); m != 0; m &= m - 1) {
            mem_link *l = &b->slot[__builtin_ctzll(m) >> 3];
            mem_entry *e = atomic_load_explicit(l, memory_order_seq_cst);
            if (e == NULL)
                continue;
            /* An entry spans two or three lines (a 16-byte aligned block;
             * 122 bytes with an 18-byte key and a 64-byte value): fetch
             * the next two with the first, rather than one after the other
             * as the key compare and the copy reach them. 9% to 30% more
             * gets per second (bench_memory getpair); past a small entry's
             * end they fetch a neighbour's line, which costs no more. */
            __builtin_prefetch((const char *)e + 64);
            __builtin_prefetch((const char *)e + 128);
            if (e->hash32 != h32)
                continue;
            unsigned f = entry_flags(e);
            if ((f & KLEN_MASK) == klen && keys_equal(key_at(e, f), key, klen)) {
                *slot = l;
                *flags = f;
                return e;
            }
        }
        if (overflow_of(meta) == 0)
            break;
        i = next_bucket(i, n);
    }
    return NULL;
}

/* ---- entry.c: allocation (malloc, or pages of their own for large entries) ---- */

/* A new entry for key/value (expires_ms 0: none), or NULL with the error set. */
void nori__mem_entry_free(mem_backend *mb, mem_entry *e);
void nori__mem_map_cache_free(mem_backend *mb);
mem_entry *nori__mem_entry_new(mem_backend *mb, const char *key, size_t klen, const void *val,
                            size_t vlen, int64_t expires_ms);

/* ---- table.c: the hash table, the recency list, reclamation ---- */

/* Each is described where it is defined; do_* need the shard's lock. */
void nori__mem_do_reclaim(mem_shard *s);
mem_entry *nori__mem_do_oldest(mem_shard *s, const mem_entry *keep);
void nori__mem_do_publish_tail(mem_shard *s);
mem_table *nori__mem_table_new(size_t nbuckets);
/* The slot that holds the entry for `key`, or NULL when the key is absent. */
mem_link *nori__mem_do_find_link(mem_shard *s, const char *key, size_t klen, uint64_t hash);
/* Makes sure one more entry can be inserted: grows the table when it is
 * past its load bound. False only when the table is full and its growth
 * failed (out of memory): the caller then writes nothing. */
bool nori__mem_do_reserve(mem_shard *s);
/* Rebuilds the table with nbuckets buckets (checks.c, for tests): NORI_OK,
 * NORI_EINVAL when they cannot hold the entries, NORI_ENOMEM. */
int nori__mem_do_rebuild(mem_shard *s, size_t nbuckets);
void nori__mem_do_maybe_shrink(mem_shard *s);
void nori__mem_do_remove(mem_shard *s, mem_link *l);
/* As nori__mem_do_remove(), but the room (one place, the bytes returned)
 * stays counted: it now belongs to the caller, who gives it back or uses it. */
size_t nori__mem_do_remove_keep_room(mem_shard *s, mem_link *l);
/* Removes e (known to be linked), keeping its room as above. */
size_t nori__mem_do_remove_entry(mem_shard *s, mem_entry *e);
void nori__mem_do_insert(mem_shard *s, mem_entry *e, uint64_t hash, uint64_t stamp);
void nori__mem_do_replace(mem_shard *s, mem_link *l, mem_entry *e, uint64_t stamp);
void nori__mem_do_delete_prefix(mem_shard *s, const char *prefix, size_t plen);
size_t nori__mem_do_sweep_chunk(mem_shard *s, size_t nbuckets, int64_t now, size_t *examined,
                                size_t *freed);
void nori__mem_free_shard(mem_shard *s);
bool nori__mem_do_audit_shard(mem_shard *s, size_t *bytes);

/* Returns room (places and bytes) to the two bounds. Inline here, not in
 * evict.c, because the table's removals give room back too: the table must
 * not depend on the eviction policy above it. */
static inline void nori__mem_give_back(mem_backend *mb, size_t places, size_t bytes)
{
    if (places > 0)
        atomic_fetch_sub_explicit(&mb->places, places, memory_order_relaxed);
    if (bytes > 0)
        atomic_fetch_sub_explicit(&mb->bytes, bytes, memory_order_relaxed);
}

/* ---- evict.c: the two bounds (room) and eviction ---- */

bool nori__mem_evict_one(mem_backend *mb);
bool nori__mem_take_room_blocking(mem_backend *mb, size_t places, size_t bytes);
void nori__mem_shrink_to_bound(mem_backend *mb);
bool nori__mem_make_room_locked(mem_backend *mb, mem_shard *s, const mem_entry *keep, size_t places,
                             size_t bytes);
bool nori__mem_do_commit(mem_backend *mb, mem_shard *s, const char *key, size_t klen, uint64_t hash,
                      mem_entry *cur, mem_entry *next, uint64_t stamp, room *held);

/*
 * fork.c: the decisions (atomic_update callbacks, and incr's and add's own)
 * running on the calling thread, innermost first: a callback of A may call
 * B, whose callback runs while A's is still active. A callback that calls
 * back into any of them would deadlock on the non-recursive shard lock;
 * store.c's refuse_reentry() turns that into an error. A frame also says
 * which room the thread holds meanwhile: a callback may call fork(), and
 * the child's fork handler must not forget that room. Each frame lives on
 * the stack of store.c's read_decide_write(), which pushes and pops it.
 */
typedef struct callback_frame {
    const mem_backend *mb;
    const room *held;
    const struct callback_frame *outer;
} callback_frame;

extern MEM_THREAD_LOCAL const callback_frame *nori__mem_active_callbacks;

/* fork.c: a backend is registered once complete and unregistered first
 * thing when freed; a forked child recounts the room of the registered
 * ones. */
void nori__mem_fork_register(mem_backend *mb);
void nori__mem_fork_unregister(mem_backend *mb);

/* store.c: b as a memory backend, NULL when it is another kind. */
mem_backend *nori__mem_as_memory(nori_backend *b);

/* sweeper.c */
int nori__mem_sweeper_start(mem_backend *mb);
void nori__mem_sweeper_stop(mem_backend *mb);
/* One cycle, within `budget_us`; returns the entries removed. `full`: a
 * whole pass over every shard, without stopping early (tests). */
size_t nori__mem_sweep_cycle(mem_backend *mb, int64_t budget_us, bool full);

struct nori__metrics;
/* The backend's own series of nori_metrics_write() (metrics.c). */
void nori__mem_metrics(nori_backend *b, const nori_backend_stats *st, struct nori__metrics *m);

#endif
