// SPDX-License-Identifier: MIT
/* A program built only from the installed header and pkg-config file. */
#include <nori/cache.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    nori_backend *b;
    if (nori_memory_backend_new(4, &b) != NORI_OK)
        return 1;
    nori_buf out;
    int ok = nori_backend_set(b, "k", "installed", 9, 0) == NORI_OK &&
             nori_backend_get(b, "k", &out) == NORI_OK && strcmp(out.data, "installed") == 0;
    if (ok)
        nori_buf_free(&out);
    nori_backend_free(b);
    printf("%s %s\n", nori_version(), ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
