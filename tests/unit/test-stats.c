/* test-stats.c - Check suite for stats.c: counter algebra, /proc figures from fixtures, glibc heap figures from this process's own heap. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "unit.h"

/* Under ASan malloc is ASan's, not glibc's, and its shadow mappings are
 * anonymous rw mappings stats.c must not be pointed at from instrumented
 * code: the glibc heap cases do not apply there. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif
#define REAL_KIND (UNDER_ASAN ? ALLOC_OTHER : ALLOC_GLIBC)

/* ---- fixtures: globals and the other modules' functions ------------------ */

enum alloc_kind memd_alloc_kind;
__thread struct thread_state memd_thread;

/* What interpose.c would have counted: under glibc, alloc/free bytes are the
 * chunk sizes (usable + 8, or + 16 for an mmapped chunk). */
static struct counters fake;
static uint64_t fake_bucket_bytes;
static int interpose_init_calls, fill_stats_calls;

void interpose_counters(struct counters *ret) {
        *ret = fake;
}

void interpose_init(void) {
        interpose_init_calls++;
}

uint64_t bucket_sys_bytes(void) {
        return fake_bucket_bytes;
}

void reclaim_fill_stats(struct memd_memstats *s) {
        fill_stats_calls++;
        s->NumGC = 7;
        s->NextGC = 4 << 20;
}

/* The real glibc allocator, counted as the interposer counts it. */
/* glibc's size field, the word before the block (noinline: GCC would see
 * the read below the malloc'ed object and warn). */
static __attribute__((noinline)) uint64_t size_field(void *p) {
        uint64_t w;

        memcpy(&w, (char *) p - sizeof(w), sizeof(w));
        return w;
}

static uint64_t chunk_bytes(void *p) {
        return size_field(p) & ~(uint64_t) 7;
}

static uint64_t live_usable; /* sum of malloc_usable_size over live tracked blocks */

static void *tracked_malloc(size_t n) {
        void *p = malloc(n);

        ck_assert_ptr_nonnull(p);
        memset(p, 1, n < 64 ? n : 64);
        fake.mallocs++;
        fake.alloc_bytes += chunk_bytes(p);
        if (size_field(p) & 2) {
                fake.mmap_allocs++;
                fake.mmap_alloc_bytes += chunk_bytes(p);
        }
        live_usable += malloc_usable_size(p);
        return p;
}

static void tracked_free(void *p) {
        fake.frees++;
        fake.free_bytes += chunk_bytes(p);
        if (size_field(p) & 2) {
                fake.mmap_frees++;
                fake.mmap_free_bytes += chunk_bytes(p);
        }
        live_usable -= malloc_usable_size(p);
        free(p);
}

static void read_heap(struct memd_memstats *s) {
        memset(s, 0, sizeof(*s));
        stats_counters(s);
        ck_assert_int_eq(stats_read_heap("/proc/self/maps", s), 0);
}

static void check_invariants(const struct memd_memstats *s) {
        ck_assert_uint_ge(s->HeapSys, s->HeapAlloc);
        ck_assert_uint_le(s->HeapInuse, s->HeapSys);
        ck_assert_uint_ge(s->HeapInuse, s->HeapAlloc);
        ck_assert_uint_eq(s->HeapIdle + s->HeapInuse, s->HeapSys);
        ck_assert_uint_le(s->HeapReleased, s->HeapIdle);
        ck_assert_uint_eq(s->Alloc, s->HeapAlloc);
}

static void print_heap(const char *when, const struct memd_memstats *s) {
        fprintf(stderr, "%-28s HeapAlloc %10llu  HeapSys %10llu  HeapInuse %10llu  HeapIdle %10llu  HeapReleased %10llu\n",
                when, (unsigned long long) s->HeapAlloc, (unsigned long long) s->HeapSys,
                (unsigned long long) s->HeapInuse, (unsigned long long) s->HeapIdle,
                (unsigned long long) s->HeapReleased);
}

/* ---- stats_counters ---------------------------------------------------------- */

START_TEST(test_counters) {
        struct memd_memstats s;

        /* 10 blocks of 100 usable bytes (+8 each in the counters), 4 freed. */
        fake.mallocs = 10;
        fake.frees = 4;
        fake.alloc_bytes = 10 * 108;
        fake.free_bytes = 4 * 108;
        memset(&s, 0xff, sizeof(s));
        stats_counters(&s);
        ck_assert_uint_eq(s.Mallocs, 10);
        ck_assert_uint_eq(s.Frees, 4);
        ck_assert_uint_eq(s.HeapObjects, 6);
        ck_assert_uint_eq(s.TotalAlloc, 1000);
        ck_assert_uint_eq(s.HeapAlloc, 600);
        ck_assert_uint_eq(s.Alloc, 600);

        /* Nothing yet. */
        memset(&fake, 0, sizeof(fake));
        stats_counters(&s);
        ck_assert_uint_eq(s.HeapObjects, 0);
        ck_assert_uint_eq(s.TotalAlloc, 0);
        ck_assert_uint_eq(s.HeapAlloc, 0);

        /* Slots summed at slightly different instants can show more frees
         * than mallocs: clamp, never wrap. */
        fake.mallocs = 5;
        fake.frees = 6;
        fake.alloc_bytes = 5 * 40;
        fake.free_bytes = 6 * 40;
        stats_counters(&s);
        ck_assert_uint_eq(s.HeapObjects, 0);
        ck_assert_uint_eq(s.HeapAlloc, 0);
        ck_assert_uint_eq(s.TotalAlloc, 5 * 32);
}
END_TEST

/* ---- stats_read_proc on fixture files ---------------------------------------- */

static char tmpdir[64];

static void tmpdir_setup(void) {
        strcpy(tmpdir, "/tmp/memd-unit-stats-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void tmpdir_teardown(void) {
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
                fprintf(stderr, "could not remove %s\n", tmpdir);
}

static char *fixture(const char *name, const char *text) {
        static char paths[4][128];
        static int next;
        char *path = paths[next++ % 4];
        FILE *f;

        snprintf(path, 128, "%s/%s", tmpdir, name);
        f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        fputs(text, f);
        ck_assert_int_eq(fclose(f), 0);
        return path;
}

static const char smaps_rollup[] =
        "55d0c0a00000-7ffd3a7f0000 ---p 00000000 00:00 0                          [rollup]\n"
        "Rss:               12345 kB\n"
        "Pss:               11000 kB\n"
        "Pss_Anon:           6000 kB\n"
        "Pss_File:           5000 kB\n"
        "Pss_Shmem:             0 kB\n"
        "Shared_Clean:       1345 kB\n"
        "Shared_Dirty:          0 kB\n"
        "Private_Clean:      4211 kB\n"
        "Private_Dirty:      6789 kB\n"
        "Referenced:        12000 kB\n"
        "Anonymous:          6789 kB\n"
        "LazyFree:             12 kB\n"
        "AnonHugePages:      2048 kB\n"
        "ShmemPmdMapped:        0 kB\n"
        "FilePmdMapped:         0 kB\n"
        "Shared_Hugetlb:        0 kB\n"
        "Private_Hugetlb:       0 kB\n"
        "Swap:                  0 kB\n"
        "SwapPss:               0 kB\n"
        "Locked:                0 kB\n";

static const char status[] =
        "Name:\tfixture\n"
        "Umask:\t0022\n"
        "State:\tS (sleeping)\n"
        "Tgid:\t4242\n"
        "VmRSS:\t   12345 kB\n"
        "RssAnon:\t    6789 kB\n"
        "Threads:\t17\n"
        "SigQ:\t0/63382\n";

START_TEST(test_proc_fixtures) {
        struct memd_memstats s;
        char *rollup = fixture("smaps_rollup", smaps_rollup);
        char *st = fixture("status", status);

        memset(&s, 0, sizeof(s));
        ck_assert_int_eq(stats_read_proc(rollup, st, &s), 0);
        ck_assert_uint_eq(s.RSS, 12345ULL * 1024);
        ck_assert_uint_eq(s.RssAnon, 6789ULL * 1024);
        ck_assert_uint_eq(s.LazyFree, 12ULL * 1024);
        ck_assert_uint_eq(s.Threads, 17);
}
END_TEST

START_TEST(test_proc_missing) {
        struct memd_memstats s;
        char *rollup = fixture("smaps_rollup", smaps_rollup);
        char *st = fixture("status", status);
        char missing[128];

        snprintf(missing, sizeof(missing), "%s/nonexistent", tmpdir);

        memset(&s, 0, sizeof(s));
        ck_assert_int_eq(stats_read_proc(missing, st, &s), -ENOENT);
        ck_assert_uint_eq(s.Threads, 17);
        ck_assert_uint_eq(s.RSS, 0);

        memset(&s, 0, sizeof(s));
        ck_assert_int_eq(stats_read_proc(rollup, missing, &s), -ENOENT);
        ck_assert_uint_eq(s.RSS, 12345ULL * 1024);
        ck_assert_uint_eq(s.RssAnon, 6789ULL * 1024);
        ck_assert_uint_eq(s.Threads, 0);

        memset(&s, 0, sizeof(s));
        ck_assert_int_lt(stats_read_proc(missing, missing, &s), 0);

        /* A directory is not a file. */
        memset(&s, 0, sizeof(s));
        ck_assert_int_lt(stats_read_proc(tmpdir, st, &s), 0);
        ck_assert_uint_eq(s.Threads, 17);
}
END_TEST

/* Lines absent (an old kernel has no LazyFree) read as 0; a field's name
 * inside another's ("Pss_Anon:", "RssAnon:") is not taken for it. */
START_TEST(test_proc_partial) {
        struct memd_memstats s;
        char *rollup = fixture("smaps_rollup",
                               "00400000-7fff00000000 ---p 00000000 00:00 0 [rollup]\n"
                               "Pss_Anon:            999 kB\n"
                               "Rss:                  40 kB\n"
                               "Anonymous:            8 kB\n");
        char *st = fixture("status", "Name:\tx\nThreads:\t1\n");

        memset(&s, 0xff, sizeof(s));
        ck_assert_int_eq(stats_read_proc(rollup, st, &s), 0);
        ck_assert_uint_eq(s.RSS, 40 * 1024);
        ck_assert_uint_eq(s.RssAnon, 8 * 1024);
        ck_assert_uint_eq(s.LazyFree, 0);
        ck_assert_uint_eq(s.Threads, 1);

        /* Bigger than the first read buffer (64 KiB): the figures at the end
         * are still found. */
        size_t big_len = 300 * 1024;
        char *big = malloc(big_len + 200);
        ck_assert_ptr_nonnull(big);
        strcpy(big, "00400000-7fff00000000 ---p 00000000 00:00 0 [rollup]\n");
        size_t n = strlen(big);
        while (n < big_len) {
                memcpy(big + n, "Padding:               1 kB\n", 28);
                n += 28;
        }
        strcpy(big + n, "Rss:               77 kB\nAnonymous:          66 kB\nLazyFree:          55 kB\n");
        rollup = fixture("big_rollup", big);
        free(big);
        memset(&s, 0, sizeof(s));
        ck_assert_int_eq(stats_read_proc(rollup, st, &s), 0);
        ck_assert_uint_eq(s.RSS, 77 * 1024);
        ck_assert_uint_eq(s.RssAnon, 66 * 1024);
        ck_assert_uint_eq(s.LazyFree, 55 * 1024);
}
END_TEST

START_TEST(test_proc_real) {
        struct memd_memstats s;

        if (access("/proc/self/smaps_rollup", R_OK) < 0) {
                fprintf(stderr, "no /proc/self/smaps_rollup: real-/proc check skipped\n");
                return;
        }
        memset(&s, 0, sizeof(s));
        ck_assert_int_eq(stats_read_proc("/proc/self/smaps_rollup", "/proc/self/status", &s), 0);
        ck_assert_uint_gt(s.RSS, 0);
        ck_assert_uint_gt(s.RssAnon, 0);
        ck_assert_uint_le(s.RssAnon, s.RSS);
        ck_assert_uint_eq(s.Threads, 1);
}
END_TEST

/* ---- stats_read_heap on this process's own glibc heap ------------------------ */

#define SMALL 1024
#define N_SMALL (64 * 1024) /* 64 MiB of 1 KiB blocks */

START_TEST(test_heap_arena) {
        struct memd_memstats s0, s1, s2;
        static void *blocks[N_SMALL];
        void *pin;

        memd_alloc_kind = ALLOC_GLIBC;
        read_heap(&s0);
        print_heap("start", &s0);
        check_invariants(&s0);

        for (int i = 0; i < N_SMALL; i++)
                blocks[i] = tracked_malloc(SMALL);
        /* A live block above them keeps glibc from giving the space back by
         * shrinking [heap] when they are freed. */
        pin = tracked_malloc(SMALL);
        read_heap(&s1);
        print_heap("64 MiB in 1 KiB blocks", &s1);
        check_invariants(&s1);
        /* No mmapped chunks here: HeapAlloc is the usable bytes exactly and
         * HeapInuse the chunk bytes. */
        ck_assert_uint_eq(s1.HeapAlloc, live_usable);
        ck_assert_uint_eq(s1.HeapInuse, fake.alloc_bytes - fake.free_bytes);
        ck_assert_uint_ge(s1.HeapSys, (uint64_t) N_SMALL * SMALL);
        ck_assert_uint_ge(s1.HeapSys, s0.HeapSys + (uint64_t) N_SMALL * SMALL);

        for (int i = 0; i < N_SMALL; i++)
                tracked_free(blocks[i]);
        read_heap(&s2);
        print_heap("freed", &s2);
        check_invariants(&s2);
        ck_assert_uint_eq(s2.HeapAlloc, live_usable);
        ck_assert_uint_ge(s2.HeapIdle, s1.HeapIdle + 60ULL * 1024 * 1024);

        malloc_trim(0);
        read_heap(&s2);
        print_heap("freed, malloc_trim(0)", &s2);
        check_invariants(&s2);
        ck_assert_msg(s2.HeapReleased >= s1.HeapReleased + 48ULL * 1024 * 1024,
                      "HeapReleased went from %llu to only %llu after trimming 64 MiB of free chunks",
                      (unsigned long long) s1.HeapReleased, (unsigned long long) s2.HeapReleased);
        tracked_free(pin);
}
END_TEST

/* Without a pin glibc shrinks [heap] itself, and HeapSys follows. */
START_TEST(test_heap_shrinks) {
        struct memd_memstats s1, s2;
        static void *blocks[N_SMALL];

        memd_alloc_kind = ALLOC_GLIBC;
        for (int i = 0; i < N_SMALL; i++)
                blocks[i] = tracked_malloc(SMALL);
        read_heap(&s1);
        check_invariants(&s1);
        /* Lowest first: the first few freed stay in the tcache, and the
         * last, next to the top chunk, lets glibc trim the whole run. */
        for (int i = 0; i < N_SMALL; i++)
                tracked_free(blocks[i]);
        read_heap(&s2);
        print_heap("before/after free, no pin", &s1);
        print_heap("", &s2);
        check_invariants(&s2);
        ck_assert_uint_le(s2.HeapSys + 48ULL * 1024 * 1024, s1.HeapSys);
}
END_TEST

START_TEST(test_heap_mmapped) {
        struct memd_memstats s0, s1, s2, s3;
        const size_t big = 8 << 20;
        void *p, *q;

        memd_alloc_kind = ALLOC_GLIBC;
        /* Fixed threshold: glibc's dynamic one would move after the frees. */
        ck_assert_int_eq(mallopt(M_MMAP_THRESHOLD, 1 << 20), 1);
        read_heap(&s0);

        p = tracked_malloc(big);
        ck_assert_uint_eq(size_field(p) & 2, 2); /* glibc did mmap it */
        read_heap(&s1);
        print_heap("before one 8 MiB block", &s0);
        print_heap("after", &s1);
        /* The kernel may show the chunk merged with a neighbouring anonymous
         * mapping (in a small process the first one lands right below the
         * mapping ld.so made for TLS): it is still heap. */
        ck_assert_msg(s1.HeapSys >= s0.HeapSys + big,
                      "an 8 MiB mmapped chunk at %p is not in HeapSys (%llu -> %llu)", p,
                      (unsigned long long) s0.HeapSys, (unsigned long long) s1.HeapSys);
        check_invariants(&s1);
        ck_assert_uint_le(s1.HeapSys, s0.HeapSys + big + 2 * 4096);
        ck_assert_uint_ge(s1.HeapInuse, s0.HeapInuse + big);
        /* HeapAlloc: exactly the usable size, with the mmapped chunk's extra
         * 8 header bytes taken out. */
        ck_assert_uint_eq(s1.HeapAlloc, live_usable);

        /* A second one, most likely right next to the first, so the kernel
         * shows both as one mapping. */
        q = tracked_malloc(big);
        read_heap(&s2);
        print_heap("two 8 MiB blocks", &s2);
        check_invariants(&s2);
        ck_assert_uint_ge(s2.HeapSys, s0.HeapSys + 2 * big);
        ck_assert_uint_eq(s2.HeapAlloc, live_usable);

        tracked_free(p);
        tracked_free(q);
        read_heap(&s3);
        check_invariants(&s3);
        ck_assert_uint_le(s3.HeapSys, s0.HeapSys + 2 * 4096);
        ck_assert_uint_eq(s3.HeapAlloc, live_usable);
}
END_TEST

static void *thread_alloc(void *arg) {
        (void) arg;
        return malloc(1000);
}

/* The range of the mapping holding p, from /proc/self/maps. */
static void mapping_of(void *p, uintptr_t *ret_start, uintptr_t *ret_end, char perms[5]) {
        FILE *f = fopen("/proc/self/maps", "r");
        char line[512];

        ck_assert_ptr_nonnull(f);
        *ret_start = *ret_end = 0;
        while (fgets(line, sizeof(line), f)) {
                unsigned long a, b;
                if (sscanf(line, "%lx-%lx %4s", &a, &b, perms) == 3 && (uintptr_t) p >= a && (uintptr_t) p < b) {
                        *ret_start = a;
                        *ret_end = b;
                        break;
                }
        }
        fclose(f);
        ck_assert_uint_ne(*ret_end, 0);
}

START_TEST(test_heap_thread_arena) {
        struct memd_memstats s1, s2;
        uintptr_t start, end;
        char perms[5];
        pthread_t t;
        void *p;

        memd_alloc_kind = ALLOC_GLIBC;
        read_heap(&s1);
        ck_assert_int_eq(pthread_create(&t, NULL, thread_alloc, NULL), 0);
        ck_assert_int_eq(pthread_join(t, &p), 0);
        ck_assert_ptr_nonnull(p);
        fake.mallocs++;
        fake.alloc_bytes += chunk_bytes(p);
        if (size_field(p) & 2) {
                fake.mmap_allocs++;
                fake.mmap_alloc_bytes += chunk_bytes(p);
        }
        live_usable += malloc_usable_size(p);

        mapping_of(p, &start, &end, perms);
        fprintf(stderr, "thread's block %p in %#lx-%#lx %s\n", p, (unsigned long) start, (unsigned long) end, perms);
        ck_assert_uint_eq(start % (64ULL << 20), 0); /* a non-main arena's heap */
        ck_assert_str_eq(perms, "rw-p");
        read_heap(&s2);
        print_heap("before second thread", &s1);
        print_heap("after", &s2);
        check_invariants(&s2);
        ck_assert_uint_ge(s2.HeapSys, s1.HeapSys + (end - start));
        ck_assert_uint_eq(s2.HeapAlloc, live_usable);
}
END_TEST

/* Other allocators: only the counters. */
START_TEST(test_heap_other_allocators) {
        struct memd_memstats s;

        fake.mallocs = 3;
        fake.alloc_bytes = 3 * 1008;
        memd_alloc_kind = ALLOC_MIMALLOC;
        read_heap(&s);
        ck_assert_uint_eq(s.HeapAlloc, 3000);
        ck_assert_uint_eq(s.HeapSys, 3000);
        ck_assert_uint_eq(s.HeapInuse, 3000);
        ck_assert_uint_eq(s.HeapIdle, 0);
        ck_assert_uint_eq(s.HeapReleased, 0);

        /* jemalloc named but not loaded: mallctl is missing. */
        memd_alloc_kind = ALLOC_JEMALLOC;
        read_heap(&s);
        ck_assert_uint_eq(s.HeapSys, 3000);
        ck_assert_uint_eq(s.HeapInuse, 3000);
        check_invariants(&s);

        /* glibc, maps unreadable: the counters stand in. */
        memd_alloc_kind = ALLOC_GLIBC;
        memset(&s, 0, sizeof(s));
        stats_counters(&s);
        ck_assert_int_eq(stats_read_heap("/nonexistent/maps", &s), 0);
        ck_assert_uint_eq(s.HeapSys, 3000);
        ck_assert_uint_eq(s.HeapInuse, 3000);
        check_invariants(&s);
}
END_TEST

/*
 * The host unmaps memory while MemStats are read.  stats.c reads the words at
 * the start of anonymous mappings it found in /proc/self/maps; a mapping gone
 * (or made PROT_NONE, as glibc's shrink_heap does) after maps was read must
 * not crash the host.  The toggled mapping sits between two PROT_NONE pages
 * so the kernel keeps it a mapping of its own.
 */
static int64_t mono_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static volatile int stop_toggling;
static char *toggle_at;
static size_t toggle_len;

static void *toggler(void *arg) {
        long n = 0;

        (void) arg;
        while (!stop_toggling) {
                if (munmap(toggle_at, toggle_len) < 0)
                        break;
                if (mmap(toggle_at, toggle_len, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != toggle_at)
                        break;
                n++;
        }
        return (void *) n;
}

START_TEST(test_heap_concurrent_munmap) {
        size_t page = (size_t) sysconf(_SC_PAGESIZE);
        pthread_t t;
        char *region;
        void *n;

        memd_alloc_kind = ALLOC_GLIBC;
        /* Smaller than the 64 KiB buffer the heap scan maps to read
         * /proc/self/maps: the kernel would put that buffer into the hole
         * the toggler leaves, and its MAP_FIXED_NOREPLACE would fail. */
        toggle_len = 7 * page;
        region = mmap(NULL, toggle_len + 2 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ck_assert_ptr_ne(region, MAP_FAILED);
        toggle_at = region + page;
        ck_assert_ptr_eq(mmap(toggle_at, toggle_len, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0), toggle_at);
        /* Many small mappings below it (mapped later, so lower: the kernel
         * maps top-down) make the walk from reading maps to reaching the
         * toggled line long enough for the race to show in a few reads. */
        const size_t n_small = 2000;
        char *many = mmap(NULL, 2 * n_small * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ck_assert_ptr_ne(many, MAP_FAILED);
        ck_assert_uint_lt((uintptr_t) many, (uintptr_t) region);
        for (size_t i = 0; i < n_small; i++)
                ck_assert_int_eq(mprotect(many + 2 * i * page, page, PROT_READ), 0);
        ck_assert_int_eq(pthread_create(&t, NULL, toggler, NULL), 0);
        /* Give it up to 3000 reads or 5 seconds. */
        int64_t deadline = mono_ns() + 5 * INT64_C(1000000000);
        int reads = 0;
        while (reads < 3000 && mono_ns() < deadline) {
                struct memd_memstats s;
                read_heap(&s);
                reads++;
        }
        stop_toggling = 1;
        ck_assert_int_eq(pthread_join(t, &n), 0);
        fprintf(stderr, "%d heap reads survived %ld munmap/mmap cycles\n", reads, (long) (intptr_t) n);
        ck_assert_int_gt((long) (intptr_t) n, 0);
}
END_TEST

/* ---- stats_read / memd_read_memstats ----------------------------------------- */

START_TEST(test_read_all) {
        struct memd_memstats s;
        int r;

        memd_alloc_kind = REAL_KIND;
        fake.mallocs = 2;
        fake.alloc_bytes = 2 * 48;
        fake_bucket_bytes = 12345;
        memset(&s, 0xff, sizeof(s));
        r = stats_read(&s);
        ck_assert_int_eq(r, access("/proc/self/smaps_rollup", R_OK) < 0 ? -ENOENT : 0);
        ck_assert_uint_eq(s.Mallocs, 2);
        ck_assert_uint_eq(s.Frees, 0);
        ck_assert_uint_eq(s.HeapObjects, 2);
        ck_assert_uint_eq(s.HeapAlloc, 80);
        ck_assert_uint_eq(s.TotalAlloc, 80);
        ck_assert_uint_eq(s.BuckHashSys, 12345);
        ck_assert_uint_eq(s.Sys, s.HeapSys + s.BuckHashSys);
        check_invariants(&s);
        ck_assert_uint_eq(s.Threads, 1);
        ck_assert_int_eq(fill_stats_calls, 1);
        ck_assert_uint_eq(s.NumGC, 7);
        ck_assert_uint_eq(s.NextGC, 4 << 20);
        /* Everything not set by someone is zero, not left over. */
        ck_assert_uint_eq(s.NumForcedGC, 0);
        ck_assert_uint_eq(s.PauseNs[0], 0);
        ck_assert(s.GCCPUFraction == 0);
}
END_TEST

START_TEST(test_read_memstats) {
        struct memd_memstats s;

        memd_alloc_kind = REAL_KIND;
        ck_assert_int_eq(memd_read_memstats(NULL), -EINVAL);
        memd_thread.guard = 0;
        fake.mallocs = 1;
        fake.alloc_bytes = 40;
        memset(&s, 0xff, sizeof(s));
        ck_assert_int_ge(memd_read_memstats(&s), -ENOENT);
        ck_assert_int_ge(interpose_init_calls, 1);
        ck_assert_uint_eq(memd_thread.guard, 0);
        ck_assert_uint_eq(s.HeapAlloc, 32);
        ck_assert_uint_eq(s.Mallocs, 1);
}
END_TEST

static Suite *stats_suite(void) {
        Suite *s = suite_create("stats");
        TCase *tc = tcase_create("counters");

        tcase_add_test(tc, test_counters);
        suite_add_tcase(s, tc);

        tc = tcase_create("proc");
        tcase_add_checked_fixture(tc, tmpdir_setup, tmpdir_teardown);
        tcase_add_test(tc, test_proc_fixtures);
        tcase_add_test(tc, test_proc_missing);
        tcase_add_test(tc, test_proc_partial);
        tcase_add_test(tc, test_proc_real);
        suite_add_tcase(s, tc);

        /* Each test runs in a fresh child of the runner (fork mode), so each
         * starts from the same small heap. */
        tc = tcase_create("heap");
        if (!UNDER_ASAN) {
                tcase_add_test(tc, test_heap_arena);
                tcase_add_test(tc, test_heap_shrinks);
                tcase_add_test(tc, test_heap_mmapped);
                tcase_add_test(tc, test_heap_thread_arena);
                tcase_add_test(tc, test_heap_concurrent_munmap);
        } else
                fprintf(stderr, "stats: glibc heap cases skipped (ASan's allocator, not glibc's)\n");
        tcase_add_test(tc, test_heap_other_allocators);
        tcase_set_timeout(tc, 60);
        suite_add_tcase(s, tc);

        tc = tcase_create("read");
        tcase_add_test(tc, test_read_all);
        tcase_add_test(tc, test_read_memstats);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_main(stats_suite(), "test-stats", true);
}
