// SPDX-License-Identifier: MIT
#include "redis/route/sentinel.h"

#include "clock.h"
#include "error.h"
#include "redis/wire/dial.h"
#include "redis/wire/io.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What was tried, for the error message: "a:p: why, b:p: why". */
typedef struct tried {
    char text[768];
    size_t len;
} tried;

static void note(tried *t, const char *host, int port, const char *why)
{
    if (t->len >= sizeof t->text - 1)
        return;
    int n = snprintf(t->text + t->len, sizeof t->text - t->len, "%s%s:%d%s%s",
                     t->len > 0 ? ", " : "", host, port, why[0] ? ": " : "", why);
    if (n > 0)
        t->len += (size_t)n;
    if (t->len >= sizeof t->text)
        t->len = sizeof t->text - 1;
}

/*
 * One command on c, sent and answered within the URL's timeout_ms, its reply
 * bounded like every reply without a cache value (io.h): a sentinel or
 * master that trickles its answer, or announces a huge one, costs at most
 * the timeout. NULL on failure, with c->errstr saying why.
 */
static redisReply *command(redisContext *c, const nori__redis_url *u, int argc, const char **argv)
{
    return nori__redis_io_command(c, nori__real_ms() + u->timeout_ms,
                                  &nori__redis_small_replies, argc, argv, NULL);
}

/*
 * Opens a connection to host:port with the URL's timeouts (dial.h), with
 * AUTH when password is given. NULL with `why` filled on failure (never
 * the password).
 */
static redisContext *open_conn(const nori__redis_url *u, const char *host, int port,
                               const char *user, const char *password, char *why,
                               size_t why_size)
{
    nori__redis_dial_opts o = {
        .host = host,
        .port = port,
        .user = user,
        .password = password,
        .connect_timeout_ms = u->connect_timeout_ms,
        .timeout_ms = u->timeout_ms,
    };
    nori__redis_dial_error err;
    redisContext *c = nori__redis_dial(&o, &err);
    if (c == NULL)
        snprintf(why, why_size, "%s", err.text);
    return c;
}

/* Asks one sentinel. 1: host and port set; 0: the sentinel does not know the
 * name; -1: unreachable or a bad answer (why filled). */
static int ask_sentinel(const nori__redis_target *t, const nori__redis_addr *s, char **host,
                        int *port, char *why, size_t why_size)
{
    redisContext *c = open_conn(&t->node, s->host, s->port, t->sentinel_user,
                                t->sentinel_password, why, why_size);
    if (c == NULL)
        return -1;
    const char *argv[] = {"SENTINEL", "get-master-addr-by-name", t->master_name};
    redisReply *r = command(c, &t->node, 3, argv);
    int rc = -1;
    if (r == NULL) {
        snprintf(why, why_size, "%s", c->errstr[0] ? c->errstr : "no reply");
    } else if (r->type == REDIS_REPLY_NIL) {
        rc = 0;
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
               r->element[0]->type == REDIS_REPLY_STRING &&
               r->element[1]->type == REDIS_REPLY_STRING && r->element[0]->len > 0 &&
               r->element[0]->len < 256) {
        char *end;
        long p = strtol(r->element[1]->str, &end, 10);
        if (*end != '\0' || p < 1 || p > 65535) {
            snprintf(why, why_size, "answered a bad port '%.16s'", r->element[1]->str);
        } else if ((*host = strdup(r->element[0]->str)) == NULL) {
            snprintf(why, why_size, "out of memory");
        } else {
            *port = (int)p;
            rc = 1;
        }
    } else if (r->type == REDIS_REPLY_ERROR) {
        snprintf(why, why_size, "error: %.120s", r->str);
    } else {
        snprintf(why, why_size, "unexpected reply type %d", r->type);
    }
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return rc;
}

/* ROLE on the named master: true when it answers "master". */
static bool is_master(const nori__redis_target *t, const char *host, int port, char *why,
                      size_t why_size)
{
    redisContext *c = open_conn(&t->node, host, port, t->node.user, t->node.password, why,
                                why_size);
    if (c == NULL)
        return false;
    const char *argv[] = {"ROLE"};
    redisReply *r = command(c, &t->node, 1, argv);
    bool ok = false;
    char role[64];
    /* Stricter than check_role (dial.h): a refused ROLE is no proof here,
     * where the sentinel's answer is being checked. */
    if (r == NULL)
        snprintf(why, why_size, "ROLE: %s", nori__redis_describe_error(c));
    else
        ok = nori__redis_role_of(r, role, sizeof role) == NORI__ROLE_MASTER;
    if (r != NULL && !ok)
        snprintf(why, why_size, "ROLE is not master (%.32s)", role);
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return ok;
}

int nori__sentinel_resolve(const nori__redis_target *t, int *first, char **host, int *port)
{
    tried sentinels = {.len = 0}, masters = {.len = 0};
    sentinels.text[0] = masters.text[0] = '\0';
    size_t reachable = 0, unknown = 0;
    size_t n = t->naddrs;
    size_t start = (*first >= 0 && (size_t)*first < n) ? (size_t)*first : 0;
    for (size_t k = 0; k < n; k++) {
        size_t i = (start + k) % n;
        const nori__redis_addr *s = &t->addrs[i];
        char why[256] = "";
        char *h = NULL;
        int p = 0;
        int rc = ask_sentinel(t, s, &h, &p, why, sizeof why);
        if (rc < 0) {
            note(&sentinels, s->host, s->port, why);
            continue;
        }
        reachable++;
        if (rc == 0) {
            unknown++;
            note(&sentinels, s->host, s->port, "does not know the name");
            continue;
        }
        why[0] = '\0';
        if (is_master(t, h, p, why, sizeof why)) {
            *host = h;
            *port = p;
            *first = (int)i;
            return NORI_OK;
        }
        note(&sentinels, s->host, s->port, "named a master that failed ROLE");
        note(&masters, h, p, why);
        free(h);
    }
    if (reachable == 0)
        return nori__fail(NORI_EBACKEND, "redis %s: no sentinel reachable (tried %s)",
                          t->display, sentinels.text);
    if (unknown == reachable)
        return nori__fail(NORI_EBACKEND, "redis %s: unknown master name '%s' (tried %s)",
                          t->display, t->master_name, sentinels.text);
    return nori__fail(NORI_EBACKEND,
                      "redis %s: no sentinel named a usable master for '%s' (sentinels: %s; "
                      "masters: %s)",
                      t->display, t->master_name, sentinels.text, masters.text);
}
