/*
 * Step 9: io_uring -- step 8's echo server, on completions instead of readiness.
 *
 *     local ready = socket.select(clients_and_server, clients_with_output)
 *     -- gone: nobody asks which sockets are ready any more
 *
 * epoll (step 8) says a socket may be read; then read() and send() are a
 * system call each.  With io_uring we queue requests (accept, recv, send)
 * in memory shared with the kernel, which does them when it can and posts
 * each result as a completion; ONE io_uring_enter() submits all that is
 * queued and waits for results.  echo.c makes the requests, lends their
 * buffers, cancels them; docs/09_io_uring.md tells why and how.
 *
 * Linux 6.1 or later, liburing 2.3 or later (Debian 12: liburing-dev;
 * without it, make skips this step).  From Linux 6.6, sysctl
 * kernel.io_uring_disabled may turn io_uring off: this step then says so.
 *
 *     build/09_io_uring --quiet            listening on [::1]:7777 ...
 *     nc localhost 7777  (many at once)    each gets its own lines back
 *
 * Usage: 09_io_uring [--quiet] [--max-clients N] [--idle-timeout SECONDS]
 *                    [--max-per-address N] [HOST [PORT [BACKLOG]]]    Ctrl-C ends it.
 */
#ifndef __linux__
#error "step 9 uses io_uring, which only Linux has.  Use step 7 (poll) here; make -k builds the other steps."
#endif

#include "args.h"
#include "echo.h"
#include "listeners.h"
#include "signals.h"
#include "stop_pipe.h"

#include <errno.h>
#include <stdio.h>

#define DEFAULT_MAX_CLIENTS 10000   /* as in step 8; idle clients go after 60 s */

/* seconds, plus 1 ms so that a wait never ends just before a deadline. */
static struct __kernel_timespec timespec_from(double seconds)
{
    long long nanoseconds = (long long)(seconds * 1e9) + 1000000;
    return (struct __kernel_timespec){ .tv_sec = nanoseconds / 1000000000,
                                       .tv_nsec = nanoseconds % 1000000000 };
}

/* One turn: submits the requests queued, waits for a completion (at most
 * wait_seconds; -1: no bound), and handles every completion posted, which
 * queues the requests that follow.  0, or -1 if waiting failed or a request
 * found no room in the queue (said). */
static int turn(struct server *server, double wait_seconds)
{
    /* idea io_uring */
    if (server->broken != 0) {   /* a request found no room (new_request()) */
        print_call_error(server->program, "io_uring_submit", server->broken);
        return -1;
    }
    struct __kernel_timespec timeout = timespec_from(wait_seconds);
    struct io_uring_cqe *cqe;
    int ret = io_uring_submit_and_wait_timeout(&server->ring, &cqe, 1,
                                               wait_seconds < 0 ? NULL : &timeout, NULL);
    /* ETIME: the timeout; EINTR: a signal; EBUSY: completions wait in the
     * kernel for room in the queue, which taking ours below makes. */
    if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EBUSY) {
        print_call_error(server->program, "io_uring_submit_and_wait_timeout", -ret);
        return -1;
    }
    /* Every completion posted by now, in order; then their slots are free. */
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&server->ring, head, cqe) {
        server_handle(server, cqe);
        seen++;
    }
    io_uring_cq_advance(&server->ring, seen);
    return 0;
    /* end of idea io_uring */
}

int main(int argc, char **argv)
{
    struct server_args args;
    parse_server_args(argc, argv, OPTION_QUIET | OPTION_MAX_CLIENTS | OPTION_IDLE_TIMEOUT
                      | OPTION_MAX_PER_ADDRESS,
                      DEFAULT_MAX_CLIENTS, &args);
    char err[TCP_SERVER_ERR_SIZE];
    struct listeners listeners;   /* one per address of HOST (common/listeners.h) */
    struct server server;         /* the log, the rings, the pool, the first requests */
    if (stop_pipe_open(err, sizeof err) == -1
        || listeners_open(&listeners, args.host, args.port, args.backlog, err, sizeof err) == -1
        || server_start(&server, argv[0], &args, &listeners, err, sizeof err) == -1) {
        fprintf(stderr, "%s: %s\n", argv[0], err);
        return 1;
    }
    if (listeners.skipped[0] != '\0')
        fprintf(stderr, "%s: skipped, not on this computer: %s\n", argv[0], listeners.skipped);
    for (int l = 0; l < listeners.count; l++)
        log_line(&server.log, "listening on %s", listeners.list[l].address);

    /* Idle clients go; one turn, waiting until the next deadline at most;
     * then the multishot requests that ended are made again, if wanted. */
    while (!stop_requested() && turn(&server, server_wait(&server)) == 0)
        server_rearm(&server);

    if (stop_requested())
        log_line(&server.log, "stopping on %s", stop_signal_name());
    /* Every request cancelled, and its last completion taken: until then it
     * holds its socket open (a listening one: its port), whatever close() says. */
    server_close_all(&server, "server stopping");
    while (server.in_flight > 0 && turn(&server, -1) == 0) {
    }
    server_free(&server);         /* and the rings, and the log */
    listeners_close(&listeners);
    return stop_requested() && server.broken == 0 ? 0 : 1;
}
