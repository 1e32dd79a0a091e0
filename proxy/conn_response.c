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
#include "passive.h"
#include "rewrite.h"
#include "router.h"
#include "stats.h"
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
    enum body_step st = body_pump(&c->x->resp_body, bufferevent_get_input(c->up->bev), out);

    c->x->bytes_out += evbuffer_get_length(out) - before;
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

    c->x->bytes_out += evbuffer_get_length(out) - before;
    return rc;
}

static int
response_body_kind(const struct conn *c, enum body_kind *kind)
{
    return body_response_kind(&c->up->resp, c->req.parser.method == HTTP_HEAD, kind);
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
    char cookie[256];

    if (response_body_kind(c, &kind) < 0) {
        conn_fail(c, 502, REASON_UPSTREAM_BAD_RESPONSE);
        return;
    }
    /* An HTTP/1.0 client learns where a body of unknown length ends only by the close. */
    ctx.chunked = !http10 && (kind == BODY_CHUNKED || kind == BODY_UNTIL_EOF);
    if ((http10 && (kind == BODY_CHUNKED || kind == BODY_UNTIL_EOF)) ||
        c->req_phase != REQ_DONE || c->w->state != WORKER_RUNNING)
        c->x->keep_alive = false;
    ctx.close = !c->x->keep_alive;
    conn_affinity_response(c, &ctx, cookie, sizeof(cookie));
    body_init(&c->x->resp_body, kind, p->content_length, ctx.chunked, UINT64_MAX, &c->up->resp);
    if (write_head(c, &ctx) < 0) {
        conn_fail(c, 503, REASON_RESOURCE);
        return;
    }
    c->x->status = p->status_code;
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

    if (!c->x->info.websocket || c->req_phase != REQ_DONE ||
        !headers_response_is_clean(&c->up->resp)) {
        conn_fail(c, 502, REASON_UPSTREAM_BAD_RESPONSE);
        return;
    }
    conn_affinity_response(c, NULL, NULL, 0); /* the mapping, not a cookie: a 101 sets none */
    if (write_head(c, &ctx) < 0) {
        conn_fail(c, 503, REASON_RESOURCE);
        return;
    }
    c->x->status = 101;
    tunnel_start(c);
}

/* 1xx before the final response: relayed to HTTP/1.1 clients (RFC 9110 section 15.2), never to
 * HTTP/1.0 ones, which do not expect them. */
static int
relay_interim(struct conn *c)
{
    struct rewrite_response_ctx ctx = {0};

    if (++c->x->interim > MAX_INTERIM || !headers_response_is_clean(&c->up->resp))
        return -1;
    if (c->req.parser.http_minor >= 1 && write_head(c, &ctx) < 0)
        return -1;
    http_msg_reset(&c->up->resp);
    return 0;
}

/* The attempt failed before a response started: count it against the server, then another
 * attempt if retry.c allows, else the error. A connected hedge simply takes over. */
static void
attempt_failed(struct conn *c, bool connect_failed, int status, enum reason why,
               enum passive_event ev)
{
    if (c->x->server->stats != NULL)
        stat_add(&c->x->server->stats->failures, 1);
    if (why != REASON_UPSTREAM_BAD_RESPONSE) /* refused, reset, timeouts: the passive kinds */
        passive_failure(c->router->health, c->x->server, ev);
    if (c->hedge != NULL && !conn_response_started(c)) {
        conn_promote_hedge(c); /* the hedge, connected or still connecting, takes over */
        return;
    }
    if (!conn_retry(c, connect_failed, status, why))
        conn_fail(c, status, why);
}

/* A final or 101 head is complete on c->up. */
static void
on_head(struct conn *c)
{
    int status = c->up->resp.parser.status_code;

    c->x->header_us = clock_mono_us();
    conn_drop_hedge(c); /* the other attempt, if any, lost */
    conn_disarm_timer(c);
    passive_response(c->router->health, c->x->server, status);
    if (c->x->server->stats != NULL)
        stat_add(&c->x->server->stats->responses[status / 100 <= 5 ? status / 100 : 0], 1);
    if (c->x->attempt.sent_us != 0) {
        uint64_t waited = c->x->header_us - c->x->attempt.sent_us;

        router_observe_latency((struct cluster_rt *)c->x->server->cluster, waited);
        if (c->x->server->stats != NULL)
            stats_observe(c->x->server->stats->latency, &c->x->server->stats->latency_sum_us,
                          waited);
    }
    if (status == 101)
        on_switching_protocols(c);
    else
        on_final_head(c);
}

/* Parse heads on u until a final one: 1xx are relayed (from the exchange's own attempt) or
 * skipped (from a hedge, which never asked for them). Returns 1 at a final head, 0 for more
 * input, -1 for an invalid response. */
static int
read_heads(struct conn *c, struct upstream *u, bool relay)
{
    struct evbuffer *in = bufferevent_get_input(u->bev);

    for (;;) {
        enum http_step st = http_msg_feed(&u->resp, in, NULL);
        int status;

        if (st == HTTP_AGAIN)
            return 0;
        if (st == HTTP_HEAD_DONE && u->resp.parser.http_major != 1)
            st = HTTP_ERROR; /* only HTTP/1.x is spoken upstream */
        if (st != HTTP_HEAD_DONE) {
            log_debug("server %s: bad response head: %s", u->server->conf->id,
                      http_msg_error_text(&u->resp));
            return -1;
        }
        status = u->resp.parser.status_code;
        if (status < 100 || status == 101 || status >= 200)
            return 1;
        if (relay && relay_interim(c) < 0)
            return -1;
        if (!relay)
            http_msg_reset(&u->resp);
    }
}

static void
read_response_head(struct conn *c)
{
    int rc = read_heads(c, c->up, true);

    if (rc > 0)
        on_head(c);
    else if (rc < 0)
        attempt_failed(c, false, 502, REASON_UPSTREAM_BAD_RESPONSE, PASSIVE_CONNECT);
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
    conn_flush_client(c);
}

static void
on_upstream_drained(void *arg)
{
    conn_update_flow(arg);
}

static void
on_upstream_event(void *arg, short what)
{
    struct conn *c = arg;
    bool timeout = (what & BEV_EVENT_TIMEOUT) != 0;

    if (c->state == CONN_CONNECTING_UPSTREAM) {
        enum reason why = timeout                      ? REASON_UPSTREAM_CONNECT_TIMEOUT
                          : upstream_tls_failed(c->up) ? REASON_UPSTREAM_TLS
                                                       : REASON_UPSTREAM_REFUSED;
        log_debug("server %s: connect failed: %s", c->x->server->conf->id, reason_name(why));
        attempt_failed(c, true, timeout ? 504 : 502, why,
                       timeout ? PASSIVE_TIMEOUT : PASSIVE_CONNECT);
        return;
    }
    if ((what & BEV_EVENT_EOF) && c->resp_phase == RESP_BODY &&
        c->x->resp_body.kind == BODY_UNTIL_EOF) {
        body_finish_eof(&c->x->resp_body, client_out(c));
        response_complete(c);
        return;
    }
    if (c->resp_phase != RESP_HEAD) {
        /* the response started: nothing can be retried, the client sees it cut */
        conn_fail(c, 502, timeout ? REASON_UPSTREAM_TIMEOUT : REASON_UPSTREAM_RESET);
        return;
    }
    if (conn_retry_fresh(c, what))
        return;
    if (timeout && (what & BEV_EVENT_READING))
        attempt_failed(c, false, 504, REASON_UPSTREAM_TIMEOUT, PASSIVE_TIMEOUT);
    else if (timeout)
        attempt_failed(c, false, 504, REASON_UPSTREAM_SEND_TIMEOUT, PASSIVE_TIMEOUT);
    else
        attempt_failed(c, false, 502, REASON_UPSTREAM_RESET, PASSIVE_CONNECT);
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

/* ---- the hedge: a second attempt racing the first for the response head ---------------------- */

static void
on_hedge_connected(void *arg)
{
    conn_hedge_ready(arg);
}

static void
on_hedge_read(void *arg)
{
    struct conn *c = arg;
    int rc = read_heads(c, c->hedge, false);

    if (rc < 0) {
        if (c->x->hedge_server->stats != NULL)
            stat_add(&c->x->hedge_server->stats->failures, 1);
        passive_failure(c->router->health, c->x->hedge_server, PASSIVE_CONNECT);
        conn_hedge_failed(c);
    } else if (rc > 0) {
        log_debug("request %s: the hedge to %s answered first", c->x->id,
                  c->x->hedge_server->conf->id);
        /* The first server was slower than its cluster usually is: evidence of slowness, not
         * of failure. Counted as a failure, a stall of a few ms on a busy host took a healthy
         * server out (and moved its sessions for good); the lost attempt's own outcome is
         * what its passive checks count. */
        conn_hedge_won(c);
        on_head(c);
    }
}

static void
on_hedge_drained(void *arg)
{
}

static void
on_hedge_event(void *arg, short what)
{
    struct conn *c = arg;
    /* The keep-alive race is no failure of the server; the first attempt still runs, so the
     * hedge simply ends. */
    if (!conn_keepalive_race(&c->x->hedge, what, c->hedge)) {
        if (c->x->hedge_server->stats != NULL)
            stat_add(&c->x->hedge_server->stats->failures, 1);
        passive_failure(c->router->health, c->x->hedge_server,
                        (what & BEV_EVENT_TIMEOUT) ? PASSIVE_TIMEOUT : PASSIVE_CONNECT);
    }
    conn_hedge_failed(c);
}

const struct upstream_handler conn_hedge_handler = {
    .on_connected = on_hedge_connected,
    .on_read = on_hedge_read,
    .on_drained = on_hedge_drained,
    .on_event = on_hedge_event,
};
