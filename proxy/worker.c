/*
 * worker: a thread with its own event loop. Accepts on its own SO_REUSEPORT sockets, owns its
 * connections, and acts on commands from the main thread: drain, stop, a new generation (reload),
 * changed server states.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "access_log.h"
#include "clock.h"
#include "config.h"
#include "conn-t.h"
#include "conn.h"
#include "health.h"
#include "limiter.h"
#include "log.h"
#include "redis.h"
#include "router.h"
#include "session_cache.h"
#include "stats.h"
#include "tls.h"
#include "worker.h"

#define ACCEPT_RETRY_MS 100 /* pause after an accept error such as EMFILE, instead of spinning */
#define PAGE_MAX (1 << 20)  /* a maintenance page is small; refuse to load a huge file */

/* ---- accepting --------------------------------------------------------------------------------- */

static void
pause_accept(struct worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i]->ev != NULL)
            evconnlistener_disable(w->listeners[i]->ev);
    w->accept_paused = true;
}

static void
resume_accept(struct worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i]->ev != NULL)
            evconnlistener_enable(w->listeners[i]->ev);
    w->accept_paused = false;
}

/* A connection over a per-address limit: closed before a byte is read, counted, and logged at
 * most once a second per worker (a flood must not flood the log too). */
static void
refuse_address(struct worker *w, const struct sockaddr *sa, enum limiter_verdict v)
{
    uint64_t now = clock_mono_us();
    char ip[ADDR_TEXT_MAX];

    worker_count(w, v == LIMITER_CONNS ? REASON_IP_CONN_LIMIT : REASON_IP_RATE_LIMIT);
    w->ip_refused++;
    if (now - w->ip_refused_logged_us < 1000000)
        return;
    addr_host_string(sa, ip, sizeof(ip));
    log_warn("worker %d: refused %llu connections over the per-address limits (last from %s: %s)",
             w->id, (unsigned long long)w->ip_refused, ip,
             v == LIMITER_CONNS ? "too many open" : "too many new per second");
    w->ip_refused = 0;
    w->ip_refused_logged_us = now;
}

static void
release_address(struct worker *w, const struct sockaddr *sa)
{
    uint8_t key[16];

    limiter_key_addr(sa, key);
    limiter_release(w->limiter, key, clock_mono_us());
}

/* Per-address limits of the current config: whether this connection may stay, and counted. */
static enum limiter_verdict
admit_address(struct worker *w, const struct sockaddr *sa)
{
    const struct limits_conf *lim = &w->cfg->limits;
    struct limiter_rules r = {
        .max_conns = (uint32_t)lim->max_connections_per_ip,
        .rate = lim->new_connections_per_ip_s,
        .burst = lim->new_connections_per_ip_burst > 0 ? lim->new_connections_per_ip_burst
                                                        : lim->new_connections_per_ip_s,
    };

    uint8_t key[16];

    if (w->limiter == NULL || (r.max_conns == 0 && r.rate == 0))
        return LIMITER_UNTRACKED;
    if (r.burst < 1)
        r.burst = 1;
    limiter_key_addr(sa, key);
    return limiter_acquire(w->limiter, key, &r, clock_mono_us());
}

bool
worker_admit(struct worker *w, const struct sockaddr *sa, bool *counted)
{
    enum limiter_verdict v = admit_address(w, sa);

    *counted = v == LIMITER_OK;
    if (v == LIMITER_CONNS || v == LIMITER_RATE) {
        refuse_address(w, sa, v);
        return false;
    }
    return true;
}

static void
accept_cb(struct evconnlistener *ev, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    struct listener_rt *l = arg;
    struct worker *w = l->w;
    struct conn *c;
    bool counted = false;

    if (w->state != WORKER_RUNNING || w->nconns >= w->max_conns) {
        close(fd);
        return;
    }
    /* behind a PROXY protocol balancer the client is known only once its header is read */
    if (!l->conf->proxy_protocol && !worker_admit(w, sa, &counted)) {
        close(fd);
        return;
    }
    c = conn_new(l, fd, sa, (socklen_t)salen);
    if (c == NULL) {
        if (counted)
            release_address(w, sa);
        log_warn("worker %d: cannot set up a connection", w->id);
        worker_count(w, REASON_RESOURCE);
        return;
    }
    c->ip_counted = counted;
    TAILQ_INSERT_TAIL(&w->conns, c, link);
    if (l->stats != NULL) {
        stat_add(&l->stats->accepted, 1);
        stat_add(&l->stats->active, 1);
    }
    /* At the limit, stop accepting: new connections wait in the kernel's backlog (HAProxy's
     * maxconn) rather than being accepted and dropped. */
    if (++w->nconns >= w->max_conns)
        pause_accept(w);
}

static void
accept_error_cb(struct evconnlistener *ev, void *arg)
{
    struct worker *w = ((struct listener_rt *)arg)->w;
    struct timeval tv = clock_tv_ms(ACCEPT_RETRY_MS);

    log_warn("worker %d: accept: %s; pausing for %d ms", w->id, strerror(errno), ACCEPT_RETRY_MS);
    pause_accept(w);
    evtimer_add(w->retry_ev, &tv);
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;

    if (w->state == WORKER_RUNNING && w->nconns < w->max_conns)
        resume_accept(w);
}

void
worker_conn_closed(struct worker *w, struct conn *c)
{
    TAILQ_REMOVE(&w->conns, c, link);
    w->nconns--;
    if (c->ip_counted)
        release_address(w, (const struct sockaddr *)&c->peer);
    if (c->listener->stats != NULL)
        stat_sub(&c->listener->stats->active, 1);
    if (w->state == WORKER_DRAINING) {
        if (w->nconns == 0)
            event_base_loopexit(w->base, NULL);
        return;
    }
    if (w->accept_paused && w->nconns < w->max_conns && !evtimer_pending(w->retry_ev, NULL))
        resume_accept(w);
}

/* ---- listeners ---------------------------------------------------------------------------------- */

void
listener_rt_unref(struct listener_rt *l)
{
    if (l == NULL || --l->refs > 0)
        return;
    if (l->ev != NULL)
        evconnlistener_free(l->ev);
    tls_server_unref(l->tls);
    config_unref(l->cfg);
    free(l);
}

static void
close_listeners(struct worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++) {
        if (w->listeners[i]->ev != NULL)
            evconnlistener_free(w->listeners[i]->ev);
        w->listeners[i]->ev = NULL;
    }
}

static void
drop_listeners(struct worker *w)
{
    close_listeners(w);
    for (size_t i = 0; i < w->nlisteners; i++)
        listener_rt_unref(w->listeners[i]);
    free(w->listeners);
    w->listeners = NULL;
    w->nlisteners = 0;
}

/* Listener j of generation g: its socket moves over from the current listener the plan keeps,
 * or is the plan's new one. */
static struct listener_rt *
make_listener(struct worker *w, struct worker_generation *g, size_t j)
{
    struct listener_plan *p = &g->plan[j];
    struct listener_rt *l = calloc(1, sizeof(*l));

    if (l == NULL)
        return NULL;
    l->refs = 1;
    l->w = w;
    l->cfg = config_ref(g->cfg);
    l->conf = &g->cfg->listeners[j];
    l->tls = p->tls;
    p->tls = NULL;
    if (g->stats != NULL)
        l->stats = stats_listener(g->stats, l->conf->address, w->id);
    for (size_t i = 0; p->keep && l->ev == NULL && i < w->nlisteners; i++) {
        struct listener_rt *old = w->listeners[i];
        if (old->ev != NULL && addr_equal(&old->conf->addr, &l->conf->addr)) {
            l->ev = old->ev;
            old->ev = NULL;
            evconnlistener_set_cb(l->ev, accept_cb, l);
        }
    }
    if (l->ev == NULL && p->fd >= 0) {
        l->ev = evconnlistener_new(w->base, accept_cb, l, LEV_OPT_CLOSE_ON_FREE, -1, p->fd);
        if (l->ev == NULL)
            close(p->fd);
        p->fd = -1;
    }
    if (l->ev == NULL) {
        listener_rt_unref(l);
        return NULL;
    }
    evconnlistener_set_error_cb(l->ev, accept_error_cb);
    if (w->accept_paused)
        evconnlistener_disable(l->ev);
    return l;
}

/* ---- generations -------------------------------------------------------------------------------- */

/* The HTML answered when no server can take a request, read once per generation. */
static int
load_maintenance_page(struct worker_generation *g, char *err, size_t errlen)
{
    const char *path = g->cfg->failover.maintenance_page;
    FILE *f;
    size_t n;

    if (path == NULL)
        return 0;
    f = fopen(path, "rb");
    g->maintenance_page = malloc(PAGE_MAX);
    n = f != NULL && g->maintenance_page != NULL ? fread(g->maintenance_page, 1, PAGE_MAX, f) : 0;
    if (f != NULL)
        (void)fclose(f); /* read-only: a failure loses nothing */
    if (n == 0 || n == PAGE_MAX) {
        snprintf(err, errlen, "failover.maintenance_page: cannot read %s (or it is empty or "
                              "over 1 MiB)", path);
        return -1;
    }
    g->maintenance_len = n;
    return 0;
}

struct worker_generation *
worker_generation_new(struct config *cfg, struct health *health, struct stats *stats, int id,
                      char *err, size_t errlen)
{
    struct worker_generation *g = calloc(1, sizeof(*g));

    snprintf(err, errlen, "worker %d: out of memory", id);
    if (g == NULL)
        return NULL;
    g->cfg = config_ref(cfg);
    g->health = health != NULL ? health_ref(health) : NULL;
    g->stats = stats;
    g->plan = calloc(cfg->nlisteners, sizeof(*g->plan));
    if (g->plan == NULL)
        goto fail;
    for (size_t j = 0; j < cfg->nlisteners; j++)
        g->plan[j] = (struct listener_plan){.keep = false, .fd = -1};
    g->router = router_new(cfg, health, stats, id, err, errlen);
    if (g->router == NULL || load_maintenance_page(g, err, errlen) < 0)
        goto fail;
    return g;
fail:
    worker_generation_free(g);
    return NULL;
}

void
worker_generation_free(struct worker_generation *g)
{
    if (g == NULL)
        return;
    for (size_t j = 0; g->plan != NULL && j < g->cfg->nlisteners; j++) {
        if (g->plan[j].fd >= 0)
            close(g->plan[j].fd);
        tls_server_unref(g->plan[j].tls);
    }
    free(g->plan);
    router_unref(g->router);
    health_unref(g->health);
    free(g->maintenance_page);
    config_unref(g->cfg);
    free(g);
}

/* Make g current: new listeners (sockets moved or opened), router, config, health, page. What
 * the previous generation held goes when its last connection ends. */
static int
apply_generation(struct worker *w, struct worker_generation *g)
{
    size_t n = g->cfg->nlisteners, k = 0;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers, sizeof(*p) is right */
    struct listener_rt **ls = calloc(n, sizeof(*ls));


    if (ls == NULL)
        return -1;
    for (size_t j = 0; j < n; j++) {
        struct listener_rt *l = make_listener(w, g, j);
        if (l != NULL)
            ls[k++] = l;
        else
            log_error("worker %d: cannot listen on %s", w->id, g->cfg->listeners[j].address);
    }
    drop_listeners(w); /* sockets not moved over close here */
    w->listeners = ls;
    w->nlisteners = k;
    router_unref(w->router);
    w->router = g->router;
    g->router = NULL;
    health_unref(w->health);
    w->health = g->health;
    g->health = NULL;
    config_unref(w->cfg);
    w->cfg = config_ref(g->cfg);
    free(w->maintenance_page);
    w->maintenance_page = g->maintenance_page;
    w->maintenance_len = g->maintenance_len;
    g->maintenance_page = NULL;
    w->max_conns = (unsigned)((w->cfg->limits.max_connections + w->cfg->workers - 1) /
                              w->cfg->workers);
    /* the new router numbers servers afresh: what the cache remembers is void */
    session_cache_free(w->sessions);
    w->sessions = w->cfg->affinity != NULL
                      ? session_cache_new((size_t)w->cfg->affinity->cache_entries)
                      : NULL;
    worker_generation_free(g);
    return 0;
}

static void
take_generation(struct worker *w)
{
    struct worker_generation *g = atomic_exchange(&w->pending, NULL);

    if (g == NULL)
        return;
    if (w->state != WORKER_RUNNING) { /* draining: the old generation finishes the job */
        worker_generation_free(g);
        return;
    }
    if (apply_generation(w, g) < 0) {
        log_error("worker %d: out of memory applying a reload", w->id);
        worker_generation_free(g);
    }
}

void
worker_set_generation(struct worker *w, struct worker_generation *g)
{
    /* A generation never taken is replaced: only the newest matters. */
    worker_generation_free(atomic_exchange(&w->pending, g));
    worker_request(w, WORKER_CMD_RELOAD);
}

/* ---- commands ----------------------------------------------------------------------------------- */

static void
stop_now(struct worker *w)
{
    struct conn *c, *next;

    w->state = WORKER_DRAINING;
    close_listeners(w);
    for (c = TAILQ_FIRST(&w->conns); c != NULL; c = next) {
        next = TAILQ_NEXT(c, link);
        conn_close_now(c, REASON_SHUTDOWN);
    }
    if (w->nconns == 0)
        event_base_loopexit(w->base, NULL);
}

static void
drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;

    log_warn("worker %d: drain timeout: closing %u connections", w->id, w->nconns);
    stop_now(w);
}

static void
start_drain(struct worker *w)
{
    struct timeval tv = clock_tv_ms(w->cfg->timeouts.shutdown_drain_ms);
    struct conn *c, *next;

    if (w->state == WORKER_DRAINING)
        return;
    w->state = WORKER_DRAINING;
    close_listeners(w);
    for (c = TAILQ_FIRST(&w->conns); c != NULL; c = next) {
        next = TAILQ_NEXT(c, link);
        conn_drain(c);
    }
    if (w->nconns == 0)
        event_base_loopexit(w->base, NULL);
    else
        evtimer_add(w->drain_ev, &tv);
}

/* Servers that stopped being usable since the last look: their idle pooled connections are
 * closed (the server is gone or going), and so are tunnels to servers that are down or in
 * maintenance when the cluster says so, so clients reconnect to a healthy server at once. A
 * drained server keeps its tunnels: draining lets what runs finish. */
static void
health_changed(struct worker *w)
{
    struct health_table *t = health_table(w->health);
    struct router *r = w->router;
    struct conn *c, *next;

    for (size_t i = 0; i < r->nclusters; i++) {
        struct cluster_rt *cl = &r->clusters[i];
        for (size_t j = 0; j < cl->nservers; j++) {
            struct server_rt *s = &cl->servers[j];
            const struct server_shared *sh = &t->servers[s->index];
            uint32_t epoch = atomic_load(&sh->down_epoch);

            if (epoch == s->seen_epoch)
                continue;
            s->seen_epoch = epoch;
            upstream_pool_clear(&s->pool);
            if (!cl->conf->close_tunnels_on_down ||
                (atomic_load(&sh->health) != HEALTH_DOWN &&
                 atomic_load(&sh->admin) != ADMIN_MAINTENANCE))
                continue;
            for (c = TAILQ_FIRST(&w->conns); c != NULL; c = next) {
                next = TAILQ_NEXT(c, link);
                if (c->state == CONN_TUNNEL && c->x->server != NULL &&
                    (c->x->server == s || /* or the same server, in a tunnel from before a reload */
                     (c->router != r && strcmp(c->x->server->conf->id, s->conf->id) == 0)))
                    conn_close_now(c, REASON_SERVER_DOWN);
            }
        }
    }
}

static void
ctl_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    uint64_t wakes;
    int cmd;

    (void)what;
    while (read(fd, &wakes, sizeof(wakes)) > 0) /* reset the eventfd's counter */
        ;
    cmd = atomic_exchange(&w->cmd, 0);

    if (cmd & WORKER_CMD_RELOAD)
        take_generation(w);
    if ((cmd & WORKER_CMD_HEALTH) && w->health != NULL)
        health_changed(w);
    if (cmd & WORKER_CMD_STOP)
        stop_now(w);
    else if (cmd & WORKER_CMD_DRAIN)
        start_drain(w);
}

/* Any thread. The worker's loop has no lock (nothing else touches it), so another thread wakes
 * it through an eventfd rather than event_active(). */
void
worker_request(struct worker *w, enum worker_cmd cmd)
{
    uint64_t one = 1;

    atomic_fetch_or(&w->cmd, (int)cmd);
    if (write(w->ctl_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn("worker %d: cannot wake it: %s", w->id, strerror(errno));
}

/* The worker's loop: only its own thread uses it, so no lock (libevent otherwise takes a mutex
 * around every event change); event changes are batched into one epoll_ctl per descriptor per
 * loop turn (a read turned off and on again in one turn costs no system call). */
static struct event_base *
worker_base(void)
{
    struct event_config *ec = event_config_new();
    struct event_base *base;

    if (ec == NULL)
        return NULL;
    event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK | EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    base = event_base_new_with_config(ec);
    event_config_free(ec);
    return base;
}

/* ---- life --------------------------------------------------------------------------------------- */

struct worker *
worker_new(int id, struct worker_generation *g, int alog_fd, struct event *exit_notify,
           struct redis_stats *redis_stats, char *err, size_t errlen)
{
    struct worker *w = calloc(1, sizeof(*w));

    snprintf(err, errlen, "worker %d: out of memory", id);
    if (w == NULL) {
        worker_generation_free(g);
        return NULL;
    }
    w->id = id;
    w->exit_notify = exit_notify;
    TAILQ_INIT(&w->conns);
    straggler_list_init(&w->stragglers);
    atomic_init(&w->cmd, 0);
    atomic_init(&w->exited, false);
    atomic_init(&w->pending, NULL);
    w->ctl_fd = -1;
    w->base = worker_base();
    if (w->base == NULL) {
        worker_generation_free(g);
        goto fail;
    }
    w->alog = access_log_new(w->base, alog_fd);
    w->ctl_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    w->ctl_ev = w->ctl_fd >= 0 ? event_new(w->base, w->ctl_fd, EV_READ | EV_PERSIST, ctl_cb, w)
                               : NULL;
    if (w->ctl_ev != NULL && event_add(w->ctl_ev, NULL) < 0) {
        event_free(w->ctl_ev);
        w->ctl_ev = NULL;
    }
    w->drain_ev = evtimer_new(w->base, drain_timeout_cb, w);
    w->retry_ev = evtimer_new(w->base, retry_cb, w);
    if (w->alog == NULL || w->ctl_ev == NULL || w->drain_ev == NULL || w->retry_ev == NULL ||
        reqid_gen_init(&w->reqids) < 0 || apply_generation(w, g) < 0) {
        if (w->cfg == NULL)
            worker_generation_free(g);
        goto fail;
    }
    if (w->nlisteners < w->cfg->nlisteners) {
        snprintf(err, errlen, "worker %d: a listener could not be set up", id);
        goto fail;
    }
    if (w->cfg->redis != NULL) { /* its settings never change on reload: this config's stay */
        w->redis_cfg = config_ref(w->cfg);
        if ((w->redis = redis_new(w->base, w->cfg->redis, redis_stats)) == NULL)
            goto fail;
    }
    return w;
fail:
    worker_join_free(w);
    return NULL;
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    struct conn *c;

    event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
    /* Whatever the loop left (a stop cut it short): close and free here. */
    while ((c = TAILQ_FIRST(&w->conns)) != NULL) {
        conn_close_now(c, REASON_SHUTDOWN);
        conn_free(c);
    }
    straggler_free_all(&w->stragglers);
    redis_free(w->redis); /* on its own thread, after every connection that used it */
    w->redis = NULL;
    atomic_store(&w->exited, true);
    event_active(w->exit_notify, EV_READ, 0);
    return NULL;
}

int
worker_start(struct worker *w)
{
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
        return -1;
    w->started = true;
    return 0;
}

void
worker_join_free(struct worker *w)
{
    if (w == NULL)
        return;
    if (w->started)
        pthread_join(w->thread, NULL);
    drop_listeners(w);
    worker_generation_free(atomic_exchange(&w->pending, NULL));
    router_unref(w->router);
    health_unref(w->health);
    free(w->maintenance_page);
    redis_free(w->redis);
    config_unref(w->redis_cfg);
    session_cache_free(w->sessions);
    access_log_free(w->alog);
    if (w->ctl_ev != NULL)
        event_free(w->ctl_ev);
    if (w->ctl_fd >= 0)
        close(w->ctl_fd);
    if (w->drain_ev != NULL)
        event_free(w->drain_ev);
    if (w->retry_ev != NULL)
        event_free(w->retry_ev);
    if (w->base != NULL)
        event_base_free(w->base);
    config_unref(w->cfg);
    free(w);
}
