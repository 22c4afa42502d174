// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis_topology.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The password of the sentinel set-up's master and replica: the sentinel
 * URL then carries one, as a production set-up's would. */
#define SENTINEL_PASSWORD "topology-pw"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

nori_test_topology_kind nori_test_topology_kind_from_env(void)
{
    const char *v = getenv("NORI_TEST_TOPOLOGY");
    if (v == NULL || v[0] == '\0' || strcmp(v, "server") == 0)
        return NORI_TEST_TOPOLOGY_SERVER;
    if (strcmp(v, "cluster") == 0)
        return NORI_TEST_TOPOLOGY_CLUSTER;
    if (strcmp(v, "sentinel") == 0)
        return NORI_TEST_TOPOLOGY_SENTINEL;
    fail_msg("NORI_TEST_TOPOLOGY='%s': expected server, cluster or sentinel", v);
    return NORI_TEST_TOPOLOGY_SERVER; /* not reached */
}

nori_test_topology *nori_test_topology_start(void)
{
    nori_test_topology *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->kind = nori_test_topology_kind_from_env();
    switch (t->kind) {
    case NORI_TEST_TOPOLOGY_SERVER:
        t->name = "server";
        t->server = nori_test_redis_start(NULL);
        snprintf(t->url, sizeof t->url, "%s", t->server->url);
        break;
    case NORI_TEST_TOPOLOGY_CLUSTER:
        t->name = "cluster";
        t->cluster = nori_test_cluster_start();
        snprintf(t->url, sizeof t->url, "%s", t->cluster->url);
        break;
    case NORI_TEST_TOPOLOGY_SENTINEL:
        t->name = "sentinel";
        t->sentinel = nori_test_sentinel_start(SENTINEL_PASSWORD);
        snprintf(t->url, sizeof t->url, "%s", t->sentinel->url);
        break;
    }
    return t;
}

void nori_test_topology_stop(nori_test_topology *t)
{
    if (t == NULL)
        return;
    nori_test_redis_stop(t->server);
    nori_test_cluster_stop(t->cluster);
    nori_test_sentinel_stop(t->sentinel);
    free(t);
}

/* The slot of key, asked of the first live cluster node (CLUSTER KEYSLOT:
 * the server's own hash, not a copy of the library's). */
static int cluster_keyslot(const nori_test_cluster *c, const char *key)
{
    for (int i = 0; i < NORI_TEST_CLUSTER_NODES; i++) {
        redisContext *ctx = nori_test_node_connect(&c->node[i]);
        if (ctx == NULL)
            continue;
        redisReply *r = redisCommand(ctx, "CLUSTER KEYSLOT %s", key);
        int slot = r != NULL && r->type == REDIS_REPLY_INTEGER ? (int)r->integer : -1;
        if (r != NULL)
            freeReplyObject(r);
        redisFree(ctx);
        if (slot >= 0)
            return slot;
    }
    return -1;
}

void *nori_test_topology_connect(const nori_test_topology *t, const char *key)
{
    redisContext *c = NULL;
    switch (t->kind) {
    case NORI_TEST_TOPOLOGY_SERVER:
        c = nori_test_redis_connect(t->server);
        break;
    case NORI_TEST_TOPOLOGY_CLUSTER: {
        int slot = key != NULL ? cluster_keyslot(t->cluster, key) : 0;
        if (slot < 0)
            fail_msg("no cluster node answered CLUSTER KEYSLOT %s", key);
        int owner = nori_test_cluster_slot_master(t->cluster, (unsigned)slot);
        if (owner < 0)
            fail_msg("no cluster node names the master of slot %d (key %s)", slot,
                     key != NULL ? key : "(any)");
        c = nori_test_node_connect(&t->cluster->node[owner]);
        break;
    }
    case NORI_TEST_TOPOLOGY_SENTINEL: {
        int port = nori_test_sentinel_master_port(t->sentinel);
        if (port <= 0)
            fail_msg("no sentinel names the master of mymaster");
        c = (redisContext *)nori_test_connect_port(port, t->sentinel->password);
        break;
    }
    }
    if (c == NULL)
        fail_msg("%s: cannot connect to the node for key %s", t->name, key != NULL ? key : "(any)");
    return c;
}

int nori_test_topology_masters(const nori_test_topology *t, void *out[], int max)
{
    if (t->kind != NORI_TEST_TOPOLOGY_CLUSTER) {
        assert_true(max >= 1);
        out[0] = nori_test_topology_connect(t, NULL);
        return 1;
    }
    int n = 0;
    for (int i = 0; i < NORI_TEST_CLUSTER_NODES; i++) {
        if (!nori_test_node_is_master(&t->cluster->node[i]))
            continue;
        assert_true(n < max);
        out[n] = nori_test_node_connect(&t->cluster->node[i]);
        if (out[n] == NULL)
            fail_msg("cluster master on port %d is unreachable", t->cluster->node[i].port);
        n++;
    }
    if (n != 3)
        fail_msg("the cluster has %d masters, expected 3", n);
    return n;
}

void nori_test_topology_kill(nori_test_topology *t)
{
    switch (t->kind) {
    case NORI_TEST_TOPOLOGY_SERVER:
        nori_test_redis_kill(t->server);
        break;
    case NORI_TEST_TOPOLOGY_CLUSTER:
        /* SIGKILL: a SIGTERMed cluster node takes about 200 ms to stop, and
         * its nodes.conf is already on disk (written at every change). */
        for (int i = 0; i < NORI_TEST_CLUSTER_NODES; i++)
            nori_test_node_kill(&t->cluster->node[i], SIGKILL);
        break;
    case NORI_TEST_TOPOLOGY_SENTINEL:
        if (nori_test_sentinel_master_port(t->sentinel) != t->sentinel->master.port)
            fail_msg("the sentinels name another master than the first: a failover happened, "
                     "restart would not bring the roles back");
        /* The replica first: a replica that is down cannot be promoted. */
        nori_test_node_kill(&t->sentinel->replica, SIGTERM);
        nori_test_node_kill(&t->sentinel->master, SIGTERM);
        break;
    }
}

/* True when every live sentinel sees mymaster up (flags exactly "master":
 * no s_down, o_down or failover in progress). */
static bool sentinels_see_master_up(const nori_test_sentinel *s)
{
    for (int i = 0; i < 3; i++) {
        redisContext *c = nori_test_node_connect(&s->sentinel[i]);
        if (c == NULL)
            continue;
        redisReply *r = redisCommand(c, "SENTINEL MASTER mymaster");
        bool up = false;
        for (size_t k = 0; r != NULL && r->type == REDIS_REPLY_ARRAY && k + 1 < r->elements;
             k += 2)
            if (r->element[k]->str != NULL && strcmp(r->element[k]->str, "flags") == 0)
                up = r->element[k + 1]->str != NULL &&
                     strcmp(r->element[k + 1]->str, "master") == 0;
        if (r != NULL)
            freeReplyObject(r);
        redisFree(c);
        if (!up)
            return false;
    }
    return true;
}

void nori_test_topology_restart(nori_test_topology *t)
{
    long long deadline = nori_test_now_ms() + 20000;
    switch (t->kind) {
    case NORI_TEST_TOPOLOGY_SERVER:
        nori_test_redis_restart(t->server);
        break;
    case NORI_TEST_TOPOLOGY_CLUSTER:
        for (int i = 0; i < NORI_TEST_CLUSTER_NODES; i++)
            if (!nori_test_node_restart(&t->cluster->node[i], true, NULL, 0))
                fail_msg("cluster node on port %d did not come back", t->cluster->node[i].port);
        if (!nori_test_cluster_wait_ok(t->cluster, 20000))
            fail_msg("the restarted cluster did not reach cluster_state:ok within 20 s");
        break;
    case NORI_TEST_TOPOLOGY_SENTINEL: {
        nori_test_sentinel *s = t->sentinel;
        if (!nori_test_node_restart(&s->master, false, s->password, 0))
            fail_msg("the sentinel set-up's master did not come back");
        /* The replica only once every sentinel sees the master up again, so
         * that no failover still under way can promote it. */
        while (!sentinels_see_master_up(s)) {
            if (nori_test_now_ms() > deadline)
                fail_msg("the sentinels did not see the restarted master up within 20 s");
            sleep_ms(50);
        }
        if (!nori_test_node_restart(&s->replica, false, s->password, s->master.port))
            fail_msg("the sentinel set-up's replica did not come back");
        break;
    }
    }
}
