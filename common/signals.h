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
 *   tidy at exit (it closes every descriptor), so its own handler, given to
 *   handle_stop_signals(), simply ends the process with status 0
 *   (steps/05_accept/main.c: nothing in common/ exits).  A flag checked by
 *   the loop would race: a signal landing just before accept() would wait
 *   for a client.
 * - Servers with an event loop call catch_stop_signals(): SIGINT/SIGTERM then
 *   interrupt the waiting call (EINTR) and stop_requested() turns true.  A
 *   loop that sleeps without a bound needs more, the "self-pipe trick" of
 *   step 7 (steps/07_poll/stop_pipe.h; for step 9, common/stop_pipe.h): its
 *   handler calls note_stop_signal() and writes to a pipe the loop watches.
 */
#ifndef SIGNALS_H
#define SIGNALS_H

#include <stdbool.h>
#include <stddef.h>

/* Each returns 0 (wait_for_stop_signal: the signal's number), or -1 with
 * err = "CALL: ENAME (what it means)", as common/ does everywhere. */
int hold_stop_signals(char *err, size_t err_size);
int wait_for_stop_signal(char *err, size_t err_size);

int catch_stop_signals(char *err, size_t err_size);
bool stop_requested(void);
const char *stop_signal_name(void);      /* "SIGINT", "SIGTERM" or "none" */

/* For a handler of one's own: installs it for SIGINT and SIGTERM (no
 * SA_RESTART: a waiting call returns EINTR) and ignores SIGPIPE.  Step 7's
 * handler calls note_stop_signal(), which is async-signal-safe; step 5's
 * calls _exit(). */
int handle_stop_signals(void (*handler)(int), char *err, size_t err_size);
void note_stop_signal(int signal_number);

#endif
