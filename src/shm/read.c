// SPDX-License-Identifier: MIT
/*
 * The shared-memory backend's reads (get, get_into): a lock-free attempt
 * (try_read) validated by the bucket's sequence counter, up to
 * SHM_READ_TRIES times, then the shard's lock. A read that finds an expired
 * entry removes it under the lock (lazy expiry). Hits and misses are
 * counted per handle, in stripes the reading threads own.
 */
#include "shm/internal.h"

#include "error.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ---- per-handle hit and miss counters, striped by thread ---- */

/*
 * Each of the first SHM_NSTRIPES threads of the process that read owns a
 * stripe (of every handle) and adds with a plain load and store: no locked
 * instruction on the read path. Later threads add atomically to the one
 * shared stripe.
 */
static _Atomic unsigned next_stripe;
static _Thread_local unsigned my_stripe = UINT_MAX;

static inline void count_read(shm_backend *sb, bool hit)
{
    unsigned i = my_stripe;
    if (i == UINT_MAX) {
        i = atomic_fetch_add_explicit(&next_stripe, 1, memory_order_relaxed);
        my_stripe = i = i < SHM_NSTRIPES ? i : SHM_NSTRIPES;
    }
    shm_stripe *st = &sb->stripes[i];
    _Atomic uint64_t *c = hit ? &st->hits : &st->misses;
    if (i < SHM_NSTRIPES)
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    else
        atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* ---- reads ---- */

typedef struct read_req {
    bool into;
    void *buf;       /* get_into: the caller's buffer */
    size_t cap;
    size_t *len;
    char *tmp;       /* get: the copy, reused across tries */
    size_t tmpcap;
    size_t vlen;     /* out */
} read_req;

enum { R_HIT, R_MISS, R_RETRY, R_EXPIRED, R_TOOBIG, R_ERR };

/* Whether an entry header read without the lock can be followed: its class
 * exists, its chunk is inside the arena, its key and value fit it. */
static bool entry_sane(const shm_backend *sb, uint32_t ref, size_t klen, size_t vlen,
                       unsigned cls, unsigned flags)
{
    if (cls >= SHM_NCLASSES)
        return false;
    uint64_t size = nori__shm_class_size(cls);
    if ((uint64_t)(ref - 1) * SHM_GRAN + size > sb->arena_bytes)
        return false;
    if (flags & SHM_LARGE)
        return SHM_ENTRY_HDR + klen + 4 <= size && vlen <= sb->arena_bytes;
    return SHM_ENTRY_HDR + klen + vlen <= size;
}

static int value_over_limit(const shm_backend *sb, const char *key, size_t vlen)
{
    return nori__fail(NORI_ETOOBIG,
                      "the value of '%.64s' in shm segment '%s' is %zu bytes, this handle's "
                      "value limit is %zu",
                      key, sb->name, vlen,
                      atomic_load_explicit(&sb->base.max_value, memory_order_relaxed));
}

/* Copies the value of e (vlen bytes, checked) into the request. R_HIT, or
 * R_RETRY when a LARGE chain left the arena, or R_ERR. */
static inline int copy_value(shm_backend *sb, const shm_entry *e, size_t klen, size_t vlen,
                             unsigned flags, read_req *rq)
{
    rq->vlen = vlen;
    void *dst;
    if (rq->into) {
        *rq->len = vlen;
        if (vlen > rq->cap || vlen == 0)
            return R_HIT;
        dst = rq->buf;
    } else {
        if (rq->tmpcap < vlen + 1) {
            free(rq->tmp);
            rq->tmpcap = 0;
            rq->tmp = malloc(vlen + 1);
            if (rq->tmp == NULL) {
                nori__fail(NORI_ENOMEM, "out of memory copying a value of %zu bytes", vlen);
                return R_ERR;
            }
            rq->tmpcap = vlen + 1;
            /* Tests: a reader stopped between its checks and its copy
             * (this branch already pays for a malloc). */
            nori__shm_test_point("read_copy");
        }
        dst = rq->tmp;
    }
    return nori__shm_read_value(sb, e, klen, flags, vlen, dst) ? R_HIT : R_RETRY;
}

/*
 * One lock-free attempt: the chain walked and the value copied between two
 * reads of the bucket's sequence counter that must agree (and be even).
 * Every ref is checked before it is followed and the walk is bounded, so a
 * chain changed (or left half-changed by a dead writer) under the reader
 * costs a retry, never a fault.
 */
static int try_read(shm_backend *sb, shm_bucket *bk, const char *key, size_t klen, int64_t now,
                    read_req *rq, _Atomic uint64_t **stamp)
{
    uint32_t seq = atomic_load_explicit(&bk->seq, memory_order_acquire);
    if (seq & 1u)
        return R_RETRY;
    uint32_t ref = atomic_load_explicit(&bk->head, memory_order_acquire);
    uint64_t steps = 0;
    shm_entry *e = NULL;
    uint32_t eref = 0;
    while (ref != 0) {
        if (!shm_ref_ok(sb, ref) || ++steps > sb->max_keys + 1)
            return R_RETRY;
        /* A walk led astray by a change (onto a freed chunk, whose link
         * means nothing) is noticed within 32 steps, not after max_keys. */
        if ((steps & 31) == 0 && atomic_load_explicit(&bk->seq, memory_order_acquire) != seq)
            return R_RETRY;
        shm_entry *c = shm_entry_at(sb, ref);
        if (LD(&c->klen) == klen &&
            (uint64_t)(ref - 1) * SHM_GRAN + SHM_ENTRY_HDR + klen <= sb->arena_bytes &&
            nori__shm_key_equal(c, key, klen)) {
            e = c;
            eref = ref;
            break;
        }
        ref = __atomic_load_n(&c->hnext, __ATOMIC_ACQUIRE);
    }
    if (e == NULL) {
        SHM_FENCE_ACQUIRE();
        return atomic_load_explicit(&bk->seq, memory_order_relaxed) == seq ? R_MISS : R_RETRY;
    }
    unsigned cls = LD(&e->cls), flags = LD(&e->flags);
    size_t vlen = LD(&e->vlen);
    int64_t exp = LD(&e->expires);
    _Atomic uint64_t *sw = shm_stamp_word(sb, e);
    if (!entry_sane(sb, eref, klen, vlen, cls, flags) || sw == NULL)
        return R_RETRY;
    int r;
    if (shm_expired(exp, now))
        r = R_EXPIRED;
    else if (vlen > atomic_load_explicit(&sb->base.max_value, memory_order_relaxed))
        r = R_TOOBIG; /* reported only if the counter confirms the length */
    else
        r = copy_value(sb, e, klen, vlen, flags, rq);
    if (r == R_RETRY || r == R_ERR)
        return r;
    SHM_FENCE_ACQUIRE();
    if (atomic_load_explicit(&bk->seq, memory_order_relaxed) != seq)
        return R_RETRY;
    if (r == R_TOOBIG) {
        rq->vlen = vlen;
        value_over_limit(sb, key, vlen);
    }
    *stamp = sw;
    return r;
}

/* Records a read's access: a plain store into the entry's stamp slot (a
 * store, not a locked instruction, so that two processes reading the same
 * entries do not stall each other). A reader late on an entry freed since
 * it checked it writes into a slot only: at worst it makes another entry
 * look recently used. */
static void touch(_Atomic uint64_t *stamp)
{
    atomic_store_explicit(stamp, nori__shm_next_stamp() | SHM_TOUCHED, memory_order_relaxed);
}

/* The locked read: removes an expired entry, repairs the shard if its last
 * writer died. */
static int read_locked(shm_backend *sb, const char *key, size_t klen, uint64_t h, int64_t now,
                       read_req *rq)
{
    shm_shard *s = shm_shard_of(sb, h);
    shm_bucket *bk = shm_bucket_of(sb, h);
    int rc = nori__shm_shard_lock(sb, s);
    if (rc != NORI_OK)
        return rc;
    uint32_t *link = nori__shm_do_find_link(sb, s, bk, key, klen);
    if (link == NULL) {
        rc = nori__shm_do_chain_broken(sb, s, rq->into ? "get_into" : "get", key);
        nori__shm_shard_unlock(sb, s);
        return rc;
    }
    uint32_t ref = LD(link);
    if (ref != 0 && shm_expired(LD(&shm_entry_at(sb, ref)->expires), now)) {
        nori__shm_log_w64(sb, &s->log, &s->expired, LD(&s->expired) + 1);
        nori__shm_do_remove(sb, s, bk, link);
        nori__shm_do_commit(sb, s);
        ref = 0;
    }
    if (ref == 0) {
        nori__shm_shard_unlock(sb, s);
        count_read(sb, false);
        return NORI_MISS;
    }
    shm_entry *e = shm_entry_at(sb, ref);
    size_t vlen = LD(&e->vlen);
    if (vlen > atomic_load_explicit(&sb->base.max_value, memory_order_relaxed)) {
        nori__shm_shard_unlock(sb, s);
        return value_over_limit(sb, key, vlen);
    }
    rc = copy_value(sb, e, LD(&e->klen), vlen, LD(&e->flags), rq) == R_HIT ? NORI_OK
                                                                            : NORI_ENOMEM;
    if (rc == NORI_OK && !(rq->into && vlen > rq->cap)) {
        touch(&sb->stamps[LD(&e->slot)]);
        count_read(sb, true);
    }
    nori__shm_shard_unlock(sb, s);
    return rc;
}

static int shm_read(shm_backend *sb, const char *op, const char *key, size_t klen, read_req *rq)
{
    int rc = nori__shm_refuse_reentry(sb, op);
    if (rc != NORI_OK)
        return rc;
    uint64_t h = shm_hash(sb, key, klen);
    shm_bucket *bk = shm_bucket_of(sb, h);
    int64_t now = shm_now_coarse_ms();
    for (int t = 0; t < SHM_READ_TRIES; t++) {
        _Atomic uint64_t *stamp = NULL;
        int r = try_read(sb, bk, key, klen, now, rq, &stamp);
        if (r == R_HIT) {
            if (!(rq->into && rq->vlen > rq->cap)) {
                touch(stamp);
                count_read(sb, true);
            }
            return NORI_OK;
        }
        if (r == R_MISS) {
            count_read(sb, false);
            return NORI_MISS;
        }
        if (r == R_TOOBIG)
            return NORI_ETOOBIG;
        if (r == R_ERR)
            return NORI_ENOMEM;
        if (r == R_EXPIRED)
            break;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    return read_locked(sb, key, klen, h, now, rq);
}

int nori__shm_get(nori_backend *b, const char *key, size_t klen, nori_buf *out)
{
    shm_backend *sb = (shm_backend *)b;
    read_req rq = {0};
    int rc = shm_read(sb, "get", key, klen, &rq);
    if (rc == NORI_OK) {
        rq.tmp[rq.vlen] = '\0';
        out->data = rq.tmp;
        out->len = rq.vlen;
        return NORI_OK;
    }
    free(rq.tmp);
    return rc;
}

int nori__shm_get_into(nori_backend *b, const char *key, size_t klen, void *buf, size_t cap,
                       size_t *len)
{
    shm_backend *sb = (shm_backend *)b;
    read_req rq = {.into = true, .buf = buf, .cap = cap, .len = len};
    int rc = shm_read(sb, "get_into", key, klen, &rq);
    if (rc == NORI_OK && rq.vlen > cap)
        return nori__fail(NORI_ETOOBIG, "get_into '%.64s': the value is %zu bytes, the buffer "
                                        "holds %zu", key, rq.vlen, cap);
    if (rc != NORI_OK && len != NULL && rc != NORI_ETOOBIG)
        *len = 0;
    return rc;
}
