// SPDX-License-Identifier: MIT
/* The response cache's key builder on arbitrary requests: the input is split
 * into two requests (key-function output, path, query and two vary headers
 * each, any of which may be missing) and built under one of four cache
 * configurations. Checks, for every pair:
 *  - a key that is built is at most NORI_MAX_KEY_LEN bytes and parses back
 *    (split on ':', ',' and '=', then %XX undone) to exactly the components
 *    it was built from, so no two different requests can share it;
 *  - two requests get the same key if and only if they are the same request
 *    as far as the configuration looks (a missing header counts as empty,
 *    as in Nori's shape);
 *  - a key that does not fit (over the limit, or over the caller's buffer
 *    by a single byte) is refused, never truncated. */
#include "fuzz.h"
#include "http/internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { F_KEY, F_PATH, F_QUERY, F_H1, F_H2, N_FIELDS };

typedef struct {
    const char *f[N_FIELDS]; /* NULL = missing (headers, key-fn output) */
} fz_request;

static const char *const vary_names[] = {"Accept-Language", "X-Tenant"};

static const char *header(void *ud, const char *name)
{
    const fz_request *r = ud;
    if (strcasecmp(name, vary_names[0]) == 0)
        return r->f[F_H1];
    if (strcasecmp(name, vary_names[1]) == 0)
        return r->f[F_H2];
    return NULL;
}

/* The key function: the request's F_KEY field, or opt out when missing. */
static int key_fn(const nori_http_request *req, void *ud, char *out, size_t cap)
{
    (void)ud;
    const fz_request *r = req->header_ud;
    if (r->f[F_KEY] == NULL)
        return -1;
    return snprintf(out, cap, "%s", r->f[F_KEY]);
}

static nori_http_cache *caches[4]; /* bit 0: key function, bit 1: vary on both */

static void make_caches(void)
{
    for (int i = 0; i < 4; i++) {
        nori_http_cache_options o;
        nori_http_cache_options_init(&o);
        if (i & 1)
            o.key_fn = key_fn;
        if (i & 2) {
            o.vary_on = vary_names;
            o.n_vary_on = 2;
        }
        if (nori_http_cache_new(&o, &caches[i]) != NORI_OK)
            abort();
    }
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Undoes %XX in s[0..n) into out; 0, or -1 on a malformed escape or an
 * unescaped character that should have been escaped. */
static int unescape(const char *s, size_t n, int pairs, char *out)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == ':' || (pairs && (c == ',' || c == '=')))
            return -1;
        if (c == '%') {
            if (i + 2 >= n || hex_digit(s[i + 1]) < 0 || hex_digit(s[i + 2]) < 0)
                return -1;
            c = (char)(hex_digit(s[i + 1]) << 4 | hex_digit(s[i + 2]));
            i += 2;
        }
        out[j++] = c;
    }
    out[j] = '\0';
    return 0;
}

/* Compares the component s[0..n) of a key with the expected raw text. */
static void expect_component(const char *s, size_t n, int pairs, const char *raw)
{
    char buf[NORI_MAX_KEY_LEN + 1];
    if (unescape(s, n, pairs, buf) != 0 || strcmp(buf, raw) != 0)
        abort();
}

/* Parses key back under configuration `cfg` and checks it against r. */
static void check_parses_back(const char *key, int cfg, const fz_request *r)
{
    const char *p = key;
    if (strncmp(p, "view:", 5) != 0)
        abort();
    p += 5;
    int n_colon_fields = (cfg & 1) ? 3 : 2;
    const char *raw[3];
    int k = 0;
    if (cfg & 1)
        raw[k++] = r->f[F_KEY];
    raw[k++] = r->f[F_PATH];
    raw[k++] = r->f[F_QUERY];
    for (int i = 0; i < n_colon_fields; i++) {
        size_t n = strcspn(p, ":");
        expect_component(p, n, 0, raw[i]);
        p += n;
        if (i + 1 < n_colon_fields) {
            if (*p != ':')
                abort();
            p++;
        }
    }
    if (!(cfg & 2)) {
        if (*p != '\0')
            abort();
        return;
    }
    if (strncmp(p, ":vary=", 6) != 0)
        abort();
    p += 6;
    static const char *const lower[] = {"accept-language", "x-tenant"};
    for (int i = 0; i < 2; i++) {
        size_t n = strcspn(p, "=");
        expect_component(p, n, 1, lower[i]);
        p += n;
        if (*p++ != '=')
            abort();
        n = strcspn(p, ",");
        const char *v = r->f[i == 0 ? F_H1 : F_H2];
        expect_component(p, n, 1, v != NULL ? v : "");
        p += n;
        if (i == 0 && *p++ != ',')
            abort();
    }
    if (*p != '\0')
        abort();
}

static int same(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

/* Whether a and b are the same request as cache configuration cfg sees it. */
static int same_request(int cfg, const fz_request *a, const fz_request *b)
{
    if (!same(a->f[F_PATH], b->f[F_PATH]) || !same(a->f[F_QUERY], b->f[F_QUERY]))
        return 0;
    if ((cfg & 1) && !same(a->f[F_KEY], b->f[F_KEY]))
        return 0;
    if ((cfg & 2) && (!same(a->f[F_H1], b->f[F_H1]) || !same(a->f[F_H2], b->f[F_H2])))
        return 0;
    return 1;
}

/* Builds r's key; returns the rc and checks what a built key must satisfy. */
static int build(int cfg, fz_request *r, char *key)
{
    nori_http_request req = {"GET", r->f[F_PATH], r->f[F_QUERY], header, r, NULL, 0, NULL};
    int rc = nori_http_cache_key(caches[cfg], &req, key, NORI_MAX_KEY_LEN + 1);
    if (rc == NORI_OK) {
        size_t len = strlen(key);
        if (len > NORI_MAX_KEY_LEN)
            abort();
        check_parses_back(key, cfg, r);
        /* A buffer one byte too small refuses the key; an exact one holds it. */
        char small[NORI_MAX_KEY_LEN + 1];
        if (nori_http_cache_key(caches[cfg], &req, small, len) != NORI_ETOOBIG ||
            nori_http_cache_key(caches[cfg], &req, small, len + 1) != NORI_OK ||
            strcmp(small, key) != 0)
            abort();
    } else if (rc == NORI_MISS) {
        if (!(cfg & 1) || r->f[F_KEY] != NULL)
            abort(); /* only the key function opts a request out */
    } else if (rc != NORI_ETOOBIG) {
        abort();
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (caches[0] == NULL)
        make_caches();
    if (size < 2)
        return 0;
    int cfg = data[0] & 3;
    unsigned missing = data[1]; /* bits: A key, A h1, A h2, B key, B h1, B h2 */
    /* The rest: up to ten NUL-separated fields, A's five then B's five. */
    char *text = malloc(size - 2 + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data + 2, size - 2);
    text[size - 2] = '\0';
    fz_request rq[2];
    const char *p = text, *end = text + (size - 2);
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < N_FIELDS; k++) {
            rq[i].f[k] = p < end ? p : "";
            if (p < end)
                p += strlen(p) + 1;
        }
    for (int i = 0; i < 2; i++) {
        if (missing & (1u << (3 * i)))
            rq[i].f[F_KEY] = NULL;
        if (missing & (2u << (3 * i)))
            rq[i].f[F_H1] = NULL;
        if (missing & (4u << (3 * i)))
            rq[i].f[F_H2] = NULL;
    }
    char ka[NORI_MAX_KEY_LEN + 1], kb[NORI_MAX_KEY_LEN + 1];
    int ra = build(cfg, &rq[0], ka), rb = build(cfg, &rq[1], kb);
    if (ra == NORI_OK && rb == NORI_OK) {
        int same_key = strcmp(ka, kb) == 0;
        if (same_key != same_request(cfg, &rq[0], &rq[1]))
            abort();
    }
    free(text);
    return 0;
}
