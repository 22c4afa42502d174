// SPDX-License-Identifier: MIT
/* Internal entry points of the memory backend, for tests and benchmarks. */
#ifndef NORI_SRC_MEMORY_MEMORY_H
#define NORI_SRC_MEMORY_MEMORY_H

#include "nori/cache.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * nori_memory_backend_new() with the active expiry thread on or off. Tests
 * that check expiry step by step on an injected clock turn it off, so that
 * only their own calls remove entries.
 */
int nori__memory_backend_new_opts(size_t max_keys, bool sweeper, nori_backend **out);

/*
 * Registers the memory backend's pthread_atfork handlers (once; creating a
 * backend does it too). Another module whose fork handlers must run before
 * the memory backend's prepare handler (because it holds a lock while it
 * creates a backend: src/default_backend.c) calls this first, then
 * registers its own: prepare handlers run in the reverse order of
 * registration.
 */
void nori__memory_fork_init(void);

/*
 * Locks every shard (in index order, so it cannot deadlock with the
 * backend's own paths, which never block on a second lock), checks that the
 * tables, the recency lists, the counts, the bytes and the published tail
 * stamps agree, and returns the number of entries held at that instant, or
 * -1 when anything disagrees (or b is not a memory backend). With `bytes`,
 * also the bytes charged at that instant. Stops the world: tests only.
 */
int64_t nori__memory_audit(nori_backend *b);
int64_t nori__memory_audit_bytes(nori_backend *b, size_t *bytes);

/* The shard (0..63) that holds `key` in this backend, or -1 when b is not a
 * memory backend. Tests use it to place keys in chosen shards. */
int nori__memory_shard_index(nori_backend *b, const char *key);

/* The key's hash in this backend (its shard: the top 6 bits; its home
 * bucket: the low bits), so that tests can choose keys that collide. 0 when
 * b is not a memory backend. */
uint64_t nori__memory_key_hash(nori_backend *b, const char *key);

/* The number of buckets (7 slots each) of shard `shard`'s table, 0 when b
 * is not a memory backend or shard is out of range. */
size_t nori__memory_buckets(nori_backend *b, int shard);

/* Rebuilds shard `shard`'s table with `nbuckets` buckets (enough for its
 * entries at a load of 14/16), as growth and shrinking do; lock-free readers
 * may be on the old table meanwhile. NORI_OK, NORI_EINVAL for a bad
 * argument (nothing changed), NORI_ENOMEM. Tests only. */
int nori__memory_rebuild_table(nori_backend *b, int shard, size_t nbuckets);

/* The size of the allocation that holds `key`'s entry (malloc_usable_size),
 * 0 when the key is absent or b is not a memory backend. Tests only. */
size_t nori__memory_block_size(nori_backend *b, const char *key);

/* Runs expiry passes over every bucket now, without a time budget or an
 * early stop, until a pass removes nothing; returns the entries removed. */
size_t nori__memory_sweep_now(nori_backend *b);

#endif
