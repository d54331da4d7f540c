/*
 * args.h -- the command line every server step shares:
 *
 *     PROGRAM [OPTIONS] [HOST [PORT [BACKLOG]]]
 *
 * HOST defaults to "localhost" (this computer only); "*" means every
 * interface.  PORT defaults to 7777; 0 lets the kernel pick.  BACKLOG
 * defaults to 128.  Bad input prints one line and exits 2, before any socket
 * exists, so nothing is ever left bound.
 *
 * Options as getopt_long(3) reads them, whatever POSIXLY_CORRECT says:
 * anywhere (before, between or after HOST PORT BACKLOG), "--name value" or
 * "--name=value", -h or --help, "--" ending them.  Whole names only: an
 * abbreviation ("--max") is an unknown option, since a later option could
 * make it ambiguous (--max-per-address did).  So "-1" is an option too, and
 * unknown ("no number here is negative"); after "--" it is an argument, and
 * refused as a port ("not a whole number").
 */
#ifndef ARGS_H
#define ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define DEFAULT_HOST "localhost"
#define DEFAULT_PORT 7777        /* not 5000: macOS's AirPlay receiver holds it */
#define DEFAULT_BACKLOG 128

/* The options a step accepts, or-ed together for parse_server_args(). */
enum server_option {
    OPTION_NO_REUSEADDR = 1 << 0,   /* --no-reuseaddr: skip SO_REUSEADDR */
    OPTION_QUIET        = 1 << 1,   /* --quiet: no line per connection */
    OPTION_MAX_CLIENTS  = 1 << 2,   /* --max-clients N */
    OPTION_IDLE_TIMEOUT = 1 << 3,   /* --idle-timeout SECONDS (0: none) */
    OPTION_FPS          = 1 << 4,   /* --fps N: frames per second (step 6) */
    OPTION_MAX_PER_ADDRESS = 1 << 5,   /* --max-per-address N (steps 8-9) */
};

#define DEFAULT_FPS 60
/* A client silent this long is closed, unless --idle-timeout says otherwise
 * (0: never).  nginx's client_body_timeout and send_timeout are 60 s too: a
 * person typing pauses for less, and a client that holds a slot without a
 * word gives it back within a minute. */
#define DEFAULT_IDLE_TIMEOUT 60

struct server_args {
    const char *host;
    int port;
    int backlog;
    bool reuseaddr;        /* true unless --no-reuseaddr */
    bool quiet;
    int max_clients;       /* default_max_clients unless --max-clients */
    int max_per_address;   /* connections one client address may hold; 0: no limit of its own */
    double idle_timeout;   /* seconds, DEFAULT_IDLE_TIMEOUT unless given; 0 means never */
    int fps;               /* DEFAULT_FPS unless --fps */
};

/* Enough for any message server_args_parse() writes. */
#define SERVER_ARGS_ERR_SIZE 1024

/*
 * Fills args from argv, accepting the options in `accepted` (max_clients
 * starts at default_max_clients).  Never prints, never exits: returns 0, or
 * 1 when --help was asked (print_usage() is the answer), or -1 for bad input
 * with one line in err (no newline, whatever argv holds: a control byte in
 * a value shows as \t, \n or \xNN):
 *
 *     PROGRAM: port '99999': out of range (0-65535) (see PROGRAM --help)
 *
 * A whole number is decimal digits only; seconds are digits with an optional
 * fraction ("30", "0.5"), 0 or 0.001 to 86400.  Uses getopt_long()'s
 * globals (optind, opterr, optarg): one call at a time.  argv is not
 * reordered.
 */
int server_args_parse(int argc, char **argv, unsigned accepted,
                      int default_max_clients, struct server_args *args,
                      char *err, size_t err_size);

/* server_args_parse() for a program's main(): on bad input prints the error
 * line to stderr and exits 2; --help prints the usage and exits 0. */
void parse_server_args(int argc, char **argv, unsigned accepted,
                       int default_max_clients, struct server_args *args);

/* The --help text of a program that accepts the options in `accepted`. */
void print_usage(FILE *out, const char *program, unsigned accepted);

#endif
