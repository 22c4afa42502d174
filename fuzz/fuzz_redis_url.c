/* The Redis URL parser on arbitrary strings: never crashes or leaks; what
 * it accepts is in range and parses again from its display form; and no
 * password ever shows, neither in the display form of an accepted URL nor in
 * the message about a refused one nor in the masked form.
 *
 * Where the password is comes from the parser itself
 * (nori__redis_url_password_spans, built on the helpers the parser uses), so
 * the oracle cannot disagree with the parser about it (issue 10 item 21: an
 * oracle of its own took "nect_timeout_" for a password after '?' had ended
 * the authority, and matched a password's tail inside the host). A span is
 * checked when its text stands exactly once in the URL and holds no '*'
 * (else the same text may legitimately show elsewhere, or straddle "***"). */
#include "fuzz.h"
#include "nori/cache.h"
#include "redis/url.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SPANS 8

typedef struct secret {
    char text[NORI_REDIS_MAX_URL_LEN + 1];
    size_t len;
} secret;

/* The checkable password texts of url. */
static size_t secrets_of(const char *url, secret *out)
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
static bool shows(const char *msg, const char *echo, const secret *s)
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 2 * NORI_REDIS_MAX_URL_LEN)
        return 0;
    char *url = malloc(size + 1);
    if (url == NULL)
        return 0;
    memcpy(url, data, size);
    url[size] = '\0';
    static secret secrets[MAX_SPANS];
    size_t nsecrets = secrets_of(url, secrets);
    nori__redis_span spans[MAX_SPANS];
    size_t nspans = nori__redis_url_password_spans(url, spans, MAX_SPANS);

    /* The masker, on anything. */
    static char masked[2 * NORI_REDIS_MAX_URL_LEN + 64];
    nori__redis_url_mask(url, masked, sizeof masked);
    for (size_t i = 0; i < nsecrets; i++)
        if (strstr(masked, secrets[i].text) != NULL)
            abort();

    nori__redis_url u;
    int rc = nori__redis_url_parse(url, &u);
    if (rc == NORI_OK) {
        if (u.port < 0 || u.port > 65535 || u.db < 0 || u.timeout_ms < 1 ||
            u.connect_timeout_ms < 1 || u.pool_size < 1 || u.circuit_failures < 0 ||
            u.circuit_cooldown_ms < 1 || u.display == NULL)
            abort();
        if (u.is_unix ? u.path == NULL || u.path[0] != '/' : u.host == NULL || u.host[0] == '\0')
            abort();
        /* The parser read a password exactly when the spans say there is one. */
        if ((u.password != NULL) != (nspans > 0))
            abort();
        if (u.password != NULL && strstr(u.display, "***") == NULL)
            abort();
        for (size_t i = 0; i < nsecrets; i++)
            if (strstr(u.display, secrets[i].text) != NULL)
                abort();
        nori__redis_url again;
        if (nori__redis_url_parse(u.display, &again) != NORI_OK)
            abort();
        if (again.port != u.port || again.db != u.db || again.is_unix != u.is_unix ||
            (again.password != NULL) != (u.password != NULL))
            abort();
        nori__redis_url_free(&again);
        nori__redis_url_free(&u);
    } else if (rc != NORI_EINVAL) {
        abort();
    } else {
        /* Messages echo the URL masked into 256 bytes (fail_url). */
        char echo[256];
        nori__redis_url_mask(url, echo, sizeof echo);
        const char *msg = nori_last_error();
        for (size_t i = 0; i < nsecrets; i++)
            if (shows(msg, echo, &secrets[i]))
                abort();
    }
    free(url);
    return 0;
}
