/* fuzz-memd.c - libFuzzer target: the wire-protocol reader and every body decoder, then memd's real dispatcher over two socketpair connections (fuzz-input.h has the input layout). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sanitizer/common_interface_defs.h>

#include "daemon.h"
#include "fuzz-input.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken promise of the code under test: a crash libFuzzer saves.  The
 * summary goes to the sanitizer's report fd, which survives
 * -close_fd_mask=2 (stderr itself does not). */
__attribute__((noreturn, format(printf, 1, 2))) static void die(const char *fmt, ...) {
        char text[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(text, sizeof text, fmt, ap);
        va_end(ap);
        fprintf(stderr, "fuzz-memd: %s\n", text);
        __sanitizer_report_error_summary(text);
        abort();
}

static struct server server = { .listen_fd = -1 };
static bool trace;              /* $FUZZ_MEMD_TRACE: print each reply memd sends */

/* main.c is not linked (it has main()): its two helpers, deterministic here.
 * notify_status() runs on every attach and detach, so it checks the count. */
int64_t now_ns(void) {
        return INT64_C(1700000000000000000);
}

void notify_status(struct server *s) {
        unsigned n = 0;

        for (const struct process *p = s->processes; p; p = p->next)
                n++;
        if (n != s->n_processes)
                die("registry lists %u processes but counts %u", n, s->n_processes);
}

/* ---- the input ------------------------------------------------------------ */

struct chunk {
        const uint8_t *data;
        size_t len;
        unsigned to;            /* 0: connection A, 1: B */
};

struct plan {
        uint8_t conn_bits[2];
        struct chunk chunks[FUZZ_CHUNKS];
};

static int cmp_size(const void *a, const void *b) {
        size_t x = *(const size_t *) a, y = *(const size_t *) b;

        return x < y ? -1 : x > y;
}

static void plan_read(const uint8_t *data, size_t size, struct plan *ret) {
        uint8_t hdr[FUZZ_HEADER_BYTES] = { 0 };
        size_t cuts[FUZZ_CHUNKS + 1], len;
        const uint8_t *payload;

        if (size > 0)
                memcpy(hdr, data, size < sizeof hdr ? size : sizeof hdr);
        payload = data + (size < sizeof hdr ? size : sizeof hdr);
        len = size - (size_t) (payload - data);

        ret->conn_bits[0] = hdr[0] & ((1u << FUZZ_CONN_BITS) - 1);
        ret->conn_bits[1] = (hdr[0] >> FUZZ_CONN_BITS) & ((1u << FUZZ_CONN_BITS) - 1);
        cuts[0] = 0;
        for (int i = 0; i < FUZZ_CHUNKS - 1; i++) {
                size_t c = (size_t) hdr[2 + 2 * i] | (size_t) hdr[3 + 2 * i] << 8;
                cuts[1 + i] = c < len ? c : len;
        }
        cuts[FUZZ_CHUNKS] = len;
        qsort(cuts + 1, FUZZ_CHUNKS - 1, sizeof cuts[0], cmp_size);
        for (int i = 0; i < FUZZ_CHUNKS; i++) {
                ret->chunks[i].data = payload + cuts[i];
                ret->chunks[i].len = cuts[i + 1] - cuts[i];
                ret->chunks[i].to = (hdr[1] >> i) & 1;
        }
}

/* ---- the decoders ------------------------------------------------------------ */

/* What docs/protocol.md says the reader may return. */
static bool errno_documented(int r) {
        return r == -EBADMSG || r == -EMSGSIZE || r == -ENOMEM || r == -ENOBUFS;
}

/* Every body decoder on m, whatever its type: none may crash on any
 * well-framed message.  What the headers promise is checked: items of a
 * profile, mappings or status reply that decoded whole decode alone. */
static void decode_everything(const struct proto_msg *m) {
        static struct proto_hello hello;
        static struct proto_hello_ok hello_ok;
        static struct proto_error error;
        static struct proto_ok ok;
        static struct proto_bye bye;
        static struct proto_memstats memstats;
        static struct proto_profile profile;
        static struct profile_record bucket;
        static struct proto_mappings mappings;
        static struct proto_mapping mapping;
        static struct proto_event event;
        static struct proto_request request;
        static struct proto_gc_result gc;
        static struct proto_scavenge_result scvg;
        static struct proto_status_reply status;
        static struct proto_process process;
        int r;

        (void) proto_decode_hello(m, &hello);
        (void) proto_decode_hello_ok(m, &hello_ok);
        (void) proto_decode_error(m, &error);
        (void) proto_decode_ok(m, &ok);
        (void) proto_decode_bye(m, &bye);
        (void) proto_decode_memstats(m, &memstats);
        (void) proto_decode_event(m, &event);
        (void) proto_decode_request(m, &request);
        (void) proto_decode_gc_result(m, &gc);
        (void) proto_decode_scavenge_result(m, &scvg);

        if (proto_decode_profile(m, &profile) >= 0)
                for (uint32_t i = 0; i < profile.buckets.n; i++) {
                        r = proto_decode_bucket(&profile.buckets.items[i], &bucket);
                        if (r < 0)
                                die("bucket %u of a valid %s: %s", i, proto_msg_type_name(m->type), strerror(-r));
                }
        if (proto_decode_mappings(m, &mappings) >= 0)
                for (uint32_t i = 0; i < mappings.mappings.n; i++) {
                        r = proto_decode_mapping(&mappings.mappings.items[i], &mapping);
                        if (r < 0)
                                die("mapping %u of a valid MAPPINGS: %s", i, strerror(-r));
                }
        if (proto_decode_status_reply(m, &status) >= 0)
                for (uint32_t i = 0; i < status.processes.n; i++) {
                        r = proto_decode_process(&status.processes.items[i], &process);
                        if (r < 0)
                                die("process %u of a valid STATUS_REPLY: %s", i, strerror(-r));
                        for (uint32_t j = 0; j < process.event_view.n; j++) {
                                r = proto_decode_event_object(&process.event_view.items[j], &event);
                                if (r < 0)
                                        die("event %u of process %u of a valid STATUS_REPLY: %s", j, i,
                                            strerror(-r));
                        }
                }
}

/* (a) The chunks, in order, through one fresh reader. */
static void reader_pass(const struct plan *plan) {
        struct proto_reader *r;
        struct proto_msg m;
        int k = 0;

        if (proto_reader_new(&r) < 0)
                die("proto_reader_new failed");
        proto_msg_init(&m);
        for (int i = 0; i < FUZZ_CHUNKS && k >= 0; i++) {
                k = proto_reader_feed(r, plan->chunks[i].data, plan->chunks[i].len);
                while (k >= 0 && (k = proto_reader_next(r, &m)) > 0) {
                        if (!proto_msg_type_known(m.type))
                                die("the reader passed a message of unknown type %u", m.type);
                        decode_everything(&m);
                }
                if (k < 0 && !errno_documented(k))
                        die("the reader returned %d (%s), which docs/protocol.md does not list", k, strerror(-k));
        }
        proto_msg_done(&m);
        proto_reader_free(r);
}

/* ---- the dispatcher ------------------------------------------------------------ */

/* One connection: memd's end is c; we hold the peer end and read (and
 * check) what memd sends, so the socket never fills and the run stays the
 * same from one execution to the next. */
struct peer {
        char name;              /* 'A' or 'B' */
        struct conn *c;         /* NULL once closed */
        int fd;
        struct proto_reader *replies;
        struct proto_msg msg;
};

static bool conn_listed(const struct conn *c) {
        for (const struct conn *x = server.conns; x; x = x->next)
                if (x == c)
                        return true;
        return false;
}

/* What memd sends must decode with its type's decoder. */
static int decode_typed(const struct proto_msg *m) {
        static union {
                struct proto_hello_ok hello_ok;
                struct proto_error error;
                struct proto_ok ok;
                struct proto_bye bye;
                struct proto_memstats memstats;
                struct proto_profile profile;
                struct proto_mappings mappings;
                struct proto_event event;
                struct proto_gc_result gc;
                struct proto_scavenge_result scvg;
                struct proto_status_reply status;
                struct proto_request request;
        } u;

        switch (m->type) {
        case PROTO_MSG_HELLO_OK:
                return proto_decode_hello_ok(m, &u.hello_ok);
        case PROTO_MSG_ERROR:
                if (proto_decode_error(m, &u.error) < 0 || u.error.code == 0)
                        return -EBADMSG;
                return 0;
        case PROTO_MSG_OK:
                return proto_decode_ok(m, &u.ok);
        case PROTO_MSG_BYE:
                return proto_decode_bye(m, &u.bye);
        case PROTO_MSG_MEMSTATS:
                return proto_decode_memstats(m, &u.memstats);
        case PROTO_MSG_PROFILE_SNAPSHOT:
        case PROTO_MSG_PROFILE_DELTA:
                return proto_decode_profile(m, &u.profile);
        case PROTO_MSG_MAPPINGS:
                return proto_decode_mappings(m, &u.mappings);
        case PROTO_MSG_EVENT:
                return proto_decode_event(m, &u.event);
        case PROTO_MSG_GC_RESULT:
                return proto_decode_gc_result(m, &u.gc);
        case PROTO_MSG_SCAVENGE_RESULT:
                return proto_decode_scavenge_result(m, &u.scvg);
        case PROTO_MSG_STATUS_REPLY:
                return proto_decode_status_reply(m, &u.status);
        default:
                return proto_decode_request(m, &u.request);
        }
}

static void peer_drain(struct peer *p) {
        uint8_t buf[65536];
        ssize_t n;
        int k;

        while ((n = read(p->fd, buf, sizeof buf)) > 0) {
                k = proto_reader_feed(p->replies, buf, (size_t) n);
                while (k >= 0 && (k = proto_reader_next(p->replies, &p->msg)) > 0) {
                        if (trace)
                                fprintf(stderr, "fuzz-memd: connection %c got %s id %" PRIu64 "\n",
                                        p->name, proto_msg_type_name(p->msg.type), p->msg.id);
                        k = decode_typed(&p->msg);
                        if (k < 0)
                                die("memd sent a %s its own decoder refuses: %s",
                                    proto_msg_type_name(p->msg.type), strerror(-k));
                }
                if (k < 0)
                        die("memd sent bytes its own reader refuses: %s", strerror(-k));
        }
        if (n < 0 && errno != EAGAIN)
                die("reading what memd sent: %s", strerror(errno));
}

static pid_t pid_of(unsigned bits) {
        switch ((enum fuzz_pid) (bits & 3)) {
        case FUZZ_PID_SELF:
                return getpid();
        case FUZZ_PID_INIT:
                return 1;
        case FUZZ_PID_ZERO:
                return 0;
        case FUZZ_PID_GONE:
                break;
        }
        return FUZZ_PID_GONE_VALUE;
}

static void peer_open(struct peer *p, unsigned bits) {
        int sv[2];

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
                die("socketpair: %s", strerror(errno));
        p->c = conn_new(&server, sv[0], pid_of(bits), bits & 4 ? FUZZ_UID_OTHER : 0);
        if (!p->c)
                die("conn_new failed");
        p->fd = sv[1];
        if (proto_reader_new(&p->replies) < 0)
                die("proto_reader_new failed");
        proto_msg_init(&p->msg);
}

static void peer_close(struct peer *p) {
        peer_drain(p);
        proto_msg_done(&p->msg);
        proto_reader_free(p->replies);
        close(p->fd);
}

/* The descriptors open now, below FD_SCAN: memd's (sockets, pidfds) must
 * all be gone after an input.  Only those are checked: libFuzzer's own
 * threads open files (corpus, stats) at any time. */
#define FD_SCAN 4096
/* Calls fn for every open descriptor below FD_SCAN but the directory's own. */
static void fds_each(void (*fn)(int fd, void *ctx), void *ctx) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;

        if (!d)
                die("opendir /proc/self/fd: %s", strerror(errno));
        while ((e = readdir(d))) {
                int fd = atoi(e->d_name);
                if (e->d_name[0] != '.' && fd != dirfd(d) && fd < FD_SCAN)
                        fn(fd, ctx);
        }
        closedir(d);
}

static void fd_mark(int fd, void *ctx) {
        ((bool *) ctx)[fd] = true;
}

static void fd_check(int fd, void *ctx) {
        char link[64], target[256];
        ssize_t k;

        if (((const bool *) ctx)[fd])
                return;
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        k = readlink(link, target, sizeof(target) - 1);
        if (k <= 0)
                return;
        target[k] = 0;
        if (!strncmp(target, "socket:", 7) || strstr(target, "pidfd"))
                die("file descriptor %d leaks: %s", fd, target);
}

static void fds_open(bool open_fds[FD_SCAN]) {
        memset(open_fds, 0, FD_SCAN * sizeof(bool));
        fds_each(fd_mark, open_fds);
}

static void fds_check(const bool before[FD_SCAN]) {
        fds_each(fd_check, (void *) before);
}

/* (b) Each chunk to its connection's conn_input(), as conn_io() would after
 * a read; then the peers hang up, and what is left is torn down as
 * server_stop() does at exit. */
static void dispatch_pass(const struct plan *plan) {
        static bool fds_before[FD_SCAN];
        struct peer peers[2];
        int r;

        fds_open(fds_before);
        peers[0].name = 'A';
        peers[1].name = 'B';
        peer_open(&peers[0], plan->conn_bits[0]);
        peer_open(&peers[1], plan->conn_bits[1]);
        for (int i = 0; i < FUZZ_CHUNKS; i++) {
                struct peer *p = &peers[plan->chunks[i].to];

                /* An agent's reattach closes the older connection of its pid. */
                if (p->c && !conn_listed(p->c))
                        p->c = NULL;
                if (!p->c || plan->chunks[i].len == 0)
                        continue;
                r = conn_input(p->c, plan->chunks[i].data, plan->chunks[i].len);
                if (r < 0) {
                        conn_free(p->c);
                        p->c = NULL;
                }
                peer_drain(&peers[0]);
                peer_drain(&peers[1]);
        }

        /* The peers hang up: one turn of the loop lets conn_io() flush what
         * is pending, read the EOF and close, as it does in memd. */
        shutdown(peers[0].fd, SHUT_WR);
        shutdown(peers[1].fd, SHUT_WR);
        ev_run(server.loop, EVRUN_NOWAIT);
        if (server.conns)
                die("a connection outlived its peer's EOF");

        server_stop(&server);
        if (server.conns || server.processes || server.n_processes)
                die("server_stop left %s", server.conns ? "connections" : "processes");
        peer_close(&peers[0]);
        peer_close(&peers[1]);

        fds_check(fds_before);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void) argc;
        (void) argv;
        /* A peer that vanished mid-write must not kill the run (main.c does the same). */
        signal(SIGPIPE, SIG_IGN);
        log_setup(LOG_TARGET_STDERR);
        trace = getenv("FUZZ_MEMD_TRACE") != NULL;
        server.loop = ev_default_loop(0);
        if (!server.loop)
                die("cannot initialize libev");
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct plan plan;

        plan_read(data, size, &plan);
        reader_pass(&plan);
        dispatch_pass(&plan);
        return 0;
}
