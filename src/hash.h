/*
 * The keyed hash of the in-process stores (the memory backend and the near
 * cache): reads the key 8 bytes at a time, with a final avalanche (the
 * splitmix64 finaliser). Each store seeds it from getrandom(), so keys
 * chosen by an attacker (HTTP paths end up in keys) cannot be made to
 * collide in advance.
 */
#ifndef NORI_SRC_HASH_H
#define NORI_SRC_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A random seed from getrandom(); without entropy yet (early boot), a weaker
 * one that still differs per process and per call. */
uint64_t nori__hash_seed(void);

static inline uint64_t nori__hash_key(uint64_t seed, const char *key, size_t len)
{
    uint64_t h = seed ^ (len * 0x9E3779B97F4A7C15ull);
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, key, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        key += 8;
        len -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, key, len);
    h ^= w;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

#endif
