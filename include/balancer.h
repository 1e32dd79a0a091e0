/*
 * balancer: strategies that pick one peer from an array, as a small table of function pointers
 * (nginx's peer.get, h2o's balancers). Pure logic on plain arrays: the caller (router.c) fills the
 * weights and the `usable` flags from health and retry state before each pick, so the strategies know
 * nothing about servers, clusters or threads. Used for servers inside a cluster and for clusters.
 */
#ifndef TRIDENT_BALANCER_H
#define TRIDENT_BALANCER_H

#include <stdbool.h>
#include <stddef.h>

#include "config-t.h"

struct balancer_peer {
    int weight;      /* effective weight set by the caller; 0 takes nothing */
    int current;     /* smooth round-robin running value; the strategy owns it */
    unsigned active; /* requests in flight through this peer; the caller keeps it */
    bool usable;     /* set by the caller before a pick: up and not excluded */
};

struct balancer_ops {
    const char *name;
    /* Pick one peer that is usable and has weight > 0. Returns its index, or -1 when there is
     * none. Updates the strategy's state in the peers. */
    int (*pick)(struct balancer_peer *peers, size_t n);
};

/* Smooth weighted round-robin (nginx): weights 5,1,1 give a a b a c a a, never a burst. */
extern const struct balancer_ops balancer_swrr;

/* Least connections: the fewest active requests per unit of weight; ties go round-robin. */
extern const struct balancer_ops balancer_leastconn;

/* The strategy configured for a cluster. */
const struct balancer_ops *balancer_for(enum balance_kind kind);

#endif
