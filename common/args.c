/* args.c -- see args.h. */
#include "args.h"

#include "address.h"   /* show_text() */

#include <errno.h>
#include <getopt.h>
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

/* getopt_long()'s value for each long option: a character no short option
 * uses, so that optopt names the option whose value is missing. */
enum option_value {
    VALUE_NO_REUSEADDR = 1000, VALUE_QUIET, VALUE_MAX_CLIENTS, VALUE_MAX_PER_ADDRESS,
    VALUE_IDLE_TIMEOUT, VALUE_FPS, VALUE_HELP
};

/* Every long option, with the enum server_option bit that accepts it (0:
 * every program) and what a missing value is called. */
static const struct {
    struct option option;
    unsigned accepted_by;
    const char *needs;
} long_options[] = {
    { { "help", no_argument, NULL, VALUE_HELP }, 0, NULL },
    { { "no-reuseaddr", no_argument, NULL, VALUE_NO_REUSEADDR }, OPTION_NO_REUSEADDR, NULL },
    { { "quiet", no_argument, NULL, VALUE_QUIET }, OPTION_QUIET, NULL },
    { { "max-clients", required_argument, NULL, VALUE_MAX_CLIENTS }, OPTION_MAX_CLIENTS,
      "needs a number" },
    { { "max-per-address", required_argument, NULL, VALUE_MAX_PER_ADDRESS },
      OPTION_MAX_PER_ADDRESS, "needs a number" },
    { { "idle-timeout", required_argument, NULL, VALUE_IDLE_TIMEOUT }, OPTION_IDLE_TIMEOUT,
      "needs seconds" },
    { { "fps", required_argument, NULL, VALUE_FPS }, OPTION_FPS, "needs a number" },
};
#define LONG_OPTIONS (sizeof long_options / sizeof long_options[0])

/* The element of argv that getopt_long() has just read an option from. */
static const char *option_text(char **argv)
{
    /* A value given as the next argument ("--fps 30") is argv[optind - 1]. */
    if (optarg != NULL && optind >= 2 && optarg == argv[optind - 1])
        return argv[optind - 2];
    return argv[optind - 1];
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

    /* Only this program's options: another step's is "unknown" here. */
    struct option options[LONG_OPTIONS + 1];
    size_t count = 0;
    for (size_t k = 0; k < LONG_OPTIONS; k++)
        if (long_options[k].accepted_by == 0 || (accepted & long_options[k].accepted_by))
            options[count++] = long_options[k].option;
    options[count] = (struct option){ NULL, 0, NULL, 0 };

    /* "-": the arguments that are not options come back in order, as value
     * 1, wherever they stand (options may follow HOST), whatever
     * POSIXLY_CORRECT says; ":": a missing value is ':', not '?'.  opterr 0:
     * getopt_long() prints nothing, the messages are ours.  optind 0 starts
     * afresh (glibc and musl), however often this is called (the fuzzer). */
    const char *positional[4] = { NULL, NULL, NULL, NULL };
    int positionals = 0;
    opterr = 0;
    optind = 0;
    for (;;) {
        int index = -1;
        int value = getopt_long(argc, argv, "-:h", options, &index);
        if (value == -1)
            break;
        if (value == 1) {   /* HOST, PORT or BACKLOG */
            if (positionals < 4)
                positional[positionals] = optarg;
            positionals++;
            continue;
        }
        if (value == '?' || value == ':') {
            for (size_t k = 0; k < LONG_OPTIONS; k++)
                if (optopt != 0 && optopt == long_options[k].option.val
                    && long_options[k].needs != NULL) {
                    char name[64];
                    snprintf(name, sizeof name, "--%s", long_options[k].option.name);
                    return usage_error(program, err, err_size, "option", name,
                                       long_options[k].needs);
                }
            if (optopt != 0 && optopt < 256 && argv[optind - 1][0] == '-'
                && argv[optind - 1][1] != '-') {
                char shown[3] = { '-', (char)optopt, '\0' };
                /* "-1": a negative number, read as an option now that options
                 * may follow HOST ("--" before it makes it an argument). */
                return usage_error(program, err, err_size, "option", shown,
                                   optopt >= '0' && optopt <= '9'
                                       ? "unknown option (no number here is negative)"
                                       : "unknown option");
            }
            return usage_error(program, err, err_size, "option", option_text(argv),
                               "unknown option");
        }
        /* Whole names only: getopt_long() also takes an abbreviation
         * ("--max" for --max-clients), which a later option could make
         * ambiguous; a script that works today must work tomorrow. */
        const char *text = option_text(argv);
        if (index >= 0) {
            size_t typed = strcspn(text + 2, "=");
            if (strncmp(text, "--", 2) != 0 || typed != strlen(options[index].name))
                return usage_error(program, err, err_size, "option", text, "unknown option");
        }
        switch (value) {
        case 'h':
        case VALUE_HELP:
            return 1;
        case VALUE_NO_REUSEADDR:
            args->reuseaddr = false;
            break;
        case VALUE_QUIET:
            args->quiet = true;
            break;
        case VALUE_MAX_CLIENTS:
            if (parse_number(program, err, err_size, "max clients", optarg, 1, 1000000,
                             &args->max_clients) == -1)
                return -1;
            break;
        case VALUE_MAX_PER_ADDRESS:
            if (parse_number(program, err, err_size, "max per address", optarg, 1, 1000000,
                             &args->max_per_address) == -1)
                return -1;
            break;
        case VALUE_IDLE_TIMEOUT:
            if (parse_seconds(program, err, err_size, "idle timeout", optarg,
                              &args->idle_timeout) == -1)
                return -1;
            break;
        case VALUE_FPS:
            if (parse_number(program, err, err_size, "frames per second", optarg, 1, 1000,
                             &args->fps) == -1)
                return -1;
            break;
        }
    }
    /* After "--", the rest are arguments, whatever they look like. */
    for (; optind < argc; optind++) {
        if (positionals < 4)
            positional[positionals] = argv[optind];
        positionals++;
    }

    if (positionals > 3)
        return usage_error(program, err, err_size, "argument", positional[3],
                           "too many arguments (HOST PORT BACKLOG at most)");
    if (positionals >= 1) {
        if (positional[0][0] == '\0')
            return usage_error(program, err, err_size, "host", positional[0],
                               "empty (use * for every interface)");
        args->host = positional[0];
    }
    if (positionals >= 2
        && parse_number(program, err, err_size, "port", positional[1], 0, 65535,
                        &args->port) == -1)
        return -1;
    if (positionals >= 3
        && parse_number(program, err, err_size, "backlog", positional[2], 0, INT_MAX,
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
