/*
 * stop_pipe.h -- a stop signal that wakes a sleeping wait: the self-pipe trick.
 *
 * A loop that sleeps in poll() without a bound tests stop_requested() and
 * then goes to sleep.  A Ctrl-C that lands between the two interrupts no
 * call: poll() would sleep on until the next client moved.  So the signal
 * handler also writes a byte into a pipe, and the loop watches the pipe's
 * read end with its sockets: the signal always wakes the wait, whenever it
 * comes.  (Linux's signalfd and ppoll's signal mask are other answers to
 * the same race: lesson 7.)
 */
#ifndef STOP_PIPE_H
#define STOP_PIPE_H

#include <stddef.h>

/* Makes the pipe, then installs the handler for SIGINT and SIGTERM that
 * notes the signal (stop_requested() turns true, common/signals.h) and
 * writes to the pipe.  0, or -1 with err = "CALL: ENAME (what it means)". */
int stop_pipe_open(char *err, size_t err_size);

/* The pipe's read end: readable once a stop signal came. */
int stop_pipe_fd(void);

#endif
