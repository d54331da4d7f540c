/*
 * Step 7: poll() -- an event-driven echo server.
 *
 *     local ready = socket.select(clients_and_server, clients_with_output)
 *
 * Step 5 served one client at a time.  Step 6 served many from a frame loop
 * that asks every socket, 60 times a second, "anything for me?" -- with a
 * zero timeout, because its host program must never wait.  A program whose
 * only job is serving can do better: hand the kernel the whole list of
 * sockets and sleep inside poll() until one of them is ready.  No frames, no
 * busy waiting: with nothing to do this server uses no CPU at all, and it
 * answers as soon as a byte arrives instead of at the next frame.
 *
 * Each round builds the list afresh from the list of clients
 * (connections.h), as step 6 did each frame, with one difference that
 * matters now: each client is watched only for what it wants -- POLLIN while
 * it may send more and we have room for it (backpressure), POLLOUT while we
 * owe it output.  A socket watched for what it will not be given makes
 * poll() return at once, forever: a loop that spins instead of sleeping.
 * POLLHUP and POLLERR come whether asked for or not and must be handled
 * for the same reason.
 *
 * Sleeping without a bound brings one new duty: a Ctrl-C landing between the
 * loop's stop_requested() test and poll() would be noticed only at the next
 * event.  So the list also holds the read end of a pipe the signal handler
 * writes to (stop_pipe.h): the signal always wakes poll().
 *
 *     build/07_poll                          listening on [::1]:7777
 *                                            listening on 127.0.0.1:7777
 *     nc localhost 7777  (several at once)   each gets its own lines back
 *
 * Usage: 07_poll [--quiet] [HOST [PORT [BACKLOG]]]     Ctrl-C ends it.
 */
#include "address.h"
#include "args.h"
#include "connections.h"
#include "listeners.h"
#include "log.h"
#include "signals.h"
#include "stop_pipe.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* What a client wants, in poll()'s words. */
static short poll_events(unsigned wants)
{
    return (short)(((wants & CONNECTION_READ) ? POLLIN : 0)
                   | ((wants & CONNECTION_WRITE) ? POLLOUT : 0));
}

/* What poll() says a client's socket is ready for, in connections.h's words. */
static unsigned ready_from(short revents)
{
    return ((revents & POLLIN) ? CONNECTION_READ : 0)
           | ((revents & POLLOUT) ? CONNECTION_WRITE : 0)
           | ((revents & (POLLHUP | POLLERR | POLLNVAL)) ? CONNECTION_ERROR : 0);
}

/* The pollfd list of one turn: the listening sockets first, the stop pipe,
 * then a slot per client; clients[i] is the client whose socket is fds[i]. */
struct poll_list {
    struct pollfd *fds;
    struct connection **clients;
    nfds_t capacity;
    int first_listener;    /* the listening socket whose clients are accepted first */
};

/* Room for `needed` entries: the list grows as clients come (it never
 * shrinks; a few bytes per client that once was).  0, or -1 (ENOMEM). */
static int poll_list_reserve(struct poll_list *list, nfds_t needed)
{
    if (list->fds != NULL && needed <= list->capacity)
        return 0;
    nfds_t capacity = list->capacity == 0 ? 64 : list->capacity;
    while (capacity < needed)
        capacity *= 2;
    struct pollfd *fds = realloc(list->fds, capacity * sizeof *fds);
    if (fds == NULL)
        return -1;
    list->fds = fds;
    struct connection **clients = realloc(list->clients,
                                          capacity * sizeof(struct connection *));
    if (clients == NULL)
        return -1;
    list->clients = clients;
    list->capacity = capacity;
    return 0;
}

/* One turn of the loop: the listening sockets, the stop pipe and every
 * client in the list, a poll() that sleeps until one is ready or timeout_ms
 * passed (-1: no bound), then what is ready served.  -1 (errno set) if
 * poll() failed for a reason other than a signal. */
static int serve_ready(struct poll_list *list, struct listeners *listeners,
                       struct connection_table *table, int timeout_ms)
{
    /* idea sleeping_wait */
    nfds_t first_client = (nfds_t)listeners->count + 1;
    if (poll_list_reserve(list, first_client + (nfds_t)table->count) == -1)
        return -1;
    for (int l = 0; l < listeners->count; l++)
        list->fds[l] = (struct pollfd){ .fd = listeners->list[l].fd, .events = POLLIN };
    /* Unlike step 6, we may now sleep in poll() for good: a signal that
     * lands after the loop test but before poll() must still wake us. */
    list->fds[first_client - 1] = (struct pollfd){ .fd = stop_pipe_fd(), .events = POLLIN };
    nfds_t count = first_client;
    for (struct connection *c = table->oldest; c != NULL; c = c->newer) {
        short events = poll_events(connection_wants(c));
        list->fds[count] = (struct pollfd){ .fd = c->fd, .events = events };
        list->clients[count] = c;
        count++;
    }

    int ready = poll(list->fds, count, timeout_ms);
    if (ready == -1)
        return errno == EINTR ? 0 : -1;      /* a signal: the loop test decides */

    /* Each client is in the list once, and one that closes here is not
     * looked at again this turn. */
    for (nfds_t i = first_client; i < count; i++)
        if (list->fds[i].revents != 0)
            connection_handle(table, list->clients[i], ready_from(list->fds[i].revents));

    /* A different listening socket first each turn: a flood on one must not
     * spend every turn's ACCEPTS_PER_TURN before the others' turn comes. */
    list->first_listener = (list->first_listener + 1) % listeners->count;
    for (int i = 0; i < listeners->count; i++) {
        int l = (list->first_listener + i) % listeners->count;
        if (list->fds[l].revents & POLLIN)
            while (connection_accept(table, listeners->list[l].fd) != NULL)
                ;                  /* next turn watches the new ones */
    }
    return 0;
    /* end of idea sleeping_wait */
}

int main(int argc, char **argv)
{
    struct server_args args;
    parse_server_args(argc, argv, OPTION_QUIET, 0, &args);
    char err[TCP_SERVER_ERR_SIZE];
    if (stop_pipe_open(err, sizeof err) == -1) {
        fprintf(stderr, "%s: %s\n", argv[0], err);
        return 1;
    }

    struct listeners listeners;   /* one per address of HOST (common/listeners.h) */
    if (listeners_open(&listeners, args.host, args.port, args.backlog, err, sizeof err) == -1) {
        fprintf(stderr, "%s: %s\n", argv[0], err);
        return 1;
    }
    if (listeners.skipped[0] != '\0')
        fprintf(stderr, "%s: skipped, not on this computer: %s\n", argv[0], listeners.skipped);
    /* Non-blocking: accept() says EAGAIN when the queue is empty instead of
     * waiting there while the other clients starve. */
    for (int l = 0; l < listeners.count; l++)
        if (set_nonblocking(listeners.list[l].fd) == -1) {
            print_call_error(argv[0], "fcntl O_NONBLOCK", errno);
            listeners_close(&listeners);
            return 1;
        }

    struct server_log log;        /* stdout, never waited for (common/log.h) */
    log_open(&log);
    struct connection_table table;
    struct poll_list list = {0};
    if (connections_init(&table, args.quiet, &log) == -1) {
        print_call_error(argv[0], "malloc", errno);
        listeners_close(&listeners);
        return 1;
    }
    for (int l = 0; l < listeners.count; l++)
        log_line(&log, "listening on %s", listeners.list[l].address);

    while (!stop_requested()) {
        /* Sleep until a socket is ready, or until the log may take more. */
        int timeout_ms = connections_start_turn(&table);
        if (serve_ready(&list, &listeners, &table, timeout_ms) == -1) {
            print_call_error(argv[0], "poll", errno);
            break;
        }
    }

    if (stop_requested())
        log_line(&log, "stopping on %s", stop_signal_name());
    connections_close_all(&table, "server stopping");
    connections_free(&table);
    free(list.clients);
    free(list.fds);
    listeners_close(&listeners);
    log_close(&log);
    return stop_requested() ? 0 : 1;
}
