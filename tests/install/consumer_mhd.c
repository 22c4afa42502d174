// SPDX-License-Identifier: MIT
/* A program built only from the installed headers and the adapter's package:
 * serves one cached route with libmicrohttpd and requests it twice over
 * loopback; the second answer must be a cache hit. */
#include <nori/mhd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int hello(const nori_http_request *req, nori_http_response *resp, void *ud)
{
    (void)req;
    (void)ud;
    return nori_http_response_set_body(resp, "hi", 2);
}

/* One GET over a fresh connection; the raw response in buf. */
static int get(unsigned short port, char *buf, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        return -1;
    const char *rq = "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if (write(fd, rq, strlen(rq)) != (ssize_t)strlen(rq))
        return -1;
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fd, buf + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
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
    nori_mhd_route routes[] = {{"/hello", hello, NULL, cache, NORI_HTTP_GET}};
    nori_mhd_app app = {routes, 1, 0};
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
                                            nori_mhd_handler, &app, NORI_MHD_OPTIONS(&app),
                                            MHD_OPTION_END);
    int ok = 0;
    if (d) {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
        char first[4096], second[4096];
        ok = info && get(info->port, first, sizeof first) == 0 &&
             get(info->port, second, sizeof second) == 0 && strstr(first, "X-Cache: MISS") &&
             strstr(second, "X-Cache: HIT");
        MHD_stop_daemon(d);
    }
    nori_http_cache_free(cache);
    nori_backend_free(b);
    printf("%s mhd %s\n", nori_version(), ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
