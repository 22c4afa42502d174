// SPDX-License-Identifier: MIT
/*
 * Return codes, their static texts, and the per-thread detail message.
 *
 * The detail lives in a fixed thread-local buffer rather than in the handle
 * (as hiredis does with c->errstr) because one backend is shared by many
 * threads: a per-handle message would be overwritten by a neighbour before
 * the failing thread could read it.
 */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>

#define NORI_ERROR_MSG_MAX 512

static _Thread_local char last_error[NORI_ERROR_MSG_MAX];

const char *nori_strerror(int code)
{
    switch (code) {
#define NORI__STRERROR_CASE(name, value, text) \
    case NORI_##name:                          \
        return text;
        NORI_ERRNO_MAP(NORI__STRERROR_CASE)
#undef NORI__STRERROR_CASE
    }
    return "unknown error code";
}

const char *nori_last_error(void)
{
    return last_error;
}

const char *nori_version(void)
{
    return NORI_VERSION_STRING;
}

int nori__fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

int nori_set_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}
