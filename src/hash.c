/* The seed of the keyed hash in hash.h. */
#include "hash.h"

#include "clock.h"

#include <sys/random.h>

uint64_t nori__hash_seed(void)
{
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) == (ssize_t)sizeof seed)
        return seed;
    /* No entropy yet (early boot): the clock's nanoseconds and an address. */
    return (uint64_t)nori__real_ns() * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)&seed;
}
