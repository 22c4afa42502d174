/*
 * The FastCGI adapter's server half (nori/fcgi.h): the listening socket,
 * the serving threads, and the deadlines that bound every read and write.
 *
 * libfcgi's own accept (OS_Accept, inside FCGX_Accept_r) blocks in
 * accept() with no way to wake it for a stop, and then reads the request
 * with blocking read()s that a stalled web server holds forever. So each
 * thread accepts by itself (epoll on the listener with EPOLLEXCLUSIVE and
 * on a stop eventfd; a non-blocking listener, as several threads and
 * processes race for each connection) and gives libfcgi a dup() of the
 * connection as an already open one: FCGX_Request.ipcFd with
 * keepConnection set, the two fields FCGX_Accept_r reads to decide that a
 * connection is open (libfcgi 2.4; fcgiapp.h marks them internal, and the
 * tests cover this use). The request carries listen_sock -1, so that
 * libfcgi, on a malformed request, closes its dup and returns an error
 * instead of accepting from the listener itself.
 *
 * The deadlines: a watchdog thread shuts down (shutdown(2), never close)
 * the connection of a thread whose read or write phase outlived
 * io_timeout_ms; libfcgi's blocked read() or write() then fails. The
 * watchdog holds the server's own fd of the connection, which stays open
 * until the thread disarms its slot under the lock, so the fd it shuts down
 * can never be a newer connection that reused the number.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_THREADS 4
#define MAX_THREADS 1024
#define DEFAULT_BACKLOG 1024
#define DEFAULT_IO_TIMEOUT_MS 10000
#define DEFAULT_IDLE_TIMEOUT_MS 60000
#define DEFAULT_SOCKET_MODE 0660u
#define MAX_ADDRESS 1024
/* Back-off after accept() failed for want of descriptors or memory. */
#define ACCEPT_BACKOFF_MS 50

typedef struct slot slot;

struct nori_fcgi_server {
    const nori_fcgi_app *app;
    nori_fcgi_options o;
    int listen_fd;
    int owns_fd;
    char *unix_path; /* a unix socket the server created: unlinked at free */
    char *allowed;   /* FCGI_WEB_SERVER_ADDRS, copied; NULL = any */
    int stop_fd;     /* eventfd: readable once stopping */
    atomic_int stopping;
    size_t n_threads, n_started;
    slot *slots;
    /* The watchdog: slots' deadlines, read and written under lock. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int watchdog_stop;
    int watchdog_started;
    pthread_t watchdog;
    struct {
        atomic_uint_fast64_t connections, connections_open, requests, refused, broken,
            timeouts, accept_errors;
    } st;
};

struct slot {
    nori_fcgi_server *s;
    pthread_t thread;
    /* Under s->lock: */
    int fd;           /* the connection, -1 = none */
    int64_t deadline; /* monotonic ns; 0 = not armed */
    int fired;        /* the watchdog shut the connection down */
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---------------------------------------------------------------- socket */

void nori_fcgi_options_init(nori_fcgi_options *o)
{
    if (o == NULL)
        return;
    memset(o, 0, sizeof *o);
    o->listen_fd = -1;
}

int nori_fcgi_inherited(void)
{
    struct stat sb;
    int v = 0, type = 0;
    socklen_t len = sizeof v, tlen = sizeof type;
    return fstat(0, &sb) == 0 && S_ISSOCK(sb.st_mode) &&
           getsockopt(0, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0 && v == 1 &&
           getsockopt(0, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0 && type == SOCK_STREAM;
}

/* Binds a unix socket at path, replacing a stale socket there (one that
 * refuses connections) but nothing else. */
static int listen_unix(const char *path, int backlog, unsigned mode, int *out)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path)
        return nori_set_error(NORI_EINVAL, "fcgi: unix socket path is %zu bytes, the limit is %zu",
                              strlen(path), sizeof sa.sun_path - 1);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    struct stat sb;
    if (lstat(path, &sb) == 0) {
        if (!S_ISSOCK(sb.st_mode))
            return nori_set_error(NORI_EINVAL, "fcgi: %s exists and is not a socket", path);
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe < 0)
            return nori_set_error(NORI_EBACKEND, "fcgi: socket: %s", strerror(errno));
        int live = connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0;
        int err = errno;
        close(probe);
        if (live)
            return nori_set_error(NORI_EBACKEND, "fcgi: %s is in use by a running server", path);
        if (err != ECONNREFUSED)
            return nori_set_error(NORI_EBACKEND, "fcgi: cannot probe %s: %s", path,
                                  strerror(err));
        unlink(path); /* stale: nobody listens there */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return nori_set_error(NORI_EBACKEND, "fcgi: socket: %s", strerror(errno));
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int err = errno;
        close(fd);
        return nori_set_error(NORI_EBACKEND, "fcgi: cannot bind %s: %s", path, strerror(err));
    }
    if (chmod(path, mode) != 0 || listen(fd, backlog) != 0) {
        int err = errno;
        close(fd);
        unlink(path);
        return nori_set_error(NORI_EBACKEND, "fcgi: cannot listen on %s: %s", path,
                              strerror(err));
    }
    *out = fd;
    return NORI_OK;
}

/* HOST:PORT, [V6]:PORT, :PORT or *:PORT (every interface). */
static int listen_tcp(const char *address, int backlog, int *out)
{
    char host[MAX_ADDRESS];
    const char *colon = strrchr(address, ':');
    if (colon == NULL)
        return nori_set_error(NORI_EINVAL,
                              "fcgi: address \"%s\" is neither HOST:PORT nor a socket path",
                              address);
    size_t hlen = (size_t)(colon - address);
    memcpy(host, address, hlen);
    host[hlen] = '\0';
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        memmove(host, host + 1, hlen - 2);
        host[hlen - 2] = '\0';
    }
    const char *port = colon + 1;
    char *end;
    errno = 0;
    long p = strtol(port, &end, 10);
    if (*port < '0' || *port > '9' || *end != '\0' || errno || p < 1 || p > 65535)
        return nori_set_error(NORI_EINVAL, "fcgi: port \"%s\" of \"%s\" is not 1..65535", port,
                              address);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    const char *node = host[0] == '\0' || strcmp(host, "*") == 0 ? NULL : host;
    int gai = getaddrinfo(node, port, &hints, &res);
    if (gai != 0)
        return nori_set_error(NORI_EINVAL, "fcgi: cannot resolve \"%s\": %s", host,
                              gai_strerror(gai));
    int fd = -1, err = 0;
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, backlog) != 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        return nori_set_error(NORI_EBACKEND, "fcgi: cannot listen on %s: %s", address,
                              strerror(err));
    *out = fd;
    return NORI_OK;
}

int nori_fcgi_listen(const char *address, int backlog, unsigned socket_mode, int *fd)
{
    if (address == NULL || fd == NULL || address[0] == '\0')
        return nori_set_error(NORI_EINVAL, "fcgi_listen: address or fd is NULL or empty");
    if (strlen(address) >= MAX_ADDRESS)
        return nori_set_error(NORI_EINVAL, "fcgi_listen: address is %zu bytes, the limit is %d",
                              strlen(address), MAX_ADDRESS - 1);
    if (backlog <= 0)
        backlog = DEFAULT_BACKLOG;
    if (socket_mode == 0)
        socket_mode = DEFAULT_SOCKET_MODE;
    if (socket_mode > 0777)
        return nori_set_error(NORI_EINVAL, "fcgi_listen: socket mode %o is not a permission",
                              socket_mode);
    if (strchr(address, '/') != NULL)
        return listen_unix(address, backlog, socket_mode, fd);
    return listen_tcp(address, backlog, fd);
}

/* FCGI_WEB_SERVER_ADDRS (libfcgi's variable): a comma-separated list of
 * the addresses a TCP connection may come from. Unix sockets are governed
 * by their file mode. */
static int peer_allowed(const char *list, const struct sockaddr_storage *sa)
{
    if (list == NULL || (sa->ss_family != AF_INET && sa->ss_family != AF_INET6))
        return 1;
    char peer[INET6_ADDRSTRLEN];
    const void *a = sa->ss_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (inet_ntop(sa->ss_family, a, peer, sizeof peer) == NULL)
        return 0;
    size_t plen = strlen(peer);
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        while (n > 0 && p[0] == ' ') {
            p++;
            n--;
        }
        while (n > 0 && p[n - 1] == ' ')
            n--;
        if (n == plen && memcmp(p, peer, n) == 0)
            return 1;
        p += strcspn(p, ",");
        if (*p == ',')
            p++;
    }
    return 0;
}

/* -------------------------------------------------------------- watchdog */

static void arm(slot *sl)
{
    nori_fcgi_server *s = sl->s;
    pthread_mutex_lock(&s->lock);
    sl->deadline = now_ns() + s->o.io_timeout_ms * 1000000;
    pthread_mutex_unlock(&s->lock);
}

static void disarm(slot *sl)
{
    pthread_mutex_lock(&sl->s->lock);
    sl->deadline = 0;
    pthread_mutex_unlock(&sl->s->lock);
}

static void hook_disarm(void *ud)
{
    disarm(ud);
}

static void hook_arm(void *ud)
{
    arm(ud);
}

/* Sleeps until the earliest deadline (or one io_timeout: a deadline armed
 * meanwhile lies at least that far ahead, so none is missed), shuts down
 * the connections past theirs. */
static void *watchdog_main(void *arg)
{
    nori_fcgi_server *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->watchdog_stop) {
        int64_t now = now_ns(), wake = now + s->o.io_timeout_ms * 1000000;
        for (size_t i = 0; i < s->n_started; i++) {
            slot *sl = &s->slots[i];
            if (sl->deadline == 0 || sl->fd < 0)
                continue;
            if (sl->deadline <= now) {
                shutdown(sl->fd, SHUT_RDWR);
                sl->deadline = 0;
                sl->fired = 1;
                atomic_fetch_add_explicit(&s->st.timeouts, 1, memory_order_relaxed);
            } else if (sl->deadline < wake) {
                wake = sl->deadline;
            }
        }
        struct timespec ts = {(time_t)(wake / 1000000000), (long)(wake % 1000000000)};
        pthread_cond_timedwait(&s->cond, &s->lock, &ts);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* --------------------------------------------------------------- threads */

static int stopping(nori_fcgi_server *s)
{
    return atomic_load_explicit(&s->stopping, memory_order_acquire);
}

/* A SIGPIPE raised by a write to a closed connection stays pending (the
 * thread blocks it): take it, so that it cannot hit the thread later. */
static void drop_sigpipe(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    struct timespec zero = {0, 0};
    while (sigtimedwait(&set, NULL, &zero) == SIGPIPE) {
    }
}

typedef struct {
    slot *sl;
    FCGX_Request req;
    int conn; /* the server's fd of the connection; libfcgi holds a dup */
} worker;

static void close_conn(worker *w)
{
    nori_fcgi_server *s = w->sl->s;
    pthread_mutex_lock(&s->lock);
    w->sl->fd = -1;
    w->sl->deadline = 0;
    w->sl->fired = 0;
    pthread_mutex_unlock(&s->lock);
    if (w->req.ipcFd >= 0)
        FCGX_Free(&w->req, 1); /* closes libfcgi's dup */
    close(w->conn);
    w->conn = -1;
    atomic_fetch_sub_explicit(&s->st.connections_open, 1, memory_order_relaxed);
    drop_sigpipe();
}

/* Waits for a connection and accepts it: 1, or 0 to stop the thread. */
static int accept_conn(worker *w, int epfd)
{
    nori_fcgi_server *s = w->sl->s;
    for (;;) {
        if (stopping(s))
            return 0;
        struct epoll_event ev[2];
        int n = epoll_wait(epfd, ev, 2, -1);
        if (n < 0 && errno != EINTR)
            return 0;
        if (stopping(s))
            return 0;
        if (n <= 0)
            continue;
        struct sockaddr_storage sa;
        socklen_t len = sizeof sa;
        int fd = accept4(s->listen_fd, (struct sockaddr *)&sa, &len, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
                errno == ECONNABORTED || errno == EPROTO)
                continue; /* another thread or process won the race */
            atomic_fetch_add_explicit(&s->st.accept_errors, 1, memory_order_relaxed);
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                struct pollfd p = {s->stop_fd, POLLIN, 0};
                poll(&p, 1, ACCEPT_BACKOFF_MS); /* bounded; wakes on stop */
                continue;
            }
            return 0; /* the listener itself is gone */
        }
        if (!peer_allowed(s->allowed, &sa)) {
            close(fd);
            continue;
        }
        if (sa.ss_family == AF_INET || sa.ss_family == AF_INET6) {
            int one = 1; /* responses are written in one go: no Nagle delay */
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (dup_fd < 0) {
            close(fd);
            atomic_fetch_add_explicit(&s->st.accept_errors, 1, memory_order_relaxed);
            continue;
        }
        w->conn = fd;
        w->req.ipcFd = dup_fd;
        w->req.keepConnection = 1; /* so FCGX_Accept_r reads it, not closes it */
        pthread_mutex_lock(&s->lock);
        w->sl->fd = fd;
        pthread_mutex_unlock(&s->lock);
        atomic_fetch_add_explicit(&s->st.connections, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->st.connections_open, 1, memory_order_relaxed);
        return 1;
    }
}

/* A kept connection: waits (bounded by idle_timeout_ms, and by a stop) for
 * the web server's next request. 1 when one is there to read. */
static int await_request(worker *w)
{
    nori_fcgi_server *s = w->sl->s;
    struct pollfd p[2] = {{w->conn, POLLIN, 0}, {s->stop_fd, POLLIN, 0}};
    int64_t timeout = s->o.idle_timeout_ms;
    int n;
    do
        n = poll(p, 2, timeout > 0x7fffffff ? 0x7fffffff : (int)timeout);
    while (n < 0 && errno == EINTR);
    if (n <= 0 || (p[1].revents & POLLIN) || !(p[0].revents & (POLLIN | POLLHUP)))
        return 0;
    /* The web server closing an idle kept connection is routine, not a
     * broken request. */
    char b;
    return recv(w->conn, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 1;
}

static void *serve_main(void *arg)
{
    slot *sl = arg;
    nori_fcgi_server *s = sl->s;
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);

    worker w;
    w.sl = sl;
    w.conn = -1;
    FCGX_InitRequest(&w.req, -1, 0);
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {EPOLLIN | EPOLLEXCLUSIVE, {.fd = s->listen_fd}};
    struct epoll_event sev = {EPOLLIN, {.fd = s->stop_fd}};
    if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, s->listen_fd, &lev) != 0 ||
        epoll_ctl(epfd, EPOLL_CTL_ADD, s->stop_fd, &sev) != 0) {
        if (epfd >= 0)
            close(epfd);
        fprintf(stderr, "nori fcgi: thread cannot wait on the listener: %s\n", strerror(errno));
        return NULL;
    }
    while (!stopping(s)) {
        if (w.conn < 0) {
            if (!accept_conn(&w, epfd))
                break;
        } else if (!await_request(&w)) {
            close_conn(&w);
            continue;
        }
        arm(sl);
        if (FCGX_Accept_r(&w.req) != 0) {
            /* Malformed records, a connection closed or timed out before
             * the parameters were complete: libfcgi closed its dup. */
            atomic_fetch_add_explicit(&s->st.broken, 1, memory_order_relaxed);
            close_conn(&w);
            continue;
        }
        nori__fcgi_serve_ctx ctx;
        memset(&ctx, 0, sizeof ctx);
        ctx.handler_starts = hook_disarm;
        ctx.writing_starts = hook_arm;
        ctx.ud = sl;
        int rc = nori__fcgi_serve(s->app, &w.req, &ctx);
        if (rc != NORI_EBACKEND) {
            atomic_fetch_add_explicit(&s->st.requests, 1, memory_order_relaxed);
            if (ctx.refused)
                atomic_fetch_add_explicit(&s->st.refused, 1, memory_order_relaxed);
        }
        if (ctx.must_close)
            w.req.keepConnection = 0; /* FCGX_Finish_r closes libfcgi's dup */
        FCGX_Finish_r(&w.req);        /* still armed: writes the end records */
        pthread_mutex_lock(&s->lock);
        sl->deadline = 0;
        int fired = sl->fired;
        pthread_mutex_unlock(&s->lock);
        if (rc == NORI_EBACKEND || fired)
            atomic_fetch_add_explicit(&s->st.broken, 1, memory_order_relaxed);
        if (w.req.ipcFd < 0 || fired || ctx.must_close)
            close_conn(&w);
    }
    if (w.conn >= 0)
        close_conn(&w);
    close(epfd);
    return NULL;
}

/* ---------------------------------------------------------------- server */

static void server_destroy(nori_fcgi_server *s)
{
    atomic_store_explicit(&s->stopping, 1, memory_order_release);
    if (s->stop_fd >= 0) {
        uint64_t one = 1;
        ssize_t wr = write(s->stop_fd, &one, sizeof one);
        (void)wr; /* an eventfd write of 1 cannot fail short of overflow */
    }
    for (size_t i = 0; i < s->n_started; i++)
        pthread_join(s->slots[i].thread, NULL);
    if (s->watchdog_started) {
        pthread_mutex_lock(&s->lock);
        s->watchdog_stop = 1;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->watchdog, NULL);
    }
    if (s->owns_fd && s->listen_fd >= 0)
        close(s->listen_fd);
    if (s->unix_path != NULL)
        unlink(s->unix_path);
    if (s->stop_fd >= 0)
        close(s->stop_fd);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s->unix_path);
    free(s->allowed);
    free(s->slots);
    free(s);
}

int nori_fcgi_server_new(const nori_fcgi_app *app, const nori_fcgi_options *opts,
                         nori_fcgi_server **out)
{
    if (app == NULL || out == NULL || (app->routes == NULL && app->n_routes > 0))
        return nori_set_error(NORI_EINVAL, "fcgi_server_new: app or out is NULL");
    nori_fcgi_options o;
    if (opts != NULL)
        o = *opts;
    else
        nori_fcgi_options_init(&o);
    if (o.threads == 0)
        o.threads = DEFAULT_THREADS;
    if (o.io_timeout_ms == 0)
        o.io_timeout_ms = DEFAULT_IO_TIMEOUT_MS;
    if (o.idle_timeout_ms == 0)
        o.idle_timeout_ms = DEFAULT_IDLE_TIMEOUT_MS;
    if (o.threads > MAX_THREADS)
        return nori_set_error(NORI_EINVAL, "fcgi_server_new: %zu threads, the limit is %d",
                              o.threads, MAX_THREADS);
    if (o.io_timeout_ms < 0 || o.io_timeout_ms > 86400000 || o.idle_timeout_ms < 0 ||
        o.idle_timeout_ms > 86400000)
        return nori_set_error(NORI_EINVAL,
                              "fcgi_server_new: timeouts must be 1..86400000 ms (0 = default)");
    int rc = nori__fcgi_init();
    if (rc != NORI_OK)
        return rc;

    int fd = -1, owns = 0;
    if (o.address != NULL) {
        if ((rc = nori_fcgi_listen(o.address, o.backlog, o.socket_mode, &fd)) != NORI_OK)
            return rc;
        owns = 1;
    } else if (o.listen_fd >= 0) {
        fd = o.listen_fd;
    } else if (nori_fcgi_inherited()) {
        fd = 0; /* FCGI_LISTENSOCK_FILENO */
    } else {
        return nori_set_error(NORI_EINVAL, "fcgi_server_new: no address, no listen_fd, and fd 0 "
                                           "is not a listening socket (not started by a "
                                           "FastCGI process manager)");
    }
    nori_fcgi_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        if (owns)
            close(fd);
        return nori_set_error(NORI_ENOMEM, "fcgi_server_new: out of memory");
    }
    s->app = app;
    s->o = o;
    s->o.address = NULL; /* not kept: the server holds the socket */
    s->listen_fd = fd;
    s->owns_fd = owns;
    s->stop_fd = -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    const char *allowed = getenv("FCGI_WEB_SERVER_ADDRS");
    rc = NORI_ENOMEM;
    if (owns && strchr(o.address, '/') != NULL && (s->unix_path = strdup(o.address)) == NULL)
        goto fail;
    if (allowed != NULL && *allowed && (s->allowed = strdup(allowed)) == NULL)
        goto fail;
    if ((s->slots = calloc(o.threads, sizeof *s->slots)) == NULL)
        goto fail;
    rc = NORI_EBACKEND;
    /* Several threads (and processes) wait on one listener: each accept
     * must fail with EAGAIN, not block, when another took the connection. */
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        nori_set_error(rc, "fcgi_server_new: fd %d: %s", fd, strerror(errno));
        goto fail_quiet;
    }
    if ((s->stop_fd = eventfd(0, EFD_CLOEXEC)) < 0) {
        nori_set_error(rc, "fcgi_server_new: eventfd: %s", strerror(errno));
        goto fail_quiet;
    }
    s->n_threads = o.threads;
    if (pthread_create(&s->watchdog, NULL, watchdog_main, s) != 0) {
        nori_set_error(rc, "fcgi_server_new: cannot start the watchdog thread");
        goto fail_quiet;
    }
    s->watchdog_started = 1;
    for (size_t i = 0; i < o.threads; i++) {
        s->slots[i].s = s;
        s->slots[i].fd = -1;
        /* n_started is read by the watchdog under the lock. */
        pthread_mutex_lock(&s->lock);
        int cr = pthread_create(&s->slots[i].thread, NULL, serve_main, &s->slots[i]);
        if (cr == 0)
            s->n_started++;
        pthread_mutex_unlock(&s->lock);
        if (cr != 0) {
            nori_set_error(rc, "fcgi_server_new: cannot start serving thread %zu", i);
            goto fail_quiet;
        }
    }
    *out = s;
    return NORI_OK;
fail:
    nori_set_error(rc, "fcgi_server_new: out of memory");
fail_quiet:
    if (!owns)
        s->listen_fd = -1;
    else if (s->unix_path == NULL && strchr(o.address, '/') != NULL)
        unlink(o.address);
    {
        /* server_destroy() would overwrite the message: keep it. */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", nori_last_error());
        server_destroy(s);
        nori_set_error(rc, "%s", msg);
    }
    return rc;
}

int nori_fcgi_server_fd(const nori_fcgi_server *s)
{
    return s != NULL ? s->listen_fd : -1;
}

void nori_fcgi_server_free(nori_fcgi_server *s)
{
    if (s != NULL)
        server_destroy(s);
}

void nori_fcgi_server_get_stats(const nori_fcgi_server *s, nori_fcgi_stats *out)
{
    if (s == NULL || out == NULL)
        return;
    nori_fcgi_server *m = (nori_fcgi_server *)s; /* atomics are read, never written */
#define LOAD(f) out->f = atomic_load_explicit(&m->st.f, memory_order_relaxed)
    LOAD(connections);
    LOAD(connections_open);
    LOAD(requests);
    LOAD(refused);
    LOAD(broken);
    LOAD(timeouts);
    LOAD(accept_errors);
#undef LOAD
}
