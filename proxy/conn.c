/*
 * conn: the client side of a connection's state machine. Accepting, reading and checking request
 * heads, getting a server connection, forwarding the request body with backpressure, keep-alive and
 * pipelining, and closing (flush, then a short lingering read so an error page is not destroyed by
 * a reset). The response side is conn_response.c; the WebSocket tunnel is tunnel.c.
 */
#include <assert.h>
#include <event2/bufferevent_ssl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "access_log.h"
#include "access_rules.h"
#include "bevio.h"
#include "proxyproto.h"
#include "clock.h"
#include "config-t.h"
#include "conn_int.h"
#include "errpage.h"
#include "log.h"
#include "rewrite.h"
#include "router.h"
#include "stats.h"
#include "tls.h"
#include "worker.h"

#define MAX_SINGLE_IO 65536 /* bytes per read(2)/write(2) */
#define LINGER_MS     2000  /* after the last byte of a closing connection, read and drop */

static void client_read_cb(struct bufferevent *bev, void *arg);
static void client_write_cb(struct bufferevent *bev, void *arg);
static void client_event_cb(struct bufferevent *bev, short what, void *arg);
static void read_head(struct conn *c);
static void next_request(struct conn *c);
static void handshake_done(struct conn *c);
static void handshake_failed(struct conn *c, short what);
static void log_handshake_failure(struct conn *c, enum reason why, unsigned long ssl_error);

/* ---- state and timers ------------------------------------------------------------------------ */

void
conn_set_state(struct conn *c, enum conn_state to)
{
    switch (to) {
    case CONN_PROXY_HEADER: assert(!"a connection starts in PROXY_HEADER, never returns to it");
        break;
    case CONN_HANDSHAKE: assert(c->state == CONN_PROXY_HEADER); break;
    case CONN_IDLE:
        /* after a handshake, after an exchange, or after a request trident answered itself */
        assert(c->state == CONN_PROXY_HEADER || c->state == CONN_HANDSHAKE ||
               c->state == CONN_STREAMING ||
               c->state == CONN_READING_HEAD || c->state == CONN_BUFFERING_BODY ||
               c->state == CONN_ROUTING || c->state == CONN_CONNECTING_UPSTREAM);
        break;
    case CONN_READING_HEAD: assert(c->state == CONN_IDLE); break;
    case CONN_BUFFERING_BODY: assert(c->state == CONN_READING_HEAD); break;
    case CONN_ROUTING:
        assert(c->state == CONN_READING_HEAD || c->state == CONN_BUFFERING_BODY);
        break;
    case CONN_CONNECTING_UPSTREAM:
        /* a first attempt, or another one after a failed attempt (retry) */
        assert(c->state == CONN_READING_HEAD || c->state == CONN_BUFFERING_BODY ||
               c->state == CONN_ROUTING || c->state == CONN_CONNECTING_UPSTREAM ||
               c->state == CONN_STREAMING);
        break;
    case CONN_STREAMING: assert(c->state == CONN_CONNECTING_UPSTREAM); break;
    case CONN_TUNNEL: assert(c->state == CONN_STREAMING); break;
    case CONN_CLOSING: assert(c->state != CONN_CLOSED && c->state != CONN_CLOSING); break;
    case CONN_CLOSED: break;
    }
    c->state = to;
}

/* Once the client is found to read too slowly, the timer's 0 ms close is due: no later
 * deadline replaces it and nothing disarms it (a busy tunnel re-arms the timer constantly). */
void
conn_arm_timer(struct conn *c, int ms)
{
    struct timeval tv = clock_tv_ms(c->reads_too_slowly ? 0 : ms);

    evtimer_add(c->timer, &tv);
}

void
conn_disarm_timer(struct conn *c)
{
    if (!c->reads_too_slowly)
        evtimer_del(c->timer);
}

static void
set_client_timeouts(struct conn *c, int read_ms)
{
    struct timeval rd = clock_tv_ms(read_ms), wr = clock_tv_ms(c->cfg->timeouts.client_send_ms);

    bufferevent_set_timeouts(c->bev, read_ms > 0 ? &rd : NULL, &wr);
}

void
conn_set_client_read_timeout(struct conn *c, int ms)
{
    set_client_timeouts(c, ms);
}

static void
set_reading(struct bufferevent *bev, bool on)
{
    bool now = (bufferevent_get_enabled(bev) & EV_READ) != 0;

    if (on && !now) {
        bufferevent_enable(bev, EV_READ);
        bevio_tls_kick(bev);
    }
    else if (!on && now)
        bufferevent_disable(bev, EV_READ);
}

int
conn_body_paced(struct conn *c, uint64_t got)
{
    uint64_t now = clock_coarse_us();
    struct pace *p = &c->x->pace;

    p->bytes += got;
    if (pace_too_slow(p, c->cfg->timeouts.client_body_ms, c->cfg->limits.client_body_min_rate)) {
        log_debug("client %s: request %s body too slow: %llu bytes in %llu ms of waiting",
                  c->client, c->x->id, (unsigned long long)p->bytes,
                  (unsigned long long)(p->waited_us / 1000));
        conn_fail(c, 408, REASON_CLIENT_TIMEOUT);
        return -1;
    }
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) == 0 &&
        (bufferevent_get_enabled(c->bev) & EV_READ))
        pace_wait(p, now); /* everything taken: what comes next is the client's to send */
    return 0;
}

/* le-proxy's backpressure: a side stops reading while the other side's output is above the high
 * watermark; the other side's write callback (low watermark) calls this again as it drains. */
void
conn_update_flow(struct conn *c)
{
    size_t high = (size_t)c->cfg->limits.buffer_bytes;
    size_t up_out, client_out;

    if (c->state != CONN_STREAMING && c->state != CONN_TUNNEL)
        return;
    up_out = evbuffer_get_length(bufferevent_get_output(c->up->bev));
    client_out = evbuffer_get_length(bufferevent_get_output(c->bev));
    /* After a complete request the client side keeps reading, to notice a close; what it reads
     * (a pipelined request) waits, bounded by the read watermark. */
    if (c->state == CONN_TUNNEL || c->req_phase == REQ_BODY) {
        set_reading(c->bev, !c->client_eof && up_out < high);
        if (c->req_phase == REQ_BODY && up_out >= high)
            pace_stop(&c->x->pace, clock_coarse_us()); /* the server holds it up, not the client */
    } else
        set_reading(c->bev, !c->client_eof);
    set_reading(c->up->bev, client_out < high);
}

/* ---- logging and the end of an exchange -------------------------------------------------------- */

static int64_t
span_us(uint64_t from, uint64_t to)
{
    return from != 0 && to >= from ? (int64_t)(to - from) : -1;
}

static void
log_exchange(struct conn *c)
{
    const struct exchange *x = c->x;
    uint64_t now = clock_mono_us();
    struct access_entry e = {
        .time_ms = x->start_wall_ms,
        .request_id = x->id,
        .client = x->client.ss_family != AF_UNSPEC ? x->client_text : c->client,
        .method = c->req.head_complete ? llhttp_method_name(c->req.parser.method) : NULL,
        .target = http_msg_at(&c->req, c->req.target_off),
        .target_len = c->req.target_len,
        .http_minor = c->req.parser.http_minor,
        .status = x->status,
        .bytes_in = x->bytes_in,
        .bytes_out = x->bytes_out,
        .total_us = span_us(x->start_us, now),
        .connect_us = x->attempt.pooled ? -1
                                        : span_us(x->attempt.connect_start_us,
                                                  x->attempt.connected_us),
        .upstream_us = span_us(x->attempt.sent_us, x->header_us),
        .attempts = x->attempts,
        .hedged = x->hedged,
        .reason = x->reason,
        .rule = x->rule,
        .tls_version = c->tls_version,
        .tls_cipher = c->tls_cipher,
    };

    /* the server of the answer, or of the last attempt when none answered */
    const struct server_rt *s = x->server != NULL ? x->server
                                : x->ntried > 0   ? x->tried[x->ntried - 1]
                                                  : NULL;
    if (s != NULL) {
        e.server = s->conf->id;
        e.cluster = s->cluster->conf->name;
        e.provider = s->cluster->conf->provider;
    }
    access_log_write(c->w->alog, &e);
}

/* The exchange's share of the listener's and the answering server's counters. */
static void
count_exchange(struct conn *c)
{
    struct listener_stats *ls = c->listener->stats;

    if (ls != NULL) {
        stat_add(&ls->requests, 1);
        stats_observe(ls->duration, &ls->duration_sum_us, clock_mono_us() - c->x->start_us);
    }
    /* a server's bytes are those of requests it answered (its response head came) */
    if (c->x->server != NULL && c->x->header_us != 0 && c->x->server->stats != NULL) {
        stat_add(&c->x->server->stats->bytes_in, c->x->bytes_in);
        stat_add(&c->x->server->stats->bytes_out, c->x->bytes_out);
    }
}

/* Ends the open exchange, if any: its log line, and the server's active count. A connection that
 * closes before a whole head arrived and without an answer has no exchange worth a line. `why`
 * ended it, unless a reason was recorded before. */
static void
finish_exchange(struct conn *c, enum reason why)
{
    if (!conn_exchange_open(c))
        return;
    if (c->x->reason == REASON_NONE)
        c->x->reason = why;
    if (c->req.head_complete || c->x->status != 0) {
        log_exchange(c);
        count_exchange(c);
    }
    if (c->x->reason != REASON_NONE)
        worker_count(c->w, c->x->reason);
    if (c->x->server != NULL)
        router_end(c->x->server);
    c->x->server = NULL;
}

/* A request dropped before its body was all sent (a body over its limit, bad chunked framing,
 * a client gone mid-upload, a timeout) is reset towards the server: what reached it must read as
 * aborted, not as a message the client ended. */
void
conn_drop_upstream(struct conn *c)
{
    if (c->up != NULL && c->req_phase == REQ_BODY)
        upstream_abort(c->up);
    else
        upstream_free(c->up);
    c->up = NULL;
}

/* A trusted proxy's valid X-Request-Id is kept (the request's id across the hops in front);
 * anyone else's is replaced: a client does not choose the id in trident's and the
 * application's logs. */
static void
assign_request_id(struct conn *c)
{
    if (c->x->id[0] != '\0')
        return;
    if (c->x->info.request_id >= 0 && c->x->peer_trusted) {
        const struct http_field *f = &c->req.fields[c->x->info.request_id];
        memcpy(c->x->id, http_msg_at(&c->req, f->value_off), f->value_len);
        c->x->id[f->value_len] = '\0';
    } else {
        reqid_next(&c->w->reqids, c->x->id);
    }
}

/* ---- closing ----------------------------------------------------------------------------------- */

void
conn_close_now(struct conn *c, enum reason why)
{
    if (c->state == CONN_CLOSED)
        return;
    conn_drop_hedge(c);
    finish_exchange(c, why);
    conn_drop_upstream(c);
    conn_set_state(c, CONN_CLOSED);
    if (c->bev != NULL) {
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
        bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
    }
    if (c->pp_ev != NULL)
        event_del(c->pp_ev);
    evtimer_del(c->timer);
    event_active(c->free_ev, EV_TIMEOUT, 1);
}

/* Output flushed: half-close, then read and drop what the client still sends for a moment. A close
 * with unread input would send a reset, which can destroy the response before the client reads it
 * (the problem nginx's lingering_close solves). */
static void
closing_flushed(struct conn *c)
{
    if (c->client_eof) {
        conn_close_now(c, REASON_NONE);
        return;
    }
    if (c->tls_version != NULL) /* the handshake finished: end TLS properly */
        SSL_shutdown(bufferevent_openssl_get_ssl(c->bev)); /* close_notify, then the FIN */
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    conn_arm_timer(c, LINGER_MS);
}

void
conn_close_after_flush(struct conn *c)
{
    finish_exchange(c, REASON_NONE);
    conn_drop_upstream(c);
    conn_set_state(c, CONN_CLOSING);
    bufferevent_setcb(c->bev, client_read_cb, client_write_cb, client_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    conn_arm_timer(c, c->cfg->timeouts.client_send_ms);
    evbuffer_drain(bufferevent_get_input(c->bev), (size_t)-1);
    set_reading(c->bev, !c->client_eof);
    bufferevent_enable(c->bev, EV_WRITE);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        closing_flushed(c);
}

/* A gateway error (502/503/504) after a complete, valid request leaves the connection usable,
 * as nginx and HAProxy do: a client of a failing provider is not made to reconnect. Anything
 * else closes: the rest of the connection's bytes cannot be trusted. */
static bool
error_keeps_connection(const struct conn *c, int status)
{
    return c->x->keep_alive && c->req_phase == REQ_DONE && c->req.head_complete &&
           (status == 429 || status == 502 || status == 503 || status == 504) &&
           (c->state == CONN_READING_HEAD || c->state == CONN_BUFFERING_BODY ||
            c->state == CONN_ROUTING || c->state == CONN_CONNECTING_UPSTREAM ||
            c->state == CONN_STREAMING);
}

void
conn_answer(struct conn *c, int status, enum reason why, int retry_after, const char *html,
            size_t html_len)
{
    bool keep = false;

    if (c->x == NULL) { /* between requests: there is no request to answer */
        conn_close_now(c, why);
        return;
    }
    if (c->x->reason == REASON_NONE)
        c->x->reason = why;
    conn_drop_hedge(c);
    conn_drop_upstream(c);
    if (!conn_response_started(c) && c->state != CONN_TUNNEL) {
        keep = error_keeps_connection(c, status);
        assign_request_id(c);
        c->x->status = status;
        c->x->bytes_out += errpage_write_full(
            bufferevent_get_output(c->bev), status, c->x->id,
            c->req.head_complete && c->req.parser.method == HTTP_HEAD, keep, retry_after, html,
            html_len);
    }
    if (keep) {
        next_request(c);
        return;
    }
    c->x->keep_alive = false;
    conn_close_after_flush(c);
}

/* Something went wrong in the exchange: answer with `status` when no response has started, else
 * cut the response short (the client sees a truncated body). Either way the connection closes. */
void
conn_fail(struct conn *c, int status, enum reason why)
{
    conn_answer(c, status, why, 0, NULL, 0);
}

/* ---- keep-alive ---------------------------------------------------------------------------------- */

/* The first byte of a request: its exchange is allocated here. False: no memory for it (the
 * caller closes the connection). */
static bool
begin_exchange(struct conn *c)
{
    c->x = calloc(1, sizeof(*c->x));
    if (c->x == NULL)
        return false;
    c->x->info.request_id = -1;
    c->x->start_us = clock_mono_us();
    c->x->start_wall_ms = clock_wall_ms();
    conn_set_state(c, CONN_READING_HEAD);
    /* The first request's deadline has run since accept; later ones start at their first byte. */
    if (c->requests++ > 0)
        conn_arm_timer(c, c->cfg->timeouts.client_header_ms);
    return true;
}

/* The connection is idle again, or goes: the exchange's Redis calls are abandoned (their
 * callbacks would find no exchange) and its memory freed. */
static void
release_exchange(struct conn *c)
{
    if (c->x == NULL)
        return;
    conn_affinity_cancel(c);
    conn_ratelimit_cancel(c);
    if (c->x->body != NULL)
        evbuffer_free(c->x->body);
    free(c->x);
    c->x = NULL;
}

/* A request's first bytes arrived on an idle connection. */
static void
start_request(struct conn *c)
{
    if (!begin_exchange(c)) {
        conn_close_now(c, REASON_RESOURCE);
        return;
    }
    read_head(c);
}

/* A reload happened since this connection's last request: the next one routes with the new
 * configuration and health table, like a new connection. The listener (and its TLS context)
 * stays: it is what the client connected to. */
static void
adopt_generation(struct conn *c)
{
    if (c->router == c->w->router)
        return;
    router_unref(c->router);
    c->router = router_ref(c->w->router);
    c->cfg = c->router->cfg;
    c->req.max_head = (uint32_t)c->cfg->limits.max_header_bytes;
    c->req.max_fields = (uint32_t)c->cfg->limits.max_header_count;
}

static void
next_request(struct conn *c)
{
    finish_exchange(c, REASON_NONE);
    /* An idle keep-alive connection holds no request buffers (the head, its fields, the head
     * sent upstream): a malloc per request is cheaper than ~1.8 KiB held by every idle client. */
    http_msg_reset(&c->req);
    http_msg_release(&c->req);
    evbuffer_drain(c->up_head, (size_t)-1);
    adopt_generation(c);
    conn_set_state(c, CONN_IDLE);
    release_exchange(c); /* (only now: every state with an open exchange has one) */
    if (c->w->state != WORKER_RUNNING) {
        conn_close_after_flush(c);
        return;
    }
    set_client_timeouts(c, 0);
    set_reading(c->bev, true);
    conn_arm_timer(c, c->cfg->timeouts.client_idle_ms);
    /* A pipelined request may already be waiting (its bytes arrived while this one streamed).
     * The read callback takes it on the next loop turn, not nested in this call, where a burst
     * of requests trident answers itself would nest one call chain per request. */
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
}

/* Bytes of a next request on an idle connection. It starts only while the client takes its
 * answers: with limits.buffer_bytes of them queued, reading stops until the output drains
 * (client_write_cb), as for a proxied response; else a client that pipelines requests trident
 * answers itself, and reads nothing, would have every answer held in memory. */
static void
idle_input(struct conn *c)
{
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) >=
        (size_t)c->cfg->limits.buffer_bytes) {
        set_reading(c->bev, false);
        return;
    }
    start_request(c);
}

void
conn_exchange_done(struct conn *c)
{
    struct upstream *u = c->up;
    /* Reusable only when the exchange ended exactly at a message boundary on both sides: all of
     * the request written (a server that answered early may not have read it all), a framed
     * response, keep-alive, and no byte beyond the response. */
    bool reusable = u != NULL && c->req_phase == REQ_DONE &&
                    c->x->resp_body.kind != BODY_UNTIL_EOF &&
                    llhttp_should_keep_alive(&u->resp.parser) &&
                    evbuffer_get_length(bufferevent_get_input(u->bev)) == 0 &&
                    evbuffer_get_length(bufferevent_get_output(u->bev)) == 0;

    c->up = NULL;
    /* a replaced generation's pool would only hold it until that router goes */
    if (reusable && c->router == c->w->router && router_server_usable(c->router, u->server))
        upstream_pool_put(&u->server->pool, u);
    else
        upstream_free(u);
    if (c->x->keep_alive && c->req_phase == REQ_DONE)
        next_request(c);
    else
        conn_close_after_flush(c);
}

/* ---- the request -------------------------------------------------------------------------------- */

/* Framing of the request body (RFC 9112 section 6.3). headers_check_request() has already refused
 * a Transfer-Encoding other than "chunked" and Transfer-Encoding with Content-Length. */
static int
choose_request_body(struct conn *c)
{
    const llhttp_t *p = &c->req.parser;
    uint64_t limit = (uint64_t)c->x->max_request_body;
    enum body_kind kind = BODY_NONE;

    if (p->flags & F_CHUNKED) {
        kind = BODY_CHUNKED;
    } else if ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0) {
        if (p->content_length > limit) /* refused before a byte of it is read */
            return -1;
        kind = BODY_LENGTH;
    }
    body_init(&c->x->req_body, kind, p->content_length, kind == BODY_CHUNKED, limit, &c->req);
    return 0;
}

/* One X-Forwarded-For element as an address (IPv6 may come bracketed). */
static bool
parse_forwarded(struct slice s, struct sockaddr_storage *out)
{
    char text[64];

    if (s.n >= 2 && s.p[0] == '[' && s.p[s.n - 1] == ']') {
        s.p++;
        s.n -= 2;
    }
    if (s.n == 0 || s.n >= sizeof(text))
        return false;
    memcpy(text, s.p, s.n);
    text[s.n] = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, text, &((struct sockaddr_in *)out)->sin_addr) == 1) {
        out->ss_family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, text, &((struct sockaddr_in6 *)out)->sin6_addr) == 1) {
        out->ss_family = AF_INET6;
        return true;
    }
    return false;
}

#define FORWARDED_MAX 32 /* X-Forwarded-For elements looked at, from the right */

/* sa is one of the listener's trusted_proxies. */
static bool
trusted_proxy(const struct listener_conf *l, const void *sa)
{
    return l->ntrusted_proxies > 0 &&
           cidr_match_any(l->trusted_nets, l->ntrusted_proxies, (const struct sockaddr *)sa);
}

/* From a trusted proxy, the client is the last X-Forwarded-For address that is not a trusted
 * proxy itself (nginx's real_ip_recursive); the elements before it are the client's to forge.
 * All trusted: the first. None usable: the peer stays the client. */
static void
forwarded_client(struct conn *c)
{
    const struct listener_conf *l = c->listener->conf;
    struct slice el[FORWARDED_MAX], tok;
    struct sockaddr_storage a;
    size_t n = 0;

    if (!c->x->peer_trusted)
        return;
    for (int i = http_find_field(&c->req, "x-forwarded-for", 15, 0); i >= 0;
         i = http_find_field(&c->req, "x-forwarded-for", 15, (uint32_t)i + 1)) {
        const struct http_field *f = &c->req.fields[i];
        size_t pos = 0;
        while (headers_next_token(http_msg_at(&c->req, f->value_off), f->value_len, &pos, &tok))
            el[n++ % FORWARDED_MAX] = tok; /* the last FORWARDED_MAX elements are kept */
    }
    for (size_t k = 0; k < n && k < FORWARDED_MAX; k++) {
        if (!parse_forwarded(el[(n - 1 - k) % FORWARDED_MAX], &a))
            break; /* garbage: what lies left of it cannot be trusted either */
        c->x->client = a;
        if (!trusted_proxy(l, &a))
            break;
    }
    if (c->x->client.ss_family != AF_UNSPEC)
        addr_host_string((const struct sockaddr *)&c->x->client, c->x->client_text,
                         sizeof(c->x->client_text));
}

/* The edge rules (access_rules.h), then the local rate limits; sets the body limit that
 * applies. Returns 0 or the status to answer with. */
static int
check_access(struct conn *c, enum reason *why)
{
    char path[ACCESS_PATH_MAX];
    const char *detail;
    bool encoded_slash;
    struct access_verdict v;
    struct access_request r = {
        .listener = c->listener->conf,
        .client = conn_client_addr(c),
        .method = llhttp_method_name(c->req.parser.method),
        .host = c->x->info.host.p,
        .host_len = c->x->info.host.n,
        .target = c->x->info.target.p,
        .target_len = c->x->info.target.n,
    };

    int status = access_normalize_path(r.target, r.target_len, path, &encoded_slash, &detail);

    c->x->max_request_body = c->cfg->limits.max_request_body;
    if (status != 0) {
        *why = status == 403 ? REASON_PATH_REFUSED
               : status == 414 ? REASON_URI_TOO_LONG
                               : REASON_BAD_REQUEST;
        log_debug("client %s: request %s refused (%d): %s", c->client, c->x->id, status, detail);
        return status;
    }
    access_check_path(&c->cfg->access, &r, path, encoded_slash, c->cfg->limits.max_request_body,
                      &v);
    c->x->rule = v.rule;
    c->x->max_request_body = v.max_request_body;
    if (v.status != 0) {
        *why = v.why;
        log_debug("client %s: request %s refused (%d): %s%s%s", c->client, c->x->id, v.status,
                  v.detail, v.rule != NULL ? ", rule " : "", v.rule != NULL ? v.rule : "");
        return v.status;
    }
    if (c->cfg->nrate_limits > 0 && conn_ratelimit_head(c, &r, path) != 0) {
        *why = REASON_RATE_LIMITED;
        return 429;
    }
    return 0;
}

/* Whether the request head announces a body (chunked, or a Content-Length above 0). */
static bool
request_has_body(const struct conn *c)
{
    const llhttp_t *p = &c->req.parser;

    return (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
}

/* A plain listener that only sends clients to https: 308 keeps the method and body (RFC 9110
 * section 15.4.9). A request with a body is answered without reading it, so that connection
 * closes; a body-less one keeps its connection. */
static void
redirect_to_https(struct conn *c)
{
    struct slice host = c->x->info.host, target = c->x->info.target;
    char port[8] = "";
    size_t hlen;
    struct evbuffer *out = bufferevent_get_output(c->bev);

    if (host.n == 0) {
        conn_fail(c, 400, REASON_BAD_REQUEST); /* HTTP/1.0 without Host: nowhere to send it */
        return;
    }
    /* Strip the client's port; add the https port unless 443. */
    hlen = headers_host_without_port(host.p, host.n);
    if (c->listener->conf->https_redirect_port != 443)
        snprintf(port, sizeof(port), ":%d", c->listener->conf->https_redirect_port);
    if (request_has_body(c))
        c->x->keep_alive = false;
    c->x->status = 308;
    c->x->bytes_out += errpage_redirect(out, (int)hlen, host.p, port, (int)target.n, target.p,
                                       c->x->id, !c->x->keep_alive);
    if (c->x->keep_alive) {
        next_request(c);
    } else {
        conn_close_after_flush(c);
    }
}

/* A small request body is read whole before any server sees the request: the request can then
 * be replayed on another server, a malformed body never reaches one, and a slow client never
 * holds a server connection. Larger bodies stream (and are not retried once sent). */
static bool
wants_buffering(const struct conn *c)
{
    const struct body *b = &c->x->req_body;
    int limit = c->cfg->failover.retry_body_bytes;

    return b->kind == BODY_CHUNKED ? limit > 0
                                   : b->kind == BODY_LENGTH && b->remaining <= (uint64_t)limit;
}

static void
buffer_body(struct conn *c)
{
    struct body *b = &c->x->req_body;
    uint64_t before = b->wire_in;
    enum body_step st = body_pump(b, bufferevent_get_input(c->bev), c->x->body);

    c->x->bytes_in += b->wire_in - before;
    if (st == BODY_AGAIN && conn_body_paced(c, b->wire_in - before) < 0)
        return;
    switch (st) {
    case BODY_AGAIN:
        if (evbuffer_get_length(c->x->body) <= (size_t)c->cfg->failover.retry_body_bytes)
            return;
        /* A chunked body grew past what is kept: stream it; no replay for this one. */
        conn_start_attempt(c);
        return;
    case BODY_DONE:
        c->x->body_buffered = true;
        c->req_phase = REQ_DONE;
        set_client_timeouts(c, 0);
        conn_start_attempt(c);
        return;
    case BODY_ERR_LIMIT: conn_fail(c, 413, REASON_BODY_TOO_LARGE); return;
    case BODY_ERR_SYNTAX: conn_fail(c, 400, REASON_BAD_REQUEST); return;
    }
}

/* Host for an HTTP/1.0 request without one: the address the client connected to. */
static void
local_host(struct conn *c, char *buf, size_t len)
{
    struct addr a = {.len = sizeof(a.ss)};

    if (getsockname(bufferevent_getfd(c->bev), (struct sockaddr *)&a.ss, &a.len) < 0)
        snprintf(buf, len, "localhost");
    else
        addr_format(&a, buf, len);
}

static int
rewrite_head(struct conn *c, bool buffering)
{
    char host[ADDR_TEXT_MAX] = "";
    struct rewrite_request_ctx ctx = {
        .client_ip = c->client_ip,
        .client = c->x->client.ss_family != AF_UNSPEC ? c->x->client_text : c->client_ip,
        .trusted = c->x->peer_trusted,
        .proto = c->tls != NULL ? "https" : "http",
        .request_id = c->x->id,
        .chunked = c->x->req_body.kind == BODY_CHUNKED,
        .default_host = host,
        /* trident answers 100-continue itself when it reads the body first */
        .drop_expect = buffering,
    };

    if (c->x->info.host.n == 0)
        local_host(c, host, sizeof(host));
    evbuffer_drain(c->up_head, (size_t)-1);
    return rewrite_request(&c->req, &c->x->info, &ctx, c->up_head);
}

static void
on_request_head(struct conn *c)
{
    enum reason why;
    bool buffering;
    int status;

    conn_disarm_timer(c);
    status = headers_check_request(&c->req, &c->x->info, &why);
    c->x->peer_trusted = trusted_proxy(c->listener->conf, &c->peer);
    assign_request_id(c);
    if (status == 0) {
        forwarded_client(c);
        status = check_access(c, &why);
    }
    c->x->keep_alive = llhttp_should_keep_alive(&c->req.parser) && c->w->state == WORKER_RUNNING;
    /* Until the body is read, an answer given now (429, 503, ...) leaves it unread: the
     * connection then closes (error_keeps_connection) unless there is none. */
    c->req_phase = request_has_body(c) ? REQ_BODY : REQ_DONE;
    if (status == 429) {
        conn_answer(c, 429, why, c->x->rate.retry_after_s, NULL, 0);
        return;
    }
    if (status != 0) {
        conn_fail(c, status, why);
        return;
    }
    if (c->listener->conf->https_redirect_port != 0) {
        redirect_to_https(c);
        return;
    }
    if (choose_request_body(c) < 0) {
        conn_fail(c, 413, REASON_BODY_TOO_LARGE);
        return;
    }
    buffering = wants_buffering(c);
    if (rewrite_head(c, buffering) < 0 ||
        (buffering && (c->x->body = evbuffer_new()) == NULL)) {
        conn_fail(c, 503, REASON_RESOURCE);
        return;
    }
    c->req_phase = c->x->req_body.kind == BODY_NONE ? REQ_DONE : REQ_BODY;
    if (!buffering) {
        conn_start_attempt(c);
        return;
    }
    conn_set_state(c, CONN_BUFFERING_BODY);
    if (c->x->info.expect_continue) /* RFC 9110 section 10.1.1: a proxy may answer it */
        c->x->bytes_out +=
            (uint64_t)evbuffer_add_printf(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n");
    set_client_timeouts(c, c->cfg->timeouts.client_body_ms);
    buffer_body(c);
}

static void
read_head(struct conn *c)
{
    enum http_step st = http_msg_feed(&c->req, bufferevent_get_input(c->bev), &c->x->bytes_in);

    if (st == HTTP_AGAIN)
        return;
    if (st == HTTP_HEAD_DONE) {
        on_request_head(c);
        return;
    }
    log_debug("client %s: bad request head: %s", c->client, http_msg_error_text(&c->req));
    switch (c->req.error) {
    case HTTP_ERR_HEAD_TOO_LARGE: conn_fail(c, 431, REASON_HEAD_TOO_LARGE); break;
    case HTTP_ERR_TOO_MANY_FIELDS: conn_fail(c, 431, REASON_TOO_MANY_HEADERS); break;
    case HTTP_ERR_NOMEM: conn_fail(c, 503, REASON_RESOURCE); break;
    default: conn_fail(c, 400, REASON_BAD_REQUEST); break;
    }
}

/* ---- client socket callbacks --------------------------------------------------------------------- */

static void
client_read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;

    if (c->req_phase == REQ_BODY)
        pace_stop(&c->x->pace, clock_coarse_us()); /* the client delivered */
    switch (c->state) {
    case CONN_IDLE: idle_input(c); break;
    case CONN_READING_HEAD: read_head(c); break;
    case CONN_BUFFERING_BODY: buffer_body(c); break;
    case CONN_STREAMING:
        if (c->req_phase == REQ_BODY)
            conn_request_body(c);
        break;
    case CONN_ROUTING:
    case CONN_CONNECTING_UPSTREAM:
        /* The body waits in the input buffer, bounded by its read watermark. */
        break;
    case CONN_CLOSING: evbuffer_drain(bufferevent_get_input(bev), (size_t)-1); break;
    case CONN_PROXY_HEADER: /* no bufferevent yet */
    case CONN_HANDSHAKE:    /* application data arrives only after the handshake */
    case CONN_TUNNEL:
    case CONN_CLOSED: break;
    }
}

static void
client_write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;

    if (c->state == CONN_STREAMING)
        conn_update_flow(c);
    else if (c->state == CONN_CLOSING && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        closing_flushed(c);
    else if (c->state == CONN_IDLE && !(bufferevent_get_enabled(bev) & EV_READ)) {
        set_reading(bev, true); /* idle_input paused it: the answers drained */
        if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
            bufferevent_trigger(bev, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
    }
}

/* libevent's TLS bufferevent makes one TLS record (and one write(2)) of each chain in the
 * output: a small response's head and body go out as one when they are one chain. */
#define TLS_COALESCE_MAX 16384

void
conn_flush_client(struct conn *c)
{
    struct evbuffer *out;

    if (c->bev == NULL || c->state == CONN_CLOSED)
        return;
    if (c->tls == NULL) {
        bufferevent_data_cb written;
        void *arg;

        /* All of it went and the write event is disarmed: the installed write callback (this
         * file's, or the tunnel's after a 101) must run now, as libevent would have run it. */
        if (!bevio_flush(c->bev))
            return;
        bufferevent_getcb(c->bev, NULL, &written, NULL, &arg);
        if (written != NULL)
            written(c->bev, arg);
        return;
    }
    out = bufferevent_get_output(c->bev);
    if (evbuffer_get_length(out) <= TLS_COALESCE_MAX && evbuffer_peek(out, -1, NULL, NULL, 0) > 1)
        evbuffer_pullup(out, -1);
    if (c->state != CONN_HANDSHAKE)
        bevio_write_soon(c->bev);
}

/* The client closed its side. Between requests or during a head that is simply the end; during an
 * exchange it is an abort (nginx's 499): the server's work is abandoned at once rather than kept
 * for a client that half-closed, which HTTP/1.1 clients do not do in practice. */
static void
client_eof(struct conn *c)
{
    c->client_eof = true;
    conn_close_now(c, REASON_CLIENT_ABORTED);
}

static void
client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;

    if (c->state == CONN_HANDSHAKE) {
        if (what & BEV_EVENT_CONNECTED)
            handshake_done(c);
        else
            handshake_failed(c, what);
        return;
    }
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING))
        conn_fail(c, 408, REASON_CLIENT_TIMEOUT); /* request body stalled */
    else if (what & BEV_EVENT_TIMEOUT)
        conn_close_now(c, REASON_CLIENT_SEND_TIMEOUT);
    else if (what & BEV_EVENT_ERROR)
        conn_close_now(c, REASON_CLIENT_ABORTED);
    else if (what & BEV_EVENT_EOF)
        client_eof(c);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    if (c->reads_too_slowly) {
        log_debug("client %s: takes %llu bytes in %llu ms of waiting: too slow; closing",
                  c->client, (unsigned long long)c->read_pace.bytes,
                  (unsigned long long)(c->read_pace.waited_us / 1000));
        conn_close_now(c, REASON_CLIENT_SEND_TIMEOUT);
        return;
    }
    switch (c->state) {
    case CONN_PROXY_HEADER: conn_close_now(c, REASON_NONE); break;
    case CONN_HANDSHAKE:
        log_handshake_failure(c, REASON_TLS_HANDSHAKE_TIMEOUT, 0);
        conn_close_now(c, REASON_TLS_HANDSHAKE_TIMEOUT);
        break;
    case CONN_READING_HEAD: conn_fail(c, 408, REASON_CLIENT_TIMEOUT); break;
    case CONN_TUNNEL: conn_close_now(c, REASON_TUNNEL_IDLE); break;
    case CONN_CONNECTING_UPSTREAM: /* fall through: the timer is the hedge delay */
    case CONN_STREAMING: conn_hedge_timer(c); break;
    case CONN_IDLE:    /* keep-alive expired: close without a word, as HTTP allows */
    case CONN_CLOSING: /* flush or linger over */
        conn_close_now(c, REASON_NONE);
        break;
    default: break;
    }
}

static void
free_cb(evutil_socket_t fd, short what, void *arg)
{
    conn_free(arg);
}

/* ---- life: TLS handshake, creation, drain, free ------------------------------------------------ */

/* TLS: at most this many handshake failures are logged per second per worker; all are counted. */
#define HANDSHAKE_LOG_PER_S 10

static void
log_handshake_failure(struct conn *c, enum reason why, unsigned long ssl_error)
{
    static _Thread_local uint64_t window_us;
    static _Thread_local unsigned logged, suppressed;
    uint64_t now = clock_mono_us();
    char detail[160] = "";

    worker_count(c->w, why);
    if (now - window_us >= 1000000) {
        if (suppressed > 0)
            log_info("tls: %u more handshake failures not logged", suppressed);
        window_us = now;
        logged = suppressed = 0;
    }
    if (logged++ >= HANDSHAKE_LOG_PER_S) {
        suppressed++;
        return;
    }
    if (ssl_error != 0)
        ERR_error_string_n(ssl_error, detail, sizeof(detail));
    log_info("tls: handshake from %s failed: %s%s%s", c->client, reason_name(why),
             detail[0] ? ": " : "", detail);
}

static void
handshake_done(struct conn *c)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);

    c->tls_version = SSL_get_version(ssl);
    c->tls_cipher = SSL_get_cipher_name(ssl);
    if (c->listener->stats != NULL)
        stat_add(&c->listener->stats->handshakes, 1);
    conn_set_state(c, CONN_IDLE);
    conn_arm_timer(c, c->cfg->timeouts.client_header_ms);
    bevio_tls_handshake_done(c->bev);
}

static void
handshake_failed(struct conn *c, short what)
{
    unsigned long e = bufferevent_get_openssl_error(c->bev);
    enum reason why = e != 0 ? tls_handshake_reason(e) : REASON_CLIENT_ABORTED;

    ERR_clear_error();
    if (why != REASON_CLIENT_ABORTED || !(what & BEV_EVENT_EOF))
        log_handshake_failure(c, why, e);
    conn_close_now(c, why);
}

static void
describe_client(struct conn *c, const struct sockaddr *sa)
{
    memcpy(&c->peer, sa, sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                   : sizeof(struct sockaddr_in));
    addr_host_string(sa, c->client_ip, sizeof(c->client_ip));
    snprintf(c->client, sizeof(c->client), sa->sa_family == AF_INET6 ? "[%s]:%u" : "%s:%u",
             c->client_ip, addr_port(sa));
}

/* The client socket as a bufferevent: plain, or TLS in the accepting state. */
static struct bufferevent *
client_bev(struct conn *c, evutil_socket_t fd)
{
    struct bufferevent *bev;
    SSL *ssl;

    if (c->tls == NULL) {
        bev = bufferevent_socket_new(c->w->base, fd, BEV_OPT_CLOSE_ON_FREE);
        if (bev != NULL)
            bevio_own_reads(bev);
        return bev;
    }
    ssl = tls_server_ssl_new(c->tls);
    if (ssl == NULL)
        return NULL;
    bev = bufferevent_openssl_socket_new(c->w->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    /* Clients often close without close_notify; every message here is length-framed anyway. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    bevio_tls_read_ahead(bev);
    return bev;
}

/* Every change to what waits for the client: while bytes wait, the client is the one keeping
 * trident waiting (pace.h). A client that takes a byte now and then, just inside the per-write
 * timeout, is closed once it is slower than limits.client_read_min_rate allows; the close runs
 * from the timer, not from inside the bufferevent's write. */
static void
client_output_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct conn *c = arg;
    uint64_t now = clock_coarse_us();
    struct pace *p = &c->read_pace;

    (void)buf;
    p->bytes += info->n_deleted;
    pace_stop(p, now); /* the wait so far counts at every change, not only once drained */
    if (info->orig_size + info->n_added - info->n_deleted != 0)
        pace_wait(p, now);
    if (info->n_deleted > 0 && !c->reads_too_slowly && c->state != CONN_CLOSED &&
        pace_too_slow(p, c->cfg->timeouts.client_send_ms, c->cfg->limits.client_read_min_rate)) {
        c->reads_too_slowly = true;
        conn_arm_timer(c, 0);
    }
}

static void
setup_bev(struct conn *c)
{
    const struct limits_conf *lim = &c->cfg->limits;

    bufferevent_setcb(c->bev, client_read_cb, client_write_cb, client_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, (size_t)lim->buffer_bytes);
    bufferevent_setwatermark(c->bev, EV_WRITE, (size_t)lim->buffer_bytes / 2, 0);
    bufferevent_set_max_single_read(c->bev, MAX_SINGLE_IO);
    bufferevent_set_max_single_write(c->bev, MAX_SINGLE_IO);
    c->output_cb = evbuffer_add_cb(bufferevent_get_output(c->bev), client_output_cb, c);
    set_client_timeouts(c, 0);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* The client's bytes can flow: the socket becomes a bufferevent (plain, or TLS in its
 * handshake), and the first request (or the handshake) has its deadline. */
static int
open_stream(struct conn *c)
{
    c->bev = client_bev(c, c->fd);
    if (c->bev == NULL)
        return -1;
    setup_bev(c);
    if (c->tls != NULL) {
        c->state = CONN_HANDSHAKE;
        conn_arm_timer(c, c->listener->conf->tls->handshake_timeout_ms);
    } else {
        c->state = CONN_IDLE;
        conn_arm_timer(c, c->cfg->timeouts.client_header_ms);
    }
    return 0;
}

/* CONN_PROXY_HEADER: the balancer's header names the client. Peeked until whole, then exactly
 * its bytes are taken from the socket, so that what follows (a ClientHello, a request) is
 * read by the bufferevent as if nothing came before. */
static void
proxy_header_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    uint8_t buf[PROXYPROTO_V2_MAX];
    struct sockaddr_storage src;
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_PEEK);
    int len;

    const struct listener_conf *l = c->listener->conf;

    (void)what;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    /* with trusted_proxies, only those balancers may name clients */
    if (l->ntrusted_proxies > 0 && !trusted_proxy(l, &c->peer))
        n = 0;
    len = n > 0 ? proxyproto_parse(buf, (size_t)n, &src) : PROXYPROTO_INVALID;
    if (len == PROXYPROTO_MORE && (size_t)n < sizeof(buf))
        return;
    if (len <= 0 || recv(fd, buf, (size_t)len, 0) != len) {
        log_debug("client %s: no valid PROXY protocol header; closing", c->client);
        worker_count(c->w, REASON_PROXY_HEADER);
        conn_close_now(c, REASON_NONE);
        return;
    }
    event_free(c->pp_ev);
    c->pp_ev = NULL;
    if (src.ss_family != AF_UNSPEC) /* else (UNKNOWN, LOCAL) the balancer speaks for itself */
        describe_client(c, (const struct sockaddr *)&src);
    if (!worker_admit(c->w, (const struct sockaddr *)&c->peer, &c->ip_counted)) {
        conn_close_now(c, REASON_NONE);
        return;
    }
    if (open_stream(c) < 0)
        conn_close_now(c, REASON_RESOURCE);
}

struct conn *
conn_new(struct listener_rt *l, evutil_socket_t fd, const struct sockaddr *sa, socklen_t salen)
{
    struct worker *w = l->w;
    struct conn *c = calloc(1, sizeof(*c));
    int one = 1;

    if (c == NULL) {
        close(fd);
        return NULL;
    }
    c->w = w;
    c->req_phase = REQ_DONE; /* no request body is being read (REQ_BODY implies an exchange) */
    c->listener = l;
    l->refs++;
    c->fd = fd;
    c->tls = l->tls != NULL ? tls_server_ref(l->tls) : NULL;
    c->router = router_ref(w->router);
    c->cfg = c->router->cfg;
    describe_client(c, sa);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->timer = evtimer_new(w->base, timer_cb, c);
    c->free_ev = event_new(w->base, -1, 0, free_cb, c);
    c->up_head = evbuffer_new();
    if (c->timer == NULL || c->free_ev == NULL || c->up_head == NULL) {
        conn_free(c);
        return NULL;
    }
    http_msg_init(&c->req, HTTP_REQUEST, (uint32_t)c->cfg->limits.max_header_bytes,
                  (uint32_t)c->cfg->limits.max_header_count);
    if (l->conf->proxy_protocol) {
        c->state = CONN_PROXY_HEADER;
        /* edge-triggered: the header is peeked, not taken, until whole; a level-triggered event
         * would fire on every loop turn while a partial header waits */
        c->pp_ev = event_new(w->base, fd, EV_READ | EV_PERSIST | EV_ET, proxy_header_cb, c);
        if (c->pp_ev == NULL || event_add(c->pp_ev, NULL) < 0) {
            conn_free(c);
            return NULL;
        }
        conn_arm_timer(c, c->cfg->timeouts.client_header_ms);
        return c;
    }
    if (open_stream(c) < 0) {
        conn_free(c);
        return NULL;
    }
    return c;
}

void
conn_drain(struct conn *c)
{
    /* Busy connections see the worker's state when their response head is written and after it:
     * they answer with Connection: close and end there. */
    if (c->state == CONN_IDLE || c->state == CONN_PROXY_HEADER)
        conn_close_now(c, REASON_NONE);
}

void
conn_free(struct conn *c)
{
    if (c->w != NULL && c->state == CONN_CLOSED)
        worker_conn_closed(c->w, c);
    release_exchange(c);
    upstream_free(c->up);
    upstream_free(c->hedge);
    if (c->bev != NULL) {
        if (c->output_cb != NULL)
            evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->output_cb);
        tls_keep_session(c->bev);
        bufferevent_free(c->bev); /* closes the socket */
    } else {
        close(c->fd);
    }
    if (c->pp_ev != NULL)
        event_free(c->pp_ev);
    if (c->timer != NULL)
        event_free(c->timer);
    if (c->free_ev != NULL)
        event_free(c->free_ev);
    if (c->up_head != NULL)
        evbuffer_free(c->up_head);
    http_msg_release(&c->req);
    tls_server_unref(c->tls);
    router_unref(c->router);
    listener_rt_unref(c->listener);
    free(c);
}
