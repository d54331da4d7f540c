/* log.c -- see log.h. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void log_open(struct server_log *log)
{
    memset(log, 0, sizeof *log);
    log->fd = STDOUT_FILENO;
    struct stat status;
    int flags = fcntl(STDOUT_FILENO, F_GETFL);
    if (fstat(STDOUT_FILENO, &status) == -1 || flags == -1) {
        log->fd = -1;              /* no stdout (closed with >&-): say nothing */
        return;
    }
    if (S_ISREG(status.st_mode) || (flags & O_NONBLOCK))
        return;                    /* never waits, or already cannot */
    /* Our own open file description of the same pipe or terminal, so that
     * O_NONBLOCK is ours alone.  O_APPEND as stdout has it, so a log file
     * opened with >> is still appended to; O_NOCTTY, so that opening a
     * terminal never makes it ours. */
    int fd = open("/proc/self/fd/1",
                  O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | (flags & O_APPEND));
    if (fd != -1) {
        log->fd = fd;
        log->fd_is_ours = true;
    } else {
        log->poll_first = true;    /* no /proc, or a socket */
    }
}

bool log_pending(const struct server_log *log)
{
    return log->start < log->end;
}

/* stdout failed for good (EPIPE: its reader is gone; EIO ...): nobody
 * will ever read these lines, or the next ones. */
static void give_up(struct server_log *log)
{
    if (log->fd_is_ours)
        close(log->fd);
    log->fd = -1;
    log->fd_is_ours = false;
    log->start = log->end = 0;
}

static bool append_dropped(struct server_log *log, size_t more);

/* How much of the waiting lines to write at once: at most PIPE_BUF bytes,
 * ending at a newline.  A pipe takes a write of at most PIPE_BUF bytes
 * whole or not at all (man 7 pipe), with O_NONBLOCK too, and a bigger one
 * may stop in the middle of a line, with another writer's bytes (stderr,
 * under 2>&1) after it; poll()'s POLLOUT promises room for PIPE_BUF bytes,
 * no more.  Every line is shorter than PIPE_BUF (log_line cuts it). */
static size_t next_write_size(const struct server_log *log)
{
    size_t size = log->end - log->start;
    if (size <= PIPE_BUF)
        return size;
    /* The last newline of the first PIPE_BUF bytes, looked for from the end:
     * a line is shorter than 512 bytes, so it is near. */
    for (size = PIPE_BUF; size > 0; size--)
        if (log->buffer[log->start + size - 1] == '\n')
            return size;
    return PIPE_BUF;
}

/* Writes what stdout takes now of the waiting lines. */
static void write_waiting(struct server_log *log)
{
    while (log_pending(log)) {
        size_t size = next_write_size(log);
        if (log->poll_first) {
            /* A blocking descriptor: poll() says whether a write of up to
             * PIPE_BUF bytes finds room; any bigger one might wait for it. */
            struct pollfd out = { .fd = log->fd, .events = POLLOUT };
            if (poll(&out, 1, 0) < 1)
                return;
        }
        ssize_t written = write(log->fd, log->buffer + log->start, size);
        if (written > 0)
            log->start += (size_t)written;
        else if (written == 0 || errno == EAGAIN || errno == EWOULDBLOCK)
            return;                /* full: the rest waits */
        else if (errno != EINTR) {
            give_up(log);
            return;
        }
    }
    log->start = log->end = 0;
}

void log_flush(struct server_log *log)
{
    write_waiting(log);
    /* Room again after lines were dropped: say so now, not only when the
     * next line comes, which may be a long time from now. */
    if (log->dropped > 0 && append_dropped(log, 0))
        write_waiting(log);
}

/* Appends text to the waiting lines, if it fits in the buffer. */
static bool append(struct server_log *log, const char *text, size_t size)
{
    if (size > LOG_BUFFER_SIZE - (log->end - log->start))
        return false;
    if (size > LOG_BUFFER_SIZE - log->end) {
        /* Room only at the front: slide the waiting lines down. */
        memmove(log->buffer, log->buffer + log->start, log->end - log->start);
        log->end -= log->start;
        log->start = 0;
    }
    memcpy(log->buffer + log->end, text, size);
    log->end += size;
    return true;
}

/* "log: N lines dropped ...", if any were and it fits with `more` bytes. */
static bool append_dropped(struct server_log *log, size_t more)
{
    if (log->dropped == 0)
        return true;
    char notice[96];
    int size = snprintf(notice, sizeof notice,
                        "log: %lu lines dropped (stdout was not being read)\n",
                        log->dropped);
    if (size < 0 || (size_t)size + more > LOG_BUFFER_SIZE - (log->end - log->start))
        return false;
    append(log, notice, (size_t)size);
    log->dropped = 0;
    return true;
}

void log_line(struct server_log *log, const char *format, ...)
{
    if (log->fd == -1)
        return;
    char line[512];
    va_list arguments;
    va_start(arguments, format);
    int length = vsnprintf(line, sizeof line - 1, format, arguments);
    va_end(arguments);
    if (length < 0)
        return;
    size_t size = (size_t)length < sizeof line - 2 ? (size_t)length : sizeof line - 2;
    line[size++] = '\n';           /* a longer line is cut, never split */

    write_waiting(log);            /* make what room stdout gives now */
    if (!append_dropped(log, size) || !append(log, line, size)) {
        log->dropped++;
        return;
    }
    write_waiting(log);
}

void log_close(struct server_log *log)
{
    if (log->fd == -1)
        return;
    struct timespec now, deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_nsec += (long)(LOG_CLOSE_SECONDS * 1e9);
    deadline.tv_sec += deadline.tv_nsec / 1000000000L;
    deadline.tv_nsec %= 1000000000L;
    write_waiting(log);
    while (log_pending(log) && log->fd != -1) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left_ms = (long)(deadline.tv_sec - now.tv_sec) * 1000
                       + (deadline.tv_nsec - now.tv_nsec) / 1000000;
        if (left_ms <= 0)
            break;
        struct pollfd out = { .fd = log->fd, .events = POLLOUT };
        if (poll(&out, 1, (int)left_ms) == -1 && errno != EINTR)
            break;
        write_waiting(log);
    }
    /* Lines stdout never took count as dropped, and the count gets one
     * last chance to be written. */
    for (size_t i = log->start; i < log->end; i++)
        if (log->buffer[i] == '\n')
            log->dropped++;
    log->start = log->end = 0;
    if (log->fd != -1 && append_dropped(log, 0))
        write_waiting(log);
    if (log->fd_is_ours)
        close(log->fd);
    log->fd = -1;
    log->fd_is_ours = false;
}

double log_limit_expire(struct server_log *log, struct log_limit *limit, double now)
{
    if (limit->held_back == 0)
        return 0;
    if (now < limit->quiet_until)
        return limit->quiet_until;
    log_line(log, "%s %lu %s", limit->verb, limit->held_back, limit->what);
    limit->held_back = 0;
    return 0;
}

bool log_limit_allows(struct server_log *log, struct log_limit *limit, double now)
{
    if (now < limit->quiet_until) {
        limit->held_back++;
        return false;
    }
    log_limit_expire(log, limit, now);
    limit->quiet_until = now + limit->period;
    return true;
}
