// SPDX-License-Identifier: MIT
/*
 * The noricache binary, run as a real process for each subcommand: against a
 * private redis-server (values persist across invocations) and the memory
 * backend (each invocation is a fresh cache), exit codes, usage errors, .env
 * configuration, and check against a dead server.
 * Exit codes follow one rule whatever the command (noricache --help): 0
 * success, 1 a key not found (get, get-many), 2 usage or an invalid argument
 * (empty or over-1024-byte key, bad --ttl, value over the limit), 3 invalid
 * configuration, 4 the backend failed (check included).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis_server.h"
#include "test_support.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef NORICACHE_PATH
#error "NORICACHE_PATH must name the built noricache binary"
#endif

static nori_test_redis *server;
static char *workdir; /* cwd of the CLI runs: holds .env for one test */

typedef struct {
    int status; /* exit code, or -1 if killed */
    char out[4096];
    size_t out_len;
    char err[4096];
} result;

static int group_setup(void **state)
{
    (void)state;
    server = nori_test_redis_start("cli-Secret");
    workdir = nori_test_mkdtemp();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    nori_test_redis_stop(server);
    nori_test_rmtree(workdir);
    free(workdir);
    return 0;
}

static size_t read_all(int fd, char *buf, size_t size)
{
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, size - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == size - 1)
            break;
    }
    buf[len] = '\0';
    return len;
}

/*
 * Runs noricache with args (NULL-terminated) in workdir. backend NULL leaves
 * CACHE_BACKEND and REDIS_URL unset (so .env, if any, decides). `env`, when
 * not NULL, is one more NAME=VALUE for the child; `stdin_path`, when not
 * NULL, is the file the child reads as its standard input.
 */
static void run_cli_with(result *r, const char *backend, const char *url, const char *env,
                         const char *stdin_path, const char **args)
{
    int out[2], err[2];
    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(err), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (chdir(workdir) != 0)
            _exit(126);
        unsetenv("CACHE_BACKEND");
        unsetenv("REDIS_URL");
        if (backend != NULL)
            setenv("CACHE_BACKEND", backend, 1);
        if (url != NULL)
            setenv("REDIS_URL", url, 1);
        if (env != NULL && putenv((char *)env) != 0)
            _exit(126);
        if (stdin_path != NULL) {
            int in = open(stdin_path, O_RDONLY);
            if (in < 0 || dup2(in, STDIN_FILENO) < 0)
                _exit(126);
            close(in);
        }
        dup2(out[1], STDOUT_FILENO);
        dup2(err[1], STDERR_FILENO);
        close(out[0]);
        close(err[0]);
        close(out[1]);
        close(err[1]);
        const char *argv[16] = {"noricache"};
        int n = 1;
        for (; args[n - 1] != NULL && n < 15; n++)
            argv[n] = args[n - 1];
        argv[n] = NULL;
        execv(NORICACHE_PATH, (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    /* Outputs are small (well under a pipe buffer): read one after the other. */
    r->out_len = read_all(out[0], r->out, sizeof r->out);
    read_all(err[0], r->err, sizeof r->err);
    close(out[0]);
    close(err[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    r->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void run_cli(result *r, const char *backend, const char *url, const char **args)
{
    run_cli_with(r, backend, url, NULL, NULL, args);
}

#define RUN(r, backend, url, ...)                                \
    do {                                                         \
        const char *args_[] = {__VA_ARGS__, NULL};               \
        run_cli((r), (backend), (url), args_);                   \
    } while (0)

static void test_redis_subcommands(void **state)
{
    (void)state;
    const char *url = server->url;
    result r;
    RUN(&r, "redis", url, "flush");
    assert_int_equal(r.status, 0);
    RUN(&r, "redis", url, "get", "greeting");
    assert_int_equal(r.status, 1);
    assert_int_equal(r.out_len, 0);
    RUN(&r, "redis", url, "set", "greeting", "hello world");
    assert_int_equal(r.status, 0);
    RUN(&r, "redis", url, "get", "greeting");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "hello world"); /* raw: no newline added */
    RUN(&r, "redis", url, "set", "t", "v", "--ttl", "100");
    assert_int_equal(r.status, 0);
    RUN(&r, "redis", url, "set", "t2", "-5", "--ttl=7"); /* a value starting with '-' */
    assert_int_equal(r.status, 0);
    RUN(&r, "redis", url, "get", "t2");
    assert_string_equal(r.out, "-5");
    RUN(&r, "redis", url, "incr", "n", "--ttl", "60");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "1\n");
    RUN(&r, "redis", url, "incr", "n");
    assert_string_equal(r.out, "2\n");
    RUN(&r, "redis", url, "incr", "greeting");
    assert_int_equal(r.status, 4); /* the backend refused: not a usage error */
    assert_non_null(strstr(r.err, "not an int"));
    RUN(&r, "redis", url, "delete", "greeting");
    assert_int_equal(r.status, 0);
    RUN(&r, "redis", url, "get", "greeting");
    assert_int_equal(r.status, 1);
    RUN(&r, "redis", url, "delete", "greeting"); /* missing: still success */
    assert_int_equal(r.status, 0);
    RUN(&r, "redis", url, "set", "view:/p:a=1", "x");
    RUN(&r, "redis", url, "set", "view:/p:a=2", "x");
    RUN(&r, "redis", url, "set", "view:/q:", "kept");
    RUN(&r, "redis", url, "delete-prefix", "view:/p:");
    assert_int_equal(r.status, 0);
    RUN(&r, "redis", url, "get", "view:/p:a=2");
    assert_int_equal(r.status, 1);
    RUN(&r, "redis", url, "get", "view:/q:");
    assert_string_equal(r.out, "kept");
    RUN(&r, "redis", url, "delete-prefix");
    assert_int_equal(r.status, 2);

    /* What the CLI wrote is what the library (and Python) reads. */
    nori_backend *b;
    assert_nori(nori_redis_backend_new(url, &b), NORI_OK);
    nori_buf v;
    assert_nori(nori_backend_get(b, "n", &v), NORI_OK);
    assert_string_equal(v.data, "2");
    nori_buf_free(&v);
    RUN(&r, "redis", url, "flush");
    assert_int_equal(r.status, 0);
    assert_nori(nori_backend_get(b, "n", &v), NORI_MISS);
    assert_nori(nori_backend_get(b, "t", &v), NORI_MISS);
    nori_backend_free(b);

    RUN(&r, "redis", url, "check");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "ok: redis redis://:***@127.0.0.1:"));
    assert_null(strstr(r.out, "cli-Secret"));
}

/* get-many: a line per key found, in order; exit 1 when any is missing. */
static void test_get_many(void **state)
{
    (void)state;
    const char *url = server->url;
    result r;
    RUN(&r, "redis", url, "set", "gm:a", "alpha");
    RUN(&r, "redis", url, "set", "gm:b", "beta gamma");
    RUN(&r, "redis", url, "get-many", "gm:a", "gm:b");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "gm:a\talpha\ngm:b\tbeta gamma\n");
    RUN(&r, "redis", url, "get-many", "gm:b", "gm:none", "gm:a");
    assert_int_equal(r.status, 1);
    assert_string_equal(r.out, "gm:b\tbeta gamma\ngm:a\talpha\n");
    RUN(&r, "redis", url, "get-many");
    assert_int_equal(r.status, 2);
    RUN(&r, "redis", url, "get-many", "gm:a", "");
    assert_int_equal(r.status, 2);
    RUN(&r, "redis", "redis://127.0.0.1:1", "get-many", "gm:a");
    assert_int_equal(r.status, 4);
    RUN(&r, "redis", url, "delete", "gm:a");
    RUN(&r, "redis", url, "delete", "gm:b");
}

static void test_memory_subcommands(void **state)
{
    (void)state;
    result r;
    RUN(&r, "memory", NULL, "set", "k", "v");
    assert_int_equal(r.status, 0);
    /* A fresh process has a fresh memory cache. */
    RUN(&r, "memory", NULL, "get", "k");
    assert_int_equal(r.status, 1);
    RUN(&r, "memory", NULL, "incr", "k", "--ttl", "5");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "1\n");
    RUN(&r, "memory", NULL, "delete", "k");
    assert_int_equal(r.status, 0);
    RUN(&r, "memory", NULL, "flush");
    assert_int_equal(r.status, 0);
    RUN(&r, "memory", NULL, "check");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "ok: memory"));
    /* No configuration at all: the memory backend is the default. */
    RUN(&r, NULL, NULL, "check");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "ok: memory"));
}

static void test_usage_errors(void **state)
{
    (void)state;
    result r;
    RUN(&r, "memory", NULL, "--help");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: noricache"));
    assert_non_null(strstr(r.out, "Exit status"));
    RUN(&r, "memory", NULL, "-h");
    assert_int_equal(r.status, 0);
    RUN(&r, "memory", NULL, "--version");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, NORI_VERSION_STRING));
    const char *bad_ttls[] = {"-1", "1.5", "abc", "", " 5", "+5", "5s", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad_ttls / sizeof *bad_ttls; i++) {
        RUN(&r, "memory", NULL, "set", "k", "v", "--ttl", bad_ttls[i]);
        if (r.status != 2)
            fail_msg("--ttl '%s' gave exit %d", bad_ttls[i], r.status);
        assert_non_null(strstr(r.err, "--ttl"));
    }
    RUN(&r, "memory", NULL, "set", "k", "v", "--ttl");
    assert_int_equal(r.status, 2);
    RUN(&r, "memory", NULL, "bogus");
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "unknown command"));
    RUN(&r, "memory", NULL, "get");
    assert_int_equal(r.status, 2);
    RUN(&r, "memory", NULL, "get", "a", "b");
    assert_int_equal(r.status, 2);
    RUN(&r, "memory", NULL, "set", "k");
    assert_int_equal(r.status, 2);
    RUN(&r, "memory", NULL, "get", "k", "--ttl", "5");
    assert_int_equal(r.status, 2);
    RUN(&r, "memory", NULL, "flush", "--force");
    assert_int_equal(r.status, 2);
    /* An empty key is a usage error (2), whatever the command. */
    const char *empty_key[][4] = {{"get", "", NULL}, {"set", "", "v", NULL},
                                  {"set", "", "-", NULL}, {"delete", "", NULL},
                                  {"incr", "", NULL}, {"delete-prefix", "", NULL}};
    for (size_t i = 0; i < sizeof empty_key / sizeof *empty_key; i++) {
        run_cli(&r, "memory", NULL, empty_key[i]);
        if (r.status != 2)
            fail_msg("%s with an empty key gave exit %d: %s", empty_key[i][0], r.status, r.err);
        assert_non_null(strstr(r.err, "empty"));
    }
    RUN(&r, "memory", NULL, "--version", "extra");
    assert_int_equal(r.status, 2);
    assert_int_equal(r.out_len, 0);
    assert_non_null(strstr(r.err, "extra"));
    RUN(&r, "memory", NULL, "--help", "extra");
    assert_int_equal(r.status, 2);
    {
        const char *none[] = {NULL};
        run_cli(&r, "memory", NULL, none);
        assert_int_equal(r.status, 2);
    }
    /* A bad configuration names the variable, and exits 3 whatever the
     * command. */
    static const char *const every[][4] = {{"get", "k", NULL},   {"set", "k", "v", NULL},
                                           {"delete", "k", NULL}, {"incr", "k", NULL},
                                           {"flush", NULL},       {"check", NULL},
                                           {"get-many", "k", NULL}, {"delete-prefix", "p", NULL}};
    for (size_t i = 0; i < sizeof every / sizeof *every; i++) {
        run_cli(&r, "nosuch", NULL, (const char **)every[i]);
        if (r.status != 3)
            fail_msg("%s with CACHE_BACKEND=nosuch gave exit %d: %s", every[i][0], r.status,
                     r.err);
        assert_non_null(strstr(r.err, "CACHE_BACKEND"));
    }
    /* A key over the limit is an invalid argument (2) like an empty one,
     * whatever the command, and is refused before the configuration is
     * read; at the limit it is fine. */
    char big[NORI_MAX_KEY_LEN + 2];
    memset(big, 'k', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    const char *long_key[][4] = {{"get", big, NULL},    {"set", big, "v", NULL},
                                 {"delete", big, NULL}, {"incr", big, NULL},
                                 {"get-many", "k", big}, {"delete-prefix", big, NULL}};
    for (size_t i = 0; i < sizeof long_key / sizeof *long_key; i++) {
        run_cli(&r, "memory", NULL, long_key[i]);
        if (r.status != 2)
            fail_msg("%s with a 1025-byte key gave exit %d: %s", long_key[i][0], r.status,
                     r.err);
        assert_non_null(strstr(r.err, "1024"));
        run_cli(&r, "nosuch", NULL, long_key[i]);
        assert_int_equal(r.status, 2);
    }
    big[NORI_MAX_KEY_LEN] = '\0';
    RUN(&r, "memory", NULL, "get", big);
    assert_int_equal(r.status, 1); /* absent, not refused */
    RUN(&r, "memory", NULL, "get-many", "");
    assert_int_equal(r.status, 2);
}

/* Writes `len` bytes to a file in workdir and returns its path (static buffer). */
static const char *input_file(const void *data, size_t len)
{
    static char path[4200];
    snprintf(path, sizeof path, "%s/stdin.bin", workdir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

/* set KEY - reads the value from stdin to EOF: binary-safe, bounded. */
static void test_set_from_stdin(void **state)
{
    (void)state;
    const char *url = server->url;
    result r;
    const char bin[] = "a\0b\xff\n\0";
    const char *set[] = {"set", "bin", "-", "--ttl", "60", NULL};
    run_cli_with(&r, "redis", url, NULL, input_file(bin, sizeof bin - 1), set);
    assert_int_equal(r.status, 0);
    RUN(&r, "redis", url, "get", "bin");
    assert_int_equal(r.status, 0);
    assert_int_equal(r.out_len, sizeof bin - 1);
    assert_memory_equal(r.out, bin, sizeof bin - 1);
    /* An empty stdin stores an empty value. */
    run_cli_with(&r, "redis", url, NULL, input_file("", 0), set);
    assert_int_equal(r.status, 0);
    RUN(&r, "redis", url, "get", "bin");
    assert_int_equal(r.status, 0);
    assert_int_equal(r.out_len, 0);
    /* Bounded by the value limit: at the limit stored, one byte over refused
     * with the limit named, and nothing written. */
    const char *limit = "CACHE_MAX_VALUE_BYTES=8";
    const char *set2[] = {"set", "lim", "-", NULL};
    run_cli_with(&r, "redis", url, limit, input_file("12345678", 8), set2);
    assert_int_equal(r.status, 0);
    run_cli_with(&r, "redis", url, limit, input_file("123456789", 9), set2);
    assert_int_equal(r.status, 2); /* an invalid argument, like an oversized key */
    assert_non_null(strstr(r.err, "8 bytes"));
    RUN(&r, "redis", url, "get", "lim");
    assert_string_equal(r.out, "12345678");
    /* VALUE "-" always means stdin: a one-byte "-" value is stored through it. */
    run_cli_with(&r, "redis", url, NULL, input_file("-", 1), set2);
    assert_int_equal(r.status, 0);
    RUN(&r, "redis", url, "get", "lim");
    assert_string_equal(r.out, "-");
}

static void test_check_dead_server(void **state)
{
    (void)state;
    nori_test_redis_kill(server);
    char url[400];
    snprintf(url, sizeof url, "%s?connect_timeout_ms=300", server->url);
    result r;
    /* Unreachable: 4 from check as from every other command. */
    RUN(&r, "redis", url, "check");
    assert_int_equal(r.status, 4);
    assert_int_equal(r.out_len, 0);
    assert_non_null(strstr(r.err, "refused"));
    assert_non_null(strstr(r.err, "***"));
    assert_null(strstr(r.err, "cli-Secret"));
    RUN(&r, "redis", url, "get", "k");
    assert_int_equal(r.status, 4);
    RUN(&r, "redis", url, "set", "k", "v");
    assert_int_equal(r.status, 4);
    /* A configuration the library refuses: 3 from check as from get. */
    RUN(&r, "redis", "rediss://localhost", "check");
    assert_int_equal(r.status, 3);
    assert_non_null(strstr(r.err, "TLS"));
    RUN(&r, "redis", "rediss://localhost", "get", "k");
    assert_int_equal(r.status, 3);
    nori_test_redis_restart(server);
    RUN(&r, "redis", url, "check");
    assert_int_equal(r.status, 0);
}

static void test_dotenv(void **state)
{
    (void)state;
    char path[4200], text[600];
    snprintf(path, sizeof path, "%s/.env", workdir);
    snprintf(text, sizeof text, "# from .env\nCACHE_BACKEND=redis\nREDIS_URL=%s\n", server->url);
    nori_test_write_file(path, text);
    result r;
    RUN(&r, NULL, NULL, "set", "fromenv", "yes");
    assert_int_equal(r.status, 0);
    RUN(&r, NULL, NULL, "get", "fromenv");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "yes");
    /* The environment wins over .env. */
    RUN(&r, "memory", NULL, "get", "fromenv");
    assert_int_equal(r.status, 1);
    unlink(path);
}

/* A bad setting is one sentence: the variable, its value, where it came
 * from and what is accepted, with no generic prefix before it. */
static void test_configuration_error_is_one_sentence(void **state)
{
    (void)state;
    char path[4200];
    snprintf(path, sizeof path, "%s/.env", workdir);
    nori_test_write_file(path, "CACHE_MAX_KEYS=12x\n");
    result r;
    RUN(&r, NULL, NULL, "get", "k");
    assert_int_equal(r.status, 3);
    assert_string_equal(r.err, "noricache: CACHE_MAX_KEYS='12x' (from .env) is invalid: expected "
                               "a positive integer up to 4294967296\n");
    RUN(&r, "memroy", NULL, "check");
    assert_int_equal(r.status, 3);
    assert_string_equal(r.err, "noricache: CACHE_BACKEND='memroy' (from environment) is invalid: "
                               "expected 'memory', 'redis' or 'shm'\n");
    unlink(path);
}

/* check names the CACHE_* / REDIS_* variables it does not know, from the
 * environment and .env, with the nearest known name; they are warnings,
 * not errors (another program may own a CACHE_* name). */
static void test_check_names_unknown_variables(void **state)
{
    (void)state;
    char path[4200];
    snprintf(path, sizeof path, "%s/.env", workdir);
    nori_test_write_file(path, "CACHE_BACKND=redis\nCACHE_DIR=/var/cache/app\nOTHER=1\n");
    result r;
    const char *check[] = {"check", NULL};
    run_cli_with(&r, NULL, NULL, "REDIS_UR=redis://127.0.0.1:1", NULL, check);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "ok: memory"));
    assert_non_null(strstr(r.err, "noricache: warning: REDIS_UR (from environment) is not a "
                                  "nori-cache variable; did you mean REDIS_URL?\n"));
    assert_non_null(strstr(r.err, "noricache: warning: CACHE_BACKND (from .env) is not a "
                                  "nori-cache variable; did you mean CACHE_BACKEND?\n"));
    assert_non_null(strstr(r.err, "noricache: warning: CACHE_DIR (from .env) is not a "
                                  "nori-cache variable\n"));
    assert_null(strstr(r.err, "OTHER"));
    /* Known names are never reported. */
    nori_test_write_file(path, "CACHE_BACKEND=memory\nCACHE_NEAR_MAX_TTL_MS=100\n");
    RUN(&r, NULL, NULL, "check");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, "");
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_configuration_error_is_one_sentence),
        cmocka_unit_test(test_check_names_unknown_variables),
        cmocka_unit_test(test_redis_subcommands),
        cmocka_unit_test(test_get_many),
        cmocka_unit_test(test_memory_subcommands),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_set_from_stdin),
        cmocka_unit_test(test_check_dead_server),
        cmocka_unit_test(test_dotenv),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
