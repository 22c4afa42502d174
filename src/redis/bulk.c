/*
 * The bulk calls of the single-node Redis backend: every valid key of a call
 * in one round trip on one borrowed connection (conn.h), so that 100 keys
 * cost one network round trip instead of 100.
 *  - get_many: a pipeline of GETs rather than one MGET, so that each key
 *    answers exactly as nori_backend_get would (MGET answers nil for a key
 *    of another type, where GET answers WRONGTYPE);
 *  - set_many: a pipeline of SETs (SET k v [EX ttl]), each item's reply its
 *    result;
 *  - delete_many: one UNLINK of every key (a missing key is not an error,
 *    so the count it answers carries nothing per key).
 * The round trip has one deadline (timeout_ms); a failure without a reply
 * fails every key of it with the same code and message.
 */
#include "single.h"

#include "error.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* The wire keys ("cache:" + key) of the valid entries (klens[i] != 0), in
 * order, and where each came from. All storage in one allocation. */
typedef struct bulk_keys {
    size_t m;         /* valid entries */
    size_t *idx;      /* idx[j]: the caller's index of the j-th valid entry */
    const char **key; /* key[j]: "cache:" + its key, NUL-terminated */
    size_t *len;      /* len[j]: strlen(key[j]) */
    void *mem;
} bulk_keys;

static int bulk_keys_build(bulk_keys *bk, size_t n, const char *const *keys,
                           const size_t *klens)
{
    size_t m = 0, bytes = 0;
    for (size_t i = 0; i < n; i++)
        if (klens[i] != 0) {
            m++;
            bytes += KEY_PREFIX_LEN + klens[i] + 1;
        }
    bk->m = m;
    bk->mem = malloc(m * (sizeof *bk->idx + sizeof *bk->key + sizeof *bk->len) + bytes);
    if (bk->mem == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory preparing %zu keys for Redis", m);
    bk->idx = bk->mem;
    bk->key = (const char **)(bk->idx + m);
    bk->len = (size_t *)(bk->key + m);
    char *p = (char *)(bk->len + m);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (klens[i] == 0)
            continue;
        memcpy(p, KEY_PREFIX, KEY_PREFIX_LEN);
        memcpy(p + KEY_PREFIX_LEN, keys[i], klens[i]);
        p[KEY_PREFIX_LEN + klens[i]] = '\0';
        bk->idx[j] = i;
        bk->key[j] = p;
        bk->len[j] = KEY_PREFIX_LEN + klens[i];
        p += bk->len[j] + 1;
        j++;
    }
    return NORI_OK;
}

/* A per-key failure: the message is written for the first one only, so
 * that nori_last_error() describes the first key that failed. */
static int key_failure(const nori__redis_node *node, const redisReply *r, const char *op,
                       const char *key, bool *reported)
{
    if (*reported)
        return NORI_EBACKEND;
    *reported = true;
    return nori__redis_reply_fail(node, r, op, key);
}

/*
 * On a cluster or through Sentinel the keys of one call live on several
 * nodes (or the master may move mid-call): each key goes through the
 * routed single-key operation instead (no single round trip). When the mode
 * cannot be found out, every key gets that error.
 */
static bool routed(nori_backend *b, nori__redis_node **node, size_t n, const size_t *klens,
                   int *rcs, nori_get_result *results)
{
    int rc;
    *node = nori__topo_single(((redis_backend *)b)->topo, &rc);
    if (*node != NULL)
        return false;
    for (size_t i = 0; rc != NORI_OK && i < n; i++) {
        if (klens[i] == 0)
            continue;
        if (rcs != NULL)
            rcs[i] = rc;
        if (results != NULL)
            results[i].rc = rc;
    }
    return true;
}

void nori__redis_get_many(nori_backend *b, size_t n, const char *const *keys,
                          const size_t *klens, nori_get_result *results)
{
    nori__redis_node *node;
    if (routed(b, &node, n, klens, NULL, results)) {
        for (size_t i = 0; i < n; i++)
            if (klens[i] != 0 && results[i].rc == NORI_OK)
                results[i].rc = b->ops->get(b, keys[i], klens[i], &results[i].value);
        return;
    }
    redis_backend *rb = (redis_backend *)b;
    bulk_keys bk;
    int rc = bulk_keys_build(&bk, n, keys, klens);
    if (rc != NORI_OK) {
        for (size_t i = 0; i < n; i++)
            if (klens[i] != 0)
                results[i].rc = rc;
        return;
    }
    size_t m = bk.m;
    nori__redis_cmd *cmds = malloc(m * sizeof *cmds);
    const char **argv = malloc(2 * m * sizeof *argv);
    size_t *lens = malloc(2 * m * sizeof *lens);
    redisReply **replies = malloc(m * sizeof *replies);
    const char *first = keys[bk.idx[0]];
    if (cmds == NULL || argv == NULL || lens == NULL || replies == NULL)
        rc = nori__fail(NORI_ENOMEM, "get_many: out of memory for %zu keys", m);
    nori__redis_conn conn;
    if (rc == NORI_OK)
        rc = nori__redis_conn_open(node, &conn);
    if (rc == NORI_OK) {
        for (size_t j = 0; j < m; j++) {
            argv[2 * j] = "GET";
            lens[2 * j] = 3;
            argv[2 * j + 1] = bk.key[j];
            lens[2 * j + 1] = bk.len[j];
            cmds[j] = (nori__redis_cmd){2, &argv[2 * j], &lens[2 * j]};
        }
        nori__redis_conn_expect_values(&conn, m);
        rc = nori__redis_conn_pipeline(&conn, m, cmds, replies, "get_many (GET pipeline)", first);
        nori__redis_conn_close(&conn);
    }
    if (rc != NORI_OK) {
        for (size_t j = 0; j < m; j++)
            results[bk.idx[j]].rc = rc;
    } else {
        bool reported = false;
        uint64_t hits = 0, misses = 0;
        for (size_t j = 0; j < m; j++) {
            nori_get_result *res = &results[bk.idx[j]];
            const char *key = keys[bk.idx[j]];
            redisReply *r = replies[j];
            if (r->type == REDIS_REPLY_NIL) {
                res->rc = NORI_MISS;
                misses++;
            } else if (r->type == REDIS_REPLY_STRING) {
                /* Take the reply's own buffer: hiredis NUL-terminates it and
                 * allocates it with malloc, so it is a nori_buf already. */
                res->value.data = r->str;
                res->value.len = r->len;
                r->str = NULL;
                r->len = 0;
                res->rc = NORI_OK;
                hits++;
            } else {
                res->rc = key_failure(node, r, "get_many (GET)", key, &reported);
            }
            freeReplyObject(r);
        }
        atomic_fetch_add_explicit(&rb->hits, hits, memory_order_relaxed);
        atomic_fetch_add_explicit(&rb->misses, misses, memory_order_relaxed);
    }
    free(cmds);
    free(argv);
    free(lens);
    free(replies);
    free(bk.mem);
}

void nori__redis_set_many(nori_backend *b, size_t n, const nori_set_item *items,
                          const size_t *klens, int *results)
{
    nori__redis_node *node;
    if (routed(b, &node, n, klens, results, NULL)) {
        for (size_t i = 0; i < n; i++)
            if (klens[i] != 0 && results[i] == NORI_OK)
                results[i] = b->ops->set(b, items[i].key, klens[i],
                                         items[i].value == NULL ? "" : items[i].value,
                                         items[i].len, items[i].ttl);
        return;
    }
    const char **keys = malloc(n * sizeof *keys);
    bulk_keys bk = {.mem = NULL};
    int rc = keys == NULL ? nori__fail(NORI_ENOMEM, "set_many: out of memory for %zu items", n)
                          : NORI_OK;
    if (rc == NORI_OK) {
        for (size_t i = 0; i < n; i++)
            keys[i] = items[i].key;
        rc = bulk_keys_build(&bk, n, keys, klens);
    }
    size_t m = rc == NORI_OK ? bk.m : 0;
    nori__redis_cmd *cmds = NULL;
    const char **argv = NULL;
    size_t *lens = NULL;
    redisReply **replies = NULL;
    char(*ttl_text)[24] = NULL;
    if (rc == NORI_OK) {
        cmds = malloc(m * sizeof *cmds);
        argv = malloc(5 * m * sizeof *argv);
        lens = malloc(5 * m * sizeof *lens);
        replies = malloc(m * sizeof *replies);
        ttl_text = malloc(m * sizeof *ttl_text);
        if (cmds == NULL || argv == NULL || lens == NULL || replies == NULL || ttl_text == NULL)
            rc = nori__fail(NORI_ENOMEM, "set_many: out of memory for %zu items", m);
    }
    nori__redis_conn conn;
    if (rc == NORI_OK)
        rc = nori__redis_conn_open(node, &conn);
    if (rc == NORI_OK) {
        for (size_t j = 0; j < m; j++) {
            const nori_set_item *it = &items[bk.idx[j]];
            const char **a = &argv[5 * j];
            size_t *l = &lens[5 * j];
            int tl = snprintf(ttl_text[j], sizeof ttl_text[j], "%" PRId64, it->ttl);
            a[0] = "SET", l[0] = 3;
            a[1] = bk.key[j], l[1] = bk.len[j];
            a[2] = it->value == NULL ? "" : it->value, l[2] = it->len;
            a[3] = "EX", l[3] = 2;
            a[4] = ttl_text[j], l[4] = (size_t)tl;
            cmds[j] = (nori__redis_cmd){it->ttl > 0 ? 5 : 3, a, l};
        }
        rc = nori__redis_conn_pipeline(&conn, m, cmds, replies, "set_many (SET pipeline)",
                                       items[bk.idx[0]].key);
        nori__redis_conn_close(&conn);
    }
    if (rc != NORI_OK) {
        for (size_t i = 0; i < n; i++)
            if (klens[i] != 0)
                results[i] = rc;
    } else {
        bool reported = false;
        for (size_t j = 0; j < m; j++) {
            redisReply *r = replies[j];
            results[bk.idx[j]] = r->type == REDIS_REPLY_STATUS
                                     ? NORI_OK
                                     : key_failure(node, r, "set_many (SET)",
                                                   items[bk.idx[j]].key, &reported);
            freeReplyObject(r);
        }
    }
    free(keys);
    free(cmds);
    free(argv);
    free(lens);
    free(replies);
    free(ttl_text);
    free(bk.mem);
}

void nori__redis_delete_many(nori_backend *b, size_t n, const char *const *keys,
                             const size_t *klens, int *results)
{
    nori__redis_node *node;
    if (routed(b, &node, n, klens, results, NULL)) {
        for (size_t i = 0; i < n; i++)
            if (klens[i] != 0 && results[i] == NORI_OK)
                results[i] = b->ops->del(b, keys[i], klens[i]);
        return;
    }
    bulk_keys bk;
    int rc = bulk_keys_build(&bk, n, keys, klens);
    const char **argv = NULL;
    size_t *lens = NULL;
    if (rc == NORI_OK) {
        argv = malloc((bk.m + 1) * sizeof *argv);
        lens = malloc((bk.m + 1) * sizeof *lens);
        if (argv == NULL || lens == NULL)
            rc = nori__fail(NORI_ENOMEM, "delete_many: out of memory for %zu keys", bk.m);
    }
    if (rc == NORI_OK) {
        /* UNLINK frees large values in the background, as delete does. */
        argv[0] = "UNLINK";
        lens[0] = 6;
        memcpy(argv + 1, bk.key, bk.m * sizeof *argv);
        memcpy(lens + 1, bk.len, bk.m * sizeof *lens);
        redisReply *r;
        const char *first = keys[bk.idx[0]];
        rc = nori__redis_node_call(node, (int)(bk.m + 1), argv, lens, 0, &r,
                                   "delete_many (UNLINK)", first);
        if (rc == NORI_OK) {
            if (r->type != REDIS_REPLY_INTEGER)
                rc = nori__redis_reply_fail(node, r, "delete_many (UNLINK)", first);
            freeReplyObject(r);
        }
    }
    for (size_t i = 0; i < n; i++)
        if (klens[i] != 0)
            results[i] = rc;
    free(argv);
    free(lens);
    free(bk.mem);
}
