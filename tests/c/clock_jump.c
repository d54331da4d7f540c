/*
 * clock_jump.c -- make the wall clock jump while a program runs, for the tests.
 *
 * A server that measures time with the wall clock (LuaSocket's
 * socket.gettime() is gettimeofday()) sees it jump when NTP or an
 * administrator sets the clock: an idle timeout computed from it fires at
 * once, or an hour late.  Waiting for a real jump is not an option in a
 * test; this small library stands in for the clock when it is loaded first:
 *
 *     cc -shared -fPIC -O2 -Wall -Wextra -Werror -o clock_jump.so tests/c/clock_jump.c -ldl
 *     CLOCK_JUMP=1:-3600 LD_PRELOAD=./clock_jump.so \
 *         lua5.4 -e 'local socket = require "socket" for _ = 1, 10 do
 *                    print(socket.gettime()) socket.sleep(0.2) end'
 *
 * CLOCK_JUMP is "AFTER:BY", both in seconds, decimals allowed: once AFTER
 * seconds have passed on CLOCK_MONOTONIC since the library was loaded,
 * gettimeofday() and clock_gettime(CLOCK_REALTIME, ...) report the real
 * time plus BY (negative: the clock went back) from then on.  Every other
 * clock, CLOCK_MONOTONIC included, is passed through untouched, as are
 * time() and CLOCK_REALTIME_COARSE.  Without CLOCK_JUMP (or with one that
 * does not parse, which is said once on stderr) nothing changes.
 *
 * The tests (tests/lua/test_luasocket.py) run it in their own network
 * namespace; it touches no clock of the machine's, only what one process
 * is told.
 */
#define _GNU_SOURCE   /* NOLINT(bugprone-reserved-identifier): glibc names it; RTLD_NEXT */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

typedef int gettimeofday_function(struct timeval *restrict, void *restrict);
typedef int clock_gettime_function(clockid_t, struct timespec *);

static gettimeofday_function *real_gettimeofday;
static clock_gettime_function *real_clock_gettime;

static int jump_wanted;            /* CLOCK_JUMP was set and parsed */
static double jump_after;          /* seconds of CLOCK_MONOTONIC after loading */
static int64_t jump_by_ns;         /* what the wall clock gains (or loses) then */
static struct timespec loaded_at;  /* CLOCK_MONOTONIC when the library loaded */

static void find_real_functions(void)
{
    if (real_gettimeofday == NULL)
        real_gettimeofday = (gettimeofday_function *)dlsym(RTLD_NEXT, "gettimeofday");
    if (real_clock_gettime == NULL)
        real_clock_gettime = (clock_gettime_function *)dlsym(RTLD_NEXT, "clock_gettime");
    if (real_gettimeofday == NULL || real_clock_gettime == NULL) {
        fprintf(stderr, "clock_jump: dlsym: %s\n", dlerror());
        abort();
    }
}

/* "AFTER:BY" -> jump_after, jump_by_ns; 0 if it does not parse. */
static int parse_jump(const char *text)
{
    char *end;
    double after = strtod(text, &end);
    if (end == text || *end != ':' || after < 0)
        return 0;
    const char *by_text = end + 1;
    double by = strtod(by_text, &end);
    if (end == by_text || *end != '\0' || by > 1e9 || by < -1e9)
        return 0;
    jump_after = after;
    jump_by_ns = (int64_t)(by * 1e9);
    return 1;
}

__attribute__((constructor)) static void clock_jump_load(void)
{
    find_real_functions();
    real_clock_gettime(CLOCK_MONOTONIC, &loaded_at);
    const char *text = getenv("CLOCK_JUMP");
    if (text == NULL || text[0] == '\0')
        return;
    jump_wanted = parse_jump(text);
    if (!jump_wanted)
        fprintf(stderr, "clock_jump: CLOCK_JUMP=%s: expected AFTER:BY in seconds, e.g. "
                        "1:-3600; the clock is left alone\n", text);
}

/* The offset to add to the wall clock now: 0 until AFTER seconds have passed. */
static int64_t offset_ns(void)
{
    if (!jump_wanted)
        return 0;
    struct timespec now;
    real_clock_gettime(CLOCK_MONOTONIC, &now);
    double passed = (double)(now.tv_sec - loaded_at.tv_sec)
                    + (double)(now.tv_nsec - loaded_at.tv_nsec) / 1e9;
    return passed >= jump_after ? jump_by_ns : 0;
}

/* seconds and nanoseconds plus an offset, nanoseconds kept in [0, 1e9). */
static void shift(time_t *seconds, long *nanoseconds, int64_t by_ns)
{
    int64_t total = (int64_t)*nanoseconds + by_ns % 1000000000;
    int64_t carry = by_ns / 1000000000;
    if (total < 0) {
        total += 1000000000;
        carry -= 1;
    } else if (total >= 1000000000) {
        total -= 1000000000;
        carry += 1;
    }
    *seconds += (time_t)carry;
    *nanoseconds = (long)total;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
    find_real_functions();   /* a constructor that ran before ours may call us */
    int result = real_gettimeofday(tv, tz);
    int64_t by = offset_ns();
    if (result == 0 && by != 0) {
        long nanoseconds = (long)tv->tv_usec * 1000;
        shift(&tv->tv_sec, &nanoseconds, by);
        tv->tv_usec = (suseconds_t)(nanoseconds / 1000);
    }
    return result;
}

int clock_gettime(clockid_t clock_id, struct timespec *tp)
{
    find_real_functions();
    int result = real_clock_gettime(clock_id, tp);
    if (clock_id != CLOCK_REALTIME || result != 0)
        return result;
    int64_t by = offset_ns();
    if (by != 0)
        shift(&tp->tv_sec, &tp->tv_nsec, by);
    return result;
}
