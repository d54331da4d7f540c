/* tcp_server.c -- see tcp_server.h.  Read it beside steps 1 to 4. */
#include "tcp_server.h"
#include "address.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

int tcp_server_create(const char *host, int port, int backlog,
                      char *err, size_t err_size)
{
    /* LuaSocket quietly wraps port 99999 to 34463; this refuses it. */
    struct addrinfo *addresses;
    if (resolve_server_address(host, port, &addresses, err, err_size) == -1)
        return -1;

    int listen_fd = -1;
    for (struct addrinfo *ai = addresses; ai != NULL; ai = ai->ai_next) {
        const char *failed_call = NULL;
        const int on = 1;

        listen_fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (listen_fd == -1)
            failed_call = "socket";                                /* step 1 */
        else if (setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &on,
                            sizeof on) == -1)
            failed_call = "setsockopt SO_REUSEADDR";               /* step 2 */
        else if (bind(listen_fd, ai->ai_addr, ai->ai_addrlen) == -1)
            failed_call = "bind";                                  /* step 3 */
        else if (listen(listen_fd, backlog) == -1)
            failed_call = "listen";                                /* step 4 */

        if (failed_call == NULL)
            break;

        /* Remember why, then try the next address with a fresh socket. */
        int saved_errno = errno;
        format_call_error(err, err_size, failed_call, ai->ai_addr,
                          ai->ai_addrlen, saved_errno);
        if (listen_fd != -1)
            close(listen_fd);
        listen_fd = -1;
    }

    freeaddrinfo(addresses);
    return listen_fd;   /* -1 with err saying what the last address met */
}
