// SPDX-License-Identifier: MIT
/*
 * The in-process memory backend: an LRU cache bounded in entries and in
 * bytes, split into shards, each an open-addressing hash table of tagged
 * slots plus an intrusive doubly-linked recency list. Writers take the shard's lock; readers take
 * no lock, and the only shared memory a read writes is the stamp of the
 * entry it read (see docs/BENCHMARKS.md for what that still costs).
 *
 * Why this shape:
 *  - One allocation per entry (header, key and value together) keeps a lookup
 *    to one pointer chase after the bucket, and the per-entry overhead small.
 *    The bucket is one cache line of seven tagged slots (internal.h,
 *    mem_bucket): a lookup touches no entry but the one it looks for (and,
 *    1 time in 255 per other occupied slot, one whose tag matches by chance).
 *  - Reads are lock-free: a get probes the buckets with acquire loads
 *    inside an epoch read section (epoch.c), copies the value, and records
 *    the access in the entry (`stamp`, and a TOUCHED flag). Entries are
 *    immutable once linked, so the copy needs no lock; an unlinked entry is
 *    freed only when no reader can still hold it. A read that finds an
 *    expired entry takes the lock to remove it (lazy expiry).
 *  - Exact LRU with lazy list updates: a read does not move the entry in the
 *    list (that would write the neighbours and the list head, the shared
 *    lines that made two threads slower than one). Before an eviction picks
 *    the shard's tail, the writer moves every touched entry it meets at the
 *    tail to its place by stamp (table.c, nori__mem_do_oldest()). Invariant:
 *    every entry in front of an untouched entry u has a stamp >= u's, so once
 *    the tail is untouched it holds the oldest stamp of the shard. Each
 *    shard publishes that stamp, so the evicting thread finds the globally
 *    oldest entry without taking every lock; a touch only raises a shard's
 *    true minimum, so a published stamp is never newer than it.
 *  - Both bounds are exact: room (a place, and bytes) is taken by compare-
 *    and-swap only while it is below the bound, before an entry is linked;
 *    a write that finds no room evicts first. A thread that waits for room
 *    holds none, so threads holding room never wait for room: progress for
 *    any thread count and any max_keys >= 1.
 *  - Bytes counted per entry (entry_charge()): the header, key, value and
 *    expiry, rounded up to the allocator's size class, plus 16 bytes for the
 *    allocator's chunk header and the entry's share of the bucket array.
 *  - Expiry: lazy on access, plus the sweeper thread (sweeper.c) that
 *    removes expired entries with a time budget, without any call.
 *  - The hash is seeded per backend from getrandom(), so keys chosen by an
 *    attacker (HTTP paths end up in keys) cannot be made to collide in advance.
 *
 * Files: store.c (this: the operations, creation), table.c (hash table,
 * recency list, reclamation), evict.c (the two bounds and eviction),
 * entry.c (allocation), epoch.c (safe memory reclamation for the lock-free
 * reads, and the lock marks fork() waits on), fork.c (fork()), sweeper.c
 * (active expiry), checks.c (the checks for tests); internal.h holds the
 * types and the inline accessors the read path uses.
 *
 * What holds under concurrency: both bounds, at every moment; no livelock
 * (a thread waiting for room holds none, so some write always completes);
 * a get returns the value the key had at some instant during the call;
 * "the victim is the entry with the oldest stamp" at the moment it is
 * chosen, among the shards whose lock is free (trylock;
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The last stamp this thread handed out. */
static MEM_THREAD_LOCAL uint64_t last_stamp;

/*
 * Hit and miss counters: one stripe per thread (by its epoch slot number),
 * so a read writes only a line of its own. A thread whose slot number is
 * below NSTRIPES owns its stripe (no other thread holds that slot) and adds
 * with a plain load and store. Every other thread (more than NSTRIPES
 * threads reading, or an exiting thread between its read sections) adds
 * atomically to the one shared stripe: never to an owned one, where the
 * owner's plain store would overwrite its addition.
 */
static inline void count_read(mem_backend *mb, bool hit)
{
    unsigned i = nori__epoch_slot_index();
    mem_stripe *st = &mb->stripes[i < NSTRIPES ? i : NSTRIPES];
    _Atomic uint64_t *c = hit ? &st->hits : &st->misses;
    if (i < NSTRIPES)
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    else
        atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
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

/* ---- operations ---- */

static int refuse_reentry(const mem_backend *mb, const char *op)
{
    for (const callback_frame *f = nori__mem_active_callbacks; f != NULL; f = f->outer)
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
    mem_link *l = nori__mem_do_find_link(s, key, klen, hash);
    if (l == NULL)
        return NULL;
    mem_entry *e = link_get(l);
    if (is_expired(e, now)) {
        SHARD_ADD(s->expired, 1);
        nori__mem_do_remove(s, l);
        return NULL;
    }
    return l;
}

/*
 * The read path of get and get_into: finds the live entry for `key` without
 * a lock and hands it to `copy`; a successful copy counts a hit and records
 * the access in the entry. An expired entry, or no epoch slot, sends the
 * lookup to the lock. The key is hashed once; the table is read as
 * internal.h describes (a table replaced meanwhile is read as it was when
 * loaded, so a miss on it is a miss at that instant).
 */
typedef int (*copy_fn)(const char *value, size_t vlen, const char *key, void *ctx);

/* Inlined into each caller, so that `copy` is a direct call (inlined too). */
static inline __attribute__((always_inline)) int read_entry(mem_backend *mb, const char *op,
                                                            const char *key, size_t klen,
                                                            copy_fn copy, void *ctx)
{
    int rc = refuse_reentry(mb, op);
    if (rc != NORI_OK)
        return rc;
    uint64_t hash = nori__hash_key(mb->seed, key, klen);
    mem_shard *s = shard_of(mb, hash);
    prefetch_bucket(s, hash);
    int64_t now;
    if (nori__epoch_enter()) {
        mem_link *l;
        unsigned f;
        /* seq_cst: see table_lookup() */
        mem_entry *e = table_lookup(atomic_load_explicit(&s->table, memory_order_seq_cst), key,
                                    klen, hash, &l, &f);
        if (e == NULL) {
            nori__epoch_exit();
            count_read(mb, false);
            return NORI_MISS;
        }
        /* The clock is read once the lookup's loads are issued, so that it
         * runs while they wait for memory. */
        now = nori__now_coarse_ms();
        if (!expired_at(e, f, now)) {
            rc = copy(value_at(e, f), e->vlen, key, ctx);
            if (rc == NORI_OK) {
                atomic_store_explicit(&e->stamp, next_stamp(now), memory_order_relaxed);
                if (!(f & TOUCHED))
                    set_touched(e, true);
                count_read(mb, true);
            }
            nori__epoch_exit();
            return rc;
        }
        nori__epoch_exit();
    } else {
        now = nori__now_coarse_ms();
    }
    /* The locked path: removes an expired entry. */
    shard_lock(s);
    mem_link *l = do_lookup(s, key, klen, hash, now);
    if (l == NULL) {
        shard_unlock(s);
        count_read(mb, false);
        return NORI_MISS;
    }
    mem_entry *e = link_get(l);
    rc = copy(entry_value(e), e->vlen, key, ctx);
    if (rc == NORI_OK) {
        atomic_store_explicit(&e->stamp, next_stamp(now), memory_order_relaxed);
        set_touched(e, true);
        count_read(mb, true);
    }
    shard_unlock(s);
    return rc;
}

static int copy_to_new_buf(const char *value, size_t vlen, const char *key, void *ctx)
{
    nori_buf *out = ctx;
    char *copy = malloc(vlen + 1);
    if (copy == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory copying the value of '%.64s'", key);
    memcpy(copy, value, vlen + 1);
    out->data = copy;
    out->len = vlen;
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

static int copy_to_callers_buf(const char *value, size_t vlen, const char *key, void *ctx)
{
    into_ctx *c = ctx;
    *c->len = vlen;
    if (vlen > c->cap)
        return nori__fail(NORI_ETOOBIG, "get_into '%.64s': the value is %zu bytes, the buffer "
                                        "holds %zu", key, vlen, c->cap);
    if (vlen > 0) /* buf may be NULL when cap is 0: memcpy(NULL, .., 0) is undefined */
        memcpy(c->buf, value, vlen);
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

/* The entry for `key` held by the table, expired or not, or NULL. */
static mem_entry *do_find(mem_shard *s, const char *key, size_t klen, uint64_t hash)
{
    mem_link *l = nori__mem_do_find_link(s, key, klen, hash);
    return l != NULL ? link_get(l) : NULL;
}

/* A new key takes a slot of its shard's table: reserved (the table grown
 * if need be) before any room is made, under the same lock hold as the
 * insert, so that nothing is evicted for a write that then fails. */
static int do_reserve_slot(mem_shard *s, const char *key)
{
    if (nori__mem_do_reserve(s))
        return NORI_OK;
    return nori__fail(NORI_ENOMEM, "out of memory growing the memory backend's hash table for "
                                   "key '%.64s'", key);
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
        mem_entry *cur = do_find(s, key, klen, hash);
        int rc = cur == NULL ? do_reserve_slot(s, key) : NORI_OK;
        if (rc != NORI_OK) {
            shard_unlock(s);
            nori__mem_give_back(mb, held.places, held.bytes);
            nori__mem_entry_free(mb, e);
            return rc;
        }
        bool done = nori__mem_do_commit(mb, s, key, klen, hash, cur, e, stamp, &held);
        shard_unlock(s);
        if (done)
            return NORI_OK;
        nori__mem_give_back(mb, held.places, held.bytes);
        held.places = 1;
        held.bytes = entry_charge(e);
        if (!nori__mem_take_room_blocking(mb, held.places, held.bytes)) {
            rc = too_big(mb, key, entry_charge(e));
            nori__mem_entry_free(mb, e);
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
    uint64_t hash = nori__hash_key(mb->seed, key, klen);
    int64_t now = nori__now_ms();
    mem_entry *e = nori__mem_entry_new(mb, key, klen, val, len, expiry_from_ttl(ttl, now));
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
    uint64_t hash = nori__hash_key(mb->seed, key, klen);
    mem_shard *s = shard_of(mb, hash);
    shard_lock(s);
    mem_link *l = nori__mem_do_find_link(s, key, klen, hash);
    if (l != NULL)
        nori__mem_do_remove(s, l);
    shard_unlock(s);
    return NORI_OK;
}

static int mem_delete_prefix(nori_backend *b, const char *prefix, size_t plen)
{
    mem_backend *mb = (mem_backend *)b;
    int rc = refuse_reentry(mb, plen == 0 ? "flush" : "delete_prefix");
    if (rc != NORI_OK)
        return rc;
    for (int i = 0; i < NSHARDS; i++) {
        shard_lock(&mb->shards[i]);
        nori__mem_do_delete_prefix(&mb->shards[i], prefix, plen);
        nori__mem_do_reclaim(&mb->shards[i]);
        shard_unlock(&mb->shards[i]);
    }
    return NORI_OK;
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
    nori__mem_give_back(mb, held->places, held->bytes);
    held->places = held->bytes = 0;
    size_t nb = entry_charge(next);
    int rc = NORI_OK;
    if (!pinned)
        rc = nori__fail(NORI_ENOMEM, "atomic_update '%.64s': out of memory", key);
    else if (!nori__mem_take_room_blocking(mb, 1, nb))
        rc = too_big(mb, key, nb);
    if (rc == NORI_OK) {
        held->places = 1;
        held->bytes = nb;
        shard_lock(s);
        bool same = do_find(s, key, klen, hash) == cur;
        if (same && cur == NULL)
            rc = do_reserve_slot(s, key);
        if (rc == NORI_OK && same &&
            nori__mem_do_commit(mb, s, key, klen, hash, cur, next, stamp, held))
            next = NULL;
        else if (rc == NORI_OK)
            rc = nori__fail(NORI_ENOMEM,
                            "atomic_update '%.64s': the key changed while the write waited for "
                            "room under the byte bound; nothing written",
                            key);
        shard_unlock(s);
    }
    if (pinned)
        nori__epoch_exit();
    nori__mem_entry_free(mb, next);
    nori__mem_give_back(mb, held->places, held->bytes);
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
        int reserved = cur == NULL ? do_reserve_slot(s, key) : NORI_OK;
        if (reserved != NORI_OK) {
            shard_unlock(s);
            nori__mem_give_back(mb, held.places, held.bytes);
            return reserved;
        }
        if (cur == NULL && held.places == 0) {
            if (!nori__mem_make_room_locked(mb, s, NULL, 1, 0)) {
                shard_unlock(s);
                nori__mem_take_room_blocking(mb, 1, 0); /* a place alone always comes */
                held.places = 1;
                continue;
            }
            held.places = 1;
        }
        mem_entry *next = NULL;
        callback_frame frame = {mb, &held, nori__mem_active_callbacks};
        nori__mem_active_callbacks = &frame;
        int rc = decide(cur, &next, ctx);
        nori__mem_active_callbacks = frame.outer; /* restore, never clear: callbacks nest */
        if (rc == NORI_OK)
            rc = too_big(mb, key, entry_charge(next));
        if (rc != NORI_OK) {
            shard_unlock(s);
            nori__mem_entry_free(mb, next);
            nori__mem_give_back(mb, held.places, held.bytes);
            return rc;
        }
        size_t nb = entry_charge(next);
        bool done = nori__mem_do_commit(mb, s, key, klen, hash, cur, next, stamp, &held);
        if (!done && !may_decide_again)
            return commit_after_wait(mb, s, key, klen, hash, cur, next, stamp, &held);
        shard_unlock(s);
        if (done)
            return NORI_OK;
        nori__mem_entry_free(mb, next);
        nori__mem_give_back(mb, held.places, held.bytes);
        held.places = held.bytes = 0;
        if (!nori__mem_take_room_blocking(mb, 1, nb))
            return too_big(mb, key, nb);
        held.places = 1;
        held.bytes = nb;
    }
}

typedef struct {
    mem_backend *mb;
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
    *next = nori__mem_entry_new(c->mb, c->key, c->klen, text, (size_t)n, expires_ms);
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
    incr_ctx c = {mb, key, klen, ttl, nori__now_ms(), 0};
    rc = read_decide_write(mb, key, klen, nori__hash_key(mb->seed, key, klen), c.now, decide_incr, &c,
                           true);
    if (rc == NORI_OK)
        *out = c.value;
    return rc;
}

typedef struct {
    mem_backend *mb;
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
    int declined = c->fn(cur != NULL ? &current : NULL, &next, c->ud);
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
        *next_entry = nori__mem_entry_new(c->mb, c->key, c->klen, next.data, next.len, expires_ms);
        if (*next_entry == NULL)
            rc = NORI_ENOMEM;
    }
    /* The caller's copy is made before anything is written, so that its
     * failure writes nothing. */
    if (rc == NORI_OK && c->out != NULL) {
        rc = nori__adopt_buf(&next, c->out);
        if (rc != NORI_OK) {
            nori__mem_entry_free(c->mb, *next_entry);
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
    rc = read_decide_write(mb, key, klen, nori__hash_key(mb->seed, key, klen), c.now, decide_update, &c,
                           false);
    if (rc != NORI_OK && out != NULL)
        nori_buf_free(out); /* written before a failure to make room */
    return rc;
}

/* ---- leases: add (set if absent) and delete_if_equal ---- */

typedef struct {
    mem_backend *mb;
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
    *next = nori__mem_entry_new(c->mb, c->key, c->klen, c->val, c->len, c->expires_ms);
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
    add_ctx c = {mb, key, klen, val, len, now + ttl_ms};
    rc = read_decide_write(mb, key, klen, nori__hash_key(mb->seed, key, klen), now, decide_add, &c,
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
    uint64_t hash = nori__hash_key(mb->seed, key, klen);
    mem_shard *s = shard_of(mb, hash);
    shard_lock(s);
    mem_link *l = do_lookup(s, key, klen, hash, nori__now_ms());
    mem_entry *e = l != NULL ? link_get(l) : NULL;
    bool equal = e != NULL && e->vlen == len && memcmp(entry_value(e), val, len) == 0;
    if (equal)
        nori__mem_do_remove(s, l);
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
    for (int i = 0; i <= NSTRIPES; i++) {
        out->hits += atomic_load_explicit(&mb->stripes[i].hits, memory_order_relaxed);
        out->misses += atomic_load_explicit(&mb->stripes[i].misses, memory_order_relaxed);
    }
    out->max_bytes = atomic_load_explicit(&mb->max_bytes, memory_order_relaxed);
}

static void mem_destroy(nori_backend *b)
{
    mem_backend *mb = (mem_backend *)b;
    nori__mem_fork_unregister(mb);
    nori__mem_sweeper_stop(mb);
    for (int i = 0; i < NSHARDS; i++)
        nori__mem_free_shard(&mb->shards[i]);
    nori__mem_map_cache_free(mb);
    free(mb);
}

static const nori_backend_ops memory_ops = {
    .kind = "memory",
    .traits = {.shared = false, .entry_format = NORI__ENTRY_BINARY},
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
    .metrics = nori__mem_metrics,
    .destroy = mem_destroy,
};

mem_backend *nori__mem_as_memory(nori_backend *b)
{
    return b != NULL && b->ops == &memory_ops ? (mem_backend *)b : NULL;
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
    mb->seed = nori__hash_seed();
    atomic_init(&mb->max_bytes, NORI_DEFAULT_MAX_BYTES);
    atomic_init(&mb->places, 0);
    atomic_init(&mb->bytes, 0);
    pthread_mutex_init(&mb->map_lock, NULL);
    int made = 0;
    for (; made < NSHARDS; made++) {
        mem_shard *s = &mb->shards[made];
        mem_table *t = nori__mem_table_new(INITIAL_BUCKETS);
        if (t == NULL)
            break;
        atomic_init(&s->table, t);
        atomic_init(&s->nbuckets_hint, t->nbuckets);
        s->mb = mb;
        s->tail_stamp = &mb->tail_stamps[made];
        atomic_init(s->tail_stamp, EMPTY_STAMP);
        pthread_mutex_init(&s->lock, NULL);
    }
    nori__backend_init(&mb->base, &memory_ops);
    /* Registered once complete, so that a forked child recounts its room
     * (fork.c). */
    if (made == NSHARDS)
        nori__mem_fork_register(mb);
    if (made < NSHARDS || (sweeper && nori__mem_sweeper_start(mb) != NORI_OK)) {
        if (made == NSHARDS)
            nori__mem_fork_unregister(mb);
        for (int j = 0; j < made; j++)
            nori__mem_free_shard(&mb->shards[j]);
        nori__mem_map_cache_free(mb);
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
    mem_backend *mb = nori__mem_as_memory(b);
    if (mb == NULL)
        return nori__fail(NORI_EINVAL, "set_max_bytes: the backend is %s, not a memory backend",
                          nori_backend_kind(b));
    int rc = refuse_reentry(mb, "set_max_bytes");
    if (rc != NORI_OK)
        return rc;
    /* seq_cst: ordered before the shrink's load of mb->bytes (evict.c,
     * try_take_room()). A lower bound takes effect now: evict down to it,
     * waiting for the writes that took room under the old one. */
    atomic_store_explicit(&mb->max_bytes, max_bytes, memory_order_seq_cst);
    nori__mem_shrink_to_bound(mb);
    return NORI_OK;
}

size_t nori_memory_backend_max_bytes(const nori_backend *b)
{
    if (b == NULL || b->ops != &memory_ops)
        return 0;
    return atomic_load_explicit(&((const mem_backend *)b)->max_bytes, memory_order_relaxed);
}
