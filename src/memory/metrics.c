// SPDX-License-Identifier: MIT
/* The memory backend's own series in nori_metrics_write(): what it holds
 * and what its bounds removed. */
#include "memory/internal.h"
#include "metrics_text.h"

void nori__mem_metrics(nori_backend *b, const nori_backend_stats *st, nori__metrics *m)
{
    const mem_backend *mb = (const mem_backend *)b;
    nori__metrics_bounded_store(m, st, mb->max_keys);
}
