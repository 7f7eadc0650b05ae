/* test-memd-store.c - Check suite for memd/store.c: records keyed by stack, kept short, the record limit, totals, index growth, mappings. */
#include <check.h>
#include <errno.h>
#include <malloc.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "unit.h"

/* ---- helpers ------------------------------------------------------------- */

/* A stack no other seed gives (pcs[0] carries the seed), with figures that
 * say which seed they came from. */
static void make_rec(struct profile_record *r, uint32_t depth, uint64_t seed) {
        memset(r, 0, sizeof(*r));
        r->depth = depth;
        for (uint32_t i = 0; i < depth && i < PROFILE_MAX_DEPTH; i++)
                r->pcs[i] = (uintptr_t) (UINT64_C(0x7f0000000000) + seed * 0x10000 + i * 8);
        r->alloc_count = seed + 1;
        r->alloc_bytes = (seed + 1) * 64;
        r->free_count = seed / 2;
        r->free_bytes = (seed / 2) * 64;
        r->alloc_objects_est = (double) (seed + 1) * 2.5;
        r->alloc_bytes_est = (double) (seed + 1) * 160.0;
        r->free_objects_est = (double) (seed / 2) * 2.5;
        r->free_bytes_est = (double) (seed / 2) * 160.0;
}

/* The store's record of r's stack, or NULL (a linear scan: independent of
 * the index under test). */
static const struct profile_record *find(const struct store *s, const struct profile_record *r) {
        for (size_t i = 0; i < s->n; i++) {
                const struct profile_record *x = s->recs[i];
                if (x->depth == r->depth && !memcmp(x->pcs, r->pcs, r->depth * sizeof(uintptr_t)))
                        return x;
        }
        return NULL;
}

/* Figures of x are k times those of r. */
static void assert_figures_times(const struct profile_record *x, const struct profile_record *r, unsigned k) {
        ck_assert_uint_eq(x->alloc_count, k * r->alloc_count);
        ck_assert_uint_eq(x->alloc_bytes, k * r->alloc_bytes);
        ck_assert_uint_eq(x->free_count, k * r->free_count);
        ck_assert_uint_eq(x->free_bytes, k * r->free_bytes);
        ck_assert(x->alloc_objects_est == k * r->alloc_objects_est);
        ck_assert(x->alloc_bytes_est == k * r->alloc_bytes_est);
        ck_assert(x->free_objects_est == k * r->free_objects_est);
        ck_assert(x->free_bytes_est == k * r->free_bytes_est);
}

/* A copy of profile_stack_hash (profile.h, which store.c keys by), and its inverse, to build stacks whose
 * 64-bit hashes are *equal* (so lookups must compare depth and pcs).  The
 * tests check s->hashes to make sure the copy still matches store.c. */
#define H_BASIS UINT64_C(0xcbf29ce484222325)
#define H_PRIME UINT64_C(0x100000001b3)

static uint64_t h_step(uint64_t h, uint64_t pc) {
        h ^= pc;
        h *= H_PRIME;
        h ^= h >> 29;
        return h;
}

static uint64_t h_stack(const uintptr_t *pcs, uint32_t depth) {
        uint64_t h = H_BASIS ^ depth;

        for (uint32_t i = 0; i < depth; i++)
                h = h_step(h, pcs[i]);
        return h;
}

/* x such that (x * H_PRIME) ^ ((x * H_PRIME) >> 29) == y. */
static uint64_t h_unmix(uint64_t y) {
        uint64_t m = y ^ (y >> 29) ^ (y >> 58), inv = H_PRIME;

        for (int i = 0; i < 6; i++)
                inv *= 2 - H_PRIME * inv; /* Newton: the inverse of H_PRIME mod 2^64 */
        return m * inv;
}

/* Sets t->pcs[depth - 1] (depth >= 1) so t hashes to h. */
static void collide(struct profile_record *t, uint64_t h) {
        uint64_t prefix = H_BASIS ^ t->depth;

        for (uint32_t i = 0; i + 1 < t->depth; i++)
                prefix = h_step(prefix, t->pcs[i]);
        t->pcs[t->depth - 1] = (uintptr_t) (h_unmix(h) ^ prefix);
}

static uint64_t hash_of(const struct store *s, const struct profile_record *x) {
        for (size_t i = 0; i < s->n; i++)
                if (s->recs[i] == x)
                        return s->hashes[i];
        ck_abort_msg("record not in the store");
        return 0;
}

/* ---- records ------------------------------------------------------------- */

START_TEST(test_add_and_merge) {
        struct profile_record a, a2, b, a_short, a_rev, empty;
        struct store s;

        store_init(&s);
        ck_assert_uint_eq(s.n, 0);
        make_rec(&a, 3, 1);
        ck_assert_int_eq(store_add(&s, &a), 0);
        ck_assert_uint_eq(s.n, 1);
        assert_figures_times(find(&s, &a), &a, 1);

        /* The same stack again (a different buffer, the same pcs): one record, figures added. */
        a2 = a;
        ck_assert_int_eq(store_add(&s, &a2), 0);
        ck_assert_uint_eq(s.n, 1);
        assert_figures_times(find(&s, &a), &a, 2);

        /* Same pcs, shorter depth: a different stack. */
        a_short = a;
        a_short.depth = 2;
        ck_assert_int_eq(store_add(&s, &a_short), 0);
        ck_assert_uint_eq(s.n, 2);
        /* Same depth, other pcs (the same ones reversed): a different stack. */
        a_rev = a;
        a_rev.pcs[0] = a.pcs[2];
        a_rev.pcs[2] = a.pcs[0];
        ck_assert_int_eq(store_add(&s, &a_rev), 0);
        ck_assert_uint_eq(s.n, 3);
        /* One pc differs by one. */
        b = a;
        b.pcs[1]++;
        ck_assert_int_eq(store_add(&s, &b), 0);
        ck_assert_uint_eq(s.n, 4);
        /* An empty stack is a stack too. */
        make_rec(&empty, 0, 9);
        ck_assert_int_eq(store_add(&s, &empty), 0);
        ck_assert_int_eq(store_add(&s, &empty), 0);
        ck_assert_uint_eq(s.n, 5);

        assert_figures_times(find(&s, &a), &a, 2);
        assert_figures_times(find(&s, &a_short), &a_short, 1);
        assert_figures_times(find(&s, &a_rev), &a_rev, 1);
        assert_figures_times(find(&s, &b), &b, 1);
        assert_figures_times(find(&s, &empty), &empty, 2);
        ck_assert_ptr_ne(find(&s, &a), find(&s, &a_short));

        /* The pcs beyond depth in the caller's record are not part of the stack. */
        a2 = a;
        a2.pcs[3] = 0xdead;
        a2.pcs[63] = 0xbeef;
        ck_assert_int_eq(store_add(&s, &a2), 0);
        ck_assert_uint_eq(s.n, 5);
        assert_figures_times(find(&s, &a), &a, 3);

        store_free(&s);
        ck_assert_uint_eq(s.n, 0);
        ck_assert_ptr_null(s.recs);
        ck_assert_ptr_null(s.index);
        store_free(&s); /* twice is harmless */
}
END_TEST

START_TEST(test_depth_limit) {
        struct profile_record r;
        struct store s;

        store_init(&s);
        make_rec(&r, PROFILE_MAX_DEPTH, 1);
        ck_assert_int_eq(store_add(&s, &r), 0);
        ck_assert_uint_eq(find(&s, &r)->depth, PROFILE_MAX_DEPTH);
        r.depth = PROFILE_MAX_DEPTH + 1;
        ck_assert_int_eq(store_add(&s, &r), -EINVAL);
        r.depth = UINT32_MAX;
        ck_assert_int_eq(store_add(&s, &r), -EINVAL);
        ck_assert_uint_eq(s.n, 1);
        store_free(&s);
}
END_TEST

/* A record holds offsetof(pcs) + depth words, not the whole struct; a
 * lookup never reads past them (ASan watches the reads). */
START_TEST(test_records_short) {
        const size_t head = offsetof(struct profile_record, pcs);
        struct profile_record r;
        struct store s;

        store_init(&s);
        for (uint64_t k = 0; k < 4000; k++) {
                make_rec(&r, (uint32_t) (k % PROFILE_MAX_DEPTH) + 1, k);
                ck_assert_int_eq(store_add(&s, &r), 0);
        }
        ck_assert_uint_eq(s.n, 4000);
        for (size_t i = 0; i < s.n; i++) {
                const struct profile_record *x = s.recs[i];
                size_t want = head + x->depth * sizeof(uintptr_t);
                size_t got = malloc_usable_size((void *) x);

                ck_assert_uint_ge(got, want);
                ck_assert_msg(got < want + 32, "record of depth %u holds %zu bytes, wants %zu", x->depth, got, want);
                if (x->depth < PROFILE_MAX_DEPTH - 4)
                        ck_assert_uint_lt(got, sizeof(struct profile_record));
        }
        /* Merge every one (each lookup compares against short records). */
        for (uint64_t k = 0; k < 4000; k++) {
                make_rec(&r, (uint32_t) (k % PROFILE_MAX_DEPTH) + 1, k);
                ck_assert_int_eq(store_add(&s, &r), 0);
                assert_figures_times(find(&s, &r), &r, 2);
        }
        ck_assert_uint_eq(s.n, 4000);
        store_free(&s);
}
END_TEST

/* Stacks of every depth whose 64-bit hashes equal those of stacks of every
 * other depth: each lookup walks records of other depths with the same hash,
 * and must neither merge with them nor read past their pcs. */
START_TEST(test_hash_collisions) {
        static struct profile_record base[PROFILE_MAX_DEPTH + 1];
        struct profile_record t;
        struct store s;
        size_t n;

        store_init(&s);
        for (uint32_t d = 0; d <= PROFILE_MAX_DEPTH; d++) {
                make_rec(&base[d], d, 1000 + d);
                ck_assert_int_eq(store_add(&s, &base[d]), 0);
                ck_assert_uint_eq(hash_of(&s, find(&s, &base[d])), h_stack(base[d].pcs, d));
        }
        n = s.n;
        for (uint32_t d = 0; d <= PROFILE_MAX_DEPTH; d++) {
                uint64_t h = h_stack(base[d].pcs, d);

                for (uint32_t e = 1; e <= PROFILE_MAX_DEPTH; e++) {
                        /* One pc fixes a depth-1 stack's hash: only base[1] has it. */
                        if (e == d && d == 1)
                                continue;
                        make_rec(&t, e, 5000 + d * 100 + e);
                        collide(&t, h);
                        if (e == d) { /* same depth, not base[d] itself */
                                t.pcs[0] ^= 1;
                                collide(&t, h);
                        }
                        ck_assert_uint_eq(h_stack(t.pcs, e), h);
                        ck_assert_ptr_null(find(&s, &t));
                        ck_assert_int_eq(store_add(&s, &t), 0);
                        ck_assert_uint_eq(s.n, ++n);
                        ck_assert_msg(hash_of(&s, find(&s, &t)) == h,
                                      "profile_stack_hash changed: update h_step() here");
                        assert_figures_times(find(&s, &t), &t, 1);
                        /* Found again through the colliding chain. */
                        ck_assert_int_eq(store_add(&s, &t), 0);
                        ck_assert_uint_eq(s.n, n);
                        assert_figures_times(find(&s, &t), &t, 2);
                }
        }
        /* The originals were never merged into. */
        for (uint32_t d = 0; d <= PROFILE_MAX_DEPTH; d++) {
                assert_figures_times(find(&s, &base[d]), &base[d], 1);
                ck_assert_int_eq(store_add(&s, &base[d]), 0);
                assert_figures_times(find(&s, &base[d]), &base[d], 2);
        }
        ck_assert_uint_eq(s.n, n);
        store_free(&s);
}
END_TEST

/* 50,000 stacks, many alike (a shared prefix, one pc apart, or the same pcs
 * in another order; 2,000 with one and the same hash): the index grows, every
 * stack stays findable, no two share a record. */
START_TEST(test_index_growth) {
        const size_t N = 50000, SAME_HASH = 2000;
        struct profile_record r;
        struct store s;
        const uint64_t h0 = UINT64_C(0x1234567890abcdef);
        size_t used = 0;

        store_init(&s);
        for (size_t k = 0; k < N; k++) {
                memset(&r, 0, sizeof(r));
                r.depth = 4;
                if (k < SAME_HASH) {
                        r.pcs[0] = 0x400000;
                        r.pcs[1] = 0x500000 + k;
                        r.pcs[2] = 0x600000;
                        collide(&r, h0);
                } else {
                        r.pcs[0] = 0x400000;
                        r.pcs[1] = 0x400000 + (k & 7) * 8;
                        r.pcs[2] = 0x400000 + (k % 3) * 8;
                        r.pcs[3] = 0x400000 + k;
                        if (k & 1) { /* the same pcs in another order */
                                uintptr_t t = r.pcs[3];
                                r.pcs[3] = r.pcs[0] + 1;
                                r.pcs[0] = t;
                        }
                }
                r.alloc_count = k + 1;
                r.alloc_bytes_est = (double) k;
                ck_assert_int_eq(store_add(&s, &r), 0);
                ck_assert_uint_eq(s.n, k + 1);
        }
        ck_assert_uint_eq(s.hashes[0], h0);
        ck_assert_msg(s.hashes[SAME_HASH - 1] == h0, "profile_stack_hash changed: update h_step() here");
        /* A power of two, at most half full. */
        ck_assert_uint_eq(s.index_cap & (s.index_cap - 1), 0);
        ck_assert_uint_ge(s.index_cap, 2 * N);
        for (size_t j = 0; j < s.index_cap; j++)
                if (s.index[j] != UINT32_MAX) {
                        ck_assert_uint_lt(s.index[j], s.n);
                        used++;
                }
        ck_assert_uint_eq(used, N);
        /* Every stack again: merged into its own record (alloc_count says which). */
        for (size_t k = 0; k < N; k++) {
                ck_assert_uint_eq(s.recs[k]->alloc_count, k + 1);
                memcpy(&r, s.recs[k], offsetof(struct profile_record, pcs) + 4 * sizeof(uintptr_t));
                ck_assert_int_eq(store_add(&s, &r), 0);
                ck_assert_uint_eq(s.recs[k]->alloc_count, 2 * (k + 1));
        }
        ck_assert_uint_eq(s.n, N);
        store_free(&s);
}
END_TEST

START_TEST(test_record_limit) {
        struct profile_record r, first, last;
        struct store s;

        store_init(&s);
        for (uint64_t k = 0; k < STORE_MAX_RECORDS; k++) {
                make_rec(&r, 2, k);
                ck_assert_int_eq(store_add(&s, &r), 0);
        }
        ck_assert_uint_eq(s.n, STORE_MAX_RECORDS);
        make_rec(&r, 2, STORE_MAX_RECORDS);
        ck_assert_int_eq(store_add(&s, &r), -ENOSPC);
        make_rec(&r, 0, 1);
        ck_assert_int_eq(store_add(&s, &r), -ENOSPC);
        ck_assert_uint_eq(s.n, STORE_MAX_RECORDS);
        ck_assert_ptr_null(find(&s, &r));
        /* Stacks already held still merge. */
        make_rec(&first, 2, 0);
        make_rec(&last, 2, STORE_MAX_RECORDS - 1);
        ck_assert_int_eq(store_add(&s, &first), 0);
        ck_assert_int_eq(store_add(&s, &last), 0);
        ck_assert_uint_eq(s.n, STORE_MAX_RECORDS);
        assert_figures_times(find(&s, &first), &first, 2);
        assert_figures_times(find(&s, &last), &last, 2);
        /* A cleared store takes new stacks again. */
        store_clear(&s);
        ck_assert_int_eq(store_add(&s, &r), 0);
        ck_assert_uint_eq(s.n, 1);
        store_free(&s);
}
END_TEST

/* A snapshot's part 0 is store_clear + adds: afterwards only the new
 * figures count, old stacks are gone, the store is still usable. */
START_TEST(test_clear_then_add) {
        struct profile_record r, kept, fresh;
        struct store_totals t;
        struct store s;

        store_init(&s);
        store_clear(&s); /* an empty store, never used */
        ck_assert_uint_eq(s.n, 0);
        for (uint64_t k = 0; k < 300; k++) {
                make_rec(&r, 5, k);
                ck_assert_int_eq(store_add(&s, &r), 0);
        }
        s.generation = 7;
        store_clear(&s);
        ck_assert_uint_eq(s.n, 0);
        ck_assert_uint_eq(s.generation, 7); /* the caller's business */
        store_totals(&s, &t);
        ck_assert_uint_eq(t.buckets, 0);
        ck_assert_uint_eq(t.alloc_bytes, 0);
        make_rec(&r, 5, 3);
        ck_assert_ptr_null(find(&s, &r));

        make_rec(&kept, 5, 3);  /* was in the old table */
        make_rec(&fresh, 5, 1000);
        ck_assert_int_eq(store_add(&s, &kept), 0);
        ck_assert_int_eq(store_add(&s, &fresh), 0);
        ck_assert_uint_eq(s.n, 2);
        assert_figures_times(find(&s, &kept), &kept, 1); /* not added to the old figures */
        assert_figures_times(find(&s, &fresh), &fresh, 1);
        ck_assert_int_eq(store_add(&s, &kept), 0);
        ck_assert_uint_eq(s.n, 2);
        assert_figures_times(find(&s, &kept), &kept, 2);
        /* And again past the old size, so the index is rebuilt after a clear. */
        store_clear(&s);
        for (uint64_t k = 0; k < 1000; k++) {
                make_rec(&r, 5, k);
                ck_assert_int_eq(store_add(&s, &r), 0);
        }
        ck_assert_uint_eq(s.n, 1000);
        for (uint64_t k = 0; k < 1000; k++) {
                make_rec(&r, 5, k);
                assert_figures_times(find(&s, &r), &r, 1);
        }
        store_free(&s);
}
END_TEST

/* Adds a one-pc stack of seed with these estimates. */
static void add_est(struct store *s, uint64_t seed, double alloc_bytes, double free_bytes, double alloc_objects,
                    double free_objects) {
        struct profile_record r;

        make_rec(&r, 1, seed);
        r.alloc_bytes_est = alloc_bytes;
        r.free_bytes_est = free_bytes;
        r.alloc_objects_est = alloc_objects;
        r.free_objects_est = free_objects;
        ck_assert_int_eq(store_add(s, &r), 0);
}

static void assert_totals(const struct store *s, uint64_t buckets, uint64_t alloc_bytes, uint64_t inuse_bytes,
                          uint64_t alloc_objects, uint64_t inuse_objects) {
        struct store_totals t;

        store_totals(s, &t);
        ck_assert_uint_eq(t.buckets, buckets);
        ck_assert_uint_eq(t.alloc_bytes, alloc_bytes);
        ck_assert_uint_eq(t.inuse_bytes, inuse_bytes);
        ck_assert_uint_eq(t.alloc_objects, alloc_objects);
        ck_assert_uint_eq(t.inuse_objects, inuse_objects);
}

START_TEST(test_totals) {
        struct store s;

        store_init(&s);
        assert_totals(&s, 0, 0, 0, 0, 0);

        /* Estimates are summed, then rounded (half away from zero); in-use
         * is alloc - free of the sums, rounded once: bytes 10.625 and 7.25
         * (not round(10.625) - round(3.375) = 8), objects 2.5 and 2.0. */
        add_est(&s, 1, 10.375, 3.375, 1.25, 0);
        add_est(&s, 2, 0.25, 0, 1.25, 0.5);
        assert_totals(&s, 2, 11, 7, 3, 2);

        /* A record with more freed than allocated is netted against the
         * others: 10.625 - 8.375 = 2.25 bytes, 2.5 - 1.5 objects. */
        add_est(&s, 3, 0, 5, 0, 1);
        assert_totals(&s, 3, 11, 2, 3, 1);

        /* More freed than allocated overall (a delta's frees before its
         * allocations arrived): zero, never a wrapped huge number. */
        add_est(&s, 4, 0, 1e6, 0, 1e3);
        assert_totals(&s, 4, 11, 0, 3, 0);

        /* Large figures keep their magnitude. */
        store_clear(&s);
        add_est(&s, 5, 3e12, 1e12, 4e9, 0);
        add_est(&s, 5, 3e12, 1e12, 4e9, 0);
        assert_totals(&s, 1, UINT64_C(6000000000000), UINT64_C(4000000000000), UINT64_C(8000000000),
                      UINT64_C(8000000000));
        store_free(&s);
}
END_TEST

/* ---- mappings -------------------------------------------------------------- */

/* Packs m[0..n) as a MAPPINGS message and reads it back: the decoded view
 * points into *msg (the caller frees reader and message). */
static struct proto_reader *read_mappings(const struct proto_mapping *m, size_t n, struct proto_msg *msg,
                                          struct proto_mappings *ret) {
        struct proto_reader *r = NULL;
        msgpack_sbuffer sb;
        msgpack_packer pk;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        ck_assert_int_eq(proto_pack_mappings(&pk, 5, 0, m, n), 0);
        ck_assert_int_eq(proto_reader_new(&r), 0);
        proto_msg_init(msg);
        ck_assert_int_eq(proto_reader_feed(r, sb.data, sb.size), 0);
        msgpack_sbuffer_destroy(&sb); /* the reader keeps its own copy */
        ck_assert_int_eq(proto_reader_next(r, msg), 1);
        ck_assert_uint_eq(msg->type, PROTO_MSG_MAPPINGS);
        ck_assert_int_eq(proto_decode_mappings(msg, ret), 0);
        ck_assert_uint_eq(ret->mappings.n, n);
        return r;
}

START_TEST(test_mappings_set) {
        struct proto_mapping *in = calloc(3, sizeof(*in));
        struct mappings got = {};
        struct proto_mappings pm;
        struct proto_reader *r;
        struct proto_msg msg;

        ck_assert_ptr_nonnull(in);
        in[0] = (struct proto_mapping) { .start = 0x400000, .limit = 0x452000, .offset = 0x1000,
                                         .path = "/usr/bin/cache", .build_id_len = 20 };
        for (int i = 0; i < 20; i++)
                in[0].build_id[i] = (uint8_t) (0xa0 + i);
        in[1] = (struct proto_mapping) { .start = 0x7f0000001000, .limit = 0x7f0000002000, .offset = 0 };
        in[2] = (struct proto_mapping) { .start = 0x7f0000100000, .limit = 0x7f0000300000, .offset = 0x20000,
                                         .build_id_len = PROTO_MAX_BUILD_ID_BYTES };
        memset(in[2].path, 'p', PROTO_MAX_STRING_BYTES); /* the longest path allowed */
        in[2].path[0] = '/';
        for (unsigned i = 0; i < PROTO_MAX_BUILD_ID_BYTES; i++)
                in[2].build_id[i] = (uint8_t) (255 - i);

        r = read_mappings(in, 3, &msg, &pm);
        ck_assert_int_eq(mappings_set(&got, &pm), 0);
        /* The message goes away: what the store holds must be its own. */
        proto_msg_done(&msg);
        proto_reader_free(r);

        ck_assert_uint_eq(got.n, 3);
        for (size_t i = 0; i < 3; i++) {
                ck_assert_uint_eq(got.v[i].start, in[i].start);
                ck_assert_uint_eq(got.v[i].limit, in[i].limit);
                ck_assert_uint_eq(got.v[i].offset, in[i].offset);
                ck_assert_str_eq(got.v[i].path, in[i].path);
                ck_assert_uint_eq(got.v[i].build_id_len, in[i].build_id_len);
                ck_assert(memcmp(got.v[i].build_id, in[i].build_id, in[i].build_id_len) == 0);
        }
        ck_assert_uint_eq(strlen(got.v[2].path), PROTO_MAX_STRING_BYTES);
        ck_assert_str_eq(got.v[1].path, "");

        /* A new list replaces the old one (the old one is freed: LeakSanitizer). */
        in[0].start = 0x10000;
        in[0].limit = 0x20000;
        snprintf(in[0].path, sizeof(in[0].path), "/lib/libnew.so");
        in[0].build_id_len = 0;
        r = read_mappings(in, 1, &msg, &pm);
        ck_assert_int_eq(mappings_set(&got, &pm), 0);
        proto_msg_done(&msg);
        proto_reader_free(r);
        ck_assert_uint_eq(got.n, 1);
        ck_assert_uint_eq(got.v[0].start, 0x10000);
        ck_assert_uint_eq(got.v[0].limit, 0x20000);
        ck_assert_str_eq(got.v[0].path, "/lib/libnew.so");
        ck_assert_uint_eq(got.v[0].build_id_len, 0);

        /* An empty list is a list: nothing mapped. */
        r = read_mappings(in, 0, &msg, &pm);
        ck_assert_int_eq(mappings_set(&got, &pm), 0);
        proto_msg_done(&msg);
        proto_reader_free(r);
        ck_assert_uint_eq(got.n, 0);

        mappings_free(&got);
        ck_assert_uint_eq(got.n, 0);
        ck_assert_ptr_null(got.v);
        mappings_free(&got);
        free(in);
}
END_TEST

/* A list with a bad entry (not validated by the caller) fails whole: the
 * old list stays, nothing leaks. */
START_TEST(test_mappings_bad_entry) {
        struct proto_mapping *in = calloc(2, sizeof(*in));
        struct mappings got = {};
        struct proto_mappings pm, bad;
        struct proto_reader *r;
        struct proto_msg msg;
        msgpack_object items[3];
        msgpack_unpacked u;
        msgpack_sbuffer sb;
        msgpack_packer pk;

        ck_assert_ptr_nonnull(in);
        in[0] = (struct proto_mapping) { .start = 0x1000, .limit = 0x2000, .path = "/a" };
        in[1] = (struct proto_mapping) { .start = 0x3000, .limit = 0x4000, .path = "/b" };
        r = read_mappings(in, 2, &msg, &pm);
        ck_assert_int_eq(mappings_set(&got, &pm), 0);
        ck_assert_uint_eq(got.n, 2);

        /* Two good entries, then a map without "start". */
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str(&pk, 4);
        msgpack_pack_str_body(&pk, "path", 4);
        msgpack_pack_str(&pk, 2);
        msgpack_pack_str_body(&pk, "/c", 2);
        msgpack_unpacked_init(&u);
        ck_assert_int_eq(msgpack_unpack_next(&u, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
        items[0] = pm.mappings.items[0];
        items[1] = pm.mappings.items[1];
        items[2] = u.data;
        bad = (struct proto_mappings) { .mappings = { .items = items, .n = 3 } };
        ck_assert_int_eq(mappings_set(&got, &bad), -EBADMSG);
        ck_assert_uint_eq(got.n, 2);
        ck_assert_str_eq(got.v[0].path, "/a");
        ck_assert_str_eq(got.v[1].path, "/b");

        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&sb);
        proto_msg_done(&msg);
        proto_reader_free(r);
        mappings_free(&got);
        free(in);
}
END_TEST

static Suite *store_suite(void) {
        Suite *s = suite_create("memd-store");
        TCase *tc = tcase_create("records");

        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_add_and_merge);
        tcase_add_test(tc, test_depth_limit);
        tcase_add_test(tc, test_records_short);
        tcase_add_test(tc, test_hash_collisions);
        tcase_add_test(tc, test_index_growth);
        tcase_add_test(tc, test_record_limit);
        tcase_add_test(tc, test_clear_then_add);
        tcase_add_test(tc, test_totals);
        suite_add_tcase(s, tc);

        tc = tcase_create("mappings");
        tcase_add_test(tc, test_mappings_set);
        tcase_add_test(tc, test_mappings_bad_entry);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_main(store_suite(), "test-memd-store", false);
}
