// SPDX-License-Identifier: MIT
/*
 * Writing Prometheus' text exposition format (version 0.0.4): one family at
 * a time, HELP and TYPE first, then its samples. The parts that know what a
 * series means (each backend, the response cache) write through these; the
 * rules of the format (escaping, cumulative buckets, _total, no duplicate
 * family) live here once.
 */
#ifndef NORI_SRC_METRICS_TEXT_H
#define NORI_SRC_METRICS_TEXT_H

#include <nori/cache.h>

#include <stddef.h>
#include <stdint.h>

/* A growing text buffer; `failed` is set by the first allocation failure,
 * after which every call does nothing. */
typedef struct nori__metrics {
    char *text;
    size_t len, cap;
    int failed;
} nori__metrics;

/* Starts a family: `# HELP name help` and `# TYPE name type` ("counter",
 * "gauge", "histogram"). A counter's name ends in _total. */
void nori__metrics_family(nori__metrics *m, const char *name, const char *type,
                          const char *help);

/*
 * One sample of the current family: `name{labels} value`. labels is NULL
 * (none) or a NULL-terminated list of name, value pairs; values are escaped
 * (backslash, double quote, newline).
 */
void nori__metrics_sample(nori__metrics *m, const char *name, const char *const *labels,
                          uint64_t value);

/* A family with a single unlabelled sample. */
void nori__metrics_counter(nori__metrics *m, const char *name, const char *help, uint64_t v);
void nori__metrics_gauge(nori__metrics *m, const char *name, const char *help, uint64_t v);

/*
 * The samples of one labelled series of a histogram family (the family was
 * started with type "histogram"): `counts[i]` observations fell at or below
 * `bounds[i]` seconds and above the previous bound (counts[n] above the
 * last), `sum_seconds` their total. Writes the cumulative _bucket samples,
 * le="+Inf" included, then _sum and _count. `label`/`value` add one label
 * (both NULL: none).
 */
void nori__metrics_histogram(nori__metrics *m, const char *name, const char *label,
                             const char *value, const double *bounds, const uint64_t *counts,
                             size_t n, double sum_seconds);

/* printf into the buffer (a line the helpers above do not cover). */
void nori__metrics_printf(nori__metrics *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The series of a backend that holds its entries on this machine under
 * both bounds (memory, shm): entries, bytes, the bounds, evictions and
 * expiries, from its stats and its max_keys. */
void nori__metrics_bounded_store(nori__metrics *m, const nori_backend_stats *st,
                                 uint64_t max_keys);

#endif
