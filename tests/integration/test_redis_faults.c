// SPDX-License-Identifier: MIT
/*
 * Faults against a real, password-protected redis-server that the test
 * stops, restarts, freezes and puts to sleep: every call comes back with
 * NORI_EBACKEND within about the configured timeout, never hangs, never shows
 * the password, and the same backend handle works again once the server does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis/wire/resolve.h"
#include "redis_server.h"
#include "test_support.h"

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <resolv.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PASSWORD "Fault-Pw-42"
#define TIMEOUT_MS 300

static nori_test_redis *server;

static int group_setup(void **state)
{
    (void)state;
    server = nori_test_redis_start(PASSWORD);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (server != NULL && server->pid > 0)
        kill(server->pid, SIGCONT); /* in case a test failed while it was frozen */
    nori_test_redis_stop(server);
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static nori_backend *new_backend(void)
{
    char url[400];
    snprintf(url, sizeof url, "%s?timeout_ms=%d&connect_timeout_ms=%d", server->url, TIMEOUT_MS,
             TIMEOUT_MS);
    nori_backend *b;
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    return b;
}

static void assert_no_password(void)
{
    const char *msg = nori_last_error();
    if (strstr(msg, PASSWORD) != NULL)
        fail_msg("the password leaked into: %s", msg);
    assert_non_null(strstr(msg, "***"));
}

static void test_stopped_then_restarted(void **state)
{
    (void)state;
    nori_backend *b = new_backend();
    assert_nori(nori_backend_set(b, "k", "before", 6, 0), NORI_OK);
    nori_test_redis_kill(server);

    double t0 = now_ms();
    nori_buf v;
    assert_nori(nori_backend_get(b, "k", &v), NORI_EBACKEND);
    double elapsed = now_ms() - t0;
    print_message("get against a stopped server: %.1f ms: %s\n", elapsed, nori_last_error());
    assert_true(elapsed < 3 * TIMEOUT_MS);
    assert_no_password();
    char port[16];
    snprintf(port, sizeof port, ":%d", server->port);
    assert_non_null(strstr(nori_last_error(), port));
    assert_non_null(strstr(nori_last_error(), "refused"));

    t0 = now_ms();
    assert_nori(nori_backend_verify(b), NORI_EBACKEND);
    assert_true(now_ms() - t0 < 3 * TIMEOUT_MS);
    assert_no_password();
    int64_t n;
    assert_nori(nori_backend_incr(b, "c", 0, &n), NORI_EBACKEND);
    assert_nori(nori_backend_set(b, "k", "x", 1, 0), NORI_EBACKEND);
    assert_nori(nori_backend_flush(b), NORI_EBACKEND);
    /* Refused connections cost no wait: the circuit breaker does not count
     * them, so it stays closed and the restart is seen at once. */
    nori_backend_stats st;
    assert_nori(nori_backend_get_stats(b, &st), NORI_OK);
    assert_int_equal(st.timeouts, 0);
    assert_int_equal(st.circuit_state, NORI_CIRCUIT_CLOSED);

    nori_test_redis_restart(server);
    /* Same handle, no recreation: works again (the data did not persist). */
    assert_nori(nori_backend_verify(b), NORI_OK);
    assert_nori(nori_backend_get(b, "k", &v), NORI_MISS);
    assert_nori(nori_backend_set(b, "k", "after", 5, 0), NORI_OK);
    assert_nori(nori_backend_get(b, "k", &v), NORI_OK);
    assert_string_equal(v.data, "after");
    nori_buf_free(&v);
    /* The restarted server has no scripts cached: incr falls back to EVAL. */
    assert_nori(nori_backend_incr(b, "c", 0, &n), NORI_OK);
    assert_int_equal(n, 1);
    nori_backend_free(b);
}

/* Pooled connections to a server that restarted between two calls are
 * dropped before use: the first call after the restart already succeeds. */
static void test_restart_between_calls(void **state)
{
    (void)state;
    nori_backend *b = new_backend();
    assert_nori(nori_backend_set(b, "r", "1", 1, 0), NORI_OK);
    nori_test_redis_kill(server);
    nori_test_redis_restart(server);
    assert_nori(nori_backend_set(b, "r", "2", 1, 0), NORI_OK);
    nori_backend_free(b);
}

/* A frozen server accepts connections (the kernel does) but never answers:
 * the command timeout must fire. */
static void test_frozen_server(void **state)
{
    (void)state;
    nori_backend *b = new_backend();
    assert_nori(nori_backend_set(b, "f", "v", 1, 0), NORI_OK);
    assert_int_equal(kill(server->pid, SIGSTOP), 0);
    double t0 = now_ms();
    nori_buf v;
    int rc = nori_backend_get(b, "f", &v);
    double elapsed = now_ms() - t0;
    /* A second call opens a new connection (the old one was freed) and
     * must time out too, in AUTH this time. */
    double t1 = now_ms();
    int rc2 = nori_backend_verify(b);
    double elapsed2 = now_ms() - t1;
    char msg2[512];
    snprintf(msg2, sizeof msg2, "%s", nori_last_error());
    kill(server->pid, SIGCONT);
    print_message("frozen server: get %.1f ms, verify %.1f ms: %s\n", elapsed, elapsed2, msg2);
    assert_nori(rc, NORI_EBACKEND);
    assert_nori(rc2, NORI_EBACKEND);
    assert_true(elapsed < 3 * TIMEOUT_MS);
    assert_true(elapsed2 < 3 * TIMEOUT_MS);
    assert_null(strstr(msg2, PASSWORD));
    assert_non_null(strstr(msg2, "timed out"));
    assert_nori(nori_backend_get(b, "f", &v), NORI_OK);
    nori_buf_free(&v);
    nori_backend_free(b);
}

/* DEBUG SLEEP 2 from another connection blocks the whole server for 2 s; a
 * call with timeout_ms=300 must return well before that. */
static void test_debug_sleep(void **state)
{
    (void)state;
    nori_backend *b = new_backend();
    assert_nori(nori_backend_set(b, "d", "v", 1, 0), NORI_OK);
    redisContext *other = nori_test_redis_connect(server);
    assert_non_null(other);
    assert_int_equal(redisAppendCommand(other, "DEBUG SLEEP 2"), REDIS_OK);
    int done = 0;
    while (!done)
        assert_int_equal(redisBufferWrite(other, &done), REDIS_OK);
    usleep(100 * 1000); /* let the server start sleeping */

    double t0 = now_ms();
    nori_buf v;
    int rc = nori_backend_get(b, "d", &v);
    double elapsed = now_ms() - t0;
    print_message("get during DEBUG SLEEP 2: %.1f ms: %s\n", elapsed, nori_last_error());
    assert_nori(rc, NORI_EBACKEND);
    assert_true(elapsed < 1500);
    assert_non_null(strstr(nori_last_error(), "timed out"));
    assert_no_password();

    void *reply;
    assert_int_equal(redisGetReply(other, &reply), REDIS_OK); /* sleep over */
    freeReplyObject(reply);
    redisFree(other);
    assert_nori(nori_backend_get(b, "d", &v), NORI_OK);
    assert_string_equal(v.data, "v");
    nori_buf_free(&v);
    nori_backend_free(b);
}

/*
 * A listener whose accept queue is full: the kernel drops further SYNs, so a
 * connect neither succeeds nor fails, like a server behind a black hole. The
 * connect timeout must bound it. (Loopback only: listen(fd, 0) allows one
 * queued connection, which the test fills itself.)
 */
static void test_connect_timeout(void **state)
{
    (void)state;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 0), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    int fillers[4];
    for (int i = 0; i < 4; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        assert_true(fillers[i] >= 0);
        (void)connect(fillers[i], (struct sockaddr *)&a, sizeof a);
    }
    usleep(50 * 1000);
    char url[200];
    snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%d?connect_timeout_ms=%d", PASSWORD,
             ntohs(a.sin_port), TIMEOUT_MS);
    nori_backend *b;
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    double t0 = now_ms();
    int rc = nori_backend_verify(b);
    double elapsed = now_ms() - t0;
    print_message("verify against a full accept queue: %.1f ms: %s\n", elapsed, nori_last_error());
    assert_nori(rc, NORI_EBACKEND);
    assert_true(elapsed >= TIMEOUT_MS * 0.8);
    assert_true(elapsed < 3 * TIMEOUT_MS);
    assert_non_null(strstr(nori_last_error(), "timed out"));
    assert_no_password();
    /* A connect that timed out counts for the circuit breaker. */
    nori_backend_stats st;
    assert_nori(nori_backend_get_stats(b, &st), NORI_OK);
    assert_int_equal(st.timeouts, 1);
    nori_backend_free(b);
    for (int i = 0; i < 4; i++)
        close(fillers[i]);
    close(lfd);
}

static void test_nothing_listening(void **state)
{
    (void)state;
    /* A port nobody listens on (the server's, while it is stopped), through
     * CACHE_BACKEND=redis: creation works (lazy), the first call fails. */
    nori_test_redis_kill(server);
    char url[400];
    snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%d/2", PASSWORD, server->port);
    setenv("CACHE_BACKEND", "redis", 1);
    setenv("REDIS_URL", url, 1);
    nori_backend *b;
    assert_nori(nori_backend_from_env(&b), NORI_OK);
    assert_nori(nori_backend_verify(b), NORI_EBACKEND);
    assert_no_password();
    nori_backend_free(b);
    unsetenv("CACHE_BACKEND");
    unsetenv("REDIS_URL");
    nori_test_redis_restart(server);
}

/* ---- a resolver that stalls ----
 *
 * The real glibc resolver, pointed at a local UDP socket that reads nothing
 * and answers nothing: a DNS server that is down behind a firewall that
 * drops, or one too busy to answer. The nameserver is set in the resolver
 * state of the thread that resolves (_res is per thread), so nothing else
 * in the process is touched: the test's hook does it in the library's
 * lookup thread; and the calls are made from a thread whose own state is
 * stalled the same way, so that a library resolving on the caller's thread
 * (hiredis's redisConnectWithTimeout, before) stalls there too, for
 * retrans * retry = 10 s per address family.
 */
#define STALL_NAME "redis.nori-test.invalid"

static struct sockaddr_in silent_dns;
static _Atomic int lookups_entered, lookups_returned;
static _Atomic(const char *) answer_with; /* NULL: stall; else names resolve to it */
/* Lookups of `counted_name` entered: a count that the lookups still in
 * flight from an earlier case (each tries IPv6 after IPv4) do not touch. */
static _Atomic(const char *) counted_name;
static _Atomic int counted_entered;

static void stall_this_thread(void)
{
    res_init();
    _res.nscount = 1;
    _res.nsaddr_list[0] = silent_dns;
    _res.retrans = 5;
    _res.retry = 2;
}

static int test_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                            struct addrinfo **res)
{
    atomic_fetch_add(&lookups_entered, 1);
    const char *counted = atomic_load(&counted_name);
    if (counted != NULL && strcmp(node, counted) == 0)
        atomic_fetch_add(&counted_entered, 1);
    int rc;
    const char *address = atomic_load(&answer_with);
    if (address != NULL) {
        rc = getaddrinfo(address, service, hints, res);
    } else {
        stall_this_thread();
        rc = getaddrinfo(node, service, hints, res);
    }
    atomic_fetch_add(&lookups_returned, 1);
    return rc;
}

typedef struct stalled_call {
    nori_backend *b;
    int rc;
    double took_ms;
    char error[512];
} stalled_call;

static void *call_main(void *arg)
{
    stalled_call *c = arg;
    stall_this_thread();
    double t0 = now_ms();
    c->rc = nori_backend_set(c->b, "k", "v", 1, 0);
    c->took_ms = now_ms() - t0;
    snprintf(c->error, sizeof c->error, "%s", nori_last_error());
    return NULL;
}

/* One set on b from a thread whose own resolver stalls. */
static stalled_call call_stalled(nori_backend *b)
{
    stalled_call c = {.b = b};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, call_main, &c), 0);
    pthread_join(t, NULL);
    return c;
}

static nori_backend *backend_for(const char *host)
{
    char url[400];
    snprintf(url, sizeof url, "redis://:%s@%s:%d?timeout_ms=%d&connect_timeout_ms=%d", PASSWORD,
             host, server->port, TIMEOUT_MS, TIMEOUT_MS);
    nori_backend *b;
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    return b;
}

/*
 * redis://<name> with a resolver that does not answer: every call that must
 * connect fails within about connect_timeout_ms (it took 10 s or more when
 * hiredis resolved the name on the caller's thread), one lookup serves
 * every call while it is in flight, and a name resolved before keeps being
 * served from its last answer while the resolver stalls.
 */
/* A local DNS "server" that never answers: silent_dns, for
 * stall_this_thread. Returns its socket (the caller closes it). */
static int silent_dns_open(void)
{
    int dns = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(dns >= 0);
    silent_dns = (struct sockaddr_in){.sin_family = AF_INET};
    silent_dns.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(dns, (struct sockaddr *)&silent_dns, sizeof silent_dns), 0);
    socklen_t len = sizeof silent_dns;
    assert_int_equal(getsockname(dns, (struct sockaddr *)&silent_dns, &len), 0);
    return dns;
}

static void test_resolver_stalls(void **state)
{
    (void)state;
    int dns = silent_dns_open();
    nori__resolve_set_hook(test_getaddrinfo);
    atomic_store(&answer_with, NULL);

    /* No answer known: each call fails within the bound, saying why. */
    uint64_t lookups = nori__resolve_lookups();
    nori_backend *b = backend_for(STALL_NAME);
    for (int i = 0; i < 3; i++) {
        stalled_call c = call_stalled(b);
        print_message("set with a stalled resolver: %.1f ms: %s\n", c.took_ms, c.error);
        assert_nori(c.rc, NORI_EBACKEND);
        assert_true(c.took_ms >= TIMEOUT_MS * 0.8);
        assert_true(c.took_ms < 3 * TIMEOUT_MS); /* 10 s and more before */
        assert_non_null(strstr(c.error, "resolving '" STALL_NAME "' took longer than 300 ms"));
        assert_null(strstr(c.error, PASSWORD));
    }
    /* The resolver really was asked, and was still stalled: one lookup for
     * the three calls. */
    char query[512];
    assert_true(recv(dns, query, sizeof query, MSG_DONTWAIT) > 0);
    assert_int_equal(nori__resolve_lookups() - lookups, 1);
    assert_int_equal(atomic_load(&lookups_returned), 0);
    /* A stalled connect counts for the circuit breaker as a slow one. */
    nori_backend_stats st;
    assert_nori(nori_backend_get_stats(b, &st), NORI_OK);
    assert_int_equal(st.timeouts, 3);
    nori_backend_free(b);

    /* Another name, resolved while the resolver answers ... */
    atomic_store(&answer_with, "127.0.0.1");
    b = backend_for("cache.nori-test.invalid");
    assert_nori(nori_backend_set(b, "k", "v", 1, 0), NORI_OK);
    nori_backend_free(b);
    /* ... is served from that answer when the resolver stalls (a new backend
     * has no connection: it must resolve), after the bounded wait. */
    atomic_store(&answer_with, NULL);
    b = backend_for("cache.nori-test.invalid");
    stalled_call c = call_stalled(b);
    print_message("set with a stalled resolver and a known answer: %.1f ms: %s\n", c.took_ms,
                  c.rc == NORI_OK ? "ok" : c.error);
    if (c.rc != NORI_OK)
        fail_msg("%s", c.error);
    assert_true(c.took_ms < 3 * TIMEOUT_MS);
    nori_backend_free(b);
    /* Without that answer (older than NORI_RESOLVE_STALE_MS), it fails again. */
    nori__resolve_forget();
    b = backend_for("cache.nori-test.invalid");
    c = call_stalled(b);
    assert_nori(c.rc, NORI_EBACKEND);
    assert_true(c.took_ms < 3 * TIMEOUT_MS);
    nori_backend_free(b);

    /* Numeric addresses make no lookup. */
    lookups = nori__resolve_lookups();
    b = backend_for("127.0.0.1");
    c = call_stalled(b);
    assert_nori(c.rc, NORI_OK);
    assert_int_equal(nori__resolve_lookups(), lookups);
    nori_backend_free(b);
    /* The stalled lookups go on in their threads; the process may end. */
    nori__resolve_set_hook(NULL);
    close(dns);
}

/*
 * The near cache's invalidation listener opens its connections as the
 * backend does (dial.h), so its host name lookup is bounded too. It used to
 * resolve with hiredis on its own thread, without a bound: freeing the
 * backend joined that thread, and so waited for getaddrinfo (10 s and more
 * with a silent DNS server), and a name only the bounded lookup knows
 * (here, the test's hook) never resolved.
 *  - Freeing a backend whose listener waits for a stalled lookup returns
 *    within about connect_timeout_ms (300 ms; asserted under 2 s, room for
 *    a loaded machine and still far below the 10 s of an unbounded lookup).
 *  - Once the name resolves, the listener connects and the near cache
 *    becomes active: within 5 s, a bound it meets in one attempt (a
 *    connect, AUTH, CLIENT ID, SUBSCRIBE and a marker read on loopback).
 */
static void test_near_listener_resolver_stalls(void **state)
{
    (void)state;
    int dns = silent_dns_open();
    nori__resolve_set_hook(test_getaddrinfo);
    atomic_store(&answer_with, NULL);

    atomic_store(&counted_name, "near-stall.nori-test.invalid");
    nori_backend *b = backend_for("near-stall.nori-test.invalid");
    assert_nori(nori_redis_backend_enable_near(b, 100, 1 << 20, 0), NORI_OK);
    /* The listener thread starts at once and looks the name up. */
    double t0 = now_ms();
    while (atomic_load(&counted_entered) == 0 && now_ms() - t0 < 5000) {
        struct timespec pause = {0, 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    if (atomic_load(&counted_entered) == 0)
        fail_msg("the listener did not look its host name up through the bounded lookup");
    t0 = now_ms();
    nori_backend_free(b);
    double took = now_ms() - t0;
    print_message("free with the listener in a stalled lookup: %.1f ms\n", took);
    assert_true(took < 2000);

    atomic_store(&answer_with, "127.0.0.1");
    b = backend_for("near.nori-test.invalid");
    assert_nori(nori_redis_backend_enable_near(b, 100, 1 << 20, 0), NORI_OK);
    t0 = now_ms();
    nori_near_stats ns = {0};
    while (now_ms() - t0 < 5000) {
        assert_nori(nori_backend_get_near_stats(b, &ns), NORI_OK);
        if (ns.active)
            break;
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    print_message("listener active after %.1f ms\n", now_ms() - t0);
    assert_int_equal(ns.active, 1);
    nori_backend_free(b);
    nori__resolve_set_hook(NULL);
    close(dns);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stopped_then_restarted),
        cmocka_unit_test(test_restart_between_calls),
        cmocka_unit_test(test_frozen_server),
        cmocka_unit_test(test_debug_sleep),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_nothing_listening),
        cmocka_unit_test(test_resolver_stalls),
        cmocka_unit_test(test_near_listener_resolver_stalls),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
