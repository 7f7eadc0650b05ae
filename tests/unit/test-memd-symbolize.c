/* test-memd-symbolize.c - Check suite for memd/symbolize.c: real programs (tests/progs/symprog*.c) symbolized live, after exit, deleted, replaced, stripped; C++ names; the caches and their bounds; odd files; the cost. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gelf.h>
#include <libelf.h>

#include "profile.h"
#include "symbolize.h"
#include "unit.h"

/* ---- helpers: the programs ---------------------------------------------------- */

#define MAX_SITES 8

struct site {
        char name[32];
        uintptr_t ret, func;
        int lines[3];
        int n_lines;
};

struct prog {
        pid_t pid;
        int in_fd;              /* the child's stdin: closing it ends the child */
        struct site sites[MAX_SITES];
        size_t n_sites;
};

static const char *env_path(const char *name) {
        const char *v = getenv(name);
        ck_assert_msg(v && v[0], "%s is not set (run the suite through meson test)", name);
        return v;
}

/* Starts path (stdin and stdout on pipes) and reads its sites up to "ready". */
static void prog_start(const char *path, struct prog *p) {
        int in[2], out[2];
        char line[512], libdir[PATH_MAX];
        FILE *f;

        memset(p, 0, sizeof(*p));
        snprintf(libdir, sizeof(libdir), "%s", env_path("SYMTEST_LIB"));
        ck_assert_int_eq(pipe2(in, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
        p->pid = fork();
        ck_assert_int_ge(p->pid, 0);
        if (p->pid == 0) {
                dup2(in[0], STDIN_FILENO);
                dup2(out[1], STDOUT_FILENO);
                /* Copies run from elsewhere than meson's $ORIGIN rpath. */
                setenv("LD_LIBRARY_PATH", dirname(libdir), 1);
                execl(path, path, (char *) NULL);
                _exit(127);
        }
        close(in[0]);
        close(out[1]);
        p->in_fd = in[1];
        f = fdopen(out[0], "r");
        ck_assert_ptr_nonnull(f);
        while (fgets(line, sizeof(line), f)) {
                struct site *s = &p->sites[p->n_sites];
                char lines[64];
                void *ret, *func;

                if (!strcmp(line, "ready\n"))
                        break;
                ck_assert_uint_lt(p->n_sites, MAX_SITES);
                ck_assert_int_eq(sscanf(line, "site %31s %p %p %63s", s->name, &ret, &func, lines), 4);
                s->ret = (uintptr_t) ret;
                s->func = (uintptr_t) func;
                s->n_lines = sscanf(lines, "%d,%d,%d", &s->lines[0], &s->lines[1], &s->lines[2]);
                ck_assert_int_ge(s->n_lines, 1);
                p->n_sites++;
        }
        ck_assert_msg(!feof(f) && p->n_sites > 0, "%s did not start", path);
        fclose(f);
}

static void prog_stop(struct prog *p) {
        int status;

        close(p->in_fd);
        ck_assert_int_eq(waitpid(p->pid, &status, 0), p->pid);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        p->pid = 0;
}

static const struct site *site_opt(const struct prog *p, const char *name) {
        for (size_t i = 0; i < p->n_sites; i++)
                if (!strcmp(p->sites[i].name, name))
                        return &p->sites[i];
        return NULL;
}

static const struct site *site(const struct prog *p, const char *name) {
        const struct site *x = site_opt(p, name);

        ck_assert_msg(x, "no site %s", name);
        return x;
}

/* ---- helpers: mappings as memd has them --------------------------------------- */

struct tmaps {
        struct sym_mapping v[256];
        char *paths[256];
        uint8_t ids[256][64];
        size_t n;
};

/* Reads the executable file-backed mappings of pid as the agent reports
 * them: maps' path (with " (deleted)"), the build-id read from the mapping
 * itself when root may, else from the path. */
static void maps_read(pid_t pid, struct tmaps *t) {
        char path[64], *text = NULL;
        size_t cap = 0;
        ssize_t len;
        FILE *f;

        memset(t, 0, sizeof(*t));
        snprintf(path, sizeof(path), "/proc/%d/maps", (int) pid);
        f = fopen(path, "r");
        ck_assert_ptr_nonnull(f);
        while ((len = getline(&text, &cap, f)) > 0) {
                uint64_t start, limit, offset;
                const char *p;
                size_t plen;
                char idpath[PATH_MAX + 64];
                ssize_t id_len;

                if (!profile_parse_maps_line(text, text + len - (text[len - 1] == '\n'), &start, &limit, &offset, &p,
                                             &plen))
                        continue;
                ck_assert_uint_lt(t->n, 256);
                t->paths[t->n] = strndup(p, plen);
                snprintf(idpath, sizeof(idpath), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int) pid, start, limit);
                id_len = profile_read_build_id(idpath, t->ids[t->n], sizeof(t->ids[t->n]));
                /* (Not root: the path, unless the mapped file is gone from it.) */
                if (id_len <= 0 && !strstr(t->paths[t->n], " (deleted)"))
                        id_len = profile_read_build_id(t->paths[t->n], t->ids[t->n], sizeof(t->ids[t->n]));
                t->v[t->n] = (struct sym_mapping) { start, limit, offset, t->paths[t->n], t->ids[t->n],
                                                     id_len > 0 ? (size_t) id_len : 0 };
                t->n++;
        }
        free(text);
        fclose(f);
        ck_assert_uint_gt(t->n, 0);
}

static void maps_free(struct tmaps *t) {
        for (size_t i = 0; i < t->n; i++)
                free(t->paths[i]);
        t->n = 0;
}

static void run(const char *path, struct prog *p, struct tmaps *t) {
        prog_start(path, p);
        maps_read(p->pid, t);
}

static struct symbolizer *new_symbolizer(void) {
        struct symbolizer *s;

        ck_assert_int_eq(symbolizer_new(&s), 0);
        return s;
}

/* The end of a test: p stopped unless it was, t and s freed. */
static void done(struct prog *p, struct tmaps *t, struct symbolizer *s) {
        if (p->pid)
                prog_stop(p);
        maps_free(t);
        symbolizer_free(s);
}

static const struct sym_mapping *mapping_of(const struct tmaps *t, uintptr_t pc) {
        for (size_t i = 0; i < t->n; i++)
                if (pc >= t->v[i].start && pc < t->v[i].limit)
                        return &t->v[i];
        return NULL;
}

/* ---- helpers: checks --------------------------------------------------------- */

static struct sym_frame frames[SYM_MAX_FRAMES];

static int sym(struct symbolizer *s, pid_t pid, const struct tmaps *t, uintptr_t pc, size_t max) {
        memset(frames, 0x5a, sizeof(frames));
        return symbolize_frames(s, pid, t->v, t->n, pc, frames, max);
}

static const char *base_name(const char *path) {
        const char *b = strrchr(path, '/');
        return b ? b + 1 : path;
}

static void check_frame(int i, const char *func, const char *file, int line) {
        ck_assert_msg(!strcmp(frames[i].func, func), "frame %d: func \"%s\", expected \"%s\"", i, frames[i].func,
                      func);
        ck_assert_msg(!strcmp(base_name(frames[i].file), file), "frame %d (%s): file \"%s\", expected \"%s\"", i,
                      func, frames[i].file, file);
        ck_assert_msg(frames[i].line == line, "frame %d (%s): line %d, expected %d", i, func, frames[i].line, line);
}

/* The sites of symprog.c, every one named with its file and lines. */
static void check_symprog(struct symbolizer *s, pid_t pid, const struct tmaps *t, const struct prog *p) {
        const struct site *x;

        x = site(p, "static");
        ck_assert_int_eq(sym(s, pid, t, x->ret - 1, SYM_MAX_FRAMES), 1);
        check_frame(0, "static_site", "symprog.c", x->lines[0]);
        ck_assert_uint_eq(frames[0].func_offset, x->ret - 1 - x->func);

        x = site(p, "global");
        ck_assert_int_eq(sym(s, pid, t, x->ret - 1, SYM_MAX_FRAMES), 1);
        check_frame(0, "global_site", "symprog.c", x->lines[0]);
        ck_assert_uint_eq(frames[0].func_offset, x->ret - 1 - x->func);

        /* Two always_inline functions inlined into inline_site: three
         * frames of one location, each with the line of its call. */
        x = site(p, "inline");
        ck_assert_int_eq(x->n_lines, 3);
        ck_assert_int_eq(sym(s, pid, t, x->ret - 1, SYM_MAX_FRAMES), 3);
        check_frame(0, "inner_inline", "symprog.c", x->lines[0]);
        check_frame(1, "middle_inline", "symprog.c", x->lines[1]);
        check_frame(2, "inline_site", "symprog.c", x->lines[2]);
        ck_assert_uint_eq(frames[2].func_offset, x->ret - 1 - x->func);

        /* The shared library, mapped wherever the loader put it. */
        x = site(p, "lib");
        ck_assert_int_eq(sym(s, pid, t, x->ret - 1, SYM_MAX_FRAMES), 1);
        check_frame(0, "lib_static_site", "symlib.c", x->lines[0]);
        ck_assert_uint_eq(frames[0].func_offset, x->ret - 1 - x->func);

        /* A symbol without a size (x86-64 only). */
        x = site_opt(p, "asm");
        if (x) {
                ck_assert_int_eq(sym(s, pid, t, x->ret - 1, SYM_MAX_FRAMES), 1);
                ck_assert_str_eq(frames[0].func, "asm_site");
                ck_assert_uint_eq(frames[0].func_offset, x->ret - 1 - x->func);
                ck_assert_int_eq(frames[0].line, 0);   /* no line row of its own: none borrowed */
        }
}

static void check_unknown(struct symbolizer *s, pid_t pid, const struct tmaps *t, const struct prog *p,
                          const char *name) {
        int n = sym(s, pid, t, site(p, name)->ret - 1, SYM_MAX_FRAMES);
        ck_assert_msg(n == 0, "site %s: %d frames (\"%s\"), expected none", name, n, n > 0 ? frames[0].func : "");
}

static int count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        int n = 0;

        ck_assert_ptr_nonnull(d);
        while (readdir(d))
                n++;
        closedir(d);
        return n;
}

static void copy_file(const char *from, const char *to) {
        char buf[65536];
        ssize_t n;
        int in = open(from, O_RDONLY | O_CLOEXEC), out;

        ck_assert_int_ge(in, 0);
        out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
        ck_assert_int_ge(out, 0);
        while ((n = read(in, buf, sizeof(buf))) > 0)
                ck_assert_int_eq(write(out, buf, (size_t) n), n);
        ck_assert_int_eq(n, 0);
        close(in);
        ck_assert_int_eq(close(out), 0);
}

static char tmpdir[64];

static void make_tmpdir(void) {
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/memd-sym-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void) {
        DIR *d = opendir(tmpdir);
        struct dirent *e;
        char p[PATH_MAX];

        if (!d)
                return;
        while ((e = readdir(d)))
                if (e->d_name[0] != '.') {
                        snprintf(p, sizeof(p), "%s/%s", tmpdir, e->d_name);
                        unlink(p);
                }
        closedir(d);
        rmdir(tmpdir);
}

static bool can_open_map_files(pid_t pid, const struct tmaps *t, uintptr_t pc) {
        const struct sym_mapping *m = mapping_of(t, pc);
        char p[128];
        int fd;

        ck_assert_ptr_nonnull(m);
        snprintf(p, sizeof(p), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int) pid, m->start, m->limit);
        fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        close(fd);
        return true;
}

/* ---- live, exited, cached ------------------------------------------------------ */

/* symprog as PIE, not, and without .debug_aranges (Check's loop index _i). */
static const char *const builds[] = { "SYMPROG_PIE", "SYMPROG_NOPIE", "SYMPROG_NOARANGES" };
#define N_BUILDS ((int) (sizeof(builds) / sizeof(builds[0])))

START_TEST(test_live) {
        struct symbolizer *s;
        struct prog p;
        struct tmaps t;

        run(env_path(builds[_i]), &p, &t);
        /* The non-PIE build really is: its code at the link-time address. */
        if (_i == 1)
                ck_assert_uint_lt(site(&p, "static")->ret, 0x10000000);
        s = new_symbolizer();
        check_symprog(s, p.pid, &t, &p);
        done(&p, &t, s);
}
END_TEST

/* The process is gone: the files are opened by path (pid 0). */
START_TEST(test_exited) {
        struct symbolizer *s;
        struct prog p;
        struct tmaps t;

        run(env_path(builds[_i]), &p, &t);
        prog_stop(&p);
        s = new_symbolizer();
        check_symprog(s, 0, &t, &p);
        done(&p, &t, s);
}
END_TEST

/* A second request for a pc is answered from the cache; a second process
 * of the same binary (elsewhere: ASLR) reuses the file by its build-id. */
START_TEST(test_cache) {
        struct symbolizer *s;
        struct sym_stats st0, st1;
        struct prog p, q;
        struct tmaps t, u;
        uintptr_t pc;

        run(env_path("SYMPROG_PIE"), &p, &t);
        run(env_path("SYMPROG_PIE"), &q, &u);
        s = new_symbolizer();
        pc = site(&p, "inline")->ret - 1;
        ck_assert_int_eq(sym(s, p.pid, &t, pc, SYM_MAX_FRAMES), 3);
        symbolizer_stats(s, &st0);
        ck_assert_uint_eq(st0.files, 1);
        ck_assert_uint_eq(st0.file_loads, 1);
        ck_assert_uint_eq(st0.pcs, 1);
        ck_assert_uint_eq(st0.pc_hits, 0);

        ck_assert_int_eq(sym(s, p.pid, &t, pc, SYM_MAX_FRAMES), 3);
        check_frame(0, "inner_inline", "symprog.c", site(&p, "inline")->lines[0]);
        check_frame(2, "inline_site", "symprog.c", site(&p, "inline")->lines[2]);
        symbolizer_stats(s, &st1);
        ck_assert_uint_eq(st1.pc_hits, 1);
        ck_assert_uint_eq(st1.file_loads, 1);
        ck_assert_uint_eq(st1.pcs, 1);

        /* The other process: same build-id, its own addresses. */
        check_symprog(s, q.pid, &u, &q);
        symbolizer_stats(s, &st1);
        ck_assert_uint_eq(st1.file_loads, 2);   /* + the shared library */
        ck_assert_uint_eq(st1.files, 2);
        ck_assert_uint_eq(st1.pc_hits, 2);      /* inline: the same vaddr in the file */
        ck_assert_uint_eq(st1.lookups, 2 + q.n_sites);

        /* The first process again: all cached. */
        check_symprog(s, p.pid, &t, &p);
        symbolizer_stats(s, &st0);
        ck_assert_uint_eq(st0.file_loads, 2);
        ck_assert_uint_eq(st0.pc_hits, st1.pc_hits + p.n_sites);

        /* Flushed: loaded again, same answers. */
        symbolizer_flush(s);
        symbolizer_stats(s, &st0);
        ck_assert_uint_eq(st0.files, 0);
        ck_assert_uint_eq(st0.pcs, 0);
        check_symprog(s, p.pid, &t, &p);
        symbolizer_stats(s, &st0);
        ck_assert_uint_eq(st0.file_loads, 4);

        prog_stop(&q);
        maps_free(&u);
        done(&p, &t, s);
}
END_TEST

/* max < the inline chain: the innermost frames and the physical function. */
START_TEST(test_max_frames) {
        struct symbolizer *s;
        struct prog p;
        struct tmaps t;
        const struct site *x;
        char name[SYM_FUNC_MAX + 32], where[SYM_FILE_MAX + 32];

        run(env_path("SYMPROG_PIE"), &p, &t);
        s = new_symbolizer();
        x = site(&p, "inline");
        for (int pass = 0; pass < 2; pass++) {  /* computed, then cached */
                ck_assert_int_eq(sym(s, p.pid, &t, x->ret - 1, 1), 1);
                check_frame(0, "inline_site", "symprog.c", x->lines[2]);
                ck_assert_int_eq(sym(s, p.pid, &t, x->ret - 1, 2), 2);
                check_frame(0, "inner_inline", "symprog.c", x->lines[0]);
                check_frame(1, "inline_site", "symprog.c", x->lines[2]);
                ck_assert_int_eq(sym(s, p.pid, &t, x->ret - 1, 0), 0);
        }
        ck_assert_int_eq(sym(s, p.pid, &t, x->ret - 1, 3), 3);
        sym_frame_format(&frames[2], name, sizeof(name), where, sizeof(where));
        ck_assert_uint_gt(frames[2].func_offset, 0);
        {
                char want[64];
                snprintf(want, sizeof(want), "inline_site+0x%" PRIx64, frames[2].func_offset);
                ck_assert_str_eq(name, want);
                snprintf(want, sizeof(want), "symprog.c:%d", x->lines[2]);
                ck_assert_str_eq(base_name(where), want);
        }
        /* Not in any mapping; bad arguments. */
        ck_assert_int_eq(sym(s, p.pid, &t, 16, SYM_MAX_FRAMES), 0);
        ck_assert_int_eq(symbolize_frames(NULL, p.pid, t.v, t.n, x->ret - 1, frames, 1), -EINVAL);
        ck_assert_int_eq(symbolize_frames(s, p.pid, NULL, 3, x->ret - 1, frames, 1), -EINVAL);
        ck_assert_int_eq(symbolize_frames(s, p.pid, t.v, t.n, x->ret - 1, NULL, 1), -EINVAL);
        ck_assert_int_eq(symbolize_frames(s, p.pid, NULL, 0, x->ret - 1, frames, 1), 0);
        done(&p, &t, s);
}
END_TEST

START_TEST(test_cxx) {
        struct symbolizer *s;
        struct prog p;
        struct tmaps t;
        const struct site *x;

        run(env_path("SYMPROG_CXX"), &p, &t);
        s = new_symbolizer();
        x = site(&p, "method");
        ck_assert_int_eq(sym(s, p.pid, &t, x->ret - 1, SYM_MAX_FRAMES), 1);
        check_frame(0, "memd_test::Box<int>::get(int*) const", "symprog-cxx.cc", x->lines[0]);
        x = site(&p, "template");
        ck_assert_int_eq(sym(s, p.pid, &t, x->ret - 1, SYM_MAX_FRAMES), 1);
        check_frame(0, "void* memd_test::twice<long>(long, int*)", "symprog-cxx.cc", x->lines[0]);
        ck_assert_uint_eq(frames[0].func_offset, x->ret - 1 - x->func);
        x = site(&p, "namespace");
        ck_assert_int_eq(sym(s, p.pid, &t, x->ret - 1, SYM_MAX_FRAMES), 1);
        check_frame(0, "memd_test::inner::free_fn(int, char const*, int*)", "symprog-cxx.cc", x->lines[0]);
        ck_assert_uint_eq(frames[0].func_offset, x->ret - 1 - x->func);
        done(&p, &t, s);
}
END_TEST

/* ---- deleted, replaced, stripped, no build-id ---------------------------------- */

/* The binary deleted while the process runs: maps says "(deleted)", the
 * inode lives on behind /proc/PID/map_files. */
START_TEST(test_deleted) {
        struct symbolizer *s;
        struct prog p;
        struct tmaps t;
        char path[PATH_MAX];
        const struct sym_mapping *m;
        uintptr_t pc;

        make_tmpdir();
        snprintf(path, sizeof(path), "%s/symprog", tmpdir);
        copy_file(env_path("SYMPROG_PIE"), path);
        prog_start(path, &p);
        ck_assert_int_eq(unlink(path), 0);
        maps_read(p.pid, &t);
        pc = site(&p, "static")->ret - 1;
        m = mapping_of(&t, pc);
        ck_assert_ptr_nonnull(m);
        ck_assert_msg(strstr(m->path, " (deleted)"), "maps path %s", m->path);

        s = new_symbolizer();
        if (can_open_map_files(p.pid, &t, pc))
                check_symprog(s, p.pid, &t, &p);
        else {
                fprintf(stderr, "test_deleted: /proc/PID/map_files not readable (not root): expecting no names\n");
                check_unknown(s, p.pid, &t, &p, "static");
        }
        symbolizer_free(s);

        /* Gone with its process: nothing to read, no names (the library,
         * not deleted, still has its own). */
        prog_stop(&p);
        s = new_symbolizer();
        check_unknown(s, 0, &t, &p, "static");
        check_unknown(s, 0, &t, &p, "inline");
        ck_assert_int_eq(sym(s, 0, &t, site(&p, "lib")->ret - 1, SYM_MAX_FRAMES), 1);
        check_frame(0, "lib_static_site", "symlib.c", site(&p, "lib")->lines[0]);

        /* Without a build-id there is no telling whether a file at the
         * path is the one that was deleted: not even tried. */
        copy_file(env_path("SYMPROG_PIE"), path);
        for (size_t i = 0; i < t.n; i++)
                if (strstr(t.v[i].path, " (deleted)"))
                        t.v[i].build_id_len = 0;
        symbolizer_flush(s);
        check_unknown(s, 0, &t, &p, "static");
        done(&p, &t, s);
        remove_tmpdir();
}
END_TEST

/* The binary's path now holds another build: names only from the mapped
 * inode itself, never from the new file. */
START_TEST(test_replaced) {
        struct symbolizer *s;
        struct sym_stats st;
        struct prog p;
        struct tmaps t;
        char path[PATH_MAX], other[PATH_MAX];

        make_tmpdir();
        snprintf(path, sizeof(path), "%s/symprog", tmpdir);
        snprintf(other, sizeof(other), "%s/symprog.new", tmpdir);
        copy_file(env_path("SYMPROG_PIE"), path);
        prog_start(path, &p);
        copy_file(env_path("SYMPROG_NOPIE"), other);
        ck_assert_int_eq(rename(other, path), 0);
        maps_read(p.pid, &t);

        s = new_symbolizer();
        if (can_open_map_files(p.pid, &t, site(&p, "static")->ret))
                check_symprog(s, p.pid, &t, &p);
        symbolizer_free(s);

        prog_stop(&p);
        s = new_symbolizer();
        check_unknown(s, 0, &t, &p, "static");
        check_unknown(s, 0, &t, &p, "global");
        check_unknown(s, 0, &t, &p, "inline");
        symbolizer_stats(s, &st);
        ck_assert_uint_ge(st.file_rejects, 1);
        /* Remembered: not opened again for every pc. */
        ck_assert_uint_eq(st.file_rejects, 1);
        done(&p, &t, s);
        remove_tmpdir();
}
END_TEST

/* -s: no .symtab, no DWARF, a build-id of its own: its frames stay
 * addresses.  The library it calls is not stripped. */
START_TEST(test_stripped) {
        struct symbolizer *s;
        struct prog p;
        struct tmaps t;

        run(env_path("SYMPROG_STRIPPED"), &p, &t);
        s = new_symbolizer();
        check_unknown(s, p.pid, &t, &p, "static");
        check_unknown(s, p.pid, &t, &p, "global");
        check_unknown(s, p.pid, &t, &p, "inline");
        ck_assert_int_eq(sym(s, p.pid, &t, site(&p, "lib")->ret - 1, SYM_MAX_FRAMES), 1);
        check_frame(0, "lib_static_site", "symlib.c", site(&p, "lib")->lines[0]);
        prog_stop(&p);
        check_unknown(s, 0, &t, &p, "static");
        done(&p, &t, s);
}
END_TEST

/* Mappings without build-ids (an agent that could not read them): the
 * file at the path, known by device, inode, size and mtime. */
START_TEST(test_no_build_id) {
        struct symbolizer *s;
        struct sym_stats st;
        struct prog p;
        struct tmaps t;

        run(env_path("SYMPROG_PIE"), &p, &t);
        for (size_t i = 0; i < t.n; i++) {
                t.v[i].build_id = NULL;
                t.v[i].build_id_len = 0;
        }
        s = new_symbolizer();
        check_symprog(s, p.pid, &t, &p);
        prog_stop(&p);
        check_symprog(s, 0, &t, &p);
        symbolizer_stats(s, &st);
        ck_assert_uint_eq(st.file_loads, 2);    /* the same files whether by map_files or path */
        done(&p, &t, s);
}
END_TEST

/* ---- bounds, odd files ---------------------------------------------------------- */

/* The bytes of path's symbol and string tables, and of its DWARF. */
static void elf_bytes(const char *path, uint64_t *names, uint64_t *dwarf) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        Elf_Scn *scn = NULL;
        size_t shstrndx;
        Elf *e;

        ck_assert_int_ge(fd, 0);
        *names = *dwarf = 0;
        elf_version(EV_CURRENT);
        e = elf_begin(fd, ELF_C_READ, NULL);
        ck_assert_ptr_nonnull(e);
        ck_assert_int_eq(elf_getshdrstrndx(e, &shstrndx), 0);
        while ((scn = elf_nextscn(e, scn))) {
                GElf_Shdr sh;
                const char *name;
                ck_assert_ptr_nonnull(gelf_getshdr(scn, &sh));
                name = elf_strptr(e, shstrndx, sh.sh_name);
                if (sh.sh_type == SHT_SYMTAB || sh.sh_type == SHT_DYNSYM || sh.sh_type == SHT_STRTAB)
                        *names += sh.sh_size;
                else if (name && !strncmp(name, ".debug_", 7))
                        *dwarf += sh.sh_size;
        }
        elf_end(e);
        close(fd);
}

START_TEST(test_limits) {
        struct symbolizer *s;
        struct sym_stats st;
        struct prog p, c;
        struct tmaps t, u;
        const struct site *x;
        uint64_t names, dwarf;
        int n;

        run(env_path("SYMPROG_PIE"), &p, &t);
        run(env_path("SYMPROG_CXX"), &c, &u);
        s = new_symbolizer();
        symbolizer_set_limits(s, 2, 8, 0);

        /* Three files (symprog, its library, symprog-cxx) in a cache of two. */
        check_symprog(s, p.pid, &t, &p);
        x = site(&c, "namespace");
        ck_assert_int_eq(sym(s, c.pid, &u, x->ret - 1, SYM_MAX_FRAMES), 1);
        check_frame(0, "memd_test::inner::free_fn(int, char const*, int*)", "symprog-cxx.cc", x->lines[0]);
        symbolizer_stats(s, &st);
        ck_assert_uint_eq(st.files, 2);
        ck_assert_uint_ge(st.file_evictions, 1);
        check_symprog(s, p.pid, &t, &p);
        symbolizer_stats(s, &st);
        ck_assert_uint_le(st.files, 2);

        /* 8 results at most: 64 distinct pcs of main() and friends. */
        x = site(&p, "static");
        for (unsigned i = 0; i < 64; i++) {
                n = sym(s, p.pid, &t, x->ret - 1 - i, SYM_MAX_FRAMES);
                ck_assert_int_ge(n, 0);
                symbolizer_stats(s, &st);
                ck_assert_uint_le(st.pcs, 8);
        }
        check_symprog(s, p.pid, &t, &p);

        /* Room for symprog's symbol tables, not its DWARF: names still, no
         * lines; the other files are evicted. */
        elf_bytes(env_path("SYMPROG_PIE"), &names, &dwarf);
        ck_assert_uint_gt(names, 0);
        ck_assert_uint_gt(dwarf, 0);
        symbolizer_set_limits(s, 0, 0, names + dwarf / 2);
        symbolizer_stats(s, &st);
        ck_assert_uint_le(st.files, 1);
        x = site(&p, "global");
        ck_assert_int_eq(sym(s, p.pid, &t, x->ret - 1, SYM_MAX_FRAMES), 1);
        ck_assert_str_eq(frames[0].func, "global_site");
        ck_assert_str_eq(frames[0].file, "");
        ck_assert_int_eq(frames[0].line, 0);
        symbolizer_stats(s, &st);
        ck_assert_uint_eq(st.files, 1);

        /* No room for its symbol tables either: not used at all. */
        symbolizer_flush(s);
        symbolizer_set_limits(s, 0, 0, names / 2);
        ck_assert_int_eq(sym(s, p.pid, &t, x->ret - 1, SYM_MAX_FRAMES), 0);
        symbolizer_stats(s, &st);
        ck_assert_uint_eq(st.files, 0);

        prog_stop(&c);
        maps_free(&u);
        done(&p, &t, s);
}
END_TEST

/* A mapping whose file at path (pid 0) is nothing a symbolizer can use. */
static void check_odd(struct symbolizer *s, const char *path, const uint8_t *id, size_t id_len) {
        struct sym_mapping m = { 0x400000, 0x800000, 0, path, id, id_len };

        ck_assert_int_eq(symbolize_frames(s, 0, &m, 1, 0x401234, frames, SYM_MAX_FRAMES), 0);
}

static void write_file(const char *path, const void *data, size_t len) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, data, len), (ssize_t) len);
        close(fd);
}

static uint8_t *read_all(const char *path, size_t *len) {
        struct stat st;
        uint8_t *buf;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(fstat(fd, &st), 0);
        buf = malloc((size_t) st.st_size);
        ck_assert_ptr_nonnull(buf);
        ck_assert_int_eq(read(fd, buf, (size_t) st.st_size), st.st_size);
        close(fd);
        *len = (size_t) st.st_size;
        return buf;
}

START_TEST(test_odd_files) {
        struct symbolizer *s;
        char path[PATH_MAX];
        uint8_t *elf, *copy;
        size_t len;
        int fds = count_fds();
        static const uint8_t some_id[20] = { 1, 2, 3 };

        make_tmpdir();
        s = new_symbolizer();
        check_odd(s, NULL, NULL, 0);
        check_odd(s, "", NULL, 0);
        check_odd(s, "relative/path", NULL, 0);
        check_odd(s, "/nonexistent/memd-sym", NULL, 0);
        check_odd(s, "/nonexistent/memd-sym (deleted)", some_id, sizeof(some_id));
        check_odd(s, "/dev/null", NULL, 0);
        check_odd(s, "/", NULL, 0);
        check_odd(s, "[vdso]", NULL, 0);

        /* A FIFO nobody writes to must not block. */
        snprintf(path, sizeof(path), "%s/fifo", tmpdir);
        ck_assert_int_eq(mkfifo(path, 0600), 0);
        check_odd(s, path, NULL, 0);

        snprintf(path, sizeof(path), "%s/text", tmpdir);
        write_file(path, "#!/bin/sh\necho not an ELF file\n", 31);
        check_odd(s, path, NULL, 0);

        /* The real program, cut and bent. */
        elf = read_all(env_path("SYMPROG_PIE"), &len);
        copy = malloc(len);
        ck_assert_ptr_nonnull(copy);
        snprintf(path, sizeof(path), "%s/cut", tmpdir);
        static const size_t cuts[] = { 4, 16, 63, 64, 200, 1000, 4096, 8192 };
        for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
                write_file(path, elf, cuts[i] < len ? cuts[i] : len);
                symbolizer_flush(s);    /* the failure is remembered otherwise */
                check_odd(s, path, NULL, 0);
        }
        /* A table of program headers far out of the file, then a huge
         * count of section headers: libelf refuses them, nothing crashes. */
        snprintf(path, sizeof(path), "%s/bent", tmpdir);
        for (int k = 0; k < 4; k++) {
                Elf64_Ehdr *eh = (Elf64_Ehdr *) copy;
                memcpy(copy, elf, len);
                if (k == 0)
                        eh->e_phoff = UINT64_C(1) << 40;
                else if (k == 1)
                        eh->e_phnum = 0xfff0;
                else if (k == 2)
                        eh->e_shoff = len - 8;
                else
                        eh->e_type = ET_REL;
                write_file(path, copy, len);
                symbolizer_flush(s);
                check_odd(s, path, NULL, 0);
        }
        /* Random bytes over everything past the ELF header: whatever libdw
         * makes of it, an answer (maybe 0 frames) and no crash. */
        srand(4);
        for (int k = 0; k < 8; k++) {
                struct sym_mapping m = { 0x555555554000, 0x555555560000, 0, path, NULL, 0 };
                memcpy(copy, elf, len);
                for (size_t j = 0; j < len / 64; j++)
                        copy[sizeof(Elf64_Ehdr) + (size_t) rand() % (len - sizeof(Elf64_Ehdr))] = (uint8_t) rand();
                write_file(path, copy, len);
                symbolizer_flush(s);
                for (uintptr_t pc = m.start; pc < m.start + 0x3000; pc += 0x35)
                        ck_assert_int_ge(symbolize_frames(s, 0, &m, 1, pc, frames, SYM_MAX_FRAMES), 0);
        }
        free(elf);
        free(copy);
        symbolizer_free(s);
        ck_assert_int_eq(count_fds(), fds);
        remove_tmpdir();
}
END_TEST

/* ---- shared libraries of the system, and the cost ------------------------------ */

/* p_vaddr of the symbol name in path's .dynsym or .symtab; 0 if absent. */
static uint64_t elf_symbol(const char *path, const char *name) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        uint64_t v = 0;
        Elf *e;
        Elf_Scn *scn = NULL;

        if (fd < 0)
                return 0;
        elf_version(EV_CURRENT);
        e = elf_begin(fd, ELF_C_READ, NULL);
        while (e && !v && (scn = elf_nextscn(e, scn))) {
                GElf_Shdr sh;
                Elf_Data *d;
                if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_DYNSYM && sh.sh_type != SHT_SYMTAB) ||
                    !(d = elf_getdata(scn, NULL)) || !sh.sh_entsize)
                        continue;
                for (size_t i = 0; i < sh.sh_size / sh.sh_entsize; i++) {
                        GElf_Sym sym;
                        const char *n;
                        if (gelf_getsym(d, (int) i, &sym) && sym.st_value && sym.st_shndx != SHN_UNDEF &&
                            (n = elf_strptr(e, sh.sh_link, sym.st_name)) && !strcmp(n, name)) {
                                v = sym.st_value;
                                break;
                        }
                }
        }
        elf_end(e);
        close(fd);
        return v;
}

/* path's executable PT_LOAD as if loaded at its p_vaddr (bias 0). */
static bool elf_text_mapping(const char *path, struct sym_mapping *m, uint8_t *id, size_t id_cap) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        size_t n;
        Elf *e;
        ssize_t id_len;
        bool ok = false;

        if (fd < 0)
                return false;
        elf_version(EV_CURRENT);
        e = elf_begin(fd, ELF_C_READ, NULL);
        if (e && elf_getphdrnum(e, &n) == 0)
                for (size_t i = 0; i < n && !ok; i++) {
                        GElf_Phdr ph;
                        if (gelf_getphdr(e, (int) i, &ph) && ph.p_type == PT_LOAD && (ph.p_flags & PF_X)) {
                                m->start = ph.p_vaddr & ~UINT64_C(4095);
                                m->limit = ph.p_vaddr + ph.p_memsz;
                                m->offset = ph.p_offset & ~UINT64_C(4095);
                                ok = true;
                        }
                }
        elf_end(e);
        close(fd);
        id_len = profile_read_build_id(path, id, id_cap);
        m->path = path;
        m->build_id = id;
        m->build_id_len = id_len > 0 ? (size_t) id_len : 0;
        return ok;
}

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* One system file: the first pc cold, then the same pc warm; prints both. */
static void cost(const char *path, const char *symbol, bool want_line) {
        struct symbolizer *s;
        struct sym_mapping m;
        uint8_t id[64];
        uint64_t v = elf_symbol(path, symbol);
        double t0, t1, t2;
        int n, warm = 20000, bad = 0;

        if (!v || !elf_text_mapping(path, &m, id, sizeof(id))) {
                fprintf(stderr, "cost: %s: no %s or no text segment, skipped\n", path, symbol);
                return;
        }
        s = new_symbolizer();
        t0 = now_s();
        n = symbolize_frames(s, 0, &m, 1, v + 4, frames, SYM_MAX_FRAMES);
        t1 = now_s();
        ck_assert_int_ge(n, 1);
        ck_assert_msg(strstr(frames[n - 1].func, symbol), "%s: %s+4 named %s", path, symbol, frames[n - 1].func);
        ck_assert_msg(!strchr(frames[n - 1].func, '@'), "symbol version left in %s", frames[n - 1].func);
        if (want_line)
                ck_assert_msg(frames[0].file[0] && frames[0].line > 0, "%s: %s+4 has no line", path, symbol);
        /* No ck_assert in the loop: each one is a write to Check's pipe. */
        for (int i = 0; i < warm; i++)
                bad += symbolize_frames(s, 0, &m, 1, v + 4, frames, SYM_MAX_FRAMES) != n;
        t2 = now_s();
        ck_assert_int_eq(bad, 0);
        fprintf(stderr, "cost: %s (%s+4 = %s %s:%d, %d frames): cold %.1f ms, warm %.0f ns/pc\n", path, symbol,
                frames[n - 1].func, base_name(frames[0].file), frames[0].line, n, (t1 - t0) * 1e3,
                (t2 - t1) / warm * 1e9);
        symbolizer_free(s);
}

static const char *const libcs[] = { "/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6",
                                     "/lib64/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6" };

/* The system's libc as a text mapping at bias 0, and the size of its
 * separate debug file (0 when there is none); false without a libc. */
static bool find_libc(struct sym_mapping *m, uint8_t *id, size_t id_cap, off_t *debug_size) {
        for (size_t i = 0; i < sizeof(libcs) / sizeof(libcs[0]); i++) {
                char dbg[PATH_MAX];
                struct stat st;
                size_t o;

                if (access(libcs[i], R_OK) != 0 || !elf_text_mapping(libcs[i], m, id, id_cap))
                        continue;
                *debug_size = 0;
                if (m->build_id_len < 2)
                        return true;
                o = (size_t) snprintf(dbg, sizeof(dbg), "/usr/lib/debug/.build-id/%02x/", id[0]);
                for (size_t k = 1; k < m->build_id_len; k++)
                        o += (size_t) snprintf(dbg + o, sizeof(dbg) - o, "%02x", id[k]);
                snprintf(dbg + o, sizeof(dbg) - o, ".debug");
                if (stat(dbg, &st) == 0)
                        *debug_size = st.st_size;
                return true;
        }
        return false;
}

/* libc (names from .dynsym, and file:line when libc6-dbg's separate debug
 * file is installed under /usr/lib/debug/.build-id) and python3. */
START_TEST(test_system_files) {
        struct sym_mapping m;
        uint8_t id[64];
        off_t debug_size;
        int fds = count_fds();

        if (find_libc(&m, id, sizeof(id), &debug_size)) {
                cost(m.path, "malloc", debug_size > 0);
                cost(m.path, "getpid", false);
                cost(m.path, "fopen", false);
        }
        cost("/usr/bin/python3", "PyObject_Malloc", false);
        ck_assert_int_eq(count_fds(), fds);
}
END_TEST

/* A separate debug file counts in the byte budget with its DWARF inflated;
 * one bigger than the whole budget is not read (names only). */
START_TEST(test_debug_file_budget) {
        struct symbolizer *s;
        struct sym_stats st;
        struct sym_mapping m;
        uint8_t id[64];
        off_t debug_size;
        uint64_t v;
        int n;

        if (!find_libc(&m, id, sizeof(id), &debug_size) || debug_size == 0 || !(v = elf_symbol(m.path, "malloc"))) {
                fprintf(stderr, "test_debug_file_budget: no libc with a separate debug file (libc6-dbg), skipped\n");
                return;
        }
        s = new_symbolizer();
        n = symbolize_frames(s, 0, &m, 1, v + 4, frames, SYM_MAX_FRAMES);
        ck_assert_int_ge(n, 1);
        ck_assert_int_gt(frames[0].line, 0);
        symbolizer_stats(s, &st);
        ck_assert_uint_gt(st.bytes, (uint64_t) debug_size);     /* compressed on disk */
        symbolizer_free(s);

        /* Room for libc's tables, not for its debug file. */
        s = new_symbolizer();
        symbolizer_set_limits(s, 0, 0, (uint64_t) debug_size - 1);
        n = symbolize_frames(s, 0, &m, 1, v + 4, frames, SYM_MAX_FRAMES);
        ck_assert_int_eq(n, 1);
        ck_assert_msg(strstr(frames[0].func, "malloc"), "named %s", frames[0].func);
        ck_assert_str_eq(frames[0].file, "");
        symbolizer_stats(s, &st);
        ck_assert_uint_gt(st.bytes, 0);
        ck_assert_uint_lt(st.bytes, (uint64_t) debug_size / 2);
        symbolizer_free(s);
}
END_TEST

static Suite *symbolize_suite(void) {
        Suite *s = suite_create("memd-symbolize");
        TCase *tc = tcase_create("programs");

        tcase_set_timeout(tc, 120);
        tcase_add_loop_test(tc, test_live, 0, N_BUILDS);
        tcase_add_loop_test(tc, test_exited, 0, N_BUILDS);
        tcase_add_test(tc, test_cache);
        tcase_add_test(tc, test_max_frames);
        tcase_add_test(tc, test_cxx);
        suite_add_tcase(s, tc);

        tc = tcase_create("files");
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_deleted);
        tcase_add_test(tc, test_replaced);
        tcase_add_test(tc, test_stripped);
        tcase_add_test(tc, test_no_build_id);
        tcase_add_test(tc, test_limits);
        tcase_add_test(tc, test_odd_files);
        tcase_add_test(tc, test_system_files);
        tcase_add_test(tc, test_debug_file_budget);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_main(symbolize_suite(), "test-memd-symbolize", false);
}
