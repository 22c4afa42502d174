// SPDX-License-Identifier: MIT
/*
 * The FastCGI adapter's server half (nori/fcgi.h): the listening socket,
 * the serving threads, and the deadlines that bound every read and write.
 *
 * libfcgi's own accept (OS_Accept, inside FCGX_Accept_r) blocks in
 * accept() with no way to wake it for a stop, reads the request with
 * blocking read()s that a stalled web server holds forever, and keeps a
 * thread on a kept connection (FCGI_KEEP_CONN) until the web server sends
 * the next request on it: with nginx's upstream keepalive, threads parked on
 * idle kept connections leave the new connections nginx opens in a burst
 * unaccepted, and every request on them hangs. So:
 *  - One epoll instance per server holds the listener (EPOLLEXCLUSIVE:
 *    several processes share it), a stop eventfd, and every idle kept
 *    connection (EPOLLONESHOT); the threads wait on it, one event each.
 *    A thread that gets the listener accepts a connection (non-blocking
 *    listener: another thread or process may have taken it) and serves its
 *    first request; a thread that gets a kept connection serves its next
 *    request. Then a kept connection goes back into the epoll set: idle
 *    connections cost no thread.
 *  - libfcgi gets a dup() of the connection as an already open one:
 *    FCGX_Request.ipcFd with keepConnection set, the two fields
 *    FCGX_Accept_r reads to decide that a connection is open (libfcgi 2.4;
 *    fcgiapp.h marks them internal, and the tests cover this use). The
 *    request carries listen_sock -1, so that libfcgi, on a malformed
 *    request, closes its dup and returns an error instead of accepting from
 *    the listener itself.
 *  - A watchdog thread shuts down (shutdown(2), never close) a connection
 *    whose read or write phase outlived io_timeout_ms, or that stayed idle
 *    idle_timeout_ms; libfcgi's blocked read() or write() then fails, an
 *    idle one reads as closed. It acts on the server's own fd, which stays
 *    open until the connection is unlinked from the server's list under the
 *    lock, so the fd it shuts down is never a newer connection's.
 * A connection passes from thread to thread through the epoll set; each
 * side takes the server's lock around the hand-over (arming and disarming
 * the idle deadline), which also orders their accesses for the sanitizers.
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

typedef struct conn conn;

struct nori_fcgi_server {
    const nori_fcgi_app *app;
    nori_fcgi_options o;
    int listen_fd;
    int owns_fd;
    char *unix_path; /* a unix socket the server created: unlinked at free */
    char *allowed;   /* FCGI_WEB_SERVER_ADDRS, copied; NULL = any */
    int stop_fd;     /* eventfd: readable once stopping */
    int epfd;        /* listener, stop_fd, idle kept connections */
    atomic_int stopping;
    size_t n_threads, n_started;
    pthread_t *threads;
    /* Under lock: every open connection (the watchdog's list). */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    conn *conns;
    int watchdog_stop;
    int watchdog_started;
    pthread_t watchdog;
    struct {
        atomic_uint_fast64_t connections, connections_open, requests, refused, broken,
            timeouts, accept_errors;
    } st;
};

/* One connection from the web server. Owned by the thread serving it, or
 * by the epoll set while idle. */
struct conn {
    conn *prev, *next; /* s->conns, under s->lock */
    int fd;            /* the server's fd; libfcgi holds a dup in req.ipcFd */
    FCGX_Request req;
    /* Under s->lock: */
    int64_t deadline; /* monotonic ns; 0 = not armed */
    int idle;         /* the deadline is idle_timeout's (expiry is routine) */
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

/* Sets c's deadline ms from now (0: none). idle: an idle_timeout one. */
static void set_deadline(nori_fcgi_server *s, conn *c, int64_t ms, int idle)
{
    pthread_mutex_lock(&s->lock);
    c->deadline = ms > 0 ? now_ns() + ms * 1000000 : 0;
    c->idle = idle;
    pthread_mutex_unlock(&s->lock);
}

/* Sleeps until the earliest deadline (or one io_timeout: a deadline armed
 * meanwhile lies at least that far ahead, so none is missed), shuts down
 * the connections past theirs. */
static void *watchdog_main(void *arg)
{
    nori_fcgi_server *s = arg;
    int64_t period = s->o.io_timeout_ms < s->o.idle_timeout_ms ? s->o.io_timeout_ms
                                                               : s->o.idle_timeout_ms;
    pthread_mutex_lock(&s->lock);
    while (!s->watchdog_stop) {
        int64_t now = now_ns(), wake = now + period * 1000000;
        for (conn *c = s->conns; c != NULL; c = c->next) {
            if (c->deadline == 0)
                continue;
            if (c->deadline <= now) {
                /* Counted first: whoever sees the connection end can read
                 * the count. */
                if (!c->idle)
                    atomic_fetch_add_explicit(&s->st.timeouts, 1, memory_order_relaxed);
                c->deadline = 0;
                c->fired = !c->idle;
                shutdown(c->fd, SHUT_RDWR);
            } else if (c->deadline < wake) {
                wake = c->deadline;
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

/* Closes c (out of the epoll set, off the list) and frees it. */
static void close_conn(nori_fcgi_server *s, conn *c)
{
    pthread_mutex_lock(&s->lock);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&s->lock);
    if (c->req.ipcFd >= 0)
        FCGX_Free(&c->req, 1); /* closes libfcgi's dup */
    close(c->fd);              /* also leaves the epoll set */
    free(c);
    atomic_fetch_sub_explicit(&s->st.connections_open, 1, memory_order_relaxed);
}

/* Accepts one connection: a new conn, or NULL (none to take, refused). */
static conn *accept_conn(nori_fcgi_server *s)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    int fd = accept4(s->listen_fd, (struct sockaddr *)&sa, &len, SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
            errno == ECONNABORTED || errno == EPROTO)
            return NULL; /* another thread or process won the race */
        atomic_fetch_add_explicit(&s->st.accept_errors, 1, memory_order_relaxed);
        /* Out of descriptors or memory (or a listener gone bad): back off,
         * bounded, waking on a stop. */
        struct pollfd p = {s->stop_fd, POLLIN, 0};
        poll(&p, 1, ACCEPT_BACKOFF_MS);
        return NULL;
    }
    if (!peer_allowed(s->allowed, &sa)) {
        close(fd);
        return NULL;
    }
    if (sa.ss_family == AF_INET || sa.ss_family == AF_INET6) {
        int one = 1; /* responses are written in one go: no Nagle delay */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    conn *c = calloc(1, sizeof *c);
    int dup_fd = c != NULL ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    if (dup_fd < 0) {
        free(c);
        close(fd);
        atomic_fetch_add_explicit(&s->st.accept_errors, 1, memory_order_relaxed);
        return NULL;
    }
    c->fd = fd;
    FCGX_InitRequest(&c->req, -1, 0);
    c->req.ipcFd = dup_fd;
    c->req.keepConnection = 1; /* so FCGX_Accept_r reads it, not closes it */
    pthread_mutex_lock(&s->lock);
    c->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = c;
    s->conns = c;
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add_explicit(&s->st.connections, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->st.connections_open, 1, memory_order_relaxed);
    return c;
}

typedef struct {
    nori_fcgi_server *s;
    conn *c;
} phase_ud;

static void hook_handler(void *ud)
{
    phase_ud *p = ud;
    set_deadline(p->s, p->c, 0, 0);
}

static void hook_writing(void *ud)
{
    phase_ud *p = ud;
    set_deadline(p->s, p->c, p->s->o.io_timeout_ms, 0);
}

/*
 * Serves the next request on c. kept: c comes back from the epoll set (it
 * may have been closed by the web server, or expired). Afterwards c is
 * closed, or handed back to the epoll set (not to be touched again here).
 */
static void serve_conn(nori_fcgi_server *s, conn *c, int kept)
{
    set_deadline(s, c, s->o.io_timeout_ms, 0); /* also takes c over (see top) */
    if (kept) {
        /* The web server closing an idle kept connection, or the idle
         * deadline, is routine, not a broken request. */
        char b;
        if (recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) != 1) {
            close_conn(s, c);
            return;
        }
    }
    if (FCGX_Accept_r(&c->req) != 0) {
        /* Malformed records, a connection closed or timed out before the
         * parameters were complete: libfcgi closed its dup. */
        atomic_fetch_add_explicit(&s->st.broken, 1, memory_order_relaxed);
        close_conn(s, c);
        drop_sigpipe();
        return;
    }
    phase_ud pu = {s, c};
    nori__fcgi_serve_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.handler_starts = hook_handler;
    ctx.writing_starts = hook_writing;
    ctx.ud = &pu;
    int rc = nori__fcgi_serve(s->app, &c->req, &ctx);
    if (rc != NORI_EBACKEND) {
        atomic_fetch_add_explicit(&s->st.requests, 1, memory_order_relaxed);
        if (ctx.refused)
            atomic_fetch_add_explicit(&s->st.refused, 1, memory_order_relaxed);
    }
    if (ctx.must_close)
        c->req.keepConnection = 0; /* FCGX_Finish_r closes libfcgi's dup */
    FCGX_Finish_r(&c->req);        /* still armed: writes the end records */
    pthread_mutex_lock(&s->lock);
    c->deadline = 0;
    int fired = c->fired;
    pthread_mutex_unlock(&s->lock);
    if (rc == NORI_EBACKEND || fired)
        atomic_fetch_add_explicit(&s->st.broken, 1, memory_order_relaxed);
    if (c->req.ipcFd < 0 || fired || ctx.must_close || stopping(s)) {
        close_conn(s, c);
        drop_sigpipe();
        return;
    }
    /* Kept: back to the epoll set with its idle deadline. Under the lock,
     * which the thread that picks c up takes first (set_deadline above):
     * everything done to c here happens before anything done there. */
    struct epoll_event ev = {EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, {.ptr = c}};
    pthread_mutex_lock(&s->lock);
    c->deadline = now_ns() + s->o.idle_timeout_ms * 1000000;
    c->idle = 1;
    int rc_ctl = epoll_ctl(s->epfd, kept ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev);
    pthread_mutex_unlock(&s->lock);
    if (rc_ctl != 0)
        close_conn(s, c); /* not handed over: still ours */
}

static void *serve_main(void *arg)
{
    nori_fcgi_server *s = arg;
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
    while (!stopping(s)) {
        struct epoll_event ev;
        int n = epoll_wait(s->epfd, &ev, 1, -1);
        if (n < 0 && errno != EINTR)
            break;
        if (n <= 0 || stopping(s))
            continue;
        if (ev.data.ptr == &s->stop_fd) {
            break; /* stays readable: every thread sees it */
        } else if (ev.data.ptr == &s->listen_fd) {
            conn *c = accept_conn(s);
            if (c != NULL)
                serve_conn(s, c, 0);
        } else {
            serve_conn(s, ev.data.ptr, 1);
        }
    }
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
        pthread_join(s->threads[i], NULL);
    /* The threads are gone: what is left are idle kept connections. */
    while (s->conns != NULL)
        close_conn(s, s->conns);
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
    if (s->epfd >= 0)
        close(s->epfd);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s->unix_path);
    free(s->allowed);
    free(s->threads);
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
    s->epfd = -1;
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
    if ((s->threads = calloc(o.threads, sizeof *s->threads)) == NULL)
        goto fail;
    rc = NORI_EBACKEND;
    /* Several threads (and processes) wait on one listener: each accept
     * must fail with EAGAIN, not block, when another took the connection. */
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        nori_set_error(rc, "fcgi_server_new: fd %d: %s", fd, strerror(errno));
        goto fail_quiet;
    }
    if ((s->stop_fd = eventfd(0, EFD_CLOEXEC)) < 0 ||
        (s->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        nori_set_error(rc, "fcgi_server_new: eventfd/epoll: %s", strerror(errno));
        goto fail_quiet;
    }
    /* EPOLLEXCLUSIVE: of the processes sharing the listener, a new
     * connection wakes one (or a few), not all. */
    struct epoll_event lev = {EPOLLIN | EPOLLEXCLUSIVE, {.ptr = &s->listen_fd}};
    struct epoll_event sev = {EPOLLIN, {.ptr = &s->stop_fd}};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &lev) != 0 ||
        epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->stop_fd, &sev) != 0) {
        nori_set_error(rc, "fcgi_server_new: fd %d cannot be waited on: %s", fd,
                       strerror(errno));
        goto fail_quiet;
    }
    s->n_threads = o.threads;
    if (pthread_create(&s->watchdog, NULL, watchdog_main, s) != 0) {
        nori_set_error(rc, "fcgi_server_new: cannot start the watchdog thread");
        goto fail_quiet;
    }
    s->watchdog_started = 1;
    for (size_t i = 0; i < o.threads; i++) {
        if (pthread_create(&s->threads[i], NULL, serve_main, s) != 0) {
            nori_set_error(rc, "fcgi_server_new: cannot start serving thread %zu", i);
            goto fail_quiet;
        }
        s->n_started++;
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
