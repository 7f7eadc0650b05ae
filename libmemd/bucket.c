/* bucket.c - the table of sampled stacks: one bucket per distinct stack, raw and weighted figures. */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

/*
 * Buckets live in one anonymous mapping reserved up front (MAP_NORESERVE, so
 * only the pages used are ever backed) and are never freed or moved: a
 * sampled block keeps its bucket's index in its header.  The hash index is
 * open chaining through `next`.  Everything is bounded; when the table is full
 * sampling stops and says so once.
 */
#define BUCKET_MAX (1u << 16)
#define INDEX_BITS 17
#define INDEX_SIZE (1u << INDEX_BITS)
#define NONE UINT32_MAX

/* A stack, immutable once recorded.  Its figures live apart, densely, in
 * counts[]: the agent copies all of them every second under the lock, and a
 * dense array is one quick memcpy where records 584 bytes apart were a cache
 * miss each (3 ms for 10,000 stacks, every allocating thread waiting). */
struct bucket {
        struct profile_record rec;      /* depth and pcs only; the figures are in counts[] */
        uint64_t hash;
        uint32_t next;
};

/* The leading figures of struct profile_record, same layout. */
struct counts {
        uint64_t alloc_count, alloc_bytes, free_count, free_bytes;
        double alloc_objects_est, alloc_bytes_est, free_objects_est, free_bytes_est;
};
_Static_assert(sizeof(struct counts) == offsetof(struct profile_record, depth), "counts mirror profile_record");

static pthread_mutex_t bucket_lock = PTHREAD_MUTEX_INITIALIZER;
static struct bucket *buckets;
static struct counts *counts;
static uint32_t *bucket_index;
static uint32_t n_buckets;
static bool bucket_full;

static int bucket_alloc_tables(void) {
        void *m;

        if (buckets)
                return 0;
        m = mmap(NULL, BUCKET_MAX * sizeof(struct bucket), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED)
                return -errno;
        counts = mmap(NULL, BUCKET_MAX * sizeof(struct counts), PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        bucket_index = counts == MAP_FAILED ? MAP_FAILED :
                mmap(NULL, INDEX_SIZE * sizeof(uint32_t), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (bucket_index == MAP_FAILED) {
                int r = -errno;
                if (counts != MAP_FAILED)
                        munmap(counts, BUCKET_MAX * sizeof(struct counts));
                munmap(m, BUCKET_MAX * sizeof(struct bucket));
                bucket_index = NULL;
                counts = NULL;
                return r;
        }
        memset(bucket_index, 0xff, INDEX_SIZE * sizeof(uint32_t));
        buckets = m;
        return 0;
}

static void stop_sampling(const char *why) {
        if (bucket_full)
                return;
        bucket_full = true;
        memd_set_profile_rate(0);
        memd_warn(why);
}

int bucket_record_alloc(const uintptr_t *pcs, uint32_t depth, uint64_t size_bytes, double weight, uint32_t *ret_idx) {
        uint64_t h = profile_stack_hash(pcs, depth);
        uint32_t i, slot = (uint32_t) (h >> (64 - INDEX_BITS));
        struct bucket *b;
        int r = 0;

        pthread_mutex_lock(&bucket_lock);
        if (bucket_alloc_tables() < 0) {
                stop_sampling("cannot map the sample table; sampling stopped");
                r = -ENOMEM;
                goto out;
        }
        for (i = bucket_index[slot]; i != NONE; i = buckets[i].next)
                if (buckets[i].hash == h && buckets[i].rec.depth == depth &&
                    !memcmp(buckets[i].rec.pcs, pcs, depth * sizeof(uintptr_t)))
                        break;
        if (i == NONE) {
                if (n_buckets >= BUCKET_MAX) {
                        stop_sampling("sample table full (65536 distinct stacks); sampling stopped");
                        r = -ENOSPC;
                        goto out;
                }
                i = n_buckets++;
                b = &buckets[i];
                b->hash = h;
                b->rec.depth = depth;
                memcpy(b->rec.pcs, pcs, depth * sizeof(uintptr_t));
                b->next = bucket_index[slot];
                bucket_index[slot] = i;
        }
        b = &buckets[i];
        counts[i].alloc_count++;
        counts[i].alloc_bytes += size_bytes;
        counts[i].alloc_objects_est += weight;
        counts[i].alloc_bytes_est += weight * (double) size_bytes;
        *ret_idx = i;
out:
        pthread_mutex_unlock(&bucket_lock);
        return r;
}

void bucket_record_free(uint32_t idx, uint64_t size_bytes, double weight) {
        pthread_mutex_lock(&bucket_lock);
        if (idx < n_buckets) {
                counts[idx].free_count++;
                counts[idx].free_bytes += size_bytes;
                counts[idx].free_objects_est += weight;
                counts[idx].free_bytes_est += weight * (double) size_bytes;
        }
        pthread_mutex_unlock(&bucket_lock);
}

/* Where the figures are copied under the lock: kept from one snapshot to
 * the next (BUCKET_MAX entries reserved, MAP_NORESERVE), and serialized by
 * stage_lock (the agent and the exit-time writer may both take snapshots). */
static pthread_mutex_t stage_lock = PTHREAD_MUTEX_INITIALIZER;
static struct counts *stage;

/* Touches every page of [p, p + len): written when `write`, else read.  The
 * first access to a page costs a page-table walk or, in a VM, an exit to
 * the hypervisor: the same memcpy of 10,000 stacks' figures (160 pages)
 * took 1.5-3 ms into a fresh MAP_POPULATE'd buffer on this project's VMs
 * and 0.1-0.4 ms between pages touched just before), so this is done
 * before the lock is taken, not under it. */
static void touch_pages(void *p, size_t len, bool write) {
        volatile char *c = p;

        for (size_t off = 0; off < len; off += 4096) {
                if (write)
                        c[off] = 0;
                else
                        (void) c[off];
        }
        if (len) {
                if (write)
                        c[len - 1] = 0;
                else
                        (void) c[len - 1];
        }
}

/* The application waits on the table's lock while a copy is taken, so the
 * lock covers one memcpy of the dense figures (64 bytes a stack) between
 * pages touched just before; the stacks, immutable once recorded in buckets
 * that never move, are copied after the unlock.  (Mapping and copying whole
 * records under the lock stalled every allocating thread for 22-58 ms a
 * second at 10,000 stacks; a memcpy into a freshly mapped buffer still took
 * 1.5-3 ms, most of it first touches of pages: tests/bench/run-heap-bench.sh
 * and docs/memd.md.) */
int bucket_snapshot(struct profile_record **ret_records, size_t *ret_n, size_t *ret_map_len) {
        struct profile_record *out;
        size_t n, room, len;

        room = __atomic_load_n(&n_buckets, __ATOMIC_RELAXED) + 256; /* it may grow meanwhile */
        if (room > BUCKET_MAX)
                room = BUCKET_MAX;
        len = room * sizeof(struct profile_record);
        out = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (out == MAP_FAILED)
                return -ENOMEM;
        pthread_mutex_lock(&stage_lock);
        if (!stage) {
                void *m = mmap(NULL, BUCKET_MAX * sizeof(struct counts), PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
                if (m == MAP_FAILED) {
                        pthread_mutex_unlock(&stage_lock);
                        munmap(out, len);
                        return -ENOMEM;
                }
                stage = m;
        }
        touch_pages(stage, room * sizeof(struct counts), true);
        n = __atomic_load_n(&n_buckets, __ATOMIC_RELAXED);
        if (counts && n)
                touch_pages(counts, (n < room ? n : room) * sizeof(struct counts), false);

        pthread_mutex_lock(&bucket_lock);
        n = n_buckets < room ? n_buckets : room;
        if (n)
                memcpy(stage, counts, n * sizeof(*stage));
        pthread_mutex_unlock(&bucket_lock);

        for (size_t i = 0; i < n; i++) {
                memcpy(&out[i], &stage[i], sizeof(*stage));
                out[i].depth = buckets[i].rec.depth;
                memcpy(out[i].pcs, buckets[i].rec.pcs, out[i].depth * sizeof(uintptr_t));
        }
        pthread_mutex_unlock(&stage_lock);
        *ret_records = out;
        *ret_n = n;
        *ret_map_len = len;
        return 0;
}

uint64_t bucket_sys_bytes(void) {
        uint64_t n = __atomic_load_n(&n_buckets, __ATOMIC_RELAXED);

        if (!buckets)
                return 0;
        /* Touched pages of the bucket array plus the index. */
        return ((n * sizeof(struct bucket) + 4095) & ~4095ULL) + ((n * sizeof(struct counts) + 4095) & ~4095ULL) +
               INDEX_SIZE * sizeof(uint32_t);
}

/* In bucket_snapshot's order: stage_lock, then bucket_lock. */
void bucket_atfork_prepare(void) {
        pthread_mutex_lock(&stage_lock);
        pthread_mutex_lock(&bucket_lock);
}

void bucket_atfork_parent(void) {
        pthread_mutex_unlock(&bucket_lock);
        pthread_mutex_unlock(&stage_lock);
}

void bucket_atfork_child(void) {
        pthread_mutex_unlock(&bucket_lock);
        pthread_mutex_unlock(&stage_lock);
}
