// SPDX-License-Identifier: MIT
/*
 * Bounded I/O on one hiredis context: every round trip ends by a deadline,
 * and no reply may allocate more than the caller allows.
 *
 * Why not hiredis's blocking calls: redisSetTimeout sets SO_RCVTIMEO, which
 * bounds each recv(2), not the command. A server that trickles its reply one
 * byte at a time keeps a blocking redisGetReply for as long as it likes (one
 * review measured 24.6 s for a 1000 ms timeout). So each context is switched
 * to non-blocking mode after connecting, and a round trip is
 * a send loop / redisBufferRead / redisGetReplyFromReader driven by
 * poll(2) on the time left before the deadline.
 *
 * Writes go out with send(2) and MSG_NOSIGNAL (not hiredis's write(2)): a
 * peer that has gone gives EPIPE, never SIGPIPE, so the application needs
 * no signal handling and no call blocks SIGPIPE. Every write to a Redis
 * socket of this library goes through this file.
 *
 * Why custom reader object functions: hiredis 0.14 allocates what the server
 * announces. "*2147483647\r\n" makes it calloc 16 GiB of element pointers,
 * and a "$300000000" bulk header makes it buffer 300 MB before handing the
 * string over. The reader of every context built here uses
 * nori__redis_reply_functions, which refuse arrays beyond the limit, and the
 * read loop refuses a bulk header beyond the limit as soon as the header has
 * arrived, before its bytes do.
 *
 * Replies that are already in the socket when the deadline passes are
 * still taken (reads without waiting, at most 256 of 16 KiB): a caller busy
 * with another connection until then (bulk.c) must not fail replies that
 * came in time; a server that sends without pause is cut off by that bound.
 *
 * After any failure the context is dead: c->err is set (for the failures
 * detected here, to one of the NORI__REDIS_ERR_* codes below, with c->errstr
 * saying what happened), so the pool frees it instead of reusing it.
 */
#ifndef NORI_SRC_REDIS_WIRE_IO_H
#define NORI_SRC_REDIS_WIRE_IO_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

/* c->err values set by this file (hiredis's own codes are 1..5). */
#define NORI__REDIS_ERR_TIMEOUT 100 /* the deadline passed */
#define NORI__REDIS_ERR_TOOBIG 101  /* a reply string (or line) is over the limits */
#define NORI__REDIS_ERR_TOOMANY 102 /* a reply array is over the element limit */

/* Most array elements one reply may hold, all nesting levels together. A
 * SCAN page of this backend asks for 1000 keys; Redis may return somewhat
 * more, never a million. */
#define NORI__REDIS_MAX_REPLY_ELEMENTS ((size_t)1 << 20)

/* What one round trip may receive. */
typedef struct nori__redis_limits {
    size_t max_bulk;     /* longest bulk string (a value, a key, INFO text), bytes */
    size_t max_total;    /* most bytes of strings over all replies of the round trip */
    size_t max_elements; /* most array elements over all replies of the round trip */
} nori__redis_limits;

/* The limits of replies that carry no cache value (status, integers, SCAN
 * pages, INFO, setup commands, messages of a subscription): strings up to
 * 1 MiB, 64 MiB in all. */
extern const nori__redis_limits nori__redis_small_replies;

/* Why a command on c got no reply (c->err is set): c->errstr, or
 * "connection lost" when hiredis left it empty. Static or c's storage. */
const char *nori__redis_describe_error(const redisContext *c);

/*
 * Parses one reply from buf[0..len) with the same bounded object functions
 * and limits as a round trip: the reply (the caller frees it with
 * freeReplyObject), or NULL when the bytes are incomplete, malformed or over
 * lim. For fuzz targets and tests that feed a server's bytes directly.
 */
redisReply *nori__redis_reply_parse(const char *buf, size_t len, const nori__redis_limits *lim);

/*
 * Prepares a freshly connected context for the functions below: its socket
 * becomes non-blocking (hiredis's REDIS_BLOCK flag cleared accordingly) and
 * its reader uses the bounded object functions. 0, or -1 with c->err set.
 */
int nori__redis_io_prepare(redisContext *c);

/*
 * Sends what is queued in c's output buffer (redisAppendCommand...) before
 * deadline_ms, reading nothing: for a connection whose replies are read
 * elsewhere (the near cache's subscribed connection). 0, or -1 with c->err
 * set.
 */
int nori__redis_io_flush(redisContext *c, int64_t deadline_ms);

/*
 * Sends what is queued in c's output buffer (redisAppendCommandArgv) and
 * reads n replies into replies[0..n), all before `deadline_ms`
 * (nori__real_ms() time base). 0: every reply is set, owned by the
 * caller (freeReplyObject). -1: no reply is set, c->err says why (timeout,
 * EOF, I/O error, protocol error, a reply over `lim`).
 */
/*
 * Takes the next complete reply already in c's reader (redisBufferRead
 * filled it) into *reply, building it with the bounded object functions
 * under `lim`: for a connection read outside a round trip (the near cache's
 * subscribed connection). `charge` carries what a reply spread over several
 * reads has taken so far (one per connection, zeroed when it is set up). 0 with *reply NULL when no complete reply is
 * buffered yet; -1 with c->err set when the reply or the item being
 * buffered is over lim or malformed (the context is then dead).
 */
typedef struct nori__redis_reply_charge {
    size_t bytes, elements; /* taken so far by the reply in progress; start at 0 */
} nori__redis_reply_charge;
int nori__redis_io_next_reply(redisContext *c, const nori__redis_limits *lim,
                              nori__redis_reply_charge *charge, void **reply);

int nori__redis_io_roundtrip(redisContext *c, int64_t deadline_ms, const nori__redis_limits *lim,
                             size_t n, redisReply **replies);

/* One command, sent and answered before the deadline: redisAppendCommandArgv
 * + nori__redis_io_roundtrip. NULL on failure, with c->err set. */
redisReply *nori__redis_io_command(redisContext *c, int64_t deadline_ms,
                                   const nori__redis_limits *lim, int argc, const char **argv,
                                   const size_t *lens);

#endif
