/*
 * Internal interface between the parts of the response cache (src/http/):
 * key building (key.c), the entry codec (entry_codec.c) and the cache itself
 * (cache.c). Exposed to the white-box unit tests through the static
 * library.
 */
#ifndef NORI_SRC_HTTP_INTERNAL_H
#define NORI_SRC_HTTP_INTERNAL_H

#include "nori/http.h"

#include <stdbool.h>

/* ---- http/response.c ---- */

/* 1 when the comma-separated header value `list` holds `token`
 * (case-insensitive, arguments ignored: "no-cache=\"x\"" holds no-cache). */
int nori__http_has_token(const char *list, const char *token);

/* ---- http/key.c ---- */

/*
 * Writes `{prefix}[:{E(keycomp)}]:{E(path)}:{E(query)}[:vary={pairs}]` into
 * out[cap], NUL-terminated, where E escapes ':' and '%' and the vary pairs
 * `name=value` (names lower-cased, a missing header gives "") escape ':',
 * '%', ',' and '='. keycomp NULL = no key-function component; query NULL is
 * "". vary_on holds n_vary names, already lower-case. Returns NORI_OK, or
 * NORI_ETOOBIG when the key exceeds NORI_MAX_KEY_LEN or cap - 1 (out is then
 * left NUL-terminated but meaningless: never use a truncated key).
 */
int nori__http_key_build(const char *prefix, const char *keycomp, const char *path,
                         const char *query, const char *const *vary_on, size_t n_vary,
                         const nori_http_request *req, char *out, size_t cap);

/* ---- http/entry_codec.c ---- */

/* The JSON field, added to Nori's entry, holding when the entry was stored
 * (Unix seconds). Nori's Python decorator ignores it; its absence marks an
 * entry Python wrote. */
#define NORI_ENTRY_FIELD_STORED_AT "stored_at"

/* true when header `name` (any case) is one of those stored with an entry. */
bool nori__entry_keeps_header(const char *name);

/* true for the statuses an entry may hold: 2xx but 204, 205 and 206. */
bool nori__entry_status_ok(int status);

/* NORI_OK when header `name` is kept and value[0..len) can be stored and
 * sent back as is (bounded, no control bytes; an ETag is an entity-tag);
 * NORI_ETYPE with a message otherwise. */
int nori__entry_header_check(const char *name, const char *value, size_t len);

/* The same for a media type (Content-Type). */
int nori__entry_media_check(const char *media, size_t len);

/*
 * The memory backend's record: body first, then the metadata, then a
 * trailer (metadata length + magic). *out receives a new buffer owned by
 * the caller. NORI_OK, NORI_ENOMEM, or NORI_ETYPE when the response cannot
 * be stored exactly (status, a kept header or the media type refused by the
 * checks above).
 */
int nori__entry_encode_binary(const nori_http_response *r, nori_buf *out);

/* Nori's JSON entry: {"body_b64", "status_code", "media_type", "headers",
 * "stored_at"}. NORI_ETYPE as above, and also when the media type or a
 * kept header is not UTF-8 (a JSON string cannot carry it). */
int nori__entry_encode_json(const nori_http_response *r, nori_buf *out);

/*
 * Decodes an entry and takes ownership of in->data (in becomes {NULL,0}
 * whatever the result). accept_binary: also recognise the binary record
 * (memory backend). On NORI_OK *r (initialised by the caller, cleared here
 * first) holds the response; on a binary record r->body is in->data itself,
 * so no body byte is copied. A malformed entry is NORI_ETYPE with a message
 * saying why, and r is left empty. NORI_ENOMEM on allocation failure.
 */
int nori__entry_decode(nori_buf *in, bool accept_binary, nori_http_response *r);

/* Standard base64 with padding. *out is a new NUL-terminated buffer. */
int nori__base64_encode(const void *data, size_t len, nori_buf *out);

/*
 * Strict standard base64: length a multiple of 4, only the alphabet, at most
 * two '=' and only at the end, zero padding bits. *out is a new buffer (one
 * NUL byte after the data). NORI_OK, NORI_ETYPE on bad input, NORI_ENOMEM.
 */
int nori__base64_decode(const char *s, size_t len, nori_buf *out);

#endif
