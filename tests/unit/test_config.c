// SPDX-License-Identifier: MIT
/*
 * Configuration: environment and .env parsing, precedence, every refused
 * value, the Redis URL parser, and the process-wide default backend.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"
#include "redis/wire/url.h"
#include "test_support.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char *workdir;
static char original_cwd[4096];

static void clear_env(void)
{
    unsetenv("CACHE_BACKEND");
    unsetenv("CACHE_MAX_KEYS");
    unsetenv("CACHE_MAX_VALUE_BYTES");
    unsetenv("REDIS_URL");
    unsetenv("CACHE_NEAR_MAX_KEYS");
    unsetenv("CACHE_NEAR_MAX_BYTES");
    unsetenv("CACHE_NEAR_MAX_TTL_MS");
    unsetenv("CACHE_SHM_NAME");
    unsetenv("CACHE_MAX_BYTES");
}

/* Each test runs in a fresh empty working directory with a clean environment. */
static int setup(void **state)
{
    (void)state;
    clear_env();
    workdir = nori_test_mkdtemp();
    if (getcwd(original_cwd, sizeof original_cwd) == NULL || chdir(workdir) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    nori_reset_backend();
    clear_env();
    int rc = chdir(original_cwd);
    nori_test_rmtree(workdir);
    free(workdir);
    return rc;
}

static void write_dotenv(const char *text)
{
    nori_test_write_file(".env", text);
}

static void assert_error_mentions(const char *a, const char *b)
{
    const char *msg = nori_last_error();
    if (strstr(msg, a) == NULL || (b != NULL && strstr(msg, b) == NULL))
        print_error("message was: %s\n", msg);
    assert_non_null(strstr(msg, a));
    if (b != NULL)
        assert_non_null(strstr(msg, b));
}

/* ---- defaults and precedence ---- */

static void test_defaults(void **state)
{
    (void)state;
    nori__config cfg;
    assert_nori(nori__config_load(NULL, &cfg), NORI_OK);
    assert_string_equal(cfg.backend, "memory");
    assert_int_equal(cfg.max_keys, 10000);
    assert_int_equal(cfg.max_value, NORI_DEFAULT_MAX_VALUE);
    assert_string_equal(cfg.redis_url, "redis://localhost:6379");
}

static void test_dotenv_read(void **state)
{
    (void)state;
    write_dotenv("CACHE_MAX_KEYS=50000\nREDIS_URL=redis://cache.internal:6380/2\n");
    nori__config cfg;
    assert_nori(nori__config_load(NULL, &cfg), NORI_OK);
    assert_int_equal(cfg.max_keys, 50000);
    assert_string_equal(cfg.redis_url, "redis://cache.internal:6380/2");
}

static void test_environment_wins(void **state)
{
    (void)state;
    write_dotenv("CACHE_MAX_KEYS=50000\nCACHE_BACKEND=rediss\n");
    setenv("CACHE_MAX_KEYS", "7", 1);
    setenv("CACHE_BACKEND", "memory", 1); /* the bad .env value is shadowed */
    nori__config cfg;
    assert_nori(nori__config_load(NULL, &cfg), NORI_OK);
    assert_int_equal(cfg.max_keys, 7);
    assert_string_equal(cfg.backend, "memory");
}

static void test_dotenv_syntax(void **state)
{
    (void)state;
    write_dotenv("# a comment\n"
                 "\n"
                 "   \n"
                 "export CACHE_BACKEND=memory\n"
                 "  CACHE_MAX_KEYS  =   \"123\"   # quoted, spaced, commented\n"
                 "OTHER_VAR='ignored # not a comment'\n"
                 "CACHE_MAX_VALUE_BYTES = 4096 # trailing comment\r\n"
                 "REDIS_URL='redis://:p%23ss@host:1/3'");
    nori__config cfg;
    assert_nori(nori__config_load(NULL, &cfg), NORI_OK);
    assert_string_equal(cfg.backend, "memory");
    assert_int_equal(cfg.max_keys, 123);
    assert_int_equal(cfg.max_value, 4096);
    assert_string_equal(cfg.redis_url, "redis://:p%23ss@host:1/3");
}

static void test_dotenv_later_line_wins(void **state)
{
    (void)state;
    write_dotenv("CACHE_MAX_KEYS=1\nCACHE_MAX_KEYS=2\n");
    nori__config cfg;
    assert_nori(nori__config_load(NULL, &cfg), NORI_OK);
    assert_int_equal(cfg.max_keys, 2);
}

typedef struct {
    char names[8][64];
    char values[8][128];
    int n;
} collected;

static int collect(const char *name, const char *value, void *ud)
{
    collected *c = ud;
    if (c->n < 8) {
        snprintf(c->names[c->n], 64, "%s", name);
        snprintf(c->values[c->n], 128, "%s", value);
        c->n++;
    }
    return 0;
}

static void test_dotenv_parser_values(void **state)
{
    (void)state;
    const char *text = "A=plain\n"
                       "B=\"double \\\"q\\\" \\n end\"\n"
                       "C='single \\n literal'\n"
                       "D=\n"
                       "E=with#hash\n"
                       "F=\"\"\n"
                       "export\tG = spaced value  \n";
    collected c = {0};
    assert_nori(nori__dotenv_parse(text, strlen(text), ".env", collect, &c), NORI_OK);
    assert_int_equal(c.n, 7);
    assert_string_equal(c.names[0], "A");
    assert_string_equal(c.values[0], "plain");
    assert_string_equal(c.values[1], "double \"q\" \n end");
    assert_string_equal(c.values[2], "single \\n literal");
    assert_string_equal(c.values[3], "");
    assert_string_equal(c.values[4], "with#hash");
    assert_string_equal(c.values[5], "");
    assert_string_equal(c.names[6], "G");
    assert_string_equal(c.values[6], "spaced value");
}

static void test_dotenv_malformed_lines(void **state)
{
    (void)state;
    const char *bad[] = {
        "GOOD=1\nno equals sign\n",  "=value\n",         "1NAME=x\n",
        "A=\"unterminated\n",        "A='x' trailing\n", "A B=1\n",
        "export\t\t",               "export  \nA=1\n", /* found by fuzz_dotenv */
    };
    const int line[] = {2, 1, 1, 1, 1, 1, 1, 1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        collected c = {0};
        assert_nori(nori__dotenv_parse(bad[i], strlen(bad[i]), "my.env", collect, &c),
                    NORI_EINVAL);
        char where[32];
        snprintf(where, sizeof where, "my.env line %d", line[i]);
        assert_error_mentions(where, NULL);
    }
    const char nul[] = "A=1\0B=2";
    collected c = {0};
    assert_nori(nori__dotenv_parse(nul, sizeof nul - 1, ".env", collect, &c), NORI_EINVAL);
    assert_error_mentions("NUL", NULL);
}

static void test_malformed_dotenv_fails_config(void **state)
{
    (void)state;
    write_dotenv("CACHE_BACKEND=memory\nthis is not an assignment\n");
    nori__config cfg;
    assert_nori(nori__config_load(NULL, &cfg), NORI_EINVAL);
    assert_error_mentions(".env line 2", NULL);
    nori_backend *b = NULL;
    assert_nori(nori_backend_from_env(&b), NORI_EINVAL);
    assert_null(b);
}

/*
 * A .env that is not a regular file is refused promptly, naming it. A FIFO
 * used to block the open (and the read) until a writer came: the call runs
 * in a thread with a bounded wait, and a timeout unblocks it by opening the
 * FIFO for writing so that a failing run still ends.
 */
typedef struct {
    int rc;
    char message[512];
    nori_backend *backend;
} from_env_result;

static void *from_env_thread(void *arg)
{
    from_env_result *r = arg;
    r->rc = nori_backend_from_env(&r->backend);
    snprintf(r->message, sizeof r->message, "%s", nori_last_error());
    return NULL;
}

static void expect_dotenv_refused_promptly(const char *kind)
{
    from_env_result r = {0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, from_env_thread, &r), 0);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 5;
    int jr = pthread_timedjoin_np(t, NULL, &deadline);
    if (jr != 0) {
        int fd = open(".env", O_WRONLY | O_NONBLOCK); /* lets a blocked reader go */
        if (fd >= 0)
            close(fd);
        pthread_join(t, NULL);
        nori_backend_free(r.backend);
        fail_msg("nori_backend_from_env blocked on a .env that is a %s", kind);
    }
    if (r.rc != NORI_EINVAL || strstr(r.message, ".env") == NULL ||
        strstr(r.message, "not a regular file") == NULL)
        print_error("%s: rc %d, message: %s\n", kind, r.rc, r.message);
    assert_int_equal(r.rc, NORI_EINVAL);
    assert_null(r.backend);
    assert_non_null(strstr(r.message, ".env"));
    assert_non_null(strstr(r.message, "not a regular file"));
    assert_non_null(strstr(r.message, kind));
}

static void test_dotenv_not_regular_file(void **state)
{
    (void)state;
    assert_int_equal(mkfifo(".env", 0600), 0);
    expect_dotenv_refused_promptly("FIFO");
    assert_int_equal(unlink(".env"), 0);
    assert_int_equal(mkdir(".env", 0700), 0);
    expect_dotenv_refused_promptly("directory");
    assert_int_equal(rmdir(".env"), 0);
    /* A symlink to a regular file is still a regular file. */
    nori_test_write_file("real.env", "CACHE_MAX_KEYS=7\n");
    assert_int_equal(symlink("real.env", ".env"), 0);
    nori__config cfg;
    assert_nori(nori__config_load(NULL, &cfg), NORI_OK);
    assert_int_equal(cfg.max_keys, 7);
    /* A symlink to a FIFO is refused like the FIFO. */
    assert_int_equal(unlink(".env"), 0);
    assert_int_equal(mkfifo("pipe", 0600), 0);
    assert_int_equal(symlink("pipe", ".env"), 0);
    expect_dotenv_refused_promptly("FIFO");
}

/* ---- refused values ---- */

static void expect_refused(const char *var, const char *value, const char *hint)
{
    clear_env();
    setenv(var, value, 1);
    nori__config cfg;
    assert_nori(nori__config_load(NULL, &cfg), NORI_EINVAL);
    char quoted[300];
    snprintf(quoted, sizeof quoted, "'%s'", value);
    assert_error_mentions(var, hint);
    if (strstr(value, "@") == NULL) /* URLs with passwords are shown masked */
        assert_error_mentions(quoted, NULL);
    nori_backend *b = NULL;
    assert_nori(nori_backend_from_env(&b), NORI_EINVAL);
    assert_null(b); /* no silent fallback to another backend */
}

static void test_bad_backend_names(void **state)
{
    (void)state;
    expect_refused("CACHE_BACKEND", "rediss", "expected 'memory', 'redis' or 'shm'");
    expect_refused("CACHE_BACKEND", "", "expected");
    expect_refused("CACHE_BACKEND", "Memory", "expected");
    expect_refused("CACHE_BACKEND", "memcached", "expected");
    expect_refused("CACHE_BACKEND", " redis", "expected");
}

static void test_bad_max_keys(void **state)
{
    (void)state;
    const char *bad[] = {"abc", "0", "-5", "12x", "", " 5", "5 ", "+5", "1.5",
                         "99999999999999999999999", "4294967297"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_refused("CACHE_MAX_KEYS", bad[i], "positive integer");
}

static void test_bad_max_keys_in_dotenv_names_file(void **state)
{
    (void)state;
    write_dotenv("CACHE_MAX_KEYS=12x\n");
    nori__config cfg;
    assert_nori(nori__config_load(NULL, &cfg), NORI_EINVAL);
    assert_error_mentions("CACHE_MAX_KEYS='12x'", "from .env");
}

static void test_bad_max_value(void **state)
{
    (void)state;
    expect_refused("CACHE_MAX_VALUE_BYTES", "0", "positive integer");
    expect_refused("CACHE_MAX_VALUE_BYTES", "536870913", "positive integer");
    expect_refused("CACHE_MAX_VALUE_BYTES", "1k", "positive integer");
}

static void test_near_cache_variables(void **state)
{
    (void)state;
    nori__config cfg;
    assert_nori(nori__config_load(NULL, &cfg), NORI_OK);
    assert_int_equal(cfg.near_max_keys, 0); /* off by default */
    assert_int_equal(cfg.near_max_bytes, 0);
    setenv("CACHE_NEAR_MAX_KEYS", "5000", 1);
    setenv("CACHE_NEAR_MAX_BYTES", "1099511627776", 1);
    assert_nori(nori__config_load(NULL, &cfg), NORI_OK);
    assert_int_equal(cfg.near_max_keys, 5000);
    assert_int_equal(cfg.near_max_bytes, (size_t)1 << 40);
    setenv("CACHE_NEAR_MAX_KEYS", "0", 1);
    assert_nori(nori__config_load(NULL, &cfg), NORI_OK);
    assert_int_equal(cfg.near_max_keys, 0);
    clear_env();
    const char *bad[] = {"abc", "-1", "1.5", "", " 5", "5 ", "+5", "1k", "4294967297",
                         "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_refused("CACHE_NEAR_MAX_KEYS", bad[i], "expected 0 (off) or a positive integer");
    expect_refused("CACHE_NEAR_MAX_BYTES", "1099511627777", "up to 1099511627776");
    expect_refused("CACHE_NEAR_MAX_BYTES", "-5", "expected 0 (off)");
    /* The cap on a local copy's life: milliseconds, 1 .. one day. */
    clear_env();
    assert_nori(nori__config_load(NULL, &cfg), NORI_OK);
    assert_int_equal(cfg.near_max_ttl_ms, 60000);
    setenv("CACHE_NEAR_MAX_TTL_MS", "1500", 1);
    assert_nori(nori__config_load(NULL, &cfg), NORI_OK);
    assert_int_equal(cfg.near_max_ttl_ms, 1500);
    setenv("CACHE_NEAR_MAX_TTL_MS", "86400000", 1);
    assert_nori(nori__config_load(NULL, &cfg), NORI_OK);
    assert_int_equal(cfg.near_max_ttl_ms, 86400000);
    const char *bad_ttl[] = {"0", "-1", "", "1.5", "5s", " 5", "+5", "86400001",
                             "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad_ttl / sizeof bad_ttl[0]; i++) {
        expect_refused("CACHE_NEAR_MAX_TTL_MS", bad_ttl[i],
                       "expected a number of milliseconds from 1 to 86400000");
        assert_error_mentions("from environment", NULL);
    }
    clear_env();
    write_dotenv("CACHE_NEAR_MAX_TTL_MS=1m\n");
    assert_nori(nori__config_load(NULL, &cfg), NORI_EINVAL);
    assert_error_mentions("CACHE_NEAR_MAX_TTL_MS='1m'", "from .env");
    /* Validated whichever backend is selected (memory here: the default). */
    nori_backend *mb = NULL;
    assert_nori(nori_backend_from_env(&mb), NORI_EINVAL);
    assert_null(mb);
    clear_env();
    write_dotenv("CACHE_NEAR_MAX_BYTES=64M\n");
    assert_nori(nori__config_load(NULL, &cfg), NORI_EINVAL);
    assert_error_mentions("CACHE_NEAR_MAX_BYTES='64M'", "from .env");
    /* With Redis, either variable turns the near cache on (the backend
     * connects lazily: nothing needs to listen on the port for this). */
    write_dotenv("CACHE_NEAR_MAX_KEYS=100\n");
    setenv("CACHE_BACKEND", "redis", 1);
    setenv("REDIS_URL", "redis://127.0.0.1:1?connect_timeout_ms=100", 1);
    nori_backend *b = NULL;
    assert_nori(nori_backend_from_env(&b), NORI_OK);
    nori_near_stats ns;
    assert_nori(nori_backend_get_near_stats(b, &ns), NORI_OK);
    assert_int_equal(ns.active, 0); /* nothing to prove tracking with */
    nori_backend_free(b);
    /* Without it, no near cache. */
    write_dotenv("CACHE_NEAR_MAX_KEYS=0\n");
    assert_nori(nori_backend_from_env(&b), NORI_OK);
    assert_nori(nori_backend_get_near_stats(b, &ns), NORI_EINVAL);
    nori_backend_free(b);
    /* The memory backend ignores it. */
    write_dotenv("CACHE_NEAR_MAX_KEYS=100\n");
    setenv("CACHE_BACKEND", "memory", 1);
    assert_nori(nori_backend_from_env(&b), NORI_OK);
    assert_nori(nori_backend_get_near_stats(b, &ns), NORI_EINVAL);
    nori_backend_free(b);
}

static void test_bad_redis_urls(void **state)
{
    (void)state;
    expect_refused("REDIS_URL", "rediss://host:6379", "TLS");
    expect_refused("REDIS_URL", "http://host", "scheme");
    expect_refused("REDIS_URL", "", "empty");
    expect_refused("REDIS_URL", "redis://host:port", "port");
    expect_refused("REDIS_URL", "redis://host:70000", "port");
    expect_refused("REDIS_URL", "redis://host/x", "database");
    expect_refused("REDIS_URL", "redis://:@host", "password is empty");
    expect_refused("REDIS_URL", "redis://host?timeout_ms=0", "timeout_ms");
    expect_refused("REDIS_URL", "redis://host?bogus=1", "unknown query option");
    expect_refused("REDIS_URL", "unix://relative.sock", "absolute");
    expect_refused("REDIS_URL", "redis://[::1", "']'");
    /* The password never appears in the message. */
    expect_refused("REDIS_URL", "redis://user:s3cret@host:99999", "port");
    assert_null(strstr(nori_last_error(), "s3cret"));
    assert_error_mentions("user:***@host", NULL);
    /* An unencoded '#', '/' or '?' in a password is refused, still masked. */
    expect_refused("REDIS_URL", "redis://:p#ss/wd?x@host", "malformed");
    assert_null(strstr(nori_last_error(), "ss/wd"));
    assert_error_mentions("redis://:***@host", NULL);
}

/* ---- the Redis URL parser ---- */

static void test_redis_url_forms(void **state)
{
    (void)state;
    nori__redis_url u;
    assert_nori(nori__redis_url_parse("redis://localhost", &u), NORI_OK);
    assert_false(u.is_unix);
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_null(u.user);
    assert_null(u.password);
    assert_int_equal(u.connect_timeout_ms, NORI_REDIS_DEFAULT_CONNECT_TIMEOUT_MS);
    assert_int_equal(u.timeout_ms, NORI_REDIS_DEFAULT_TIMEOUT_MS);
    nori__redis_url_free(&u);

    assert_nori(nori__redis_url_parse("redis://al%40ice:p%3Ass@10.0.0.5:6380/4?timeout_ms=250"
                                      "&connect_timeout_ms=100&pool_size=3",
                                      &u),
                NORI_OK);
    assert_string_equal(u.user, "al@ice");
    assert_string_equal(u.password, "p:ss");
    assert_string_equal(u.host, "10.0.0.5");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 4);
    assert_int_equal(u.timeout_ms, 250);
    assert_int_equal(u.connect_timeout_ms, 100);
    assert_int_equal(u.pool_size, 3);
    assert_null(strstr(u.display, "p%3Ass"));
    assert_string_equal(u.display, "redis://al%40ice:***@10.0.0.5:6380/4?timeout_ms=250"
                                   "&connect_timeout_ms=100&pool_size=3");
    nori__redis_url_free(&u);

    assert_nori(nori__redis_url_parse("redis://:only-password@[::1]:7000", &u), NORI_OK);
    assert_null(u.user);
    assert_string_equal(u.password, "only-password");
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 7000);
    assert_string_equal(u.display, "redis://:***@[::1]:7000");
    nori__redis_url_free(&u);

    assert_nori(nori__redis_url_parse("unix:///run/redis/redis.sock?db=3", &u), NORI_OK);
    assert_true(u.is_unix);
    assert_string_equal(u.path, "/run/redis/redis.sock");
    assert_int_equal(u.db, 3);
    nori__redis_url_free(&u);

    assert_nori(nori__redis_url_parse("redis://host?db=1", &u), NORI_EINVAL);
    assert_nori(nori__redis_url_parse("redis://host:6379/1#frag", &u), NORI_EINVAL);
    assert_nori(nori__redis_url_parse("redis://ho st", &u), NORI_EINVAL);
    assert_nori(nori__redis_url_parse("redis://user:pa%zzss@host", &u), NORI_EINVAL);
    assert_null(strstr(nori_last_error(), "pa%zzss"));
    assert_nori(nori__redis_url_parse("redis://user:pa%4@host", &u), NORI_EINVAL);
    assert_nori(nori__redis_url_parse(NULL, &u), NORI_EINVAL);
}

/* ---- the default backend ---- */

static void test_default_backend_from_dotenv(void **state)
{
    (void)state;
    write_dotenv("CACHE_MAX_KEYS=2\n");
    assert_nori(nori_cache_set("a", "1", 1, 0), NORI_OK);
    assert_nori(nori_cache_set("b", "2", 1, 0), NORI_OK);
    assert_nori(nori_cache_set("c", "3", 1, 0), NORI_OK);
    nori_buf out;
    assert_nori(nori_cache_get("a", &out), NORI_MISS); /* max_keys 2 from .env */
    assert_nori(nori_cache_get("c", &out), NORI_OK);
    assert_string_equal(out.data, "3");
    nori_buf_free(&out);
    int64_t n;
    assert_nori(nori_cache_incr("n", 0, &n), NORI_OK);
    assert_int_equal(n, 1);
    assert_nori(nori_cache_delete("c"), NORI_OK);
    assert_nori(nori_cache_get("c", &out), NORI_MISS);
    assert_nori(nori_cache_flush(), NORI_OK);
    assert_nori(nori_cache_get("n", &out), NORI_MISS);
}

static void test_default_backend_reset_rereads(void **state)
{
    (void)state;
    nori_backend *first, *again;
    assert_nori(nori_get_backend(&first), NORI_OK);
    assert_nori(nori_get_backend(&again), NORI_OK);
    assert_ptr_equal(first, again); /* built once */
    assert_nori(nori_cache_set("k", "v", 1, 0), NORI_OK);

    nori_reset_backend();
    setenv("CACHE_BACKEND", "nope", 1);
    nori_backend *b = NULL;
    assert_nori(nori_get_backend(&b), NORI_EINVAL); /* rebuilt from the new environment */
    assert_null(b);
    assert_nori(nori_cache_set("k", "v", 1, 0), NORI_EINVAL);
    assert_error_mentions("CACHE_BACKEND='nope'", NULL);

    setenv("CACHE_BACKEND", "memory", 1); /* fixed: works again */
    nori_buf out;
    assert_nori(nori_cache_get("k", &out), NORI_MISS); /* a new, empty store */
}

#define RACERS 8

static void *race_get_backend(void *arg)
{
    nori_backend **slot = arg;
    if (nori_get_backend(slot) != NORI_OK)
        *slot = NULL;
    return NULL;
}

static void test_default_backend_concurrent_first_use(void **state)
{
    (void)state;
    pthread_t threads[RACERS];
    nori_backend *got[RACERS];
    for (int i = 0; i < RACERS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, race_get_backend, &got[i]), 0);
    for (int i = 0; i < RACERS; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < RACERS; i++) {
        assert_non_null(got[i]);
        assert_ptr_equal(got[i], got[0]); /* one backend, built once */
    }
}

static void test_redis_selected_by_env(void **state)
{
    (void)state;
    /* Valid configuration selects the Redis backend (no connection is made
     * at creation); a bad REDIS_URL with CACHE_BACKEND=redis is refused. */
    setenv("CACHE_BACKEND", "redis", 1);
    setenv("REDIS_URL", "redis://127.0.0.1:1", 1);
    nori_backend *b = NULL;
    assert_nori(nori_backend_from_env(&b), NORI_OK); /* lazy: nothing listens on port 1 */
    assert_string_equal(nori_backend_kind(b), "redis");
    assert_nori(nori_backend_verify(b), NORI_EBACKEND); /* the first use finds out */
    assert_error_mentions("redis://127.0.0.1:1", NULL);
    nori_backend_free(b);
    b = NULL;
    setenv("REDIS_URL", "rediss://127.0.0.1:1", 1);
    assert_nori(nori_backend_from_env(&b), NORI_EINVAL);
}

/* CACHE_BACKEND=shm: the segment CACHE_SHM_NAME (default one per user),
 * sized by CACHE_MAX_KEYS and CACHE_MAX_BYTES; a bad name is refused
 * naming the variable, whatever the backend. */
static void test_shm_selected_by_env(void **state)
{
    (void)state;
    nori__config cfg;
    assert_nori(nori__config_load(NULL, &cfg), NORI_OK);
    char want[64];
    snprintf(want, sizeof want, "nori-cache-%ld", (long)geteuid());
    assert_string_equal(cfg.shm_name, want);

    char name[64];
    snprintf(name, sizeof name, "nori-test-config-%ld", (long)getpid());
    (void)nori_shm_backend_unlink(name);
    setenv("CACHE_BACKEND", "shm", 1);
    setenv("CACHE_SHM_NAME", name, 1);
    setenv("CACHE_MAX_KEYS", "100", 1);
    setenv("CACHE_MAX_BYTES", "1048576", 1);
    assert_nori(nori_cache_set("k", "v", 1, 0), NORI_OK);
    nori_backend *b = NULL;
    assert_nori(nori_get_backend(&b), NORI_OK);
    assert_string_equal(nori_backend_kind(b), "shm");
    nori_shm_stats ss;
    assert_nori(nori_shm_backend_get_stats(b, &ss), NORI_OK);
    assert_int_equal(ss.max_keys, 100);
    assert_int_equal(ss.max_bytes, 1048576);
    /* Another handle from the same environment sees the same entries. */
    nori_backend *other = NULL;
    assert_nori(nori_backend_from_env(&other), NORI_OK);
    nori_buf out;
    assert_nori(nori_backend_get(other, "k", &out), NORI_OK);
    assert_string_equal(out.data, "v");
    nori_buf_free(&out);
    nori_backend_free(other);
    nori_reset_backend();
    /* The byte bound is the arena's size: 0 (no bound) is refused. */
    setenv("CACHE_MAX_BYTES", "0", 1);
    assert_nori(nori_backend_from_env(&other), NORI_EINVAL);
    assert_error_mentions("CACHE_MAX_BYTES", NULL);
    assert_nori(nori_shm_backend_unlink(name), NORI_OK);
    expect_refused("CACHE_SHM_NAME", "a/b", "'/'");
    expect_refused("CACHE_SHM_NAME", "", "empty");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dotenv_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_environment_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dotenv_syntax, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dotenv_later_line_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dotenv_parser_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dotenv_malformed_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_dotenv_fails_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dotenv_not_regular_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_backend_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shm_selected_by_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_max_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_max_keys_in_dotenv_names_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_max_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_near_cache_variables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_redis_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_url_forms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_backend_from_dotenv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_backend_reset_rereads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_backend_concurrent_first_use, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_redis_selected_by_env, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
