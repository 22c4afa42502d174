// SPDX-License-Identifier: MIT
/*
 * The memory backend's shard internals: the hash table (buckets of seven
 * tagged slots that readers probe without a lock, internal.h; tables
 * replaced whole when they grow or shrink),
 * the recency list with its lazy placement of entries touched by readers,
 * and the reclamation of unlinked entries (epoch.c). Every do_* function is
 * called with the shard's lock held.
 */
#include "memory/internal.h"

#include "error.h"
#include "memory/epoch.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

/* ---- reclamation ---- */

/* After finding a reader active, this many retires on the thread go to
 * the limbo without looking again: looking reads the readers' slot lines,
 * which costs them a cache miss on their next get. */
#define RETIRE_SKIP_LOOKS 64

static MEM_THREAD_LOCAL unsigned retire_skip;

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

/* ---- the hash table (layout and reading rules: internal.h, mem_bucket) ---- */

/*
 * Loads, in sixteenths of the slots: a table grows when it passes 14/16
 * and is rebuilt at 11/16; the sweeper shrinks it below 2/16, to 11/16
 * again. Bucket counts are any number (home_bucket()), so between growths a
 * table costs 64/7 bytes per slot at loads of 11/16 to 14/16: 10.4 to 13.3
 * bytes per entry (a power-of-two table would cost up to twice the least).
 * Probes (simulated, uniform hashes): at 11/16, 95% of the keys are in their
 * home bucket, a hit reads 1.07 buckets and a miss 1.3; at 14/16, 87%, 1.4
 * and 4.4. Growing at 13/16 would halve the last figure, but rebuilds every
 * 18% of growth leave more freed tables in malloc's heap: 62 to 65 bytes
 * per entry at 1M entries (bench_memory memory), against 59.8 here.
 */
#define LOAD_GROW 14
#define LOAD_FILL 11
#define LOAD_SHRINK 2
#define LOAD_DEN 16
/* Beyond this many buckets a shard's table does not grow (7.5 billion
 * slots; home_bucket() takes up to 2^32). */
#define MAX_BUCKETS ((size_t)1 << 30)

static size_t slots_of(const mem_table *t)
{
    return t->nbuckets * BUCKET_SLOTS;
}

/* The buckets that hold `count` entries at load LOAD_FILL. */
static size_t buckets_for(size_t count)
{
    size_t per = BUCKET_SLOTS * LOAD_FILL;
    size_t n = (count * LOAD_DEN + per - 1) / per;
    return n < INITIAL_BUCKETS ? INITIAL_BUCKETS : n > MAX_BUCKETS ? MAX_BUCKETS : n;
}

mem_table *nori__mem_table_new(size_t nbuckets)
{
    size_t size = sizeof(mem_table) + nbuckets * sizeof(mem_bucket);
    mem_table *t = aligned_alloc(alignof(mem_bucket), size);
    if (t != NULL) {
        memset(t, 0, size);
        t->nbuckets = nbuckets;
    }
    return t;
}

mem_link *nori__mem_do_find_link(mem_shard *s, const char *key, size_t klen, uint64_t hash)
{
    mem_link *l = NULL;
    unsigned flags;
    return table_lookup(do_table(s), key, klen, hash, &l, &flags) != NULL ? l : NULL;
}

static void set_meta(mem_bucket *b, uint64_t meta)
{
    atomic_store_explicit(&b->meta, meta, memory_order_release);
}

static uint64_t get_meta(mem_bucket *b)
{
    return atomic_load_explicit(&b->meta, memory_order_relaxed);
}

/*
 * Puts e, whose tag is `tag`, in the first free slot of its probe sequence.
 * The overflow counts of the buckets it passes are raised first, then the
 * slot is written, then the tag: a reader that finds the tag finds the
 * entry, and one that stopped at a bucket for want of overflow did so
 * before the entry was there. The table has a free slot (load bound).
 */
static mem_link *do_place(mem_table *t, mem_entry *e, unsigned tag)
{
    size_t i = home_bucket(e->hash32, t->nbuckets);
    for (;;) {
        mem_bucket *b = &t->b[i];
        uint64_t meta = get_meta(b);
        uint64_t free_slots = slots_tagged(meta, 0);
        if (free_slots != 0) {
            unsigned k = (unsigned)__builtin_ctzll(free_slots) >> 3;
            atomic_store_explicit(&b->slot[k], e, memory_order_release);
            set_meta(b, meta | (uint64_t)tag << (8 * k));
            return &b->slot[k];
        }
        if (overflow_of(meta) < OVERFLOW_MAX)
            set_meta(b, meta + ((uint64_t)1 << OVERFLOW_SHIFT));
        i = next_bucket(i, t->nbuckets);
    }
}

/*
 * Frees slot l of table t (its entry e stays where it is: the caller
 * retires it). The slot is cleared first, with a seq_cst store (ordered
 * before do_retire()'s look at the readers), then its tag, then the
 * overflow counts the entry added on its way from its home bucket (a
 * saturated count stays: it no longer knows what it counts).
 */
static void do_free_slot(mem_table *t, mem_link *l, const mem_entry *e)
{
    mem_bucket *b = bucket_of(l);
    unsigned k = (unsigned)(l - b->slot);
    atomic_store_explicit(l, NULL, memory_order_seq_cst);
    set_meta(b, get_meta(b) & ~((uint64_t)0xff << (8 * k)));
    size_t at = (size_t)(b - t->b);
    for (size_t i = home_bucket(e->hash32, t->nbuckets); i != at; i = next_bucket(i, t->nbuckets)) {
        uint64_t meta = get_meta(&t->b[i]);
        if (overflow_of(meta) < OVERFLOW_MAX)
            set_meta(&t->b[i], meta - ((uint64_t)1 << OVERFLOW_SHIFT));
    }
}

/*
 * Moves the entries to a new table of `nbuckets` buckets, filled before it
 * is published: the old table does not change after that, so a reader
 * still walking it sees a table that was complete when it loaded it (and
 * every entry it can reach there is kept until it leaves, epoch.c). The
 * tags come from the old table, the home buckets from hash32: no key is
 * hashed again. False when the new table could not be allocated.
 */
static bool do_rehash(mem_shard *s, size_t nbuckets)
{
    mem_table *t = do_table(s);
    mem_table *nt = nori__mem_table_new(nbuckets);
    if (nt == NULL)
        return false;
    for (size_t i = 0; i < t->nbuckets; i++) {
        mem_bucket *b = &t->b[i];
        uint64_t meta = get_meta(b);
        for (unsigned k = 0; k < BUCKET_SLOTS; k++) {
            unsigned tag = (unsigned)(meta >> (8 * k)) & 0xffu;
            if (tag != 0)
                do_place(nt, link_get(&b->slot[k]), tag);
        }
    }
    /* seq_cst, as an unlink: a reader that enters its section after the
     * retirement below loads the new table. */
    atomic_store_explicit(&s->table, nt, memory_order_seq_cst);
    atomic_store_explicit(&s->nbuckets_hint, nt->nbuckets, memory_order_relaxed);
    s->sweep_cursor = 0; /* a pass over the new table starts at its first bucket */
    t->retired_at = nori__epoch_now();
    t->retired = s->retired_tables;
    s->retired_tables = t;
    return true;
}

bool nori__mem_do_reserve(mem_shard *s)
{
    mem_table *t = do_table(s);
    size_t count = atomic_load_explicit(&s->count, memory_order_relaxed);
    size_t slots = slots_of(t);
    if ((count + 1) * LOAD_DEN <= slots * LOAD_GROW)
        return true;
    size_t n = buckets_for(count + 1);
    if (n > t->nbuckets && do_rehash(s, n))
        return true;
    /* Not grown (out of memory, or MAX_BUCKETS): a denser table still works
     * while it has a free slot, only its probes are longer. */
    return count + 1 <= slots;
}

int nori__mem_do_rebuild(mem_shard *s, size_t nbuckets)
{
    size_t count = atomic_load_explicit(&s->count, memory_order_relaxed);
    if (nbuckets == 0 || nbuckets > MAX_BUCKETS ||
        count * LOAD_DEN > nbuckets * BUCKET_SLOTS * LOAD_GROW)
        return nori__fail(NORI_EINVAL, "rebuild_table: %zu buckets cannot hold %zu entries",
                          nbuckets, count);
    return do_rehash(s, nbuckets) ? NORI_OK
                                  : nori__fail(NORI_ENOMEM, "rebuild_table: out of memory");
}

/* Shrinks the table when its load is under 2/16 (the sweeper calls it), so
 * that a store emptied by expiry gives its bucket memory back. */
void nori__mem_do_maybe_shrink(mem_shard *s)
{
    mem_table *t = do_table(s);
    size_t count = atomic_load_explicit(&s->count, memory_order_relaxed);
    if (t->nbuckets <= INITIAL_BUCKETS || count * LOAD_DEN >= slots_of(t) * LOAD_SHRINK)
        return;
    (void)do_rehash(s, buckets_for(count)); /* a failed allocation keeps the larger table */
}

/* Unlinks the entry at slot `l` from the table and the list, gives its room
 * back and retires it. */
void nori__mem_do_remove(mem_shard *s, mem_link *l)
{
    nori__mem_give_back(s->mb, 1, nori__mem_do_remove_keep_room(s, l));
}

size_t nori__mem_do_remove_keep_room(mem_shard *s, mem_link *l)
{
    mem_entry *e = link_get(l);
    bool was_tail = s->lru_tail == e;
    do_free_slot(do_table(s), l, e);
    lru_unlink(s, e);
    size_t charge = entry_charge(e);
    SHARD_ADD(s->count, -1);
    SHARD_ADD(s->bytes, -charge);
    if (was_tail)
        nori__mem_do_publish_tail(s);
    do_retire(s, e);
    return charge;
}

/* Removes e (known to be linked), found from its home bucket by address. */
size_t nori__mem_do_remove_entry(mem_shard *s, mem_entry *e)
{
    mem_table *t = do_table(s);
    for (size_t i = home_bucket(e->hash32, t->nbuckets);; i = next_bucket(i, t->nbuckets))
        for (unsigned k = 0; k < BUCKET_SLOTS; k++)
            if (link_get(&t->b[i].slot[k]) == e)
                return nori__mem_do_remove_keep_room(s, &t->b[i].slot[k]);
}

/* Links a new key's entry in as the most recently used. Its room is taken
 * and a slot reserved (nori__mem_do_reserve()) under the same lock hold. */
void nori__mem_do_insert(mem_shard *s, mem_entry *e, uint64_t hash, uint64_t stamp)
{
    SHARD_ADD(s->count, 1);
    SHARD_ADD(s->bytes, entry_charge(e));
    e->hash32 = (uint32_t)hash;
    atomic_store_explicit(&e->stamp, stamp, memory_order_relaxed);
    do_place(do_table(s), e, hash_tag(hash)); /* its release stores publish e's content */
    bool was_empty = s->lru_head == NULL;
    lru_link_before(s, e, s->lru_head);
    if (was_empty)
        nori__mem_do_publish_tail(s);
}

/* Replaces the entry at slot `l` by e (same key, so same tag and home),
 * which becomes the most recently used. */
void nori__mem_do_replace(mem_shard *s, mem_link *l, mem_entry *e, uint64_t stamp)
{
    mem_entry *old = link_get(l);
    bool was_tail = s->lru_tail == old;
    e->hash32 = old->hash32;
    atomic_store_explicit(&e->stamp, stamp, memory_order_relaxed);
    atomic_store_explicit(l, e, memory_order_seq_cst); /* see do_free_slot() */
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
    for (size_t i = 0; i < t->nbuckets; i++)
        for (unsigned k = 0; k < BUCKET_SLOTS; k++) {
            mem_entry *e = link_get(&t->b[i].slot[k]);
            if (e != NULL && entry_klen(e) >= plen && memcmp(entry_key(e), prefix, plen) == 0)
                nori__mem_do_remove(s, &t->b[i].slot[k]);
        }
}

size_t nori__mem_do_sweep_chunk(mem_shard *s, size_t nbuckets, int64_t now, size_t *examined,
                                size_t *freed)
{
    size_t removed = 0;
    mem_table *t = do_table(s);
    if (nbuckets > t->nbuckets)
        nbuckets = t->nbuckets;
    for (size_t i = 0; i < nbuckets; i++) {
        mem_bucket *b = &t->b[s->sweep_cursor];
        s->sweep_cursor = next_bucket(s->sweep_cursor, t->nbuckets);
        for (unsigned k = 0; k < BUCKET_SLOTS; k++) {
            mem_entry *e = link_get(&b->slot[k]);
            if (e == NULL)
                continue;
            (*examined)++;
            if (is_expired(e, now)) {
                *freed += entry_charge(e);
                SHARD_ADD(s->expired, 1);
                nori__mem_do_remove(s, &b->slot[k]);
                removed++;
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

/*
 * The table's own checks: every slot's tag and its entry agree (tag and
 * hash32 from the key's hash, computed again here), every entry is
 * reachable from its home bucket (each bucket it passes reports overflow),
 * and each overflow count is exact or saturated (once at OVERFLOW_MAX a
 * count no longer changes until the table is rebuilt). *hashed counts the entries.
 */
static bool do_audit_table(mem_shard *s, size_t count, size_t *hashed)
{
    mem_table *t = do_table(s);
    size_t n = t->nbuckets;
    unsigned *passing = calloc(n, sizeof *passing);
    if (passing == NULL)
        return false;
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        uint64_t meta = get_meta(&t->b[i]);
        for (unsigned k = 0; k < BUCKET_SLOTS && ok; k++) {
            unsigned tag = (unsigned)(meta >> (8 * k)) & 0xffu;
            mem_entry *e = link_get(&t->b[i].slot[k]);
            if ((tag == 0) != (e == NULL)) {
                ok = false;
                break;
            }
            if (e == NULL)
                continue;
            uint64_t h = entry_hash(s->mb, e);
            ok = tag == hash_tag(h) && e->hash32 == (uint32_t)h && ++*hashed <= count;
            for (size_t j = home_bucket(e->hash32, n); ok && j != i; j = next_bucket(j, n))
                passing[j]++;
        }
    }
    for (size_t i = 0; i < n && ok; i++) {
        unsigned ov = overflow_of(get_meta(&t->b[i]));
        ok = ov == passing[i] || ov == OVERFLOW_MAX; /* saturated: counts no more */
    }
    free(passing);
    return ok;
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
    if (!do_audit_table(s, count, &hashed))
        return false;
    /* (Stamps taken by different threads are not ordered with their
     * inserts, so the published stamp is only checked for emptiness.) */
    uint64_t published = atomic_load_explicit(s->tail_stamp, memory_order_relaxed);
    if ((count == 0) != (published == EMPTY_STAMP))
        return false;
    *bytes += charged;
    return hashed == count;
}
