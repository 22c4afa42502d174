// SPDX-License-Identifier: MIT
/*
 * The FastCGI adapter's request half (nori/fcgi.h): a request accepted by
 * libfcgi on one side, nori_http_cache_serve() on the other. The CGI
 * parameters become a nori_http_request (nothing copied but a decoded
 * path), FCGI_STDIN becomes its body, and the nori_http_response goes back
 * as CGI headers and body on FCGI_STDOUT.
 *
 * FCGI_STDIN is always read to its end, GET included (the web server ends
 * it with an empty record): libfcgi reads the next request of a kept
 * connection from where this one stopped, and an unread STDIN record there
 * would be taken for a protocol error and cost the connection.
 */
#include "internal.h"

#include "../hex.h"
#include "../http/send.h"

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_MAX_BODY ((size_t)1024 * 1024)
/* Body bytes read and dropped past max_body (or of a refused request)
 * before giving up on the connection. */
#define DRAIN_MAX ((size_t)1024 * 1024)
/* Longest header name looked up or enumerated. */
#define MAX_HEADER_NAME 256

/* ------------------------------------------------------------ parameters */

static const char *param(char **envp, const char *name)
{
    return FCGX_GetParam(name, envp);
}

/* A non-empty parameter, or NULL. */
static const char *param_set(char **envp, const char *name)
{
    const char *v = FCGX_GetParam(name, envp);
    return v != NULL && *v != '\0' ? v : NULL;
}

/* RFC 9110 5.6.2 tchar. */
static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/*
 * The CGI parameter that carries header `name` ("Accept-Language" ->
 * "HTTP_ACCEPT_LANGUAGE"; Content-Type and Content-Length have their own,
 * unprefixed) into out[cap]. 0, or -1 when the name is not an HTTP token
 * (a '=' in it could otherwise match inside another parameter) or too long.
 */
static int cgi_name(const char *name, char *out, size_t cap)
{
    if (strcasecmp(name, "Content-Type") == 0 || strcasecmp(name, "Content-Length") == 0) {
        snprintf(out, cap, "%s", name[8] == 'T' || name[8] == 't' ? "CONTENT_TYPE"
                                                                   : "CONTENT_LENGTH");
        return 0;
    }
    size_t n = strlen(name);
    if (n == 0 || n + 6 > cap)
        return -1;
    memcpy(out, "HTTP_", 5);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!is_tchar(c))
            return -1;
        out[5 + i] = c == '-' ? '_' : (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
    }
    out[5 + n] = '\0';
    return 0;
}

/* nori_http_header_fn: ud is the envp. The first parameter of that name
 * (compared in any case), or NULL; an empty CONTENT_TYPE or CONTENT_LENGTH
 * (nginx sends both on every request) is no header. */
static const char *fcgi_header(void *ud, const char *name)
{
    char **envp = ud;
    char key[MAX_HEADER_NAME + 8];
    if (name == NULL || cgi_name(name, key, sizeof key) < 0)
        return NULL;
    size_t klen = strlen(key);
    for (char **p = envp; *p != NULL; p++) {
        if (strncasecmp(*p, key, klen) == 0 && (*p)[klen] == '=') {
            const char *v = *p + klen + 1;
            if (*v == '\0' && key[0] == 'C')
                return NULL;
            return v;
        }
    }
    return NULL;
}

/* HTTP_ACCEPT_LANGUAGE -> "Accept-Language" into out[cap]; 0 or -1. */
static int http_name(const char *cgi, size_t len, char *out, size_t cap)
{
    if (len == 0 || len >= cap)
        return -1;
    int up = 1;
    for (size_t i = 0; i < len; i++) {
        char c = cgi[i];
        if (c == '_') {
            out[i] = '-';
            up = 1;
            continue;
        }
        if (up && c >= 'a' && c <= 'z')
            c = (char)(c - 32);
        else if (!up && c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        out[i] = c;
        up = 0;
    }
    out[len] = '\0';
    return 0;
}

/* nori_http_headers_fn: the HTTP_* parameters and a non-empty CONTENT_TYPE
 * and CONTENT_LENGTH, in the order the web server sent them. */
static int fcgi_each_header(void *ud, nori_http_header_visit_fn visit, void *visit_ud)
{
    char **envp = ud;
    char name[MAX_HEADER_NAME + 1];
    for (char **p = envp; *p != NULL; p++) {
        const char *eq = strchr(*p, '=');
        if (eq == NULL)
            continue;
        const char *v = eq + 1;
        int ok;
        if (strncmp(*p, "HTTP_", 5) == 0)
            ok = http_name(*p + 5, (size_t)(eq - *p - 5), name, sizeof name) == 0;
        else if ((size_t)(eq - *p) == 12 && strncmp(*p, "CONTENT_TYPE", 12) == 0 && *v)
            ok = snprintf(name, sizeof name, "Content-Type") > 0;
        else if ((size_t)(eq - *p) == 14 && strncmp(*p, "CONTENT_LENGTH", 14) == 0 && *v)
            ok = snprintf(name, sizeof name, "Content-Length") > 0;
        else
            continue;
        if (!ok)
            continue; /* a name over MAX_HEADER_NAME bytes: no HTTP header is */
        int rc = visit(visit_ud, name, v);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/*
 * The decoded path of the request into a malloc()ed string (*path), or a
 * borrowed parameter (*path set, *owned NULL). 0, -1 when there is no
 * usable path (400), -2 out of memory.
 */
static int request_path(char **envp, const char **path, char **owned)
{
    *owned = NULL;
    const char *sn = param_set(envp, "SCRIPT_NAME"), *pi = param_set(envp, "PATH_INFO");
    if (sn != NULL && pi != NULL) {
        size_t a = strlen(sn), b = strlen(pi);
        if ((*owned = malloc(a + b + 1)) == NULL)
            return -2;
        memcpy(*owned, sn, a);
        memcpy(*owned + a, pi, b + 1);
        *path = *owned;
    } else if (sn != NULL || pi != NULL) {
        *path = sn != NULL ? sn : pi;
    } else if ((*path = param_set(envp, "DOCUMENT_URI")) == NULL) {
        /* REQUEST_URI is the raw request target: decode %XX up to '?'. A
         * malformed escape stays as written (as libmicrohttpd does); %00
         * cannot be represented in a C string path and is refused. */
        const char *uri = param_set(envp, "REQUEST_URI");
        if (uri == NULL)
            return -1;
        size_t n = strcspn(uri, "?#");
        if ((*owned = malloc(n + 1)) == NULL)
            return -2;
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            int h, l;
            if (uri[i] == '%' && i + 2 < n && (h = nori__hex_digit(uri[i + 1])) >= 0 &&
                (l = nori__hex_digit(uri[i + 2])) >= 0) {
                if (h == 0 && l == 0) {
                    free(*owned);
                    *owned = NULL;
                    return -1;
                }
                (*owned)[o++] = (char)(h * 16 + l);
                i += 2;
            } else {
                (*owned)[o++] = uri[i];
            }
        }
        (*owned)[o] = '\0';
        *path = *owned;
    }
    return (*path)[0] == '/' ? 0 : -1;
}

/* The raw query: QUERY_STRING when sent (even empty), else what follows
 * '?' in REQUEST_URI (without a fragment), else "". */
static const char *request_query(char **envp, char **owned)
{
    *owned = NULL;
    const char *q = param(envp, "QUERY_STRING");
    if (q != NULL)
        return q;
    const char *uri = param(envp, "REQUEST_URI");
    const char *mark = uri != NULL ? strchr(uri, '?') : NULL;
    if (mark == NULL)
        return "";
    size_t n = strcspn(mark + 1, "#");
    if (mark[1 + n] == '\0')
        return mark + 1;
    if ((*owned = malloc(n + 1)) == NULL)
        return NULL;
    memcpy(*owned, mark + 1, n);
    (*owned)[n] = '\0';
    return *owned;
}

/* ------------------------------------------------------------------ body */

typedef struct {
    char *data;
    size_t len, cap;
} body_buf;

static int body_append(body_buf *b, const char *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (d == NULL)
            return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

typedef enum { BODY_OK, BODY_TOO_LARGE, BODY_SHORT, BODY_BROKEN, BODY_NOMEM } body_result;

/*
 * Reads FCGI_STDIN to its end, keeping up to `keep` bytes in *b (keep 0:
 * drop everything), and at most keep + DRAIN_MAX bytes in all. *at_end is
 * set when the end was reached. expect: CONTENT_LENGTH, or -1 when none.
 */
static body_result read_body(FCGX_Stream *in, size_t keep, int64_t expect, body_buf *b,
                             int *at_end)
{
    char chunk[16384];
    size_t seen = 0;
    int over = 0;
    *at_end = 0;
    for (;;) {
        int n = FCGX_GetStr(chunk, (int)sizeof chunk, in);
        if (n > 0) {
            if (!over && seen + (size_t)n <= keep) {
                if (body_append(b, chunk, (size_t)n) < 0)
                    return BODY_NOMEM;
            } else {
                over = 1;
            }
            seen += (size_t)n;
        }
        if (n < (int)sizeof chunk) {
            if (FCGX_GetError(in) != 0)
                return BODY_BROKEN;
            *at_end = 1;
            break;
        }
        if (seen > keep + DRAIN_MAX)
            break;
    }
    if (over || (expect >= 0 && (uint64_t)expect > keep))
        return BODY_TOO_LARGE;
    if (expect >= 0 && seen < (uint64_t)expect)
        return BODY_SHORT;
    return BODY_OK;
}

/* CONTENT_LENGTH: -1 when absent or empty, -2 when not a decimal number. */
static int64_t content_length(char **envp)
{
    const char *v = param_set(envp, "CONTENT_LENGTH");
    if (v == NULL)
        return -1;
    if (strlen(v) > 18)
        return -2;
    int64_t n = 0;
    for (; *v; v++) {
        if (*v < '0' || *v > '9')
            return -2;
        n = n * 10 + (*v - '0');
    }
    return n;
}

/* -------------------------------------------------------------- response */

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

/* A header the adapter may send as a CGI header line: a token name that
 * is not one the adapter writes itself, a value without control bytes
 * (HTAB allowed): a CR or LF would end the header block early and let the
 * value write headers or body of its own. */
static int header_sendable(const char *name, const char *value)
{
    if (name[0] == '\0' || strcasecmp(name, "Status") == 0 ||
        strcasecmp(name, "Content-Length") == 0)
        return 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (!is_tchar(*p))
            return 0;
    for (const unsigned char *p = (const unsigned char *)value; *p; p++)
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
            return 0;
    return 1;
}

/* 1 when every header (and the media type) of r can be sent as is. */
static int all_sendable(const nori_http_response *r)
{
    if (r->media_type != NULL && !header_sendable("Content-Type", r->media_type))
        return 0;
    for (size_t i = 0; i < r->n_headers; i++) {
        const char *n = r->headers[i].name;
        if (strcasecmp(n, "Content-Length") == 0)
            continue; /* the adapter writes its own (a 304's from this one) */
        if (!header_sendable(n, r->headers[i].value))
            return 0;
    }
    return 1;
}

static int put_all(FCGX_Stream *out, const char *data, size_t len)
{
    while (len > 0) {
        int n = len > (size_t)(INT_MAX / 2) ? INT_MAX / 2 : (int)len;
        if (FCGX_PutStr(data, n, out) != n)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Writes resp as a CGI response to req->out and flushes it. x_cache: the
 * X-Cache value, or NULL. Headers that cannot be sent are dropped (the
 * caller has served a hit with such a header again as a miss). 0, or -1
 * when the connection failed (or memory ran out before anything was sent).
 */
static int write_response(FCGX_Request *req, const nori_http_response *resp,
                          const char *x_cache, int head_only)
{
    int status = nori__send_status(resp);
    int64_t announced = nori__send_announced_length(resp, head_only);
    struct {
        char *data;
        size_t len;
        FILE *f;
    } h = {NULL, 0, NULL};
    if ((h.f = open_memstream(&h.data, &h.len)) == NULL)
        return -1;
    fprintf(h.f, "Status: %d %s\r\n", status, reason(status));
    if (resp->media_type != NULL && header_sendable("Content-Type", resp->media_type))
        fprintf(h.f, "Content-Type: %s\r\n", resp->media_type);
    for (size_t i = 0; i < resp->n_headers; i++)
        if (header_sendable(resp->headers[i].name, resp->headers[i].value))
            fprintf(h.f, "%s: %s\r\n", resp->headers[i].name, resp->headers[i].value);
    /* RFC 9110 8.6: no Content-Length on a 204; on a 304 only the 200's;
     * on a bodiless HEAD answer the one its handler announced. */
    if (announced >= 0)
        fprintf(h.f, "Content-Length: %lld\r\n", (long long)announced);
    else if (status != 204 && status != 304)
        fprintf(h.f, "Content-Length: %zu\r\n", resp->body_len);
    if (x_cache != NULL)
        fprintf(h.f, "X-Cache: %s\r\n", x_cache);
    fputs("\r\n", h.f);
    if (fclose(h.f) != 0) {
        free(h.data);
        return -1;
    }
    int rc = put_all(req->out, h.data, h.len);
    free(h.data);
    int has_body = !head_only && status != 304 && status != 204;
    if (rc == 0 && has_body && resp->body_len > 0)
        rc = put_all(req->out, resp->body, resp->body_len);
    if (rc == 0 && FCGX_FFlush(req->out) != 0)
        rc = -1;
    return rc == 0 && FCGX_GetError(req->out) == 0 ? 0 : -1;
}

/* The adapter's own answers (400, 404, 413, 500): text, no X-Cache. */
static int write_text(FCGX_Request *req, int status, const char *body, int head_only)
{
    nori_http_response r;
    nori_http_response_init(&r);
    r.status = status;
    int rc = -1;
    if (nori_http_response_set_media_type(&r, "text/plain") == NORI_OK &&
        nori_http_response_set_body(&r, body, strlen(body)) == NORI_OK)
        rc = write_response(req, &r, NULL, head_only);
    nori_http_response_clear(&r);
    return rc;
}

/* ----------------------------------------------------------------- serve */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc;

/* libfcgi's FCGX_Init() installs handlers of its own for SIGTERM, SIGUSR1
 * and SIGPIPE wherever they are at their default (Debian's 2.4.2: a
 * SIGTERM then only sets a flag that nothing here reads, and the process
 * no longer stops on it). A library must not change how its application
 * reacts to signals: the dispositions are put back as they were. */
static void init_lib(void)
{
    static const int sigs[] = {SIGTERM, SIGUSR1, SIGPIPE};
    struct sigaction saved[sizeof sigs / sizeof *sigs];
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
        sigaction(sigs[i], NULL, &saved[i]);
    init_rc = FCGX_Init();
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
        sigaction(sigs[i], &saved[i], NULL);
}

int nori__fcgi_init(void)
{
    pthread_once(&init_once, init_lib);
    if (init_rc != 0)
        return nori_set_error(NORI_EBACKEND, "fcgi: FCGX_Init failed (%d)", init_rc);
    return NORI_OK;
}

static void phase(void (*hook)(void *), void *ud)
{
    if (hook != NULL)
        hook(ud);
}

int nori__fcgi_serve(const nori_fcgi_app *app, FCGX_Request *req, nori__fcgi_serve_ctx *ctx)
{
    ctx->refused = 0;
    ctx->must_close = 0;
    char **envp = req->envp;
    const char *method = param_set(envp, "REQUEST_METHOD");
    int head_only = method != NULL && strcmp(method, "HEAD") == 0;
    const char *path = NULL, *query;
    char *path_owned = NULL, *query_owned = NULL;
    body_buf body = {NULL, 0, 0};
    int rc = NORI_OK, at_end = 0, wrote;
    size_t max = app->max_body ? app->max_body : DEFAULT_MAX_BODY;

    /* The request line, before any body is kept: a request that will be
     * refused has its body read and dropped. */
    int status = 0; /* non-zero: the adapter's own answer */
    const char *text_body = NULL;
    const nori_http_route *route = NULL;
    int prc = method != NULL ? request_path(envp, &path, &path_owned) : -1;
    query = request_query(envp, &query_owned);
    int64_t expect = content_length(envp);
    if (prc == -2 || query == NULL) {
        rc = NORI_ENOMEM;
        status = 500;
        text_body = "internal error\n";
    } else if (method == NULL) {
        status = 400;
        text_body = "bad request: no REQUEST_METHOD\n";
    } else if (prc < 0) {
        status = 400;
        text_body = "bad request: no usable path\n";
    } else if (expect == -2) {
        status = 400;
        text_body = "bad request: CONTENT_LENGTH is not a number\n";
    } else if ((route = nori__send_route(app->routes, app->n_routes, path)) == NULL) {
        status = 404;
        text_body = "not found\n";
    } else if (!nori_http_method_allowed(route->methods, method)) {
        status = 405;
    }

    body_result br = read_body(req->in, status ? 0 : max, status ? -1 : expect, &body, &at_end);
    ctx->must_close = !at_end;
    if (br == BODY_BROKEN) {
        ctx->must_close = 1;
        rc = NORI_EBACKEND;
        goto done;
    }
    if (status == 0 && br == BODY_NOMEM) {
        rc = NORI_ENOMEM;
        status = 500;
        text_body = "internal error\n";
    } else if (status == 0 && br == BODY_TOO_LARGE) {
        status = 413;
        text_body = "request body too large\n";
    } else if (status == 0 && br == BODY_SHORT) {
        status = 400;
        text_body = "bad request: body shorter than CONTENT_LENGTH\n";
    }

    if (status != 0) {
        ctx->refused = status != 500;
        phase(ctx->writing_starts, ctx->ud);
        if (status == 405) {
            nori_http_response resp;
            nori_http_response_init(&resp);
            wrote = -1;
            if (nori_http_response_not_allowed(&resp, route->methods) == NORI_OK)
                wrote = write_response(req, &resp, NULL, head_only);
            else
                wrote = write_text(req, 500, "internal error\n", head_only);
            nori_http_response_clear(&resp);
        } else {
            wrote = write_text(req, status, text_body, head_only);
        }
        if (wrote < 0) {
            ctx->must_close = 1;
            rc = NORI_EBACKEND;
        }
        goto done;
    }

    nori_http_request hreq = {method, path, query, fcgi_header, envp,
                              body.data, body.len, fcgi_each_header};
    nori_http_response resp;
    nori_http_response_init(&resp);
    phase(ctx->handler_starts, ctx->ud);
    int hrc = nori_http_cache_serve(route->cache, &hreq, route->handler, route->ud, &resp);
    if (hrc >= 0 && (resp.origin == NORI_HTTP_HIT || resp.origin == NORI_HTTP_STALE) &&
        !all_sendable(&resp)) {
        /* A stored entry that cannot go out as it is: serve as a miss,
         * which also overwrites the entry (nori_http_cache_serve_again). */
        hrc = nori_http_cache_serve_again(route->cache, &hreq, route->handler, route->ud,
                                          &resp);
    }
    phase(ctx->writing_starts, ctx->ud);
    if (hrc < 0)
        wrote = write_text(req, 500, "internal error\n", head_only);
    else
        wrote = write_response(req, &resp,
                               route->cache != NULL ? nori_http_origin_name(resp.origin) : NULL,
                               head_only);
    nori_http_response_clear(&resp);
    if (wrote < 0) {
        ctx->must_close = 1;
        rc = NORI_EBACKEND;
    }

done:
    if (rc == NORI_EBACKEND)
        nori_set_error(rc, "fcgi: the connection failed while %s",
                       br == BODY_BROKEN ? "reading the request" : "writing the response");
    else if (rc == NORI_ENOMEM)
        nori_set_error(rc, "fcgi: out of memory serving a request");
    free(body.data);
    free(path_owned);
    free(query_owned);
    return rc;
}

int nori_fcgi_handle(const nori_fcgi_app *app, FCGX_Request *req)
{
    if (app == NULL || req == NULL || req->envp == NULL || req->in == NULL || req->out == NULL)
        return nori_set_error(NORI_EINVAL, "fcgi_handle: app or an accepted request is NULL");
    int rc = nori__fcgi_init(); /* a no-op when the caller's FCGX_Init() ran */
    if (rc != NORI_OK)
        return rc;
    nori__fcgi_serve_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    return nori__fcgi_serve(app, req, &ctx);
}
