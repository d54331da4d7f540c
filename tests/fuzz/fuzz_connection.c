/*
 * fuzz_connection.c -- libFuzzer target for connection_handle() and the
 * table around it (steps/08_epoll/connections.c), over real loopback TCP.
 *
 * Two clients connect to a listening socket on 127.0.0.1 (port 0, made
 * once) and are accepted with connection_accept(), into a table of two.
 * Every socket has small kernel buffers, so a few kilobytes fill them and
 * the server has to keep output of its own (up to OUTPUT_LIMIT) and stop
 * reading.  The input is a list of at most MAX_OPERATIONS operations, a
 * byte each, some with a byte of size after it:
 *
 *   bits 0-2  what:  0-1 a client writes a chunk, 2-3 it reads up to a size,
 *                    4-5 the server calls connection_handle() with what
 *                    connection_wants() says and spurious flags (bits 4-6),
 *                    6 the client half-closes (bit 7 clear) or resets
 *                    (SO_LINGER 0, then close), 7 the server polls every
 *                    client's socket without waiting and handles what is ready
 *   bit 3     which client
 *   bits 4-6  the size's scale: ((next byte) + 1) << scale, 1 byte to 32 KiB
 *
 * Then each client still open half-closes and both sides run as a loop on
 * poll() until every connection is over.  What must hold:
 *
 *   - every byte a client reads is the next one it sent: none changed,
 *     lost, reordered, repeated or taken from the other client;
 *   - after connection_handle() the bytes owed fit OUTPUT_LIMIT and sit in
 *     the client's own buffer, and an open connection wants something
 *     (else no loop would ever look at it again: a stall);
 *   - the server closes a client only after it half-closed or reset, and a
 *     half-closed client gets everything it sent, then the end;
 *   - a reset client is closed; nothing waits 2 s without a byte moving.
 *
 *   make fuzz             (see the Makefile)
 */
#include "connections.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CLIENTS 2
#define MAX_OPERATIONS 64
/* What one client may send in one input: enough to fill every buffer on the
 * way a few times over, little enough that a run stays fast. */
#define STREAM_LIMIT ((size_t)256 * 1024)
#define LARGEST_CHUNK ((size_t)32 * 1024)
/* Kernel buffers per socket (Linux doubles it and keeps at least ~4.6 KB). */
#define SOCKET_BUFFER 4096
/* Segments well under the buffers: with loopback's 64 KiB ones, a window
 * that opens by less than a segment is not announced, and the sender waits
 * for its 200 ms probe timer (runs took seconds). */
#define SEGMENT_SIZE 536
/* A loop on loopback with nothing moving for this long has stalled. */
#define STALL_MS 2000

struct client {
    int fd;                        /* -1 once reset (closed) */
    struct connection *server;     /* its slot in the table; fd -1 once closed */
    unsigned char sent[STREAM_LIMIT];   /* every byte written, in order */
    size_t sent_length;
    size_t received;               /* bytes echoed back, all checked */
    uint32_t pattern;              /* xorshift state that makes the bytes */
    bool half_closed;
    bool reset;
    bool saw_end;                  /* read() gave 0 */
};

/* The bytes of this input, consumed from the front; 0 once used up. */
struct input {
    const uint8_t *data;
    size_t size;
    size_t at;
};

/* What libFuzzer calls once per input. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct client clients[CLIENTS];
static int listen_fd = -1;
static struct sockaddr_in listen_address;

static void require(bool holds, const char *invariant, const struct client *client)
{
    if (!holds) {
        fprintf(stderr, "fuzz_connection: invariant broken: %s", invariant);
        if (client != NULL)
            fprintf(stderr, " (client %d: sent %zu, received %zu%s%s%s)",
                    (int)(client - clients), client->sent_length, client->received,
                    client->half_closed ? ", half-closed" : "",
                    client->reset ? ", reset" : "", client->saw_end ? ", saw end" : "");
        fprintf(stderr, "\n");
        abort();
    }
}

/* The machine, not the code under test, failed: no use going on. */
static void environment_failed(const char *call)
{
    fprintf(stderr, "fuzz_connection: %s: %s\n", call, strerror(errno));
    exit(1);
}

static unsigned next_byte(struct input *input)
{
    return input->at < input->size ? input->data[input->at++] : 0;
}

static void small_buffers(int fd)
{
    int size = SOCKET_BUFFER;
    int segment = SEGMENT_SIZE;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size) == -1
        || setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size) == -1
        || setsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &segment, sizeof segment) == -1)
        environment_failed("setsockopt SO_RCVBUF/SO_SNDBUF/TCP_MAXSEG");
}

/* Once per process: accepted sockets inherit the small buffers. */
static void listen_once(void)
{
    if (listen_fd != -1)
        return;
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (listen_fd == -1)
        environment_failed("socket");
    small_buffers(listen_fd);
    memset(&listen_address, 0, sizeof listen_address);
    listen_address.sin_family = AF_INET;
    listen_address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof listen_address;
    if (bind(listen_fd, (struct sockaddr *)&listen_address, sizeof listen_address) == -1
        || listen(listen_fd, CLIENTS) == -1
        || getsockname(listen_fd, (struct sockaddr *)&listen_address, &length) == -1
        || set_nonblocking(listen_fd) == -1)
        environment_failed("listening on 127.0.0.1");
}

/* The one call of connections_init(): if its parameters change, only here. */
static void open_table(struct connection_table *table)
{
    struct server_args args = {
        .host = "127.0.0.1", .max_clients = CLIENTS, .quiet = true,
        .idle_timeout = 0, .reuseaddr = true, .fps = DEFAULT_FPS,
    };
    if (connections_init(table, &args, NULL) == -1)   /* NULL: no log */
        environment_failed("connections_init");
}

static int socket_port(int fd, bool peer)
{
    struct sockaddr_in address;
    socklen_t length = sizeof address;
    int rc = peer ? getpeername(fd, (struct sockaddr *)&address, &length)
                  : getsockname(fd, (struct sockaddr *)&address, &length);
    if (rc == -1)
        environment_failed(peer ? "getpeername" : "getsockname");
    return ntohs(address.sin_port);
}

/* Waits until fd is ready for `events`, through signals (libFuzzer's
 * timeout timer interrupts calls that wait). */
static void wait_for(int fd, short events, const char *what)
{
    struct pollfd waiting = { .fd = fd, .events = events };
    int ready;
    do
        ready = poll(&waiting, 1, STALL_MS);
    while (ready == -1 && errno == EINTR);
    if (ready != 1)
        environment_failed(what);
}

static void connect_client(struct connection_table *table, struct client *client,
                           uint32_t seed)
{
    client->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (client->fd == -1)
        environment_failed("socket");
    small_buffers(client->fd);   /* before connect(): window and segment are set then */
    if (set_nonblocking(client->fd) == -1)
        environment_failed("fcntl O_NONBLOCK");
    /* Non-blocking, so that a signal cannot cut it short: wait for it. */
    if (connect(client->fd, (struct sockaddr *)&listen_address, sizeof listen_address) == -1) {
        if (errno != EINPROGRESS)
            environment_failed("connect to 127.0.0.1");
        wait_for(client->fd, POLLOUT, "poll for connect to 127.0.0.1");
        int error = 0;
        socklen_t error_length = sizeof error;
        if (getsockopt(client->fd, SOL_SOCKET, SO_ERROR, &error, &error_length) == -1)
            environment_failed("getsockopt SO_ERROR");
        errno = error;
        if (error != 0)
            environment_failed("connect to 127.0.0.1");
    }
    wait_for(listen_fd, POLLIN, "poll for the connection to accept");
    client->server = connection_accept(table, listen_fd);
    if (client->server == NULL) {
        require(false, "connection_accept() takes the waiting client", client);
        return;
    }
    require(socket_port(client->server->fd, true) == socket_port(client->fd, false),
            "connection_accept() takes the client that connected", client);
    client->sent_length = client->received = 0;
    client->pattern = seed;
    client->half_closed = client->reset = client->saw_end = false;
}

static unsigned char next_pattern_byte(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return (unsigned char)(x >> 24);
}

static size_t chunk_size(unsigned scale, unsigned byte)
{
    return ((size_t)byte + 1) << (scale & 7);
}

/* The server's side after connection_handle(): what must hold of it. */
static void check_connection(const struct client *client)
{
    const struct connection *c = client->server;
    if (c->fd == -1) {
        require(client->half_closed || client->reset,
                "the server closes only a client that half-closed or reset", client);
        return;
    }
    require(c->output_start <= c->output_end && c->output_end <= OUTPUT_LIMIT,
            "the bytes owed fit OUTPUT_LIMIT", client);
    require(c->output_end == c->output_start || c->output != NULL,
            "bytes owed after connection_handle() are in the client's own buffer", client);
    require(connection_wants(c) != 0,
            "an open connection wants READ or WRITE (else it stalls)", client);
}

static void server_handle(struct connection_table *table, struct client *client,
                          unsigned spurious)
{
    struct connection *c = client->server;
    if (c->fd == -1)
        return;
    connection_handle(table, c, connection_wants(c) | spurious);
    check_connection(client);
}

static short poll_events(unsigned wants)
{
    return (short)(((wants & CONNECTION_READ) ? POLLIN : 0)
                   | ((wants & CONNECTION_WRITE) ? POLLOUT : 0));
}

static unsigned ready_flags(short revents)
{
    return ((revents & POLLIN) ? CONNECTION_READ : 0u)
           | ((revents & POLLOUT) ? CONNECTION_WRITE : 0u)
           | ((revents & (POLLERR | POLLHUP)) ? CONNECTION_ERROR : 0u);
}

/* One turn of a step's loop that does not wait: handle what is ready. */
static void server_poll_round(struct connection_table *table)
{
    struct pollfd fds[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        const struct connection *c = clients[i].server;
        fds[i].fd = c->fd;   /* poll() skips a negative fd */
        fds[i].events = 0;
        if (c->fd != -1)
            fds[i].events = poll_events(connection_wants(c));
        fds[i].revents = 0;
    }
    if (poll(fds, CLIENTS, 0) == -1 && errno != EINTR)
        environment_failed("poll");
    for (int i = 0; i < CLIENTS; i++) {
        if (fds[i].revents != 0 && clients[i].server->fd != -1) {
            connection_handle(table, clients[i].server, ready_flags(fds[i].revents));
            check_connection(&clients[i]);
        }
    }
}

static void client_write(struct client *client, size_t size)
{
    if (client->fd == -1 || client->half_closed)
        return;
    if (size > STREAM_LIMIT - client->sent_length)
        size = STREAM_LIMIT - client->sent_length;
    if (size == 0)
        return;
    /* Bytes made but not taken are made anew next time: sent[] holds
     * exactly what the socket took. */
    unsigned char *chunk = client->sent + client->sent_length;
    for (size_t i = 0; i < size; i++)
        chunk[i] = next_pattern_byte(&client->pattern);
    ssize_t written = send(client->fd, chunk, size, MSG_NOSIGNAL);
    if (written > 0)
        client->sent_length += (size_t)written;
    else
        require(written == -1 && (errno == EAGAIN || errno == EWOULDBLOCK),
                "a client that has not closed can write (the server did not close it)",
                client);
}

/* A client reads: each byte must be the next one it sent; the end comes
 * only after its half-close and everything it sent. */
static void client_read(struct client *client, size_t size)
{
    if (client->fd == -1 || client->saw_end)
        return;
    unsigned char buffer[LARGEST_CHUNK];
    if (size > sizeof buffer)
        size = sizeof buffer;
    ssize_t got = recv(client->fd, buffer, size, 0);
    if (got > 0) {
        require(client->received + (size_t)got <= client->sent_length,
                "a client gets back no more than it sent", client);
        require(memcmp(buffer, client->sent + client->received, (size_t)got) == 0,
                "a client gets back what it sent, in order, unchanged", client);
        client->received += (size_t)got;
    } else if (got == 0) {
        client->saw_end = true;
        require(client->half_closed, "the end comes only after the client half-closed",
                client);
        require(client->received == client->sent_length,
                "a half-closed client gets everything it sent before the end", client);
    } else {
        require(errno == EAGAIN || errno == EWOULDBLOCK,
                "a client's read fails only with EAGAIN (no reset from the server)", client);
    }
}

static void client_end(struct client *client, bool reset)
{
    if (client->fd == -1)
        return;
    if (reset) {
        /* A zero linger time makes close() send a reset, not a FIN. */
        struct linger abort_on_close = { .l_onoff = 1, .l_linger = 0 };
        if (setsockopt(client->fd, SOL_SOCKET, SO_LINGER, &abort_on_close,
                       sizeof abort_on_close) == -1)
            environment_failed("setsockopt SO_LINGER");
        close(client->fd);
        client->fd = -1;
        client->reset = true;
    } else if (!client->half_closed) {
        if (shutdown(client->fd, SHUT_WR) == -1)
            environment_failed("shutdown");
        client->half_closed = true;
    }
}

/* Every client left half-closes; then both sides run as a loop until every
 * connection is over.  Each turn waits for something to be ready, so a
 * connection nothing will ever move shows as a stall. */
static void finish(struct connection_table *table)
{
    for (int i = 0; i < CLIENTS; i++)
        client_end(&clients[i], false);
    for (;;) {
        struct pollfd fds[2 * CLIENTS];
        struct client *owner[2 * CLIENTS];
        bool server_side[2 * CLIENTS];
        nfds_t count = 0;
        for (int i = 0; i < CLIENTS; i++) {
            struct client *client = &clients[i];
            if (client->fd != -1 && !client->saw_end) {
                fds[count] = (struct pollfd){ .fd = client->fd, .events = POLLIN };
                owner[count] = client;
                server_side[count++] = false;
            }
            const struct connection *c = client->server;
            if (c->fd != -1) {
                fds[count] = (struct pollfd){ .fd = c->fd,
                                              .events = poll_events(connection_wants(c)) };
                owner[count] = client;
                server_side[count++] = true;
            }
        }
        if (count == 0)
            return;
        int ready = poll(fds, count, STALL_MS);
        if (ready == -1 && errno == EINTR)
            continue;
        if (ready == -1)
            environment_failed("poll");
        require(ready > 0, "something moves within 2 s until every connection is over",
                NULL);
        for (nfds_t i = 0; i < count; i++) {
            if (fds[i].revents == 0)
                continue;
            if (server_side[i]) {
                if (owner[i]->server->fd != -1) {
                    connection_handle(table, owner[i]->server, ready_flags(fds[i].revents));
                    check_connection(owner[i]);
                }
            } else {
                client_read(owner[i], LARGEST_CHUNK);
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    listen_once();
    struct connection_table table;
    open_table(&table);
    for (int i = 0; i < CLIENTS; i++)
        connect_client(&table, &clients[i], 0x9e3779b9u * (uint32_t)(i + 1));

    struct input input = { .data = data, .size = size, .at = 0 };
    for (int operation = 0; operation < MAX_OPERATIONS && input.at < input.size;
         operation++) {
        unsigned byte = next_byte(&input);
        struct client *client = &clients[(byte >> 3) & 1];
        unsigned argument = byte >> 4;
        switch (byte & 7) {
        case 0:
        case 1:
            client_write(client, chunk_size(argument, next_byte(&input)));
            break;
        case 2:
        case 3:
            client_read(client, chunk_size(argument, next_byte(&input)));
            break;
        case 4:
        case 5:
            server_handle(&table, client, argument & 7);
            break;
        case 6:
            client_end(client, (argument & 8) != 0);
            break;
        default:
            server_poll_round(&table);
            break;
        }
    }
    finish(&table);

    connections_free(&table);
    for (int i = 0; i < CLIENTS; i++) {
        if (clients[i].fd != -1)
            close(clients[i].fd);
        clients[i].fd = -1;
    }
    return 0;
}
