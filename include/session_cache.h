/*
 * session_cache: a bounded map from session key (16 bytes) to server, one per worker, so that
 * most requests of a sticky session need no Redis round trip. Set-associative (8 entries per set,
 * least recently used out first): fixed memory, O(1), no allocation after creation. A leaf: it
 * knows nothing of servers beyond a number.
 */
#ifndef TRIDENT_SESSION_CACHE_H
#define TRIDENT_SESSION_CACHE_H

#include <stddef.h>
#include <stdint.h>

struct session_entry {
    uint8_t key[16];
    uint32_t server;      /* the caller's server index */
    uint32_t epoch;       /* the caller's stamp (the server's down epoch when it was stored) */
    uint64_t checked_us;  /* when Redis (or this instance) last confirmed it */
    uint64_t used;        /* LRU clock; 0: empty */
};

struct session_cache;

/* Room for about `entries` sessions (0: a cache that holds nothing). NULL when out of memory. */
struct session_cache *session_cache_new(size_t entries);
void session_cache_free(struct session_cache *sc);

/* The entry for key, or NULL. The pointer is valid until the next put or clear. */
struct session_entry *session_cache_get(struct session_cache *sc, const uint8_t key[16]);

/* Store (or overwrite) key's entry; the least recently used one of its set makes room. */
void session_cache_put(struct session_cache *sc, const uint8_t key[16], uint32_t server,
                       uint32_t epoch, uint64_t now_us);

void session_cache_remove(struct session_cache *sc, const uint8_t key[16]);

/* Forget everything (a reload renumbered the servers). */
void session_cache_clear(struct session_cache *sc);

#endif
