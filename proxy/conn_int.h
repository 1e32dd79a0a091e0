/*
 * conn_int: what the three files of the client connection share (conn.c: accept to request head,
 * request body, closing; conn_response.c: the server's side; tunnel.c: after a 101). Not a public
 * interface: only those three include it.
 */
#ifndef TRIDENT_CONN_INT_H
#define TRIDENT_CONN_INT_H

#include "conn.h"
#include "upstream.h"

/* conn.c */
void conn_set_state(struct conn *c, enum conn_state to);
void conn_arm_timer(struct conn *c, int ms);
void conn_fail(struct conn *c, int status, enum reason why);
void conn_close_after_flush(struct conn *c);
void conn_update_flow(struct conn *c);
void conn_drop_upstream(struct conn *c);
void conn_connect_upstream(struct conn *c);
void conn_upstream_ready(struct conn *c);
void conn_exchange_done(struct conn *c);

/* conn_response.c: the handler an upstream reports to while it serves this connection */
extern const struct upstream_handler conn_upstream_handler;

/* tunnel.c */
void tunnel_start(struct conn *c);

/* An exchange is open from the first byte of a request head until its log line is written. */
static inline bool
conn_exchange_open(const struct conn *c)
{
    return c->state == CONN_READING_HEAD || c->state == CONN_CONNECTING_UPSTREAM ||
           c->state == CONN_STREAMING || c->state == CONN_TUNNEL;
}

/* A response head (or an error page) has been queued to the client. */
static inline bool
conn_response_started(const struct conn *c)
{
    return c->x.status != 0;
}

#endif
