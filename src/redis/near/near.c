// SPDX-License-Identifier: MIT
/*
 * The near cache store (see near.h for the coherence rules).
 *
 * Layout: up to 16 shards, the shard chosen by the top bits of the key's
 * hash. Each shard is a chained hash table plus an intrusive doubly-linked
 * recency list (head = newest), under one reader-writer lock, with its own
 * share of the keys and bytes bounds. An entry is either a value (with the
 * monotonic time at which it stops being served) or a "fill in progress"
 * marker holding a ticket and no value.
 *
 * Reads take the lock shared: a hot key read by every thread is the case
 * this cache exists for, and an exclusive lock there serialised 8 threads
 * (0.57x the memory backend in bench/bench_near). So a read does not move
 * its entry in the list; it sets the entry's `referenced` bit, and eviction
 * is CLOCK (second chance): a referenced tail has its bit cleared and goes
 * back to the head, the first unreferenced tail is evicted. The lock prefers
 * writers, so a stream of reads cannot delay an invalidation.
 *
 * Why a store of its own rather than a memory backend instance: the near
 * cache needs millisecond deadlines (PTTL), markers that an invalidation can
 * remove, a byte bound and exact accounting of what each eviction frees; the
 * memory backend offers whole-second TTLs and a key bound only.
 */
#include "redis/near/near.h"

#include "clock.h"
#include "error.h"
#include "hash.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SHARDS 16
#define MIN_KEYS_PER_SHARD 64
#define MIN_BYTES_PER_SHARD ((size_t)1 << 20)
/* The read path checks deadlines with the coarse clock, which may lag the
 * precise one by a tick (4 ms here): deadlines are set this much earlier so
 * that a copy is never served past the key's TTL in Redis. */
#define COARSE_MARGIN_MS 10

typedef struct near_entry {
    struct near_entry *hnext;            /* hash chain */
    struct near_entry *prev, *next;      /* LRU list */
    uint64_t hash;
    uint64_t ticket;                     /* non-zero: a marker (no value) */
    /* Markers: what other threads read from Redis while this fill was in
     * flight (nori__near_note_read). The fill keeps its reply only if every
     * such read saw the same value. */
    bool seen, mismatch;
    uint64_t seen_hash;
    int64_t expires_ms;                  /* values: last moment it may be served */
    _Atomic bool referenced;             /* read since it last reached the tail */
    size_t klen, vlen;
    size_t cost;                         /* bytes counted against the bound */
    char data[];                         /* key, NUL, value, NUL */
} near_entry;

/* Read counters striped over cache lines, so that threads reading one hot
 * key do not all write one line besides the lock's. */
#define STRIPES 16
typedef struct {
    alignas(64) _Atomic uint64_t hits;
    _Atomic uint64_t misses;
} near_stripe;

typedef struct {
    alignas(64) pthread_rwlock_t lock;
    near_entry **buckets;
    size_t nbuckets; /* power of two */
    near_entry *head, *tail;
    size_t count, bytes;
    size_t max_keys, max_bytes; /* this shard's share; SIZE_MAX: unbounded */
    uint64_t evictions; /* under the write lock */
} near_shard;

struct nori__near {
    near_shard shards[MAX_SHARDS];
    unsigned nshards;
    unsigned shard_shift; /* 64 - log2(nshards); 64 for one shard */
    uint64_t seed;
    int64_t max_ttl_ms;
    _Atomic bool active;   /* proved > 0 */
    pthread_mutex_t state_lock; /* orders set_active calls of several listeners */
    unsigned proved;       /* under state_lock: listeners with tracking proved */
    _Atomic uint64_t epoch;
    _Atomic uint64_t next_ticket;
    _Atomic uint64_t fills, fills_discarded, invalidations;
    near_stripe stripes[STRIPES];
    _Atomic uint64_t flushes[NORI__NEAR_FLUSH_CAUSES];
};

static const char *const cause_names[NORI__NEAR_FLUSH_CAUSES] = {
    "own", "server", "listener_lost", "heartbeat", "tracking_lost", "topology", "db_changed"};

const char *nori__near_flush_cause_name(nori__near_flush_cause cause)
{
    return (unsigned)cause < NORI__NEAR_FLUSH_CAUSES ? cause_names[cause] : "unknown";
}


static inline near_shard *shard_of(nori__near *n, uint64_t hash)
{
    return n->shard_shift >= 64 ? &n->shards[0] : &n->shards[hash >> n->shard_shift];
}

/* How long a marker blocks other fills at most (see fill_begin). */
#define MARKER_LIFE_MS 10000

/* A value's hash, to compare what concurrent readers saw (a value of 0
 * bytes and a nil differ by `found`, hashed as 0). */
static uint64_t value_hash(const nori__near *n, const void *val, size_t len)
{
    return nori__hash_key(n->seed ^ 0x9e3779b97f4a7c15ull, (const char *)val, len) | 1;
}

static inline size_t entry_cost(size_t klen, size_t vlen)
{
    return NORI_NEAR_ENTRY_OVERHEAD + klen + vlen;
}

static near_entry *entry_new(const char *key, size_t klen, const void *val, size_t vlen,
                             uint64_t hash)
{
    near_entry *e = malloc(offsetof(near_entry, data) + klen + 1 + vlen + 1);
    if (e == NULL)
        return NULL;
    e->hnext = e->prev = e->next = NULL;
    e->hash = hash;
    e->ticket = 0;
    e->seen = e->mismatch = false;
    e->seen_hash = 0;
    e->expires_ms = 0;
    atomic_init(&e->referenced, false);
    e->klen = klen;
    e->vlen = vlen;
    e->cost = entry_cost(klen, vlen);
    memcpy(e->data, key, klen);
    e->data[klen] = '\0';
    if (vlen > 0)
        memcpy(e->data + klen + 1, val, vlen);
    e->data[klen + 1 + vlen] = '\0';
    return e;
}

/* ---- shard internals: all called with the shard's lock (s->lock) held for
 * writing; do_find_slot, which changes nothing, also for reading ---- */

static void do_lru_unlink(near_shard *s, near_entry *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        s->head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        s->tail = e->prev;
    e->prev = e->next = NULL;
}

static void do_lru_push_front(near_shard *s, near_entry *e)
{
    e->prev = NULL;
    e->next = s->head;
    if (s->head != NULL)
        s->head->prev = e;
    s->head = e;
    if (s->tail == NULL)
        s->tail = e;
}

static near_entry **do_find_slot(near_shard *s, const char *key, size_t klen, uint64_t hash)
{
    near_entry **slot = &s->buckets[hash & (s->nbuckets - 1)];
    while (*slot != NULL) {
        near_entry *e = *slot;
        if (e->hash == hash && e->klen == klen && memcmp(e->data, key, klen) == 0)
            return slot;
        slot = &e->hnext;
    }
    return slot;
}

/* Unlinks the entry at *slot from the table and the list, and frees it. */
static void do_remove(near_shard *s, near_entry **slot)
{
    near_entry *e = *slot;
    *slot = e->hnext;
    do_lru_unlink(s, e);
    s->count--;
    s->bytes -= e->cost;
    free(e);
}

static void do_remove_entry(near_shard *s, near_entry *e)
{
    near_entry **slot = do_find_slot(s, e->data, e->klen, e->hash);
    do_remove(s, slot);
}

/* Doubles the table when it holds more entries than buckets. A failed
 * allocation keeps the old table (longer chains, still correct). */
static void do_maybe_grow(near_shard *s)
{
    if (s->count < s->nbuckets)
        return;
    size_t n = s->nbuckets * 2;
    near_entry **nb = calloc(n, sizeof *nb);
    if (nb == NULL)
        return;
    for (size_t i = 0; i < s->nbuckets; i++) {
        near_entry *e = s->buckets[i];
        while (e != NULL) {
            near_entry *next = e->hnext;
            near_entry **head = &nb[e->hash & (n - 1)];
            e->hnext = *head;
            *head = e;
            e = next;
        }
    }
    free(s->buckets);
    s->buckets = nb;
    s->nbuckets = n;
}

/* Evicts entries (CLOCK: a referenced tail gets a second chance at the
 * head) until one more entry of `cost` bytes fits. The caller has checked
 * that cost <= s->max_bytes and max_keys >= 1. Ends: each second chance
 * clears a bit, so after one pass every tail is evictable. */
static void do_make_room(near_shard *s, size_t cost)
{
    while (s->tail != NULL && (s->count + 1 > s->max_keys || s->bytes + cost > s->max_bytes)) {
        near_entry *victim = s->tail;
        if (atomic_load_explicit(&victim->referenced, memory_order_relaxed) &&
            victim != s->head) {
            atomic_store_explicit(&victim->referenced, false, memory_order_relaxed);
            do_lru_unlink(s, victim);
            do_lru_push_front(s, victim);
            continue;
        }
        do_remove_entry(s, victim);
        s->evictions++;
    }
}

static void do_insert(near_shard *s, near_entry *e)
{
    do_make_room(s, e->cost);
    near_entry **head = &s->buckets[e->hash & (s->nbuckets - 1)];
    e->hnext = *head;
    *head = e;
    do_lru_push_front(s, e);
    s->count++;
    s->bytes += e->cost;
    do_maybe_grow(s);
}

static void do_clear(near_shard *s)
{
    near_entry *e = s->head;
    while (e != NULL) {
        near_entry *next = e->next;
        free(e);
        e = next;
    }
    memset(s->buckets, 0, s->nbuckets * sizeof *s->buckets);
    s->head = s->tail = NULL;
    s->count = 0;
    s->bytes = 0;
}

/* ---- the store ---- */

/* The share of `total` (0: unbounded) that shard i of n gets. */
static size_t share(size_t total, unsigned i, unsigned n)
{
    if (total == 0)
        return SIZE_MAX;
    return total / n + (i < total % n ? 1 : 0);
}

int nori__near_new(const nori__near_limits *limits, nori__near **out)
{
    if (limits == NULL || out == NULL)
        return nori__fail(NORI_EINVAL, "near cache: limits or out is NULL");
    if (limits->max_keys == 0 && limits->max_bytes == 0)
        return nori__fail(NORI_EINVAL,
                          "near cache: max_keys and max_bytes are both 0 (one bound is needed)");
    if (limits->max_ttl_ms < 0)
        return nori__fail(NORI_EINVAL, "near cache: max_ttl_ms %lld is negative",
                          (long long)limits->max_ttl_ms);
    nori__near *n = calloc(1, sizeof *n);
    if (n == NULL)
        return nori__fail(NORI_ENOMEM, "near cache: out of memory");
    unsigned ns = MAX_SHARDS;
    while (ns > 1 && ((limits->max_keys != 0 && limits->max_keys / ns < MIN_KEYS_PER_SHARD) ||
                      (limits->max_bytes != 0 && limits->max_bytes / ns < MIN_BYTES_PER_SHARD)))
        ns /= 2;
    n->nshards = ns;
    unsigned bits = 0;
    while ((1u << bits) < ns)
        bits++;
    n->shard_shift = 64 - bits;
    n->max_ttl_ms = limits->max_ttl_ms != 0 ? limits->max_ttl_ms : NORI_NEAR_DEFAULT_MAX_TTL_MS;
    n->seed = nori__hash_seed();
    atomic_init(&n->active, false);
    pthread_mutex_init(&n->state_lock, NULL);
    atomic_init(&n->epoch, 1);
    atomic_init(&n->next_ticket, 1);
    pthread_rwlockattr_t rwa;
    pthread_rwlockattr_init(&rwa);
    /* Writers first: invalidations must not wait behind a stream of reads. */
    pthread_rwlockattr_setkind_np(&rwa, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    for (unsigned i = 0; i < ns; i++) {
        near_shard *s = &n->shards[i];
        s->nbuckets = 16;
        s->buckets = calloc(s->nbuckets, sizeof *s->buckets);
        if (s->buckets == NULL) {
            for (unsigned j = 0; j < i; j++) {
                pthread_rwlock_destroy(&n->shards[j].lock);
                free(n->shards[j].buckets);
            }
            pthread_rwlockattr_destroy(&rwa);
            pthread_mutex_destroy(&n->state_lock);
            free(n);
            return nori__fail(NORI_ENOMEM, "near cache: out of memory");
        }
        pthread_rwlock_init(&s->lock, &rwa);
        s->max_keys = share(limits->max_keys, i, ns);
        s->max_bytes = share(limits->max_bytes, i, ns);
    }
    pthread_rwlockattr_destroy(&rwa);
    *out = n;
    return NORI_OK;
}

void nori__near_free(nori__near *n)
{
    if (n == NULL)
        return;
    for (unsigned i = 0; i < n->nshards; i++) {
        do_clear(&n->shards[i]);
        free(n->shards[i].buckets);
        pthread_rwlock_destroy(&n->shards[i].lock);
    }
    pthread_mutex_destroy(&n->state_lock);
    free(n);
}

bool nori__near_is_active(const nori__near *n)
{
    return atomic_load(&n->active);
}

/* This thread's counter stripe. */
static near_stripe *my_stripe(nori__near *n)
{
    static _Atomic unsigned next_stripe;
    static _Thread_local unsigned stripe_plus_one;
    if (stripe_plus_one == 0)
        stripe_plus_one = atomic_fetch_add_explicit(&next_stripe, 1, memory_order_relaxed) %
                              STRIPES +
                          1;
    return &n->stripes[stripe_plus_one - 1];
}

static int count_miss(nori__near *n)
{
    atomic_fetch_add_explicit(&my_stripe(n)->misses, 1, memory_order_relaxed);
    return NORI_MISS;
}

int nori__near_get(nori__near *n, const char *key, size_t klen, nori_buf *out)
{
    out->data = NULL;
    out->len = 0;
    uint64_t hash = nori__hash_key(n->seed, key, klen);
    near_shard *s = shard_of(n, hash);
    int64_t now = nori__now_coarse_ms();
    pthread_rwlock_rdlock(&s->lock);
    /* Checked under the lock: a deactivation stores false before it flushes,
     * so once the flush has passed this shard no copy is served. */
    if (!atomic_load_explicit(&n->active, memory_order_acquire)) {
        pthread_rwlock_unlock(&s->lock);
        return count_miss(n);
    }
    near_entry *e = *do_find_slot(s, key, klen, hash);
    /* An expired copy is left for the next fill (or eviction) to remove:
     * removing needs the write lock. */
    if (e == NULL || e->ticket != 0 || now > e->expires_ms) {
        pthread_rwlock_unlock(&s->lock);
        return count_miss(n);
    }
    char *copy = malloc(e->vlen + 1);
    if (copy == NULL) {
        pthread_rwlock_unlock(&s->lock);
        return nori__fail(NORI_ENOMEM, "near cache: out of memory copying %zu bytes", e->vlen);
    }
    memcpy(copy, e->data + e->klen + 1, e->vlen + 1);
    out->data = copy;
    out->len = e->vlen;
    if (!atomic_load_explicit(&e->referenced, memory_order_relaxed))
        atomic_store_explicit(&e->referenced, true, memory_order_relaxed);
    pthread_rwlock_unlock(&s->lock);
    atomic_fetch_add_explicit(&my_stripe(n)->hits, 1, memory_order_relaxed);
    return NORI_OK;
}

bool nori__near_fill_begin(nori__near *n, const char *key, size_t klen, nori__near_fill *f)
{
    /* The epoch is read before `active`: a deactivation stores active=false
     * and then bumps the epoch, so a fill that saw the store active carries
     * either the current epoch or one that fill_end will find stale. */
    f->live = false;
    uint64_t epoch = atomic_load(&n->epoch);
    if (!atomic_load(&n->active))
        return false;
    uint64_t hash = nori__hash_key(n->seed, key, klen);
    near_shard *s = shard_of(n, hash);
    size_t cost = entry_cost(klen, 0);
    if (cost > s->max_bytes)
        return false;
    near_entry *marker = entry_new(key, klen, NULL, 0, hash);
    if (marker == NULL)
        return false;
    uint64_t ticket = atomic_fetch_add(&n->next_ticket, 1);
    marker->ticket = ticket;
    int64_t now = nori__now_ms();
    /* A marker whose fill never ended (it always does: fill_end or cancel)
     * stops blocking fills after this long. */
    marker->expires_ms = now + MARKER_LIFE_MS;
    pthread_rwlock_wrlock(&s->lock);
    near_entry **slot = do_find_slot(s, key, klen, hash);
    if (*slot != NULL) {
        near_entry *e = *slot;
        bool live = e->ticket == 0 && nori__now_coarse_ms() <= e->expires_ms;
        bool in_flight = e->ticket != 0 && now <= e->expires_ms;
        if (live || in_flight) {
            pthread_rwlock_unlock(&s->lock);
            free(marker);
            /* Filled by another thread meanwhile: the caller serves that
             * copy rather than a fresher read from Redis, or it could see
             * the key go back to this copy on its next get (the copy may
             * wait for an invalidation that is on its way). Another fill
             * in flight: it is left alone (replacing it, under steady
             * concurrent misses of a hot key, would let no fill finish);
             * the caller reads without a marker and reports what it read
             * (nori__near_note_read). */
            f->live = live;
            return false;
        }
        do_remove(s, slot); /* an older marker, or an expired value */
    }
    do_insert(s, marker);
    pthread_rwlock_unlock(&s->lock);
    /* Not marker->ticket: once unlocked the marker may already be gone. */
    f->ticket = ticket;
    f->epoch = epoch;
    f->start_ms = now;
    return true;
}

/* Removes the marker of `f` if it is still there. Called with s->lock held
 * for writing. */
static void do_remove_marker(near_shard *s, const char *key, size_t klen, uint64_t hash,
                             uint64_t ticket)
{
    near_entry **slot = do_find_slot(s, key, klen, hash);
    if (*slot != NULL && (*slot)->ticket == ticket)
        do_remove(s, slot);
}

/*
 * A read of the key from Redis, other than the fill whose marker is at
 * *slot, saw val[0..len) (found) or a nil, with hash vh: the rule 2 of
 * near.h. Another fill's marker records it; a copy that differs from it
 * goes (one of the two is older, and the reader is about to return its
 * own). Called with s->lock held for writing.
 */
static void do_note_read(near_shard *s, near_entry **slot, const void *val, size_t len,
                         bool found, uint64_t vh)
{
    near_entry *e = *slot;
    if (e == NULL)
        return;
    if (e->ticket != 0) {
        if (!e->seen) {
            e->seen = true;
            e->seen_hash = vh;
        } else if (e->seen_hash != vh) {
            e->mismatch = true;
        }
    } else if (!found || e->vlen != len || memcmp(e->data + e->klen + 1, val, len) != 0) {
        do_remove(s, slot);
    }
}

bool nori__near_fill_end(nori__near *n, const char *key, size_t klen, const nori__near_fill *f,
                         const void *val, size_t len, int64_t pttl_ms)
{
    uint64_t hash = nori__hash_key(n->seed, key, klen);
    near_shard *s = shard_of(n, hash);
    uint64_t vh = value_hash(n, val, len);
    int64_t life = n->max_ttl_ms;
    if (pttl_ms >= 0 && pttl_ms < life)
        life = pttl_ms;
    int64_t expires = f->start_ms + life - COARSE_MARGIN_MS;
    bool keep = pttl_ms > 0 || pttl_ms == -1; /* -2: gone; 0: expiring now */
    keep = keep && expires > nori__now_ms() && entry_cost(klen, len) <= s->max_bytes;
    near_entry *e = keep ? entry_new(key, klen, val, len, hash) : NULL;
    pthread_rwlock_wrlock(&s->lock);
    near_entry **slot = do_find_slot(s, key, klen, hash);
    bool ours = *slot != NULL && (*slot)->ticket == f->ticket;
    /* Another thread read the key from Redis meanwhile and got something
     * else: which read is newer is unknown, so keep neither. */
    bool contended = ours && ((*slot)->mismatch || ((*slot)->seen && (*slot)->seen_hash != vh));
    /* Under the shard lock: a flush bumps the epoch before it takes any
     * shard lock, so a stale epoch is seen here or the flush comes after. */
    bool valid = ours && !contended && atomic_load(&n->epoch) == f->epoch &&
                 atomic_load(&n->active);
    if (ours)
        do_remove(s, slot);
    else /* displaced (invalidated, flushed): still a read the caller returns */
        do_note_read(s, slot, val, len, true, vh);
    bool stored = false;
    if (valid && e != NULL) {
        e->expires_ms = expires;
        do_insert(s, e);
        stored = true;
    }
    pthread_rwlock_unlock(&s->lock);
    if (!stored)
        free(e);
    atomic_fetch_add_explicit(stored ? &n->fills : &n->fills_discarded, 1, memory_order_relaxed);
    return stored;
}

void nori__near_note_read(nori__near *n, const char *key, size_t klen, const nori__near_fill *f,
                          const void *val, size_t len, bool found)
{
    uint64_t hash = nori__hash_key(n->seed, key, klen);
    near_shard *s = shard_of(n, hash);
    uint64_t vh = found ? value_hash(n, val, len) : 0;
    pthread_rwlock_wrlock(&s->lock);
    near_entry **slot = do_find_slot(s, key, klen, hash);
    if (f != NULL && *slot != NULL && (*slot)->ticket == f->ticket)
        do_remove(s, slot); /* its own marker: the fill ends, keeping nothing */
    else
        do_note_read(s, slot, val, len, found, vh);
    pthread_rwlock_unlock(&s->lock);
}

void nori__near_fill_cancel(nori__near *n, const char *key, size_t klen, const nori__near_fill *f)
{
    uint64_t hash = nori__hash_key(n->seed, key, klen);
    near_shard *s = shard_of(n, hash);
    pthread_rwlock_wrlock(&s->lock);
    do_remove_marker(s, key, klen, hash, f->ticket);
    pthread_rwlock_unlock(&s->lock);
}

void nori__near_drop(nori__near *n, const char *key, size_t klen)
{
    uint64_t hash = nori__hash_key(n->seed, key, klen);
    near_shard *s = shard_of(n, hash);
    pthread_rwlock_wrlock(&s->lock);
    near_entry **slot = do_find_slot(s, key, klen, hash);
    if (*slot != NULL)
        do_remove(s, slot);
    pthread_rwlock_unlock(&s->lock);
}

void nori__near_invalidate(nori__near *n, const char *key, size_t klen)
{
    atomic_fetch_add_explicit(&n->invalidations, 1, memory_order_relaxed);
    nori__near_drop(n, key, klen);
}

void nori__near_flush(nori__near *n, nori__near_flush_cause cause)
{
    /* Markers go too, so a fill begun before the flush stores nothing; the
     * epoch is bumped first for fills whose marker was placed after this
     * flush passed their shard but whose read was sent before it. */
    atomic_fetch_add(&n->epoch, 1);
    for (unsigned i = 0; i < n->nshards; i++) {
        pthread_rwlock_wrlock(&n->shards[i].lock);
        do_clear(&n->shards[i]);
        pthread_rwlock_unlock(&n->shards[i].lock);
    }
    if ((unsigned)cause < NORI__NEAR_FLUSH_CAUSES)
        atomic_fetch_add_explicit(&n->flushes[cause], 1, memory_order_relaxed);
}

void nori__near_set_active(nori__near *n, bool active, nori__near_flush_cause cause)
{
    pthread_mutex_lock(&n->state_lock);
    if (active) {
        n->proved++;
        atomic_store(&n->active, true);
        pthread_mutex_unlock(&n->state_lock);
        return;
    }
    if (n->proved == 0) {
        pthread_mutex_unlock(&n->state_lock);
        return;
    }
    /* `active` goes false before the flush (see nori__near_get) when this
     * was the last proved listener; with others still proved the store keeps
     * serving, but only what is filled after this flush, and the lost node's
     * reads are not kept until its listener is back (client.c). */
    if (--n->proved == 0)
        atomic_store(&n->active, false);
    pthread_mutex_unlock(&n->state_lock);
    nori__near_flush(n, cause);
}

void nori__near_get_stats(nori__near *n, nori__near_stats *out)
{
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i < n->nshards; i++) {
        near_shard *s = &n->shards[i];
        pthread_rwlock_rdlock(&s->lock);
        out->evictions += s->evictions;
        out->entries += s->count;
        out->bytes += s->bytes;
        pthread_rwlock_unlock(&s->lock);
    }
    for (int i = 0; i < STRIPES; i++) {
        out->hits += atomic_load_explicit(&n->stripes[i].hits, memory_order_relaxed);
        out->misses += atomic_load_explicit(&n->stripes[i].misses, memory_order_relaxed);
    }
    out->fills = atomic_load_explicit(&n->fills, memory_order_relaxed);
    out->fills_discarded = atomic_load_explicit(&n->fills_discarded, memory_order_relaxed);
    out->invalidations = atomic_load_explicit(&n->invalidations, memory_order_relaxed);
    for (int c = 0; c < NORI__NEAR_FLUSH_CAUSES; c++)
        out->flushes[c] = atomic_load_explicit(&n->flushes[c], memory_order_relaxed);
    out->active = atomic_load(&n->active);
}
