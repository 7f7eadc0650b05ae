/* test-profile.c - Check suite for profile.c: pprof protobuf, legacy text, folded, build-ids. */

#include <check.h>
#include <elf.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "profile.h"
#include "unit.h"

/* ---- return addresses inside this binary -------------------------------- */

static __attribute__((noinline)) uintptr_t return_address(void) {
        return (uintptr_t) __builtin_return_address(0);
}

/* The store after each call keeps it from becoming a tail call, so the
 * return address lands inside the named function; the different sinks keep
 * the compiler from folding the three identical functions into one. */
static volatile int sink_one, sink_two, sink_root;
static __attribute__((noinline)) uintptr_t site_leaf_one(void) {
        uintptr_t r = return_address();
        sink_one = 1;
        return r;
}

static __attribute__((noinline)) uintptr_t site_leaf_two(void) {
        uintptr_t r = return_address();
        sink_two = 1;
        return r;
}

static __attribute__((noinline)) uintptr_t site_root(void) {
        uintptr_t r = return_address();
        sink_root = 1;
        return r;
}

static uintptr_t pc_a, pc_b, pc_c;     /* return addresses: leaf one, leaf two, root */

/* Knows A and B (B without file:line), not C. */
static int fake_symbolize(uintptr_t pc, char *name, size_t name_len, char *where,
                          size_t where_len, void *ctx) {
        int *calls = ctx;

        if (calls)
                (*calls)++;
        if (pc == pc_a - 1) {
                snprintf(name, name_len, "site_leaf_one+0x5");
                snprintf(where, where_len, "test-profile.c:10");
                return 0;
        }
        if (pc == pc_b - 1) {
                snprintf(name, name_len, "site_leaf_two+0x7");
                where[0] = '\0';
                return 0;
        }
        return -ENOENT;
}

/* ---- helpers ------------------------------------------------------------ */

static char *read_all(const char *path, size_t *ret_len) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        size_t len = 0, cap = 4096;
        char *buf = malloc(cap + 1);

        ck_assert_int_ge(fd, 0);
        ck_assert_ptr_nonnull(buf);
        for (;;) {
                if (len == cap) {
                        cap *= 2;
                        buf = realloc(buf, cap + 1);
                        ck_assert_ptr_nonnull(buf);
                }
                ssize_t n = read(fd, buf + len, cap - len);
                ck_assert_int_ge(n, 0);
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        close(fd);
        buf[len] = '\0';
        *ret_len = len;
        return buf;
}

static char *self_maps(size_t *ret_len) {
        return read_all("/proc/self/maps", ret_len);
}

/* Where the profile files go: a fresh temp file, or, with
 * MEMD_TEST_PROFILE_DIR set, a kept file there (for checking by hand with
 * go tool pprof). */
static int open_out(const char *name, char *path, size_t path_len) {
        const char *dir = getenv("MEMD_TEST_PROFILE_DIR");
        int fd;

        if (dir && *dir) {
                snprintf(path, path_len, "%s/%s", dir, name);
                fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        } else {
                const char *tmp = getenv("TMPDIR");
                snprintf(path, path_len, "%s/test-profile-XXXXXX", tmp && *tmp ? tmp : "/tmp");
                fd = mkostemp(path, O_CLOEXEC);
        }
        ck_assert_int_ge(fd, 0);
        return fd;
}

static void done_out(int fd, const char *path) {
        const char *dir = getenv("MEMD_TEST_PROFILE_DIR");

        close(fd);
        if (!(dir && *dir))
                unlink(path);
}

static uint8_t *gunzip(const uint8_t *in, size_t in_len, size_t *ret_len) {
        z_stream z = { 0 };
        size_t cap = 1 << 16, len = 0;
        uint8_t *out = malloc(cap);
        int r;

        ck_assert_ptr_nonnull(out);
        ck_assert_int_eq(inflateInit2(&z, 15 + 16), Z_OK);     /* gzip only: the wrapper must be there */
        z.next_in = (Bytef *) in;
        z.avail_in = (uInt) in_len;
        do {
                if (len == cap) {
                        cap *= 2;
                        out = realloc(out, cap);
                        ck_assert_ptr_nonnull(out);
                }
                z.next_out = out + len;
                z.avail_out = (uInt) (cap - len);
                r = inflate(&z, Z_NO_FLUSH);
                ck_assert(r == Z_OK || r == Z_STREAM_END);
                len = cap - z.avail_out;
        } while (r != Z_STREAM_END);
        ck_assert_uint_eq(z.avail_in, 0);
        inflateEnd(&z);
        *ret_len = len;
        return out;
}

static void hex(char *dst, const uint8_t *src, size_t n) {
        for (size_t i = 0; i < n; i++)
                sprintf(dst + 2 * i, "%02x", src[i]);
        dst[2 * n] = '\0';
}

/* ---- a small protobuf wire-format walker -------------------------------- */

/* Check's ck_assert_* report every passing assertion to the parent process;
 * in the decoder's and the stress test's inner loops that costs seconds. */
#define REQUIRE(x) do { if (!(x)) ck_abort_msg("%s:%d: failed: %s", __FILE__, __LINE__, #x); } while (0)

struct field {
        uint32_t num;
        unsigned wire;
        uint64_t v;             /* varint value */
        const uint8_t *data;    /* length-delimited body */
        size_t len;
};

static bool rd_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
        uint64_t r = 0;

        for (int shift = 0; shift < 64; shift += 7) {
                if (*p >= end)
                        return false;
                uint8_t b = *(*p)++;
                r |= (uint64_t) (b & 0x7f) << shift;
                if (!(b & 0x80)) {
                        *v = r;
                        return true;
                }
        }
        return false;
}

/* Next field of [*p, end); false at the end.  Fails the test on bad wire data. */
static bool rd_field(const uint8_t **p, const uint8_t *end, struct field *f) {
        uint64_t key;

        if (*p >= end)
                return false;
        REQUIRE(rd_varint(p, end, &key));
        f->num = (uint32_t) (key >> 3);
        f->wire = key & 7;
        REQUIRE((f->num) != (0));
        if (f->wire == 0) {
                REQUIRE(rd_varint(p, end, &f->v));
        } else if (f->wire == 2) {
                REQUIRE(rd_varint(p, end, &f->v));
                REQUIRE((f->v) <= ((uint64_t) (end - *p)));
                f->data = *p;
                f->len = f->v;
                *p += f->len;
        } else
                ck_abort_msg("unexpected wire type %u", f->wire);
        return true;
}

/* A varint field that may be packed or not: appends to v[*n]. */
static void rd_repeated(const struct field *f, uint64_t *v, size_t *n, size_t max) {
        if (f->wire == 0) {
                REQUIRE((*n) < (max));
                v[(*n)++] = f->v;
                return;
        }
        const uint8_t *p = f->data, *end = f->data + f->len;
        while (p < end) {
                REQUIRE((*n) < (max));
                REQUIRE(rd_varint(&p, end, &v[(*n)++]));
        }
}

#define MAXN 8192

struct pv_type { uint64_t type, unit; };
struct p_sample { uint64_t loc[PROFILE_MAX_DEPTH]; size_t n_loc; uint64_t val[8]; size_t n_val; };
struct p_mapping { uint64_t id, start, limit, offset, filename, build_id; };
struct p_location { uint64_t id, mapping_id, address, function_id, line; size_t n_line; };
struct p_function { uint64_t id, name, system_name, filename; };

struct decoded {
        struct pv_type sample_type[8];
        size_t n_sample_type;
        struct p_sample *sample;
        size_t n_sample;
        struct p_mapping mapping[512];
        size_t n_mapping;
        struct p_location *location;
        size_t n_location;
        struct p_function *function;
        size_t n_function;
        char **str;
        size_t n_str;
        uint64_t time_nanos, period, default_sample_type;
        struct pv_type period_type;
        uint64_t comment[8];
        size_t n_comment;
};

static struct pv_type rd_value_type(const struct field *f) {
        struct pv_type t = { 0 };
        const uint8_t *p = f->data, *end = f->data + f->len;
        struct field g;

        REQUIRE((f->wire) == (2));
        while (rd_field(&p, end, &g)) {
                if (g.num == 1)
                        t.type = g.v;
                else if (g.num == 2)
                        t.unit = g.v;
        }
        return t;
}

static struct decoded *decode(const uint8_t *buf, size_t len) {
        struct decoded *d = calloc(1, sizeof(*d));
        const uint8_t *p = buf, *end = buf + len;
        struct field f, g;

        ck_assert_ptr_nonnull(d);
        d->sample = calloc(MAXN, sizeof(*d->sample));
        d->location = calloc(MAXN * 8, sizeof(*d->location));
        d->function = calloc(MAXN * 8, sizeof(*d->function));
        d->str = calloc(MAXN * 8, sizeof(*d->str));
        REQUIRE(d->sample && d->location && d->function && d->str);

        while (rd_field(&p, end, &f)) {
                const uint8_t *q = f.data, *qend = f.data + f.len;
                switch (f.num) {
                case 1:
                        REQUIRE((d->n_sample_type) < (8));
                        d->sample_type[d->n_sample_type++] = rd_value_type(&f);
                        break;
                case 2: {
                        REQUIRE((d->n_sample) < (MAXN));
                        struct p_sample *s = &d->sample[d->n_sample++];
                        while (rd_field(&q, qend, &g)) {
                                if (g.num == 1)
                                        rd_repeated(&g, s->loc, &s->n_loc, PROFILE_MAX_DEPTH);
                                else if (g.num == 2)
                                        rd_repeated(&g, s->val, &s->n_val, 8);
                        }
                        break;
                }
                case 3: {
                        REQUIRE((d->n_mapping) < (512));
                        struct p_mapping *m = &d->mapping[d->n_mapping++];
                        while (rd_field(&q, qend, &g)) {
                                switch (g.num) {
                                case 1: m->id = g.v; break;
                                case 2: m->start = g.v; break;
                                case 3: m->limit = g.v; break;
                                case 4: m->offset = g.v; break;
                                case 5: m->filename = g.v; break;
                                case 6: m->build_id = g.v; break;
                                }
                        }
                        break;
                }
                case 4: {
                        REQUIRE((d->n_location) < (MAXN * 8));
                        struct p_location *l = &d->location[d->n_location++];
                        while (rd_field(&q, qend, &g)) {
                                switch (g.num) {
                                case 1: l->id = g.v; break;
                                case 2: l->mapping_id = g.v; break;
                                case 3: l->address = g.v; break;
                                case 4: {
                                        const uint8_t *r = g.data, *rend = g.data + g.len;
                                        struct field h;
                                        l->n_line++;
                                        while (rd_field(&r, rend, &h)) {
                                                if (h.num == 1)
                                                        l->function_id = h.v;
                                                else if (h.num == 2)
                                                        l->line = h.v;
                                        }
                                        break;
                                }
                                }
                        }
                        break;
                }
                case 5: {
                        REQUIRE((d->n_function) < (MAXN * 8));
                        struct p_function *fn = &d->function[d->n_function++];
                        while (rd_field(&q, qend, &g)) {
                                switch (g.num) {
                                case 1: fn->id = g.v; break;
                                case 2: fn->name = g.v; break;
                                case 3: fn->system_name = g.v; break;
                                case 4: fn->filename = g.v; break;
                                }
                        }
                        break;
                }
                case 6:
                        REQUIRE((f.wire) == (2));
                        REQUIRE((d->n_str) < (MAXN * 8));
                        d->str[d->n_str] = strndup((const char *) f.data, f.len);
                        REQUIRE((strlen(d->str[d->n_str])) == (f.len));
                        d->n_str++;
                        break;
                case 9: d->time_nanos = f.v; break;
                case 11: d->period_type = rd_value_type(&f); break;
                case 12: d->period = f.v; break;
                case 13: rd_repeated(&f, d->comment, &d->n_comment, 8); break;
                case 14: d->default_sample_type = f.v; break;
                default:
                        ck_abort_msg("unexpected Profile field %u", f.num);
                }
        }
        return d;
}

static void decoded_free(struct decoded *d) {
        for (size_t i = 0; i < d->n_str; i++)
                free(d->str[i]);
        free(d->str);
        free(d->sample);
        free(d->location);
        free(d->function);
        free(d);
}

static const char *S(const struct decoded *d, uint64_t i) {
        REQUIRE((i) < (d->n_str));
        return d->str[i];
}

static const struct p_location *loc_by_id(const struct decoded *d, uint64_t id) {
        for (size_t i = 0; i < d->n_location; i++)
                if (d->location[i].id == id)
                        return &d->location[i];
        ck_abort_msg("no location %" PRIu64, id);
        return NULL;
}

static const struct p_function *func_by_id(const struct decoded *d, uint64_t id) {
        for (size_t i = 0; i < d->n_function; i++)
                if (d->function[i].id == id)
                        return &d->function[i];
        ck_abort_msg("no function %" PRIu64, id);
        return NULL;
}

static const struct p_mapping *map_by_id(const struct decoded *d, uint64_t id) {
        for (size_t i = 0; i < d->n_mapping; i++)
                if (d->mapping[i].id == id)
                        return &d->mapping[i];
        ck_abort_msg("no mapping %" PRIu64, id);
        return NULL;
}

static char *maps;
static size_t maps_len;

static bool maps_has_exec(uint64_t start, uint64_t limit, uint64_t offset) {
        for (const char *l = maps; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
                unsigned long long s, e, off;
                char perms[8];
                if (sscanf(l, "%llx-%llx %7s %llx", &s, &e, perms, &off) == 4 &&
                    s == start && e == limit && off == offset)
                        return strchr(perms, 'x') != NULL;
        }
        return false;
}

static struct decoded *write_and_decode(const struct profile *p, const char *keep_name) {
        char path[PATH_MAX];
        int fd = open_out(keep_name, path, sizeof(path));
        size_t zlen, len;

        ck_assert_int_eq(profile_write_pprof(fd, p), 0);
        uint8_t *z = (uint8_t *) read_all(path, &zlen);
        ck_assert_uint_ge(zlen, 18);
        ck_assert_uint_eq(z[0], 0x1f);  /* gzip magic */
        ck_assert_uint_eq(z[1], 0x8b);
        uint8_t *raw = gunzip(z, zlen, &len);
        struct decoded *d = decode(raw, len);
        free(raw);
        free(z);
        done_out(fd, path);
        return d;
}

/* ---- the sample profile -------------------------------------------------- */

static struct profile_record recs[4];
static struct memd_memstats stats;


static void setup(void) {
        pc_a = site_leaf_one();
        pc_b = site_leaf_two();
        pc_c = site_root();
        maps = self_maps(&maps_len);

        memset(recs, 0, sizeof(recs));
        recs[0] = (struct profile_record) {
                .alloc_count = 10, .alloc_bytes = 1000, .free_count = 4, .free_bytes = 400,
                .alloc_objects_est = 20.4, .alloc_bytes_est = 2040.6,
                .free_objects_est = 8.2, .free_bytes_est = 820.3,
                .depth = 2, .pcs = { pc_a, pc_c },
        };
        recs[1] = (struct profile_record) {
                .alloc_count = 3, .alloc_bytes = 3000,
                .alloc_objects_est = 3.0, .alloc_bytes_est = 3000.0,
                .depth = 2, .pcs = { pc_b, pc_c },
        };
        recs[2] = (struct profile_record) {     /* no stack: skipped by every writer */
                .alloc_count = 7, .alloc_bytes = 700,
                .alloc_objects_est = 7, .alloc_bytes_est = 700,
                .depth = 0,
        };
        recs[3] = (struct profile_record) {     /* all freed */
                .alloc_count = 5, .alloc_bytes = 500, .free_count = 5, .free_bytes = 500,
                .alloc_objects_est = 5.5, .alloc_bytes_est = 550.5,
                .free_objects_est = 5.5, .free_bytes_est = 550.5,
                .depth = 3, .pcs = { pc_a, pc_b, pc_c },
        };

        memset(&stats, 0, sizeof(stats));
        stats.Alloc = 1111;
        stats.TotalAlloc = 2222;
        stats.Sys = 3333;
        stats.Mallocs = 44;
        stats.Frees = 33;
        stats.HeapAlloc = 1111;
        stats.HeapSys = 5555;
        stats.HeapIdle = 666;
        stats.HeapInuse = 4889;
        stats.HeapReleased = 77;
        stats.HeapObjects = 11;
        stats.BuckHashSys = 88;
        stats.NextGC = 99;
        stats.LastGC = 1700000000000000000ULL;
        stats.PauseTotalNs = 300;
        stats.PauseNs[0] = 100;
        stats.PauseNs[1] = 200;
        stats.PauseEnd[0] = 10;
        stats.PauseEnd[1] = 20;
        stats.NumGC = 2;
        stats.NumForcedGC = 1;
        stats.GCCPUFraction = 0.0123;
        stats.RSS = 123456;
        stats.RssAnon = 65432;
        stats.LazyFree = 5;
        stats.Threads = 3;
}

static void teardown(void) {
        free(maps);
        maps = NULL;
}

static struct profile sample_profile(int *calls) {
        return (struct profile) {
                .records = recs,
                .n_records = 4,
                .rate_bytes = 524288,
                .maps_text = maps,
                .maps_len = maps_len,
                .root = NULL,
                .stats = &stats,
                .time_ns = 1700000000123456789LL,
                .symbolize = fake_symbolize,
                .symbolize_ctx = calls,
        };
}

/* ---- pprof ---------------------------------------------------------------- */

START_TEST(test_pprof_fields) {
        int calls = 0;
        struct profile p = sample_profile(&calls);
        struct decoded *d = write_and_decode(&p, "profile.pb.gz");
        static const char *const types[4][2] = {
                { "alloc_objects", "count" }, { "alloc_space", "bytes" },
                { "inuse_objects", "count" }, { "inuse_space", "bytes" },
        };

        ck_assert_uint_ge(d->n_str, 1);
        ck_assert_str_eq(d->str[0], "");
        ck_assert_uint_eq(d->n_sample_type, 4);
        for (int i = 0; i < 4; i++) {
                ck_assert_str_eq(S(d, d->sample_type[i].type), types[i][0]);
                ck_assert_str_eq(S(d, d->sample_type[i].unit), types[i][1]);
        }
        ck_assert_str_eq(S(d, d->period_type.type), "space");
        ck_assert_str_eq(S(d, d->period_type.unit), "bytes");
        ck_assert_uint_eq(d->period, 524288);
        ck_assert_str_eq(S(d, d->default_sample_type), "inuse_space");
        ck_assert_uint_eq(d->time_nanos, 1700000000123456789ULL);
        ck_assert_uint_eq(d->n_comment, 1);
        ck_assert_str_eq(S(d, d->comment[0]), "memd heap profile");

        /* One sample per record with a stack, in record order, estimates rounded. */
        static const uint64_t want[3][4] = {
                { 20, 2041, 12, 1220 },
                { 3, 3000, 3, 3000 },
                { 6, 551, 0, 0 },
        };
        const size_t rec_of[3] = { 0, 1, 3 };
        ck_assert_uint_eq(d->n_sample, 3);
        for (size_t i = 0; i < 3; i++) {
                const struct p_sample *s = &d->sample[i];
                const struct profile_record *r = &recs[rec_of[i]];
                ck_assert_uint_eq(s->n_val, 4);
                for (int k = 0; k < 4; k++)
                        ck_assert_uint_eq(s->val[k], want[i][k]);
                ck_assert_uint_eq(s->n_loc, r->depth);
                for (size_t k = 0; k < s->n_loc; k++) {
                        const struct p_location *l = loc_by_id(d, s->loc[k]);
                        ck_assert_uint_eq(l->address, r->pcs[k] - 1);   /* leaf first, call PC */
                }
        }

        /* One location per distinct pc. */
        ck_assert_uint_eq(d->n_location, 3);
        for (size_t i = 0; i < d->n_location; i++)
                for (size_t j = i + 1; j < d->n_location; j++) {
                        ck_assert_uint_ne(d->location[i].id, d->location[j].id);
                        ck_assert_uint_ne(d->location[i].address, d->location[j].address);
                }
        ck_assert_int_eq(calls, 3);     /* each location symbolized once */

        /* Mappings: only executable file-backed ones; ours is the first. */
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        ck_assert_int_gt(n, 0);
        exe[n] = '\0';
        uint8_t id[64];
        char id_hex[129];
        ssize_t id_len = profile_read_build_id("/proc/self/exe", id, sizeof(id));
        ck_assert_int_gt(id_len, 0);
        hex(id_hex, id, (size_t) id_len);

        ck_assert_uint_ge(d->n_mapping, 1);
        ck_assert_uint_eq(d->mapping[0].id, 1);
        ck_assert_str_eq(S(d, d->mapping[0].filename), exe);
        for (size_t i = 0; i < d->n_mapping; i++) {
                const struct p_mapping *m = &d->mapping[i];
                ck_assert_uint_eq(m->id, i + 1);
                ck_assert_uint_lt(m->start, m->limit);
                ck_assert_int_eq(S(d, m->filename)[0], '/');
                ck_assert_msg(maps_has_exec(m->start, m->limit, m->offset),
                              "mapping %" PRIx64 "-%" PRIx64 " not an executable maps line",
                              m->start, m->limit);
        }

        for (size_t i = 0; i < d->n_location; i++) {
                const struct p_location *l = &d->location[i];
                ck_assert_uint_ne(l->mapping_id, 0);
                const struct p_mapping *m = map_by_id(d, l->mapping_id);
                ck_assert(l->address >= m->start && l->address < m->limit);
                ck_assert_str_eq(S(d, m->filename), exe);
                ck_assert_str_eq(S(d, m->build_id), id_hex);
                ck_assert_uint_eq(strlen(S(d, m->build_id)), 2 * (size_t) id_len);

                /* Names from the symbolizer ride along as functions. */
                if (l->address == pc_a - 1) {
                        ck_assert_uint_eq(l->n_line, 1);
                        const struct p_function *f = func_by_id(d, l->function_id);
                        ck_assert_str_eq(S(d, f->name), "site_leaf_one");
                        ck_assert_str_eq(S(d, f->system_name), "site_leaf_one");
                        ck_assert_str_eq(S(d, f->filename), "test-profile.c");
                        ck_assert_uint_eq(l->line, 10);
                } else if (l->address == pc_b - 1) {
                        ck_assert_uint_eq(l->n_line, 1);
                        const struct p_function *f = func_by_id(d, l->function_id);
                        ck_assert_str_eq(S(d, f->name), "site_leaf_two");
                        ck_assert_str_eq(S(d, f->filename), "");
                        ck_assert_uint_eq(l->line, 0);
                } else {
                        ck_assert_uint_eq(l->address, pc_c - 1);
                        ck_assert_uint_eq(l->n_line, 0);
                }
        }
        ck_assert_uint_eq(d->n_function, 2);
        decoded_free(d);
}
END_TEST

START_TEST(test_pprof_no_symbolizer_no_maps) {
        struct profile_record r = {
                .alloc_count = 1, .alloc_bytes = 64, .alloc_objects_est = 8192.5,
                .alloc_bytes_est = 524288.4, .depth = 2, .pcs = { 0x1001, 0x2001 },
        };
        struct profile p = { .records = &r, .n_records = 1, .rate_bytes = 1 };
        struct decoded *d = write_and_decode(&p, "unmapped.pb.gz");

        ck_assert_str_eq(d->str[0], "");
        ck_assert_uint_eq(d->n_mapping, 0);
        ck_assert_uint_eq(d->n_function, 0);
        ck_assert_uint_eq(d->time_nanos, 0);
        ck_assert_uint_eq(d->period, 1);
        ck_assert_uint_eq(d->n_sample, 1);
        ck_assert_uint_eq(d->sample[0].val[0], 8193);
        ck_assert_uint_eq(d->sample[0].val[1], 524288);
        ck_assert_uint_eq(d->sample[0].val[2], 8193);
        ck_assert_uint_eq(d->sample[0].val[3], 524288);
        ck_assert_uint_eq(d->n_location, 2);
        ck_assert_uint_eq(loc_by_id(d, d->sample[0].loc[0])->address, 0x1000);
        ck_assert_uint_eq(loc_by_id(d, d->sample[0].loc[1])->address, 0x2000);
        ck_assert_uint_eq(d->location[0].mapping_id, 0);
        decoded_free(d);
}
END_TEST

static int many_symbolize(uintptr_t pc, char *name, size_t name_len, char *where,
                          size_t where_len, void *ctx) {
        (void) ctx;
        snprintf(name, name_len, "fn_%" PRIxPTR "+0x1", pc);
        snprintf(where, where_len, "file_%" PRIuPTR ".c:%" PRIuPTR, pc % 97, pc % 1000);
        return 0;
}

/* Enough distinct pcs and strings to grow every table several times. */
START_TEST(test_pprof_many) {
        const size_t n = 3000;
        struct profile_record *r = calloc(n, sizeof(*r));

        ck_assert_ptr_nonnull(r);
        for (size_t i = 0; i < n; i++) {
                r[i].alloc_count = i + 1;
                r[i].alloc_bytes = (i + 1) * 16;
                r[i].alloc_objects_est = (double) (i + 1);
                r[i].alloc_bytes_est = (double) (i + 1) * 16;
                r[i].depth = PROFILE_MAX_DEPTH;
                for (size_t k = 0; k < PROFILE_MAX_DEPTH; k++)
                        r[i].pcs[k] = 0x400000 + ((i * 7 + k * 131) % 20000) * 4 + 1;
        }
        struct profile p = { .records = r, .n_records = n, .rate_bytes = 4096,
                             .symbolize = many_symbolize };
        struct decoded *d = write_and_decode(&p, "many.pb.gz");

        ck_assert_uint_eq(d->n_sample, n);
        for (size_t i = 0; i < n; i++) {
                REQUIRE(d->sample[i].n_loc == PROFILE_MAX_DEPTH);
                REQUIRE(d->sample[i].val[1] == (i + 1) * 16);
        }
        /* Locations are numbered 1..N in order, so the id indexes the array. */
        for (size_t i = 0; i < d->n_location; i++)
                REQUIRE(d->location[i].id == i + 1);
        for (size_t i = 0; i < n; i += 97)
                for (size_t k = 0; k < PROFILE_MAX_DEPTH; k++) {
                        const struct p_location *l = &d->location[d->sample[i].loc[k] - 1];
                        REQUIRE(l->address == r[i].pcs[k] - 1);
                        REQUIRE(l->function_id > 0 && l->function_id <= d->n_function);
                        const struct p_function *f = &d->function[l->function_id - 1];
                        REQUIRE(f->id == l->function_id);
                        char want[64];
                        snprintf(want, sizeof(want), "fn_%" PRIxPTR, (uintptr_t) l->address);
                        REQUIRE(f->name < d->n_str && strcmp(d->str[f->name], want) == 0);
                        REQUIRE(l->line == l->address % 1000);
                }
        /* Interned: no string twice. */
        for (size_t i = 0; i < d->n_str; i += 37)
                for (size_t j = i + 1; j < d->n_str; j++)
                        REQUIRE(strcmp(d->str[i], d->str[j]) != 0);
        decoded_free(d);
        free(r);
}
END_TEST

/* ---- text ----------------------------------------------------------------- */

static char *write_text(const struct profile *p, const char *keep_name, size_t *ret_len) {
        char path[PATH_MAX];
        int fd = open_out(keep_name, path, sizeof(path));

        ck_assert_int_eq(profile_write_text(fd, p), 0);
        char *s = read_all(path, ret_len);
        done_out(fd, path);
        return s;
}

START_TEST(test_text) {
        struct profile p = sample_profile(NULL);
        size_t len;
        char *s = write_text(&p, "profile.txt", &len);
        char want[8192];
        int n;

        /* Raw totals over the records with stacks; inuse = alloc - free; 2R. */
        n = snprintf(want, sizeof(want),
                     "heap profile: 9: 3600 [18: 4500] @ heap/1048576\n"
                     /* by in-use bytes: recs[1], recs[0], recs[3] */
                     "3: 3000 [3: 3000] @ 0x%" PRIxPTR " 0x%" PRIxPTR "\n"
                     "#\t0x%" PRIxPTR "\tsite_leaf_two+0x7\n"
                     "\n"
                     "6: 600 [10: 1000] @ 0x%" PRIxPTR " 0x%" PRIxPTR "\n"
                     "#\t0x%" PRIxPTR "\tsite_leaf_one+0x5\ttest-profile.c:10\n"
                     "\n"
                     "0: 0 [5: 500] @ 0x%" PRIxPTR " 0x%" PRIxPTR " 0x%" PRIxPTR "\n"
                     "#\t0x%" PRIxPTR "\tsite_leaf_one+0x5\ttest-profile.c:10\n"
                     "#\t0x%" PRIxPTR "\tsite_leaf_two+0x7\n"
                     "\n"
                     "\n"
                     "# memd.MemStats\n"
                     "# Alloc = 1111\n"
                     "# TotalAlloc = 2222\n"
                     "# Sys = 3333\n"
                     "# Mallocs = 44\n"
                     "# Frees = 33\n"
                     "# HeapAlloc = 1111\n"
                     "# HeapSys = 5555\n"
                     "# HeapIdle = 666\n"
                     "# HeapInuse = 4889\n"
                     "# HeapReleased = 77\n"
                     "# HeapObjects = 11\n"
                     "# BuckHashSys = 88\n"
                     "# NextGC = 99\n"
                     "# LastGC = 1700000000000000000\n"
                     "# PauseTotalNs = 300\n",
                     pc_b, pc_c, pc_b - 1,
                     pc_a, pc_c, pc_a - 1,
                     pc_a, pc_b, pc_c, pc_a - 1, pc_b - 1);
        ck_assert_int_lt(n, (int) sizeof(want));
        if (strncmp(s, want, (size_t) n) != 0) {
                fprintf(stderr, "got:\n%.*s\nwant:\n%s\n", n, s, want);
                ck_abort_msg("text differs (see stderr)");
        }

        /* Go prints the arrays whole: 256 numbers in brackets. */
        const char *pause = strstr(s, "# PauseNs = [100 200 0 0 ");
        ck_assert_ptr_nonnull(pause);
        const char *eol = strchr(pause, '\n');
        ck_assert_ptr_nonnull(eol);
        ck_assert_int_eq(eol[-1], ']');
        int spaces = 0;
        for (const char *c = strchr(pause, '['); c < eol; c++)
                spaces += *c == ' ';
        ck_assert_int_eq(spaces, 255);
        ck_assert_ptr_nonnull(strstr(s, "\n# PauseEnd = [10 20 0 "));

        const char *tail =
                "# NumGC = 2\n"
                "# NumForcedGC = 1\n"
                "# GCCPUFraction = 0.0123\n"
                "# RSS = 123456\n"
                "# RssAnon = 65432\n"
                "# LazyFree = 5\n"
                "# Threads = 3\n"
                "\n"
                "MAPPED_LIBRARIES:\n";
        const char *t = strstr(s, tail);
        ck_assert_msg(t, "trailer tail missing");
        /* The maps, verbatim, to the end of the file. */
        t += strlen(tail);
        ck_assert_uint_eq(len - (size_t) (t - s), maps_len);
        ck_assert(memcmp(t, maps, maps_len) == 0);
        free(s);
}
END_TEST

START_TEST(test_text_bare) {
        /* No symbolizer, no stats, no maps; frees exceeding allocations clamp. */
        struct profile_record r[2] = {
                { .alloc_count = 2, .alloc_bytes = 64, .free_count = 3, .free_bytes = 10,
                  .depth = 1, .pcs = { 0x1234 } },
                { .alloc_count = 4, .alloc_bytes = 64, .free_count = 1, .free_bytes = 100,
                  .depth = 1, .pcs = { 0x5678 } },
        };
        struct profile p = { .records = r, .n_records = 2, .rate_bytes = 1 };
        size_t len;
        char *s = write_text(&p, "bare.txt", &len);

        ck_assert_str_eq(s,
                         "heap profile: 3: 0 [6: 128] @ heap/2\n"
                         "0: 0 [2: 64] @ 0x1234\n"
                         "\n"
                         "3: 0 [4: 64] @ 0x5678\n"
                         "\n"
                         "\n"
                         "MAPPED_LIBRARIES:\n");
        free(s);

        struct profile empty = { 0 };
        s = write_text(&empty, "empty.txt", &len);
        ck_assert_str_eq(s, "heap profile: 0: 0 [0: 0] @ heap/0\n\nMAPPED_LIBRARIES:\n");
        free(s);
}
END_TEST

START_TEST(test_text_float) {
        static const struct { double v; const char *want; } cases[] = {
                { 0, "0" }, { 0.0123, "0.0123" }, { 1.5e-05, "1.5e-05" }, { 0.25, "0.25" },
                { 1, "1" }, { 0.1 + 0.2, "0.30000000000000004" }, { 1234567, "1.234567e+06" },
                { 100000, "100000" },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct memd_memstats st = { .GCCPUFraction = cases[i].v };
                struct profile p = { .stats = &st };
                char want[128];
                size_t len;
                char *s = write_text(&p, "float.txt", &len);
                snprintf(want, sizeof(want), "\n# GCCPUFraction = %s\n", cases[i].want);
                ck_assert_msg(strstr(s, want), "%g: want %s", cases[i].v, cases[i].want);
                free(s);
        }
}
END_TEST

/* ---- folded --------------------------------------------------------------- */

START_TEST(test_folded) {
        struct profile p = sample_profile(NULL);
        char path[PATH_MAX], want[512];
        int fd = open_out("profile.folded", path, sizeof(path));
        size_t len;

        ck_assert_int_eq(profile_write_folded(fd, &p), 0);
        char *s = read_all(path, &len);
        done_out(fd, path);
        /* Root first; unknown frames as call PCs; recs[2] (no stack) and
         * recs[3] (nothing in use) have no line. */
        snprintf(want, sizeof(want),
                 "0x%" PRIxPTR ";site_leaf_one 1220\n"
                 "0x%" PRIxPTR ";site_leaf_two 3000\n",
                 pc_c - 1, pc_c - 1);
        ck_assert_str_eq(s, want);
        free(s);

        p.symbolize = NULL;
        fd = open_out("plain.folded", path, sizeof(path));
        ck_assert_int_eq(profile_write_folded(fd, &p), 0);
        s = read_all(path, &len);
        done_out(fd, path);
        snprintf(want, sizeof(want),
                 "0x%" PRIxPTR ";0x%" PRIxPTR " 1220\n"
                 "0x%" PRIxPTR ";0x%" PRIxPTR " 3000\n",
                 pc_c - 1, pc_a - 1, pc_c - 1, pc_b - 1);
        ck_assert_str_eq(s, want);
        free(s);
}
END_TEST

static int counting_many_symbolize(uintptr_t pc, char *name, size_t name_len, char *where,
                                   size_t where_len, void *ctx) {
        (*(size_t *) ctx)++;
        return many_symbolize(pc, name, name_len, where, where_len, NULL);
}

/* The text and folded writers make each frame's text once per pc (a
 * cache that grows several times here): every frame of every record
 * still reads as the symbolizer says, and it is asked once per pc. */
START_TEST(test_text_folded_many) {
        const size_t n = 3000;
        struct profile_record *r = calloc(n, sizeof(*r));
        bool *seen = calloc(20000, sizeof(bool));
        size_t distinct = 0, calls = 0, len, recs = 0;
        char path[PATH_MAX];

        ck_assert_ptr_nonnull(r);
        ck_assert_ptr_nonnull(seen);
        for (size_t i = 0; i < n; i++) {
                r[i].alloc_count = 1;
                r[i].alloc_bytes = (n - i) * 16; /* in-use order is record order */
                r[i].alloc_objects_est = 1;
                r[i].alloc_bytes_est = (double) (n - i) * 16;
                r[i].depth = PROFILE_MAX_DEPTH;
                for (size_t k = 0; k < PROFILE_MAX_DEPTH; k++) {
                        size_t v = (i * 7 + k * 131) % 20000;
                        r[i].pcs[k] = 0x400000 + v * 4 + 1;
                        distinct += !seen[v];
                        seen[v] = true;
                }
        }
        ck_assert_uint_gt(distinct, 4096);
        struct profile p = { .records = r, .n_records = n, .rate_bytes = 1,
                             .symbolize = counting_many_symbolize, .symbolize_ctx = &calls };
        char *s = write_text(&p, "many.txt", &len), *line = s, *eol;

        ck_assert_uint_eq(calls, distinct);
        line = strchr(line, '\n') + 1; /* the header */
        for (size_t i = 0; i < n; i++) {
                char want[256];
                int w = snprintf(want, sizeof want, "1: %zu [1: %zu] @", (n - i) * 16, (n - i) * 16);
                REQUIRE(strncmp(line, want, (size_t) w) == 0);
                line += w;
                for (size_t k = 0; k < PROFILE_MAX_DEPTH; k++) {
                        w = snprintf(want, sizeof want, " 0x%" PRIxPTR, r[i].pcs[k]);
                        REQUIRE(strncmp(line, want, (size_t) w) == 0);
                        line += w;
                }
                REQUIRE(*line++ == '\n');
                for (size_t k = 0; k < PROFILE_MAX_DEPTH; k++) {
                        uintptr_t pc = r[i].pcs[k] - 1;
                        w = snprintf(want, sizeof want, "#\t0x%" PRIxPTR "\tfn_%" PRIxPTR "+0x1\tfile_%" PRIuPTR
                                     ".c:%" PRIuPTR "\n", pc, pc, pc % 97, pc % 1000);
                        REQUIRE(strncmp(line, want, (size_t) w) == 0);
                        line += w;
                }
                REQUIRE(*line++ == '\n');
                recs++;
        }
        ck_assert_uint_eq(recs, n);
        ck_assert(strstr(line, "MAPPED_LIBRARIES:\n"));
        free(s);

        calls = 0;
        int fd = open_out("many.folded", path, sizeof(path));
        ck_assert_int_eq(profile_write_folded(fd, &p), 0);
        s = read_all(path, &len);
        done_out(fd, path);
        ck_assert_uint_eq(calls, distinct);
        line = s;
        for (size_t i = 0; i < n; i++) {
                char want[64];
                for (size_t k = PROFILE_MAX_DEPTH; k-- > 0;) {
                        int w = snprintf(want, sizeof want, "fn_%" PRIxPTR "%s", r[i].pcs[k] - 1, k ? ";" : " ");
                        REQUIRE(strncmp(line, want, (size_t) w) == 0);
                        line += w;
                }
                REQUIRE(strtoull(line, &eol, 10) == (n - i) * 16 && *eol == '\n');
                line = eol + 1;
        }
        ck_assert_int_eq(*line, 0);
        free(s);
        free(seen);
        free(r);
}
END_TEST

START_TEST(test_errors) {
        struct profile p = sample_profile(NULL);

        ck_assert_int_eq(profile_write_pprof(-1, &p), -EBADF);
        ck_assert_int_eq(profile_write_text(-1, &p), -EBADF);
        ck_assert_int_eq(profile_write_folded(-1, &p), -EBADF);
        ck_assert_int_eq(profile_write_pprof(1, NULL), -EINVAL);
        ck_assert_int_eq(profile_write_text(1, NULL), -EINVAL);
        ck_assert_int_eq(profile_write_folded(1, NULL), -EINVAL);

        int pfd[2];
        ck_assert_int_eq(pipe(pfd), 0);
        close(pfd[0]);
        signal(SIGPIPE, SIG_IGN);
        ck_assert_int_eq(profile_write_text(pfd[1], &p), -EPIPE);
        close(pfd[1]);
}
END_TEST

/* ---- build-id ------------------------------------------------------------- */

START_TEST(test_build_id_self) {
        uint8_t id[64];
        char got[129], line[512], want[129] = "";
        ssize_t n = profile_read_build_id("/proc/self/exe", id, sizeof(id));

        ck_assert_int_eq(n, 20);        /* gcc + ld default: sha1 */
        hex(got, id, (size_t) n);

        /* readelf's /proc/self would be readelf: name our own pid. */
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "readelf -n /proc/%d/exe 2>/dev/null", (int) getpid());
        FILE *f = popen(cmd, "r");
        ck_assert_ptr_nonnull(f);
        while (fgets(line, sizeof(line), f)) {
                const char *b = strstr(line, "Build ID: ");
                if (b && sscanf(b + 10, "%128[0-9a-f]", want) == 1)
                        break;
        }
        pclose(f);
        if (want[0])
                ck_assert_str_eq(got, want);
        else
                fprintf(stderr, "readelf not available: checked the length only\n");

        /* Too small a buffer is an error, not a truncation. */
        ck_assert_int_eq(profile_read_build_id("/proc/self/exe", id, 4), -ENOBUFS);
}
END_TEST

/* From memory: the test program's and libc's build-ids equal their files';
 * an address no object maps, and too small a buffer, are errors. */
START_TEST(test_build_id_loaded) {
        uint8_t id[64], fid[64];
        int on_stack = 0;
        void *heap = malloc(16);
        ssize_t n = profile_loaded_build_id((uintptr_t) site_root, id, sizeof(id));

        ck_assert_int_eq(n, 20);
        ck_assert_int_eq(profile_read_build_id("/proc/self/exe", fid, sizeof(fid)), 20);
        ck_assert(memcmp(id, fid, 20) == 0);

        Dl_info info;
        ck_assert(dladdr((void *) printf, &info) != 0);
        n = profile_loaded_build_id((uintptr_t) printf, id, sizeof(id));
        ssize_t fn = profile_read_build_id(info.dli_fname, fid, sizeof(fid));
        ck_assert_int_eq(n, fn);
        if (n > 0)
                ck_assert(memcmp(id, fid, (size_t) n) == 0);

        ck_assert_int_eq(profile_loaded_build_id((uintptr_t) &on_stack, id, sizeof(id)), -ENOENT);
        ck_assert_int_eq(profile_loaded_build_id((uintptr_t) heap, id, sizeof(id)), -ENOENT);
        ck_assert_int_eq(profile_loaded_build_id((uintptr_t) site_root, id, 4), -ENOBUFS);
        free(heap);
}
END_TEST

static void write_file(const char *path, const void *data, size_t len) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, data, len), (ssize_t) len);
        close(fd);
}

START_TEST(test_build_id_errors) {
        char path[PATH_MAX];
        uint8_t id[64];
        int fd = open_out("not-elf", path, sizeof(path));

        close(fd);
        write_file(path, "hello, not an ELF file\n", 23);
        ck_assert_int_eq(profile_read_build_id(path, id, sizeof(id)), -ENOEXEC);
        write_file(path, "", 0);
        ck_assert_int_eq(profile_read_build_id(path, id, sizeof(id)), -ENOEXEC);

        /* 32-bit ELF: refused cleanly. */
        Elf32_Ehdr e32 = { .e_ident = { ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS32, ELFDATA2LSB, EV_CURRENT } };
        write_file(path, &e32, sizeof(e32));
        ck_assert_int_eq(profile_read_build_id(path, id, sizeof(id)), -ENOTSUP);

        /* 64-bit header cut short. */
        Elf64_Ehdr e64 = { .e_ident = { ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS64, ELFDATA2LSB, EV_CURRENT } };
        write_file(path, &e64, 40);
        ck_assert_int_eq(profile_read_build_id(path, id, sizeof(id)), -ENOEXEC);

        /* Valid header, no notes. */
        write_file(path, &e64, sizeof(e64));
        ck_assert_int_eq(profile_read_build_id(path, id, sizeof(id)), -ENODATA);

        unlink(path);
        ck_assert_int_eq(profile_read_build_id(path, id, sizeof(id)), -ENOENT);
        ck_assert_int_eq(profile_read_build_id("/", id, sizeof(id)), -EISDIR);
}
END_TEST

/* Sections only (no program headers), an 8-aligned note area with a
 * property note ahead of the build-id, as .note.gnu.property is laid out. */
START_TEST(test_build_id_sections) {
        struct {
                Elf64_Ehdr eh;
                Elf64_Shdr sh[2];
                uint8_t notes[56];
        } __attribute__((packed)) img;
        char path[PATH_MAX];
        uint8_t id[64];
        int fd = open_out("sections.elf", path, sizeof(path));

        memset(&img, 0, sizeof(img));
        memcpy(img.eh.e_ident, ELFMAG, SELFMAG);
        img.eh.e_ident[EI_CLASS] = ELFCLASS64;
        img.eh.e_ident[EI_DATA] = ELFDATA2LSB;
        img.eh.e_ident[EI_VERSION] = EV_CURRENT;
        img.eh.e_type = ET_DYN;
        img.eh.e_machine = EM_X86_64;
        img.eh.e_ehsize = sizeof(Elf64_Ehdr);
        img.eh.e_shoff = offsetof(__typeof__(img), sh);
        img.eh.e_shentsize = sizeof(Elf64_Shdr);
        img.eh.e_shnum = 2;
        img.sh[1].sh_type = SHT_NOTE;
        img.sh[1].sh_offset = offsetof(__typeof__(img), notes);
        img.sh[1].sh_size = sizeof(img.notes);
        img.sh[1].sh_addralign = 8;
        uint32_t n1[3] = { 4, 16, NT_GNU_PROPERTY_TYPE_0 };
        memcpy(img.notes, n1, 12);
        memcpy(img.notes + 12, "GNU", 4);
        memset(img.notes + 16, 0xee, 16);
        uint32_t n2[3] = { 4, 8, NT_GNU_BUILD_ID };
        memcpy(img.notes + 32, n2, 12);
        memcpy(img.notes + 44, "GNU", 4);
        memcpy(img.notes + 48, "\x01\x23\x45\x67\x89\xab\xcd\xef", 8);
        close(fd);
        write_file(path, &img, sizeof(img));

        ck_assert_int_eq(profile_read_build_id(path, id, sizeof(id)), 8);
        ck_assert(memcmp(id, "\x01\x23\x45\x67\x89\xab\xcd\xef", 8) == 0);

        /* A note claiming more than its section holds is not believed. */
        n2[1] = 1000;
        memcpy(img.notes + 32, n2, 12);
        write_file(path, &img, sizeof(img));
        ck_assert_int_eq(profile_read_build_id(path, id, sizeof(id)), -ENODATA);
        unlink(path);
}
END_TEST

static Suite *profile_suite(void) {
        Suite *s = suite_create("profile");
        TCase *tc = tcase_create("writers");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_pprof_fields);
        tcase_add_test(tc, test_pprof_no_symbolizer_no_maps);
        tcase_add_test(tc, test_pprof_many);
        tcase_add_test(tc, test_text);
        tcase_add_test(tc, test_text_bare);
        tcase_add_test(tc, test_text_float);
        tcase_add_test(tc, test_folded);
        tcase_add_test(tc, test_text_folded_many);
        tcase_add_test(tc, test_errors);
        tcase_set_timeout(tc, 60);
        suite_add_tcase(s, tc);

        tc = tcase_create("build-id");
        tcase_add_test(tc, test_build_id_self);
        tcase_add_test(tc, test_build_id_loaded);
        tcase_add_test(tc, test_build_id_errors);
        tcase_add_test(tc, test_build_id_sections);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_main(profile_suite(), "test-profile", false);
}
