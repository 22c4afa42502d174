// SPDX-License-Identifier: MIT
/*
 * nori-proxy's origin side: see upstream.h. Easy handles are pooled: an
 * exchange takes one (or makes one), resets its options, and gives it back;
 * a handle keeps its own kept-alive connections to the origin, so pooling
 * the handles is what reuses connections across client connections. Only
 * the DNS cache is shared through a curl share object: libcurl's shared
 * connection cache is not safe across threads (a known libcurl bug; it
 * crashed the proxy under the suite's 100 parallel tests).
 */
#include "upstream.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Idle easy handles kept for reuse (each with its connections). */
#define UPSTREAM_POOL_MAX 64

struct proxy_upstream {
    char *origin;     /* without a trailing '/' */
    char *host;       /* the origin's authority: host[:port] */
    long connect_timeout_ms, timeout_ms;
    size_t max_response_bytes;
    int preserve_host;
    CURLSH *share;
    pthread_mutex_t locks[CURL_LOCK_DATA_LAST];
    pthread_mutex_t pool_lock;
    CURL *pool[UPSTREAM_POOL_MAX]; /* idle easy handles */
    size_t n_pool;
};

/* ------------------------------------------------------------ set-up */

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *ud)
{
    (void)h;
    (void)access;
    struct proxy_upstream *u = ud;
    pthread_mutex_lock(&u->locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ud)
{
    (void)h;
    struct proxy_upstream *u = ud;
    pthread_mutex_unlock(&u->locks[data]);
}

/* Reads the scheme and the authority out of the origin URL with libcurl's
 * own parser, so that what is checked is what libcurl will connect to. */
static int parse_origin(struct proxy_upstream *u, const char *origin)
{
    CURLU *url = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *query = NULL, *frag = NULL,
         *user = NULL;
    int rc = -1;
    if (url == NULL) {
        fprintf(stderr, "nori-proxy: out of memory\n");
        return -1;
    }
    if (curl_url_set(url, CURLUPART_URL, origin, 0) != CURLUE_OK ||
        curl_url_get(url, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(url, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        fprintf(stderr, "nori-proxy: --origin %s is not a URL (http://host[:port][/path])\n",
                origin);
        goto out;
    }
    if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        fprintf(stderr, "nori-proxy: --origin %s: scheme %s, expected http or https\n", origin,
                scheme);
        goto out;
    }
    if (curl_url_get(url, CURLUPART_QUERY, &query, 0) == CURLUE_OK ||
        curl_url_get(url, CURLUPART_FRAGMENT, &frag, 0) == CURLUE_OK ||
        curl_url_get(url, CURLUPART_USER, &user, 0) == CURLUE_OK) {
        fprintf(stderr, "nori-proxy: --origin %s: no query, fragment or user part allowed\n",
                origin);
        goto out;
    }
    /* An explicit port is part of Host (RFC 9110 7.2); the default one is not. */
    int has_port = curl_url_get(url, CURLUPART_PORT, &port, 0) == CURLUE_OK;
    size_t n = strlen(host) + (has_port ? strlen(port) + 1 : 0) + 1;
    u->host = malloc(n);
    if (u->host == NULL)
        goto out;
    snprintf(u->host, n, "%s%s%s", host, has_port ? ":" : "", has_port ? port : "");
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(query);
    curl_free(frag);
    curl_free(user);
    curl_url_cleanup(url);
    return rc;
}

int proxy_upstream_new(const proxy_upstream_config *cfg, proxy_upstream **out)
{
    if (cfg->origin == NULL || cfg->connect_timeout_ms <= 0 || cfg->timeout_ms <= 0 ||
        cfg->max_response_bytes == 0) {
        fprintf(stderr, "nori-proxy: origin, timeouts and the body bound are required\n");
        return -1;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "nori-proxy: libcurl initialisation failed\n");
        return -1;
    }
    struct proxy_upstream *u = calloc(1, sizeof *u);
    if (u == NULL)
        goto fail_global;
    u->connect_timeout_ms = cfg->connect_timeout_ms;
    u->timeout_ms = cfg->timeout_ms;
    u->max_response_bytes = cfg->max_response_bytes;
    u->preserve_host = cfg->preserve_host;
    size_t len = strlen(cfg->origin);
    while (len > 0 && cfg->origin[len - 1] == '/')
        len--;
    u->origin = strndup(cfg->origin, len);
    if (u->origin == NULL || parse_origin(u, cfg->origin) < 0)
        goto fail_u;
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&u->locks[i], NULL);
    pthread_mutex_init(&u->pool_lock, NULL);
    u->share = curl_share_init();
    if (u->share == NULL ||
        curl_share_setopt(u->share, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
        curl_share_setopt(u->share, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
        curl_share_setopt(u->share, CURLSHOPT_USERDATA, u) != CURLSHE_OK ||
        curl_share_setopt(u->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK) {
        fprintf(stderr, "nori-proxy: libcurl share set-up failed\n");
        goto fail_share;
    }
    *out = u;
    return 0;
fail_share:
    if (u->share != NULL)
        curl_share_cleanup(u->share);
    pthread_mutex_destroy(&u->pool_lock);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&u->locks[i]);
fail_u:
    free(u->origin);
    free(u->host);
    free(u);
fail_global:
    curl_global_cleanup();
    return -1;
}

void proxy_upstream_free(proxy_upstream *u)
{
    if (u == NULL)
        return;
    for (size_t i = 0; i < u->n_pool; i++)
        curl_easy_cleanup(u->pool[i]); /* before the share they use */
    curl_share_cleanup(u->share);
    pthread_mutex_destroy(&u->pool_lock);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&u->locks[i]);
    free(u->origin);
    free(u->host);
    free(u);
    curl_global_cleanup();
}

const char *proxy_upstream_origin_host(const proxy_upstream *u)
{
    return u->host;
}

/* ------------------------------------------------------ hop-by-hop */

/* RFC 9110 7.6.1: connection-specific fields are not forwarded, in either
 * direction, and neither are the fields a Connection header names. */
static int hop_by_hop(const char *name)
{
    static const char *const fixed[] = {"Connection", "Keep-Alive",        "TE",
                                        "Trailer",    "Transfer-Encoding", "Upgrade"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (strcasecmp(name, fixed[i]) == 0)
            return 1;
    return strncasecmp(name, "Proxy-", 6) == 0;
}

/* 1 when the comma-separated token list `list` holds `name` (any case,
 * optional whitespace around the commas). */
static int list_has(const char *list, const char *name)
{
    size_t n = strlen(name);
    const char *p = list;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *start = p;
        while (*p != '\0' && *p != ',')
            p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if ((size_t)(end - start) == n && strncasecmp(start, name, n) == 0)
            return 1;
    }
    return 0;
}

/* ------------------------------------------------------ the request */

typedef struct {
    const proxy_upstream *u;
    const nori_http_request *req;
    struct curl_slist *list;
    char *connection; /* every Connection value, joined by ',' */
    int has_accept, has_content_type, failed;
} header_out;

static int collect_connection(void *ud, const char *name, const char *value)
{
    header_out *h = ud;
    if (strcasecmp(name, "Connection") != 0)
        return 0;
    size_t old = h->connection != NULL ? strlen(h->connection) : 0;
    char *c = realloc(h->connection, old + strlen(value) + 2);
    if (c == NULL) {
        h->failed = 1;
        return 1;
    }
    if (old == 0)
        c[0] = '\0';
    else
        strcat(c, ",");
    strcat(c, value);
    h->connection = c;
    return 0;
}

static int append_line(header_out *h, const char *name, const char *value)
{
    /* libcurl's header list: "Name: value" sends it, "Name:" removes a
     * header libcurl would add itself, "Name;" sends it with no value. */
    size_t n = strlen(name) + strlen(value) + 3;
    char *line = malloc(n);
    if (line == NULL)
        return -1;
    if (value[0] == '\0')
        snprintf(line, n, "%s;", name);
    else
        snprintf(line, n, "%s: %s", name, value);
    struct curl_slist *l = curl_slist_append(h->list, line);
    free(line);
    if (l == NULL)
        return -1;
    h->list = l;
    return 0;
}

/* "Name:" alone: libcurl then sends no such header, not even its own. */
static int remove_line(header_out *h, const char *name)
{
    char line[64];
    snprintf(line, sizeof line, "%s:", name);
    struct curl_slist *l = curl_slist_append(h->list, line);
    if (l == NULL)
        return -1;
    h->list = l;
    return 0;
}

static int forward_header(void *ud, const char *name, const char *value)
{
    header_out *h = ud;
    if (hop_by_hop(name) || (h->connection != NULL && list_has(h->connection, name)) ||
        strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Expect") == 0)
        return 0;
    if (strcasecmp(name, "Host") == 0) {
        if (!h->u->preserve_host) {
            if (append_line(h, "X-Forwarded-Host", value) < 0)
                goto fail;
            return 0;
        }
    }
    if (strcasecmp(name, "Accept") == 0)
        h->has_accept = 1;
    if (strcasecmp(name, "Content-Type") == 0)
        h->has_content_type = 1;
    if (append_line(h, name, value) < 0)
        goto fail;
    return 0;
fail:
    h->failed = 1;
    return 1;
}

/* ------------------------------------------------------ the response */

typedef struct {
    char *name, *value;
} raw_header;

typedef struct {
    const proxy_upstream *u;
    raw_header *headers;
    size_t n, cap;
    char *body;
    size_t body_len, body_cap;
    int too_big, failed;
} exchange;

static void exchange_drop_headers(exchange *x)
{
    for (size_t i = 0; i < x->n; i++) {
        free(x->headers[i].name);
        free(x->headers[i].value);
    }
    x->n = 0;
}

static size_t on_header(char *data, size_t size, size_t nitems, void *ud)
{
    exchange *x = ud;
    size_t len = size * nitems, n = len;
    while (n > 0 && (data[n - 1] == '\r' || data[n - 1] == '\n'))
        n--;
    if (n == 0)
        return len; /* the blank line that ends a header block */
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        /* A status line: the headers of an interim 1xx before it are not
         * this response's. */
        exchange_drop_headers(x);
        return len;
    }
    if (data[0] == ' ' || data[0] == '\t') {
        /* Obsolete line folding (RFC 9112 5.2): a proxy replaces it with
         * a space, appended to the previous value. */
        if (x->n == 0)
            return len;
        raw_header *prev = &x->headers[x->n - 1];
        size_t old = strlen(prev->value);
        char *v = realloc(prev->value, old + n + 2);
        if (v == NULL) {
            x->failed = 1;
            return 0;
        }
        size_t skip = 0;
        while (skip < n && (data[skip] == ' ' || data[skip] == '\t'))
            skip++;
        v[old] = ' ';
        memcpy(v + old + 1, data + skip, n - skip);
        v[old + 1 + n - skip] = '\0';
        prev->value = v;
        return len;
    }
    const char *colon = memchr(data, ':', n);
    if (colon == NULL || colon == data)
        return len; /* not a field line: dropped, as the transport would */
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 16;
        raw_header *h = realloc(x->headers, cap * sizeof *h);
        if (h == NULL) {
            x->failed = 1;
            return 0;
        }
        x->headers = h;
        x->cap = cap;
    }
    const char *v = colon + 1, *end = data + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    raw_header *h = &x->headers[x->n];
    h->name = strndup(data, (size_t)(colon - data));
    h->value = strndup(v, (size_t)(end - v));
    if (h->name == NULL || h->value == NULL) {
        free(h->name);
        free(h->value);
        x->failed = 1;
        return 0;
    }
    x->n++;
    return len;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    exchange *x = ud;
    size_t len = size * nmemb;
    if (len > x->u->max_response_bytes - x->body_len) {
        x->too_big = 1;
        return 0; /* libcurl ends the transfer with CURLE_WRITE_ERROR */
    }
    if (x->body_len + len > x->body_cap) {
        size_t cap = x->body_cap ? x->body_cap : 16384;
        while (cap < x->body_len + len)
            cap *= 2;
        char *b = realloc(x->body, cap);
        if (b == NULL) {
            x->failed = 1;
            return 0;
        }
        x->body = b;
        x->body_cap = cap;
    }
    memcpy(x->body + x->body_len, data, len);
    x->body_len += len;
    return len;
}

/* The origin's headers into resp: hop-by-hop ones and Content-Length
 * dropped (kept on a HEAD, whose body libmicrohttpd does not send but whose
 * length it announces), Content-Type as the media type. */
static int copy_headers(const exchange *x, nori_http_response *resp, int head)
{
    const char *connection = NULL;
    for (size_t i = 0; i < x->n && connection == NULL; i++)
        if (strcasecmp(x->headers[i].name, "Connection") == 0)
            connection = x->headers[i].value;
    for (size_t i = 0; i < x->n; i++) {
        const raw_header *h = &x->headers[i];
        int rc = NORI_OK;
        if (hop_by_hop(h->name) || (connection != NULL && list_has(connection, h->name)))
            continue;
        if (strcasecmp(h->name, "Content-Length") == 0 && !head)
            continue;
        if (strcasecmp(h->name, "Content-Type") == 0 && resp->media_type == NULL)
            rc = nori_http_response_set_media_type(resp, h->value);
        else
            rc = nori_http_response_add_header(resp, h->name, h->value);
        if (rc != NORI_OK)
            return rc;
    }
    return NORI_OK;
}

static int gateway_error(nori_http_response *resp, int status, const char *what,
                         const char *detail)
{
    char text[512];
    int n = snprintf(text, sizeof text, "%s: %s\n", what, detail);
    nori_http_response_clear(resp);
    resp->status = status;
    int rc = nori_http_response_set_media_type(resp, "text/plain");
    if (rc == NORI_OK)
        rc = nori_http_response_set_body(resp, text,
                                         n < (int)sizeof text ? (size_t)n : sizeof text - 1);
    return rc;
}

/* An idle handle from the pool, reset (its options dropped, its kept-alive
 * connections kept), or a new one; NULL when out of memory. */
static CURL *easy_take(proxy_upstream *u)
{
    CURL *easy = NULL;
    pthread_mutex_lock(&u->pool_lock);
    if (u->n_pool > 0)
        easy = u->pool[--u->n_pool];
    pthread_mutex_unlock(&u->pool_lock);
    if (easy == NULL)
        return curl_easy_init();
    curl_easy_reset(easy);
    return easy;
}

/* Back to the pool, or freed (with its connections) when the pool is full:
 * the pool holds what a steady load needs, not what a burst made. */
static void easy_give(proxy_upstream *u, CURL *easy)
{
    /* The handle points at this exchange's header list and error buffer:
     * cleared before they go, so that nothing dangles while it is idle. */
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
    pthread_mutex_lock(&u->pool_lock);
    if (u->n_pool < UPSTREAM_POOL_MAX) {
        u->pool[u->n_pool++] = easy;
        easy = NULL;
    }
    pthread_mutex_unlock(&u->pool_lock);
    if (easy != NULL)
        curl_easy_cleanup(easy);
}

static char *build_url(const proxy_upstream *u, const nori_http_request *req)
{
    const char *path = req->path != NULL && req->path[0] == '/' ? req->path : "/";
    const char *query = req->query != NULL ? req->query : "";
    size_t n = strlen(u->origin) + strlen(path) + strlen(query) + 2;
    char *url = malloc(n);
    if (url != NULL)
        snprintf(url, n, "%s%s%s%s", u->origin, path, query[0] ? "?" : "", query);
    return url;
}

int proxy_upstream_handler(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    proxy_upstream *u = ud;
    int head = strcmp(req->method, "HEAD") == 0;
    int get = strcmp(req->method, "GET") == 0;
    header_out h = {u, req, NULL, NULL, 0, 0, 0};
    exchange x = {0};
    x.u = u;
    char errbuf[CURL_ERROR_SIZE] = "";
    char *url = build_url(u, req);
    CURL *easy = easy_take(u);
    int rc = NORI_ENOMEM;
    if (url == NULL || easy == NULL)
        goto out;

    nori_http_request_each_header(req, collect_connection, &h);
    if (!h.failed)
        nori_http_request_each_header(req, forward_header, &h);
    if (h.failed)
        goto out;
    if (!u->preserve_host && append_line(&h, "Host", u->host) < 0)
        goto out;
    /* What libcurl would add of its own accord is removed unless the client
     * sent it: Accept, a form Content-Type with a body, and Expect. */
    if ((!h.has_accept && remove_line(&h, "Accept") < 0) ||
        (!h.has_content_type && remove_line(&h, "Content-Type") < 0) ||
        remove_line(&h, "Expect") < 0)
        goto out;

    curl_easy_setopt(easy, CURLOPT_SHARE, u->share);
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, u->connect_timeout_ms);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, u->timeout_ms);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, h.list);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, &x);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
    /* Transfer and content codings stay as the origin sent them: no
     * CURLOPT_ACCEPT_ENCODING, so libcurl decodes nothing. */
    curl_easy_setopt(easy, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    curl_easy_setopt(easy, CURLOPT_HTTP_TRANSFER_DECODING, 1L);
    if (head) {
        curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    } else if (get && req->body_len == 0) {
        curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    } else if (req->body_len > 0 || strcmp(req->method, "POST") == 0 ||
               strcmp(req->method, "PUT") == 0 || strcmp(req->method, "PATCH") == 0) {
        /* A body, even an empty one, goes with its Content-Length. */
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body_len ? req->body : "");
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
    } else {
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
    }

    CURLcode cc = curl_easy_perform(easy);
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    if (x.failed) {
        rc = NORI_ENOMEM;
    } else if (x.too_big) {
        rc = gateway_error(resp, 502, "origin response too large", "over --max-response-bytes");
    } else if (cc == CURLE_OPERATION_TIMEDOUT) {
        rc = gateway_error(resp, 504, "origin timed out", errbuf[0] ? errbuf : curl_easy_strerror(cc));
    } else if (cc != CURLE_OK) {
        rc = gateway_error(resp, 502, "origin unreachable",
                           errbuf[0] ? errbuf : curl_easy_strerror(cc));
    } else if (status < 200 || status > 599) {
        /* What an HTTP/1.1 status line to a client can carry as a final
         * answer (the adapter sends nothing else). */
        char detail[64];
        snprintf(detail, sizeof detail, "status %ld", status);
        rc = gateway_error(resp, 502, "origin sent an unusable status", detail);
    } else {
        resp->status = (int)status;
        rc = copy_headers(&x, resp, head);
        if (rc == NORI_OK && x.body_len > 0) {
            nori_http_response_take_body(resp, x.body, x.body_len);
            x.body = NULL;
        }
    }
out:
    if (easy != NULL)
        easy_give(u, easy);
    curl_slist_free_all(h.list);
    free(h.connection);
    exchange_drop_headers(&x);
    free(x.headers);
    free(x.body);
    free(url);
    return rc;
}
