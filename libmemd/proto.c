/* proto.c - the memd wire protocol: a bounded msgpack framer, table-driven decoders, encoders. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

#define PACK(call) do { if ((call) < 0) return -ENOMEM; } while (0)
#define FIELD_PTR(base, off) ((void *) ((char *) (base) + (off)))
#define FIELD_CPTR(base, off) ((const void *) ((const char *) (base) + (off)))

/* ---- types --------------------------------------------------------------- */

static const char *const type_names[] = {
        [PROTO_MSG_HELLO] = "HELLO",
        [PROTO_MSG_HELLO_OK] = "HELLO_OK",
        [PROTO_MSG_ERROR] = "ERROR",
        [PROTO_MSG_OK] = "OK",
        [PROTO_MSG_BYE] = "BYE",
        [PROTO_MSG_MEMSTATS] = "MEMSTATS",
        [PROTO_MSG_PROFILE_SNAPSHOT] = "PROFILE_SNAPSHOT",
        [PROTO_MSG_PROFILE_DELTA] = "PROFILE_DELTA",
        [PROTO_MSG_MAPPINGS] = "MAPPINGS",
        [PROTO_MSG_EVENT] = "EVENT",
        [PROTO_MSG_GC_REQUEST] = "GC_REQUEST",
        [PROTO_MSG_GC_RESULT] = "GC_RESULT",
        [PROTO_MSG_SCAVENGE_REQUEST] = "SCAVENGE_REQUEST",
        [PROTO_MSG_SCAVENGE_RESULT] = "SCAVENGE_RESULT",
        [PROTO_MSG_PROFILE_REQUEST] = "PROFILE_REQUEST",
        [PROTO_MSG_SET_RATE] = "SET_RATE",
        [PROTO_MSG_SET_MEMORY_LIMIT] = "SET_MEMORY_LIMIT",
        [PROTO_MSG_SET_POLICY] = "SET_POLICY",
        [PROTO_MSG_SET_GC_PERCENT] = "SET_GC_PERCENT",
        [PROTO_MSG_STATUS_REQUEST] = "STATUS_REQUEST",
        [PROTO_MSG_STATUS_REPLY] = "STATUS_REPLY",
        [PROTO_MSG_SUBSCRIBE] = "SUBSCRIBE",
        [PROTO_MSG_PROFILE_DATA] = "PROFILE_DATA",
};

const char *proto_msg_type_name(uint32_t type) {
        if (type >= sizeof(type_names) / sizeof(type_names[0]))
                return NULL;
        return type_names[type];
}

bool proto_msg_type_known(uint32_t type) {
        return proto_msg_type_name(type) != NULL;
}

/* ---- field tables ---------------------------------------------------------- */

#define F(key, type, st, member, req) { key, PROTO_T_##type, offsetof(st, member), req, 0, NULL }
#define FS(key, st, member, req) { key, PROTO_T_STRING, offsetof(st, member), req, sizeof(((st *) 0)->member), NULL }
#define FA(key, type, st, member, req, max) { key, PROTO_T_##type, offsetof(st, member), req, max, NULL }
#define FC(key, st, member, req, fn) { key, PROTO_T_CUSTOM, offsetof(st, member), req, 0, fn }
#define FEND { NULL, 0, 0, false, 0, NULL }

/* MemStats: Go's names; the same list for the flat MEMSTATS message and the
 * nested "memstats" map of STATUS_REPLY.  The two 256-entry pause arrays are
 * optional in both: they are most of the bytes and most of the decoding
 * work, and change only with NumGC (senders: docs/protocol.md). */
#define MEMSTATS_SCALARS(ST, M)                                                  \
        F("Alloc", U64, ST, M.Alloc, true),                                      \
        F("TotalAlloc", U64, ST, M.TotalAlloc, true),                            \
        F("Sys", U64, ST, M.Sys, true),                                          \
        F("Mallocs", U64, ST, M.Mallocs, true),                                  \
        F("Frees", U64, ST, M.Frees, true),                                      \
        F("HeapAlloc", U64, ST, M.HeapAlloc, true),                              \
        F("HeapSys", U64, ST, M.HeapSys, true),                                  \
        F("HeapIdle", U64, ST, M.HeapIdle, true),                                \
        F("HeapInuse", U64, ST, M.HeapInuse, true),                              \
        F("HeapReleased", U64, ST, M.HeapReleased, true),                        \
        F("HeapObjects", U64, ST, M.HeapObjects, true),                          \
        F("BuckHashSys", U64, ST, M.BuckHashSys, true),                          \
        F("NextGC", U64, ST, M.NextGC, true),                                    \
        F("LastGC", U64, ST, M.LastGC, true),                                    \
        F("PauseTotalNs", U64, ST, M.PauseTotalNs, true),                        \
        F("NumGC", U32, ST, M.NumGC, true),                                      \
        F("NumForcedGC", U32, ST, M.NumForcedGC, true),                          \
        F("GCCPUFraction", DOUBLE, ST, M.GCCPUFraction, true),                   \
        F("RSS", U64, ST, M.RSS, true),                                          \
        F("RssAnon", U64, ST, M.RssAnon, true),                                  \
        F("LazyFree", U64, ST, M.LazyFree, true),                                \
        F("Threads", U32, ST, M.Threads, true)
#define MEMSTATS_PAUSES(ST, M)                                                   \
        FA("PauseNs", U64_ARRAY, ST, M.PauseNs, false, PROTO_PAUSE_ENTRIES),     \
        FA("PauseEnd", U64_ARRAY, ST, M.PauseEnd, false, PROTO_PAUSE_ENTRIES)

struct memstats_box { struct memd_memstats s; };

static const struct proto_field memstats_table[] = {
        MEMSTATS_SCALARS(struct memstats_box, s),
        MEMSTATS_PAUSES(struct memstats_box, s),
        FEND
};

static const struct proto_field memstats_scalar_table[] = {
        MEMSTATS_SCALARS(struct memstats_box, s),
        FEND
};

static const struct proto_field memstats_pause_table[] = {
        MEMSTATS_PAUSES(struct memstats_box, s),
        FEND
};

static const struct proto_field memstats_msg_table[] = {
        F("time_ns", I64, struct proto_memstats, time_ns, true),
        F("pid", U32, struct proto_memstats, pid, false),
        MEMSTATS_SCALARS(struct proto_memstats, stats),
        MEMSTATS_PAUSES(struct proto_memstats, stats),
        FEND
};

/* Whether map o has key (a str); o was validated by proto_decode. */
static bool map_has_key(const msgpack_object *o, const char *key) {
        size_t len = strlen(key);

        for (uint32_t i = 0; i < o->via.map.size; i++) {
                const msgpack_object *k = &o->via.map.ptr[i].key;
                if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == len && !memcmp(k->via.str.ptr, key, len))
                        return true;
        }
        return false;
}

/* The pause arrays come both or neither. */
static int pauses_present(const msgpack_object *o, bool *ret_has) {
        bool ns = map_has_key(o, "PauseNs"), end = map_has_key(o, "PauseEnd");

        if (ns != end)
                return -EBADMSG;
        *ret_has = ns;
        return 0;
}

/* Packs MemStats map entries (no header): the scalars, then the pauses. */
static int pack_memstats_fields(msgpack_packer *pk, const struct memd_memstats *s, bool with_pauses) {
        int r = proto_pack_fields(pk, memstats_scalar_table, s);

        if (r >= 0 && with_pauses)
                r = proto_pack_fields(pk, memstats_pause_table, s);
        return r;
}

static size_t memstats_entries(bool with_pauses) {
        return proto_table_len(memstats_scalar_table) + (with_pauses ? proto_table_len(memstats_pause_table) : 0);
}

static const struct proto_field envelope_table[] = {
        F("t", U32, struct proto_msg, type, true),
        F("id", U64, struct proto_msg, id, true),
        FEND
};

static const struct proto_field hello_table[] = {
        F("version", U32, struct proto_hello, version, true),
        F("role", U32, struct proto_hello, role, true),
        F("pid", U32, struct proto_hello, pid, false),
        FS("comm", struct proto_hello, comm, false),
        FS("software", struct proto_hello, software, false),
        F("rate_bytes", U64, struct proto_hello, rate_bytes, false),
        FEND
};

static const struct proto_field hello_ok_table[] = {
        F("version", U32, struct proto_hello_ok, version, true),
        F("pid", U32, struct proto_hello_ok, pid, false),
        F("uid", U32, struct proto_hello_ok, uid, false),
        FS("software", struct proto_hello_ok, software, false),
        FEND
};

static const struct proto_field error_table[] = {
        F("code", U32, struct proto_error, code, true),
        FS("text", struct proto_error, text, true),
        FEND
};

static const struct proto_field ok_table[] = {
        F("previous", U64, struct proto_ok, previous, false),
        FEND
};

static const struct proto_field bye_table[] = {
        FS("reason", struct proto_bye, reason, false),
        FEND
};

static int decode_pcs(const msgpack_object *o, void *ret);
static int decode_build_id(const msgpack_object *o, void *ret);

static const struct proto_field snapshot_table[] = {
        F("pid", U32, struct proto_profile, pid, false),
        F("generation", U64, struct proto_profile, generation, true),
        F("part", U32, struct proto_profile, part, true),
        F("final", BOOL, struct proto_profile, final, true),
        F("rate_bytes", U64, struct proto_profile, rate_bytes, true),
        F("time_ns", I64, struct proto_profile, time_ns, true),
        FA("buckets", ARRAY, struct proto_profile, buckets, true, PROTO_MAX_BUCKETS),
        FEND
};

static const struct proto_field delta_table[] = {
        F("pid", U32, struct proto_profile, pid, false),
        F("rate_bytes", U64, struct proto_profile, rate_bytes, true),
        F("time_ns", I64, struct proto_profile, time_ns, true),
        FA("buckets", ARRAY, struct proto_profile, buckets, true, PROTO_MAX_BUCKETS),
        FEND
};

/* The figures of struct profile_record under its own member names. */
static const struct proto_field bucket_table[] = {
        FC("stack", struct profile_record, alloc_count, true, decode_pcs), /* offset unused */
        F("alloc_count", U64, struct profile_record, alloc_count, true),
        F("alloc_bytes", U64, struct profile_record, alloc_bytes, true),
        F("free_count", U64, struct profile_record, free_count, true),
        F("free_bytes", U64, struct profile_record, free_bytes, true),
        F("alloc_objects_est", DOUBLE, struct profile_record, alloc_objects_est, true),
        F("alloc_bytes_est", DOUBLE, struct profile_record, alloc_bytes_est, true),
        F("free_objects_est", DOUBLE, struct profile_record, free_objects_est, true),
        F("free_bytes_est", DOUBLE, struct profile_record, free_bytes_est, true),
        FEND
};

static const struct proto_field mappings_table[] = {
        F("pid", U32, struct proto_mappings, pid, false),
        FA("mappings", ARRAY, struct proto_mappings, mappings, true, PROTO_MAX_MAPPINGS),
        FEND
};

static const struct proto_field mapping_table[] = {
        F("start", U64, struct proto_mapping, start, true),
        F("limit", U64, struct proto_mapping, limit, true),
        F("offset", U64, struct proto_mapping, offset, true),
        FS("path", struct proto_mapping, path, true),
        FC("build_id", struct proto_mapping, build_id, false, decode_build_id),
        FEND
};

static const struct proto_field event_table[] = {
        F("kind", U32, struct proto_event, kind, true),
        F("time_ns", I64, struct proto_event, time_ns, true),
        FS("text", struct proto_event, text, true),
        F("pid", U32, struct proto_event, pid, false),
        F("forced", BOOL, struct proto_event, forced, false),
        F("seq", U64, struct proto_event, seq, false),
        F("duration_ns", U64, struct proto_event, duration_ns, false),
        F("heap_before_bytes", U64, struct proto_event, heap_before_bytes, false),
        F("heap_reclaimed_bytes", U64, struct proto_event, heap_reclaimed_bytes, false),
        F("heap_live_bytes", U64, struct proto_event, heap_live_bytes, false),
        F("goal_bytes", U64, struct proto_event, goal_bytes, false),
        F("released_bytes", U64, struct proto_event, released_bytes, false),
        F("heap_inuse_bytes", U64, struct proto_event, heap_inuse_bytes, false),
        F("heap_idle_bytes", U64, struct proto_event, heap_idle_bytes, false),
        F("heap_sys_bytes", U64, struct proto_event, heap_sys_bytes, false),
        FEND
};

static const struct proto_field request_table[] = {
        F("pid", U32, struct proto_request, pid, false),
        F("brief", BOOL, struct proto_request, brief, false),
        FEND
};

static const struct proto_field scavenge_request_table[] = {
        F("pid", U32, struct proto_request, pid, false),
        F("auto", BOOL, struct proto_request, automatic, false),
        F("scavenge_only", BOOL, struct proto_request, scavenge_only, false),
        FEND
};

static const struct proto_field profile_request_table[] = {
        F("pid", U32, struct proto_request, pid, false),
        F("format", U32, struct proto_request, format, false),
        F("fd", BOOL, struct proto_request, fd, false),
        FEND
};

static const struct proto_field profile_data_table[] = {
        F("pid", U32, struct proto_profile_data, pid, false),
        F("format", U32, struct proto_profile_data, format, true),
        F("part", U32, struct proto_profile_data, part, true),
        F("final", BOOL, struct proto_profile_data, final, true),
        FA("data", BIN, struct proto_profile_data, data, true, PROTO_DATA_PART_BYTES),
        F("fd", BOOL, struct proto_profile_data, fd, false),
        F("size", U64, struct proto_profile_data, size, false),
        FEND
};

static const struct proto_field set_rate_table[] = {
        F("pid", U32, struct proto_request, pid, false),
        F("rate_bytes", U64, struct proto_request, value, true),
        FEND
};

static const struct proto_field set_policy_table[] = {
        F("pid", U32, struct proto_request, pid, false),
        FS("settings", struct proto_request, settings, true),
        FEND
};

static const struct proto_field set_gc_percent_table[] = {
        F("pid", U32, struct proto_request, pid, false),
        F("gc_percent", I64, struct proto_request, gc_percent, true),
        FEND
};

static const struct proto_field set_limit_table[] = {
        F("pid", U32, struct proto_request, pid, false),
        F("limit_bytes", U64, struct proto_request, value, true),
        FEND
};

static const struct proto_field gc_result_table[] = {
        F("pid", U32, struct proto_gc_result, pid, false),
        F("freed_bytes", U64, struct proto_gc_result, freed_bytes, true),
        F("heap_before_bytes", U64, struct proto_gc_result, heap_before_bytes, false),
        F("heap_after_bytes", U64, struct proto_gc_result, heap_after_bytes, false),
        F("duration_ns", U64, struct proto_gc_result, duration_ns, false),
        FS("text", struct proto_gc_result, text, false),
        FEND
};

static const struct proto_field scavenge_result_table[] = {
        F("pid", U32, struct proto_scavenge_result, pid, false),
        F("released_bytes", U64, struct proto_scavenge_result, released_bytes, true),
        F("rss_before_bytes", U64, struct proto_scavenge_result, rss_before_bytes, false),
        F("rss_after_bytes", U64, struct proto_scavenge_result, rss_after_bytes, false),
        F("duration_ns", U64, struct proto_scavenge_result, duration_ns, false),
        FS("text", struct proto_scavenge_result, text, false),
        FEND
};

static const struct proto_field status_reply_table[] = {
        FA("processes", ARRAY, struct proto_status_reply, processes, true, PROTO_MAX_PROCESSES),
        FEND
};

static int decode_process_stats(const msgpack_object *o, void *ret);

/* Scalar part of a process entry (packed by proto_pack_fields), then the
 * nested parts (packed by hand). */
#define PROCESS_SCALAR_FIELDS                                                    \
        F("pid", U32, struct proto_process, pid, true),                          \
        F("uid", U32, struct proto_process, uid, true),                          \
        FS("comm", struct proto_process, comm, true),                            \
        FS("unit", struct proto_process, unit, false),                           \
        FS("exe", struct proto_process, exe, false),                             \
        F("attached_ns", I64, struct proto_process, attached_ns, false),         \
        F("stats_time_ns", I64, struct proto_process, stats_time_ns, false),     \
        F("limit_bytes", U64, struct proto_process, limit_bytes, false),         \
        F("rate_bytes", U64, struct proto_process, rate_bytes, false),           \
        F("last_gc_ns", I64, struct proto_process, last_gc_ns, false),           \
        F("last_scvg_ns", I64, struct proto_process, last_scvg_ns, false),       \
        F("pss_bytes", U64, struct proto_process, pss_bytes, false),             \
        F("rss_anon_bytes", U64, struct proto_process, rss_anon_bytes, false),   \
        F("rss_file_bytes", U64, struct proto_process, rss_file_bytes, false),   \
        F("rss_shmem_bytes", U64, struct proto_process, rss_shmem_bytes, false), \
        F("swap_bytes", U64, struct proto_process, swap_bytes, false),           \
        F("lazyfree_bytes", U64, struct proto_process, lazyfree_bytes, false),   \
        F("profile_buckets", U64, struct proto_process, profile_buckets, false), \
        F("profile_alloc_objects", U64, struct proto_process, profile_alloc_objects, false), \
        F("profile_alloc_bytes", U64, struct proto_process, profile_alloc_bytes, false),     \
        F("profile_inuse_objects", U64, struct proto_process, profile_inuse_objects, false), \
        F("profile_inuse_bytes", U64, struct proto_process, profile_inuse_bytes, false), \
        F("exited_ns", I64, struct proto_process, exited_ns, false),             \
        F("idle_max_bytes", U64, struct proto_process, idle_max_bytes, false),   \
        F("idle_timeout_ns", U64, struct proto_process, idle_timeout_ns, false), \
        F("allowance_bytes", U64, struct proto_process, allowance_bytes, false), \
        F("policy_actions", U64, struct proto_process, policy_actions, false),   \
        FS("policy", struct proto_process, policy, false),                       \
        FS("policy_last", struct proto_process, policy_last, false),             \
        F("rss_bytes", U64, struct proto_process, rss_bytes, false),             \
        F("heap_inuse_bytes", U64, struct proto_process, heap_inuse_bytes, false), \
        F("heap_idle_bytes", U64, struct proto_process, heap_idle_bytes, false), \
        F("heap_released_bytes", U64, struct proto_process, heap_released_bytes, false)

static const struct proto_field process_scalar_table[] = {
        PROCESS_SCALAR_FIELDS,
        FEND
};

static const struct proto_field process_table[] = {
        PROCESS_SCALAR_FIELDS,
        FC("memstats", struct proto_process, stats, false, decode_process_stats),
        FA("events", ARRAY, struct proto_process, event_view, false, PROTO_MAX_EVENTS),
        FEND
};

/* ---- decoder --------------------------------------------------------------- */

size_t proto_table_len(const struct proto_field *table) {
        size_t n = 0;

        while (table[n].key)
                n++;
        return n;
}

static bool key_is(const msgpack_object *k, const char *key) {
        size_t l = strlen(key);

        return k->via.str.size == l && memcmp(k->via.str.ptr, key, l) == 0;
}

static int decode_u64(const msgpack_object *o, uint64_t *ret) {
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                return -EBADMSG;
        *ret = o->via.u64;
        return 0;
}

static int decode_one(const msgpack_object *o, const struct proto_field *f, void *p) {
        uint64_t u;
        int r;

        switch (f->type) {
        case PROTO_T_U64:
                return decode_u64(o, p);
        case PROTO_T_U32:
                r = decode_u64(o, &u);
                if (r < 0)
                        return r;
                if (u > UINT32_MAX)
                        return -EBADMSG;
                *(uint32_t *) p = (uint32_t) u;
                return 0;
        case PROTO_T_I64:
                if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
                        *(int64_t *) p = o->via.i64;
                else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
                        *(int64_t *) p = (int64_t) o->via.u64;
                else
                        return -EBADMSG;
                return 0;
        case PROTO_T_DOUBLE:
                if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64)
                        *(double *) p = o->via.f64;
                else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                        *(double *) p = (double) o->via.u64;
                else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
                        *(double *) p = (double) o->via.i64;
                else
                        return -EBADMSG;
                return 0;
        case PROTO_T_BOOL:
                if (o->type != MSGPACK_OBJECT_BOOLEAN)
                        return -EBADMSG;
                *(bool *) p = o->via.boolean;
                return 0;
        case PROTO_T_STRING:
                if (o->type != MSGPACK_OBJECT_STR)
                        return -EBADMSG;
                if (o->via.str.size >= f->size || o->via.str.size > PROTO_MAX_STRING_BYTES)
                        return -EBADMSG;
                if (o->via.str.size > 0 && memchr(o->via.str.ptr, 0, o->via.str.size))
                        return -EBADMSG;
                /* msgpack-c gives an empty string a NULL pointer at times. */
                if (o->via.str.size > 0)
                        memcpy(p, o->via.str.ptr, o->via.str.size);
                ((char *) p)[o->via.str.size] = 0;
                return 0;
        case PROTO_T_U64_ARRAY: {
                uint64_t *a = p;

                if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > f->size)
                        return -EBADMSG;
                for (uint32_t i = 0; i < o->via.array.size; i++) {
                        r = decode_u64(&o->via.array.ptr[i], &a[i]);
                        if (r < 0)
                                return r;
                }
                memset(a + o->via.array.size, 0, (f->size - o->via.array.size) * sizeof(uint64_t));
                return 0;
        }
        case PROTO_T_ARRAY: {
                struct proto_array *a = p;

                if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > f->size)
                        return -EBADMSG;
                a->items = o->via.array.ptr;
                a->n = o->via.array.size;
                return 0;
        }
        case PROTO_T_MAP:
                if (o->type != MSGPACK_OBJECT_MAP)
                        return -EBADMSG;
                *(const msgpack_object **) p = o;
                return 0;
        case PROTO_T_CUSTOM:
                return f->decode ? f->decode(o, p) : -EINVAL;
        case PROTO_T_BIN: {
                struct proto_bin *b = p;

                if (o->type != MSGPACK_OBJECT_BIN || o->via.bin.size > f->size)
                        return -EBADMSG;
                b->ptr = o->via.bin.ptr;
                b->len = o->via.bin.size;
                return 0;
        }
        }
        return -EINVAL;
}

int proto_decode(const msgpack_object *o, const struct proto_field *table, void *out) {
        uint64_t seen = 0;
        size_t n = proto_table_len(table);
        int r;

        if (n > PROTO_FIELD_MAX)
                return -EINVAL;
        if (!o || o->type != MSGPACK_OBJECT_MAP)
                return -EBADMSG;

        for (uint32_t i = 0; i < o->via.map.size; i++) {
                const msgpack_object_kv *kv = &o->via.map.ptr[i];
                size_t j;

                if (kv->key.type != MSGPACK_OBJECT_STR)
                        return -EBADMSG;
                for (j = 0; j < n; j++)
                        if (key_is(&kv->key, table[j].key))
                                break;
                if (j == n)
                        continue; /* unknown key: a newer peer's field */
                if (seen & (UINT64_C(1) << j))
                        return -EBADMSG;
                seen |= UINT64_C(1) << j;
                r = decode_one(&kv->val, &table[j], FIELD_PTR(out, table[j].offset));
                if (r < 0)
                        return r;
        }

        for (size_t j = 0; j < n; j++)
                if (table[j].required && !(seen & (UINT64_C(1) << j)))
                        return -EBADMSG;
        return 0;
}

/* "stack": array of <= 64 pcs, leaf first; fills pcs[] and depth of the record. */
static int decode_pcs(const msgpack_object *o, void *ret) {
        struct profile_record *rec = (struct profile_record *) ((char *) ret - offsetof(struct profile_record, alloc_count));
        uint64_t pc;
        int r;

        if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > PROTO_MAX_STACK_DEPTH)
                return -EBADMSG;
        for (uint32_t i = 0; i < o->via.array.size; i++) {
                r = decode_u64(&o->via.array.ptr[i], &pc);
                if (r < 0)
                        return r;
                if (pc > UINTPTR_MAX)
                        return -EBADMSG;
                rec->pcs[i] = (uintptr_t) pc;
        }
        rec->depth = o->via.array.size;
        return 0;
}

static int decode_build_id(const msgpack_object *o, void *ret) {
        struct proto_mapping *m = (struct proto_mapping *) ((char *) ret - offsetof(struct proto_mapping, build_id));

        if (o->type != MSGPACK_OBJECT_BIN || o->via.bin.size > PROTO_MAX_BUILD_ID_BYTES)
                return -EBADMSG;
        if (o->via.bin.size > 0)
                memcpy(m->build_id, o->via.bin.ptr, o->via.bin.size);
        m->build_id_len = o->via.bin.size;
        return 0;
}

static int decode_process_stats(const msgpack_object *o, void *ret) {
        struct proto_process *p = (struct proto_process *) ((char *) ret - offsetof(struct proto_process, stats));
        int r;

        r = proto_decode(o, memstats_table, &p->stats);
        if (r >= 0)
                r = pauses_present(o, &p->has_pauses);
        if (r < 0)
                return r;
        p->has_stats = true;
        return 0;
}

/* ---- encoder ------------------------------------------------------------- */

static int pack_str(msgpack_packer *pk, const char *s) {
        size_t l = s ? strlen(s) : 0;

        if (l > PROTO_MAX_STRING_BYTES)
                return -EINVAL;
        PACK(msgpack_pack_str(pk, l));
        PACK(msgpack_pack_str_body(pk, s ? s : "", l));
        return 0;
}

static int pack_key(msgpack_packer *pk, const char *key) {
        return pack_str(pk, key);
}

static int pack_kv_u64(msgpack_packer *pk, const char *key, uint64_t v) {
        int r = pack_key(pk, key);

        if (r < 0)
                return r;
        PACK(msgpack_pack_uint64(pk, v));
        return 0;
}

static int pack_kv_i64(msgpack_packer *pk, const char *key, int64_t v) {
        int r = pack_key(pk, key);

        if (r < 0)
                return r;
        PACK(msgpack_pack_int64(pk, v));
        return 0;
}

static int pack_kv_str(msgpack_packer *pk, const char *key, const char *s) {
        int r = pack_key(pk, key);

        if (r < 0)
                return r;
        return pack_str(pk, s);
}

static int pack_kv_bool(msgpack_packer *pk, const char *key, bool b) {
        int r = pack_key(pk, key);

        if (r < 0)
                return r;
        PACK(b ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
        return 0;
}

/* The map header and the envelope; n_fields is the body's field count. */
static int pack_begin(msgpack_packer *pk, uint32_t type, uint64_t id, size_t n_fields) {
        int r;

        PACK(msgpack_pack_map(pk, 2 + n_fields));
        r = pack_kv_u64(pk, "t", type);
        if (r < 0)
                return r;
        return pack_kv_u64(pk, "id", id);
}

/* An optional scalar or string field holding its default (0, false, ""):
 * a sparse packer leaves it out, and the decoder reads it back as that. */
static bool field_is_default(const struct proto_field *f, const void *in) {
        const void *p = FIELD_CPTR(in, f->offset);

        if (f->required)
                return false;
        switch (f->type) {
        case PROTO_T_U64:
                return *(const uint64_t *) p == 0;
        case PROTO_T_U32:
                return *(const uint32_t *) p == 0;
        case PROTO_T_I64:
                return *(const int64_t *) p == 0;
        case PROTO_T_DOUBLE:
                return *(const double *) p == 0;
        case PROTO_T_BOOL:
                return !*(const bool *) p;
        case PROTO_T_STRING:
                return *(const char *) p == 0;
        default:
                return false;
        }
}

static size_t sparse_len(const struct proto_field *table, const void *in) {
        size_t n = 0;

        for (const struct proto_field *f = table; f->key; f++)
                n += !field_is_default(f, in);
        return n;
}

static int pack_fields(msgpack_packer *pk, const struct proto_field *table, const void *in, bool sparse) {
        int r;

        for (const struct proto_field *f = table; f->key; f++) {
                const void *p = FIELD_CPTR(in, f->offset);

                if (sparse && field_is_default(f, in))
                        continue;
                r = pack_key(pk, f->key);
                if (r < 0)
                        return r;
                switch (f->type) {
                case PROTO_T_U64:
                        PACK(msgpack_pack_uint64(pk, *(const uint64_t *) p));
                        break;
                case PROTO_T_U32:
                        PACK(msgpack_pack_uint32(pk, *(const uint32_t *) p));
                        break;
                case PROTO_T_I64:
                        PACK(msgpack_pack_int64(pk, *(const int64_t *) p));
                        break;
                case PROTO_T_DOUBLE:
                        PACK(msgpack_pack_double(pk, *(const double *) p));
                        break;
                case PROTO_T_BOOL:
                        PACK(*(const bool *) p ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
                        break;
                case PROTO_T_BIN: {
                        const struct proto_bin *b = p;

                        if (b->len > f->size)
                                return -EINVAL;
                        PACK(msgpack_pack_bin(pk, b->len));
                        if (b->len)
                                PACK(msgpack_pack_bin_body(pk, b->ptr, b->len));
                        break;
                }
                case PROTO_T_STRING: {
                        size_t l = strnlen(p, f->size);

                        if (l >= f->size || l > PROTO_MAX_STRING_BYTES)
                                return -EINVAL;
                        PACK(msgpack_pack_str(pk, l));
                        PACK(msgpack_pack_str_body(pk, p, l));
                        break;
                }
                case PROTO_T_U64_ARRAY:
                        PACK(msgpack_pack_array(pk, f->size));
                        for (size_t i = 0; i < f->size; i++)
                                PACK(msgpack_pack_uint64(pk, ((const uint64_t *) p)[i]));
                        break;
                default:
                        return -EINVAL;
                }
        }
        return 0;
}

int proto_pack_fields(msgpack_packer *pk, const struct proto_field *table, const void *in) {
        return pack_fields(pk, table, in, false);
}

static int pack_table_msg(msgpack_packer *pk, uint32_t type, uint64_t id,
                          const struct proto_field *table, const void *in) {
        int r = pack_begin(pk, type, id, proto_table_len(table));

        if (r < 0)
                return r;
        return proto_pack_fields(pk, table, in);
}

/* The same, leaving out optional fields at their defaults (a request's pid
 * 0: "absent towards agents", docs/protocol.md). */
static int pack_table_msg_sparse(msgpack_packer *pk, uint32_t type, uint64_t id,
                                 const struct proto_field *table, const void *in) {
        int r = pack_begin(pk, type, id, sparse_len(table, in));

        if (r < 0)
                return r;
        return pack_fields(pk, table, in, true);
}

int proto_pack_hello(msgpack_packer *pk, uint64_t id, const struct proto_hello *h) {
        return pack_table_msg(pk, PROTO_MSG_HELLO, id, hello_table, h);
}

int proto_pack_hello_ok(msgpack_packer *pk, uint64_t id, const struct proto_hello_ok *h) {
        return pack_table_msg(pk, PROTO_MSG_HELLO_OK, id, hello_ok_table, h);
}

int proto_pack_error(msgpack_packer *pk, uint64_t id, int code, const char *text) {
        int r = pack_begin(pk, PROTO_MSG_ERROR, id, 2);

        if (r < 0)
                return r;
        r = pack_kv_u64(pk, "code", (uint64_t) (code < 0 ? -(int64_t) code : code));
        if (r < 0)
                return r;
        return pack_kv_str(pk, "text", text);
}

int proto_pack_ok(msgpack_packer *pk, uint64_t id, uint64_t previous) {
        int r = pack_begin(pk, PROTO_MSG_OK, id, previous != UINT64_MAX);

        if (r < 0 || previous == UINT64_MAX)
                return r;
        return pack_kv_u64(pk, "previous", previous);
}

int proto_pack_bye(msgpack_packer *pk, uint64_t id, const char *reason) {
        int r = pack_begin(pk, PROTO_MSG_BYE, id, reason != NULL);

        if (r < 0 || !reason)
                return r;
        return pack_kv_str(pk, "reason", reason);
}

int proto_pack_memstats(msgpack_packer *pk, uint64_t id, uint32_t pid, int64_t time_ns,
                        const struct memd_memstats *s, bool with_pauses) {
        int r = pack_begin(pk, PROTO_MSG_MEMSTATS, id, memstats_entries(with_pauses) + 1 + (pid != 0));

        if (r < 0)
                return r;
        r = pack_kv_i64(pk, "time_ns", time_ns);
        if (r >= 0 && pid != 0)
                r = pack_kv_u64(pk, "pid", pid);
        if (r < 0)
                return r;
        return pack_memstats_fields(pk, s, with_pauses);
}

static int pack_bucket(msgpack_packer *pk, const struct profile_record *rec) {
        uint32_t depth = rec->depth > PROTO_MAX_STACK_DEPTH ? PROTO_MAX_STACK_DEPTH : rec->depth;
        int r;

        PACK(msgpack_pack_map(pk, proto_table_len(bucket_table)));
        r = pack_key(pk, "stack");
        if (r < 0)
                return r;
        PACK(msgpack_pack_array(pk, depth));
        for (uint32_t i = 0; i < depth; i++)
                PACK(msgpack_pack_uint64(pk, rec->pcs[i]));
        /* the rest of the table is scalar */
        return proto_pack_fields(pk, bucket_table + 1, rec);
}

size_t proto_bucket_bytes_max(void) {
        /* map header 1, keys < 20 each, 4 uint64 (9) + 4 doubles (9), array
         * header 3 + 64 pcs of 9 bytes */
        return 1 + 9 * 20 + 8 * 9 + 3 + PROTO_MAX_STACK_DEPTH * 9;
}

int proto_pack_profile(msgpack_packer *pk, uint32_t type, uint64_t id, const struct proto_profile *h,
                       const struct profile_record *records, size_t n_records) {
        bool snapshot = type == PROTO_MSG_PROFILE_SNAPSHOT;
        int r;

        if (type != PROTO_MSG_PROFILE_SNAPSHOT && type != PROTO_MSG_PROFILE_DELTA)
                return -EINVAL;
        if (n_records > PROTO_MAX_BUCKETS)
                return -E2BIG;

        r = pack_begin(pk, type, id, (snapshot ? 6 : 3) + (h->pid != 0));
        if (r < 0)
                return r;
        if (h->pid != 0 && (r = pack_kv_u64(pk, "pid", h->pid)) < 0)
                return r;
        if (snapshot) {
                if ((r = pack_kv_u64(pk, "generation", h->generation)) < 0 ||
                    (r = pack_kv_u64(pk, "part", h->part)) < 0 ||
                    (r = pack_kv_bool(pk, "final", h->final)) < 0)
                        return r;
        }
        if ((r = pack_kv_u64(pk, "rate_bytes", h->rate_bytes)) < 0 ||
            (r = pack_kv_i64(pk, "time_ns", h->time_ns)) < 0 ||
            (r = pack_key(pk, "buckets")) < 0)
                return r;
        PACK(msgpack_pack_array(pk, n_records));
        for (size_t i = 0; i < n_records; i++) {
                r = pack_bucket(pk, &records[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

int proto_pack_mappings(msgpack_packer *pk, uint64_t id, uint32_t pid,
                        const struct proto_mapping *m, size_t n) {
        int r;

        if (n > PROTO_MAX_MAPPINGS)
                return -E2BIG;
        r = pack_begin(pk, PROTO_MSG_MAPPINGS, id, 1 + (pid != 0));
        if (r < 0)
                return r;
        if (pid != 0 && (r = pack_kv_u64(pk, "pid", pid)) < 0)
                return r;
        r = pack_key(pk, "mappings");
        if (r < 0)
                return r;
        PACK(msgpack_pack_array(pk, n));
        for (size_t i = 0; i < n; i++) {
                bool bid = m[i].build_id_len > 0;

                if (m[i].build_id_len > PROTO_MAX_BUILD_ID_BYTES)
                        return -EINVAL;
                PACK(msgpack_pack_map(pk, 4 + bid));
                if ((r = pack_kv_u64(pk, "start", m[i].start)) < 0 ||
                    (r = pack_kv_u64(pk, "limit", m[i].limit)) < 0 ||
                    (r = pack_kv_u64(pk, "offset", m[i].offset)) < 0 ||
                    (r = pack_kv_str(pk, "path", m[i].path)) < 0)
                        return r;
                if (bid) {
                        if ((r = pack_key(pk, "build_id")) < 0)
                                return r;
                        PACK(msgpack_pack_bin(pk, m[i].build_id_len));
                        PACK(msgpack_pack_bin_body(pk, m[i].build_id, m[i].build_id_len));
                }
        }
        return 0;
}

int proto_pack_event(msgpack_packer *pk, uint64_t id, const struct proto_event *e) {
        return pack_table_msg(pk, PROTO_MSG_EVENT, id, event_table, e);
}

int proto_pack_request(msgpack_packer *pk, uint32_t type, uint64_t id, const struct proto_request *q) {
        switch (type) {
        case PROTO_MSG_PROFILE_REQUEST:
                return pack_table_msg_sparse(pk, type, id, profile_request_table, q);
        case PROTO_MSG_SCAVENGE_REQUEST:
                return pack_table_msg_sparse(pk, type, id, scavenge_request_table, q);
        case PROTO_MSG_GC_REQUEST:
        case PROTO_MSG_STATUS_REQUEST:
        case PROTO_MSG_SUBSCRIBE:
                return pack_table_msg_sparse(pk, type, id, request_table, q);
        case PROTO_MSG_SET_RATE:
                return pack_table_msg_sparse(pk, type, id, set_rate_table, q);
        case PROTO_MSG_SET_MEMORY_LIMIT:
                return pack_table_msg_sparse(pk, type, id, set_limit_table, q);
        case PROTO_MSG_SET_POLICY:
                return pack_table_msg_sparse(pk, type, id, set_policy_table, q);
        case PROTO_MSG_SET_GC_PERCENT:
                return pack_table_msg(pk, type, id, set_gc_percent_table, q);
        }
        return -EINVAL;
}

int proto_pack_gc_result(msgpack_packer *pk, uint64_t id, const struct proto_gc_result *g) {
        return pack_table_msg(pk, PROTO_MSG_GC_RESULT, id, gc_result_table, g);
}

int proto_pack_profile_data(msgpack_packer *pk, uint64_t id, const struct proto_profile_data *d) {
        return pack_table_msg_sparse(pk, PROTO_MSG_PROFILE_DATA, id, profile_data_table, d);
}

int proto_pack_scavenge_result(msgpack_packer *pk, uint64_t id, const struct proto_scavenge_result *s) {
        return pack_table_msg(pk, PROTO_MSG_SCAVENGE_RESULT, id, scavenge_result_table, s);
}

int proto_pack_status_begin(msgpack_packer *pk, uint64_t id, size_t n) {
        int r;

        if (n > PROTO_MAX_PROCESSES)
                return -E2BIG;
        r = pack_begin(pk, PROTO_MSG_STATUS_REPLY, id, 1);
        if (r < 0)
                return r;
        r = pack_key(pk, "processes");
        if (r < 0)
                return r;
        PACK(msgpack_pack_array(pk, n));
        return 0;
}

int proto_pack_process(msgpack_packer *pk, const struct proto_process *p) {
        int r;

        if (p->n_events > PROTO_MAX_EVENTS)
                return -E2BIG;
        /* Sparse: a list of a thousand processes is mostly zeros otherwise. */
        PACK(msgpack_pack_map(pk, sparse_len(process_scalar_table, p) + p->has_stats + (p->n_events > 0)));
        r = pack_fields(pk, process_scalar_table, p, true);
        if (r < 0)
                return r;
        if (p->has_stats) {
                if ((r = pack_key(pk, "memstats")) < 0)
                        return r;
                PACK(msgpack_pack_map(pk, memstats_entries(p->has_pauses)));
                r = pack_memstats_fields(pk, &p->stats, p->has_pauses);
                if (r < 0)
                        return r;
        }
        if (p->n_events > 0) {
                if ((r = pack_key(pk, "events")) < 0)
                        return r;
                PACK(msgpack_pack_array(pk, p->n_events));
                for (size_t j = 0; j < p->n_events; j++) {
                        PACK(msgpack_pack_map(pk, proto_table_len(event_table)));
                        r = proto_pack_fields(pk, event_table, &p->events[j]);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

int proto_pack_status_reply(msgpack_packer *pk, uint64_t id, const struct proto_process *p, size_t n) {
        int r = proto_pack_status_begin(pk, id, n);

        for (size_t i = 0; i < n && r >= 0; i++)
                r = proto_pack_process(pk, &p[i]);
        return r;
}

/* ---- body decoders ---------------------------------------------------------- */

int proto_decode_hello(const struct proto_msg *m, struct proto_hello *ret) {
        *ret = (struct proto_hello) {};
        return proto_decode(m->body, hello_table, ret);
}

int proto_decode_hello_ok(const struct proto_msg *m, struct proto_hello_ok *ret) {
        *ret = (struct proto_hello_ok) {};
        return proto_decode(m->body, hello_ok_table, ret);
}

int proto_decode_error(const struct proto_msg *m, struct proto_error *ret) {
        *ret = (struct proto_error) {};
        return proto_decode(m->body, error_table, ret);
}

int proto_decode_ok(const struct proto_msg *m, struct proto_ok *ret) {
        *ret = (struct proto_ok) { .previous = UINT64_MAX };
        return proto_decode(m->body, ok_table, ret);
}

int proto_decode_bye(const struct proto_msg *m, struct proto_bye *ret) {
        *ret = (struct proto_bye) {};
        return proto_decode(m->body, bye_table, ret);
}

int proto_decode_memstats(const struct proto_msg *m, struct proto_memstats *ret) {
        int r;

        *ret = (struct proto_memstats) {};
        r = proto_decode(m->body, memstats_msg_table, ret);
        return r < 0 ? r : pauses_present(m->body, &ret->has_pauses);
}

int proto_decode_bucket(const msgpack_object *o, struct profile_record *ret) {
        *ret = (struct profile_record) {};
        return proto_decode(o, bucket_table, ret);
}

int proto_decode_profile(const struct proto_msg *m, struct proto_profile *ret) {
        struct profile_record rec;
        int r;

        *ret = (struct proto_profile) {};
        if (m->type == PROTO_MSG_PROFILE_SNAPSHOT)
                r = proto_decode(m->body, snapshot_table, ret);
        else if (m->type == PROTO_MSG_PROFILE_DELTA)
                r = proto_decode(m->body, delta_table, ret);
        else
                return -EBADMSG;
        if (r < 0)
                return r;
        for (uint32_t i = 0; i < ret->buckets.n; i++) {
                r = proto_decode_bucket(&ret->buckets.items[i], &rec);
                if (r < 0)
                        return r;
        }
        return 0;
}

int proto_decode_mapping(const msgpack_object *o, struct proto_mapping *ret) {
        int r;

        *ret = (struct proto_mapping) {};
        r = proto_decode(o, mapping_table, ret);
        if (r < 0)
                return r;
        if (ret->limit < ret->start)
                return -EBADMSG;
        return 0;
}

int proto_decode_mappings(const struct proto_msg *m, struct proto_mappings *ret) {
        struct proto_mapping *tmp;
        int r;

        *ret = (struct proto_mappings) {};
        r = proto_decode(m->body, mappings_table, ret);
        if (r < 0)
                return r;
        /* struct proto_mapping is 4 KiB: not on a thread's stack */
        tmp = malloc(sizeof(*tmp));
        if (!tmp)
                return -ENOMEM;
        for (uint32_t i = 0; i < ret->mappings.n && r >= 0; i++)
                r = proto_decode_mapping(&ret->mappings.items[i], tmp);
        free(tmp);
        return r;
}

int proto_decode_event_object(const msgpack_object *o, struct proto_event *ret) {
        int r;

        *ret = (struct proto_event) {};
        r = proto_decode(o, event_table, ret);
        if (r < 0)
                return r;
        if (ret->kind != PROTO_EVENT_GC && ret->kind != PROTO_EVENT_SCVG)
                return -EBADMSG;
        return 0;
}

int proto_decode_event(const struct proto_msg *m, struct proto_event *ret) {
        return proto_decode_event_object(m->body, ret);
}

int proto_decode_request(const struct proto_msg *m, struct proto_request *ret) {
        int r;

        *ret = (struct proto_request) {};
        switch (m->type) {
        case PROTO_MSG_PROFILE_REQUEST: {
                r = proto_decode(m->body, profile_request_table, ret);
                return r < 0 ? r : ret->format > PROTO_PROFILE_FORMAT_MAX ? -EBADMSG : 0;
        }
        case PROTO_MSG_SCAVENGE_REQUEST:
                return proto_decode(m->body, scavenge_request_table, ret);
        case PROTO_MSG_GC_REQUEST:
        case PROTO_MSG_STATUS_REQUEST:
        case PROTO_MSG_SUBSCRIBE:
                return proto_decode(m->body, request_table, ret);
        case PROTO_MSG_SET_RATE:
                return proto_decode(m->body, set_rate_table, ret);
        case PROTO_MSG_SET_MEMORY_LIMIT:
                return proto_decode(m->body, set_limit_table, ret);
        case PROTO_MSG_SET_POLICY:
                return proto_decode(m->body, set_policy_table, ret);
        case PROTO_MSG_SET_GC_PERCENT:
                r = proto_decode(m->body, set_gc_percent_table, ret);
                return r < 0 ? r : ret->gc_percent < -1 || ret->gc_percent > INT32_MAX ? -EBADMSG : 0;
        }
        return -EBADMSG;
}

int proto_decode_profile_data(const struct proto_msg *m, struct proto_profile_data *ret) {
        int r;

        *ret = (struct proto_profile_data) {};
        r = proto_decode(m->body, profile_data_table, ret);
        if (r < 0)
                return r;
        if (ret->format > PROTO_PROFILE_FORMAT_MAX || (ret->fd && (ret->part != 0 || !ret->final || ret->data.len)))
                return -EBADMSG;
        return 0;
}

int proto_decode_gc_result(const struct proto_msg *m, struct proto_gc_result *ret) {
        *ret = (struct proto_gc_result) {};
        return proto_decode(m->body, gc_result_table, ret);
}

int proto_decode_scavenge_result(const struct proto_msg *m, struct proto_scavenge_result *ret) {
        *ret = (struct proto_scavenge_result) {};
        return proto_decode(m->body, scavenge_result_table, ret);
}

int proto_decode_process(const msgpack_object *o, struct proto_process *ret) {
        struct proto_event ev;
        int r;

        *ret = (struct proto_process) {};
        r = proto_decode(o, process_table, ret);
        if (r < 0)
                return r;
        for (uint32_t i = 0; i < ret->event_view.n; i++) {
                r = proto_decode_event_object(&ret->event_view.items[i], &ev);
                if (r < 0)
                        return r;
        }
        return 0;
}

int proto_decode_status_reply(const struct proto_msg *m, struct proto_status_reply *ret) {
        struct proto_process *tmp;
        int r;

        *ret = (struct proto_status_reply) {};
        r = proto_decode(m->body, status_reply_table, ret);
        if (r < 0)
                return r;
        tmp = malloc(sizeof(*tmp));
        if (!tmp)
                return -ENOMEM;
        for (uint32_t i = 0; i < ret->processes.n && r >= 0; i++)
                r = proto_decode_process(&ret->processes.items[i], tmp);
        free(tmp);
        return r;
}

/* ---- framing --------------------------------------------------------------
 * msgpack-c's unpacker splits the stream, but it trusts what a header
 * announces: an array32 header makes it allocate count * sizeof(object) at
 * once.  So every byte passes this scanner first, which walks the same
 * grammar header by header (resumably, across feeds) and enforces the limits
 * before anything is buffered. */

struct proto_scan {
        uint8_t hdr[6];         /* type byte + up to 5 length bytes, split across feeds */
        uint8_t hdr_len, hdr_need;
        uint64_t skip;          /* payload bytes still to pass */
        uint32_t depth;
        uint32_t remaining[PROTO_MAX_NESTING]; /* elements left at each level */
        uint64_t msg_bytes;     /* bytes of the message in progress */
        uint64_t msg_objects;
};

struct proto_reader {
        msgpack_unpacker unpacker;
        struct proto_scan scan;
        int error;              /* sticky */
};

#define READER_INITIAL_BYTES 4096
#define READER_TRIM_BYTES (1024 * 1024)

static uint64_t be_read(const uint8_t *p, unsigned n) {
        uint64_t v = 0;

        for (unsigned i = 0; i < n; i++)
                v = (v << 8) | p[i];
        return v;
}

/* Extra header bytes after the type byte (lengths, ext type). */
static unsigned header_extra(uint8_t b) {
        switch (b) {
        case 0xc4: case 0xd9: return 1;                 /* bin8 str8 */
        case 0xc5: case 0xda: case 0xdc: case 0xde: return 2; /* 16-bit lengths */
        case 0xc6: case 0xdb: case 0xdd: case 0xdf: return 4; /* 32-bit lengths */
        case 0xc7: return 2;                            /* ext8: len, type */
        case 0xc8: return 3;
        case 0xc9: return 5;
        case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: return 1; /* fixext: type */
        default: return 0;
        }
}

/* One value finished: count it in its container, closing finished ones. */
static void scan_value_done(struct proto_scan *s) {
        while (s->depth > 0) {
                if (--s->remaining[s->depth - 1] > 0)
                        return;
                s->depth--;
        }
        /* the top-level map is complete: a message boundary */
        s->msg_bytes = 0;
        s->msg_objects = 0;
}

static int scan_container(struct proto_scan *s, uint64_t n, bool map) {
        uint64_t elements = map ? 2 * n : n;

        if (n > PROTO_MAX_ENTRIES || elements > PROTO_MAX_FRAME_BYTES - s->msg_bytes)
                return -EMSGSIZE; /* every element takes at least one byte */
        if (n == 0) {
                scan_value_done(s);
                return 0;
        }
        if (s->depth >= PROTO_MAX_NESTING)
                return -EBADMSG;
        s->remaining[s->depth++] = (uint32_t) elements;
        return 0;
}

static int scan_payload(struct proto_scan *s, uint64_t n) {
        if (n > PROTO_MAX_FRAME_BYTES - s->msg_bytes)
                return -EMSGSIZE;
        if (n == 0)
                scan_value_done(s);
        else
                s->skip = n;
        return 0;
}

/* hdr[0 .. hdr_need) is complete. */
static int scan_header(struct proto_scan *s) {
        uint8_t b = s->hdr[0];
        const uint8_t *x = s->hdr + 1;

        s->hdr_len = 0;
        if (++s->msg_objects > PROTO_MAX_OBJECTS)
                return -EMSGSIZE;
        /* a message is a map: anything else at the top is garbage */
        if (s->depth == 0 && s->msg_objects == 1 && !((b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf))
                return -EBADMSG;

        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
                scan_value_done(s);     /* fixint, nil, bool */
                return 0;
        }
        if (b >= 0x80 && b <= 0x8f)
                return scan_container(s, b & 0x0f, true);
        if (b >= 0x90 && b <= 0x9f)
                return scan_container(s, b & 0x0f, false);
        if (b >= 0xa0 && b <= 0xbf)
                return scan_payload(s, b & 0x1f);

        switch (b) {
        case 0xc4: case 0xd9: return scan_payload(s, be_read(x, 1));
        case 0xc5: case 0xda: return scan_payload(s, be_read(x, 2));
        case 0xc6: case 0xdb: return scan_payload(s, be_read(x, 4));
        case 0xc7: return scan_payload(s, be_read(x, 1));      /* + type byte, already read */
        case 0xc8: return scan_payload(s, be_read(x, 2));
        case 0xc9: return scan_payload(s, be_read(x, 4));
        case 0xd4: return scan_payload(s, 1);
        case 0xd5: return scan_payload(s, 2);
        case 0xd6: return scan_payload(s, 4);
        case 0xd7: return scan_payload(s, 8);
        case 0xd8: return scan_payload(s, 16);
        case 0xca: return scan_payload(s, 4);                  /* float32 */
        case 0xcb: return scan_payload(s, 8);                  /* float64 */
        case 0xcc: case 0xd0: return scan_payload(s, 1);
        case 0xcd: case 0xd1: return scan_payload(s, 2);
        case 0xce: case 0xd2: return scan_payload(s, 4);
        case 0xcf: case 0xd3: return scan_payload(s, 8);
        case 0xdc: return scan_container(s, be_read(x, 2), false);
        case 0xdd: return scan_container(s, be_read(x, 4), false);
        case 0xde: return scan_container(s, be_read(x, 2), true);
        case 0xdf: return scan_container(s, be_read(x, 4), true);
        default: return -EBADMSG;                              /* 0xc1, never used */
        }
}

static int scan(struct proto_scan *s, const uint8_t *p, size_t len) {
        size_t i = 0;
        int r;

        while (i < len) {
                if (s->skip > 0) {
                        uint64_t k = s->skip < len - i ? s->skip : len - i;

                        /* scan_payload() checked the whole payload against the frame */
                        s->skip -= k;
                        s->msg_bytes += k;
                        i += k;
                        if (s->skip == 0)
                                scan_value_done(s);
                        continue;
                }
                if (++s->msg_bytes > PROTO_MAX_FRAME_BYTES)
                        return -EMSGSIZE;
                if (s->hdr_len == 0) {
                        s->hdr[0] = p[i++];
                        s->hdr_len = 1;
                        s->hdr_need = 1 + header_extra(s->hdr[0]);
                } else
                        s->hdr[s->hdr_len++] = p[i++];
                if (s->hdr_len == s->hdr_need) {
                        r = scan_header(s);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static bool scan_at_boundary(const struct proto_scan *s) {
        return s->depth == 0 && s->hdr_len == 0 && s->skip == 0 && s->msg_bytes == 0;
}

int proto_reader_new(struct proto_reader **ret) {
        struct proto_reader *r;

        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        if (!msgpack_unpacker_init(&r->unpacker, READER_INITIAL_BYTES)) {
                free(r);
                return -ENOMEM;
        }
        *ret = r;
        return 0;
}

void proto_reader_free(struct proto_reader *r) {
        if (!r)
                return;
        msgpack_unpacker_destroy(&r->unpacker);
        free(r);
}

int proto_reader_feed(struct proto_reader *r, const void *data, size_t len) {
        msgpack_unpacker *u = &r->unpacker;
        int k;

        if (r->error < 0)
                return r->error;
        if (len == 0)
                return 0;
        if (len > PROTO_MAX_BUFFERED_BYTES || u->used - u->off > PROTO_MAX_BUFFERED_BYTES - len)
                return -ENOBUFS;

        /* After one big message, give its buffer back (messages already
         * returned keep their own reference to it). */
        if (scan_at_boundary(&r->scan) && u->used == u->off && u->used + u->free > READER_TRIM_BYTES) {
                msgpack_unpacker_destroy(u);
                if (!msgpack_unpacker_init(u, READER_INITIAL_BYTES))
                        return (r->error = -ENOMEM);
        }

        k = scan(&r->scan, data, len);
        if (k < 0)
                return (r->error = k);

        if (!msgpack_unpacker_reserve_buffer(u, len))
                return (r->error = -ENOMEM);
        memcpy(msgpack_unpacker_buffer(u), data, len);
        msgpack_unpacker_buffer_consumed(u, len);
        return 0;
}

void proto_msg_init(struct proto_msg *m) {
        *m = (struct proto_msg) {};
        msgpack_unpacked_init(&m->unpacked);
}

void proto_msg_done(struct proto_msg *m) {
        msgpack_unpacked_destroy(&m->unpacked);
        m->body = NULL;
}

int proto_reader_next(struct proto_reader *r, struct proto_msg *ret) {
        struct proto_msg env = {};
        msgpack_unpack_return u;
        int k;

        if (r->error < 0)
                return r->error;

        ret->body = NULL;
        u = msgpack_unpacker_next(&r->unpacker, &ret->unpacked);
        switch (u) {
        case MSGPACK_UNPACK_CONTINUE:
                return 0;
        case MSGPACK_UNPACK_SUCCESS:
        case MSGPACK_UNPACK_EXTRA_BYTES:
                break;
        case MSGPACK_UNPACK_NOMEM_ERROR:
                return (r->error = -ENOMEM);
        default:
                return (r->error = -EBADMSG);
        }

        k = proto_decode(&ret->unpacked.data, envelope_table, &env);
        if (k < 0)
                return (r->error = k);
        if (!proto_msg_type_known(env.type))
                return (r->error = -EBADMSG);
        ret->type = env.type;
        ret->id = env.id;
        ret->body = &ret->unpacked.data;
        return 1;
}
