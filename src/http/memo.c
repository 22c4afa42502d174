// SPDX-License-Identifier: MIT
/*
 * The decoded-entry memo: a bounded, per-cache table of entries already
 * decoded from Nori's JSON form, so that a hit on Redis (above all from the
 * near cache, which answers with the same bytes until Redis says they
 * changed) does not parse JSON and base64 again on every request.
 *
 * Safety rule: the memo never decides what is served. Every lookup still
 * reads the backend (near cache or Redis, the source of truth); a memo entry
 * is used only when its key is the key asked for AND its raw bytes are
 * byte-for-byte the value the backend returned this time. Decoding is a pure
 * function of those bytes, so a memo hit yields exactly what decoding would:
 * a value rewritten by another client (other bytes) is decoded afresh, and
 * a different key never uses this key's slot (the key is compared too).
 * Freshness (stored_at / fresh_for) lives in the bytes, so it is judged
 * from the current value as before.
 *
 * Layout: MEMO_SLOTS direct-mapped slots (by a hash of the key), each a
 * pointer to an immutable, reference-counted entry behind a mutex held only
 * to take a reference or swap the pointer; comparing and copying happen
 * outside it. Bounded by max_bytes in total; an entry larger than an eighth
 * of that is not kept (decoded on each hit, as before).
 */
#include "http/internal.h"

#include "error.h"
#include "hash.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define MEMO_SLOTS 256 /* a power of two */

typedef struct {
    _Atomic size_t refs; /* the slot's reference + readers' */
    size_t bytes;        /* counted against max_bytes */
    char *key;
    char *raw;
    size_t raw_len;
    nori_http_response resp; /* decoded; never modified once published */
    nori__entry_meta meta;
} memo_entry;

typedef struct {
    pthread_mutex_t lock;
    memo_entry *e;
} memo_slot;

struct nori__memo {
    size_t max_bytes, max_entry;
    uint64_t seed; /* of the slot hash */
    _Atomic size_t bytes;
    _Atomic uint64_t hits, misses, stores;
    memo_slot slots[MEMO_SLOTS];
};

static void entry_unref(memo_entry *e)
{
    if (e == NULL || atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(e->key);
    free(e->raw);
    nori_http_response_clear(&e->resp);
    free(e);
}

int nori__memo_new(size_t max_bytes, nori__memo **out)
{
    nori__memo *m = calloc(1, sizeof *m);
    if (m == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory creating the decoded-entry memo");
    m->max_bytes = max_bytes;
    m->max_entry = max_bytes / 8;
    m->seed = nori__hash_seed();
    for (size_t i = 0; i < MEMO_SLOTS; i++)
        pthread_mutex_init(&m->slots[i].lock, NULL);
    *out = m;
    return NORI_OK;
}

void nori__memo_free(nori__memo *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < MEMO_SLOTS; i++) {
        entry_unref(m->slots[i].e);
        pthread_mutex_destroy(&m->slots[i].lock);
    }
    free(m);
}

void nori__memo_get_stats(nori__memo *m, nori__memo_stats *out)
{
    out->hits = atomic_load_explicit(&m->hits, memory_order_relaxed);
    out->misses = atomic_load_explicit(&m->misses, memory_order_relaxed);
    out->stores = atomic_load_explicit(&m->stores, memory_order_relaxed);
    out->bytes = atomic_load_explicit(&m->bytes, memory_order_relaxed);
}

/* FNV-1a: the slot only spreads keys; equality is checked in full. */
static memo_slot *slot_of(nori__memo *m, const char *key)
{
    /* Seeded: an attacker must not pick keys that evict a hot key's slot. */
    uint64_t h = nori__hash_key(m->seed, key, strlen(key));
    return &m->slots[(h ^ h >> 32) & (MEMO_SLOTS - 1)];
}

/* Copies src (a decoded entry) into dst, empty on entry. */
static int clone_response(const nori_http_response *src, nori_http_response *dst)
{
    int rc = NORI_OK;
    dst->status = src->status;
    if (src->media_type != NULL)
        rc = nori_http_response_set_media_type(dst, src->media_type);
    for (size_t i = 0; rc == NORI_OK && i < src->n_headers; i++)
        rc = nori_http_response_add_header(dst, src->headers[i].name, src->headers[i].value);
    if (rc == NORI_OK && src->body != NULL)
        rc = nori_http_response_set_body(dst, src->body, src->body_len);
    if (rc != NORI_OK)
        nori_http_response_clear(dst);
    return rc;
}

static size_t response_bytes(const nori_http_response *r)
{
    size_t n = sizeof *r + r->body_len + (r->media_type ? strlen(r->media_type) : 0);
    for (size_t i = 0; i < r->n_headers; i++)
        n += sizeof r->headers[i] + strlen(r->headers[i].name) + strlen(r->headers[i].value) + 2;
    return n;
}

/* Publishes a new entry for key (raw adopted) unless it would break the
 * bound; replaces whatever the slot held. */
static void memo_store(nori__memo *m, memo_slot *s, const char *key, char *raw, size_t raw_len,
                       const nori_http_response *r, const nori__entry_meta *meta)
{
    memo_entry *e = calloc(1, sizeof *e);
    if (e == NULL || (e->key = strdup(key)) == NULL) {
        free(e);
        free(raw);
        return;
    }
    nori_http_response_init(&e->resp);
    e->raw = raw;
    e->raw_len = raw_len;
    e->meta = *meta;
    atomic_init(&e->refs, 1);
    if (clone_response(r, &e->resp) != NORI_OK) {
        entry_unref(e);
        return;
    }
    e->bytes = sizeof *e + strlen(key) + raw_len + response_bytes(&e->resp);
    pthread_mutex_lock(&s->lock);
    memo_entry *old = s->e;
    size_t old_bytes = old != NULL ? old->bytes : 0;
    size_t total = atomic_load_explicit(&m->bytes, memory_order_relaxed);
    /* bytes only changes under a slot lock, but under different slots: the
     * check is approximate by at most one entry per concurrent writer,
     * each at most max_entry. */
    bool fits = e->bytes <= m->max_entry && total - old_bytes + e->bytes <= m->max_bytes;
    if (fits) {
        s->e = e;
        atomic_fetch_add_explicit(&m->bytes, e->bytes, memory_order_relaxed);
        if (old != NULL)
            atomic_fetch_sub_explicit(&m->bytes, old_bytes, memory_order_relaxed);
    }
    pthread_mutex_unlock(&s->lock);
    if (fits) {
        atomic_fetch_add_explicit(&m->stores, 1, memory_order_relaxed);
        entry_unref(old);
    } else {
        entry_unref(e);
    }
}

int nori__memo_decode(nori__memo *m, const char *key, nori_buf *in, nori_http_response *r,
                      nori__entry_meta *meta)
{
    if (m == NULL || in->data == NULL)
        return nori__entry_decode_meta(in, false, r, meta);
    memo_slot *s = slot_of(m, key);
    pthread_mutex_lock(&s->lock);
    memo_entry *e = s->e;
    if (e != NULL)
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&s->lock);
    if (e != NULL && e->raw_len == in->len && strcmp(e->key, key) == 0 &&
        memcmp(e->raw, in->data, in->len) == 0) {
        nori_http_response_clear(r);
        if (clone_response(&e->resp, r) == NORI_OK) {
            *meta = e->meta;
            entry_unref(e);
            nori_buf_free(in);
            atomic_fetch_add_explicit(&m->hits, 1, memory_order_relaxed);
            return NORI_OK;
        }
        /* Out of memory copying: decoding below reports it if it persists. */
    }
    entry_unref(e);
    atomic_fetch_add_explicit(&m->misses, 1, memory_order_relaxed);
    char *raw = NULL;
    size_t raw_len = in->len;
    if (raw_len <= m->max_entry && (raw = malloc(raw_len + 1)) != NULL)
        memcpy(raw, in->data, raw_len);
    int rc = nori__entry_decode_meta(in, false, r, meta);
    if (rc == NORI_OK && raw != NULL)
        memo_store(m, s, key, raw, raw_len, r, meta);
    else
        free(raw);
    return rc;
}
