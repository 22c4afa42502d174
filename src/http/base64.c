// SPDX-License-Identifier: MIT
/*
 * Standard base64 (RFC 4648 section 4, with padding) for Nori's JSON
 * entries: "body_b64". Decoding is strict (length, alphabet, padding,
 * canonical bits), so that one value has one meaning.
 */
#include "http/internal.h"

#include "error.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int nori__base64_encode(const void *data, size_t len, nori_buf *out)
{
    const unsigned char *p = data;
    size_t olen = (len + 2) / 3 * 4;
    if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
        return nori__fail(NORI_ETOOBIG, "body of %zu bytes is too large to encode", len);
    char *o = malloc(olen + 1);
    if (o == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory encoding %zu bytes", len);
    size_t i = 0, j = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        o[j++] = b64_alphabet[v >> 18];
        o[j++] = b64_alphabet[(v >> 12) & 63];
        o[j++] = b64_alphabet[(v >> 6) & 63];
        o[j++] = b64_alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        o[j++] = b64_alphabet[v >> 18];
        o[j++] = b64_alphabet[(v >> 12) & 63];
        o[j++] = '=';
        o[j++] = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        o[j++] = b64_alphabet[v >> 18];
        o[j++] = b64_alphabet[(v >> 12) & 63];
        o[j++] = b64_alphabet[(v >> 6) & 63];
        o[j++] = '=';
    }
    o[j] = '\0';
    out->data = o;
    out->len = j;
    return NORI_OK;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int nori__base64_decode(const char *s, size_t len, nori_buf *out)
{
    out->data = NULL;
    out->len = 0;
    if (len % 4 != 0)
        return nori__fail(NORI_ETYPE, "base64 length %zu is not a multiple of 4", len);
    size_t pad = 0;
    if (len > 0 && s[len - 1] == '=')
        pad = (len > 1 && s[len - 2] == '=') ? 2 : 1;
    size_t olen = len / 4 * 3 - pad;
    char *o = malloc(olen + 1);
    if (o == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory decoding %zu base64 bytes", len);
    size_t j = 0;
    for (size_t i = 0; i < len; i += 4) {
        bool last = i + 4 == len;
        int v[4];
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)s[i + (size_t)k];
            if (last && c == '=' && k >= 4 - (int)pad) {
                v[k] = 0;
                continue;
            }
            v[k] = b64_value(c);
            if (v[k] < 0) {
                free(o);
                return nori__fail(NORI_ETYPE, "invalid base64 character at offset %zu",
                                  i + (size_t)k);
            }
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                     (uint32_t)v[3];
        size_t n = last ? 3 - pad : 3;
        /* Canonical form only: the bits dropped by the padding must be zero. */
        if (last && ((pad == 1 && (w & 0xFF) != 0) || (pad == 2 && (w & 0xFFFF) != 0))) {
            free(o);
            return nori__fail(NORI_ETYPE, "non-canonical base64 padding bits");
        }
        o[j++] = (char)(w >> 16);
        if (n > 1)
            o[j++] = (char)(w >> 8);
        if (n > 2)
            o[j++] = (char)w;
    }
    o[j] = '\0';
    out->data = o;
    out->len = j;
    return NORI_OK;
}

