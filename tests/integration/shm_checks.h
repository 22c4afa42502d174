// SPDX-License-Identifier: MIT
/*
 * Helpers of the shared-memory backend's process tests: self-checking
 * values (a value embeds its key, a serial number and a checksum of the
 * rest, so a torn or misplaced read is caught by whoever reads it),
 * children that run a function, and bounded waits for them.
 */
#ifndef NORI_TEST_SHM_CHECKS_H
#define NORI_TEST_SHM_CHECKS_H

#include <nori/cache.h>

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t shm_test_fnv(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ULL;
    return h;
}

/*
 * Writes a value for key into buf (cap bytes; cap >= 64): "key|serial|"
 * then filler bytes derived from both, up to len bytes in all, the last 8
 * being the checksum of what precedes. Returns the length.
 */
static inline size_t shm_test_make_value(const char *key, uint64_t serial, size_t len, char *buf,
                                         size_t cap)
{
    int n = snprintf(buf, cap, "%s|%llu|", key, (unsigned long long)serial);
    size_t head = (size_t)n;
    if (len < head + 8)
        len = head + 8;
    if (len > cap)
        len = cap;
    uint64_t x = shm_test_fnv(buf, head) | 1;
    for (size_t i = head; i < len - 8; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (char)(x >> 24);
    }
    uint64_t sum = shm_test_fnv(buf, len - 8);
    memcpy(buf + len - 8, &sum, 8);
    return len;
}

/* Whether buf[0..len) is a value made for key by shm_test_make_value. */
static inline bool shm_test_check_value(const char *key, const char *buf, size_t len)
{
    size_t klen = strlen(key);
    if (len < klen + 10 || memcmp(buf, key, klen) != 0 || buf[klen] != '|')
        return false;
    uint64_t sum;
    memcpy(&sum, buf + len - 8, 8);
    return sum == shm_test_fnv(buf, len - 8);
}

static inline int64_t shm_test_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline void shm_test_sleep_us(int64_t us)
{
    struct timespec d = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    while (nanosleep(&d, &d) == -1 && errno == EINTR)
        ;
}

/* Memory shared with the children forked after this call. */
static inline void *shm_test_shared(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Forks a child that runs fn(arg) and exits with its result. */
static inline pid_t shm_test_spawn(int (*fn)(void *), void *arg)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0)
        _exit(fn(arg));
    return pid;
}

/*
 * Waits at most timeout_ms for pid; on timeout kills it (SIGKILL), reaps it
 * and returns -1 (the test fails: something waited for ever). Else the
 * wait status.
 */
static inline int shm_test_wait(pid_t pid, int64_t timeout_ms)
{
    int64_t deadline = shm_test_now_us() + timeout_ms * 1000;
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0 && errno != EINTR)
            return -2;
        if (shm_test_now_us() >= deadline) {
            /* A hang is a bug: show where it is before killing it. */
            char cmd[160];
            snprintf(cmd, sizeof cmd,
                     "command -v gdb >/dev/null && gdb -p %ld -batch -ex 'thread apply all bt' "
                     ">&2 2>/dev/null",
                     (long)pid);
            if (system(cmd) != 0)
                fprintf(stderr, "(no gdb to show where child %ld hangs)\n", (long)pid);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        shm_test_sleep_us(2000);
    }
}

/*
 * The segment of the running test. shm_test_segment_setup() gives it a
 * fresh name, "nori-test-<what>-<pid>-<n>", with no segment left under it
 * (cmocka's setup), shm_test_segment_teardown() unlinks it.
 */
static char shm_test_name[64];

static inline int shm_test_segment_setup(const char *what)
{
    static int n;
    snprintf(shm_test_name, sizeof shm_test_name, "nori-test-%s-%ld-%d", what, (long)getpid(),
             n++);
    (void)nori_shm_backend_unlink(shm_test_name);
    return 0;
}

static inline void shm_test_segment_teardown(void)
{
    (void)nori_shm_backend_unlink(shm_test_name);
}

#endif
