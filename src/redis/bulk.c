// SPDX-License-Identifier: MIT
/*
 * The bulk calls of the Redis backend: the valid keys of a call are grouped
 * by the server that holds them, and each group is one pipeline on one
 * borrowed connection (conn.h), so that 100 keys cost one network round
 * trip (the nodes' pipelines overlap) instead of 100.
 *  - get_many: a pipeline of GETs rather than one MGET, so that each key
 *    answers exactly as nori_backend_get would (MGET answers nil for a key
 *    of another type, where GET answers WRONGTYPE);
 *  - set_many: a pipeline of SETs (SET k v [EX ttl]), each item's reply its
 *    result;
 *  - delete_many: a pipeline of UNLINKs, one per key. Not one UNLINK of many
 *    keys: on a cluster a multi-key command must stay in one slot (CROSSSLOT
 *    otherwise), and while a slot migrates, a multi-key command whose keys
 *    are split between the two nodes answers TRYAGAIN for all of them; one
 *    command per key gives each key its own reply and its own redirection,
 *    in the same round trip.
 *
 * Groups: one server (redis://, unix://) is one group. On a cluster, the
 * keys go to the master of their slot in the current map (topology.h), one
 * group per master. A connection is borrowed for every group first (each
 * bounded by connect_timeout_ms when none is idle), then every group's
 * pipeline is sent before any reply is read, so that the nodes work in
 * parallel, and all replies are read by one deadline: timeout_ms from when
 * the connections were ready. A stuck node thus costs the call timeout_ms
 * once, however many nodes there are. Through Sentinel the keys are one
 * group on the master resolved last; as the master may move mid-call, a key
 * answered READONLY, and every key of a group whose connection was lost
 * (refused, closed, reset: the master is gone), is sent again alone through
 * the routed single-key operation, which resolves the master again (all
 * three bulk commands are idempotent, so resending is safe). Any other
 * failure of the round trip (a timeout, a reply over the limits, a WAIT
 * short of replicas) fails the group's keys, as on a cluster.
 *
 * Failures, per key:
 *  - a group's round trip fails without replies (node down, timeout, reply
 *    over the limits): every key of that group fails with that code, and
 *    the message names the node; the other groups go ahead. On a cluster
 *    the map is then read again once (rate-limited; asking first a node
 *    that answered), so that a failover is seen by the next call;
 *  - a reply MOVED, ASK, TRYAGAIN or CLUSTERDOWN (the command was not run),
 *    or a slot no master serves in the map: that key is sent again alone,
 *    after every group, through the routed single-key operation (which
 *    follows redirections, refreshes the map and is bounded as a single
 *    call: topology.h); its result is that call's. A MOVED fixes the slot
 *    in the map first (nori__topo_moved, after every group is read), so
 *    that the retry goes straight to the new owner. These keys share one
 *    retry budget (see alone());
 *  - any other error reply (WRONGTYPE, OOM ...) fails that key only.
 * nori_last_error() describes the first key (in the caller's order) that
 * failed.
 */
#include "redis/internal.h"

#include "clock.h"
#include "error.h"
#include "redis/wire/io.h"
#include "redis/route/cluster_slots.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
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

/* Where a valid key stands. */
enum { KEY_PENDING, KEY_ALONE, KEY_DONE };

/* Most arguments of one key's command: SET k v EX ttl. */
#define MAX_ARGS 5

typedef struct bulk_call bulk_call;
typedef struct bulk_group bulk_group;

/* What differs between the three calls. */
typedef struct bulk_op {
    const char *pipeline; /* names a group's round trip in messages */
    const char *command;  /* names one key's command in messages */
    bool values;          /* the replies carry cache values (conn.h: expect_values) */
    /* Fills c->cmds[j] (arguments in c->argv/c->lens [MAX_ARGS * j ...]). */
    void (*build)(bulk_call *c, size_t j);
    /* Key j's reply r from node (not a redirection): its result code. r is
     * freed by the caller; the reader may take r->str (setting it NULL). */
    int (*reply)(bulk_call *c, size_t j, const nori__redis_node *node, redisReply *r);
    /* Key j alone, through the routed single-key operation. */
    int (*alone)(bulk_call *c, size_t j);
} bulk_op;

struct bulk_call {
    redis_backend *rb;
    const bulk_op *op;
    size_t n;                   /* the caller's entries */
    const char *const *keys;    /* the caller's keys (for set_many: copied from items) */
    const size_t *klens;
    const nori_set_item *items; /* set_many, else NULL */
    nori_get_result *results;   /* get_many, else NULL */
    int *rcs;                   /* set_many and delete_many, else NULL */
    bulk_keys bk;
    /* [j], j < bk.m */
    nori__redis_cmd *cmds;
    nori__redis_node **node;    /* the key's group; NULL: alone */
    unsigned char *state;       /* KEY_* */
    char (*ttl)[24];            /* set_many: the EX argument */
    const char **argv;          /* [MAX_ARGS * j + a] */
    size_t *lens;
    /* [t]: the keys grouped by node (bulk_group) */
    size_t *order;              /* the j of the t-th command */
    nori__redis_cmd *gcmds;
    redisReply **replies;
    bulk_group *groups;         /* at most one per key */
    uint64_t hits, misses;
    bool node_failed;           /* a cluster node failed: refresh the map */
    bool sentinel;              /* through Sentinel: one group, on the master */
    nori__redis_node *answered; /* a node whose round trip succeeded, or NULL */
    size_t first;               /* caller's index of the first key that failed; n: none */
    int first_rc;
    char first_msg[512];
};

/* Records key j's result; keeps the message of the first key (in the
 * caller's order) that failed, which nori_last_error() describes now. */
static void settle(bulk_call *c, size_t j, int rc)
{
    size_t i = c->bk.idx[j];
    if (c->results != NULL)
        c->results[i].rc = rc;
    else
        c->rcs[i] = rc;
    c->state[j] = KEY_DONE;
    if (rc < 0 && i < c->first) {
        c->first = i;
        c->first_rc = rc;
        snprintf(c->first_msg, sizeof c->first_msg, "%s", nori_last_error());
    }
}

/* The keys of one node: c->order[off .. off + k), their commands
 * c->gcmds[off ...], their replies c->replies[off ...]. */
struct bulk_group {
    nori__redis_node *node;
    size_t off, k;
    bool open; /* a connection is borrowed for it */
    bool sent; /* and its commands went out */
};

/* Every key of group g fails with rc, whose message (conn.h: it names the
 * node, the call and the group's first key) is the current one. */
static void group_failed(bulk_call *c, const bulk_group *g, int rc, bool cluster)
{
    for (size_t t = 0; t < g->k; t++)
        settle(c, c->order[g->off + t], rc);
    c->node_failed |= cluster;
}

/* A group whose round trip failed: through Sentinel, when its connection
 * was lost (`gone`: the master may have moved), its keys go alone (the
 * routed path finds the new master); otherwise they fail with rc. */
static void group_lost(bulk_call *c, const bulk_group *g, int rc, bool gone, bool cluster)
{
    if (c->sentinel && gone) {
        for (size_t t = 0; t < g->k; t++)
            c->state[c->order[g->off + t]] = KEY_ALONE;
        return;
    }
    group_failed(c, g, rc, cluster);
}

/* Reads the replies of group g (received). */
static void group_replies(bulk_call *c, const bulk_group *g, bool cluster)
{
    c->answered = g->node;
    for (size_t t = 0; t < g->k; t++) {
        size_t j = c->order[g->off + t];
        redisReply *r = c->replies[g->off + t];
        nori__topo_attempt a;
        memset(&a, 0, sizeof a);
        if ((cluster || c->sentinel) && nori__topo_redirected(c->rb->topo, &a, r)) {
            /* Not run there (a redirection, or READONLY from a master that
             * became a replica): sent again alone after the round trips. A
             * MOVED is kept for moved_keys(). */
            c->state[j] = KEY_ALONE;
            if (a.redirect.kind == NORI_REDIRECT_MOVED)
                continue;
        } else {
            settle(c, j, c->op->reply(c, j, g->node, r));
        }
        freeReplyObject(r);
        c->replies[g->off + t] = NULL;
    }
}

/* The MOVED replies kept by group_replies fix their slots in the map (and
 * refresh it, rate-limited), so that those keys' retries go straight to
 * the new owner. After the round trips, whose shared deadline a refresh
 * must not eat into. */
static void moved_keys(bulk_call *c, size_t total)
{
    for (size_t pos = 0; pos < total; pos++) {
        redisReply *r = c->replies[pos];
        if (r == NULL)
            continue;
        nori__topo_attempt a;
        memset(&a, 0, sizeof a);
        if (nori__topo_redirected(c->rb->topo, &a, r))
            nori__topo_moved(c->rb->topo, &a, c->node[c->order[pos]]);
        freeReplyObject(r);
        c->replies[pos] = NULL;
    }
}

/*
 * Whether a failed round trip lost its connection (refused, closed, reset:
 * through Sentinel, the master may be gone). Not a timeout, a reply over
 * the limits, or a WAIT that saw too few replicas (the connection is fine
 * and the writes were done: sending them again alone would repeat every
 * write and its wait, and end in the same shortfall).
 */
static bool connection_lost(const nori__redis_conn *conn)
{
    return conn->c != NULL && (conn->c->err == REDIS_ERR_EOF || conn->c->err == REDIS_ERR_IO);
}

/* Reads the replies of group g (sent) by the deadline. */
static void receive_group(bulk_call *c, bulk_group *g, nori__redis_conn *conn, int64_t deadline,
                          bool cluster)
{
    const char *first = c->keys[c->bk.idx[c->order[g->off]]];
    bool late = nori__real_ms() >= deadline;
    int rc = nori__redis_conn_recv(conn, g->k, &c->replies[g->off], deadline, c->op->pipeline,
                                   first);
    g->sent = false;
    if (rc == NORI_OK) {
        group_replies(c, g, cluster);
        return;
    }
    /* Called after the deadline (nothing had come), the timeout message
     * would count from now: say how long the node really had. */
    bool timed_out = conn->c != NULL && conn->c->err == NORI__REDIS_ERR_TIMEOUT;
    if (late && timed_out)
        rc = nori__fail(rc, "redis %s: %s '%.64s': timed out (no reply within %d ms)",
                        g->node->url->display, c->op->pipeline, first,
                        g->node->url->timeout_ms);
    group_lost(c, g, rc, connection_lost(conn), cluster);
}

/*
 * Reads the sent groups' replies in the order in which they arrive (poll),
 * so that a node that does not answer (stopped, overloaded) keeps no other
 * group from being read before the deadline. A group is read whole once
 * its first bytes are there; what is still missing at the deadline fails
 * (conn.h: timed out).
 */
static void receive(bulk_call *c, bulk_group *groups, size_t ng, nori__redis_conn *conns,
                    int64_t deadline, bool cluster)
{
    struct pollfd *pfd = malloc(ng * sizeof *pfd);
    size_t *which = malloc(ng * sizeof *which);
    for (;;) {
        size_t np = 0;
        for (size_t g = 0; g < ng; g++)
            if (groups[g].sent && pfd != NULL && which != NULL) {
                pfd[np] = (struct pollfd){.fd = conns[g].c->fd, .events = POLLIN};
                which[np++] = g;
            }
        if (np == 0)
            break;
        int ready = poll(pfd, (nfds_t)np, nori__poll_ms(deadline));
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0) {
            /* The deadline passed (or poll failed): the rest time out. */
            for (size_t p = 0; p < np; p++)
                receive_group(c, &groups[which[p]], &conns[which[p]], deadline, cluster);
            break;
        }
        for (size_t p = 0; p < np; p++)
            if (pfd[p].revents != 0)
                receive_group(c, &groups[which[p]], &conns[which[p]], deadline, cluster);
    }
    /* Out of memory for the poll set: read them in order. */
    for (size_t g = 0; g < ng; g++)
        if (groups[g].sent)
            receive_group(c, &groups[g], &conns[g], deadline, cluster);
    free(pfd);
    free(which);
}

/*
 * The round trips of the ng groups: every connection is borrowed first
 * (connect_timeout_ms each when none is idle), then every pipeline is sent
 * before any reply is read, so that the nodes work in parallel, all by one
 * deadline (timeout_ms from when the connections are ready).
 */
static void round_trips(bulk_call *c, bulk_group *groups, size_t ng, bool cluster)
{
    nori__redis_conn *conns = malloc(ng * sizeof *conns);
    if (conns == NULL) {
        int rc = nori__fail(NORI_ENOMEM, "%s: out of memory for %zu nodes", c->op->pipeline, ng);
        for (size_t g = 0; g < ng; g++)
            group_failed(c, &groups[g], rc, false);
        return;
    }
    int timeout_ms = 0;
    for (size_t g = 0; g < ng; g++) {
        bulk_group *gr = &groups[g];
        int rc = nori__redis_conn_open(gr->node, &conns[g]);
        gr->open = rc == NORI_OK;
        gr->sent = false;
        if (rc != NORI_OK)
            group_lost(c, gr, rc, true, cluster);
        else if (gr->node->url->timeout_ms > timeout_ms)
            timeout_ms = gr->node->url->timeout_ms;
    }
    int64_t deadline = nori__real_ms() + timeout_ms;
    for (size_t g = 0; g < ng; g++) {
        bulk_group *gr = &groups[g];
        if (!gr->open)
            continue;
        const char *first = c->keys[c->bk.idx[c->order[gr->off]]];
        if (c->op->values)
            nori__redis_conn_expect_values(&conns[g], gr->k);
        int rc = nori__redis_conn_send(&conns[g], gr->k, &c->gcmds[gr->off], deadline,
                                       c->op->pipeline, first);
        if (rc == NORI_OK)
            gr->sent = true;
        else /* dead now: freed by close */
            group_lost(c, gr, rc, connection_lost(&conns[g]), cluster);
    }
    receive(c, groups, ng, conns, deadline, cluster);
    for (size_t g = ng; g-- > 0;)
        if (groups[g].open)
            nori__redis_conn_close(&conns[g]);
    free(conns);
}

/*
 * The keys that go alone, one routed single-key call each. Each such call
 * may retry for NORI_TOPO_RETRY_MS (a cluster failing over answers
 * CLUSTERDOWN to every key); together they get that budget once: a key
 * whose turn comes after it is spent fails without being sent, so a call
 * of many keys on a failing cluster ends after about one single call's
 * bound, not one per key.
 */
static void alone(bulk_call *c)
{
    int64_t budget_end = nori__deadline_after(NORI_TOPO_RETRY_MS); /* the routed calls' clock */
    size_t done = 0;
    for (size_t j = 0; j < c->bk.m; j++) {
        if (c->state[j] != KEY_ALONE)
            continue;
        size_t i = c->bk.idx[j];
        if (done > 0 && nori__deadline_passed(budget_end)) {
            settle(c, j,
                   nori__fail(NORI_EBACKEND,
                              "redis %s: %s '%.64s': not sent: the %zu key%s of this call "
                              "redirected before it used up the retry budget (%d ms)",
                              c->rb->target.display, c->op->command, c->keys[i], done,
                              done == 1 ? "" : "s", NORI_TOPO_RETRY_MS));
            continue;
        }
        settle(c, j, c->op->alone(c, j));
        done++;
    }
}

/* Sends every group, then the keys that go alone. */
static void dispatch(bulk_call *c, nori__redis_node *single)
{
    size_t m = c->bk.m;
    bool cluster = single == NULL && nori__topo_mode(c->rb->topo) == NORI_TOPO_CLUSTER;
    /* Through Sentinel: the master resolved last; NULL (none yet): every
     * key alone, the routed path resolves it. */
    nori__redis_node *master = nori__topo_sentinel_master(c->rb->topo);
    c->sentinel = single == NULL && nori__topo_mode(c->rb->topo) == NORI_TOPO_SENTINEL;
    for (size_t j = 0; j < m; j++) {
        c->op->build(c, j);
        if (single != NULL)
            c->node[j] = single;
        else if (cluster)
            c->node[j] = nori__topo_slot_master(
                c->rb->topo, nori__cluster_keyslot(c->bk.key[j], c->bk.len[j]));
        else
            c->node[j] = master;
        c->state[j] = c->node[j] != NULL ? KEY_PENDING : KEY_ALONE;
    }
    /* One group per node, in the order of each node's first key. */
    size_t ng = 0, pos = 0;
    for (size_t j = 0; j < m; j++) {
        if (c->state[j] != KEY_PENDING)
            continue;
        bulk_group *g = &c->groups[ng++];
        g->node = c->node[j];
        g->off = pos;
        for (size_t t = j; t < m; t++)
            if (c->state[t] == KEY_PENDING && c->node[t] == g->node) {
                c->order[pos] = t;
                c->gcmds[pos] = c->cmds[t];
                pos++;
                c->state[t] = KEY_DONE;
            }
        g->k = pos - g->off;
    }
    for (size_t t = 0; t < pos; t++)
        c->replies[t] = NULL;
    if (ng > 0)
        round_trips(c, c->groups, ng, cluster);
    moved_keys(c, pos);
    if (c->node_failed)
        nori__topo_node_failed(c->rb->topo, c->answered);
    alone(c);
    atomic_fetch_add_explicit(&c->rb->hits, c->hits, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->rb->misses, c->misses, memory_order_relaxed);
    if (c->first < c->n)
        nori__fail(c->first_rc, "%s", c->first_msg);
}

/* The whole call, once c's inputs are set (at least one valid key). */
static void run(bulk_call *c)
{
    c->first = c->n;
    int rc = bulk_keys_build(&c->bk, c->n, c->keys, c->klens);
    size_t m = rc == NORI_OK ? c->bk.m : 0;
    if (rc == NORI_OK) {
        c->cmds = malloc(m * sizeof *c->cmds);
        c->node = malloc(m * sizeof *c->node);
        c->state = malloc(m);
        c->ttl = c->items != NULL ? malloc(m * sizeof *c->ttl) : NULL;
        c->argv = malloc(MAX_ARGS * m * sizeof *c->argv);
        c->lens = malloc(MAX_ARGS * m * sizeof *c->lens);
        c->order = malloc(m * sizeof *c->order);
        c->groups = malloc(m * sizeof *c->groups);
        c->gcmds = malloc(m * sizeof *c->gcmds);
        c->replies = malloc(m * sizeof *c->replies);
        if (c->cmds == NULL || c->node == NULL || c->state == NULL ||
            (c->items != NULL && c->ttl == NULL) || c->argv == NULL || c->lens == NULL ||
            c->order == NULL || c->groups == NULL || c->gcmds == NULL || c->replies == NULL)
            rc = nori__fail(NORI_ENOMEM, "%s: out of memory for %zu keys", c->op->pipeline, m);
    }
    nori__redis_node *single = NULL;
    if (rc == NORI_OK)
        single = nori__topo_single(c->rb->topo, &rc);
    if (rc == NORI_OK) {
        dispatch(c, single);
    } else {
        /* Out of memory, or the mode cannot be found out (no server
         * answers): every valid key gets that error. */
        for (size_t i = 0; i < c->n; i++) {
            if (c->klens[i] == 0)
                continue;
            if (c->results != NULL)
                c->results[i].rc = rc;
            else
                c->rcs[i] = rc;
        }
    }
    free(c->cmds);
    free(c->node);
    free(c->state);
    free(c->ttl);
    free(c->argv);
    free(c->lens);
    free(c->order);
    free(c->groups);
    free(c->gcmds);
    free(c->replies);
    free(c->bk.mem);
}

/* An unexpected reply fails its key, with a message naming node and key. */
static int key_failure(bulk_call *c, size_t j, const nori__redis_node *node, const redisReply *r)
{
    return nori__redis_reply_fail(node, r, c->op->command, c->keys[c->bk.idx[j]]);
}

/* ---- get_many ---- */

static void get_build(bulk_call *c, size_t j)
{
    const char **a = &c->argv[MAX_ARGS * j];
    size_t *l = &c->lens[MAX_ARGS * j];
    a[0] = "GET", l[0] = 3;
    a[1] = c->bk.key[j], l[1] = c->bk.len[j];
    c->cmds[j] = (nori__redis_cmd){2, a, l};
}

static int get_reply(bulk_call *c, size_t j, const nori__redis_node *node, redisReply *r)
{
    nori_get_result *res = &c->results[c->bk.idx[j]];
    if (r->type == REDIS_REPLY_NIL) {
        c->misses++;
        return NORI_MISS;
    }
    if (r->type != REDIS_REPLY_STRING)
        return key_failure(c, j, node, r);
    /* Take the reply's own buffer: hiredis NUL-terminates it and allocates
     * it with malloc, so it is a nori_buf already. */
    res->value.data = r->str;
    res->value.len = r->len;
    r->str = NULL;
    r->len = 0;
    c->hits++;
    return NORI_OK;
}

static int get_alone(bulk_call *c, size_t j)
{
    size_t i = c->bk.idx[j];
    nori_backend *b = &c->rb->base;
    return b->ops->get(b, c->keys[i], c->klens[i], &c->results[i].value);
}

static const bulk_op get_op = {"get_many (GET pipeline)", "get_many (GET)", true,
                               get_build, get_reply, get_alone};

void nori__redis_get_many(nori_backend *b, size_t n, const char *const *keys,
                          const size_t *klens, nori_get_result *results)
{
    bulk_call c = {.rb = (redis_backend *)b, .op = &get_op, .n = n, .keys = keys,
                   .klens = klens, .results = results};
    run(&c);
}

/* ---- set_many ---- */

static void set_build(bulk_call *c, size_t j)
{
    const nori_set_item *it = &c->items[c->bk.idx[j]];
    const char **a = &c->argv[MAX_ARGS * j];
    size_t *l = &c->lens[MAX_ARGS * j];
    int tl = snprintf(c->ttl[j], sizeof c->ttl[j], "%" PRId64, it->ttl);
    a[0] = "SET", l[0] = 3;
    a[1] = c->bk.key[j], l[1] = c->bk.len[j];
    a[2] = it->value == NULL ? "" : it->value, l[2] = it->len;
    a[3] = "EX", l[3] = 2;
    a[4] = c->ttl[j], l[4] = (size_t)tl;
    c->cmds[j] = (nori__redis_cmd){it->ttl > 0 ? 5 : 3, a, l};
}

static int set_reply(bulk_call *c, size_t j, const nori__redis_node *node, redisReply *r)
{
    return r->type == REDIS_REPLY_STATUS ? NORI_OK : key_failure(c, j, node, r);
}

static int set_alone(bulk_call *c, size_t j)
{
    size_t i = c->bk.idx[j];
    const nori_set_item *it = &c->items[i];
    nori_backend *b = &c->rb->base;
    return b->ops->set(b, it->key, c->klens[i], it->value == NULL ? "" : it->value, it->len,
                       it->ttl);
}

static const bulk_op set_op = {"set_many (SET pipeline)", "set_many (SET)", false,
                               set_build, set_reply, set_alone};

void nori__redis_set_many(nori_backend *b, size_t n, const nori_set_item *items,
                          const size_t *klens, int *results)
{
    const char **keys = malloc((n > 0 ? n : 1) * sizeof *keys);
    if (keys == NULL) {
        int rc = nori__fail(NORI_ENOMEM, "set_many: out of memory for %zu items", n);
        for (size_t i = 0; i < n; i++)
            if (klens[i] != 0)
                results[i] = rc;
        return;
    }
    for (size_t i = 0; i < n; i++)
        keys[i] = items[i].key;
    bulk_call c = {.rb = (redis_backend *)b, .op = &set_op, .n = n, .keys = keys,
                   .klens = klens, .items = items, .rcs = results};
    run(&c);
    free(keys);
}

/* ---- delete_many ---- */

static void del_build(bulk_call *c, size_t j)
{
    const char **a = &c->argv[MAX_ARGS * j];
    size_t *l = &c->lens[MAX_ARGS * j];
    /* UNLINK frees large values in the background, as delete does. */
    a[0] = "UNLINK", l[0] = 6;
    a[1] = c->bk.key[j], l[1] = c->bk.len[j];
    c->cmds[j] = (nori__redis_cmd){2, a, l};
}

static int del_reply(bulk_call *c, size_t j, const nori__redis_node *node, redisReply *r)
{
    /* The count (0 or 1) says nothing to the caller: a missing key is not an error. */
    return r->type == REDIS_REPLY_INTEGER ? NORI_OK : key_failure(c, j, node, r);
}

static int del_alone(bulk_call *c, size_t j)
{
    size_t i = c->bk.idx[j];
    nori_backend *b = &c->rb->base;
    return b->ops->del(b, c->keys[i], c->klens[i]);
}

static const bulk_op del_op = {"delete_many (UNLINK pipeline)", "delete_many (UNLINK)", false,
                               del_build, del_reply, del_alone};

void nori__redis_delete_many(nori_backend *b, size_t n, const char *const *keys,
                             const size_t *klens, int *results)
{
    bulk_call c = {.rb = (redis_backend *)b, .op = &del_op, .n = n, .keys = keys,
                   .klens = klens, .rcs = results};
    run(&c);
}
