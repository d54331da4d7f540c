/* clients.c -- see clients.h. */
#include "clients.h"

#include "accept_errors.h"
#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void log_event(const struct clients *clients, const char *verb, const char *peer,
                      const char *detail)
{
    if (!clients->quiet && clients->log != NULL)
        log_line(clients->log, "%s %s%s", verb, peer, detail);
}

/* A close() whose failure is said in the log, "close: ENAME (what it means)":
 * never on stderr, whose write could block the serving loop (a terminal
 * stopped with Ctrl-S, a pipe nobody reads), as stdout's once did. */
static void close_reporting(const struct clients *clients, int fd)
{
    if (close(fd) == -1 && clients->log != NULL)
        log_line(clients->log, "close: %s (%s)", errno_name(errno), strerror(errno));
}

/* The spare descriptor: any file will do; /dev/null always exists. */
static int open_spare(void)
{
    return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

int clients_init(struct clients *clients, const struct server_args *args,
                 struct server_log *log,
                 void (*close_client)(struct client_record *c, const char *reason, void *context),
                 void *context)
{
    memset(clients, 0, sizeof *clients);
    clients->spare_fd = -1;
    if (per_address_init(&clients->per_address, args->max_clients) == -1)
        return -1;
    clients->max_per_address = args->max_per_address;   /* 0: no limit of its own */
    clients->close_client = close_client;
    clients->context = context;
    clients->max_clients = args->max_clients;
    clients->log = log;
    clients->quiet = args->quiet;
    clients->idle_timeout = args->idle_timeout;
    clients->refusals = REFUSALS_LOG_LIMIT;
    clients->spare_fd = open_spare();   /* -1 is survivable: we pause instead */
    return 0;
}

void clients_free(struct clients *clients)
{
    if (clients->spare_fd != -1)
        close_reporting(clients, clients->spare_fd);
    clients->spare_fd = -1;
    per_address_free(&clients->per_address);
}

static void unlink_record(struct clients *clients, struct client_record *c)
{
    *(c->older != NULL ? &c->older->newer : &clients->oldest) = c->newer;
    *(c->newer != NULL ? &c->newer->older : &clients->newest) = c->older;
    c->older = c->newer = NULL;
}

static void append_record(struct clients *clients, struct client_record *c)
{
    c->older = clients->newest;
    *(c->older != NULL ? &c->older->newer : &clients->oldest) = c;
    clients->newest = c;
}

void clients_touch(struct clients *clients, struct client_record *c)
{
    c->last_active = monotonic_seconds();
    if (clients->newest != c) {
        unlink_record(clients, c);
        append_record(clients, c);
    }
}

/* Tells a client we will not serve it, in one line, and hangs up.  A fresh
 * socket's send buffer is empty, so this short send does not wait; if the
 * socket is blocking (step 9's are), MSG_DONTWAIT makes sure.  During a
 * flood, a line per refusal would drown the log: one a second has its own
 * (REFUSALS_LOG_LIMIT), the others are counted. */
static void refuse(struct clients *clients, int fd, const char *peer, const char *line,
                   const char *why)
{
    if (send(fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT) == -1) {
        /* The client is gone already; it hears nothing either way. */
    }
    close_reporting(clients, fd);
    if (clients->quiet || clients->log == NULL
        || !log_limit_allows(clients->log, &clients->refusals, monotonic_seconds()))
        return;
    char detail[160];
    snprintf(detail, sizeof detail, ": %s", why);
    log_event(clients, "refused", peer, detail);
}

struct client_record *clients_admit(struct clients *clients, int fd, size_t record_size)
{
    if (clients->stopping) {
        close_reporting(clients, fd);
        return NULL;
    }
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof peer;
    if (getpeername(fd, (struct sockaddr *)&peer, &peer_len) == -1) {
        close_reporting(clients, fd);   /* it left already (ENOTCONN): nobody to tell */
        return NULL;
    }
    char peer_text[ADDRESS_TEXT_SIZE];
    format_address((struct sockaddr *)&peer, peer_len, peer_text, sizeof peer_text);

    if (clients->spare_given_up) {
        /* The spare was closed to make room for this client.  If it cannot
         * be opened again, the client took the last descriptor: refuse it,
         * which frees that descriptor for the spare. */
        clients->spare_given_up = false;
        clients->spare_fd = open_spare();
        if (clients->spare_fd == -1) {
            char why[96];
            snprintf(why, sizeof why, "%s (out of descriptors)", errno_name(errno));
            refuse(clients, fd, peer_text, "busy: server out of descriptors, try later\n", why);
            clients->spare_fd = open_spare();
            return NULL;
        }
    }
    /* One address may hold max_per_address slots (step 8's per_address.c). */
    struct address_key address = address_key_of((struct sockaddr *)&peer);
    if (clients->max_per_address > 0
        && per_address_count(&clients->per_address, &address) >= clients->max_per_address) {
        char line[96], why[80];
        snprintf(line, sizeof line, "busy: too many connections from your address (max %d), "
                 "try later\n", clients->max_per_address);
        snprintf(why, sizeof why, "too many from that address (max %d)",
                 clients->max_per_address);
        refuse(clients, fd, peer_text, line, why);
        return NULL;
    }
    if (clients->count >= clients->max_clients) {
        char line[80], why[64];
        snprintf(line, sizeof line, "busy: too many clients (max %d), try later\n",
                 clients->max_clients);
        snprintf(why, sizeof why, "too many clients (max %d)", clients->max_clients);
        refuse(clients, fd, peer_text, line, why);
        return NULL;
    }
    struct client_record *c = calloc(1, record_size);
    if (c == NULL) {
        refuse(clients, fd, peer_text, "busy: server out of memory, try later\n",
               "ENOMEM (out of memory)");
        return NULL;
    }
    c->fd = fd;
    memcpy(c->peer, peer_text, sizeof c->peer);
    c->address = address;
    per_address_add(&clients->per_address, &address, +1);
    c->last_active = monotonic_seconds();
    append_record(clients, c);
    clients->count++;
    char detail[32];
    snprintf(detail, sizeof detail, " (fd %d)", fd);
    log_event(clients, "accepted", c->peer, detail);
    return c;
}

void clients_remove(struct clients *clients, struct client_record *c, const char *reason)
{
    char detail[160];
    snprintf(detail, sizeof detail, ": %s", reason);
    log_event(clients, "closed", c->peer, detail);
    per_address_add(&clients->per_address, &c->address, -1);
    unlink_record(clients, c);
    clients->count--;
}

void clients_release(struct clients *clients, struct client_record *c)
{
    close_reporting(clients, c->fd);
    if (clients->spare_fd == -1 && !clients->spare_given_up)
        clients->spare_fd = open_spare();   /* its reopening failed: a descriptor is free now */
    free(c);
}

void clients_accept_failed(struct clients *clients, int errnum)
{
    if (accept_error_is_temporary(errnum))
        return;                                  /* about that client only */
    if ((errnum == EMFILE || errnum == ENFILE) && !clients->spare_given_up) {
        /* (Given up already, and accept failed again: the spare did not
         * help -- ENFILE is the whole system's -- so pause, below, rather
         * than arm another accept at once, for ever.) */
        if (clients->spare_fd != -1) {
            /* No descriptor for the client, which stays queued.  Give up the
             * spare: the next accept takes its place; clients_admit() sees it. */
            close_reporting(clients, clients->spare_fd);
            clients->spare_fd = -1;
            clients->spare_given_up = true;
            return;
        }
    }
    /* ENOBUFS, ENOMEM, or no spare: let the system breathe. */
    if (clients->log != NULL)   /* the log, not stderr: see close_reporting() */
        log_line(clients->log, "accept: %s (%s); pausing accept for %g s", errno_name(errnum),
                 strerror(errnum), ACCEPT_PAUSE_SECONDS);
    clients->accept_paused_until = monotonic_seconds() + ACCEPT_PAUSE_SECONDS;
}

bool clients_accepting(const struct clients *clients)
{
    return !clients->stopping && monotonic_seconds() >= clients->accept_paused_until;
}

/* `next`, or the seconds until `due` if that is sooner; -1 stands for never. */
static double sooner(double next, double due, double now)
{
    return next < 0 || due - now < next ? due - now : next;
}

double clients_expire(struct clients *clients)
{
    double now = monotonic_seconds();
    double next = -1;
    if (clients->idle_timeout > 0) {
        /* Least recently active first: stop at the first one still in time. */
        while (clients->oldest != NULL
               && now - clients->oldest->last_active >= clients->idle_timeout) {
            char reason[64];
            snprintf(reason, sizeof reason, "idle for %g s", clients->idle_timeout);
            clients->close_client(clients->oldest, reason, clients->context);
        }
        if (clients->oldest != NULL)
            next = sooner(next, clients->oldest->last_active + clients->idle_timeout, now);
    }
    if (clients->accept_paused_until > now)
        next = sooner(next, clients->accept_paused_until, now);
    if (clients->log == NULL)
        return next;
    double refusals_due = clients->quiet ? 0
                        : log_limit_expire(clients->log, &clients->refusals, now);
    if (refusals_due > 0)
        next = sooner(next, refusals_due, now);
    log_flush(clients->log);
    if (log_pending(clients->log))   /* lines wait for stdout: look again soon */
        next = sooner(next, now + LOG_RETRY_MS / 1000.0, now);
    return next;
}

void clients_close_all(struct clients *clients, const char *reason)
{
    clients->stopping = true;
    while (clients->oldest != NULL)
        clients->close_client(clients->oldest, reason, clients->context);
}
