// SPDX-License-Identifier: MIT
/*
 * Internal error reporting: every failure path returns its code through
 * nori__fail(), which also records the thread-local detail message that
 * nori_last_error() hands out.
 */
#ifndef NORI_SRC_ERROR_H
#define NORI_SRC_ERROR_H

#include "nori/cache.h"

#if defined(__GNUC__)
#define NORI__PRINTF(fmt_idx, args_idx) __attribute__((format(printf, fmt_idx, args_idx)))
#else
#define NORI__PRINTF(fmt_idx, args_idx)
#endif

/* Records a printf-style message for nori_last_error() and returns `code`. */
int nori__fail(int code, const char *fmt, ...) NORI__PRINTF(2, 3);

#endif
