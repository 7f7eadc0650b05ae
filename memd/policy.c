/* policy.c - memd's per-process memory policies: MemoryLimit, idle memory returned in bounded time, reclaim under memory pressure. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "policy.h"

/*
 * The decisions are pure functions of a process's MemStats, its policy and
 * its track (docs/policy.md):
 *
 * MemoryLimit (GOMEMLIMIT's meaning): held = HeapSys - HeapReleased.  Above
 * the limit memd asks for a GC (the program's reclaimers) then a scavenge,
 * at most once per backoff interval: 1 s (one stats interval), doubling up
 * to 30 s while the actions do not bring held under 95% of the limit (live
 * data above the limit: asking again every second would only burn the
 * program's CPU), back to 1 s once they do.
 *
 * Idle memory: idle = HeapIdle - HeapReleased, resident and unused.  Once it
 * has stayed above IdleMemoryMax for IdleTimeout, and is above IdleMemoryMax
 * plus the allowance, memd asks for a scavenge alone (no reclaimer: the
 * caches stay).  The allowance is the recent peak of the heap used over the
 * current HeapInuse, decaying to 0 over IdleTimeout along a smoothstep (the
 * heap used in a stats interval is HeapInuse plus what was allocated since
 * the previous stats, at most the heap held: a burst freed within the
 * second counts), so that a
 * workload that frees and re-allocates the same amount keeps refreshing its
 * peak and is not scavenged over and over (its idle memory is what it will
 * use again in a moment); a cache emptied for good sees its allowance gone
 * IdleTimeout after its peak, when its idle timer is due too.
 */

void policy_track_init(struct policy_track *t) {
        *t = (struct policy_track) { .limit_backoff_ns = POLICY_LIMIT_BACKOFF_MIN_NS, .limit_helped = true };
}

static uint64_t sub0(uint64_t a, uint64_t b) {
        return a > b ? a - b : 0;
}

/* 1 at 0, 0 from 1 on, smooth in between (3x^2 - 2x^3 taken from 1). */
static double decay(double x) {
        if (x <= 0)
                return 1;
        if (x >= 1)
                return 0;
        return 1 - x * x * (3 - 2 * x);
}

static uint64_t decayed_peak(const struct policy_track *t, const struct policy_values *v, int64_t now) {
        double x = v->idle_timeout_ns > 0 ? (double) (now - t->peak_ns) / (double) v->idle_timeout_ns : 1;

        return (uint64_t) ((double) t->peak_inuse * decay(x));
}

uint64_t policy_allowance(const struct policy_track *t, const struct policy_values *v, uint64_t inuse, int64_t now) {
        return sub0(decayed_peak(t, v, now), inuse);
}

static void mib(char *buf, size_t len, uint64_t bytes) {
        snprintf(buf, len, "%.1f MiB", (double) bytes / (1 << 20));
}

enum policy_action policy_decide(struct policy_track *t, const struct policy_values *v,
                                 const struct memd_memstats *s, int64_t now, char *why, size_t why_len) {
        uint64_t held = sub0(s->HeapSys, s->HeapReleased), idle = sub0(s->HeapIdle, s->HeapReleased);
        uint64_t allowance;
        char a[32], b[32], c[32];

        if (why_len)
                why[0] = 0;
        /* The peak, before anything else: what the process used.  Stats
         * come once a second, and a burst of allocations freed again within
         * it never shows in HeapInuse; what was allocated since the last
         * stats (TotalAlloc grows by it) was needed in that second too, up
         * to the heap held. */
        uint64_t used = s->HeapInuse;
        if (t->total_alloc_seen && s->TotalAlloc > t->total_alloc) {
                uint64_t burst = s->HeapInuse + (s->TotalAlloc - t->total_alloc);
                used = burst < held ? burst : held; /* held >= HeapInuse */
        }
        t->total_alloc = s->TotalAlloc;
        t->total_alloc_seen = true;
        if (used >= decayed_peak(t, v, now)) {
                t->peak_inuse = used;
                t->peak_ns = now;
        }
        if (idle > v->idle_memory_max) {
                if (!t->idle_since_ns)
                        t->idle_since_ns = now;
        } else
                t->idle_since_ns = 0;
        if (v->memory_limit && held <= v->memory_limit / 100 * POLICY_LIMIT_REARM_PERCENT) {
                t->limit_helped = true;
                t->limit_backoff_ns = POLICY_LIMIT_BACKOFF_MIN_NS;
        }
        if (t->in_flight_ns && now - t->in_flight_ns < POLICY_REQUEST_STALE_NS)
                return POLICY_NONE; /* one request at a time */
        t->in_flight_ns = 0;

        if (v->memory_limit && held > v->memory_limit &&
            (!t->limit_last_ns || now - t->limit_last_ns >= t->limit_backoff_ns)) {
                if (!t->limit_helped && t->limit_last_ns) {
                        t->limit_backoff_ns *= 2;
                        if (t->limit_backoff_ns > POLICY_LIMIT_BACKOFF_MAX_NS)
                                t->limit_backoff_ns = POLICY_LIMIT_BACKOFF_MAX_NS;
                }
                t->limit_helped = false;
                t->limit_last_ns = now;
                mib(a, sizeof a, held);
                mib(b, sizeof b, v->memory_limit);
                mib(c, sizeof c, s->HeapAlloc);
                snprintf(why, why_len, "MemoryLimit: heap held from the OS %s over the limit %s (HeapAlloc %s): GC, then scavenge",
                         a, b, c);
                return POLICY_LIMIT;
        }

        allowance = policy_allowance(t, v, s->HeapInuse, now);
        if (t->idle_since_ns && now - t->idle_since_ns >= v->idle_timeout_ns &&
            idle > v->idle_memory_max + allowance) {
                mib(a, sizeof a, idle);
                mib(b, sizeof b, v->idle_memory_max);
                mib(c, sizeof c, allowance);
                snprintf(why, why_len, "IdleMemoryMax: idle heap %s over %s + allowance %s for %.0f s: scavenge",
                         a, b, c, (double) (now - t->idle_since_ns) / 1e9);
                t->idle_since_ns = 0;
                t->idle_last_ns = now;
                return POLICY_IDLE;
        }
        return POLICY_NONE;
}

size_t policy_pressure_pick(const uint64_t *held, const bool *eligible, size_t n, size_t *out, size_t max) {
        size_t k = 0;

        /* Selection of the max largest: n is the number of processes, max a
         * handful. */
        while (k < max) {
                size_t best = n;
                for (size_t i = 0; i < n; i++) {
                        bool taken = false;
                        if (!eligible[i] || !held[i])
                                continue;
                        for (size_t j = 0; j < k && !taken; j++)
                                taken = out[j] == i;
                        if (!taken && (best == n || held[i] > held[best]))
                                best = i;
                }
                if (best == n)
                        break;
                out[k++] = best;
        }
        return k;
}

/* ---- memd's side: the processes, the requests, the log ------------------- */

static int64_t mono_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static const char *action_name(enum policy_action a) {
        return a == POLICY_LIMIT ? "limit" : a == POLICY_IDLE ? "idle" : "pressure";
}

static void config_error(const char *msg, void *userdata) {
        (void) userdata;
        log_msg(LOG_WARNING, "configuration: %s", msg);
}

/* The decisions' view of a policy: IdleTimeout=infinity is "never". */
static void values_of(const struct policy *p, struct policy_values *v) {
        *v = (struct policy_values) {
                .memory_limit = p->memory_limit,
                .idle_memory_max = p->idle_memory_max,
                .idle_timeout_ns = p->idle_timeout_ns > INT64_MAX ? INT64_MAX : (int64_t) p->idle_timeout_ns,
                .reclaim_on_pressure = p->reclaim_on_pressure,
        };
}

static void copy_key(struct policy *to, const struct policy *from, enum policy_key k) {
        switch (k) {
        case POLICY_MEMORY_LIMIT:
                to->memory_limit = from->memory_limit;
                break;
        case POLICY_IDLE_MEMORY_MAX:
                to->idle_memory_max = from->idle_memory_max;
                break;
        case POLICY_IDLE_TIMEOUT:
                to->idle_timeout_ns = from->idle_timeout_ns;
                break;
        case POLICY_RECLAIM_ON_PRESSURE:
                to->reclaim_on_pressure = from->reclaim_on_pressure;
                break;
        case POLICY_GC_PERCENT:
                to->gc_percent = from->gc_percent;
                break;
        case POLICY_PROFILE_RATE:
                to->profile_rate = from->profile_rate;
                to->profile_rate_set = from->profile_rate_set;
                break;
        default:
                return;
        }
        to->source[k] = from->source[k];
}

/* /proc/PID/exe, "" when unreadable (the process is gone, or another
 * user's without the capability). */
static void read_exe(pid_t pid, char *buf, size_t len) {
        char path[64];
        ssize_t n;

        snprintf(path, sizeof path, "/proc/%d/exe", (int) pid);
        n = readlink(path, buf, len - 1);
        buf[n > 0 ? n : 0] = 0;
}

static bool is_default(const struct policy *v, enum policy_key k) {
        return !strcmp(v->source[k], "default");
}

/* Sends the agent a setting of its own (memd keeps the rest); in flight like
 * a reclaim request, so one thing at a time. */
static void send_setting(struct process *p, uint32_t type, const struct proto_request *q, const char *what) {
        int r = forward_policy_request(p, type, q);

        if (r < 0)
                log_errno(LOG_WARNING, r, "pid %d (%s): cannot set %s: %m", (int) p->pid, p->comm, what);
        else
                p->track.in_flight_ns = mono_ns();
}

/* The policy of p from the files, memctl set's values on top; what changed
 * of the agent's own settings (ProfileRate, GCPercent) is sent to it. */
static void resolve(struct process *p) {
        char exe[4096];
        struct policy_subject subj = { .comm = p->comm, .unit = p->unit[0] ? p->unit : NULL, .uid = p->uid };
        uint64_t old_rate = p->policy.profile_rate_set ? p->policy.profile_rate : UINT64_MAX;
        int old_gc = p->policy.source[POLICY_GC_PERCENT] && !is_default(&p->policy, POLICY_GC_PERCENT) ?
                p->policy.gc_percent : INT32_MIN;

        read_exe(p->pid, exe, sizeof exe);
        subj.exe = exe[0] ? exe : NULL;
        config_resolve(p->server->config, &subj, &p->policy);
        for (int k = 0; k < _POLICY_KEY_MAX; k++)
                if (p->runtime_set[k])
                        copy_key(&p->policy, &p->runtime, (enum policy_key) k);
        values_of(&p->policy, &p->values);
        if (!p->conn || p->exited_ns)
                return;
        /* The agent's own settings, only when a policy gives them (a default
         * would override what the program's environment says). */
        if (p->policy.profile_rate_set && p->policy.profile_rate != old_rate) {
                struct proto_request q = { .value = p->policy.profile_rate };
                send_setting(p, PROTO_MSG_SET_RATE, &q, "ProfileRate");
        }
        if (!is_default(&p->policy, POLICY_GC_PERCENT) && p->policy.gc_percent != old_gc) {
                struct proto_request q = { .gc_percent = p->policy.gc_percent };
                send_setting(p, PROTO_MSG_SET_GC_PERCENT, &q, "GCPercent");
        }
}

void policy_values_default(struct policy_values *v) {
        struct policy p;

        policy_defaults(&p);
        values_of(&p, v);
}

void policy_attach(struct process *p) {
        policy_track_init(&p->track);
        resolve(p);
}

void policy_update(struct process *p) {
        resolve(p);
}

int policy_load(struct server *s) {
        const char *dir = s->config_dir ? s->config_dir : CONFIG_DIR_DEFAULT;
        struct config *c = NULL, *old = s->config;
        int r = config_load(dir, &c, config_error, NULL);

        if (r < 0)
                return log_errno(LOG_ERR, r, "configuration: cannot load %s: %m; keeping the previous one", dir);
        s->config = c;
        /* Sources point into the configuration: every process moves to the
         * new one before the old goes. */
        for (struct process *p = s->processes; p; p = p->next)
                resolve(p);
        config_free(old);
        log_msg(LOG_INFO, "configuration: %zu file%s from %s", config_n_files(c), config_n_files(c) == 1 ? "" : "s",
                dir);
        return 0;
}

void policy_done(struct server *s) {
        config_free(s->config);
        s->config = NULL;
}

int policy_set_runtime(struct process *p, const char *settings, char *err, size_t err_len) {
        struct policy next = p->runtime;
        bool set[_POLICY_KEY_MAX];
        char line[512];

        memcpy(set, p->runtime_set, sizeof set);
        for (const char *c = settings; *c;) {
                size_t n = strcspn(c, "\n");
                char *eq;
                int k;

                if (n >= sizeof line) {
                        snprintf(err, err_len, "setting too long: %.40s...", c);
                        return -EINVAL;
                }
                memcpy(line, c, n);
                line[n] = 0;
                c += n + (c[n] == '\n');
                if (!line[0])
                        continue;
                eq = strchr(line, '=');
                if (!eq) {
                        snprintf(err, err_len, "%s: expected KEY=VALUE", line);
                        return -EINVAL;
                }
                *eq = 0;
                k = policy_key_from_name(line);
                if (k < 0) {
                        snprintf(err, err_len, "%s: unknown key (memory-limit, idle-memory-max, idle-timeout, "
                                 "reclaim-on-pressure, gc-percent, profile-rate)", line);
                        return -EINVAL;
                }
                if (policy_set(&next, line, eq + 1, "memctl set", err, err_len) < 0)
                        return -EINVAL;
                set[k] = true;
        }
        p->runtime = next;
        memcpy(p->runtime_set, set, sizeof set);
        resolve(p);
        return 0;
}

/* Sends the request an action calls for and logs it.  kind: POLICY_LIMIT
 * and pressure ask for GC + scavenge, POLICY_IDLE for a scavenge alone. */
static int policy_request(struct process *p, const char *kind, bool scavenge_only, const char *why) {
        struct proto_request q = { .automatic = true, .scavenge_only = scavenge_only };
        int r = forward_policy_request(p, PROTO_MSG_SCAVENGE_REQUEST, &q);

        if (r < 0)
                return log_errno(LOG_WARNING, r, "pid %d (%s): policy %s: cannot ask the process: %m", (int) p->pid,
                                 p->comm, kind);
        p->track.in_flight_ns = mono_ns();
        p->track.actions++;
        snprintf(p->track.last, sizeof p->track.last, "%s", why);
        log_policy(p, kind, why);
        return 0;
}

void policy_stats(struct process *p) {
        char why[256];
        enum policy_action a;

        if (!p->conn || p->exited_ns || !p->has_stats)
                return;
        a = policy_decide(&p->track, &p->values, &p->stats, mono_ns(), why, sizeof why);
        if (a != POLICY_NONE)
                policy_request(p, action_name(a), a == POLICY_IDLE, why);
}

void policy_request_done(struct process *p) {
        p->track.in_flight_ns = 0;
}

uint64_t policy_process_allowance(const struct process *p) {
        return p->has_stats ? policy_allowance(&p->track, &p->values, p->stats.HeapInuse, mono_ns()) : 0;
}

#define PRESSURE_BATCH 4
size_t policy_pressure(struct server *s, const char *what) {
        int64_t now = mono_ns();
        struct process **procs;
        uint64_t *held;
        bool *ok;
        size_t n = 0, k, pick[PRESSURE_BATCH];

        for (struct process *p = s->processes; p; p = p->next)
                n++;
        procs = calloc(n ? n : 1, sizeof *procs);
        held = calloc(n ? n : 1, sizeof *held);
        ok = calloc(n ? n : 1, sizeof *ok);
        if (!procs || !held || !ok) {
                free(procs);
                free(held);
                free(ok);
                return 0;
        }
        n = 0;
        for (struct process *p = s->processes; p; p = p->next, n++) {
                procs[n] = p;
                held[n] = p->has_stats ? sub0(p->stats.HeapSys, p->stats.HeapReleased) : 0;
                ok[n] = p->conn && !p->exited_ns && p->values.reclaim_on_pressure && !p->track.in_flight_ns &&
                        (!p->track.pressure_last_ns || now - p->track.pressure_last_ns >= POLICY_PRESSURE_COOLDOWN_NS);
        }
        k = policy_pressure_pick(held, ok, n, pick, PRESSURE_BATCH);
        for (size_t i = 0; i < k; i++) {
                struct process *p = procs[pick[i]];
                char why[256], a[32];

                mib(a, sizeof a, held[pick[i]]);
                snprintf(why, sizeof why, "ReclaimOnPressure: %s (heap held from the OS %s): GC, then scavenge", what, a);
                p->track.pressure_last_ns = now;
                policy_request(p, "pressure", false, why);
        }
        free(procs);
        free(held);
        free(ok);
        return k;
}

void policy_describe(const struct process *p, char *buf, size_t len) {
        const struct policy *v = &p->policy;
        char a[32], b[32], t[32], g[32], r[32];

        mib(a, sizeof a, v->memory_limit);
        mib(b, sizeof b, v->idle_memory_max);
        if (v->idle_timeout_ns == UINT64_MAX)
                snprintf(t, sizeof t, "infinity");
        else
                snprintf(t, sizeof t, "%gs", (double) v->idle_timeout_ns / 1e9);
        if (v->gc_percent < 0)
                snprintf(g, sizeof g, "off");
        else
                snprintf(g, sizeof g, "%d", v->gc_percent);
        if (v->profile_rate_set)
                snprintf(r, sizeof r, "%" PRIu64, v->profile_rate);
        else
                snprintf(r, sizeof r, "unchanged");
        snprintf(buf, len,
                 "MemoryLimit=%s\t%s\nIdleMemoryMax=%s\t%s\nIdleTimeout=%s\t%s\nReclaimOnPressure=%s\t%s\n"
                 "GCPercent=%s\t%s\nProfileRate=%s\t%s\n",
                 v->memory_limit ? a : "none", v->source[POLICY_MEMORY_LIMIT], b, v->source[POLICY_IDLE_MEMORY_MAX], t,
                 v->source[POLICY_IDLE_TIMEOUT], v->reclaim_on_pressure ? "yes" : "no",
                 v->source[POLICY_RECLAIM_ON_PRESSURE], g, v->source[POLICY_GC_PERCENT], r,
                 v->source[POLICY_PROFILE_RATE]);
}
