/* args.c -- see args.h. */
#include "args.h"

#include "address.h"   /* show_text() */

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The idle timeout's range.  The loops count time in whole milliseconds, so
 * a positive timeout below one would round to "now" or to "never". */
#define IDLE_TIMEOUT_MIN_SECONDS 0.001
#define IDLE_TIMEOUT_MAX_SECONDS 86400

void print_usage(FILE *out, const char *program, unsigned accepted)
{
    fprintf(out, "usage: %s%s%s%s%s%s%s [HOST [PORT [BACKLOG]]]\n", program,
            accepted & OPTION_NO_REUSEADDR ? " [--no-reuseaddr]" : "",
            accepted & OPTION_QUIET ? " [--quiet]" : "",
            accepted & OPTION_MAX_CLIENTS ? " [--max-clients N]" : "",
            accepted & OPTION_MAX_PER_ADDRESS ? " [--max-per-address N]" : "",
            accepted & OPTION_IDLE_TIMEOUT ? " [--idle-timeout SECONDS]" : "",
            accepted & OPTION_FPS ? " [--fps N]" : "");
    fprintf(out, "  HOST     localhost (default), * for every interface, or an address\n"
                 "  PORT     0-65535, default %d; 0 lets the kernel pick\n"
                 "  BACKLOG  length of the accept queue, default %d\n",
            DEFAULT_PORT, DEFAULT_BACKLOG);
    if (accepted & OPTION_IDLE_TIMEOUT)
        fprintf(out, "  --idle-timeout SECONDS  close a client silent this long,"
                     " default %d; 0: never\n", DEFAULT_IDLE_TIMEOUT);
    if (accepted & OPTION_MAX_PER_ADDRESS)
        fprintf(out, "  --max-per-address N     connections one client address may hold;"
                     " default: no limit but --max-clients\n");
}

/* "PROGRAM: WHAT 'VALUE': WHY (see PROGRAM --help)" into err; returns -1,
 * what the parser returns for bad input. */
static int usage_error(const char *program, char *err, size_t err_size,
                       const char *what, const char *value, const char *why)
{
    /* Sized so that the whole message fits SERVER_ARGS_ERR_SIZE. */
    char shown_program[256];
    char shown_value[128];
    show_text(program, shown_program, sizeof shown_program);
    show_text(value, shown_value, sizeof shown_value);
    snprintf(err, err_size, "%s: %s '%s': %s (see %s --help)", shown_program, what,
             shown_value, why, shown_program);
    return -1;
}

/* A whole number is decimal digits and nothing else: checked before
 * strtol(), which would also take leading white space (a tab, a newline)
 * and a sign. */
static int parse_number(const char *program, char *err, size_t err_size,
                        const char *what, const char *text, int min, int max,
                        int *number)
{
    if (text[0] == '\0' || strspn(text, "0123456789") != strlen(text))
        return usage_error(program, err, err_size, what, text, "not a whole number");
    errno = 0;
    long value = strtol(text, NULL, 10);
    if (errno == ERANGE || value < min || value > max) {
        char why[64];
        snprintf(why, sizeof why, "out of range (%d-%d)", min, max);
        return usage_error(program, err, err_size, what, text, why);
    }
    *number = (int)value;
    return 0;
}

/* Seconds are plain decimals: digits, then a point and digits if need be
 * ("30", "0.5"; not ".5" or "5.").  Not strtod() alone, which also takes
 * white space, signs ("-0"), exponents ("1e-300"), hex ("0x1p3"), "inf" and
 * "nan". */
static int parse_seconds(const char *program, char *err, size_t err_size,
                         const char *what, const char *text, double *seconds)
{
    const char *digits = "0123456789";
    size_t whole = strspn(text, digits);
    const char *rest = text + whole;
    if (*rest == '.') {
        size_t fraction = strspn(rest + 1, digits);
        rest += fraction > 0 ? 1 + fraction : 0;
    }
    if (whole == 0 || *rest != '\0')
        return usage_error(program, err, err_size, what, text,
                           "not a number of seconds from 0 to 86400");
    /* strtod() takes the point as the decimal point in the "C" locale, the
     * one the programs run in (they never call setlocale()).  A value so
     * small that it reads as 0 is still not 0: any digit but 0 says so. */
    double value = strtod(text, NULL);
    bool positive = strpbrk(text, "123456789") != NULL;
    if (value > IDLE_TIMEOUT_MAX_SECONDS
        || (positive && !(value >= IDLE_TIMEOUT_MIN_SECONDS))) {
        char why[64];
        snprintf(why, sizeof why, "out of range (0, or %g-%d)",
                 IDLE_TIMEOUT_MIN_SECONDS, IDLE_TIMEOUT_MAX_SECONDS);
        return usage_error(program, err, err_size, what, text, why);
    }
    *seconds = value;
    return 0;
}

int server_args_parse(int argc, char **argv, unsigned accepted,
                      int default_max_clients, struct server_args *args,
                      char *err, size_t err_size)
{
    const char *program = argc > 0 && argv[0] != NULL ? argv[0] : "server";
    args->host = DEFAULT_HOST;
    args->port = DEFAULT_PORT;
    args->backlog = DEFAULT_BACKLOG;
    args->reuseaddr = true;
    args->quiet = false;
    args->max_clients = default_max_clients;
    args->max_per_address = 0;
    args->idle_timeout = accepted & OPTION_IDLE_TIMEOUT ? DEFAULT_IDLE_TIMEOUT : 0;
    args->fps = DEFAULT_FPS;

    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *option = argv[i];
        bool has_value = i + 1 < argc;
        if (strcmp(option, "--") == 0) {
            i++;
            break;
        } else if (strcmp(option, "--help") == 0) {
            return 1;
        } else if (strcmp(option, "--no-reuseaddr") == 0
                   && (accepted & OPTION_NO_REUSEADDR)) {
            args->reuseaddr = false;
        } else if (strcmp(option, "--quiet") == 0 && (accepted & OPTION_QUIET)) {
            args->quiet = true;
        } else if (strcmp(option, "--max-clients") == 0
                   && (accepted & OPTION_MAX_CLIENTS)) {
            if (!has_value)
                return usage_error(program, err, err_size, "option", option,
                                   "needs a number");
            if (parse_number(program, err, err_size, "max clients", argv[++i],
                             1, 1000000, &args->max_clients) == -1)
                return -1;
        } else if (strcmp(option, "--max-per-address") == 0
                   && (accepted & OPTION_MAX_PER_ADDRESS)) {
            if (!has_value)
                return usage_error(program, err, err_size, "option", option,
                                   "needs a number");
            if (parse_number(program, err, err_size, "max per address", argv[++i],
                             1, 1000000, &args->max_per_address) == -1)
                return -1;
        } else if (strcmp(option, "--idle-timeout") == 0
                   && (accepted & OPTION_IDLE_TIMEOUT)) {
            if (!has_value)
                return usage_error(program, err, err_size, "option", option,
                                   "needs seconds");
            if (parse_seconds(program, err, err_size, "idle timeout", argv[++i],
                              &args->idle_timeout) == -1)
                return -1;
        } else if (strcmp(option, "--fps") == 0 && (accepted & OPTION_FPS)) {
            if (!has_value)
                return usage_error(program, err, err_size, "option", option,
                                   "needs a number");
            if (parse_number(program, err, err_size, "frames per second",
                             argv[++i], 1, 1000, &args->fps) == -1)
                return -1;
        } else {
            return usage_error(program, err, err_size, "option", option,
                               "unknown option");
        }
    }

    int positional = argc - i;
    if (positional > 3)
        return usage_error(program, err, err_size, "argument", argv[i + 3],
                           "too many arguments (HOST PORT BACKLOG at most)");
    if (positional >= 1) {
        if (argv[i][0] == '\0')
            return usage_error(program, err, err_size, "host", argv[i],
                               "empty (use * for every interface)");
        args->host = argv[i];
    }
    if (positional >= 2
        && parse_number(program, err, err_size, "port", argv[i + 1], 0, 65535,
                        &args->port) == -1)
        return -1;
    if (positional >= 3
        && parse_number(program, err, err_size, "backlog", argv[i + 2], 0, INT_MAX,
                        &args->backlog) == -1)
        return -1;
    return 0;
}

void parse_server_args(int argc, char **argv, unsigned accepted,
                       int default_max_clients, struct server_args *args)
{
    char err[SERVER_ARGS_ERR_SIZE];
    switch (server_args_parse(argc, argv, accepted, default_max_clients, args,
                              err, sizeof err)) {
    case 1:
        print_usage(stdout, argc > 0 && argv[0] != NULL ? argv[0] : "server", accepted);
        exit(0);
    case -1:
        fprintf(stderr, "%s\n", err);
        exit(2);
    }
}
