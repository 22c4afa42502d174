// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_support.h"

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

void nori_test_wait_stopped(int pid)
{
    for (int i = 0; i < 10000; i++) {
        char path[64], state = 0;
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        FILE *f = fopen(path, "r");
        if (f != NULL) {
            int n = fscanf(f, "%*d %*s %c", &state);
            fclose(f);
            if (n == 1 && state == 'T')
                return;
        }
        struct timespec d = {0, 1000000};
        nanosleep(&d, NULL);
    }
    fail_msg("process %d never stopped (10 s)", pid);
}
