// SPDX-License-Identifier: MIT
#include "redis/wire/url.h"

#include "error.h"
#include "hex.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * The structure of a URL as the parsers read it, in one place: the display
 * form, nori__redis_url_password_spans, the masker of every message and
 * both parsers (this one and url_topology.c) use these helpers, so they
 * agree on where a password is.
 */

#define SENTINEL_SCHEME "redis+sentinel://"

nori__redis_authority nori__redis_split_authority(const char *rest)
{
    nori__redis_authority a = {strcspn(rest, "/?#"), NULL, NULL};
    for (size_t i = 0; i < a.len; i++)
        if (rest[i] == '@')
            a.at = rest + i;
    if (a.at != NULL)
        a.colon = memchr(rest, ':', (size_t)(a.at - rest));
    return a;
}

/* The password text of an authority (raw, before percent-decoding). */
static void authority_password(const char *rest, const nori__redis_authority *a,
                               const char **pw, size_t *len)
{
    *pw = a->colon != NULL ? a->colon + 1 : rest;
    *len = (size_t)(a->at - *pw);
}

/* Where the query of a redis:// or redis+sentinel:// URL starts (after the
 * authority and the optional path: /db, or /MASTERNAME[/db]), or NULL when
 * there is none. */
static const char *tcp_query(const char *rest, const nori__redis_authority *a)
{
    const char *p = rest + a->len;
    if (*p == '/') {
        p++;
        p += strcspn(p, "?");
    }
    return *p == '?' ? p + 1 : NULL;
}

/* Where the query of a unix:// URL starts, or NULL. */
static const char *unix_query(const char *rest)
{
    const char *q = strchr(rest, '?');
    return q != NULL ? q + 1 : NULL;
}

/* One name=value option of a query; *q advances past it (and its '&').
 * eq is NULL when the option has no '='. */
typedef struct option {
    const char *name;
    size_t nlen;
    const char *value; /* NULL when there is no '=' */
    size_t vlen;
} option;

static option next_option(const char **q)
{
    size_t len = strcspn(*q, "&");
    option o = {*q, len, NULL, 0};
    const char *eq = memchr(*q, '=', len);
    if (eq != NULL) {
        o.nlen = (size_t)(eq - *q);
        o.value = eq + 1;
        o.vlen = len - o.nlen - 1;
    }
    *q += len;
    if (**q == '&')
        (*q)++;
    return o;
}

static bool option_is(const option *o, const char *name)
{
    return o->nlen == strlen(name) && memcmp(o->name, name, o->nlen) == 0;
}

/* The same name in any case: the parsers refuse such an option (names are
 * lower case), but its value is masked all the same. */
static bool option_like(const option *o, const char *name)
{
    return o->nlen == strlen(name) && strncasecmp(o->name, name, o->nlen) == 0;
}

static size_t add_span(nori__redis_span *spans, size_t max, size_t n, const char *url,
                       const char *p, size_t len)
{
    if (n < max) {
        spans[n].off = (size_t)(p - url);
        spans[n].len = len;
    }
    return n + 1;
}

size_t nori__redis_url_password_spans(const char *url, nori__redis_span *spans, size_t max)
{
    size_t n = 0;
    const char *q = NULL;
    const char *rest = strncmp(url, "redis://", 8) == 0 ? url + 8
                       : strncmp(url, SENTINEL_SCHEME, strlen(SENTINEL_SCHEME)) == 0
                           ? url + strlen(SENTINEL_SCHEME)
                           : NULL;
    if (rest != NULL) {
        nori__redis_authority a = nori__redis_split_authority(rest);
        if (a.at != NULL) {
            const char *pw;
            size_t len;
            authority_password(rest, &a, &pw, &len);
            n = add_span(spans, max, n, url, pw, len);
        }
        q = tcp_query(rest, &a);
    } else if (strncmp(url, "unix://", 7) == 0) {
        q = unix_query(url + 7);
    }
    while (q != NULL && *q != '\0') {
        option o = next_option(&q);
        if (o.value != NULL &&
            (option_like(&o, "password") || option_like(&o, "sentinel_password")))
            n = add_span(spans, max, n, url, o.value, o.vlen);
    }
    return n;
}

/* The URL with the given spans replaced by "***": exact, for URLs that
 * parsed (the result parses again, with "***" as the password). */
static char *mask_spans(const char *url, const nori__redis_span *spans, size_t n)
{
    size_t len = strlen(url);
    char *out = malloc(len + 3 * n + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0, from = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(out + o, url + from, spans[i].off - from);
        o += spans[i].off - from;
        memcpy(out + o, "***", 3);
        o += 3;
        from = spans[i].off + spans[i].len;
    }
    memcpy(out + o, url + from, len - from);
    out[o + len - from] = '\0';
    return out;
}

char *nori__redis_url_display(const char *url)
{
    size_t max = 1;
    for (const char *p = url; *p != '\0'; p++)
        max += *p == '&' || *p == '?' || *p == '@';
    nori__redis_span *spans = malloc(max * sizeof *spans);
    if (spans == NULL)
        return NULL;
    size_t n = nori__redis_url_password_spans(url, spans, max);
    char *out = n <= max ? mask_spans(url, spans, n) : NULL;
    free(spans);
    return out;
}

/* Marks url[from..to) hidden; an empty range still shows as "***" (an
 * empty password, or one cut short by the end of the URL). */
static void hide(bool *hidden, bool *mark, size_t from, size_t to)
{
    mark[from] = true;
    for (size_t i = from; i < to; i++)
        hidden[i] = true;
}

/*
 * Writes `url` into buf with every password hidden: the one masker of the
 * messages about a URL, accepted or not. "***" stands in place of
 *  - every password span of the parser (nori__redis_url_password_spans);
 *  - and, for URLs the parser may not have understood: the userinfo's
 *    password after the first ':' of the userinfo, up to the LAST '@'
 *    anywhere (a careless password may hold '/', '?', '#' or '@'
 *    unencoded), or the whole userinfo when it has no ':'
 *    (redis://pw@host) or when the text before its ':' holds a '@', '/',
 *    '?' or '#' (then no user name can be told apart from the password);
 *  - the value of every "password=" in any case (so also
 *    "sentinel_password=", "PASSWORD="), up to the next '&' or the end,
 *    including one that starts inside the hidden userinfo.
 * Masking too much is harmless where too little is not.
 */
void nori__redis_url_mask(const char *url, char *buf, size_t size)
{
    if (size == 0)
        return;
    size_t len = strlen(url);
    bool *hidden = calloc(2 * (len + 1), sizeof *hidden);
    if (hidden == NULL) {
        snprintf(buf, size, "***"); /* cannot tell: show nothing of it */
        return;
    }
    bool *mark = hidden + len + 1;
    nori__redis_span one[16];
    size_t n = nori__redis_url_password_spans(url, one, 16);
    nori__redis_span *spans = one;
    if (n > 16 && (spans = malloc(n * sizeof *spans)) != NULL)
        n = nori__redis_url_password_spans(url, spans, n);
    for (size_t i = 0; spans != NULL && i < n; i++)
        hide(hidden, mark, spans[i].off, spans[i].off + spans[i].len);
    if (spans == NULL)
        hide(hidden, mark, 0, len);
    else if (spans != one)
        free(spans);

    const char *scheme_end = strstr(url, "://");
    const char *auth = scheme_end != NULL ? scheme_end + 3 : url;
    const char *at = strrchr(auth, '@');
    if (at != NULL) {
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        bool user_shown = colon != NULL && strcspn(auth, "@/?#") >= (size_t)(colon - auth);
        const char *from = user_shown ? colon + 1 : auth;
        hide(hidden, mark, (size_t)(from - url), (size_t)(at - url));
    }
    /* Inside the hidden userinfo too: its value may run past the '@'. */
    for (const char *p = url; *p != '\0'; p++)
        if (strncasecmp(p, "password=", 9) == 0)
            hide(hidden, mark, (size_t)(p - url) + 9, (size_t)(p - url) + 9 + strcspn(p + 9, "&"));

    /* Each run of hidden bytes (or empty range) becomes one "***". */
    size_t o = 0;
    for (size_t i = 0; i <= len && o + 1 < size;) {
        if (mark[i] || (i < len && hidden[i])) {
            for (int k = 0; k < 3 && o + 1 < size; k++)
                buf[o++] = '*';
            while (i < len && hidden[i])
                i++;
            if (i == len || o + 1 >= size)
                break;
        }
        if (i == len)
            break;
        buf[o++] = url[i++];
    }
    buf[o] = '\0';
    free(hidden);
}

/* The message about a URL: the masked URL as the user wrote it (`shown`),
 * then what is wrong. */
static int fail_url(const char *shown, const char *what)
{
    char masked[256];
    nori__redis_url_mask(shown, masked, sizeof masked);
    return nori__fail(NORI_EINVAL, "REDIS_URL '%s' is malformed: %s", masked, what);
}

int nori__redis_check_authority(const char *shown, const char *rest,
                                const nori__redis_authority *a)
{
    if (strchr(rest + a->len, '@') == NULL)
        return NORI_OK;
    /* A '@' after the authority's end: the user name or password holds the
     * character that ended it, unencoded ("redis://:hun/ter2@host" would
     * otherwise be reported as an empty host). */
    char c = rest[a->len];
    char msg[200];
    snprintf(msg, sizeof msg,
             "the user name or password contains an unencoded '%c', which ends the host "
             "part; percent-encode it (%s)",
             c, c == '/' ? "%2F" : c == '?' ? "%3F" : "%23");
    return fail_url(shown, msg);
}

int nori__redis_url_fail(const char *shown, const char *what)
{
    return fail_url(shown, what);
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
        int h = nori__hex_digit((unsigned char)s[i + 1]), l = nori__hex_digit((unsigned char)s[i + 2]);
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

/* Percent-decodes one credential (user or password) into *out. */
static int decode_credential(const char *shown, const char *s, size_t n, const char *what,
                             char **out)
{
    bool bad;
    *out = decode(s, n, &bad);
    if (*out == NULL) {
        char msg[96];
        snprintf(msg, sizeof msg, "bad percent-escape in the %s", what);
        return bad ? fail_url(shown, msg)
                   : nori__fail(NORI_ENOMEM, "out of memory parsing REDIS_URL");
    }
    return NORI_OK;
}

/*
 * An option this parser does not know, named when its name shows in the
 * masked URL anyway (never a piece of a hidden password), with the right
 * spelling when only its case differs from an option's: names are lower
 * case, and "PASSWORD=x" must not be taken for something else silently.
 */
static int fail_unknown(const char *shown, const option *o)
{
    static const char *const known[] = {"db", "user", "password", "connect_timeout_ms",
                                        "timeout_ms", "pool_size", "circuit_failures",
                                        "circuit_cooldown_ms", "wait_replicas",
                                        "wait_timeout_ms", "addr", "sentinel_user",
                                        "sentinel_password"};
    char masked[256], name[80] = "", hint[96] = "";
    nori__redis_url_mask(shown, masked, sizeof masked);
    int nlen = o->nlen > 64 ? 64 : (int)o->nlen;
    char text[65];
    memcpy(text, o->name, (size_t)nlen);
    text[nlen] = '\0';
    if (nlen > 0 && strstr(masked, text) != NULL)
        snprintf(name, sizeof name, " '%s%s'", text, o->nlen > 64 ? "..." : "");
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
        if (option_like(o, known[k]))
            snprintf(hint, sizeof hint, " (option names are lower case: '%s')", known[k]);
    char what[512];
    snprintf(what, sizeof what,
             "unknown query option%s%s (known: db, user and password for unix://, "
             "connect_timeout_ms, timeout_ms, pool_size, circuit_failures, circuit_cooldown_ms, "
             "wait_replicas, wait_timeout_ms; addr for redis://; sentinel_user, "
             "sentinel_password for redis+sentinel://)",
             name, hint);
    return fail_url(shown, what);
}

static int parse_query(const char *shown, const char *q, nori__redis_url *u)
{
    while (*q != '\0') {
        option o = next_option(&q);
        if (o.value == NULL)
            return fail_url(shown, "a query option has no '=value'");
        const char *v = o.value;
        size_t vlen = o.vlen;
        if (option_is(&o, "db")) {
            if (!u->is_unix)
                return fail_url(shown, "for redis:// URLs the db goes in the path (/N), not ?db=");
            if (!parse_int(v, vlen, 0, INT_MAX, &u->db))
                return fail_url(shown, "db is not a non-negative integer");
        } else if (option_is(&o, "password") || option_is(&o, "user")) {
            bool pw = o.nlen == 8;
            if (!u->is_unix)
                return fail_url(shown, "for redis:// URLs the user and password go before the "
                                     "host (redis://user:password@host), not in ?user=/?password=");
            if (pw ? u->password != NULL : u->user != NULL)
                return fail_url(shown, pw ? "password= is given twice" : "user= is given twice");
            int rc = decode_credential(shown, v, vlen, pw ? "password" : "user name",
                                       pw ? &u->password : &u->user);
            if (rc != NORI_OK)
                return rc;
            if ((pw ? u->password : u->user)[0] == '\0')
                return fail_url(shown, pw ? "the password is empty" : "the user name is empty");
        } else if (option_is(&o, "connect_timeout_ms")) {
            if (!parse_int(v, vlen, 1, NORI_REDIS_MAX_TIMEOUT_MS, &u->connect_timeout_ms))
                return fail_url(shown, "connect_timeout_ms must be an integer from 1 to 600000");
        } else if (option_is(&o, "timeout_ms")) {
            if (!parse_int(v, vlen, 1, NORI_REDIS_MAX_TIMEOUT_MS, &u->timeout_ms))
                return fail_url(shown, "timeout_ms must be an integer from 1 to 600000");
        } else if (option_is(&o, "pool_size")) {
            if (!parse_int(v, vlen, 1, NORI_REDIS_MAX_POOL_SIZE, &u->pool_size))
                return fail_url(shown, "pool_size must be an integer from 1 to 1024");
        } else if (option_is(&o, "circuit_failures")) {
            if (!parse_int(v, vlen, 0, NORI_REDIS_MAX_CIRCUIT_FAILURES, &u->circuit_failures))
                return fail_url(shown, "circuit_failures must be an integer from 0 (off) to "
                                     "1000000");
        } else if (option_is(&o, "circuit_cooldown_ms")) {
            if (!parse_int(v, vlen, 1, NORI_REDIS_MAX_TIMEOUT_MS, &u->circuit_cooldown_ms))
                return fail_url(shown, "circuit_cooldown_ms must be an integer from 1 to 600000");
        } else if (option_is(&o, "wait_replicas")) {
            if (!parse_int(v, vlen, 0, NORI_REDIS_MAX_WAIT_REPLICAS, &u->wait_replicas))
                return fail_url(shown, "wait_replicas must be an integer from 0 (off) to 64");
        } else if (option_is(&o, "wait_timeout_ms")) {
            if (!parse_int(v, vlen, 1, NORI_REDIS_MAX_TIMEOUT_MS, &u->wait_timeout_ms))
                return fail_url(shown, "wait_timeout_ms must be an integer from 1 to 600000 "
                                     "(WAIT 0 would wait forever)");
        } else {
            return fail_unknown(shown, &o);
        }
    }
    if (u->user != NULL && u->password == NULL)
        return fail_url(shown, "user= needs password= too");
    /* The WAIT travels in the write's round trip, which ends at timeout_ms:
     * a longer WAIT would always be cut off as a timeout. */
    if (u->wait_replicas > 0 && u->wait_timeout_ms >= u->timeout_ms) {
        char why[160];
        snprintf(why, sizeof why,
                 "wait_timeout_ms (%d) must be less than timeout_ms (%d): the WAIT is part of "
                 "the write's round trip",
                 u->wait_timeout_ms, u->timeout_ms);
        return fail_url(shown, why);
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

static int parse_unix(const char *shown, const char *rest, nori__redis_url *u)
{
    size_t plen = strcspn(rest, "?");
    if (plen == 0 || rest[0] != '/')
        return fail_url(shown, "unix:// needs an absolute socket path (unix:///path/to.sock)");
    u->path = strndup(rest, plen);
    if (u->path == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory parsing REDIS_URL");
    const char *q = unix_query(rest);
    if (q != NULL)
        return parse_query(shown, q, u);
    return NORI_OK;
}

static int parse_tcp(const char *shown, const char *rest, nori__redis_url *u)
{
    nori__redis_authority a = nori__redis_split_authority(rest);
    size_t auth_len = a.len;
    int rc = nori__redis_check_authority(shown, rest, &a);
    if (rc != NORI_OK)
        return rc;
    if (rest[auth_len] == '#')
        return fail_url(shown, "fragments (#) are not allowed");
    const char *hostport = rest;
    if (a.at != NULL) {
        if (a.colon != NULL && a.colon > rest) {
            rc = decode_credential(shown, rest, (size_t)(a.colon - rest), "user name", &u->user);
            if (rc != NORI_OK)
                return rc;
        }
        const char *pw;
        size_t pw_len;
        authority_password(rest, &a, &pw, &pw_len);
        rc = decode_credential(shown, pw, pw_len, "password", &u->password);
        if (rc != NORI_OK)
            return rc;
        if (u->password[0] == '\0')
            return fail_url(shown, "the password is empty");
        hostport = a.at + 1;
    }
    size_t hp_len = (size_t)(rest + auth_len - hostport);
    const char *host = hostport, *port = NULL;
    size_t host_len;
    if (hp_len > 0 && hostport[0] == '[') {
        const char *close = memchr(hostport, ']', hp_len);
        if (close == NULL)
            return fail_url(shown, "an IPv6 address has no closing ']'");
        host = hostport + 1;
        host_len = (size_t)(close - host);
        const char *after = close + 1;
        if (after < hostport + hp_len) {
            if (*after != ':')
                return fail_url(shown, "unexpected text after ']'");
            port = after + 1;
        }
    } else {
        const char *colon = memchr(hostport, ':', hp_len);
        host_len = colon != NULL ? (size_t)(colon - hostport) : hp_len;
        if (colon != NULL)
            port = colon + 1;
    }
    if (host_len == 0)
        return fail_url(shown, "the host is empty");
    for (size_t i = 0; i < host_len; i++) {
        unsigned char c = (unsigned char)host[i];
        if (!(isalnum(c) || c == '.' || c == '-' || c == '_' || c == ':'))
            return fail_url(shown, "the host has a character that is not allowed");
    }
    u->host = strndup(host, host_len);
    if (u->host == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory parsing REDIS_URL");
    u->port = NORI_REDIS_DEFAULT_PORT;
    if (port != NULL &&
        !parse_int(port, (size_t)(rest + auth_len - port), 1, 65535, &u->port))
        return fail_url(shown, "the port is not an integer from 1 to 65535");

    const char *p = rest + auth_len;
    if (*p == '/') {
        p++;
        size_t db_len = strcspn(p, "?");
        if (db_len > 0 && !parse_int(p, db_len, 0, INT_MAX, &u->db))
            return fail_url(shown, "the database after '/' is not a non-negative integer");
    }
    const char *q = tcp_query(rest, &a);
    if (q != NULL)
        return parse_query(shown, q, u);
    return NORI_OK;
}

int nori__redis_url_parse(const char *url, nori__redis_url *out)
{
    return nori__redis_url_parse_as(url, url, out);
}

int nori__redis_url_parse_as(const char *url, const char *shown, nori__redis_url *out)
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
            return fail_url(shown, "it contains a space or a control character");
    u.connect_timeout_ms = NORI_REDIS_DEFAULT_CONNECT_TIMEOUT_MS;
    u.timeout_ms = NORI_REDIS_DEFAULT_TIMEOUT_MS;
    u.pool_size = NORI_REDIS_DEFAULT_POOL_SIZE;
    u.circuit_failures = NORI_REDIS_DEFAULT_CIRCUIT_FAILURES;
    u.circuit_cooldown_ms = NORI_REDIS_DEFAULT_CIRCUIT_COOLDOWN_MS;
    u.wait_timeout_ms = NORI_REDIS_DEFAULT_WAIT_TIMEOUT_MS;

    int rc;
    if (strncmp(url, "redis://", 8) == 0) {
        rc = parse_tcp(shown, url + 8, &u);
    } else if (strncmp(url, "unix://", 7) == 0) {
        u.is_unix = true;
        rc = parse_unix(shown, url + 7, &u);
    } else if (strncmp(url, "rediss://", 9) == 0) {
        rc = fail_url(shown, "rediss:// (TLS) is not supported: hiredis 0.14 has no TLS; "
                           "use redis:// or unix://");
    } else {
        rc = fail_url(shown, "the scheme must be redis://, redis+sentinel:// or unix://");
    }
    if (rc == NORI_OK) {
        /* Exact: the spans the parser read the password from. */
        u.display = nori__redis_url_display(url);
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

static char *dup_or_null(const char *s, bool *failed)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *failed = true;
    return d;
}

int nori__redis_url_for_node(const nori__redis_url *base, const char *host, int port,
                             nori__redis_url *out)
{
    nori__redis_url u = *base;
    bool failed = false;
    u.is_unix = false;
    u.path = NULL;
    u.port = port;
    u.host = dup_or_null(host, &failed);
    u.user = dup_or_null(base->user, &failed);
    u.password = dup_or_null(base->password, &failed);
    u.display = NULL;
    if (!failed) {
        size_t n = strlen(host) + 32;
        u.display = malloc(n);
        if (u.display == NULL)
            failed = true;
        else if (strchr(host, ':') != NULL)
            snprintf(u.display, n, "redis://[%s]:%d", host, port);
        else
            snprintf(u.display, n, "redis://%s:%d", host, port);
    }
    if (failed) {
        nori__redis_url_free(&u);
        return nori__fail(NORI_ENOMEM, "out of memory describing Redis node %.64s:%d", host,
                          port);
    }
    *out = u;
    return NORI_OK;
}
