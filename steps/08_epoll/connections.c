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

/* How long accepting pauses when accept() fails and the spare cannot help. */
#define ACCEPT_PAUSE_SECONDS 0.5

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

/* The spare descriptor: any file will do; /dev/null always exists. */
static int open_spare(void)
{
    return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

int connections_init(struct connection_table *table, const struct server_args *args,
                     struct server_log *log)
{
    memset(table, 0, sizeof *table);
    /* calloc() of a large table maps zeroed pages that cost memory only
     * once touched, and a slot is touched only when a client first needs it:
     * room for 10,000 clients costs nothing until they come. */
    table->slots = calloc((size_t)args->max_clients, sizeof table->slots[0]);
    table->input = malloc(OUTPUT_LIMIT);
    if (table->slots == NULL || table->input == NULL
        || per_address_init(&table->per_address, args->max_clients) == -1) {
        free(table->slots);
        free(table->input);
        per_address_free(&table->per_address);
        return -1;
    }
    table->max_clients = args->max_clients;
    table->max_per_address = args->max_per_address;   /* 0: no limit of its own */
    table->log = log;
    table->refusals = REFUSALS_LOG_LIMIT;
    table->quiet = args->quiet;
    table->idle_timeout = args->idle_timeout;
    table->spare_fd = open_spare();   /* -1 is survivable: we pause instead */
    return 0;
}

void connections_close_all(struct connection_table *table, const char *reason)
{
    while (table->oldest != NULL)
        connection_close(table, table->oldest, reason);
}

void connections_free(struct connection_table *table)
{
    connections_close_all(table, "server stopping");
    if (table->spare_fd != -1)
        close(table->spare_fd);
    free(table->slots);
    free(table->input);
    per_address_free(&table->per_address);
    table->slots = NULL;
    table->input = NULL;
}

bool connections_accepting(const struct connection_table *table)
{
    return monotonic_seconds() >= table->accept_paused_until;
}

/* The list of clients, least recently active first.  Taking a client out
 * and putting it back at the newest end are a few pointer moves, whatever
 * the number of clients: the list stays ordered by last_active for free. */
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

/* c just moved a byte: it is now the most recently active client. */
static void mark_active(struct connection_table *table, struct connection *c)
{
    /* idea idle_timeout:activity */
    c->last_active = monotonic_seconds();
    if (table->newest != c) {
        unlink_client(table, c);
        append_client(table, c);
    }
    /* end of idea idle_timeout:activity */
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
    if (table->spare_fd == -1)
        table->spare_fd = open_spare();   /* a descriptor was just freed */
    per_address_add(&table->per_address, &c->address, -1);
    table->output_held -= output_held(c);
    free(c->output);
    unlink_client(table, c);
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->newer = table->free_slots;   /* the next accept takes it back */
    table->free_slots = c;
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

/* Tells a client we will not serve it, in one line, and hangs up.  A fresh
 * socket's send buffer is empty, so this short write does not wait; its
 * socket is non-blocking, and MSG_DONTWAIT says so again.  During a
 * flood, a line per refusal would be most of the work, and the log would
 * drown: one gets a line of its own a second (REFUSALS_LOG_LIMIT), the others
 * are counted. */
static void refuse(struct connection_table *table, int fd, const char *peer,
                   const char *line, const char *why)
{
    if (send(fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT) == -1) {
        /* The client is gone already; it hears nothing either way. */
    }
    close(fd);
    if (table->quiet || table->log == NULL
        || !log_limit_allows(table->log, &table->refusals, monotonic_seconds()))
        return;
    char detail[160];
    snprintf(detail, sizeof detail, ": %s", why);
    log_event(table, "refused", peer, detail);
}

/* accept() failed with EMFILE or ENFILE: no descriptor for the client, so
 * it stays queued and the listening socket stays readable -- a busy loop.
 * Give up the spare to make room, take the client off the queue, tell it,
 * and take the spare back.  Linux says EMFILE before it looks at the queue,
 * so there may have been nobody waiting at all.  Returns 1 if a client was
 * refused, 0 if nobody was waiting, -1 if the spare could not help. */
static int refuse_with_spare(struct connection_table *table, int listen_fd,
                             int errnum)
{
    /* idea spare_descriptor */
    if (table->spare_fd == -1)
        return -1;
    close(table->spare_fd);
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof peer;
    int fd = accept_client(listen_fd, &peer, &peer_len);
    int outcome = fd != -1 ? 1 : (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    if (fd != -1) {
        char peer_text[ADDRESS_TEXT_SIZE];
        format_address((struct sockaddr *)&peer, peer_len, peer_text, sizeof peer_text);
        char why[96];
        snprintf(why, sizeof why, "%s (out of descriptors)", errno_name(errnum));
        refuse(table, fd, peer_text, "busy: server out of descriptors, try later\n", why);
    }
    table->spare_fd = open_spare();
    return outcome;
    /* end of idea spare_descriptor */
}

/* accept() failed in a way that is not about one client, and the spare
 * could not help: out of descriptors, or memory (ENOBUFS, ENOMEM).  Let the
 * system breathe: stop watching the listening socket for a moment. */
static void accept_failed(struct connection_table *table, int errnum)
{
    fprintf(stderr, "accept: %s (%s); pausing accept for %g s\n",
            errno_name(errnum), strerror(errnum), ACCEPT_PAUSE_SECONDS);
    table->accept_paused_until = monotonic_seconds() + ACCEPT_PAUSE_SECONDS;
}

/* A slot for a new client: the last one given back, else one never used;
 * NULL when all max_clients are taken.  No search: a full table says so as
 * fast as an empty one. */
static struct connection *free_slot(struct connection_table *table)
{
    /* idea max_clients */
    struct connection *c = table->free_slots;
    if (c != NULL) {
        table->free_slots = c->newer;
        c->newer = NULL;
        return c;
    }
    if (table->slots_used < table->max_clients)
        return &table->slots[table->slots_used++];
    return NULL;
    /* end of idea max_clients */
}

/* A new client in a slot: its socket, who it is, the "accepted" line; or
 * the one over max_clients refused.  NULL if refused. */
static struct connection *add_client(struct connection_table *table, int fd,
                                     const struct sockaddr_storage *peer, socklen_t peer_len)
{
    char peer_text[ADDRESS_TEXT_SIZE];
    format_address((const struct sockaddr *)peer, peer_len, peer_text, sizeof peer_text);
    /* One address (one computer, or one NAT) may hold max_per_address slots:
     * clients that hold theirs for ever, a byte a minute, from one address,
     * cannot lock out every other. */
    struct address_key address = address_key_of((const struct sockaddr *)peer);
    if (table->max_per_address > 0
        && per_address_count(&table->per_address, &address) >= table->max_per_address) {
        char line[96], why[80];
        snprintf(line, sizeof line, "busy: too many connections from your address (max %d), "
                 "try later\n", table->max_per_address);
        snprintf(why, sizeof why, "too many from that address (max %d)", table->max_per_address);
        refuse(table, fd, peer_text, line, why);
        return NULL;
    }
    struct connection *c = free_slot(table);
    if (c == NULL) {
        char line[80], why[64];
        snprintf(line, sizeof line, "busy: too many clients (max %d), try later\n",
                 table->max_clients);
        snprintf(why, sizeof why, "too many clients (max %d)", table->max_clients);
        refuse(table, fd, peer_text, line, why);
        return NULL;
    }
    c->fd = fd;
    memcpy(c->peer, peer_text, sizeof c->peer);
    c->address = address;
    per_address_add(&table->per_address, &address, +1);
    append_client(table, c);
    c->last_active = monotonic_seconds();
    table->count++;
    char detail[32];
    snprintf(detail, sizeof detail, " (fd %d)", fd);
    log_event(table, "accepted", c->peer, detail);
    return c;
}

struct connection *connection_accept(struct connection_table *table, int listen_fd)
{
    while (connections_accepting(table) && table->accepts_this_turn < ACCEPTS_PER_TURN) {
        table->accepts_this_turn++;
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof peer;
        int fd = accept_client(listen_fd, &peer, &peer_len);
        if (fd != -1) {
            struct connection *c = add_client(table, fd, &peer, peer_len);
            if (c != NULL)
                return c;
            continue;          /* refused: maybe more are waiting */
        }
        int errnum = errno;
        if (errnum == EAGAIN || errnum == EWOULDBLOCK || errnum == EINTR)
            return NULL;       /* nobody waiting, or a signal to look at */
        if (accept_error_is_temporary(errnum))
            continue;          /* about that client only: try the next one */
        if (errnum == EMFILE || errnum == ENFILE) {
            if (table->spare_fd == -1)
                table->spare_fd = open_spare();   /* its last reopening failed */
            int refused = refuse_with_spare(table, listen_fd, errnum);
            if (refused == 1)
                continue;      /* maybe more are waiting */
            if (refused == 0)
                return NULL;   /* nobody was */
        }
        accept_failed(table, errnum);
        return NULL;
    }
    return NULL;
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
    if (c->fd == -1)
        return -1;             /* closed earlier in this batch of events */
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
    size_t owed_before = output_owed(c);
    /* A client still owed bytes is not read (connection_wants() says so;
     * an error event asks for a read anyway): its next bytes would have
     * nowhere to go but more memory.  They wait in the kernel. */
    if ((ready & CONNECTION_READ) && output_owed(c) == 0 && read_input(table, c) == -1)
        return -1;
    size_t owed_after_reading = output_owed(c);
    /* Try to send even without WRITE: the socket usually has room for what
     * we just read, which saves a trip round the loop. */
    if (output_owed(c) > 0 && write_output(table, c) == -1)
        return -1;
    /* Bytes came in or went out: c is active (the idle timeout's clock). */
    if (owed_after_reading != owed_before || output_owed(c) != owed_after_reading)
        mark_active(table, c);
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
    double now = monotonic_seconds();
    double next_due = 0;   /* 0: nothing due */

    table->accepts_this_turn = 0;
    if (table->accept_paused_until > now)
        next_due = table->accept_paused_until;
    if (!table->quiet && table->log != NULL) {
        double refusals_due = log_limit_expire(table->log, &table->refusals, now);
        if (refusals_due > 0 && (next_due == 0 || refusals_due < next_due))
            next_due = refusals_due;
    }

    if (table->idle_timeout > 0) {
        /* idea idle_timeout */
        /* The list is ordered by last activity: the idle clients are at its
         * front, and the first one still active says when to look again. */
        while (table->oldest != NULL
               && table->oldest->last_active + table->idle_timeout <= now) {
            char reason[64];
            snprintf(reason, sizeof reason, "idle for %g s", table->idle_timeout);
            connection_close(table, table->oldest, reason);
        }
        if (table->oldest != NULL) {
            double deadline = table->oldest->last_active + table->idle_timeout;
            if (next_due == 0 || deadline < next_due)
                next_due = deadline;
        }
        /* end of idea idle_timeout */
    }

    if (table->log != NULL) {
        log_flush(table->log);
        if (log_pending(table->log)) {
            /* Lines wait for stdout: look again soon (a poller told to
             * watch stdout would do as well, in every step's own way). */
            double retry = now + LOG_RETRY_MS / 1000.0;
            if (next_due == 0 || retry < next_due)
                next_due = retry;
        }
    }

    if (next_due == 0)
        return -1;
    double wait_ms = (next_due - now) * 1000.0 + 1;   /* +1: never wake early */
    return wait_ms < 0 ? 0 : wait_ms > 60000 ? 60000 : (int)wait_ms;
}
