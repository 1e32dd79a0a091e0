/*
 * server_state: the only place that decides a server's state. A pure state machine over check
 * results, passive ejections and admin commands, with plain arguments, so a unit test drives it
 * directly. Health (up, down, unknown before the first verdict) and admin intent (ready, draining,
 * maintenance) are kept apart: an operator draining a server does not make it unhealthy, and a
 * server that fails while drained is still known to be down. Two overlays come from the fleet
 * (other instances, through Redis): `suspect` (a peer saw it fail: no new requests until this
 * instance's own next check decides) and `fleet_down` (a quorum of peers report it down). It is
 * not thread-safe: the health
 * thread owns every struct server_state; workers see what it publishes (health.h).
 */
#ifndef TRIDENT_SERVER_STATE_H
#define TRIDENT_SERVER_STATE_H

#include <stdbool.h>
#include <stdint.h>

enum health_state {
    HEALTH_UNKNOWN, /* no verdict yet (start-up): takes no traffic */
    HEALTH_UP,
    HEALTH_DOWN,
};

enum admin_state {
    ADMIN_READY,       /* serves */
    ADMIN_DRAINING,    /* finishes what it has (tunnels too); no new requests, sessions move */
    ADMIN_MAINTENANCE, /* out at once */
};

enum sm_change {
    SM_NONE,
    SM_WENT_UP,
    SM_WENT_DOWN,
    SM_CLEARED, /* a suspicion was lifted by a good check: usable again, health unchanged */
};

struct server_state {
    enum health_state health;
    enum admin_state admin;
    unsigned ok_streak;   /* consecutive good verdicts while not up */
    unsigned fail_streak; /* consecutive bad verdicts while not down */
    bool suspect;         /* a peer reports it down; the next check here decides */
    bool fleet_down;      /* a quorum of peers report it down */
    uint64_t since_us;    /* when health last changed (slow start counts from here); 0: up
                             since start-up, which no slow start applies to */
};

/* A fresh server: UNKNOWN, or UP when the cluster runs no active checks (nothing would ever
 * give it a first verdict). */
void server_state_init(struct server_state *s, bool checked, uint64_t now_us);

/* One active check's verdict. UNKNOWN takes the first verdict at once; then `rise` consecutive
 * successes bring a server up and `fall` consecutive failures take it down. A suspect server
 * goes down at its first failure (a peer saw it fail too) and is cleared by a success. */
enum sm_change server_state_check(struct server_state *s, bool ok, unsigned rise, unsigned fall,
                                  uint64_t now_us);

/* Take a server down at once (passive ejection, provider breaker). Its way back is `rise`
 * successes, or server_state_restore() when no checks run. */
enum sm_change server_state_eject(struct server_state *s, uint64_t now_us);

/* Bring a server back without checks (the ejection time of an unchecked cluster passed). */
enum sm_change server_state_restore(struct server_state *s, uint64_t now_us);

/* An operator's command. Returns false when the state did not change. A server returning to
 * ready while up ramps through slow start: it comes back to cold caches like a recovered one. */
bool server_state_set_admin(struct server_state *s, enum admin_state admin, uint64_t now_us);

/* A peer reports the server down: suspect until the next check, if it is up. Returns whether it
 * became suspect (a server that is not up, or already suspect, has nothing to suspend). */
bool server_state_suspect(struct server_state *s);

/* A quorum of peers reports it down (true) or no longer does (false). Returns whether the flag
 * changed. */
bool server_state_set_fleet_down(struct server_state *s, bool down);

/* Whether the server takes new requests. */
static inline bool
server_state_usable(const struct server_state *s)
{
    return s->health == HEALTH_UP && s->admin == ADMIN_READY && !s->suspect && !s->fleet_down;
}

/* Whether checks should run at the fast interval: a verdict is forming or the server is down. */
static inline bool
server_state_unsettled(const struct server_state *s)
{
    return s->health != HEALTH_UP || s->fail_streak > 0 || s->suspect;
}

/* Effective weight during slow start: weight ramps linearly from 1 over `slow_start_us` after
 * the server came back up (never below 1 for a positive weight). */
int server_state_weight(const struct server_state *s, int weight, uint64_t slow_start_us,
                        uint64_t now_us);

const char *health_state_name(enum health_state h);
const char *admin_state_name(enum admin_state a);

#endif
