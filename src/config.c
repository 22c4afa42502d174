// SPDX-License-Identifier: MIT
#include "config.h"

#include "error.h"
#include "nori/cache.h"
#include "redis/near/near.h"
#include "redis/route/url_topology.h"
#include "redis/wire/url.h"
#include "shm/shm.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A .env file larger than this is refused rather than read. */
#define DOTENV_MAX_BYTES (1024 * 1024)
#define DOTENV_MAX_VALUE 4096

/* ---- .env parsing ---- */

static bool is_name_start(int c)
{
    return isalpha(c) || c == '_';
}

static bool is_name_char(int c)
{
    return isalnum(c) || c == '_' || c == '.';
}

static int line_error(const char *source, int line, const char *what)
{
    return nori__fail(NORI_EINVAL, "%s line %d: %s", source, line, what);
}

/*
 * Parses one value starting at p (after '=' and spaces) up to `end` (the end
 * of the text), writing it unquoted into `value`. Advances *pp past the value
 * and its line. Quoted values may not span lines.
 */
static int parse_value(const char **pp, const char *end, char *value, const char *source,
                       int line)
{
    const char *p = *pp;
    size_t n = 0;
    if (p < end && (*p == '"' || *p == '\'')) {
        char quote = *p++;
        for (;;) {
            if (p >= end || *p == '\n')
                return line_error(source, line, "the quoted value has no closing quote");
            char c = *p++;
            if (c == quote)
                break;
            if (quote == '"' && c == '\\' && p < end && *p != '\n') {
                char e = *p++;
                c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
                if (e != 'n' && e != 't' && e != 'r' && e != '"' && e != '\\') {
                    if (n + 1 >= DOTENV_MAX_VALUE)
                        return line_error(source, line, "the value is longer than 4095 bytes");
                    value[n++] = '\\';
                }
            }
            if (n + 1 >= DOTENV_MAX_VALUE)
                return line_error(source, line, "the value is longer than 4095 bytes");
            value[n++] = c;
        }
        /* After the closing quote only spaces and a comment may follow. */
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
            p++;
        if (p < end && *p != '\n' && *p != '#')
            return line_error(source, line, "unexpected text after the closing quote");
    } else {
        const char *start = p;
        while (p < end && *p != '\n') {
            if (*p == '#' && (p == start || p[-1] == ' ' || p[-1] == '\t'))
                break;
            p++;
        }
        const char *stop = p;
        while (stop > start && isspace((unsigned char)stop[-1]))
            stop--;
        n = (size_t)(stop - start);
        if (n >= DOTENV_MAX_VALUE)
            return line_error(source, line, "the value is longer than 4095 bytes");
        memcpy(value, start, n);
    }
    value[n] = '\0';
    while (p < end && *p != '\n')
        p++;
    *pp = p;
    return NORI_OK;
}

int nori__dotenv_parse(const char *text, size_t len, const char *source, nori__dotenv_cb cb,
                       void *ud)
{
    const char *p = text, *end = text + len;
    char name[256];
    char value[DOTENV_MAX_VALUE];
    int line = 0;
    if (memchr(text, '\0', len) != NULL)
        return nori__fail(NORI_EINVAL, "%s contains a NUL byte", source);
    while (p < end) {
        line++;
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
            p++;
        if (p >= end)
            break;
        if (*p == '\n' || *p == '#') {
            while (p < end && *p != '\n')
                p++;
            p++;
            continue;
        }
        if ((size_t)(end - p) > 7 && memcmp(p, "export", 6) == 0 && (p[6] == ' ' || p[6] == '\t')) {
            p += 6;
            while (p < end && (*p == ' ' || *p == '\t'))
                p++;
        }
        if (p >= end || *p == '\n' || !is_name_start((unsigned char)*p))
            return line_error(source, line, "expected NAME=VALUE (a name starts with a letter or '_')");
        size_t n = 0;
        while (p < end && is_name_char((unsigned char)*p)) {
            if (n + 1 >= sizeof name)
                return line_error(source, line, "the name is longer than 255 bytes");
            name[n++] = *p++;
        }
        name[n] = '\0';
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (p >= end || *p != '=')
            return line_error(source, line, "expected '=' after the name");
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        int rc = parse_value(&p, end, value, source, line);
        if (rc != NORI_OK)
            return rc;
        rc = cb(name, value, ud);
        if (rc != 0)
            return rc;
        p++; /* the newline */
    }
    return NORI_OK;
}

/* ---- configuration ---- */

enum {
    VAR_BACKEND,
    VAR_MAX_KEYS,
    VAR_MAX_VALUE,
    VAR_REDIS_URL,
    VAR_MAX_BYTES,
    VAR_NEAR_MAX_KEYS,
    VAR_NEAR_MAX_BYTES,
    VAR_NEAR_MAX_TTL_MS,
    VAR_SHM_NAME,
    VAR_COUNT
};

static const char *const var_names[VAR_COUNT] = {
    "CACHE_BACKEND", "CACHE_MAX_KEYS", "CACHE_MAX_VALUE_BYTES", "REDIS_URL", "CACHE_MAX_BYTES",
    "CACHE_NEAR_MAX_KEYS", "CACHE_NEAR_MAX_BYTES", "CACHE_NEAR_MAX_TTL_MS", "CACHE_SHM_NAME"};

typedef struct {
    char *values[VAR_COUNT];         /* NULL = not set anywhere; malloc'd */
    const char *origins[VAR_COUNT];  /* "environment" or the .env path */
    const char *dotenv_path;
} raw_config;

static const char from_environment[] = "environment";

static int collect_dotenv(const char *name, const char *value, void *ud)
{
    raw_config *raw = ud;
    for (int i = 0; i < VAR_COUNT; i++) {
        if (strcmp(name, var_names[i]) != 0)
            continue;
        if (raw->origins[i] == from_environment)
            return 0; /* the environment wins */
        char *copy = strdup(value);
        if (copy == NULL)
            return nori__fail(NORI_ENOMEM, "out of memory reading %s", raw->dotenv_path);
        free(raw->values[i]);
        raw->values[i] = copy; /* a later line wins over an earlier one */
        raw->origins[i] = raw->dotenv_path;
    }
    return 0;
}

static const char *file_kind(mode_t mode)
{
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISSOCK(mode))
        return "a socket";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    return "not a plain file";
}

/*
 * Reads the whole .env into a malloc'd buffer. Only a regular file is read:
 * opening a FIFO for reading blocks until a writer comes, and a device or a
 * socket may never end, so the file is opened with O_NONBLOCK (which makes
 * that open return at once) and checked with fstat before any read.
 */
static int read_dotenv_with(const char *path, nori__dotenv_cb cb, void *ud)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        if (errno == ENOENT)
            return NORI_OK;
        return nori__fail(NORI_EINVAL, "cannot read %s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return nori__fail(NORI_EINVAL, "cannot read %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return nori__fail(NORI_EINVAL, "%s is not a regular file (it is %s): refused", path,
                          file_kind(st.st_mode));
    }
    if (st.st_size > DOTENV_MAX_BYTES) {
        close(fd);
        return nori__fail(NORI_EINVAL, "%s is larger than %d bytes", path, DOTENV_MAX_BYTES);
    }
    char *text = malloc(DOTENV_MAX_BYTES + 1);
    if (text == NULL) {
        close(fd);
        return nori__fail(NORI_ENOMEM, "out of memory reading %s", path);
    }
    /* The size may change while reading: read to EOF, bounded by the limit. */
    size_t n = 0;
    int read_errno = 0;
    while (n <= DOTENV_MAX_BYTES) {
        ssize_t r = read(fd, text + n, DOTENV_MAX_BYTES + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            read_errno = errno;
            break;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    int rc = NORI_OK;
    if (read_errno != 0)
        rc = nori__fail(NORI_EINVAL, "cannot read %s: %s", path, strerror(read_errno));
    else if (n > DOTENV_MAX_BYTES)
        rc = nori__fail(NORI_EINVAL, "%s is larger than %d bytes", path, DOTENV_MAX_BYTES);
    else
        rc = nori__dotenv_parse(text, n, path, cb, ud);
    free(text);
    return rc;
}

static int read_dotenv(const char *path, raw_config *raw)
{
    return read_dotenv_with(path, collect_dotenv, raw);
}

static int bad_value(const raw_config *raw, int var, const char *expected)
{
    return nori__fail(NORI_EINVAL, "%s='%.200s' (from %s) is invalid: %s", var_names[var],
                      raw->values[var], raw->origins[var], expected);
}

/* A positive decimal integer, digits only, at most `max`. */
static bool parse_size(const char *s, size_t max, size_t *out)
{
    if (*s == '\0')
        return false;
    size_t v = 0;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return false;
        size_t digit = (size_t)(*s - '0');
        if (v > (max - digit) / 10)
            return false;
        v = v * 10 + digit;
    }
    if (v == 0)
        return false;
    *out = v;
    return true;
}

/* A decimal integer 0..max, digits only (0 means "off"). */
static bool parse_size_or_zero(const char *s, size_t max, size_t *out)
{
    if (s[0] != '\0' && strspn(s, "0") == strlen(s)) {
        *out = 0;
        return true;
    }
    return parse_size(s, max, out);
}

#define BACKEND_NAME(name, constructor) name,
static const char *const backend_names[] = {NORI__BACKENDS(BACKEND_NAME)};
#define N_BACKENDS (sizeof backend_names / sizeof backend_names[0])

/* CACHE_BACKEND: one of the names exactly (no case folding, no spaces);
 * unset, the first. */
static int validate_backend(const raw_config *raw, nori__config *cfg)
{
    const char *name = raw->values[VAR_BACKEND];
    cfg->backend = backend_names[0];
    if (name == NULL)
        return NORI_OK;
    for (size_t i = 0; i < N_BACKENDS; i++)
        if (strcmp(name, backend_names[i]) == 0) {
            cfg->backend = backend_names[i];
            return NORI_OK;
        }
    /* "expected 'memory', 'redis' or 'shm'": every accepted name. */
    char expected[256];
    size_t n = (size_t)snprintf(expected, sizeof expected, "expected");
    for (size_t i = 0; i < N_BACKENDS && n < sizeof expected; i++)
        n += (size_t)snprintf(expected + n, sizeof expected - n, "%s'%s'",
                              i == 0 ? " " : i + 1 == N_BACKENDS ? " or " : ", ",
                              backend_names[i]);
    return bad_value(raw, VAR_BACKEND, expected);
}

static int validate(const raw_config *raw, nori__config *cfg)
{
    int rc = validate_backend(raw, cfg);
    if (rc != NORI_OK)
        return rc;
    cfg->max_keys = NORI_DEFAULT_MAX_KEYS;
    if (raw->values[VAR_MAX_KEYS] != NULL &&
        !parse_size(raw->values[VAR_MAX_KEYS], NORI_MAX_MAX_KEYS, &cfg->max_keys))
        return bad_value(raw, VAR_MAX_KEYS, "expected a positive integer up to 4294967296");
    cfg->max_value = NORI_DEFAULT_MAX_VALUE;
    if (raw->values[VAR_MAX_VALUE] != NULL &&
        !parse_size(raw->values[VAR_MAX_VALUE], NORI_MAX_VALUE_LIMIT, &cfg->max_value))
        return bad_value(raw, VAR_MAX_VALUE, "expected a positive integer up to 536870912");
    /* CACHE_MAX_BYTES may be 0 (no byte bound): parse "0" on its own. */
    cfg->max_bytes = NORI_DEFAULT_MAX_BYTES;
    const char *mb = raw->values[VAR_MAX_BYTES];
    if (mb != NULL && strcmp(mb, "0") == 0)
        cfg->max_bytes = 0;
    else if (mb != NULL && !parse_size(mb, NORI_MAX_MAX_BYTES, &cfg->max_bytes))
        return bad_value(raw, VAR_MAX_BYTES,
                         "expected a number of bytes from 0 (no byte bound) up to 1099511627776");
    cfg->near_max_keys = 0;
    if (raw->values[VAR_NEAR_MAX_KEYS] != NULL &&
        !parse_size_or_zero(raw->values[VAR_NEAR_MAX_KEYS], NORI_MAX_MAX_KEYS,
                            &cfg->near_max_keys))
        return bad_value(raw, VAR_NEAR_MAX_KEYS,
                         "expected 0 (off) or a positive integer up to 4294967296");
    cfg->near_max_bytes = 0;
    if (raw->values[VAR_NEAR_MAX_BYTES] != NULL &&
        !parse_size_or_zero(raw->values[VAR_NEAR_MAX_BYTES], NORI_MAX_NEAR_BYTES,
                            &cfg->near_max_bytes))
        return bad_value(raw, VAR_NEAR_MAX_BYTES,
                         "expected 0 (off) or a positive integer up to 1099511627776");
    size_t ttl = NORI_NEAR_DEFAULT_MAX_TTL_MS;
    if (raw->values[VAR_NEAR_MAX_TTL_MS] != NULL &&
        !parse_size(raw->values[VAR_NEAR_MAX_TTL_MS], NORI_MAX_NEAR_TTL_MS, &ttl))
        return bad_value(raw, VAR_NEAR_MAX_TTL_MS,
                         "expected a number of milliseconds from 1 to 86400000 (one day)");
    cfg->near_max_ttl_ms = (int64_t)ttl;
    /* CACHE_SHM_NAME: a segment name (shm/segment.c says which); unset, one
     * per user, so that two users of a machine never meet. */
    const char *shm = raw->values[VAR_SHM_NAME];
    if (shm != NULL) {
        if (nori__shm_check_name(shm) != NORI_OK) {
            char detail[512];
            snprintf(detail, sizeof detail, "%s", nori_last_error());
            return bad_value(raw, VAR_SHM_NAME, detail);
        }
        snprintf(cfg->shm_name, sizeof cfg->shm_name, "%s", shm);
    } else {
        snprintf(cfg->shm_name, sizeof cfg->shm_name, "nori-cache-%ld", (long)geteuid());
    }
    const char *url = raw->values[VAR_REDIS_URL];
    if (url == NULL)
        url = "redis://localhost:6379";
    nori__redis_target parsed; /* every REDIS_URL form: redis://, unix://, redis+sentinel:// */
    rc = nori__redis_target_parse(url, &parsed);
    if (rc != NORI_OK) {
        if (rc == NORI_EINVAL && raw->values[VAR_REDIS_URL] != NULL) {
            char detail[512];
            snprintf(detail, sizeof detail, "%s", nori_last_error());
            return nori__fail(NORI_EINVAL, "%s (from %s)", detail, raw->origins[VAR_REDIS_URL]);
        }
        return rc;
    }
    nori__redis_target_free(&parsed);
    snprintf(cfg->redis_url, sizeof cfg->redis_url, "%s", url);
    return NORI_OK;
}

/* ---- names that look like ours but are not ---- */

/* Edit distance (insertions, deletions, substitutions, and a swap of two
 * neighbours counting as one), for the nearest known name. Names here are
 * short (under 64 bytes); longer ones are "far". */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return SIZE_MAX;
    size_t d[64][64];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[la][lb];
}

static bool looks_like_ours(const char *name)
{
    return strncmp(name, "CACHE_", 6) == 0 || strncmp(name, "REDIS_", 6) == 0;
}

static bool is_known(const char *name)
{
    for (int i = 0; i < VAR_COUNT; i++)
        if (strcmp(name, var_names[i]) == 0)
            return true;
    return false;
}

/* The known name nearest to `name`, or NULL when none is close (more than a
 * third of the name would have to change). */
static const char *nearest_known(const char *name)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (int i = 0; i < VAR_COUNT; i++) {
        size_t d = edit_distance(name, var_names[i]);
        if (d < best_d) {
            best_d = d;
            best = var_names[i];
        }
    }
    return best_d <= strlen(name) / 3 ? best : NULL;
}

typedef struct {
    nori__unknown_var_cb cb;
    void *ud;
    const char *source;
    int stopped;
} unknown_walk;

static int report_unknown(const char *name, const char *value, void *ud)
{
    (void)value;
    unknown_walk *w = ud;
    if (!looks_like_ours(name) || is_known(name))
        return 0;
    w->stopped = w->cb(name, w->source, nearest_known(name), w->ud);
    return w->stopped;
}

int nori__config_unknown_names(const char *dotenv_path, nori__unknown_var_cb cb, void *ud)
{
    if (cb == NULL)
        return nori__fail(NORI_EINVAL, "no callback");
    unknown_walk w = {cb, ud, from_environment, 0};
    extern char **environ;
    for (char **e = environ; e != NULL && *e != NULL && w.stopped == 0; e++) {
        const char *eq = strchr(*e, '=');
        size_t len = eq != NULL ? (size_t)(eq - *e) : strlen(*e);
        char name[128];
        if (len >= sizeof name)
            continue;
        memcpy(name, *e, len);
        name[len] = '\0';
        report_unknown(name, eq != NULL ? eq + 1 : "", &w);
    }
    if (w.stopped != 0)
        return NORI_OK;
    /* .env, again, for its names only. */
    w.source = dotenv_path != NULL ? dotenv_path : ".env";
    int rc = read_dotenv_with(w.source, report_unknown, &w);
    return w.stopped != 0 ? NORI_OK : rc;
}

int nori__config_load(const char *dotenv_path, nori__config *out)
{
    raw_config raw = {0};
    raw.dotenv_path = dotenv_path != NULL ? dotenv_path : ".env";
    int rc = NORI_OK;
    for (int i = 0; i < VAR_COUNT && rc == NORI_OK; i++) {
        const char *v = getenv(var_names[i]);
        if (v == NULL)
            continue;
        raw.values[i] = strdup(v);
        raw.origins[i] = from_environment;
        if (raw.values[i] == NULL)
            rc = nori__fail(NORI_ENOMEM, "out of memory reading the environment");
    }
    if (rc == NORI_OK)
        rc = read_dotenv(raw.dotenv_path, &raw);
    if (rc == NORI_OK)
        rc = validate(&raw, out);
    for (int i = 0; i < VAR_COUNT; i++)
        free(raw.values[i]);
    return rc;
}
