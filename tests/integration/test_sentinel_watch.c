// SPDX-License-Identifier: MIT
/*
 * Following the sentinels' announcements (sentinel_watch.h): a switch
 * announced with +switch-master is followed at once, by a watch that keeps
 * following sentinels that stall, hang up or fall silent; a connection idle
 * for a while confirms with ROLE that its server is still the master (fake
 * sentinels and masters, tests/support/fake_redis.h); and a planned failover
 * (SENTINEL FAILOVER, the old master kept up) under load loses no write
 * acknowledged after the announcement + 1 s (a real master, replica and 3
 * sentinels).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis/route/sentinel_watch.h"
#include "redis/internal.h"
#include "fake_redis.h"
#include "redis_cluster.h"
#include "test_support.h"

#include <hiredis/hiredis.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PASSWORD "s3cret-pw"
#define ROLE_MASTER "*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"

static void addr_reply(char *buf, size_t size, int port)
{
    snprintf(buf, size, "*2\r\n$9\r\n127.0.0.1\r\n$%d\r\n%d\r\n",
             (int)snprintf(NULL, 0, "%d", port), port);
}

/* ---- following the sentinels' announcements (scripted sentinels) ---- */

#define SUBSCRIBED                                                                                 \
    "*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n"                                   \
    "*3\r\n$9\r\nsubscribe\r\n$15\r\n+promoted-slave\r\n:2\r\n"
#define PONG "*2\r\n$4\r\npong\r\n$0\r\n\r\n"
#define ROLE_REPLICA                                                                               \
    "*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6379\r\n$9\r\nconnected\r\n:0\r\n"

/* The fakes answer at once, but a loaded machine may not schedule their
 * thread for a while: calls get generous timeouts (the subject here is the
 * watch, not the deadlines), which is also how long a SUBSCRIBE that never
 * gets its answer is waited for. */
#define SLACK_MS 3000
#define SLACK "?timeout_ms=3000&connect_timeout_ms=3000"

/* A scripted sentinel that names m1 once (m1 NULL: never), then m2, and
 * answers the watch. */
static nori_fake_redis *fake_sentinel(nori_fake_redis *m1, nori_fake_redis *m2)
{
    nori_fake_redis *sent = nori_fake_redis_start();
    char a1[128], a2[128];
    addr_reply(a2, sizeof a2, nori_fake_redis_port(m2));
    if (m1 != NULL) {
        addr_reply(a1, sizeof a1, nori_fake_redis_port(m1));
        nori_fake_redis_reply(sent, "SENTINEL GET-MASTER-ADDR-BY-NAME", a1);
    }
    nori_fake_redis_default(sent, "SENTINEL GET-MASTER-ADDR-BY-NAME", a2);
    nori_fake_redis_default(sent, "SUBSCRIBE", SUBSCRIBED);
    nori_fake_redis_default(sent, "PING", PONG);
    return sent;
}

/* Two masters that both say so and both take writes: the old master kept
 * up by a planned failover. */
static void fake_masters(nori_fake_redis **m1, nori_fake_redis **m2)
{
    *m1 = nori_fake_redis_start();
    *m2 = nori_fake_redis_start();
    nori_fake_redis *m[2] = {*m1, *m2};
    for (int i = 0; i < 2; i++) {
        nori_fake_redis_default(m[i], "ROLE", ROLE_MASTER);
        nori_fake_redis_default(m[i], "SET", "+OK\r\n");
    }
}

/* The next PING the sentinel answers brings an announcement first (a
 * message pushed on the subscribed connection): "+switch-master mymaster
 * <old> <new>", or the leader's "+promoted-slave slave <new> @ mymaster
 * <old>". */
static void announce(nori_fake_redis *sent, const char *channel, int old_port, int new_port)
{
    char payload[160], reply[320];
    int n = strcmp(channel, "+switch-master") == 0
                ? snprintf(payload, sizeof payload, "mymaster 127.0.0.1 %d 127.0.0.1 %d", old_port,
                           new_port)
                : snprintf(payload, sizeof payload,
                           "slave 127.0.0.1:%d 127.0.0.1 %d @ mymaster 127.0.0.1 %d", new_port,
                           new_port, old_port);
    snprintf(reply, sizeof reply, "*3\r\n$7\r\nmessage\r\n$%zu\r\n%s\r\n$%d\r\n%s\r\n" PONG,
             strlen(channel), channel, n, payload);
    nori_fake_redis_reply(sent, "PING", reply);
}

/* Waits (bounded) until fake f has received `n` commands named cmd. */
static bool wait_count(nori_fake_redis *f, const char *cmd, int n, int bound_ms)
{
    long long until = nori_test_now_ms() + bound_ms;
    while (nori_fake_redis_count(f, cmd) < n) {
        if (nori_test_now_ms() > until)
            return false;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return true;
}

/* Sets until one lands on `m` (bounded): true when it did. */
static bool sets_reach(nori_backend *b, nori_fake_redis *m, int bound_ms)
{
    long long until = nori_test_now_ms() + bound_ms;
    int before = nori_fake_redis_count(m, "SET");
    while (nori_test_now_ms() < until) {
        assert_nori(nori_backend_set(b, "k", "v", 1, 0), NORI_OK);
        if (nori_fake_redis_count(m, "SET") > before)
            return true;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return false;
}

/* Two fake masters (m1 the master) and a sentinel naming m1, and a backend
 * on that sentinel; watched_stop stops the three. */
static nori_backend *watched_open(nori_fake_redis **m1, nori_fake_redis **m2,
                                  nori_fake_redis **sent)
{
    fake_masters(m1, m2);
    *sent = fake_sentinel(*m1, *m2);
    char url[200];
    snprintf(url, sizeof url, "redis+sentinel://127.0.0.1:%d/mymaster" SLACK,
             nori_fake_redis_port(*sent));
    nori_backend *b;
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    return b;
}

static void watched_stop(nori_fake_redis *sent, nori_fake_redis *m1, nori_fake_redis *m2)
{
    nori_fake_redis_stop(sent);
    nori_fake_redis_stop(m1);
    nori_fake_redis_stop(m2);
}

/*
 * A switch announced on the subscribed connection is followed at once: the
 * sentinels are asked again, the new master checked with ROLE, and writes
 * go there although the old master still says it is one and takes writes
 * (before, they kept going to the old master until it answered READONLY).
 */
static void test_watch_follows_announcement(void **state)
{
    (void)state;
    nori_fake_redis *m1, *m2, *sent;
    nori_backend *b = watched_open(&m1, &m2, &sent);
    assert_nori(nori_backend_set(b, "k", "v", 1, 0), NORI_OK);
    assert_int_equal(nori_fake_redis_count(m1, "SET"), 1);
    assert_true(wait_count(sent, "SUBSCRIBE", 1, 5000));
    assert_true(wait_count(sent, "PING", 1, 5000)); /* subscribed: the heartbeat runs */
    int m1_sets = nori_fake_redis_count(m1, "SET");
    announce(sent, "+switch-master", nori_fake_redis_port(m1), nori_fake_redis_port(m2));
    /* Heard at the next PING (1 s), followed at once. */
    assert_true(wait_count(sent, "SENTINEL GET-MASTER-ADDR-BY-NAME", 2, 5000));
    assert_true(wait_count(m2, "ROLE", 1, 5000));
    assert_true(sets_reach(b, m2, 5000));
    int m1_after = nori_fake_redis_count(m1, "SET");
    for (int i = 0; i < 5; i++)
        assert_nori(nori_backend_set(b, "k", "v", 1, 0), NORI_OK);
    assert_int_equal(nori_fake_redis_count(m1, "SET"), m1_after);
    print_message("writes to the old master after the announcement: %d\n", m1_after - m1_sets);
    long long t0 = nori_test_now_ms();
    nori_backend_free(b);
    assert_true(nori_test_now_ms() - t0 < 2000); /* the watch stops at once */
    watched_stop(sent, m1, m2);
}

/*
 * The watch follows every sentinel on its own: one that stalls (accepts,
 * never answers its SUBSCRIBE) is dropped after timeout_ms and tried again,
 * and the other's announcement (the leader's +promoted-slave) is followed
 * meanwhile; one that hangs up is
 * subscribed again and, since no subscription was live in between (a switch
 * may have been missed), the sentinels are asked again. Freeing the backend
 * does not wait for the stalled one.
 */
static void test_watch_stalled_and_lost_sentinels(void **state)
{
    (void)state;
    nori_fake_redis *m1, *m2;
    fake_masters(&m1, &m2);
    nori_fake_redis *hung = fake_sentinel(m1, m2);
    nori_fake_redis_default(hung, "SUBSCRIBE", NORI_FAKE_STALL);
    nori_fake_redis *sent = fake_sentinel(NULL, m2); /* asked only after its announcement */
    char url[300];
    snprintf(url, sizeof url, "redis+sentinel://127.0.0.1:%d,127.0.0.1:%d/mymaster" SLACK,
             nori_fake_redis_port(hung), nori_fake_redis_port(sent));
    nori_backend *b;
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    assert_nori(nori_backend_set(b, "k", "v", 1, 0), NORI_OK); /* the hung one named m1 */
    assert_int_equal(nori_fake_redis_count(m1, "SET"), 1);
    assert_true(wait_count(sent, "PING", 1, 5000));
    /* Dropped after timeout_ms, tried again. */
    assert_true(wait_count(hung, "SUBSCRIBE", 2, SLACK_MS + 5000));
    announce(sent, "+promoted-slave", nori_fake_redis_port(m1), nori_fake_redis_port(m2));
    assert_true(sets_reach(b, m2, 5000));
    nori_backend_free(b);

    /* A sentinel that hangs up: subscribed again, and asked again. */
    nori_fake_redis *lone = fake_sentinel(m1, m2);
    snprintf(url, sizeof url, "redis+sentinel://127.0.0.1:%d/mymaster" SLACK,
             nori_fake_redis_port(lone));
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    int m1_sets = nori_fake_redis_count(m1, "SET");
    assert_nori(nori_backend_set(b, "k", "v", 1, 0), NORI_OK);
    assert_int_equal(nori_fake_redis_count(m1, "SET"), m1_sets + 1);
    assert_true(wait_count(lone, "SUBSCRIBE", 1, 5000));
    nori_fake_redis_reply(lone, "PING", NORI_FAKE_CLOSE);
    assert_true(wait_count(lone, "SUBSCRIBE", 2, 5000));
    assert_true(wait_count(lone, "SENTINEL GET-MASTER-ADDR-BY-NAME", 2, 5000));
    assert_true(sets_reach(b, m2, 5000));
    long long t0 = nori_test_now_ms();
    nori_backend_free(b);
    assert_true(nori_test_now_ms() - t0 < 2000);
    nori_fake_redis_stop(hung);
    nori_fake_redis_stop(sent);
    nori_fake_redis_stop(lone);
    nori_fake_redis_stop(m1);
    nori_fake_redis_stop(m2);
}

/*
 * A subscribed sentinel that stops answering (its PING unanswered) is
 * dropped after NORI_SENTINEL_WATCH_STALL_MS, not before (a slow sentinel
 * still delivers), subscribed again, and asked again: no subscription was
 * live meanwhile.
 */
static void test_watch_drops_a_silent_sentinel(void **state)
{
    (void)state;
    nori_fake_redis *m1, *m2, *sent;
    nori_backend *b = watched_open(&m1, &m2, &sent);
    assert_nori(nori_backend_set(b, "k", "v", 1, 0), NORI_OK);
    assert_true(wait_count(sent, "PING", 1, 5000));
    long long silent = nori_test_now_ms();
    nori_fake_redis_reply(sent, "PING", NORI_FAKE_STALL);
    assert_true(wait_count(sent, "SUBSCRIBE", 2, NORI_SENTINEL_WATCH_STALL_MS + 5000));
    long long took = nori_test_now_ms() - silent;
    print_message("a silent sentinel was subscribed again %lld ms later\n", took);
    /* The stalled PING was sent at most one beat after `silent`, and waited
     * for STALL_MS: at least that, at most a beat, the reconnect pause and a
     * loaded machine's delay later. */
    assert_true(took >= NORI_SENTINEL_WATCH_STALL_MS - 100);
    assert_true(took < NORI_SENTINEL_WATCH_STALL_MS + NORI_SENTINEL_WATCH_BEAT_MS + 3000);
    assert_true(wait_count(sent, "SENTINEL GET-MASTER-ADDR-BY-NAME", 2, 5000));
    assert_true(sets_reach(b, m2, 5000));
    nori_backend_free(b);
    watched_stop(sent, m1, m2);
}

/*
 * A connection idle for more than NORI_REDIS_ROLE_IDLE_MS confirms with ROLE
 * that its server is still the master before it is used: a master demoted
 * without a word (no announcement heard, no connection closed) is left for
 * the one the sentinels name. Before, the write went to the demoted server.
 */
static void test_idle_connection_confirms_role(void **state)
{
    (void)state;
    nori_fake_redis *m1, *m2, *sent;
    nori_backend *b = watched_open(&m1, &m2, &sent);
    assert_nori(nori_backend_set(b, "k", "v", 1, 0), NORI_OK);
    assert_int_equal(nori_fake_redis_count(m1, "SET"), 1);
    int roles = nori_fake_redis_count(m1, "ROLE");
    /* Used again at once: not checked. */
    assert_nori(nori_backend_set(b, "k", "v", 1, 0), NORI_OK);
    assert_int_equal(nori_fake_redis_count(m1, "ROLE"), roles);
    nori_fake_redis_default(m1, "ROLE", ROLE_REPLICA);
    struct timespec ts = {1, 300 * 1000000L}; /* idle past the bound: a duration */
    nanosleep(&ts, NULL);
    assert_nori(nori_backend_set(b, "k", "v", 1, 0), NORI_OK);
    assert_int_equal(nori_fake_redis_count(m1, "SET"), 2);
    assert_int_equal(nori_fake_redis_count(m2, "SET"), 1);
    nori_backend_free(b);
    watched_stop(sent, m1, m2);
}

/*
 * fork(): a child inherits the watch but not its thread; freeing the
 * backend there must not wait for a thread that is not in it (it would
 * hang in pthread_join), and the parent's watch goes on.
 */
static void test_watch_fork_child_frees(void **state)
{
    (void)state;
    nori_fake_redis *m1, *m2, *sent;
    nori_backend *b = watched_open(&m1, &m2, &sent);
    assert_nori(nori_backend_set(b, "k", "v", 1, 0), NORI_OK); /* the watch starts */
    assert_true(wait_count(sent, "SUBSCRIBE", 1, 5000));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        nori_backend_free(b);
        _exit(0);
    }
    long long until = nori_test_now_ms() + 5000;
    int status = -1;
    pid_t got = 0;
    while (got == 0 && nori_test_now_ms() < until) {
        got = waitpid(pid, &status, WNOHANG);
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (got == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fail_msg("the forked child did not free the backend within 5 s");
    }
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The parent's watch still follows. */
    int pings = nori_fake_redis_count(sent, "PING");
    assert_true(wait_count(sent, "PING", pings + 1, 5000));
    nori_backend_free(b);
    watched_stop(sent, m1, m2);
}

/* ---- a planned failover (SENTINEL FAILOVER), the old master kept up ----
 *
 * The sentinels promote the replica and announce the switch (+switch-master)
 * about a second later; the old master stays writable until they turn it
 * into a replica of the new one (about 10 s later), and then resynchronises
 * from it: every write it acknowledged after the promotion is gone. A client
 * that follows the announcement writes to the new master from then on; one
 * that waits for READONLY or a lost connection keeps writing to the old
 * master for those 10 s and loses it all.
 */

#define PF_THREADS 8
/* How long after the announcement a write may still be lost: the time to
 * hear it, ask the sentinels and check ROLE, and for a call started before
 * to end. The review's bound. */
#define PF_FOLLOW_MS 1000

typedef struct pf_ack {
    long long value, t;
} pf_ack;

typedef struct pf_log {
    pf_ack *a;
    size_t n, cap;
} pf_log;

static void pf_note(pf_log *l, long long value, long long t)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 4096;
        l->a = realloc(l->a, l->cap * sizeof *l->a);
        if (l->a == NULL)
            abort();
    }
    l->a[l->n++] = (pf_ack){value, t};
}

typedef struct pf_worker {
    pthread_t thread;
    int id;
    nori_backend *b;
    atomic_bool *stop;
    pf_log ctr, upd; /* acknowledged values of its counter and its updated key */
    long errors;
} pf_worker;

static int pf_add_one(const nori_buf *cur, nori_buf *next, void *ud)
{
    (void)ud;
    long long v = cur != NULL && cur->len > 0 ? strtoll(cur->data, NULL, 10) : 0;
    char text[32];
    int n = snprintf(text, sizeof text, "%lld", v + 1);
    next->data = malloc((size_t)n + 1);
    if (next->data == NULL)
        return NORI_ENOMEM;
    memcpy(next->data, text, (size_t)n + 1);
    next->len = (size_t)n;
    return NORI_OK;
}

static void *pf_work(void *arg)
{
    pf_worker *w = arg;
    char ctr[32], upd[32];
    snprintf(ctr, sizeof ctr, "pf:ctr:%d", w->id);
    snprintf(upd, sizeof upd, "pf:upd:%d", w->id);
    while (!atomic_load(w->stop)) {
        int64_t n;
        if (nori_backend_incr(w->b, ctr, 0, &n) == NORI_OK)
            pf_note(&w->ctr, n, nori_test_now_ms());
        else
            w->errors++;
        nori_buf out = {NULL, 0};
        if (nori_backend_atomic_update(w->b, upd, pf_add_one, NULL, 0, &out) == NORI_OK)
            pf_note(&w->upd, strtoll(out.data, NULL, 10), nori_test_now_ms());
        else
            w->errors++;
        nori_buf_free(&out);
    }
    return NULL;
}

/*
 * Acknowledged writes that were lost. One writer per key, so each
 * acknowledged write returns one more than the one before: an
 * acknowledgement whose value comes again later (or a lower one) was made
 * on a server whose writes were then dropped. Counts them by when they were
 * acknowledged (at or before `until`, after it) and keeps the last one's
 * time and the first acknowledgement made on the surviving history after a
 * loss.
 */
typedef struct pf_loss {
    long before, after;
    long long last_lost_t, first_resumed_t;
} pf_loss;

static void pf_count_lost(const pf_log *l, long long until, pf_loss *out)
{
    long long min_after = LLONG_MAX;
    for (size_t i = l->n; i-- > 0;) {
        const pf_ack *a = &l->a[i];
        if (a->value >= min_after) {
            if (a->t <= until)
                out->before++;
            else
                out->after++;
            if (a->t > out->last_lost_t)
                out->last_lost_t = a->t;
            /* The acknowledgement after the last lost one started the
             * surviving history again. */
            if (i + 1 < l->n && l->a[i + 1].value < a->value &&
                (out->first_resumed_t == 0 || l->a[i + 1].t < out->first_resumed_t))
                out->first_resumed_t = l->a[i + 1].t;
        }
        if (a->value < min_after)
            min_after = a->value;
    }
}

/* ROLE of the server on port (through its password): 1 master, 0 replica,
 * -1 no answer. */
static int pf_role(int port)
{
    redisContext *c = nori_test_connect_port(port, PASSWORD);
    if (c == NULL)
        return -1;
    redisReply *r = redisCommand(c, "ROLE");
    int role = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                       r->element[0]->type == REDIS_REPLY_STRING
                   ? strcmp(r->element[0]->str, "master") == 0
                   : -1;
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return role;
}

/* The port the first of s's sentinels to name `want` names: want, or 0. */
static int pf_any_sentinel_names(const nori_test_sentinel *s, int want)
{
    for (int i = 0; i < 3; i++) {
        redisContext *c = nori_test_connect_port(s->sentinel[i].port, NULL);
        if (c == NULL)
            continue;
        redisReply *r = redisCommand(c, "SENTINEL get-master-addr-by-name mymaster");
        bool named = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                     atoi(r->element[1]->str) == want;
        if (r != NULL)
            freeReplyObject(r);
        redisFree(c);
        if (named)
            return want;
    }
    return 0;
}

static void test_planned_failover_under_load(void **state)
{
    (void)state;
    /* A set-up of its own: the roles end swapped. */
    nori_test_sentinel *s = nori_test_sentinel_start(PASSWORD);
    nori_backend *b;
    assert_nori(nori_redis_backend_new(s->url, &b), NORI_OK);
    assert_nori(nori_backend_set(b, "pf:warm", "1", 1, 0), NORI_OK);
    atomic_bool stop;
    atomic_init(&stop, false);
    pf_worker w[PF_THREADS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < PF_THREADS; i++) {
        w[i].id = i;
        w[i].b = b;
        w[i].stop = &stop;
        assert_int_equal(pthread_create(&w[i].thread, NULL, pf_work, &w[i]), 0);
    }
    struct timespec ts = {1, 0};
    nanosleep(&ts, NULL); /* load before the failover: a duration */
    redisContext *sc = nori_test_connect_port(s->sentinel[0].port, NULL);
    assert_non_null(sc);
    long long asked = nori_test_now_ms();
    redisReply *r = redisCommand(sc, "SENTINEL FAILOVER mymaster");
    bool started = r != NULL && r->type == REDIS_REPLY_STATUS;
    if (r != NULL)
        freeReplyObject(r);
    redisFree(sc);
    /* Watch: the promotion (ROLE of the replica), the announcement (the
     * first sentinel that names the new master; polled every 10 ms), and the
     * old master's demotion. Load goes on until 3 s after the announcement
     * and 1 s after the demotion (whose resynchronisation drops the old
     * master's writes), bounded by 60 s. */
    long long promoted = 0, switched = 0, demoted = 0;
    while (started && nori_test_now_ms() < asked + 60000) {
        long long now = nori_test_now_ms();
        if (promoted == 0 && pf_role(s->replica.port) == 1)
            promoted = now;
        if (switched == 0 && pf_any_sentinel_names(s, s->replica.port) != 0)
            switched = now;
        if (demoted == 0 && pf_role(s->master.port) == 0)
            demoted = now;
        if (switched > 0 && demoted > 0 && now > switched + 3000 && now > demoted + 1000)
            break;
        ts = (struct timespec){0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < PF_THREADS; i++)
        pthread_join(w[i].thread, NULL);
    if (!started || switched == 0 || demoted == 0) {
        for (int i = 0; i < PF_THREADS; i++) {
            free(w[i].ctr.a);
            free(w[i].upd.a);
        }
        nori_backend_free(b);
        nori_test_sentinel_stop(s);
        fail_msg("SENTINEL FAILOVER %s; switch %lld ms, demotion %lld ms after it",
                 started ? "accepted" : "refused", switched ? switched - asked : -1,
                 demoted ? demoted - asked : -1);
    }
    pf_loss loss = {0, 0, 0, 0};
    long acks = 0, errors = 0;
    for (int i = 0; i < PF_THREADS; i++) {
        pf_count_lost(&w[i].ctr, switched + PF_FOLLOW_MS, &loss);
        pf_count_lost(&w[i].upd, switched + PF_FOLLOW_MS, &loss);
        acks += (long)(w[i].ctr.n + w[i].upd.n);
        errors += w[i].errors;
        /* What the new master holds builds on every acknowledgement that was
         * not lost: never below the last one. */
        const char *kind[2] = {"ctr", "upd"};
        const pf_log *logs[2] = {&w[i].ctr, &w[i].upd};
        for (int k = 0; k < 2; k++) {
            char key[32];
            snprintf(key, sizeof key, "pf:%s:%d", kind[k], i);
            nori_buf v;
            assert_nori(nori_backend_get(b, key, &v), NORI_OK);
            long long got = strtoll(v.data, NULL, 10);
            nori_buf_free(&v);
            if (logs[k]->n > 0 && got < logs[k]->a[logs[k]->n - 1].value)
                fail_msg("%s = %lld, below its last acknowledged value %lld", key, got,
                         logs[k]->a[logs[k]->n - 1].value);
        }
        free(w[i].ctr.a);
        free(w[i].upd.a);
    }
    nori__sentinel_watch_stats ws;
    nori__topo_watch_stats(((redis_backend *)b)->topo, &ws);
    print_message("the watch: %llu subscriptions (%llu live), %llu dropped, %llu announcements; "
                  "the first heard %lld ms and followed %lld ms after the first sentinel named "
                  "the new master\n",
                  (unsigned long long)ws.subscriptions, (unsigned long long)ws.live,
                  (unsigned long long)ws.dropped, (unsigned long long)ws.announcements,
                  ws.first_heard_ms ? (long long)ws.first_heard_ms - switched : -1,
                  ws.first_followed_ms ? (long long)ws.first_followed_ms - switched : -1);
    print_message("planned failover: promoted %lld ms, announced %lld ms, old master demoted "
                  "%lld ms after SENTINEL FAILOVER; %ld writes acknowledged, %ld failed; lost: "
                  "%ld acknowledged up to announcement + %d ms, %ld after; last lost write "
                  "acknowledged %lld ms after the announcement; first write after a loss on "
                  "the new master %lld ms after it\n",
                  promoted ? promoted - asked : -1, switched - asked, demoted - asked, acks,
                  errors, loss.before, PF_FOLLOW_MS, loss.after,
                  loss.last_lost_t ? loss.last_lost_t - switched : 0,
                  loss.first_resumed_t ? loss.first_resumed_t - switched : 0);
    nori_backend_free(b);
    nori_test_sentinel_stop(s);
    assert_int_equal(loss.after, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_watch_follows_announcement),
        cmocka_unit_test(test_watch_stalled_and_lost_sentinels),
        cmocka_unit_test(test_watch_drops_a_silent_sentinel),
        cmocka_unit_test(test_idle_connection_confirms_role),
        cmocka_unit_test(test_watch_fork_child_frees),
        cmocka_unit_test(test_planned_failover_under_load),
    };
    /* NORI_TEST_FILTER=test_watch* runs only the cases it matches. */
    if (getenv("NORI_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("NORI_TEST_FILTER"));
    return cmocka_run_group_tests_name("sentinel_watch", tests, NULL, NULL);
}
