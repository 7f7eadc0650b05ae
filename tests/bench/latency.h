/* latency.h - the latency histogram the benchmarks share (stacks-bench.c, scavenge-stall.c): log-linear, about 3% wide buckets, nearest-rank percentiles. */
#ifndef MEMD_BENCH_LATENCY_H
#define MEMD_BENCH_LATENCY_H

#include <stdint.h>

/* Exact below 64 ns, then 32 steps per power of two. */
#define SUB_BITS 5
#define SUB (1u << SUB_BITS)
#define HIST_N (64u + 58u * SUB)

static inline unsigned hist_index(uint64_t v) {
        unsigned e;

        if (v < 64)
                return (unsigned) v;
        e = 63u - (unsigned) __builtin_clzll(v); /* 6..63 */
        return 64u + (e - 6u) * SUB + (unsigned) ((v >> (e - SUB_BITS)) & (SUB - 1));
}

/* The middle of bucket k, in ns. */
static inline double hist_value(unsigned k) {
        unsigned e;
        double lo, w;

        if (k < 64)
                return k;
        e = (k - 64u) / SUB + 6u;
        lo = (double) (1ull << e) + (double) ((k - 64u) % SUB) * (double) (1ull << (e - SUB_BITS));
        w = (double) (1ull << (e - SUB_BITS));
        return lo + w / 2;
}

/* The q-quantile (0..1) of total values counted in hist, in ns. */
static inline double percentile(const uint64_t *hist, uint64_t total, double q) {
        uint64_t rank = (uint64_t) (q * (double) total), acc = 0;

        if (!total)
                return 0;
        if (rank >= total)
                rank = total - 1;
        for (unsigned k = 0; k < HIST_N; k++) {
                acc += hist[k];
                if (acc > rank)
                        return hist_value(k);
        }
        return 0;
}

#endif
