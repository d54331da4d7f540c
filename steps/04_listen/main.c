/*
 * Step 4: listen() -- the kernel starts accepting connections for us.
 *
 *     server:listen(backlog)                 -- createTCPServer, line 4
 *
 * listen() turns the bound socket into a listening one.  From now on the
 * kernel completes TCP handshakes by itself and queues the finished
 * connections, even though this program never calls accept(): a client's
 * connect() succeeds while we sit here doing nothing.  BACKLOG bounds that
 * queue (the accept queue), capped at net.core.somaxconn; Linux holds
 * BACKLOG+1 connections, then drops further SYNs, so the next client's
 * connect() hangs and its SYN is sent again instead of being refused.  A
 * handshake's last ACK that finds the queue full is dropped too, after the
 * client's connect() has returned (a reset instead if tcp_abort_on_overflow
 * is 1).  Half-open connections (SYN received, last ACK not yet) wait in a
 * second queue, bounded by BACKLOG too (BACKLOG+1 since Linux 6.13 and the
 * stable kernels it went back to); beyond it the kernel answers with SYN
 * cookies (net.ipv4.tcp_syncookies).  docs/04_listen.md shows both.
 *
 *     build/04_listen 127.0.0.1 7777 2     listening on 127.0.0.1:7777
 *     ss -ltn 'sport = :7777'              Recv-Q = queued, Send-Q = the limit, 2
 *     nstat -asz TcpExtListenOverflows     connections the full queue turned away
 *
 * Usage: 04_listen [--no-reuseaddr] [HOST [PORT [BACKLOG]]]    Ctrl-C ends it.
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
        /* idea listen */
        else if (listen(listen_fd, args.backlog) == -1)
            failed_call = "listen";
        /* end of idea listen */

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
    printf("listening on %s\n", local);
    fflush(stdout);
    freeaddrinfo(addresses);

    int stopped_by = wait_for_stop_signal(err, sizeof err);
    if (stopped_by == -1)
        fprintf(stderr, "%s: %s\n", argv[0], err);
    close(listen_fd);
    return stopped_by == -1 ? 1 : 0;
}
