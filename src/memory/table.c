/*
 * The memory backend's shard internals: the hash table (chains readers walk
 * without a lock, bucket arrays replaced whole when they grow or shrink),
 * the recency list with its lazy placement of entries touched by readers,
 * and the reclamation of unlinked entries (epoch.c). Every do_* function is
 * called with the shard's lock held.
 */
#include "memory/internal.h"

#include "memory/epoch.h"

#include <stdlib.h>
#include <string.h>

/* ---- reclamation ---- */

/* After finding a reader active, this many retires on the thread go to
 * the limbo without looking again: looking reads the readers' slot lines,
 * which costs them a cache miss on their next get. */
#define RETIRE_SKIP_LOOKS 64

static _Thread_local unsigned retire_skip;

/* Frees an unlinked entry at once when no reader is in a read section (the
 * common case without concurrent gets: the entry is still in cache), else
 * puts it aside until no reader can hold it. The unlink was a seq_cst
 * store (see nori__epoch_any_reader()). */
static void do_retire(mem_shard *s, mem_entry *e)
{
    if (retire_skip > 0) {
        retire_skip--;
    } else if (!nori__epoch_any_reader()) {
        nori__mem_entry_free(s->mb, e);
        return;
    } else {
        retire_skip = RETIRE_SKIP_LOOKS;
    }
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
            nori__mem_entry_free(s->mb, e);
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
mem_entry *nori__mem_do_oldest(mem_shard *s, const mem_entry *keep)
{
    size_t limit = atomic_load_explicit(&s->count, memory_order_relaxed) * 2 + 2;
    for (;;) {
        mem_entry *e = s->lru_tail;
        if (e != NULL && e == keep)
            e = e->lru_prev;
        if (e == NULL)
            return NULL;
        if (!(entry_flags(e) & TOUCHED) || limit-- == 0)
            return e;
        set_touched(e, false);
        do_place_by_stamp(s, e);
    }
}

/* Publishes the shard's oldest stamp (placing touched tail entries first). */
void nori__mem_do_publish_tail(mem_shard *s)
{
    mem_entry *e = nori__mem_do_oldest(s, NULL);
    atomic_store_explicit(s->tail_stamp, e != NULL ? stamp_of(e) : EMPTY_STAMP,
                          memory_order_relaxed);
}

/* ---- the hash table ---- */

mem_table *nori__mem_table_new(size_t nbuckets)
{
    mem_table *t = calloc(1, sizeof *t + nbuckets * sizeof(mem_link));
    if (t != NULL)
        t->mask = nbuckets - 1;
    return t;
}

/* Returns the link that points at the entry for `key`, or the empty link at
 * the end of its bucket's chain. */
mem_link *nori__mem_do_find_link(mem_shard *s, const char *key, size_t klen, uint64_t hash)
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
    mem_table *nt = nori__mem_table_new(nbuckets);
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

/* Unlinks the entry at link `l` from the table and the list, gives its room
 * back and retires it. */
void nori__mem_do_remove(mem_shard *s, mem_link *l)
{
    nori__mem_give_back(s->mb, 1, nori__mem_do_remove_keep_room(s, l));
}

size_t nori__mem_do_remove_keep_room(mem_shard *s, mem_link *l)
{
    mem_entry *e = link_get(l);
    bool was_tail = s->lru_tail == e;
    /* seq_cst: ordered before do_retire()'s look at the readers */
    atomic_store_explicit(l, link_get(&e->hnext), memory_order_seq_cst);
    lru_unlink(s, e);
    size_t charge = entry_charge(e);
    SHARD_ADD(s->count, -1);
    SHARD_ADD(s->bytes, -charge);
    if (was_tail)
        nori__mem_do_publish_tail(s);
    do_retire(s, e);
    return charge;
}

/* Removes e, found by walking its bucket (e is known to be linked). */
size_t nori__mem_do_remove_entry(mem_shard *s, mem_entry *e)
{
    mem_table *t = do_table(s);
    mem_link *l = &t->b[entry_hash(s->mb, e) & t->mask];
    while (link_get(l) != e)
        l = &link_get(l)->hnext;
    return nori__mem_do_remove_keep_room(s, l);
}

/* Links a new key's entry in (its room is taken) as the most recently used. */
void nori__mem_do_insert(mem_shard *s, mem_entry *e, uint64_t hash, uint64_t stamp)
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
        nori__mem_do_publish_tail(s);
}

/* Replaces the entry at link `l` by e, which becomes the most recently used. */
void nori__mem_do_replace(mem_shard *s, mem_link *l, mem_entry *e, uint64_t stamp)
{
    mem_entry *old = link_get(l);
    bool was_tail = s->lru_tail == old;
    atomic_store_explicit(&e->stamp, stamp, memory_order_relaxed);
    atomic_store_explicit(&e->hnext, link_get(&old->hnext), memory_order_relaxed);
    atomic_store_explicit(l, e, memory_order_seq_cst); /* see nori__mem_do_remove() */
    lru_unlink(s, old);
    lru_link_before(s, e, s->lru_head);
    SHARD_ADD(s->bytes, entry_charge(e) - entry_charge(old));
    if (was_tail || s->lru_tail == e)
        nori__mem_do_publish_tail(s);
    do_retire(s, old);
}

/* Removes the shard's entries whose key starts with prefix (every entry
 * when plen is 0). Called with the shard's lock held. */
void nori__mem_do_delete_prefix(mem_shard *s, const char *prefix, size_t plen)
{
    mem_table *t = do_table(s);
    for (size_t i = 0; i <= t->mask; i++) {
        mem_link *l = &t->b[i];
        mem_entry *e;
        while ((e = link_get(l)) != NULL) {
            if (entry_klen(e) >= plen && memcmp(entry_key(e), prefix, plen) == 0)
                nori__mem_do_remove(s, l); /* *l is now the next entry of the chain */
            else
                l = &e->hnext;
        }
    }
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
                nori__mem_do_remove(s, l);
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

/* Frees every entry, retired or linked, of a shard nobody uses any more. */
void nori__mem_free_shard(mem_shard *s)
{
    mem_entry *e = s->lru_head;
    while (e != NULL) {
        mem_entry *next = e->lru_next;
        nori__mem_entry_free(s->mb, e);
        e = next;
    }
    e = s->limbo;
    while (e != NULL) {
        mem_entry *next = e->lru_next;
        nori__mem_entry_free(s->mb, e);
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

bool nori__mem_do_audit_shard(mem_shard *s, size_t *bytes)
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
