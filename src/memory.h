/* Internal checks of the memory backend, for tests. */
#ifndef NORI_SRC_MEMORY_H
#define NORI_SRC_MEMORY_H

#include "nori/cache.h"

#include <stdint.h>

/*
 * Locks every shard (in index order, so it cannot deadlock with the
 * backend's own one-lock-at-a-time paths), checks that the tables, the
 * recency lists, the counts and the published tail stamps agree, and returns
 * the number of entries held at that instant, or -1 when anything disagrees
 * (or b is not a memory backend). Stops the world: tests only.
 */
int64_t nori__memory_audit(nori_backend *b);

#endif
