/*
 * router: the per-worker routing table and the two-level pick (cluster, then server).
 */
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "router.h"
#include "tls_upstream.h"
#include "upstream.h"

static int
cluster_init(struct cluster_rt *c, size_t index, const struct config *cfg, char *err,
             size_t errlen)
{
    const struct cluster_conf *conf = &cfg->clusters[index];

    c->conf = conf;
    c->ops = balancer_for((enum balance_kind)conf->balance);
    c->nservers = conf->nservers;
    c->servers = calloc(conf->nservers, sizeof(*c->servers));
    c->peers = calloc(conf->nservers, sizeof(*c->peers));
    if (c->servers == NULL || c->peers == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (conf->tls != NULL && (c->tls = tls_client_new(conf->tls, index, err, errlen)) == NULL)
        return -1;
    for (size_t i = 0; i < conf->nservers; i++) {
        struct server_rt *s = &c->servers[i];

        s->conf = &conf->servers[i];
        s->cluster = c;
        s->peer = &c->peers[i];
        s->peer->weight = s->conf->weight;
        s->peer->usable = true;
        upstream_pool_init(&s->pool, (unsigned)cfg->limits.upstream_keepalive,
                           cfg->timeouts.upstream_idle_ms);
        if (s->conf->tls_name != NULL)
            snprintf(s->tls_name, sizeof(s->tls_name), "%s", s->conf->tls_name);
        else
            tls_client_default_name(s->conf->address, s->tls_name, sizeof(s->tls_name));
    }
    return 0;
}

struct router *
router_new(struct config *cfg, char *err, size_t errlen)
{
    struct router *r = calloc(1, sizeof(*r));

    snprintf(err, errlen, "out of memory");
    if (r == NULL)
        return NULL;
    r->cfg = config_ref(cfg);
    r->nclusters = cfg->nclusters;
    r->clusters = calloc(cfg->nclusters, sizeof(*r->clusters));
    r->cluster_peers = calloc(cfg->nclusters, sizeof(*r->cluster_peers));
    if (r->clusters == NULL || r->cluster_peers == NULL)
        goto fail;
    for (size_t i = 0; i < cfg->nclusters; i++) {
        if (cluster_init(&r->clusters[i], i, cfg, err, errlen) < 0)
            goto fail;
        r->cluster_peers[i].weight = cfg->clusters[i].weight;
    }
    return r;
fail:
    router_free(r);
    return NULL;
}

void
router_free(struct router *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; r->clusters != NULL && i < r->nclusters; i++) {
        struct cluster_rt *c = &r->clusters[i];
        for (size_t j = 0; c->servers != NULL && j < c->nservers; j++) {
            upstream_pool_clear(&c->servers[j].pool);
            SSL_SESSION_free(c->servers[j].tls_session);
        }
        tls_client_free(c->tls);
        free(c->servers);
        free(c->peers);
    }
    free(r->clusters);
    free(r->cluster_peers);
    config_unref(r->cfg);
    free(r);
}

/* A cluster can take a request while one of its servers can. */
static bool
cluster_usable(const struct cluster_rt *c)
{
    for (size_t i = 0; i < c->nservers; i++)
        if (c->peers[i].usable && c->peers[i].weight > 0)
            return true;
    return false;
}

struct server_rt *
router_pick(struct router *r)
{
    int ci, si;

    for (size_t i = 0; i < r->nclusters; i++)
        r->cluster_peers[i].usable = cluster_usable(&r->clusters[i]);
    ci = balancer_swrr.pick(r->cluster_peers, r->nclusters);
    if (ci < 0)
        return NULL;
    si = r->clusters[ci].ops->pick(r->clusters[ci].peers, r->clusters[ci].nservers);
    return si < 0 ? NULL : &r->clusters[ci].servers[si];
}
