/*
 * health: the health thread. It owns one event loop, runs every active check (hcheck.h), feeds
 * verdicts, passive ejections and admin commands to server_state (the only place that decides a
 * server's state), runs the provider breaker, keeps a journal of transitions, and publishes the
 * outcome to the workers through struct health_table: per server atomics that the workers read
 * without locks when they route, and write only for passive failure counts. When anything changes
 * it calls the notify callback so workers can drop pooled connections and tunnels to servers that
 * went down. Workers report passive failures with health_report(), which never blocks on I/O.
 */
#ifndef TRIDENT_HEALTH_H
#define TRIDENT_HEALTH_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config-t.h"
#include "server_state.h"

/* Why a server's state changed; check verdicts carry their layer (as HAProxy's check reasons). */
enum check_reason {
    CHECK_OK,
    CHECK_L4_REFUSED,     /* connection refused */
    CHECK_L4_TIMEOUT,     /* no connection (or TLS handshake) within the timeout */
    CHECK_L4_ERROR,       /* reset or another socket error */
    CHECK_L6_HANDSHAKE,   /* TLS handshake or certificate verification failed */
    CHECK_L7_TIMEOUT,     /* connected, no complete answer within the timeout */
    CHECK_L7_STATUS,      /* an unexpected status */
    CHECK_L7_BODY,        /* the expected text is not in the body */
    CHECK_L7_INVALID,     /* not an HTTP response */
    CHECK_PASSIVE_CONNECT, /* traffic: refused or reset connections */
    CHECK_PASSIVE_TIMEOUT, /* traffic: connect or response timeouts */
    CHECK_PASSIVE_5XX,    /* traffic: 5xx responses */
    CHECK_BREAKER,        /* the provider breaker took the whole provider out */
    CHECK_EJECT_EXPIRED,  /* unchecked cluster: the ejection time passed */
    CHECK_ADMIN,          /* an operator's command */
    CHECK_FLEET_SUSPECT,  /* another instance reports it down: checking it here now */
    CHECK_FLEET_QUORUM,   /* a quorum of instances report it down */
    CHECK_REASON_COUNT
};

const char *check_reason_name(enum check_reason r);

/* What workers may read about one server. One cache line each: workers write the passive
 * counters, and those writes must not slow down the reads of a neighbouring server. */
struct server_shared {
    alignas(64) atomic_bool usable; /* takes new requests */
    _Atomic uint8_t health;         /* enum health_state, for displays */
    _Atomic uint8_t admin;          /* enum admin_state */
    _Atomic uint8_t last_reason;    /* enum check_reason of the last transition or verdict */
    _Atomic uint64_t up_since_us;   /* slow-start origin (monotonic); 0: no ramp */
    _Atomic uint32_t down_epoch;    /* bumps each time the server stops being usable */
    _Atomic uint32_t connect_failures; /* passive: consecutive, reset by a success */
    _Atomic uint32_t timeouts;
    _Atomic uint32_t http_5xx;
    _Atomic uint64_t transitions;   /* counted for metrics */
    _Atomic uint64_t last_check_us; /* duration of the last active check */
    _Atomic int32_t last_status;    /* HTTP status of the last http check; 0: none */
};

struct health_table {
    size_t n;                      /* servers, in config order (cluster by cluster) */
    struct server_shared *servers;
    _Atomic uint64_t generation;   /* bumps on every change: routers recompute only then */
};

/* The weight a server gets during slow start, from its shared up_since_us. */
int health_slow_start_weight(int weight, uint64_t up_since_us, int slow_start_ms, uint64_t now_us);

enum passive_event {
    PASSIVE_CONNECT, /* a connection to the server was refused or reset */
    PASSIVE_TIMEOUT, /* a connect or response timeout */
    PASSIVE_5XX,     /* a 5xx response */
};

struct health;

/* Build (not start) the health thread for cfg (takes a reference), with one reference. `notify`
 * is called from the health thread whenever a server's usability changed. With `prev` (a reload),
 * servers with the same id keep their state and the journal carries on. Returns NULL with the
 * reason in err. */
struct health *health_new(struct config *cfg, const struct health *prev,
                          void (*notify)(void *arg), void *notify_arg, char *err, size_t errlen);

/* Another reference (a router reads the table while it lives). Any thread. */
struct health *health_ref(struct health *h);

/* Drop a reference; the last one stops the thread (if still running) and frees everything, the
 * table included. Accepts NULL. Any thread but the health thread itself. */
void health_unref(struct health *h);

/* The table workers read. Valid until health_free(). */
struct health_table *health_table(struct health *h);

/* Start the thread; then wait until every checked server has its first verdict, or wait_ms.
 * Returns 0 or -1. */
int health_start(struct health *h, int wait_ms);

/* From any thread: the passive failure threshold of server `index` was reached. */
void health_report(struct health *h, size_t index, enum passive_event ev);

/* From any thread: an operator's command (drain, maintenance, ready). */
void health_set_admin(struct health *h, size_t index, enum admin_state admin);

/* What other instances report (fleet.c, from Redis). Any thread. */
enum fleet_event {
    FLEET_SUSPECT,      /* `instance` saw it go down: no new requests, check it now */
    FLEET_QUORUM_DOWN,  /* a quorum of instances report it down: out whatever the checks say */
    FLEET_QUORUM_CLEAR, /* fewer than a quorum do now */
};
void health_fleet(struct health *h, size_t index, enum fleet_event ev, const char *instance);

/* Before health_start(): fn is called on the health thread for every transition this instance
 * observed itself (checks, passive reports, the breaker), not for those that came from the
 * fleet or an operator, so that fleet.c publishes only first-hand news. */
typedef void health_observer_fn(void *arg, const char *server_id, enum health_state to,
                                enum check_reason why);
void health_set_observer(struct health *h, health_observer_fn *fn, void *arg);

/* Stop the thread (no more notify calls after it returns); the table stays readable. */
void health_stop(struct health *h);

/* One journal entry: a state change, for the admin endpoint. */
struct journal_entry {
    long long time_ms;   /* wall clock */
    char server[65];     /* id (indexes change across reloads) */
    uint8_t from, to;    /* enum health_state */
    uint8_t admin;       /* enum admin_state after the change */
    uint8_t reason;      /* enum check_reason */
    int32_t status;      /* http check status, 0 if none */
};

/* Copy up to `max` most recent journal entries, newest first. Any thread. Returns the count. */
size_t health_journal(struct health *h, struct journal_entry *out, size_t max);

#endif
