/* ctl.h - memctl's internals: the verb table, the connection to memd, text/JSON output. */
#ifndef MEMD_CTL_H
#define MEMD_CTL_H

#include <stdbool.h>
#include <stddef.h>

#include "proto.h"

/* Exit codes (SPEC §5). */
#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2

#define DEFAULT_SOCKET "/run/memd/memd.sock"

struct ctl {
        const char *socket_path;
        bool json;
};

struct verb {
        const char *name;
        unsigned min_args, max_args;
        int (*fn)(struct ctl *ctl, int argc, char **argv); /* returns an exit code */
        const char *args;
        const char *help;
};

/* verbs.c */
extern const struct verb verbs[];
const struct verb *verb_find(const char *name);

/* output.c */
/* "1.5 GiB", "512 B"; buf is at least 16 bytes. */
const char *output_bytes(char *buf, size_t size, uint64_t bytes);
/* The list: begin, one row per process (i counts from 0), end. */
void output_status_begin(const struct ctl *ctl);
void output_status_row(const struct ctl *ctl, const struct proto_process *p, size_t i);
void output_status_end(const struct ctl *ctl);
void output_status_one(const struct ctl *ctl, const struct proto_process *p);
/* s as a JSON string, quoted and escaped. */
void output_json_string(const char *s);
void output_gc(const struct ctl *ctl, uint32_t pid, const struct proto_gc_result *g);
void output_scavenge(const struct ctl *ctl, uint32_t pid, const struct proto_scavenge_result *v);
void output_event(const struct ctl *ctl, const struct proto_event *e);

#endif
