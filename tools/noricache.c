// SPDX-License-Identifier: MIT
/*
 * noricache: the command-line tool of libnoricache (README, "The noricache
 * command"; man page tools/noricache.1).
 *
 * Uses the library's configuration (environment, then .env in the working
 * directory): CACHE_BACKEND, CACHE_MAX_KEYS, REDIS_URL, CACHE_MAX_VALUE_BYTES.
 * With the memory backend each invocation is its own empty cache, so only
 * Redis makes values outlive the process; that is the useful case.
 */
#include "config.h"
#include "redis/wire/url.h"
#include "redis/route/url_topology.h"

#include <nori/cache.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One rule, whatever the command: the exit status says what kind of thing
 * went wrong, never which command ran. */
enum {
    EXIT_OK = 0,
    EXIT_MISS = 1,    /* get / get-many: a key is absent or expired; nothing else */
    EXIT_USAGE = 2,   /* the command line: unknown command or option, missing or extra
                         argument, or an argument the cache refuses (empty or oversized
                         key, bad --ttl, value over the limit) */
    EXIT_CONFIG = 3,  /* the configuration (environment, .env) is invalid */
    EXIT_BACKEND = 4, /* the backend failed (unreachable, timeout, error reply, wrong
                         type), out of memory, or stdin/stdout failed */
};

static const char USAGE[] =
    "usage: noricache [--help | --version] COMMAND [ARGS]\n"
    "\n"
    "Commands:\n"
    "  get KEY                  print the value, raw bytes, no newline added\n"
    "  get-many KEY...          one line \"KEY<TAB>VALUE\" per key found, in order, in one\n"
    "                           call (Redis: one round trip); exit 1 if any key is missing\n"
    "  set KEY VALUE [--ttl N]  store VALUE; N seconds to live (default 0 = no expiry);\n"
    "                           VALUE \"-\" reads the value from stdin up to EOF, byte\n"
    "                           for byte (NULs too), at most the value limit\n"
    "  delete KEY               remove KEY (a missing key is not an error)\n"
    "  delete-prefix PREFIX     remove every key that starts with PREFIX (literal, no glob)\n"
    "  flush                    remove every key of this cache (Redis: only cache:*)\n"
    "  incr KEY [--ttl N]       increment the counter and print the new value;\n"
    "                           N applies only when the counter is created\n"
    "  check                    verify the configured backend (Redis: INFO, >= 6.0) and print\n"
    "                           \"ok: <kind> <url>\" (the password shown as ***); warn about\n"
    "                           CACHE_* / REDIS_* names it does not know (misspellings)\n"
    "\n"
    "Options may also be written --ttl=N; N is digits only. \"--\" ends options.\n"
    "\n"
    "Configuration (environment first, then ./.env):\n"
    "  CACHE_BACKEND   memory | redis | shm (default memory; memory lives only as\n"
    "                  long as this process, shm is the machine's shared segment)\n"
    "  CACHE_SHM_NAME  the shm segment (default nori-cache-<uid>)\n"
    "  REDIS_URL       redis://[[user]:password@]host[:port][/db][?timeout_ms=N&...]\n"
    "                  or unix:///path.sock[?db=N&user=U&password=P]\n"
    "                  (default redis://localhost:6379)\n"
    "  CACHE_MAX_KEYS, CACHE_MAX_VALUE_BYTES\n"
    "\n"
    "Exit status (the same rule for every command):\n"
    "  0  success\n"
    "  1  not found: get, or get-many, met a key that is absent or expired\n"
    "  2  usage: unknown command or option, missing or extra argument, or an\n"
    "     invalid argument: empty KEY or PREFIX, KEY or PREFIX over 1024 bytes,\n"
    "     bad --ttl, a value over the value limit (CACHE_MAX_VALUE_BYTES)\n"
    "  3  configuration: CACHE_BACKEND, REDIS_URL, CACHE_MAX_* (environment or\n"
    "     .env) is invalid\n"
    "  4  backend: unreachable, timed out, replied with an error, or the value\n"
    "     is not an integer (incr); check fails with 4 too. Also out of memory\n"
    "     and a failed read of stdin or write to stdout\n";

static int usage_error(const char *fmt, const char *arg)
{
    fputs("noricache: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\nTry 'noricache --help'.\n", stderr);
    return EXIT_USAGE;
}

/* A library code met while running a command: an argument it refuses is
 * the command line's fault (2), anything else the backend's (4). */
/* The library's detail names what was wrong; its generic text only when
 * there is no detail. */
static const char *detail(int rc)
{
    const char *d = nori_last_error();
    return d[0] != '\0' ? d : nori_strerror(rc);
}

static int backend_error(const char *what, int rc)
{
    fprintf(stderr, "noricache: %s: %s\n", what, detail(rc));
    return rc == NORI_EINVAL || rc == NORI_ETOOBIG ? EXIT_USAGE : EXIT_BACKEND;
}

/* nori_backend_from_env failed: a bad setting (3), unless the failure was
 * not the configuration's (out of memory, a backend that refused). */
static int config_error(int rc)
{
    fprintf(stderr, "noricache: %s\n", detail(rc));
    return rc == NORI_ENOMEM || rc == NORI_EBACKEND ? EXIT_BACKEND : EXIT_CONFIG;
}

/* A KEY or PREFIX argument: non-empty and within NORI_MAX_KEY_LEN, checked
 * before any backend exists so that the rule does not depend on it. */
static int check_key_arg(const char *cmd, const char *key, bool prefix)
{
    if (key[0] == '\0')
        return usage_error(prefix ? "%s: the prefix is empty (to remove every key, use flush)"
                                  : "%s: the key is empty",
                           cmd);
    size_t n = strlen(key);
    if (n > NORI_MAX_KEY_LEN) {
        fprintf(stderr,
                "noricache: %s: the %s is %zu bytes, the limit is %d\n"
                "Try 'noricache --help'.\n",
                cmd, prefix ? "prefix" : "key", n, NORI_MAX_KEY_LEN);
        return EXIT_USAGE;
    }
    return 0;
}

/* Strict: decimal digits only, no sign or spaces, at most NORI_MAX_TTL. */
static bool parse_ttl(const char *s, int64_t *out)
{
    if (*s == '\0' || strlen(s) > 18)
        return false;
    int64_t v = 0;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (*p - '0');
    }
    if (v > NORI_MAX_TTL)
        return false;
    *out = v;
    return true;
}

typedef struct {
    const char *pos[3]; /* positional arguments after the command */
    int npos;
    int64_t ttl;
    bool has_ttl;
} args;

/* Splits argv[first..] into positionals and --ttl. Returns 0 or EXIT_USAGE. */
static int parse_args(int argc, char **argv, int first, args *a)
{
    memset(a, 0, sizeof *a);
    bool options_done = false;
    for (int i = first; i < argc; i++) {
        const char *s = argv[i];
        const char *ttl_text = NULL;
        if (!options_done && strcmp(s, "--") == 0) {
            options_done = true;
            continue;
        }
        if (!options_done && strcmp(s, "--ttl") == 0) {
            if (i + 1 >= argc)
                return usage_error("%s needs a value", "--ttl");
            ttl_text = argv[++i];
        } else if (!options_done && strncmp(s, "--ttl=", 6) == 0) {
            ttl_text = s + 6;
        } else if (!options_done && strncmp(s, "--", 2) == 0) {
            return usage_error("unknown option '%s'", s);
        } else {
            if (a->npos == 3)
                return usage_error("unexpected argument '%s'", s);
            a->pos[a->npos++] = s;
            continue;
        }
        if (!parse_ttl(ttl_text, &a->ttl))
            return usage_error("--ttl '%s' is not a number of seconds (digits only, at most "
                               "100 years)",
                               ttl_text);
        a->has_ttl = true;
    }
    return 0;
}

/* `n` positionals; with `key_first` the first one is a KEY (or PREFIX), which
 * may not be empty: caught here as a usage error, before any backend. */
static int want_args(const char *cmd, const args *a, int n, bool ttl_ok, bool key_first)
{
    if (a->has_ttl && !ttl_ok)
        return usage_error("%s takes no --ttl", cmd);
    if (a->npos < n)
        return usage_error("%s: missing argument", cmd);
    if (a->npos > n)
        return usage_error("unexpected argument '%s'", a->pos[n]);
    if (key_first)
        return check_key_arg(cmd, a->pos[0], strcmp(cmd, "delete-prefix") == 0);
    return 0;
}

/*
 * Reads stdin to EOF into *out (malloc'd), at most `limit` bytes: one byte
 * more is refused without storing anything. The buffer grows as data comes,
 * so a small value costs little whatever the limit.
 */
static int read_stdin_value(size_t limit, char **out, size_t *out_len)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        fputs("noricache: set: out of memory reading stdin\n", stderr);
        return EXIT_BACKEND;
    }
    for (;;) {
        if (len == cap) {
            if (cap > limit) /* holds limit + 1 bytes already */
                break;
            size_t next = cap * 2 > limit + 1 ? limit + 1 : cap * 2;
            char *grown = next > cap ? realloc(buf, next) : NULL;
            if (grown == NULL) {
                free(buf);
                fputs("noricache: set: out of memory reading stdin\n", stderr);
                return EXIT_BACKEND;
            }
            buf = grown;
            cap = next;
        }
        size_t n = fread(buf + len, 1, cap - len, stdin);
        len += n;
        if (n == 0) {
            if (ferror(stdin)) {
                free(buf);
                perror("noricache: set: stdin");
                return EXIT_BACKEND;
            }
            break; /* EOF */
        }
    }
    if (len > limit) {
        free(buf);
        fprintf(stderr,
                "noricache: set: the value on stdin is longer than the value limit of %zu "
                "bytes (CACHE_MAX_VALUE_BYTES); nothing written\n",
                limit);
        return EXIT_USAGE;
    }
    *out = buf;
    *out_len = len;
    return EXIT_OK;
}

static int warn_unknown(const char *name, const char *source, const char *nearest, void *ud)
{
    (void)ud;
    if (nearest != NULL)
        fprintf(stderr, "noricache: warning: %s (from %s) is not a nori-cache variable; did you "
                        "mean %s?\n", name, source, nearest);
    else
        fprintf(stderr, "noricache: warning: %s (from %s) is not a nori-cache variable\n", name,
                source);
    return 0;
}

/* "redis redis://:***@host:port" or "memory (max_keys N)", for check. */
static void describe_backend(const nori_backend *b, char *buf, size_t size)
{
    const char *kind = nori_backend_kind(b);
    nori__config cfg;
    if (nori__config_load(NULL, &cfg) != NORI_OK) {
        snprintf(buf, size, "%s", kind);
        return;
    }
    if (strcmp(cfg.backend, "memory") == 0) {
        snprintf(buf, size, "%s (max_keys %zu)", kind, cfg.max_keys);
        return;
    }
    if (strcmp(cfg.backend, "shm") == 0) {
        snprintf(buf, size, "%s segment %s (max_keys %zu, max_bytes %zu)", kind, cfg.shm_name,
                 cfg.max_keys, cfg.max_bytes);
        return;
    }
    nori__redis_target u;
    if (nori__redis_target_parse(cfg.redis_url, &u) != NORI_OK) {
        snprintf(buf, size, "%s", kind);
        return;
    }
    snprintf(buf, size, "%s %s", kind, u.display);
    nori__redis_target_free(&u);
}

static int run(nori_backend *b, const char *cmd, const args *a)
{
    int rc;
    if (strcmp(cmd, "get") == 0) {
        nori_buf v;
        rc = nori_backend_get(b, a->pos[0], &v);
        if (rc == NORI_MISS)
            return EXIT_MISS;
        if (rc != NORI_OK)
            return backend_error("get", rc);
        size_t written = fwrite(v.data, 1, v.len, stdout);
        bool short_write = written < v.len;
        nori_buf_free(&v);
        if (short_write) {
            perror("noricache: stdout");
            return EXIT_BACKEND;
        }
        return EXIT_OK;
    }
    if (strcmp(cmd, "set") == 0) {
        if (strcmp(a->pos[1], "-") != 0) {
            rc = nori_backend_set(b, a->pos[0], a->pos[1], strlen(a->pos[1]), a->ttl);
            return rc == NORI_OK ? EXIT_OK : backend_error("set", rc);
        }
        char *value;
        size_t len;
        int xrc = read_stdin_value(nori_backend_max_value(b), &value, &len);
        if (xrc != EXIT_OK)
            return xrc;
        rc = nori_backend_set(b, a->pos[0], value, len, a->ttl);
        free(value);
        return rc == NORI_OK ? EXIT_OK : backend_error("set", rc);
    }
    if (strcmp(cmd, "delete") == 0) {
        rc = nori_backend_delete(b, a->pos[0]);
        return rc == NORI_OK ? EXIT_OK : backend_error("delete", rc);
    }
    if (strcmp(cmd, "delete-prefix") == 0) {
        rc = nori_backend_delete_prefix(b, a->pos[0]);
        return rc == NORI_OK ? EXIT_OK : backend_error("delete-prefix", rc);
    }
    if (strcmp(cmd, "flush") == 0) {
        rc = nori_backend_flush(b);
        return rc == NORI_OK ? EXIT_OK : backend_error("flush", rc);
    }
    if (strcmp(cmd, "incr") == 0) {
        int64_t n;
        rc = nori_backend_incr(b, a->pos[0], a->ttl, &n);
        if (rc != NORI_OK)
            return backend_error("incr", rc);
        printf("%lld\n", (long long)n);
        return EXIT_OK;
    }
    /* check: first the names that look like ours but are not (a misspelt
     * CACHE_BACKND would otherwise leave the default quietly in force). */
    (void)nori__config_unknown_names(NULL, warn_unknown, NULL);
    char what[NORI_REDIS_MAX_URL_LEN + 64];
    describe_backend(b, what, sizeof what);
    rc = nori_backend_verify(b);
    if (rc != NORI_OK) {
        fprintf(stderr, "noricache: check failed: %s\n", detail(rc));
        return EXIT_BACKEND; /* the backend is there but not usable */
    }
    /* The topology found (mode, nodes, roles, slots; the sentinels' master). */
    char *topology = NULL;
    rc = nori_backend_describe(b, &topology);
    if (rc != NORI_OK) {
        fprintf(stderr, "noricache: check failed: %s\n", detail(rc));
        return EXIT_BACKEND; /* the backend is there but not usable */
    }
    printf("ok: %s\n%s", what, topology);
    free(topology);
    return EXIT_OK;
}

/* noricache get-many KEY...: nori_backend_get_many, a line per key found. */
static int get_many_main(int nkeys, char **keys)
{
    if (nkeys > 0 && strcmp(keys[0], "--") == 0)
        keys++, nkeys--;
    if (nkeys == 0)
        return usage_error("%s: missing argument", "get-many");
    if (nkeys > NORI_MAX_BULK)
        return usage_error("%s: too many keys (at most 10000)", "get-many");
    for (int i = 0; i < nkeys; i++) {
        int urc = check_key_arg("get-many", keys[i], false);
        if (urc != 0)
            return urc;
    }
    nori_backend *b;
    int rc = nori_backend_from_env(&b);
    if (rc != NORI_OK)
        return config_error(rc);
    nori_get_result *res = calloc((size_t)nkeys, sizeof *res);
    if (res == NULL) {
        nori_backend_free(b);
        fputs("noricache: get-many: out of memory\n", stderr);
        return EXIT_BACKEND;
    }
    rc = nori_backend_get_many(b, (const char *const *)keys, (size_t)nkeys, res);
    int status = rc == NORI_OK ? EXIT_OK : backend_error("get-many", rc);
    bool missed = false;
    for (int i = 0; i < nkeys && status == EXIT_OK; i++) {
        if (res[i].rc == NORI_MISS) {
            missed = true;
            continue;
        }
        if (fprintf(stdout, "%s\t", keys[i]) < 0 ||
            fwrite(res[i].value.data, 1, res[i].value.len, stdout) < res[i].value.len ||
            fputc('\n', stdout) == EOF) {
            perror("noricache: stdout");
            status = EXIT_BACKEND;
        }
    }
    if (status == EXIT_OK && missed)
        status = EXIT_MISS;
    nori_get_results_free(res, (size_t)nkeys);
    free(res);
    nori_backend_free(b);
    if (fflush(stdout) != 0) {
        perror("noricache: stdout");
        return EXIT_BACKEND;
    }
    return status;
}

int main(int argc, char **argv)
{
    /* A closed stdout (noricache get k | head -c1) is a write error, not a
     * silent death. The library guards its own sockets. */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2)
        return usage_error("%s", "missing command");
    const char *cmd = argv[1];
    bool help = strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0;
    if ((help || strcmp(cmd, "--version") == 0) && argc > 2)
        return usage_error("unexpected argument '%s'", argv[2]);
    if (help) {
        fputs(USAGE, stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("noricache %s\n", nori_version());
        return EXIT_OK;
    }
    if (strcmp(cmd, "get-many") == 0)
        return get_many_main(argc - 2, argv + 2);
    args a;
    int rc = parse_args(argc, argv, 2, &a);
    if (rc != 0)
        return rc;
    if (strcmp(cmd, "get") == 0 || strcmp(cmd, "delete") == 0 ||
        strcmp(cmd, "delete-prefix") == 0)
        rc = want_args(cmd, &a, 1, false, true);
    else if (strcmp(cmd, "set") == 0)
        rc = want_args(cmd, &a, 2, true, true);
    else if (strcmp(cmd, "incr") == 0)
        rc = want_args(cmd, &a, 1, true, true);
    else if (strcmp(cmd, "flush") == 0 || strcmp(cmd, "check") == 0)
        rc = want_args(cmd, &a, 0, false, false);
    else
        return usage_error("unknown command '%s'", cmd);
    if (rc != 0)
        return rc;

    nori_backend *b;
    int brc = nori_backend_from_env(&b);
    if (brc != NORI_OK)
        return config_error(brc);
    rc = run(b, cmd, &a);
    nori_backend_free(b);
    if (fflush(stdout) != 0) {
        perror("noricache: stdout");
        return EXIT_BACKEND;
    }
    return rc;
}
