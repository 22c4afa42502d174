// SPDX-License-Identifier: MIT
/*
 * A Redis peer that goes away in the middle of a command must be an error,
 * never a killed process: the library writes with send(2) and MSG_NOSIGNAL
 * (src/redis/wire/io.c), so with SIGPIPE at its default action (terminate) and
 * unblocked, the write fails with EPIPE and the call returns NORI_EBACKEND.
 * The library also leaves the thread's signal mask and pending signals as it
 * found them. (Checked: with write(2), or send without MSG_NOSIGNAL, this
 * test dies of SIGPIPE.)
 *
 * The peer is a plain socket in this test (it half-closes, then resets, in
 * the middle of a large SET), which a real redis-server cannot be made to
 * do on demand.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct peer {
    int listen_fd;
    int port;
    size_t received;
} peer;

/*
 * Accepts one connection and reads 64 KiB of the command. Then it half-closes
 * (FIN: the client's socket enters CLOSE_WAIT, where sending is still
 * allowed) and closes with the rest of the command unread, which sends an
 * RST. A reset in CLOSE_WAIT is reported to the sender as EPIPE: the next
 * write(2) would raise SIGPIPE.
 */
static void *peer_main(void *arg)
{
    peer *p = arg;
    struct timeval tv = {5, 0}; /* bounded: a client that never comes */
    setsockopt(p->listen_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int fd = accept(p->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[4096];
    while (p->received < 64 * 1024) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        p->received += (size_t)n;
    }
    shutdown(fd, SHUT_WR);
    /* Unread bytes must be waiting, so that close sends an RST, not a FIN
     * (the client sends 32 MiB: they come; bounded wait all the same). */
    for (int i = 0; i < 5000; i++) {
        int unread = 0;
        if (ioctl(fd, FIONREAD, &unread) != 0 || unread > 0)
            break;
        usleep(1000);
    }
    close(fd);
    return NULL;
}

static void peer_start(peer *p, pthread_t *t)
{
    p->received = 0;
    p->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(p->listen_fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(p->listen_fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(p->listen_fd, 4), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(p->listen_fd, (struct sockaddr *)&a, &len), 0);
    p->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(t, NULL, peer_main, p), 0);
}

static bool pipe_pending(void)
{
    sigset_t pending;
    assert_int_equal(sigpending(&pending), 0);
    return sigismember(&pending, SIGPIPE) == 1;
}

static bool pipe_blocked(void)
{
    sigset_t mask;
    assert_int_equal(pthread_sigmask(SIG_SETMASK, NULL, &mask), 0);
    return sigismember(&mask, SIGPIPE) == 1;
}

static void test_reset_mid_write_is_an_error(void **state)
{
    (void)state;
    /* The default action: a SIGPIPE would end this process. */
    assert_true(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
    assert_false(pipe_blocked());
    peer p;
    pthread_t t;
    peer_start(&p, &t);
    char url[96];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d?timeout_ms=3000", p.port);
    nori_backend *b;
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    assert_nori(nori_backend_set_max_value(b, (size_t)64 << 20), NORI_OK);
    /* 32 MiB: far more than the socket buffers hold, so the client is
     * still writing when the reset arrives. */
    size_t len = (size_t)32 << 20;
    char *v = malloc(len);
    assert_non_null(v);
    memset(v, 'x', len);
    int rc = nori_backend_set(b, "big", v, len, 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(p.received > 0);
    assert_int_equal(rc, NORI_EBACKEND);
    print_message("set to a peer that reset: %s\n", nori_last_error());
    assert_false(pipe_blocked());
    assert_false(pipe_pending());
    free(v);
    close(p.listen_fd);
    nori_backend_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reset_mid_write_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
