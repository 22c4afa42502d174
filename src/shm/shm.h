// SPDX-License-Identifier: MIT
/* Internal entry points of the shared-memory backend, for the default
 * backend's constructor, tests, the fuzzer and benchmarks. */
#ifndef NORI_SRC_SHM_SHM_H
#define NORI_SRC_SHM_SHM_H

#include "nori/cache.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* nori_shm_backend_new() with the active expiry thread on or off (tests
 * that step an injected clock turn it off). */
int nori__shm_backend_new_opts(const char *name, size_t max_keys, size_t max_bytes, bool sweeper,
                               nori_backend **out);

/*
 * Checks a segment header read from a file of file_bytes bytes owned by
 * `uid` (the segment's name for messages): magic, layout version, byte
 * order, checksum, the layout recomputed from its sizes, the owner. NORI_OK,
 * or NORI_EINVAL with a message naming the segment and what is wrong. len
 * is how many header bytes buf holds. The fuzzer drives it.
 */
int nori__shm_header_check(const void *buf, size_t len, uint64_t file_bytes, uint32_t uid,
                           const char *name);

/* Builds a valid header for (max_keys, max_bytes) into buf (at least
 * nori__shm_header_bytes() bytes), for the fuzzer's seeds and tests. */
size_t nori__shm_header_bytes(void);
int nori__shm_header_build(void *buf, uint64_t max_keys, uint64_t max_bytes, uint32_t uid);

/* Registers the shm backend's fork handlers (once). A module whose own
 * handlers must run before them (it holds a lock while it creates a
 * backend: src/default_backend.c) calls this first, then registers its
 * own. */
void nori__shm_fork_init(void);

/* Recomputes the checksum of the header in buf (tests that forge one). */
void nori__shm_header_seal(void *buf);

/* NORI_OK when name is a valid segment name, else NORI_EINVAL saying why. */
int nori__shm_check_name(const char *name);

/* Locks every shard in order, checks chains, lists, counters and the
 * global room against the entries found; the entries held, or -1 with a
 * message saying what disagreed (or which lock timed out). Tests. */
int64_t nori__shm_audit(nori_backend *b);

/* The shard (0..63) of key, or -1 when b is not a shm backend. */
int nori__shm_shard_index(nori_backend *b, const char *key);

/* One expiry pass over every bucket now; the entries removed. */
size_t nori__shm_sweep_now(nori_backend *b);

/* Tests: this process kills itself with SIGKILL at the n-th crash point
 * from now (before and after each logged store of a locked section,
 * between the halves of an in-place rewrite); 0 turns it off. */
void nori__shm_crash_after(long n);

/* Tests: this process stops itself (SIGSTOP) the next time it reaches the
 * named point: "arena" (inside an arena section: a shard lock and the
 * arena lock held), "alloc" (an entry allocated, not yet linked: its
 * shard's lock and its room held), "create" (a new segment built under its
 * temporary name, not yet published), "read_copy" (a lock-free get that
 * checked an entry and allocated the copy of its value, before copying
 * it). NULL: no point. */
void nori__shm_pause_at(const char *point);

/* The pid stored as holder of shard i's lock (tests). */
int nori__shm_shard_owner(nori_backend *b, int shard);

#endif
