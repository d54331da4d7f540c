/*
 * Step 9: io_uring -- step 8's echo server, on completions instead of readiness.
 *
 *     local ready = socket.select(clients_and_server, clients_with_output)
 *     -- gone: nobody asks which sockets are ready any more
 *
 * epoll (step 8) is readiness: the kernel says "this socket may be read
 * now", and we call read() -- and then send() -- one system call each.
 * io_uring is completion: we ask for the reads in advance, the kernel does
 * them when data comes, and tells us "here is what I read for you".  Two
 * rings of memory shared with the kernel carry the conversation: we put
 * requests in the submission queue, the kernel puts their results in the
 * completion queue, and one system call, io_uring_enter(), hands over all
 * the requests queued and waits for results.  Each request carries a
 * user_data number that comes back with its completion: ours says what the
 * request was for and whom (echo.c).  Three features make a server of it:
 *
 *   - multishot requests: ONE accept request per listening socket posts a
 *     completion for every client that connects, and ONE recv request per
 *     client one each time data arrives -- until a completion lacks
 *     IORING_CQE_F_MORE: the request is over, and we make a new one if we
 *     still want it.
 *   - provided buffers: a recv asked for in advance needs somewhere to put
 *     the data, and a buffer per client would cost 10,000 buffers for
 *     10,000 mostly idle clients.  We lend the kernel a pool of buffers (a
 *     buffer ring); it takes one only when data arrives, the completion
 *     says which, we echo straight from it and give it back once its bytes
 *     are sent.  A client that owes nothing holds no buffer at all.
 *   - batching: the sends a turn of the loop decides on are queued, and the
 *     next io_uring_submit_and_wait_timeout() submits them all and waits,
 *     in one io_uring_enter().  No read(), no send(), no epoll_wait().
 *
 * Backpressure cancels a client's recv at OUTPUT_LIMIT bytes owed and arms
 * a new one once it drains.  A request in flight holds its socket, whatever
 * close() says: a client's requests are cancelled, and it is closed and
 * freed once their last completions came (until then one may still name
 * it); at the end every request is cancelled, or the listening sockets
 * would outlive the server.  The clients' bookkeeping (admission, the idle
 * timeout's list, the spare descriptor) is step 8's, from common/clients.h.
 *
 * Linux 6.0 or later (multishot recv); liburing 2.3 or later, for
 * io_uring_prep_recv_multishot (Debian 12: liburing-dev; without it the
 * Makefile skips this step in one line).  A
 * system may turn io_uring off (sysctl kernel.io_uring_disabled, Linux 6.6
 * on): this step then says so at start; steps 7-8 are the servers to use.
 *
 *     build/09_io_uring --quiet            listening on [::1]:7777
 *                                          listening on 127.0.0.1:7777
 *     nc localhost 7777  (many at once)    each gets its own lines back
 *
 * Usage: 09_io_uring [--quiet] [--max-clients N] [--idle-timeout SECONDS]
 *                    [HOST [PORT [BACKLOG]]]    Ctrl-C ends it.
 * N defaults to 10000; a client silent for 60 s is closed (--idle-timeout 0: never).
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

#define DEFAULT_MAX_CLIENTS 10000

/* seconds, plus 1 ms so that a wait never ends just before a deadline. */
static struct __kernel_timespec timespec_from(double seconds)
{
    long long nanoseconds = (long long)(seconds * 1e9) + 1000000;
    return (struct __kernel_timespec){ .tv_sec = nanoseconds / 1000000000,
                                       .tv_nsec = nanoseconds % 1000000000 };
}

/* One turn of the loop: submits every request queued since the last turn,
 * waits until at least one completion is posted (at most wait_seconds; -1:
 * no bound), and does what each completion says, which queues the requests
 * that follow from it.  0, or -1 if waiting failed (said on stderr). */
static int turn(struct server *server, double wait_seconds)
{
    /* idea io_uring */
    struct __kernel_timespec timeout = timespec_from(wait_seconds);
    struct io_uring_cqe *cqe;
    int ret = io_uring_submit_and_wait_timeout(&server->ring, &cqe, 1,
                                               wait_seconds < 0 ? NULL : &timeout, NULL);
    /* ETIME: the timeout; EINTR: a signal; EBUSY: completions wait in the
     * kernel for room in the queue, which taking ours below makes. */
    if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EBUSY) {
        report_failure("io_uring_submit_and_wait_timeout", -ret);
        return -1;
    }
    /* Every completion posted by now, in order; then tell the kernel
     * their slots are free. */
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
    parse_server_args(argc, argv, OPTION_QUIET | OPTION_MAX_CLIENTS | OPTION_IDLE_TIMEOUT,
                      DEFAULT_MAX_CLIENTS, &args);
    char err[TCP_SERVER_ERR_SIZE];
    struct listeners listeners;   /* one per address of HOST (common/listeners.h) */
    if (stop_pipe_open(err, sizeof err) == -1
        || listeners_open(&listeners, args.host, args.port, args.backlog, err, sizeof err) == -1) {
        fprintf(stderr, "%s: %s\n", argv[0], err);
        return 1;
    }
    if (listeners.skipped[0] != '\0')
        fprintf(stderr, "%s: skipped, not on this computer: %s\n", argv[0], listeners.skipped);

    /* Unlike steps 6-8, no socket is made non-blocking: no call of ours
     * ever waits on one; the kernel does the waiting. */
    struct server_log log;        /* stdout, never waited for (common/log.h) */
    log_open(&log);
    struct server server;
    /* The rings, the buffer pool, the first requests: accepts, the stop pipe. */
    if (server_start(&server, &args, &listeners, &log, err, sizeof err) == -1) {
        fprintf(stderr, "%s: %s\n", argv[0], err);
        return 1;
    }
    for (int l = 0; l < listeners.count; l++)
        log_line(&log, "listening on %s", listeners.list[l].address);

    /* Idle clients go (until the next deadline); one turn; then the
     * multishot requests that ended are made again, if still wanted. */
    while (!stop_requested() && turn(&server, server_expire(&server)) == 0)
        server_rearm(&server);

    if (stop_requested())
        log_line(&log, "stopping on %s", stop_signal_name());
    /* Every client closed, every request cancelled, and their last
     * completions taken.  A request holds its file: until then, a listening
     * socket stays open, and its port taken, whatever close() says. */
    server_close_all(&server, "server stopping");
    while (server_requests_outstanding(&server) && turn(&server, -1) == 0) {
    }
    server_free(&server);         /* and the rings */
    listeners_close(&listeners);
    log_close(&log);
    return stop_requested() ? 0 : 1;
}
