/*
 * listeners.h -- steps 6 to 8: a listening socket on EVERY address HOST names.
 *
 * tcp_server_create() listens on the first address that works, as the Lua
 * helper and LuaSocket do.  That first address is a trap: under the stock
 * /etc/hosts of Debian, Fedora or Docker,
 *
 *     127.0.0.1   localhost
 *     ::1         localhost ip6-localhost ip6-loopback
 *
 * getaddrinfo("localhost") lists ::1 first, so a server on "localhost"
 * listens on [::1] alone and a client of 127.0.0.1 is refused.  And "*" is
 * 0.0.0.0 first (glibc), so IPv6 clients are refused.  Servers people rely
 * on listen on every address instead (nginx's `listen localhost:80`,
 * Redis's `bind 127.0.0.1 -::1`, Python's asyncio create_server()), and so
 * do steps 6-8, with listeners_open():
 *
 *   - one socket per address getaddrinfo() returns, in its order (an
 *     address listed twice is listened on once);
 *   - IPV6_V6ONLY on every IPv6 socket, set explicitly: without it a socket
 *     on "::" would also take IPv4 clients, or not, as the machine's
 *     net.ipv6.bindv6only says, and would then collide with the 0.0.0.0
 *     socket on the same port;
 *   - one port for all of them: with PORT 0 the kernel picks it for the
 *     first address and the others bind the same one; if it is taken on a
 *     later address, the kernel picks again, at most LISTENERS_PORT_TRIES
 *     times (each rejected port stays held until the end, or the kernel
 *     could pick it again and again);
 *   - an address this computer does not have -- no IPv6 at all
 *     (EAFNOSUPPORT), or no ::1 (EADDRNOTAVAIL) -- is skipped and noted in
 *     `skipped`; it fails only when nothing is left to listen on.  Any
 *     other failure, a port busy on one address among them, fails it all
 *     (closing what it opened): a server answering on 127.0.0.1 while
 *     another program owns [::1] at the same port would split "localhost"
 *     between two programs, depending on which address a client tries first.
 *
 * Errors follow tcp_server_create(): -1 and one line in err that names the
 * call and the address, "bind [::1]:7777: EADDRINUSE (Address already in use)".
 */
#ifndef LISTENERS_H
#define LISTENERS_H

#include "address.h"
#include "tcp_server.h"

#include <stddef.h>

#define LISTENERS_MAX 16          /* addresses listened on, at most (more: an error) */
#define LISTENERS_PORT_TRIES 10   /* kernel picks of PORT 0 before giving up */

struct listener {
    int fd;
    char address[ADDRESS_TEXT_SIZE];   /* "127.0.0.1:7777", "[::1]:7777" */
};

struct listeners {
    int count;                              /* listening sockets in list[] */
    struct listener list[LISTENERS_MAX];
    char skipped[TCP_SERVER_ERR_SIZE];      /* the addresses this computer does not
                                             * have, and why ("" if none): say it */
};

/* Listens on every address of HOST:PORT (HOST "*" or NULL: every interface).
 * Returns 0 with at least one socket in listeners, or -1 with err set and
 * nothing left open. */
int listeners_open(struct listeners *listeners, const char *host, int port,
                   int backlog, char *err, size_t err_size);

/* The listener whose address this is (an epoll event's data.ptr), or NULL. */
struct listener *listener_at(struct listeners *listeners, const void *ptr);

/* Closes every listening socket. */
void listeners_close(struct listeners *listeners);

#endif
