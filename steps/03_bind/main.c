/*
 * Step 3: bind() -- give the socket its address and port.
 *
 *     server:bind(host, port)                -- createTCPServer, line 3
 *
 * bind() claims HOST:PORT for this socket.  HOST decides who can reach it:
 *
 *     localhost    only programs on this computer, and only on the FIRST
 *                  address getaddrinfo() lists: ::1 under the stock
 *                  /etc/hosts of Debian, Fedora or Docker, so a client of
 *                  127.0.0.1 is refused (steps 6-8 take every address)
 *     *            every IPv4 address of this computer (0.0.0.0: glibc
 *                  lists it before ::, and we take the first): other
 *                  computers too, but no IPv6 client
 *     198.51.100.1 clients that connect to that address, whichever
 *                  interface their packets arrive on: Linux takes a
 *                  connection to any of its addresses on any interface
 *                  (SO_BINDTODEVICE, not bind(), restricts by interface)
 *
 * PORT 0 asks the kernel to pick a free port; getsockname() tells us which.
 * Bound is not listening: a client that connects now is refused at once
 * (the kernel answers its SYN with a RST), because nobody said "listen".
 *
 *     build/03_bind '*' 0              bound to 0.0.0.0:41237
 *     nc -v 127.0.0.1 41237            Connection refused
 *
 * Usage: 03_bind [--no-reuseaddr] [HOST [PORT [BACKLOG]]]    Ctrl-C ends it.
 */
#include "address.h"
#include "args.h"
#include "signals.h"

#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct server_args args;
    parse_server_args(argc, argv, OPTION_NO_REUSEADDR, 0, &args);
    char err[256];
    if (hold_stop_signals(err, sizeof err) == -1) {
        fprintf(stderr, "%s: %s\n", argv[0], err);
        return 1;
    }

    struct addrinfo *addresses;
    if (resolve_server_address(args.host, args.port, &addresses, err, sizeof err) == -1) {
        fprintf(stderr, "%s: %s\n", argv[0], err);
        return 1;
    }

    /* Try each address HOST resolved to until every call succeeds. */
    int listen_fd = -1;
    struct addrinfo *ai;
    for (ai = addresses; ai != NULL; ai = ai->ai_next) {
        const char *failed_call = NULL;
        const int on = 1;

        /* idea socket */
        listen_fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        /* end of idea socket */
        if (listen_fd == -1)
            failed_call = "socket";
        /* idea reuseaddr */
        else if (args.reuseaddr
                 && setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) == -1)
            failed_call = "setsockopt SO_REUSEADDR";
        /* end of idea reuseaddr */
        /* idea bind */
        else if (bind(listen_fd, ai->ai_addr, ai->ai_addrlen) == -1)
            failed_call = "bind";
        /* end of idea bind */

        if (failed_call == NULL)
            break;
        format_call_error(err, sizeof err, failed_call, ai->ai_addr, ai->ai_addrlen, errno);
        if (listen_fd != -1)
            close(listen_fd);
        listen_fd = -1;
    }
    if (listen_fd == -1) {
        fprintf(stderr, "%s: %s\n", argv[0], err);
        freeaddrinfo(addresses);
        return 1;
    }

    printf("socket fd %d (%s TCP)\n", listen_fd, family_name(ai->ai_family));

    int reuseaddr = -1;
    socklen_t option_len = sizeof reuseaddr;
    if (getsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &reuseaddr, &option_len) == -1) {
        perror("getsockopt SO_REUSEADDR");
        return 1;
    }
    printf("SO_REUSEADDR = %d\n", reuseaddr);

    char local[ADDRESS_TEXT_SIZE];
    if (format_local_address(listen_fd, local, sizeof local) == -1) {
        perror("getsockname");
        return 1;
    }
    printf("bound to %s\n", local);
    fflush(stdout);
    freeaddrinfo(addresses);

    int stopped_by = wait_for_stop_signal(err, sizeof err);
    if (stopped_by == -1)
        fprintf(stderr, "%s: %s\n", argv[0], err);
    close(listen_fd);
    return stopped_by == -1 ? 1 : 0;
}
