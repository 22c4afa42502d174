// SPDX-License-Identifier: MIT
/*
 * The shared-memory backend (CACHE_BACKEND=shm): one segment that every
 * worker process maps, holding an LRU cache with the memory backend's
 * semantics, safe against a process that dies at any instruction.
 *
 * Design in one page (each part is in its own file, named below):
 *
 *  - A fixed mapping addressed by offsets, never pointers: each process maps
 *    the segment at a different address. Entries are named by a 32-bit ref
 *    (offset in the arena / 16, plus one; 0 is "none"), pages by index + 1.
 *    The mapping never grows: its size is fixed at creation from max_keys
 *    and max_bytes (shm_layout_compute(), segment.c), and every process
 *    checks the layout it finds against that computation before using it.
 *
 *  - Regions, in order: the header (immutable once published: magic, layout
 *    version, generation, sizes, owner uid, creator pid and time, the hash
 *    key, a checksum), the global part (the arena lock and what it guards,
 *    the published shard tail stamps, counters), 64 shards (a robust lock,
 *    an LRU list, counters, an undo log each), the bucket array (64 shards
 *    x a power of two of buckets, each a sequence counter and a chain
 *    head), the page table, the flight slots of the response cache, the
 *    stamp table (8 bytes per slot, max_keys + 128 slots) and its bitmap of
 *    slots in use, and the arena of 4 KiB pages.
 *
 *  - Allocation (slab.c): pages carved into chunks of one size class each
 *    (46 classes, 48 B to 4 KiB, at most 12.5% rounding); a page goes back
 *    to the free pages when its last chunk is freed, so memory moves
 *    between classes. An entry larger than a page keeps its header and key
 *    in a chunk and its value in a chain of whole pages (not contiguous:
 *    no page-level fragmentation). An entry's charge against the byte bound
 *    is its chunk plus its pages.
 *
 *  - Locks (lock.c): one robust, process-shared mutex per shard and one for
 *    the arena, always taken with a deadline (pthread_mutex_clocklock; the
 *    bound is the handle's lock timeout, 1 s by default). A timeout is
 *    NORI_EBACKEND naming the holder's pid, which each holder stores after
 *    locking. Lock order: a shard, then the arena; a second shard only by
 *    trylock or with a deadline.
 *
 *  - Crash safety (lock.c, shard.c): every store a critical section makes to shared
 *    state goes through the lock's undo log first (the old value, then the
 *    store). A process that dies holding the lock leaves a non-empty log;
 *    whoever takes the lock next (EOWNERDEAD, or any later locker that
 *    finds the log non-empty) rolls it back, which returns the shard to the
 *    state before the interrupted call: nothing is lost but that call.
 *    Allocations and frees cross from a shard's section into the arena's:
 *    an allocation records itself in the shard's log inside the arena's
 *    section (so the two commit together), and chunks of removed entries
 *    are freed only after the shard's section commits (a "pending" list
 *    that each free clears inside its own arena section), so a rollback
 *    never revives an entry whose chunk was freed and no chunk is freed
 *    twice. Sequence counters roll forward, never back (a reader that saw
 *    the interrupted section must fail its check).
 *
 *  - Reads take no lock (ops.c): a get reads the bucket's sequence counter,
 *    walks the chain, copies the value, and checks the counter again; a
 *    writer makes it odd around an in-place overwrite and moves it on every
 *    unlink, so a copy that overlapped a change is thrown away and retried
 *    (4 tries, then the locked path). Every ref and page index read without
 *    the lock is checked against the arena before it is followed, chain
 *    walks are bounded, and lengths are checked against the chunk, so a
 *    reader never leaves the mapping whatever a dead or concurrent writer
 *    left behind.
 *
 *  - Exact LRU with lock-free reads (table.c, evict.c), the memory
 *    backend's shape in offsets: each shard has its LRU list; a read
 *    records its access in the entry's stamp, with a TOUCHED bit, and
 *    never moves the entry. Stamps live in a table of their own (a slot
 *    per entry, given with its chunk), not in the chunk: a reader stores
 *    with a plain store (no locked instruction, so two processes reading
 *    the same entries do not stall each other), and a reader late on a
 *    chunk that was freed and reused as another size writes nothing but a
 *    stamp, never into another entry's bytes. Before an eviction takes
 *    a shard's tail, the writer moves touched entries to their place by
 *    stamp. Each shard publishes its tail's stamp; an eviction takes the
 *    oldest tail among the shards. Stamps are the CPU's time-stamp counter
 *    (shared by every process of the machine, a few nanoseconds to read),
 *    made strictly increasing per thread, so a single client's sequence is
 *    ordered exactly even across processes.
 *
 *  - Both bounds (evict.c): the entries and bytes held, plus those of
 *    allocations not yet linked, are counted in the global part under the
 *    arena lock; an allocation that would pass max_keys or max_bytes
 *    evicts least recently used entries first. When the arena has no chunk
 *    of the class nor a free page (fragmentation), eviction goes on in LRU
 *    order until one is free.
 *
 *  - Active expiry (sweeper.c): a thread per attached process, but one cycle
 *    per period for the whole segment (a shared timestamp decides who runs
 *    it), a budget per cycle and a few dozen buckets per lock hold.
 *
 * Files: internal.h (this: layout, constants, accessors), segment.c
 * (names, layout, create, attach, validate, unlink), lock.c (robust locks,
 * undo logs, sequence counters), slab.c (pages, chunks, stamp slots, the
 * commit of a section), table.c (chains, LRU, insert/remove), shard.c (a
 * shard's lock and the repair of a section left open), flight.c (the
 * response cache's fills across processes), evict.c (room and eviction), read.c
 * (get, get_into), ops.c (the other operations, creation), sweeper.c
 * (active expiry), fork.c (fork() and the handles of this process),
 * metrics.c (nori_metrics_write's series), checks.c (audits for tests).
 *
 * Locking rule everywhere: functions named do_* are called with the lock of
 * the shard they name held (and say when they also need the arena's).
 */
#ifndef NORI_SRC_SHM_INTERNAL_H
#define NORI_SRC_SHM_INTERNAL_H

#include "backend.h"
#include "clock.h"
#include "hash.h"
#include "shm/shm.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

/* ---- constants of layout version 1 ---- */

#define SHM_MAGIC 0x314d48534952304eULL /* "N0RISHM1" little-endian */
#define SHM_LAYOUT_VERSION 1u
#define SHM_BYTE_ORDER 0x0102030405060708ULL
#define SHM_READY 0x52454144u /* "READ" */

#define SHM_NSHARDS 64
#define SHM_NSHARDS_BITS 6
#define SHM_PAGE 4096u
#define SHM_GRAN 16u /* refs count 16-byte units */
#define SHM_NCLASSES 46
#define SHM_MIN_CHUNK 48u
/* Largest arena a 32-bit ref can name (16 B units), minus a margin. */
#define SHM_MAX_ARENA ((uint64_t)64 << 30)
#define SHM_MIN_BYTES ((size_t)64 * 1024)
#define SHM_MAX_KEYS ((size_t)1 << 28)
/* Response-cache flight slots (coalescing across processes). */
#define SHM_NFLIGHTS 256

#define SHM_LOG_CAP 112
#define SHM_PENDING_CAP 8
#define SHM_ARENA_LOG_CAP 48

/* Tries of the lock-free read before it takes the lock. */
#define SHM_READ_TRIES 4

#define SHM_EMPTY_STAMP UINT64_MAX
/* Stamp slots beyond max_keys: entries allocated without a place (a
 * replacement, one per shard section at a time) and the old entries they
 * replace, pending their free. */
#define SHM_SLOT_SLACK (2 * SHM_NSHARDS)
#define SHM_TOUCHED 1u

/* Entry flags. */
#define SHM_LARGE 0x01u /* the value lives in a chain of pages */

/* ---- shared structures (every field fixed-width; the layout is the ABI
 * between processes, and any change bumps SHM_LAYOUT_VERSION) ---- */

/*
 * The header: written once by the creator before the segment is published
 * under its name (segment.c), read-only afterwards. The checksum covers
 * every field before it.
 */
typedef struct shm_header {
    uint64_t magic;
    uint32_t layout_version;
    uint32_t header_bytes; /* sizeof(shm_header) */
    uint64_t byte_order;
    uint64_t total_bytes;  /* the mapping */
    uint64_t max_keys;
    uint64_t max_bytes;    /* the byte bound */
    uint32_t nshards;
    uint32_t page_bytes;
    uint32_t buckets_per_shard; /* a power of two */
    uint32_t nclasses;
    uint64_t npages;
    uint64_t off_global, off_shards, off_buckets, off_pages, off_flights, off_arena;
    uint64_t nflights;
    uint64_t nslots;       /* LRU stamp slots: max_keys + SHM_SLOT_SLACK */
    uint64_t off_stamps, off_slotmap;
    uint64_t k0, k1;       /* the hash key of this segment */
    uint64_t generation;   /* random, chosen at creation: tells two segments of one name apart */
    uint32_t owner_uid;
    uint32_t creator_pid;
    int64_t created_unix_ms;
    uint32_t ready;        /* SHM_READY */
    uint32_t pad0;
    uint64_t checksum;     /* of the bytes above */
} shm_header;

/* A robust process-shared mutex and the pid of its holder (stored after
 * locking, for the message of a waiter that timed out). */
typedef struct shm_lockbox {
    pthread_mutex_t mutex;
    _Atomic int32_t owner_pid;
    _Atomic uint32_t owner_seq; /* bumped at each acquisition (tests) */
} shm_lockbox;

/* One undo record: `what` is the offset of the word in the mapping (low 48
 * bits) with the record's type in the top byte; `old` its former value (or
 * the type's payload). */
typedef struct shm_rec {
    uint64_t what;
    uint64_t old;
} shm_rec;

#define SHM_REC_W32 1ull
#define SHM_REC_W64 2ull
#define SHM_REC_SEQ 3ull   /* a bucket sequence counter: rolled forward, never back */
#define SHM_REC_ALLOC 4ull /* an entry allocated here: freed on rollback */
#define SHM_REC_BYTES 5ull /* old bytes follow in the next records (16 per record) */
#define SHM_REC_NONE 6ull  /* a record already undone (an ALLOC freed by a repair) */
#define SHM_REC_TYPE(w) ((w) >> 56)
#define SHM_REC_OFF(w) ((w) & 0xffffffffffffull)
#define SHM_REC_MAKE(type, off) (((uint64_t)(type) << 56) | (uint64_t)(off))
/* ALLOC: bit 48 of `what` is the place taken (1 for a new key, 0 for a
 * replacement); `old` holds the ref (low 32 bits) and the charge (high). */
#define SHM_REC_PLACE (1ull << 48)

/* A removed entry whose chunk is freed once the section has committed. */
typedef struct shm_pending {
    uint64_t refp;   /* ref (low 32 bits; 0: done) | the place it gives back (0 or 1) << 32 */
    uint64_t charge; /* the bytes it gives back */
} shm_pending;

typedef struct shm_log {
    _Atomic uint32_t n;        /* records of the open section; 0: nothing to undo */
    _Atomic uint32_t npending; /* pending frees, kept across the commit */
    shm_pending pending[SHM_PENDING_CAP];
    shm_rec rec[SHM_LOG_CAP];
} shm_log;

typedef struct shm_alog {
    _Atomic uint32_t n;
    uint32_t pad;
    shm_rec rec[SHM_ARENA_LOG_CAP];
} shm_alog;

typedef struct shm_global {
    alignas(64) shm_lockbox arena_lock;
    /* Under the arena lock: */
    uint64_t places;     /* entries held + allocations not linked yet */
    uint64_t bytes;      /* their charges */
    uint64_t free_pages;
    uint32_t free_head;  /* page index + 1 */
    uint32_t pad;
    uint32_t class_head[SHM_NCLASSES]; /* slab pages of the class with free chunks */
    uint64_t free_slots; /* stamp slots not given to an entry */
    uint64_t slot_cursor; /* where the search for a free slot starts (a hint) */
    shm_alog log;
    /* Counters, written with atomics at any time. */
    alignas(64) _Atomic uint64_t owner_died;   /* EOWNERDEAD seen on any lock */
    _Atomic uint64_t repairs;      /* sections rolled back */
    _Atomic uint64_t lock_timeouts;
    _Atomic uint64_t shard_resets; /* shards emptied because their log was unreadable */
    _Atomic uint64_t frag_evictions; /* evictions made for a chunk, not for the bounds */
    _Atomic int64_t next_sweep_ms; /* when the next expiry cycle is due (any process) */
    _Atomic uint32_t sweep_shard;  /* where the next cycle starts */
    _Atomic uint32_t attached;     /* handles opened on the segment, ever (diagnostics) */
    /* Each shard's tail stamp, packed so that finding the oldest reads a
     * few lines. Written under the shard's lock, read without it. */
    alignas(64) _Atomic uint64_t tail_stamps[SHM_NSHARDS];
} shm_global;

typedef struct shm_shard {
    alignas(64) shm_lockbox lock;
    /* Under the lock: */
    uint32_t lru_head, lru_tail; /* refs: most and least recently used */
    uint64_t count, bytes;       /* entries linked here and their charges */
    uint64_t evictions, expired; /* read without the lock by stats */
    uint64_t sweep_cursor;
    shm_log log;
} shm_shard;

typedef struct shm_bucket {
    _Atomic uint32_t seq;  /* odd while an entry of the chain is rewritten in place */
    _Atomic uint32_t head; /* ref */
} shm_bucket;

typedef struct shm_page {
    uint32_t next; /* page index + 1: free list, class list, or a large value's chain */
    uint32_t prev; /* class list */
    uint32_t free; /* first free chunk of a slab page, index + 1 */
    /* class + 1 of a slab page (low 16 bits; 0: free or part of a large
     * value) | its chunks in use << 16: one word, one logged store */
    uint32_t clsused;
} shm_page;

#define SHM_PAGE_CLS(w) ((w) & 0xffffu)
#define SHM_PAGE_USED(w) ((w) >> 16)

/*
 * A flight slot of the response cache: a robust lock the filler of a key
 * holds while its handler runs, so that waiters in other processes sleep on
 * it (timed) and wake at once when it is released or its holder dies.
 */
typedef struct shm_flight {
    alignas(64) shm_lockbox lock;
    _Atomic uint64_t key_hash; /* of the lease key being filled; 0: free */
    _Atomic int32_t owner_tid; /* the filling thread */
    uint32_t pad;
} shm_flight;

/*
 * An entry: a 32-byte header, the key, then the value (or, for a LARGE
 * entry, the 4-byte index + 1 of its first value page). Its LRU stamp is
 * not here but in the stamp table, at its slot: lock-free readers store
 * into the stamp table only, so a reader late on a chunk that was freed
 * and reused (even as a chunk of another size) writes nothing but a stamp.
 * A free chunk's free-list link lives at `hnext`.
 */
typedef struct shm_entry {
    int64_t expires;        /* ms of the monotonic clock; 0: never */
    uint32_t hnext;         /* next in the bucket chain (free: next free chunk + 1) */
    uint32_t lru_prev, lru_next;
    uint32_t slot;          /* its stamp's index in the stamp table */
    uint32_t vlen;
    uint16_t klen;
    uint8_t cls;            /* the chunk's class */
    uint8_t flags;
    char data[];
} shm_entry;

#define SHM_ENTRY_HDR ((uint32_t)offsetof(shm_entry, data))

/* ---- the process-local handle ---- */

typedef struct shm_stripe {
    alignas(64) _Atomic uint64_t hits;
    _Atomic uint64_t misses;
} shm_stripe;
#define SHM_NSTRIPES 64

typedef struct shm_backend shm_backend;
struct shm_backend {
    nori_backend base; /* must be first */
    char name[NORI_SHM_NAME_MAX + 1];
    int fd;
    unsigned char *map;
    size_t map_bytes;
    shm_header *hdr;
    shm_global *g;
    shm_shard *shards;
    shm_bucket *buckets;
    shm_page *pages;
    shm_flight *flights;
    _Atomic uint64_t *stamps; /* the stamp table: last access << 1 | TOUCHED, per slot */
    uint64_t *slotmap;        /* a bit per slot: 1 in use */
    unsigned char *arena;
    /* Copied from the header once validated: */
    uint64_t k0, k1, generation, max_keys, max_bytes, npages, arena_bytes, nflights, nslots;
    uint32_t bucket_mask; /* buckets_per_shard - 1 */
    bool created;         /* this handle created the segment */
    _Atomic int64_t lock_timeout_ms;
    _Atomic pid_t pid;    /* this process (updated in a forked child) */
    /* The active expiry thread (sweeper.c). */
    pthread_t sweeper;
    bool has_sweeper;
    _Atomic bool want_sweeper; /* a forked child starts its own on its next write */
    pid_t sweeper_pid;
    pthread_mutex_t sweep_lock;
    pthread_cond_t sweep_cond;
    bool sweep_stop;
    _Atomic uint64_t sweep_cycles;
    /* Handles of this process (fork.c). */
    shm_backend *reg_prev, *reg_next;
    shm_stripe stripes[SHM_NSTRIPES + 1]; /* [SHM_NSTRIPES]: shared by later threads */
};

/* ---- refs, offsets, accessors ---- */

static inline uint64_t shm_off(const shm_backend *sb, const void *p)
{
    return (uint64_t)((const unsigned char *)p - sb->map);
}

/* A ref is valid when it names a 16-byte unit of the arena that leaves room
 * for an entry header. Checked before any lock-free dereference. */
static inline bool shm_ref_ok(const shm_backend *sb, uint32_t ref)
{
    return ref != 0 && (uint64_t)(ref - 1) * SHM_GRAN + SHM_MIN_CHUNK <= sb->arena_bytes;
}

static inline shm_entry *shm_entry_at(const shm_backend *sb, uint32_t ref)
{
    return (shm_entry *)(sb->arena + (uint64_t)(ref - 1) * SHM_GRAN);
}

static inline uint32_t shm_ref_of(const shm_backend *sb, const shm_entry *e)
{
    return (uint32_t)(((const unsigned char *)e - sb->arena) / SHM_GRAN + 1);
}

static inline unsigned char *shm_page_data(const shm_backend *sb, uint32_t idx)
{
    return sb->arena + (uint64_t)idx * SHM_PAGE;
}

/*
 * Loads and stores of shared words, so that lock-free readers and the
 * writers they race with never make a data race the compiler may exploit:
 * relaxed, ordered where it matters by SHM_FENCE_*. GCC's ThreadSanitizer
 * supports no fences: under it every load is an acquire and every store a
 * release instead, which orders at least as much, and the fences vanish.
 */
#if defined(__SANITIZE_THREAD__)
#define NORI_SHM_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NORI_SHM_TSAN 1
#endif
#endif
#ifdef NORI_SHM_TSAN
#define SHM_ORD_LD __ATOMIC_ACQUIRE
#define SHM_ORD_ST __ATOMIC_RELEASE
#define SHM_FENCE_ACQUIRE() ((void)0)
#define SHM_FENCE_RELEASE() ((void)0)
#else
#define SHM_ORD_LD __ATOMIC_RELAXED
#define SHM_ORD_ST __ATOMIC_RELAXED
#define SHM_FENCE_ACQUIRE() atomic_thread_fence(memory_order_acquire)
#define SHM_FENCE_RELEASE() atomic_thread_fence(memory_order_release)
#endif
#define LD(p) __atomic_load_n((p), SHM_ORD_LD)
#define ST(p, v) __atomic_store_n((p), (v), SHM_ORD_ST)

/* The size of chunk class c (46 classes: 48 to 256 by 16, to 512 by 32,
 * to 1024 by 64, to 2048 by 128, to 4096 by 256). */
static inline uint32_t nori__shm_class_size(unsigned c)
{
    if (c < 14)
        return 48 + 16 * c;
    if (c < 22)
        return 256 + 32 * (c - 13);
    if (c < 30)
        return 512 + 64 * (c - 21);
    if (c < 38)
        return 1024 + 128 * (c - 29);
    return 2048 + 256 * (c - 37);
}
/* The smallest class that holds n bytes, or -1 when n is over a page. */
static inline int shm_class_for(size_t n)
{
    if (n <= 48)
        return 0;
    if (n <= 256)
        return (int)((n - 48 + 15) / 16);
    if (n <= 512)
        return 13 + (int)((n - 256 + 31) / 32);
    if (n <= 1024)
        return 21 + (int)((n - 512 + 63) / 64);
    if (n <= 2048)
        return 29 + (int)((n - 1024 + 127) / 128);
    if (n <= SHM_PAGE)
        return 37 + (int)((n - 2048 + 255) / 256);
    return -1;
}

/* The chunk size an entry of klen/vlen needs, and whether it is LARGE. */
static inline size_t shm_small_size(size_t klen, size_t vlen)
{
    return SHM_ENTRY_HDR + klen + vlen;
}

static inline bool shm_is_large(size_t klen, size_t vlen)
{
    return shm_small_size(klen, vlen) > SHM_PAGE;
}

static inline size_t shm_value_pages(size_t vlen)
{
    return (vlen + SHM_PAGE - 1) / SHM_PAGE;
}

/* The bytes an entry counts against the byte bound. */
static inline uint64_t shm_charge_for(size_t klen, size_t vlen)
{
    if (!shm_is_large(klen, vlen))
        return nori__shm_class_size((unsigned)shm_class_for(shm_small_size(klen, vlen)));
    return nori__shm_class_size((unsigned)shm_class_for(SHM_ENTRY_HDR + klen + 4)) +
           (uint64_t)shm_value_pages(vlen) * SHM_PAGE;
}

static inline uint64_t shm_entry_charge(const shm_entry *e)
{
    return shm_charge_for(e->klen, e->vlen);
}

/* The stamp word of entry e (its slot, read once). NULL for a slot out of
 * range: only a reader that raced with a writer sees one, and its check
 * fails. */
static inline _Atomic uint64_t *shm_stamp_word(const shm_backend *sb, const shm_entry *e)
{
    uint32_t slot = LD(&e->slot);
    return slot < sb->nslots ? &sb->stamps[slot] : NULL;
}

static inline const char *shm_entry_key(const shm_entry *e)
{
    return e->data;
}

static inline uint32_t shm_large_first(const shm_entry *e)
{
    uint32_t p;
    memcpy(&p, e->data + e->klen, sizeof p);
    return p;
}

/* ---- time: the one place src/shm reads clocks (through clock.h) ---- */

/* Milliseconds of logical time (virtual in tests), for expiry times (never
 * early). */
static inline int64_t shm_now_ms(void)
{
    return nori__now_ms();
}

/* The same, coarse (a few ms of resolution), for expiry checks on reads. */
static inline int64_t shm_now_coarse_ms(void)
{
    return nori__now_coarse_ms();
}

/* Real time (never virtual): deadlines of waits for another process (a
 * bound on waiting is a bound in real time) and the sweeper's CPU budget. */
static inline int64_t shm_real_us(void)
{
    return nori__real_us();
}

static inline int64_t shm_real_ms(void)
{
    return nori__real_ms();
}

/* The machine-wide tick behind LRU stamps: the time-stamp counter, the same
 * for every process (Linux uses it as its clock source only when it is
 * synchronised across CPUs; elsewhere order across processes is as precise
 * as those counters). */
static inline uint64_t shm_ticks(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return __rdtsc();
#elif defined(__aarch64__)
    uint64_t v;
    __asm__ __volatile__("mrs %0, cntvct_el0" : "=r"(v));
    return v;
#else
    return (uint64_t)nori__now_ms() * 1000000u;
#endif
}

/* A stamp strictly above every stamp this thread handed out before (even:
 * the low bit is TOUCHED). */
uint64_t nori__shm_next_stamp(void);

/* ---- the hash ---- */

static inline uint64_t shm_hash(const shm_backend *sb, const char *key, size_t klen)
{
    return nori__siphash(sb->k0, sb->k1, 1, 3, key, klen);
}

static inline unsigned shm_shard_index(uint64_t hash)
{
    return (unsigned)(hash >> (64 - SHM_NSHARDS_BITS));
}

static inline shm_shard *shm_shard_of(const shm_backend *sb, uint64_t hash)
{
    return &sb->shards[shm_shard_index(hash)];
}

static inline shm_bucket *shm_bucket_of(const shm_backend *sb, uint64_t hash)
{
    return &sb->buckets[(size_t)shm_shard_index(hash) * (sb->bucket_mask + 1) +
                        ((uint32_t)hash & sb->bucket_mask)];
}

static inline unsigned shm_shard_no(const shm_backend *sb, const shm_shard *s)
{
    return (unsigned)(s - sb->shards);
}

/* Bucket i (0..bucket_mask) of shard s. */
static inline shm_bucket *shm_shard_bucket(shm_backend *sb, shm_shard *s, size_t i)
{
    return &sb->buckets[(size_t)shm_shard_no(sb, s) * (sb->bucket_mask + 1) + i];
}

/* ---- segment.c ---- */

/* The layout of a segment for (max_keys, max_bytes): offsets and sizes of
 * every region. */
typedef struct shm_layout {
    uint64_t total_bytes, npages, buckets_per_shard, nflights, nslots;
    uint64_t off_global, off_shards, off_buckets, off_pages, off_flights, off_stamps,
        off_slotmap, off_arena;
} shm_layout;

int nori__shm_layout_compute(uint64_t max_keys, uint64_t max_bytes, shm_layout *out);
int nori__shm_open_segment(shm_backend *sb, const char *name, size_t max_keys, size_t max_bytes);
void nori__shm_close_segment(shm_backend *sb);
/* Initialises the shared structures of a new mapping (the creator only). */
int nori__shm_init_shared(shm_backend *sb);

/* ---- lock.c ---- */

/* Initialises a lockbox in shared memory (robust, process-shared). */
int nori__shm_lock_init(shm_lockbox *lb);
/*
 * Takes lb: within wait_ms milliseconds, or only if free (wait_ms < 0).
 * Returns 0, ETIMEDOUT, EBUSY or another errno; EOWNERDEAD is handled
 * (marked consistent at once, counted, *died set when died is not NULL):
 * the caller repairs what the lock guards.
 */
int nori__shm_lock_take_for(shm_backend *sb, shm_lockbox *lb, int64_t wait_ms, bool *died);
/* The same within the handle's lock timeout (wait) or only if free. */
int nori__shm_lock_take(shm_backend *sb, shm_lockbox *lb, bool wait);
void nori__shm_lock_release(shm_lockbox *lb);
/* NORI_EBACKEND for errno rc of taking lb ("what idx" names it). */
int nori__shm_lock_error(shm_backend *sb, const shm_lockbox *lb, const char *what, int idx, int rc);

/* The arena lock, taken while a shard's is held (lock order). */
int nori__shm_arena_lock(shm_backend *sb);
void nori__shm_arena_unlock(shm_backend *sb);

/* Undo-logged stores of a critical section of shard s (lg = &s->log) or
 * of the arena (the arena log). */
void nori__shm_log_w32(shm_backend *sb, shm_log *lg, uint32_t *p, uint32_t v);
void nori__shm_log_w64(shm_backend *sb, shm_log *lg, uint64_t *p, uint64_t v);
void nori__shm_alog_w32(shm_backend *sb, uint32_t *p, uint32_t v);
void nori__shm_alog_w64(shm_backend *sb, uint64_t *p, uint64_t v);
/* Logs the old n bytes at p (before an in-place rewrite). */
void nori__shm_log_bytes(shm_backend *sb, shm_log *lg, const void *p, size_t n);
/* Logs the bucket's sequence counter before it is moved. */
void nori__shm_log_seq(shm_backend *sb, shm_log *lg, shm_bucket *bk);
/* Records an allocation (inside the arena section, through the arena log). */
void nori__shm_log_alloc(shm_backend *sb, shm_log *lg, uint32_t ref, uint32_t places,
                         uint64_t charge);
/* Adds a pending free (logged: a rollback drops it). */
void nori__shm_log_pending(shm_backend *sb, shm_log *lg, uint32_t ref, uint32_t places,
                           uint64_t charge);
/* Records left before the log is full; callers commit before it would be. */
static inline uint32_t shm_log_room(const shm_log *lg)
{
    return SHM_LOG_CAP - atomic_load_explicit(&lg->n, memory_order_relaxed);
}
/* Moves a bucket's sequence counter to odd (an in-place rewrite begins)
 * or to the next even value (done, or a chain changed), logged. */
void nori__shm_do_seq_begin(shm_backend *sb, shm_shard *s, shm_bucket *bk);
void nori__shm_do_seq_end(shm_bucket *bk);
void nori__shm_do_seq_bump(shm_backend *sb, shm_shard *s, shm_bucket *bk);

/* A crash point for tests (see nori__shm_crash_after, shm.h). */
void nori__shm_crash_point(void);
/* A named point where a test may stop this process (nori__shm_pause_at). */
void nori__shm_test_point(const char *point);


/* Shard s (locked) has a bucket chain that no death leaves (a cycle, a ref
 * outside the arena: a faulty process mapping the segment wrote it). Rolls
 * back the open section and empties the shard as a repair does when a log
 * is unreadable (its entries' memory is not recovered; shard_resets
 * counts it), so that the next call works. Returns NORI_EBACKEND naming
 * the segment, the shard, op and key; s stays locked. */
int nori__shm_do_chain_broken(shm_backend *sb, shm_shard *s, const char *op, const char *key);

/* The message of a lock that timed out. */
int nori__shm_lock_timeout(shm_backend *sb, const shm_lockbox *lb, const char *what, int idx);

/* ---- slab.c (under the arena lock) ---- */

/* Initialises the page table and the free page list (the creator). */
void nori__shm_slab_init(shm_backend *sb);
/*
 * Allocates an entry for klen/vlen for shard s's section: takes `places`
 * (0 or 1) and the charge under both bounds, a chunk, and for a LARGE
 * value its pages, and records the allocation in s's log. The entry's
 * header fields cls/flags (and the first page) are set; the rest is the
 * caller's. `credit`: the charge of the entry this one replaces (given back
 * when the section commits), counted as free. Takes the arena lock. NORI_OK
 * with *ref; NORI_MISS when a bound
 * or the arena is full (*why: 1 places, 2 bytes, 3 no chunk or page);
 * NORI_EBACKEND when the arena lock timed out.
 */
int nori__shm_alloc_entry(shm_backend *sb, shm_shard *s, size_t klen, size_t vlen,
                          uint32_t places, uint64_t credit, uint32_t *ref, int *why);
/* Frees entry `ref` (chunk and pages) and gives back places/charge, all in
 * one arena section that also stores clear_value in *clear_word (the
 * pending or ALLOC record that named it, so that it is never freed twice).
 * Called with the arena lock held. */
void nori__shm_do_free_entry(shm_backend *sb, uint32_t ref, uint32_t places, uint64_t charge,
                             uint64_t *clear_word, uint64_t clear_value);
/* Rolls back the arena's open section (a dead holder). */
void nori__shm_arena_rollback(shm_backend *sb);
/* Free pages and chunks, for stats (racy). */
uint64_t nori__shm_free_pages(const shm_backend *sb);

/* Commits shard s's section so far (nothing of it is undone any more) and
 * frees the chunks of the entries it removed. NORI_OK, or NORI_EBACKEND
 * when the arena lock timed out: the frees stay pending (the next holder
 * of s does them). */
int nori__shm_do_commit(shm_backend *sb, shm_shard *s);
/* Does the pending frees of s (its section committed). Arena lock held. */
void nori__shm_do_free_pending(shm_backend *sb, shm_shard *s);

/* ---- table.c (under the shard lock) ---- */

/* The link (bucket head or a predecessor's hnext) that names the live or
 * dead entry for key, or the empty link at the chain's end. NULL when the
 * chain is broken (a cycle, a ref outside the arena): the caller fails
 * with nori__shm_do_chain_broken. */
uint32_t *nori__shm_do_find_link(shm_backend *sb, shm_shard *s, shm_bucket *bk, const char *key,
                                 size_t klen);
/* Links a new entry (its room taken by its allocation) as the most
 * recently used. */
void nori__shm_do_insert(shm_backend *sb, shm_shard *s, shm_bucket *bk, uint32_t ref,
                         uint64_t stamp);
/* Replaces the entry at *link by ref (most recently used); the old one is
 * freed after the commit, its charge (not its place) given back. */
void nori__shm_do_replace(shm_backend *sb, shm_shard *s, shm_bucket *bk, uint32_t *link,
                          uint32_t ref, uint64_t stamp);
/* Removes the entry at *link; its place and charge go back after the
 * commit. */
void nori__shm_do_remove(shm_backend *sb, shm_shard *s, shm_bucket *bk, uint32_t *link);
/* Removes entry `ref`, known to be linked in s. */
void nori__shm_do_remove_ref(shm_backend *sb, shm_shard *s, uint32_t ref);
/* Rewrites the value of the entry at ref in place (the chunk holds it). */
void nori__shm_do_rewrite(shm_backend *sb, shm_shard *s, shm_bucket *bk, uint32_t ref,
                          const void *val, size_t vlen, int64_t expires, uint64_t stamp);
/* Makes the entry at ref the most recently used with `stamp` (lazily: its
 * stamp, placed in the list when the order is needed). */
void nori__shm_do_touch(shm_backend *sb, shm_shard *s, uint32_t ref, uint64_t stamp);
/* The least recently used entry of s other than `keep` (0: none), after
 * placing the touched entries met at the tail. May commit. */
uint32_t nori__shm_do_oldest(shm_backend *sb, shm_shard *s, uint32_t keep);
void nori__shm_do_publish_tail(shm_backend *sb, shm_shard *s);
/* Whether bk's chain can be walked by a walk that removes entries as it
 * goes: every ref inside the arena, no more entries than s holds. */
bool nori__shm_do_chain_sound(const shm_backend *sb, const shm_shard *s, const shm_bucket *bk);
/* Commits when another removal might not fit the log or the pending list.
 * NORI_OK, or NORI_EBACKEND when the pending frees could not be done. */
int nori__shm_do_checkpoint(shm_backend *sb, shm_shard *s);
/* Empties shard s without reading its chains (its log was unreadable):
 * its entries' memory is not recovered. */
void nori__shm_do_reset_shard(shm_backend *sb, shm_shard *s);
/* Checks s's chains, list and counters; the entries and bytes found. */
bool nori__shm_do_audit_shard(shm_backend *sb, shm_shard *s, uint64_t *entries, uint64_t *bytes);

/* Whether entry e's key is key[0..klen) (e's bytes may change meanwhile). */
static inline bool nori__shm_key_equal(const shm_entry *e, const char *key, size_t klen)
{
#ifdef NORI_SHM_TSAN
    for (size_t i = 0; i < klen; i++)
        if (__atomic_load_n(&e->data[i], SHM_ORD_LD) != key[i])
            return false;
    return true;
#else
    return memcmp(e->data, key, klen) == 0;
#endif
}
/* Copies e's value (vlen bytes) into dst, following a LARGE value's pages
 * with every index checked; false when the chain leaves the arena. klen and
 * flags are the ones the caller read and checked (entry_sane, read.c):
 * never read again here, since a lock-free reader's entry may be freed and
 * its chunk reused by an entry of another shape meanwhile, and a length
 * checked for one shape is no bound for another. */
bool nori__shm_read_value(const shm_backend *sb, const shm_entry *e, size_t klen, unsigned flags,
                          size_t vlen, void *dst);

/* Writes the value of a fresh (unlinked) entry. */
void nori__shm_fill_entry(shm_backend *sb, shm_entry *e, const char *key, size_t klen,
                          const void *val, size_t vlen, int64_t expires);

/* Byte copies of shared memory that another process or thread may write at
 * the same time (the caller validates with a sequence counter). Under
 * ThreadSanitizer, atomic bytes, so that the race it would see inside this
 * process is declared. */
static inline void nori__shm_copy_out(void *dst, const void *src, size_t n)
{
#ifdef NORI_SHM_TSAN
    unsigned char *d = dst;
    const unsigned char *s = src;
    for (size_t i = 0; i < n; i++)
        d[i] = __atomic_load_n(&s[i], SHM_ORD_LD);
#else
    if (n > 0)
        memcpy(dst, src, n);
#endif
}

static inline void nori__shm_copy_in(void *dst, const void *src, size_t n)
{
#ifdef NORI_SHM_TSAN
    unsigned char *d = dst;
    const unsigned char *s = src;
    for (size_t i = 0; i < n; i++)
        __atomic_store_n(&d[i], s[i], SHM_ORD_ST);
#else
    if (n > 0)
        memcpy(dst, src, n);
#endif
}

/* ---- shard.c ---- */

/* Takes shard s's lock within the handle's lock timeout, repairing the
 * shard when its last holder died or left its log open. NORI_OK, or
 * NORI_EBACKEND naming the holder (timed out) with nothing held. */
int nori__shm_shard_lock(shm_backend *sb, shm_shard *s);
/* As above without waiting: NORI_OK, NORI_MISS (busy), or an error. */
int nori__shm_shard_trylock(shm_backend *sb, shm_shard *s);
void nori__shm_shard_unlock(shm_backend *sb, shm_shard *s);
/* Takes and lets go every shard whose log is open and whose lock is free
 * or was held by a process that died: the room and the changes of dead
 * processes' sections come back, even in a shard nobody else touches.
 * Called with no lock held (a wait for room; each expiry cycle). */
void nori__shm_repair_open_shards(shm_backend *sb);

/* ---- flight.c ---- */

/* The response cache's fills across processes (nori_backend_ops
 * fill_claim, fill_wait, fill_release; src/backend.h): a slot per lease key
 * hash, its robust lock held by the filling thread for the whole fill, so
 * that waiters sleep on it (timed) and wake when it ends or its filler
 * dies. */
int nori__shm_fill_claim(shm_backend *sb, const char *key, size_t klen);
int nori__shm_fill_wait(shm_backend *sb, const char *key, size_t klen, int64_t timeout_ms);
void nori__shm_fill_release(shm_backend *sb, const char *key, size_t klen);

/* ---- evict.c ---- */

/* Returned by nori__shm_alloc_evicting (and the writes built on it) when
 * room needs a wait for another shard's lock: the caller commits, lets its
 * shard go, calls nori__shm_wait_for_room, and tries again. */
#define SHM_AGAIN 2
/* Waits (no lock held) for the shard with the oldest entry and evicts it,
 * or naps when all room is held by writes in flight. *deadline (0 on the
 * first call) bounds the whole wait by the lock timeout: NORI_EBACKEND
 * once it has passed. */
int nori__shm_wait_for_room(shm_backend *sb, int64_t *deadline, const char *key);

/* Allocates an entry for shard s (locked), evicting least recently used
 * entries until both bounds and the arena allow it. *keep: the entry of s
 * being replaced (0 for a new key): not evicted while anything else can
 * be, and counted as free (its charge comes back at the commit); when it
 * alone is left and the two do not fit together, it is removed first and
 * *keep set to 0 (the caller then inserts). also_held: the index of another
 * shard this thread holds (-1: none), never waited for.
 * NORI_OK with *ref, NORI_ETOOBIG (over the byte bound on its own),
 * SHM_AGAIN (see above), or NORI_EBACKEND (a lock timed out). */
int nori__shm_alloc_evicting(shm_backend *sb, shm_shard *s, uint32_t *keep, int also_held,
                             const char *key, size_t klen, size_t vlen, uint32_t *ref);
/* The bytes limit message (NORI_ETOOBIG) for an entry of `charge` bytes. */
int nori__shm_too_big(const shm_backend *sb, const char *key, uint64_t charge);

/* ---- sweeper.c ---- */
/* Sweeps up to nbuckets of s from its cursor, removing expired entries. */
int nori__shm_do_sweep(shm_backend *sb, shm_shard *s, uint32_t nbuckets, int64_t now,
                       size_t *examined, size_t *removed);
int nori__shm_sweeper_start(shm_backend *sb);
void nori__shm_sweeper_stop(shm_backend *sb);
size_t nori__shm_sweep_cycle(shm_backend *sb, int64_t budget_us, bool full);

/* ---- fork.c ---- */
void nori__shm_register(shm_backend *sb);
void nori__shm_unregister(shm_backend *sb);

/* ---- metrics.c ---- */
struct nori__metrics;
void nori__shm_metrics(nori_backend *b, const nori_backend_stats *st, struct nori__metrics *m);

/* ---- ops.c, read.c ---- */
/* ops.c: removes s's entries whose key starts with prefix (plen 0: all),
 * committing as it goes. NORI_OK or NORI_EBACKEND (arena lock, or a broken
 * chain: the shard emptied). */
int nori__shm_do_delete_prefix(shm_backend *sb, shm_shard *s, const char *prefix, size_t plen);
shm_backend *nori__shm_as_shm(nori_backend *b);
/* NORI_EINVAL when the calling thread is inside an atomic_update callback
 * on the same segment (its lock is held: the call would wait for itself). */
int nori__shm_refuse_reentry(const shm_backend *sb, const char *op);
int nori__shm_get(nori_backend *b, const char *key, size_t klen, nori_buf *out);
int nori__shm_get_into(nori_backend *b, const char *key, size_t klen, void *buf, size_t cap,
                       size_t *len);

static inline bool shm_expired(int64_t expires, int64_t now)
{
    return expires != 0 && expires <= now;
}

#endif
