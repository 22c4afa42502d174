// SPDX-License-Identifier: MIT
/*
 * Model-based test of the shared-memory backend, as test_memory_model does
 * for the memory backend: a long single-threaded random sequence of get,
 * set, delete, incr, atomic_update, flush and clock steps, checked step by
 * step against a small reference LRU with both bounds. Values go from
 * empty to past a page (LARGE entries) and, in one configuration, past the
 * byte bound. Every result, every value read, and periodically the audit
 * of the whole segment (chains, lists, pages, chunks, room) and the
 * counters must agree exactly. The arena must never have needed an
 * eviction for fragmentation here (frag_evictions stays 0), since the
 * model does not predict those.
 *
 * NORI_MODEL_OPS sets the operations (default 300,000 over the
 * configurations), NORI_MODEL_SEED the seed (printed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backend.h"
#include "clock.h"
#include "shm/internal.h"
#include "shm/shm.h"
#include "test_support.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NKEYS 48
#define MAX_VAL 70000

static _Atomic int64_t fake_now = 5000000; /* the virtual clock (clock.h) */

typedef struct {
    int present;
    unsigned char val[MAX_VAL + 24];
    size_t len;
    int64_t expires;
    uint64_t stamp;
} ref_entry;

typedef struct {
    ref_entry e[NKEYS];
    size_t max_keys, max_bytes;
    uint64_t clock;
    uint64_t evictions, expired;
} model;

static char keys[NKEYS][16];

static size_t charge(int k, size_t len)
{
    return (size_t)shm_charge_for(strlen(keys[k]), len);
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
            n += charge(k, m->e[k].len);
    return n;
}

static int ref_expired(const model *m, int k)
{
    return m->e[k].present && m->e[k].expires != 0 && m->e[k].expires <= fake_now;
}

static int ref_evict_one(model *m, int keep)
{
    int victim = -1;
    for (int k = 0; k < NKEYS; k++)
        if (k != keep && m->e[k].present && (victim < 0 || m->e[k].stamp < m->e[victim].stamp))
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

static void ref_make_room(model *m, int keep, size_t places, size_t bytes)
{
    while ((places > 0 && ref_count(m) + places > m->max_keys) ||
           ref_bytes(m) + bytes > m->max_bytes)
        if (!ref_evict_one(m, keep))
            fail_msg("reference: nothing left to evict");
}

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

static void ref_write(model *m, int k, const void *val, size_t len, int64_t expires)
{
    size_t nb = charge(k, len);
    if (m->e[k].present) {
        size_t ob = charge(k, m->e[k].len);
        ref_make_room(m, k, 0, nb > ob ? nb - ob : 0);
    } else {
        ref_make_room(m, -1, 1, nb);
    }
    ref_store(m, k, val, len, expires);
}

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
    size_t vmax;
} update_plan;

static int update_fn(const nori_buf *cur, nori_buf *next, void *ud)
{
    update_plan *p = ud;
    if (p->decline)
        return 1;
    size_t n = cur != NULL ? cur->len : 0;
    if (n >= p->vmax)
        n = p->vmax - 1;
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

/* Counters, small values (rewritten in place), and values up to vmax. */
static void fill_value(unsigned char *v, size_t *len, size_t vmax)
{
    uint32_t r = rnd() % 10;
    if (r < 3) {
        int n = snprintf((char *)v, 24, "%" PRId64, (int64_t)(rnd() % 2000) - 1000);
        *len = (size_t)n;
        return;
    }
    *len = r < 6 ? rnd() % 65 : rnd() % (vmax + 1);
    for (size_t i = 0; i < *len; i++)
        v[i] = (unsigned char)rnd();
}

static void check_totals(nori_backend *b, const model *m, long step)
{
    int64_t held = nori__shm_audit(b);
    nori_backend_stats st;
    assert_nori(nori_backend_get_stats(b, &st), NORI_OK);
    if (held != (int64_t)ref_count(m) || st.bytes != ref_bytes(m))
        fail_msg("step %ld: backend holds %" PRId64 " entries / %" PRIu64
                 " bytes, the model %zu / %zu",
                 step, held, st.bytes, ref_count(m), ref_bytes(m));
    if (st.evictions != m->evictions || st.expired != m->expired || st.entries != (uint64_t)held)
        fail_msg("step %ld: stats evictions %" PRIu64 " expired %" PRIu64 ", model %" PRIu64
                 " %" PRIu64,
                 step, st.evictions, st.expired, m->evictions, m->expired);
    nori_shm_stats ss;
    assert_nori(nori_shm_backend_get_stats(b, &ss), NORI_OK);
    if (ss.frag_evictions != 0)
        fail_msg("step %ld: %" PRIu64 " evictions for fragmentation", step, ss.frag_evictions);
}

static void run_model(size_t max_keys, size_t max_bytes, size_t vmax, long ops)
{
    char name[64];
    snprintf(name, sizeof name, "nori-test-model-%ld", (long)getpid());
    (void)nori_shm_backend_unlink(name);
    nori_backend *b;
    assert_nori(nori__shm_backend_new_opts(name, max_keys, max_bytes, false, &b), NORI_OK);
    assert_nori(nori_backend_set_max_value(b, MAX_VAL), NORI_OK);
    model *m = calloc(1, sizeof *m);
    assert_non_null(m);
    m->max_keys = max_keys;
    m->max_bytes = max_bytes;
    unsigned char *v = malloc(MAX_VAL + 24);
    update_plan *plan = malloc(sizeof *plan);
    assert_non_null(v);
    assert_non_null(plan);
    size_t vlen;
    for (long step = 0; step < ops; step++) {
        int k = (int)(rnd() % NKEYS);
        const char *key = keys[k];
        uint32_t op = rnd() % 100;
        if (op < 35) {
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
        } else if (op < 65) {
            fill_value(v, &vlen, vmax);
            int64_t ttl = rnd() % 3 == 0 ? 1 + rnd() % 3 : 0;
            int rc = nori_backend_set(b, key, v, vlen, ttl);
            int want = charge(k, vlen) > max_bytes ? NORI_ETOOBIG : NORI_OK;
            if (rc != want)
                fail_msg("step %ld: set %s (%zu bytes) = %d, model %d (%s)", step, key, vlen, rc,
                         want, nori_last_error());
            if (rc == NORI_OK)
                ref_write(m, k, v, vlen, ttl > 0 ? fake_now + ttl * 1000 : 0);
        } else if (op < 72) {
            assert_nori(nori_backend_delete(b, key), NORI_OK);
            m->e[k].present = 0;
        } else if (op < 82) {
            int64_t ttl = rnd() % 2 == 0 ? 1 + rnd() % 3 : 0;
            int64_t got = 0;
            int rc = nori_backend_incr(b, key, ttl, &got);
            int want = NORI_OK;
            int64_t value = 1;
            if (ref_lookup(m, k)) {
                int64_t old;
                if (!nori__parse_int64((const char *)m->e[k].val, m->e[k].len, &old))
                    want = NORI_ETYPE;
                else
                    value = old + 1;
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
        } else if (op < 92) {
            memset(plan, 0, sizeof *plan);
            plan->decline = rnd() % 5 == 0;
            plan->vmax = vmax;
            int64_t ttl = rnd() % 2 == 0 ? 1 + rnd() % 3 : 0;
            int rc = nori_backend_atomic_update(b, key, update_fn, plan, ttl, NULL);
            int present = ref_lookup(m, k);
            int want = plan->decline ? NORI_EABORT : NORI_OK;
            int64_t expires = ttl > 0 ? fake_now + ttl * 1000 : present ? m->e[k].expires : 0;
            if (want == NORI_OK && charge(k, plan->len) > max_bytes)
                want = NORI_ETOOBIG;
            if (rc != want)
                fail_msg("step %ld: atomic_update %s = %d, model %d (%s)", step, key, rc, want,
                         nori_last_error());
            if (rc == NORI_OK)
                ref_write(m, k, plan->val, plan->len, expires);
        } else if (op < 93) {
            assert_nori(nori_backend_flush(b), NORI_OK);
            for (int i = 0; i < NKEYS; i++)
                m->e[i].present = 0;
        } else {
            fake_now += rnd() % 1500;
        }
        if (step % 997 == 0)
            check_totals(b, m, step);
    }
    check_totals(b, m, ops);
    print_message("max_keys=%zu max_bytes=%zu values<=%zu: %ld ops, %" PRIu64
                  " evictions, %" PRIu64 " expired\n",
                  max_keys, max_bytes, vmax, ops, m->evictions, m->expired);
    free(v);
    free(plan);
    free(m);
    nori_backend_free(b);
    assert_nori(nori_shm_backend_unlink(name), NORI_OK);
}

static long total_ops(void)
{
    const char *s = getenv("NORI_MODEL_OPS");
    return s != NULL ? atol(s) : 300000;
}

static void test_model_both_bounds(void **state)
{
    (void)state;
    run_model(20, 65536, 9000, total_ops() * 4 / 10); /* both bounds bind in turn */
}

static void test_model_keys_only(void **state)
{
    (void)state;
    run_model(8, 1 << 20, 9000, total_ops() * 3 / 10); /* the byte bound never binds */
}

static void test_model_tight_bytes(void **state)
{
    (void)state;
    run_model(1000, 65536, MAX_VAL, total_ops() * 3 / 10); /* some values alone exceed it */
}

static int setup(void **state)
{
    (void)state;
    const char *seed = getenv("NORI_MODEL_SEED");
    rng_state = seed != NULL ? strtoull(seed, NULL, 10) : 20261206ull;
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
