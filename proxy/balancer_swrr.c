/*
 * balancer_swrr: smooth weighted round-robin, as in nginx's ngx_http_upstream_round_robin.c. Each
 * pick adds every candidate's weight to its running value, takes the largest, and subtracts the
 * total from the winner: over one cycle each peer is picked `weight` times, spread evenly.
 */
#include "balancer.h"

static int
swrr_pick(struct balancer_peer *peers, size_t n)
{
    int best = -1, total = 0;

    for (size_t i = 0; i < n; i++) {
        struct balancer_peer *p = &peers[i];

        if (!p->usable || p->weight <= 0)
            continue;
        p->current += p->weight;
        total += p->weight;
        if (best < 0 || p->current > peers[best].current)
            best = (int)i;
    }
    if (best >= 0)
        peers[best].current -= total;
    return best;
}

const struct balancer_ops balancer_swrr = {
    .name = "round_robin",
    .pick = swrr_pick,
};
