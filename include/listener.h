/*
 * listener: opening the client-facing sockets. Each worker gets its own socket per configured
 * address, all bound with SO_REUSEPORT, so the kernel spreads new connections across workers and
 * no accept lock exists. Sockets are opened by the main thread before any worker starts, so a bind
 * error stops start-up with a clear message. Accepting is worker.c's.
 */
#ifndef TRIDENT_LISTENER_H
#define TRIDENT_LISTENER_H

#include <stddef.h>

#include "addr.h"

/* A non-blocking listening socket bound to a, or -1 with the reason in err. `reuseport`: one
 * socket per worker (data listeners); without it the address is this socket's alone (the admin
 * endpoint: a second process on the same port must fail, not share it). */
int listener_open(const struct addr *a, int backlog, int reuseport, char *err, size_t errlen);

#endif
