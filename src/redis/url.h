/*
 * Parsing of Redis connection URLs. Kept apart from the backend so that
 * configuration can validate REDIS_URL without connecting, and so the parser
 * can be tested (and fuzzed) on its own.
 *
 * Accepted forms:
 *   redis://[[user]:password@]host[:port][/db][?option=value&...]
 *   unix:///path/to.sock[?db=N&option=value&...]
 * host may be a name, an IPv4 address or a bracketed IPv6 address
 * ([::1]). user and password may be percent-encoded (%40 for '@').
 * Options: db (unix only; redis:// puts it in the path), connect_timeout_ms,
 * timeout_ms (command timeout), pool_size. Anything else is refused.
 */
#ifndef NORI_SRC_REDIS_URL_H
#define NORI_SRC_REDIS_URL_H

#include <stdbool.h>

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
    char *display; /* the URL with the password replaced by "***", for messages */
} nori__redis_url;

/*
 * Parses `url` into *out (all strings malloc'd, owned by *out; release with
 * nori__redis_url_free). Returns NORI_OK, or NORI_EINVAL with a message that
 * names the URL (password masked) and what is wrong, or NORI_ENOMEM. On
 * failure *out holds nothing to free.
 */
int nori__redis_url_parse(const char *url, nori__redis_url *out);

void nori__redis_url_free(nori__redis_url *u);

#endif
