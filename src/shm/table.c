// SPDX-License-Identifier: MIT
/*
 * A shard of the shared-memory segment: bucket chains, the LRU list with
 * its lazy placement of entries touched by readers, and the changes a
 * locked section makes to them, every store through the shard's undo log
 * (lock.c). Every do_* function is called with the shard's lock held.
 *
 * What lock-free readers see (ops.c): a chain change that can make a
 * reader follow a chunk about to be freed (an unlink, a replacement) or
 * copy half-written bytes (a rewrite in place) is bracketed by the bucket's
 * sequence counter (odd, then the next even value). Linking a new entry at
 * the head needs no bracket (the reader sees the old head or the complete
 * new entry), but its counter is still logged, so that a rollback of the
 * link moves it on (lock.c) and a reader that saw the entry fails its check.
 */
#include "shm/internal.h"

#include "error.h"

#include <stdio.h>
#include <stdlib.h>


static _Thread_local uint64_t last_stamp;

uint64_t nori__shm_next_stamp(void)
{
    uint64_t s = shm_ticks() << 1;
    if (s <= last_stamp)
        s = last_stamp + 2;
    last_stamp = s;
    return s;
}

/* Copies a value of vlen bytes out of entry e into dst. For a LARGE entry
 * the page chain is followed with every index checked; false when it leaves
 * the arena (a writer changed it: the caller's counter check fails too). */
bool nori__shm_read_value(const shm_backend *sb, const shm_entry *e, size_t klen, unsigned flags,
                          size_t vlen, void *dst)
{
    unsigned char *d = dst;
    if (!(flags & SHM_LARGE)) {
        nori__shm_copy_out(d, e->data + klen, vlen);
        return true;
    }
    uint32_t idx;
    nori__shm_copy_out(&idx, e->data + klen, sizeof idx);
    size_t done = 0;
    while (done < vlen) {
        if (idx == 0 || idx > sb->npages)
            return false;
        size_t n = vlen - done < SHM_PAGE ? vlen - done : SHM_PAGE;
        nori__shm_copy_out(d + done, shm_page_data(sb, idx - 1), n);
        done += n;
        idx = LD(&sb->pages[idx - 1].next);
    }
    return true;
}

void nori__shm_fill_entry(shm_backend *sb, shm_entry *e, const char *key, size_t klen,
                          const void *val, size_t vlen, int64_t expires)
{
    ST(&e->expires, expires);
    ST(&e->vlen, (uint32_t)vlen);
    ST(&e->klen, (uint16_t)klen);
    nori__shm_copy_in(e->data, key, klen);
    if (!(LD(&e->flags) & SHM_LARGE)) {
        nori__shm_copy_in(e->data + klen, val, vlen);
        return;
    }
    uint32_t idx;
    nori__shm_copy_out(&idx, e->data + klen, sizeof idx);
    const unsigned char *v = val;
    for (size_t done = 0; done < vlen;) {
        size_t n = vlen - done < SHM_PAGE ? vlen - done : SHM_PAGE;
        nori__shm_copy_in(shm_page_data(sb, idx - 1), v + done, n);
        done += n;
        idx = LD(&sb->pages[idx - 1].next);
    }
}

static shm_entry *E(const shm_backend *sb, uint32_t ref)
{
    return shm_entry_at(sb, ref);
}

#define LOG32(p, v) nori__shm_log_w32(sb, &s->log, (p), (v))
#define LOG64(p, v) nori__shm_log_w64(sb, &s->log, (p), (v))

/* ---- the LRU list ---- */

static void do_lru_unlink(shm_backend *sb, shm_shard *s, shm_entry *e)
{
    uint32_t prev = LD(&e->lru_prev), next = LD(&e->lru_next);
    if (prev != 0)
        LOG32(&E(sb, prev)->lru_next, next);
    else
        LOG32(&s->lru_head, next);
    if (next != 0)
        LOG32(&E(sb, next)->lru_prev, prev);
    else
        LOG32(&s->lru_tail, prev);
}

/* Links e in front of `at` (0: at the tail end). */
static void do_lru_link_before(shm_backend *sb, shm_shard *s, uint32_t ref, uint32_t at)
{
    shm_entry *e = E(sb, ref);
    uint32_t prev = at != 0 ? LD(&E(sb, at)->lru_prev) : LD(&s->lru_tail);
    LOG32(&e->lru_next, at);
    LOG32(&e->lru_prev, prev);
    if (prev != 0)
        LOG32(&E(sb, prev)->lru_next, ref);
    else
        LOG32(&s->lru_head, ref);
    if (at != 0)
        LOG32(&E(sb, at)->lru_prev, ref);
    else
        LOG32(&s->lru_tail, ref);
}

/* The stamp of a linked entry (its slot is valid: under the lock). */
static _Atomic uint64_t *stamp_word(const shm_backend *sb, const shm_entry *e)
{
    return &sb->stamps[LD(&e->slot)];
}

static uint64_t stamp_of(const shm_backend *sb, const shm_entry *e)
{
    return atomic_load_explicit(stamp_word(sb, e), memory_order_relaxed);
}

/* Moves a touched entry to its place by stamp: behind every newer one. */
static void do_place_by_stamp(shm_backend *sb, shm_shard *s, uint32_t ref, uint64_t st)
{
    do_lru_unlink(sb, s, E(sb, ref));
    uint32_t at = LD(&s->lru_head);
    while (at != 0 && (stamp_of(sb, E(sb, at)) & ~(uint64_t)SHM_TOUCHED) > st)
        at = LD(&E(sb, at)->lru_next);
    do_lru_link_before(sb, s, ref, at);
}

uint32_t nori__shm_do_oldest(shm_backend *sb, shm_shard *s, uint32_t keep)
{
    uint64_t limit = LD(&s->count) * 2 + 2;
    for (;;) {
        uint32_t ref = LD(&s->lru_tail);
        if (ref != 0 && ref == keep)
            ref = LD(&E(sb, ref)->lru_prev);
        if (ref == 0)
            return 0;
        shm_entry *e = E(sb, ref);
        uint64_t w = stamp_of(sb, e);
        if (!(w & SHM_TOUCHED) || limit-- == 0)
            return ref;
        /* Each move is a consistent list: commit it on its own (the log
         * stays small however many entries are placed). */
        if (shm_log_room(&s->log) < 16)
            nori__shm_do_commit(sb, s);
        do_place_by_stamp(sb, s, ref, w & ~(uint64_t)SHM_TOUCHED);
        nori__shm_do_commit(sb, s);
        /* Cleared only after the move committed: a rollback of the move
         * leaves the entry touched, and it is placed again. A reader's
         * newer touch makes the swap fail: the entry stays touched. */
        atomic_compare_exchange_strong_explicit(stamp_word(sb, e), &w, w & ~(uint64_t)SHM_TOUCHED,
                                                memory_order_relaxed, memory_order_relaxed);
    }
}

void nori__shm_do_publish_tail(shm_backend *sb, shm_shard *s)
{
    uint32_t ref = nori__shm_do_oldest(sb, s, 0);
    uint64_t st = ref != 0 ? stamp_of(sb, E(sb, ref)) & ~(uint64_t)SHM_TOUCHED : SHM_EMPTY_STAMP;
    atomic_store_explicit(&sb->g->tail_stamps[shm_shard_no(sb, s)], st, memory_order_relaxed);
}

/* ---- chains ---- */

/* Whether the step-th entry of a chain (from 1), at ref, can be followed:
 * inside the arena, and not past the longest chain a sound segment holds
 * (every linked entry in one bucket). A chain that fails this was written
 * by a faulty process mapping the segment: no death leaves one (every
 * store of a section is logged and rolled back). */
static inline bool chain_step_ok(const shm_backend *sb, uint32_t ref, uint64_t step)
{
    return shm_ref_ok(sb, ref) && step <= sb->max_keys + 1;
}

uint32_t *nori__shm_do_find_link(shm_backend *sb, shm_shard *s, shm_bucket *bk, const char *key,
                                 size_t klen)
{
    (void)s;
    uint32_t *l = (uint32_t *)&bk->head;
    uint32_t ref;
    uint64_t steps = 0;
    while ((ref = LD(l)) != 0) {
        if (!chain_step_ok(sb, ref, ++steps))
            return NULL;
        shm_entry *e = E(sb, ref);
        if (LD(&e->klen) == klen &&
            (uint64_t)(ref - 1) * SHM_GRAN + SHM_ENTRY_HDR + klen <= sb->arena_bytes &&
            memcmp(e->data, key, klen) == 0)
            return l;
        l = &e->hnext;
    }
    return l;
}

void nori__shm_do_insert(shm_backend *sb, shm_shard *s, shm_bucket *bk, uint32_t ref,
                         uint64_t stamp)
{
    shm_entry *e = E(sb, ref);
    atomic_store_explicit(stamp_word(sb, e), stamp, memory_order_relaxed);
    ST(&e->hnext, atomic_load_explicit(&bk->head, memory_order_relaxed));
    nori__shm_log_seq(sb, &s->log, bk); /* moved on by a rollback (see above) */
    /* Release: a reader that sees the new head sees the entry's bytes. */
    SHM_FENCE_RELEASE();
    LOG32((uint32_t *)&bk->head, ref);
    bool was_empty = LD(&s->lru_head) == 0;
    do_lru_link_before(sb, s, ref, LD(&s->lru_head));
    LOG64(&s->count, LD(&s->count) + 1);
    LOG64(&s->bytes, LD(&s->bytes) + shm_entry_charge(e));
    if (was_empty)
        nori__shm_do_publish_tail(sb, s);
}

void nori__shm_do_replace(shm_backend *sb, shm_shard *s, shm_bucket *bk, uint32_t *link,
                          uint32_t ref, uint64_t stamp)
{
    uint32_t old = LD(link);
    shm_entry *o = E(sb, old), *e = E(sb, ref);
    bool was_tail = LD(&s->lru_tail) == old;
    atomic_store_explicit(stamp_word(sb, e), stamp, memory_order_relaxed);
    ST(&e->hnext, LD(&o->hnext));
    nori__shm_do_seq_begin(sb, s, bk);
    LOG32(link, ref);
    nori__shm_do_seq_end(bk);
    do_lru_unlink(sb, s, o);
    do_lru_link_before(sb, s, ref, LD(&s->lru_head));
    uint64_t oc = shm_entry_charge(o), nc = shm_entry_charge(e);
    LOG64(&s->bytes, LD(&s->bytes) + nc - oc);
    nori__shm_log_pending(sb, &s->log, old, 0, oc);
    if (was_tail || LD(&s->lru_tail) == ref)
        nori__shm_do_publish_tail(sb, s);
}

static void do_unlink_at(shm_backend *sb, shm_shard *s, shm_bucket *bk, uint32_t *link)
{
    uint32_t ref = LD(link);
    shm_entry *e = E(sb, ref);
    bool was_tail = LD(&s->lru_tail) == ref;
    nori__shm_do_seq_begin(sb, s, bk);
    LOG32(link, LD(&e->hnext));
    nori__shm_do_seq_end(bk);
    do_lru_unlink(sb, s, e);
    uint64_t c = shm_entry_charge(e);
    LOG64(&s->count, LD(&s->count) - 1);
    LOG64(&s->bytes, LD(&s->bytes) - c);
    nori__shm_log_pending(sb, &s->log, ref, 1, c);
    if (was_tail)
        nori__shm_do_publish_tail(sb, s);
}

void nori__shm_do_remove(shm_backend *sb, shm_shard *s, shm_bucket *bk, uint32_t *link)
{
    do_unlink_at(sb, s, bk, link);
}

void nori__shm_do_remove_ref(shm_backend *sb, shm_shard *s, uint32_t ref)
{
    shm_entry *e = E(sb, ref);
    uint64_t h = shm_hash(sb, e->data, LD(&e->klen));
    shm_bucket *bk = &sb->buckets[(size_t)shm_shard_no(sb, s) * (sb->bucket_mask + 1) +
                                  ((uint32_t)h & sb->bucket_mask)];
    uint32_t *l = (uint32_t *)&bk->head;
    uint64_t steps = 0;
    while (LD(l) != ref) {
        if (LD(l) == 0 || ++steps > sb->max_keys + 1) {
            fprintf(stderr, "libnoricache: shm backend: an entry of the LRU list is not in "
                            "its bucket (the segment is corrupted)\n");
            abort();
        }
        l = &E(sb, LD(l))->hnext;
    }
    do_unlink_at(sb, s, bk, l);
}

void nori__shm_do_rewrite(shm_backend *sb, shm_shard *s, shm_bucket *bk, uint32_t ref,
                          const void *val, size_t vlen, int64_t expires, uint64_t stamp)
{
    shm_entry *e = E(sb, ref);
    size_t klen = LD(&e->klen);
    nori__shm_do_seq_begin(sb, s, bk);
    nori__shm_log_bytes(sb, &s->log, e->data + klen, vlen);
    LOG32(&e->vlen, (uint32_t)vlen);
    LOG64((uint64_t *)&e->expires, (uint64_t)expires);
    nori__shm_copy_in(e->data + klen, val, vlen / 2);
    nori__shm_crash_point(); /* a torn rewrite, for the tests */
    nori__shm_copy_in(e->data + klen + vlen / 2, (const char *)val + vlen / 2, vlen - vlen / 2);
    nori__shm_do_seq_end(bk);
    nori__shm_do_touch(sb, s, ref, stamp);
}

/* A write's access, recorded as a read's is: a newer stamp and TOUCHED, the
 * entry placed by the next writer that needs the order (do_oldest). Not
 * logged: a rolled-back write leaves a stamp that is only too new, which
 * the order tolerates (a touch is never undone either). */
void nori__shm_do_touch(shm_backend *sb, shm_shard *s, uint32_t ref, uint64_t stamp)
{
    (void)s;
    atomic_store_explicit(stamp_word(sb, E(sb, ref)), stamp | SHM_TOUCHED, memory_order_relaxed);
}

/* Commits when another removal might not fit the log or the pending list. */
int nori__shm_do_checkpoint(shm_backend *sb, shm_shard *s)
{
    if (shm_log_room(&s->log) >= 40 &&
        atomic_load_explicit(&s->log.npending, memory_order_relaxed) < SHM_PENDING_CAP)
        return NORI_OK;
    nori__shm_do_commit(sb, s);
    if (atomic_load_explicit(&s->log.npending, memory_order_relaxed) >= SHM_PENDING_CAP)
        return nori__fail(NORI_EBACKEND, "shm segment '%s': the arena lock is not coming free",
                          sb->name);
    return NORI_OK;
}

/*
 * Whether bk's chain can be walked by a walk that removes entries as it
 * goes (delete_prefix, the sweep): every ref inside the arena, and no more
 * entries than s holds. A removing walk cannot rely on the step bound
 * alone: on a cycle it would meet an entry it removed and remove it twice
 * before the bound. Checked once per bucket; removals only shorten it.
 */
bool nori__shm_do_chain_sound(const shm_backend *sb, const shm_shard *s, const shm_bucket *bk)
{
    uint64_t count = LD(&s->count), steps = 0;
    for (uint32_t ref = atomic_load_explicit(&bk->head, memory_order_relaxed); ref != 0;
         ref = LD(&E(sb, ref)->hnext))
        if (!shm_ref_ok(sb, ref) || ++steps > count)
            return false;
    return true;
}

void nori__shm_do_reset_shard(shm_backend *sb, shm_shard *s)
{
    size_t nb = (size_t)sb->bucket_mask + 1;
    for (size_t i = 0; i < nb; i++) {
        shm_bucket *bk = shm_shard_bucket(sb, s, i);
        uint32_t v = atomic_load_explicit(&bk->seq, memory_order_relaxed);
        atomic_store_explicit(&bk->seq, v | 1u, memory_order_relaxed);
        SHM_FENCE_RELEASE();
        atomic_store_explicit(&bk->head, 0, memory_order_relaxed);
        atomic_store_explicit(&bk->seq, (v | 1u) + 1u, memory_order_release);
    }
    /* The room its entries held is given back; their chunks are not found
     * (the chains may be torn), so they stay allocated. Arena lock held. */
    uint64_t count = LD(&s->count), bytes = LD(&s->bytes);
    shm_global *g = sb->g;
    ST(&g->places, LD(&g->places) >= count ? LD(&g->places) - count : 0);
    ST(&g->bytes, LD(&g->bytes) >= bytes ? LD(&g->bytes) - bytes : 0);
    ST(&s->lru_head, 0);
    ST(&s->lru_tail, 0);
    ST(&s->count, 0);
    ST(&s->bytes, 0);
    atomic_store_explicit(&s->log.npending, 0, memory_order_relaxed);
    atomic_store_explicit(&s->log.n, 0, memory_order_release);
    atomic_store_explicit(&g->tail_stamps[shm_shard_no(sb, s)], SHM_EMPTY_STAMP,
                          memory_order_relaxed);
}

bool nori__shm_do_audit_shard(shm_backend *sb, shm_shard *s, uint64_t *entries, uint64_t *bytes)
{
    uint64_t count = LD(&s->count), listed = 0, charged = 0;
    uint32_t prev = 0;
    for (uint32_t r = LD(&s->lru_head); r != 0; r = LD(&E(sb, r)->lru_next)) {
        if (!shm_ref_ok(sb, r) || LD(&E(sb, r)->lru_prev) != prev || ++listed > count)
            return false;
        charged += shm_entry_charge(E(sb, r));
        prev = r;
    }
    if (prev != LD(&s->lru_tail) || listed != count || charged != LD(&s->bytes))
        return false;
    uint64_t hashed = 0;
    size_t nb = (size_t)sb->bucket_mask + 1;
    unsigned idx = shm_shard_no(sb, s);
    for (size_t i = 0; i < nb; i++) {
        shm_bucket *bk = shm_shard_bucket(sb, s, i);
        if (atomic_load_explicit(&bk->seq, memory_order_relaxed) & 1u)
            return false;
        uint32_t r = atomic_load_explicit(&bk->head, memory_order_relaxed);
        for (; r != 0; r = LD(&E(sb, r)->hnext)) {
            shm_entry *e = E(sb, r);
            uint64_t h = shm_hash(sb, e->data, LD(&e->klen));
            if (!shm_ref_ok(sb, r) || shm_shard_index(h) != idx ||
                ((uint32_t)h & sb->bucket_mask) != i || LD(&e->slot) >= sb->nslots ||
                !(sb->slotmap[LD(&e->slot) / 64] >> (LD(&e->slot) % 64) & 1) ||
                ++hashed > count)
                return false;
        }
    }
    uint64_t published = atomic_load_explicit(&sb->g->tail_stamps[idx], memory_order_relaxed);
    if ((count == 0) != (published == SHM_EMPTY_STAMP))
        return false;
    if (atomic_load_explicit(&s->log.n, memory_order_relaxed) != 0 ||
        atomic_load_explicit(&s->log.npending, memory_order_relaxed) != 0)
        return false;
    *entries += count;
    *bytes += charged;
    return hashed == count;
}
