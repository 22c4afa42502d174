// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fake_redis.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CLIENTS 64
#define MAX_RULES 256
#define MAX_ARGS 16

typedef struct rule {
    char *cmd;   /* "GET" or "CLUSTER SLOTS" */
    char *resp;
    bool is_default;
} rule;

typedef struct client {
    int fd;
    bool stalled;
    char *buf;
    size_t len, cap;
} client;

struct nori_fake_redis {
    int listen_fd;
    int port;
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t lock; /* guards rules, log */
    rule rules[MAX_RULES];
    int nrules;
    char *log;
    size_t log_len;
    client clients[MAX_CLIENTS];
};

/* True when the command words match the rule's cmd (one or two words). */
static bool matches(const char *cmd, char args[][64], int nargs)
{
    const char *sp = strchr(cmd, ' ');
    if (sp == NULL)
        return nargs >= 1 && strcasecmp(cmd, args[0]) == 0;
    size_t n1 = (size_t)(sp - cmd);
    return nargs >= 2 && strlen(args[0]) == n1 && strncasecmp(cmd, args[0], n1) == 0 &&
           strcasecmp(sp + 1, args[1]) == 0;
}

/* Picks (and consumes) the reply for a command; returns a malloc'd copy. */
static char *pick(nori_fake_redis *f, char args[][64], int nargs)
{
    pthread_mutex_lock(&f->lock);
    char *out = NULL;
    for (int pass = 0; pass < 2 && out == NULL; pass++) {
        for (int i = 0; i < f->nrules; i++) {
            rule *r = &f->rules[i];
            if (r->is_default != (pass == 1) || !matches(r->cmd, args, nargs))
                continue;
            out = strdup(r->resp);
            if (!r->is_default) {
                free(r->cmd);
                free(r->resp);
                memmove(r, r + 1, (size_t)(f->nrules - i - 1) * sizeof *r);
                f->nrules--;
            }
            break;
        }
    }
    /* Log the name (two words for CLUSTER/SENTINEL/SCRIPT). */
    char name[140];
    bool two = nargs >= 2 && (strcasecmp(args[0], "CLUSTER") == 0 ||
                              strcasecmp(args[0], "SENTINEL") == 0 ||
                              strcasecmp(args[0], "SCRIPT") == 0);
    snprintf(name, sizeof name, "%s%s%s", nargs > 0 ? args[0] : "?", two ? " " : "",
             two ? args[1] : "");
    for (char *p = name; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    size_t add = strlen(name) + 1;
    char *log = realloc(f->log, f->log_len + add + 1);
    if (log != NULL) {
        f->log = log;
        snprintf(log + f->log_len, add + 1, "%s%s", f->log_len ? "|" : "", name);
        f->log_len = strlen(log);
    }
    pthread_mutex_unlock(&f->lock);
    if (out == NULL) {
        char msg[200];
        snprintf(msg, sizeof msg, "-ERR fake: unscripted command '%s'\r\n", name);
        out = strdup(msg);
    }
    return out;
}

/*
 * Parses one RESP multibulk command from c->buf. Returns the bytes it
 * used, 0 when incomplete, -1 on a protocol error. Arguments are cut to
 * 63 bytes (only names matter here).
 */
static long parse_command(client *c, char args[][64], int *nargs)
{
    const char *p = c->buf, *end = c->buf + c->len;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL)
        return 0;
    if (*p != '*')
        return -1;
    long n = strtol(p + 1, NULL, 10);
    if (n < 1 || n > 1000000)
        return -1;
    p = nl + 1;
    *nargs = 0;
    for (long i = 0; i < n; i++) {
        nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            return 0;
        if (*p != '$')
            return -1;
        long len = strtol(p + 1, NULL, 10);
        if (len < 0)
            return -1;
        p = nl + 1;
        if (end - p < len + 2)
            return 0;
        if (*nargs < MAX_ARGS) {
            size_t k = (size_t)len < 63 ? (size_t)len : 63;
            memcpy(args[*nargs], p, k);
            args[*nargs][k] = '\0';
            (*nargs)++;
        }
        p += len + 2;
    }
    return (long)(p - c->buf);
}

static void drop(client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

static void write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

static void serve(nori_fake_redis *f, client *c)
{
    if (c->cap - c->len < 4096) {
        size_t cap = c->cap ? c->cap * 2 : 8192;
        char *b = realloc(c->buf, cap);
        if (b == NULL) {
            drop(c);
            return;
        }
        c->buf = b;
        c->cap = cap;
    }
    ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    if (r <= 0) {
        drop(c);
        return;
    }
    c->len += (size_t)r;
    while (!c->stalled) {
        char args[MAX_ARGS][64];
        int nargs = 0;
        long used = parse_command(c, args, &nargs);
        if (used < 0) {
            drop(c);
            return;
        }
        if (used == 0)
            return;
        memmove(c->buf, c->buf + used, c->len - (size_t)used);
        c->len -= (size_t)used;
        char *resp = pick(f, args, nargs);
        if (strcmp(resp, NORI_FAKE_STALL) == 0) {
            c->stalled = true;
        } else if (strcmp(resp, NORI_FAKE_CLOSE) == 0) {
            free(resp);
            drop(c);
            return;
        } else {
            write_all(c->fd, resp, strlen(resp));
        }
        free(resp);
    }
    c->len = 0; /* a stalled connection reads and discards */
}

static void *run(void *arg)
{
    nori_fake_redis *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd pfd[MAX_CLIENTS + 1];
        int idx[MAX_CLIENTS + 1];
        int n = 0;
        pfd[n] = (struct pollfd){.fd = f->listen_fd, .events = POLLIN};
        idx[n++] = -1;
        for (int i = 0; i < MAX_CLIENTS; i++)
            if (f->clients[i].fd >= 0) {
                pfd[n] = (struct pollfd){.fd = f->clients[i].fd, .events = POLLIN};
                idx[n++] = i;
            }
        if (poll(pfd, (nfds_t)n, 20) <= 0)
            continue;
        for (int k = 0; k < n; k++) {
            if (!(pfd[k].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            if (idx[k] < 0) {
                int fd = accept(f->listen_fd, NULL, NULL);
                if (fd < 0)
                    continue;
                int slot = -1;
                for (int i = 0; i < MAX_CLIENTS && slot < 0; i++)
                    if (f->clients[i].fd < 0)
                        slot = i;
                if (slot < 0) {
                    close(fd);
                    continue;
                }
                f->clients[slot].fd = fd;
            } else {
                serve(f, &f->clients[idx[k]]);
            }
        }
    }
    return NULL;
}

nori_fake_redis *nori_fake_redis_start(void)
{
    nori_fake_redis *f = calloc(1, sizeof *f);
    assert_non_null(f);
    for (int i = 0; i < MAX_CLIENTS; i++)
        f->clients[i].fd = -1;
    f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->listen_fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(f->listen_fd, 64), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(f->listen_fd, (struct sockaddr *)&a, &len), 0);
    f->port = ntohs(a.sin_port);
    pthread_mutex_init(&f->lock, NULL);
    atomic_init(&f->stop, false);
    assert_int_equal(pthread_create(&f->thread, NULL, run, f), 0);
    return f;
}

int nori_fake_redis_port(const nori_fake_redis *f)
{
    return f->port;
}

static void add_rule(nori_fake_redis *f, const char *cmd, const char *resp, bool is_default)
{
    pthread_mutex_lock(&f->lock);
    if (is_default) {
        for (int i = 0; i < f->nrules; i++)
            if (f->rules[i].is_default && strcasecmp(f->rules[i].cmd, cmd) == 0) {
                free(f->rules[i].resp);
                f->rules[i].resp = strdup(resp);
                pthread_mutex_unlock(&f->lock);
                return;
            }
    }
    assert_true(f->nrules < MAX_RULES);
    f->rules[f->nrules++] = (rule){strdup(cmd), strdup(resp), is_default};
    pthread_mutex_unlock(&f->lock);
}

void nori_fake_redis_reply(nori_fake_redis *f, const char *cmd, const char *resp)
{
    add_rule(f, cmd, resp, false);
}

void nori_fake_redis_default(nori_fake_redis *f, const char *cmd, const char *resp)
{
    add_rule(f, cmd, resp, true);
}

int nori_fake_redis_count(nori_fake_redis *f, const char *cmd)
{
    pthread_mutex_lock(&f->lock);
    int n = 0;
    size_t clen = strlen(cmd);
    for (const char *p = f->log; p != NULL && *p;) {
        size_t len = strcspn(p, "|");
        if (len == clen && strncasecmp(p, cmd, clen) == 0)
            n++;
        p += len;
        if (*p == '|')
            p++;
    }
    pthread_mutex_unlock(&f->lock);
    return n;
}

char *nori_fake_redis_log(nori_fake_redis *f)
{
    pthread_mutex_lock(&f->lock);
    char *s = strdup(f->log != NULL ? f->log : "");
    pthread_mutex_unlock(&f->lock);
    return s;
}

void nori_fake_redis_stop(nori_fake_redis *f)
{
    if (f == NULL)
        return;
    atomic_store(&f->stop, true);
    pthread_join(f->thread, NULL);
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (f->clients[i].fd >= 0)
            drop(&f->clients[i]);
    close(f->listen_fd);
    for (int i = 0; i < f->nrules; i++) {
        free(f->rules[i].cmd);
        free(f->rules[i].resp);
    }
    free(f->log);
    pthread_mutex_destroy(&f->lock);
    free(f);
}
