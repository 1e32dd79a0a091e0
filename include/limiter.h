/*
 * limiter: per-key token buckets and open-connection counts, shared by every worker (a client's
 * connections land on any of them through SO_REUSEPORT). Keys are 16 bytes: a client address
 * (limiter_key_addr: an IPv6 client by its /64, since one host holds a whole /64; an
 * IPv4-mapped address as IPv4), or a digest of a rate limit's key value.
 *
 * The table holds at most `capacity` keys, in shards behind their own mutexes. A key with no
 * open connection whose bucket has refilled holds no entry. When the table is full a new key is
 * admitted uncounted (fail open: a flood of keys must not lock everyone out); the caller counts
 * that.
 */
#ifndef TRIDENT_LIMITER_H
#define TRIDENT_LIMITER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct limiter;

enum limiter_verdict {
    LIMITER_OK,        /* counted (a connection: release it when it closes) */
    LIMITER_UNTRACKED, /* admitted uncounted (table full): do not release */
    LIMITER_CONNS,     /* refused: the key has max_conns connections open */
    LIMITER_RATE,      /* refused: the bucket is empty */
};

/* The rules a call applies (from the current config: they may change on reload). */
struct limiter_rules {
    uint32_t max_conns; /* open connections per key; 0: no cap */
    double rate;        /* tokens per second; 0: no rate limit */
    double burst;       /* bucket size (at least 1) */
};

/* A table for up to `capacity` keys. NULL when out of memory. */
struct limiter *limiter_new(size_t capacity);
void limiter_free(struct limiter *t);

/* The key of a client address. */
void limiter_key_addr(const struct sockaddr *sa, uint8_t key[16]);

/* A new connection of `key` at now_us: checks and counts both the cap and the rate. */
enum limiter_verdict limiter_acquire(struct limiter *t, const uint8_t key[16],
                                     const struct limiter_rules *r, uint64_t now_us);

/* A connection counted by limiter_acquire (LIMITER_OK) closed. */
void limiter_release(struct limiter *t, const uint8_t key[16], uint64_t now_us);

/* One event of `key` (a request) against the rate only: LIMITER_OK (a token taken),
 * LIMITER_RATE with *retry_us until the next token, or LIMITER_UNTRACKED. */
enum limiter_verdict limiter_take(struct limiter *t, const uint8_t key[16],
                                  const struct limiter_rules *r, uint64_t now_us,
                                  uint64_t *retry_us);

/* Keys in the table now (for tests and /status). */
size_t limiter_size(struct limiter *t);

#endif
