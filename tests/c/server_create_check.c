/*
 * server_create_check -- drives tcp_server_create() or listeners_open() for
 * the tests.
 *
 *     server_create_check [--all] HOST PORT BACKLOG [FAIL_CALL ERRNO_NAME [TIMES [AFTER]]]
 *
 * Calls tcp_server_create(HOST, PORT, BACKLOG) once (with --all:
 * listeners_open(), steps 6-8's socket on every address) and prints
 *     listening on ADDR:PORT          (a line per socket)
 *     skipped: WHAT                   (--all, if it skipped an address)
 * or  error: MESSAGE
 * then "descriptors: N before, M after" (M is counted after closing the
 * listening sockets, so a leak shows as M > N).  Exit 0 on success, 1 on error.
 *
 * Some failures are hard to cause for real (setsockopt, listen), so the
 * Makefile links this program with -Wl,--wrap=socket,setsockopt,bind,listen:
 * with FAIL_CALL set, that call fails with ERRNO_NAME (EINVAL, ENOBUFS,
 * EADDRINUSE, EADDRNOTAVAIL, EAFNOSUPPORT, EMFILE, ENOPROTOOPT): after AFTER
 * calls that succeed (default 0), the next TIMES calls, or every one.
 */
#include "address.h"
#include "listeners.h"
#include "tcp_server.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct injected_failure {
    const char *call;   /* NULL: no failure */
    int errnum;
    int after;          /* calls left to succeed first */
    int times;          /* calls left to fail then; -1: every one */
};

/* The wrappers below are called by tcp_server_create() and cannot take an
 * argument from main(), so this one setting has to be file scope. */
static struct injected_failure failure;

static int should_fail(const char *call)
{
    if (failure.call == NULL || strcmp(failure.call, call) != 0)
        return 0;
    if (failure.after > 0) {
        failure.after--;
        return 0;
    }
    if (failure.times == 0)
        return 0;
    if (failure.times > 0)
        failure.times--;
    errno = failure.errnum;
    return 1;
}

/* ld --wrap=NAME links calls to NAME to __wrap_NAME, and __real_NAME to the
 * real one: the linker chooses these names. */
/* NOLINTBEGIN(bugprone-reserved-identifier): names ld --wrap requires */
int __real_socket(int domain, int type, int protocol);
int __real_setsockopt(int fd, int level, int name, const void *value, socklen_t len);
int __real_bind(int fd, const struct sockaddr *addr, socklen_t len);
int __real_listen(int fd, int backlog);

int __wrap_socket(int domain, int type, int protocol)
{
    return should_fail("socket") ? -1 : __real_socket(domain, type, protocol);
}

int __wrap_setsockopt(int fd, int level, int name, const void *value, socklen_t len)
{
    return should_fail("setsockopt") ? -1 : __real_setsockopt(fd, level, name, value, len);
}

int __wrap_bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    return should_fail("bind") ? -1 : __real_bind(fd, addr, len);
}

int __wrap_listen(int fd, int backlog)
{
    return should_fail("listen") ? -1 : __real_listen(fd, backlog);
}
/* NOLINTEND(bugprone-reserved-identifier) */

/* A whole number from the command line; anything else is a mistake in the
 * test that ran us, not a case to check (atoi would read it as 0). */
static int number(const char *text)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno != 0 || value < INT_MIN || value > INT_MAX) {
        fprintf(stderr, "server_create_check: '%s': not a whole number\n", text);
        exit(2);
    }
    return (int)value;
}

static int open_descriptor_count(void)
{
    int count = 0;
    for (int fd = 0; fd < 1024; fd++)
        if (fcntl(fd, F_GETFD) != -1)
            count++;
    return count;
}

static int errno_from_name(const char *name)
{
    static const int known[] = { EINVAL, ENOBUFS, EADDRINUSE, EADDRNOTAVAIL, EAFNOSUPPORT,
                                 EMFILE, ENOPROTOOPT };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(errno_name(known[i]), name) == 0)
            return known[i];
    fprintf(stderr, "unknown errno name %s\n", name);
    exit(2);
}

/* tcp_server_create(): prints its socket's address and closes it; -1 on error. */
static int check_one(const char *host, int port, int backlog, char *err, size_t err_size)
{
    int listen_fd = tcp_server_create(host, port, backlog, err, err_size);
    if (listen_fd == -1)
        return -1;
    char local[ADDRESS_TEXT_SIZE];
    if (format_local_address(listen_fd, local, sizeof local) == -1)
        strcpy(local, "(getsockname failed)");
    printf("listening on %s\n", local);
    close(listen_fd);
    return 0;
}

/* listeners_open(): prints each socket's address and what it skipped. */
static int check_all(const char *host, int port, int backlog, char *err, size_t err_size)
{
    struct listeners listeners;
    if (listeners_open(&listeners, host, port, backlog, err, err_size) == -1)
        return -1;
    for (int l = 0; l < listeners.count; l++) {
        char local[ADDRESS_TEXT_SIZE];
        if (format_local_address(listeners.list[l].fd, local, sizeof local) == -1
            || strcmp(local, listeners.list[l].address) != 0)
            printf("wrong address: %s\n", listeners.list[l].address);
        printf("listening on %s\n", local);
    }
    if (listeners.skipped[0] != '\0')
        printf("skipped: %s\n", listeners.skipped);
    listeners_close(&listeners);
    return 0;
}

int main(int argc, char **argv)
{
    int (*check)(const char *, int, int, char *, size_t) = check_one;
    if (argc > 1 && strcmp(argv[1], "--all") == 0) {
        check = check_all;
        argc--;
        argv++;
    }
    if (argc != 4 && (argc < 6 || argc > 8)) {
        fprintf(stderr, "usage: server_create_check [--all] HOST PORT BACKLOG "
                        "[FAIL_CALL ERRNO_NAME [TIMES [AFTER]]]\n");
        return 2;
    }
    if (argc >= 6) {
        failure.call = argv[4];
        failure.errnum = errno_from_name(argv[5]);
        failure.times = argc >= 7 ? number(argv[6]) : -1;
        failure.after = argc >= 8 ? number(argv[7]) : 0;
    }

    int before = open_descriptor_count();
    char err[TCP_SERVER_ERR_SIZE];
    int result = check(argv[1], number(argv[2]), number(argv[3]), err, sizeof err);
    if (result == -1)
        printf("error: %s\n", err);
    printf("descriptors: %d before, %d after\n", before, open_descriptor_count());
    return result == -1 ? 1 : 0;
}
