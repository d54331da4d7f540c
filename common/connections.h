/*
 * connections.h -- the clients of an echo server that serves many at once.
 *
 * Steps 6 (a frame loop), 7 (poll) and 8 (epoll) differ only in HOW they
 * learn that a socket is ready.  WHAT they do once it is ready is the same,
 * and it is the hard part, so it lives here:
 *
 *   - a table of at most max_clients connections, each with a non-blocking
 *     socket, its peer's address as text, and the time it last moved a
 *     byte.  Clients are kept in one list ordered by that time, least
 *     recently active first, so the idle timeout looks only at the front of
 *     it; a slot given back by a client that left goes on a free list for the
 *     next one.  No step of it costs more with 10,000 clients than with 10.
 *   - buffers only where bytes wait: every read lands in one input buffer of
 *     the table's, and is echoed from there at once.  Only what the socket
 *     would not take (the client reads slowly) moves into a bounded output
 *     buffer of that client's own, given back once it is all sent.  An echo
 *     server that keeps nothing for a client it owes nothing holds 10,000
 *     idle clients in about a megabyte.
 *   - accepting the clients waiting on a non-blocking listening socket, at
 *     most ACCEPTS_PER_TURN per turn of the loop, so that a flood of new
 *     connections cannot starve the clients already connected.  The one over
 *     max_clients is sent one line and closed, found out without a search.  Temporary accept()
 *     failures never end the server: ECONNABORTED and the other errors
 *     accept_errors.h lists (man 2 accept says retry them; Linux TCP
 *     returns none) are skipped;
 *     EMFILE/ENFILE (out of descriptors) use a spare descriptor kept open for
 *     the purpose (close it, accept, send one line, close, reopen it), so the
 *     waiting client leaves the queue and the loop does not spin on it.  If
 *     even that fails, accepting pauses for a moment: connections_accepting()
 *     turns false, and the step must stop watching the listening socket.
 *   - backpressure: a client whose unsent output reaches OUTPUT_LIMIT is not
 *     read from until it drains (connection_wants() stops asking for READ),
 *     so a client that sends much and reads slowly costs bounded memory.
 *   - ending: a client that closes, or only shuts its write side (half-close),
 *     first gets everything it is owed, then is closed; a reset or other
 *     error closes it at once; so does --idle-timeout.  Each connection logs
 *     one line when it opens and one when it closes, saying why (unless
 *     --quiet), through a log that never waits for stdout (log.h); refusals
 *     get a line of their own at most once a second, and one line sums up
 *     the others:
 *
 *         accepted 127.0.0.1:50522 (fd 5)
 *         closed 127.0.0.1:50522: client closed
 *         closed 127.0.0.1:50524: ECONNRESET (Connection reset by peer)
 *         closed 127.0.0.1:50526: idle for 10 s
 *         closed 127.0.0.1:50528: server stopping
 *         refused 127.0.0.1:50530: too many clients (max 1000)
 *         refused 312 more clients (one line a second at most)
 *
 * A step's loop, whatever tells it which sockets are ready:
 *
 *     set_nonblocking(listen_fd);
 *     connections_init(&table, &args, &log);
 *     while (!stop_requested()) {
 *         int timeout_ms = connections_expire(&table);   // idle clients go
 *         ... watch listen_fd for reading if connections_accepting(&table),
 *         ... and each client, table.oldest to ->newer, for connection_wants(c) ...
 *         ... and stop_signal_fd() for reading, if the wait has no bound ...
 *         ... wait up to timeout_ms ...
 *         ... listening socket readable:
 *                 while ((c = connection_accept(&table, listen_fd)) != NULL)
 *                     start watching c->fd;
 *         ... a client's socket ready (READ, WRITE, or ERROR for hang-up/error):
 *                 connection_handle(&table, c, ready);   // c->fd == -1 after
 *     }                                                   // if it closed
 *     connections_close_all(&table, "server stopping");
 *     connections_free(&table);
 *
 * Slots never move: a closed slot just gets fd -1 and may be reused by the
 * next accept, so a loop over the ready sockets is never disturbed by one
 * that closes (a copy of the list, such as poll()'s array, stays valid; the
 * list itself changes order as clients move bytes).  Closing a descriptor removes it from an epoll set by itself
 * only when it is the last descriptor for that socket (man 7 epoll, Q6):
 * nothing here dup()s or fork()s, so it is; after either, EPOLL_CTL_DEL first.
 */
#ifndef CONNECTIONS_H
#define CONNECTIONS_H

#include "address.h"
#include "args.h"
#include "log.h"

#include <stdbool.h>
#include <stddef.h>

/* Unsent output at which we stop reading a client: the per-client memory bound. */
#define OUTPUT_LIMIT ((size_t)64 * 1024)
/* Clients accepted (or refused) per turn of the loop, at most: the rest
 * wait in the queue for the next turn, and the clients already connected
 * are served in between, however fast new ones arrive. */
#define ACCEPTS_PER_TURN 64
/* Refusals get a line each at most once a second; the others are counted
 * and summed up in one line ("refused 512 more clients ..."): log.h. */
#define REFUSALS_LOG_LIMIT ((struct log_limit){ .period = 1.0, .verb = "refused", \
                                                .what = "more clients (one line a second at most)" })

/* What a socket is ready for (connection_handle) or wants (connection_wants). */
enum connection_ready {
    CONNECTION_READ  = 1 << 0,   /* data or end of input to read: POLLIN, EPOLLIN */
    CONNECTION_WRITE = 1 << 1,   /* room to send: POLLOUT, EPOLLOUT */
    CONNECTION_ERROR = 1 << 2,   /* error or hang-up: POLLERR/POLLHUP, EPOLLERR/EPOLLHUP */
};

struct connection {
    int fd;                          /* -1 while this slot is free */
    unsigned watched;                /* free for the step: what its poller was last told */
    bool input_ended;                /* the client shut its write side (read gave 0) */
    char peer[ADDRESS_TEXT_SIZE];    /* "198.51.100.2:40112" */
    char *output;                    /* OUTPUT_LIMIT bytes while output is owed, else NULL */
    size_t output_start;             /* owed bytes are output[start..end) (or, during */
    size_t output_end;               /* connection_handle, the table's input buffer's) */
    double last_active;              /* monotonic_seconds() of the last byte moved */
    struct connection *older;        /* the table's clients, least recently active */
    struct connection *newer;        /* first; a free slot's `newer`: the next free */
};

struct connection_table {
    struct connection *oldest;       /* the clients, by last activity: walk ->newer */
    struct connection *newest;
    int count;                       /* clients in the list */
    int max_clients;
    struct connection *slots;        /* max_clients of them; only used ones are touched */
    int slots_used;                  /* slots[0..slots_used) have held a client */
    struct connection *free_slots;   /* slots given back, linked by ->newer */
    char *input;                     /* OUTPUT_LIMIT bytes: where every read lands */
    struct server_log *log;          /* where the lines go (NULL: nowhere) */
    bool quiet;                      /* no line per connection */
    double idle_timeout;             /* seconds; 0: never */
    double accept_paused_until;      /* after accept() failed and the spare could not help */
    int spare_fd;                    /* held open to be given up on EMFILE; -1 if none */
    int accepts_this_turn;           /* since connections_expire(): ACCEPTS_PER_TURN at most */
    struct log_limit refusals;       /* a "refused" line a second, the rest counted */
};

/* Seconds on a clock that never jumps (CLOCK_MONOTONIC). */
double monotonic_seconds(void);

/* O_NONBLOCK on: calls on fd return EAGAIN instead of waiting.  0, or -1 + errno. */
int set_nonblocking(int fd);

/* An empty table sized and configured from args (max_clients, quiet,
 * idle_timeout), logging to log.  0, or -1 with errno (ENOMEM). */
int connections_init(struct connection_table *table, const struct server_args *args,
                     struct server_log *log);

/* Closes every client, logging "closed PEER: reason" for each. */
void connections_close_all(struct connection_table *table, const char *reason);

/* Closes whatever clients are left and the spare, and frees the slots and
 * the input buffer. */
void connections_free(struct connection_table *table);

/* False for a moment after accept() failed in a way the spare descriptor
 * could not fix: do not watch the listening socket until it turns true
 * (connections_expire's timeout says when to look again). */
bool connections_accepting(const struct connection_table *table);

/* The next waiting client, accepted non-blocking, logged, in a slot;
 * NULL once nobody is waiting, accepting is paused, or this turn of the loop
 * has accepted ACCEPTS_PER_TURN (the listening socket then stays readable:
 * the next turn takes the next ones).  Clients over max_clients and
 * temporary failures are dealt with inside: call it in a loop until NULL. */
struct connection *connection_accept(struct connection_table *table, int listen_fd);

/* The events this client's socket should be watched for now: READ unless its
 * output is full or its input ended; WRITE while output is owed. */
unsigned connection_wants(const struct connection *c);

/* Does what the socket is ready for (an or of enum connection_ready): reads
 * what has arrived, sends what the socket takes, keeps the rest, and closes
 * the connection when it is over (then c->fd == -1).  A spurious event is
 * harmless. */
void connection_handle(struct connection_table *table, struct connection *c,
                       unsigned ready);

/* Logs "closed PEER: reason", closes the socket, frees the slot. */
void connection_close(struct connection_table *table, struct connection *c,
                      const char *reason);

/* Starts a turn of the loop: does what the clock says is due (closes
 * clients idle for idle_timeout, ends an accept pause, sums up refusals),
 * writes what stdout takes of the log, and renews ACCEPTS_PER_TURN.  Call
 * it once per turn.  Returns how many milliseconds the loop may wait before
 * calling it again: -1 when nothing is due (wait for events only). */
int connections_expire(struct connection_table *table);

#endif
