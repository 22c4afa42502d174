// SPDX-License-Identifier: MIT
/*
 * The memory backend's two bounds: room (a place among max_keys, and bytes
 * under the byte bound) is taken by compare-and-swap only while it stays
 * within the bound, and a write that finds none evicts the least recently
 * used entries first (Redis's evict.c plays the same part there). Why this
 * guarantees progress for any number of threads is in store.c's opening
 * comment and at take_room_blocking().
 */
#include "memory/internal.h"

#include "clock.h"

/* ---- room: the two bounds ---- */

/*
 * Takes `places` (0 or 1) and `bytes` when both stay within their bound,
 * else takes nothing.
 *
 * The byte bound may be lowered meanwhile (nori_memory_backend_set_max_bytes).
 * The reservation (a seq_cst compare-and-swap of mb->bytes) is followed by a
 * seq_cst load of the bound, and the lowering stores the bound (seq_cst)
 * before it reads mb->bytes: in the single total order either the lowering
 * sees this reservation in mb->bytes, and waits for it to land and evicts
 * down, or this load sees the new bound and the reservation is checked
 * against it again (and undone when it does not fit). So no room taken
 * after a lowering returned was checked against the old bound only.
 */
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
        for (;;) {
            if (limit != 0 && (b > limit || bytes > limit - b)) {
                nori__mem_give_back(mb, places, 0);
                return false;
            }
            if (!atomic_compare_exchange_weak_explicit(&mb->bytes, &b, b + bytes,
                                                       memory_order_seq_cst,
                                                       memory_order_relaxed))
                continue; /* b is the current value now */
            size_t now = atomic_load_explicit(&mb->max_bytes, memory_order_seq_cst);
            if (now == 0 || (b <= now && bytes <= now - b))
                return true;
            /* Lowered meanwhile, and this reservation does not fit the new
             * bound: undo it and check again. */
            atomic_fetch_sub_explicit(&mb->bytes, bytes, memory_order_relaxed);
            limit = now;
            b = atomic_load_explicit(&mb->bytes, memory_order_relaxed);
        }
    }
    return true;
}

/* Evicts e (the oldest entry), counted as expired when it had expired. */
static size_t do_evict(mem_shard *s, mem_entry *e)
{
    if (is_expired(e, nori__now_coarse_ms()))
        SHARD_ADD(s->expired, 1);
    else
        SHARD_ADD(s->evictions, 1);
    return nori__mem_do_remove_entry(s, e);
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
static bool do_evict_if_oldest(mem_shard *v, uint64_t expected, room *freed)
{
    mem_entry *e = nori__mem_do_oldest(v, NULL);
    if (e == NULL || stamp_of(e) != expected) {
        nori__mem_do_publish_tail(v);
        return false;
    }
    freed->places++;
    freed->bytes += do_evict(v, e);
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
bool nori__mem_evict_one(mem_backend *mb)
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
            if (!shard_trylock(v)) {
                busy |= (uint64_t)1 << idx;
                continue;
            }
        }
        room freed = {0, 0};
        bool done = do_evict_if_oldest(v, oldest, &freed);
        shard_unlock(v);
        nori__mem_give_back(mb, freed.places, freed.bytes);
        if (done)
            return true;
    }
}

/*
 * A wait for writes in flight (room taken, entry not linked yet). Usually
 * they land within microseconds, but an atomic_update of a new key holds
 * its place while the user's callback runs, for as long as it runs: after a
 * few yields, back off to short sleeps (nori__nap_backoff: 50 us doubling to
 * 1 ms) rather than burn a core for the callback's whole duration. *nap_ns
 * starts at 0.
 */
static void wait_for_writes_in_flight(long *nap_ns)
{
    nori__nap_backoff(nap_ns);
}

/*
 * Takes room with no lock held, evicting until it fits. A thread waiting
 * here holds no room, so the room it waits for is held by entries (which it
 * evicts) or by writes in flight, which never wait for room: they land (or
 * give their room back) soon. False when `bytes` exceeds the byte bound
 * (which another thread may have just lowered).
 */
bool nori__mem_take_room_blocking(mem_backend *mb, size_t places, size_t bytes)
{
    long nap_ns = 0;
    for (;;) {
        size_t limit = atomic_load_explicit(&mb->max_bytes, memory_order_relaxed);
        if (limit != 0 && bytes > limit)
            return false;
        if (try_take_room(mb, places, bytes))
            return true;
        if (nori__mem_evict_one(mb)) {
            nap_ns = 0;
            continue;
        }
        wait_for_writes_in_flight(&nap_ns); /* all room is held by writes in flight */
    }
}

/*
 * Brings the bytes held and reserved down to the byte bound in force (just
 * lowered by the caller): evicts, and when nothing is left to evict, waits
 * for the writes in flight, whose room was taken under the old bound, to
 * land (then evicts them) or give their room back. They never wait for
 * room, so this ends; a write that takes room meanwhile is checked against
 * the new bound (try_take_room()). Called with no lock held.
 */
void nori__mem_shrink_to_bound(mem_backend *mb)
{
    long nap_ns = 0;
    for (;;) {
        /* seq_cst: after the caller's store of the bound (try_take_room()) */
        size_t b = atomic_load_explicit(&mb->bytes, memory_order_seq_cst);
        size_t limit = atomic_load_explicit(&mb->max_bytes, memory_order_relaxed);
        if (limit == 0 || b <= limit)
            return;
        if (nori__mem_evict_one(mb))
            nap_ns = 0;
        else
            wait_for_writes_in_flight(&nap_ns);
    }
}

/*
 * Called with s locked: takes `places` and `bytes`, evicting least recently
 * used entries other than `keep` (the entry about to be replaced). Never
 * blocks on another shard's lock (that could deadlock): a busy shard is
 * skipped. False when no room could be made that way: the caller unlocks
 * and takes the room with nori__mem_take_room_blocking() (spinning here while holding
 * a lock could wait for a thread that waits for this lock).
 */
bool nori__mem_make_room_locked(mem_backend *mb, mem_shard *s, const mem_entry *keep, size_t places,
                             size_t bytes)
{
    int own = (int)(s - mb->shards);
    uint64_t busy = 0;
    /* The room of the entries this call evicts stays counted and serves the
     * request first (no give-back and take-again of the counters). */
    room got = {0, 0};
    for (;;) {
        size_t need_p = places > got.places ? places - got.places : 0;
        size_t need_b = bytes > got.bytes ? bytes - got.bytes : 0;
        if ((need_p == 0 && need_b == 0) || try_take_room(mb, need_p, need_b)) {
            nori__mem_give_back(mb, got.places > places ? got.places - places : 0,
                                got.bytes > bytes ? got.bytes - bytes : 0);
            return true;
        }
        mem_entry *mine = nori__mem_do_oldest(s, keep);
        uint64_t other;
        int idx = oldest_tail(mb, busy | ((uint64_t)1 << own), &other);
        if (mine != NULL && (idx < 0 || stamp_of(mine) <= other)) {
            got.places++;
            got.bytes += do_evict(s, mine);
            continue;
        }
        if (idx < 0) {
            nori__mem_give_back(mb, got.places, got.bytes);
            return false;
        }
        mem_shard *v = &mb->shards[idx];
        if (!shard_trylock(v)) {
            busy |= (uint64_t)1 << idx;
            continue;
        }
        (void)do_evict_if_oldest(v, other, &got);
        shard_unlock(v);
    }
}

/*
 * Called with s locked: links `next` for its key, replacing `cur` (the entry
 * now linked for the key, NULL if none: the caller reserved its slot,
 * nori__mem_do_reserve()), once the room it needs beyond
 * `held` is taken (nori__mem_make_room_locked). On success the room is settled (the
 * excess given back, *held emptied) and true is returned; on failure
 * nothing changed and false is returned.
 */
bool nori__mem_do_commit(mem_backend *mb, mem_shard *s, const char *key, size_t klen, uint64_t hash,
                      mem_entry *cur, mem_entry *next, uint64_t stamp, room *held)
{
    size_t nb = entry_charge(next), ob = cur != NULL ? entry_charge(cur) : 0;
    size_t want_p = cur != NULL ? 0 : 1;
    size_t want_b = nb > ob ? nb - ob : 0;
    size_t xp = want_p > held->places ? want_p - held->places : 0;
    size_t xb = want_b > held->bytes ? want_b - held->bytes : 0;
    if ((xp > 0 || xb > 0) && !nori__mem_make_room_locked(mb, s, cur, xp, xb))
        return false;
    held->places += xp;
    held->bytes += xb;
    if (cur != NULL) /* found again: this shard's evictions ran meanwhile */
        nori__mem_do_replace(s, nori__mem_do_find_link(s, key, klen, hash), next, stamp);
    else
        nori__mem_do_insert(s, next, hash, stamp);
    nori__mem_give_back(mb, held->places - want_p, held->bytes + ob - nb);
    held->places = held->bytes = 0;
    return true;
}
