/* cache.c - a program whose cache only libmemd's automatic cycles shrink: for the MEMD_MEMORY_LIMIT, MEMD_GCPERCENT and memory-pressure tests. */
/*
 * cache [-f MiB] [-s KiB] [-r MiB/s] [-h ms] [-k]
 *   fills a cache of -s KiB entries (default 4, so they live in the glibc
 *   arena, not in mmapped chunks) up to -f MiB inserted in all, at -r MiB a
 *   second (0: at once), then holds for -h ms and exits.  A reclaimer
 *   registered with memd_register_reclaimer (looked up with dlsym: the
 *   program runs without libmemd too) evicts the whole cache, or with -k
 *   evicts nothing.  The program itself never calls a GC.
 * stdout, one line each:
 *   reclaim n=N cache_bytes=B freed=F     every reclaimer call (B: before it)
 *   done reclaims=N cache_bytes=B held=H rss_kib=R
 * H is MemStats HeapSys - HeapReleased (memd_read_memstats), -1 without libmemd.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "memd.h"
#include "seedcache.h"

struct node {
        struct node *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct node *head;
static size_t cache_bytes, entry_bytes = 4096;
static int reclaims;
static bool keep;

static size_t reclaim(void *ctx) {
        char line[128];
        size_t freed = 0;
        int n;

        (void) ctx;
        pthread_mutex_lock(&lock);
        reclaims++;
        n = snprintf(line, sizeof(line), "reclaim n=%d cache_bytes=%zu", reclaims, cache_bytes);
        if (!keep) {
                while (head) {
                        struct node *e = head;
                        head = e->next;
                        free(e);
                }
                freed = cache_bytes;
                cache_bytes = 0;
        }
        pthread_mutex_unlock(&lock);
        n += snprintf(line + n, sizeof(line) - (size_t) n, " freed=%zu\n", freed);
        (void) !write(STDOUT_FILENO, line, (size_t) n);
        return freed;
}

static void sleep_ms(long ms) {
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
        nanosleep(&ts, NULL);
}

int main(int argc, char **argv) {
        int (*reg)(const char *, size_t (*)(void *), void *) = dlsym(RTLD_DEFAULT, "memd_register_reclaimer");
        int (*read_stats)(struct memd_memstats *) = dlsym(RTLD_DEFAULT, "memd_read_memstats");
        size_t fill_mib = 128, rate_mib = 0, inserted = 0;
        long hold_ms = 1500, held = -1;
        struct memd_memstats *s;
        int c;

        while ((c = getopt(argc, argv, "f:s:r:h:k")) != -1)
                switch (c) {
                case 'f': fill_mib = strtoul(optarg, NULL, 10); break;
                case 's': entry_bytes = strtoul(optarg, NULL, 10) << 10; break;
                case 'r': rate_mib = strtoul(optarg, NULL, 10); break;
                case 'h': hold_ms = strtol(optarg, NULL, 10); break;
                case 'k': keep = true; break;
                default:
                        fprintf(stderr, "usage: cache [-f MiB] [-s KiB] [-r MiB/s] [-h ms] [-k]\n");
                        return 2;
                }
        if (reg && reg("cache", reclaim, NULL) < 0)
                return 3;

        /* At -r, 1 MiB every 1000/r ms. */
        while (inserted < fill_mib << 20) {
                for (size_t step = 0; step < (1u << 20) && inserted < fill_mib << 20; step += entry_bytes) {
                        struct node *e = xmalloc(entry_bytes);
                        memset(e, 0x5a, entry_bytes);
                        pthread_mutex_lock(&lock);
                        e->next = head;
                        head = e;
                        cache_bytes += entry_bytes;
                        pthread_mutex_unlock(&lock);
                        inserted += entry_bytes;
                }
                if (rate_mib)
                        sleep_ms((long) (1000 / rate_mib));
        }
        sleep_ms(hold_ms);

        s = xmalloc(sizeof(*s));
        if (read_stats && read_stats(s) == 0)
                held = (long) (s->HeapSys - s->HeapReleased);
        free(s);
        pthread_mutex_lock(&lock);
        printf("done reclaims=%d cache_bytes=%zu held=%ld rss_kib=%ld\n", reclaims, cache_bytes, held, rss_kib());
        pthread_mutex_unlock(&lock);
        return 0;
}
