/*
 * conn: a client connection from accept to close. Reads request heads, checks and rewrites them,
 * gets a server connection, streams the body up and the response down with backpressure, then
 * waits for the next request (keep-alive; pipelined requests are answered in order, one at a time).
 *
 * Closing rule: a connection is never freed inside one of its own callbacks. conn_close_now()
 * marks it CLOSED and schedules the free on the loop; every callback that may run afterwards sees
 * CLOSED and returns. So any code path may close the connection and then simply return.
 */
#ifndef TRIDENT_CONN_H
#define TRIDENT_CONN_H

#include <event2/util.h>
#include <sys/socket.h>

#include "conn-t.h"

/* Take the socket fd accepted on listener l. Returns the connection, or NULL (fd closed). */
struct conn *conn_new(struct listener_rt *l, evutil_socket_t fd, const struct sockaddr *sa,
                      socklen_t salen);

/* The worker is draining: close now when idle, else after the current exchange. */
void conn_drain(struct conn *c);

/* Close now, logging the exchange in flight (if any) with `why`. */
void conn_close_now(struct conn *c, enum reason why);

/* Free a CLOSED connection immediately (worker teardown; the loop no longer runs). */
void conn_free(struct conn *c);

#endif
