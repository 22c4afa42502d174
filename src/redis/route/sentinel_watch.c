// SPDX-License-Identifier: MIT
/*
 * The sentinel watch: one thread, one subscribed connection per sentinel,
 * driven by poll(2); see sentinel_watch.h.
 *
 * Each sentinel's connection goes IDLE (waiting for its next attempt) ->
 * CONNECTING (non-blocking connect) -> HANDSHAKE (the setup commands of
 * dial.h, AUTH here, and SUBSCRIBE sent in one write, their replies
 * awaited) -> SUBSCRIBED (messages and PONGs read; PINGed
 * every beat), and back to IDLE on any failure. Each state but SUBSCRIBED
 * has a deadline, and SUBSCRIBED has the heartbeat's, so no connection can
 * hold the thread or stay silent for long. Only the thread touches the
 * connections; the counters are atomics read by other threads.
 *
 * The connections are opened with dial.h's halves, not its blocking dial:
 * one thread serves every sentinel, and a blocking connect or AUTH round
 * trip to one that hangs would keep the others' announcements unread for
 * up to connect_timeout_ms + timeout_ms. The steps are the same (lookup,
 * preparation, setup commands and the rules their replies are judged by);
 * only the waiting is poll(2)'s.
 */
#include "redis/route/sentinel_watch.h"

#include "clock.h"
#include "error.h"
#include "redis/wire/dial.h"
#include "redis/wire/io.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The announcements followed: the leader's "+promoted-slave" (the promoted
 * replica reported itself master; from then on the sentinels name it to
 * whoever asks), and every sentinel's "+switch-master" (the switch made in
 * its configuration). */
#define SWITCHED "+switch-master"
#define PROMOTED "+promoted-slave"
/* Pauses before a sentinel is tried again after a failure. */
#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 2000
/* An announcement whose resolve failed (a sentinel or the new master not
 * answering yet) is acted on again this often, this many times. */
#define FOLLOW_RETRY_MS 200
#define FOLLOW_TRIES 10

enum { IDLE, CONNECTING, HANDSHAKE, SUBSCRIBED };

typedef struct watch_conn {
    int state;
    redisContext *c;
    /* IDLE: the next attempt; CONNECTING, HANDSHAKE: the deadline;
     * SUBSCRIBED: the next PING. */
    int64_t due;
    int pause_ms;            /* the pause after the next failure */
    nori__redis_setup setup; /* HANDSHAKE: the setup commands sent before SUBSCRIBE */
    int setup_judged;        /* HANDSHAKE: their replies judged so far */
    int subs_pending;        /* HANDSHAKE: SUBSCRIBE confirmations still to come */
    bool ping_outstanding;   /* SUBSCRIBED */
    int64_t ping_sent;       /* SUBSCRIBED, ping_outstanding: when */
    nori__redis_reply_charge charge;
} watch_conn;

struct nori__sentinel_watch {
    const nori__redis_target *t; /* borrowed */
    nori__sentinel_switch_fn fn;
    void *ud;
    pthread_t thread;
    pid_t pid; /* the process whose thread it is */
    int wake[2];
    _Atomic bool stop;
    /* The thread's alone: */
    watch_conn *conns; /* one per sentinel, t->addrs order */
    struct pollfd *pfd;
    size_t *pfd_conn; /* pfd[k] is conns[pfd_conn[k]]'s (k > 0; pfd[0] is the wake pipe) */
    int live;
    bool subscribed_once;
    int follow;          /* the callback to run: -2 none, -1 a missed switch, else a sentinel */
    char follow_host[256]; /* the announced master */
    int follow_port;
    int follow_tries;    /* left for the announcement being followed */
    int64_t follow_due;  /* when the callback runs again after a failure */
    _Atomic uint64_t live_now, subscriptions, announcements, dropped;
    _Atomic int64_t first_heard_ms, first_followed_ms;
};

static int64_t now_ms(void)
{
    return nori__real_ms();
}

/* How sentinel i is dialled: the sentinel credentials, no database. */
static nori__redis_dial_opts dial_opts(const nori__sentinel_watch *w, size_t i)
{
    const nori__redis_target *t = w->t;
    return (nori__redis_dial_opts){
        .host = t->addrs[i].host,
        .port = t->addrs[i].port,
        .user = t->sentinel_user,
        .password = t->sentinel_password,
        .connect_timeout_ms = t->node.connect_timeout_ms,
        .timeout_ms = t->node.timeout_ms,
    };
}

/* Gives up on connection i: closed, tried again after a pause. */
static void drop(nori__sentinel_watch *w, size_t i)
{
    watch_conn *wc = &w->conns[i];
    if (wc->state == SUBSCRIBED) {
        w->live--;
        atomic_store(&w->live_now, (uint64_t)w->live);
    }
    if (wc->c != NULL)
        redisFree(wc->c);
    wc->c = NULL;
    wc->state = IDLE;
    wc->due = nori__real_ms() + wc->pause_ms;
    wc->pause_ms = wc->pause_ms * 2 < RETRY_MAX_MS ? wc->pause_ms * 2 : RETRY_MAX_MS;
    atomic_fetch_add_explicit(&w->dropped, 1, memory_order_relaxed);
}

/* Starts connecting to sentinel i (the host name's lookup may block the
 * thread up to connect_timeout_ms: resolve.h). */
static void begin(nori__sentinel_watch *w, size_t i)
{
    watch_conn *wc = &w->conns[i];
    nori__redis_dial_opts o = dial_opts(w, i);
    nori__redis_dial_error err;
    wc->c = nori__redis_dial_start(&o, &err);
    if (wc->c == NULL) {
        drop(w, i);
        return;
    }
    wc->state = CONNECTING;
    wc->due = nori__real_ms() + w->t->node.connect_timeout_ms;
}

/* Connected: the setup commands (AUTH when the URL gives a sentinel
 * password) and SUBSCRIBE, in one write. */
static void connected(nori__sentinel_watch *w, size_t i)
{
    watch_conn *wc = &w->conns[i];
    nori__redis_dial_opts o = dial_opts(w, i);
    nori__redis_dial_error err;
    if (nori__redis_dial_finish(wc->c, &o, &wc->setup, &err) != 0) {
        drop(w, i);
        return;
    }
    wc->setup_judged = 0;
    wc->subs_pending = 2;
    const char *sub[] = {"SUBSCRIBE", SWITCHED, PROMOTED};
    int queued = redisAppendCommandArgv(wc->c, 3, sub, NULL);
    int64_t deadline = now_ms() + w->t->node.timeout_ms;
    if (queued != REDIS_OK || nori__redis_io_flush(wc->c, deadline) != 0) {
        drop(w, i);
        return;
    }
    wc->state = HANDSHAKE;
    wc->due = deadline;
    wc->charge = (nori__redis_reply_charge){0, 0};
}

static bool is_str(const redisReply *r, const char *s)
{
    return r->type == REDIS_REPLY_STRING && r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

/*
 * An announcement of a new master for this backend's master name; its
 * address into host (host_size) and *port:
 *   +switch-master  "<name> <old ip> <old port> <new ip> <new port>"
 *   +promoted-slave "slave <ip>:<port> <ip> <port> @ <name> <master ip> <master port>"
 */
static bool announces_ours(const nori__sentinel_watch *w, const redisReply *r, char *host,
                           size_t host_size, int *port)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || !is_str(r->element[0], "message") ||
        r->element[2]->type != REDIS_REPLY_STRING)
        return false;
    const char *text = r->element[2]->str;
    char name[256], addr[256];
    int p;
    if (is_str(r->element[1], SWITCHED)) {
        int old_port;
        char old_host[256];
        if (sscanf(text, "%255s %255s %d %255s %d", name, old_host, &old_port, addr, &p) != 5)
            return false;
    } else if (is_str(r->element[1], PROMOTED)) {
        if (sscanf(text, "slave %*s %255s %d @ %255s", addr, &p, name) != 3)
            return false;
    } else {
        return false;
    }
    if (strcmp(name, w->t->master_name) != 0 || p < 1 || p > 65535)
        return false;
    snprintf(host, host_size, "%s", addr);
    *port = p;
    return true;
}

/* One reply on connection i. false: the connection is to be dropped. */
static bool handle(nori__sentinel_watch *w, size_t i, const redisReply *r)
{
    watch_conn *wc = &w->conns[i];
    if (wc->state == HANDSHAKE) {
        if (wc->setup_judged < wc->setup.n) {
            nori__redis_dial_error err;
            return nori__redis_setup_judge(&wc->setup, wc->setup_judged++, r, &err) == 0;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || !is_str(r->element[0], "subscribe"))
            return false;
        if (--wc->subs_pending > 0)
            return true;
        wc->state = SUBSCRIBED;
        wc->due = nori__real_ms() + NORI_SENTINEL_WATCH_BEAT_MS;
        wc->ping_outstanding = false;
        wc->pause_ms = RETRY_MIN_MS;
        atomic_fetch_add_explicit(&w->subscriptions, 1, memory_order_relaxed);
        /* No subscription was live: a switch announced meanwhile was not
         * heard. (The first ones follow the resolve that started us.) */
        if (w->live == 0 && w->subscribed_once && w->follow == -2)
            w->follow = -1;
        w->subscribed_once = true;
        w->live++;
        atomic_store(&w->live_now, (uint64_t)w->live);
        return true;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 && is_str(r->element[0], "pong")) {
        wc->ping_outstanding = false;
    } else if (announces_ours(w, r, w->follow_host, sizeof w->follow_host, &w->follow_port)) {
        atomic_fetch_add_explicit(&w->announcements, 1, memory_order_relaxed);
        int64_t zero = 0;
        atomic_compare_exchange_strong(&w->first_heard_ms, &zero, nori__real_ms());
        w->follow = (int)i;
        w->follow_tries = FOLLOW_TRIES;
        w->follow_due = 0;
    }
    return true; /* other messages: another master's, say */
}

/* Connection i's socket is ready. */
static void ready(nori__sentinel_watch *w, size_t i)
{
    watch_conn *wc = &w->conns[i];
    if (wc->state == CONNECTING) {
        connected(w, i);
        return;
    }
    if (redisBufferRead(wc->c) != REDIS_OK) {
        drop(w, i); /* EOF (a sentinel restarted, CLIENT KILL) or an I/O error */
        return;
    }
    for (;;) {
        void *reply = NULL;
        if (nori__redis_io_next_reply(wc->c, &nori__redis_small_replies, &wc->charge, &reply) !=
            0) {
            drop(w, i);
            return;
        }
        if (reply == NULL)
            return;
        bool ok = handle(w, i, reply);
        freeReplyObject(reply);
        if (!ok) {
            drop(w, i);
            return;
        }
    }
}

/* When connection i next needs the thread: its deadline, its next PING,
 * or the end of the wait for its PONG. */
static int64_t next_due(const watch_conn *wc)
{
    if (wc->state == SUBSCRIBED && wc->ping_outstanding)
        return wc->ping_sent + NORI_SENTINEL_WATCH_STALL_MS;
    return wc->due;
}

/* Deadlines and heartbeats of connection i. */
static void on_time(nori__sentinel_watch *w, size_t i, int64_t now)
{
    watch_conn *wc = &w->conns[i];
    if (wc->state == IDLE || now < next_due(wc))
        return;
    if (wc->state != SUBSCRIBED || wc->ping_outstanding) {
        drop(w, i); /* connect or handshake too slow, or a PING unanswered: stalled */
        return;
    }
    if (redisAppendCommand(wc->c, "PING") != REDIS_OK ||
        nori__redis_io_flush(wc->c, now + w->t->node.timeout_ms) != 0) {
        drop(w, i);
        return;
    }
    wc->ping_outstanding = true;
    wc->ping_sent = now;
    wc->due = now + NORI_SENTINEL_WATCH_BEAT_MS; /* the next PING, once this one is answered */
}

/* Runs the callback that is due. */
static void follow(nori__sentinel_watch *w)
{
    if (w->follow == -2 || nori__real_ms() < w->follow_due)
        return;
    int sentinel = w->follow;
    w->follow = -2;
    if (w->fn(w->ud, sentinel, sentinel >= 0 ? w->follow_host : NULL, w->follow_port)) {
        int64_t zero = 0;
        if (sentinel >= 0)
            atomic_compare_exchange_strong(&w->first_followed_ms, &zero, nori__real_ms());
        return;
    }
    if (sentinel >= 0 && --w->follow_tries > 0) {
        w->follow = sentinel; /* again shortly, until it is followed */
        w->follow_due = nori__real_ms() + FOLLOW_RETRY_MS;
    }
}

static void *watch_main(void *arg)
{
    nori__sentinel_watch *w = arg;
    size_t n = w->t->naddrs;
    while (!atomic_load(&w->stop)) {
        int64_t now = nori__real_ms();
        for (size_t i = 0; i < n && !atomic_load(&w->stop); i++)
            if (w->conns[i].state == IDLE && now >= w->conns[i].due)
                begin(w, i);
        now = nori__real_ms();
        for (size_t i = 0; i < n; i++)
            on_time(w, i, now);
        follow(w);
        now = nori__real_ms();
        int64_t next = now + NORI_SENTINEL_WATCH_BEAT_MS;
        if (w->follow != -2 && w->follow_due < next)
            next = w->follow_due;
        size_t k = 1;
        w->pfd[0] = (struct pollfd){.fd = w->wake[0], .events = POLLIN};
        for (size_t i = 0; i < n; i++) {
            watch_conn *wc = &w->conns[i];
            if (next_due(wc) < next)
                next = next_due(wc);
            if (wc->c == NULL)
                continue;
            w->pfd[k] = (struct pollfd){.fd = wc->c->fd,
                                        .events = wc->state == CONNECTING ? POLLOUT : POLLIN};
            w->pfd_conn[k++] = i;
        }
        int64_t wait = next - now;
        int rc = poll(w->pfd, k, wait <= 0 ? 0 : (int)wait);
        if (rc < 0 && errno != EINTR)
            break; /* cannot happen with valid descriptors; never spin */
        for (size_t j = 1; rc > 0 && j < k; j++)
            if (w->pfd[j].revents != 0)
                ready(w, w->pfd_conn[j]);
    }
    return NULL;
}

static void watch_free(nori__sentinel_watch *w)
{
    for (size_t i = 0; w->conns != NULL && i < w->t->naddrs; i++)
        if (w->conns[i].c != NULL)
            redisFree(w->conns[i].c);
    free(w->conns);
    free(w->pfd);
    free(w->pfd_conn);
    free(w);
}

int nori__sentinel_watch_start(const nori__redis_target *t, nori__sentinel_switch_fn fn,
                               void *ud, nori__sentinel_watch **out)
{
    nori__sentinel_watch *w = calloc(1, sizeof *w);
    if (w == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory starting the sentinel watch");
    w->t = t;
    w->fn = fn;
    w->ud = ud;
    w->follow = -2;
    w->conns = calloc(t->naddrs, sizeof *w->conns);
    w->pfd = calloc(t->naddrs + 1, sizeof *w->pfd);
    w->pfd_conn = calloc(t->naddrs + 1, sizeof *w->pfd_conn);
    if (w->conns == NULL || w->pfd == NULL || w->pfd_conn == NULL) {
        watch_free(w);
        return nori__fail(NORI_ENOMEM, "out of memory starting the sentinel watch");
    }
    for (size_t i = 0; i < t->naddrs; i++)
        w->conns[i] = (watch_conn){.state = IDLE, .due = 0, .pause_ms = RETRY_MIN_MS};
    if (pipe2(w->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        int e = errno;
        watch_free(w);
        return nori__fail(NORI_ENOMEM, "redis %s: sentinel watch: pipe: %s", t->display,
                          strerror(e));
    }
    w->pid = getpid();
    int rc = pthread_create(&w->thread, NULL, watch_main, w);
    if (rc != 0) {
        close(w->wake[0]);
        close(w->wake[1]);
        watch_free(w);
        return nori__fail(NORI_ENOMEM, "redis %s: cannot start the sentinel watch thread: %s",
                          t->display, strerror(rc));
    }
    *out = w;
    return NORI_OK;
}

void nori__sentinel_watch_stop(nori__sentinel_watch *w)
{
    if (w == NULL)
        return;
    if (nori__sentinel_watch_here(w)) {
        atomic_store(&w->stop, true);
        ssize_t wr = write(w->wake[1], "x", 1);
        (void)wr; /* a full pipe wakes the thread as well */
        pthread_join(w->thread, NULL);
    }
    close(w->wake[0]);
    close(w->wake[1]);
    watch_free(w);
}

bool nori__sentinel_watch_here(const nori__sentinel_watch *w)
{
    return w->pid == getpid();
}

void nori__sentinel_watch_get_stats(const nori__sentinel_watch *w, nori__sentinel_watch_stats *out)
{
    out->live = atomic_load(&w->live_now);
    out->subscriptions = atomic_load(&w->subscriptions);
    out->announcements = atomic_load(&w->announcements);
    out->dropped = atomic_load(&w->dropped);
    out->first_heard_ms = atomic_load(&w->first_heard_ms);
    out->first_followed_ms = atomic_load(&w->first_followed_ms);
}
