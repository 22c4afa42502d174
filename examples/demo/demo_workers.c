// SPDX-License-Identifier: MIT
/*
 * nori-demo --workers N: the parent process. It has opened the listener
 * and created the database; it forks N workers that inherit the listener,
 * replaces a worker that dies, and on SIGINT/SIGTERM stops them all.
 *
 * Bounds:
 *  - restarts: a worker that died within FAST_FAILURE_MS of its start is
 *    restarted after a delay doubling from 100 ms to 5 s; after
 *    MAX_FAST_FAILURES such deaths in a row of one slot the parent gives
 *    up (stops the others, exits 1): a worker that cannot start (bad
 *    REDIS_URL, unreadable database) must not turn into a fork loop;
 *  - stop: the workers get SIGTERM and STOP_TIMEOUT_MS to exit, then
 *    SIGKILL;
 *  - the parent's own waits are sigtimedwait() calls of at most 1 s.
 * A worker whose parent dies gets SIGTERM (PR_SET_PDEATHSIG), so a killed
 * parent leaves no orphan serving on.
 */
#include "demo.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FAST_FAILURE_MS 1000
#define MAX_FAST_FAILURES 10
#define MAX_BACKOFF_MS 5000
#define STOP_TIMEOUT_MS 10000

typedef struct {
    pid_t pid;           /* 0: not running */
    int64_t started_ms;
    int64_t restart_at_ms;
    unsigned fast_failures;
} worker_slot;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static pid_t spawn(unsigned i, worker_slot *w, pid_t parent, int listen_fd,
                   int (*serve)(int, void *), void *ud)
{
    fflush(NULL); /* nothing buffered may be written twice */
    pid_t pid = fork();
    if (pid == 0) {
        /* The worker keeps the parent's signal mask (SIGINT and SIGTERM
         * blocked: it waits for them with sigwait). */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1); /* the parent died before the line above */
        exit(serve(listen_fd, ud)); /* exit, not _exit: sanitizers check at exit */
    }
    if (pid < 0) {
        fprintf(stderr, "nori-demo: fork worker %u: %s\n", i, strerror(errno));
        w->pid = 0;
        w->restart_at_ms = now_ms() + MAX_BACKOFF_MS;
        return -1;
    }
    w->pid = pid;
    w->started_ms = now_ms();
    return pid;
}

/* Reaps every worker that exited. Returns -1 when a slot failed too often
 * in a row (give up), else 0. *clean is cleared by a worker that did not
 * exit with 0. */
static int reap(worker_slot *w, unsigned n, int stopping, int *clean)
{
    int status;
    pid_t pid;
    int give_up = 0;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        unsigned i = 0;
        while (i < n && w[i].pid != pid)
            i++;
        if (i == n)
            continue;
        w[i].pid = 0;
        int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!ok)
            *clean = 0;
        if (stopping) {
            if (!ok)
                printf("nori-demo: worker %u (pid %ld) stopped with %s %d\n", i, (long)pid,
                       WIFEXITED(status) ? "status" : "signal",
                       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
            continue;
        }
        int64_t now = now_ms();
        if (now - w[i].started_ms < FAST_FAILURE_MS)
            w[i].fast_failures++;
        else
            w[i].fast_failures = 0;
        int64_t delay = 0;
        if (w[i].fast_failures > 0) {
            delay = (int64_t)100 << (w[i].fast_failures - 1 < 6 ? w[i].fast_failures - 1 : 6);
            if (delay > MAX_BACKOFF_MS)
                delay = MAX_BACKOFF_MS;
        }
        w[i].restart_at_ms = now + delay;
        printf("nori-demo: worker %u (pid %ld) %s %d; restarting in %lld ms\n", i, (long)pid,
               WIFEXITED(status) ? "exited with status" : "killed by signal",
               WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), (long long)delay);
        if (w[i].fast_failures >= MAX_FAST_FAILURES) {
            printf("nori-demo: worker %u failed %u times in a row within %d ms of its start;"
                   " giving up\n",
                   i, w[i].fast_failures, FAST_FAILURE_MS);
            give_up = 1;
        }
    }
    fflush(stdout);
    return give_up ? -1 : 0;
}

int demo_run_workers(unsigned n, int listen_fd, int (*serve)(int, void *), void *ud)
{
    worker_slot *w = calloc(n, sizeof *w);
    if (w == NULL)
        return 1;
    pid_t parent = getpid();
    int clean = 1, rc = 0;
    for (unsigned i = 0; i < n; i++)
        spawn(i, &w[i], parent, listen_fd, serve, ud);
    printf("nori-demo: %u workers started (parent pid %ld)\n", n, (long)parent);
    fflush(stdout);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGCHLD);
    for (;;) {
        int64_t now = now_ms(), wait_ms = 1000;
        for (unsigned i = 0; i < n; i++)
            if (w[i].pid == 0 && w[i].restart_at_ms - now < wait_ms)
                wait_ms = w[i].restart_at_ms - now > 0 ? w[i].restart_at_ms - now : 0;
        struct timespec ts = {(time_t)(wait_ms / 1000), (long)(wait_ms % 1000) * 1000000L};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            printf("nori-demo: signal %d, stopping %u workers\n", sig, n);
            break;
        }
        int ignored = 1; /* a worker replaced while running is not a failed stop */
        if (reap(w, n, 0, &ignored) < 0) {
            rc = 1;
            break;
        }
        now = now_ms();
        for (unsigned i = 0; i < n; i++)
            if (w[i].pid == 0 && now >= w[i].restart_at_ms &&
                spawn(i, &w[i], parent, listen_fd, serve, ud) > 0)
                printf("nori-demo: worker %u restarted as pid %ld\n", i, (long)w[i].pid);
        fflush(stdout);
    }

    /* Stop: SIGTERM to each worker, STOP_TIMEOUT_MS for all, then SIGKILL. */
    for (unsigned i = 0; i < n; i++)
        if (w[i].pid > 0)
            kill(w[i].pid, SIGTERM);
    int64_t deadline = now_ms() + STOP_TIMEOUT_MS;
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    for (;;) {
        reap(w, n, 1, &clean);
        unsigned alive = 0;
        for (unsigned i = 0; i < n; i++)
            alive += w[i].pid > 0;
        int64_t left = deadline - now_ms();
        if (alive == 0 || left <= 0)
            break;
        if (left > 100)
            left = 100;
        struct timespec ts = {0, (long)left * 1000000L};
        sigtimedwait(&chld, NULL, &ts);
    }
    for (unsigned i = 0; i < n; i++) {
        if (w[i].pid > 0) {
            printf("nori-demo: worker %u (pid %ld) did not stop within %d ms: SIGKILL\n", i,
                   (long)w[i].pid, STOP_TIMEOUT_MS);
            kill(w[i].pid, SIGKILL);
            waitpid(w[i].pid, NULL, 0);
            clean = 0;
        }
    }
    free(w);
    fflush(stdout);
    return rc != 0 || !clean ? 1 : 0;
}
