// SPDX-License-Identifier: MIT
/*
 * Opening a connection to one Redis server; see dial.h.
 *
 * The blocking dial and the halves used by the sentinel watch share every
 * step but the wait for the connect: the same lookup (resolve.c), the same
 * preparation, the same setup commands judged by the same rules. The
 * blocking dial sends its setup commands one round trip each, so that a
 * message names the command that got no answer; the watch sends them with
 * its SUBSCRIBE in one write.
 */
#include "redis/wire/dial.h"

#include "clock.h"
#include "error.h"
#include "redis/wire/io.h"
#include "redis/wire/resolve.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

static int set_err(nori__redis_dial_error *err, int code, nori__connect_failure kind,
                   const char *fmt, ...) NORI__PRINTF(4, 5);

/* Fills *err; returns -1. */
static int set_err(nori__redis_dial_error *err, int code, nori__connect_failure kind,
                   const char *fmt, ...)
{
    err->code = code;
    err->kind = kind;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof err->text, fmt, ap);
    va_end(ap);
    return -1;
}

static void clear_err(nori__redis_dial_error *err)
{
    *err = (nori__redis_dial_error){.code = NORI_OK, .kind = NORI__CONNECT_FAILED};
}

void nori__redis_dial_opts_of_url(nori__redis_dial_opts *o, const nori__redis_url *u)
{
    *o = (nori__redis_dial_opts){
        .host = u->is_unix ? NULL : u->host,
        .port = u->port,
        .unix_path = u->is_unix ? u->path : NULL,
        .user = u->user,
        .password = u->password,
        .db = u->db,
        .connect_timeout_ms = u->connect_timeout_ms,
        .timeout_ms = u->timeout_ms,
        .check_role = false,
    };
}

int nori__redis_dial_fail(const char *display, const nori__redis_dial_error *err)
{
    if (err->code == NORI_ENOMEM)
        return nori__fail(NORI_ENOMEM, "out of memory connecting to redis %s", display);
    return nori__fail(err->code, "redis %s: %s", display, err->text);
}

/* ---- step 1: connect ---- */

/* A connect that failed with `failure` (hiredis's text, e.g. "Connection
 * refused" or "Connection timed out", or the lookup's). */
static int connect_failed(const nori__redis_dial_opts *o, const char *failure, bool slow,
                          nori__redis_dial_error *err)
{
    if (strcmp(failure, "out of memory") == 0)
        return set_err(err, NORI_ENOMEM, NORI__CONNECT_FAILED, "out of memory connecting");
    return set_err(err, NORI_EBACKEND, slow ? NORI__CONNECT_SLOW : NORI__CONNECT_REFUSED,
                   "cannot connect: %s (connect timeout %d ms)", failure, o->connect_timeout_ms);
}

static redisContext *connect_unix(const nori__redis_dial_opts *o, char *failure, size_t size,
                                  bool *slow)
{
    int ms = o->connect_timeout_ms;
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    redisContext *c = redisConnectUnixWithTimeout(o->unix_path, tv);
    if (c == NULL) {
        snprintf(failure, size, "out of memory");
        return NULL;
    }
    if (c->err != 0) {
        *slow = strstr(c->errstr, "timed out") != NULL;
        snprintf(failure, size, "%s", c->errstr);
        redisFree(c);
        return NULL;
    }
    return c;
}

/* ---- step 2: prepare ---- */

static int prepare(redisContext *c, const nori__redis_dial_opts *o, nori__redis_dial_error *err)
{
    /* Every later command is sent and answered before a deadline (io.h);
     * without it a hung server would block its caller forever. */
    if (nori__redis_io_prepare(c) != 0)
        return set_err(err, NORI_EBACKEND, NORI__CONNECT_FAILED,
                       "cannot set up the connection: %s", c->errstr);
    if (o->unix_path == NULL && redisEnableKeepAlive(c) != REDIS_OK)
        return set_err(err, NORI_EBACKEND, NORI__CONNECT_FAILED,
                       "cannot enable TCP keepalive: %s", c->errstr);
    return 0;
}

/* ---- step 3: set up ---- */

static void add(nori__redis_setup *s, const char *what, int argc, const char *a0, const char *a1,
                const char *a2)
{
    s->cmd[s->n].what = what;
    s->cmd[s->n].argc = argc;
    s->cmd[s->n].argv[0] = a0;
    s->cmd[s->n].argv[1] = a1;
    s->cmd[s->n].argv[2] = a2;
    s->n++;
}

/* The commands of step 3 for o. The arguments point into o's strings and
 * into s->db, so s is filled where it stays until they are queued. */
static void plan(nori__redis_setup *s, const nori__redis_dial_opts *o)
{
    s->n = 0;
    if (o->password != NULL) {
        if (o->user != NULL)
            add(s, "AUTH (user and password)", 3, "AUTH", o->user, o->password);
        else
            add(s, "AUTH (password)", 2, "AUTH", o->password, NULL);
    }
    if (o->db != 0) {
        snprintf(s->db, sizeof s->db, "%d", o->db);
        add(s, "SELECT", 2, "SELECT", s->db, NULL);
    }
    if (o->check_role)
        add(s, "ROLE", 1, "ROLE", NULL, NULL);
}

/* A command of step 3 (or a ROLE check) that got no reply; c is dead. */
static int no_reply(redisContext *c, const char *what, nori__redis_dial_error *err)
{
    nori__connect_failure kind = c->err == NORI__REDIS_ERR_TIMEOUT ? NORI__CONNECT_SLOW
                                 : c->err == REDIS_ERR_EOF || c->err == REDIS_ERR_IO
                                     ? NORI__CONNECT_REFUSED
                                     : NORI__CONNECT_FAILED;
    return set_err(err, NORI_EBACKEND, kind, "%s failed: %s", what,
                   nori__redis_describe_error(c));
}

nori__redis_role nori__redis_role_of(const redisReply *r, char *name, size_t name_size)
{
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(name, name_size, "refused");
        return NORI__ROLE_REFUSED;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
        r->element[0]->type == REDIS_REPLY_STRING) {
        snprintf(name, name_size, "%s", r->element[0]->str);
        return strcmp(r->element[0]->str, "master") == 0 ? NORI__ROLE_MASTER : NORI__ROLE_OTHER;
    }
    snprintf(name, name_size, "unexpected reply");
    return NORI__ROLE_OTHER;
}

/* check_role's rule: a refusal (an ACL) is taken as "master", since the
 * server was named as the master. */
static int judge_role(const redisReply *r, nori__redis_dial_error *err)
{
    char name[64];
    if (nori__redis_role_of(r, name, sizeof name) != NORI__ROLE_OTHER)
        return 0;
    err->not_master = true;
    return set_err(err, NORI_EBACKEND, NORI__CONNECT_FAILED,
                   "the server is no longer the master (ROLE: %.32s)", name);
}

int nori__redis_setup_judge(const nori__redis_setup *s, int i, const redisReply *r,
                            nori__redis_dial_error *err)
{
    const char *what = s->cmd[i].what;
    if (strcmp(s->cmd[i].argv[0], "ROLE") == 0)
        return judge_role(r, err);
    if (r->type == REDIS_REPLY_STATUS)
        return 0;
    if (r->type == REDIS_REPLY_ERROR)
        return set_err(err, NORI_EBACKEND, NORI__CONNECT_FAILED,
                       "%s refused by the server: %.200s", what, r->str);
    return set_err(err, NORI_EBACKEND, NORI__CONNECT_FAILED, "%s: unexpected reply type %d",
                   what, r->type);
}

/* Step 3, blocking: each command one round trip within timeout_ms. */
static int run_setup(redisContext *c, const nori__redis_dial_opts *o, nori__redis_dial_error *err)
{
    nori__redis_setup s;
    plan(&s, o);
    for (int i = 0; i < s.n; i++) {
        redisReply *r =
            nori__redis_io_command(c, nori__real_ms() + o->timeout_ms,
                                   &nori__redis_small_replies, s.cmd[i].argc, s.cmd[i].argv, NULL);
        if (r == NULL)
            return no_reply(c, s.cmd[i].what, err);
        int rc = nori__redis_setup_judge(&s, i, r, err);
        freeReplyObject(r);
        if (rc != 0)
            return -1;
    }
    return 0;
}

redisContext *nori__redis_dial(const nori__redis_dial_opts *o, nori__redis_dial_error *err)
{
    clear_err(err);
    char failure[256];
    bool slow = false;
    redisContext *c =
        o->unix_path != NULL
            ? connect_unix(o, failure, sizeof failure, &slow)
            : nori__redis_connect_tcp(o->host, o->port, o->connect_timeout_ms, failure,
                                      sizeof failure, &slow);
    if (c == NULL) {
        connect_failed(o, failure, slow, err);
        return NULL;
    }
    if (prepare(c, o, err) != 0 || run_setup(c, o, err) != 0) {
        redisFree(c);
        return NULL;
    }
    return c;
}

redisContext *nori__redis_dial_start(const nori__redis_dial_opts *o, nori__redis_dial_error *err)
{
    clear_err(err);
    char failure[256];
    bool slow = false;
    redisContext *c = nori__redis_connect_start(o->host, o->port, o->connect_timeout_ms, failure,
                                                sizeof failure, &slow);
    if (c == NULL)
        connect_failed(o, failure, slow, err);
    return c;
}

int nori__redis_dial_finish(redisContext *c, const nori__redis_dial_opts *o,
                            nori__redis_setup *s, nori__redis_dial_error *err)
{
    clear_err(err);
    char failure[256];
    if (nori__redis_connect_finish(c, failure, sizeof failure) != 0)
        return connect_failed(o, failure, false, err);
    if (prepare(c, o, err) != 0)
        return -1;
    plan(s, o);
    for (int i = 0; i < s->n; i++)
        if (redisAppendCommandArgv(c, s->cmd[i].argc, s->cmd[i].argv, NULL) != REDIS_OK)
            return set_err(err, NORI_ENOMEM, NORI__CONNECT_FAILED, "out of memory queueing %s",
                           s->cmd[i].what);
    return 0;
}

int nori__redis_confirm_master(redisContext *c, int timeout_ms, nori__redis_dial_error *err)
{
    clear_err(err);
    const char *argv[] = {"ROLE"};
    redisReply *r = nori__redis_io_command(c, nori__real_ms() + timeout_ms,
                                           &nori__redis_small_replies, 1, argv, NULL);
    if (r == NULL)
        return no_reply(c, "ROLE", err);
    int rc = judge_role(r, err) == 0 ? 0 : 1;
    freeReplyObject(r);
    return rc;
}
