// SPDX-License-Identifier: MIT
#include "redis/route/url_topology.h"

#include "error.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENTINEL_SCHEME "redis+sentinel://"
#define SENTINEL_DEFAULT_PORT 26379
#define MAX_MASTER_NAME 128

/* Every message names the URL as the user wrote it, masked by the one
 * masker (url.h). */
static int fail_url(const char *url, const char *what)
{
    return nori__redis_url_fail(url, what);
}

static bool parse_port(const char *s, size_t n, int *out)
{
    if (n == 0 || n > 5)
        return false;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return false;
    *out = v;
    return true;
}

static int parse_addr(const char *s, size_t n, int default_port, nori__redis_addr *out)
{
    const char *host = s, *port = NULL;
    size_t host_len;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close == NULL)
            return NORI_EINVAL;
        host = s + 1;
        host_len = (size_t)(close - host);
        if (close + 1 < s + n) {
            if (close[1] != ':')
                return NORI_EINVAL;
            port = close + 2;
        }
    } else {
        const char *colon = memchr(s, ':', n);
        host_len = colon != NULL ? (size_t)(colon - s) : n;
        if (colon != NULL)
            port = colon + 1;
    }
    if (host_len == 0 || host_len > 255)
        return NORI_EINVAL;
    for (size_t i = 0; i < host_len; i++) {
        unsigned char c = (unsigned char)host[i];
        if (!(isalnum(c) || c == '.' || c == '-' || c == '_' || c == ':'))
            return NORI_EINVAL;
    }
    int p = default_port;
    if (port != NULL && !parse_port(port, (size_t)(s + n - port), &p))
        return NORI_EINVAL;
    if (port == NULL && default_port == 0)
        return NORI_EINVAL;
    out->host = strndup(host, host_len);
    if (out->host == NULL)
        return NORI_ENOMEM;
    out->port = p;
    return NORI_OK;
}

int nori__redis_addr_parse(const char *s, size_t n, nori__redis_addr *out)
{
    return parse_addr(s, n, 0, out);
}

void nori__redis_target_free(nori__redis_target *t)
{
    if (t == NULL)
        return;
    nori__redis_url_free(&t->node);
    free(t->master_name);
    for (size_t i = 0; i < t->naddrs; i++)
        free(t->addrs[i].host);
    free(t->addrs);
    free(t->sentinel_user);
    free(t->sentinel_password);
    free(t->display);
    memset(t, 0, sizeof *t);
}

static int add_addr(nori__redis_target *t, const char *url, const char *s, size_t n,
                    int default_port, const char *what)
{
    if (t->naddrs >= NORI_REDIS_MAX_ADDRS)
        return fail_url(url, "more than 64 addresses");
    nori__redis_addr *a = realloc(t->addrs, (t->naddrs + 1) * sizeof *a);
    if (a == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory parsing REDIS_URL");
    t->addrs = a;
    int rc = parse_addr(s, n, default_port, &a[t->naddrs]);
    if (rc == NORI_ENOMEM)
        return nori__fail(NORI_ENOMEM, "out of memory parsing REDIS_URL");
    if (rc != NORI_OK)
        return fail_url(url, what);
    t->naddrs++;
    return NORI_OK;
}

/* Decodes %XX in s[0..n) into a new string; NULL on a bad escape or NUL. */
static char *decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            unsigned v;
            char hex[3] = {0};
            if (i + 2 >= n || !isxdigit((unsigned char)s[i + 1]) ||
                !isxdigit((unsigned char)s[i + 2])) {
                free(out);
                return NULL;
            }
            hex[0] = s[i + 1];
            hex[1] = s[i + 2];
            v = (unsigned)strtoul(hex, NULL, 16);
            if (v == 0) {
                free(out);
                return NULL;
            }
            out[o++] = (char)v;
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

/*
 * Splits the query q (after '?') into the options this layer handles
 * (addr=, and for sentinel URLs sentinel_user= / sentinel_password=) and the
 * rest, appended to `rest` for the single-node parser.
 */
static int split_query(nori__redis_target *t, const char *url, const char *q, char *rest,
                       size_t rest_size)
{
    size_t r = strlen(rest);
    bool first = true;
    while (*q != '\0') {
        size_t len = strcspn(q, "&");
        int rc = NORI_OK;
        if (len >= 5 && memcmp(q, "addr=", 5) == 0) {
            if (t->sentinel)
                return fail_url(url, "addr= is for redis:// cluster seeds; list sentinels "
                                     "before the master name, comma-separated");
            rc = add_addr(t, url, q + 5, len - 5, 0, "an addr= is not host:port");
        } else if (t->sentinel && len >= 14 && memcmp(q, "sentinel_user=", 14) == 0) {
            free(t->sentinel_user);
            t->sentinel_user = decode(q + 14, len - 14);
            if (t->sentinel_user == NULL || t->sentinel_user[0] == '\0')
                return fail_url(url, "sentinel_user is empty or has a bad percent-escape");
        } else if (t->sentinel && len >= 18 && memcmp(q, "sentinel_password=", 18) == 0) {
            free(t->sentinel_password);
            t->sentinel_password = decode(q + 18, len - 18);
            if (t->sentinel_password == NULL || t->sentinel_password[0] == '\0')
                return fail_url(url, "sentinel_password is empty or has a bad percent-escape");
        } else {
            if (r + len + 2 >= rest_size)
                return fail_url(url, "too long");
            rest[r++] = first ? '?' : '&';
            memcpy(rest + r, q, len);
            r += len;
            rest[r] = '\0';
            first = false;
        }
        if (rc != NORI_OK)
            return rc;
        q += len;
        if (*q == '&')
            q++;
    }
    return NORI_OK;
}

static int parse_sentinel(const char *url, nori__redis_target *t, char *node_url, size_t size)
{
    const char *rest = url + strlen(SENTINEL_SCHEME);
    /* The userinfo as url.c reads it (and masks it): up to the authority's
     * last '@'. */
    nori__redis_authority auth = nori__redis_split_authority(rest);
    int rc = nori__redis_check_authority(url, rest, &auth);
    if (rc != NORI_OK)
        return rc;
    const char *at = auth.at;
    const char *hosts = at != NULL ? at + 1 : rest;
    size_t hosts_len = strcspn(hosts, "/?#");
    if (hosts[hosts_len] == '#')
        return fail_url(url, "fragments (#) are not allowed");
    if (hosts_len == 0)
        return fail_url(url, "no sentinel host:port before the master name");
    for (const char *h = hosts; h < hosts + hosts_len;) {
        size_t n = strcspn(h, ",");
        if (h + n > hosts + hosts_len)
            n = (size_t)(hosts + hosts_len - h);
        rc = add_addr(t, url, h, n, SENTINEL_DEFAULT_PORT,
                      "a sentinel is not host[:port] (port 1..65535)");
        if (rc != NORI_OK)
            return rc;
        h += n;
        if (h < hosts + hosts_len)
            h++; /* the comma */
        if (h == hosts + hosts_len && h[-1] == ',')
            return fail_url(url, "an empty sentinel address after ','");
    }
    const char *p = hosts + hosts_len;
    if (*p != '/' || p[1] == '\0' || p[1] == '?' || p[1] == '/')
        return fail_url(url, "no master name: redis+sentinel://host:port[,host:port...]/MASTERNAME[/db]");
    p++;
    size_t name_len = strcspn(p, "/?");
    if (name_len > MAX_MASTER_NAME)
        return fail_url(url, "the master name is longer than 128 bytes");
    for (size_t i = 0; i < name_len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (!(isalnum(c) || c == '.' || c == '-' || c == '_'))
            return fail_url(url, "the master name may hold only letters, digits, '.', '-', '_'");
    }
    t->master_name = strndup(p, name_len);
    if (t->master_name == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory parsing REDIS_URL");
    p += name_len;
    /* The single-node parser checks userinfo, db and the remaining options
     * on a stand-in URL; the host is a placeholder until a sentinel names
     * the master. */
    int n = snprintf(node_url, size, "redis://%.*s%s127.0.0.1:%d", at != NULL ? (int)(at - rest) : 0,
                     rest, at != NULL ? "@" : "", NORI_REDIS_DEFAULT_PORT);
    if (n < 0 || (size_t)n >= size)
        return fail_url(url, "too long");
    if (*p == '/') {
        size_t db_len = strcspn(p, "?");
        if ((size_t)n + db_len + 1 >= size)
            return fail_url(url, "too long");
        memcpy(node_url + n, p, db_len);
        node_url[n + db_len] = '\0';
        p += db_len;
    }
    if (*p == '?')
        return split_query(t, url, p + 1, node_url, size);
    return NORI_OK;
}

static int parse_redis(const char *url, nori__redis_target *t, char *node_url, size_t size)
{
    /* A '?' in an unencoded password is refused here, before its tail can
     * be read as options. Past this check the first '?' starts the query. */
    nori__redis_authority auth = nori__redis_split_authority(url + 8);
    int rc = nori__redis_check_authority(url, url + 8, &auth);
    if (rc != NORI_OK)
        return rc;
    const char *q = strchr(url, '?');
    size_t base = q != NULL ? (size_t)(q - url) : strlen(url);
    if (base + 1 >= size)
        return fail_url(url, "too long");
    memcpy(node_url, url, base);
    node_url[base] = '\0';
    if (q != NULL)
        return split_query(t, url, q + 1, node_url, size);
    return NORI_OK;
}

int nori__redis_target_parse(const char *url, nori__redis_target *out)
{
    nori__redis_target t = {0};
    if (url == NULL)
        return nori__fail(NORI_EINVAL, "REDIS_URL is NULL");
    size_t len = strlen(url);
    if (len > NORI_REDIS_MAX_URL_LEN)
        return nori__fail(NORI_EINVAL, "REDIS_URL is %zu bytes long, the limit is %d", len,
                          NORI_REDIS_MAX_URL_LEN);
    char *node_url = malloc(len + 64);
    if (node_url == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory parsing REDIS_URL");
    int rc;
    if (strncmp(url, SENTINEL_SCHEME, strlen(SENTINEL_SCHEME)) == 0) {
        for (const char *c = url; *c != '\0'; c++)
            if ((unsigned char)*c <= ' ' || *c == 0x7f) {
                free(node_url);
                return fail_url(url, "it contains a space or a control character");
            }
        t.sentinel = true;
        rc = parse_sentinel(url, &t, node_url, len + 64);
    } else if (strncmp(url, "redis://", 8) == 0) {
        rc = parse_redis(url, &t, node_url, len + 64);
    } else {
        /* Plain single-node forms (and every error about the scheme) are
         * the single-node parser's. */
        snprintf(node_url, len + 64, "%s", url);
        rc = NORI_OK;
    }
    /* The node part, rewritten (the sentinels and the master name out, a
     * placeholder host in), is checked by the single-node parser, whose
     * messages name the URL as written. */
    if (rc == NORI_OK)
        rc = nori__redis_url_parse_as(node_url, url, &t.node);
    free(node_url);
    if (rc == NORI_OK) {
        t.display = nori__redis_url_display(url);
        if (t.display == NULL)
            rc = nori__fail(NORI_ENOMEM, "out of memory parsing REDIS_URL");
    }
    if (rc != NORI_OK) {
        nori__redis_target_free(&t);
        return rc;
    }
    *out = t;
    return NORI_OK;
}
