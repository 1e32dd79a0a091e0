/*
 * admin: the admin HTTP endpoint, on the main thread's event loop (which also runs reloads, so a
 * reload and an admin call never race). GET /status (JSON), /metrics (Prometheus text), /healthz;
 * POST /servers/{id}, /clusters/{name}, /providers/{name} followed by /drain, /maintenance or
 * /ready, and POST /reload. A CIDR allowlist applies to everything; mutating calls need a bearer
 * token whose SHA-256 is configured, and each one is written to the audit log. The JSON views are
 * status.c's and the metrics metrics.c's; this module is the HTTP side and the dispatch.
 */
#ifndef TRIDENT_ADMIN_H
#define TRIDENT_ADMIN_H

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "config-t.h"
#include "http.h"

struct health;
struct stats;
struct worker;

/* What the admin endpoint reads. Owned by main and updated by it (on the same thread) when the
 * configuration is reloaded. */
struct admin_env {
    struct config *cfg;
    struct health *health;
    struct stats *stats;
    struct worker **workers;
    int nworkers;
    uint64_t started_us;   /* monotonic */
    struct fleet *fleet;   /* the fleet (a redis section), or NULL */
    struct redis_stats *redis; /* every Redis connection's counters (nredis), or NULL */
    size_t nredis;
    unsigned generation;   /* configurations loaded so far (1 at start) */
    /* Reload the configuration from cfg->path. Returns 0, or -1 with the reason in err. */
    int (*reload)(void *arg, char *err, size_t errlen);
    void *reload_arg;
};

struct admin;

/* Listen on env->cfg->admin->address (socket opened here) with `base`; a NULL base opens no
 * socket (requests then come only through admin_serve(), as in the fuzz target). NULL with the
 * reason in err. */
struct admin *admin_new(struct event_base *base, struct admin_env *env, char *err, size_t errlen);

/* Close the listener and every admin connection. Accepts NULL. */
void admin_free(struct admin *a);

/* Apply a reloaded configuration's admin section (tokens, allowlist, audit log). The listening
 * address itself changes only with a restart. */
void admin_reconfigure(struct admin *a);

/* One request to the admin endpoint: its parser and what its connection knows of the client. */
struct admin_req {
    struct http_msg msg;
    char client[ADDR_TEXT_MAX]; /* for the audit log */
    bool denied;    /* outside admin.allow: refused once the request is read (and audited) */
    bool head_only; /* HEAD: the answer has no body */
    bool answered;
};

/* Prepare r for a request from `client` (text for the audit log). Release with
 * admin_req_release(). */
void admin_req_init(struct admin_req *r, const char *client, bool denied);
void admin_req_release(struct admin_req *r);

/* The endpoint without its socket: parse what `in` holds (draining it) and, once the head is
 * complete or refused, route it and append the whole answer to `out`. A mutating call acts
 * through a's env and writes its audit line. Returns true once r is answered (the connection
 * closes when `out` is flushed; later input is drained unread), false while the head is
 * incomplete. */
bool admin_serve(struct admin *a, struct admin_req *r, struct evbuffer *in, struct evbuffer *out);

/* ---- status.c and metrics.c: the views, built from env ---------------------------------------- */

/* The whole /status document as JSON text (caller frees). */
char *status_json(const struct admin_env *env);

/* Whether trident can serve: at least one cluster has min_healthy usable servers. */
int status_serving(const struct admin_env *env);

/* "disabled" (no redis section), "connected" (every connection), "degraded" (some) or
 * "reconnecting" (none). */
const char *status_redis_state(const struct admin_env *env);

/* Append the Prometheus text exposition of every metric. */
void metrics_write(const struct admin_env *env, struct evbuffer *out);

#endif
