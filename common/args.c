/* args.c -- see args.h. */
#include "args.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_usage(FILE *out, const char *program, unsigned accepted)
{
    fprintf(out, "usage: %s%s%s%s%s%s [HOST [PORT [BACKLOG]]]\n", program,
            accepted & OPTION_NO_REUSEADDR ? " [--no-reuseaddr]" : "",
            accepted & OPTION_QUIET ? " [--quiet]" : "",
            accepted & OPTION_MAX_CLIENTS ? " [--max-clients N]" : "",
            accepted & OPTION_IDLE_TIMEOUT ? " [--idle-timeout SECONDS]" : "",
            accepted & OPTION_FPS ? " [--fps N]" : "");
    fprintf(out, "  HOST     localhost (default), * for every interface, or an address\n"
                 "  PORT     0-65535, default %d; 0 lets the kernel pick\n"
                 "  BACKLOG  length of the accept queue, default %d\n",
            DEFAULT_PORT, DEFAULT_BACKLOG);
    if (accepted & OPTION_IDLE_TIMEOUT)
        fprintf(out, "  --idle-timeout SECONDS  close a client silent this long,"
                     " default %d; 0: never\n", DEFAULT_IDLE_TIMEOUT);
}

static void usage_error(const char *program, const char *what,
                        const char *value, const char *why)
{
    fprintf(stderr, "%s: %s '%s': %s (see %s --help)\n", program, what, value,
            why, program);
    exit(2);
}

/* A whole decimal number in [min, max], or a usage error naming `what`. */
static long parse_number(const char *program, const char *what,
                         const char *text, long min, long max)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (end == text || *end != '\0' || text[0] == '-' || text[0] == '+'
        || text[0] == ' ')
        usage_error(program, what, text, "not a whole number");
    if (errno == ERANGE || value < min || value > max) {
        char why[64];
        snprintf(why, sizeof why, "out of range (%ld-%ld)", min, max);
        usage_error(program, what, text, why);
    }
    return value;
}

void parse_server_args(int argc, char **argv, unsigned accepted,
                       int default_max_clients, struct server_args *args)
{
    const char *program = argc > 0 ? argv[0] : "server";
    args->host = DEFAULT_HOST;
    args->port = DEFAULT_PORT;
    args->backlog = DEFAULT_BACKLOG;
    args->reuseaddr = true;
    args->quiet = false;
    args->max_clients = default_max_clients;
    args->idle_timeout = DEFAULT_IDLE_TIMEOUT;
    args->fps = DEFAULT_FPS;

    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *option = argv[i];
        bool has_value = i + 1 < argc;
        if (strcmp(option, "--") == 0) {
            i++;
            break;
        } else if (strcmp(option, "--help") == 0) {
            print_usage(stdout, program, accepted);
            exit(0);
        } else if (strcmp(option, "--no-reuseaddr") == 0
                   && (accepted & OPTION_NO_REUSEADDR)) {
            args->reuseaddr = false;
        } else if (strcmp(option, "--quiet") == 0 && (accepted & OPTION_QUIET)) {
            args->quiet = true;
        } else if (strcmp(option, "--max-clients") == 0
                   && (accepted & OPTION_MAX_CLIENTS)) {
            if (!has_value)
                usage_error(program, "option", option, "needs a number");
            args->max_clients = (int)parse_number(program, "max clients",
                                                  argv[++i], 1, 1000000);
        } else if (strcmp(option, "--idle-timeout") == 0
                   && (accepted & OPTION_IDLE_TIMEOUT)) {
            if (!has_value)
                usage_error(program, "option", option, "needs seconds");
            char *end;
            const char *text = argv[++i];
            errno = 0;
            double seconds = strtod(text, &end);
            if (end == text || *end != '\0' || errno == ERANGE || !(seconds >= 0)
                || seconds > 86400)
                usage_error(program, "idle timeout", text,
                            "not a number of seconds from 0 to 86400");
            args->idle_timeout = seconds;
        } else if (strcmp(option, "--fps") == 0 && (accepted & OPTION_FPS)) {
            if (!has_value)
                usage_error(program, "option", option, "needs a number");
            args->fps = (int)parse_number(program, "frames per second",
                                          argv[++i], 1, 1000);
        } else {
            usage_error(program, "option", option, "unknown option");
        }
    }

    int positional = argc - i;
    if (positional > 3)
        usage_error(program, "argument", argv[i + 3],
                    "too many arguments (HOST PORT BACKLOG at most)");
    if (positional >= 1) {
        if (argv[i][0] == '\0')
            usage_error(program, "host", argv[i],
                        "empty (use * for every interface)");
        args->host = argv[i];
    }
    if (positional >= 2)
        args->port = (int)parse_number(program, "port", argv[i + 1],
                                       0, 65535);
    if (positional >= 3)
        args->backlog = (int)parse_number(program, "backlog",
                                          argv[i + 2], 0, INT_MAX);
}
