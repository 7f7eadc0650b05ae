/* heap.c - a process's profile as memd holds it, written in the formats memctl asks for (pprof protobuf, Go's debug=1 text, folded, samples for top). */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "daemon.h"
#include "profile.h"
#include "symbolize.h"

/* What the writers' symbolize callback needs: the process and its mappings
 * in the symbolizer's terms. */
struct sym_ctx {
        struct symbolizer *sym;
        pid_t pid;                      /* 0 once it exited: files by path */
        struct sym_mapping *maps;
        size_t n_maps;
};

/* SPEC §6: allocator entry frames are never leaves.  The agent drops its
 * own and the allocator's physical frames; what can remain are allocator
 * wrappers inlined into their caller (ld.so's calloc, inlined into
 * _dl_allocate_tls): those lines are dropped here. */
static bool allocator_name(const char *f) {
        static const char *const names[] = {
                "malloc", "calloc", "realloc", "reallocarray", "free", "posix_memalign", "aligned_alloc",
                "memalign", "valloc", "pvalloc", "operator new", "operator new[]",
        };

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (!strcmp(f, names[i]) || (!strncmp(f, names[i], strlen(names[i])) && f[strlen(names[i])] == '('))
                        return true;
        return false;
}

/* The frames of pc, innermost first, without inlined allocator wrappers. */
static int sym_frames(struct sym_ctx *c, uintptr_t pc, struct sym_frame *out, size_t max) {
        int n = symbolize_frames(c->sym, c->pid, c->maps, c->n_maps, pc, out, max), k = 0;

        for (int i = 0; i < n; i++) {
                if (i + 1 < n && allocator_name(out[i].func))
                        continue;
                if (k != i)
                        out[k] = out[i];
                k++;
        }
        return n > 0 ? k : n;
}

/* profile_symbolize_fn (the text format's '#' lines, folded stacks): one
 * frame per pc, the function the code belongs to (asked for one frame, the
 * symbolizer gives the physical function).  pprof gets every inlined frame
 * through lines_cb. */
static int symbolize_cb(uintptr_t pc, char *name, size_t name_len, char *where, size_t where_len, void *ctx) {
        struct sym_frame f;

        if (sym_frames(ctx, pc, &f, 1) <= 0)
                return -ENOENT;
        sym_frame_format(&f, name, name_len, where, where_len);
        return 0;
}

/* profile_lines_fn: every frame, inlined ones first (the pprof writer). */
static int lines_cb(uintptr_t pc, struct profile_line *lines, int max, void *ctx) {
        struct sym_frame *f = malloc(SYM_MAX_FRAMES * sizeof(*f));
        int n;

        if (!f)
                return 0;
        n = sym_frames(ctx, pc, f, max < SYM_MAX_FRAMES ? (size_t) max : SYM_MAX_FRAMES);
        for (int i = 0; i < n; i++) {
                snprintf(lines[i].name, sizeof lines[i].name, "%s", f[i].func);
                snprintf(lines[i].file, sizeof lines[i].file, "%s", f[i].file);
                lines[i].line = f[i].line;
        }
        free(f);
        return n > 0 ? n : 0;
}

void heap_done(struct server *s) {
        symbolizer_free(s->symbolizer);
        s->symbolizer = NULL;
}

/* /proc/PID/maps lines for memd's copy of the mappings: what the writers
 * parse to build pprof's mapping table. */
static char *maps_text(const struct process *p, size_t *ret_len) {
        size_t cap = 256, len = 0;
        char *t = malloc(cap);

        if (!t)
                return NULL;
        t[0] = 0;
        for (size_t i = 0; i < p->mappings.n; i++) {
                const struct mapping *m = &p->mappings.v[i];
                size_t need = strlen(m->path) + 96;
                int k;

                if (len + need > cap) {
                        char *n;
                        while (len + need > cap)
                                cap *= 2;
                        n = realloc(t, cap);
                        if (!n) {
                                free(t);
                                return NULL;
                        }
                        t = n;
                }
                k = snprintf(t + len, cap - len, "%" PRIx64 "-%" PRIx64 " r-xp %08" PRIx64 " 00:00 0 %s\n",
                             m->start, m->limit, m->offset, m->path);
                if (k > 0)
                        len += (size_t) k;
        }
        *ret_len = len;
        return t;
}

/* The records, full-sized and contiguous as the writers want them. */
static struct profile_record *records(const struct process *p) {
        struct profile_record *r = calloc(p->profile.n ? p->profile.n : 1, sizeof(*r));

        if (!r)
                return NULL;
        for (size_t i = 0; i < p->profile.n; i++) {
                const struct profile_record *x = p->profile.recs[i];
                /* Stored short (store.c): copy what there is. */
                memcpy(&r[i], x, offsetof(struct profile_record, pcs) + x->depth * sizeof(uintptr_t));
        }
        return r;
}

static int64_t rounded(double x) {
        return x > 0 ? (int64_t) llround(x) : 0;
}

/* The mapping holding pc, or NULL. */
static const struct mapping *mapping_of(const struct process *p, uintptr_t pc) {
        for (size_t i = 0; i < p->mappings.n; i++)
                if (pc >= p->mappings.v[i].start && pc < p->mappings.v[i].limit)
                        return &p->mappings.v[i];
        return NULL;
}

/* One line per stack: "ao ab io ib", then a tab and one frame per tab-
 * separated field, leaf first: "f:NAME" a function, "i:NAME" a function
 * inlined into the next frame, "m:PATH" an address without a name in the
 * mapping of PATH, "u:" an address in no mapping.  The four figures are the
 * rounded estimates (docs/protocol.md, PROFILE_REQUEST format 4). */
static int write_samples(int fd, const struct process *p, const struct profile *prof, struct sym_ctx *sc) {
        struct sym_frame *frames = malloc(SYM_MAX_FRAMES * sizeof(*frames));
        int fd2 = frames ? dup(fd) : -1, r = 0;
        FILE *f = fd2 >= 0 ? fdopen(fd2, "w") : NULL;

        if (!f) {
                r = frames && fd2 < 0 ? -errno : -ENOMEM;
                if (fd2 >= 0)
                        close(fd2);
                free(frames);
                return r;
        }
        for (size_t i = 0; i < prof->n_records; i++) {
                const struct profile_record *x = &prof->records[i];
                int64_t ao = rounded(x->alloc_objects_est), ab = rounded(x->alloc_bytes_est);
                int64_t io = rounded(x->alloc_objects_est - x->free_objects_est);
                int64_t ib = rounded(x->alloc_bytes_est - x->free_bytes_est);

                fprintf(f, "%" PRId64 " %" PRId64 " %" PRId64 " %" PRId64, ao, ab, io, ib);
                for (uint32_t k = 0; k < x->depth; k++) {
                        uintptr_t pc = x->pcs[k] - 1; /* the call, not the return address */
                        const struct mapping *m;
                        /* Every frame, as the pprof profile memd writes has them
                         * (lines_cb): memctl top and pprof -top then agree. */
                        int n = sc ? sym_frames(sc, pc, frames, SYM_MAX_FRAMES) : 0;

                        if (n > 0) {
                                for (int j = 0; j < n; j++)
                                        fprintf(f, "\t%c:%s", j + 1 < n ? 'i' : 'f', frames[j].func);
                        } else if ((m = mapping_of(p, pc)))
                                fprintf(f, "\tm:%s", m->path);
                        else
                                fprintf(f, "\tu:");
                }
                fputc('\n', f);
        }
        if (fflush(f) != 0)
                r = -errno;
        if (fclose(f) != 0 && r == 0)
                r = -errno;
        free(frames);
        return r;
}

/* The build-id the agent read from the object loaded at start (the file at
 * the path may have been replaced since); < 0: read the file. */
static ssize_t mapping_build_id(uint64_t start, uint8_t *buf, size_t buf_len, void *ctx) {
        const struct process *p = ctx;

        for (size_t i = 0; i < p->mappings.n; i++) {
                const struct mapping *m = &p->mappings.v[i];
                if (m->start != start)
                        continue;
                if (!m->build_id_len || m->build_id_len > buf_len)
                        return -ENODATA;
                memcpy(buf, m->build_id, m->build_id_len);
                return (ssize_t) m->build_id_len;
        }
        return -ENOENT;
}

int heap_write(const struct process *p, uint32_t format, int fd) {
        struct server *s = p->server;
        struct sym_ctx sc = { .pid = p->exited_ns ? 0 : p->pid };
        struct profile prof = {};
        struct profile_record *recs;
        char *maps;
        size_t maps_len = 0;
        char root[64];
        int r;

        recs = records(p);
        maps = maps_text(p, &maps_len);
        sc.maps = calloc(p->mappings.n ? p->mappings.n : 1, sizeof(*sc.maps));
        if (!recs || !maps || !sc.maps) {
                free(recs);
                free(maps);
                free(sc.maps);
                return -ENOMEM;
        }
        for (size_t i = 0; i < p->mappings.n; i++) {
                const struct mapping *m = &p->mappings.v[i];
                sc.maps[i] = (struct sym_mapping) {
                        .start = m->start, .limit = m->limit, .offset = m->offset, .path = m->path,
                        .build_id = m->build_id_len ? m->build_id : NULL, .build_id_len = m->build_id_len,
                };
        }
        sc.n_maps = p->mappings.n;
        /* Without a symbolizer (out of memory) frames stay addresses. */
        if (!s->symbolizer && symbolizer_new(&s->symbolizer) < 0)
                s->symbolizer = NULL;
        sc.sym = s->symbolizer;
        /* Build-ids are read through the process's own view of the files
         * while it lives (a container's root, a replaced binary's old
         * mapping stays out of reach: docs/memd.md). */
        if (p->exited_ns)
                root[0] = 0;
        else
                snprintf(root, sizeof root, "/proc/%d/root", (int) p->pid);
        prof.records = recs;
        prof.n_records = p->profile.n;
        prof.rate_bytes = p->profile.rate_bytes ? p->profile.rate_bytes : p->rate_bytes;
        prof.maps_text = maps;
        prof.maps_len = maps_len;
        prof.root = root;
        prof.build_id = mapping_build_id;
        prof.build_id_ctx = (void *) p;
        prof.stats = p->has_stats ? &p->stats : NULL;
        prof.time_ns = p->profile.time_ns;
        if (sc.sym) {
                prof.symbolize = symbolize_cb;
                prof.lines = lines_cb;
                prof.symbolize_ctx = &sc;
        }
        switch (format) {
        case PROTO_PROFILE_PPROF:
                r = profile_write_pprof(fd, &prof);
                break;
        case PROTO_PROFILE_TEXT:
                r = profile_write_text(fd, &prof);
                break;
        case PROTO_PROFILE_FOLDED:
                r = profile_write_folded(fd, &prof);
                break;
        case PROTO_PROFILE_SAMPLES:
                r = write_samples(fd, p, &prof, sc.sym ? &sc : NULL);
                break;
        default:
                r = -EINVAL;
        }
        free(recs);
        free(maps);
        free(sc.maps);
        return r;
}

int heap_write_memfd(const struct process *p, uint32_t format, int *ret_fd, size_t *ret_len) {
        int fd = memfd_create("memd-heap", MFD_CLOEXEC), r;
        off_t end;

        if (fd < 0)
                return -errno;
        r = heap_write(p, format, fd);
        if (r < 0) {
                close(fd);
                return r;
        }
        end = lseek(fd, 0, SEEK_END);
        if (end < 0 || lseek(fd, 0, SEEK_SET) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        *ret_fd = fd;
        *ret_len = (size_t) end;
        return 0;
}
