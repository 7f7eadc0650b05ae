/* unwind-bench.c - what one stack capture costs: libunwind's unw_backtrace (libmemd's choice), glibc backtrace(), a frame-pointer walk. */
#include <dlfcn.h>
#include <execinfo.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define DEPTH 23
#define REPS 20000
#define ROUNDS 7

typedef int (*capture_fn)(void **buf, int max);
static int (*unw_backtrace_p)(void **, int);

static int cap_libunwind(void **buf, int max) {
        return unw_backtrace_p(buf, max);
}

static int cap_backtrace(void **buf, int max) {
        return backtrace(buf, max);
}

/* Only valid because this file is built with frame pointers. */
__attribute__((noinline)) static int cap_fp(void **buf, int max) {
        void **fp = __builtin_frame_address(0);
        int n = 0;

        while (fp && n < max) {
                void **next = fp[0];
                buf[n++] = fp[1];
                if (next <= fp || (uintptr_t) next - (uintptr_t) fp > (1 << 20))
                        break;
                fp = next;
        }
        return n;
}

static double now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

static volatile int sink;

__attribute__((noinline)) static double recurse(int depth, capture_fn f) {
        void *buf[64];
        double t0, t1;

        if (depth > 0) {
                double r = recurse(depth - 1, f);
                sink++;
                return r;
        }
        t0 = now();
        for (int i = 0; i < REPS; i++)
                sink += f(buf, 64);
        t1 = now();
        return (t1 - t0) / REPS;
}

static void run(const char *name, capture_fn f) {
        double r[ROUNDS];
        void *buf[64];

        f(buf, 64); /* warm: first calls set up caches / dlopen libgcc_s */
        for (int i = 0; i < ROUNDS; i++)
                r[i] = recurse(DEPTH, f);
        qsort(r, ROUNDS, sizeof(r[0]), cmp);
        printf("%-24s median %8.1f ns per capture (min %.1f, max %.1f)\n", name, r[ROUNDS / 2], r[0], r[ROUNDS - 1]);
}

int main(void) {
        void *h = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);

        printf("stack capture at depth %d (+ main, libc start): %d captures x %d rounds\n", DEPTH, REPS, ROUNDS);
        if (h && (unw_backtrace_p = (int (*)(void **, int)) dlsym(h, "unw_backtrace")))
                run("libunwind unw_backtrace", cap_libunwind);
        else
                printf("libunwind.so.8 not found: skipped\n");
        run("glibc backtrace()", cap_backtrace);
        run("frame-pointer walk", cap_fp);
        printf("At the default rate (512 KiB) with a mean of ~600 B per allocation, one capture\n"
               "happens per ~900 malloc/free pairs: divide the figures by 900 for the cost per pair.\n");
        return 0;
}
