/*
 * fuzz_log.c -- libFuzzer target for the log that never waits (common/log.c).
 *
 * Each input is a script run against a log whose stdout is a small pipe
 * (4 KiB) that the script reads from only when it says so.  The first byte
 * picks the way the log writes: through its own non-blocking opening of
 * stdout (as on Linux), or poll() before each write (as without /proc).
 * Then, two bytes at a time: write a line of a given length (up to 600
 * bytes: longer than a line may be), read some of the pipe, or flush.
 * At the end the pipe grows to 1 MiB, so that log_close() finds room for
 * what is left without waiting, and everything is read.
 *
 * Each line the script writes is numbered ("#17 xxxx..."); what comes out
 * must be, in order: whole lines only, each numbered one at most once and
 * in increasing order, cut to the log's 510 bytes at most, and between two
 * of them "log: N lines dropped" lines whose N add up to exactly the
 * numbers skipped.  No line may be lost without being counted, and no
 * log_line() or log_flush() call may wait: each must return within half a
 * second, though nobody reads the pipe.
 *
 *   make fuzz             (see the Makefile)
 */
#define _GNU_SOURCE   /* NOLINT(bugprone-reserved-identifier): F_SETPIPE_SZ, Linux's */

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PIPE_SIZE 4096
#define LONGEST_LINE 600        /* the log cuts lines at 510 bytes + "\n" */
#define OUTPUT_LIMIT_BYTES ((size_t)4 * 1024 * 1024)
/* A call that takes longer than this waited for the pipe (libFuzzer's
 * own timer interrupts a blocked write() every second or so, so a wait
 * shows as a stall, not always as a hang). */
#define LONGEST_CALL_SECONDS 0.5

/* What libFuzzer calls once per input. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int holds, const char *invariant, const char *detail)
{
    if (!holds) {
        fprintf(stderr, "fuzz_log: invariant broken: %s (%s)\n", invariant, detail);
        abort();
    }
}

static void environment_failed(const char *call)
{
    perror(call);
    abort();
}

struct output {
    char *text;      /* what was read from the pipe */
    size_t length;
};

/* Where struct output keeps it: 4 MiB, not on the stack. */
static char output_text[OUTPUT_LIMIT_BYTES];

/* Reads up to `most` bytes of what the pipe holds, without waiting. */
static void read_some(int read_end, struct output *out, size_t most)
{
    while (most > 0 && out->length < OUTPUT_LIMIT_BYTES) {
        char chunk[4096];
        size_t want = most < sizeof chunk ? most : sizeof chunk;
        ssize_t got = read(read_end, chunk, want);
        if (got <= 0) {
            require(got == 0 || errno == EAGAIN, "reading the pipe", strerror(errno));
            return;
        }
        memcpy(out->text + out->length, chunk, (size_t)got);
        out->length += (size_t)got;
        most -= (size_t)got;
    }
}

static double seconds_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

/* Checks the output against the `written` lines the script wrote. */
static void check_output(const struct output *out, long written)
{
    long expected_next = 0;       /* the lowest number that may come next */
    long dropped_pending = 0;     /* announced dropped, not yet matched by a gap */
    size_t at = 0;
    while (at < out->length) {
        const char *line = out->text + at;
        const char *end = memchr(line, '\n', out->length - at);
        require(end != NULL, "the output ends with a whole line", "");
        size_t length = (size_t)(end - line);
        require(length <= 510, "a line is cut to 510 bytes at most", "");
        char *after;
        if (strncmp(line, "log: ", 5) == 0) {
            long number = strtol(line + 5, &after, 10);
            require(after > line + 5 && strncmp(after, " lines dropped", 14) == 0,
                    "a count line says 'log: N lines dropped'", "");
            require(number > 0, "a dropped count is positive", "");
            dropped_pending += number;
        } else {
            require(line[0] == '#', "a line is a numbered line or a count", "");
            long number = strtol(line + 1, &after, 10);
            require(after > line + 1 && *after == ' ', "a line is a numbered line or a count", "");
            require(number >= expected_next, "lines come in order, each once", "");
            require(number - expected_next == dropped_pending,
                    "the lines skipped are exactly those counted as dropped", "");
            expected_next = number + 1;
            dropped_pending = 0;
        }
        at += length + 1;
    }
    require(written - expected_next == dropped_pending,
            "every line written is in the output or counted as dropped", "");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int pipe_ends[2];
    if (pipe(pipe_ends) == -1)
        environment_failed("pipe");
    if (fcntl(pipe_ends[1], F_SETPIPE_SZ, PIPE_SIZE) == -1
        || fcntl(pipe_ends[0], F_SETFL, O_NONBLOCK) == -1)
        environment_failed("fcntl");
    int saved_stdout = dup(STDOUT_FILENO);
    if (saved_stdout == -1 || dup2(pipe_ends[1], STDOUT_FILENO) == -1)
        environment_failed("dup2");

    static struct server_log log;   /* 64 KiB: not on the stack */
    log_open(&log);
    require(log.fd != -1, "the log has a stdout", "");
    if (data[0] & 1) {
        /* As without /proc: descriptor 1 itself, blocking, poll() first. */
        if (log.fd_is_ours)
            close(log.fd);
        log.fd = STDOUT_FILENO;
        log.fd_is_ours = false;
        log.poll_first = true;
    }

    struct output out = { output_text, 0 };
    long written = 0;
    char filler[LONGEST_LINE + 1];
    memset(filler, 'x', LONGEST_LINE);
    filler[LONGEST_LINE] = '\0';
    for (size_t i = 1; i + 1 < size; i += 2) {
        unsigned op = data[i] % 4, amount = data[i + 1];
        double started = seconds_now();
        if (op <= 1) {
            /* A line of 8 to about 600 bytes; its number first. */
            int length = 8 + (int)(amount * (LONGEST_LINE - 8) / 255);
            log_line(&log, "#%ld %.*s", written, length, filler);
            written++;
        } else if (op == 2) {
            read_some(pipe_ends[0], &out, (size_t)amount * 64);
        } else {
            log_flush(&log);
        }
        require(op == 2 || seconds_now() - started < LONGEST_CALL_SECONDS,
                "log_line() and log_flush() never wait", "");
    }

    /* Room for all that is left, so log_close() need not wait. */
    read_some(pipe_ends[0], &out, OUTPUT_LIMIT_BYTES);
    if (fcntl(pipe_ends[1], F_SETPIPE_SZ, 1024 * 1024) == -1)
        environment_failed("fcntl F_SETPIPE_SZ");
    log_close(&log);
    if (dup2(saved_stdout, STDOUT_FILENO) == -1)
        environment_failed("dup2");
    close(saved_stdout);
    close(pipe_ends[1]);
    read_some(pipe_ends[0], &out, OUTPUT_LIMIT_BYTES);
    close(pipe_ends[0]);
    check_output(&out, written);
    return 0;
}
