/*
 * fleet: what the instances of a fleet share through Redis, run on the main thread (whose loop
 * outlives reloads): first-hand health news and the peers' reports about it, operators' admin
 * states, TLS session ticket keys, and a heartbeat naming each instance. Without Redis nothing
 * here changes local behaviour: each instance goes on with its own checks and keys.
 */
#ifndef TRIDENT_FLEET_H
#define TRIDENT_FLEET_H

#include <jansson.h>
#include <stdbool.h>

#include "config-t.h"
#include "server_state.h"

struct event_base;
struct health;
struct redis_stats;
struct tls_tickets;

struct fleet;

/* A fleet member for cfg (which has a redis section; a reference is kept for the Redis
 * settings), with its two connections' counters, sharing `tickets` (may be NULL). Connects at
 * once. NULL when out of memory. */
struct fleet *fleet_new(struct event_base *base, struct config *cfg, struct redis_stats *cmd,
                        struct redis_stats *sub, struct tls_tickets *tickets);
void fleet_free(struct fleet *f);

/* Before h starts: make it report its first-hand transitions to the fleet. */
void fleet_observe(struct fleet *f, struct health *h);

/* cfg and h are current now (start-up, or a reload committed): references are taken, and the
 * peers' reports and the shared admin states are applied to h. */
void fleet_attach(struct fleet *f, struct config *cfg, struct health *h);

/* Run base until the first sync with Redis (admin states, ticket keys) or ms passed: at
 * start-up, before any request is served. */
void fleet_wait_sync(struct fleet *f, int ms);

/* An operator set a server's admin state here (admin endpoint): share it. */
void fleet_admin_changed(struct fleet *f, const char *server_id, enum admin_state state);

/* Whether the fleet keeps the ticket keys now (sharing on and Redis reachable): the local
 * rotation steps aside. */
bool fleet_owns_tickets(const struct fleet *f);

/* /status: {"instance", "peers": [...], "down_reports": [...]} (a new reference). "peers" lists
 * this instance first ("self": true, whether Redis answers or not), then the others heard from in
 * the last 10 s. */
json_t *fleet_status(const struct fleet *f);

/* Instances heard from in the last 10 s, this one included (so at least 1). */
size_t fleet_instance_count(const struct fleet *f);

#endif
