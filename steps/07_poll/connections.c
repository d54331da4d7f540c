/* connections.c -- see connections.h. */

/* glibc declares accept4() only for _GNU_SOURCE (it is in POSIX.1-2024,
 * which glibc's feature macros do not name yet). */
#define _GNU_SOURCE   /* NOLINT(bugprone-reserved-identifier): glibc's name for it */

#include "connections.h"

#include "accept_errors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags == -1)
        return -1;
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

static void log_event(const struct connection_table *table, const char *verb,
                      const char *peer, const char *detail)
{
    if (table->quiet || table->log == NULL)
        return;
    log_line(table->log, "%s %s%s", verb, peer, detail);
}

int connections_init(struct connection_table *table, bool quiet, struct server_log *log)
{
    memset(table, 0, sizeof *table);
    table->input = malloc(OUTPUT_LIMIT);
    if (table->input == NULL)
        return -1;
    table->log = log;
    table->quiet = quiet;
    return 0;
}

void connections_close_all(struct connection_table *table, const char *reason)
{
    struct connection *c = table->oldest;
    while (c != NULL) {
        struct connection *next = c->newer;   /* c is freed by connection_close() */
        connection_close(table, c, reason);
        c = next;
    }
}

void connections_free(struct connection_table *table)
{
    connections_close_all(table, "server stopping");
    free(table->input);
    table->input = NULL;
}

/* The list of clients: a few pointer moves, however many clients there are. */
static void unlink_client(struct connection_table *table, struct connection *c)
{
    if (c->older != NULL)
        c->older->newer = c->newer;
    else
        table->oldest = c->newer;
    if (c->newer != NULL)
        c->newer->older = c->older;
    else
        table->newest = c->older;
    c->older = c->newer = NULL;
}

static void append_client(struct connection_table *table, struct connection *c)
{
    c->older = table->newest;
    c->newer = NULL;
    if (table->newest != NULL)
        table->newest->newer = c;
    else
        table->oldest = c;
    table->newest = c;
}

/* The bytes c's output buffer holds.  It is made the size of what was owed,
 * and only freed, never filled again: c is not read while owed. */
static size_t output_held(const struct connection *c)
{
    return c->output != NULL ? c->output_end : 0;
}

void connection_close(struct connection_table *table, struct connection *c,
                      const char *reason)
{
    char detail[160];
    snprintf(detail, sizeof detail, ": %s", reason);
    log_event(table, "closed", c->peer, detail);
    close(c->fd);
    table->output_held -= output_held(c);
    free(c->output);
    unlink_client(table, c);
    free(c);
    table->count--;
}

/* Closes c with "ENAME (what it means)" as the reason. */
static void close_on_error(struct connection_table *table, struct connection *c,
                           int errnum)
{
    char reason[128];
    snprintf(reason, sizeof reason, "%s (%s)", errno_name(errnum), strerror(errnum));
    connection_close(table, c, reason);
}

/* The next waiting client's socket, non-blocking, or -1 with errno.
 * accept4() sets O_NONBLOCK (and close-on-exec) in the same call; it is
 * Linux's, the BSDs', and in POSIX.1-2024.  Where it is missing (macOS),
 * accept() and then fcntl(). */
static int accept_client(int listen_fd, struct sockaddr_storage *peer, socklen_t *peer_len)
{
    /* idea nonblocking_clients */
#ifdef SOCK_NONBLOCK
    return accept4(listen_fd, (struct sockaddr *)peer, peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
    int fd = accept(listen_fd, (struct sockaddr *)peer, peer_len);
    if (fd != -1 && (set_nonblocking(fd) == -1 || fcntl(fd, F_SETFD, FD_CLOEXEC) == -1)) {
        /* A blocking client socket could stall every other client. */
        fprintf(stderr, "fcntl on an accepted socket: %s\n", strerror(errno));
        close(fd);
        errno = ECONNABORTED;   /* about this client only: skip it */
        return -1;
    }
    return fd;
#endif
    /* end of idea nonblocking_clients */
}

/* accept() failed in a way that is not about one client: out of
 * descriptors (EMFILE, ENFILE) or memory (ENOBUFS, ENOMEM).  The client
 * stays queued; the next turn tries again.  Said once, not every turn. */
static void accept_failed(struct connection_table *table, int errnum)
{
    if (table->accept_failing != errnum)
        fprintf(stderr, "accept: %s (%s); trying again next turn\n",
                errno_name(errnum), strerror(errnum));
    table->accept_failing = errnum;
}

/* A new client on the list: its socket, who it is, the "accepted" line. */
static struct connection *add_client(struct connection_table *table, int fd,
                                     const struct sockaddr_storage *peer, socklen_t peer_len)
{
    struct connection *c = calloc(1, sizeof *c);
    if (c == NULL) {
        close(fd);           /* it hears end-of-file: better than nothing at all */
        accept_failed(table, ENOMEM);
        return NULL;
    }
    c->fd = fd;
    format_address((const struct sockaddr *)peer, peer_len, c->peer, sizeof c->peer);
    append_client(table, c);
    table->count++;
    table->accept_failing = 0;
    char detail[32];
    snprintf(detail, sizeof detail, " (fd %d)", fd);
    log_event(table, "accepted", c->peer, detail);
    return c;
}

struct connection *connection_accept(struct connection_table *table, int listen_fd)
{
    /* idea accept_until_eagain */
    while (table->accepts_this_turn < ACCEPTS_PER_TURN) {
        table->accepts_this_turn++;
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof peer;
        int fd = accept_client(listen_fd, &peer, &peer_len);
        if (fd != -1)
            return add_client(table, fd, &peer, peer_len);
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return NULL;       /* nobody waiting, or a signal to look at */
        if (!accept_error_is_temporary(errno)) {
            accept_failed(table, errno);
            return NULL;
        }
        /* about that client only: try the next one */
    }
    return NULL;
    /* end of idea accept_until_eagain */
}

static size_t output_owed(const struct connection *c)
{
    return c->output_end - c->output_start;
}

unsigned connection_wants(const struct connection *c)
{
    /* idea backpressure */
    unsigned wants = 0;
    if (!c->input_ended && output_owed(c) == 0)
        wants |= CONNECTION_READ;
    if (output_owed(c) > 0)
        wants |= CONNECTION_WRITE;
    return wants;
    /* end of idea backpressure */
}

/* Where c's owed bytes are: its own buffer once it has one, else the
 * table's input buffer, which holds them only during connection_handle(). */
static char *owed_buffer(const struct connection_table *table, const struct connection *c)
{
    return c->output != NULL ? c->output : table->input;
}

/* What one turn may read from a client: OUTPUT_LIMIT, or OUTPUT_FLOOR while
 * the clients' output buffers hold OUTPUT_TOTAL bytes together. */
static size_t read_limit(const struct connection_table *table)
{
    return table->output_held < OUTPUT_TOTAL ? OUTPUT_LIMIT : OUTPUT_FLOOR;
}

/* Reads what has arrived into the table's input buffer, read_limit() bytes
 * at most, until the socket has no more.  Only a client owed nothing is read
 * (connection_wants()), so the bytes start at the front: output_start and
 * output_end are 0.  Returns -1 if it closed c. */
static int read_input(struct connection_table *table, struct connection *c)
{
    char *buffer = table->input;
    size_t limit = read_limit(table);
    /* idea read */
    while (!c->input_ended && output_owed(c) < limit) {
        size_t room = limit - c->output_end;
        ssize_t received = read(c->fd, buffer + c->output_end, room);
        if (received > 0) {
            c->output_end += (size_t)received;
            if ((size_t)received < room)
                return 0;   /* it gave all it had: skip the read that says EAGAIN */
        } else if (received == 0) {
            c->input_ended = true;     /* closed, or half-closed: we still owe it */
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        } else if (errno != EINTR) {
            close_on_error(table, c, errno);
            return -1;
        }
    }
    return 0;
    /* end of idea read */
}

/* Sends what the socket takes of the owed bytes.  Returns -1 if it closed c. */
static int write_output(struct connection_table *table, struct connection *c)
{
    const char *buffer = owed_buffer(table, c);
    /* idea send */
    while (output_owed(c) > 0) {
        /* MSG_NOSIGNAL: a vanished client gives EPIPE, not a fatal SIGPIPE
         * (a second guard: every step ignores SIGPIPE too, common/signals.c). */
        ssize_t sent = send(c->fd, buffer + c->output_start, output_owed(c),
                            MSG_NOSIGNAL);
        if (sent >= 0) {
            c->output_start += (size_t)sent;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        } else if (errno != EINTR) {
            close_on_error(table, c, errno);
            return -1;
        }
    }
    return 0;
    /* end of idea send */
}

/* After reading and sending: what the socket would not take must outlive
 * the table's input buffer, which the next client reads into, so it moves
 * into an output buffer of c's own, just its size (c is not read again
 * until it is sent); a client owed nothing keeps no buffer.
 * Returns -1 if it closed c (out of memory). */
static int keep_owed(struct connection_table *table, struct connection *c)
{
    /* idea send:keep */
    size_t owed = output_owed(c);
    if (owed == 0) {
        free(c->output);
        c->output = NULL;
        c->output_start = c->output_end = 0;
    } else if (c->output == NULL) {
        c->output = malloc(owed);
        if (c->output == NULL) {
            close_on_error(table, c, ENOMEM);
            return -1;
        }
        memcpy(c->output, table->input + c->output_start, owed);
        c->output_start = 0;
        c->output_end = owed;
    }
    return 0;
    /* end of idea send:keep */
}

int connection_handle(struct connection_table *table, struct connection *c, unsigned ready)
{
    if (ready & CONNECTION_ERROR) {
        /* Hang-up or error: a pending error (a reset) says why; if there is
         * none, reading and writing will find out what happened. */
        int error = 0;
        socklen_t error_len = sizeof error;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &error_len) == 0
            && error != 0) {
            close_on_error(table, c, error);
            return -1;
        }
        ready |= CONNECTION_READ | CONNECTION_WRITE;
    }
    /* A client still owed bytes is not read (connection_wants() says so;
     * an error event asks for a read anyway): its next bytes would have
     * nowhere to go but more memory.  They wait in the kernel. */
    if ((ready & CONNECTION_READ) && output_owed(c) == 0 && read_input(table, c) == -1)
        return -1;
    /* Try to send even without WRITE: the socket usually has room for what
     * we just read, which saves a trip round the loop. */
    if (output_owed(c) > 0 && write_output(table, c) == -1)
        return -1;
    size_t held_before = output_held(c);
    if (keep_owed(table, c) == -1)
        return -1;
    table->output_held = table->output_held - held_before + output_held(c);
    /* idea half_close */
    if (c->input_ended && output_owed(c) == 0) {
        connection_close(table, c, "client closed");
        return -1;
    }
    return 0;
    /* end of idea half_close */
}

int connections_start_turn(struct connection_table *table)
{
    table->accepts_this_turn = 0;
    if (table->log == NULL)
        return -1;
    log_flush(table->log);
    /* Lines wait for stdout: look again soon (a poller told to watch stdout
     * would do as well, in every step's own way). */
    return log_pending(table->log) ? LOG_RETRY_MS : -1;
}
