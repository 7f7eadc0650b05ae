/* main.c - memd, the memory daemon: for now only --version and --help (the daemon is the next issue). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include <ev.h>
#include <msgpack.h>
#include <systemd/sd-daemon.h>

#include "config.h"

static void help(void) {
        printf("memd [--socket PATH] [--config-dir DIR] [--user] [--log-target auto|journal|stderr]\n"
               "     [--version] [--help]\n\n"
               "The memory daemon: collects MemStats and heap profiles from processes running\n"
               "libmemd and enforces memory policies.  Not implemented yet in this version:\n"
               "use libmemd alone (MEMD_DEBUG=gctrace=1, MEMD_MEMPROFILE=...).\n");
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
                        printf("memd %s (libev %d.%d, msgpack-c %s)\n", MEMD_VERSION_STRING,
                               ev_version_major(), ev_version_minor(), msgpack_version());
                        return 0;
                default:
                        return 2;
                }
        fprintf(stderr, "memd: the daemon is not implemented in this version; see memd --help\n");
        return 1;
}
