// SPDX-License-Identifier: MIT
/*
 * Nori's JSON entry (entry_codec.c has the binary record and the rules both
 * share):
 *   {"body_b64": "...", "status_code": 200, "media_type": "...",
 *    "headers": {"etag": "...", "x-total-count": "42"},
 *    "stored_at": 1764300000.25, "fresh_for": 60, ...}
 * The first four members are Nori's own: its Python decorator reads
 * body_b64, status_code and media_type, and replays the headers object.
 * Header names are written lower-case, as Starlette keeps them, and the
 * lines of one name are joined into one member with ", " (RFC 9110 5.3:
 * the same field value), in the order of their first line; Set-Cookie,
 * whose lines cannot be joined, may come once. The other members are this
 * library's, and Python ignores them: when the entry was received
 * ("stored_at", Unix seconds), how long it is fresh ("fresh_for"), its age
 * then ("initial_age"), the response's own stale windows
 * ("stale_while_revalidate", "stale_if_error") and whether it may never be
 * served stale ("must_revalidate": true). Reads also accept the pre-v1.19
 * shape {"body": "<utf-8 text>", ...}, and entries Python wrote (none of
 * this library's members; headers Python kept that no cache replays, such
 * as content-length, are skipped).
 */
#include "http/internal.h"

#include "clock.h"
#include "error.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int nori__entry_encode_json(const nori_http_response *r, nori_buf *out)
{
    nori__entry_meta meta = NORI__META(nori__wall_ms(), -1);
    return nori__entry_encode_json_meta(r, &meta, out);
}

/* name lower-cased into out[NORI_HTTP_MAX_HEADER_NAME + 1] (the checks
 * bounded it). */
static void lower_name(const char *name, char *out)
{
    size_t n = strlen(name);
    if (n > NORI_HTTP_MAX_HEADER_NAME)
        n = NORI_HTTP_MAX_HEADER_NAME;
    for (size_t k = 0; k < n; k++)
        out[k] = (char)((name[k] >= 'A' && name[k] <= 'Z') ? name[k] + 32 : name[k]);
    out[n] = '\0';
}

/* The headers member: one member per name, its lines joined with ", ". */
static int headers_object(const nori_http_response *r, json_t *headers)
{
    char lname[NORI_HTTP_MAX_HEADER_NAME + 1];
    for (size_t i = 0; i < r->n_headers; i++) {
        const nori_http_header *h = &r->headers[i];
        if (!nori__entry_header_stored(r, i))
            continue;
        lower_name(h->name, lname);
        json_t *have = json_object_get(headers, lname);
        if (have == NULL) {
            json_t *v = json_string(h->value);
            if (v == NULL || json_object_set_new(headers, lname, v))
                return nori__fail(NORI_ENOMEM, "out of memory encoding a cache entry");
            continue;
        }
        if (strcmp(lname, "set-cookie") == 0)
            return nori__fail(NORI_ETYPE,
                              "Set-Cookie comes more than once: its lines cannot be joined "
                              "in a JSON entry");
        size_t a = json_string_length(have), b = strlen(h->value);
        if (a + 2 + b > NORI_HTTP_MAX_HEADER_VALUE)
            return nori__fail(NORI_ETYPE, "header %.64s: joined lines over %d bytes", lname,
                              NORI_HTTP_MAX_HEADER_VALUE);
        char joined[NORI_HTTP_MAX_HEADER_VALUE + 1];
        memcpy(joined, json_string_value(have), a);
        memcpy(joined + a, ", ", 2);
        memcpy(joined + a + 2, h->value, b);
        if (json_string_setn(have, joined, a + 2 + b))
            return nori__fail(NORI_ENOMEM, "out of memory encoding a cache entry");
    }
    return NORI_OK;
}

/* The largest number of seconds the decoder takes back (seconds_field), in
 * ms: an entry carries nothing it could not read. */
#define JSON_MAX_MS 9200000000000000000LL

bool nori__entry_meta_json_ok(const nori__entry_meta *em)
{
    return em->stored_at_ms < JSON_MAX_MS && em->fresh_ms < JSON_MAX_MS &&
           em->age_ms < JSON_MAX_MS && em->swr_ms < JSON_MAX_MS && em->sie_ms < JSON_MAX_MS;
}

/* This library's members (see the top of the file). */
static int meta_members(json_t *obj, const nori__entry_meta *em)
{
    int64_t at = em->stored_at_ms >= 0 ? em->stored_at_ms : nori__wall_ms();
    if (json_object_set_new(obj, NORI_ENTRY_FIELD_STORED_AT, json_real((double)at / 1000.0)))
        return NORI_ENOMEM;
    if (em->fresh_ms >= 0 && json_object_set_new(obj, NORI_ENTRY_FIELD_FRESH_FOR,
                                                 json_real((double)em->fresh_ms / 1000.0)))
        return NORI_ENOMEM;
    if (em->age_ms > 0 &&
        json_object_set_new(obj, NORI_ENTRY_FIELD_AGE, json_real((double)em->age_ms / 1000.0)))
        return NORI_ENOMEM;
    if (em->swr_ms > 0 &&
        json_object_set_new(obj, NORI_ENTRY_FIELD_SWR, json_real((double)em->swr_ms / 1000.0)))
        return NORI_ENOMEM;
    if (em->sie_ms > 0 &&
        json_object_set_new(obj, NORI_ENTRY_FIELD_SIE, json_real((double)em->sie_ms / 1000.0)))
        return NORI_ENOMEM;
    if ((em->flags & NORI__META_NO_STALE) &&
        json_object_set_new(obj, NORI_ENTRY_FIELD_NO_STALE, json_true()))
        return NORI_ENOMEM;
    return NORI_OK;
}

int nori__entry_encode_json_meta(const nori_http_response *r, const nori__entry_meta *em,
                                 nori_buf *out)
{
    const char *media = nori__entry_media_type(r);
    size_t nh;
    int rc = nori__entry_check_fields(r, media, &nh);
    if (rc != NORI_OK)
        return rc;
    if (!nori__entry_meta_json_ok(em))
        return nori__fail(NORI_ETYPE, "entry times beyond what a JSON entry reads back");
    /* JSON strings are UTF-8: a media type or header with other bytes
     * (Latin-1 in a Content-Disposition filename) cannot travel, and
     * leaving it out would change the response on a hit, so the response is
     * not stored at all. */
    if (media != NULL && !nori__utf8_valid(media, strlen(media)))
        return nori__fail(NORI_ETYPE, "media type is not UTF-8: not stored in a JSON entry");
    for (size_t i = 0; i < r->n_headers; i++)
        if (nori__entry_header_stored(r, i) &&
            !nori__utf8_valid(r->headers[i].value, strlen(r->headers[i].value)))
            return nori__fail(NORI_ETYPE, "header %s is not UTF-8: not stored in a JSON entry",
                              r->headers[i].name);
    json_t *headers = json_object();
    if (headers == NULL)
        return nori__fail(NORI_ENOMEM, "out of memory encoding a cache entry");
    if ((rc = headers_object(r, headers)) != NORI_OK) {
        json_decref(headers);
        return rc;
    }
    nori_buf b64;
    rc = nori__base64_encode(r->body, r->body_len, &b64);
    if (rc != NORI_OK) {
        json_decref(headers);
        return rc;
    }
    json_t *obj = json_object();
    rc = NORI_ENOMEM;
    if (obj == NULL)
        goto done;
    /* Nori's field order. */
    json_t *media_json = media != NULL ? json_string(media) : NULL;
    /* The base64 text is ASCII: skip jansson's UTF-8 check of a large string. */
    if (json_object_set_new(obj, "body_b64", json_stringn_nocheck(b64.data, b64.len)) ||
        json_object_set_new(obj, "status_code", json_integer(r->status))) {
        json_decref(media_json);
        goto done;
    }
    /* set_new consumes its value even when it fails. */
    if (json_object_set_new(obj, "media_type", media_json ? media_json : json_null()) ||
        json_object_set(obj, "headers", headers) || meta_members(obj, em) != NORI_OK)
        goto done;
    char *text = json_dumps(obj, JSON_COMPACT);
    if (text == NULL)
        goto done;
    out->data = text;
    out->len = strlen(text);
    rc = NORI_OK;
done:
    if (rc != NORI_OK)
        nori__fail(rc, "out of memory encoding a cache entry as JSON");
    json_decref(headers);
    json_decref(obj);
    nori_buf_free(&b64);
    return rc;
}

/* true when the media type has a charset parameter (any case). */
static bool has_charset(const char *mt)
{
    for (const char *p = mt; *p != '\0'; p++)
        if (strncasecmp(p, "charset=", 8) == 0)
            return true;
    return false;
}

/*
 * Sets the media type of a decoded JSON entry. Nori's Python stores
 * Starlette's bare media type ("text/plain") and Starlette appends
 * "; charset=utf-8" to text/... when it sends the response; an entry written
 * by Python (from_python: no field this library adds) therefore gets the same
 * suffix here, so a C service sends what the Python one would.
 */
static int set_media_type_nori(nori_http_response *r, const char *mt, bool from_python)
{
    if (!from_python || strncasecmp(mt, "text/", 5) != 0 || has_charset(mt))
        return nori_http_response_set_media_type(r, mt);
    char buf[NORI_HTTP_MAX_MEDIA_TYPE + sizeof "; charset=utf-8"];
    int n = snprintf(buf, sizeof buf, "%s; charset=utf-8", mt);
    /* The result must pass the same bound as anything else sent. */
    if (n < 0 || nori__entry_media_check(buf, (size_t)n) != NORI_OK)
        return NORI_ETYPE;
    return nori_http_response_set_media_type(r, buf);
}

/* A non-negative number field in seconds, as milliseconds; `absent` when
 * absent. NORI_ETYPE when present but not a finite non-negative number. */
static int seconds_field(json_t *root, const char *name, int64_t absent, int64_t *out_ms)
{
    json_t *v = json_object_get(root, name);
    *out_ms = absent;
    if (v == NULL || json_is_null(v))
        return NORI_OK;
    if (!json_is_number(v))
        return nori__fail(NORI_ETYPE, "cache entry: %s is not a number", name);
    double d = json_number_value(v);
    if (!(d >= 0 && d < 9.2e15))
        return nori__fail(NORI_ETYPE, "cache entry: %s is out of range", name);
    *out_ms = (int64_t)(d * 1000.0 + 0.5);
    return NORI_OK;
}

static int meta_fields(json_t *root, nori__entry_meta *em)
{
    int rc;
    if ((rc = seconds_field(root, NORI_ENTRY_FIELD_STORED_AT, -1, &em->stored_at_ms)) != NORI_OK ||
        (rc = seconds_field(root, NORI_ENTRY_FIELD_FRESH_FOR, -1, &em->fresh_ms)) != NORI_OK ||
        (rc = seconds_field(root, NORI_ENTRY_FIELD_AGE, 0, &em->age_ms)) != NORI_OK ||
        (rc = seconds_field(root, NORI_ENTRY_FIELD_SWR, 0, &em->swr_ms)) != NORI_OK ||
        (rc = seconds_field(root, NORI_ENTRY_FIELD_SIE, 0, &em->sie_ms)) != NORI_OK)
        return rc;
    json_t *ns = json_object_get(root, NORI_ENTRY_FIELD_NO_STALE);
    if (ns != NULL && !json_is_null(ns) && !json_is_boolean(ns))
        return nori__fail(NORI_ETYPE, "cache entry: %s is not a boolean",
                          NORI_ENTRY_FIELD_NO_STALE);
    if (json_is_true(ns))
        em->flags |= NORI__META_NO_STALE;
    return NORI_OK;
}

/* The headers member into r: every line an entry may hold (a name that no
 * entry holds, such as the content-length Python may keep, is skipped;
 * a name that is not a token, or a value that could not be sent, refuses
 * the entry). *content_type: the content-type member, if any. */
static int header_members(json_t *headers, nori_http_response *r, nori__entry_meta *em,
                          const char **content_type)
{
    size_t n = 0, bytes = 0;
    const char *key;
    json_t *v;
    json_object_foreach(headers, key, v)
    {
        if (!json_is_string(v) ||
            memchr(json_string_value(v), '\0', json_string_length(v)) != NULL)
            return nori__fail(NORI_ETYPE, "cache entry: header %.64s is not a string", key);
        if (!nori__http_field_name_ok(key, strlen(key)))
            return nori__fail(NORI_ETYPE, "cache entry: header name %.64s is not a token", key);
        if (strcasecmp(key, "content-type") == 0)
            *content_type = json_string_value(v);
        if (!nori__entry_keeps_header(key) || json_string_length(v) == 0)
            continue; /* as the encoder leaves them out (entry_codec.c) */
        /* A line this library would not have written (CR/LF, a 100 KB
         * value) makes the whole entry a miss: it is overwritten by the
         * fresh response instead of breaking every hit until it expires. */
        size_t vl = json_string_length(v);
        bytes += strlen(key) + vl + 4;
        int rc;
        if (++n > NORI_HTTP_MAX_ENTRY_HEADERS || bytes > NORI_HTTP_MAX_ENTRY_HEADER_BYTES ||
            (rc = nori__entry_header_check(key, json_string_value(v), vl)) != NORI_OK)
            return nori__fail(NORI_ETYPE, "cache entry: header %.64s cannot be replayed", key);
        if (strcasecmp(key, "set-cookie") == 0)
            em->flags |= NORI__META_SET_COOKIE;
        if ((rc = nori_http_response_add_header(r, key, json_string_value(v))) != NORI_OK)
            return rc;
    }
    return NORI_OK;
}

int nori__entry_decode_json(const nori_buf *in, nori_http_response *r, nori__entry_meta *em)
{
    json_error_t jerr;
    /* JSON_ALLOW_NUL: a legacy text body may contain U+0000 (valid UTF-8). */
    json_t *root = json_loadb(in->data, in->len, JSON_ALLOW_NUL, &jerr);
    if (root == NULL)
        return nori__fail(NORI_ETYPE, "cache entry is not JSON: %s", jerr.text);
    int rc = NORI_ETYPE;
    if (!json_is_object(root)) {
        nori__fail(rc, "cache entry is not a JSON object");
        goto done;
    }
    json_t *status = json_object_get(root, "status_code");
    if (!json_is_integer(status) || json_integer_value(status) < 200 ||
        json_integer_value(status) > 599 ||
        !nori__entry_status_ok((int)json_integer_value(status))) {
        nori__fail(rc, "cache entry: status_code missing or not a stored status");
        goto done;
    }
    json_t *media = json_object_get(root, "media_type");
    if (media != NULL && !json_is_null(media) &&
        (!json_is_string(media) ||
         memchr(json_string_value(media), '\0', json_string_length(media)) != NULL)) {
        nori__fail(rc, "cache entry: media_type is not a string without NULs");
        goto done;
    }
    json_t *headers = json_object_get(root, "headers");
    if (headers != NULL && !json_is_null(headers) && !json_is_object(headers)) {
        nori__fail(rc, "cache entry: headers is not an object");
        goto done;
    }
    if ((rc = meta_fields(root, em)) != NORI_OK)
        goto done;
    rc = NORI_ETYPE;
    json_t *b64 = json_object_get(root, "body_b64");
    json_t *text = json_object_get(root, "body");
    nori_buf body = {NULL, 0};
    if (b64 != NULL) {
        if (!json_is_string(b64)) {
            nori__fail(rc, "cache entry: body_b64 is not a string");
            goto done;
        }
        if ((rc = nori__base64_decode(json_string_value(b64), json_string_length(b64),
                                      &body)) != NORI_OK)
            goto done;
    } else if (text != NULL && json_is_string(text)) {
        /* Legacy entries: the body is the text's UTF-8 bytes. */
        if ((rc = nori_http_response_set_body(r, json_string_value(text),
                                              json_string_length(text))) != NORI_OK)
            goto done;
    } else {
        rc = nori__fail(NORI_ETYPE, "cache entry: neither body_b64 nor body is a string");
        goto done;
    }
    if (body.data != NULL)
        nori_http_response_take_body(r, body.data, body.len);
    r->status = (int)json_integer_value(status);
    const char *mt = json_is_string(media) ? json_string_value(media) : NULL;
    const char *content_type = NULL;
    if (json_is_object(headers) &&
        (rc = header_members(headers, r, em, &content_type)) != NORI_OK)
        goto done;
    if (mt == NULL)
        mt = content_type;
    rc = NORI_OK;
    if (mt != NULL) {
        if ((rc = nori__entry_media_check(mt, strlen(mt))) != NORI_OK)
            goto done;
        rc = set_media_type_nori(r, mt, json_object_get(root, NORI_ENTRY_FIELD_STORED_AT) == NULL);
    }
done:
    json_decref(root);
    return rc;
}
