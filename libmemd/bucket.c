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

struct bucket {
        struct profile_record rec;
        uint64_t hash;
        uint32_t next;
};

static pthread_mutex_t bucket_lock = PTHREAD_MUTEX_INITIALIZER;
static struct bucket *buckets;
static uint32_t *bucket_index;
static uint32_t n_buckets;
static bool bucket_full;

static uint64_t stack_hash(const uintptr_t *pcs, uint32_t depth) {
        uint64_t h = 0xcbf29ce484222325ULL ^ depth;

        for (uint32_t i = 0; i < depth; i++) {
                h ^= pcs[i];
                h *= 0x100000001b3ULL;
                h ^= h >> 29;
        }
        return h;
}

static int bucket_alloc_tables(void) {
        void *m;

        if (buckets)
                return 0;
        m = mmap(NULL, BUCKET_MAX * sizeof(struct bucket), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED)
                return -errno;
        bucket_index = mmap(NULL, INDEX_SIZE * sizeof(uint32_t), PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (bucket_index == MAP_FAILED) {
                int r = -errno;
                munmap(m, BUCKET_MAX * sizeof(struct bucket));
                bucket_index = NULL;
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
        uint64_t h = stack_hash(pcs, depth);
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
        b->rec.alloc_count++;
        b->rec.alloc_bytes += size_bytes;
        b->rec.alloc_objects_est += weight;
        b->rec.alloc_bytes_est += weight * (double) size_bytes;
        *ret_idx = i;
out:
        pthread_mutex_unlock(&bucket_lock);
        return r;
}

void bucket_record_free(uint32_t idx, uint64_t size_bytes, double weight) {
        struct bucket *b;

        pthread_mutex_lock(&bucket_lock);
        if (idx < n_buckets) {
                b = &buckets[idx];
                b->rec.free_count++;
                b->rec.free_bytes += size_bytes;
                b->rec.free_objects_est += weight;
                b->rec.free_bytes_est += weight * (double) size_bytes;
        }
        pthread_mutex_unlock(&bucket_lock);
}

/* The application waits on the table's lock while a copy is taken, so the
 * lock covers only the figures (64 bytes a stack), copied into memory
 * faulted in beforehand: a stack never changes once recorded and buckets are
 * never moved, so the stacks are copied after the unlock.  (Mapping and
 * copying whole records under the lock stalled every allocating thread for
 * 22-58 ms a second at 10,000 stacks: tests/bench/run-heap-bench.sh.) */
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
        pthread_mutex_lock(&bucket_lock);
        n = n_buckets < room ? n_buckets : room;
        for (size_t i = 0; i < n; i++)
                memcpy(&out[i], &buckets[i].rec, offsetof(struct profile_record, depth));
        pthread_mutex_unlock(&bucket_lock);
        for (size_t i = 0; i < n; i++) {
                out[i].depth = buckets[i].rec.depth;
                memcpy(out[i].pcs, buckets[i].rec.pcs, out[i].depth * sizeof(uintptr_t));
        }
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
        return ((n * sizeof(struct bucket) + 4095) & ~4095ULL) + INDEX_SIZE * sizeof(uint32_t);
}

void bucket_atfork_prepare(void) {
        pthread_mutex_lock(&bucket_lock);
}

void bucket_atfork_parent(void) {
        pthread_mutex_unlock(&bucket_lock);
}

void bucket_atfork_child(void) {
        pthread_mutex_unlock(&bucket_lock);
}
