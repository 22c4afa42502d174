// SPDX-License-Identifier: MIT
/*
 * HTTP-date (src/http/date.c), run under a German locale (de_DE.UTF-8, set
 * up by scripts/setup.sh): the three forms RFC 9110 5.6.7 asks recipients
 * to accept, strictness on everything else, the IMF-fixdate formatter
 * (checked against gmtime_r over the whole range), and conditional GETs
 * whose If-Modified-Since and Last-Modified use English names while LC_ALL
 * says German. The program fails, never skips, when the locale is missing:
 * a locale-dependent parser would otherwise pass here unnoticed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_support.h"

#include "http/internal.h"
#include "http_test_headers.h"

#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NOW_2025 1748736000LL /* Sun, 01 Jun 2025 00:00:00 GMT */
#define NOW_2024 1717200000LL /* Sat, 01 Jun 2024 00:00:00 GMT */

static int parse(const char *s, int64_t now, int64_t *t)
{
    return nori__http_date_parse(s, strlen(s), now, t);
}

static void expect(const char *s, int64_t want)
{
    int64_t t = 0;
    int rc = parse(s, NOW_2025, &t);
    if (rc != NORI_OK)
        fail_msg("\"%s\" refused: %s", s, nori_last_error());
    if (t != want)
        fail_msg("\"%s\" gave %lld, expected %lld", s, (long long)t, (long long)want);
}

static void refuse(const char *s)
{
    int64_t t = 12345;
    if (parse(s, NOW_2025, &t) != NORI_EINVAL)
        fail_msg("\"%s\" accepted as %lld", s, (long long)t);
    assert_int_equal(t, 12345); /* untouched */
}

/* The locale really is German: strftime names a Sunday "So". */
static void test_locale_is_german(void **state)
{
    (void)state;
    struct tm tm = {.tm_wday = 0, .tm_mon = 2};
    char buf[32];
    assert_true(strftime(buf, sizeof buf, "%a %b", &tm) > 0);
    if (strcmp(buf, "So Mär") != 0)
        fail_msg("LC_TIME is not German here (\"%s\"): the test proves nothing", buf);
}

static void test_three_forms(void **state)
{
    (void)state;
    /* RFC 9110 5.6.7's own example, in its three forms. */
    expect("Sun, 06 Nov 1994 08:49:37 GMT", 784111777);
    expect("Sunday, 06-Nov-94 08:49:37 GMT", 784111777);
    expect("Sun Nov  6 08:49:37 1994", 784111777);
    expect("Sun Nov 06 08:49:37 1994", 784111777); /* asctime's day: 2DIGIT too */
    expect("Thu, 01 Jan 1970 00:00:00 GMT", 0);
    expect("Wed, 31 Dec 1969 23:59:59 GMT", -1);
    expect("Tue, 29 Feb 2000 00:00:00 GMT", 951782400);
    expect("Thu, 29 Feb 2024 12:00:00 GMT", 1709208000);
    expect("Thu Feb 29 12:00:00 2024", 1709208000);
    expect("Thursday, 29-Feb-24 12:00:00 GMT", 1709208000);
    /* A leap second is the next second. */
    expect("Sat, 31 Dec 2016 23:59:60 GMT", 1483228800);
    /* The range ends. */
    expect("Sat, 01 Jan 0000 00:00:00 GMT", NORI_HTTP_DATE_MIN);
    expect("Fri, 31 Dec 9999 23:59:59 GMT", NORI_HTTP_DATE_MAX);
}

/* rfc850's two-digit year: more than 50 years ahead means the century before. */
static void test_rfc850_year(void **state)
{
    (void)state;
    int64_t t;
    /* In 2025, "75" is 2075 (50 years ahead, not more): a Wednesday. */
    assert_nori(parse("Wednesday, 06-Nov-75 08:49:37 GMT", NOW_2025, &t), NORI_OK);
    assert_int_equal(t, 3340255777LL);
    assert_nori(parse("Thursday, 06-Nov-75 08:49:37 GMT", NOW_2025, &t), NORI_EINVAL);
    /* In 2024, 2075 would be 51 years ahead: 1975, a Thursday. */
    assert_nori(parse("Thursday, 06-Nov-75 08:49:37 GMT", NOW_2024, &t), NORI_OK);
    assert_int_equal(t, 184495777);
    assert_nori(parse("Wednesday, 06-Nov-75 08:49:37 GMT", NOW_2024, &t), NORI_EINVAL);
}

static void test_strict(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "Sun",
        "Sun, 06 Nov 1994 08:49:37",           /* no zone */
        "Sun, 06 Nov 1994 08:49:37 UTC",       /* only GMT */
        "Sun, 06 Nov 1994 08:49:37 GMT ",      /* trailing space */
        " Sun, 06 Nov 1994 08:49:37 GMT",      /* leading space */
        "Sun, 06 Nov 1994 08:49:37 GMTx",      /* trailing garbage */
        "Sun, 06 Nov 1994 08:49:37 GMT\r\n",
        "Mon, 06 Nov 1994 08:49:37 GMT",       /* 1994-11-06 was a Sunday */
        "Sonntag, 06-Nov-94 08:49:37 GMT",     /* German day name */
        "So, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Mär 1994 08:49:37 GMT",       /* German month name */
        "sun, 06 nov 1994 08:49:37 gmt",       /* case-sensitive */
        "SUN, 06 NOV 1994 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",        /* 2DIGIT day */
        "Sun,  6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",         /* 4DIGIT year */
        "Sun, 06 Nov 01994 08:49:37 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Sun, 06 Nov 1994 08:49 GMT",
        "Sun, 06  Nov 1994 08:49:37 GMT",      /* double space */
        "Sun,06 Nov 1994 08:49:37 GMT",
        "Sun, 06-Nov-1994 08:49:37 GMT",       /* mixed forms */
        "Sunday, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06-Nov-94 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37",
        "Sun Nov 6 08:49:37 1994",             /* asctime: SP DIGIT or 2DIGIT */
        "Sun Nov  6 08:49:37 1994 GMT",
        "Sun Nov  6 08:49:37 94",
        "Sun Nov   6 08:49:37 1994",
        "Mon, 32 Nov 1994 08:49:37 GMT",       /* out of range */
        "Wed, 31 Nov 1994 08:49:37 GMT",
        "Tue, 00 Nov 1994 08:49:37 GMT",
        "Sun, 29 Feb 2023 00:00:00 GMT",       /* 2023 is no leap year */
        "Tue, 29 Feb 2100 00:00:00 GMT",       /* nor 2100 */
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:37 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Fri, 31 Dec 9999 23:59:60 GMT",       /* past the range */
        "Sun, 06 Nov 1994 08:49:3a GMT",
        "Sun, 06 Nov 1994 08:49:-7 GMT",
        "Sun, 06 Nov +994 08:49:37 GMT",
        "Sun, 06 Xyz 1994 08:49:37 GMT",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        refuse(bad[i]);
    /* Bytes after the given length are not read; a NUL inside it is garbage. */
    int64_t t;
    const char s[] = "Sun, 06 Nov 1994 08:49:37 GMT!";
    assert_nori(nori__http_date_parse(s, sizeof s - 2, NOW_2025, &t), NORI_OK);
    assert_int_equal(t, 784111777);
    assert_nori(nori__http_date_parse(s, sizeof s - 1, NOW_2025, &t), NORI_EINVAL);
    const char nul[] = "Sun, 06 Nov 1994 08:49:37 GMT\0";
    assert_nori(nori__http_date_parse(nul, sizeof nul - 1, NOW_2025, &t), NORI_EINVAL);
    assert_nori(nori__http_date_parse(s, 10, NOW_2025, &t), NORI_EINVAL);
    assert_nori(nori__http_date_parse(NULL, 0, NOW_2025, &t), NORI_EINVAL);
}

static void test_format(void **state)
{
    (void)state;
    char out[NORI_HTTP_DATE_SIZE];
    assert_nori(nori__http_date_format(784111777, out), NORI_OK);
    assert_string_equal(out, "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_nori(nori__http_date_format(-1, out), NORI_OK);
    assert_string_equal(out, "Wed, 31 Dec 1969 23:59:59 GMT");
    assert_nori(nori__http_date_format(NORI_HTTP_DATE_MIN, out), NORI_OK);
    assert_string_equal(out, "Sat, 01 Jan 0000 00:00:00 GMT");
    assert_nori(nori__http_date_format(NORI_HTTP_DATE_MAX, out), NORI_OK);
    assert_string_equal(out, "Fri, 31 Dec 9999 23:59:59 GMT");
    assert_nori(nori__http_date_format(NORI_HTTP_DATE_MAX + 1, out), NORI_ERANGE);
    assert_string_equal(out, "");
    assert_nori(nori__http_date_format(NORI_HTTP_DATE_MIN - 1, out), NORI_ERANGE);
    assert_nori(nori__http_date_format(INT64_MIN, out), NORI_ERANGE);
    assert_nori(nori__http_date_format(INT64_MAX, out), NORI_ERANGE);
}

/* Across the whole range: the formatter agrees with gmtime_r (the C
 * library's calendar, locale-free), and parsing gives the instant back. */
static void test_round_trip(void **state)
{
    (void)state;
    static const char *const wd[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const mo[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    uint64_t x = 0x9E3779B97F4A7C15ull;
    const uint64_t span = (uint64_t)(NORI_HTTP_DATE_MAX - NORI_HTTP_DATE_MIN) + 1;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int64_t t;
        if (i < 4) /* the ends and the epoch's neighbours */
            t = (int64_t[]){NORI_HTTP_DATE_MIN, NORI_HTTP_DATE_MAX, 0, -1}[i];
        else if (i % 2)
            t = NORI_HTTP_DATE_MIN + (int64_t)(x % span);
        else /* dense around today */
            t = NOW_2025 + (int64_t)(x % (200ull * 366 * 86400)) - 100LL * 366 * 86400;
        char out[NORI_HTTP_DATE_SIZE], want[64];
        assert_nori(nori__http_date_format(t, out), NORI_OK);
        time_t tt = (time_t)t;
        struct tm tm;
        assert_non_null(gmtime_r(&tt, &tm));
        snprintf(want, sizeof want, "%s, %02d %s %04d %02d:%02d:%02d GMT", wd[tm.tm_wday],
                 tm.tm_mday, mo[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                 tm.tm_sec);
        if (strcmp(out, want) != 0)
            fail_msg("%lld: formatted \"%s\", gmtime_r says \"%s\"", (long long)t, out, want);
        int64_t back;
        assert_nori(parse(out, NOW_2025, &back), NORI_OK);
        assert_int_equal(back, t);
    }
}

/* The cache's conditional GET under the German locale: If-Modified-Since
 * in any of the three forms against an English Last-Modified. */
static void test_not_modified_in_german_locale(void **state)
{
    (void)state;
    nori_http_response r;
    nori_http_response_init(&r);
    assert_nori(nori_http_response_add_header(&r, "Last-Modified",
                                              "Sun, 06 Nov 1994 08:49:37 GMT"),
                NORI_OK);
    static const struct {
        const char *ims;
        int not_modified;
    } cases[] = {
        {"Sun, 06 Nov 1994 08:49:37 GMT", 1},
        {"Sunday, 06-Nov-94 08:49:37 GMT", 1},
        {"Sun Nov  6 08:49:37 1994", 1},
        {"Mon, 07 Nov 1994 00:00:00 GMT", 1},
        {"Sun, 06 Nov 1994 08:49:36 GMT", 0}, /* a second before */
        {"Sat Nov  5 08:49:37 1994", 0},
        {"Mon, 06 Nov 1994 08:49:37 GMT", 0}, /* invalid: ignored */
        {"So, 06 Nov 1994 08:49:37 GMT", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        test_header hh[] = {{"If-Modified-Since", cases[i].ims}};
        test_headers h = {hh, 1};
        nori_http_request req = {"GET", "/p", "", test_header_lookup, &h, NULL, 0, NULL};
        if (nori__http_not_modified(&req, &r) != cases[i].not_modified)
            fail_msg("If-Modified-Since: %s: expected %s", cases[i].ims,
                     cases[i].not_modified ? "304" : "200");
    }
    nori_http_response_clear(&r);
}

int main(void)
{
    /* The point of this program: the parser must not care about LC_TIME.
     * Fail loudly when the locale is missing rather than pass in "C". */
    if (setlocale(LC_ALL, "de_DE.UTF-8") == NULL) {
        fprintf(stderr, "test_http_date: the de_DE.UTF-8 locale is not installed; run "
                        "scripts/setup.sh (Debian: package locales, then localedef -i de_DE "
                        "-f UTF-8 de_DE.UTF-8)\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_locale_is_german),
        cmocka_unit_test(test_three_forms),
        cmocka_unit_test(test_rfc850_year),
        cmocka_unit_test(test_strict),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_not_modified_in_german_locale),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
