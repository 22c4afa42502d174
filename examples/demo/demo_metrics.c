/*
 * GET /metrics: the caches' counters summed, the backend's, the demo's own
 * (database queries, connections), in Prometheus' text format. Per
 * process: with --workers each worker answers for itself.
 */
#include "demo.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int demo_metrics(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)req;
    (void)ud;
    nori_http_cache_stats sum, s;
    memset(&sum, 0, sizeof sum);
    nori_http_cache *caches[] = {demo.main_cache, demo.greet_cache, demo.me_cache,
                                 demo.stock_cache, demo.short_cache};
    for (int i = 0; i < 5; i++) {
        nori_http_cache_get_stats(caches[i], &s);
        sum.hits += s.hits;
        sum.misses += s.misses;
        sum.stores += s.stores;
        sum.errors += s.errors;
        sum.bypass_method += s.bypass_method;
        sum.bypass_authorization += s.bypass_authorization;
        sum.bypass_cookie += s.bypass_cookie;
        sum.not_encodable += s.not_encodable;
        sum.too_big += s.too_big;
        sum.unsendable += s.unsendable;
        sum.coalesced += s.coalesced;
        sum.lock_timeouts += s.lock_timeouts;
        sum.hit_for_miss += s.hit_for_miss;
        sum.stale_revalidate += s.stale_revalidate;
        sum.stale_error += s.stale_error;
        sum.refreshes += s.refreshes;
        sum.refreshes_dropped += s.refreshes_dropped;
        sum.not_modified += s.not_modified;
        sum.invalidations += s.invalidations;
        sum.memo_hits += s.memo_hits;
        sum.memo_bytes += s.memo_bytes;
    }
    nori_backend_stats b = {0};
    nori_backend_get_stats(demo.backend, &b);
    demo_text t;
    demo_text_open(&t);
    if (t.f == NULL)
        return NORI_ENOMEM;
#define METRIC(name, help, value)                                                           \
    fprintf(t.f, "# HELP " name " " help "\n# TYPE " name " counter\n" name " %" PRIu64 "\n", \
            (uint64_t)(value))
    METRIC("nori_cache_hits_total", "Responses served from the cache.", sum.hits);
    METRIC("nori_cache_misses_total", "Cacheable requests the cache could not serve.",
           sum.misses);
    METRIC("nori_cache_stores_total", "Responses written to the cache.", sum.stores);
    METRIC("nori_cache_evictions_total", "Entries evicted by the memory backend's bound.",
           b.evictions);
    METRIC("nori_cache_errors_total", "Response-cache failures (served uncached).", sum.errors);
    METRIC("nori_backend_errors_total", "Backend calls that failed.", b.errors);
    METRIC("nori_db_queries_total", "Queries run against the database.",
           atomic_load(&demo.db_queries));
    /* A gauge: the connections libmicrohttpd has accepted and not yet
     * closed (this one included). Counted after MHD's connection limits
     * admitted them, so a test can wait until the connections it opened
     * are all held before it checks a limit. */
    nori_fcgi_stats fs = {0};
    nori_fcgi_server_get_stats(demo.fcgi, &fs);
    fprintf(t.f,
            "# HELP nori_demo_connections Open HTTP (or FastCGI) connections, this one"
            " included.\n"
            "# TYPE nori_demo_connections gauge\nnori_demo_connections %" PRId64 "\n",
            demo.fcgi != NULL ? (int64_t)fs.connections_open : atomic_load(&demo.connections));
    if (demo.fcgi != NULL) {
        METRIC("nori_fcgi_requests_total", "FastCGI requests answered.", fs.requests);
        METRIC("nori_fcgi_refused_total",
               "FastCGI requests the adapter answered itself (400, 404, 405, 413).", fs.refused);
        METRIC("nori_fcgi_broken_total",
               "FastCGI connections closed on a protocol, read or write error.", fs.broken);
        METRIC("nori_fcgi_timeouts_total", "FastCGI connections shut down by the I/O deadline.",
               fs.timeouts);
    }
    fputs("# HELP nori_cache_bypass_total Requests on cached routes that did not consult the"
          " cache, by reason.\n# TYPE nori_cache_bypass_total counter\n",
          t.f);
    fprintf(t.f, "nori_cache_bypass_total{reason=\"method\"} %" PRIu64 "\n", sum.bypass_method);
    fprintf(t.f, "nori_cache_bypass_total{reason=\"authorization\"} %" PRIu64 "\n",
            sum.bypass_authorization);
    fprintf(t.f, "nori_cache_bypass_total{reason=\"cookie\"} %" PRIu64 "\n", sum.bypass_cookie);
    fputs("# HELP nori_cache_not_stored_total Storable responses that were not stored, by"
          " reason.\n# TYPE nori_cache_not_stored_total counter\n",
          t.f);
    fprintf(t.f, "nori_cache_not_stored_total{reason=\"not_encodable\"} %" PRIu64 "\n",
            sum.not_encodable);
    fprintf(t.f, "nori_cache_not_stored_total{reason=\"too_big\"} %" PRIu64 "\n", sum.too_big);
    METRIC("nori_cache_unsendable_total", "Cache hits the adapter could not send (re-served).",
           sum.unsendable);
    METRIC("nori_cache_coalesced_total", "Requests served from another request's fill.",
           sum.coalesced);
    METRIC("nori_cache_lock_timeouts_total", "Waits for another fill that reached lock_timeout.",
           sum.lock_timeouts);
    METRIC("nori_cache_hit_for_miss_total",
           "Requests that skipped waiting: key remembered as unstorable.", sum.hit_for_miss);
    fputs("# HELP nori_cache_stale_total Answers from an expired entry, by reason.\n"
          "# TYPE nori_cache_stale_total counter\n",
          t.f);
    fprintf(t.f, "nori_cache_stale_total{reason=\"revalidate\"} %" PRIu64 "\n",
            sum.stale_revalidate);
    fprintf(t.f, "nori_cache_stale_total{reason=\"error\"} %" PRIu64 "\n", sum.stale_error);
    METRIC("nori_cache_background_refreshes_total", "Background refreshes run.", sum.refreshes);
    METRIC("nori_cache_background_refreshes_dropped_total",
           "Background refreshes not run (queue full, key changed).", sum.refreshes_dropped);
    METRIC("nori_cache_not_modified_total", "304 Not Modified answers.", sum.not_modified);
    METRIC("nori_cache_invalidations_total", "Path invalidations after successful writes.",
           sum.invalidations);
    METRIC("nori_cache_memo_hits_total",
           "Hits whose JSON entry was already decoded (same key, same bytes).", sum.memo_hits);
    fprintf(t.f, "# HELP nori_cache_memo_bytes Bytes held by the decoded-entry memo.\n"
                 "# TYPE nori_cache_memo_bytes gauge\nnori_cache_memo_bytes %" PRIu64 "\n",
            sum.memo_bytes);
    fprintf(t.f, "# HELP nori_cache_entries Entries held by the memory backend.\n"
                 "# TYPE nori_cache_entries gauge\nnori_cache_entries %" PRIu64 "\n",
            b.entries);
    fprintf(t.f, "# HELP nori_cache_bytes Bytes held by the memory backend (byte bound's count).\n"
                 "# TYPE nori_cache_bytes gauge\nnori_cache_bytes %" PRIu64 "\n",
            b.bytes);
    fprintf(t.f, "# HELP nori_cache_max_bytes The memory backend's byte bound (0: none).\n"
                 "# TYPE nori_cache_max_bytes gauge\nnori_cache_max_bytes %" PRIu64 "\n",
            b.max_bytes);
    fprintf(t.f, "# HELP nori_cache_expired_total Expired entries removed (on read or by the"
                 " sweeper).\n# TYPE nori_cache_expired_total counter\n"
                 "nori_cache_expired_total %" PRIu64 "\n",
            b.expired);
    fprintf(t.f, "# HELP nori_redis_circuit_state Redis circuit breaker: 0 closed, 1 open,"
                 " 2 half-open.\n# TYPE nori_redis_circuit_state gauge\n"
                 "nori_redis_circuit_state %" PRIu64 "\n",
            b.circuit_state);
    METRIC("nori_redis_circuit_opens_total", "Times the Redis circuit breaker opened.",
           b.circuit_opens);
    METRIC("nori_redis_circuit_rejected_total", "Calls failed fast while the circuit was open.",
           b.circuit_rejected);
    METRIC("nori_redis_timeouts_total", "Redis commands and connects that ran out of time.",
           b.timeouts);
    nori_near_stats near;
    if (nori_backend_get_near_stats(demo.backend, &near) == NORI_OK) {
        METRIC("nori_near_hits_total", "Gets served by the near cache.", near.hits);
        METRIC("nori_near_misses_total", "Gets the near cache sent to Redis.", near.misses);
        METRIC("nori_near_invalidations_total", "Keys named by Redis invalidation messages.",
               near.invalidations);
        METRIC("nori_near_evictions_total", "Local copies dropped by the near cache's bounds.",
               near.evictions);
        fputs("# HELP nori_near_flushes_total Near cache emptied, by cause.\n"
              "# TYPE nori_near_flushes_total counter\n",
              t.f);
        const struct {
            const char *cause;
            uint64_t n;
        } flushes[] = {{"own", near.flushes_own},
                       {"server", near.flushes_server},
                       {"listener_lost", near.flushes_listener_lost},
                       {"heartbeat", near.flushes_heartbeat},
                       {"tracking_lost", near.flushes_tracking_lost},
                       {"topology", near.flushes_topology}};
        for (size_t i = 0; i < sizeof flushes / sizeof *flushes; i++)
            fprintf(t.f, "nori_near_flushes_total{cause=\"%s\"} %" PRIu64 "\n",
                    flushes[i].cause, flushes[i].n);
        fprintf(t.f, "# HELP nori_near_entries Local copies held by the near cache.\n"
                     "# TYPE nori_near_entries gauge\nnori_near_entries %" PRIu64 "\n"
                     "# HELP nori_near_bytes Bytes held by the near cache.\n"
                     "# TYPE nori_near_bytes gauge\nnori_near_bytes %" PRIu64 "\n"
                     "# HELP nori_near_active 1 while Redis tracking is proved.\n"
                     "# TYPE nori_near_active gauge\nnori_near_active %d\n",
                near.entries, near.bytes, near.active);
    }
    fprintf(t.f, "# HELP nori_demo_worker_pid The process that answered (one of --workers).\n"
                 "# TYPE nori_demo_worker_pid gauge\nnori_demo_worker_pid %ld\n",
            (long)getpid());
    fprintf(t.f, "# HELP nori_backend_info The configured backend.\n"
                 "# TYPE nori_backend_info gauge\nnori_backend_info{kind=\"%s\"} 1\n",
            nori_backend_kind(demo.backend));
    return demo_text_finish(&t, resp, "text/plain; version=0.0.4");
}
