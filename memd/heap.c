/* heap.c - a process's profile as memd holds it, written in the formats memctl asks for (pprof protobuf, Go's debug=1 text, folded, samples for top). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "daemon.h"
#include "profile.h"

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
static int write_samples(int fd, const struct process *p, const struct profile *prof) {
        FILE *f = fdopen(dup(fd), "w");
        int r = 0;

        if (!f)
                return -errno;
        for (size_t i = 0; i < prof->n_records; i++) {
                const struct profile_record *x = &prof->records[i];
                int64_t ao = rounded(x->alloc_objects_est), ab = rounded(x->alloc_bytes_est);
                int64_t io = rounded(x->alloc_objects_est - x->free_objects_est);
                int64_t ib = rounded(x->alloc_bytes_est - x->free_bytes_est);

                fprintf(f, "%" PRId64 " %" PRId64 " %" PRId64 " %" PRId64, ao, ab, io, ib);
                for (uint32_t k = 0; k < x->depth; k++) {
                        char name[512], where[512];
                        uintptr_t pc = x->pcs[k] - 1; /* the call, not the return address */
                        const struct mapping *m;

                        if (prof->symbolize && prof->symbolize(pc, name, sizeof name, where, sizeof where,
                                                               prof->symbolize_ctx) == 0) {
                                name[strcspn(name, "+")] = 0; /* "func+0xOFF" -> "func" */
                                fprintf(f, "\tf:%s", name);
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
        return r;
}

int heap_write(const struct process *p, uint32_t format, int fd) {
        struct profile prof = {};
        struct profile_record *recs;
        char *maps;
        size_t maps_len = 0;
        char root[64];
        int r;

        recs = records(p);
        maps = maps_text(p, &maps_len);
        if (!recs || !maps) {
                free(recs);
                free(maps);
                return -ENOMEM;
        }
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
        prof.stats = p->has_stats ? &p->stats : NULL;
        prof.time_ns = p->profile.time_ns;
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
                r = write_samples(fd, p, &prof);
                break;
        default:
                r = -EINVAL;
        }
        free(recs);
        free(maps);
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
