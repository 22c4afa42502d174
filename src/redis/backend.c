// SPDX-License-Identifier: MIT
/*
 * The Redis backend, on hiredis 0.14 (blocking API).
 *
 * Wire format, shared with Nori's Python implementation so that C and Python
 * services can share one Redis:
 *  - key "cache:" + key; the value stored as given (binary-safe);
 *  - set: SET k v EX ttl, or plain SET for ttl 0; delete: UNLINK;
 *  - incr: one Lua script (INCR, then EXPIRE only when the result is 1), so
 *    the first increment and its TTL are atomic; run with EVALSHA, falling
 *    back to EVAL (which also caches it) when the server answers NOSCRIPT;
 *  - atomic_update: WATCH / GET / fn / MULTI / SET / EXEC, retried when EXEC
 *    answers nil because another client changed the key; ttl 0 uses KEEPTTL;
 *  - flush: SCAN MATCH cache:* and UNLINK in batches, never FLUSHDB.
 *
 * Each operation borrows one connection of the node (conn.h, pool.c) for its
 * whole duration, and gives it back, or frees it after any I/O or protocol
 * error so that the next call connects afresh.
 *
 * Which node: topology.c routes each keyed operation (one server, the
 * sentinels' master, or the master of the key's cluster slot) and follows
 * MOVED/ASK/TRYAGAIN/CLUSTERDOWN/READONLY; each operation below is a "body"
 * run on the connection it is given, which hands a redirection back to the
 * router instead of failing. flush, delete_prefix and verify visit every
 * master.
 */
#include "backend.h"
#include "error.h"
#include "redis/wire/conn.h"
#include "redis/route/topology.h"
#include "redis/route/url_topology.h"
#include "redis/internal.h"
#include "redis/wire/url.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Keys fetched per SCAN step and deleted per UNLINK during a flush. */
#define FLUSH_BATCH "1000"
/* atomic_update gives up after this many lost WATCH races in a row. */
#define UPDATE_MAX_ATTEMPTS 1000

/*
 * INCR, and EXPIRE only when the INCR created the counter: an existing
 * counter keeps its expiry, whatever ttl the caller passes. Two deliberate
 * differences from Nori's Python script ("if v == 1 ... return v"), which
 * change nothing in what is stored:
 *  - creation is tested with EXISTS before the INCR, not with v == 1: an
 *    existing "0" incremented to 1 is not new and must not gain a TTL
 *    (cache.h, nori_backend_incr: the TTL is applied when the key was
 *    absent, and only then);
 *  - the script returns the counter as Redis stores it (GET, a decimal
 *    string) rather than v: Lua 5.1 numbers are doubles, so returning v loses
 *    precision above 2^53 and turns INT64_MAX into INT64_MIN.
 */
static const char INCR_SCRIPT[] =
    "local n = redis.call('EXISTS', KEYS[1]) local v = redis.call('INCR', KEYS[1]) "
    "if n == 0 and tonumber(ARGV[1]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end "
    "return redis.call('GET', KEYS[1])";
/* SHA1 of INCR_SCRIPT; the SCRIPT LOAD answer is checked against it. */
static const char INCR_SCRIPT_SHA[] = "137df22802a5543446842ecc7afe8dbcae3fa515";

/* Most masters flush, delete_prefix and verify visit. */
#define MAX_MASTERS 256

static int server_fail(const nori__redis_conn *conn, const redisReply *r, const char *op,
                       const char *key)
{
    return nori__redis_reply_fail(conn->node, r, op, key);
}

/*
 * One keyed command as a routed body: send it on the key's node, follow a
 * redirection, and let `accept` read the answer (true: the expected one;
 * false: reported as a server failure naming op and key).
 */
typedef struct routed_cmd routed_cmd;
struct routed_cmd {
    redis_backend *rb;
    int argc;
    const char **argv;
    const size_t *lens;
    const char *op, *key;
    bool (*accept)(const redisReply *r, const routed_cmd *c);
    int expected_type;  /* accept_simple: the reply type wanted */
    const char *status; /* accept_simple: the status text wanted, or NULL */
    int *flag;          /* accept_added, accept_deleted: set from the answer */
};

static int routed_body(nori__topo_attempt *a, void *ctx)
{
    routed_cmd *c = ctx;
    redisReply *r;
    int rc = nori__redis_conn_command(&a->conn, c->argc, c->argv, c->lens, &r, c->op, c->key);
    if (rc != NORI_OK)
        return rc;
    if (nori__topo_redirected(c->rb->topo, a, r))
        rc = NORI__REDIRECTED;
    else if (!c->accept(r, c))
        rc = server_fail(&a->conn, r, c->op, c->key);
    freeReplyObject(r);
    return rc;
}

/* The answer only needs checking: its type, and its status text when given. */
static bool accept_simple(const redisReply *r, const routed_cmd *c)
{
    return r->type == c->expected_type && (c->status == NULL || strcmp(r->str, c->status) == 0);
}

/* A keyed command (argv[1] is the wire key) on the key's node. Only
 * idempotent commands come here, so an I/O error may be retried. */
static int simple_call(redis_backend *rb, int argc, const char **argv, const size_t *lens,
                       int expected_type, const char *status, const char *op, const char *key)
{
    routed_cmd c = {rb, argc, argv, lens, op, key, accept_simple, expected_type, status, NULL};
    return nori__topo_call(rb->topo, argv[1], lens[1], true, routed_body, &c, op, key);
}

/* ---- operations ---- */

typedef struct get_ctx {
    redis_backend *rb;
    const wire_key *k;
    const char *key;
    nori_buf *out;
} get_ctx;

static int get_body(nori__topo_attempt *a, void *ctx)
{
    get_ctx *g = ctx;
    redis_backend *rb = g->rb;
    const char *key = g->key;
    nori_buf *out = g->out;
    const char *argv[] = {"GET", g->k->s};
    const size_t lens[] = {3, g->k->len};
    redisReply *r;
    nori__redis_conn_expect_values(&a->conn, 1);
    int rc = nori__redis_conn_command(&a->conn, 2, argv, lens, &r, "GET", key);
    if (rc == NORI_OK) {
        if (nori__topo_redirected(rb->topo, a, r)) {
            rc = NORI__REDIRECTED;
        } else if (r->type == REDIS_REPLY_NIL) {
            atomic_fetch_add_explicit(&rb->misses, 1, memory_order_relaxed);
            rc = NORI_MISS;
        } else if (r->type == REDIS_REPLY_STRING) {
            /* Copy out of the reply: the caller owns a plain malloc'd buffer. */
            char *data = malloc(r->len + 1);
            if (data == NULL) {
                rc = nori__fail(NORI_ENOMEM, "out of memory copying the value of '%.64s'", key);
            } else {
                memcpy(data, r->str, r->len);
                data[r->len] = '\0';
                out->data = data;
                out->len = r->len;
                atomic_fetch_add_explicit(&rb->hits, 1, memory_order_relaxed);
            }
        } else {
            rc = server_fail(&a->conn, r, "GET", key);
        }
        freeReplyObject(r);
    }
    return rc;
}

static int redis_get(nori_backend *b, const char *key, size_t klen, nori_buf *out)
{
    redis_backend *rb = (redis_backend *)b;
    wire_key k;
    make_key(&k, key, klen);
    get_ctx g = {rb, &k, key, out};
    return nori__topo_call(rb->topo, k.s, k.len, true, get_body, &g, "GET", key);
}

static int redis_set(nori_backend *b, const char *key, size_t klen, const void *val, size_t len,
                     int64_t ttl)
{
    redis_backend *rb = (redis_backend *)b;
    wire_key k;
    make_key(&k, key, klen);
    char ttl_text[24];
    int ttl_len = snprintf(ttl_text, sizeof ttl_text, "%" PRId64, ttl);
    const char *argv[] = {"SET", k.s, val, "EX", ttl_text};
    const size_t lens[] = {3, k.len, len, 2, (size_t)ttl_len};
    return simple_call(rb, ttl > 0 ? 5 : 3, argv, lens, REDIS_REPLY_STATUS, NULL, "SET", key);
}

/* add and delete_if_equal: one command whose reply sets a 0/1 flag. */
static bool accept_added(const redisReply *r, const routed_cmd *c)
{
    if (r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0)
        *c->flag = 1;
    else if (r->type == REDIS_REPLY_NIL)
        *c->flag = 0;
    else
        return false;
    return true;
}

static bool accept_deleted(const redisReply *r, const routed_cmd *c)
{
    if (r->type != REDIS_REPLY_INTEGER)
        return false;
    *c->flag = r->integer > 0;
    return true;
}

/* A lease: SET NX PX in one command, so two processes can never both
 * get it. */
static int redis_add(nori_backend *b, const char *key, size_t klen, const void *val, size_t len,
                     int64_t ttl_ms, int *added)
{
    redis_backend *rb = (redis_backend *)b;
    wire_key k;
    make_key(&k, key, klen);
    char ttl_text[24];
    int ttl_len = snprintf(ttl_text, sizeof ttl_text, "%" PRId64, ttl_ms);
    const char *argv[] = {"SET", k.s, val, "NX", "PX", ttl_text};
    const size_t lens[] = {3, k.len, len, 2, 2, (size_t)ttl_len};
    routed_cmd c = {rb, 6, argv, lens, "SET NX", key, accept_added, 0, NULL, added};
    /* Not resent after an I/O error: a second SET NX would say "not added"
     * about the lease the first one took. */
    return nori__topo_call(rb->topo, k.s, k.len, false, routed_body, &c, "SET NX", key);
}

/* Release by token: GET and DEL must be one step, or a lease that expired
 * and was taken by another process could be deleted. */
static const char DEL_IF_EQUAL_SCRIPT[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) "
    "else return 0 end";

static int redis_delete_if_equal(nori_backend *b, const char *key, size_t klen, const void *val,
                                 size_t len, int *deleted)
{
    redis_backend *rb = (redis_backend *)b;
    wire_key k;
    make_key(&k, key, klen);
    const char *argv[] = {"EVAL", DEL_IF_EQUAL_SCRIPT, "1", k.s, val};
    const size_t lens[] = {4, sizeof DEL_IF_EQUAL_SCRIPT - 1, 1, k.len, len};
    routed_cmd c = {rb,  5,   argv, lens, "delete_if_equal (EVAL)", key, accept_deleted,
                    0,   NULL, deleted};
    return nori__topo_call(rb->topo, k.s, k.len, false, routed_body, &c,
                           "delete_if_equal (EVAL)", key);
}

static int redis_del(nori_backend *b, const char *key, size_t klen)
{
    redis_backend *rb = (redis_backend *)b;
    wire_key k;
    make_key(&k, key, klen);
    /* UNLINK frees a large value in the background instead of blocking the server. */
    const char *argv[] = {"UNLINK", k.s};
    const size_t lens[] = {6, k.len};
    return simple_call(rb, 2, argv, lens, REDIS_REPLY_INTEGER, NULL, "UNLINK", key);
}

/*
 * UNLINKs the keys of one SCAN page (an array of strings). On a cluster the
 * keys of one page lie in many slots, and a multi-key UNLINK across slots is
 * refused (CROSSSLOT): there each key gets its own UNLINK, all in one
 * pipeline (still one round trip).
 */
static int unlink_each(nori__redis_conn *conn, const redisReply *keys, const char *op,
                       const char *pat)
{
    size_t n = keys->elements;
    nori__redis_cmd *cmds = malloc(n * sizeof *cmds);
    const char **argv = malloc(2 * n * sizeof *argv);
    size_t *lens = malloc(2 * n * sizeof *lens);
    redisReply **replies = calloc(n, sizeof *replies);
    int rc = NORI_OK;
    if (cmds == NULL || argv == NULL || lens == NULL || replies == NULL)
        rc = nori__fail(NORI_ENOMEM, "out of memory in %s on redis %s", op,
                        conn->node->url->display);
    for (size_t i = 0; rc == NORI_OK && i < n; i++) {
        argv[2 * i] = "UNLINK";
        lens[2 * i] = 6;
        argv[2 * i + 1] = keys->element[i]->str;
        lens[2 * i + 1] = keys->element[i]->len;
        cmds[i] = (nori__redis_cmd){2, &argv[2 * i], &lens[2 * i]};
    }
    if (rc == NORI_OK)
        rc = nori__redis_conn_pipeline(conn, n, cmds, replies, op, pat);
    for (size_t i = 0; rc == NORI_OK && i < n; i++)
        if (replies[i]->type != REDIS_REPLY_INTEGER)
            rc = server_fail(conn, replies[i], op, pat);
    for (size_t i = 0; replies != NULL && i < n; i++)
        if (replies[i] != NULL)
            freeReplyObject(replies[i]);
    free(cmds);
    free(argv);
    free(lens);
    free(replies);
    return rc;
}

static int unlink_batch(redis_backend *rb, nori__redis_conn *conn, const redisReply *keys,
                        const char *op, const char *pat)
{
    if (keys->elements == 0)
        return NORI_OK;
    for (size_t i = 0; i < keys->elements; i++)
        if (keys->element[i]->type != REDIS_REPLY_STRING)
            return server_fail(conn, keys->element[i], op, pat);
    if (nori__topo_mode(rb->topo) == NORI_TOPO_CLUSTER)
        return unlink_each(conn, keys, op, pat);
    size_t n = keys->elements + 1;
    const char **argv = malloc(n * sizeof *argv);
    size_t *lens = malloc(n * sizeof *lens);
    int rc = NORI_OK;
    if (argv == NULL || lens == NULL)
        rc = nori__fail(NORI_ENOMEM, "out of memory in %s on redis %s", op,
                        conn->node->url->display);
    for (size_t i = 0; rc == NORI_OK && i < keys->elements; i++) {
        argv[i + 1] = keys->element[i]->str;
        lens[i + 1] = keys->element[i]->len;
    }
    if (rc == NORI_OK) {
        argv[0] = "UNLINK";
        lens[0] = 6;
        redisReply *r;
        rc = nori__redis_conn_command(conn, (int)n, argv, lens, &r, op, pat);
        if (rc == NORI_OK) {
            if (r->type != REDIS_REPLY_INTEGER)
                rc = server_fail(conn, r, op, pat);
            freeReplyObject(r);
        }
    }
    free(argv);
    free(lens);
    return rc;
}

/*
 * "cache:" + prefix with the glob characters of prefix escaped, + "*": the
 * SCAN MATCH pattern of the keys that start with prefix, and nothing else.
 * `pat` has room for KEY_PREFIX_LEN + 2 * NORI_MAX_KEY_LEN + 2 bytes.
 */
static void prefix_pattern(char *pat, const char *prefix, size_t plen)
{
    size_t n = KEY_PREFIX_LEN;
    memcpy(pat, KEY_PREFIX, n);
    for (size_t i = 0; i < plen; i++) {
        char c = prefix[i];
        if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\')
            pat[n++] = '\\';
        pat[n++] = c;
    }
    pat[n++] = '*';
    pat[n] = '\0';
}

/*
 * SCAN guarantees that every key present for the whole scan is returned at
 * least once, so each matching key that existed when the call started and was
 * not rewritten meanwhile is removed; keys outside the pattern are never
 * named. flush is the empty prefix.
 */
static int delete_prefix_on(redis_backend *rb, nori__redis_node *node, const char *op,
                            const char *pat)
{
    nori__redis_conn conn;
    int rc = nori__redis_conn_open(node, &conn);
    if (rc != NORI_OK)
        return rc;
    char cursor[32] = "0";
    do {
        const char *argv[] = {"SCAN", cursor, "MATCH", pat, "COUNT", FLUSH_BATCH};
        redisReply *r;
        rc = nori__redis_conn_command(&conn, 6, argv, NULL, &r, op, pat);
        if (rc != NORI_OK)
            break;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= sizeof cursor ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            rc = server_fail(&conn, r, op, pat);
        } else {
            memcpy(cursor, r->element[0]->str, r->element[0]->len);
            cursor[r->element[0]->len] = '\0';
            rc = unlink_batch(rb, &conn, r->element[1], op, pat);
        }
        freeReplyObject(r);
    } while (rc == NORI_OK && strcmp(cursor, "0") != 0);
    conn.reusable = rc == NORI_OK;
    nori__redis_conn_close(&conn);
    return rc;
}

/* On a cluster, every master scans its own keys (a replica holds copies). */
static int redis_delete_prefix(nori_backend *b, const char *prefix, size_t plen)
{
    redis_backend *rb = (redis_backend *)b;
    const char *op = plen == 0 ? "flush" : "delete_prefix";
    char pat[KEY_PREFIX_LEN + 2 * NORI_MAX_KEY_LEN + 2];
    prefix_pattern(pat, prefix, plen);
    nori__redis_node *masters[MAX_MASTERS];
    int n = nori__topo_masters(rb->topo, masters, MAX_MASTERS);
    if (n < 0)
        return n;
    for (int i = 0; i < n; i++) {
        int rc = delete_prefix_on(rb, masters[i], op, pat);
        if (rc != NORI_OK)
            return rc;
    }
    return NORI_OK;
}

/* Loads the incr script once per backend. Another backend or a server
 * restart may drop it again; incr then falls back to EVAL on NOSCRIPT. */
static int load_script(redis_backend *rb, nori__redis_conn *conn, const char *key)
{
    if (atomic_load_explicit(&rb->script_loaded, memory_order_acquire))
        return NORI_OK;
    const char *argv[] = {"SCRIPT", "LOAD", INCR_SCRIPT};
    redisReply *r;
    int rc = nori__redis_conn_command(conn, 3, argv, NULL, &r, "incr (SCRIPT LOAD)", key);
    if (rc != NORI_OK)
        return rc;
    if (r->type != REDIS_REPLY_STRING || strcmp(r->str, INCR_SCRIPT_SHA) != 0)
        rc = server_fail(conn, r, "incr (SCRIPT LOAD)", key);
    else
        atomic_store_explicit(&rb->script_loaded, true, memory_order_release);
    freeReplyObject(r);
    return rc;
}

/* Maps the reply of the incr script to a return code. */
static int incr_result(const nori__redis_conn *conn, const redisReply *r, const char *key,
                       int64_t *out)
{
    if (r->type == REDIS_REPLY_STRING) {
        if (nori__parse_int64(r->str, r->len, out))
            return NORI_OK;
        return nori__fail(NORI_EBACKEND, "redis %s: incr '%.64s': the script returned '%.32s'",
                          conn->node->url->display, key, r->str);
    }
    if (r->type == REDIS_REPLY_ERROR && strstr(r->str, "not an integer") != NULL)
        return nori__fail(NORI_ETYPE, "incr '%.64s': the stored value is not an int", key);
    if (r->type == REDIS_REPLY_ERROR && strstr(r->str, "overflow") != NULL)
        return nori__fail(NORI_ERANGE, "incr '%.64s': the counter would overflow int64", key);
    return server_fail(conn, r, "incr", key);
}

typedef struct incr_ctx {
    redis_backend *rb;
    const wire_key *k;
    const char *key;
    const char *ttl_text;
    size_t ttl_len;
    int64_t *out;
} incr_ctx;

static int incr_body(nori__topo_attempt *a, void *ctx)
{
    incr_ctx *c = ctx;
    redis_backend *rb = c->rb;
    const wire_key k = *c->k;
    const char *key = c->key, *ttl_text = c->ttl_text;
    size_t ttl_len = c->ttl_len;
    nori__redis_conn *conn = &a->conn;
    int rc = load_script(rb, conn, key);
    redisReply *r = NULL;
    if (rc == NORI_OK) {
        const char *argv[] = {"EVALSHA", INCR_SCRIPT_SHA, "1", k.s, ttl_text};
        const size_t lens[] = {7, sizeof INCR_SCRIPT_SHA - 1, 1, k.len, ttl_len};
        rc = nori__redis_conn_command(conn, 5, argv, lens, &r, "incr (EVALSHA)", key);
    }
    if (rc == NORI_OK && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        /* The server lost its script cache (restart, SCRIPT FLUSH): EVAL
         * runs the script and caches it again for the next EVALSHA. */
        freeReplyObject(r);
        r = NULL;
        const char *argv[] = {"EVAL", INCR_SCRIPT, "1", k.s, ttl_text};
        const size_t lens[] = {4, sizeof INCR_SCRIPT - 1, 1, k.len, ttl_len};
        rc = nori__redis_conn_command(conn, 5, argv, lens, &r, "incr (EVAL)", key);
    }
    if (rc == NORI_OK) {
        rc = nori__topo_redirected(rb->topo, a, r) ? NORI__REDIRECTED
                                                    : incr_result(conn, r, key, c->out);
        freeReplyObject(r);
    }
    return rc;
}

/* Not idempotent: after an I/O error (the script may have run) incr is not
 * retried; a redirection or a refused connection is (nothing ran). */
static int redis_incr(nori_backend *b, const char *key, size_t klen, int64_t ttl, int64_t *out)
{
    redis_backend *rb = (redis_backend *)b;
    wire_key k;
    make_key(&k, key, klen);
    char ttl_text[24];
    int ttl_len = snprintf(ttl_text, sizeof ttl_text, "%" PRId64, ttl);
    incr_ctx c = {rb, &k, key, ttl_text, (size_t)ttl_len, out};
    return nori__topo_call(rb->topo, k.s, k.len, false, incr_body, &c, "incr", key);
}

/*
 * A redirection inside atomic_update. ASK is turned into a pause and a
 * retry (as TRYAGAIN): ASKING covers one command, and WATCH/GET/MULTI/EXEC
 * are several; the slot's migration ends within the retry budget.
 */
static bool update_redirected(redis_backend *rb, nori__topo_attempt *a, const redisReply *r)
{
    if (!nori__topo_redirected(rb->topo, a, r))
        return false;
    if (a->redirect.kind == NORI_REDIRECT_ASK)
        a->redirect.kind = NORI_REDIRECT_TRYAGAIN;
    return true;
}

typedef struct update_ctx {
    redis_backend *rb;
    const wire_key *k;
    const char *key;
    nori_update_fn fn;
    void *ud;
    int64_t ttl;
    nori_buf written; /* the value of the successful attempt */
} update_ctx;

/*
 * The steps of one optimistic attempt of atomic_update on a->conn: WATCH
 * the key, GET its value, run the callback, then MULTI/SET/EXEC. Each
 * returns NORI_OK to go on, NORI__REDIRECTED, or an error; `*reusable` is
 * cleared while the connection may be left in WATCH or MULTI state.
 */

/* WATCH: from its success on, the connection is not clean. */
static int update_watch(update_ctx *u, nori__topo_attempt *a, bool *reusable)
{
    nori__redis_conn *conn = &a->conn;
    const char *watch[] = {"WATCH", u->k->s};
    const size_t watch_lens[] = {5, u->k->len};
    redisReply *r;
    int rc = nori__redis_conn_command(conn, 2, watch, watch_lens, &r, "atomic_update (WATCH)",
                                      u->key);
    if (rc != NORI_OK)
        return rc;
    if (update_redirected(u->rb, a, r)) {
        freeReplyObject(r); /* no WATCH was set: the connection stays clean */
        return NORI__REDIRECTED;
    }
    if (r->type != REDIS_REPLY_STATUS)
        rc = server_fail(conn, r, "atomic_update (WATCH)", u->key);
    freeReplyObject(r);
    *reusable = false; /* WATCH is active from here on */
    return rc;
}

/* GET: the current value into *cur (a nil or string reply, the caller
 * frees it). */
static int update_read(update_ctx *u, nori__topo_attempt *a, redisReply **cur)
{
    nori__redis_conn *conn = &a->conn;
    const char *get[] = {"GET", u->k->s};
    const size_t get_lens[] = {3, u->k->len};
    nori__redis_conn_expect_values(conn, 1);
    int rc = nori__redis_conn_command(conn, 2, get, get_lens, cur, "atomic_update (GET)", u->key);
    if (rc != NORI_OK)
        return rc;
    if ((*cur)->type != REDIS_REPLY_NIL && (*cur)->type != REDIS_REPLY_STRING) {
        rc = update_redirected(u->rb, a, *cur) ? NORI__REDIRECTED
                                               : server_fail(conn, *cur, "atomic_update (GET)",
                                                             u->key);
        freeReplyObject(*cur);
        *cur = NULL;
    }
    return rc;
}

/* The callback on the current value (cur, freed here): NORI_OK with the
 * new value in u->written, or NORI_EABORT (declined), NORI_EINVAL (len
 * without data), NORI_ETOOBIG, NORI_ENOMEM. The value is taken now
 * (NUL-terminated for the caller), so that nothing can fail between a
 * successful EXEC and returning. */
static int update_compute(update_ctx *u, redisReply *cur)
{
    /* hiredis NUL-terminates string replies, so current.data is a C string too. */
    nori_buf current = {cur->str, cur->len};
    nori_buf next = {NULL, 0};
    int declined = u->fn(cur->type == REDIS_REPLY_STRING ? &current : NULL, &next, u->ud);
    freeReplyObject(cur);
    int rc;
    if (declined != 0) {
        nori_buf_free(&next);
        rc = nori__fail(NORI_EABORT, "atomic_update '%.64s': the callback declined (returned %d)",
                        u->key, declined);
    } else if (next.data == NULL && next.len > 0) {
        rc = nori__fail(NORI_EINVAL, "atomic_update '%.64s': the callback set len %zu with no data",
                        u->key, next.len);
    } else {
        rc = nori__check_value(&u->rb->base, u->key, next.len);
        if (rc != NORI_OK)
            nori_buf_free(&next);
    }
    if (rc == NORI_OK)
        rc = nori__adopt_buf(&next, &u->written);
    return rc;
}

/* No write after all (error rc): UNWATCH, so that the connection can be
 * reused. Returns rc, with the error that ended the update (the caller is
 * told why it failed, not how UNWATCH went). */
static int update_unwatch(update_ctx *u, nori__redis_conn *conn, int rc, bool *reusable)
{
    const char *unwatch[] = {"UNWATCH"};
    char why[512];
    snprintf(why, sizeof why, "%s", nori_last_error());
    redisReply *r;
    if (nori__redis_conn_command(conn, 1, unwatch, NULL, &r, "atomic_update (UNWATCH)", u->key) ==
        NORI_OK) {
        if (r->type == REDIS_REPLY_STATUS)
            *reusable = true;
        freeReplyObject(r);
    }
    nori__fail(rc, "%s", why);
    return rc;
}

/* What EXEC's reply (replies[2]; replies[1]: the SET's queueing) says:
 * NORI_OK (written), 1 (another client touched the key: nothing written,
 * retry), NORI__REDIRECTED or an error. */
static int update_exec_result(update_ctx *u, nori__topo_attempt *a, redisReply *replies[3],
                              bool *reusable)
{
    nori__redis_conn *conn = &a->conn;
    redisReply *e = replies[2];
    if (e->type == REDIS_REPLY_NIL) {
        *reusable = true; /* lost the race; EXEC also ended the WATCH */
        return 1;
    }
    if (e->type == REDIS_REPLY_ARRAY && e->elements == 1 &&
        e->element[0]->type == REDIS_REPLY_STATUS) {
        *reusable = true;
        return NORI_OK;
    }
    if (e->type == REDIS_REPLY_ARRAY && e->elements == 1) {
        *reusable = true;
        return server_fail(conn, e->element[0], "atomic_update (SET)", u->key);
    }
    if (update_redirected(u->rb, a, replies[1]) || update_redirected(u->rb, a, e)) {
        /* The slot moved between WATCH and the SET (or the node became
         * a replica): EXEC discarded everything, nothing was written. */
        *reusable = true;
        return NORI__REDIRECTED;
    }
    if (replies[1]->type == REDIS_REPLY_ERROR)
        /* The server refused to queue the SET (OOM under maxmemory, for
         * one) and EXEC only says EXECABORT: report the SET's reason. */
        return server_fail(conn, replies[1], "atomic_update (SET)", u->key);
    return server_fail(conn, e, "atomic_update (EXEC)", u->key);
}

/* MULTI, SET, EXEC in one round trip. */
static int update_commit(update_ctx *u, nori__topo_attempt *a, bool *reusable)
{
    const nori_buf *w = &u->written;
    char ttl_text[24];
    int ttl_len = snprintf(ttl_text, sizeof ttl_text, "%" PRId64, u->ttl);
    const char *set[] = {"SET", u->k->s, w->data, u->ttl > 0 ? "EX" : "KEEPTTL", ttl_text};
    const size_t set_lens[] = {3, u->k->len, w->len, u->ttl > 0 ? 2 : 7, (size_t)ttl_len};
    const char *multi[] = {"MULTI"};
    const char *exec[] = {"EXEC"};
    const nori__redis_cmd cmds[3] = {
        {1, multi, NULL}, {u->ttl > 0 ? 5 : 4, set, set_lens}, {1, exec, NULL}};
    redisReply *replies[3] = {NULL, NULL, NULL};
    int rc = nori__redis_conn_pipeline(&a->conn, 3, cmds, replies,
                                       "atomic_update (MULTI/SET/EXEC)", u->key);
    if (rc == NORI_OK)
        rc = update_exec_result(u, a, replies, reusable);
    for (int i = 0; i < 3; i++)
        if (replies[i] != NULL)
            freeReplyObject(replies[i]);
    return rc;
}

/*
 * One optimistic attempt of atomic_update. Returns NORI_OK (written;
 * u->written holds the value), NORI_EABORT or an error, or 1 when EXEC
 * answered nil (another client touched the key: retry).
 */
static int update_attempt(update_ctx *u, nori__topo_attempt *a, bool *reusable)
{
    int rc = update_watch(u, a, reusable);
    redisReply *cur = NULL;
    if (rc == NORI_OK)
        rc = update_read(u, a, &cur);
    if (rc != NORI_OK)
        return rc;
    rc = update_compute(u, cur);
    if (rc != NORI_OK)
        return update_unwatch(u, &a->conn, rc, reusable);
    rc = update_commit(u, a, reusable);
    if (rc != NORI_OK)
        nori_buf_free(&u->written);
    return rc;
}

static int update_body(nori__topo_attempt *a, void *ctx)
{
    update_ctx *u = ctx;
    bool reusable = true;
    int attempt = 0;
    int rc;
    do {
        rc = update_attempt(u, a, &reusable);
    } while (rc == 1 && ++attempt < UPDATE_MAX_ATTEMPTS);
    if (rc == 1)
        rc = nori__fail(NORI_EBACKEND,
                        "redis %s: atomic_update '%.64s': gave up after %d attempts, the key "
                        "kept changing under WATCH",
                        a->conn.node->url->display, u->key, UPDATE_MAX_ATTEMPTS);
    a->conn.reusable = reusable;
    return rc;
}

/* Not retried after an I/O error (EXEC may have run); redirections are. */
static int redis_atomic_update(nori_backend *b, const char *key, size_t klen, nori_update_fn fn,
                               void *ud, int64_t ttl, nori_buf *out)
{
    redis_backend *rb = (redis_backend *)b;
    wire_key k;
    make_key(&k, key, klen);
    update_ctx u = {rb, &k, key, fn, ud, ttl, {NULL, 0}};
    int rc = nori__topo_call(rb->topo, k.s, k.len, false, update_body, &u, "atomic_update", key);
    if (rc == NORI_OK && out != NULL)
        *out = u.written;
    else
        nori_buf_free(&u.written);
    return rc;
}

/*
 * The oldest server this backend works with: atomic_update with ttl 0 sends
 * SET ... KEEPTTL (Redis 6.0); delete and flush use UNLINK (4.0).
 */
#define MIN_SERVER_MAJOR 6
#define MIN_SERVER_MINOR 0

/* Checks the redis_version line of an INFO server reply. */
static int check_version(const char *display, const char *info)
{
    const char *line = strstr(info, "redis_version:");
    if (line == NULL)
        return nori__fail(NORI_EBACKEND,
                          "redis %s: verify: INFO server has no redis_version line, so the "
                          "server version (%d.%d or later needed) cannot be checked",
                          display, MIN_SERVER_MAJOR, MIN_SERVER_MINOR);
    const char *v = line + strlen("redis_version:");
    size_t vlen = strcspn(v, "\r\n");
    int major = 0, minor = 0;
    int n = sscanf(v, "%d.%d", &major, &minor);
    if (n < 1)
        return nori__fail(NORI_EBACKEND, "redis %s: verify: cannot read redis_version '%.*s'",
                          display, (int)(vlen > 32 ? 32 : vlen), v);
    if (major < MIN_SERVER_MAJOR || (major == MIN_SERVER_MAJOR && minor < MIN_SERVER_MINOR))
        return nori__fail(NORI_EBACKEND,
                          "redis %s: verify: the server is Redis %.*s; this backend needs %d.%d "
                          "or later (SET ... KEEPTTL in atomic_update)",
                          display, (int)(vlen > 32 ? 32 : vlen), v, MIN_SERVER_MAJOR,
                          MIN_SERVER_MINOR);
    return NORI_OK;
}

/*
 * Standalone and sentinel: INFO server on the server (the master) answers
 * within timeout_ms and reports a version this backend works with. Cluster:
 * every master of a fresh slot map passes that check and says
 * cluster_state:ok. The message names the node that failed.
 */
static int redis_verify(nori_backend *b)
{
    redis_backend *rb = (redis_backend *)b;
    int rc = nori__topo_refresh(rb->topo);
    if (rc != NORI_OK)
        return rc;
    bool cluster = nori__topo_mode(rb->topo) == NORI_TOPO_CLUSTER;
    nori__redis_node *masters[MAX_MASTERS];
    int n = nori__topo_masters(rb->topo, masters, MAX_MASTERS);
    if (n < 0)
        return n;
    for (int i = 0; i < n; i++) {
        const char *info_server[] = {"INFO", "server"};
        redisReply *r;
        rc = nori__redis_node_call(masters[i], 2, info_server, NULL, 0, &r, "verify",
                                   "INFO server");
        if (rc != NORI_OK)
            return rc;
        if (r->type == REDIS_REPLY_STRING)
            rc = check_version(masters[i]->url->display, r->str);
        else
            rc = nori__redis_reply_fail(masters[i], r, "verify", "INFO server");
        freeReplyObject(r);
        if (rc != NORI_OK || !cluster)
            return rc;
        const char *info[] = {"CLUSTER", "INFO"};
        rc = nori__redis_node_call(masters[i], 2, info, NULL, 0, &r, "verify", "CLUSTER INFO");
        if (rc != NORI_OK)
            return rc;
        if (r->type != REDIS_REPLY_STRING)
            rc = nori__redis_reply_fail(masters[i], r, "verify", "CLUSTER INFO");
        else if (strstr(r->str, "cluster_state:ok") == NULL) {
            const char *st = strstr(r->str, "cluster_state:");
            rc = nori__fail(NORI_EBACKEND,
                            "redis %s: verify: the node says %.*s, not cluster_state:ok",
                            masters[i]->url->display, st ? (int)strcspn(st, "\r\n") : 7,
                            st ? st : "nothing");
        }
        freeReplyObject(r);
        if (rc != NORI_OK)
            return rc;
    }
    return NORI_OK;
}

static char *redis_describe(nori_backend *b, int *rc)
{
    return nori__topo_describe(((redis_backend *)b)->topo, rc);
}

static void redis_stats(nori_backend *b, nori_backend_stats *out)
{
    redis_backend *rb = (redis_backend *)b;
    out->hits = atomic_load_explicit(&rb->hits, memory_order_relaxed);
    out->misses = atomic_load_explicit(&rb->misses, memory_order_relaxed);
    nori__topo_stats(rb->topo, out);
}

static void redis_destroy(nori_backend *b)
{
    redis_backend *rb = (redis_backend *)b;
    nori__topo_free(rb->topo);
    nori__redis_target_free(&rb->target);
    free(rb);
}

const nori_backend_ops nori__redis_ops = {
    .kind = "redis",
    .traits = {.shared = true, .entry_format = NORI__ENTRY_JSON, .remote = true},
    .get = redis_get,
    .set = redis_set,
    .del = redis_del,
    .delete_prefix = redis_delete_prefix,
    .add = redis_add,
    .delete_if_equal = redis_delete_if_equal,
    .set_guarded = nori__redis_set_guarded,
    .incr = redis_incr,
    .atomic_update = redis_atomic_update,
    .verify = redis_verify,
    .describe = redis_describe,
    .stats = redis_stats,
    .metrics = nori__redis_metrics,
    .destroy = redis_destroy,
    .get_many = nori__redis_get_many,
    .set_many = nori__redis_set_many,
    .delete_many = nori__redis_delete_many,
};

int nori_redis_backend_new(const char *url, nori_backend **out)
{
    if (out == NULL)
        return nori__fail(NORI_EINVAL, "redis backend: out is NULL");
    redis_backend *rb = calloc(1, sizeof *rb);
    if (rb == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory creating a redis backend");
    int rc = nori__redis_target_parse(url, &rb->target);
    if (rc != NORI_OK) {
        free(rb);
        return rc;
    }
    rc = nori__topo_new(&rb->target, &rb->base, &rb->topo);
    if (rc != NORI_OK) {
        nori__redis_target_free(&rb->target);
        free(rb);
        return rc;
    }
    atomic_init(&rb->script_loaded, false);
    atomic_init(&rb->hits, 0);
    atomic_init(&rb->misses, 0);
    nori__backend_init(&rb->base, &nori__redis_ops);
    *out = &rb->base;
    return NORI_OK;
}
