/* test-agent.c - the agent thread against a fake memd in the test: HELLO, the snapshot, deltas, events, requests, reconnects, a socket that appears late, an fd closed behind its back. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "proto.h"
#include "unit.h"

/* ---- fixtures: globals and the other modules' functions ------------------ */

struct memd_config memd_config;
enum alloc_kind memd_alloc_kind;
int64_t memd_start_ns;
__thread struct thread_state memd_thread;

/* The sample table the agent reads, changed by the tests under a lock. */
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct profile_record table[8];
static size_t table_n;

int bucket_snapshot(struct profile_record **ret_records, size_t *ret_n, size_t *ret_map_len) {
        size_t len = sizeof(table);
        struct profile_record *out = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        if (out == MAP_FAILED)
                return -ENOMEM;
        pthread_mutex_lock(&table_lock);
        memcpy(out, table, sizeof(table));
        *ret_n = table_n;
        pthread_mutex_unlock(&table_lock);
        *ret_records = out;
        *ret_map_len = len;
        return 0;
}

static void table_set(size_t i, uint64_t allocs, uint64_t bytes, uint64_t frees) {
        pthread_mutex_lock(&table_lock);
        table[i].depth = 2;
        table[i].pcs[0] = 0x1000 + i;
        table[i].pcs[1] = 0x2000;
        table[i].alloc_count = allocs;
        table[i].alloc_bytes = bytes;
        table[i].free_count = frees;
        table[i].free_bytes = frees ? bytes / allocs * frees : 0;
        table[i].alloc_objects_est = (double) allocs * 2;
        table[i].alloc_bytes_est = (double) bytes * 2;
        table[i].free_objects_est = (double) frees * 2;
        table[i].free_bytes_est = (double) table[i].free_bytes * 2;
        if (i + 1 > table_n)
                table_n = i + 1;
        pthread_mutex_unlock(&table_lock);
}

#define FAKE_HEAP_ALLOC 777777u

int stats_read(struct memd_memstats *s) {
        memset(s, 0, sizeof(*s));
        s->HeapAlloc = s->Alloc = FAKE_HEAP_ALLOC;
        s->RSS = 1u << 20;
        return 0;
}

int stats_read_file(const char *path, char **ret_buf, size_t *ret_len, size_t *ret_cap) {
        size_t cap = 1u << 20, len = 0;
        char *buf;
        ssize_t n;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        buf = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (buf == MAP_FAILED) {
                close(fd);
                return -ENOMEM;
        }
        while (len < cap - 1 && (n = read(fd, buf + len, cap - 1 - len)) > 0)
                len += (size_t) n;
        close(fd);
        buf[len] = 0;
        *ret_buf = buf;
        *ret_len = len;
        *ret_cap = cap;
        return 0;
}

/* The event ring the agent drains: the tests push events into it. */
static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static struct reclaim_event ring[RECLAIM_EVENTS];
static uint64_t ring_seq;

static void push_event(uint32_t kind, const char *text) {
        pthread_mutex_lock(&ev_lock);
        struct reclaim_event *e = &ring[++ring_seq % RECLAIM_EVENTS];
        memset(e, 0, sizeof(*e));
        e->seq = ring_seq;
        e->kind = kind;
        e->num = ring_seq;
        e->time_ns = now_ns(CLOCK_REALTIME);
        e->released = 123 << 20;
        snprintf(e->text, sizeof(e->text), "%s", text);
        pthread_mutex_unlock(&ev_lock);
}

size_t reclaim_events_since(uint64_t after, struct reclaim_event *out, size_t max, uint64_t *ret_dropped) {
        size_t n = 0;

        pthread_mutex_lock(&ev_lock);
        for (uint64_t q = after + 1; q <= ring_seq && n < max; q++)
                out[n++] = ring[q % RECLAIM_EVENTS];
        pthread_mutex_unlock(&ev_lock);
        if (ret_dropped)
                *ret_dropped = 0;
        return n;
}

uint64_t reclaim_events_last(void) {
        return ring_seq;
}

/* reclaim.c's own (its guard handling is tested in test-reclaim.c): here
 * it only has to reach the fixture below. */
size_t reclaim_run(bool forced, bool gc_cycle, bool scavenge, uint64_t *ret_released, struct reclaim_report *rep);
size_t reclaim_run_unguarded(bool forced, bool gc_cycle, bool scavenge, uint64_t *ret_released,
                             struct reclaim_report *rep) {
        uint32_t g = memd_thread.guard;
        size_t freed;

        memd_thread.guard = 0;
        freed = reclaim_run(forced, gc_cycle, scavenge, ret_released, rep);
        memd_thread.guard = g;
        return freed;
}

void reclaim_wait_idle(unsigned ms) {
        (void) ms;
}

/* A cycle: what the agent reports is what this returns; the guard must be
 * down while it runs (the application's reclaimers free sampled blocks). */
static _Atomic int cycles, cycles_guarded, cycles_auto, cycles_no_gc;
size_t reclaim_run(bool forced, bool gc_cycle, bool scavenge, uint64_t *ret_released, struct reclaim_report *rep) {
        cycles++;
        if (memd_thread.guard)
                cycles_guarded++;
        if (!forced)
                cycles_auto++;
        if (!gc_cycle)
                cycles_no_gc++;
        memset(rep, 0, sizeof(*rep));
        if (gc_cycle) {
                rep->has_gc = true;
                rep->gc.kind = RECLAIM_EVENT_GC;
                rep->gc.forced = forced;
                rep->gc.heap_before = 300 << 20;
                rep->gc.heap_live = 100 << 20;
                snprintf(rep->gc.text, sizeof(rep->gc.text), "gc 1 @1.000s 0%%: fake%s", forced ? " (forced)" : "");
        }
        if (scavenge) {
                rep->has_scvg = true;
                rep->scvg.kind = RECLAIM_EVENT_SCVG;
                snprintf(rep->scvg.text, sizeof(rep->scvg.text), "%s: 200 MB released\n%s: inuse: 100",
                         forced ? "scvg-1" : "scvg 0", forced ? "scvg-1" : "scvg 0");
        }
        if (ret_released)
                *ret_released = 200 << 20;
        return 200 << 20;
}

static _Atomic uint64_t rate_now = 524288, limit_now;
static _Atomic int gcpercent_now = -1;
int reclaim_set_gcpercent(int percent) {
        return atomic_exchange(&gcpercent_now, percent);
}
uint64_t memd_set_profile_rate(uint64_t rate_bytes) {
        return atomic_exchange(&rate_now, rate_bytes);
}

uint64_t memd_set_memory_limit(uint64_t limit_bytes) {
        return atomic_exchange(&limit_now, limit_bytes);
}

/* ---- a fake memd ------------------------------------------------------------ */

static char dir[64], sock_path[108];

static int listen_at(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ck_assert_int_ge(fd, 0);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        ck_assert_int_eq(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(fd, 8), 0);
        return fd;
}

static int accept_within(int lfd, int ms) {
        struct pollfd p = { lfd, POLLIN, 0 };

        if (poll(&p, 1, ms) != 1)
                return -1;
        return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

struct peer {
        int fd;
        struct proto_reader *r;
        struct proto_msg m;
};

static void peer_init(struct peer *p, int fd) {
        p->fd = fd;
        ck_assert_int_eq(proto_reader_new(&p->r), 0);
        proto_msg_init(&p->m);
}

static void peer_done(struct peer *p) {
        proto_msg_done(&p->m);
        proto_reader_free(p->r);
        if (p->fd >= 0)
                close(p->fd);
        p->fd = -1;
}

/* Next message within ms into p->m: 1, or 0 on timeout/EOF. */
static int peer_next(struct peer *p, int ms) {
        int64_t end = now_ns(CLOCK_MONOTONIC) + (int64_t) ms * 1000000;
        char buf[65536];

        for (;;) {
                int r = proto_reader_next(p->r, &p->m);
                ck_assert_int_ge(r, 0);
                if (r > 0)
                        return 1;
                int64_t left = (end - now_ns(CLOCK_MONOTONIC)) / 1000000;
                struct pollfd pf = { p->fd, POLLIN, 0 };
                if (left <= 0 || poll(&pf, 1, (int) left) != 1)
                        return 0;
                ssize_t n = read(p->fd, buf, sizeof(buf));
                if (n <= 0)
                        return 0;
                ck_assert_int_eq(proto_reader_feed(p->r, buf, (size_t) n), 0);
        }
}

/* Waits for a message of type (skipping MEMSTATS/MAPPINGS/others) within ms. */
static bool peer_expect(struct peer *p, uint32_t type, int ms) {
        int64_t end = now_ns(CLOCK_MONOTONIC) + (int64_t) ms * 1000000;

        while (now_ns(CLOCK_MONOTONIC) < end)
                if (peer_next(p, (int) ((end - now_ns(CLOCK_MONOTONIC)) / 1000000) + 1) && p->m.type == type)
                        return true;
        return false;
}

static void peer_send(struct peer *p, msgpack_sbuffer *sb) {
        ck_assert_int_eq(write(p->fd, sb->data, sb->size), (ssize_t) sb->size);
        msgpack_sbuffer_destroy(sb);
}

#define PACKER(sb, pk)          \
        msgpack_sbuffer sb;     \
        msgpack_packer pk;      \
        msgpack_sbuffer_init(&sb); \
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write)

/* Accepts the agent, checks its HELLO, answers HELLO_OK. */
static void handshake(int lfd, struct peer *p) {
        struct proto_hello h;
        struct proto_hello_ok ok = { .version = PROTO_VERSION };
        int fd = accept_within(lfd, 3000);

        ck_assert_msg(fd >= 0, "the agent did not connect within 3 s");
        peer_init(p, fd);
        ck_assert(peer_next(p, 2000));
        ck_assert_uint_eq(p->m.type, PROTO_MSG_HELLO);
        ck_assert_int_eq(proto_decode_hello(&p->m, &h), 0);
        ck_assert_uint_eq(h.role, PROTO_ROLE_AGENT);
        ck_assert_uint_eq(h.version, PROTO_VERSION);
        ck_assert_uint_eq(h.pid, (uint32_t) getpid());
        ck_assert_uint_eq(h.rate_bytes, 524288);
        ck_assert(strncmp(h.software, "libmemd ", 8) == 0);
        PACKER(sb, pk);
        ck_assert_int_eq(proto_pack_hello_ok(&pk, p->m.id, &ok), 0);
        peer_send(p, &sb);
}

/* Reads the snapshot that follows HELLO_OK; returns its generation. */
static uint64_t expect_snapshot(struct peer *p, size_t want_buckets) {
        struct proto_profile h;
        bool stats = false, maps = false;

        for (;;) {
                ck_assert_msg(peer_next(p, 3000), "no snapshot");
                if (p->m.type == PROTO_MSG_MEMSTATS) {
                        struct proto_memstats *ms = calloc(1, sizeof(*ms));
                        ck_assert_int_eq(proto_decode_memstats(&p->m, ms), 0);
                        ck_assert_uint_eq(ms->stats.HeapAlloc, FAKE_HEAP_ALLOC);
                        free(ms);
                        stats = true;
                } else if (p->m.type == PROTO_MSG_MAPPINGS) {
                        struct proto_mappings pm;
                        ck_assert_int_eq(proto_decode_mappings(&p->m, &pm), 0);
                        ck_assert_uint_gt(pm.mappings.n, 0); /* this test binary at least */
                        maps = true;
                } else if (p->m.type == PROTO_MSG_PROFILE_SNAPSHOT)
                        break;
        }
        ck_assert(stats && maps); /* both before the table */
        ck_assert_int_eq(proto_decode_profile(&p->m, &h), 0);
        ck_assert_uint_eq(h.part, 0);
        ck_assert(h.final);
        ck_assert_uint_eq(h.buckets.n, want_buckets);
        for (uint32_t i = 0; i < h.buckets.n; i++) {
                struct profile_record r;
                ck_assert_int_eq(proto_decode_bucket(&h.buckets.items[i], &r), 0);
                ck_assert_uint_eq(r.alloc_count, table[i].alloc_count);
                ck_assert_uint_eq(r.pcs[0], table[i].pcs[0]);
        }
        return h.generation;
}

static void setup(void) {
        memset(&memd_config, 0, sizeof(memd_config));
        memd_config.profile_rate = 524288;
        memd_config.last_rate = 524288;
        snprintf(dir, sizeof(dir), "/tmp/test-agent.XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(sock_path, sizeof(sock_path), "%s/memd.sock", dir);
        snprintf(memd_config.socket_path, sizeof(memd_config.socket_path), "%s", sock_path);
        table_n = 0;
        table_set(0, 10, 1000, 0);
        table_set(1, 4, 4096, 1);
}

static void teardown(void) {
        unlink(sock_path);
        rmdir(dir);
}

/* ---- tests ---------------------------------------------------------------- */

START_TEST(test_snapshot_then_deltas) {
        int lfd = listen_at(sock_path);
        struct peer p;
        struct proto_profile h;
        struct profile_record r;

        agent_start();
        handshake(lfd, &p);
        expect_snapshot(&p, 2);

        /* Bucket 1 grows, bucket 2 appears, bucket 0 stays: the next delta
         * carries exactly the increments of 1 and 2. */
        table_set(1, 6, 6144, 3);
        table_set(2, 1, 50, 0);
        ck_assert_msg(peer_expect(&p, PROTO_MSG_PROFILE_DELTA, 3000), "no delta within 3 s");
        ck_assert_int_eq(proto_decode_profile(&p.m, &h), 0);
        ck_assert_uint_eq(h.buckets.n, 2);
        ck_assert_int_eq(proto_decode_bucket(&h.buckets.items[0], &r), 0);
        ck_assert_uint_eq(r.pcs[0], 0x1001);
        ck_assert_uint_eq(r.alloc_count, 2);
        ck_assert_uint_eq(r.alloc_bytes, 2048);
        ck_assert_uint_eq(r.free_count, 2);
        ck_assert(r.alloc_objects_est == 4.0);
        ck_assert_int_eq(proto_decode_bucket(&h.buckets.items[1], &r), 0);
        ck_assert_uint_eq(r.pcs[0], 0x1002);
        ck_assert_uint_eq(r.alloc_count, 1);
        ck_assert_uint_eq(h.rate_bytes, 524288);

        /* Nothing changes: the next report has MemStats and no delta. */
        ck_assert(peer_expect(&p, PROTO_MSG_MEMSTATS, 3000));
        ck_assert(!peer_expect(&p, PROTO_MSG_PROFILE_DELTA, 1500));
        peer_done(&p);
        close(lfd);
}
END_TEST

START_TEST(test_requests) {
        int lfd = listen_at(sock_path);
        struct peer p;
        struct proto_request q = { .value = 1 };
        struct proto_gc_result g;
        struct proto_scavenge_result s;
        struct proto_ok ok;
        struct proto_error e;

        agent_start();
        handshake(lfd, &p);
        expect_snapshot(&p, 2);

        PACKER(sb1, pk1);
        ck_assert_int_eq(proto_pack_request(&pk1, PROTO_MSG_GC_REQUEST, 71, &q), 0);
        peer_send(&p, &sb1);
        ck_assert(peer_expect(&p, PROTO_MSG_GC_RESULT, 3000));
        ck_assert_uint_eq(p.m.id, 71);
        ck_assert_int_eq(proto_decode_gc_result(&p.m, &g), 0);
        ck_assert_uint_eq(g.freed_bytes, 200 << 20);
        ck_assert_uint_eq(g.heap_before_bytes, 300 << 20);
        ck_assert_uint_eq(g.heap_after_bytes, 100 << 20);
        ck_assert_str_eq(g.text, "gc 1 @1.000s 0%: fake (forced)");
        ck_assert_int_eq(cycles, 1);
        ck_assert_int_eq(cycles_guarded, 0);

        PACKER(sb2, pk2);
        ck_assert_int_eq(proto_pack_request(&pk2, PROTO_MSG_SCAVENGE_REQUEST, 72, &q), 0);
        peer_send(&p, &sb2);
        ck_assert(peer_expect(&p, PROTO_MSG_SCAVENGE_RESULT, 3000));
        ck_assert_uint_eq(p.m.id, 72);
        ck_assert_int_eq(proto_decode_scavenge_result(&p.m, &s), 0);
        ck_assert_uint_eq(s.released_bytes, 200 << 20);
        ck_assert_uint_gt(s.rss_before_bytes, 0);
        ck_assert_str_eq(s.text, "gc 1 @1.000s 0%: fake (forced)\nscvg-1: 200 MB released\nscvg-1: inuse: 100");
        ck_assert_int_eq(cycles_auto, 0);

        /* memd's idle policy: automatic, the trim alone (no reclaimer, no gc line). */
        PACKER(sb2b, pk2b);
        struct proto_request qa = { .automatic = true, .scavenge_only = true };
        ck_assert_int_eq(proto_pack_request(&pk2b, PROTO_MSG_SCAVENGE_REQUEST, 76, &qa), 0);
        peer_send(&p, &sb2b);
        ck_assert(peer_expect(&p, PROTO_MSG_SCAVENGE_RESULT, 3000));
        ck_assert_uint_eq(p.m.id, 76);
        ck_assert_int_eq(proto_decode_scavenge_result(&p.m, &s), 0);
        ck_assert_str_eq(s.text, "scvg 0: 200 MB released\nscvg 0: inuse: 100");
        ck_assert_int_eq(cycles_auto, 1);
        ck_assert_int_eq(cycles_no_gc, 1);

        PACKER(sb3, pk3);
        q.value = 4096;
        ck_assert_int_eq(proto_pack_request(&pk3, PROTO_MSG_SET_RATE, 73, &q), 0);
        peer_send(&p, &sb3);
        ck_assert(peer_expect(&p, PROTO_MSG_OK, 3000));
        ck_assert_uint_eq(p.m.id, 73);
        ck_assert_int_eq(proto_decode_ok(&p.m, &ok), 0);
        ck_assert_uint_eq(ok.previous, 524288);
        ck_assert_uint_eq(rate_now, 4096);

        PACKER(sb4, pk4);
        q.value = 64 << 20;
        ck_assert_int_eq(proto_pack_request(&pk4, PROTO_MSG_SET_MEMORY_LIMIT, 74, &q), 0);
        peer_send(&p, &sb4);
        ck_assert(peer_expect(&p, PROTO_MSG_OK, 3000));
        ck_assert_int_eq(proto_decode_ok(&p.m, &ok), 0);
        ck_assert_uint_eq(ok.previous, 0);
        ck_assert_uint_eq(limit_now, 64 << 20);

        /* memd's policy GCPercent. */
        PACKER(sb4b, pk4b);
        struct proto_request qg = { .gc_percent = 150 };
        ck_assert_int_eq(proto_pack_request(&pk4b, PROTO_MSG_SET_GC_PERCENT, 77, &qg), 0);
        peer_send(&p, &sb4b);
        ck_assert(peer_expect(&p, PROTO_MSG_OK, 3000));
        ck_assert_uint_eq(p.m.id, 77);
        ck_assert_int_eq(gcpercent_now, 150);

        /* A request the agent does not answer: an error, the connection stays. */
        PACKER(sb5, pk5);
        ck_assert_int_eq(proto_pack_request(&pk5, PROTO_MSG_STATUS_REQUEST, 75, &q), 0);
        peer_send(&p, &sb5);
        ck_assert(peer_expect(&p, PROTO_MSG_ERROR, 3000));
        ck_assert_uint_eq(p.m.id, 75);
        ck_assert_int_eq(proto_decode_error(&p.m, &e), 0);
        ck_assert_uint_eq(e.code, EOPNOTSUPP);

        /* PROFILE_REQUEST: mappings, then the snapshot, with its id. */
        PACKER(sb6, pk6);
        ck_assert_int_eq(proto_pack_request(&pk6, PROTO_MSG_PROFILE_REQUEST, 76, &q), 0);
        peer_send(&p, &sb6);
        ck_assert(peer_expect(&p, PROTO_MSG_MAPPINGS, 3000));
        ck_assert_uint_eq(p.m.id, 76);
        ck_assert(peer_expect(&p, PROTO_MSG_PROFILE_SNAPSHOT, 3000));
        ck_assert_uint_eq(p.m.id, 76);
        peer_done(&p);
        close(lfd);
}
END_TEST

/* An event goes out at once (the cycle wakes the agent), not at the next
 * tick; events from before the connection go out with the snapshot. */
START_TEST(test_events) {
        int lfd = listen_at(sock_path);
        struct peer p;
        struct proto_event e;

        push_event(RECLAIM_EVENT_GC, "gc 1 @0.100s 0%: before connect");
        agent_start();
        handshake(lfd, &p);
        ck_assert(peer_expect(&p, PROTO_MSG_EVENT, 3000));
        ck_assert_int_eq(proto_decode_event(&p.m, &e), 0);
        ck_assert_str_eq(e.text, "gc 1 @0.100s 0%: before connect");
        ck_assert_uint_eq(p.m.id, 0);

        /* Wait for one report so the next tick is a second away. */
        ck_assert(peer_expect(&p, PROTO_MSG_MEMSTATS, 3000));
        int64_t t0 = now_ns(CLOCK_MONOTONIC);
        push_event(RECLAIM_EVENT_SCVG, "scvg 0: 123 MB released\nscvg 0: inuse: 1");
        agent_notify();
        ck_assert(peer_expect(&p, PROTO_MSG_EVENT, 3000));
        int64_t ms = (now_ns(CLOCK_MONOTONIC) - t0) / 1000000;
        ck_assert_int_eq(proto_decode_event(&p.m, &e), 0);
        ck_assert_uint_eq(e.kind, PROTO_EVENT_SCVG);
        ck_assert_uint_eq(e.released_bytes, 123 << 20);
        ck_assert_str_eq(e.text, "scvg 0: 123 MB released\nscvg 0: inuse: 1");
        /* Generous: the point is "not at the next tick" (up to 1 s away). */
        ck_assert_msg(ms < 900, "the event took %lld ms", (long long) ms);
        peer_done(&p);
        close(lfd);
}
END_TEST

/* memd goes away and comes back: the agent reconnects and sends the whole
 * table again, under a new generation; events already sent are not resent. */
START_TEST(test_reconnect) {
        int lfd = listen_at(sock_path);
        struct peer p;
        uint64_t g1, g2;

        push_event(RECLAIM_EVENT_GC, "gc 1 @0.100s 0%: once");
        agent_start();
        handshake(lfd, &p);
        g1 = expect_snapshot(&p, 2);
        ck_assert(peer_expect(&p, PROTO_MSG_EVENT, 3000));
        peer_done(&p);
        close(lfd);
        unlink(sock_path);

        lfd = listen_at(sock_path);
        table_set(2, 1, 1, 0);
        handshake(lfd, &p);
        g2 = expect_snapshot(&p, 3);
        ck_assert_uint_gt(g2, g1);
        ck_assert(!peer_expect(&p, PROTO_MSG_EVENT, 1500));
        peer_done(&p);
        close(lfd);
}
END_TEST

/* No memd at start: the agent waits quietly, and connects soon after the
 * socket appears (inotify on its directory). */
START_TEST(test_socket_appears) {
        struct peer p;
        int lfd;

        agent_start();
        usleep(1500 * 1000); /* backoff has grown to its cap by now */
        int64_t t0 = now_ns(CLOCK_MONOTONIC);
        lfd = listen_at(sock_path);
        handshake(lfd, &p);
        int64_t ms = (now_ns(CLOCK_MONOTONIC) - t0) / 1000000;
        ck_assert_msg(ms < 1500, "connected %lld ms after the socket appeared", (long long) ms);
        expect_snapshot(&p, 2);
        peer_done(&p);
        close(lfd);
}
END_TEST

/* The application closes the agent's socket and opens a file that takes
 * its number: the agent must not write into the file, and reconnects. */
START_TEST(test_fd_taken_over) {
        int lfd = listen_at(sock_path);
        struct peer p, p2;
        char path[128], link[64], target[128];
        struct stat st;
        int sock_fd = -1, file_fd;

        agent_start();
        handshake(lfd, &p);
        expect_snapshot(&p, 2);
        for (int fd = 3; fd < 1024 && sock_fd < 0; fd++) {
                ssize_t n;
                snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
                n = readlink(link, target, sizeof(target) - 1);
                if (n > 0 && fd >= 512 && !strncmp(target, "socket:", 7)) {
                        target[n] = 0;
                        sock_fd = fd;
                }
        }
        ck_assert_msg(sock_fd >= 512, "the agent's socket is not at fd >= 512");
        snprintf(path, sizeof(path), "%s/app-file", dir);
        file_fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ck_assert_int_ge(file_fd, 0);
        ck_assert_int_eq(dup2(file_fd, sock_fd), sock_fd); /* closes the socket, the number is the file's */
        close(file_fd);

        handshake(lfd, &p2); /* it reconnects */
        expect_snapshot(&p2, 2);
        usleep(1200 * 1000);  /* a tick passes */
        ck_assert_int_eq(fstat(sock_fd, &st), 0);
        ck_assert_int_eq(st.st_size, 0); /* nothing written into the application's file */
        close(sock_fd);
        unlink(path);
        peer_done(&p);
        peer_done(&p2);
        close(lfd);
}
END_TEST

/* MEMD_SOCKET=off: no thread, nothing connects. */
START_TEST(test_off) {
        int lfd = listen_at(sock_path);

        snprintf(memd_config.socket_path, sizeof(memd_config.socket_path), "off");
        agent_start();
        ck_assert_int_lt(accept_within(lfd, 1200), 0);
        close(lfd);
}
END_TEST

static Suite *agent_suite(void) {
        Suite *s = suite_create("agent");
        TCase *tc = tcase_create("agent");

        /* Fork mode: each test has its own agent thread and state. */
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_snapshot_then_deltas);
        tcase_add_test(tc, test_requests);
        tcase_add_test(tc, test_events);
        tcase_add_test(tc, test_reconnect);
        tcase_add_test(tc, test_socket_appears);
        tcase_add_test(tc, test_fd_taken_over);
        tcase_add_test(tc, test_off);
        tcase_set_timeout(tc, 30);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_main(agent_suite(), "test-agent", true);
}
