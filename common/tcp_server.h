/*
 * tcp_server.h -- steps 1 to 4 in one call.
 *
 * The C twin of the classic Lua helper
 *
 *     function createTCPServer(host, port, backlog)
 *         local server, err = socket.tcp()            -- step 1: socket()
 *         if not server then return nil, err end
 *         server:setoption("reuseaddr", true)          -- step 2: setsockopt()
 *         local ok, err = server:bind(host, port)      -- step 3: bind()
 *         if not ok then return nil, err end
 *         ok, err = server:listen(backlog)             -- step 4: listen()
 *         if not ok then return nil, err end
 *         return server
 *     end
 *
 * but checking every call (that unchecked setoption fails in silence with
 * LuaSocket's socket.tcp(): docs/02_reuseaddr.md), and with Redis' anet.c error convention: the
 * caller passes a buffer, and a failure returns -1 with one line in it that
 * names the call, the address and the errno name:
 *
 *     bind 127.0.0.1:7777: EADDRINUSE (Address already in use)
 *
 * HOST "*" (or NULL) means every interface, "localhost" only this computer.
 * PORT 0 lets the kernel pick a free port (ask getsockname() which).
 * Every address getaddrinfo() returns is tried in turn; the first that gets
 * all the way to listen() wins, as in the Lua helper.  So the socket is on
 * ONE address: for "*" 0.0.0.0 (glibc lists it first), for "localhost"
 * whatever /etc/hosts lists first (::1 in Debian's, Fedora's and Docker's).
 * listeners.h, for steps 6-8, listens on every address instead.  Nothing
 * leaks on any failure path.
 */
#ifndef TCP_SERVER_H
#define TCP_SERVER_H

#include <stddef.h>

/* Enough for any message tcp_server_create() writes. */
#define TCP_SERVER_ERR_SIZE 256

int tcp_server_create(const char *host, int port, int backlog,
                      char *err, size_t err_size);

#endif
