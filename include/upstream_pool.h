/*
 * upstream_pool: the idle keep-alive connections of one server inside one worker. Newest first
 * (LIFO): the connection most recently used is the least likely to have been closed by the server,
 * and the oldest ones expire. A connection taken from the pool is checked first: one the server
 * has closed (or sent unsolicited bytes on) is freed, never used for a request.
 */
#ifndef TRIDENT_UPSTREAM_POOL_H
#define TRIDENT_UPSTREAM_POOL_H

#include <sys/queue.h>

struct upstream;

struct upstream_pool {
    TAILQ_HEAD(upstream_list, upstream) idle;
    unsigned nidle;
    unsigned max;    /* idle connections kept; 0 disables reuse */
    int idle_ms;     /* an idle connection is closed after this long */
};

void upstream_pool_init(struct upstream_pool *p, unsigned max, int idle_ms);

/* A live idle connection, removed from the pool and still IDLE (attach it), or NULL. `verify`:
 * ask the kernel whether the server closed it meanwhile (a recv per request); without, a request
 * that finds it closed must be one the caller can send again on a fresh connection. */
struct upstream *upstream_pool_take(struct upstream_pool *p, bool verify);

/* Take ownership of an ACTIVE upstream whose exchange completed cleanly: keep it idle, or free it
 * when the pool is full. */
void upstream_pool_put(struct upstream_pool *p, struct upstream *u);

/* Free every idle connection. */
void upstream_pool_clear(struct upstream_pool *p);

/* Called by upstream.c when an idle connection closed or expired: unlink and free it. */
void upstream_pool_drop(struct upstream_pool *p, struct upstream *u);

#endif
