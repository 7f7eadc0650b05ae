/* internal.h - what libmemd's modules share: per-thread state, counters, the sample table. */
#ifndef MEMD_INTERNAL_H
#define MEMD_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "memd.h"
#include "profile.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define _unused_ __attribute__((unused))
#define _noinline_ __attribute__((noinline))
#define _cold_ __attribute__((cold, noinline))
/* Slow-path functions keep frame pointers so the frame walk can start there,
 * without paying for them on the fast path. */
#define _slowpath_ __attribute__((cold, noinline, optimize("no-omit-frame-pointer")))

/* Which allocator sits beneath us, detected once at start. */
enum alloc_kind {
        ALLOC_GLIBC = 0, /* ptmalloc: chunk headers are read directly */
        ALLOC_JEMALLOC,
        ALLOC_TCMALLOC,
        ALLOC_MIMALLOC,
        ALLOC_OTHER,
};

/* Per-thread counters.  Slots live in memory that is never freed, so a
 * thread's counts survive it; a slot is reused by a later thread only when
 * the kernel says its previous owner is gone.  Only the owner writes; readers
 * sum all slots (each value is exact at some instant). */
struct slot {
        uint64_t mallocs;
        uint64_t alloc_bytes;           /* usable bytes + 8 per block (interpose.c: acct_bytes) */
        uint64_t frees;
        uint64_t free_bytes;
        uint64_t mmap_allocs;           /* glibc chunks served by mmap, also counted above */
        uint64_t mmap_alloc_bytes;      /* their chunk sizes */
        uint64_t mmap_frees;
        uint64_t mmap_free_bytes;
        struct slot *next;              /* all slots, never unlinked */
        _Atomic pid_t tid;              /* owner, 0 if free */
        uint64_t pad[2];                /* pad[0]: SLOT_INUSE / EXITING / CLAIMING */
} __attribute__((aligned(64)));

struct thread_state {
        int64_t countdown;              /* bytes until the next sample */
        struct slot *fast;              /* = slot when the fast paths may run (glibc), else NULL */
        struct slot *slot;              /* NULL until registered */
        uint32_t guard;                 /* reentrancy depth: >0 means inside libmemd */
        uint32_t inited;
        uint64_t rng;                   /* xorshift state for the sample intervals */
        uint64_t rate_gen;              /* profile rate generation the countdown was drawn for */
};

extern __thread struct thread_state memd_thread __attribute__((tls_model("initial-exec")));

/* Global configuration and state, set once at load then mostly read. */
struct memd_config {
        _Atomic uint64_t profile_rate;  /* bytes; 0 off */
        _Atomic uint64_t last_rate;     /* the last rate that was not 0: a profile's period */
        _Atomic uint64_t rate_gen;
        _Atomic uint64_t memory_limit;  /* 0 none */
        _Atomic int gcpercent;          /* <0 off; memd may change it (SET_GC_PERCENT) */
        bool gctrace;
        bool scavtrace;
        bool keep_fastbins;
        int unwinder;                   /* UNWIND_* */
        char memprofile[4096];          /* MEMD_MEMPROFILE, "" if unset */
        char socket_path[108];
};
extern struct memd_config memd_config;
extern enum alloc_kind memd_alloc_kind;
extern int64_t memd_start_ns;           /* CLOCK_MONOTONIC at load */

enum { UNWIND_AUTO = 0, UNWIND_LIBUNWIND, UNWIND_BACKTRACE };

/* The next allocator's entry points.  The aligned family is served with its
 * memalign (not every allocator has pvalloc), so only these are needed. */
struct real_alloc {
        void *(*malloc)(size_t);
        void (*free)(void *);
        void *(*calloc)(size_t, size_t);
        void *(*realloc)(void *, size_t);
        void *(*memalign)(size_t, size_t);
        size_t (*malloc_usable_size)(void *);
};
extern struct real_alloc memd_real;

/* env.c */
int env_parse_size(const char *s, uint64_t *ret_bytes);
void env_load(struct memd_config *c);

/* interpose.c */
void interpose_init(void);
struct counters {
        uint64_t mallocs, frees, alloc_bytes, free_bytes;
        uint64_t mmap_allocs, mmap_frees, mmap_alloc_bytes, mmap_free_bytes;
};
void interpose_counters(struct counters *ret);

/* sample.c: the sampled path */
double sample_weight(uint64_t size_bytes, uint64_t rate_bytes);
int64_t sample_next_interval(uint64_t *rng, uint64_t rate_bytes);
int sample_stack(uintptr_t *pcs, int max);
void sample_init(void);

/* bucket.c: the table of stacks and their figures */
int bucket_record_alloc(const uintptr_t *pcs, uint32_t depth, uint64_t size_bytes, double weight, uint32_t *ret_idx);
void bucket_record_free(uint32_t idx, uint64_t size_bytes, double weight);
/* Copies the table into a fresh mmap'd array; caller munmaps *ret_len bytes. */
int bucket_snapshot(struct profile_record **ret_records, size_t *ret_n, size_t *ret_map_len);
uint64_t bucket_sys_bytes(void);
void bucket_atfork_prepare(void);
void bucket_atfork_parent(void);
void bucket_atfork_child(void);

/* stats.c */
int stats_read(struct memd_memstats *s);
int stats_read_proc(const char *smaps_rollup, const char *status, struct memd_memstats *s);
int stats_read_threads(const char *status, uint32_t *ret_threads);
/* Reads a whole file into an mmap'd, NUL-terminated buffer (no malloc);
 * the caller munmaps *ret_cap bytes. */
int stats_read_file(const char *path, char **ret_buf, size_t *ret_len, size_t *ret_cap);
int stats_read_heap(const char *maps_path, struct memd_memstats *s);
void stats_counters(struct memd_memstats *s);

/* reclaim.c */
enum { RECLAIM_EVENT_GC = 1, RECLAIM_EVENT_SCVG = 2 }; /* = PROTO_EVENT_* */
#define RECLAIM_EVENTS 64       /* kept for the agent */

/* One gc or scvg cycle, as memd's EVENT message carries it. */
struct reclaim_event {
        uint64_t seq;           /* 1, 2, ... in the order cycles ended */
        uint32_t kind;          /* RECLAIM_EVENT_* */
        bool forced;
        uint64_t num;           /* gc: NumGC after it; scvg: automatic count, 0 when forced (scvg-1) */
        int64_t time_ns;        /* CLOCK_REALTIME at its end */
        uint64_t duration_ns;
        uint64_t heap_before, heap_reclaimed, heap_live, goal; /* gc: A->B->C, goal */
        uint64_t released, heap_inuse, heap_idle, heap_sys, heap_released; /* scvg */
        char text[400];         /* the seed-grammar line(s), '\n' between, none at the end */
};

struct reclaim_report {
        struct reclaim_event gc, scvg;
        bool has_gc, has_scvg;
};

void reclaim_fill_stats(struct memd_memstats *s);
/* The GC goal for a live heap (Go's heap goal, 4 MiB minimum) capped by a
 * limit; gcpercent < 0: off, limit 0: none; 0 when neither applies. */
/* memd's policy GCPercent (SET_GC_PERCENT): < 0 off; returns the previous. */
int reclaim_set_gcpercent(int percent);
uint64_t reclaim_heap_goal(uint64_t live_after_bytes, int gcpercent, uint64_t limit_bytes);
/* HeapAlloc at the end of the last cycle (0 before the first). */
uint64_t reclaim_live_after(void);
void reclaim_atfork_child(void);
/* One cycle (reclaimers, then a trim when scavenge).  ret_released: heap no
 * longer resident; ret_report: the cycle's events (zeroed when a reclaimer
 * asked for a cycle from inside one).  Both may be NULL. */
size_t reclaim_cycle(bool forced, bool scavenge, uint64_t *ret_released, struct reclaim_report *ret_report);
/* gc_cycle false: the trim alone (memd's idle-memory policy): no reclaimer
 * runs, no GC is counted or traced, only the scvg line. */
size_t reclaim_run(bool forced, bool gc_cycle, bool scavenge, uint64_t *ret_released,
                   struct reclaim_report *ret_report);
/* The same from one of libmemd's threads (agent, monitor), which run with
 * the guard up: dropped for the cycle, so the reclaimers' frees of sampled
 * blocks are matched. */
size_t reclaim_run_unguarded(bool forced, bool gc_cycle, bool scavenge, uint64_t *ret_released,
                             struct reclaim_report *ret_report);
/* Copies the kept events newer than seq `after` into out, oldest first;
 * *ret_dropped counts those that fell out of the ring unread. */
size_t reclaim_events_since(uint64_t after, struct reclaim_event *out, size_t max, uint64_t *ret_dropped);
uint64_t reclaim_events_last(void);
/* Waits up to ms for a running cycle to end (not when called from one). */
void reclaim_wait_idle(unsigned ms);

/* agent.c: the thread that reports to memd */
void agent_start(void);
void agent_atfork_child(void);
/* Wakes the agent (a new event); async-signal-safe, never blocks. */
void agent_notify(void);

#include "pressure.h"

/* monitor.c: the thread that enforces MEMD_MEMORY_LIMIT, MEMD_GCPERCENT and
 * memory pressure, and its decisions (pure functions, for the tests) */
struct limit_pace {
        int64_t last_ns;                /* end of the last cycle the limit ran */
        int64_t interval_ns;            /* wait before the next while still over */
        bool armed;                     /* back under the re-arm mark since then */
};
void monitor_limit_init(struct limit_pace *p);
bool monitor_limit_due(struct limit_pace *p, uint64_t held_bytes, uint64_t limit_bytes, int64_t now_ns);
void monitor_limit_done(struct limit_pace *p, uint64_t held_after_bytes, uint64_t limit_bytes,
                        uint64_t progress_bytes, int64_t now_ns);
bool monitor_gc_due(uint64_t heap_alloc_bytes, uint64_t live_after_bytes, int gcpercent, uint64_t limit_bytes,
                    int64_t last_gc_ns, int64_t now_ns);
bool monitor_pressure_due(int64_t last_ns, int64_t now_ns);
/* From the constructor: reads MEMORY_PRESSURE_*, starts the thread when
 * anything is configured. */
void monitor_init(void);
/* Starts the thread if it is not running (memd_set_memory_limit). */
void monitor_start(void);
void monitor_atfork_child(void);

/* trace.c: line formatting with no malloc and no stdio */
struct buf {
        char *p;
        size_t len, cap;
};
void buf_puts(struct buf *b, const char *s);
void buf_u64(struct buf *b, uint64_t v);
void buf_fixed(struct buf *b, uint64_t v, int decimals);
void buf_ms(struct buf *b, uint64_t ns);
void buf_hex(struct buf *b, uint64_t v);
void trace_write(int fd, const char *s, size_t len);
/* One "libmemd: ..." line on stderr; callers make sure it is said once.
 * libmemd's only direct output besides traces. */
/* agent.c: a thread of libmemd's own (agent, monitor): detached, a 2 MiB stack (the
 * application's reclaimers run on it), every signal blocked, started with
 * the guard up.  Returns pthread_create's result. */
int thread_start(void *(*fn)(void *), void *arg);
void memd_warn(const char *msg);

int64_t now_ns(int clock);

#endif
