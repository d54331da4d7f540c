/*
 * Step 1: socket() -- the unbound "half-socket".
 *
 *     local server, err = socket.tcp()       -- createTCPServer, line 1
 *
 * socket() asks the kernel for a TCP endpoint and hands back a descriptor:
 * the small number this process uses to name it.  That is all.  The socket
 * has no address and no port, so no client anywhere can reach it.
 *
 * Run it, and look at it from a second terminal while it waits:
 *
 *     build/01_socket                          socket fd 3 (IPv6 TCP)
 *     ls -l /proc/$(pgrep 01_socket)/fd        3 -> socket:[...]
 *     ss -tan                                  nothing new: ss lists listeners and
 *                                              connections in every state; this
 *                                              is neither
 *
 * Usage: 01_socket [HOST [PORT [BACKLOG]]]    Ctrl-C ends it.
 * HOST only decides IPv4 or IPv6 here, by the first address getaddrinfo()
 * lists: localhost is ::1 first under a stock /etc/hosts (glibc sorts it
 * before 127.0.0.1), and '*' is 0.0.0.0 first, IPv4.  Step 3 binds to it.
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
    parse_server_args(argc, argv, 0, 0, &args);
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

        /* idea socket */
        listen_fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        /* end of idea socket */
        if (listen_fd == -1)
            failed_call = "socket";

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
    fflush(stdout);
    freeaddrinfo(addresses);

    int stopped_by = wait_for_stop_signal(err, sizeof err);
    if (stopped_by == -1)
        fprintf(stderr, "%s: %s\n", argv[0], err);
    close(listen_fd);
    return stopped_by == -1 ? 1 : 0;
}
