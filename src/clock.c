#include "clock.h"

#include <time.h>

static nori__clock_fn clock_override;

int64_t nori__now_ms(void)
{
    if (clock_override != NULL)
        return clock_override();
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void nori__clock_override(nori__clock_fn fn)
{
    clock_override = fn;
}

int64_t nori__now_coarse_ms(void)
{
    if (clock_override != NULL)
        return clock_override();
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
