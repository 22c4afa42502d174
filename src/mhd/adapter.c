// SPDX-License-Identifier: MIT
/*
 * The libmicrohttpd adapter (nori/mhd.h): MHD's access-handler protocol on
 * one side, nori_http_cache_serve() on the other. Kept outside the core
 * library (its own library, noricache_mhd) so that applications that do not
 * use MHD do not link it, as hiredis keeps its event-loop adapters apart.
 *
 * MHD calls the access handler several times per request:
 *   1st call: headers received; *req_cls is ours (from the URI log callback).
 *             We return without queuing: queuing here makes MHD close the
 *             connection after the response (no keep-alive).
 *   next calls with *upload_data_size > 0: body chunks; we append them.
 *   last call (*upload_data_size == 0): we serve and queue the response.
 */
#include "nori/mhd.h"

#include "../http/send.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_MAX_BODY ((size_t)1024 * 1024)

typedef struct {
    int started;    /* the first call has been seen */
    int too_large;  /* the body went over max_body: answer 413 */
    int refused;    /* no route, or a method the route does not serve: the
                       body is dropped, the answer is 404 or 405 */
    const nori_mhd_route *route; /* found on the first call; NULL = 404 */
    int raw_query;  /* query[] holds the raw query (URI log callback ran) */
    char *body;
    size_t body_len, body_cap;
    char query[];   /* raw query string, "" when none */
} req_state;

static req_state *state_new(const char *query, size_t qlen)
{
    req_state *st = malloc(sizeof *st + qlen + 1);
    if (st == NULL)
        return NULL;
    memset(st, 0, sizeof *st);
    memcpy(st->query, query, qlen);
    st->query[qlen] = '\0';
    return st;
}

void *nori_mhd_uri_log(void *cls, const char *uri, struct MHD_Connection *con)
{
    (void)cls;
    (void)con;
    const char *q = uri != NULL ? strchr(uri, '?') : NULL;
    req_state *st;
    if (q == NULL) {
        st = state_new("", 0);
    } else {
        q++;
        /* Browsers never send a fragment, but a hand-written client might. */
        st = state_new(q, strcspn(q, "#"));
    }
    if (st != NULL)
        st->raw_query = 1;
    return st;
}

void nori_mhd_completed(void *cls, struct MHD_Connection *connection, void **req_cls,
                        enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)connection;
    (void)toe;
    req_state *st = *req_cls;
    if (st != NULL) {
        free(st->body);
        free(st);
        *req_cls = NULL;
    }
}

static const char *mhd_header(void *ud, const char *name)
{
    /* MHD compares header names case-insensitively, as HTTP requires. */
    return MHD_lookup_connection_value(ud, MHD_HEADER_KIND, name);
}

typedef struct {
    nori_http_header_visit_fn visit;
    void *visit_ud;
    int stopped_with;
} header_walk;

static enum MHD_Result mhd_visit(void *cls, enum MHD_ValueKind kind, const char *name,
                                 const char *value)
{
    header_walk *w = cls;
    (void)kind;
    w->stopped_with = w->visit(w->visit_ud, name, value != NULL ? value : "");
    return w->stopped_with == 0 ? MHD_YES : MHD_NO;
}

/* MHD keeps the headers in the order received. */
static int mhd_each_header(void *ud, nori_http_header_visit_fn visit, void *visit_ud)
{
    header_walk w = {visit, visit_ud, 0};
    MHD_get_connection_values(ud, MHD_HEADER_KIND, mhd_visit, &w);
    return w.stopped_with;
}

static int append_body(req_state *st, const char *data, size_t len, size_t max)
{
    if (st->too_large || len > max - st->body_len) {
        st->too_large = 1;
        return 0;
    }
    if (st->body_len + len + 1 > st->body_cap) {
        size_t cap = st->body_cap ? st->body_cap : 1024;
        while (cap < st->body_len + len + 1)
            cap *= 2;
        char *b = realloc(st->body, cap);
        if (b == NULL)
            return -1;
        st->body = b;
        st->body_cap = cap;
    }
    memcpy(st->body + st->body_len, data, len);
    st->body_len += len;
    st->body[st->body_len] = '\0';
    return 0;
}

static enum MHD_Result queue_text(struct MHD_Connection *con, unsigned status, const char *text)
{
    struct MHD_Response *mr =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (mr == NULL)
        return MHD_NO;
    MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain");
    enum MHD_Result r = MHD_queue_response(con, status, mr);
    MHD_destroy_response(mr);
    return r;
}

/* Never called: MHD sends no content with a 304 (it only announces the
 * length). Should a later MHD ask, the connection is closed rather than
 * sending bytes a client would read as the next response. */
static ssize_t no_content(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    (void)pos;
    (void)buf;
    (void)max;
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

/*
 * Builds the MHD response for resp (taking its body block over). Returns
 * NULL on allocation failure, and also when MHD refuses a header of a
 * response that came from the cache (*refused set): a hit must be sent
 * exactly as stored or not at all, so the caller serves it again as a miss.
 * On the handler's own response a refused header (CR/LF in the value) is
 * dropped, as before.
 */
static struct MHD_Response *build(nori_http_response *resp, const char *x_cache,
                                  int *refused, int head)
{
    struct MHD_Response *mr;
    *refused = 0;
    int64_t announced = nori__send_announced_length(resp, head);
    if (announced >= 0) {
        /* libmicrohttpd 0.9.75 writes "Content-Length: <size of the
         * response>" on a 304 too, and a Content-Length set by hand comes
         * out twice (MHD_RF_INSANITY_HEADER_CONTENT_LENGTH adds, never
         * replaces); a buffer response would say 0. A callback response of
         * the 200's size makes MHD announce that length and, 304 being
         * bodiless, send no content and never call the callback. */
        mr = MHD_create_response_from_callback((uint64_t)announced, 4096, no_content, NULL, NULL);
    } else if (resp->body != NULL) {
        /* Zero copy: MHD sends the block as is and free()s it afterwards. */
        mr = MHD_create_response_from_buffer_with_free_callback_cls(resp->body_len, resp->body,
                                                                    free, resp->body);
        if (mr != NULL) {
            resp->body = NULL;
            resp->body_len = 0;
        }
    } else {
        mr = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (mr == NULL)
        return NULL;
    int ok = 1;
    if (resp->media_type != NULL)
        ok &= MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE, resp->media_type) ==
              MHD_YES;
    for (size_t i = 0; i < resp->n_headers; i++) {
        if (announced >= 0 && strcasecmp(resp->headers[i].name, "Content-Length") == 0)
            continue; /* announced by MHD from the response size */
        ok &= MHD_add_response_header(mr, resp->headers[i].name, resp->headers[i].value) ==
              MHD_YES;
    }
    if (x_cache != NULL)
        ok &= MHD_add_response_header(mr, "X-Cache", x_cache) == MHD_YES;
    if (!ok && (resp->origin == NORI_HTTP_HIT || resp->origin == NORI_HTTP_STALE)) {
        MHD_destroy_response(mr);
        *refused = 1;
        return NULL;
    }
    return mr;
}

static enum MHD_Result queue_built(struct MHD_Connection *con, const nori_http_response *resp,
                                   struct MHD_Response *mr)
{
    /* Only what an HTTP/1.1 response line can carry: 1xx would desynchronise
     * keep-alive (the client reads the next response as this one's). */
    unsigned status = (unsigned)nori__send_status(resp);
    enum MHD_Result r = MHD_queue_response(con, status, mr);
    MHD_destroy_response(mr);
    return r;
}

/* 405 with Allow, before the handler and the cache: a method the route does
 * not declare must not reach a handler that would answer it 2xx, which the
 * cache would then take for a write and invalidate the path. */
static enum MHD_Result queue_not_allowed(struct MHD_Connection *con, const nori_mhd_route *route)
{
    nori_http_response resp;
    nori_http_response_init(&resp);
    int refused = 0;
    struct MHD_Response *mr = NULL;
    if (nori_http_response_not_allowed(&resp, route->methods) == NORI_OK)
        mr = build(&resp, NULL, &refused, 0);
    enum MHD_Result r = mr != NULL ? queue_built(con, &resp, mr) : MHD_NO;
    nori_http_response_clear(&resp);
    return r;
}

enum MHD_Result nori_mhd_handler(void *cls, struct MHD_Connection *connection, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **req_cls)
{
    (void)version;
    const nori_mhd_app *app = cls;
    req_state *st = *req_cls;
    if (st == NULL) {
        /* NORI_MHD_OPTIONS missing: serve, but without the raw query the
         * cache cannot tell ?page=1 from ?page=2, so it is bypassed below. */
        if ((st = state_new("", 0)) == NULL)
            return MHD_NO;
        *req_cls = st;
    }
    if (!st->started) {
        st->started = 1;
        /* The route and the method are decided on the headers, so that a
         * request that will be refused does not have its body kept. */
        st->route = nori__send_route(app->routes, app->n_routes, url);
        st->refused = st->route == NULL || !nori_http_method_allowed(st->route->methods, method);
        return MHD_YES; /* never queue on the first call: keep-alive */
    }
    size_t max = app->max_body ? app->max_body : DEFAULT_MAX_BODY;
    if (*upload_data_size > 0) {
        if (!st->refused && append_body(st, upload_data, *upload_data_size, max) < 0)
            return MHD_NO;
        *upload_data_size = 0;
        return MHD_YES;
    }
    const nori_mhd_route *route = st->route;
    if (route == NULL)
        return queue_text(connection, MHD_HTTP_NOT_FOUND, "not found\n");
    if (st->refused)
        return queue_not_allowed(connection, route);
    if (st->too_large)
        return queue_text(connection, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large\n");

    int head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    nori_http_request req = {method, url, st->query, mhd_header, connection,
                             st->body, st->body_len, mhd_each_header};
    nori_http_response resp;
    nori_http_response_init(&resp);
    nori_http_cache *cache = st->raw_query ? route->cache : NULL;
    int rc = nori_http_cache_serve(cache, &req, route->handler, route->ud, &resp);
    enum MHD_Result r = MHD_NO;
    struct MHD_Response *mr = NULL;
    /* Every response of a cached route says what the cache did, BYPASS
     * included (the cache was not consulted: method, credentials, ...). */
    int refused = 0;
    if (rc >= 0)
        mr = build(&resp, route->cache != NULL ? nori_http_origin_name(resp.origin) : NULL,
                   &refused, head);
    if (refused) {
        /* A stored entry MHD cannot send: serve as a miss, which also
         * overwrites the entry (see nori_http_cache_serve_again). */
        rc = nori_http_cache_serve_again(cache, &req, route->handler, route->ud, &resp);
        if (rc >= 0)
            mr = build(&resp, nori_http_origin_name(resp.origin), &refused, head);
    }
    if (rc < 0)
        r = queue_text(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal error\n");
    else if (mr != NULL)
        r = queue_built(connection, &resp, mr);
    nori_http_response_clear(&resp);
    /* The request is answered: MHD will not call us again for it, so the
     * state (and an uploaded body) can go now rather than at completion. */
    nori_mhd_completed(cls, connection, req_cls, MHD_REQUEST_TERMINATED_COMPLETED_OK);
    return r;
}
