/*
 * stats: counters that the admin endpoint and the Prometheus metrics read. Each worker owns its
 * own copy of every counter and is its only writer, so an increment is a plain relaxed load and
 * store (no locked instruction on the request path); readers sum the workers' copies with relaxed
 * loads. Counters live in a registry keyed by server id that survives reloads, so a counter never
 * goes backwards while the process runs (Prometheus counters must not). It is not the access log.
 */
#ifndef TRIDENT_STATS_H
#define TRIDENT_STATS_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "reason.h"

/* Upper bounds of the latency histogram buckets, in microseconds (the last is +Inf). */
#define STATS_BUCKETS 14
extern const uint64_t stats_bucket_us[STATS_BUCKETS - 1];

typedef _Atomic uint64_t stat_t;

/* One worker's counters for one server (a cache line apart from the next worker's). */
struct server_stats {
    alignas(64) stat_t requests; /* exchanges that chose this server (attempts) */
    stat_t responses[6];       /* by status class: [1]=1xx .. [5]=5xx; [0] none (failed) */
    stat_t failures;           /* attempts that failed (connect, reset, timeout, invalid) */
    stat_t retries;            /* attempts on this server that were retries of another */
    stat_t hedges;             /* hedged attempts sent to this server */
    stat_t hedges_lost;        /* requests a hedge to another server answered first: this one was
                                  slow (evidence of slowness, not a failure) */
    stat_t connections;        /* connections opened to this server */
    stat_t active;             /* requests in flight (a gauge: begin +1, end -1) */
    stat_t bytes_in, bytes_out; /* client side of its exchanges */
    stat_t latency[STATS_BUCKETS]; /* request sent to response head */
    stat_t latency_sum_us;
};

/* One worker's counters for one listener. */
struct listener_stats {
    alignas(64) stat_t accepted;
    stat_t active;             /* gauge */
    stat_t requests;
    stat_t handshakes;         /* TLS handshakes finished */
    stat_t duration[STATS_BUCKETS]; /* whole requests, first byte to last */
    stat_t duration_sum_us;
};

/* Add v to a counter this thread alone writes. */
static inline void
stat_add(stat_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

static inline void
stat_sub(stat_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - v,
                          memory_order_relaxed);
}

static inline uint64_t
stat_get(const stat_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* Count one observation of `us` in a histogram (buckets + sum). */
void stats_observe(stat_t *buckets, stat_t *sum, uint64_t us);

struct stats;

/* A registry for `nworkers` workers. NULL when out of memory. */
struct stats *stats_new(int nworkers);
void stats_free(struct stats *s);

/* The counters of server `id` for worker `w`, created on first use. Called when a router is built
 * (start-up, reload), never on the request path. NULL when out of memory. */
struct server_stats *stats_server(struct stats *s, const char *id, int w);

/* The same for the listener bound to `address` (as written in the config). */
struct listener_stats *stats_listener(struct stats *s, const char *address, int w);

/* Sum a server's (or listener's) counters over all workers into *out (a plain snapshot). Returns
 * 0, or -1 when the id is unknown. Any thread. */
int stats_server_sum(struct stats *s, const char *id, struct server_stats *out);
int stats_listener_sum(struct stats *s, const char *address, struct listener_stats *out);

#endif
