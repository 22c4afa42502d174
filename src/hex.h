// SPDX-License-Identifier: MIT
/*
 * The value of one hexadecimal digit, for the decoders of %XX escapes (the
 * FastCGI adapter's REQUEST_URI, form values, Redis URLs).
 */
#ifndef NORI_SRC_HEX_H
#define NORI_SRC_HEX_H

/* 0..15 for '0'-'9', 'a'-'f', 'A'-'F'; -1 for anything else. */
static inline int nori__hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif
