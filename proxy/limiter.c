/*
 * limiter: see limiter.h. Each shard is an open-addressing table with linear probing and
 * backward-shift deletion (no tombstones), kept at most 3/4 full, allocated on its first use (a
 * process whose limits are off holds none).
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "limiter.h"

#define SHARDS 64

struct entry {
    uint8_t key[16];   /* see limiter.h */
    bool used;
    uint32_t conns;
    double tokens;
    uint64_t last_us;  /* when tokens was computed */
    uint64_t full_us;  /* from then on the bucket is full again (0: no rate limit seen) */
};

struct shard {
    pthread_mutex_t lock;
    uint64_t seed;
    struct entry *slots;
    size_t nslots, used, max_used;
};

struct limiter {
    uint64_t seed; /* random: which addresses share a shard cannot be chosen from outside */
    struct shard shards[SHARDS];
};

void
limiter_key_addr(const struct sockaddr *sa, uint8_t key[16])
{
    memset(key, 0, 16);
    if (sa->sa_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        memcpy(key, a, memcmp(a, mapped, 12) == 0 ? 16 : 8);
    }
}

/* FNV-1a, then splitmix64's finaliser so that the top bits (the shard) are mixed too. */
static uint64_t
hash_key(uint64_t seed, const uint8_t key[16])
{
    uint64_t h = 1469598103934665603ULL ^ seed;

    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 1099511628211ULL;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

struct limiter *
limiter_new(size_t capacity)
{
    struct limiter *t = calloc(1, sizeof(*t));
    size_t per = capacity / SHARDS + 1;

    if (t == NULL)
        return NULL;
    if (getrandom(&t->seed, sizeof(t->seed), 0) != sizeof(t->seed))
        t->seed = (uint64_t)(uintptr_t)t ^ 0x9e3779b97f4a7c15ULL; /* no entropy: still varies */
    for (int i = 0; i < SHARDS; i++) {
        struct shard *s = &t->shards[i];
        pthread_mutex_init(&s->lock, NULL);
        s->seed = t->seed;
        s->nslots = per * 4 / 3 + 2;
        s->max_used = per;
    }
    return t;
}

void
limiter_free(struct limiter *t)
{
    if (t == NULL)
        return;
    for (int i = 0; i < SHARDS; i++) {
        free(t->shards[i].slots);
        pthread_mutex_destroy(&t->shards[i].lock);
    }
    free(t);
}

/* The slot holding key, or the empty slot where it would go. */
static struct entry *
find(struct shard *s, const uint8_t key[16], uint64_t h)
{
    size_t i = (size_t)(h % s->nslots);

    while (s->slots[i].used && memcmp(s->slots[i].key, key, 16) != 0)
        i = (i + 1) % s->nslots;
    return &s->slots[i];
}

/* Remove e, shifting back the entries after it that probed past it. */
static void
remove_entry(struct shard *s, const struct entry *e)
{
    size_t i = (size_t)(e - s->slots), j = i;

    s->slots[i].used = false;
    s->used--;
    for (;;) {
        size_t k;
        bool stays;
        j = (j + 1) % s->nslots;
        if (!s->slots[j].used)
            return;
        k = (size_t)(hash_key(s->seed, s->slots[j].key) % s->nslots); /* j's home slot */
        /* the entry at j stays when its home lies cyclically in (i, j] */
        stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            s->slots[i] = s->slots[j];
            s->slots[j].used = false;
            i = j;
        }
    }
}

/* The shard is full: drop the entries that only remembered a refilled bucket. */
static void
sweep(struct shard *s, uint64_t now)
{
    for (size_t i = 0; i < s->nslots;) {
        struct entry *e = &s->slots[i];
        if (e->used && e->conns == 0 && now >= e->full_us)
            remove_entry(s, e); /* another entry may have moved into slot i: look again */
        else
            i++;
    }
}

static void
refill(struct entry *e, const struct limiter_rules *r, uint64_t now)
{
    if (r->rate <= 0)
        return;
    e->tokens += (double)(now - e->last_us) / 1e6 * r->rate;
    if (e->tokens > r->burst)
        e->tokens = r->burst;
    e->last_us = now;
}

/* The entry of key, created if needed, locked in its shard (*sp); NULL: no room (unlocked). */
static struct entry *
lookup(struct limiter *t, const uint8_t key[16], const struct limiter_rules *r, uint64_t now_us,
       struct shard **sp)
{
    uint64_t h = hash_key(t->seed, key);
    struct shard *s = &t->shards[h >> 58]; /* SHARDS == 64 */
    struct entry *e;

    pthread_mutex_lock(&s->lock);
    if (s->slots == NULL && (s->slots = calloc(s->nslots, sizeof(*s->slots))) == NULL) {
        pthread_mutex_unlock(&s->lock);
        return NULL;
    }
    e = find(s, key, h);
    if (!e->used && s->used >= s->max_used) {
        sweep(s, now_us);
        e = find(s, key, h);
    }
    if (!e->used) {
        if (s->used >= s->max_used) {
            pthread_mutex_unlock(&s->lock);
            return NULL;
        }
        *e = (struct entry){.used = true, .tokens = r->burst, .last_us = now_us};
        memcpy(e->key, key, 16);
        s->used++;
    }
    refill(e, r, now_us);
    *sp = s;
    return e;
}

static void
take_token(struct entry *e, const struct limiter_rules *r, uint64_t now_us)
{
    e->tokens -= 1;
    e->full_us = now_us + (uint64_t)((r->burst - e->tokens) / r->rate * 1e6);
}

enum limiter_verdict
limiter_acquire(struct limiter *t, const uint8_t key[16], const struct limiter_rules *r,
                uint64_t now_us)
{
    struct shard *s;
    struct entry *e = lookup(t, key, r, now_us, &s);
    enum limiter_verdict v = LIMITER_OK;

    if (e == NULL)
        return LIMITER_UNTRACKED;
    if (r->max_conns > 0 && e->conns >= r->max_conns) {
        v = LIMITER_CONNS;
    } else if (r->rate > 0 && e->tokens < 1) {
        v = LIMITER_RATE;
    } else {
        e->conns++;
        if (r->rate > 0)
            take_token(e, r, now_us);
    }
    if (e->conns == 0 && now_us >= e->full_us)
        remove_entry(s, e); /* refused without a trace to keep */
    pthread_mutex_unlock(&s->lock);
    return v;
}

enum limiter_verdict
limiter_take(struct limiter *t, const uint8_t key[16], const struct limiter_rules *r,
             uint64_t now_us, uint64_t *retry_us)
{
    struct shard *s;
    struct entry *e = lookup(t, key, r, now_us, &s);
    enum limiter_verdict v = LIMITER_OK;

    *retry_us = 0;
    if (e == NULL)
        return LIMITER_UNTRACKED;
    if (e->tokens < 1) {
        v = LIMITER_RATE;
        *retry_us = (uint64_t)((1 - e->tokens) / r->rate * 1e6) + 1;
    } else {
        take_token(e, r, now_us);
    }
    pthread_mutex_unlock(&s->lock);
    return v;
}

void
limiter_release(struct limiter *t, const uint8_t key[16], uint64_t now_us)
{
    uint64_t h = hash_key(t->seed, key);
    struct shard *s = &t->shards[h >> 58];
    struct entry *e;

    pthread_mutex_lock(&s->lock);
    e = s->slots != NULL ? find(s, key, h) : NULL;
    if (e != NULL && e->used && e->conns > 0 && --e->conns == 0 && now_us >= e->full_us)
        remove_entry(s, e);
    pthread_mutex_unlock(&s->lock);
}

size_t
limiter_size(struct limiter *t)
{
    size_t n = 0;

    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&t->shards[i].lock);
        n += t->shards[i].used;
        pthread_mutex_unlock(&t->shards[i].lock);
    }
    return n;
}
