/*
 * hcheck: one active health check of one server: a connect (tcp), a TLS handshake (tls), or an
 * HTTP request whose status and optionally body decide (http, over TLS when the cluster speaks
 * TLS). Kinds are a small table of operations over a shared connection; every outcome is a
 * check_reason with its layer. Runs on the health thread's event loop; knows nothing about
 * server states (health.c decides what a verdict means).
 */
#ifndef TRIDENT_HCHECK_H
#define TRIDENT_HCHECK_H

#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdint.h>

#include "addr.h"
#include "config-t.h"
#include "health.h"

struct tls_client;

struct hcheck_target {
    struct addr addr;             /* where to connect (the check port already applied) */
    const struct health_conf *hc;
    struct tls_client *tls;       /* NULL: plain */
    const char *tls_name;         /* SNI and verified name */
    SSL_SESSION **tls_session;    /* resumed and refreshed */
    const char *host;             /* http: Host header */
};

/* Receives the verdict exactly once, from the event loop (never from inside hcheck_start). It may
 * free the check. `status` is the HTTP status for http checks that got one, else 0. */
typedef void (*hcheck_done_cb)(void *arg, enum check_reason verdict, int status,
                               uint64_t elapsed_us);

struct hcheck;

/* Start a check of target `t` (copied). Returns the running check, owned by the caller, or NULL
 * when out of memory. */
struct hcheck *hcheck_start(struct event_base *base, const struct hcheck_target *t,
                            hcheck_done_cb cb, void *arg);

/* Cancel (if running) and free. Accepts NULL. Safe inside the done callback. */
void hcheck_free(struct hcheck *c);

/* ---- for the kinds (hcheck_http.c) ---- */

struct hcheck_ops {
    void (*connected)(struct hcheck *c); /* the connection (and TLS) is up */
    void (*readable)(struct hcheck *c);  /* bytes arrived */
    void (*eof)(struct hcheck *c);       /* the server closed */
};

extern const struct hcheck_ops hcheck_http_ops;

/* Deliver the verdict (once) and stop all I/O. */
void hcheck_finish(struct hcheck *c, enum check_reason verdict, int status);

/* The check's connection and target, for the kinds. */
struct bufferevent *hcheck_bev(struct hcheck *c);
const struct hcheck_target *hcheck_target(const struct hcheck *c);

/* Per-check scratch for http: the response parser and collected body. */
struct http_msg *hcheck_http_msg(struct hcheck *c);
char *hcheck_body(struct hcheck *c, size_t *len, size_t *cap);
void hcheck_body_set_len(struct hcheck *c, size_t len);

#endif
