// SPDX-License-Identifier: MIT
/*
 * Commands on one Redis server; see conn.h.
 */
#include "redis/wire/conn.h"

#include "clock.h"
#include "error.h"
#include "redis/wire/io.h"
#include "nori/cache.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Set when this thread's last write failed only on its WAIT (see conn.h);
 * cleared by each conn_open. */
static _Thread_local bool tl_wait_shortfall;

bool nori__redis_conn_wait_fell_short(void)
{
    return tl_wait_shortfall;
}

int nori__redis_node_init(nori__redis_node *n, const nori__redis_url *url,
                          const nori_backend *owner)
{
    n->url = url;
    n->owner = owner;
    int rc = nori__redis_pool_init(&n->pool, url);
    if (rc != NORI_OK)
        return rc;
    nori__redis_breaker_init(&n->breaker, url->circuit_failures, url->circuit_cooldown_ms);
    atomic_init(&n->refusals_count, false);
    return NORI_OK;
}

void nori__redis_node_destroy(nori__redis_node *n)
{
    nori__redis_pool_destroy(&n->pool);
    nori__redis_breaker_destroy(&n->breaker);
}

void nori__redis_node_stats(nori__redis_node *n, nori_backend_stats *out)
{
    const nori__redis_breaker *b = &n->breaker;
    uint64_t state = (uint64_t)atomic_load_explicit(&b->state, memory_order_relaxed);
    if (state > out->circuit_state)
        out->circuit_state = state;
    out->circuit_opens += atomic_load_explicit(&b->opens, memory_order_relaxed);
    out->circuit_rejected += atomic_load_explicit(&b->rejected, memory_order_relaxed);
    out->timeouts += atomic_load_explicit(&b->timeouts, memory_order_relaxed);
}

int nori__redis_reply_fail(const nori__redis_node *n, const redisReply *r, const char *op,
                           const char *key)
{
    if (r->type == REDIS_REPLY_ERROR)
        return nori__fail(NORI_EBACKEND, "redis %s: %s '%.64s': server error: %.200s",
                          n->url->display, op, key, r->str);
    return nori__fail(NORI_EBACKEND, "redis %s: %s '%.64s': unexpected reply type %d",
                      n->url->display, op, key, r->type);
}

int nori__redis_conn_open(nori__redis_node *n, nori__redis_conn *conn)
{
    conn->node = n;
    conn->c = NULL;
    conn->reusable = true;
    conn->decided = false;
    conn->values = 0;
    conn->wait_cmds = NULL;
    tl_wait_shortfall = false;
    int rc = nori__redis_breaker_enter(&n->breaker, n->url->display, &conn->probe);
    if (rc != NORI_OK)
        return rc;
    nori__connect_failure why;
    rc = nori__redis_pool_acquire(&n->pool, &conn->c, &why);
    if (rc != NORI_OK) {
        if (why == NORI__CONNECT_SLOW)
            nori__redis_breaker_failure(&n->breaker, conn->probe, nori_last_error());
        else if (why == NORI__CONNECT_REFUSED &&
                 atomic_load_explicit(&n->refusals_count, memory_order_relaxed))
            nori__redis_breaker_refused(&n->breaker, conn->probe, nori_last_error());
        else if (conn->probe)
            nori__redis_breaker_leave(&n->breaker);
    }
    return rc;
}

void nori__redis_conn_close(nori__redis_conn *conn)
{
    if (conn->probe && !conn->decided)
        nori__redis_breaker_leave(&conn->node->breaker);
    nori__redis_pool_release(&conn->node->pool, conn->c, conn->reusable);
    conn->c = NULL;
}

void nori__redis_conn_expect_values(nori__redis_conn *conn, size_t n)
{
    conn->values = n;
}

/* The round trip of what is queued on conn, with the limits of conn.h and
 * the given deadline, reported to the breaker. n == 0 only sends (the first
 * half of a split round trip, nori__redis_conn_send): nothing is reported
 * yet, and the announced values are kept for the replies. */
static int roundtrip(nori__redis_conn *conn, size_t n, redisReply **replies, int64_t deadline,
                     const char *op, const char *key)
{
    nori__redis_node *node = conn->node;
    nori__redis_limits lim = nori__redis_small_replies;
    size_t values = conn->values;
    size_t value_limit = 0;
    if (n > 0)
        conn->values = 0;
    if (values > 0) {
        value_limit = atomic_load_explicit(&node->owner->max_value, memory_order_relaxed);
        lim.max_bulk = value_limit;
        /* n values, plus room for small strings beside them (keys, status). */
        lim.max_total = values <= (SIZE_MAX - nori__redis_small_replies.max_total) / value_limit
                            ? values * value_limit + nori__redis_small_replies.max_total
                            : SIZE_MAX;
    }
    redisContext *c = conn->c;
    if (nori__redis_io_roundtrip(c, deadline, &lim, n, replies) == 0) {
        if (n > 0) {
            nori__redis_breaker_success(&node->breaker);
            conn->decided = true;
        }
        return NORI_OK;
    }
    if (c->err == NORI__REDIS_ERR_TIMEOUT) {
        char why[200];
        snprintf(why, sizeof why, "%s on %s", c->errstr, op);
        nori__redis_breaker_failure(&node->breaker, conn->probe, why);
        conn->decided = true;
    } else if (c->err == NORI__REDIS_ERR_TOOBIG || c->err == NORI__REDIS_ERR_TOOMANY) {
        /* The server is answering, however badly. */
        nori__redis_breaker_success(&node->breaker);
        conn->decided = true;
        if (values > 0 && c->err == NORI__REDIS_ERR_TOOBIG)
            return nori__fail(NORI_ETOOBIG,
                              "redis %s: %s '%.64s': %s (the backend's value limit is %zu "
                              "bytes; the connection was closed)",
                              node->url->display, op, key, c->errstr, value_limit);
    } else if (c->err == REDIS_ERR_OOM) {
        return nori__fail(NORI_ENOMEM, "redis %s: %s '%.64s': out of memory reading the reply",
                          node->url->display, op, key);
    }
    return nori__fail(NORI_EBACKEND, "redis %s: %s '%.64s': %s", node->url->display, op, key,
                      nori__redis_describe_error(c));
}

int nori__redis_conn_command(nori__redis_conn *conn, int argc, const char **argv,
                             const size_t *lens, redisReply **reply, const char *op,
                             const char *key)
{
    const nori__redis_cmd cmd = {argc, argv, lens};
    return nori__redis_conn_pipeline(conn, 1, &cmd, reply, op, key);
}

/* ---- writes that wait for replicas (wait_replicas) ---- */

static bool command_is(const nori__redis_cmd *cmd, const char *name)
{
    size_t len = cmd->lens != NULL ? cmd->lens[0] : strlen(cmd->argv[0]);
    return len == strlen(name) && strncasecmp(cmd->argv[0], name, len) == 0;
}

/* The writing commands this library sends: SET, UNLINK, DEL, the INCR and
 * delete_if_equal scripts, a transaction's EXEC. */
static bool is_write(const nori__redis_cmd *cmd)
{
    static const char *const writes[] = {"SET", "UNLINK", "DEL", "EVAL", "EVALSHA", "EXEC"};
    for (size_t w = 0; w < sizeof writes / sizeof writes[0]; w++)
        if (command_is(cmd, writes[w]))
            return true;
    return false;
}

/*
 * Whether a pipeline writes, so that with wait_replicas a WAIT must follow
 * it: it holds a writing command, and it does not end inside MULTI (a WAIT
 * there would be queued in the transaction instead of waiting).
 */
static bool pipeline_writes(size_t n, const nori__redis_cmd *cmds)
{
    bool writes_any = false, in_multi = false;
    for (size_t i = 0; i < n; i++) {
        if (command_is(&cmds[i], "MULTI"))
            in_multi = true;
        else if (command_is(&cmds[i], "EXEC") || command_is(&cmds[i], "DISCARD"))
            in_multi = false;
        writes_any |= is_write(&cmds[i]);
    }
    return writes_any && !in_multi;
}

/* Whether the replies say something was written: a writing command outside
 * MULTI (inside, a SET only answers QUEUED; its EXEC writes) answered
 * neither an error nor a nil (SET NX not done, EXEC aborted). */
static bool something_written(size_t n, const nori__redis_cmd *cmds, redisReply **replies)
{
    bool in_multi = false;
    for (size_t i = 0; i < n; i++) {
        if (command_is(&cmds[i], "MULTI")) {
            in_multi = true;
            continue;
        }
        if (command_is(&cmds[i], "EXEC") || command_is(&cmds[i], "DISCARD"))
            in_multi = false;
        else if (in_multi)
            continue;
        if (is_write(&cmds[i]) && replies[i]->type != REDIS_REPLY_ERROR &&
            replies[i]->type != REDIS_REPLY_NIL)
            return true;
    }
    return false;
}

static int roundtrip(nori__redis_conn *conn, size_t n, redisReply **replies, int64_t deadline,
                     const char *op, const char *key);

/*
 * Reads the reply of the WAIT queued after a write's n replies (by its own
 * deadline: the write's round trip may have used most of the first) and
 * judges it. A write that wrote nothing has nothing to wait for, and its
 * own answer stands. NORI_OK, or an error with replies[0..n) freed and NULL.
 */
static int judge_wait(nori__redis_conn *conn, size_t n, redisReply **replies, const char *op,
                      const char *key)
{
    const nori__redis_cmd *cmds = conn->wait_cmds;
    conn->wait_cmds = NULL;
    const nori__redis_url *u = conn->node->url;
    redisReply *w;
    int rc = roundtrip(conn, 1, &w, nori__real_ms() + u->timeout_ms, op, key);
    if (rc == NORI_OK && something_written(n, cmds, replies)) {
        if (w->type != REDIS_REPLY_INTEGER)
            rc = nori__redis_reply_fail(conn->node, w, "WAIT after the write", key);
        else if (w->integer < u->wait_replicas) {
            tl_wait_shortfall = true;
            rc = nori__fail(NORI_EBACKEND,
                            "redis %s: %s '%.64s': written on the master, but only %lld of the "
                            "%d replicas asked for (wait_replicas) acknowledged it within %d ms: "
                            "it may be lost if the master fails now",
                            u->display, op, key, w->integer, u->wait_replicas,
                            u->wait_timeout_ms);
        }
    }
    if (w != NULL)
        freeReplyObject(w);
    if (rc != NORI_OK)
        for (size_t i = 0; i < n; i++) {
            freeReplyObject(replies[i]);
            replies[i] = NULL;
        }
    return rc;
}

/* Queues n commands on conn's output buffer, and a WAIT after them when
 * they write and the URL asks for replicas (cmds must then stay valid
 * until their replies are read). */
static int queue(nori__redis_conn *conn, size_t n, const nori__redis_cmd *cmds, const char *op,
                 const char *key)
{
    const nori__redis_url *u = conn->node->url;
    bool wait = u->wait_replicas > 0 && pipeline_writes(n, cmds);
    int queued = REDIS_OK;
    for (size_t i = 0; queued == REDIS_OK && i < n; i++)
        queued = redisAppendCommandArgv(conn->c, cmds[i].argc, cmds[i].argv, cmds[i].lens);
    if (queued == REDIS_OK && wait)
        queued = redisAppendCommand(conn->c, "WAIT %d %d", u->wait_replicas, u->wait_timeout_ms);
    if (queued != REDIS_OK) {
        /* Nothing reached the server, but the output buffer holds a
         * partial pipeline: the connection must not be reused. */
        conn->reusable = false;
        conn->values = 0;
        return nori__fail(NORI_ENOMEM, "out of memory queueing %s '%.64s'", op, key);
    }
    conn->wait_cmds = wait ? cmds : NULL;
    return NORI_OK;
}

/* Reads the n replies of what was queued, then the WAIT's if one followed. */
static int receive(nori__redis_conn *conn, size_t n, redisReply **replies, int64_t deadline,
                   const char *op, const char *key)
{
    int rc = roundtrip(conn, n, replies, deadline, op, key);
    if (rc == NORI_OK && conn->wait_cmds != NULL)
        rc = judge_wait(conn, n, replies, op, key);
    conn->wait_cmds = NULL;
    return rc;
}

int nori__redis_conn_pipeline(nori__redis_conn *conn, size_t n, const nori__redis_cmd *cmds,
                              redisReply **replies, const char *op, const char *key)
{
    for (size_t i = 0; i < n; i++)
        replies[i] = NULL;
    int rc = queue(conn, n, cmds, op, key);
    if (rc != NORI_OK)
        return rc;
    return receive(conn, n, replies, nori__real_ms() + conn->node->url->timeout_ms, op,
                   key);
}

int nori__redis_conn_send(nori__redis_conn *conn, size_t n, const nori__redis_cmd *cmds,
                          int64_t deadline_ms, const char *op, const char *key)
{
    int rc = queue(conn, n, cmds, op, key);
    return rc == NORI_OK ? roundtrip(conn, 0, NULL, deadline_ms, op, key) : rc;
}

int nori__redis_conn_recv(nori__redis_conn *conn, size_t n, redisReply **replies,
                          int64_t deadline_ms, const char *op, const char *key)
{
    return receive(conn, n, replies, deadline_ms, op, key);
}

int nori__redis_node_call(nori__redis_node *n, int argc, const char **argv, const size_t *lens,
                          size_t values, redisReply **reply, const char *op, const char *key)
{
    *reply = NULL;
    nori__redis_conn conn;
    int rc = nori__redis_conn_open(n, &conn);
    if (rc != NORI_OK)
        return rc;
    nori__redis_conn_expect_values(&conn, values);
    rc = nori__redis_conn_command(&conn, argc, argv, lens, reply, op, key);
    nori__redis_conn_close(&conn);
    return rc;
}
