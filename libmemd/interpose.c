/* interpose.c - the malloc family: forwards to the next allocator, counts every call exactly, diverts the sampled ones. */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define _export_ __attribute__((visibility("default")))

__thread struct thread_state memd_thread __attribute__((tls_model("initial-exec")));
struct real_alloc memd_real;
/* Generic (malloc_usable_size) until detect_allocator() knows better: the
 * allocations init itself makes must not be read as glibc chunks. */
enum alloc_kind memd_alloc_kind = ALLOC_OTHER;
struct memd_config memd_config;
int64_t memd_start_ns;

/*
 * Sampled blocks (and the few served from the bootstrap arena) carry a 32-byte
 * header just below the pointer the program sees.  Its last word, the one a
 * glibc chunk keeps its size field in, holds a tag with bit 3 set.  glibc
 * chunk sizes are multiples of 16, so a real size field never has that bit:
 * free() tells a sampled block from a plain one with the word it loads anyway.
 * Under other allocators that word belongs to someone else, so there a set of
 * sampled pointers answers instead (sampled_set_*).
 */
#define TAG_SAMPLED 0x4d454d4453414d4bULL /* low byte 0x4b: bit 3 set */
#define TAG_BOOT 0x4d454d44424f4f4fULL    /* low byte 0x4f: bit 3 set */
#define TAG_BIT 8u

struct block_header {
        uint64_t size_bytes;    /* requested size */
        uint32_t bucket;        /* sample table index */
        uint32_t offset;        /* user pointer - underlying block */
        double weight;          /* 1/(1-exp(-size/rate)) at sample time */
        uint64_t tag;
};
_Static_assert(sizeof(struct block_header) == 32, "header must keep 16-byte alignment");

static inline struct block_header *header_of(void *p) {
        return (struct block_header *) p - 1;
}

/*
 * What the byte counters add per block: glibc's chunk size (its size field
 * with the flag bits masked), which is the usable size + 8, or + 16 for an
 * mmapped chunk.  Two instructions on the fast path instead of six; stats.c
 * subtracts 8 per live object and 8 per live mmapped chunk, so HeapAlloc is
 * exact (docs/memstats.md).  Other allocators: usable size + 8, same algebra.
 */
static inline uint64_t acct_bytes(void *p) {
        if (likely(memd_alloc_kind == ALLOC_GLIBC))
                return ((uint64_t *) p)[-1] & ~(uint64_t) 7;
        return memd_real.malloc_usable_size(p) + 8;
}

/* glibc chunks served by mmap (IS_MMAPPED, bit 1 of the size field) are
 * counted apart as well: they are heap address space of their own (HeapSys)
 * and their usable size is 8 bytes less than other chunks'.  Off the fast
 * path: only large blocks (>= M_MMAP_THRESHOLD) come here. */
static _cold_ void count_mmapped(struct slot *s, uint64_t chunk_bytes, bool is_free) {
        if (is_free) {
                s->mmap_frees++;
                s->mmap_free_bytes += chunk_bytes;
        } else {
                s->mmap_allocs++;
                s->mmap_alloc_bytes += chunk_bytes;
        }
}

static inline bool is_mmapped(void *block) {
        return memd_alloc_kind == ALLOC_GLIBC && (((uint64_t *) block)[-1] & 2);
}

/* Counts a block (minus off bytes of our header) for the slow paths. */
static inline void slot_alloc(struct slot *s, void *block, uint64_t off) {
        uint64_t b = acct_bytes(block);

        s->mallocs++;
        s->alloc_bytes += b - off;
        if (is_mmapped(block))
                count_mmapped(s, b, false);
}

static inline void slot_free(struct slot *s, void *block, uint64_t off) {
        uint64_t b = acct_bytes(block);

        s->frees++;
        s->free_bytes += b - off;
        if (is_mmapped(block))
                count_mmapped(s, b, true);
}

/* Usable bytes of a plain block (malloc_usable_size's answer). */
static inline uint64_t usable_of(void *p) {
        if (likely(memd_alloc_kind == ALLOC_GLIBC)) {
                uint64_t w = ((uint64_t *) p)[-1];
                return (w & ~(uint64_t) 7) - 8 - ((w & 2) << 2);
        }
        return memd_real.malloc_usable_size(p);
}

/* ---- bootstrap: dlsym may allocate before we know the next malloc ---- */

static char boot_arena[64 * 1024] __attribute__((aligned(64)));
static size_t boot_used;

static void *boot_alloc(size_t n, size_t align) {
        size_t off, start;
        struct block_header *h;

        if (align < 16)
                align = 16;
        start = (boot_used + sizeof(struct block_header) + align - 1) & ~(align - 1);
        off = start + ((n + 15) & ~(size_t) 15);
        if (off > sizeof(boot_arena) || start < boot_used) {
                errno = ENOMEM;
                return NULL;
        }
        boot_used = off;
        h = (struct block_header *) (boot_arena + start) - 1;
        h->size_bytes = n;
        h->tag = TAG_BOOT;
        return boot_arena + start;
}

static inline bool is_boot(void *p) {
        return (char *) p >= boot_arena && (char *) p < boot_arena + sizeof(boot_arena);
}

/* ---- per-thread counter slots ---- */

#define SLOTS_PER_CHUNK 64
static struct slot *_Atomic slot_list;
static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t slot_key;
static bool slot_key_ok;
static struct slot slot_emergency; /* if mmap fails: shared, racy, never NULL */
static struct slot *slot_free_chunk;
static int slot_free_left;

enum { SLOT_INUSE = 0, SLOT_EXITING = 1, SLOT_CLAIMING = 2 };

static void slot_exiting(void *v) {
        struct slot *s = v;

        /* The thread may still free after this (glibc's own thread freeres
         * runs later), so the slot is not reused until the kernel says the
         * thread is gone; its counts stay in the totals for ever. */
        __atomic_store_n(&s->pad[0], SLOT_EXITING, __ATOMIC_RELEASE);
}

static struct slot *slot_acquire(pid_t tid) {
        struct slot *s;
        pid_t pid = getpid();

        for (s = atomic_load(&slot_list); s; s = s->next) {
                uint64_t expect = SLOT_EXITING;

                if (__atomic_load_n(&s->pad[0], __ATOMIC_ACQUIRE) != SLOT_EXITING)
                        continue;
                if (!__atomic_compare_exchange_n(&s->pad[0], &expect, SLOT_CLAIMING, false,
                                                 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                        continue;
                if (syscall(SYS_tgkill, pid, (pid_t) atomic_load(&s->tid), 0) < 0 && errno == ESRCH) {
                        atomic_store(&s->tid, tid);
                        __atomic_store_n(&s->pad[0], SLOT_INUSE, __ATOMIC_RELEASE);
                        return s;
                }
                __atomic_store_n(&s->pad[0], SLOT_EXITING, __ATOMIC_RELEASE);
        }

        pthread_mutex_lock(&slot_lock);
        if (slot_free_left == 0) {
                void *m = mmap(NULL, SLOTS_PER_CHUNK * sizeof(struct slot), PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (m == MAP_FAILED) {
                        pthread_mutex_unlock(&slot_lock);
                        return &slot_emergency;
                }
                slot_free_chunk = m;
                slot_free_left = SLOTS_PER_CHUNK;
        }
        s = slot_free_chunk++;
        slot_free_left--;
        atomic_store(&s->tid, tid);
        s->next = atomic_load(&slot_list);
        atomic_store(&slot_list, s);
        pthread_mutex_unlock(&slot_lock);
        return s;
}

/* The fast paths run only with a registered slot over glibc (known once
 * detect_allocator() has run). */
static void thread_set_fast(struct thread_state *t) {
        t->fast = memd_alloc_kind == ALLOC_GLIBC && t->slot != &slot_emergency ? t->slot : NULL;
}

static void thread_register(struct thread_state *t) {
        int saved = errno;

        t->slot = slot_acquire((pid_t) syscall(SYS_gettid));
        thread_set_fast(t);
        /* setspecific may calloc (keys >= 32); that nested call finds t->slot set. */
        if (slot_key_ok && t->slot != &slot_emergency)
                pthread_setspecific(slot_key, t->slot);
        errno = saved;
}

static void slot_sum(const struct slot *s, struct counters *c) {
        c->mallocs += __atomic_load_n(&s->mallocs, __ATOMIC_RELAXED);
        c->frees += __atomic_load_n(&s->frees, __ATOMIC_RELAXED);
        c->alloc_bytes += __atomic_load_n(&s->alloc_bytes, __ATOMIC_RELAXED);
        c->free_bytes += __atomic_load_n(&s->free_bytes, __ATOMIC_RELAXED);
        c->mmap_allocs += __atomic_load_n(&s->mmap_allocs, __ATOMIC_RELAXED);
        c->mmap_frees += __atomic_load_n(&s->mmap_frees, __ATOMIC_RELAXED);
        c->mmap_alloc_bytes += __atomic_load_n(&s->mmap_alloc_bytes, __ATOMIC_RELAXED);
        c->mmap_free_bytes += __atomic_load_n(&s->mmap_free_bytes, __ATOMIC_RELAXED);
}

/* Sums every slot, including those of threads that have exited. */
void interpose_counters(struct counters *c) {
        memset(c, 0, sizeof(*c));
        for (struct slot *s = atomic_load(&slot_list); s; s = s->next)
                slot_sum(s, c);
        slot_sum(&slot_emergency, c);
}

/* ---- the set of sampled pointers, for allocators other than glibc ---- */

/* Open addressing with tombstones; lookups take no lock (entries never move
 * while the table is live), inserts and removals hold set_lock.  The table is
 * fixed-size: when it is full sampling stops (and says so). */
#define SET_BITS 18
#define SET_SIZE (1u << SET_BITS)
#define SET_TOMB ((uintptr_t) 1)
static _Atomic uintptr_t *sampled_set;
static pthread_mutex_t set_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t set_used; /* live + tombstones */

static inline uint32_t set_hash(uintptr_t p) {
        return (uint32_t) ((p >> 4) * 0x9E3779B97F4A7C15ULL >> (64 - SET_BITS));
}

static bool sampled_set_contains(void *p) {
        uint32_t i = set_hash((uintptr_t) p);

        if (!sampled_set)
                return false;
        for (uint32_t n = 0; n < SET_SIZE; n++, i = (i + 1) & (SET_SIZE - 1)) {
                uintptr_t v = atomic_load_explicit(&sampled_set[i], memory_order_acquire);
                if (v == (uintptr_t) p)
                        return true;
                if (v == 0)
                        return false;
        }
        return false;
}

static int sampled_set_add(void *p) {
        uint32_t i = set_hash((uintptr_t) p);
        int r = -ENOSPC;

        pthread_mutex_lock(&set_lock);
        if (!sampled_set) {
                void *m = mmap(NULL, SET_SIZE * sizeof(uintptr_t), PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
                if (m == MAP_FAILED)
                        goto out;
                sampled_set = m;
        }
        if (set_used >= SET_SIZE / 2)
                goto out;
        for (;; i = (i + 1) & (SET_SIZE - 1)) {
                uintptr_t v = atomic_load(&sampled_set[i]);
                if (v == 0 || v == SET_TOMB) {
                        if (v == 0)
                                set_used++;
                        atomic_store_explicit(&sampled_set[i], (uintptr_t) p, memory_order_release);
                        r = 0;
                        break;
                }
        }
out:
        pthread_mutex_unlock(&set_lock);
        return r;
}

/* Removal leaves a tombstone, then turns the tombstones at the end of the
 * cluster back into empty slots: no live entry lies past an empty slot in
 * its cluster, so lock-free lookups stay right, and the table does not
 * silt up with tombstones over a long run. */
static void sampled_set_remove(void *p) {
        uint32_t i = set_hash((uintptr_t) p);

        pthread_mutex_lock(&set_lock);
        for (uint32_t n = 0; sampled_set && n < SET_SIZE; n++, i = (i + 1) & (SET_SIZE - 1)) {
                uintptr_t v = atomic_load(&sampled_set[i]);
                if (v == (uintptr_t) p) {
                        atomic_store(&sampled_set[i], SET_TOMB);
                        if (atomic_load(&sampled_set[(i + 1) & (SET_SIZE - 1)]) == 0)
                                while (atomic_load(&sampled_set[i]) == SET_TOMB) {
                                        atomic_store(&sampled_set[i], 0);
                                        set_used--;
                                        i = (i - 1) & (SET_SIZE - 1);
                                }
                        break;
                }
                if (v == 0)
                        break;
        }
        pthread_mutex_unlock(&set_lock);
}

static inline bool is_sampled(void *p) {
        if (likely(memd_alloc_kind == ALLOC_GLIBC))
                return header_of(p)->tag == TAG_SAMPLED;
        return sampled_set_contains(p);
}

/* ---- initialization ---- */

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int init_stage;  /* 0 none, 1 symbols resolved, 2 complete */
static _Atomic pid_t init_tid;
static bool sampling_ready;     /* set by the constructor: unwinder loaded */

static void *resolve(const char *name) {
        return dlsym(RTLD_NEXT, name);
}

static void detect_allocator(void) {
        void *libc_malloc = dlsym(RTLD_DEFAULT, "__libc_malloc");

        if (dlsym(RTLD_DEFAULT, "mallctl") && dlsym(RTLD_DEFAULT, "malloc_stats_print"))
                memd_alloc_kind = ALLOC_JEMALLOC;
        else if (dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory"))
                memd_alloc_kind = ALLOC_TCMALLOC;
        else if (dlsym(RTLD_DEFAULT, "mi_collect"))
                memd_alloc_kind = ALLOC_MIMALLOC;
        else if (libc_malloc && (void *) memd_real.malloc == libc_malloc)
                memd_alloc_kind = ALLOC_GLIBC;
        else
                memd_alloc_kind = ALLOC_OTHER;
}

static void atfork_prepare(void) {
        pthread_mutex_lock(&init_lock);
        bucket_atfork_prepare();
        pthread_mutex_lock(&set_lock);
        pthread_mutex_lock(&slot_lock);
}

static void atfork_parent(void) {
        pthread_mutex_unlock(&slot_lock);
        pthread_mutex_unlock(&set_lock);
        bucket_atfork_parent();
        pthread_mutex_unlock(&init_lock);
}

static void atfork_child(void) {
        struct thread_state *t = &memd_thread;

        pthread_mutex_unlock(&slot_lock);
        pthread_mutex_unlock(&set_lock);
        bucket_atfork_child();
        reclaim_atfork_child();
        pthread_mutex_unlock(&init_lock);
        agent_atfork_child();
        monitor_atfork_child();
        /* Same slot, new identity: otherwise the parent's tid, gone in this
         * process, would let another thread claim the slot we still use. */
        if (t->slot && t->slot != &slot_emergency)
                atomic_store(&t->slot->tid, (pid_t) syscall(SYS_gettid));
}

/* Runs on the first allocation of the process, from whatever thread, before
 * constructors may have run. */
_cold_ void interpose_init(void) {
        struct thread_state *t = &memd_thread;
        pid_t me = (pid_t) syscall(SYS_gettid);

        if (atomic_load(&init_stage) == 2)
                return;
        if (atomic_load(&init_tid) == me)
                return; /* recursion from dlsym: callers use the boot arena */
        pthread_mutex_lock(&init_lock);
        if (atomic_load(&init_stage) == 2) {
                pthread_mutex_unlock(&init_lock);
                return;
        }
        atomic_store(&init_tid, me);
        t->guard++;

        memd_real.malloc = resolve("malloc");
        memd_real.free = resolve("free");
        memd_real.calloc = resolve("calloc");
        memd_real.realloc = resolve("realloc");
        memd_real.memalign = resolve("memalign");
        memd_real.malloc_usable_size = resolve("malloc_usable_size");
        if (!memd_real.malloc || !memd_real.free || !memd_real.calloc || !memd_real.realloc ||
            !memd_real.memalign || !memd_real.malloc_usable_size) {
                static const char msg[] = "libmemd: cannot find the next allocator (dlsym RTLD_NEXT); aborting\n";
                trace_write(STDERR_FILENO, msg, sizeof(msg) - 1);
                abort();
        }
        atomic_store(&init_stage, 1);
        /* From here on, allocations made by the calls below (dlsym's error
         * buffer, atfork's list) are forwarded and counted on this slot. */
        thread_register(t);

        memd_start_ns = now_ns(CLOCK_MONOTONIC);
        detect_allocator();
        thread_set_fast(t);
        env_load(&memd_config);
        /* Countdowns drawn so far (by allocations inside this function) used
         * the zero rate of an unread environment: redraw them all. */
        atomic_fetch_add(&memd_config.rate_gen, 1);
        /* glibc's fastbins keep freed small chunks out of coalescing until a
         * full consolidation walk: that is what makes malloc_trim slow and
         * leaves RSS high after a cache is emptied.  Turning them off costs
         * nothing measurable (docs/libmemd.md); fastbins=1 keeps them, and a
         * user's own GLIBC_TUNABLES mxfast wins. */
        if (memd_alloc_kind == ALLOC_GLIBC && !memd_config.keep_fastbins) {
                const char *tun = getenv("GLIBC_TUNABLES");
                if (!tun || !strstr(tun, "mxfast"))
                        mallopt(M_MXFAST, 0);
        }
        if (pthread_key_create(&slot_key, slot_exiting) == 0) {
                slot_key_ok = true;
                pthread_setspecific(slot_key, t->slot);
        }
        pthread_atfork(atfork_prepare, atfork_parent, atfork_child);

        t->guard--;
        atomic_store(&init_tid, 0);
        atomic_store(&init_stage, 2);
        pthread_mutex_unlock(&init_lock);
}

__attribute__((constructor)) static void interpose_constructor(void) {
        struct thread_state *t = &memd_thread;

        interpose_init();
        t->guard++;
        sample_init();
        t->guard--;
        __atomic_store_n(&sampling_ready, true, __ATOMIC_RELEASE);
        agent_start();
        monitor_init();
}

/* ---- the sampled path ---- */

/* The countdown is never negative: a call hits it when its size reaches the
 * bytes left (an unsigned compare, so no size can wrap it), else it pays
 * them.  A thread's first call always hits (countdown 0): that registers
 * the thread, so the fast paths after it can count without checking. */
static inline bool countdown_hit(struct thread_state *t, size_t n) {
        if (unlikely(n >= (uint64_t) t->countdown))
                return true;
        t->countdown -= (int64_t) n;
        return false;
}

/* Draws the next countdown for this thread.  rate 1 means every allocation. */
static void countdown_reset(struct thread_state *t, uint64_t rate) {
        if (!t->inited) {
                t->rng = (uint64_t) now_ns(CLOCK_MONOTONIC) ^ ((uint64_t) (uintptr_t) t * 0x9E3779B97F4A7C15ULL);
                if (!t->rng)
                        t->rng = 1;
                t->inited = 1;
        }
        t->rate_gen = atomic_load_explicit(&memd_config.rate_gen, memory_order_relaxed);
        if (atomic_load_explicit(&init_stage, memory_order_relaxed) != 2)
                t->countdown = 0; /* the environment is not read yet: decide again next time */
        else if (rate == 0)
                t->countdown = 64 << 20; /* off: look again now and then */
        else if (rate == 1)
                t->countdown = 0;
        else
                t->countdown = sample_next_interval(&t->rng, rate);
}

/* Decides, on the slow path, whether this allocation is sampled: returns the
 * rate to sample at, or 0.  Also registers the thread and draws countdowns. */
static uint64_t slow_decide(struct thread_state *t) {
        uint64_t rate;

        if (atomic_load_explicit(&init_stage, memory_order_acquire) != 2)
                interpose_init();
        if (unlikely(!t->slot))
                thread_register(t);
        rate = atomic_load_explicit(&memd_config.profile_rate, memory_order_relaxed);
        if (t->guard || !__atomic_load_n(&sampling_ready, __ATOMIC_ACQUIRE) || !t->inited ||
            t->rate_gen != atomic_load_explicit(&memd_config.rate_gen, memory_order_relaxed)) {
                /* Not sampled: our own allocations, before the unwinder is
                 * loaded, or a fresh countdown (a thread's first allocation
                 * must not be sampled for being first). */
                countdown_reset(t, rate);
                if (rate == 1 && !t->guard && __atomic_load_n(&sampling_ready, __ATOMIC_ACQUIRE))
                        return 1;
                return 0;
        }
        countdown_reset(t, rate);
        return rate;
}

/* Allocates and counts a block that is not sampled. */
static void *plain_alloc(struct thread_state *t, size_t n, size_t align, bool zero) {
        void *p;

        if (align > 16)
                p = memd_real.memalign(align, n);
        else if (zero)
                p = memd_real.calloc(1, n);
        else
                p = memd_real.malloc(n);
        if (p)
                slot_alloc(t->slot, p, 0);
        return p;
}

/* Allocates a sampled block: header + user area, aligned to align (0 = malloc's). */
static _slowpath_ void *sampled_alloc(struct thread_state *t, size_t n, size_t align, bool zero, uint64_t rate) {
        uintptr_t pcs[PROFILE_MAX_DEPTH];
        size_t off = align > sizeof(struct block_header) ? align : sizeof(struct block_header);
        size_t total;
        struct block_header *h;
        uint32_t bucket;
        double weight;
        void *base, *p;
        int depth, saved;

        if (off > (1u << 30)) /* the header keeps the offset in 32 bits: such alignments are not sampled */
                return plain_alloc(t, n, align, zero);
        if (__builtin_add_overflow(n, off, &total)) {
                errno = ENOMEM;
                return NULL;
        }
        if (align > 16)
                base = memd_real.memalign(align, total);
        else if (zero)
                base = memd_real.calloc(1, total);
        else
                base = memd_real.malloc(total);
        if (!base)
                return NULL;
        p = (char *) base + off;
        h = header_of(p);
        if (memd_alloc_kind != ALLOC_GLIBC && sampled_set_add(p) < 0) {
                /* No room to remember it: hand out a plain block instead,
                 * and stop sampling (saying so once). */
                static bool warned;

                memd_real.free(base);
                if (!__atomic_exchange_n(&warned, true, __ATOMIC_RELAXED)) {
                        memd_set_profile_rate(0);
                        memd_warn("sampled-pointer table full (131072 live samples); sampling stopped");
                }
                return plain_alloc(t, n, align, zero);
        }

        saved = errno; /* a successful malloc leaves errno alone; the unwinder may not */
        t->guard++;
        weight = rate == 1 ? 1.0 : sample_weight(n, rate);
        depth = sample_stack(pcs, PROFILE_MAX_DEPTH);
        /* On trouble (table full) bucket.c stops sampling, once; this block
         * keeps its header so free() still finds the base. */
        if (bucket_record_alloc(pcs, depth > 0 ? (uint32_t) depth : 0, n, weight, &bucket) < 0)
                bucket = UINT32_MAX;
        t->guard--;
        h->size_bytes = n;
        h->bucket = bucket;
        h->offset = (uint32_t) off;
        h->weight = weight;
        h->tag = TAG_SAMPLED;

        slot_alloc(t->slot, base, off);
        errno = saved;
        return p;
}

/* Frees a block that carries our header: sampled or from the boot arena. */
static _slowpath_ void sampled_free(struct thread_state *t, void *p) {
        struct block_header *h = header_of(p);
        void *base;

        if (is_boot(p))
                return;
        base = (char *) p - h->offset;
        /* guard > 0: a signal handler freeing while this thread is inside
         * libmemd, maybe holding the table lock; the profile misses this
         * free rather than deadlock. */
        if (h->bucket != UINT32_MAX && !t->guard) {
                t->guard++;
                bucket_record_free(h->bucket, h->size_bytes, h->weight);
                t->guard--;
        }
        if (memd_alloc_kind != ALLOC_GLIBC)
                sampled_set_remove(p);
        slot_free(t->slot, base, h->offset);
        h->tag = 0; /* a double free then fails in the allocator, as without us */
        memd_real.free(base);
}

static uint64_t block_usable(void *p) {
        struct block_header *h = header_of(p);

        if (is_boot(p))
                return h->size_bytes;
        return usable_of((char *) p - h->offset) - h->offset;
}

/* The slow path of every allocating call: align 0 = malloc's alignment. */
static _slowpath_ void *alloc_slow(size_t n, size_t align, bool zero) {
        struct thread_state *t = &memd_thread;
        uint64_t rate;
        int saved = errno;

        if (unlikely(atomic_load_explicit(&init_stage, memory_order_acquire) != 2)) {
                interpose_init();
                /* Still nothing resolved: dlsym is allocating under us. */
                if (atomic_load_explicit(&init_stage, memory_order_acquire) == 0) {
                        void *p = boot_alloc(n, align);
                        if (p && zero)
                                memset(p, 0, n);
                        return p;
                }
        }
        rate = slow_decide(t);
        errno = saved;
        if (rate)
                return sampled_alloc(t, n, align, zero, rate);
        return plain_alloc(t, n, align, zero);
}

static _slowpath_ void free_slow(void *p) {
        struct thread_state *t = &memd_thread;
        int saved = errno;

        if (is_boot(p))
                return;
        if (atomic_load_explicit(&init_stage, memory_order_acquire) != 2)
                interpose_init();
        if (!t->slot)
                thread_register(t);
        errno = saved;
        if (is_sampled(p)) {
                sampled_free(t, p);
                return;
        }
        /* Not ours after all (a heap corruption tag, or a plain block under
         * another allocator): count it and let the allocator judge. */
        slot_free(t->slot, p, 0);
        memd_real.free(p);
}

/* ---- the exported malloc family ---- */

/* Fast path: one subtraction decides the sample; the counters go to this
 * thread's slot; usable sizes come from the glibc size field, already in
 * cache.  Everything else lives in the _slowpath_ functions above. */

/* Counts a fresh block off the fast path: another allocator, or a failed
 * call. */
static _cold_ void *count_alloc_cold(void *p) {
        if (p)
                slot_alloc(memd_thread.slot, p, 0);
        return p;
}

static inline void *count_alloc(void *p) {
        struct slot *s = memd_thread.fast;
        uint64_t w;

        if (unlikely(!p || !s))
                return count_alloc_cold(p);
        w = ((uint64_t *) p)[-1];
        s->mallocs++;
        s->alloc_bytes += w & ~(uint64_t) 7;
        if (unlikely(w & 2))
                count_mmapped(s, w & ~(uint64_t) 7, false);
        return p;
}

_export_ void *malloc(size_t n) {
        if (countdown_hit(&memd_thread, n))
                return alloc_slow(n, 0, false);
        return count_alloc(memd_real.malloc(n));
}

_export_ void free(void *p) {
        struct slot *s = memd_thread.fast;
        uint64_t w;

        if (unlikely(!p || !s)) {
                if (p)
                        free_slow(p);
                return;
        }
        w = ((uint64_t *) p)[-1];
        /* One test for our tag and for IS_MMAPPED (large blocks only). */
        if (unlikely(w & (TAG_BIT | 2))) {
                free_slow(p);
                return;
        }
        s->frees++;
        s->free_bytes += w & ~(uint64_t) 7;
        memd_real.free(p);
}

_export_ void *calloc(size_t nmemb, size_t size) {
        struct thread_state *t = &memd_thread;
        size_t n;

        if (__builtin_mul_overflow(nmemb, size, &n)) {
                errno = ENOMEM;
                return NULL;
        }
        if (countdown_hit(t, n))
                return alloc_slow(n, 0, true);
        return count_alloc(memd_real.calloc(nmemb, size));
}

static inline void *realloc_plain(struct thread_state *t, void *old, size_t n) {
        uint64_t old_bytes = acct_bytes(old);
        bool old_mmapped = is_mmapped(old);
        void *p = memd_real.realloc(old, n);

        if (likely(p != NULL)) {
                /* Counted as a free and a malloc, moved or not (docs/memstats.md). */
                t->slot->frees++;
                t->slot->free_bytes += old_bytes;
                if (old_mmapped)
                        count_mmapped(t->slot, old_bytes, true);
                slot_alloc(t->slot, p, 0);
        }
        return p;
}

/* A plain block whose new size hits the countdown: the new block goes
 * through the sampled path. */
static _slowpath_ void *realloc_resample(void *old, size_t n) {
        uint64_t old_usable = usable_of(old);
        void *p = alloc_slow(n, 0, false);

        if (!p)
                return NULL;
        memcpy(p, old, old_usable < n ? old_usable : n);
        free(old);
        return p;
}

static _slowpath_ void *realloc_slow(void *old, size_t n) {
        struct thread_state *t = &memd_thread;

        if (is_boot(old) || (atomic_load_explicit(&init_stage, memory_order_acquire) == 2 && t->slot && is_sampled(old))) {
                /* Move it: a block with our header is never realloc'ed in place. */
                uint64_t old_usable = block_usable(old);
                void *p = malloc(n);

                if (!p)
                        return NULL;
                memcpy(p, old, old_usable < n ? old_usable : n);
                free(old);
                return p;
        }
        if (atomic_load_explicit(&init_stage, memory_order_acquire) != 2)
                interpose_init();
        if (!t->slot)
                thread_register(t);
        if (is_sampled(old))
                return realloc_slow(old, n);
        if (countdown_hit(t, n))
                return realloc_resample(old, n);
        return realloc_plain(t, old, n);
}

_export_ void *realloc(void *old, size_t n) {
        struct thread_state *t = &memd_thread;

        if (!old)
                return malloc(n);
        if (n == 0) {
                free(old); /* glibc's realloc(p, 0) */
                return NULL;
        }
        if (unlikely(memd_alloc_kind != ALLOC_GLIBC || !t->slot || (((uint64_t *) old)[-1] & TAG_BIT)))
                return realloc_slow(old, n);
        if (countdown_hit(t, n))
                return realloc_resample(old, n);
        return realloc_plain(t, old, n);
}

_export_ void *reallocarray(void *old, size_t nmemb, size_t size) {
        size_t n;

        if (__builtin_mul_overflow(nmemb, size, &n)) {
                errno = ENOMEM;
                return NULL;
        }
        return realloc(old, n);
}

static void *aligned_common(size_t align, size_t n) {
        struct thread_state *t = &memd_thread;

        if (countdown_hit(t, n))
                return alloc_slow(n, align, false);
        return count_alloc(memd_real.memalign(align, n));
}

static inline bool power_of_two(size_t a) {
        return a && !(a & (a - 1));
}

_export_ int posix_memalign(void **ret, size_t align, size_t n) {
        void *p;
        int saved = errno;

        if (!power_of_two(align) || align % sizeof(void *))
                return EINVAL;
        p = aligned_common(align, n);
        if (!p) {
                int r = errno ? errno : ENOMEM;
                errno = saved;
                return r;
        }
        *ret = p;
        return 0;
}

_export_ void *memalign(size_t align, size_t n) {
        /* glibc rounds a non-power-of-two alignment up; so do we. */
        if (align > 1 && !power_of_two(align)) {
                size_t a = 1;
                while (a < align && a)
                        a <<= 1;
                if (!a) {
                        errno = EINVAL;
                        return NULL;
                }
                align = a;
        }
        return aligned_common(align, n);
}

/* glibc 2.36 serves aligned_alloc as memalign (any alignment, rounded up);
 * refusing what it accepts would break programs only under libmemd. */
_export_ void *aligned_alloc(size_t align, size_t n) {
        return memalign(align, n);
}

_export_ void *valloc(size_t n) {
        return aligned_common((size_t) sysconf(_SC_PAGESIZE), n);
}

_export_ void *pvalloc(size_t n) {
        size_t page = (size_t) sysconf(_SC_PAGESIZE);
        size_t rounded;

        if (__builtin_add_overflow(n, page - 1, &rounded)) {
                errno = ENOMEM;
                return NULL;
        }
        rounded &= ~(page - 1);
        return aligned_common(page, rounded ? rounded : page);
}

_export_ size_t malloc_usable_size(void *p) {
        if (!p)
                return 0;
        if (is_boot(p))
                return header_of(p)->size_bytes;
        if (atomic_load_explicit(&init_stage, memory_order_acquire) != 2)
                interpose_init();
        if (is_sampled(p))
                return block_usable(p);
        return usable_of(p);
}
