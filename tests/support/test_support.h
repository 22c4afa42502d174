// SPDX-License-Identifier: MIT
/*
 * Helpers shared by the test programs. Include after the cmocka headers
 * (<stdarg.h>, <stddef.h>, <setjmp.h>, <stdint.h>, <cmocka.h>).
 */
#ifndef NORI_TEST_SUPPORT_H
#define NORI_TEST_SUPPORT_H

#include <nori/cache.h>

/* Creates a fresh temporary directory (mkdtemp) and returns its malloc'd path. */
char *nori_test_mkdtemp(void);

/* Removes a directory tree created by the tests (rm -rf semantics). */
void nori_test_rmtree(const char *path);

/* Writes `text` to path, truncating. Fails the test on error. */
void nori_test_write_file(const char *path, const char *text);

/*
 * An atomic_update callback that treats the value as a decimal counter
 * (absent = 0) and writes it plus one. `ud` may point at an int64_t that
 * receives the value written. Used by the concurrency and fault tests.
 */
int nori_test_add_one(const nori_buf *cur, nori_buf *next, void *ud);

/*
 * Reads /proc/PID/stat: the process's state letter ('R', 'S', 'T' stopped,
 * 'Z' zombie...) into *state, its parent into *ppid, and its command name
 * (without the parentheses, cut to comm_cap - 1) into comm; any output may
 * be NULL. 0, or -1 when the process is gone.
 */
int nori_test_proc_stat(int pid, char *state, int *ppid, char *comm, size_t comm_cap);

/* The live (not zombie) children of ppid whose command name is comm (NULL:
 * any), from /proc: at most cap pids into out; returns how many. */
size_t nori_test_children(int ppid, const char *comm, int *out, size_t cap);

/* Waits until process pid is stopped (SIGSTOP: 'T' in /proc/PID/stat),
 * polling every millisecond; fails the test after 10 s. */
void nori_test_wait_stopped(int pid);

/* Asserts rc == expected, printing nori_last_error() when it is not. */
#define assert_nori(rc, expected)                                                      \
    do {                                                                               \
        int nori_rc_ = (rc);                                                           \
        if (nori_rc_ != (expected))                                                    \
            print_error("%s: got %d (%s), expected %d; last error: %s\n", #rc,          \
                        nori_rc_, nori_strerror(nori_rc_), (int)(expected),            \
                        nori_last_error());                                            \
        assert_int_equal(nori_rc_, (expected));                                        \
    } while (0)

#endif
