/* main.c - memctl, the memd CLI: options, then one verb from the table. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include <msgpack.h>

#include "config.h"
#include "ctl.h"

static void help(void) {
        printf("memctl [--socket PATH] [--json] COMMAND [ARGS]\n\n"
               "Asks memd about the processes running libmemd.\n\n"
               "  --socket PATH   memd's socket (default %s, or $MEMD_SOCKET)\n"
               "  --json          JSON output (Go's MemStats field names, raw integers)\n\n"
               "Commands:\n", DEFAULT_SOCKET);
        for (const struct verb *v = verbs; v->name; v++)
                printf("  %-15s %-28s %s\n", v->name, v->args, v->help);
        printf("\nExit status: 0 success, 1 failure, 2 usage.\n");
}

int main(int argc, char **argv) {
        enum { ARG_SOCKET = 0x100, ARG_JSON };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "json", no_argument, NULL, ARG_JSON },
                {}
        };
        struct ctl ctl = { .socket_path = DEFAULT_SOCKET };
        const struct verb *v;
        const char *env = getenv("MEMD_SOCKET");
        unsigned nargs;
        int c;

        if (env && env[0] == '/')
                ctl.socket_path = env;
        /* "+": options stop at the command, so a verb's own arguments stay its own. */
        while ((c = getopt_long(argc, argv, "+hV", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return EXIT_OK;
                case 'V':
                        printf("memctl %s (msgpack-c %s)\n", MEMD_VERSION_STRING, msgpack_version());
                        return EXIT_OK;
                case ARG_SOCKET:
                        ctl.socket_path = optarg;
                        break;
                case ARG_JSON:
                        ctl.json = true;
                        break;
                default:
                        return EXIT_USAGE;
                }
        if (optind >= argc) {
                fprintf(stderr, "memctl: no command given; see memctl --help\n");
                return EXIT_USAGE;
        }
        v = verb_find(argv[optind]);
        if (!v) {
                fprintf(stderr, "memctl: unknown command '%s'; see memctl --help\n", argv[optind]);
                return EXIT_USAGE;
        }
        nargs = (unsigned) (argc - optind - 1);
        if (nargs < v->min_args || nargs > v->max_args) {
                fprintf(stderr, "memctl: usage: memctl %s %s\n", v->name, v->args);
                return EXIT_USAGE;
        }
        return v->fn(&ctl, (int) nargs, argv + optind + 1);
}
