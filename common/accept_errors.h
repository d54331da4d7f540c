/*
 * accept_errors.h -- which accept() failures a server should shrug off.
 *
 * A failed accept() is usually about ONE client, not about the server:
 *
 *   - ECONNABORTED: the client gave up while it waited in the queue.
 *   - Linux also hands a queued connection's pending network error to
 *     accept() itself, where other systems would deliver it on the new
 *     socket.  man 2 accept ("Error handling") says to treat these like
 *     EAGAIN, that is, to try again: for TCP/IP they are ENETDOWN, EPROTO,
 *     ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP and
 *     ENETUNREACH.
 *   - EINTR: a signal arrived while accept() waited.
 *
 * Any other error (EBADF, EINVAL, EMFILE, ENOBUFS ...) says something about
 * the server or the whole system, and is the caller's to decide.  Step 5 and
 * common/connections.c (steps 6-8) use this one list.
 */
#ifndef ACCEPT_ERRORS_H
#define ACCEPT_ERRORS_H

#include <stdbool.h>

/* True when accept() failing with errnum means: skip it and accept again. */
bool accept_error_is_temporary(int errnum);

#endif
