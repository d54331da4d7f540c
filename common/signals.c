/* signals.c -- see signals.h. */
#include "signals.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The one piece of global state in the course: a signal handler can talk to
 * the loop it interrupted in no other way.  Private to this file. */
static volatile sig_atomic_t stop_signal;
static int stop_pipe[2] = { -1, -1 };   /* [0] read end, [1] write end */

static void fail(const char *call)
{
    perror(call);
    exit(1);
}

static void ignore_sigpipe(void)
{
    /* Writing to a peer that has gone raises SIGPIPE, whose default action
     * kills the process; ignored, write() fails with EPIPE instead. */
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
        fail("signal SIGPIPE");
}

static sigset_t stop_signal_set(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    return set;
}

void hold_stop_signals(void)
{
    ignore_sigpipe();
    sigset_t set = stop_signal_set();
    if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
        fail("sigprocmask");
}

int wait_for_stop_signal(void)
{
    sigset_t set = stop_signal_set();
    int signal_number;
    int rc = sigwait(&set, &signal_number);
    if (rc != 0) {
        fprintf(stderr, "sigwait: %s\n", strerror(rc));
        exit(1);
    }
    return signal_number;
}

static void exit_now(int signal_number)
{
    (void)signal_number;
    _exit(0);   /* async-signal-safe, unlike exit() */
}

/* No SA_RESTART: a blocked accept() or poll() returns EINTR, so a loop
 * sees the request at once. */
static void handle_stop_signals(void (*handler)(int))
{
    ignore_sigpipe();
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = handler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;
    if (sigaction(SIGINT, &action, NULL) == -1 || sigaction(SIGTERM, &action, NULL) == -1)
        fail("sigaction");
}

void exit_on_stop_signals(void)
{
    handle_stop_signals(exit_now);
}

static void on_stop_signal(int signal_number)
{
    int saved_errno = errno;   /* the interrupted code may be about to read it */
    stop_signal = signal_number;
    /* Wake a poll() that has the pipe in its list.  Non-blocking: if the pipe
     * is somehow full, it is readable already. */
    ssize_t written = write(stop_pipe[1], "", 1);
    (void)written;
    errno = saved_errno;
}

void catch_stop_signals(void)
{
    /* The pipe first, then the handler that writes to it: a signal can come
     * the moment the handler is in place, and must find the pipe there. */
    if (stop_pipe[0] == -1) {
        if (pipe(stop_pipe) == -1)
            fail("pipe");
        for (int i = 0; i < 2; i++)
            if (fcntl(stop_pipe[i], F_SETFL, O_NONBLOCK) == -1
                || fcntl(stop_pipe[i], F_SETFD, FD_CLOEXEC) == -1)
                fail("fcntl");
    }
    handle_stop_signals(on_stop_signal);
}

bool stop_requested(void)
{
    return stop_signal != 0;
}

int stop_signal_fd(void)
{
    return stop_pipe[0];
}

const char *stop_signal_name(void)
{
    switch (stop_signal) {
    case SIGINT:  return "SIGINT";
    case SIGTERM: return "SIGTERM";
    }
    return "none";
}
