/*
 * clock.h -- seconds on a clock that never jumps.
 *
 * Deadlines (idle clients, frames, log retries) are measured on
 * CLOCK_MONOTONIC: setting the wall clock, or NTP stepping it, cannot make
 * them come early or never.  Steps 6-9 and common/clients.c use it.
 */
#ifndef CLOCK_H
#define CLOCK_H

#include <time.h>

static inline double monotonic_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

#endif
