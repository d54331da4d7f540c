/* stop_pipe.c -- see stop_pipe.h. */

/* glibc declares pipe2() only for _GNU_SOURCE (it is in POSIX.1-2024). */
#define _GNU_SOURCE   /* NOLINT(bugprone-reserved-identifier): glibc's name for it */

#include "stop_pipe.h"

#include "address.h"
#include "signals.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* [0] the read end the loop watches, [1] the write end the handler uses. */
static int stop_pipe[2] = { -1, -1 };

static void on_stop_signal(int signal_number)
{
    /* idea stop_pipe:handler */
    int saved_errno = errno;   /* the interrupted code may be about to read it */
    note_stop_signal(signal_number);
    /* Non-blocking: if the pipe is somehow full, it is readable already. */
    ssize_t written = write(stop_pipe[1], "", 1);
    (void)written;
    errno = saved_errno;
    /* end of idea stop_pipe:handler */
}

int stop_pipe_open(char *err, size_t err_size)
{
    /* The pipe first, then the handler that writes to it: a signal can come
     * the moment the handler is in place, and must find the pipe there. */
    /* idea stop_pipe:open */
    if (pipe2(stop_pipe, O_NONBLOCK | O_CLOEXEC) == -1) {
        snprintf(err, err_size, "pipe2: %s (%s)", errno_name(errno), strerror(errno));
        return -1;
    }
    return handle_stop_signals(on_stop_signal, err, err_size);
    /* end of idea stop_pipe:open */
}

int stop_pipe_fd(void)
{
    return stop_pipe[0];
}
