/*
 * health: the health thread. Schedules each server's checks (steady interval, fast interval while
 * a server is unsettled, jitter), turns verdicts, passive reports and admin commands into state
 * changes through server_state, publishes them to the shared table, runs the provider breaker,
 * and keeps the journal. Everything here runs on the health thread except the functions that say
 * "any thread", which only touch the inbox, the journal copy and the start-up rendezvous.
 */
#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "config.h"
#include "hcheck.h"
#include "health.h"
#include "log.h"
#include "tls_upstream.h"

#define INBOX_MAX 1024 /* pending reports; more in one loop iteration are dropped (duplicates) */

enum inbox_kind { INBOX_PASSIVE, INBOX_ADMIN, INBOX_FLEET };

struct inbox_item {
    uint32_t server;
    uint8_t kind;  /* enum inbox_kind */
    uint8_t value; /* enum passive_event, enum admin_state or enum fleet_event */
    char from[65]; /* INBOX_FLEET: the reporting instance */
};

struct provider {
    const char *name;
    size_t *servers; /* indices into health.servers */
    size_t n;
};

struct hserver {
    struct health *h;
    size_t index;
    const struct server_conf *conf;
    const struct cluster_conf *cluster;
    const struct health_conf *hc; /* NULL: no active checks */
    struct provider *provider;
    struct server_state st;
    struct event *timer;          /* the next check, or the end of an ejection */
    struct hcheck *check;         /* in flight */
    struct hcheck_target target;
    char tls_name[256];
    char host[300];
    SSL_SESSION *tls_session;
    bool first_verdict;           /* start-up bookkeeping */
    uint64_t down_at_us;          /* last time it went down (breaker window) */
};

struct health {
    atomic_int refs;
    struct config *cfg;
    struct event_base *base;
    pthread_t thread;
    bool started, stopped;
    struct hserver *servers;
    size_t n;
    struct tls_client **tls; /* per cluster, the health thread's own contexts */
    struct provider *providers;
    size_t nproviders;
    struct health_table table;
    struct event *wake_ev, *stop_ev, *notify_ev;
    void (*notify)(void *arg);
    void *notify_arg;
    health_observer_fn *observer;
    void *observer_arg;
    pthread_mutex_t lock; /* inbox and journal */
    struct inbox_item inbox[INBOX_MAX];
    size_t inbox_n;
    struct journal_entry *journal;
    size_t journal_size, journal_head, journal_count;
    pthread_mutex_t ready_lock;
    pthread_cond_t ready_cond;
    size_t awaiting_first; /* checked servers without a first verdict */
};

static const char *const reason_names[CHECK_REASON_COUNT] = {
    [CHECK_OK] = "ok",
    [CHECK_L4_REFUSED] = "L4 connection refused",
    [CHECK_L4_TIMEOUT] = "L4 timeout",
    [CHECK_L4_ERROR] = "L4 socket error",
    [CHECK_L6_HANDSHAKE] = "L6 TLS handshake failed",
    [CHECK_L7_TIMEOUT] = "L7 timeout",
    [CHECK_L7_STATUS] = "L7 unexpected status",
    [CHECK_L7_BODY] = "L7 expected text missing",
    [CHECK_L7_INVALID] = "L7 invalid response",
    [CHECK_PASSIVE_CONNECT] = "passive: connections refused or reset",
    [CHECK_PASSIVE_TIMEOUT] = "passive: timeouts",
    [CHECK_PASSIVE_5XX] = "passive: 5xx responses",
    [CHECK_BREAKER] = "provider breaker",
    [CHECK_EJECT_EXPIRED] = "ejection over",
    [CHECK_ADMIN] = "admin",
    [CHECK_FLEET_SUSPECT] = "fleet: another instance reports it down",
    [CHECK_FLEET_QUORUM] = "fleet: a quorum of instances report it down",
};

const char *
check_reason_name(enum check_reason r)
{
    return (unsigned)r < CHECK_REASON_COUNT ? reason_names[r] : "?";
}

int
health_slow_start_weight(int weight, uint64_t up_since_us, int slow_start_ms, uint64_t now_us)
{
    struct server_state s = {.since_us = up_since_us};

    return server_state_weight(&s, weight, (uint64_t)slow_start_ms * 1000, now_us);
}

/* ---- publishing ------------------------------------------------------------------------------- */

static void
journal_add(struct health *h, const struct hserver *s, enum health_state from,
            enum check_reason why, int status)
{
    struct journal_entry e = {
        .time_ms = clock_wall_ms(),
        .from = (uint8_t)from,
        .to = (uint8_t)s->st.health,
        .admin = (uint8_t)s->st.admin,
        .reason = (uint8_t)why,
        .status = status,
    };

    snprintf(e.server, sizeof(e.server), "%s", s->conf->id);
    pthread_mutex_lock(&h->lock);
    h->journal[h->journal_head] = e;
    h->journal_head = (h->journal_head + 1) % h->journal_size;
    if (h->journal_count < h->journal_size)
        h->journal_count++;
    pthread_mutex_unlock(&h->lock);
}

/* Make the shared table say what server_state decided, and tell the workers once per iteration. */
static void
publish(struct hserver *s, enum check_reason why, int status)
{
    struct server_shared *sh = &s->h->table.servers[s->index];
    bool usable = server_state_usable(&s->st);
    bool out = s->st.health == HEALTH_DOWN || s->st.admin == ADMIN_MAINTENANCE;
    bool was_out = atomic_load(&sh->health) == HEALTH_DOWN ||
                   atomic_load(&sh->admin) == ADMIN_MAINTENANCE;

    /* Workers act on an epoch change: pooled connections go when a server stops taking requests,
     * tunnels when it is down or in maintenance (a drained server going down counts too). The
     * epoch moves after the state it announces is stored: a worker that sees the new epoch
     * must see the new state, or it would take the change as handled without acting on it. */
    bool announce = (atomic_load(&sh->usable) && !usable) || (out && !was_out);

    atomic_store(&sh->up_since_us, s->st.since_us);
    atomic_store(&sh->health, (uint8_t)s->st.health);
    atomic_store(&sh->admin, (uint8_t)s->st.admin);
    atomic_store(&sh->last_reason, (uint8_t)why);
    atomic_store(&sh->last_status, status);
    atomic_store(&sh->usable, usable);
    if (announce)
        atomic_fetch_add(&sh->down_epoch, 1);
    atomic_fetch_add(&s->h->table.generation, 1);
    event_active(s->h->notify_ev, EV_TIMEOUT, 1);
}

static void
log_change(const struct hserver *s, enum health_state from, enum check_reason why, int status)
{
    char st[24] = "";

    if (status != 0)
        snprintf(st, sizeof(st), " (status %d)", status);
    if (s->st.health == HEALTH_DOWN)
        log_warn("server %s (cluster %s, provider %s) is down: %s%s (was %s)", s->conf->id,
                 s->cluster->name, s->cluster->provider, check_reason_name(why), st,
                 health_state_name(from));
    else
        log_info("server %s (cluster %s, provider %s) is up: %s%s (was %s)", s->conf->id,
                 s->cluster->name, s->cluster->provider, check_reason_name(why), st,
                 health_state_name(from));
}

static void breaker_check(struct health *h, struct hserver *s);
static void schedule(struct hserver *s, bool fast_now);

static bool
first_hand(enum check_reason why)
{
    return why != CHECK_ADMIN && why != CHECK_FLEET_SUSPECT && why != CHECK_FLEET_QUORUM;
}

static void
apply(struct hserver *s, enum sm_change change, enum health_state from, enum check_reason why,
      int status)
{
    if (change == SM_NONE)
        return;
    if (change == SM_CLEARED) {
        log_info("server %s: another instance's report is not confirmed by this instance's "
                 "check", s->conf->id);
        publish(s, why, status);
        return;
    }
    /* Published first: once the log line or the journal says a server is down, every worker
     * that routes a request sees it down (an operator, or a test, acts on what they read). */
    publish(s, why, status);
    if (s->h->observer != NULL && first_hand(why))
        s->h->observer(s->h->observer_arg, s->conf->id, s->st.health, why);
    atomic_fetch_add(&s->h->table.servers[s->index].transitions, 1);
    log_change(s, from, why, status);
    journal_add(s->h, s, from, why, status);
    /* Only a server that was up and failed counts for the breaker: servers found down at
     * start-up (unknown to down) say nothing about a provider failing now. */
    if (change == SM_WENT_DOWN && from == HEALTH_UP) {
        s->down_at_us = clock_mono_us();
        if (why != CHECK_BREAKER)
            breaker_check(s->h, s);
    }
}

/* Take a server out at once; the way back is its checks (at the fast interval), or the ejection
 * time for a cluster without checks. */
static void
eject(struct hserver *s, enum check_reason why)
{
    enum health_state from = s->st.health;

    apply(s, server_state_eject(&s->st, clock_mono_us()), from, why, 0);
    if (s->check == NULL)
        schedule(s, true);
}

/* The breaker: when enough of one provider's servers went down within the window, the rest go
 * too: a data centre rarely fails one server at a time. At least two failures are needed, so a
 * provider of two servers is not taken out by one. */
static void
breaker_check(struct health *h, struct hserver *s)
{
    const struct failover_conf *f = &h->cfg->failover;
    struct provider *p = s->provider;
    uint64_t now = clock_mono_us(), window = (uint64_t)f->breaker_window_ms * 1000;
    size_t failed = 0, up = 0;

    for (size_t i = 0; i < p->n; i++) {
        struct hserver *o = &h->servers[p->servers[i]];
        if (o->st.health == HEALTH_DOWN && o->down_at_us != 0 && now - o->down_at_us <= window)
            failed++;
        else if (o->st.health == HEALTH_UP)
            up++;
    }
    if (up == 0 || failed < 2 || failed * 100 < (size_t)f->breaker_share_pct * p->n)
        return;
    log_warn("provider %s: %zu of its %zu servers failed within %d ms: taking the provider out",
             p->name, failed, p->n, f->breaker_window_ms);
    for (size_t i = 0; i < p->n; i++) {
        struct hserver *o = &h->servers[p->servers[i]];
        if (o->st.health == HEALTH_UP)
            eject(o, CHECK_BREAKER);
    }
}

/* ---- checks ----------------------------------------------------------------------------------- */

static void
first_verdict(struct hserver *s)
{
    struct health *h = s->h;

    if (s->first_verdict)
        return;
    s->first_verdict = true;
    pthread_mutex_lock(&h->ready_lock);
    if (--h->awaiting_first == 0)
        pthread_cond_broadcast(&h->ready_cond);
    pthread_mutex_unlock(&h->ready_lock);
}

static void
check_done(void *arg, enum check_reason verdict, int status, uint64_t elapsed_us)
{
    struct hserver *s = arg;
    struct server_shared *sh = &s->h->table.servers[s->index];
    enum health_state from = s->st.health;
    enum sm_change change;

    hcheck_free(s->check);
    s->check = NULL;
    atomic_store(&sh->last_check_us, elapsed_us);
    atomic_store(&sh->last_status, status);
    change = server_state_check(&s->st, verdict == CHECK_OK, (unsigned)s->hc->rise,
                                (unsigned)s->hc->fall, clock_mono_us());
    if (change == SM_NONE && verdict != CHECK_OK)
        log_debug("server %s: check failed: %s", s->conf->id, check_reason_name(verdict));
    apply(s, change, from, verdict, status);
    /* A failed check of a server already down (taken out by passive evidence, say) is now the
     * checks' verdict too: router_pick_panic() must no longer count it as out on passive
     * evidence alone. */
    if (change == SM_NONE && verdict != CHECK_OK && s->st.health == HEALTH_DOWN)
        atomic_store(&sh->last_reason, (uint8_t)verdict);
    first_verdict(s);
    schedule(s, false);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hserver *s = arg;
    enum health_state from = s->st.health;

    if (s->hc == NULL) { /* an unchecked server's ejection is over */
        apply(s, server_state_restore(&s->st, clock_mono_us()), from, CHECK_EJECT_EXPIRED, 0);
        return;
    }
    if (s->check != NULL)
        return;
    s->check = hcheck_start(s->h->base, &s->target, check_done, s);
    if (s->check == NULL)
        schedule(s, false);
}

static int
jittered(int ms, int pct)
{
    int span = ms * pct / 100;

    /* NOLINTNEXTLINE(cert-msc30-c): jitter spreads check times, it need not be unpredictable */
    return span > 0 ? ms - span + (int)((unsigned)rand() % (unsigned)(2 * span + 1)) : ms;
}

/* Arm the next check (or, unchecked, the end of an ejection). `fast_now`: a passive report or
 * the breaker wants a verdict soon, not after a steady interval. */
static void
schedule(struct hserver *s, bool fast_now)
{
    struct timeval tv;
    int ms;

    if (s->hc == NULL) {
        if (s->st.health != HEALTH_DOWN)
            return;
        ms = s->cluster->passive.eject_ms;
    } else {
        ms = fast_now || server_state_unsettled(&s->st) ? s->hc->fast_interval_ms
                                                        : s->hc->interval_ms;
        ms = jittered(ms, s->hc->jitter_pct);
    }
    tv = clock_tv_ms(ms);
    evtimer_add(s->timer, &tv);
}

/* ---- the inbox: reports from workers, commands from the admin endpoint -------------------- */

static void
push(struct health *h, struct inbox_item it)
{
    pthread_mutex_lock(&h->lock);
    if (h->inbox_n < INBOX_MAX)
        h->inbox[h->inbox_n++] = it;
    pthread_mutex_unlock(&h->lock);
    event_active(h->wake_ev, EV_READ, 0);
}

void
health_report(struct health *h, size_t index, enum passive_event ev)
{
    push(h, (struct inbox_item){
                .server = (uint32_t)index, .kind = INBOX_PASSIVE, .value = (uint8_t)ev});
}

void
health_fleet(struct health *h, size_t index, enum fleet_event ev, const char *instance)
{
    struct inbox_item it = {.server = (uint32_t)index, .kind = INBOX_FLEET, .value = (uint8_t)ev};

    snprintf(it.from, sizeof(it.from), "%s", instance != NULL ? instance : "");
    push(h, it);
}

void
health_set_observer(struct health *h, health_observer_fn *fn, void *arg)
{
    h->observer = fn;
    h->observer_arg = arg;
}

void
health_set_admin(struct health *h, size_t index, enum admin_state admin)
{
    push(h, (struct inbox_item){
                .server = (uint32_t)index, .kind = INBOX_ADMIN, .value = (uint8_t)admin});
}

/* A peer's report. Suspicion needs this instance's own check to decide, so it applies only to
 * checked servers; an unchecked one goes out only when a quorum says so. */
static void
take_fleet(struct hserver *s, enum fleet_event ev, const char *from)
{
    bool down = ev == FLEET_QUORUM_DOWN;

    if (ev == FLEET_SUSPECT) {
        if (s->hc == NULL || !server_state_suspect(&s->st))
            return;
        log_warn("server %s: instance %s reports it down; checking it now", s->conf->id, from);
        publish(s, CHECK_FLEET_SUSPECT, 0);
        if (s->check == NULL) { /* the verdict of a check in flight will do */
            evtimer_del(s->timer);
            timer_cb(-1, 0, s);
        }
        return;
    }
    if (!server_state_set_fleet_down(&s->st, down))
        return;
    if (down)
        log_warn("server %s: a quorum of instances report it down: out here too", s->conf->id);
    else
        log_info("server %s: fewer than a quorum of instances report it down now", s->conf->id);
    journal_add(s->h, s, s->st.health, CHECK_FLEET_QUORUM, 0);
    publish(s, down ? CHECK_FLEET_QUORUM : CHECK_OK, 0);
}

static void
take_item(struct health *h, struct inbox_item it)
{
    static const enum check_reason passive_reason[] = {
        [PASSIVE_CONNECT] = CHECK_PASSIVE_CONNECT,
        [PASSIVE_TIMEOUT] = CHECK_PASSIVE_TIMEOUT,
        [PASSIVE_5XX] = CHECK_PASSIVE_5XX,
    };
    struct hserver *s = &h->servers[it.server];
    enum health_state from = s->st.health;

    if (it.kind == INBOX_PASSIVE) {
        if (s->st.health == HEALTH_UP)
            eject(s, passive_reason[it.value]);
        return;
    }
    if (it.kind == INBOX_FLEET) {
        take_fleet(s, (enum fleet_event)it.value, it.from);
        return;
    }
    if (!server_state_set_admin(&s->st, (enum admin_state)it.value, clock_mono_us()))
        return;
    log_info("server %s: admin state %s", s->conf->id, admin_state_name(s->st.admin));
    journal_add(h, s, from, CHECK_ADMIN, 0);
    publish(s, CHECK_ADMIN, 0);
}

static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct health *h = arg;
    struct inbox_item items[INBOX_MAX];
    size_t n;

    pthread_mutex_lock(&h->lock);
    n = h->inbox_n;
    memcpy(items, h->inbox, n * sizeof(items[0]));
    h->inbox_n = 0;
    pthread_mutex_unlock(&h->lock);
    for (size_t i = 0; i < n; i++)
        take_item(h, items[i]);
}

static void
notify_cb(evutil_socket_t fd, short what, void *arg)
{
    struct health *h = arg;

    h->notify(h->notify_arg);
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopexit(((struct health *)arg)->base, NULL);
}

/* ---- life --------------------------------------------------------------------------------------- */

static void
set_port(struct addr *a, int port)
{
    if (a->ss.ss_family == AF_INET)
        ((struct sockaddr_in *)(void *)&a->ss)->sin_port = htons((uint16_t)port);
    else if (a->ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)(void *)&a->ss)->sin6_port = htons((uint16_t)port);
}

static struct provider *
provider_of(struct health *h, const char *name)
{
    for (size_t i = 0; i < h->nproviders; i++)
        if (strcmp(h->providers[i].name, name) == 0)
            return &h->providers[i];
    h->providers[h->nproviders].name = name;
    h->providers[h->nproviders].servers = calloc(h->n, sizeof(size_t));
    return &h->providers[h->nproviders++];
}

static int
init_server(struct health *h, struct hserver *s, size_t ci, size_t si, size_t index)
{
    const struct cluster_conf *c = &h->cfg->clusters[ci];

    s->h = h;
    s->index = index;
    s->cluster = c;
    s->conf = &c->servers[si];
    s->hc = s->conf->health != NULL ? s->conf->health : c->health;
    s->provider = provider_of(h, c->provider);
    if (s->provider->servers == NULL)
        return -1;
    s->provider->servers[s->provider->n++] = index;
    s->timer = evtimer_new(h->base, timer_cb, s);
    if (s->timer == NULL)
        return -1;
    server_state_init(&s->st, s->hc != NULL, clock_mono_us());
    if (s->conf->tls_name != NULL)
        snprintf(s->tls_name, sizeof(s->tls_name), "%s", s->conf->tls_name);
    else
        tls_client_default_name(s->conf->address, s->tls_name, sizeof(s->tls_name));
    snprintf(s->host, sizeof(s->host), "%s",
             s->hc != NULL && s->hc->host != NULL ? s->hc->host
             : s->conf->tls_name != NULL          ? s->conf->tls_name
                                                  : s->conf->address);
    s->target.addr = s->conf->addr;
    s->target.hc = s->hc;
    if (s->hc != NULL && s->hc->port != 0)
        set_port(&s->target.addr, s->hc->port);
    if (s->hc != NULL && c->tls != NULL && s->hc->type != CHECK_TCP)
        s->target.tls = h->tls[ci];
    s->target.tls_name = s->tls_name;
    s->target.tls_session = &s->tls_session;
    s->target.host = s->host;
    if (s->hc != NULL)
        h->awaiting_first++;
    return 0;
}

/* A reload: servers that existed before keep their state (and need no first verdict), so a
 * reload never makes a healthy server wait for a check, nor a down one take traffic. */
static void
carry_over(struct health *h, const struct health *prev)
{
    for (size_t i = 0; i < h->n; i++) {
        struct hserver *s = &h->servers[i];
        for (size_t j = 0; j < prev->n; j++) {
            const struct hserver *o = &prev->servers[j];
            if (strcmp(o->conf->id, s->conf->id) != 0)
                continue;
            s->st = o->st;
            s->down_at_us = o->down_at_us;
            if (s->hc == NULL && s->st.health != HEALTH_DOWN) {
                /* its checks were removed: nothing would ever settle a first verdict or a
                 * suspicion, and a server without checks counts as up */
                s->st.health = HEALTH_UP;
                s->st.suspect = false;
                s->st.ok_streak = s->st.fail_streak = 0;
            }
            /* why it is where it is (panic routing reads it: passive evidence alone or not) */
            atomic_store(&h->table.servers[i].last_reason,
                         atomic_load(&prev->table.servers[j].last_reason));
            atomic_store(&h->table.servers[i].last_status,
                         atomic_load(&prev->table.servers[j].last_status));
            if (s->hc != NULL && o->st.health != HEALTH_UNKNOWN && !s->first_verdict) {
                s->first_verdict = true;
                h->awaiting_first--;
            }
            if (s->hc == NULL && s->st.health == HEALTH_DOWN)
                schedule(s, false); /* the rest of an unchecked server's ejection */
            atomic_store(&h->table.servers[i].transitions,
                         atomic_load(&prev->table.servers[j].transitions));
            break;
        }
    }
    /* the most recent entries, oldest first; both sizes are failover.journal_size (1..100000) */
    assert(prev->journal_size > 0 && h->journal_size > 0);
    size_t n = prev->journal_count < h->journal_size ? prev->journal_count : h->journal_size;
    for (size_t k = 0; k < n; k++)
        h->journal[k] =
            prev->journal[(prev->journal_head + prev->journal_size - n + k) % prev->journal_size];
    h->journal_count = n;
    h->journal_head = n % h->journal_size;
}

static void
publish_initial(struct health *h)
{
    for (size_t i = 0; i < h->n; i++) {
        struct server_shared *sh = &h->table.servers[i];
        atomic_store(&sh->usable, server_state_usable(&h->servers[i].st));
        atomic_store(&sh->health, (uint8_t)h->servers[i].st.health);
        atomic_store(&sh->admin, (uint8_t)h->servers[i].st.admin);
        atomic_store(&sh->up_since_us, h->servers[i].st.since_us);
    }
}

static int
build(struct health *h, const struct health *prev, char *err, size_t errlen)
{
    size_t index = 0;

    h->base = event_base_new();
    h->servers = calloc(h->n, sizeof(*h->servers));
    h->providers = calloc(h->n, sizeof(*h->providers));
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers, sizeof(*p) is right */
    h->tls = calloc(h->cfg->nclusters, sizeof(*h->tls));
    h->table.servers = aligned_alloc(64, h->n * sizeof(*h->table.servers));
    h->journal_size = (size_t)h->cfg->failover.journal_size;
    h->journal = calloc(h->journal_size, sizeof(*h->journal));
    if (h->base == NULL || h->servers == NULL || h->providers == NULL || h->tls == NULL ||
        h->table.servers == NULL || h->journal == NULL)
        return -1;
    memset(h->table.servers, 0, h->n * sizeof(*h->table.servers));
    h->wake_ev = event_new(h->base, -1, 0, wake_cb, h);
    h->stop_ev = event_new(h->base, -1, 0, stop_cb, h);
    h->notify_ev = event_new(h->base, -1, 0, notify_cb, h);
    if (h->wake_ev == NULL || h->stop_ev == NULL || h->notify_ev == NULL)
        return -1;
    for (size_t ci = 0; ci < h->cfg->nclusters; ci++) {
        const struct cluster_conf *c = &h->cfg->clusters[ci];
        if (c->tls != NULL && (h->tls[ci] = tls_client_new(c->tls, ci, err, errlen)) == NULL)
            return -2;
        for (size_t si = 0; si < c->nservers; si++, index++)
            if (init_server(h, &h->servers[index], ci, si, index) < 0)
                return -1;
    }
    if (prev != NULL)
        carry_over(h, prev);
    publish_initial(h);
    return 0;
}

struct health *
health_new(struct config *cfg, const struct health *prev, void (*notify)(void *arg),
           void *notify_arg, char *err, size_t errlen)
{
    struct health *h = calloc(1, sizeof(*h));
    int rc;

    if (h == NULL) {
        snprintf(err, errlen, "health: out of memory");
        return NULL;
    }
    atomic_init(&h->refs, 1);
    h->cfg = config_ref(cfg);
    h->n = h->table.n = cfg->nservers;
    h->notify = notify;
    h->notify_arg = notify_arg;
    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_init(&h->ready_lock, NULL);
    {
        pthread_condattr_t a;
        pthread_condattr_init(&a);
        pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
        pthread_cond_init(&h->ready_cond, &a);
        pthread_condattr_destroy(&a);
    }
    rc = build(h, prev, err, errlen);
    if (rc < 0) {
        if (rc == -1)
            snprintf(err, errlen, "health: out of memory");
        health_unref(h);
        return NULL;
    }
    return h;
}

struct health_table *
health_table(struct health *h)
{
    return &h->table;
}

static void *
health_main(void *arg)
{
    struct health *h = arg;

    /* First checks spread over the first 100 ms (or the interval, if shorter). */
    for (size_t i = 0; i < h->n; i++) {
        struct hserver *s = &h->servers[i];
        if (s->hc != NULL) {
            int spread = s->hc->interval_ms < 100 ? s->hc->interval_ms : 100;
            /* NOLINTNEXTLINE(cert-msc30-c): spreads the first checks, need not be unpredictable */
            struct timeval tv = clock_tv_ms((int)((unsigned)rand() % (unsigned)(spread + 1)));
            evtimer_add(s->timer, &tv);
        }
    }
    event_base_loop(h->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

int
health_start(struct health *h, int wait_ms)
{
    struct timespec until;

    srand((unsigned)clock_mono_us());
    if (pthread_create(&h->thread, NULL, health_main, h) != 0)
        return -1;
    h->started = true;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&h->ready_lock);
    while (h->awaiting_first > 0)
        if (pthread_cond_timedwait(&h->ready_cond, &h->ready_lock, &until) != 0)
            break;
    if (h->awaiting_first > 0 && wait_ms > 0)
        log_warn("health: %zu servers without a first verdict after %d ms; starting anyway "
                 "(they take no traffic until they answer)", h->awaiting_first, wait_ms);
    pthread_mutex_unlock(&h->ready_lock);
    return 0;
}

void
health_stop(struct health *h)
{
    if (h == NULL || !h->started || h->stopped)
        return;
    event_active(h->stop_ev, EV_READ, 0);
    pthread_join(h->thread, NULL);
    h->stopped = true;
}

struct health *
health_ref(struct health *h)
{
    atomic_fetch_add(&h->refs, 1);
    return h;
}

void
health_unref(struct health *h)
{
    if (h == NULL || atomic_fetch_sub(&h->refs, 1) != 1)
        return;
    health_stop(h);
    for (size_t i = 0; h->servers != NULL && i < h->n; i++) {
        struct hserver *s = &h->servers[i];
        hcheck_free(s->check);
        if (s->timer != NULL)
            event_free(s->timer);
        SSL_SESSION_free(s->tls_session);
    }
    for (size_t i = 0; h->providers != NULL && i < h->nproviders; i++)
        free(h->providers[i].servers);
    for (size_t i = 0; h->tls != NULL && i < h->cfg->nclusters; i++)
        tls_client_free(h->tls[i]);
    if (h->wake_ev != NULL)
        event_free(h->wake_ev);
    if (h->stop_ev != NULL)
        event_free(h->stop_ev);
    if (h->notify_ev != NULL)
        event_free(h->notify_ev);
    if (h->base != NULL)
        event_base_free(h->base);
    free(h->servers);
    free(h->providers);
    free(h->tls);
    free(h->table.servers);
    free(h->journal);
    pthread_mutex_destroy(&h->lock);
    pthread_mutex_destroy(&h->ready_lock);
    pthread_cond_destroy(&h->ready_cond);
    config_unref(h->cfg);
    free(h);
}

size_t
health_journal(struct health *h, struct journal_entry *out, size_t max)
{
    size_t n = 0;

    pthread_mutex_lock(&h->lock);
    for (; n < max && n < h->journal_count; n++)
        out[n] = h->journal[(h->journal_head + h->journal_size - 1 - n) % h->journal_size];
    pthread_mutex_unlock(&h->lock);
    return n;
}
