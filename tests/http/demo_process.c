// SPDX-License-Identifier: MIT
/* The nori-demo child process of the end-to-end tests: see demo_process.h. */
#include "demo_process.h"

#include "http_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int test_free_port(void)
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

const char *test_demo_extra_args[TEST_DEMO_MAX_EXTRA_ARGS + 1];

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void test_demo_print_log(const test_demo *d)
{
    FILE *f = fopen(d->log_path, "r");
    if (f == NULL)
        return;
    char line[512];
    fprintf(stderr, "---- nori-demo log (%s) ----\n", d->log_path);
    while (fgets(line, sizeof line, f) != NULL)
        fputs(line, stderr);
    fprintf(stderr, "---- end of log ----\n");
    fclose(f);
}

int test_demo_start(test_demo *d, const char *exe, const char *db, const char *prefix,
                    const char *log_path, int timeout_s)
{
    memset(d, 0, sizeof *d);
    snprintf(d->log_path, sizeof d->log_path, "%s", log_path);
    d->port = test_free_port();
    if (d->port < 0)
        return -1;
    char port[16];
    snprintf(port, sizeof port, "%d", d->port);
    fflush(NULL);
    d->pid = fork();
    if (d->pid < 0)
        return -1;
    if (d->pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        const char *argv[8 + TEST_DEMO_MAX_EXTRA_ARGS + 1] = {
            exe, "--port", port, "--db", db, "--prefix", prefix};
        size_t n = 7;
        for (size_t i = 0; i < TEST_DEMO_MAX_EXTRA_ARGS && test_demo_extra_args[i]; i++)
            argv[n++] = test_demo_extra_args[i];
        argv[n] = NULL;
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    for (int waited = 0; waited < timeout_s * 1000; waited += 50) {
        int status;
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            fprintf(stderr, "nori-demo exited during startup (status %d)\n", status);
            test_demo_print_log(d);
            d->pid = 0;
            return -1;
        }
        int fd = test_http_connect(d->port);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        sleep_ms(50);
    }
    fprintf(stderr, "nori-demo did not answer on port %d within %d s\n", d->port, timeout_s);
    test_demo_print_log(d);
    test_demo_stop(d, 5);
    return -1;
}

int test_demo_stop(test_demo *d, int timeout_s)
{
    if (d->pid <= 0)
        return -1;
    kill(d->pid, SIGTERM);
    for (int waited = 0; waited <= timeout_s * 1000; waited += 20) {
        int status;
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            d->pid = 0;
            if (WIFEXITED(status))
                return WEXITSTATUS(status);
            return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        }
        sleep_ms(20);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    d->pid = 0;
    return -1;
}
