#include "url.h"

#include "error.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Writes `url` into buf with the password (the part of the userinfo after the
 * first ':', up to the last '@') replaced by "***". Works on malformed URLs
 * too, so that no error message ever shows a password.
 */
static void mask_url(const char *url, char *buf, size_t size)
{
    /* The last '@' anywhere: a careless password may hold '/', '?' or '#'
     * unencoded, and masking too much is harmless where too little is not. */
    const char *scheme_end = strstr(url, "://");
    const char *auth = scheme_end != NULL ? scheme_end + 3 : url;
    const char *at = strrchr(auth, '@');
    const char *colon = at != NULL ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (colon == NULL) {
        snprintf(buf, size, "%s", url);
        return;
    }
    snprintf(buf, size, "%.*s***%s", (int)(colon + 1 - url), url, at);
}

static int fail_url(const char *url, const char *what)
{
    char masked[256];
    mask_url(url, masked, sizeof masked);
    return nori__fail(NORI_EINVAL, "REDIS_URL '%s' is malformed: %s", masked, what);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into a new string; NULL on a bad escape or a NUL byte
 * (*bad set) or on allocation failure (*bad clear). */
static char *decode(const char *s, size_t n, bool *bad)
{
    *bad = false;
    char *out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        if (i + 2 >= n) { /* fewer than two characters after '%' */
            free(out);
            *bad = true;
            return NULL;
        }
        int h = hexval((unsigned char)s[i + 1]), l = hexval((unsigned char)s[i + 2]);
        if (h < 0 || l < 0 || (h == 0 && l == 0)) {
            free(out);
            *bad = true;
            return NULL;
        }
        out[o++] = (char)(h * 16 + l);
        i += 2;
    }
    out[o] = '\0';
    return out;
}

/* Parses a decimal int in [min, max] from s[0..n): digits only. */
static bool parse_int(const char *s, size_t n, long min, long max, int *out)
{
    if (n == 0 || n > 10)
        return false;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max)
        return false;
    *out = (int)v;
    return true;
}

static int parse_query(const char *url, const char *q, nori__redis_url *u)
{
    while (*q != '\0') {
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        if (eq == NULL)
            return fail_url(url, "a query option has no '=value'");
        size_t nlen = (size_t)(eq - q), vlen = len - nlen - 1;
        const char *v = eq + 1;
        bool ok;
        if (nlen == 2 && memcmp(q, "db", 2) == 0) {
            if (!u->is_unix)
                return fail_url(url, "for redis:// URLs the db goes in the path (/N), not ?db=");
            ok = parse_int(v, vlen, 0, INT_MAX, &u->db);
            if (!ok)
                return fail_url(url, "db is not a non-negative integer");
        } else if (nlen == 18 && memcmp(q, "connect_timeout_ms", 18) == 0) {
            if (!parse_int(v, vlen, 1, NORI_REDIS_MAX_TIMEOUT_MS, &u->connect_timeout_ms))
                return fail_url(url, "connect_timeout_ms must be an integer from 1 to 600000");
        } else if (nlen == 10 && memcmp(q, "timeout_ms", 10) == 0) {
            if (!parse_int(v, vlen, 1, NORI_REDIS_MAX_TIMEOUT_MS, &u->timeout_ms))
                return fail_url(url, "timeout_ms must be an integer from 1 to 600000");
        } else if (nlen == 9 && memcmp(q, "pool_size", 9) == 0) {
            if (!parse_int(v, vlen, 1, NORI_REDIS_MAX_POOL_SIZE, &u->pool_size))
                return fail_url(url, "pool_size must be an integer from 1 to 1024");
        } else if (nlen == 16 && memcmp(q, "circuit_failures", 16) == 0) {
            if (!parse_int(v, vlen, 0, NORI_REDIS_MAX_CIRCUIT_FAILURES, &u->circuit_failures))
                return fail_url(url, "circuit_failures must be an integer from 0 (off) to "
                                     "1000000");
        } else if (nlen == 19 && memcmp(q, "circuit_cooldown_ms", 19) == 0) {
            if (!parse_int(v, vlen, 1, NORI_REDIS_MAX_TIMEOUT_MS, &u->circuit_cooldown_ms))
                return fail_url(url, "circuit_cooldown_ms must be an integer from 1 to 600000");
        } else {
            return fail_url(url, "unknown query option (known: db for unix://, "
                                 "connect_timeout_ms, timeout_ms, pool_size, circuit_failures, "
                                 "circuit_cooldown_ms)");
        }
        q += len;
        if (*q == '&')
            q++;
    }
    return NORI_OK;
}

void nori__redis_url_free(nori__redis_url *u)
{
    if (u == NULL)
        return;
    free(u->host);
    free(u->path);
    free(u->user);
    free(u->password);
    free(u->display);
    memset(u, 0, sizeof *u);
}

static int parse_unix(const char *url, const char *rest, nori__redis_url *u)
{
    size_t plen = strcspn(rest, "?");
    if (plen == 0 || rest[0] != '/')
        return fail_url(url, "unix:// needs an absolute socket path (unix:///path/to.sock)");
    u->path = strndup(rest, plen);
    if (u->path == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory parsing REDIS_URL");
    if (rest[plen] == '?')
        return parse_query(url, rest + plen + 1, u);
    return NORI_OK;
}

static int parse_tcp(const char *url, const char *rest, nori__redis_url *u)
{
    size_t auth_len = strcspn(rest, "/?#");
    if (rest[auth_len] == '#')
        return fail_url(url, "fragments (#) are not allowed");
    const char *hostport = rest;
    const char *at = NULL;
    for (size_t i = 0; i < auth_len; i++)
        if (rest[i] == '@')
            at = rest + i;
    bool bad;
    if (at != NULL) {
        const char *colon = memchr(rest, ':', (size_t)(at - rest));
        if (colon == NULL)
            return fail_url(url, "the part before '@' needs a ':' before the password "
                                 "(redis://:password@host or redis://user:password@host)");
        if (colon > rest) {
            u->user = decode(rest, (size_t)(colon - rest), &bad);
            if (u->user == NULL)
                return bad ? fail_url(url, "bad percent-escape in the user name")
                           : nori__fail(NORI_ENOMEM, "out of memory parsing REDIS_URL");
        }
        u->password = decode(colon + 1, (size_t)(at - colon - 1), &bad);
        if (u->password == NULL)
            return bad ? fail_url(url, "bad percent-escape in the password")
                       : nori__fail(NORI_ENOMEM, "out of memory parsing REDIS_URL");
        if (u->password[0] == '\0')
            return fail_url(url, "the password is empty");
        hostport = at + 1;
    }
    size_t hp_len = (size_t)(rest + auth_len - hostport);
    const char *host = hostport, *port = NULL;
    size_t host_len;
    if (hp_len > 0 && hostport[0] == '[') {
        const char *close = memchr(hostport, ']', hp_len);
        if (close == NULL)
            return fail_url(url, "an IPv6 address has no closing ']'");
        host = hostport + 1;
        host_len = (size_t)(close - host);
        const char *after = close + 1;
        if (after < hostport + hp_len) {
            if (*after != ':')
                return fail_url(url, "unexpected text after ']'");
            port = after + 1;
        }
    } else {
        const char *colon = memchr(hostport, ':', hp_len);
        host_len = colon != NULL ? (size_t)(colon - hostport) : hp_len;
        if (colon != NULL)
            port = colon + 1;
    }
    if (host_len == 0)
        return fail_url(url, "the host is empty");
    for (size_t i = 0; i < host_len; i++) {
        unsigned char c = (unsigned char)host[i];
        if (!(isalnum(c) || c == '.' || c == '-' || c == '_' || c == ':'))
            return fail_url(url, "the host has a character that is not allowed");
    }
    u->host = strndup(host, host_len);
    if (u->host == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory parsing REDIS_URL");
    u->port = NORI_REDIS_DEFAULT_PORT;
    if (port != NULL &&
        !parse_int(port, (size_t)(rest + auth_len - port), 1, 65535, &u->port))
        return fail_url(url, "the port is not an integer from 1 to 65535");

    const char *p = rest + auth_len;
    if (*p == '/') {
        p++;
        size_t db_len = strcspn(p, "?");
        if (db_len > 0 && !parse_int(p, db_len, 0, INT_MAX, &u->db))
            return fail_url(url, "the database after '/' is not a non-negative integer");
        p += db_len;
    }
    if (*p == '?')
        return parse_query(url, p + 1, u);
    return NORI_OK;
}

int nori__redis_url_parse(const char *url, nori__redis_url *out)
{
    nori__redis_url u = {0};
    if (url == NULL)
        return nori__fail(NORI_EINVAL, "REDIS_URL is NULL");
    if (url[0] == '\0')
        return nori__fail(NORI_EINVAL, "REDIS_URL '' is empty");
    if (strlen(url) > NORI_REDIS_MAX_URL_LEN)
        return nori__fail(NORI_EINVAL, "REDIS_URL is %zu bytes long, the limit is %d",
                          strlen(url), NORI_REDIS_MAX_URL_LEN);
    for (const char *c = url; *c != '\0'; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f)
            return fail_url(url, "it contains a space or a control character");
    u.connect_timeout_ms = NORI_REDIS_DEFAULT_CONNECT_TIMEOUT_MS;
    u.timeout_ms = NORI_REDIS_DEFAULT_TIMEOUT_MS;
    u.pool_size = NORI_REDIS_DEFAULT_POOL_SIZE;
    u.circuit_failures = NORI_REDIS_DEFAULT_CIRCUIT_FAILURES;
    u.circuit_cooldown_ms = NORI_REDIS_DEFAULT_CIRCUIT_COOLDOWN_MS;

    int rc;
    if (strncmp(url, "redis://", 8) == 0) {
        rc = parse_tcp(url, url + 8, &u);
    } else if (strncmp(url, "unix://", 7) == 0) {
        u.is_unix = true;
        rc = parse_unix(url, url + 7, &u);
    } else if (strncmp(url, "rediss://", 9) == 0) {
        rc = fail_url(url, "rediss:// (TLS) is not supported: hiredis 0.14 has no TLS; "
                           "use redis:// or unix://");
    } else {
        rc = fail_url(url, "the scheme must be redis:// or unix://");
    }
    if (rc == NORI_OK) {
        char masked[NORI_REDIS_MAX_URL_LEN + 8];
        mask_url(url, masked, sizeof masked);
        u.display = strdup(masked);
        if (u.display == NULL)
            rc = nori__fail(NORI_ENOMEM, "out of memory parsing REDIS_URL");
    }
    if (rc != NORI_OK) {
        nori__redis_url_free(&u);
        return rc;
    }
    *out = u;
    return NORI_OK;
}
