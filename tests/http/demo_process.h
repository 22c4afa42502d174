// SPDX-License-Identifier: MIT
/*
 * Runs the real nori-demo binary as a child process for the end-to-end
 * tests: on a free loopback port, with a temporary database, stopped by pid
 * with SIGTERM. The child inherits the test's environment, so
 * CACHE_BACKEND=redis REDIS_URL=... run the same tests against Redis.
 */
#ifndef NORI_TEST_DEMO_PROCESS_H
#define NORI_TEST_DEMO_PROCESS_H

#include <sys/types.h>

typedef struct {
    pid_t pid;
    int port;
    char log_path[512];
} test_demo;

/* Extra command-line arguments for the next test_demo_start() (NULL-ended;
 * e.g. {"--max-conns-per-ip", "8", NULL}). Tests set and clear it. */
#define TEST_DEMO_MAX_EXTRA_ARGS 8
extern const char *test_demo_extra_args[TEST_DEMO_MAX_EXTRA_ARGS + 1];

/* A port that was free on 127.0.0.1 a moment ago (bind to 0, read, close). */
int test_free_port(void);

/* Starts `exe --port P --db db --prefix prefix` with stdout/stderr in
 * log_path, and waits (up to timeout_s) until it answers on the port.
 * 0 on success; -1 (child killed, log printed) otherwise. */
int test_demo_start(test_demo *d, const char *exe, const char *db, const char *prefix,
                    const char *log_path, int timeout_s);

/* SIGTERM, then waits up to timeout_s for the exit. Returns the exit code
 * (0 = clean), 128+signal when killed by a signal, -1 on timeout (the child
 * is then SIGKILLed). */
int test_demo_stop(test_demo *d, int timeout_s);

/* Prints the child's log to stderr (for failures). */
void test_demo_print_log(const test_demo *d);

#endif
