/* top.h - `memctl top`'s table: pprof's `-top` report computed from symbolized samples.
 *
 * Pure: no I/O but the FILE it prints to, no knowledge of where the samples
 * came from.  The figures, units, rounding, node dropping and order are
 * pprof's (go tool pprof -top, Go 1.19's vendored pprof); docs/top.md lists
 * the rules and the known differences. */
#ifndef MEMD_CTL_TOP_H
#define MEMD_CTL_TOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The sample values, in the order of memd's heap profiles (and Go's). */
enum top_index {
        TOP_ALLOC_OBJECTS = 0,
        TOP_ALLOC_SPACE = 1,
        TOP_INUSE_OBJECTS = 2,
        TOP_INUSE_SPACE = 3,            /* the default, as pprof's for a heap profile */
        TOP_N_VALUES = 4,
};

/* One frame.  An inlined function is a frame of its own, as pprof makes one
 * node per line of a location. */
struct top_frame {
        /* The function's name as symbolized, without "+0x..." (pprof's
         * Function.name).  NULL or "" when the address has no symbol. */
        const char *name;
        /* For a frame without a name: the path of the mapping holding the
         * address (pprof prints "[basename]"), or NULL/"" when none does
         * (pprof prints "<unknown>").  Ignored when name is set. */
        const char *objfile;
        /* True when this frame was inlined into the next one (its caller):
         * both are lines of one location.  pprof then marks the row
         * "(inline)" or "(partial-inline)". */
        bool inlined;
};

struct top_sample {
        const struct top_frame *frames; /* leaf (the allocating function) first */
        size_t depth;
        int64_t values[TOP_N_VALUES];   /* scaled estimates, in enum top_index order */
};

struct top_options {
        int sample_index;               /* enum top_index */
        int node_count;                 /* -n: show at most this many nodes; 0: all */
        bool cum;                       /* sort by cum (pprof -cum), not flat */
        double node_fraction;           /* pprof -nodefraction: 0.005 */
        double edge_fraction;           /* pprof -edgefraction: 0.001 (decides "(inline)" labels) */
};

/* pprof's defaults: inuse_space, every node, flat order. */
#define TOP_OPTIONS_INIT { .sample_index = TOP_INUSE_SPACE, .node_count = 0, .cum = false, \
                           .node_fraction = 0.005, .edge_fraction = 0.001 }

/* "inuse_space" ... or pprof's numeric form "0".."3"; -1 when unknown. */
int top_sample_index_parse(const char *s);
const char *top_sample_index_name(int index);   /* NULL when out of range */

/* Prints "Type: <index>", pprof's "Showing nodes accounting for ..." lines,
 * and its flat/flat%/sum%/cum/cum% table.  Samples are taken as they are:
 * pprof merges samples whose stacks have the same locations (addresses), a
 * caller that has several samples for one stack should add them up first
 * (it matters only when values of both signs meet).  Samples without frames
 * are all one stack: top_print adds them up, as pprof does.  opt may be NULL
 * (TOP_OPTIONS_INIT).  Returns 0, -EINVAL, -ENOMEM, or -EIO when writing to
 * out failed. */
int top_print(FILE *out, const struct top_sample *samples, size_t n, const struct top_options *opt);

#endif
