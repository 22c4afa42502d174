// SPDX-License-Identifier: MIT
/*
 * The topology part of REDIS_URL (README, "Redis Cluster and Sentinel"), on top of the
 * single-node parser (redis/url.h):
 *
 *   redis://[[user]:password@]host[:port][/db][?addr=host:port&addr=...&opts]
 *       any node of a standalone server or of a Redis Cluster; each addr= is
 *       one more seed node (repeatable), tried in order when the first is
 *       down. Whether it is a cluster is found out on connecting.
 *
 *   redis+sentinel://[[user]:password@]host:port[,host:port...]/MASTERNAME[/db][?opts]
 *       the sentinels to ask (in the order given) for the current master of
 *       MASTERNAME. user:password authenticate to the master (and are not
 *       sent to the sentinels); sentinels that require a password take
 *       ?sentinel_password=P (and ?sentinel_user=U). Other options as for
 *       redis:// (connect_timeout_ms, timeout_ms, pool_size) apply to the
 *       master's connections and to the sentinel queries.
 *
 * A password (either one) never appears in a message: display strings and
 * messages show "***" in its place, put there by url.h's one masker
 * (nori__redis_url_password_spans covers these forms too). Option names are
 * lower case; any other spelling is refused as unknown, naming it.
 */
#ifndef NORI_SRC_REDIS_ROUTE_URL_TOPOLOGY_H
#define NORI_SRC_REDIS_ROUTE_URL_TOPOLOGY_H

#include "redis/wire/url.h"

#include <stdbool.h>
#include <stddef.h>

/* Most seeds or sentinels one URL may list. */
#define NORI_REDIS_MAX_ADDRS 64

typedef struct nori__redis_addr {
    char *host; /* owned, without brackets */
    int port;
} nori__redis_addr;

typedef struct nori__redis_target {
    /* The connection template for every node: auth, db, timeouts, pool
     * size. For redis:// its host:port is the first seed; for a sentinel
     * URL its host:port are placeholders until the master is resolved. */
    nori__redis_url node;
    bool sentinel;
    char *master_name;          /* owned; sentinel only */
    nori__redis_addr *addrs;    /* owned: redis:// the extra seeds (?addr=), sentinel: the sentinels */
    size_t naddrs;
    char *sentinel_user;        /* owned or NULL */
    char *sentinel_password;    /* owned or NULL */
    char *display;              /* owned: the whole URL with every password as "***" */
} nori__redis_target;

/*
 * Parses a REDIS_URL of any accepted form into *out (release with
 * nori__redis_target_free). NORI_OK, NORI_ENOMEM, or NORI_EINVAL with a
 * message that names the URL (passwords masked) and what is wrong. On
 * failure *out holds nothing to free.
 */
int nori__redis_target_parse(const char *url, nori__redis_target *out);

void nori__redis_target_free(nori__redis_target *t);

/*
 * Parses "host:port", "[v6]:port" (port required) from s[0..n) into *out
 * (host malloc'd). Returns NORI_OK, NORI_ENOMEM or NORI_EINVAL (no message
 * recorded: the caller names the URL).
 */
int nori__redis_addr_parse(const char *s, size_t n, nori__redis_addr *out);

#endif
