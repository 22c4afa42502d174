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

/* Milliseconds from an arbitrary fixed point. */
int64_t nori__now_ms(void);

/* Replaces the clock (NULL restores the real one). Tests only; not
 * thread-safe against concurrent nori__now_ms() callers. */
void nori__clock_override(nori__clock_fn fn);

#endif
