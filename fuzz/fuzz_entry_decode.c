// SPDX-License-Identifier: MIT
/* The response-entry decoder on arbitrary bytes, as a cache value read back
 * from Redis (JSON only) or from the memory backend (binary record or JSON).
 * Never crashes or leaks; a refusal is NORI_ETYPE (a miss for the cache);
 * what it accepts is a sendable response (a stored status: 200..599 but 206
 * and 304; a media type and header lines that pass the encoder's own
 * checks: token names, never a connection-specific field, Content-Length,
 * Content-Type or Age, bounded values without control bytes and never
 * empty, within the line and byte bounds), with metadata the cache can
 * use (no negative age or window, only known flags, Set-Cookie flagged
 * exactly when held), that survives a re-encode in both formats unchanged,
 * metadata included. */
#include "fuzz.h"
#include "http/internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void check_sendable(const nori_http_response *r, const nori__entry_meta *m)
{
    if (!nori__entry_status_ok(r->status))
        abort();
    if (r->media_type != NULL &&
        nori__entry_media_check(r->media_type, strlen(r->media_type)) != NORI_OK)
        abort();
    if (r->body_len > 0 && r->body == NULL)
        abort();
    if (r->n_headers > NORI_HTTP_MAX_ENTRY_HEADERS)
        abort();
    size_t bytes = 0;
    bool cookie = false;
    for (size_t i = 0; i < r->n_headers; i++) {
        const char *name = r->headers[i].name, *value = r->headers[i].value;
        if (name == NULL || value == NULL || !nori__entry_keeps_header(name) || value[0] == '\0')
            abort();
        if (nori__entry_header_check(name, value, strlen(value)) != NORI_OK)
            abort();
        bytes += strlen(name) + strlen(value) + 4;
        cookie |= strcasecmp(name, "Set-Cookie") == 0;
    }
    if (bytes > NORI_HTTP_MAX_ENTRY_HEADER_BYTES)
        abort();
    if (cookie != ((m->flags & NORI__META_SET_COOKIE) != 0))
        abort();
    if (m->stored_at_ms < -1 || m->fresh_ms < -1 || m->age_ms < 0 || m->swr_ms < 0 ||
        m->sie_ms < 0 || (m->flags & ~(NORI__META_STORED | NORI__META_SET_COOKIE)) != 0)
        abort();
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

/* Whether two metadata agree: exactly through the binary record; through
 * JSON's seconds, to the millisecond where a double holds it. */
static void check_meta(const nori__entry_meta *a, const nori__entry_meta *b, int binary)
{
    if ((a->flags & NORI__META_STORED) != (b->flags & NORI__META_STORED) ||
        (a->flags & NORI__META_SET_COOKIE) != (b->flags & NORI__META_SET_COOKIE))
        abort();
    const int64_t x[] = {a->fresh_ms, a->age_ms, a->swr_ms, a->sie_ms},
                  y[] = {b->fresh_ms, b->age_ms, b->swr_ms, b->sie_ms};
    for (int i = 0; i < 4; i++) {
        if (binary ? x[i] != y[i]
                   : (x[i] < ((int64_t)1 << 40) && (x[i] - y[i] > 1 || y[i] - x[i] > 1)))
            abort();
    }
    if (binary && a->stored_at_ms != b->stored_at_ms)
        abort();
}

/* Re-encodes r with its metadata in one format, decodes it again, and
 * compares. */
static void round_trip(const nori_http_response *r, const nori__entry_meta *m, int binary)
{
    nori_buf enc;
    int rc = binary ? nori__entry_encode_binary_meta(r, m, &enc)
                    : nori__entry_encode_json_meta(r, m, &enc);
    if (rc == NORI_ENOMEM)
        return;
    /* A binary record may claim times a JSON entry cannot carry (the
     * decoder of JSON takes seconds under 9.2e15): refused, not written. */
    if (!binary && !nori__entry_meta_json_ok(m)) {
        if (rc != NORI_ETYPE)
            abort();
        return;
    }
    if (rc != NORI_OK)
        abort();
    nori_http_response again;
    nori_http_response_init(&again);
    nori__entry_meta back;
    rc = nori__entry_decode_meta(&enc, binary, &again, &back);
    if (rc == NORI_OK) {
        check_same(r, &again);
        check_meta(m, &back, binary);
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
    nori__entry_meta m;
    int rc = nori__entry_decode_meta(&in, accept_binary, &r, &m);
    if (in.data != NULL || in.len != 0)
        abort();
    if (rc == NORI_OK) {
        check_sendable(&r, &m);
        round_trip(&r, &m, 1);
        if (json_faithful(&r))
            round_trip(&r, &m, 0);
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
