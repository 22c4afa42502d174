// SPDX-License-Identifier: MIT
/* The entry point every libFuzzer target defines. */
#ifndef NORI_FUZZ_H
#define NORI_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
