// SPDX-License-Identifier: MIT
/*
 * Cache keys of the response cache. Nori's shape, `{prefix}:{path}:{query}`,
 * made injective by percent-encoding the separators inside each component
 * (see the "Keys" section of nori/http.h for the exact rule and what it
 * changes). Keys are built into a caller's fixed buffer: no allocation on
 * the request path, and a key that does not fit is refused, never truncated.
 */
#include "http/internal.h"

#include "error.h"

#include <ctype.h>
#include <string.h>

typedef struct {
    char *out;
    size_t cap; /* usable bytes, the NUL excluded */
    size_t len;
    bool overflow;
} key_writer;

static void put(key_writer *w, char c)
{
    if (w->len < w->cap)
        w->out[w->len] = c;
    else
        w->overflow = true;
    w->len++;
}

static void put_raw(key_writer *w, const char *s)
{
    for (; *s != '\0'; s++)
        put(w, *s);
}

/* Appends s with ':' and '%' escaped, and also ',' and '=' when `pairs`
 * (vary names and values); with `lower`, letters are lower-cased. */
static void put_escaped(key_writer *w, const char *s, bool pairs, bool lower)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == ':' || c == '%' || (pairs && (c == ',' || c == '='))) {
            put(w, '%');
            put(w, hex[c >> 4]);
            put(w, hex[c & 15]);
        } else {
            put(w, lower ? (char)tolower(c) : (char)c);
        }
    }
}

int nori__http_key_build(const char *prefix, const char *keycomp, const char *path,
                         const char *query, const char *const *vary_on, size_t n_vary,
                         const nori_http_request *req, char *out, size_t cap)
{
    if (cap == 0)
        return nori__fail(NORI_ETOOBIG, "no room for a key");
    size_t limit = cap - 1 < NORI_MAX_KEY_LEN ? cap - 1 : NORI_MAX_KEY_LEN;
    key_writer w = {out, limit, 0, false};
    put_raw(&w, prefix);
    if (keycomp != NULL) {
        put(&w, ':');
        put_escaped(&w, keycomp, false, false);
    }
    put(&w, ':');
    put_escaped(&w, path != NULL ? path : "", false, false);
    put(&w, ':');
    put_escaped(&w, query != NULL ? query : "", false, false);
    if (n_vary > 0) {
        put_raw(&w, ":vary=");
        for (size_t i = 0; i < n_vary; i++) {
            if (i > 0)
                put(&w, ',');
            const char *v = nori_http_request_header(req, vary_on[i]);
            put_escaped(&w, vary_on[i], true, true);
            put(&w, '=');
            put_escaped(&w, v != NULL ? v : "", true, false);
        }
    }
    out[w.len < limit ? w.len : limit] = '\0';
    if (w.overflow)
        return nori__fail(NORI_ETOOBIG, "cache key for path %.64s is %zu bytes, the limit is %zu",
                          path != NULL ? path : "", w.len, limit);
    return NORI_OK;
}
