/* test-memd-dispatch.c - Check suite for memd's dispatcher: HELLO, the registry, profiles, events, subscriptions, forwarded requests, permissions, over real connections. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "unit.h"

/*
 * memd's own code (server.c, registry.c, dispatch.c, forward.c, store.c,
 * log.c) runs as in the daemon, minus main.c: each connection is one end of
 * a socketpair handed to conn_new() as accept() would, the test feeds it
 * through conn_input() and reads what memd sends from the other end.  The
 * server's loop is libev's default loop, run by the test when memd has
 * queued output or a timer to fire.
 */

/* ---- main.c's two functions, as fixtures ---------------------------------- */

static unsigned notify_calls, notify_last;

int64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void notify_status(struct server *s) {
        notify_calls++;
        notify_last = s->n_processes;
}

/* ---- the server and its peers ---------------------------------------------- */

static struct server srv;
static struct ev_loop *loop;

struct peer {
        bool used;
        int fd;                 /* the test's end */
        struct conn *c;         /* memd's end; NULL once memd freed it */
        pid_t pid;
        uid_t uid;
        struct proto_reader *r;
        struct proto_msg m;     /* the last message memd sent */
        int passed_fd;          /* the last descriptor memd passed (SCM_RIGHTS), or -1 */
};

#define MAX_PEERS 16
static struct peer peers[MAX_PEERS];

#define MAX_SLEEPERS 4
static pid_t sleepers[MAX_SLEEPERS];

static double mono(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

static void setup(void) {
        signal(SIGPIPE, SIG_IGN); /* as memd's main() does */
        log_setup(LOG_TARGET_STDERR);
        loop = ev_default_loop(EVFLAG_AUTO);
        ck_assert_ptr_nonnull(loop);
        srv = (struct server) { .loop = loop, .listen_fd = -1, .request_timeout_s = 10 };
        memset(peers, 0, sizeof(peers));
        memset(sleepers, 0, sizeof(sleepers));
        notify_calls = notify_last = 0;
}

static void teardown(void) {
        server_stop(&srv);
        ck_assert_ptr_null(srv.conns);
        ck_assert_ptr_null(srv.processes);
        ck_assert_ptr_null(srv.pending);
        ck_assert_uint_eq(srv.n_processes, 0);
        for (int i = 0; i < MAX_PEERS; i++) {
                struct peer *p = &peers[i];
                if (!p->used)
                        continue;
                if (p->fd >= 0)
                        close(p->fd);
                if (p->passed_fd >= 0)
                        close(p->passed_fd);
                proto_msg_done(&p->m);
                proto_reader_free(p->r);
                p->used = false;
        }
        for (int i = 0; i < MAX_SLEEPERS; i++)
                if (sleepers[i] > 0) {
                        kill(sleepers[i], SIGKILL);
                        waitpid(sleepers[i], NULL, 0); /* libev's SIGCHLD handler may have reaped it */
                }
        ev_loop_destroy(loop);
}

static bool conn_alive(const struct conn *c) {
        for (const struct conn *x = srv.conns; x; x = x->next)
                if (x == c)
                        return true;
        return false;
}

/* A process of our own to attach as a second agent: pidfd_open needs a live
 * pid.  It dies with us. */
static pid_t spawn_sleeper(void) {
        pid_t parent = getpid(), pid;
        int i;

        for (i = 0; i < MAX_SLEEPERS && sleepers[i]; i++)
                ;
        ck_assert_int_lt(i, MAX_SLEEPERS);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(0);
                for (;;)
                        pause();
        }
        sleepers[i] = pid;
        return pid;
}

/* A connection from pid/uid (as SO_PEERCRED would say), not yet HELLOed. */
static struct peer *peer_new(pid_t pid, uid_t uid) {
        struct peer *p = NULL;
        int sv[2];

        for (int i = 0; i < MAX_PEERS && !p; i++)
                if (!peers[i].used)
                        p = &peers[i];
        ck_assert_ptr_nonnull(p);
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        *p = (struct peer) { .used = true, .fd = sv[1], .pid = pid, .uid = uid, .passed_fd = -1 };
        ck_assert_int_eq(proto_reader_new(&p->r), 0);
        proto_msg_init(&p->m);
        p->c = conn_new(&srv, sv[0], pid, uid);
        ck_assert_ptr_nonnull(p->c);
        return p;
}

/* What memd does when conn_input() says to close. */
static void peer_drop(struct peer *p) {
        ck_assert(conn_alive(p->c));
        conn_free(p->c);
        p->c = NULL;
}

static void tick(struct ev_loop *l, ev_timer *w, int revents) {
        (void) l;
        (void) w;
        (void) revents;
}

/* One loop iteration, waiting at most max_s for something to happen. */
static void loop_once(double max_s) {
        ev_timer t;

        ev_now_update(loop);
        ev_timer_init(&t, tick, max_s, 0);
        ev_timer_start(loop, &t);
        ev_run(loop, EVRUN_ONCE);
        ev_timer_stop(loop, &t);
}

/* Runs the loop until cond holds; fails after 5 s. */
#define RUN_UNTIL(cond)                                                               \
        do {                                                                          \
                double deadline_ = mono() + 5;                                        \
                while (!(cond)) {                                                     \
                        ck_assert_msg(mono() < deadline_, "5 s waiting for: %s", #cond); \
                        loop_once(0.05);                                              \
                }                                                                     \
        } while (0)

/* The test hangs up its end; memd notices on its next loop iteration. */
static void peer_hangup(struct peer *p) {
        struct conn *c = p->c;

        close(p->fd);
        p->fd = -1;
        RUN_UNTIL(!conn_alive(c));
        p->c = NULL;
}

/* Packs with PACK (which uses `pk`) and feeds the bytes to memd as if read
 * from p's socket; evaluates to conn_input()'s result. */
#define SEND(p, PACK)                                                          \
        ({                                                                     \
                msgpack_sbuffer sb_;                                           \
                msgpack_packer pk_, *pk = &pk_;                                \
                int r_;                                                        \
                msgpack_sbuffer_init(&sb_);                                    \
                msgpack_packer_init(pk, &sb_, msgpack_sbuffer_write);          \
                ck_assert_int_eq((PACK), 0);                                   \
                ck_assert_ptr_nonnull((p)->c);                                 \
                r_ = conn_input((p)->c, sb_.data, sb_.size);                   \
                msgpack_sbuffer_destroy(&sb_);                                 \
                r_;                                                            \
        })

/* read(), keeping a descriptor memd passes (at most one at a time). */
static ssize_t peer_recv(struct peer *p, void *buf, size_t len) {
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } ctl;
        struct iovec iov = { buf, len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                             .msg_controllen = sizeof ctl.buf };
        ssize_t n = recvmsg(p->fd, &mh, MSG_CMSG_CLOEXEC);
        struct cmsghdr *h = n >= 0 ? CMSG_FIRSTHDR(&mh) : NULL;

        if (h) {
                ck_assert(!(mh.msg_flags & MSG_CTRUNC));
                ck_assert_int_eq(h->cmsg_type, SCM_RIGHTS);
                ck_assert_uint_eq(h->cmsg_len, CMSG_LEN(sizeof(int)));
                ck_assert_int_eq(p->passed_fd, -1);
                memcpy(&p->passed_fd, CMSG_DATA(h), sizeof(int));
        }
        return n;
}

/* The next message memd sent p, into p->m (running the loop so memd writes
 * what it queued and fires its timers).  Fails after 10 s or on EOF. */
static void peer_next(struct peer *p) {
        static char buf[65536];
        double deadline = mono() + 10; /* without a byte from memd */

        for (;;) {
                int k = proto_reader_next(p->r, &p->m);
                ssize_t n;

                ck_assert_int_ge(k, 0);
                if (k == 1)
                        return;
                n = peer_recv(p, buf, sizeof(buf));
                if (n > 0) {
                        ck_assert_int_eq(proto_reader_feed(p->r, buf, (size_t) n), 0);
                        deadline = mono() + 10;
                        continue;
                }
                ck_assert_msg(n != 0, "memd closed the connection of pid %d", (int) p->pid);
                ck_assert_int_eq(errno, EAGAIN);
                ck_assert_msg(mono() < deadline, "nothing from memd in 10 s");
                loop_once(0.05);
        }
}

static void peer_expect(struct peer *p, uint32_t type, uint64_t id) {
        peer_next(p);
        ck_assert_msg(p->m.type == type, "pid %d got %s, expected %s", (int) p->pid,
                      proto_msg_type_name(p->m.type), proto_msg_type_name(type));
        ck_assert_uint_eq(p->m.id, id);
}

/* An ERROR with code and id; returns its text (valid until the next message). */
static const char *peer_expect_error(struct peer *p, uint64_t id, int code) {
        static struct proto_error e;

        peer_expect(p, PROTO_MSG_ERROR, id);
        ck_assert_int_eq(proto_decode_error(&p->m, &e), 0);
        ck_assert_msg(e.code == (uint32_t) code, "ERROR %u (%s), expected %d", e.code, e.text, code);
        ck_assert_uint_gt(strlen(e.text), 0);
        return e.text;
}

/* n ERRORs with code, for the ids first .. first + n - 1, in any order. */
static void peer_expect_errors(struct peer *p, uint64_t first, unsigned n, int code) {
        uint64_t seen = 0;
        struct proto_error e;

        ck_assert_uint_le(n, 64);
        for (unsigned i = 0; i < n; i++) {
                peer_next(p);
                ck_assert_uint_eq(p->m.type, PROTO_MSG_ERROR);
                ck_assert_uint_ge(p->m.id, first);
                ck_assert_uint_lt(p->m.id, first + n);
                ck_assert(!(seen & (UINT64_C(1) << (p->m.id - first))));
                seen |= UINT64_C(1) << (p->m.id - first);
                ck_assert_int_eq(proto_decode_error(&p->m, &e), 0);
                ck_assert_uint_eq(e.code, (uint32_t) code);
        }
}

/* memd sent p nothing (and has nothing queued for it). */
static void peer_expect_quiet(struct peer *p) {
        char c;
        ssize_t n;

        ev_run(loop, EVRUN_NOWAIT);
        ck_assert_int_eq(proto_reader_next(p->r, &p->m), 0);
        n = read(p->fd, &c, 1);
        ck_assert_msg(n < 0 && errno == EAGAIN, "pid %d got something unexpected", (int) p->pid);
        if (p->c && conn_alive(p->c))
                ck_assert_uint_eq(p->c->out_len - p->c->out_off, 0);
}

/* memd closed p: nothing more, then EOF. */
static void peer_expect_eof(struct peer *p) {
        char buf[4096];
        ssize_t n;

        ck_assert_int_eq(proto_reader_next(p->r, &p->m), 0);
        n = read(p->fd, buf, sizeof(buf));
        ck_assert_msg(n == 0, "expected EOF, read %zd", n);
}

static void hello(struct peer *p, uint32_t role, uint64_t rate_bytes) {
        struct proto_hello h = { .version = PROTO_VERSION, .role = role, .pid = (uint32_t) p->pid,
                                 .software = "test", .rate_bytes = rate_bytes };
        struct proto_hello_ok ok;

        ck_assert_int_eq(SEND(p, proto_pack_hello(pk, 1, &h)), 0);
        peer_expect(p, PROTO_MSG_HELLO_OK, 1);
        ck_assert_int_eq(proto_decode_hello_ok(&p->m, &ok), 0);
        ck_assert_uint_eq(ok.version, PROTO_VERSION);
        ck_assert_uint_eq(ok.pid, (uint32_t) p->pid);
        ck_assert_uint_eq(ok.uid, (uint32_t) p->uid);
        ck_assert(strncmp(ok.software, "memd ", 5) == 0);
        ck_assert_uint_eq(p->c->role, role);
}

static struct peer *agent_new(pid_t pid, uid_t uid) {
        struct peer *a = peer_new(pid, uid);
        struct process *proc;

        hello(a, PROTO_ROLE_AGENT, 524288);
        proc = registry_find(&srv, pid);
        ck_assert_ptr_nonnull(proc);
        ck_assert_ptr_eq(proc->conn, a->c);
        ck_assert_ptr_eq(a->c->process, proc);
        ck_assert_uint_eq(proc->uid, uid);
        return a;
}

static int next_ctl_pid = 30000;

static struct peer *control_new(uid_t uid) {
        struct peer *c = peer_new(next_ctl_pid++, uid);

        hello(c, PROTO_ROLE_CONTROL, 0);
        ck_assert_ptr_null(c->c->process);
        return c;
}

static int send_request(struct peer *p, uint32_t type, uint64_t id, uint32_t pid, uint64_t value) {
        struct proto_request q = { .pid = pid, .value = value };

        return SEND(p, proto_pack_request(pk, type, id, &q));
}

/* ---- figures ---------------------------------------------------------------- */

static void fill_stats(struct memd_memstats *s, uint64_t seed) {
        uint64_t *f = &s->Alloc;

        memset(s, 0, sizeof(*s));
        for (int i = 0; i < 15; i++)
                f[i] = seed * 1000 + (uint64_t) i;
        for (int i = 0; i < 256; i++) {
                s->PauseNs[i] = seed + (uint64_t) i;
                s->PauseEnd[i] = UINT64_C(1700000000000000000) + (uint64_t) i;
        }
        s->NumGC = (uint32_t) seed;
        s->NumForcedGC = 2;
        s->GCCPUFraction = 0.25;
        s->RSS = seed << 20;
        s->RssAnon = seed << 19;
        s->LazyFree = 4096;
        s->Threads = 3;
}

/* The stack of seed (pcs[0] names it, depth 1..64) with figures from seed. */
#define PC_BASE UINT64_C(0x7f0000000000)
static void make_rec(struct profile_record *r, uint64_t seed) {
        memset(r, 0, sizeof(*r));
        r->depth = (uint32_t) (seed % PROFILE_MAX_DEPTH) + 1;
        for (uint32_t i = 0; i < r->depth; i++)
                r->pcs[i] = (uintptr_t) (PC_BASE + seed * 0x10000 + i * 8);
        r->alloc_count = seed + 1;
        r->alloc_bytes = (seed + 1) * 100;
        r->free_count = seed / 2;
        r->free_bytes = (seed / 2) * 100;
        r->alloc_objects_est = (double) (seed + 1) * 4;
        r->alloc_bytes_est = (double) (seed + 1) * 400;
        r->free_objects_est = (double) (seed / 2) * 4;
        r->free_bytes_est = (double) (seed / 2) * 400;
}

static uint64_t seed_of(const struct profile_record *r) {
        ck_assert_uint_ge(r->depth, 1);
        return (r->pcs[0] - PC_BASE) / 0x10000;
}

static int send_profile(struct peer *a, uint32_t type, uint64_t gen, uint32_t part, bool final,
                        const struct profile_record *recs, size_t n) {
        struct proto_profile h = { .generation = gen, .part = part, .final = final,
                                   .rate_bytes = 65536, .time_ns = 1700000000000000000 + (int64_t) gen };

        return SEND(a, proto_pack_profile(pk, type, 0, &h, recs, n));
}

/* memd's status of one process as ctl sees it: STATUS_REQUEST (req_pid, 0 =
 * all) answered by STATUS_REPLY; *ret is the entry of want (events point
 * into ctl->m until its next message).  Returns the number of entries, and
 * whether want was among them (ret and found may be NULL). */
static uint32_t get_status(struct peer *ctl, uint64_t id, uint32_t req_pid, pid_t want,
                           struct proto_process *ret, bool *found) {
        struct proto_status_reply sr;
        struct proto_process *x = malloc(sizeof(*x));

        ck_assert_ptr_nonnull(x);
        ck_assert_int_eq(send_request(ctl, PROTO_MSG_STATUS_REQUEST, id, req_pid, 0), 0);
        peer_expect(ctl, PROTO_MSG_STATUS_REPLY, id);
        ck_assert_int_eq(proto_decode_status_reply(&ctl->m, &sr), 0);
        if (found)
                *found = false;
        for (uint32_t i = 0; i < sr.processes.n; i++) {
                ck_assert_int_eq(proto_decode_process(&sr.processes.items[i], x), 0);
                if (found && x->pid == (uint32_t) want) {
                        ck_assert(!*found);
                        *found = true;
                        *ret = *x;
                }
        }
        free(x);
        return sr.processes.n;
}

static struct proto_process *status_of(struct peer *ctl, uint64_t id, uint32_t req_pid, pid_t want) {
        static struct proto_process p;
        bool found;

        get_status(ctl, id, req_pid, want, &p, &found);
        ck_assert_msg(found, "pid %d not in the status", (int) want);
        return &p;
}

/* ---- HELLO --------------------------------------------------------------------- */

START_TEST(test_hello_first) {
        struct peer *a = peer_new(getpid(), 0), *c = peer_new(4242, 1000);
        struct memd_memstats st;

        /* An agent's MEMSTATS before HELLO: ERROR EBADMSG, then closed. */
        fill_stats(&st, 1);
        ck_assert_int_lt(SEND(a, proto_pack_memstats(pk, 3, 0, 1, &st, true)), 0);
        peer_expect_error(a, 3, EBADMSG);
        ck_assert_ptr_null(registry_find(&srv, getpid()));
        peer_drop(a);
        peer_expect_eof(a);

        /* A control request before HELLO: the same. */
        ck_assert_int_eq(send_request(c, PROTO_MSG_STATUS_REQUEST, 4, 0, 0), -EBADMSG);
        peer_expect_error(c, 4, EBADMSG);
        peer_drop(c);
        peer_expect_eof(c);

        /* Even a well-formed reply type is not a HELLO. */
        c = peer_new(4243, 0);
        ck_assert_int_lt(SEND(c, proto_pack_ok(pk, 5, UINT64_MAX)), 0);
        peer_expect_error(c, 5, EBADMSG);
        peer_drop(c);
        ck_assert_uint_eq(notify_calls, 0);
}
END_TEST

START_TEST(test_hello_version_and_role) {
        struct proto_hello h = { .version = PROTO_VERSION + 1, .role = PROTO_ROLE_AGENT };
        struct peer *p = peer_new(getpid(), 0);

        ck_assert_int_eq(SEND(p, proto_pack_hello(pk, 7, &h)), -EPROTONOSUPPORT);
        peer_expect_error(p, 7, EPROTONOSUPPORT);
        ck_assert_ptr_null(registry_find(&srv, getpid()));
        ck_assert_uint_eq(p->c->role, 0);
        peer_drop(p);
        peer_expect_eof(p);

        h.version = 0;
        p = peer_new(getpid(), 0);
        ck_assert_int_lt(SEND(p, proto_pack_hello(pk, 8, &h)), 0);
        peer_expect_error(p, 8, EPROTONOSUPPORT);
        peer_drop(p);

        /* Unknown roles: 0, 3, and a large one. */
        static const uint32_t bad_roles[] = { 0, 3, UINT32_MAX };
        for (size_t i = 0; i < sizeof(bad_roles) / sizeof(bad_roles[0]); i++) {
                h = (struct proto_hello) { .version = PROTO_VERSION, .role = bad_roles[i] };
                p = peer_new(getpid(), 0);
                ck_assert_int_eq(SEND(p, proto_pack_hello(pk, 9 + i, &h)), -EINVAL);
                peer_expect_error(p, 9 + i, EINVAL);
                ck_assert_ptr_null(registry_find(&srv, getpid()));
                peer_drop(p);
                peer_expect_eof(p);
        }
        ck_assert_uint_eq(notify_calls, 0);
}
END_TEST

/* An agent's HELLO registers its SO_PEERCRED pid (never the pid it claims),
 * with its comm and rate; a second HELLO is refused, the connection stays. */
START_TEST(test_agent_attach) {
        struct proto_hello h = { .version = PROTO_VERSION, .role = PROTO_ROLE_AGENT, .pid = 1,
                                 .rate_bytes = 4096 };
        struct peer *a = peer_new(getpid(), 0), *ctl;
        struct proto_process *st;
        struct process *proc;
        char comm[64] = "";
        FILE *f;

        ck_assert_int_eq(SEND(a, proto_pack_hello(pk, 21, &h)), 0);
        peer_expect(a, PROTO_MSG_HELLO_OK, 21);
        ck_assert_ptr_null(registry_find(&srv, 1));
        proc = registry_find(&srv, getpid());
        ck_assert_ptr_nonnull(proc);
        ck_assert_ptr_eq(proc->conn, a->c);
        ck_assert_uint_eq(srv.n_processes, 1);
        ck_assert_uint_eq(notify_calls, 1);
        ck_assert_uint_eq(notify_last, 1);
        ck_assert_uint_eq(proc->rate_bytes, 4096);
        ck_assert_int_ge(proc->pidfd, 0);
        f = fopen("/proc/self/comm", "r");
        ck_assert_ptr_nonnull(f);
        ck_assert_ptr_nonnull(fgets(comm, sizeof(comm), f));
        fclose(f);
        comm[strcspn(comm, "\n")] = 0;
        ck_assert_str_eq(proc->comm, comm);

        /* HELLO again: not a type an agent may send now. */
        ck_assert_int_eq(SEND(a, proto_pack_hello(pk, 22, &h)), 0);
        peer_expect_error(a, 22, EPERM);
        ck_assert(conn_alive(a->c));
        ck_assert_uint_eq(srv.n_processes, 1);

        /* What a control client sees. */
        ctl = control_new(0);
        st = status_of(ctl, 23, 0, getpid());
        ck_assert_uint_eq(st->uid, 0);
        ck_assert_str_eq(st->comm, comm);
        ck_assert_uint_eq(st->rate_bytes, 4096);
        ck_assert(!st->has_stats);
        ck_assert_int_eq(st->stats_time_ns, 0);
        ck_assert_int_gt(st->attached_ns, 0);
        ck_assert_uint_eq(st->profile_buckets, 0);

        /* The agent says BYE: closed, and detached with it. */
        ck_assert_int_lt(SEND(a, proto_pack_bye(pk, 0, "exiting")), 0);
        peer_drop(a);
        ck_assert_ptr_null(registry_find(&srv, getpid()));
        ck_assert_uint_eq(srv.n_processes, 0);
        ck_assert_uint_eq(notify_last, 0);
        peer_expect_eof(a);
}
END_TEST

/* ---- what agents report ------------------------------------------------------ */

START_TEST(test_memstats) {
        struct peer *a = agent_new(getpid(), 0), *root = control_new(0), *user = control_new(1000);
        struct memd_memstats st;
        struct proto_process *p, tmp;
        bool found;

        fill_stats(&st, 7);
        ck_assert_int_eq(SEND(a, proto_pack_memstats(pk, 0, 0, 1700000000123456789, &st, true)), 0);
        peer_expect_quiet(a); /* nothing is answered */
        p = status_of(root, 30, 0, getpid());
        ck_assert(p->has_stats);
        ck_assert_int_eq(p->stats_time_ns, 1700000000123456789);
        ck_assert_uint_eq(p->stats.HeapAlloc, st.HeapAlloc);
        ck_assert_uint_eq(p->stats.PauseTotalNs, st.PauseTotalNs);
        ck_assert(!p->has_pauses); /* the list leaves the pause arrays out */
        ck_assert_uint_eq(p->stats.NumGC, 7);
        ck_assert(p->stats.GCCPUFraction == 0.25);
        ck_assert_uint_eq(p->stats.RSS, st.RSS);
        ck_assert_uint_eq(p->stats.Threads, 3);
        ck_assert_int_eq(p->last_gc_ns, (int64_t) st.LastGC);

        /* The next MEMSTATS replaces them. */
        fill_stats(&st, 8);
        ck_assert_int_eq(SEND(a, proto_pack_memstats(pk, 0, 0, 1700000001000000000, &st, true)), 0);
        p = status_of(root, 31, (uint32_t) getpid(), getpid());
        ck_assert_int_eq(p->stats_time_ns, 1700000001000000000);
        ck_assert_uint_eq(p->stats.NumGC, 8);
        ck_assert_uint_eq(p->stats.HeapAlloc, st.HeapAlloc);
        /* status PID has them, and reads the RSS breakdown from /proc. */
        ck_assert(p->has_pauses);
        ck_assert(memcmp(p->stats.PauseNs, st.PauseNs, sizeof(st.PauseNs)) == 0);
        ck_assert(memcmp(p->stats.PauseEnd, st.PauseEnd, sizeof(st.PauseEnd)) == 0);
        ck_assert_uint_gt(p->rss_anon_bytes + p->rss_file_bytes, 0);

        /* A MEMSTATS without pause arrays keeps the last ones. */
        {
                struct memd_memstats st2 = st;
                st2.HeapAlloc += 4096;
                memset(st2.PauseNs, 0, sizeof(st2.PauseNs));
                ck_assert_int_eq(SEND(a, proto_pack_memstats(pk, 0, 0, 1700000002000000000, &st2, false)), 0);
                p = status_of(root, 35, (uint32_t) getpid(), getpid());
                ck_assert_uint_eq(p->stats.HeapAlloc, st.HeapAlloc + 4096);
                ck_assert(memcmp(p->stats.PauseNs, st.PauseNs, sizeof(st.PauseNs)) == 0);
                ck_assert(memcmp(p->stats.PauseEnd, st.PauseEnd, sizeof(st.PauseEnd)) == 0);
        }

        /* Another user sees nothing of a root process. */
        ck_assert_uint_eq(get_status(user, 32, 0, getpid(), &tmp, &found), 0);
        ck_assert(!found);
        ck_assert_int_eq(send_request(user, PROTO_MSG_STATUS_REQUEST, 33, (uint32_t) getpid(), 0), 0);
        peer_expect_error(user, 33, EPERM);
        ck_assert_int_eq(send_request(root, PROTO_MSG_STATUS_REQUEST, 34, 0x7ffffff0, 0), 0);
        peer_expect_error(root, 34, ESRCH);
        ck_assert(conn_alive(user->c));
        ck_assert(conn_alive(root->c));
}
END_TEST

/* Snapshot parts (0 replaces, later ones add, another generation's are
 * dropped) and deltas (add), as the status's profile_* totals show them. */
START_TEST(test_profile_snapshot_delta) {
        struct peer *a = agent_new(getpid(), 0), *ctl = control_new(0);
        struct profile_record *r = calloc(8, sizeof(*r));
        struct proto_process *p;

        ck_assert_ptr_nonnull(r);
        for (int i = 0; i < 8; i++)
                make_rec(&r[i], (uint64_t) i);
        /* seed s: alloc_objects_est 4(s+1), alloc_bytes_est 400(s+1),
         * free_objects_est 4(s/2), free_bytes_est 400(s/2). */

        /* Generation 1: part 0 {0, 1}, part 1 {2, 0}, final. */
        ck_assert_int_eq(send_profile(a, PROTO_MSG_PROFILE_SNAPSHOT, 1, 0, false, &r[0], 2), 0);
        p = status_of(ctl, 40, 0, getpid());
        ck_assert_uint_eq(p->profile_buckets, 2);
        ck_assert_uint_eq(p->profile_alloc_bytes, 400 + 800);
        ck_assert_uint_eq(p->rate_bytes, 65536);
        struct profile_record part1[2] = { r[2], r[0] };
        ck_assert_int_eq(send_profile(a, PROTO_MSG_PROFILE_SNAPSHOT, 1, 1, true, part1, 2), 0);
        p = status_of(ctl, 41, 0, getpid());
        ck_assert_uint_eq(p->profile_buckets, 3);
        ck_assert_uint_eq(p->profile_alloc_bytes, 400 + 800 + 1200 + 400);
        ck_assert_uint_eq(p->profile_alloc_objects, 4 + 8 + 12 + 4);
        ck_assert_uint_eq(p->profile_inuse_bytes, 2800 - 400);  /* seed 2 freed 400 */
        ck_assert_uint_eq(p->profile_inuse_objects, 28 - 4);
        ck_assert(registry_find(&srv, getpid())->profile.complete);

        /* A part after the final one is dropped. */
        ck_assert_int_eq(send_profile(a, PROTO_MSG_PROFILE_SNAPSHOT, 1, 2, true, &r[5], 1), 0);
        ck_assert_uint_eq(status_of(ctl, 42, 0, getpid())->profile_buckets, 3);

        /* A delta adds to existing stacks and makes new ones. */
        struct profile_record delta[2] = { r[1], r[3] };
        ck_assert_int_eq(send_profile(a, PROTO_MSG_PROFILE_DELTA, 0, 0, false, delta, 2), 0);
        p = status_of(ctl, 43, 0, getpid());
        ck_assert_uint_eq(p->profile_buckets, 4);
        ck_assert_uint_eq(p->profile_alloc_bytes, 2800 + 800 + 1600);
        ck_assert_uint_eq(p->profile_inuse_bytes, 5200 - 400 - 400); /* seeds 2 and 3 freed 400 each */

        /* Generation 2, part 0 replaces everything; a part 1 of generation 1
         * arriving now is dropped; generation 2's part 1 adds. */
        ck_assert_int_eq(send_profile(a, PROTO_MSG_PROFILE_SNAPSHOT, 2, 0, false, &r[4], 1), 0);
        p = status_of(ctl, 44, 0, getpid());
        ck_assert_uint_eq(p->profile_buckets, 1);
        ck_assert_uint_eq(p->profile_alloc_bytes, 2000);
        ck_assert_uint_eq(p->profile_inuse_bytes, 2000 - 800);
        ck_assert(!registry_find(&srv, getpid())->profile.complete);
        ck_assert_int_eq(send_profile(a, PROTO_MSG_PROFILE_SNAPSHOT, 1, 1, false, &r[5], 2), 0);
        ck_assert_int_eq(send_profile(a, PROTO_MSG_PROFILE_SNAPSHOT, 3, 1, true, &r[5], 2), 0);
        p = status_of(ctl, 45, 0, getpid());
        ck_assert_uint_eq(p->profile_buckets, 1);
        ck_assert_uint_eq(p->profile_alloc_bytes, 2000);
        ck_assert_int_eq(send_profile(a, PROTO_MSG_PROFILE_SNAPSHOT, 2, 1, true, &r[5], 2), 0);
        p = status_of(ctl, 46, 0, getpid());
        ck_assert_uint_eq(p->profile_buckets, 3);
        ck_assert_uint_eq(p->profile_alloc_bytes, 2000 + 2400 + 2800);
        ck_assert_uint_eq(p->profile_inuse_bytes, 7200 - 800 - 800 - 1200);
        ck_assert(registry_find(&srv, getpid())->profile.complete);

        /* An empty part 0 empties the table. */
        ck_assert_int_eq(send_profile(a, PROTO_MSG_PROFILE_SNAPSHOT, 4, 0, true, r, 0), 0);
        p = status_of(ctl, 47, 0, getpid());
        ck_assert_uint_eq(p->profile_buckets, 0);
        ck_assert_uint_eq(p->profile_alloc_bytes, 0);
        peer_expect_quiet(a);
        free(r);
}
END_TEST

static void make_event(struct proto_event *e, uint32_t kind, uint64_t seq) {
        memset(e, 0, sizeof(*e));
        e->kind = kind;
        e->time_ns = 1700000000000000000 + (int64_t) seq * 1000;
        e->seq = seq;
        e->forced = seq % 3 == 0;
        e->duration_ns = 100 + seq;
        if (kind == PROTO_EVENT_GC) {
                e->heap_before_bytes = seq << 20;
                e->heap_reclaimed_bytes = seq << 19;
                e->heap_live_bytes = seq << 18;
                e->goal_bytes = seq << 21;
                snprintf(e->text, sizeof(e->text), "gc %llu @1.000s 0%%: 0.1 ms clock, %llu->%llu->%llu MB, %llu MB goal",
                         (unsigned long long) seq, (unsigned long long) seq, (unsigned long long) seq / 2,
                         (unsigned long long) seq / 4, (unsigned long long) seq * 2);
        } else {
                e->released_bytes = seq << 12;
                e->heap_inuse_bytes = seq << 20;
                e->heap_idle_bytes = seq << 16;
                e->heap_sys_bytes = seq << 22;
                snprintf(e->text, sizeof(e->text), "scvg%llu: %llu MB released\nscvg%llu: inuse: 1, idle: 2, sys: 3, released: 4, consumed: 5 (MB)",
                         (unsigned long long) seq, (unsigned long long) seq, (unsigned long long) seq);
        }
}

static void assert_event_eq(const struct proto_event *got, const struct proto_event *want) {
        ck_assert_uint_eq(got->kind, want->kind);
        ck_assert_int_eq(got->time_ns, want->time_ns);
        ck_assert_str_eq(got->text, want->text);
        ck_assert_uint_eq(got->forced, want->forced);
        ck_assert_uint_eq(got->seq, want->seq);
        ck_assert_uint_eq(got->duration_ns, want->duration_ns);
        ck_assert_uint_eq(got->heap_before_bytes, want->heap_before_bytes);
        ck_assert_uint_eq(got->heap_reclaimed_bytes, want->heap_reclaimed_bytes);
        ck_assert_uint_eq(got->heap_live_bytes, want->heap_live_bytes);
        ck_assert_uint_eq(got->goal_bytes, want->goal_bytes);
        ck_assert_uint_eq(got->released_bytes, want->released_bytes);
        ck_assert_uint_eq(got->heap_inuse_bytes, want->heap_inuse_bytes);
        ck_assert_uint_eq(got->heap_idle_bytes, want->heap_idle_bytes);
        ck_assert_uint_eq(got->heap_sys_bytes, want->heap_sys_bytes);
}

/* Events are kept (the last 32, oldest first, shown by status PID). */
START_TEST(test_event_history) {
        struct peer *a = agent_new(getpid(), 0), *ctl = control_new(0);
        struct proto_event *e = malloc(sizeof(*e)), *got = malloc(sizeof(*got));
        struct proto_process *p;

        ck_assert_ptr_nonnull(e);
        ck_assert_ptr_nonnull(got);
        /* None yet. */
        p = status_of(ctl, 50, (uint32_t) getpid(), getpid());
        ck_assert_uint_eq(p->event_view.n, 0);
        ck_assert_int_eq(p->last_gc_ns, 0);
        ck_assert_int_eq(p->last_scvg_ns, 0);

        /* Five: all kept, in order. */
        for (uint64_t i = 1; i <= 5; i++) {
                make_event(e, i % 2 ? PROTO_EVENT_GC : PROTO_EVENT_SCVG, i);
                ck_assert_int_eq(SEND(a, proto_pack_event(pk, 0, e)), 0);
        }
        p = status_of(ctl, 51, (uint32_t) getpid(), getpid());
        ck_assert_uint_eq(p->event_view.n, 5);
        for (uint32_t i = 0; i < 5; i++) {
                ck_assert_int_eq(proto_decode_event_object(&p->event_view.items[i], got), 0);
                make_event(e, (i + 1) % 2 ? PROTO_EVENT_GC : PROTO_EVENT_SCVG, i + 1);
                assert_event_eq(got, e);
                ck_assert_uint_eq(got->pid, (uint32_t) getpid());
        }
        ck_assert_int_eq(p->last_gc_ns, 1700000000000000000 + 5 * 1000);
        ck_assert_int_eq(p->last_scvg_ns, 1700000000000000000 + 4 * 1000);

        /* 40 in all: the last 32 (9..40), oldest first. */
        for (uint64_t i = 6; i <= 40; i++) {
                make_event(e, i % 2 ? PROTO_EVENT_GC : PROTO_EVENT_SCVG, i);
                ck_assert_int_eq(SEND(a, proto_pack_event(pk, 0, e)), 0);
        }
        p = status_of(ctl, 52, (uint32_t) getpid(), getpid());
        ck_assert_uint_eq(p->event_view.n, EVENT_HISTORY);
        for (uint32_t i = 0; i < EVENT_HISTORY; i++) {
                uint64_t seq = 40 - EVENT_HISTORY + 1 + i;
                ck_assert_int_eq(proto_decode_event_object(&p->event_view.items[i], got), 0);
                make_event(e, seq % 2 ? PROTO_EVENT_GC : PROTO_EVENT_SCVG, seq);
                assert_event_eq(got, e);
        }
        ck_assert_int_eq(p->last_gc_ns, 1700000000000000000 + 39 * 1000);
        ck_assert_int_eq(p->last_scvg_ns, 1700000000000000000 + 40 * 1000);

        /* The list of all processes carries no events. */
        p = status_of(ctl, 53, 0, getpid());
        ck_assert_uint_eq(p->event_view.n, 0);
        ck_assert_int_eq(p->last_gc_ns, 1700000000000000000 + 39 * 1000);
        peer_expect_quiet(a);
        free(e);
        free(got);
}
END_TEST

/* SUBSCRIBE streams EVENTs with the SUBSCRIBE's id and the pid, to those
 * who may see the process and asked for it (or for all). */
START_TEST(test_subscribe) {
        pid_t other = spawn_sleeper();
        struct peer *a0 = agent_new(getpid(), 0), *a1 = agent_new(other, 1000);
        struct peer *root_all = control_new(0), *root_other = control_new(0);
        struct peer *user_all = control_new(1000), *user_other = control_new(1000);
        struct peer *quiet = control_new(0), *bad = control_new(1000);
        struct proto_event *e = malloc(sizeof(*e)), *got = malloc(sizeof(*got));

        ck_assert_ptr_nonnull(e);
        ck_assert_ptr_nonnull(got);
        ck_assert_int_eq(send_request(root_all, PROTO_MSG_SUBSCRIBE, 70, 0, 0), 0);
        peer_expect(root_all, PROTO_MSG_OK, 70);
        ck_assert_int_eq(send_request(root_other, PROTO_MSG_SUBSCRIBE, 71, (uint32_t) other, 0), 0);
        peer_expect(root_other, PROTO_MSG_OK, 71);
        ck_assert_int_eq(send_request(user_all, PROTO_MSG_SUBSCRIBE, 72, 0, 0), 0);
        peer_expect(user_all, PROTO_MSG_OK, 72);
        ck_assert_int_eq(send_request(user_other, PROTO_MSG_SUBSCRIBE, 73, (uint32_t) other, 0), 0);
        peer_expect(user_other, PROTO_MSG_OK, 73);
        /* A user may not subscribe to root's process, nor to one not attached. */
        ck_assert_int_eq(send_request(bad, PROTO_MSG_SUBSCRIBE, 74, (uint32_t) getpid(), 0), 0);
        peer_expect_error(bad, 74, EPERM);
        ck_assert_int_eq(send_request(bad, PROTO_MSG_SUBSCRIBE, 75, 0x7ffffff0, 0), 0);
        peer_expect_error(bad, 75, ESRCH);
        ck_assert(!bad->c->sub.on);

        /* Root's process: only root's subscription to all. */
        make_event(e, PROTO_EVENT_GC, 1);
        ck_assert_int_eq(SEND(a0, proto_pack_event(pk, 0, e)), 0);
        peer_expect(root_all, PROTO_MSG_EVENT, 70);
        ck_assert_int_eq(proto_decode_event(&root_all->m, got), 0);
        ck_assert_uint_eq(got->pid, (uint32_t) getpid());
        assert_event_eq(got, e);
        peer_expect_quiet(root_other);
        peer_expect_quiet(user_all);
        peer_expect_quiet(user_other);
        peer_expect_quiet(quiet);
        peer_expect_quiet(bad);
        peer_expect_quiet(a0);
        peer_expect_quiet(a1);

        /* The user's process: every subscription that may see it. */
        make_event(e, PROTO_EVENT_SCVG, 2);
        ck_assert_int_eq(SEND(a1, proto_pack_event(pk, 0, e)), 0);
        peer_expect(root_all, PROTO_MSG_EVENT, 70);
        ck_assert_int_eq(proto_decode_event(&root_all->m, got), 0);
        ck_assert_uint_eq(got->pid, (uint32_t) other);
        assert_event_eq(got, e);
        peer_expect(root_other, PROTO_MSG_EVENT, 71);
        ck_assert_int_eq(proto_decode_event(&root_other->m, got), 0);
        ck_assert_uint_eq(got->pid, (uint32_t) other);
        peer_expect(user_all, PROTO_MSG_EVENT, 72);
        ck_assert_int_eq(proto_decode_event(&user_all->m, got), 0);
        ck_assert_uint_eq(got->pid, (uint32_t) other);
        assert_event_eq(got, e);
        peer_expect(user_other, PROTO_MSG_EVENT, 73);
        peer_expect_quiet(quiet);
        peer_expect_quiet(bad);

        /* A subscriber that went away is simply not written to. */
        peer_hangup(root_all);
        make_event(e, PROTO_EVENT_GC, 3);
        ck_assert_int_eq(SEND(a1, proto_pack_event(pk, 0, e)), 0);
        peer_expect(user_all, PROTO_MSG_EVENT, 72);
        ck_assert_int_eq(proto_decode_event(&user_all->m, got), 0);
        ck_assert_uint_eq(got->seq, 3);
        peer_expect(root_other, PROTO_MSG_EVENT, 71);
        peer_expect(user_other, PROTO_MSG_EVENT, 73);
        free(e);
        free(got);
}
END_TEST

/* ---- requests relayed to agents ------------------------------------------------ */

/* The request as the agent receives it: memd's own id, no pid. */
static uint64_t agent_expect_request(struct peer *a, uint32_t type, uint64_t ctl_id, uint64_t value) {
        struct proto_request q;

        peer_next(a);
        ck_assert_uint_eq(a->m.type, type);
        ck_assert_uint_ne(a->m.id, ctl_id);
        ck_assert_uint_ne(a->m.id, 0);
        ck_assert_int_eq(proto_decode_request(&a->m, &q), 0);
        ck_assert_uint_eq(q.pid, 0);
        ck_assert_uint_eq(q.value, value);
        return a->m.id;
}

START_TEST(test_gc_relay) {
        struct peer *a = agent_new(getpid(), 0), *c1 = control_new(0), *c2 = control_new(0);
        struct proto_gc_result g = { .freed_bytes = 12345, .heap_before_bytes = 1 << 20,
                                     .heap_after_bytes = 1 << 19, .duration_ns = 777,
                                     .text = "gc 3 @1.0s 0%: forced" }, got;
        uint64_t id1, id2;

        /* Two clients, the same request id: each gets its own answer. */
        ck_assert_int_eq(send_request(c1, PROTO_MSG_GC_REQUEST, 500, (uint32_t) getpid(), 0), 0);
        id1 = agent_expect_request(a, PROTO_MSG_GC_REQUEST, 500, 0);
        ck_assert_int_eq(send_request(c2, PROTO_MSG_GC_REQUEST, 500, (uint32_t) getpid(), 0), 0);
        id2 = agent_expect_request(a, PROTO_MSG_GC_REQUEST, 500, 0);
        ck_assert_uint_ne(id1, id2);
        peer_expect_quiet(c1);
        peer_expect_quiet(c2);

        /* Answered in the other order. */
        ck_assert_int_eq(SEND(a, proto_pack_gc_result(pk, id2, &g)), 0);
        peer_expect(c2, PROTO_MSG_GC_RESULT, 500);
        ck_assert_int_eq(proto_decode_gc_result(&c2->m, &got), 0);
        ck_assert_uint_eq(got.pid, (uint32_t) getpid());
        ck_assert_uint_eq(got.freed_bytes, 12345);
        ck_assert_uint_eq(got.heap_before_bytes, 1 << 20);
        ck_assert_uint_eq(got.heap_after_bytes, 1 << 19);
        ck_assert_uint_eq(got.duration_ns, 777);
        ck_assert_str_eq(got.text, g.text);
        peer_expect_quiet(c1);

        g.freed_bytes = 99;
        ck_assert_int_eq(SEND(a, proto_pack_gc_result(pk, id1, &g)), 0);
        peer_expect(c1, PROTO_MSG_GC_RESULT, 500);
        ck_assert_int_eq(proto_decode_gc_result(&c1->m, &got), 0);
        ck_assert_uint_eq(got.pid, (uint32_t) getpid());
        ck_assert_uint_eq(got.freed_bytes, 99);
        ck_assert_ptr_null(srv.pending);

        /* The same answer again, or one nobody asked for: dropped, the agent stays. */
        ck_assert_int_eq(SEND(a, proto_pack_gc_result(pk, id1, &g)), 0);
        ck_assert_int_eq(SEND(a, proto_pack_gc_result(pk, 424242, &g)), 0);
        peer_expect_quiet(c1);
        peer_expect_quiet(c2);
        ck_assert(conn_alive(a->c));
        peer_expect_quiet(a);
}
END_TEST

/* OK (SET_RATE, SET_MEMORY_LIMIT), ERROR, SCAVENGE_RESULT are relayed the same way. */
START_TEST(test_ok_error_relay) {
        struct peer *a = agent_new(getpid(), 0), *c = control_new(0);
        struct proto_scavenge_result sr = { .released_bytes = 1 << 20, .rss_before_bytes = 10 << 20,
                                            .rss_after_bytes = 9 << 20, .text = "scvg-1: 1 MB released" }, sgot;
        struct proto_ok ok;
        uint64_t id;

        ck_assert_int_eq(send_request(c, PROTO_MSG_SET_RATE, 600, (uint32_t) getpid(), 4096), 0);
        id = agent_expect_request(a, PROTO_MSG_SET_RATE, 600, 4096);
        ck_assert_int_eq(SEND(a, proto_pack_ok(pk, id, 524288)), 0);
        peer_expect(c, PROTO_MSG_OK, 600);
        ck_assert_int_eq(proto_decode_ok(&c->m, &ok), 0);
        ck_assert_uint_eq(ok.previous, 524288);

        ck_assert_int_eq(send_request(c, PROTO_MSG_SET_MEMORY_LIMIT, 601, (uint32_t) getpid(), 1 << 30), 0);
        id = agent_expect_request(a, PROTO_MSG_SET_MEMORY_LIMIT, 601, 1 << 30);
        ck_assert_int_eq(SEND(a, proto_pack_ok(pk, id, UINT64_MAX)), 0);
        peer_expect(c, PROTO_MSG_OK, 601);
        ck_assert_int_eq(proto_decode_ok(&c->m, &ok), 0);
        ck_assert_uint_eq(ok.previous, UINT64_MAX); /* no previous: none relayed */

        ck_assert_int_eq(send_request(c, PROTO_MSG_GC_REQUEST, 602, (uint32_t) getpid(), 0), 0);
        id = agent_expect_request(a, PROTO_MSG_GC_REQUEST, 602, 0);
        ck_assert_int_eq(SEND(a, proto_pack_error(pk, id, EOPNOTSUPP, "no reclaimers here")), 0);
        ck_assert_str_eq(peer_expect_error(c, 602, EOPNOTSUPP), "no reclaimers here");

        ck_assert_int_eq(send_request(c, PROTO_MSG_SCAVENGE_REQUEST, 603, (uint32_t) getpid(), 0), 0);
        id = agent_expect_request(a, PROTO_MSG_SCAVENGE_REQUEST, 603, 0);
        ck_assert_int_eq(SEND(a, proto_pack_scavenge_result(pk, id, &sr)), 0);
        peer_expect(c, PROTO_MSG_SCAVENGE_RESULT, 603);
        ck_assert_int_eq(proto_decode_scavenge_result(&c->m, &sgot), 0);
        ck_assert_uint_eq(sgot.pid, (uint32_t) getpid());
        ck_assert_uint_eq(sgot.released_bytes, 1 << 20);
        ck_assert_uint_eq(sgot.rss_before_bytes, 10 << 20);
        ck_assert_uint_eq(sgot.rss_after_bytes, 9 << 20);
        ck_assert_str_eq(sgot.text, sr.text);
        ck_assert_ptr_null(srv.pending);
        peer_expect_quiet(c);
}
END_TEST

/* An answered request's timer is gone with it: no ETIMEDOUT afterwards. */
START_TEST(test_answered_no_timeout) {
        struct peer *a = agent_new(getpid(), 0), *c = control_new(0);
        struct proto_gc_result g = { .freed_bytes = 8 };
        double t0;
        uint64_t id;

        srv.request_timeout_s = 0.1;
        ev_now_update(loop);
        ck_assert_int_eq(send_request(c, PROTO_MSG_GC_REQUEST, 650, (uint32_t) getpid(), 0), 0);
        id = agent_expect_request(a, PROTO_MSG_GC_REQUEST, 650, 0);
        ck_assert_int_eq(SEND(a, proto_pack_gc_result(pk, id, &g)), 0);
        peer_expect(c, PROTO_MSG_GC_RESULT, 650);
        t0 = mono();
        while (mono() - t0 < 0.4)
                loop_once(0.05);
        peer_expect_quiet(c);
        peer_expect_quiet(a);
}
END_TEST

/* An agent answering with an id memd gave another agent is not heard: only
 * the process asked answers for itself. */
START_TEST(test_reply_from_other_agent) {
        pid_t other = spawn_sleeper();
        struct peer *a0 = agent_new(getpid(), 0), *a1 = agent_new(other, 0), *c = control_new(0);
        struct proto_gc_result g = { .freed_bytes = 1 }, got;
        uint64_t id;

        ck_assert_int_eq(send_request(c, PROTO_MSG_GC_REQUEST, 660, (uint32_t) getpid(), 0), 0);
        id = agent_expect_request(a0, PROTO_MSG_GC_REQUEST, 660, 0);
        peer_expect_quiet(a1);
        g.freed_bytes = 666;
        ck_assert_int_eq(SEND(a1, proto_pack_gc_result(pk, id, &g)), 0);
        ck_assert_int_eq(SEND(a1, proto_pack_error(pk, id, EIO, "not mine")), 0);
        peer_expect_quiet(c);
        ck_assert_ptr_nonnull(srv.pending);
        g.freed_bytes = 7;
        ck_assert_int_eq(SEND(a0, proto_pack_gc_result(pk, id, &g)), 0);
        peer_expect(c, PROTO_MSG_GC_RESULT, 660);
        ck_assert_int_eq(proto_decode_gc_result(&c->m, &got), 0);
        ck_assert_uint_eq(got.freed_bytes, 7);
        ck_assert_uint_eq(got.pid, (uint32_t) getpid());
        ck_assert_ptr_null(srv.pending);
}
END_TEST

START_TEST(test_request_timeout) {
        struct peer *a = agent_new(getpid(), 0), *c = control_new(0);
        struct proto_gc_result g = { .freed_bytes = 1 };
        const char *text;
        double t0;
        uint64_t id;

        srv.request_timeout_s = 0.2;
        ev_now_update(loop); /* memd starts the timer inside a loop iteration */
        t0 = mono();
        ck_assert_int_eq(send_request(c, PROTO_MSG_GC_REQUEST, 700, (uint32_t) getpid(), 0), 0);
        id = agent_expect_request(a, PROTO_MSG_GC_REQUEST, 700, 0);
        /* Not answered yet (checked without running the loop, which could
         * fire the timer on a slow machine). */
        ck_assert_ptr_nonnull(srv.pending);
        ck_assert_int_eq(proto_reader_next(c->r, &c->m), 0);
        ck_assert_int_lt(recv(c->fd, &(char) { 0 }, 1, MSG_PEEK), 0);
        text = peer_expect_error(c, 700, ETIMEDOUT);
        ck_assert_msg(mono() - t0 >= 0.19, "timed out after %.3f s", mono() - t0);
        ck_assert_msg(strstr(text, "0.2 s"), "%s", text);
        ck_assert_ptr_null(srv.pending);

        /* The late answer is dropped; the agent stays. */
        ck_assert_int_eq(SEND(a, proto_pack_gc_result(pk, id, &g)), 0);
        peer_expect_quiet(c);
        ck_assert(conn_alive(a->c));
        ck_assert(conn_alive(c->c));
}
END_TEST

/* The agent's connection closes while memd waits for it: ESRCH. */
START_TEST(test_agent_gone) {
        struct peer *a = agent_new(getpid(), 0), *c = control_new(0);

        ck_assert_int_eq(send_request(c, PROTO_MSG_GC_REQUEST, 800, (uint32_t) getpid(), 0), 0);
        ck_assert_int_eq(send_request(c, PROTO_MSG_SET_RATE, 801, (uint32_t) getpid(), 1), 0);
        agent_expect_request(a, PROTO_MSG_GC_REQUEST, 800, 0);
        peer_hangup(a);
        ck_assert_ptr_null(registry_find(&srv, getpid()));
        peer_expect_errors(c, 800, 2, ESRCH);
        ck_assert_ptr_null(srv.pending);
        /* And a new request: the process is not attached any more. */
        ck_assert_int_eq(send_request(c, PROTO_MSG_GC_REQUEST, 802, (uint32_t) getpid(), 0), 0);
        peer_expect_error(c, 802, ESRCH);
        peer_expect_quiet(c);
}
END_TEST

/* The process exits (its pidfd says so) while memd waits for it: ESRCH, and
 * its connection is closed by memd. */
START_TEST(test_process_exit) {
        pid_t other = spawn_sleeper();
        struct peer *a = agent_new(other, 1000), *c = control_new(1000);

        ck_assert_int_ge(registry_find(&srv, other)->pidfd, 0);
        ck_assert_int_eq(send_request(c, PROTO_MSG_SCAVENGE_REQUEST, 810, (uint32_t) other, 0), 0);
        agent_expect_request(a, PROTO_MSG_SCAVENGE_REQUEST, 810, 0);
        ck_assert_int_eq(kill(other, SIGKILL), 0);
        peer_expect_error(c, 810, ESRCH);
        RUN_UNTIL(!registry_find(&srv, other));
        ck_assert(!conn_alive(a->c));
        a->c = NULL;
        peer_expect_eof(a);
        ck_assert_uint_eq(notify_last, 0);
}
END_TEST

/* The control client goes away with a request pending: the agent's late
 * answer (or the timer) finds nobody to tell, and nothing breaks. */
START_TEST(test_control_gone) {
        struct peer *a = agent_new(getpid(), 0), *c = control_new(0), *c2 = control_new(0);
        struct proto_gc_result g = { .freed_bytes = 5 };
        uint64_t id;

        ck_assert_int_eq(send_request(c, PROTO_MSG_GC_REQUEST, 900, (uint32_t) getpid(), 0), 0);
        id = agent_expect_request(a, PROTO_MSG_GC_REQUEST, 900, 0);
        peer_drop(c);
        ck_assert_ptr_nonnull(srv.pending);
        ck_assert_int_eq(SEND(a, proto_pack_gc_result(pk, id, &g)), 0);
        ck_assert_ptr_null(srv.pending);
        ck_assert(conn_alive(a->c));
        peer_expect_eof(c);

        /* Gone by hangup, then the timer fires. */
        srv.request_timeout_s = 0.1;
        ev_now_update(loop);
        ck_assert_int_eq(send_request(c2, PROTO_MSG_GC_REQUEST, 901, (uint32_t) getpid(), 0), 0);
        agent_expect_request(a, PROTO_MSG_GC_REQUEST, 901, 0);
        peer_hangup(c2);
        RUN_UNTIL(!srv.pending);
        ck_assert(conn_alive(a->c));
        peer_expect_quiet(a);
}
END_TEST

START_TEST(test_permissions) {
        pid_t other = spawn_sleeper();
        struct peer *a0 = agent_new(getpid(), 0), *a1 = agent_new(other, 1000);
        struct peer *user = control_new(1000), *root = control_new(0);
        static const uint32_t types[] = { PROTO_MSG_GC_REQUEST, PROTO_MSG_SCAVENGE_REQUEST, PROTO_MSG_SET_RATE,
                                          PROTO_MSG_SET_MEMORY_LIMIT, PROTO_MSG_PROFILE_REQUEST };

        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
                uint64_t id = 1000 + i * 10;

                /* A user acting on root's process. */
                ck_assert_int_eq(send_request(user, types[i], id, (uint32_t) getpid(), 1), 0);
                peer_expect_error(user, id, EPERM);
                /* A pid nobody attached. */
                ck_assert_int_eq(send_request(user, types[i], id + 1, 0x7ffffff0, 1), 0);
                peer_expect_error(user, id + 1, ESRCH);
                ck_assert_int_eq(send_request(root, types[i], id + 2, 0x7ffffff0, 1), 0);
                peer_expect_error(root, id + 2, ESRCH);
                /* No pid at all. */
                ck_assert_int_eq(send_request(root, types[i], id + 3, 0, 1), 0);
                peer_expect_error(root, id + 3, EINVAL);
                ck_assert(conn_alive(user->c));
                ck_assert(conn_alive(root->c));
        }
        peer_expect_quiet(a0);
        peer_expect_quiet(a1);
        ck_assert_ptr_null(srv.pending);

        /* A user acting on their own process, and root on anyone's: relayed. */
        ck_assert_int_eq(send_request(user, PROTO_MSG_GC_REQUEST, 1100, (uint32_t) other, 0), 0);
        agent_expect_request(a1, PROTO_MSG_GC_REQUEST, 1100, 0);
        ck_assert_int_eq(send_request(root, PROTO_MSG_GC_REQUEST, 1101, (uint32_t) other, 0), 0);
        agent_expect_request(a1, PROTO_MSG_GC_REQUEST, 1101, 0);
        peer_expect_quiet(a0);
        peer_expect_quiet(user);
        peer_expect_quiet(root);
}
END_TEST

/* Types a role may not send: ERROR EPERM, and the connection stays. */
START_TEST(test_role_table) {
        struct peer *a = agent_new(getpid(), 0), *c = control_new(0);
        struct proto_event *e = malloc(sizeof(*e));
        struct proto_gc_result g = { .freed_bytes = 1 };
        struct memd_memstats st;
        struct profile_record r;
        bool found;
        struct proto_process *p = malloc(sizeof(*p));

        ck_assert_ptr_nonnull(e);
        ck_assert_ptr_nonnull(p);
        fill_stats(&st, 1);
        make_event(e, PROTO_EVENT_GC, 1);
        make_rec(&r, 1);

        /* From a control client, agent-only types. */
        ck_assert_int_eq(SEND(c, proto_pack_memstats(pk, 60, 0, 1, &st, true)), 0);
        peer_expect_error(c, 60, EPERM);
        ck_assert_int_eq(SEND(c, proto_pack_event(pk, 61, e)), 0);
        peer_expect_error(c, 61, EPERM);
        ck_assert_int_eq(send_profile(c, PROTO_MSG_PROFILE_SNAPSHOT, 1, 0, true, &r, 1), 0);
        peer_expect_error(c, 0, EPERM);
        ck_assert_int_eq(SEND(c, proto_pack_gc_result(pk, 62, &g)), 0);
        peer_expect_error(c, 62, EPERM);
        ck_assert_int_eq(SEND(c, proto_pack_ok(pk, 63, UINT64_MAX)), 0);
        peer_expect_error(c, 63, EPERM);
        ck_assert_int_eq(SEND(c, proto_pack_mappings(pk, 64, 0, NULL, 0)), 0);
        peer_expect_error(c, 64, EPERM);
        /* None of it reached the process, and the connection still works. */
        ck_assert(conn_alive(c->c));
        ck_assert_uint_eq(get_status(c, 65, 0, getpid(), p, &found), 1);
        ck_assert(found);
        ck_assert(!p->has_stats);
        ck_assert_uint_eq(p->profile_buckets, 0);
        ck_assert_int_eq(p->last_gc_ns, 0);

        /* From an agent, control-only types. */
        ck_assert_int_eq(send_request(a, PROTO_MSG_STATUS_REQUEST, 66, 0, 0), 0);
        peer_expect_error(a, 66, EPERM);
        ck_assert_int_eq(send_request(a, PROTO_MSG_GC_REQUEST, 67, (uint32_t) getpid(), 0), 0);
        peer_expect_error(a, 67, EPERM);
        ck_assert_int_eq(send_request(a, PROTO_MSG_SUBSCRIBE, 68, 0, 0), 0);
        peer_expect_error(a, 68, EPERM);
        ck_assert_int_eq(send_request(a, PROTO_MSG_PROFILE_REQUEST, 69, (uint32_t) getpid(), 0), 0);
        peer_expect_error(a, 69, EPERM);
        ck_assert(conn_alive(a->c));
        ck_assert(!a->c->sub.on);
        ck_assert_ptr_null(srv.pending);
        peer_expect_quiet(c);
        free(e);
        free(p);
}
END_TEST

/* PROFILE_REQUEST is answered from memd's copy: MAPPINGS, then snapshot
 * parts of at most 4096 buckets, all with the request's id and the pid, the
 * last one final, the figures those stored (snapshot + delta). */
START_TEST(test_profile_request) {
        enum { N = 10000, DELTA = 300 };
        struct peer *a = agent_new(getpid(), 0), *c = control_new(0);
        struct profile_record *recs = calloc(N, sizeof(*recs)), got;
        struct proto_mapping *maps = calloc(2, sizeof(*maps));
        uint8_t *seen = calloc(N, 1);
        struct proto_mappings pm;
        struct proto_mapping m;
        struct proto_profile h;
        size_t total = 0;
        uint32_t part = 0;

        ck_assert_ptr_nonnull(recs);
        ck_assert_ptr_nonnull(maps);
        ck_assert_ptr_nonnull(seen);
        maps[0] = (struct proto_mapping) { .start = 0x400000, .limit = 0x500000, .offset = 0x1000,
                                           .path = "/usr/bin/cache", .build_id_len = 20 };
        for (int i = 0; i < 20; i++)
                maps[0].build_id[i] = (uint8_t) (i * 7);
        maps[1] = (struct proto_mapping) { .start = 0x7f0000000000, .limit = 0x7f0000100000, .path = "" };
        ck_assert_int_eq(SEND(a, proto_pack_mappings(pk, 0, 0, maps, 2)), 0);
        for (size_t i = 0; i < N; i++)
                make_rec(&recs[i], i);
        ck_assert_int_eq(send_profile(a, PROTO_MSG_PROFILE_SNAPSHOT, 3, 0, false, recs, N / 2), 0);
        ck_assert_int_eq(send_profile(a, PROTO_MSG_PROFILE_SNAPSHOT, 3, 1, true, recs + N / 2, N / 2), 0);
        /* A delta on the first DELTA stacks: their figures double. */
        ck_assert_int_eq(send_profile(a, PROTO_MSG_PROFILE_DELTA, 0, 0, false, recs, DELTA), 0);
        ck_assert_uint_eq(status_of(c, 1199, 0, getpid())->profile_buckets, N);

        ck_assert_int_eq(send_request(c, PROTO_MSG_PROFILE_REQUEST, 1200, (uint32_t) getpid(), 0), 0);
        peer_expect(c, PROTO_MSG_MAPPINGS, 1200);
        ck_assert_int_eq(proto_decode_mappings(&c->m, &pm), 0);
        ck_assert_uint_eq(pm.pid, (uint32_t) getpid());
        ck_assert_uint_eq(pm.mappings.n, 2);
        for (uint32_t i = 0; i < 2; i++) {
                ck_assert_int_eq(proto_decode_mapping(&pm.mappings.items[i], &m), 0);
                ck_assert_uint_eq(m.start, maps[i].start);
                ck_assert_uint_eq(m.limit, maps[i].limit);
                ck_assert_uint_eq(m.offset, maps[i].offset);
                ck_assert_str_eq(m.path, maps[i].path);
                ck_assert_uint_eq(m.build_id_len, maps[i].build_id_len);
                ck_assert(memcmp(m.build_id, maps[i].build_id, m.build_id_len) == 0);
        }
        for (;;) {
                peer_expect(c, PROTO_MSG_PROFILE_SNAPSHOT, 1200);
                ck_assert_int_eq(proto_decode_profile(&c->m, &h), 0);
                ck_assert_uint_eq(h.pid, (uint32_t) getpid());
                ck_assert_uint_eq(h.part, part);
                ck_assert_uint_eq(h.generation, 3);
                ck_assert_uint_eq(h.rate_bytes, 65536);
                ck_assert_int_eq(h.time_ns, 1700000000000000000); /* the delta's (generation 0) */
                ck_assert_uint_le(h.buckets.n, 4096);
                for (uint32_t i = 0; i < h.buckets.n; i++) {
                        struct profile_record want;
                        uint64_t s;

                        ck_assert_int_eq(proto_decode_bucket(&h.buckets.items[i], &got), 0);
                        s = seed_of(&got);
                        ck_assert_uint_lt(s, N);
                        ck_assert_msg(!seen[s], "stack %llu sent twice", (unsigned long long) s);
                        seen[s] = 1;
                        make_rec(&want, s);
                        ck_assert_uint_eq(got.depth, want.depth);
                        ck_assert(memcmp(got.pcs, want.pcs, want.depth * sizeof(uintptr_t)) == 0);
                        unsigned k = s < DELTA ? 2 : 1;
                        ck_assert_uint_eq(got.alloc_count, k * want.alloc_count);
                        ck_assert_uint_eq(got.alloc_bytes, k * want.alloc_bytes);
                        ck_assert_uint_eq(got.free_count, k * want.free_count);
                        ck_assert_uint_eq(got.free_bytes, k * want.free_bytes);
                        ck_assert(got.alloc_objects_est == k * want.alloc_objects_est);
                        ck_assert(got.alloc_bytes_est == k * want.alloc_bytes_est);
                        ck_assert(got.free_objects_est == k * want.free_objects_est);
                        ck_assert(got.free_bytes_est == k * want.free_bytes_est);
                }
                total += h.buckets.n;
                part++;
                if (h.final)
                        break;
                ck_assert_uint_eq(h.buckets.n, 4096);
        }
        ck_assert_uint_eq(total, N);
        ck_assert_uint_eq(part, (N + 4095) / 4096);
        peer_expect_quiet(c);
        peer_expect_quiet(a); /* the agent was not asked */
        free(recs);
        free(maps);
        free(seen);
}
END_TEST

/* A process with no profile and no mappings yet: an empty MAPPINGS and one
 * empty final part. */
START_TEST(test_profile_request_empty) {
        struct peer *a = agent_new(getpid(), 0), *c = control_new(0);
        struct proto_mappings pm;
        struct proto_profile h;

        ck_assert_int_eq(send_request(c, PROTO_MSG_PROFILE_REQUEST, 1300, (uint32_t) getpid(), 0), 0);
        peer_expect(c, PROTO_MSG_MAPPINGS, 1300);
        ck_assert_int_eq(proto_decode_mappings(&c->m, &pm), 0);
        ck_assert_uint_eq(pm.pid, (uint32_t) getpid());
        ck_assert_uint_eq(pm.mappings.n, 0);
        peer_expect(c, PROTO_MSG_PROFILE_SNAPSHOT, 1300);
        ck_assert_int_eq(proto_decode_profile(&c->m, &h), 0);
        ck_assert_uint_eq(h.pid, (uint32_t) getpid());
        ck_assert_uint_eq(h.part, 0);
        ck_assert(h.final);
        ck_assert_uint_eq(h.buckets.n, 0);
        ck_assert_uint_eq(h.rate_bytes, 524288); /* HELLO's, no profile yet */
        peer_expect_quiet(c);
        peer_expect_quiet(a);
}
END_TEST

/* A formatted profile asked for with fd: one final PROFILE_DATA and the
 * file passed with it, the same bytes as the parts memd sends otherwise. */
START_TEST(test_profile_formatted_fd) {
        enum { N = 3000 };
        struct peer *a = agent_new(getpid(), 0), *c = control_new(0);
        struct profile_record *recs = calloc(N, sizeof(*recs));
        struct proto_profile_data d;
        char *parts = NULL, *passed;
        size_t len = 0;
        struct stat st;

        ck_assert_ptr_nonnull(recs);
        for (size_t i = 0; i < N; i++)
                make_rec(&recs[i], i);
        ck_assert_int_eq(send_profile(a, PROTO_MSG_PROFILE_SNAPSHOT, 1, 0, true, recs, N), 0);
        for (uint32_t format = PROTO_PROFILE_PPROF; format <= PROTO_PROFILE_SAMPLES; format++) {
                struct proto_request q = { .pid = (uint32_t) getpid(), .format = format };
                FILE *mem = open_memstream(&parts, &len);

                ck_assert_ptr_nonnull(mem);
                ck_assert_int_eq(SEND(c, proto_pack_request(pk, PROTO_MSG_PROFILE_REQUEST, 1400 + format, &q)), 0);
                for (uint32_t part = 0;; part++) {
                        peer_expect(c, PROTO_MSG_PROFILE_DATA, 1400 + format);
                        ck_assert_int_eq(proto_decode_profile_data(&c->m, &d), 0);
                        ck_assert(!d.fd);
                        ck_assert_uint_eq(d.part, part);
                        ck_assert_uint_eq(fwrite(d.data.ptr, 1, d.data.len, mem), d.data.len);
                        if (d.final)
                                break;
                }
                ck_assert_int_eq(fclose(mem), 0);
                ck_assert_int_eq(c->passed_fd, -1);
                if (format != PROTO_PROFILE_SAMPLES) /* stacks of unknown pcs: no samples line is empty */
                        ck_assert_uint_gt(len, 1000);

                q.fd = true;
                ck_assert_int_eq(SEND(c, proto_pack_request(pk, PROTO_MSG_PROFILE_REQUEST, 1410 + format, &q)), 0);
                peer_expect(c, PROTO_MSG_PROFILE_DATA, 1410 + format);
                ck_assert_int_eq(proto_decode_profile_data(&c->m, &d), 0);
                ck_assert(d.fd && d.final);
                ck_assert_uint_eq(d.part, 0);
                ck_assert_uint_eq(d.data.len, 0);
                ck_assert_uint_eq(d.format, format);
                ck_assert_uint_eq(d.size, len);
                ck_assert_int_ge(c->passed_fd, 0);
                ck_assert_int_eq(fstat(c->passed_fd, &st), 0);
                ck_assert(S_ISREG(st.st_mode));
                ck_assert_uint_eq(st.st_size, len);
                passed = malloc(len + 1);
                ck_assert_ptr_nonnull(passed);
                ck_assert_int_eq(pread(c->passed_fd, passed, len + 1, 0), (ssize_t) len);
                ck_assert(memcmp(passed, parts, len) == 0);
                close(c->passed_fd);
                c->passed_fd = -1;
                free(passed);
                free(parts);
                parts = NULL;
        }
        peer_expect_quiet(c);
        free(recs);
}
END_TEST

/* Profiles are written on memd's heap worker: a client that goes away
 * before its profile is written costs nothing (its answer is dropped, the
 * file closed), and another client's is answered meanwhile. */
START_TEST(test_profile_client_gone) {
        enum { N = 2000 };
        struct peer *a = agent_new(getpid(), 0), *c = control_new(0), *c2 = control_new(0);
        struct profile_record *recs = calloc(N, sizeof(*recs));
        struct proto_request q = { .pid = (uint32_t) getpid(), .format = PROTO_PROFILE_TEXT };
        struct proto_profile_data d;

        ck_assert_ptr_nonnull(recs);
        for (size_t i = 0; i < N; i++)
                make_rec(&recs[i], i);
        ck_assert_int_eq(send_profile(a, PROTO_MSG_PROFILE_SNAPSHOT, 1, 0, true, recs, N), 0);
        for (int i = 0; i < 5; i++)
                ck_assert_int_eq(SEND(c, proto_pack_request(pk, PROTO_MSG_PROFILE_REQUEST, 1500 + i, &q)), 0);
        peer_hangup(c);
        q.fd = true;
        ck_assert_int_eq(SEND(c2, proto_pack_request(pk, PROTO_MSG_PROFILE_REQUEST, 1600, &q)), 0);
        peer_expect(c2, PROTO_MSG_PROFILE_DATA, 1600);
        ck_assert_int_eq(proto_decode_profile_data(&c2->m, &d), 0);
        ck_assert(d.fd && d.size > 0);
        ck_assert_int_ge(c2->passed_fd, 0);
        peer_expect_quiet(c2);
        free(recs);
}
END_TEST

/* A second connection of the same pid replaces the first: the old one is
 * closed, what it was asked fails with ESRCH, the new one is the agent. */
START_TEST(test_reattach) {
        struct peer *a = agent_new(getpid(), 0), *c = control_new(0), *b;
        struct proto_gc_result g = { .freed_bytes = 3 };
        struct process *proc = registry_find(&srv, getpid());
        struct memd_memstats st;
        uint64_t id;

        fill_stats(&st, 4);
        ck_assert_int_eq(SEND(a, proto_pack_memstats(pk, 0, 0, 42, &st, true)), 0);
        ck_assert_int_eq(send_request(c, PROTO_MSG_GC_REQUEST, 1400, (uint32_t) getpid(), 0), 0);
        agent_expect_request(a, PROTO_MSG_GC_REQUEST, 1400, 0);

        b = peer_new(getpid(), 0);
        hello(b, PROTO_ROLE_AGENT, 0);
        peer_expect_error(c, 1400, ESRCH);
        ck_assert(!conn_alive(a->c));
        a->c = NULL;
        peer_expect_eof(a);
        ck_assert_ptr_eq(registry_find(&srv, getpid()), proc); /* the same entry, kept */
        ck_assert_ptr_eq(proc->conn, b->c);
        ck_assert_uint_eq(srv.n_processes, 1);
        ck_assert_int_eq(status_of(c, 1401, 0, getpid())->stats_time_ns, 42);

        ck_assert_int_eq(send_request(c, PROTO_MSG_GC_REQUEST, 1402, (uint32_t) getpid(), 0), 0);
        id = agent_expect_request(b, PROTO_MSG_GC_REQUEST, 1402, 0);
        ck_assert_int_eq(SEND(b, proto_pack_gc_result(pk, id, &g)), 0);
        peer_expect(c, PROTO_MSG_GC_RESULT, 1402);
}
END_TEST

/* ---- peers that stop reading ---------------------------------------------------- */

/* As if memd had CONN_OUT_MAX_BYTES queued for p that p never read (building
 * the real backlog takes a million messages): memd's next send to p fails
 * with -ENOBUFS, as it would. */
static void fake_backlog(struct peer *p) {
        ck_assert_uint_eq(p->c->out_len, p->c->out_off); /* nothing real queued */
        ck_assert(!(p->c->io.events & EV_WRITE));       /* so nothing flushes it */
        p->c->out_len = CONN_OUT_MAX_BYTES;
        p->c->out_off = 0;
}

/* An agent that does not read memd's requests is closed when one is
 * forwarded (at once or on the loop's next turn): that request and the
 * older ones fail with ESRCH; nothing else is touched. */
START_TEST(test_agent_not_reading) {
        struct peer *a = agent_new(getpid(), 0), *c = control_new(0);

        ck_assert_int_eq(send_request(c, PROTO_MSG_GC_REQUEST, 1499, (uint32_t) getpid(), 0), 0);
        agent_expect_request(a, PROTO_MSG_GC_REQUEST, 1499, 0);
        fake_backlog(a);
        ck_assert_int_eq(send_request(c, PROTO_MSG_GC_REQUEST, 1500, (uint32_t) getpid(), 0), 0);
        peer_expect_errors(c, 1499, 2, ESRCH);
        RUN_UNTIL(!conn_alive(a->c));
        a->c = NULL;
        peer_expect_eof(a);
        ck_assert_ptr_null(registry_find(&srv, getpid()));
        ck_assert_ptr_null(srv.pending);
        ck_assert(conn_alive(c->c));
        ck_assert_uint_eq(get_status(c, 1501, 0, 0, NULL, NULL), 0);
}
END_TEST

/* A client that stops reading while its request is pending is closed when
 * the answer comes; the agent goes on. */
START_TEST(test_control_not_reading) {
        struct peer *a = agent_new(getpid(), 0), *c = control_new(0), *c2 = control_new(0);
        struct proto_gc_result g = { .freed_bytes = 5 };
        uint64_t id;

        ck_assert_int_eq(send_request(c, PROTO_MSG_GC_REQUEST, 1510, (uint32_t) getpid(), 0), 0);
        id = agent_expect_request(a, PROTO_MSG_GC_REQUEST, 1510, 0);
        fake_backlog(c);
        ck_assert_int_eq(SEND(a, proto_pack_gc_result(pk, id, &g)), 0);
        ck_assert(!conn_alive(c->c));
        c->c = NULL;
        peer_expect_eof(c);
        ck_assert_ptr_null(srv.pending);
        ck_assert(conn_alive(a->c));

        /* The same when the answer is a timeout. */
        srv.request_timeout_s = 0.05;
        ev_now_update(loop);
        ck_assert_int_eq(send_request(c2, PROTO_MSG_GC_REQUEST, 1511, (uint32_t) getpid(), 0), 0);
        agent_expect_request(a, PROTO_MSG_GC_REQUEST, 1511, 0);
        fake_backlog(c2);
        RUN_UNTIL(!conn_alive(c2->c));
        c2->c = NULL;
        peer_expect_eof(c2);
        ck_assert_ptr_null(srv.pending);
        ck_assert(conn_alive(a->c));
}
END_TEST

/* Both stop reading: the client's new request makes memd drop the agent,
 * whose pending requests fail towards that same client, which must then be
 * dropped too: never inside its own message (memd once freed it there and
 * used it afterwards). */
START_TEST(test_both_not_reading) {
        struct peer *a = agent_new(getpid(), 0), *c = control_new(0), *other = control_new(0);

        ck_assert_int_eq(send_request(c, PROTO_MSG_GC_REQUEST, 1515, (uint32_t) getpid(), 0), 0);
        agent_expect_request(a, PROTO_MSG_GC_REQUEST, 1515, 0);
        fake_backlog(a);
        fake_backlog(c);
        /* The ESRCH for it cannot be queued: conn_input() says to close c. */
        ck_assert_int_lt(send_request(c, PROTO_MSG_GC_REQUEST, 1516, (uint32_t) getpid(), 0), 0);
        peer_drop(c); /* as conn_io() does */
        peer_expect_eof(c);
        RUN_UNTIL(!conn_alive(a->c));
        a->c = NULL;
        ck_assert_ptr_null(registry_find(&srv, getpid()));
        ck_assert_ptr_null(srv.pending);
        /* Everyone else is fine. */
        ck_assert_uint_eq(get_status(other, 1517, 0, 0, NULL, NULL), 0);
}
END_TEST

/* A subscriber that stops reading is closed; the ones before and after it
 * in memd's list still get the event. */
START_TEST(test_subscriber_not_reading) {
        struct peer *a = agent_new(getpid(), 0), *s1 = control_new(0), *slow = control_new(0), *s3 = control_new(0);
        struct proto_event *e = malloc(sizeof(*e));

        ck_assert_ptr_nonnull(e);
        ck_assert_int_eq(send_request(s1, PROTO_MSG_SUBSCRIBE, 1520, 0, 0), 0);
        peer_expect(s1, PROTO_MSG_OK, 1520);
        ck_assert_int_eq(send_request(slow, PROTO_MSG_SUBSCRIBE, 1521, 0, 0), 0);
        peer_expect(slow, PROTO_MSG_OK, 1521);
        ck_assert_int_eq(send_request(s3, PROTO_MSG_SUBSCRIBE, 1522, 0, 0), 0);
        peer_expect(s3, PROTO_MSG_OK, 1522);
        fake_backlog(slow);
        make_event(e, PROTO_EVENT_GC, 1);
        ck_assert_int_eq(SEND(a, proto_pack_event(pk, 0, e)), 0);
        ck_assert(!conn_alive(slow->c));
        slow->c = NULL;
        peer_expect_eof(slow);
        peer_expect(s1, PROTO_MSG_EVENT, 1520);
        peer_expect(s3, PROTO_MSG_EVENT, 1522);
        ck_assert(conn_alive(a->c));
        free(e);
}
END_TEST

/* The real thing: a client asking for a large profile again and again
 * without reading is closed once 64 MiB wait for it, not before. */
START_TEST(test_output_bounded) {
        enum { N = 10000 };
        struct peer *a = agent_new(getpid(), 0), *c = control_new(0);
        struct profile_record *recs = calloc(N, sizeof(*recs));
        size_t max_queued = 0;
        int i, r = 0;

        ck_assert_ptr_nonnull(recs);
        for (size_t k = 0; k < N; k++)
                make_rec(&recs[k], k);
        ck_assert_int_eq(send_profile(a, PROTO_MSG_PROFILE_SNAPSHOT, 1, 0, true, recs, N), 0);
        free(recs);
        for (i = 0; i < 200 && r == 0; i++) {
                r = send_request(c, PROTO_MSG_PROFILE_REQUEST, 1530 + i, (uint32_t) getpid(), 0);
                if (r == 0 && c->c->out_len - c->c->out_off > max_queued)
                        max_queued = c->c->out_len - c->c->out_off;
        }
        ck_assert_int_lt(r, 0); /* conn_input says: close it */
        ck_assert_uint_le(max_queued, CONN_OUT_MAX_BYTES);
        ck_assert_uint_gt(max_queued, CONN_OUT_MAX_BYTES - (8u << 20));
        peer_drop(c);
        ck_assert(conn_alive(a->c));
}
END_TEST

static TCase *add_tcase(Suite *s, const char *name) {
        TCase *tc = tcase_create(name);

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        suite_add_tcase(s, tc);
        return tc;
}

static Suite *dispatch_suite(void) {
        Suite *s = suite_create("memd-dispatch");
        TCase *tc = add_tcase(s, "hello");

        tcase_add_test(tc, test_hello_first);
        tcase_add_test(tc, test_hello_version_and_role);
        tcase_add_test(tc, test_agent_attach);
        tcase_add_test(tc, test_reattach);

        tc = add_tcase(s, "reports");
        tcase_add_test(tc, test_memstats);
        tcase_add_test(tc, test_profile_snapshot_delta);
        tcase_add_test(tc, test_event_history);
        tcase_add_test(tc, test_subscribe);
        tcase_add_test(tc, test_profile_request);
        tcase_add_test(tc, test_profile_request_empty);
        tcase_add_test(tc, test_profile_formatted_fd);
        tcase_add_test(tc, test_profile_client_gone);

        tc = add_tcase(s, "requests");
        tcase_add_test(tc, test_gc_relay);
        tcase_add_test(tc, test_ok_error_relay);
        tcase_add_test(tc, test_answered_no_timeout);
        tcase_add_test(tc, test_reply_from_other_agent);
        tcase_add_test(tc, test_request_timeout);
        tcase_add_test(tc, test_agent_gone);
        tcase_add_test(tc, test_process_exit);
        tcase_add_test(tc, test_control_gone);
        tcase_add_test(tc, test_permissions);
        tcase_add_test(tc, test_role_table);

        tc = add_tcase(s, "slow-readers");
        tcase_add_test(tc, test_agent_not_reading);
        tcase_add_test(tc, test_control_not_reading);
        tcase_add_test(tc, test_both_not_reading);
        tcase_add_test(tc, test_subscriber_not_reading);
        tcase_add_test(tc, test_output_bounded);
        return s;
}

int main(void) {
        return unit_main(dispatch_suite(), "test-memd-dispatch", false);
}
