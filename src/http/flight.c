// SPDX-License-Identifier: MIT
/*
 * Single-flight for the response cache (nori/http.h, "Coalescing"): at most one fill
 * per key at a time in this process, the other requests for the key wait on
 * a condition variable (no polling) for at most lock_timeout, and a short
 * "hit-for-miss" memory of keys whose last response could not be stored, so
 * that later requests for them do not queue behind a fill that will not
 * help (Varnish's hit-for-miss, nginx's proxy_cache_lock).
 *
 * One mutex guards both tables: it is taken only on a miss (a hit never
 * touches it), held for a few pointer operations, never across a handler
 * or a backend call.
 */
#include "http/internal.h"

#include "clock.h"
#include "error.h"
#include "hash.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define N_BUCKETS 256
#define HFM_MAX 4096 /* bound on remembered keys: an attacker's distinct URLs cannot grow it */

struct nori__flight {
    struct nori__flight *next;
    char *key;
    uint64_t hash;
    uint64_t epoch; /* the key's invalidation generation when the fill began */
    pthread_cond_t cond;
    pthread_t owner;
    bool has_owner;
    bool done, stored, in_table;
    unsigned refs; /* the table's (while in_table) + the leader's + each waiter's */
};

typedef struct hfm_entry {
    struct hfm_entry *next;
    uint64_t hash;
    int64_t until_ms;
    char key[];
} hfm_entry;

struct nori__flights {
    pthread_mutex_t lock;
    nori__flight *buckets[N_BUCKETS];
    hfm_entry *hfm[N_BUCKETS];
    size_t n_hfm;
    uint64_t seed;
};

/* Seeded per table: keys come from request paths, so an attacker must not
 * be able to choose keys that share a bucket. */
static uint64_t hash_key(const nori__flights *t, const char *key)
{
    return nori__hash_key(t->seed, key, strlen(key));
}

int nori__flights_new(nori__flights **out)
{
    nori__flights *t = calloc(1, sizeof *t);
    if (t == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory creating the single-flight table");
    pthread_mutex_init(&t->lock, NULL);
    t->seed = nori__hash_seed();
    *out = t;
    return NORI_OK;
}

static void flight_destroy(nori__flight *f)
{
    pthread_cond_destroy(&f->cond);
    free(f->key);
    free(f);
}

void nori__flights_free(nori__flights *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < N_BUCKETS; i++) {
        /* No flight can be left: each caller finishes or releases its own
         * before the cache is freed (nori_http_cache_free's contract). */
        for (hfm_entry *e = t->hfm[i], *n; e != NULL; e = n) {
            n = e->next;
            free(e);
        }
    }
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* Takes f out of the table (its leader and waiters keep their references);
 * called with the lock held. */
static void do_unlink(nori__flights *t, nori__flight *f)
{
    nori__flight **p = &t->buckets[f->hash % N_BUCKETS];
    while (*p != f)
        p = &(*p)->next;
    *p = f->next;
    f->in_table = false;
    f->refs--; /* the table's reference; the leader still holds one */
}

nori__flight_role nori__flight_join(nori__flights *t, const char *key, bool owned,
                                    uint64_t epoch, nori__flight **out)
{
    uint64_t h = hash_key(t, key);
    nori__flight **b = &t->buckets[h % N_BUCKETS];
    pthread_mutex_lock(&t->lock);
    for (nori__flight *f = *b; f != NULL; f = f->next) {
        if (f->hash != h || strcmp(f->key, key) != 0)
            continue;
        if (f->epoch != epoch) {
            /* Begun before a write to the key's path (which moved the
             * generation): its response predates the write, so a request
             * that comes after the write must not wait for it. A new fill
             * takes its place in the table; the old one finishes alone. */
            do_unlink(t, f);
            break;
        }
        /* The fill in progress is this very thread's: its handler called
         * the cache for its own key. Waiting would wait for ourselves. */
        if (f->has_owner && pthread_equal(f->owner, pthread_self())) {
            pthread_mutex_unlock(&t->lock);
            *out = NULL;
            return NORI__FLIGHT_REENTRANT;
        }
        f->refs++;
        pthread_mutex_unlock(&t->lock);
        *out = f;
        return NORI__FLIGHT_WAITER;
    }
    nori__flight *f = calloc(1, sizeof *f);
    if (f == NULL || (f->key = strdup(key)) == NULL) {
        pthread_mutex_unlock(&t->lock);
        free(f);
        *out = NULL;
        return NORI__FLIGHT_NONE; /* out of memory: run without coalescing */
    }
    nori__cond_init(&f->cond);
    f->hash = h;
    f->epoch = epoch;
    f->refs = 2; /* table + leader */
    f->in_table = true;
    if (owned) {
        f->owner = pthread_self();
        f->has_owner = true;
    }
    f->next = *b;
    *b = f;
    pthread_mutex_unlock(&t->lock);
    *out = f;
    return NORI__FLIGHT_LEADER;
}

void nori__flight_set_owner(nori__flights *t, nori__flight *f)
{
    pthread_mutex_lock(&t->lock);
    f->owner = pthread_self();
    f->has_owner = true;
    pthread_mutex_unlock(&t->lock);
}

/* Drops one reference; called with the lock held. */
static void unref_locked(nori__flight *f, bool *destroy)
{
    *destroy = --f->refs == 0;
}

int nori__flight_wait(nori__flights *t, nori__flight *f, int64_t timeout_ms)
{
    int64_t deadline = nori__deadline_after(timeout_ms);
    int result;
    bool destroy;
    pthread_mutex_lock(&t->lock);
    int rc = 0;
    while (!f->done && rc == 0)
        rc = nori__cond_wait_until(&f->cond, &t->lock, deadline);
    result = f->done ? (f->stored ? NORI__FLIGHT_STORED : NORI__FLIGHT_NOT_STORED)
                     : NORI__FLIGHT_TIMEOUT;
    unref_locked(f, &destroy);
    pthread_mutex_unlock(&t->lock);
    if (destroy)
        flight_destroy(f);
    return result;
}

void nori__flight_release(nori__flights *t, nori__flight *f)
{
    bool destroy;
    pthread_mutex_lock(&t->lock);
    unref_locked(f, &destroy);
    pthread_mutex_unlock(&t->lock);
    if (destroy)
        flight_destroy(f);
}

void nori__flight_finish(nori__flights *t, nori__flight *f, bool stored)
{
    bool destroy;
    pthread_mutex_lock(&t->lock);
    f->done = true;
    f->stored = stored;
    if (f->in_table)
        do_unlink(t, f);
    pthread_cond_broadcast(&f->cond);
    unref_locked(f, &destroy); /* the leader's */
    pthread_mutex_unlock(&t->lock);
    if (destroy)
        flight_destroy(f);
}

/* ------------------------------------------------------ hit-for-miss */

bool nori__hfm_active(nori__flights *t, const char *key, int64_t now_ms)
{
    uint64_t h = hash_key(t, key);
    bool active = false;
    pthread_mutex_lock(&t->lock);
    for (hfm_entry **p = &t->hfm[h % N_BUCKETS]; *p != NULL;) {
        hfm_entry *e = *p;
        if (e->until_ms <= now_ms) { /* lazily dropped when passed by */
            *p = e->next;
            free(e);
            t->n_hfm--;
            continue;
        }
        if (e->hash == h && strcmp(e->key, key) == 0)
            active = true;
        p = &e->next;
    }
    pthread_mutex_unlock(&t->lock);
    return active;
}

void nori__hfm_set(nori__flights *t, const char *key, int64_t until_ms)
{
    uint64_t h = hash_key(t, key);
    size_t len = strlen(key);
    pthread_mutex_lock(&t->lock);
    hfm_entry **b = &t->hfm[h % N_BUCKETS];
    for (hfm_entry *e = *b; e != NULL; e = e->next)
        if (e->hash == h && strcmp(e->key, key) == 0) {
            e->until_ms = until_ms;
            pthread_mutex_unlock(&t->lock);
            return;
        }
    /* Full: forget nothing to make room; the key simply is not remembered
     * (its requests then coalesce as usual: slower, never wrong). */
    hfm_entry *e = t->n_hfm < HFM_MAX ? malloc(sizeof *e + len + 1) : NULL;
    if (e != NULL) {
        memcpy(e->key, key, len + 1);
        e->hash = h;
        e->until_ms = until_ms;
        e->next = *b;
        *b = e;
        t->n_hfm++;
    }
    pthread_mutex_unlock(&t->lock);
}

void nori__hfm_clear(nori__flights *t, const char *key)
{
    uint64_t h = hash_key(t, key);
    pthread_mutex_lock(&t->lock);
    for (hfm_entry **p = &t->hfm[h % N_BUCKETS]; *p != NULL; p = &(*p)->next) {
        hfm_entry *e = *p;
        if (e->hash == h && strcmp(e->key, key) == 0) {
            *p = e->next;
            free(e);
            t->n_hfm--;
            break;
        }
    }
    pthread_mutex_unlock(&t->lock);
}
