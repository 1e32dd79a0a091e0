/*
 * clock: the two clocks trident reads. Monotonic microseconds for durations and deadlines (never
 * jumps with the wall clock); wall-clock milliseconds only for timestamps that humans read.
 */
#ifndef TRIDENT_CLOCK_H
#define TRIDENT_CLOCK_H

#include <stdint.h>
#include <sys/time.h>
#include <time.h>

static inline uint64_t
clock_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The same at the kernel tick's precision (a few ms), cheaper: for bounds counted in seconds,
 * checked on every buffer change (pace.h). */
static inline uint64_t
clock_coarse_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static inline long long
clock_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A millisecond count as the struct timeval libevent wants. */
static inline struct timeval
clock_tv_ms(int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};

    return tv;
}

#endif
