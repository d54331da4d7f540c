/* listeners.c -- see listeners.h. */
#include "listeners.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The second result of one try: the port picked for an earlier address
 * was taken on a later one. */
#define PICK_AGAIN (-2)

/* Errors that mean "this computer has no such address", not "something is
 * wrong": a kernel without IPv6, or no ::1 on loopback. */
static bool not_on_this_computer(int errnum)
{
    return errnum == EAFNOSUPPORT || errnum == EPROTONOSUPPORT
           || errnum == EADDRNOTAVAIL;
}

static void set_port(struct sockaddr *addr, int port)
{
    if (addr->sa_family == AF_INET)
        ((struct sockaddr_in *)addr)->sin_port = htons((unsigned short)port);
    else if (addr->sa_family == AF_INET6)
        ((struct sockaddr_in6 *)addr)->sin6_port = htons((unsigned short)port);
}

static int port_of(int fd)
{
    struct sockaddr_storage local;
    socklen_t local_len = sizeof local;
    if (getsockname(fd, (struct sockaddr *)&local, &local_len) == -1)
        return -1;
    if (local.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&local)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&local)->sin6_port);
}

/* The same IP address (whatever the port)? */
static bool same_address(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family)
        return false;
    if (a->sa_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
                      &((const struct sockaddr_in *)b)->sin_addr, sizeof(struct in_addr)) == 0;
    const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)a;
    const struct sockaddr_in6 *b6 = (const struct sockaddr_in6 *)b;
    return a->sa_family == AF_INET6 && a6->sin6_scope_id == b6->sin6_scope_id
           && memcmp(&a6->sin6_addr, &b6->sin6_addr, sizeof(struct in6_addr)) == 0;
}

/* Has getaddrinfo() listed this address before `ai` already? */
static bool listed_before(const struct addrinfo *addresses, const struct addrinfo *ai)
{
    for (const struct addrinfo *other = addresses; other != ai; other = other->ai_next)
        if (same_address(other->ai_addr, ai->ai_addr))
            return true;
    return false;
}

/* Steps 1-4 on one address, plus IPV6_V6ONLY.  Returns the listening
 * socket, or -1 with *failed_call naming the call and errno saying why. */
static int listen_on(const struct addrinfo *ai, int backlog, const char **failed_call)
{
    const int on = 1;
    /* Close-on-exec from the start: a program this server ever ran would
     * otherwise inherit the listening socket, and hold the port. */
#ifdef SOCK_CLOEXEC
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
#else
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd != -1 && fcntl(fd, F_SETFD, FD_CLOEXEC) == -1) {
        close(fd);
        fd = -1;
    }
#endif
    if (fd == -1)
        *failed_call = "socket";
    else if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) == -1)
        *failed_call = "setsockopt SO_REUSEADDR";
    else if (ai->ai_family == AF_INET6
             && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on) == -1)
        *failed_call = "setsockopt IPV6_V6ONLY";
    else if (bind(fd, ai->ai_addr, ai->ai_addrlen) == -1)
        *failed_call = "bind";
    else if (listen(fd, backlog) == -1)
        *failed_call = "listen";
    else
        return fd;

    int saved_errno = errno;
    if (fd != -1)
        close(fd);
    errno = saved_errno;
    return -1;
}

/* Appends text to the list in buf (size bytes), after "; ", as much as fits. */
static void append(char *buf, size_t size, const char *text)
{
    size_t used = strlen(buf);
    const char *parts[] = { used > 0 ? "; " : "", text };
    for (size_t p = 0; p < 2; p++) {
        size_t length = strlen(parts[p]);
        if (length > size - 1 - used)
            length = size - 1 - used;
        memcpy(buf + used, parts[p], length);
        used += length;
    }
    buf[used] = '\0';
}

/* One try at listening on every address with one port.  Returns 0, -1, or
 * PICK_AGAIN when `port` is 0 and the port the kernel picked for the first
 * socket is taken on a later address: then everything is closed but that
 * first socket, left in *rejected_fd to hold the port while the kernel picks
 * again (or it would pick the same one). */
static int listen_on_every_address(struct listeners *listeners, struct addrinfo *addresses,
                                   int port, int backlog, int *rejected_fd,
                                   char *err, size_t err_size)
{
    int port_for_all = port;
    listeners->count = 0;
    listeners->skipped[0] = '\0';

    for (struct addrinfo *ai = addresses; ai != NULL; ai = ai->ai_next) {
        if (listed_before(addresses, ai))
            continue;
        set_port(ai->ai_addr, port_for_all);
        if (listeners->count == LISTENERS_MAX) {
            char address[ADDRESS_TEXT_SIZE];
            format_address(ai->ai_addr, ai->ai_addrlen, address, sizeof address);
            snprintf(err, err_size, "%s: HOST names more than %d addresses: give one of them",
                     address, LISTENERS_MAX);
            listeners_close(listeners);
            return -1;
        }

        const char *failed_call = NULL;
        int fd = listen_on(ai, backlog, &failed_call);
        if (fd == -1) {
            int errnum = errno;
            char why[TCP_SERVER_ERR_SIZE];
            format_call_error(why, sizeof why, failed_call, ai->ai_addr, ai->ai_addrlen,
                              errnum);
            if (not_on_this_computer(errnum)) {
                append(listeners->skipped, sizeof listeners->skipped, why);
                continue;
            }
            snprintf(err, err_size, "%s", why);
            if (port == 0 && port_for_all != 0 && errnum == EADDRINUSE
                && strcmp(failed_call, "bind") == 0) {
                *rejected_fd = listeners->list[0].fd;
                listeners->list[0].fd = -1;
                listeners_close(listeners);
                return PICK_AGAIN;
            }
            listeners_close(listeners);
            return -1;
        }

        struct listener *listener = &listeners->list[listeners->count++];
        listener->fd = fd;
        if (format_local_address(fd, listener->address, sizeof listener->address) == -1
            || (port_for_all == 0 && (port_for_all = port_of(fd)) == -1)) {
            format_call_error(err, err_size, "getsockname", ai->ai_addr, ai->ai_addrlen,
                              errno);
            listeners_close(listeners);
            return -1;
        }
    }

    if (listeners->count == 0) {
        /* Nothing this computer has: say what was tried, and why each failed. */
        snprintf(err, err_size, "%s", listeners->skipped);
        return -1;
    }
    return 0;
}

int listeners_open(struct listeners *listeners, const char *host, int port,
                   int backlog, char *err, size_t err_size)
{
    listeners->count = 0;
    listeners->skipped[0] = '\0';
    struct addrinfo *addresses;
    if (resolve_server_address(host, port, &addresses, err, err_size) == -1)
        return -1;

    int result = PICK_AGAIN;
    /* The sockets holding the ports tried: the first `tries` of them (set to
     * 0 first, as gcc -fanalyzer and cppcheck cannot tell the rest is unread). */
    int rejected[LISTENERS_PORT_TRIES] = { 0 };
    int tries = 0;
    while (result == PICK_AGAIN && tries < LISTENERS_PORT_TRIES) {
        result = listen_on_every_address(listeners, addresses, port, backlog,
                                         &rejected[tries], err, err_size);
        if (result == PICK_AGAIN)
            tries++;
    }
    for (int i = 0; i < tries; i++)
        close(rejected[i]);
    if (result == PICK_AGAIN) {
        char why[TCP_SERVER_ERR_SIZE];
        snprintf(why, sizeof why, "%s (the kernel picked %d ports, each taken on another "
                 "address)", err, LISTENERS_PORT_TRIES);
        snprintf(err, err_size, "%s", why);
        result = -1;
    }
    freeaddrinfo(addresses);
    return result;
}

struct listener *listener_at(struct listeners *listeners, const void *ptr)
{
    for (int i = 0; i < listeners->count; i++)
        if (ptr == &listeners->list[i])
            return &listeners->list[i];
    return NULL;
}

void listeners_close(struct listeners *listeners)
{
    for (int i = 0; i < listeners->count; i++)
        if (listeners->list[i].fd != -1)
            close(listeners->list[i].fd);
    listeners->count = 0;
}
