/*
 * router: where a request goes. Per worker, built from one config: the clusters (one per hosting
 * provider) and their servers with their balancer state and keep-alive pools. All clusters are
 * active at once: a cluster is chosen by cluster weight (smooth weighted round-robin), then a
 * server inside it by the cluster's strategy. Health state (the health issue) plugs in by setting
 * the `usable` flags before a pick; nothing here is shared between threads.
 */
#ifndef TRIDENT_ROUTER_H
#define TRIDENT_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "balancer.h"
#include "config-t.h"
#include "stats.h"
#include "upstream_pool.h"

#include <openssl/ssl.h>

struct cluster_rt;
struct health_table;
struct server_stats;
struct stats;
struct tls_client;

struct server_rt {
    size_t index;               /* in the config (and the health table), all clusters counted */
    uint32_t seen_epoch;        /* the health table's down_epoch last acted on */
    const struct server_conf *conf;
    const struct cluster_rt *cluster;
    struct balancer_peer *peer; /* this server's entry in cluster->peers */
    struct upstream_pool pool;
    char tls_name[256];         /* TLS: SNI and the name its certificate must carry */
    SSL_SESSION *tls_session;   /* TLS: the last session, resumed by the next connection */
    struct server_stats *stats; /* this worker's counters for the server; NULL: not counted */
};

struct cluster_rt {
    const struct cluster_conf *conf;
    const struct balancer_ops *ops;
    struct server_rt *servers;
    struct balancer_peer *peers;
    size_t nservers;
    struct tls_client *tls;     /* NULL: plain HTTP to this cluster */
    /* response times (request sent to response head), RFC 6298's estimator, for hedging */
    uint64_t srtt_us, rttvar_us;
    unsigned latency_samples;
};

struct router {
    int refs;           /* the worker's and each connection's (one thread: not atomic) */
    struct config *cfg; /* a reference: the router lives as long as the snapshot it routes by */
    struct health *health;      /* a reference, or NULL (tools, tests) */
    struct cluster_rt *clusters;
    struct balancer_peer *cluster_peers;
    size_t nclusters;
    struct health_table *table; /* NULL: every server usable (tools, tests) */
    uint64_t seen_generation;   /* the table's generation the peers were computed from */
    bool ramping;               /* a server is in slow start: recompute weights on every pick */
    double hedge_tokens;        /* hedges this worker may still start (the hedge budget) */
    struct server_rt **by_id;   /* every server, sorted by id (router_find) */
    struct server_rt **by_index; /* every server, by its index (router_at) */
    size_t nservers;
    size_t panic_next;          /* where the next panic pick starts (spreads them) */
};

/* What a pick must avoid: servers already tried for this request, and the provider that just
 * failed (preferred against, not forbidden: another provider is taken if one can serve). */
struct pick_avoid {
    struct server_rt *const *tried;
    size_t ntried;
    const char *provider;
};

/* Build the routing state for cfg (takes its own reference), reading server states from
 * `health`'s table (takes a reference; may be NULL) and counting into worker `worker`'s slots of
 * `stats` (may be NULL), including the TLS client contexts of clusters that speak TLS. Returns a
 * router with one reference, or NULL with the reason in err. */
struct router *router_new(struct config *cfg, struct health *health, struct stats *stats,
                          int worker, char *err, size_t errlen);

/* References from the owning worker's thread only. The last unref frees the router, its pools'
 * idle connections, and its config and health references. router_unref accepts NULL. */
static inline struct router *
router_ref(struct router *r)
{
    r->refs++;
    return r;
}

void router_unref(struct router *r);

/* Choose a server for a request, or NULL when none can take one. `avoid` may be NULL. */
struct server_rt *router_pick(struct router *r, const struct pick_avoid *avoid);

/* No server is usable and every one that is out was taken out by failures of real traffic
 * alone (passive checks, the provider breaker), not by an active check, an operator or the
 * fleet: such ejections can be an artefact of overload on this side (timeouts while the machine
 * is starved), and taking the whole service out for eject_ms on that evidence is worse than
 * trying. Envoy calls this panic routing. A server not in avoid->tried, in turn; NULL: none. */
struct server_rt *router_pick_panic(struct router *r, const struct pick_avoid *avoid);

/* The server with config index i, or NULL. */
static inline struct server_rt *
router_at(const struct router *r, size_t i)
{
    return i < r->nservers ? r->by_index[i] : NULL;
}

/* The server with this id, or NULL. */
struct server_rt *router_find(const struct router *r, const char *id, size_t len);

/* A server for a session that has none (or whose server cannot serve): the same one on every
 * instance with the same view of the fleet (rendezvous hashing of the session key over usable
 * servers), at `provider` if one of its servers can serve, else anywhere. NULL: none usable. */
struct server_rt *router_choose_for_key(struct router *r, const uint8_t key[16],
                                        const char *provider);

/* The same for a session whose attempt failed: the servers in avoid->tried are left out (the
 * failed one may not be marked down yet), and avoid->provider (the failed server's) comes first,
 * as for any session that moves. NULL: none left. */
struct server_rt *router_choose_for_key_avoiding(struct router *r, const uint8_t key[16],
                                                 const struct pick_avoid *avoid);

/* Whether server s takes new requests right now (the health table, not the last computed peers):
 * a connection to a server that went down mid-request must not go back to a pool. */
bool router_server_usable(const struct router *r, const struct server_rt *s);

/* Whether s stopped serving for a reason that dooms the requests it holds: down (checks, passive
 * evidence, the fleet) or in maintenance. A drain is not one: a draining server takes no new
 * request (not usable) but finishes the ones it has. */
bool router_server_failed(const struct router *r, const struct server_rt *s);

/* Whether any cluster can take a request (for the all-down answer). */
bool router_any_usable(struct router *r);

/* A response head arrived `us` after its request was sent: feed the cluster's estimator. */
void router_observe_latency(struct cluster_rt *c, uint64_t us);

/* A new request earns pct/100 of a hedge; taking one costs a whole one. Returns whether one
 * was available (and takes it). */
void router_hedge_credit(struct router *r, int pct);
bool router_hedge_take(struct router *r, int pct);

/* A request starts / stops using s (least_conn counts these; so does the active gauge). */
void router_begin(struct server_rt *s);
void router_end(struct server_rt *s);

#endif
