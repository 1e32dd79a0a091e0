/*
 * router: where a request goes. Per worker, built from one config: the clusters (one per hosting
 * provider) and their servers with their balancer state and keep-alive pools. All clusters are
 * active at once: a cluster is chosen by cluster weight (smooth weighted round-robin), then a
 * server inside it by the cluster's strategy. Health state (the health issue) plugs in by setting
 * the `usable` flags before a pick; nothing here is shared between threads.
 */
#ifndef TRIDENT_ROUTER_H
#define TRIDENT_ROUTER_H

#include <stddef.h>

#include "balancer.h"
#include "config-t.h"
#include "upstream_pool.h"

#include <openssl/ssl.h>

struct cluster_rt;
struct tls_client;

struct server_rt {
    const struct server_conf *conf;
    const struct cluster_rt *cluster;
    struct balancer_peer *peer; /* this server's entry in cluster->peers */
    struct upstream_pool pool;
    char tls_name[256];         /* TLS: SNI and the name its certificate must carry */
    SSL_SESSION *tls_session;   /* TLS: the last session, resumed by the next connection */
};

struct cluster_rt {
    const struct cluster_conf *conf;
    const struct balancer_ops *ops;
    struct server_rt *servers;
    struct balancer_peer *peers;
    size_t nservers;
    struct tls_client *tls;     /* NULL: plain HTTP to this cluster */
};

struct router {
    struct config *cfg; /* a reference: the router lives as long as the snapshot it routes by */
    struct cluster_rt *clusters;
    struct balancer_peer *cluster_peers;
    size_t nclusters;
};

/* Build the routing state for cfg (takes its own reference), including the TLS client contexts of
 * clusters that speak TLS. Returns NULL with the reason in err. */
struct router *router_new(struct config *cfg, char *err, size_t errlen);

/* Free the router, its pools' idle connections and its config reference. Accepts NULL. */
void router_free(struct router *r);

/* Choose a server for a new request, or NULL when none can take one. */
struct server_rt *router_pick(struct router *r);

/* A request starts / stops using s (least_conn counts these). */
static inline void
router_begin(struct server_rt *s)
{
    s->peer->active++;
}

static inline void
router_end(struct server_rt *s)
{
    s->peer->active--;
}

#endif
