// SPDX-License-Identifier: MIT
/*
 * The shared-memory backend's operations (nori_backend_ops) but the reads
 * (read.c), and its constructor. The design is at the top of shm/internal.h.
 *
 * Writes: under the key's shard lock, as one undo-logged section. A value
 * of at most SHM_REWRITE_MAX bytes that stays in its chunk's class is
 * rewritten in place (its old bytes logged), the common overwrite of a
 * small value; anything else takes a new entry (allocated with eviction,
 * evict.c) that replaces the old one, whose chunk is freed after the
 * commit.
 *
 * atomic_update, incr, add: read, decide and write under the shard lock;
 * the callback runs once, with the lock held (so it must be quick, as on
 * the memory backend; while it runs, other processes' writes to the shard
 * wait, and give up after the lock timeout).
 */
#include "shm/internal.h"

#include "error.h"
#include "shm/shm.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Largest value rewritten in place: its old bytes go to the undo log. */
#define SHM_REWRITE_MAX 64

/*
 * The callbacks running on this thread (innermost first), with the segment
 * each runs on and the pid it started in: a callback that calls back into
 * the same segment would wait for its own lock (refused instead), and one
 * that forks must not finish its section in the child.
 */
typedef struct callback_frame {
    uint64_t generation;
    pid_t pid;
    const struct callback_frame *outer;
} callback_frame;

static _Thread_local const callback_frame *active_callbacks;

int nori__shm_refuse_reentry(const shm_backend *sb, const char *op)
{
    for (const callback_frame *f = active_callbacks; f != NULL; f = f->outer)
        if (f->generation == sb->generation)
            return nori__fail(NORI_EINVAL,
                              "%s called from inside an atomic_update callback on the same shm "
                              "segment '%s' (the callback runs under the segment's lock)",
                              op, sb->name);
    return NORI_OK;
}

static inline void maybe_start_sweeper(shm_backend *sb)
{
    if (atomic_load_explicit(&sb->want_sweeper, memory_order_relaxed) &&
        atomic_exchange_explicit(&sb->want_sweeper, false, memory_order_relaxed))
        (void)nori__shm_sweeper_start(sb);
}

static int64_t expiry_from_ttl(int64_t ttl, int64_t now)
{
    return ttl > 0 ? now + ttl * 1000 : 0;
}


/* ---- writes ---- */

/*
 * Writes val as key's value in shard s (locked), the key's entry being cur
 * (0: none): in place when it fits, else a new entry. Leaves the section
 * open (the caller commits). also_held: another shard the caller holds.
 */
static int do_store(shm_backend *sb, shm_shard *s, shm_bucket *bk, int also_held, const char *key,
                    size_t klen, uint32_t cur, const void *val, size_t len,
                    int64_t expires, uint64_t stamp)
{
    if (cur != 0) {
        shm_entry *e = shm_entry_at(sb, cur);
        if (!(LD(&e->flags) & SHM_LARGE) && !shm_is_large(klen, len) && len <= SHM_REWRITE_MAX &&
            shm_class_for(shm_small_size(klen, len)) == (int)LD(&e->cls)) {
            nori__shm_do_rewrite(sb, s, bk, cur, val, len, expires, stamp);
            return NORI_OK;
        }
    }
    uint32_t keep = cur, ref = 0;
    int rc = nori__shm_alloc_evicting(sb, s, &keep, also_held, key, klen, len, &ref);
    if (rc != NORI_OK)
        return rc;
    nori__shm_test_point("alloc");
    nori__shm_fill_entry(sb, shm_entry_at(sb, ref), key, klen, val, len, expires);
    uint32_t *link = nori__shm_do_find_link(sb, s, bk, key, klen);
    if (link == NULL) /* an eviction could only shorten it: a faulty process */
        return nori__shm_do_chain_broken(sb, s, "set", key);
    if (keep != 0)
        nori__shm_do_replace(sb, s, bk, link, ref, stamp);
    else
        nori__shm_do_insert(sb, s, bk, ref, stamp);
    return NORI_OK;
}

static int shm_set(nori_backend *b, const char *key, size_t klen, const void *val, size_t len,
                   int64_t ttl)
{
    shm_backend *sb = (shm_backend *)b;
    int rc = nori__shm_refuse_reentry(sb, "set");
    if (rc != NORI_OK)
        return rc;
    uint64_t charge = shm_charge_for(klen, len);
    if (charge > sb->max_bytes)
        return nori__shm_too_big(sb, key, charge);
    maybe_start_sweeper(sb);
    uint64_t h = shm_hash(sb, key, klen);
    shm_shard *s = shm_shard_of(sb, h);
    shm_bucket *bk = shm_bucket_of(sb, h);
    int64_t expires = ttl > 0 ? expiry_from_ttl(ttl, shm_now_ms()) : 0;
    uint64_t stamp = nori__shm_next_stamp();
    int64_t deadline = 0;
    for (;;) {
        rc = nori__shm_shard_lock(sb, s);
        if (rc != NORI_OK)
            return rc;
        uint32_t *link = nori__shm_do_find_link(sb, s, bk, key, klen);
        if (link == NULL)
            rc = nori__shm_do_chain_broken(sb, s, "set", key);
        else
            rc = do_store(sb, s, bk, -1, key, klen, LD(link), val, len, expires, stamp);
        nori__shm_do_commit(sb, s);
        nori__shm_shard_unlock(sb, s);
        if (rc != SHM_AGAIN)
            return rc;
        if ((rc = nori__shm_wait_for_room(sb, &deadline, key)) != NORI_OK)
            return rc;
    }
}

static int shm_del(nori_backend *b, const char *key, size_t klen)
{
    shm_backend *sb = (shm_backend *)b;
    int rc = nori__shm_refuse_reentry(sb, "delete");
    if (rc != NORI_OK)
        return rc;
    uint64_t h = shm_hash(sb, key, klen);
    shm_shard *s = shm_shard_of(sb, h);
    shm_bucket *bk = shm_bucket_of(sb, h);
    rc = nori__shm_shard_lock(sb, s);
    if (rc != NORI_OK)
        return rc;
    uint32_t *link = nori__shm_do_find_link(sb, s, bk, key, klen);
    if (link == NULL) {
        rc = nori__shm_do_chain_broken(sb, s, "delete", key);
    } else if (LD(link) != 0) {
        nori__shm_do_remove(sb, s, bk, link);
        nori__shm_do_commit(sb, s);
    }
    nori__shm_shard_unlock(sb, s);
    return rc;
}

int nori__shm_do_delete_prefix(shm_backend *sb, shm_shard *s, const char *prefix, size_t plen)
{
    size_t nb = (size_t)sb->bucket_mask + 1;
    for (size_t i = 0; i < nb && LD(&s->count) > 0; i++) {
        shm_bucket *bk = shm_shard_bucket(sb, s, i);
        if (!nori__shm_do_chain_sound(sb, s, bk))
            return nori__shm_do_chain_broken(sb, s, plen == 0 ? "flush" : "delete_prefix",
                                             prefix);
        uint32_t *l = (uint32_t *)&bk->head;
        uint32_t ref;
        while ((ref = LD(l)) != 0) {
            shm_entry *e = shm_entry_at(sb, ref);
            if (LD(&e->klen) >= plen && memcmp(e->data, prefix, plen) == 0) {
                int rc = nori__shm_do_checkpoint(sb, s);
                if (rc != NORI_OK)
                    return rc;
                nori__shm_do_remove(sb, s, bk, l); /* *l is now the next entry */
            } else {
                l = &e->hnext;
            }
        }
    }
    nori__shm_do_commit(sb, s);
    return NORI_OK;
}

static int shm_delete_prefix(nori_backend *b, const char *prefix, size_t plen)
{
    shm_backend *sb = (shm_backend *)b;
    int rc = nori__shm_refuse_reentry(sb, plen == 0 ? "flush" : "delete_prefix");
    if (rc != NORI_OK)
        return rc;
    for (int i = 0; i < SHM_NSHARDS; i++) {
        shm_shard *s = &sb->shards[i];
        rc = nori__shm_shard_lock(sb, s);
        if (rc != NORI_OK)
            return rc;
        rc = nori__shm_do_delete_prefix(sb, s, prefix, plen);
        nori__shm_shard_unlock(sb, s);
        if (rc != NORI_OK)
            return rc;
    }
    return NORI_OK;
}

typedef int (*decide_fn)(const nori_buf *cur, int64_t cur_expires, nori_buf *next,
                         int64_t *next_expires, void *ctx);

/* Finds key's live entry in locked shard s (an expired one is removed and
 * counted) and copies its value (NUL-terminated) into *val. */
static int do_read_current(shm_backend *sb, shm_shard *s, shm_bucket *bk, const char *op,
                           const char *key, size_t klen, int64_t now,
                           uint32_t *cur, nori_buf *val, int64_t *expires)
{
    uint32_t *link = nori__shm_do_find_link(sb, s, bk, key, klen);
    val->data = NULL;
    val->len = 0;
    *expires = 0;
    *cur = 0;
    if (link == NULL)
        return nori__shm_do_chain_broken(sb, s, op, key);
    *cur = LD(link);
    if (*cur != 0 && shm_expired(LD(&shm_entry_at(sb, *cur)->expires), now)) {
        nori__shm_log_w64(sb, &s->log, &s->expired, LD(&s->expired) + 1);
        nori__shm_do_remove(sb, s, bk, link);
        nori__shm_do_commit(sb, s);
        *cur = 0;
    }
    if (*cur == 0)
        return NORI_OK;
    shm_entry *e = shm_entry_at(sb, *cur);
    val->len = LD(&e->vlen);
    *expires = LD(&e->expires);
    val->data = malloc(val->len + 1);
    if (val->data == NULL)
        return nori__fail(NORI_ENOMEM, "%s '%.64s': out of memory reading %zu bytes", op, key,
                          val->len);
    nori__shm_read_value(sb, e, LD(&e->klen), LD(&e->flags), val->len, val->data);
    val->data[val->len] = '\0';
    return NORI_OK;
}

/*
 * The read-decide-write core of incr, atomic_update and add. `decide` sees
 * the current value (a NUL-terminated copy; NULL when absent or expired)
 * and its expiry, and fills the value to write and its expiry, or returns
 * an error to write nothing. It runs under the shard's lock. When room
 * needs a wait for another shard, the lock is let go meanwhile: incr and
 * add (may_decide_again) then decide again; atomic_update's callback is
 * not run twice: its value goes in only if the key still holds what the
 * callback saw, else NORI_ENOMEM with nothing written.
 */
static int read_decide_write(shm_backend *sb, const char *op, const char *key, size_t klen,
                             decide_fn decide, void *ctx, bool may_decide_again)
{
    int rc = nori__shm_refuse_reentry(sb, op);
    if (rc != NORI_OK)
        return rc;
    maybe_start_sweeper(sb);
    uint64_t h = shm_hash(sb, key, klen);
    shm_shard *s = shm_shard_of(sb, h);
    shm_bucket *bk = shm_bucket_of(sb, h);
    int64_t now = shm_now_ms(), deadline = 0;
    uint64_t stamp = nori__shm_next_stamp();
    nori_buf curbuf = {NULL, 0}, next = {NULL, 0};
    int64_t cur_expires = 0, next_expires = 0;
    bool decided = false;
    for (;;) {
        rc = nori__shm_shard_lock(sb, s);
        if (rc != NORI_OK)
            break;
        uint32_t cur;
        nori_buf now_val;
        int64_t now_expires;
        rc = do_read_current(sb, s, bk, op, key, klen, now, &cur, &now_val,
                             &now_expires);
        if (rc == NORI_OK && decided) {
            /* After a wait for room: does the key still hold what was
             * decided on? */
            bool same = (now_val.data == NULL) == (curbuf.data == NULL) &&
                        now_val.len == curbuf.len && now_expires == cur_expires &&
                        (now_val.len == 0 || memcmp(now_val.data, curbuf.data, now_val.len) == 0);
            if (!same)
                rc = nori__fail(NORI_ENOMEM,
                                "%s '%.64s': the key changed while the write waited for room "
                                "under the bounds; nothing written",
                                op, key);
            nori_buf_free(&now_val);
        } else if (rc == NORI_OK) {
            curbuf = now_val;
            cur_expires = now_expires;
            pid_t pid = atomic_load_explicit(&sb->pid, memory_order_relaxed);
            callback_frame frame = {sb->generation, pid, active_callbacks};
            active_callbacks = &frame;
            rc = decide(cur != 0 ? &curbuf : NULL, cur_expires, &next, &next_expires, ctx);
            active_callbacks = frame.outer; /* restore, never clear: callbacks nest */
            decided = true;
            if (atomic_load_explicit(&sb->pid, memory_order_relaxed) != pid) {
                /* fork() inside the callback, and this is the child: the
                 * lock and the section are the parent's, which finishes
                 * them. */
                nori_buf_free(&next);
                nori_buf_free(&curbuf);
                return nori__fail(NORI_EBACKEND,
                                  "%s '%.64s': the callback called fork(); the update is the "
                                  "parent process's, this child wrote nothing",
                                  op, key);
            }
            if (rc == NORI_OK) {
                uint64_t charge = shm_charge_for(klen, next.len);
                if (charge > sb->max_bytes)
                    rc = nori__shm_too_big(sb, key, charge);
            }
        }
        if (rc == NORI_OK)
            rc = do_store(sb, s, bk, -1, key, klen, cur,
                          next.data == NULL ? "" : next.data, next.len, next_expires, stamp);
        nori__shm_do_commit(sb, s);
        nori__shm_shard_unlock(sb, s);
        if (rc != SHM_AGAIN)
            break;
        if ((rc = nori__shm_wait_for_room(sb, &deadline, key)) != NORI_OK)
            break;
        if (may_decide_again) {
            decided = false;
            nori_buf_free(&curbuf);
            nori_buf_free(&next);
        }
    }
    nori_buf_free(&curbuf);
    nori_buf_free(&next);
    return rc;
}

typedef struct {
    const char *key;
    int64_t ttl, now;
    int64_t value; /* out */
    char text[24];
} incr_ctx;

static int decide_incr(const nori_buf *cur, int64_t cur_expires, nori_buf *next,
                       int64_t *next_expires, void *ctx)
{
    incr_ctx *c = ctx;
    int64_t value = 1;
    *next_expires = expiry_from_ttl(c->ttl, c->now);
    if (cur != NULL) {
        int64_t old;
        if (!nori__parse_int64(cur->data, cur->len, &old))
            return nori__fail(NORI_ETYPE, "incr '%.64s': the stored value is not an int", c->key);
        if (old == INT64_MAX)
            return nori__fail(NORI_ERANGE, "incr '%.64s': %" PRId64 " + 1 overflows int64",
                              c->key, old);
        value = old + 1;
        *next_expires = cur_expires; /* an existing counter keeps its expiry */
    }
    int n = snprintf(c->text, sizeof c->text, "%" PRId64, value);
    next->data = malloc((size_t)n);
    if (next->data == NULL)
        return nori__fail(NORI_ENOMEM, "incr '%.64s': out of memory", c->key);
    memcpy(next->data, c->text, (size_t)n);
    next->len = (size_t)n;
    c->value = value;
    return NORI_OK;
}

static int shm_incr(nori_backend *b, const char *key, size_t klen, int64_t ttl, int64_t *out)
{
    incr_ctx c = {key, ttl, shm_now_ms(), 0, {0}};
    int rc = read_decide_write((shm_backend *)b, "incr", key, klen, decide_incr, &c, true);
    if (rc == NORI_OK)
        *out = c.value;
    return rc;
}

typedef struct {
    shm_backend *sb;
    const char *key;
    int64_t ttl, now;
    nori_update_fn fn;
    void *ud;
    nori_buf *out;
} update_ctx;

static int decide_update(const nori_buf *cur, int64_t cur_expires, nori_buf *next,
                         int64_t *next_expires, void *ctx)
{
    update_ctx *c = ctx;
    int declined = c->fn(cur, next, c->ud);
    int rc = NORI_OK;
    if (declined != 0)
        rc = nori__fail(NORI_EABORT, "atomic_update '%.64s': the callback declined (returned %d)",
                        c->key, declined);
    else if (next->data == NULL && next->len > 0)
        rc = nori__fail(NORI_EINVAL,
                        "atomic_update '%.64s': the callback set len %zu with no data", c->key,
                        next->len);
    if (rc == NORI_OK)
        rc = nori__check_value(&c->sb->base, c->key, next->len);
    *next_expires = expiry_from_ttl(c->ttl, c->now);
    if (c->ttl == 0 && cur != NULL)
        *next_expires = cur_expires; /* ttl 0 keeps the existing expiry */
    /* The caller's copy is made before anything is written, so that its
     * failure writes nothing. */
    if (rc == NORI_OK && c->out != NULL) {
        c->out->data = malloc(next->len + 1);
        if (c->out->data == NULL) {
            rc = nori__fail(NORI_ENOMEM, "atomic_update '%.64s': out of memory", c->key);
        } else {
            if (next->len > 0)
                memcpy(c->out->data, next->data, next->len);
            c->out->data[next->len] = '\0';
            c->out->len = next->len;
        }
    }
    if (rc != NORI_OK)
        nori_buf_free(next);
    return rc;
}

static int shm_atomic_update(nori_backend *b, const char *key, size_t klen, nori_update_fn fn,
                             void *ud, int64_t ttl, nori_buf *out)
{
    shm_backend *sb = (shm_backend *)b;
    update_ctx c = {sb, key, ttl, shm_now_ms(), fn, ud, out};
    int rc = read_decide_write(sb, "atomic_update", key, klen, decide_update, &c, false);
    if (rc != NORI_OK && out != NULL)
        nori_buf_free(out);
    return rc;
}

typedef struct {
    const void *val;
    size_t len;
    int64_t expires;
} add_ctx;

static int decide_add(const nori_buf *cur, int64_t cur_expires, nori_buf *next,
                      int64_t *next_expires, void *ctx)
{
    (void)cur_expires;
    add_ctx *c = ctx;
    if (cur != NULL)
        return NORI_EABORT; /* present: nothing written */
    next->data = malloc(c->len > 0 ? c->len : 1);
    if (next->data == NULL)
        return nori__fail(NORI_ENOMEM, "add: out of memory");
    if (c->len > 0)
        memcpy(next->data, c->val, c->len);
    next->len = c->len;
    *next_expires = c->expires;
    return NORI_OK;
}

static int shm_add(nori_backend *b, const char *key, size_t klen, const void *val, size_t len,
                   int64_t ttl_ms, int *added)
{
    add_ctx c = {val, len, shm_now_ms() + ttl_ms};
    int rc = read_decide_write((shm_backend *)b, "add", key, klen, decide_add, &c, true);
    *added = rc == NORI_OK;
    return rc == NORI_EABORT ? NORI_OK : rc;
}

/* Whether the live entry at ref holds exactly val[0..len). Shard locked. */
static int do_value_equal(shm_backend *sb, uint32_t ref, const void *val, size_t len, bool *eq)
{
    shm_entry *e = shm_entry_at(sb, ref);
    size_t vlen = LD(&e->vlen);
    *eq = false;
    if (vlen != len)
        return NORI_OK;
    if (!(LD(&e->flags) & SHM_LARGE)) {
        *eq = len == 0 || memcmp(e->data + LD(&e->klen), val, len) == 0;
        return NORI_OK;
    }
    char *tmp = malloc(len);
    if (tmp == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory comparing %zu bytes", len);
    nori__shm_read_value(sb, e, LD(&e->klen), LD(&e->flags), len, tmp);
    *eq = memcmp(tmp, val, len) == 0;
    free(tmp);
    return NORI_OK;
}

/* The live entry of key in locked shard s (an expired one is removed).
 * NULL: the chain is broken (nori__shm_do_chain_broken). */
static uint32_t *do_lookup_live(shm_backend *sb, shm_shard *s, shm_bucket *bk, const char *key,
                                size_t klen, int64_t now)
{
    uint32_t *link = nori__shm_do_find_link(sb, s, bk, key, klen);
    if (link == NULL)
        return NULL;
    uint32_t ref = LD(link);
    if (ref != 0 && shm_expired(LD(&shm_entry_at(sb, ref)->expires), now)) {
        nori__shm_log_w64(sb, &s->log, &s->expired, LD(&s->expired) + 1);
        nori__shm_do_remove(sb, s, bk, link);
        nori__shm_do_commit(sb, s);
    }
    return link;
}

static int shm_delete_if_equal(nori_backend *b, const char *key, size_t klen, const void *val,
                               size_t len, int *deleted)
{
    shm_backend *sb = (shm_backend *)b;
    int rc = nori__shm_refuse_reentry(sb, "delete_if_equal");
    if (rc != NORI_OK)
        return rc;
    uint64_t h = shm_hash(sb, key, klen);
    shm_shard *s = shm_shard_of(sb, h);
    shm_bucket *bk = shm_bucket_of(sb, h);
    rc = nori__shm_shard_lock(sb, s);
    if (rc != NORI_OK)
        return rc;
    uint32_t *link = do_lookup_live(sb, s, bk, key, klen, shm_now_ms());
    bool eq = false;
    if (link == NULL)
        rc = nori__shm_do_chain_broken(sb, s, "delete_if_equal", key);
    else if (LD(link) != 0)
        rc = do_value_equal(sb, LD(link), val, len, &eq);
    if (rc == NORI_OK && eq) {
        nori__shm_do_remove(sb, s, bk, link);
        nori__shm_do_commit(sb, s);
    }
    nori__shm_shard_unlock(sb, s);
    *deleted = eq;
    return rc;
}

static int shm_set_guarded(nori_backend *b, const char *key, size_t klen, const void *val,
                           size_t len, int64_t ttl, const char *guard, size_t glen,
                           const void *expect, size_t elen, int *stored)
{
    shm_backend *sb = (shm_backend *)b;
    int rc = nori__shm_refuse_reentry(sb, "set_guarded");
    if (rc != NORI_OK)
        return rc;
    uint64_t charge = shm_charge_for(klen, len);
    if (charge > sb->max_bytes)
        return nori__shm_too_big(sb, key, charge);
    maybe_start_sweeper(sb);
    uint64_t h = shm_hash(sb, key, klen), gh = shm_hash(sb, guard, glen);
    shm_shard *s = shm_shard_of(sb, h), *gs = shm_shard_of(sb, gh);
    shm_bucket *bk = shm_bucket_of(sb, h), *gbk = shm_bucket_of(sb, gh);
    int64_t now = shm_now_ms();
    uint64_t stamp = nori__shm_next_stamp();
    /* Two shards: in index order, so two such calls cannot wait for each
     * other. */
    shm_shard *first = s < gs ? s : gs, *second = s < gs ? gs : s;
    int64_t deadline = 0;
    for (;;) {
        rc = nori__shm_shard_lock(sb, first);
        if (rc != NORI_OK)
            return rc;
        if (second != first && (rc = nori__shm_shard_lock(sb, second)) != NORI_OK) {
            nori__shm_shard_unlock(sb, first);
            return rc;
        }
        uint32_t *glink = do_lookup_live(sb, gs, gbk, guard, glen, now);
        bool ok = false;
        if (glink == NULL)
            rc = nori__shm_do_chain_broken(sb, gs, "set_guarded", guard);
        else if (expect == NULL)
            ok = LD(glink) == 0;
        else if (LD(glink) != 0)
            rc = do_value_equal(sb, LD(glink), expect, elen, &ok);
        *stored = 0;
        if (rc == NORI_OK && ok) {
            uint32_t *link = nori__shm_do_find_link(sb, s, bk, key, klen);
            if (link == NULL)
                rc = nori__shm_do_chain_broken(sb, s, "set_guarded", key);
            else
                rc = do_store(sb, s, bk, s != gs ? (int)shm_shard_no(sb, gs) : -1, key, klen,
                              LD(link), val, len, expiry_from_ttl(ttl, now), stamp);
            *stored = rc == NORI_OK;
            nori__shm_do_commit(sb, s);
        }
        if (second != first)
            nori__shm_shard_unlock(sb, second);
        nori__shm_shard_unlock(sb, first);
        if (rc != SHM_AGAIN)
            return rc;
        if ((rc = nori__shm_wait_for_room(sb, &deadline, key)) != NORI_OK)
            return rc;
    }
}

/* ---- the rest of the table ---- */

static int shm_verify(nori_backend *b)
{
    shm_backend *sb = (shm_backend *)b;
    return nori__shm_header_check(sb->map, sizeof(shm_header), sb->map_bytes,
                                  sb->hdr->owner_uid, sb->name) == NORI_OK
               ? NORI_OK
               : NORI_EBACKEND;
}

static char *shm_describe(nori_backend *b, int *rc)
{
    shm_backend *sb = (shm_backend *)b;
    nori_backend_stats st = {0};
    nori_backend_get_stats(b, &st);
    char *out = NULL;
    if (asprintf(&out,
                 "mode: shm\nsegment: /dev/shm/%s (%zu bytes mapped)\nmax_keys: %" PRIu64
                 "\nmax_bytes: %" PRIu64 "\nentries: %" PRIu64 "\nbytes: %" PRIu64
                 "\ncreated by pid: %" PRIu32 "\ngeneration: %016" PRIx64 "\n",
                 sb->name, sb->map_bytes, sb->max_keys, sb->max_bytes, st.entries, st.bytes,
                 sb->hdr->creator_pid, sb->generation) < 0) {
        *rc = nori__fail(NORI_ENOMEM, "out of memory describing the shm backend");
        return NULL;
    }
    *rc = NORI_OK;
    return out;
}

static void shm_stats(nori_backend *b, nori_backend_stats *out)
{
    shm_backend *sb = (shm_backend *)b;
    for (int i = 0; i < SHM_NSHARDS; i++) {
        shm_shard *s = &sb->shards[i];
        out->evictions += LD(&s->evictions);
        out->expired += LD(&s->expired);
        out->entries += LD(&s->count);
        out->bytes += LD(&s->bytes);
    }
    for (int i = 0; i <= SHM_NSTRIPES; i++) {
        out->hits += atomic_load_explicit(&sb->stripes[i].hits, memory_order_relaxed);
        out->misses += atomic_load_explicit(&sb->stripes[i].misses, memory_order_relaxed);
    }
    out->max_bytes = sb->max_bytes;
}

static void shm_destroy(nori_backend *b)
{
    shm_backend *sb = (shm_backend *)b;
    nori__shm_unregister(sb);
    nori__shm_sweeper_stop(sb);
    nori__shm_close_segment(sb);
    free(sb);
}

static int shm_fill_claim(nori_backend *b, const char *key, size_t klen)
{
    return nori__shm_fill_claim((shm_backend *)b, key, klen);
}

static int shm_fill_wait(nori_backend *b, const char *key, size_t klen, int64_t timeout_ms)
{
    return nori__shm_fill_wait((shm_backend *)b, key, klen, timeout_ms);
}

static void shm_fill_release(nori_backend *b, const char *key, size_t klen)
{
    nori__shm_fill_release((shm_backend *)b, key, klen);
}

static const nori_backend_ops shm_ops = {
    .kind = "shm",
    /* Every worker reads and writes the same keys: the response cache
     * coalesces across processes and keeps its generations in the segment;
     * only this library reads the entries, in its binary record; a waiter
     * sleeps on the filler's flight slot instead of polling. */
    .traits = {.shared = true, .entry_format = NORI__ENTRY_BINARY, .waits_for_fills = true},
    .get = nori__shm_get,
    .get_into = nori__shm_get_into,
    .set = shm_set,
    .del = shm_del,
    .delete_prefix = shm_delete_prefix,
    .add = shm_add,
    .delete_if_equal = shm_delete_if_equal,
    .set_guarded = shm_set_guarded,
    .incr = shm_incr,
    .atomic_update = shm_atomic_update,
    .verify = shm_verify,
    .describe = shm_describe,
    .fill_claim = shm_fill_claim,
    .fill_wait = shm_fill_wait,
    .fill_release = shm_fill_release,
    .stats = shm_stats,
    .metrics = nori__shm_metrics,
    .destroy = shm_destroy,
};

shm_backend *nori__shm_as_shm(nori_backend *b)
{
    return b != NULL && b->ops == &shm_ops ? (shm_backend *)b : NULL;
}

/* ---- creation ---- */

int nori__shm_backend_new_opts(const char *name, size_t max_keys, size_t max_bytes, bool sweeper,
                               nori_backend **out)
{
    if (out == NULL)
        return nori__fail(NORI_EINVAL, "shm backend: out is NULL");
    size_t size = (sizeof(shm_backend) + 63) / 64 * 64;
    shm_backend *sb = aligned_alloc(64, size);
    if (sb == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory creating a shm backend");
    memset(sb, 0, size);
    sb->fd = -1;
    atomic_init(&sb->lock_timeout_ms, NORI_SHM_DEFAULT_LOCK_TIMEOUT_MS);
    atomic_init(&sb->pid, getpid());
    int rc = nori__shm_open_segment(sb, name, max_keys, max_bytes);
    if (rc != NORI_OK) {
        free(sb);
        return rc;
    }
    nori__backend_init(&sb->base, &shm_ops);
    nori__shm_register(sb);
    if (sweeper && (rc = nori__shm_sweeper_start(sb)) != NORI_OK) {
        nori__shm_unregister(sb);
        nori__shm_close_segment(sb);
        free(sb);
        return rc;
    }
    atomic_fetch_add_explicit(&sb->g->attached, 1, memory_order_relaxed);
    *out = &sb->base;
    return NORI_OK;
}

int nori_shm_backend_new(const char *name, size_t max_keys, size_t max_bytes, nori_backend **out)
{
    return nori__shm_backend_new_opts(name, max_keys, max_bytes, true, out);
}

int nori_shm_backend_set_lock_timeout(nori_backend *b, int64_t ms)
{
    shm_backend *sb = nori__shm_as_shm(b);
    if (sb == NULL)
        return nori__fail(NORI_EINVAL, "set_lock_timeout: the backend is %s, not shm",
                          b == NULL ? "NULL" : nori_backend_kind(b));
    if (ms < 1 || ms > 3600000)
        return nori__fail(NORI_EINVAL, "shm lock timeout %lld ms is out of range 1..3600000",
                          (long long)ms);
    atomic_store_explicit(&sb->lock_timeout_ms, ms, memory_order_relaxed);
    return NORI_OK;
}

int nori_shm_backend_get_stats(nori_backend *b, nori_shm_stats *out)
{
    shm_backend *sb = nori__shm_as_shm(b);
    if (sb == NULL || out == NULL)
        return nori__fail(NORI_EINVAL, "shm stats: not a shm backend, or out is NULL");
    shm_global *g = sb->g;
    memset(out, 0, sizeof *out);
    out->owner_died = atomic_load_explicit(&g->owner_died, memory_order_relaxed);
    out->repairs = atomic_load_explicit(&g->repairs, memory_order_relaxed);
    out->lock_timeouts = atomic_load_explicit(&g->lock_timeouts, memory_order_relaxed);
    out->shard_resets = atomic_load_explicit(&g->shard_resets, memory_order_relaxed);
    out->frag_evictions = atomic_load_explicit(&g->frag_evictions, memory_order_relaxed);
    out->segment_bytes = sb->map_bytes;
    out->max_keys = sb->max_keys;
    out->max_bytes = sb->max_bytes;
    out->free_pages = nori__shm_free_pages(sb);
    out->generation = sb->generation;
    out->creator_pid = sb->hdr->creator_pid;
    return NORI_OK;
}
