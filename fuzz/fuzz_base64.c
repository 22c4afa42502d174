// SPDX-License-Identifier: MIT
/* Base64 on arbitrary bytes, both ways: decode(encode(x)) == x for every x,
 * and the strict decoder, fed arbitrary text, never crashes and accepts only
 * canonical text: whatever it accepts re-encodes to exactly that text. */
#include "fuzz.h"
#include "http/internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The bytes as a body: encode, then decode back. */
    nori_buf enc, dec;
    if (nori__base64_encode(data, size, &enc) != NORI_OK)
        abort();
    if (enc.len != (size + 2) / 3 * 4 || strlen(enc.data) != enc.len)
        abort();
    if (nori__base64_decode(enc.data, enc.len, &dec) != NORI_OK)
        abort();
    if (dec.len != size || (size > 0 && memcmp(dec.data, data, size) != 0) ||
        dec.data[dec.len] != '\0')
        abort();
    nori_buf_free(&enc);
    nori_buf_free(&dec);

    /* The bytes as base64 text (as read from a body_b64 field). */
    int rc = nori__base64_decode((const char *)data, size, &dec);
    if (rc == NORI_OK) {
        if (dec.data == NULL || dec.data[dec.len] != '\0')
            abort();
        if (nori__base64_encode(dec.data, dec.len, &enc) != NORI_OK)
            abort();
        if (enc.len != size || memcmp(enc.data, data, size) != 0)
            abort(); /* accepted a non-canonical text */
        nori_buf_free(&enc);
        nori_buf_free(&dec);
    } else if (rc != NORI_ETYPE || dec.data != NULL) {
        abort();
    }
    return 0;
}
