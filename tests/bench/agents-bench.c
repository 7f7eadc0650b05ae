/* agents-bench.c - many simulated libmemd agents in one process, each on a connection made by a tiny child of its own, speaking the real protocol to memd (run-agents-bench.sh drives it).
 *
 * usage: agents-bench [-n AGENTS] [-d SECONDS] [-s SOCKET] [-b BUCKETS] [-k STACKS]
 *                     [--depth N] [--pauses N] [--period MS]
 *        agents-bench --probe COUNT [--gap MS] [-s SOCKET]
 *
 * memd knows an agent by its connection's SO_PEERCRED pid and keeps one
 * connection per pid, so N connections opened by one process would be one
 * agent.  So the benchmark first forks N children, before it holds anything
 * they could inherit.  Each child connects to memd's socket (SO_PEERCRED is
 * fixed at connect(), so the connection carries the child's pid), hands the
 * connected fd to the parent over a socketpair (SCM_RIGHTS), closes its own
 * copy and blocks reading a pipe until the parent is gone.  It allocates
 * nothing and leaves by _exit().  The parent then speaks the protocol on all
 * N connections from one epoll loop, non-blocking:
 *
 *   HELLO (role agent); on HELLO_OK: MEMSTATS, MAPPINGS, PROFILE_SNAPSHOT
 *   (generation 1, part 0, final, every one of the agent's STACKS stacks);
 *   then once per period: MEMSTATS and a PROFILE_DELTA of BUCKETS buckets
 *   (one write: a real agent flushes both together).
 *
 * Agent i sends at offset i * period / N within each period, so the N
 * agents' sends are spread evenly, not all at once.  Whatever memd sends is
 * read.  Requests are answered as an agent would answer them (GC_RESULT,
 * SCAVENGE_RESULT, a snapshot, OK with the previous value), and anything
 * else is dropped.
 *
 * stdout: "ready agents=N ..." once every agent has had its HELLO_OK and
 * written its snapshot, then at the end one "done ..." line of key=value
 * pairs: what was sent, and how late the periodic sends were (the load
 * generator's own health: a late generator under-loads memd).  SIGTERM or
 * SIGINT ends the run early, and it still prints the "done" line.
 *
 * --probe COUNT is a control client instead: COUNT times, spaced --gap ms,
 * it connects, says HELLO, asks STATUS_REQUEST and decodes the reply, as
 * memctl does but without starting a process or printing.  It prints the
 * latencies (whole call; request to decoded reply; request to the reply's
 * first byte, which is memd's time to build it) and the reply's size on the
 * wire. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"

#define MAX_AGENTS 100000u
#define READ_BYTES 65536
#define OUT_MAX_BYTES (16u << 20)       /* memd not reading: give the connection up */
#define LATE_BIN_NS 100000              /* lateness histogram: 0.1 ms bins ... */
#define LATE_BINS 20001                 /* ... up to 2 s, the last bin is "more" */
#define DEFAULT_SOCKET "/run/memd/memd.sock"

enum agent_state { A_CONNECTED, A_HELLO_SENT, A_ATTACHED, A_CLOSED };

struct agent {
        int fd;
        enum agent_state state;
        bool want_out;                  /* EPOLLOUT is registered */
        pid_t pid;                      /* the child that made the connection */
        struct proto_reader *reader;
        char *out;
        size_t out_len, out_off, out_cap;
        uint64_t generation;
        uint64_t ticks;
        uint64_t rate_bytes, limit_bytes;
        struct memd_memstats stats;
        struct profile_record *stacks;  /* cumulative figures, opt.stacks of them */
};

static struct {
        unsigned agents, buckets, stacks, depth, pauses, period_ms, probe, gap_ms;
        double duration;
        const char *socket;
} opt = {
        .agents = 1000, .buckets = 3, .stacks = 16, .depth = 16, .pauses = 8,
        .period_ms = 1000, .gap_ms = 50, .duration = 30,
};

static struct {
        uint64_t msgs_sent, bytes_sent, msgs_recv, bytes_recv, requests, ticks, closed, eagain;
        uint64_t late[LATE_BINS], late_max_ns;
} cnt;

static struct agent *agents;
static struct profile_record *delta;    /* opt.buckets records, reused for every delta */
static msgpack_sbuffer sb;
static msgpack_packer pk;
static int ep = -1;
static unsigned n_attached, n_open;
static volatile sig_atomic_t stop;

static int64_t clock_ns(clockid_t id) {
        struct timespec ts;

        clock_gettime(id, &ts);
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}
static int64_t mono_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
static int64_t real_ns(void) { return clock_ns(CLOCK_REALTIME); }

static void on_signal(int sig) {
        (void) sig;
        stop = 1;
}

static int parse_uint(const char *name, const char *s, unsigned lo, unsigned hi, unsigned *ret) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi) {
                fprintf(stderr, "agents-bench: %s: expected an integer in [%u, %u], not '%s'\n", name, lo, hi, s);
                return -EINVAL;
        }
        *ret = (unsigned) v;
        return 0;
}

/* ---- the children -----------------------------------------------------------
 * Everything in here is a system call: no allocation, no stdio. */

struct child_report {
        uint32_t idx;
        int32_t err;    /* connect()'s errno, 0: the fd is attached */
};

static _Noreturn void child_main(uint32_t idx, int sp, int pipe_r, pid_t parent, const struct sockaddr_un *sa) {
        struct child_report rep = { .idx = idx };
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } cm;
        struct iovec iov = { .iov_base = &rep, .iov_len = sizeof rep };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        struct sigaction dfl = { .sa_handler = SIG_DFL };
        char c;
        int fd;

        sigaction(SIGTERM, &dfl, NULL);
        sigaction(SIGINT, &dfl, NULL);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
                _exit(1);
        prctl(PR_SET_NAME, "bench-agent");

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (const struct sockaddr *) sa, sizeof *sa) < 0)
                rep.err = errno;
        if (rep.err == 0) {
                memset(&cm, 0, sizeof cm);
                mh.msg_control = cm.buf;
                mh.msg_controllen = sizeof cm.buf;
                cm.h.cmsg_level = SOL_SOCKET;
                cm.h.cmsg_type = SCM_RIGHTS;
                cm.h.cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(&cm.h), &fd, sizeof fd);
        }
        while (sendmsg(sp, &mh, MSG_NOSIGNAL) < 0 && errno == EINTR)
                ;
        if (fd >= 0)
                close(fd);
        close(sp);
        /* The parent holds the only write end: EOF when it is gone. */
        for (;;) {
                ssize_t k = read(pipe_r, &c, 1);
                if (k == 0 || (k < 0 && errno != EINTR))
                        break;
        }
        _exit(0);
}

/* Forks n children, collects their connected fds into agents[].fd (-1 for
 * one whose connect failed) and their pids.  *pipe_w is the write end the
 * children wait on.  Returns the number of connections, or -errno. */
static int spawn_children(unsigned n, const struct sockaddr_un *sa, int *pipe_w) {
        int sp[2], pp[2], got = 0, failed = 0;
        pid_t parent = getpid();
        unsigned forked = 0;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0 || pipe2(pp, O_CLOEXEC) < 0)
                return -errno;
        fflush(NULL);
        for (; forked < n; forked++) {
                pid_t pid = fork();

                if (pid < 0) {
                        fprintf(stderr, "agents-bench: fork (child %u of %u): %m\n", forked + 1, n);
                        break;
                }
                if (pid == 0) {
                        close(pp[1]);
                        close(sp[0]);
                        child_main(forked, sp[1], pp[0], parent, sa);
                }
                agents[forked].pid = pid;
        }
        close(sp[1]);
        close(pp[0]);
        *pipe_w = pp[1];

        /* Every child sends one report; EOF once they all have (or died). */
        for (;;) {
                struct child_report rep;
                union {
                        struct cmsghdr h;
                        char buf[CMSG_SPACE(sizeof(int))];
                } cm;
                struct iovec iov = { .iov_base = &rep, .iov_len = sizeof rep };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
                                     .msg_controllen = sizeof cm.buf };
                struct cmsghdr *h;
                ssize_t k = recvmsg(sp[0], &mh, MSG_CMSG_CLOEXEC);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                if ((size_t) k != sizeof rep || rep.idx >= forked)
                        continue;
                if (rep.err) {
                        if (failed++ < 5)
                                fprintf(stderr, "agents-bench: child %u: connect %s: %s\n", rep.idx, sa->sun_path,
                                        strerror(rep.err));
                        continue;
                }
                h = CMSG_FIRSTHDR(&mh);
                if (h && h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS &&
                    h->cmsg_len == CMSG_LEN(sizeof(int))) {
                        memcpy(&agents[rep.idx].fd, CMSG_DATA(h), sizeof(int));
                        got++;
                } else if (failed++ < 5)
                        fprintf(stderr, "agents-bench: child %u sent no fd (RLIMIT_NOFILE too low?)\n", rep.idx);
        }
        close(sp[0]);
        if (failed)
                fprintf(stderr, "agents-bench: %d of %u connections failed\n", failed, forked);
        return got;
}

/* ---- output ----------------------------------------------------------------- */

static void agent_close(struct agent *a, const char *why) {
        if (a->state == A_CLOSED)
                return;
        if (why && cnt.closed < 5)
                fprintf(stderr, "agents-bench: agent pid %d: %s\n", (int) a->pid, why);
        if (why)
                cnt.closed++;
        epoll_ctl(ep, EPOLL_CTL_DEL, a->fd, NULL);
        close(a->fd);
        a->fd = -1;
        if (a->state == A_ATTACHED)
                n_attached--;
        a->state = A_CLOSED;
        n_open--;
}

static void agent_set_out(struct agent *a, bool want) {
        struct epoll_event ev = { .events = EPOLLIN | (want ? EPOLLOUT : 0), .data.u32 = (uint32_t) (a - agents) };

        if (a->want_out == want)
                return;
        a->want_out = want;
        epoll_ctl(ep, EPOLL_CTL_MOD, a->fd, &ev);
}

static int agent_flush(struct agent *a) {
        while (a->out_off < a->out_len) {
                ssize_t k = send(a->fd, a->out + a->out_off, a->out_len - a->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN) {
                                cnt.eagain++;
                                break;
                        }
                        return -errno;
                }
                a->out_off += (size_t) k;
                cnt.bytes_sent += (uint64_t) k;
        }
        if (a->out_off == a->out_len)
                a->out_off = a->out_len = 0;
        agent_set_out(a, a->out_len > 0);
        return 0;
}

/* Queues what the global buffer holds (msgs messages) for a and writes what
 * the socket takes; empties the buffer. */
static void agent_send(struct agent *a, unsigned msgs) {
        size_t pending = a->out_len - a->out_off;
        int r;

        if (a->state == A_CLOSED) {
                sb.size = 0;
                return;
        }
        if (pending + sb.size > OUT_MAX_BYTES) {
                sb.size = 0;
                agent_close(a, "memd does not read: output backlog over 16 MiB");
                return;
        }
        if (a->out_off > 0) {
                memmove(a->out, a->out + a->out_off, pending);
                a->out_off = 0;
                a->out_len = pending;
        }
        if (a->out_len + sb.size > a->out_cap) {
                size_t cap = a->out_cap ? a->out_cap : 4096;
                char *p;

                while (cap < a->out_len + sb.size)
                        cap *= 2;
                p = realloc(a->out, cap);
                if (!p) {
                        fprintf(stderr, "agents-bench: out of memory\n");
                        exit(1);
                }
                a->out = p;
                a->out_cap = cap;
        }
        memcpy(a->out + a->out_len, sb.data, sb.size);
        a->out_len += sb.size;
        sb.size = 0;
        cnt.msgs_sent += msgs;
        r = agent_flush(a);
        if (r < 0) {
                errno = -r;
                agent_close(a, "send failed");
        }
}

static void packed(int r, const char *what) {
        if (r < 0) {
                fprintf(stderr, "agents-bench: cannot pack %s: %s\n", what, strerror(-r));
                exit(1);
        }
}

/* ---- what an agent says -------------------------------------------------------- */

static uint64_t mix(uint64_t x) {
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdull;
        x ^= x >> 33;
        x *= 0xc4ceb9fe1a85ec53ull;
        return x ^ (x >> 33);
}

/* Unbiased estimate of what count samples of size bytes stand for (libmemd's weighting). */
static double estimate(uint64_t count, uint64_t size, uint64_t rate) {
        if (rate <= 1 || size == 0)
                return (double) count;
        return (double) count / (1.0 - exp(-(double) size / (double) rate));
}

static uint64_t stack_size(unsigned k) {
        return 64ull << (k % 10);       /* 64 B .. 32 KiB */
}

static void agent_init(struct agent *a, unsigned i) {
        struct memd_memstats *s = &a->stats;
        int64_t now = real_ns();

        a->rate_bytes = 512 * 1024;
        a->stacks = calloc(opt.stacks, sizeof *a->stacks);
        if (!a->stacks || proto_reader_new(&a->reader) < 0) {
                fprintf(stderr, "agents-bench: out of memory\n");
                exit(1);
        }
        for (unsigned k = 0; k < opt.stacks; k++) {
                struct profile_record *rec = &a->stacks[k];
                uint64_t size = stack_size(k);

                /* A leaf of the agent's own, callers shared with the agent's
                 * other stacks, and the outermost frames (main,
                 * __libc_start_call_main) the same for everybody. */
                rec->depth = opt.depth;
                for (unsigned j = 0; j < opt.depth; j++) {
                        uint64_t h = j == 0 ? mix(((uint64_t) i << 20) | k) : mix(((uint64_t) i << 20) | (k % 4) << 8 | j);

                        if (j + 2 >= opt.depth)
                                h = mix(j);
                        rec->pcs[j] = 0x555555554000ull + (h % 0x200000) * 4;
                }
                rec->alloc_count = 10 + k;
                rec->alloc_bytes = rec->alloc_count * size;
                rec->free_count = rec->alloc_count / 2;
                rec->free_bytes = rec->free_count * size;
                rec->alloc_objects_est = estimate(rec->alloc_count, size, a->rate_bytes);
                rec->alloc_bytes_est = rec->alloc_objects_est * (double) size;
                rec->free_objects_est = estimate(rec->free_count, size, a->rate_bytes);
                rec->free_bytes_est = rec->free_objects_est * (double) size;
        }

        s->HeapInuse = (64ull + i % 64) << 20;
        s->HeapAlloc = s->Alloc = s->HeapInuse - (s->HeapInuse >> 4);
        s->HeapIdle = 16ull << 20;
        s->HeapReleased = 8ull << 20;
        s->HeapSys = s->HeapInuse + s->HeapIdle;
        s->Sys = s->HeapSys + (4ull << 20);
        s->BuckHashSys = 1ull << 20;
        s->Mallocs = 100000 + i;
        s->Frees = 60000;
        s->HeapObjects = s->Mallocs - s->Frees;
        s->TotalAlloc = s->HeapAlloc + s->Mallocs * 256;
        s->RSS = s->HeapSys - s->HeapReleased + (20ull << 20);
        s->RssAnon = s->RSS - (12ull << 20);
        s->Threads = 4;
        /* A process that has run opt.pauses GC cycles, one every 10 s. */
        s->NumGC = opt.pauses;
        for (unsigned j = 0; j < opt.pauses; j++) {
                s->PauseNs[j] = 20000 + mix((uint64_t) i * 256 + j) % 200000;
                s->PauseTotalNs += s->PauseNs[j];
                s->PauseEnd[j] = (uint64_t) (now - (int64_t) (opt.pauses - j) * 10000000000ll);
        }
        if (opt.pauses)
                s->LastGC = s->PauseEnd[opt.pauses - 1];
        s->NextGC = s->HeapAlloc * 2;
        s->GCCPUFraction = 0.0001;
}

/* As libmemd's agent: the pause arrays on attach only (NumGC does not
 * change here afterwards). */
static void pack_memstats(struct agent *a, uint64_t id, bool with_pauses) {
        packed(proto_pack_memstats(&pk, id, 0, real_ns(), &a->stats, with_pauses), "MEMSTATS");
}

static void pack_mappings(uint64_t id) {
        static const struct proto_mapping maps[] = {
                { .start = 0x555555554000ull, .limit = 0x555555654000ull, .offset = 0,
                  .path = "/usr/libexec/bench-agent", .build_id = { 0xab, 0xcd, 0xef, 0x01 }, .build_id_len = 20 },
                { .start = 0x7ffff7dd0000ull, .limit = 0x7ffff7f25000ull, .offset = 0x26000,
                  .path = "/usr/lib/x86_64-linux-gnu/libc.so.6", .build_id = { 0x12, 0x34 }, .build_id_len = 20 },
        };

        packed(proto_pack_mappings(&pk, id, 0, maps, sizeof maps / sizeof maps[0]), "MAPPINGS");
}

static void pack_snapshot(struct agent *a, uint64_t id) {
        struct proto_profile h = {
                .generation = ++a->generation, .part = 0, .final = true,
                .rate_bytes = a->rate_bytes, .time_ns = real_ns(),
        };

        packed(proto_pack_profile(&pk, PROTO_MSG_PROFILE_SNAPSHOT, id, &h, a->stacks, opt.stacks),
               "PROFILE_SNAPSHOT");
}

/* On HELLO_OK: the snapshot an agent sends on (re)connect. */
static void agent_attached(struct agent *a) {
        a->state = A_ATTACHED;
        n_attached++;
        pack_memstats(a, 0, true);
        pack_mappings(0);
        pack_snapshot(a, 0);
        agent_send(a, 3);
}

/* One period's worth: new MemStats figures and a delta of opt.buckets buckets. */
static void agent_tick(struct agent *a) {
        struct memd_memstats *s = &a->stats;
        struct proto_profile h = { .rate_bytes = a->rate_bytes, .time_ns = real_ns() };
        uint64_t t = ++a->ticks, allocs = 2000 + mix(t) % 1000;

        s->Mallocs += allocs;
        s->Frees += allocs - 50 + mix(t + 1) % 100;
        if (s->Frees > s->Mallocs)
                s->Frees = s->Mallocs;
        s->HeapObjects = s->Mallocs - s->Frees;
        s->TotalAlloc += allocs * 256;
        s->HeapAlloc = s->Alloc = s->HeapInuse - (s->HeapInuse >> 4) + mix(t + 2) % (1 << 20);
        s->RSS += (mix(t + 3) % 3) * 4096;
        s->RSS -= (mix(t + 4) % 3) * 4096;
        s->RssAnon = s->RSS - (12ull << 20);

        for (unsigned b = 0; b < opt.buckets; b++) {
                unsigned k = (unsigned) ((t * opt.buckets + b) % opt.stacks);
                struct profile_record *c = &a->stacks[k], *d = &delta[b];
                uint64_t size = stack_size(k);

                d->depth = c->depth;
                memcpy(d->pcs, c->pcs, c->depth * sizeof c->pcs[0]);
                d->alloc_count = 1 + mix(t * 64 + b) % 4;
                d->free_count = mix(t * 64 + b + 32) % (d->alloc_count + 1);
                d->alloc_bytes = d->alloc_count * size;
                d->free_bytes = d->free_count * size;
                d->alloc_objects_est = estimate(d->alloc_count, size, a->rate_bytes);
                d->alloc_bytes_est = d->alloc_objects_est * (double) size;
                d->free_objects_est = estimate(d->free_count, size, a->rate_bytes);
                d->free_bytes_est = d->free_objects_est * (double) size;
                c->alloc_count += d->alloc_count;
                c->alloc_bytes += d->alloc_bytes;
                c->free_count += d->free_count;
                c->free_bytes += d->free_bytes;
                c->alloc_objects_est += d->alloc_objects_est;
                c->alloc_bytes_est += d->alloc_bytes_est;
                c->free_objects_est += d->free_objects_est;
                c->free_bytes_est += d->free_bytes_est;
        }
        pack_memstats(a, 0, false);
        packed(proto_pack_profile(&pk, PROTO_MSG_PROFILE_DELTA, 0, &h, delta, opt.buckets), "PROFILE_DELTA");
        agent_send(a, 2);
        cnt.ticks++;
}

/* A request memd forwarded from a control client: answer as libmemd would. */
static void agent_request(struct agent *a, const struct proto_msg *m) {
        struct proto_request q;
        int r = proto_decode_request(m, &q);

        cnt.requests++;
        if (r < 0) {
                packed(proto_pack_error(&pk, m->id, EINVAL, "bad request"), "ERROR");
                agent_send(a, 1);
                return;
        }
        switch (m->type) {
        case PROTO_MSG_GC_REQUEST: {
                struct proto_gc_result g = {
                        .heap_before_bytes = a->stats.HeapInuse, .heap_after_bytes = a->stats.HeapInuse,
                        .duration_ns = 50000,
                };
                a->stats.NumGC++;
                a->stats.NumForcedGC++;
                snprintf(g.text, sizeof g.text, "gc %" PRIu32 " @0.000s 0%%: forced (agents-bench)", a->stats.NumGC);
                packed(proto_pack_gc_result(&pk, m->id, &g), "GC_RESULT");
                break;
        }
        case PROTO_MSG_SCAVENGE_REQUEST: {
                struct proto_scavenge_result sc = {
                        .rss_before_bytes = a->stats.RSS, .rss_after_bytes = a->stats.RSS, .duration_ns = 50000,
                };
                packed(proto_pack_scavenge_result(&pk, m->id, &sc), "SCAVENGE_RESULT");
                break;
        }
        case PROTO_MSG_PROFILE_REQUEST:
                pack_snapshot(a, m->id);
                pack_mappings(m->id);
                agent_send(a, 2);
                return;
        case PROTO_MSG_SET_RATE:
                packed(proto_pack_ok(&pk, m->id, a->rate_bytes), "OK");
                a->rate_bytes = q.value;
                break;
        case PROTO_MSG_SET_MEMORY_LIMIT:
                packed(proto_pack_ok(&pk, m->id, a->limit_bytes), "OK");
                a->limit_bytes = q.value;
                break;
        default:
                packed(proto_pack_error(&pk, m->id, EOPNOTSUPP, "not an agent's request"), "ERROR");
                break;
        }
        agent_send(a, 1);
}

static void agent_message(struct agent *a, const struct proto_msg *m) {
        cnt.msgs_recv++;
        switch (m->type) {
        case PROTO_MSG_HELLO_OK:
                if (a->state == A_HELLO_SENT)
                        agent_attached(a);
                break;
        case PROTO_MSG_ERROR:
                if (a->state == A_HELLO_SENT) {
                        struct proto_error e = {};

                        proto_decode_error(m, &e);
                        fprintf(stderr, "agents-bench: memd refused agent pid %d: %s (%s)\n", (int) a->pid, e.text,
                                strerror((int) e.code));
                        agent_close(a, "HELLO refused");
                }
                break;
        case PROTO_MSG_BYE:
                agent_close(a, "memd said BYE");
                break;
        case PROTO_MSG_GC_REQUEST:
        case PROTO_MSG_SCAVENGE_REQUEST:
        case PROTO_MSG_PROFILE_REQUEST:
        case PROTO_MSG_SET_RATE:
        case PROTO_MSG_SET_MEMORY_LIMIT:
                agent_request(a, m);
                break;
        default:
                break;  /* OK, EVENT, anything memd may add: read and dropped */
        }
}

static void agent_input(struct agent *a, struct proto_msg *m) {
        static char buf[READ_BYTES];
        ssize_t k = recv(a->fd, buf, sizeof buf, MSG_DONTWAIT);
        int r;

        if (k < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (k < 0) {
                agent_close(a, "recv failed");
                return;
        }
        if (k == 0) {
                agent_close(a, a->state == A_HELLO_SENT ? "memd closed the connection before HELLO_OK"
                                                        : "memd closed the connection");
                return;
        }
        cnt.bytes_recv += (uint64_t) k;
        r = proto_reader_feed(a->reader, buf, (size_t) k);
        while (r >= 0 && a->state != A_CLOSED && (r = proto_reader_next(a->reader, m)) > 0)
                agent_message(a, m);
        if (r < 0 && a->state != A_CLOSED) {
                errno = -r;
                agent_close(a, "memd sent a malformed message");
        }
}

/* ---- the agents' loop ------------------------------------------------------------ */

static void raise_nofile(rlim_t need) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
                return;
        if (rl.rlim_max < need) {
                rl.rlim_max = need;     /* root only (CAP_SYS_RESOURCE) */
                rl.rlim_cur = need;
                if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
                        return;
                getrlimit(RLIMIT_NOFILE, &rl);
                fprintf(stderr, "agents-bench: RLIMIT_NOFILE hard limit %llu < %llu needed; expect failures\n",
                        (unsigned long long) rl.rlim_max, (unsigned long long) need);
                rl.rlim_cur = rl.rlim_max;
        } else
                rl.rlim_cur = need;
        setrlimit(RLIMIT_NOFILE, &rl);
}

static double late_quantile(double q) {
        uint64_t total = 0, seen = 0, want;

        for (unsigned i = 0; i < LATE_BINS; i++)
                total += cnt.late[i];
        if (total == 0)
                return 0;
        want = (uint64_t) ceil(q * (double) total);
        for (unsigned i = 0; i < LATE_BINS; i++) {
                seen += cnt.late[i];
                if (seen >= want && want > 0)   /* the bin's upper edge, but never above the maximum */
                        return fmin((double) (i + 1) * LATE_BIN_NS, (double) cnt.late_max_ns) / 1e6;
        }
        return (double) cnt.late_max_ns / 1e6;
}

static int run_agents(const struct sockaddr_un *sa) {
        unsigned n = opt.agents;
        int64_t period_ns = (int64_t) opt.period_ms * 1000000, t0, now, ready_ns = 0, end_ns = 0, spawn_ns;
        uint64_t slot = 0;
        struct proto_hello h = { .version = PROTO_VERSION, .role = PROTO_ROLE_AGENT, .rate_bytes = 512 * 1024 };
        struct epoll_event evs[256];
        struct proto_msg m;
        struct rusage ru;
        sigset_t block, empty;
        int pipe_w = -1, got;

        /* The n connections, the children's pipe and socketpair, epoll, stdio. */
        raise_nofile((rlim_t) n + 64);
        agents = calloc(n, sizeof *agents);
        if (!agents) {
                fprintf(stderr, "agents-bench: out of memory\n");
                return 1;
        }
        for (unsigned i = 0; i < n; i++)
                agents[i].fd = -1;

        spawn_ns = mono_ns();
        got = spawn_children(n, sa, &pipe_w);
        if (got < 0) {
                fprintf(stderr, "agents-bench: cannot set up the children: %s\n", strerror(-got));
                return 1;
        }
        fprintf(stderr, "agents-bench: %d of %u children connected to %s in %.0f ms\n", got, n, sa->sun_path,
                (double) (mono_ns() - spawn_ns) / 1e6);

        delta = calloc(opt.buckets ? opt.buckets : 1, sizeof *delta);
        ep = epoll_create1(EPOLL_CLOEXEC);
        if (!delta || ep < 0) {
                fprintf(stderr, "agents-bench: setup failed: %m\n");
                return 1;
        }
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        proto_msg_init(&m);

        sigemptyset(&empty);
        sigemptyset(&block);
        sigaddset(&block, SIGTERM);
        sigaddset(&block, SIGINT);
        sigprocmask(SIG_BLOCK, &block, NULL);

        strcpy(h.comm, "bench-agent");
        strcpy(h.software, "agents-bench 1");
        for (unsigned i = 0; i < n; i++) {
                struct agent *a = &agents[i];
                struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };

                if (a->fd < 0) {
                        a->state = A_CLOSED;
                        continue;
                }
                agent_init(a, i);
                if (epoll_ctl(ep, EPOLL_CTL_ADD, a->fd, &ev) < 0) {
                        fprintf(stderr, "agents-bench: epoll_ctl: %m\n");
                        return 1;
                }
                n_open++;
                a->state = A_HELLO_SENT;
                h.pid = (uint32_t) a->pid;
                packed(proto_pack_hello(&pk, 1, &h), "HELLO");
                agent_send(a, 1);
        }

        t0 = mono_ns();
        for (;;) {
                int timeout, k;
                int64_t next;

                now = mono_ns();
                /* Agent slot % n is due at t0 + slot * period / n. */
                while ((next = t0 + (int64_t) (slot * (uint64_t) period_ns / n)) <= now) {
                        struct agent *a = &agents[slot % n];

                        if (a->state == A_ATTACHED) {
                                uint64_t late = (uint64_t) (now - next), bin = late / LATE_BIN_NS;

                                if (ready_ns) {
                                        cnt.late[bin < LATE_BINS ? bin : LATE_BINS - 1]++;
                                        if (late > cnt.late_max_ns)
                                                cnt.late_max_ns = late;
                                }
                                agent_tick(a);
                        }
                        slot++;
                }
                if (!ready_ns && n_attached + (n - n_open) == n) {
                        ready_ns = now;
                        if (opt.duration > 0)
                                end_ns = now + (int64_t) (opt.duration * 1e9);
                        printf("ready agents=%u connected=%d attach_ms=%.0f\n", n_attached, got,
                               (double) (now - t0) / 1e6);
                        fflush(stdout);
                }
                if (stop || (end_ns && now >= end_ns) || n_open == 0)
                        break;
                timeout = (int) ((next - now + 999999) / 1000000);
                if (end_ns && (end_ns - now) / 1000000 < timeout)
                        timeout = (int) ((end_ns - now + 999999) / 1000000);
                k = epoll_pwait(ep, evs, sizeof evs / sizeof evs[0], timeout, &empty);
                if (k < 0 && errno != EINTR) {
                        fprintf(stderr, "agents-bench: epoll_pwait: %m\n");
                        break;
                }
                for (int e = 0; e < k; e++) {
                        struct agent *a = &agents[evs[e].data.u32];

                        if (a->state == A_CLOSED)
                                continue;
                        if (evs[e].events & EPOLLOUT) {
                                int r = agent_flush(a);
                                if (r < 0) {
                                        errno = -r;
                                        agent_close(a, "send failed");
                                        continue;
                                }
                        }
                        if (evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                                agent_input(a, &m);
                }
        }
        now = mono_ns();
        getrusage(RUSAGE_SELF, &ru);
        printf("done agents=%u attached=%u closed_by_memd=%" PRIu64 " seconds=%.1f ticks=%" PRIu64
               " msgs_sent=%" PRIu64 " bytes_sent=%" PRIu64 " msgs_recv=%" PRIu64 " bytes_recv=%" PRIu64
               " requests=%" PRIu64 " eagain=%" PRIu64 " late_p50_ms=%.1f late_p99_ms=%.1f late_max_ms=%.1f"
               " cpu_user_s=%.2f cpu_sys_s=%.2f\n",
               n, n_attached, cnt.closed, ready_ns ? (double) (now - ready_ns) / 1e9 : 0.0, cnt.ticks,
               cnt.msgs_sent, cnt.bytes_sent, cnt.msgs_recv, cnt.bytes_recv, cnt.requests, cnt.eagain,
               late_quantile(0.5), late_quantile(0.99), (double) cnt.late_max_ns / 1e6,
               (double) ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
               (double) ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
        fflush(stdout);

        /* Close every connection, then let the children go and reap them. */
        for (unsigned i = 0; i < n; i++)
                if (agents[i].state != A_CLOSED)
                        agent_close(&agents[i], NULL);
        close(pipe_w);
        for (unsigned i = 0; i < n; i++)
                if (agents[i].pid > 0)
                        while (waitpid(agents[i].pid, NULL, 0) < 0 && errno == EINTR)
                                ;
        return ready_ns ? 0 : 1;
}

/* ---- --probe: STATUS_REQUEST round trips as a control client ------------------------- */

static int cmp_i64(const void *a, const void *b) {
        int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;

        return (x > y) - (x < y);
}

/* Nearest rank: the smallest value with at least q of the sample at or below it. */
static double quantile_ms(const int64_t *sorted, unsigned n, double q) {
        unsigned rank = (unsigned) ceil(q * n);

        return (double) sorted[rank ? rank - 1 : 0] / 1e6;
}

/* Reads until a whole message with id arrives; adds the bytes read to
 * *bytes, and sets *first (if not NULL) when the first of them came. */
static int probe_wait(int fd, struct proto_reader *r, struct proto_msg *m, uint64_t id, uint64_t *bytes,
                      int64_t *first) {
        static char buf[READ_BYTES];
        int k;

        for (;;) {
                while ((k = proto_reader_next(r, m)) > 0)
                        if (m->id == id)
                                return 0;
                if (k < 0)
                        return k;
                ssize_t n = recv(fd, buf, sizeof buf, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : -ECONNRESET;
                if (first && *bytes == 0)
                        *first = mono_ns();
                *bytes += (uint64_t) n;
                k = proto_reader_feed(r, buf, (size_t) n);
                if (k < 0)
                        return k;
        }
}

static int run_probe(const struct sockaddr_un *sa) {
        int64_t *total = calloc(opt.probe, sizeof *total), *rtt = calloc(opt.probe, sizeof *rtt),
                *ttfb = calloc(opt.probe, sizeof *ttfb);
        struct proto_hello h = { .version = PROTO_VERSION, .role = PROTO_ROLE_CONTROL };
        struct proto_request q = {};
        struct proto_status_reply reply;
        struct timeval tv = { .tv_sec = 10 };
        uint64_t reply_bytes = 0;
        uint32_t processes = 0;
        unsigned done = 0;

        if (!total || !rtt || !ttfb)
                return 1;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        h.pid = (uint32_t) getpid();
        strcpy(h.comm, "agents-bench");
        strcpy(h.software, "agents-bench 1");
        for (; done < opt.probe; done++) {
                struct proto_reader *r = NULL;
                struct proto_msg m;
                uint64_t hello_bytes = 0, bytes = 0;
                int64_t t0 = mono_ns(), t1, first = 0;
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), k = -EIO;

                proto_msg_init(&m);
                if (fd < 0 || connect(fd, (const struct sockaddr *) sa, sizeof *sa) < 0 || proto_reader_new(&r) < 0) {
                        fprintf(stderr, "agents-bench: probe: connect %s: %m\n", sa->sun_path);
                        goto fail;
                }
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
                sb.size = 0;
                packed(proto_pack_hello(&pk, 1, &h), "HELLO");
                if (send(fd, sb.data, sb.size, MSG_NOSIGNAL) != (ssize_t) sb.size)
                        goto fail;
                /* memd sends nothing but HELLO_OK before the request, so
                 * every byte read after it is the reply's. */
                k = probe_wait(fd, r, &m, 1, &hello_bytes, NULL);
                if (k < 0 || m.type != PROTO_MSG_HELLO_OK)
                        goto fail;
                t1 = mono_ns();
                sb.size = 0;
                packed(proto_pack_request(&pk, PROTO_MSG_STATUS_REQUEST, 2, &q), "STATUS_REQUEST");
                if (send(fd, sb.data, sb.size, MSG_NOSIGNAL) != (ssize_t) sb.size)
                        goto fail;
                k = probe_wait(fd, r, &m, 2, &bytes, &first);
                if (k < 0 || m.type != PROTO_MSG_STATUS_REPLY || (k = proto_decode_status_reply(&m, &reply)) < 0)
                        goto fail;
                ttfb[done] = first - t1;
                rtt[done] = mono_ns() - t1;
                total[done] = mono_ns() - t0;
                reply_bytes = bytes;
                processes = reply.processes.n;
                proto_msg_done(&m);
                proto_reader_free(r);
                close(fd);
                if (opt.gap_ms)
                        nanosleep(&(struct timespec) { .tv_sec = opt.gap_ms / 1000,
                                                       .tv_nsec = (long) (opt.gap_ms % 1000) * 1000000 }, NULL);
                continue;
fail:
                fprintf(stderr, "agents-bench: probe %u failed: %s\n", done + 1, k < 0 ? strerror(-k) : "?");
                proto_msg_done(&m);
                proto_reader_free(r);
                if (fd >= 0)
                        close(fd);
                return 1;
        }
        qsort(total, done, sizeof *total, cmp_i64);
        qsort(rtt, done, sizeof *rtt, cmp_i64);
        qsort(ttfb, done, sizeof *ttfb, cmp_i64);
        printf("probe calls=%u processes=%" PRIu32 " reply_bytes=%" PRIu64
               " total_p50_ms=%.2f total_p99_ms=%.2f rtt_p50_ms=%.2f rtt_p99_ms=%.2f rtt_max_ms=%.2f"
               " ttfb_p50_ms=%.2f ttfb_p99_ms=%.2f\n",
               done, processes, reply_bytes, quantile_ms(total, done, 0.5), quantile_ms(total, done, 0.99),
               quantile_ms(rtt, done, 0.5), quantile_ms(rtt, done, 0.99), (double) rtt[done - 1] / 1e6,
               quantile_ms(ttfb, done, 0.5), quantile_ms(ttfb, done, 0.99));
        free(total);
        free(rtt);
        free(ttfb);
        return 0;
}

static void help(void) {
        printf("agents-bench [-n AGENTS] [-d SECONDS] [-s SOCKET] [-b BUCKETS] [-k STACKS]\n"
               "             [--depth N] [--pauses N] [--period MS]\n"
               "agents-bench --probe COUNT [--gap MS] [-s SOCKET]\n\n"
               "AGENTS simulated libmemd agents (each on a connection made by a child process of\n"
               "its own) speak the wire protocol to memd: HELLO, a snapshot, then every period a\n"
               "MEMSTATS and a PROFILE_DELTA, spread evenly over the period.\n\n"
               "  -n, --agents N      agents (default 1000)\n"
               "  -d, --duration S    seconds after every agent is attached; 0: until SIGTERM (default 30)\n"
               "  -s, --socket PATH   memd's socket (default $MEMD_SOCKET or " DEFAULT_SOCKET ")\n"
               "  -b, --buckets N     buckets per PROFILE_DELTA (default 3)\n"
               "  -k, --stacks N      distinct stacks per agent, all in its snapshot (default 16)\n"
               "      --depth N       frames per stack (default 16, at most 64)\n"
               "      --pauses N      GC cycles in each agent's PauseNs/PauseEnd (default 8, at most 256)\n"
               "      --period MS     one MEMSTATS + PROFILE_DELTA per agent per period (default 1000)\n"
               "      --probe COUNT   instead: COUNT STATUS_REQUESTs as a control client, one connection each\n"
               "      --gap MS        pause between two probes (default 50)\n");
}

int main(int argc, char **argv) {
        enum { ARG_DEPTH = 0x100, ARG_PAUSES, ARG_PERIOD, ARG_PROBE, ARG_GAP };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "agents", required_argument, NULL, 'n' },
                { "duration", required_argument, NULL, 'd' },
                { "socket", required_argument, NULL, 's' },
                { "buckets", required_argument, NULL, 'b' },
                { "stacks", required_argument, NULL, 'k' },
                { "depth", required_argument, NULL, ARG_DEPTH },
                { "pauses", required_argument, NULL, ARG_PAUSES },
                { "period", required_argument, NULL, ARG_PERIOD },
                { "probe", required_argument, NULL, ARG_PROBE },
                { "gap", required_argument, NULL, ARG_GAP },
                {}
        };
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct sigaction act = { .sa_handler = on_signal };
        const char *env = getenv("MEMD_SOCKET");
        int c, r = 0;

        opt.socket = env && env[0] == '/' ? env : DEFAULT_SOCKET;
        while ((c = getopt_long(argc, argv, "hn:d:s:b:k:", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case 'n':
                        r = parse_uint("--agents", optarg, 1, MAX_AGENTS, &opt.agents);
                        break;
                case 'd': {
                        char *end;

                        errno = 0;
                        opt.duration = strtod(optarg, &end);
                        if (errno || end == optarg || *end || !(opt.duration >= 0)) {
                                fprintf(stderr, "agents-bench: --duration: expected seconds, not '%s'\n", optarg);
                                r = -EINVAL;
                        }
                        break;
                }
                case 's':
                        opt.socket = optarg;
                        break;
                case 'b':
                        r = parse_uint("--buckets", optarg, 0, PROTO_MAX_BUCKETS, &opt.buckets);
                        break;
                case 'k':
                        r = parse_uint("--stacks", optarg, 1, PROTO_MAX_BUCKETS, &opt.stacks);
                        break;
                case ARG_DEPTH:
                        r = parse_uint("--depth", optarg, 1, PROTO_MAX_STACK_DEPTH, &opt.depth);
                        break;
                case ARG_PAUSES:
                        r = parse_uint("--pauses", optarg, 0, PROTO_PAUSE_ENTRIES, &opt.pauses);
                        break;
                case ARG_PERIOD:
                        r = parse_uint("--period", optarg, 1, 3600000, &opt.period_ms);
                        break;
                case ARG_PROBE:
                        r = parse_uint("--probe", optarg, 1, 1000000, &opt.probe);
                        break;
                case ARG_GAP:
                        r = parse_uint("--gap", optarg, 0, 3600000, &opt.gap_ms);
                        break;
                default:
                        return 2;
                }
                if (r < 0)
                        return 2;
        }
        if (optind < argc) {
                fprintf(stderr, "agents-bench: unexpected argument '%s' (try --help)\n", argv[optind]);
                return 2;
        }
        if (strlen(opt.socket) >= sizeof sa.sun_path) {
                fprintf(stderr, "agents-bench: socket path too long: %s\n", opt.socket);
                return 2;
        }
        if (opt.buckets > opt.stacks) {
                fprintf(stderr, "agents-bench: --buckets %u: a delta names each of the agent's %u stacks at most once\n",
                        opt.buckets, opt.stacks);
                return 2;
        }
        strcpy(sa.sun_path, opt.socket);
        if (opt.probe)
                return run_probe(&sa);

        sigaction(SIGTERM, &act, NULL);
        sigaction(SIGINT, &act, NULL);
        signal(SIGPIPE, SIG_IGN);
        return run_agents(&sa);
}
