// SPDX-License-Identifier: MIT
/*
 * nori_metrics_write(): a backend's and some response caches' counters in
 * Prometheus' text format. The series common to every backend are written
 * here; what only one kind of backend means (entries, a circuit breaker, a
 * near cache) is written by the backend itself through ops->metrics, so
 * nothing here names a backend.
 */
#include "backend.h"
#include "error.h"
#include "metrics_text.h"

#include "nori/http.h"

#include <stdlib.h>
#include <string.h>

static const char *const op_names[NORI__OPS] = {
    "get", "set", "delete", "incr", "atomic_update", "get_many", "set_many", "delete_many",
    "other"};

static void write_backend(nori__metrics *m, nori_backend *b)
{
    nori_backend_stats st;
    if (nori_backend_get_stats(b, &st) != NORI_OK)
        return;
    nori__metrics_family(m, "nori_backend_info", "gauge", "The backend, by kind (always 1).");
    const char *kind[] = {"kind", nori_backend_kind(b), NULL};
    nori__metrics_sample(m, "nori_backend_info", kind, 1);
    nori__metrics_counter(m, "nori_backend_errors_total",
                          "Backend calls that returned an error.", st.errors);
    nori__metrics_family(m, "nori_backend_gets_total", "counter",
                         "Backend gets, by result (a value found, or none).");
    const char *hit[] = {"result", "hit", NULL}, *miss[] = {"result", "miss", NULL};
    nori__metrics_sample(m, "nori_backend_gets_total", hit, st.hits);
    nori__metrics_sample(m, "nori_backend_gets_total", miss, st.misses);

    nori__metrics_family(m, "nori_backend_call_duration_seconds", "histogram",
                         nori__backend_traits(b)->remote
                             ? "Latency of backend calls, by operation (every call)."
                             : "Latency of backend calls, by operation (one call in 64 is "
                               "timed).");
    double bounds[NORI__LATENCY_BUCKETS];
    for (int i = 0; i < NORI__LATENCY_BUCKETS; i++)
        bounds[i] = (double)nori__latency_bounds_ns[i] / 1e9;
    for (int op = 0; op < NORI__OPS; op++) {
        uint64_t counts[NORI__LATENCY_BUCKETS + 1], sum_ns;
        nori__backend_latency(b, op, counts, &sum_ns);
        nori__metrics_histogram(m, "nori_backend_call_duration_seconds", "op", op_names[op],
                                bounds, counts, NORI__LATENCY_BUCKETS, (double)sum_ns / 1e9);
    }
    if (b->ops->metrics != NULL)
        b->ops->metrics(b, &st, m);
}

/* One counter family of the response caches: summed, or one series each. */
typedef uint64_t (*cache_field_fn)(const nori_http_cache_stats *s);

typedef struct {
    nori__metrics *m;
    const nori_metrics_sources *src;
    nori_http_cache_stats *stats; /* one per cache */
} cache_writer;

static void cache_samples(const cache_writer *w, const char *name, const char *label,
                          const char *value, cache_field_fn field)
{
    const nori_metrics_sources *src = w->src;
    if (src->cache_names == NULL) {
        uint64_t sum = 0;
        for (size_t i = 0; i < src->n_caches; i++)
            sum += field(&w->stats[i]);
        const char *labels[] = {label, value, NULL};
        nori__metrics_sample(w->m, name, label != NULL ? labels : NULL, sum);
        return;
    }
    for (size_t i = 0; i < src->n_caches; i++) {
        const char *labels[] = {"cache", src->cache_names[i], label, value, NULL};
        nori__metrics_sample(w->m, name, labels, field(&w->stats[i]));
    }
}

#define FIELD(f)                                                                              \
    static uint64_t field_##f(const nori_http_cache_stats *s) { return s->f; }
FIELD(hits)
FIELD(misses)
FIELD(stores)
FIELD(errors)
FIELD(bypass_method)
FIELD(bypass_authorization)
FIELD(bypass_cookie)
FIELD(not_encodable)
FIELD(too_big)
FIELD(superseded)
FIELD(unsendable)
FIELD(coalesced)
FIELD(lock_timeouts)
FIELD(hit_for_miss)
FIELD(stale_revalidate)
FIELD(stale_error)
FIELD(refreshes)
FIELD(refreshes_dropped)
FIELD(refreshes_skipped)
FIELD(not_modified)
FIELD(revalidations)
FIELD(revalidated)
FIELD(invalidations)
FIELD(memo_hits)
FIELD(memo_bytes)

/* A family whose samples differ by one label (reason, result...). */
typedef struct {
    const char *value;
    cache_field_fn field;
} labelled;

static void cache_family(const cache_writer *w, const char *name, const char *type,
                         const char *help, const char *label, const labelled *parts, size_t n)
{
    nori__metrics_family(w->m, name, type, help);
    for (size_t i = 0; i < n; i++)
        cache_samples(w, name, label, parts[i].value, parts[i].field);
}

static void cache_counter(const cache_writer *w, const char *name, const char *help,
                          cache_field_fn field)
{
    labelled one = {NULL, field};
    cache_family(w, name, "counter", help, NULL, &one, 1);
}

static void write_caches(nori__metrics *m, const nori_metrics_sources *src)
{
    cache_writer w = {m, src, calloc(src->n_caches, sizeof(nori_http_cache_stats))};
    if (w.stats == NULL) {
        m->failed = 1;
        return;
    }
    for (size_t i = 0; i < src->n_caches; i++)
        nori_http_cache_get_stats(src->caches[i], &w.stats[i]);
    cache_counter(&w, "nori_cache_hits_total", "Responses served from the cache (304s included).",
                  field_hits);
    cache_counter(&w, "nori_cache_misses_total",
                  "Cacheable requests the cache could not serve (the handler ran).",
                  field_misses);
    cache_counter(&w, "nori_cache_stores_total", "Responses written to the cache.",
                  field_stores);
    cache_counter(&w, "nori_cache_errors_total",
                  "Response-cache failures: backend errors, undecodable entries, oversized "
                  "keys (the request was served uncached).",
                  field_errors);
    const labelled bypass[] = {{"method", field_bypass_method},
                               {"authorization", field_bypass_authorization},
                               {"cookie", field_bypass_cookie}};
    cache_family(&w, "nori_cache_bypass_total", "counter",
                 "Requests on cached routes that did not consult the cache, by reason.",
                 "reason", bypass, 3);
    const labelled not_stored[] = {{"not_encodable", field_not_encodable},
                                   {"too_big", field_too_big},
                                   {"superseded", field_superseded}};
    cache_family(&w, "nori_cache_not_stored_total", "counter",
                 "Storable responses that were not stored, by reason.", "reason", not_stored,
                 3);
    cache_counter(&w, "nori_cache_unsendable_total",
                  "Cache hits the adapter could not send (served again as a miss).",
                  field_unsendable);
    cache_counter(&w, "nori_cache_coalesced_total",
                  "Requests served from another request's fill of the same key.",
                  field_coalesced);
    cache_counter(&w, "nori_cache_lock_timeouts_total",
                  "Waits for another request's fill that ran out of time.",
                  field_lock_timeouts);
    cache_counter(&w, "nori_cache_hit_for_miss_total",
                  "Requests that did not wait: their key is remembered as unstorable.",
                  field_hit_for_miss);
    const labelled stale[] = {{"revalidate", field_stale_revalidate},
                              {"error", field_stale_error}};
    cache_family(&w, "nori_cache_stale_total", "counter",
                 "Answers from an expired entry, by reason (stale_while_revalidate, "
                 "stale_if_error).",
                 "reason", stale, 2);
    const labelled refreshes[] = {{"run", field_refreshes},
                                  {"dropped", field_refreshes_dropped},
                                  {"skipped", field_refreshes_skipped}};
    cache_family(&w, "nori_cache_background_refreshes_total", "counter",
                 "Background refreshes, by result (run; dropped: not queued; skipped: "
                 "refreshed meanwhile or leased by another process).",
                 "result", refreshes, 3);
    cache_counter(&w, "nori_cache_not_modified_total", "304 Not Modified answers.",
                  field_not_modified);
    cache_counter(&w, "nori_cache_revalidations_total",
                  "Handler runs made conditional with a stale entry's validators.",
                  field_revalidations);
    cache_counter(&w, "nori_cache_revalidated_total",
                  "Stale entries a 304 from the handler made fresh again (served as hits).",
                  field_revalidated);
    cache_counter(&w, "nori_cache_invalidations_total",
                  "Path invalidations after successful writes.", field_invalidations);
    cache_counter(&w, "nori_cache_memo_hits_total",
                  "Hits whose JSON entry was already decoded (same key, same bytes).",
                  field_memo_hits);
    labelled memo = {NULL, field_memo_bytes};
    cache_family(&w, "nori_cache_memo_bytes", "gauge", "Bytes held by the decoded-entry memo.",
                 NULL, &memo, 1);
    free(w.stats);
}

int nori_metrics_write(const nori_metrics_sources *src, nori_buf *out)
{
    if (out != NULL) {
        out->data = NULL;
        out->len = 0;
    }
    if (src == NULL || out == NULL)
        return nori__fail(NORI_EINVAL, "metrics_write: src or out is NULL");
    if (src->n_caches > 0 && src->caches == NULL)
        return nori__fail(NORI_EINVAL, "metrics_write: %zu caches but caches is NULL",
                          src->n_caches);
    for (size_t i = 0; i < src->n_caches; i++) {
        if (src->caches[i] == NULL)
            return nori__fail(NORI_EINVAL, "metrics_write: caches[%zu] is NULL", i);
        if (src->cache_names != NULL && src->cache_names[i] == NULL)
            return nori__fail(NORI_EINVAL, "metrics_write: cache_names[%zu] is NULL", i);
    }
    nori__metrics m = {0};
    if (src->backend != NULL)
        write_backend(&m, src->backend);
    if (src->n_caches > 0)
        write_caches(&m, src);
    if (m.failed || m.text == NULL) {
        free(m.text);
        if (m.failed)
            return nori__fail(NORI_ENOMEM, "metrics_write: out of memory");
        /* Nothing to render: an empty text, still a valid exposition. */
        m.text = calloc(1, 1);
        if (m.text == NULL)
            return nori__fail(NORI_ENOMEM, "metrics_write: out of memory");
    }
    out->data = m.text;
    out->len = m.len;
    return NORI_OK;
}
