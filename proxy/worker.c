/*
 * worker: a thread with its own event loop. Accepts on its own SO_REUSEPORT sockets, owns its
 * connections, and drains or stops on a command from the main thread.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access_log.h"
#include "clock.h"
#include "config.h"
#include "conn.h"
#include "log.h"
#include "router.h"
#include "worker.h"

#define ACCEPT_RETRY_MS 100 /* pause after an accept error such as EMFILE, instead of spinning */

static void
pause_accept(struct worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i] != NULL)
            evconnlistener_disable(w->listeners[i]);
    w->accept_paused = true;
}

static void
resume_accept(struct worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i] != NULL)
            evconnlistener_enable(w->listeners[i]);
    w->accept_paused = false;
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    struct worker *w = arg;
    struct conn *c;

    if (w->state != WORKER_RUNNING || w->nconns >= w->max_conns) {
        close(fd);
        return;
    }
    c = conn_new(w, fd, sa, (socklen_t)salen);
    if (c == NULL) {
        log_warn("worker %d: cannot allocate a connection", w->id);
        return;
    }
    TAILQ_INSERT_TAIL(&w->conns, c, link);
    /* At the limit, stop accepting: new connections wait in the kernel's backlog (HAProxy's
     * maxconn) rather than being accepted and dropped. */
    if (++w->nconns >= w->max_conns)
        pause_accept(w);
}

static void
accept_error_cb(struct evconnlistener *l, void *arg)
{
    struct worker *w = arg;
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
        if (w->listeners[i] != NULL)
            evconnlistener_free(w->listeners[i]);
        w->listeners[i] = NULL;
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
ctl_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;

    switch ((enum worker_cmd)atomic_exchange(&w->cmd, WORKER_CMD_NONE)) {
    case WORKER_CMD_DRAIN: start_drain(w); break;
    case WORKER_CMD_STOP: stop_now(w); break;
    case WORKER_CMD_NONE: break;
    }
}

void
worker_request(struct worker *w, enum worker_cmd cmd)
{
    int cur = atomic_load(&w->cmd);

    /* STOP outranks DRAIN: never downgrade a pending stop. */
    while ((int)cmd > cur && !atomic_compare_exchange_weak(&w->cmd, &cur, (int)cmd))
        ;
    event_active(w->ctl_ev, EV_READ, 0);
}

/* Wraps each socket in a listener, which then owns it. On failure the sockets not yet wrapped
 * are closed here, so the caller never has to know which ones were taken. */
static int
open_listeners(struct worker *w, const int *fds, size_t nfds)
{
    size_t i = 0;

    w->listeners = calloc(nfds, sizeof(*w->listeners));
    if (w->listeners == NULL)
        goto fail;
    w->nlisteners = nfds;
    for (; i < nfds; i++) {
        w->listeners[i] = evconnlistener_new(w->base, accept_cb, w, LEV_OPT_CLOSE_ON_FREE, -1,
                                             fds[i]);
        if (w->listeners[i] == NULL)
            goto fail;
        evconnlistener_set_error_cb(w->listeners[i], accept_error_cb);
    }
    return 0;
fail:
    for (; i < nfds; i++)
        close(fds[i]);
    return -1;
}

struct worker *
worker_new(int id, struct config *cfg, const int *fds, size_t nfds, int alog_fd,
           struct event *exit_notify)
{
    struct worker *w = calloc(1, sizeof(*w));

    if (w == NULL)
        return NULL;
    w->id = id;
    w->cfg = config_ref(cfg);
    w->exit_notify = exit_notify;
    TAILQ_INIT(&w->conns);
    w->max_conns = (unsigned)((cfg->limits.max_connections + cfg->workers - 1) / cfg->workers);
    atomic_init(&w->cmd, WORKER_CMD_NONE);
    atomic_init(&w->exited, false);
    w->base = event_base_new();
    if (w->base == NULL || open_listeners(w, fds, nfds) < 0)
        goto fail;
    w->router = router_new(cfg);
    w->alog = access_log_new(w->base, alog_fd);
    w->ctl_ev = event_new(w->base, -1, 0, ctl_cb, w);
    w->drain_ev = evtimer_new(w->base, drain_timeout_cb, w);
    w->retry_ev = evtimer_new(w->base, retry_cb, w);
    if (w->router == NULL || w->alog == NULL || w->ctl_ev == NULL || w->drain_ev == NULL ||
        w->retry_ev == NULL || reqid_gen_init(&w->reqids) < 0)
        goto fail;
    return w;
fail:
    if (w->base == NULL)
        for (size_t i = 0; i < nfds; i++)
            close(fds[i]);
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
    if (w->listeners != NULL)
        close_listeners(w);
    free(w->listeners);
    router_free(w->router);
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
