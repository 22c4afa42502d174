// SPDX-License-Identifier: MIT
/* A request-header table for the unit tests: the lookup is case-insensitive,
 * as every adapter's must be. */
#ifndef NORI_HTTP_TEST_HEADERS_H
#define NORI_HTTP_TEST_HEADERS_H

#include <stddef.h>
#include <strings.h>

typedef struct {
    const char *name;
    const char *value;
} test_header;

typedef struct {
    const test_header *h;
    size_t n;
} test_headers;

static inline const char *test_header_lookup(void *ud, const char *name)
{
    const test_headers *t = ud;
    for (size_t i = 0; i < t->n; i++)
        if (strcasecmp(t->h[i].name, name) == 0)
            return t->h[i].value;
    return NULL;
}

#endif
