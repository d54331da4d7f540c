/*
 * Step 2: setsockopt(SO_REUSEADDR) -- so a restarted server can bind at once.
 *
 *     server:setoption("reuseaddr", true)    -- createTCPServer, line 2
 *
 * When a TCP connection closes, the side that closed first keeps its
 * address:port pair in TIME_WAIT for a minute or so, to catch stray packets.
 * Without SO_REUSEADDR a server restarted in that minute fails to bind its
 * own port with EADDRINUSE.  With it, bind succeeds (a port a *listening*
 * socket holds stays refused either way).  The option must be set before
 * bind(), on the new server, and on Linux on the old one too: the
 * TIME_WAIT entries keep the old socket's choice, and both must agree.
 *
 * On Linux it allows more than that (man 7 socket): two sockets that both
 * set it may bind the very same address and port while neither listens.
 * The first to call listen() gets the port; the other's listen() fails
 * with EADDRINUSE.
 *
 * We read the option back with getsockopt() rather than trust the call: the
 * classic Lua helper never checks setoption, and LuaSocket's socket.tcp()
 * makes it fail in silence (docs/02_reuseaddr.md).
 *
 *     build/02_reuseaddr                   SO_REUSEADDR = 1
 *     build/02_reuseaddr --no-reuseaddr    SO_REUSEADDR = 0
 *
 * Usage: 02_reuseaddr [--no-reuseaddr] [HOST [PORT [BACKLOG]]]    Ctrl-C ends it.
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
    fflush(stdout);
    freeaddrinfo(addresses);

    int stopped_by = wait_for_stop_signal(err, sizeof err);
    if (stopped_by == -1)
        fprintf(stderr, "%s: %s\n", argv[0], err);
    close(listen_fd);
    return stopped_by == -1 ? 1 : 0;
}
