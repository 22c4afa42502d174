/* The response-entry decoder on arbitrary bytes, as a cache value read back
 * from Redis (JSON only) or from the memory backend (binary record or JSON).
 * Never crashes or leaks; a refusal is NORI_ETYPE (a miss for the cache);
 * what it accepts is a sendable response (a stored status: 2xx but 204,
 * 205, 206; a media type and kept headers that pass the encoder's own
 * checks: bounded, no control bytes, a well-formed ETag; never Set-Cookie)
 * that survives a re-encode in both formats unchanged. */
#include "fuzz.h"
#include "http/internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void check_sendable(const nori_http_response *r)
{
    if (!nori__entry_status_ok(r->status))
        abort();
    if (r->media_type != NULL &&
        nori__entry_media_check(r->media_type, strlen(r->media_type)) != NORI_OK)
        abort();
    if (r->body_len > 0 && r->body == NULL)
        abort();
    for (size_t i = 0; i < r->n_headers; i++) {
        const char *name = r->headers[i].name;
        if (name == NULL || r->headers[i].value == NULL || !nori__entry_keeps_header(name))
            abort();
        if (strcasecmp(name, "Set-Cookie") == 0)
            abort();
        if (nori__entry_header_check(name, r->headers[i].value, strlen(r->headers[i].value)) !=
            NORI_OK)
            abort();
    }
}

static int same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* a and b carry the same response; header names compare case-insensitively
 * (the JSON form writes them lower-case). */
static void check_same(const nori_http_response *a, const nori_http_response *b)
{
    if (a->status != b->status || a->body_len != b->body_len ||
        (a->body_len > 0 && memcmp(a->body, b->body, a->body_len) != 0) ||
        !same_str(a->media_type, b->media_type) || a->n_headers != b->n_headers)
        abort();
    for (size_t i = 0; i < a->n_headers; i++)
        if (strcasecmp(a->headers[i].name, b->headers[i].name) != 0 ||
            strcmp(a->headers[i].value, b->headers[i].value) != 0)
            abort();
}

/* Re-encodes r in one format, decodes it again, and compares. */
static void round_trip(const nori_http_response *r, int binary)
{
    nori_buf enc;
    int rc = binary ? nori__entry_encode_binary(r, &enc) : nori__entry_encode_json(r, &enc);
    if (rc == NORI_ENOMEM)
        return;
    if (rc != NORI_OK)
        abort();
    nori_http_response again;
    nori_http_response_init(&again);
    rc = nori__entry_decode(&enc, binary, &again);
    if (rc == NORI_OK) {
        check_same(r, &again);
    } else if (rc != NORI_ENOMEM) {
        abort(); /* what the encoder writes, the decoder reads */
    }
    nori_http_response_clear(&again);
    if (enc.data != NULL)
        abort(); /* decode takes ownership whatever the result */
}

/* Whether the JSON form can hold r exactly: text fields in ASCII (valid
 * UTF-8 beyond ASCII also round-trips, but checking it here would duplicate
 * jansson's validator), and no header name twice in different case (JSON
 * writes names lower-case, so "ETag" and "etag" become one member). */
static int json_faithful(const nori_http_response *r)
{
    const char *fields[1 + 2 * 64];
    size_t n = 0;
    if (r->n_headers > 64)
        return 0;
    fields[n++] = r->media_type;
    for (size_t i = 0; i < r->n_headers; i++) {
        fields[n++] = r->headers[i].name;
        fields[n++] = r->headers[i].value;
    }
    for (size_t i = 0; i < n; i++)
        for (const char *p = fields[i]; p != NULL && *p != '\0'; p++)
            if ((unsigned char)*p >= 0x80)
                return 0;
    for (size_t i = 0; i < r->n_headers; i++)
        for (size_t j = i + 1; j < r->n_headers; j++)
            if (strcasecmp(r->headers[i].name, r->headers[j].name) == 0)
                return 0;
    return 1;
}

static void decode_as(const uint8_t *data, size_t size, int accept_binary)
{
    /* A backend value: malloc'd, one NUL after the data, as nori_backend_get
     * returns it. */
    nori_buf in = {malloc(size + 1), size};
    if (in.data == NULL)
        return;
    if (size > 0)
        memcpy(in.data, data, size);
    in.data[size] = '\0';
    nori_http_response r;
    nori_http_response_init(&r);
    int rc = nori__entry_decode(&in, accept_binary, &r);
    if (in.data != NULL || in.len != 0)
        abort();
    if (rc == NORI_OK) {
        check_sendable(&r);
        round_trip(&r, 1);
        if (json_faithful(&r))
            round_trip(&r, 0);
    } else if (rc == NORI_ETYPE || rc == NORI_ENOMEM) {
        if (r.body != NULL || r.n_headers != 0 || r.media_type != NULL)
            abort(); /* a refused entry leaves the response empty */
    } else {
        abort();
    }
    nori_http_response_clear(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    decode_as(data, size, 0); /* as read from Redis */
    decode_as(data, size, 1); /* as read from the memory backend */
    return 0;
}
