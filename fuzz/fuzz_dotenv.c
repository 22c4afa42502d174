// SPDX-License-Identifier: MIT
/* The .env parser on arbitrary bytes: never crashes, and every accepted
 * assignment has a well-formed name and a value within its limit. */
#include "fuzz.h"
#include "config.h"
#include "nori/cache.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int check_assignment(const char *name, const char *value, void *ud)
{
    (void)ud;
    if (!(isalpha((unsigned char)name[0]) || name[0] == '_'))
        abort();
    for (const char *p = name; *p != '\0'; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '.'))
            abort();
    if (strlen(value) >= 4096)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int rc = nori__dotenv_parse((const char *)data, size, "fuzz.env", check_assignment, NULL);
    if (rc != NORI_OK && rc != NORI_EINVAL)
        abort();
    if (rc == NORI_EINVAL && strstr(nori_last_error(), "fuzz.env") == NULL)
        abort(); /* every refusal names the file */
    return 0;
}
