/* symbolize.c - names for another process's code addresses: function, file:line and inlined frames from the ELF files it mapped (elfutils libdwfl), cached per build-id.  See docs/symbolize.md. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwelf.h>
#include <elfutils/libdwfl.h>
#include <gelf.h>

#include "symbolize.h"

/* libstdc++'s demangler (linked with -lstdc++); a C declaration of it. */
char *__cxa_demangle(const char *mangled, char *buf, size_t *len, int *status);

/* A file that could not be used is not tried again for this long. */
#define FAIL_RETRY_NS (5 * INT64_C(1000000000))
#define FAIL_SLOTS 64u
/* Longer mangled names are shown mangled (the demangler recurses). */
#define DEMANGLE_MAX_BYTES 4096u
#define DELETED_SUFFIX " (deleted)"
#define BUILD_ID_MAX 64u
/* libdw's parsed units, abbreviations and line tables come on top of the
 * DWARF it holds: about as much again once most units were asked about. */
#define DWARF_FACTOR 2u

/* ---- interned strings of one file's results ------------------------------ */

struct str_pool {
        char *buf;
        size_t len, cap;
        uint32_t *slots;        /* offset + 1 of a string in buf; 0 = empty */
        size_t n_slots, n;
};

static uint64_t hash_bytes(const void *p, size_t n, uint64_t h) {
        const unsigned char *c = p;
        for (size_t i = 0; i < n; i++) {
                h ^= c[i];
                h *= UINT64_C(0x100000001b3);
        }
        return h;
}
#define HASH_BASIS UINT64_C(0xcbf29ce484222325)

static uint64_t mix64(uint64_t x) {
        x ^= x >> 33;
        x *= UINT64_C(0xff51afd7ed558ccd);
        x ^= x >> 33;
        x *= UINT64_C(0xc4ceb9fe1a85ec53);
        x ^= x >> 33;
        return x;
}

static void str_pool_free(struct str_pool *p) {
        free(p->buf);
        free(p->slots);
        memset(p, 0, sizeof(*p));
}

static int str_pool_grow_slots(struct str_pool *p) {
        size_t n = p->n_slots ? p->n_slots * 2 : 64;
        uint32_t *slots = calloc(n, sizeof(*slots));

        if (!slots)
                return -ENOMEM;
        for (size_t i = 0; i < p->n_slots; i++) {
                uint32_t v = p->slots[i];
                if (!v)
                        continue;
                const char *str = p->buf + v - 1;
                size_t j = hash_bytes(str, strlen(str), HASH_BASIS) & (n - 1);
                while (slots[j])
                        j = (j + 1) & (n - 1);
                slots[j] = v;
        }
        free(p->slots);
        p->slots = slots;
        p->n_slots = n;
        return 0;
}

/* The offset of str (truncated to max - 1 bytes) in the pool, added if new;
 * -ENOMEM when out of memory or past 4 GiB. */
static int64_t str_pool_intern(struct str_pool *p, const char *str, size_t max) {
        size_t len = strnlen(str, max - 1);
        uint64_t h = hash_bytes(str, len, HASH_BASIS);
        size_t j;

        if ((p->n + 1) * 2 > p->n_slots && str_pool_grow_slots(p) < 0)
                return -ENOMEM;
        for (j = h & (p->n_slots - 1); p->slots[j]; j = (j + 1) & (p->n_slots - 1)) {
                const char *s = p->buf + p->slots[j] - 1;
                if (!strncmp(s, str, len) && s[len] == '\0')
                        return p->slots[j] - 1;
        }
        if (p->len + len + 1 > p->cap) {
                size_t cap = p->cap ? p->cap : 4096;
                while (cap < p->len + len + 1)
                        cap *= 2;
                if (cap >= UINT32_MAX)
                        return -ENOMEM;
                char *buf = realloc(p->buf, cap);
                if (!buf)
                        return -ENOMEM;
                p->buf = buf;
                p->cap = cap;
        }
        memcpy(p->buf + p->len, str, len);
        p->buf[p->len + len] = '\0';
        p->slots[j] = (uint32_t) p->len + 1;
        p->n++;
        p->len += len + 1;
        return p->slots[j] - 1;
}

/* ---- files ---------------------------------------------------------------- */

struct cframe {
        uint32_t func, file;    /* offsets in the file's str_pool */
        int32_t line;
        uint64_t offset;
};

struct pc_slot {
        uint64_t vaddr;
        uint32_t first;         /* in frames[] */
        uint16_t n;             /* 0: nothing known */
        uint16_t used;
};

struct segment {
        uint64_t vaddr, memsz, offset, filesz;
};

/* A function symbol: [addr, addr + size) in the module, ndx for
 * dwfl_module_getsym_info().  A symbol without a size (assembly without
 * .size) extends to the next symbol or the end of its section. */
struct symentry {
        uint64_t addr, size;            /* addr first: the sort key (first_past) */
        uint32_t ndx;
        uint16_t rank;          /* lower is the better name among aliases */
        uint16_t sizeless;      /* st_size was 0: size is up to the next symbol */
};

/* A range of a function's (or a unit's) code, DWARF addresses, and its DIE. */
struct func_range {
        uint64_t low, high;             /* low first: the sort key (first_past) */
        Dwarf_Die die;
};

/* The functions of one compile unit (by DIE offset), sorted by low. */
struct cu_funcs {
        Dwarf_Off offset;               /* first: the sort key (first_past) */
        struct func_range *v;
        size_t n;
};

/* One ELF file (a build-id, or a file without one) and what was asked of it. */
struct symfile {
        struct symfile *prev, *next;    /* LRU: s->head is the most recent */
        uint8_t key[1 + BUILD_ID_MAX];  /* 'b' + build-id, or 'f' + dev, ino, size, mtime */
        size_t key_len;
        Dwfl *dwfl;
        Dwfl_Module *mod;
        GElf_Half e_type;
        struct segment *segs;           /* PT_LOAD */
        size_t n_segs;
        uint64_t size;                  /* bytes held: tables, DWARF (inflated), our indexes */
        bool dwarf;                     /* false: its DWARF is over the budget, names only */
        bool debug_counted;             /* the separate debug file's DWARF is in size */
        const struct symbolizer *owner;
        /* Handed to libdwfl by find_elf(), once. */
        Elf *pending_elf;
        int pending_fd;
        char *pending_name;
        /* The function symbols by address (libdwfl's table: .symtab, the
         * debug file's, .gnu_debugdata's or .dynsym), built on first use. */
        struct symentry *syms;
        size_t n_syms;
        bool syms_built;
        /* The compile units by address, when libdwfl finds none (without
         * .debug_aranges, as clang builds: elfutils 0.188 does not look
         * further); built on first need. */
        struct func_range *unit_ranges;
        size_t n_unit_ranges;
        bool unit_ranges_built;
        Dwarf_Addr unit_bias;
        /* The functions of each compile unit asked about, by address. */
        struct cu_funcs *cus;           /* sorted by offset */
        size_t n_cus, cap_cus;
        /* Results by address in the file (p_vaddr terms). */
        struct pc_slot *slots;
        size_t n_slots, n_pcs;
        struct cframe *frames;
        size_t n_frames, cap_frames;
        struct str_pool strs;
};

struct sym_fail {
        pid_t pid;
        uint64_t start, limit, offset, ident;
        int64_t until_ns;
};

struct symbolizer {
        struct symfile *head, *tail;
        unsigned n_files;
        size_t n_pcs;
        uint64_t bytes;
        unsigned max_files;
        size_t max_pcs;
        uint64_t max_bytes;
        struct sym_fail fails[FAIL_SLOTS];
        unsigned next_fail;
        struct sym_frame scratch[SYM_MAX_FRAMES];
        struct sym_stats stats;
        uint64_t page_size;
};

static int64_t mono_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void pcs_clear(struct symbolizer *s, struct symfile *f) {
        s->n_pcs -= f->n_pcs;
        free(f->slots);
        free(f->frames);
        str_pool_free(&f->strs);
        f->slots = NULL;
        f->frames = NULL;
        f->n_slots = f->n_pcs = f->n_frames = f->cap_frames = 0;
}

static void lru_unlink(struct symbolizer *s, struct symfile *f) {
        if (f->prev)
                f->prev->next = f->next;
        else
                s->head = f->next;
        if (f->next)
                f->next->prev = f->prev;
        else
                s->tail = f->prev;
        f->prev = f->next = NULL;
}

static void lru_push_front(struct symbolizer *s, struct symfile *f) {
        f->prev = NULL;
        f->next = s->head;
        if (s->head)
                s->head->prev = f;
        s->head = f;
        if (!s->tail)
                s->tail = f;
}

static void symfile_free(struct symbolizer *s, struct symfile *f) {
        if (!f)
                return;
        if (s)
                pcs_clear(s, f);
        if (f->dwfl)
                dwfl_end(f->dwfl);
        if (f->pending_elf)
                elf_end(f->pending_elf);
        if (f->pending_fd >= 0)
                close(f->pending_fd);
        free(f->pending_name);
        free(f->segs);
        free(f->syms);
        free(f->unit_ranges);
        for (size_t i = 0; i < f->n_cus; i++)
                free(f->cus[i].v);
        free(f->cus);
        free(f);
}

static void file_drop(struct symbolizer *s, struct symfile *f) {
        lru_unlink(s, f);
        s->n_files--;
        s->bytes -= f->size;
        symfile_free(s, f);
}

/* Gives libdwfl the ELF handle opened (and checked) by file_load(). */
static int find_elf(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base,
                    char **file_name, Elf **elfp) {
        struct symfile *f = *userdata;
        int fd;

        (void) mod;
        (void) modname;
        (void) base;
        *elfp = NULL;
        if (!f || !f->pending_elf)
                return -1;
        *elfp = f->pending_elf;
        *file_name = f->pending_name;
        fd = f->pending_fd;
        f->pending_elf = NULL;
        f->pending_name = NULL;
        f->pending_fd = -1;
        return fd;
}

/* Opens path for reading if it is a regular file, or -errno.  Paths come
 * from the profiled process (its agent reports them): an O_PATH descriptor
 * is checked first and then reopened, so that no device's or FIFO's open()
 * ever runs (opening /dev/watchdog starts the watchdog) and no symlink
 * swapped in between is followed. */
static int open_regular(const char *path, struct stat *st) {
        char self[64];
        int pfd = open(path, O_PATH | O_CLOEXEC), fd;

        if (pfd < 0)
                return -errno;
        if (fstat(pfd, st) < 0 || !S_ISREG(st->st_mode)) {
                close(pfd);
                return -EBADF;
        }
        snprintf(self, sizeof(self), "/proc/self/fd/%d", pfd);
        fd = open(self, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        fd = fd < 0 ? -errno : fd;
        close(pfd);
        return fd;
}

/* Separate debug files come from /usr/lib/debug only: by build-id
 * (.build-id/xx/yyyy.debug, and dwz's alternate files: libdwfl's own
 * lookup), else by .gnu_debuglink as /usr/lib/debug/<the binary's
 * directory>/<debuglink> with the same build-id.  Never next to the binary
 * (the process's owner could swap or truncate a file libdwfl maps), and
 * never dwfl_standard_find_debuginfo: in elfutils 0.188 it dlopens
 * libdebuginfod (and libcurl) into memd on the first miss, 50 ms, and with
 * DEBUGINFOD_URLS set would block memd's loop on the network. */
static char *debuginfo_path = (char *) "/usr/lib/debug";
#define DEBUG_DIR "/usr/lib/debug"

/* A debug file over the byte budget is not read: names then come from
 * the main file's own tables.  (Its DWARF is held in memory, compressed
 * sections inflated, and parsed: DWARF_FACTOR times its size at least.) */
static bool debug_too_big(const struct symfile *f, const unsigned char *id, int id_len) {
        char path[sizeof(DEBUG_DIR) + 16 + 2 * BUILD_ID_MAX + 8];
        struct stat st;
        size_t o;

        if (!f || id_len < 2 || id_len > (int) BUILD_ID_MAX)
                return false;
        o = (size_t) snprintf(path, sizeof(path), DEBUG_DIR "/.build-id/%02x/", id[0]);
        for (int i = 1; i < id_len; i++)
                o += (size_t) snprintf(path + o, sizeof(path) - o, "%02x", id[i]);
        snprintf(path + o, sizeof(path) - o, ".debug");
        return stat(path, &st) == 0 && DWARF_FACTOR * (uint64_t) st.st_size > f->owner->max_bytes;
}

/* fd of path when it is an ELF file with the build-id id and at most max
 * bytes; else -1. */
static int open_debug_candidate(const char *path, const void *id, int id_len, uint64_t max) {
        struct stat st;
        const void *got = NULL;
        ssize_t got_len = -1;
        Elf *elf;
        int fd = open_regular(path, &st);

        if (fd < 0)
                return -1;
        if ((uint64_t) st.st_size > max) {
                close(fd);
                return -1;
        }
        elf = elf_begin(fd, ELF_C_READ, NULL);
        if (elf && elf_kind(elf) == ELF_K_ELF)
                got_len = dwelf_elf_gnu_build_id(elf, &got);
        if (elf)
                elf_end(elf);
        if (got_len != id_len || !got || memcmp(got, id, (size_t) id_len) != 0) {
                close(fd);
                return -1;
        }
        return fd;
}

static int find_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base,
                          const char *file_name, const char *debuglink_file, GElf_Word debuglink_crc,
                          char **debuginfo_file_name) {
        const struct symfile *f = *userdata;
        const unsigned char *id;
        GElf_Addr id_vaddr;
        int id_len, fd;
        char path[PATH_MAX];
        const char *slash;

        id_len = dwfl_module_build_id(mod, &id, &id_vaddr);
        if (!debug_too_big(f, id, id_len)) {
                fd = dwfl_build_id_find_debuginfo(mod, userdata, modname, base, file_name, debuglink_file,
                                                  debuglink_crc, debuginfo_file_name);
                if (fd >= 0)
                        return fd;
        }
        /* A plain debuglink name (not dwz's absolute alternate path), and a
         * build-id to check the candidate against (no CRC of whole files). */
        if (!debuglink_file || strchr(debuglink_file, '/') || !file_name || file_name[0] != '/' || id_len <= 0)
                return -1;
        slash = strrchr(file_name, '/');
        if ((size_t) snprintf(path, sizeof(path), DEBUG_DIR "%.*s/%s", (int) (slash - file_name), file_name,
                              debuglink_file) >= sizeof(path))
                return -1;
        fd = open_debug_candidate(path, id, id_len, f ? f->owner->max_bytes : UINT64_MAX);
        if (fd >= 0) {
                *debuginfo_file_name = strdup(path);
                if (!*debuginfo_file_name) {
                        close(fd);
                        return -1;
                }
        }
        return fd;
}

static const Dwfl_Callbacks dwfl_callbacks = {
        .find_elf = find_elf,
        .find_debuginfo = find_debuginfo,
        .section_address = dwfl_offline_section_address,
        .debuginfo_path = &debuginfo_path,
};

/* ---- opening what the process mapped ---------------------------------------- */

/* The path without maps' " (deleted)" into buf; false when it is no
 * absolute path or does not fit. */
static bool clean_path(const char *path, char *buf, size_t len, bool *deleted) {
        size_t n, sl = strlen(DELETED_SUFFIX);

        *deleted = false;
        if (!path || path[0] != '/')
                return false;
        n = strlen(path);
        if (n > sl && !strcmp(path + n - sl, DELETED_SUFFIX)) {
                n -= sl;
                *deleted = true;
        }
        if (n + 1 > len)
                return false;
        memcpy(buf, path, n);
        buf[n] = '\0';
        return true;
}

/* Opens the file mapped at m: the mapping itself while the process lives
 * (/proc/PID/map_files/START-END: the very inode, even deleted or
 * replaced; root only), else the path in the process's root, else the
 * path.  Returns the fd or -errno. */
static int open_mapping(pid_t pid, const struct sym_mapping *m, const char *path, bool deleted,
                        struct stat *st) {
        char buf[PATH_MAX + 64];
        int fd;

        if (pid > 0) {
                snprintf(buf, sizeof(buf), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int) pid, m->start,
                         m->limit);
                fd = open_regular(buf, st);
                if (fd >= 0)
                        return fd;
        }
        /* The file now at the path: another one when the mapping's was
         * deleted, so only worth opening when a build-id can tell. */
        if (deleted && m->build_id_len == 0)
                return -ESTALE;
        if (pid > 0 && (size_t) snprintf(buf, sizeof(buf), "/proc/%d/root%s", (int) pid, path) < sizeof(buf)) {
                fd = open_regular(buf, st);
                if (fd >= 0)
                        return fd;
        }
        return open_regular(path, st);
}

static bool failed_recently(struct symbolizer *s, pid_t pid, const struct sym_mapping *m, uint64_t ident,
                            int64_t now) {
        for (unsigned i = 0; i < FAIL_SLOTS; i++) {
                const struct sym_fail *x = &s->fails[i];
                if (x->until_ns > now && x->pid == pid && x->start == m->start && x->limit == m->limit &&
                    x->offset == m->offset && x->ident == ident)
                        return true;
        }
        return false;
}

static void fail_add(struct symbolizer *s, pid_t pid, const struct sym_mapping *m, uint64_t ident, int64_t now) {
        struct sym_fail *x = &s->fails[s->next_fail++ % FAIL_SLOTS];

        *x = (struct sym_fail) { pid, m->start, m->limit, m->offset, ident, now + FAIL_RETRY_NS };
        s->stats.file_rejects++;        /* every failure of file_get() passes here */
}

static struct symfile *file_find(struct symbolizer *s, const uint8_t *key, size_t key_len) {
        for (struct symfile *f = s->head; f; f = f->next)
                if (f->key_len == key_len && !memcmp(f->key, key, key_len))
                        return f;
        return NULL;
}

/* Makes room for a file of size bytes. */
static void files_trim(struct symbolizer *s, unsigned max_files, uint64_t size) {
        while (s->tail && (s->n_files > max_files ||
                           (s->bytes + size > s->max_bytes && s->n_files > 0))) {
                file_drop(s, s->tail);
                s->stats.file_evictions++;
        }
}

/* Counts the DWARF a file's separate debug file brought in (libdw holds
 * its sections in memory, inflated), once, and keeps the others in budget. */
static void account_debug(struct symbolizer *s, struct symfile *f) {
        Dwarf_Addr b;
        Dwarf *dw;
        Elf *de, *me;
        Elf_Scn *scn = NULL;
        size_t shstrndx;
        uint64_t sum = 0;

        if (f->debug_counted || !f->dwarf)
                return;
        f->debug_counted = true;
        dw = dwfl_module_getdwarf(f->mod, &b);
        de = dw ? dwarf_getelf(dw) : NULL;
        me = dwfl_module_getelf(f->mod, &b);
        if (!de || de == me || elf_getshdrstrndx(de, &shstrndx) != 0)
                return;         /* in the main file: its size is counted */
        while ((scn = elf_nextscn(de, scn))) {
                GElf_Shdr sh;
                GElf_Chdr ch;
                const char *name;
                if (!gelf_getshdr(scn, &sh) || !(name = elf_strptr(de, shstrndx, sh.sh_name)) ||
                    (strncmp(name, ".debug_", 7) && strncmp(name, ".zdebug_", 8)))
                        continue;
                sum += DWARF_FACTOR * ((sh.sh_flags & SHF_COMPRESSED) && gelf_getchdr(scn, &ch) ? ch.ch_size : sh.sh_size);
        }
        f->size += sum;
        s->bytes += sum;
        while (s->tail && s->tail != f && s->bytes > s->max_bytes) {
                file_drop(s, s->tail);
                s->stats.file_evictions++;
        }
}

/* What libelf and libdw will hold of a main file in memory (the file is
 * read, not mapped): its symbol and string tables (xz's minidebuginfo
 * counted inflated, about 4 times), and apart its DWARF, inflated, times
 * DWARF_FACTOR.  The rest (code, data) is never read. */
static void section_bytes(Elf *elf, uint64_t *names, uint64_t *dwarf) {
        size_t shstrndx;
        Elf_Scn *scn = NULL;

        *names = *dwarf = 0;
        if (elf_getshdrstrndx(elf, &shstrndx) != 0)
                return;
        while ((scn = elf_nextscn(elf, scn))) {
                GElf_Shdr sh;
                GElf_Chdr ch;
                const char *name;

                if (!gelf_getshdr(scn, &sh) || sh.sh_type == SHT_NOBITS)
                        continue;
                name = elf_strptr(elf, shstrndx, sh.sh_name);
                if (sh.sh_type == SHT_SYMTAB || sh.sh_type == SHT_DYNSYM || sh.sh_type == SHT_STRTAB)
                        *names += sh.sh_size;
                else if (name && !strcmp(name, ".gnu_debugdata"))
                        *names += 4 * sh.sh_size;
                else if (name && (!strncmp(name, ".debug_", 7) || !strncmp(name, ".zdebug_", 8)))
                        *dwarf += DWARF_FACTOR *
                                  ((sh.sh_flags & SHF_COMPRESSED) && gelf_getchdr(scn, &ch) ? ch.ch_size : sh.sh_size);
        }
}

/* Reads the PT_LOAD segments, and into *low where libdwfl will take the
 * module to start for a bias of 0 (open_elf(): the first PT_LOAD's p_vaddr
 * & -p_align); false when there are none or the table is bad. */
static bool read_segments(Elf *elf, struct symfile *f, uint64_t *low) {
        size_t phnum;
        bool first = true;

        if (elf_getphdrnum(elf, &phnum) != 0 || phnum == 0 || phnum > 65535)
                return false;
        f->segs = calloc(phnum, sizeof(*f->segs));
        if (!f->segs)
                return false;
        for (size_t i = 0; i < phnum; i++) {
                GElf_Phdr ph;
                if (!gelf_getphdr(elf, (int) i, &ph))
                        return false;
                if (ph.p_type != PT_LOAD)
                        continue;
                if (first)
                        *low = ph.p_vaddr & -ph.p_align;
                first = false;
                if (ph.p_memsz == 0)
                        continue;
                if (ph.p_vaddr + ph.p_memsz < ph.p_vaddr || ph.p_offset + ph.p_filesz < ph.p_offset)
                        return false;
                f->segs[f->n_segs++] = (struct segment) { ph.p_vaddr, ph.p_memsz, ph.p_offset, ph.p_filesz };
        }
        return f->n_segs > 0;
}

/* Opens the ELF on fd (consumed), checks it is the mapping's, and reports
 * it to a Dwfl of its own at bias 0: addresses in the module are the file's
 * p_vaddr terms, so one cached module serves every process that maps the
 * file, wherever it is loaded (symbolize_frames() subtracts each mapping's
 * bias).  Returns 0 with *ret set, 0 with *ret NULL when the file is not
 * usable, or -ENOMEM. */
static int file_load(struct symbolizer *s, int fd, const struct sym_mapping *m,
                     const char *path, const uint8_t *key, size_t key_len, struct symfile **ret) {
        struct symfile *f;
        GElf_Ehdr eh;
        const void *id = NULL;
        ssize_t id_len;
        Elf *elf;
        uint64_t low = UINT64_MAX, high = 0, names, dwarf;
        const char *base;
        void **ud;

        *ret = NULL;
        elf = elf_begin(fd, ELF_C_READ, NULL);
        if (!elf) {
                close(fd);
                return 0;
        }
        if (elf_kind(elf) != ELF_K_ELF || !gelf_getehdr(elf, &eh) || (eh.e_type != ET_EXEC && eh.e_type != ET_DYN))
                goto unusable;
        id_len = dwelf_elf_gnu_build_id(elf, &id);
        /* A file with another build-id (or none) is not the one mapped. */
        if (m->build_id_len > 0 &&
            (id_len != (ssize_t) m->build_id_len || !id || memcmp(id, m->build_id, m->build_id_len) != 0))
                goto unusable;

        f = calloc(1, sizeof(*f));
        if (!f) {
                elf_end(elf);
                close(fd);
                return -ENOMEM;
        }
        f->pending_fd = -1;
        f->owner = s;
        if (!read_segments(elf, f, &low)) {
                symfile_free(NULL, f);
                goto unusable;
        }
        for (size_t i = 0; i < f->n_segs; i++)
                if (f->segs[i].vaddr + f->segs[i].memsz > high)
                        high = f->segs[i].vaddr + f->segs[i].memsz;
        if (low >= high) {
                symfile_free(NULL, f);
                goto unusable;
        }
        memcpy(f->key, key, key_len);
        f->key_len = key_len;
        f->e_type = eh.e_type;
        section_bytes(elf, &names, &dwarf);
        if (names > s->max_bytes) {
                symfile_free(NULL, f);
                goto unusable;
        }
        f->dwarf = names + dwarf <= s->max_bytes;
        f->size = names + (f->dwarf ? dwarf : 0);
        f->pending_elf = elf;
        f->pending_fd = fd;
        f->pending_name = strdup(path);
        if (!f->pending_name) {
                symfile_free(NULL, f);
                return -ENOMEM;
        }

        files_trim(s, s->max_files - 1, f->size);
        f->dwfl = dwfl_begin(&dwfl_callbacks);
        if (!f->dwfl) {
                symfile_free(NULL, f);
                return -ENOMEM;
        }
        base = strrchr(path, '/');
        base = base ? base + 1 : path;
        dwfl_report_begin(f->dwfl);
        f->mod = dwfl_report_module(f->dwfl, base, low, high);
        if (f->mod) {
                dwfl_module_info(f->mod, &ud, NULL, NULL, NULL, NULL, NULL, NULL);
                *ud = f;
        }
        if (dwfl_report_end(f->dwfl, NULL, NULL) != 0 || !f->mod) {
                symfile_free(NULL, f);
                return 0;
        }
        Dwarf_Addr bias;
        if (!dwfl_module_getelf(f->mod, &bias) || bias != 0) {
                symfile_free(NULL, f);
                return 0;
        }
        lru_push_front(s, f);
        s->n_files++;
        s->bytes += f->size;
        s->stats.file_loads++;
        *ret = f;
        return 0;

unusable:
        elf_end(elf);
        close(fd);
        return 0;
}

/* The cached file for mapping m, opened and checked if needed.  Returns 0
 * with *ret NULL when it cannot be used (remembered for FAIL_RETRY_NS). */
static int file_get(struct symbolizer *s, pid_t pid, const struct sym_mapping *m, struct symfile **ret) {
        uint8_t key[sizeof(((struct symfile *) 0)->key)];
        size_t key_len = 0;
        char path[PATH_MAX];
        struct stat st;
        bool deleted;
        uint64_t ident;
        int64_t now;
        int fd, r;

        *ret = NULL;
        if (m->build_id_len > BUILD_ID_MAX || (m->build_id_len > 0 && !m->build_id))
                return 0;
        if (m->build_id_len > 0) {
                key[0] = 'b';
                memcpy(key + 1, m->build_id, m->build_id_len);
                key_len = 1 + m->build_id_len;
                *ret = file_find(s, key, key_len);
                if (*ret)
                        goto found;
        }
        if (!clean_path(m->path, path, sizeof(path), &deleted))
                return 0;
        ident = hash_bytes(m->path, strlen(m->path), HASH_BASIS);
        ident = hash_bytes(m->build_id, m->build_id_len, ident);
        now = mono_ns();
        if (failed_recently(s, pid, m, ident, now))
                return 0;
        fd = open_mapping(pid, m, path, deleted, &st);
        if (fd < 0) {
                fail_add(s, pid, m, ident, now);
                return 0;
        }
        if (m->build_id_len == 0) {
                /* Nothing to check the file against: it is the file at the
                 * path, known by its identity (a binary rewritten in place
                 * gets a new size or mtime, a replaced one a new inode). */
                uint64_t v[4] = { (uint64_t) st.st_dev, (uint64_t) st.st_ino, (uint64_t) st.st_size,
                                  (uint64_t) st.st_mtim.tv_sec * 1000000000u + (uint64_t) st.st_mtim.tv_nsec };
                key[0] = 'f';
                memcpy(key + 1, v, sizeof(v));
                key_len = 1 + sizeof(v);
                *ret = file_find(s, key, key_len);
                if (*ret) {
                        close(fd);
                        goto found;
                }
        }
        r = file_load(s, fd, m, path, key, key_len, ret);
        if (r < 0)
                return r;
        if (!*ret)
                fail_add(s, pid, m, ident, now);
        return 0;

found:
        if (*ret != s->head) {
                lru_unlink(s, *ret);
                lru_push_front(s, *ret);
        }
        return 0;
}

/* The bias of mapping m: runtime address - p_vaddr.  The mapping's start
 * holds file offset m->offset; the PT_LOAD segment containing that offset
 * says which p_vaddr it is.  Non-PIE executables are not relocated. */
static uint64_t mapping_bias(const struct symbolizer *s, const struct symfile *f, const struct sym_mapping *m) {
        if (f->e_type == ET_EXEC)
                return 0;
        for (size_t i = 0; i < f->n_segs; i++) {
                const struct segment *g = &f->segs[i];
                uint64_t lo = g->offset & ~(s->page_size - 1);
                if (m->offset >= lo && m->offset < g->offset + g->filesz)
                        return m->start - m->offset + g->offset - g->vaddr;
        }
        return m->start - m->offset;
}

static bool in_segments(const struct symfile *f, uint64_t vaddr) {
        for (size_t i = 0; i < f->n_segs; i++)
                if (vaddr >= f->segs[i].vaddr && vaddr - f->segs[i].vaddr < f->segs[i].memsz)
                        return true;
        return false;
}

/* ---- computing the frames --------------------------------------------------- */

static void copy_str(char *dst, size_t len, const char *src) {
        size_t n = src ? strnlen(src, len - 1) : 0;
        if (n)
                memcpy(dst, src, n);
        dst[n] = '\0';
}

/* name, demangled when it is a C++ (Itanium ABI) name, without the
 * symbol version a .symtab name may carry ("fopen@@GLIBC_2.2.5"). */
static void set_func(char *dst, const char *name) {
        char buf[DEMANGLE_MAX_BYTES + 1];
        const char *at = strchr(name, '@');
        char *d = NULL;
        int status = -1;

        if (at && at != name && (size_t) (at - name) <= DEMANGLE_MAX_BYTES) {
                memcpy(buf, name, (size_t) (at - name));
                buf[at - name] = '\0';
                name = buf;
        }
        if (name[0] == '_' && name[1] == 'Z' && strnlen(name, DEMANGLE_MAX_BYTES + 1) <= DEMANGLE_MAX_BYTES)
                d = __cxa_demangle(name, NULL, NULL, &status);
        copy_str(dst, SYM_FUNC_MAX, d && status == 0 ? d : name);
        free(d);
}

/* A DIE's linkage name (following DW_AT_abstract_origin and
 * DW_AT_specification), else its plain name. */
static const char *die_name(Dwarf_Die *die) {
        Dwarf_Attribute a;
        const char *n = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_linkage_name, &a));
        if (!n)
                n = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &a));
        if (!n)
                n = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_name, &a));
        return n;
}

static uint64_t die_offset(Dwarf_Die *die, Dwarf_Addr pc) {
        Dwarf_Addr entry;
        if (dwarf_entrypc(die, &entry) == 0 && pc >= entry)
                return pc - entry;
        return 0;
}

/* The call site of an inlined instance: DW_AT_call_file in its unit's
 * file table, DW_AT_call_line. */
static void call_site(Dwarf_Die *die, const char **file, int *line) {
        Dwarf_Attribute a;
        Dwarf_Word v;
        Dwarf_Die cu;
        Dwarf_Files *files;
        size_t n;

        *file = NULL;
        *line = 0;
        if (dwarf_formudata(dwarf_attr(die, DW_AT_call_file, &a), &v) == 0 && dwarf_diecu(die, &cu, NULL, NULL) &&
            dwarf_getsrcfiles(&cu, &files, &n) == 0 && v < n)
                *file = dwarf_filesrc(files, v, NULL, NULL);
        if (dwarf_formudata(dwarf_attr(die, DW_AT_call_line, &a), &v) == 0 && v <= INT_MAX)
                *line = (int) v;
}

/* How many of v[0..n) (stride bytes apart, sorted by the uint64_t each
 * starts with) start at or below key: the index of the first one past it. */
static size_t first_past(const void *v, size_t n, size_t stride, uint64_t key) {
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (*(const uint64_t *) (const void *) ((const char *) v + mid * stride) <= key)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* Among aliases (malloc, __libc_malloc, __malloc) the name with the
 * fewest leading underscores, then global before weak before local. */
static uint16_t symbol_rank(const char *name, const GElf_Sym *sym) {
        uint16_t u = 0, b;

        while (name[u] == '_' && u < 3)
                u++;
        switch (GELF_ST_BIND(sym->st_info)) {
        case STB_GLOBAL:
                b = 0;
                break;
        case STB_WEAK:
                b = 1;
                break;
        case STB_LOCAL:
                b = 2;
                break;
        default:
                b = 3;
                break;
        }
        return (uint16_t) (u * 4 + b);
}

/* By address; at one address the best name last (lookups walk back), a
 * symbol with a size before one without. */
static int symentry_cmp(const void *a, const void *b) {
        const struct symentry *x = a, *y = b;

        if (x->addr != y->addr)
                return x->addr < y->addr ? -1 : 1;
        if (x->sizeless != y->sizeless)
                return x->sizeless ? -1 : 1;
        if (x->rank != y->rank)
                return x->rank > y->rank ? -1 : 1;
        return x->ndx < y->ndx ? 1 : x->ndx > y->ndx ? -1 : 0;
}

/* Sorts the module's function symbols by address once: libdwfl's own
 * dwfl_module_addrinfo() walks the whole table for every address (50 us
 * a pc for python3's 2,200 symbols, milliseconds in big C++ binaries). */
static void symbols_build(struct symbolizer *s, struct symfile *f) {
        int n;
        size_t k = 0;

        f->syms_built = true;
        n = dwfl_module_getsymtab(f->mod);
        if (n <= 1)
                return;
        f->syms = malloc((size_t) n * sizeof(*f->syms));
        if (!f->syms)
                return;
        for (int i = 1; i < n; i++) {
                GElf_Sym sym;
                GElf_Addr addr;
                GElf_Word shndx;
                Elf *elf = NULL;
                Dwarf_Addr bias = 0;
                const char *name = dwfl_module_getsym_info(f->mod, i, &sym, &addr, &shndx, &elf, &bias);
                int type = name ? GELF_ST_TYPE(sym.st_info) : STT_NOTYPE;
                uint64_t size = sym.st_size;

                if (!name || !name[0] || sym.st_shndx == SHN_UNDEF || shndx == SHN_UNDEF || shndx == SHN_ABS ||
                    shndx == (GElf_Word) -1)
                        continue;
                if (type != STT_FUNC && type != STT_GNU_IFUNC && !(type == STT_NOTYPE && size > 0))
                        continue;
                if (size == 0) {
                        /* Up to the end of its (code) section; the next
                         * symbol's start is applied after sorting. */
                        GElf_Shdr sh;
                        Elf_Scn *scn = elf ? elf_getscn(elf, shndx) : NULL;
                        if (!scn || !gelf_getshdr(scn, &sh) || !(sh.sh_flags & SHF_EXECINSTR) ||
                            sh.sh_addr + bias + sh.sh_size <= addr)
                                continue;
                        size = sh.sh_addr + bias + sh.sh_size - addr;
                } else if (addr + size < addr)
                        continue;
                f->syms[k++] = (struct symentry) { addr, size, (uint32_t) i, symbol_rank(name, &sym), sym.st_size == 0 };
        }
        qsort(f->syms, k, sizeof(*f->syms), symentry_cmp);
        for (size_t i = 0, j = 0; i < k; i++) {
                if (!f->syms[i].sizeless)
                        continue;
                if (j <= i)
                        j = i + 1;
                while (j < k && f->syms[j].addr == f->syms[i].addr)
                        j++;
                if (j < k && f->syms[j].addr - f->syms[i].addr < f->syms[i].size)
                        f->syms[i].size = f->syms[j].addr - f->syms[i].addr;
        }
        f->n_syms = k;
        f->size += k * sizeof(*f->syms);
        s->bytes += k * sizeof(*f->syms);
}

/* The name of the function symbol holding vaddr (the one starting last
 * when they nest), its offset in *off; NULL when none does. */
static const char *symbol_at(struct symbolizer *s, struct symfile *f, uint64_t vaddr, uint64_t *off) {
        size_t past;

        if (!f->syms_built)
                symbols_build(s, f);
        past = first_past(f->syms, f->n_syms, sizeof(*f->syms), vaddr);
        for (size_t k = past, steps = 0; k-- > 0 && steps < 64; steps++) {
                const struct symentry *e = &f->syms[k];
                GElf_Sym sym;
                GElf_Addr addr;

                if (vaddr - e->addr >= e->size)
                        continue;
                *off = vaddr - e->addr;
                return dwfl_module_getsym_info(f->mod, (int) e->ndx, &sym, &addr, NULL, NULL, NULL);
        }
        return NULL;
}

/* The DWARF scopes at pc, innermost first, the concrete ones all the way
 * out (dwarf_getscopes alone leaves the abstract origin's parents after an
 * inlined instance).  Returns the count, <= 0 for none; *ret malloc'd. */
static int concrete_scopes(Dwarf_Die *cu, Dwarf_Addr pc, Dwarf_Die **ret) {
        Dwarf_Die *sc = NULL, inner;
        bool inlined = false;
        int n;

        *ret = NULL;
        n = dwarf_getscopes(cu, pc, &sc);
        if (n <= 0) {
                free(sc);
                return n;
        }
        for (int i = 0; i < n && !inlined; i++)
                inlined = dwarf_tag(&sc[i]) == DW_TAG_inlined_subroutine;
        if (!inlined) {
                *ret = sc;
                return n;
        }
        inner = sc[0];
        free(sc);
        return dwarf_getscopes_die(&inner, ret);
}

/* ---- the function DIE at an address -------------------------------------- */

#define SCOPE_DEPTH_MAX 64
#define TYPE_NESTING_MAX 16

struct range_vec {
        struct func_range *v;
        size_t n, cap;
        bool oom;
};

/* Appends die's code ranges to r. */
static void push_ranges(struct range_vec *r, Dwarf_Die *die) {
        Dwarf_Addr base, low, high;
        ptrdiff_t off = 0;

        while (!r->oom && (off = dwarf_ranges(die, off, &base, &low, &high)) > 0) {
                if (low >= high)
                        continue;
                if (r->n == r->cap) {
                        size_t cap = r->cap ? r->cap * 2 : 64;
                        struct func_range *v = realloc(r->v, cap * sizeof(*v));
                        if (!v) {
                                r->oom = true;
                                break;
                        }
                        r->v = v;
                        r->cap = cap;
                }
                r->v[r->n++] = (struct func_range) { low, high, *die };
        }
}

/* Collects the code ranges of the subprograms under parent: at the top of
 * the unit and inside namespaces and classes (C++ puts definitions there),
 * never inside functions. */
static void collect_functions(Dwarf_Die *parent, struct range_vec *r, int depth) {
        Dwarf_Die child;

        if (depth > TYPE_NESTING_MAX || dwarf_child(parent, &child) != 0)
                return;
        do {
                int tag = dwarf_tag(&child);

                if (tag == DW_TAG_subprogram)
                        push_ranges(r, &child);
                else if (tag == DW_TAG_namespace || tag == DW_TAG_class_type || tag == DW_TAG_structure_type ||
                           tag == DW_TAG_union_type || tag == DW_TAG_module)
                        collect_functions(&child, r, depth + 1);
        } while (dwarf_siblingof(&child, &child) == 0);
}

static int func_range_cmp(const void *a, const void *b) {
        const struct func_range *x = a, *y = b;
        return x->low < y->low ? -1 : x->low > y->low;
}

/* The function index of unit cu, built on first use (NULL when out of
 * memory).  dwarf_getscopes() walks the unit's whole top level for every
 * address: in libc's biggest units that was most of 200 us a pc. */
static struct cu_funcs *cu_functions(struct symbolizer *s, struct symfile *f, Dwarf_Die *cu) {
        Dwarf_Off off = dwarf_dieoffset(cu);
        size_t lo = first_past(f->cus, f->n_cus, sizeof(*f->cus), off);
        struct range_vec r = { 0 };
        struct cu_funcs *c;

        if (lo > 0 && f->cus[lo - 1].offset == off)
                return &f->cus[lo - 1];
        if (f->n_cus == f->cap_cus) {
                size_t cap = f->cap_cus ? f->cap_cus * 2 : 16;
                c = realloc(f->cus, cap * sizeof(*c));
                if (!c)
                        return NULL;
                f->cus = c;
                f->cap_cus = cap;
        }
        collect_functions(cu, &r, 0);
        if (r.oom) {
                free(r.v);
                return NULL;
        }
        if (r.n > 1)
                qsort(r.v, r.n, sizeof(*r.v), func_range_cmp);
        memmove(&f->cus[lo + 1], &f->cus[lo], (f->n_cus - lo) * sizeof(*f->cus));
        f->n_cus++;
        c = &f->cus[lo];
        *c = (struct cu_funcs) { off, r.v, r.n };
        f->size += r.cap * sizeof(*r.v) + sizeof(*c);
        s->bytes += r.cap * sizeof(*r.v) + sizeof(*c);
        return c;
}

/* The entry of v[0..n) (sorted by low) holding pc: the one starting last
 * among the few before it that could. */
static struct func_range *range_at(struct func_range *v, size_t n, uint64_t pc) {
        size_t past = first_past(v, n, sizeof(*v), pc);

        for (size_t k = past, steps = 0; k-- > 0 && steps < 8; steps++)
                if (pc < v[k].high)
                        return &v[k];
        return NULL;
}

/* The compile unit holding vaddr, and its bias in *dbias: libdwfl's
 * answer (from .debug_aranges), else a search of every unit's ranges. */
static Dwarf_Die *unit_at(struct symbolizer *s, struct symfile *f, uint64_t vaddr, Dwarf_Addr *dbias) {
        Dwarf_Die *cu = dwfl_module_addrdie(f->mod, vaddr, dbias);
        struct func_range *r;

        if (cu)
                return cu;
        if (!f->unit_ranges_built) {
                struct range_vec v = { 0 };
                Dwarf *dw = dwfl_module_getdwarf(f->mod, &f->unit_bias);
                Dwarf_CU *unit = NULL;
                Dwarf_Die die;
                uint8_t type;

                f->unit_ranges_built = true;
                while (dw && !v.oom && dwarf_get_units(dw, unit, &unit, NULL, &type, &die, NULL) == 0)
                        if (type == DW_UT_compile || type == DW_UT_partial)
                                push_ranges(&v, &die);
                if (v.oom) {
                        free(v.v);
                        return NULL;
                }
                if (v.n > 1)
                        qsort(v.v, v.n, sizeof(*v.v), func_range_cmp);
                f->unit_ranges = v.v;
                f->n_unit_ranges = v.n;
                f->size += v.cap * sizeof(*v.v);
                s->bytes += v.cap * sizeof(*v.v);
        }
        *dbias = f->unit_bias;
        if (vaddr < f->unit_bias || !(r = range_at(f->unit_ranges, f->n_unit_ranges, vaddr - f->unit_bias)))
                return NULL;
        return &r->die;
}

/* The chain of scopes holding pc inside function fn, innermost first,
 * fn last: each level's lexical blocks and inlined instances are looked
 * at, the matching one entered. */
static int scopes_in(Dwarf_Die *fn, Dwarf_Addr pc, Dwarf_Die *chain) {
        Dwarf_Die cur = *fn, child;
        int n = 0;

        chain[n++] = cur;
        while (n < SCOPE_DEPTH_MAX && dwarf_child(&cur, &child) == 0) {
                bool found = false;
                do {
                        int tag = dwarf_tag(&child);
                        if ((tag == DW_TAG_inlined_subroutine || tag == DW_TAG_lexical_block ||
                             tag == DW_TAG_try_block || tag == DW_TAG_catch_block) &&
                            dwarf_haspc(&child, pc) == 1) {
                                found = true;
                                break;
                        }
                } while (dwarf_siblingof(&child, &child) == 0);
                if (!found)
                        break;
                chain[n++] = child;
                cur = child;
        }
        for (int i = 0; i < n / 2; i++) {
                Dwarf_Die t = chain[i];
                chain[i] = chain[n - 1 - i];
                chain[n - 1 - i] = t;
        }
        return n;
}

/* The scopes at pc, innermost first, as concrete DIEs out to the function
 * (or the unit); count, <= 0 for none; *ret malloc'd. */
static int function_scopes(struct symbolizer *s, struct symfile *f, Dwarf_Die *cu, Dwarf_Addr pc, Dwarf_Die **ret) {
        struct cu_funcs *c = cu_functions(s, f, cu);
        struct func_range *fn = c ? range_at(c->v, c->n, pc) : NULL;

        *ret = NULL;
        if (fn) {
                *ret = malloc(SCOPE_DEPTH_MAX * sizeof(**ret));
                if (!*ret)
                        return -1;
                return scopes_in(&fn->die, pc, *ret);
        }
        /* Not in a function of the unit's own (a nested function, code in
         * an imported unit): libdw's general search. */
        return concrete_scopes(cu, pc, ret);
}

/* Computes the frames of vaddr into out[SYM_MAX_FRAMES]; returns how many. */
static int resolve(struct symbolizer *s, struct symfile *f, uint64_t vaddr, struct sym_frame *out) {
        uint64_t sym_off = 0;
        const char *sym_name;
        const char *file = NULL;
        int line = 0, n = 0, n_scopes = 0;
        Dwarf_Die *scopes = NULL;
        bool physical = false;

        sym_name = symbol_at(s, f, vaddr, &sym_off);
        if (sym_name && !sym_name[0])
                sym_name = NULL;

        if (f->dwarf) {
                Dwarf_Addr dbias = 0;
                Dwarf_Die *cu = unit_at(s, f, vaddr, &dbias);
                Dwarf_Line *l = cu && vaddr >= dbias ? dwarf_getsrc_die(cu, vaddr - dbias) : NULL;

                if (l && dwarf_lineno(l, &line) == 0)
                        file = dwarf_linesrc(l, NULL, NULL);
                if (!file)
                        line = 0;
                if (cu && vaddr >= dbias)
                        n_scopes = function_scopes(s, f, cu, vaddr - dbias, &scopes);
                for (int i = 0; i < n_scopes && !physical; i++) {
                        Dwarf_Die *d = &scopes[i];
                        int tag = dwarf_tag(d);
                        const char *name;

                        if (tag != DW_TAG_inlined_subroutine && tag != DW_TAG_subprogram &&
                            tag != DW_TAG_entry_point)
                                continue;
                        physical = tag != DW_TAG_inlined_subroutine;
                        name = physical && sym_name ? sym_name : die_name(d);
                        if (physical && (!name || !name[0])) {
                                physical = false;       /* nothing names the function */
                                break;
                        }
                        /* The physical function is always the last frame:
                         * a deeper chain loses its outermost inlined ones
                         * (their call sites still lead to its line). */
                        if (physical || n < SYM_MAX_FRAMES - 1) {
                                set_func(out[n].func, name && name[0] ? name : "??");
                                copy_str(out[n].file, SYM_FILE_MAX, file);
                                out[n].line = line;
                                out[n].func_offset = physical && sym_name ? sym_off : die_offset(d, vaddr - dbias);
                                n++;
                        }
                        if (!physical)
                                call_site(d, &file, &line);
                }
                free(scopes);
        }
        if (!physical && sym_name) {
                if (n == SYM_MAX_FRAMES)
                        n--;
                set_func(out[n].func, sym_name);
                copy_str(out[n].file, SYM_FILE_MAX, file);
                out[n].line = file ? line : 0;
                out[n].func_offset = sym_off;
                n++;
                physical = true;
        }
        /* Inlined frames without a function to hold them say nothing
         * reliable (a CU without subprograms, a symbol-less address). */
        return physical ? n : 0;
}

/* ---- the per-file result cache ---------------------------------------------- */

static struct pc_slot *pc_find(struct symfile *f, uint64_t vaddr) {
        if (!f->n_slots)
                return NULL;
        for (size_t j = mix64(vaddr) & (f->n_slots - 1);; j = (j + 1) & (f->n_slots - 1)) {
                struct pc_slot *p = &f->slots[j];
                if (!p->used)
                        return NULL;
                if (p->vaddr == vaddr)
                        return p;
        }
}

static int pc_grow(struct symfile *f) {
        size_t n = f->n_slots ? f->n_slots * 2 : 256;
        struct pc_slot *slots = calloc(n, sizeof(*slots));

        if (!slots)
                return -ENOMEM;
        for (size_t i = 0; i < f->n_slots; i++) {
                if (!f->slots[i].used)
                        continue;
                size_t j = mix64(f->slots[i].vaddr) & (n - 1);
                while (slots[j].used)
                        j = (j + 1) & (n - 1);
                slots[j] = f->slots[i];
        }
        free(f->slots);
        f->slots = slots;
        f->n_slots = n;
        return 0;
}

/* Keeps the number of cached results under max_pcs: whole files' results
 * go, least recently used first, down to three quarters. */
static void pcs_trim(struct symbolizer *s, struct symfile *keep) {
        if (s->n_pcs < s->max_pcs)
                return;
        for (struct symfile *f = s->tail; f && s->n_pcs > s->max_pcs / 4 * 3; f = f->prev)
                if (f != keep)
                        pcs_clear(s, f);
        if (keep && s->n_pcs >= s->max_pcs)
                pcs_clear(s, keep);
}

/* Caches out[0..n) as vaddr's result.  Failing (out of memory) only
 * means it is computed again next time. */
static void pc_store(struct symbolizer *s, struct symfile *f, uint64_t vaddr, const struct sym_frame *out, int n) {
        struct pc_slot *p;
        size_t first;

        pcs_trim(s, f);
        if ((f->n_pcs + 1) * 2 > f->n_slots && pc_grow(f) < 0)
                return;
        if (f->n_frames + (size_t) n > f->cap_frames) {
                size_t cap = f->cap_frames ? f->cap_frames * 2 : 256;
                while (cap < f->n_frames + (size_t) n)
                        cap *= 2;
                if (cap > UINT32_MAX)
                        return;
                struct cframe *v = realloc(f->frames, cap * sizeof(*v));
                if (!v)
                        return;
                f->frames = v;
                f->cap_frames = cap;
        }
        first = f->n_frames;
        for (int i = 0; i < n; i++) {
                int64_t func = str_pool_intern(&f->strs, out[i].func, SYM_FUNC_MAX);
                int64_t file = str_pool_intern(&f->strs, out[i].file, SYM_FILE_MAX);
                if (func < 0 || file < 0)
                        return;
                f->frames[first + i] = (struct cframe) { (uint32_t) func, (uint32_t) file, out[i].line, out[i].func_offset };
        }
        f->n_frames += n;
        for (size_t j = mix64(vaddr) & (f->n_slots - 1);; j = (j + 1) & (f->n_slots - 1)) {
                p = &f->slots[j];
                if (!p->used)
                        break;
        }
        *p = (struct pc_slot) { vaddr, (uint32_t) first, (uint16_t) n, 1 };
        f->n_pcs++;
        s->n_pcs++;
}

/* Writes frames[0..n) to out[0..max): all of them when they fit, else the
 * innermost max - 1 and the last (the physical function). */
static int copy_out(const struct sym_frame *frames, int n, struct sym_frame *out, size_t max) {
        size_t k = (size_t) n <= max ? (size_t) n : max;
        for (size_t i = 0; i < k; i++) {
                size_t from = i + 1 == k ? (size_t) n - 1 : i;
                copy_str(out[i].func, SYM_FUNC_MAX, frames[from].func);
                copy_str(out[i].file, SYM_FILE_MAX, frames[from].file);
                out[i].line = frames[from].line;
                out[i].func_offset = frames[from].func_offset;
        }
        return (int) k;
}

static int copy_cached(const struct symfile *f, const struct pc_slot *p, struct sym_frame *out, size_t max) {
        size_t n = p->n, k = n <= max ? n : max;
        for (size_t i = 0; i < k; i++) {
                const struct cframe *c = &f->frames[p->first + (i + 1 == k ? n - 1 : i)];
                copy_str(out[i].func, SYM_FUNC_MAX, f->strs.buf + c->func);
                copy_str(out[i].file, SYM_FILE_MAX, f->strs.buf + c->file);
                out[i].line = c->line;
                out[i].func_offset = c->offset;
        }
        return (int) k;
}

/* ---- the API -------------------------------------------------------------- */

int symbolizer_new(struct symbolizer **ret) {
        struct symbolizer *s;
        long page = sysconf(_SC_PAGESIZE);

        if (!ret)
                return -EINVAL;
        *ret = NULL;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->max_files = SYM_DEFAULT_MAX_FILES;
        s->max_pcs = SYM_DEFAULT_MAX_PCS;
        s->max_bytes = SYM_DEFAULT_MAX_BYTES;
        s->page_size = page > 0 && !(page & (page - 1)) ? (uint64_t) page : 4096;
        elf_version(EV_CURRENT);
        *ret = s;
        return 0;
}

void symbolizer_flush(struct symbolizer *s) {
        if (!s)
                return;
        while (s->head)
                file_drop(s, s->head);
        memset(s->fails, 0, sizeof(s->fails));
}

void symbolizer_free(struct symbolizer *s) {
        if (!s)
                return;
        symbolizer_flush(s);
        free(s);
}

void symbolizer_set_limits(struct symbolizer *s, unsigned max_files, size_t max_pcs, uint64_t max_bytes) {
        if (!s)
                return;
        if (max_files)
                s->max_files = max_files;
        if (max_pcs)
                s->max_pcs = max_pcs;
        if (max_bytes)
                s->max_bytes = max_bytes;
        files_trim(s, s->max_files, 0);
        while (s->n_pcs > s->max_pcs)
                pcs_trim(s, NULL);
}

void symbolizer_stats(const struct symbolizer *s, struct sym_stats *ret) {
        if (!ret)
                return;
        memset(ret, 0, sizeof(*ret));
        if (!s)
                return;
        *ret = s->stats;
        ret->files = s->n_files;
        ret->pcs = s->n_pcs;
        ret->bytes = s->bytes;
}

int symbolize_frames(struct symbolizer *s, pid_t pid, const struct sym_mapping *maps, size_t n_maps,
                     uintptr_t pc, struct sym_frame *out, size_t max) {
        const struct sym_mapping *m = NULL;
        struct symfile *f;
        struct pc_slot *p;
        uint64_t vaddr;
        int n, r;

        if (!s || (!maps && n_maps) || (!out && max) || pid < 0)
                return -EINVAL;
        s->stats.lookups++;
        if (max == 0)
                return 0;
        for (size_t i = 0; i < n_maps; i++)
                if (pc >= maps[i].start && pc < maps[i].limit) {
                        m = &maps[i];
                        break;
                }
        if (!m)
                return 0;
        r = file_get(s, pid, m, &f);
        if (r < 0 || !f)
                return r;
        vaddr = pc - mapping_bias(s, f, m);
        p = pc_find(f, vaddr);
        if (p) {
                s->stats.pc_hits++;
                return copy_cached(f, p, out, max);
        }
        n = in_segments(f, vaddr) ? resolve(s, f, vaddr, s->scratch) : 0;
        account_debug(s, f);
        pc_store(s, f, vaddr, s->scratch, n);
        return copy_out(s->scratch, n, out, max);
}

void sym_frame_format(const struct sym_frame *f, char *name, size_t name_len, char *where, size_t where_len) {
        if (name && name_len) {
                if (f->func_offset)
                        snprintf(name, name_len, "%s+0x%" PRIx64, f->func, f->func_offset);
                else
                        snprintf(name, name_len, "%s", f->func);
        }
        if (where && where_len) {
                if (f->file[0] && f->line > 0)
                        snprintf(where, where_len, "%s:%d", f->file, f->line);
                else
                        snprintf(where, where_len, "%s", f->file);
        }
}
