/* writer.c - memd_write_heap_profile() and MEMD_MEMPROFILE: the profile of this process, written without holding the sample lock across I/O. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* Best-effort names for the text format's "#" lines: dynamic symbols only
 * (dladdr); pprof symbolizes fully from the binaries named in the mappings,
 * and memd does it with DWARF. */
/* This process's objects carry their build-ids in memory. */
static ssize_t loaded_build_id(uint64_t start, uint8_t *buf, size_t buf_len, void *ctx) {
        (void) ctx;
        return profile_loaded_build_id((uintptr_t) start, buf, buf_len);
}

static int symbolize_dladdr(uintptr_t pc, char *name, size_t name_len, char *where, size_t where_len,
                            void *ctx _unused_) {
        Dl_info info;

        if (!dladdr((void *) pc, &info) || !info.dli_sname)
                return -ENOENT;
        snprintf(name, name_len, "%s+0x%lx", info.dli_sname, (unsigned long) (pc - (uintptr_t) info.dli_saddr));
        if (where_len)
                where[0] = 0;
        return 0;
}

static bool ends_with(const char *s, const char *suffix) {
        size_t a = strlen(s), b = strlen(suffix);

        return a >= b && !strcmp(s + a - b, suffix);
}

/* "%p" -> PID, "%%" -> "%". */
static int expand_path(const char *in, char *out, size_t out_len) {
        struct buf b = { out, 0, out_len - 1 };

        for (const char *p = in; *p; p++) {
                if (p[0] == '%' && p[1] == 'p') {
                        buf_u64(&b, (uint64_t) getpid());
                        p++;
                } else if (p[0] == '%' && p[1] == '%') {
                        buf_puts(&b, "%");
                        p++;
                } else {
                        char c[2] = { *p, 0 };
                        buf_puts(&b, c);
                }
        }
        if (b.len >= out_len - 1)
                return -ENAMETOOLONG;
        out[b.len] = 0;
        return 0;
}

static int write_profile(const char *path, int fd, enum memd_profile_format format) {
        struct profile_record *records = NULL;
        struct memd_memstats stats;
        struct profile p = {};
        char *maps = NULL, expanded[4096];
        size_t n = 0, rec_len = 0, maps_cap = 0;
        int r, own_fd = -1;

        if (path) {
                r = expand_path(path, expanded, sizeof(expanded));
                if (r < 0)
                        return r;
                if (format == MEMD_PROFILE_AUTO)
                        format = ends_with(expanded, ".pb.gz") ? MEMD_PROFILE_PPROF : MEMD_PROFILE_TEXT;
                own_fd = open(expanded, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                if (own_fd < 0)
                        return -errno;
                fd = own_fd;
        } else if (fd < 0)
                return -EBADF;
        if (format == MEMD_PROFILE_AUTO)
                format = MEMD_PROFILE_PPROF;

        stats_read(&stats);
        r = bucket_snapshot(&records, &n, &rec_len);
        if (r < 0)
                goto out;
        r = stats_read_file("/proc/self/maps", &maps, &p.maps_len, &maps_cap);
        if (r < 0) {
                maps = NULL;
                goto out;
        }
        p.maps_text = maps;
        p.records = records;
        p.n_records = n;
        /* Sampling may be off now (or stopped by a full table): the samples
         * in the table were taken at the last rate that was not 0. */
        p.rate_bytes = atomic_load(&memd_config.last_rate);
        p.root = "";
        p.build_id = loaded_build_id;
        p.stats = &stats;
        p.time_ns = now_ns(CLOCK_REALTIME);
        p.symbolize = symbolize_dladdr;
        if (format == MEMD_PROFILE_TEXT)
                r = profile_write_text(fd, &p);
        else
                r = profile_write_pprof(fd, &p);
out:
        if (records)
                munmap(records, rec_len);
        if (maps)
                munmap(maps, maps_cap);
        if (own_fd >= 0 && close(own_fd) < 0 && r >= 0)
                r = -errno;
        return r;
}

int memd_write_heap_profile(const char *path, int fd, enum memd_profile_format format) {
        struct thread_state *t = &memd_thread;
        int r;

        interpose_init();
        /* Our own allocations (zlib, the encoder) are counted, not sampled. */
        t->guard++;
        r = write_profile(path, fd, format);
        t->guard--;
        return r;
}

__attribute__((destructor)) static void writer_at_exit(void) {
        char msg[256];
        int r;

        if (!memd_config.memprofile[0])
                return;
        r = memd_write_heap_profile(memd_config.memprofile, -1, MEMD_PROFILE_AUTO);
        if (r < 0) {
                snprintf(msg, sizeof(msg), "MEMD_MEMPROFILE: cannot write the heap profile: %s", strerror(-r));
                memd_warn(msg);
        }
}
