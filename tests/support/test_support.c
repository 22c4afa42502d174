// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_support.h"

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

char *nori_test_mkdtemp(void)
{
    const char *tmp = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/nori-test-XXXXXX", tmp != NULL && *tmp ? tmp : "/tmp");
    char *dir = mkdtemp(path);
    assert_non_null(dir);
    char *copy = strdup(dir);
    assert_non_null(copy);
    return copy;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void nori_test_rmtree(const char *path)
{
    if (path != NULL)
        nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void nori_test_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

int nori_test_add_one(const nori_buf *cur, nori_buf *next, void *ud)
{
    long long v = cur != NULL ? strtoll(cur->data, NULL, 10) : 0;
    next->data = malloc(24);
    if (next->data == NULL)
        return 1;
    next->len = (size_t)snprintf(next->data, 24, "%lld", v + 1);
    if (ud != NULL)
        *(int64_t *)ud = v + 1;
    return 0;
}

int nori_test_proc_stat(int pid, char *state, int *ppid, char *comm, size_t comm_cap)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t r = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[r] = '\0';
    /* "pid (comm) state ppid ...": comm may hold spaces and parentheses. */
    const char *open = strchr(buf, '('), *close = strrchr(buf, ')');
    char st = 0;
    int parent = 0;
    if (open == NULL || close == NULL || close < open ||
        sscanf(close + 1, " %c %d", &st, &parent) != 2)
        return -1;
    if (state != NULL)
        *state = st;
    if (ppid != NULL)
        *ppid = parent;
    if (comm != NULL && comm_cap > 0) {
        size_t n = (size_t)(close - open - 1);
        if (n >= comm_cap)
            n = comm_cap - 1;
        memcpy(comm, open + 1, n);
        comm[n] = '\0';
    }
    return 0;
}

size_t nori_test_children(int ppid, const char *comm, int *out, size_t cap)
{
    DIR *d = opendir("/proc");
    size_t n = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL && n < cap) {
        char *end, st, name[64];
        int parent;
        long pid = strtol(e->d_name, &end, 10);
        if (*end != '\0' || pid <= 0 ||
            nori_test_proc_stat((int)pid, &st, &parent, name, sizeof name) != 0)
            continue;
        if (parent == ppid && st != 'Z' && (comm == NULL || strcmp(name, comm) == 0))
            out[n++] = (int)pid;
    }
    if (d != NULL)
        closedir(d);
    return n;
}

void nori_test_wait_stopped(int pid)
{
    for (int i = 0; i < 10000; i++) {
        char state = 0;
        if (nori_test_proc_stat(pid, &state, NULL, NULL, 0) == 0 && state == 'T')
            return;
        struct timespec d = {0, 1000000};
        nanosleep(&d, NULL);
    }
    fail_msg("process %d never stopped (10 s)", pid);
}
