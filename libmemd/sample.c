/* sample.c - what happens on a sampled allocation: the next interval, the weight, the stack. */
#include <dlfcn.h>
#include <execinfo.h>
#include <link.h>
#include <math.h>
#include <string.h>

#include "internal.h"

/*
 * Stacks come from libunwind's unw_backtrace (the .eh_frame walk with its
 * per-thread cache: 0.4-0.8 us for 25 frames, tests/bench/unwind-bench.c),
 * because most distribution binaries have no frame pointers and a
 * frame-pointer walk over them returns wrong stacks silently.  At the default
 * rate that is one capture per ~900 malloc/free pairs: < 1 ns per pair.
 *
 * libunwind is a DT_NEEDED of libmemd, not dlopen'ed: a dlopen'ed library's
 * TLS is allocated lazily, with malloc, on each thread's first use — inside
 * the sampled path, counted as the program's.  Loaded at start it lives in
 * static TLS.  Its own `backtrace` symbol does not shadow glibc's: the loader
 * searches breadth-first, and libc (the program's dependency) comes before
 * libunwind (ours).  MEMD_DEBUG=unwind=backtrace uses glibc's backtrace()
 * (libgcc's unwinder, ~10 us, prewarmed here: its first call dlopens libgcc_s).
 */
#define UNW_LOCAL_ONLY
#include <libunwind.h>

static bool use_libunwind = true;

/* Frames that are allocator entry points, never a leaf of a recorded stack:
 * libmemd itself and C++'s operator new family. */
struct pc_range {
        uintptr_t start, end;
};
static struct pc_range skip_ranges[16];
static int n_skip_ranges;

static void skip_add(uintptr_t start, uintptr_t end) {
        if (n_skip_ranges < (int) (sizeof(skip_ranges) / sizeof(skip_ranges[0])) && start < end)
                skip_ranges[n_skip_ranges++] = (struct pc_range) { start, end };
}

static int self_phdr(struct dl_phdr_info *info, size_t size _unused_, void *data) {
        uintptr_t self = (uintptr_t) data;

        for (int i = 0; i < info->dlpi_phnum; i++) {
                const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
                uintptr_t start = info->dlpi_addr + ph->p_vaddr;

                if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && self >= start && self < start + ph->p_memsz) {
                        skip_add(start, start + ph->p_memsz);
                        return 1;
                }
        }
        return 0;
}

static void skip_symbol(const char *name) {
        void *addr = dlsym(RTLD_DEFAULT, name);
        const ElfW(Sym) *sym = NULL;
        Dl_info info;

        if (!addr || !dladdr1(addr, &info, (void **) &sym, RTLD_DL_SYMENT) || !sym)
                return;
        skip_add((uintptr_t) addr, (uintptr_t) addr + (sym->st_size ? sym->st_size : 1));
}

void sample_init(void) {
        static const char *const operator_new[] = {
                "_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t",
                "_ZnwmSt11align_val_t", "_ZnamSt11align_val_t",
                "_ZnwmSt11align_val_tRKSt9nothrow_t", "_ZnamSt11align_val_tRKSt9nothrow_t",
        };

        dl_iterate_phdr(self_phdr, (void *) (uintptr_t) sample_init);
        for (size_t i = 0; i < sizeof(operator_new) / sizeof(operator_new[0]); i++)
                skip_symbol(operator_new[i]);

        if (memd_config.unwinder == UNWIND_BACKTRACE) {
                void *warm[4];

                use_libunwind = false;
                backtrace(warm, 4);
        }
}

static bool skipped(uintptr_t pc) {
        for (int i = 0; i < n_skip_ranges; i++)
                if (pc >= skip_ranges[i].start && pc < skip_ranges[i].end)
                        return true;
        return false;
}

/* Fills pcs with return addresses, the caller of the allocator first. */
int sample_stack(uintptr_t *pcs, int max) {
        void *raw[PROFILE_MAX_DEPTH + 16];
        int n, first = 0;

        if (use_libunwind)
                n = unw_backtrace(raw, (int) (sizeof(raw) / sizeof(raw[0])));
        else
                n = backtrace(raw, (int) (sizeof(raw) / sizeof(raw[0])));
        if (n <= 0)
                return 0;
        while (first < n && skipped((uintptr_t) raw[first]))
                first++;
        n -= first;
        if (n > max)
                n = max;
        for (int i = 0; i < n; i++)
                pcs[i] = (uintptr_t) raw[first + i];
        return n;
}

/* Exponential with mean rate: the bytes until the next sample (Poisson
 * process over allocated bytes, as Go and tcmalloc). */
int64_t sample_next_interval(uint64_t *rng, uint64_t rate_bytes) {
        uint64_t x = *rng;
        double u, v;

        /* xorshift64* */
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *rng = x;
        x *= 0x2545F4914F6CDD1DULL;
        u = ((double) (x >> 11) + 1.0) * 0x1.0p-53; /* (0, 1] */
        v = -log(u) * (double) rate_bytes;
        if (v < 1.0)
                return 1;
        if (v > 0x1.0p62)
                return INT64_C(1) << 62;
        return (int64_t) v;
}

/* Inverse of the probability that an allocation of size bytes is sampled:
 * weighting each sample by it makes every estimate unbiased. */
double sample_weight(uint64_t size_bytes, uint64_t rate_bytes) {
        if (rate_bytes <= 1 || size_bytes == 0)
                return 1.0;
        return 1.0 / -expm1(-(double) size_bytes / (double) rate_bytes);
}

uint64_t memd_set_profile_rate(uint64_t rate_bytes) {
        uint64_t old = atomic_exchange(&memd_config.profile_rate, rate_bytes);

        if (rate_bytes)
                atomic_store(&memd_config.last_rate, rate_bytes);

        atomic_fetch_add(&memd_config.rate_gen, 1);
        return old;
}
