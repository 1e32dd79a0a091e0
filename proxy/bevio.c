/*
 * bevio: see bevio.h. struct bufferevent's members are public in libevent 2.1
 * (event2/bufferevent_struct.h); only ev_write is touched, the way bufferevent_sock.c's own
 * write callback does once its output is empty. A socket bufferevent keeps its input's end and
 * its output's start frozen outside its own I/O; these functions thaw them for theirs, as
 * bufferevent_sock.c does.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <errno.h>
#include <sys/uio.h>

#include "bevio.h"

#define LIBEVENT_MAX_READ 4096 /* EVBUFFER_MAX_READ in libevent 2.1's buffer.c */

int
bevio_read_more(struct bufferevent *bev, size_t room)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_iovec v[2];
    struct iovec io[2];
    int n;
    ssize_t got;

    if (room == 0 || evbuffer_get_length(in) < LIBEVENT_MAX_READ)
        return 0;
    evbuffer_unfreeze(in, 0);
    n = evbuffer_reserve_space(in, (ev_ssize_t)room, v, 2);
    if (n <= 0) {
        evbuffer_freeze(in, 0);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        io[i].iov_base = v[i].iov_base;
        io[i].iov_len = v[i].iov_len;
    }
    got = readv(bufferevent_getfd(bev), io, n);
    if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        /* the kernel reports a socket error once: libevent's next read would see an end */
        evbuffer_commit_space(in, v, 0);
        evbuffer_freeze(in, 0);
        return -1;
    }
    if (got <= 0) { /* nothing more now; an end shows on libevent's next read */
        evbuffer_commit_space(in, v, 0);
    } else {
        if ((size_t)got <= v[0].iov_len) {
            v[0].iov_len = (size_t)got;
            n = 1;
        } else {
            v[1].iov_len = (size_t)got - v[0].iov_len;
        }
        evbuffer_commit_space(in, v, n);
    }
    evbuffer_freeze(in, 0);
    return 0;
}

void
bevio_write_soon(struct bufferevent *bev)
{
    if (evbuffer_get_length(bufferevent_get_output(bev)) > 0 &&
        event_pending(&bev->ev_write, EV_WRITE, NULL))
        event_active(&bev->ev_write, EV_WRITE, 1);
}

bool
bevio_flush(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);

    int rc;

    if (evbuffer_get_length(out) == 0 || !(bufferevent_get_enabled(bev) & EV_WRITE))
        return false;
    evbuffer_unfreeze(out, 1);
    rc = evbuffer_write(out, bufferevent_getfd(bev));
    evbuffer_freeze(out, 1);
    if (rc < 0 || evbuffer_get_length(out) > 0)
        return false; /* EAGAIN or a part left: the armed write event takes over */
    event_del(&bev->ev_write);
    return true;
}
