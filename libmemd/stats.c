/* stats.c - MemStats: exact counters merged from every thread, heap figures from the allocator's own mappings, /proc figures. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

/*
 * Heap figures under glibc without mallinfo2 (which walks every free chunk
 * under each arena lock: 0.26-0.65 s on a fragmented heap).  Instead, from
 * /proc/self/maps:
 *   - the main arena is the [heap] mapping;
 *   - other arenas are anonymous rw mappings at 64 MiB-aligned addresses whose
 *     first words are a valid heap_info (ar_ptr set, size <= mprotect_size ==
 *     the mapping's length);
 *   - mmapped chunks are counted by the hooks themselves (IS_MMAPPED is in
 *     the size field they load anyway).
 * Residency comes from mincore() on the arena mappings.  docs/memstats.md
 * gives the arithmetic and the accuracy of every figure.
 */
#define ARENA_HEAP_MAX (64ULL << 20)

struct heap_scan {
        uint64_t arena_sys;
        uint64_t arena_resident;
};

static uint64_t resident_bytes(uintptr_t start, uintptr_t end) {
        unsigned char vec[16384];
        size_t page = (size_t) sysconf(_SC_PAGESIZE);
        uint64_t resident = 0;

        while (start < end) {
                size_t len = end - start, pages;

                if (len > sizeof(vec) * page)
                        len = sizeof(vec) * page;
                pages = (len + page - 1) / page;
                if (mincore((void *) start, len, vec) < 0)
                        return resident; /* raced with an munmap: count what we saw */
                for (size_t i = 0; i < pages; i++)
                        resident += vec[i] & 1;
                start += len;
        }
        return resident * page;
}

/* Reads our own memory without trusting that it is still mapped: another
 * thread may unmap it between reading /proc/self/maps and here, and a plain
 * load would then kill the host. */
static bool peek(uintptr_t addr, void *buf, size_t len) {
        struct iovec local = { buf, len }, remote = { (void *) addr, len };

        return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == (ssize_t) len;
}

/* glibc's heap_info, the header of a non-main arena's heap. */
struct glibc_heap_info {
        void *ar_ptr;
        void *prev;
        size_t size;
        size_t mprotect_size;
};

/* A non-main arena heap starts at a 64 MiB boundary with a heap_info whose
 * ar_ptr points at the arena: the first heap's own malloc_state, just past
 * its heap_info, so always a few dozen bytes past a 64 MiB boundary. */
static bool arena_heap_at(uintptr_t a, uintptr_t end, uint64_t *ret_len) {
        struct glibc_heap_info hi;

        if (!peek(a, &hi, sizeof(hi)) || !hi.ar_ptr || (uintptr_t) hi.ar_ptr % ARENA_HEAP_MAX > 4096)
                return false;
        if (hi.prev && (uintptr_t) hi.prev % ARENA_HEAP_MAX)
                return false;
        if (hi.size > hi.mprotect_size || hi.mprotect_size > ARENA_HEAP_MAX || hi.mprotect_size % 4096 ||
            hi.mprotect_size == 0 || hi.mprotect_size > end - a)
                return false;
        *ret_len = hi.mprotect_size;
        return true;
}

static void classify(uintptr_t start, uintptr_t end, const char *perms, const char *path, struct heap_scan *h) {
        if (!strcmp(path, "[heap]")) {
                h->arena_sys += end - start;
                h->arena_resident += resident_bytes(start, end);
                return;
        }
        if (*path || strncmp(perms, "rw-p", 4))
                return;
        /* Full heaps of one arena sit side by side and the kernel merges
         * them (and sometimes a neighbour) into one mapping: look at every
         * 64 MiB boundary inside it. */
        for (uintptr_t a = (start + ARENA_HEAP_MAX - 1) & ~(ARENA_HEAP_MAX - 1); a < end && a >= start;
             a += ARENA_HEAP_MAX) {
                uint64_t len;

                if (arena_heap_at(a, end, &len)) {
                        h->arena_sys += len;
                        h->arena_resident += resident_bytes(a, a + len);
                }
        }
}

/* Reads a whole /proc file into an mmap'd buffer (no malloc: this also runs
 * where the heap must not be disturbed).  Caller munmaps *ret_cap bytes. */
int stats_read_file(const char *path, char **ret_buf, size_t *ret_len, size_t *ret_cap) {
        size_t cap = 64 * 1024, len = 0;
        char *buf;
        int fd;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        buf = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (buf == MAP_FAILED) {
                close(fd);
                return -ENOMEM;
        }
        for (;;) {
                ssize_t n;

                if (len + 1 >= cap) {
                        char *nbuf = mremap(buf, cap, cap * 2, MREMAP_MAYMOVE);
                        if (nbuf == MAP_FAILED) {
                                munmap(buf, cap);
                                close(fd);
                                return -ENOMEM;
                        }
                        buf = nbuf;
                        cap *= 2;
                }
                n = read(fd, buf + len, cap - len - 1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int r = -errno;
                        munmap(buf, cap);
                        close(fd);
                        return r;
                }
                if (n == 0)
                        break;
                len += n;
        }
        close(fd);
        buf[len] = 0;
        *ret_buf = buf;
        *ret_len = len;
        *ret_cap = cap;
        return 0;
}

static int scan_maps(const char *maps_path, struct heap_scan *h) {
        char *buf, *line, *next;
        size_t len, cap;
        int r;

        r = stats_read_file(maps_path, &buf, &len, &cap);
        if (r < 0)
                return r;
        for (line = buf; line < buf + len; line = next) {
                unsigned long start, end;
                char perms[5] = "", *path;
                int off = 0;

                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                else
                        next = buf + len;
                if (sscanf(line, "%lx-%lx %4s %*s %*s %*s%n", &start, &end, perms, &off) < 3 || !off)
                        continue;
                path = line + off;
                while (*path == ' ')
                        path++;
                classify(start, end, perms, path, h);
        }
        munmap(buf, cap);
        return 0;
}

static void heap_glibc(const char *maps_path, struct memd_memstats *s, uint64_t mmapped_bytes,
                       uint64_t mmapped_n) {
        struct heap_scan h = {};
        uint64_t arena_alloc, arena_objects, arena_inuse, mmapped_usable = mmapped_bytes - 16 * mmapped_n;

        if (scan_maps(maps_path, &h) < 0) {
                s->HeapSys = s->HeapInuse = s->HeapAlloc;
                return;
        }
        /* Usable bytes live in arena chunks, plus their 8-byte size fields. */
        arena_alloc = s->HeapAlloc > mmapped_usable ? s->HeapAlloc - mmapped_usable : 0;
        arena_objects = s->HeapObjects > mmapped_n ? s->HeapObjects - mmapped_n : 0;
        arena_inuse = arena_alloc + 8 * arena_objects;
        if (arena_inuse > h.arena_sys)
                arena_inuse = h.arena_sys;
        s->HeapSys = h.arena_sys + mmapped_bytes;
        s->HeapInuse = arena_inuse + mmapped_bytes;
        s->HeapIdle = s->HeapSys - s->HeapInuse;
        s->HeapReleased = h.arena_sys - h.arena_resident;
        if (s->HeapReleased > s->HeapIdle)
                s->HeapReleased = s->HeapIdle;
}

typedef int (*mallctl_fn)(const char *, void *, size_t *, void *, size_t);

static void heap_jemalloc(struct memd_memstats *s) {
        mallctl_fn mallctl = (mallctl_fn) dlsym(RTLD_DEFAULT, "mallctl");
        size_t active = 0, mapped = 0, resident = 0, retained = 0, len = sizeof(size_t);
        uint64_t epoch = 1;

        if (!mallctl || mallctl("epoch", NULL, NULL, &epoch, sizeof(epoch)) != 0) {
                s->HeapSys = s->HeapInuse = s->HeapAlloc;
                return;
        }
        mallctl("stats.active", &active, &len, NULL, 0);
        len = sizeof(size_t);
        mallctl("stats.mapped", &mapped, &len, NULL, 0);
        len = sizeof(size_t);
        mallctl("stats.resident", &resident, &len, NULL, 0);
        len = sizeof(size_t);
        mallctl("stats.retained", &retained, &len, NULL, 0);
        s->HeapSys = mapped + retained;
        s->HeapInuse = active < s->HeapSys ? active : s->HeapSys;
        s->HeapIdle = s->HeapSys - s->HeapInuse;
        s->HeapReleased = retained + (mapped > resident ? mapped - resident : 0);
        if (s->HeapReleased > s->HeapIdle)
                s->HeapReleased = s->HeapIdle;
}

int stats_read_heap(const char *maps_path, struct memd_memstats *s) {
        struct counters c;

        switch (memd_alloc_kind) {
        case ALLOC_GLIBC:
                interpose_counters(&c);
                heap_glibc(maps_path, s, c.mmap_alloc_bytes - c.mmap_free_bytes, c.mmap_allocs - c.mmap_frees);
                break;
        case ALLOC_JEMALLOC:
                heap_jemalloc(s);
                break;
        default:
                /* tcmalloc, mimalloc, unknown: only what we count ourselves. */
                s->HeapSys = s->HeapInuse = s->HeapAlloc;
                s->HeapIdle = s->HeapReleased = 0;
                break;
        }
        return 0;
}

static uint64_t field_kb(const char *buf, const char *key) {
        const char *p = strstr(buf, key);

        if (!p)
                return 0;
        return strtoull(p + strlen(key), NULL, 10) * 1024;
}

/* Threads from a /proc/PID/status file; 0 if unknown. */
int stats_read_threads(const char *status, uint32_t *ret_threads) {
        char *buf;
        size_t len, cap;
        const char *p;
        int r;

        r = stats_read_file(status, &buf, &len, &cap);
        if (r < 0)
                return r;
        p = strstr(buf, "\nThreads:");
        *ret_threads = p ? (uint32_t) strtoul(p + 9, NULL, 10) : 0;
        munmap(buf, cap);
        return p ? 0 : -ENODATA;
}

/* RSS, RssAnon, LazyFree from smaps_rollup; Threads from status.  Paths are
 * parameters so tests can hand in fixtures. */
int stats_read_proc(const char *smaps_rollup, const char *status, struct memd_memstats *s) {
        char *buf;
        size_t len, cap;
        int r, ret = 0;

        r = stats_read_file(smaps_rollup, &buf, &len, &cap);
        if (r >= 0) {
                s->RSS = field_kb(buf, "\nRss:");
                s->RssAnon = field_kb(buf, "\nAnonymous:");
                s->LazyFree = field_kb(buf, "\nLazyFree:");
                munmap(buf, cap);
        } else
                ret = r;
        r = stats_read_threads(status, &s->Threads);
        if (r < 0 && r != -ENODATA)
                ret = r;
        return ret;
}

void stats_counters(struct memd_memstats *s) {
        struct counters c;
        uint64_t live_mmapped;

        interpose_counters(&c);
        /* The counters hold usable + 8 bytes per block, + 16 for mmapped
         * chunks (interpose.c). */
        s->HeapObjects = c.mallocs > c.frees ? c.mallocs - c.frees : 0;
        live_mmapped = c.mmap_allocs > c.mmap_frees ? c.mmap_allocs - c.mmap_frees : 0;
        s->Mallocs = c.mallocs;
        s->Frees = c.frees;
        s->TotalAlloc = c.alloc_bytes - 8 * c.mallocs - 8 * c.mmap_allocs;
        s->HeapAlloc = c.alloc_bytes - c.free_bytes - 8 * s->HeapObjects - 8 * live_mmapped;
        if ((int64_t) s->HeapAlloc < 0)
                s->HeapAlloc = 0;
        s->Alloc = s->HeapAlloc;
}

int stats_read(struct memd_memstats *s) {
        int r;

        memset(s, 0, sizeof(*s));
        stats_counters(s);
        stats_read_heap("/proc/self/maps", s);
        s->BuckHashSys = bucket_sys_bytes();
        s->Sys = s->HeapSys + s->BuckHashSys;
        r = stats_read_proc("/proc/self/smaps_rollup", "/proc/self/status", s);
        reclaim_fill_stats(s);
        return r;
}

int memd_read_memstats(struct memd_memstats *ret_stats) {
        struct thread_state *t = &memd_thread;
        int r;

        if (!ret_stats)
                return -EINVAL;
        interpose_init();
        t->guard++;
        r = stats_read(ret_stats);
        t->guard--;
        return r;
}
