/* address.c -- see address.h. */
#include "address.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* text as an error message may repeat it: on one line whatever it holds (a
 * tab or a newline shows as \t or \n, other control bytes as \xNN, and a
 * backslash doubles so that what is shown reads one way only), cut with
 * "..." where shown (at least 8 bytes) is full.  Printable text shows as it
 * is, so the usual messages are what they always were. */
void show_text(const char *text, char *shown, size_t shown_size)
{
    size_t room = shown_size - sizeof "...";
    size_t used = 0;
    const char *next = text;
    for (; *next != '\0'; next++) {
        unsigned char byte = (unsigned char)*next;
        char piece[8];
        if (byte == '\t')
            snprintf(piece, sizeof piece, "\\t");
        else if (byte == '\n')
            snprintf(piece, sizeof piece, "\\n");
        else if (byte == '\\')
            snprintf(piece, sizeof piece, "\\\\");
        else if (byte < 0x20 || byte == 0x7f)
            snprintf(piece, sizeof piece, "\\x%02x", byte);
        else
            snprintf(piece, sizeof piece, "%c", byte);
        size_t length = strlen(piece);
        if (used + length > room)
            break;
        memcpy(shown + used, piece, length);
        used += length;
    }
    if (*next != '\0') {
        memcpy(shown + used, "...", 3);
        used += 3;
    }
    shown[used] = '\0';
}

int resolve_server_address(const char *host, int port, struct addrinfo **list,
                           char *err, size_t err_size)
{
    if (port < 0 || port > 65535) {
        /* LuaSocket quietly wraps 99999 to 34463; refuse instead. */
        snprintf(err, err_size, "port %d: out of range (0-65535)", port);
        return -1;
    }
    /* LuaSocket spells "all interfaces" as "*"; getaddrinfo wants NULL. */
    const char *node = (host == NULL || strcmp(host, "*") == 0) ? NULL : host;
    char service[16];
    snprintf(service, sizeof service, "%d", port);

    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;       /* IPv4 or IPv6, whatever HOST is */
    hints.ai_socktype = SOCK_STREAM;   /* TCP */
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;

    int rc = getaddrinfo(node, service, &hints, list);
    if (rc != 0) {
        /* EAI_SYSTEM keeps its real reason in errno; the others have their own. */
        const char *reason = rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc);
        char shown[128];   /* HOST may hold anything: a terminal's escape bytes too */
        show_text(node ? node : "*", shown, sizeof shown);
        snprintf(err, err_size, "getaddrinfo %s:%d: %s", shown, port, reason);
        return -1;
    }
    return 0;
}

char *format_address(const struct sockaddr *addr, socklen_t addr_len,
                     char *buf, size_t buf_size)
{
    char host[INET6_ADDRSTRLEN];
    char service[8];
    int rc = getnameinfo(addr, addr_len, host, sizeof host, service,
                         sizeof service, NI_NUMERICHOST | NI_NUMERICSERV);
    if (rc != 0)
        snprintf(buf, buf_size, "(%s address)", family_name(addr->sa_family));
    else if (addr->sa_family == AF_INET6)
        snprintf(buf, buf_size, "[%s]:%s", host, service);
    else
        snprintf(buf, buf_size, "%s:%s", host, service);
    return buf;
}

int format_local_address(int fd, char *buf, size_t buf_size)
{
    struct sockaddr_storage local;
    socklen_t local_len = sizeof local;
    if (getsockname(fd, (struct sockaddr *)&local, &local_len) == -1)
        return -1;
    format_address((struct sockaddr *)&local, local_len, buf, buf_size);
    return 0;
}

const char *family_name(int family)
{
    switch (family) {
    case AF_INET:  return "IPv4";
    case AF_INET6: return "IPv6";
    }
    return "unknown family";
}

const char *errno_name(int errnum)
{
    /* The errors a learner meets in this course.  glibc's strerrorname_np()
     * would do, but it is not POSIX and musl lacks it. */
    static const struct { int number; const char *name; } names[] = {
        { EACCES, "EACCES" },           { EADDRINUSE, "EADDRINUSE" },
        { EADDRNOTAVAIL, "EADDRNOTAVAIL" }, { EAFNOSUPPORT, "EAFNOSUPPORT" },
        { EAGAIN, "EAGAIN" },           { EBADF, "EBADF" },
        { ECONNABORTED, "ECONNABORTED" }, { ECONNREFUSED, "ECONNREFUSED" },
        { ECONNRESET, "ECONNRESET" },   { EINTR, "EINTR" },
        { EINVAL, "EINVAL" },           { EMFILE, "EMFILE" },
        { ENFILE, "ENFILE" },           { ENOBUFS, "ENOBUFS" },
        { ENOSYS, "ENOSYS" },           /* the workspace skeletons' placeholder */
        { ENOMEM, "ENOMEM" },           { ENOPROTOOPT, "ENOPROTOOPT" },
        { ENOTSOCK, "ENOTSOCK" },       { EOPNOTSUPP, "EOPNOTSUPP" },
        { EPERM, "EPERM" },             { EPIPE, "EPIPE" },
        { EPROTONOSUPPORT, "EPROTONOSUPPORT" }, { ETIMEDOUT, "ETIMEDOUT" },
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].number == errnum)
            return names[i].name;
    return "unnamed errno";   /* strerror() still says what it means */
}

void format_call_error(char *err, size_t err_size, const char *call,
                       const struct sockaddr *addr, socklen_t addr_len,
                       int errnum)
{
    char where[ADDRESS_TEXT_SIZE + 1] = "";
    if (addr != NULL) {
        where[0] = ' ';
        format_address(addr, addr_len, where + 1, sizeof where - 1);
    }
    snprintf(err, err_size, "%s%s: %s (%s)", call, where, errno_name(errnum),
             strerror(errnum));
}

void print_call_error(const char *program, const char *call, int errnum)
{
    fprintf(stderr, "%s: %s: %s (%s)\n", program, call, errno_name(errnum),
            strerror(errnum));
}
