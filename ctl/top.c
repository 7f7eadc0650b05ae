/* top.c - pprof's `-top` report from symbolized samples (see top.h, docs/top.md).
 *
 * Each step follows the pprof code it reproduces (Go 1.19's vendored copy,
 * src/cmd/vendor/github.com/google/pprof/internal/...): the names are
 * symbolizer.Demangle's and graph.NodeInfo.PrintableName's, the graph is
 * graph.newGraph's, the trimming report.newTrimmedGraph's, the units
 * report.selectOutputUnit's and measurement.ScaledLabel's, the lines
 * report.reportLabels' and printText's.  pprof's arithmetic is Go's int64,
 * which wraps: sums here are done in uint64 for the same results. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "top.h"

static const char *const index_names[TOP_N_VALUES] = {
        "alloc_objects", "alloc_space", "inuse_objects", "inuse_space",
};

int top_sample_index_parse(const char *s) {
        if (!s)
                return -1;
        for (int i = 0; i < TOP_N_VALUES; i++)
                if (strcmp(s, index_names[i]) == 0)
                        return i;
        /* pprof takes an index too (SampleIndexByName's strconv.Atoi). */
        if (s[0] >= '0' && s[0] < '0' + TOP_N_VALUES && s[1] == '\0')
                return s[0] - '0';
        return -1;
}

const char *top_sample_index_name(int index) {
        return index >= 0 && index < TOP_N_VALUES ? index_names[index] : NULL;
}

static bool index_is_bytes(int index) {
        return index == TOP_ALLOC_SPACE || index == TOP_INUSE_SPACE;
}

/* ---- Go's int64 ---------------------------------------------------------- */

static int64_t add64(int64_t a, int64_t b) {
        return (int64_t) ((uint64_t) a + (uint64_t) b);
}

static int64_t mul64(int64_t a, int64_t b) {
        return (int64_t) ((uint64_t) a * (uint64_t) b);
}

/* pprof's abs64: abs64(MinInt64) stays negative. */
static int64_t abs64(int64_t v) {
        return v < 0 ? (int64_t) (0 - (uint64_t) v) : v;
}

/* Go's int64(f) for f = float64(v) * fraction.  Out of range is
 * implementation-defined in Go (amd64 gives MinInt64); so here. */
static int64_t f64_to_i64(double f) {
        if (!(f > -9223372036854775808.0 && f < 9223372036854775808.0))
                return INT64_MIN;
        return (int64_t) f;
}

/* ---- measurement.go: units and labels ----------------------------------- */

/* Bytes' units; UNIT_AUTO is pprof's "minimum"/"auto" (each value its own). */
enum { UNIT_AUTO = -1, N_BYTE_UNITS = 6 };
static const char *const byte_units[N_BYTE_UNITS] = { "B", "kB", "MB", "GB", "TB", "PB" };
static const double byte_factors[N_BYTE_UNITS] = {
        1, 1024.0, 1048576.0, 1073741824.0, 1099511627776.0, 1125899906842624.0,
};

/* measurement.Scale for bytes: the value in `unit` (or the unit it picks). */
static double scale_bytes(int64_t value, int unit, int *ret_unit) {
        if (value < 0 && value != INT64_MIN)
                return -scale_bytes(-value, unit, ret_unit);
        double v = (double) value;
        if (unit != UNIT_AUTO) {
                *ret_unit = unit;
                return v / byte_factors[unit];
        }
        /* unitType.autoScale: the largest unit the value is at least 1 of. */
        double f = 0;
        int u = -1;
        for (int i = 0; i < N_BYTE_UNITS; i++)
                if (byte_factors[i] >= f && v / byte_factors[i] >= 1.0) {
                        f = byte_factors[i];
                        u = i;
                }
        if (u < 0) {
                *ret_unit = 0;          /* the default unit, B */
                return v;
        }
        *ret_unit = u;
        return v / f;
}

/* measurement.ScaledLabel: "%.2f" without ".00", "0" for zero, then the
 * unit.  Counts have no unit.  buf holds 400 bytes (%.2f of 2^63 is 22). */
enum { LABEL_MAX = 400 };
static const char *scaled_label(char *buf, int64_t value, bool bytes, int unit) {
        double v;
        const char *u = "";
        size_t len;

        if (bytes) {
                int got;
                v = scale_bytes(value, unit, &got);
                u = byte_units[got];
        } else
                v = (double) value;
        snprintf(buf, LABEL_MAX, "%.2f", v);
        len = strlen(buf);
        if (len >= 3 && strcmp(buf + len - 3, ".00") == 0)
                buf[len -= 3] = '\0';
        if (strcmp(buf, "0") == 0 || strcmp(buf, "-0") == 0)
                return strcpy(buf, "0");
        snprintf(buf + len, LABEL_MAX - len, "%s", u);
        return buf;
}

/* measurement.Percentage: width 5, "  100%" near 100, %g below 1. */
static const char *percentage(char *buf, int64_t value, int64_t total) {
        double ratio = 0;

        if (total != 0)
                ratio = __builtin_fabs((double) value / (double) total) * 100;
        if (ratio >= 99.95 && ratio <= 100.05)
                snprintf(buf, LABEL_MAX, "  100%%");
        else if (ratio >= 1.0)
                snprintf(buf, LABEL_MAX, "%5.2f%%", ratio);
        else
                snprintf(buf, LABEL_MAX, "%5.2g%%", ratio);
        return buf;
}

/* ---- names: symbolizer.Demangle, graph.NodeInfo -------------------------- */

/* symbolizer.removeMatching: drops each outermost start...end group; stops
 * (keeping what it removed so far) at an unmatched end. */
static void remove_matching(char *name, char start, char end) {
        int nesting = 0;
        size_t first = 0;

        for (size_t cur = 0; name[cur]; cur++) {
                if (name[cur] == start) {
                        if (++nesting == 1)
                                first = cur;
                } else if (name[cur] == end) {
                        nesting--;
                        if (nesting < 0)
                                return;
                        if (nesting == 0) {
                                memmove(name + first, name + cur + 1, strlen(name + cur + 1) + 1);
                                cur = first - 1;        /* wraps for first == 0; cur++ undoes it */
                        }
                }
        }
}

/* pprof demangles what its demangler takes (C++ "_Z...", Rust "_R...") and
 * simplifies names that look demangled already: "ns::f(int)" -> "ns::f",
 * "v<int>::push" -> "v::push".  Mangled names stay as they are here (a known
 * difference, docs/top.md). */
static bool pprof_simplifies(const char *s) {
        if (strstr(s, ".<") || strstr(s, "]).")) /* Java's class.<init>, Go's (*T[...]).M */
                return false;
        return strpbrk(s, "<>[]") || strstr(s, "::");
}

/* The simplified name, malloc'd. */
static char *pprof_name(const char *name) {
        char *s = strdup(name);

        if (!s)
                return NULL;
        remove_matching(s, '(', ')');
        remove_matching(s, '<', '>');
        return s;
}

/* Go's filepath.Base. */
static const char *path_base(const char *path, size_t *len) {
        size_t n = strlen(path);

        if (n == 0) {
                *len = 1;
                return ".";
        }
        while (n > 0 && path[n - 1] == '/')
                n--;
        if (n == 0) {
                *len = 1;
                return "/";
        }
        size_t i = n;
        while (i > 0 && path[i - 1] != '/')
                i--;
        *len = n - i;
        return path + i;
}

/* ---- the graph ---------------------------------------------------------- */

struct node {
        char *name;             /* pprof's NodeInfo.Name: "" when unsymbolized */
        char *objfile;          /* NodeInfo.Objfile: set only when name is "" */
        char *printable;        /* NodeInfo.PrintableName() */
        int64_t flat, cum;
        uint64_t seen;          /* the sample that last added to cum */
        bool kept;              /* in the current KeptNodes set */
        bool in_inline, in_call; /* kinds of the in-edges left after trimming */
};

struct edge {
        uint32_t src, dst;
        int64_t weight;
        uint64_t seen;
        bool is_inline;
        bool trimmed;
};

struct top {
        const struct top_sample *samples;
        size_t n_samples;
        int index;
        bool cum;               /* sort by cum */
        uint32_t *frame_node;   /* node of every frame, sample after sample */
        struct node *nodes;
        size_t n_nodes, cap_nodes;
        uint32_t *node_slots;   /* open addressing, 0 = empty, else id + 1 */
        size_t node_mask;
        struct edge *edges;
        size_t n_edges, cap_edges;
        uint32_t *edge_slots;
        size_t edge_mask;
        bool any_inline;        /* else no edge can make a label: none are kept */
        uint64_t stamp;
        uint32_t *graph;        /* the graph's nodes (ids), in display order once sorted */
        size_t n_graph;
};

static uint64_t hash_str(uint64_t h, const char *s) {
        for (; *s; s++)
                h = (h ^ (unsigned char) *s) * 1099511628211u;
        return (h ^ 0xff) * 1099511628211u;
}

static uint64_t mix(uint64_t x) {
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdu;
        x ^= x >> 33;
        return x;
}

static uint64_t node_hash(const char *name, const char *objfile) {
        return hash_str(hash_str(14695981039346656037u, name), objfile);
}

/* Doubles the node table when it is full; its index stays at most half full. */
static int nodes_grow(struct top *t) {
        size_t cap = t->cap_nodes ? t->cap_nodes * 2 : 256;
        struct node *nodes;
        uint32_t *slots;

        if (cap > UINT32_MAX / 2)
                return -E2BIG;
        nodes = realloc(t->nodes, cap * sizeof(*nodes));
        if (!nodes)
                return -ENOMEM;
        t->nodes = nodes;
        slots = calloc(cap * 2, sizeof(*slots));
        if (!slots)
                return -ENOMEM;
        free(t->node_slots);
        t->node_slots = slots;
        t->node_mask = cap * 2 - 1;
        t->cap_nodes = cap;
        for (size_t k = 0; k < t->n_nodes; k++) {
                size_t i = node_hash(nodes[k].name, nodes[k].objfile) & t->node_mask;
                while (slots[i])
                        i = (i + 1) & t->node_mask;
                slots[i] = (uint32_t) k + 1;
        }
        return 0;
}

/* The node for (name, objfile), name already pprof's: found, or added with
 * copies of both. */
static int64_t node_intern(struct top *t, const char *name, const char *objfile) {
        size_t i;
        char *printable;

        if (t->n_nodes == t->cap_nodes) {
                int r = nodes_grow(t);
                if (r < 0)
                        return r;
        }
        i = node_hash(name, objfile) & t->node_mask;
        for (uint32_t v; (v = t->node_slots[i]); i = (i + 1) & t->node_mask) {
                const struct node *n = &t->nodes[v - 1];
                if (strcmp(n->name, name) == 0 && strcmp(n->objfile, objfile) == 0)
                        return v - 1;
        }
        if (name[0])
                printable = strdup(name);
        else if (objfile[0]) {
                size_t len;
                const char *base = path_base(objfile, &len);
                printable = malloc(len + 3);
                if (printable)
                        snprintf(printable, len + 3, "[%.*s]", (int) len, base);
        } else
                printable = strdup("<unknown>");
        struct node n = { .name = strdup(name), .objfile = strdup(objfile), .printable = printable };
        if (!n.name || !n.objfile || !n.printable) {
                free(n.name);
                free(n.objfile);
                free(n.printable);
                return -ENOMEM;
        }
        t->nodes[t->n_nodes] = n;
        t->node_slots[i] = (uint32_t) ++t->n_nodes;
        return (int64_t) t->n_nodes - 1;
}

static int frame_intern(struct top *t, const struct top_frame *f, uint32_t *ret) {
        int64_t id;

        if (f->name && f->name[0]) {
                char *name = NULL;
                if (pprof_simplifies(f->name) && !(name = pprof_name(f->name)))
                        return -ENOMEM;
                id = node_intern(t, name ? name : f->name, "");
                free(name);
        } else
                id = node_intern(t, "", f->objfile ? f->objfile : "");
        if (id < 0)
                return (int) id;
        *ret = (uint32_t) id;
        return 0;
}

static int edges_grow(struct top *t) {
        size_t cap = t->cap_edges ? t->cap_edges * 2 : 64;
        struct edge *e = realloc(t->edges, cap * sizeof(*e));
        uint32_t *slots;

        if (!e)
                return -ENOMEM;
        t->edges = e;
        t->cap_edges = cap;
        slots = calloc(cap * 2, sizeof(*slots));
        if (!slots)
                return -ENOMEM;
        free(t->edge_slots);
        t->edge_slots = slots;
        t->edge_mask = cap * 2 - 1;
        for (size_t k = 0; k < t->n_edges; k++) {
                size_t i = mix(((uint64_t) t->edges[k].src << 32) | t->edges[k].dst) & t->edge_mask;
                while (t->edge_slots[i])
                        i = (i + 1) & t->edge_mask;
                t->edge_slots[i] = (uint32_t) k + 1;
        }
        return 0;
}

/* Node.AddToEdge: a new edge takes the inline flag, any call clears it. */
static int edge_add(struct top *t, uint32_t src, uint32_t dst, int64_t w, bool is_inline) {
        size_t i;

        if (t->n_edges == t->cap_edges && edges_grow(t) < 0)
                return -ENOMEM;
        i = mix(((uint64_t) src << 32) | dst) & t->edge_mask;
        for (uint32_t v; (v = t->edge_slots[i]); i = (i + 1) & t->edge_mask) {
                struct edge *e = &t->edges[v - 1];
                if (e->src == src && e->dst == dst) {
                        /* graph.newGraph's seenEdge: once per sample. */
                        if (e->seen == t->stamp)
                                return 0;
                        e->seen = t->stamp;
                        e->weight = add64(e->weight, w);
                        if (!is_inline)
                                e->is_inline = false;
                        return 0;
                }
        }
        t->edges[t->n_edges] = (struct edge) { .src = src, .dst = dst, .weight = w,
                                              .seen = t->stamp, .is_inline = is_inline };
        t->edge_slots[i] = (uint32_t) ++t->n_edges;
        return 0;
}

/* graph.newGraph over the nodes marked kept (all when every one is): flat
 * to the leaf when it is kept, cum once per node per sample, edges from the
 * nearest kept caller.  Then selectNodesForGraph: no node with flat and cum
 * both 0. */
static int graph_build(struct top *t) {
        size_t f = 0;

        for (size_t i = 0; i < t->n_nodes; i++) {
                t->nodes[i].flat = t->nodes[i].cum = 0;
                t->nodes[i].seen = 0;
        }
        t->n_edges = 0;
        if (t->edge_slots)
                memset(t->edge_slots, 0, (t->edge_mask + 1) * sizeof(*t->edge_slots));

        for (size_t s = 0; s < t->n_samples; s++) {
                const struct top_sample *sm = &t->samples[s];
                const uint32_t *fn = t->frame_node + f;
                int64_t w = sm->values[t->index];
                int64_t parent = -1;
                bool residual = false;

                f += sm->depth;
                if (w == 0)
                        continue;
                t->stamp++;
                for (size_t k = sm->depth; k-- > 0;) {
                        uint32_t id = fn[k];
                        struct node *n = &t->nodes[id];

                        if (!n->kept) {
                                residual = true;
                                continue;
                        }
                        if (n->seen != t->stamp) {
                                n->seen = t->stamp;
                                n->cum = add64(n->cum, w);
                        }
                        if (t->any_inline && parent >= 0 && (uint32_t) parent != id &&
                            edge_add(t, (uint32_t) parent, id, w, sm->frames[k].inlined) < 0)
                                return -ENOMEM;
                        parent = id;
                        residual = false;
                }
                if (parent >= 0 && !residual)
                        t->nodes[parent].flat = add64(t->nodes[parent].flat, w);
        }

        t->n_graph = 0;
        for (size_t i = 0; i < t->n_nodes; i++)
                if (t->nodes[i].kept && !(t->nodes[i].cum == 0 && t->nodes[i].flat == 0))
                        t->graph[t->n_graph++] = (uint32_t) i;
        return 0;
}

/* Graph.TrimLowFrequencyEdges, then the in-edge kinds TextItems reads. */
static void edges_trim(struct top *t, int64_t cutoff) {
        for (size_t i = 0; i < t->n_nodes; i++)
                t->nodes[i].in_inline = t->nodes[i].in_call = false;
        for (size_t k = 0; k < t->n_edges; k++) {
                struct edge *e = &t->edges[k];
                if (abs64(e->weight) < cutoff)
                        e->trimmed = true;
                if (e->trimmed)
                        continue;
                if (e->is_inline)
                        t->nodes[e->dst].in_inline = true;
                else
                        t->nodes[e->dst].in_call = true;
        }
}

/* ---- order: graph.Nodes.Sort(FlatNameOrder / CumNameOrder) -------------- */

static int cmp_abs_desc(int64_t a, int64_t b) {
        /* Go compares abs64 values as int64: MinInt64 stays the smallest. */
        int64_t x = abs64(a), y = abs64(b);
        return x != y ? (x > y ? -1 : 1) : 0;
}

/* compareNodes: fmt.Sprint(NodeInfo) is "{Name OrigName Address File
 * StartLine Lineno Objfile}", here "{name  0  0 0 objfile}".  Only nodes
 * with equal printable names get here (rare): plain strings suffice. */
static int cmp_sprint(const struct node *l, const struct node *r) {
        char *a = NULL, *b = NULL;
        int ra = asprintf(&a, "{%s  0  0 0 %s}", l->name, l->objfile);
        int rb = asprintf(&b, "{%s  0  0 0 %s}", r->name, r->objfile);
        int c;

        if (ra < 0 || rb < 0) {
                c = strcmp(l->name, r->name);
                if (c == 0)
                        c = strcmp(l->objfile, r->objfile);
        } else
                c = strcmp(a, b);
        if (ra >= 0)
                free(a);
        if (rb >= 0)
                free(b);
        return c;
}

static int node_order(const void *pa, const void *pb, void *arg) {
        const struct top *t = arg;
        const struct node *l = &t->nodes[*(const uint32_t *) pa];
        const struct node *r = &t->nodes[*(const uint32_t *) pb];
        bool cum = t->cum;
        int c;

        if (l == r)
                return 0;
        if ((c = cmp_abs_desc(cum ? l->cum : l->flat, cum ? r->cum : r->flat)))
                return c;
        if ((c = strcmp(l->printable, r->printable)))
                return c;
        if ((c = cmp_abs_desc(cum ? l->flat : l->cum, cum ? r->flat : r->cum)))
                return c;
        return cmp_sprint(l, r);
}

static void graph_sort(struct top *t) {
        qsort_r(t->graph, t->n_graph, sizeof(*t->graph), node_order, t);
}

/* ---- report.go ---------------------------------------------------------- */

/* selectOutputUnit: the unit of the smallest non-zero node value, or one
 * up when the total is more than 100 times it. */
static int output_unit(const struct top *t, int64_t total) {
        int64_t min = 0, max = total;
        int min_unit, max_unit, unit;

        for (size_t i = 0; i < t->n_graph; i++) {
                const struct node *n = &t->nodes[t->graph[i]];
                int64_t v = abs64(n->flat);
                if (v == 0)
                        v = abs64(n->cum);
                if (v > 0 && (min == 0 || v < min))
                        min = v;
        }
        if (min == 0)
                min = max;
        scale_bytes(min, UNIT_AUTO, &min_unit);
        scale_bytes(max, UNIT_AUTO, &max_unit);
        unit = min_unit;
        if (min_unit != max_unit && mul64(min, 100) < max)
                scale_bytes(mul64(min, 100), UNIT_AUTO, &unit);
        return unit;
}

static void top_free(struct top *t) {
        for (size_t i = 0; i < t->n_nodes; i++) {
                free(t->nodes[i].name);
                free(t->nodes[i].objfile);
                free(t->nodes[i].printable);
        }
        free(t->nodes);
        free(t->node_slots);
        free(t->frame_node);
        free(t->edges);
        free(t->edge_slots);
        free(t->graph);
}

int top_print(FILE *out, const struct top_sample *samples, size_t n, const struct top_options *opt) {
        static const struct top_options defaults = TOP_OPTIONS_INIT;
        struct top t = { .samples = samples, .n_samples = n };
        size_t n_frames = 0, f = 0;
        int64_t total = 0, no_stack = 0, flat_total = 0, node_cutoff, edge_cutoff, flat_sum = 0;
        size_t dropped = 0, orig_count;
        bool bytes;
        int unit = UNIT_AUTO, r = -ENOMEM;
        char a[LABEL_MAX], b[LABEL_MAX], c[LABEL_MAX], d[LABEL_MAX], e[LABEL_MAX];

        if (!opt)
                opt = &defaults;
        if (!out || (n > 0 && !samples) || opt->sample_index < 0 || opt->sample_index >= TOP_N_VALUES ||
            opt->node_count < 0)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (samples[i].depth > 0 && !samples[i].frames)
                        return -EINVAL;
                if (samples[i].depth > SIZE_MAX / 4 - n_frames)
                        return -E2BIG;
                n_frames += samples[i].depth;
        }
        if (n_frames > UINT32_MAX / 2)
                return -E2BIG;
        t.index = opt->sample_index;
        t.cum = opt->cum;
        bytes = index_is_bytes(t.index);

        t.frame_node = malloc((n_frames ? n_frames : 1) * sizeof(*t.frame_node));
        if (!t.frame_node)
                goto done;
        for (size_t i = 0; i < n; i++)
                for (size_t k = 0; k < samples[i].depth; k++, f++) {
                        if ((r = frame_intern(&t, &samples[i].frames[k], &t.frame_node[f])) < 0)
                                goto done;
                        t.any_inline |= samples[i].frames[k].inlined;
                }
        r = -ENOMEM;
        t.graph = malloc((t.n_nodes ? t.n_nodes : 1) * sizeof(*t.graph));
        if (!t.graph)
                goto done;

        /* computeTotal: the sum of the values' absolute values, every sample.
         * Samples without frames all have the same (empty) stack: pprof
         * merges them into one before, so their sum counts, not each. */
        for (size_t i = 0; i < n; i++)
                if (samples[i].depth == 0)
                        no_stack = add64(no_stack, samples[i].values[t.index]);
                else
                        total = add64(total, abs64(samples[i].values[t.index]));
        total = add64(total, abs64(no_stack));

        /* newTrimmedGraph: the whole graph; drop the nodes whose |cum| is
         * under node_fraction of its flat sum and rebuild from the samples. */
        for (size_t i = 0; i < t.n_nodes; i++)
                t.nodes[i].kept = true;
        if (graph_build(&t) < 0)
                goto done;
        for (size_t i = 0; i < t.n_graph; i++)
                flat_total = add64(flat_total, t.nodes[t.graph[i]].flat);
        node_cutoff = abs64(f64_to_i64((double) flat_total * opt->node_fraction));
        edge_cutoff = abs64(f64_to_i64((double) flat_total * opt->edge_fraction));
        if (node_cutoff > 0) {
                size_t kept = 0;
                for (size_t i = 0; i < t.n_nodes; i++)
                        t.nodes[i].kept = false;
                for (size_t i = 0; i < t.n_graph; i++) {
                        struct node *nd = &t.nodes[t.graph[i]];
                        if (abs64(nd->cum) >= node_cutoff) {
                                nd->kept = true;
                                kept++;
                        }
                }
                if (kept != t.n_graph) {
                        dropped = t.n_graph - kept;
                        if (graph_build(&t) < 0)
                                goto done;
                } else
                        for (size_t i = 0; i < t.n_nodes; i++)
                                t.nodes[i].kept = true;
        }
        orig_count = t.n_graph;
        graph_sort(&t);

        /* -nodecount: the first N in that order, rebuilt and sorted again.
         * (pprof trims the edges before too: the same edges as below when
         * nothing is rebuilt, and rebuilt edges otherwise.) */
        if (opt->node_count > 0 && (size_t) opt->node_count < t.n_graph) {
                for (size_t i = 0; i < t.n_nodes; i++)
                        t.nodes[i].kept = false;
                for (size_t i = 0; i < (size_t) opt->node_count; i++)
                        t.nodes[t.graph[i]].kept = true;
                if (graph_build(&t) < 0)
                        goto done;
                graph_sort(&t);
        }
        edges_trim(&t, edge_cutoff);

        if (bytes && t.n_graph > 0)
                unit = output_unit(&t, total);

        /* reportLabels */
        for (size_t i = 0; i < t.n_graph; i++)
                flat_sum = add64(flat_sum, t.nodes[t.graph[i]].flat);
        percentage(b, flat_sum, total);
        fprintf(out, "Type: %s\n", index_names[t.index]);
        fprintf(out, "Showing nodes accounting for %s, %s of %s total\n",
                scaled_label(a, flat_sum, bytes, unit), b + strspn(b, " "),
                scaled_label(c, total, bytes, unit));
        if (total != 0) {
                if (dropped > 0)
                        fprintf(out, "Dropped %zu node%s (cum <= %s)\n", dropped, dropped > 1 ? "s" : "",
                                scaled_label(a, abs64(f64_to_i64((double) total * opt->node_fraction)),
                                             bytes, unit));
                if (t.n_graph > 0 && t.n_graph < orig_count)
                        fprintf(out, "Showing top %zu nodes out of %zu\n", t.n_graph, orig_count);
        }

        /* printText */
        fprintf(out, "%10s %5s%% %5s%% %10s %5s%%\n", "flat", "flat", "sum", "cum", "cum");
        flat_sum = 0;
        for (size_t i = 0; i < t.n_graph; i++) {
                const struct node *nd = &t.nodes[t.graph[i]];
                const char *inl = nd->in_inline ? (nd->in_call ? " (partial-inline)" : " (inline)") : "";

                flat_sum = add64(flat_sum, nd->flat);
                fprintf(out, "%10s %s %s %10s %s  %s%s\n",
                        scaled_label(a, nd->flat, bytes, unit), percentage(b, nd->flat, total),
                        percentage(c, flat_sum, total), scaled_label(d, nd->cum, bytes, unit),
                        percentage(e, nd->cum, total), nd->printable, inl);
        }
        r = fflush(out) != 0 || ferror(out) ? -EIO : 0;
done:
        top_free(&t);
        return r;
}
