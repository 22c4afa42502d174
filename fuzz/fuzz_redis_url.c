/* The Redis URL parser on arbitrary strings: never crashes, leaks or shows a
 * password; what it accepts is in range and parses again from its display
 * form (with the password masked). */
#include "fuzz.h"
#include "nori/cache.h"
#include "redis/url.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = malloc(size + 1);
    if (url == NULL)
        return 0;
    memcpy(url, data, size);
    url[size] = '\0';
    nori__redis_url u;
    int rc = nori__redis_url_parse(url, &u);
    if (rc == NORI_OK) {
        if (u.port < 0 || u.port > 65535 || u.db < 0 || u.timeout_ms < 1 ||
            u.connect_timeout_ms < 1 || u.pool_size < 1 || u.display == NULL)
            abort();
        if (u.is_unix ? u.path == NULL || u.path[0] != '/' : u.host == NULL || u.host[0] == '\0')
            abort();
        if (u.password != NULL && strstr(u.display, "***") == NULL)
            abort();
        nori__redis_url again;
        if (nori__redis_url_parse(u.display, &again) != NORI_OK)
            abort();
        if (again.port != u.port || again.db != u.db || again.is_unix != u.is_unix)
            abort();
        nori__redis_url_free(&again);
        nori__redis_url_free(&u);
        /* A password= value never shows in the display. */
        /* The display never shows the password (when its text stands in
         * the URL once: a socket path may hold the same text). */
        if (u.password != NULL && strlen(u.password) >= 12) {
            const char *first = strstr(url, u.password);
            bool once = first != NULL && strstr(first + 1, u.password) == NULL;
            if (once && strstr(u.display, u.password) != NULL)
                abort();
        }
    } else if (rc != NORI_EINVAL) {
        abort();
    } else {
        /* A refused URL's message never carries the text between "://x:" and
         * the last '@' (the password), checked for passwords long enough to
         * be told apart from the rest of the message. */
        const char *scheme = strstr(url, "://");
        const char *at = strrchr(url, '@');
        if (scheme != NULL && at != NULL && at > scheme) {
            const char *colon = memchr(scheme + 3, ':', (size_t)(at - scheme - 3));
            /* No ':' before the '@': the whole userinfo may be a password
             * (redis://secret@host) and is masked whole. */
            if (colon == NULL)
                colon = scheme + 2;
            if (strncmp(url, "unix:///", 8) == 0)
                colon = NULL; /* a socket path: password= carries the password */
            if (colon != NULL && at - colon - 1 >= 12) {
                char pw[64];
                size_t n = (size_t)(at - colon - 1) < sizeof pw - 1 ? (size_t)(at - colon - 1)
                                                                    : sizeof pw - 1;
                memcpy(pw, colon + 1, n);
                pw[n] = '\0';
                /* Only when the text stands in the URL once, as the password:
                 * elsewhere it may be shown. */
                const char *first = strstr(url, pw);
                bool once = first != NULL && strstr(first + 1, pw) == NULL;
                /* The masked URL itself may hold the same text (the
                 * password's tail read across "***@host", as in
                 * "redis://:*@[..........@[.........."): then the message
                 * cannot tell, and nothing is concluded. */
                char masked[512];
                snprintf(masked, sizeof masked, "%.*s***%s", (int)(colon + 1 - url), url, at);
                if (once && strstr(masked, pw) == NULL && strstr(nori_last_error(), pw) != NULL)
                    abort();
            }
        }
        /* Nor the value of a password= option (unix:// takes it). */
        /* (unix:/// only: elsewhere the parser reads no password= option.) */
        const char *first_q = strncmp(url, "unix:///", 8) == 0 ? strchr(url, '?') : NULL;
        for (const char *q = first_q != NULL ? strstr(first_q, "password=") : NULL; q != NULL;
             q = strstr(q + 1, "password=")) {
            if (q == url || (q[-1] != '?' && q[-1] != '&'))
                continue;
            size_t n = strcspn(q + 9, "&");
            if (n < 12 || n > 63)
                continue;
            char pw[64];
            memcpy(pw, q + 9, n);
            pw[n] = '\0';
            const char *first = strstr(url, pw);
            bool once = first != NULL && strstr(first + 1, pw) == NULL;
            if (once && strstr(nori_last_error(), pw) != NULL && strstr(pw, "***") == NULL &&
                strstr(pw, "password=") == NULL)
                abort();
        }
    }
    free(url);
    return 0;
}
