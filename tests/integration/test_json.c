// SPDX-License-Identifier: MIT
/*
 * nori/json.h: JSON values through the backends, the exact text of the typed
 * constructors, and every refusal (with nothing written).
 *
 * The storage tests run once per entry of backend_factories[]: the memory
 * backend and a Redis backend on a private redis-server. The constructor tests do
 * not touch a backend and run once.
 *
 * With NORI_TEST_TOPOLOGY=cluster or sentinel (tests/support/redis_topology.h;
 * CTest entries test_json_cluster, test_json_sentinel) the same program runs
 * the storage tests on the Redis backend only, over that set-up: the memory
 * and codec groups do not depend on it and run in test_json.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis_topology.h"
#include "test_support.h"

#include <nori/json.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Backends under test                                                      */
/* ------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    int (*create)(nori_backend **out); /* a fresh, empty backend */
} backend_factory;

static int memory_factory(nori_backend **out)
{
    return nori_memory_backend_new(1000, out);
}

/* A private Redis set-up (one server unless NORI_TEST_TOPOLOGY names
 * another), started by the first Redis test and stopped at the end of main. */
static nori_test_topology *redis_topology;

static int redis_factory(nori_backend **out)
{
    if (redis_topology == NULL) {
        redis_topology = nori_test_topology_start();
        print_message("Redis set-up: %s (%s)\n", redis_topology->name, redis_topology->url);
    }
    return nori_redis_backend_new(redis_topology->url, out);
}

static const backend_factory backend_factories[] = {
    {"memory", memory_factory},
    {"redis", redis_factory},
};

static const backend_factory *current_factory;

static int backend_setup(void **state)
{
    nori_backend *b = NULL;
    int rc = current_factory->create(&b);
    if (rc != NORI_OK) {
        print_error("%s backend: %s (%s)\n", current_factory->name, nori_strerror(rc),
                    nori_last_error());
        return -1;
    }
    if (nori_backend_flush(b) != NORI_OK) {
        nori_backend_free(b);
        return -1;
    }
    *state = b;
    return 0;
}

static int backend_teardown(void **state)
{
    nori_backend_free(*state);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

#define assert_error_mentions(text)                                                          \
    do {                                                                                     \
        if (strstr(nori_last_error(), (text)) == NULL)                                       \
            print_error("last error '%s' does not mention '%s'\n", nori_last_error(), text); \
        assert_non_null(strstr(nori_last_error(), (text)));                                  \
    } while (0)

/* The raw bytes stored under key must be exactly `expected` (a C string). */
static void assert_raw(nori_backend *b, const char *key, const char *expected)
{
    nori_buf buf;
    assert_nori(nori_backend_get(b, key, &buf), NORI_OK);
    if (buf.len != strlen(expected) || memcmp(buf.data, expected, buf.len) != 0)
        print_error("stored '%s', expected '%s'\n", buf.data, expected);
    assert_int_equal(buf.len, strlen(expected));
    assert_memory_equal(buf.data, expected, buf.len);
    nori_buf_free(&buf);
}

static void assert_absent(nori_backend *b, const char *key)
{
    nori_buf buf;
    assert_nori(nori_backend_get(b, key, &buf), NORI_MISS);
}

/* set_json, then get_json, then compare with json_equal; returns nothing but
 * checks the stored text when `wire` is non-NULL. */
static void roundtrip(nori_backend *b, const char *key, json_t *v, const char *wire)
{
    assert_non_null(v);
    assert_nori(nori_backend_set_json(b, key, v, 0), NORI_OK);
    if (wire != NULL)
        assert_raw(b, key, wire);
    json_t *back = NULL;
    assert_nori(nori_backend_get_json(b, key, &back), NORI_OK);
    assert_non_null(back);
    if (!json_equal(v, back)) {
        char *a = json_dumps(v, JSON_ENCODE_ANY), *c = json_dumps(back, JSON_ENCODE_ANY);
        print_error("wrote %s, read %s\n", a, c);
        free(a);
        free(c);
    }
    assert_true(json_equal(v, back));
    json_decref(back);
    json_decref(v);
}

/* A constructor's result must be the JSON string `expected`. */
static void assert_json_string(json_t *v, const char *expected)
{
    assert_non_null(v);
    assert_true(json_is_string(v));
    if (strcmp(json_string_value(v), expected) != 0)
        print_error("got '%s', expected '%s'\n", json_string_value(v), expected);
    assert_string_equal(json_string_value(v), expected);
    assert_int_equal(json_string_length(v), strlen(expected));
    json_decref(v);
}

static const unsigned char sample_uuid[16] = {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
                                              0x0f, 0xed, 0xcb, 0xa9, 0x87, 0x65, 0x43, 0x21};

/* ------------------------------------------------------------------------ */
/* Round trips through a backend                                            */
/* ------------------------------------------------------------------------ */

static void test_roundtrip_object(void **state)
{
    nori_backend *b = *state;
    json_t *v = json_pack("{s:i, s:s, s:[s,s], s:b, s:n, s:f, s:{s:i}}", "id", 42, "name",
                          "Ada", "tags", "admin", "beta", "active", 1, "deleted_at", "score",
                          2.5, "prefs", "theme", 2);
    /* Compact, keys in insertion order. */
    roundtrip(b, "user:42", v,
              "{\"id\":42,\"name\":\"Ada\",\"tags\":[\"admin\",\"beta\"],\"active\":true,"
              "\"deleted_at\":null,\"score\":2.5,\"prefs\":{\"theme\":2}}");
    roundtrip(b, "empty-object", json_object(), "{}");
}

static void test_roundtrip_array(void **state)
{
    nori_backend *b = *state;
    roundtrip(b, "list", json_pack("[i,s,[],{},n,b]", 1, "two", 0), "[1,\"two\",[],{},null,false]");
    roundtrip(b, "empty-array", json_array(), "[]");
}

static void test_roundtrip_numbers(void **state)
{
    nori_backend *b = *state;
    roundtrip(b, "int", json_integer(42), "42");
    roundtrip(b, "neg", json_integer(-7), "-7");
    roundtrip(b, "max", json_integer(INT64_MAX), "9223372036854775807");
    roundtrip(b, "min", json_integer(INT64_MIN), "-9223372036854775808");
    /* Shortest text that reads back as the same double, as Python writes it. */
    roundtrip(b, "tenth", json_real(0.1), "0.1");
    roundtrip(b, "real", json_real(-2.5), "-2.5");
    roundtrip(b, "whole-real", json_real(100.0), "100.0");
    roundtrip(b, "third", json_real(1.0 / 3.0), "0.3333333333333333");
    roundtrip(b, "thousands", json_real(123456.0), "123456.0");
    roundtrip(b, "huge", json_real(1e300), "1e300"); /* Python: 1e+300; both read back */
    /* A real that needs 17 digits raises the precision for the document, and
     * every real in it still reads back exactly. */
    roundtrip(b, "mixed", json_pack("[f,f]", 0.1, 0.30000000000000004), NULL);
    roundtrip(b, "tiny", json_real(5e-324), NULL);
}

static void test_roundtrip_strings_booleans_null(void **state)
{
    nori_backend *b = *state;
    roundtrip(b, "str", json_string("hello"), "\"hello\"");
    roundtrip(b, "empty-str", json_string(""), "\"\"");
    /* Non-ASCII stays raw UTF-8; escapes where JSON needs them. */
    roundtrip(b, "utf8", json_string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
              "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    roundtrip(b, "escapes", json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    /* An embedded NUL survives as \u0000. */
    roundtrip(b, "nul", json_stringn("a\0b", 3), "\"a\\u0000b\"");
    roundtrip(b, "true", json_true(), "true");
    roundtrip(b, "false", json_false(), "false");
    roundtrip(b, "null", json_null(), "null");
}

static void test_roundtrip_typed(void **state)
{
    nori_backend *b = *state;
    json_t *dt, *d, *u, *dec;
    nori_datetime when = {.year = 2026, .month = 1, .day = 1, .hour = 12, .microsecond = 500000,
                          .has_offset = true, .offset_seconds = 2 * 3600};
    assert_nori(nori_json_datetime(&when, "signup", &dt), NORI_OK);
    assert_nori(nori_json_date(&(nori_date){2024, 2, 29}, "birthday", &d), NORI_OK);
    assert_nori(nori_json_uuid(sample_uuid, "uuid", &u), NORI_OK);
    assert_nori(nori_json_decimal("19.99", "balance", &dec), NORI_OK);
    json_t *v = json_pack("{s:o, s:o, s:o, s:o}", "signup", dt, "birthday", d, "uuid", u,
                          "balance", dec);
    roundtrip(b, "typed", v,
              "{\"signup\":\"2026-01-01T12:00:00.500000+02:00\",\"birthday\":\"2024-02-29\","
              "\"uuid\":\"12345678-9abc-def0-0fed-cba987654321\",\"balance\":\"19.99\"}");
}

static void test_set_json_ttl_and_key_rules(void **state)
{
    nori_backend *b = *state;
    json_t *v = json_integer(1);
    assert_nori(nori_backend_set_json(b, "", v, 0), NORI_EINVAL);
    assert_nori(nori_backend_set_json(b, "k", v, -1), NORI_EINVAL);
    assert_absent(b, "k");
    assert_nori(nori_backend_set_json(b, "k", NULL, 0), NORI_EINVAL);
    assert_absent(b, "k");
    assert_nori(nori_backend_set_json(b, "k", v, 60), NORI_OK);
    assert_raw(b, "k", "1");
    json_decref(v);

    json_t *out = json_true();
    assert_nori(nori_backend_get_json(b, "missing", &out), NORI_MISS);
    assert_null(out);
    assert_nori(nori_backend_get_json(b, "k", NULL), NORI_EINVAL);
}

static void test_set_json_too_big(void **state)
{
    nori_backend *b = *state;
    assert_nori(nori_backend_set_max_value(b, 16), NORI_OK);
    json_t *v = json_string("this string is longer than sixteen bytes");
    assert_nori(nori_backend_set_json(b, "big", v, 0), NORI_ETOOBIG);
    assert_absent(b, "big");
    json_decref(v);
}

/* ------------------------------------------------------------------------ */
/* Refusals: NORI_ETYPE naming the field, nothing written                   */
/* ------------------------------------------------------------------------ */

static void test_refuse_invalid_utf8_string(void **state)
{
    nori_backend *b = *state;
    /* jansson's *_nocheck constructors let invalid UTF-8 in; set_json must not. */
    json_t *v = json_pack("{s:{s:s, s:o}}", "profile", "name", "Ada", "bio",
                          json_string_nocheck("caf\xe9"));
    assert_nori(nori_backend_set_json(b, "user", v, 0), NORI_ETYPE);
    assert_error_mentions("set_json 'user': profile.bio");
    assert_absent(b, "user");

    /* An existing value stays as it was. */
    assert_nori(nori_backend_set(b, "user", "old", 3, 0), NORI_OK);
    assert_nori(nori_backend_set_json(b, "user", v, 0), NORI_ETYPE);
    assert_raw(b, "user", "old");
    json_decref(v);

    /* Inside an array: the index is named. */
    v = json_pack("{s:[s,o]}", "tags", "ok", json_stringn_nocheck("\xed\xa0\x80", 3));
    assert_nori(nori_backend_set_json(b, "tags", v, 0), NORI_ETYPE);
    assert_error_mentions("tags[1]");
    assert_absent(b, "tags");
    json_decref(v);

    /* At the top level. */
    v = json_string_nocheck("\xff");
    assert_nori(nori_backend_set_json(b, "top", v, 0), NORI_ETYPE);
    assert_error_mentions("top level");
    assert_absent(b, "top");
    json_decref(v);
}

static void test_refuse_invalid_utf8_key(void **state)
{
    nori_backend *b = *state;
    json_t *v = json_object();
    json_t *inner = json_object();
    assert_int_equal(json_object_set_new_nocheck(inner, "bad\xc0\xafkey", json_integer(1)), 0);
    assert_int_equal(json_object_set_new(v, "meta", inner), 0);
    assert_nori(nori_backend_set_json(b, "obj", v, 0), NORI_ETYPE);
    assert_error_mentions("meta.bad??key");
    assert_error_mentions("object key");
    assert_absent(b, "obj");
    json_decref(v);
}

static void test_refuse_cycle(void **state)
{
    nori_backend *b = *state;
    json_t *outer = json_array(), *inner = json_array();
    assert_int_equal(json_array_append(outer, inner), 0);
    assert_int_equal(json_array_append(inner, outer), 0);
    assert_nori(nori_backend_set_json(b, "loop", outer, 0), NORI_EINVAL);
    assert_error_mentions("deeper");
    assert_absent(b, "loop");
    json_array_clear(inner); /* break the cycle so both can be freed */
    json_decref(inner);
    json_decref(outer);
}

/* A typed constructor that refuses leaves nothing to write: the caller's
 * "build, then set" sequence stops before the backend. */
static void test_refuse_typed_values_nothing_written(void **state)
{
    nori_backend *b = *state;
    assert_nori(nori_backend_set(b, "profile", "{\"v\":1}", 7, 0), NORI_OK);
    json_t *d = json_true();
    int rc = nori_json_date(&(nori_date){2026, 2, 30}, "profile.birthday", &d);
    assert_nori(rc, NORI_ETYPE);
    assert_null(d);
    assert_error_mentions("profile.birthday");
    json_t *dec = json_true();
    assert_nori(nori_json_decimal("1.2.3", "profile.balance", &dec), NORI_ETYPE);
    assert_null(dec);
    assert_error_mentions("profile.balance");
    if (rc == NORI_OK) /* not reached: shows the sequence a caller writes */
        assert_nori(nori_backend_set_json(b, "profile", d, 0), NORI_OK);
    assert_raw(b, "profile", "{\"v\":1}");
}

/* ------------------------------------------------------------------------ */
/* Reading what other clients wrote                                         */
/* ------------------------------------------------------------------------ */

static void expect_text_as_string(nori_backend *b, const char *key, const char *raw, size_t len)
{
    assert_nori(nori_backend_set(b, key, raw, len, 0), NORI_OK);
    json_t *v = NULL;
    assert_nori(nori_backend_get_json(b, key, &v), NORI_OK);
    assert_non_null(v);
    assert_true(json_is_string(v));
    assert_int_equal(json_string_length(v), len);
    assert_memory_equal(json_string_value(v), raw, len);
    json_decref(v);
}

static void expect_read_refused(nori_backend *b, const char *key, const char *raw, size_t len,
                           const char *mention)
{
    assert_nori(nori_backend_set(b, key, raw, len, 0), NORI_OK);
    json_t *v = json_true();
    assert_nori(nori_backend_get_json(b, key, &v), NORI_ETYPE);
    assert_null(v);
    assert_error_mentions(mention);
    assert_error_mentions(key);
    /* The stored bytes are untouched. */
    nori_buf buf;
    assert_nori(nori_backend_get(b, key, &buf), NORI_OK);
    assert_int_equal(buf.len, len);
    assert_memory_equal(buf.data, raw, len);
    nori_buf_free(&buf);
}

static void test_read_non_json_text_as_string(void **state)
{
    nori_backend *b = *state;
    expect_text_as_string(b, "plain", "hello world", 11);
    expect_text_as_string(b, "empty", "", 0);
    expect_text_as_string(b, "broken", "{\"a\": 1", 7);
    expect_text_as_string(b, "utf8", "caf\xc3\xa9", 5);
    expect_text_as_string(b, "with-nul", "a\0b", 3);
    /* Text that merely starts like a non-finite number is still text. */
    expect_text_as_string(b, "nan-text", "NaN is not a number", 19);
    expect_text_as_string(b, "infinity-text", "Infinity and beyond", 19);
}

static void test_read_python_written_json(void **state)
{
    nori_backend *b = *state;
    /* Python's json.dumps default separators and \u escapes. */
    const char *py = "{\"id\": 42, \"name\": \"caf\\u00e9\", \"tags\": [1, 2.5, null]}";
    assert_nori(nori_backend_set(b, "py", py, strlen(py), 0), NORI_OK);
    json_t *v = NULL;
    assert_nori(nori_backend_get_json(b, "py", &v), NORI_OK);
    json_t *want = json_pack("{s:i, s:s, s:[i,f,n]}", "id", 42, "name", "caf\xc3\xa9", "tags", 1,
                             2.5);
    assert_true(json_equal(v, want));
    json_decref(v);
    json_decref(want);
    /* A JSON string with \u0000 (json.dumps writes NULs this way). */
    const char *nul = "\"a\\u0000b\"";
    assert_nori(nori_backend_set(b, "nul", nul, strlen(nul), 0), NORI_OK);
    assert_nori(nori_backend_get_json(b, "nul", &v), NORI_OK);
    assert_int_equal(json_string_length(v), 3);
    assert_memory_equal(json_string_value(v), "a\0b", 3);
    json_decref(v);
}

static void test_read_refusals(void **state)
{
    nori_backend *b = *state;
    /* Neither JSON nor UTF-8: binary bytes. */
    expect_read_refused(b, "binary", "\x89PNG\r\n\x1a\n\xff", 9, "neither JSON nor UTF-8");
    /* JSON to Python, but jansson cannot hold it: refusing beats handing
     * back a string where the writer stored a number. */
    expect_read_refused(b, "nan", "[NaN]", 5, "NaN or Infinity");
    expect_read_refused(b, "inf", "{\"x\": -Infinity, \"s\": \"NaN\"}", 28, "NaN or Infinity");
    expect_read_refused(b, "bigint", "123456789012345678901234567890", 30, "int64");
    expect_read_refused(b, "bigreal", "[1e400]", 7, "double range");
    /* An overflowing number in text that is not JSON anyway: just text. */
    expect_text_as_string(b, "big-in-text", "[99999999999999999999999 oops", 29);
}

/*
 * Python's json.dumps("a\ud800b") writes a lone surrogate escape; jansson
 * cannot hold one, and handing back the raw JSON text as a string would be a
 * different value: refused like NaN.
 */
static void test_read_refuses_lone_surrogates(void **state)
{
    nori_backend *b = *state;
#define REFUSED(key, lit, mention) expect_read_refused(b, key, lit, sizeof lit - 1, mention)
    REFUSED("lone-high", "\"a\\ud800b\"", "lone UTF-16 surrogate");
    REFUSED("lone-low", "\"\\udc00\"", "lone UTF-16 surrogate");
    REFUSED("high-at-end", "[\"x\\uDBFF\"]", "lone UTF-16 surrogate");
    REFUSED("high-then-high", "{\"k\": \"\\ud800\\ud800\"}", "lone UTF-16 surrogate");
    REFUSED("low-then-high", "\"\\udc00\\ud800\"", "lone UTF-16 surrogate");
    REFUSED("in-key", "{\"\\ud800\": 1}", "lone UTF-16 surrogate");
    REFUSED("with-nan", "[NaN, \"\\udfff\"]", "NaN or Infinity");
#undef REFUSED
    /* A proper pair is one character (U+1F600) and reads back. */
    const char *pair = "\"\\ud83d\\ude00\"";
    assert_nori(nori_backend_set(b, "pair", pair, strlen(pair), 0), NORI_OK);
    json_t *v = NULL;
    assert_nori(nori_backend_get_json(b, "pair", &v), NORI_OK);
    assert_string_equal(json_string_value(v), "\xf0\x9f\x98\x80");
    json_decref(v);
    /* An escaped backslash before "ud800" is not an escape: plain JSON. */
    const char *lit = "\"\\\\ud800\"";
    assert_nori(nori_backend_set(b, "literal", lit, strlen(lit), 0), NORI_OK);
    assert_nori(nori_backend_get_json(b, "literal", &v), NORI_OK);
    assert_string_equal(json_string_value(v), "\\ud800");
    json_decref(v);
    /* Not JSON anyway (unterminated): plain text, as before. */
    expect_text_as_string(b, "surrogate-in-text", "\"a\\ud800", 8);
}

/* ------------------------------------------------------------------------ */
/* atomic_update_json                                                       */
/* ------------------------------------------------------------------------ */

typedef struct {
    int calls;
} update_state;

/* {"count": n} -> {"count": n + 1}; absent -> {"count": 1}. Idempotent per
 * input, as Redis retries require. */
static json_t *increment_count(json_t *current, void *ud)
{
    ((update_state *)ud)->calls++;
    if (current == NULL)
        return json_pack("{s:i}", "count", 1);
    json_t *count = json_object_get(current, "count");
    if (!json_is_integer(count))
        return NULL;
    /* current is freshly decoded for this call: modifying it is allowed. */
    json_object_set_new(current, "count", json_integer(json_integer_value(count) + 1));
    return json_incref(current);
}

static json_t *decline(json_t *current, void *ud)
{
    ((update_state *)ud)->calls++;
    return NULL;
}

static json_t *write_bad_utf8(json_t *current, void *ud)
{
    ((update_state *)ud)->calls++;
    return json_pack("{s:o}", "note", json_string_nocheck("\xc3"));
}

static void test_atomic_update_increments(void **state)
{
    nori_backend *b = *state;
    update_state us = {0};
    for (int i = 1; i <= 3; i++) {
        json_t *out = NULL;
        assert_nori(nori_backend_atomic_update_json(b, "hits", increment_count, &us, 0, &out),
                    NORI_OK);
        assert_non_null(out);
        assert_int_equal(json_integer_value(json_object_get(out, "count")), i);
        json_decref(out);
    }
    assert_raw(b, "hits", "{\"count\":3}");
    /* out may be NULL. */
    assert_nori(nori_backend_atomic_update_json(b, "hits", increment_count, &us, 60, NULL),
                NORI_OK);
    assert_raw(b, "hits", "{\"count\":4}");
    assert_true(us.calls >= 4);

    /* Other fields are kept; a Python-written value is read and rewritten. */
    const char *py = "{\"count\": 9, \"owner\": \"ada\"}";
    assert_nori(nori_backend_set(b, "py", py, strlen(py), 0), NORI_OK);
    assert_nori(nori_backend_atomic_update_json(b, "py", increment_count, &us, 0, NULL), NORI_OK);
    assert_raw(b, "py", "{\"count\":10,\"owner\":\"ada\"}");
}

static void test_atomic_update_declines(void **state)
{
    nori_backend *b = *state;
    update_state us = {0};
    json_t *out = json_true();
    assert_nori(nori_backend_atomic_update_json(b, "absent", decline, &us, 0, &out), NORI_EABORT);
    assert_null(out);
    assert_int_equal(us.calls, 1);
    assert_absent(b, "absent");

    assert_nori(nori_backend_set(b, "kept", "{\"count\":5}", 11, 0), NORI_OK);
    assert_nori(nori_backend_atomic_update_json(b, "kept", decline, &us, 0, NULL), NORI_EABORT);
    assert_raw(b, "kept", "{\"count\":5}");

    /* increment_count declines on a value without an integer count. */
    assert_nori(nori_backend_set(b, "text", "hello", 5, 0), NORI_OK);
    assert_nori(nori_backend_atomic_update_json(b, "text", increment_count, &us, 0, NULL),
                NORI_EABORT);
    assert_raw(b, "text", "hello");
}

static void test_atomic_update_refusals(void **state)
{
    nori_backend *b = *state;
    update_state us = {0};

    /* The callback's value fails validation: its own code, not EABORT. */
    assert_nori(nori_backend_set(b, "k", "1", 1, 0), NORI_OK);
    json_t *out = json_true();
    assert_nori(nori_backend_atomic_update_json(b, "k", write_bad_utf8, &us, 0, &out), NORI_ETYPE);
    assert_null(out);
    assert_error_mentions("atomic_update_json 'k': note");
    assert_raw(b, "k", "1");

    /* A stored value that is not readable as JSON: fn never runs. */
    us.calls = 0;
    assert_nori(nori_backend_set(b, "bin", "\xff\xfe", 2, 0), NORI_OK);
    assert_nori(nori_backend_atomic_update_json(b, "bin", increment_count, &us, 0, NULL),
                NORI_ETYPE);
    assert_error_mentions("atomic_update_json 'bin'");
    assert_int_equal(us.calls, 0);
    assert_raw(b, "bin", "\xff\xfe");

    assert_nori(nori_backend_atomic_update_json(b, "k", NULL, NULL, 0, NULL), NORI_EINVAL);
    assert_nori(nori_backend_atomic_update_json(b, "", increment_count, &us, 0, NULL),
                NORI_EINVAL);
}

#define UPDATE_THREADS 8
#define UPDATES_PER_THREAD 50

static void *update_worker(void *arg)
{
    nori_backend *b = arg;
    update_state us = {0};
    for (int i = 0; i < UPDATES_PER_THREAD; i++)
        if (nori_backend_atomic_update_json(b, "shared", increment_count, &us, 0, NULL) != NORI_OK)
            return (void *)1;
    return NULL;
}

/* Concurrent read-modify-writes of one JSON document lose nothing. */
static void test_atomic_update_concurrent(void **state)
{
    nori_backend *b = *state;
    pthread_t t[UPDATE_THREADS];
    for (int i = 0; i < UPDATE_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, update_worker, b), 0);
    int failures = 0;
    for (int i = 0; i < UPDATE_THREADS; i++) {
        void *ret;
        assert_int_equal(pthread_join(t[i], &ret), 0);
        failures += ret != NULL;
    }
    assert_int_equal(failures, 0);
    json_t *v = NULL;
    assert_nori(nori_backend_get_json(b, "shared", &v), NORI_OK);
    assert_int_equal(json_integer_value(json_object_get(v, "count")),
                     UPDATE_THREADS * UPDATES_PER_THREAD);
    json_decref(v);
}

/* ------------------------------------------------------------------------ */
/* Typed constructors: exact text (no backend)                              */
/* ------------------------------------------------------------------------ */

static json_t *datetime(int y, int mo, int d, int h, int mi, int s, int us, bool has_offset,
                        int32_t offset)
{
    nori_datetime dt = {y, mo, d, h, mi, s, us, has_offset, offset};
    json_t *v = NULL;
    assert_nori(nori_json_datetime(&dt, "when", &v), NORI_OK);
    return v;
}

static void test_datetime_text(void **state)
{
    (void)state;
    /* Expected strings are Python's datetime(...).isoformat(). */
    assert_json_string(datetime(2026, 1, 1, 12, 0, 0, 0, false, 0), "2026-01-01T12:00:00");
    assert_json_string(datetime(2026, 1, 1, 12, 0, 0, 0, true, 7200),
                       "2026-01-01T12:00:00+02:00");
    assert_json_string(datetime(2026, 1, 1, 12, 0, 0, 0, true, 0), "2026-01-01T12:00:00+00:00");
    assert_json_string(datetime(2026, 1, 1, 12, 0, 0, 0, true, -(5 * 3600 + 30 * 60)),
                       "2026-01-01T12:00:00-05:30");
    assert_json_string(datetime(2026, 1, 1, 12, 0, 0, 500000, false, 0),
                       "2026-01-01T12:00:00.500000");
    assert_json_string(datetime(2026, 1, 1, 12, 0, 0, 5, true, -(5 * 3600 + 30 * 60 + 15)),
                       "2026-01-01T12:00:00.000005-05:30:15");
    assert_json_string(datetime(2026, 1, 1, 12, 0, 0, 500000, true, 5 * 3600 + 30 * 60 + 15),
                       "2026-01-01T12:00:00.500000+05:30:15");
    assert_json_string(datetime(1, 1, 1, 0, 0, 0, 0, true, 0), "0001-01-01T00:00:00+00:00");
    assert_json_string(datetime(9999, 12, 31, 23, 59, 59, 999999, true, 86399),
                       "9999-12-31T23:59:59.999999+23:59:59");
    assert_json_string(datetime(2024, 2, 29, 7, 8, 9, 0, true, -86399),
                       "2024-02-29T07:08:09-23:59:59");
}

static void test_date_text(void **state)
{
    (void)state;
    json_t *v;
    assert_nori(nori_json_date(&(nori_date){2026, 1, 1}, "d", &v), NORI_OK);
    assert_json_string(v, "2026-01-01");
    assert_nori(nori_json_date(&(nori_date){1, 1, 1}, "d", &v), NORI_OK);
    assert_json_string(v, "0001-01-01");
    assert_nori(nori_json_date(&(nori_date){2000, 2, 29}, "d", &v), NORI_OK); /* 400-year rule */
    assert_json_string(v, "2000-02-29");
    assert_nori(nori_json_date(&(nori_date){9999, 12, 31}, "d", &v), NORI_OK);
    assert_json_string(v, "9999-12-31");
}

static void test_uuid_text(void **state)
{
    (void)state;
    json_t *v;
    assert_nori(nori_json_uuid(sample_uuid, "id", &v), NORI_OK);
    assert_json_string(v, "12345678-9abc-def0-0fed-cba987654321");
    unsigned char zero[16] = {0}, ones[16];
    memset(ones, 0xff, sizeof ones);
    assert_nori(nori_json_uuid(zero, "id", &v), NORI_OK);
    assert_json_string(v, "00000000-0000-0000-0000-000000000000");
    assert_nori(nori_json_uuid(ones, "id", &v), NORI_OK);
    assert_json_string(v, "ffffffff-ffff-ffff-ffff-ffffffffffff");
    assert_nori(nori_json_uuid(NULL, "id", &v), NORI_EINVAL);
    assert_null(v);
}

static void test_decimal_text(void **state)
{
    (void)state;
    /* {input, Python's str(Decimal(input))}, checked with CPython 3. */
    static const char *const cases[][2] = {
        {"19.99", "19.99"},   {"-0.5", "-0.5"},         {"1E+3", "1E+3"},
        {"0", "0"},           {"-0", "-0"},             {"1.50", "1.50"},
        {"-0.00", "-0.00"},   {"0.000001", "0.000001"}, {"1e3", "1E+3"},
        {"+1.5", "1.5"},      {".5", "0.5"},            {"5.", "5"},
        {"00012", "12"},      {"0.0000001", "1E-7"},    {"1e-7", "1E-7"},
        {"123e2", "1.23E+4"}, {"1.23e-10", "1.23E-10"}, {"0e5", "0E+5"},
        {"12.3e+1", "123"},   {"1E-3", "0.001"},
        {"123456789012345678901234567890.123456789", "123456789012345678901234567890.123456789"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *v = NULL;
        assert_nori(nori_json_decimal(cases[i][0], "amount", &v), NORI_OK);
        assert_json_string(v, cases[i][1]);
    }
}

static void test_string_constructor(void **state)
{
    (void)state;
    json_t *v;
    assert_nori(nori_json_string("caf\xc3\xa9", 5, "name", &v), NORI_OK);
    assert_json_string(v, "caf\xc3\xa9");
    assert_nori(nori_json_string("a\0b", 3, "name", &v), NORI_OK);
    assert_int_equal(json_string_length(v), 3);
    json_decref(v);
    assert_nori(nori_json_string(NULL, 0, "name", &v), NORI_OK);
    assert_json_string(v, "");
    static const char *const bad[] = {
        "\xc0\xaf",         /* overlong '/' */
        "\xed\xa0\x80",     /* UTF-16 surrogate */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\xf5\x80\x80\x80", /* invalid lead byte */
        "ok\xe2\x82",       /* truncated sequence */
        "\x80",             /* lone continuation byte */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = json_true();
        assert_nori(nori_json_string(bad[i], strlen(bad[i]), "profile.name", &v), NORI_ETYPE);
        assert_null(v);
        assert_error_mentions("profile.name");
        assert_error_mentions("UTF-8");
    }
}

/* ------------------------------------------------------------------------ */
/* Typed constructors: refusals                                             */
/* ------------------------------------------------------------------------ */

static void expect_bad_date(int y, int m, int d, const char *mention)
{
    json_t *v = json_true();
    assert_nori(nori_json_date(&(nori_date){y, m, d}, "user.birthday", &v), NORI_ETYPE);
    assert_null(v);
    assert_error_mentions("user.birthday");
    assert_error_mentions(mention);
    /* The same date inside a datetime is refused the same way. */
    nori_datetime dt = {.year = y, .month = m, .day = d};
    v = json_true();
    assert_nori(nori_json_datetime(&dt, "user.signup", &v), NORI_ETYPE);
    assert_null(v);
    assert_error_mentions("user.signup");
    assert_error_mentions(mention);
}

static void test_refuse_impossible_dates(void **state)
{
    (void)state;
    expect_bad_date(2026, 2, 30, "day 30");
    expect_bad_date(2025, 2, 29, "not a leap year");
    expect_bad_date(1900, 2, 29, "not a leap year"); /* century rule */
    expect_bad_date(2026, 4, 31, "day 31");
    expect_bad_date(2026, 1, 0, "day 0");
    expect_bad_date(2026, 13, 1, "month 13");
    expect_bad_date(2026, 0, 1, "month 0");
    expect_bad_date(0, 1, 1, "year 0");
    expect_bad_date(10000, 1, 1, "year 10000");
    expect_bad_date(-1, 1, 1, "year -1");
}

static void expect_bad_datetime(nori_datetime dt, const char *mention)
{
    json_t *v = json_true();
    assert_nori(nori_json_datetime(&dt, "event.at", &v), NORI_ETYPE);
    assert_null(v);
    assert_error_mentions("event.at");
    assert_error_mentions(mention);
}

static void test_refuse_impossible_times(void **state)
{
    (void)state;
    const nori_datetime ok = {.year = 2026, .month = 1, .day = 1};
    nori_datetime dt = ok;
    dt.hour = 24;
    expect_bad_datetime(dt, "hour 24");
    dt = ok;
    dt.hour = -1;
    expect_bad_datetime(dt, "hour -1");
    dt = ok;
    dt.minute = 60;
    expect_bad_datetime(dt, "minute 60");
    dt = ok;
    dt.second = 60;
    expect_bad_datetime(dt, "second 60");
    dt = ok;
    dt.microsecond = 1000000;
    expect_bad_datetime(dt, "microsecond 1000000");
    dt = ok;
    dt.has_offset = true;
    dt.offset_seconds = 86400;
    expect_bad_datetime(dt, "offset");
    dt.offset_seconds = -86400;
    expect_bad_datetime(dt, "offset");
    /* An offset out of range is fine when has_offset is false (ignored). */
    dt.has_offset = false;
    json_t *v;
    assert_nori(nori_json_datetime(&dt, "event.at", &v), NORI_OK);
    assert_json_string(v, "2026-01-01T00:00:00");
    assert_nori(nori_json_datetime(NULL, "event.at", &v), NORI_EINVAL);
    assert_nori(nori_json_datetime(&ok, "event.at", NULL), NORI_EINVAL);
}

static void test_refuse_malformed_decimals(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",      " 1",   "1 ",        "1 000", "1.2.3", "0x1F", "1F",   "NaN",
        "nan",   "-Inf", "Infinity",  "sNaN",  "1_000", "1e",   "e5",   ".",
        "-",     "+",    "+.e1",      "1e+",   "1e--1", "--1",  "1,5",  "\xef\xbc\x91",
        "1e1000000001",  "12e3.5",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *v = json_true();
        int rc = nori_json_decimal(bad[i], "order.total", &v);
        if (rc != NORI_ETYPE)
            print_error("decimal '%s' was accepted\n", bad[i]);
        assert_nori(rc, NORI_ETYPE);
        assert_null(v);
        assert_error_mentions("order.total");
    }
    json_t *v;
    assert_nori(nori_json_decimal(NULL, "order.total", &v), NORI_EINVAL);
    /* Without a field name the message still says what was refused. */
    assert_nori(nori_json_decimal("abc", NULL, &v), NORI_ETYPE);
    assert_error_mentions("value");
}

/* ------------------------------------------------------------------------ */
/* The default-backend twins                                                */
/* ------------------------------------------------------------------------ */

static json_t *bump(json_t *current, void *ud)
{
    (void)ud;
    json_int_t n = json_is_integer(current) ? json_integer_value(current) : 0;
    return json_integer(n + 1);
}

static void test_default_backend_twins(void **state)
{
    (void)state;
    setenv("CACHE_BACKEND", "memory", 1);
    nori_reset_backend();
    json_t *v = json_pack("{s:s}", "name", "Ada");
    assert_nori(nori_cache_set_json("profile", v, NORI_DEFAULT_TTL), NORI_OK);
    json_t *back = NULL;
    assert_nori(nori_cache_get_json("profile", &back), NORI_OK);
    assert_true(json_equal(v, back));
    json_decref(back);
    json_decref(v);

    json_t *out = NULL;
    assert_nori(nori_cache_atomic_update_json("n", bump, NULL, 0, &out), NORI_OK);
    assert_int_equal(json_integer_value(out), 1);
    json_decref(out);
    assert_nori(nori_cache_atomic_update_json("n", bump, NULL, 0, &out), NORI_OK);
    assert_int_equal(json_integer_value(out), 2);
    json_decref(out);

    json_t *bad = json_string_nocheck("\xff");
    assert_nori(nori_cache_set_json("bad", bad, 0), NORI_ETYPE);
    json_decref(bad);
    assert_nori(nori_cache_get_json("bad", &out), NORI_MISS);
    assert_null(out);
    nori_reset_backend();
}

int main(void)
{
    const struct CMUnitTest storage_tests[] = {
#define STORAGE_TEST(fn) cmocka_unit_test_setup_teardown(fn, backend_setup, backend_teardown)
        STORAGE_TEST(test_roundtrip_object),
        STORAGE_TEST(test_roundtrip_array),
        STORAGE_TEST(test_roundtrip_numbers),
        STORAGE_TEST(test_roundtrip_strings_booleans_null),
        STORAGE_TEST(test_roundtrip_typed),
        STORAGE_TEST(test_set_json_ttl_and_key_rules),
        STORAGE_TEST(test_set_json_too_big),
        STORAGE_TEST(test_refuse_invalid_utf8_string),
        STORAGE_TEST(test_refuse_invalid_utf8_key),
        STORAGE_TEST(test_refuse_cycle),
        STORAGE_TEST(test_refuse_typed_values_nothing_written),
        STORAGE_TEST(test_read_non_json_text_as_string),
        STORAGE_TEST(test_read_python_written_json),
        STORAGE_TEST(test_read_refusals),
        STORAGE_TEST(test_read_refuses_lone_surrogates),
        STORAGE_TEST(test_atomic_update_increments),
        STORAGE_TEST(test_atomic_update_declines),
        STORAGE_TEST(test_atomic_update_refusals),
        STORAGE_TEST(test_atomic_update_concurrent),
#undef STORAGE_TEST
    };
    const struct CMUnitTest codec_tests[] = {
        cmocka_unit_test(test_datetime_text),
        cmocka_unit_test(test_date_text),
        cmocka_unit_test(test_uuid_text),
        cmocka_unit_test(test_decimal_text),
        cmocka_unit_test(test_string_constructor),
        cmocka_unit_test(test_refuse_impossible_dates),
        cmocka_unit_test(test_refuse_impossible_times),
        cmocka_unit_test(test_refuse_malformed_decimals),
        cmocka_unit_test(test_default_backend_twins),
    };
    int failed = 0;
    bool one_server = nori_test_topology_kind_from_env() == NORI_TEST_TOPOLOGY_SERVER;
    for (size_t i = 0; i < sizeof backend_factories / sizeof backend_factories[0]; i++) {
        current_factory = &backend_factories[i];
        if (!one_server && current_factory->create != redis_factory)
            continue;
        char name[96];
        snprintf(name, sizeof name, "json storage on %s%s%s", current_factory->name,
                 one_server ? "" : " ", one_server ? "" : getenv("NORI_TEST_TOPOLOGY"));
        failed += _cmocka_run_group_tests(name, storage_tests,
                                          sizeof storage_tests / sizeof storage_tests[0], NULL,
                                          NULL);
    }
    if (one_server)
        failed += cmocka_run_group_tests_name("json codecs", codec_tests, NULL, NULL);
    nori_test_topology_stop(redis_topology);
    return failed;
}
