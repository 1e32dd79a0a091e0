/*
 * reqid: request ids. Each worker owns a generator: a random 64-bit prefix drawn at start and a
 * counter passed through a bijective mix, so ids are unique within the process and across restarts
 * without any shared state. Incoming X-Request-Id values are passed through only when they are safe
 * to log and forward.
 */
#ifndef TRIDENT_REQID_H
#define TRIDENT_REQID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REQID_GEN_LEN 32 /* hex characters of a generated id */
#define REQID_MAX     128 /* longest incoming id passed through */

struct reqid_gen {
    uint64_t prefix;
    uint64_t counter;
};

/* Seed a generator from the kernel's random source. Returns 0 or -1. */
int reqid_gen_init(struct reqid_gen *g);

/* Write the next id (REQID_GEN_LEN hex characters and a NUL) into out. */
void reqid_next(struct reqid_gen *g, char out[REQID_GEN_LEN + 1]);

/* Whether an incoming id (n bytes) may be passed through: 1..REQID_MAX characters of
 * A-Z a-z 0-9 and - _ . : + / = (UUIDs, hex, base64). Anything else gets a fresh id. */
bool reqid_valid(const char *s, size_t n);

#endif
