// SPDX-License-Identifier: MIT
/*
 * Redis URL parsing and password masking (issue 10 items 19-21): the
 * password forms of Lettuce (redis://PASSWORD@host) and redis-py
 * (unix:///path?password=P&user=U&db=N), a password never shown in any
 * message, an unencoded '/', '?' or '#' in a password named as the cause,
 * and the parser's password spans, which the fuzz oracle relies on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis/wire/url.h"
#include "test_support.h"

#include <stdio.h>
#include <string.h>

static void assert_refused_without(const char *url, const char *secret, const char *because)
{
    nori__redis_url u;
    assert_nori(nori__redis_url_parse(url, &u), NORI_EINVAL);
    const char *msg = nori_last_error();
    print_message("%s -> %s\n", url, msg);
    if (secret != NULL && strstr(msg, secret) != NULL)
        fail_msg("the password '%s' shows in: %s", secret, msg);
    if (because != NULL && strstr(msg, because) == NULL)
        fail_msg("'%s' is not in: %s", because, msg);
}

static void test_lettuce_form(void **state)
{
    (void)state;
    nori__redis_url u;
    assert_nori(nori__redis_url_parse("redis://Sup3rS3cret@cache.local:6380/2", &u), NORI_OK);
    assert_string_equal(u.password, "Sup3rS3cret");
    assert_null(u.user);
    assert_string_equal(u.host, "cache.local");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 2);
    assert_string_equal(u.display, "redis://***@cache.local:6380/2");
    nori__redis_url_free(&u);
    /* Percent-encoded too; and every error path hides it. */
    assert_nori(nori__redis_url_parse("redis://p%40ss@h", &u), NORI_OK);
    assert_string_equal(u.password, "p@ss");
    nori__redis_url_free(&u);
    assert_refused_without("redis://Sup3rS3cret@host:99999", "Sup3rS3cret", "port");
    assert_refused_without("redis://Sup3rS3cret@", "Sup3rS3cret", "host is empty");
    assert_refused_without("redis://Sup3rS3cret@ho st", "Sup3rS3cret", "space");
    assert_refused_without("redis://Sup3rS3cret@host?bogus=1", "Sup3rS3cret", "unknown");
    assert_refused_without("rediss://Sup3rS3cret@host", "Sup3rS3cret", "TLS");
    assert_refused_without("http://Sup3rS3cret@host", "Sup3rS3cret", "scheme");
}

static void test_unix_credentials(void **state)
{
    (void)state;
    nori__redis_url u;
    assert_nori(nori__redis_url_parse("unix:///run/redis.sock?user=alice&password=P%26ss%3Dw0rd"
                                      "&db=3&timeout_ms=250",
                                      &u),
                NORI_OK);
    assert_true(u.is_unix);
    assert_string_equal(u.path, "/run/redis.sock");
    assert_string_equal(u.user, "alice");
    assert_string_equal(u.password, "P&ss=w0rd");
    assert_int_equal(u.db, 3);
    assert_int_equal(u.timeout_ms, 250);
    assert_string_equal(u.display,
                        "unix:///run/redis.sock?user=alice&password=***&db=3&timeout_ms=250");
    nori__redis_url_free(&u);
    assert_refused_without("unix:///r.sock?password=TopSecret99&db=x", "TopSecret99", "db");
    assert_refused_without("unix:///r.sock?password=TopSecret99&password=Other1234567",
                           "TopSecret99", "twice");
    assert_refused_without("unix:///r.sock?password=TopSecret99&password=Other1234567",
                           "Other1234567", "twice");
    assert_refused_without("unix:///r.sock?Password=TopSecret99", "TopSecret99", "unknown");
    assert_refused_without("unix:///r.sock?password=", NULL, "password is empty");
    assert_refused_without("unix:///r.sock?user=bob", NULL, "needs password");
    assert_refused_without("unix://r.sock?password=TopSecret99", "TopSecret99", "absolute");
    assert_refused_without("unix:///r.sock?password=Top%zzSecret99", "Top%zzSecret99",
                           "percent-escape");
    /* redis:// keeps its credentials in the userinfo. */
    assert_refused_without("redis://host?password=TopSecret99", "TopSecret99", "before the host");
}

/* Issue 10 item 20: redis://:hun/ter2@host used to say "the host is empty". */
static void test_unencoded_delimiters(void **state)
{
    (void)state;
    assert_refused_without("redis://:hun/ter2@host", "ter2", "unencoded '/'");
    assert_refused_without("redis://:hun/ter2@host", "hun", "%2F");
    assert_refused_without("redis://user:pa?ss@host:6379", "pa?ss", "unencoded '?'");
    assert_refused_without("redis://user:pa#ss@host", "ss@", "%23");
    assert_refused_without("redis://:a/b/c@host/0", "a/b/c", "percent-encode");
    /* Encoded, they are fine. */
    nori__redis_url u;
    assert_nori(nori__redis_url_parse("redis://:hun%2Fter2@host", &u), NORI_OK);
    assert_string_equal(u.password, "hun/ter2");
    assert_string_equal(u.display, "redis://:***@host");
    nori__redis_url_free(&u);
}

static void spans_are(const char *url, size_t n, const char *first, const char *second)
{
    nori__redis_span s[4];
    size_t got = nori__redis_url_password_spans(url, s, 4);
    assert_int_equal(got, n);
    const char *want[2] = {first, second};
    for (size_t i = 0; i < n && i < 2; i++) {
        assert_int_equal(s[i].len, strlen(want[i]));
        assert_memory_equal(url + s[i].off, want[i], s[i].len);
    }
}

/* The two inputs that made the old fuzz oracle fail CI (issue 10 item 21),
 * and the ordinary forms. */
static void test_password_spans(void **state)
{
    (void)state;
    spans_are("redis://0?timeout_mstimeout_ms=1&con:nect_timeout_@ms=2&t_ms=4&", 0, NULL, NULL);
    spans_are("redis://:*@[..........@[..........", 1, "*@[..........", NULL);
    spans_are("redis://u:pw@h:1/2?timeout_ms=3", 1, "pw", NULL);
    spans_are("redis://pw@h", 1, "pw", NULL);
    spans_are("redis://h/0?password=x&password=yz", 2, "x", "yz");
    spans_are("unix:///s?db=1&password=p%40&user=u", 1, "p%40", NULL);
    spans_are("unix:///s@x?user=u", 0, NULL, NULL);
    spans_are("redis://h", 0, NULL, NULL);
    /* Any case: the parser refuses these names, the masker hides their value. */
    spans_are("unix:///s?PASSWORD=x&Password=yz", 2, "x", "yz");
    spans_are("redis://h?PassWord=x", 1, "x", NULL);
    /* The sentinel form: the userinfo and sentinel_password= (any case). */
    spans_are("redis+sentinel://u:pw@s1,s2/m/1?sentinel_password=sp", 2, "pw", "sp");
    spans_are("redis+sentinel://pw@s1/m?Sentinel_Password=sp&timeout_ms=1", 2, "pw", "sp");
    spans_are("redis+sentinel://s1/m?sentinel_user=u", 0, NULL, NULL);
}

/* An unknown option is named (its spelling given when only the case
 * differs), its value masked. */
static void test_unknown_option_named(void **state)
{
    (void)state;
    assert_refused_without("redis://h?bogus=1", NULL, "option 'bogus'");
    assert_refused_without("redis://h?PASSWORD=TopSecret99", "TopSecret99",
                           "option 'PASSWORD' (option names are lower case: 'password')");
    assert_refused_without("unix:///r.sock?Password=TopSecret99", "TopSecret99",
                           "option 'Password' (option names are lower case: 'password')");
    assert_refused_without("unix:///r.sock?DB=1", NULL, "lower case: 'db'");
    /* A name longer than 64 bytes is cut. */
    assert_refused_without("redis://h?aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                           "aaaaaaaaaa=1",
                           NULL, "aaaaaaaa...'");
}

/* The masker hides a superset of the spans, whatever the input. */
static void test_mask_covers_spans(void **state)
{
    (void)state;
    static const char *urls[] = {
        "redis://user:secret@host",
        "redis://secretpw@host",
        "redis://:sec/ret@host/x@y",
        "redis://h?password=sec@ret",
        "unix:///p?password=sec@ret",
        "unix:///p?PASSWORD=secret&password=other",
        "redis://a@b:c@d",
        "redis://:p@ss@host",
        "redis://h?PassWord=secret",
        "redis+sentinel://:secret@s1/m?SENTINEL_password=other1",
        "redis+sentinel://u:secret@s1,s2:3/m?x=1&sentinel_password=other1",
    };
    for (size_t i = 0; i < sizeof urls / sizeof *urls; i++) {
        char masked[256];
        nori__redis_url_mask(urls[i], masked, sizeof masked);
        print_message("%s -> %s\n", urls[i], masked);
        nori__redis_span s[4];
        size_t n = nori__redis_url_password_spans(urls[i], s, 4);
        for (size_t k = 0; k < n && k < 4; k++) {
            char pw[64];
            snprintf(pw, sizeof pw, "%.*s", (int)s[k].len, urls[i] + s[k].off);
            if (pw[0] != '\0' && strstr(masked, pw) != NULL)
                fail_msg("'%s' shows in the masked form of %s: %s", pw, urls[i], masked);
        }
    }
    char masked[256];
    nori__redis_url_mask("redis://:@host", masked, sizeof masked);
    assert_string_equal(masked, "redis://:***@host");
}

/* The per-node copy the cluster and sentinel code start from. */
static void test_url_for_node(void **state)
{
    (void)state;
    nori__redis_url base, node;
    assert_nori(nori__redis_url_parse("redis://alice:S3cretPw@seed:7000/0?timeout_ms=250"
                                      "&circuit_failures=2",
                                      &base),
                NORI_OK);
    assert_nori(nori__redis_url_for_node(&base, "10.0.0.7", 7003, &node), NORI_OK);
    assert_string_equal(node.host, "10.0.0.7");
    assert_int_equal(node.port, 7003);
    assert_string_equal(node.user, "alice");
    assert_string_equal(node.password, "S3cretPw");
    assert_int_equal(node.timeout_ms, 250);
    assert_int_equal(node.circuit_failures, 2);
    assert_string_equal(node.display, "redis://10.0.0.7:7003");
    nori__redis_url_free(&node);
    assert_nori(nori__redis_url_for_node(&base, "::1", 7001, &node), NORI_OK);
    assert_string_equal(node.display, "redis://[::1]:7001");
    nori__redis_url_free(&node);
    nori__redis_url_free(&base);
}

/* wait_replicas / wait_timeout_ms: in range, and the WAIT shorter than the
 * round trip that carries it. */
static void test_wait_options(void **state)
{
    (void)state;
    nori__redis_url u;
    assert_nori(nori__redis_url_parse("redis://h?wait_replicas=1", &u), NORI_OK);
    assert_int_equal(u.wait_replicas, 1);
    assert_int_equal(u.wait_timeout_ms, NORI_REDIS_DEFAULT_WAIT_TIMEOUT_MS);
    nori__redis_url_free(&u);
    assert_nori(nori__redis_url_parse("redis://h?wait_replicas=2&wait_timeout_ms=250", &u),
                NORI_OK);
    assert_int_equal(u.wait_replicas, 2);
    assert_int_equal(u.wait_timeout_ms, 250);
    nori__redis_url_free(&u);
    /* Off by default; a short timeout_ms alone is no conflict. */
    assert_nori(nori__redis_url_parse("redis://h?timeout_ms=50", &u), NORI_OK);
    assert_int_equal(u.wait_replicas, 0);
    nori__redis_url_free(&u);
    assert_refused_without("redis://h?wait_replicas=65", NULL, "wait_replicas must be");
    assert_refused_without("redis://h?wait_replicas=-1", NULL, "wait_replicas must be");
    assert_refused_without("redis://h?wait_replicas=1&wait_timeout_ms=0", NULL,
                           "WAIT 0 would wait forever");
    assert_refused_without("redis://h?wait_replicas=1&wait_timeout_ms=1000", NULL,
                           "wait_timeout_ms (1000) must be less than timeout_ms (1000)");
    assert_refused_without("redis://h?timeout_ms=80&wait_replicas=1", NULL,
                           "wait_timeout_ms (100) must be less than timeout_ms (80)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lettuce_form),
        cmocka_unit_test(test_unix_credentials),
        cmocka_unit_test(test_unencoded_delimiters),
        cmocka_unit_test(test_password_spans),
        cmocka_unit_test(test_unknown_option_named),
        cmocka_unit_test(test_mask_covers_spans),
        cmocka_unit_test(test_url_for_node),
        cmocka_unit_test(test_wait_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
