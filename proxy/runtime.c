/*
 * runtime: the operations on main's state that involve several modules: TLS contexts per
 * listener, the workers' generations, and the reload. A reload builds and validates everything it
 * needs (config, TLS contexts, routers, health thread, new sockets) before it touches anything, so
 * a bad configuration changes nothing; then it hands each worker its next generation.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access_log.h"
#include "config.h"
#include "health.h"
#include "listener.h"
#include "log.h"
#include "router.h"
#include "runtime.h"
#include "stats.h"
#include "tls.h"
#include "fleet.h"
#include "redis.h"
#include "tls_tickets.h"
#include "worker.h"

/* ---- TLS contexts -------------------------------------------------------------------------------- */

void
runtime_tls_free(struct tls_server **tls, size_t n)
{
    for (size_t i = 0; tls != NULL && i < n; i++)
        tls_server_unref(tls[i]);
    free(tls);
}

struct tls_server **
runtime_tls_build(const struct config *cfg, struct tls_tickets *tickets, char *err, size_t errlen)
{
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers, sizeof(*p) is right */
    struct tls_server **tls = calloc(cfg->nlisteners, sizeof(*tls));

    if (tls == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        if (cfg->listeners[i].tls == NULL)
            continue;
        tls[i] = tls_server_new(cfg->listeners[i].tls, i, tickets, err, errlen);
        if (tls[i] == NULL) {
            runtime_tls_free(tls, cfg->nlisteners);
            return NULL;
        }
    }
    return tls;
}

int
runtime_check(struct config *cfg, char *err, size_t errlen)
{
    struct tls_tickets *tickets = tls_tickets_new();
    struct tls_server **tls = tickets ? runtime_tls_build(cfg, tickets, err, errlen) : NULL;
    struct router *r = tls ? router_new(cfg, NULL, NULL, 0, err, errlen) : NULL;
    int rc = r != NULL ? 0 : -1;

    router_unref(r);
    runtime_tls_free(tls, cfg->nlisteners);
    tls_tickets_free(tickets);
    return rc;
}

void
runtime_notify_workers(void *arg)
{
    struct runtime *rt = arg;

    if (!atomic_load(&rt->workers_ready))
        return;
    for (int i = 0; i < rt->nworkers; i++)
        worker_request(rt->workers[i], WORKER_CMD_HEALTH);
}

static void
on_rotate(evutil_socket_t fd, short what, void *arg)
{
    struct runtime *rt = arg;

    if (fleet_owns_tickets(rt->fleet))
        return; /* the fleet's keys rotate in Redis */
    if (tls_tickets_rotate(rt->tickets) < 0)
        log_error("tls: cannot make a new session ticket key; keeping the current one");
}

#define SESSION_FLUSH_S 5 /* expired cached TLS sessions are dropped this often */

static void
on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct runtime *rt = arg;
    long now = (long)time(NULL);

    (void)fd;
    (void)what;
    for (size_t i = 0; rt->tls != NULL && i < rt->cfg->nlisteners; i++)
        tls_server_flush_sessions(rt->tls[i], now);
}

int
runtime_rotation(struct runtime *rt)
{
    int rotate = config_ticket_rotate_s(rt->cfg);
    struct timeval tv = {.tv_sec = rotate}, flush = {.tv_sec = SESSION_FLUSH_S};

    if (rt->flush_ev == NULL)
        rt->flush_ev = event_new(rt->base, -1, EV_PERSIST, on_flush, rt);
    if (rt->flush_ev == NULL || (!event_pending(rt->flush_ev, EV_TIMEOUT, NULL) &&
                                 event_add(rt->flush_ev, &flush) < 0))
        return -1;

    if (rt->rotate_ev == NULL)
        rt->rotate_ev = event_new(rt->base, -1, EV_PERSIST, on_rotate, rt);
    if (rt->rotate_ev == NULL)
        return -1;
    event_del(rt->rotate_ev);
    return rotate > 0 ? event_add(rt->rotate_ev, &tv) : 0;
}

/* ---- generations ------------------------------------------------------------------------------ */

/* Generations for every worker on cfg, with the TLS contexts `tls` (references taken). NULL with
 * err. The caller fills each plan's sockets. */
static struct worker_generation **
build_generations(struct runtime *rt, struct config *cfg, struct health *health,
                  struct tls_server **tls, char *err, size_t errlen)
{
    int n = cfg->workers;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers, sizeof(*p) is right */
    struct worker_generation **gens = calloc((size_t)n, sizeof(*gens));

    if (gens == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        gens[i] = worker_generation_new(cfg, health, rt->stats, i, err, errlen);
        if (gens[i] == NULL)
            goto fail;
        for (size_t j = 0; j < cfg->nlisteners; j++)
            gens[i]->plan[j].tls = tls[j] != NULL ? tls_server_ref(tls[j]) : NULL;
    }
    return gens;
fail:
    for (int i = 0; i < n; i++)
        worker_generation_free(gens[i]);
    free(gens);
    return NULL;
}

int
runtime_start_workers(struct runtime *rt, int *fds, struct event *exit_ev)
{
    const struct config *cfg = rt->cfg;
    struct worker_generation **gens;
    sigset_t all, old;
    char err[512];
    int rc = 0;

    gens = build_generations(rt, rt->cfg, rt->health, rt->tls, err, sizeof(err));
    if (gens == NULL) {
        log_error("%s", err);
        for (size_t k = 0; k < (size_t)cfg->workers * cfg->nlisteners; k++)
            close(fds[k]);
        return -1;
    }
    for (int i = 0; i < cfg->workers; i++)
        for (size_t j = 0; j < cfg->nlisteners; j++)
            gens[i]->plan[j].fd = fds[(size_t)i * cfg->nlisteners + j];
    /* Workers inherit a blocked mask: signals are the main thread's alone. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (int i = 0; i < cfg->workers; i++) {
        struct redis_stats *rs =
            rt->redis_stats != NULL ? &rt->redis_stats[RUNTIME_REDIS_WORKER0 + i] : NULL;
        struct worker *w =
            rc == 0 ? worker_new(i, gens[i], rt->alog_fd, exit_ev, rs, err, sizeof(err)) : NULL;
        if (w != NULL) {
            w->limiter = rt->limiter;
            w->rates = rt->rates;
        }
        if (rc == 0 && (w == NULL || worker_start(w) < 0)) {
            log_error("cannot start worker %d: %s", i, w == NULL ? err : strerror(errno));
            worker_join_free(w);
            rc = -1;
        } else if (rc == 0) {
            rt->workers[rt->nworkers++] = w;
        } else {
            worker_generation_free(gens[i]);
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    free(gens);
    atomic_store(&rt->workers_ready, rc == 0);
    return rc;
}

/* ---- reload ------------------------------------------------------------------------------------- */

/* What a reload cannot change in a running process. */
static int
refuse_change(const struct config *old, const struct config *cfg, char *err, size_t errlen)
{
    bool admin_moved = (old->admin == NULL) != (cfg->admin == NULL) ||
                       (old->admin != NULL && !addr_equal(&old->admin->addr, &cfg->admin->addr));
    bool log_kind = strcmp(old->log.access, cfg->log.access) != 0 &&
                    (!strcmp(old->log.access, "stdout") || !strcmp(old->log.access, "off") ||
                     !strcmp(cfg->log.access, "stdout") || !strcmp(cfg->log.access, "off"));

    if (cfg->workers != old->workers)
        snprintf(err, errlen, "workers: changing the number of workers needs a restart");
    else if (admin_moved)
        snprintf(err, errlen, "admin: adding, removing or moving the admin endpoint needs a "
                              "restart");
    else if (!config_redis_equal(old->redis, cfg->redis))
        snprintf(err, errlen, "redis: changing the Redis settings needs a restart");
    else if (log_kind)
        snprintf(err, errlen, "log.access: switching between stdout, off and a file needs a "
                              "restart (a file can be changed for another file)");
    else
        return 0;
    return -1;
}

/* Plan each new listener: keep the socket of a current listener with the same address, else
 * open one socket per worker now (so a bind error refuses the reload). */
static int
plan_listeners(struct runtime *rt, struct config *cfg, struct worker_generation **gens,
               char *err, size_t errlen)
{
    for (size_t j = 0; j < cfg->nlisteners; j++) {
        bool keep = false;
        for (size_t k = 0; k < rt->cfg->nlisteners && !keep; k++)
            keep = addr_equal(&rt->cfg->listeners[k].addr, &cfg->listeners[j].addr);
        for (int i = 0; i < cfg->workers; i++) {
            assert(gens[i] != NULL); /* build_generations made one per worker of cfg */
            gens[i]->plan[j].keep = keep;
            if (!keep && (gens[i]->plan[j].fd = listener_open(&cfg->listeners[j].addr,
                                                               cfg->listeners[j].backlog, 1, err,
                                                               errlen)) < 0)
                return -1;
        }
    }
    return 0;
}

/* Nothing can fail from here on: hand over, and make cfg current. */
static void
commit(struct runtime *rt, struct config *cfg, struct tls_server **tls, struct health *health,
       struct worker_generation **gens)
{
    bool new_log = strcmp(rt->cfg->log.access, cfg->log.access) != 0;

    health_stop(rt->health); /* the old thread notifies no more; routers still read its table */
    for (int i = 0; i < rt->nworkers; i++)
        worker_set_generation(rt->workers[i], gens[i]);
    health_unref(rt->health);
    rt->health = health;
    runtime_tls_free(rt->tls, rt->cfg->nlisteners);
    rt->tls = tls;
    config_unref(rt->cfg);
    rt->cfg = cfg;
    rt->env.cfg = cfg;
    rt->env.health = health;
    rt->env.generation++;
    fleet_attach(rt->fleet, cfg, health);
    log_set_level((enum log_level)cfg->log.error_level);
    if (new_log && access_log_reopen_fd(rt->alog_fd, cfg->log.access) < 0)
        log_error("reload: cannot open access log %s: %s; lines go to the old file",
                  cfg->log.access, strerror(errno));
    if (runtime_rotation(rt) < 0)
        log_error("reload: cannot rearm the ticket key rotation");
    if (rt->admin != NULL)
        admin_reconfigure(rt->admin);
}

static int
reload(struct runtime *rt, char *err, size_t errlen)
{
    struct config_error cerr;
    struct config *cfg = config_load(rt->cfg->path, &cerr);
    struct tls_server **tls = NULL;
    struct health *health = NULL;
    struct worker_generation **gens = NULL;

    if (cfg == NULL) {
        snprintf(err, errlen, "%s", cerr.msg);
        return -1;
    }
    if (refuse_change(rt->cfg, cfg, err, errlen) < 0 || runtime_check(cfg, err, errlen) < 0 ||
        (tls = runtime_tls_build(cfg, rt->tickets, err, errlen)) == NULL)
        goto fail;
    health = health_new(cfg, rt->health, runtime_notify_workers, rt, err, errlen);
    if (health != NULL)
        fleet_observe(rt->fleet, health);
    if (health == NULL || (gens = build_generations(rt, cfg, health, tls, err, errlen)) == NULL ||
        plan_listeners(rt, cfg, gens, err, errlen) < 0 || health_start(health, 0) < 0)
        goto fail;
    commit(rt, cfg, tls, health, gens);
    free(gens);
    log_info("configuration reloaded from %s (generation %u)", cfg->path, rt->env.generation);
    return 0;
fail:
    for (int i = 0; gens != NULL && i < cfg->workers; i++)
        worker_generation_free(gens[i]);
    free(gens);
    health_unref(health);
    runtime_tls_free(tls, cfg->nlisteners);
    config_unref(cfg);
    return -1;
}

int
runtime_reload(struct runtime *rt, char *err, size_t errlen)
{
    char why[512];

    if (reload(rt, why, sizeof(why)) == 0)
        return 0;
    /* the file's path first, as --check and start-up say it */
    snprintf(err, errlen, "%s: %s", rt->cfg->path, why);
    return -1;
}

int
runtime_redis_stats(struct runtime *rt)
{
    static const char *const fleet_names[] = {"fleet", "fleet-sub"};
    char name[32];

    if (rt->cfg->redis == NULL)
        return 0;
    rt->nredis = RUNTIME_REDIS_WORKER0 + (size_t)rt->cfg->workers;
    rt->redis_stats = calloc(rt->nredis, sizeof(*rt->redis_stats));
    if (rt->redis_stats == NULL)
        return -1;
    for (size_t i = 0; i < rt->nredis; i++) {
        if (i < RUNTIME_REDIS_WORKER0)
            snprintf(name, sizeof(name), "%s", fleet_names[i]);
        else
            snprintf(name, sizeof(name), "worker %zu", i - RUNTIME_REDIS_WORKER0);
        redis_stats_init(&rt->redis_stats[i], name);
    }
    return 0;
}

void
runtime_redis_stats_free(struct runtime *rt)
{
    for (size_t i = 0; rt->redis_stats != NULL && i < rt->nredis; i++)
        redis_stats_destroy(&rt->redis_stats[i]);
    free(rt->redis_stats);
    rt->redis_stats = NULL;
}
