/*
 * clients.h -- the bookkeeping of a server with thousands of clients, as
 * step 8 taught it (steps/08_epoll/connections.c keeps its own teaching
 * copy); step 9 takes it from here.  What it keeps for each client is a
 * struct client_record, the first member of the step's own client struct,
 * so that a record leads back to the step's client (a cast).
 *
 *   - admission: at most max_clients clients; the one over is sent one
 *     line, "busy: too many clients (max N), try later", and closed.  A
 *     refusal gets a line of its own in the log at most once a second; one
 *     line sums up the others (REFUSALS_LOG_LIMIT, common/log.h):
 *
 *         accepted 127.0.0.1:50522 (fd 9)
 *         closed 127.0.0.1:50522: client closed
 *         closed 127.0.0.1:50526: idle for 10 s
 *         refused 127.0.0.1:50530: too many clients (max 1000)
 *         refused 312 more clients (one line a second at most)
 *
 *   - the activity list: the clients ordered by the time each last moved a
 *     byte, least recently active first, so that the idle timeout looks
 *     only at its front.  Touching a client is a few pointer moves, whatever
 *     the number of clients.
 *   - the spare descriptor: out of descriptors (EMFILE, ENFILE), the
 *     waiting client stays queued and the listening socket stays ready, so
 *     the loop would spin.  A descriptor kept open for the purpose (on
 *     /dev/null) is given up, the next accept takes its place, and the
 *     client it brings is told and closed if the spare cannot be had back.
 *   - the accept pause: when accepting fails in a way the spare cannot fix
 *     (ENOBUFS, ENOMEM, no spare), accepting stops for a moment.
 */
#ifndef CLIENTS_H
#define CLIENTS_H

#include "address.h"
#include "args.h"
#include "log.h"
#include "per_address.h"

#include <stdbool.h>
#include <stddef.h>

/* Refusals get a line each at most once a second; the others are counted
 * and summed up in one line ("refused 512 more clients ..."): log.h. */
#define REFUSALS_LOG_LIMIT ((struct log_limit){ .period = 1.0, .verb = "refused", \
                                                .what = "more clients (one line a second at most)" })
/* How long accepting pauses when accept fails and the spare cannot help. */
#define ACCEPT_PAUSE_SECONDS 0.5

struct client_record {
    struct client_record *older;     /* the activity list, least recently */
    struct client_record *newer;     /* active first */
    double last_active;              /* monotonic_seconds() of the last byte moved */
    int fd;
    char peer[ADDRESS_TEXT_SIZE];    /* "198.51.100.2:40112" */
    struct address_key address;      /* its address, counted in per_address */
};

struct clients {
    struct client_record *oldest;    /* the list: walk ->newer */
    struct client_record *newest;
    int count;                       /* clients on the list */
    int max_clients;
    int max_per_address;             /* slots one address may hold; 0: no limit of its own */
    struct per_address per_address;  /* how many each address holds (step 8's idea) */
    struct server_log *log;          /* where the lines go (NULL: nowhere) */
    bool quiet;                      /* no line per connection */
    double idle_timeout;             /* seconds; 0: never */
    struct log_limit refusals;       /* a "refused" line a second, the rest counted */
    void (*close_client)(struct client_record *c, const char *reason, void *context);
    void *context;                   /* close_client's, as given to clients_init() */
    bool stopping;                   /* clients_close_all() was called: admit no more */
    int spare_fd;                    /* given up on EMFILE; -1 if none */
    bool spare_given_up;             /* closed for the next accept to take its place */
    double accept_paused_until;      /* monotonic_seconds() */
};

/* No clients yet, configured from args (max_clients, max_per_address,
 * quiet, idle_timeout), logging to log, and the spare descriptor open (if
 * it cannot be, the server pauses accepting instead of using it).
 * close_client(c, reason, context) is how the step closes a client, for
 * the idle timeout and clients_close_all(): it must clients_remove() c.
 * 0, or -1 with errno (ENOMEM: no room for the counts per address). */
int clients_init(struct clients *clients, const struct server_args *args,
                 struct server_log *log,
                 void (*close_client)(struct client_record *c, const char *reason, void *context),
                 void *context);

/* Closes the spare.  The clients are the caller's to close first. */
void clients_free(struct clients *clients);

/* A socket accept just gave: admitted, refused, or (once stopping) closed
 * without a word.  Admitted: a zeroed
 * record_size bytes (a struct that starts with a struct client_record) with
 * fd and peer filled in, on the list as the most recent, logged "accepted
 * PEER (fd N)"; clients_release() frees it.  NULL: refused, sent one line
 * and closed -- over max_per_address (when set) or max_clients, out of
 * memory, or out of descriptors (the
 * spare given up for this accept cannot be opened again: this client took
 * it) -- or gone already (getpeername() fails). */
struct client_record *clients_admit(struct clients *clients, int fd, size_t record_size);

/* c moved a byte: it becomes the most recently active. */
void clients_touch(struct clients *clients, struct client_record *c);

/* Logs "closed PEER: reason" and takes c off the list.  Its socket stays
 * open until clients_release(). */
void clients_remove(struct clients *clients, struct client_record *c, const char *reason);

/* After clients_remove(): closes c's socket (a failure is reported on
 * stderr, "close: ENAME (...)"), reopens the spare if its last reopening
 * failed (a descriptor is free now), frees c. */
void clients_release(struct clients *clients, struct client_record *c);

/* accept failed with errnum.  About that client only (accept_errors.h):
 * nothing to do.  EMFILE or ENFILE: the spare is given up (once) for the
 * next accept to take.  Otherwise, or with no spare: accepting pauses for
 * ACCEPT_PAUSE_SECONDS, said on stderr. */
void clients_accept_failed(struct clients *clients, int errnum);

/* False while accepting is paused, and once stopping. */
bool clients_accepting(const struct clients *clients);

/* Does what the clock says is due: the clients idle for idle_timeout are
 * closed ("idle for N s"), an accept pause ends, the refusals held back are
 * summed up, and what stdout takes of the log is written.  Returns the
 * seconds until something is due again, -1 for never. */
double clients_expire(struct clients *clients);

/* Stopping: every client is closed with reason, and none admitted any more. */
void clients_close_all(struct clients *clients, const char *reason);

#endif
