/* agent.c - the thread that reports to memd: connects to MEMD_SOCKET, sends a snapshot then deltas and MemStats every second, answers memd's requests. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "internal.h"
#include "proto.h"

/*
 * One thread per process, started by the library's constructor (never from
 * inside a malloc hook) and again in a forked child.  It owns every byte it
 * sends: the application never waits for memd.  Sockets are non-blocking,
 * output is bounded, and memd going away (or never being there) only makes
 * the thread wait for the socket to (re)appear.
 *
 * Its own allocations (msgpack buffers) are counted like the application's
 * but never sampled: the thread runs with the reentrancy guard up, dropped
 * only while it runs a GC cycle for memd (the application's reclaimers free
 * sampled blocks, which must be matched).
 */

#define TICK_NS 1000000000LL            /* MemStats and a profile delta every second */
#define HELLO_TIMEOUT_NS (5 * 1000000000LL)
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000             /* polling the socket path without inotify */
#define BACKOFF_WATCHED_MS 10000        /* with inotify on its directory */
#define FORK_DELAY_MS 100               /* a forked child that execs at once never connects */
/* Output waiting for memd beyond this (memd stopped reading) drops the
 * connection; the reconnect's snapshot loses nothing.  Two whole-table
 * snapshots fit. */
#define OUT_MAX_BYTES (128u << 20)
#define BUCKETS_PER_MSG 16384u          /* 16384 x proto_bucket_bytes_max() < a frame */
#define MAPPINGS_MAX 4096u

/* What was last sent for one bucket, to compute deltas. */
struct shadow {
        uint64_t alloc_count, alloc_bytes, free_count, free_bytes;
        double alloc_objects_est, alloc_bytes_est, free_objects_est, free_bytes_est;
};
#define SHADOW_MAP_BYTES (65536u * sizeof(struct shadow))

enum conn_state { DISCONNECTED, WAIT_HELLO, CONNECTED };

struct agent {
        struct own_fd sock, efd, ifd;
        int iwd;                        /* inotify watch on the socket's directory, -1 none */
        enum conn_state state;
        int64_t hello_deadline;
        int64_t next_tick;
        unsigned backoff_ms;
        bool warned_uid;
        struct proto_reader *reader;
        struct proto_msg msg;
        char *out;                      /* mmap'd, out_cap bytes */
        size_t out_len, out_off, out_cap;
        int out_err;                    /* why the last out_write failed */
        struct shadow *shadow;          /* SHADOW_MAP_BYTES, MAP_NORESERVE */
        size_t shadow_n;                /* buckets the daemon knows */
        uint64_t generation;
        uint64_t event_seq;             /* newest event sent */
        uint64_t maps_hash;             /* of the executable mappings last sent */
        uint64_t pauses_sent;           /* NumGC of the last pause arrays sent; UINT64_MAX: none yet */
        uint64_t next_id;
};

static struct agent agent = {
        .sock = { -1, 0, 0 }, .efd = { -1, 0, 0 }, .ifd = { -1, 0, 0 }, .iwd = -1,
};
static _Atomic bool agent_running;
static _Atomic bool agent_exiting;

static int64_t mono_ns(void) {
        return now_ns(CLOCK_MONOTONIC);
}

void agent_notify(void) {
        uint64_t one = 1;
        struct own_fd o = agent.efd;

        if (atomic_load(&agent_running) && ownfd_ok(&o))
                (void) !write(o.fd, &one, sizeof(one));
}

/* ---- output ----
 *
 * Everything the agent sends is packed straight into one mmap'd buffer,
 * never into malloc'd memory: a large malloc'd buffer would be an mmapped
 * chunk, and freeing one makes glibc raise its mmap and trim thresholds
 * (M_MMAP_THRESHOLD's dynamic adjustment) - the application's free memory
 * would then stay resident.  Small msgpack and reader allocations stay
 * under the threshold. */

static int out_reserve(struct agent *a, size_t extra) {
        size_t need = a->out_len + extra, cap;
        void *p;

        if (need > OUT_MAX_BYTES)
                return -ENOBUFS;
        if (need <= a->out_cap)
                return 0;
        cap = a->out_cap ? a->out_cap : 65536;
        while (cap < need)
                cap *= 2;
        if (a->out)
                p = mremap(a->out, a->out_cap, cap, MREMAP_MAYMOVE);
        else
                p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
                return -ENOMEM;
        a->out = p;
        a->out_cap = cap;
        return 0;
}

/* msgpack's write callback: appends to the output. */
static int out_write(void *data, const char *buf, size_t len) {
        struct agent *a = data;
        int r = out_reserve(a, len);

        if (r < 0) {
                a->out_err = r;
                return -1;
        }
        memcpy(a->out + a->out_len, buf, len);
        a->out_len += len;
        return 0;
}

static int out_flush(struct agent *a) {
        while (a->out_off < a->out_len) {
                ssize_t n = send(a->sock.fd, a->out + a->out_off, a->out_len - a->out_off,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        return -errno;
                }
                a->out_off += (size_t) n;
        }
        a->out_off = a->out_len = 0;
        /* A whole snapshot may have passed through: give it back. */
        if (a->out_cap > (1u << 20)) {
                munmap(a->out, a->out_cap);
                a->out = NULL;
                a->out_cap = 0;
        }
        return 0;
}

/* Moves unsent bytes to the front, so a message packs at the end. */
static void out_compact(struct agent *a) {
        if (!a->out_off)
                return;
        memmove(a->out, a->out + a->out_off, a->out_len - a->out_off);
        a->out_len -= a->out_off;
        a->out_off = 0;
}

/* Packs one message with `call` (using `pk`) at the end of the output;
 * on failure the partial message is dropped.  Returns 0 or -errno. */
#define SEND(a, call)                                                   \
        ({                                                              \
                msgpack_packer pk_;                                     \
                size_t mark_;                                           \
                int r_;                                                 \
                out_compact(a);                                         \
                mark_ = (a)->out_len;                                   \
                (a)->out_err = 0;                                       \
                msgpack_packer_init(&pk_, (a), out_write);              \
                msgpack_packer *pk = &pk_;                              \
                r_ = (call);                                            \
                if (r_ < 0) {                                           \
                        (a)->out_len = mark_;                           \
                        if ((a)->out_err)                               \
                                r_ = (a)->out_err;                      \
                }                                                       \
                r_;                                                     \
        })

/* ---- what the agent sends ---- */

static int send_memstats(struct agent *a) {
        struct memd_memstats *s;
        int r;

        /* 4 KiB of figures: not on this thread's stack twice. */
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        stats_read(s);
        /* The 2 x 256 pause entries only when they changed: they are most of
         * the message, and memd keeps the last ones it got. */
        r = SEND(a, proto_pack_memstats(pk, 0, 0, now_ns(CLOCK_REALTIME), s, s->NumGC != a->pauses_sent));
        if (r >= 0)
                a->pauses_sent = s->NumGC;
        free(s);
        return r;
}

static uint64_t fnv(uint64_t h, const void *data, size_t len) {
        const unsigned char *p = data;

        for (size_t i = 0; i < len; i++) {
                h ^= p[i];
                h *= 0x100000001b3ULL;
        }
        return h;
}

/* The executable mappings, with build-ids.  With force false, sends only
 * when they changed since the last MAPPINGS (dlopen, dlclose). */
static int send_mappings(struct agent *a, uint64_t id, bool force) {
        struct proto_mapping *m = NULL;
        char *maps = NULL;
        size_t len = 0, cap = 0, n = 0;
        uint64_t h = 0xcbf29ce484222325ULL;
        const char *s, *end;
        int r;

        r = stats_read_file("/proc/self/maps", &maps, &len, &cap);
        if (r < 0)
                return 0; /* nothing to say; pprof copes without mappings */
        for (s = maps, end = maps + len; s < end;) {
                const char *eol = memchr(s, '\n', (size_t) (end - s)), *le = eol ? eol : end;
                uint64_t start, limit, offset;
                const char *path;
                size_t path_len;

                if (profile_parse_maps_line(s, le, &start, &limit, &offset, &path, &path_len))
                        h = fnv(h, s, (size_t) (le - s));
                s = eol ? eol + 1 : end;
        }
        if (!force && h == a->maps_hash) {
                munmap(maps, cap);
                return 0;
        }
        /* 16 MiB of path buffers: mmap'd, not malloc'd (see "output"). */
        m = mmap(NULL, MAPPINGS_MAX * sizeof(*m), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
                munmap(maps, cap);
                return -ENOMEM;
        }
        for (s = maps; s < end && n < MAPPINGS_MAX;) {
                const char *eol = memchr(s, '\n', (size_t) (end - s)), *le = eol ? eol : end;
                struct proto_mapping *x = &m[n];
                const char *path;
                size_t path_len;

                if (profile_parse_maps_line(s, le, &x->start, &x->limit, &x->offset, &path, &path_len) &&
                    path_len < sizeof(x->path)) {
                        /* From the loaded object's own note: the file at
                         * the path may have been replaced or deleted since. */
                        ssize_t k = profile_loaded_build_id((uintptr_t) x->start, x->build_id, sizeof(x->build_id));

                        memcpy(x->path, path, path_len);
                        x->path[path_len] = 0;
                        /* Not loaded by ld.so (mapped by hand): the file's,
                         * or an earlier mapping's of the same path. */
                        for (size_t i = 0; k == -ENOENT && i < n; i++)
                                if (!strcmp(m[i].path, x->path)) {
                                        memcpy(x->build_id, m[i].build_id, m[i].build_id_len);
                                        k = m[i].build_id_len;
                                        break;
                                }
                        if (k == -ENOENT)
                                k = profile_read_build_id(x->path, x->build_id, sizeof(x->build_id));
                        x->build_id_len = k > 0 ? (uint32_t) k : 0;
                        n++;
                }
                s = eol ? eol + 1 : end;
        }
        munmap(maps, cap);
        r = SEND(a, proto_pack_mappings(pk, id, 0, m, n));
        munmap(m, MAPPINGS_MAX * sizeof(*m));
        if (r >= 0)
                a->maps_hash = h;
        return r;
}

static void shadow_set(struct shadow *sh, const struct profile_record *r) {
        *sh = (struct shadow) {
                r->alloc_count, r->alloc_bytes, r->free_count, r->free_bytes,
                r->alloc_objects_est, r->alloc_bytes_est, r->free_objects_est, r->free_bytes_est,
        };
}

static int shadow_map(struct agent *a) {
        void *m;

        if (a->shadow)
                return 0;
        m = mmap(NULL, SHADOW_MAP_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED)
                return -errno;
        a->shadow = m;
        return 0;
}

/* The whole table, in parts of BUCKETS_PER_MSG; resets the delta base. */
static int send_snapshot(struct agent *a, uint64_t id) {
        struct profile_record *rec = NULL;
        size_t n = 0, map_len = 0, off = 0;
        uint32_t part = 0;
        int r;

        r = shadow_map(a);
        if (r < 0)
                return r;
        r = bucket_snapshot(&rec, &n, &map_len);
        if (r < 0)
                return r;
        a->generation++;
        do {
                size_t k = n - off < BUCKETS_PER_MSG ? n - off : BUCKETS_PER_MSG;
                struct proto_profile h = {
                        .generation = a->generation,
                        .part = part++,
                        .final = off + k == n,
                        .rate_bytes = atomic_load(&memd_config.last_rate),
                        .time_ns = now_ns(CLOCK_REALTIME),
                };

                r = SEND(a, proto_pack_profile(pk, PROTO_MSG_PROFILE_SNAPSHOT, id, &h, rec + off, k));
                off += k;
        } while (r >= 0 && off < n);
        if (r >= 0) {
                for (size_t i = 0; i < n; i++)
                        shadow_set(&a->shadow[i], &rec[i]);
                a->shadow_n = n;
        }
        munmap(rec, map_len);
        return r;
}

/* What changed since the last snapshot or delta, as increments. */
static int send_delta(struct agent *a) {
        struct profile_record *rec = NULL;
        size_t n = 0, map_len = 0, changed = 0;
        int r = 0;

        r = shadow_map(a);
        if (r < 0)
                return r;
        r = bucket_snapshot(&rec, &n, &map_len);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                struct shadow old = i < a->shadow_n ? a->shadow[i] : (struct shadow) {};
                struct profile_record *x = &rec[i];

                if (x->alloc_count == old.alloc_count && x->free_count == old.free_count)
                        continue;
                shadow_set(&a->shadow[i], x);
                x->alloc_count -= old.alloc_count;
                x->alloc_bytes -= old.alloc_bytes;
                x->free_count -= old.free_count;
                x->free_bytes -= old.free_bytes;
                x->alloc_objects_est -= old.alloc_objects_est;
                x->alloc_bytes_est -= old.alloc_bytes_est;
                x->free_objects_est -= old.free_objects_est;
                x->free_bytes_est -= old.free_bytes_est;
                if (changed != i)
                        rec[changed] = *x;
                changed++;
        }
        if (n > a->shadow_n)
                a->shadow_n = n;
        for (size_t off = 0; off < changed && r >= 0; off += BUCKETS_PER_MSG) {
                size_t k = changed - off < BUCKETS_PER_MSG ? changed - off : BUCKETS_PER_MSG;
                struct proto_profile h = {
                        .rate_bytes = atomic_load(&memd_config.last_rate),
                        .time_ns = now_ns(CLOCK_REALTIME),
                };

                r = SEND(a, proto_pack_profile(pk, PROTO_MSG_PROFILE_DELTA, 0, &h, rec + off, k));
        }
        munmap(rec, map_len);
        return r;
}

static void event_to_proto(const struct reclaim_event *e, struct proto_event *p) {
        memset(p, 0, sizeof(*p));
        p->kind = e->kind;
        p->time_ns = e->time_ns;
        snprintf(p->text, sizeof(p->text), "%s", e->text);
        p->forced = e->forced;
        p->seq = e->num;
        p->duration_ns = e->duration_ns;
        if (e->kind == RECLAIM_EVENT_GC) {
                p->heap_before_bytes = e->heap_before;
                p->heap_reclaimed_bytes = e->heap_reclaimed;
                p->heap_live_bytes = e->heap_live;
                p->goal_bytes = e->goal;
        } else {
                p->released_bytes = e->released;
                p->heap_inuse_bytes = e->heap_inuse;
                p->heap_idle_bytes = e->heap_idle;
                p->heap_sys_bytes = e->heap_sys;
        }
}

static int send_events(struct agent *a) {
        struct reclaim_event *ev;
        struct proto_event *pe;
        size_t n;
        int r = 0;

        ev = malloc(RECLAIM_EVENTS * sizeof(*ev) + sizeof(*pe));
        if (!ev)
                return -ENOMEM;
        pe = (struct proto_event *) (ev + RECLAIM_EVENTS);
        n = reclaim_events_since(a->event_seq, ev, RECLAIM_EVENTS, NULL);
        for (size_t i = 0; i < n && r >= 0; i++) {
                event_to_proto(&ev[i], pe);
                r = SEND(a, proto_pack_event(pk, 0, pe));
                if (r >= 0)
                        a->event_seq = ev[i].seq;
        }
        free(ev);
        return r;
}

/* ---- requests from memd ---- */

static uint64_t read_rss(void) {
        char buf[128];
        unsigned long size, resident;
        ssize_t n;
        int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return 0;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return 0;
        buf[n] = 0;
        if (sscanf(buf, "%lu %lu", &size, &resident) != 2)
                return 0;
        return (uint64_t) resident * (uint64_t) sysconf(_SC_PAGESIZE);
}

static size_t run_cycle(bool forced, bool gc_cycle, bool scavenge, uint64_t *released, struct reclaim_report *rep) {
        return reclaim_run_unguarded(forced, gc_cycle, scavenge, released, rep);
}

static int handle_gc(struct agent *a, uint64_t id) {
        struct reclaim_report rep;
        struct proto_gc_result g = {};

        g.freed_bytes = run_cycle(true, true, false, NULL, &rep);
        g.heap_before_bytes = rep.gc.heap_before;
        g.heap_after_bytes = rep.gc.heap_live;
        g.duration_ns = rep.gc.duration_ns;
        snprintf(g.text, sizeof(g.text), "%s", rep.gc.text);
        /* The cycle's EVENTs go first: memd journals them, the result is memctl's. */
        int r = send_events(a);
        return r < 0 ? r : SEND(a, proto_pack_gc_result(pk, id, &g));
}

/* memctl free-os-memory (forced GC + scavenge), or memd's policy: automatic,
 * and for idle memory a scavenge alone (the caches stay). */
static int handle_scavenge(struct agent *a, uint64_t id, const struct proto_request *q) {
        struct reclaim_report rep;
        struct proto_scavenge_result s = {};
        uint64_t released = 0;
        int64_t t0 = mono_ns();
        int r;

        s.rss_before_bytes = read_rss();
        run_cycle(!q->automatic, !q->scavenge_only, true, &released, &rep);
        s.rss_after_bytes = read_rss();
        s.released_bytes = released;
        s.duration_ns = (uint64_t) (mono_ns() - t0);
        if (rep.has_gc)
                snprintf(s.text, sizeof(s.text), "%s\n%s", rep.gc.text, rep.scvg.text);
        else
                snprintf(s.text, sizeof(s.text), "%s", rep.scvg.text);
        r = send_events(a);
        return r < 0 ? r : SEND(a, proto_pack_scavenge_result(pk, id, &s));
}

static int handle_request(struct agent *a, const struct proto_msg *m) {
        struct proto_request q = {};
        int r;

        switch (m->type) {
        case PROTO_MSG_GC_REQUEST:
        case PROTO_MSG_SCAVENGE_REQUEST:
        case PROTO_MSG_PROFILE_REQUEST:
        case PROTO_MSG_SET_RATE:
        case PROTO_MSG_SET_MEMORY_LIMIT:
        case PROTO_MSG_SET_GC_PERCENT:
                r = proto_decode_request(m, &q);
                if (r < 0)
                        return r;
                break;
        case PROTO_MSG_OK:
        case PROTO_MSG_ERROR:
                return 0; /* memd acknowledging something: nothing to do */
        case PROTO_MSG_BYE:
                return -ECONNRESET;
        default:
                return SEND(a, proto_pack_error(pk, m->id, EOPNOTSUPP, "not a request libmemd answers"));
        }
        if (atomic_load(&agent_exiting))
                return SEND(a, proto_pack_error(pk, m->id, ESHUTDOWN, "process is exiting"));
        switch (m->type) {
        case PROTO_MSG_GC_REQUEST:
                return handle_gc(a, m->id);
        case PROTO_MSG_SCAVENGE_REQUEST:
                return handle_scavenge(a, m->id, &q);
        case PROTO_MSG_PROFILE_REQUEST:
                r = send_mappings(a, m->id, true);
                return r < 0 ? r : send_snapshot(a, m->id);
        case PROTO_MSG_SET_RATE:
                return SEND(a, proto_pack_ok(pk, m->id, memd_set_profile_rate(q.value)));
        case PROTO_MSG_SET_GC_PERCENT:
                reclaim_set_gcpercent((int) q.gc_percent);
                return SEND(a, proto_pack_ok(pk, m->id, UINT64_MAX));
        default: /* PROTO_MSG_SET_MEMORY_LIMIT */
                return SEND(a, proto_pack_ok(pk, m->id, memd_set_memory_limit(q.value)));
        }
}

/* ---- the connection ---- */

static void disconnect(struct agent *a) {
        ownfd_close(&a->sock);
        a->state = DISCONNECTED;
        a->out_off = a->out_len = 0;
        proto_reader_free(a->reader);
        a->reader = NULL;
}

static void read_comm(char *buf, size_t size) {
        int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, buf, size - 1) : -1;

        if (fd >= 0)
                close(fd);
        buf[n > 0 ? n : 0] = 0;
        buf[strcspn(buf, "\n")] = 0;
}

/* Tries once; 0 when a HELLO is on its way, -errno when memd is not there. */
static int try_connect(struct agent *a) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct ucred cred;
        socklen_t len = sizeof(cred);
        struct proto_hello h = { .version = PROTO_VERSION, .role = PROTO_ROLE_AGENT };
        int fd, r;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", memd_config.socket_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        /* Report only to root's memd or to our own user's (--user). */
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
            (cred.uid != 0 && cred.uid != geteuid())) {
                close(fd);
                if (!a->warned_uid) {
                        a->warned_uid = true;
                        memd_warn("the memd socket is served by another user (not root, not us); not reporting to it");
                }
                return -EPERM;
        }
        r = ownfd_set(&a->sock, fd);
        if (r < 0)
                return r;
        r = proto_reader_new(&a->reader);
        if (r < 0) {
                disconnect(a);
                return r;
        }
        h.pid = (uint32_t) getpid();
        read_comm(h.comm, sizeof(h.comm));
        snprintf(h.software, sizeof(h.software), "libmemd %s", MEMD_VERSION_STRING);
        h.rate_bytes = atomic_load(&memd_config.profile_rate);
        r = SEND(a, proto_pack_hello(pk, ++a->next_id, &h));
        if (r >= 0)
                r = out_flush(a);
        if (r < 0) {
                disconnect(a);
                return r;
        }
        a->state = WAIT_HELLO;
        a->hello_deadline = mono_ns() + HELLO_TIMEOUT_NS;
        a->pauses_sent = UINT64_MAX; /* a new connection gets them */
        return 0;
}

/* After HELLO_OK: everything memd needs to rebuild its view. */
static int send_full(struct agent *a) {
        int r = send_memstats(a);

        if (r >= 0)
                r = send_mappings(a, 0, true);
        if (r >= 0)
                r = send_snapshot(a, 0);
        if (r >= 0)
                r = send_events(a);
        return r;
}

static int handle_input(struct agent *a) {
        char buf[65536];
        ssize_t n;
        int r;

        n = recv(a->sock.fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0)
                return -ECONNRESET;
        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        r = proto_reader_feed(a->reader, buf, (size_t) n);
        while (r >= 0 && (r = proto_reader_next(a->reader, &a->msg)) > 0) {
                if (a->state == WAIT_HELLO) {
                        if (a->msg.type != PROTO_MSG_HELLO_OK)
                                return -EPROTO; /* ERROR: refused; wait and retry */
                        a->state = CONNECTED;
                        a->backoff_ms = 0;
                        a->next_tick = mono_ns() + TICK_NS;
                        r = send_full(a);
                } else
                        r = handle_request(a, &a->msg);
        }
        return r;
}

/* ---- waiting for the socket ---- */

static void watch_dir(struct agent *a) {
        char dir[sizeof(memd_config.socket_path)];
        char *slash;
        int fd;

        if (a->ifd.fd < 0) {
                fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
                if (fd < 0 || ownfd_set(&a->ifd, fd) < 0)
                        return;
        }
        if (a->iwd >= 0)
                return;
        snprintf(dir, sizeof(dir), "%s", memd_config.socket_path);
        slash = strrchr(dir, '/');
        if (!slash)
                snprintf(dir, sizeof(dir), ".");
        else if (slash == dir)
                dir[1] = 0;
        else
                *slash = 0;
        a->iwd = inotify_add_watch(a->ifd.fd, dir, IN_CREATE | IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF);
}

static void drain(struct own_fd *o, bool inotify, struct agent *a) {
        char buf[4096] __attribute__((aligned(8)));
        ssize_t n;

        while ((n = read(o->fd, buf, sizeof(buf))) > 0)
                if (inotify)
                        for (char *p = buf; p < buf + n;) {
                                struct inotify_event *e = (struct inotify_event *) p;
                                if (e->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF))
                                        a->iwd = -1;
                                p += sizeof(*e) + e->len;
                        }
}

/* ---- the thread ---- */

/* When to try again: 50 ms after the first failure, doubling up to max_ms.
 * HELLO_OK resets it. */
static int64_t backoff(struct agent *a, unsigned max_ms) {
        a->backoff_ms = a->backoff_ms ? a->backoff_ms * 2 : BACKOFF_MIN_MS;
        if (a->backoff_ms > max_ms)
                a->backoff_ms = max_ms;
        return mono_ns() + (int64_t) a->backoff_ms * 1000000;
}

/* A connection that failed (memd went away, refused us, stopped reading). */
static int64_t give_up(struct agent *a) {
        disconnect(a);
        return backoff(a, BACKOFF_MAX_MS);
}

static int poll_ms(int64_t deadline) {
        int64_t left = deadline - mono_ns();

        if (left <= 0)
                return 0;
        return left / 1000000 >= INT_MAX ? INT_MAX : (int) (left / 1000000) + 1;
}

static void *agent_main(void *arg) {
        struct agent *a = &agent;
        struct thread_state *t = &memd_thread;
        unsigned delay_ms = (unsigned) (uintptr_t) arg;
        int64_t retry_at = mono_ns() + (int64_t) delay_ms * 1000000;

        prctl(PR_SET_NAME, "memd-agent", 0, 0, 0);
        t->guard++;
        for (;;) {
                struct pollfd p[3];
                int np = 0, timeout, r = 0;

                if (a->state == DISCONNECTED && mono_ns() >= retry_at && try_connect(a) < 0) {
                        watch_dir(a);
                        retry_at = backoff(a, a->iwd >= 0 ? BACKOFF_WATCHED_MS : BACKOFF_MAX_MS);
                }
                if (a->state == CONNECTED && mono_ns() >= a->next_tick) {
                        a->next_tick += TICK_NS;
                        if (a->next_tick < mono_ns())
                                a->next_tick = mono_ns() + TICK_NS;
                        r = send_memstats(a);
                        if (r >= 0)
                                r = send_mappings(a, 0, false);
                        if (r >= 0)
                                r = send_delta(a);
                        if (r >= 0)
                                r = send_events(a);
                }
                if (a->state == WAIT_HELLO && mono_ns() >= a->hello_deadline)
                        r = -ETIMEDOUT;
                if (r >= 0 && a->state != DISCONNECTED)
                        r = ownfd_ok(&a->sock) ? out_flush(a) : -EBADF;
                if (r < 0) {
                        retry_at = give_up(a);
                        continue;
                }

                if (a->state != DISCONNECTED) {
                        p[np++] = (struct pollfd) {
                                a->sock.fd, (short) (POLLIN | (a->out_len > a->out_off ? POLLOUT : 0)), 0
                        };
                        timeout = poll_ms(a->state == CONNECTED ? a->next_tick : a->hello_deadline);
                } else
                        timeout = poll_ms(retry_at);
                if (ownfd_ok(&a->efd))
                        p[np++] = (struct pollfd) { a->efd.fd, POLLIN, 0 };
                if (a->state == DISCONNECTED && a->iwd >= 0 && ownfd_ok(&a->ifd))
                        p[np++] = (struct pollfd) { a->ifd.fd, POLLIN, 0 };
                if (poll(p, (nfds_t) np, timeout) <= 0)
                        continue;
                for (int i = 0; i < np; i++) {
                        if (!p[i].revents)
                                continue;
                        if (p[i].fd == a->efd.fd) {
                                drain(&a->efd, false, a);
                                if (a->state == CONNECTED && (r = send_events(a)) < 0)
                                        break;
                        } else if (p[i].fd == a->ifd.fd) {
                                drain(&a->ifd, true, a);
                                /* Something appeared: try now, and soon again if it
                                 * was not memd's socket (or not listening yet). */
                                retry_at = mono_ns();
                                a->backoff_ms = 0;
                        } else if (p[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                                r = handle_input(a);
                                if (r < 0)
                                        break;
                        }
                }
                if (r < 0)
                        retry_at = give_up(a);
        }
        return NULL;
}

int thread_start(void *(*fn)(void *), void *arg) {
        pthread_attr_t attr;
        pthread_t th;
        sigset_t all, old;
        int r;

        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        /* The application's reclaimers run on this stack. */
        pthread_attr_setstacksize(&attr, 2u << 20);
        /* Signals stay the application's business. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        /* The thread's TLS and stack bookkeeping are libmemd's own memory:
         * counted, never sampled (a sample would show libmemd's frames). */
        memd_thread.guard++;
        r = pthread_create(&th, &attr, fn, arg);
        memd_thread.guard--;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
        return r;
}

static void spawn(unsigned delay_ms) {
        int fd;

        if (!strcmp(memd_config.socket_path, "off"))
                return;
        fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (fd >= 0 && ownfd_set(&agent.efd, fd) < 0)
                agent.efd.fd = -1;
        if (thread_start(agent_main, (void *) (uintptr_t) delay_ms) == 0)
                atomic_store(&agent_running, true);
        else
                memd_warn("cannot start the thread that reports to memd; not reporting");
}

void agent_start(void) {
        spawn(0);
}

/* The child of a fork has no agent thread: its descriptors were the
 * parent's (closed here, the parent keeps its own), and whatever the parent's
 * thread had allocated stays allocated (its state may be mid-update; freeing
 * it could free twice).  A new thread reports as this process. */
void agent_atfork_child(void) {
        if (!atomic_load(&agent_running))
                return;
        atomic_store(&agent_running, false);
        ownfd_close(&agent.sock);
        ownfd_close(&agent.efd);
        ownfd_close(&agent.ifd);
        agent = (struct agent) {
                .sock = { -1, 0, 0 }, .efd = { -1, 0, 0 }, .ifd = { -1, 0, 0 }, .iwd = -1,
                .event_seq = reclaim_events_last(), /* the parent's cycles are the parent's */
        };
        spawn(FORK_DELAY_MS);
}

/* At exit: no new cycle for memd starts; one running is waited for (up to a
 * second), so the application's reclaimers never run while it tears down. */
__attribute__((destructor)) static void agent_exit(void) {
        if (!atomic_load(&agent_running))
                return;
        atomic_store(&agent_exiting, true);
        reclaim_wait_idle(1000);
}
