// SPDX-License-Identifier: MIT
/*
 * HTTP-date (RFC 9110 5.6.7): one parser for the three forms a recipient
 * must accept, and the formatter of the one form a sender generates.
 *
 * Locale-free on purpose: strptime("%a %b") and strftime follow LC_TIME, so
 * an application that calls setlocale(LC_ALL, "") in a German locale would
 * stop matching "Sun, 06 Nov 1994 ...". Day and month names are compared
 * byte for byte with the English ones (HTTP-date is case-sensitive), digits
 * are ASCII digits, and the calendar arithmetic is done here (proleptic
 * Gregorian, no time zone: HTTP dates are GMT), so nothing depends on the
 * C library's locale, time zone or time_t width.
 */
#include "http/internal.h"

#include "error.h"

#include <string.h>

static const char *const wkday[7] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const weekday[7] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                       "Thursday", "Friday", "Saturday"};
static const char *const month[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Days from 1970-01-01 to y-m-d (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The inverse: y-m-d of a day count. */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int days_in_month(int64_t y, int m)
{
    static const int n[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))
        return 29;
    return n[m - 1];
}

/* Weekday of a day count, 0 = Sunday (1970-01-01 was a Thursday). */
static int weekday_of(int64_t days)
{
    int64_t w = (days + 4) % 7;
    return (int)(w < 0 ? w + 7 : w);
}

/* A cursor over s[0..len): every reader consumes exactly what it matches. */
typedef struct {
    const char *p, *end;
} cursor;

static int lit(cursor *c, const char *text)
{
    size_t n = strlen(text);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, text, n) != 0)
        return 0;
    c->p += n;
    return 1;
}

/* Exactly n ASCII digits. */
static int digits(cursor *c, int n, int *out)
{
    if (c->end - c->p < n)
        return 0;
    int v = 0;
    for (int i = 0; i < n; i++) {
        char ch = c->p[i];
        if (ch < '0' || ch > '9')
            return 0;
        v = v * 10 + (ch - '0');
    }
    c->p += n;
    *out = v;
    return 1;
}

/* Index of the name in names[n] that s starts with, or -1. The names of one
 * table are never prefixes of one another. */
static int name(cursor *c, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (lit(c, names[i]))
            return i;
    return -1;
}

/* "HH:MM:SS"; a second of 60 is a leap second (RFC 9110 5.6.7). */
static int time_of_day(cursor *c, int *h, int *mi, int *s)
{
    return digits(c, 2, h) && lit(c, ":") && digits(c, 2, mi) && lit(c, ":") &&
           digits(c, 2, s) && *h <= 23 && *mi <= 59 && *s <= 60;
}

int nori__http_date_parse(const char *s, size_t len, int64_t now_s, int64_t *out)
{
    if (s == NULL || out == NULL)
        return nori__fail(NORI_EINVAL, "http date: NULL argument");
    cursor c = {s, s + len};
    int wd, d, m, h, mi, sec, yy;
    int64_t y;
    const char *form;
    if ((wd = name(&c, wkday, 7)) >= 0 && lit(&c, ", ")) {
        /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
        form = "IMF-fixdate";
        if (!(digits(&c, 2, &d) && lit(&c, " ") && (m = name(&c, month, 12)) >= 0 &&
              lit(&c, " ") && digits(&c, 4, &yy) && lit(&c, " ") &&
              time_of_day(&c, &h, &mi, &sec) && lit(&c, " GMT")))
            goto bad;
        y = yy;
    } else if ((c.p = s, wd = name(&c, weekday, 7)) >= 0 && lit(&c, ", ")) {
        /* rfc850-date (obsolete): Sunday, 06-Nov-94 08:49:37 GMT */
        form = "rfc850-date";
        if (!(digits(&c, 2, &d) && lit(&c, "-") && (m = name(&c, month, 12)) >= 0 &&
              lit(&c, "-") && digits(&c, 2, &yy) && lit(&c, " ") &&
              time_of_day(&c, &h, &mi, &sec) && lit(&c, " GMT")))
            goto bad;
        /* A two-digit year that would be more than 50 years in the future is
         * the most recent past year with those digits (RFC 9110 5.6.7). */
        int64_t now_y;
        int now_m, now_d;
        civil_from_days((now_s >= 0 ? now_s : now_s - 86399) / 86400, &now_y, &now_m, &now_d);
        int64_t century = now_y - ((now_y % 100) + 100) % 100;
        y = century + yy;
        if (y > now_y + 50)
            y -= 100;
    } else if ((c.p = s, wd = name(&c, wkday, 7)) >= 0 && lit(&c, " ")) {
        /* asctime-date (obsolete): Sun Nov  6 08:49:37 1994 */
        form = "asctime-date";
        if ((m = name(&c, month, 12)) < 0 || !lit(&c, " "))
            goto bad;
        if (!(lit(&c, " ") ? digits(&c, 1, &d) : digits(&c, 2, &d)))
            goto bad;
        if (!(lit(&c, " ") && time_of_day(&c, &h, &mi, &sec) && lit(&c, " ") &&
              digits(&c, 4, &yy)))
            goto bad;
        y = yy;
    } else {
        return nori__fail(NORI_EINVAL, "http date: no day name in \"%.*s\"",
                          (int)(len > 64 ? 64 : len), s);
    }
    m++; /* 1..12 */
    if (c.p != c.end)
        goto bad; /* trailing bytes */
    if (d < 1 || d > days_in_month(y, m))
        goto bad;
    int64_t days = days_from_civil(y, m, d);
    if (weekday_of(days) != wd)
        return nori__fail(NORI_EINVAL, "http date: \"%.*s\" is not a %s",
                          (int)(len > 64 ? 64 : len), s, weekday[wd]);
    int64_t t = days * 86400 + h * 3600 + mi * 60 + sec;
    if (t > NORI_HTTP_DATE_MAX)
        goto bad; /* 9999-12-31 23:59:60 */
    *out = t;
    return NORI_OK;
bad:
    return nori__fail(NORI_EINVAL, "http date: \"%.*s\" is not a valid %s",
                      (int)(len > 64 ? 64 : len), s, form);
}

static void put2(char *p, int v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

int nori__http_date_format(int64_t t, char out[NORI_HTTP_DATE_SIZE])
{
    if (out == NULL)
        return nori__fail(NORI_EINVAL, "http date: out is NULL");
    if (t < NORI_HTTP_DATE_MIN || t > NORI_HTTP_DATE_MAX) {
        out[0] = '\0';
        return nori__fail(NORI_ERANGE, "http date: %lld is outside years 0000..9999",
                          (long long)t);
    }
    int64_t days = (t >= 0 ? t : t - 86399) / 86400;
    int64_t sod = t - days * 86400;
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    /* "Sun, 06 Nov 1994 08:49:37 GMT" */
    memcpy(out, wkday[weekday_of(days)], 3);
    memcpy(out + 3, ", ", 2);
    put2(out + 5, d);
    out[7] = ' ';
    memcpy(out + 8, month[m - 1], 3);
    out[11] = ' ';
    put2(out + 12, (int)(y / 100));
    put2(out + 14, (int)(y % 100));
    out[16] = ' ';
    put2(out + 17, (int)(sod / 3600));
    out[19] = ':';
    put2(out + 20, (int)(sod / 60 % 60));
    out[22] = ':';
    put2(out + 23, (int)(sod % 60));
    memcpy(out + 25, " GMT", 5); /* with the NUL */
    return NORI_OK;
}
