/*
 * echo.h -- step 9's echo server: what it holds, and what it does with each
 * completion the ring posts.  main.c runs the loop.
 *
 * Every request the server hands the kernel carries, in its user_data, what
 * it is for (accept, recv, send ...) and whom (a listener, a client), so its
 * completion leads straight back to them: server_handle().
 */
#ifndef ECHO_H
#define ECHO_H

#include "args.h"
#include "clients.h"
#include "listeners.h"
#include "log.h"

/* liburing (Debian: liburing-dev).  Its header defines _GNU_SOURCE for
 * itself (musl hides cpu_set_t without it); nothing here relies on that. */
#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Fair shares of the pool.  A client holds the buffers whose bytes it is
 * owed: at CLIENT_BUFFERS its receiving stops, as steps 7-8 stop reading a
 * client owed OUTPUT_LIMIT bytes (a buffer, not a byte, is what a receive
 * takes: 100 bytes take 4 KiB).  And a client that holds any buffer stops
 * receiving while RESERVE_BUFFERS or fewer are free: those are kept for the
 * clients that hold none (lesson, "Fair shares of the pool"). */
#define CLIENT_BUFFERS 16
#define RESERVE_BUFFERS 128
/* The kernel's receive buffer of each client (SO_RCVBUF, set on the
 * listening sockets: accepted ones inherit it).  A multishot receive takes
 * what waits there in one go, before any completion can stop it; a small
 * queue keeps that burst to a few buffers, which the reserve covers. */
#define CLIENT_RECEIVE_BUFFER (4 * BUFFER_SIZE)
/* More clients that never read than the pool has buffers could still hold
 * them all.  While a client waits for a buffer and none is free, the
 * client that holds buffers and has moved nothing for longest, at least
 * EVICT_AFTER_SECONDS, is closed, and its buffers go to the waiting. */
#define EVICT_AFTER_SECONDS 1.0

/* The provided-buffer pool: the kernel picks a free buffer from it for each
 * receive, at the moment data arrives.  A ring of buffers must hold a power
 * of two of them.  The pool is the server's receive memory, whatever the
 * number of clients: 512 x 4 KiB = 2 MiB. */
#define BUFFER_SIZE 4096
#define BUFFER_COUNT 512
#define BUFFER_GROUP 0           /* the pool's id, named in each receive request */

struct buffer_pool {
    struct io_uring_buf_ring *ring;   /* shared with the kernel: the free buffers */
    char *memory;                     /* BUFFER_COUNT buffers of BUFFER_SIZE bytes */
    uint16_t length[BUFFER_COUNT];    /* bytes received into each buffer */
    uint16_t next[BUFFER_COUNT];      /* the next buffer owed to the same client */
    int held;                         /* buffers out of the ring, holding data */
};

struct client;                        /* one connection: echo.c */

struct server {
    const char *program;                /* argv[0], to name in errors */
    struct server_log log;              /* stdout, never waited for (common/log.h) */
    struct io_uring ring;
    struct buffer_pool pool;
    /* The open clients, least recently active first, their admission, the
     * spare descriptor and the accept pause, as step 8 taught them
     * (common/clients.h). */
    struct clients clients;
    struct listeners *listeners;
    bool accept_armed[LISTENERS_MAX];   /* a multishot accept is waiting on it */
    struct client *first_waiting;       /* clients whose recv found the pool empty, */
    struct client *last_waiting;        /* in the order it did: first come, first served */
    int in_flight;                      /* requests whose last completion is to come */
    /* A request the full submission queue could not take (new_request()):
     * its errno, and the entry handed out instead, filled in and never
     * submitted.  The loop's next turn sees it and main() stops. */
    int broken;
    struct io_uring_sqe unqueued;
};

/* Starts a server: its log open (log_open()), the two rings set up
 * (io_uring_queue_init_params()), the pool registered with them, the spare
 * descriptor open, and the first requests queued: a multishot accept per
 * listener and a poll of the stop pipe.  0, or -1 with a one-line reason in
 * err ("CALL: ENAME (...)"). */
int server_start(struct server *server, const char *program, const struct server_args *args,
                 struct listeners *listeners, char *err, size_t err_size);

/* Does what one completion says, queueing the requests that follow from it. */
void server_handle(struct server *server, const struct io_uring_cqe *cqe);

/* Once per loop turn, after the completions: re-arms the accepts that
 * ended, and gives waiting clients a recv again if the pool has buffers
 * (or makes room: EVICT_AFTER_SECONDS). */
void server_rearm(struct server *server);

/* Before each turn: closes the clients idle too long (clients_expire()) and
 * says how long the turn may wait, in seconds (-1: no bound). */
double server_wait(struct server *server);

/* Closes every client ("closed PEER: reason") and cancels every request.
 * Their last completions are still to come: until then the kernel holds
 * their sockets open, listening ones included.  Take them until in_flight
 * is 0, then server_free(). */
void server_close_all(struct server *server, const char *reason);

/* The pool, the spare, the rings, and the log (log_close()). */
void server_free(struct server *server);

#endif
