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
 * request was for and whom (echo.c).
 *
 * Three io_uring features make a server of it:
 *
 *   - multishot requests: ONE accept request per listening socket posts a
 *     completion for every client that connects, and ONE recv request per
 *     client posts a completion each time data arrives -- until a
 *     completion lacks IORING_CQE_F_MORE, when the request is over and we
 *     make a new one if we still want it.
 *   - provided buffers: a recv asked for in advance needs somewhere to put
 *     the data.  A buffer per client would cost 10,000 buffers for 10,000
 *     mostly idle clients.  Instead we lend the kernel a pool of buffers
 *     (a buffer ring) and it takes one only when data arrives; the
 *     completion says which.  We echo straight from that buffer and give it
 *     back to the ring once its bytes are sent.  A client that owes
 *     nothing holds no buffer at all.
 *   - batching: the sends a turn of the loop decides on are queued, and the
 *     next io_uring_submit_and_wait_timeout() submits them all and waits,
 *     in one io_uring_enter().  No read(), no send(), no epoll_wait().
 *
 * What step 8 did with a readiness event, we now do with completions:
 * backpressure cancels a client's recv at OUTPUT_LIMIT bytes owed and arms
 * a new one once it drains.  And a request in flight holds its socket,
 * whatever close() says: a client's requests are cancelled, and it is
 * closed and freed once their last completions came (until then one may
 * still name it); at the end every request is cancelled, or the listening
 * sockets would outlive the server.
 *
 * io_uring is Linux's, and this step needs Linux 6.0 or later (multishot
 * recv).  A system may turn io_uring off (sysctl kernel.io_uring_disabled,
 * Linux 6.6 on): then this step says so at start, and steps 7-8 are the
 * servers to use.  It is built with liburing 2.3 or later (Debian 12:
 * liburing-dev), for io_uring_prep_recv_multishot; without it, the Makefile
 * skips this step in one line.
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

#include "address.h"
#include "args.h"
#include "echo.h"
#include "listeners.h"
#include "signals.h"
#include "stop_pipe.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_MAX_CLIENTS 10000
/* Requests queued per turn before the queue is full (then it is submitted
 * early), and completions the kernel can post before we take them (more
 * wait in the kernel, but multishot requests end: we arm them again). */
#define SUBMISSION_ENTRIES 4096
#define COMPLETION_ENTRIES 16384

/* The two rings, 0 or an errno.  DEFER_TASKRUN (Linux 6.1; with
 * SINGLE_ISSUER: one thread uses the ring): the kernel finishes receives
 * only while we wait for completions, so a turn's completions come in one
 * batch, and a cancel (backpressure) lands before the next batch rather
 * than after whatever arrived in between.  An older kernel says EINVAL:
 * then without it. */
static int ring_init(struct io_uring *ring)
{
    struct io_uring_params params = {
        .flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        .cq_entries = COMPLETION_ENTRIES };
    int failed = -io_uring_queue_init_params(SUBMISSION_ENTRIES, ring, &params);
    if (failed == EINVAL) {
        params = (struct io_uring_params){ .flags = IORING_SETUP_CQSIZE,
                                           .cq_entries = COMPLETION_ENTRIES };
        failed = -io_uring_queue_init_params(SUBMISSION_ENTRIES, ring, &params);
    }
    return failed;
}

/* io_uring_queue_init_params() failed: say why, with what to do. */
static void report_no_io_uring(const char *program, int errnum)
{
    const char *hint = errnum == EPERM ? "; io_uring is turned off here: sysctl kernel.io_uring_disabled"
                     : errnum == ENOSYS ? "; this kernel has no io_uring"
                     : "";
    fprintf(stderr, "%s: io_uring_queue_init_params: %s (%s)%s\n", program,
            errno_name(errnum), strerror(errnum), hint);
}

int main(int argc, char **argv)
{
    struct server_args args;
    parse_server_args(argc, argv, OPTION_QUIET | OPTION_MAX_CLIENTS | OPTION_IDLE_TIMEOUT,
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

    /* The two rings.  Unlike steps 6-8, no socket is made non-blocking:
     * no call of ours ever waits on one; the kernel does the waiting. */
    struct server_log log;        /* stdout, never waited for (common/log.h) */
    log_open(&log);
    struct server server = { 0 };
    int failed = ring_init(&server.ring);
    if (failed) {
        report_no_io_uring(argv[0], failed);
        listeners_close(&listeners);
        return 1;
    }
    /* The buffer pool, and the first requests: accepts, the stop pipe. */
    if (server_start(&server, &args, &listeners, &log, err, sizeof err) == -1) {
        fprintf(stderr, "%s: %s\n", argv[0], err);
        io_uring_queue_exit(&server.ring);
        listeners_close(&listeners);
        return 1;
    }
    for (int l = 0; l < listeners.count; l++)
        log_line(&log, "listening on %s", listeners.list[l].address);

    /* Idle clients go; then submit every request queued since the last
     * turn and sleep until at least one completion is posted, or until the
     * next deadline: one io_uring_enter() for all of it (server_turn()). */
    while (!stop_requested() && server_turn(&server, server_expire(&server)) == 0)
        server_rearm(&server);   /* multishot requests that ended, if still wanted */

    if (stop_requested())
        log_line(&log, "stopping on %s", stop_signal_name());
    server_close_all(&server, "server stopping");
    server_free(&server);
    io_uring_queue_exit(&server.ring);
    listeners_close(&listeners);
    log_close(&log);
    return stop_requested() ? 0 : 1;
}
