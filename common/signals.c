/* signals.c -- see signals.h. */
#include "signals.h"

#include "address.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The one piece of global state in the course: a signal handler can talk to
 * the loop it interrupted in no other way.  Private to this file. */
static volatile sig_atomic_t stop_signal;

/* err = "CALL: ENAME (strerror text)"; returns -1, as the caller will. */
static int failed(char *err, size_t err_size, const char *call, int errnum)
{
    snprintf(err, err_size, "%s: %s (%s)", call, errno_name(errnum), strerror(errnum));
    return -1;
}

static int ignore_sigpipe(char *err, size_t err_size)
{
    /* Writing to a peer that has gone raises SIGPIPE, whose default action
     * kills the process; ignored, write() fails with EPIPE instead. */
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
        return failed(err, err_size, "signal SIGPIPE", errno);
    return 0;
}

static sigset_t stop_signal_set(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    return set;
}

int hold_stop_signals(char *err, size_t err_size)
{
    if (ignore_sigpipe(err, err_size) == -1)
        return -1;
    sigset_t set = stop_signal_set();
    if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
        return failed(err, err_size, "sigprocmask", errno);
    return 0;
}

int wait_for_stop_signal(char *err, size_t err_size)
{
    sigset_t set = stop_signal_set();
    int signal_number;
    int rc = sigwait(&set, &signal_number);   /* returns the error, not -1 */
    if (rc != 0)
        return failed(err, err_size, "sigwait", rc);
    return signal_number;
}

/* No SA_RESTART: a blocked accept() or poll() returns EINTR, so a loop
 * sees the request at once. */
int handle_stop_signals(void (*handler)(int), char *err, size_t err_size)
{
    if (ignore_sigpipe(err, err_size) == -1)
        return -1;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = handler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;
    if (sigaction(SIGINT, &action, NULL) == -1)
        return failed(err, err_size, "sigaction SIGINT", errno);
    if (sigaction(SIGTERM, &action, NULL) == -1)
        return failed(err, err_size, "sigaction SIGTERM", errno);
    return 0;
}

void note_stop_signal(int signal_number)
{
    stop_signal = signal_number;
}

int catch_stop_signals(char *err, size_t err_size)
{
    return handle_stop_signals(note_stop_signal, err, err_size);
}

bool stop_requested(void)
{
    return stop_signal != 0;
}

const char *stop_signal_name(void)
{
    switch (stop_signal) {
    case SIGINT:  return "SIGINT";
    case SIGTERM: return "SIGTERM";
    }
    return "none";
}
