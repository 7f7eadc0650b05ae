/* reclaim.c - "forced GC" for C: reclaimer callbacks, scavenging (returning free memory to the OS), their history and trace lines. */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define RECLAIMERS_MAX 64

struct reclaimer {
        char name[64];
        size_t (*fn)(void *ctx);
        void *ctx;
};

static pthread_mutex_t reclaimer_lock = PTHREAD_MUTEX_INITIALIZER;
static struct reclaimer reclaimers[RECLAIMERS_MAX];
static int n_reclaimers;

/* One cycle at a time; reclaimers run with only this lock held (never a
 * lock the allocator or the sample path takes). */
static pthread_mutex_t cycle_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread bool in_cycle __attribute__((tls_model("initial-exec")));

/* History, read by stats under its own short lock. */
static pthread_mutex_t history_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
        uint32_t num_gc, num_forced;
        uint64_t last_gc_ns, pause_total_ns;
        uint64_t pause_ns[256], pause_end[256];
        uint64_t cpu_ns;
        uint64_t live_after_bytes;  /* HeapAlloc at the end of the last cycle */
        uint32_t num_scvg;
} history;

/* The last RECLAIM_EVENTS cycles, for the agent to send to memd. */
static pthread_mutex_t events_lock = PTHREAD_MUTEX_INITIALIZER;
static struct reclaim_event events[RECLAIM_EVENTS];
static uint64_t events_seq;

int memd_register_reclaimer(const char *name, size_t (*fn)(void *ctx), void *ctx) {
        int r = 0;

        if (!fn)
                return -EINVAL;
        pthread_mutex_lock(&reclaimer_lock);
        for (int i = 0; i < n_reclaimers; i++)
                if (reclaimers[i].fn == fn && reclaimers[i].ctx == ctx) {
                        r = -EEXIST;
                        goto out;
                }
        if (n_reclaimers >= RECLAIMERS_MAX) {
                r = -ENOSPC;
                goto out;
        }
        strncpy(reclaimers[n_reclaimers].name, name ? name : "", sizeof(reclaimers[0].name) - 1);
        reclaimers[n_reclaimers].name[sizeof(reclaimers[0].name) - 1] = 0;
        reclaimers[n_reclaimers].fn = fn;
        reclaimers[n_reclaimers].ctx = ctx;
        n_reclaimers++;
out:
        pthread_mutex_unlock(&reclaimer_lock);
        return r;
}

int memd_unregister_reclaimer(const char *name _unused_, size_t (*fn)(void *ctx), void *ctx) {
        int r = -ENOENT;

        pthread_mutex_lock(&reclaimer_lock);
        for (int i = 0; i < n_reclaimers; i++)
                if (reclaimers[i].fn == fn && reclaimers[i].ctx == ctx) {
                        reclaimers[i] = reclaimers[--n_reclaimers];
                        r = 0;
                        break;
                }
        pthread_mutex_unlock(&reclaimer_lock);
        /* Wait out a cycle that may be running fn right now, unless we are
         * that cycle (a reclaimer unregistering itself). */
        if (r == 0 && !in_cycle) {
                pthread_mutex_lock(&cycle_lock);
                pthread_mutex_unlock(&cycle_lock);
        }
        return r;
}

/* The child has one thread: whatever cycle another thread was running is
 * gone with it, so its locks start afresh (a reclaimer may even fork). */
void reclaim_atfork_child(void) {
        pthread_mutex_init(&reclaimer_lock, NULL);
        pthread_mutex_init(&cycle_lock, NULL);
        pthread_mutex_init(&history_lock, NULL);
        pthread_mutex_init(&events_lock, NULL);
        in_cycle = false;
}

int reclaim_set_gcpercent(int percent) {
        int old = atomic_exchange(&memd_config.gcpercent, percent < 0 ? -1 : percent);

        /* GOGC set at run time needs the thread that paces it. */
        if (percent >= 0)
                monitor_start();
        return old;
}

uint64_t memd_set_memory_limit(uint64_t limit_bytes) {
        uint64_t old = atomic_exchange(&memd_config.memory_limit, limit_bytes);

        /* A limit set at run time needs the thread that enforces it. */
        if (limit_bytes)
                monitor_start();
        return old;
}

/* Go's heap goal: live heap after the last cycle grown by gcpercent (4 MiB
 * minimum, as Go), capped by the memory limit; 0 when neither is set. */
uint64_t reclaim_heap_goal(uint64_t live_after_bytes, int gcpercent, uint64_t limit_bytes) {
        uint64_t goal = 0;

        if (gcpercent >= 0) {
                unsigned __int128 g = (unsigned __int128) live_after_bytes * (100 + (uint64_t) gcpercent) / 100;
                goal = g > UINT64_MAX ? UINT64_MAX : (uint64_t) g;
                if (goal < (4ULL << 20))
                        goal = 4ULL << 20;
        }
        if (limit_bytes && (!goal || limit_bytes < goal))
                goal = limit_bytes;
        return goal;
}

static uint64_t next_gc(uint64_t live_after) {
        return reclaim_heap_goal(live_after, memd_config.gcpercent, atomic_load(&memd_config.memory_limit));
}

uint64_t reclaim_live_after(void) {
        uint64_t v;

        pthread_mutex_lock(&history_lock);
        v = history.live_after_bytes;
        pthread_mutex_unlock(&history_lock);
        return v;
}

void reclaim_fill_stats(struct memd_memstats *s) {
        int64_t up = now_ns(CLOCK_MONOTONIC) - memd_start_ns;
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

        pthread_mutex_lock(&history_lock);
        s->NumGC = history.num_gc;
        s->NumForcedGC = history.num_forced;
        s->LastGC = history.last_gc_ns;
        s->PauseTotalNs = history.pause_total_ns;
        memcpy(s->PauseNs, history.pause_ns, sizeof(s->PauseNs));
        memcpy(s->PauseEnd, history.pause_end, sizeof(s->PauseEnd));
        s->GCCPUFraction = up > 0 ? (double) history.cpu_ns / ((double) up * (double) (ncpu > 0 ? ncpu : 1)) : 0;
        s->NextGC = next_gc(history.live_after_bytes);
        pthread_mutex_unlock(&history_lock);
}

static void trim_allocator(void) {
        switch (memd_alloc_kind) {
        case ALLOC_JEMALLOC: {
                int (*mallctl)(const char *, void *, size_t *, void *, size_t) = dlsym(RTLD_DEFAULT, "mallctl");
                if (mallctl)
                        mallctl("arena.4096.purge", NULL, NULL, NULL, 0); /* MALLCTL_ARENAS_ALL */
                break;
        }
        case ALLOC_TCMALLOC: {
                void (*release)(void) = dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory");
                if (release)
                        release();
                break;
        }
        case ALLOC_MIMALLOC: {
                void (*collect)(bool) = dlsym(RTLD_DEFAULT, "mi_collect");
                if (collect)
                        collect(true);
                break;
        }
        default:
                break;
        }
        /* glibc's own heap, also under another allocator (dlsym'd callers,
         * early allocations). */
        malloc_trim(0);
}

static uint32_t read_threads(void) {
        uint32_t n = 0;

        stats_read_threads("/proc/self/status", &n);
        return n;
}

#define MB(x) ((x) >> 20)

/* The gctrace line, without its newline, into line (NUL-terminated); returns its length. */
static size_t format_gc(char *line, size_t size, uint32_t n, int64_t start_ns, const uint64_t clock_ns[3],
                        const uint64_t cpu_ns[3], uint64_t a, uint64_t b, uint64_t c, uint64_t goal, double frac,
                        bool forced) {
        struct buf o = { line, 0, size - 1 };

        buf_puts(&o, "gc ");
        buf_u64(&o, n);
        buf_puts(&o, " @");
        buf_fixed(&o, (uint64_t) (start_ns - memd_start_ns) / 1000000, 3);
        buf_puts(&o, "s ");
        buf_u64(&o, (uint64_t) (frac * 100));
        buf_puts(&o, "%: ");
        buf_ms(&o, clock_ns[0]);
        buf_puts(&o, "+");
        buf_ms(&o, clock_ns[1]);
        buf_puts(&o, "+");
        buf_ms(&o, clock_ns[2]);
        buf_puts(&o, " ms clock, ");
        buf_ms(&o, cpu_ns[0]);
        buf_puts(&o, "+0/");
        buf_ms(&o, cpu_ns[1]);
        buf_puts(&o, "/0+");
        buf_ms(&o, cpu_ns[2]);
        buf_puts(&o, " ms cpu, ");
        buf_u64(&o, MB(a));
        buf_puts(&o, "->");
        buf_u64(&o, MB(b));
        buf_puts(&o, "->");
        buf_u64(&o, MB(c));
        buf_puts(&o, " MB, ");
        buf_u64(&o, MB(goal));
        buf_puts(&o, " MB goal, ");
        buf_u64(&o, read_threads());
        buf_puts(&o, " P");
        if (forced)
                buf_puts(&o, " (forced)");
        line[o.len] = 0;
        return o.len;
}

/* The two scvg lines, joined by a newline, without a trailing one. */
static size_t format_scvg(char *line, size_t size, int k, uint64_t released, const struct memd_memstats *s) {
        struct buf o = { line, 0, size - 1 };
        char label[24];
        struct buf l = { label, 0, sizeof(label) - 1 };

        buf_puts(&l, "scvg");
        if (k < 0)
                buf_puts(&l, "-1");
        else
                buf_u64(&l, (uint64_t) k);
        label[l.len] = 0;

        buf_puts(&o, label);
        buf_puts(&o, ": ");
        buf_u64(&o, MB(released));
        buf_puts(&o, " MB released\n");
        buf_puts(&o, label);
        buf_puts(&o, ": inuse: ");
        buf_u64(&o, MB(s->HeapInuse));
        buf_puts(&o, ", idle: ");
        buf_u64(&o, MB(s->HeapIdle));
        buf_puts(&o, ", sys: ");
        buf_u64(&o, MB(s->HeapSys));
        buf_puts(&o, ", released: ");
        buf_u64(&o, MB(s->HeapReleased));
        buf_puts(&o, ", consumed: ");
        buf_u64(&o, MB(s->HeapSys - s->HeapReleased));
        buf_puts(&o, " (MB)");
        line[o.len] = 0;
        return o.len;
}

/* Writes text and a newline to stderr with one write. */
static void trace_line(const char *text, size_t len) {
        char line[sizeof(((struct reclaim_event *) 0)->text) + 1];

        memcpy(line, text, len);
        line[len] = '\n';
        trace_write(STDERR_FILENO, line, len + 1);
}

static void event_push(struct reclaim_event *e) {
        pthread_mutex_lock(&events_lock);
        e->seq = ++events_seq;
        events[e->seq % RECLAIM_EVENTS] = *e;
        pthread_mutex_unlock(&events_lock);
        agent_notify();
}

uint64_t reclaim_events_last(void) {
        uint64_t q;

        pthread_mutex_lock(&events_lock);
        q = events_seq;
        pthread_mutex_unlock(&events_lock);
        return q;
}

void reclaim_wait_idle(unsigned ms) {
        struct timespec ts;

        if (in_cycle)
                return;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += ms / 1000;
        ts.tv_nsec += (long) (ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
        }
        if (pthread_mutex_timedlock(&cycle_lock, &ts) == 0)
                pthread_mutex_unlock(&cycle_lock);
}

size_t reclaim_events_since(uint64_t after, struct reclaim_event *out, size_t max, uint64_t *ret_dropped) {
        size_t n = 0;
        uint64_t first;

        pthread_mutex_lock(&events_lock);
        first = events_seq > RECLAIM_EVENTS ? events_seq - RECLAIM_EVENTS + 1 : 1;
        if (ret_dropped)
                *ret_dropped = after + 1 < first ? first - after - 1 : 0;
        if (after + 1 > first)
                first = after + 1;
        for (uint64_t q = first; q <= events_seq && n < max; q++)
                out[n++] = events[q % RECLAIM_EVENTS];
        pthread_mutex_unlock(&events_lock);
        return n;
}

/* Go 1.19's printScavTrace: "scav GEN W KiB work, R KiB total, U% util",
 * R = HeapReleased, U = HeapInuse over the heap held from the OS. */
static void trace_scav(uint32_t gen, uint64_t released, const struct memd_memstats *s, bool forced) {
        uint64_t retained = s->HeapSys - s->HeapReleased;
        char line[256];
        struct buf o = { line, 0, sizeof(line) };

        buf_puts(&o, "scav ");
        buf_u64(&o, gen);
        buf_puts(&o, " ");
        buf_u64(&o, released >> 10);
        buf_puts(&o, " KiB work, ");
        buf_u64(&o, s->HeapReleased >> 10);
        buf_puts(&o, " KiB total, ");
        buf_u64(&o, retained ? s->HeapInuse * 100 / retained : 0);
        buf_puts(&o, "% util");
        if (forced)
                buf_puts(&o, " (forced)");
        buf_puts(&o, "\n");
        trace_write(STDERR_FILENO, line, o.len);
}

/* One GC cycle, optionally followed by a scavenge: phases are (stats before,
 * reclaimers, trim).  Returns the bytes reclaimers freed, and in
 * *ret_released the heap that stopped being resident. */
size_t reclaim_cycle(bool forced, bool scavenge, uint64_t *ret_released, struct reclaim_report *ret_report) {
        return reclaim_run(forced, true, scavenge, ret_released, ret_report);
}

size_t reclaim_run(bool forced, bool gc_cycle, bool scavenge, uint64_t *ret_released,
                   struct reclaim_report *ret_report) {
        struct thread_state *t = &memd_thread;
        struct reclaim_event gc = { .kind = RECLAIM_EVENT_GC }, sv = { .kind = RECLAIM_EVENT_SCVG };
        struct memd_memstats g = {};
        struct reclaimer list[RECLAIMERS_MAX];
        struct memd_memstats before, mid, after;
        int64_t c[4], u[4], end_real;
        uint64_t clock_ns[3], cpu_ns[3], released = 0, pause;
        size_t freed = 0;
        uint32_t n_gc;
        int n;

        interpose_init();
        if (in_cycle) {
                /* A reclaimer asking for a cycle from inside one: the running
                 * cycle already does it (and its trim, if it scavenges). */
                if (ret_released)
                        *ret_released = 0;
                if (ret_report)
                        memset(ret_report, 0, sizeof(*ret_report));
                return 0;
        }
        pthread_mutex_lock(&cycle_lock);
        in_cycle = true;

        c[0] = now_ns(CLOCK_MONOTONIC);
        u[0] = now_ns(CLOCK_THREAD_CPUTIME_ID);
        t->guard++;
        if (scavenge)
                stats_read(&before);
        else {
                memset(&before, 0, sizeof(before));
                stats_counters(&before);
        }
        t->guard--;
        pthread_mutex_lock(&reclaimer_lock);
        n = n_reclaimers;
        memcpy(list, reclaimers, sizeof(list[0]) * n);
        pthread_mutex_unlock(&reclaimer_lock);
        c[1] = now_ns(CLOCK_MONOTONIC);
        u[1] = now_ns(CLOCK_THREAD_CPUTIME_ID);

        for (int i = 0; gc_cycle && i < n; i++)
                freed += list[i].fn(list[i].ctx);
        memset(&mid, 0, sizeof(mid));
        stats_counters(&mid);
        c[2] = now_ns(CLOCK_MONOTONIC);
        u[2] = now_ns(CLOCK_THREAD_CPUTIME_ID);

        t->guard++;
        if (scavenge)
                trim_allocator();
        memset(&after, 0, sizeof(after));
        stats_counters(&after);
        t->guard--;
        c[3] = now_ns(CLOCK_MONOTONIC);
        u[3] = now_ns(CLOCK_THREAD_CPUTIME_ID);
        end_real = now_ns(CLOCK_REALTIME);

        for (int i = 0; i < 3; i++) {
                clock_ns[i] = (uint64_t) (c[i + 1] - c[i]);
                cpu_ns[i] = (uint64_t) (u[i + 1] - u[i]);
        }
        pause = (uint64_t) (c[3] - c[0]);

        pthread_mutex_lock(&history_lock);
        n_gc = gc_cycle ? ++history.num_gc : history.num_gc;
        if (gc_cycle) {
                if (forced)
                        history.num_forced++;
                history.pause_ns[(n_gc - 1) % 256] = pause;
                history.pause_end[(n_gc - 1) % 256] = (uint64_t) end_real;
                history.pause_total_ns += pause;
                history.last_gc_ns = (uint64_t) end_real;
                history.live_after_bytes = after.HeapAlloc;
        }
        history.cpu_ns += cpu_ns[0] + cpu_ns[1] + cpu_ns[2];
        pthread_mutex_unlock(&history_lock);

        if (gc_cycle) {
                reclaim_fill_stats(&g);
                gc.forced = forced;
                gc.num = n_gc;
                gc.time_ns = end_real;
                gc.duration_ns = pause;
                gc.heap_before = before.HeapAlloc;
                gc.heap_reclaimed = mid.HeapAlloc;
                gc.heap_live = after.HeapAlloc;
                gc.goal = g.NextGC;
                format_gc(gc.text, sizeof(gc.text), n_gc, c[0], clock_ns, cpu_ns, before.HeapAlloc, mid.HeapAlloc,
                          after.HeapAlloc, g.NextGC, g.GCCPUFraction, forced);
                if (memd_config.gctrace)
                        trace_line(gc.text, strlen(gc.text));
                event_push(&gc);
        }

        if (scavenge) {
                int k;

                t->guard++;
                stats_read(&after);
                t->guard--;
                if (before.HeapSys - before.HeapReleased > after.HeapSys - after.HeapReleased)
                        released = (before.HeapSys - before.HeapReleased) - (after.HeapSys - after.HeapReleased);
                pthread_mutex_lock(&history_lock);
                k = forced ? -1 : (int) history.num_scvg++;
                pthread_mutex_unlock(&history_lock);
                sv.forced = forced;
                sv.num = k < 0 ? 0 : (uint64_t) k;
                sv.time_ns = now_ns(CLOCK_REALTIME);
                sv.duration_ns = clock_ns[2];
                sv.released = released;
                sv.heap_inuse = after.HeapInuse;
                sv.heap_idle = after.HeapIdle;
                sv.heap_sys = after.HeapSys;
                sv.heap_released = after.HeapReleased;
                format_scvg(sv.text, sizeof(sv.text), k, released, &after);
                if (memd_config.gctrace)
                        trace_line(sv.text, strlen(sv.text));
                if (memd_config.scavtrace)
                        trace_scav(n_gc, released, &after, forced);
                event_push(&sv);
        }

        in_cycle = false;
        pthread_mutex_unlock(&cycle_lock);
        if (ret_released)
                *ret_released = released;
        if (ret_report) {
                ret_report->gc = gc;
                ret_report->scvg = sv;
                ret_report->has_gc = gc_cycle;
                ret_report->has_scvg = scavenge;
        }
        return freed;
}

size_t reclaim_run_unguarded(bool forced, bool gc_cycle, bool scavenge, uint64_t *ret_released,
                             struct reclaim_report *ret_report) {
        struct thread_state *t = &memd_thread;
        uint32_t g = t->guard;
        size_t freed;

        t->guard = 0;
        freed = reclaim_run(forced, gc_cycle, scavenge, ret_released, ret_report);
        t->guard = g;
        return freed;
}

size_t memd_gc(void) {
        return reclaim_cycle(true, false, NULL, NULL);
}

size_t memd_free_os_memory(void) {
        uint64_t released = 0;

        reclaim_cycle(true, true, &released, NULL);
        return (size_t) released;
}
