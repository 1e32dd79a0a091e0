/*
 * worker: one thread, one event loop, and everything registered on it: its listening sockets (one
 * per configured address, SO_REUSEPORT), its client connections, its router with the upstream
 * pools, its access-log batcher and request-id generator. Nothing here is shared with another
 * worker; the main thread talks to a worker only through worker_request() and
 * worker_set_generation(), which hand over through atomics and wake the loop with event_active().
 *
 * A generation is what a configuration means for one worker: the config, a router built for
 * this worker, the health thread to report to, and a plan for each listener (keep an existing
 * socket, or listen on a new one). The first generation is applied before the thread starts; a
 * reload hands over the next. Connections finish on the router and listener they started with.
 */
#ifndef TRIDENT_WORKER_H
#define TRIDENT_WORKER_H

#include <event2/event.h>
#include <event2/listener.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/queue.h>

#include "affinity.h"
#include "config-t.h"
#include "reason.h"
#include "reqid.h"
#include "straggler.h"

struct conn;
struct health;
struct redis;
struct redis_stats;
struct session_cache;
struct router;
struct stats;
struct tls_server;
struct worker;

/* One configured listener inside one worker: its socket and, for TLS, the context new connections
 * use. Reference-counted by the worker and by each connection accepted on it (worker thread only),
 * so a reload can move its socket to the next generation while old connections still use it. */
struct listener_rt {
    int refs;
    struct evconnlistener *ev;    /* NULL once the socket moved on or closed */
    struct config *cfg;           /* a reference: conf points into it */
    const struct listener_conf *conf;
    struct tls_server *tls;       /* a reference; NULL for plain listeners */
    struct worker *w;
    struct listener_stats *stats; /* this worker's counters for the listener */
};

/* Drop a reference to a listener (worker thread). */
void listener_rt_unref(struct listener_rt *l);

struct listener_plan {
    bool keep;                /* take over the current socket bound to the same address */
    int fd;                   /* !keep: a new listening socket (owned by the plan) */
    struct tls_server *tls;   /* a reference, or NULL */
};

struct worker_generation {
    struct config *cfg;       /* a reference */
    struct router *router;    /* built for this worker (a reference) */
    struct health *health;    /* where passive failures go (a reference), or NULL */
    struct stats *stats;      /* counters (shared, not owned) */
    struct listener_plan *plan; /* cfg->nlisteners entries */
    char *maintenance_page;   /* failover.maintenance_page's contents (owned), or NULL */
    size_t maintenance_len;
};

/* A generation for worker `id` on cfg: its router and maintenance page, and a plan of
 * cfg->nlisteners entries set to "nothing" (keep false, fd -1), for the caller to fill. NULL with
 * the reason in err. */
struct worker_generation *worker_generation_new(struct config *cfg, struct health *health,
                                                struct stats *stats, int id, char *err,
                                                size_t errlen);

/* Free a generation that was not handed to a worker: closes its sockets, drops its references. */
void worker_generation_free(struct worker_generation *g);

enum worker_state {
    WORKER_RUNNING,  /* accepting and serving */
    WORKER_DRAINING, /* listeners closed; in-flight requests finish, then the loop exits */
};

/* Commands from the main thread, as bits: several may be pending at once. */
enum worker_cmd {
    WORKER_CMD_DRAIN = 1 << 0,  /* graceful: stop accepting, finish in-flight requests */
    WORKER_CMD_STOP = 1 << 1,   /* now: close every connection */
    WORKER_CMD_RELOAD = 1 << 2, /* take the generation waiting in pending */
    WORKER_CMD_HEALTH = 1 << 3, /* server states changed: drop what went to servers now down */
};

struct limiter;

struct worker {
    int id;
    enum worker_state state;
    pthread_t thread;
    bool started;           /* the thread runs (or ran) and must be joined */
    struct event_base *base;
    struct config *cfg;     /* the snapshot new connections start with (a reference) */
    struct router *router;  /* routes requests of new connections (a reference) */
    struct health *health;  /* receives passive failure reports (a reference) */
    char *maintenance_page; /* failover.maintenance_page's contents, or NULL */
    size_t maintenance_len;
    struct access_log *alog;
    struct reqid_gen reqids;
    struct listener_rt **listeners;
    size_t nlisteners;
    struct event *ctl_ev;       /* woken by another thread: read `cmd` */
    int ctl_fd;                 /* the eventfd other threads write to wake it */
    atomic_int cmd;             /* enum worker_cmd bits */
    struct worker_generation *_Atomic pending; /* WORKER_CMD_RELOAD: the next generation */
    atomic_uint_fast64_t reasons[REASON_COUNT]; /* outcomes counted (read by other threads) */
    atomic_uint_fast64_t affinity[AFFINITY_RESULT_COUNT]; /* sticky sessions, by how resolved */
    struct redis *redis;        /* this worker's Redis connection (sessions), or NULL */
    struct config *redis_cfg;   /* the config redis's settings live in (a reference) */
    struct session_cache *sessions; /* sticky sessions this worker remembers (affinity), or NULL */
    struct event *drain_ev;     /* the drain deadline */
    struct event *retry_ev;     /* resumes accepting after an accept error (EMFILE) */
    struct event *exit_notify;  /* main's event, activated when this loop has ended */
    atomic_bool exited;         /* set before exit_notify: activations of one event coalesce,
                                   so main counts these flags, not callbacks */
    TAILQ_HEAD(conn_list, conn) conns;
    unsigned nconns;
    unsigned max_conns;         /* this worker's share of limits.max_connections */
    struct limiter *limiter;    /* the process's per-address counts (the runtime's) */
    struct limiter *rates;      /* the process's rate-limit buckets (the runtime's) */
    atomic_uint_fast64_t rate_local; /* shared limits decided locally (Redis away or late) */
    uint64_t ip_refused;        /* connections refused by per-address limits, unlogged yet */
    uint64_t ip_refused_logged_us;
    bool accept_paused;         /* listeners disabled: at max_conns or after an accept error */
    struct straggler_list stragglers; /* attempts that lost to a hedge, awaiting their verdict */
};

/* Build worker `id` with its first generation (taken, whatever the outcome), the access-log fd
 * (shared, not owned), main's exit notification event, and the counters of its Redis connection
 * (kept by the caller; used when the config has a redis section). NULL with the reason in err. */
/* Per-address limits for a new client connection from sa: false when refused (closed by the
 * caller; counted and logged here); *counted: release it with the connection. */
bool worker_admit(struct worker *w, const struct sockaddr *sa, bool *counted);

struct worker *worker_new(int id, struct worker_generation *g, int alog_fd,
                          struct event *exit_notify, struct redis_stats *redis_stats, char *err,
                          size_t errlen);

/* Start the worker's thread. Returns 0 or -1. */
int worker_start(struct worker *w);

/* From any thread: ask for a graceful drain, or for an immediate stop. */
void worker_request(struct worker *w, enum worker_cmd cmd);

/* From any thread: new connections use generation g from now on. Takes ownership of g. */
void worker_set_generation(struct worker *w, struct worker_generation *g);

/* Count one occurrence of an outcome (any thread may read the counters). */
static inline void
worker_count(struct worker *w, enum reason r)
{
    atomic_fetch_add_explicit(&w->reasons[r], 1, memory_order_relaxed);
}

/* Whether the worker's loop has ended (any thread). */
static inline bool
worker_exited(struct worker *w)
{
    return atomic_load(&w->exited);
}

/* Wait for the thread to end, then free everything. Accepts NULL. */
void worker_join_free(struct worker *w);

/* Called by a connection when it has been freed: accounting, accept resumption, drain end. */
void worker_conn_closed(struct worker *w, struct conn *c);

#endif
