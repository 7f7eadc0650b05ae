/* proto.h - the memd wire protocol: message types, field tables, limits, framing (docs/protocol.md says the same in words). */
#ifndef MEMD_PROTO_H
#define MEMD_PROTO_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memd.h"
#include "profile.h"

/*
 * Every message is one msgpack map { "t": type, "id": request id, ...fields }
 * sent back to back over a SOCK_STREAM Unix socket; there is no other framing.
 * The first message on a connection is HELLO from the client; the daemon
 * answers HELLO_OK or ERROR (then closes).
 *
 * Identity: a peer is who SO_PEERCRED says it is.  The pid a HELLO (or any
 * other message) carries is informational only: this library decodes it as
 * sent, and the daemon must never use it for identity or permission checks.
 *
 * Library code never logs.  Every function returns >= 0 or -errno.  A reader
 * that returned a negative value is dead: the caller closes that one
 * connection (a malformed or oversized message never touches anything else).
 */

#define PROTO_VERSION 1

/* ---- limits -------------------------------------------------------------- */
#define PROTO_MAX_FRAME_BYTES    (16u * 1024 * 1024) /* one encoded message */
#define PROTO_MAX_STACK_DEPTH    PROFILE_MAX_DEPTH   /* pcs per bucket (64) */
#define PROTO_MAX_BUCKETS        65536u              /* buckets per PROFILE_* message */
#define PROTO_MAX_MAPPINGS       65536u              /* mappings per MAPPINGS message */
#define PROTO_MAX_PROCESSES      65536u              /* processes per STATUS_REPLY */
#define PROTO_MAX_EVENTS         256u                /* events per process in STATUS_REPLY */
#define PROTO_MAX_STRING_BYTES   4096u               /* any decoded string, without the NUL */
#define PROTO_MAX_ENTRIES        65536u              /* any array or map, at any level */
#define PROTO_MAX_NESTING        8u                  /* maps/arrays inside each other */
#define PROTO_MAX_OBJECTS        (4u * 1024 * 1024)  /* msgpack objects in one message */
#define PROTO_MAX_BUILD_ID_BYTES 64u
#define PROTO_PAUSE_ENTRIES      256u                /* PauseNs / PauseEnd */
/* A reader refuses (-ENOBUFS) to hold more than this many unread bytes:
 * callers drain proto_reader_next() before feeding again. */
#define PROTO_MAX_BUFFERED_BYTES (2u * PROTO_MAX_FRAME_BYTES)

/* ---- roles (HELLO "role") -------------------------------------------------- */
enum proto_role {
        PROTO_ROLE_AGENT = 1,   /* libmemd inside a process, reports to memd */
        PROTO_ROLE_CONTROL = 2, /* memctl */
};

/* ---- message types ("t") --------------------------------------------------
 * Direction: A agent, D daemon, C control.  Replies carry the request's id. */
enum proto_msg_type {
        PROTO_MSG_HELLO = 1,             /* A,C -> D: first message */
        PROTO_MSG_HELLO_OK = 2,          /* D -> A,C */
        PROTO_MSG_ERROR = 3,             /* any -> any: reply carrying an errno code */
        PROTO_MSG_OK = 4,                /* reply without a body of its own */
        PROTO_MSG_BYE = 5,               /* any -> any: orderly close follows */

        PROTO_MSG_MEMSTATS = 16,         /* A -> D every second; D -> C (with pid) */
        PROTO_MSG_PROFILE_SNAPSHOT = 17, /* A -> D on (re)connect / PROFILE_REQUEST; D -> C */
        PROTO_MSG_PROFILE_DELTA = 18,    /* A -> D while connected */
        PROTO_MSG_MAPPINGS = 19,         /* A -> D with each snapshot; D -> C */
        PROTO_MSG_EVENT = 20,            /* A -> D each gc/scvg cycle; D -> C (trace) */
        PROTO_MSG_PROFILE_DATA = 21,     /* D -> C: a formatted profile, in parts (PROFILE_REQUEST with a format) */

        PROTO_MSG_GC_REQUEST = 32,       /* C -> D (pid), D -> A */
        PROTO_MSG_GC_RESULT = 33,
        PROTO_MSG_SCAVENGE_REQUEST = 34, /* free-os-memory: C -> D (pid), D -> A */
        PROTO_MSG_SCAVENGE_RESULT = 35,
        PROTO_MSG_PROFILE_REQUEST = 36,  /* C -> D (pid), D -> A; answered by snapshot + mappings */
        PROTO_MSG_SET_RATE = 37,         /* C -> D (pid), D -> A; OK with the previous rate */
        PROTO_MSG_SET_MEMORY_LIMIT = 38, /* C -> D (pid), D -> A; OK with the previous limit */
        PROTO_MSG_SET_POLICY = 39,       /* C -> D (pid, settings): memctl set; OK or ERROR */
        PROTO_MSG_SET_GC_PERCENT = 40,   /* D -> A: a policy's GCPercent; OK with the previous (UINT64_MAX: off) */

        PROTO_MSG_STATUS_REQUEST = 48,   /* C -> D */
        PROTO_MSG_STATUS_REPLY = 49,     /* D -> C */
        PROTO_MSG_SUBSCRIBE = 50,        /* C -> D: stream EVENTs (with this id) until BYE */
};

/* Name of a known type ("HELLO"), or NULL. */
const char *proto_msg_type_name(uint32_t type);
bool proto_msg_type_known(uint32_t type);

/* ---- field tables -------------------------------------------------------- */
enum proto_type {
        PROTO_T_U64 = 1,   /* uint64_t; msgpack positive int */
        PROTO_T_U32,       /* uint32_t; positive int <= UINT32_MAX */
        PROTO_T_I64,       /* int64_t; any int in range */
        PROTO_T_DOUBLE,    /* double; float32/64, or an int */
        PROTO_T_BOOL,      /* bool */
        PROTO_T_STRING,    /* char[size]; str, len < size and <= PROTO_MAX_STRING_BYTES, no NUL inside */
        PROTO_T_U64_ARRAY, /* uint64_t[size]; array of <= size positive ints, the rest zeroed */
        PROTO_T_ARRAY,     /* struct proto_array view; <= size entries */
        PROTO_T_MAP,       /* const msgpack_object * view of a map */
        PROTO_T_CUSTOM,    /* decode(o, out + offset) */
        PROTO_T_BIN,       /* struct proto_bin view; bin of <= size bytes */
};

/* A decoded bin: points into the message, valid while the proto_msg is. */
struct proto_bin {
        const void *ptr;
        uint32_t len;
};

/* A decoded array: points into the message, valid while the proto_msg is. */
struct proto_array {
        const msgpack_object *items;
        uint32_t n;
};

typedef int (*proto_decode_fn)(const msgpack_object *o, void *ret);

struct proto_field {
        const char *key;
        enum proto_type type;
        size_t offset;
        bool required;
        size_t size;            /* STRING: buffer bytes incl. NUL; *_ARRAY: max entries */
        proto_decode_fn decode; /* CUSTOM only */
};
#define PROTO_FIELD_MAX 64      /* entries in one table */

/* Decodes the map o through table (terminated by a NULL key) into out.
 * Unknown keys are ignored (forward compatibility); a key given twice, a
 * non-string key, a wrong type, an out-of-range number, an overlong string or
 * array, or a missing required field is -EBADMSG.  Optional fields that are
 * absent keep what out held, so callers set defaults first.  On error out may
 * be partly written. */
int proto_decode(const msgpack_object *o, const struct proto_field *table, void *out);

/* Packs every field of a table whose types are scalars, strings or
 * U64_ARRAY (all `size` entries), as map entries (no map header).  Returns 0
 * or -ENOMEM (or -EINVAL for a table with ARRAY/MAP/CUSTOM fields). */
int proto_pack_fields(msgpack_packer *pk, const struct proto_field *table, const void *in);
size_t proto_table_len(const struct proto_field *table);

/* ---- bodies -------------------------------------------------------------- */
#define PROTO_NAME_MAX (PROTO_MAX_STRING_BYTES + 1)
#define PROTO_COMM_MAX 64

struct proto_hello {
        uint32_t version;       /* required: PROTO_VERSION of the sender */
        uint32_t role;          /* required: enum proto_role */
        uint32_t pid;           /* optional, CLAIMED: informational, never identity */
        char comm[PROTO_COMM_MAX];      /* optional */
        char software[PROTO_COMM_MAX];  /* optional: "libmemd 0.1.0", "memctl 0.1.0" */
        uint64_t rate_bytes;    /* optional (agents): current MEMD_PROFILE_RATE */
};

struct proto_hello_ok {
        uint32_t version;       /* required: the daemon's PROTO_VERSION */
        uint32_t pid;           /* optional: the peer's pid as SO_PEERCRED says */
        uint32_t uid;           /* optional: the peer's uid as SO_PEERCRED says */
        char software[PROTO_COMM_MAX];  /* optional: "memd 0.1.0" */
};

struct proto_error {
        uint32_t code;          /* required: positive errno value */
        char text[PROTO_NAME_MAX];      /* required: one line for a human */
};

struct proto_ok {
        uint64_t previous;      /* optional: previous value (SET_*), UINT64_MAX if none */
};

struct proto_bye {
        char reason[PROTO_NAME_MAX];    /* optional */
};

/* MEMSTATS: the Go names of struct memd_memstats as keys, flat in the message. */
struct proto_memstats {
        int64_t time_ns;        /* required: when read, ns since the epoch */
        uint32_t pid;           /* optional: set by the daemon towards control clients */
        struct memd_memstats stats; /* every field required but PauseNs/PauseEnd */
        bool has_pauses;        /* PauseNs and PauseEnd were sent (else they read 0) */
};

/* Header of PROFILE_SNAPSHOT / PROFILE_DELTA.  A snapshot is one or more
 * parts (part 0 .. final); part 0 replaces the receiver's table for the
 * process, later parts add to it; buckets carry cumulative figures.  A delta
 * carries increments since the previous snapshot or delta. */
struct proto_profile {
        uint32_t pid;           /* optional: daemon -> control */
        uint64_t generation;    /* required (snapshot): counts snapshots of this process */
        uint32_t part;          /* required (snapshot) */
        bool final;             /* required (snapshot) */
        uint64_t rate_bytes;    /* required: sampling rate in force */
        int64_t time_ns;        /* required */
        struct proto_array buckets; /* required: decoded view, validated by proto_decode_profile */
};

/* One mapping of /proc/PID/maps that holds code. */
struct proto_mapping {
        uint64_t start;         /* required */
        uint64_t limit;         /* required: end address (exclusive) */
        uint64_t offset;        /* required: file offset */
        char path[PROTO_NAME_MAX];      /* required, may be "" */
        uint8_t build_id[PROTO_MAX_BUILD_ID_BYTES]; /* optional (bin) */
        uint32_t build_id_len;
};

struct proto_mappings {
        uint32_t pid;           /* optional: daemon -> control */
        struct proto_array mappings; /* required */
};

enum proto_event_kind {
        PROTO_EVENT_GC = 1,
        PROTO_EVENT_SCVG = 2,
};

/* A gc or scvg cycle.  text is the seed-grammar line(s) (SPEC §4), several
 * lines joined by '\n', no trailing newline. */
struct proto_event {
        uint32_t kind;          /* required: enum proto_event_kind */
        int64_t time_ns;        /* required: end of the cycle */
        char text[PROTO_NAME_MAX];      /* required */
        uint32_t pid;           /* optional: daemon -> control */
        bool forced;            /* optional */
        uint64_t seq;           /* optional: NumGC after a gc; scavenge count (0 for forced, "scvg-1") */
        uint64_t duration_ns;   /* optional */
        uint64_t heap_before_bytes;     /* optional: gc A */
        uint64_t heap_reclaimed_bytes;  /* optional: gc B (after the reclaimers) */
        uint64_t heap_live_bytes;       /* optional: gc C */
        uint64_t goal_bytes;            /* optional */
        uint64_t released_bytes;        /* optional: scvg */
        uint64_t heap_inuse_bytes;      /* optional: scvg */
        uint64_t heap_idle_bytes;       /* optional: scvg */
        uint64_t heap_sys_bytes;        /* optional: scvg */
};

/* GC_REQUEST, SCAVENGE_REQUEST, PROFILE_REQUEST, SET_*, STATUS_REQUEST,
 * SUBSCRIBE.  pid is required from control clients (the daemon checks it,
 * since the table cannot know the role) and absent towards agents. */
/* PROFILE_REQUEST "format": what memd answers with. */
enum proto_profile_format {
        PROTO_PROFILE_RAW = 0,     /* MAPPINGS + PROFILE_SNAPSHOT parts: the stacks as addresses */
        PROTO_PROFILE_PPROF = 1,   /* PROFILE_DATA: gzipped profile.proto, symbolized by memd */
        PROTO_PROFILE_TEXT = 2,    /* PROFILE_DATA: Go's debug=1 heap text */
        PROTO_PROFILE_FOLDED = 3,  /* PROFILE_DATA: "f1;f2;f3 inuse_bytes" (root first) */
        PROTO_PROFILE_SAMPLES = 4, /* PROFILE_DATA: "ao ab io ib<TAB>leaf;caller;..." per stack, for memctl top */
        PROTO_PROFILE_FORMAT_MAX = 4,
};

struct proto_request {
        uint32_t pid;           /* optional: target process, 0 = none/all */
        uint64_t value;         /* SET_RATE: rate_bytes; SET_MEMORY_LIMIT: limit_bytes (0 = none) */
        uint32_t format;        /* PROFILE_REQUEST: enum proto_profile_format, optional (0) */
        bool fd;                /* PROFILE_REQUEST: the client takes the file as a descriptor */
        bool brief;             /* STATUS_REQUEST for the list: the table's figures only (no memstats) */
        bool automatic;         /* SCAVENGE_REQUEST from memd's policy: the cycle is not forced */
        bool scavenge_only;     /* SCAVENGE_REQUEST: no reclaimers, no GC, only the trim */
        char settings[PROTO_NAME_MAX]; /* SET_POLICY: "key=value" lines (required) */
        int64_t gc_percent;     /* SET_GC_PERCENT (required): GOGC, -1 = off */
};

/* PROFILE_DATA: one part of a formatted profile. */
#define PROTO_DATA_PART_BYTES (1u << 20)
struct proto_profile_data {
        uint32_t pid;           /* optional */
        uint32_t format;        /* required: enum proto_profile_format */
        uint32_t part;          /* required: 0-based */
        bool final;             /* required: the last part */
        struct proto_bin data;  /* required: <= PROTO_DATA_PART_BYTES */
        bool fd;                /* optional: the whole file came as a descriptor (SCM_RIGHTS) with
                                   this message, which is then the only, final part, data empty */
        uint64_t size;          /* optional: with fd, the file's length */
};

struct proto_gc_result {
        uint32_t pid;           /* optional: daemon -> control */
        uint64_t freed_bytes;   /* required: what the reclaimers reported */
        uint64_t heap_before_bytes;     /* optional */
        uint64_t heap_after_bytes;      /* optional */
        uint64_t duration_ns;   /* optional */
        char text[PROTO_NAME_MAX];      /* optional: the gctrace line */
};

struct proto_scavenge_result {
        uint32_t pid;           /* optional: daemon -> control */
        uint64_t released_bytes;        /* required: memd_free_os_memory()'s result */
        uint64_t rss_before_bytes;      /* optional */
        uint64_t rss_after_bytes;       /* optional */
        uint64_t duration_ns;   /* optional */
        char text[PROTO_NAME_MAX];      /* optional: the scvg-1 lines */
};

/* One process in STATUS_REPLY. */
struct proto_process {
        uint32_t pid;           /* required */
        uint32_t uid;           /* required */
        char comm[PROTO_COMM_MAX];      /* required */
        char unit[PROTO_COMM_MAX * 4];  /* optional: systemd unit */
        char exe[PROTO_NAME_MAX];       /* optional */
        int64_t attached_ns;    /* optional */
        int64_t stats_time_ns;  /* optional: when "memstats" was read, 0 = never */
        uint64_t limit_bytes;   /* optional: policy MemoryLimit, 0 = none */
        uint64_t rate_bytes;    /* optional */
        int64_t last_gc_ns;     /* optional */
        int64_t last_scvg_ns;   /* optional */
        /* optional: RSS breakdown memd reads from /proc/PID/status and
         * smaps_rollup (status of one process only; 0 = not read) */
        uint64_t pss_bytes, rss_anon_bytes, rss_file_bytes, rss_shmem_bytes, swap_bytes, lazyfree_bytes;
        /* optional: memd's copy of the profile: buckets and rounded estimates */
        uint64_t profile_buckets, profile_alloc_objects, profile_alloc_bytes;
        uint64_t profile_inuse_objects, profile_inuse_bytes;
        int64_t exited_ns;      /* optional: when the process exited (memd keeps its last state), 0 = alive */
        /* optional: the policy in force (docs/policy.md) */
        uint64_t idle_max_bytes, idle_timeout_ns, allowance_bytes, policy_actions;
        char policy[PROTO_NAME_MAX];      /* "Key=value<TAB>source" lines (one PID only) */
        char policy_last[PROTO_NAME_MAX]; /* the last policy action, why, with its figures */
        /* optional: a brief status row's figures, in place of "memstats" */
        uint64_t rss_bytes, heap_inuse_bytes, heap_idle_bytes, heap_released_bytes;
        struct memd_memstats stats;     /* optional map "memstats", every field required inside but the pauses */
        bool has_stats;
        bool has_pauses;        /* PauseNs/PauseEnd in "memstats": memd sends them for one PID only */
        /* events: encode from these, decode into the view */
        const struct proto_event *events;
        size_t n_events;
        struct proto_array event_view;  /* optional "events", <= PROTO_MAX_EVENTS */
};

struct proto_status_reply {
        struct proto_array processes;   /* required: decode each with proto_decode_process() */
};

/* ---- encoders -------------------------------------------------------------
 * Each packs one whole message into pk (whose writer is normally a
 * msgpack_sbuffer, the growable buffer).  They return 0 or -ENOMEM; a
 * message that would not fit a frame is the caller's business (split a
 * profile into parts: proto_bucket_bytes_max() bounds one bucket).  Strings
 * longer than PROTO_MAX_STRING_BYTES are -EINVAL. */
int proto_pack_hello(msgpack_packer *pk, uint64_t id, const struct proto_hello *h);
int proto_pack_hello_ok(msgpack_packer *pk, uint64_t id, const struct proto_hello_ok *h);
int proto_pack_error(msgpack_packer *pk, uint64_t id, int code, const char *text); /* code: errno, either sign */
int proto_pack_ok(msgpack_packer *pk, uint64_t id, uint64_t previous); /* UINT64_MAX: no "previous" */
int proto_pack_bye(msgpack_packer *pk, uint64_t id, const char *reason); /* reason may be NULL */
/* pid 0: not packed.  with_pauses false leaves out PauseNs and PauseEnd
 * (send them when NumGC changed, and first on a connection). */
int proto_pack_memstats(msgpack_packer *pk, uint64_t id, uint32_t pid, int64_t time_ns,
                        const struct memd_memstats *s, bool with_pauses);
/* type: PROTO_MSG_PROFILE_SNAPSHOT or PROTO_MSG_PROFILE_DELTA.  h->buckets is ignored. */
int proto_pack_profile(msgpack_packer *pk, uint32_t type, uint64_t id, const struct proto_profile *h,
                       const struct profile_record *records, size_t n_records);
int proto_pack_mappings(msgpack_packer *pk, uint64_t id, uint32_t pid,
                        const struct proto_mapping *m, size_t n);
int proto_pack_event(msgpack_packer *pk, uint64_t id, const struct proto_event *e);
/* type: one of the *_REQUEST types, SET_RATE, SET_MEMORY_LIMIT, SET_POLICY or SUBSCRIBE. */
int proto_pack_request(msgpack_packer *pk, uint32_t type, uint64_t id, const struct proto_request *q);
int proto_pack_gc_result(msgpack_packer *pk, uint64_t id, const struct proto_gc_result *g);
int proto_pack_profile_data(msgpack_packer *pk, uint64_t id, const struct proto_profile_data *d);
int proto_pack_scavenge_result(msgpack_packer *pk, uint64_t id, const struct proto_scavenge_result *s);
int proto_pack_status_reply(msgpack_packer *pk, uint64_t id, const struct proto_process *p, size_t n);
/* The same, one process at a time: the header for n processes, then n
 * proto_pack_process() calls (no array of n proto_process in memory). */
int proto_pack_status_begin(msgpack_packer *pk, uint64_t id, size_t n);
int proto_pack_process(msgpack_packer *pk, const struct proto_process *p);

/* Upper bound of one bucket's encoding, for splitting profiles into frames. */
size_t proto_bucket_bytes_max(void);

/* ---- reader -------------------------------------------------------------- */

/* A received message.  body is the whole map (envelope included) and stays
 * valid until the next proto_reader_next() into the same proto_msg, or
 * proto_msg_done(). */
struct proto_msg {
        uint32_t type;                  /* ro */
        uint64_t id;                    /* ro */
        const msgpack_object *body;     /* ro */
        msgpack_unpacked unpacked;      /* private */
};

void proto_msg_init(struct proto_msg *m);
void proto_msg_done(struct proto_msg *m);

struct proto_reader;

int proto_reader_new(struct proto_reader **ret);
void proto_reader_free(struct proto_reader *r); /* accepts NULL */

/* Takes a copy of len bytes read from the socket.  Sizes and nesting are
 * checked on the bytes themselves before they are buffered, so a message
 * that is or announces more than PROTO_MAX_FRAME_BYTES (or more entries or
 * objects than allowed) is -EMSGSIZE without being held; bytes that are not
 * msgpack, or a message that is not a map, are -EBADMSG.  Returns 0, or
 * -errno (and then every later call returns it too: close the connection),
 * or -ENOBUFS (not sticky) when more than PROTO_MAX_BUFFERED_BYTES would wait
 * unread. */
int proto_reader_feed(struct proto_reader *r, const void *data, size_t len);

/* Returns 1 with the next message in ret, 0 when more bytes are needed, or
 * -errno (sticky): -EBADMSG for a bad envelope (no "t"/"id", unknown type),
 * -ENOMEM. */
int proto_reader_next(struct proto_reader *r, struct proto_msg *ret);

/* ---- body decoders (set defaults, then proto_decode with the type's table) */
int proto_decode_hello(const struct proto_msg *m, struct proto_hello *ret);
int proto_decode_hello_ok(const struct proto_msg *m, struct proto_hello_ok *ret);
int proto_decode_error(const struct proto_msg *m, struct proto_error *ret);
int proto_decode_ok(const struct proto_msg *m, struct proto_ok *ret);
int proto_decode_bye(const struct proto_msg *m, struct proto_bye *ret);
int proto_decode_memstats(const struct proto_msg *m, struct proto_memstats *ret);
/* Validates every bucket, so later proto_decode_bucket() calls on them succeed. */
int proto_decode_profile(const struct proto_msg *m, struct proto_profile *ret);
int proto_decode_bucket(const msgpack_object *o, struct profile_record *ret);
/* Validates every mapping. */
int proto_decode_mappings(const struct proto_msg *m, struct proto_mappings *ret);
int proto_decode_mapping(const msgpack_object *o, struct proto_mapping *ret);
int proto_decode_event(const struct proto_msg *m, struct proto_event *ret);
int proto_decode_event_object(const msgpack_object *o, struct proto_event *ret);
int proto_decode_request(const struct proto_msg *m, struct proto_request *ret);
int proto_decode_gc_result(const struct proto_msg *m, struct proto_gc_result *ret);
int proto_decode_profile_data(const struct proto_msg *m, struct proto_profile_data *ret);
int proto_decode_scavenge_result(const struct proto_msg *m, struct proto_scavenge_result *ret);
/* Validates every process (and its events). */
int proto_decode_status_reply(const struct proto_msg *m, struct proto_status_reply *ret);
int proto_decode_process(const msgpack_object *o, struct proto_process *ret);

#endif
