/*
 * router: the per-worker routing table and the two-level pick (cluster, then server).
 */
#include <math.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>

#include <string.h>

#include "clock.h"
#include "config.h"
#include "health.h"
#include "router.h"
#include "tls_upstream.h"
#include "upstream.h"

static void refresh(struct router *r);

static int
cluster_init(struct cluster_rt *c, size_t index, size_t first_server, const struct config *cfg,
             struct stats *stats, int worker, char *err, size_t errlen)
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

        s->index = first_server + i;
        s->conf = &conf->servers[i];
        if (stats != NULL && (s->stats = stats_server(stats, s->conf->id, worker)) == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
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

static int
by_id_cmp(const void *a, const void *b)
{
    return strcmp((*(struct server_rt *const *)a)->conf->id, (*(struct server_rt *const *)b)->conf->id);
}

static int
index_servers(struct router *r)
{
    size_t n = 0;

    for (size_t i = 0; i < r->nclusters; i++)
        r->nservers += r->clusters[i].nservers;
    /* NOLINTBEGIN(bugprone-sizeof-expression): arrays of pointers, sizeof(*p) is right */
    r->by_id = calloc(r->nservers ? r->nservers : 1, sizeof(*r->by_id));
    r->by_index = calloc(r->nservers ? r->nservers : 1, sizeof(*r->by_index));
    /* NOLINTEND(bugprone-sizeof-expression) */
    if (r->by_id == NULL || r->by_index == NULL)
        return -1;
    for (size_t i = 0; i < r->nclusters; i++)
        for (size_t j = 0; j < r->clusters[i].nservers; j++) {
            r->by_index[n] = &r->clusters[i].servers[j];
            r->by_id[n++] = &r->clusters[i].servers[j];
        }
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers, sizeof(*p) is right */
    qsort(r->by_id, n, sizeof(*r->by_id), by_id_cmp);
    return 0;
}

struct server_rt *
router_find(const struct router *r, const char *id, size_t len)
{
    size_t lo = 0, hi = r->nservers;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *m = r->by_id[mid]->conf->id;
        int c = strncmp(m, id, len);
        if (c == 0 && m[len] != '\0')
            c = 1; /* m is longer: it sorts after */
        if (c == 0)
            return r->by_id[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* splitmix64's finaliser over FNV-1a: a fixed function, so every instance agrees. */
static uint64_t
key_score(const uint8_t key[16], const char *id)
{
    uint64_t h = 1469598103934665603ULL;

    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 1099511628211ULL;
    for (const char *p = id; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

/* Weighted rendezvous hashing: each server scores w / -ln(u), u uniform in (0, 1] from the
 * key and its id; the highest wins. w is the server's share of all requests as configured
 * (cluster weight times its share of the cluster), not of the servers up now, so a server going
 * down moves only its own sessions. */
static bool tried(const struct pick_avoid *a, const struct server_rt *s);

static struct server_rt *
choose_among(struct router *r, const uint8_t key[16], const char *provider,
             const struct pick_avoid *avoid)
{
    struct server_rt *best = NULL;
    double best_score = 0;

    for (size_t i = 0; i < r->nclusters; i++) {
        struct cluster_rt *c = &r->clusters[i];
        double total = 0;
        if (!r->cluster_peers[i].usable || c->conf->weight <= 0 ||
            (provider != NULL && strcmp(c->conf->provider, provider) != 0))
            continue;
        for (size_t j = 0; j < c->nservers; j++)
            total += c->servers[j].conf->weight;
        for (size_t j = 0; j < c->nservers; j++) {
            double u, score;
            if (!c->peers[j].usable || c->servers[j].conf->weight <= 0 ||
                (avoid != NULL && tried(avoid, &c->servers[j])))
                continue;
            u = ((double)(key_score(key, c->servers[j].conf->id) >> 11) + 0.5) /
                9007199254740992.0; /* 2^53: u in (0, 1) */
            score = c->conf->weight * (c->servers[j].conf->weight / total) / -log(u);
            if (best == NULL || score > best_score) {
                best = &c->servers[j];
                best_score = score;
            }
        }
    }
    return best;
}

struct server_rt *
router_choose_for_key(struct router *r, const uint8_t key[16], const char *provider)
{
    struct server_rt *s = NULL;

    refresh(r);
    if (provider != NULL)
        s = choose_among(r, key, provider, NULL);
    return s != NULL ? s : choose_among(r, key, NULL, NULL);
}

struct server_rt *
router_choose_for_key_avoiding(struct router *r, const uint8_t key[16],
                               const struct pick_avoid *avoid)
{
    struct server_rt *s = NULL;

    refresh(r);
    if (avoid->provider != NULL)
        s = choose_among(r, key, avoid->provider, avoid);
    return s != NULL ? s : choose_among(r, key, NULL, avoid);
}

struct router *
router_new(struct config *cfg, struct health *health, struct stats *stats, int worker,
           char *err, size_t errlen)
{
    struct router *r = calloc(1, sizeof(*r));
    size_t first = 0;

    snprintf(err, errlen, "out of memory");
    if (r == NULL)
        return NULL;
    r->refs = 1;
    r->health = health != NULL ? health_ref(health) : NULL;
    r->table = health != NULL ? health_table(health) : NULL;
    r->ramping = true; /* compute the peers on the first pick */
    r->cfg = config_ref(cfg);
    r->nclusters = cfg->nclusters;
    r->clusters = calloc(cfg->nclusters, sizeof(*r->clusters));
    r->cluster_peers = calloc(cfg->nclusters, sizeof(*r->cluster_peers));
    if (r->clusters == NULL || r->cluster_peers == NULL)
        goto fail;
    for (size_t i = 0; i < cfg->nclusters; i++) {
        if (cluster_init(&r->clusters[i], i, first, cfg, stats, worker, err, errlen) < 0)
            goto fail;
        first += cfg->clusters[i].nservers;
        r->cluster_peers[i].weight = cfg->clusters[i].weight;
    }
    if (index_servers(r) < 0)
        goto fail;
    return r;
fail:
    router_unref(r);
    return NULL;
}

void
router_unref(struct router *r)
{
    if (r == NULL || --r->refs > 0)
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
    free(r->by_id);
    free(r->by_index);
    config_unref(r->cfg);
    health_unref(r->health);
    free(r);
}

/* Recompute the peers from the health table: usable flags, slow-start weights, and which
 * clusters have min_healthy servers up. Only when the table changed or a server is ramping. */
static void
refresh(struct router *r)
{
    uint64_t gen = r->table != NULL ? atomic_load(&r->table->generation) : 0;
    uint64_t now = clock_mono_us();

    if (gen == r->seen_generation && !r->ramping)
        return;
    r->seen_generation = gen;
    r->ramping = false;
    for (size_t i = 0; i < r->nclusters; i++) {
        struct cluster_rt *c = &r->clusters[i];
        int up = 0;

        for (size_t j = 0; j < c->nservers; j++) {
            struct server_rt *s = &c->servers[j];
            const struct server_shared *sh = r->table ? &r->table->servers[s->index] : NULL;
            uint64_t since = sh ? atomic_load(&sh->up_since_us) : 0;
            int w = s->conf->weight;

            s->peer->usable = sh == NULL || atomic_load(&sh->usable);
            if (s->peer->usable && c->conf->slow_start_ms > 0 && since != 0) {
                w = health_slow_start_weight(w, since, c->conf->slow_start_ms, now);
                r->ramping |= now - since < (uint64_t)c->conf->slow_start_ms * 1000;
            }
            s->peer->weight = w;
            up += s->peer->usable && w > 0;
        }
        r->cluster_peers[i].usable = up > 0 && up >= c->conf->min_healthy;
    }
}

static bool
tried(const struct pick_avoid *a, const struct server_rt *s)
{
    for (size_t i = 0; a != NULL && i < a->ntried; i++)
        if (a->tried[i] == s)
            return true;
    return false;
}

/* Pick a server of cluster c that is not in a->tried; restores the flags it masked. */
static int
pick_server(struct cluster_rt *c, const struct pick_avoid *a)
{
    bool saved[c->nservers];
    int si;

    for (size_t j = 0; j < c->nservers; j++) {
        saved[j] = c->peers[j].usable;
        if (tried(a, &c->servers[j]))
            c->peers[j].usable = false;
    }
    si = c->ops->pick(c->peers, c->nservers);
    for (size_t j = 0; j < c->nservers; j++)
        /* cppcheck-suppress uninitvar ; the loop above set saved[0..nservers) (a VLA it misreads) */
        c->peers[j].usable = saved[j];
    return si;
}

static bool
cluster_has_untried(const struct cluster_rt *c, const struct pick_avoid *a)
{
    for (size_t j = 0; j < c->nservers; j++)
        if (c->peers[j].usable && c->peers[j].weight > 0 && !tried(a, &c->servers[j]))
            return true;
    return false;
}

static struct server_rt *
pick_masked(struct router *r, const struct pick_avoid *a, bool avoid_provider)
{
    bool saved[r->nclusters];
    int ci, si = -1;

    for (size_t i = 0; i < r->nclusters; i++) {
        saved[i] = r->cluster_peers[i].usable;
        if ((avoid_provider && strcmp(r->clusters[i].conf->provider, a->provider) == 0) ||
            !cluster_has_untried(&r->clusters[i], a))
            r->cluster_peers[i].usable = false;
    }
    ci = balancer_swrr.pick(r->cluster_peers, r->nclusters);
    for (size_t i = 0; i < r->nclusters; i++)
        /* cppcheck-suppress uninitvar ; the loop above set saved[0..nclusters) (a VLA it misreads) */
        r->cluster_peers[i].usable = saved[i];
    if (ci >= 0)
        si = pick_server(&r->clusters[ci], a);
    return si < 0 ? NULL : &r->clusters[ci].servers[si];
}

struct server_rt *
router_pick(struct router *r, const struct pick_avoid *avoid)
{
    struct server_rt *s = NULL;

    refresh(r);
    if (avoid == NULL || (avoid->ntried == 0 && avoid->provider == NULL)) {
        int si, ci = balancer_swrr.pick(r->cluster_peers, r->nclusters);
        if (ci < 0)
            return NULL;
        si = r->clusters[ci].ops->pick(r->clusters[ci].peers, r->clusters[ci].nservers);
        return si < 0 ? NULL : &r->clusters[ci].servers[si];
    }
    if (avoid->provider != NULL)
        s = pick_masked(r, avoid, true);
    return s != NULL ? s : pick_masked(r, avoid, false);
}

/* Out by passive evidence only: see router_pick_panic(). */
static bool
passively_out(const struct server_shared *sh)
{
    uint8_t why = atomic_load(&sh->last_reason);

    return atomic_load(&sh->admin) == ADMIN_READY &&
           (why == CHECK_PASSIVE_CONNECT || why == CHECK_PASSIVE_TIMEOUT ||
            why == CHECK_PASSIVE_5XX || why == CHECK_BREAKER);
}

struct server_rt *
router_pick_panic(struct router *r, const struct pick_avoid *avoid)
{
    struct server_rt *pick = NULL;

    if (r->table == NULL || r->nservers == 0 || router_any_usable(r))
        return NULL;
    for (size_t k = 0; k < r->nservers; k++) {
        struct server_rt *s = r->by_index[k];
        const struct server_shared *sh = &r->table->servers[s->index];
        if (s->conf->weight > 0 && s->cluster->conf->weight > 0 && !passively_out(sh))
            return NULL; /* something else says no: the immediate 503 stands */
    }
    for (size_t k = 0; k < r->nservers && pick == NULL; k++) {
        struct server_rt *s = r->by_index[(r->panic_next + k) % r->nservers];
        if (s->conf->weight > 0 && s->cluster->conf->weight > 0 && !tried(avoid, s))
            pick = s;
    }
    r->panic_next++;
    return pick;
}

bool
router_server_usable(const struct router *r, const struct server_rt *s)
{
    return r->table == NULL || atomic_load(&r->table->servers[s->index].usable);
}

bool
router_server_failed(const struct router *r, const struct server_rt *s)
{
    const struct server_shared *sh;

    if (r->table == NULL)
        return false;
    sh = &r->table->servers[s->index];
    if (atomic_load(&sh->usable))
        return false;
    return atomic_load(&sh->health) == HEALTH_DOWN || atomic_load(&sh->admin) != ADMIN_DRAINING;
}

bool
router_any_usable(struct router *r)
{
    refresh(r);
    for (size_t i = 0; i < r->nclusters; i++)
        if (r->cluster_peers[i].usable)
            return true;
    return false;
}

void
router_observe_latency(struct cluster_rt *c, uint64_t us)
{
    uint64_t dev;

    if (c->latency_samples++ == 0) {
        c->srtt_us = us;
        c->rttvar_us = us / 2;
        return;
    }
    dev = us > c->srtt_us ? us - c->srtt_us : c->srtt_us - us;
    c->rttvar_us = (3 * c->rttvar_us + dev) / 4;
    c->srtt_us = (7 * c->srtt_us + us) / 8;
}

#define HEDGE_TOKENS_MAX 10.0 /* a burst of hedges after a quiet period, no more */

void
router_hedge_credit(struct router *r, int pct)
{
    r->hedge_tokens += pct / 100.0;
    if (r->hedge_tokens > HEDGE_TOKENS_MAX)
        r->hedge_tokens = HEDGE_TOKENS_MAX;
}

bool
router_hedge_take(struct router *r, int pct)
{
    if (pct <= 0 || r->hedge_tokens < 1.0)
        return false;
    r->hedge_tokens -= 1.0;
    return true;
}

void
router_begin(struct server_rt *s)
{
    s->peer->active++;
    if (s->stats != NULL) {
        stat_add(&s->stats->requests, 1);
        stat_add(&s->stats->active, 1);
    }
}

void
router_end(struct server_rt *s)
{
    s->peer->active--;
    if (s->stats != NULL)
        stat_sub(&s->stats->active, 1);
}
