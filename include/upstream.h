/*
 * upstream: one TCP connection from a worker to a server. It is CONNECTING, then ACTIVE while it
 * carries one exchange for a client connection (whose handler receives its events), then either
 * freed or IDLE in its server's pool until reused. It owns the response parser of that connection,
 * since responses are that connection's byte stream. Choosing the server is router.c's job; the
 * pool is upstream_pool.c's.
 */
#ifndef TRIDENT_UPSTREAM_H
#define TRIDENT_UPSTREAM_H

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdbool.h>
#include <sys/queue.h>

#include "config-t.h"
#include "http.h"

struct server_rt;
struct upstream_pool;

/* Where an ACTIVE (or CONNECTING) connection reports. `arg` is the handler's own object. */
struct upstream_handler {
    void (*on_connected)(void *arg);
    void (*on_read)(void *arg);
    void (*on_drained)(void *arg);           /* output fell to the low watermark */
    void (*on_event)(void *arg, short what); /* BEV_EVENT_EOF / ERROR / TIMEOUT bits */
};

enum upstream_state {
    UPSTREAM_CONNECTING, /* TCP connect in flight; the connect timeout runs */
    UPSTREAM_ACTIVE,     /* carrying an exchange for its handler */
    UPSTREAM_IDLE,       /* in a pool: read only to notice the server closing it */
};

struct upstream {
    enum upstream_state state;
    struct bufferevent *bev;
    struct server_rt *server;
    struct http_msg resp; /* response parser of this connection */
    const struct upstream_handler *h;
    void *arg;
    unsigned uses;                  /* exchanges begun on this connection */
    struct upstream_pool *pool;     /* IDLE: the pool holding it */
    TAILQ_ENTRY(upstream) pool_link;
};

/* Start connecting to server `s`. Returns a CONNECTING upstream that reports to h/arg, or NULL
 * when no socket could be created (errno set). The caller owns the result. */
struct upstream *upstream_connect(struct event_base *base, struct server_rt *s,
                                  const struct config *cfg, const struct upstream_handler *h,
                                  void *arg);

/* Hand an upstream taken from a pool to a new owner: it becomes ACTIVE and reports to h/arg. */
void upstream_attach(struct upstream *u, const struct upstream_handler *h, void *arg);

/* Change who an ACTIVE or CONNECTING upstream reports to, nothing else. */
void upstream_set_handler(struct upstream *u, const struct upstream_handler *h, void *arg);

/* Whether the connection speaks TLS, and whether TLS (handshake, verification) made it fail. */
bool upstream_is_tls(const struct upstream *u);
bool upstream_tls_failed(const struct upstream *u);

/* Close and free. Accepts NULL. Must not be called on an upstream that is still in a pool. */
void upstream_free(struct upstream *u);

/* The same, but the server sees the connection reset (RST), not closed (FIN): a request cut off
 * mid-body is then an unmistakable abort, never a short message that ends cleanly. */
void upstream_abort(struct upstream *u);

#endif
