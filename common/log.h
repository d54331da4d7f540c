/*
 * log.h -- a server's own output, written without ever waiting.
 *
 * printf() to stdout waits when stdout cannot take more: a pipe nobody
 * reads (`server | less`, paused), a terminal stopped with Ctrl-S, a stuck
 * log collector.  A server that logs a line per connection then stops
 * serving everyone, and any client can bring that about: each connection
 * writes about 70 bytes, so some 940 of them fill a 64 KiB pipe.
 *
 * So steps 6-9 write their lines through a log: each line goes into a
 * bounded buffer, and from there to stdout as far as stdout takes it now.
 * What it will not take waits in the buffer for a later turn of the loop
 * (connections_start_turn() calls log_flush(), and keeps the loop's wait short
 * while lines wait).  A line that finds the buffer full is dropped and
 * counted, and once there is room again one line says how many were:
 *
 *     log: 1234 lines dropped (stdout was not being read)
 *
 * Not waiting must not change anyone else's stdout.  O_NONBLOCK belongs to
 * the open file description, which descriptor 1 shares with whoever opened
 * it -- the shell, a pager, the test runner -- so setting it on descriptor 1
 * would make their reads and writes fail with EAGAIN too.  log_open() opens
 * stdout's file anew instead, through /proc/self/fd/1 (Linux), which gives a
 * description of our own, non-blocking.  Where that cannot be done (no
 * /proc, as on macOS and the BSDs; a socket, which cannot be opened by
 * path), it asks poll() before each write.  Every write is of at most
 * PIPE_BUF bytes, ending at a newline: a pipe takes such a write whole or
 * not at all (man 7 pipe), so a line is never cut in two, even with another
 * writer on the same pipe.  A regular file is written as it is: O_NONBLOCK
 * means nothing to it (man 2 open), and it never waits for a reader.
 *
 *     struct server_log log;
 *     log_open(&log);
 *     log_line(&log, "listening on %s", address);   // never waits
 *     ... the loop calls log_flush(&log) now and then ...
 *     log_close(&log);   // what is left, waiting at most LOG_CLOSE_SECONDS
 */
#ifndef LOG_H
#define LOG_H

#include <stdbool.h>
#include <stddef.h>

/* What the log holds while stdout is not taking it: about 900 lines. */
#define LOG_BUFFER_SIZE ((size_t)64 * 1024)
/* While lines wait, how often the loop tries stdout again. */
#define LOG_RETRY_MS 50
/* How long log_close() waits for stdout before giving up on the rest. */
#define LOG_CLOSE_SECONDS 0.5

struct server_log {
    int fd;                  /* where the lines go; -1: nowhere (stdout closed) */
    bool fd_is_ours;         /* fd is our own opening of stdout: close it */
    bool poll_first;         /* fd may block: poll() before each write */
    unsigned long dropped;   /* lines dropped since the last "dropped" line */
    size_t start;            /* the lines still to write: buffer[start..end) */
    size_t end;
    char buffer[LOG_BUFFER_SIZE];
};

/* Sets the log up on stdout.  Never fails: at worst it writes nothing. */
void log_open(struct server_log *log);

/* Adds one line (printf format, no "\n": it adds one) and writes what
 * stdout takes now.  Never waits. */
void log_line(struct server_log *log, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* Writes what stdout takes now of the lines waiting.  Never waits. */
void log_flush(struct server_log *log);

/* True while lines wait for stdout. */
bool log_pending(const struct server_log *log);

/* Writes what is left, waiting at most LOG_CLOSE_SECONDS for stdout, then
 * gives up on the rest (and says so, if stdout takes that). */
void log_close(struct server_log *log);

/* Lines of one kind -- a refusal, in a flood of them -- at most one per
 * `period` seconds; the others are counted, and one line sums them up:
 * "VERB N WHAT" ("refused 312 more clients (one line a second at most)"). */
struct log_limit {
    double period;
    const char *verb;
    const char *what;
    double quiet_until;        /* no line of its own before then */
    unsigned long held_back;   /* counted meanwhile, not summed up yet */
};

/* One more event at `now` (seconds, monotonic): true if it may have its
 * line (the line summing up those held back is written first), false if
 * it was counted instead. */
bool log_limit_allows(struct server_log *log, struct log_limit *limit, double now);

/* The summing line, once `period` is over.  Returns when to call again
 * (seconds, as `now`), or 0 when nothing is held back. */
double log_limit_expire(struct server_log *log, struct log_limit *limit, double now);

#endif
