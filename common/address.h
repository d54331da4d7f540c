/*
 * address.h -- resolving and naming socket addresses, for every step.
 *
 * Each step needs the same three chores that are not its lesson: turn HOST
 * and PORT into a list of socket addresses, print an address the way a human
 * reads it ("127.0.0.1:7777", "[::1]:7777"), and say which call failed on
 * which address and why ("bind 127.0.0.1:7777: EADDRINUSE (Address already
 * in use)").  They live here so the step programs can stay on their one call.
 */
#ifndef ADDRESS_H
#define ADDRESS_H

#include <stddef.h>
#include <sys/socket.h>
#include <netdb.h>

/* Longest text format_address() writes: "[" IPv6 "]:" port, plus the NUL. */
#define ADDRESS_TEXT_SIZE 64

/*
 * The addresses a server on HOST:PORT may bind, as getaddrinfo() lists them
 * (AI_PASSIVE, TCP).  HOST "*" or NULL means every interface.  Returns 0 and
 * a list to free with freeaddrinfo(), or -1 with a one-line reason in err
 * (a PORT outside 0-65535 is one: "port 99999: out of range (0-65535)").
 */
int resolve_server_address(const char *host, int port, struct addrinfo **list,
                           char *err, size_t err_size);

/* "127.0.0.1:7777" or "[::1]:7777", numeric; returns buf. */
char *format_address(const struct sockaddr *addr, socklen_t addr_len,
                     char *buf, size_t buf_size);

/* The socket's own address, from getsockname(), formatted; -1 on error. */
int format_local_address(int fd, char *buf, size_t buf_size);

/* text as an error message may repeat it, into shown: on one line whatever
 * it holds (a tab or a newline shows as \t or \n, other control bytes as
 * \xNN, a backslash doubles), cut with "..." where shown (at least 8
 * bytes) is full.  Printable text shows as it is. */
void show_text(const char *text, char *shown, size_t shown_size);

/* "IPv4", "IPv6" or "unknown family". */
const char *family_name(int family);

/* "EADDRINUSE" for EADDRINUSE; "unnamed errno" for one it does not list. */
const char *errno_name(int errnum);

/* err = "CALL ADDRESS: ENAME (strerror text)", the course's error format;
 * "CALL: ENAME (...)" when addr is NULL (a call on no address). */
void format_call_error(char *err, size_t err_size, const char *call,
                       const struct sockaddr *addr, socklen_t addr_len,
                       int errnum);

/* Prints "PROGRAM: CALL: ENAME (strerror text)" on stderr: a call that failed
 * on no address in particular (epoll_create1, poll, fcntl ...). */
void print_call_error(const char *program, const char *call, int errnum);

#endif
