// SPDX-License-Identifier: MIT
/*
 * nori-proxy end to end (examples/proxy): the real binary between the test's
 * HTTP client and a real origin, a small HTTP/1.1 server in this process
 * written on plain sockets so that it can send exactly what a test needs
 * (hop-by-hop headers, binary bodies, any status) and echo back the exact
 * bytes the proxy sent it. Built twice: on the memory backend and, with
 * NORI_PROXY_ON_REDIS, on a private redis-server.
 *
 * Checked: request headers forwarded (hop-by-hop ones dropped, Host the
 * origin's), response headers and statuses replayed (non-2xx too, redirects
 * not followed), bodies byte for byte, HEAD, POST bodies and unknown
 * methods forwarded, an unreachable origin answered 502 and a stalled one
 * 504 within the configured bounds, and (memory) a flood of distinct paths
 * held within the backend's key bound.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "demo_process.h"
#include "http_client.h"
#include "redis_server.h"
#include "test_support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BIN_LEN 70000 /* bytes of /bin: several reads and writes on each side */

/* ------------------------------------------------------------ the origin */

typedef struct {
    int fd, port;
    pthread_t thread;
    atomic_int stop;
    atomic_int requests;
} origin;

static void bin_body(char *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (char)((i * 7 + i / 256) & 0xff); /* every byte value, NULs included */
}

static int send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one request (head, then a Content-Length body) into buf; its length
 * or -1. */
static ssize_t read_request(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    char *end = NULL;
    while (end == NULL) {
        if (len == cap)
            return -1;
        ssize_t r = recv(fd, buf + len, cap - len, 0);
        if (r <= 0)
            return -1;
        len += (size_t)r;
        buf[len < cap ? len : cap - 1] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    size_t head = (size_t)(end + 4 - buf), body = 0;
    for (char *l = strstr(buf, "\r\n"); l != NULL && l < end; l = strstr(l + 2, "\r\n"))
        if (strncasecmp(l + 2, "Content-Length:", 15) == 0)
            body = strtoul(l + 17, NULL, 10);
    while (len < head + body && len < cap) {
        ssize_t r = recv(fd, buf + len, cap - len, 0);
        if (r <= 0)
            return -1;
        len += (size_t)r;
    }
    return (ssize_t)len;
}

/* One exchange per connection (the origin answers Connection: close), so a
 * proxy's pooled connection never holds the origin's only thread. */
static void serve_one(origin *o, int fd)
{
    static char req[262144];
    static char bin[BIN_LEN];
    char head[2048];
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t n = read_request(fd, req, sizeof req - 1);
    if (n < 0)
        return;
    atomic_fetch_add(&o->requests, 1);
    char method[32] = "", target[1024] = "";
    sscanf(req, "%31s %1023s", method, target);
    int is_head = strcmp(method, "HEAD") == 0;
    const char *body = "";
    size_t body_len = 0;
    int status = 200;
    char extra[512] = "";
    const char *type = "text/plain";
    if (strncmp(target, "/echo", 5) == 0) {
        /* The request exactly as the proxy sent it. */
        body = req;
        body_len = (size_t)n;
        snprintf(extra, sizeof extra, "Cache-Control: no-store\r\n");
    } else if (strncmp(target, "/hdr", 4) == 0) {
        body = "hdr";
        body_len = 3;
        snprintf(extra, sizeof extra,
                 "X-Origin: o1\r\nX-Multi: a\r\nX-Multi: b\r\nX-Hop: secret\r\n"
                 "Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\n"
                 "Cache-Control: no-store\r\nConnection: X-Hop\r\n");
    } else if (strncmp(target, "/bin", 4) == 0) {
        bin_body(bin, sizeof bin);
        body = bin;
        body_len = sizeof bin;
        type = "application/octet-stream";
        snprintf(extra, sizeof extra, "Cache-Control: max-age=60\r\n");
    } else if (strncmp(target, "/small", 6) == 0) {
        body = "small";
        body_len = 5;
        snprintf(extra, sizeof extra, "Cache-Control: max-age=60\r\n");
    } else if (strncmp(target, "/status/", 8) == 0) {
        status = atoi(target + 8);
        body = "status body";
        body_len = 11;
        if (status >= 300 && status < 400)
            snprintf(extra, sizeof extra, "Location: /elsewhere\r\n");
        if (status == 204 || status == 304)
            body_len = 0;
    } else {
        status = 404;
        body = "no such origin path";
        body_len = strlen(body);
    }
    int hn = snprintf(head, sizeof head,
                      "HTTP/1.1 %d Origin\r\nContent-Type: %s\r\nX-Method: %s\r\n%s"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      status, type, method, extra, body_len);
    if (send_all(fd, head, (size_t)hn) == 0 && !is_head && body_len > 0)
        send_all(fd, body, body_len);
}

static void *origin_main(void *arg)
{
    origin *o = arg;
    while (!atomic_load(&o->stop)) {
        struct pollfd p = {o->fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int c = accept(o->fd, NULL, NULL);
        if (c < 0)
            continue;
        serve_one(o, c);
        shutdown(c, SHUT_RDWR);
        close(c);
    }
    return NULL;
}

/* A listening socket on a free loopback port. accept_loop: served by a
 * thread; otherwise never accepted (a stalled origin: the kernel completes
 * the handshake, nobody ever answers). */
static void origin_start(origin *o, int serve)
{
    memset(o, 0, sizeof *o);
    o->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(o->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    assert_int_equal(bind(o->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(o->fd, 64), 0);
    assert_int_equal(getsockname(o->fd, (struct sockaddr *)&a, &l), 0);
    o->port = ntohs(a.sin_port);
    if (serve)
        assert_int_equal(pthread_create(&o->thread, NULL, origin_main, o), 0);
}

static void origin_stop(origin *o, int serve)
{
    atomic_store(&o->stop, 1);
    if (serve)
        pthread_join(o->thread, NULL);
    close(o->fd);
}

/* ------------------------------------------------------------ the proxy */

static char *tmpdir;
static origin live, stalled;
static test_demo px_main, px_down, px_stall, px_host;
#ifdef NORI_PROXY_ON_REDIS
static nori_test_redis *redis;
#endif

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Starts nori-proxy in front of 127.0.0.1:origin_port with the extra
 * arguments (NULL-ended), waiting up to 30 s for it to listen. */
static int proxy_start(test_demo *d, const char *name, int origin_port, const char *const *extra)
{
    memset(d, 0, sizeof *d);
    snprintf(d->log_path, sizeof d->log_path, "%s/%s.log", tmpdir, name);
    d->port = test_free_port();
    char listen_arg[16], origin_arg[64], prefix[64];
    snprintf(listen_arg, sizeof listen_arg, "%d", d->port);
    snprintf(origin_arg, sizeof origin_arg, "http://127.0.0.1:%d", origin_port);
    snprintf(prefix, sizeof prefix, "pxt%d-%s", (int)getpid(), name);
    fflush(NULL);
    d->pid = fork();
    if (d->pid < 0)
        return -1;
    if (d->pid == 0) {
        int fd = open(d->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        const char *argv[24] = {NORI_PROXY_EXE, "--listen", listen_arg, "--origin", origin_arg,
                                "--prefix",     prefix};
        size_t n = 7;
        for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 23; i++)
            argv[n++] = extra[i];
        argv[n] = NULL;
        execv(NORI_PROXY_EXE, (char *const *)argv);
        _exit(127);
    }
    for (int waited = 0; waited < 30000; waited += 50) {
        int status;
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            d->pid = 0;
            test_demo_print_log(d);
            return -1;
        }
        int fd = test_http_connect(d->port);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        sleep_ms(50);
    }
    test_demo_print_log(d);
    test_demo_stop(d, 5);
    return -1;
}

static int group_setup(void **state)
{
    (void)state;
    tmpdir = nori_test_mkdtemp();
#ifdef NORI_PROXY_ON_REDIS
    redis = nori_test_redis_start(NULL);
    if (redis == NULL)
        return -1;
    setenv("CACHE_BACKEND", "redis", 1);
    setenv("REDIS_URL", redis->url, 1);
#else
    setenv("CACHE_BACKEND", "memory", 1);
    /* The flood test's bound; the other tests use far fewer keys. */
    setenv("CACHE_MAX_KEYS", "50", 1);
#endif
    origin_start(&live, 1);
    origin_start(&stalled, 0);
    /* A port nothing listens on: bound, then closed. */
    int down_port = test_free_port();
    static const char *const main_args[] = {"--timeout-ms", "10000", NULL};
    static const char *const host_args[] = {"--preserve-host", NULL};
    static const char *const short_args[] = {"--connect-timeout-ms", "1000", "--timeout-ms",
                                             "1000", NULL};
    if (proxy_start(&px_main, "main", live.port, main_args) < 0 ||
        proxy_start(&px_down, "down", down_port, short_args) < 0 ||
        proxy_start(&px_stall, "stall", stalled.port, short_args) < 0 ||
        proxy_start(&px_host, "host", live.port, host_args) < 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    /* A clean exit (0) also means no sanitizer report at shutdown. */
    int rc_main = test_demo_stop(&px_main, 20), rc_down = test_demo_stop(&px_down, 20),
        rc_stall = test_demo_stop(&px_stall, 20), rc_host = test_demo_stop(&px_host, 20);
    if (rc_main || rc_down || rc_stall || rc_host) {
        test_demo_print_log(&px_main);
        fprintf(stderr, "proxy exit codes: main %d, down %d, stall %d, host %d\n", rc_main,
                rc_down, rc_stall, rc_host);
    }
    origin_stop(&live, 1);
    origin_stop(&stalled, 0);
#ifdef NORI_PROXY_ON_REDIS
    nori_test_redis_stop(redis);
#endif
    nori_test_rmtree(tmpdir);
    free(tmpdir);
    return rc_main || rc_down || rc_stall || rc_host ? -1 : 0;
}

/* ------------------------------------------------------------ the tests */

static test_http_response get(test_demo *d, const char *method, const char *target,
                              const char *headers, const char *body, size_t body_len)
{
    test_http_response r;
    int fd = test_http_connect(d->port);
    assert_true(fd >= 0);
    if (test_http_request(fd, method, target, headers, body, body_len, &r) < 0) {
        test_demo_print_log(d);
        fail_msg("%s %s: no response", method, target);
    }
    close(fd);
    return r;
}

static void assert_header(const test_http_response *r, const char *name, const char *want)
{
    char buf[256];
    const char *v = test_http_header(r, name, buf, sizeof buf);
    if (want == NULL) {
        if (v != NULL)
            fail_msg("header %s: %s, expected none\n%s", name, v, r->head);
        return;
    }
    if (v == NULL || strcmp(v, want) != 0)
        fail_msg("header %s: %s, expected %s\n%s", name, v ? v : "(none)", want, r->head);
}

/* A line "Name: value" (or just "Name:" when value is NULL) in a raw
 * request echoed by the origin. */
static int echo_has(const test_http_response *r, const char *name, const char *value)
{
    char want[512];
    if (value != NULL)
        snprintf(want, sizeof want, "\r\n%s: %s\r\n", name, value);
    else
        snprintf(want, sizeof want, "\r\n%s:", name);
    size_t wl = strlen(want);
    for (size_t i = 0; i + wl <= r->body_len; i++)
        if (strncasecmp(r->body + i, want, wl) == 0)
            return 1;
    return 0;
}

static void test_binary_body_miss_then_hit(void **state)
{
    (void)state;
    static char want[BIN_LEN];
    bin_body(want, sizeof want);
    for (int round = 0; round < 2; round++) {
        test_http_response r = get(&px_main, "GET", "/bin/a", NULL, NULL, 0);
        assert_int_equal(r.status, 200);
        assert_header(&r, "X-Cache", round == 0 ? "MISS" : "HIT");
        assert_header(&r, "Content-Type", "application/octet-stream");
        assert_int_equal(r.body_len, BIN_LEN);
        assert_memory_equal(r.body, want, BIN_LEN);
        test_http_response_free(&r);
    }
}

static void test_request_headers_forwarded(void **state)
{
    (void)state;
    const char *hdrs = "X-Custom: one\r\nAccept-Language: fr\r\nX-Empty:\r\n"
                       "Connection: X-Drop-Me\r\nX-Drop-Me: dropped\r\n"
                       "Keep-Alive: timeout=9\r\nTE: trailers\r\n"
                       "Proxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\n";
    /* Path escapes and the raw query reach the origin untouched. */
    test_http_response r = get(&px_main, "GET", "/echo/a%2Fb?q=%41&x=y:z", hdrs, NULL, 0);
    assert_int_equal(r.status, 200);
    assert_true(r.body_len > 0);
    if (strncmp(r.body, "GET /echo/a%2Fb?q=%41&x=y:z HTTP/1.1\r\n", 38) != 0)
        fail_msg("request line: %.60s", r.body);
    assert_true(echo_has(&r, "X-Custom", "one"));
    assert_true(echo_has(&r, "Accept-Language", "fr"));
    assert_true(echo_has(&r, "X-Empty", NULL));
    char host[64];
    snprintf(host, sizeof host, "127.0.0.1:%d", live.port);
    assert_true(echo_has(&r, "Host", host));
    assert_true(echo_has(&r, "X-Forwarded-Host", "127.0.0.1"));
    static const char *const dropped[] = {"Connection", "X-Drop-Me", "Keep-Alive", "TE",
                                          "Proxy-Authorization", "Proxy-Connection",
                                          "Expect", "Accept", "Transfer-Encoding"};
    for (size_t i = 0; i < sizeof dropped / sizeof dropped[0]; i++)
        if (echo_has(&r, dropped[i], NULL))
            fail_msg("%s forwarded:\n%.*s", dropped[i], (int)r.body_len, r.body);
    test_http_response_free(&r);
}

static void test_response_headers_replayed(void **state)
{
    (void)state;
    test_http_response r = get(&px_main, "GET", "/hdr", NULL, NULL, 0);
    assert_int_equal(r.status, 200);
    assert_header(&r, "X-Origin", "o1");
    assert_header(&r, "X-Method", "GET");
    assert_non_null(strstr(r.head, "X-Multi: a\r\n"));
    assert_non_null(strstr(r.head, "X-Multi: b\r\n"));
    assert_header(&r, "X-Hop", NULL);      /* named by the origin's Connection */
    assert_header(&r, "Keep-Alive", NULL); /* hop-by-hop */
    assert_header(&r, "Proxy-Authenticate", NULL);
    assert_int_equal(r.body_len, 3);
    assert_memory_equal(r.body, "hdr", 3);
    test_http_response_free(&r);
}

static void test_non_2xx_passed_through(void **state)
{
    (void)state;
    static const int statuses[] = {404, 500, 503, 302, 301, 204, 410};
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        char target[64];
        snprintf(target, sizeof target, "/status/%d", statuses[i]);
        test_http_response r = get(&px_main, "GET", target, NULL, NULL, 0);
        assert_int_equal(r.status, statuses[i]);
        if (statuses[i] == 302 || statuses[i] == 301)
            assert_header(&r, "Location", "/elsewhere"); /* not followed */
        if (statuses[i] != 204) {
            assert_int_equal(r.body_len, 11);
            assert_memory_equal(r.body, "status body", 11);
        }
        test_http_response_free(&r);
    }
}

static void test_head(void **state)
{
    (void)state;
    int fd = test_http_connect(px_main.port);
    assert_true(fd >= 0);
    test_http_response r;
    /* A HEAD miss goes upstream as HEAD; its Content-Length comes back. */
    assert_int_equal(test_http_request(fd, "HEAD", "/bin/head", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_header(&r, "X-Method", "HEAD");
    assert_header(&r, "X-Cache", "MISS");
    char cl[32];
    snprintf(cl, sizeof cl, "%d", BIN_LEN);
    assert_header(&r, "Content-Length", cl);
    assert_int_equal(r.body_len, 0);
    test_http_response_free(&r);
    /* Same connection: nothing of a body was sent after the HEAD. */
    assert_int_equal(test_http_request(fd, "GET", "/bin/head", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_header(&r, "X-Cache", "MISS"); /* a HEAD stores nothing */
    assert_int_equal(r.body_len, BIN_LEN);
    test_http_response_free(&r);
    /* A HEAD hit: the GET entry's headers and length, no body. */
    assert_int_equal(test_http_request(fd, "HEAD", "/bin/head", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_header(&r, "X-Cache", "HIT");
    assert_header(&r, "Content-Length", cl);
    test_http_response_free(&r);
    close(fd);
}

static void test_post_body_and_methods(void **state)
{
    (void)state;
    static const char body[] = "a=1&b=\0\xff\x01binary";
    size_t len = sizeof body - 1;
    test_http_response r = get(&px_main, "POST", "/echo/post", NULL, body, len);
    assert_int_equal(r.status, 200);
    assert_header(&r, "X-Cache", "BYPASS");
    assert_true(strncmp(r.body, "POST /echo/post HTTP/1.1\r\n", 26) == 0);
    char cl[16];
    snprintf(cl, sizeof cl, "%zu", len);
    assert_true(echo_has(&r, "Content-Length", cl));
    assert_true(echo_has(&r, "Content-Type", "application/x-www-form-urlencoded"));
    assert_true(r.body_len > len);
    assert_memory_equal(r.body + r.body_len - len, body, len);
    test_http_response_free(&r);
    /* Methods the route table does not name are forwarded, not refused. */
    static const char *const methods[] = {"PROPFIND", "M-SEARCH", "DELETE", "OPTIONS"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        r = get(&px_main, methods[i], "/echo/m", NULL, NULL, 0);
        assert_int_equal(r.status, 200);
        assert_header(&r, "X-Method", methods[i]);
        test_http_response_free(&r);
    }
}

/* --preserve-host: the client's Host goes upstream, and entries are kept
 * apart by it (the route varies on Host). */
static void test_preserve_host(void **state)
{
    (void)state;
    test_http_response r = get(&px_host, "GET", "/echo/h", "X-A: 1\r\n", NULL, 0);
    assert_int_equal(r.status, 200);
    assert_true(echo_has(&r, "Host", "127.0.0.1")); /* the test client's Host */
    assert_false(echo_has(&r, "X-Forwarded-Host", NULL));
    test_http_response_free(&r);
    /* test_http_request sends "Host: 127.0.0.1"; a raw request names another. */
    char raw[256];
    static const char *const want[] = {"MISS", "HIT", "MISS", "HIT"};
    static const char *const hosts[] = {"a.example", "a.example", "b.example", "b.example"};
    for (int i = 0; i < 4; i++) {
        int n = snprintf(raw, sizeof raw, "GET /small/host HTTP/1.1\r\nHost: %s\r\n\r\n",
                         hosts[i]);
        assert_int_equal(test_http_raw(px_host.port, raw, (size_t)n, &r), 0);
        assert_int_equal(r.status, 200);
        assert_header(&r, "X-Cache", want[i]);
        test_http_response_free(&r);
    }
}

/* The bounds below are generous on purpose: the machine running the test
 * may be loaded. What they check is that the answer comes from the bound,
 * not from a client timeout (10 s in the test client) or never. */
static void test_origin_down_is_502(void **state)
{
    (void)state;
    double t0 = now_s();
    test_http_response r = get(&px_down, "GET", "/anything", NULL, NULL, 0);
    double took = now_s() - t0;
    assert_int_equal(r.status, 502);
    assert_header(&r, "X-Cache", "MISS");
    assert_non_null(strstr(r.body, "origin unreachable"));
    if (took > 8.0)
        fail_msg("502 after %.1f s (connect bound 1 s)", took);
    test_http_response_free(&r);
}

static void test_origin_stalled_is_504(void **state)
{
    (void)state;
    double t0 = now_s();
    test_http_response r = get(&px_stall, "GET", "/anything", NULL, NULL, 0);
    double took = now_s() - t0;
    assert_int_equal(r.status, 504);
    assert_non_null(strstr(r.body, "origin timed out"));
    /* --timeout-ms 1000: not before it, and well before the client's 10 s. */
    if (took < 0.9 || took > 8.0)
        fail_msg("504 after %.2f s (bound 1 s)", took);
    test_http_response_free(&r);
}

#ifndef NORI_PROXY_ON_REDIS
/* CACHE_MAX_KEYS=50: 200 distinct cacheable paths leave at most 50 entries.
 * Asked again newest first, the 50 newest are hits (the memory backend's LRU
 * is exact for one client), then every miss evicts the oldest entry. */
static void test_flood_bounded_by_backend(void **state)
{
    (void)state;
    enum { N = 200 };
    for (int i = 0; i < N; i++) {
        char target[64];
        snprintf(target, sizeof target, "/small/%d", i);
        test_http_response r = get(&px_main, "GET", target, NULL, NULL, 0);
        assert_int_equal(r.status, 200);
        test_http_response_free(&r);
    }
    int hits = 0;
    for (int i = N - 1; i >= 0; i--) {
        char target[64], buf[16];
        snprintf(target, sizeof target, "/small/%d", i);
        test_http_response r = get(&px_main, "GET", target, NULL, NULL, 0);
        assert_int_equal(r.status, 200);
        const char *x = test_http_header(&r, "X-Cache", buf, sizeof buf);
        hits += x != NULL && strcmp(x, "HIT") == 0;
        test_http_response_free(&r);
    }
    if (hits > 50 || hits < 25)
        fail_msg("%d of %d paths were hits with CACHE_MAX_KEYS=50", hits, N);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_body_miss_then_hit),
        cmocka_unit_test(test_request_headers_forwarded),
        cmocka_unit_test(test_response_headers_replayed),
        cmocka_unit_test(test_non_2xx_passed_through),
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_post_body_and_methods),
        cmocka_unit_test(test_preserve_host),
        cmocka_unit_test(test_origin_down_is_502),
        cmocka_unit_test(test_origin_stalled_is_504),
#ifndef NORI_PROXY_ON_REDIS
        cmocka_unit_test(test_flood_bounded_by_backend),
#endif
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
