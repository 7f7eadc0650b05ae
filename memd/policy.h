/* policy.h - memd's per-process memory policies: when a process's MemStats call for a scavenge or a forced GC, and under memory pressure who is asked first. */
#ifndef MEMD_POLICY_H
#define MEMD_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memd.h"

/* What the decisions read of a process's policy (docs/policy.md). */
struct policy_values {
        uint64_t memory_limit;          /* HeapSys - HeapReleased above this: GC + scavenge; 0 none */
        uint64_t idle_memory_max;       /* idle resident heap tolerated... */
        int64_t idle_timeout_ns;        /* ...for this long, beyond the allowance */
        bool reclaim_on_pressure;
};

/* A process's history as the decisions need it. */
struct policy_track {
        int64_t idle_since_ns;          /* idle above IdleMemoryMax since; 0 = not */
        uint64_t peak_inuse;            /* the last peak of the heap used (HeapInuse + the allocations since the last stats)... */
        int64_t peak_ns;                /* ...and when it was seen */
        int64_t limit_last_ns;          /* the last MemoryLimit action */
        int64_t limit_backoff_ns;       /* least time between two; doubles while they do not help */
        bool limit_helped;              /* held went under LIMIT_REARM of the limit since the last */
        int64_t idle_last_ns;           /* the last idle scavenge */
        int64_t pressure_last_ns;       /* the last reclaim asked under pressure */
        int64_t in_flight_ns;           /* a request is out since; 0 = none */
        uint64_t total_alloc;           /* TotalAlloc of the previous stats */
        bool total_alloc_seen;
        uint64_t actions;               /* requests made, all kinds */
        char last[256];                 /* the last action, as logged */
};

enum policy_action {
        POLICY_NONE,
        POLICY_LIMIT,           /* over MemoryLimit: GC (reclaimers), then scavenge */
        POLICY_IDLE,            /* idle heap over IdleMemoryMax + allowance for IdleTimeout: scavenge only */
};

#define POLICY_LIMIT_BACKOFF_MIN_NS 1000000000LL        /* 1 s: one stats interval */
#define POLICY_LIMIT_BACKOFF_MAX_NS 30000000000LL       /* 30 s */
#define POLICY_LIMIT_REARM_PERCENT 95
#define POLICY_REQUEST_STALE_NS 30000000000LL           /* an answer lost: decide again after this */
#define POLICY_PRESSURE_COOLDOWN_NS 2000000000LL        /* one process asked at most every 2 s (a PSI window) */

void policy_track_init(struct policy_track *t);
/* The decision on a new MemStats at now (CLOCK_MONOTONIC ns); why gets the
 * reason with the figures when an action is due.  Updates the track (the
 * peak, the idle timer, the rate limit), as if the action were taken. */
enum policy_action policy_decide(struct policy_track *t, const struct policy_values *v,
                                 const struct memd_memstats *s, int64_t now, char *why, size_t why_len);
/* Idle heap tolerated on top of IdleMemoryMax: the recent peak of HeapInuse
 * over the current one, decaying to 0 over IdleTimeout (smoothstep). */
uint64_t policy_allowance(const struct policy_track *t, const struct policy_values *v, uint64_t inuse, int64_t now);

/* Under memory pressure: which of n candidates to ask, largest held heap
 * first.  held[i] = HeapSys - HeapReleased, eligible[i] false for those not
 * to ask (policy, cooldown, in flight); writes up to max indexes into out,
 * returns how many. */
size_t policy_pressure_pick(const uint64_t *held, const bool *eligible, size_t n, size_t *out, size_t max);

/* memd's side (the process's policy and track live in struct process). */
struct process;
struct server;
/* The built-in defaults (memd-config.h's policy_defaults) as decided on. */
void policy_values_default(struct policy_values *v);
/* Loads --config-dir (at start and on SIGHUP): bad files are logged and
 * skipped; every process's policy is resolved again.  -ENOMEM keeps the old. */
int policy_load(struct server *s);
void policy_done(struct server *s);
void policy_attach(struct process *p);
void policy_update(struct process *p);          /* its name, user or executable changed (exec) */
/* memctl set: "key=value" lines, all or nothing; err says what is wrong. */
int policy_set_runtime(struct process *p, const char *settings, char *err, size_t err_len);
void policy_stats(struct process *p);           /* on each MEMSTATS */
void policy_request_done(struct process *p);    /* the request it made ended */
uint64_t policy_process_allowance(const struct process *p);
/* "Key=value<TAB>source" lines, for status PID. */
void policy_describe(const struct process *p, char *buf, size_t len);
/* Memory pressure (what: the source, for the log): asks up to a few
 * processes with ReclaimOnPressure, largest held heap first, each at most
 * once per cooldown.  Returns how many were asked. */
size_t policy_pressure(struct server *s, const char *what);

#endif
