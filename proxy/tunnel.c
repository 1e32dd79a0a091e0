/*
 * tunnel: a client connection after a 101 Switching Protocols for a WebSocket upgrade. Bytes are
 * moved both ways as evbuffer chains (no copy, no parsing) with the same backpressure as bodies.
 * One idle timer covers both directions, so a stream that only pushes from the server stays up.
 * When either side closes, what the other side still has queued is flushed, then both close.
 */
#include <sys/socket.h>

#include "clock.h"
#include "config-t.h"
#include "conn_int.h"

static void
touch(struct conn *c)
{
    conn_arm_timer(c, c->cfg->timeouts.tunnel_idle_ms);
}

/* Client to server. */
static void
client_read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    c->x->bytes_in += evbuffer_get_length(in);
    evbuffer_add_buffer(bufferevent_get_output(c->up->bev), in);
    touch(c);
    conn_update_flow(c);
}

/* Server to client. */
static void
up_read(void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(c->up->bev);

    c->x->bytes_out += evbuffer_get_length(in);
    evbuffer_add_buffer(bufferevent_get_output(c->bev), in);
    touch(c);
    conn_update_flow(c);
}

static void
client_write_cb(struct bufferevent *bev, void *arg)
{
    conn_update_flow(arg);
}

/* The client closed: once the server has everything the client sent, close both. */
static void
up_drained(void *arg)
{
    struct conn *c = arg;

    if (c->client_eof && evbuffer_get_length(bufferevent_get_output(c->up->bev)) == 0)
        conn_close_now(c, REASON_NONE);
    else
        conn_update_flow(c);
}

static void
client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;

    if (!(what & BEV_EVENT_EOF) || (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))) {
        conn_close_now(c, (what & BEV_EVENT_TIMEOUT) ? REASON_CLIENT_SEND_TIMEOUT
                                                     : REASON_CLIENT_ABORTED);
        return;
    }
    c->client_eof = true;
    bufferevent_setwatermark(c->up->bev, EV_WRITE, 0, 0);
    up_drained(c);
}

/* The server closed (or failed): flush to the client what it sent, then close. */
static void
up_event(void *arg, short what)
{
    struct conn *c = arg;

    if (what & BEV_EVENT_TIMEOUT)
        c->x->reason = REASON_UPSTREAM_SEND_TIMEOUT;
    else if (what & BEV_EVENT_ERROR)
        c->x->reason = REASON_UPSTREAM_RESET;
    conn_close_after_flush(c);
}

static void
up_connected(void *arg)
{
    /* never: a tunnel starts on a connected upstream */
}

static const struct upstream_handler tunnel_upstream_handler = {
    .on_connected = up_connected,
    .on_read = up_read,
    .on_drained = up_drained,
    .on_event = up_event,
};

void
tunnel_start(struct conn *c)
{
    struct timeval csend = clock_tv_ms(c->cfg->timeouts.client_send_ms);
    struct timeval usend = clock_tv_ms(c->cfg->timeouts.upstream_send_ms);

    conn_set_state(c, CONN_TUNNEL);
    c->x->keep_alive = false;
    upstream_attach(c->up, &tunnel_upstream_handler, c);
    bufferevent_setcb(c->bev, client_read_cb, client_write_cb, client_event_cb, c);
    bufferevent_set_timeouts(c->bev, NULL, &csend);
    bufferevent_set_timeouts(c->up->bev, NULL, &usend);
    touch(c);
    /* Frames that arrived with the handshake, from either side, go first. */
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        client_read_cb(c->bev, c);
    if (c->state == CONN_TUNNEL && evbuffer_get_length(bufferevent_get_input(c->up->bev)) > 0)
        up_read(c);
    if (c->state == CONN_TUNNEL)
        conn_update_flow(c);
}
