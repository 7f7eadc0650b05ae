/* test-proto.c - Check suite for proto.c: framing limits, field tables, every message round trip. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto.h"
#include "unit.h"

/* ---- helpers ------------------------------------------------------------- */

struct out {
        msgpack_sbuffer sb;
        msgpack_packer pk;
};

static void out_init(struct out *o) {
        msgpack_sbuffer_init(&o->sb);
        msgpack_packer_init(&o->pk, &o->sb, msgpack_sbuffer_write);
}

static void out_done(struct out *o) {
        msgpack_sbuffer_destroy(&o->sb);
}

static void pk_str(msgpack_packer *pk, const char *s) {
        msgpack_pack_str(pk, strlen(s));
        msgpack_pack_str_body(pk, s, strlen(s));
}

static void pk_kv_u64(msgpack_packer *pk, const char *k, uint64_t v) {
        pk_str(pk, k);
        msgpack_pack_uint64(pk, v);
}

/* Feeds the packed bytes to a fresh reader and reads one message of the
 * wanted type; the caller frees the reader. */
static struct proto_reader *read_msg(const struct out *o, struct proto_msg *m, uint32_t want_type) {
        struct proto_reader *r = NULL;

        ck_assert_int_eq(proto_reader_new(&r), 0);
        proto_msg_init(m);
        ck_assert_int_eq(proto_reader_feed(r, o->sb.data, o->sb.size), 0);
        ck_assert_int_eq(proto_reader_next(r, m), 1);
        ck_assert_uint_eq(m->type, want_type);
        return r;
}

/* One frame through a fresh reader; returns proto_reader_next()'s result. */
static int frame_result(const void *data, size_t len) {
        struct proto_reader *r = NULL;
        struct proto_msg m;
        int k;

        ck_assert_int_eq(proto_reader_new(&r), 0);
        proto_msg_init(&m);
        k = proto_reader_feed(r, data, len);
        if (k >= 0)
                k = proto_reader_next(r, &m);
        proto_msg_done(&m);
        proto_reader_free(r);
        return k;
}

static void fill_stats(struct memd_memstats *s) {
        uint64_t *f = &s->Alloc;

        memset(s, 0, sizeof(*s));
        for (int i = 0; i < 15; i++)
                f[i] = UINT64_C(1000003) * (i + 1) + ((uint64_t) i << 40);
        for (int i = 0; i < 256; i++) {
                s->PauseNs[i] = 1000 + i;
                s->PauseEnd[i] = UINT64_C(1700000000000000000) + i;
        }
        s->PauseNs[255] = UINT64_MAX;
        s->NumGC = 300;
        s->NumForcedGC = UINT32_MAX;
        s->GCCPUFraction = 0.0123;
        s->RSS = 1ull << 33;
        s->RssAnon = 1ull << 32;
        s->LazyFree = 4096;
        s->Threads = 7;
}

static void fill_record(struct profile_record *rec, uint32_t depth, uint64_t seed) {
        memset(rec, 0, sizeof(*rec));
        rec->alloc_count = seed;
        rec->alloc_bytes = seed * 100;
        rec->free_count = seed / 2;
        rec->free_bytes = seed * 50;
        rec->alloc_objects_est = seed * 1.5;
        rec->alloc_bytes_est = seed * 150.25;
        rec->free_objects_est = seed * 0.75;
        rec->free_bytes_est = 0;
        rec->depth = depth;
        for (uint32_t i = 0; i < depth; i++)
                rec->pcs[i] = (uintptr_t) (UINT64_C(0x7f0000000000) + seed * 0x1000 + i);
}

static void assert_record_eq(const struct profile_record *a, const struct profile_record *b) {
        ck_assert_uint_eq(a->depth, b->depth);
        ck_assert(memcmp(a->pcs, b->pcs, a->depth * sizeof(a->pcs[0])) == 0);
        ck_assert_uint_eq(a->alloc_count, b->alloc_count);
        ck_assert_uint_eq(a->alloc_bytes, b->alloc_bytes);
        ck_assert_uint_eq(a->free_count, b->free_count);
        ck_assert_uint_eq(a->free_bytes, b->free_bytes);
        ck_assert(a->alloc_objects_est == b->alloc_objects_est);
        ck_assert(a->alloc_bytes_est == b->alloc_bytes_est);
        ck_assert(a->free_objects_est == b->free_objects_est);
        ck_assert(a->free_bytes_est == b->free_bytes_est);
}

/* ---- round trips --------------------------------------------------------- */

START_TEST(test_type_names) {
        ck_assert_str_eq(proto_msg_type_name(PROTO_MSG_HELLO), "HELLO");
        ck_assert_str_eq(proto_msg_type_name(PROTO_MSG_SUBSCRIBE), "SUBSCRIBE");
        ck_assert_ptr_null(proto_msg_type_name(0));
        ck_assert_ptr_null(proto_msg_type_name(6));
        ck_assert_ptr_null(proto_msg_type_name(1000));
        ck_assert(!proto_msg_type_known(UINT32_MAX));
}
END_TEST

START_TEST(test_hello) {
        struct proto_hello h = { .version = PROTO_VERSION, .role = PROTO_ROLE_AGENT, .pid = 4242,
                                 .comm = "cache", .software = "libmemd 0.1.0", .rate_bytes = 524288 };
        struct proto_hello got;
        struct proto_reader *r;
        struct proto_msg m;
        struct out o;

        out_init(&o);
        ck_assert_int_eq(proto_pack_hello(&o.pk, 7, &h), 0);
        r = read_msg(&o, &m, PROTO_MSG_HELLO);
        ck_assert_uint_eq(m.id, 7);
        ck_assert_int_eq(proto_decode_hello(&m, &got), 0);
        ck_assert_uint_eq(got.version, PROTO_VERSION);
        ck_assert_uint_eq(got.role, PROTO_ROLE_AGENT);
        ck_assert_uint_eq(got.pid, 4242);
        ck_assert_str_eq(got.comm, "cache");
        ck_assert_str_eq(got.software, "libmemd 0.1.0");
        ck_assert_uint_eq(got.rate_bytes, 524288);
        ck_assert_int_eq(proto_reader_next(r, &m), 0);
        proto_msg_done(&m);
        proto_reader_free(r);
        out_done(&o);
}
END_TEST

/* The claimed pid is not this process's: it must still decode (the daemon
 * compares it with SO_PEERCRED, not this library). */
START_TEST(test_hello_claims_other_pid) {
        struct proto_hello h = { .version = PROTO_VERSION, .role = PROTO_ROLE_CONTROL, .pid = 1 };
        struct proto_hello got;
        struct proto_reader *r;
        struct proto_msg m;
        struct out o;

        ck_assert_uint_ne((uint32_t) getpid(), 1);
        out_init(&o);
        ck_assert_int_eq(proto_pack_hello(&o.pk, 1, &h), 0);
        r = read_msg(&o, &m, PROTO_MSG_HELLO);
        ck_assert_int_eq(proto_decode_hello(&m, &got), 0);
        ck_assert_uint_eq(got.pid, 1);
        ck_assert_uint_eq(got.role, PROTO_ROLE_CONTROL);
        proto_msg_done(&m);
        proto_reader_free(r);
        out_done(&o);
}
END_TEST

START_TEST(test_hello_ok_error_ok_bye) {
        struct proto_hello_ok hok = { .version = PROTO_VERSION, .pid = 99, .uid = 1000, .software = "memd 0.1.0" };
        struct proto_hello_ok ghok;
        struct proto_error gerr;
        struct proto_ok gok;
        struct proto_bye gbye;
        struct proto_reader *r;
        struct proto_msg m;
        struct out o;

        out_init(&o);
        ck_assert_int_eq(proto_pack_hello_ok(&o.pk, 1, &hok), 0);
        ck_assert_int_eq(proto_pack_error(&o.pk, 2, -EPERM, "permission denied"), 0);
        ck_assert_int_eq(proto_pack_error(&o.pk, 3, ESRCH, ""), 0);
        ck_assert_int_eq(proto_pack_ok(&o.pk, 4, 524288), 0);
        ck_assert_int_eq(proto_pack_ok(&o.pk, 5, UINT64_MAX), 0);
        ck_assert_int_eq(proto_pack_bye(&o.pk, 6, "shutting down"), 0);
        ck_assert_int_eq(proto_pack_bye(&o.pk, 7, NULL), 0);

        r = read_msg(&o, &m, PROTO_MSG_HELLO_OK);
        ck_assert_int_eq(proto_decode_hello_ok(&m, &ghok), 0);
        ck_assert_uint_eq(ghok.version, PROTO_VERSION);
        ck_assert_uint_eq(ghok.pid, 99);
        ck_assert_uint_eq(ghok.uid, 1000);
        ck_assert_str_eq(ghok.software, "memd 0.1.0");

        ck_assert_int_eq(proto_reader_next(r, &m), 1);
        ck_assert_uint_eq(m.type, PROTO_MSG_ERROR);
        ck_assert_uint_eq(m.id, 2);
        ck_assert_int_eq(proto_decode_error(&m, &gerr), 0);
        ck_assert_uint_eq(gerr.code, EPERM);
        ck_assert_str_eq(gerr.text, "permission denied");

        ck_assert_int_eq(proto_reader_next(r, &m), 1);
        ck_assert_int_eq(proto_decode_error(&m, &gerr), 0);
        ck_assert_uint_eq(gerr.code, ESRCH);
        ck_assert_str_eq(gerr.text, "");

        ck_assert_int_eq(proto_reader_next(r, &m), 1);
        ck_assert_uint_eq(m.type, PROTO_MSG_OK);
        ck_assert_int_eq(proto_decode_ok(&m, &gok), 0);
        ck_assert_uint_eq(gok.previous, 524288);
        ck_assert_int_eq(proto_reader_next(r, &m), 1);
        ck_assert_int_eq(proto_decode_ok(&m, &gok), 0);
        ck_assert_uint_eq(gok.previous, UINT64_MAX);

        ck_assert_int_eq(proto_reader_next(r, &m), 1);
        ck_assert_uint_eq(m.type, PROTO_MSG_BYE);
        ck_assert_int_eq(proto_decode_bye(&m, &gbye), 0);
        ck_assert_str_eq(gbye.reason, "shutting down");
        ck_assert_int_eq(proto_reader_next(r, &m), 1);
        ck_assert_uint_eq(m.id, 7);
        ck_assert_int_eq(proto_decode_bye(&m, &gbye), 0);
        ck_assert_str_eq(gbye.reason, "");
        ck_assert_int_eq(proto_reader_next(r, &m), 0);

        proto_msg_done(&m);
        proto_reader_free(r);
        out_done(&o);
}
END_TEST

START_TEST(test_memstats) {
        struct memd_memstats s;
        struct proto_memstats got;
        struct proto_reader *r;
        struct proto_msg m;
        struct out o;

        fill_stats(&s);
        out_init(&o);
        ck_assert_int_eq(proto_pack_memstats(&o.pk, 0, 0, INT64_C(1700000000123456789), &s, true), 0);
        ck_assert_int_eq(proto_pack_memstats(&o.pk, 9, 4321, -5, &s, true), 0);
        ck_assert_int_eq(proto_pack_memstats(&o.pk, 10, 0, 7, &s, false), 0);
        r = read_msg(&o, &m, PROTO_MSG_MEMSTATS);
        ck_assert_int_eq(proto_decode_memstats(&m, &got), 0);
        ck_assert_int_eq(got.time_ns, INT64_C(1700000000123456789));
        ck_assert_uint_eq(got.pid, 0);
        ck_assert(got.has_pauses);
        ck_assert(memcmp(&got.stats, &s, sizeof(s)) == 0);
        ck_assert_int_eq(proto_reader_next(r, &m), 1);
        ck_assert_int_eq(proto_decode_memstats(&m, &got), 0);
        ck_assert_int_eq(got.time_ns, -5);
        ck_assert_uint_eq(got.pid, 4321);
        ck_assert(memcmp(&got.stats, &s, sizeof(s)) == 0);
        /* Without the pauses: every scalar, the arrays read 0, and they say so. */
        ck_assert_int_eq(proto_reader_next(r, &m), 1);
        ck_assert_int_eq(proto_decode_memstats(&m, &got), 0);
        ck_assert(!got.has_pauses);
        ck_assert_uint_eq(got.stats.HeapAlloc, s.HeapAlloc);
        ck_assert_uint_eq(got.stats.NumGC, s.NumGC);
        ck_assert_uint_eq(got.stats.Threads, s.Threads);
        ck_assert_uint_eq(got.stats.PauseNs[0], 0);
        ck_assert_uint_eq(got.stats.PauseEnd[0], 0);
        proto_msg_done(&m);
        proto_reader_free(r);
        out_done(&o);
}
END_TEST

/* Go's key names, as a JSON-minded reader of the bytes would see them. */
START_TEST(test_memstats_go_names) {
        static const char *const names[] = {
                "Alloc", "TotalAlloc", "Sys", "Mallocs", "Frees", "HeapAlloc", "HeapSys", "HeapIdle",
                "HeapInuse", "HeapReleased", "HeapObjects", "BuckHashSys", "NextGC", "LastGC",
                "PauseTotalNs", "PauseNs", "PauseEnd", "NumGC", "NumForcedGC", "GCCPUFraction",
                "RSS", "RssAnon", "LazyFree", "Threads",
        };
        struct memd_memstats s;
        struct proto_reader *r;
        struct proto_msg m;
        struct out o;

        fill_stats(&s);
        out_init(&o);
        ck_assert_int_eq(proto_pack_memstats(&o.pk, 0, 0, 1, &s, true), 0);
        r = read_msg(&o, &m, PROTO_MSG_MEMSTATS);
        ck_assert_uint_eq(m.body->via.map.size, 2 + 1 + sizeof(names) / sizeof(names[0]));
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                bool found = false;

                for (uint32_t j = 0; j < m.body->via.map.size; j++) {
                        const msgpack_object *k = &m.body->via.map.ptr[j].key;

                        if (k->via.str.size == strlen(names[i]) && !memcmp(k->via.str.ptr, names[i], k->via.str.size)) {
                                found = true;
                                if (!strcmp(names[i], "PauseNs") || !strcmp(names[i], "PauseEnd")) {
                                        ck_assert_int_eq(m.body->via.map.ptr[j].val.type, MSGPACK_OBJECT_ARRAY);
                                        ck_assert_uint_eq(m.body->via.map.ptr[j].val.via.array.size, 256);
                                }
                        }
                }
                ck_assert_msg(found, "key %s missing", names[i]);
        }
        proto_msg_done(&m);
        proto_reader_free(r);
        out_done(&o);
}
END_TEST

START_TEST(test_profile) {
        static struct profile_record recs[5], got;
        struct proto_profile h = { .generation = 3, .part = 1, .final = true, .rate_bytes = 512 * 1024,
                                   .time_ns = 123456789 };
        struct proto_profile gh;
        struct proto_reader *r;
        struct proto_msg m;
        struct out o;

        fill_record(&recs[0], 0, 1);
        fill_record(&recs[1], 1, 2);
        fill_record(&recs[2], 3, 3);
        fill_record(&recs[3], PROTO_MAX_STACK_DEPTH, 4);
        fill_record(&recs[4], 10, 5);
        recs[4].pcs[0] = UINTPTR_MAX;
        out_init(&o);
        ck_assert_int_eq(proto_pack_profile(&o.pk, PROTO_MSG_PROFILE_SNAPSHOT, 11, &h, recs, 5), 0);
        h.pid = 77;
        ck_assert_int_eq(proto_pack_profile(&o.pk, PROTO_MSG_PROFILE_DELTA, 0, &h, recs + 1, 2), 0);
        ck_assert_int_eq(proto_pack_profile(&o.pk, PROTO_MSG_MEMSTATS, 0, &h, recs, 1), -EINVAL);

        r = read_msg(&o, &m, PROTO_MSG_PROFILE_SNAPSHOT);
        ck_assert_uint_eq(m.id, 11);
        ck_assert_int_eq(proto_decode_profile(&m, &gh), 0);
        ck_assert_uint_eq(gh.pid, 0);
        ck_assert_uint_eq(gh.generation, 3);
        ck_assert_uint_eq(gh.part, 1);
        ck_assert(gh.final);
        ck_assert_uint_eq(gh.rate_bytes, 512 * 1024);
        ck_assert_int_eq(gh.time_ns, 123456789);
        ck_assert_uint_eq(gh.buckets.n, 5);
        for (uint32_t i = 0; i < gh.buckets.n; i++) {
                ck_assert_int_eq(proto_decode_bucket(&gh.buckets.items[i], &got), 0);
                assert_record_eq(&got, &recs[i]);
        }

        ck_assert_int_eq(proto_reader_next(r, &m), 1);
        ck_assert_uint_eq(m.type, PROTO_MSG_PROFILE_DELTA);
        ck_assert_int_eq(proto_decode_profile(&m, &gh), 0);
        ck_assert_uint_eq(gh.pid, 77);
        ck_assert_uint_eq(gh.buckets.n, 2);
        ck_assert_int_eq(proto_decode_bucket(&gh.buckets.items[1], &got), 0);
        assert_record_eq(&got, &recs[2]);
        proto_msg_done(&m);
        proto_reader_free(r);
        out_done(&o);
}
END_TEST

START_TEST(test_mappings) {
        static struct proto_mapping maps[2], got;
        struct proto_mappings gh;
        struct proto_reader *r;
        struct proto_msg m;
        struct out o;

        maps[0] = (struct proto_mapping) { .start = 0x400000, .limit = 0x401000, .offset = 0, .path = "/usr/bin/cache",
                                           .build_id_len = 20 };
        for (int i = 0; i < 20; i++)
                maps[0].build_id[i] = (uint8_t) (0xa0 + i);
        maps[1] = (struct proto_mapping) { .start = 0x7f0000000000, .limit = 0x7f0000200000, .offset = 0x1000, .path = "" };
        out_init(&o);
        ck_assert_int_eq(proto_pack_mappings(&o.pk, 5, 0, maps, 2), 0);
        r = read_msg(&o, &m, PROTO_MSG_MAPPINGS);
        ck_assert_int_eq(proto_decode_mappings(&m, &gh), 0);
        ck_assert_uint_eq(gh.mappings.n, 2);
        ck_assert_int_eq(proto_decode_mapping(&gh.mappings.items[0], &got), 0);
        ck_assert_uint_eq(got.start, 0x400000);
        ck_assert_uint_eq(got.limit, 0x401000);
        ck_assert_str_eq(got.path, "/usr/bin/cache");
        ck_assert_uint_eq(got.build_id_len, 20);
        ck_assert(memcmp(got.build_id, maps[0].build_id, 20) == 0);
        ck_assert_int_eq(proto_decode_mapping(&gh.mappings.items[1], &got), 0);
        ck_assert_uint_eq(got.offset, 0x1000);
        ck_assert_uint_eq(got.build_id_len, 0);
        ck_assert_str_eq(got.path, "");
        proto_msg_done(&m);
        proto_reader_free(r);
        out_done(&o);
}
END_TEST

START_TEST(test_event) {
        static struct proto_event e, got;
        struct proto_reader *r;
        struct proto_msg m;
        struct out o;

        e = (struct proto_event) { .kind = PROTO_EVENT_SCVG, .time_ns = 42, .pid = 3, .forced = true, .seq = 0,
                                   .released_bytes = 2740ull << 20, .heap_inuse_bytes = 75ull << 20,
                                   .heap_idle_bytes = 2740ull << 20, .heap_sys_bytes = 2815ull << 20 };
        strcpy(e.text, "scvg-1: 2740 MB released\nscvg-1: inuse: 75, idle: 2740, sys: 2815, released: 2740, consumed: 75 (MB)");
        out_init(&o);
        ck_assert_int_eq(proto_pack_event(&o.pk, 0, &e), 0);
        r = read_msg(&o, &m, PROTO_MSG_EVENT);
        ck_assert_int_eq(proto_decode_event(&m, &got), 0);
        ck_assert(memcmp(&got, &e, sizeof(e)) == 0);
        proto_msg_done(&m);
        proto_reader_free(r);
        out_done(&o);
}
END_TEST

START_TEST(test_requests) {
        static const uint32_t types[] = { PROTO_MSG_GC_REQUEST, PROTO_MSG_SCAVENGE_REQUEST, PROTO_MSG_PROFILE_REQUEST,
                                          PROTO_MSG_STATUS_REQUEST, PROTO_MSG_SUBSCRIBE, PROTO_MSG_SET_RATE,
                                          PROTO_MSG_SET_MEMORY_LIMIT };
        const size_t n = sizeof(types) / sizeof(types[0]);
        struct proto_request q, got;
        struct proto_reader *r = NULL;
        struct proto_msg m;
        struct out o;

        out_init(&o);
        for (size_t i = 0; i < n; i++) {
                q = (struct proto_request) { .pid = 100 + i, .value = 1000 + i };
                ck_assert_int_eq(proto_pack_request(&o.pk, types[i], 50 + i, &q), 0);
        }
        ck_assert_int_eq(proto_pack_request(&o.pk, PROTO_MSG_HELLO, 1, &q), -EINVAL);
        ck_assert_int_eq(proto_reader_new(&r), 0);
        proto_msg_init(&m);
        ck_assert_int_eq(proto_reader_feed(r, o.sb.data, o.sb.size), 0);
        for (size_t i = 0; i < n; i++) {
                ck_assert_int_eq(proto_reader_next(r, &m), 1);
                ck_assert_uint_eq(m.type, types[i]);
                ck_assert_uint_eq(m.id, 50 + i);
                ck_assert_int_eq(proto_decode_request(&m, &got), 0);
                ck_assert_uint_eq(got.pid, 100 + i);
                if (types[i] == PROTO_MSG_SET_RATE || types[i] == PROTO_MSG_SET_MEMORY_LIMIT)
                        ck_assert_uint_eq(got.value, 1000 + i);
                else
                        ck_assert_uint_eq(got.value, 0);
        }
        ck_assert_int_eq(proto_reader_next(r, &m), 0);
        proto_msg_done(&m);
        proto_reader_free(r);
        out_done(&o);
}
END_TEST

/* PROFILE_REQUEST's fd flag; PROFILE_DATA parts, and the one that says the
 * file came as a descriptor: then it is part 0, final, without data. */
START_TEST(test_profile_data) {
        static const struct {
                uint32_t part;
                bool final, fd;
                uint32_t data_len;
                int want;
        } cases[] = {
                { 0, false, false, 5, 0 },  { 3, true, false, 0, 0 },  { 0, true, true, 0, 0 },
                { 1, true, true, 0, -EBADMSG }, { 0, false, true, 0, -EBADMSG }, { 0, true, true, 5, -EBADMSG },
        };
        struct proto_request q = { .pid = 7, .format = PROTO_PROFILE_TEXT, .fd = true }, gq;
        struct proto_profile_data d, got;
        struct proto_reader *r;
        struct proto_msg m;
        struct out o;

        out_init(&o);
        ck_assert_int_eq(proto_pack_request(&o.pk, PROTO_MSG_PROFILE_REQUEST, 1, &q), 0);
        r = read_msg(&o, &m, PROTO_MSG_PROFILE_REQUEST);
        ck_assert_int_eq(proto_decode_request(&m, &gq), 0);
        ck_assert(gq.fd);
        ck_assert_uint_eq(gq.format, PROTO_PROFILE_TEXT);
        proto_msg_done(&m);
        proto_reader_free(r);
        out_done(&o);
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                d = (struct proto_profile_data) { .pid = 7, .format = PROTO_PROFILE_FOLDED, .part = cases[i].part,
                                                  .final = cases[i].final, .fd = cases[i].fd,
                                                  .size = cases[i].fd ? 12345 : 0,
                                                  .data = { "hello", cases[i].data_len } };
                out_init(&o);
                ck_assert_int_eq(proto_pack_profile_data(&o.pk, 2, &d), 0);
                r = read_msg(&o, &m, PROTO_MSG_PROFILE_DATA);
                ck_assert_int_eq(proto_decode_profile_data(&m, &got), cases[i].want);
                if (cases[i].want == 0) {
                        ck_assert_uint_eq(got.part, d.part);
                        ck_assert_int_eq(got.final, d.final);
                        ck_assert_int_eq(got.fd, d.fd);
                        ck_assert_uint_eq(got.size, d.size);
                        ck_assert_uint_eq(got.data.len, d.data.len);
                }
                proto_msg_done(&m);
                proto_reader_free(r);
                out_done(&o);
        }
}
END_TEST

START_TEST(test_results) {
        static struct proto_gc_result g, gg;
        static struct proto_scavenge_result s, gs;
        struct proto_reader *r;
        struct proto_msg m;
        struct out o;

        g = (struct proto_gc_result) { .pid = 12, .freed_bytes = 1 << 20, .heap_before_bytes = 3 << 20,
                                       .heap_after_bytes = 2 << 20, .duration_ns = 999 };
        strcpy(g.text, "gc 21 @25.551s 6%: 0.012+59+0.010 ms clock, 0.050+17/59/0.46+0.043 ms cpu, 175->207->105 MB, 191 MB goal, 4 P (forced)");
        s = (struct proto_scavenge_result) { .released_bytes = 2740ull << 20, .rss_before_bytes = 1ull << 30,
                                             .rss_after_bytes = 30ull << 20 };
        strcpy(s.text, "scvg-1: 2740 MB released");
        out_init(&o);
        ck_assert_int_eq(proto_pack_gc_result(&o.pk, 1, &g), 0);
        ck_assert_int_eq(proto_pack_scavenge_result(&o.pk, 2, &s), 0);
        r = read_msg(&o, &m, PROTO_MSG_GC_RESULT);
        ck_assert_int_eq(proto_decode_gc_result(&m, &gg), 0);
        ck_assert(memcmp(&g, &gg, sizeof(g)) == 0);
        ck_assert_int_eq(proto_reader_next(r, &m), 1);
        ck_assert_uint_eq(m.type, PROTO_MSG_SCAVENGE_RESULT);
        ck_assert_int_eq(proto_decode_scavenge_result(&m, &gs), 0);
        ck_assert(memcmp(&s, &gs, sizeof(s)) == 0);
        proto_msg_done(&m);
        proto_reader_free(r);
        out_done(&o);
}
END_TEST

START_TEST(test_status_reply) {
        static struct proto_process p[2], got;
        static struct proto_event ev[2], gev;
        struct proto_status_reply st;
        struct proto_reader *r;
        struct proto_msg m;
        struct out o;

        ev[0] = (struct proto_event) { .kind = PROTO_EVENT_GC, .time_ns = 1, .text = "gc 1 @0.1s 0%: ...", .seq = 1 };
        ev[1] = (struct proto_event) { .kind = PROTO_EVENT_SCVG, .time_ns = 2, .text = "scvg 1: 1 MB released", .seq = 1 };
        p[0] = (struct proto_process) { .pid = 10, .uid = 1000, .comm = "cache", .unit = "cache.service",
                                        .exe = "/usr/bin/cache", .attached_ns = 5, .stats_time_ns = 6,
                                        .limit_bytes = 256 << 20, .rate_bytes = 524288, .last_gc_ns = 7,
                                        .last_scvg_ns = 8, .has_stats = true, .has_pauses = true,
                                        .events = ev, .n_events = 2 };
        fill_stats(&p[0].stats);
        p[1] = (struct proto_process) { .pid = 11, .uid = 0, .comm = "x", .has_stats = true };
        fill_stats(&p[1].stats); /* without its pauses: they are not sent */
        out_init(&o);
        ck_assert_int_eq(proto_pack_status_reply(&o.pk, 33, p, 2), 0);
        r = read_msg(&o, &m, PROTO_MSG_STATUS_REPLY);
        ck_assert_uint_eq(m.id, 33);
        ck_assert_int_eq(proto_decode_status_reply(&m, &st), 0);
        ck_assert_uint_eq(st.processes.n, 2);
        ck_assert_int_eq(proto_decode_process(&st.processes.items[0], &got), 0);
        ck_assert_uint_eq(got.pid, 10);
        ck_assert_str_eq(got.comm, "cache");
        ck_assert_str_eq(got.unit, "cache.service");
        ck_assert_str_eq(got.exe, "/usr/bin/cache");
        ck_assert_uint_eq(got.limit_bytes, 256 << 20);
        ck_assert_int_eq(got.last_scvg_ns, 8);
        ck_assert(got.has_stats);
        ck_assert(got.has_pauses);
        ck_assert(memcmp(&got.stats, &p[0].stats, sizeof(got.stats)) == 0);
        ck_assert_uint_eq(got.event_view.n, 2);
        ck_assert_int_eq(proto_decode_event_object(&got.event_view.items[1], &gev), 0);
        ck_assert_str_eq(gev.text, "scvg 1: 1 MB released");
        ck_assert_int_eq(proto_decode_process(&st.processes.items[1], &got), 0);
        ck_assert_uint_eq(got.pid, 11);
        ck_assert(got.has_stats);
        ck_assert(!got.has_pauses);
        ck_assert_uint_eq(got.stats.HeapAlloc, p[1].stats.HeapAlloc);
        ck_assert_uint_eq(got.stats.PauseNs[0], 0);
        ck_assert_uint_eq(got.stats.PauseEnd[255], 0);
        ck_assert_uint_eq(got.event_view.n, 0);
        ck_assert_uint_eq(got.event_view.n, 0);
        proto_msg_done(&m);
        proto_reader_free(r);
        out_done(&o);
}
END_TEST

/* ---- framing ------------------------------------------------------------- */

/* Several messages fed one byte at a time come out whole and in order. */
START_TEST(test_bytewise) {
        static struct profile_record recs[3];
        struct proto_hello h = { .version = PROTO_VERSION, .role = PROTO_ROLE_AGENT, .comm = "a" };
        struct proto_profile ph = { .rate_bytes = 1, .time_ns = 2, .final = true };
        struct memd_memstats s;
        struct proto_memstats gs;
        struct proto_profile gp;
        struct proto_reader *r = NULL;
        struct proto_msg m;
        struct out o;
        uint32_t want[] = { PROTO_MSG_HELLO, PROTO_MSG_MEMSTATS, PROTO_MSG_PROFILE_SNAPSHOT, PROTO_MSG_BYE };
        size_t got = 0;
        int k;

        fill_stats(&s);
        for (int i = 0; i < 3; i++)
                fill_record(&recs[i], 20 + i, i + 1);
        out_init(&o);
        ck_assert_int_eq(proto_pack_hello(&o.pk, 1, &h), 0);
        ck_assert_int_eq(proto_pack_memstats(&o.pk, 2, 0, 3, &s, true), 0);
        ck_assert_int_eq(proto_pack_profile(&o.pk, PROTO_MSG_PROFILE_SNAPSHOT, 3, &ph, recs, 3), 0);
        ck_assert_int_eq(proto_pack_bye(&o.pk, 4, NULL), 0);

        ck_assert_int_eq(proto_reader_new(&r), 0);
        proto_msg_init(&m);
        for (size_t i = 0; i < o.sb.size; i++) {
                ck_assert_int_eq(proto_reader_feed(r, o.sb.data + i, 1), 0);
                while ((k = proto_reader_next(r, &m)) > 0) {
                        ck_assert_uint_lt(got, 4);
                        ck_assert_uint_eq(m.type, want[got]);
                        ck_assert_uint_eq(m.id, got + 1);
                        if (m.type == PROTO_MSG_MEMSTATS) {
                                ck_assert_int_eq(proto_decode_memstats(&m, &gs), 0);
                                ck_assert(memcmp(&gs.stats, &s, sizeof(s)) == 0);
                        } else if (m.type == PROTO_MSG_PROFILE_SNAPSHOT) {
                                struct profile_record rec;

                                ck_assert_int_eq(proto_decode_profile(&m, &gp), 0);
                                ck_assert_uint_eq(gp.buckets.n, 3);
                                ck_assert_int_eq(proto_decode_bucket(&gp.buckets.items[2], &rec), 0);
                                assert_record_eq(&rec, &recs[2]);
                        }
                        got++;
                }
                ck_assert_int_eq(k, 0);
        }
        ck_assert_uint_eq(got, 4);
        proto_msg_done(&m);
        proto_reader_free(r);
        out_done(&o);
}
END_TEST

/* A message stays readable while the reader takes more bytes (its buffer
 * grows, moves, or is given back). */
START_TEST(test_msg_outlives_feed) {
        struct proto_hello h = { .version = PROTO_VERSION, .role = PROTO_ROLE_AGENT, .comm = "keepme" };
        struct proto_profile ph = { .final = true };
        struct profile_record *recs = calloc(4000, sizeof(*recs));
        struct proto_hello got;
        struct proto_reader *r = NULL;
        struct proto_msg m, m2;
        struct out o, big;

        ck_assert_ptr_nonnull(recs);
        for (int i = 0; i < 4000; i++)
                fill_record(&recs[i], 64, i + 1);
        out_init(&o);
        out_init(&big);
        ck_assert_int_eq(proto_pack_hello(&o.pk, 1, &h), 0);
        ck_assert_int_eq(proto_pack_profile(&big.pk, PROTO_MSG_PROFILE_SNAPSHOT, 2, &ph, recs, 4000), 0);
        ck_assert_uint_gt(big.sb.size, 2u << 20);
        r = read_msg(&o, &m, PROTO_MSG_HELLO);
        proto_msg_init(&m2);
        ck_assert_int_eq(proto_reader_feed(r, big.sb.data, big.sb.size), 0);
        ck_assert_int_eq(proto_reader_next(r, &m2), 1);
        ck_assert_int_eq(proto_decode_hello(&m, &got), 0);
        ck_assert_str_eq(got.comm, "keepme");
        /* the next feed gives the big buffer back; m2 still points into it */
        ck_assert_int_eq(proto_reader_feed(r, o.sb.data, o.sb.size), 0);
        ck_assert_int_eq(proto_reader_next(r, &m), 1);
        ck_assert_int_eq(proto_decode_hello(&m, &got), 0);
        ck_assert_str_eq(got.comm, "keepme");
        {
                struct proto_profile gp;
                struct profile_record rec;

                ck_assert_int_eq(proto_decode_profile(&m2, &gp), 0);
                ck_assert_int_eq(proto_decode_bucket(&gp.buckets.items[3999], &rec), 0);
                assert_record_eq(&rec, &recs[3999]);
        }
        proto_msg_done(&m);
        proto_msg_done(&m2);
        proto_reader_free(r);
        out_done(&o);
        out_done(&big);
        free(recs);
}
END_TEST

/* A big legitimate message in socket-sized chunks, then a small one after it
 * (the reader gives the big buffer back in between). */
START_TEST(test_big_message) {
        const size_t n = 20000;
        struct profile_record *recs = calloc(n, sizeof(*recs));
        struct proto_profile ph = { .rate_bytes = 1, .final = true };
        struct proto_profile gp;
        struct profile_record rec;
        struct proto_reader *r = NULL;
        struct proto_msg m;
        struct out o;
        size_t off = 0;
        int k, got = 0;

        ck_assert_ptr_nonnull(recs);
        for (size_t i = 0; i < n; i++)
                fill_record(&recs[i], PROTO_MAX_STACK_DEPTH, i + 1);
        out_init(&o);
        ck_assert_int_eq(proto_pack_profile(&o.pk, PROTO_MSG_PROFILE_SNAPSHOT, 1, &ph, recs, n), 0);
        ck_assert_uint_gt(o.sb.size, 8u << 20);
        ck_assert_uint_le(o.sb.size, PROTO_MAX_FRAME_BYTES);
        ck_assert_int_eq(proto_pack_bye(&o.pk, 2, NULL), 0);
        ck_assert_int_eq(proto_reader_new(&r), 0);
        proto_msg_init(&m);
        while (off < o.sb.size) {
                size_t len = o.sb.size - off < 65536 ? o.sb.size - off : 65536;

                ck_assert_int_eq(proto_reader_feed(r, o.sb.data + off, len), 0);
                off += len;
                while ((k = proto_reader_next(r, &m)) > 0) {
                        if (got++ == 0) {
                                ck_assert_uint_eq(m.type, PROTO_MSG_PROFILE_SNAPSHOT);
                                ck_assert_int_eq(proto_decode_profile(&m, &gp), 0);
                                ck_assert_uint_eq(gp.buckets.n, n);
                                ck_assert_int_eq(proto_decode_bucket(&gp.buckets.items[n - 1], &rec), 0);
                                assert_record_eq(&rec, &recs[n - 1]);
                        } else
                                ck_assert_uint_eq(m.type, PROTO_MSG_BYE);
                }
                ck_assert_int_eq(k, 0);
        }
        ck_assert_int_eq(got, 2);
        /* and the reader still works after trimming */
        msgpack_sbuffer_clear(&o.sb);
        ck_assert_int_eq(proto_pack_bye(&o.pk, 3, "x"), 0);
        ck_assert_int_eq(proto_reader_feed(r, o.sb.data, o.sb.size), 0);
        ck_assert_int_eq(proto_reader_next(r, &m), 1);
        ck_assert_uint_eq(m.id, 3);
        proto_msg_done(&m);
        proto_reader_free(r);
        out_done(&o);
        free(recs);
}
END_TEST

START_TEST(test_garbage) {
        static const uint8_t c1[] = { 0xc1 };
        static const uint8_t str[] = { 0xa3, 'a', 'b', 'c' };
        static const uint8_t num[] = { 0x05 };
        static const uint8_t arr[] = { 0x91, 0x01 };
        static const uint8_t nested_c1[] = { 0x81, 0xa1, 't', 0xc1 };
        uint8_t buf[256];
        unsigned seed = 12345;

        ck_assert_int_eq(frame_result(c1, sizeof(c1)), -EBADMSG);
        ck_assert_int_eq(frame_result(str, sizeof(str)), -EBADMSG);
        ck_assert_int_eq(frame_result(num, sizeof(num)), -EBADMSG);
        ck_assert_int_eq(frame_result(arr, sizeof(arr)), -EBADMSG);
        ck_assert_int_eq(frame_result(nested_c1, sizeof(nested_c1)), -EBADMSG);
        ck_assert_int_eq(frame_result("GET / HTTP/1.1\r\n\r\n", 18), -EBADMSG);

        /* random bytes behind a map header: an error or "need more", never a
         * crash, and never a message with an unknown type */
        for (int round = 0; round < 20000; round++) {
                struct proto_reader *r = NULL;
                struct proto_msg m;
                size_t len = 1 + rand_r(&seed) % sizeof(buf);
                int k;

                for (size_t i = 0; i < len; i++)
                        buf[i] = (uint8_t) rand_r(&seed);
                if (round % 2)
                        buf[0] = 0x80 | (buf[0] & 0x0f);
                ck_assert_int_eq(proto_reader_new(&r), 0);
                proto_msg_init(&m);
                k = proto_reader_feed(r, buf, len);
                while (k >= 0 && (k = proto_reader_next(r, &m)) > 0)
                        ck_assert(proto_msg_type_known(m.type));
                ck_assert(k == 0 || k == -EBADMSG || k == -EMSGSIZE);
                proto_msg_done(&m);
                proto_reader_free(r);
        }
}
END_TEST

/* Decodes a message with its type's decoder, and every item inside. */
static int decode_any(const struct proto_msg *m) {
        static union {
                struct proto_hello hello;
                struct proto_hello_ok hello_ok;
                struct proto_error error;
                struct proto_ok ok;
                struct proto_bye bye;
                struct proto_memstats memstats;
                struct proto_event event;
                struct proto_request request;
                struct proto_gc_result gc;
                struct proto_scavenge_result scvg;
        } u;
        static struct proto_mapping map;
        static struct proto_process proc;
        static struct profile_record rec;
        struct proto_profile prof;
        struct proto_mappings maps;
        struct proto_status_reply st;
        int k;

        switch (m->type) {
        case PROTO_MSG_HELLO: return proto_decode_hello(m, &u.hello);
        case PROTO_MSG_HELLO_OK: return proto_decode_hello_ok(m, &u.hello_ok);
        case PROTO_MSG_ERROR: return proto_decode_error(m, &u.error);
        case PROTO_MSG_OK: return proto_decode_ok(m, &u.ok);
        case PROTO_MSG_BYE: return proto_decode_bye(m, &u.bye);
        case PROTO_MSG_MEMSTATS: return proto_decode_memstats(m, &u.memstats);
        case PROTO_MSG_EVENT: return proto_decode_event(m, &u.event);
        case PROTO_MSG_GC_RESULT: return proto_decode_gc_result(m, &u.gc);
        case PROTO_MSG_SCAVENGE_RESULT: return proto_decode_scavenge_result(m, &u.scvg);
        case PROTO_MSG_PROFILE_SNAPSHOT:
        case PROTO_MSG_PROFILE_DELTA:
                k = proto_decode_profile(m, &prof);
                for (uint32_t i = 0; k >= 0 && i < prof.buckets.n; i++)
                        ck_assert_int_eq(proto_decode_bucket(&prof.buckets.items[i], &rec), 0);
                return k;
        case PROTO_MSG_MAPPINGS:
                k = proto_decode_mappings(m, &maps);
                for (uint32_t i = 0; k >= 0 && i < maps.mappings.n; i++)
                        ck_assert_int_eq(proto_decode_mapping(&maps.mappings.items[i], &map), 0);
                return k;
        case PROTO_MSG_STATUS_REPLY:
                k = proto_decode_status_reply(m, &st);
                for (uint32_t i = 0; k >= 0 && i < st.processes.n; i++)
                        ck_assert_int_eq(proto_decode_process(&st.processes.items[i], &proc), 0);
                return k;
        default:
                return proto_decode_request(m, &u.request);
        }
}

/* Valid messages of every type with random bytes changed: the reader and
 * every decoder say yes or no, never crash (run it under ASan/UBSan). */
START_TEST(test_mutations) {
        static struct profile_record recs[3];
        static struct proto_mapping maps[1] = { { .start = 1, .limit = 2, .path = "/x", .build_id_len = 4 } };
        static struct proto_event ev = { .kind = PROTO_EVENT_GC, .text = "gc 1" };
        static struct proto_process procs[1] = { { .pid = 1, .comm = "c", .has_stats = true, .events = &ev, .n_events = 1 } };
        struct proto_hello h = { .version = 1, .role = 1, .comm = "c" };
        struct proto_profile ph = { .final = true };
        struct proto_request q = { .pid = 1, .value = 2 };
        struct memd_memstats s;
        struct out o;
        uint8_t *buf;
        unsigned seed = 777;
        int accepted = 0;

        fill_stats(&s);
        procs[0].stats = s;
        for (int i = 0; i < 3; i++)
                fill_record(&recs[i], 5 * i, i + 1);
        out_init(&o);
        ck_assert_int_eq(proto_pack_hello(&o.pk, 1, &h), 0);
        ck_assert_int_eq(proto_pack_error(&o.pk, 2, EIO, "x"), 0);
        ck_assert_int_eq(proto_pack_ok(&o.pk, 3, 5), 0);
        ck_assert_int_eq(proto_pack_memstats(&o.pk, 4, 1, 1, &s, true), 0);
        ck_assert_int_eq(proto_pack_profile(&o.pk, PROTO_MSG_PROFILE_SNAPSHOT, 5, &ph, recs, 3), 0);
        ck_assert_int_eq(proto_pack_mappings(&o.pk, 6, 0, maps, 1), 0);
        ck_assert_int_eq(proto_pack_event(&o.pk, 7, &ev), 0);
        ck_assert_int_eq(proto_pack_request(&o.pk, PROTO_MSG_SET_RATE, 8, &q), 0);
        ck_assert_int_eq(proto_pack_status_reply(&o.pk, 9, procs, 1), 0);
        ck_assert_int_eq(proto_pack_bye(&o.pk, 10, "x"), 0);
        buf = malloc(o.sb.size);
        ck_assert_ptr_nonnull(buf);

        for (int round = 0; round < 3000; round++) {
                struct proto_reader *r = NULL;
                struct proto_msg m;
                int k, flips = 1 + rand_r(&seed) % 4;

                memcpy(buf, o.sb.data, o.sb.size);
                for (int f = 0; f < flips; f++)
                        buf[rand_r(&seed) % o.sb.size] = (uint8_t) rand_r(&seed);
                ck_assert_int_eq(proto_reader_new(&r), 0);
                proto_msg_init(&m);
                k = proto_reader_feed(r, buf, o.sb.size);
                while (k >= 0 && (k = proto_reader_next(r, &m)) > 0)
                        if (decode_any(&m) >= 0)
                                accepted++;
                ck_assert(k == 0 || k == -EBADMSG || k == -EMSGSIZE);
                proto_msg_done(&m);
                proto_reader_free(r);
        }
        ck_assert_int_gt(accepted, 0);
        free(buf);
        out_done(&o);
}
END_TEST

/* Errors are sticky: a dead reader stays dead. */
START_TEST(test_sticky) {
        static const uint8_t bad[] = { 0xc1 };
        struct proto_hello h = { .version = 1, .role = 1 };
        struct proto_reader *r = NULL;
        struct proto_msg m;
        struct out o;

        out_init(&o);
        ck_assert_int_eq(proto_pack_hello(&o.pk, 1, &h), 0);
        ck_assert_int_eq(proto_reader_new(&r), 0);
        proto_msg_init(&m);
        ck_assert_int_eq(proto_reader_feed(r, bad, 1), -EBADMSG);
        ck_assert_int_eq(proto_reader_feed(r, o.sb.data, o.sb.size), -EBADMSG);
        ck_assert_int_eq(proto_reader_next(r, &m), -EBADMSG);
        proto_msg_done(&m);
        proto_reader_free(r);
        out_done(&o);
}
END_TEST

/* Announced sizes are refused from the header alone. */
START_TEST(test_oversized_announced) {
        /* { "x": str32 of 4 GiB - 1 } with no payload */
        static const uint8_t str32[] = { 0x81, 0xa1, 'x', 0xdb, 0xff, 0xff, 0xff, 0xff };
        /* { "x": bin32 of 16 MiB } */
        static const uint8_t bin32[] = { 0x81, 0xa1, 'x', 0xc6, 0x01, 0x00, 0x00, 0x00 };
        /* { "x": array32 of 4 G entries } */
        static const uint8_t arr32[] = { 0x81, 0xa1, 'x', 0xdd, 0xff, 0xff, 0xff, 0xff };
        /* map32 of 4 G pairs */
        static const uint8_t map32[] = { 0xdf, 0xff, 0xff, 0xff, 0xff };
        /* { "x": array16 of 65535 } fits the entry limit; map16 too */
        static const uint8_t ext32[] = { 0x81, 0xa1, 'x', 0xc9, 0x7f, 0xff, 0xff, 0xff, 0x01 };
        struct proto_reader *r = NULL;

        ck_assert_int_eq(frame_result(str32, sizeof(str32)), -EMSGSIZE);
        ck_assert_int_eq(frame_result(bin32, sizeof(bin32)), -EMSGSIZE);
        ck_assert_int_eq(frame_result(arr32, sizeof(arr32)), -EMSGSIZE);
        ck_assert_int_eq(frame_result(map32, sizeof(map32)), -EMSGSIZE);
        ck_assert_int_eq(frame_result(ext32, sizeof(ext32)), -EMSGSIZE);

        /* byte by byte: refused as soon as the length is complete */
        ck_assert_int_eq(proto_reader_new(&r), 0);
        for (size_t i = 0; i + 1 < sizeof(str32); i++)
                ck_assert_int_eq(proto_reader_feed(r, str32 + i, 1), 0);
        ck_assert_int_eq(proto_reader_feed(r, str32 + sizeof(str32) - 1, 1), -EMSGSIZE);
        proto_reader_free(r);
}
END_TEST

/* Sizes that are only sent, not announced: nested arrays within the entry
 * limit whose bytes add up past the frame limit.  The reader says so before
 * it has been given (let alone kept) much more than the limit. */
START_TEST(test_oversized_sent) {
        uint8_t *chunk = malloc(65536);
        struct proto_reader *r = NULL;
        size_t fed = 0;
        int k = 0;

        ck_assert_ptr_nonnull(chunk);
        ck_assert_int_eq(proto_reader_new(&r), 0);
        /* { "x": [ [str8 255 bytes] * 65535 ] * 65535 }: strings keep the object count low */
        {
                static const uint8_t head[] = { 0x81, 0xa1, 'x', 0xdc, 0xff, 0xff };
                ck_assert_int_eq(proto_reader_feed(r, head, sizeof(head)), 0);
                fed += sizeof(head);
        }
        /* one inner element: array16 of 65535 strings of 255 bytes would be
         * 16.7 MB by itself; the stream: 0xdc ff ff, then (0xd9 0xff + 255 bytes) ... */
        {
                static const uint8_t inner[] = { 0xdc, 0xff, 0xff };
                ck_assert_int_eq(proto_reader_feed(r, inner, sizeof(inner)), 0);
                fed += sizeof(inner);
        }
        for (size_t i = 0; i < 65536; i += 257) {
                if (i + 257 > 65536)
                        break;
                chunk[i] = 0xd9;
                chunk[i + 1] = 0xff;
                memset(chunk + i + 2, 'a', 255);
        }
        while (fed < 64u << 20) {
                k = proto_reader_feed(r, chunk, 65536 / 257 * 257);
                if (k < 0)
                        break;
                fed += 65536 / 257 * 257;
        }
        ck_assert_int_eq(k, -EMSGSIZE);
        ck_assert_uint_le(fed, PROTO_MAX_FRAME_BYTES);
        ck_assert_uint_gt(fed + 65536, PROTO_MAX_FRAME_BYTES);
        proto_reader_free(r);
        free(chunk);
}
END_TEST

/* Too many objects (each small) is refused long before the byte limit. */
START_TEST(test_too_many_objects) {
        uint8_t *buf = malloc(1 << 20);
        struct proto_reader *r = NULL;
        size_t fed = 0;
        int k = 0;

        ck_assert_ptr_nonnull(buf);
        ck_assert_int_eq(proto_reader_new(&r), 0);
        /* { "x": [ [0 * 65535] * 65535 ] } */
        {
                static const uint8_t head[] = { 0x81, 0xa1, 'x', 0xdc, 0xff, 0xff };
                ck_assert_int_eq(proto_reader_feed(r, head, sizeof(head)), 0);
        }
        for (size_t i = 0; i < (1 << 20); i += 65538) {
                if (i + 65538 > (1 << 20))
                        break;
                buf[i] = 0xdc;
                buf[i + 1] = 0xff;
                buf[i + 2] = 0xff;
                memset(buf + i + 3, 0, 65535);
        }
        while (fed < 32u << 20) {
                k = proto_reader_feed(r, buf, (1 << 20) / 65538 * 65538);
                if (k < 0)
                        break;
                fed += (1 << 20) / 65538 * 65538;
        }
        ck_assert_int_eq(k, -EMSGSIZE);
        ck_assert_uint_lt(fed, PROTO_MAX_FRAME_BYTES / 2); /* the object limit, not the byte limit */
        proto_reader_free(r);
        free(buf);
}
END_TEST

START_TEST(test_nesting) {
        uint8_t buf[64];
        size_t n = 0;

        buf[n++] = 0x81;
        buf[n++] = 0xa1;
        buf[n++] = 'x';
        for (int i = 0; i < 20; i++)
                buf[n++] = 0x91;
        buf[n++] = 0x00;
        ck_assert_int_eq(frame_result(buf, n), -EBADMSG);
}
END_TEST

/* Not draining the reader has a bound too. */
START_TEST(test_no_drain) {
        struct proto_reader *r = NULL;
        struct out o;
        int k = 0;

        out_init(&o);
        while (o.sb.size < (1 << 20))
                ck_assert_int_eq(proto_pack_bye(&o.pk, 1, NULL), 0);
        ck_assert_int_eq(proto_reader_new(&r), 0);
        for (int i = 0; i < 64 && k >= 0; i++)
                k = proto_reader_feed(r, o.sb.data, o.sb.size);
        ck_assert_int_eq(k, -ENOBUFS);
        proto_reader_free(r);
        out_done(&o);
}
END_TEST

/* ---- envelope and field tables ------------------------------------------- */

START_TEST(test_envelope) {
        struct out o;

        out_init(&o);
        /* unknown type */
        msgpack_pack_map(&o.pk, 2);
        pk_kv_u64(&o.pk, "t", 99);
        pk_kv_u64(&o.pk, "id", 1);
        ck_assert_int_eq(frame_result(o.sb.data, o.sb.size), -EBADMSG);
        msgpack_sbuffer_clear(&o.sb);
        msgpack_pack_map(&o.pk, 2);
        pk_kv_u64(&o.pk, "t", (uint64_t) UINT32_MAX + PROTO_MSG_HELLO);
        pk_kv_u64(&o.pk, "id", 1);
        ck_assert_int_eq(frame_result(o.sb.data, o.sb.size), -EBADMSG);
        /* missing id */
        msgpack_sbuffer_clear(&o.sb);
        msgpack_pack_map(&o.pk, 1);
        pk_kv_u64(&o.pk, "t", PROTO_MSG_BYE);
        ck_assert_int_eq(frame_result(o.sb.data, o.sb.size), -EBADMSG);
        /* type as a string */
        msgpack_sbuffer_clear(&o.sb);
        msgpack_pack_map(&o.pk, 2);
        pk_str(&o.pk, "t");
        pk_str(&o.pk, "HELLO");
        pk_kv_u64(&o.pk, "id", 1);
        ck_assert_int_eq(frame_result(o.sb.data, o.sb.size), -EBADMSG);
        /* negative id */
        msgpack_sbuffer_clear(&o.sb);
        msgpack_pack_map(&o.pk, 2);
        pk_kv_u64(&o.pk, "t", PROTO_MSG_BYE);
        pk_str(&o.pk, "id");
        msgpack_pack_int64(&o.pk, -1);
        ck_assert_int_eq(frame_result(o.sb.data, o.sb.size), -EBADMSG);
        /* a non-string key */
        msgpack_sbuffer_clear(&o.sb);
        msgpack_pack_map(&o.pk, 3);
        pk_kv_u64(&o.pk, "t", PROTO_MSG_BYE);
        pk_kv_u64(&o.pk, "id", 1);
        msgpack_pack_uint64(&o.pk, 5);
        msgpack_pack_uint64(&o.pk, 5);
        ck_assert_int_eq(frame_result(o.sb.data, o.sb.size), -EBADMSG);
        /* duplicate "t" */
        msgpack_sbuffer_clear(&o.sb);
        msgpack_pack_map(&o.pk, 3);
        pk_kv_u64(&o.pk, "t", PROTO_MSG_BYE);
        pk_kv_u64(&o.pk, "id", 1);
        pk_kv_u64(&o.pk, "t", PROTO_MSG_HELLO);
        ck_assert_int_eq(frame_result(o.sb.data, o.sb.size), -EBADMSG);
        /* fine */
        msgpack_sbuffer_clear(&o.sb);
        msgpack_pack_map(&o.pk, 2);
        pk_kv_u64(&o.pk, "id", 1);
        pk_kv_u64(&o.pk, "t", PROTO_MSG_BYE);
        ck_assert_int_eq(frame_result(o.sb.data, o.sb.size), 1);
        out_done(&o);
}
END_TEST

/* A HELLO built by hand: fields added, left out, or of the wrong type. */
enum hello_twist { TWIST_NONE, TWIST_EXTRA, TWIST_NO_ROLE, TWIST_VERSION_STR, TWIST_PID_NEG,
                   TWIST_PID_BIG, TWIST_COMM_INT, TWIST_COMM_LONG, TWIST_COMM_NUL, TWIST_COMM_BIN,
                   TWIST_DUP, TWIST_RATE_FLOAT };

static int hello_twisted(enum hello_twist t, struct proto_hello *got) {
        struct proto_reader *r = NULL;
        struct proto_msg m;
        struct out o;
        char longname[PROTO_COMM_MAX + 1];
        size_t n = 6 + (t == TWIST_EXTRA ? 2 : 0) - (t == TWIST_NO_ROLE) + (t == TWIST_DUP) + (t == TWIST_RATE_FLOAT);
        int k;

        out_init(&o);
        msgpack_pack_map(&o.pk, n);
        pk_kv_u64(&o.pk, "t", PROTO_MSG_HELLO);
        pk_kv_u64(&o.pk, "id", 1);
        if (t == TWIST_EXTRA) {
                /* a newer peer's fields, of any shape */
                pk_str(&o.pk, "future_map");
                msgpack_pack_map(&o.pk, 1);
                pk_kv_u64(&o.pk, "a", 1);
                pk_str(&o.pk, "future_bin");
                msgpack_pack_bin(&o.pk, 3);
                msgpack_pack_bin_body(&o.pk, "\0\1\2", 3);
        }
        pk_str(&o.pk, "version");
        if (t == TWIST_VERSION_STR)
                pk_str(&o.pk, "1");
        else
                msgpack_pack_uint64(&o.pk, PROTO_VERSION);
        if (t != TWIST_NO_ROLE)
                pk_kv_u64(&o.pk, "role", PROTO_ROLE_AGENT);
        pk_str(&o.pk, "pid");
        if (t == TWIST_PID_NEG)
                msgpack_pack_int64(&o.pk, -1);
        else if (t == TWIST_PID_BIG)
                msgpack_pack_uint64(&o.pk, (uint64_t) UINT32_MAX + 1);
        else
                msgpack_pack_uint64(&o.pk, 55);
        if (t == TWIST_DUP)
                pk_kv_u64(&o.pk, "pid", 56);
        if (t == TWIST_RATE_FLOAT) {
                pk_str(&o.pk, "rate_bytes");
                msgpack_pack_double(&o.pk, 1.0);
        }
        pk_str(&o.pk, "comm");
        switch (t) {
        case TWIST_COMM_INT:
                msgpack_pack_uint64(&o.pk, 1);
                break;
        case TWIST_COMM_LONG:
                memset(longname, 'c', sizeof(longname) - 1);
                longname[sizeof(longname) - 1] = 0;
                pk_str(&o.pk, longname);
                break;
        case TWIST_COMM_NUL:
                msgpack_pack_str(&o.pk, 3);
                msgpack_pack_str_body(&o.pk, "a\0b", 3);
                break;
        case TWIST_COMM_BIN:
                msgpack_pack_bin(&o.pk, 3);
                msgpack_pack_bin_body(&o.pk, "abc", 3);
                break;
        default:
                pk_str(&o.pk, "cache");
        }

        ck_assert_int_eq(proto_reader_new(&r), 0);
        proto_msg_init(&m);
        ck_assert_int_eq(proto_reader_feed(r, o.sb.data, o.sb.size), 0);
        ck_assert_int_eq(proto_reader_next(r, &m), 1);
        k = proto_decode_hello(&m, got);
        proto_msg_done(&m);
        proto_reader_free(r);
        out_done(&o);
        return k;
}

START_TEST(test_fields) {
        struct proto_hello got;

        ck_assert_int_eq(hello_twisted(TWIST_NONE, &got), 0);
        ck_assert_str_eq(got.comm, "cache");
        ck_assert_uint_eq(got.pid, 55);
        ck_assert_int_eq(hello_twisted(TWIST_EXTRA, &got), 0);
        ck_assert_str_eq(got.comm, "cache");
        ck_assert_int_eq(hello_twisted(TWIST_NO_ROLE, &got), -EBADMSG);
        ck_assert_int_eq(hello_twisted(TWIST_VERSION_STR, &got), -EBADMSG);
        ck_assert_int_eq(hello_twisted(TWIST_PID_NEG, &got), -EBADMSG);
        ck_assert_int_eq(hello_twisted(TWIST_PID_BIG, &got), -EBADMSG);
        ck_assert_int_eq(hello_twisted(TWIST_COMM_INT, &got), -EBADMSG);
        ck_assert_int_eq(hello_twisted(TWIST_COMM_LONG, &got), -EBADMSG);
        ck_assert_int_eq(hello_twisted(TWIST_COMM_NUL, &got), -EBADMSG);
        ck_assert_int_eq(hello_twisted(TWIST_COMM_BIN, &got), -EBADMSG);
        ck_assert_int_eq(hello_twisted(TWIST_DUP, &got), -EBADMSG);
        ck_assert_int_eq(hello_twisted(TWIST_RATE_FLOAT, &got), -EBADMSG);
}
END_TEST

/* MEMSTATS with one field missing, or of the wrong type / range: a good
 * message is decoded, then one value of the object is replaced. */
enum stats_twist { ST_NONE, ST_NUMGC_BIG, ST_FRACTION_STR, ST_HEAPALLOC_NEG, ST_PAUSE_257,
                   ST_PAUSE_SCALAR, ST_PAUSEEND_STR, ST_NO_THREADS, ST_TIME_FLOAT, ST_MAX };

static int memstats_twisted(enum stats_twist t) {
        static msgpack_object big[257];
        static msgpack_object strs[3];
        struct proto_memstats got;
        struct memd_memstats s;
        struct proto_reader *r = NULL;
        struct proto_msg m;
        struct out o;
        int k;

        fill_stats(&s);
        out_init(&o);
        ck_assert_int_eq(proto_pack_memstats(&o.pk, 0, 0, 1, &s, true), 0);
        r = read_msg(&o, &m, PROTO_MSG_MEMSTATS);
        for (uint32_t j = 0; j < m.body->via.map.size; j++) {
                msgpack_object_kv *kv = &m.body->via.map.ptr[j];
                msgpack_object *v = &kv->val;
                const char *key = kv->key.via.str.ptr;
                size_t kl = kv->key.via.str.size;

#define IS(name) (kl == strlen(name) && !memcmp(key, name, kl))
                if (t == ST_NUMGC_BIG && IS("NumGC"))
                        v->via.u64 = (uint64_t) UINT32_MAX + 1;
                else if (t == ST_FRACTION_STR && IS("GCCPUFraction"))
                        *v = (msgpack_object) { .type = MSGPACK_OBJECT_STR, .via.str = { 1, "1" } };
                else if (t == ST_HEAPALLOC_NEG && IS("HeapAlloc"))
                        *v = (msgpack_object) { .type = MSGPACK_OBJECT_NEGATIVE_INTEGER, .via.i64 = -1 };
                else if (t == ST_PAUSE_257 && IS("PauseNs")) {
                        for (int i = 0; i < 257; i++)
                                big[i] = (msgpack_object) { .type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = 1 };
                        v->via.array.ptr = big;
                        v->via.array.size = 257;
                } else if (t == ST_PAUSE_SCALAR && IS("PauseNs"))
                        *v = (msgpack_object) { .type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = 1 };
                else if (t == ST_PAUSEEND_STR && IS("PauseEnd")) {
                        for (int i = 0; i < 3; i++)
                                strs[i] = (msgpack_object) { .type = i == 2 ? MSGPACK_OBJECT_STR : MSGPACK_OBJECT_POSITIVE_INTEGER,
                                                             .via.str = { 1, "1" } };
                        v->via.array.ptr = strs;
                        v->via.array.size = 3;
                } else if (t == ST_NO_THREADS && IS("Threads"))
                        kv->key.via.str.size = 6; /* "Thread": unknown, so Threads is missing */
                else if (t == ST_TIME_FLOAT && IS("time_ns"))
                        *v = (msgpack_object) { .type = MSGPACK_OBJECT_FLOAT64, .via.f64 = 1.0 };
#undef IS
        }
        k = proto_decode_memstats(&m, &got);
        if (k >= 0)
                ck_assert(memcmp(&got.stats, &s, sizeof(s)) == 0);
        proto_msg_done(&m);
        proto_reader_free(r);
        out_done(&o);
        return k;
}

START_TEST(test_memstats_bad) {
        ck_assert_int_eq(memstats_twisted(ST_NONE), 0);
        for (int t = ST_NONE + 1; t < ST_MAX; t++)
                ck_assert_msg(memstats_twisted(t) == -EBADMSG, "twist %d accepted", t);
}
END_TEST

/* A bucket built by hand with a stack of `depth` pcs. */
static int profile_with_depth(uint32_t depth, bool pc_string) {
        struct proto_reader *r = NULL;
        struct proto_profile gp;
        struct proto_msg m;
        struct out o;
        int k;

        out_init(&o);
        msgpack_pack_map(&o.pk, 2 + 3);
        pk_kv_u64(&o.pk, "t", PROTO_MSG_PROFILE_DELTA);
        pk_kv_u64(&o.pk, "id", 0);
        pk_kv_u64(&o.pk, "rate_bytes", 1);
        pk_kv_u64(&o.pk, "time_ns", 1);
        pk_str(&o.pk, "buckets");
        msgpack_pack_array(&o.pk, 1);
        msgpack_pack_map(&o.pk, 9);
        pk_str(&o.pk, "stack");
        msgpack_pack_array(&o.pk, depth);
        for (uint32_t i = 0; i < depth; i++) {
                if (pc_string && i == depth - 1)
                        pk_str(&o.pk, "0x1");
                else
                        msgpack_pack_uint64(&o.pk, 0x400000 + i);
        }
        pk_kv_u64(&o.pk, "alloc_count", 1);
        pk_kv_u64(&o.pk, "alloc_bytes", 1);
        pk_kv_u64(&o.pk, "free_count", 1);
        pk_kv_u64(&o.pk, "free_bytes", 1);
        pk_kv_u64(&o.pk, "alloc_objects_est", 1); /* ints are fine for doubles */
        pk_str(&o.pk, "alloc_bytes_est");
        msgpack_pack_double(&o.pk, 1.5);
        pk_str(&o.pk, "free_objects_est");
        msgpack_pack_float(&o.pk, 2.5f);
        pk_str(&o.pk, "free_bytes_est");
        msgpack_pack_int64(&o.pk, -3);

        ck_assert_int_eq(proto_reader_new(&r), 0);
        proto_msg_init(&m);
        ck_assert_int_eq(proto_reader_feed(r, o.sb.data, o.sb.size), 0);
        ck_assert_int_eq(proto_reader_next(r, &m), 1);
        k = proto_decode_profile(&m, &gp);
        if (k >= 0) {
                struct profile_record rec;

                ck_assert_int_eq(proto_decode_bucket(&gp.buckets.items[0], &rec), 0);
                ck_assert_uint_eq(rec.depth, depth);
                ck_assert(rec.alloc_objects_est == 1.0);
                ck_assert(rec.free_objects_est == 2.5);
                ck_assert(rec.free_bytes_est == -3.0);
        }
        proto_msg_done(&m);
        proto_reader_free(r);
        out_done(&o);
        return k;
}

START_TEST(test_stack_depth) {
        ck_assert_int_eq(profile_with_depth(0, false), 0);
        ck_assert_int_eq(profile_with_depth(PROTO_MAX_STACK_DEPTH, false), 0);
        ck_assert_int_eq(profile_with_depth(PROTO_MAX_STACK_DEPTH + 1, false), -EBADMSG);
        ck_assert_int_eq(profile_with_depth(1000, false), -EBADMSG);
        ck_assert_int_eq(profile_with_depth(3, true), -EBADMSG);
}
END_TEST

START_TEST(test_encoder_limits) {
        static struct proto_mapping map;
        char *longtext = malloc(PROTO_MAX_STRING_BYTES + 2);
        struct out o;

        ck_assert_ptr_nonnull(longtext);
        memset(longtext, 'x', PROTO_MAX_STRING_BYTES + 1);
        longtext[PROTO_MAX_STRING_BYTES + 1] = 0;
        out_init(&o);
        ck_assert_int_eq(proto_pack_error(&o.pk, 1, EIO, longtext), -EINVAL);
        longtext[PROTO_MAX_STRING_BYTES] = 0;
        msgpack_sbuffer_clear(&o.sb);
        ck_assert_int_eq(proto_pack_error(&o.pk, 1, EIO, longtext), 0);
        ck_assert_int_eq(frame_result(o.sb.data, o.sb.size), 1);
        map.build_id_len = PROTO_MAX_BUILD_ID_BYTES + 1;
        ck_assert_int_eq(proto_pack_mappings(&o.pk, 1, 0, &map, 1), -EINVAL);
        ck_assert_int_eq(proto_pack_mappings(&o.pk, 1, 0, &map, PROTO_MAX_MAPPINGS + 1), -E2BIG);
        ck_assert_uint_ge(proto_bucket_bytes_max(), 64 * 9);
        out_done(&o);
        free(longtext);
}
END_TEST

/* The bound given for one bucket holds for the worst bucket. */
START_TEST(test_bucket_bound) {
        static struct profile_record rec;
        struct proto_profile ph = {};
        struct out o, e;

        fill_record(&rec, PROTO_MAX_STACK_DEPTH, UINT64_MAX / 1000);
        for (int i = 0; i < PROTO_MAX_STACK_DEPTH; i++)
                rec.pcs[i] = UINTPTR_MAX - i;
        rec.alloc_objects_est = NAN;
        out_init(&o);
        out_init(&e);
        ck_assert_int_eq(proto_pack_profile(&e.pk, PROTO_MSG_PROFILE_DELTA, 0, &ph, &rec, 0), 0);
        ck_assert_int_eq(proto_pack_profile(&o.pk, PROTO_MSG_PROFILE_DELTA, 0, &ph, &rec, 1), 0);
        ck_assert_uint_le(o.sb.size - e.sb.size, proto_bucket_bytes_max());
        out_done(&o);
        out_done(&e);
}
END_TEST

static Suite *proto_suite(void) {
        Suite *s = suite_create("proto");
        TCase *tc = tcase_create("messages");

        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_type_names);
        tcase_add_test(tc, test_hello);
        tcase_add_test(tc, test_hello_claims_other_pid);
        tcase_add_test(tc, test_hello_ok_error_ok_bye);
        tcase_add_test(tc, test_memstats);
        tcase_add_test(tc, test_memstats_go_names);
        tcase_add_test(tc, test_profile);
        tcase_add_test(tc, test_mappings);
        tcase_add_test(tc, test_event);
        tcase_add_test(tc, test_requests);
        tcase_add_test(tc, test_profile_data);
        tcase_add_test(tc, test_results);
        tcase_add_test(tc, test_status_reply);
        tcase_add_test(tc, test_envelope);
        tcase_add_test(tc, test_fields);
        tcase_add_test(tc, test_memstats_bad);
        tcase_add_test(tc, test_stack_depth);
        tcase_add_test(tc, test_encoder_limits);
        tcase_add_test(tc, test_bucket_bound);
        suite_add_tcase(s, tc);

        tc = tcase_create("framing");
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_bytewise);
        tcase_add_test(tc, test_big_message);
        tcase_add_test(tc, test_msg_outlives_feed);
        tcase_add_test(tc, test_garbage);
        tcase_add_test(tc, test_mutations);
        tcase_add_test(tc, test_sticky);
        tcase_add_test(tc, test_oversized_announced);
        tcase_add_test(tc, test_oversized_sent);
        tcase_add_test(tc, test_too_many_objects);
        tcase_add_test(tc, test_nesting);
        tcase_add_test(tc, test_no_drain);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_main(proto_suite(), "test-proto", false);
}
