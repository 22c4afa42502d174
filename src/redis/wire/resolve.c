// SPDX-License-Identifier: MIT
/*
 * Host names resolved within a deadline; see resolve.h.
 *
 * Every name has an entry in a small fixed table under one mutex. An entry
 * holds the lookup in flight for its name (if any) and the last answer. A
 * lookup is a detached thread running getaddrinfo; it is shared by the
 * callers that wait for it (reference counted: the thread and each waiter),
 * so that a caller whose deadline passes simply lets go of it, and the
 * thread frees it when it ends last. The mutex is held only to look up an
 * entry, to attach to a lookup and to store an answer; never during
 * getaddrinfo.
 */
#include "redis/wire/resolve.h"

#include "clock.h"
#include "redis/wire/io.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef struct answer {
    size_t n;
    char addr[NORI_RESOLVE_MAX_ADDRS][INET6_ADDRSTRLEN];
} answer;

typedef struct lookup {
    int refs;  /* under g.lock: the thread, and each caller waiting for it */
    bool done; /* under g.lock */
    int gai;   /* getaddrinfo's result: 0, or an EAI_* code */
    int err;   /* errno, for EAI_SYSTEM */
    answer res;
    nori__getaddrinfo_fn fn;
    size_t slot; /* its name's entry */
    char host[];
} lookup;

typedef struct name_entry {
    char *host;       /* NULL: a free entry */
    lookup *inflight; /* NULL when none: only then may the entry be reused */
    answer last;
    bool have_last;
    int64_t last_at;  /* when `last` arrived */
    int64_t used_at;  /* for choosing the entry to reuse */
} name_entry;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t done; /* nori__cond_init; broadcast when any lookup ends */
    name_entry names[NORI_RESOLVE_NAMES];
} g = {.lock = PTHREAD_MUTEX_INITIALIZER};

static _Atomic(nori__getaddrinfo_fn) hook;
static _Atomic uint64_t lookups_started;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init_cond(void)
{
    nori__cond_init(&g.done);
}

/* fork(): the table is taken whole, so that the child never inherits it
 * locked by a lookup thread storing its answer. */
static void fork_prepare(void)
{
    pthread_mutex_lock(&g.lock);
}

/* Called with g.lock held (fork_prepare took it); releases it. */
static void do_fork_parent(void)
{
    pthread_mutex_unlock(&g.lock);
}

/* The lookup threads are not in the child: their lookups never end there.
 * Forget them (their memory belongs to the parent's threads' copies) and
 * keep the answers. Called with g.lock held (fork_prepare took it);
 * releases it. */
static void do_fork_child(void)
{
    for (size_t i = 0; i < NORI_RESOLVE_NAMES; i++)
        g.names[i].inflight = NULL;
    init_cond();
    pthread_mutex_unlock(&g.lock);
}

static void init(void)
{
    init_cond();
    pthread_atfork(fork_prepare, do_fork_parent, do_fork_child);
}

void nori__resolve_set_hook(nori__getaddrinfo_fn fn)
{
    atomic_store(&hook, fn);
}

uint64_t nori__resolve_lookups(void)
{
    return atomic_load(&lookups_started);
}

void nori__resolve_forget(void)
{
    pthread_once(&once, init);
    pthread_mutex_lock(&g.lock);
    for (size_t i = 0; i < NORI_RESOLVE_NAMES; i++)
        g.names[i].have_last = false;
    pthread_mutex_unlock(&g.lock);
}

/* The addresses of ai, numeric, in order, without repeats. */
static void take_addresses(const struct addrinfo *ai, answer *out)
{
    out->n = 0;
    for (const struct addrinfo *p = ai; p != NULL && out->n < NORI_RESOLVE_MAX_ADDRS;
         p = p->ai_next) {
        char text[INET6_ADDRSTRLEN];
        const void *a = p->ai_family == AF_INET
                            ? (const void *)&((const struct sockaddr_in *)p->ai_addr)->sin_addr
                        : p->ai_family == AF_INET6
                            ? (const void *)&((const struct sockaddr_in6 *)p->ai_addr)->sin6_addr
                            : NULL;
        if (a == NULL || inet_ntop(p->ai_family, a, text, sizeof text) == NULL)
            continue;
        bool seen = false;
        for (size_t i = 0; i < out->n; i++)
            seen |= strcmp(out->addr[i], text) == 0;
        if (!seen)
            memcpy(out->addr[out->n++], text, sizeof text);
    }
}

static void *lookup_main(void *arg)
{
    lookup *l = arg;
    /* hiredis's order: IPv4, and IPv6 only for a name without IPv4. */
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    int rc = l->fn(l->host, NULL, &hints, &ai);
    if (rc != 0) {
        hints.ai_family = AF_INET6;
        ai = NULL;
        rc = l->fn(l->host, NULL, &hints, &ai);
    }
    int err = errno;
    answer res = {.n = 0};
    if (rc == 0) {
        take_addresses(ai, &res);
        freeaddrinfo(ai);
        if (res.n == 0)
            rc = EAI_NONAME;
    }
    pthread_mutex_lock(&g.lock);
    l->gai = rc;
    l->err = err;
    l->res = res;
    l->done = true;
    name_entry *e = &g.names[l->slot];
    /* Not so after a fork (the child forgot it) or when the entry was given
     * to another name since (only entries without a lookup are). */
    if (e->inflight == l) {
        e->inflight = NULL;
        if (rc == 0) {
            e->last = res;
            e->have_last = true;
            e->last_at = nori__real_ms();
        }
    }
    pthread_cond_broadcast(&g.done);
    bool last = --l->refs == 0;
    pthread_mutex_unlock(&g.lock);
    if (last)
        free(l);
    return NULL;
}

/* The entry of host, made when new. Called with g.lock held. NULL when every
 * entry has a lookup in flight. */
static name_entry *do_entry(const char *host, int64_t now)
{
    name_entry *free_one = NULL, *oldest = NULL;
    for (size_t i = 0; i < NORI_RESOLVE_NAMES; i++) {
        name_entry *e = &g.names[i];
        if (e->host != NULL && strcmp(e->host, host) == 0) {
            e->used_at = now;
            return e;
        }
        if (e->host == NULL && free_one == NULL)
            free_one = e;
        if (e->host != NULL && e->inflight == NULL &&
            (oldest == NULL || e->used_at < oldest->used_at))
            oldest = e;
    }
    name_entry *e = free_one != NULL ? free_one : oldest;
    if (e == NULL)
        return NULL;
    char *copy = strdup(host);
    if (copy == NULL)
        return NULL;
    free(e->host);
    memset(e, 0, sizeof *e);
    e->host = copy;
    e->used_at = now;
    return e;
}

/* Starts a lookup of e's name. Called with g.lock held. NULL with why filled
 * on failure. */
static lookup *do_start(name_entry *e, char *why, size_t why_size)
{
    size_t len = strlen(e->host);
    lookup *l = calloc(1, sizeof *l + len + 1);
    if (l == NULL) {
        snprintf(why, why_size, "out of memory resolving '%.200s'", e->host);
        return NULL;
    }
    memcpy(l->host, e->host, len + 1);
    l->refs = 1; /* the thread's */
    l->slot = (size_t)(e - g.names);
    nori__getaddrinfo_fn fn = atomic_load(&hook);
    l->fn = fn != NULL ? fn : getaddrinfo;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    int rc = pthread_create(&thread, &attr, lookup_main, l);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        snprintf(why, why_size, "cannot start a thread to resolve '%.200s': %s", e->host,
                 strerror(rc));
        free(l);
        return NULL;
    }
    atomic_fetch_add(&lookups_started, 1);
    e->inflight = l;
    return l;
}

static bool is_numeric(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* A temporary failure: a stale answer may stand in (RFC 8767 serves stale
 * data when the servers cannot be reached, not for a name that does not
 * exist). */
static bool temporary(int gai)
{
    return gai == EAI_AGAIN || gai == EAI_SYSTEM || gai == EAI_MEMORY;
}

/* Resolves host into *out by deadline. 0, or -1 with why and *timed_out. */
static int resolve(const char *host, int64_t deadline, int timeout_ms, answer *out, char *why,
                   size_t why_size, bool *timed_out)
{
    *timed_out = false;
    if (is_numeric(host)) {
        out->n = 1;
        snprintf(out->addr[0], sizeof out->addr[0], "%s", host);
        return 0;
    }
    pthread_once(&once, init);
    pthread_mutex_lock(&g.lock);
    int64_t now = nori__real_ms();
    name_entry *e = do_entry(host, now);
    if (e == NULL) {
        pthread_mutex_unlock(&g.lock);
        snprintf(why, why_size,
                 "cannot resolve '%.200s': %d other names are being resolved (or out of memory)",
                 host, NORI_RESOLVE_NAMES);
        return -1;
    }
    lookup *l = e->inflight != NULL ? e->inflight : do_start(e, why, why_size);
    if (l == NULL) {
        pthread_mutex_unlock(&g.lock);
        return -1;
    }
    l->refs++;
    /* With a last answer to fall back on, the fresh one is waited for half
     * the time, so that the other half is left to connect. A lookup not
     * done is still e's (an entry with a lookup is never given to another
     * name), so e's last answer stays host's while this waits. */
    bool fallback = e->have_last && now - e->last_at < NORI_RESOLVE_STALE_MS;
    int64_t until_ms = fallback ? now + (deadline - now) / 2 : deadline;
    while (!l->done && nori__real_ms() < until_ms)
        if (nori__real_cond_wait_until(&g.done, &g.lock, until_ms) == ETIMEDOUT)
            break;
    int rc = 0;
    bool stale_ok = (!l->done || temporary(l->gai)) && fallback && e->have_last;
    if (l->done && l->gai == 0) {
        *out = l->res;
    } else if (stale_ok) {
        *out = e->last;
    } else if (!l->done) {
        snprintf(why, why_size, "resolving '%.200s' took longer than %d ms", host, timeout_ms);
        *timed_out = true;
        rc = -1;
    } else {
        snprintf(why, why_size, "cannot resolve '%.200s': %s", host,
                 l->gai == EAI_SYSTEM ? strerror(l->err) : gai_strerror(l->gai));
        rc = -1;
    }
    bool last = --l->refs == 0;
    pthread_mutex_unlock(&g.lock);
    if (last)
        free(l);
    return rc;
}

redisContext *nori__redis_connect_tcp(const char *host, int port, int timeout_ms, char *why,
                                      size_t why_size, bool *timed_out)
{
    why[0] = '\0';
    int64_t deadline = nori__real_ms() + timeout_ms;
    answer a;
    if (resolve(host, deadline, timeout_ms, &a, why, why_size, timed_out) != 0)
        return NULL;
    bool named = !is_numeric(host);
    for (size_t i = 0; i < a.n; i++) {
        int64_t left = deadline - nori__real_ms();
        if (left <= 0) {
            snprintf(why, why_size, "Connection timed out (resolving and connecting took %d ms)",
                     timeout_ms);
            *timed_out = true;
            return NULL;
        }
        redisContext *c = redisConnectWithTimeout(a.addr[i], port, nori__ms_timeval(left));
        if (c == NULL) {
            snprintf(why, why_size, "out of memory");
            return NULL;
        }
        if (c->err == 0)
            return c;
        *timed_out = strstr(c->errstr, "timed out") != NULL;
        if (named)
            snprintf(why, why_size, "%s (address %s)", c->errstr, a.addr[i]);
        else
            snprintf(why, why_size, "%s", c->errstr);
        redisFree(c);
        if (*timed_out)
            break; /* the time is spent */
    }
    return NULL;
}

redisContext *nori__redis_connect_start(const char *host, int port, int timeout_ms, char *why,
                                        size_t why_size, bool *timed_out)
{
    why[0] = '\0';
    answer a;
    if (resolve(host, nori__real_ms() + timeout_ms, timeout_ms, &a, why, why_size,
                timed_out) != 0)
        return NULL;
    redisContext *c = redisConnectNonBlock(a.addr[0], port);
    if (c == NULL) {
        snprintf(why, why_size, "out of memory");
        return NULL;
    }
    if (c->err != 0) {
        snprintf(why, why_size, "%s", c->errstr);
        redisFree(c);
        return NULL;
    }
    return c;
}

int nori__redis_connect_finish(redisContext *c, char *why, size_t why_size)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
        err = errno;
    if (err == 0)
        return 0;
    snprintf(why, why_size, "%s", strerror(err));
    return -1;
}
