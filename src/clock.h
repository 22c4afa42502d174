/*
 * The clock behind TTLs: monotonic milliseconds, so that a wall-clock jump
 * (NTP, a manual date change) neither expires every entry nor keeps them
 * forever. Tests replace it through nori__clock_override() to check expiry
 * without sleeping.
 */
#ifndef NORI_SRC_CLOCK_H
#define NORI_SRC_CLOCK_H

#include <stdint.h>

typedef int64_t (*nori__clock_fn)(void);

/* Milliseconds from an arbitrary fixed point (CLOCK_MONOTONIC). Used where
 * an expiry time is computed, so an entry never expires early. */
int64_t nori__now_ms(void);

/*
 * The same clock read coarsely (CLOCK_MONOTONIC_COARSE: about 5 ns instead
 * of about 20 ns here, with a resolution of a few milliseconds, 4 ms on this
 * kernel). Used on the read path, for expiry checks and LRU stamps, where it
 * was an eighth of a get's cost: an entry may be seen alive up to one tick
 * past its expiry, never before it. Never ahead of nori__now_ms().
 */
int64_t nori__now_coarse_ms(void);

/* Replaces the clock (NULL restores the real one). Tests only; not
 * thread-safe against concurrent nori__now_ms() callers. */
void nori__clock_override(nori__clock_fn fn);

#endif
