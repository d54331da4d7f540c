/*
 * accept_errors.h -- which accept() failures a server should shrug off.
 *
 * man 2 accept ("Error handling") says a failed accept() may be about ONE
 * client, and to try again:
 *
 *   - ECONNABORTED: the client gave up while it waited in the queue;
 *   - the "pending network errors" ENETDOWN, EPROTO, ENOPROTOOPT, EHOSTDOWN,
 *     ENONET, EHOSTUNREACH, EOPNOTSUPP and ENETUNREACH;
 *   - EINTR: a signal arrived while accept() waited.
 *
 * Linux TCP raises none of the first two kinds: it hands out every queued
 * connection whatever became of it (a reset shows on the new socket, at
 * its first read or write), and drops a half-open one that draws an ICMP
 * error before it is queued (tcp_req_err(): "POSIX does not want network
 * errors returned from accept()").  The list is kept for the systems that
 * do, and costs nothing here.  What Linux TCP's accept() does fail with is
 * about the server or the whole system (EMFILE, ENFILE, ENOMEM, ENOBUFS,
 * EPERM from a security module, EBADF, EINVAL), and is the caller's to
 * decide.  Step 5, steps 6-8 (connections.c) and common/clients.c use this one list.
 */
#ifndef ACCEPT_ERRORS_H
#define ACCEPT_ERRORS_H

#include <stdbool.h>

/* True when accept() failing with errnum means: skip it and accept again. */
bool accept_error_is_temporary(int errnum);

#endif
