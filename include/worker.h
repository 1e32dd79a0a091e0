/*
 * worker: one thread, one event loop, and everything registered on it: its listening sockets (one
 * per configured address, SO_REUSEPORT), its client connections, its router with the upstream
 * pools, its access-log batcher and request-id generator. Nothing here is shared with another
 * worker; the main thread talks to a worker only through worker_request_*(), which set an atomic
 * command and wake the loop with event_active().
 */
#ifndef TRIDENT_WORKER_H
#define TRIDENT_WORKER_H

#include <event2/event.h>
#include <event2/listener.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/queue.h>

#include "config-t.h"
#include "reason.h"
#include "reqid.h"

struct conn;
struct health;
struct tls_server;
struct worker;

/* One configured listener inside one worker: its socket and, for TLS, the context new connections
 * use (swapped when certificates are reloaded; connections keep the one they started with). */
struct listener_rt {
    struct evconnlistener *ev;
    const struct listener_conf *conf;
    struct tls_server *tls; /* a reference; NULL for plain listeners */
    struct worker *w;
};

enum worker_state {
    WORKER_RUNNING,  /* accepting and serving */
    WORKER_DRAINING, /* listeners closed; in-flight requests finish, then the loop exits */
};

/* Commands from the main thread, as bits: several may be pending at once. */
enum worker_cmd {
    WORKER_CMD_DRAIN = 1 << 0, /* graceful: stop accepting, finish in-flight requests */
    WORKER_CMD_STOP = 1 << 1,  /* now: close every connection */
    WORKER_CMD_TLS = 1 << 2,   /* take the TLS contexts waiting in pending_tls */
    WORKER_CMD_HEALTH = 1 << 3, /* server states changed: drop what went to servers now down */
};

struct worker {
    int id;
    enum worker_state state;
    pthread_t thread;
    bool started;           /* the thread runs (or ran) and must be joined */
    struct event_base *base;
    struct config *cfg;     /* the snapshot new connections start with (a reference) */
    struct router *router;  /* routes requests of connections started on cfg */
    struct health *health;  /* receives passive failure reports (shared, not owned) */
    char *maintenance_page; /* failover.maintenance_page's contents, or NULL */
    size_t maintenance_len;
    struct access_log *alog;
    struct reqid_gen reqids;
    struct listener_rt *listeners;
    size_t nlisteners;
    struct event *ctl_ev;       /* woken by another thread: read `cmd` */
    atomic_int cmd;             /* enum worker_cmd bits */
    struct tls_server **_Atomic pending_tls; /* WORKER_CMD_TLS: one per listener, owned */
    atomic_uint_fast64_t reasons[REASON_COUNT]; /* outcomes counted (read by other threads) */
    struct event *drain_ev;     /* the drain deadline */
    struct event *retry_ev;     /* resumes accepting after an accept error (EMFILE) */
    struct event *exit_notify;  /* main's event, activated when this loop has ended */
    atomic_bool exited;         /* set before exit_notify: activations of one event coalesce,
                                   so main counts these flags, not callbacks */
    TAILQ_HEAD(conn_list, conn) conns;
    unsigned nconns;
    unsigned max_conns;         /* this worker's share of limits.max_connections */
    bool accept_paused;         /* listeners disabled: at max_conns or after an accept error */
};

/* Build a worker on cfg (takes a reference) with listening sockets fds[0..nfds) (takes them),
 * one per cfg->listeners entry, their TLS contexts tls[0..nfds) (takes a reference to each
 * non-NULL one), the health thread (shared, not owned), the access-log fd (shared, not owned)
 * and main's exit notification event.
 * Returns NULL with the reason in err. */
struct worker *worker_new(int id, struct config *cfg, const int *fds, struct tls_server **tls,
                          struct health *health, int alog_fd, struct event *exit_notify, char *err,
                          size_t errlen);

/* Start the worker's thread. Returns 0 or -1. */
int worker_start(struct worker *w);

/* From any thread: ask for a graceful drain, or for an immediate stop. */
void worker_request(struct worker *w, enum worker_cmd cmd);

/* From any thread: new connections on each listener use tls[i] from now on. Takes ownership of
 * the array and of one reference per non-NULL entry. */
void worker_set_tls(struct worker *w, struct tls_server **tls);

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
