// SPDX-License-Identifier: MIT
/*
 * The public nori_backend_* entry points: argument validation shared by all
 * backends, then dispatch through the ops table.
 */
#include "backend.h"
#include "clock.h"
#include "error.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void nori_buf_free(nori_buf *b)
{
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

void nori__backend_init(nori_backend *b, const nori_backend_ops *ops)
{
    b->ops = ops;
    atomic_init(&b->max_value, NORI_DEFAULT_MAX_VALUE);
    atomic_init(&b->errors, 0);
    b->latency_mask = ops->traits.remote ? 0 : NORI__LATENCY_SAMPLE - 1;
    memset(b->latency, 0, sizeof b->latency);
}

/* ---- call latency ---- */

/* Upper bounds of the histogram's buckets: 1 us to 1 s. */
const int64_t nori__latency_bounds_ns[NORI__LATENCY_BUCKETS] = {
    1000,     2500,     5000,      10000,     25000,     50000,      100000,     250000,
    500000,   1000000,  2500000,   5000000,   10000000,  25000000,   100000000,  1000000000};

/* Per thread: the tick that picks the timed calls, and the stripe. Initial
 * exec: a get of the memory backend is tens of nanoseconds, and the general
 * TLS model of a shared library would call __tls_get_addr here. */
static _Thread_local unsigned latency_tick __attribute__((tls_model("initial-exec")));
static _Thread_local unsigned latency_stripe __attribute__((tls_model("initial-exec")));
static _Atomic unsigned next_stripe;

/* The start of a timed call in ns, or -1 when this call is not timed. */
static inline int64_t latency_start(const nori_backend *b)
{
    if (__builtin_expect((++latency_tick & b->latency_mask) != 0, 1))
        return -1;
    return nori__real_ns(); /* real time: a latency is what the caller waited */
}

/* Out of line and cold: most calls of an in-process backend are not timed,
 * and their path should carry nothing of this but one test. */
__attribute__((noinline, cold)) static void latency_record(nori_backend *b, int op, int64_t t0)
{
    int64_t d = nori__real_ns() - t0;
    if (d < 0)
        d = 0;
    if (latency_stripe == 0)
        latency_stripe = 1 + atomic_fetch_add_explicit(&next_stripe, 1, memory_order_relaxed) %
                                 NORI__LATENCY_STRIPES;
    nori__latency_stripe *st = &b->latency[latency_stripe - 1];
    int i = 0;
    while (i < NORI__LATENCY_BUCKETS && d > nori__latency_bounds_ns[i])
        i++;
    atomic_fetch_add_explicit(&st->count[op][i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->sum_ns[op], (uint64_t)d, memory_order_relaxed);
}

void nori__backend_latency(const nori_backend *b, int op,
                           uint64_t counts[NORI__LATENCY_BUCKETS + 1], uint64_t *sum_ns)
{
    *sum_ns = 0;
    for (int i = 0; i <= NORI__LATENCY_BUCKETS; i++)
        counts[i] = 0;
    for (int s = 0; s < NORI__LATENCY_STRIPES; s++) {
        const nori__latency_stripe *st = &b->latency[s];
        for (int i = 0; i <= NORI__LATENCY_BUCKETS; i++)
            counts[i] += atomic_load_explicit(&st->count[op][i], memory_order_relaxed);
        *sum_ns += atomic_load_explicit(&st->sum_ns[op], memory_order_relaxed);
    }
}

/* Calls `call` (an expression setting rc) timed as operation `op`. */
#define TIMED(b, op, call)                         \
    do {                                           \
        int64_t t0_ = latency_start(b);            \
        call;                                      \
        if (__builtin_expect(t0_ >= 0, 0))         \
            latency_record((b), (op), t0_);        \
    } while (0)

const nori__traits *nori__backend_traits(const nori_backend *b)
{
    return &b->ops->traits;
}

int nori__backend_fill_claim(nori_backend *b, const char *key)
{
    if (!b->ops->traits.waits_for_fills)
        return NORI_MISS;
    return b->ops->fill_claim(b, key, strlen(key));
}

int nori__backend_fill_wait(nori_backend *b, const char *key, int64_t timeout_ms)
{
    if (!b->ops->traits.waits_for_fills)
        return NORI_MISS;
    return b->ops->fill_wait(b, key, strlen(key), timeout_ms);
}

void nori__backend_fill_release(nori_backend *b, const char *key)
{
    if (b->ops->traits.waits_for_fills)
        b->ops->fill_release(b, key, strlen(key));
}

int nori__check_value(const nori_backend *b, const char *key, size_t len)
{
    size_t limit = atomic_load_explicit(&b->max_value, memory_order_relaxed);
    if (len > limit)
        return nori__fail(NORI_ETOOBIG, "value for key '%.64s' is %zu bytes, the limit is %zu",
                          key, len, limit);
    return NORI_OK;
}

bool nori__parse_int64(const char *s, size_t len, int64_t *out)
{
    if (len == 0 || len > 20)
        return false;
    if (len == 1 && s[0] == '0') {
        *out = 0;
        return true;
    }
    size_t i = 0;
    bool negative = false;
    if (s[0] == '-') {
        negative = true;
        i = 1;
        if (len == 1)
            return false;
    }
    if (s[i] < '1' || s[i] > '9')
        return false;
    /* Accumulate as a negative number: its range is one larger, so INT64_MIN
     * parses without overflow. */
    int64_t v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        int digit = s[i] - '0';
        if (v < (INT64_MIN + digit) / 10)
            return false;
        v = v * 10 - digit;
    }
    if (!negative) {
        if (v == INT64_MIN)
            return false;
        v = -v;
    }
    *out = v;
    return true;
}

int nori__adopt_buf(nori_buf *next, nori_buf *out)
{
    char *data = realloc(next->data, next->len + 1);
    if (data == NULL) {
        nori_buf_free(next);
        return nori__fail(NORI_ENOMEM, "out of memory copying a value of %zu bytes", next->len);
    }
    data[next->len] = '\0';
    out->data = data;
    out->len = next->len;
    next->data = NULL;
    next->len = 0;
    return NORI_OK;
}

/* Validates a key; on success stores its length in *klen. */
static int check_key(const char *key, size_t *klen)
{
    if (key == NULL)
        return nori__fail(NORI_EINVAL, "key is NULL");
    size_t n = strnlen(key, NORI_MAX_KEY_LEN + 1);
    if (n == 0)
        return nori__fail(NORI_EINVAL, "key is empty");
    if (n > NORI_MAX_KEY_LEN)
        return nori__fail(NORI_ETOOBIG, "key '%.32s...' is %zu bytes, the limit is %d", key,
                          strlen(key), NORI_MAX_KEY_LEN);
    *klen = n;
    return NORI_OK;
}

static int check_ttl(int64_t ttl)
{
    if (ttl < 0)
        return nori__fail(NORI_EINVAL, "ttl is %lld; it must be 0 (no expiry) or positive",
                          (long long)ttl);
    if (ttl > NORI_MAX_TTL)
        return nori__fail(NORI_EINVAL, "ttl is %lld seconds, the limit is %lld", (long long)ttl,
                          (long long)NORI_MAX_TTL);
    return NORI_OK;
}

static int check_backend(const nori_backend *b)
{
    if (b == NULL)
        return nori__fail(NORI_EINVAL, "backend is NULL");
    return NORI_OK;
}

/* Counts a failure on the handle; every public call returns through here. */
static int done(nori_backend *b, int rc)
{
    if (rc < 0 && b != NULL)
        atomic_fetch_add_explicit(&b->errors, 1, memory_order_relaxed);
    return rc;
}

int nori_backend_get(nori_backend *b, const char *key, nori_buf *out)
{
    if (out == NULL)
        return done(b, nori__fail(NORI_EINVAL, "get: out is NULL"));
    out->data = NULL;
    out->len = 0;
    size_t klen = 0;
    int rc = check_backend(b);
    if (rc == NORI_OK)
        rc = check_key(key, &klen);
    if (rc == NORI_OK)
        TIMED(b, NORI__OP_GET, rc = b->ops->get(b, key, klen, out));
    return done(b, rc);
}

int nori_backend_get_into(nori_backend *b, const char *key, void *buf, size_t cap, size_t *len)
{
    size_t klen = 0, ignored;
    if (len == NULL)
        len = &ignored;
    *len = 0;
    int rc = check_backend(b);
    if (rc == NORI_OK)
        rc = check_key(key, &klen);
    if (rc == NORI_OK && buf == NULL && cap > 0)
        rc = nori__fail(NORI_EINVAL, "get_into '%.64s': buf is NULL with cap %zu", key, cap);
    if (rc != NORI_OK)
        return done(b, rc);
    if (b->ops->get_into != NULL) {
        TIMED(b, NORI__OP_GET, rc = b->ops->get_into(b, key, klen, buf, cap, len));
        return done(b, rc);
    }
    nori_buf tmp = {0};
    TIMED(b, NORI__OP_GET, rc = b->ops->get(b, key, klen, &tmp));
    if (rc == NORI_OK) {
        *len = tmp.len;
        if (tmp.len > cap)
            rc = nori__fail(NORI_ETOOBIG, "get_into '%.64s': the value is %zu bytes, the buffer "
                                          "holds %zu", key, tmp.len, cap);
        else if (tmp.len > 0)
            memcpy(buf, tmp.data, tmp.len);
    }
    nori_buf_free(&tmp);
    return done(b, rc);
}

int nori_backend_set(nori_backend *b, const char *key, const void *val, size_t len,
                     int64_t ttl)
{
    size_t klen = 0;
    int rc = check_backend(b);
    if (rc == NORI_OK)
        rc = check_key(key, &klen);
    if (rc == NORI_OK)
        rc = check_ttl(ttl);
    if (rc == NORI_OK && val == NULL && len > 0)
        rc = nori__fail(NORI_EINVAL, "set '%.64s': value is NULL with length %zu", key, len);
    if (rc == NORI_OK)
        rc = nori__check_value(b, key, len);
    if (rc == NORI_OK)
        TIMED(b, NORI__OP_SET,
              rc = b->ops->set(b, key, klen, val == NULL ? "" : val, len, ttl));
    return done(b, rc);
}

int nori_backend_delete(nori_backend *b, const char *key)
{
    size_t klen = 0;
    int rc = check_backend(b);
    if (rc == NORI_OK)
        rc = check_key(key, &klen);
    if (rc == NORI_OK)
        TIMED(b, NORI__OP_DELETE, rc = b->ops->del(b, key, klen));
    return done(b, rc);
}

int nori_backend_flush(nori_backend *b)
{
    int rc = check_backend(b);
    if (rc == NORI_OK)
        TIMED(b, NORI__OP_OTHER, rc = b->ops->delete_prefix(b, "", 0));
    return done(b, rc);
}

int nori_backend_delete_prefix(nori_backend *b, const char *prefix)
{
    size_t plen = 0;
    int rc = check_backend(b);
    if (rc == NORI_OK)
        rc = check_key(prefix, &plen);
    if (rc == NORI_OK)
        TIMED(b, NORI__OP_OTHER, rc = b->ops->delete_prefix(b, prefix, plen));
    return done(b, rc);
}

int nori_backend_add(nori_backend *b, const char *key, const void *val, size_t len,
                     int64_t ttl_ms, int *added)
{
    size_t klen = 0;
    int ignored;
    if (added == NULL)
        added = &ignored;
    *added = 0;
    int rc = check_backend(b);
    if (rc == NORI_OK)
        rc = check_key(key, &klen);
    if (rc == NORI_OK && (ttl_ms <= 0 || ttl_ms > NORI_MAX_TTL * 1000))
        rc = nori__fail(NORI_EINVAL, "add '%.64s': ttl_ms %lld is out of range 1..%lld", key,
                        (long long)ttl_ms, (long long)(NORI_MAX_TTL * 1000));
    if (rc == NORI_OK && val == NULL && len > 0)
        rc = nori__fail(NORI_EINVAL, "add '%.64s': value is NULL with length %zu", key, len);
    if (rc == NORI_OK)
        rc = nori__check_value(b, key, len);
    if (rc == NORI_OK)
        TIMED(b, NORI__OP_OTHER,
              rc = b->ops->add(b, key, klen, val == NULL ? "" : val, len, ttl_ms, added));
    return done(b, rc);
}

int nori_backend_delete_if_equal(nori_backend *b, const char *key, const void *val, size_t len,
                                 int *deleted)
{
    size_t klen = 0;
    int ignored;
    if (deleted == NULL)
        deleted = &ignored;
    *deleted = 0;
    int rc = check_backend(b);
    if (rc == NORI_OK)
        rc = check_key(key, &klen);
    if (rc == NORI_OK && val == NULL && len > 0)
        rc = nori__fail(NORI_EINVAL, "delete_if_equal '%.64s': value is NULL with length %zu",
                        key, len);
    if (rc == NORI_OK)
        TIMED(b, NORI__OP_OTHER,
              rc = b->ops->delete_if_equal(b, key, klen, val == NULL ? "" : val, len, deleted));
    return done(b, rc);
}

int nori__backend_set_guarded(nori_backend *b, const char *key, const void *val, size_t len,
                              int64_t ttl, const char *guard, const void *expect, size_t elen,
                              int *stored)
{
    size_t klen = 0, glen = 0;
    *stored = 0;
    int rc = check_backend(b);
    if (rc == NORI_OK)
        rc = check_key(key, &klen);
    if (rc == NORI_OK)
        rc = check_key(guard, &glen);
    if (rc == NORI_OK)
        rc = check_ttl(ttl);
    if (rc == NORI_OK && val == NULL && len > 0)
        rc = nori__fail(NORI_EINVAL, "set_guarded '%.64s': value is NULL with length %zu", key,
                        len);
    if (rc == NORI_OK)
        rc = nori__check_value(b, key, len);
    if (rc == NORI_OK && b->ops->set_guarded == NULL)
        rc = nori__fail(NORI_EINVAL, "the %s backend offers no guarded set", b->ops->kind);
    if (rc == NORI_OK)
        TIMED(b, NORI__OP_OTHER,
              rc = b->ops->set_guarded(b, key, klen, val == NULL ? "" : val, len, ttl, guard,
                                       glen, expect, expect != NULL ? elen : 0, stored));
    return done(b, rc);
}

int nori_backend_incr(nori_backend *b, const char *key, int64_t ttl, int64_t *out)
{
    size_t klen = 0;
    int64_t ignored;
    int rc = check_backend(b);
    if (rc == NORI_OK)
        rc = check_key(key, &klen);
    if (rc == NORI_OK)
        rc = check_ttl(ttl);
    if (rc == NORI_OK)
        TIMED(b, NORI__OP_INCR,
              rc = b->ops->incr(b, key, klen, ttl, out != NULL ? out : &ignored));
    return done(b, rc);
}

int nori_backend_atomic_update(nori_backend *b, const char *key, nori_update_fn fn, void *ud,
                               int64_t ttl, nori_buf *out)
{
    if (out != NULL) {
        out->data = NULL;
        out->len = 0;
    }
    size_t klen = 0;
    int rc = check_backend(b);
    if (rc == NORI_OK)
        rc = check_key(key, &klen);
    if (rc == NORI_OK)
        rc = check_ttl(ttl);
    if (rc == NORI_OK && fn == NULL)
        rc = nori__fail(NORI_EINVAL, "atomic_update '%.64s': fn is NULL", key);
    if (rc == NORI_OK)
        TIMED(b, NORI__OP_ATOMIC_UPDATE,
              rc = b->ops->atomic_update(b, key, klen, fn, ud, ttl, out));
    return done(b, rc);
}

int nori_backend_verify(nori_backend *b)
{
    int rc = check_backend(b);
    if (rc == NORI_OK)
        rc = b->ops->verify(b);
    return done(b, rc);
}

int nori_backend_describe(nori_backend *b, char **out)
{
    int rc = check_backend(b);
    if (rc == NORI_OK && out == NULL)
        rc = nori__fail(NORI_EINVAL, "describe: out is NULL");
    if (rc != NORI_OK)
        return done(b, rc);
    *out = NULL;
    char *text;
    if (b->ops->describe != NULL) {
        text = b->ops->describe(b, &rc);
    } else {
        size_t n = strlen(b->ops->kind) + 8;
        text = malloc(n);
        if (text != NULL)
            snprintf(text, n, "mode: %s\n", b->ops->kind);
        else
            rc = nori__fail(NORI_ENOMEM, "out of memory describing the backend");
    }
    if (text != NULL)
        *out = text;
    return done(b, text != NULL ? NORI_OK : rc);
}

int nori_backend_get_stats(nori_backend *b, nori_backend_stats *out)
{
    int rc = check_backend(b);
    if (rc == NORI_OK && out == NULL)
        rc = nori__fail(NORI_EINVAL, "get_stats: out is NULL");
    if (rc != NORI_OK)
        return rc;
    memset(out, 0, sizeof *out);
    b->ops->stats(b, out);
    out->errors = atomic_load_explicit(&b->errors, memory_order_relaxed);
    return NORI_OK;
}

const char *nori_backend_kind(const nori_backend *b)
{
    return b == NULL ? "none" : b->ops->kind;
}

int nori_backend_set_max_value(nori_backend *b, size_t max_value)
{
    int rc = check_backend(b);
    if (rc != NORI_OK)
        return rc;
    if (max_value == 0 || max_value > NORI_MAX_VALUE_LIMIT)
        return nori__fail(NORI_EINVAL, "max value size %zu is out of range 1..%zu", max_value,
                          NORI_MAX_VALUE_LIMIT);
    atomic_store_explicit(&b->max_value, max_value, memory_order_relaxed);
    return NORI_OK;
}

size_t nori_backend_max_value(const nori_backend *b)
{
    return b == NULL ? 0 : atomic_load_explicit(&b->max_value, memory_order_relaxed);
}

void nori_backend_free(nori_backend *b)
{
    if (b != NULL)
        b->ops->destroy(b);
}

/* ---- bulk calls (cache.h: "Bulk calls") ----
 *
 * Every key is checked here as the single-key call checks it; a bad key
 * gets its own code and klens[i] = 0, and the backend's bulk operation (or,
 * without one, a loop over the single-key operations) handles the rest.
 * The call's message is the one of the first key that failed, so it is kept
 * aside while later keys are processed. */

typedef struct first_failure {
    size_t idx; /* n when nothing failed yet */
    int rc;
    char msg[512];
} first_failure;

static void note_failure(first_failure *f, size_t i, int rc)
{
    if (rc < 0 && i < f->idx) {
        f->idx = i;
        f->rc = rc;
        snprintf(f->msg, sizeof f->msg, "%s", nori_last_error());
    }
}

/* The call's code: the first failing key's, with its message. `noted`
 * holds the failures seen here; a failure found first elsewhere (by the
 * backend's bulk operation) already left its message. */
static int bulk_outcome(const int *rcs, size_t n, const first_failure *noted)
{
    for (size_t i = 0; i < n; i++) {
        if (rcs[i] >= 0)
            continue;
        if (i == noted->idx)
            return nori__fail(noted->rc, "%s", noted->msg);
        return rcs[i];
    }
    return NORI_OK;
}

/* Checks the call's own arguments; n <= NORI_MAX_BULK when NORI_OK. */
static int check_bulk(const nori_backend *b, const char *what, const void *keys, size_t n,
                      const void *results, bool results_required)
{
    int rc = check_backend(b);
    if (rc == NORI_OK && n > NORI_MAX_BULK)
        rc = nori__fail(NORI_EINVAL, "%s: %zu keys, the limit is %d", what, n, NORI_MAX_BULK);
    if (rc == NORI_OK && n > 0 && keys == NULL)
        rc = nori__fail(NORI_EINVAL, "%s: the key array is NULL with n %zu", what, n);
    if (rc == NORI_OK && n > 0 && results_required && results == NULL)
        rc = nori__fail(NORI_EINVAL, "%s: results is NULL with n %zu", what, n);
    return rc;
}

void nori_get_results_free(nori_get_result *results, size_t n)
{
    if (results == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        nori_buf_free(&results[i].value);
}

int nori_backend_get_many(nori_backend *b, const char *const *keys, size_t n,
                          nori_get_result *results)
{
    if (results != NULL && n <= NORI_MAX_BULK)
        for (size_t i = 0; i < n; i++)
            results[i] = (nori_get_result){NORI_EINVAL, {NULL, 0}};
    int rc = check_bulk(b, "get_many", keys, n, results, true);
    if (rc != NORI_OK || n == 0)
        return done(b, rc);
    size_t *klens = malloc(n * sizeof *klens);
    int *rcs = malloc(n * sizeof *rcs);
    if (klens == NULL || rcs == NULL) {
        free(klens);
        free(rcs);
        rc = nori__fail(NORI_ENOMEM, "get_many: out of memory for %zu keys", n);
        for (size_t i = 0; i < n; i++)
            results[i].rc = rc;
        return done(b, rc);
    }
    first_failure f = {.idx = n};
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        results[i].rc = check_key(keys[i], &klens[i]);
        if (results[i].rc != NORI_OK) {
            klens[i] = 0;
            note_failure(&f, i, results[i].rc);
        }
        any |= klens[i] != 0;
    }
    if (any && b->ops->get_many != NULL) {
        TIMED(b, NORI__OP_GET_MANY, b->ops->get_many(b, n, keys, klens, results));
    } else if (any) {
        for (size_t i = 0; i < n; i++) {
            if (klens[i] == 0)
                continue;
            results[i].rc = b->ops->get(b, keys[i], klens[i], &results[i].value);
            note_failure(&f, i, results[i].rc);
        }
    }
    for (size_t i = 0; i < n; i++)
        rcs[i] = results[i].rc;
    rc = bulk_outcome(rcs, n, &f);
    free(klens);
    free(rcs);
    return done(b, rc);
}

/*
 * The working state of set_many and delete_many: a code per item (in the
 * caller's array, or in ours when results is NULL), the checked key lengths
 * (0: the item failed its checks and is skipped) and the first failure.
 */
typedef struct bulk_call {
    int *rcs, *owned;
    size_t *klens;
    size_t n;
    first_failure f;
} bulk_call;

/* Allocates the state; on failure every given result is NORI_ENOMEM. */
static int bulk_begin(bulk_call *c, const char *what, size_t n, int *results)
{
    c->owned = NULL;
    c->rcs = results != NULL ? results : (c->owned = malloc(n * sizeof *c->owned));
    c->klens = malloc(n * sizeof *c->klens);
    c->n = n;
    c->f = (first_failure){.idx = n};
    if (c->rcs != NULL && c->klens != NULL)
        return NORI_OK;
    free(c->owned);
    free(c->klens);
    int rc = nori__fail(NORI_ENOMEM, "%s: out of memory for %zu keys", what, n);
    if (results != NULL)
        for (size_t i = 0; i < n; i++)
            results[i] = rc;
    return rc;
}

/* Records item i's code (of its checks, or of its operation); true when it
 * succeeded. An item that failed its checks is skipped from then on. */
static bool bulk_note(bulk_call *c, size_t i, int rc)
{
    c->rcs[i] = rc;
    note_failure(&c->f, i, rc);
    return rc >= 0;
}

/* The call's code; frees the state. */
static int bulk_end(bulk_call *c)
{
    int rc = bulk_outcome(c->rcs, c->n, &c->f);
    free(c->klens);
    free(c->owned);
    return rc;
}

/* Sets every result to NORI_EINVAL before the call's own arguments are
 * checked, so a refused call leaves no stale code behind. */
static void bulk_preset(int *results, size_t n)
{
    if (results != NULL && n <= NORI_MAX_BULK)
        for (size_t i = 0; i < n; i++)
            results[i] = NORI_EINVAL;
}

int nori_backend_set_many(nori_backend *b, const nori_set_item *items, size_t n, int *results)
{
    bulk_preset(results, n);
    int rc = check_bulk(b, "set_many", items, n, results, false);
    bulk_call c;
    if (rc != NORI_OK || n == 0 || (rc = bulk_begin(&c, "set_many", n, results)) != NORI_OK)
        return done(b, rc);
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        const nori_set_item *it = &items[i];
        int irc = check_key(it->key, &c.klens[i]);
        if (irc == NORI_OK)
            irc = check_ttl(it->ttl);
        if (irc == NORI_OK && it->value == NULL && it->len > 0)
            irc = nori__fail(NORI_EINVAL, "set_many '%.64s': value is NULL with length %zu",
                             it->key, it->len);
        if (irc == NORI_OK)
            irc = nori__check_value(b, it->key, it->len);
        if (!bulk_note(&c, i, irc))
            c.klens[i] = 0;
        any |= c.klens[i] != 0;
    }
    if (any && b->ops->set_many != NULL) {
        TIMED(b, NORI__OP_SET_MANY, b->ops->set_many(b, n, items, c.klens, c.rcs));
    } else if (any) {
        for (size_t i = 0; i < n; i++)
            if (c.klens[i] != 0)
                bulk_note(&c, i,
                          b->ops->set(b, items[i].key, c.klens[i],
                                      items[i].value == NULL ? "" : items[i].value,
                                      items[i].len, items[i].ttl));
    }
    return done(b, bulk_end(&c));
}

int nori_backend_delete_many(nori_backend *b, const char *const *keys, size_t n, int *results)
{
    bulk_preset(results, n);
    int rc = check_bulk(b, "delete_many", keys, n, results, false);
    bulk_call c;
    if (rc != NORI_OK || n == 0 || (rc = bulk_begin(&c, "delete_many", n, results)) != NORI_OK)
        return done(b, rc);
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        if (!bulk_note(&c, i, check_key(keys[i], &c.klens[i])))
            c.klens[i] = 0;
        any |= c.klens[i] != 0;
    }
    if (any && b->ops->delete_many != NULL) {
        TIMED(b, NORI__OP_DELETE_MANY, b->ops->delete_many(b, n, keys, c.klens, c.rcs));
    } else if (any) {
        for (size_t i = 0; i < n; i++)
            if (c.klens[i] != 0)
                bulk_note(&c, i, b->ops->del(b, keys[i], c.klens[i]));
    }
    return done(b, bulk_end(&c));
}
