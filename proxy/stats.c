/*
 * stats: the registry of per-worker counters. Entries are created under a lock when routers and
 * listeners are built and never removed, so a reader can walk them while workers count.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"

const uint64_t stats_bucket_us[STATS_BUCKETS - 1] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000,
    10000000,
};

struct entry {
    struct entry *next;
    char *key;
    int is_listener;
    void *per_worker; /* server_stats[] or listener_stats[] */
};

struct stats {
    pthread_mutex_t lock;
    int nworkers;
    struct entry *head;
};

void
stats_observe(stat_t *buckets, stat_t *sum, uint64_t us)
{
    int i = 0;

    while (i < STATS_BUCKETS - 1 && us > stats_bucket_us[i])
        i++;
    stat_add(&buckets[i], 1);
    stat_add(sum, us);
}

struct stats *
stats_new(int nworkers)
{
    struct stats *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    pthread_mutex_init(&s->lock, NULL);
    s->nworkers = nworkers;
    return s;
}

void
stats_free(struct stats *s)
{
    struct entry *e, *next;

    if (s == NULL)
        return;
    for (e = s->head; e != NULL; e = next) {
        next = e->next;
        free(e->key);
        free(e->per_worker);
        free(e);
    }
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static struct entry *
find(struct stats *s, const char *key, int is_listener)
{
    for (struct entry *e = __atomic_load_n(&s->head, __ATOMIC_ACQUIRE); e != NULL; e = e->next)
        if (e->is_listener == is_listener && strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

static struct entry *
find_or_add(struct stats *s, const char *key, int is_listener)
{
    struct entry *e;
    size_t size = is_listener ? sizeof(struct listener_stats) : sizeof(struct server_stats);

    pthread_mutex_lock(&s->lock);
    e = find(s, key, is_listener);
    if (e == NULL && (e = calloc(1, sizeof(*e))) != NULL) {
        e->key = strdup(key);
        e->is_listener = is_listener;
        e->per_worker = calloc((size_t)s->nworkers, size);
        if (e->key == NULL || e->per_worker == NULL) {
            free(e->key);
            free(e->per_worker);
            free(e);
            e = NULL;
        } else {
            e->next = s->head;
            /* Publish last: a reader walking the list sees a complete entry or none. */
            __atomic_store_n(&s->head, e, __ATOMIC_RELEASE);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return e;
}

struct server_stats *
stats_server(struct stats *s, const char *id, int w)
{
    struct entry *e = find_or_add(s, id, 0);

    return e != NULL ? &((struct server_stats *)e->per_worker)[w] : NULL;
}

struct listener_stats *
stats_listener(struct stats *s, const char *address, int w)
{
    struct entry *e = find_or_add(s, address, 1);

    return e != NULL ? &((struct listener_stats *)e->per_worker)[w] : NULL;
}

/* Sum `n` stat_t fields laid out from `from` over all workers. */
static void
sum_fields(const stat_t *per_worker, size_t stride, int nworkers, size_t n, stat_t *out)
{
    for (size_t f = 0; f < n; f++) {
        uint64_t total = 0;
        for (int w = 0; w < nworkers; w++)
            total += stat_get(per_worker + (size_t)w * stride + f);
        atomic_init(&out[f], total);
    }
}

int
stats_server_sum(struct stats *s, const char *id, struct server_stats *out)
{
    struct entry *e = find(s, id, 0);
    size_t n = sizeof(struct server_stats) / sizeof(stat_t);

    if (e == NULL)
        return -1;
    sum_fields(e->per_worker, n, s->nworkers, n, (stat_t *)(void *)out);
    return 0;
}

int
stats_listener_sum(struct stats *s, const char *address, struct listener_stats *out)
{
    struct entry *e = find(s, address, 1);
    size_t n = sizeof(struct listener_stats) / sizeof(stat_t);

    if (e == NULL)
        return -1;
    sum_fields(e->per_worker, n, s->nworkers, n, (stat_t *)(void *)out);
    return 0;
}
