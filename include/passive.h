/*
 * passive: failures seen on real traffic, counted per server in the health table (consecutive,
 * reset by a success) and reported to the health thread when a cluster's threshold is reached,
 * so a failing server is taken out before its next active check. Called on the request path:
 * a success costs one relaxed load per counter, a write only when a count was non-zero.
 */
#ifndef TRIDENT_PASSIVE_H
#define TRIDENT_PASSIVE_H

#include "health.h"

struct server_rt;

/* A failure of kind `ev` on server s. */
void passive_failure(struct health *h, const struct server_rt *s, enum passive_event ev);

/* A response head arrived from s with `status`: connection-level counts reset; a 5xx counts. */
void passive_response(struct health *h, const struct server_rt *s, int status);

#endif
