/*
 * balancer_leastconn: the peer with the fewest active requests per unit of weight. Peers that tie
 * share the pick by smooth weighted round-robin, as nginx's least_conn does, so an idle cluster
 * still spreads its requests instead of always taking the first server.
 */
#include <stdint.h>

#include "balancer.h"

/* a has fewer active requests per weight than b: a.active/a.weight < b.active/b.weight */
static int
load_cmp(const struct balancer_peer *a, const struct balancer_peer *b)
{
    uint64_t la = (uint64_t)a->active * (uint64_t)b->weight;
    uint64_t lb = (uint64_t)b->active * (uint64_t)a->weight;

    return la < lb ? -1 : la > lb;
}

static int
leastconn_pick(struct balancer_peer *peers, size_t n)
{
    int least = -1, best = -1, total = 0;

    for (size_t i = 0; i < n; i++)
        if (peers[i].usable && peers[i].weight > 0 &&
            (least < 0 || load_cmp(&peers[i], &peers[least]) < 0))
            least = (int)i;
    if (least < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        struct balancer_peer *p = &peers[i];

        if (!p->usable || p->weight <= 0 || load_cmp(p, &peers[least]) != 0)
            continue;
        p->current += p->weight;
        total += p->weight;
        if (best < 0 || p->current > peers[best].current)
            best = (int)i;
    }
    peers[best].current -= total;
    return best;
}

const struct balancer_ops balancer_leastconn = {
    .name = "least_conn",
    .pick = leastconn_pick,
};
