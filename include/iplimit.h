/*
 * iplimit: per-client-address connection counts and new-connection rates, shared by every worker
 * (a client's connections land on any of them through SO_REUSEPORT). Touched only at accept and
 * close, never per request. An IPv6 client is counted by its /64 (one host holds a whole /64);
 * an IPv4-mapped address as IPv4.
 *
 * The table holds at most `capacity` addresses, in shards behind their own mutexes. An address
 * with no open connection whose bucket has refilled holds no entry. When the table is full a new
 * address is admitted uncounted (fail open: a flood of addresses must not lock everyone out);
 * the caller counts that.
 */
#ifndef TRIDENT_IPLIMIT_H
#define TRIDENT_IPLIMIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct iplimit;

enum iplimit_verdict {
    IPLIMIT_OK,        /* counted: release it when the connection closes */
    IPLIMIT_UNTRACKED, /* admitted uncounted (table full): do not release */
    IPLIMIT_CONNS,     /* refused: the address has max_conns connections open */
    IPLIMIT_RATE,      /* refused: the address opens connections too fast */
};

/* The rules a call applies (from the current config: they may change on reload). */
struct iplimit_rules {
    uint32_t max_conns; /* open connections per address; 0: no cap */
    double rate;        /* new connections per second per address; 0: no limit */
    double burst;       /* bucket size (at least 1) */
};

/* A table for up to `capacity` addresses. NULL when out of memory. */
struct iplimit *iplimit_new(size_t capacity);
void iplimit_free(struct iplimit *t);

/* A new connection from sa at now_us. */
enum iplimit_verdict iplimit_acquire(struct iplimit *t, const struct sockaddr *sa,
                                     const struct iplimit_rules *r, uint64_t now_us);

/* A connection counted by iplimit_acquire (IPLIMIT_OK) closed. */
void iplimit_release(struct iplimit *t, const struct sockaddr *sa, uint64_t now_us);

/* Addresses in the table now (for tests and /status). */
size_t iplimit_size(struct iplimit *t);

#endif
