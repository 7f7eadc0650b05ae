/* memd.h - public interface of libmemd, the in-process memory runtime. */
#ifndef MEMD_H
#define MEMD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MEMD_VERSION "0.1.0"

#if defined(__GNUC__)
#define MEMD_EXPORT __attribute__((visibility("default")))
#else
#define MEMD_EXPORT
#endif

/*
 * Go's runtime.MemStats, field for field where a C allocator gives the figure a
 * meaning, plus Linux figures Go lacks.  Names are Go's on purpose so that
 * people and parsers that know Go read them without a dictionary.  All fields
 * are read-only snapshots (ro).  docs/memstats.md says how each is measured.
 */
struct memd_memstats {
        uint64_t Alloc;          /* ro: = HeapAlloc */
        uint64_t TotalAlloc;     /* ro: cumulative usable bytes allocated (exact) */
        uint64_t Sys;            /* ro: HeapSys + BuckHashSys + libmemd's other memory */
        uint64_t Mallocs;        /* ro: cumulative allocations (exact) */
        uint64_t Frees;          /* ro: cumulative frees (exact) */
        uint64_t HeapAlloc;      /* ro: usable bytes of live objects (exact) */
        uint64_t HeapSys;        /* ro: heap address space held by the allocator */
        uint64_t HeapIdle;       /* ro: HeapSys - HeapInuse: free chunks, resident or not */
        uint64_t HeapInuse;      /* ro: bytes in in-use chunks (HeapAlloc + chunk headers) */
        uint64_t HeapReleased;   /* ro: heap address space not resident (returned to the OS) */
        uint64_t HeapObjects;    /* ro: Mallocs - Frees */
        uint64_t BuckHashSys;    /* ro: memory of libmemd's profiling tables */
        uint64_t NextGC;         /* ro: goal of the next GC cycle (GCPercent / limit), 0 if none */
        uint64_t LastGC;         /* ro: end of last GC cycle, ns since the Unix epoch */
        uint64_t PauseTotalNs;   /* ro: cumulative time in GC cycles */
        uint64_t PauseNs[256];   /* ro: circular, latest at [(NumGC+255)%256] */
        uint64_t PauseEnd[256];  /* ro: end times, ns since the epoch, same indexing */
        uint32_t NumGC;          /* ro: GC cycles completed */
        uint32_t NumForcedGC;    /* ro: of those, requested (API, memctl) */
        double GCCPUFraction;    /* ro: CPU spent in GC cycles / CPU available since start */
        /* Linux figures (from /proc/self/smaps_rollup and /proc/self/status) */
        uint64_t RSS;            /* ro: resident set size */
        uint64_t RssAnon;        /* ro: resident anonymous memory */
        uint64_t LazyFree;       /* ro: MADV_FREE'd, still counted in RSS until reclaimed */
        uint32_t Threads;        /* ro: threads in the process */
};

/* Go's runtime.ReadMemStats.  Returns 0, or -errno (the counters are filled
 * even then; only /proc figures may be missing). */
MEMD_EXPORT int memd_read_memstats(struct memd_memstats *ret_stats);

/* Go's runtime.GC: runs every registered reclaimer, records a GC cycle
 * (NumGC, PauseNs, gctrace line).  Returns the bytes the reclaimers say they
 * freed. */
MEMD_EXPORT size_t memd_gc(void);

/* Go's debug.FreeOSMemory: memd_gc(), then returns free allocator memory to
 * the OS (glibc malloc_trim(0), or the purge call of jemalloc, tcmalloc or
 * mimalloc when one of them is the allocator).  Returns the bytes of heap
 * that stopped being resident (HeapSys - HeapReleased before minus after). */
MEMD_EXPORT size_t memd_free_os_memory(void);

/* A reclaimer drops what it can (cache eviction, pool trimming) and returns
 * the bytes it freed.  It runs on the thread calling memd_gc(), holding only
 * the lock that keeps cycles one at a time, so it may allocate and free; a
 * memd_gc() or memd_free_os_memory() it calls returns 0 at once (the running
 * cycle is that cycle).  name is copied.  Returns 0, -EEXIST if (fn, ctx) is
 * registered, -ENOSPC if the table is full (64). */
MEMD_EXPORT int memd_register_reclaimer(const char *name, size_t (*fn)(void *ctx), void *ctx);
/* Once this returns, fn(ctx) is not running and will not run again (unless it
 * is called from inside that reclaimer).  Returns 0 or -ENOENT. */
MEMD_EXPORT int memd_unregister_reclaimer(const char *name, size_t (*fn)(void *ctx), void *ctx);

/* Go's runtime.MemProfileRate: mean bytes between samples; 0 off, 1 all.
 * Each thread takes the new rate at its next sample, or within 64 MiB of
 * allocation when sampling was off.  Returns the previous rate. */
MEMD_EXPORT uint64_t memd_set_profile_rate(uint64_t rate_bytes);

/* Go's debug.SetMemoryLimit; 0 removes the limit.  Returns the previous one. */
MEMD_EXPORT uint64_t memd_set_memory_limit(uint64_t limit_bytes);

enum memd_profile_format {
        MEMD_PROFILE_AUTO = 0,  /* from the path: ".pb.gz" -> PPROF, else TEXT */
        MEMD_PROFILE_PPROF = 1, /* pprof protobuf, gzipped */
        MEMD_PROFILE_TEXT = 2,  /* Go's legacy /debug/pprof/heap?debug=1 text */
};

/* Writes the heap profile to path (created 0644, truncated) or, if path is
 * NULL, to fd (not closed).  "%p" in path expands to the PID.  The sample
 * table lock is held only while the table is copied, never across I/O.
 * Returns 0 or -errno. */
MEMD_EXPORT int memd_write_heap_profile(const char *path, int fd, enum memd_profile_format format);

#ifdef __cplusplus
}
#endif
#endif
