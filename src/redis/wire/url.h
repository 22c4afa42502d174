// SPDX-License-Identifier: MIT
/*
 * Parsing of Redis connection URLs. Kept apart from the backend so that
 * configuration can validate REDIS_URL without connecting, and so the parser
 * can be tested (and fuzzed) on its own.
 *
 * Accepted forms:
 *   redis://[[user]:password@]host[:port][/db][?option=value&...]
 *   redis://password@host...   (no ':': the whole userinfo is the password,
 *                               as Lettuce reads it)
 *   unix:///path/to.sock[?db=N&user=U&password=P&option=value&...]
 * host may be a name, an IPv4 address or a bracketed IPv6 address
 * ([::1]). user and password may be percent-encoded (%40 for '@', %2F for
 * '/', %3F for '?', %23 for '#'); an unencoded '/', '?' or '#' in them is
 * refused with a message that says so.
 * Options: db, user, password (unix only; redis:// puts them in the path and
 * the userinfo), connect_timeout_ms, timeout_ms (round-trip deadline),
 * pool_size, circuit_failures, circuit_cooldown_ms, wait_replicas and
 * wait_timeout_ms (writes wait for replicas: see nori_redis_backend_new).
 * Option names are lower case, as written here. Anything else is refused
 * with a message that names the option (and the right spelling when only
 * its case differs: "?PASSWORD=" is refused, its value masked).
 * No message ever shows a password: "***" stands in its place, put there
 * by the one masker below (nori__redis_url_mask), which every message
 * about a URL uses, the topology forms' (url_topology.h) included.
 */
#ifndef NORI_SRC_REDIS_WIRE_URL_H
#define NORI_SRC_REDIS_WIRE_URL_H

#include <stdbool.h>
#include <stddef.h>

#define NORI_REDIS_DEFAULT_PORT 6379
#define NORI_REDIS_DEFAULT_CONNECT_TIMEOUT_MS 1000
#define NORI_REDIS_DEFAULT_TIMEOUT_MS 1000
#define NORI_REDIS_DEFAULT_POOL_SIZE 64
#define NORI_REDIS_MAX_TIMEOUT_MS 600000
#define NORI_REDIS_MAX_POOL_SIZE 1024
#define NORI_REDIS_MAX_URL_LEN 4096
#define NORI_REDIS_DEFAULT_CIRCUIT_FAILURES 5
#define NORI_REDIS_DEFAULT_CIRCUIT_COOLDOWN_MS 2000
#define NORI_REDIS_MAX_CIRCUIT_FAILURES 1000000
#define NORI_REDIS_MAX_WAIT_REPLICAS 64
#define NORI_REDIS_DEFAULT_WAIT_TIMEOUT_MS 100

typedef struct nori__redis_url {
    bool is_unix;
    char *host;     /* TCP: host name or address, without brackets */
    int port;       /* TCP */
    char *path;     /* unix: socket path */
    char *user;     /* NULL when none (AUTH password only) */
    char *password; /* NULL when none (no AUTH) */
    int db;         /* SELECT after connecting when non-zero */
    int connect_timeout_ms;
    int timeout_ms;
    int pool_size; /* most idle connections kept for reuse */
    int circuit_failures;    /* consecutive timeouts that open the breaker; 0: off */
    int circuit_cooldown_ms; /* how long it stays open before one probe */
    int wait_replicas;       /* writes are followed by WAIT wait_replicas ...; 0: off */
    int wait_timeout_ms;     /* ... wait_timeout_ms (less than timeout_ms) */
    char *display; /* the URL with each password replaced by "***", for messages */
} nori__redis_url;

/*
 * Parses `url` into *out (all strings malloc'd, owned by *out; release with
 * nori__redis_url_free). Returns NORI_OK, or NORI_EINVAL with a message that
 * names the URL (password masked) and what is wrong, or NORI_ENOMEM. On
 * failure *out holds nothing to free.
 */
int nori__redis_url_parse(const char *url, nori__redis_url *out);

/* The same, for a URL rewritten from the one the user wrote (url_topology.c
 * hands the node part of a topology URL over): messages name `shown`, the
 * URL as written, masked by nori__redis_url_mask, so that no message is
 * rendered twice. */
int nori__redis_url_parse_as(const char *url, const char *shown, nori__redis_url *out);

void nori__redis_url_free(nori__redis_url *u);

/*
 * A copy of `base` that points at host:port over TCP (another node of a
 * cluster, the master a sentinel names): the same user, password, db,
 * timeouts, pool size and breaker settings. display is "redis://host:port"
 * ("redis://[addr]:port" for IPv6), without credentials. Everything in *out
 * is owned by it (nori__redis_url_free). NORI_OK or NORI_ENOMEM.
 */
int nori__redis_url_for_node(const nori__redis_url *base, const char *host, int port,
                             nori__redis_url *out);

/* A byte range of a URL. */
typedef struct nori__redis_span {
    size_t off, len;
} nori__redis_span;

/*
 * Where the parsers read a password in `url` (the userinfo's password of a
 * redis:// or redis+sentinel:// URL; the value of each password= and
 * sentinel_password= option, whose name is matched in any case since a
 * refused "PASSWORD=" holds a password all the same), raw (before
 * percent-decoding), in URL order: fills spans[0..min(n, max)) and returns
 * n. Works on any string, parsed or not. The display form of a parsed URL
 * replaces exactly these spans by "***"; the fuzz targets check messages
 * against them.
 */
size_t nori__redis_url_password_spans(const char *url, nori__redis_span *spans, size_t max);

/* The display form of a URL that parsed: the password spans above replaced
 * by "***", nothing else changed. malloc'd (the caller frees), NULL when
 * out of memory. */
char *nori__redis_url_display(const char *url);

/*
 * Writes url into buf (truncated to size) with every password replaced by
 * "***": the masker of every message about a URL, accepted or refused. It
 * hides the password spans above and, for URLs that did not parse, a
 * superset of what any parser could take for a password (the userinfo up
 * to the last '@', the value of every "password=" in any case), whatever
 * the input.
 */
void nori__redis_url_mask(const char *url, char *buf, size_t size);

/* NORI_EINVAL with "REDIS_URL '<shown, masked>' is malformed: <what>". */
int nori__redis_url_fail(const char *shown, const char *what);

/* The authority of a redis:// or redis+sentinel:// URL, rest being the
 * text after the scheme: it ends at the first '/', '?' or '#'; its
 * userinfo ends at its last '@'; the password starts after the userinfo's
 * first ':' (no ':': the whole userinfo is the password, as Lettuce reads
 * redis://password@host). */
typedef struct nori__redis_authority {
    size_t len;        /* rest[0..len) */
    const char *at;    /* the userinfo's end, or NULL: no userinfo */
    const char *colon; /* the user/password separator, or NULL */
} nori__redis_authority;

nori__redis_authority nori__redis_split_authority(const char *rest);

/* NORI_OK, or NORI_EINVAL naming `shown` when a '@' follows the authority:
 * the user name or password holds the '/', '?' or '#' that ended it,
 * unencoded (the message says which, and its percent-encoding). */
int nori__redis_check_authority(const char *shown, const char *rest,
                                const nori__redis_authority *a);

#endif
