// SPDX-License-Identifier: MIT
/*
 * The near cache's invalidation listener (see listener.h).
 *
 * One thread owns both of its hiredis contexts (the subscribed one and the
 * control one), so no context is ever shared. Both are opened like the
 * backend's (redis/wire/dial.h: the host name's lookup bounded, non-blocking
 * socket, bounded reader, keepalive, AUTH, SELECT), and every command runs
 * under a deadline. The subscribed connection is driven by
 * poll(): its timeout is the time left to the next heartbeat, and a pipe
 * wakes it for stop.
 */
#include "redis/near/listener.h"

#include "clock.h"
#include "redis/near/db_id.h"
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

void (*_Atomic nori__near_test_before_message)(void);

/* Pause between two connection attempts. */
#define RECONNECT_PAUSE_MS 100

struct nori__near_listener {
    nori__near *near; /* borrowed */
    char *host, *unix_path, *user, *password, *display, *prefix;
    char *db_key; /* prefix + NORI_NEAR_DB_ID_KEY */
    size_t prefix_len;
    int port;
    int db;
    int connect_timeout_ms;
    int heartbeat_ms;

    pthread_t thread;
    int wake[2]; /* the stop call writes to wake[1] */
    _Atomic bool stop;

    pthread_mutex_t lock; /* guards client_id changes' broadcast and the registry */
    pthread_cond_t changed;
    _Atomic uint64_t client_id;
    uint64_t *tracked; /* CLIENT IDs of data connections with tracking on */
    size_t ntracked, cap;

    _Atomic uint64_t connects, messages, pings;
    _Atomic int db_state; /* the session's nori__near_db_id_state; -1 between sessions */

    bool check_role;
    void (*on_not_master)(void *ud);
    void *ud;
    bool demoted; /* listener thread only: the last session found a replica */
};

static char *dup_or_null(const char *s, bool *failed)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *failed = true;
    return d;
}

/* ---- connections ---- */

/* One command under a deadline of timeout_ms, with small bounded replies;
 * NULL on failure (the context is then dead). */
static redisReply *command(redisContext *c, int timeout_ms, int argc, const char **argv)
{
    return nori__redis_io_command(c, nori__real_ms() + timeout_ms,
                                  &nori__redis_small_replies, argc, argv, NULL);
}

/* A connection opened by dial.h, whose setup commands run under deadlines
 * of `timeout_ms`, or NULL. SELECT of the data connections' database: the
 * marker (db_id.h) lives there; harmless on the subscribed connection
 * (invalidations are not per database). With check_role a server that is
 * not the master sets *not_master (else clear). Called by the listener
 * thread only. */
static redisContext *connect_ctx(nori__near_listener *l, int timeout_ms, bool check_role,
                                 bool *not_master)
{
    nori__redis_dial_opts o = {
        .host = l->host,
        .port = l->port,
        .unix_path = l->unix_path,
        .user = l->user,
        .password = l->password,
        .db = l->db,
        .connect_timeout_ms = l->connect_timeout_ms,
        .timeout_ms = timeout_ms,
        .check_role = check_role,
    };
    nori__redis_dial_error err;
    redisContext *c = nori__redis_dial(&o, &err);
    if (not_master != NULL)
        *not_master = c == NULL && err.not_master;
    return c;
}

/* Sends what is queued on c before timeout_ms. 0 or -1 (c is then dead). */
static int flush_output(redisContext *c, int timeout_ms)
{
    return nori__redis_io_flush(c, nori__real_ms() + timeout_ms);
}

/* ---- the registry of tracked data connections ---- */

bool nori__near_listener_track(nori__near_listener *l, uint64_t client_id, uint64_t redirect_id)
{
    bool ok = false;
    pthread_mutex_lock(&l->lock);
    if (redirect_id != 0 && atomic_load(&l->client_id) == redirect_id) {
        ok = true;
        for (size_t i = 0; i < l->ntracked; i++)
            if (l->tracked[i] == client_id)
                goto out;
        if (l->ntracked == l->cap) {
            size_t cap = l->cap != 0 ? l->cap * 2 : 16;
            uint64_t *t = realloc(l->tracked, cap * sizeof *t);
            if (t == NULL) {
                ok = false; /* unverifiable: its replies must not be kept */
                goto out;
            }
            l->tracked = t;
            l->cap = cap;
        }
        l->tracked[l->ntracked++] = client_id;
    }
out:
    pthread_mutex_unlock(&l->lock);
    return ok;
}

/* Called with l->lock held. */
static void do_untrack(nori__near_listener *l, uint64_t client_id)
{
    for (size_t i = 0; i < l->ntracked; i++) {
        if (l->tracked[i] == client_id) {
            l->tracked[i] = l->tracked[--l->ntracked];
            return;
        }
    }
}

void nori__near_listener_untrack(nori__near_listener *l, uint64_t client_id)
{
    pthread_mutex_lock(&l->lock);
    do_untrack(l, client_id);
    pthread_mutex_unlock(&l->lock);
}

/* Reads "name=value" from one CLIENT LIST line into buf; false if absent. */
static bool client_field(const char *line, const char *end, const char *name, char *buf,
                         size_t size)
{
    size_t nl = strlen(name);
    for (const char *p = line; p + nl + 1 <= end; p++) {
        if ((p == line || p[-1] == ' ') && memcmp(p, name, nl) == 0 && p[nl] == '=') {
            p += nl + 1;
            size_t n = 0;
            while (p < end && *p != ' ' && n + 1 < size)
                buf[n++] = *p++;
            buf[n] = '\0';
            return true;
        }
    }
    return false;
}

/*
 * Checks on the control connection that every registered data connection
 * still exists with tracking on and a working redirect. Returns 0 when all
 * are fine, or the flush cause to apply.
 */
static int check_tracked(nori__near_listener *l, redisContext **control)
{
    pthread_mutex_lock(&l->lock);
    size_t n = l->ntracked;
    uint64_t *ids = n != 0 ? malloc(n * sizeof *ids) : NULL;
    if (ids != NULL)
        memcpy(ids, l->tracked, n * sizeof *ids);
    pthread_mutex_unlock(&l->lock);
    if (n == 0)
        return 0;
    if (ids == NULL)
        return NORI__NEAR_FLUSH_TRACKING_LOST; /* cannot verify */
    int cause = 0;
    const char **argv = malloc((n + 3) * sizeof *argv);
    char(*texts)[24] = malloc(n * sizeof *texts);
    bool *seen = calloc(n, sizeof *seen);
    redisReply *r = NULL;
    if (argv == NULL || texts == NULL || seen == NULL) {
        cause = NORI__NEAR_FLUSH_TRACKING_LOST;
        goto out;
    }
    if (*control == NULL)
        *control = connect_ctx(l, l->heartbeat_ms, false, NULL);
    if (*control == NULL) {
        cause = NORI__NEAR_FLUSH_HEARTBEAT;
        goto out;
    }
    argv[0] = "CLIENT";
    argv[1] = "LIST";
    argv[2] = "ID";
    for (size_t i = 0; i < n; i++) {
        snprintf(texts[i], sizeof texts[i], "%llu", (unsigned long long)ids[i]);
        argv[i + 3] = texts[i];
    }
    r = command(*control, l->heartbeat_ms, (int)(n + 3), argv);
    if (r == NULL || r->type != REDIS_REPLY_STRING) {
        if (r == NULL || (*control)->err != 0) {
            redisFree(*control);
            *control = NULL;
        }
        cause = NORI__NEAR_FLUSH_HEARTBEAT;
        goto out;
    }
    for (const char *line = r->str, *stop = r->str + r->len; line < stop;) {
        const char *end = memchr(line, '\n', (size_t)(stop - line));
        if (end == NULL)
            end = stop;
        char id[24], flags[64];
        if (client_field(line, end, "id", id, sizeof id) &&
            client_field(line, end, "flags", flags, sizeof flags) && strchr(flags, 't') != NULL &&
            strchr(flags, 'R') == NULL) {
            unsigned long long v = strtoull(id, NULL, 10);
            for (size_t i = 0; i < n; i++)
                if (ids[i] == v)
                    seen[i] = true;
        }
        line = end + 1;
    }
    /* A connection unregistered meanwhile (closed on purpose) is no loss. */
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < n; i++) {
        if (seen[i])
            continue;
        for (size_t j = 0; j < l->ntracked; j++) {
            if (l->tracked[j] == ids[i]) {
                cause = NORI__NEAR_FLUSH_TRACKING_LOST;
                break;
            }
        }
    }
    pthread_mutex_unlock(&l->lock);
out:
    if (r != NULL)
        freeReplyObject(r);
    free(argv);
    free(texts);
    free(seen);
    free(ids);
    return cause;
}

/* ---- the node's role (Sentinel) ---- */

/* The node turned out not to be a master: tell the owner (once per
 * session; sessions are heartbeat_ms apart while it stays so). */
static void not_master(nori__near_listener *l)
{
    l->demoted = true;
    if (l->on_not_master != NULL)
        l->on_not_master(l->ud);
}

/* Every NORI_NEAR_ROLE_BEATS heartbeats, on the control connection: 0, or
 * the flush cause (not a master: topology; no answer: heartbeat). */
static int check_role(nori__near_listener *l, redisContext **control, unsigned beat)
{
    if (!l->check_role || beat % NORI_NEAR_ROLE_BEATS != 0)
        return 0;
    if (*control == NULL)
        *control = connect_ctx(l, l->heartbeat_ms, false, NULL);
    if (*control == NULL)
        return NORI__NEAR_FLUSH_HEARTBEAT;
    nori__redis_dial_error err;
    int role = nori__redis_confirm_master(*control, l->heartbeat_ms, &err);
    if (role < 0) {
        redisFree(*control);
        *control = NULL;
        return NORI__NEAR_FLUSH_HEARTBEAT;
    }
    if (role > 0) {
        not_master(l);
        return NORI__NEAR_FLUSH_TOPOLOGY;
    }
    return 0;
}

/* ---- the database's identity (db_id.h) ---- */

/* At each heartbeat, on the control connection: 0, or the flush cause when
 * the check could not be made (no answer: heartbeat). A changed marker
 * flushes the store here (db_changed) without ending the session: tracking
 * itself is intact. */
static int check_db_id(nori__near_listener *l, redisContext **control, nori__near_db_id *id)
{
    if (id->state == NORI__DB_ID_OFF)
        return 0;
    if (*control == NULL)
        *control = connect_ctx(l, l->heartbeat_ms, false, NULL);
    if (*control == NULL)
        return NORI__NEAR_FLUSH_HEARTBEAT;
    nori__near_db_id_result r =
        nori__near_db_id_check(id, *control, l->db_key, l->heartbeat_ms, false);
    atomic_store(&l->db_state, (int)id->state);
    if (r == NORI__DB_ID_NO_REPLY) {
        redisFree(*control);
        *control = NULL;
        return NORI__NEAR_FLUSH_HEARTBEAT;
    }
    if (r == NORI__DB_ID_CHANGED)
        nori__near_flush(l->near, NORI__NEAR_FLUSH_DB_CHANGED);
    return 0;
}

/* ---- the subscribed connection ---- */

static bool is_str(const redisReply *r, const char *s)
{
    return r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
           r->len == strlen(s) && strncasecmp(r->str, s, r->len) == 0;
}

static void invalidate_key(nori__near_listener *l, const redisReply *k)
{
    if (k->type != REDIS_REPLY_STRING || k->len < l->prefix_len ||
        memcmp(k->str, l->prefix, l->prefix_len) != 0)
        return; /* not one of this cache's keys */
    nori__near_invalidate(l->near, k->str + l->prefix_len, k->len - l->prefix_len);
}

/* Handles one reply on the subscribed connection; sets *pong on a PING's. */
static void handle_reply(nori__near_listener *l, const redisReply *r, bool *pong)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1)
        return;
    if (is_str(r->element[0], "pong")) {
        *pong = true;
        return;
    }
    if (!is_str(r->element[0], "message") || r->elements != 3)
        return; /* subscribe confirmations */
    void (*hook)(void) = nori__near_test_before_message;
    if (hook != NULL)
        hook();
    atomic_fetch_add_explicit(&l->messages, 1, memory_order_relaxed);
    const redisReply *payload = r->element[2];
    if (payload->type == REDIS_REPLY_NIL) {
        nori__near_flush(l->near, NORI__NEAR_FLUSH_SERVER);
    } else if (payload->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < payload->elements; i++)
            invalidate_key(l, payload->element[i]);
    } else {
        invalidate_key(l, payload);
    }
}

/* Sleeps up to ms unless stop is asked. Returns true when stopping. */
static bool pause_or_stop(nori__near_listener *l, int ms)
{
    struct pollfd p = {l->wake[0], POLLIN, 0};
    if (!atomic_load(&l->stop))
        (void)poll(&p, 1, ms);
    return atomic_load(&l->stop);
}

static void publish_id(nori__near_listener *l, uint64_t id)
{
    pthread_mutex_lock(&l->lock);
    atomic_store(&l->client_id, id);
    if (id == 0)
        l->ntracked = 0; /* their redirect pointed at the old connection */
    pthread_cond_broadcast(&l->changed);
    pthread_mutex_unlock(&l->lock);
}

/*
 * One subscription's life: connect, subscribe, prove, then read until the
 * connection is lost or stop is asked. Returns the flush cause of the loss
 * (the store was made active), or -1 when it never became active / stopped
 * before.
 */
static int run_session(nori__near_listener *l)
{
    /* A replica is never proved: reads from it would be kept while the
     * writes go to the new master. */
    bool replica = false;
    redisContext *c = connect_ctx(l, l->heartbeat_ms, l->check_role, &replica);
    if (replica)
        not_master(l);
    if (c == NULL)
        return -1;
    redisContext *control = NULL;
    int cause = -1;
    const char *client_id[] = {"CLIENT", "ID"};
    redisReply *r = command(c, l->heartbeat_ms, 2, client_id);
    uint64_t id = r != NULL && r->type == REDIS_REPLY_INTEGER ? (uint64_t)r->integer : 0;
    if (r != NULL)
        freeReplyObject(r);
    if (id == 0)
        goto out;
    const char *subscribe[] = {"SUBSCRIBE", "__redis__:invalidate"};
    r = command(c, l->heartbeat_ms, 2, subscribe);
    bool subscribed = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
                      is_str(r->element[0], "subscribe");
    if (r != NULL)
        freeReplyObject(r);
    if (!subscribed)
        goto out;
    /* The database's marker, read before tracking is proved: every fill of
     * this session begins after it, so a swap after it is the next
     * heartbeat's to find (db_id.h). */
    nori__near_db_id db_id;
    control = connect_ctx(l, l->heartbeat_ms, false, NULL);
    if (control == NULL ||
        nori__near_db_id_check(&db_id, control, l->db_key, l->heartbeat_ms, true) ==
            NORI__DB_ID_NO_REPLY)
        goto out;
    atomic_store(&l->db_state, (int)db_id.state);

    /* Proved: from here on every change to a key read by a connection that
     * redirects to `id` reaches this socket. */
    atomic_fetch_add(&l->connects, 1);
    nori__near_set_active(l->near, true, NORI__NEAR_FLUSH_LISTENER_LOST);
    publish_id(l, id);
    cause = NORI__NEAR_FLUSH_LISTENER_LOST;
    bool ping_outstanding = false;
    unsigned beat = 0;
    nori__redis_reply_charge charge = {0, 0};
    int64_t next_beat = nori__real_ms() + l->heartbeat_ms;
    while (!atomic_load(&l->stop)) {
        /* Read first, then judge the heartbeat: a listener thread that was
         * not scheduled for a while must see a PONG already in its socket
         * before it calls the PING missed. */
        struct pollfd p[2] = {{c->fd, POLLIN, 0}, {l->wake[0], POLLIN, 0}};
        int pr = poll(p, 2, nori__poll_ms(next_beat));
        if (pr < 0 && errno != EINTR)
            break;
        if (pr > 0 && (p[0].revents & (POLLIN | POLLERR | POLLHUP)) != 0) {
            if (redisBufferRead(c) != REDIS_OK)
                break; /* EOF (CLIENT KILL, restart) or an I/O error */
            for (;;) {
                void *reply = NULL;
                /* Bounded as every round trip's replies are: a server
                 * pushing a huge message must not make us buffer it. */
                if (nori__redis_io_next_reply(c, &nori__redis_small_replies, &charge, &reply) !=
                    0)
                    goto out;
                if (reply == NULL)
                    break;
                bool pong = false;
                handle_reply(l, reply, &pong);
                if (pong)
                    ping_outstanding = false;
                freeReplyObject(reply);
            }
        }
        if (nori__real_ms() < next_beat)
            continue;
        if (ping_outstanding) {
            cause = NORI__NEAR_FLUSH_HEARTBEAT;
            break;
        }
        if (redisAppendCommand(c, "PING") != REDIS_OK || flush_output(c, l->heartbeat_ms) != 0)
            break;
        ping_outstanding = true;
        atomic_fetch_add_explicit(&l->pings, 1, memory_order_relaxed);
        int lost = check_tracked(l, &control);
        if (lost == 0)
            lost = check_role(l, &control, ++beat);
        if (lost == 0)
            lost = check_db_id(l, &control, &db_id);
        if (lost != 0) {
            cause = lost;
            break;
        }
        next_beat = nori__real_ms() + l->heartbeat_ms;
    }
out:
    atomic_store(&l->db_state, -1);
    if (atomic_load(&l->stop) && cause != -1)
        cause = NORI__NEAR_FLUSH_LISTENER_LOST;
    if (control != NULL)
        redisFree(control);
    redisFree(c);
    return cause;
}

static void *listener_main(void *arg)
{
    nori__near_listener *l = arg;
    while (!atomic_load(&l->stop)) {
        int cause = run_session(l);
        /* Withdraw the id first, then flush: a read that took the old id
         * and began its fill after the flush finds the id changed when its
         * reply is in (client.c), and one that began before finds the epoch
         * bumped. The other order left a window on a cluster, where the
         * store stays active while other nodes' listeners are proved. */
        publish_id(l, 0);
        if (cause >= 0)
            nori__near_set_active(l->near, false, (nori__near_flush_cause)cause);
        /* A replica is asked again at the pace of the ROLE checks (2 s by
         * default), not hammered: it may stay one for good. */
        int pause = l->demoted ? l->heartbeat_ms * NORI_NEAR_ROLE_BEATS : RECONNECT_PAUSE_MS;
        l->demoted = false;
        if (pause_or_stop(l, pause))
            break;
    }
    return NULL;
}

/* ---- lifecycle ---- */

static void listener_free(nori__near_listener *l)
{
    free(l->host);
    free(l->unix_path);
    free(l->user);
    free(l->password);
    free(l->display);
    free(l->prefix);
    free(l->db_key);
    free(l->tracked);
    free(l);
}

int nori__near_listener_start(nori__near *n, const nori__near_listener_config *cfg,
                              nori__near_listener **out)
{
    if (n == NULL || cfg == NULL || out == NULL || (cfg->host == NULL) == (cfg->unix_path == NULL) ||
        cfg->connect_timeout_ms <= 0 || cfg->heartbeat_ms < 0 || cfg->key_prefix == NULL)
        return nori__fail(NORI_EINVAL, "near cache listener: bad configuration");
    nori__near_listener *l = calloc(1, sizeof *l);
    if (l == NULL)
        return nori__fail(NORI_ENOMEM, "near cache listener: out of memory");
    bool failed = false;
    l->near = n;
    l->host = dup_or_null(cfg->host, &failed);
    l->unix_path = dup_or_null(cfg->unix_path, &failed);
    l->user = dup_or_null(cfg->user, &failed);
    l->password = dup_or_null(cfg->password, &failed);
    l->display = dup_or_null(cfg->display != NULL ? cfg->display : "redis", &failed);
    l->prefix = dup_or_null(cfg->key_prefix, &failed);
    if (failed) {
        listener_free(l);
        return nori__fail(NORI_ENOMEM, "near cache listener: out of memory");
    }
    l->prefix_len = strlen(l->prefix);
    size_t klen = l->prefix_len + sizeof NORI_NEAR_DB_ID_KEY;
    l->db_key = malloc(klen);
    if (l->db_key == NULL) {
        listener_free(l);
        return nori__fail(NORI_ENOMEM, "near cache listener: out of memory");
    }
    snprintf(l->db_key, klen, "%s%s", l->prefix, NORI_NEAR_DB_ID_KEY);
    l->port = cfg->port;
    l->db = cfg->db;
    atomic_init(&l->db_state, -1);
    l->connect_timeout_ms = cfg->connect_timeout_ms;
    l->heartbeat_ms = cfg->heartbeat_ms != 0 ? cfg->heartbeat_ms : NORI_NEAR_DEFAULT_HEARTBEAT_MS;
    l->check_role = cfg->check_role;
    l->on_not_master = cfg->on_not_master;
    l->ud = cfg->ud;
    if (pipe2(l->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        int e = errno;
        listener_free(l);
        return nori__fail(NORI_ENOMEM, "near cache listener: pipe: %s", strerror(e));
    }
    pthread_mutex_init(&l->lock, NULL);
    nori__cond_init(&l->changed);
    int rc = pthread_create(&l->thread, NULL, listener_main, l);
    if (rc != 0) {
        close(l->wake[0]);
        close(l->wake[1]);
        pthread_cond_destroy(&l->changed);
        pthread_mutex_destroy(&l->lock);
        listener_free(l);
        return nori__fail(NORI_ENOMEM, "near cache listener: cannot start its thread: %s",
                          strerror(rc));
    }
    *out = l;
    return NORI_OK;
}

void nori__near_listener_stop(nori__near_listener *l)
{
    if (l == NULL)
        return;
    atomic_store(&l->stop, true);
    ssize_t w = write(l->wake[1], "x", 1);
    (void)w; /* a full pipe already wakes the thread */
    /* The thread deactivated (and flushed) what it had activated before it
     * ended: set_active calls are counted per listener. */
    pthread_join(l->thread, NULL);
    close(l->wake[0]);
    close(l->wake[1]);
    pthread_cond_destroy(&l->changed);
    pthread_mutex_destroy(&l->lock);
    listener_free(l);
}

uint64_t nori__near_listener_client_id(nori__near_listener *l)
{
    return atomic_load(&l->client_id);
}

uint64_t nori__near_listener_wait_active(nori__near_listener *l, int timeout_ms)
{
    int64_t deadline = nori__real_ms() + timeout_ms; /* the listener connects: real time */
    pthread_mutex_lock(&l->lock);
    uint64_t id;
    while ((id = atomic_load(&l->client_id)) == 0)
        if (nori__real_cond_wait_until(&l->changed, &l->lock, deadline) != 0)
            break;
    id = atomic_load(&l->client_id);
    pthread_mutex_unlock(&l->lock);
    return id;
}

void nori__near_listener_get_stats(nori__near_listener *l, nori__near_listener_stats *out)
{
    out->connects = atomic_load(&l->connects);
    out->messages = atomic_load(&l->messages);
    out->pings = atomic_load(&l->pings);
    int db = atomic_load(&l->db_state);
    out->db_unchecked = db >= 0 && db != NORI__DB_ID_KNOWN ? 1 : 0;
    pthread_mutex_lock(&l->lock);
    out->tracked = l->ntracked;
    pthread_mutex_unlock(&l->lock);
}
