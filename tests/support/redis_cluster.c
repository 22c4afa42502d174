// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis_cluster.h"
#include "test_support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

long long nori_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

/* Binds port 0 on loopback and keeps the socket open until all ports of a
 * set-up are chosen, so that one set-up never gets the same port twice. */
static int reserve_port(int *fd)
{
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(*fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(*fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(*fd, (struct sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

/* Chooses a data port and a cluster bus port per node (the default bus
 * port, port + 10000, may be taken or above 65535). */
static void init_nodes(nori_test_node *nodes, int n)
{
    int fds[32];
    assert_true(n <= 16);
    for (int i = 0; i < n; i++) {
        nodes[i].pid = 0;
        nodes[i].dir = nori_test_mkdtemp();
        nodes[i].port = reserve_port(&fds[2 * i]);
        nodes[i].bus_port = reserve_port(&fds[2 * i + 1]);
    }
    for (int i = 0; i < 2 * n; i++)
        close(fds[i]);
}

void *nori_test_connect_port(int port, const char *password)
{
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, (struct timeval){1, 0});
    if (c == NULL || c->err) {
        if (c != NULL)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, (struct timeval){5, 0});
    if (password != NULL) {
        redisReply *r = redisCommand(c, "AUTH %s", password);
        bool ok = r != NULL && r->type == REDIS_REPLY_STATUS;
        if (r != NULL)
            freeReplyObject(r);
        if (!ok) {
            redisFree(c);
            return NULL;
        }
    }
    return c;
}

void *nori_test_node_connect(const nori_test_node *n)
{
    return n->pid > 0 ? (redisContext *)nori_test_connect_port(n->port, NULL) : NULL;
}

/* Runs one command on a fresh connection; the reply (or NULL) is the caller's. */
static redisReply *ask(int port, const char *password, const char *fmt, ...)
{
    redisContext *c = (redisContext *)nori_test_connect_port(port, password);
    if (c == NULL)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return r;
}

/* Starts `prog` with argv (NULL-terminated, argv[0] included); output goes
 * to dir/log. The child dies with the test process (PR_SET_PDEATHSIG). */
static void spawn(nori_test_node *n, const char *const *argv)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char log[4200];
        snprintf(log, sizeof log, "%s/log", n->dir);
        FILE *f = freopen(log, "a", stdout);
        (void)f;
        dup2(STDOUT_FILENO, STDERR_FILENO);
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    n->pid = pid;
}

/* Waits up to 10 s for PING; false (with a message printed) if the
 * process died or never answered. */
static bool wait_ping(nori_test_node *n, const char *password)
{
    long long deadline = nori_test_now_ms() + 10000;
    while (nori_test_now_ms() < deadline) {
        int status;
        if (waitpid(n->pid, &status, WNOHANG) == n->pid) {
            n->pid = 0;
            print_error("server on port %d exited before answering PING (status %d); log:\n",
                        n->port, status);
            char log[4200];
            snprintf(log, sizeof log, "%s/log", n->dir);
            FILE *f = fopen(log, "r");
            char line[512];
            while (f != NULL && fgets(line, sizeof line, f) != NULL)
                print_error("  %s", line);
            if (f != NULL)
                fclose(f);
            return false;
        }
        redisReply *r = ask(n->port, password, "PING");
        bool ok = r != NULL && r->type == REDIS_REPLY_STATUS;
        if (r != NULL)
            freeReplyObject(r);
        if (ok)
            return true;
        sleep_ms(10);
    }
    print_error("server on port %d did not answer PING within 10 s\n", n->port);
    return false;
}

static void start_server(nori_test_node *n, bool cluster, const char *password, int replica_of)
{
    char port[16], master_port[16], bus_port[16];
    snprintf(port, sizeof port, "%d", n->port);
    snprintf(bus_port, sizeof bus_port, "%d", n->bus_port);
    const char *argv[40];
    int k = 0;
    argv[k++] = "redis-server";
    argv[k++] = "--port";
    argv[k++] = port;
    argv[k++] = "--bind";
    argv[k++] = "127.0.0.1";
    argv[k++] = "--dir";
    argv[k++] = n->dir;
    argv[k++] = "--save";
    argv[k++] = "";
    argv[k++] = "--appendonly";
    argv[k++] = "no";
    argv[k++] = "--loglevel";
    argv[k++] = "warning";
    argv[k++] = "--enable-debug-command";
    argv[k++] = "yes";
    if (cluster) {
        argv[k++] = "--cluster-enabled";
        argv[k++] = "yes";
        argv[k++] = "--cluster-node-timeout";
        argv[k++] = "1000";
        argv[k++] = "--cluster-config-file";
        argv[k++] = "nodes.conf";
        argv[k++] = "--cluster-port";
        argv[k++] = bus_port;
    }
    if (password != NULL) {
        argv[k++] = "--requirepass";
        argv[k++] = password;
        argv[k++] = "--masterauth";
        argv[k++] = password;
    }
    if (replica_of > 0) {
        snprintf(master_port, sizeof master_port, "%d", replica_of);
        argv[k++] = "--replicaof";
        argv[k++] = "127.0.0.1";
        argv[k++] = master_port;
    }
    argv[k] = NULL;
    spawn(n, argv);
}

void nori_test_node_kill(nori_test_node *n, int sig)
{
    if (n == NULL || n->pid <= 0)
        return;
    kill(n->pid, sig);
    int status;
    while (waitpid(n->pid, &status, 0) == -1 && errno == EINTR)
        ;
    n->pid = 0;
}

static void node_free(nori_test_node *n)
{
    nori_test_node_kill(n, SIGKILL);
    if (n->dir != NULL)
        nori_test_rmtree(n->dir);
    free(n->dir);
    n->dir = NULL;
}

/* Runs a command to completion (bounded: killed after timeout_ms); returns
 * its exit status, or -1 when it had to be killed. */
static int run_bounded(const char *const *argv, const char *log_dir, int timeout_ms)
{
    nori_test_node n = {.dir = (char *)log_dir};
    spawn(&n, argv);
    long long deadline = nori_test_now_ms() + timeout_ms;
    int status;
    while (nori_test_now_ms() < deadline) {
        pid_t got = waitpid(n.pid, &status, WNOHANG);
        if (got == n.pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
        sleep_ms(20);
    }
    kill(n.pid, SIGKILL);
    waitpid(n.pid, &status, 0);
    return -1;
}

static bool info_has(int port, const char *password, const char *section, const char *needle)
{
    redisReply *r = ask(port, password, "INFO %s", section);
    bool ok = r != NULL && r->type == REDIS_REPLY_STRING && strstr(r->str, needle) != NULL;
    if (r != NULL)
        freeReplyObject(r);
    return ok;
}

bool nori_test_cluster_wait_ok(const nori_test_cluster *c, int timeout_ms)
{
    long long deadline = nori_test_now_ms() + timeout_ms;
    while (nori_test_now_ms() < deadline) {
        bool all = true;
        for (int i = 0; i < NORI_TEST_CLUSTER_NODES && all; i++) {
            if (c->node[i].pid <= 0)
                continue;
            redisReply *r = ask(c->node[i].port, NULL, "CLUSTER INFO");
            all = r != NULL && r->type == REDIS_REPLY_STRING &&
                  strstr(r->str, "cluster_state:ok") != NULL;
            if (r != NULL)
                freeReplyObject(r);
        }
        if (all)
            return true;
        sleep_ms(50);
    }
    return false;
}

bool nori_test_node_is_master(const nori_test_node *n)
{
    if (n->pid <= 0)
        return false;
    redisReply *r = ask(n->port, NULL, "ROLE");
    bool master = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                  r->element[0]->type == REDIS_REPLY_STRING &&
                  strcmp(r->element[0]->str, "master") == 0;
    if (r != NULL)
        freeReplyObject(r);
    return master;
}

/*
 * Every node's CLUSTER SLOTS lists each of the 3 ranges with its replica.
 * Redis 7 leaves out a replica whose replication offset is still 0, so a
 * write on each master (warm_up) makes them appear without waiting for the
 * 10 s replication ping.
 */
static bool replicas_listed(const nori_test_cluster *c)
{
    for (int i = 0; i < NORI_TEST_CLUSTER_NODES; i++) {
        redisReply *r = ask(c->node[i].port, NULL, "CLUSTER SLOTS");
        bool ok = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 3;
        for (size_t e = 0; ok && e < r->elements; e++)
            ok = r->element[e]->type == REDIS_REPLY_ARRAY && r->element[e]->elements >= 4;
        if (r != NULL)
            freeReplyObject(r);
        if (!ok)
            return false;
    }
    return true;
}

/* One key outside the cache's "cache:" prefix on each master. */
static void warm_up(const nori_test_cluster *c)
{
    for (int i = 0; i < NORI_TEST_CLUSTER_NODES; i++) {
        if (!nori_test_node_is_master(&c->node[i]))
            continue;
        for (int k = 0; k < 200; k++) {
            redisReply *r = ask(c->node[i].port, NULL, "SET nori-test:warmup:%d x", k);
            bool done = r != NULL && r->type == REDIS_REPLY_STATUS;
            if (r != NULL)
                freeReplyObject(r);
            if (done || r == NULL)
                break; /* MOVED: the key is another master's, try the next */
        }
    }
}

nori_test_cluster *nori_test_cluster_start(void)
{
    nori_test_cluster *c = calloc(1, sizeof *c);
    assert_non_null(c);
    init_nodes(c->node, NORI_TEST_CLUSTER_NODES);
    for (int i = 0; i < NORI_TEST_CLUSTER_NODES; i++)
        start_server(&c->node[i], true, NULL, 0);
    for (int i = 0; i < NORI_TEST_CLUSTER_NODES; i++) {
        if (!wait_ping(&c->node[i], NULL)) {
            nori_test_cluster_stop(c);
            fail_msg("a cluster node did not start");
        }
    }

    char addr[NORI_TEST_CLUSTER_NODES][32];
    const char *argv[16];
    int k = 0;
    argv[k++] = "redis-cli";
    argv[k++] = "--cluster";
    argv[k++] = "create";
    for (int i = 0; i < NORI_TEST_CLUSTER_NODES; i++) {
        snprintf(addr[i], sizeof addr[i], "127.0.0.1:%d", c->node[i].port);
        argv[k++] = addr[i];
    }
    argv[k++] = "--cluster-replicas";
    argv[k++] = "1";
    argv[k++] = "--cluster-yes";
    argv[k] = NULL;
    int rc = run_bounded(argv, c->node[0].dir, 30000);
    if (rc != 0) {
        nori_test_cluster_stop(c);
        fail_msg("redis-cli --cluster create exited with %d (log in the first node's dir)", rc);
    }
    if (!nori_test_cluster_wait_ok(c, 20000)) {
        nori_test_cluster_stop(c);
        fail_msg("the cluster did not reach cluster_state:ok on every node within 20 s");
    }
    warm_up(c);
    long long deadline = nori_test_now_ms() + 20000;
    while (!replicas_listed(c)) {
        if (nori_test_now_ms() > deadline) {
            nori_test_cluster_stop(c);
            fail_msg("the cluster's replicas did not sync within 20 s");
        }
        sleep_ms(50);
    }
    snprintf(c->url, sizeof c->url, "redis://127.0.0.1:%d", c->node[0].port);
    return c;
}

void nori_test_cluster_stop(nori_test_cluster *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < NORI_TEST_CLUSTER_NODES; i++)
        node_free(&c->node[i]);
    free(c);
}

int nori_test_cluster_slot_master(const nori_test_cluster *c, unsigned slot)
{
    for (int i = 0; i < NORI_TEST_CLUSTER_NODES; i++) {
        if (c->node[i].pid <= 0)
            continue;
        redisReply *r = ask(c->node[i].port, NULL, "CLUSTER SLOTS");
        if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
            if (r != NULL)
                freeReplyObject(r);
            continue;
        }
        int found = -1;
        for (size_t e = 0; e < r->elements && found < 0; e++) {
            redisReply *ent = r->element[e];
            if (ent->elements < 3 || (unsigned)ent->element[0]->integer > slot ||
                (unsigned)ent->element[1]->integer < slot)
                continue;
            int port = (int)ent->element[2]->element[1]->integer;
            for (int j = 0; j < NORI_TEST_CLUSTER_NODES; j++)
                if (c->node[j].port == port)
                    found = j;
        }
        freeReplyObject(r);
        return found;
    }
    return -1;
}

static bool node_id(const nori_test_node *n, char *id, size_t size)
{
    redisReply *r = ask(n->port, NULL, "CLUSTER MYID");
    bool ok = r != NULL && r->type == REDIS_REPLY_STRING && r->len < size;
    if (ok)
        snprintf(id, size, "%s", r->str);
    if (r != NULL)
        freeReplyObject(r);
    return ok;
}

int nori_test_cluster_reshard(const nori_test_cluster *c, int from, int to, int slots)
{
    char from_id[64], to_id[64], addr[32], count[16];
    if (!node_id(&c->node[from], from_id, sizeof from_id) ||
        !node_id(&c->node[to], to_id, sizeof to_id))
        return -1;
    snprintf(addr, sizeof addr, "127.0.0.1:%d", c->node[from].port);
    snprintf(count, sizeof count, "%d", slots);
    const char *argv[] = {"redis-cli",      "--cluster",      "reshard",       addr,
                          "--cluster-from", from_id,          "--cluster-to",  to_id,
                          "--cluster-slots", count,           "--cluster-yes", NULL};
    return run_bounded(argv, c->node[from].dir, 120000);
}

/* ---- sentinel ---- */

static void start_sentinel(nori_test_node *n, int master_port, const char *password)
{
    char conf[4200];
    snprintf(conf, sizeof conf, "%s/sentinel.conf", n->dir);
    char text[2048];
    int len = snprintf(text, sizeof text,
                       "port %d\nbind 127.0.0.1\ndir %s\n"
                       "sentinel monitor mymaster 127.0.0.1 %d 2\n"
                       "sentinel down-after-milliseconds mymaster 1000\n"
                       "sentinel failover-timeout mymaster 5000\n"
                       "sentinel parallel-syncs mymaster 1\n",
                       n->port, n->dir, master_port);
    if (password != NULL)
        snprintf(text + len, sizeof text - (size_t)len, "sentinel auth-pass mymaster %s\n",
                 password);
    nori_test_write_file(conf, text);
    const char *argv[] = {"redis-sentinel", conf, NULL};
    spawn(n, argv);
}

/* The sentinel knows the master, its replica and the other two sentinels. */
static bool sentinel_ready(const nori_test_node *n)
{
    redisReply *r = ask(n->port, NULL, "SENTINEL MASTER mymaster");
    bool slaves = false, others = false;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            const char *k = r->element[i]->str, *v = r->element[i + 1]->str;
            if (k == NULL || v == NULL)
                continue;
            if (strcmp(k, "num-slaves") == 0)
                slaves = atoi(v) >= 1;
            if (strcmp(k, "num-other-sentinels") == 0)
                others = atoi(v) >= 2;
        }
    }
    if (r != NULL)
        freeReplyObject(r);
    return slaves && others;
}

nori_test_sentinel *nori_test_sentinel_start(const char *password)
{
    nori_test_sentinel *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->password = password != NULL ? strdup(password) : NULL;
    nori_test_node all[5];
    init_nodes(all, 5);
    s->master = all[0];
    s->replica = all[1];
    for (int i = 0; i < 3; i++)
        s->sentinel[i] = all[2 + i];
    start_server(&s->master, false, password, 0);
    start_server(&s->replica, false, password, s->master.port);
    if (!wait_ping(&s->master, password) || !wait_ping(&s->replica, password)) {
        nori_test_sentinel_stop(s);
        fail_msg("the sentinel set-up's master or replica did not start");
    }
    long long deadline = nori_test_now_ms() + 20000;
    while (!info_has(s->replica.port, password, "replication", "master_link_status:up")) {
        if (nori_test_now_ms() > deadline) {
            nori_test_sentinel_stop(s);
            fail_msg("the replica did not sync with the master within 20 s");
        }
        sleep_ms(20);
    }
    for (int i = 0; i < 3; i++)
        start_sentinel(&s->sentinel[i], s->master.port, password);
    for (int i = 0; i < 3; i++) {
        if (!wait_ping(&s->sentinel[i], NULL)) {
            nori_test_sentinel_stop(s);
            fail_msg("a sentinel did not start");
        }
        /* A sentinel whose timer sees the wall clock jump by more than 2 s
         * (a stalled or time-adjusted VM: seen on the CI machines) enters
         * TILT mode and does nothing for 30 s, again and again, so no
         * failover ever happens. The tests are about the client: only a
         * clock jump of an hour counts here. */
        redisReply *r = ask(s->sentinel[i].port, NULL, "SENTINEL DEBUG tilt-trigger 3600000");
        bool ok = r != NULL && r->type == REDIS_REPLY_STATUS;
        if (r != NULL)
            freeReplyObject(r);
        if (!ok) {
            nori_test_sentinel_stop(s);
            fail_msg("SENTINEL DEBUG tilt-trigger was refused (redis-sentinel 7.0 or later needed)");
        }
    }
    for (int i = 0; i < 3; i++) {
        while (!sentinel_ready(&s->sentinel[i])) {
            if (nori_test_now_ms() > deadline) {
                nori_test_sentinel_stop(s);
                fail_msg("sentinel %d did not discover the replica and the other sentinels "
                         "within 20 s", i);
            }
            sleep_ms(50);
        }
    }
    snprintf(s->url, sizeof s->url, "redis+sentinel://%s%s%s127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d/mymaster",
             password != NULL ? ":" : "", password != NULL ? password : "",
             password != NULL ? "@" : "", s->sentinel[0].port, s->sentinel[1].port,
             s->sentinel[2].port);
    return s;
}

void nori_test_sentinel_stop(nori_test_sentinel *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < 3; i++)
        node_free(&s->sentinel[i]);
    node_free(&s->master);
    node_free(&s->replica);
    free(s->password);
    free(s);
}

int nori_test_sentinel_master_port(const nori_test_sentinel *s)
{
    for (int i = 0; i < 3; i++) {
        if (s->sentinel[i].pid <= 0)
            continue;
        redisReply *r = ask(s->sentinel[i].port, NULL, "SENTINEL get-master-addr-by-name mymaster");
        int port = 0;
        if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
            r->element[1]->type == REDIS_REPLY_STRING)
            port = atoi(r->element[1]->str);
        if (r != NULL)
            freeReplyObject(r);
        if (port > 0)
            return port;
    }
    return 0;
}

/* ---- restarts (tests/support/redis_topology.c) ---- */

bool nori_test_node_restart(nori_test_node *n, bool cluster, const char *password,
                            int replica_of)
{
    assert_int_equal(n->pid, 0);
    start_server(n, cluster, password, replica_of);
    return wait_ping(n, password);
}
