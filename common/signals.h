/*
 * signals.h -- ending a server cleanly.
 *
 * Ctrl-C (SIGINT) and `kill` (SIGTERM) must end every step with exit 0 and
 * every descriptor closed; a client that vanishes must never kill the server
 * through SIGPIPE.  Three ways, for three kinds of program:
 *
 * - Steps 1-4 do nothing but wait: hold_stop_signals() first thing, so that a
 *   signal sent early waits for us, then wait_for_stop_signal() at the end.
 * - Step 5 blocks in accept() and read(), and owns nothing the kernel does not
 *   tidy at exit (it closes every descriptor), so exit_on_stop_signals()
 *   simply ends the process with status 0.  A flag checked by the loop would
 *   race: a signal landing just before accept() would wait for a client.
 * - Servers with an event loop call catch_stop_signals(): SIGINT/SIGTERM then
 *   interrupt the waiting call (EINTR) and stop_requested() turns true.  A
 *   loop that sleeps in poll() or epoll_wait() without a bound also watches
 *   stop_signal_fd(), a pipe the handler writes a byte into: a signal that
 *   lands after the loop's stop_requested() test, but before it goes to
 *   sleep, then still wakes it (the "self-pipe trick").  catch_stop_signals()
 *   makes the pipe before it installs the handler that writes to it.
 */
#ifndef SIGNALS_H
#define SIGNALS_H

#include <stdbool.h>
#include <stddef.h>

/* Each returns 0 (wait_for_stop_signal: the signal's number), or -1 with
 * err = "CALL: ENAME (what it means)", as common/ does everywhere. */
int hold_stop_signals(char *err, size_t err_size);
int wait_for_stop_signal(char *err, size_t err_size);

int exit_on_stop_signals(char *err, size_t err_size);

int catch_stop_signals(char *err, size_t err_size);
bool stop_requested(void);
int stop_signal_fd(void);                /* readable once a stop signal came */
const char *stop_signal_name(void);      /* "SIGINT", "SIGTERM" or "none" */

#endif
