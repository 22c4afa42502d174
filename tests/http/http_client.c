// SPDX-License-Identifier: MIT
/* The end-to-end tests' HTTP/1.1 client: see http_client.h. */
#include "http_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int test_http_connect(int port)
{
    return test_http_connect_from(port, NULL);
}

int test_http_connect_from(int port, const char *source)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (source != NULL) {
        struct sockaddr_in src;
        memset(&src, 0, sizeof src);
        src.sin_family = AF_INET;
        if (inet_pton(AF_INET, source, &src.sin_addr) != 1 ||
            bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
            close(fd);
            return -1;
        }
    }
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

void test_http_response_free(test_http_response *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

const char *test_http_header(const test_http_response *r, const char *name, char *buf,
                             size_t cap)
{
    size_t nl = strlen(name);
    const char *line = strstr(r->head, "\r\n");
    while (line != NULL && line[2] != '\0') {
        line += 2;
        const char *end = strstr(line, "\r\n");
        if (end == NULL)
            break;
        if ((size_t)(end - line) > nl && line[nl] == ':' && strncasecmp(line, name, nl) == 0) {
            const char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t vl = (size_t)(end - v);
            if (vl >= cap)
                vl = cap - 1;
            memcpy(buf, v, vl);
            buf[vl] = '\0';
            return buf;
        }
        line = end;
    }
    return NULL;
}

static int read_response(int fd, const char *method, const char *target,
                         test_http_response *out);

int test_http_request(int fd, const char *method, const char *target,
                      const char *extra_headers, const char *body, size_t body_len,
                      test_http_response *out)
{
    memset(out, 0, sizeof *out);
    char req[4096];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s", method, target,
                     extra_headers ? extra_headers : "");
    if (body != NULL)
        n += snprintf(req + n, sizeof req - (size_t)n,
                      "Content-Type: application/x-www-form-urlencoded\r\n"
                      "Content-Length: %zu\r\n",
                      body_len);
    n += snprintf(req + n, sizeof req - (size_t)n, "\r\n");
    if ((size_t)n >= sizeof req || send_all(fd, req, (size_t)n) < 0 ||
        (body != NULL && send_all(fd, body, body_len) < 0)) {
        fprintf(stderr, "http client: cannot send %s %s\n", method, target);
        return -1;
    }
    return read_response(fd, method, target, out);
}

static int read_response(int fd, const char *method, const char *target,
                         test_http_response *out)
{
    /* Read until the end of the headers; whatever follows is body. */
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap + 1);
    char *eoh = NULL;
    while (eoh == NULL) {
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
        ssize_t r = recv(fd, buf + len, cap - len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            fprintf(stderr, "http client: connection closed or timed out before the headers "
                            "of %s %s\n", method, target);
            free(buf);
            return -1;
        }
        len += (size_t)r;
        buf[len] = '\0';
        eoh = strstr(buf, "\r\n\r\n");
    }
    size_t head_len = (size_t)(eoh - buf) + 2; /* keep the last header's CRLF */
    out->head = malloc(head_len + 1);
    memcpy(out->head, buf, head_len);
    out->head[head_len] = '\0';
    if (sscanf(out->head, "HTTP/1.%*d %d", &out->status) != 1) {
        fprintf(stderr, "http client: bad status line\n");
        free(buf);
        test_http_response_free(out);
        return -1;
    }
    char cl[32];
    size_t want = 0;
    if (strcmp(method, "HEAD") != 0 && out->status != 204 && out->status != 304) {
        if (test_http_header(out, "Content-Length", cl, sizeof cl) == NULL) {
            fprintf(stderr, "http client: response without Content-Length\n");
            free(buf);
            test_http_response_free(out);
            return -1;
        }
        want = strtoull(cl, NULL, 10);
    }
    size_t have = len - (head_len + 2);
    out->body = malloc(want + 1);
    memcpy(out->body, buf + head_len + 2, have < want ? have : want);
    free(buf);
    while (have < want) {
        ssize_t r = recv(fd, out->body + have, want - have, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            fprintf(stderr, "http client: body of %s %s cut at %zu of %zu bytes\n", method,
                    target, have, want);
            test_http_response_free(out);
            return -1;
        }
        have += (size_t)r;
    }
    out->body[want] = '\0';
    out->body_len = want;
    return 0;
}

int test_http_raw(int port, const char *raw, size_t len, test_http_response *out)
{
    memset(out, 0, sizeof *out);
    int fd = test_http_connect(port);
    if (fd < 0)
        return -1;
    int rc = send_all(fd, raw, len);
    /* A refused request may be answered before it is fully sent: read the
     * answer even when the send failed part-way. */
    rc = read_response(fd, "RAW", rc == 0 ? "(raw request)" : "(raw request, send cut)", out);
    close(fd);
    return rc;
}

int test_http_once(int port, const char *method, const char *target,
                   const char *extra_headers, const char *body, test_http_response *out)
{
    int fd = test_http_connect(port);
    if (fd < 0) {
        memset(out, 0, sizeof *out);
        return -1;
    }
    int rc = test_http_request(fd, method, target, extra_headers, body,
                               body ? strlen(body) : 0, out);
    close(fd);
    return rc;
}
