/* heap.c - a process's profile as memd holds it, written in the formats memctl asks for (pprof protobuf, Go's debug=1 text, folded, samples for top). */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
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

/* What the writers read of a process, copied on memd's loop so that the
 * worker thread never touches the registry: the records (full-sized and
 * contiguous), the mappings (paths copied), the stats. */
struct heap_src {
        pid_t pid;                      /* 0 once it exited: files by path */
        struct profile_record *recs;
        size_t n;
        uint64_t rate_bytes;
        int64_t time_ns;
        struct mapping *maps;
        size_t n_maps;
        bool has_stats;
        struct memd_memstats stats;
};

static void src_free(struct heap_src *src) {
        for (size_t i = 0; src->maps && i < src->n_maps; i++)
                free(src->maps[i].path);
        free(src->maps);
        free(src->recs);
        *src = (struct heap_src) {};
}

static int src_init(struct heap_src *src, const struct process *p) {
        *src = (struct heap_src) {
                .pid = p->exited_ns ? 0 : p->pid,
                .n = p->profile.n,
                .rate_bytes = p->profile.rate_bytes ? p->profile.rate_bytes : p->rate_bytes,
                .time_ns = p->profile.time_ns,
                .n_maps = p->mappings.n,
                .has_stats = p->has_stats,
                .stats = p->stats,
        };
        src->recs = calloc(p->profile.n ? p->profile.n : 1, sizeof(*src->recs));
        src->maps = calloc(p->mappings.n ? p->mappings.n : 1, sizeof(*src->maps));
        if (!src->recs || !src->maps) {
                src_free(src);
                return -ENOMEM;
        }
        for (size_t i = 0; i < p->profile.n; i++) {
                const struct profile_record *x = p->profile.recs[i];
                /* Stored short (store.c): copy what there is. */
                memcpy(&src->recs[i], x, offsetof(struct profile_record, pcs) + x->depth * sizeof(uintptr_t));
        }
        for (size_t i = 0; i < p->mappings.n; i++) {
                src->maps[i] = p->mappings.v[i];
                src->maps[i].path = strdup(p->mappings.v[i].path);
                if (!src->maps[i].path) {
                        src_free(src);
                        return -ENOMEM;
                }
        }
        return 0;
}

/* /proc/PID/maps lines for memd's copy of the mappings: what the writers
 * parse to build pprof's mapping table. */
static char *maps_text(const struct heap_src *src, size_t *ret_len) {
        size_t cap = 256, len = 0;
        char *t = malloc(cap);

        if (!t)
                return NULL;
        t[0] = 0;
        for (size_t i = 0; i < src->n_maps; i++) {
                const struct mapping *m = &src->maps[i];
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

static int64_t rounded(double x) {
        return x > 0 ? (int64_t) llround(x) : 0;
}

/* The mapping holding pc, or NULL. */
static const struct mapping *mapping_of(const struct heap_src *src, uintptr_t pc) {
        for (size_t i = 0; i < src->n_maps; i++)
                if (pc >= src->maps[i].start && pc < src->maps[i].limit)
                        return &src->maps[i];
        return NULL;
}

/* One line per stack: "ao ab io ib", then a tab and one frame per tab-
 * separated field, leaf first: "f:NAME" a function, "i:NAME" a function
 * inlined into the next frame, "m:PATH" an address without a name in the
 * mapping of PATH, "u:" an address in no mapping.  The four figures are the
 * rounded estimates (docs/protocol.md, PROFILE_REQUEST format 4). */
static int write_samples(int fd, const struct heap_src *src, const struct profile *prof, struct sym_ctx *sc) {
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
                        } else if ((m = mapping_of(src, pc)))
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
        const struct heap_src *src = ctx;

        for (size_t i = 0; i < src->n_maps; i++) {
                const struct mapping *m = &src->maps[i];
                if (m->start != start)
                        continue;
                if (!m->build_id_len || m->build_id_len > buf_len)
                        return -ENODATA;
                memcpy(buf, m->build_id, m->build_id_len);
                return (ssize_t) m->build_id_len;
        }
        return -ENOENT;
}

/* Writes src in format to fd; sym may be NULL (frames stay addresses). */
static int heap_write(const struct heap_src *src, struct symbolizer *sym, uint32_t format, int fd) {
        struct sym_ctx sc = { .pid = src->pid, .sym = sym };
        struct profile prof = {};
        char *maps;
        size_t maps_len = 0;
        char root[64];
        int r;

        maps = maps_text(src, &maps_len);
        sc.maps = calloc(src->n_maps ? src->n_maps : 1, sizeof(*sc.maps));
        if (!maps || !sc.maps) {
                free(maps);
                free(sc.maps);
                return -ENOMEM;
        }
        for (size_t i = 0; i < src->n_maps; i++) {
                const struct mapping *m = &src->maps[i];
                sc.maps[i] = (struct sym_mapping) {
                        .start = m->start, .limit = m->limit, .offset = m->offset, .path = m->path,
                        .build_id = m->build_id_len ? m->build_id : NULL, .build_id_len = m->build_id_len,
                };
        }
        sc.n_maps = src->n_maps;
        /* Build-ids are read through the process's own view of the files
         * while it lives (a container's root, a replaced binary's old
         * mapping stays out of reach: docs/memd.md). */
        if (!src->pid)
                root[0] = 0;
        else
                snprintf(root, sizeof root, "/proc/%d/root", (int) src->pid);
        prof.records = src->recs;
        prof.n_records = src->n;
        prof.rate_bytes = src->rate_bytes;
        prof.maps_text = maps;
        prof.maps_len = maps_len;
        prof.root = root;
        prof.build_id = mapping_build_id;
        prof.build_id_ctx = (void *) src;
        prof.stats = src->has_stats ? &src->stats : NULL;
        prof.time_ns = src->time_ns;
        if (sym) {
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
                r = write_samples(fd, src, &prof, sym ? &sc : NULL);
                break;
        default:
                r = -EINVAL;
        }
        free(maps);
        free(sc.maps);
        return r;
}

/* Into a memfd, read from its start. */
static int heap_write_memfd(const struct heap_src *src, struct symbolizer *sym, uint32_t format, int *ret_fd,
                            size_t *ret_len) {
        int fd = memfd_create("memd-heap", MFD_CLOEXEC), r;
        off_t end;

        if (fd < 0)
                return -errno;
        r = heap_write(src, sym, format, fd);
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

/*
 * The worker.  Symbolizing (a large file's DWARF the first time: up to
 * 0.2 s) and formatting (a text profile of 10,000 stacks: 40 ms) run on a
 * thread of their own, so memd's loop keeps answering everyone else.  The
 * loop copies what is needed (heap_src) and queues a job; the worker writes
 * the memfd and moves the job to the done list; an ev_async wakes the loop,
 * which answers the client (dispatch_profile_written).  A client that went
 * away meanwhile has its jobs' conn set to NULL (heap_conn_gone): their
 * files are closed unanswered.  The symbolizer and its caches are the
 * worker's alone.
 */
struct heap_job {
        struct conn *conn;              /* NULL once the client went away */
        uint64_t id;
        uint32_t pid, format;
        bool pass_fd;
        struct heap_src src;
        int fd, r;
        size_t len;
        struct heap_job *next;
};

struct heap_worker {
        struct server *server;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool stop;
        struct heap_job *queue, **queue_tail, *current, *done, *delivering; /* current: being written */
        ev_async async;
        struct symbolizer *sym;         /* the worker thread's */
};

static void job_free(struct heap_job *j) {
        if (j->fd >= 0)
                close(j->fd);
        src_free(&j->src);
        free(j);
}

static void *worker_main(void *arg) {
        struct heap_worker *w = arg;

        /* Without a symbolizer (out of memory) frames stay addresses. */
        if (symbolizer_new(&w->sym) < 0)
                w->sym = NULL;
        pthread_mutex_lock(&w->lock);
        for (;;) {
                struct heap_job *j;

                while (!w->stop && !w->queue)
                        pthread_cond_wait(&w->cond, &w->lock);
                if (w->stop)
                        break;
                j = w->current = w->queue;
                w->queue = j->next;
                if (!w->queue)
                        w->queue_tail = &w->queue;
                pthread_mutex_unlock(&w->lock);

                j->r = heap_write_memfd(&j->src, w->sym, j->format, &j->fd, &j->len);
                src_free(&j->src);

                pthread_mutex_lock(&w->lock);
                w->current = NULL;
                j->next = w->done;
                w->done = j;
                ev_async_send(w->server->loop, &w->async);
        }
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

/* On the loop: answers the clients of the finished jobs. */
static void jobs_done(struct ev_loop *loop, ev_async *a, int revents) {
        struct heap_worker *w = a->data;

        (void) loop;
        (void) revents;
        pthread_mutex_lock(&w->lock);
        w->delivering = w->done;
        w->done = NULL;
        pthread_mutex_unlock(&w->lock);
        while (w->delivering) {
                struct heap_job *j = w->delivering;
                struct conn *c;

                pthread_mutex_lock(&w->lock);
                w->delivering = j->next;
                c = j->conn;
                pthread_mutex_unlock(&w->lock);
                if (c) {
                        int fd = j->fd;
                        j->fd = -1; /* the answer takes it */
                        if (dispatch_profile_written(c, j->id, j->pid, j->format, j->pass_fd, j->r, fd, j->len) < 0)
                                conn_free(c); /* forgets c in the jobs still listed */
                }
                job_free(j);
        }
}

static struct heap_worker *worker_get(struct server *s) {
        struct heap_worker *w = s->heap;
        sigset_t all, old;
        int r;

        if (w)
                return w;
        w = calloc(1, sizeof *w);
        if (!w)
                return NULL;
        w->server = s;
        w->queue_tail = &w->queue;
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->cond, NULL);
        ev_async_init(&w->async, jobs_done);
        w->async.data = w;
        /* Signals are the loop's (libev's handlers): the worker blocks them. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        r = pthread_create(&w->thread, NULL, worker_main, w);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r != 0) {
                pthread_cond_destroy(&w->cond);
                pthread_mutex_destroy(&w->lock);
                free(w);
                return NULL;
        }
        ev_async_start(s->loop, &w->async);
        s->heap = w;
        return w;
}

int heap_request(struct conn *c, uint64_t id, const struct process *p, uint32_t format, bool pass_fd) {
        struct heap_worker *w = worker_get(c->server);
        struct heap_job *j;
        int r;

        if (!w)
                return -EAGAIN;
        j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        *j = (struct heap_job) { .conn = c, .id = id, .pid = (uint32_t) p->pid, .format = format,
                                 .pass_fd = pass_fd, .fd = -1 };
        r = src_init(&j->src, p);
        if (r < 0) {
                free(j);
                return r;
        }
        pthread_mutex_lock(&w->lock);
        *w->queue_tail = j;
        w->queue_tail = &j->next;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
        return 0;
}

void heap_conn_gone(struct conn *c) {
        struct heap_worker *w = c->server->heap;

        if (!w)
                return;
        pthread_mutex_lock(&w->lock);
        if (w->current && w->current->conn == c)
                w->current->conn = NULL;
        for (struct heap_job *j = w->queue; j; j = j->next)
                if (j->conn == c)
                        j->conn = NULL;
        for (struct heap_job *j = w->done; j; j = j->next)
                if (j->conn == c)
                        j->conn = NULL;
        for (struct heap_job *j = w->delivering; j; j = j->next)
                if (j->conn == c)
                        j->conn = NULL;
        pthread_mutex_unlock(&w->lock);
}

void heap_done(struct server *s) {
        struct heap_worker *w = s->heap;

        if (!w)
                return;
        pthread_mutex_lock(&w->lock);
        w->stop = true;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
        ev_async_stop(s->loop, &w->async);
        for (struct heap_job *lists[] = { w->queue, w->done, w->delivering }, **l = lists; l < lists + 3; l++)
                while (*l) {
                        struct heap_job *j = *l;
                        *l = j->next;
                        job_free(j);
                }
        symbolizer_free(w->sym);
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        free(w);
        s->heap = NULL;
}
