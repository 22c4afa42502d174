// SPDX-License-Identifier: MIT
/*
 * The near cache as the Redis backend uses it (see client.h).
 */
#include "redis/near/client.h"

#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void (*nori__near_test_after_reply)(const char *key);
void (*nori__near_test_before_read)(const char *key);

struct nori__near_client {
    nori__near *store;
    nori__near_registry *listeners;
};

int nori__near_client_start(const nori__near_limits *limits, const char *key_prefix,
                            bool check_role, nori__near_not_master_fn on_not_master, void *ud,
                            nori__near_client **out)
{
    nori__near_client *nc = calloc(1, sizeof *nc);
    if (nc == NULL)
        return nori__fail(NORI_ENOMEM, "near cache: out of memory");
    int rc = nori__near_new(limits, &nc->store);
    if (rc != NORI_OK) {
        free(nc);
        return rc;
    }
    rc = nori__near_registry_new(nc->store, key_prefix, check_role, on_not_master, ud,
                                 &nc->listeners);
    if (rc != NORI_OK) {
        nori__near_free(nc->store);
        free(nc);
        return rc;
    }
    *out = nc;
    return NORI_OK;
}

void nori__near_client_watch(nori__near_client *nc, const nori__redis_node *node)
{
    (void)nori__near_registry_listener(nc->listeners, node);
}

void nori__near_client_stop(nori__near_client *nc)
{
    if (nc == NULL)
        return;
    nori__near_registry_free(nc->listeners);
    nori__near_free(nc->store);
    free(nc);
}

nori__near *nori__near_client_store(nori__near_client *nc)
{
    return nc->store;
}

nori__near_registry *nori__near_client_registry(nori__near_client *nc)
{
    return nc->listeners;
}

void nori__near_client_drop(nori__near_client *nc, const char *key, size_t klen)
{
    nori__near_drop(nc->store, key, klen);
}

void nori__near_client_flush(nori__near_client *nc)
{
    nori__near_flush(nc->store, NORI__NEAR_FLUSH_OWN);
}

static bool is_text(const redisReply *r, const char *s)
{
    return r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
           r->len == strlen(s) && strncasecmp(r->str, s, r->len) == 0;
}

/* True when a CLIENT TRACKINGINFO reply shows tracking on, not broken, with
 * its invalidations redirected to `redirect`. */
static bool tracking_proved(const redisReply *r, uint64_t redirect)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0)
        return false;
    bool on = false, broken = false, to_us = false;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *name = r->element[i], *value = r->element[i + 1];
        if (is_text(name, "flags") && value->type == REDIS_REPLY_ARRAY) {
            for (size_t j = 0; j < value->elements; j++) {
                if (is_text(value->element[j], "on"))
                    on = true;
                else if (is_text(value->element[j], "broken_redirect") ||
                         is_text(value->element[j], "bcast") ||
                         is_text(value->element[j], "optin") ||
                         is_text(value->element[j], "optout") ||
                         is_text(value->element[j], "noloop"))
                    broken = true; /* not the mode this cache set up */
            }
        } else if (is_text(name, "redirect") && value->type == REDIS_REPLY_INTEGER) {
            to_us = value->integer > 0 && (uint64_t)value->integer == redirect;
        }
    }
    return on && !broken && to_us;
}

/*
 * Turns tracking on for conn, redirected to `redirect`, and registers the
 * connection with the listener. Failures only mean the connection's next
 * reads are not kept (checked again each time): they are not the caller's.
 */
static void enable_tracking(nori__near_listener *listener, nori__redis_conn *conn,
                            uint64_t redirect, const char *key)
{
    char id_text[24];
    snprintf(id_text, sizeof id_text, "%llu", (unsigned long long)redirect);
    const char *client_id[] = {"CLIENT", "ID"};
    const char *tracking[] = {"CLIENT", "TRACKING", "on", "REDIRECT", id_text};
    const nori__redis_cmd cmds[2] = {{2, client_id, NULL}, {5, tracking, NULL}};
    redisReply *replies[2];
    if (nori__redis_conn_pipeline(conn, 2, cmds, replies, "near cache (CLIENT TRACKING)", key) !=
        NORI_OK)
        return;
    bool on = replies[1]->type == REDIS_REPLY_STATUS;
    bool registered = on && replies[0]->type == REDIS_REPLY_INTEGER &&
                      replies[0]->integer > 0 &&
                      nori__near_listener_track(listener, (uint64_t)replies[0]->integer,
                                                redirect);
    /* Tracking on but unknown to the heartbeat (the listener changed
     * meanwhile, or no memory to register it): its later proofs could not
     * be checked against a silent loss, so the connection is not reused. */
    if (on && !registered)
        conn->reusable = false;
    freeReplyObject(replies[0]);
    freeReplyObject(replies[1]);
}

int nori__near_client_local(nori__near_client *nc, const char *key, size_t klen, nori_buf *out)
{
    return nori__near_get(nc->store, key, klen, out);
}

/* The GET reply g as the backend's get returns it. */
static int copy_value(const nori__redis_node *node, const redisReply *g, const char *key,
                      size_t max_value, nori_buf *out)
{
    if (g->type == REDIS_REPLY_NIL)
        return NORI_MISS;
    if (g->type == REDIS_REPLY_STRING && g->len > max_value)
        return nori__fail(NORI_ETOOBIG,
                          "GET '%.64s': the stored value is %zu bytes, over the value limit of %zu",
                          key, g->len, max_value);
    if (g->type != REDIS_REPLY_STRING)
        return nori__redis_reply_fail(node, g, "GET", key);
    char *data = malloc(g->len + 1);
    if (data == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory copying the value of '%.64s'", key);
    memcpy(data, g->str, g->len);
    data[g->len] = '\0';
    out->data = data;
    out->len = g->len;
    return NORI_OK;
}

/* A read that keeps nothing: a retry after a redirection or an error. A
 * lone GET, because an ASK attempt's ASKING covers the next command only. */
static int plain_get(nori__redis_topo *topo, nori__topo_attempt *a, const char *key,
                     const char *wkey, size_t wklen, size_t max_value, nori_buf *out)
{
    const char *get[] = {"GET", wkey};
    const size_t get_lens[] = {3, wklen};
    redisReply *g;
    nori__redis_conn_expect_values(&a->conn, 1);
    int rc = nori__redis_conn_command(&a->conn, 2, get, get_lens, &g, "GET", key);
    if (rc != NORI_OK)
        return rc;
    if (nori__topo_redirected(topo, a, g))
        rc = NORI__REDIRECTED;
    else
        rc = copy_value(a->conn.node, g, key, max_value, out);
    freeReplyObject(g);
    return rc;
}

int nori__near_client_fetch(nori__near_client *nc, nori__redis_topo *topo, nori__topo_attempt *a,
                            bool first, const char *key, size_t klen, const char *wkey,
                            size_t wklen, size_t max_value, nori_buf *out)
{
    if (!first) {
        int prc = plain_get(topo, a, key, wkey, wklen, max_value, out);
        if (prc == NORI_OK || prc == NORI_MISS)
            nori__near_note_read(nc->store, key, klen, NULL, out->data, out->len,
                                 prc == NORI_OK);
        return prc;
    }
    nori__redis_conn *conn = &a->conn;
    nori__redis_node *node = conn->node;
    nori__near_listener *listener = nori__near_registry_listener(nc->listeners, node);
    uint64_t redirect = listener != NULL ? nori__near_listener_client_id(listener) : 0;
    nori__near_fill fill = {0};
    bool filling = redirect != 0 && nori__near_fill_begin(nc->store, key, klen, &fill);
    /* Filled by another thread since this get missed: serve that copy (see
     * near.h); if it went meanwhile, read Redis without keeping the reply. */
    if (!filling && fill.live && nori__near_get(nc->store, key, klen, out) == NORI_OK)
        return NORI_OK;
    if (nori__near_test_before_read != NULL)
        nori__near_test_before_read(key);
    const char *info[] = {"CLIENT", "TRACKINGINFO"};
    const char *get[] = {"GET", wkey};
    const size_t get_lens[] = {3, wklen};
    const char *pttl[] = {"PTTL", wkey};
    const size_t pttl_lens[] = {4, wklen};
    const nori__redis_cmd cmds[3] = {{2, info, NULL}, {2, get, get_lens}, {2, pttl, pttl_lens}};
    redisReply *replies[3];
    nori__redis_conn_expect_values(conn, 1); /* the GET's value may be up to the limit */
    int rc = nori__redis_conn_pipeline(conn, 3, cmds, replies, "GET", key);
    if (rc != NORI_OK) {
        if (filling)
            nori__near_fill_cancel(nc->store, key, klen, &fill);
        /* The connection is about to be freed, and Redis forgets what a
         * closed connection read: keys kept through it would no longer be
         * invalidated. The heartbeat would notice within 500 ms; flushing
         * now leaves no window. */
        if (nori__near_is_active(nc->store))
            nori__near_flush(nc->store, NORI__NEAR_FLUSH_TRACKING_LOST);
        return rc;
    }
    if (nori__near_test_after_reply != NULL)
        nori__near_test_after_reply(key);
    redisReply *g = replies[1];
    /* The proof, read after the marker was placed: a loss of tracking in
     * between bumped the epoch (fill_end refuses) or withdrew the id; the
     * route, checked after the reply: see client.h. */
    bool proved = redirect != 0 && tracking_proved(replies[0], redirect) &&
                  nori__near_listener_client_id(listener) == redirect &&
                  nori__topo_routes_to(topo, wkey, wklen, node);
    if (nori__topo_redirected(topo, a, g))
        rc = NORI__REDIRECTED;
    else
        rc = copy_value(node, g, key, max_value, out);
    /* Every read whose result the caller gets is reported before it
     * returns, filling or not, its marker still there or not (near.h, the
     * monotonic reads): kept only by its own fill, proved; a failed read
     * (an error, a redirection: nothing returned) just ends its fill. */
    int64_t pttl_ms = replies[2]->type == REDIS_REPLY_INTEGER ? replies[2]->integer : -2;
    if (filling && rc == NORI_OK && proved)
        nori__near_fill_end(nc->store, key, klen, &fill, g->str, g->len, pttl_ms);
    else if (rc == NORI_OK || rc == NORI_MISS)
        nori__near_note_read(nc->store, key, klen, filling ? &fill : NULL, out->data, out->len,
                             rc == NORI_OK);
    else if (filling)
        nori__near_fill_cancel(nc->store, key, klen, &fill);
    for (int i = 0; i < 3; i++)
        freeReplyObject(replies[i]);
    if (redirect != 0 && !proved && (rc == NORI_OK || rc == NORI_MISS) &&
        nori__near_listener_client_id(listener) == redirect)
        enable_tracking(listener, conn, redirect, key);
    return rc;
}
