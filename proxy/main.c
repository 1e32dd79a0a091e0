/*
 * main: arguments, start-up order and signals; no request logic. Start-up: load and validate the
 * config, build the TLS contexts, open the access log and every listening socket (so errors stop
 * start-up, not a worker), start the health thread and wait for its first round of checks, start
 * the workers with signals blocked, open the admin endpoint, then wait on the main thread's own
 * loop. SIGTERM/SIGINT drain (a second one stops at once), SIGUSR1 reopens the access log, SIGHUP
 * reloads the configuration (certificates included). runtime.c holds the operations themselves.
 */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "access_log.h"
#include "admin.h"
#include "clock.h"
#include "config.h"
#include "fleet.h"
#include "health.h"
#include "redis.h"
#include "listener.h"
#include "limiter.h"
#include "log.h"
#include "privileges.h"
#include "runtime.h"
#include "stats.h"
#include "tls.h"
#include "tls_tickets.h"
#include "worker.h"

static void
usage(FILE *out)
{
    fprintf(out,
            "usage: trident [-c FILE]        run with the configuration in FILE\n"
            "                                (default: $TRIDENT_CONFIG)\n"
            "       trident --check -c FILE  validate FILE and exit (0: valid, 1: not)\n"
            "       trident --config-reference  print every configuration key (Markdown)\n"
            "       trident --version | --help\n");
}

static void
on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct runtime *rt = arg;
    enum worker_cmd cmd = rt->stop_signals++ == 0 ? WORKER_CMD_DRAIN : WORKER_CMD_STOP;

    log_info("%s: %s", strsignal((int)sig),
             cmd == WORKER_CMD_DRAIN ? "draining (a second signal stops at once)" : "stopping now");
    for (int i = 0; i < rt->nworkers; i++)
        worker_request(rt->workers[i], cmd);
}

static void
on_reopen_signal(evutil_socket_t sig, short what, void *arg)
{
    struct runtime *rt = arg;

    if (access_log_reopen_fd(rt->alog_fd, rt->cfg->log.access) < 0)
        log_error("reopen access log %s: %s", rt->cfg->log.access, strerror(errno));
    else
        log_info("access log reopened");
}

/* SIGHUP: reload the configuration (certificates, keys and OCSP responses included). A bad file
 * keeps everything as it is and says why. */
static void
on_hup_signal(evutil_socket_t sig, short what, void *arg)
{
    char err[512];

    if (runtime_reload(arg, err, sizeof(err)) < 0)
        log_error("SIGHUP: %s; keeping the current configuration", err);
}

static int
reload_for_admin(void *arg, char *err, size_t errlen)
{
    return runtime_reload(arg, err, errlen);
}

static void
on_worker_exit(evutil_socket_t fd, short what, void *arg)
{
    struct runtime *rt = arg;

    for (int i = 0; i < rt->nworkers; i++)
        if (!worker_exited(rt->workers[i]))
            return;
    event_base_loopbreak(rt->base);
}

/* Each client connection may hold a server connection too: raise the soft descriptor limit to
 * the hard one and say so when max_connections still cannot fit. */
static void
raise_fd_limit(const struct config *cfg)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)cfg->limits.max_connections * 2 + 64 +
                  (rlim_t)cfg->workers * cfg->nlisteners;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < want)
        log_warn("descriptor limit %llu is below the %llu that limits.max_connections %d may need",
                 (unsigned long long)rl.rlim_cur, (unsigned long long)want,
                 cfg->limits.max_connections);
}

/* One SO_REUSEPORT socket per worker per listener: fds[w * nlisteners + l]. */
static int *
open_sockets(const struct config *cfg)
{
    size_t n = (size_t)cfg->workers * cfg->nlisteners;
    int *fds = calloc(n, sizeof(*fds));
    char err[256];

    if (fds == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const struct listener_conf *l = &cfg->listeners[i % cfg->nlisteners];
        fds[i] = listener_open(&l->addr, l->backlog, 1, err, sizeof(err));
        if (fds[i] < 0) {
            log_error("%s", err);
            while (i-- > 0)
                close(fds[i]);
            free(fds);
            return NULL;
        }
    }
    return fds;
}

/* Ticket keys and the TLS contexts. */
static int
start_tls(struct runtime *rt)
{
    char err[512];

    rt->tickets = tls_tickets_new();
    if (rt->tickets == NULL) {
        log_error("tls: cannot create session ticket keys");
        return -1;
    }
    rt->tls = runtime_tls_build(rt->cfg, rt->tickets, err, sizeof(err));
    if (rt->tls == NULL) {
        log_error("%s", err);
        return -1;
    }
    return runtime_rotation(rt);
}

/* With Redis: the fleet's connections (main thread), before the health thread so that its
 * first-hand transitions are published from the start. */
static int
start_fleet(struct runtime *rt)
{
    if (rt->cfg->redis == NULL)
        return 0;
    rt->fleet = fleet_new(rt->base, rt->cfg, &rt->redis_stats[RUNTIME_REDIS_FLEET],
                          &rt->redis_stats[RUNTIME_REDIS_FLEET_SUB], rt->tickets);
    if (rt->fleet == NULL) {
        log_error("fleet: out of memory");
        return -1;
    }
    return 0;
}

/* The health thread starts before the workers: a restart must not route to a dead provider, so
 * the first round of checks answers first (bounded by failover.startup_wait_ms). */
static int
start_health(struct runtime *rt)
{
    char err[512];
    sigset_t all, old;
    int rc;

    rt->health = health_new(rt->cfg, NULL, runtime_notify_workers, rt, err, sizeof(err));
    if (rt->health == NULL) {
        log_error("%s", err);
        return -1;
    }
    fleet_observe(rt->fleet, rt->health);
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rc = health_start(rt->health, rt->cfg->failover.startup_wait_ms);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc == 0 && rt->fleet != NULL) {
        /* admin states and ticket keys from the fleet before the first request */
        fleet_attach(rt->fleet, rt->cfg, rt->health);
        fleet_wait_sync(rt->fleet, rt->cfg->redis->connect_timeout_ms);
    }
    return rc;
}

static int
start_admin(struct runtime *rt)
{
    char err[512];

    rt->env = (struct admin_env){
        .cfg = rt->cfg,
        .health = rt->health,
        .stats = rt->stats,
        .workers = rt->workers,
        .nworkers = rt->nworkers,
        .started_us = clock_mono_us(),
        .fleet = rt->fleet,
        .redis = rt->redis_stats,
        .nredis = rt->nredis,
        .generation = 1,
        .reload = reload_for_admin,
        .reload_arg = rt,
    };
    if (rt->cfg->admin == NULL)
        return 0;
    rt->admin = admin_new(rt->base, &rt->env, err, sizeof(err));
    if (rt->admin == NULL) {
        log_error("%s", err);
        return -1;
    }
    log_info("admin endpoint on http://%s", rt->cfg->admin->address);
    return 0;
}

/* Every socket is bound and every file open: give up root now, before the first request. */
static int
drop_privileges(struct runtime *rt)
{
    char err[512];

    if (privileges_drop(rt->cfg, err, sizeof(err)) == 0)
        return 0;
    log_error("%s", err);
    return -1;
}

static void
log_started(const struct config *cfg)
{
    char a[ADDR_TEXT_MAX];

    for (size_t i = 0; i < cfg->nlisteners; i++)
        log_info("listening on %s://%s", cfg->listeners[i].tls != NULL ? "https" : "http",
                 addr_format(&cfg->listeners[i].addr, a, sizeof(a)));
    log_info("trident %s started: %d workers, %zu clusters, %zu servers", TRIDENT_VERSION,
             cfg->workers, cfg->nclusters, cfg->nservers);
}

/* Rate-limit keys remembered at once (each until its bucket refills); beyond, new keys are
 * counted by Redis only. */
#define RATE_KEYS 131072

/* The signals serve() handles; blocked from run()'s start until their events are added. */
static sigset_t handled_signals;

static int
serve(struct runtime *rt, int *fds)
{
    struct event *exit_ev = event_new(rt->base, -1, 0, on_worker_exit, rt);
    struct event *sigs[4] = {
        evsignal_new(rt->base, SIGTERM, on_stop_signal, rt),
        evsignal_new(rt->base, SIGINT, on_stop_signal, rt),
        evsignal_new(rt->base, SIGUSR1, on_reopen_signal, rt),
        evsignal_new(rt->base, SIGHUP, on_hup_signal, rt),
    };
    int rc = 1;

    for (int i = 0; i < 4; i++)
        evsignal_add(sigs[i], NULL);
    pthread_sigmask(SIG_UNBLOCK, &handled_signals, NULL); /* held since before the sockets */
    /* the admin socket is the last one bound: then no request is handled with root's rights */
    if (start_admin(rt) == 0 && drop_privileges(rt) == 0 &&
        runtime_start_workers(rt, fds, exit_ev) == 0) {
        rt->env.nworkers = rt->nworkers; /* the admin endpoint reads the workers from now on */
        log_started(rt->cfg);
        event_base_loop(rt->base, EVLOOP_NO_EXIT_ON_EMPTY);
        rc = 0;
    } else {
        for (int i = 0; i < rt->nworkers; i++)
            worker_request(rt->workers[i], WORKER_CMD_STOP);
    }
    admin_free(rt->admin);
    health_stop(rt->health); /* no notification reaches a worker being freed */
    for (int i = 0; i < rt->nworkers; i++)
        worker_join_free(rt->workers[i]);
    for (int i = 0; i < 4; i++)
        event_free(sigs[i]);
    event_free(exit_ev);
    if (rc == 0)
        log_info("stopped");
    return rc;
}

static int
run(struct runtime *rt)
{
    int *fds = NULL, rc = 1;

    raise_fd_limit(rt->cfg);
    /* The listening sockets accept connections (into the backlog) before the signal events
     * exist: a SIGHUP or SIGTERM sent to a process that looks ready must wait for its handler,
     * not kill it with the default action. serve() unblocks them. */
    sigemptyset(&handled_signals);
    sigaddset(&handled_signals, SIGTERM);
    sigaddset(&handled_signals, SIGINT);
    sigaddset(&handled_signals, SIGUSR1);
    sigaddset(&handled_signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &handled_signals, NULL);
    rt->alog_fd = access_log_open_fd(rt->cfg->log.access);
    if (rt->alog_fd == -2) {
        log_error("open access log %s: %s", rt->cfg->log.access, strerror(errno));
        return 1;
    }
    rt->base = event_base_new();
    /* every open connection may hold an entry, and as many again may remember a rate */
    rt->limiter = limiter_new((size_t)rt->cfg->limits.max_connections * 2 + 1024);
    rt->rates = limiter_new(RATE_KEYS);
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers, sizeof(*p) is right */
    rt->workers = calloc((size_t)rt->cfg->workers, sizeof(*rt->workers));
    rt->stats = stats_new(rt->cfg->workers);
    if (rt->base != NULL && rt->workers != NULL && rt->stats != NULL && rt->limiter != NULL && rt->rates != NULL &&
        runtime_redis_stats(rt) == 0 && start_tls(rt) == 0 && start_fleet(rt) == 0 &&
        (fds = open_sockets(rt->cfg)) != NULL && start_health(rt) == 0)
        rc = serve(rt, fds);
    else if (fds != NULL)
        for (size_t k = 0; k < (size_t)rt->cfg->workers * rt->cfg->nlisteners; k++)
            close(fds[k]);
    free(fds);
    fleet_free(rt->fleet);
    health_unref(rt->health);
    stats_free(rt->stats);
    limiter_free(rt->limiter);
    limiter_free(rt->rates);
    runtime_redis_stats_free(rt);
    free(rt->workers);
    if (rt->rotate_ev != NULL)
        event_free(rt->rotate_ev);
    if (rt->flush_ev != NULL)
        event_free(rt->flush_ev);
    runtime_tls_free(rt->tls, rt->cfg->nlisteners);
    tls_tickets_free(rt->tickets);
    if (rt->base != NULL)
        event_base_free(rt->base);
    if (rt->alog_fd > STDERR_FILENO)
        close(rt->alog_fd);
    return rc;
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"check", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'v'},      {"help", no_argument, NULL, 'h'},
        {"config-reference", no_argument, NULL, 'r'}, {NULL, 0, NULL, 0},
    };
    struct runtime rt = {.alog_fd = -1};
    struct config_error err;
    const char *path = NULL;
    int check = 0, opt, rc;

    while ((opt = getopt_long(argc, argv, "c:tvh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': path = optarg; break;
        case 't': check = 1; break;
        case 'v': printf("trident %s\n", TRIDENT_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        case 'r': config_print_reference(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (path == NULL)
        path = getenv("TRIDENT_CONFIG"); /* containers: the config file's path from the env */
    if (path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    rt.cfg = config_load(path, &err);
    if (rt.cfg == NULL) {
        fprintf(stderr, "trident: %s: %s\n", path, err.msg);
        return 1;
    }
    if (check) {
        char why[512];
        rc = runtime_check(rt.cfg, why, sizeof(why));
        if (rc == 0)
            printf("trident: configuration file %s is valid\n", path);
        else
            fprintf(stderr, "trident: %s: %s\n", path, why);
        config_unref(rt.cfg);
        return rc == 0 ? 0 : 1;
    }
    log_set_level((enum log_level)rt.cfg->log.error_level);
    {
        char why[512];
        if (privileges_init(rt.cfg, why, sizeof(why)) < 0) {
            log_error("%s", why);
            config_unref(rt.cfg);
            return 1;
        }
    }
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) { /* a write to a closed socket must not kill us */
        log_error("signal(SIGPIPE): %s", strerror(errno));
        config_unref(rt.cfg);
        return 1;
    }
    evthread_use_pthreads();
    rc = run(&rt);
    config_unref(rt.cfg);
    return rc;
}
