// SPDX-License-Identifier: MIT
/*
 * Routing over a standalone server, a sentinel-managed master or a Redis
 * Cluster; see topology.h.
 */
#include "redis/route/topology.h"
#include "redis/route/topology_registry.h"

#include "clock.h"
#include "error.h"
#include "redis/route/sentinel_watch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Most candidates one cluster refresh asks for CLUSTER SLOTS, so that a
 * refresh with many dead nodes stays bounded. */
#define REFRESH_MAX_CANDIDATES 4

/*
 * The pause before an attempt that waits (TRYAGAIN, CLUSTERDOWN, READONLY,
 * a node down, a slot no master serves): BACKOFF_FIRST_MS, doubling up to
 * BACKOFF_MAX_MS (10, 20, 40, 80, 160, then 200 ms each), on the logical
 * clock (clock.h): the retry budget NORI_TOPO_RETRY_MS is what ends them.
 */
#define BACKOFF_FIRST_MS 10
#define BACKOFF_MAX_MS 200

static void back_off(int *delay_ms)
{
    nori__sleep_ms(*delay_ms);
    *delay_ms = *delay_ms < BACKOFF_MAX_MS / 2 ? *delay_ms * 2 : BACKOFF_MAX_MS;
}

/* ---- the topology and its nodes (the registry: topology_registry.c) ---- */

int nori__topo_new(const nori__redis_target *target, const nori_backend *owner,
                   nori__redis_topo **out)
{
    nori__redis_topo *t = calloc(1, sizeof *t);
    if (t == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory creating a redis backend");
    t->target = target;
    t->backend = owner;
    atomic_init(&t->mode, NORI_TOPO_UNKNOWN);
    atomic_init(&t->nnodes, 0);
    atomic_init(&t->master, -1);
    atomic_init(&t->last_refresh_ms, 0);
    atomic_init(&t->refresh_gen, 0);
    for (size_t i = 0; i < NORI_CLUSTER_MAX_NODES; i++)
        atomic_init(&t->nodes[i], NULL);
    for (size_t i = 0; i < NORI_CLUSTER_SLOTS; i++)
        atomic_init(&t->owner[i], NORI_SLOT_UNSERVED);
    pthread_mutex_init(&t->lock, NULL);
    /* A sentinel URL is sentinel mode, a unix socket one server: only a
     * redis:// URL leaves the mode to find out. */
    if (target->sentinel) {
        atomic_store(&t->mode, NORI_TOPO_SENTINEL);
    } else if (target->node.is_unix) {
        int i = nori__topo_do_node_at(t, NULL, 0);
        if (i < 0) {
            nori__topo_free(t);
            return NORI_ENOMEM;
        }
        atomic_store(&t->master, i);
        atomic_store(&t->mode, NORI_TOPO_SINGLE);
    }
    *out = t;
    return NORI_OK;
}

void nori__topo_free(nori__redis_topo *t)
{
    if (t == NULL)
        return;
    /* First: its callback uses the nodes. */
    nori__sentinel_watch_stop(t->watch);
    size_t n = atomic_load(&t->nnodes);
    for (size_t i = 0; i < n; i++) {
        topo_node *tn = nori__topo_node(t, i);
        nori__redis_node_destroy(&tn->node);
        nori__redis_url_free(&tn->url);
        free(tn);
    }
    nori__slot_map_free(&t->map);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

nori__redis_node *nori__topo_single(nori__redis_topo *t, int *rc)
{
    *rc = nori__topo_ready(t);
    if (*rc != NORI_OK || nori__topo_mode(t) != NORI_TOPO_SINGLE)
        return NULL;
    int m = atomic_load(&t->master);
    return m >= 0 ? &nori__topo_node(t, (size_t)m)->node : NULL;
}

nori__redis_node *nori__topo_sentinel_master(nori__redis_topo *t)
{
    if (nori__topo_mode(t) != NORI_TOPO_SENTINEL)
        return NULL;
    int m = atomic_load(&t->master);
    return m >= 0 ? &nori__topo_node(t, (size_t)m)->node : NULL;
}

nori__redis_node *nori__topo_seed(nori__redis_topo *t)
{
    int mode = nori__topo_mode(t);
    int i = mode == NORI_TOPO_SINGLE    ? atomic_load(&t->master)
            : mode == NORI_TOPO_UNKNOWN ? nori__topo_node_at(t, NULL, 0)
                                        : -1;
    return i >= 0 ? &nori__topo_node(t, (size_t)i)->node : NULL;
}

void nori__topo_stats(nori__redis_topo *t, nori_backend_stats *out)
{
    size_t n = atomic_load_explicit(&t->nnodes, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        nori__redis_node_stats(&nori__topo_node(t, i)->node, out);
}

int nori__topo_mode(const nori__redis_topo *t)
{
    return atomic_load_explicit(&t->mode, memory_order_acquire);
}

void nori__topo_watch_stats(nori__redis_topo *t, nori__sentinel_watch_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&t->lock);
    if (t->watch != NULL)
        nori__sentinel_watch_get_stats(t->watch, out);
    pthread_mutex_unlock(&t->lock);
}

/* ---- refresh ---- */

/* Asks node i for CLUSTER SLOTS and installs the map. Called with t->lock
 * held. */
static int do_refresh_from(nori__redis_topo *t, int i)
{
    topo_node *tn = nori__topo_node(t, (size_t)i);
    const char *argv[] = {"CLUSTER", "SLOTS"};
    redisReply *r;
    int rc = nori__redis_node_call(&tn->node, 2, argv, NULL, 0, &r, "CLUSTER SLOTS", "");
    if (rc != NORI_OK)
        return rc;
    nori__slot_map m;
    rc = nori__slot_map_parse(r, tn->url.host, tn->url.display, &m);
    freeReplyObject(r);
    if (rc != NORI_OK)
        return rc;
    /* Registry indices of the map's nodes (masters route; replicas are
     * registered too, so describe and a later MOVED to them find them). */
    int idx[NORI_CLUSTER_MAX_NODES];
    for (size_t k = 0; k < m.nnodes; k++) {
        idx[k] = nori__topo_do_node_at(t, m.nodes[k].host, m.nodes[k].port);
        if (idx[k] < 0) {
            nori__slot_map_free(&m);
            return NORI_EBACKEND;
        }
    }
    bool changed = false;
    for (size_t s = 0; s < NORI_CLUSTER_SLOTS; s++) {
        uint16_t o = m.owner[s] == NORI_SLOT_UNSERVED ? NORI_SLOT_UNSERVED : (uint16_t)idx[m.owner[s]];
        uint16_t was = atomic_exchange_explicit(&t->owner[s], o, memory_order_acq_rel);
        changed |= was != NORI_SLOT_UNSERVED && was != o;
    }
    if (changed)
        nori__topo_notify_moved(t);
    nori__slot_map_free(&t->map);
    t->map = m;
    t->have_map = true;
    atomic_store(&t->last_refresh_ms, nori__now_ms());
    atomic_fetch_add(&t->refresh_gen, 1);
    return NORI_OK;
}

/* Candidates: the node that just answered (prefer >= 0), the masters of
 * the current map, then the seeds. Called with t->lock held. */
static int do_refresh_cluster(nori__redis_topo *t, int prefer)
{
    int tried[REFRESH_MAX_CANDIDATES + 8];
    int ntried = 0;
    int rc = NORI_EBACKEND;
    char last[512] = "no node to ask";
    int cand[NORI_CLUSTER_MAX_NODES + NORI_REDIS_MAX_ADDRS + 2];
    size_t nc = 0;
    if (prefer >= 0)
        cand[nc++] = prefer;
    if (t->have_map)
        for (size_t r = 0; r < t->map.nranges; r++) {
            const nori__cluster_node *m = &t->map.nodes[t->map.ranges[r].master];
            int i = nori__topo_find(t, m->host, m->port);
            if (i >= 0)
                cand[nc++] = i;
        }
    int seed = nori__topo_do_node_at(t, NULL, 0);
    if (seed >= 0)
        cand[nc++] = seed;
    for (size_t a = 0; a < t->target->naddrs; a++) {
        int i = nori__topo_do_node_at(t, t->target->addrs[a].host, t->target->addrs[a].port);
        if (i >= 0)
            cand[nc++] = i;
    }
    for (size_t c = 0; c < nc && ntried < REFRESH_MAX_CANDIDATES; c++) {
        bool dup = false;
        for (int k = 0; k < ntried; k++)
            dup |= tried[k] == cand[c];
        if (dup)
            continue;
        tried[ntried++] = cand[c];
        rc = do_refresh_from(t, cand[c]);
        if (rc == NORI_OK)
            return NORI_OK;
        snprintf(last, sizeof last, "%s", nori_last_error());
    }
    return nori__fail(rc == NORI_ENOMEM ? NORI_ENOMEM : NORI_EBACKEND,
                      "redis %s: cannot read the cluster's slot map (asked %d node%s; last: %s)",
                      t->target->display, ntried, ntried == 1 ? "" : "s", last);
}

/* force: ignore the rate limit (a MOVED to an unknown node, READONLY). */
static int refresh(nori__redis_topo *t, int prefer, bool force)
{
    int mode = nori__topo_mode(t);
    if (mode != NORI_TOPO_CLUSTER && mode != NORI_TOPO_SENTINEL)
        return NORI_OK;
    unsigned long gen = atomic_load(&t->refresh_gen);
    pthread_mutex_lock(&t->lock);
    int rc = NORI_OK;
    long long last = atomic_load(&t->last_refresh_ms);
    /* Another thread refreshed while this one waited for the lock, or very
     * recently: that map is as fresh as this one would be. */
    if (atomic_load(&t->refresh_gen) != gen ||
        (!force && nori__now_ms() - last < NORI_TOPO_REFRESH_MIN_MS)) {
        pthread_mutex_unlock(&t->lock);
        return NORI_OK;
    }
    if (mode == NORI_TOPO_CLUSTER)
        rc = do_refresh_cluster(t, prefer);
    else
        rc = nori__topo_do_resolve(t);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

int nori__topo_refresh(nori__redis_topo *t)
{
    int rc = nori__topo_ready(t);
    return rc == NORI_OK ? refresh(t, -1, true) : rc;
}

/* ---- mode detection ---- */

/* Finds out the mode (connects). Called with t->lock held. */
static int do_detect(nori__redis_topo *t)
{
    const nori__redis_target *tg = t->target;
    if (tg->sentinel) {
        atomic_store(&t->mode, NORI_TOPO_SENTINEL);
        return nori__topo_do_resolve(t);
    }
    if (tg->node.is_unix) {
        int i = nori__topo_do_node_at(t, NULL, 0);
        if (i < 0)
            return NORI_ENOMEM;
        atomic_store(&t->master, i);
        atomic_store(&t->mode, NORI_TOPO_SINGLE);
        return NORI_OK;
    }
    int rc = NORI_EBACKEND;
    char first_err[512] = "";
    for (size_t s = 0; s <= tg->naddrs; s++) {
        int i = s == 0 ? nori__topo_do_node_at(t, NULL, 0)
                       : nori__topo_do_node_at(t, tg->addrs[s - 1].host, tg->addrs[s - 1].port);
        if (i < 0)
            return NORI_ENOMEM;
        const char *argv[] = {"INFO", "cluster"};
        redisReply *r;
        rc = nori__redis_node_call(&nori__topo_node(t, (size_t)i)->node, 2, argv, NULL, 0, &r,
                                   "INFO (cluster detection)", "cluster");
        if (rc != NORI_OK) {
            if (s == 0)
                snprintf(first_err, sizeof first_err, "%s", nori_last_error());
            continue;
        }
        bool cluster = r->type == REDIS_REPLY_STRING && nori__info_cluster_enabled(r->str, r->len);
        freeReplyObject(r);
        if (cluster) {
            atomic_store(&t->mode, NORI_TOPO_CLUSTER);
            /* The seeds were registered before the mode was known. */
            size_t nn = atomic_load_explicit(&t->nnodes, memory_order_acquire);
            for (size_t k = 0; k < nn; k++)
                atomic_store(&nori__topo_node(t, k)->node.refusals_count, true);
            rc = do_refresh_cluster(t, i);
            nori__topo_notify_moved(t); /* reads until now went to the seed, as it was */
            return rc;
        }
        /* Not a cluster (or INFO refused, e.g. by an ACL): one server. */
        atomic_store(&t->master, i);
        atomic_store(&t->mode, NORI_TOPO_SINGLE);
        return NORI_OK;
    }
    if (tg->naddrs == 0)
        return nori__fail(rc, "%s", first_err); /* the connect error, unchanged */
    return nori__fail(rc, "%s (and the %zu other seed%s given with ?addr= did not answer either)",
                      first_err, tg->naddrs, tg->naddrs == 1 ? "" : "s");
}

int nori__topo_ready(nori__redis_topo *t)
{
    if (nori__topo_mode(t) != NORI_TOPO_UNKNOWN)
        return NORI_OK;
    pthread_mutex_lock(&t->lock);
    int rc = NORI_OK;
    if (nori__topo_mode(t) == NORI_TOPO_UNKNOWN)
        rc = do_detect(t);
    pthread_mutex_unlock(&t->lock);
    /* Cluster mode known but the first map failed, or no sentinel answered:
     * the mode stays, this call reports why, and later calls try again
     * through routing. */
    return rc;
}

/* ---- routing ---- */

/* The node for slot (cluster) or the master; NULL with an error set. */
static topo_node *route(nori__redis_topo *t, int mode, unsigned slot)
{
    if (mode == NORI_TOPO_CLUSTER) {
        uint16_t o = atomic_load_explicit(&t->owner[slot], memory_order_acquire);
        if (o != NORI_SLOT_UNSERVED)
            return nori__topo_node(t, o);
        nori__fail(NORI_EBACKEND, "redis %s: slot %u is not served by any node of the cluster",
                   t->target->display, slot);
        return NULL;
    }
    int m = atomic_load(&t->master);
    if (m >= 0)
        return nori__topo_node(t, (size_t)m);
    nori__fail(NORI_EBACKEND, "redis %s: no master resolved yet for '%s'", t->target->display,
               t->target->master_name ? t->target->master_name : "?");
    return NULL;
}

bool nori__topo_redirected(const nori__redis_topo *t, nori__topo_attempt *a, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ERROR)
        return false;
    int mode = nori__topo_mode(t);
    /* Mode unknown: the seed may be a cluster node; a redirection says so. */
    if (mode == NORI_TOPO_CLUSTER || mode == NORI_TOPO_UNKNOWN)
        return nori__redirect_parse(r->str, r->len, &a->redirect) != NORI_REDIRECT_NONE;
    if (mode == NORI_TOPO_SENTINEL && r->len >= 8 && memcmp(r->str, "READONLY", 8) == 0) {
        a->readonly = true;
        return true;
    }
    return false;
}

static const char *kind_name(const nori__topo_attempt *a)
{
    if (a->readonly)
        return "READONLY";
    switch (a->redirect.kind) {
    case NORI_REDIRECT_MOVED: return "MOVED";
    case NORI_REDIRECT_ASK: return "ASK";
    case NORI_REDIRECT_TRYAGAIN: return "TRYAGAIN";
    case NORI_REDIRECT_CLUSTERDOWN: return "CLUSTERDOWN";
    default: return "?";
    }
}

/*
 * Acts on a redirection of attempt a, answered by node n for `slot`: MOVED
 * fixes the slot and refreshes the map, ASK sets *ask for the next attempt,
 * the others wait (back_off: *delay grows). NORI_OK, or an error (registry
 * full, out of memory) that ends the call.
 */
static int follow(nori__redis_topo *t, const nori__topo_attempt *a, const topo_node *n,
                  unsigned slot, int *ask, int *delay)
{
    const nori__redirect *rd = &a->redirect;
    const char *host = rd->host[0] ? rd->host : n->url.host;
    if (a->readonly) {
        refresh(t, -1, true);
        back_off(delay);
    } else if (rd->kind == NORI_REDIRECT_MOVED) {
        bool known = nori__topo_find(t, host, rd->port) >= 0;
        int i = nori__topo_node_at(t, host, rd->port);
        if (i < 0)
            return NORI_EBACKEND;
        /* Fix this slot now; the rest of the map is refreshed from the node
         * that knows the new owner: at once when that node was unknown (the
         * map is far behind), else at most every NORI_TOPO_REFRESH_MIN_MS (a
         * resharding sends many MOVEDs). */
        uint16_t was = atomic_exchange_explicit(&t->owner[rd->slot], (uint16_t)i,
                                                memory_order_acq_rel);
        if (was != NORI_SLOT_UNSERVED && was != (uint16_t)i)
            nori__topo_notify_moved(t);
        refresh(t, i, !known);
        if (rd->slot != slot &&
            atomic_exchange_explicit(&t->owner[slot], (uint16_t)i, memory_order_acq_rel) !=
                (uint16_t)i)
            nori__topo_notify_moved(t);
    } else if (rd->kind == NORI_REDIRECT_ASK) {
        *ask = nori__topo_node_at(t, host, rd->port);
        if (*ask < 0)
            return NORI_EBACKEND;
    } else {
        /* TRYAGAIN, CLUSTERDOWN: the cluster is busy or failing over. */
        back_off(delay);
        if (rd->kind == NORI_REDIRECT_CLUSTERDOWN)
            refresh(t, -1, false);
    }
    return NORI_OK;
}

/* ---- one routed call, in steps ---- */

/*
 * nori__topo_call() runs as a sequence of steps, each of which does one
 * thing and returns the next (as Varnish's cache_req_fsm.c does):
 *
 *   DIRECT      one server, or the mode not known yet: the command goes to
 *               the (first) server as it is; done, unless redirected or
 *               the first seed is down and others exist
 *   DETECT      find out the mode; a single server: DIRECT again
 *   START       cluster or sentinel: the retry budget; follow the
 *               redirection DIRECT met
 *   ROUTE       the node of this attempt (ASK target, slot owner, master)
 *   CONNECT     a connection to it
 *   RUN         ASKING if asked, then the body
 *   REDIRECTED  follow the redirection, then ROUTE again
 *   NODE_FAILED the node failed under the body: refresh, maybe ROUTE again
 *
 * A step that ends the call sets c->rc and returns CALL_DONE.
 */
typedef enum {
    CALL_DIRECT,
    CALL_DETECT,
    CALL_START,
    CALL_ROUTE,
    CALL_CONNECT,
    CALL_RUN,
    CALL_REDIRECTED,
    CALL_NODE_FAILED,
    CALL_DONE
} call_step;

typedef struct topo_call {
    nori__redis_topo *t;
    const char *wkey;
    size_t wlen;
    bool retry_io;
    nori__topo_body body;
    void *ctx;
    const char *op, *key;
    int mode;
    const topo_node *first_node; /* DIRECT's node, when it was redirected (c->a says how) */
    unsigned slot;
    int64_t deadline; /* nori__now_ms(): no attempt starts after it */
    int attempt;      /* counted from 1, DIRECT's included */
    bool more;        /* another attempt may follow (by count and time) */
    bool more_waits;  /* another attempt that waits may follow */
    int ask;          /* registry index of an ASK target, for the next attempt only */
    bool asking;      /* this attempt goes to an ASK target */
    int delay;        /* the next back-off, ms */
    topo_node *n;     /* this attempt's node */
    nori__topo_attempt a;
    int rc;
    char saved[512]; /* an attempt's error, kept across a refresh that may set its own */
} topo_call;

static call_step done(topo_call *c, int rc)
{
    c->rc = rc;
    return CALL_DONE;
}

static void keep_error(topo_call *c)
{
    snprintf(c->saved, sizeof c->saved, "%s", nori_last_error());
}

/* Puts back the kept error (with code rc) as this call's. */
static void restore_error(topo_call *c, int rc)
{
    nori__fail(rc, "%s", c->saved);
}

static call_step next_attempt(topo_call *c)
{
    c->attempt++;
    return CALL_ROUTE;
}

/* One server, or a redis:// URL not yet known to be a cluster: the command
 * goes to the (first) server as it is, with no extra round trip and no
 * retries, as before clusters existed. A cluster node answers it, or
 * redirects it: only then is the mode found out (and a first seed that is
 * down makes the other seeds be tried). */
static call_step call_direct(topo_call *c)
{
    memset(&c->a, 0, sizeof c->a);
    c->first_node = NULL;
    topo_node *n;
    if (c->mode == NORI_TOPO_SINGLE) {
        n = route(c->t, c->mode, 0);
    } else {
        int i = nori__topo_node_at(c->t, NULL, 0);
        n = i >= 0 ? nori__topo_node(c->t, (size_t)i) : NULL;
    }
    if (n == NULL)
        return done(c, NORI_EBACKEND);
    c->rc = nori__redis_conn_open(&n->node, &c->a.conn);
    if (c->rc == NORI_OK) {
        c->rc = c->body(&c->a, c->ctx);
        nori__redis_conn_close(&c->a.conn);
        if (c->rc != NORI__REDIRECTED)
            return CALL_DONE;
        c->first_node = n;
    } else if (c->mode == NORI_TOPO_SINGLE || c->t->target->naddrs == 0) {
        return CALL_DONE;
    }
    return CALL_DETECT;
}

/* Redirected (a cluster), or the first seed is down and there are others:
 * find out the mode, then route. */
static call_step call_detect(topo_call *c)
{
    c->rc = nori__topo_ready(c->t);
    if (c->rc != NORI_OK)
        return CALL_DONE;
    c->mode = nori__topo_mode(c->t);
    return c->mode == NORI_TOPO_SINGLE ? CALL_DIRECT : CALL_START;
}

static call_step call_start(topo_call *c)
{
    c->slot = c->mode == NORI_TOPO_CLUSTER ? nori__cluster_keyslot(c->wkey, c->wlen) : 0;
    c->deadline = nori__deadline_after(NORI_TOPO_RETRY_MS);
    c->ask = -1;
    c->delay = BACKOFF_FIRST_MS;
    if (c->first_node != NULL && c->mode == NORI_TOPO_CLUSTER &&
        follow(c->t, &c->a, c->first_node, c->slot, &c->ask, &c->delay) != NORI_OK)
        return done(c, NORI_EBACKEND);
    /* The attempt made before the mode was known counts. */
    c->attempt = c->first_node != NULL ? 2 : 1;
    return CALL_ROUTE;
}

static call_step call_route(topo_call *c)
{
    /* Waits (TRYAGAIN, CLUSTERDOWN, a node down, a slot unserved) are
     * bounded by time; every attempt, redirections included, by count. */
    bool in_time = !nori__deadline_passed(c->deadline);
    c->more = c->attempt < NORI_TOPO_MAX_ATTEMPTS && in_time;
    c->more_waits = c->attempt < NORI_TOPO_MAX_WAITS && in_time;
    c->asking = c->ask >= 0;
    c->n = c->asking ? nori__topo_node(c->t, (size_t)c->ask) : route(c->t, c->mode, c->slot);
    c->ask = -1;
    if (c->n == NULL && c->mode == NORI_TOPO_SENTINEL) {
        /* No master known (the sentinels failed last time): ask them
         * now; their answer, good or bad, is this call's. */
        c->rc = refresh(c->t, -1, true);
        if (c->rc != NORI_OK)
            return CALL_DONE;
        c->n = route(c->t, c->mode, c->slot);
        if (c->n == NULL)
            return done(c, NORI_EBACKEND);
    }
    if (c->n == NULL) {
        /* A slot no master serves: ask again after a pause. */
        if (!c->more_waits)
            return done(c, NORI_EBACKEND);
        keep_error(c);
        back_off(&c->delay);
        if (refresh(c->t, -1, false) != NORI_OK)
            restore_error(c, NORI_EBACKEND);
        return next_attempt(c);
    }
    return CALL_CONNECT;
}

static call_step call_connect(topo_call *c)
{
    memset(&c->a, 0, sizeof c->a);
    c->rc = nori__redis_conn_open(&c->n->node, &c->a.conn);
    if (c->rc == NORI_OK)
        return CALL_RUN;
    if (atomic_load(&c->n->node.breaker.state) == NORI_CIRCUIT_OPEN) {
        /* The node's breaker is open (it kept timing out): fail fast, as
         * on one server, unless a fresh map or master names another
         * node, which is then tried. */
        keep_error(c);
        refresh(c->t, -1, false);
        topo_node *again = route(c->t, c->mode, c->slot);
        restore_error(c, c->rc);
        if (again == NULL || again == c->n || c->asking)
            return CALL_DONE;
        return next_attempt(c);
    }
    /* Nothing was sent: retrying is always safe. */
    if (!c->more_waits || c->rc == NORI_ENOMEM)
        return CALL_DONE;
    keep_error(c);
    refresh(c->t, -1, c->mode == NORI_TOPO_SENTINEL);
    back_off(&c->delay);
    restore_error(c, c->rc);
    return next_attempt(c);
}

static call_step call_run(topo_call *c)
{
    if (c->asking) {
        const char *argv[] = {"ASKING"};
        redisReply *r;
        c->rc = nori__redis_conn_command(&c->a.conn, 1, argv, NULL, &r, "ASKING", c->key);
        if (c->rc == NORI_OK) {
            if (r->type != REDIS_REPLY_STATUS)
                c->rc = nori__redis_reply_fail(&c->n->node, r, "ASKING", c->key);
            freeReplyObject(r);
        }
    }
    if (c->rc == NORI_OK)
        c->rc = c->body(&c->a, c->ctx);
    bool io = c->a.conn.c != NULL && c->a.conn.c->err != 0;
    if (c->a.readonly)
        c->a.conn.reusable = false; /* it points at a replica now */
    nori__redis_conn_close(&c->a.conn);
    if (c->rc == NORI__REDIRECTED)
        return CALL_REDIRECTED;
    if (c->rc == NORI_EBACKEND && io)
        return CALL_NODE_FAILED;
    return CALL_DONE;
}

static call_step call_redirected(topo_call *c)
{
    const nori__topo_attempt *a = &c->a;
    bool waits = a->readonly || a->redirect.kind == NORI_REDIRECT_TRYAGAIN ||
                 a->redirect.kind == NORI_REDIRECT_CLUSTERDOWN;
    if (waits ? !c->more_waits : !c->more)
        return done(c, nori__fail(NORI_EBACKEND,
                                  "redis %s: %s '%.64s': still redirected after %d attempts "
                                  "(last: %s from %s:%d)",
                                  c->t->target->display, c->op, c->key, c->attempt, kind_name(a),
                                  c->n->url.host ? c->n->url.host : "?", c->n->url.port));
    if (follow(c->t, a, c->n, c->slot, &c->ask, &c->delay) != NORI_OK)
        return done(c, NORI_EBACKEND);
    return next_attempt(c);
}

/* The node failed under us (killed master, reset). The map may be out of
 * date: refresh; retry only what is safe to repeat. */
static call_step call_node_failed(topo_call *c)
{
    keep_error(c);
    refresh(c->t, -1, c->mode == NORI_TOPO_SENTINEL);
    if (!c->retry_io || !c->more_waits) {
        restore_error(c, c->rc);
        return CALL_DONE;
    }
    back_off(&c->delay);
    restore_error(c, c->rc);
    return next_attempt(c);
}

int nori__topo_call(nori__redis_topo *t, const char *wkey, size_t wlen, bool retry_io,
                    nori__topo_body body, void *ctx, const char *op, const char *key)
{
    topo_call c = {.t = t, .wkey = wkey, .wlen = wlen, .retry_io = retry_io, .body = body,
                   .ctx = ctx, .op = op, .key = key, .mode = nori__topo_mode(t)};
    call_step s = c.mode == NORI_TOPO_UNKNOWN || c.mode == NORI_TOPO_SINGLE ? CALL_DIRECT
                                                                            : CALL_START;
    while (s != CALL_DONE) {
        switch (s) {
        case CALL_DIRECT: s = call_direct(&c); break;
        case CALL_DETECT: s = call_detect(&c); break;
        case CALL_START: s = call_start(&c); break;
        case CALL_ROUTE: s = call_route(&c); break;
        case CALL_CONNECT: s = call_connect(&c); break;
        case CALL_RUN: s = call_run(&c); break;
        case CALL_REDIRECTED: s = call_redirected(&c); break;
        case CALL_NODE_FAILED: s = call_node_failed(&c); break;
        case CALL_DONE: break;
        }
    }
    return c.rc;
}

/* ---- whole-keyspace operations and description ---- */

int nori__topo_masters(nori__redis_topo *t, nori__redis_node **out, size_t max)
{
    int rc = nori__topo_ready(t);
    if (rc != NORI_OK)
        return rc;
    int mode = nori__topo_mode(t);
    if (mode != NORI_TOPO_CLUSTER) {
        if (atomic_load(&t->master) < 0 && (rc = refresh(t, -1, true)) != NORI_OK)
            return rc;
        topo_node *n = route(t, mode, 0);
        if (n == NULL)
            return NORI_EBACKEND;
        out[0] = &n->node;
        return 1;
    }
    pthread_mutex_lock(&t->lock);
    if (!t->have_map)
        rc = do_refresh_cluster(t, -1);
    size_t k = 0;
    for (size_t r = 0; rc == NORI_OK && r < t->map.nranges; r++) {
        const nori__cluster_node *m = &t->map.nodes[t->map.ranges[r].master];
        int i = nori__topo_find(t, m->host, m->port);
        if (i < 0)
            continue;
        bool dup = false;
        for (size_t j = 0; j < k; j++)
            dup |= out[j] == &nori__topo_node(t, (size_t)i)->node;
        if (!dup && k < max)
            out[k++] = &nori__topo_node(t, (size_t)i)->node;
    }
    pthread_mutex_unlock(&t->lock);
    return rc == NORI_OK ? (int)k : rc;
}

/* ---- for the bulk calls (bulk.c) ---- */

nori__redis_node *nori__topo_slot_master(nori__redis_topo *t, unsigned slot)
{
    if (nori__topo_mode(t) != NORI_TOPO_CLUSTER || slot >= NORI_CLUSTER_SLOTS)
        return NULL;
    uint16_t o = atomic_load_explicit(&t->owner[slot], memory_order_acquire);
    return o != NORI_SLOT_UNSERVED ? &nori__topo_node(t, o)->node : NULL;
}

/* Registry index of the node whose pool is n, or -1. Lock-free. */
static int index_of(const nori__redis_topo *t, const nori__redis_node *n)
{
    size_t count = atomic_load_explicit(&t->nnodes, memory_order_acquire);
    for (size_t i = 0; n != NULL && i < count; i++)
        if (&nori__topo_node(t, i)->node == n)
            return (int)i;
    return -1;
}

void nori__topo_moved(nori__redis_topo *t, const nori__topo_attempt *a,
                      const nori__redis_node *from)
{
    int i = index_of(t, from);
    if (a->redirect.kind != NORI_REDIRECT_MOVED || i < 0)
        return;
    int ask = -1, delay = BACKOFF_FIRST_MS; /* a MOVED neither asks nor waits */
    follow(t, a, nori__topo_node(t, (size_t)i), a->redirect.slot, &ask, &delay);
}

void nori__topo_node_failed(nori__redis_topo *t, const nori__redis_node *answered)
{
    /* Ask a node that just answered first: the failed one may be stuck, and
     * asking it would cost the caller its timeout a second time. */
    refresh(t, index_of(t, answered), false);
}

/* ---- for the near cache ---- */

void nori__topo_on_moved(nori__redis_topo *t, nori__topo_moved_fn fn, void *ud)
{
    t->moved_fn = fn;
    t->moved_ud = ud;
}

bool nori__topo_routes_to(nori__redis_topo *t, const char *wkey, size_t wlen,
                          const nori__redis_node *node)
{
    int mode = nori__topo_mode(t);
    int i;
    if (mode == NORI_TOPO_CLUSTER) {
        uint16_t o = atomic_load_explicit(&t->owner[nori__cluster_keyslot(wkey, wlen)],
                                          memory_order_acquire);
        i = o == NORI_SLOT_UNSERVED ? -1 : (int)o;
    } else if (mode == NORI_TOPO_UNKNOWN) {
        i = nori__topo_find(t, NULL, 0);
    } else {
        i = atomic_load(&t->master);
    }
    return i >= 0 && &nori__topo_node(t, (size_t)i)->node == node;
}
