/*
 * Step 8: epoll -- step 7's echo server, scaled to 10,000 connections.
 *
 *     local ready = socket.select(clients_and_server, clients_with_output)
 *     -- the same line; what changes is what it costs with 10,000 clients
 *
 * Step 7 hands poll() the whole list of sockets on every call.  The kernel
 * copies it in, checks every socket and hooks itself onto each one's wait
 * queue, copies the answers back, and we scan every `revents` -- work in
 * proportion to ALL the clients, each time ONE of them sends a byte.  With
 * 10,000 mostly idle clients, that is 10,000 checks per echo.
 *
 * epoll splits poll() in two.  epoll_ctl() tells the kernel once what to
 * watch (the interest list lives in the kernel, not in our array), and only
 * again when that changes; epoll_wait() then returns only the sockets that
 * are ready, which the kernel collected as they became ready.  Its cost
 * follows the number of ready sockets, not the number of connections.
 * Each registration carries a pointer to its client's slot, so an event
 * leads straight to its connection, without any search.
 *
 * We use epoll level-triggered (the default): a socket is reported on every
 * epoll_wait() while it is ready, exactly as poll() reports it.  So the
 * handling of a ready client is step 7's unchanged, and a handler may stop early (it
 * stops reading a client whose output buffer is full) and still be told
 * again about the input left waiting.  Edge-triggered (EPOLLET) reports a
 * socket when something happens on it, not while it stays ready: a server
 * must then read and write until EAGAIN, or remember the socket is still
 * ready, or re-arm it with EPOLL_CTL_MOD, which reports again what is
 * already waiting (man 7 epoll).  That buys fewer wake-ups for sockets that
 * stay ready; here, where a client is watched for EPOLLOUT only while it is
 * owed output, they are few, and the idle 9,990 cost nothing either way.
 *
 * A client leaves the interest list when we close() its descriptor: the
 * kernel drops it once no descriptor refers to that socket any more.  We
 * never dup() or fork(), so our close() is the last; after either, it
 * would not be (man 7 epoll: then EPOLL_CTL_DEL first).
 *
 * Thousands of clients bring three duties of their own, in connections.c:
 *
 *   - --max-clients: a table of slots sized once, so a flood of clients
 *     costs a bounded amount; the one over gets one line ("busy: too many
 *     clients") and is closed.
 *   - a spare descriptor: out of descriptors, accept() fails with EMFILE
 *     and leaves the client queued, so the listening socket stays ready and
 *     a level-triggered loop spins.  Closing a spare /dev/null makes room to
 *     take the client off the queue and refuse it; if even that fails,
 *     accepting pauses for a moment.
 *   - --idle-timeout: clients kept on a list in the order they last moved
 *     a byte, so the ones idle too long are at its front, found without
 *     looking at the others; the wait's timeout is the next one's deadline.
 *
 * epoll is Linux's (BSD and macOS have kqueue); elsewhere this step stops
 * the build with a message, and step 7 is the server to use.  Each client
 * is a descriptor: for 10,000 clients `ulimit -n` must be above 10,000.
 *
 *     build/08_epoll --quiet               listening on [::1]:7777
 *                                          listening on 127.0.0.1:7777
 *     nc localhost 7777  (many at once)    each gets its own lines back
 *
 * Usage: 08_epoll [--quiet] [--max-clients N] [--idle-timeout SECONDS]
 *                 [--max-per-address N] [HOST [PORT [BACKLOG]]]    Ctrl-C ends it.
 * N defaults to 10000; a client silent for 60 s is closed (--idle-timeout 0: never);
 * one address may hold every slot unless --max-per-address says fewer.
 */
#ifndef __linux__
#error "step 8 uses epoll, which only Linux has (BSD and macOS: kqueue). Use step 7 (poll) here; make -k builds the other steps."
#endif

#include "address.h"
#include "args.h"
#include "connections.h"
#include "listeners.h"
#include "log.h"
#include "signals.h"
#include "stop_pipe.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <unistd.h>

#define DEFAULT_MAX_CLIENTS 10000
/* Ready sockets taken per epoll_wait(); any others stay ready for the next. */
#define MAX_EVENTS 256

static uint32_t epoll_events(unsigned wants)
{
    return ((wants & CONNECTION_READ) ? EPOLLIN : 0)
           | ((wants & CONNECTION_WRITE) ? EPOLLOUT : 0);
}

static unsigned ready_from(uint32_t events)
{
    return ((events & EPOLLIN) ? CONNECTION_READ : 0)
           | ((events & EPOLLOUT) ? CONNECTION_WRITE : 0)
           | ((events & (EPOLLHUP | EPOLLERR)) ? CONNECTION_ERROR : 0);
}

/* Tells the kernel what c wants now: op EPOLL_CTL_ADD for a new client,
 * EPOLL_CTL_MOD when its wants changed.  The event carries c itself.  If the
 * kernel refuses (out of memory, or max_user_watches), c cannot be served. */
static void watch(struct connection_table *table, int epoll_fd, int op,
                  struct connection *c)
{
    /* idea epoll:watch */
    unsigned wants = connection_wants(c);
    struct epoll_event event = { .events = epoll_events(wants), .data.ptr = c };
    if (epoll_ctl(epoll_fd, op, c->fd, &event) == -1) {
        char reason[64];
        snprintf(reason, sizeof reason, "epoll_ctl: %s", errno_name(errno));
        connection_close(table, c, reason);
        return;
    }
    c->watched = wants;
    /* end of idea epoll:watch */
}

/* Registers (op EPOLL_CTL_ADD) or updates (EPOLL_CTL_MOD) every listening
 * socket: watched for new clients while accepting, else for nothing.  Each
 * event carries its struct listener.  0, or -1 with errno. */
static int watch_listeners(int epoll_fd, int op, struct listeners *listeners, bool accepting)
{
    for (int l = 0; l < listeners->count; l++) {
        struct epoll_event event = { .events = accepting ? EPOLLIN : 0,
                                     .data.ptr = &listeners->list[l] };
        if (epoll_ctl(epoll_fd, op, listeners->list[l].fd, &event) == -1)
            return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct server_args args;
    parse_server_args(argc, argv, OPTION_QUIET | OPTION_MAX_CLIENTS | OPTION_IDLE_TIMEOUT
                      | OPTION_MAX_PER_ADDRESS,
                      DEFAULT_MAX_CLIENTS, &args);
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

    struct server_log log;        /* stdout, never waited for (common/log.h) */
    log_open(&log);
    struct connection_table table;
    /* The stop pipe, as in step 7; its event carries its own address. */
    struct epoll_event stop_event = { .events = EPOLLIN, .data.ptr = &stop_event };
    /* The listening sockets are registered once; clients are registered as
     * they come (watch) and leave the set by themselves when their
     * descriptor is closed (ours is the only one: no dup(), no fork()). */
    bool listen_watched = true;
    const char *failed_call = NULL;
    int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd == -1)
        failed_call = "epoll_create1";
    else if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, stop_pipe_fd(), &stop_event) == -1)
        failed_call = "epoll_ctl (stop pipe)";
    else if (connections_init(&table, &args, &log) == -1)
        failed_call = "connections_init";
    /* Non-blocking: accept() says EAGAIN when the queue is empty instead of
     * waiting there while the other clients starve. */
    for (int l = 0; l < listeners.count && failed_call == NULL; l++)
        if (set_nonblocking(listeners.list[l].fd) == -1)
            failed_call = "fcntl O_NONBLOCK";
    if (failed_call == NULL
        && watch_listeners(epoll_fd, EPOLL_CTL_ADD, &listeners, listen_watched) == -1)
        failed_call = "epoll_ctl (listening socket)";
    if (failed_call != NULL) {
        print_call_error(argv[0], failed_call, errno);
        return 1;
    }
    for (int l = 0; l < listeners.count; l++)
        log_line(&log, "listening on %s", listeners.list[l].address);

    while (!stop_requested()) {
        int timeout_ms = connections_start_turn(&table);

        /* Accepting paused (out of descriptors): unwatch the listening
         * sockets meanwhile, or their waiting clients would wake us at once. */
        if (connections_accepting(&table) != listen_watched) {
            listen_watched = !listen_watched;
            if (watch_listeners(epoll_fd, EPOLL_CTL_MOD, &listeners, listen_watched) == -1) {
                print_call_error(argv[0], "epoll_ctl (listening socket)", errno);
                break;
            }
        }

        struct epoll_event events[MAX_EVENTS];
        int ready = epoll_wait(epoll_fd, events, MAX_EVENTS, timeout_ms);
        if (ready == -1) {
            if (errno == EINTR)
                continue;              /* a signal: the loop test decides */
            print_call_error(argv[0], "epoll_wait", errno);
            break;
        }

        /* Each socket appears at most once per batch, and a slot closed here
         * is refilled only by an accept whose socket is not in this batch:
         * no event below can reach the wrong client. */
        /* idea epoll:dispatch */
        for (int i = 0; i < ready; i++) {
            if (events[i].data.ptr == &stop_event)
                continue;              /* a stop signal: the loop test ends it */
            struct listener *listener = listener_at(&listeners, events[i].data.ptr);
            struct connection *c;
            if (listener != NULL) {
                while ((c = connection_accept(&table, listener->fd)) != NULL)
                    watch(&table, epoll_fd, EPOLL_CTL_ADD, c);
                continue;
            }
            c = events[i].data.ptr;   /* anything else is a client's slot */
            connection_handle(&table, c, ready_from(events[i].events));
            /* Output owed, or backpressure on or off: tell the kernel. */
            if (c->fd != -1 && connection_wants(c) != c->watched)
                watch(&table, epoll_fd, EPOLL_CTL_MOD, c);
        }
        /* end of idea epoll:dispatch */
    }

    if (stop_requested())
        log_line(&log, "stopping on %s", stop_signal_name());
    connections_close_all(&table, "server stopping");
    connections_free(&table);
    close(epoll_fd);
    listeners_close(&listeners);
    log_close(&log);
    return stop_requested() ? 0 : 1;
}
