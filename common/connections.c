/* connections.c -- see connections.h. */
#include "connections.h"

#include "accept_errors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* How long accepting pauses when accept() fails and the spare cannot help. */
#define ACCEPT_PAUSE_SECONDS 0.5

double monotonic_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

int set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags == -1)
        return -1;
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

static void log_line(const struct connection_table *table, const char *verb,
                     const char *peer, const char *detail)
{
    if (table->quiet)
        return;
    printf("%s %s%s\n", verb, peer, detail);
    fflush(stdout);
}

/* The spare descriptor: any file will do; /dev/null always exists. */
static int open_spare(void)
{
    return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

int connections_init(struct connection_table *table, const struct server_args *args)
{
    memset(table, 0, sizeof *table);
    table->slots = calloc((size_t)args->max_clients, sizeof table->slots[0]);
    if (table->slots == NULL)
        return -1;
    for (int i = 0; i < args->max_clients; i++)
        table->slots[i].fd = -1;
    table->max_clients = args->max_clients;
    table->quiet = args->quiet;
    table->idle_timeout = args->idle_timeout;
    table->spare_fd = open_spare();   /* -1 is survivable: we pause instead */
    return 0;
}

void connections_close_all(struct connection_table *table, const char *reason)
{
    for (int i = 0; i < table->max_clients && table->count > 0; i++)
        if (table->slots[i].fd != -1)
            connection_close(table, &table->slots[i], reason);
}

void connections_free(struct connection_table *table)
{
    connections_close_all(table, "server stopping");
    if (table->spare_fd != -1)
        close(table->spare_fd);
    free(table->slots);
    table->slots = NULL;
}

bool connections_accepting(const struct connection_table *table)
{
    return monotonic_seconds() >= table->accept_paused_until;
}

void connection_close(struct connection_table *table, struct connection *c,
                      const char *reason)
{
    char detail[160];
    snprintf(detail, sizeof detail, ": %s", reason);
    log_line(table, "closed", c->peer, detail);
    close(c->fd);
    free(c->output);
    memset(c, 0, sizeof *c);
    c->fd = -1;
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

/* Tells a client we will not serve it, in one line, and hangs up.  A fresh
 * socket's send buffer is empty, so this short write cannot block. */
static void refuse(const struct connection_table *table, int fd, const char *peer,
                   const char *line, const char *why)
{
    if (send(fd, line, strlen(line), MSG_NOSIGNAL) == -1) {
        /* The client is gone already; it hears nothing either way. */
    }
    close(fd);
    char detail[160];
    snprintf(detail, sizeof detail, ": %s", why);
    log_line(table, "refused", peer, detail);
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
    if (table->spare_fd == -1)
        return -1;
    close(table->spare_fd);
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof peer;
    int fd = accept(listen_fd, (struct sockaddr *)&peer, &peer_len);
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
}

static struct connection *free_slot(struct connection_table *table)
{
    for (int i = 0; i < table->max_clients; i++)
        if (table->slots[i].fd == -1)
            return &table->slots[i];
    return NULL;
}

struct connection *connection_accept(struct connection_table *table, int listen_fd)
{
    while (connections_accepting(table)) {
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof peer;
        int fd = accept(listen_fd, (struct sockaddr *)&peer, &peer_len);
        if (fd == -1) {
            int errnum = errno;
            if (errnum == EAGAIN || errnum == EWOULDBLOCK || errnum == EINTR)
                return NULL;       /* nobody waiting, or a signal to look at */
            if (accept_error_is_temporary(errnum))
                continue;          /* about that client only; try the next one */
            if (errnum == EMFILE || errnum == ENFILE) {
                int refused = refuse_with_spare(table, listen_fd, errnum);
                if (refused == 1)
                    continue;      /* maybe more are waiting */
                if (refused == 0)
                    return NULL;   /* nobody was */
            }
            /* ENOBUFS, ENOMEM, or no spare: let the system breathe. */
            fprintf(stderr, "accept: %s (%s); pausing accept for %g s\n",
                    errno_name(errnum), strerror(errnum), ACCEPT_PAUSE_SECONDS);
            table->accept_paused_until = monotonic_seconds() + ACCEPT_PAUSE_SECONDS;
            return NULL;
        }

        char peer_text[ADDRESS_TEXT_SIZE];
        format_address((struct sockaddr *)&peer, peer_len, peer_text, sizeof peer_text);
        struct connection *c = free_slot(table);
        if (c == NULL) {
            char line[80], why[64];
            snprintf(line, sizeof line, "busy: too many clients (max %d), try later\n",
                     table->max_clients);
            snprintf(why, sizeof why, "too many clients (max %d)", table->max_clients);
            refuse(table, fd, peer_text, line, why);
            continue;
        }
        if (set_nonblocking(fd) == -1) {
            /* A blocking client socket could stall every other client. */
            fprintf(stderr, "fcntl O_NONBLOCK %s: %s\n", peer_text, strerror(errno));
            close(fd);
            continue;
        }

        c->fd = fd;
        memcpy(c->peer, peer_text, sizeof c->peer);
        c->last_active = monotonic_seconds();
        table->count++;
        if (table->idle_timeout > 0 && table->next_idle_check == 0)
            table->next_idle_check = c->last_active + table->idle_timeout;
        char detail[32];
        snprintf(detail, sizeof detail, " (fd %d)", fd);
        log_line(table, "accepted", c->peer, detail);
        return c;
    }
    return NULL;
}

static size_t output_owed(const struct connection *c)
{
    return c->output_end - c->output_start;
}

unsigned connection_wants(const struct connection *c)
{
    unsigned wants = 0;
    if (!c->input_ended && output_owed(c) < OUTPUT_LIMIT)
        wants |= CONNECTION_READ;
    if (output_owed(c) > 0)
        wants |= CONNECTION_WRITE;
    return wants;
}

/* Reads what has arrived into the output buffer's free end, until the
 * socket is empty or the buffer full.  Returns -1 if it closed c. */
static int read_input(struct connection_table *table, struct connection *c)
{
    if (c->output == NULL && (c->output = malloc(OUTPUT_LIMIT)) == NULL) {
        close_on_error(table, c, ENOMEM);
        return -1;
    }
    while (!c->input_ended && output_owed(c) < OUTPUT_LIMIT) {
        if (c->output_end == OUTPUT_LIMIT) {
            /* Room only at the front: slide the owed bytes down. */
            memmove(c->output, c->output + c->output_start, output_owed(c));
            c->output_end -= c->output_start;
            c->output_start = 0;
        }
        ssize_t received = read(c->fd, c->output + c->output_end,
                                OUTPUT_LIMIT - c->output_end);
        if (received > 0) {
            c->output_end += (size_t)received;
            c->last_active = monotonic_seconds();
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
}

/* Sends what the socket takes of the owed bytes.  Returns -1 if it closed c. */
static int write_output(struct connection_table *table, struct connection *c)
{
    while (output_owed(c) > 0) {
        /* MSG_NOSIGNAL: a vanished client gives EPIPE, not a fatal SIGPIPE. */
        ssize_t sent = send(c->fd, c->output + c->output_start, output_owed(c),
                            MSG_NOSIGNAL);
        if (sent >= 0) {
            c->output_start += (size_t)sent;
            c->last_active = monotonic_seconds();
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        } else if (errno != EINTR) {
            close_on_error(table, c, errno);
            return -1;
        }
    }
    /* All sent: the next read starts at the front again.  The buffer stays
     * until the client leaves (only the pages it touched cost memory). */
    c->output_start = c->output_end = 0;
    return 0;
}

void connection_handle(struct connection_table *table, struct connection *c,
                       unsigned ready)
{
    if (c->fd == -1)
        return;
    if (ready & CONNECTION_ERROR) {
        /* Hang-up or error: a pending error (a reset) says why; if there is
         * none, reading and writing will find out what happened. */
        int error = 0;
        socklen_t error_len = sizeof error;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &error_len) == 0
            && error != 0) {
            close_on_error(table, c, error);
            return;
        }
        ready |= CONNECTION_READ | CONNECTION_WRITE;
    }
    if ((ready & CONNECTION_READ) && read_input(table, c) == -1)
        return;
    /* Try to send even without WRITE: the socket usually has room for what
     * we just read, which saves a trip round the loop. */
    if (output_owed(c) > 0 && write_output(table, c) == -1)
        return;
    if (c->input_ended && output_owed(c) == 0)
        connection_close(table, c, "client closed");
}

int connections_expire(struct connection_table *table)
{
    double now = monotonic_seconds();
    double next_due = 0;   /* 0: nothing due */

    if (table->accept_paused_until > now)
        next_due = table->accept_paused_until;

    if (table->idle_timeout > 0 && table->next_idle_check != 0
        && now >= table->next_idle_check) {
        /* Only when the earliest deadline may have come: activity only
         * pushes deadlines later, so the scan is rare. */
        table->next_idle_check = 0;
        for (int i = 0; i < table->max_clients; i++) {
            struct connection *c = &table->slots[i];
            if (c->fd == -1)
                continue;
            double deadline = c->last_active + table->idle_timeout;
            if (deadline <= now) {
                char reason[64];
                snprintf(reason, sizeof reason, "idle for %g s", table->idle_timeout);
                connection_close(table, c, reason);
            } else if (table->next_idle_check == 0 || deadline < table->next_idle_check) {
                table->next_idle_check = deadline;
            }
        }
    }
    if (table->idle_timeout > 0 && table->next_idle_check != 0
        && (next_due == 0 || table->next_idle_check < next_due))
        next_due = table->next_idle_check;

    if (next_due == 0)
        return -1;
    double wait_ms = (next_due - now) * 1000.0 + 1;   /* +1: never wake early */
    return wait_ms < 0 ? 0 : wait_ms > 60000 ? 60000 : (int)wait_ms;
}
