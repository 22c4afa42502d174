// SPDX-License-Identifier: MIT
/*
 * Opening a connection to one Redis server: the one way every connection of
 * this library is made (the pool's, the sentinels', the sentinel watch's and
 * the near cache listener's).
 *
 * A fresh connection goes through these steps, in order:
 *  1. connect: over TCP, the host name's lookup and the connect together
 *     bounded by connect_timeout_ms (resolve.h: the lookup runs beside the
 *     caller, never unbounded on its thread); or to a unix socket, bounded
 *     by connect_timeout_ms;
 *  2. prepare: non-blocking socket with bounded reply objects (io.h), so
 *     that every later command runs under a deadline; TCP keepalive, so that
 *     a peer that vanished without closing is noticed;
 *  3. set up: AUTH (with the user when one is given) when a password is
 *     given, SELECT when db is not 0, and ROLE with check_role (the server
 *     must still be the master: a ROLE refused by an ACL is taken as
 *     "master", as the sentinels named it). Each command is sent and
 *     answered within timeout_ms; its arguments never appear in a message.
 *
 * nori__redis_dial() does all three, blocking (bounded as said). A caller
 * that waits for several sockets at once (the sentinel watch) cannot block
 * on one, so the same steps are offered in halves: nori__redis_dial_start()
 * (step 1 without waiting for the connect), and once the socket is
 * writable nori__redis_dial_finish() (the end of the connect, step 2, and
 * step 3's commands queued, not sent), whose replies the caller reads with
 * its other traffic and hands one by one to nori__redis_setup_judge().
 *
 * No step takes a lock; everything here is safe to call from any thread
 * (on a context the caller alone uses).
 */
#ifndef NORI_SRC_REDIS_WIRE_DIAL_H
#define NORI_SRC_REDIS_WIRE_DIAL_H

#include "redis/wire/url.h"

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

/* Where and how to connect. Every string is borrowed for the call. */
typedef struct nori__redis_dial_opts {
    const char *host;       /* TCP: host name or address; NULL when unix_path is set */
    int port;               /* TCP */
    const char *unix_path;  /* unix socket path, or NULL */
    const char *user;       /* AUTH user, or NULL (AUTH with the password alone) */
    const char *password;   /* NULL: no AUTH */
    int db;                 /* SELECT when non-zero */
    int connect_timeout_ms; /* > 0: the lookup and the connect together */
    int timeout_ms;         /* > 0: each setup command */
    bool check_role;        /* ROLE: refuse a server that says it is not the master */
} nori__redis_dial_opts;

/* The options of a server URL (its strings borrowed: u must outlive the
 * options), check_role off. */
void nori__redis_dial_opts_of_url(nori__redis_dial_opts *o, const nori__redis_url *u);

/* Why opening a connection failed, for the circuit breaker (breaker.h). */
typedef enum {
    NORI__CONNECT_FAILED,  /* anything else: out of memory, AUTH or SELECT refused, not the
                              master (check_role) */
    NORI__CONNECT_SLOW,    /* the lookup, the connect or a setup command timed out */
    NORI__CONNECT_REFUSED, /* no connection: refused, reset, unreachable */
} nori__connect_failure;

/* What went wrong. `text` says what failed without naming the server (the
 * caller knows how to name it; see nori__redis_dial_fail) and never holds a
 * password: "cannot connect: Connection refused (connect timeout 1000 ms)",
 * "AUTH (password) refused by the server: WRONGPASS ...", "SELECT failed:
 * timed out after 1000 ms ...", "the server is no longer the master (ROLE:
 * slave)". */
typedef struct nori__redis_dial_error {
    int code;                   /* NORI_EBACKEND, or NORI_ENOMEM */
    nori__connect_failure kind; /* for the breaker */
    bool not_master;            /* check_role: the server answered that it is not the master */
    char text[256];
} nori__redis_dial_error;

/*
 * Connects, prepares and sets up a connection (all three steps above).
 * Returns the context, owned by the caller (redisFree), or NULL with *err
 * filled; nothing is left open on failure.
 */
redisContext *nori__redis_dial(const nori__redis_dial_opts *o, nori__redis_dial_error *err);

/* Reports err through nori__fail (error.h), the server named as `display`
 * (masked): "redis <display>: <text>", or for NORI_ENOMEM "out of memory
 * connecting to redis <display>". Returns err->code. */
int nori__redis_dial_fail(const char *display, const nori__redis_dial_error *err);

/* ---- the same steps without blocking on the connect ---- */

/* The setup commands of step 3 for some options, in order, and what each
 * reply must be. Filled by nori__redis_dial_finish; owns nothing (the
 * arguments point into the options, or into db). */
#define NORI__REDIS_SETUP_MAX 3
typedef struct nori__redis_setup {
    int n; /* commands queued; their replies come first, in order */
    struct {
        const char *what; /* "AUTH (password)", "SELECT", "ROLE": names it in messages */
        int argc;
        const char *argv[3];
    } cmd[NORI__REDIS_SETUP_MAX];
    char db[16];
} nori__redis_setup;

/*
 * Step 1 for TCP without waiting: the host name's lookup (bounded by
 * connect_timeout_ms, which it may block for), then a connect to the first
 * address, started. Returns the context, its socket connecting: wait until
 * it is writable (by connect_timeout_ms), then call nori__redis_dial_finish.
 * NULL with *err filled. o->host must be set.
 */
redisContext *nori__redis_dial_start(const nori__redis_dial_opts *o, nori__redis_dial_error *err);

/*
 * After the socket of a started dial became writable: checks that the
 * connect succeeded, prepares the context (step 2) and queues step 3's
 * commands in its output buffer, described in *s (s->n of them, maybe 0).
 * The caller queues its own commands after them, sends, and hands the
 * first s->n replies to nori__redis_setup_judge in order. 0, or -1 with
 * *err filled (c is then to be freed).
 */
int nori__redis_dial_finish(redisContext *c, const nori__redis_dial_opts *o,
                            nori__redis_setup *s, nori__redis_dial_error *err);

/* Whether the reply r to setup command i of s is what it must be: 0, or -1
 * with *err filled (the connection is then to be dropped). */
int nori__redis_setup_judge(const nori__redis_setup *s, int i, const redisReply *r,
                            nori__redis_dial_error *err);

/* ---- a server's role, on a connection already set up ---- */

typedef enum {
    NORI__ROLE_MASTER,  /* ROLE's first element is "master" */
    NORI__ROLE_OTHER,   /* "slave", "sentinel", or a reply that is no ROLE answer */
    NORI__ROLE_REFUSED, /* an error reply: an ACL that forbids ROLE */
} nori__redis_role;

/* What a reply to ROLE says; the role's name (or "unexpected reply") is
 * written into name (name_size > 0). */
nori__redis_role nori__redis_role_of(const redisReply *r, char *name, size_t name_size);

/*
 * ROLE on c, sent and answered within timeout_ms, judged as check_role
 * judges it (a refusal taken as "master"): 0 the master; 1 not the master
 * (*err filled, not_master set); -1 no answer (*err filled; c is dead).
 */
int nori__redis_confirm_master(redisContext *c, int timeout_ms, nori__redis_dial_error *err);

#endif
