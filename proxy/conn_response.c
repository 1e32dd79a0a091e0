/*
 * conn_response: the server side of a client connection's exchange. Reads the response head (1xx
 * relayed on the way), decides the framing towards the client, streams the body with backpressure,
 * and turns server failures into 502/504 or a cut response. A reused keep-alive connection that the
 * server closed before answering is retried once on a fresh connection, because that race is
 * inherent to HTTP/1.1 keep-alive and not a failure of the request.
 */
#include <stdbool.h>

#include "clock.h"
#include "config-t.h"
#include "conn_int.h"
#include "headers.h"
#include "log.h"
#include "rewrite.h"
#include "router.h"
#include "tls.h"
#include "worker.h"

#define MAX_INTERIM 8 /* 1xx responses relayed for one request before the server is refused */

static struct evbuffer *
client_out(struct conn *c)
{
    return bufferevent_get_output(c->bev);
}

static void
response_complete(struct conn *c)
{
    c->resp_phase = RESP_DONE;
    conn_exchange_done(c);
}

static void
pump_response(struct conn *c)
{
    struct evbuffer *out = client_out(c);
    size_t before = evbuffer_get_length(out);
    enum body_step st = body_pump(&c->x.resp_body, bufferevent_get_input(c->up->bev), out);

    c->x.bytes_out += evbuffer_get_length(out) - before;
    switch (st) {
    case BODY_AGAIN: conn_update_flow(c); return;
    case BODY_DONE: response_complete(c); return;
    case BODY_ERR_SYNTAX:
    case BODY_ERR_LIMIT: conn_fail(c, 502, REASON_UPSTREAM_BAD_RESPONSE); return;
    }
}

static int
write_head(struct conn *c, const struct rewrite_response_ctx *ctx)
{
    struct evbuffer *out = client_out(c);
    size_t before = evbuffer_get_length(out);
    int rc = rewrite_response(&c->up->resp, ctx, out);

    c->x.bytes_out += evbuffer_get_length(out) - before;
    return rc;
}

/* Response framing (RFC 9112 section 6.3). Only "chunked" is accepted as a transfer coding: another
 * one would be lost when trident re-frames the body. Returns -1 for a response to refuse. */
static int
response_body_kind(const struct conn *c, enum body_kind *kind)
{
    const struct http_msg *m = &c->up->resp;
    const llhttp_t *p = &m->parser;
    int status = p->status_code;

    if (c->req.parser.method == HTTP_HEAD || status == 204 || status == 304) {
        *kind = BODY_NONE;
        return 0;
    }
    if (p->flags & F_TRANSFER_ENCODING) {
        if ((p->flags & F_CONTENT_LENGTH) || !headers_te_is_chunked(m))
            return -1;
        *kind = BODY_CHUNKED;
    } else if (p->flags & F_CONTENT_LENGTH) {
        *kind = p->content_length > 0 ? BODY_LENGTH : BODY_NONE;
    } else {
        *kind = BODY_UNTIL_EOF;
    }
    return 0;
}

static void
on_final_head(struct conn *c)
{
    const llhttp_t *p = &c->up->resp.parser;
    bool http10 = c->req.parser.http_minor == 0;
    struct rewrite_response_ctx ctx = {
        .http10 = http10,
        .hsts = c->tls != NULL ? tls_server_hsts(c->tls) : NULL,
    };
    enum body_kind kind;

    if (response_body_kind(c, &kind) < 0) {
        conn_fail(c, 502, REASON_UPSTREAM_BAD_RESPONSE);
        return;
    }
    /* An HTTP/1.0 client learns where a body of unknown length ends only by the close. */
    ctx.chunked = !http10 && (kind == BODY_CHUNKED || kind == BODY_UNTIL_EOF);
    if ((http10 && (kind == BODY_CHUNKED || kind == BODY_UNTIL_EOF)) ||
        c->req_phase != REQ_DONE || c->w->state != WORKER_RUNNING)
        c->x.keep_alive = false;
    ctx.close = !c->x.keep_alive;
    body_init(&c->x.resp_body, kind, p->content_length, ctx.chunked, UINT64_MAX, &c->up->resp);
    if (write_head(c, &ctx) < 0) {
        conn_fail(c, 503, REASON_RESOURCE);
        return;
    }
    c->x.status = p->status_code;
    c->resp_phase = RESP_BODY;
    if (kind == BODY_NONE)
        response_complete(c);
    else
        pump_response(c);
}

static void
on_switching_protocols(struct conn *c)
{
    struct rewrite_response_ctx ctx = {.upgrade = true};

    if (!c->x.info.websocket || c->req_phase != REQ_DONE) {
        conn_fail(c, 502, REASON_UPSTREAM_BAD_RESPONSE);
        return;
    }
    if (write_head(c, &ctx) < 0) {
        conn_fail(c, 503, REASON_RESOURCE);
        return;
    }
    c->x.status = 101;
    tunnel_start(c);
}

/* 1xx before the final response: relayed to HTTP/1.1 clients (RFC 9110 section 15.2), never to
 * HTTP/1.0 ones, which do not expect them. */
static int
relay_interim(struct conn *c)
{
    struct rewrite_response_ctx ctx = {0};

    if (++c->x.interim > MAX_INTERIM)
        return -1;
    if (c->req.parser.http_minor >= 1 && write_head(c, &ctx) < 0)
        return -1;
    http_msg_reset(&c->up->resp);
    return 0;
}

static void
read_response_head(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->up->bev);

    for (;;) {
        enum http_step st = http_msg_feed(&c->up->resp, in, NULL);
        int status;

        if (st == HTTP_AGAIN)
            return;
        if (st == HTTP_HEAD_DONE && c->up->resp.parser.http_major != 1)
            st = HTTP_ERROR; /* only HTTP/1.x is spoken upstream */
        if (st != HTTP_HEAD_DONE) {
            log_debug("server %s: bad response head: %s", c->x.server->conf->id,
                      http_msg_error_text(&c->up->resp));
            conn_fail(c, 502, REASON_UPSTREAM_BAD_RESPONSE);
            return;
        }
        status = c->up->resp.parser.status_code;
        if (status < 100 || status > 999 || status == 101 || status >= 200)
            break;
        if (relay_interim(c) < 0) {
            conn_fail(c, 502, REASON_UPSTREAM_BAD_RESPONSE);
            return;
        }
    }
    c->x.header_us = clock_mono_us();
    if (c->up->resp.parser.status_code == 101)
        on_switching_protocols(c);
    else
        on_final_head(c);
}

static void
on_upstream_read(void *arg)
{
    struct conn *c = arg;

    switch (c->resp_phase) {
    case RESP_HEAD: read_response_head(c); break;
    case RESP_BODY: pump_response(c); break;
    case RESP_DONE: break; /* extra bytes: the connection will not be reused */
    }
}

static void
on_upstream_drained(void *arg)
{
    conn_update_flow(arg);
}

/* A pooled connection the server closed just before our request arrived. Safe to resend when
 * nothing of a response came back and the request had no body to replay. */
static bool
retry_on_fresh_connection(struct conn *c, short what)
{
    if (!c->x.pooled || c->x.attempts > 1 || (what & BEV_EVENT_TIMEOUT) ||
        c->resp_phase != RESP_HEAD || c->up->resp.head_bytes > 0 ||
        c->x.req_body.kind != BODY_NONE)
        return false;
    log_debug("server %s: reused connection closed before the response; retrying",
              c->x.server->conf->id);
    conn_drop_upstream(c);
    conn_connect_upstream(c);
    return true;
}

static void
on_upstream_event(void *arg, short what)
{
    struct conn *c = arg;
    bool timeout = (what & BEV_EVENT_TIMEOUT) != 0;

    if (c->state == CONN_CONNECTING_UPSTREAM) {
        enum reason why = timeout                     ? REASON_UPSTREAM_CONNECT_TIMEOUT
                          : upstream_tls_failed(c->up) ? REASON_UPSTREAM_TLS
                                                       : REASON_UPSTREAM_REFUSED;
        log_debug("server %s: connect failed: %s", c->x.server->conf->id, reason_name(why));
        conn_fail(c, timeout ? 504 : 502, why);
        return;
    }
    if ((what & BEV_EVENT_EOF) && c->resp_phase == RESP_BODY &&
        c->x.resp_body.kind == BODY_UNTIL_EOF) {
        body_finish_eof(&c->x.resp_body, client_out(c));
        response_complete(c);
        return;
    }
    if (retry_on_fresh_connection(c, what))
        return;
    if (timeout)
        conn_fail(c, 504,
                  (what & BEV_EVENT_READING) ? REASON_UPSTREAM_TIMEOUT
                                             : REASON_UPSTREAM_SEND_TIMEOUT);
    else
        conn_fail(c, 502, REASON_UPSTREAM_RESET);
}

static void
on_upstream_connected(void *arg)
{
    conn_upstream_ready(arg);
}

const struct upstream_handler conn_upstream_handler = {
    .on_connected = on_upstream_connected,
    .on_read = on_upstream_read,
    .on_drained = on_upstream_drained,
    .on_event = on_upstream_event,
};
