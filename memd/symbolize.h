/* symbolize.h - names for another process's code addresses: function, file:line and inlined frames from the ELF files it mapped (elfutils libdwfl), cached per build-id. */
#ifndef MEMD_SYMBOLIZE_H
#define MEMD_SYMBOLIZE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One executable file-backed mapping of the process, as its agent reported
 * it (memd's struct mapping): the caller points at its own strings and
 * bytes, nothing is copied or kept past the call. */
struct sym_mapping {
        uint64_t start, limit, offset;  /* as /proc/PID/maps prints them */
        const char *path;               /* as maps prints it, maybe ending in " (deleted)" */
        const uint8_t *build_id;        /* the GNU build-id note's bytes; NULL when unknown */
        size_t build_id_len;
};

#define SYM_FUNC_MAX 512
#define SYM_FILE_MAX 512

/* One source-level frame.  Strings are NUL-terminated and truncated to fit. */
struct sym_frame {
        char func[SYM_FUNC_MAX];        /* C++ names demangled; C names as they are */
        char file[SYM_FILE_MAX];        /* the path DWARF gives; "" when unknown */
        int line;                       /* 0 when unknown */
        uint64_t func_offset;           /* pc - the function's start, for "func+0xOFF"
                                         * (inlined frames: pc - the inlined copy's entry) */
};

/* At most this many frames per pc are computed and cached (deeper inline
 * chains keep their innermost frames and the physical function). */
#define SYM_MAX_FRAMES 32

struct symbolizer;

/* The caches' bounds: ELF files held open, results, and bytes held for
 * the files (what is read of them: symbol tables, DWARF inflated, and the
 * indexes built over them).  A file whose DWARF (in it or in a separate
 * debug file) would not fit in the byte bound alone gives names only; one
 * whose symbol tables would not is not used. */
#define SYM_DEFAULT_MAX_FILES 64u
#define SYM_DEFAULT_MAX_PCS (1024u * 1024u)
#define SYM_DEFAULT_MAX_BYTES (UINT64_C(256) << 20)

/* Returns 0 or -ENOMEM. */
int symbolizer_new(struct symbolizer **ret);
/* Frees every cached file and result; NULL is fine. */
void symbolizer_free(struct symbolizer *s);

/* Names pc (a call PC: return address - 1) of process pid, whose executable
 * mappings are maps[0..n_maps).  pid is 0 when the process is gone: files
 * are then opened by path only.  Writes up to max frames to out, the
 * innermost inlined function first, then its callers inside the same
 * physical function, the physical function last (when the chain is longer
 * than max, the innermost max - 1 and the physical function).  Returns
 * the number written; 0 when nothing is known (no mapping holds pc, the file
 * cannot be opened or is not the one mapped, no symbol covers pc); -EINVAL
 * or -ENOMEM.  Never blocks on anything but reading local files. */
int symbolize_frames(struct symbolizer *s, pid_t pid, const struct sym_mapping *maps, size_t n_maps,
                     uintptr_t pc, struct sym_frame *out, size_t max);

/* "func+0xOFF" (or "func" at offset 0) into name and "file:line" (or "file",
 * or "") into where, as profile_symbolize_fn wants them. */
void sym_frame_format(const struct sym_frame *f, char *name, size_t name_len, char *where, size_t where_len);

/* Forgets every cached file and result (nothing else changes). */
void symbolizer_flush(struct symbolizer *s);

/* Changes the bounds (0 keeps one); the caches shrink at once if needed. */
void symbolizer_set_limits(struct symbolizer *s, unsigned max_files, size_t max_pcs, uint64_t max_bytes);

struct sym_stats {
        unsigned files;                 /* ELF files open and cached */
        size_t pcs;                     /* results cached */
        uint64_t bytes;                 /* held for them (see SYM_DEFAULT_MAX_BYTES) */
        uint64_t lookups;               /* symbolize_frames() calls */
        uint64_t pc_hits;               /* answered from the result cache */
        uint64_t file_loads;            /* ELF files opened and reported to libdwfl */
        uint64_t file_rejects;          /* files not used: unreadable, not ELF, another build-id */
        uint64_t file_evictions;        /* files dropped for the bounds */
};
void symbolizer_stats(const struct symbolizer *s, struct sym_stats *ret);

#endif
