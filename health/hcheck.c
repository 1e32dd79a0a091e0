/*
 * hcheck: the connection every check kind shares (connect, optional TLS, a timeout covering the
 * whole check), the verdicts of its failures, and the tcp and tls kinds, which are done as soon as
 * the connection (and handshake) is up.
 */
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "hcheck.h"
#include "http.h"
#include "tls.h"
#include "tls_upstream.h"

#define BODY_MAX 16384 /* expect_body looks at this much of a body at most */

enum hc_phase {
    HC_CONNECTING, /* TCP connect, and the TLS handshake for TLS */
    HC_TALKING,    /* connected: the kind's exchange (http) */
    HC_DONE,       /* verdict delivered */
};

struct hcheck {
    enum hc_phase phase;
    const struct hcheck_ops *ops;
    struct hcheck_target t;
    struct bufferevent *bev;
    struct event *timer;
    uint64_t start_us;
    hcheck_done_cb cb;
    void *arg;
    enum check_reason early; /* a failure found inside hcheck_start, delivered from the loop */
    struct http_msg resp;
    char *body;
    size_t body_len;
};

static void
done_now(struct hcheck *c, enum check_reason verdict, int status)
{
    if (c->phase == HC_DONE)
        return;
    c->phase = HC_DONE;
    if (c->bev != NULL)
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    evtimer_del(c->timer);
    c->cb(c->arg, verdict, status, clock_mono_us() - c->start_us);
}

void
hcheck_finish(struct hcheck *c, enum check_reason verdict, int status)
{
    done_now(c, verdict, status);
}

static void
ok_when_connected(struct hcheck *c)
{
    hcheck_finish(c, CHECK_OK, 0);
}

static void
nothing(struct hcheck *c)
{
}

/* tcp and tls: the connection (with its handshake) is the whole check. */
static const struct hcheck_ops connect_ops = {
    .connected = ok_when_connected,
    .readable = nothing,
    .eof = nothing,
};

static void
read_cb(struct bufferevent *bev, void *arg)
{
    struct hcheck *c = arg;

    if (c->phase == HC_TALKING)
        c->ops->readable(c);
}

static enum check_reason
connect_failure(struct hcheck *c)
{
    int err = EVUTIL_SOCKET_ERROR();

    if (c->t.tls != NULL && bufferevent_get_openssl_error(c->bev) != 0)
        return CHECK_L6_HANDSHAKE;
    return err == ECONNREFUSED ? CHECK_L4_REFUSED : CHECK_L4_ERROR;
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct hcheck *c = arg;

    if (c->phase == HC_CONNECTING && (what & BEV_EVENT_CONNECTED)) {
        c->phase = HC_TALKING;
        c->ops->connected(c);
    } else if (c->phase == HC_CONNECTING) {
        hcheck_finish(c, connect_failure(c), 0);
    } else if (c->phase == HC_TALKING && (what & BEV_EVENT_EOF)) {
        c->ops->eof(c);
    } else if (c->phase == HC_TALKING) {
        hcheck_finish(c, CHECK_L4_ERROR, 0);
    }
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hcheck *c = arg;

    if (c->early != CHECK_OK)
        hcheck_finish(c, c->early, 0);
    else
        hcheck_finish(c, c->phase == HC_CONNECTING ? CHECK_L4_TIMEOUT : CHECK_L7_TIMEOUT, 0);
}

static struct bufferevent *
open_bev(struct event_base *base, struct hcheck *c)
{
    int fd = socket(c->t.addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct bufferevent *bev = NULL;
    SSL *ssl;

    if (fd < 0)
        return NULL;
    if (c->t.tls == NULL) {
        bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    } else if ((ssl = tls_client_ssl_new(c->t.tls, c->t.tls_name, c->t.tls_session)) != NULL) {
        bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE);
        if (bev == NULL)
            SSL_free(ssl);
        else
            bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    }
    if (bev == NULL)
        close(fd);
    return bev;
}

struct hcheck *
hcheck_start(struct event_base *base, const struct hcheck_target *t, hcheck_done_cb cb, void *arg)
{
    struct hcheck *c = calloc(1, sizeof(*c));
    struct timeval tv;

    if (c == NULL)
        return NULL;
    c->t = *t;
    c->cb = cb;
    c->arg = arg;
    c->start_us = clock_mono_us();
    c->ops = t->hc->type == CHECK_HTTP ? &hcheck_http_ops : &connect_ops;
    c->timer = evtimer_new(base, timer_cb, c);
    if (c->timer == NULL) {
        free(c);
        return NULL;
    }
    http_msg_init(&c->resp, HTTP_RESPONSE, 16384, 100);
    tv = clock_tv_ms(t->hc->timeout_ms);
    c->bev = open_bev(base, c);
    if (c->bev != NULL) {
        bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
        if (bufferevent_socket_connect(c->bev, (const struct sockaddr *)&t->addr.ss,
                                       (int)t->addr.len) == 0) {
            bufferevent_enable(c->bev, EV_READ | EV_WRITE);
            evtimer_add(c->timer, &tv);
            return c;
        }
    }
    /* Could not even start: report from the loop, as every other verdict. */
    c->early = CHECK_L4_ERROR;
    tv = clock_tv_ms(0);
    evtimer_add(c->timer, &tv);
    return c;
}

void
hcheck_free(struct hcheck *c)
{
    if (c == NULL)
        return;
    if (c->bev != NULL) {
        tls_keep_session(c->bev);
        bufferevent_free(c->bev);
    }
    event_free(c->timer);
    http_msg_release(&c->resp);
    free(c->body);
    free(c);
}

struct bufferevent *
hcheck_bev(struct hcheck *c)
{
    return c->bev;
}

const struct hcheck_target *
hcheck_target(const struct hcheck *c)
{
    return &c->t;
}

struct http_msg *
hcheck_http_msg(struct hcheck *c)
{
    return &c->resp;
}

char *
hcheck_body(struct hcheck *c, size_t *len, size_t *cap)
{
    if (c->body == NULL)
        c->body = malloc(BODY_MAX + 1);
    *len = c->body_len;
    *cap = BODY_MAX;
    return c->body;
}

void
hcheck_body_set_len(struct hcheck *c, size_t len)
{
    c->body_len = len;
}
