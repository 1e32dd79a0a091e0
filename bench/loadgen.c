/*
 * loadgen: the bench's own HTTP/1.1 client, plain or TLS, one thread, epoll. bench/run compiles it
 * (cc -O2 ... -lssl -lcrypto) into its temporary directory; it is not part of the build.
 *
 *   loadgen -m hs   -p PORT -s [-c 32] -d SECONDS [-n MAX] [-R]
 *       New connections, each a full TLS handshake, one "Connection: close" GET, then the server's
 *       close. No session is ever offered (a fresh SSL object, no SSL_set_session): the server
 *       cannot resume. -R does the opposite (offers the last session: the positive control that
 *       shows the servers' counters do see resumption). Counts the handshakes the client saw
 *       resumed (SSL_session_reused) and prints them.
 *   loadgen -m rate -p PORT [-s] -c CONNS -r RATE -d SECONDS [-w WARMUP]
 *       Open loop at a fixed request rate over CONNS keep-alive connections: request k is due at
 *       start + k/RATE (epoll_pwait2, nanosecond timeouts) and goes out on an idle connection.
 *       Latency runs from the request's write to the last byte of the response; requests sent
 *       more than 1 ms after their due time are counted ("late"), so a client that fell behind
 *       shows. Percentiles from every sample after the warm-up.
 *   loadgen -m idle -p PORT -s -n CONNS [-c 64] [-d OPEN_LIMIT] [-H HOLD]
 *       Opens CONNS keep-alive connections (handshake and one GET each, -c at a time), prints a
 *       JSON line, then holds them, idle, until stdin closes or HOLD seconds pass, and prints how
 *       many the server closed meanwhile.
 *
 * Common: -h HOST (127.0.0.1), -u PATH (/128), -N SNI name (bench.test), -t per-exchange timeout
 * in ms (5000). Only 200 responses with their whole body count; anything else is an error.
 * Every loop is bounded by time (-d) and count (-n). Output: one JSON object per line on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { M_HS, M_RATE, M_IDLE };
enum state { S_FREE, S_CONNECT, S_HANDSHAKE, S_SEND, S_RECV, S_DRAIN, S_IDLE };

#define HEAD_MAX 4096

struct conn {
    int fd;
    SSL *ssl;
    enum state st;
    uint32_t ev;        /* epoll interest now */
    size_t woff;        /* request bytes written */
    char head[HEAD_MAX];
    size_t hlen;        /* head bytes kept (until the blank line) */
    long body_left;     /* -1: head not complete */
    int status;
    double t_send, deadline;
    int idle_next;      /* rate: free list */
};

static struct {
    enum mode mode;
    const char *host, *path, *sni;
    int port, tls, conns, resume;
    double seconds, warmup, hold, timeout;
    long max, rate;
} opt = {M_HS, "127.0.0.1", "/128", "bench.test", 0, 0, 32, 0, 5, 1, 600, 5, 0, 0};

static struct sockaddr_in addr;
static SSL_CTX *ctx;
static SSL_SESSION *saved; /* -R only */
static int ep;
static struct conn *conns;
static char req[512];
static size_t reqlen;
static char rbuf[65536];

static struct {
    long started, ok, errors, handshakes, resumed, closed_by_server, late, sent;
    long err_connect, err_tls, err_status, err_io, err_timeout;
    char proto[32], cipher[64], keytype[16];
    int keybits;
} st;

static double *lat;
static size_t nlat, caplat;

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
die(const char *what)
{
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void
set_events(struct conn *c, uint32_t ev)
{
    if (c->ev == ev)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(ep, c->ev == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c->fd, &e) < 0)
        die("epoll_ctl");
    c->ev = ev;
}

static void
conn_close(struct conn *c)
{
    if (c->ssl != NULL) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0)
        close(c->fd); /* leaves the epoll set with it */
    c->fd = -1;
    c->ev = 0;
    c->st = S_FREE;
}

static int
conn_open(struct conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        st.err_connect++;
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->ev = 0;
    c->st = S_CONNECT;
    c->deadline = now() + opt.timeout;
    st.started++;
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 && errno != EINPROGRESS) {
        st.err_connect++;
        close(c->fd);
        c->fd = -1;
        c->st = S_FREE;
        return -1;
    }
    set_events(c, EPOLLOUT);
    return 0;
}

static void
start_request(struct conn *c)
{
    c->woff = 0;
    c->hlen = 0;
    c->body_left = -1;
    c->status = 0;
    c->st = S_SEND;
    c->t_send = now();
    c->deadline = c->t_send + opt.timeout;
    st.sent++;
}

/* Connected (and through the handshake): rate mode parks the connection until its request is
 * due; the other modes send at once. */
static void
connection_ready(struct conn *c)
{
    if (opt.mode == M_RATE) {
        c->st = S_IDLE;
        set_events(c, EPOLLIN);
        return;
    }
    start_request(c);
}

/* 1: the whole response is in; 0: more to come; -1: malformed */
static int
feed(struct conn *c, const char *p, size_t n)
{
    if (c->body_left < 0) {
        size_t take = n;
        if (c->hlen + take > HEAD_MAX - 1)
            take = HEAD_MAX - 1 - c->hlen;
        memcpy(c->head + c->hlen, p, take);
        size_t old = c->hlen;
        c->hlen += take;
        c->head[c->hlen] = 0;
        char *end = strstr(c->head, "\r\n\r\n");
        if (end == NULL)
            return c->hlen >= HEAD_MAX - 1 ? -1 : 0;
        size_t headlen = (size_t)(end - c->head) + 4;
        if (sscanf(c->head, "HTTP/1.%*d %d", &c->status) != 1)
            return -1;
        long cl = -1;
        for (char *l = strstr(c->head, "\r\n"); l != NULL && l < end; l = strstr(l + 2, "\r\n")) {
            if (strncasecmp(l + 2, "content-length:", 15) == 0)
                cl = strtol(l + 17, NULL, 10);
        }
        if (cl < 0)
            return -1; /* the bench's upstream always sends Content-Length */
        size_t consumed = headlen - old; /* bytes of this chunk that belonged to the head */
        c->body_left = cl - (long)(n - consumed);
    } else {
        c->body_left -= (long)n;
    }
    if (c->body_left < 0)
        return -1; /* more than announced: not what one GET should get */
    return c->body_left == 0;
}

static void fail(struct conn *c, long *counter);
static void response_done(struct conn *c);
static void step(struct conn *c);

static void
fail(struct conn *c, long *counter)
{
    (*counter)++;
    st.errors++;
    conn_close(c);
}

static int
tls_want(struct conn *c, int r, long *counter)
{
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        set_events(c, EPOLLIN);
        return 0;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        set_events(c, EPOLLOUT);
        return 0;
    }
    ERR_clear_error();
    fail(c, counter);
    return -1;
}

static void
handshake_done(struct conn *c)
{
    st.handshakes++;
    if (SSL_session_reused(c->ssl))
        st.resumed++;
    if (st.proto[0] == 0) {
        snprintf(st.proto, sizeof(st.proto), "%s", SSL_get_version(c->ssl));
        snprintf(st.cipher, sizeof(st.cipher), "%s", SSL_get_cipher_name(c->ssl));
        X509 *cert = SSL_get0_peer_certificate(c->ssl);
        EVP_PKEY *k = cert ? X509_get0_pubkey(cert) : NULL;
        if (k != NULL) {
            int id = EVP_PKEY_get_base_id(k);
            snprintf(st.keytype, sizeof(st.keytype), "%s",
                     id == EVP_PKEY_EC ? "ECDSA" : id == EVP_PKEY_RSA ? "RSA" : "other");
            st.keybits = EVP_PKEY_get_bits(k);
        }
    }
}

/* Drive one connection as far as it goes without blocking. */
static void
step(struct conn *c)
{
    for (;;) {
        switch (c->st) {
        case S_FREE:
        case S_IDLE:
            return;
        case S_CONNECT: {
            int err = 0;
            socklen_t l = sizeof(err);
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
            if (err != 0) {
                fail(c, &st.err_connect);
                return;
            }
            if (!opt.tls) {
                connection_ready(c);
                break;
            }
            c->ssl = SSL_new(ctx);
            SSL_set_fd(c->ssl, c->fd);
            SSL_set_tlsext_host_name(c->ssl, opt.sni);
            if (opt.resume && saved != NULL)
                SSL_set_session(c->ssl, saved);
            SSL_set_connect_state(c->ssl);
            c->st = S_HANDSHAKE;
            break;
        }
        case S_HANDSHAKE: {
            int r = SSL_do_handshake(c->ssl);
            if (r != 1) {
                tls_want(c, r, &st.err_tls);
                return;
            }
            handshake_done(c);
            connection_ready(c);
            break;
        }
        case S_SEND: {
            while (c->woff < reqlen) {
                ssize_t w;
                if (c->ssl != NULL) {
                    int r = SSL_write(c->ssl, req + c->woff, (int)(reqlen - c->woff));
                    if (r <= 0) {
                        tls_want(c, r, &st.err_io);
                        return;
                    }
                    w = r;
                } else {
                    w = send(c->fd, req + c->woff, reqlen - c->woff, MSG_NOSIGNAL);
                    if (w < 0) {
                        if (errno == EAGAIN) {
                            set_events(c, EPOLLOUT);
                            return;
                        }
                        fail(c, &st.err_io);
                        return;
                    }
                }
                c->woff += (size_t)w;
            }
            c->st = S_RECV;
            set_events(c, EPOLLIN);
            break;
        }
        case S_RECV:
        case S_DRAIN: {
            ssize_t n;
            if (c->ssl != NULL) {
                int r = SSL_read(c->ssl, rbuf, sizeof(rbuf));
                if (r <= 0) {
                    int e = SSL_get_error(c->ssl, r);
                    if (e == SSL_ERROR_ZERO_RETURN) {
                        n = 0;
                    } else {
                        tls_want(c, r, &st.err_io);
                        return;
                    }
                } else {
                    n = r;
                }
            } else {
                n = recv(c->fd, rbuf, sizeof(rbuf), 0);
                if (n < 0) {
                    if (errno == EAGAIN) {
                        set_events(c, EPOLLIN);
                        return;
                    }
                    fail(c, &st.err_io);
                    return;
                }
            }
            if (c->st == S_DRAIN) {
                if (n == 0) { /* the server closed, as "Connection: close" asked */
                    if (c->ssl != NULL) /* a clean end: the session stays resumable (-R) */
                        SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
                    conn_close(c);
                    return;
                }
                fail(c, &st.err_io); /* bytes after the response */
                return;
            }
            if (n == 0) {
                fail(c, &st.err_io);
                return;
            }
            int done = feed(c, rbuf, (size_t)n);
            if (done < 0) {
                fail(c, &st.err_status);
                return;
            }
            if (done) {
                if (c->status != 200) {
                    fail(c, &st.err_status);
                    return;
                }
                response_done(c);
                if (c->st != S_RECV && c->st != S_DRAIN)
                    return;
            }
            break;
        }
        }
    }
}

static double t_measure; /* rate: samples before this are warm-up */
static int idle_head = -1;

static void
response_done(struct conn *c)
{
    double t = now();
    st.ok++;
    switch (opt.mode) {
    case M_HS:
        if (opt.resume && c->ssl != NULL) {
            SSL_SESSION *s = SSL_get1_session(c->ssl);
            if (s != NULL && SSL_SESSION_is_resumable(s)) {
                if (saved != NULL)
                    SSL_SESSION_free(saved);
                saved = s;
            } else if (s != NULL) {
                SSL_SESSION_free(s);
            }
        }
        c->st = S_DRAIN;
        c->deadline = t + opt.timeout;
        break;
    case M_RATE:
        if (c->t_send >= t_measure) {
            if (nlat == caplat) {
                caplat = caplat ? caplat * 2 : 65536;
                lat = realloc(lat, caplat * sizeof(*lat));
                if (lat == NULL)
                    die("realloc");
            }
            lat[nlat++] = t - c->t_send;
        }
        c->st = S_IDLE;
        c->idle_next = idle_head;
        idle_head = (int)(c - conns);
        break;
    case M_IDLE:
        c->st = S_IDLE; /* EPOLLIN stays: a close by the server is seen */
        break;
    }
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double
pct(double p)
{
    if (nlat == 0)
        return -1;
    size_t i = (size_t)(p / 100.0 * (double)(nlat - 1) + 0.5);
    return lat[i] * 1e6;
}

static void
print_common(void)
{
    printf("\"started\":%ld,\"ok\":%ld,\"errors\":%ld,\"err_connect\":%ld,\"err_tls\":%ld,"
           "\"err_status\":%ld,\"err_io\":%ld,\"err_timeout\":%ld,\"handshakes\":%ld,"
           "\"resumed\":%ld,\"tls_version\":\"%s\",\"cipher\":\"%s\",\"key\":\"%s\","
           "\"key_bits\":%d",
           st.started, st.ok, st.errors, st.err_connect, st.err_tls, st.err_status, st.err_io,
           st.err_timeout, st.handshakes, st.resumed, st.proto, st.cipher, st.keytype, st.keybits);
}

/* Close connections whose exchange has taken longer than -t. */
static void
reap(double t)
{
    for (int i = 0; i < opt.conns; i++) {
        struct conn *c = &conns[i];
        if (c->st != S_FREE && c->st != S_IDLE && t > c->deadline)
            fail(c, &st.err_timeout);
    }
}

static int
wait_events(struct epoll_event *evs, int max, double timeout_s)
{
    struct timespec ts;
    if (timeout_s < 0)
        timeout_s = 0;
    ts.tv_sec = (time_t)timeout_s;
    ts.tv_nsec = (long)((timeout_s - (double)ts.tv_sec) * 1e9);
    int n = epoll_pwait2(ep, evs, max, &ts, NULL);
    if (n < 0 && errno != EINTR)
        die("epoll_pwait2");
    return n < 0 ? 0 : n;
}

static void
run_hs(void)
{
    struct epoll_event evs[256];
    double t0 = now(), end = t0 + opt.seconds, last_reap = t0;
    for (;;) {
        double t = now();
        int stopping = t >= end || st.started >= opt.max;
        int busy = 0;
        for (int i = 0; i < opt.conns; i++) {
            if (conns[i].st == S_FREE && !stopping)
                conn_open(&conns[i]); /* EPOLLOUT says when the connect is done */
            busy += conns[i].st != S_FREE;
        }
        if (stopping && busy == 0)
            break;
        if (t > end + opt.timeout + 1)
            break; /* bounded even if the server never closes */
        int n = wait_events(evs, 256, 0.05);
        for (int i = 0; i < n; i++)
            step(evs[i].data.ptr);
        if (t - last_reap > 0.1) {
            reap(t);
            last_reap = t;
        }
    }
    double el = now() - t0;
    printf("{\"mode\":\"hs\",\"seconds\":%.3f,\"rate\":%.1f,", el, st.ok / el);
    print_common();
    printf("}\n");
}

static void
run_rate(void)
{
    struct epoll_event evs[256];
    /* connect everything first (not measured) */
    for (int i = 0; i < opt.conns; i++)
        conn_open(&conns[i]);
    double setup_end = now() + opt.timeout;
    for (;;) {
        int ready = 0;
        for (int i = 0; i < opt.conns; i++)
            ready += conns[i].st == S_IDLE;
        if (ready == opt.conns || now() > setup_end)
            break;
        int n = wait_events(evs, 256, 0.05);
        for (int i = 0; i < n; i++)
            step(evs[i].data.ptr);
    }
    for (int i = opt.conns - 1; i >= 0; i--) {
        if (conns[i].st == S_IDLE) {
            conns[i].idle_next = idle_head;
            idle_head = i;
        }
    }
    if (idle_head < 0) {
        printf("{\"mode\":\"rate\",\"fatal\":\"no connection\",");
        print_common();
        printf("}\n");
        return;
    }
    double t0 = now(), end = t0 + opt.warmup + opt.seconds, last_reap = t0;
    t_measure = t0 + opt.warmup;
    long k = 0, backlog = 0;
    for (;;) {
        double t = now();
        if (t >= end)
            break;
        while (t0 + (double)k / (double)opt.rate <= t && k < opt.max) {
            backlog++;
            k++;
        }
        while (backlog > 0 && idle_head >= 0) {
            struct conn *c = &conns[idle_head];
            idle_head = c->idle_next;
            double due = t0 + (double)(k - backlog) / (double)opt.rate;
            backlog--;
            start_request(c);
            if (c->t_send - due > 0.001 && c->t_send >= t_measure)
                st.late++;
            step(c);
        }
        double next = t0 + (double)k / (double)opt.rate;
        double wait = backlog > 0 ? 0.001 : next - now();
        if (wait > 0.05)
            wait = 0.05;
        int n = wait_events(evs, 256, wait);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->st == S_IDLE) { /* the server closed an idle keep-alive connection */
                st.closed_by_server++;
                st.errors++;
                conn_close(c);
                continue;
            }
            step(c);
        }
        if (t - last_reap > 0.1) {
            reap(t);
            last_reap = t;
        }
    }
    qsort(lat, nlat, sizeof(*lat), cmp_double);
    printf("{\"mode\":\"rate\",\"target_rate\":%ld,\"rate\":%.1f,\"samples\":%zu,\"late\":%ld,"
           "\"backlog_at_end\":%ld,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,"
           "\"p999_us\":%.1f,\"max_us\":%.1f,",
           opt.rate, (double)nlat / opt.seconds, nlat, st.late, backlog, pct(50), pct(90),
           pct(99), pct(99.9), nlat ? lat[nlat - 1] * 1e6 : -1.0);
    print_common();
    printf("}\n");
}

static void
run_idle(void)
{
    struct epoll_event evs[256];
    int inflight_max = opt.conns; /* -c: handshakes at once */
    long target = opt.max;
    conns = calloc((size_t)target, sizeof(*conns));
    if (conns == NULL)
        die("calloc");
    for (long i = 0; i < target; i++)
        conns[i].fd = -1;
    long next = 0, open_ok = 0;
    double t0 = now(), end = t0 + opt.seconds, last_reap = t0;
    long attempts_left = target + 1000; /* bounded retries of failed slots */
    for (;;) {
        double t = now();
        int inflight = 0;
        open_ok = 0;
        for (long i = 0; i < next; i++) {
            inflight += conns[i].st != S_FREE && conns[i].st != S_IDLE;
            open_ok += conns[i].st == S_IDLE;
        }
        if (open_ok >= target || t >= end)
            break;
        for (long i = 0; i < next && inflight < inflight_max && attempts_left > 0; i++) {
            if (conns[i].st == S_FREE) { /* a failed one: try again */
                attempts_left--;
                if (conn_open(&conns[i]) == 0)
                    inflight++;
            }
        }
        while (next < target && inflight < inflight_max && attempts_left > 0) {
            attempts_left--;
            if (conn_open(&conns[next]) == 0)
                inflight++;
            next++;
        }
        if (inflight == 0 && (next >= target || attempts_left <= 0)) {
            int any_free = 0; /* failed slots left to retry? */
            for (long i = 0; i < next && !any_free; i++)
                any_free = conns[i].st == S_FREE;
            if (!any_free || attempts_left <= 0)
                break;
        }
        int n = wait_events(evs, 256, 0.05);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->st == S_IDLE) {
                st.closed_by_server++;
                conn_close(c);
                continue;
            }
            step(c);
        }
        if (t - last_reap > 0.2) {
            for (long i = 0; i < next; i++) {
                struct conn *c = &conns[i];
                if (c->st != S_FREE && c->st != S_IDLE && t > c->deadline)
                    fail(c, &st.err_timeout);
            }
            last_reap = t;
        }
    }
    double el = now() - t0;
    printf("{\"mode\":\"idle\",\"phase\":\"open\",\"open\":%ld,\"seconds\":%.3f,", open_ok, el);
    print_common();
    printf("}\n");
    fflush(stdout);

    /* hold, idle, until stdin closes or -H passes */
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &e);
    double hold_end = now() + opt.hold;
    int stop = 0;
    while (!stop && now() < hold_end) {
        int n = wait_events(evs, 256, 0.2);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL) {
                char b[64];
                if (read(0, b, sizeof(b)) <= 0)
                    stop = 1;
                continue;
            }
            if (c->st == S_IDLE) {
                st.closed_by_server++;
                conn_close(c);
            }
        }
    }
    printf("{\"mode\":\"idle\",\"phase\":\"held\",\"closed_by_server\":%ld}\n",
           st.closed_by_server);
}

static void
usage(void)
{
    fprintf(stderr, "usage: loadgen -m hs|rate|idle -p PORT [-h HOST] [-u PATH] [-s] [-c N] "
                    "[-d S] [-n MAX] [-r RATE] [-w S] [-H S] [-t MS] [-N SNI] [-R]\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    int ch;
    while ((ch = getopt(argc, argv, "m:h:p:u:sc:d:n:r:w:H:t:N:R")) != -1) {
        switch (ch) {
        case 'm':
            opt.mode = strcmp(optarg, "hs") == 0     ? M_HS
                       : strcmp(optarg, "rate") == 0 ? M_RATE
                       : strcmp(optarg, "idle") == 0 ? M_IDLE
                                                     : (usage(), M_HS);
            break;
        case 'h': opt.host = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case 'u': opt.path = optarg; break;
        case 's': opt.tls = 1; break;
        case 'c': opt.conns = atoi(optarg); break;
        case 'd': opt.seconds = atof(optarg); break;
        case 'n': opt.max = atol(optarg); break;
        case 'r': opt.rate = atol(optarg); break;
        case 'w': opt.warmup = atof(optarg); break;
        case 'H': opt.hold = atof(optarg); break;
        case 't': opt.timeout = atof(optarg) / 1000.0; break;
        case 'N': opt.sni = optarg; break;
        case 'R': opt.resume = 1; break;
        default: usage();
        }
    }
    if (opt.port <= 0 || opt.conns <= 0 || opt.seconds <= 0 || (opt.mode == M_RATE && opt.rate <= 0) ||
        (opt.mode == M_IDLE && opt.max <= 0) || (opt.mode == M_HS && !opt.tls))
        usage();
    if (opt.max <= 0)
        opt.max = 1L << 40;
    if (opt.seconds > 3600)
        opt.seconds = 3600;
    if (opt.hold > 3600)
        opt.hold = 3600;
    signal(SIGPIPE, SIG_IGN);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)opt.port);
    if (inet_pton(AF_INET, opt.host, &addr.sin_addr) != 1)
        usage();
    reqlen = (size_t)snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", opt.path,
                              opt.sni, opt.mode == M_HS ? "Connection: close\r\n" : "");

    if (opt.tls) {
        ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* throwaway self-signed certificates */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
        SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
        static const unsigned char alpn[] = "\x08http/1.1";
        SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1);
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    if (opt.mode != M_IDLE) {
        conns = calloc((size_t)opt.conns, sizeof(*conns));
        if (conns == NULL)
            die("calloc");
        for (int i = 0; i < opt.conns; i++)
            conns[i].fd = -1;
    }
    switch (opt.mode) {
    case M_HS: run_hs(); break;
    case M_RATE: run_rate(); break;
    case M_IDLE: run_idle(); break;
    }
    fflush(stdout);
    return 0;
}
