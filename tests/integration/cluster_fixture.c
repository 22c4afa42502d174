// SPDX-License-Identifier: MIT
/*
 * Fixtures of the cluster suites; see cluster_fixture.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cluster_fixture.h"

#include "redis/route/cluster_slots.h"
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

nori_test_cluster *cluster;
nori_backend *backend;

int cluster_group_setup(void **state)
{
    (void)state;
    cluster = nori_test_cluster_start();
    assert_nori(nori_redis_backend_new(cluster->url, &backend), NORI_OK);
    return 0;
}

int cluster_group_teardown(void **state)
{
    (void)state;
    nori_backend_free(backend);
    backend = NULL;
    nori_test_cluster_stop(cluster);
    cluster = NULL;
    return 0;
}

redisContext *cluster_node_conn(int i)
{
    redisContext *c = nori_test_node_connect(&cluster->node[i]);
    if (c == NULL)
        fail_msg("cannot connect to node %d (port %d)", i, cluster->node[i].port);
    return c;
}

long cluster_count_keys(int i, const char *pattern)
{
    redisContext *c = cluster_node_conn(i);
    long n = 0;
    char cursor[32] = "0";
    do {
        redisReply *r = redisCommand(c, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        n += (long)r->element[1]->elements;
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    redisFree(c);
    return n;
}

long long cluster_info_field(int i, const char *section, const char *field)
{
    redisContext *c = cluster_node_conn(i);
    redisReply *r = redisCommand(c, "INFO %s", section);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    const char *p = strstr(r->str, field);
    long long v = p != NULL ? strtoll(p + strlen(field), NULL, 10) : 0;
    freeReplyObject(r);
    redisFree(c);
    return v;
}

int cluster_masters(int *out)
{
    int n = 0;
    for (int i = 0; i < NORI_TEST_CLUSTER_NODES; i++)
        if (cluster->node[i].pid != 0 && nori_test_node_is_master(&cluster->node[i]))
            out[n++] = i;
    assert_int_equal(n, 3);
    return n;
}

void cluster_slot_owners(int *owner)
{
    for (int s = 0; s < NORI_CLUSTER_SLOTS; s++)
        owner[s] = -1;
    redisContext *c = cluster_node_conn(0);
    redisReply *r = redisCommand(c, "CLUSTER SLOTS");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    for (size_t k = 0; k < r->elements; k++) {
        const redisReply *range = r->element[k];
        int port = (int)range->element[2]->element[1]->integer;
        int idx = -1;
        for (int i = 0; i < NORI_TEST_CLUSTER_NODES; i++)
            if (cluster->node[i].port == port)
                idx = i;
        assert_true(idx >= 0);
        for (long long s = range->element[0]->integer; s <= range->element[1]->integer; s++)
            owner[s] = idx;
    }
    freeReplyObject(r);
    redisFree(c);
    for (int s = 0; s < NORI_CLUSTER_SLOTS; s++)
        assert_true(owner[s] >= 0);
}

unsigned cluster_wire_slot(const char *key)
{
    char wire[300];
    snprintf(wire, sizeof wire, "cache:%.200s", key);
    return nori__cluster_keyslot(wire, strlen(wire));
}

int cluster_key_owner(const int *owner, const char *key)
{
    return owner[cluster_wire_slot(key)];
}

nori_fake_redis *fake_cluster_node(int first, int last)
{
    nori_fake_redis *f = nori_fake_redis_start();
    int port = nori_fake_redis_port(f);
    char slots[256];
    snprintf(slots, sizeof slots,
             "*1\r\n*3\r\n:%d\r\n:%d\r\n*3\r\n$9\r\n127.0.0.1\r\n:%d\r\n$40\r\n"
             "%040d\r\n",
             first, last, port, port);
    nori_fake_redis_default(f, "INFO", FAKE_CLUSTER_INFO);
    nori_fake_redis_default(f, "CLUSTER SLOTS", slots);
    nori_fake_redis_default(f, "ASKING", "+OK\r\n");
    return f;
}

nori_backend *fake_cluster_backend(const nori_fake_redis *f, const char *opts)
{
    char url[200];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d%s", nori_fake_redis_port(f), opts);
    nori_backend *b;
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    return b;
}
