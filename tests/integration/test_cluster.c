/*
 * Against a real Redis Cluster (3 masters + 3 replicas, started by the
 * test): our key slots agree with CLUSTER KEYSLOT, and the slot map parsed
 * from CLUSTER SLOTS names every master and covers every slot.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis/cluster_slots.h"
#include "redis_cluster.h"
#include "test_support.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static nori_test_cluster *cluster;

static int group_setup(void **state)
{
    (void)state;
    cluster = nori_test_cluster_start();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    nori_test_cluster_stop(cluster);
    cluster = NULL;
    return 0;
}

/* Many keys, with and without hash tags, as the backend puts them on the
 * wire ("cache:" + key): our slot equals the server's for each. */
static void test_keyslot_agrees_with_server(void **state)
{
    (void)state;
    redisContext *c = nori_test_node_connect(&cluster->node[0]);
    assert_non_null(c);
    static const char *const shapes[] = {"cache:k%d",     "cache:{user%d}.profile",
                                         "cache:a{%d}b}", "cache:{}%d",
                                         "cache:{{%d}}",  "cache:x{%d",
                                         "cache:%d}{y}",  "cache:view:/p?page=%d"};
    int n = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        for (int i = 0; i < 250; i++) {
            char key[64];
            snprintf(key, sizeof key, shapes[s], i);
            redisAppendCommand(c, "CLUSTER KEYSLOT %s", key);
        }
        for (int i = 0; i < 250; i++) {
            char key[64];
            snprintf(key, sizeof key, shapes[s], i);
            void *reply;
            assert_int_equal(redisGetReply(c, &reply), REDIS_OK);
            redisReply *r = reply;
            assert_int_equal(r->type, REDIS_REPLY_INTEGER);
            if ((unsigned)r->integer != nori__cluster_keyslot(key, strlen(key)))
                fail_msg("key '%s': server slot %lld, ours %u", key, r->integer,
                         nori__cluster_keyslot(key, strlen(key)));
            freeReplyObject(r);
            n++;
        }
    }
    assert_int_equal(n, 2000);
    redisFree(c);
}

static void test_slot_map_from_server(void **state)
{
    (void)state;
    redisContext *c = nori_test_node_connect(&cluster->node[0]);
    assert_non_null(c);
    redisReply *r = redisCommand(c, "CLUSTER SLOTS");
    nori__slot_map m;
    assert_nori(nori__slot_map_parse(r, "127.0.0.1", "node0", &m), NORI_OK);
    assert_int_equal(m.served, NORI_CLUSTER_SLOTS);
    assert_int_equal(m.nnodes, NORI_TEST_CLUSTER_NODES);
    int masters = 0;
    for (size_t i = 0; i < m.nnodes; i++) {
        masters += m.nodes[i].is_master;
        int port = m.nodes[i].port;
        bool ours = false;
        for (int j = 0; j < NORI_TEST_CLUSTER_NODES; j++)
            ours |= cluster->node[j].port == port;
        assert_true(ours);
        assert_int_equal(strlen(m.nodes[i].id), 40);
    }
    assert_int_equal(masters, 3);
    /* The owner of a slot is the node the server names for it. */
    for (unsigned slot = 0; slot < NORI_CLUSTER_SLOTS; slot += 997) {
        int want = nori_test_cluster_slot_master(cluster, slot);
        assert_true(want >= 0);
        assert_int_equal(m.nodes[m.owner[slot]].port, cluster->node[want].port);
    }
    nori__slot_map_free(&m);
    freeReplyObject(r);
    /* INFO says cluster mode. */
    r = redisCommand(c, "INFO cluster");
    assert_true(nori__info_cluster_enabled(r->str, r->len));
    freeReplyObject(r);
    redisFree(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keyslot_agrees_with_server),
        cmocka_unit_test(test_slot_map_from_server),
    };
    return cmocka_run_group_tests_name("cluster", tests, group_setup, group_teardown);
}
