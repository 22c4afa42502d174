// SPDX-License-Identifier: MIT
/* The tests' FastCGI client: see fcgi_client.h. */
#include "fcgi_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int64_t fcgi_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void fcgi_buf_free(fcgi_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

void fcgi_put(fcgi_buf *b, const void *data, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + len)
            cap *= 2;
        b->data = realloc(b->data, cap);
        if (b->data == NULL)
            abort();
        b->cap = cap;
    }
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
}

void fcgi_record(fcgi_buf *b, int type, int id, const void *content, size_t len)
{
    size_t pad = (8 - len % 8) % 8;
    unsigned char h[8] = {1,
                          (unsigned char)type,
                          (unsigned char)(id >> 8),
                          (unsigned char)id,
                          (unsigned char)(len >> 8),
                          (unsigned char)len,
                          (unsigned char)pad,
                          0};
    static const unsigned char zeros[8];
    fcgi_put(b, h, 8);
    fcgi_put(b, content, len);
    fcgi_put(b, zeros, pad);
}

void fcgi_begin(fcgi_buf *b, int id, int keep_conn)
{
    unsigned char body[8] = {0, 1 /* RESPONDER */, keep_conn ? 1 : 0, 0, 0, 0, 0, 0};
    fcgi_record(b, FCGI_T_BEGIN, id, body, 8);
}

static void put_len(fcgi_buf *b, size_t n)
{
    if (n < 128) {
        unsigned char c = (unsigned char)n;
        fcgi_put(b, &c, 1);
    } else {
        unsigned char c[4] = {(unsigned char)((n >> 24) | 0x80), (unsigned char)(n >> 16),
                              (unsigned char)(n >> 8), (unsigned char)n};
        fcgi_put(b, c, 4);
    }
}

void fcgi_params(fcgi_buf *b, int id, const char *const *kv)
{
    fcgi_buf pairs = {0};
    for (size_t i = 0; kv != NULL && kv[i] != NULL; i += 2) {
        size_t n = strlen(kv[i]), v = strlen(kv[i + 1]);
        put_len(&pairs, n);
        put_len(&pairs, v);
        fcgi_put(&pairs, kv[i], n);
        fcgi_put(&pairs, kv[i + 1], v);
    }
    for (size_t off = 0; off < pairs.len; off += 65528) {
        size_t n = pairs.len - off < 65528 ? pairs.len - off : 65528;
        fcgi_record(b, FCGI_T_PARAMS, id, pairs.data + off, n);
    }
    fcgi_record(b, FCGI_T_PARAMS, id, NULL, 0);
    fcgi_buf_free(&pairs);
}

void fcgi_stdin(fcgi_buf *b, int id, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t off = 0; off < len; off += 65528) {
        size_t n = len - off < 65528 ? len - off : 65528;
        fcgi_record(b, FCGI_T_STDIN, id, p + off, n);
    }
    fcgi_record(b, FCGI_T_STDIN, id, NULL, 0);
}

static void timeouts(int fd)
{
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

int fcgi_connect_unix(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    timeouts(fd);
    return fd;
}

int fcgi_connect_tcp(int port, const char *source)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (source != NULL) {
        struct sockaddr_in src;
        memset(&src, 0, sizeof src);
        src.sin_family = AF_INET;
        inet_pton(AF_INET, source, &src.sin_addr);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0) {
            close(fd);
            return -1;
        }
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    timeouts(fd);
    return fd;
}

int fcgi_send(int fd, const fcgi_buf *b)
{
    size_t off = 0;
    while (off < b->len) {
        ssize_t n = send(fd, b->data + off, b->len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        off += (size_t)n;
    }
    return 0;
}

static int read_full(int fd, void *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = recv(fd, (char *)buf + off, len - off, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        off += (size_t)n;
    }
    return 0;
}

int fcgi_read_response(int fd, int id, fcgi_response *out)
{
    memset(out, 0, sizeof *out);
    fcgi_buf stdout_bytes = {0};
    int rc = -1;
    for (;;) {
        unsigned char h[8], content[65536 + 256];
        if (read_full(fd, h, 8) < 0)
            break;
        size_t len = ((size_t)h[4] << 8) | h[5], pad = h[6];
        int rid = (h[2] << 8) | h[3];
        if (read_full(fd, content, len + pad) < 0)
            break;
        if (rid != id)
            continue;
        if (h[1] == FCGI_T_STDOUT) {
            fcgi_put(&stdout_bytes, content, len);
        } else if (h[1] == FCGI_T_END && len >= 8) {
            out->app_status = (content[0] << 24) | (content[1] << 16) | (content[2] << 8) |
                              content[3];
            out->protocol_status = content[4];
            rc = 0;
            break;
        }
    }
    fcgi_put(&stdout_bytes, "", 1);
    char *all = (char *)stdout_bytes.data;
    size_t total = stdout_bytes.len - 1;
    char *sep = strstr(all, "\r\n\r\n");
    size_t head_len = sep != NULL ? (size_t)(sep - all) + 2 : total;
    size_t body_off = sep != NULL ? head_len + 2 : total;
    out->head = malloc(head_len + 1);
    memcpy(out->head, all, head_len);
    out->head[head_len] = '\0';
    out->body_len = total - body_off;
    out->body = malloc(out->body_len + 1);
    memcpy(out->body, all + body_off, out->body_len);
    out->body[out->body_len] = '\0';
    out->status = 200;
    char v[64];
    if (fcgi_header(out, "Status", v, sizeof v) != NULL)
        out->status = atoi(v);
    fcgi_buf_free(&stdout_bytes);
    return rc;
}

void fcgi_response_free(fcgi_response *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

const char *fcgi_header(const fcgi_response *r, const char *name, char *buf, size_t cap)
{
    size_t n = strlen(name);
    for (const char *line = r->head; line != NULL && *line;) {
        const char *end = strstr(line, "\r\n");
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
        if (len > n && strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            size_t vl = len - (size_t)(v - line);
            if (vl >= cap)
                vl = cap - 1;
            memcpy(buf, v, vl);
            buf[vl] = '\0';
            return buf;
        }
        line = end != NULL ? end + 2 : NULL;
    }
    return NULL;
}

int fcgi_request(int fd, int id, int keep_conn, const char *const *params, const void *body,
                 size_t body_len, fcgi_response *out)
{
    fcgi_buf b = {0};
    fcgi_begin(&b, id, keep_conn);
    fcgi_params(&b, id, params);
    fcgi_stdin(&b, id, body, body_len);
    int rc = fcgi_send(fd, &b);
    fcgi_buf_free(&b);
    if (rc < 0) {
        memset(out, 0, sizeof *out);
        return -1;
    }
    return fcgi_read_response(fd, id, out);
}

int fcgi_wait_closed(int fd, int timeout_ms)
{
    int64_t end = fcgi_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = end - fcgi_now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {fd, POLLIN, 0};
        int n = poll(&p, 1, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0;
        char buf[4096];
        ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
            return 1;
    }
}
