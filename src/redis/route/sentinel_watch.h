// SPDX-License-Identifier: MIT
/*
 * Following the sentinels' announcements: a background thread subscribed to
 * +switch-master on every sentinel of the URL, as Jedis's sentinel pool
 * does, and to +promoted-slave, so that the backend writes to the new
 * master within moments of the switch instead of at its first READONLY or
 * lost connection.
 *
 * Why it matters: after a planned failover (SENTINEL FAILOVER) the old
 * master stays up and writable until the sentinels turn it into a replica,
 * about 10 s later; it then resynchronises from the new master and every
 * write it acknowledged meanwhile is gone. A client that waits for READONLY
 * loses all of those (test_sentinel_watch: 281,814 acknowledged writes of 8
 * threads, the last 10.1 s after the announcement).
 *
 * Why +promoted-slave too: the sentinel leading the failover publishes it
 * when the replica it promoted reports itself master; from that moment it
 * names the new master to whoever asks (get-master-addr-by-name), while
 * +switch-master follows one or more sentinel timer ticks later (up to
 * 400 ms seen), each of which the old master spends taking writes that
 * will be lost.
 *
 * An announcement is a hint, as the Sentinel client guidelines say: on it
 * the callback asks the sentinels again (the announcing one first) and
 * checks the named master's ROLE (sentinel.h), exactly as a resolve on a
 * failed call does.
 *
 * One thread for all the sentinels of a backend, driving their connections
 * with poll(2): each is connected without blocking the others (dial.h;
 * the host name's lookup is bounded by connect_timeout_ms), then sends
 * AUTH (sentinel_user / sentinel_password when given) and SUBSCRIBE
 * +switch-master +promoted-slave, confirmed within timeout_ms; once subscribed it is PINGed
 * every NORI_SENTINEL_WATCH_BEAT_MS, and a PING not answered within
 * NORI_SENTINEL_WATCH_STALL_MS ends it (generous: a sentinel slow to answer
 * on a loaded machine still delivers its announcements, while a dropped
 * subscription hears none until it is back). A sentinel that refuses,
 * hangs up, stalls or answers something unexpected is dropped and tried
 * again after a pause (100 ms, doubling up to 2 s). Every read is
 * poll-driven with a deadline; replies are bounded as every reply of this
 * library is (io.h).
 *
 * A switch announced while no subscription was live would be missed: so
 * when a subscription is confirmed while none was, after the first ones,
 * the callback runs as for an announcement (sentinel -1: ask them in the
 * usual order).
 *
 * Stop wakes the thread (a pipe) and joins it: it returns within the time
 * of the callback in progress, if any (one bounded resolve), or of one host
 * name lookup. In a process forked after the start the thread does not
 * exist: stop then only frees (nori__sentinel_watch_here says whether the
 * calling process started it).
 */
#ifndef NORI_SRC_REDIS_ROUTE_SENTINEL_WATCH_H
#define NORI_SRC_REDIS_ROUTE_SENTINEL_WATCH_H

#include "redis/route/url_topology.h"

#include <stdbool.h>
#include <stdint.h>

/* PING period of a subscribed connection, and how long a PING may go
 * unanswered before the sentinel is taken for stalled (or gone without a
 * word: a host that died). */
#define NORI_SENTINEL_WATCH_BEAT_MS 1000
#define NORI_SENTINEL_WATCH_STALL_MS 5000

typedef struct nori__sentinel_watch nori__sentinel_watch;

/*
 * Runs on the watch thread: sentinel >= 0, that sentinel (index in
 * t->addrs) announced that the master of t->master_name is now (or is
 * about to be, +promoted-slave) host:port; -1 (host NULL), one may have
 * been missed. It must resolve the master again (bounded; the thread reads
 * nothing meanwhile) and return whether it did and, for an announcement,
 * found the announced master: otherwise an announcement is acted on again
 * every 200 ms, 10 times at most (a sentinel or the new master may not
 * answer at once).
 */
typedef bool (*nori__sentinel_switch_fn)(void *ud, int sentinel, const char *host, int port);

/* Starts the thread for target t (borrowed: it must outlive the watch).
 * NORI_OK with *out owned by the caller (nori__sentinel_watch_stop), or
 * NORI_ENOMEM (no thread, no pipe). */
int nori__sentinel_watch_start(const nori__redis_target *t, nori__sentinel_switch_fn fn,
                               void *ud, nori__sentinel_watch **out);

/* Stops the thread (see above) and frees w. NULL-safe. */
void nori__sentinel_watch_stop(nori__sentinel_watch *w);

/* True when the calling process started w (false in a child forked since). */
bool nori__sentinel_watch_here(const nori__sentinel_watch *w);

/* Counters, for tests and describe. Lock-free. */
typedef struct nori__sentinel_watch_stats {
    uint64_t live;          /* subscriptions confirmed and not lost, now */
    uint64_t subscriptions; /* subscriptions confirmed so far */
    uint64_t announcements; /* +switch-master and +promoted-slave for this master name */
    uint64_t dropped;       /* connections dropped: refused, lost, stalled, bad reply */
    /* nori__real_ms() times, 0: not yet: the first announcement read,
     * and the first time the callback succeeded on one. */
    int64_t first_heard_ms, first_followed_ms;
} nori__sentinel_watch_stats;

void nori__sentinel_watch_get_stats(const nori__sentinel_watch *w, nori__sentinel_watch_stats *out);

#endif
