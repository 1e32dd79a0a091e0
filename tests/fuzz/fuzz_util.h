/*
 * Helpers shared by the libFuzzer targets: a small deterministic generator seeded from the input
 * (so every run of an input splits it the same way), feeding bytes to an evbuffer in pieces, and
 * an invariant check that stops the fuzzer with a message. Not a test framework: a target is one
 * LLVMFuzzerTestOneInput() over the real modules.
 */
#ifndef TRIDENT_FUZZ_UTIL_H
#define TRIDENT_FUZZ_UTIL_H

#include <event2/buffer.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

/* An invariant that must hold whatever the input: abort() so libFuzzer keeps the input. */
#define FUZZ_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* xorshift32: the split points come from the input's first bytes, never from a clock. */
struct fuzz_rng {
    uint32_t s;
};

static inline void
fuzz_rng_init(struct fuzz_rng *r, uint32_t seed)
{
    r->s = seed * 2654435761u + 1u; /* never 0 */
    if (r->s == 0)
        r->s = 1;
}

static inline uint32_t
fuzz_rng_next(struct fuzz_rng *r)
{
    uint32_t x = r->s;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return r->s = x;
}

/* The length of the next piece of input: mostly small (partial feeds, a read per byte at times),
 * sometimes all that is left (one read holding several pipelined messages). */
static inline size_t
fuzz_piece(struct fuzz_rng *r, size_t left)
{
    uint32_t x = fuzz_rng_next(r);
    size_t n;

    if (left == 0)
        return 0;
    switch (x & 3) {
    case 0:
        n = left;
        break;
    case 1:
        n = 1;
        break;
    default:
        n = 1 + (x >> 8) % 64;
        break;
    }
    return n < left ? n : left;
}

/* Append a piece to `in`, either copied (it joins the last chain) or by reference (a chain of
 * its own: llhttp then sees a span end inside a token). `p` must outlive the evbuffer's use. */
static inline void
fuzz_add(struct fuzz_rng *r, struct evbuffer *in, const uint8_t *p, size_t n)
{
    if (fuzz_rng_next(r) & 1)
        evbuffer_add(in, p, n);
    else
        evbuffer_add_reference(in, p, n, NULL, NULL);
}

/* ---- invariants of what trident writes ---------------------------------------------------- */

/* CR and LF only as line ends, and the head ends at its first empty line. */
static inline void
fuzz_check_lines(const char *h, size_t len)
{
    FUZZ_ASSERT(len >= 4 && memcmp(h + len - 4, "\r\n\r\n", 4) == 0);
    for (size_t i = 0; i < len; i++) {
        if (h[i] == '\r')
            FUZZ_ASSERT(i + 1 < len && h[i + 1] == '\n');
        else if (h[i] == '\n')
            FUZZ_ASSERT(i > 0 && h[i - 1] == '\r');
        else
            FUZZ_ASSERT(h[i] != '\0');
    }
    FUZZ_ASSERT(memmem(h, len, "\r\n\r\n", 4) == h + len - 4);
}

static inline int
count_sink(void *arg, const char *at, size_t len)
{
    *(uint64_t *)arg += len;
    return 0;
}

/* The re-chunked output decodes to what was moved, completely when the body was complete. */
static inline void
fuzz_check_rechunked(struct evbuffer *body, uint64_t moved, bool done)
{
    static const char head[] = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    struct evbuffer *in = evbuffer_new();
    struct http_msg r;
    uint64_t decoded = 0;
    enum http_step st;

    http_msg_init(&r, HTTP_REQUEST, 1024, 8);
    evbuffer_add(in, head, sizeof(head) - 1);
    FUZZ_ASSERT(http_msg_feed(&r, in, NULL) == HTTP_HEAD_DONE);
    r.sink = count_sink;
    r.sink_arg = &decoded;
    evbuffer_add_buffer(in, body);
    st = http_msg_feed(&r, in, NULL);
    FUZZ_ASSERT(st == (done ? HTTP_MSG_DONE : HTTP_AGAIN));
    FUZZ_ASSERT(decoded == moved && evbuffer_get_length(in) == 0);
    http_msg_release(&r);
    evbuffer_free(in);
}

/* The input bytes not yet handed to a parser. */
struct fuzz_feed {
    struct fuzz_rng rng;
    const uint8_t *data;
    size_t size, off;
    struct evbuffer *in;
};

/* Add one more piece of input (of a length the rng picks); false when there is none. */
static inline bool
fuzz_more(struct fuzz_feed *f)
{
    size_t n = fuzz_piece(&f->rng, f->size - f->off);

    if (n == 0)
        return false;
    fuzz_add(&f->rng, f->in, f->data + f->off, n);
    f->off += n;
    return true;
}

#endif
