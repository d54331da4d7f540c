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
 * Each round builds the list afresh from the table of connections
 * (common/connections.h): the listening sockets, watched for new clients,
 * then every client, watched for what it wants now -- POLLIN while it may
 * send more, POLLOUT while we owe it output.  poll() fills in `revents`;
 * POLLHUP and POLLERR come whether asked for or not and must be handled, or a
 * hung-up client makes poll() return at once, forever.  The timeout is the
 * time until the next client would be idle too long (-1: none).
 *
 * Sleeping without a bound brings one new duty: a Ctrl-C landing between the
 * loop's stop_requested() test and poll() would be noticed only at the next
 * event.  So the list also holds stop_signal_fd(), a pipe the signal handler
 * writes to (common/signals.h): the signal always wakes poll().
 *
 *     build/07_poll                          listening on [::1]:7777
 *                                            listening on 127.0.0.1:7777
 *     nc localhost 7777  (several at once)   each gets its own lines back
 *
 * Usage: 07_poll [--quiet] [--max-clients N] [--idle-timeout SECONDS]
 *                [HOST [PORT [BACKLOG]]]     Ctrl-C ends it.
 * N defaults to 1000; a client silent for 60 s is closed (--idle-timeout 0: never).
 */
#include "address.h"
#include "args.h"
#include "connections.h"
#include "listeners.h"
#include "log.h"
#include "signals.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define DEFAULT_MAX_CLIENTS 1000

static short poll_events(unsigned wants)
{
    return (short)(((wants & CONNECTION_READ) ? POLLIN : 0)
                   | ((wants & CONNECTION_WRITE) ? POLLOUT : 0));
}

static unsigned ready_from(short revents)
{
    return ((revents & POLLIN) ? CONNECTION_READ : 0)
           | ((revents & POLLOUT) ? CONNECTION_WRITE : 0)
           | ((revents & (POLLHUP | POLLERR | POLLNVAL)) ? CONNECTION_ERROR : 0);
}

int main(int argc, char **argv)
{
    struct server_args args;
    parse_server_args(argc, argv, OPTION_QUIET | OPTION_MAX_CLIENTS | OPTION_IDLE_TIMEOUT,
                      DEFAULT_MAX_CLIENTS, &args);
    char err[TCP_SERVER_ERR_SIZE];
    if (catch_stop_signals(err, sizeof err) == -1) {
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
    /* One pollfd per listening socket, one for the stop pipe, one per
     * possible client; the matching client of fds[i] is clients[i]. */
    nfds_t first_client = (nfds_t)listeners.count + 1;
    struct pollfd *fds = calloc((size_t)args.max_clients + first_client, sizeof *fds);
    struct connection **clients = calloc((size_t)args.max_clients + first_client,
                                         sizeof(struct connection *));
    if (fds == NULL || clients == NULL || connections_init(&table, &args, &log) == -1) {
        print_call_error(argv[0], "calloc", errno);
        free(clients);
        free(fds);
        return 1;
    }
    int stop_fd = stop_signal_fd();
    for (int l = 0; l < listeners.count; l++)
        log_line(&log, "listening on %s", listeners.list[l].address);

    while (!stop_requested()) {
        int timeout_ms = connections_expire(&table);

        short listen_events = connections_accepting(&table) ? POLLIN : 0;
        for (int l = 0; l < listeners.count; l++) {
            fds[l].fd = listeners.list[l].fd;
            fds[l].events = listen_events;
            fds[l].revents = 0;
        }
        /* Unlike step 6, we may now sleep in poll() for good: a signal that
         * lands after the loop test but before poll() must still wake us. */
        fds[first_client - 1].fd = stop_fd;
        fds[first_client - 1].events = POLLIN;
        fds[first_client - 1].revents = 0;
        nfds_t count = first_client;
        for (struct connection *c = table.oldest; c != NULL; c = c->newer) {
            fds[count].fd = c->fd;
            fds[count].events = poll_events(connection_wants(c));
            fds[count].revents = 0;
            clients[count] = c;
            count++;
        }

        int ready = poll(fds, count, timeout_ms);
        if (ready == -1) {
            if (errno == EINTR)
                continue;              /* a signal: the loop test decides */
            print_call_error(argv[0], "poll", errno);
            break;
        }

        /* Slots never move, so closing one here cannot make us skip another. */
        for (nfds_t i = first_client; i < count; i++)
            if (fds[i].revents != 0)
                connection_handle(&table, clients[i], ready_from(fds[i].revents));

        for (int l = 0; l < listeners.count; l++)
            if (fds[l].revents & POLLIN)
                while (connection_accept(&table, listeners.list[l].fd) != NULL)
                    ;                  /* next round watches the new ones */
    }

    if (stop_requested())
        log_line(&log, "stopping on %s", stop_signal_name());
    connections_close_all(&table, "server stopping");
    connections_free(&table);
    free(clients);
    free(fds);
    listeners_close(&listeners);
    log_close(&log);
    return stop_requested() ? 0 : 1;
}
