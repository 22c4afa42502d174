// SPDX-License-Identifier: MIT
/* The Redis URL parser on arbitrary strings: never crashes or leaks; what
 * it accepts is in range and parses again from its display form; and no
 * password ever shows, neither in the display form of an accepted URL nor in
 * the message about a refused one nor in the masked form (url_oracle.h says
 * where the passwords are: the parser's own spans). */
#include "fuzz.h"
#include "nori/cache.h"
#include "redis/wire/url.h"
#include "url_oracle.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
        if (quotes_other_form(msg, echo))
            abort();
        for (size_t i = 0; i < nsecrets; i++)
            if (shows(msg, echo, &secrets[i]))
                abort();
    }
    free(url);
    return 0;
}
