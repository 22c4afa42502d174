// SPDX-License-Identifier: MIT
/*
 * Finding the current master through Redis Sentinel, as the "Sentinel client
 * guidelines" say: ask the sentinels in turn (SENTINEL
 * get-master-addr-by-name), starting with the one that answered last time;
 * connect to the address named and check with ROLE that it really is a
 * master (a sentinel may be partitioned and out of date); if not, go on to
 * the next sentinel.
 *
 * The sentinels are asked without AUTH unless the URL gives
 * sentinel_password (and sentinel_user); the master is checked with the
 * URL's user:password. Every connection is opened by nori__redis_dial
 * (dial.h), bounded by the URL's connect (host name lookup included) and
 * command timeouts, so one resolve takes at most about
 * nsentinels * (connect + command timeout) + (connect + 2 * command timeout)
 * per candidate master.
 */
#ifndef NORI_SRC_REDIS_ROUTE_SENTINEL_H
#define NORI_SRC_REDIS_ROUTE_SENTINEL_H

#include "redis/route/url_topology.h"

/*
 * Resolves t->master_name. On NORI_OK *host (malloc'd, the caller frees)
 * and *port name a server that answered ROLE with "master", and *first is
 * the index of the sentinel that named it (pass it back next time to ask
 * that one first; 0 initially). Errors, all NORI_EBACKEND with a message
 * naming what was tried (never a password):
 *   "no sentinel reachable (tried a:p: why, ...)"
 *   "unknown master name 'X' (tried a:p, ...)"   every sentinel that answered
 *                                                 does not know the name
 *   "no sentinel named a usable master for 'X' (...)"  named masters failed ROLE
 * and NORI_ENOMEM.
 */
int nori__sentinel_resolve(const nori__redis_target *t, int *first, char **host, int *port);

#endif
