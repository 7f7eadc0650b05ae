/* main.c - memctl, the memd CLI: for now only --version and --help (the verbs are the next issue). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include <msgpack.h>

#include "config.h"

static void help(void) {
        printf("memctl [--socket PATH] [--json] COMMAND [ARGS]\n\n"
               "  status [PID]          processes attached to memd\n"
               "  gc PID                forced GC cycle\n"
               "  free-os-memory PID    forced GC + scavenge\n"
               "  heap PID              heap profile\n"
               "  top PID               pprof's top table\n\n"
               "The verbs need memd, which is not implemented in this version.\n");
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {}
        };
        int c;

        while ((c = getopt_long(argc, argv, "hV", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case 'V':
                        printf("memctl %s (msgpack-c %s)\n", MEMD_VERSION_STRING, msgpack_version());
                        return 0;
                default:
                        return 2;
                }
        if (optind >= argc) {
                help();
                return 2;
        }
        fprintf(stderr, "memctl: '%s' needs memd, which is not implemented in this version\n", argv[optind]);
        return 1;
}
