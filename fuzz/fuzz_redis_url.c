/* The Redis URL parser on arbitrary strings: never crashes, leaks or shows a
 * password; what it accepts is in range and parses again from its display
 * form (with the password masked). */
#include "fuzz.h"
#include "nori/cache.h"
#include "redis/url.h"

#include <stdbool.h>
#include <stdint.h>
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
                if (once && strstr(nori_last_error(), pw) != NULL && strstr(pw, "***") == NULL)
                    abort();
            }
        }
    }
    free(url);
    return 0;
}
