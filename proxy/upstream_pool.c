/*
 * upstream_pool: idle keep-alive connections of one server in one worker.
 */
#include <errno.h>
#include <sys/socket.h>

#include "clock.h"
#include "upstream.h"
#include "upstream_pool.h"

void
upstream_pool_init(struct upstream_pool *p, unsigned max, int idle_ms)
{
    TAILQ_INIT(&p->idle);
    p->nidle = 0;
    p->max = max;
    p->idle_ms = idle_ms;
}

void
upstream_pool_drop(struct upstream_pool *p, struct upstream *u)
{
    TAILQ_REMOVE(&p->idle, u, pool_link);
    p->nidle--;
    upstream_free(u);
}

/* The event loop may not yet have told us that the server closed the connection: ask the kernel.
 * Nothing readable (EAGAIN) is the only state in which a plain connection may carry a request. A
 * TLS server may legitimately send records on an idle connection (TLS 1.3 session tickets), so
 * there only end-of-file or an error disqualify it. */
static bool
still_open(struct upstream *u)
{
    char c;
    ssize_t n;

    if (evbuffer_get_length(bufferevent_get_input(u->bev)) > 0)
        return false;
    n = recv(bufferevent_getfd(u->bev), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0)
        return upstream_is_tls(u);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

struct upstream *
upstream_pool_take(struct upstream_pool *p, bool verify)
{
    struct upstream *u;

    while ((u = TAILQ_FIRST(&p->idle)) != NULL) {
        TAILQ_REMOVE(&p->idle, u, pool_link);
        p->nidle--;
        if (!verify ? evbuffer_get_length(bufferevent_get_input(u->bev)) == 0 : still_open(u))
            return u;
        upstream_free(u);
    }
    return NULL;
}

void
upstream_pool_put(struct upstream_pool *p, struct upstream *u)
{
    struct timeval idle = clock_tv_ms(p->idle_ms);

    if (p->nidle >= p->max) {
        upstream_free(u);
        return;
    }
    u->state = UPSTREAM_IDLE;
    u->h = NULL;
    u->arg = NULL;
    u->pool = p;
    /* Reading stays on so a close by the server is noticed; the read timeout expires it. */
    bufferevent_set_timeouts(u->bev, &idle, NULL);
    bufferevent_enable(u->bev, EV_READ);
    TAILQ_INSERT_HEAD(&p->idle, u, pool_link);
    p->nidle++;
}

void
upstream_pool_clear(struct upstream_pool *p)
{
    struct upstream *u;

    while ((u = TAILQ_FIRST(&p->idle)) != NULL)
        upstream_pool_drop(p, u);
}
