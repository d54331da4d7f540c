/*
 * flood.c -- a connection flood, for tests/servers/test_hostile_world.py.
 *
 * Starts BURST non-blocking connects to HOST:PORT at once, lets the
 * handshakes complete for a moment, then resets them all (SO_LINGER 0,
 * so that no port waits in TIME-WAIT), and again, for SECONDS or until
 * MAX connects were started, whichever comes first.  Then prints how many
 * it started.  A Python loop connecting one at a time cannot refill a
 * server's accept queue as fast as the server empties it; this can.
 *
 *     flood 127.0.0.1 7777 5 200000
 *
 * The tests run it in their own network namespace, against loopback only.
 */
#define _GNU_SOURCE   /* NOLINT(bugprone-reserved-identifier): SOCK_NONBLOCK, glibc's name for it */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BURST 256

static double seconds_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static long number(const char *text, const char *what, long min, long max)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE || value < min || value > max) {
        fprintf(stderr, "flood: %s '%s': a whole number from %ld to %ld\n", what, text, min, max);
        exit(2);
    }
    return value;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: flood HOST PORT SECONDS MAX\n");
        return 2;
    }
    struct sockaddr_in server = { .sin_family = AF_INET };
    if (inet_pton(AF_INET, argv[1], &server.sin_addr) != 1) {
        fprintf(stderr, "flood: host '%s': an IPv4 address\n", argv[1]);
        return 2;
    }
    server.sin_port = htons((unsigned short)number(argv[2], "port", 1, 65535));
    double end = seconds_now() + (double)number(argv[3], "seconds", 1, 60);
    long most = number(argv[4], "max", 1, 10000000);

    const struct linger reset = { .l_onoff = 1, .l_linger = 0 };
    long started = 0;
    while (started < most && seconds_now() < end) {
        int fds[BURST];
        int count = 0;
        for (; count < BURST && started < most; count++, started++) {
            fds[count] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            if (fds[count] == -1) {
                perror("flood: socket");
                return 1;
            }
            if (setsockopt(fds[count], SOL_SOCKET, SO_LINGER, &reset, sizeof reset) == -1) {
                perror("flood: setsockopt SO_LINGER");
                return 1;
            }
            if (connect(fds[count], (const struct sockaddr *)&server, sizeof server) == -1
                && errno != EINPROGRESS && errno != EAGAIN) {
                perror("flood: connect");
                return 1;
            }
        }
        /* A moment for the handshakes: the kernel completes them, and the
         * server's queue fills, without anyone calling accept(). */
        const struct timespec moment = { .tv_sec = 0, .tv_nsec = 2000000 };
        nanosleep(&moment, NULL);
        for (int i = 0; i < count; i++)
            close(fds[i]);
    }
    printf("%ld\n", started);
    return 0;
}
