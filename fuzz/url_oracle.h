// SPDX-License-Identifier: MIT
/*
 * The password oracle of the URL fuzz targets (fuzz_redis_url,
 * fuzz_redis_topology): where a password is comes from the parser itself
 * (nori__redis_url_password_spans, built on the helpers both parsers use,
 * option names matched in any case), so the oracle cannot disagree with the
 * parsers about it (issue 10 item 21: an oracle of its own took
 * "nect_timeout_" for a password after '?' had ended the authority, and
 * matched a password's tail inside the host). A span is checked when its
 * text stands exactly once in the URL and holds no '*' (else the same text
 * may legitimately show elsewhere, or straddle "***").
 */
#ifndef NORI_FUZZ_URL_ORACLE_H
#define NORI_FUZZ_URL_ORACLE_H

#include "redis/wire/url.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#define MAX_SPANS 8

typedef struct secret {
    char text[NORI_REDIS_MAX_URL_LEN + 1];
    size_t len;
} secret;

/* The checkable password texts of url. */
static inline size_t secrets_of(const char *url, secret *out)
{
    nori__redis_span spans[MAX_SPANS];
    size_t n = nori__redis_url_password_spans(url, spans, MAX_SPANS);
    size_t k = 0;
    for (size_t i = 0; i < n && i < MAX_SPANS; i++) {
        if (spans[i].len == 0 || spans[i].len > NORI_REDIS_MAX_URL_LEN)
            continue;
        memcpy(out[k].text, url + spans[i].off, spans[i].len);
        out[k].text[spans[i].len] = '\0';
        out[k].len = spans[i].len;
        const char *first = strstr(url, out[k].text);
        bool once = first != NULL && strstr(first + 1, out[k].text) == NULL;
        if (once && memchr(out[k].text, '*', out[k].len) == NULL)
            k++;
    }
    return k;
}

/*
 * Does msg show s? A message about a refused URL echoes it masked (echo)
 * and adds the parser's fixed reason text: an occurrence inside the echo is
 * a leak at any length; one outside it is the reason text matching by
 * chance (the reasons name the options, which libFuzzer learns from the
 * parser's comparisons: a password "connect_timeo" is in "(known: ...,
 * connect_timeout_ms, ...)"), and one straddling the echo's edge is a chance
 * match too (a password "\x17\x17'" = the echo's last bytes and the quote
 * after it). A message without an echo ("REDIS_URL is 5000 bytes long")
 * must not hold a text of 16 bytes or more.
 */
static inline bool shows(const char *msg, const char *echo, const secret *s)
{
    const char *m = echo[0] != '\0' ? strstr(msg, echo) : NULL;
    size_t ma = m != NULL ? (size_t)(m - msg) : 0, mb = m != NULL ? ma + strlen(echo) : 0;
    for (const char *p = strstr(msg, s->text); p != NULL; p = strstr(p + 1, s->text)) {
        size_t a = (size_t)(p - msg), b = a + s->len;
        if (m != NULL ? a >= ma && b <= mb : s->len >= 16)
            return true;
    }
    return false;
}

/*
 * A message that quotes the URL ("REDIS_URL '...' is malformed: ...") quotes
 * exactly the one masker's form of the URL as written, `echo`: a message
 * rendered by a masker of its own (the topology parser once re-rendered the
 * inner parser's message, showing "?PASSWORD=") fails here whatever the
 * password's length.
 */
static inline bool quotes_other_form(const char *msg, const char *echo)
{
    static const char lead[] = "REDIS_URL '";
    if (strncmp(msg, lead, sizeof lead - 1) != 0 || strncmp(msg, "REDIS_URL '' ", 13) == 0)
        return false;
    const char *q = msg + sizeof lead - 1;
    size_t n = strlen(echo);
    return strncmp(q, echo, n) != 0 || strncmp(q + n, "' is malformed: ", 16) != 0;
}

#endif
