// SPDX-License-Identifier: MIT
/* The Redis backend's own series in nori_metrics_write(): the circuit
 * breaker, timeouts, and the near cache when there is one. */
#include "redis/internal.h"
#include "metrics_text.h"

static void write_near(nori__metrics *m, const nori_near_stats *n)
{
    nori__metrics_counter(m, "nori_near_hits_total", "Gets served by the near cache.", n->hits);
    nori__metrics_counter(m, "nori_near_misses_total", "Gets the near cache sent to Redis.",
                          n->misses);
    nori__metrics_family(m, "nori_near_fills_total", "counter",
                         "Replies from Redis, by what the near cache did with them (kept; "
                         "discarded: raced with a change, not proved, too big).");
    const char *kept[] = {"result", "kept", NULL}, *discarded[] = {"result", "discarded", NULL};
    nori__metrics_sample(m, "nori_near_fills_total", kept, n->fills);
    nori__metrics_sample(m, "nori_near_fills_total", discarded, n->fills_discarded);
    nori__metrics_counter(m, "nori_near_invalidations_total",
                          "Keys named by Redis invalidation messages.", n->invalidations);
    nori__metrics_counter(m, "nori_near_evictions_total",
                          "Local copies dropped by the near cache's bounds.", n->evictions);
    nori__metrics_family(m, "nori_near_flushes_total", "counter",
                         "Times the near cache was emptied, by cause.");
    const struct {
        const char *cause;
        uint64_t n;
    } flushes[] = {{"own", n->flushes_own},
                   {"server", n->flushes_server},
                   {"listener_lost", n->flushes_listener_lost},
                   {"heartbeat", n->flushes_heartbeat},
                   {"tracking_lost", n->flushes_tracking_lost},
                   {"topology", n->flushes_topology},
                   {"db_changed", n->flushes_db_changed}};
    for (size_t i = 0; i < sizeof flushes / sizeof *flushes; i++) {
        const char *labels[] = {"cause", flushes[i].cause, NULL};
        nori__metrics_sample(m, "nori_near_flushes_total", labels, flushes[i].n);
    }
    nori__metrics_gauge(m, "nori_near_entries", "Local copies the near cache holds now.",
                        n->entries);
    nori__metrics_gauge(m, "nori_near_bytes",
                        "Bytes the near cache holds now, as its byte bound counts them.",
                        n->bytes);
    nori__metrics_gauge(m, "nori_near_active",
                        "1 while Redis tracking is proved and the near cache serves, else 0.",
                        (uint64_t)(n->active != 0));
    nori__metrics_gauge(m, "nori_near_db_unchecked",
                        "Nodes whose database marker is not read (SWAPDB there is bounded by "
                        "the near cache's lifetime cap only).",
                        n->db_unchecked);
}

void nori__redis_metrics(nori_backend *b, const nori_backend_stats *st, nori__metrics *m)
{
    nori__metrics_family(m, "nori_redis_circuit_state", "gauge",
                         "The circuit breaker's state (1 on the current one): closed, calls go "
                         "to Redis; open, they fail fast; half_open, one probe is testing.");
    static const struct {
        const char *name;
        uint64_t value;
    } states[] = {{"closed", NORI_CIRCUIT_CLOSED},
                  {"open", NORI_CIRCUIT_OPEN},
                  {"half_open", NORI_CIRCUIT_HALF_OPEN}};
    for (size_t i = 0; i < sizeof states / sizeof *states; i++) {
        const char *labels[] = {"state", states[i].name, NULL};
        nori__metrics_sample(m, "nori_redis_circuit_state", labels,
                             st->circuit_state == states[i].value);
    }
    nori__metrics_counter(m, "nori_redis_circuit_opens_total",
                          "Times the circuit breaker opened.", st->circuit_opens);
    nori__metrics_counter(m, "nori_redis_circuit_rejected_total",
                          "Calls failed fast while the circuit was open.", st->circuit_rejected);
    nori__metrics_counter(m, "nori_redis_timeouts_total",
                          "Commands and connects that ran out of time.", st->timeouts);
    nori_near_stats near;
    if (nori_backend_get_near_stats(b, &near) == NORI_OK)
        write_near(m, &near);
}
