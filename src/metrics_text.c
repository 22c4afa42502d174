// SPDX-License-Identifier: MIT
/* Prometheus text format: see metrics_text.h. */
#include "metrics_text.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void append(nori__metrics *m, const char *s, size_t n)
{
    if (m->failed)
        return;
    if (m->len + n + 1 > m->cap) {
        size_t cap = m->cap == 0 ? 4096 : m->cap;
        while (m->len + n + 1 > cap)
            cap *= 2;
        char *t = realloc(m->text, cap);
        if (t == NULL) {
            m->failed = 1;
            return;
        }
        m->text = t;
        m->cap = cap;
    }
    memcpy(m->text + m->len, s, n);
    m->len += n;
    m->text[m->len] = '\0';
}

void nori__metrics_printf(nori__metrics *m, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        m->failed = 1;
    else if ((size_t)n < sizeof line)
        append(m, line, (size_t)n);
    else {
        char *big = malloc((size_t)n + 1);
        if (big == NULL) {
            m->failed = 1;
            return;
        }
        va_start(ap, fmt);
        vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        append(m, big, (size_t)n);
        free(big);
    }
}

void nori__metrics_family(nori__metrics *m, const char *name, const char *type,
                          const char *help)
{
    nori__metrics_printf(m, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value, escaped as the format requires. */
static void append_escaped(nori__metrics *m, const char *v)
{
    for (; *v != '\0'; v++) {
        if (*v == '\\')
            append(m, "\\\\", 2);
        else if (*v == '"')
            append(m, "\\\"", 2);
        else if (*v == '\n')
            append(m, "\\n", 2);
        else
            append(m, v, 1);
    }
}

static void append_labels(nori__metrics *m, const char *const *labels)
{
    if (labels == NULL || labels[0] == NULL)
        return;
    append(m, "{", 1);
    for (size_t i = 0; labels[i] != NULL && labels[i + 1] != NULL; i += 2) {
        if (i > 0)
            append(m, ",", 1);
        nori__metrics_printf(m, "%s=\"", labels[i]);
        append_escaped(m, labels[i + 1]);
        append(m, "\"", 1);
    }
    append(m, "}", 1);
}

void nori__metrics_sample(nori__metrics *m, const char *name, const char *const *labels,
                          uint64_t value)
{
    append(m, name, strlen(name));
    append_labels(m, labels);
    nori__metrics_printf(m, " %" PRIu64 "\n", value);
}

void nori__metrics_counter(nori__metrics *m, const char *name, const char *help, uint64_t v)
{
    nori__metrics_family(m, name, "counter", help);
    nori__metrics_sample(m, name, NULL, v);
}

void nori__metrics_gauge(nori__metrics *m, const char *name, const char *help, uint64_t v)
{
    nori__metrics_family(m, name, "gauge", help);
    nori__metrics_sample(m, name, NULL, v);
}

void nori__metrics_histogram(nori__metrics *m, const char *name, const char *label,
                             const char *value, const double *bounds, const uint64_t *counts,
                             size_t n, double sum_seconds)
{
    char series[128], le[32];
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= n; i++) {
        cumulative += counts[i];
        if (i < n)
            snprintf(le, sizeof le, "%g", bounds[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        const char *labels[] = {label, value, "le", le, NULL};
        snprintf(series, sizeof series, "%s_bucket", name);
        nori__metrics_sample(m, series, label != NULL ? labels : labels + 2, cumulative);
    }
    const char *labels[] = {label, value, NULL};
    append(m, name, strlen(name));
    append(m, "_sum", 4);
    append_labels(m, label != NULL ? labels : NULL);
    nori__metrics_printf(m, " %.9g\n", sum_seconds);
    snprintf(series, sizeof series, "%s_count", name);
    nori__metrics_sample(m, series, label != NULL ? labels : NULL, cumulative);
}

void nori__metrics_bounded_store(nori__metrics *m, const nori_backend_stats *st,
                                 uint64_t max_keys)
{
    nori__metrics_gauge(m, "nori_cache_entries", "Entries the backend holds now.", st->entries);
    nori__metrics_gauge(m, "nori_cache_bytes",
                        "Bytes the backend holds now, as its byte bound counts them.",
                        st->bytes);
    nori__metrics_gauge(m, "nori_cache_max_keys", "The backend's bound on entries.", max_keys);
    nori__metrics_gauge(m, "nori_cache_max_bytes", "The backend's byte bound (0: none).",
                        st->max_bytes);
    nori__metrics_counter(m, "nori_cache_evictions_total",
                          "Live entries removed to make room (least recently used first).",
                          st->evictions);
    nori__metrics_counter(m, "nori_cache_expired_total",
                          "Expired entries removed (on read, by a write, or by the sweeper).",
                          st->expired);
}
