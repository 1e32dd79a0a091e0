/*
 * straggler: a first attempt that lost to its hedge, kept after the client has its answer until
 * the server answers or fails. Losing a race is evidence of slowness, not of failure: the
 * passive checks judge what the server then does. An answer, however late, resets its counts; a
 * reset, or silence for a verdict time more (the caller's: a few hedge delays, at least 100 ms),
 * counts as a failed attempt would. So a stall of a few tens of milliseconds on a busy host
 * takes no healthy server out, while a hung one is out within a few hundred. A straggler
 * reports to nobody else: the client connection is done with it.
 *
 * One list per worker, owned by it; at most STRAGGLER_MAX at once (a further loser is closed
 * without a verdict: bounded memory and sockets however slow a provider is).
 */
#ifndef TRIDENT_STRAGGLER_H
#define TRIDENT_STRAGGLER_H

#include <stdbool.h>
#include <sys/queue.h>

struct router;
struct server_rt;
struct upstream;
struct straggler;

#define STRAGGLER_MAX 256

struct straggler_list {
    /* cppcheck-suppress unusedStructMember ; sys/queue.h's TAILQ macros use the head's fields */
    TAILQ_HEAD(, straggler) head;
    unsigned n;
};

void straggler_list_init(struct straggler_list *l);

/* Keep u, an ACTIVE or CONNECTING attempt at server s (of router r) that lost to a hedge, until
 * its verdict: an answer, a failure, or nothing within verdict_ms from now (a timeout; a
 * CONNECTING one keeps its connect timeout, and is closed without a verdict once connected: it
 * never carried the request). Takes ownership of u (closed at once when the list is full) and of
 * the router_begin() count the attempt holds on s; takes a reference to r, which s belongs to.
 * `pooled`: u came from the pool (a close before any response byte is then HTTP/1.1's
 * keep-alive race, no failure). */
void straggler_keep(struct straggler_list *l, struct router *r, struct server_rt *s,
                    struct upstream *u, bool pooled, int verdict_ms);

/* Close every straggler without a verdict (the worker is ending). */
void straggler_free_all(struct straggler_list *l);

#endif
