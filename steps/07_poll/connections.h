/*
 * connections.h -- step 7's clients: many at once, none ever waited for.
 *
 * The loop (main.c) sleeps in poll() until sockets are ready; this file
 * does what each ready socket needs, without ever blocking, and says what
 * each client should be watched for (connection_wants), so that the sleep
 * ends only when there is something to do:
 *
 *   - accepting: every client waiting on a non-blocking listening socket,
 *     until accept() says EAGAIN, but at most ACCEPTS_PER_TURN a turn, so a
 *     flood of new connections cannot starve the clients already connected.
 *     Each new socket is non-blocking too (accept4), so no read or send on
 *     it can wait.
 *     Temporary accept() failures (ECONNABORTED, the others accept_errors.h
 *     lists) are skipped; the rest end this turn's accepting.
 *   - reading what has arrived: data, EAGAIN (nothing more now), the end of
 *     the client's input (read() returns 0), or an error such as a reset.
 *   - echoing: send() takes what the socket has room for; what it would not
 *     take waits in that client's own output buffer for a later turn.
 *   - backpressure: a client owed OUTPUT_LIMIT bytes (it sends much and
 *     reads slowly) is not even watched for reading until it drains, nor is
 *     one whose input has ended: poll() would report it readable at once,
 *     forever, and the loop would spin instead of sleeping.
 *   - ending: a client that closes, or only shuts its write side
 *     (half-close), first gets everything it is owed, then is closed; a
 *     reset or other error closes it at once.  Each connection logs one line
 *     when it opens and one when it closes, saying why (unless --quiet),
 *     through a log that never waits for stdout (common/log.h):
 *
 *         accepted 127.0.0.1:50522 (fd 5)
 *         closed 127.0.0.1:50522: client closed
 *         closed 127.0.0.1:50524: ECONNRESET (Connection reset by peer)
 *         closed 127.0.0.1:50528: server stopping
 *
 * Each client is one struct connection, allocated when it comes and freed
 * when it goes, on a list from the oldest client to the newest.  There is
 * no limit but the descriptors the process may open: step 8 adds one.
 */
#ifndef CONNECTIONS_H
#define CONNECTIONS_H

#include "address.h"
#include "clock.h"       /* monotonic_seconds() */
#include "log.h"

#include <stdbool.h>
#include <stddef.h>

/* The most one turn reads from a client: what it may be owed, its share
 * of the server's memory.  The total: while the clients' output buffers
 * hold OUTPUT_TOTAL bytes together, a turn reads OUTPUT_FLOOR at most, so
 * that every client is still served, and each may be left owed that little
 * (lesson 7, "Memory: a share per client and a total"). */
#define OUTPUT_LIMIT ((size_t)64 * 1024)
#define OUTPUT_TOTAL ((size_t)4 * 1024 * 1024)
#define OUTPUT_FLOOR ((size_t)4 * 1024)
/* Clients accepted per turn of the loop, at most: the rest wait in the
 * queue for the next turn, and the clients already connected are served in
 * between, however fast new ones arrive. */
#define ACCEPTS_PER_TURN 64

/* What a socket is ready for (connection_handle) or wants (connection_wants). */
enum connection_ready {
    CONNECTION_READ  = 1 << 0,   /* data or end of input to read: POLLIN */
    CONNECTION_WRITE = 1 << 1,   /* room to send: POLLOUT */
    CONNECTION_ERROR = 1 << 2,   /* error or hang-up: POLLERR, POLLHUP */
};

struct connection {
    int fd;
    bool input_ended;                /* the client shut its write side (read gave 0) */
    char peer[ADDRESS_TEXT_SIZE];    /* "198.51.100.2:40112" */
    char *output;                    /* the bytes owed, while some are, else NULL */
    size_t output_start;             /* owed bytes are output[start..end) (or, during */
    size_t output_end;               /* connection_handle, the table's input buffer's) */
    struct connection *older;        /* the table's clients, oldest first */
    struct connection *newer;
};

struct connection_table {
    struct connection *oldest;       /* the clients: walk ->newer */
    struct connection *newest;
    int count;                       /* clients in the list */
    char *input;                     /* OUTPUT_LIMIT bytes: where every read lands */
    size_t output_held;              /* bytes in the clients' output buffers, together */
    struct server_log *log;          /* where the lines go (NULL: nowhere) */
    bool quiet;                      /* no line per connection */
    int accepts_this_turn;           /* since connections_start_turn(): ACCEPTS_PER_TURN at most */
    int accept_failing;              /* the errno accept() last failed with; 0 once it works */
};

/* O_NONBLOCK on: calls on fd return EAGAIN instead of waiting.  0, or -1 + errno. */
int set_nonblocking(int fd);

/* An empty table, logging to log (quiet: no line per connection).
 * 0, or -1 with errno (ENOMEM). */
int connections_init(struct connection_table *table, bool quiet, struct server_log *log);

/* Closes every client, logging "closed PEER: reason" for each. */
void connections_close_all(struct connection_table *table, const char *reason);

/* Closes whatever clients are left and frees the input buffer. */
void connections_free(struct connection_table *table);

/* The next waiting client, accepted non-blocking, logged, on the list; NULL
 * once nobody is waiting, accept() failed, or this turn has accepted
 * ACCEPTS_PER_TURN (the listening socket then stays readable: the next turn
 * takes the next ones).  Call it in a loop until NULL. */
struct connection *connection_accept(struct connection_table *table, int listen_fd);

/* The events this client's socket should be watched for now: READ unless its
 * output is full or its input ended; WRITE while output is owed. */
unsigned connection_wants(const struct connection *c);

/* Does what the socket is ready for (an or of enum connection_ready): reads
 * what has arrived, sends what the socket takes, keeps the rest, and closes
 * the connection when it is over (then c is freed: do not touch it again).
 * Returns -1 if it closed c, else 0.  A spurious event is harmless. */
int connection_handle(struct connection_table *table, struct connection *c, unsigned ready);

/* Logs "closed PEER: reason", closes the socket, frees c. */
void connection_close(struct connection_table *table, struct connection *c,
                      const char *reason);

/* Starts a turn of the loop: writes what stdout takes of the log and renews
 * ACCEPTS_PER_TURN.  Returns how many milliseconds the loop may wait before
 * calling it again: -1 when nothing is due (wait for events only). */
int connections_start_turn(struct connection_table *table);

#endif
