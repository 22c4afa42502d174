/*
 * The in-process memory backend: an LRU cache split into shards, each a
 * chained hash table plus an intrusive doubly-linked recency list, under its
 * own lock.
 *
 * Why this shape:
 *  - One allocation per entry (header, key and value together) keeps a lookup
 *    to one pointer chase after the bucket, and the per-entry overhead small.
 *  - Shards let threads that touch different keys run in parallel: a key's
 *    shard is chosen by its hash, and only that shard's lock is taken for
 *    get, set of an existing key, delete, incr and atomic_update.
 *  - Exact LRU across shards: every access stamps the entry with a time that
 *    strictly increases on each thread. Within a shard the list is in stamp
 *    order, so the globally least recently used entry is the oldest of the
 *    shard tails. Each shard publishes its tail's stamp in an atomic, so the
 *    evicting thread finds the victim shard without taking every lock.
 *  - The entry bound is exact too: a new key first reserves a place in the
 *    global count, and a reservation beyond max_keys evicts one entry before
 *    the key is linked in. At no moment are more than max_keys entries held.
 *  - Expiry is lazy: a read that finds an expired entry removes it. An
 *    eviction removes the oldest tail, counted as expired when it had expired.
 *  - The hash is seeded per backend from getrandom(), so keys chosen by an
 *    attacker (HTTP paths end up in keys) cannot be made to collide in advance.
 *
 * What holds under concurrency: the bound (a place is taken by compare-and-
 * swap only while one is free, so waiting threads hold none and progress is
 * guaranteed for any thread count), and "the victim is the tail with the
 * oldest stamp" at the moment it is chosen, among the shards whose lock is
 * free (trylock; when every shard holding entries is busy, the evicting
 * thread waits for the oldest one). Two accesses from different
 * threads within the same instant may be ordered either way, and a new key
 * whose insert races with another insert of the same key may cost one entry
 * an early eviction. For a single-threaded sequence the order is exact.
 *
 * Locking: functions named do_* are called with their shard's lock held.
 */
#include "backend.h"
#include "clock.h"
#include "error.h"
#include "memory.h"

#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* A power of two. With 64 shards two threads meet on a lock rarely enough
 * that the cache-line traffic of the locks, not waiting, is what remains
 * (bench/bench_memory; docs/BENCHMARKS.md). */
#define NSHARDS 64
#define NSHARDS_BITS 6
#define INITIAL_BUCKETS 16
#define EMPTY_STAMP UINT64_MAX

/*
 * An entry: a 38-byte header, then the expiry time only when it has one,
 * then the key and the value, each NUL-terminated. The header is kept this
 * small because it is most of the per-entry overhead (docs/BENCHMARKS.md):
 * no stored hash (recomputed on the rare growth and eviction paths), and no
 * expiry field for the entries that never expire.
 */
typedef struct mem_entry {
    struct mem_entry *hnext;    /* next entry in the same bucket */
    struct mem_entry *lru_prev; /* more recently used neighbour */
    struct mem_entry *lru_next; /* less recently used neighbour */
    uint64_t stamp;             /* last access, see next_stamp() */
    uint32_t vlen;
    uint16_t kflags;            /* key length (low 15 bits) | HAS_EXPIRY */
    char data[];                /* [int64 expires_ms] key NUL value NUL */
} mem_entry;

#define HAS_EXPIRY 0x8000u
#define KLEN_MASK 0x7fffu

typedef struct mem_shard {
    alignas(64) pthread_mutex_t lock; /* own cache line: shards do not false-share */
    mem_entry **buckets;
    size_t nbuckets; /* a power of two */
    _Atomic size_t count;           /* written under the lock, read by stats without it */
    mem_entry *lru_head;            /* most recently used */
    mem_entry *lru_tail;            /* least recently used */
    _Atomic uint64_t *tail_stamp;   /* -> mem_backend.tail_stamps[this shard] */
    uint64_t seed;                  /* the backend's hash seed, to rehash entries */
    /* Written under the lock; read without it by get_stats, which may then
     * be called from an atomic_update callback without a deadlock. */
    _Atomic uint64_t hits, misses, evictions, expired;
} mem_shard;

/* Adds to a counter that only the holder of its shard's lock writes: a plain
 * load and store, no locked instruction. */
#define SHARD_ADD(field, n)                                                              \
    atomic_store_explicit(&(field), atomic_load_explicit(&(field), memory_order_relaxed) + (n), \
                          memory_order_relaxed)

typedef struct mem_backend {
    nori_backend base; /* must be first */
    size_t max_keys;
    uint64_t seed;
    _Atomic size_t reserved; /* entries held plus places reserved by inserts in flight */
    /* Each shard's lru_tail->stamp (EMPTY_STAMP when empty), packed together
     * so that finding the oldest tail reads a few cache lines, not one per
     * shard. Written under the shard's lock, read without it. */
    alignas(64) _Atomic uint64_t tail_stamps[NSHARDS];
    mem_shard shards[NSHARDS];
} mem_backend;

/*
 * The backends whose atomic_update callbacks are running on the calling
 * thread, innermost first: a callback of A may call B, whose callback runs
 * while A's is still active. A callback that calls back into any of them
 * would deadlock on the non-recursive shard lock; refuse_reentry() turns
 * that into an error. Each entry lives on the stack of decide_update().
 */
typedef struct callback_frame {
    const struct mem_backend *mb;
    const struct callback_frame *outer;
} callback_frame;

static _Thread_local const callback_frame *active_callbacks;

/* The last stamp this thread handed out. */
static _Thread_local uint64_t last_stamp;

/*
 * A time-based stamp that strictly increases on each thread, so that a
 * single-threaded sequence is ordered exactly even when the clock does not
 * move between two calls. Across threads it is as precise as the clock.
 */
static inline uint64_t next_stamp(int64_t now_ms)
{
    uint64_t s = (uint64_t)now_ms * 1000000u;
    if (s <= last_stamp)
        s = last_stamp + 1;
    last_stamp = s;
    return s;
}

static inline size_t entry_klen(const mem_entry *e)
{
    return e->kflags & KLEN_MASK;
}

static inline size_t expiry_size(bool has_expiry)
{
    return has_expiry ? sizeof(int64_t) : 0;
}

static inline bool entry_has_expiry(const mem_entry *e)
{
    return (e->kflags & HAS_EXPIRY) != 0;
}

/* When the entry expires, in nori__now_ms() milliseconds; 0 = never. */
static inline int64_t entry_expires(const mem_entry *e)
{
    int64_t t = 0;
    if (entry_has_expiry(e))
        memcpy(&t, e->data, sizeof t); /* unaligned: the header is 38 bytes */
    return t;
}

static inline void entry_set_expires(mem_entry *e, int64_t t)
{
    memcpy(e->data, &t, sizeof t);
}

static inline const char *entry_key(const mem_entry *e)
{
    return e->data + expiry_size(entry_has_expiry(e));
}

static inline char *entry_value(mem_entry *e)
{
    return e->data + expiry_size(entry_has_expiry(e)) + entry_klen(e) + 1;
}

static inline size_t entry_size(size_t klen, size_t vlen, bool has_expiry)
{
    return offsetof(mem_entry, data) + expiry_size(has_expiry) + klen + 1 + vlen + 1;
}

/* A 64-bit hash that reads the key 8 bytes at a time, with a final
 * avalanche (the splitmix64 finaliser). */
static uint64_t hash_key(uint64_t seed, const char *key, size_t len)
{
    uint64_t h = seed ^ (len * 0x9E3779B97F4A7C15ull);
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, key, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        key += 8;
        len -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, key, len);
    h ^= w;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

/* The shard comes from the top bits, the bucket from the low bits, so the
 * two choices are independent. */
static inline mem_shard *shard_of(mem_backend *mb, uint64_t hash)
{
    return &mb->shards[hash >> (64 - NSHARDS_BITS)];
}

/* ---- the LRU list ---- */

static void publish_tail(mem_shard *s)
{
    atomic_store_explicit(s->tail_stamp, s->lru_tail != NULL ? s->lru_tail->stamp : EMPTY_STAMP,
                          memory_order_relaxed);
}

static void lru_unlink(mem_shard *s, mem_entry *e)
{
    if (e->lru_prev != NULL)
        e->lru_prev->lru_next = e->lru_next;
    else
        s->lru_head = e->lru_next;
    if (e->lru_next != NULL)
        e->lru_next->lru_prev = e->lru_prev;
    else
        s->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(mem_shard *s, mem_entry *e)
{
    e->lru_prev = NULL;
    e->lru_next = s->lru_head;
    if (s->lru_head != NULL)
        s->lru_head->lru_prev = e;
    s->lru_head = e;
    if (s->lru_tail == NULL)
        s->lru_tail = e;
}

/* Marks e as just used. */
static void do_touch(mem_shard *s, mem_entry *e, uint64_t stamp)
{
    bool was_tail = s->lru_tail == e;
    e->stamp = stamp;
    if (s->lru_head != e) {
        lru_unlink(s, e);
        lru_push_front(s, e);
    }
    if (was_tail)
        publish_tail(s);
}

/* ---- the hash table ---- */

/* Returns the slot that points at the entry for `key`, or the empty slot at
 * the end of its bucket's chain. */
static mem_entry **do_find_slot(mem_shard *s, const char *key, size_t klen, uint64_t hash)
{
    mem_entry **slot = &s->buckets[hash & (s->nbuckets - 1)];
    while (*slot != NULL) {
        mem_entry *e = *slot;
        if (entry_klen(e) == klen && memcmp(entry_key(e), key, klen) == 0)
            return slot;
        slot = &e->hnext;
    }
    return slot;
}

static inline uint64_t entry_hash(const mem_shard *s, const mem_entry *e)
{
    return hash_key(s->seed, entry_key(e), entry_klen(e));
}

/* Doubles the bucket array when the load passes 1. A failed allocation only
 * keeps the table denser; it is not an error. */
static void do_maybe_grow(mem_shard *s)
{
    if (s->count < s->nbuckets || s->nbuckets >= ((size_t)1 << 31))
        return;
    size_t n = s->nbuckets * 2;
    mem_entry **nb = calloc(n, sizeof *nb);
    if (nb == NULL)
        return;
    for (size_t i = 0; i < s->nbuckets; i++) {
        mem_entry *e = s->buckets[i];
        while (e != NULL) {
            mem_entry *next = e->hnext;
            mem_entry **head = &nb[entry_hash(s, e) & (n - 1)];
            e->hnext = *head;
            *head = e;
            e = next;
        }
    }
    free(s->buckets);
    s->buckets = nb;
    s->nbuckets = n;
}

/* Unlinks the entry at `slot` from the table and the list, and frees it.
 * The caller gives its place back in mb->reserved. */
static void do_remove(mem_shard *s, mem_entry **slot)
{
    mem_entry *e = *slot;
    bool was_tail = s->lru_tail == e;
    *slot = e->hnext;
    lru_unlink(s, e);
    SHARD_ADD(s->count, -1);
    if (was_tail)
        publish_tail(s);
    free(e);
}

static void release_places(mem_backend *mb, size_t n)
{
    atomic_fetch_sub_explicit(&mb->reserved, n, memory_order_relaxed);
}

static inline bool is_expired(const mem_entry *e, int64_t now)
{
    int64_t t = entry_expires(e);
    return t != 0 && t <= now;
}

/* Finds a live entry; an expired one is removed on the way (lazy expiry).
 * Returns the slot (so the caller can replace or remove) or NULL. */
static mem_entry **do_lookup(mem_backend *mb, mem_shard *s, const char *key, size_t klen,
                             uint64_t hash, int64_t now)
{
    mem_entry **slot = do_find_slot(s, key, klen, hash);
    if (*slot == NULL)
        return NULL;
    if (is_expired(*slot, now)) {
        do_remove(s, slot);
        release_places(mb, 1);
        SHARD_ADD(s->expired, 1);
        return NULL;
    }
    return slot;
}

static mem_entry *entry_new(const char *key, size_t klen, const void *val,
                            size_t vlen, int64_t expires_ms)
{
    mem_entry *e = malloc(entry_size(klen, vlen, expires_ms != 0));
    if (e == NULL) {
        nori__fail(NORI_ENOMEM, "out of memory storing %zu bytes under key '%.64s'", vlen, key);
        return NULL;
    }
    e->hnext = e->lru_prev = e->lru_next = NULL;
    e->stamp = 0;
    e->kflags = (uint16_t)(klen | (expires_ms != 0 ? HAS_EXPIRY : 0));
    e->vlen = (uint32_t)vlen;
    if (expires_ms != 0)
        entry_set_expires(e, expires_ms);
    char *k = (char *)entry_key(e);
    memcpy(k, key, klen);
    k[klen] = '\0';
    char *v = entry_value(e);
    if (vlen > 0)
        memcpy(v, val, vlen);
    v[vlen] = '\0';
    return e;
}

/* Replaces the entry at `slot` by `e`, which takes its place in the table and
 * becomes the most recently used. */
static void do_replace(mem_shard *s, mem_entry **slot, mem_entry *e, uint64_t stamp)
{
    mem_entry *old = *slot;
    bool was_tail = s->lru_tail == old;
    e->hnext = old->hnext;
    *slot = e;
    lru_unlink(s, old);
    free(old);
    e->stamp = stamp;
    lru_push_front(s, e);
    if (was_tail || s->lru_tail == e)
        publish_tail(s);
}

/* Links a new key's entry in; its place was reserved by reserve_place(). */
static void do_insert(mem_shard *s, mem_entry *e, uint64_t hash, uint64_t stamp)
{
    SHARD_ADD(s->count, 1);
    do_maybe_grow(s);
    mem_entry **head = &s->buckets[hash & (s->nbuckets - 1)];
    e->hnext = *head;
    *head = e;
    e->stamp = stamp;
    lru_push_front(s, e);
    if (s->lru_tail == e)
        publish_tail(s);
}

static void shard_lock(mem_shard *s)
{
    pthread_mutex_lock(&s->lock);
}

static void shard_unlock(mem_shard *s)
{
    pthread_mutex_unlock(&s->lock);
}

/* The shard whose published tail stamp is the oldest, skipping the shards
 * in the `skip` mask; -1 when none holds an entry. */
static int oldest_tail(const mem_backend *mb, uint64_t skip, uint64_t *stamp)
{
    int idx = -1;
    uint64_t oldest = EMPTY_STAMP;
    for (int i = 0; i < NSHARDS; i++) {
        if (skip & ((uint64_t)1 << i))
            continue;
        uint64_t st = atomic_load_explicit(&mb->tail_stamps[i], memory_order_relaxed);
        if (st < oldest) {
            oldest = st;
            idx = i;
        }
    }
    *stamp = oldest;
    return idx;
}

/*
 * Removes the globally least recently used entry: the tail with the oldest
 * stamp, or, when that shard's lock is held by another thread, the oldest
 * tail among the shards that are free at that moment. Returns false when
 * every shard is empty (all places are held by inserts still in flight).
 * Called with no lock held.
 */
static bool evict_one(mem_backend *mb)
{
    uint64_t busy = 0; /* shards found locked by another thread in this call */
    for (;;) {
        mem_shard *victim = NULL;
        uint64_t oldest = EMPTY_STAMP;
        int idx = oldest_tail(mb, busy, &oldest);
        if (idx < 0 && busy != 0) {
            /* Every shard that holds entries is busy: wait for the one with
             * the oldest tail (its holder's critical section bounds it). */
            busy = 0;
            idx = oldest_tail(mb, 0, &oldest);
            if (idx < 0)
                return false;
            victim = &mb->shards[idx];
            shard_lock(victim);
        } else if (idx < 0) {
            return false;
        } else {
            victim = &mb->shards[idx];
            /* A busy victim shard (an atomic_update callback may be running
             * under its lock) must not stall an unrelated insert: take the
             * next oldest tail instead. */
            if (pthread_mutex_trylock(&victim->lock) != 0) {
                busy |= (uint64_t)1 << idx;
                continue;
            }
        }
        mem_entry *e = victim->lru_tail;
        /* Another thread may have changed this tail since it was read: then
         * choose again, so the victim is the oldest at the moment it goes. */
        if (e == NULL || e->stamp != oldest) {
            shard_unlock(victim);
            continue;
        }
        if (is_expired(e, nori__now_coarse_ms()))
            SHARD_ADD(victim->expired, 1);
        else
            SHARD_ADD(victim->evictions, 1);
        mem_entry **slot = &victim->buckets[entry_hash(victim, e) & (victim->nbuckets - 1)];
        while (*slot != e)
            slot = &(*slot)->hnext;
        do_remove(victim, slot);
        shard_unlock(victim);
        release_places(mb, 1);
        return true;
    }
}

/*
 * Reserves a place for a new key, evicting until the reservations fit in
 * max_keys. Called with no lock held. Every entry was linked in by a thread
 * that saw the reservations within the bound, so the store never holds more
 * than max_keys. When every place is held by an insert still in flight there
 * is nothing to evict yet: wait for one to land (or to give its place back).
 */
static bool try_reserve_place(mem_backend *mb)
{
    size_t r = atomic_load_explicit(&mb->reserved, memory_order_relaxed);
    do {
        if (r >= mb->max_keys)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(&mb->reserved, &r, r + 1,
                                                    memory_order_relaxed, memory_order_relaxed));
    return true;
}

/*
 * A thread takes a place only when one is free (compare-and-swap below the
 * bound), so `reserved` never exceeds max_keys and a thread that waits holds
 * no place. Every place is then held by a linked entry (which can be evicted)
 * or by an insert in flight (which holds its place and never waits for
 * another one, so it lands). One of the two frees a place soon: progress
 * for any number of threads and any max_keys >= 1. (Before, each waiting
 * thread counted its own place first: with every shard empty and more
 * waiters than places, nobody could proceed.)
 */
static void reserve_place(mem_backend *mb)
{
    while (!try_reserve_place(mb)) {
        if (!evict_one(mb))
            sched_yield(); /* every place is held by an insert in flight */
    }
}

static int refuse_reentry(const mem_backend *mb, const char *op)
{
    for (const callback_frame *f = active_callbacks; f != NULL; f = f->outer)
        if (f->mb == mb)
            return nori__fail(NORI_EINVAL,
                          "%s called from inside an atomic_update callback of the same memory "
                          "backend (the callback runs under the backend's lock)",
                          op);
    return NORI_OK;
}

/*
 * Stores `e` (a complete new entry for its key) with the exact bound: the
 * fast path replaces an existing entry under one lock; a new key reserves a
 * place (evicting if needed) with no lock held, then links in.
 */
static void store_entry(mem_backend *mb, mem_shard *s, mem_entry *e, uint64_t hash, int64_t now)
{
    const char *key = entry_key(e);
    size_t klen = entry_klen(e);
    uint64_t stamp = next_stamp(now);
    shard_lock(s);
    mem_entry **slot = do_find_slot(s, key, klen, hash);
    if (*slot != NULL) {
        do_replace(s, slot, e, stamp);
        shard_unlock(s);
        return;
    }
    shard_unlock(s);
    reserve_place(mb);
    shard_lock(s);
    slot = do_find_slot(s, key, klen, hash);
    if (*slot != NULL) { /* another thread inserted the key meanwhile */
        do_replace(s, slot, e, stamp);
        shard_unlock(s);
        release_places(mb, 1);
        return;
    }
    do_insert(s, e, hash, stamp);
    shard_unlock(s);
}

/*
 * For incr and atomic_update, which must decide and write under one lock
 * hold: when the key is new and the store is full, the eviction must happen
 * with no lock held. So these reserve a place first, and give it back when
 * the key turned out to exist or nothing was written.
 */

/* ---- operations ---- */

/*
 * The read path of get and get_into: finds the live entry for `key` and hands
 * it to `copy` under the shard lock; a successful copy counts a hit and
 * refreshes the entry's recency.
 */
typedef int (*copy_fn)(mem_entry *e, const char *key, void *ctx);

static int read_entry(mem_backend *mb, const char *op, const char *key, size_t klen, copy_fn copy,
                      void *ctx)
{
    int rc = refuse_reentry(mb, op);
    if (rc != NORI_OK)
        return rc;
    uint64_t hash = hash_key(mb->seed, key, klen);
    mem_shard *s = shard_of(mb, hash);
    int64_t now = nori__now_coarse_ms();
    uint64_t stamp = next_stamp(now);
    shard_lock(s);
    mem_entry **slot = do_lookup(mb, s, key, klen, hash, now);
    if (slot == NULL) {
        SHARD_ADD(s->misses, 1);
        shard_unlock(s);
        return NORI_MISS;
    }
    rc = copy(*slot, key, ctx);
    if (rc == NORI_OK) {
        do_touch(s, *slot, stamp);
        SHARD_ADD(s->hits, 1);
    }
    shard_unlock(s);
    return rc;
}

static int copy_to_new_buf(mem_entry *e, const char *key, void *ctx)
{
    nori_buf *out = ctx;
    char *copy = malloc((size_t)e->vlen + 1);
    if (copy == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory copying the value of '%.64s'", key);
    memcpy(copy, entry_value(e), (size_t)e->vlen + 1);
    out->data = copy;
    out->len = e->vlen;
    return NORI_OK;
}

static int mem_get(nori_backend *b, const char *key, size_t klen, nori_buf *out)
{
    return read_entry((mem_backend *)b, "get", key, klen, copy_to_new_buf, out);
}

typedef struct {
    void *buf;
    size_t cap;
    size_t *len;
} into_ctx;

static int copy_to_callers_buf(mem_entry *e, const char *key, void *ctx)
{
    into_ctx *c = ctx;
    *c->len = e->vlen;
    if (e->vlen > c->cap)
        return nori__fail(NORI_ETOOBIG, "get_into '%.64s': the value is %" PRIu32
                                        " bytes, the buffer holds %zu", key, e->vlen, c->cap);
    if (e->vlen > 0) /* buf may be NULL when cap is 0: memcpy(NULL, .., 0) is undefined */
        memcpy(c->buf, entry_value(e), e->vlen);
    return NORI_OK;
}

static int mem_get_into(nori_backend *b, const char *key, size_t klen, void *buf, size_t cap,
                        size_t *len)
{
    into_ctx c = {buf, cap, len};
    return read_entry((mem_backend *)b, "get_into", key, klen, copy_to_callers_buf, &c);
}

static int64_t expiry_from_ttl(int64_t ttl, int64_t now)
{
    return ttl > 0 ? now + ttl * 1000 : 0;
}

/* Whether a value of `len` bytes, with or without an expiry, fits in e's
 * allocation (malloc rounds sizes up), so that an overwrite needs neither
 * malloc nor free. */
static inline bool value_fits(const mem_entry *e, size_t len, bool has_expiry)
{
    if (entry_has_expiry(e) != has_expiry)
        return false;
    size_t need = entry_size(entry_klen(e), len, has_expiry);
    size_t block = malloc_usable_size((void *)e);
    /* Never keep a block much larger than the new entry: an 8 MiB block
     * overwritten with 11 bytes would hold the 8 MiB for as long as the key
     * lives. Within a quarter (or 64 bytes) the reuse is worth the slack. */
    return need <= block && block - need <= (need / 4 > 64 ? need / 4 : 64);
}

/* Values up to this size may be copied while the shard lock is held. */
#define IN_PLACE_MAX 4096

static int mem_set(nori_backend *b, const char *key, size_t klen, const void *val, size_t len,
                   int64_t ttl)
{
    mem_backend *mb = (mem_backend *)b;
    int rc = refuse_reentry(mb, "set");
    if (rc != NORI_OK)
        return rc;
    uint64_t hash = hash_key(mb->seed, key, klen);
    mem_shard *s = shard_of(mb, hash);
    int64_t now = nori__now_ms();
    int64_t expires_ms = expiry_from_ttl(ttl, now);
    if (len <= IN_PLACE_MAX) {
        /* Overwrite in place when the new value fits the old allocation: a
         * free of memory another thread allocated is what made concurrent
         * sets slow (malloc arenas are per thread). */
        uint64_t stamp = next_stamp(now);
        shard_lock(s);
        mem_entry **slot = do_find_slot(s, key, klen, hash);
        if (*slot != NULL && value_fits(*slot, len, expires_ms != 0)) {
            mem_entry *e = *slot;
            char *v = entry_value(e);
            memcpy(v, val, len);
            v[len] = '\0';
            e->vlen = (uint32_t)len;
            if (expires_ms != 0)
                entry_set_expires(e, expires_ms);
            do_touch(s, e, stamp);
            shard_unlock(s);
            return NORI_OK;
        }
        shard_unlock(s);
    }
    /* Allocate and copy outside the lock: the critical section only links. */
    mem_entry *e = entry_new(key, klen, val, len, expires_ms);
    if (e == NULL)
        return NORI_ENOMEM;
    store_entry(mb, s, e, hash, now);
    return NORI_OK;
}

static int mem_del(nori_backend *b, const char *key, size_t klen)
{
    mem_backend *mb = (mem_backend *)b;
    int rc = refuse_reentry(mb, "delete");
    if (rc != NORI_OK)
        return rc;
    uint64_t hash = hash_key(mb->seed, key, klen);
    mem_shard *s = shard_of(mb, hash);
    shard_lock(s);
    mem_entry **slot = do_find_slot(s, key, klen, hash);
    bool found = *slot != NULL;
    if (found)
        do_remove(s, slot);
    shard_unlock(s);
    if (found)
        release_places(mb, 1);
    return NORI_OK;
}

/* Frees every entry of the shard; returns how many there were. */
static size_t do_clear(mem_shard *s)
{
    size_t n = s->count;
    mem_entry *e = s->lru_head;
    while (e != NULL) {
        mem_entry *next = e->lru_next;
        free(e);
        e = next;
    }
    memset(s->buckets, 0, s->nbuckets * sizeof *s->buckets);
    s->lru_head = s->lru_tail = NULL;
    atomic_store_explicit(&s->count, 0, memory_order_relaxed);
    publish_tail(s);
    return n;
}

/* Removes the shard's entries whose key starts with prefix; returns how
 * many. Called with the shard's lock held. */
static size_t do_delete_prefix(mem_shard *s, const char *prefix, size_t plen)
{
    size_t n = 0;
    for (size_t i = 0; i < s->nbuckets; i++) {
        mem_entry **slot = &s->buckets[i];
        while (*slot != NULL) {
            if (entry_klen(*slot) >= plen && memcmp(entry_key(*slot), prefix, plen) == 0) {
                do_remove(s, slot); /* *slot is now the next entry of the chain */
                n++;
            } else {
                slot = &(*slot)->hnext;
            }
        }
    }
    return n;
}

static int mem_delete_prefix(nori_backend *b, const char *prefix, size_t plen)
{
    mem_backend *mb = (mem_backend *)b;
    int rc = refuse_reentry(mb, plen == 0 ? "flush" : "delete_prefix");
    if (rc != NORI_OK)
        return rc;
    for (int i = 0; i < NSHARDS; i++) {
        shard_lock(&mb->shards[i]);
        size_t n = plen == 0 ? do_clear(&mb->shards[i])
                             : do_delete_prefix(&mb->shards[i], prefix, plen);
        shard_unlock(&mb->shards[i]);
        release_places(mb, n);
    }
    return NORI_OK;
}

/*
 * The read-decide-write core of incr and atomic_update. `decide` sees the
 * live entry (or NULL) under the shard lock and builds the new entry, or
 * returns an error to write nothing. When the key is absent and the store is
 * full, the place is reserved (with its eviction) before the lock is taken,
 * and the whole decision is made again under the lock: nothing is decided
 * twice on the same state.
 */
typedef int (*decide_fn)(mem_entry *current, mem_entry **next, void *ctx);

static int read_decide_write(mem_backend *mb, const char *key, size_t klen, uint64_t hash,
                             int64_t now, decide_fn decide, void *ctx)
{
    mem_shard *s = shard_of(mb, hash);
    uint64_t stamp = next_stamp(now);
    bool have_place = false;
    for (;;) {
        shard_lock(s);
        mem_entry **slot = do_lookup(mb, s, key, klen, hash, now);
        if (slot == NULL && !have_place) {
            /* A new key needs a place, and reserving one may evict from
             * another shard: never with this lock held. */
            shard_unlock(s);
            reserve_place(mb);
            have_place = true;
            continue;
        }
        mem_entry *next = NULL;
        int rc = decide(slot != NULL ? *slot : NULL, &next, ctx);
        if (rc == NORI_OK) {
            if (slot != NULL)
                do_replace(s, slot, next, stamp);
            else
                do_insert(s, next, hash, stamp);
        }
        shard_unlock(s);
        /* The place goes back unless a new key was linked in with it. */
        if (have_place && !(rc == NORI_OK && slot == NULL))
            release_places(mb, 1);
        return rc;
    }
}

typedef struct {
    const char *key;
    size_t klen;
    uint64_t hash;
    int64_t ttl, now;
    int64_t value; /* out */
} incr_ctx;

static int decide_incr(mem_entry *cur, mem_entry **next, void *ctx)
{
    incr_ctx *c = ctx;
    int64_t value = 1;
    int64_t expires_ms = expiry_from_ttl(c->ttl, c->now);
    if (cur != NULL) {
        int64_t old;
        if (!nori__parse_int64(entry_value(cur), cur->vlen, &old))
            return nori__fail(NORI_ETYPE, "incr '%.64s': the stored value is not an int", c->key);
        if (old == INT64_MAX)
            return nori__fail(NORI_ERANGE, "incr '%.64s': %" PRId64 " + 1 overflows int64", c->key,
                              old);
        value = old + 1;
        expires_ms = entry_expires(cur); /* an existing counter keeps its expiry */
    }
    char text[24];
    int n = snprintf(text, sizeof text, "%" PRId64, value);
    *next = entry_new(c->key, c->klen, text, (size_t)n, expires_ms);
    if (*next == NULL)
        return NORI_ENOMEM;
    c->value = value;
    return NORI_OK;
}

static int mem_incr(nori_backend *b, const char *key, size_t klen, int64_t ttl, int64_t *out)
{
    mem_backend *mb = (mem_backend *)b;
    int rc = refuse_reentry(mb, "incr");
    if (rc != NORI_OK)
        return rc;
    incr_ctx c = {key, klen, hash_key(mb->seed, key, klen), ttl, nori__now_ms(), 0};
    rc = read_decide_write(mb, key, klen, c.hash, c.now, decide_incr, &c);
    if (rc == NORI_OK)
        *out = c.value;
    return rc;
}

typedef struct {
    const mem_backend *mb;
    const char *key;
    size_t klen;
    uint64_t hash;
    int64_t ttl, now;
    nori_update_fn fn;
    void *ud;
    nori_buf *out;
} update_ctx;

static int decide_update(mem_entry *cur, mem_entry **next_entry, void *ctx)
{
    update_ctx *c = ctx;
    nori_buf current = {0}, next = {0};
    if (cur != NULL) {
        current.data = entry_value(cur);
        current.len = cur->vlen;
    }
    callback_frame frame = {c->mb, active_callbacks};
    active_callbacks = &frame;
    int declined = c->fn(cur != NULL ? &current : NULL, &next, c->ud);
    active_callbacks = frame.outer; /* restore, never clear: callbacks nest */
    int rc = NORI_OK;
    if (declined != 0)
        rc = nori__fail(NORI_EABORT, "atomic_update '%.64s': the callback declined (returned %d)",
                        c->key, declined);
    else if (next.data == NULL && next.len > 0)
        rc = nori__fail(NORI_EINVAL, "atomic_update '%.64s': the callback set len %zu with no data",
                        c->key, next.len);
    if (rc == NORI_OK)
        rc = nori__check_value(&c->mb->base, c->key, next.len);
    if (rc == NORI_OK) {
        int64_t expires_ms = expiry_from_ttl(c->ttl, c->now);
        if (c->ttl == 0 && cur != NULL)
            expires_ms = entry_expires(cur); /* ttl 0 keeps the existing expiry */
        *next_entry = entry_new(c->key, c->klen, next.data, next.len, expires_ms);
        if (*next_entry == NULL)
            rc = NORI_ENOMEM;
    }
    /* The caller's copy is made before anything is written, so that its
     * failure writes nothing. */
    if (rc == NORI_OK && c->out != NULL) {
        rc = nori__adopt_buf(&next, c->out);
        if (rc != NORI_OK) {
            free(*next_entry);
            *next_entry = NULL;
        }
    }
    nori_buf_free(&next);
    return rc;
}

static int mem_atomic_update(nori_backend *b, const char *key, size_t klen, nori_update_fn fn,
                             void *ud, int64_t ttl, nori_buf *out)
{
    mem_backend *mb = (mem_backend *)b;
    int rc = refuse_reentry(mb, "atomic_update");
    if (rc != NORI_OK)
        return rc;
    update_ctx c = {mb, key, klen, hash_key(mb->seed, key, klen), ttl, nori__now_ms(),
                    fn, ud, out};
    return read_decide_write(mb, key, klen, c.hash, c.now, decide_update, &c);
}

static int mem_verify(nori_backend *b)
{
    (void)b;
    return NORI_OK;
}

/* Takes no lock (each counter is read on its own), so it is safe from inside
 * an atomic_update callback; the sum is not one instant's snapshot. */
static void mem_stats(nori_backend *b, nori_backend_stats *out)
{
    mem_backend *mb = (mem_backend *)b;
    for (int i = 0; i < NSHARDS; i++) {
        mem_shard *s = &mb->shards[i];
        out->hits += atomic_load_explicit(&s->hits, memory_order_relaxed);
        out->misses += atomic_load_explicit(&s->misses, memory_order_relaxed);
        out->evictions += atomic_load_explicit(&s->evictions, memory_order_relaxed);
        out->expired += atomic_load_explicit(&s->expired, memory_order_relaxed);
        out->entries += atomic_load_explicit(&s->count, memory_order_relaxed);
    }
}

static void mem_destroy(nori_backend *b)
{
    mem_backend *mb = (mem_backend *)b;
    for (int i = 0; i < NSHARDS; i++) {
        do_clear(&mb->shards[i]);
        free(mb->shards[i].buckets);
        pthread_mutex_destroy(&mb->shards[i].lock);
    }
    free(mb);
}

static const nori_backend_ops memory_ops = {
    .kind = "memory",
    .get = mem_get,
    .get_into = mem_get_into,
    .set = mem_set,
    .del = mem_del,
    .delete_prefix = mem_delete_prefix,
    .incr = mem_incr,
    .atomic_update = mem_atomic_update,
    .verify = mem_verify,
    .stats = mem_stats,
    .destroy = mem_destroy,
};

static uint64_t random_seed(void)
{
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) == (ssize_t)sizeof seed)
        return seed;
    /* No entropy yet (early boot): a weaker seed still differs per process. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)&seed;
}

int nori_memory_backend_new(size_t max_keys, nori_backend **out)
{
    if (out == NULL)
        return nori__fail(NORI_EINVAL, "memory backend: out is NULL");
    if (max_keys == 0)
        return nori__fail(NORI_EINVAL, "memory backend: max_keys is 0; it must be positive");
    /* aligned_alloc: the shards are cache-line aligned. */
    size_t size = (sizeof(mem_backend) + 63) / 64 * 64;
    mem_backend *mb = aligned_alloc(64, size);
    if (mb == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory creating a memory backend");
    memset(mb, 0, size);
    for (int i = 0; i < NSHARDS; i++) {
        mem_shard *s = &mb->shards[i];
        s->buckets = calloc(INITIAL_BUCKETS, sizeof *s->buckets);
        if (s->buckets == NULL) {
            for (int j = 0; j < i; j++) {
                free(mb->shards[j].buckets);
                pthread_mutex_destroy(&mb->shards[j].lock);
            }
            free(mb);
            return nori__fail(NORI_ENOMEM, "out of memory creating a memory backend");
        }
        s->nbuckets = INITIAL_BUCKETS;
        pthread_mutexattr_t attr;
        pthread_mutexattr_init(&attr);
        pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_NORMAL);
        pthread_mutex_init(&s->lock, &attr);
        pthread_mutexattr_destroy(&attr);
        s->tail_stamp = &mb->tail_stamps[i];
        atomic_init(s->tail_stamp, EMPTY_STAMP);
    }
    mb->max_keys = max_keys;
    mb->seed = random_seed();
    for (int i = 0; i < NSHARDS; i++)
        mb->shards[i].seed = mb->seed;
    atomic_init(&mb->reserved, 0);
    nori__backend_init(&mb->base, &memory_ops);
    *out = &mb->base;
    return NORI_OK;
}

/* ---- audit (tests) ---- */

static bool do_audit_shard(const mem_shard *s)
{
    size_t listed = 0;
    const mem_entry *prev = NULL;
    for (const mem_entry *e = s->lru_head; e != NULL; e = e->lru_next) {
        if (e->lru_prev != prev || ++listed > s->count)
            return false;
        prev = e;
    }
    if (prev != s->lru_tail || listed != s->count)
        return false;
    size_t hashed = 0;
    for (size_t i = 0; i < s->nbuckets; i++)
        for (const mem_entry *e = s->buckets[i]; e != NULL; e = e->hnext)
            if ((entry_hash(s, e) & (s->nbuckets - 1)) != i || ++hashed > s->count)
                return false;
    uint64_t tail = atomic_load_explicit(s->tail_stamp, memory_order_relaxed);
    return hashed == s->count && tail == (s->lru_tail != NULL ? s->lru_tail->stamp : EMPTY_STAMP);
}

int64_t nori__memory_audit(nori_backend *b)
{
    if (b == NULL || b->ops != &memory_ops)
        return -1;
    mem_backend *mb = (mem_backend *)b;
    for (int i = 0; i < NSHARDS; i++)
        shard_lock(&mb->shards[i]);
    int64_t total = 0;
    bool ok = true;
    for (int i = 0; i < NSHARDS; i++) {
        ok = ok && do_audit_shard(&mb->shards[i]);
        total += (int64_t)mb->shards[i].count;
    }
    for (int i = NSHARDS - 1; i >= 0; i--)
        shard_unlock(&mb->shards[i]);
    return ok ? total : -1;
}

int nori__memory_shard_index(nori_backend *b, const char *key)
{
    if (b == NULL || b->ops != &memory_ops)
        return -1;
    mem_backend *mb = (mem_backend *)b;
    return (int)(shard_of(mb, hash_key(mb->seed, key, strlen(key))) - mb->shards);
}

size_t nori__memory_block_size(nori_backend *b, const char *key)
{
    if (b == NULL || b->ops != &memory_ops)
        return 0;
    mem_backend *mb = (mem_backend *)b;
    size_t klen = strlen(key);
    uint64_t hash = hash_key(mb->seed, key, klen);
    mem_shard *s = shard_of(mb, hash);
    shard_lock(s);
    mem_entry **slot = do_find_slot(s, key, klen, hash);
    size_t size = *slot != NULL ? malloc_usable_size(*slot) : 0;
    shard_unlock(s);
    return size;
}
