/*
 * runtime: the process-wide state main owns and the operations on it that span several modules:
 * building the TLS contexts, the workers' generations, and reloading the configuration (SIGHUP or
 * POST /reload). Runs on the main thread only. main.c keeps the arguments, the start-up order
 * and the signals; the modules keep their own logic.
 */
#ifndef TRIDENT_RUNTIME_H
#define TRIDENT_RUNTIME_H

#include <event2/event.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "admin.h"
#include "config-t.h"

struct admin;
struct health;
struct stats;
struct tls_server;
struct tls_tickets;
struct worker;

struct runtime {
    struct config *cfg;          /* the current configuration (a reference) */
    struct event_base *base;     /* main's loop: signals, admin, ticket rotation */
    struct worker **workers;
    int nworkers;
    int stop_signals;            /* SIGTERM/SIGINT received */
    int alog_fd;
    struct tls_tickets *tickets; /* session ticket keys, shared by every TLS listener */
    struct tls_server **tls;     /* per listener of cfg, NULL for plain ones */
    struct event *rotate_ev;     /* ticket key rotation */
    struct event *flush_ev;      /* expired sessions out of the TLS session caches */
    struct health *health;       /* the current health thread (a reference) */
    struct stats *stats;         /* counters, shared with the workers */
    atomic_bool workers_ready;   /* `workers` is complete: the health thread may notify them */
    struct admin *admin;
    struct admin_env env;        /* what the admin endpoint reads */
    struct fleet *fleet;         /* with a redis section: what instances share */
    struct redis_stats *redis_stats; /* RUNTIME_REDIS_WORKER0 + workers entries, or NULL */
    struct limiter *limiter;
    struct limiter *rates;       /* rate-limit buckets, shared by the workers */     /* per-address connection counts, shared by the workers */
    size_t nredis;
};

/* Slots of runtime.redis_stats: the fleet's two connections, then one per worker. */
enum { RUNTIME_REDIS_FLEET, RUNTIME_REDIS_FLEET_SUB, RUNTIME_REDIS_WORKER0 };

/* The counters of every Redis connection (cfg has a redis section); 0 or -1. */
int runtime_redis_stats(struct runtime *rt);
void runtime_redis_stats_free(struct runtime *rt);

/* One tls_server per TLS listener of cfg (NULL entries for plain ones). NULL with err. */
struct tls_server **runtime_tls_build(const struct config *cfg, struct tls_tickets *tickets,
                                      char *err, size_t errlen);
void runtime_tls_free(struct tls_server **tls, size_t n);

/* What --check validates beyond the JSON: certificates, keys, cipher lists, CA bundles. */
int runtime_check(struct config *cfg, char *err, size_t errlen);

/* The health thread's notification: tell every worker that server states changed. */
void runtime_notify_workers(void *arg);

/* (Re)arm the ticket key rotation timer for rt->cfg, and the TLS session caches' flush. Returns 0
 * or -1. */
int runtime_rotation(struct runtime *rt);

/* Build and start the workers on rt->cfg with the listening sockets fds (taken: one per worker
 * per listener, worker by worker). Returns 0 or -1 (logged). */
int runtime_start_workers(struct runtime *rt, int *fds, struct event *exit_ev);

/* Reload from rt->cfg->path: validate everything first; on any error nothing changes and err
 * says why, beginning with the file's path. Otherwise new connections use the new configuration
 * from now on, open ones from their next request; listeners whose address stays keep their
 * sockets. Returns 0 or -1. */
int runtime_reload(struct runtime *rt, char *err, size_t errlen);

#endif
