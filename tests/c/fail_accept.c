/*
 * fail_accept.c -- make a server's accept() fail on purpose, for the tests.
 *
 * Some accept() failures are hard to cause for real: ENETDOWN needs a
 * network that goes down while a client waits in the queue.  This small
 * library stands in for accept() when it is loaded first:
 *
 *     cc -shared -fPIC -o fail_accept.so tests/c/fail_accept.c -ldl
 *     FAIL_ACCEPT_ERRNO=ENETDOWN FAIL_ACCEPT_TIMES=1 \
 *         LD_PRELOAD=./fail_accept.so build/05_accept 127.0.0.1 7777
 *
 * The first FAIL_ACCEPT_TIMES calls (default 1) fail with FAIL_ACCEPT_ERRNO;
 * every later call is the real accept().  A failing call does what Linux
 * does for that error:
 *
 *   - a connection's own trouble (ECONNABORTED, and the pending network
 *     errors man 2 accept lists: ENETDOWN, EPROTO, ENOPROTOOPT, EHOSTDOWN,
 *     ENONET, EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH): the real accept()
 *     takes the next client off the queue first, and that client is lost
 *     (closed here), so the failure comes when a client arrives;
 *   - anything else (EINTR, EBADF, EMFILE, ENOMEM ...): it fails at once and
 *     the queue is left as it was.
 *
 * Each failure is announced on stdout, between the server's own lines
 * ("fail_accept: accept() fails with ENETDOWN (1 of 1)"), so a test can
 * tell the library did its work, and when.
 * Under AddressSanitizer, also set ASAN_OPTIONS=verify_asan_link_order=0:
 * this library is loaded before the sanitizer's.
 */
#define _GNU_SOURCE   /* NOLINT(bugprone-reserved-identifier): glibc names it; RTLD_NEXT */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct error_name {
    const char *name;
    int number;
    int takes_a_client;   /* Linux reports it for one connection, dequeued */
};

static const struct error_name ERRORS[] = {
    {"ECONNABORTED", ECONNABORTED, 1}, {"ENETDOWN", ENETDOWN, 1},
    {"EPROTO", EPROTO, 1},             {"ENOPROTOOPT", ENOPROTOOPT, 1},
    {"EHOSTDOWN", EHOSTDOWN, 1},       {"ENONET", ENONET, 1},
    {"EHOSTUNREACH", EHOSTUNREACH, 1}, {"EOPNOTSUPP", EOPNOTSUPP, 1},
    {"ENETUNREACH", ENETUNREACH, 1},   {"EINTR", EINTR, 0},
    {"EBADF", EBADF, 0},               {"EINVAL", EINVAL, 0},
    {"EMFILE", EMFILE, 0},             {"ENFILE", ENFILE, 0},
    {"ENOBUFS", ENOBUFS, 0},           {"ENOMEM", ENOMEM, 0},
};

typedef int accept_function(int, struct sockaddr *, socklen_t *);

static long failures_done;

/* The error to fail with, or NULL when none is asked for (or it is unknown:
 * then say so once and leave accept() alone). */
static const struct error_name *wanted_error(void)
{
    static int warned;
    const char *name = getenv("FAIL_ACCEPT_ERRNO");
    if (name == NULL || name[0] == '\0')
        return NULL;
    for (size_t i = 0; i < sizeof ERRORS / sizeof ERRORS[0]; i++)
        if (strcmp(ERRORS[i].name, name) == 0)
            return &ERRORS[i];
    if (!warned) {
        fprintf(stderr, "fail_accept: FAIL_ACCEPT_ERRNO=%s: not an error this library knows\n",
                name);
        warned = 1;
    }
    return NULL;
}

static long wanted_times(void)
{
    const char *text = getenv("FAIL_ACCEPT_TIMES");
    if (text == NULL || text[0] == '\0')
        return 1;
    char *end;
    long times = strtol(text, &end, 10);
    return (*end == '\0' && times >= 0) ? times : 1;
}

int accept(int fd, struct sockaddr *addr, socklen_t *addr_len)
{
    accept_function *real_accept = (accept_function *)dlsym(RTLD_NEXT, "accept");
    if (real_accept == NULL) {
        fprintf(stderr, "fail_accept: dlsym accept: %s\n", dlerror());
        errno = ENOSYS;
        return -1;
    }
    const struct error_name *error = wanted_error();
    long times = wanted_times();
    if (error == NULL || failures_done >= times)
        return real_accept(fd, addr, addr_len);

    if (error->takes_a_client) {
        int client = real_accept(fd, addr, addr_len);
        if (client == -1)
            return -1;          /* a real failure: report that one instead */
        close(client);          /* the connection this error was about is gone */
    }
    failures_done++;
    printf("fail_accept: accept() fails with %s (%ld of %ld)\n",
           error->name, failures_done, times);
    fflush(stdout);
    errno = error->number;
    return -1;
}
