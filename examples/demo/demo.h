// SPDX-License-Identifier: MIT
/*
 * nori-demo's parts (one process's state, shared by its files):
 *   nori_demo.c     options, backend and caches, serving (HTTP or FastCGI)
 *   demo_workers.c  --workers N: the parent that forks, watches and stops workers
 *   demo_db.c       the SQLite database
 *   demo_routes.c   the handlers and the route table
 *   demo_metrics.c  GET /metrics
 * With --workers each worker process builds all of this after fork(): its
 * own backend (memory: one per worker; Redis: shared), its own SQLite
 * connection, its own caches.
 */
#ifndef NORI_DEMO_H
#define NORI_DEMO_H

#include "nori/cache.h"
#include "nori/fcgi.h"
#include "nori/http.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#define N_ORDERS 200000
#define N_PRODUCTS 500

struct demo_state {
    sqlite3 *db;
    sqlite3_stmt *dashboard, *products, *stock, *touch;
    sqlite3_stmt *slow_run, *slow_get, *slow_bump; /* --test-routes */
    _Atomic int db_down; /* POST /admin/db?state=down: simulated outage */
    _Atomic uint64_t stock_runs; /* per-process count of /stock handler runs */
    pthread_mutex_t db_lock; /* one connection, prepared statements reused */
    _Atomic uint64_t db_queries;
    _Atomic int64_t connections; /* open HTTP connections (MHD's notify callback) */
    nori_backend *backend;  /* page entries (the response caches) */
    nori_backend *counters; /* security counters: login throttle; never evicted by pages */
    const char *prefix;
    char greet_prefix[128], me_prefix[128], login_prefix[128], stock_prefix[128],
        short_prefix[128];
    nori_http_cache *main_cache, *greet_cache, *me_cache, *stock_cache, *short_cache;
    nori_fcgi_server *fcgi; /* set while serving FastCGI (its counters feed /metrics) */
};

extern struct demo_state demo;

/* demo_db.c: opens (creating and filling on first start) the database and
 * prepares the statements. 0 or -1 (message on stderr). */
int demo_db_open(const char *path);
void demo_db_close(void);

/* demo_routes.c: fills routes[] (room for DEMO_MAX_ROUTES) with the demo's
 * routes on the caches in `demo`; with test_routes also /slow and
 * /slow/runs. Returns the count. */
#define DEMO_MAX_ROUTES 24
size_t demo_routes(nori_http_route *routes, int test_routes);
int demo_user_key(const nori_http_request *req, void *ud, char *out, size_t cap);

/* Bodies built in an open_memstream buffer, then adopted by the response. */
typedef struct {
    char *data;
    size_t len;
    FILE *f;
} demo_text;
void demo_text_open(demo_text *t);
int demo_text_finish(demo_text *t, nori_http_response *resp, const char *media_type);

/* demo_metrics.c: GET /metrics (Prometheus text). */
int demo_metrics(const nori_http_request *req, nori_http_response *resp, void *ud);

/* demo_workers.c: --workers N. Forks n workers that each call
 * serve(listen_fd, ud) and exit with its return value; replaces a worker
 * that dies (restart rate bounded); on SIGINT/SIGTERM sends SIGTERM to the
 * workers and waits for them (bounded, then SIGKILL). The caller has
 * blocked SIGINT, SIGTERM and SIGCHLD. Returns the exit code for main: 0
 * when every worker stopped cleanly. */
int demo_run_workers(unsigned n, int listen_fd, int (*serve)(int listen_fd, void *ud),
                     void *ud);

#endif
