/*
 * upstream: a server connection's socket, its libevent callbacks, and routing those callbacks to
 * the current owner (a client connection's handler, or the pool while idle).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>

#include "clock.h"
#include "router.h"
#include "tls.h"
#include "tls_upstream.h"
#include "upstream.h"
#include "upstream_pool.h"
#include "bevio.h"

#define MAX_SINGLE_IO 65536 /* bytes per read(2)/write(2): fewer syscalls on large bodies */

static void
up_read_cb(struct bufferevent *bev, void *arg)
{
    struct upstream *u = arg;

    if (u->state == UPSTREAM_IDLE) {
        upstream_pool_drop(u->pool, u); /* a server has nothing to say on an idle connection */
        return;
    }
    u->h->on_read(u->arg);
}

static void
up_write_cb(struct bufferevent *bev, void *arg)
{
    struct upstream *u = arg;

    if (u->state == UPSTREAM_ACTIVE)
        u->h->on_drained(u->arg);
}

static void
up_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct upstream *u = arg;

    if (u->state == UPSTREAM_IDLE) {
        upstream_pool_drop(u->pool, u); /* closed by the server, or expired */
        return;
    }
    if ((what & BEV_EVENT_CONNECTED) && u->state == UPSTREAM_CONNECTING) {
        int one = 1;
        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (!upstream_is_tls(u))
            bevio_own_reads(bev);
        u->state = UPSTREAM_ACTIVE;
        u->h->on_connected(u->arg);
        return;
    }
    u->h->on_event(u->arg, what);
}

/* A plain or TLS bufferevent for the socket; TLS sends SNI and verifies the server's name. */
static struct bufferevent *
new_bev(struct event_base *base, int fd, struct upstream *u, const struct config *cfg)
{
    struct server_rt *s = u->server;
    int connect_ms = s->cluster->conf->connect_timeout_ms > 0 ? s->cluster->conf->connect_timeout_ms
                                                              : cfg->timeouts.upstream_connect_ms;
    struct timeval tv = clock_tv_ms(connect_ms);
    size_t high = (size_t)cfg->limits.buffer_bytes;
    struct bufferevent *bev;

    if (s->cluster->tls != NULL) {
        SSL *ssl = tls_client_ssl_new(s->cluster->tls, s->tls_name, &s->tls_session);
        if (ssl == NULL)
            return NULL;
        bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE);
        if (bev == NULL) {
            SSL_free(ssl);
            return NULL;
        }
        /* A server that closes without close_notify ends its stream; it is not an attack on
         * a response whose length is known. */
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    } else {
        bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (bev == NULL)
        return NULL;
    bufferevent_setcb(bev, up_read_cb, up_write_cb, up_event_cb, u);
    bufferevent_setwatermark(bev, EV_READ, 0, high);
    bufferevent_setwatermark(bev, EV_WRITE, high / 2, 0);
    bufferevent_set_max_single_read(bev, MAX_SINGLE_IO);
    bufferevent_set_max_single_write(bev, MAX_SINGLE_IO);
    /* While connecting, libevent applies the write timeout to the connect. */
    bufferevent_set_timeouts(bev, NULL, &tv);
    return bev;
}

struct upstream *
upstream_connect(struct event_base *base, struct server_rt *s, const struct config *cfg,
                 const struct upstream_handler *h, void *arg)
{
    const struct addr *a = &s->conf->addr;
    struct upstream *u = calloc(1, sizeof(*u));
    int fd = -1;

    if (u == NULL)
        return NULL;
    u->state = UPSTREAM_CONNECTING;
    u->server = s;
    fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    u->bev = new_bev(base, fd, u, cfg);
    if (u->bev == NULL)
        goto fail;
    fd = -1; /* the bufferevent owns it now */
    u->h = h;
    u->arg = arg;
    http_msg_init(&u->resp, HTTP_RESPONSE, (uint32_t)cfg->limits.max_response_header_bytes,
                  (uint32_t)cfg->limits.max_response_header_count);
    /* A refused connect on loopback may fail at once; libevent then reports it from the loop,
     * never from inside this call, so the caller sees one path for every failure. */
    if (bufferevent_socket_connect(u->bev, (const struct sockaddr *)&a->ss, (int)a->len) < 0)
        goto fail;
    bufferevent_enable(u->bev, EV_READ | EV_WRITE);
    return u;
fail:
    if (fd >= 0)
        close(fd);
    upstream_free(u);
    return NULL;
}

void
upstream_attach(struct upstream *u, const struct upstream_handler *h, void *arg)
{
    u->state = UPSTREAM_ACTIVE;
    u->h = h;
    u->arg = arg;
    u->pool = NULL;
    bufferevent_set_timeouts(u->bev, NULL, NULL);
}

void
upstream_set_handler(struct upstream *u, const struct upstream_handler *h, void *arg)
{
    u->h = h;
    u->arg = arg;
}

bool
upstream_is_tls(const struct upstream *u)
{
    return u->server->cluster->tls != NULL;
}

bool
upstream_tls_failed(const struct upstream *u)
{
    return upstream_is_tls(u) && bufferevent_get_openssl_error(u->bev) != 0;
}

void
upstream_abort(struct upstream *u)
{
    static const struct linger reset = {.l_onoff = 1, .l_linger = 0};

    if (u == NULL)
        return;
    /* With a zero linger time, close(2) sends RST instead of FIN. A failed setsockopt leaves
     * the ordinary close, which ends the message early too. */
    if (u->bev != NULL)
        (void)setsockopt(bufferevent_getfd(u->bev), SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
    upstream_free(u);
}

void
upstream_free(struct upstream *u)
{
    if (u == NULL)
        return;
    if (u->bev != NULL) {
        tls_keep_session(u->bev);
        bufferevent_free(u->bev);
    }
    http_msg_release(&u->resp);
    free(u);
}
