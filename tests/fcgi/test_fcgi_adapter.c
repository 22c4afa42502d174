// SPDX-License-Identifier: MIT
/*
 * The FastCGI adapter in-process (nori/fcgi.h): a nori_fcgi_server on a
 * unix socket in a temporary directory, and the tests' FastCGI client
 * (fcgi_client.h) playing the web server, well-behaved or not.
 *  - the rules it shares with the MHD adapter: X-Cache, HEAD, 304, 405 +
 *    Allow before the cache, 404, 413, a header a handler cannot send;
 *  - the request view: method, path (SCRIPT_NAME + PATH_INFO, DOCUMENT_URI,
 *    decoded REQUEST_URI), raw query, headers looked up and enumerated;
 *  - kept connections (FCGI_KEEP_CONN): several requests on one;
 *  - a hostile web server: malformed records, a close mid-request, a stall
 *    or trickle (bounded by io_timeout_ms), an idle kept connection
 *    (idle_timeout_ms), an abort while the handler runs; after each, the
 *    server still answers and its counters say what happened;
 *  - the sockets: nori_fcgi_listen's refusals, the inherited fd 0,
 *    FCGI_WEB_SERVER_ADDRS, nori_fcgi_handle in an application's own loop.
 * Each bound is asserted with a generous margin (10x or more the configured
 * timeout) so that a loaded machine cannot fail it; what is asserted
 * exactly is that the connection ends and the counter moves.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fcgi_client.h"
#include "test_support.h"

#include <nori/fcgi.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_MS 300
#define IDLE_TIMEOUT_MS 300
#define MAX_BODY 1024
/* What the tests allow for a bound of IO_TIMEOUT_MS: generous (sanitizer
 * builds on a loaded 2-core machine), still far below "never". */
#define BOUND_MS 10000

static struct {
    char *dir;
    char sock[256];
    nori_backend *backend;
    nori_http_cache *cache;
    nori_fcgi_server *server;
    nori_fcgi_app app;
} fx;

static int next_id = 1;

/* ----------------------------------------------------------------- routes */

typedef struct {
    char *text;
    size_t len;
    size_t cap;
} acc;

static void acc_add(acc *a, const char *s)
{
    size_t n = strlen(s);
    if (a->len + n + 1 > a->cap) {
        a->cap = (a->len + n + 1) * 2;
        a->text = realloc(a->text, a->cap);
    }
    memcpy(a->text + a->len, s, n + 1);
    a->len += n;
}

static int visit(void *ud, const char *name, const char *value)
{
    acc_add(ud, "H ");
    acc_add(ud, name);
    acc_add(ud, ": ");
    acc_add(ud, value);
    acc_add(ud, "\n");
    return 0;
}

/* Echoes what the adapter made of the request. */
static int echo(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)ud;
    acc a = {0};
    char line[512];
    snprintf(line, sizeof line, "method %s\npath %s\nquery %s\nbody %zu\n", req->method,
             req->path, req->query ? req->query : "(null)", req->body_len);
    acc_add(&a, line);
    const char *lookups[] = {"x-user", "X_USER", "Content-Type", "content-length",
                             "Accept-Language", "X=Y"};
    for (size_t i = 0; i < sizeof lookups / sizeof *lookups; i++) {
        const char *v = nori_http_request_header(req, lookups[i]);
        snprintf(line, sizeof line, "L %s=%s\n", lookups[i], v ? v : "(none)");
        acc_add(&a, line);
    }
    nori_http_request_each_header(req, visit, &a);
    if (req->body_len) {
        acc_add(&a, "B ");
        acc_add(&a, req->body);
        acc_add(&a, "\n");
    }
    nori_http_response_take_body(resp, a.text, a.len);
    return nori_http_response_set_media_type(resp, "text/plain");
}

static _Atomic int page_runs;

/* A cached page whose body holds every byte value (binary-safe path). */
static int page(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)ud;
    page_runs++;
    if (strcmp(req->method, "POST") == 0) {
        resp->status = 201;
        return nori_http_response_set_body(resp, "written\n", 8);
    }
    unsigned char b[512];
    for (int i = 0; i < 512; i++)
        b[i] = (unsigned char)(i & 255);
    int rc = nori_http_response_set_body(resp, b, sizeof b);
    return rc ? rc : nori_http_response_set_media_type(resp, "application/octet-stream");
}

/* Headers that must not reach the wire as set. */
static int bad_header(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)req;
    (void)ud;
    nori_http_response_set_body(resp, "ok\n", 3);
    nori_http_response_add_header(resp, "X-Evil", "a\r\nX-Injected: 1");
    nori_http_response_add_header(resp, "Status", "302 Found");
    nori_http_response_add_header(resp, "Bad Name", "x");
    nori_http_response_add_header(resp, "X-Good", "yes\tthere");
    return NORI_OK;
}

/* Answers HEAD as a proxy relaying the origin's HEAD would: no body, the
 * length a GET would get. */
static int head_len(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)ud;
    if (strcmp(req->method, "HEAD") == 0)
        return nori_http_response_add_header(resp, "Content-Length", "1234");
    return nori_http_response_set_body(resp, "abc", 3);
}

static int sleepy(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)req;
    (void)ud;
    struct timespec ts = {0, 300 * 1000000L};
    nanosleep(&ts, NULL);
    /* Large enough not to fit a socket buffer: the write meets the abort. */
    size_t n = 4 * 1024 * 1024;
    char *b = malloc(n);
    memset(b, 'z', n);
    nori_http_response_take_body(resp, b, n);
    return NORI_OK;
}

static nori_fcgi_route routes[] = {
    {"/echo", echo, NULL, NULL, NORI_HTTP_METHODS_ALL},
    {"/page", page, NULL, NULL, NORI_HTTP_GET | NORI_HTTP_POST}, /* cache set in setup */
    {"/bad", bad_header, NULL, NULL, NORI_HTTP_GET},
    {"/sleepy", sleepy, NULL, NULL, NORI_HTTP_GET},
    {"/headlen", head_len, NULL, NULL, NORI_HTTP_GET},
};

static nori_fcgi_stats stats(void)
{
    nori_fcgi_stats s;
    nori_fcgi_server_get_stats(fx.server, &s);
    return s;
}

static int group_setup(void **state)
{
    (void)state;
    fx.dir = nori_test_mkdtemp();
    snprintf(fx.sock, sizeof fx.sock, "%s/fcgi.sock", fx.dir);
    assert_nori(nori_memory_backend_new(1000, &fx.backend), NORI_OK);
    nori_http_cache_options o;
    nori_http_cache_options_init(&o);
    o.backend = fx.backend;
    assert_nori(nori_http_cache_new(&o, &fx.cache), NORI_OK);
    routes[1].cache = fx.cache;
    routes[2].cache = fx.cache;
    fx.app = (nori_fcgi_app){routes, sizeof routes / sizeof *routes, MAX_BODY};
    nori_fcgi_options so;
    nori_fcgi_options_init(&so);
    so.address = fx.sock;
    so.threads = 3;
    so.io_timeout_ms = IO_TIMEOUT_MS;
    so.idle_timeout_ms = IDLE_TIMEOUT_MS;
    assert_nori(nori_fcgi_server_new(&fx.app, &so, &fx.server), NORI_OK);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    nori_fcgi_server_free(fx.server);
    struct stat sb;
    assert_int_equal(lstat(fx.sock, &sb), -1); /* the server removed its socket */
    nori_http_cache_free(fx.cache);
    nori_backend_free(fx.backend);
    nori_test_rmtree(fx.dir);
    free(fx.dir);
    return 0;
}

/* One request on a fresh connection (closed afterwards). */
static fcgi_response req(const char *const *params, const char *body)
{
    int fd = fcgi_connect_unix(fx.sock);
    assert_true(fd >= 0);
    fcgi_response r;
    int id = next_id++;
    assert_int_equal(fcgi_request(fd, id, 0, params, body, body ? strlen(body) : 0, &r), 0);
    close(fd);
    return r;
}

static const char *hv(const fcgi_response *r, const char *name)
{
    static char buf[1024];
    return fcgi_header(r, name, buf, sizeof buf);
}

/* The server still serves: a plain request on a fresh connection. */
static void assert_alive(void)
{
    const char *p[] = {"REQUEST_METHOD", "GET", "SCRIPT_NAME", "/echo", NULL};
    fcgi_response r = req(p, NULL);
    assert_int_equal(r.status, 200);
    fcgi_response_free(&r);
}

/* ------------------------------------------------------------ the rules */

static void test_miss_hit_head_304_binary(void **state)
{
    (void)state;
    int fd = fcgi_connect_unix(fx.sock);
    assert_true(fd >= 0);
    const char *get[] = {"REQUEST_METHOD", "GET", "SCRIPT_NAME", "/page", "QUERY_STRING", "v=1",
                         NULL};
    fcgi_response r;
    /* Two requests on one kept connection. The first one's empty STDIN
     * record comes in a write of its own, after the parameters (as a web
     * server streaming a body sends it): the adapter reads it before it
     * answers, so the second request is read from the right place. */
    fcgi_buf b = {0};
    fcgi_begin(&b, 1, 1);
    fcgi_params(&b, 1, get);
    assert_int_equal(fcgi_send(fd, &b), 0);
    fcgi_buf_free(&b);
    struct timespec pause = {0, 50 * 1000000L};
    nanosleep(&pause, NULL);
    fcgi_stdin(&b, 1, NULL, 0);
    assert_int_equal(fcgi_send(fd, &b), 0);
    fcgi_buf_free(&b);
    assert_int_equal(fcgi_read_response(fd, 1, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(hv(&r, "X-Cache"), "MISS");
    assert_int_equal(r.body_len, 512);
    for (int i = 0; i < 512; i++)
        assert_int_equal(r.body[i], i & 255);
    assert_string_equal(hv(&r, "Content-Length"), "512");
    char etag[256];
    snprintf(etag, sizeof etag, "%s", hv(&r, "ETag"));
    fcgi_response_free(&r);
    assert_int_equal(fcgi_request(fd, 2, 1, get, NULL, 0, &r), 0);
    assert_string_equal(hv(&r, "X-Cache"), "HIT");
    assert_int_equal(r.body_len, 512);
    assert_memory_equal(r.body + 250, "\xfa\xfb\xfc\xfd", 4);
    fcgi_response_free(&r);

    const char *head[] = {"REQUEST_METHOD", "HEAD", "SCRIPT_NAME", "/page", "QUERY_STRING",
                          "v=1", NULL};
    assert_int_equal(fcgi_request(fd, 3, 1, head, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(hv(&r, "X-Cache"), "HIT");
    assert_string_equal(hv(&r, "Content-Length"), "512");
    assert_int_equal(r.body_len, 0);
    fcgi_response_free(&r);

    const char *cond[] = {"REQUEST_METHOD", "GET",   "SCRIPT_NAME", "/page", "QUERY_STRING",
                          "v=1",            "HTTP_IF_NONE_MATCH", etag, NULL};
    assert_int_equal(fcgi_request(fd, 4, 1, cond, NULL, 0, &r), 0);
    assert_int_equal(r.status, 304);
    assert_string_equal(hv(&r, "X-Cache"), "HIT");
    assert_string_equal(hv(&r, "Content-Length"), "512"); /* the 200's, RFC 9110 8.6 */
    assert_string_equal(hv(&r, "ETag"), etag);
    assert_int_equal(r.body_len, 0);
    assert_null(strstr(r.head, "Content-Length: 512\r\nContent-Length")); /* once */
    fcgi_response_free(&r);
    close(fd);
}

static void test_405_before_cache_404_post_invalidates(void **state)
{
    (void)state;
    const char *get[] = {"REQUEST_METHOD", "GET", "DOCUMENT_URI", "/page", NULL};
    fcgi_response r = req(get, NULL);
    fcgi_response_free(&r);
    r = req(get, NULL);
    assert_string_equal(hv(&r, "X-Cache"), "HIT");
    fcgi_response_free(&r);
    int runs = page_runs;
    /* DELETE is not declared: 405 + Allow, no handler, no invalidation. */
    const char *del[] = {"REQUEST_METHOD", "DELETE", "DOCUMENT_URI", "/page", NULL};
    r = req(del, "dropped");
    assert_int_equal(r.status, 405);
    assert_string_equal(hv(&r, "Allow"), "GET, HEAD, POST");
    assert_null(hv(&r, "X-Cache"));
    fcgi_response_free(&r);
    assert_int_equal(page_runs, runs);
    r = req(get, NULL);
    assert_string_equal(hv(&r, "X-Cache"), "HIT");
    fcgi_response_free(&r);
    /* "get" is not GET. */
    const char *lower[] = {"REQUEST_METHOD", "get", "DOCUMENT_URI", "/page", NULL};
    r = req(lower, NULL);
    assert_int_equal(r.status, 405);
    fcgi_response_free(&r);
    /* POST is declared: 201, BYPASS, and the page is invalidated. */
    const char *post[] = {"REQUEST_METHOD", "POST", "DOCUMENT_URI", "/page", "CONTENT_LENGTH",
                          "4", NULL};
    r = req(post, "data");
    assert_int_equal(r.status, 201);
    assert_string_equal(hv(&r, "X-Cache"), "BYPASS");
    fcgi_response_free(&r);
    r = req(get, NULL);
    assert_string_equal(hv(&r, "X-Cache"), "MISS");
    fcgi_response_free(&r);
    const char *none[] = {"REQUEST_METHOD", "GET", "DOCUMENT_URI", "/nope", NULL};
    r = req(none, NULL);
    assert_int_equal(r.status, 404);
    assert_null(hv(&r, "X-Cache"));
    fcgi_response_free(&r);
}

static void test_request_view(void **state)
{
    (void)state;
    /* SCRIPT_NAME + PATH_INFO, raw QUERY_STRING, headers: lookups in any
     * case with '-' for '_', the order of enumeration, CONTENT_* as
     * headers, an empty CONTENT_TYPE as none, a non-token lookup refused. */
    const char *p[] = {"REQUEST_METHOD", "PUT",  "SCRIPT_NAME", "/ec", "PATH_INFO", "ho",
                       "QUERY_STRING", "a=%20b&c", "CONTENT_LENGTH", "5", "CONTENT_TYPE",
                       "", "HTTP_X_USER", "ann", "HTTP_ACCEPT_LANGUAGE", "fr",
                       "HTTP_X_Y", "no", "REMOTE_ADDR", "127.0.0.1", NULL};
    fcgi_response r = req(p, "hello");
    assert_int_equal(r.status, 200);
    const char *b = (const char *)r.body;
    assert_non_null(strstr(b, "method PUT\npath /echo\nquery a=%20b&c\nbody 5\n"));
    assert_non_null(strstr(b, "L x-user=ann\nL X_USER=ann\nL Content-Type=(none)\n"
                              "L content-length=5\nL Accept-Language=fr\nL X=Y=(none)\n"));
    assert_non_null(strstr(b, "H Content-Length: 5\nH X-User: ann\nH Accept-Language: fr\n"
                              "H X-Y: no\nB hello\n"));
    assert_null(strstr(b, "Content-Type:")); /* empty: no header */
    assert_null(strstr(b, "Remote"));        /* not a header */
    fcgi_response_free(&r);

    /* DOCUMENT_URI when no SCRIPT_NAME; REQUEST_URI decoded when neither,
     * its query used when QUERY_STRING is absent. */
    const char *q[] = {"REQUEST_METHOD", "GET", "REQUEST_URI", "/%65cho?x=%41#frag", NULL};
    r = req(q, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((const char *)r.body, "path /echo\nquery x=%41\n"));
    fcgi_response_free(&r);
    const char *d[] = {"REQUEST_METHOD", "GET", "DOCUMENT_URI", "/echo", "REQUEST_URI",
                       "/other?z", NULL};
    r = req(d, NULL);
    assert_non_null(strstr((const char *)r.body, "path /echo\nquery z\n"));
    fcgi_response_free(&r);
}

static void test_refusals_400_413(void **state)
{
    (void)state;
    const struct {
        const char *const *params;
        const char *body;
        int status;
    } cases[] = {
        /* no REQUEST_METHOD */
        {(const char *const[]){"SCRIPT_NAME", "/echo", NULL}, NULL, 400},
        /* a decoded NUL in the path */
        {(const char *const[]){"REQUEST_METHOD", "GET", "REQUEST_URI", "/ec%00ho", NULL}, NULL,
         400},
        /* no path at all, a relative one */
        {(const char *const[]){"REQUEST_METHOD", "GET", NULL}, NULL, 400},
        {(const char *const[]){"REQUEST_METHOD", "GET", "SCRIPT_NAME", "echo", NULL}, NULL, 400},
        /* CONTENT_LENGTH not a number, a body shorter than it */
        {(const char *const[]){"REQUEST_METHOD", "POST", "SCRIPT_NAME", "/echo",
                               "CONTENT_LENGTH", "5x", NULL},
         "abcde", 400},
        {(const char *const[]){"REQUEST_METHOD", "POST", "SCRIPT_NAME", "/echo",
                               "CONTENT_LENGTH", "10", NULL},
         "abc", 400},
        /* over max_body, announced and not */
        {(const char *const[]){"REQUEST_METHOD", "POST", "SCRIPT_NAME", "/echo",
                               "CONTENT_LENGTH", "999999", NULL},
         "abc", 413},
    };
    uint64_t refused = stats().refused;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        fcgi_response r = req(cases[i].params, cases[i].body);
        if (r.status != cases[i].status)
            print_error("case %zu: status %d, expected %d\n%s\n", i, r.status,
                        cases[i].status, r.head);
        assert_int_equal(r.status, cases[i].status);
        assert_null(hv(&r, "X-Cache"));
        fcgi_response_free(&r);
    }
    /* A body over max_body without CONTENT_LENGTH, on a kept connection:
     * 413, the rest is drained, and the connection carries the next. */
    char *big = malloc(MAX_BODY * 3 + 1);
    memset(big, 'b', MAX_BODY * 3);
    big[MAX_BODY * 3] = '\0';
    int fd = fcgi_connect_unix(fx.sock);
    const char *post[] = {"REQUEST_METHOD", "POST", "SCRIPT_NAME", "/echo", NULL};
    fcgi_response r;
    assert_int_equal(fcgi_request(fd, 7, 1, post, big, MAX_BODY * 3, &r), 0);
    assert_int_equal(r.status, 413);
    fcgi_response_free(&r);
    const char *get[] = {"REQUEST_METHOD", "GET", "SCRIPT_NAME", "/echo", NULL};
    assert_int_equal(fcgi_request(fd, 8, 1, get, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    fcgi_response_free(&r);
    close(fd);
    free(big);
    assert_int_equal(stats().refused, refused + sizeof cases / sizeof *cases + 1);
}

static void test_head_announced_length(void **state)
{
    (void)state;
    const char *head[] = {"REQUEST_METHOD", "HEAD", "SCRIPT_NAME", "/headlen", NULL};
    fcgi_response r = req(head, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(hv(&r, "Content-Length"), "1234"); /* once: */
    assert_null(strstr(strstr(r.head, "Content-Length") + 1, "Content-Length"));
    assert_int_equal(r.body_len, 0);
    fcgi_response_free(&r);
    const char *get[] = {"REQUEST_METHOD", "GET", "SCRIPT_NAME", "/headlen", NULL};
    r = req(get, NULL);
    assert_string_equal(hv(&r, "Content-Length"), "3");
    assert_int_equal(r.body_len, 3);
    fcgi_response_free(&r);
}

static void test_unsendable_headers_dropped(void **state)
{
    (void)state;
    const char *p[] = {"REQUEST_METHOD", "GET", "SCRIPT_NAME", "/bad", NULL};
    fcgi_response r = req(p, NULL);
    assert_int_equal(r.status, 200); /* not the handler's "Status: 302" */
    assert_null(hv(&r, "X-Evil"));
    assert_null(hv(&r, "X-Injected"));
    assert_null(strstr(r.head, "Bad Name"));
    assert_string_equal(hv(&r, "X-Good"), "yes\tthere");
    assert_string_equal((const char *)r.body, "ok\n");
    fcgi_response_free(&r);
}

/* ------------------------------------------------------ a hostile server */

/* Sends raw bytes on a fresh connection and expects the server to close
 * it (within the bound) without answering a request; then that the server
 * still answers. */
static void expect_closed(const fcgi_buf *b, int keep_open)
{
    int fd = fcgi_connect_unix(fx.sock);
    assert_true(fd >= 0);
    assert_int_equal(fcgi_send(fd, b), 0);
    (void)keep_open;
    int64_t t0 = fcgi_now_ms();
    assert_true(fcgi_wait_closed(fd, BOUND_MS));
    assert_true(fcgi_now_ms() - t0 < BOUND_MS);
    close(fd);
    assert_alive();
}

static void test_malformed_records(void **state)
{
    (void)state;
    uint64_t broken = stats().broken;
    fcgi_buf b = {0};
    /* 1: not FastCGI at all (an HTTP request sent to the FastCGI port). */
    fcgi_put(&b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
    expect_closed(&b, 0);
    fcgi_buf_free(&b);
    /* 2: a BEGIN_REQUEST of the wrong length. */
    fcgi_record(&b, FCGI_T_BEGIN, 1, "\0\1\0", 3);
    expect_closed(&b, 0);
    fcgi_buf_free(&b);
    /* 3: PARAMS whose pair announces more bytes than the record holds. */
    fcgi_begin(&b, 1, 0);
    fcgi_record(&b, FCGI_T_PARAMS, 1, "\x0e\x7fREQUEST_METHODGET", 19);
    fcgi_record(&b, FCGI_T_PARAMS, 1, NULL, 0);
    expect_closed(&b, 0);
    fcgi_buf_free(&b);
    /* 4: a pair announcing 2 GiB names: the library must not trust it. */
    fcgi_begin(&b, 1, 0);
    fcgi_record(&b, FCGI_T_PARAMS, 1, "\xff\xff\xff\xff\xff\xff\xff\xff" "AB", 10);
    fcgi_record(&b, FCGI_T_PARAMS, 1, NULL, 0);
    expect_closed(&b, 0);
    fcgi_buf_free(&b);
    /* 5: a STDOUT record where PARAMS belong. */
    fcgi_begin(&b, 1, 0);
    fcgi_record(&b, FCGI_T_STDOUT, 1, "x", 1);
    expect_closed(&b, 0);
    fcgi_buf_free(&b);
    /* libfcgi closes a connection with malformed records inside
     * FCGX_Accept_r, before the server can count it: the count may come
     * a moment after the close is seen here (bounded wait). */
    int64_t end = fcgi_now_ms() + BOUND_MS;
    while (stats().broken < broken + 5 && fcgi_now_ms() < end) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    assert_true(stats().broken >= broken + 5);
}

static void test_close_mid_request(void **state)
{
    (void)state;
    uint64_t broken = stats().broken;
    /* Half the parameters, then the web server goes away. */
    fcgi_buf b = {0};
    fcgi_begin(&b, 1, 0);
    fcgi_record(&b, FCGI_T_PARAMS, 1, "\x0e\x03REQUEST_METHOD", 16);
    int fd = fcgi_connect_unix(fx.sock);
    assert_int_equal(fcgi_send(fd, &b), 0);
    close(fd);
    fcgi_buf_free(&b);
    /* The parameters, half the announced body, then away. */
    const char *p[] = {"REQUEST_METHOD", "POST", "SCRIPT_NAME", "/echo", "CONTENT_LENGTH",
                       "100", NULL};
    fcgi_begin(&b, 1, 0);
    fcgi_params(&b, 1, p);
    fcgi_record(&b, FCGI_T_STDIN, 1, "0123456789", 10);
    fd = fcgi_connect_unix(fx.sock);
    assert_int_equal(fcgi_send(fd, &b), 0);
    close(fd);
    fcgi_buf_free(&b);
    /* Both are noticed (bounded), counted, and nothing else is harmed. */
    int64_t end = fcgi_now_ms() + BOUND_MS;
    while (stats().broken < broken + 2 && fcgi_now_ms() < end) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    assert_true(stats().broken >= broken + 2);
    assert_alive();
}

static void test_stall_and_trickle_bounded(void **state)
{
    (void)state;
    uint64_t timeouts = stats().timeouts;
    /* A stall in the parameters: shut down after IO_TIMEOUT_MS. */
    fcgi_buf b = {0};
    fcgi_begin(&b, 1, 0);
    fcgi_record(&b, FCGI_T_PARAMS, 1, "\x0e\x03REQUEST_METHODGET", 19);
    expect_closed(&b, 1);
    fcgi_buf_free(&b);
    assert_int_equal(stats().timeouts, timeouts + 1);
    /* A body trickled one byte per 50 ms: every read succeeds, the whole
     * read phase still ends at IO_TIMEOUT_MS. */
    const char *p[] = {"REQUEST_METHOD", "POST", "SCRIPT_NAME", "/echo", "CONTENT_LENGTH",
                       "100", NULL};
    fcgi_begin(&b, 1, 0);
    fcgi_params(&b, 1, p);
    int fd = fcgi_connect_unix(fx.sock);
    assert_int_equal(fcgi_send(fd, &b), 0);
    fcgi_buf_free(&b);
    int64_t t0 = fcgi_now_ms();
    int closed = 0;
    for (int i = 0; i < 100 && !closed; i++) {
        fcgi_record(&b, FCGI_T_STDIN, 1, "x", 1);
        if (fcgi_send(fd, &b) < 0)
            closed = 1;
        fcgi_buf_free(&b);
        closed = closed || fcgi_wait_closed(fd, 50);
    }
    assert_true(closed);
    assert_true(fcgi_now_ms() - t0 < BOUND_MS);
    close(fd);
    assert_int_equal(stats().timeouts, timeouts + 2);
    assert_alive();
}

static void test_idle_kept_connection_closed(void **state)
{
    (void)state;
    int fd = fcgi_connect_unix(fx.sock);
    const char *get[] = {"REQUEST_METHOD", "GET", "SCRIPT_NAME", "/echo", NULL};
    fcgi_response r;
    assert_int_equal(fcgi_request(fd, 1, 1, get, NULL, 0, &r), 0);
    fcgi_response_free(&r);
    uint64_t broken = stats().broken;
    assert_true(fcgi_wait_closed(fd, BOUND_MS)); /* after IDLE_TIMEOUT_MS */
    close(fd);
    assert_int_equal(stats().broken, broken); /* an idle close is routine */
}

static void test_abort_while_handler_runs(void **state)
{
    (void)state;
    uint64_t broken = stats().broken;
    fcgi_buf b = {0};
    const char *p[] = {"REQUEST_METHOD", "GET", "SCRIPT_NAME", "/sleepy", NULL};
    fcgi_begin(&b, 1, 0);
    fcgi_params(&b, 1, p);
    fcgi_stdin(&b, 1, NULL, 0);
    int fd = fcgi_connect_unix(fx.sock);
    assert_int_equal(fcgi_send(fd, &b), 0);
    fcgi_buf_free(&b);
    close(fd); /* gone before the 4 MiB answer: the write fails, no SIGPIPE */
    int64_t end = fcgi_now_ms() + BOUND_MS;
    while (stats().broken < broken + 1 && fcgi_now_ms() < end) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(stats().broken, broken + 1);
    assert_alive();
}

static void test_many_requests_all_threads(void **state)
{
    (void)state;
    /* More connections at once than threads: they queue, all answered. */
    enum { N = 12 };
    int fds[N];
    const char *get[] = {"REQUEST_METHOD", "GET", "SCRIPT_NAME", "/echo", NULL};
    fcgi_buf b = {0};
    for (int i = 0; i < N; i++) {
        fds[i] = fcgi_connect_unix(fx.sock);
        assert_true(fds[i] >= 0);
        fcgi_begin(&b, 1, 0);
        fcgi_params(&b, 1, get);
        fcgi_stdin(&b, 1, NULL, 0);
        assert_int_equal(fcgi_send(fds[i], &b), 0);
        fcgi_buf_free(&b);
    }
    for (int i = 0; i < N; i++) {
        fcgi_response r;
        assert_int_equal(fcgi_read_response(fds[i], 1, &r), 0);
        assert_int_equal(r.status, 200);
        fcgi_response_free(&r);
        close(fds[i]);
    }
}

/* ------------------------------------------------------------ the sockets */

static void test_listen_refusals(void **state)
{
    (void)state;
    char path[512];
    int fd = -1;
    /* A regular file is never replaced. */
    snprintf(path, sizeof path, "%s/file", fx.dir);
    nori_test_write_file(path, "keep me");
    assert_nori(nori_fcgi_listen(path, 0, 0, &fd), NORI_EINVAL);
    assert_non_null(strstr(nori_last_error(), "not a socket"));
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_size, 7);
    /* A live socket is not taken over. */
    assert_nori(nori_fcgi_listen(fx.sock, 0, 0, &fd), NORI_EBACKEND);
    assert_non_null(strstr(nori_last_error(), "in use"));
    assert_alive();
    /* A stale socket is replaced, with the mode asked for. */
    snprintf(path, sizeof path, "%s/stale.sock", fx.dir);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(path) < sizeof sa.sun_path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    close(s);
    assert_nori(nori_fcgi_listen(path, 0, 0600, &fd), NORI_OK);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    close(fd);
    unlink(path);
    /* Malformed addresses. */
    const char *bad[] = {"", "nocolon", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:x",
                         "127.0.0.1:", "no.such.host.invalid:9000"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_nori(nori_fcgi_listen(bad[i], 0, 0, &fd), NORI_EINVAL);
    char longp[300];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    assert_nori(nori_fcgi_listen(longp, 0, 0, &fd), NORI_EINVAL);
    assert_nori(nori_fcgi_listen("/x", 0, 01777, &fd), NORI_EINVAL);
    assert_nori(nori_fcgi_listen(NULL, 0, 0, &fd), NORI_EINVAL);
    /* A server needs a socket: fd 0 of the test is not one. */
    if (!nori_fcgi_inherited()) {
        nori_fcgi_server *sv = NULL;
        assert_nori(nori_fcgi_server_new(&fx.app, NULL, &sv), NORI_EINVAL);
        assert_null(sv);
    }
}

/* A free TCP port on 127.0.0.1 (bind to 0, read, close). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &l) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void test_inherited_fd0_tcp_and_web_server_addrs(void **state)
{
    (void)state;
    /* As spawn-fcgi starts a worker: the listening socket is fd 0. */
    int port = free_port();
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    int lfd;
    assert_nori(nori_fcgi_listen(addr, 0, 0, &lfd), NORI_OK);
    int saved = dup(0);
    assert_int_equal(dup2(lfd, 0), 0);
    close(lfd);
    assert_int_equal(nori_fcgi_inherited(), 1);
    setenv("FCGI_WEB_SERVER_ADDRS", "127.0.0.2, 10.1.2.3", 1);
    nori_fcgi_server *sv;
    assert_nori(nori_fcgi_server_new(&fx.app, NULL, &sv), NORI_OK);
    unsetenv("FCGI_WEB_SERVER_ADDRS");
    assert_int_equal(nori_fcgi_server_fd(sv), 0);
    const char *get[] = {"REQUEST_METHOD", "GET", "SCRIPT_NAME", "/echo", NULL};
    fcgi_response r;
    /* From an address on the list: served. */
    int fd = fcgi_connect_tcp(port, "127.0.0.2");
    assert_true(fd >= 0);
    assert_int_equal(fcgi_request(fd, 1, 0, get, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    fcgi_response_free(&r);
    close(fd);
    /* From one that is not: closed unanswered. */
    fd = fcgi_connect_tcp(port, "127.0.0.1");
    assert_true(fd >= 0);
    assert_int_equal(fcgi_request(fd, 1, 0, get, NULL, 0, &r), -1);
    fcgi_response_free(&r);
    close(fd);
    nori_fcgi_server_free(sv);
    /* A socket the server did not open stays open. */
    int v = 0;
    socklen_t len = sizeof v;
    assert_int_equal(getsockopt(0, SOL_SOCKET, SO_ACCEPTCONN, &v, &len), 0);
    dup2(saved, 0);
    close(saved);
}

static void test_signal_dispositions_untouched(void **state)
{
    (void)state;
    /* libfcgi's FCGX_Init() (run by the server in the group set-up) would
     * leave SIGTERM, SIGUSR1 and SIGPIPE caught by handlers of its own: a
     * SIGTERM would no longer stop the process. */
    static const int sigs[] = {SIGTERM, SIGUSR1, SIGPIPE};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction sa;
        assert_int_equal(sigaction(sigs[i], NULL, &sa), 0);
        assert_true(sa.sa_handler == SIG_DFL);
    }
}

/* An application's own FCGX_Accept_r loop with nori_fcgi_handle(). */
static void *own_loop(void *arg)
{
    int lfd = *(int *)arg;
    FCGX_Request rq;
    FCGX_InitRequest(&rq, lfd, 0);
    if (FCGX_Accept_r(&rq) == 0) {
        assert_nori(nori_fcgi_handle(&fx.app, &rq), NORI_OK);
        FCGX_Finish_r(&rq);
    }
    FCGX_Free(&rq, 1);
    return NULL;
}

static void test_handle_in_own_loop(void **state)
{
    (void)state;
    assert_nori(nori_fcgi_handle(NULL, NULL), NORI_EINVAL);
    char path[512];
    snprintf(path, sizeof path, "%s/own.sock", fx.dir);
    int lfd;
    assert_nori(nori_fcgi_listen(path, 0, 0, &lfd), NORI_OK);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, own_loop, &lfd), 0);
    int fd = fcgi_connect_unix(path);
    const char *get[] = {"REQUEST_METHOD", "GET", "SCRIPT_NAME", "/echo", "QUERY_STRING", "o",
                         NULL};
    fcgi_response r;
    assert_int_equal(fcgi_request(fd, 1, 0, get, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((const char *)r.body, "query o\n"));
    fcgi_response_free(&r);
    close(fd);
    pthread_join(t, NULL);
    close(lfd);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_miss_hit_head_304_binary),
        cmocka_unit_test(test_405_before_cache_404_post_invalidates),
        cmocka_unit_test(test_request_view),
        cmocka_unit_test(test_refusals_400_413),
        cmocka_unit_test(test_head_announced_length),
        cmocka_unit_test(test_unsendable_headers_dropped),
        cmocka_unit_test(test_malformed_records),
        cmocka_unit_test(test_close_mid_request),
        cmocka_unit_test(test_stall_and_trickle_bounded),
        cmocka_unit_test(test_idle_kept_connection_closed),
        cmocka_unit_test(test_abort_while_handler_runs),
        cmocka_unit_test(test_many_requests_all_threads),
        cmocka_unit_test(test_listen_refusals),
        cmocka_unit_test(test_inherited_fd0_tcp_and_web_server_addrs),
        cmocka_unit_test(test_handle_in_own_loop),
        cmocka_unit_test(test_signal_dispositions_untouched),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
