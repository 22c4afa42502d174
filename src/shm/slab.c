// SPDX-License-Identifier: MIT
/*
 * The arena of a shared-memory segment: 4 KiB pages, carved into chunks of
 * one size class each (slab), or chained whole for the value of an entry
 * larger than a page. Everything here runs under the arena lock, and every
 * store goes through the arena's undo log, one section per allocation or
 * free, so a death at any instruction is rolled back by the next holder.
 *
 * Page table: one 16-byte record per page. A free page is on the free list
 * (`next`); a slab page has its class, its count of chunks in use and its
 * own free-chunk list (the link lives in a free chunk's `hnext` word), and
 * is on its class's list while it has a free chunk; a page of a large value
 * is linked to the value's next page. A slab page whose last chunk is freed
 * goes back to the free list, so memory moves between classes as the sizes
 * written change.
 */
#include "shm/internal.h"

#include "error.h"

#include <stdio.h>
#include <stdlib.h>

static uint32_t per_page(unsigned c)
{
    return SHM_PAGE / nori__shm_class_size(c);
}

static _Noreturn void corrupted(const char *what)
{
    fprintf(stderr, "libnoricache: shm backend: the arena is corrupted (%s)\n", what);
    abort();
}

static shm_page *page(shm_backend *sb, uint32_t idx1)
{
    if (idx1 == 0 || idx1 > sb->npages)
        corrupted("page index out of range");
    return &sb->pages[idx1 - 1];
}

void nori__shm_slab_init(shm_backend *sb)
{
    for (uint64_t i = 0; i < sb->npages; i++) {
        shm_page *p = &sb->pages[i];
        memset(p, 0, sizeof *p);
        p->next = i + 1 < sb->npages ? (uint32_t)(i + 2) : 0;
    }
    sb->g->free_head = sb->npages > 0 ? 1 : 0;
    sb->g->free_pages = sb->npages;
    /* Slots: all free (the file starts zeroed), but the last word's bits
     * past nslots, which are marked taken so that a search never gives
     * them. */
    uint64_t words = (sb->nslots + 63) / 64, tail = sb->nslots % 64;
    if (tail != 0)
        sb->slotmap[words - 1] = ~(uint64_t)0 << tail;
    sb->g->free_slots = sb->nslots;
}

/* ---- stamp slots ---- */

static uint32_t do_take_slot(shm_backend *sb)
{
    shm_global *g = sb->g;
    uint64_t words = (sb->nslots + 63) / 64, w = LD(&g->slot_cursor) % words;
    for (uint64_t i = 0; i < words; i++, w = (w + 1) % words) {
        uint64_t bits = LD(&sb->slotmap[w]);
        if (bits == ~(uint64_t)0)
            continue;
        unsigned bit = (unsigned)__builtin_ctzll(~bits);
        nori__shm_alog_w64(sb, &sb->slotmap[w], bits | (uint64_t)1 << bit);
        nori__shm_alog_w64(sb, &g->free_slots, LD(&g->free_slots) - 1);
        ST(&g->slot_cursor, w); /* a hint: not logged */
        return (uint32_t)(w * 64 + bit);
    }
    corrupted("no free stamp slot although the count says there is one");
}

static void do_give_slot(shm_backend *sb, uint32_t slot)
{
    if (slot >= sb->nslots)
        corrupted("an entry's stamp slot");
    uint64_t *word = &sb->slotmap[slot / 64], bit = (uint64_t)1 << (slot % 64);
    if (!(LD(word) & bit))
        corrupted("freeing a stamp slot that is free");
    nori__shm_alog_w64(sb, word, LD(word) & ~bit);
    nori__shm_alog_w64(sb, &sb->g->free_slots, LD(&sb->g->free_slots) + 1);
}

uint64_t nori__shm_free_pages(const shm_backend *sb)
{
    return LD(&sb->g->free_pages);
}

/* ---- pages ---- */

static uint32_t do_pop_page(shm_backend *sb)
{
    shm_global *g = sb->g;
    uint32_t idx = LD(&g->free_head);
    shm_page *p = page(sb, idx);
    nori__shm_alog_w32(sb, &g->free_head, LD(&p->next));
    nori__shm_alog_w64(sb, &g->free_pages, LD(&g->free_pages) - 1);
    return idx;
}

static void do_push_page(shm_backend *sb, uint32_t idx)
{
    shm_global *g = sb->g;
    shm_page *p = page(sb, idx);
    nori__shm_alog_w32(sb, &p->next, LD(&g->free_head));
    nori__shm_alog_w32(sb, &g->free_head, idx);
    nori__shm_alog_w64(sb, &g->free_pages, LD(&g->free_pages) + 1);
}

/* Takes n pages off the free list as one chain; returns the first. */
static uint32_t do_take_pages(shm_backend *sb, uint64_t n)
{
    shm_global *g = sb->g;
    uint32_t first = LD(&g->free_head), last = first;
    for (uint64_t i = 1; i < n; i++)
        last = LD(&page(sb, last)->next);
    shm_page *lp = page(sb, last);
    nori__shm_alog_w32(sb, &g->free_head, LD(&lp->next));
    nori__shm_alog_w32(sb, &lp->next, 0);
    nori__shm_alog_w64(sb, &g->free_pages, LD(&g->free_pages) - n);
    return first;
}

/* Puts the chain of n pages starting at first back on the free list. */
static void do_give_pages(shm_backend *sb, uint32_t first, uint64_t n)
{
    shm_global *g = sb->g;
    uint32_t last = first;
    for (uint64_t i = 1; i < n; i++)
        last = LD(&page(sb, last)->next);
    nori__shm_alog_w32(sb, &page(sb, last)->next, LD(&g->free_head));
    nori__shm_alog_w32(sb, &g->free_head, first);
    nori__shm_alog_w64(sb, &g->free_pages, LD(&g->free_pages) + n);
}

/* ---- a class's list of pages with free chunks ---- */

static void do_class_push(shm_backend *sb, unsigned c, uint32_t idx)
{
    shm_global *g = sb->g;
    shm_page *p = page(sb, idx);
    uint32_t head = LD(&g->class_head[c]);
    nori__shm_alog_w32(sb, &p->next, head);
    nori__shm_alog_w32(sb, &p->prev, 0);
    if (head != 0)
        nori__shm_alog_w32(sb, &page(sb, head)->prev, idx);
    nori__shm_alog_w32(sb, &g->class_head[c], idx);
}

static void do_class_unlink(shm_backend *sb, unsigned c, uint32_t idx)
{
    shm_page *p = page(sb, idx);
    uint32_t next = LD(&p->next), prev = LD(&p->prev);
    if (prev != 0)
        nori__shm_alog_w32(sb, &page(sb, prev)->next, next);
    else
        nori__shm_alog_w32(sb, &sb->g->class_head[c], next);
    if (next != 0)
        nori__shm_alog_w32(sb, &page(sb, next)->prev, prev);
}

/* A chunk of class c: from the first page of the class's list, or a page
 * carved now. The caller checked that one of the two exists. */
static shm_entry *do_take_chunk(shm_backend *sb, unsigned c)
{
    shm_global *g = sb->g;
    uint32_t size = nori__shm_class_size(c), n = per_page(c);
    uint32_t idx = LD(&g->class_head[c]);
    if (idx == 0) {
        idx = do_pop_page(sb);
        unsigned char *base = shm_page_data(sb, idx - 1);
        /* A fresh page: its free chain is written without the log (a
         * rollback returns the page to the free list, where its bytes mean
         * nothing). */
        for (uint32_t i = 0; i < n; i++)
            ST(&((shm_entry *)(base + (size_t)i * size))->hnext, i + 1 < n ? i + 2 : 0);
        shm_page *p = page(sb, idx);
        nori__shm_alog_w32(sb, &p->free, 1);
        nori__shm_alog_w32(sb, &p->clsused, (uint32_t)(c + 1)); /* no chunk used yet */
        do_class_push(sb, c, idx);
    }
    shm_page *p = page(sb, idx);
    uint32_t ci = LD(&p->free);
    if (ci == 0 || ci > n)
        corrupted("slab page free list");
    shm_entry *e = (shm_entry *)(shm_page_data(sb, idx - 1) + (size_t)(ci - 1) * size);
    uint32_t next = LD(&e->hnext);
    nori__shm_alog_w32(sb, &p->free, next);
    uint32_t used = SHM_PAGE_USED(LD(&p->clsused)) + 1u;
    nori__shm_alog_w32(sb, &p->clsused, (uint32_t)(c + 1) | used << 16);
    if (next == 0)
        do_class_unlink(sb, c, idx);
    return e;
}

static void do_give_chunk(shm_backend *sb, shm_entry *e, unsigned c)
{
    uint64_t off = (uint64_t)((unsigned char *)e - sb->arena);
    uint32_t idx = (uint32_t)(off / SHM_PAGE) + 1, size = nori__shm_class_size(c);
    shm_page *p = page(sb, idx);
    uint32_t cu = LD(&p->clsused);
    if (SHM_PAGE_CLS(cu) != c + 1 || (off % SHM_PAGE) % size != 0 || SHM_PAGE_USED(cu) == 0)
        corrupted("freeing a chunk that is not one");
    uint32_t ci = (uint32_t)((off % SHM_PAGE) / size) + 1;
    bool was_full = LD(&p->free) == 0;
    uint32_t used = SHM_PAGE_USED(cu) - 1u;
    if (used == 0) {
        if (!was_full)
            do_class_unlink(sb, c, idx);
        nori__shm_alog_w32(sb, &p->clsused, 0);
        nori__shm_alog_w32(sb, &p->free, 0);
        do_push_page(sb, idx);
        return;
    }
    nori__shm_alog_w32(sb, &e->hnext, LD(&p->free));
    nori__shm_alog_w32(sb, &p->free, ci);
    nori__shm_alog_w32(sb, &p->clsused, (uint32_t)(c + 1) | used << 16);
    if (was_full)
        do_class_push(sb, c, idx);
}

static void arena_commit(shm_backend *sb)
{
    atomic_store_explicit(&sb->g->log.n, 0, memory_order_release);
}

/* ---- entries ---- */

int nori__shm_alloc_entry(shm_backend *sb, shm_shard *s, size_t klen, size_t vlen,
                          uint32_t places, uint64_t credit, uint32_t *ref, int *why)
{
    bool large = shm_is_large(klen, vlen);
    int c = shm_class_for(large ? SHM_ENTRY_HDR + klen + 4 : shm_small_size(klen, vlen));
    uint64_t np = large ? shm_value_pages(vlen) : 0;
    uint64_t charge = shm_charge_for(klen, vlen);
    int rc = nori__shm_arena_lock(sb);
    if (rc != NORI_OK)
        return rc;
    shm_global *g = sb->g;
    rc = NORI_OK;
    if (places > 0 && LD(&g->places) + places > sb->max_keys) {
        *why = 1;
        rc = NORI_MISS;
    } else if (LD(&g->bytes) + charge > sb->max_bytes + credit) {
        *why = 2;
        rc = NORI_MISS;
    } else if ((LD(&g->class_head[c]) == 0 ? 1u : 0u) + np > LD(&g->free_pages) ||
               LD(&g->free_slots) == 0) {
        *why = 3;
        rc = NORI_MISS;
    }
    if (rc == NORI_OK) {
        nori__shm_test_point("arena");
        shm_entry *e = do_take_chunk(sb, (unsigned)c);
        /* The header fields a free needs, written before the allocation is
         * recorded (a fresh chunk: no log). */
        ST(&e->cls, (uint8_t)c);
        ST(&e->flags, (uint8_t)(large ? SHM_LARGE : 0));
        ST(&e->klen, (uint16_t)klen);
        ST(&e->slot, do_take_slot(sb));
        if (large) {
            uint32_t first = do_take_pages(sb, np);
            nori__shm_copy_in(e->data + klen, &first, sizeof first);
        }
        nori__shm_alog_w64(sb, &g->places, LD(&g->places) + places);
        nori__shm_alog_w64(sb, &g->bytes, LD(&g->bytes) + charge);
        *ref = shm_ref_of(sb, e);
        nori__shm_log_alloc(sb, &s->log, *ref, places, charge);
        arena_commit(sb);
    }
    nori__shm_arena_unlock(sb);
    return rc;
}

void nori__shm_do_free_entry(shm_backend *sb, uint32_t ref, uint32_t places, uint64_t charge,
                             uint64_t *clear_word, uint64_t clear_value)
{
    shm_global *g = sb->g;
    shm_entry *e = shm_entry_at(sb, ref);
    unsigned c = LD(&e->cls);
    if (c >= SHM_NCLASSES)
        corrupted("an entry's class");
    if (LD(&e->flags) & SHM_LARGE) {
        uint64_t np = (charge - nori__shm_class_size(c)) / SHM_PAGE;
        uint32_t first;
        nori__shm_copy_out(&first, e->data + LD(&e->klen), sizeof first);
        if (np > 0)
            do_give_pages(sb, first, np);
    }
    do_give_slot(sb, LD(&e->slot));
    do_give_chunk(sb, e, c);
    nori__shm_alog_w64(sb, &g->places, LD(&g->places) - places);
    nori__shm_alog_w64(sb, &g->bytes, LD(&g->bytes) - charge);
    if (clear_word != NULL)
        nori__shm_alog_w64(sb, clear_word, clear_value);
    arena_commit(sb);
}

/* ---- commit of a shard's section ---- */


/* Does the pending frees of s (its section committed). Arena lock held.
 * Each free clears its record in its own arena section. */
void nori__shm_do_free_pending(shm_backend *sb, shm_shard *s)
{
    shm_log *lg = &s->log;
    uint32_t np = atomic_load_explicit(&lg->npending, memory_order_relaxed);
    for (uint32_t i = 0; i < np && i < SHM_PENDING_CAP; i++) {
        shm_pending *p = &lg->pending[i];
        uint64_t refp = LD(&p->refp);
        if ((uint32_t)refp == 0)
            continue;
        nori__shm_do_free_entry(sb, (uint32_t)refp, (uint32_t)(refp >> 32), LD(&p->charge),
                                &p->refp, 0);
    }
    atomic_store_explicit(&lg->npending, 0, memory_order_release);
}

int nori__shm_do_commit(shm_backend *sb, shm_shard *s)
{
    shm_log *lg = &s->log;
    atomic_store_explicit(&lg->n, 0, memory_order_release);
    nori__shm_crash_point();
    if (atomic_load_explicit(&lg->npending, memory_order_relaxed) == 0)
        return NORI_OK;
    int rc = nori__shm_arena_lock(sb);
    if (rc != NORI_OK)
        return rc; /* the frees stay pending: the next holder of s does them */
    nori__shm_do_free_pending(sb, s);
    nori__shm_arena_unlock(sb);
    return NORI_OK;
}
