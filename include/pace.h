/*
 * pace: how long a request body has kept trident waiting on the client, against what its size
 * allows (the rule of Apache's mod_reqtimeout MinRate): a body may keep trident waiting `grace`
 * plus one second per `min_rate` bytes received. A client that trickles a byte just before each
 * read timeout would otherwise hold its connection (and a server's) for ever. Only time spent
 * waiting for the client counts: while trident itself does not read (backpressure from the
 * server, a connect in progress, bytes still buffered) the clock stops.
 */
#ifndef TRIDENT_PACE_H
#define TRIDENT_PACE_H

#include <stdbool.h>
#include <stdint.h>

struct pace {
    uint64_t bytes;        /* body bytes received */
    uint64_t waited_us;    /* time spent waiting for them */
    uint64_t wait_from_us; /* waiting since then; 0: not waiting now */
};

/* Trident now waits for the client (it reads and has nothing buffered). */
static inline void
pace_wait(struct pace *p, uint64_t now_us)
{
    if (p->wait_from_us == 0)
        p->wait_from_us = now_us > 0 ? now_us : 1;
}

/* Bytes arrived, or trident stopped reading. */
static inline void
pace_stop(struct pace *p, uint64_t now_us)
{
    if (p->wait_from_us != 0) {
        p->waited_us += now_us > p->wait_from_us ? now_us - p->wait_from_us : 0;
        p->wait_from_us = 0;
    }
}

/* Whether the client has been slower than min_rate bytes/s beyond grace_ms (min_rate 0: off). */
static inline bool
pace_too_slow(const struct pace *p, int grace_ms, int min_rate)
{
    return min_rate > 0 &&
           p->waited_us > (uint64_t)grace_ms * 1000 + p->bytes * 1000000 / (uint64_t)min_rate;
}

#endif
