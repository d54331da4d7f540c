/*
 * fuzz_args.c -- libFuzzer target for server_args_parse() (common/args.c).
 *
 * The input is a command line: its first byte picks the options accepted
 * (the low 5 bits, an or of enum server_option) and whether argv[0] is
 * fuzzed too (bit 7); the rest, split on NUL bytes, is argv.  Whatever it
 * holds, the parser must return, never exit, and what it returns must hold:
 *
 *   0   every value in its range, the host non-empty, no option that was
 *       not accepted has had an effect, and every argument but the host
 *       and the options' names is a plain number: digits, maybe one point
 *       (none of the white space, signs, exponents, hex, inf or nan that
 *       strtol() and strtod() take);
 *   1   only when some argument is exactly --help;
 *  -1   err is one whole line: printable (control bytes escaped), no
 *       newline, not cut short ("... (see PROGRAM --help)").
 *
 *   make fuzz             (see the Makefile)
 */
#include "args.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* More arguments than any option combination reads, so that "too many
 * arguments" is reached too. */
#define MAX_ARGUMENTS 16

/* What libFuzzer calls once per input. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int holds, const char *invariant, const char *detail)
{
    if (!holds) {
        fprintf(stderr, "fuzz_args: invariant broken: %s (%s)\n", invariant, detail);
        abort();
    }
}

/* The value a successful parse must leave, for an option that was not
 * accepted (it cannot have been given). */
static void check_ranges(const struct server_args *args, unsigned accepted,
                         int default_max_clients)
{
    require(args->host != NULL && args->host[0] != '\0', "host non-empty", "");
    require(args->port >= 0 && args->port <= 65535, "port 0-65535", "");
    require(args->backlog >= 0, "backlog >= 0", "");
    require(args->max_clients >= 1 && args->max_clients <= 1000000,
            "max_clients 1-1000000", "");
    require(isfinite(args->idle_timeout)
            && (args->idle_timeout == 0
                || (args->idle_timeout >= 0.001 && args->idle_timeout <= 86400)),
            "idle_timeout 0 or 0.001-86400", "");
    require(args->fps >= 1 && args->fps <= 1000, "fps 1-1000", "");
    if (!(accepted & OPTION_NO_REUSEADDR))
        require(args->reuseaddr, "reuseaddr unless --no-reuseaddr is accepted", "");
    if (!(accepted & OPTION_QUIET))
        require(!args->quiet, "not quiet unless --quiet is accepted", "");
    if (!(accepted & OPTION_MAX_CLIENTS))
        require(args->max_clients == default_max_clients,
                "default max_clients unless --max-clients is accepted", "");
    if (!(accepted & OPTION_IDLE_TIMEOUT))
        require(args->idle_timeout == 0, "no idle timeout unless accepted", "");
    if (!(accepted & OPTION_FPS))
        require(args->fps == DEFAULT_FPS, "default fps unless --fps is accepted", "");
}

static void check_plain_numbers(int argc, char **argv, const struct server_args *args)
{
    for (int i = 1; i < argc; i++) {
        if (argv[i] == args->host || strncmp(argv[i], "--", 2) == 0)
            continue;
        size_t digits = strspn(argv[i], "0123456789");
        const char *rest = argv[i] + digits;
        if (*rest == '.')
            rest += 1 + strspn(rest + 1, "0123456789");
        require(digits > 0 && *rest == '\0', "a value taken is a plain number", argv[i]);
    }
}

static void check_error_line(const char *err, const char *program)
{
    size_t length = strlen(err);
    require(length > 0, "error line non-empty", "");
    for (size_t i = 0; i < length; i++) {
        unsigned char byte = (unsigned char)err[i];
        require(byte >= 0x20 && byte != 0x7f, "error line printable, one line", err);
    }
    const char *tail = " --help)";
    size_t tail_length = strlen(tail);
    require(length > tail_length && strcmp(err + length - tail_length, tail) == 0,
            "error line whole: ends with (see PROGRAM --help)", err);
    /* A plain program name is shown as it is. */
    int plain = strlen(program) < 64;
    for (const char *byte = program; *byte != '\0'; byte++)
        plain &= (unsigned char)*byte >= 0x20 && *byte != 0x7f && *byte != '\\';
    if (plain)
        require(strncmp(err, program, strlen(program)) == 0
                && err[strlen(program)] == ':',
                "error line starts with PROGRAM:", err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned accepted = data[0] & 0x1f;
    int fuzz_program = (data[0] & 0x80) != 0;

    /* A NUL-terminated copy, cut into strings at each NUL: argv's storage. */
    char *text = malloc(size);
    if (text == NULL)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';

    char *argv[MAX_ARGUMENTS + 2];
    int argc = 0;
    if (!fuzz_program)
        argv[argc++] = "server";
    /* The terminator added is not an argument: no bytes, no arguments. */
    for (char *next = text; next < text + size - 1 && argc < MAX_ARGUMENTS + 1;
         next += strlen(next) + 1)
        argv[argc++] = next;
    argv[argc] = NULL;
    int asked_help = 0;
    /* --help, or -h alone or in a cluster of short options (-xh): a
     * necessary condition for an answer of 1, not a sufficient one ("--fps
     * --help" gives --fps the value "--help"). */
    for (int i = 1; i < argc; i++)
        asked_help |= strcmp(argv[i], "--help") == 0
                      || (argv[i][0] == '-' && argv[i][1] != '-' && strchr(argv[i], 'h'));

    const int default_max_clients = 1000;
    struct server_args args;
    /* Exactly the size the header promises is enough, on the heap so that
     * AddressSanitizer sees a byte written past it. */
    char *err = malloc(SERVER_ARGS_ERR_SIZE);
    if (err == NULL) {
        free(text);
        return 0;
    }
    err[0] = '\0';
    int outcome = server_args_parse(argc, argv, accepted, default_max_clients,
                                    &args, err, SERVER_ARGS_ERR_SIZE);
    require(outcome == 0 || outcome == 1 || outcome == -1, "returns 0, 1 or -1", "");
    if (outcome == 0) {
        check_ranges(&args, accepted, default_max_clients);
        check_plain_numbers(argc, argv, &args);
    }
    else if (outcome == 1)
        require(asked_help, "1 only for --help or -h", "");
    else
        check_error_line(err, argc > 0 ? argv[0] : "server");

    free(err);
    free(text);
    return 0;
}
