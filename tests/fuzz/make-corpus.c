/* make-corpus.c - writes fuzz-memd's seed corpus, one file per scenario, with the real encoders: make-corpus OUTDIR NAME... writes OUTDIR/seed-NAME for each (meson lists them all). */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-input.h"
#include "proto.h"

__attribute__((noreturn, format(printf, 1, 2))) static void die(const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        fprintf(stderr, "make-corpus: ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
        exit(1);
}

#define CK(x)                                           \
        do {                                            \
                if ((x) < 0)                            \
                        die("%s failed", #x);           \
        } while (0)

/* ---- one seed: two connections, up to FUZZ_CHUNKS pieces ------------------ */

static struct {
        uint8_t conn[2];        /* fuzz_conn_bits() of A and B */
        uint8_t to_b;           /* chunks for B */
        msgpack_sbuffer sb[FUZZ_CHUNKS];
        msgpack_packer pk[FUZZ_CHUNKS];
        bool own_cuts;          /* cuts[] set by the scenario, not at chunk ends */
        uint16_t cuts[FUZZ_CHUNKS - 1];
        size_t drop;            /* bytes cut off the end: a truncated frame */
} S;

enum { A, B };

static void seed_begin(uint8_t a, uint8_t b) {
        for (int i = 0; i < FUZZ_CHUNKS; i++) {
                msgpack_sbuffer_destroy(&S.sb[i]);
                msgpack_sbuffer_init(&S.sb[i]);
                msgpack_packer_init(&S.pk[i], &S.sb[i], msgpack_sbuffer_write);
        }
        S.conn[A] = a;
        S.conn[B] = b;
        S.to_b = 0;
        S.own_cuts = false;
        S.drop = 0;
}

/* The packer of chunk k, which goes to connection `to`. */
static msgpack_packer *chunk(unsigned k, unsigned to) {
        if (to == B)
                S.to_b |= (uint8_t) (1u << k);
        return &S.pk[k];
}

static void seed_write(const char *dir, const char *name) {
        uint8_t hdr[FUZZ_HEADER_BYTES];
        uint16_t cuts[FUZZ_CHUNKS - 1];
        char path[4096];
        size_t total = 0;
        FILE *f;

        for (int i = 0; i < FUZZ_CHUNKS; i++) {
                if (i > 0)
                        cuts[i - 1] = (uint16_t) total;
                total += S.sb[i].size;
        }
        if (total > UINT16_MAX)
                die("seed %s: %zu bytes of payload, more than the header's cuts can name", name, total);
        if (S.drop > total)
                die("seed %s: drops more than it has", name);
        fuzz_header_pack(hdr, S.conn[A], S.conn[B], S.to_b, S.own_cuts ? S.cuts : cuts);
        snprintf(path, sizeof path, "%s/seed-%s", dir, name);
        f = fopen(path, "wb");
        if (!f)
                die("%s: %s", path, strerror(errno));
        fwrite(hdr, 1, sizeof hdr, f);
        total -= S.drop;
        for (int i = 0; i < FUZZ_CHUNKS && total > 0; i++) {
                size_t n = S.sb[i].size < total ? S.sb[i].size : total;
                fwrite(S.sb[i].data, 1, n, f);
                total -= n;
        }
        if (fclose(f) != 0)
                die("%s: %s", path, strerror(errno));
}

/* ---- messages ------------------------------------------------------------ */

static void hello(msgpack_packer *pk, uint32_t role) {
        struct proto_hello h = { .version = PROTO_VERSION, .role = role };

        CK(proto_pack_hello(pk, 1, &h));
}

static void memstats(msgpack_packer *pk) {
        static struct memd_memstats s;

        s.HeapAlloc = s.Alloc = 1000;
        s.HeapInuse = 4096;
        s.HeapSys = 8192;
        s.Mallocs = 10;
        s.Frees = 4;
        s.HeapObjects = 6;
        s.NumGC = 2;
        s.PauseNs[0] = 100;
        s.PauseNs[1] = 200;
        s.GCCPUFraction = 0.5;
        s.RSS = 1 << 20;
        s.Threads = 1;
        CK(proto_pack_memstats(pk, 0, 0, 1700000000000000000, &s, true));
}

static void profile(msgpack_packer *pk, uint32_t type, uint32_t n_buckets) {
        static struct profile_record recs[2];
        struct proto_profile h = { .generation = 1, .final = true, .rate_bytes = 524288, .time_ns = 1 };

        for (uint32_t i = 0; i < 2; i++) {
                recs[i] = (struct profile_record) {
                        .alloc_count = 3 + i, .alloc_bytes = 300, .free_count = 1, .free_bytes = 100,
                        .alloc_objects_est = 3.5, .alloc_bytes_est = 350.25, .free_objects_est = 1,
                        .free_bytes_est = 100, .depth = 2 + i,
                };
                for (uint32_t d = 0; d < recs[i].depth; d++)
                        recs[i].pcs[d] = 0x401000 + 0x10 * d + i;
        }
        CK(proto_pack_profile(pk, type, 0, &h, recs, n_buckets));
}

static void mappings(msgpack_packer *pk) {
        static const struct proto_mapping m[2] = {
                { .start = 0x400000, .limit = 0x401000, .offset = 0, .path = "/usr/bin/x",
                  .build_id = { 0xde, 0xad, 0xbe, 0xef }, .build_id_len = 4 },
                { .start = 0x7f0000000000, .limit = 0x7f0000100000, .offset = 0x1000, .path = "" },
        };

        CK(proto_pack_mappings(pk, 0, 0, m, 2));
}

static const struct proto_event gc_event = {
        .kind = PROTO_EVENT_GC, .time_ns = 2, .text = "gc 1 @0.1s 0%: 0.01 ms, 4->2->2 MB, 8 MB goal",
        .forced = true, .seq = 1, .duration_ns = 10000, .heap_before_bytes = 4 << 20,
        .heap_reclaimed_bytes = 2 << 20, .heap_live_bytes = 2 << 20, .goal_bytes = 8 << 20,
};

static void event_gc(msgpack_packer *pk) {
        CK(proto_pack_event(pk, 0, &gc_event));
}

static void event_scvg(msgpack_packer *pk) {
        struct proto_event scvg = {
                .kind = PROTO_EVENT_SCVG, .time_ns = 3, .text = "scvg-1: 1 MB released\nscvg-1: inuse: 2",
                .released_bytes = 1 << 20, .heap_inuse_bytes = 2 << 20, .heap_idle_bytes = 1,
                .heap_sys_bytes = 3 << 20,
        };

        CK(proto_pack_event(pk, 0, &scvg));
}

static void events(msgpack_packer *pk) {
        event_gc(pk);
        event_scvg(pk);
}

/* The replies an agent sends back to memd's forwarded requests. */
static void gc_result(msgpack_packer *pk) {
        struct proto_gc_result g = { .freed_bytes = 4096, .heap_before_bytes = 8192, .heap_after_bytes = 4096,
                                     .duration_ns = 5, .text = "gc 2 forced" };

        CK(proto_pack_gc_result(pk, 100, &g));
}

static void scavenge_result(msgpack_packer *pk) {
        struct proto_scavenge_result s = { .released_bytes = 4096, .rss_before_bytes = 1 << 20,
                                           .rss_after_bytes = 1 << 19, .text = "scvg-1: 0 MB" };

        CK(proto_pack_scavenge_result(pk, 101, &s));
}

static void ok_reply(msgpack_packer *pk) {
        CK(proto_pack_ok(pk, 102, 524288));
}

static void error_reply(msgpack_packer *pk) {
        CK(proto_pack_error(pk, 103, EOPNOTSUPP, "not supported"));
}

static void agent_replies(msgpack_packer *pk) {
        gc_result(pk);
        scavenge_result(pk);
        ok_reply(pk);
        error_reply(pk);
}

static void bye(msgpack_packer *pk) {
        CK(proto_pack_bye(pk, 0, "exiting"));
}

static void snapshot(msgpack_packer *pk) {
        profile(pk, PROTO_MSG_PROFILE_SNAPSHOT, 2);
}

static void delta(msgpack_packer *pk) {
        profile(pk, PROTO_MSG_PROFILE_DELTA, 2);
}

/* What only memd sends: HELLO_OK, STATUS_REPLY (two processes, stats and an event). */
static void hello_ok(msgpack_packer *pk) {
        struct proto_hello_ok h = { .version = PROTO_VERSION, .pid = 1, .uid = 0, .software = "memd 0.1.0" };

        CK(proto_pack_hello_ok(pk, 1, &h));
}

static void status_reply(msgpack_packer *pk) {
        static struct proto_process procs[2] = {
                { .pid = 1, .uid = 0, .comm = "init", .unit = "init.scope", .exe = "/sbin/init",
                  .attached_ns = 1, .stats_time_ns = 2, .limit_bytes = 3, .rate_bytes = 4,
                  .last_gc_ns = 5, .last_scvg_ns = 6, .has_stats = true, .events = &gc_event, .n_events = 1 },
                { .pid = 2, .uid = 1000, .comm = "x" },
        };

        CK(proto_pack_status_reply(pk, 2, procs, 2));
}

static void request(msgpack_packer *pk, uint32_t type, uint64_t id, uint32_t pid, uint64_t value) {
        struct proto_request q = { .pid = pid, .value = value };

        CK(proto_pack_request(pk, type, id, &q));
}

static void set_rate(msgpack_packer *pk) {
        request(pk, PROTO_MSG_SET_RATE, 6, 1, 4096);
}

static void set_memory_limit(msgpack_packer *pk) {
        request(pk, PROTO_MSG_SET_MEMORY_LIMIT, 7, 1, 1 << 30);
}

static void pk_str(msgpack_packer *pk, const char *s) {
        msgpack_pack_str(pk, strlen(s));
        msgpack_pack_str_body(pk, s, strlen(s));
}

/* { "t": type, "id": id, ...: the caller packs `extra` more entries. */
static void raw_begin(msgpack_packer *pk, uint32_t type, uint64_t id, size_t extra) {
        msgpack_pack_map(pk, 2 + extra);
        pk_str(pk, "t");
        msgpack_pack_uint32(pk, type);
        pk_str(pk, "id");
        msgpack_pack_uint64(pk, id);
}

/* STATUS_REQUEST whose pid is negative: a bad body from memctl. */
static void status_bad_pid(msgpack_packer *pk) {
        raw_begin(pk, PROTO_MSG_STATUS_REQUEST, 2, 1);
        pk_str(pk, "pid");
        msgpack_pack_int32(pk, -1);
}

/* ---- scenarios ---------------------------------------------------------- */

#define SELF_ROOT fuzz_conn_bits(FUZZ_PID_SELF, 0)
#define SELF_USER fuzz_conn_bits(FUZZ_PID_SELF, 1)
#define INIT_ROOT fuzz_conn_bits(FUZZ_PID_INIT, 0)

/* What an agent sends over a connection's life, split at message ends. */
static void scn_agent_session(void) {
        seed_begin(SELF_ROOT, SELF_ROOT);
        hello(chunk(0, A), PROTO_ROLE_AGENT);
        memstats(chunk(0, A));
        mappings(chunk(1, A));
        profile(chunk(1, A), PROTO_MSG_PROFILE_SNAPSHOT, 2);
        profile(chunk(2, A), PROTO_MSG_PROFILE_DELTA, 1);
        events(chunk(2, A));
        agent_replies(chunk(3, A));
        memstats(chunk(3, A));
        bye(chunk(3, A));
}

/* The same, but each cut inside a message: the scanner resumes. */
static void scn_agent_split_mid(void) {
        scn_agent_session();
        S.own_cuts = true;
        S.cuts[0] = 5;
        S.cuts[1] = (uint16_t) (S.sb[0].size + 7);
        S.cuts[2] = (uint16_t) (S.sb[0].size + S.sb[1].size + 3);
}

/* Byte by byte at the start: cuts 1, 2, 3. */
static void scn_bytewise(void) {
        scn_agent_session();
        S.own_cuts = true;
        S.cuts[0] = 1;
        S.cuts[1] = 2;
        S.cuts[2] = 3;
}

/* A frame cut short at the end of the stream. */
static void scn_truncated(void) {
        scn_agent_session();
        S.drop = S.sb[3].size - 3;
}

/* Every request memctl may send. */
static void scn_control_session(void) {
        seed_begin(SELF_ROOT, SELF_ROOT);
        hello(chunk(0, A), PROTO_ROLE_CONTROL);
        request(chunk(1, A), PROTO_MSG_STATUS_REQUEST, 2, 0, 0);
        request(chunk(1, A), PROTO_MSG_GC_REQUEST, 3, 1, 0);
        request(chunk(1, A), PROTO_MSG_SCAVENGE_REQUEST, 4, 1, 0);
        request(chunk(2, A), PROTO_MSG_PROFILE_REQUEST, 5, 1, 0);
        set_rate(chunk(2, A));
        set_memory_limit(chunk(2, A));
        request(chunk(3, A), PROTO_MSG_SUBSCRIBE, 8, 0, 0);
        request(chunk(3, A), PROTO_MSG_STATUS_REQUEST, 9, FUZZ_PID_GONE_VALUE, 0);
        CK(proto_pack_bye(chunk(3, A), 10, NULL));
}

/* An agent with stats on A; on B a memctl asking about all processes, then pid 1. */
static void agent_and_memctl(uint8_t agent, uint8_t memctl) {
        seed_begin(agent, memctl);
        hello(chunk(0, A), PROTO_ROLE_AGENT);
        memstats(chunk(0, A));
        hello(chunk(1, B), PROTO_ROLE_CONTROL);
        request(chunk(1, B), PROTO_MSG_STATUS_REQUEST, 2, 0, 0);
        request(chunk(1, B), PROTO_MSG_STATUS_REQUEST, 3, 1, 0);
}

/* The agent is pid 1, the memctl root: it sees it, before and after new stats. */
static void scn_agent_and_status(void) {
        agent_and_memctl(INIT_ROOT, SELF_ROOT);
        memstats(chunk(2, A));
        events(chunk(2, A));
        request(chunk(3, B), PROTO_MSG_STATUS_REQUEST, 4, 1, 0);
        request(chunk(3, B), PROTO_MSG_GC_REQUEST, 5, 1, 0);
}

/* A memctl of uid 1000 asking about root's process: EPERM. */
static void scn_status_other_user(void) {
        agent_and_memctl(INIT_ROOT, SELF_USER);
}

/* Two agents of one pid: the newer connection wins, the older is closed. */
static void scn_agent_reattach(void) {
        seed_begin(SELF_ROOT, SELF_ROOT);
        hello(chunk(0, A), PROTO_ROLE_AGENT);
        memstats(chunk(0, A));
        hello(chunk(1, B), PROTO_ROLE_AGENT);
        memstats(chunk(1, B));
        memstats(chunk(2, A));
        profile(chunk(3, B), PROTO_MSG_PROFILE_DELTA, 2);
}

/* Agents of two processes: the registry holds two entries. */
static void scn_two_agents(void) {
        seed_begin(INIT_ROOT, SELF_USER);
        hello(chunk(0, A), PROTO_ROLE_AGENT);
        hello(chunk(1, B), PROTO_ROLE_AGENT);
        memstats(chunk(2, A));
        memstats(chunk(3, B));
}

/* An agent whose pid pidfd_open() refuses (0), seen by a user memctl. */
static void scn_agent_no_pidfd(void) {
        agent_and_memctl(fuzz_conn_bits(FUZZ_PID_ZERO, 1), SELF_USER);
}

/* An agent whose process is gone before it attaches: ESRCH, closed. */
static void scn_agent_gone(void) {
        seed_begin(fuzz_conn_bits(FUZZ_PID_GONE, 0), SELF_ROOT);
        hello(chunk(0, A), PROTO_ROLE_AGENT);
        memstats(chunk(1, A));
}

static void scn_bad_version(void) {
        struct proto_hello h = { .version = PROTO_VERSION + 1, .role = PROTO_ROLE_AGENT };

        seed_begin(SELF_ROOT, SELF_ROOT);
        CK(proto_pack_hello(chunk(0, A), 1, &h));
        memstats(chunk(1, A));
}

static void scn_bad_role(void) {
        struct proto_hello h = { .version = PROTO_VERSION, .role = 3 };

        seed_begin(SELF_ROOT, SELF_ROOT);
        CK(proto_pack_hello(chunk(0, A), 1, &h));
}

/* HELLO with every optional field, claiming another pid (logged, not used). */
static void scn_hello_claims_pid(void) {
        struct proto_hello h = { .version = PROTO_VERSION, .role = PROTO_ROLE_AGENT, .pid = 12345,
                                 .comm = "prog", .software = "libmemd 0.1.0", .rate_bytes = 524288 };

        seed_begin(SELF_ROOT, SELF_ROOT);
        CK(proto_pack_hello(chunk(0, A), 1, &h));
        memstats(chunk(0, A));
}

static void scn_before_hello(void) {
        seed_begin(SELF_ROOT, SELF_ROOT);
        memstats(chunk(0, A));
        hello(chunk(1, A), PROTO_ROLE_AGENT);
}

static void scn_hello_twice(void) {
        seed_begin(SELF_ROOT, SELF_ROOT);
        hello(chunk(0, A), PROTO_ROLE_CONTROL);
        hello(chunk(0, A), PROTO_ROLE_CONTROL);
        request(chunk(1, A), PROTO_MSG_STATUS_REQUEST, 2, 0, 0);
}

/* Each role sending the other's messages: ERROR EPERM, the connection stays. */
static void scn_wrong_role(void) {
        seed_begin(SELF_ROOT, SELF_ROOT);
        hello(chunk(0, A), PROTO_ROLE_AGENT);
        request(chunk(0, A), PROTO_MSG_STATUS_REQUEST, 2, 0, 0);
        request(chunk(0, A), PROTO_MSG_SUBSCRIBE, 3, 0, 0);
        hello(chunk(1, B), PROTO_ROLE_CONTROL);
        memstats(chunk(1, B));
        profile(chunk(1, B), PROTO_MSG_PROFILE_SNAPSHOT, 1);
        memstats(chunk(2, A));
}

/* Messages only memd sends, coming to it: the decoders see full bodies. */
static void scn_daemon_messages(void) {
        static const struct memd_memstats zero;

        seed_begin(SELF_ROOT, SELF_ROOT);
        hello(chunk(0, A), PROTO_ROLE_CONTROL);
        hello_ok(chunk(1, A));
        status_reply(chunk(1, A));
        CK(proto_pack_memstats(chunk(2, A), 0, 1, 5, &zero, false));
        CK(proto_pack_error(chunk(2, A), 3, EPERM, ""));
}

/* A body missing its required fields: bad MEMSTATS, closed. */
static void scn_bad_body(void) {
        seed_begin(SELF_ROOT, SELF_ROOT);
        hello(chunk(0, A), PROTO_ROLE_AGENT);
        raw_begin(chunk(1, A), PROTO_MSG_MEMSTATS, 0, 1);
        pk_str(chunk(1, A), "time_ns");
        msgpack_pack_int64(chunk(1, A), -1);
}

static void scn_garbage_after_hello(void) {
        static const char bad[] = { (char) 0xc1, 0x00 };

        seed_begin(SELF_ROOT, SELF_ROOT);
        hello(chunk(0, A), PROTO_ROLE_CONTROL);
        msgpack_sbuffer_write(&S.sb[1], bad, sizeof bad);
}

/* An array header announcing 2^32-1 entries: refused on the header alone. */
static void scn_oversized_array(void) {
        static const char arr32[] = { (char) 0xdd, (char) 0xff, (char) 0xff, (char) 0xff, (char) 0xff };

        seed_begin(SELF_ROOT, SELF_ROOT);
        hello(chunk(0, A), PROTO_ROLE_AGENT);
        raw_begin(chunk(1, A), PROTO_MSG_PROFILE_DELTA, 0, 1);
        pk_str(chunk(1, A), "buckets");
        msgpack_sbuffer_write(&S.sb[1], arr32, sizeof arr32);
}

/* Maps nine deep, one past PROTO_MAX_NESTING. */
static void scn_deep_nesting(void) {
        seed_begin(SELF_ROOT, SELF_ROOT);
        hello(chunk(0, A), PROTO_ROLE_AGENT);
        raw_begin(chunk(1, A), PROTO_MSG_EVENT, 0, 1);
        for (int i = 0; i < 8; i++) {
                pk_str(chunk(1, A), "x");
                msgpack_pack_map(chunk(1, A), 1);
        }
        pk_str(chunk(1, A), "y");
        msgpack_pack_nil(chunk(1, A));
}

static void scn_duplicate_key(void) {
        seed_begin(SELF_ROOT, SELF_ROOT);
        raw_begin(chunk(0, A), PROTO_MSG_HELLO, 1, 3);
        pk_str(chunk(0, A), "version");
        msgpack_pack_uint32(chunk(0, A), PROTO_VERSION);
        pk_str(chunk(0, A), "role");
        msgpack_pack_uint32(chunk(0, A), PROTO_ROLE_AGENT);
        pk_str(chunk(0, A), "role");
        msgpack_pack_uint32(chunk(0, A), PROTO_ROLE_CONTROL);
}

static void scn_not_a_map(void) {
        seed_begin(SELF_ROOT, SELF_ROOT);
        msgpack_pack_array(chunk(0, A), 2);
        msgpack_pack_uint32(chunk(0, A), PROTO_MSG_HELLO);
        msgpack_pack_uint32(chunk(0, A), 1);
}

/* A scenario is a function, or one message after a HELLO of the role that
 * may send it (memd's own messages come from a control client): small
 * seeds, so that mutations land in one body rather than in a session. */
static const struct {
        const char *name;
        void (*fn)(void);
        uint32_t role;
        void (*msg)(msgpack_packer *pk);
} scenarios[] = {
        { "msg-memstats", NULL, PROTO_ROLE_AGENT, memstats },
        { "msg-snapshot", NULL, PROTO_ROLE_AGENT, snapshot },
        { "msg-delta", NULL, PROTO_ROLE_AGENT, delta },
        { "msg-mappings", NULL, PROTO_ROLE_AGENT, mappings },
        { "msg-event-gc", NULL, PROTO_ROLE_AGENT, event_gc },
        { "msg-event-scvg", NULL, PROTO_ROLE_AGENT, event_scvg },
        { "msg-gc-result", NULL, PROTO_ROLE_AGENT, gc_result },
        { "msg-scavenge-result", NULL, PROTO_ROLE_AGENT, scavenge_result },
        { "msg-ok", NULL, PROTO_ROLE_AGENT, ok_reply },
        { "msg-error", NULL, PROTO_ROLE_AGENT, error_reply },
        { "msg-bye", NULL, PROTO_ROLE_AGENT, bye },
        { "msg-set-rate", NULL, PROTO_ROLE_CONTROL, set_rate },
        { "msg-set-memory-limit", NULL, PROTO_ROLE_CONTROL, set_memory_limit },
        { "msg-status-bad-pid", NULL, PROTO_ROLE_CONTROL, status_bad_pid },
        { "msg-hello-ok", NULL, PROTO_ROLE_CONTROL, hello_ok },
        { "msg-status-reply", NULL, PROTO_ROLE_CONTROL, status_reply },
        { "agent-session", scn_agent_session },
        { "agent-split-mid", scn_agent_split_mid },
        { "bytewise", scn_bytewise },
        { "truncated", scn_truncated },
        { "control-session", scn_control_session },
        { "agent-and-status", scn_agent_and_status },
        { "status-other-user", scn_status_other_user },
        { "agent-reattach", scn_agent_reattach },
        { "two-agents", scn_two_agents },
        { "agent-no-pidfd", scn_agent_no_pidfd },
        { "agent-gone", scn_agent_gone },
        { "bad-version", scn_bad_version },
        { "bad-role", scn_bad_role },
        { "hello-claims-pid", scn_hello_claims_pid },
        { "before-hello", scn_before_hello },
        { "hello-twice", scn_hello_twice },
        { "wrong-role", scn_wrong_role },
        { "daemon-messages", scn_daemon_messages },
        { "bad-body", scn_bad_body },
        { "garbage-after-hello", scn_garbage_after_hello },
        { "oversized-array", scn_oversized_array },
        { "deep-nesting", scn_deep_nesting },
        { "duplicate-key", scn_duplicate_key },
        { "not-a-map", scn_not_a_map },
};
#define N_SCENARIOS (sizeof scenarios / sizeof scenarios[0])

int main(int argc, char **argv) {
        bool written[N_SCENARIOS] = { false };

        if (argc < 2)
                die("usage: make-corpus OUTDIR NAME...");
        for (int i = 0; i < FUZZ_CHUNKS; i++)
                msgpack_sbuffer_init(&S.sb[i]);
        for (int a = 2; a < argc; a++) {
                size_t i;

                for (i = 0; i < N_SCENARIOS && strcmp(scenarios[i].name, argv[a]) != 0; i++)
                        ;
                if (i == N_SCENARIOS)
                        die("no scenario '%s'", argv[a]);
                if (scenarios[i].fn)
                        scenarios[i].fn();
                else {
                        seed_begin(SELF_ROOT, SELF_ROOT);
                        hello(chunk(0, A), scenarios[i].role);
                        scenarios[i].msg(chunk(1, A));
                }
                seed_write(argv[1], argv[a]);
                written[i] = true;
        }
        /* meson.build names the outputs: a scenario it forgot is a build error, not a lost seed. */
        for (size_t i = 0; i < N_SCENARIOS; i++)
                if (!written[i])
                        die("scenario '%s' is not in tests/fuzz/meson.build's seed list", scenarios[i].name);
        for (int i = 0; i < FUZZ_CHUNKS; i++)
                msgpack_sbuffer_destroy(&S.sb[i]);
        return 0;
}
