/* profile.c - writes heap profiles (gzipped pprof protobuf, Go's legacy heap text, folded stacks) and reads ELF build-ids. */

/*
 * The protobuf is encoded by hand (pb_* below, about a hundred lines) on
 * purpose: these writers run inside arbitrary host processes, often from an
 * exit handler with malloc interposed, so libmemd must not pull in generated
 * protobuf code or libprotobuf-c (their allocations, their constructors, one
 * more shared library in every process).  profile.proto only needs varints,
 * length-delimited fields and packed repeated varints.
 *
 * Nothing here uses stdio streams or logs: failures come back as -errno.
 * snprintf into caller-owned buffers is the only formatting used.
 */

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <link.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "profile.h"

#define OUT_BUF_BYTES (64 * 1024)
#define NOTE_MAX_BYTES (1024 * 1024)    /* a note section bigger than this is not the build-id's */
#define BUILD_ID_MAX 64                 /* bytes; sha1 ids are 20, some linkers use up to 32 */
#define SYM_NAME_MAX 512
#define SYM_WHERE_MAX 512

/* ---- output ------------------------------------------------------------ */

static int write_all(int fd, const void *data, size_t len) {
        const char *p = data;

        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -EIO;
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

static ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off) {
        size_t done = 0;

        if (off > (uint64_t) INT64_MAX || len > (uint64_t) INT64_MAX - off)
                return -EINVAL;
        while (done < len) {
                ssize_t n = pread(fd, (char *) buf + done, len - done, (off_t) (off + done));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                done += (size_t) n;
        }
        return (ssize_t) done;
}

/* A buffered writer for the text formats; the first error sticks. */
struct out {
        int fd;
        char *buf;
        size_t len, cap;
        int err;
};

static int out_init(struct out *o, int fd) {
        *o = (struct out) { .fd = fd };
        o->buf = malloc(OUT_BUF_BYTES);
        if (!o->buf)
                return -ENOMEM;
        o->cap = OUT_BUF_BYTES;
        return 0;
}

static void out_flush(struct out *o) {
        if (o->err == 0 && o->len > 0)
                o->err = write_all(o->fd, o->buf, o->len);
        o->len = 0;
}

/* Flushes and frees; returns the first error. */
static int out_done(struct out *o) {
        if (o->buf)
                out_flush(o);
        free(o->buf);
        o->buf = NULL;
        return o->err;
}

static void out_write(struct out *o, const char *s, size_t n) {
        if (o->err)
                return;
        if (n > o->cap - o->len)
                out_flush(o);
        if (o->err)
                return;
        if (n >= o->cap) {
                o->err = write_all(o->fd, s, n);
                return;
        }
        memcpy(o->buf + o->len, s, n);
        o->len += n;
}

static void out_puts(struct out *o, const char *s) {
        out_write(o, s, strlen(s));
}

__attribute__((format(printf, 2, 3)))
static void out_printf(struct out *o, const char *fmt, ...) {
        va_list ap;
        int n;

        if (o->err)
                return;
        for (int attempt = 0; attempt < 2; attempt++) {
                size_t room = o->cap - o->len;
                va_start(ap, fmt);
                n = vsnprintf(o->buf + o->len, room, fmt, ap);
                va_end(ap);
                if (n < 0) {
                        o->err = -EINVAL;
                        return;
                }
                if ((size_t) n < room) {
                        o->len += (size_t) n;
                        return;
                }
                out_flush(o);
                if (o->err)
                        return;
        }
        /* Longer than the whole buffer: format on the heap. */
        char *big = malloc((size_t) n + 1);
        if (!big) {
                o->err = -ENOMEM;
                return;
        }
        va_start(ap, fmt);
        vsnprintf(big, (size_t) n + 1, fmt, ap);
        va_end(ap);
        o->err = write_all(o->fd, big, (size_t) n);
        free(big);
}

/* Decimal and "0x" hex without printf: the text writer prints a few
 * hundred thousand of them for a large profile. */
static void out_u64(struct out *o, uint64_t v) {
        char b[24], *e = b + sizeof b, *c = e;

        do
                *--c = (char) ('0' + v % 10);
        while ((v /= 10));
        out_write(o, c, (size_t) (e - c));
}

static void out_hex(struct out *o, uint64_t v) {
        static const char digits[] = "0123456789abcdef";
        char b[24], *e = b + sizeof b, *c = e;

        do
                *--c = digits[v & 15];
        while ((v >>= 4));
        *--c = 'x';
        *--c = '0';
        out_write(o, c, (size_t) (e - c));
}

/* ---- helpers shared by the writers ------------------------------------- */

static uint64_t sub_sat(uint64_t a, uint64_t b) {
        return a > b ? a - b : 0;
}

/* Estimates are non-negative by construction; a difference of two can come
 * out a hair below zero, and NaN must not reach the output. */
static int64_t round_est(double x) {
        if (!(x > 0))
                return 0;
        if (x >= 9.2e18)
                return INT64_MAX;
        return (int64_t) (x + 0.5);
}

static uintptr_t call_pc(uintptr_t ret) {
        return ret ? ret - 1 : 0;
}

static uint32_t record_depth(const struct profile_record *r) {
        return r->depth > PROFILE_MAX_DEPTH ? PROFILE_MAX_DEPTH : r->depth;
}

/* Asks the caller's symbolizer; true when it named the pc. */
static bool symbolize(const struct profile *p, uintptr_t pc, char *name, size_t name_len,
                      char *where, size_t where_len) {
        if (!p->symbolize)
                return false;
        name[0] = where[0] = '\0';
        if (p->symbolize(pc, name, name_len, where, where_len, p->symbolize_ctx) != 0)
                return false;
        name[name_len - 1] = where[where_len - 1] = '\0';
        /* One line per frame whatever the symbolizer returns. */
        for (char *c = name; *c; c++)
                if (*c == '\n' || *c == '\r')
                        *c = ' ';
        for (char *c = where; *c; c++)
                if (*c == '\n' || *c == '\r')
                        *c = ' ';
        return name[0] != '\0';
}

/* "func+0x1f" -> "func" (in place). */
static void strip_offset(char *name) {
        char *plus = strrchr(name, '+');

        if (!plus || plus == name || plus[1] != '0' || plus[2] != 'x' || plus[3] == '\0')
                return;
        for (const char *c = plus + 3; *c; c++)
                if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f') || (*c >= 'A' && *c <= 'F')))
                        return;
        *plus = '\0';
}

/* The text of each frame, made once per pc: a profile of 10,000 stacks has
 * 200,000 frames and a few hundred distinct pcs, and symbolizing and
 * formatting each frame anew was most of the text writer's time.  An open-
 * addressed table of pc -> (offset, length) in one arena; when memory runs
 * out it still answers, uncached, from scratch. */
enum frame_kind {
        FRAME_TEXT,     /* "#\t0xPC\tfunc+0xOFF\tfile:line\n", or "" without a name */
        FRAME_FOLDED,   /* "func" (';' made ':'), or "0xPC" */
};

struct frame_cache {
        const struct profile *p;
        enum frame_kind kind;
        uintptr_t *pcs;         /* 0: a free slot (pc 0 is never cached) */
        uint32_t *off, *len;
        size_t slots, used;
        char *arena;
        size_t arena_len, arena_cap;
        char scratch[SYM_NAME_MAX + SYM_WHERE_MAX + 64];
};

static void frame_cache_init(struct frame_cache *fc, const struct profile *p, enum frame_kind kind) {
        *fc = (struct frame_cache) { .p = p, .kind = kind };
}

static void frame_cache_done(struct frame_cache *fc) {
        free(fc->pcs);
        free(fc->off);
        free(fc->len);
        free(fc->arena);
}

static size_t frame_make(struct frame_cache *fc, uintptr_t pc) {
        char name[SYM_NAME_MAX], where[SYM_WHERE_MAX];
        int n;

        if (!symbolize(fc->p, pc, name, sizeof(name), where, sizeof(where))) {
                if (fc->kind == FRAME_TEXT)
                        return 0;
                n = snprintf(fc->scratch, sizeof fc->scratch, "0x%" PRIxPTR, pc);
        } else if (fc->kind == FRAME_TEXT) {
                if (where[0])
                        n = snprintf(fc->scratch, sizeof fc->scratch, "#\t0x%" PRIxPTR "\t%s\t%s\n", pc, name, where);
                else
                        n = snprintf(fc->scratch, sizeof fc->scratch, "#\t0x%" PRIxPTR "\t%s\n", pc, name);
        } else {
                strip_offset(name);
                /* ';' separates frames; keep it out of names */
                for (char *c = name; *c; c++)
                        if (*c == ';')
                                *c = ':';
                n = snprintf(fc->scratch, sizeof fc->scratch, "%s", name);
        }
        return n < 0 ? 0 : (size_t) n < sizeof fc->scratch ? (size_t) n : sizeof fc->scratch - 1;
}

static bool frame_cache_grow(struct frame_cache *fc) {
        size_t slots = fc->slots ? fc->slots * 2 : 1024;
        uintptr_t *pcs = calloc(slots, sizeof(*pcs));
        uint32_t *off = malloc(slots * sizeof(*off)), *len = malloc(slots * sizeof(*len));

        if (!pcs || !off || !len) {
                free(pcs);
                free(off);
                free(len);
                return false;
        }
        for (size_t i = 0; i < fc->slots; i++) {
                size_t j;
                if (!fc->pcs[i])
                        continue;
                for (j = (fc->pcs[i] * 0x9e3779b97f4a7c15ull) >> 20 & (slots - 1); pcs[j]; j = (j + 1) & (slots - 1))
                        ;
                pcs[j] = fc->pcs[i];
                off[j] = fc->off[i];
                len[j] = fc->len[i];
        }
        free(fc->pcs);
        free(fc->off);
        free(fc->len);
        fc->pcs = pcs;
        fc->off = off;
        fc->len = len;
        fc->slots = slots;
        return true;
}

/* The frame's text (not NUL-terminated) and its length. */
static const char *frame_text(struct frame_cache *fc, uintptr_t pc, size_t *ret_len) {
        size_t j, n;

        if (pc && (fc->used + 1) * 2 > fc->slots && !frame_cache_grow(fc))
                pc = 0; /* out of memory: uncached */
        if (pc) {
                for (j = (pc * 0x9e3779b97f4a7c15ull) >> 20 & (fc->slots - 1); fc->pcs[j];
                     j = (j + 1) & (fc->slots - 1))
                        if (fc->pcs[j] == pc) {
                                *ret_len = fc->len[j];
                                return fc->arena + fc->off[j];
                        }
        }
        n = frame_make(fc, pc);
        *ret_len = n;
        if (!pc)
                return fc->scratch;
        /* >=, not >: the arena exists even for a first text of length 0,
         * whose pointer is then a real one. */
        if (fc->arena_len + n >= fc->arena_cap) {
                size_t cap = fc->arena_cap ? fc->arena_cap * 2 : 65536;
                char *a;

                while (cap <= fc->arena_len + n)
                        cap *= 2;
                if (cap > UINT32_MAX || !(a = realloc(fc->arena, cap)))
                        return fc->scratch;
                fc->arena = a;
                fc->arena_cap = cap;
        }
        memcpy(fc->arena + fc->arena_len, fc->scratch, n);
        fc->pcs[j] = pc;
        fc->off[j] = (uint32_t) fc->arena_len;
        fc->len[j] = (uint32_t) n;
        fc->arena_len += n;
        fc->used++;
        return fc->arena + fc->off[j];
}

/* "file.c:42" -> "file.c" (in place) and 42; anything else: unchanged, 0. */
static int64_t split_line(char *where) {
        char *colon = strrchr(where, ':');
        int64_t line = 0;

        if (!colon || colon == where || colon[1] == '\0')
                return 0;
        for (const char *c = colon + 1; *c; c++) {
                if (*c < '0' || *c > '9' || line > INT64_MAX / 10 - 1)
                        return 0;
                line = line * 10 + (*c - '0');
        }
        *colon = '\0';
        return line;
}

/* ---- protobuf encoder --------------------------------------------------- */

enum { PB_VARINT = 0, PB_LEN = 2 };

struct pb {
        uint8_t *buf;
        size_t len, cap;
        int err;        /* sticky */
};

static int pb_reserve(struct pb *b, size_t extra) {
        if (b->err)
                return b->err;
        if (extra > SIZE_MAX - b->len)
                return (b->err = -ENOMEM);
        size_t need = b->len + extra;
        if (need <= b->cap)
                return 0;
        size_t cap = b->cap ? b->cap : 16 * 1024;
        while (cap < need) {
                if (cap > SIZE_MAX / 2)
                        return (b->err = -ENOMEM);
                cap *= 2;
        }
        uint8_t *n = realloc(b->buf, cap);
        if (!n)
                return (b->err = -ENOMEM);
        b->buf = n;
        b->cap = cap;
        return 0;
}

static size_t varint_put(uint8_t *dst, uint64_t v) {
        size_t n = 0;

        while (v >= 0x80) {
                dst[n++] = (uint8_t) (v | 0x80);
                v >>= 7;
        }
        dst[n++] = (uint8_t) v;
        return n;
}

static void pb_varint(struct pb *b, uint64_t v) {
        if (pb_reserve(b, 10) < 0)
                return;
        b->len += varint_put(b->buf + b->len, v);
}

static void pb_key(struct pb *b, uint32_t field, unsigned wire) {
        pb_varint(b, (uint64_t) field << 3 | wire);
}

/* Scalars equal to the proto3 default (0) are omitted, as encoders do. */
static void pb_uint64(struct pb *b, uint32_t field, uint64_t v) {
        if (v == 0)
                return;
        pb_key(b, field, PB_VARINT);
        pb_varint(b, v);
}

static void pb_int64(struct pb *b, uint32_t field, int64_t v) {
        pb_uint64(b, field, (uint64_t) v);     /* negative int64: ten bytes, two's complement */
}

static void pb_bytes(struct pb *b, uint32_t field, const void *data, size_t len) {
        pb_key(b, field, PB_LEN);
        pb_varint(b, len);
        if (pb_reserve(b, len) < 0)
                return;
        if (len > 0)
                memcpy(b->buf + b->len, data, len);
        b->len += len;
}

/* A submessage (or packed field) is written in place, then its key and
 * length are slid in front of it once its size is known. */
static size_t pb_begin(struct pb *b) {
        return b->len;
}

static void pb_end(struct pb *b, uint32_t field, size_t start) {
        uint8_t hdr[20];
        size_t body, h;

        if (b->err)
                return;
        body = b->len - start;
        h = varint_put(hdr, (uint64_t) field << 3 | PB_LEN);
        h += varint_put(hdr + h, body);
        if (pb_reserve(b, h) < 0)
                return;
        memmove(b->buf + start + h, b->buf + start, body);
        memcpy(b->buf + start, hdr, h);
        b->len += h;
}

static void pb_packed(struct pb *b, uint32_t field, const uint64_t *v, size_t n) {
        if (n == 0)
                return;
        size_t s = pb_begin(b);
        for (size_t i = 0; i < n; i++)
                pb_varint(b, v[i]);
        pb_end(b, field, s);
}

/* ---- hash tables -------------------------------------------------------- */

static uint64_t hash_u64(uint64_t x) {
        x ^= x >> 33;
        x *= UINT64_C(0xff51afd7ed558ccd);
        x ^= x >> 33;
        x *= UINT64_C(0xc4ceb9fe1a85ec53);
        x ^= x >> 33;
        return x;
}

static uint64_t hash_bytes(const char *s, size_t len) {
        uint64_t h = UINT64_C(0xcbf29ce484222325);

        for (size_t i = 0; i < len; i++) {
                h ^= (uint8_t) s[i];
                h *= UINT64_C(0x100000001b3);
        }
        return h;
}

/* Open addressing, slot value 0 = empty, else index + 1. */
struct index {
        uint32_t *slots;
        size_t mask;
        size_t used;
};

static int index_grow(struct index *ix, size_t want) {
        size_t n = 16;

        while (n < want * 2) {
                if (n > SIZE_MAX / 2 / sizeof(uint32_t))
                        return -ENOMEM;
                n *= 2;
        }
        if (ix->slots && n <= ix->mask + 1)
                return 0;
        free(ix->slots);
        ix->slots = calloc(n, sizeof(uint32_t));
        if (!ix->slots)
                return -ENOMEM;
        ix->mask = n - 1;
        ix->used = 0;
        return 1;       /* emptied: the caller reinserts */
}

/* The string table of the profile: interned, index 0 is "". */
struct strtab {
        char **s;
        size_t *len;
        size_t n, cap;
        struct index ix;
};

static int strtab_rehash(struct strtab *t) {
        int r = index_grow(&t->ix, t->cap);
        if (r <= 0)
                return r;
        for (size_t i = 0; i < t->n; i++) {
                size_t h = hash_bytes(t->s[i], t->len[i]) & t->ix.mask;
                while (t->ix.slots[h])
                        h = (h + 1) & t->ix.mask;
                t->ix.slots[h] = (uint32_t) (i + 1);
        }
        return 0;
}

/* Returns the string's index, or -errno. */
static int64_t strtab_intern(struct strtab *t, const char *s, size_t len) {
        if (t->ix.slots) {
                size_t h = hash_bytes(s, len) & t->ix.mask;
                for (uint32_t v; (v = t->ix.slots[h]); h = (h + 1) & t->ix.mask) {
                        size_t i = v - 1;
                        if (t->len[i] == len && memcmp(t->s[i], s, len) == 0)
                                return (int64_t) i;
                }
        }
        if (t->n == t->cap) {
                size_t cap = t->cap ? t->cap * 2 : 64;
                if (cap > UINT32_MAX - 1)
                        return -E2BIG;
                char **ns = realloc(t->s, cap * sizeof(*ns));
                if (!ns)
                        return -ENOMEM;
                t->s = ns;
                size_t *nl = realloc(t->len, cap * sizeof(*nl));
                if (!nl)
                        return -ENOMEM;
                t->len = nl;
                t->cap = cap;
                int r = strtab_rehash(t);
                if (r < 0)
                        return r;
        }
        char *copy = malloc(len + 1);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, s, len);
        copy[len] = '\0';
        size_t i = t->n++;
        t->s[i] = copy;
        t->len[i] = len;
        size_t h = hash_bytes(s, len) & t->ix.mask;
        while (t->ix.slots[h])
                h = (h + 1) & t->ix.mask;
        t->ix.slots[h] = (uint32_t) (i + 1);
        return (int64_t) i;
}

static int64_t strtab_add(struct strtab *t, const char *s) {
        return strtab_intern(t, s, strlen(s));
}

static void strtab_free(struct strtab *t) {
        for (size_t i = 0; i < t->n; i++)
                free(t->s[i]);
        free(t->s);
        free(t->len);
        free(t->ix.slots);
}

/* ---- mappings ----------------------------------------------------------- */

struct mapping {
        uint64_t start, limit, offset;
        int64_t file_idx, build_id_idx;
};

static const char *parse_hex(const char *p, const char *end, uint64_t *ret) {
        uint64_t v = 0;
        const char *s = p;

        for (; p < end; p++) {
                unsigned d;
                if (*p >= '0' && *p <= '9')
                        d = (unsigned) (*p - '0');
                else if (*p >= 'a' && *p <= 'f')
                        d = (unsigned) (*p - 'a' + 10);
                else if (*p >= 'A' && *p <= 'F')
                        d = (unsigned) (*p - 'A' + 10);
                else
                        break;
                if (v >> 60)
                        return NULL;
                v = v << 4 | d;
        }
        if (p == s)
                return NULL;
        *ret = v;
        return p;
}

static const char *skip_field(const char *p, const char *end) {
        while (p < end && *p == ' ')
                p++;
        while (p < end && *p != ' ')
                p++;
        return p;
}

bool profile_parse_maps_line(const char *p, const char *end, uint64_t *start, uint64_t *limit,
                            uint64_t *offset, const char **path, size_t *path_len) {
        const char *perms;

        p = parse_hex(p, end, start);
        if (!p || p >= end || *p != '-')
                return false;
        p = parse_hex(p + 1, end, limit);
        if (!p || p >= end || *p != ' ')
                return false;
        perms = ++p;
        while (p < end && *p != ' ')
                p++;
        if (!memchr(perms, 'x', (size_t) (p - perms)))
                return false;
        while (p < end && *p == ' ')
                p++;
        p = parse_hex(p, end, offset);
        if (!p)
                return false;
        p = skip_field(p, end);         /* dev */
        p = skip_field(p, end);         /* inode */
        while (p < end && *p == ' ')
                p++;
        if (p >= end || *p != '/')
                return false;
        *path = p;
        *path_len = (size_t) (end - p);
        return *start < *limit;
}

static void hex_encode(char *dst, const uint8_t *src, size_t n) {
        static const char digits[] = "0123456789abcdef";

        for (size_t i = 0; i < n; i++) {
                dst[2 * i] = digits[src[i] >> 4];
                dst[2 * i + 1] = digits[src[i] & 15];
        }
        dst[2 * n] = '\0';
}

static int mappings_parse(const struct profile *p, struct strtab *st,
                          struct mapping **ret, size_t *ret_n) {
        struct mapping *m = NULL;
        size_t n = 0, cap = 0;
        const char *s = p->maps_text, *end = s ? s + p->maps_len : NULL;
        int64_t empty = strtab_add(st, "");

        if (empty < 0)
                return (int) empty;
        while (s && s < end) {
                const char *eol = memchr(s, '\n', (size_t) (end - s));
                const char *line_end = eol ? eol : end;
                uint64_t start, limit, offset;
                const char *path;
                size_t path_len;

                if (profile_parse_maps_line(s, line_end, &start, &limit, &offset, &path, &path_len)) {
                        int64_t file_idx = strtab_intern(st, path, path_len), bid_idx = -1;
                        if (file_idx < 0) {
                                free(m);
                                return (int) file_idx;
                        }
                        for (size_t i = 0; i < n; i++)
                                if (m[i].file_idx == file_idx) {
                                        bid_idx = m[i].build_id_idx;
                                        break;
                                }
                        if (bid_idx < 0) {
                                char full[PATH_MAX];
                                const char *root = p->root ? p->root : "";
                                uint8_t id[BUILD_ID_MAX];
                                char hex[2 * BUILD_ID_MAX + 1];
                                ssize_t r = p->build_id ? p->build_id(start, id, sizeof(id), p->build_id_ctx)
                                                        : -ENODATA;

                                if (r <= 0 && path_len < sizeof(full)) {
                                        int k = snprintf(full, sizeof(full), "%s%.*s", root, (int) path_len, path);
                                        if (k > 0 && (size_t) k < sizeof(full))
                                                r = profile_read_build_id(full, id, sizeof(id));
                                }
                                if (r > 0) {
                                        hex_encode(hex, id, (size_t) r);
                                        bid_idx = strtab_add(st, hex);
                                } else
                                        bid_idx = empty;
                                if (bid_idx < 0) {
                                        free(m);
                                        return (int) bid_idx;
                                }
                        }
                        if (n == cap) {
                                size_t nc = cap ? cap * 2 : 32;
                                struct mapping *nm = realloc(m, nc * sizeof(*nm));
                                if (!nm) {
                                        free(m);
                                        return -ENOMEM;
                                }
                                m = nm;
                                cap = nc;
                        }
                        m[n++] = (struct mapping) {
                                .start = start, .limit = limit, .offset = offset,
                                .file_idx = file_idx, .build_id_idx = bid_idx,
                        };
                }
                s = eol ? eol + 1 : end;
        }
        *ret = m;
        *ret_n = n;
        return 0;
}

/* Mapping id (1-based) holding addr, or 0. */
static uint64_t mapping_find(const struct mapping *m, size_t n, uint64_t addr) {
        for (size_t i = 0; i < n; i++)
                if (addr >= m[i].start && addr < m[i].limit)
                        return i + 1;
        return 0;
}

/* ---- pprof -------------------------------------------------------------- */

/* profile.proto field numbers */
enum {
        PROFILE_SAMPLE_TYPE = 1, PROFILE_SAMPLE = 2, PROFILE_MAPPING = 3, PROFILE_LOCATION = 4,
        PROFILE_FUNCTION = 5, PROFILE_STRING_TABLE = 6, PROFILE_TIME_NANOS = 9,
        PROFILE_PERIOD_TYPE = 11, PROFILE_PERIOD = 12, PROFILE_COMMENT = 13,
        PROFILE_DEFAULT_SAMPLE_TYPE = 14,
        VALUE_TYPE_TYPE = 1, VALUE_TYPE_UNIT = 2,
        SAMPLE_LOCATION_ID = 1, SAMPLE_VALUE = 2,
        MAPPING_ID = 1, MAPPING_MEMORY_START = 2, MAPPING_MEMORY_LIMIT = 3,
        MAPPING_FILE_OFFSET = 4, MAPPING_FILENAME = 5, MAPPING_BUILD_ID = 6,
        LOCATION_ID = 1, LOCATION_MAPPING_ID = 2, LOCATION_ADDRESS = 3, LOCATION_LINE = 4,
        LINE_FUNCTION_ID = 1, LINE_LINE = 2,
        FUNCTION_ID = 1, FUNCTION_NAME = 2, FUNCTION_SYSTEM_NAME = 3, FUNCTION_FILENAME = 4,
};

/* Distinct return addresses; id = index + 1. */
struct locs {
        uintptr_t *pc;
        size_t n, cap;
        struct index ix;
};

static int64_t locs_intern(struct locs *l, uintptr_t pc) {
        size_t h = hash_u64(pc) & l->ix.mask;

        for (uint32_t v; (v = l->ix.slots[h]); h = (h + 1) & l->ix.mask)
                if (l->pc[v - 1] == pc)
                        return v;
        if (l->n == l->cap)
                return -ENOBUFS;        /* cannot happen: sized for every pc */
        l->pc[l->n++] = pc;
        l->ix.slots[h] = (uint32_t) l->n;
        return (int64_t) l->n;
}

/* Functions keyed by (name, file) string indexes; id = index + 1. */
struct funcs {
        int64_t *name_idx, *file_idx;
        size_t n, cap;
        struct index ix;
};

static int64_t funcs_intern(struct funcs *f, int64_t name_idx, int64_t file_idx) {
        size_t h = hash_u64((uint64_t) name_idx * 31 + (uint64_t) file_idx) & f->ix.mask;

        for (uint32_t v; (v = f->ix.slots[h]); h = (h + 1) & f->ix.mask)
                if (f->name_idx[v - 1] == name_idx && f->file_idx[v - 1] == file_idx)
                        return v;
        if (f->n == f->cap)
                return -ENOBUFS;
        f->name_idx[f->n] = name_idx;
        f->file_idx[f->n] = file_idx;
        f->n++;
        f->ix.slots[h] = (uint32_t) f->n;
        return (int64_t) f->n;
}

static void pb_value_type(struct pb *b, uint32_t field, int64_t type, int64_t unit) {
        size_t s = pb_begin(b);
        pb_int64(b, VALUE_TYPE_TYPE, type);
        pb_int64(b, VALUE_TYPE_UNIT, unit);
        pb_end(b, field, s);
}

/* Symbolizes one location (when the caller can) as a function + line.  The
 * mappings still say has_functions=false, so pprof re-symbolizes from the
 * binary when it has it and keeps these names when it does not. */
static int location_line(const struct profile *p, uintptr_t pc, struct strtab *st, struct funcs *f,
                         int64_t *ret_func, int64_t *ret_line) {
        char name[SYM_NAME_MAX], where[SYM_WHERE_MAX];
        int64_t name_idx, file_idx, line;

        *ret_func = *ret_line = 0;
        if (!symbolize(p, pc, name, sizeof(name), where, sizeof(where)))
                return 0;
        strip_offset(name);
        line = split_line(where);
        name_idx = strtab_add(st, name);
        if (name_idx < 0)
                return (int) name_idx;
        file_idx = strtab_add(st, where);
        if (file_idx < 0)
                return (int) file_idx;
        *ret_func = funcs_intern(f, name_idx, file_idx);
        if (*ret_func < 0)
                return (int) *ret_func;
        *ret_line = line;
        return 0;
}

static int gzip_write(int fd, const uint8_t *data, size_t len) {
        z_stream z = { 0 };
        uint8_t *obuf;
        int zr = Z_OK, r = 0;

        obuf = malloc(OUT_BUF_BYTES);
        if (!obuf)
                return -ENOMEM;
        /* 15 + 16: a gzip wrapper, which is what pprof expects of .pb.gz */
        if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
                free(obuf);
                return -ENOMEM;
        }
        do {
                size_t chunk = len > (1u << 30) ? (1u << 30) : len;
                z.next_in = (Bytef *) data;
                z.avail_in = (uInt) chunk;
                data += chunk;
                len -= chunk;
                int flush = len == 0 ? Z_FINISH : Z_NO_FLUSH;
                do {
                        z.next_out = obuf;
                        z.avail_out = OUT_BUF_BYTES;
                        zr = deflate(&z, flush);
                        if (zr == Z_STREAM_ERROR) {
                                r = -EIO;
                                goto done;
                        }
                        r = write_all(fd, obuf, OUT_BUF_BYTES - z.avail_out);
                        if (r < 0)
                                goto done;
                } while (z.avail_out == 0);
        } while (len > 0);
        if (zr != Z_STREAM_END)
                r = -EIO;
done:
        deflateEnd(&z);
        free(obuf);
        return r;
}

int profile_write_pprof(int fd, const struct profile *p) {
        struct pb b = { 0 };
        struct strtab st = { 0 };
        struct locs locs = { 0 };
        struct funcs funcs = { 0 };
        struct mapping *maps = NULL;
        struct profile_line *lines = NULL;
        size_t n_maps = 0, total_pcs = 0;
        int64_t idx[13];
        int r;

        if (!p || (p->n_records > 0 && !p->records))
                return -EINVAL;

        /* Fixed strings first: "" must be index 0. */
        static const char *const fixed[] = {
                "", "alloc_objects", "count", "alloc_space", "bytes", "inuse_objects",
                "inuse_space", "space", "memd heap profile",
        };
        for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
                idx[i] = strtab_add(&st, fixed[i]);
                if (idx[i] < 0) {
                        r = (int) idx[i];
                        goto fail;
                }
        }
        enum { S_EMPTY, S_ALLOC_OBJECTS, S_COUNT, S_ALLOC_SPACE, S_BYTES, S_INUSE_OBJECTS,
               S_INUSE_SPACE, S_SPACE, S_COMMENT };

        r = mappings_parse(p, &st, &maps, &n_maps);
        if (r < 0)
                goto fail;

        for (size_t i = 0; i < p->n_records; i++)
                total_pcs += record_depth(&p->records[i]);
        if (total_pcs > UINT32_MAX / 4) {
                r = -E2BIG;
                goto fail;
        }
        locs.cap = funcs.cap = total_pcs;
        if (total_pcs > 0) {
                locs.pc = malloc(total_pcs * sizeof(*locs.pc));
                funcs.name_idx = malloc(total_pcs * sizeof(*funcs.name_idx));
                funcs.file_idx = malloc(total_pcs * sizeof(*funcs.file_idx));
                if (!locs.pc || !funcs.name_idx || !funcs.file_idx) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        if (index_grow(&locs.ix, total_pcs) < 0 || index_grow(&funcs.ix, total_pcs) < 0) {
                r = -ENOMEM;
                goto fail;
        }

        pb_value_type(&b, PROFILE_SAMPLE_TYPE, idx[S_ALLOC_OBJECTS], idx[S_COUNT]);
        pb_value_type(&b, PROFILE_SAMPLE_TYPE, idx[S_ALLOC_SPACE], idx[S_BYTES]);
        pb_value_type(&b, PROFILE_SAMPLE_TYPE, idx[S_INUSE_OBJECTS], idx[S_COUNT]);
        pb_value_type(&b, PROFILE_SAMPLE_TYPE, idx[S_INUSE_SPACE], idx[S_BYTES]);

        for (size_t i = 0; i < p->n_records; i++) {
                const struct profile_record *rec = &p->records[i];
                uint32_t depth = record_depth(rec);
                uint64_t ids[PROFILE_MAX_DEPTH], values[4];

                if (depth == 0)
                        continue;
                for (uint32_t k = 0; k < depth; k++) {
                        int64_t id = locs_intern(&locs, rec->pcs[k]);
                        if (id < 0) {
                                r = (int) id;
                                goto fail;
                        }
                        ids[k] = (uint64_t) id;
                }
                values[0] = (uint64_t) round_est(rec->alloc_objects_est);
                values[1] = (uint64_t) round_est(rec->alloc_bytes_est);
                values[2] = (uint64_t) round_est(rec->alloc_objects_est - rec->free_objects_est);
                values[3] = (uint64_t) round_est(rec->alloc_bytes_est - rec->free_bytes_est);
                size_t s = pb_begin(&b);
                pb_packed(&b, SAMPLE_LOCATION_ID, ids, depth);
                pb_packed(&b, SAMPLE_VALUE, values, 4);
                pb_end(&b, PROFILE_SAMPLE, s);
        }

        for (size_t i = 0; i < n_maps; i++) {
                size_t s = pb_begin(&b);
                pb_uint64(&b, MAPPING_ID, i + 1);
                pb_uint64(&b, MAPPING_MEMORY_START, maps[i].start);
                pb_uint64(&b, MAPPING_MEMORY_LIMIT, maps[i].limit);
                pb_uint64(&b, MAPPING_FILE_OFFSET, maps[i].offset);
                pb_int64(&b, MAPPING_FILENAME, maps[i].file_idx);
                pb_int64(&b, MAPPING_BUILD_ID, maps[i].build_id_idx);
                pb_end(&b, PROFILE_MAPPING, s);
        }

        if (p->lines) {
                lines = malloc(PROFILE_MAX_LINES * sizeof(*lines));
                if (!lines) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        for (size_t i = 0; i < locs.n; i++) {
                uintptr_t pc = call_pc(locs.pc[i]);
                int64_t func, line;
                int n = 0;

                if (lines)
                        n = p->lines(pc, lines, PROFILE_MAX_LINES, p->symbolize_ctx);
                if (n > 0) {
                        /* Inlined frames: one Line each, innermost first. */
                        size_t s = pb_begin(&b);
                        pb_uint64(&b, LOCATION_ID, i + 1);
                        pb_uint64(&b, LOCATION_MAPPING_ID, mapping_find(maps, n_maps, pc));
                        pb_uint64(&b, LOCATION_ADDRESS, pc);
                        for (int k = 0; k < n && k < PROFILE_MAX_LINES; k++) {
                                int64_t name_idx = strtab_add(&st, lines[k].name);
                                int64_t file_idx = strtab_add(&st, lines[k].file);
                                size_t l;

                                if (name_idx < 0 || file_idx < 0) {
                                        r = -ENOMEM;
                                        goto fail;
                                }
                                func = funcs_intern(&funcs, name_idx, file_idx);
                                if (func < 0) {
                                        r = (int) func;
                                        goto fail;
                                }
                                l = pb_begin(&b);
                                pb_int64(&b, LINE_FUNCTION_ID, func);
                                pb_int64(&b, LINE_LINE, lines[k].line);
                                pb_end(&b, LOCATION_LINE, l);
                        }
                        pb_end(&b, PROFILE_LOCATION, s);
                        continue;
                }
                r = location_line(p, pc, &st, &funcs, &func, &line);
                if (r < 0)
                        goto fail;
                size_t s = pb_begin(&b);
                pb_uint64(&b, LOCATION_ID, i + 1);
                pb_uint64(&b, LOCATION_MAPPING_ID, mapping_find(maps, n_maps, pc));
                pb_uint64(&b, LOCATION_ADDRESS, pc);
                if (func > 0) {
                        size_t l = pb_begin(&b);
                        pb_int64(&b, LINE_FUNCTION_ID, func);
                        pb_int64(&b, LINE_LINE, line);
                        pb_end(&b, LOCATION_LINE, l);
                }
                pb_end(&b, PROFILE_LOCATION, s);
        }

        for (size_t i = 0; i < funcs.n; i++) {
                size_t s = pb_begin(&b);
                pb_uint64(&b, FUNCTION_ID, i + 1);
                pb_int64(&b, FUNCTION_NAME, funcs.name_idx[i]);
                pb_int64(&b, FUNCTION_SYSTEM_NAME, funcs.name_idx[i]);
                pb_int64(&b, FUNCTION_FILENAME, funcs.file_idx[i]);
                pb_end(&b, PROFILE_FUNCTION, s);
        }

        pb_int64(&b, PROFILE_TIME_NANOS, p->time_ns);
        pb_value_type(&b, PROFILE_PERIOD_TYPE, idx[S_SPACE], idx[S_BYTES]);
        pb_int64(&b, PROFILE_PERIOD, p->rate_bytes > INT64_MAX ? INT64_MAX : (int64_t) p->rate_bytes);
        uint64_t comment = (uint64_t) idx[S_COMMENT];
        pb_packed(&b, PROFILE_COMMENT, &comment, 1);
        pb_int64(&b, PROFILE_DEFAULT_SAMPLE_TYPE, idx[S_INUSE_SPACE]);

        /* Last, so every string interned above is in it. */
        for (size_t i = 0; i < st.n; i++)
                pb_bytes(&b, PROFILE_STRING_TABLE, st.s[i], st.len[i]);

        r = b.err;
        if (r == 0)
                r = gzip_write(fd, b.buf, b.len);
fail:
        free(b.buf);
        strtab_free(&st);
        free(locs.pc);
        free(locs.ix.slots);
        free(funcs.name_idx);
        free(funcs.file_idx);
        free(funcs.ix.slots);
        free(maps);
        free(lines);
        return r;
}

/* ---- legacy text -------------------------------------------------------- */

struct order {
        uint64_t inuse_bytes;
        size_t idx;
};

static int order_cmp(const void *a, const void *b) {
        const struct order *x = a, *y = b;

        if (x->inuse_bytes != y->inuse_bytes)
                return x->inuse_bytes > y->inuse_bytes ? -1 : 1;
        return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* pprof rejects "0: N" (a count of zero with bytes), so bytes follow counts. */
static void record_raw(const struct profile_record *r, uint64_t *ic, uint64_t *ib,
                       uint64_t *ac, uint64_t *ab) {
        *ac = r->alloc_count;
        *ab = r->alloc_count ? r->alloc_bytes : 0;
        *ic = sub_sat(r->alloc_count, r->free_count);
        *ib = *ic ? sub_sat(r->alloc_bytes, r->free_bytes) : 0;
}

/* Go's %v of a float64: shortest digits that read back exactly, %e form
 * below 1e-4 or from 1e+06 up. */
static void format_go_float(char *buf, size_t len, double v) {
        int digits, exp;
        char *e;

        if (v != v) {
                snprintf(buf, len, "NaN");
                return;
        }
        if (v > 1.7976931348623157e308 || v < -1.7976931348623157e308) {
                snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
                return;
        }
        if (v == 0) {
                snprintf(buf, len, "0");
                return;
        }
        for (digits = 1; digits < 17; digits++) {
                snprintf(buf, len, "%.*e", digits - 1, v);
                if (strtod(buf, NULL) == v)
                        break;
        }
        snprintf(buf, len, "%.*e", digits - 1, v);
        e = strchr(buf, 'e');
        exp = e ? atoi(e + 1) : 0;
        if (exp >= -4 && exp < 6)
                snprintf(buf, len, "%.*f", digits - 1 - exp > 0 ? digits - 1 - exp : 0, v);
        for (char *c = buf; *c; c++)    /* a host process may have set LC_NUMERIC */
                if (*c == ',')
                        *c = '.';
}

static void out_u64_array(struct out *o, const char *name, const uint64_t *v, size_t n) {
        out_printf(o, "# %s = [", name);
        for (size_t i = 0; i < n; i++)
                out_printf(o, i ? " %" PRIu64 : "%" PRIu64, v[i]);
        out_puts(o, "]\n");
}

static void out_memstats(struct out *o, const struct memd_memstats *s) {
        char frac[64];

        out_puts(o, "\n# memd.MemStats\n");
#define U64(f) out_printf(o, "# " #f " = %" PRIu64 "\n", (uint64_t) s->f)
        U64(Alloc);
        U64(TotalAlloc);
        U64(Sys);
        U64(Mallocs);
        U64(Frees);
        U64(HeapAlloc);
        U64(HeapSys);
        U64(HeapIdle);
        U64(HeapInuse);
        U64(HeapReleased);
        U64(HeapObjects);
        U64(BuckHashSys);
        U64(NextGC);
        U64(LastGC);
        U64(PauseTotalNs);
        out_u64_array(o, "PauseNs", s->PauseNs, sizeof(s->PauseNs) / sizeof(s->PauseNs[0]));
        out_u64_array(o, "PauseEnd", s->PauseEnd, sizeof(s->PauseEnd) / sizeof(s->PauseEnd[0]));
        U64(NumGC);
        U64(NumForcedGC);
        format_go_float(frac, sizeof(frac), s->GCCPUFraction);
        out_printf(o, "# GCCPUFraction = %s\n", frac);
        U64(RSS);
        U64(RssAnon);
        U64(LazyFree);
        U64(Threads);
#undef U64
}

/*
 * Layout: header, records, the MemStats trailer (all "#" lines, which pprof's
 * record loop skips, right after the records as Go puts runtime.MemStats),
 * then MAPPED_LIBRARIES: and the maps to the end of the file.  pprof treats
 * everything after that sentinel as maps lines, so nothing of ours follows it.
 */
int profile_write_text(int fd, const struct profile *p) {
        struct frame_cache fc;
        struct order *ord = NULL;
        size_t n = 0;
        uint64_t tic = 0, tib = 0, tac = 0, tab = 0;
        struct out o;
        int r;

        if (!p || (p->n_records > 0 && !p->records))
                return -EINVAL;
        if (p->n_records > 0) {
                ord = calloc(p->n_records, sizeof(*ord));
                if (!ord)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < p->n_records; i++) {
                uint64_t ic, ib, ac, ab;
                if (record_depth(&p->records[i]) == 0)
                        continue;
                record_raw(&p->records[i], &ic, &ib, &ac, &ab);
                tic += ic;
                tib += ib;
                tac += ac;
                tab += ab;
                ord[n++] = (struct order) { .inuse_bytes = ib, .idx = i };
        }
        if (n > 1)
                qsort(ord, n, sizeof(*ord), order_cmp);

        r = out_init(&o, fd);
        if (r < 0) {
                free(ord);
                return r;
        }
        frame_cache_init(&fc, p, FRAME_TEXT);
        /* 2*rate: early C++ heap profiles printed that, so pprof halves it. */
        out_printf(&o, "heap profile: %" PRIu64 ": %" PRIu64 " [%" PRIu64 ": %" PRIu64 "] @ heap/%" PRIu64 "\n",
                   tic, tib, tac, tab,
                   p->rate_bytes > UINT64_MAX / 2 ? UINT64_MAX : 2 * p->rate_bytes);

        for (size_t i = 0; i < n && !o.err; i++) {
                const struct profile_record *rec = &p->records[ord[i].idx];
                uint32_t depth = record_depth(rec);
                uint64_t ic, ib, ac, ab;

                record_raw(rec, &ic, &ib, &ac, &ab);
                out_u64(&o, ic);
                out_write(&o, ": ", 2);
                out_u64(&o, ib);
                out_write(&o, " [", 2);
                out_u64(&o, ac);
                out_write(&o, ": ", 2);
                out_u64(&o, ab);
                out_write(&o, "] @", 3);
                for (uint32_t k = 0; k < depth; k++) {
                        out_write(&o, " ", 1);
                        out_hex(&o, rec->pcs[k]);
                }
                out_write(&o, "\n", 1);
                for (uint32_t k = 0; k < depth; k++) {
                        size_t len;
                        const char *t = frame_text(&fc, call_pc(rec->pcs[k]), &len);
                        out_write(&o, t, len);
                }
                out_write(&o, "\n", 1);
        }

        if (p->stats)
                out_memstats(&o, p->stats);

        out_puts(&o, "\nMAPPED_LIBRARIES:\n");
        if (p->maps_text && p->maps_len > 0) {
                out_write(&o, p->maps_text, p->maps_len);
                if (p->maps_text[p->maps_len - 1] != '\n')
                        out_puts(&o, "\n");
        }

        frame_cache_done(&fc);
        free(ord);
        return out_done(&o);
}

/* ---- folded ------------------------------------------------------------- */

int profile_write_folded(int fd, const struct profile *p) {
        struct frame_cache fc;
        struct out o;
        int r;

        if (!p || (p->n_records > 0 && !p->records))
                return -EINVAL;
        r = out_init(&o, fd);
        if (r < 0)
                return r;
        frame_cache_init(&fc, p, FRAME_FOLDED);
        for (size_t i = 0; i < p->n_records && !o.err; i++) {
                const struct profile_record *rec = &p->records[i];
                uint32_t depth = record_depth(rec);
                int64_t inuse = round_est(rec->alloc_bytes_est - rec->free_bytes_est);

                if (depth == 0 || inuse <= 0)
                        continue;
                for (uint32_t k = depth; k-- > 0;) {
                        size_t len;
                        const char *t = frame_text(&fc, call_pc(rec->pcs[k]), &len);

                        if (k + 1 != depth)
                                out_write(&o, ";", 1);
                        out_write(&o, t, len);
                }
                out_write(&o, " ", 1);
                out_u64(&o, (uint64_t) inuse);
                out_write(&o, "\n", 1);
        }
        frame_cache_done(&fc);
        return out_done(&o);
}

/* ---- build-id ----------------------------------------------------------- */

static uint64_t align_up(uint64_t v, uint64_t a) {
        return (v + a - 1) & ~(a - 1);
}

/* Finds NT_GNU_BUILD_ID in notes[0, size).  Returns its length, -ENODATA
 * if it is not there, or -ENOBUFS. */
static ssize_t notes_find(const uint8_t *notes, uint64_t size, uint64_t align, uint8_t *buf, size_t buf_len) {
        uint64_t pos = 0;

        align = align == 8 ? 8 : 4;     /* 0 and 1 mean 4 in practice */
        while (size - pos >= sizeof(Elf64_Nhdr)) {
                Elf64_Nhdr nh;
                uint64_t name_off, desc_off;

                memcpy(&nh, notes + pos, sizeof(nh));
                name_off = pos + sizeof(nh);
                desc_off = align_up(name_off + nh.n_namesz, align);
                if (desc_off > size || nh.n_descsz > size - desc_off)
                        break;
                if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
                    memcmp(notes + name_off, "GNU", 4) == 0 && nh.n_descsz > 0) {
                        if (nh.n_descsz > buf_len)
                                return -ENOBUFS;
                        memcpy(buf, notes + desc_off, nh.n_descsz);
                        return (ssize_t) nh.n_descsz;
                }
                pos = align_up(desc_off + nh.n_descsz, align);
        }
        return -ENODATA;
}

/* Scans one note area of a file for NT_GNU_BUILD_ID.  Returns its length,
 * -ENODATA if it is not there, or -errno. */
static ssize_t notes_scan(int fd, uint64_t off, uint64_t size, uint64_t align,
                          uint8_t *buf, size_t buf_len) {
        uint8_t *notes;
        ssize_t r;

        if (size < sizeof(Elf64_Nhdr) || size > NOTE_MAX_BYTES)
                return -ENODATA;
        notes = malloc(size);
        if (!notes)
                return -ENOMEM;
        r = pread_full(fd, notes, size, off);
        if (r >= 0)
                r = notes_find(notes, (uint64_t) r < size ? (uint64_t) r : size, align, buf, buf_len);
        free(notes);
        return r;
}

struct loaded_query {
        uintptr_t addr;
        uint8_t *buf;
        size_t buf_len;
        ssize_t r;
};

static int loaded_object(struct dl_phdr_info *info, size_t size, void *data) {
        struct loaded_query *q = data;
        bool inside = false;

        (void) size;
        for (int i = 0; i < info->dlpi_phnum && !inside; i++) {
                const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
                uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
                inside = ph->p_type == PT_LOAD && q->addr >= (lo & ~(uintptr_t) 4095) && q->addr < lo + ph->p_memsz;
        }
        if (!inside)
                return 0;
        for (int i = 0; i < info->dlpi_phnum; i++) {
                const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
                if (ph->p_type != PT_NOTE || ph->p_filesz < sizeof(Elf64_Nhdr) || ph->p_filesz > NOTE_MAX_BYTES)
                        continue;
                q->r = notes_find((const uint8_t *) (info->dlpi_addr + ph->p_vaddr), ph->p_filesz, ph->p_align,
                                  q->buf, q->buf_len);
                if (q->r != -ENODATA)
                        break;
        }
        return 1; /* the object holding addr: stop */
}

ssize_t profile_loaded_build_id(uintptr_t addr, uint8_t *buf, size_t buf_len) {
        struct loaded_query q = { .addr = addr, .buf = buf, .buf_len = buf_len, .r = -ENODATA };

        return dl_iterate_phdr(loaded_object, &q) ? q.r : -ENOENT;
}

ssize_t profile_read_build_id(const char *path, uint8_t *buf, size_t buf_len) {
        Elf64_Ehdr eh;
        struct stat sb;
        ssize_t r;
        int fd;

        if (!path || (!buf && buf_len > 0))
                return -EINVAL;
        /* O_NONBLOCK: a FIFO in a maps line must not hang the writer. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &sb) < 0) {
                r = -errno;
                goto done;
        }
        if (!S_ISREG(sb.st_mode)) {
                r = S_ISDIR(sb.st_mode) ? -EISDIR : -ENOEXEC;
                goto done;
        }
        r = pread_full(fd, &eh, sizeof(eh), 0);
        if (r < 0)
                goto done;
        if ((size_t) r < EI_NIDENT || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) {
                r = -ENOEXEC;
                goto done;
        }
        if (eh.e_ident[EI_CLASS] != ELFCLASS64 ||
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            eh.e_ident[EI_DATA] != ELFDATA2LSB
#else
            eh.e_ident[EI_DATA] != ELFDATA2MSB
#endif
            ) {
                r = -ENOTSUP;
                goto done;
        }
        if ((size_t) r < sizeof(eh)) {
                r = -ENOEXEC;
                goto done;
        }

        /* Segments first: loaded objects always have them; sections may be stripped. */
        if (eh.e_phoff && eh.e_phentsize >= sizeof(Elf64_Phdr)) {
                for (uint32_t i = 0; i < eh.e_phnum; i++) {
                        Elf64_Phdr ph;
                        r = pread_full(fd, &ph, sizeof(ph), eh.e_phoff + (uint64_t) i * eh.e_phentsize);
                        if (r < 0)
                                goto done;
                        if ((size_t) r < sizeof(ph))
                                break;
                        if (ph.p_type != PT_NOTE)
                                continue;
                        r = notes_scan(fd, ph.p_offset, ph.p_filesz, ph.p_align, buf, buf_len);
                        if (r != -ENODATA)
                                goto done;
                }
        }

        if (eh.e_shoff && eh.e_shentsize >= sizeof(Elf64_Shdr)) {
                uint64_t shnum = eh.e_shnum;
                Elf64_Shdr sh;

                if (shnum == 0) {       /* more than SHN_LORESERVE: the count is in section 0 */
                        r = pread_full(fd, &sh, sizeof(sh), eh.e_shoff);
                        if (r < 0)
                                goto done;
                        shnum = (size_t) r == sizeof(sh) ? sh.sh_size : 0;
                        if (shnum > 1u << 20)
                                shnum = 1u << 20;
                }
                for (uint64_t i = 0; i < shnum; i++) {
                        r = pread_full(fd, &sh, sizeof(sh), eh.e_shoff + i * eh.e_shentsize);
                        if (r < 0)
                                goto done;
                        if ((size_t) r < sizeof(sh))
                                break;
                        if (sh.sh_type != SHT_NOTE)
                                continue;
                        r = notes_scan(fd, sh.sh_offset, sh.sh_size, sh.sh_addralign, buf, buf_len);
                        if (r != -ENODATA)
                                goto done;
                }
        }
        r = -ENODATA;
done:
        close(fd);
        return r;
}
