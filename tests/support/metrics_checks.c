// SPDX-License-Identifier: MIT
/* Checks of a Prometheus text exposition: see metrics_checks.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "metrics_checks.h"
#include "test_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

void metrics_check_text(const char *text)
{
    char family[128] = "", type[32] = "", seen[256][128];
    size_t n_seen = 0;
    int had_help = 0;
    uint64_t last_bucket = 0;
    int in_buckets = 0;
    const char *line = text;
    while (*line != '\0') {
        const char *end = strchr(line, '\n');
        if (end == NULL)
            fail_msg("metrics: the text does not end with a newline");
        size_t len = (size_t)(end - line);
        char buf[1024];
        if (len >= sizeof buf)
            fail_msg("metrics: a line of %zu bytes", len);
        memcpy(buf, line, len);
        buf[len] = '\0';
        if (strncmp(buf, "# HELP ", 7) == 0) {
            char name[128];
            if (sscanf(buf + 7, "%127s", name) != 1 || strlen(buf) <= 8 + strlen(name))
                fail_msg("metrics: HELP without a text: %s", buf);
            for (size_t i = 0; i < n_seen; i++)
                if (strcmp(seen[i], name) == 0)
                    fail_msg("metrics: family %s appears twice", name);
            assert_true(n_seen < 256);
            snprintf(seen[n_seen++], sizeof seen[0], "%s", name);
            snprintf(family, sizeof family, "%s", name);
            had_help = 1;
            type[0] = '\0';
        } else if (strncmp(buf, "# TYPE ", 7) == 0) {
            char name[128];
            if (sscanf(buf + 7, "%127s %31s", name, type) != 2 || strcmp(name, family) != 0 ||
                !had_help)
                fail_msg("metrics: TYPE not after its HELP: %s", buf);
            if (strcmp(type, "counter") == 0 && !ends_with(name, strlen(name), "_total"))
                fail_msg("metrics: counter %s does not end in _total", name);
            if (strcmp(type, "counter") != 0 && strcmp(type, "gauge") != 0 &&
                strcmp(type, "histogram") != 0)
                fail_msg("metrics: unexpected type %s", type);
        } else if (buf[0] == '#') {
            fail_msg("metrics: unexpected comment: %s", buf);
        } else {
            /* name{labels} value */
            size_t nlen = strcspn(buf, "{ ");
            if (type[0] == '\0' || strncmp(buf, family, strlen(family)) != 0)
                fail_msg("metrics: sample outside its family (%s): %s", family, buf);
            const char *rest = buf + nlen;
            if (*rest == '{') {
                const char *close = strchr(rest, '}');
                if (close == NULL)
                    fail_msg("metrics: unterminated labels: %s", buf);
                for (const char *p = rest + 1; p < close;) {
                    const char *eq = strchr(p, '=');
                    if (eq == NULL || eq[1] != '"')
                        fail_msg("metrics: unquoted label value: %s", buf);
                    p = eq + 2;
                    while (*p != '"' && p < close)
                        p += *p == '\\' ? 2 : 1;
                    p++;
                    if (*p == ',')
                        p++;
                }
                rest = close + 1;
            }
            if (*rest != ' ')
                fail_msg("metrics: no value: %s", buf);
            char *num_end;
            double v = strtod(rest + 1, &num_end);
            if (num_end == rest + 1 || *num_end != '\0' || v < 0)
                fail_msg("metrics: bad value: %s", buf);
            if (strcmp(type, "histogram") == 0) {
                if (ends_with(buf, nlen, "_bucket")) {
                    uint64_t c = (uint64_t)v;
                    if (in_buckets && c < last_bucket)
                        fail_msg("metrics: buckets not cumulative: %s", buf);
                    last_bucket = c;
                    in_buckets = strstr(buf, "le=\"+Inf\"") == NULL;
                    if (!in_buckets)
                        last_bucket = c; /* the +Inf bucket, checked against _count */
                } else if (ends_with(buf, nlen, "_count")) {
                    if ((uint64_t)v != last_bucket)
                        fail_msg("metrics: _count %s is not the +Inf bucket %llu", buf,
                                 (unsigned long long)last_bucket);
                    last_bucket = 0;
                } else if (!ends_with(buf, nlen, "_sum")) {
                    fail_msg("metrics: histogram sample that is no bucket, sum or count: %s",
                             buf);
                }
            } else if (nlen != strlen(family)) {
                fail_msg("metrics: sample name differs from its family %s: %s", family, buf);
            }
        }
        line = end + 1;
    }
}

void metrics_check_promtool(const char *text)
{
    char *dir = nori_test_mkdtemp();
    char in[4200], out[4200], cmd[9000];
    snprintf(in, sizeof in, "%s/metrics.txt", dir);
    snprintf(out, sizeof out, "%s/promtool.txt", dir);
    nori_test_write_file(in, text);
    snprintf(cmd, sizeof cmd, "promtool check metrics < '%s' > '%s' 2>&1", in, out);
    int status = system(cmd);
    char said[4096] = "";
    FILE *f = fopen(out, "r");
    if (f != NULL) {
        size_t n = fread(said, 1, sizeof said - 1, f);
        said[n] = '\0';
        fclose(f);
    }
    nori_test_rmtree(dir);
    free(dir);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) == 127)
        fail_msg("promtool not found: install Debian's prometheus package (scripts/setup.sh)");
    if (WEXITSTATUS(status) != 0 || said[0] != '\0')
        fail_msg("promtool check metrics (exit %d): %s", WEXITSTATUS(status), said);
}

int64_t metrics_value(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = text; *line != '\0';) {
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return (int64_t)strtoll(line + n + 1, NULL, 10);
        const char *end = strchr(line, '\n');
        if (end == NULL)
            break;
        line = end + 1;
    }
    return -1;
}
