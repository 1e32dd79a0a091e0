/*
 * conn_int: what the three files of the client connection share (conn.c: accept to request head,
 * request body, closing; conn_response.c: the server's side; tunnel.c: after a 101). Not a public
 * interface: only those three include it.
 */
#ifndef TRIDENT_CONN_INT_H
#define TRIDENT_CONN_INT_H

#include "conn.h"
#include "rewrite.h"
#include "upstream.h"

/* conn.c */
void conn_set_state(struct conn *c, enum conn_state to);
void conn_arm_timer(struct conn *c, int ms);
void conn_disarm_timer(struct conn *c);
void conn_set_client_read_timeout(struct conn *c, int ms);
void conn_fail(struct conn *c, int status, enum reason why);
/* Answer with `status` (when no response started) and close; Retry-After and an HTML body when
 * given. conn_fail() is this without them. */
void conn_answer(struct conn *c, int status, enum reason why, int retry_after, const char *html,
                 size_t html_len);
void conn_close_after_flush(struct conn *c);
void conn_update_flow(struct conn *c);

/* Plain client connections: write what is queued now (bevio_flush) instead of on the next loop
 * turn, and run the write callback's work if it all went. */
void conn_flush_client(struct conn *c);
/* The same for the current server connection. */
void conn_flush_upstream(struct conn *c);

/* The request's client: named by a trusted proxy, else the connection's peer. */
static inline const struct sockaddr *
conn_client_addr(const struct conn *c)
{
    return (const struct sockaddr *)(c->x->client.ss_family != AF_UNSPEC ? &c->x->client
                                                                         : &c->peer);
}
/* got more request body bytes were taken from the client: answer 408 (returns -1) when the
 * body is slower than limits.client_body_min_rate allows (pace.h); else start the waiting clock
 * if everything was taken. */
int conn_body_paced(struct conn *c, uint64_t got);
void conn_drop_upstream(struct conn *c);
void conn_exchange_done(struct conn *c);

/* conn_upstream.c: attempts, retries, hedging, the request towards the server */
void conn_start_attempt(struct conn *c);
void conn_upstream_ready(struct conn *c);
void conn_request_body(struct conn *c);
bool conn_retry(struct conn *c, bool connect_failed, int status, enum reason why);
bool conn_retry_fresh(struct conn *c, short what);
void conn_hedge_timer(struct conn *c);
void conn_hedge_ready(struct conn *c);
void conn_drop_hedge(struct conn *c);
void conn_promote_hedge(struct conn *c);
void conn_hedge_won(struct conn *c);
void conn_hedge_failed(struct conn *c);

/* conn_response.c: the handlers an upstream reports to while it serves this connection, as its
 * attempt or as its hedge */
extern const struct upstream_handler conn_upstream_handler;
extern const struct upstream_handler conn_hedge_handler;

/* conn_affinity.c: sticky sessions. Before the first attempt: whether the request must wait
 * (CONN_ROUTING) for Redis to name the session's server; conn_start_attempt() runs again when it
 * has. At the response head: the Set-Cookie of a new session (into cookie, kept by the caller)
 * and the mapping stored where it changed. */
bool conn_affinity_route(struct conn *c);
void conn_affinity_response(struct conn *c, struct rewrite_response_ctx *ctx, char *cookie,
                            size_t cookie_len);
void conn_affinity_cancel(struct conn *c);

/* conn_ratelimit.c: rate limits. At the head: 0, or 429 (c->x->rate.retry_after_s set) when a
 * local bucket refuses. Before the first attempt: whether the request waits (CONN_ROUTING) for
 * the fleet's count in Redis; conn_start_attempt() runs again when it has, or the request is
 * answered 429. */
int conn_ratelimit_head(struct conn *c, const struct access_request *r, const char *path);
bool conn_ratelimit_route(struct conn *c);
void conn_ratelimit_cancel(struct conn *c);

/* tunnel.c */
void tunnel_start(struct conn *c);

/* An exchange is open from the first byte of a request head until its log line is written. Its
 * memory (c->x) lives a little longer: until the connection is idle again or freed. */
static inline bool
conn_exchange_open(const struct conn *c)
{
    return c->x != NULL && (c->state == CONN_READING_HEAD || c->state == CONN_BUFFERING_BODY ||
           c->state == CONN_ROUTING || c->state == CONN_CONNECTING_UPSTREAM ||
           c->state == CONN_STREAMING || c->state == CONN_TUNNEL);
}

/* The whole request is kept (no body, or one read whole): another attempt can resend it. */
static inline bool
conn_replayable(const struct conn *c)
{
    return c->x->req_body.kind == BODY_NONE || c->x->body_buffered;
}

/* HTTP/1.1's keep-alive race: a connection taken from the pool that the server closed (not a
 * timeout) before any byte of a response, i.e. as the request went out. Says nothing about the
 * server; the request may be sent again on a fresh connection. */
static inline bool
conn_keepalive_race(const struct attempt_times *at, short what, const struct upstream *u)
{
    return at->pooled && !(what & BEV_EVENT_TIMEOUT) && u->resp.head_bytes == 0;
}

/* A response head (or an error page) has been queued to the client. */
static inline bool
conn_response_started(const struct conn *c)
{
    return c->x->status != 0;
}

#endif
