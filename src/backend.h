// SPDX-License-Identifier: MIT
/*
 * The internal backend interface. Each backend embeds `struct nori_backend`
 * as its first member and fills in an ops table; backend.c validates the
 * arguments of every public call once, so the backends receive only keys,
 * values and TTLs that are within the limits, with the key length computed.
 */
#ifndef NORI_SRC_BACKEND_H
#define NORI_SRC_BACKEND_H

#include "nori/cache.h"

#include <stdatomic.h>
#include <stdbool.h>

/*
 * What a backend is, as far as the layers above it must know: the response
 * cache (src/http/) reads these, never the backend's kind, so a new backend
 * needs no edit there. Read them through nori__backend_traits().
 */
typedef enum {
    /* The binary record of src/http/entry_codec.c, body first: the block a
     * get returns becomes the hit's body as is (no base64, no JSON, no
     * copy). Only for a backend no program but this library reads. */
    NORI__ENTRY_BINARY = 0,
    /* Nori's JSON entry: readable by any client of the backend (Nori's
     * Python services serve the same entries). Decoding it costs more than
     * the rest of a hit, so hits go through the cache's decoded-entry memo. */
    NORI__ENTRY_JSON
} nori__entry_format;

typedef struct {
    /*
     * Other processes read and write the same keys (Redis; a shared-memory
     * segment). The response cache then coalesces a key's fills across
     * processes with a lease ("{key}:lock" through add and delete_if_equal)
     * and keeps its invalidation generations in the backend too, writing
     * entries through set_guarded, which a shared backend must offer.
     * false: every reader and writer is in this process, and the cache's
     * in-process flights and generations are the whole truth.
     */
    bool shared;
    nori__entry_format entry_format; /* how the response cache writes its entries */
    /*
     * Every call crosses a network (Redis): backend.c times each one for the
     * call latency histogram. false: calls stay in this machine's memory and
     * take well under a microsecond, where two clock reads would be a large
     * part of the call, so one call in NORI__LATENCY_SAMPLE is timed.
     */
    bool remote;
    /*
     * The backend can make a process sleep until another process's fill of
     * a key ends, or its filler dies (ops fill_claim, fill_wait,
     * fill_release; the shared-memory segment's flight slots): the response
     * cache's waiters then need no polling. false: they poll the lease.
     */
    bool waits_for_fills;
} nori__traits;

struct nori__metrics; /* src/metrics_text.h */

/* The call latency histogram (nori_backend_call_duration_seconds), by
 * operation. Bucket bounds in nori__latency_bounds_ns (backend.c). */
enum {
    NORI__OP_GET,
    NORI__OP_SET,
    NORI__OP_DELETE,
    NORI__OP_INCR,
    NORI__OP_ATOMIC_UPDATE,
    NORI__OP_GET_MANY,
    NORI__OP_SET_MANY,
    NORI__OP_DELETE_MANY,
    NORI__OP_OTHER, /* add, delete_if_equal, guarded set, delete_prefix, flush */
    NORI__OPS
};
#define NORI__LATENCY_BUCKETS 16
#define NORI__LATENCY_STRIPES 8
/* In-process backends time one call in this many (a power of two). */
#define NORI__LATENCY_SAMPLE 64

/* Counters of one stripe: threads write to their own stripe, so that timed
 * calls of many threads seldom share a cache line; the stripes are summed
 * when the histogram is read. Padded rather than aligned: backends allocate
 * their struct with malloc, which promises 16-byte alignment only. */
typedef struct {
    _Atomic uint64_t count[NORI__OPS][NORI__LATENCY_BUCKETS + 1];
    _Atomic uint64_t sum_ns[NORI__OPS];
    char pad[64];
} nori__latency_stripe;

extern const int64_t nori__latency_bounds_ns[NORI__LATENCY_BUCKETS];

typedef struct nori_backend_ops {
    const char *kind; /* "memory", "redis": a name for people (nori_backend_kind) */
    /* Zero is an unshared backend with binary entries, the memory backend. */
    nori__traits traits;

    /* *out is {NULL,0} on entry. Return NORI_OK, NORI_MISS or an error. */
    int (*get)(nori_backend *b, const char *key, size_t klen, nori_buf *out);
    /* Optional (NULL: backend.c falls back on get + copy). */
    int (*get_into)(nori_backend *b, const char *key, size_t klen, void *buf, size_t cap,
                    size_t *len);
    int (*set)(nori_backend *b, const char *key, size_t klen, const void *val,
               size_t len, int64_t ttl);
    int (*del)(nori_backend *b, const char *key, size_t klen);
    /* Removes every key that starts with prefix[0..plen) (plen 0: every key
     * of this cache, which is flush). */
    int (*delete_prefix)(nori_backend *b, const char *prefix, size_t plen);
    /* out is never NULL here. */
    int (*incr)(nori_backend *b, const char *key, size_t klen, int64_t ttl,
                int64_t *out);
    /* out may be NULL. The backend checks next->len with nori__check_value(). */
    int (*atomic_update)(nori_backend *b, const char *key, size_t klen,
                         nori_update_fn fn, void *ud, int64_t ttl, nori_buf *out);
    int (*verify)(nori_backend *b);
    /* Optional (NULL: the kind alone). A malloc'd description of the
     * topology, or NULL with the error code in *rc. */
    char *(*describe)(nori_backend *b, int *rc);
    /* Sets key to val only when it is absent or expired, expiring ttl_ms
     * milliseconds later (> 0); *added 1 when written, 0 when the key
     * existed. */
    int (*add)(nori_backend *b, const char *key, size_t klen, const void *val, size_t len,
               int64_t ttl_ms, int *added);
    /* Removes key only when its value is exactly val; *deleted 1 or 0. */
    int (*delete_if_equal)(nori_backend *b, const char *key, size_t klen, const void *val,
                           size_t len, int *deleted);
    /* Optional (NULL: not offered). Sets key to val (ttl as in set) only
     * when guard holds exactly expect[0..elen), or is absent when expect is
     * NULL, as one step that no write of guard can fall inside; *stored 1
     * when written, 0 when guard differed (nothing written). */
    int (*set_guarded)(nori_backend *b, const char *key, size_t klen, const void *val,
                       size_t len, int64_t ttl, const char *guard, size_t glen,
                       const void *expect, size_t elen, int *stored);
    /*
     * Optional (traits.waits_for_fills). Fills of a key across processes,
     * named by the key of their lease:
     *  - fill_claim: marks the calling thread as filling key: NORI_OK (it
     *    must call fill_release, on the same thread), NORI_MISS (not
     *    marked: waiters will poll), or an error;
     *  - fill_wait: sleeps until the fill of key marked by another process
     *    ends, at most timeout_ms: NORI_OK (it ended), NORI_MISS (no such
     *    fill is marked: poll), NORI_EABORT (its filler died: its lease is
     *    left behind), NORI_EBACKEND (timed out);
     *  - fill_release: ends this thread's mark of key (no-op without one).
     */
    int (*fill_claim)(nori_backend *b, const char *key, size_t klen);
    int (*fill_wait)(nori_backend *b, const char *key, size_t klen, int64_t timeout_ms);
    void (*fill_release)(nori_backend *b, const char *key, size_t klen);
    /* Fills the backend-specific counters; backend.c adds `errors`. */
    void (*stats)(nori_backend *b, nori_backend_stats *out);
    /* Optional: writes the series that mean something for this backend
     * (src/metrics_text.h), from `st` (its stats, errors included) and
     * whatever else it keeps. The common series (info, errors, latency)
     * are written by src/metrics.c. */
    void (*metrics)(nori_backend *b, const nori_backend_stats *st, struct nori__metrics *m);
    /* Frees the backend's own state and the struct itself. */
    void (*destroy)(nori_backend *b);
    /*
     * Optional bulk calls (NULL: backend.c loops over get/set/del). backend.c
     * has checked every key and value: entries with klens[i] == 0 already
     * hold their error and must be left alone; every other entry must get
     * its result (get_many: rc and value). n >= 1.
     */
    void (*get_many)(nori_backend *b, size_t n, const char *const *keys, const size_t *klens,
                     nori_get_result *results);
    void (*set_many)(nori_backend *b, size_t n, const nori_set_item *items,
                     const size_t *klens, int *results);
    void (*delete_many)(nori_backend *b, size_t n, const char *const *keys,
                        const size_t *klens, int *results);
} nori_backend_ops;

struct nori_backend {
    const nori_backend_ops *ops;
    _Atomic size_t max_value; /* largest value accepted, in bytes */
    _Atomic uint64_t errors;  /* calls that returned a negative code */
    unsigned latency_mask;    /* a call is timed when (a per-thread tick & mask) == 0 */
    nori__latency_stripe latency[NORI__LATENCY_STRIPES];
};

/*
 * Sums the latency stripes for operation `op`: counts[i] per bucket
 * (counts[NORI__LATENCY_BUCKETS] above the last bound) and the total in ns.
 */
void nori__backend_latency(const nori_backend *b, int op,
                           uint64_t counts[NORI__LATENCY_BUCKETS + 1], uint64_t *sum_ns);

/* Initialises the common part; called by each backend's constructor. */
void nori__backend_init(nori_backend *b, const nori_backend_ops *ops);

/* The traits b declared in its ops table (static storage). */
const nori__traits *nori__backend_traits(const nori_backend *b);

/*
 * The fill ops (see nori_backend_ops; traits.waits_for_fills), for the
 * response cache's leases: NORI_MISS, and nothing done, when the backend
 * offers none. Not counted as the backend's errors: a wait that times out
 * is the cache's business.
 */
int nori__backend_fill_claim(nori_backend *b, const char *key);
int nori__backend_fill_wait(nori_backend *b, const char *key, int64_t timeout_ms);
void nori__backend_fill_release(nori_backend *b, const char *key);

/*
 * The checked call of ops->set_guarded (see there), for the response
 * cache's invalidation generations (src/http/generation.c). expect may be
 * NULL (guard must be absent). NORI_OK with *stored, NORI_EINVAL when the
 * backend offers no such write, or the usual argument and backend errors
 * (*stored 0). Counted in the backend's errors like every public call.
 */
int nori__backend_set_guarded(nori_backend *b, const char *key, const void *val, size_t len,
                              int64_t ttl, const char *guard, const void *expect, size_t elen,
                              int *stored);

/* NORI_OK when `len` is within the backend's value limit, else NORI_ETOOBIG
 * with a message naming the key, the length and the limit. */
int nori__check_value(const nori_backend *b, const char *key, size_t len);

/*
 * Parses a canonical decimal int64 the way Redis does (string2ll): optional
 * '-', no leading zeros, no '+', no spaces, nothing after the digits, and it
 * must fit in int64. Used by incr so both backends accept the same counters.
 */
bool nori__parse_int64(const char *s, size_t len, int64_t *out);

/* Takes ownership of next->data and makes it a NUL-terminated nori_buf of
 * next->len bytes (realloc'ing one byte more). On failure frees it. */
int nori__adopt_buf(nori_buf *next, nori_buf *out);

#endif
