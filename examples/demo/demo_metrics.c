// SPDX-License-Identifier: MIT
/*
 * GET /metrics: the backend's and the caches' series rendered by the library
 * (nori_metrics_write), then the demo's own (database queries, connections,
 * FastCGI), in Prometheus' text format. Per process: with --workers each
 * worker answers for itself.
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
    /* The library renders the backend's and the response caches' series
     * (summed over the demo's caches); the demo adds its own below. */
    nori_http_cache *caches[] = {demo.main_cache, demo.greet_cache, demo.me_cache,
                                 demo.stock_cache, demo.short_cache};
    nori_metrics_sources src = {demo.backend, caches, NULL, sizeof caches / sizeof *caches};
    nori_buf lib;
    int rc = nori_metrics_write(&src, &lib);
    if (rc != NORI_OK)
        return rc;
    demo_text t;
    demo_text_open(&t);
    if (t.f == NULL) {
        nori_buf_free(&lib);
        return NORI_ENOMEM;
    }
    fwrite(lib.data, 1, lib.len, t.f);
    nori_buf_free(&lib);
#define METRIC(name, help, value)                                                           \
    fprintf(t.f, "# HELP " name " " help "\n# TYPE " name " counter\n" name " %" PRIu64 "\n", \
            (uint64_t)(value))
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
    fprintf(t.f, "# HELP nori_demo_worker_pid The process that answered (one of --workers).\n"
                 "# TYPE nori_demo_worker_pid gauge\nnori_demo_worker_pid %ld\n",
            (long)getpid());
    return demo_text_finish(&t, resp, "text/plain; version=0.0.4");
}
