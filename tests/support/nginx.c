// SPDX-License-Identifier: MIT
/* A private nginx for the tests: see nginx.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "nginx.h"
#include "test_support.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_TIMEOUT_MS 20000
#define STOP_TIMEOUT_MS 10000

static const char *nginx_binary(void)
{
    static const char *const paths[] = {"/usr/sbin/nginx", "/usr/bin/nginx"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
        if (access(paths[i], X_OK) == 0)
            return paths[i];
    return NULL;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &l) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static int answers(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

void nori_test_nginx_print_log(const nori_test_nginx *n)
{
    char path[4200], line[1024];
    snprintf(path, sizeof path, "%s/error.log", n->dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    fprintf(stderr, "---- nginx error log (%s) ----\n", path);
    while (fgets(line, sizeof line, f) != NULL)
        fputs(line, stderr);
    fprintf(stderr, "---- end of log ----\n");
    fclose(f);
}

nori_test_nginx *nori_test_nginx_start(const char *upstream, int keepalive)
{
    const char *bin = nginx_binary();
    if (bin == NULL)
        fail_msg("nginx not found: install nginx-light (scripts/setup.sh)");
    nori_test_nginx *n = calloc(1, sizeof *n);
    assert_non_null(n);
    n->dir = nori_test_mkdtemp();
    n->port = free_port();
    assert_true(n->port > 0);
    char path[4200], conf[8192], tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/tmp", n->dir);
    assert_int_equal(mkdir(tmp, 0700), 0);
    /* As root nginx would switch its workers to "nobody", who cannot
     * reach files in the test's 0700 directory: keep them as root. */
    char keep[64] = "";
    if (keepalive > 0)
        snprintf(keep, sizeof keep, "keepalive %d;", keepalive);
    int len = snprintf(
        conf, sizeof conf,
        "%s"
        "worker_processes 2;\n"
        "error_log %s/error.log info;\n"
        "pid %s/nginx.pid;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "  access_log off;\n"
        "  client_body_temp_path %s/body;\n"
        "  fastcgi_temp_path %s/fastcgi;\n"
        "  proxy_temp_path %s/proxy;\n"
        "  uwsgi_temp_path %s/uwsgi;\n"
        "  scgi_temp_path %s/scgi;\n"
        "  upstream nori { server %s; %s }\n"
        "  server {\n"
        "    listen 127.0.0.1:%d;\n"
        "    location / {\n"
        "      include /etc/nginx/fastcgi_params;\n"
        "      fastcgi_keep_conn %s;\n"
        "      fastcgi_pass nori;\n"
        "      fastcgi_read_timeout 30s;\n"
        "    }\n"
        "  }\n"
        "}\n",
        geteuid() == 0 ? "user root;\n" : "", n->dir, n->dir, tmp, tmp, tmp, tmp, tmp,
        upstream, keep, n->port, keepalive > 0 ? "on" : "off");
    assert_true(len > 0 && (size_t)len < sizeof conf);
    snprintf(path, sizeof path, "%s/nginx.conf", n->dir);
    nori_test_write_file(path, conf);
    fflush(NULL);
    n->pid = fork();
    assert_true(n->pid >= 0);
    if (n->pid == 0) {
        char log[4200], glob[4400];
        snprintf(log, sizeof log, "%s/error.log", n->dir);
        snprintf(glob, sizeof glob, "daemon off; master_process on;");
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        /* -e: the log of startup, before the configuration is read. */
        execl(bin, bin, "-p", n->dir, "-c", path, "-e", log, "-g", glob, (char *)NULL);
        _exit(127);
    }
    for (int waited = 0; waited < START_TIMEOUT_MS; waited += 20) {
        int status;
        if (waitpid(n->pid, &status, WNOHANG) == n->pid) {
            n->pid = 0;
            nori_test_nginx_print_log(n);
            fail_msg("nginx exited during startup (status %d)", status);
        }
        if (answers(n->port))
            return n;
        sleep_ms(20);
    }
    nori_test_nginx_print_log(n);
    nori_test_nginx_stop(n);
    fail_msg("nginx did not answer within %d ms", START_TIMEOUT_MS);
    return NULL;
}

void nori_test_nginx_stop(nori_test_nginx *n)
{
    if (n == NULL)
        return;
    if (n->pid > 0) {
        int workers[16]; /* nginx's */
        size_t nw = nori_test_children(n->pid, "nginx", workers, 16);
        kill(n->pid, SIGTERM); /* fast shutdown: the master stops its workers */
        int done = 0;
        for (int waited = 0; waited < STOP_TIMEOUT_MS && !done; waited += 20) {
            if (waitpid(n->pid, NULL, WNOHANG) == n->pid)
                done = 1;
            else
                sleep_ms(20);
        }
        if (!done) {
            fprintf(stderr, "nginx did not stop within %d ms: SIGKILL\n", STOP_TIMEOUT_MS);
            kill(n->pid, SIGKILL);
            waitpid(n->pid, NULL, 0);
            for (size_t i = 0; i < nw; i++)
                kill(workers[i], SIGKILL); /* ours: they were the master's children */
        }
        n->pid = 0;
    }
    nori_test_rmtree(n->dir);
    free(n->dir);
    free(n);
}
