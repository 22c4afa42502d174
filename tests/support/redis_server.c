// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis_server.h"
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

/* Asks the kernel for a free loopback port by binding port 0. The port is
 * released before redis-server binds it; a collision in that short window is
 * possible but only makes the start fail loudly, never hit another server. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

void *nori_test_redis_connect(const nori_test_redis *r)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    if (c == NULL || c->err) {
        if (c != NULL)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, (struct timeval){5, 0});
    if (r->password != NULL) {
        redisReply *rep = redisCommand(c, "AUTH %s", r->password);
        bool ok = rep != NULL && rep->type == REDIS_REPLY_STATUS;
        if (rep != NULL)
            freeReplyObject(rep);
        if (!ok) {
            redisFree(c);
            return NULL;
        }
    }
    return c;
}

static bool answers_ping(const nori_test_redis *r)
{
    redisContext *c = nori_test_redis_connect(r);
    if (c == NULL)
        return false;
    redisReply *rep = redisCommand(c, "PING");
    bool ok = rep != NULL && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
    if (rep != NULL)
        freeReplyObject(rep);
    redisFree(c);
    return ok;
}

static void spawn(nori_test_redis *r)
{
    char port[16];
    snprintf(port, sizeof port, "%d", r->port);
    const char *argv[32];
    int n = 0;
    argv[n++] = "redis-server";
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--dir";
    argv[n++] = r->dir;
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = "no";
    argv[n++] = "--daemonize";
    argv[n++] = "no";
    argv[n++] = "--enable-debug-command";
    argv[n++] = "yes";
    argv[n++] = "--unixsocket";
    argv[n++] = r->socket_path;
    argv[n++] = "--unixsocketperm";
    argv[n++] = "700";
    argv[n++] = "--loglevel";
    argv[n++] = "warning";
    if (r->password != NULL) {
        argv[n++] = "--requirepass";
        argv[n++] = r->password;
    }
    argv[n] = NULL;

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* If the test process dies without stopping us, the kernel sends
         * SIGTERM: no orphaned server outlives a crashed test. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        /* Quiet child: the server's log goes to a file in its directory. */
        char log[4200];
        snprintf(log, sizeof log, "%s/redis.log", r->dir);
        FILE *f = freopen(log, "a", stdout);
        (void)f;
        dup2(STDOUT_FILENO, STDERR_FILENO);
        execvp("redis-server", (char *const *)argv);
        fprintf(stderr, "exec redis-server: %s\n", strerror(errno));
        _exit(127);
    }
    r->pid = pid;
    /* Wait up to 10 s for PING; fail if the child died (missing binary,
     * port taken). */
    for (int i = 0; i < 1000; i++) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            r->pid = 0;
            fail_msg("redis-server exited before answering PING (status %d); is it installed? "
                     "log in %s/redis.log",
                     status, r->dir);
        }
        if (answers_ping(r))
            return;
        sleep_ms(10);
    }
    nori_test_redis_kill(r);
    fail_msg("redis-server on port %d did not answer PING within 10 s", r->port);
}

nori_test_redis *nori_test_redis_start(const char *password)
{
    nori_test_redis *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->dir = nori_test_mkdtemp();
    r->password = password != NULL ? strdup(password) : NULL;
    r->port = free_port();
    snprintf(r->socket_path, sizeof r->socket_path, "%s/redis.sock", r->dir);
    if (password != NULL)
        snprintf(r->url, sizeof r->url, "redis://:%s@127.0.0.1:%d", password, r->port);
    else
        snprintf(r->url, sizeof r->url, "redis://127.0.0.1:%d", r->port);
    spawn(r);
    return r;
}

void nori_test_redis_kill(nori_test_redis *r)
{
    if (r == NULL || r->pid <= 0)
        return;
    kill(r->pid, SIGTERM);
    int status;
    while (waitpid(r->pid, &status, 0) == -1 && errno == EINTR)
        ;
    r->pid = 0;
}

void nori_test_redis_restart(nori_test_redis *r)
{
    assert_int_equal(r->pid, 0);
    spawn(r);
}

void nori_test_redis_stop(nori_test_redis *r)
{
    if (r == NULL)
        return;
    nori_test_redis_kill(r);
    nori_test_rmtree(r->dir);
    free(r->dir);
    free(r->password);
    free(r);
}
