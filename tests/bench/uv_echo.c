/*
 * uv_echo: an echo server written with libuv, the baseline of make bench.
 *
 * Not a step of the course: a yardstick.  It is written the way the libuv
 * documentation teaches (uv_tcp_init, uv_tcp_bind, uv_listen; on each
 * connection uv_accept and uv_read_start with an allocation callback; each
 * chunk read is handed to uv_write, and its buffer freed in the write
 * callback), with what a careful libuv user adds: a half-close is answered
 * with uv_shutdown once the echo is written, and a client that sends faster
 * than it reads is paused (uv_read_stop) while more than 64 KiB is queued
 * for it, as the steps do (their OUTPUT_LIMIT).  libuv on Linux uses epoll,
 * so this is the same machinery as step 8 behind a library.
 *
 *     uv_echo [--quiet] [--max-clients N] [--idle-timeout SECONDS] HOST PORT BACKLOG
 *
 * The arguments are the steps' (tests/bench/bench_echo.py starts it like one);
 * the options are accepted and ignored.  HOST is an address, or "*" for
 * every IPv4 address, or a name: it listens on the first address the name
 * has (unlike steps 6-8, which listen on all of them).  It prints
 * "listening on ADDR:PORT" once listening, nothing per connection, and ends
 * with status 0 on SIGINT or SIGTERM.  --version names the libuv it runs.
 */
#include <uv.h>

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WRITE_QUEUE_LIMIT ((size_t)64 * 1024)

struct write_request {
    uv_write_t req;
    uv_buf_t buf;
};

static uv_tcp_t server;
static uv_signal_t stop_signals[2];

static void allocate(uv_handle_t *handle, size_t suggested_size, uv_buf_t *buf)
{
    (void)handle;
    buf->base = malloc(suggested_size);
    buf->len = buf->base != NULL ? suggested_size : 0;
}

static void free_client(uv_handle_t *handle)
{
    free(handle);
}

static void on_read(uv_stream_t *client, ssize_t nread, const uv_buf_t *buf);

static void on_write(uv_write_t *req, int status)
{
    struct write_request *w = (struct write_request *)req;
    uv_stream_t *client = req->handle;
    free(w->buf.base);
    free(w);
    if (status < 0) {
        if (!uv_is_closing((uv_handle_t *)client))
            uv_close((uv_handle_t *)client, free_client);
        return;
    }
    /* Paused for backpressure (client->data set): resume once drained. */
    if (client->data != NULL && client->write_queue_size < WRITE_QUEUE_LIMIT
        && !uv_is_closing((uv_handle_t *)client)) {
        client->data = NULL;
        uv_read_start(client, allocate, on_read);
    }
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    if (!uv_is_closing((uv_handle_t *)req->handle))
        uv_close((uv_handle_t *)req->handle, free_client);
    free(req);
}

static void on_read(uv_stream_t *client, ssize_t nread, const uv_buf_t *buf)
{
    if (nread > 0) {
        struct write_request *w = malloc(sizeof *w);
        if (w == NULL) {
            free(buf->base);
            uv_close((uv_handle_t *)client, free_client);
            return;
        }
        w->buf = uv_buf_init(buf->base, (unsigned int)nread);
        if (uv_write(&w->req, client, &w->buf, 1, on_write) < 0) {
            free(w->buf.base);
            free(w);
            uv_close((uv_handle_t *)client, free_client);
            return;
        }
        if (client->write_queue_size >= WRITE_QUEUE_LIMIT) {
            uv_read_stop(client);
            client->data = client;   /* paused: on_write resumes it */
        }
        return;
    }
    free(buf->base);   /* NULL-safe: nread 0 or an error may come without one */
    if (nread == UV_EOF) {
        /* Half-close: finish the echo, then send our end of file. */
        uv_shutdown_t *req = malloc(sizeof *req);
        if (req == NULL || uv_shutdown(req, client, on_shutdown) < 0) {
            free(req);
            uv_close((uv_handle_t *)client, free_client);
        }
    } else if (nread < 0) {
        uv_close((uv_handle_t *)client, free_client);
    }
}

static void on_connection(uv_stream_t *listener, int status)
{
    if (status < 0)
        return;
    uv_tcp_t *client = malloc(sizeof *client);
    if (client == NULL)
        return;
    uv_tcp_init(listener->loop, client);
    client->data = NULL;
    if (uv_accept(listener, (uv_stream_t *)client) == 0)
        uv_read_start((uv_stream_t *)client, allocate, on_read);
    else
        uv_close((uv_handle_t *)client, free_client);
}

static void close_handle(uv_handle_t *handle, void *arg)
{
    (void)arg;
    if (uv_is_closing(handle))
        return;
    bool is_client = handle->type == UV_TCP && handle != (uv_handle_t *)&server;
    uv_close(handle, is_client ? free_client : NULL);
}

/* SIGINT or SIGTERM: close every handle, and uv_run() returns. */
static void on_stop_signal(uv_signal_t *handle, int signum)
{
    (void)signum;
    uv_walk(handle->loop, close_handle, NULL);
}

static int usage(FILE *out, const char *program)
{
    fprintf(out, "usage: %s [--quiet] [--max-clients N] [--idle-timeout SECONDS] "
                 "HOST PORT BACKLOG\n", program);
    return out == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--help") == 0)
            return usage(stdout, argv[0]);
        if (strcmp(argv[i], "--version") == 0) {
            printf("uv_echo, libuv %s\n", uv_version_string());
            return 0;
        }
        if (strcmp(argv[i], "--max-clients") == 0 || strcmp(argv[i], "--idle-timeout") == 0)
            i++;   /* its value: not needed here */
        else if (strcmp(argv[i], "--quiet") != 0)
            return usage(stderr, argv[0]);
    }
    if (argc - i != 3)
        return usage(stderr, argv[0]);
    const char *host = strcmp(argv[i], "*") == 0 ? "0.0.0.0" : argv[i];
    const char *port = argv[i + 1];
    char *end;
    long backlog = strtol(argv[i + 2], &end, 10);
    if (end == argv[i + 2] || *end != '\0' || backlog < 0 || backlog > INT_MAX)
        return usage(stderr, argv[0]);

    struct sigaction ignore = { .sa_handler = SIG_IGN };
    sigaction(SIGPIPE, &ignore, NULL);   /* a write to a closed client: EPIPE */

    uv_loop_t *loop = uv_default_loop();
    uv_getaddrinfo_t resolver;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    /* No callback: uv_getaddrinfo() answers at once. */
    int status = uv_getaddrinfo(loop, &resolver, NULL, host, port, &hints);
    if (status < 0) {
        fprintf(stderr, "%s: %s port %s: %s\n", argv[0], host, port, uv_strerror(status));
        return 1;
    }
    uv_tcp_init(loop, &server);
    status = uv_tcp_bind(&server, resolver.addrinfo->ai_addr, 0);
    uv_freeaddrinfo(resolver.addrinfo);
    if (status == 0)
        status = uv_listen((uv_stream_t *)&server, (int)backlog, on_connection);
    if (status < 0) {
        fprintf(stderr, "%s: %s port %s: %s\n", argv[0], host, port, uv_strerror(status));
        return 1;
    }

    struct sockaddr_storage bound;
    int length = sizeof bound;
    char address[INET6_ADDRSTRLEN] = "?";
    uv_tcp_getsockname(&server, (struct sockaddr *)&bound, &length);
    if (bound.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&bound;
        uv_ip6_name(a, address, sizeof address);
        printf("listening on [%s]:%d\n", address, ntohs(a->sin6_port));
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&bound;
        uv_ip4_name(a, address, sizeof address);
        printf("listening on %s:%d\n", address, ntohs(a->sin_port));
    }
    fflush(stdout);

    const int signals[2] = { SIGINT, SIGTERM };
    for (int s = 0; s < 2; s++) {
        uv_signal_init(loop, &stop_signals[s]);
        uv_signal_start(&stop_signals[s], on_stop_signal, signals[s]);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    return uv_loop_close(loop) == 0 ? 0 : 1;
}
