/* seedcache.h - what the seed-scenario programs (tests/progs/seed.c, tests/bench/seed-scenario.c) share: the cache's entries and shards, clock, RSS, allocation, key hashing. */
#ifndef MEMD_SEEDCACHE_H
#define MEMD_SEEDCACHE_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* One cache entry: the node, and the key and value it points to. */
struct entry {
        struct entry *next;
        char *key;
        char *value;
        size_t value_bytes;
        uint64_t hash;
};

/* One shard per filling thread, so filling takes no lock.  The bucket array
 * is not part of the cache's heap: it is mmapped, out of malloc. */
struct shard {
        struct entry **buckets;
        size_t n_buckets;
        size_t from, to;        /* entry numbers this shard's thread inserts */
        size_t value_bytes;
};

static inline double now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Without stdio: a FILE is a malloc'd chunk, and once freed it sits in the
 * tcache right above the last entry and pins the heap top, turning every
 * case into the "one kept" case. */
static inline long rss_kib(void) {
        char buf[128];
        long size_pages, resident_pages;
        int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -1;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return -1;
        buf[n] = 0;
        if (sscanf(buf, "%ld %ld", &size_pages, &resident_pages) != 2)
                return -1;
        return resident_pages * (sysconf(_SC_PAGESIZE) / 1024);
}

static inline void *xmalloc(size_t n) {
        void *p = malloc(n);
        if (!p) {
                fprintf(stderr, "%s: out of memory (%zu bytes)\n", program_invocation_short_name, n);
                exit(2);
        }
        return p;
}

static inline uint64_t hash_str(const char *s) {
        uint64_t h = UINT64_C(1469598103934665603);     /* FNV-1a */
        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * UINT64_C(1099511628211);
        return h;
}

#endif
