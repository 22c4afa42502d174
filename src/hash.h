// SPDX-License-Identifier: MIT
/*
 * The keyed hash of the in-process tables whose keys come from requests
 * (the memory backend, the near cache, the response cache's single-flight
 * table and decoded-entry memo): SipHash-1-3, a keyed pseudo-random
 * function, under a random 128-bit key drawn once per process from
 * getrandom(). Without the key, the hashes of chosen keys cannot be
 * predicted, so a client cannot pick request paths or headers that all land
 * in one bucket (hash flooding).
 *
 * Why 1-3 and not the paper's 2-4: a table lookup hashes every key once,
 * and the memory backend's `get` is measured against a bare hash table
 * (docs/BENCHMARKS.md). 1-3 is what Rust's standard HashMap and CPython's
 * str hash use for the same purpose (Redis's dict even uses 1-2), and no
 * attack on 1-3 as a hash-table PRF is known. nori__siphash() takes the
 * round counts so that the unit test checks this code against the reference
 * 2-4 vectors as well.
 */
#ifndef NORI_SRC_HASH_H
#define NORI_SRC_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/*
 * Draws the process key on the first call (thread-safe, once) and returns a
 * fresh random 64-bit value for the calling table, which nori__hash_key()
 * mixes into the key so that two tables of one process hash differently.
 * Every table calls it when it is created, before its first
 * nori__hash_key(). Aborts the process, with a message on stderr, if
 * neither getrandom() nor /dev/urandom gives randomness: an unkeyed table
 * would be open to flooding, and there is no error to return here.
 */
uint64_t nori__hash_seed(void);

/* The process key (for the unit test): valid after nori__hash_seed(). */
extern uint64_t nori__hash_k0, nori__hash_k1;

static inline uint64_t nori__sip_le64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

#define NORI__ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define NORI__SIPROUND                                                                     \
    do {                                                                                   \
        v0 += v1;                                                                          \
        v1 = NORI__ROTL(v1, 13);                                                           \
        v1 ^= v0;                                                                          \
        v0 = NORI__ROTL(v0, 32);                                                           \
        v2 += v3;                                                                          \
        v3 = NORI__ROTL(v3, 16);                                                           \
        v3 ^= v2;                                                                          \
        v0 += v3;                                                                          \
        v3 = NORI__ROTL(v3, 21);                                                           \
        v3 ^= v0;                                                                          \
        v2 += v1;                                                                          \
        v1 = NORI__ROTL(v1, 17);                                                           \
        v1 ^= v2;                                                                          \
        v2 = NORI__ROTL(v2, 32);                                                           \
    } while (0)

/* SipHash-c-d of in[0..len) under the key (k0, k1) as the reference reads
 * its 16 key bytes (little-endian halves), 64-bit output. With constant c
 * and d the loops unroll. */
static inline uint64_t nori__siphash(uint64_t k0, uint64_t k1, int c, int d, const void *in,
                                     size_t len)
{
    const unsigned char *p = in;
    uint64_t v0 = 0x736f6d6570736575ull ^ k0;
    uint64_t v1 = 0x646f72616e646f6dull ^ k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ k0;
    uint64_t v3 = 0x7465646279746573ull ^ k1;
    uint64_t b = (uint64_t)len << 56;
    for (const unsigned char *end = p + (len & ~(size_t)7); p != end; p += 8) {
        uint64_t m = nori__sip_le64(p);
        v3 ^= m;
        for (int i = 0; i < c; i++)
            NORI__SIPROUND;
        v0 ^= m;
    }
    unsigned char tail[8] = {0};
    memcpy(tail, p, len & 7);
    b |= nori__sip_le64(tail);
    v3 ^= b;
    for (int i = 0; i < c; i++)
        NORI__SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    for (int i = 0; i < d; i++)
        NORI__SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* The hash of a table created with `seed` (from nori__hash_seed()). */
static inline uint64_t nori__hash_key(uint64_t seed, const char *key, size_t len)
{
    return nori__siphash(nori__hash_k0 ^ seed, nori__hash_k1, 1, 3, key, len);
}

#endif
