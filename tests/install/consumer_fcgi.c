// SPDX-License-Identifier: MIT
/* A program built only from the installed headers and the FastCGI adapter's
 * package: serves one cached route on a unix socket with nori_fcgi_server
 * and sends it two FastCGI requests; the second answer must be a hit. */
#define _DEFAULT_SOURCE /* mkdtemp under -std=c11 */
#include <nori/fcgi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

static int hello(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)req;
    (void)ud;
    return nori_http_response_set_body(resp, "hi", 2);
}

static void record(unsigned char *b, size_t *n, int type, const void *data, size_t len)
{
    unsigned char h[8] = {1, (unsigned char)type, 0, 1, (unsigned char)(len >> 8),
                          (unsigned char)len, 0, 0};
    memcpy(b + *n, h, 8);
    memcpy(b + *n + 8, data, len);
    *n += 8 + len;
}

/* One GET /hello; the CGI response (STDOUT records) in out. */
static int get(const char *path, char *out, size_t cap)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        return -1;
    unsigned char b[256];
    size_t n = 0;
    static const unsigned char begin[8] = {0, 1, 0, 0, 0, 0, 0, 0};
    static const unsigned char params[] = "\x0e\x03REQUEST_METHODGET\x0b\x06SCRIPT_NAME/hello";
    record(b, &n, 1, begin, 8);
    record(b, &n, 4, params, sizeof params - 1);
    record(b, &n, 4, "", 0);
    record(b, &n, 5, "", 0);
    if (write(fd, b, n) != (ssize_t)n)
        return -1;
    size_t got = 0;
    for (;;) {
        unsigned char h[8], body[65536 + 256];
        if (recv(fd, h, 8, MSG_WAITALL) != 8)
            break;
        size_t len = ((size_t)h[4] << 8 | h[5]) + h[6];
        if (len && recv(fd, body, len, MSG_WAITALL) != (ssize_t)len)
            break;
        if (h[1] == 3) /* FCGI_END_REQUEST */
            break;
        len -= h[6];
        if (h[1] == 6 && got + len < cap) { /* FCGI_STDOUT */
            memcpy(out + got, body, len);
            got += len;
        }
    }
    out[got] = '\0';
    close(fd);
    return 0;
}

int main(void)
{
    nori_backend *b;
    nori_http_cache *cache;
    nori_http_cache_options opts;
    nori_http_cache_options_init(&opts);
    if (nori_memory_backend_new(16, &b) != NORI_OK)
        return 1;
    opts.backend = b;
    if (nori_http_cache_new(&opts, &cache) != NORI_OK)
        return 1;
    nori_fcgi_route routes[] = {{"/hello", hello, NULL, cache, NORI_HTTP_GET}};
    nori_fcgi_app app = {routes, 1, 0};
    char dir[] = "/tmp/nori-fcgi-XXXXXX", path[128];
    if (mkdtemp(dir) == NULL)
        return 1;
    snprintf(path, sizeof path, "%s/app.sock", dir);
    nori_fcgi_options o;
    nori_fcgi_options_init(&o);
    o.address = path;
    o.threads = 2;
    nori_fcgi_server *s;
    int ok = 0;
    if (nori_fcgi_server_new(&app, &o, &s) == NORI_OK) {
        char first[4096], second[4096];
        ok = get(path, first, sizeof first) == 0 && get(path, second, sizeof second) == 0 &&
             strstr(first, "X-Cache: MISS") && strstr(second, "X-Cache: HIT") &&
             strstr(second, "\r\n\r\nhi");
        nori_fcgi_server_free(s);
    } else {
        fprintf(stderr, "fcgi consumer: %s\n", nori_last_error());
    }
    rmdir(dir);
    nori_http_cache_free(cache);
    nori_backend_free(b);
    printf("%s fcgi %s\n", nori_version(), ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
