// SPDX-License-Identifier: MIT
/*
 * Key slots (CRC16-XMODEM, hash tags) and CLUSTER SLOTS parsing, without a
 * server. Agreement with a real cluster's CLUSTER KEYSLOT is checked in
 * tests/integration/test_cluster.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis/route/cluster_slots.h"
#include "test_support.h"

#include <stdlib.h>
#include <string.h>

static void test_crc16_vectors(void **state)
{
    (void)state;
    assert_int_equal(nori__crc16("123456789", 9), 0x31C3);
    assert_int_equal(nori__crc16("", 0), 0);
    /* Values from the cluster specification and redis-cli. */
    assert_int_equal(nori__cluster_keyslot("foo", 3), 12182);
    assert_int_equal(nori__cluster_keyslot("bar", 3), 5061);
    assert_int_equal(nori__cluster_keyslot("somekey", 7), 11058);
}

static unsigned slot(const char *k)
{
    return nori__cluster_keyslot(k, strlen(k));
}

static void test_hash_tags(void **state)
{
    (void)state;
    /* The spec's examples. */
    assert_int_equal(slot("{user1000}.following"), slot("user1000"));
    assert_int_equal(slot("{user1000}.followers"), slot("user1000"));
    assert_int_equal(slot("foo{}{bar}"), nori__crc16("foo{}{bar}", 10) & 16383);
    assert_int_equal(slot("foo{{bar}}zap"), slot("{bar"));
    assert_int_equal(slot("foo{bar}{zap}"), slot("bar"));
    /* A '{' without a later '}' hashes the whole key. */
    assert_int_equal(slot("foo{bar"), nori__crc16("foo{bar", 7) & 16383);
    assert_int_equal(slot("}foo{"), nori__crc16("}foo{", 5) & 16383);
    /* The wire key: "cache:" + key, tags inside the key still group. */
    assert_int_equal(slot("cache:{t}a"), slot("cache:{t}b"));
    assert_int_equal(slot("cache:{t}a"), slot("t"));
    /* Binary keys with NUL bytes: len, not strlen, counts. */
    assert_int_equal(nori__cluster_keyslot("a\0{b}", 5), slot("b"));
}

/* ---- hand-built replies (freed by freeReplyObject) ---- */

static redisReply *reply_int(long long v)
{
    redisReply *r = calloc(1, sizeof *r);
    r->type = REDIS_REPLY_INTEGER;
    r->integer = v;
    return r;
}

static redisReply *reply_str(const char *s)
{
    redisReply *r = calloc(1, sizeof *r);
    r->type = REDIS_REPLY_STRING;
    r->str = strdup(s);
    r->len = strlen(s);
    return r;
}

static redisReply *reply_arr(size_t n, ...)
{
    redisReply *r = calloc(1, sizeof *r);
    r->type = REDIS_REPLY_ARRAY;
    r->elements = n;
    r->element = calloc(n ? n : 1, sizeof *r->element);
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        r->element[i] = va_arg(ap, redisReply *);
    va_end(ap);
    return r;
}

static redisReply *node(const char *ip, long long port, const char *id)
{
    return reply_arr(3, reply_str(ip), reply_int(port), reply_str(id));
}

static void test_parse_good_map(void **state)
{
    (void)state;
    redisReply *r = reply_arr(3,
                         reply_arr(4, reply_int(0), reply_int(5460), node("127.0.0.1", 7000, "a"),
                              node("127.0.0.1", 7003, "d")),
                         reply_arr(4, reply_int(5461), reply_int(10922), node("127.0.0.1", 7001, "b"),
                              node("127.0.0.1", 7004, "e")),
                         reply_arr(3, reply_int(10923), reply_int(16383), node("", 7002, "c")));
    nori__slot_map m;
    assert_nori(nori__slot_map_parse(r, "10.0.0.9", "seed", &m), NORI_OK);
    assert_int_equal(m.nranges, 3);
    assert_int_equal(m.nnodes, 5);
    assert_int_equal(m.served, 16384);
    int a = nori__slot_map_find(&m, "127.0.0.1", 7000);
    int d = nori__slot_map_find(&m, "127.0.0.1", 7003);
    int c = nori__slot_map_find(&m, "10.0.0.9", 7002); /* empty endpoint = the seed's host */
    assert_true(a >= 0 && d >= 0 && c >= 0);
    assert_true(m.nodes[a].is_master);
    assert_false(m.nodes[d].is_master);
    assert_int_equal(m.nodes[d].master, a);
    assert_int_equal(m.owner[0], a);
    assert_int_equal(m.owner[5460], a);
    assert_int_equal(m.owner[16383], c);
    assert_string_equal(m.nodes[a].id, "a");
    nori__slot_map_free(&m);
    freeReplyObject(r);

    /* A partial map is valid: unserved slots are marked. */
    r = reply_arr(1, reply_arr(3, reply_int(100), reply_int(200), node("h", 1, "x")));
    assert_nori(nori__slot_map_parse(r, "s", "seed", &m), NORI_OK);
    assert_int_equal(m.served, 101);
    assert_int_equal(m.owner[99], NORI_SLOT_UNSERVED);
    assert_int_equal(m.owner[201], NORI_SLOT_UNSERVED);
    nori__slot_map_free(&m);
    freeReplyObject(r);
}

/* Each lying reply is an error naming the problem, never a crash. */
static void expect_bad(redisReply *r, const char *needle)
{
    nori__slot_map m = {0};
    assert_nori(nori__slot_map_parse(r, "seed-host", "seed:1", &m), NORI_EBACKEND);
    if (strstr(nori_last_error(), needle) == NULL)
        fail_msg("error '%s' does not mention '%s'", nori_last_error(), needle);
    assert_null(m.nodes);
    assert_null(m.owner);
    freeReplyObject(r);
}

static void test_parse_lying_server(void **state)
{
    (void)state;
    expect_bad(reply_str("nope"), "not an array");
    expect_bad(reply_arr(0), "empty");
    expect_bad(reply_arr(1, reply_int(3)), "not an array of [start");
    expect_bad(reply_arr(1, reply_arr(2, reply_int(0), reply_int(5))), "not an array of [start");
    expect_bad(reply_arr(1, reply_arr(3, reply_int(10), reply_int(5), node("h", 1, "x"))), "inverted");
    expect_bad(reply_arr(1, reply_arr(3, reply_int(-1), reply_int(5), node("h", 1, "x"))), "outside");
    expect_bad(reply_arr(1, reply_arr(3, reply_int(0), reply_int(16384), node("h", 1, "x"))), "outside");
    expect_bad(reply_arr(1, reply_arr(3, reply_str("0"), reply_int(5), node("h", 1, "x"))), "two integers");
    expect_bad(reply_arr(1, reply_arr(3, reply_int(0), reply_int(5), reply_arr(1, reply_str("h")))), "at least");
    expect_bad(reply_arr(1, reply_arr(3, reply_int(0), reply_int(5), reply_arr(2, reply_int(1), reply_int(1)))), "wrong type");
    expect_bad(reply_arr(1, reply_arr(3, reply_int(0), reply_int(5), node("h", 0, "x"))), "port");
    expect_bad(reply_arr(1, reply_arr(3, reply_int(0), reply_int(5), node("h", 70000, "x"))), "port");
    expect_bad(reply_arr(1, reply_arr(3, reply_int(0), reply_int(5), node("?", 7000, "x"))), "unknown");
    expect_bad(reply_arr(2, reply_arr(3, reply_int(0), reply_int(10), node("h", 1, "x")),
                    reply_arr(3, reply_int(10), reply_int(20), node("h", 2, "y"))),
               "overlaps");
    /* The same node as master of one range and replica in another. */
    expect_bad(reply_arr(2, reply_arr(3, reply_int(0), reply_int(10), node("h", 1, "x")),
                    reply_arr(4, reply_int(11), reply_int(20), node("h", 2, "y"), node("h", 1, "x"))),
               "both");
    redisReply *err = calloc(1, sizeof *err);
    err->type = REDIS_REPLY_ERROR;
    err->str = strdup("ERR This instance has cluster support disabled");
    err->len = strlen(err->str);
    expect_bad(err, "cluster support disabled");
    nori__slot_map m;
    assert_nori(nori__slot_map_parse(NULL, "h", "seed", &m), NORI_EBACKEND);
}

static void test_info_cluster_enabled(void **state)
{
    (void)state;
    const char *on = "# Cluster\r\ncluster_enabled:1\r\n";
    const char *off = "# Cluster\r\ncluster_enabled:0\r\n";
    const char *fake = "x_cluster_enabled:1\r\ncluster_enabled:10\r\n";
    assert_true(nori__info_cluster_enabled(on, strlen(on)));
    assert_false(nori__info_cluster_enabled(off, strlen(off)));
    assert_false(nori__info_cluster_enabled(fake, strlen(fake)));
    assert_true(nori__info_cluster_enabled("cluster_enabled:1", 17));
}

static nori__redirect_kind redirect(const char *err, nori__redirect *r)
{
    return nori__redirect_parse(err, strlen(err), r);
}

static void test_redirect_parse(void **state)
{
    (void)state;
    nori__redirect r;
    assert_int_equal(redirect("MOVED 3999 127.0.0.1:6381", &r), NORI_REDIRECT_MOVED);
    assert_int_equal(r.slot, 3999);
    assert_string_equal(r.host, "127.0.0.1");
    assert_int_equal(r.port, 6381);
    assert_int_equal(redirect("ASK 0 [::1]:7000", &r), NORI_REDIRECT_ASK);
    assert_string_equal(r.host, "::1");
    assert_int_equal(r.slot, 0);
    assert_int_equal(redirect("ASK 16383 fe80::1:7000", &r), NORI_REDIRECT_ASK);
    assert_string_equal(r.host, "fe80::1");
    assert_int_equal(r.port, 7000);
    /* An empty host: the node that answered (Redis 7 with an unknown endpoint). */
    assert_int_equal(redirect("MOVED 5 :7001", &r), NORI_REDIRECT_MOVED);
    assert_string_equal(r.host, "");
    assert_int_equal(redirect("TRYAGAIN Multiple keys request during rehashing of slot", &r),
                     NORI_REDIRECT_TRYAGAIN);
    assert_int_equal(redirect("CLUSTERDOWN The cluster is down", &r), NORI_REDIRECT_CLUSTERDOWN);
    assert_int_equal(redirect("CLUSTERDOWN Hash slot not served", &r), NORI_REDIRECT_CLUSTERDOWN);
    /* Lies and near-misses are not redirections. */
    static const char *const bad[] = {
        "MOVED 16384 h:1", "MOVED -1 h:1", "MOVED 1 h", "MOVED 1 h:0", "MOVED 1 h:65536",
        "MOVED 1 h:12x", "MOVED x h:1", "MOVED", "MOVED  1 h:1", "ASK 1", "MOVEDX 1 h:1",
        "TRYAGAINX", "ERR wrong", "READONLY You can't write against a read only replica.",
        "MOVED 1 h:99999999999999999999",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (redirect(bad[i], &r) != NORI_REDIRECT_NONE)
            fail_msg("'%s' was taken as a redirection", bad[i]);
    /* An over-long host is refused, not truncated. */
    char big[400] = "MOVED 1 ";
    memset(big + 8, 'h', 300);
    strcpy(big + 308, ":1");
    assert_int_equal(redirect(big, &r), NORI_REDIRECT_NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc16_vectors),
        cmocka_unit_test(test_hash_tags),
        cmocka_unit_test(test_parse_good_map),
        cmocka_unit_test(test_parse_lying_server),
        cmocka_unit_test(test_info_cluster_enabled),
        cmocka_unit_test(test_redirect_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
