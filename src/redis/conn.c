/*
 * Commands on one Redis server; see conn.h.
 */
#include "conn.h"

#include "error.h"
#include "nori/cache.h"

int nori__redis_node_init(nori__redis_node *n, const nori__redis_url *url)
{
    n->url = url;
    return nori__redis_pool_init(&n->pool, url);
}

void nori__redis_node_destroy(nori__redis_node *n)
{
    nori__redis_pool_destroy(&n->pool);
}

int nori__redis_io_fail(const nori__redis_conn *conn, const char *op, const char *key)
{
    const nori__redis_url *u = conn->node->url;
    char why[160];
    return nori__fail(NORI_EBACKEND, "redis %s: %s '%.64s': %s", u->display, op, key,
                      nori__redis_describe_error(conn->c, u->timeout_ms, why, sizeof why));
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
    nori__sigpipe_block(&conn->sigpipe);
    int rc = nori__redis_pool_acquire(&n->pool, &conn->c);
    if (rc != NORI_OK)
        nori__sigpipe_restore(&conn->sigpipe);
    return rc;
}

void nori__redis_conn_close(nori__redis_conn *conn)
{
    nori__redis_pool_release(&conn->node->pool, conn->c, conn->reusable);
    conn->c = NULL;
    nori__sigpipe_restore(&conn->sigpipe);
}

int nori__redis_conn_command(nori__redis_conn *conn, int argc, const char **argv,
                             const size_t *lens, redisReply **reply, const char *op,
                             const char *key)
{
    *reply = redisCommandArgv(conn->c, argc, argv, lens);
    if (*reply == NULL)
        return nori__redis_io_fail(conn, op, key);
    return NORI_OK;
}

int nori__redis_conn_pipeline(nori__redis_conn *conn, size_t n, const nori__redis_cmd *cmds,
                              redisReply **replies, const char *op, const char *key)
{
    for (size_t i = 0; i < n; i++)
        replies[i] = NULL;
    for (size_t i = 0; i < n; i++) {
        if (redisAppendCommandArgv(conn->c, cmds[i].argc, cmds[i].argv, cmds[i].lens) !=
            REDIS_OK) {
            /* Only the output buffer was touched: nothing reached the
             * server, but the buffer holds a partial pipeline. */
            conn->reusable = false;
            return nori__fail(NORI_ENOMEM, "out of memory queueing %s '%.64s'", op, key);
        }
    }
    int rc = NORI_OK;
    for (size_t i = 0; i < n && rc == NORI_OK; i++) {
        void *reply;
        if (redisGetReply(conn->c, &reply) != REDIS_OK)
            rc = nori__redis_io_fail(conn, op, key);
        else
            replies[i] = reply;
    }
    if (rc != NORI_OK) {
        for (size_t i = 0; i < n; i++) {
            if (replies[i] != NULL)
                freeReplyObject(replies[i]);
            replies[i] = NULL;
        }
    }
    return rc;
}

int nori__redis_node_call(nori__redis_node *n, int argc, const char **argv, const size_t *lens,
                          redisReply **reply, const char *op, const char *key)
{
    *reply = NULL;
    nori__redis_conn conn;
    int rc = nori__redis_conn_open(n, &conn);
    if (rc != NORI_OK)
        return rc;
    rc = nori__redis_conn_command(&conn, argc, argv, lens, reply, op, key);
    nori__redis_conn_close(&conn);
    return rc;
}
