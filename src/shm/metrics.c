// SPDX-License-Identifier: MIT
/* The shared-memory backend's own series in nori_metrics_write(): what the
 * segment holds (every process's entries), its bounds, and what its robust
 * locks have seen (holders found dead, sections rolled back, waits that
 * gave up). */
#include "shm/internal.h"

#include "metrics_text.h"

void nori__shm_metrics(nori_backend *b, const nori_backend_stats *st, nori__metrics *m)
{
    shm_backend *sb = (shm_backend *)b;
    nori_shm_stats ss;
    if (nori_shm_backend_get_stats(b, &ss) != NORI_OK)
        return;
    nori__metrics_gauge(m, "nori_cache_entries", "Entries the segment holds now.", st->entries);
    nori__metrics_gauge(m, "nori_cache_bytes",
                        "Bytes the segment holds now, as its byte bound counts them.", st->bytes);
    nori__metrics_gauge(m, "nori_cache_max_keys", "The segment's bound on entries.",
                        sb->max_keys);
    nori__metrics_gauge(m, "nori_cache_max_bytes", "The segment's byte bound (its arena).",
                        st->max_bytes);
    nori__metrics_counter(m, "nori_cache_evictions_total",
                          "Live entries removed to make room (least recently used first).",
                          st->evictions);
    nori__metrics_counter(m, "nori_cache_expired_total",
                          "Expired entries removed (on read, by a write, or by the sweeper).",
                          st->expired);
    nori__metrics_gauge(m, "nori_shm_segment_bytes", "The size of the segment's mapping.",
                        ss.segment_bytes);
    nori__metrics_gauge(m, "nori_shm_free_pages", "4 KiB pages of the arena not in use.",
                        ss.free_pages);
    nori__metrics_counter(m, "nori_shm_owner_died_total",
                          "Locks of the segment found held by a process that had died.",
                          ss.owner_died);
    nori__metrics_counter(m, "nori_shm_repairs_total",
                          "Locked sections of a dead process rolled back.", ss.repairs);
    nori__metrics_counter(m, "nori_shm_lock_timeouts_total",
                          "Calls that gave up waiting for a lock held by a stopped process.",
                          ss.lock_timeouts);
    nori__metrics_counter(m, "nori_shm_frag_evictions_total",
                          "Evictions made for a free chunk of a size class, not for a bound.",
                          ss.frag_evictions);
}
