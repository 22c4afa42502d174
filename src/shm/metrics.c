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
    nori__metrics_bounded_store(m, st, sb->max_keys);
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
