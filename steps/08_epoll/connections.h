/*
 * connections.h -- step 8's clients: thousands at once, each with a share.
 *
 * The loop (main.c) sleeps in epoll_wait() until sockets are ready; this file
 * does what each ready socket needs, without ever blocking, and says what
 * each client should be watched for (connection_wants), so that the sleep
 * ends only when there is something to do:
 *
 *   - accepting: every client waiting on a non-blocking listening socket,
 *     until accept() says EAGAIN, but at most ACCEPTS_PER_TURN a turn, so a
 *     flood of new connections cannot starve the clients already connected.
 *     Each new socket is non-blocking too (accept4), so no read or send on
 *     it can wait.  Temporary accept() failures (ECONNABORTED, the others
 *     accept_errors.h lists) are skipped.
 *   - admission (new in step 8): at most max_clients clients, each in a slot
 *     of a table sized once; the one over is sent one line and closed,
 *     found out without a search.  Out of descriptors (EMFILE, ENFILE), a
 *     spare descriptor kept open for the purpose is given up to take the
 *     waiting client off the queue, tell it, and close it; else the
 *     listening socket would stay readable and the loop would spin.  If even
 *     that fails, accepting pauses for a moment: connections_accepting()
 *     turns false, and the loop must stop watching the listening socket.
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
 *     reset or other error closes it at once; so does --idle-timeout (new
 *     in step 8).  Each connection logs one line
 *     when it opens and one when it closes, saying why (unless --quiet),
 *     through a log that never waits for stdout (common/log.h):
 *
 *         accepted 127.0.0.1:50522 (fd 5)
 *         closed 127.0.0.1:50522: client closed
 *         closed 127.0.0.1:50524: ECONNRESET (Connection reset by peer)
 *         closed 127.0.0.1:50526: idle for 10 s
 *         closed 127.0.0.1:50528: server stopping
 *         refused 127.0.0.1:50530: too many clients (max 1000)
 *         refused 312 more clients (one line a second at most)
 *
 *   Refusals get a line of their own at most once a second; one line sums
 *   up the others.
 *
 * Each client is one slot of the table, on a list ordered by the time it
 * last moved a byte, least recently active first, so the idle timeout looks
 * only at the front of it; a slot given back goes on a free list for the
 * next client.  No step of it costs more with 10,000 clients than with 10.
 * Slots never move: epoll keeps a pointer to each (its event's data.ptr).
 */
#ifndef CONNECTIONS_H
#define CONNECTIONS_H

#include "address.h"
#include "clock.h"       /* monotonic_seconds() */
#include "args.h"
#include "log.h"
#include "per_address.h"

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
/* Refusals get a line each at most once a second; the others are counted
 * and summed up in one line ("refused 512 more clients ..."): log.h. */
#define REFUSALS_LOG_LIMIT ((struct log_limit){ .period = 1.0, .verb = "refused", \
                                                .what = "more clients (one line a second at most)" })

/* What a socket is ready for (connection_handle) or wants (connection_wants). */
enum connection_ready {
    CONNECTION_READ  = 1 << 0,   /* data or end of input to read: POLLIN */
    CONNECTION_WRITE = 1 << 1,   /* room to send: POLLOUT */
    CONNECTION_ERROR = 1 << 2,   /* error or hang-up: POLLERR, POLLHUP */
};

struct connection {
    int fd;                          /* -1 while this slot is free */
    unsigned watched;                /* free for the step: what its poller was last told */
    bool input_ended;                /* the client shut its write side (read gave 0) */
    char peer[ADDRESS_TEXT_SIZE];    /* "198.51.100.2:40112" */
    struct address_key address;      /* its address, counted in the table's per_address */
    char *output;                    /* the bytes owed, while some are, else NULL */
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
    int max_per_address;             /* slots one address may hold; 0: no limit of its own */
    struct per_address per_address;  /* how many each address holds */
    struct connection *slots;        /* max_clients of them; only used ones are touched */
    int slots_used;                  /* slots[0..slots_used) have held a client */
    struct connection *free_slots;   /* slots given back, linked by ->newer */
    char *input;                     /* OUTPUT_LIMIT bytes: where every read lands */
    size_t output_held;              /* bytes in the clients' output buffers, together */
    struct server_log *log;          /* where the lines go (NULL: nowhere) */
    bool quiet;                      /* no line per connection */
    double idle_timeout;             /* seconds; 0: never */
    double accept_paused_until;      /* after accept() failed and the spare could not help */
    int spare_fd;                    /* held open to be given up on EMFILE; -1 if none */
    int accepts_this_turn;           /* since connections_start_turn(): ACCEPTS_PER_TURN at most */
    struct log_limit refusals;       /* a "refused" line a second, the rest counted */
};

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
 * (connections_start_turn's timeout says when to look again). */
bool connections_accepting(const struct connection_table *table);

/* The next waiting client, accepted non-blocking, logged, in a slot; NULL
 * once nobody is waiting, accepting is paused, or this turn has accepted
 * ACCEPTS_PER_TURN (the listening socket then stays readable: the next turn
 * takes the next ones).  Clients over max_clients and temporary failures are
 * dealt with inside: call it in a loop until NULL. */
struct connection *connection_accept(struct connection_table *table, int listen_fd);

/* The events this client's socket should be watched for now: READ unless its
 * output is full or its input ended; WRITE while output is owed. */
unsigned connection_wants(const struct connection *c);

/* Does what the socket is ready for (an or of enum connection_ready): reads
 * what has arrived, sends what the socket takes, keeps the rest, and closes
 * the connection when it is over (then its slot is free: c->fd == -1).
 * Returns -1 if it closed c, else 0.  A spurious event is harmless. */
int connection_handle(struct connection_table *table, struct connection *c, unsigned ready);

/* Logs "closed PEER: reason", closes the socket, frees the slot. */
void connection_close(struct connection_table *table, struct connection *c,
                      const char *reason);

/* Starts a turn of the loop: does what the clock says is due (closes
 * clients idle for idle_timeout, ends an accept pause, sums up refusals),
 * writes what stdout takes of the log, and renews ACCEPTS_PER_TURN.  Returns how many milliseconds the loop may wait before
 * calling it again: -1 when nothing is due (wait for events only). */
int connections_start_turn(struct connection_table *table);

#endif
