/* limit-bench.c - a cache that grows at a known rate past a memory limit and holds, with a reclaimer that empties it: how long from the crossing until RSS is back under the limit (run-policy-bench.sh). */

/*
 * usage: limit-bench -l LIMIT_MIB [-g GROW_TO_MIB] [-r MIB_PER_S] [-d DELAY_MS]
 *                    [-j JITTER_MS] [-e ENTRY_BYTES] [-t TIMEOUT_S]
 *
 * After DELAY_MS plus a random 0..JITTER_MS (so that the crossing falls at
 * a random point of the agent's 1 s stats interval, not always at the same
 * one), the main thread adds ENTRY_BYTES entries (default 1 KiB, each
 * written) to a linked list in 10 ms steps, at MIB_PER_S (default 64), until
 * the list holds GROW_TO_MIB (default 2 x LIMIT), and then holds it.  After
 * every step, and every 10 ms once it holds, it reads its RSS from
 * /proc/self/statm (read(2), no stdio: nothing malloc'd between the
 * entries).  The reclaimer, registered with memd_register_reclaimer (looked
 * up with dlsym: without libmemd nothing would ever reclaim), frees every
 * entry and stops the growth: a cleared cache that stays cleared, so one
 * crossing is measured.  Whoever enforces the limit - memd's MemoryLimit
 * through the agent, or libmemd's own MEMD_MEMORY_LIMIT monitor - calls it
 * and then gives the freed heap back.
 *
 * stdout, one line:
 *   result lib=memd|none held_cross_ms=F rss_cross_ms=F under_ms=F
 *          peak_rss_kib=N end_rss_kib=N reclaimer_calls=N reclaimed_bytes=N
 * Times are from the start of the growth: held_cross_ms when the list's
 * bytes first exceeded the limit, rss_cross_ms the first reading of RSS over
 * it, under_ms the first reading after that under it (-1 if none within
 * TIMEOUT_S, default 10 s; the exit status is then 1).  The runner takes
 * under_ms - rss_cross_ms as the figure.
 */

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STEP_NS 10000000LL              /* growth step and RSS poll: 10 ms */
#define MIB (1024.0 * 1024.0)

typedef int (*register_fn)(const char *name, size_t (*fn)(void *ctx), void *ctx);

struct entry {
        struct entry *next;
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry *cache_head;
static size_t cache_bytes;              /* bytes requested for the entries held */
static size_t entry_bytes = 1024;
static bool reclaimed;                  /* the growth stops for good */
static unsigned reclaimer_calls;
static size_t reclaimed_bytes;

static int64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_until_ns(int64_t t_ns) {
        struct timespec ts = { .tv_sec = t_ns / 1000000000LL, .tv_nsec = t_ns % 1000000000LL };

        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0)
                ;
}

/* RSS in KiB from /proc/self/statm, without stdio (a FILE is a malloc'd chunk). */
static long rss_kib(void) {
        static long page_kib;
        char buf[128];
        char *p;
        ssize_t n;
        int fd;

        if (page_kib == 0)
                page_kib = sysconf(_SC_PAGESIZE) / 1024;
        fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -1;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return -1;
        buf[n] = '\0';
        p = strchr(buf, ' ');
        return p ? strtol(p + 1, NULL, 10) * page_kib : -1;
}

static size_t cache_reclaim(void *ctx) {
        size_t freed;

        (void) ctx;
        pthread_mutex_lock(&cache_lock);
        freed = cache_bytes;
        while (cache_head) {
                struct entry *e = cache_head;

                cache_head = e->next;
                free(e);
        }
        cache_bytes = 0;
        reclaimed = true;
        reclaimer_calls++;
        reclaimed_bytes += freed;
        pthread_mutex_unlock(&cache_lock);
        return freed;
}

/* Adds entries until the cache holds target_bytes (or the reclaimer ran). */
static void cache_grow(size_t target_bytes) {
        pthread_mutex_lock(&cache_lock);
        while (!reclaimed && cache_bytes < target_bytes) {
                struct entry *e = malloc(entry_bytes);

                if (!e) {
                        perror("limit-bench: malloc");
                        exit(2);
                }
                memset(e, 0x5a, entry_bytes);
                e->next = cache_head;
                cache_head = e;
                cache_bytes += entry_bytes;
        }
        pthread_mutex_unlock(&cache_lock);
}

static double ms_since(int64_t t0_ns, int64_t t_ns) {
        return t_ns < 0 ? -1.0 : (double) (t_ns - t0_ns) / 1e6;
}

int main(int argc, char **argv) {
        double limit_mib = 0, grow_mib = 0, rate_mib = 64, timeout_s = 10;
        long delay_ms = 1500, jitter_ms = 1000, peak_kib = 0, rss = 0;
        int64_t t0, t, held_cross = -1, rss_cross = -1, under = -1;
        size_t limit_bytes, grow_bytes, step_bytes, target = 0;
        register_fn reg;
        int c;

        while ((c = getopt(argc, argv, "l:g:r:d:j:e:t:")) != -1) {
                switch (c) {
                case 'l': limit_mib = atof(optarg); break;
                case 'g': grow_mib = atof(optarg); break;
                case 'r': rate_mib = atof(optarg); break;
                case 'd': delay_ms = atol(optarg); break;
                case 'j': jitter_ms = atol(optarg); break;
                case 'e': entry_bytes = strtoul(optarg, NULL, 10); break;
                case 't': timeout_s = atof(optarg); break;
                default:
                        fprintf(stderr, "usage: limit-bench -l LIMIT_MIB [-g GROW_TO_MIB] [-r MIB_PER_S] [-d DELAY_MS]"
                                " [-j JITTER_MS] [-e ENTRY_BYTES] [-t TIMEOUT_S]\n");
                        return 2;
                }
        }
        if (limit_mib <= 0 || rate_mib <= 0 || entry_bytes < sizeof(struct entry)) {
                fprintf(stderr, "limit-bench: -l LIMIT_MIB (> 0) is needed; -r > 0, -e >= %zu\n", sizeof(struct entry));
                return 2;
        }
        if (grow_mib <= 0)
                grow_mib = 2 * limit_mib;
        limit_bytes = (size_t) (limit_mib * MIB);
        grow_bytes = (size_t) (grow_mib * MIB);
        step_bytes = (size_t) (rate_mib * MIB * STEP_NS / 1e9);

        reg = (register_fn) dlsym(RTLD_DEFAULT, "memd_register_reclaimer");
        if (reg && reg("limit-bench cache", cache_reclaim, NULL) < 0) {
                fprintf(stderr, "limit-bench: memd_register_reclaimer failed\n");
                return 2;
        }

        srand((unsigned) (now_ns() ^ getpid()));
        if (jitter_ms > 0)
                delay_ms += rand() % (jitter_ms + 1);
        sleep_until_ns(now_ns() + delay_ms * 1000000LL);

        t0 = now_ns();
        for (int64_t tick = t0;; tick += STEP_NS) {
                long kib;

                if (target < grow_bytes) {
                        target = target + step_bytes < grow_bytes ? target + step_bytes : grow_bytes;
                        cache_grow(target);
                }
                t = now_ns();
                pthread_mutex_lock(&cache_lock);
                if (held_cross < 0 && cache_bytes > limit_bytes)
                        held_cross = t;
                pthread_mutex_unlock(&cache_lock);
                kib = rss_kib();
                if (kib > peak_kib)
                        peak_kib = kib;
                rss = kib;
                if (rss_cross < 0 && kib > (long) (limit_bytes / 1024))
                        rss_cross = t;
                if (rss_cross >= 0 && kib >= 0 && kib < (long) (limit_bytes / 1024)) {
                        under = t;
                        break;
                }
                if (t - t0 > (int64_t) (timeout_s * 1e9))
                        break;
                sleep_until_ns(tick + STEP_NS);
        }

        pthread_mutex_lock(&cache_lock);
        printf("result lib=%s held_cross_ms=%.1f rss_cross_ms=%.1f under_ms=%.1f peak_rss_kib=%ld end_rss_kib=%ld"
               " reclaimer_calls=%u reclaimed_bytes=%zu\n",
               reg ? "memd" : "none", ms_since(t0, held_cross), ms_since(t0, rss_cross), ms_since(t0, under),
               peak_kib, rss, reclaimer_calls, reclaimed_bytes);
        pthread_mutex_unlock(&cache_lock);
        return under < 0;
}
