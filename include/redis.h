/*
 * redis: one asynchronous Redis connection on one event loop (hiredis through its libevent
 * adapter), built so that Redis can never stall or fail a request:
 * - a command may carry a time budget (a libevent timer: hiredis 0.14 has no async timeouts);
 *   past it the caller is answered "no reply" and goes on with local state;
 * - a command is refused at once (the caller goes on locally) while the connection is not ready
 *   or already has redis.max_pending commands in flight;
 * - a connection whose oldest command has waited redis.io_timeout_ms is dropped (an idle one is
 *   pinged, so a dead or frozen server is noticed too) and reconnected after a capped
 *   exponential backoff with jitter;
 * - with Sentinel, the master is asked of the sentinels before every connect and confirmed with
 *   ROLE; a READONLY error (the master was demoted) drops the connection to find the new one.
 * The owner of the event loop is the only caller. Callbacks run on that loop, never from inside
 * redis_command().
 */
#ifndef TRIDENT_REDIS_H
#define TRIDENT_REDIS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "config-t.h"

struct event_base;
struct redisReply;

enum redis_state {
    REDIS_BACKOFF,    /* not connected; the next attempt is scheduled */
    REDIS_RESOLVING,  /* asking a sentinel for the master's address */
    REDIS_CONNECTING, /* TCP connect, then AUTH / SELECT / ROLE */
    REDIS_READY,      /* commands go through */
    REDIS_STOPPED,    /* redis_free() under way */
};

const char *redis_state_name(enum redis_state s);

/* Counters and state of one connection: written by its owner, read by the admin endpoint. */
struct redis_stats {
    char name[32];                  /* "worker 0", "fleet", "fleet-sub" */
    _Atomic uint8_t state;          /* enum redis_state */
    _Atomic uint64_t commands;      /* sent */
    _Atomic uint64_t timeouts;      /* answered "no reply" when the budget passed */
    _Atomic uint64_t errors;        /* error replies, and commands lost with a connection */
    _Atomic uint64_t refused;       /* not sent: not ready, or too many in flight */
    _Atomic uint64_t connects;      /* connections that became ready */
    _Atomic uint64_t disconnects;   /* ready connections lost or dropped */
    pthread_mutex_t lock;           /* guards `server` (rarely written, rarely read) */
    char server[ADDR_TEXT_MAX];     /* the server connected to (or last tried) */
};

void redis_stats_init(struct redis_stats *st, const char *name);
void redis_stats_destroy(struct redis_stats *st);
/* The server's address as last set; safe from any thread. */
void redis_stats_server(struct redis_stats *st, char *buf, size_t len);

/* A reply, or NULL: no reply within the budget, the connection was lost, or redis_free(). */
typedef void redis_reply_fn(const struct redisReply *reply, void *arg);

struct redis;
struct redis_op;

/* A connection for conf (which must outlive it) on base, counting into stats (kept by the
 * caller). It starts connecting at once. NULL when out of memory. */
struct redis *redis_new(struct event_base *base, const struct redis_conf *conf,
                        struct redis_stats *stats);

/* Drop the connection; pending callbacks run with NULL first. Accepts NULL. Never from inside a
 * callback of this connection. */
void redis_free(struct redis *r);

/* Called each time the connection becomes ready (after a reconnect too): resync. On a
 * subscriber, once the subscription is confirmed (messages from then on are not missed). */
void redis_on_ready(struct redis *r, void (*fn)(void *arg), void *arg);

bool redis_ready(const struct redis *r);

/* Send a command (hiredis format: %s, %b with pointer and length, %d). fn (may be NULL: fire and
 * forget) is called exactly once, later: with the reply, or with NULL when budget_ms (0: none
 * but io_timeout_ms) passes first. Returns a handle, or NULL when the command was not sent: fn
 * will not be called and the caller goes on without Redis. */
struct redis_op *redis_command(struct redis *r, int budget_ms, redis_reply_fn *fn, void *arg,
                               const char *fmt, ...);

/* The same with the command as argc strings (a variable number of arguments). */
struct redis_op *redis_command_argv(struct redis *r, int budget_ms, redis_reply_fn *fn, void *arg,
                                    int argc, const char **argv, const size_t *argvlen);

/* The caller goes away: fn will not be called for op. */
void redis_cancel(struct redis_op *op);

/* Make this a subscriber connection: on every ready, SUBSCRIBE channel; each message's payload
 * goes to fn (payload, length). Returns 0. */
int redis_subscribe(struct redis *r, const char *channel,
                    void (*fn)(const char *payload, size_t len, void *arg), void *arg);

/* Drop the connection now and reconnect after the backoff (another connection to the same
 * server saw it die). */
void redis_reset(struct redis *r);

#endif
