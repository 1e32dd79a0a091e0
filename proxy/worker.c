/*
 * worker: a thread with its own event loop. Accepts on its own SO_REUSEPORT sockets, owns its
 * connections, and acts on commands from the main thread: drain, stop, new TLS contexts.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access_log.h"
#include "clock.h"
#include "config.h"
#include "conn.h"
#include "health.h"
#include "log.h"
#include "conn-t.h"
#include "router.h"
#include "tls.h"
#include "worker.h"

#define ACCEPT_RETRY_MS 100 /* pause after an accept error such as EMFILE, instead of spinning */

static void
pause_accept(struct worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i].ev != NULL)
            evconnlistener_disable(w->listeners[i].ev);
    w->accept_paused = true;
}

static void
resume_accept(struct worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i].ev != NULL)
            evconnlistener_enable(w->listeners[i].ev);
    w->accept_paused = false;
}

static void
accept_cb(struct evconnlistener *ev, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    struct listener_rt *l = arg;
    struct worker *w = l->w;
    struct conn *c;

    if (w->state != WORKER_RUNNING || w->nconns >= w->max_conns) {
        close(fd);
        return;
    }
    c = conn_new(l, fd, sa, (socklen_t)salen);
    if (c == NULL) {
        log_warn("worker %d: cannot set up a connection", w->id);
        worker_count(w, REASON_RESOURCE);
        return;
    }
    TAILQ_INSERT_TAIL(&w->conns, c, link);
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
    if (w->state == WORKER_DRAINING) {
        if (w->nconns == 0)
            event_base_loopexit(w->base, NULL);
        return;
    }
    if (w->accept_paused && w->nconns < w->max_conns && !evtimer_pending(w->retry_ev, NULL))
        resume_accept(w);
}

static void
close_listeners(struct worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++) {
        if (w->listeners[i].ev != NULL)
            evconnlistener_free(w->listeners[i].ev);
        w->listeners[i].ev = NULL;
    }
}

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

static void
take_tls(struct worker *w)
{
    struct tls_server **tls = atomic_exchange(&w->pending_tls, NULL);

    if (tls == NULL)
        return;
    for (size_t i = 0; i < w->nlisteners; i++) {
        tls_server_unref(w->listeners[i].tls);
        w->listeners[i].tls = tls[i];
    }
    free(tls);
}

/* Servers that stopped being usable since the last look: their idle pooled connections are
 * closed (the server is gone or going), and so are tunnels to them when the cluster says so, so
 * that clients reconnect to a healthy server at once instead of hanging. */
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
            uint32_t epoch = atomic_load(&t->servers[s->index].down_epoch);

            if (epoch == s->seen_epoch)
                continue;
            s->seen_epoch = epoch;
            upstream_pool_clear(&s->pool);
            if (!cl->conf->close_tunnels_on_down)
                continue;
            for (c = TAILQ_FIRST(&w->conns); c != NULL; c = next) {
                next = TAILQ_NEXT(c, link);
                if (c->state == CONN_TUNNEL && c->x.server == s)
                    conn_close_now(c, REASON_SERVER_DOWN);
            }
        }
    }
}

static void
ctl_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    int cmd = atomic_exchange(&w->cmd, 0);

    if (cmd & WORKER_CMD_TLS)
        take_tls(w);
    if ((cmd & WORKER_CMD_HEALTH) && w->health != NULL)
        health_changed(w);
    if (cmd & WORKER_CMD_STOP)
        stop_now(w);
    else if (cmd & WORKER_CMD_DRAIN)
        start_drain(w);
}

void
worker_request(struct worker *w, enum worker_cmd cmd)
{
    atomic_fetch_or(&w->cmd, (int)cmd);
    event_active(w->ctl_ev, EV_READ, 0);
}

static void
free_tls_array(struct tls_server **tls, size_t n)
{
    for (size_t i = 0; tls != NULL && i < n; i++)
        tls_server_unref(tls[i]);
    free(tls);
}

void
worker_set_tls(struct worker *w, struct tls_server **tls)
{
    /* A set that was never taken is replaced: only the newest matters. */
    free_tls_array(atomic_exchange(&w->pending_tls, tls), w->nlisteners);
    worker_request(w, WORKER_CMD_TLS);
}

/* Wraps each socket in a listener, which then owns it. On failure the sockets not yet wrapped
 * are closed here, so the caller never has to know which ones were taken. */
static int
open_listeners(struct worker *w, const int *fds, struct tls_server **tls)
{
    size_t i = 0, n = w->cfg->nlisteners;

    w->listeners = calloc(n, sizeof(*w->listeners));
    if (w->listeners == NULL)
        goto fail;
    w->nlisteners = n;
    for (; i < n; i++) {
        struct listener_rt *l = &w->listeners[i];

        l->w = w;
        l->conf = &w->cfg->listeners[i];
        l->tls = tls[i] != NULL ? tls_server_ref(tls[i]) : NULL;
        l->ev = evconnlistener_new(w->base, accept_cb, l, LEV_OPT_CLOSE_ON_FREE, -1, fds[i]);
        if (l->ev == NULL)
            goto fail;
        evconnlistener_set_error_cb(l->ev, accept_error_cb);
    }
    return 0;
fail:
    for (; i < n; i++)
        close(fds[i]);
    return -1;
}

#define PAGE_MAX (1 << 20) /* a maintenance page is small; refuse to load a huge file */

/* The HTML answered when no server can take a request, read once per worker. */
static int
load_maintenance_page(struct worker *w, char *err, size_t errlen)
{
    const char *path = w->cfg->failover.maintenance_page;
    FILE *f;
    size_t n;

    if (path == NULL)
        return 0;
    f = fopen(path, "rb");
    w->maintenance_page = malloc(PAGE_MAX);
    n = f != NULL && w->maintenance_page != NULL ? fread(w->maintenance_page, 1, PAGE_MAX, f) : 0;
    if (f != NULL)
        fclose(f);
    if (n == 0 || n == PAGE_MAX) {
        snprintf(err, errlen, "failover.maintenance_page: cannot read %s (or it is empty or "
                              "over 1 MiB)", path);
        return -1;
    }
    w->maintenance_len = n;
    return 0;
}

struct worker *
worker_new(int id, struct config *cfg, const int *fds, struct tls_server **tls,
           struct health *health, int alog_fd, struct event *exit_notify, char *err, size_t errlen)
{
    struct worker *w = calloc(1, sizeof(*w));

    snprintf(err, errlen, "worker %d: out of memory", id);
    if (w == NULL) {
        for (size_t i = 0; i < cfg->nlisteners; i++)
            close(fds[i]);
        return NULL;
    }
    w->id = id;
    w->cfg = config_ref(cfg);
    w->exit_notify = exit_notify;
    w->health = health;
    TAILQ_INIT(&w->conns);
    w->max_conns = (unsigned)((cfg->limits.max_connections + cfg->workers - 1) / cfg->workers);
    atomic_init(&w->cmd, 0);
    atomic_init(&w->exited, false);
    atomic_init(&w->pending_tls, NULL);
    w->base = event_base_new();
    if (w->base == NULL) {
        for (size_t i = 0; i < cfg->nlisteners; i++)
            close(fds[i]);
        goto fail;
    }
    if (open_listeners(w, fds, tls) < 0)
        goto fail;
    w->router = router_new(cfg, health != NULL ? health_table(health) : NULL, err, errlen);
    w->alog = access_log_new(w->base, alog_fd);
    w->ctl_ev = event_new(w->base, -1, 0, ctl_cb, w);
    w->drain_ev = evtimer_new(w->base, drain_timeout_cb, w);
    w->retry_ev = evtimer_new(w->base, retry_cb, w);
    if (w->router == NULL || w->alog == NULL || w->ctl_ev == NULL || w->drain_ev == NULL ||
        w->retry_ev == NULL || reqid_gen_init(&w->reqids) < 0 ||
        load_maintenance_page(w, err, errlen) < 0)
        goto fail;
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
    if (w->listeners != NULL) {
        close_listeners(w);
        for (size_t i = 0; i < w->nlisteners; i++)
            tls_server_unref(w->listeners[i].tls);
    }
    free(w->listeners);
    free_tls_array(atomic_exchange(&w->pending_tls, NULL), w->nlisteners);
    router_free(w->router);
    free(w->maintenance_page);
    access_log_free(w->alog);
    if (w->ctl_ev != NULL)
        event_free(w->ctl_ev);
    if (w->drain_ev != NULL)
        event_free(w->drain_ev);
    if (w->retry_ev != NULL)
        event_free(w->retry_ev);
    if (w->base != NULL)
        event_base_free(w->base);
    config_unref(w->cfg);
    free(w);
}
