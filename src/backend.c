/*
 * The public nori_backend_* entry points: argument validation shared by all
 * backends, then dispatch through the ops table.
 */
#include "backend.h"
#include "error.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void nori_buf_free(nori_buf *b)
{
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

void nori__backend_init(nori_backend *b, const nori_backend_ops *ops)
{
    b->ops = ops;
    atomic_init(&b->max_value, NORI_DEFAULT_MAX_VALUE);
    atomic_init(&b->errors, 0);
}

int nori__check_value(const nori_backend *b, const char *key, size_t len)
{
    size_t limit = atomic_load_explicit(&b->max_value, memory_order_relaxed);
    if (len > limit)
        return nori__fail(NORI_ETOOBIG, "value for key '%.64s' is %zu bytes, the limit is %zu",
                          key, len, limit);
    return NORI_OK;
}

bool nori__parse_int64(const char *s, size_t len, int64_t *out)
{
    if (len == 0 || len > 20)
        return false;
    if (len == 1 && s[0] == '0') {
        *out = 0;
        return true;
    }
    size_t i = 0;
    bool negative = false;
    if (s[0] == '-') {
        negative = true;
        i = 1;
        if (len == 1)
            return false;
    }
    if (s[i] < '1' || s[i] > '9')
        return false;
    /* Accumulate as a negative number: its range is one larger, so INT64_MIN
     * parses without overflow. */
    int64_t v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        int digit = s[i] - '0';
        if (v < (INT64_MIN + digit) / 10)
            return false;
        v = v * 10 - digit;
    }
    if (!negative) {
        if (v == INT64_MIN)
            return false;
        v = -v;
    }
    *out = v;
    return true;
}

int nori__adopt_buf(nori_buf *next, nori_buf *out)
{
    char *data = realloc(next->data, next->len + 1);
    if (data == NULL) {
        nori_buf_free(next);
        return nori__fail(NORI_ENOMEM, "out of memory copying a value of %zu bytes", next->len);
    }
    data[next->len] = '\0';
    out->data = data;
    out->len = next->len;
    next->data = NULL;
    next->len = 0;
    return NORI_OK;
}

/* Validates a key; on success stores its length in *klen. */
static int check_key(const char *key, size_t *klen)
{
    if (key == NULL)
        return nori__fail(NORI_EINVAL, "key is NULL");
    size_t n = strnlen(key, NORI_MAX_KEY_LEN + 1);
    if (n == 0)
        return nori__fail(NORI_EINVAL, "key is empty");
    if (n > NORI_MAX_KEY_LEN)
        return nori__fail(NORI_ETOOBIG, "key '%.32s...' is %zu bytes, the limit is %d", key,
                          strlen(key), NORI_MAX_KEY_LEN);
    *klen = n;
    return NORI_OK;
}

static int check_ttl(int64_t ttl)
{
    if (ttl < 0)
        return nori__fail(NORI_EINVAL, "ttl is %lld; it must be 0 (no expiry) or positive",
                          (long long)ttl);
    if (ttl > NORI_MAX_TTL)
        return nori__fail(NORI_EINVAL, "ttl is %lld seconds, the limit is %lld", (long long)ttl,
                          (long long)NORI_MAX_TTL);
    return NORI_OK;
}

static int check_backend(const nori_backend *b)
{
    if (b == NULL)
        return nori__fail(NORI_EINVAL, "backend is NULL");
    return NORI_OK;
}

/* Counts a failure on the handle; every public call returns through here. */
static int done(nori_backend *b, int rc)
{
    if (rc < 0 && b != NULL)
        atomic_fetch_add_explicit(&b->errors, 1, memory_order_relaxed);
    return rc;
}

int nori_backend_get(nori_backend *b, const char *key, nori_buf *out)
{
    if (out == NULL)
        return done(b, nori__fail(NORI_EINVAL, "get: out is NULL"));
    out->data = NULL;
    out->len = 0;
    size_t klen = 0;
    int rc = check_backend(b);
    if (rc == NORI_OK)
        rc = check_key(key, &klen);
    if (rc == NORI_OK)
        rc = b->ops->get(b, key, klen, out);
    return done(b, rc);
}

int nori_backend_get_into(nori_backend *b, const char *key, void *buf, size_t cap, size_t *len)
{
    size_t klen = 0, ignored;
    if (len == NULL)
        len = &ignored;
    *len = 0;
    int rc = check_backend(b);
    if (rc == NORI_OK)
        rc = check_key(key, &klen);
    if (rc == NORI_OK && buf == NULL && cap > 0)
        rc = nori__fail(NORI_EINVAL, "get_into '%.64s': buf is NULL with cap %zu", key, cap);
    if (rc != NORI_OK)
        return done(b, rc);
    if (b->ops->get_into != NULL)
        return done(b, b->ops->get_into(b, key, klen, buf, cap, len));
    nori_buf tmp = {0};
    rc = b->ops->get(b, key, klen, &tmp);
    if (rc == NORI_OK) {
        *len = tmp.len;
        if (tmp.len > cap)
            rc = nori__fail(NORI_ETOOBIG, "get_into '%.64s': the value is %zu bytes, the buffer "
                                          "holds %zu", key, tmp.len, cap);
        else if (tmp.len > 0)
            memcpy(buf, tmp.data, tmp.len);
    }
    nori_buf_free(&tmp);
    return done(b, rc);
}

int nori_backend_set(nori_backend *b, const char *key, const void *val, size_t len,
                     int64_t ttl)
{
    size_t klen = 0;
    int rc = check_backend(b);
    if (rc == NORI_OK)
        rc = check_key(key, &klen);
    if (rc == NORI_OK)
        rc = check_ttl(ttl);
    if (rc == NORI_OK && val == NULL && len > 0)
        rc = nori__fail(NORI_EINVAL, "set '%.64s': value is NULL with length %zu", key, len);
    if (rc == NORI_OK)
        rc = nori__check_value(b, key, len);
    if (rc == NORI_OK)
        rc = b->ops->set(b, key, klen, val == NULL ? "" : val, len, ttl);
    return done(b, rc);
}

int nori_backend_delete(nori_backend *b, const char *key)
{
    size_t klen = 0;
    int rc = check_backend(b);
    if (rc == NORI_OK)
        rc = check_key(key, &klen);
    if (rc == NORI_OK)
        rc = b->ops->del(b, key, klen);
    return done(b, rc);
}

int nori_backend_flush(nori_backend *b)
{
    int rc = check_backend(b);
    if (rc == NORI_OK)
        rc = b->ops->delete_prefix(b, "", 0);
    return done(b, rc);
}

int nori_backend_delete_prefix(nori_backend *b, const char *prefix)
{
    size_t plen = 0;
    int rc = check_backend(b);
    if (rc == NORI_OK)
        rc = check_key(prefix, &plen);
    if (rc == NORI_OK)
        rc = b->ops->delete_prefix(b, prefix, plen);
    return done(b, rc);
}

int nori_backend_incr(nori_backend *b, const char *key, int64_t ttl, int64_t *out)
{
    size_t klen = 0;
    int64_t ignored;
    int rc = check_backend(b);
    if (rc == NORI_OK)
        rc = check_key(key, &klen);
    if (rc == NORI_OK)
        rc = check_ttl(ttl);
    if (rc == NORI_OK)
        rc = b->ops->incr(b, key, klen, ttl, out != NULL ? out : &ignored);
    return done(b, rc);
}

int nori_backend_atomic_update(nori_backend *b, const char *key, nori_update_fn fn, void *ud,
                               int64_t ttl, nori_buf *out)
{
    if (out != NULL) {
        out->data = NULL;
        out->len = 0;
    }
    size_t klen = 0;
    int rc = check_backend(b);
    if (rc == NORI_OK)
        rc = check_key(key, &klen);
    if (rc == NORI_OK)
        rc = check_ttl(ttl);
    if (rc == NORI_OK && fn == NULL)
        rc = nori__fail(NORI_EINVAL, "atomic_update '%.64s': fn is NULL", key);
    if (rc == NORI_OK)
        rc = b->ops->atomic_update(b, key, klen, fn, ud, ttl, out);
    return done(b, rc);
}

int nori_backend_verify(nori_backend *b)
{
    int rc = check_backend(b);
    if (rc == NORI_OK)
        rc = b->ops->verify(b);
    return done(b, rc);
}

int nori_backend_describe(nori_backend *b, char **out)
{
    int rc = check_backend(b);
    if (rc == NORI_OK && out == NULL)
        rc = nori__fail(NORI_EINVAL, "describe: out is NULL");
    if (rc != NORI_OK)
        return done(b, rc);
    *out = NULL;
    char *text;
    if (b->ops->describe != NULL) {
        text = b->ops->describe(b, &rc);
    } else {
        size_t n = strlen(b->ops->kind) + 8;
        text = malloc(n);
        if (text != NULL)
            snprintf(text, n, "mode: %s\n", b->ops->kind);
        else
            rc = nori__fail(NORI_ENOMEM, "out of memory describing the backend");
    }
    if (text != NULL)
        *out = text;
    return done(b, text != NULL ? NORI_OK : rc);
}

int nori_backend_get_stats(nori_backend *b, nori_backend_stats *out)
{
    int rc = check_backend(b);
    if (rc == NORI_OK && out == NULL)
        rc = nori__fail(NORI_EINVAL, "get_stats: out is NULL");
    if (rc != NORI_OK)
        return rc;
    memset(out, 0, sizeof *out);
    b->ops->stats(b, out);
    out->errors = atomic_load_explicit(&b->errors, memory_order_relaxed);
    return NORI_OK;
}

const char *nori_backend_kind(const nori_backend *b)
{
    return b == NULL ? "none" : b->ops->kind;
}

int nori_backend_set_max_value(nori_backend *b, size_t max_value)
{
    int rc = check_backend(b);
    if (rc != NORI_OK)
        return rc;
    if (max_value == 0 || max_value > NORI_MAX_VALUE_LIMIT)
        return nori__fail(NORI_EINVAL, "max value size %zu is out of range 1..%zu", max_value,
                          NORI_MAX_VALUE_LIMIT);
    atomic_store_explicit(&b->max_value, max_value, memory_order_relaxed);
    return NORI_OK;
}

size_t nori_backend_max_value(const nori_backend *b)
{
    return b == NULL ? 0 : atomic_load_explicit(&b->max_value, memory_order_relaxed);
}

void nori_backend_free(nori_backend *b)
{
    if (b != NULL)
        b->ops->destroy(b);
}
