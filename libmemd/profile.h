/* profile.h - heap profile records and their writers (pprof protobuf, Go's legacy text, folded). */
#ifndef MEMD_PROFILE_H
#define MEMD_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "memd.h"

#define PROFILE_MAX_DEPTH 64

/* One stack's figures.  Raw counts are what was sampled; the *_est fields are
 * unbiased estimates: every sample is weighted 1/(1-exp(-size/rate)) when it
 * is taken, so mixed sizes at one site are not biased. */
struct profile_record {
        uint64_t alloc_count;           /* raw sampled allocations */
        uint64_t alloc_bytes;           /* raw sampled bytes (requested sizes) */
        uint64_t free_count;            /* raw sampled frees of those */
        uint64_t free_bytes;
        double alloc_objects_est;
        double alloc_bytes_est;
        double free_objects_est;
        double free_bytes_est;
        uint32_t depth;
        uintptr_t pcs[PROFILE_MAX_DEPTH]; /* return addresses, leaf (the caller of malloc) first */
};

/* The hash of a stack, as libmemd's sample table and memd's copy key it. */
static inline uint64_t profile_stack_hash(const uintptr_t *pcs, uint32_t depth) {
        uint64_t h = 0xcbf29ce484222325ULL ^ depth;

        for (uint32_t i = 0; i < depth; i++) {
                h ^= pcs[i];
                h *= 0x100000001b3ULL;
                h ^= h >> 29;
        }
        return h;
}

/* Names a return address for the text format's "#" lines.  Writes
 * "func+0xOFF" into name and, if known, "file:line" into where (else "");
 * returns 0, or -ENOENT when it knows nothing.  pc is the call PC (ret - 1). */
typedef int (*profile_symbolize_fn)(uintptr_t pc, char *name, size_t name_len,
                                    char *where, size_t where_len, void *ctx);

/* One source line of a call PC (pprof's Line): a function, its file, a line. */
#define PROFILE_MAX_LINES 32
struct profile_line {
        char name[512];         /* the function, no "+0x..." */
        char file[512];         /* "" when unknown */
        int64_t line;           /* 0 when unknown */
};

/* Every line of pc, the innermost inlined function first and the function
 * the code belongs to last (pprof's Location.line order).  Returns how many
 * (<= max), 0 when nothing is known. */
typedef int (*profile_lines_fn)(uintptr_t pc, struct profile_line *lines, int max, void *ctx);

struct profile {
        const struct profile_record *records;
        size_t n_records;
        uint64_t rate_bytes;            /* the sampling rate (pprof period) */
        const char *maps_text;          /* contents of /proc/PID/maps */
        size_t maps_len;
        const char *root;               /* prefix for paths in maps when reading build-ids ("" or "/proc/PID/root"), may be NULL */
        const struct memd_memstats *stats; /* for the text trailer, may be NULL */
        int64_t time_ns;                /* when the profile was taken, ns since the epoch */
        profile_symbolize_fn symbolize; /* may be NULL */
        void *symbolize_ctx;
        profile_lines_fn lines;         /* may be NULL; the pprof writer prefers it (inlined frames) */
        /* May be NULL: the build-id of the mapping starting at start, into
         * buf; its length, or < 0 to read it from the file (root + path). */
        ssize_t (*build_id)(uint64_t start, uint8_t *buf, size_t buf_len, void *ctx);
        void *build_id_ctx;
};

/* Each writes the whole profile to fd and returns 0 or -errno.  They may
 * allocate with malloc; they never log. */
int profile_write_pprof(int fd, const struct profile *p);   /* gzipped profile.proto */
int profile_write_text(int fd, const struct profile *p);    /* Go's debug=1 heap text */
int profile_write_folded(int fd, const struct profile *p);  /* "f1;f2;f3 inuse_bytes" */

/* One /proc/PID/maps line [p, end) without its newline: "start-end perms
 * offset dev inode   path".  True for an executable file-backed mapping,
 * with *path (not NUL-terminated) and *path_len set. */
bool profile_parse_maps_line(const char *p, const char *end, uint64_t *start, uint64_t *limit,
                             uint64_t *offset, const char **path, size_t *path_len);

/* Reads the GNU build-id note of the ELF file at path into buf as raw bytes.
 * Returns its length, or -errno. */
ssize_t profile_read_build_id(const char *path, uint8_t *buf, size_t buf_len);
/* The same, from memory: the build-id note of the object loaded in this
 * process (dl_iterate_phdr) that maps addr -- right even when the file at
 * its path was replaced or deleted since.  -ENOENT: no loaded object maps
 * addr; -ENODATA: it has no build-id. */
ssize_t profile_loaded_build_id(uintptr_t addr, uint8_t *buf, size_t buf_len);

#endif
