/*
 * conn_upstream: a client connection's requests on their way to servers. Each attempt picks a
 * server (avoiding the ones already tried and the provider that just failed), takes a pooled
 * connection or connects, and sends the kept head and body. Failures are retried when retry.c
 * allows it; a slow idempotent request may be hedged: sent to a second provider after a delay
 * derived from the cluster's recent response times, the first response head winning. Responses
 * are conn_response.c's; the client socket is conn.c's.
 */
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "config-t.h"
#include "bevio.h"
#include "conn_int.h"
#include "errpage.h"
#include "health.h"
#include "log.h"
#include "passive.h"
#include "retry.h"
#include "router.h"
#include "stats.h"
#include "straggler.h"
#include "worker.h"

#define HEDGE_FIRST_MS 250 /* hedge delay before a cluster has any response time measured */
#define HEDGE_MIN_MS   10
#define WATCH_MIN_MS   50  /* a request not hedged (yet) looks at its server's health this often */
#define VERDICT_MIN_MS 100 /* a lost attempt's server has at least this long more to answer */
#define VERDICT_DELAYS 5   /* ... or this many hedge delays, if longer */

/* ---- sending ------------------------------------------------------------------------------- */

/* The request is wholly queued to u: from now on silence from the server is its slowness. */
static void
queued(struct conn *c, struct upstream *u)
{
    const struct timeouts_conf *t = &c->cfg->timeouts;
    struct timeval resp = clock_tv_ms(t->upstream_response_ms);
    struct timeval send = clock_tv_ms(t->upstream_send_ms);

    bufferevent_set_timeouts(u->bev, &resp, &send);
    if (u == c->up)
        c->x->attempt.sent_us = clock_mono_us();
    else if (u == c->hedge)
        c->x->hedge.sent_us = clock_mono_us();
}

/* Copy, not move: the source is kept for the next attempt (at most retry_body_bytes). */
static void
copy_buffer(struct evbuffer *dst, struct evbuffer *src)
{
    size_t n = evbuffer_get_length(src);

    if (n > 0)
        evbuffer_add(dst, evbuffer_pullup(src, -1), n);
}

/* Head and the buffered body to u. A replayable request keeps both for the next attempt. */
static void
send_request(struct conn *c, struct upstream *u)
{
    struct evbuffer *out = bufferevent_get_output(u->bev);
    struct evbuffer *body = c->x->body; /* NULL: no body, or one that streams */

    copy_buffer(out, c->up_head);
    if (body != NULL && conn_replayable(c))
        copy_buffer(out, body);
    else if (body != NULL)
        evbuffer_add_buffer(out, body); /* the prefix of a body too big to keep */
    u->uses++;
    http_msg_reset(&u->resp);
}

void
conn_request_body(struct conn *c)
{
    struct body *b = &c->x->req_body;
    uint64_t before = b->wire_in;
    enum body_step st;

    st = body_pump(b, bufferevent_get_input(c->bev), bufferevent_get_output(c->up->bev));
    c->x->bytes_in += b->wire_in - before;
    switch (st) {
    case BODY_AGAIN:
        conn_update_flow(c);
        if (conn_body_paced(c, b->wire_in - before) == 0)
            conn_flush_upstream(c);
        return;
    case BODY_DONE:
        c->req_phase = REQ_DONE;
        conn_set_client_read_timeout(c, 0);
        queued(c, c->up);
        conn_update_flow(c);
        conn_flush_upstream(c);
        return;
    case BODY_ERR_LIMIT: conn_fail(c, 413, REASON_BODY_TOO_LARGE); return;
    case BODY_ERR_SYNTAX: conn_fail(c, 400, REASON_BAD_REQUEST); return;
    }
}

static void arm_hedge(struct conn *c);

void
conn_upstream_ready(struct conn *c)
{
    struct timeval send = clock_tv_ms(c->cfg->timeouts.upstream_send_ms);
    struct upstream *u = c->up;

    conn_set_state(c, CONN_STREAMING);
    c->resp_phase = RESP_HEAD;
    c->x->attempt.connected_us = clock_mono_us();
    bufferevent_set_timeouts(u->bev, NULL, &send);
    bufferevent_enable(u->bev, EV_READ | EV_WRITE);
    send_request(c, u);
    if (c->req_phase == REQ_BODY) {
        conn_set_client_read_timeout(c, c->cfg->timeouts.client_body_ms);
        conn_request_body(c);
        return;
    }
    queued(c, u);
    arm_hedge(c);
    conn_update_flow(c);
    conn_flush_upstream(c);
}

void
conn_flush_upstream(struct conn *c)
{
    if (c->up != NULL && c->state == CONN_STREAMING && !upstream_is_tls(c->up) &&
        bevio_flush(c->up->bev))
        conn_update_flow(c);
}

static void arm_hedge(struct conn *c);

/* ---- attempts ---------------------------------------------------------------------------------- */

static struct upstream *
open_upstream(struct conn *c, struct server_rt *s, const struct upstream_handler *h, bool *pooled)
{
    /* a request conn_retry_fresh() can send again needs no look before (HAProxy's way); the
     * others (a POST, a streamed body) are not sent into a connection the server closed */
    bool verify = !conn_replayable(c) || !retry_method_idempotent(c->req.parser.method);
    struct upstream *u = c->x->fresh_only ? NULL : upstream_pool_take(&s->pool, verify);

    c->x->fresh_only = false;
    *pooled = u != NULL;
    if (u != NULL) {
        upstream_attach(u, h, c);
        return u;
    }
    if (s->stats != NULL)
        stat_add(&s->stats->connections, 1);
    return upstream_connect(bufferevent_get_base(c->bev), s, c->cfg, h, c);
}

/* No server can take the request at all: 503 at once, with Retry-After, as JSON or the
 * configured maintenance page. Never a hang. */
static void
answer_all_down(struct conn *c)
{
    const struct failover_conf *f = &c->cfg->failover;

    conn_answer(c, 503, REASON_NO_SERVER, f->retry_after_s, c->w->maintenance_page,
                c->w->maintenance_len);
}

void
conn_start_attempt(struct conn *c)
{
    struct pick_avoid avoid = {c->x->tried, c->x->ntried, c->x->failed_provider};
    struct server_rt *s = c->x->aff.server;
    bool pooled;

    if (c->x->attempts == 0) {
        if (conn_ratelimit_route(c) || conn_affinity_route(c)) {
            if (c->state != CONN_ROUTING) /* the rate verdict may lead to the session lookup */
                conn_set_state(c, CONN_ROUTING); /* lookup_cb starts the attempt */
            return;
        }
        c->x->first_attempt_us = clock_mono_us();
        router_hedge_credit(c->router, c->cfg->failover.hedge_budget_pct);
        s = c->x->aff.server;
    }
    /* the session's server first, while it serves; then the balancer. A session's retry goes
     * where the session will move: the same provider first, the same server on every instance. */
    if (c->x->attempts > 0 && c->x->aff.keyed && c->x->aff.server != NULL)
        s = c->x->ntried < CONN_MAX_ATTEMPTS
                ? router_choose_for_key_avoiding(c->router, c->x->aff.key, &avoid)
                : NULL;
    else if (c->x->attempts > 0 || s == NULL || !router_server_usable(c->router, s))
        s = c->x->ntried < CONN_MAX_ATTEMPTS ? router_pick(c->router, &avoid) : NULL;
    if (s == NULL && c->x->ntried < CONN_MAX_ATTEMPTS &&
        (s = router_pick_panic(c->router, &avoid)) != NULL)
        worker_count(c->w, REASON_PANIC);
    if (s == NULL) {
        /* Nothing could take it: all down for a new request; for one that already failed
         * somewhere, that failure (502/504) says more than "no server". */
        if (c->x->attempts == 0)
            answer_all_down(c);
        else
            conn_fail(c, c->x->fail_status, c->x->fail_reason);
        return;
    }
    c->x->server = s;
    c->x->tried[c->x->ntried++] = s;
    if (c->x->attempts++ > 0 && s->stats != NULL)
        stat_add(&s->stats->retries, 1);
    router_begin(s);
    conn_set_state(c, CONN_CONNECTING_UPSTREAM);
    c->x->attempt = (struct attempt_times){.connect_start_us = clock_mono_us()};
    c->up = open_upstream(c, s, &conn_upstream_handler, &pooled);
    c->x->attempt.pooled = pooled;
    if (c->up == NULL) {
        log_warn("connect to server %s: cannot create a socket", s->conf->id);
        conn_fail(c, 503, REASON_RESOURCE);
    } else if (pooled) {
        conn_upstream_ready(c);
    } else {
        arm_hedge(c); /* a connect into a blackhole is as slow as a silent server */
    }
}

/* Leave the current attempt's server: its count, and the connection (never back to a pool). */
static void
leave_server(struct conn *c)
{
    conn_drop_upstream(c);
    if (c->x->server != NULL) {
        c->x->failed_provider = c->x->server->cluster->conf->provider;
        router_end(c->x->server);
        c->x->server = NULL;
    }
}

bool
conn_retry(struct conn *c, bool connect_failed, int status, enum reason why)
{
    const struct failover_conf *f = &c->cfg->failover;
    struct retry_facts facts = {
        .connect_failed = connect_failed,
        .idempotent = retry_method_idempotent(c->req.parser.method),
        .replayable = conn_replayable(c),
        .response_started = conn_response_started(c),
        .attempts = c->x->attempts,
        .max_retries = (unsigned)f->retries,
        .elapsed_us = clock_mono_us() - c->x->first_attempt_us,
        .budget_us = (uint64_t)f->retry_budget_ms * 1000,
    };

    if (!retry_allowed(&facts))
        return false;
    log_debug("request %s: %s on server %s; retrying elsewhere", c->x->id, reason_name(why),
              c->x->server->conf->id);
    c->x->fail_status = status;
    c->x->fail_reason = why;
    conn_drop_hedge(c);
    leave_server(c);
    conn_disarm_timer(c);
    worker_count(c->w, REASON_RETRIED);
    conn_start_attempt(c);
    return true;
}

/* A pooled connection the server closed just as the request went out (HTTP/1.1's keep-alive
 * race): the same server again, on a fresh connection, when no byte of a response came back and
 * the request is idempotent and replayable: the server may have processed it, so a POST is
 * never sent twice. Not a failure of the server. */
bool
conn_retry_fresh(struct conn *c, short what)
{
    struct server_rt *s = c->x->server;

    if (!conn_keepalive_race(&c->x->attempt, what, c->up) || c->resp_phase != RESP_HEAD ||
        !conn_replayable(c) || !retry_method_idempotent(c->req.parser.method) ||
        c->x->attempts >= CONN_MAX_ATTEMPTS)
        return false;
    if (c->hedge != NULL) { /* the request already runs elsewhere: that attempt takes over */
        log_debug("server %s: reused connection closed before the response; the hedge takes over",
                  s->conf->id);
        conn_promote_hedge(c);
        return true;
    }
    log_debug("server %s: reused connection closed before the response; retrying",
              s->conf->id);
    conn_drop_upstream(c);
    router_end(s);
    c->x->server = NULL; /* ended: finish_exchange must not end it again */
    c->x->ntried--;      /* the same server is picked again, on purpose */
    c->x->fresh_only = true;
    c->x->failed_provider = NULL;
    /* should no server take it now (put in maintenance meanwhile), the client is told what
     * happened, not a status 0 */
    c->x->fail_status = 502;
    c->x->fail_reason = REASON_UPSTREAM_RESET;
    conn_start_attempt(c);
    return true;
}

/* ---- hedging ----------------------------------------------------------------------------------- */

/* RFC 6298's estimator: smoothed response time plus four deviations. */
static int
hedge_delay_ms(const struct conn *c)
{
    const struct cluster_rt *cl = c->x->server->cluster;
    int ms;

    if (c->cfg->failover.hedge_delay_ms > 0)
        return c->cfg->failover.hedge_delay_ms;
    if (cl->latency_samples == 0)
        return HEDGE_FIRST_MS;
    ms = (int)((cl->srtt_us + 4 * cl->rttvar_us) / 1000);
    return ms < HEDGE_MIN_MS ? HEDGE_MIN_MS : ms;
}

static void
arm_hedge(struct conn *c)
{
    const struct failover_conf *f = &c->cfg->failover;

    if (!f->hedge || c->hedge != NULL || c->x->hedged || !conn_replayable(c) ||
        !retry_method_idempotent(c->req.parser.method) || c->x->info.websocket)
        return;
    if (hedge_delay_ms(c) * 2 > c->cfg->timeouts.upstream_response_ms)
        return; /* a hedge this late would not beat the timeout by much */
    conn_arm_timer(c, hedge_delay_ms(c));
}

/* The request is not sent elsewhere now: look again at its server's health after a hedge
 * delay (at least WATCH_MIN_MS). */
static void
watch(struct conn *c)
{
    int ms = hedge_delay_ms(c);

    conn_arm_timer(c, ms < WATCH_MIN_MS ? WATCH_MIN_MS : ms);
}

/* Where a slow request's second attempt goes, or NULL for none (yet). Once its server has
 * failed (down by checks, passive evidence or the fleet; maintenance: router_server_failed), a
 * request waits for it no longer: it goes where a retry would (a session's, where the session
 * moves), outside the hedge budget. A draining server finishes what it has. While the server
 * serves, a request of a sticky session is its server's (the server holds the session's state,
 * and a quick answer from another one is a wrong one): it is never hedged. Any other request is
 * weighed for a hedge once, at the first expiry: to another provider, within the budget. A
 * request not sent elsewhere keeps watching its server. */
static struct server_rt *
hedge_target(struct conn *c)
{
    struct pick_avoid avoid = {c->x->tried, c->x->ntried, c->x->server->cluster->conf->provider};
    struct server_rt *s = NULL;

    if (router_server_failed(c->router, c->x->server)) {
        s = c->x->aff.keyed ? router_choose_for_key_avoiding(c->router, c->x->aff.key, &avoid)
                            : router_pick(c->router, &avoid);
    } else if (!c->x->aff.keyed && !c->x->hedge_considered) {
        c->x->hedge_considered = true;
        s = router_pick(c->router, &avoid);
        if (s != NULL && (strcmp(s->cluster->conf->provider, avoid.provider) == 0 ||
                          !router_hedge_take(c->router, c->cfg->failover.hedge_budget_pct)))
            s = NULL;
    }
    if (s == NULL)
        watch(c);
    return s;
}

/* The hedge delay passed without a response head (or without even a connection): the same
 * request to another server, hedge_target()'s. */
void
conn_hedge_timer(struct conn *c)
{
    struct server_rt *s;
    bool pooled;

    if ((c->state == CONN_STREAMING && c->resp_phase != RESP_HEAD) || c->hedge != NULL ||
        c->x->ntried >= CONN_MAX_ATTEMPTS || (s = hedge_target(c)) == NULL)
        return;
    c->x->hedge = (struct attempt_times){.connect_start_us = clock_mono_us()};
    c->hedge = open_upstream(c, s, &conn_hedge_handler, &pooled);
    if (c->hedge == NULL)
        return;
    c->x->hedge.pooled = pooled;
    log_debug("request %s: no response from %s after %d ms; hedging to %s", c->x->id,
              c->x->server->conf->id, hedge_delay_ms(c), s->conf->id);
    c->x->hedged = true;
    c->x->hedge_server = s;
    c->x->tried[c->x->ntried++] = s;
    c->x->attempts++;
    router_begin(s);
    worker_count(c->w, REASON_HEDGED);
    if (s->stats != NULL)
        stat_add(&s->stats->hedges, 1);
    if (pooled)
        conn_hedge_ready(c);
}

void
conn_hedge_ready(struct conn *c)
{
    struct upstream *u = c->hedge;

    c->x->hedge.connected_us = clock_mono_us();
    bufferevent_enable(u->bev, EV_READ | EV_WRITE);
    send_request(c, u);
    queued(c, u);
}

/* The hedge failed (refused, reset, invalid, silent): it ends, and the first attempt goes on,
 * watched as a request that was not hedged. */
void
conn_hedge_failed(struct conn *c)
{
    conn_drop_hedge(c);
    watch(c);
}

void
conn_drop_hedge(struct conn *c)
{
    if (c->hedge == NULL)
        return;
    upstream_free(c->hedge);
    c->hedge = NULL;
    router_end(c->x->hedge_server);
    c->x->hedge_server = NULL;
}

/* The hedge's response head came first: the first attempt is kept as a straggler, so that its
 * server is judged by what it does next, not by the race it lost (straggler.h). */
void
conn_hedge_won(struct conn *c)
{
    struct upstream *loser = c->up;
    int verdict_ms = hedge_delay_ms(c) * VERDICT_DELAYS;

    if (verdict_ms < VERDICT_MIN_MS)
        verdict_ms = VERDICT_MIN_MS;
    if (verdict_ms > c->cfg->timeouts.upstream_response_ms)
        verdict_ms = c->cfg->timeouts.upstream_response_ms;
    c->up = NULL;
    if (c->x->server->stats != NULL)
        stat_add(&c->x->server->stats->hedges_lost, 1);
    /* the straggler's request still runs there: it keeps the server's count (least_conn) */
    straggler_keep(&c->w->stragglers, c->router, c->x->server, loser, c->x->attempt.pooled,
                   verdict_ms);
    c->x->server = NULL;
    conn_promote_hedge(c);
}

/* The hedge answered first, or the first attempt failed while the hedge runs: the hedge becomes
 * the exchange's attempt and the other is closed. The connection's state follows the hedge's:
 * still connecting (it will send the request when connected), or waiting for the response. */
void
conn_promote_hedge(struct conn *c)
{
    struct upstream *u = c->hedge;

    conn_drop_upstream(c);
    if (c->x->server != NULL) /* NULL: conn_hedge_won() gave it to a straggler */
        router_end(c->x->server);
    c->x->server = c->x->hedge_server;
    c->x->attempt = c->x->hedge; /* its send time, if it sent: queued() sets it when it does */
    c->up = u;
    c->hedge = NULL;
    c->x->hedge_server = NULL;
    upstream_set_handler(u, &conn_upstream_handler, c);
    conn_disarm_timer(c);
    if (u->state == UPSTREAM_CONNECTING) {
        if (c->state != CONN_CONNECTING_UPSTREAM)
            conn_set_state(c, CONN_CONNECTING_UPSTREAM);
        return;
    }
    if (c->state != CONN_STREAMING) {
        conn_set_state(c, CONN_STREAMING);
        c->resp_phase = RESP_HEAD;
    }
}
