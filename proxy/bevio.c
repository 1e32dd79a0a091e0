/*
 * bevio: see bevio.h. struct bufferevent's members are public in libevent 2.1
 * (event2/bufferevent_struct.h); only ev_read, ev_write and wm_read are used, the way
 * bufferevent_sock.c's own callbacks use them. A socket bufferevent keeps its input's end and its
 * output's start frozen outside its own I/O; these functions thaw them for theirs, as
 * bufferevent_sock.c does.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <errno.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "bevio.h"

/* The first read of a readiness: with libevent's chain header, one 32 KiB allocation, which takes
 * a 16 KiB response and its head at once. The allocation lives only while its bytes wait: chains
 * move whole between buffers and are freed once written. */
#define FIRST_READ (32768 - 128)
#define FLUSH_IOVECS 16

static bool
retriable(int err)
{
    return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

/* Read up to `want` bytes onto the end of `in` (thawed); returns what recv/readv returned. */
static ssize_t
read_into(struct evbuffer *in, evutil_socket_t fd, size_t want)
{
    struct evbuffer_iovec v[2];
    struct iovec io[2];
    ssize_t got;
    int err;
    int n = evbuffer_reserve_space(in, (ev_ssize_t)want, v, 2);

    if (n <= 0) {
        errno = ENOMEM;
        return -1;
    }
    io[0].iov_base = v[0].iov_base;
    io[0].iov_len = v[0].iov_len < want ? v[0].iov_len : want;
    if (n == 1 || io[0].iov_len == want) {
        n = 1;
        got = recv(fd, io[0].iov_base, io[0].iov_len, 0);
    } else {
        io[1].iov_base = v[1].iov_base;
        io[1].iov_len = want - io[0].iov_len < v[1].iov_len ? want - io[0].iov_len : v[1].iov_len;
        got = readv(fd, io, 2);
    }
    err = errno;
    if (got <= 0) {
        n = 0;
    } else if ((size_t)got <= io[0].iov_len) {
        v[0].iov_len = (size_t)got;
        n = 1;
    } else {
        v[0].iov_len = io[0].iov_len;
        v[1].iov_len = (size_t)got - io[0].iov_len;
    }
    evbuffer_commit_space(in, v, n);
    errno = err;
    return got;
}

/* As libevent ends reading: no more reads, and the event callback says why. */
static void
read_failed(struct bufferevent *bev, short what)
{
    bufferevent_disable(bev, EV_READ);
    bufferevent_trigger_event(bev, (short)(BEV_EVENT_READING | what), 0);
}

/* The read event's callback, in place of bufferevent_sock.c's bufferevent_readcb. */
static void
bevio_readcb(evutil_socket_t fd, short events, void *arg)
{
    struct bufferevent *bev = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    size_t high = bev->wm_read.high;
    size_t room = (size_t)bufferevent_get_max_single_read(bev);
    size_t want, rest;
    ssize_t got, more = 0;

    if (events == EV_TIMEOUT) { /* with EV_READ too, a read came in: the timeout does not count */
        read_failed(bev, BEV_EVENT_TIMEOUT);
        return;
    }
    if (high != 0) {
        if (len >= high) { /* the watermark went under the input: setting it again suspends */
            bufferevent_setwatermark(bev, EV_READ, bev->wm_read.low, high);
            return;
        }
        if (high - len < room)
            room = high - len;
    }
    want = room < FIRST_READ ? room : FIRST_READ;
    rest = room - want;
    evbuffer_unfreeze(in, 0);
    got = read_into(in, fd, want);
    if (got == (ssize_t)want && rest > 0)
        more = read_into(in, fd, rest); /* a full read: more may be waiting */
    evbuffer_freeze(in, 0);
    if (got < 0 && retriable(errno))
        return;
    /* The kernel reports a socket error once: a reset met by the second read would look like an
     * end on the next, and a response cut short could pass for a complete one. */
    if (got < 0 || (more < 0 && !retriable(errno))) {
        read_failed(bev, BEV_EVENT_ERROR);
        return;
    }
    if (got == 0) {
        read_failed(bev, BEV_EVENT_EOF);
        return;
    }
    bufferevent_trigger(bev, EV_READ, 0); /* an end met by the second read shows on the next */
}

void
bevio_own_reads(struct bufferevent *bev)
{
    struct event *ev = &bev->ev_read;
    bool reading = (bufferevent_get_enabled(bev) & EV_READ) != 0;

    if (reading)
        bufferevent_disable(bev, EV_READ); /* an event is assigned only while not added */
    event_assign(ev, event_get_base(ev), event_get_fd(ev), event_get_events(ev), bevio_readcb, bev);
    if (reading)
        bufferevent_enable(bev, EV_READ);
}

void
bevio_write_soon(struct bufferevent *bev)
{
    if (evbuffer_get_length(bufferevent_get_output(bev)) > 0 &&
        event_pending(&bev->ev_write, EV_WRITE, NULL))
        event_active(&bev->ev_write, EV_WRITE, 1);
}

/* One send(2) of the output's first chains: send, or sendmsg for several (no VFS layer, unlike
 * libevent's writev). */
static ssize_t
send_chains(struct evbuffer *out, evutil_socket_t fd)
{
    struct evbuffer_iovec v[FLUSH_IOVECS];
    struct iovec io[FLUSH_IOVECS];
    struct msghdr m = {.msg_iov = io};
    int n = evbuffer_peek(out, -1, NULL, v, FLUSH_IOVECS);

    if (n > FLUSH_IOVECS)
        n = FLUSH_IOVECS;
    if (n == 1)
        return send(fd, v[0].iov_base, v[0].iov_len, MSG_NOSIGNAL);
    for (int i = 0; i < n; i++) {
        io[i].iov_base = v[i].iov_base;
        io[i].iov_len = v[i].iov_len;
    }
    m.msg_iovlen = (size_t)n;
    return sendmsg(fd, &m, MSG_NOSIGNAL);
}

bool
bevio_flush(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    ssize_t put;

    if (evbuffer_get_length(out) == 0 || !(bufferevent_get_enabled(bev) & EV_WRITE))
        return false;
    put = send_chains(out, bufferevent_getfd(bev));
    if (put <= 0)
        return false; /* EAGAIN, or an error: the armed write event takes over and meets it */
    evbuffer_unfreeze(out, 1);
    evbuffer_drain(out, (size_t)put);
    evbuffer_freeze(out, 1);
    if (evbuffer_get_length(out) > 0)
        return false; /* a part left: the armed write event takes over */
    event_del(&bev->ev_write);
    return true;
}

void
bevio_tls_kick(struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);

    /* libevent's read callback itself does nothing while reading is disabled or suspended, and
     * a record only partly here costs one read(2) that finds the socket empty. */
    if (ssl != NULL && SSL_has_pending(ssl))
        event_active(&bev->ev_read, EV_READ, 1);
}

static void
tls_input_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    (void)info;
    bevio_tls_kick(arg);
}

void
bevio_tls_read_ahead(struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);

    if (ssl == NULL)
        return;
    SSL_set_read_ahead(ssl, 1);
    evbuffer_add_cb(bufferevent_get_input(bev), tls_input_cb, bev);
}

void
bevio_tls_handshake_done(struct bufferevent *bev)
{
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        event_del(&bev->ev_write);
    bevio_tls_kick(bev); /* a request may have come with the client's Finished */
}
