/*
 * main: arguments, start-up order and signals; no request logic. Start-up: load and validate the
 * config, build the TLS contexts, open the access log and every listening socket (so errors stop
 * start-up, not a worker), start the workers with signals blocked, then wait for signals on the
 * main thread's own loop. SIGTERM/SIGINT drain (a second one stops at once), SIGUSR1 reopens the
 * access log, SIGHUP reloads certificates, keys and OCSP responses. The main loop also rotates the
 * TLS session ticket keys.
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
#include "config.h"
#include "health.h"
#include "listener.h"
#include "log.h"
#include "router.h"
#include "tls.h"
#include "tls_tickets.h"
#include "worker.h"

struct runtime {
    struct config *cfg;
    struct event_base *base;
    struct worker **workers;
    int nworkers;
    int stop_signals;          /* SIGTERM/SIGINT received */
    int alog_fd;
    struct tls_tickets *tickets; /* session ticket keys, shared by every TLS listener */
    struct tls_server **tls;   /* per listener, NULL for plain ones */
    struct event *rotate_ev;   /* ticket key rotation */
    struct health *health;     /* the health thread */
    atomic_bool workers_ready; /* `workers` is complete: the health thread may notify them */
};

/* ---- TLS contexts ----------------------------------------------------------------------------- */

static void
tls_array_free(struct tls_server **tls, size_t n)
{
    for (size_t i = 0; tls != NULL && i < n; i++)
        tls_server_unref(tls[i]);
    free(tls);
}

/* One tls_server per TLS listener, read from the files named in cfg. NULL with err on failure
 * (a config with no TLS listener gives an array of NULLs). */
static struct tls_server **
tls_array_build(const struct config *cfg, struct tls_tickets *tickets, char *err, size_t errlen)
{
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
            tls_array_free(tls, cfg->nlisteners);
            return NULL;
        }
    }
    return tls;
}

static struct tls_server **
tls_array_copy(struct tls_server **tls, size_t n)
{
    struct tls_server **copy = calloc(n, sizeof(*copy));

    for (size_t i = 0; copy != NULL && i < n; i++)
        copy[i] = tls[i] != NULL ? tls_server_ref(tls[i]) : NULL;
    return copy;
}

/* The shortest rotation period among listeners using tickets, or 0 when none does. */
static int
ticket_rotate_s(const struct config *cfg)
{
    int s = 0;

    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct tls_listen_conf *t = cfg->listeners[i].tls;
        if (t != NULL && t->session_tickets && (s == 0 || t->ticket_rotate_s < s))
            s = t->ticket_rotate_s;
    }
    return s;
}

/* Everything --check can validate beyond the JSON: certificates, keys, cipher lists, CA bundles. */
static int
check_runtime(struct config *cfg, char *err, size_t errlen)
{
    struct tls_tickets *tickets = tls_tickets_new();
    struct tls_server **tls = tickets ? tls_array_build(cfg, tickets, err, errlen) : NULL;
    struct router *r = tls ? router_new(cfg, NULL, err, errlen) : NULL;
    int rc = r != NULL ? 0 : -1;

    router_free(r);
    tls_array_free(tls, cfg->nlisteners);
    tls_tickets_free(tickets);
    return rc;
}

static void
usage(FILE *out)
{
    fprintf(out,
            "usage: trident -c FILE          run with the configuration in FILE\n"
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

/* SIGHUP: re-read certificates, keys and OCSP responses. New connections use them; open ones keep
 * theirs. A bad file keeps every old context and says why. */
static void
on_hup_signal(evutil_socket_t sig, short what, void *arg)
{
    struct runtime *rt = arg;
    size_t n = rt->cfg->nlisteners;
    char err[512];
    struct tls_server **fresh = tls_array_build(rt->cfg, rt->tickets, err, sizeof(err));

    if (fresh == NULL) {
        log_error("SIGHUP: %s; keeping the current certificates", err);
        return;
    }
    for (int i = 0; i < rt->nworkers; i++) {
        struct tls_server **copy = tls_array_copy(fresh, n);
        if (copy != NULL)
            worker_set_tls(rt->workers[i], copy);
    }
    tls_array_free(rt->tls, n);
    rt->tls = fresh;
    log_info("SIGHUP: certificates reloaded");
}

static void
on_rotate(evutil_socket_t fd, short what, void *arg)
{
    struct runtime *rt = arg;

    if (tls_tickets_rotate(rt->tickets) < 0)
        log_error("tls: cannot make a new session ticket key; keeping the current one");
}

/* From the health thread: server states changed. */
static void
notify_workers(void *arg)
{
    struct runtime *rt = arg;

    if (!atomic_load(&rt->workers_ready))
        return;
    for (int i = 0; i < rt->nworkers; i++)
        worker_request(rt->workers[i], WORKER_CMD_HEALTH);
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
        fds[i] = listener_open(&l->addr, l->backlog, err, sizeof(err));
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

static int
start_workers(struct runtime *rt, int *fds, struct event *exit_ev)
{
    const struct config *cfg = rt->cfg;
    sigset_t all, old;
    char err[512];
    int rc = 0;

    /* Workers inherit a blocked mask: signals are the main thread's alone. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (int i = 0; i < cfg->workers; i++) {
        struct worker *w = worker_new(i, rt->cfg, fds + (size_t)i * cfg->nlisteners, rt->tls,
                                      rt->health, rt->alog_fd, exit_ev, err, sizeof(err));
        if (w == NULL || worker_start(w) < 0) {
            log_error("cannot start worker %d: %s", i, w == NULL ? err : strerror(errno));
            worker_join_free(w);
            for (size_t j = (size_t)(i + 1) * cfg->nlisteners;
                 j < (size_t)cfg->workers * cfg->nlisteners; j++)
                close(fds[j]);
            rc = -1;
            break;
        }
        rt->workers[rt->nworkers++] = w;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    atomic_store(&rt->workers_ready, rc == 0);
    return rc;
}

/* The health thread starts before the workers: a restart must not route to a dead provider, so
 * the first round of checks answers first (bounded by failover.startup_wait_ms). */
static int
start_health(struct runtime *rt)
{
    char err[512];
    sigset_t all, old;
    int rc;

    rt->health = health_new(rt->cfg, notify_workers, rt, err, sizeof(err));
    if (rt->health == NULL) {
        log_error("%s", err);
        return -1;
    }
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rc = health_start(rt->health, rt->cfg->failover.startup_wait_ms);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
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

/* Ticket keys, the TLS contexts, and the rotation timer. */
static int
start_tls(struct runtime *rt)
{
    char err[512];
    int rotate = ticket_rotate_s(rt->cfg);
    struct timeval tv = {.tv_sec = rotate};

    rt->tickets = tls_tickets_new();
    if (rt->tickets == NULL) {
        log_error("tls: cannot create session ticket keys");
        return -1;
    }
    rt->tls = tls_array_build(rt->cfg, rt->tickets, err, sizeof(err));
    if (rt->tls == NULL) {
        log_error("%s", err);
        return -1;
    }
    if (rotate > 0) {
        rt->rotate_ev = event_new(rt->base, -1, EV_PERSIST, on_rotate, rt);
        if (rt->rotate_ev == NULL || event_add(rt->rotate_ev, &tv) < 0)
            return -1;
    }
    return 0;
}

static int
run(struct runtime *rt)
{
    struct event *exit_ev = NULL, *sigs[4] = {NULL};
    int *fds = NULL, rc = 1;

    raise_fd_limit(rt->cfg);
    rt->alog_fd = access_log_open_fd(rt->cfg->log.access);
    if (rt->alog_fd == -2) {
        log_error("open access log %s: %s", rt->cfg->log.access, strerror(errno));
        return 1;
    }
    rt->base = event_base_new();
    rt->workers = calloc((size_t)rt->cfg->workers, sizeof(*rt->workers));
    if (rt->base == NULL || rt->workers == NULL || start_tls(rt) < 0)
        goto out;
    fds = open_sockets(rt->cfg);
    if (fds == NULL || start_health(rt) < 0)
        goto out;
    exit_ev = event_new(rt->base, -1, 0, on_worker_exit, rt);
    sigs[0] = evsignal_new(rt->base, SIGTERM, on_stop_signal, rt);
    sigs[1] = evsignal_new(rt->base, SIGINT, on_stop_signal, rt);
    sigs[2] = evsignal_new(rt->base, SIGUSR1, on_reopen_signal, rt);
    sigs[3] = evsignal_new(rt->base, SIGHUP, on_hup_signal, rt);
    for (int i = 0; i < 4; i++)
        evsignal_add(sigs[i], NULL);
    if (start_workers(rt, fds, exit_ev) == 0) {
        log_started(rt->cfg);
        event_base_loop(rt->base, EVLOOP_NO_EXIT_ON_EMPTY);
        rc = 0;
    } else {
        for (int i = 0; i < rt->nworkers; i++)
            worker_request(rt->workers[i], WORKER_CMD_STOP);
    }
    health_stop(rt->health); /* no notification reaches a worker being freed */
    for (int i = 0; i < rt->nworkers; i++)
        worker_join_free(rt->workers[i]);
    for (int i = 0; i < 4; i++)
        event_free(sigs[i]);
    event_free(exit_ev);
    if (rc == 0)
        log_info("stopped");
out:
    health_free(rt->health);
    free(fds);
    free(rt->workers);
    if (rt->rotate_ev != NULL)
        event_free(rt->rotate_ev);
    tls_array_free(rt->tls, rt->cfg->nlisteners);
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
        rc = check_runtime(rt.cfg, why, sizeof(why));
        if (rc == 0)
            printf("trident: configuration file %s is valid\n", path);
        else
            fprintf(stderr, "trident: %s: %s\n", path, why);
        config_unref(rt.cfg);
        return rc == 0 ? 0 : 1;
    }
    log_set_level((enum log_level)rt.cfg->log.error_level);
    signal(SIGPIPE, SIG_IGN);
    evthread_use_pthreads();
    rc = run(&rt);
    config_unref(rt.cfg);
    return rc;
}
