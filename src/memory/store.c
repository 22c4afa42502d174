/*
 * The in-process memory backend: an LRU cache bounded in entries and in
 * bytes, split into shards, each a chained hash table plus an intrusive
 * doubly-linked recency list. Writers take the shard's lock; readers take
 * no lock and write nothing another thread reads on its own hot path.
 *
 * Why this shape:
 *  - One allocation per entry (header, key and value together) keeps a lookup
 *    to one pointer chase after the bucket, and the per-entry overhead small.
 *  - Reads are lock-free: a get walks the bucket chain with acquire loads
 *    inside an epoch read section (epoch.c), copies the value, and records
 *    the access in the entry (`stamp`, and a `touched` flag). Entries are
 *    immutable once linked, so the copy needs no lock; an unlinked entry is
 *    freed only when no reader can still hold it. A read that finds an
 *    expired entry takes the lock to remove it (lazy expiry).
 *  - Exact LRU with lazy list updates: a read does not move the entry in the
 *    list (that would write the neighbours and the list head, the shared
 *    lines that made two threads slower than one). Before an eviction picks
 *    the shard's tail, the writer moves every touched entry it meets at the
 *    tail to its place by stamp (do_oldest()). Invariant: every entry in
 *    front of an untouched entry u has a stamp >= u's, so once the tail is
 *    untouched it holds the oldest stamp of the shard. Each shard publishes
 *    that stamp, so the evicting thread finds the globally oldest entry
 *    without taking every lock; a touch only raises a shard's true minimum,
 *    so a published stamp is never newer than it.
 *  - Both bounds are exact: room (a place, and bytes) is taken by compare-
 *    and-swap only while it is below the bound, before an entry is linked;
 *    a write that finds no room evicts first. A thread that waits for room
 *    holds none, so threads holding room never wait for room: progress for
 *    any thread count and any max_keys >= 1.
 *  - Bytes counted per entry (entry_charge()): the header, key, value and
 *    expiry, rounded up to the allocator's size class, plus 16 bytes for the
 *    allocator's chunk header and the entry's bucket slot.
 *  - Expiry: lazy on access, plus the sweeper thread (sweeper.c) that
 *    removes expired entries with a time budget, without any call.
 *  - The hash is seeded per backend from getrandom(), so keys chosen by an
 *    attacker (HTTP paths end up in keys) cannot be made to collide in advance.
 *
 * What holds under concurrency: both bounds, at every moment; progress of
 * every call (no livelock); a get returns a value that was stored under its
 * key during the call; "the victim is the entry with the oldest stamp" at
 * the moment it is chosen, among the shards whose lock is free (trylock;
 * when every shard holding entries is busy, the evicting thread waits for
 * the oldest one). Two accesses from different threads within the same
 * instant may be ordered either way, and a read racing with an eviction may
 * not save its entry. For a single-threaded sequence the order is exact.
 */
#include "memory/internal.h"

#include "clock.h"
#include "error.h"
#include "memory/epoch.h"
#include "memory/memory.h"

#include <inttypes.h>
#include <malloc.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>

#define INITIAL_BUCKETS 16
/* Unlinked entries kept per shard before a reclaim is tried. Small, so that
 * memory held by retired entries stays a small part of the byte bound. */
#define LIMBO_MAX_COUNT 32
#define LIMBO_MAX_BYTES ((size_t)64 * 1024)
/* Bytes charged per entry beyond its content rounded to a size class: the
 * allocator's chunk header (8) and the bucket slot at load factor 1 (8). */
#define ENTRY_EXTRA 16

/*
 * The backends whose atomic_update callbacks are running on the calling
 * thread, innermost first: a callback of A may call B, whose callback runs
 * while A's is still active. A callback that calls back into any of them
 * would deadlock on the non-recursive shard lock; refuse_reentry() turns
 * that into an error. Each frame lives on the stack of decide_update().
 */
typedef struct callback_frame {
    const mem_backend *mb;
    const struct callback_frame *outer;
} callback_frame;

static _Thread_local const callback_frame *active_callbacks;

/* The last stamp this thread handed out. */
static _Thread_local uint64_t last_stamp;

/* This thread's counter stripe, chosen once round robin. */
static _Thread_local unsigned my_stripe = UINT32_MAX;
static _Atomic unsigned next_stripe;

static inline mem_stripe *stripe_of(mem_backend *mb)
{
    if (my_stripe == UINT32_MAX)
        my_stripe = atomic_fetch_add_explicit(&next_stripe, 1, memory_order_relaxed) % NSTRIPES;
    return &mb->stripes[my_stripe];
}

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

/* ---- entries ---- */

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
        memcpy(&t, e->data, sizeof t); /* unaligned: the header is 39 bytes */
    return t;
}

static inline const char *entry_key(const mem_entry *e)
{
    return e->data + expiry_size(entry_has_expiry(e));
}

static inline const char *entry_value(const mem_entry *e)
{
    return e->data + expiry_size(entry_has_expiry(e)) + entry_klen(e) + 1;
}

static inline size_t entry_size(size_t klen, size_t vlen, bool has_expiry)
{
    return offsetof(mem_entry, data) + expiry_size(has_expiry) + klen + 1 + vlen + 1;
}

/* The allocator's size class of n bytes (glibc: 16-byte steps for small
 * chunks; above 128 bytes counted in quarter-power-of-two steps, an upper
 * bound of what malloc, or mmap pages for large blocks, costs). */
static size_t size_class(size_t n)
{
    if (n <= 128)
        return (n + 15) & ~(size_t)15;
    size_t p = (size_t)1 << (63 - __builtin_clzll((unsigned long long)(n - 1)));
    size_t step = p / 4;
    return (n + step - 1) / step * step;
}

size_t nori_memory_entry_bytes(size_t key_len, size_t value_len, int has_ttl)
{
    return size_class(entry_size(key_len, value_len, has_ttl != 0)) + ENTRY_EXTRA;
}

static inline size_t entry_charge(const mem_entry *e)
{
    return nori_memory_entry_bytes(entry_klen(e), e->vlen, entry_has_expiry(e));
}

static inline bool is_expired(const mem_entry *e, int64_t now)
{
    int64_t t = entry_expires(e);
    return t != 0 && t <= now;
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
#define MAP_MIN ((size_t)16 * 1024)

static size_t page_round(size_t n)
{
    return (n + 4095) & ~(size_t)4095;
}

static mem_entry *entry_alloc(size_t size, bool *mapped)
{
    *mapped = size >= MAP_MIN;
    if (!*mapped)
        return malloc(size);
    void *p = mmap(NULL, page_round(size), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void entry_free(mem_entry *e)
{
    if (e == NULL)
        return;
    if (e->kflags & MAPPED)
        munmap(e, page_round(entry_size(e->kflags & KLEN_MASK, e->vlen,
                                        (e->kflags & HAS_EXPIRY) != 0)));
    else
        free(e);
}

static mem_entry *entry_new(const char *key, size_t klen, const void *val, size_t vlen,
                            int64_t expires_ms)
{
    bool mapped;
    mem_entry *e = entry_alloc(entry_size(klen, vlen, expires_ms != 0), &mapped);
    if (e == NULL) {
        nori__fail(NORI_ENOMEM, "out of memory storing %zu bytes under key '%.64s'", vlen, key);
        return NULL;
    }
    atomic_init(&e->hnext, NULL);
    e->lru_prev = e->lru_next = NULL;
    atomic_init(&e->stamp, 0);
    atomic_init(&e->touched, 0);
    e->kflags = (uint16_t)(klen | (expires_ms != 0 ? HAS_EXPIRY : 0) | (mapped ? MAPPED : 0));
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

static inline uint64_t stamp_of(const mem_entry *e)
{
    return atomic_load_explicit(&e->stamp, memory_order_relaxed);
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

static inline uint64_t entry_hash(const mem_backend *mb, const mem_entry *e)
{
    return hash_key(mb->seed, entry_key(e), entry_klen(e));
}

/* ---- reclamation ---- */

/* Puts an unlinked entry aside until no reader can hold it. */
static void do_retire(mem_shard *s, mem_entry *e)
{
    e->retired_at = nori__epoch_now();
    e->lru_next = s->limbo;
    s->limbo = e;
    s->limbo_count++;
    s->limbo_bytes += entry_charge(e);
    if (s->limbo_count >= LIMBO_MAX_COUNT || s->limbo_bytes >= LIMBO_MAX_BYTES)
        nori__mem_do_reclaim(s);
}

void nori__mem_do_reclaim(mem_shard *s)
{
    if (s->limbo == NULL && s->retired_tables == NULL)
        return;
    uint64_t safe = nori__epoch_safe();
    mem_entry **link = &s->limbo;
    while (*link != NULL) {
        mem_entry *e = *link;
        if (e->retired_at < safe) {
            *link = e->lru_next;
            s->limbo_count--;
            s->limbo_bytes -= entry_charge(e);
            entry_free(e);
        } else {
            link = &e->lru_next;
        }
    }
    mem_table **tl = &s->retired_tables;
    while (*tl != NULL) {
        mem_table *t = *tl;
        if (t->retired_at < safe) {
            *tl = t->retired;
            free(t);
        } else {
            tl = &t->retired;
        }
    }
}

/* ---- the LRU list ---- */

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

/* Links e in front of `at` (NULL: at the tail end). */
static void lru_link_before(mem_shard *s, mem_entry *e, mem_entry *at)
{
    e->lru_next = at;
    e->lru_prev = at != NULL ? at->lru_prev : s->lru_tail;
    if (e->lru_prev != NULL)
        e->lru_prev->lru_next = e;
    else
        s->lru_head = e;
    if (at != NULL)
        at->lru_prev = e;
    else
        s->lru_tail = e;
}

/* Moves a touched entry to its place by stamp: behind every entry whose
 * stamp is newer. Walks from the head: the entries touched since are few. */
static void do_place_by_stamp(mem_shard *s, mem_entry *e)
{
    uint64_t st = stamp_of(e);
    lru_unlink(s, e);
    mem_entry *at = s->lru_head;
    while (at != NULL && stamp_of(at) > st)
        at = at->lru_next;
    lru_link_before(s, e, at);
}

/*
 * Places the touched entries met at the tail end until the tail (skipping
 * `keep`) is untouched, and returns it: the least recently used entry of the
 * shard other than `keep` (NULL when there is none). The bound on the loop
 * only matters when readers keep touching meanwhile.
 */
static mem_entry *do_oldest(mem_shard *s, const mem_entry *keep)
{
    size_t limit = atomic_load_explicit(&s->count, memory_order_relaxed) * 2 + 2;
    for (;;) {
        mem_entry *e = s->lru_tail;
        if (e != NULL && e == keep)
            e = e->lru_prev;
        if (e == NULL)
            return NULL;
        if (!atomic_load_explicit(&e->touched, memory_order_relaxed) || limit-- == 0)
            return e;
        atomic_store_explicit(&e->touched, 0, memory_order_relaxed);
        do_place_by_stamp(s, e);
    }
}

/* Publishes the shard's oldest stamp (placing touched tail entries first). */
static void do_publish_tail(mem_shard *s)
{
    mem_entry *e = do_oldest(s, NULL);
    atomic_store_explicit(s->tail_stamp, e != NULL ? stamp_of(e) : EMPTY_STAMP,
                          memory_order_relaxed);
}

/* ---- the hash table ---- */

static mem_table *table_new(size_t nbuckets)
{
    mem_table *t = calloc(1, sizeof *t + nbuckets * sizeof(mem_link));
    if (t != NULL)
        t->mask = nbuckets - 1;
    return t;
}

static inline mem_table *do_table(mem_shard *s)
{
    return atomic_load_explicit(&s->table, memory_order_relaxed);
}

static inline mem_entry *link_get(mem_link *l)
{
    return atomic_load_explicit(l, memory_order_relaxed);
}

/* Returns the link that points at the entry for `key`, or the empty link at
 * the end of its bucket's chain. */
static mem_link *do_find_link(mem_shard *s, const char *key, size_t klen, uint64_t hash)
{
    mem_table *t = do_table(s);
    mem_link *l = &t->b[hash & t->mask];
    mem_entry *e;
    while ((e = link_get(l)) != NULL) {
        if (entry_klen(e) == klen && memcmp(entry_key(e), key, klen) == 0)
            return l;
        l = &e->hnext;
    }
    return l;
}

/* The lock-free lookup. Called inside an epoch read section. */
static mem_entry *find_lockfree(mem_shard *s, const char *key, size_t klen, uint64_t hash)
{
    mem_table *t = atomic_load_explicit(&s->table, memory_order_acquire);
    mem_entry *e = atomic_load_explicit(&t->b[hash & t->mask], memory_order_acquire);
    while (e != NULL) {
        if (entry_klen(e) == klen && memcmp(entry_key(e), key, klen) == 0)
            return e;
        e = atomic_load_explicit(&e->hnext, memory_order_acquire);
    }
    return NULL;
}

/*
 * Moves the entries to a bucket array of `nbuckets`. Entries move to the new
 * array one by one; a reader walking a chain meanwhile may be led into a
 * chain of the new array and miss its key (never loop: every moved entry
 * points only at moved entries), so the move is bracketed by resize_seq and
 * a reader that missed during it retries under the lock. A failed
 * allocation only keeps the table denser; it is not an error.
 */
static void do_rehash(mem_shard *s, size_t nbuckets)
{
    mem_table *t = do_table(s);
    size_t n = t->mask + 1;
    mem_table *nt = table_new(nbuckets);
    if (nt == NULL)
        return;
    unsigned seq = atomic_load_explicit(&s->resize_seq, memory_order_relaxed);
    /* Every store below is a release store sequenced after this one: a
     * reader that loads (acquire) any pointer the move wrote then reads an
     * odd or newer resize_seq. No fence needed (nor one ThreadSanitizer
     * would understand). */
    atomic_store_explicit(&s->resize_seq, seq + 1, memory_order_relaxed);
    for (size_t i = 0; i < n; i++) {
        mem_entry *e = link_get(&t->b[i]);
        while (e != NULL) {
            mem_entry *next = link_get(&e->hnext);
            mem_link *head = &nt->b[entry_hash(s->mb, e) & nt->mask];
            atomic_store_explicit(&e->hnext, link_get(head), memory_order_release);
            atomic_store_explicit(head, e, memory_order_release);
            e = next;
        }
        atomic_store_explicit(&t->b[i], NULL, memory_order_release);
    }
    atomic_store_explicit(&s->table, nt, memory_order_release);
    atomic_store_explicit(&s->resize_seq, seq + 2, memory_order_release);
    t->retired_at = nori__epoch_now();
    t->retired = s->retired_tables;
    s->retired_tables = t;
}

static void do_maybe_grow(mem_shard *s)
{
    size_t n = do_table(s)->mask + 1;
    if (atomic_load_explicit(&s->count, memory_order_relaxed) >= n && n < ((size_t)1 << 31))
        do_rehash(s, n * 2);
}

/* Halves the bucket array while the load is under 1/8 (the sweeper calls
 * it), so that a store emptied by expiry gives its bucket memory back. */
void nori__mem_do_maybe_shrink(mem_shard *s)
{
    size_t n = do_table(s)->mask + 1;
    size_t count = atomic_load_explicit(&s->count, memory_order_relaxed);
    if (n <= INITIAL_BUCKETS || count >= n / 8)
        return;
    size_t target = n / 2;
    while (target > INITIAL_BUCKETS && count < target / 8)
        target /= 2;
    do_rehash(s, target);
}

/* ---- room: the two bounds ---- */

static void give_back(mem_backend *mb, size_t places, size_t bytes)
{
    if (places > 0)
        atomic_fetch_sub_explicit(&mb->places, places, memory_order_relaxed);
    if (bytes > 0)
        atomic_fetch_sub_explicit(&mb->bytes, bytes, memory_order_relaxed);
}

/* Takes `places` (0 or 1) and `bytes` when both stay within their bound,
 * else takes nothing. */
static bool try_take_room(mem_backend *mb, size_t places, size_t bytes)
{
    if (places > 0) {
        size_t p = atomic_load_explicit(&mb->places, memory_order_relaxed);
        do {
            if (p + places > mb->max_keys)
                return false;
        } while (!atomic_compare_exchange_weak_explicit(&mb->places, &p, p + places,
                                                        memory_order_relaxed,
                                                        memory_order_relaxed));
    }
    if (bytes > 0) {
        size_t limit = atomic_load_explicit(&mb->max_bytes, memory_order_relaxed);
        size_t b = atomic_load_explicit(&mb->bytes, memory_order_relaxed);
        do {
            if (limit != 0 && (b > limit || bytes > limit - b)) {
                give_back(mb, places, 0);
                return false;
            }
        } while (!atomic_compare_exchange_weak_explicit(&mb->bytes, &b, b + bytes,
                                                        memory_order_relaxed,
                                                        memory_order_relaxed));
    }
    return true;
}

/* Unlinks the entry at link `l` from the table and the list, gives its room
 * back and retires it. */
static void do_remove(mem_shard *s, mem_link *l)
{
    mem_entry *e = link_get(l);
    bool was_tail = s->lru_tail == e;
    atomic_store_explicit(l, link_get(&e->hnext), memory_order_release);
    lru_unlink(s, e);
    size_t charge = entry_charge(e);
    SHARD_ADD(s->count, -1);
    SHARD_ADD(s->bytes, -charge);
    give_back(s->mb, 1, charge);
    if (was_tail)
        do_publish_tail(s);
    do_retire(s, e);
}

/* Removes e, found by walking its bucket (e is known to be linked). */
static void do_remove_entry(mem_shard *s, mem_entry *e)
{
    mem_table *t = do_table(s);
    mem_link *l = &t->b[entry_hash(s->mb, e) & t->mask];
    while (link_get(l) != e)
        l = &link_get(l)->hnext;
    do_remove(s, l);
}

/* Evicts e (the oldest entry), counted as expired when it had expired. */
static void do_evict(mem_shard *s, mem_entry *e)
{
    if (is_expired(e, nori__now_coarse_ms()))
        SHARD_ADD(s->expired, 1);
    else
        SHARD_ADD(s->evictions, 1);
    do_remove_entry(s, e);
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
 * Evicts from the locked shard v the entry with the published stamp
 * `expected`, if that is still its oldest. Otherwise republishes (a reader
 * touched it: the shard's oldest stamp is newer now) and returns false.
 */
static bool do_evict_if_oldest(mem_shard *v, uint64_t expected)
{
    mem_entry *e = do_oldest(v, NULL);
    if (e == NULL || stamp_of(e) != expected) {
        do_publish_tail(v);
        return false;
    }
    do_evict(v, e);
    return true;
}

/*
 * Removes the globally least recently used entry: the oldest of the shard
 * tails, or, when that shard's lock is held by another thread (a slow
 * atomic_update callback must not stall an unrelated insert), the oldest
 * tail among the shards that are free at that moment. When every shard
 * holding entries is busy, waits for the one with the oldest tail. Returns
 * false when every shard is empty (all room is held by writes in flight).
 * Called with no lock held.
 */
static bool evict_one(mem_backend *mb)
{
    uint64_t busy = 0;
    for (;;) {
        uint64_t oldest;
        int idx = oldest_tail(mb, busy, &oldest);
        mem_shard *v;
        if (idx < 0) {
            if (busy == 0)
                return false;
            busy = 0;
            idx = oldest_tail(mb, 0, &oldest);
            if (idx < 0)
                return false;
            v = &mb->shards[idx];
            shard_lock(v);
        } else {
            v = &mb->shards[idx];
            if (pthread_mutex_trylock(&v->lock) != 0) {
                busy |= (uint64_t)1 << idx;
                continue;
            }
        }
        bool done = do_evict_if_oldest(v, oldest);
        shard_unlock(v);
        if (done)
            return true;
    }
}

/*
 * Takes room with no lock held, evicting until it fits. A thread waiting
 * here holds no room, so the room it waits for is held by entries (which it
 * evicts) or by writes in flight, which never wait for room: they land (or
 * give their room back) soon. False when `bytes` exceeds the byte bound
 * (which another thread may have just lowered).
 */
static bool take_room_blocking(mem_backend *mb, size_t places, size_t bytes)
{
    for (;;) {
        size_t limit = atomic_load_explicit(&mb->max_bytes, memory_order_relaxed);
        if (limit != 0 && bytes > limit)
            return false;
        if (try_take_room(mb, places, bytes))
            return true;
        if (!evict_one(mb))
            sched_yield(); /* all room is held by writes in flight */
    }
}

/*
 * Called with s locked: takes `places` and `bytes`, evicting least recently
 * used entries other than `keep` (the entry about to be replaced). Never
 * blocks on another shard's lock (that could deadlock): a busy shard is
 * skipped. False when no room could be made that way: the caller unlocks
 * and takes the room with take_room_blocking() (spinning here while holding
 * a lock could wait for a thread that waits for this lock).
 */
static bool make_room_locked(mem_backend *mb, mem_shard *s, const mem_entry *keep, size_t places,
                             size_t bytes)
{
    int own = (int)(s - mb->shards);
    uint64_t busy = 0;
    while (!try_take_room(mb, places, bytes)) {
        mem_entry *mine = do_oldest(s, keep);
        uint64_t other;
        int idx = oldest_tail(mb, busy | ((uint64_t)1 << own), &other);
        if (mine != NULL && (idx < 0 || stamp_of(mine) <= other)) {
            do_evict(s, mine);
            continue;
        }
        if (idx < 0)
            return false;
        mem_shard *v = &mb->shards[idx];
        if (pthread_mutex_trylock(&v->lock) != 0) {
            busy |= (uint64_t)1 << idx;
            continue;
        }
        (void)do_evict_if_oldest(v, other);
        shard_unlock(v);
    }
    return true;
}

/* ---- linking ---- */

/* Links a new key's entry in (its room is taken) as the most recently used. */
static void do_insert(mem_shard *s, mem_entry *e, uint64_t hash, uint64_t stamp)
{
    SHARD_ADD(s->count, 1);
    SHARD_ADD(s->bytes, entry_charge(e));
    do_maybe_grow(s);
    mem_table *t = do_table(s);
    mem_link *head = &t->b[hash & t->mask];
    atomic_store_explicit(&e->stamp, stamp, memory_order_relaxed);
    atomic_store_explicit(&e->hnext, link_get(head), memory_order_relaxed);
    atomic_store_explicit(head, e, memory_order_release); /* publishes e's content */
    bool was_empty = s->lru_head == NULL;
    lru_link_before(s, e, s->lru_head);
    if (was_empty)
        do_publish_tail(s);
}

/* Replaces the entry at link `l` by e, which becomes the most recently used. */
static void do_replace(mem_shard *s, mem_link *l, mem_entry *e, uint64_t stamp)
{
    mem_entry *old = link_get(l);
    bool was_tail = s->lru_tail == old;
    atomic_store_explicit(&e->stamp, stamp, memory_order_relaxed);
    atomic_store_explicit(&e->hnext, link_get(&old->hnext), memory_order_relaxed);
    atomic_store_explicit(l, e, memory_order_release);
    lru_unlink(s, old);
    lru_link_before(s, e, s->lru_head);
    SHARD_ADD(s->bytes, entry_charge(e) - entry_charge(old));
    if (was_tail || s->lru_tail == e)
        do_publish_tail(s);
    do_retire(s, old);
}

/* Room a write holds while it is not linked in yet. */
typedef struct {
    size_t places, bytes;
} room;

/*
 * Called with s locked: links `next` for its key, replacing `cur` (the entry
 * now linked for the key, NULL if none), once the room it needs beyond
 * `held` is taken (make_room_locked). On success the room is settled (the
 * excess given back, *held emptied) and true is returned; on failure
 * nothing changed and false is returned.
 */
static bool do_commit(mem_backend *mb, mem_shard *s, const char *key, size_t klen, uint64_t hash,
                      mem_entry *cur, mem_entry *next, uint64_t stamp, room *held)
{
    size_t nb = entry_charge(next), ob = cur != NULL ? entry_charge(cur) : 0;
    size_t want_p = cur != NULL ? 0 : 1;
    size_t want_b = nb > ob ? nb - ob : 0;
    size_t xp = want_p > held->places ? want_p - held->places : 0;
    size_t xb = want_b > held->bytes ? want_b - held->bytes : 0;
    if ((xp > 0 || xb > 0) && !make_room_locked(mb, s, cur, xp, xb))
        return false;
    held->places += xp;
    held->bytes += xb;
    if (cur != NULL) /* found again: an eviction in this shard may have moved its link */
        do_replace(s, do_find_link(s, key, klen, hash), next, stamp);
    else
        do_insert(s, next, hash, stamp);
    give_back(mb, held->places - want_p, held->bytes + ob - nb);
    held->places = held->bytes = 0;
    return true;
}

/* ---- operations ---- */

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

static int too_big(const mem_backend *mb, const char *key, size_t charge)
{
    size_t limit = atomic_load_explicit(&mb->max_bytes, memory_order_relaxed);
    if (limit != 0 && charge > limit)
        return nori__fail(NORI_ETOOBIG,
                          "the entry for key '%.64s' counts %zu bytes, the memory backend's byte "
                          "bound (CACHE_MAX_BYTES) is %zu",
                          key, charge, limit);
    return NORI_OK;
}

/* Finds a live entry under the lock; an expired one is removed on the way.
 * Returns the link (so the caller can replace or remove) or NULL. */
static mem_link *do_lookup(mem_shard *s, const char *key, size_t klen, uint64_t hash, int64_t now)
{
    mem_link *l = do_find_link(s, key, klen, hash);
    mem_entry *e = link_get(l);
    if (e == NULL)
        return NULL;
    if (is_expired(e, now)) {
        SHARD_ADD(s->expired, 1);
        do_remove(s, l);
        return NULL;
    }
    return l;
}

/*
 * The read path of get and get_into: finds the live entry for `key` without
 * a lock and hands it to `copy`; a successful copy counts a hit and records
 * the access in the entry. An expired entry, a miss during a table growth,
 * or no epoch slot send the lookup to the lock.
 */
typedef int (*copy_fn)(const mem_entry *e, const char *key, void *ctx);

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
    mem_stripe *st = stripe_of(mb);
    if (nori__epoch_enter()) {
        unsigned seq = atomic_load_explicit(&s->resize_seq, memory_order_acquire);
        mem_entry *e = find_lockfree(s, key, klen, hash);
        bool sure = e != NULL;
        if (e == NULL && (seq & 1) == 0) /* loads after the walk's acquire loads */
            sure = atomic_load_explicit(&s->resize_seq, memory_order_relaxed) == seq;
        if (sure && (e == NULL || !is_expired(e, now))) {
            if (e == NULL) {
                nori__epoch_exit();
                atomic_fetch_add_explicit(&st->misses, 1, memory_order_relaxed);
                return NORI_MISS;
            }
            rc = copy(e, key, ctx);
            if (rc == NORI_OK) {
                atomic_store_explicit(&e->stamp, stamp, memory_order_relaxed);
                if (!atomic_load_explicit(&e->touched, memory_order_relaxed))
                    atomic_store_explicit(&e->touched, 1, memory_order_relaxed);
                atomic_fetch_add_explicit(&st->hits, 1, memory_order_relaxed);
            }
            nori__epoch_exit();
            return rc;
        }
        nori__epoch_exit();
    }
    /* The locked path: removes an expired entry, or settles a miss that a
     * concurrent table growth made uncertain. */
    shard_lock(s);
    mem_link *l = do_lookup(s, key, klen, hash, now);
    if (l == NULL) {
        shard_unlock(s);
        atomic_fetch_add_explicit(&st->misses, 1, memory_order_relaxed);
        return NORI_MISS;
    }
    mem_entry *e = link_get(l);
    rc = copy(e, key, ctx);
    if (rc == NORI_OK) {
        atomic_store_explicit(&e->stamp, stamp, memory_order_relaxed);
        atomic_store_explicit(&e->touched, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&st->hits, 1, memory_order_relaxed);
    }
    shard_unlock(s);
    return rc;
}

static int copy_to_new_buf(const mem_entry *e, const char *key, void *ctx)
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

static int copy_to_callers_buf(const mem_entry *e, const char *key, void *ctx)
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

/*
 * Links `e` (a complete new entry for its key), replacing any entry of the
 * key, expired or not. The entry is allocated and filled before the lock is
 * taken; the critical section only makes room and links. When room cannot
 * be made under the lock without waiting for a busy shard, the lock is let
 * go, the room taken with no lock held, and the link tried again.
 */
static int store_entry(mem_backend *mb, mem_shard *s, mem_entry *e, uint64_t hash, uint64_t stamp)
{
    const char *key = entry_key(e);
    size_t klen = entry_klen(e);
    room held = {0, 0};
    for (;;) {
        shard_lock(s);
        mem_entry *cur = link_get(do_find_link(s, key, klen, hash));
        bool done = do_commit(mb, s, key, klen, hash, cur, e, stamp, &held);
        shard_unlock(s);
        if (done)
            return NORI_OK;
        give_back(mb, held.places, held.bytes);
        held.places = 1;
        held.bytes = entry_charge(e);
        if (!take_room_blocking(mb, held.places, held.bytes)) {
            int rc = too_big(mb, key, entry_charge(e));
            entry_free(e);
            return rc;
        }
    }
}

static int mem_set(nori_backend *b, const char *key, size_t klen, const void *val, size_t len,
                   int64_t ttl)
{
    mem_backend *mb = (mem_backend *)b;
    int rc = refuse_reentry(mb, "set");
    if (rc == NORI_OK)
        rc = too_big(mb, key, nori_memory_entry_bytes(klen, len, ttl > 0));
    if (rc != NORI_OK)
        return rc;
    uint64_t hash = hash_key(mb->seed, key, klen);
    int64_t now = nori__now_ms();
    mem_entry *e = entry_new(key, klen, val, len, expiry_from_ttl(ttl, now));
    if (e == NULL)
        return NORI_ENOMEM;
    return store_entry(mb, shard_of(mb, hash), e, hash, next_stamp(now));
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
    mem_link *l = do_find_link(s, key, klen, hash);
    if (link_get(l) != NULL)
        do_remove(s, l);
    shard_unlock(s);
    return NORI_OK;
}

/* Removes the shard's entries whose key starts with prefix (every entry
 * when plen is 0). Called with the shard's lock held. */
static void do_delete_prefix(mem_shard *s, const char *prefix, size_t plen)
{
    mem_table *t = do_table(s);
    for (size_t i = 0; i <= t->mask; i++) {
        mem_link *l = &t->b[i];
        mem_entry *e;
        while ((e = link_get(l)) != NULL) {
            if (entry_klen(e) >= plen && memcmp(entry_key(e), prefix, plen) == 0)
                do_remove(s, l); /* *l is now the next entry of the chain */
            else
                l = &e->hnext;
        }
    }
}

static int mem_delete_prefix(nori_backend *b, const char *prefix, size_t plen)
{
    mem_backend *mb = (mem_backend *)b;
    int rc = refuse_reentry(mb, plen == 0 ? "flush" : "delete_prefix");
    if (rc != NORI_OK)
        return rc;
    for (int i = 0; i < NSHARDS; i++) {
        shard_lock(&mb->shards[i]);
        do_delete_prefix(&mb->shards[i], prefix, plen);
        nori__mem_do_reclaim(&mb->shards[i]);
        shard_unlock(&mb->shards[i]);
    }
    return NORI_OK;
}

size_t nori__mem_do_sweep_chunk(mem_shard *s, size_t nbuckets, int64_t now, size_t *examined,
                                size_t *freed)
{
    size_t removed = 0;
    mem_table *t = do_table(s);
    if (nbuckets > t->mask + 1)
        nbuckets = t->mask + 1;
    for (size_t i = 0; i < nbuckets; i++) {
        mem_link *l = &t->b[s->sweep_cursor++ & t->mask];
        mem_entry *e;
        while ((e = link_get(l)) != NULL) {
            (*examined)++;
            if (is_expired(e, now)) {
                *freed += entry_charge(e);
                SHARD_ADD(s->expired, 1);
                do_remove(s, l);
                removed++;
            } else {
                l = &e->hnext;
            }
        }
    }
    if (removed > 0)
        nori__mem_do_reclaim(s);
    return removed;
}

/*
 * The read-decide-write core of incr and atomic_update. `decide` sees the
 * live entry (or NULL) under the shard lock and builds the new entry, or
 * returns an error to write nothing. A new key takes its place before
 * `decide` runs, so that the callback of atomic_update runs exactly once;
 * the bytes are taken after it (the size is known only then). incr, which
 * has no callback, may decide again after waiting for room; atomic_update
 * instead waits (bounded) under the lock for a busy shard, and when none
 * frees up returns NORI_ENOMEM with nothing written.
 */
typedef int (*decide_fn)(const mem_entry *current, mem_entry **next, void *ctx);

/*
 * atomic_update's way out when room cannot be made under the lock (every
 * other shard with entries busy): its callback has run and must not run
 * again, so the decided entry is kept, the lock let go, the room taken with
 * no lock held, and the entry linked if the key still has the same entry
 * (`cur`, or still none). An epoch read section across the wait keeps `cur`
 * from being freed and its address reused, so "same pointer" means "same
 * entry". If the key changed meanwhile, nothing is written: NORI_ENOMEM.
 * Called with s locked; returns with it unlocked.
 */
static int commit_after_wait(mem_backend *mb, mem_shard *s, const char *key, size_t klen,
                             uint64_t hash, mem_entry *cur, mem_entry *next, uint64_t stamp,
                             room *held)
{
    bool pinned = nori__epoch_enter();
    shard_unlock(s);
    give_back(mb, held->places, held->bytes);
    held->places = held->bytes = 0;
    size_t nb = entry_charge(next);
    int rc = NORI_OK;
    if (!pinned)
        rc = nori__fail(NORI_ENOMEM, "atomic_update '%.64s': out of memory", key);
    else if (!take_room_blocking(mb, 1, nb))
        rc = too_big(mb, key, nb);
    if (rc == NORI_OK) {
        held->places = 1;
        held->bytes = nb;
        shard_lock(s);
        if (link_get(do_find_link(s, key, klen, hash)) == cur &&
            do_commit(mb, s, key, klen, hash, cur, next, stamp, held))
            next = NULL;
        else
            rc = nori__fail(NORI_ENOMEM,
                            "atomic_update '%.64s': the key changed while the write waited for "
                            "room under the byte bound; nothing written",
                            key);
        shard_unlock(s);
    }
    if (pinned)
        nori__epoch_exit();
    entry_free(next);
    give_back(mb, held->places, held->bytes);
    return rc;
}

static int read_decide_write(mem_backend *mb, const char *key, size_t klen, uint64_t hash,
                             int64_t now, decide_fn decide, void *ctx, bool may_decide_again)
{
    mem_shard *s = shard_of(mb, hash);
    uint64_t stamp = next_stamp(now);
    room held = {0, 0};
    for (;;) {
        shard_lock(s);
        mem_link *l = do_lookup(s, key, klen, hash, now);
        mem_entry *cur = l != NULL ? link_get(l) : NULL;
        if (cur == NULL && held.places == 0) {
            if (!make_room_locked(mb, s, NULL, 1, 0)) {
                shard_unlock(s);
                take_room_blocking(mb, 1, 0); /* a place alone always comes */
                held.places = 1;
                continue;
            }
            held.places = 1;
        }
        mem_entry *next = NULL;
        int rc = decide(cur, &next, ctx);
        if (rc == NORI_OK)
            rc = too_big(mb, key, entry_charge(next));
        if (rc != NORI_OK) {
            shard_unlock(s);
            entry_free(next);
            give_back(mb, held.places, held.bytes);
            return rc;
        }
        size_t nb = entry_charge(next);
        bool done = do_commit(mb, s, key, klen, hash, cur, next, stamp, &held);
        if (!done && !may_decide_again)
            return commit_after_wait(mb, s, key, klen, hash, cur, next, stamp, &held);
        shard_unlock(s);
        if (done)
            return NORI_OK;
        entry_free(next);
        give_back(mb, held.places, held.bytes);
        held.places = held.bytes = 0;
        if (!take_room_blocking(mb, 1, nb))
            return too_big(mb, key, nb);
        held.places = 1;
        held.bytes = nb;
    }
}

typedef struct {
    const char *key;
    size_t klen;
    int64_t ttl, now;
    int64_t value; /* out */
} incr_ctx;

static int decide_incr(const mem_entry *cur, mem_entry **next, void *ctx)
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
    incr_ctx c = {key, klen, ttl, nori__now_ms(), 0};
    rc = read_decide_write(mb, key, klen, hash_key(mb->seed, key, klen), c.now, decide_incr, &c,
                           true);
    if (rc == NORI_OK)
        *out = c.value;
    return rc;
}

typedef struct {
    const mem_backend *mb;
    const char *key;
    size_t klen;
    int64_t ttl, now;
    nori_update_fn fn;
    void *ud;
    nori_buf *out;
} update_ctx;

static int decide_update(const mem_entry *cur, mem_entry **next_entry, void *ctx)
{
    update_ctx *c = ctx;
    nori_buf current = {0}, next = {0};
    if (cur != NULL) {
        current.data = (char *)entry_value(cur);
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
            entry_free(*next_entry);
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
    update_ctx c = {mb, key, klen, ttl, nori__now_ms(), fn, ud, out};
    rc = read_decide_write(mb, key, klen, hash_key(mb->seed, key, klen), c.now, decide_update, &c,
                           false);
    if (rc != NORI_OK && out != NULL)
        nori_buf_free(out); /* written before a failure to make room */
    return rc;
}


/* ---- leases: add (set if absent) and delete_if_equal ---- */

typedef struct {
    const char *key;
    size_t klen;
    const void *val;
    size_t len;
    int64_t expires_ms;
} add_ctx;

static int decide_add(const mem_entry *cur, mem_entry **next, void *ctx)
{
    add_ctx *c = ctx;
    if (cur != NULL)
        return NORI_EABORT; /* present: nothing written */
    *next = entry_new(c->key, c->klen, c->val, c->len, c->expires_ms);
    return *next != NULL ? NORI_OK : NORI_ENOMEM;
}

static int mem_add(nori_backend *b, const char *key, size_t klen, const void *val, size_t len,
                   int64_t ttl_ms, int *added)
{
    mem_backend *mb = (mem_backend *)b;
    int rc = refuse_reentry(mb, "add");
    if (rc != NORI_OK)
        return rc;
    int64_t now = nori__now_ms();
    add_ctx c = {key, klen, val, len, now + ttl_ms};
    rc = read_decide_write(mb, key, klen, hash_key(mb->seed, key, klen), now, decide_add, &c,
                           true);
    *added = rc == NORI_OK;
    return rc == NORI_EABORT ? NORI_OK : rc;
}

static int mem_delete_if_equal(nori_backend *b, const char *key, size_t klen, const void *val,
                               size_t len, int *deleted)
{
    mem_backend *mb = (mem_backend *)b;
    int rc = refuse_reentry(mb, "delete_if_equal");
    if (rc != NORI_OK)
        return rc;
    uint64_t hash = hash_key(mb->seed, key, klen);
    mem_shard *s = shard_of(mb, hash);
    shard_lock(s);
    mem_link *l = do_lookup(s, key, klen, hash, nori__now_ms());
    mem_entry *e = l != NULL ? link_get(l) : NULL;
    bool equal = e != NULL && e->vlen == len && memcmp(entry_value(e), val, len) == 0;
    if (equal)
        do_remove(s, l);
    shard_unlock(s);
    *deleted = equal;
    return NORI_OK;
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
        out->evictions += atomic_load_explicit(&s->evictions, memory_order_relaxed);
        out->expired += atomic_load_explicit(&s->expired, memory_order_relaxed);
        out->entries += atomic_load_explicit(&s->count, memory_order_relaxed);
        out->bytes += atomic_load_explicit(&s->bytes, memory_order_relaxed);
    }
    for (int i = 0; i < NSTRIPES; i++) {
        out->hits += atomic_load_explicit(&mb->stripes[i].hits, memory_order_relaxed);
        out->misses += atomic_load_explicit(&mb->stripes[i].misses, memory_order_relaxed);
    }
    out->max_bytes = atomic_load_explicit(&mb->max_bytes, memory_order_relaxed);
}

/* Frees every entry, retired or linked, of a shard nobody uses any more. */
static void free_shard(mem_shard *s)
{
    mem_entry *e = s->lru_head;
    while (e != NULL) {
        mem_entry *next = e->lru_next;
        entry_free(e);
        e = next;
    }
    e = s->limbo;
    while (e != NULL) {
        mem_entry *next = e->lru_next;
        entry_free(e);
        e = next;
    }
    mem_table *t = s->retired_tables;
    while (t != NULL) {
        mem_table *next = t->retired;
        free(t);
        t = next;
    }
    free(do_table(s));
    pthread_mutex_destroy(&s->lock);
}

static void mem_destroy(nori_backend *b)
{
    mem_backend *mb = (mem_backend *)b;
    nori__mem_sweeper_stop(mb);
    for (int i = 0; i < NSHARDS; i++)
        free_shard(&mb->shards[i]);
    free(mb);
}

static const nori_backend_ops memory_ops = {
    .kind = "memory",
    .get = mem_get,
    .get_into = mem_get_into,
    .set = mem_set,
    .del = mem_del,
    .delete_prefix = mem_delete_prefix,
    .add = mem_add,
    .delete_if_equal = mem_delete_if_equal,
    .incr = mem_incr,
    .atomic_update = mem_atomic_update,
    .verify = mem_verify,
    .stats = mem_stats,
    .destroy = mem_destroy,
};

static mem_backend *as_memory(nori_backend *b)
{
    return b != NULL && b->ops == &memory_ops ? (mem_backend *)b : NULL;
}

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

int nori__memory_backend_new_opts(size_t max_keys, bool sweeper, nori_backend **out)
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
    mb->max_keys = max_keys;
    mb->seed = random_seed();
    atomic_init(&mb->max_bytes, NORI_DEFAULT_MAX_BYTES);
    atomic_init(&mb->places, 0);
    atomic_init(&mb->bytes, 0);
    int made = 0;
    for (; made < NSHARDS; made++) {
        mem_shard *s = &mb->shards[made];
        mem_table *t = table_new(INITIAL_BUCKETS);
        if (t == NULL)
            break;
        atomic_init(&s->table, t);
        atomic_init(&s->resize_seq, 0);
        s->mb = mb;
        s->tail_stamp = &mb->tail_stamps[made];
        atomic_init(s->tail_stamp, EMPTY_STAMP);
        pthread_mutex_init(&s->lock, NULL);
    }
    nori__backend_init(&mb->base, &memory_ops);
    if (made < NSHARDS || (sweeper && nori__mem_sweeper_start(mb) != NORI_OK)) {
        for (int j = 0; j < made; j++)
            free_shard(&mb->shards[j]);
        free(mb);
        return nori__fail(NORI_ENOMEM, "out of memory creating a memory backend");
    }
    *out = &mb->base;
    return NORI_OK;
}

int nori_memory_backend_new(size_t max_keys, nori_backend **out)
{
    return nori__memory_backend_new_opts(max_keys, true, out);
}

int nori_memory_backend_set_max_bytes(nori_backend *b, size_t max_bytes)
{
    mem_backend *mb = as_memory(b);
    if (mb == NULL)
        return nori__fail(NORI_EINVAL, "set_max_bytes: the backend is %s, not a memory backend",
                          nori_backend_kind(b));
    int rc = refuse_reentry(mb, "set_max_bytes");
    if (rc != NORI_OK)
        return rc;
    atomic_store_explicit(&mb->max_bytes, max_bytes, memory_order_relaxed);
    /* A lower bound takes effect now: evict down to it. */
    while (max_bytes != 0 && atomic_load_explicit(&mb->bytes, memory_order_relaxed) > max_bytes &&
           evict_one(mb))
        ;
    return NORI_OK;
}

size_t nori_memory_backend_max_bytes(const nori_backend *b)
{
    if (b == NULL || b->ops != &memory_ops)
        return 0;
    return atomic_load_explicit(&((const mem_backend *)b)->max_bytes, memory_order_relaxed);
}

/* ---- checks (tests) ---- */

static bool do_audit_shard(mem_shard *s, size_t *bytes)
{
    size_t count = atomic_load_explicit(&s->count, memory_order_relaxed);
    size_t listed = 0, charged = 0;
    const mem_entry *prev = NULL;
    for (const mem_entry *e = s->lru_head; e != NULL; e = e->lru_next) {
        if (e->lru_prev != prev || ++listed > count)
            return false;
        charged += entry_charge(e);
        prev = e;
    }
    if (prev != s->lru_tail || listed != count ||
        charged != atomic_load_explicit(&s->bytes, memory_order_relaxed))
        return false;
    size_t hashed = 0;
    mem_table *t = do_table(s);
    for (size_t i = 0; i <= t->mask; i++)
        for (mem_entry *e = link_get(&t->b[i]); e != NULL; e = link_get(&e->hnext))
            if ((entry_hash(s->mb, e) & t->mask) != i || ++hashed > count)
                return false;
    /* (Stamps taken by different threads are not ordered with their
     * inserts, so the published stamp is only checked for emptiness.) */
    uint64_t published = atomic_load_explicit(s->tail_stamp, memory_order_relaxed);
    if ((count == 0) != (published == EMPTY_STAMP))
        return false;
    *bytes += charged;
    return hashed == count;
}

int64_t nori__memory_audit_bytes(nori_backend *b, size_t *bytes)
{
    mem_backend *mb = as_memory(b);
    if (mb == NULL)
        return -1;
    for (int i = 0; i < NSHARDS; i++)
        shard_lock(&mb->shards[i]);
    int64_t total = 0;
    size_t held = 0;
    bool ok = true;
    for (int i = 0; i < NSHARDS; i++) {
        ok = ok && do_audit_shard(&mb->shards[i], &held);
        total += (int64_t)atomic_load_explicit(&mb->shards[i].count, memory_order_relaxed);
    }
    /* The global counters include the room of writes in flight. */
    ok = ok && atomic_load_explicit(&mb->places, memory_order_relaxed) >= (size_t)total &&
         atomic_load_explicit(&mb->bytes, memory_order_relaxed) >= held;
    for (int i = NSHARDS - 1; i >= 0; i--)
        shard_unlock(&mb->shards[i]);
    if (bytes != NULL)
        *bytes = held;
    return ok ? total : -1;
}

int64_t nori__memory_audit(nori_backend *b)
{
    return nori__memory_audit_bytes(b, NULL);
}

int nori__memory_shard_index(nori_backend *b, const char *key)
{
    mem_backend *mb = as_memory(b);
    if (mb == NULL)
        return -1;
    return (int)(shard_of(mb, hash_key(mb->seed, key, strlen(key))) - mb->shards);
}

size_t nori__memory_block_size(nori_backend *b, const char *key)
{
    mem_backend *mb = as_memory(b);
    if (mb == NULL)
        return 0;
    size_t klen = strlen(key);
    uint64_t hash = hash_key(mb->seed, key, klen);
    mem_shard *s = shard_of(mb, hash);
    shard_lock(s);
    mem_entry *e = link_get(do_find_link(s, key, klen, hash));
    size_t size = e == NULL ? 0
                  : (e->kflags & MAPPED) ? page_round(entry_size(entry_klen(e), e->vlen,
                                                                 entry_has_expiry(e)))
                                         : malloc_usable_size(e);
    shard_unlock(s);
    return size;
}

size_t nori__memory_sweep_now(nori_backend *b)
{
    mem_backend *mb = as_memory(b);
    return mb != NULL ? nori__mem_sweep_cycle(mb, INT64_MAX / 2, true) : 0;
}
