/* test-top-pprof.c - memctl top's table against `go tool pprof -top` on the same profiles.
 *
 * Each profile is written twice over: as top_print's samples and as a pprof
 * protobuf, then `go tool pprof -top -sample_index=S [-cum]` runs on the
 * file for every S, with pprof's defaults, with a -nodecount, and with
 * -nodefraction=0 -edgefraction=0.04; its lines from "Type:" on (less
 * Time:) must be top_print's, byte for byte.  The protobufs come from
 * profile.c's profile_write_pprof (what memd writes: random seeded stacks
 * through its symbolize callback) and from a small encoder here for what
 * profile.c never writes: negative values, inlined frames (several lines in
 * one location), empty stacks.  Exit 77 when there is no `go`. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "profile.h"
#include "top-cases.h"
#include "top.h"
#include "unit.h"

static char tmpdir[] = "/tmp/memd-top-pprof-XXXXXX";

/* ---- running pprof and top_print ---------------------------------------- */

static char *read_all(FILE *f) {
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        char chunk[4096];
        size_t n;

        ck_assert_ptr_nonnull(m);
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
                fwrite(chunk, 1, n, m);
        fclose(m);
        return buf;
}

/* The pprof flags for opt. */
static void flags(char *buf, size_t len, const struct top_options *opt) {
        static const struct top_options defaults = TOP_OPTIONS_INIT;
        int n = snprintf(buf, len, "-sample_index=%s", top_sample_index_name(opt->sample_index));

        if (opt->cum)
                n += snprintf(buf + n, len - (size_t) n, " -cum");
        if (opt->node_count > 0)
                n += snprintf(buf + n, len - (size_t) n, " -nodecount=%d", opt->node_count);
        if (opt->node_fraction != defaults.node_fraction)
                n += snprintf(buf + n, len - (size_t) n, " -nodefraction=%.17g", opt->node_fraction);
        if (opt->edge_fraction != defaults.edge_fraction)
                snprintf(buf + n, len - (size_t) n, " -edgefraction=%.17g", opt->edge_fraction);
}

static char *run_pprof(const char *file, const struct top_options *opt) {
        char cmd[1024], f[256];
        FILE *p;
        char *out;
        int status;

        flags(f, sizeof(f), opt);
        snprintf(cmd, sizeof(cmd), "go tool pprof -top %s '%s' 2>>'%s/pprof.stderr'", f, file, tmpdir);
        p = popen(cmd, "r");
        ck_assert_ptr_nonnull(p);
        out = read_all(p);
        status = pclose(p);
        ck_assert_msg(status == 0, "%s: exit status %d (stderr in %s/pprof.stderr)", cmd, status, tmpdir);
        return out;
}

static char *run_top(const struct top_sample *s, size_t n, const struct top_options *opt) {
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);

        ck_assert_ptr_nonnull(m);
        ck_assert_int_eq(top_print(m, s, n, opt), 0);
        fclose(m);
        return buf;
}

/* pprof's output from its "Type:" line on, less its "Time:" line. */
static __attribute__((noinline)) char *pprof_table(const char *out) {
        const char *type = strstr(out, "Type: ");
        char *t, *time;

        ck_assert_msg(type && (type == out || type[-1] == '\n'), "no Type: line in\n%s", out);
        t = strdup(type);
        time = strstr(t, "\nTime: ");
        if (time) {
                char *eol = strchr(time + 1, '\n');
                memmove(time + 1, eol + 1, strlen(eol + 1) + 1);
        }
        return t;
}

static void compare(const char *what, const char *file, const struct top_sample *s, size_t n,
                    const struct top_options *opt) {
        char *raw = run_pprof(file, opt);
        char *want = pprof_table(raw);
        char *got = run_top(s, n, opt);

        if (strcmp(want, got) != 0) {
                /* The first line that differs; Check's messages are short,
                 * the tables go to stderr. */
                const char *w = want, *g = got;
                char f[256];
                int line = 1;

                while (*w && *w == *g) {
                        if (*w == '\n')
                                line++;
                        w++, g++;
                }
                flags(f, sizeof(f), opt);
                fprintf(stderr, "%s, %s: line %d differs\n--- go tool pprof -top:\n%s--- top_print:\n%s",
                        what, f, line, want, got);
                ck_abort_msg("%s, %s: line %d differs from pprof's", what, f, line);
        }
        free(raw);
        free(want);
        free(got);
}

/* Every sample index, flat and -cum, with each of the variants' node
 * counts and fractions. */
static void compare_all(const char *what, const char *file, const struct top_sample *s, size_t n,
                        const struct top_options *variants, size_t n_variants) {
        unsigned tables = 0;

        for (int index = 0; index < TOP_N_VALUES; index++)
                for (int cum = 0; cum <= 1; cum++)
                        for (size_t k = 0; k < n_variants; k++, tables++) {
                                struct top_options opt = variants[k];
                                opt.sample_index = index;
                                opt.cum = cum;
                                compare(what, file, s, n, &opt);
                        }
        fprintf(stderr, "%s: %u tables equal to go tool pprof -top's\n", what, tables);
}

/* pprof's defaults; -nodecount=N; no node dropping and more edges
 * trimmed (fewer "(inline)" labels). */
#define ALL(N) { .node_fraction = 0.005, .edge_fraction = 0.001 }, \
        { .node_count = (N), .node_fraction = 0.005, .edge_fraction = 0.001 }, \
        { .node_fraction = 0, .edge_fraction = 0.04 }

/* ---- a small profile.proto encoder -------------------------------------- */

struct buf {
        uint8_t *p;
        size_t len, cap;
};

static void buf_put(struct buf *b, const void *data, size_t len) {
        if (b->len + len > b->cap) {
                b->cap = (b->len + len) * 2 + 64;
                b->p = realloc(b->p, b->cap);
                ck_assert_ptr_nonnull(b->p);
        }
        memcpy(b->p + b->len, data, len);
        b->len += len;
}

static void pb_varint(struct buf *b, uint64_t v) {
        uint8_t tmp[10];
        size_t n = 0;

        do {
                tmp[n++] = (uint8_t) ((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
                v >>= 7;
        } while (v);
        buf_put(b, tmp, n);
}

static void pb_int(struct buf *b, unsigned field, uint64_t v) {
        pb_varint(b, (uint64_t) field << 3);
        pb_varint(b, v);
}

static void pb_bytes(struct buf *b, unsigned field, const void *data, size_t len) {
        pb_varint(b, (uint64_t) field << 3 | 2);
        pb_varint(b, len);
        buf_put(b, data, len);
}

static void pb_msg(struct buf *b, unsigned field, struct buf *m) {
        pb_bytes(b, field, m->p, m->len);
        free(m->p);
        *m = (struct buf) { 0 };
}

struct strs {
        char **s;
        size_t n;
};

static uint64_t str_id(struct strs *t, const char *s) {
        for (size_t i = 0; i < t->n; i++)
                if (strcmp(t->s[i], s) == 0)
                        return i;
        t->s = realloc(t->s, (t->n + 1) * sizeof(*t->s));
        ck_assert_ptr_nonnull(t->s);
        t->s[t->n] = strdup(s);
        return t->n++;
}

static const char *frame_key(const struct top_frame *f) {
        return f->name && f->name[0] ? f->name : "";
}

/* Writes the samples as profile.proto: one location per run of inlined
 * frames and its caller (lines innermost first), one per unsymbolized frame
 * (in its objfile's mapping, if any), one function per name.  Locations are
 * not shared between samples (their addresses differ, as two call sites'
 * would): pprof merges samples with the same locations, top_print takes
 * each sample as one (top.h), and the two meet when values of both signs
 * are on one stack. */
static void encode(const char *path, const struct top_sample *samples, size_t n) {
        struct buf out = { 0 }, m = { 0 }, l = { 0 };
        struct strs st = { 0 }, funcs = { 0 }, objs = { 0 }, locs = { 0 };
        static const char *const types[][2] = {
                { "alloc_objects", "count" }, { "alloc_space", "bytes" },
                { "inuse_objects", "count" }, { "inuse_space", "bytes" },
        };
        struct loc {
                size_t first, count;    /* frames of samples[sample] */
                size_t sample;
        } *loc_info = NULL;

        str_id(&st, "");
        for (size_t i = 0; i < 4; i++) {
                pb_int(&m, 1, str_id(&st, types[i][0]));
                pb_int(&m, 2, str_id(&st, types[i][1]));
                pb_msg(&out, 1, &m);
        }
        for (size_t i = 0; i < n; i++) {
                const struct top_sample *s = &samples[i];
                struct buf ids = { 0 }, vals = { 0 };

                for (size_t k = 0; k < s->depth;) {
                        size_t j = k;
                        char *key = NULL;
                        size_t key_len = 0;
                        FILE *kf = open_memstream(&key, &key_len);

                        if (s->frames[k].name && s->frames[k].name[0])
                                while (j + 1 < s->depth && s->frames[j].inlined && s->frames[j + 1].name &&
                                       s->frames[j + 1].name[0])
                                        j++;
                        else
                                fprintf(kf, "\001%s", s->frames[k].objfile ? s->frames[k].objfile : "");
                        for (size_t q = k; q <= j; q++)
                                fprintf(kf, "\002%s", frame_key(&s->frames[q]));
                        fprintf(kf, "\003%zu", i);
                        fclose(kf);
                        size_t before = locs.n;
                        uint64_t id = str_id(&locs, key) + 1;
                        if (locs.n != before) {
                                loc_info = realloc(loc_info, locs.n * sizeof(*loc_info));
                                loc_info[locs.n - 1] = (struct loc) { .first = k, .count = j - k + 1, .sample = i };
                        }
                        free(key);
                        pb_varint(&ids, id);
                        k = j + 1;
                }
                for (size_t v = 0; v < 4; v++)
                        pb_varint(&vals, (uint64_t) s->values[v]);
                if (ids.len)
                        pb_bytes(&m, 1, ids.p, ids.len);
                pb_bytes(&m, 2, vals.p, vals.len);
                pb_msg(&out, 2, &m);
                free(ids.p);
                free(vals.p);
        }
        /* Mappings: one per objfile, 256 MiB apart. */
        for (size_t i = 0; i < locs.n; i++) {
                const struct top_frame *f = &samples[loc_info[i].sample].frames[loc_info[i].first];
                if (!(f->name && f->name[0]) && f->objfile && f->objfile[0])
                        str_id(&objs, f->objfile);
        }
        for (size_t i = 0; i < objs.n; i++) {
                pb_int(&m, 1, i + 1);
                pb_int(&m, 2, (i + 1) << 28);
                pb_int(&m, 3, ((i + 1) << 28) + (1 << 24));
                pb_int(&m, 5, str_id(&st, objs.s[i]));
                pb_msg(&out, 3, &m);
        }
        for (size_t i = 0; i < locs.n; i++) {
                const struct top_frame *f = &samples[loc_info[i].sample].frames[loc_info[i].first];
                uint64_t mapping = 0, addr = 0x1000 + 0x10 * i;

                pb_int(&m, 1, i + 1);
                if (!(f->name && f->name[0])) {
                        if (f->objfile && f->objfile[0]) {
                                mapping = str_id(&objs, f->objfile) + 1;
                                addr = (mapping << 28) + 0x10 * i;
                                pb_int(&m, 2, mapping);
                        }
                } else
                        for (size_t q = 0; q < loc_info[i].count; q++) {
                                pb_int(&l, 1, str_id(&funcs, f[q].name) + 1);
                                pb_int(&l, 2, 10 + q);
                                pb_msg(&m, 4, &l);
                        }
                pb_int(&m, 3, addr);
                pb_msg(&out, 4, &m);
        }
        for (size_t i = 0; i < funcs.n; i++) {
                pb_int(&m, 1, i + 1);
                pb_int(&m, 2, str_id(&st, funcs.s[i]));
                pb_int(&m, 3, str_id(&st, funcs.s[i]));
                pb_msg(&out, 5, &m);
        }
        pb_int(&m, 1, str_id(&st, "space"));
        pb_int(&m, 2, str_id(&st, "bytes"));
        pb_msg(&out, 11, &m);
        pb_int(&out, 12, 512 * 1024);
        pb_int(&out, 14, str_id(&st, "inuse_space"));
        for (size_t i = 0; i < st.n; i++)
                pb_bytes(&out, 6, st.s[i], strlen(st.s[i]));

        FILE *f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(out.p, 1, out.len, f), out.len);
        ck_assert_int_eq(fclose(f), 0);
        free(out.p);
        free(loc_info);
        for (struct strs *t = &st; t; t = t == &st ? &funcs : t == &funcs ? &objs : t == &objs ? &locs : NULL) {
                for (size_t i = 0; i < t->n; i++)
                        free(t->s[i]);
                free(t->s);
        }
}

/* ---- the hand-made cases ------------------------------------------------ */

START_TEST(test_case_vs_pprof) {
        const struct top_case *c = &top_cases[_i];
        static const struct top_options variants[] = { ALL(3) };
        char path[256];

        snprintf(path, sizeof(path), "%s/%s.pb", tmpdir, c->name);
        encode(path, c->samples, c->n);
        compare_all(c->name, path, c->samples, c->n, variants, 3);
}
END_TEST

/* ---- random profiles ---------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rng(void) {
        /* splitmix64 */
        uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
        return z ^ (z >> 31);
}

static uint64_t below(uint64_t n) {
        return rng() % n;
}

enum { N_FUNCS = 50, SITES = 3, N_RECORDS = 200 };
#define TEXT_BASE UINT64_C(0x400000)
#define LIB_BASE UINT64_C(0x7f0000000000)       /* libmystery.so: no symbols */
#define NOWHERE UINT64_C(0x100000000)           /* in no mapping */

static char func_names[N_FUNCS][48];
static const char *const MYSTERY = "/nonexistent/lib/libmystery.so.3";

static void make_names(void) {
        for (int f = 0; f < N_FUNCS; f++) {
                switch (f) {
                case 0: snprintf(func_names[f], sizeof(func_names[f]), "main"); break;
                case 1: snprintf(func_names[f], sizeof(func_names[f]), "cache::Map<int, long>::insert(int)"); break;
                case 2: snprintf(func_names[f], sizeof(func_names[f]), "cache::Map<char, long>::insert(char)"); break;
                case 3: snprintf(func_names[f], sizeof(func_names[f]), "Fn_upper"); break;
                default: snprintf(func_names[f], sizeof(func_names[f]), "fn_%02d", f); break;
                }
        }
}

/* What profile.c stores as the function's name, as pprof would see it
 * before its own clean-up: the symbolizer's "name+0x.." without the offset. */
static int fake_symbolize(uintptr_t pc, char *name, size_t name_len, char *where, size_t where_len,
                          void *ctx) {
        (void) ctx;
        if (pc < TEXT_BASE || pc >= TEXT_BASE + N_FUNCS * 0x100)
                return -ENOENT;
        int f = (int) ((pc - TEXT_BASE) / 0x100);
        snprintf(name, name_len, "%s+0x%x", func_names[f], (unsigned) (pc & 0xff));
        snprintf(where, where_len, "src/file%d.c:%d", f % 7, 100 + (int) (pc & 0xff));
        return 0;
}

/* A return address for function f (or an unsymbolized one for f < 0). */
static uintptr_t ret_addr(int f) {
        if (f == -1)
                return LIB_BASE + 0x1000 + 0x10 * below(64) + 1;
        if (f == -2)
                return NOWHERE + 0x10 * below(64) + 1;
        return TEXT_BASE + (uint64_t) f * 0x100 + 0x10 * (1 + below(SITES)) + 1;
}

static struct top_frame frame_of(uintptr_t ret) {
        uintptr_t pc = ret - 1;

        if (pc >= TEXT_BASE && pc < TEXT_BASE + N_FUNCS * 0x100)
                return (struct top_frame) { .name = func_names[(pc - TEXT_BASE) / 0x100] };
        if (pc >= LIB_BASE && pc < LIB_BASE + 0x100000)
                return (struct top_frame) { .objfile = MYSTERY };
        return (struct top_frame) { 0 };
}

static int64_t size_of_class(void) {
        switch (below(6)) {
        case 0: return 8 + (int64_t) below(56);
        case 1: return 64 + (int64_t) below(960);
        case 2: return 1024 + (int64_t) below(64 * 1024);
        case 3: return (1 << 20) + (int64_t) below(8 << 20);
        case 4: return 4096;
        default: return (int64_t) 1 << (3 + below(24));
        }
}

/* A random stack, leaf first: mostly named, some recursion, a few
 * unsymbolized frames, main at the root most of the time. */
static uint32_t random_stack(int *funcs) {
        uint32_t depth = 1 + (uint32_t) below(12);

        for (uint32_t k = 0; k < depth; k++) {
                uint64_t r = below(100);
                if (r < 4)
                        funcs[k] = -1;
                else if (r < 6)
                        funcs[k] = -2;
                else if (r < 14 && k > 0)
                        funcs[k] = funcs[below(k)];       /* recursion */
                else
                        funcs[k] = 1 + (int) (below(N_FUNCS - 1) * below(N_FUNCS - 1) / (N_FUNCS - 1));
        }
        if (below(10) < 8)
                funcs[depth - 1] = 0;
        return depth;
}

START_TEST(test_random_profile_write_pprof) {
        static struct profile_record rec[N_RECORDS];
        static struct top_sample samples[N_RECORDS];
        static struct top_frame frames[N_RECORDS][PROFILE_MAX_DEPTH];
        static const struct top_options variants[] = { ALL(10) };
        char path[256], maps[256];
        int funcs[PROFILE_MAX_DEPTH];

        rng_state = 0x5eed0000u + (uint64_t) _i;
        make_names();
        memset(rec, 0, sizeof(rec));
        for (size_t i = 0; i < N_RECORDS; i++) {
                uint32_t depth = random_stack(funcs);
                int64_t size = size_of_class();
                int64_t count = 1 + (int64_t) below(_i == 2 ? 100000 : 50);
                int64_t freed = below(3) == 0 ? count : (int64_t) below((uint64_t) count + 1);

                rec[i].depth = depth;
                for (uint32_t k = 0; k < depth; k++) {
                        rec[i].pcs[k] = ret_addr(funcs[k]);
                        frames[i][k] = frame_of(rec[i].pcs[k]);
                }
                rec[i].alloc_objects_est = (double) count;
                rec[i].alloc_bytes_est = (double) (count * size);
                rec[i].free_objects_est = (double) freed;
                rec[i].free_bytes_est = (double) (freed * size);
                samples[i] = (struct top_sample) {
                        .frames = frames[i], .depth = depth,
                        .values = { count, count * size, count - freed, (count - freed) * size },
                };
        }
        snprintf(maps, sizeof(maps),
                 "00400000-00800000 r-xp 00000000 08:01 1 /nonexistent/bin/memd-test-prog\n"
                 "7f0000000000-7f0000100000 r-xp 00000000 08:01 2 %s\n", MYSTERY);
        struct profile p = {
                .records = rec, .n_records = N_RECORDS, .rate_bytes = 512 * 1024,
                .maps_text = maps, .maps_len = strlen(maps), .root = "",
                .time_ns = INT64_C(1700000000) * 1000000000, .symbolize = fake_symbolize,
        };
        snprintf(path, sizeof(path), "%s/random-%d.pb.gz", tmpdir, _i);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(profile_write_pprof(fd, &p), 0);
        close(fd);
        compare_all(path, path, samples, N_RECORDS, variants, 3);
}
END_TEST

/* Through the encoder: values of both signs, inlined runs, empty stacks. */
START_TEST(test_random_diff_inline) {
        enum { N = 150 };
        static struct top_sample samples[N];
        static struct top_frame frames[N][16];
        static const struct top_options variants[] = { ALL(7) };
        char path[256];
        int funcs[PROFILE_MAX_DEPTH];

        rng_state = 0xd1ff0000u + (uint64_t) _i;
        make_names();
        for (size_t i = 0; i < N; i++) {
                uint32_t depth = random_stack(funcs);
                int64_t size = size_of_class(), count = 1 + (int64_t) below(40);
                int64_t sign = below(3) == 0 ? -1 : 1, inuse = (int64_t) below((uint64_t) count + 1);

                if (depth > 16)
                        depth = 16;
                if (below(40) == 0)
                        depth = 0;
                for (uint32_t k = 0; k < depth; k++) {
                        frames[i][k] = frame_of(ret_addr(funcs[k]));
                        /* Inlined into the next frame now and then (named ones only). */
                        frames[i][k].inlined = k + 1 < depth && frames[i][k].name && funcs[k + 1] >= 0 &&
                                               below(4) == 0;
                }
                samples[i] = (struct top_sample) {
                        .frames = frames[i], .depth = depth,
                        .values = { sign * count, sign * count * size, sign * inuse,
                                    below(5) == 0 ? -inuse * size : inuse * size },
                };
        }
        snprintf(path, sizeof(path), "%s/diff-%d.pb", tmpdir, _i);
        encode(path, samples, N);
        compare_all(path, path, samples, N, variants, 3);
}
END_TEST

static Suite *top_pprof_suite(void) {
        Suite *s = suite_create("top-vs-pprof");
        TCase *tc = tcase_create("pprof");

        tcase_set_timeout(tc, 300);
        tcase_add_loop_test(tc, test_case_vs_pprof, 0, (int) (sizeof(top_cases) / sizeof(top_cases[0])));
        tcase_add_loop_test(tc, test_random_profile_write_pprof, 0, 3);
        tcase_add_loop_test(tc, test_random_diff_inline, 0, 2);
        suite_add_tcase(s, tc);
        return s;
}

static void cleanup(void) {
        char cmd[256];

        if (getenv("MEMD_KEEP_TMP"))
                return;
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
                fprintf(stderr, "could not remove %s\n", tmpdir);
}

int main(void) {
        char env[512];
        int r;

        if (system("command -v go >/dev/null 2>&1") != 0) {
                fprintf(stderr, "test-top-pprof: no `go` in PATH (apt-get install golang-go): skipped\n");
                return 77;
        }
        if (!mkdtemp(tmpdir)) {
                perror("mkdtemp");
                return EXIT_FAILURE;
        }
        /* pprof and go keep state under HOME/GOCACHE: a private, throwaway
         * one, and no network or toolchain downloads. */
        setenv("HOME", tmpdir, 1);
        snprintf(env, sizeof(env), "%s/gocache", tmpdir);
        setenv("GOCACHE", env, 1);
        setenv("PPROF_TMPDIR", tmpdir, 1);
        snprintf(env, sizeof(env), "%s/binaries", tmpdir);
        setenv("PPROF_BINARY_PATH", env, 1);
        setenv("GOFLAGS", "", 1);
        setenv("GOTOOLCHAIN", "local", 1);
        if (system("go tool pprof -h >/dev/null 2>&1") != 0) {
                fprintf(stderr, "test-top-pprof: `go tool pprof` does not run: skipped\n");
                cleanup();
                return 77;
        }
        r = unit_main(top_pprof_suite(), "test-top-pprof", false);
        cleanup();
        return r;
}
