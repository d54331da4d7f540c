/* echo.c -- see echo.h.  The clients' bookkeeping (their list, admission,
 * the spare descriptor, the accept pause) is common/clients.c's. */
#include "echo.h"

#include "address.h"
#include "clock.h"
#include "stop_pipe.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Requests queued before the queue is full (then submitted early), and
 * completions posted before we take them (past that, multishot requests end). */
#define SUBMISSION_ENTRIES 4096
#define COMPLETION_ENTRIES 16384

/* What a request is for: the low 3 bits of its user_data.  The other bits
 * are its client's address (malloc()'s memory is aligned for any type, so
 * those 3 bits of it are 0) or its listener's number, shifted past them. */
enum request { REQUEST_IGNORED, REQUEST_STOP, REQUEST_ACCEPT, REQUEST_RECV, REQUEST_SEND };
#define REQUEST_BITS 3
#define REQUEST_MASK ((uint64_t)(1 << REQUEST_BITS) - 1)
_Static_assert(_Alignof(max_align_t) >= 1 << REQUEST_BITS, "client addresses keep 3 bits free");

struct client {
    struct client_record record;     /* first: fd, peer, place in the activity list */
    struct client *prev_waiting;     /* the queue of clients waiting for buffers */
    struct client *next_waiting;
    unsigned held;                   /* pool buffers of bytes received, not yet all sent */
    uint16_t first_buffer;           /* those buffers, linked through */
    uint16_t last_buffer;            /* pool.next[], oldest first */
    uint16_t first_sent;             /* bytes of first_buffer sent already */
    bool receiving;                  /* a multishot recv is armed (its last CQE not seen) */
    bool cancelling;                 /* and we asked the kernel to cancel it */
    bool sending;                    /* a send is in flight */
    bool input_ended;                /* recv gave 0: the client sends no more */
    bool waiting;                    /* in the queue for buffers */
    bool closing;                    /* closed and logged; freed after its last CQE */
};

/* -- requests: the submission queue ---------------------------------------- */

/* The two rings.  DEFER_TASKRUN (Linux 6.1, with SINGLE_ISSUER): receives
 * complete only while we wait, so a cancel lands before the next batch
 * (lesson, "Backpressure in a completion world"). */
static int ring_start(struct io_uring *ring, char *err, size_t err_size)
{
    struct io_uring_params params = {
        .flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        .cq_entries = COMPLETION_ENTRIES };
    int failed = -io_uring_queue_init_params(SUBMISSION_ENTRIES, ring, &params);
    if (failed == 0)
        return 0;
    const char *hint = failed == EPERM ? "; io_uring is turned off here: sysctl kernel.io_uring_disabled"
                     : failed == ENOSYS ? "; this kernel has no io_uring"
                     : failed == EINVAL ? "; Linux 6.1 or later needed" : "";
    snprintf(err, err_size, "io_uring_queue_init_params: %s (%s)%s", errno_name(failed),
             strerror(failed), hint);
    return -1;
}

/* A free submission queue entry, its user_data saying what the request is
 * for and whom (the io_uring_prep_*() calls that fill in the rest leave it
 * alone).  It waits for the loop's next submit, unless the queue is full:
 * then what it holds is submitted now, to make room.  If even that fails,
 * server->broken says why, and the caller fills in an entry nobody submits
 * (no caller has to check; main() stops at the next turn). */
static struct io_uring_sqe *new_request(struct server *server, enum request kind,
                                        uintptr_t whom)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&server->ring);
    if (sqe == NULL) {
        int submitted = io_uring_submit(&server->ring);
        sqe = io_uring_get_sqe(&server->ring);
        if (sqe == NULL) {
            if (server->broken == 0)
                server->broken = submitted < 0 ? -submitted : EBUSY;
            return &server->unqueued;
        }
    }
    io_uring_sqe_set_data64(sqe, (uint64_t)whom | kind);
    server->in_flight++;
    return sqe;
}

/* -- the buffer pool ---------------------------------------------------------- */

/* Back into the ring: the kernel may fill it again. */
static void give_back(struct buffer_pool *pool, uint16_t bid)
{
    io_uring_buf_ring_add(pool->ring, pool->memory + (size_t)bid * BUFFER_SIZE,
                          BUFFER_SIZE, bid, io_uring_buf_ring_mask(BUFFER_COUNT), 0);
    io_uring_buf_ring_advance(pool->ring, 1);
    pool->held--;
}

static int pool_start(struct buffer_pool *pool, struct io_uring *ring, char *err,
                      size_t err_size)
{
    /* The ring of free buffers, shared with the kernel, must start on a page
     * (man io_uring_register_buf_ring); the 2 MiB of buffers follow it, in
     * memory only once the kernel has written into them. */
    size_t ring_size = BUFFER_COUNT * sizeof(struct io_uring_buf);
    long page = sysconf(_SC_PAGESIZE);
    void *memory;
    int failed = posix_memalign(&memory, page > 0 ? (size_t)page : 4096,
                                ring_size + (size_t)BUFFER_COUNT * BUFFER_SIZE);
    if (failed != 0) {
        format_call_error(err, err_size, "posix_memalign", NULL, 0, failed);
        return -1;
    }
    pool->ring = memory;
    pool->memory = (char *)memory + ring_size;
    io_uring_buf_ring_init(pool->ring);
    struct io_uring_buf_reg reg = { .ring_addr = (uintptr_t)pool->ring,
                                    .ring_entries = BUFFER_COUNT, .bgid = BUFFER_GROUP };
    failed = -io_uring_register_buf_ring(ring, &reg, 0);
    if (failed != 0) {
        free(pool->ring);
        format_call_error(err, err_size, "io_uring_register_buf_ring", NULL, 0, failed);
        return -1;
    }
    pool->held = BUFFER_COUNT;   /* until given to the ring, where the kernel takes them */
    for (int bid = 0; bid < BUFFER_COUNT; bid++)
        give_back(pool, (uint16_t)bid);
    return 0;
}

/* Out of the queue for buffers, from wherever it is (a closing client may
 * be anywhere): a few pointer moves, however long the queue. */
static void stop_waiting(struct server *server, struct client *c)
{
    *(c->prev_waiting ? &c->prev_waiting->next_waiting : &server->first_waiting) = c->next_waiting;
    *(c->next_waiting ? &c->next_waiting->prev_waiting : &server->last_waiting) = c->prev_waiting;
    c->prev_waiting = c->next_waiting = NULL;
    c->waiting = false;
}

/* Into the queue for buffers, at the end: first come, first served. */
static void start_waiting(struct server *server, struct client *c)
{
    c->prev_waiting = server->last_waiting;
    *(c->prev_waiting ? &c->prev_waiting->next_waiting : &server->first_waiting) = c;
    server->last_waiting = c;
    c->waiting = true;
}

/* -- closing: cancel, then close once the kernel is done ------------------------ */

/* The kernel is done with c: give its buffers back, close, free. */
static void finish_if_done(struct server *server, struct client *c)
{
    if (!c->closing || c->receiving || c->sending)
        return;
    for (; c->held > 0; c->held--) {
        uint16_t bid = c->first_buffer;
        c->first_buffer = server->pool.next[bid];
        give_back(&server->pool, bid);
    }
    clients_release(&server->clients, &c->record);
}

/* Logs "closed PEER: reason"; its requests are cancelled, and c is closed
 * once their last completions came (lesson, "A request holds its socket"). */
static void close_client(struct server *server, struct client *c, const char *reason)
{
    clients_remove(&server->clients, &c->record, reason);
    if (c->waiting)
        stop_waiting(server, c);
    c->closing = true;
    if (c->receiving || c->sending) {
        struct io_uring_sqe *sqe = new_request(server, REQUEST_IGNORED, 0);
        io_uring_prep_cancel_fd(sqe, c->record.fd, IORING_ASYNC_CANCEL_ALL);
    }
    finish_if_done(server, c);
}

static void close_record(struct client_record *c, const char *reason, void *server)
{
    close_client(server, (struct client *)c, reason);
}

static void close_on_error(struct server *server, struct client *c, int errnum)
{
    char reason[128];
    snprintf(reason, sizeof reason, "%s (%s)", errno_name(errnum), strerror(errnum));
    close_client(server, c, reason);
}

/* -- receiving and sending ----------------------------------------------------- */

/* ONE multishot recv while c may send more and its share of the pool
 * allows: a completion, naming a pool buffer, each time data arrives.  Past
 * its share, cancel it (its bytes wait in the kernel); once c drains, arm a
 * new one (lesson, "Backpressure in a completion world"). */
static void update_receiving(struct server *server, struct client *c)
{
    bool share_left = c->held < CLIENT_BUFFERS
                      && (c->held == 0 || BUFFER_COUNT - server->pool.held > RESERVE_BUFFERS);
    bool wanted = !c->closing && !c->input_ended && share_left;
    struct io_uring_sqe *sqe;
    if (wanted && !c->receiving && !c->waiting) {
        sqe = new_request(server, REQUEST_RECV, (uintptr_t)c);
        io_uring_prep_recv_multishot(sqe, c->record.fd, NULL, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = BUFFER_GROUP;
        c->receiving = true;
    } else if (!wanted && c->receiving && !c->cancelling && !c->closing) {
        sqe = new_request(server, REQUEST_IGNORED, 0);
        io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)c | REQUEST_RECV, 0);
        c->cancelling = true;
    }
}

/* One send at a time per client, so its bytes leave in order: the oldest
 * buffer it is owed, straight from the pool (no copy). */
static void send_next(struct server *server, struct client *c)
{
    if (c->sending || c->held == 0 || c->closing)
        return;
    uint16_t bid = c->first_buffer;
    struct io_uring_sqe *sqe = new_request(server, REQUEST_SEND, (uintptr_t)c);
    /* MSG_NOSIGNAL: a vanished client gives EPIPE, not a fatal SIGPIPE. */
    io_uring_prep_send(sqe, c->record.fd,
                       server->pool.memory + (size_t)bid * BUFFER_SIZE + c->first_sent,
                       (size_t)(server->pool.length[bid] - c->first_sent), MSG_NOSIGNAL);
    c->sending = true;
}

/* A buffer filled for c joins the end of what c is owed. */
static void owe(struct server *server, struct client *c, uint16_t bid, unsigned length)
{
    server->pool.length[bid] = (uint16_t)length;
    if (c->held == 0) {
        c->first_buffer = bid;
        c->first_sent = 0;
    } else {
        server->pool.next[c->last_buffer] = bid;
    }
    c->last_buffer = bid;
    c->held++;
}

static void on_recv(struct server *server, struct client *c, const struct io_uring_cqe *cqe)
{
    /* idea multishot_receive */
    if (!(cqe->flags & IORING_CQE_F_MORE))
        c->receiving = c->cancelling = false;   /* this request is over */
    /* end of idea multishot_receive */
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        server->pool.held++;
        if (cqe->res > 0 && !c->closing)
            owe(server, c, bid, (unsigned)cqe->res);
        else
            give_back(&server->pool, bid);
    }
    if (c->closing) {
        finish_if_done(server, c);
        return;
    }
    if (cqe->res > 0) {
        clients_touch(&server->clients, &c->record);
        send_next(server, c);
    } else if (cqe->res == 0) {
        c->input_ended = true;       /* closed, or half-closed: we may still owe it */
    } else if (cqe->res == -ENOBUFS) {
        start_waiting(server, c);    /* the pool is empty: server_rearm() re-arms it */
    } else if (cqe->res != -ECANCELED) {   /* ECANCELED: ours, for backpressure */
        close_on_error(server, c, -cqe->res);
        return;
    }
    if (c->input_ended && c->held == 0)
        close_client(server, c, "client closed");
    else
        update_receiving(server, c);
}

static void on_send(struct server *server, struct client *c, int result)
{
    c->sending = false;
    if (c->closing) {
        finish_if_done(server, c);
        return;
    }
    if (result < 0) {
        close_on_error(server, c, -result);
        return;
    }
    /* The kernel may send less than asked: the rest goes in the next send. */
    unsigned sent = (unsigned)result;
    c->first_sent = (uint16_t)(c->first_sent + sent);
    /* idea buffer_pool */
    if (c->first_sent == server->pool.length[c->first_buffer]) {
        uint16_t done = c->first_buffer;
        c->first_buffer = server->pool.next[done];
        c->first_sent = 0;
        c->held--;
        give_back(&server->pool, done);   /* its bytes are sent: it may be filled again */
    }
    /* end of idea buffer_pool */
    if (sent > 0)
        clients_touch(&server->clients, &c->record);
    if (c->input_ended && c->held == 0) {
        close_client(server, c, "client closed");
        return;
    }
    send_next(server, c);
    update_receiving(server, c);
}

/* -- accepting ------------------------------------------------------------------ */

/* ONE request for every client to come, until it ends (no IORING_CQE_F_MORE).
 * No address buffer: one would serve every accept (man
 * io_uring_prep_multishot_accept); clients_admit() asks getpeername(). */
static void arm_accept(struct server *server, int index)
{
    struct io_uring_sqe *sqe = new_request(server, REQUEST_ACCEPT,
                                           (uintptr_t)index << REQUEST_BITS);
    io_uring_prep_multishot_accept(sqe, server->listeners->list[index].fd, NULL, NULL,
                                   SOCK_NONBLOCK | SOCK_CLOEXEC);
    server->accept_armed[index] = true;
}

static void on_accept(struct server *server, int index, const struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE))
        server->accept_armed[index] = false;     /* server_rearm() arms another */
    if (cqe->res >= 0) {
        /* Admitted and logged, refused in one line, or closed if stopping. */
        struct client *c = (struct client *)clients_admit(&server->clients, cqe->res,
                                                           sizeof *c);
        if (c != NULL)
            update_receiving(server, c);
    } else if (cqe->res != -ECANCELED) {
        /* EMFILE: the spare descriptor makes room; ENOBUFS: a pause. */
        clients_accept_failed(&server->clients, -cqe->res);
    }
}

/* -- the server ------------------------------------------------------------------ */

int server_start(struct server *server, const char *program, const struct server_args *args,
                 struct listeners *listeners, char *err, size_t err_size)
{
    memset(server, 0, sizeof *server);
    server->program = program;
    server->listeners = listeners;
    log_open(&server->log);       /* first, as in steps 7-8: its descriptor before the ring's */
    for (int l = 0; l < listeners->count; l++) {
        int size = CLIENT_RECEIVE_BUFFER;
        if (setsockopt(listeners->list[l].fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size) == -1) {
            format_call_error(err, err_size, "setsockopt SO_RCVBUF", NULL, 0, errno);
            return -1;
        }
    }
    if (ring_start(&server->ring, err, err_size) == -1)
        return -1;
    if (pool_start(&server->pool, &server->ring, err, err_size) == -1) {
        io_uring_queue_exit(&server->ring);
        return -1;
    }
    /* The stop pipe in the ring: a signal between the loop's test and the
     * wait still ends the wait, as in step 7's poll(). */
    struct io_uring_sqe *sqe = new_request(server, REQUEST_STOP, 0);
    io_uring_prep_poll_add(sqe, stop_pipe_fd(), POLLIN);
    /* Opens the spare; close_record() is how clients.c closes a client. */
    if (clients_init(&server->clients, args, &server->log, close_record, server) == -1) {
        format_call_error(err, err_size, "calloc (counts per address)", NULL, 0, errno);
        server_free(server);
        return -1;
    }
    for (int l = 0; l < listeners->count; l++)
        arm_accept(server, l);
    return 0;
}

void server_handle(struct server *server, const struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE))
        server->in_flight--;       /* the request's last completion */
    uint64_t data = io_uring_cqe_get_data64(cqe);
    uintptr_t whom = (uintptr_t)(data & ~REQUEST_MASK);
    switch ((enum request)(data & REQUEST_MASK)) {
    case REQUEST_IGNORED:          /* a cancel request's own completion */
        return;
    case REQUEST_STOP:             /* readable: a stop signal came; the loop test ends it */
        if (cqe->res < 0 && cqe->res != -ECANCELED)
            print_call_error(server->program, "io_uring poll stop pipe", -cqe->res);
        return;
    case REQUEST_ACCEPT:
        on_accept(server, (int)(whom >> REQUEST_BITS), cqe);
        return;
    case REQUEST_RECV:
        on_recv(server, (struct client *)whom, cqe);   /* NOLINT(performance-no-int-to-ptr): the kind rides in the pointer's low bits */
        return;
    case REQUEST_SEND:
        on_send(server, (struct client *)whom, cqe->res);   /* NOLINT(performance-no-int-to-ptr): the kind rides in the pointer's low bits */
        return;
    }
}

/* The pool is empty and clients wait: close the least recently active
 * client holding buffers, if it has moved nothing for EVICT_AFTER_SECONDS.
 * A walk from the front of the activity list (clients holding nothing are
 * passed over), only while someone waits: cheap until the pool is dry. */
static void evict_for_waiting(struct server *server)
{
    double now = monotonic_seconds();
    for (struct client_record *r = server->clients.oldest; r != NULL; r = r->newer) {
        if (now - r->last_active < EVICT_AFTER_SECONDS)
            return;                        /* the rest moved bytes more recently */
        struct client *c = (struct client *)r;
        if (c->held > 0) {
            close_client(server, c, "holds buffers and reads nothing (pool empty)");
            return;
        }
    }
}

double server_wait(struct server *server)
{
    double wait = clients_expire(&server->clients);
    /* While clients wait for buffers, look again soon: evict_for_waiting(). */
    double soon = EVICT_AFTER_SECONDS / 4;
    if (server->first_waiting != NULL && (wait < 0 || wait > soon))
        wait = soon;
    return wait;
}

void server_rearm(struct server *server)
{
    if (clients_accepting(&server->clients))
        for (int l = 0; l < server->listeners->count; l++)
            if (!server->accept_armed[l])
                arm_accept(server, l);
    /* One waiting client per free buffer: more would only find it empty.
     * Its wait was the server's doing, not its own: its idle clock restarts. */
    for (int free_buffers = BUFFER_COUNT - server->pool.held;
         free_buffers > 0 && server->first_waiting != NULL; free_buffers--) {
        struct client *c = server->first_waiting;
        stop_waiting(server, c);
        clients_touch(&server->clients, &c->record);
        update_receiving(server, c);
    }
    if (server->first_waiting != NULL)
        evict_for_waiting(server);
}

void server_close_all(struct server *server, const char *reason)
{
    clients_close_all(&server->clients, reason);   /* and admits no more */
    /* And the accepts and the stop pipe's poll. */
    struct io_uring_sqe *sqe = new_request(server, REQUEST_IGNORED, 0);
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
}

void server_free(struct server *server)
{
    int failed = io_uring_unregister_buf_ring(&server->ring, BUFFER_GROUP);
    if (failed < 0)
        print_call_error(server->program, "io_uring_unregister_buf_ring", -failed);
    free(server->pool.ring);      /* and the buffers after it */
    clients_free(&server->clients);
    io_uring_queue_exit(&server->ring);
    log_close(&server->log);
}
