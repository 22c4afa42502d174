// SPDX-License-Identifier: MIT
/*
 * REDIS_URL topology forms (DESIGN 9): redis:// with ?addr= seeds, and
 * redis+sentinel://. Passwords never appear in a message or display string.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis/route/url_topology.h"
#include "test_support.h"

#include <string.h>

static void test_plain_urls_unchanged(void **state)
{
    (void)state;
    nori__redis_target t;
    assert_nori(nori__redis_target_parse("redis://:pw@h:7000/2?timeout_ms=5", &t), NORI_OK);
    assert_false(t.sentinel);
    assert_int_equal(t.naddrs, 0);
    assert_string_equal(t.node.host, "h");
    assert_int_equal(t.node.port, 7000);
    assert_int_equal(t.node.db, 2);
    assert_int_equal(t.node.timeout_ms, 5);
    assert_string_equal(t.node.password, "pw");
    assert_string_equal(t.display, "redis://:***@h:7000/2?timeout_ms=5");
    nori__redis_target_free(&t);
    /* The form Lettuce accepts: the whole userinfo is the password (found by
     * fuzz_redis_topology: it was displayed in clear). */
    assert_nori(nori__redis_target_parse("redis://Sup3rS3cret@h:7000?addr=h2:7001", &t), NORI_OK);
    assert_string_equal(t.node.password, "Sup3rS3cret");
    assert_string_equal(t.display, "redis://***@h:7000?addr=h2:7001");
    nori__redis_target_free(&t);
    assert_nori(nori__redis_target_parse("redis+sentinel://Sup3rS3cret@s1:1,s2:2/m", &t), NORI_OK);
    assert_null(strstr(t.display, "Sup3rS3cret"));
    nori__redis_target_free(&t);
    assert_nori(nori__redis_target_parse("unix:///tmp/r.sock?db=3", &t), NORI_OK);
    assert_true(t.node.is_unix);
    assert_int_equal(t.node.db, 3);
    nori__redis_target_free(&t);
}

static void test_cluster_seeds(void **state)
{
    (void)state;
    nori__redis_target t;
    assert_nori(nori__redis_target_parse(
                    "redis://u:secret@a:7000?addr=b:7001&timeout_ms=50&addr=[::1]:7002", &t),
                NORI_OK);
    assert_string_equal(t.node.host, "a");
    assert_int_equal(t.node.port, 7000);
    assert_int_equal(t.node.timeout_ms, 50);
    assert_string_equal(t.node.user, "u");
    assert_int_equal(t.naddrs, 2);
    assert_string_equal(t.addrs[0].host, "b");
    assert_int_equal(t.addrs[0].port, 7001);
    assert_string_equal(t.addrs[1].host, "::1");
    assert_int_equal(t.addrs[1].port, 7002);
    assert_null(strstr(t.display, "secret"));
    nori__redis_target_free(&t);
}

/* Bad input: EINVAL naming the problem, never the password. */
static void expect_bad(const char *url, const char *needle)
{
    nori__redis_target t = {0};
    assert_nori(nori__redis_target_parse(url, &t), NORI_EINVAL);
    const char *e = nori_last_error();
    if (strstr(e, "hunter2") != NULL)
        fail_msg("'%s': error '%s' shows the password", url, e);
    if (strstr(e, needle) == NULL)
        fail_msg("'%s': error '%s' does not mention '%s'", url, e, needle);
    assert_null(t.display);
}

static void test_bad_seeds(void **state)
{
    (void)state;
    expect_bad("redis://:hunter2@a:1?addr=b", "addr=");
    expect_bad("redis://:hunter2@a:1?addr=b:0", "addr=");
    expect_bad("redis://:hunter2@a:1?addr=:5", "addr=");
    expect_bad("redis://:hunter2@a:1?addr=b:5&bogus=1", "unknown query option");
    expect_bad("redis://:hunter2@a:99999?addr=b:5", "port");
    expect_bad("unix:///x?addr=b:1", "unknown query option");
}

static void test_sentinel(void **state)
{
    (void)state;
    nori__redis_target t;
    assert_nori(nori__redis_target_parse("redis+sentinel://:hunter2@s1:26379,s2:26380,s3/mymaster/4"
                                         "?sentinel_password=sp%21&timeout_ms=200",
                                         &t),
                NORI_OK);
    assert_true(t.sentinel);
    assert_string_equal(t.master_name, "mymaster");
    assert_int_equal(t.naddrs, 3);
    assert_string_equal(t.addrs[1].host, "s2");
    assert_int_equal(t.addrs[1].port, 26380);
    assert_int_equal(t.addrs[2].port, 26379); /* the sentinel default */
    assert_int_equal(t.node.db, 4);
    assert_int_equal(t.node.timeout_ms, 200);
    assert_string_equal(t.node.password, "hunter2");
    assert_null(t.node.user);
    assert_string_equal(t.sentinel_password, "sp!");
    assert_null(strstr(t.display, "hunter2"));
    assert_null(strstr(t.display, "sp%21"));
    assert_string_equal(t.display, "redis+sentinel://:***@s1:26379,s2:26380,s3/mymaster/4"
                                   "?sentinel_password=***&timeout_ms=200");
    nori__redis_target_free(&t);

    assert_nori(nori__redis_target_parse("redis+sentinel://[::1]:5000/m", &t), NORI_OK);
    assert_int_equal(t.naddrs, 1);
    assert_string_equal(t.addrs[0].host, "::1");
    assert_null(t.node.password);
    assert_int_equal(t.node.db, 0);
    nori__redis_target_free(&t);
}

static void test_bad_sentinel(void **state)
{
    (void)state;
    expect_bad("redis+sentinel://:hunter2@s1:26379", "no master name");
    expect_bad("redis+sentinel://:hunter2@s1:26379/", "no master name");
    expect_bad("redis+sentinel://:hunter2@/m", "no sentinel");
    expect_bad("redis+sentinel://:hunter2@s1:x/m", "sentinel is not host");
    expect_bad("redis+sentinel://:hunter2@s1,/m", "sentinel");
    expect_bad("redis+sentinel://:hunter2@s1/m a", "space");
    expect_bad("redis+sentinel://:hunter2@s1/m!x", "master name");
    expect_bad("redis+sentinel://:hunter2@s1/m/x", "database");
    expect_bad("redis+sentinel://:hunter2@s1/m?addr=h:1", "addr=");
    expect_bad("redis+sentinel://:hunter2@s1/m?sentinel_password=", "sentinel_password");
    expect_bad("redis+sentinel://:hunter2@s1/m?sentinel_password=hunter2&x=1", "unknown");
    expect_bad("redis+sentinel://:@s1/m", "password is empty");
}

static void test_mask(void **state)
{
    (void)state;
    char buf[256];
    nori__redis_url_mask("unix:///s?db=1&password=hunter2&user=u", buf, sizeof buf);
    assert_string_equal(buf, "unix:///s?db=1&password=***&user=u");
    nori__redis_url_mask("redis://u:hunter2@h", buf, sizeof buf);
    assert_string_equal(buf, "redis://u:***@h");
    nori__redis_url_mask("redis://u:hunter2@h", buf, 10);
    assert_null(strstr(buf, "hunter2"));
    nori__redis_url_mask("redis+sentinel://u:hunter2@s1,s2/m?Sentinel_PassWord=hunter2&x=1",
                         buf, sizeof buf);
    assert_string_equal(buf, "redis+sentinel://u:***@s1,s2/m?Sentinel_PassWord=***&x=1");
}

/*
 * Option names in another case than the documented one are refused (the
 * parser matches names exactly), naming the option and its spelling, and
 * their value never shows: one masker for every message, whose spans match
 * the names in any case. The topology parser used to re-render the inner
 * parser's message with a masker of its own that knew only the lower-case
 * names, and showed "?PASSWORD=hunter2" and "sentinel_Password=hunter2".
 */
static void test_option_case(void **state)
{
    (void)state;
    static const struct {
        const char *url, *name, *spelling;
    } cases[] = {
        {"redis://h:1?PASSWORD=hunter2", "'PASSWORD'", "'password'"},
        {"redis://h:1?Password=hunter2&timeout_ms=5", "'Password'", "'password'"},
        {"redis://:hunter2@h:1?addr=b:2&Timeout_ms=5", "'Timeout_ms'", "'timeout_ms'"},
        {"redis+sentinel://s1:26379/m?sentinel_Password=hunter2", "'sentinel_Password'",
         "'sentinel_password'"},
        {"redis+sentinel://s1/m?SENTINEL_PASSWORD=hunter2&timeout_ms=1", "'SENTINEL_PASSWORD'",
         "'sentinel_password'"},
        {"redis+sentinel://:hunter2@s1/m?PASSWORD=hunter2", "'PASSWORD'", "'password'"},
        {"unix:///s?PASSWORD=hunter2", "'PASSWORD'", "'password'"},
        {"unix:///s?password=hunter2&User=u", "'User'", "'user'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect_bad(cases[i].url, cases[i].name);
        expect_bad(cases[i].url, cases[i].spelling);
        /* Said once, about the URL as written. */
        const char *e = nori_last_error();
        const char *m = strstr(e, "is malformed");
        assert_non_null(m);
        assert_null(strstr(m + 1, "is malformed"));
        assert_null(strstr(e, "127.0.0.1"));
    }
    /* An unknown option is named, whatever the form. */
    expect_bad("redis://:hunter2@a:1?addr=b:5&bogus=1", "'bogus'");
    expect_bad("redis+sentinel://:hunter2@s1/m?sentinel_password=hunter2&x=1", "'x'");
    /* A '?' in an unencoded password is named as such, its tail never read
     * as an option (nor shown as one). */
    expect_bad("redis://:hun?hunter2=1@h:1", "unencoded '?'");
    expect_bad("redis+sentinel://:hun?hunter2=1@s1/m", "unencoded '?'");
    expect_bad("redis+sentinel://:pa/hunter2@s1/m", "unencoded '/'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_urls_unchanged),
        cmocka_unit_test(test_cluster_seeds),
        cmocka_unit_test(test_bad_seeds),
        cmocka_unit_test(test_sentinel),
        cmocka_unit_test(test_bad_sentinel),
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_option_case),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
