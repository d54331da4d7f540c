/*
 * Step 5: accept() -- an iterative echo server.
 *
 *     local server = assert(createTCPServer(host, port, backlog))
 *     while true do local client = server:accept() ... end
 *
 * Steps 1 to 4 are now one call, tcp_server_create() (common/tcp_server.c:
 * the same socket, setsockopt, bind and listen, in the same order).  What is
 * new is accept(): it takes the oldest finished connection off the queue
 * step 4 showed filling up, and returns a *new* descriptor for it.  The
 * listening socket stays as it was, ready for the next client.
 *
 * This server is iterative: it echoes one client until that client hangs
 * up, and only then accepts the next.  A second client can connect (the
 * kernel queues it, as in step 4) but hears nothing back until the first
 * leaves.  The first holds us whether it sends nothing (we wait in read())
 * or sends and never reads its echo (once the kernel's buffers are full,
 * we wait in write()).  Step 6 fixes that.
 *
 * man 2 accept says some failures are about one client and to try again
 * (common/accept_errors.h lists them; Linux TCP returns none of them but
 * EINTR: a client that reset is handed out, and its reset shows at our
 * first read).  Any other failure (EMFILE, EBADF ...) is about the server:
 * one line, exit 1.
 *
 *     build/05_accept                  listening on [::1]:7777 (stock /etc/hosts)
 *     nc localhost 7777                type a line: it comes back (nc tries
 *                                      each address of localhost in turn)
 *
 * Usage: 05_accept [HOST [PORT [BACKLOG]]]
 * Ctrl-C ends it with exit 0 at once: nothing here needs tidying that the
 * kernel does not tidy at exit (it closes every descriptor, so clients see EOF).
 */
#include "accept_errors.h"
#include "address.h"
#include "args.h"
#include "signals.h"
#include "tcp_server.h"

#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

/* Echo until the client hangs up; returns why the connection ended. */
static const char *echo_until_closed(int client_fd)
{
    char buffer[4096];
    for (;;) {
        ssize_t received = read(client_fd, buffer, sizeof buffer);
        if (received == 0)
            return "client closed";
        if (received == -1)
            return errno_name(errno);   /* ECONNRESET: the client vanished */
        /* write() may take less than we give it: loop until all is sent. */
        for (ssize_t sent = 0; sent < received;) {
            ssize_t n = write(client_fd, buffer + sent, (size_t)(received - sent));
            if (n == -1)
                return errno_name(errno);   /* EPIPE, not SIGPIPE: it is ignored */
            sent += n;
        }
    }
}

/* Ctrl-C or kill: the end, with status 0; the kernel closes every socket.
 * _exit(), not exit(): a handler may make async-signal-safe calls only
 * (man 7 signal-safety).  A flag the loop checked would race: a signal
 * landing just before accept() would wait for a client (common/signals.h). */
static void exit_on_stop(int signal_number)
{
    (void)signal_number;
    _exit(0);
}

int main(int argc, char **argv)
{
    struct server_args args;
    parse_server_args(argc, argv, 0, 0, &args);
    char err[TCP_SERVER_ERR_SIZE];
    if (handle_stop_signals(exit_on_stop, err, sizeof err) == -1) {
        fprintf(stderr, "%s: %s\n", argv[0], err);
        return 1;
    }
    int listen_fd = tcp_server_create(args.host, args.port, args.backlog, err, sizeof err);
    if (listen_fd == -1) {
        fprintf(stderr, "%s: %s\n", argv[0], err);
        return 1;
    }
    char local[ADDRESS_TEXT_SIZE];
    if (format_local_address(listen_fd, local, sizeof local) == -1) {
        perror("getsockname");
        return 1;
    }
    printf("listening on %s\n", local);
    fflush(stdout);

    for (;;) {
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof peer;
        /* idea accept */
        int client_fd = accept(listen_fd, (struct sockaddr *)&peer, &peer_len);
        /* end of idea accept */
        if (client_fd == -1) {
            /* About one client (it gave up while queued, or its network
             * failed: man 2 accept says retry), not about the server. */
            if (accept_error_is_temporary(errno))
                continue;
            perror("accept");
            close(listen_fd);
            return 1;
        }
        char peer_text[ADDRESS_TEXT_SIZE];
        format_address((struct sockaddr *)&peer, peer_len, peer_text, sizeof peer_text);
        printf("accepted %s (fd %d)\n", peer_text, client_fd);
        fflush(stdout);

        const char *why = echo_until_closed(client_fd);
        close(client_fd);
        printf("closed %s: %s\n", peer_text, why);
        fflush(stdout);
    }
}
