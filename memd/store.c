/* store.c - memd's copy of one process's profile: buckets keyed by stack, rebuilt from snapshots, advanced by deltas; and its mappings. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

/*
 * Records live in one dense array (so a profile can be handed to the
 * writers as it is), found through an open-addressing index of their
 * positions.  Only the pcs a stack has are kept: a record is
 * offsetof(pcs) + depth words, not the full 64.
 */

#define INDEX_EMPTY UINT32_MAX

void store_init(struct store *s) {
        memset(s, 0, sizeof(*s));
}

void store_free(struct store *s) {
        for (size_t i = 0; i < s->n; i++)
                free(s->recs[i]);
        free(s->recs);
        free(s->hashes);
        free(s->index);
        store_init(s);
}

void store_clear(struct store *s) {
        for (size_t i = 0; i < s->n; i++)
                free(s->recs[i]);
        s->n = 0;
        if (s->index)
                memset(s->index, 0xff, s->index_cap * sizeof(*s->index));
}

static int index_grow(struct store *s) {
        size_t cap = s->index_cap ? s->index_cap * 2 : 64;
        uint32_t *ix = malloc(cap * sizeof(*ix));

        if (!ix)
                return -ENOMEM;
        memset(ix, 0xff, cap * sizeof(*ix));
        for (size_t i = 0; i < s->n; i++) {
                size_t j = s->hashes[i] & (cap - 1);
                while (ix[j] != INDEX_EMPTY)
                        j = (j + 1) & (cap - 1);
                ix[j] = (uint32_t) i;
        }
        free(s->index);
        s->index = ix;
        s->index_cap = cap;
        return 0;
}

static struct profile_record *lookup(struct store *s, const struct profile_record *r, uint64_t h, size_t *ret_slot) {
        size_t j;

        if (!s->index_cap) {
                *ret_slot = 0;
                return NULL;
        }
        for (j = h & (s->index_cap - 1); s->index[j] != INDEX_EMPTY; j = (j + 1) & (s->index_cap - 1)) {
                struct profile_record *x = s->recs[s->index[j]];
                if (s->hashes[s->index[j]] == h && x->depth == r->depth &&
                    !memcmp(x->pcs, r->pcs, r->depth * sizeof(uintptr_t)))
                        return x;
        }
        *ret_slot = j;
        return NULL;
}

int store_add(struct store *s, const struct profile_record *r) {
        uint64_t h;
        struct profile_record *x;
        size_t slot, size;

        if (r->depth > PROFILE_MAX_DEPTH)
                return -EINVAL;
        h = profile_stack_hash(r->pcs, r->depth);
        x = lookup(s, r, h, &slot);
        if (!x) {
                if (s->n >= STORE_MAX_RECORDS)
                        return -ENOSPC;
                if ((s->n + 1) * 2 > s->index_cap) {
                        if (index_grow(s) < 0)
                                return -ENOMEM;
                        lookup(s, r, h, &slot);
                }
                if (s->n == s->cap) {
                        size_t cap = s->cap ? s->cap * 2 : 16;
                        struct profile_record **nr = realloc(s->recs, cap * sizeof(*nr));
                        uint64_t *nh;

                        if (!nr)
                                return -ENOMEM;
                        s->recs = nr;
                        nh = realloc(s->hashes, cap * sizeof(*nh));
                        if (!nh)
                                return -ENOMEM;
                        s->hashes = nh;
                        s->cap = cap;
                }
                size = offsetof(struct profile_record, pcs) + r->depth * sizeof(uintptr_t);
                x = calloc(1, size);
                if (!x)
                        return -ENOMEM;
                x->depth = r->depth;
                memcpy(x->pcs, r->pcs, r->depth * sizeof(uintptr_t));
                s->recs[s->n] = x;
                s->hashes[s->n] = h;
                s->index[slot] = (uint32_t) s->n;
                s->n++;
        }
        x->alloc_count += r->alloc_count;
        x->alloc_bytes += r->alloc_bytes;
        x->free_count += r->free_count;
        x->free_bytes += r->free_bytes;
        x->alloc_objects_est += r->alloc_objects_est;
        x->alloc_bytes_est += r->alloc_bytes_est;
        x->free_objects_est += r->free_objects_est;
        x->free_bytes_est += r->free_bytes_est;
        return 0;
}

void store_totals(const struct store *s, struct store_totals *t) {
        double ab = 0, ao = 0, fb = 0, fo = 0;

        memset(t, 0, sizeof(*t));
        for (size_t i = 0; i < s->n; i++) {
                const struct profile_record *x = s->recs[i];
                ab += x->alloc_bytes_est;
                ao += x->alloc_objects_est;
                fb += x->free_bytes_est;
                fo += x->free_objects_est;
        }
        t->buckets = s->n;
        t->alloc_bytes = (uint64_t) llround(ab);
        t->alloc_objects = (uint64_t) llround(ao);
        t->inuse_bytes = ab > fb ? (uint64_t) llround(ab - fb) : 0;
        t->inuse_objects = ao > fo ? (uint64_t) llround(ao - fo) : 0;
}

/* ---- mappings ---- */

void mappings_free(struct mappings *m) {
        for (size_t i = 0; i < m->n; i++)
                free(m->v[i].path);
        free(m->v);
        m->v = NULL;
        m->n = 0;
}

int mappings_set(struct mappings *m, const struct proto_mappings *in) {
        struct mapping *v = NULL;
        struct proto_mapping *tmp;
        size_t n = in->mappings.n;
        int r = 0;

        tmp = malloc(sizeof(*tmp));
        v = calloc(n ? n : 1, sizeof(*v));
        if (!tmp || !v) {
                free(tmp);
                free(v);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                r = proto_decode_mapping(&in->mappings.items[i], tmp);
                if (r < 0)
                        break;
                v[i].start = tmp->start;
                v[i].limit = tmp->limit;
                v[i].offset = tmp->offset;
                v[i].build_id_len = tmp->build_id_len;
                memcpy(v[i].build_id, tmp->build_id, tmp->build_id_len);
                v[i].path = strdup(tmp->path);
                if (!v[i].path) {
                        r = -ENOMEM;
                        break;
                }
        }
        free(tmp);
        if (r < 0) {
                struct mappings partial = { v, n };
                mappings_free(&partial);
                return r;
        }
        mappings_free(m);
        m->v = v;
        m->n = n;
        return 0;
}
