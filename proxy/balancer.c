/*
 * balancer: the table from configured strategy names to their implementations.
 */
#include "balancer.h"

const struct balancer_ops *
balancer_for(enum balance_kind kind)
{
    switch (kind) {
    case BALANCE_LEAST_CONN: return &balancer_leastconn;
    case BALANCE_ROUND_ROBIN: break;
    }
    return &balancer_swrr;
}
