/*
 * server_state: rise/fall counting, ejection, and the slow-start weight ramp.
 */
#include "server_state.h"

void
server_state_init(struct server_state *s, bool checked, uint64_t now_us)
{
    *s = (struct server_state){
        .health = checked ? HEALTH_UNKNOWN : HEALTH_UP,
        .admin = ADMIN_READY,
        .since_us = checked ? now_us : 0,
    };
}

static enum sm_change
set_health(struct server_state *s, enum health_state h, uint64_t now_us)
{
    s->health = h;
    s->since_us = now_us;
    s->ok_streak = s->fail_streak = 0;
    s->suspect = false; /* a transition settles any suspicion */
    return h == HEALTH_UP ? SM_WENT_UP : SM_WENT_DOWN;
}

enum sm_change
server_state_check(struct server_state *s, bool ok, unsigned rise, unsigned fall, uint64_t now_us)
{
    switch (s->health) {
    case HEALTH_UNKNOWN:
        /* The first verdict decides: start-up must not wait `rise` rounds to route. A server
         * found up at start-up is not "coming back": no slow start (since_us 0). */
        set_health(s, ok ? HEALTH_UP : HEALTH_DOWN, ok ? 0 : now_us);
        return ok ? SM_WENT_UP : SM_WENT_DOWN;
    case HEALTH_UP:
        if (ok) {
            s->fail_streak = 0;
            if (!s->suspect)
                return SM_NONE;
            s->suspect = false;
            return SM_CLEARED;
        }
        return ++s->fail_streak >= fall || s->suspect ? set_health(s, HEALTH_DOWN, now_us)
                                                      : SM_NONE;
    case HEALTH_DOWN:
        if (!ok) {
            s->ok_streak = 0;
            return SM_NONE;
        }
        return ++s->ok_streak >= rise ? set_health(s, HEALTH_UP, now_us) : SM_NONE;
    }
    return SM_NONE;
}

enum sm_change
server_state_eject(struct server_state *s, uint64_t now_us)
{
    if (s->health == HEALTH_DOWN)
        return SM_NONE;
    return set_health(s, HEALTH_DOWN, now_us);
}

enum sm_change
server_state_restore(struct server_state *s, uint64_t now_us)
{
    if (s->health == HEALTH_UP)
        return SM_NONE;
    return set_health(s, HEALTH_UP, now_us);
}

bool
server_state_set_admin(struct server_state *s, enum admin_state admin, uint64_t now_us)
{
    if (s->admin == admin)
        return false;
    if (admin == ADMIN_READY && s->health == HEALTH_UP)
        s->since_us = now_us;
    s->admin = admin;
    return true;
}

bool
server_state_suspect(struct server_state *s)
{
    if (s->health != HEALTH_UP || s->suspect)
        return false;
    s->suspect = true;
    return true;
}

bool
server_state_set_fleet_down(struct server_state *s, bool down)
{
    if (s->fleet_down == down)
        return false;
    s->fleet_down = down;
    return true;
}

int
server_state_weight(const struct server_state *s, int weight, uint64_t slow_start_us,
                    uint64_t now_us)
{
    uint64_t elapsed;
    int w;

    if (weight <= 0 || slow_start_us == 0 || s->since_us == 0)
        return weight;
    if (now_us <= s->since_us)
        return 1;
    elapsed = now_us - s->since_us;
    if (elapsed >= slow_start_us)
        return weight;
    w = (int)((uint64_t)weight * elapsed / slow_start_us);
    return w < 1 ? 1 : w;
}

const char *
health_state_name(enum health_state h)
{
    switch (h) {
    case HEALTH_UNKNOWN: return "unknown";
    case HEALTH_UP: return "up";
    case HEALTH_DOWN: return "down";
    }
    return "?";
}

const char *
admin_state_name(enum admin_state a)
{
    switch (a) {
    case ADMIN_READY: return "ready";
    case ADMIN_DRAINING: return "draining";
    case ADMIN_MAINTENANCE: return "maintenance";
    }
    return "?";
}
