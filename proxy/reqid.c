/*
 * reqid: per-worker request id generation and validation of incoming ids.
 */
#include <stdio.h>
#include <sys/random.h>

#include "reqid.h"

int
reqid_gen_init(struct reqid_gen *g)
{
    uint64_t seed[2];

    if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
        return -1;
    g->prefix = seed[0];
    g->counter = seed[1];
    return 0;
}

/* splitmix64's finaliser: a bijection on 64-bit values, so distinct counters give distinct ids. */
static uint64_t
mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

void
reqid_next(struct reqid_gen *g, char out[REQID_GEN_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    const uint64_t parts[2] = {g->prefix, mix64(g->counter++)};

    for (int p = 0; p < 2; p++)
        for (int i = 0; i < 16; i++)
            out[p * 16 + i] = hex[(parts[p] >> (60 - 4 * i)) & 0xf];
    out[REQID_GEN_LEN] = '\0';
}

bool
reqid_valid(const char *s, size_t n)
{
    if (n == 0 || n > REQID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            continue;
        if (c != '-' && c != '_' && c != '.' && c != ':' && c != '+' && c != '/' && c != '=')
            return false;
    }
    return true;
}
