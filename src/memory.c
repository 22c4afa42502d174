/*
 * The in-process memory backend: a chained hash table for O(1) lookup, and an
 * intrusive doubly-linked list through the same entries that keeps them in
 * recency order for LRU eviction.
 *
 * Why this shape:
 *  - One allocation per entry (header, key and value together) keeps a lookup
 *    to one pointer chase after the bucket, and the per-entry overhead small.
 *  - The table and the LRU list live in a `mem_shard` with its own lock. There
 *    is one shard today, which makes the LRU order exact under any
 *    interleaving. The structure is laid out so that several shards (each with
 *    its own lock, table and list) can be added later: the global LRU victim is
 *    then the oldest of the shard tails, found through an access stamp.
 *  - Expiry is lazy: a read that finds an expired entry removes it. An insert
 *    into a full store removes the LRU tail, which is either expired (counted
 *    as expired) or the least recently used live entry (counted as evicted).
 *  - The hash is seeded per backend from getrandom(), so keys chosen by an
 *    attacker (HTTP paths end up in keys) cannot be made to collide in advance.
 *
 * Locking: functions named do_* are called with the shard lock held.
 */
#include "backend.h"
#include "clock.h"
#include "error.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

typedef struct mem_entry {
    struct mem_entry *hnext;    /* next entry in the same bucket */
    struct mem_entry *lru_prev; /* more recently used neighbour */
    struct mem_entry *lru_next; /* less recently used neighbour */
    uint64_t hash;
    int64_t expires_ms; /* 0 = never */
    uint32_t klen;
    uint32_t vlen;
    char data[]; /* key, NUL, value, NUL */
} mem_entry;

typedef struct mem_shard {
    pthread_mutex_t lock;
    mem_entry **buckets;
    size_t nbuckets; /* a power of two */
    size_t count;
    mem_entry *lru_head; /* most recently used */
    mem_entry *lru_tail; /* least recently used: the next victim */
    uint64_t hits, misses, evictions, expired;
} mem_shard;

typedef struct mem_backend {
    nori_backend base; /* must be first */
    size_t max_keys;
    uint64_t seed;
    mem_shard shard;
} mem_backend;

#define INITIAL_BUCKETS 16

/*
 * The backend whose lock the calling thread holds while it runs an
 * atomic_update callback. A callback that calls back into the same backend
 * would deadlock on the non-recursive lock; this turns that into an error.
 */
static _Thread_local const mem_backend *in_callback_of;

static inline const char *entry_key(const mem_entry *e)
{
    return e->data;
}

static inline char *entry_value(mem_entry *e)
{
    return e->data + e->klen + 1;
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

static void lru_touch(mem_shard *s, mem_entry *e)
{
    if (s->lru_head == e)
        return;
    lru_unlink(s, e);
    lru_push_front(s, e);
}

/* ---- the hash table ---- */

/* Returns the slot that points at the entry for `key`, or the empty slot at
 * the end of its bucket's chain. */
static mem_entry **do_find_slot(mem_shard *s, const char *key, size_t klen, uint64_t hash)
{
    mem_entry **slot = &s->buckets[hash & (s->nbuckets - 1)];
    while (*slot != NULL) {
        mem_entry *e = *slot;
        if (e->hash == hash && e->klen == klen && memcmp(entry_key(e), key, klen) == 0)
            return slot;
        slot = &e->hnext;
    }
    return slot;
}

/* Doubles the bucket array when the load passes 1. A failed allocation only
 * keeps the table denser; it is not an error. */
static void do_maybe_grow(mem_shard *s)
{
    if (s->count < s->nbuckets || s->nbuckets > SIZE_MAX / 2 / sizeof(mem_entry *))
        return;
    size_t n = s->nbuckets * 2;
    mem_entry **nb = calloc(n, sizeof *nb);
    if (nb == NULL)
        return;
    for (size_t i = 0; i < s->nbuckets; i++) {
        mem_entry *e = s->buckets[i];
        while (e != NULL) {
            mem_entry *next = e->hnext;
            mem_entry **head = &nb[e->hash & (n - 1)];
            e->hnext = *head;
            *head = e;
            e = next;
        }
    }
    free(s->buckets);
    s->buckets = nb;
    s->nbuckets = n;
}

/* Removes the entry at `slot` from the table and the list, and frees it. */
static void do_remove(mem_shard *s, mem_entry **slot)
{
    mem_entry *e = *slot;
    *slot = e->hnext;
    lru_unlink(s, e);
    s->count--;
    free(e);
}

/* Removes a specific entry (the LRU tail) by finding its slot first. */
static void do_remove_entry(mem_shard *s, mem_entry *e)
{
    mem_entry **slot = &s->buckets[e->hash & (s->nbuckets - 1)];
    while (*slot != e)
        slot = &(*slot)->hnext;
    do_remove(s, slot);
}

static inline bool is_expired(const mem_entry *e, int64_t now)
{
    return e->expires_ms != 0 && e->expires_ms <= now;
}

/* Finds a live entry; an expired one is removed on the way (lazy expiry).
 * Returns the slot (so the caller can replace or remove) or NULL. */
static mem_entry **do_lookup(mem_shard *s, const char *key, size_t klen, uint64_t hash,
                             int64_t now)
{
    mem_entry **slot = do_find_slot(s, key, klen, hash);
    if (*slot == NULL)
        return NULL;
    if (is_expired(*slot, now)) {
        do_remove(s, slot);
        s->expired++;
        return NULL;
    }
    return slot;
}

static mem_entry *entry_new(const char *key, size_t klen, uint64_t hash, const void *val,
                            size_t vlen, int64_t expires_ms)
{
    mem_entry *e = malloc(sizeof *e + klen + 1 + vlen + 1);
    if (e == NULL) {
        nori__fail(NORI_ENOMEM, "out of memory storing %zu bytes under key '%.64s'", vlen, key);
        return NULL;
    }
    e->hnext = e->lru_prev = e->lru_next = NULL;
    e->hash = hash;
    e->expires_ms = expires_ms;
    e->klen = (uint32_t)klen;
    e->vlen = (uint32_t)vlen;
    memcpy(e->data, key, klen);
    e->data[klen] = '\0';
    char *v = entry_value(e);
    if (vlen > 0)
        memcpy(v, val, vlen);
    v[vlen] = '\0';
    return e;
}

/*
 * Puts the new entry `e` in place: replaces the entry at `slot` if there is
 * one, else inserts it, evicting the LRU tail first when the store is full.
 * `slot` comes from do_lookup/do_find_slot and is still valid: nothing has
 * changed the table since.
 */
static void do_store(mem_backend *mb, mem_entry **slot, mem_entry *e)
{
    mem_shard *s = &mb->shard;
    if (slot != NULL && *slot != NULL) {
        mem_entry *old = *slot;
        e->hnext = old->hnext;
        *slot = e;
        lru_unlink(s, old);
        free(old);
        lru_push_front(s, e);
        return;
    }
    if (s->count >= mb->max_keys) {
        mem_entry *victim = s->lru_tail;
        if (is_expired(victim, nori__now_ms()))
            s->expired++;
        else
            s->evictions++;
        do_remove_entry(s, victim);
    }
    do_maybe_grow(s);
    /* The eviction or the growth may have moved the empty slot: find it again. */
    mem_entry **head = &s->buckets[e->hash & (s->nbuckets - 1)];
    e->hnext = *head;
    *head = e;
    lru_push_front(s, e);
    s->count++;
}

static int refuse_reentry(const mem_backend *mb, const char *op)
{
    if (in_callback_of == mb)
        return nori__fail(NORI_EINVAL,
                          "%s called from inside an atomic_update callback of the same memory "
                          "backend (the callback runs under the backend's lock)",
                          op);
    return NORI_OK;
}

static void shard_lock(mem_shard *s)
{
    pthread_mutex_lock(&s->lock);
}

static void shard_unlock(mem_shard *s)
{
    pthread_mutex_unlock(&s->lock);
}

/* ---- operations ---- */

static int mem_get(nori_backend *b, const char *key, size_t klen, nori_buf *out)
{
    mem_backend *mb = (mem_backend *)b;
    mem_shard *s = &mb->shard;
    int rc = refuse_reentry(mb, "get");
    if (rc != NORI_OK)
        return rc;
    uint64_t hash = hash_key(mb->seed, key, klen);
    int64_t now = nori__now_ms();
    shard_lock(s);
    mem_entry **slot = do_lookup(s, key, klen, hash, now);
    if (slot == NULL) {
        s->misses++;
        shard_unlock(s);
        return NORI_MISS;
    }
    mem_entry *e = *slot;
    char *copy = malloc((size_t)e->vlen + 1);
    if (copy == NULL) {
        shard_unlock(s);
        return nori__fail(NORI_ENOMEM, "out of memory copying the value of '%.64s'", key);
    }
    memcpy(copy, entry_value(e), (size_t)e->vlen + 1);
    out->data = copy;
    out->len = e->vlen;
    lru_touch(s, e);
    s->hits++;
    shard_unlock(s);
    return NORI_OK;
}

static int64_t expiry_from_ttl(int64_t ttl, int64_t now)
{
    return ttl > 0 ? now + ttl * 1000 : 0;
}

static int mem_set(nori_backend *b, const char *key, size_t klen, const void *val, size_t len,
                   int64_t ttl)
{
    mem_backend *mb = (mem_backend *)b;
    mem_shard *s = &mb->shard;
    int rc = refuse_reentry(mb, "set");
    if (rc != NORI_OK)
        return rc;
    uint64_t hash = hash_key(mb->seed, key, klen);
    int64_t now = nori__now_ms();
    /* Allocate and copy outside the lock: the critical section only links. */
    mem_entry *e = entry_new(key, klen, hash, val, len, expiry_from_ttl(ttl, now));
    if (e == NULL)
        return NORI_ENOMEM;
    shard_lock(s);
    do_store(mb, do_find_slot(s, key, klen, hash), e);
    shard_unlock(s);
    return NORI_OK;
}

static int mem_del(nori_backend *b, const char *key, size_t klen)
{
    mem_backend *mb = (mem_backend *)b;
    mem_shard *s = &mb->shard;
    int rc = refuse_reentry(mb, "delete");
    if (rc != NORI_OK)
        return rc;
    uint64_t hash = hash_key(mb->seed, key, klen);
    shard_lock(s);
    mem_entry **slot = do_find_slot(s, key, klen, hash);
    if (*slot != NULL)
        do_remove(s, slot);
    shard_unlock(s);
    return NORI_OK;
}

static void do_clear(mem_shard *s)
{
    mem_entry *e = s->lru_head;
    while (e != NULL) {
        mem_entry *next = e->lru_next;
        free(e);
        e = next;
    }
    memset(s->buckets, 0, s->nbuckets * sizeof *s->buckets);
    s->lru_head = s->lru_tail = NULL;
    s->count = 0;
}

static int mem_flush(nori_backend *b)
{
    mem_backend *mb = (mem_backend *)b;
    int rc = refuse_reentry(mb, "flush");
    if (rc != NORI_OK)
        return rc;
    shard_lock(&mb->shard);
    do_clear(&mb->shard);
    shard_unlock(&mb->shard);
    return NORI_OK;
}

static int mem_incr(nori_backend *b, const char *key, size_t klen, int64_t ttl, int64_t *out)
{
    mem_backend *mb = (mem_backend *)b;
    mem_shard *s = &mb->shard;
    int rc = refuse_reentry(mb, "incr");
    if (rc != NORI_OK)
        return rc;
    uint64_t hash = hash_key(mb->seed, key, klen);
    int64_t now = nori__now_ms();
    shard_lock(s);
    mem_entry **slot = do_lookup(s, key, klen, hash, now);
    int64_t value = 1;
    int64_t expires_ms = expiry_from_ttl(ttl, now);
    if (slot != NULL) {
        mem_entry *cur = *slot;
        int64_t old;
        if (!nori__parse_int64(entry_value(cur), cur->vlen, &old)) {
            shard_unlock(s);
            return nori__fail(NORI_ETYPE, "incr '%.64s': the stored value is not an int", key);
        }
        if (old == INT64_MAX) {
            shard_unlock(s);
            return nori__fail(NORI_ERANGE, "incr '%.64s': %" PRId64 " + 1 overflows int64", key,
                              old);
        }
        value = old + 1;
        expires_ms = cur->expires_ms; /* an existing counter keeps its expiry */
    }
    char text[24];
    int n = snprintf(text, sizeof text, "%" PRId64, value);
    mem_entry *e = entry_new(key, klen, hash, text, (size_t)n, expires_ms);
    if (e == NULL) {
        shard_unlock(s);
        return NORI_ENOMEM;
    }
    do_store(mb, slot != NULL ? slot : do_find_slot(s, key, klen, hash), e);
    shard_unlock(s);
    *out = value;
    return NORI_OK;
}

static int mem_atomic_update(nori_backend *b, const char *key, size_t klen, nori_update_fn fn,
                             void *ud, int64_t ttl, nori_buf *out)
{
    mem_backend *mb = (mem_backend *)b;
    mem_shard *s = &mb->shard;
    int rc = refuse_reentry(mb, "atomic_update");
    if (rc != NORI_OK)
        return rc;
    uint64_t hash = hash_key(mb->seed, key, klen);
    int64_t now = nori__now_ms();
    shard_lock(s);
    mem_entry **slot = do_lookup(s, key, klen, hash, now);
    nori_buf current = {0}, next = {0};
    if (slot != NULL) {
        current.data = entry_value(*slot);
        current.len = (*slot)->vlen;
    }
    in_callback_of = mb;
    int declined = fn(slot != NULL ? &current : NULL, &next, ud);
    in_callback_of = NULL;
    if (declined != 0) {
        shard_unlock(s);
        nori_buf_free(&next);
        return nori__fail(NORI_EABORT, "atomic_update '%.64s': the callback declined (returned %d)",
                          key, declined);
    }
    rc = NORI_OK;
    if (next.data == NULL && next.len > 0)
        rc = nori__fail(NORI_EINVAL, "atomic_update '%.64s': the callback set len %zu with no data",
                        key, next.len);
    if (rc == NORI_OK)
        rc = nori__check_value(b, key, next.len);
    mem_entry *e = NULL;
    if (rc == NORI_OK) {
        int64_t expires_ms = expiry_from_ttl(ttl, now);
        if (ttl == 0 && slot != NULL)
            expires_ms = (*slot)->expires_ms;
        e = entry_new(key, klen, hash, next.data, next.len, expires_ms);
        if (e == NULL)
            rc = NORI_ENOMEM;
    }
    /* Make the caller's copy before writing, so a failure here writes nothing. */
    if (rc == NORI_OK && out != NULL)
        rc = nori__adopt_buf(&next, out);
    if (rc != NORI_OK) {
        shard_unlock(s);
        free(e);
        nori_buf_free(&next);
        return rc;
    }
    do_store(mb, slot != NULL ? slot : do_find_slot(s, key, klen, hash), e);
    shard_unlock(s);
    nori_buf_free(&next);
    return NORI_OK;
}

static int mem_verify(nori_backend *b)
{
    (void)b;
    return NORI_OK;
}

static void mem_stats(nori_backend *b, nori_backend_stats *out)
{
    mem_backend *mb = (mem_backend *)b;
    mem_shard *s = &mb->shard;
    shard_lock(s);
    out->hits = s->hits;
    out->misses = s->misses;
    out->evictions = s->evictions;
    out->expired = s->expired;
    out->entries = s->count;
    shard_unlock(s);
}

static void mem_destroy(nori_backend *b)
{
    mem_backend *mb = (mem_backend *)b;
    do_clear(&mb->shard);
    free(mb->shard.buckets);
    pthread_mutex_destroy(&mb->shard.lock);
    free(mb);
}

static const nori_backend_ops memory_ops = {
    .kind = "memory",
    .get = mem_get,
    .set = mem_set,
    .del = mem_del,
    .flush = mem_flush,
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
    mem_backend *mb = calloc(1, sizeof *mb);
    if (mb == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory creating a memory backend");
    mb->shard.buckets = calloc(INITIAL_BUCKETS, sizeof *mb->shard.buckets);
    if (mb->shard.buckets == NULL) {
        free(mb);
        return nori__fail(NORI_ENOMEM, "out of memory creating a memory backend");
    }
    mb->shard.nbuckets = INITIAL_BUCKETS;
    pthread_mutex_init(&mb->shard.lock, NULL);
    mb->max_keys = max_keys;
    mb->seed = random_seed();
    nori__backend_init(&mb->base, &memory_ops);
    *out = &mb->base;
    return NORI_OK;
}
