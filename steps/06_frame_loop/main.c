/*
 * Step 6: a frame loop -- serving many clients from a program that must
 * never wait.
 *
 * Step 5 waited: in accept() for the next client, then in read() for that
 * client's next line, so a second client heard nothing until the first
 * left.  Many programs cannot wait at all: a game, a renderer, a GUI already
 * has a loop that must draw a frame 60 times a second, and a server put
 * inside it must share each frame without ever holding it up.  So the
 * server is created once at start-up, and every frame does four things:
 *
 *   1. poll() with a timeout of ZERO: the kernel says which sockets are
 *      ready *now* and returns at once.  Any other timeout would eat into the
 *      frame; a blocking accept() or read() could freeze the whole program
 *      on one silent client.  The sockets are non-blocking as well, so no
 *      call on them can wait either.
 *   2. serve what is ready: accept whoever is waiting, read what has
 *      arrived, write what the socket takes now (the rest waits for a later
 *      frame), drop the clients that left.  The list of clients and the
 *      per-client work are in connections.h.
 *   3. the host program's own frame work.  Here it only counts frames and,
 *      once a second, says how many there were.
 *   4. sleep until the next frame is due.  The deadlines are absolute (one
 *      every 1/60 s from the start, slept to with clock_nanosleep and
 *      TIMER_ABSTIME), so the time a frame's work took is not added on top
 *      and the rate does not drift.  A frame that ends after the next one
 *      was due is "late": the missed deadlines are skipped, not rushed.
 *
 * Once a second (unless --quiet) it prints a report, which stays at 60
 * while clients come and go, send megabytes, or sit there saying nothing:
 *
 *     frames: 60/s, clients: 3, late frames: 0
 *
 * No threads.  The price: a reply waits for the next frame (up to 1/60 s),
 * a client moves at most OUTPUT_LIMIT (64 KiB) per frame, and the loop
 * wakes 60 times a second even with nobody there.  Step 7 lets poll() wait.
 *
 * One more change, kept by steps 7-9: the server listens on EVERY address
 * HOST names (common/listeners.h), not the first one as steps 1-5 do, so
 * "localhost" is both ::1 and 127.0.0.1 and "*" both 0.0.0.0 and ::.
 *
 * Usage: 06_frame_loop [--quiet] [--fps N] [HOST [PORT [BACKLOG]]]
 * Frames default to 60 per second (--fps, 1-1000).  Ctrl-C ends it.
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
#include <string.h>
#include <time.h>
#include <unistd.h>

/* What poll() says a client's socket is ready for, in connections.h's words. */
static unsigned ready_from(short revents)
{
    return ((revents & POLLIN) ? CONNECTION_READ : 0)
           | ((revents & POLLOUT) ? CONNECTION_WRITE : 0)
           | ((revents & (POLLHUP | POLLERR | POLLNVAL)) ? CONNECTION_ERROR : 0);
}

/* The host program's own state: a game would keep its world here.  Ours
 * counts frames, to show that serving never slows them down. */
struct frame_counter {
    double since;        /* monotonic_seconds() when this count began */
    int frames;          /* frames run since then */
    int late_frames;     /* how many of them ended after the next was due */
};

/* The host program's work for one frame: once a second, the report. */
static void host_frame_work(struct frame_counter *counter, int client_count, bool quiet,
                            struct server_log *log)
{
    double now = monotonic_seconds();
    if (now - counter->since >= 1.0) {
        if (!quiet)
            log_line(log, "frames: %.0f/s, clients: %d, late frames: %d",
                     counter->frames / (now - counter->since), client_count,
                     counter->late_frames);
        counter->since = now;
        counter->frames = 0;
        counter->late_frames = 0;
    }
    counter->frames++;
}

/* Sleeps until the monotonic clock reads `deadline` (seconds), or a signal
 * comes.  Returns 0, or the error number (EINTR for a signal). */
static int sleep_until(double deadline)
{
    struct timespec when;
    when.tv_sec = (time_t)deadline;
    when.tv_nsec = (long)((deadline - (double)when.tv_sec) * 1e9);
    return clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &when, NULL);
}

/* The pollfd list of one frame: the listening sockets first, then a slot
 * per client; clients[i] is the client whose socket is fds[i]. */
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

/* The server's turn of one frame: the listening sockets and every client
 * in the list, a poll() that looks without waiting, then what is ready
 * served.  -1 (errno set) if poll() failed for a reason other than a signal. */
static int serve_ready(struct poll_list *list, struct listeners *listeners,
                       struct connection_table *table)
{
    /* idea frame_loop:poll */
    nfds_t first_client = (nfds_t)listeners->count;
    if (poll_list_reserve(list, first_client + (nfds_t)table->count) == -1)
        return -1;
    for (int l = 0; l < listeners->count; l++)
        list->fds[l] = (struct pollfd){ .fd = listeners->list[l].fd, .events = POLLIN };
    nfds_t count = first_client;
    for (struct connection *c = table->oldest; c != NULL; c = c->newer) {
        short events = (short)(POLLIN | (connection_owes(c) ? POLLOUT : 0));
        list->fds[count] = (struct pollfd){ .fd = c->fd, .events = events };
        list->clients[count] = c;
        count++;
    }

    int ready = poll(list->fds, count, 0);   /* 0: look, never wait */
    if (ready == -1)
        return errno == EINTR ? 0 : -1;      /* a signal: the loop test decides */

    /* Each client is in the list once, and one that closes here is not
     * looked at again this frame. */
    for (nfds_t i = first_client; i < count; i++)
        if (list->fds[i].revents != 0)
            connection_handle(table, list->clients[i], ready_from(list->fds[i].revents));

    /* A different listening socket first each frame: a flood on one must not
     * spend every frame's ACCEPTS_PER_TURN before the others' turn comes. */
    list->first_listener = (list->first_listener + 1) % listeners->count;
    for (int i = 0; i < listeners->count; i++) {
        int l = (list->first_listener + i) % listeners->count;
        if (list->fds[l].revents & POLLIN)
            while (connection_accept(table, listeners->list[l].fd) != NULL)
                ;                  /* next frame watches the new ones */
    }
    return 0;
    /* end of idea frame_loop:poll */
}

int main(int argc, char **argv)
{
    struct server_args args;
    parse_server_args(argc, argv, OPTION_QUIET | OPTION_FPS, 0, &args);
    char err[TCP_SERVER_ERR_SIZE];
    if (catch_stop_signals(err, sizeof err) == -1) {
        fprintf(stderr, "%s: %s\n", argv[0], err);
        return 1;
    }

    /* Created once, before the first frame: a socket on every address HOST
     * names (common/listeners.h), where steps 1-5 took the first one. */
    struct listeners listeners;
    if (listeners_open(&listeners, args.host, args.port, args.backlog, err, sizeof err) == -1) {
        fprintf(stderr, "%s: %s\n", argv[0], err);
        return 1;
    }
    if (listeners.skipped[0] != '\0')
        fprintf(stderr, "%s: skipped, not on this computer: %s\n", argv[0], listeners.skipped);
    /* Non-blocking: accept() says EAGAIN when the queue is empty instead of
     * waiting there while the frame (and every other client) stands still. */
    for (int l = 0; l < listeners.count; l++)
        if (set_nonblocking(listeners.list[l].fd) == -1) {
            print_call_error(argv[0], "fcntl O_NONBLOCK", errno);
            listeners_close(&listeners);
            return 1;
        }

    /* Even the host's report must never hold up a frame: a log that never
     * waits for stdout (common/log.h). */
    struct server_log log;
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

    double frame_seconds = 1.0 / args.fps;
    double next_frame = monotonic_seconds();
    struct frame_counter counter = {.since = next_frame};

    while (!stop_requested()) {
        /* 1-2. The server's turn: all that is ready now, nothing that is not.
         * The log's retry time is not needed: another frame comes soon. */
        connections_start_turn(&table);
        if (serve_ready(&list, &listeners, &table) == -1) {
            print_call_error(argv[0], "poll", errno);
            break;
        }

        /* 3. The host program's turn. */
        host_frame_work(&counter, table.count, args.quiet, &log);

        /* 4. Sleep until the next frame is due. */
        /* idea frame_loop */
        next_frame += frame_seconds;
        double now = monotonic_seconds();
        if (now >= next_frame) {
            counter.late_frames++;
            while (next_frame <= now)
                next_frame += frame_seconds;
        }
        int sleep_error = sleep_until(next_frame);
        if (sleep_error != 0 && sleep_error != EINTR) {
            print_call_error(argv[0], "clock_nanosleep", sleep_error);
            break;
        }
        /* end of idea frame_loop */
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
