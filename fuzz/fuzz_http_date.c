// SPDX-License-Identifier: MIT
/* HTTP-date (src/http/date.c) on arbitrary input, both ways:
 *  - the first 8 bytes as an instant t (folded into years 0000..9999, plus
 *    a few out of range): format(t) is an IMF-fixdate of 29 bytes that
 *    parses back to exactly t; out of range is refused with "";
 *  - the whole input as a date: whatever the parser accepts is in range,
 *    formats, and the formatted text parses to the same instant; an IMF-
 *    fixdate without a leap second re-formats to exactly the input.
 * The rfc850 century depends on "now": the next 8 bytes pick it. */
#include "fuzz.h"
#include "http/internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int64_t take64(const uint8_t *data, size_t size, size_t at)
{
    uint64_t v = 0;
    for (size_t i = 0; i < 8 && at + i < size; i++)
        v = v << 8 | data[at + i];
    return (int64_t)v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint64_t span = (uint64_t)(NORI_HTTP_DATE_MAX - NORI_HTTP_DATE_MIN) + 1;
    int64_t raw = take64(data, size, 0);
    int64_t now = NORI_HTTP_DATE_MIN + (int64_t)((uint64_t)take64(data, size, 8) % span);
    char out[NORI_HTTP_DATE_SIZE], again[NORI_HTTP_DATE_SIZE];
    int64_t back;

    /* format, then parse */
    int64_t t = NORI_HTTP_DATE_MIN + (int64_t)((uint64_t)raw % span);
    if (nori__http_date_format(t, out) != NORI_OK || strlen(out) != NORI_HTTP_DATE_SIZE - 1)
        abort();
    if (nori__http_date_parse(out, strlen(out), now, &back) != NORI_OK || back != t)
        abort();
    if (raw > NORI_HTTP_DATE_MAX || raw < NORI_HTTP_DATE_MIN) {
        if (nori__http_date_format(raw, out) != NORI_ERANGE || out[0] != '\0')
            abort();
    }

    /* parse, then format */
    const char *s = (const char *)data;
    int rc = nori__http_date_parse(s, size, now, &t);
    if (rc == NORI_OK) {
        if (t < NORI_HTTP_DATE_MIN || t > NORI_HTTP_DATE_MAX)
            abort();
        if (nori__http_date_format(t, out) != NORI_OK)
            abort();
        if (nori__http_date_parse(out, strlen(out), now, &back) != NORI_OK || back != t)
            abort();
        if (nori__http_date_format(back, again) != NORI_OK || strcmp(out, again) != 0)
            abort();
        /* An IMF-fixdate is the formatter's own form: same bytes back,
         * unless it named a leap second (":60" is read as the next second). */
        if (size == NORI_HTTP_DATE_SIZE - 1 && s[3] == ',' && memcmp(s + 23, "60", 2) != 0 &&
            memcmp(out, s, size) != 0)
            abort();
    } else if (rc != NORI_EINVAL) {
        abort();
    }
    return 0;
}
