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
        in_cycle = false;
}

uint64_t memd_set_memory_limit(uint64_t limit_bytes) {
        return atomic_exchange(&memd_config.memory_limit, limit_bytes);
}

/* Go's heap goal: live heap after the last cycle grown by GCPercent (4 MiB
 * minimum, as Go), capped by the memory limit; 0 when neither is set. */
static uint64_t next_gc(uint64_t live_after) {
        uint64_t limit = atomic_load(&memd_config.memory_limit), goal = 0;

        if (memd_config.gcpercent >= 0) {
                unsigned __int128 g = (unsigned __int128) live_after * (100 + (uint64_t) memd_config.gcpercent) / 100;
                goal = g > UINT64_MAX ? UINT64_MAX : (uint64_t) g;
                if (goal < (4ULL << 20))
                        goal = 4ULL << 20;
        }
        if (limit && (!goal || limit < goal))
                goal = limit;
        return goal;
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

static void trace_gc(uint32_t n, int64_t start_ns, const uint64_t clock_ns[3], const uint64_t cpu_ns[3],
                     uint64_t a, uint64_t b, uint64_t c, uint64_t goal, double frac, bool forced) {
        char line[512];
        struct buf o = { line, 0, sizeof(line) };

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
        buf_puts(&o, "\n");
        trace_write(STDERR_FILENO, line, o.len);
}

static void trace_scvg(int k, uint64_t released, const struct memd_memstats *s) {
        char line[512];
        struct buf o = { line, 0, sizeof(line) };
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
        buf_puts(&o, " (MB)\n");
        trace_write(STDERR_FILENO, line, o.len);
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
size_t reclaim_cycle(bool forced, bool scavenge, uint64_t *ret_released) {
        struct thread_state *t = &memd_thread;
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

        for (int i = 0; i < n; i++)
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
        n_gc = ++history.num_gc;
        if (forced)
                history.num_forced++;
        history.pause_ns[(n_gc - 1) % 256] = pause;
        history.pause_end[(n_gc - 1) % 256] = (uint64_t) end_real;
        history.pause_total_ns += pause;
        history.last_gc_ns = (uint64_t) end_real;
        history.cpu_ns += cpu_ns[0] + cpu_ns[1] + cpu_ns[2];
        history.live_after_bytes = after.HeapAlloc;
        pthread_mutex_unlock(&history_lock);

        if (memd_config.gctrace) {
                struct memd_memstats g = {};
                reclaim_fill_stats(&g);
                trace_gc(n_gc, c[0], clock_ns, cpu_ns, before.HeapAlloc, mid.HeapAlloc, after.HeapAlloc,
                         g.NextGC, g.GCCPUFraction, forced);
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
                if (memd_config.gctrace)
                        trace_scvg(k, released, &after);
                if (memd_config.scavtrace)
                        trace_scav(n_gc, released, &after, forced);
        }

        in_cycle = false;
        pthread_mutex_unlock(&cycle_lock);
        if (ret_released)
                *ret_released = released;
        return freed;
}

size_t memd_gc(void) {
        return reclaim_cycle(true, false, NULL);
}

size_t memd_free_os_memory(void) {
        uint64_t released = 0;

        reclaim_cycle(true, true, &released);
        return (size_t) released;
}
