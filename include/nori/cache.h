// SPDX-License-Identifier: MIT
/*
 * nori/cache.h - the key-value API of libnoricache.
 *
 * A caching layer with pluggable backends (an in-process LRU memory backend and
 * Redis), TTLs, and race-free atomic primitives. What every backend promises
 * is in docs/ARCHITECTURE.md ("What every backend promises"); each function
 * below states its own part of it.
 *
 * Conventions that hold for every function in this header:
 *
 *  - Return codes: NORI_OK (0) on success, NORI_MISS (1) for a get that found
 *    nothing, a negative NORI_E* code on failure. On failure nori_last_error()
 *    holds a message that names what was wrong (the variable and its value, the
 *    key length and the limit, the Redis URL with the password masked, ...).
 *  - Failure changes nothing: a call that returns an error has written nothing.
 *    One exception, on Redis: an error after the command was sent (a timeout,
 *    a lost connection) leaves its outcome unknown, since the server may have
 *    executed it; see "Outcome of a failed call" at nori_redis_backend_new.
 *  - Thread safety: every function may be called from any thread at any time,
 *    on the same backend handle, except nori_backend_free(), which must not run
 *    concurrently with any other use of that handle.
 *  - Ownership: a nori_buf filled by the library belongs to the caller, who
 *    releases it with nori_buf_free(). Strings passed in are only read during
 *    the call; the library keeps its own copies.
 *
 * Limits (checked before anything is written):
 *  - keys: non-empty C strings of at most NORI_MAX_KEY_LEN bytes
 *    (NULL or "" -> NORI_EINVAL, longer -> NORI_ETOOBIG);
 *  - values: any bytes (NULs included) up to the backend's value limit,
 *    NORI_DEFAULT_MAX_VALUE unless changed with nori_backend_set_max_value()
 *    or CACHE_MAX_VALUE_BYTES (larger -> NORI_ETOOBIG);
 *  - ttl: seconds, 0 = no expiry, at most NORI_MAX_TTL (negative -> NORI_EINVAL,
 *    larger -> NORI_EINVAL).
 */
#ifndef NORI_CACHE_H
#define NORI_CACHE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && __GNUC__ >= 4
#define NORI_EXPORT __attribute__((visibility("default")))
#else
#define NORI_EXPORT
#endif

/* Library version, also available at run time through nori_version(). The
 * build reads these lines (CMakeLists.txt), so they are the one place the
 * version is written. While the major version is 0, a change of the minor
 * version may change the ABI: the shared libraries' soname carries both
 * (libnoricache.so.0.2). */
#define NORI_VERSION_MAJOR 0
#define NORI_VERSION_MINOR 2
#define NORI_VERSION_PATCH 0
#define NORI_VERSION_STRING "0.2.0"

/* ------------------------------------------------------------------------ */
/* Return codes                                                             */
/* ------------------------------------------------------------------------ */

/*
 * One table generates the enum and nori_strerror() together, so a code can
 * never lack its text. Negative = error; NORI_MISS is not an error.
 */
#define NORI_ERRNO_MAP(X)                                                      \
    X(OK, 0, "success")                                                        \
    X(MISS, 1, "key absent or expired")                                        \
    X(EINVAL, -1, "invalid argument or configuration value")                   \
    X(ENOMEM, -2, "out of memory")                                             \
    X(ETYPE, -3, "value is not of the required type")                          \
    X(ETOOBIG, -4, "key or value over the limit")                              \
    X(EBACKEND, -5, "backend unreachable, timed out, or replied with an error") \
    X(EABORT, -6, "update callback declined to write")                         \
    X(ERANGE, -7, "counter would overflow int64")

enum {
#define NORI__ENUM_ENTRY(name, value, text) NORI_##name = (value),
    NORI_ERRNO_MAP(NORI__ENUM_ENTRY)
#undef NORI__ENUM_ENTRY
};

/*
 * A static description of a return code ("out of memory"). Never NULL; an
 * unknown code gives "unknown error code". The string is static: do not free.
 */
NORI_EXPORT const char *nori_strerror(int code);

/*
 * The detail of the last failure on the calling thread, e.g.
 * "key is 2048 bytes, the limit is 1024". Never NULL ("" when no failure has
 * been recorded yet). The text belongs to the library and stays valid until
 * the next nori_* call on the same thread; copy it to keep it.
 * Successful calls do not clear it.
 */
NORI_EXPORT const char *nori_last_error(void);

/*
 * For code built on the public API (the HTTP adapters, an application's own
 * backend): records a printf-style detail message as the calling thread's
 * nori_last_error() and returns `code`, so that such code reports its
 * failures as the library does: `return nori_set_error(NORI_EINVAL, "...")`.
 * Messages longer than 511 bytes are cut. fmt must not be NULL.
 */
NORI_EXPORT int nori_set_error(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The run-time version string, e.g. "0.2.0". Static. */
NORI_EXPORT const char *nori_version(void);

/* ------------------------------------------------------------------------ */
/* Buffers                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * A byte buffer handed from the library to the caller. `data` is allocated
 * with malloc(), holds `len` bytes and one extra NUL byte after them (so text
 * values can be used as C strings; binary values may contain NULs too).
 * The caller owns it and releases it with nori_buf_free() (or free(data)).
 */
typedef struct {
    char *data;
    size_t len;
} nori_buf;

/* Frees b->data and sets *b to {NULL, 0}. NULL-safe, and safe on {NULL, 0}. */
NORI_EXPORT void nori_buf_free(nori_buf *b);

/* ------------------------------------------------------------------------ */
/* Limits and defaults                                                      */
/* ------------------------------------------------------------------------ */

/* Longest key in bytes (without the terminating NUL). */
#define NORI_MAX_KEY_LEN 1024
/* Default largest value in bytes: 8 MiB. */
#define NORI_DEFAULT_MAX_VALUE ((size_t)8 * 1024 * 1024)
/* Highest value limit a backend accepts: 512 MiB, Redis's largest string. */
#define NORI_MAX_VALUE_LIMIT ((size_t)512 * 1024 * 1024)
/* Longest TTL in seconds: 100 years. Longer is refused, not clamped. */
#define NORI_MAX_TTL ((int64_t)100 * 365 * 24 * 3600)
/* Default entry bound of the memory backend (CACHE_MAX_KEYS). */
#define NORI_DEFAULT_MAX_KEYS 10000
/* Default byte bound of the memory backend (CACHE_MAX_BYTES): 256 MiB. */
#define NORI_DEFAULT_MAX_BYTES ((size_t)256 * 1024 * 1024)
/* Default TTL of the convenience API's callers (Nori's cache_set default). */
#define NORI_DEFAULT_TTL 300

/* ------------------------------------------------------------------------ */
/* Backends                                                                 */
/* ------------------------------------------------------------------------ */

/* An opaque cache backend. Create with nori_*_backend_new, free with
 * nori_backend_free. One handle may be shared by any number of threads. */
typedef struct nori_backend nori_backend;

/*
 * An in-process LRU cache holding at most `max_keys` entries.
 * max_keys == 0 -> NORI_EINVAL. On success *out is a new backend owned by
 * the caller (free with nori_backend_free). On failure *out is untouched.
 *
 * LRU: inserting a new key into a full store evicts the least recently used
 * entry; get, set, incr and atomic_update of an existing key refresh its
 * position. For a single-threaded sequence the order is exact; under
 * concurrency the store never holds more than max_keys entries, every insert
 * makes progress whatever the number of threads, the victim is the least
 * recently used at the moment it is chosen among the shards whose lock is
 * free (an atomic_update callback running on the oldest key's shard does not
 * stall an insert), and two accesses from different threads in the same
 * instant may count in either order.
 * Expired entries are removed when a read finds them, and by the backend's
 * expiry thread (one per memory backend, started here): every 100 ms it
 * spends at most 25 ms removing expired entries nobody reads, a few dozen
 * buckets per lock hold (Redis's active expiry cycle), so they are gone
 * within about 2 s of expiring. An eviction removes the least recently used
 * entry, expired or not. get takes no lock: it reads in an epoch section and
 * records the access in the entry; writers apply it to the recency order.
 * The store is split into 64 shards with a lock each, so threads working on
 * different keys rarely wait for each other.
 */
NORI_EXPORT int nori_memory_backend_new(size_t max_keys, nori_backend **out);

/*
 * The memory backend's byte bound: the entries held never count more than
 * `max_bytes` bytes (0: no byte bound). A new backend has
 * NORI_DEFAULT_MAX_BYTES (256 MiB); nori_backend_from_env() applies
 * CACHE_MAX_BYTES. Each entry counts nori_memory_entry_bytes(): key, value,
 * expiry and header rounded up to the allocator's size class, plus 16 bytes
 * (allocator chunk header and bucket slot). A write that does not fit evicts
 * least recently used entries until it does; an entry larger than the bound
 * on its own is NORI_ETOOBIG with nothing written. Both bounds (max_keys and
 * bytes) hold at every moment under any interleaving. A lower bound holds
 * from the moment this call returns: the call evicts down to it, and waits
 * for the writes that took room under the old bound to land (then evicts
 * them) or give their room back. Such writes land within microseconds,
 * unless one waits for a shard whose atomic_update callback is running: the
 * call then waits for that callback too. Room taken after the new bound is
 * stored is checked against it. Not counted: entries just removed that a
 * concurrent lock-free reader may still be copying (at most 32 entries or
 * 64 KiB per shard, freed as soon as the readers leave), and the fixed
 * per-backend structures (about 40 KiB plus the bucket arrays' growth).
 * NORI_EINVAL when b is not a memory backend; refused (NORI_EINVAL) from
 * inside an atomic_update callback of the same backend.
 */
NORI_EXPORT int nori_memory_backend_set_max_bytes(nori_backend *b, size_t max_bytes);

/* The byte bound (0: none); 0 also when b is not a memory backend. */
NORI_EXPORT size_t nori_memory_backend_max_bytes(const nori_backend *b);

/* The bytes an entry with a key of key_len bytes and a value of value_len
 * bytes counts against the byte bound (has_ttl: the entry expires). */
NORI_EXPORT size_t nori_memory_entry_bytes(size_t key_len, size_t value_len, int has_ttl);

/* ------------------------------------------------------------------------ */
/* Shared-memory backend: one cache for the worker processes of a machine   */
/* ------------------------------------------------------------------------ */

/* Longest segment name, in bytes. */
#define NORI_SHM_NAME_MAX 200
/* Default bound on waiting for a lock of a shared-memory segment. */
#define NORI_SHM_DEFAULT_LOCK_TIMEOUT_MS 1000
/* Largest byte bound (arena) of a shared-memory segment: 32 GiB. */
#define NORI_SHM_MAX_BYTES ((uint64_t)32 << 30)

/*
 * A cache in a POSIX shared-memory segment that every process mapping it
 * uses at once: the memory backend's semantics (LRU exact for a single
 * client's sequence, whichever process it runs in; max_keys and max_bytes
 * hold at every moment; TTLs never early; lazy and active expiry; the whole
 * key-value API) with incr, atomic_update, add and delete_if_equal atomic
 * across processes. On success *out is a new handle owned by the caller
 * (nori_backend_free unmaps it; the segment stays); on failure *out is
 * untouched.
 *
 * Name: 1..NORI_SHM_NAME_MAX bytes, no '/', no control character, not "."
 * or ".." (NORI_EINVAL otherwise); the segment is /dev/shm/<name>. The
 * default of nori_backend_from_env (CACHE_SHM_NAME) is "nori-cache-<uid>",
 * one per user.
 *
 * Creates or attaches: when no segment of that name exists, one is built
 * under a temporary name (mode 0600, owned by the caller) and published
 * under `name` only once complete (link(2)), so no process ever maps a
 * half-initialised segment, and a creator that dies meanwhile leaves no
 * segment behind (its temporary file is removed by the next creator after
 * a minute). When it exists, it is attached after checks, each refused with
 * NORI_EINVAL naming the segment and what is wrong: a regular file owned by
 * the calling user (geteuid) with mode 0600; a header with the right magic,
 * this library's layout version (another version: refused, naming both),
 * byte order, an intact checksum, sizes whose layout recomputes exactly and
 * fits the file's size (a truncated or corrupted segment is never mapped
 * blindly); and the same max_keys and max_bytes as asked (a segment built
 * for other sizes: unlink it, or ask for its sizes).
 *
 * Sizes: max_keys 1..268435456; max_bytes (the byte bound, CACHE_MAX_BYTES)
 * 65536..NORI_SHM_MAX_BYTES (64 KiB .. 32 GiB). Each entry counts its chunk (the
 * smallest of 46 size classes from 48 bytes to 4 KiB that holds a 32-byte
 * header, the key and the value), or, for an entry over 4 KiB, a chunk for
 * header and key plus the value's 4 KiB pages. The mapping is
 * nori_shm_segment_bytes(max_keys, max_bytes): max_bytes rounded up to
 * 4 KiB, plus a fixed part that never grows: 46 pages of slab slack, about
 * 150 KiB for the header, the 64 shards and 256 flight slots of the
 * response cache, 8 bytes per bucket (64 shards x the power of two at or
 * above max_keys / 64), 8 bytes and a bit per LRU stamp slot (max_keys +
 * 128) and 16 bytes per page (for max_keys 10000 and 256 MiB: 256 MiB +
 * 1.53 MiB). Pages are allocated by the kernel as they
 * are first touched. When the arena has no free chunk of an entry's class
 * and no free page although both bounds have room (its free space is in
 * chunks of other classes), the write evicts further least recently used
 * entries until one is free (counted in nori_shm_stats.frag_evictions).
 *
 * Reads take no lock (a per-bucket sequence counter is read before and after
 * the copy; a copy that overlapped a write is retried, four times, then
 * read under the lock), so a read never returns a torn value. Writes take
 * one of 64 shard locks: robust, process-shared mutexes taken with a
 * deadline (the lock timeout, NORI_SHM_DEFAULT_LOCK_TIMEOUT_MS unless set
 * with nori_shm_backend_set_lock_timeout). A process stopped while it holds
 * one (SIGSTOP, a debugger, an atomic_update callback that blocks) makes
 * the others' calls on that shard fail with NORI_EBACKEND after the timeout
 * ("shm segment 'n': shard 12 is locked by pid 4242 for more than
 * 1000 ms"), never wait for ever. A process that dies holding one (SIGKILL
 * at any instruction) costs only the call it was making: every change a
 * locked section makes is undo-logged first, and the next process to take
 * the lock rolls the section back (the shard as it was before that call),
 * counted in nori_shm_stats.repairs. The process may also die at any other
 * moment: nothing is held outside a lock.
 *
 * Counters: evictions, expired, entries and bytes in nori_backend_stats are
 * the segment's (every process's); hits, misses and errors are this
 * handle's. The expiry thread: one per handle (started here), but one cycle
 * per 100 ms for the whole segment, whichever process runs it.
 *
 * fork(): a child inherits the mapping and may use the handle at once (its
 * expiry thread starts with its first write). Locks are the segment's, not
 * the process's: one held by another thread of the parent at fork() is
 * released by that thread in the parent, and the child's call waits for it
 * as for any other process (within the lock timeout). An atomic_update
 * callback that calls fork() completes its update in the parent only: the
 * child's copy of the call returns NORI_EBACKEND and writes nothing (two
 * processes cannot finish one locked section).
 *
 * Security: every process that can map the segment can read and write every
 * entry, so the segment is the user's (mode 0600, owner checked on attach);
 * processes of one user trust each other not to scribble on it outside this
 * library. Segments live until nori_shm_backend_unlink or a reboot.
 */
NORI_EXPORT int nori_shm_backend_new(const char *name, size_t max_keys, size_t max_bytes,
                                     nori_backend **out);

/*
 * Removes the segment's name (shm_unlink): processes that have it mapped keep
 * using it, and the memory goes back to the system when the last one unmaps
 * it; the next nori_shm_backend_new of the name creates a new segment.
 * NORI_OK, NORI_MISS when no segment has that name, NORI_EINVAL for a bad
 * name, NORI_EBACKEND naming the system error.
 */
NORI_EXPORT int nori_shm_backend_unlink(const char *name);

/* The size of the mapping of a segment for (max_keys, max_bytes), or 0 when
 * they are out of range. */
NORI_EXPORT size_t nori_shm_segment_bytes(size_t max_keys, size_t max_bytes);

/*
 * Sets this handle's bound on waiting for a lock of the segment, in
 * milliseconds (1 .. 3600000, else NORI_EINVAL). NORI_EINVAL also when b is
 * not a shm backend.
 */
NORI_EXPORT int nori_shm_backend_set_lock_timeout(nori_backend *b, int64_t ms);

/* The segment's own counters (every process's), and its sizes. */
typedef struct {
    uint64_t owner_died;     /* locks found held by a process that had died */
    uint64_t repairs;        /* locked sections rolled back after such a death */
    uint64_t lock_timeouts;  /* calls that gave up waiting for a lock */
    uint64_t shard_resets;   /* shards emptied because their undo log or a bucket chain was
                                unreadable (never expected: only a faulty process mapping the
                                segment writes one; their memory is not recovered) */
    uint64_t frag_evictions; /* evictions made for a free chunk, not for a bound */
    uint64_t segment_bytes;  /* the mapping */
    uint64_t max_keys, max_bytes;
    uint64_t free_pages;     /* 4 KiB pages of the arena not in use now */
    uint64_t generation;     /* random, fixed at creation: tells two segments of a name apart */
    int64_t creator_pid;
} nori_shm_stats;

/* Fills *out for a shm backend; NORI_EINVAL for another kind. Takes no
 * lock. */
NORI_EXPORT int nori_shm_backend_get_stats(nori_backend *b, nori_shm_stats *out);

/*
 * A backend on a Redis server, shared by every process that uses the same
 * server. On success *out is a new backend owned by the caller (free with
 * nori_backend_free); on failure *out is untouched.
 *
 * URL forms:
 *   redis://[[user]:password@]host[:port][/db][?option=value&...]
 *       host: a name, an IPv4 address or [IPv6]; port default 6379; db
 *       default 0. user and password may be percent-encoded (%40 for '@',
 *       %2F for '/', %3F for '?', %23 for '#'; an unencoded '/', '?' or '#'
 *       in them is refused with a message that says so).
 *       With a password the backend sends AUTH password (AUTH user password
 *       when a user is given) on every new connection; with db != 0, SELECT.
 *   redis://password@host...  (no ':' before the '@': the whole userinfo is
 *       the password, as Lettuce reads it; a user name needs user:password)
 *   unix:///path/to.sock[?db=N&user=U&password=P&option=value&...]
 *       (redis-py's form; user needs password; both percent-decoded)
 * Options (query string):
 *   connect_timeout_ms  bound on establishing a connection (default 1000)
 *   timeout_ms          bound on each round trip, from sending the command
 *                       (or pipeline) to its complete reply (default 1000)
 *   pool_size           most idle connections kept for reuse (default 64)
 *   circuit_failures    consecutive timeouts that open the circuit breaker
 *                       (default 5; 0 turns the breaker off)
 *   circuit_cooldown_ms how long the breaker stays open (default 2000)
 *   wait_replicas       0 (default): off. N >= 1: every write (set, add,
 *                       delete, delete_if_equal, incr, atomic_update,
 *                       set_many, delete_many, flush and delete_prefix
 *                       batches) is followed, in the same round trip and on
 *                       the same connection, by WAIT N wait_timeout_ms; when
 *                       fewer than N replicas acknowledged it, the call is
 *                       NORI_EBACKEND ("written on the master, but only k of
 *                       the N replicas ... may be lost if the master fails
 *                       now"): the write WAS applied on the master, it is
 *                       just not yet safe from a failover. A write that
 *                       wrote nothing (an error, SET NX not done, EXEC
 *                       aborted) does not judge the WAIT. Reads never wait.
 *                       WAIT narrows the loss window of asynchronous
 *                       replication; it does not make Redis strongly
 *                       consistent (a failover may still promote a replica
 *                       that had not acknowledged). Use a separate backend
 *                       with this option for the writes that need it.
 *   wait_timeout_ms     WAIT's timeout (default 100; 1 to less than
 *                       timeout_ms, since the WAIT is part of the write's
 *                       round trip)
 * rediss:// (TLS: hiredis 0.14 has none), any other scheme, an unknown option
 * or a malformed URL is NORI_EINVAL, with the URL shown with its password
 * replaced by "***". No message of the library ever shows a password.
 *
 * Connects lazily: the URL is validated here, the first connection is made
 * by the first call that needs one. Use nori_backend_verify() (INFO server) to
 * check reachability.
 *
 * Redis Cluster: a redis:// URL may name any node of a cluster. Keyed calls
 * go to that node as they are until it redirects one (MOVED, ASK,
 * CLUSTERDOWN), so a single server pays no extra round trip; a redirection,
 * or a call on the whole keyspace (flush, delete_prefix, verify, describe),
 * finds out the mode (INFO: cluster_enabled:1) and reads the slot map
 * (CLUSTER SLOTS). More seeds, asked in turn when the first is down:
 * ?addr=host:port (repeatable). Each key goes to the master of its slot
 * (CRC16 of "cache:" + key, hash tags {...} honoured), one connection pool
 * per node; MOVED, ASK, TRYAGAIN, CLUSTERDOWN and unreachable nodes are
 * retried (at most 16 attempts and about 3 s of back-off per call, then
 * NORI_EBACKEND naming the last redirection or error). flush and
 * delete_prefix scan every master; verify checks every master and
 * cluster_state:ok.
 *
 * Sentinel: redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/MASTERNAME[/db][?options]
 * (sentinel port default 26379). The sentinels are asked in turn (SENTINEL
 * get-master-addr-by-name), the master is checked with ROLE; the master is
 * resolved again when a connection to it fails and when it answers
 * READONLY, and the old master's idle connections are dropped. user:password
 * are the master's (and its replicas'); sentinels are asked without AUTH
 * unless ?sentinel_password=P (and ?sentinel_user=U) is given. Distinct
 * errors: "no sentinel reachable (tried a:p: why, ...)", "unknown master
 * name 'X' (tried ...)"; passwords never appear in a message.
 *
 * Connections: a pool. Each call borrows one connection for its duration (a
 * connection is never used by two threads at once); when none is idle a new
 * one is opened, so the number of connections grows with the number of
 * threads calling at the same moment; at most pool_size idle ones are kept.
 * After any I/O error, timeout or protocol error the connection is closed,
 * not reused: the next call connects afresh, so the same handle works again
 * once the server is back. A dead or hung server gives NORI_EBACKEND after
 * about connect_timeout_ms (or timeout_ms for a server that accepted the
 * connection but does not answer), never a hang; the message names the URL
 * (password masked) and what happened (connection refused, timed out, the
 * server's error text).
 *
 * Deadlines: timeout_ms bounds the whole round trip, not each read, so a
 * server that trickles its reply byte by byte still fails the call with
 * NORI_EBACKEND "timed out" after timeout_ms. A call makes one round trip
 * (get, set, delete, verify), up to three (incr: SCRIPT LOAD once per
 * backend, EVALSHA, EVAL after a server restart), three or more per attempt
 * (atomic_update), or one per SCAN page (flush, delete_prefix); a new
 * connection adds the connect and one round trip each for AUTH and SELECT.
 *
 * Reply bounds: a reply may not make the library allocate more than it
 * needs. A value read (get, get_into, atomic_update's read) longer than the
 * backend's value limit (nori_backend_set_max_value, CACHE_MAX_VALUE_BYTES)
 * is NORI_ETOOBIG, refused from its length header before its bytes are read;
 * other replies may hold strings up to 1 MiB and at most 2^20 array elements
 * (a hostile "*2147483647" fails at once with NORI_EBACKEND). Either way the
 * connection is closed.
 *
 * Circuit breaker: after circuit_failures consecutive calls that timed out
 * (no reply by the deadline, or a connect that timed out), the backend fails
 * every call at once with NORI_EBACKEND "circuit open" for
 * circuit_cooldown_ms, so that a frozen server does not hold every calling
 * thread for timeout_ms. Then the next call is let through as a probe while
 * the others keep failing fast: a reply (any reply) closes the breaker, a
 * timeout opens it for another cool-down. On one server a refused or reset
 * connection fails in microseconds and does not count. On a cluster or
 * through Sentinel it does count (per node): there it starts the retries
 * above (up to about 3 s per call), so with every node down the calls would
 * each wait that long; after circuit_failures refusals the node's calls
 * fail fast instead, and a map or master that names another node is still
 * followed. A breaker opened by refusals is probed again every 100 ms (a
 * refused probe costs microseconds), so a node that restarts is used again
 * within about 100 ms of accepting connections. AUTH or SELECT refused by
 * the server is a reply, not a refusal, and does not count. Any reply
 * resets the count.
 * The state and counters are in nori_backend_get_stats (circuit_state,
 * circuit_opens, circuit_rejected, timeouts).
 *
 * Outcome of a failed call: NORI_EBACKEND (or NORI_ETOOBIG on a read) after
 * the command was sent means the command may or may not have been executed:
 * a set may have been stored, a delete done, an incr counted, an
 * atomic_update written. "circuit open", a refused connection and argument
 * errors are known not to have sent anything. Writes of whole values (set,
 * delete) may simply be retried; never retry an incr blindly, since that can
 * count twice: read the counter back, or accept that a failed incr may have
 * counted (a rate limit that errs towards counting too much).
 *
 * Server version: Redis 6.0 or later (SET ... KEEPTTL, used by
 * atomic_update with ttl 0; UNLINK needs 4.0). nori_backend_verify checks it.
 *
 * Wire format, shared with Nori's Python implementation: key "cache:" + key,
 * values stored as given. flush only removes keys under "cache:" (SCAN +
 * UNLINK), never FLUSHDB. Writes use send(2) with MSG_NOSIGNAL, so a
 * dropped connection is an error (NORI_EBACKEND), never a killed process;
 * the library touches no signal mask or disposition.
 */
NORI_EXPORT int nori_redis_backend_new(const char *url, nori_backend **out);

/*
 * The backend the environment asks for: CACHE_BACKEND (memory | redis | shm,
 * default memory), CACHE_MAX_KEYS (positive integer, default 10000),
 * REDIS_URL (default redis://localhost:6379), CACHE_MAX_VALUE_BYTES (positive
 * integer, default NORI_DEFAULT_MAX_VALUE), CACHE_MAX_BYTES (memory backend
 * byte bound: a non-negative integer, 0 = none, default
 * NORI_DEFAULT_MAX_BYTES; shm: the arena, 0 refused), CACHE_SHM_NAME (shm:
 * the segment, default "nori-cache-<euid>"; see nori_shm_backend_new).
 * Each is read from the process
 * environment first, then from a `.env` file in the working directory.
 * A bad value is NORI_EINVAL with a message naming the variable and the value;
 * there is never a silent fallback to another backend.
 */
NORI_EXPORT int nori_backend_from_env(nori_backend **out);

/* Frees the backend and everything it holds. NULL-safe. No call on the same
 * handle may be running or follow. Memory backend: also stops its expiry
 * thread (signals it and joins it; a cycle in progress ends within its
 * 25 ms budget). */
NORI_EXPORT void nori_backend_free(nori_backend *b);

/* The backend's kind: "memory", "redis" or "shm". Static string. */
NORI_EXPORT const char *nori_backend_kind(const nori_backend *b);

/*
 * Sets the largest value this backend accepts, in bytes (1 ..
 * NORI_MAX_VALUE_LIMIT, else NORI_EINVAL). Applies to set and atomic_update.
 */
NORI_EXPORT int nori_backend_set_max_value(nori_backend *b, size_t max_value);
NORI_EXPORT size_t nori_backend_max_value(const nori_backend *b);

/* ------------------------------------------------------------------------ */
/* Key-value operations                                                     */
/* ------------------------------------------------------------------------ */

/*
 * Reads `key`. NORI_OK: *out holds a copy of the value, owned by the caller.
 * NORI_MISS: absent or expired (an expired entry is removed); *out = {NULL,0}.
 * On error *out = {NULL, 0} too.
 */
NORI_EXPORT int nori_backend_get(nori_backend *b, const char *key, nori_buf *out);

/*
 * Reads `key` into the caller's buffer: no allocation, for hot paths with a
 * known bound on value sizes. NORI_OK: the value's `*len` bytes are in buf
 * (no NUL is added). NORI_MISS: absent or expired, *len = 0. A value larger
 * than `cap`: NORI_ETOOBIG with *len set to the size needed and nothing
 * copied (on the memory backend the entry is not refreshed either).
 * len may be NULL; buf may be NULL only when cap is 0.
 */
NORI_EXPORT int nori_backend_get_into(nori_backend *b, const char *key, void *buf, size_t cap,
                                      size_t *len);

/*
 * Stores `len` bytes at `val` under `key`, replacing any value. ttl > 0:
 * expires ttl seconds from now; ttl == 0: never expires. val may be NULL only
 * when len == 0. The bytes are copied.
 */
NORI_EXPORT int nori_backend_set(nori_backend *b, const char *key, const void *val,
                                 size_t len, int64_t ttl);

/* Removes `key`. A missing key is NORI_OK. */
NORI_EXPORT int nori_backend_delete(nori_backend *b, const char *key);

/* Removes every key of this cache (Redis: only keys under the cache: prefix). */
NORI_EXPORT int nori_backend_flush(nori_backend *b);

/*
 * Atomically increments the integer counter at `key` and stores the new value
 * in *out (if out is non-NULL).
 *  - absent or expired key: the counter becomes 1, and ttl (if > 0) is applied
 *    then, and only then;
 *  - existing counter: incremented, its expiry left exactly as it was
 *    (including "no expiry"); ttl is ignored;
 *  - existing value that is not a canonical decimal int64 ("42", "-7"; no
 *    spaces, no '+', no leading zeros, as Redis reads integers):
 *    NORI_ETYPE, value untouched;
 *  - INT64_MAX: NORI_ERANGE, value untouched.
 * A counter reads back with get as its decimal text ("42").
 * N concurrent increments return exactly 1..N between them.
 *
 * Redis Cluster and Sentinel failover: incr is not retried after an I/O
 * error or timeout (the script may have run), so such a NORI_EBACKEND means
 * "maybe applied"; a refused connection or a redirection is retried (nothing
 * ran). Redis replicates asynchronously: a master killed just after it
 * acknowledged an increment can lose it when its replica takes over (the
 * server's behaviour, not the library's; a few increments acknowledged in
 * the last milliseconds before the crash). The same holds for set and
 * atomic_update. The URL option wait_replicas=N makes each such write wait
 * (WAIT) until N replicas have it, or fail saying they did not (see
 * nori_redis_backend_new).
 *
 * Counters that enforce security (login throttles, rate limits): keep them in
 * a backend of their own, never in the one that holds cached pages, whose
 * eviction (memory: CACHE_MAX_KEYS; Redis: maxmemory-policy) lets anyone who
 * can request many distinct pages reset them. Fail closed: when incr returns
 * an error, refuse the attempt rather than let it through uncounted. See
 * README "Counters that enforce security" and nori-demo's /login.
 */
NORI_EXPORT int nori_backend_incr(nori_backend *b, const char *key, int64_t ttl,
                                  int64_t *out);

/*
 * Leases (short locks shared by every process on a backend; the response
 * cache uses them to coalesce fills across processes on Redis).
 *
 * nori_backend_add: stores val at key only when the key is absent or
 * expired, with an expiry ttl_ms milliseconds later (1..NORI_MAX_TTL*1000;
 * required: a lease must end even if its holder dies). *added (may be NULL)
 * is 1 when written, 0 when the key existed (then nothing changed). Redis:
 * SET key val NX PX ttl_ms, one atomic command.
 *
 * nori_backend_delete_if_equal: removes key only when its value is exactly
 * val[0..len) (release a lease by its token, never someone else's after
 * ours expired). *deleted (may be NULL) is 1 or 0. Redis: one Lua script
 * (GET, compare, DEL).
 * Both: NORI_OK, or the usual argument/backend errors.
 */
NORI_EXPORT int nori_backend_add(nori_backend *b, const char *key, const void *val, size_t len,
                                 int64_t ttl_ms, int *added);
NORI_EXPORT int nori_backend_delete_if_equal(nori_backend *b, const char *key, const void *val,
                                             size_t len, int *deleted);

/*
 * The callback of atomic_update. `current` is the value now stored (NULL when
 * absent or expired); it is owned by the library and valid during the call.
 * To write, fill `next` with a malloc()ed buffer (data may be NULL when
 * len == 0) and return 0: the library takes ownership of next->data. To write
 * nothing, return non-zero (anything placed in next is freed by the library).
 */
typedef int (*nori_update_fn)(const nori_buf *current, nori_buf *next, void *ud);

/*
 * Read-modify-write of `key` without lost updates.
 * ttl > 0: the new value expires ttl seconds from now. ttl == 0: the existing
 * expiry is kept (a new key gets none).
 * fn returning non-zero: NORI_EABORT, nothing written.
 * On NORI_OK, if out is non-NULL, *out receives a copy of the value written.
 * fn must return: leaving it by longjmp(), a C++ exception or
 * pthread_exit() leaves the lock it runs under held (memory, shm) and the
 * backend unusable from that thread.
 *
 * Memory backend: fn runs exactly once, under the backend's lock, so it must
 * be quick and must not call the cache. While it runs it holds its key's
 * shard lock and, for a new key, one place of max_keys: another thread's
 * insert that needs that place waits for fn to return (sleeping, not
 * spinning). A call to another backend from fn is allowed, but two
 * backends whose callbacks call each other from two threads can deadlock
 * (A's lock then B's against B's then A's). Redis backend: fn may run more than
 * once under contention (WATCH/MULTI/EXEC retry), so it must be idempotent.
 * Memory backend details: a call from fn into the same backend (directly, or
 * through the callback of another backend's atomic_update) is refused with
 * NORI_EINVAL instead of deadlocking; nori_backend_get_stats() takes no lock
 * and may be called from fn. A value over the byte bound is NORI_ETOOBIG
 * after fn ran. When room for the new value has to be made while every
 * other shard holding entries is locked by other threads, the write waits
 * for room without the lock and then goes in only if the key did not change
 * meanwhile; if it did, NORI_ENOMEM with nothing written (fn is not run
 * again). A slow fn also delays other writes to keys of the same shard (one
 * of 64), never an insert elsewhere: eviction skips a locked shard. fork()
 * in another thread waits for fn to return (README, "Memory backend and
 * fork()"); fn may itself call fork(): the update completes in both
 * processes.
 */
NORI_EXPORT int nori_backend_atomic_update(nori_backend *b, const char *key,
                                           nori_update_fn fn, void *ud, int64_t ttl,
                                           nori_buf *out);

/*
 * Removes every key of this cache that starts with `prefix` (a non-empty key
 * prefix, same limits as a key; NULL or "" is NORI_EINVAL: use flush). The
 * prefix is literal: '*', '?', '[' and '\\' match only themselves.
 * Memory backend: one pass over the shards, each under its own lock, so a key
 * written meanwhile in a shard already passed survives. Redis: SCAN MATCH
 * over "cache:" + the glob-escaped prefix, UNLINK in batches (never KEYS):
 * every matching key present for the whole call is removed; the call costs
 * a full SCAN of the database, as flush does.
 */
NORI_EXPORT int nori_backend_delete_prefix(nori_backend *b, const char *prefix);

/* Checks that the backend can serve: memory: NORI_OK; Redis: INFO server
 * answers within timeout_ms and reports redis_version 6.0 or later (an older
 * server is NORI_EBACKEND naming its version). On a cluster: every master of
 * a fresh slot map passes that check and says cluster_state:ok; through
 * Sentinel: the current master does; the message names the node that failed. */
NORI_EXPORT int nori_backend_verify(nori_backend *b);

/*
 * Describes what the backend talks to, for diagnostics (`noricache check`):
 * for Redis the mode (standalone, cluster, sentinel), the nodes with their
 * role and slot ranges, the sentinels' current master; it connects (and
 * reads a fresh slot map) to find out. Memory: "mode: memory". On NORI_OK
 * *out is a malloc'd, NUL-terminated text that the caller frees with free().
 */
NORI_EXPORT int nori_backend_describe(nori_backend *b, char **out);

/*
 * Counters since the backend was created. For Redis only hits, misses and
 * errors are counted (evictions happen on the server). `entries` is the
 * number of entries held now (memory backend; 0 for Redis).
 */
typedef struct {
    uint64_t hits;      /* get found a live value */
    uint64_t misses;    /* get found nothing */
    uint64_t evictions; /* live entries removed by the max_keys bound */
    uint64_t expired;   /* expired entries removed */
    uint64_t errors;    /* calls that returned a negative code */
    uint64_t entries;   /* entries now held */
    uint64_t bytes;     /* memory backend: bytes now held, as the byte bound counts them */
    uint64_t max_bytes; /* memory backend: the byte bound (0: none); 0 for Redis */
    /* Redis only (0 on memory): the circuit breaker, see nori_redis_backend_new. */
    uint64_t circuit_state;    /* NORI_CIRCUIT_CLOSED, _OPEN or _HALF_OPEN, now */
    uint64_t circuit_opens;    /* times the breaker opened */
    uint64_t circuit_rejected; /* calls failed fast because it was open */
    uint64_t timeouts;         /* commands and connects that ran out of time */
} nori_backend_stats;

/* Values of nori_backend_stats.circuit_state. */
#define NORI_CIRCUIT_CLOSED 0    /* calls go to the server */
#define NORI_CIRCUIT_OPEN 1      /* calls fail fast until the cool-down ends */
#define NORI_CIRCUIT_HALF_OPEN 2 /* one probe call is testing the server */

NORI_EXPORT int nori_backend_get_stats(nori_backend *b, nori_backend_stats *out);

/* ------------------------------------------------------------------------ */
/* Near cache (Redis backend)                                               */
/* ------------------------------------------------------------------------ */

/*
 * Gives a Redis backend a near cache: a bounded in-process copy of the
 * values this process reads, served without talking to Redis, and kept
 * coherent by Redis itself (server-assisted client-side caching: data
 * connections run `CLIENT TRACKING on REDIRECT <id>` to one connection
 * subscribed to __redis__:invalidate, read by a background thread). Same
 * API, same wire format; writes go to Redis first.
 *
 * Bounds: at most max_keys local entries and max_bytes bytes (key + value +
 * 64 bytes each); 0 means no bound on that dimension, both 0 is NORI_EINVAL.
 * A local copy never outlives the key's TTL in Redis (PTTL, read with the
 * value) nor max_ttl_ms (0: 60000; negative: NORI_EINVAL), the bound on
 * staleness for whatever Redis does not announce (below). A value larger
 * than max_bytes/shards (up to 16 shards, at least 1 MiB each) is not kept
 * locally.
 *
 * Coherence:
 *  - another client's change (SET, DEL, EXPIRE, INCR, ...) drops the local
 *    copy when its invalidation message arrives (well under a millisecond
 *    on loopback; docs/BENCHMARKS.md); FLUSHALL / FLUSHDB drop everything;
 *  - this process's own set, delete, incr and atomic_update drop the local
 *    copy before returning (also on error: the outcome is then unknown),
 *    flush and delete_prefix drop every local copy: a process reads its own
 *    writes;
 *  - a reply is kept only if no invalidation of its key arrived while it was
 *    in flight, and only when the connection it came on proved, in the same
 *    round trip (CLIENT TRACKINGINFO), that its tracking redirects to the
 *    live listener;
 *  - a thread never reads a value older than one it has read before: every
 *    read from Redis, kept or not, is checked against the fill in flight
 *    for its key and the copy held (a fill that raced with a read of
 *    another value keeps nothing; a copy that differs from a newer read is
 *    dropped);
 *  - SWAPDB sends no invalidation (Redis 7.0): the listener keeps a marker
 *    key in the database, `cache:__nori_near_db_id__` (a random token,
 *    written once with SET NX by the first process that finds it absent),
 *    and reads it at every heartbeat; a changed or missing marker empties
 *    the near cache (flushes_db_changed), so a SWAPDB is seen within about
 *    one heartbeat (500 ms) and a round trip. A flush of the cache deletes
 *    the marker too (it is written again, with one more near-cache flush). Not detected, so bounded by max_ttl_ms
 *    only: an older copy of the same database restored without a restart,
 *    and any node counted in db_unchecked (a cluster master that does not
 *    hold the marker's slot, where SWAPDB is refused anyway; a marker the
 *    ACL forbids). Do not use that key for data;
 *  - losing the listener's connection, a PING on it unanswered for 500 ms,
 *    or a tracked data connection that vanished or lost tracking (checked
 *    every 500 ms with CLIENT LIST) empties the near cache and stops filling
 *    it until tracking is proved again; so does a write or tracked read that
 *    fails with NORI_EBACKEND (its connection is freed, and Redis forgets
 *    what a closed connection read). A data connection the pool closes for
 *    being surplus is noticed by the next CLIENT LIST (within about 500 ms).
 * While nothing changes, a hot key costs Redis nothing; the listener sends
 * at most 6 commands per second (PING, CLIENT LIST, GET of the marker).
 *
 * Redis Cluster and Sentinel: the same guarantees. One listener per node
 * this process reads from (started at the node's first read, which is not
 * kept locally); a reply is kept only from the operation's first attempt
 * (never after MOVED, ASK or a retry), proved on the node that answered,
 * with the key still routed to that node when the reply is in. Losing any
 * node's listener or tracking, a slot that changes owner in the map
 * (failover, reshard) or a new sentinel master empties the whole near
 * cache (flushes_topology counts the last two). Through Sentinel each
 * listener checks that its node is a master (ROLE, every 2 s): a demoted
 * one is not trusted and the backend asks the sentinels at once.
 *
 * Call once, right after nori_redis_backend_new() and before the handle is
 * used or shared. NORI_EINVAL when b is not a Redis backend, already has a
 * near cache, or a bound is invalid. Needs Redis 6.2+ (CLIENT TRACKINGINFO);
 * on an older server nothing is kept locally (reads go to Redis). Two extra
 * connections per node read from (the subscribed one and one for the
 * heartbeat's checks).
 * Environment: CACHE_NEAR_MAX_KEYS, CACHE_NEAR_MAX_BYTES, CACHE_NEAR_MAX_TTL_MS
 * (max_ttl_ms; nori_backend_from_env).
 */
NORI_EXPORT int nori_redis_backend_enable_near(nori_backend *b, size_t max_keys,
                                               size_t max_bytes, int64_t max_ttl_ms);

typedef struct {
    uint64_t hits;            /* gets served locally */
    uint64_t misses;          /* gets that went to Redis */
    uint64_t fills;           /* values kept locally */
    uint64_t fills_discarded; /* replies not kept (raced with a change, not proved, too big) */
    uint64_t invalidations;   /* keys named by invalidation messages */
    uint64_t evictions;       /* local copies dropped by the bounds */
    uint64_t flushes_own;           /* flush / delete_prefix by this process */
    uint64_t flushes_server;        /* FLUSHALL / FLUSHDB on the server */
    uint64_t flushes_listener_lost; /* invalidation connection lost */
    uint64_t flushes_heartbeat;     /* PING unanswered in time */
    uint64_t flushes_tracking_lost; /* a tracked data connection lost its tracking */
    uint64_t flushes_topology;      /* keys changed node: cluster slot moved, new sentinel master */
    uint64_t entries;         /* local entries now */
    uint64_t bytes;           /* local bytes now, as counted against max_bytes */
    int active;               /* 1 while tracking is proved (serving and filling); on a
                                 cluster or through Sentinel: on at least one node */
    uint64_t flushes_db_changed; /* the database marker changed or went: SWAPDB, a flush */
    uint64_t db_unchecked;    /* nodes listened to now whose database marker is not
                                 read (see above): SWAPDB there is bounded by
                                 max_ttl_ms only */
} nori_near_stats;

/* Counters of b's near cache. NORI_EINVAL when b has none. */
NORI_EXPORT int nori_backend_get_near_stats(nori_backend *b, nori_near_stats *out);

/* ------------------------------------------------------------------------ */
/* Bulk calls: many keys, one round trip                                    */
/* ------------------------------------------------------------------------ */

/*
 * Conventions of the three bulk calls below:
 *  - n keys (1 .. NORI_MAX_BULK; n == 0 is NORI_OK and does nothing); each
 *    key gets its own result code, in order, checked and executed as the
 *    single-key call would: a bad key (NULL, empty, too long) or a bad
 *    value fails that key only, the others go ahead.
 *  - The call returns NORI_OK when every key succeeded (for get_many: NORI_OK
 *    or NORI_MISS), else the code of the first key that failed, which
 *    nori_last_error() describes. A bad call itself (b NULL, keys/items or
 *    results NULL with n > 0, n > NORI_MAX_BULK) is NORI_EINVAL with every
 *    given result set to NORI_EINVAL and nothing done.
 *  - Redis (single node): the valid keys go in one round trip (a pipeline of
 *    GETs, SETs or UNLINKs, one per key), bounded as a whole by
 *    timeout_ms; an I/O error or timeout fails every key of the round trip,
 *    with the outcome of writes unknown (see nori_redis_backend_new).
 *  - Redis Cluster: the keys are grouped by the master of their slot (the
 *    current map), one pipeline per master; all are sent before any reply
 *    is read, and all replies are read within one timeout_ms (plus
 *    connect_timeout_ms per node that has no idle pooled connection). A
 *    node that fails (down, timeout) fails only its own keys, with a
 *    message naming it, and the map is read again (one more round trip,
 *    asked first of a node that answered); the other nodes' keys succeed.
 *    A key answered MOVED, ASK, TRYAGAIN or CLUSTERDOWN (not run) is sent
 *    again alone through the routed single-key call, whose result it gets;
 *    these keys share one retry budget of about 3 s: once it is spent the
 *    remaining ones fail with NORI_EBACKEND without being sent, so a bulk
 *    call on a cluster that stays down ends after about one single call's
 *    bound (see Redis Cluster at nori_redis_backend_new).
 *    Through Sentinel the keys are one pipeline on the current master; a
 *    key answered READONLY (the master became a replica), and every key of
 *    a round trip whose connection was lost (refused, closed, reset: the
 *    master is gone), is sent again alone through the routed call, which
 *    resolves the master again (the three commands are idempotent); any
 *    other failure (a timeout, a WAIT short of replicas) fails the keys.
 *  - Memory, and a Redis backend with a near cache (so that every key goes
 *    through the local copy and own writes drop it): a loop over the
 *    single-key operations;
 *    the calls are not atomic as a group on either backend.
 */
#define NORI_MAX_BULK 10000

/* One key's answer in nori_backend_get_many. */
typedef struct {
    int rc;         /* NORI_OK, NORI_MISS or this key's error */
    nori_buf value; /* NORI_OK: the value, owned by the caller; else {NULL, 0} */
} nori_get_result;

/*
 * Reads keys[0..n) into results[0..n) (the caller's array; every entry is
 * written). The values belong to the caller: release them with
 * nori_get_results_free(results, n) (or nori_buf_free on each value).
 * Redis: a value longer than the value limit makes that round trip fail
 * (NORI_ETOOBIG for every key of it: the connection is closed mid-reply).
 */
NORI_EXPORT int nori_backend_get_many(nori_backend *b, const char *const *keys, size_t n,
                                      nori_get_result *results);

/* Frees the values of results[0..n) and sets them to {NULL, 0}. NULL-safe. */
NORI_EXPORT void nori_get_results_free(nori_get_result *results, size_t n);

/* One write of nori_backend_set_many, with the arguments of nori_backend_set. */
typedef struct {
    const char *key;
    const void *value; /* may be NULL when len == 0 */
    size_t len;
    int64_t ttl;       /* seconds; 0: no expiry */
} nori_set_item;

/* Writes items[0..n); results (NULL, or the caller's array of n) receives
 * each item's code. The bytes are copied. */
NORI_EXPORT int nori_backend_set_many(nori_backend *b, const nori_set_item *items, size_t n,
                                      int *results);

/* Removes keys[0..n) (a missing key is NORI_OK); results as for set_many. */
NORI_EXPORT int nori_backend_delete_many(nori_backend *b, const char *const *keys, size_t n,
                                         int *results);

/* ------------------------------------------------------------------------ */
/* The process-wide default backend and the convenience API                 */
/* ------------------------------------------------------------------------ */

/*
 * The process-wide default backend, built by nori_backend_from_env() on first
 * use (thread-safe: concurrent first calls build it once). *out is borrowed:
 * it stays owned by the library and valid until nori_reset_backend().
 * A configuration error is returned each time (nothing is cached), so fixing
 * the environment and calling again works.
 */
NORI_EXPORT int nori_get_backend(nori_backend **out);

/*
 * Frees the default backend; the next use rebuilds it from the environment.
 * Must not run while another thread uses the default backend.
 */
NORI_EXPORT void nori_reset_backend(void);

/* The nori_backend_* calls above on the default backend. */
NORI_EXPORT int nori_cache_get(const char *key, nori_buf *out);
NORI_EXPORT int nori_cache_set(const char *key, const void *val, size_t len, int64_t ttl);
NORI_EXPORT int nori_cache_delete(const char *key);
NORI_EXPORT int nori_cache_flush(void);
NORI_EXPORT int nori_cache_delete_prefix(const char *prefix);
NORI_EXPORT int nori_cache_incr(const char *key, int64_t ttl, int64_t *out);
NORI_EXPORT int nori_cache_atomic_update(const char *key, nori_update_fn fn, void *ud,
                                         int64_t ttl, nori_buf *out);

/* ------------------------------------------------------------------------ */
/* Metrics                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct nori_http_cache nori_http_cache; /* nori/http.h */

/* What nori_metrics_write() renders. Everything is borrowed for the call. */
typedef struct {
    nori_backend *backend;          /* NULL: no backend series */
    nori_http_cache *const *caches; /* response caches (nori/http.h); NULL when n_caches 0 */
    /* NULL: the caches' counters are summed into one unlabelled series each.
     * Else a name per cache, rendered as the label cache="<name>" (e.g. the
     * route), one series per cache. */
    const char *const *cache_names;
    size_t n_caches;
} nori_metrics_sources;

/*
 * Renders every counter of a backend (with its near cache, if any) and of a
 * set of response caches in Prometheus' text exposition format (0.0.4), for
 * an application's /metrics: append your own series after it, and serve it
 * with Content-Type "text/plain; version=0.0.4". On NORI_OK *out holds the
 * text (NUL-terminated; free with nori_buf_free). NORI_EINVAL (src or out
 * NULL, n_caches > 0 with caches NULL, a NULL cache or name), NORI_ENOMEM.
 * Thread-safe; it reads counters without stopping the caches, so a scrape
 * during traffic is a consistent-enough snapshot, not an atomic one.
 *
 * Conventions: counters end in _total; sizes are in bytes and times in
 * seconds; an enumeration is a label set with 1 on the current value
 * (nori_redis_circuit_state{state="open"} 1, and 0 on "closed" and
 * "half_open"); a series appears only where it means something for that
 * backend (entries, bytes and evictions for the in-process backends; the
 * circuit breaker for Redis; nori_near_* with a near cache).
 *
 * The series (every one has a HELP line saying what it counts):
 *   nori_backend_info{kind}               1, with the backend's kind
 *   nori_backend_errors_total             calls that returned an error
 *   nori_backend_gets_total{result}       hit | miss
 *   nori_backend_call_duration_seconds{op} histogram of the call latency, op
 *       get, set, delete, incr, atomic_update, get_many, set_many,
 *       delete_many, other (add, delete_if_equal, delete_prefix, flush).
 *       On Redis every call is timed; on an in-process backend one call in
 *       64 of each thread (two clock reads would be a large part of a
 *       sub-microsecond call), so _count is about 1/64 of the calls there.
 *   memory: nori_cache_entries, nori_cache_bytes, nori_cache_max_keys,
 *       nori_cache_max_bytes, nori_cache_evictions_total,
 *       nori_cache_expired_total
 *   shm: the same six (the segment's, every process's), and
 *       nori_shm_segment_bytes, nori_shm_free_pages,
 *       nori_shm_owner_died_total, nori_shm_repairs_total,
 *       nori_shm_lock_timeouts_total, nori_shm_frag_evictions_total
 *   Redis: nori_redis_circuit_state{state}, nori_redis_circuit_opens_total,
 *       nori_redis_circuit_rejected_total, nori_redis_timeouts_total;
 *       with a near cache nori_near_hits_total, _misses_total,
 *       _fills_total{result="kept|discarded"}, _invalidations_total,
 *       _evictions_total, _flushes_total{cause}, nori_near_entries,
 *       nori_near_bytes, nori_near_active, nori_near_db_unchecked
 *   response caches: nori_cache_hits_total, nori_cache_misses_total,
 *       nori_cache_stores_total, nori_cache_errors_total,
 *       nori_cache_bypass_total{reason}, nori_cache_not_stored_total{reason},
 *       nori_cache_unsendable_total, nori_cache_coalesced_total,
 *       nori_cache_lock_timeouts_total, nori_cache_hit_for_miss_total,
 *       nori_cache_stale_total{reason}, nori_cache_background_refreshes_total
 *       {result="run|dropped|skipped"}, nori_cache_not_modified_total,
 *       nori_cache_invalidations_total, nori_cache_memo_hits_total,
 *       nori_cache_memo_bytes
 */
NORI_EXPORT int nori_metrics_write(const nori_metrics_sources *src, nori_buf *out);

#ifdef __cplusplus
}
#endif

#endif /* NORI_CACHE_H */
