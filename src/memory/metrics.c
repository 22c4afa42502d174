// SPDX-License-Identifier: MIT
/* The memory backend's own series in nori_metrics_write(): what it holds
 * and what its bounds removed. */
#include "memory/internal.h"
#include "metrics_text.h"

void nori__mem_metrics(nori_backend *b, const nori_backend_stats *st, nori__metrics *m)
{
    const mem_backend *mb = (const mem_backend *)b;
    nori__metrics_gauge(m, "nori_cache_entries", "Entries the backend holds now.", st->entries);
    nori__metrics_gauge(m, "nori_cache_bytes",
                        "Bytes the backend holds now, as its byte bound counts them.",
                        st->bytes);
    nori__metrics_gauge(m, "nori_cache_max_keys", "The backend's bound on entries.",
                        mb->max_keys);
    nori__metrics_gauge(m, "nori_cache_max_bytes", "The backend's byte bound (0: none).",
                        st->max_bytes);
    nori__metrics_counter(m, "nori_cache_evictions_total",
                          "Live entries removed to make room (least recently used first).",
                          st->evictions);
    nori__metrics_counter(m, "nori_cache_expired_total",
                          "Expired entries removed (on read, by a write, or by the sweeper).",
                          st->expired);
}
