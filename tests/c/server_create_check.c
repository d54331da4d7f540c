/*
 * server_create_check -- drives tcp_server_create() for the tests.
 *
 *     server_create_check HOST PORT BACKLOG [FAIL_CALL ERRNO_NAME [TIMES]]
 *
 * Calls tcp_server_create(HOST, PORT, BACKLOG) once and prints
 *     listening on ADDR:PORT          or      error: MESSAGE
 * then "descriptors: N before, M after" (M is counted after closing the
 * listening socket, so a leak shows as M > N).  Exit 0 on success, 1 on error.
 *
 * Some failures are hard to cause for real (setsockopt, listen), so the
 * Makefile links this program with -Wl,--wrap=socket,setsockopt,bind,listen:
 * with FAIL_CALL set, that call fails with ERRNO_NAME (EINVAL, ENOBUFS,
 * EADDRINUSE, EMFILE, ENOPROTOOPT): the first TIMES calls, or every one.
 */
#include "address.h"
#include "tcp_server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct injected_failure {
    const char *call;   /* NULL: no failure */
    int errnum;
    int times;          /* calls left to fail; -1: every one */
};

/* The wrappers below are called by tcp_server_create() and cannot take an
 * argument from main(), so this one setting has to be file scope. */
static struct injected_failure failure;

static int should_fail(const char *call)
{
    if (failure.call == NULL || strcmp(failure.call, call) != 0)
        return 0;
    if (failure.times == 0)
        return 0;
    if (failure.times > 0)
        failure.times--;
    errno = failure.errnum;
    return 1;
}

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
    static const int known[] = { EINVAL, ENOBUFS, EADDRINUSE, EMFILE, ENOPROTOOPT };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(errno_name(known[i]), name) == 0)
            return known[i];
    fprintf(stderr, "unknown errno name %s\n", name);
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 6 && argc != 7) {
        fprintf(stderr, "usage: %s HOST PORT BACKLOG [FAIL_CALL ERRNO_NAME [TIMES]]\n", argv[0]);
        return 2;
    }
    if (argc >= 6) {
        failure.call = argv[4];
        failure.errnum = errno_from_name(argv[5]);
        failure.times = argc == 7 ? atoi(argv[6]) : -1;
    }

    int before = open_descriptor_count();
    char err[TCP_SERVER_ERR_SIZE];
    int listen_fd = tcp_server_create(argv[1], atoi(argv[2]), atoi(argv[3]), err, sizeof err);
    if (listen_fd == -1) {
        printf("error: %s\n", err);
    } else {
        char local[ADDRESS_TEXT_SIZE];
        if (format_local_address(listen_fd, local, sizeof local) == -1)
            strcpy(local, "(getsockname failed)");
        printf("listening on %s\n", local);
        close(listen_fd);
    }
    printf("descriptors: %d before, %d after\n", before, open_descriptor_count());
    return listen_fd == -1 ? 1 : 0;
}
