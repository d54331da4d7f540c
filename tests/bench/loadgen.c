/*
 * loadgen: a closed-loop load generator for the echo servers (make bench).
 *
 *     loadgen [--clients N] [--size S] [--warmup SEC] [--duration SEC]
 *             [--idle K] [--server-pid PID] [--connect-timeout SEC] HOST PORT
 *
 * N clients each send a message of S bytes and wait until the whole message
 * has come back before sending the next one (a closed loop: the load is what
 * the server can answer, never more).  The first --warmup seconds are not
 * counted; then, for --duration seconds, every round trip that ends in the
 * window is counted and its latency (first byte sent to last byte back)
 * goes into a histogram.
 *
 * Every echoed byte is compared with the byte sent.  Each message is
 * pseudo-random bytes drawn from a seed made of the client's number and the
 * message's number, so a byte that comes back on the wrong connection, in
 * another message, or shifted by one place does not match.  The first
 * mismatch is described on stderr and ends the run: exit status 1.
 *
 * --idle K first opens K more connections, each of which sends one message,
 * checks its echo, and then stays silent to the end (the load that costs
 * poll() and not epoll).  They are opened before the N clients.
 *
 * With --server-pid, it also reads the server's CPU time (utime + stime in
 * /proc/PID/stat) at both ends of the measurement window, and its resident
 * memory (VmRSS in /proc/PID/status) before connecting, once the idle
 * connections are open, and at the end of the window.
 *
 * It prints one line on stdout, "loadgen key=value ...", for
 * tests/bench/bench_echo.py (the keys: the printf at the end of main(); times in
 * seconds or microseconds, memory in KiB, -1 for what could not be read).
 * Exit status: 0; or 1 if anything went wrong (a mismatch, a reset, a
 * connection closed by the server, a connect that failed or timed out), the
 * line still printed; or 2 for bad usage.
 *
 * Bounded: connects are started at most CONNECT_WINDOW at a time and must
 * all finish within --connect-timeout; the rest is warm-up plus duration.
 * Nothing waits without a deadline, and it stops by itself.  At the end
 * every connection is closed with a reset (SO_LINGER 0): a benchmark that
 * makes a few hundred thousand connections in minutes would otherwise leave
 * tens of thousands in TIME_WAIT, holding local ports the next run needs.
 * It sets TCP_NODELAY on its own sockets (a load generator should add no
 * delay of its own); the servers keep their defaults.
 *
 * One thread, Linux epoll, level-triggered.  It raises its own soft limit
 * on open files to the hard limit.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CONNECT_WINDOW 128          /* connects (and first echoes) in flight */
#define MAX_EVENTS 256
#define MAX_SIZE (1 << 20)
#define MAX_CONNECTIONS 1000000

/* -- options ---------------------------------------------------------- */

struct options {
    long clients, size, idle, server_pid;
    double warmup, duration, connect_timeout;
    const char *host, *port;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: loadgen [--clients N] [--size S] [--warmup SEC] [--duration SEC]\n"
            "               [--idle K] [--server-pid PID] [--connect-timeout SEC] HOST PORT\n"
            "  --clients N          clients in a closed loop (default 10)\n"
            "  --size S             bytes per message, 1-%d (default 64)\n"
            "  --warmup SEC         not counted (default 1)\n"
            "  --duration SEC       the measurement window (default 5)\n"
            "  --idle K             silent connections opened first (default 0)\n"
            "  --server-pid PID     read its CPU time and memory from /proc\n"
            "  --connect-timeout SEC  for each phase of connects (default 30)\n",
            MAX_SIZE);
}

static void usage_error(const char *what, const char *value, const char *why)
{
    fprintf(stderr, "loadgen: %s '%s': %s (see loadgen --help)\n", what, value, why);
    exit(2);
}

static long whole_number(const char *option, const char *text, long min, long max)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE || value < min || value > max)
        usage_error(option, text, "not a whole number in range");
    return value;
}

static double seconds(const char *option, const char *text, double min, double max)
{
    char *end;
    errno = 0;
    double value = strtod(text, &end);
    if (end == text || *end != '\0' || errno == ERANGE || !(value >= min && value <= max))
        usage_error(option, text, "not a number of seconds in range");
    return value;
}

static void parse_options(int argc, char **argv, struct options *o)
{
    *o = (struct options){ .clients = 10, .size = 64, .warmup = 1, .duration = 5,
                           .connect_timeout = 30 };
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        const char *option = argv[i];
        if (strcmp(option, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (i + 1 >= argc)
            usage_error("option", option, "no value follows");
        const char *value = argv[i + 1];
        if (strcmp(option, "--clients") == 0)
            o->clients = whole_number(option, value, 1, MAX_CONNECTIONS);
        else if (strcmp(option, "--size") == 0)
            o->size = whole_number(option, value, 1, MAX_SIZE);
        else if (strcmp(option, "--idle") == 0)
            o->idle = whole_number(option, value, 0, MAX_CONNECTIONS);
        else if (strcmp(option, "--server-pid") == 0)
            o->server_pid = whole_number(option, value, 1, INT32_MAX);
        else if (strcmp(option, "--warmup") == 0)
            o->warmup = seconds(option, value, 0, 3600);
        else if (strcmp(option, "--duration") == 0)
            o->duration = seconds(option, value, 0.01, 3600);
        else if (strcmp(option, "--connect-timeout") == 0)
            o->connect_timeout = seconds(option, value, 0.01, 3600);
        else
            usage_error("option", option, "unknown");
    }
    if (argc - i != 2) {
        usage(stderr);
        exit(2);
    }
    o->host = argv[i];
    o->port = argv[i + 1];
}

/* -- time, and the server's /proc ---------------------------------------- */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* utime + stime of process pid, in seconds; -1 if it cannot be read. */
static double server_cpu(long pid)
{
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    /* The command name (field 2) is in parentheses and may hold spaces:
     * count the fields after the last ')'.  State is field 3, utime 14,
     * stime 15 (man 5 proc_pid_stat). */
    char *p = strrchr(text, ')');
    if (p == NULL)
        return -1;
    unsigned long long utime = 0;
    int field = 2;
    char *rest;
    for (char *token = strtok_r(p + 1, " ", &rest); token != NULL;
         token = strtok_r(NULL, " ", &rest)) {
        field++;
        if (field == 14)
            utime = strtoull(token, NULL, 10);
        if (field == 15) {
            unsigned long long stime = strtoull(token, NULL, 10);
            return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
        }
    }
    return -1;
}

/* VmRSS of process pid in KiB; -1 if it cannot be read. */
static long server_rss(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);   /* "VmRSS:   1234 kB" */
            break;
        }
    fclose(f);
    return kib;
}

static double own_cpu(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec)
           + (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/* -- latency histogram ----------------------------------------------------
 * Nanoseconds, in buckets 1/64 of a power of two wide: below 128 ns one
 * bucket per nanosecond, then 64 buckets per doubling (1.6% apart). */

#define SUB_BITS 6
#define BUCKETS ((40 - SUB_BITS) * (1 << SUB_BITS) + (2 << SUB_BITS))

struct histogram {
    uint64_t count[BUCKETS];
    uint64_t total, max_ns;
};

static int bucket_of(uint64_t ns)
{
    int top = 63 - __builtin_clzll(ns | 1);
    int shift = top > SUB_BITS ? top - SUB_BITS : 0;
    uint64_t bucket = ((uint64_t)shift << SUB_BITS) + (ns >> shift);
    return bucket < BUCKETS ? (int)bucket : BUCKETS - 1;
}

/* The middle of a bucket's range, in nanoseconds. */
static double bucket_value(int bucket)
{
    int shift = bucket < (2 << SUB_BITS) ? 0 : (bucket >> SUB_BITS) - 1;
    uint64_t low = (uint64_t)(bucket - (shift << SUB_BITS)) << shift;
    return (double)low + (double)((1ull << shift) - 1) / 2;
}

static void histogram_add(struct histogram *h, uint64_t ns)
{
    h->count[bucket_of(ns)]++;
    h->total++;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

/* The latency below which `fraction` of the round trips fall, in µs. */
static double percentile_us(const struct histogram *h, double fraction)
{
    if (h->total == 0)
        return 0;
    uint64_t rank = (uint64_t)(fraction * (double)h->total);
    if (rank >= h->total)
        rank = h->total - 1;
    uint64_t seen = 0;
    for (int b = 0; b < BUCKETS; b++) {
        seen += h->count[b];
        if (seen > rank)
            return bucket_value(b) / 1000;
    }
    return (double)h->max_ns / 1000;
}

/* -- clients ------------------------------------------------------------ */

enum state { UNUSED, CONNECTING, TALKING, SILENT, GONE };

struct client {
    int fd;
    enum state state;
    bool idle;                 /* echoes once, then stays silent */
    bool want_write;           /* EPOLLOUT is in its interest set */
    bool opening;              /* connecting, or (idle) awaiting its one echo */
    uint32_t number;
    uint64_t message;          /* how many messages it has begun */
    size_t sent, received;
    uint64_t started_ns;       /* when the message in flight was begun */
    unsigned char *expected;   /* the message in flight: what must come back */
};

struct run {
    struct options o;
    int epoll_fd;
    struct client *clients;    /* idle ones first, then the active ones */
    long total;
    unsigned char *scratch;    /* what recv() returns, before comparing */
    bool recording;
    double window_end;
    struct histogram latency;
    uint64_t round_trips;
    long opening;              /* clients being opened (see open_clients) */
    long next_to_open, open_end;
    long mismatches, resets, eofs, connect_failures, other_errors;
};

/* splitmix64: a small, fast generator; good enough to make every message
 * of every client different from every other. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static void fill_message(const struct client *c, unsigned char *out, size_t size)
{
    uint64_t state = ((uint64_t)c->number << 40) ^ c->message ^ 0x5eed5eed5eedull;
    for (size_t i = 0; i < size; i += 8) {
        uint64_t r = next_random(&state);
        size_t n = size - i < 8 ? size - i : 8;
        memcpy(out + i, &r, n);
    }
}

static void set_interest(struct run *r, struct client *c, bool write)
{
    struct epoll_event event = { .events = EPOLLIN | EPOLLRDHUP | (write ? EPOLLOUT : 0),
                                 .data.ptr = c };
    if (epoll_ctl(r->epoll_fd, EPOLL_CTL_MOD, c->fd, &event) == -1) {
        perror("loadgen: epoll_ctl");
        exit(1);
    }
    c->want_write = write;
}

static void done_opening(struct run *r, struct client *c)
{
    if (c->opening) {
        c->opening = false;
        r->opening--;
    }
}

/* Closes c for good, counting why in *counter (if not NULL). */
static void drop(struct run *r, struct client *c, long *counter)
{
    if (counter != NULL)
        (*counter)++;
    done_opening(r, c);
    if (c->fd != -1) {
        struct linger abort_close = { .l_onoff = 1, .l_linger = 0 };
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &abort_close, sizeof abort_close);
        close(c->fd);
    }
    c->fd = -1;
    c->state = GONE;
}

static void error_on(struct run *r, struct client *c, const char *what, int err)
{
    if (err == ECONNRESET || err == EPIPE) {
        drop(r, c, &r->resets);
    } else {
        fprintf(stderr, "loadgen: client %u: %s: %s\n", c->number, what, strerror(err));
        drop(r, c, &r->other_errors);
    }
}

static void start_connect(struct run *r, struct client *c, const struct addrinfo *to)
{
    c->fd = socket(to->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    c->state = CONNECTING;
    c->opening = true;
    r->opening++;
    if (c->fd == -1) {
        fprintf(stderr, "loadgen: socket: %s\n", strerror(errno));
        drop(r, c, &r->connect_failures);
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int flags = fcntl(c->fd, F_GETFL);
    fcntl(c->fd, F_SETFL, flags | O_NONBLOCK);
    if (connect(c->fd, to->ai_addr, to->ai_addrlen) == -1 && errno != EINPROGRESS) {
        fprintf(stderr, "loadgen: connect: %s\n", strerror(errno));
        drop(r, c, &r->connect_failures);
        return;
    }
    struct epoll_event event = { .events = EPOLLOUT, .data.ptr = c };
    if (epoll_ctl(r->epoll_fd, EPOLL_CTL_ADD, c->fd, &event) == -1) {
        perror("loadgen: epoll_ctl");
        exit(1);
    }
    c->want_write = true;
}

/* Sends what the socket takes of the message in flight. */
static void send_some(struct run *r, struct client *c)
{
    size_t size = (size_t)r->o.size;
    ssize_t n = send(c->fd, c->expected + c->sent, size - c->sent, MSG_NOSIGNAL);
    if (n == -1) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            error_on(r, c, "send", errno);
        else if (!c->want_write)
            set_interest(r, c, true);
        return;
    }
    c->sent += (size_t)n;
    bool more = c->sent < size;
    if (more != c->want_write)
        set_interest(r, c, more);
}

static void begin_message(struct run *r, struct client *c)
{
    fill_message(c, c->expected, (size_t)r->o.size);
    c->message++;
    c->sent = c->received = 0;
    c->started_ns = now_ns();
    send_some(r, c);
}

static void report_mismatch(struct run *r, struct client *c, size_t got, size_t offset)
{
    r->mismatches++;
    size_t at = c->received + offset;
    fprintf(stderr,
            "loadgen: MISMATCH on %s client %u, message %llu, byte %zu of %ld: "
            "sent 0x%02x, got 0x%02x (%zu bytes in this read)\n",
            c->idle ? "idle" : "active", c->number, (unsigned long long)c->message - 1,
            at, r->o.size, c->expected[at], r->scratch[offset], got);
}

static void receive_some(struct run *r, struct client *c, double now_s, uint64_t t_ns)
{
    size_t size = (size_t)r->o.size;
    /* A silent connection expects nothing: ask for a byte to see what came. */
    size_t want = c->state == SILENT ? 1 : size - c->received;
    ssize_t n = recv(c->fd, r->scratch, want, 0);
    if (n == -1) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            error_on(r, c, "recv", errno);
        return;
    }
    if (n == 0) {
        fprintf(stderr, "loadgen: %s client %u: closed by the server\n",
                c->idle ? "idle" : "active", c->number);
        drop(r, c, &r->eofs);
        return;
    }
    if (c->state == SILENT) {
        fprintf(stderr, "loadgen: MISMATCH on idle client %u: a byte (0x%02x) after its "
                "one echo\n", c->number, r->scratch[0]);
        r->mismatches++;
        return;
    }
    if (c->received + (size_t)n > c->sent) {
        fprintf(stderr, "loadgen: MISMATCH on client %u: %zu bytes back, only %zu sent\n",
                c->number, c->received + (size_t)n, c->sent);
        r->mismatches++;
        return;
    }
    if (memcmp(r->scratch, c->expected + c->received, (size_t)n) != 0) {
        size_t offset = 0;
        while (r->scratch[offset] == c->expected[c->received + offset])
            offset++;
        report_mismatch(r, c, (size_t)n, offset);
        return;
    }
    c->received += (size_t)n;
    if (c->received < size)
        return;
    if (r->recording && now_s < r->window_end) {
        r->round_trips++;
        histogram_add(&r->latency, t_ns - c->started_ns);
    }
    if (c->idle) {
        c->state = SILENT;
        done_opening(r, c);
        return;
    }
    begin_message(r, c);
}

static void on_connected(struct run *r, struct client *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
        err = errno;
    if (err != 0) {
        fprintf(stderr, "loadgen: connect: %s\n", strerror(err));
        drop(r, c, &r->connect_failures);
        return;
    }
    c->state = TALKING;
    if (!c->idle)
        done_opening(r, c);
    set_interest(r, c, false);
    begin_message(r, c);
}

/* Waits for events until `until` (monotonic seconds) or until done(r) says
 * so; handles each.  Returns early on a mismatch. */
static void run_events(struct run *r, double until, bool (*done)(const struct run *))
{
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        if (r->mismatches > 0 || (done != NULL && done(r)))
            return;
        double left = until - now();
        if (left <= 0)
            return;
        int timeout_ms = (int)(left * 1000) + 1;
        int ready = epoll_wait(r->epoll_fd, events, MAX_EVENTS, timeout_ms);
        if (ready == -1) {
            if (errno == EINTR)
                continue;
            perror("loadgen: epoll_wait");
            exit(1);
        }
        uint64_t t_ns = now_ns();
        double t = (double)t_ns / 1e9;
        for (int i = 0; i < ready && r->mismatches == 0; i++) {
            struct client *c = events[i].data.ptr;
            uint32_t e = events[i].events;
            if (c->state == CONNECTING) {
                on_connected(r, c);
                continue;
            }
            if (c->state == GONE)
                continue;   /* dropped earlier in this batch */
            if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                receive_some(r, c, t, t_ns);
            if (c->state == TALKING && (e & EPOLLOUT) && c->sent < (size_t)r->o.size)
                send_some(r, c);
        }
    }
}


/* While opening clients: room to start more, or nothing left to wait for. */
static bool may_open_more(const struct run *r)
{
    if (r->next_to_open < r->open_end)
        return r->opening < CONNECT_WINDOW;
    return r->opening == 0;
}

/* Opens clients [first, end): at most CONNECT_WINDOW at a time are
 * connecting (or, for idle ones, awaiting their one echo), and all must be
 * done within the connect timeout; any still waiting then is a failure. */
static void open_clients(struct run *r, long first, long end, const struct addrinfo *to)
{
    double deadline = now() + r->o.connect_timeout;
    r->next_to_open = first;
    r->open_end = end;
    while (r->mismatches == 0 && now() < deadline) {
        while (r->next_to_open < end && r->opening < CONNECT_WINDOW)
            start_connect(r, &r->clients[r->next_to_open++], to);
        if (r->next_to_open == end && r->opening == 0)
            break;
        run_events(r, deadline, may_open_more);
    }
    for (long i = first; i < end; i++) {
        struct client *c = &r->clients[i];
        if (c->state == UNUSED) {
            c->state = GONE;
            r->connect_failures++;
        } else if (c->opening) {
            fprintf(stderr, "loadgen: %s client %u: no %s within %g s\n",
                    c->idle ? "idle" : "active", c->number,
                    c->state == CONNECTING ? "connection" : "echo", r->o.connect_timeout);
            drop(r, c, &r->connect_failures);
        }
    }
}

static long count_in_state(const struct run *r, long first, long end, enum state state)
{
    long n = 0;
    for (long i = first; i < end; i++)
        n += r->clients[i].state == state;
    return n;
}

/* Raises the soft limit on open files to the hard limit; returns it. */
static rlim_t raise_file_limit(void)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == -1)
        return 0;
    if (limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &limit) == -1)
            getrlimit(RLIMIT_NOFILE, &limit);
    }
    return limit.rlim_cur;
}

int main(int argc, char **argv)
{
    struct run *r = calloc(1, sizeof *r);
    if (r == NULL) {
        perror("loadgen");
        return 1;
    }
    parse_options(argc, argv, &r->o);
    const struct options *o = &r->o;

    rlim_t files = raise_file_limit();
    r->total = o->idle + o->clients;
    if ((rlim_t)r->total + 16 > files) {
        fprintf(stderr, "loadgen: %ld connections need more open files than the limit, %llu "
                "(ulimit -Hn)\n", r->total, (unsigned long long)files);
        free(r);
        return 2;
    }

    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
    struct addrinfo *to;
    int status = getaddrinfo(o->host, o->port, &hints, &to);
    if (status != 0) {
        fprintf(stderr, "loadgen: %s port %s: %s\n", o->host, o->port, gai_strerror(status));
        free(r);
        return 2;
    }

    r->clients = calloc((size_t)r->total, sizeof r->clients[0]);
    unsigned char *messages = malloc((size_t)r->total * (size_t)o->size);
    r->scratch = malloc((size_t)o->size);
    r->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (r->clients == NULL || messages == NULL || r->scratch == NULL || r->epoll_fd == -1) {
        perror("loadgen");
        free(messages);
        free(r->scratch);
        free(r->clients);
        free(r);
        return 1;
    }
    for (long i = 0; i < r->total; i++) {
        struct client *c = &r->clients[i];
        c->fd = -1;
        c->number = (uint32_t)i;
        c->idle = i < o->idle;
        c->expected = messages + (size_t)i * (size_t)o->size;
    }

    long pid = o->server_pid;
    long rss_start = pid ? server_rss(pid) : -1;
    double idle_started = now();
    open_clients(r, 0, o->idle, to);
    double idle_open_s = now() - idle_started;
    long rss_idle = pid ? server_rss(pid) : -1;
    long idle_open = count_in_state(r, 0, o->idle, SILENT);

    open_clients(r, o->idle, r->total, to);
    freeaddrinfo(to);

    run_events(r, now() + o->warmup, NULL);
    double cpu_before = pid ? server_cpu(pid) : -1;
    double own_before = own_cpu();
    double window_start = now();
    r->window_end = window_start + o->duration;
    r->recording = true;
    run_events(r, r->window_end, NULL);
    double window = (r->mismatches ? now() : r->window_end) - window_start;
    double cpu_after = pid ? server_cpu(pid) : -1;
    double own_after = own_cpu();
    long rss_end = pid ? server_rss(pid) : -1;
    long active_left = count_in_state(r, o->idle, r->total, TALKING);
    long idle_left = count_in_state(r, 0, o->idle, SILENT);

    long errors = r->mismatches + r->resets + r->eofs + r->connect_failures + r->other_errors;
    /* Every key, always, in this order. */
    printf("loadgen clients=%ld size=%ld idle=%ld warmup_s=%g duration_s=%.6f"
           " round_trips=%llu rate=%.1f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f"
           " mismatches=%ld resets=%ld eofs=%ld connect_failures=%ld other_errors=%ld"
           " errors=%ld active_open=%ld idle_open=%ld idle_still_open=%ld idle_open_s=%.3f"
           " server_cpu_s=%.3f loadgen_cpu_s=%.3f"
           " server_rss_start_kib=%ld server_rss_idle_kib=%ld server_rss_end_kib=%ld\n",
           o->clients, o->size, o->idle, o->warmup, window,
           (unsigned long long)r->round_trips, window > 0 ? (double)r->round_trips / window : 0.0,
           percentile_us(&r->latency, 0.50), percentile_us(&r->latency, 0.99),
           percentile_us(&r->latency, 0.999), (double)r->latency.max_ns / 1000,
           r->mismatches, r->resets, r->eofs, r->connect_failures, r->other_errors,
           errors, active_left, idle_open, idle_left, idle_open_s,
           cpu_before >= 0 && cpu_after >= 0 ? cpu_after - cpu_before : -1.0,
           own_after - own_before, rss_start, rss_idle, rss_end);
    fflush(stdout);

    for (long i = 0; i < r->total; i++)
        if (r->clients[i].fd != -1)
            drop(r, &r->clients[i], NULL);
    close(r->epoll_fd);
    free(messages);
    free(r->scratch);
    free(r->clients);
    free(r);
    return errors > 0 ? 1 : 0;
}
