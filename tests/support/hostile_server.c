// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hostile_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Most client connections served at once (the pool may open a few). */
#define MAX_CLIENTS 16

typedef struct client {
    int fd;
    size_t sent;  /* bytes of the current reply sent; `len` when idle */
    bool replying;
} client;

struct nori_test_hostile {
    int listen_fd;
    int wake[2]; /* a byte on wake[1] tells the thread to stop */
    char *reply;
    size_t len;
    int interval_ms;
    pthread_t thread;
    _Atomic size_t bytes_sent;
    _Atomic int connections;
    int port;
};

static void close_client(client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->replying = false;
}

/* Sends what may be sent now: everything, or one byte when trickling. */
static void send_some(nori_test_hostile *h, client *c)
{
    size_t want = h->interval_ms > 0 ? 1 : h->len - c->sent;
    ssize_t n = send(c->fd, h->reply + c->sent, want, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
        c->sent += (size_t)n;
        atomic_fetch_add(&h->bytes_sent, (size_t)n);
        if (c->sent == h->len)
            c->replying = false; /* then it stalls until the next command */
    } else if (n == -1 && errno != EAGAIN && errno != EINTR) {
        close_client(c);
    }
}

static void *serve(void *arg)
{
    nori_test_hostile *h = arg;
    client clients[MAX_CLIENTS];
    for (int i = 0; i < MAX_CLIENTS; i++)
        clients[i] = (client){.fd = -1};
    for (;;) {
        struct pollfd pfd[MAX_CLIENTS + 2];
        int idx[MAX_CLIENTS + 2];
        int n = 0;
        pfd[n++] = (struct pollfd){.fd = h->wake[0], .events = POLLIN};
        pfd[n++] = (struct pollfd){.fd = h->listen_fd, .events = POLLIN};
        bool trickling = false;
        for (int i = 0; i < MAX_CLIENTS; i++) {
            if (clients[i].fd < 0)
                continue;
            short ev = POLLIN;
            if (clients[i].replying && h->interval_ms == 0)
                ev |= POLLOUT;
            trickling |= clients[i].replying && h->interval_ms > 0;
            idx[n] = i;
            pfd[n++] = (struct pollfd){.fd = clients[i].fd, .events = ev};
        }
        int timeout = trickling ? h->interval_ms : 1000;
        int ready = poll(pfd, (nfds_t)n, timeout);
        if (ready == -1 && errno != EINTR)
            break;
        if (pfd[0].revents != 0)
            break;
        if (pfd[1].revents & POLLIN) {
            int fd = accept(h->listen_fd, NULL, NULL);
            if (fd >= 0) {
                int slot = -1;
                for (int i = 0; i < MAX_CLIENTS && slot < 0; i++)
                    if (clients[i].fd < 0)
                        slot = i;
                if (slot < 0) {
                    close(fd);
                } else {
                    clients[slot] = (client){.fd = fd};
                    atomic_fetch_add(&h->connections, 1);
                }
            }
        }
        for (int k = 2; k < n; k++) {
            client *c = &clients[idx[k]];
            if (c->fd < 0)
                continue;
            if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR)) {
                char buf[65536];
                ssize_t got = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
                if (got == 0 || (got == -1 && errno != EAGAIN && errno != EINTR)) {
                    close_client(c);
                    continue;
                }
                if (got > 0 && h->len > 0 && !c->replying) {
                    c->replying = true;
                    c->sent = 0;
                }
            }
            if (c->replying && h->interval_ms == 0 && (pfd[k].revents & POLLOUT))
                send_some(h, c);
        }
        /* Trickle: one byte per client per interval (poll's timeout paces it;
         * a command arriving meanwhile may make a byte go early, harmless). */
        if (trickling)
            for (int i = 0; i < MAX_CLIENTS; i++)
                if (clients[i].fd >= 0 && clients[i].replying)
                    send_some(h, &clients[i]);
    }
    for (int i = 0; i < MAX_CLIENTS; i++)
        close_client(&clients[i]);
    return NULL;
}

nori_test_hostile *nori_test_hostile_start(const void *reply, size_t len, int byte_interval_ms)
{
    nori_test_hostile *h = calloc(1, sizeof *h);
    assert_non_null(h);
    h->reply = malloc(len + 1);
    assert_non_null(h->reply);
    if (len > 0)
        memcpy(h->reply, reply, len);
    h->len = len;
    h->interval_ms = byte_interval_ms;
    atomic_init(&h->bytes_sent, 0);
    atomic_init(&h->connections, 0);
    assert_int_equal(pipe(h->wake), 0);
    h->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(h->listen_fd >= 0);
    int one = 1;
    setsockopt(h->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(h->listen_fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(h->listen_fd, 16), 0);
    socklen_t alen = sizeof a;
    assert_int_equal(getsockname(h->listen_fd, (struct sockaddr *)&a, &alen), 0);
    h->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&h->thread, NULL, serve, h), 0);
    return h;
}

int nori_test_hostile_port(const nori_test_hostile *h)
{
    return h->port;
}

size_t nori_test_hostile_bytes_sent(const nori_test_hostile *h)
{
    return atomic_load(&((nori_test_hostile *)h)->bytes_sent);
}

int nori_test_hostile_connections(const nori_test_hostile *h)
{
    return atomic_load(&((nori_test_hostile *)h)->connections);
}

void nori_test_hostile_stop(nori_test_hostile *h)
{
    if (h == NULL)
        return;
    char b = 1;
    ssize_t w;
    do
        w = write(h->wake[1], &b, 1);
    while (w == -1 && errno == EINTR);
    pthread_join(h->thread, NULL);
    close(h->listen_fd);
    close(h->wake[0]);
    close(h->wake[1]);
    free(h->reply);
    free(h);
}
