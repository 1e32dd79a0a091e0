/*
 * passive: consecutive failure counts on the shared table, and reports at the threshold.
 */
#include "passive.h"
#include "router.h"

static _Atomic uint32_t *
counter(struct server_shared *sh, enum passive_event ev)
{
    switch (ev) {
    case PASSIVE_CONNECT: return &sh->connect_failures;
    case PASSIVE_TIMEOUT: return &sh->timeouts;
    case PASSIVE_5XX: return &sh->http_5xx;
    }
    return &sh->connect_failures;
}

static int
threshold(const struct passive_conf *p, enum passive_event ev)
{
    switch (ev) {
    case PASSIVE_CONNECT: return p->connect_failures;
    case PASSIVE_TIMEOUT: return p->timeouts;
    case PASSIVE_5XX: return p->http_5xx;
    }
    return 0;
}

void
passive_failure(struct health *h, const struct server_rt *s, enum passive_event ev)
{
    struct server_shared *sh;
    int limit = threshold(&s->cluster->conf->passive, ev);
    _Atomic uint32_t *n;

    if (h == NULL || limit == 0)
        return;
    sh = &health_table(h)->servers[s->index];
    n = counter(sh, ev);
    if (atomic_fetch_add_explicit(n, 1, memory_order_relaxed) + 1 >= (uint32_t)limit) {
        atomic_store_explicit(n, 0, memory_order_relaxed);
        health_report(h, s->index, ev);
    }
}

static void
reset(_Atomic uint32_t *n)
{
    if (atomic_load_explicit(n, memory_order_relaxed) != 0)
        atomic_store_explicit(n, 0, memory_order_relaxed);
}

void
passive_response(struct health *h, const struct server_rt *s, int status)
{
    struct server_shared *sh;

    if (h == NULL)
        return;
    sh = &health_table(h)->servers[s->index];
    reset(&sh->connect_failures);
    reset(&sh->timeouts);
    if (status >= 500)
        passive_failure(h, s, PASSIVE_5XX);
    else
        reset(&sh->http_5xx);
}
