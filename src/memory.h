/* Internal checks of the memory backend, for tests. */
#ifndef NORI_SRC_MEMORY_H
#define NORI_SRC_MEMORY_H

#include "nori/cache.h"

#include <stddef.h>
#include <stdint.h>

/*
 * Locks every shard (in index order, so it cannot deadlock with the
 * backend's own one-lock-at-a-time paths), checks that the tables, the
 * recency lists, the counts and the published tail stamps agree, and returns
 * the number of entries held at that instant, or -1 when anything disagrees
 * (or b is not a memory backend). Stops the world: tests only.
 */
int64_t nori__memory_audit(nori_backend *b);

/* The shard (0..63) that holds `key` in this backend, or -1 when b is not a
 * memory backend. Tests use it to place keys in chosen shards. */
int nori__memory_shard_index(nori_backend *b, const char *key);

/* The size of the allocation that holds `key`'s entry (malloc_usable_size),
 * 0 when the key is absent or b is not a memory backend. Tests only. */
size_t nori__memory_block_size(nori_backend *b, const char *key);

#endif
