/*
 * session_cache: sets of WAYS entries chosen by the key's first bytes (the keys are SHA-256
 * output already: uniformly spread), least recently used replaced.
 */
#include <stdlib.h>
#include <string.h>

#include "session_cache.h"

#define WAYS 8

struct session_cache {
    size_t nsets; /* a power of two; 0: holds nothing */
    uint64_t clock;
    struct session_entry *entries; /* nsets * WAYS */
};

struct session_cache *
session_cache_new(size_t entries)
{
    struct session_cache *sc = calloc(1, sizeof(*sc));
    size_t sets = 1;

    if (sc == NULL || entries == 0)
        return sc;
    while (sets * WAYS < entries)
        sets *= 2;
    sc->entries = calloc(sets * WAYS, sizeof(*sc->entries));
    if (sc->entries == NULL) {
        free(sc);
        return NULL;
    }
    sc->nsets = sets;
    return sc;
}

void
session_cache_free(struct session_cache *sc)
{
    if (sc == NULL)
        return;
    free(sc->entries);
    free(sc);
}

static struct session_entry *
set_of(struct session_cache *sc, const uint8_t key[16])
{
    uint64_t h;

    memcpy(&h, key, sizeof(h));
    return &sc->entries[(h & (sc->nsets - 1)) * WAYS];
}

struct session_entry *
session_cache_get(struct session_cache *sc, const uint8_t key[16])
{
    struct session_entry *set;

    if (sc == NULL || sc->nsets == 0)
        return NULL;
    set = set_of(sc, key);
    for (int i = 0; i < WAYS; i++)
        if (set[i].used != 0 && memcmp(set[i].key, key, 16) == 0) {
            set[i].used = ++sc->clock;
            return &set[i];
        }
    return NULL;
}

void
session_cache_put(struct session_cache *sc, const uint8_t key[16], uint32_t server,
                  uint32_t epoch, uint64_t now_us)
{
    struct session_entry *set, *victim;

    if (sc == NULL || sc->nsets == 0)
        return;
    set = set_of(sc, key);
    victim = &set[0];
    for (int i = 0; i < WAYS; i++) {
        if (set[i].used != 0 && memcmp(set[i].key, key, 16) == 0) {
            victim = &set[i];
            break;
        }
        if (set[i].used < victim->used)
            victim = &set[i];
    }
    memcpy(victim->key, key, 16);
    victim->server = server;
    victim->epoch = epoch;
    victim->checked_us = now_us;
    victim->used = ++sc->clock;
}

void
session_cache_remove(struct session_cache *sc, const uint8_t key[16])
{
    struct session_entry *e = session_cache_get(sc, key);

    if (e != NULL)
        e->used = 0;
}

void
session_cache_clear(struct session_cache *sc)
{
    if (sc != NULL && sc->nsets > 0)
        memset(sc->entries, 0, sc->nsets * WAYS * sizeof(*sc->entries));
}
