// SPDX-License-Identifier: MIT
/*
 * Model-based test of the memory backend: a long single-threaded random
 * sequence of get, set, delete, incr, atomic_update, flush and clock steps
 * (an injected clock), checked step by step against a small reference LRU
 * with both bounds (max_keys and bytes). Every result, every value read and,
 * periodically, the entry count, the bytes held and the eviction and expiry
 * counters must agree exactly.
 *
 * NORI_MODEL_OPS sets the number of operations per configuration (default
 * 1,000,000 in total over the configurations below); NORI_MODEL_SEED the
 * seed (printed, so a failure can be replayed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backend.h"
#include "clock.h"
#include "memory/memory.h"
#include "test_support.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NKEYS 48
#define MAX_VAL 300

static _Atomic int64_t fake_now = 5000000; /* the virtual clock (clock.h) */

/* ---- the reference ---- */

typedef struct {
    int present;
    unsigned char val[MAX_VAL + 24];
    size_t len;
    int64_t expires; /* 0: never */
    uint64_t stamp;  /* last access */
} ref_entry;

typedef struct {
    ref_entry e[NKEYS];
    size_t max_keys, max_bytes;
    uint64_t clock; /* logical access order */
    uint64_t evictions, expired;
} model;

static char keys[NKEYS][16];

static size_t charge(int k, size_t len, int has_ttl)
{
    return nori_memory_entry_bytes(strlen(keys[k]), len, has_ttl);
}

static size_t ref_count(const model *m)
{
    size_t n = 0;
    for (int k = 0; k < NKEYS; k++)
        n += (size_t)m->e[k].present;
    return n;
}

static size_t ref_bytes(const model *m)
{
    size_t n = 0;
    for (int k = 0; k < NKEYS; k++)
        if (m->e[k].present)
            n += charge(k, m->e[k].len, m->e[k].expires != 0);
    return n;
}

static int ref_expired(const model *m, int k)
{
    return m->e[k].present && m->e[k].expires != 0 && m->e[k].expires <= fake_now;
}

/* Evicts the least recently used entry other than `keep`; 0 when none. */
static int ref_evict_one(model *m, int keep)
{
    int victim = -1;
    for (int k = 0; k < NKEYS; k++)
        if (k != keep && m->e[k].present &&
            (victim < 0 || m->e[k].stamp < m->e[victim].stamp))
            victim = k;
    if (victim < 0)
        return 0;
    if (ref_expired(m, victim))
        m->expired++;
    else
        m->evictions++;
    m->e[victim].present = 0;
    return 1;
}

/* Makes room for `places` (0/1) more entries and `bytes` more bytes. */
static void ref_make_room(model *m, int keep, size_t places, size_t bytes)
{
    while ((places > 0 && ref_count(m) + places > m->max_keys) ||
           (m->max_bytes != 0 && ref_bytes(m) + bytes > m->max_bytes))
        if (!ref_evict_one(m, keep))
            fail_msg("reference: nothing left to evict");
}

/* Lazy expiry on lookup (get, incr, atomic_update). */
static int ref_lookup(model *m, int k)
{
    if (ref_expired(m, k)) {
        m->e[k].present = 0;
        m->expired++;
    }
    return m->e[k].present;
}

static void ref_store(model *m, int k, const void *val, size_t len, int64_t expires)
{
    ref_entry *e = &m->e[k];
    memcpy(e->val, val, len);
    e->len = len;
    e->expires = expires;
    e->present = 1;
    e->stamp = ++m->clock;
}

/* A write of a new value for k (present or not), room made first. */
static void ref_write(model *m, int k, const void *val, size_t len, int64_t expires)
{
    size_t nb = charge(k, len, expires != 0);
    if (m->e[k].present) {
        size_t ob = charge(k, m->e[k].len, m->e[k].expires != 0);
        ref_make_room(m, k, 0, nb > ob ? nb - ob : 0);
    } else {
        ref_make_room(m, -1, 1, nb);
    }
    ref_store(m, k, val, len, expires);
}

/* ---- the operations, on both ---- */

static unsigned long long rng_state;

static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

typedef struct {
    unsigned char val[MAX_VAL + 24];
    size_t len;
    int decline;
} update_plan;

/* Appends one byte to the value (or writes "u"), or declines. */
static int update_fn(const nori_buf *cur, nori_buf *next, void *ud)
{
    update_plan *p = ud;
    if (p->decline)
        return 1;
    size_t n = cur != NULL ? cur->len : 0;
    if (n >= MAX_VAL)
        n = MAX_VAL - 1;
    next->data = malloc(n + 1);
    if (next->data == NULL)
        return 1;
    if (n > 0)
        memcpy(next->data, cur->data, n);
    next->data[n] = cur != NULL ? 'x' : 'u';
    next->len = n + 1;
    memcpy(p->val, next->data, next->len);
    p->len = next->len;
    return 0;
}

static void fill_value(unsigned char *v, size_t *len)
{
    uint32_t r = rnd() % 10;
    if (r < 3) { /* a counter */
        int n = snprintf((char *)v, 24, "%" PRId64, (int64_t)(rnd() % 2000) - 1000);
        *len = (size_t)n;
        return;
    }
    *len = rnd() % (MAX_VAL + 1);
    for (size_t i = 0; i < *len; i++)
        v[i] = (unsigned char)rnd();
}

static void check_totals(nori_backend *b, const model *m, long step)
{
    size_t bytes = 0;
    int64_t held = nori__memory_audit_bytes(b, &bytes);
    if (held != (int64_t)ref_count(m) || bytes != ref_bytes(m))
        fail_msg("step %ld: backend holds %" PRId64 " entries / %zu bytes, the model %zu / %zu",
                 step, held, bytes, ref_count(m), ref_bytes(m));
    nori_backend_stats st;
    assert_nori(nori_backend_get_stats(b, &st), NORI_OK);
    if (st.evictions != m->evictions || st.expired != m->expired || st.bytes != bytes ||
        st.entries != (uint64_t)held)
        fail_msg("step %ld: stats evictions %" PRIu64 " expired %" PRIu64 ", model %" PRIu64
                 " %" PRIu64,
                 step, st.evictions, st.expired, m->evictions, m->expired);
}

static void run_model(size_t max_keys, size_t max_bytes, long ops)
{
    nori_backend *b;
    assert_nori(nori__memory_backend_new_opts(max_keys, false, &b), NORI_OK);
    assert_nori(nori_memory_backend_set_max_bytes(b, max_bytes), NORI_OK);
    model *m = calloc(1, sizeof *m);
    assert_non_null(m);
    m->max_keys = max_keys;
    m->max_bytes = max_bytes;
    unsigned char v[MAX_VAL + 24];
    size_t vlen;
    for (long step = 0; step < ops; step++) {
        int k = (int)(rnd() % NKEYS);
        const char *key = keys[k];
        uint32_t op = rnd() % 100;
        if (op < 35) { /* get */
            nori_buf out;
            int rc = nori_backend_get(b, key, &out);
            int want = ref_lookup(m, k) ? NORI_OK : NORI_MISS;
            if (rc != want)
                fail_msg("step %ld: get %s = %d, model %d (%s)", step, key, rc, want,
                         nori_last_error());
            if (rc == NORI_OK) {
                if (out.len != m->e[k].len || memcmp(out.data, m->e[k].val, out.len) != 0)
                    fail_msg("step %ld: get %s returned another value", step, key);
                m->e[k].stamp = ++m->clock;
            }
            nori_buf_free(&out);
        } else if (op < 65) { /* set */
            fill_value(v, &vlen);
            int64_t ttl = rnd() % 3 == 0 ? 1 + rnd() % 3 : 0;
            int rc = nori_backend_set(b, key, v, vlen, ttl);
            size_t nb = charge(k, vlen, ttl > 0);
            int want = max_bytes != 0 && nb > max_bytes ? NORI_ETOOBIG : NORI_OK;
            if (rc != want)
                fail_msg("step %ld: set %s (%zu bytes) = %d, model %d (%s)", step, key, vlen, rc,
                         want, nori_last_error());
            if (rc == NORI_OK)
                ref_write(m, k, v, vlen, ttl > 0 ? fake_now + ttl * 1000 : 0);
        } else if (op < 72) { /* delete */
            assert_nori(nori_backend_delete(b, key), NORI_OK);
            m->e[k].present = 0;
        } else if (op < 82) { /* incr */
            int64_t ttl = rnd() % 2 == 0 ? 1 + rnd() % 3 : 0;
            int64_t got = 0;
            int rc = nori_backend_incr(b, key, ttl, &got);
            int want;
            int64_t value = 1;
            if (ref_lookup(m, k)) {
                int64_t old;
                if (!nori__parse_int64((const char *)m->e[k].val, m->e[k].len, &old)) {
                    want = NORI_ETYPE;
                } else {
                    want = NORI_OK;
                    value = old + 1;
                }
            } else {
                want = NORI_OK;
            }
            if (rc != want || (rc == NORI_OK && got != value))
                fail_msg("step %ld: incr %s = %d (%" PRId64 "), model %d (%" PRId64 ") %s", step,
                         key, rc, got, want, value, nori_last_error());
            if (rc == NORI_OK) {
                int n = snprintf((char *)v, 24, "%" PRId64, value);
                int64_t expires = m->e[k].present ? m->e[k].expires
                                                  : (ttl > 0 ? fake_now + ttl * 1000 : 0);
                ref_write(m, k, v, (size_t)n, expires);
            }
        } else if (op < 92) { /* atomic_update */
            update_plan plan = {.decline = rnd() % 5 == 0};
            int64_t ttl = rnd() % 2 == 0 ? 1 + rnd() % 3 : 0;
            int rc = nori_backend_atomic_update(b, key, update_fn, &plan, ttl, NULL);
            int present = ref_lookup(m, k);
            /* A new key takes its place before the callback runs. */
            if (!present)
                ref_make_room(m, -1, 1, 0);
            int want = plan.decline ? NORI_EABORT : NORI_OK;
            int64_t expires = ttl > 0 ? fake_now + ttl * 1000 : present ? m->e[k].expires : 0;
            if (want == NORI_OK && max_bytes != 0 && charge(k, plan.len, expires != 0) > max_bytes)
                want = NORI_ETOOBIG;
            if (rc != want)
                fail_msg("step %ld: atomic_update %s = %d, model %d (%s)", step, key, rc, want,
                         nori_last_error());
            if (rc == NORI_OK) {
                ref_write(m, k, plan.val, plan.len, expires);
            }
        } else if (op < 93) { /* flush, rarely */
            assert_nori(nori_backend_flush(b), NORI_OK);
            for (int i = 0; i < NKEYS; i++)
                m->e[i].present = 0;
        } else { /* time passes */
            fake_now += rnd() % 1500;
        }
        if (step % 997 == 0)
            check_totals(b, m, step);
    }
    check_totals(b, m, ops);
    print_message("max_keys=%zu max_bytes=%zu: %ld ops, %" PRIu64 " evictions, %" PRIu64
                  " expired\n",
                  max_keys, max_bytes, ops, m->evictions, m->expired);
    free(m);
    nori_backend_free(b);
}

static long total_ops(void)
{
    const char *s = getenv("NORI_MODEL_OPS");
    return s != NULL ? atol(s) : 1000000;
}

static void test_model_both_bounds(void **state)
{
    (void)state;
    run_model(20, 4000, total_ops() * 4 / 10); /* both bounds bind in turn */
}

static void test_model_keys_only(void **state)
{
    (void)state;
    run_model(8, 0, total_ops() * 3 / 10); /* no byte bound */
}

static void test_model_tight_bytes(void **state)
{
    (void)state;
    run_model(1000, 300, total_ops() * 3 / 10); /* some values alone exceed the bound */
}

static int setup(void **state)
{
    (void)state;
    const char *seed = getenv("NORI_MODEL_SEED");
    rng_state = seed != NULL ? strtoull(seed, NULL, 10) : 20261128ull;
    print_message("NORI_MODEL_SEED=%llu\n", rng_state);
    for (int k = 0; k < NKEYS; k++)
        snprintf(keys[k], sizeof keys[k], "key:%d", k * 7919);
    nori__clock_override(&fake_now, &fake_now);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    nori__clock_override(NULL, NULL);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_both_bounds),
        cmocka_unit_test(test_model_keys_only),
        cmocka_unit_test(test_model_tight_bytes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
