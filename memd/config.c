/* config.c - memd.conf and policy.d/NAME.policy: read with inih, checked line by line, matched to a process, layered into its policy. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "memd-config.h"

/*
 * inih splits "Key = Value", strips blanks and ';' comments, and hands us
 * (section, key, value) -- but no line numbers, and nothing for section
 * lines or continuation lines.  So inih reads through our own reader
 * (parser_read), which counts lines and judges each line's shape before inih
 * sees it: a line it finds wrong is reported with its number and handed to
 * inih as blank.  The handler (parser_handle) then only checks keys and
 * values, and the current line number is still the reader's.
 */

#define SOURCE_DEFAULT "default"

enum match_key { MATCH_COMM, MATCH_EXECUTABLE, MATCH_UNIT, MATCH_USER, _MATCH_KEY_MAX };

static const char *const match_key_names[_MATCH_KEY_MAX] = {
        [MATCH_COMM] = "Comm",
        [MATCH_EXECUTABLE] = "Executable",
        [MATCH_UNIT] = "Unit",
        [MATCH_USER] = "User",
};

static const struct {
        const char *name;
        const char *kebab;
        const char *expects;    /* the error message's "what it should be" */
} policy_keys[_POLICY_KEY_MAX] = {
        [POLICY_MEMORY_LIMIT] = { "MemoryLimit", "memory-limit", "not a byte count (e.g. 256M) or off" },
        [POLICY_IDLE_MEMORY_MAX] = { "IdleMemoryMax", "idle-memory-max", "not a byte count (e.g. 32M)" },
        [POLICY_IDLE_TIMEOUT] = { "IdleTimeout", "idle-timeout", "not a duration (e.g. 30s, 5min, 500ms) or infinity" },
        [POLICY_RECLAIM_ON_PRESSURE] = { "ReclaimOnPressure", "reclaim-on-pressure", "not a boolean (yes/no)" },
        [POLICY_GC_PERCENT] = { "GCPercent", "gc-percent", "not a percentage >= 0 or off" },
        [POLICY_PROFILE_RATE] = { "ProfileRate", "profile-rate", "not a byte count (e.g. 512K, 1 for every allocation, 0 for off)" },
};

/* One file that loaded without error. */
struct config_file {
        char *path;
        struct policy policy;                   /* only the keys in set[] mean anything */
        bool set[_POLICY_KEY_MAX];
        char *sources[_POLICY_KEY_MAX];         /* "PATH:LINE", owned; policy.source[] points here */
        bool given[_MATCH_KEY_MAX];
        char **globs[_MATCH_KEY_MAX];           /* Comm, Executable, Unit */
        size_t n_globs[_MATCH_KEY_MAX];
        uid_t *uids;                            /* User */
        size_t n_uids;
};

struct config {
        struct config_file *main;               /* memd.conf; NULL if absent or bad */
        struct config_file **files;             /* policy.d, the good ones, in strcmp order */
        size_t n_files;
};

enum section { SECTION_NONE, SECTION_MATCH, SECTION_POLICY, SECTION_BAD };

struct parser {
        const char *path;
        bool is_main;                           /* memd.conf: [Policy] only */
        const char *buf;
        size_t len, pos;
        unsigned line;
        enum section section;
        bool seen_match, seen_policy;
        bool key_seen;                          /* since the section header: inih would take an indented line as a continuation */
        unsigned n_errors;
        bool oom;
        struct config_file *file;
        config_error_fn err;
        void *userdata;
};

/* ---- values ---------------------------------------------------------------- */

const char *policy_key_name(enum policy_key k) {
        return (unsigned) k < _POLICY_KEY_MAX ? policy_keys[k].name : NULL;
}

const char *policy_key_kebab_name(enum policy_key k) {
        return (unsigned) k < _POLICY_KEY_MAX ? policy_keys[k].kebab : NULL;
}

int policy_key_from_name(const char *name) {
        for (int k = 0; k < _POLICY_KEY_MAX && name; k++)
                if (!strcmp(name, policy_keys[k].name) || !strcmp(name, policy_keys[k].kebab))
                        return k;
        return -EINVAL;
}

/* A run of decimal digits, nothing before it (strtoull would take blanks and
 * "-5"); *end after it.  0, -EINVAL or -ERANGE. */
static int parse_digits(const char *s, uint64_t *ret, const char **end) {
        unsigned long long v;
        char *e;

        if (!s || !isdigit((unsigned char) *s))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &e, 10);
        if (errno == ERANGE)
                return -ERANGE;
        *ret = v;
        *end = e;
        return 0;
}

/* As libmemd's MEMD_PROFILE_RATE and systemd read sizes: binary multiples,
 * "512K" = "512KiB" = 524288, a bare "B" allowed, case-insensitive suffix. */
int config_parse_bytes(const char *s, uint64_t *ret_bytes) {
        static const char suffixes[] = "KMGT";
        const char *end, *suffix;
        unsigned shift = 0;
        uint64_t v;
        int r;

        r = parse_digits(s, &v, &end);
        if (r < 0)
                return r;
        suffix = *end ? strchr(suffixes, toupper((unsigned char) *end)) : NULL;
        if (suffix) {
                shift = 10 * (unsigned) (suffix - suffixes + 1);
                end++;
        }
        if (suffix && end[0] == 'i' && end[1] == 'B')
                end += 2;
        else if (*end == 'B')
                end++;
        if (*end)
                return -EINVAL;
        if (v > (UINT64_MAX >> shift))
                return -ERANGE;
        *ret_bytes = v << shift;
        return 0;
}

/* systemd's time spans: "30s", "5min", "1h 30min", "500ms"; a bare number is
 * seconds; "infinity" is UINT64_MAX.  Whole numbers only ("1500ms", not "1.5s"). */
int config_parse_duration_ns(const char *s, uint64_t *ret_ns) {
        static const struct { const char *unit; uint64_t ns; } units[] = {
                { "", 1000000000ULL },
                { "ns", 1ULL }, { "nsec", 1ULL },
                { "us", 1000ULL }, { "usec", 1000ULL },
                { "ms", 1000000ULL }, { "msec", 1000000ULL },
                { "s", 1000000000ULL }, { "sec", 1000000000ULL }, { "second", 1000000000ULL }, { "seconds", 1000000000ULL },
                { "m", 60000000000ULL }, { "min", 60000000000ULL }, { "minute", 60000000000ULL }, { "minutes", 60000000000ULL },
                { "h", 3600000000000ULL }, { "hr", 3600000000000ULL }, { "hour", 3600000000000ULL }, { "hours", 3600000000000ULL },
                { "d", 86400000000000ULL }, { "day", 86400000000000ULL }, { "days", 86400000000000ULL },
                { "w", 604800000000000ULL }, { "week", 604800000000000ULL }, { "weeks", 604800000000000ULL },
        };
        uint64_t total = 0;
        bool any = false;

        if (s && !strcmp(s, "infinity")) {
                *ret_ns = UINT64_MAX;
                return 0;
        }
        while (s && *s) {
                const char *end;
                size_t unit_len, i;
                uint64_t v;
                int r;

                r = parse_digits(s, &v, &end);
                if (r < 0)
                        return r;
                unit_len = 0;
                while (isalpha((unsigned char) end[unit_len]))
                        unit_len++;
                for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
                        if (strlen(units[i].unit) == unit_len && !strncmp(units[i].unit, end, unit_len))
                                break;
                if (i == sizeof(units) / sizeof(units[0]))
                        return -EINVAL;
                if (v > UINT64_MAX / units[i].ns || total > UINT64_MAX - v * units[i].ns)
                        return -ERANGE;
                total += v * units[i].ns;
                any = true;
                s = end + unit_len;
                s += strspn(s, " \t");
        }
        if (!any)
                return -EINVAL;
        *ret_ns = total;
        return 0;
}

int config_parse_bool(const char *s, bool *ret) {
        static const char *const yes[] = { "yes", "true", "on", "1" }, *const no[] = { "no", "false", "off", "0" };

        for (size_t i = 0; s && i < sizeof(yes) / sizeof(yes[0]); i++) {
                if (!strcmp(s, yes[i])) {
                        *ret = true;
                        return 0;
                }
                if (!strcmp(s, no[i])) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

static int parse_percent(const char *s, int *ret) {
        const char *end;
        uint64_t v;

        if (s && !strcmp(s, "off")) {
                *ret = -1;
                return 0;
        }
        if (parse_digits(s, &v, &end) < 0 || *end || v > INT_MAX)
                return -EINVAL;
        *ret = (int) v;
        return 0;
}

void policy_defaults(struct policy *p) {
        *p = (struct policy) {
                /* No hard bound: only the owner knows what a process may hold. */
                .memory_limit = 0,
                /* The SPEC's "defaults must already return idle memory in bounded
                 * time": a process may sit on 32 MiB of freed heap for 30 s, enough
                 * to ride out a steady workload's churn, no longer. */
                .idle_memory_max = 32ULL << 20,
                .idle_timeout_ns = 30ULL * 1000000000ULL,
                .reclaim_on_pressure = true,
                .gc_percent = -1,
                .profile_rate = 0,
                .profile_rate_set = false,
        };
        for (int k = 0; k < _POLICY_KEY_MAX; k++)
                p->source[k] = SOURCE_DEFAULT;
}

int policy_set(struct policy *p, const char *key, const char *value, const char *source, char *err, size_t err_len) {
        struct policy t = *p;
        int k, r = 0;

        k = policy_key_from_name(key);
        if (k < 0) {
                snprintf(err, err_len, "unknown key %s (one of MemoryLimit, IdleMemoryMax, IdleTimeout, "
                         "ReclaimOnPressure, GCPercent, ProfileRate)", key ? key : "(null)");
                return -EINVAL;
        }
        if (!value)
                value = "";
        switch ((enum policy_key) k) {
        case POLICY_MEMORY_LIMIT:
                if (!strcmp(value, "off") || !strcmp(value, "none"))
                        t.memory_limit = 0;
                else
                        r = config_parse_bytes(value, &t.memory_limit);
                break;
        case POLICY_IDLE_MEMORY_MAX:
                r = config_parse_bytes(value, &t.idle_memory_max);
                break;
        case POLICY_IDLE_TIMEOUT:
                r = config_parse_duration_ns(value, &t.idle_timeout_ns);
                break;
        case POLICY_RECLAIM_ON_PRESSURE:
                r = config_parse_bool(value, &t.reclaim_on_pressure);
                break;
        case POLICY_GC_PERCENT:
                r = parse_percent(value, &t.gc_percent);
                break;
        case POLICY_PROFILE_RATE:
                r = config_parse_bytes(value, &t.profile_rate);
                t.profile_rate_set = true;
                break;
        case _POLICY_KEY_MAX:
                break;
        }
        if (r < 0) {
                snprintf(err, err_len, "%s: %s%s: %s", policy_keys[k].name, policy_keys[k].expects,
                         r == -ERANGE ? " (too large)" : "", value);
                return -EINVAL;
        }
        t.source[k] = source ? source : "(unknown)";
        *p = t;
        return 0;
}

/* dst's key k (value and source) from src. */
static void policy_copy_key(struct policy *dst, const struct policy *src, enum policy_key k) {
        switch (k) {
        case POLICY_MEMORY_LIMIT: dst->memory_limit = src->memory_limit; break;
        case POLICY_IDLE_MEMORY_MAX: dst->idle_memory_max = src->idle_memory_max; break;
        case POLICY_IDLE_TIMEOUT: dst->idle_timeout_ns = src->idle_timeout_ns; break;
        case POLICY_RECLAIM_ON_PRESSURE: dst->reclaim_on_pressure = src->reclaim_on_pressure; break;
        case POLICY_GC_PERCENT: dst->gc_percent = src->gc_percent; break;
        case POLICY_PROFILE_RATE:
                dst->profile_rate = src->profile_rate;
                dst->profile_rate_set = src->profile_rate_set;
                break;
        case _POLICY_KEY_MAX: return;
        }
        dst->source[k] = src->source[k];
}

/* ---- files ----------------------------------------------------------------- */

static void config_file_free(struct config_file *f) {
        if (!f)
                return;
        for (int k = 0; k < _POLICY_KEY_MAX; k++)
                free(f->sources[k]);
        for (int m = 0; m < _MATCH_KEY_MAX; m++) {
                for (size_t i = 0; i < f->n_globs[m]; i++)
                        free(f->globs[m][i]);
                free(f->globs[m]);
        }
        free(f->uids);
        free(f->path);
        free(f);
}

static void report(config_error_fn err, void *userdata, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void report(config_error_fn err, void *userdata, const char *fmt, ...) {
        char msg[PATH_MAX + 512];
        va_list ap;

        if (!err)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        err(msg, userdata);
}

/* "PATH:LINE: " + what; counts the error (the file will be skipped). */
static void parser_error(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void parser_error(struct parser *p, const char *fmt, ...) {
        char what[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        p->n_errors++;
        report(p->err, p->userdata, "%s:%u: %s", p->path, p->line, what);
}

static const char *skip_blanks(const char *s) {
        while (*s && isspace((unsigned char) *s))
                s++;
        return s;
}

static void parser_section(struct parser *p, const char *name, size_t len) {
        p->key_seen = false;
        p->section = SECTION_BAD;
        if (len == 5 && !strncmp(name, "Match", 5)) {
                if (p->is_main)
                        parser_error(p, "[Match] is not allowed in memd.conf (matching policies go in policy.d/*.policy)");
                else if (p->seen_match)
                        parser_error(p, "duplicate [Match] section");
                else
                        p->section = SECTION_MATCH;
                p->seen_match = true;
        } else if (len == 6 && !strncmp(name, "Policy", 6)) {
                if (p->seen_policy)
                        parser_error(p, "duplicate [Policy] section");
                else
                        p->section = SECTION_POLICY;
                p->seen_policy = true;
        } else
                parser_error(p, "unknown section [%.*s] (expected [Match] or [Policy])", (int) len, name);
}

/* Judges one line's shape (inih would not tell us, or not where).  Returns
 * whether inih should see it. */
static bool parser_check_line(struct parser *p, const char *line) {
        const char *s = skip_blanks(line), *close;
        size_t key_len;

        /* inih's order: comments first, so an indented '#' line is a comment... */
        if (!*s || *s == '#' || *s == ';')
                return true;
        /* ...then an indented line after a key is that key's continuation. */
        if (s > line && p->key_seen) {
                parser_error(p, "continuation lines are not supported (start a comment line with '#')");
                return false;
        }
        if (*s == '[') {
                close = strchr(s, ']');
                if (!close) {
                        p->section = SECTION_BAD;
                        parser_error(p, "section header without ']'");
                        return false;
                }
                parser_section(p, s + 1, (size_t) (close - s - 1));
                close = skip_blanks(close + 1);
                if (*close && *close != '#' && *close != ';')
                        parser_error(p, "text after the section header: %s", close);
                return true;
        }
        key_len = strcspn(s, "=:");
        if (!s[key_len]) {
                parser_error(p, "expected Key=Value, a [Section] or a # comment: %s", s);
                return false;
        }
        if (s[key_len] == ':') {
                parser_error(p, "expected Key=Value ('=', not ':'): %s", s);
                return false;
        }
        p->key_seen = true;
        if (p->section == SECTION_NONE) {
                parser_error(p, "%.*s= outside a section (put it under [Policy])", (int) key_len, s);
                return false;
        }
        return true;
}

/* inih's fgets: one line of the file (read whole beforehand) per call. */
static char *parser_read(char *str, int num, void *stream) {
        struct parser *p = stream;
        const char *start, *nl;
        size_t n;

        if (p->pos >= p->len)
                return NULL;
        start = p->buf + p->pos;
        nl = memchr(start, '\n', p->len - p->pos);
        n = nl ? (size_t) (nl - start) : p->len - p->pos;
        p->pos += n + !!nl;
        p->line++;
        str[0] = 0;
        /* inih skips a UTF-8 BOM too, but after we have judged the line. */
        if (p->line == 1 && n >= 3 && !memcmp(start, "\xef\xbb\xbf", 3)) {
                start += 3;
                n -= 3;
        }
        if (memchr(start, 0, n)) {
                parser_error(p, "NUL byte in line");
                return str;
        }
        if (num <= 0 || n >= (size_t) num) {
                parser_error(p, "line longer than %d characters", num - 1);
                return str;
        }
        memcpy(str, start, n);
        str[n] = 0;
        if (!parser_check_line(p, str))
                str[0] = 0;
        return str;
}

static bool append(void *array_ptr, size_t *n, size_t size, const void *item) {
        void **array = array_ptr;
        void *a = realloc(*array, (*n + 1) * size);

        if (!a)
                return false;
        memcpy((char *) a + *n * size, item, size);
        *array = a;
        (*n)++;
        return true;
}

/* A user name (resolved now, so a typo is an error at load and not a policy
 * that silently never applies) or a number. */
static int resolve_user(const char *name, uid_t *ret, char *what, size_t what_len) {
        const char *end;
        struct passwd pw, *res = NULL;
        size_t buf_len = 4096;
        uint64_t v;
        int r;

        if (parse_digits(name, &v, &end) == 0 && !*end) {
                if (v >= (uid_t) -1) {
                        snprintf(what, what_len, "User: uid out of range: %s", name);
                        return -ERANGE;
                }
                *ret = (uid_t) v;
                return 0;
        }
        for (;;) {
                char *buf = malloc(buf_len);

                if (!buf)
                        return -ENOMEM;
                r = getpwnam_r(name, &pw, buf, buf_len, &res);
                if (r == ERANGE && buf_len < (1u << 20)) {
                        free(buf);
                        buf_len *= 2;
                        continue;
                }
                if (res)
                        *ret = pw.pw_uid;
                free(buf);
                break;
        }
        if (res)
                return 0;
        if (r == ENOMEM)
                return -ENOMEM;
        if (r && r != ENOENT && r != ESRCH)
                snprintf(what, what_len, "User: cannot look up %s: %s", name, strerror(r));
        else
                snprintf(what, what_len, "User: unknown user %s", name);
        return -ENOENT;
}

static void parser_match(struct parser *p, const char *key, char *value) {
        struct config_file *f = p->file;
        char *save = NULL, *tok;
        int m;

        for (m = 0; m < _MATCH_KEY_MAX; m++)
                if (!strcmp(key, match_key_names[m]))
                        break;
        if (m == _MATCH_KEY_MAX) {
                parser_error(p, "unknown key %s in [Match] (one of Comm, Executable, Unit, User)", key);
                return;
        }
        if (!*value) {
                parser_error(p, "%s: empty value", key);
                return;
        }
        /* A key given twice adds to its list, as systemd's [Match] lists do. */
        f->given[m] = true;
        for (tok = strtok_r(value, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
                if (m == MATCH_USER) {
                        char what[256];
                        uid_t uid;
                        int r = resolve_user(tok, &uid, what, sizeof(what));

                        if (r == -ENOMEM)
                                p->oom = true;
                        else if (r < 0)
                                parser_error(p, "%s", what);
                        else if (!append(&f->uids, &f->n_uids, sizeof(uid), &uid))
                                p->oom = true;
                } else {
                        char *glob = strdup(tok);

                        if (!glob || !append(&f->globs[m], &f->n_globs[m], sizeof(glob), &glob)) {
                                free(glob);
                                p->oom = true;
                        }
                }
                if (p->oom)
                        return;
        }
}

static void parser_policy(struct parser *p, const char *key, const char *value) {
        struct config_file *f = p->file;
        char what[512], *source;
        int k = policy_key_from_name(key);

        /* The kebab-case names are memctl's; a file says MemoryLimit. */
        if (k < 0 || strcmp(key, policy_keys[k].name)) {
                parser_error(p, "unknown key %s in [Policy]%s%s", key, k < 0 ? "" : ", did you mean ",
                             k < 0 ? "" : policy_keys[k].name);
                return;
        }
        if (asprintf(&source, "%s:%u", p->path, p->line) < 0) {
                p->oom = true;
                return;
        }
        if (policy_set(&f->policy, key, value, source, what, sizeof(what)) < 0) {
                free(source);
                parser_error(p, "%s", what);
                return;
        }
        /* A key given twice: the later line wins, as in systemd. */
        free(f->sources[k]);
        f->sources[k] = source;
        f->set[k] = true;
}

static int parser_handle(void *user, const char *section, const char *key, const char *value) {
        struct parser *p = user;
        char v[INI_MAX_LINE + 1];
        size_t i;

        (void) section;         /* ours (p->section) also knows bad and duplicate ones */
        if (p->oom || (p->section != SECTION_MATCH && p->section != SECTION_POLICY))
                return 1;
        /* inih strips "; comment"; "# comment" after a value too (the SPEC's
         * examples have them): a '#' that starts the value or follows a blank. */
        snprintf(v, sizeof(v), "%s", value);
        for (i = 0; v[i]; i++)
                if (v[i] == '#' && (i == 0 || isspace((unsigned char) v[i - 1])))
                        break;
        while (i > 0 && isspace((unsigned char) v[i - 1]))
                i--;
        v[i] = 0;
        if (p->section == SECTION_MATCH)
                parser_match(p, key, v);
        else
                parser_policy(p, key, v);
        /* Errors are counted and reported here with their line: inih's return
         * value is left for what only it finds. */
        return 1;
}

/* The whole file, at most CONFIG_FILE_MAX_BYTES.  0 and *ret_buf; 1 absent
 * (ENOENT); -ENOMEM; other failures reported, -EIO. */
static int read_file(const char *path, char **ret_buf, size_t *ret_len, config_error_fn err, void *userdata) {
        struct stat st;
        size_t len = 0;
        char *buf;
        int fd, r = 0;

        /* O_NONBLOCK: a FIFO named x.policy must not hang memd. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                if (errno == ENOENT)
                        return 1;
                report(err, userdata, "%s: cannot open: %s", path, strerror(errno));
                return -EIO;
        }
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                report(err, userdata, "%s: not a regular file", path);
                close(fd);
                return -EIO;
        }
        buf = malloc(CONFIG_FILE_MAX_BYTES + 1);
        if (!buf) {
                close(fd);
                return -ENOMEM;
        }
        /* One byte more than allowed tells a too-large file (its size in
         * st_size may have changed since). */
        while (len <= CONFIG_FILE_MAX_BYTES) {
                ssize_t n = read(fd, buf + len, CONFIG_FILE_MAX_BYTES + 1 - len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        report(err, userdata, "%s: cannot read: %s", path, strerror(errno));
                        r = -EIO;
                        break;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        close(fd);
        if (r == 0 && len > CONFIG_FILE_MAX_BYTES) {
                report(err, userdata, "%s: larger than %u KiB", path, CONFIG_FILE_MAX_BYTES / 1024);
                r = -EIO;
        }
        if (r < 0) {
                free(buf);
                return r;
        }
        *ret_buf = buf;
        *ret_len = len;
        return 0;
}

/* 0 and *ret (NULL: absent, or bad and reported), or -ENOMEM. */
static int config_file_load(const char *path, bool is_main, struct config_file **ret, config_error_fn err, void *userdata) {
        struct parser p = { .path = path, .is_main = is_main, .err = err, .userdata = userdata };
        char *buf = NULL;
        int r;

        *ret = NULL;
        r = read_file(path, &buf, &p.len, err, userdata);
        if (r == -ENOMEM)
                return r;
        if (r != 0)
                return 0;
        p.buf = buf;
        p.file = calloc(1, sizeof(*p.file));
        if (!p.file || !(p.file->path = strdup(path))) {
                free(buf);
                config_file_free(p.file);
                return -ENOMEM;
        }
        for (int k = 0; k < _POLICY_KEY_MAX; k++)
                p.file->policy.source[k] = SOURCE_DEFAULT;
        r = ini_parse_stream(parser_read, &p, parser_handle, &p);
        free(buf);
        if (p.oom || r == -2) {
                config_file_free(p.file);
                return -ENOMEM;
        }
        if (r > 0 && !p.n_errors) {
                /* Something our line check let through (a ';' comment in a key). */
                p.line = (unsigned) r;
                parser_error(&p, "syntax error");
        }
        if (p.n_errors) {
                report(err, userdata, "%s: %u error%s, file ignored", path, p.n_errors, p.n_errors == 1 ? "" : "s");
                config_file_free(p.file);
                return 0;
        }
        for (int k = 0; k < _POLICY_KEY_MAX; k++)
                if (p.file->set[k])
                        p.file->policy.source[k] = p.file->sources[k];
        *ret = p.file;
        return 0;
}

void config_free(struct config *c) {
        if (!c)
                return;
        config_file_free(c->main);
        for (size_t i = 0; i < c->n_files; i++)
                config_file_free(c->files[i]);
        free(c->files);
        free(c);
}

size_t config_n_files(const struct config *c) {
        return c ? c->n_files + !!c->main : 0;
}

static int compare_names(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static bool is_policy_name(const char *name) {
        size_t n = strlen(name);

        /* Hidden files are editors' and package managers' leftovers. */
        return name[0] != '.' && n > 7 && !strcmp(name + n - 7, ".policy");
}

/* The policy.d/NAME.policy names, sorted; *ret_names NULL when there is no
 * policy.d.  0 or -ENOMEM (other failures reported). */
static int list_policy_dir(const char *path, char ***ret_names, size_t *ret_n, config_error_fn err, void *userdata) {
        char **names = NULL;
        size_t n = 0;
        struct dirent *de;
        DIR *d;

        *ret_names = NULL;
        *ret_n = 0;
        d = opendir(path);
        if (!d) {
                if (errno == ENOMEM)
                        return -ENOMEM;
                if (errno != ENOENT)
                        report(err, userdata, "%s: cannot read: %s", path, strerror(errno));
                return 0;
        }
        while ((de = readdir(d))) {
                char *name;

                if (!is_policy_name(de->d_name))
                        continue;
                name = strdup(de->d_name);
                if (!name || !append(&names, &n, sizeof(name), &name)) {
                        free(name);
                        while (n)
                                free(names[--n]);
                        free(names);
                        closedir(d);
                        return -ENOMEM;
                }
        }
        closedir(d);
        if (n)
                qsort(names, n, sizeof(*names), compare_names);
        *ret_names = names;
        *ret_n = n;
        return 0;
}

int config_load(const char *dir, struct config **ret, config_error_fn err, void *userdata) {
        struct config *c;
        char *path = NULL, *policy_dir = NULL, **names = NULL;
        size_t n_names = 0, i = 0;
        int r;

        if (!dir)
                dir = CONFIG_DIR_DEFAULT;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        r = -ENOMEM;
        if (asprintf(&path, "%s/memd.conf", dir) < 0) {
                path = NULL;
                goto fail;
        }
        if (config_file_load(path, true, &c->main, err, userdata) < 0)
                goto fail;
        if (asprintf(&policy_dir, "%s/policy.d", dir) < 0) {
                policy_dir = NULL;
                goto fail;
        }
        if (list_policy_dir(policy_dir, &names, &n_names, err, userdata) < 0)
                goto fail;
        if (n_names && !(c->files = calloc(n_names, sizeof(*c->files))))
                goto fail;
        for (i = 0; i < n_names; i++) {
                struct config_file *f;

                free(path);
                if (asprintf(&path, "%s/%s", policy_dir, names[i]) < 0) {
                        path = NULL;
                        goto fail;
                }
                if (config_file_load(path, false, &f, err, userdata) < 0)
                        goto fail;
                if (f)
                        c->files[c->n_files++] = f;
        }
        *ret = c;
        c = NULL;
        r = 0;
fail:
        for (i = 0; i < n_names; i++)
                free(names[i]);
        free(names);
        free(path);
        free(policy_dir);
        config_free(c);
        return r;
}

/* ---- matching -------------------------------------------------------------- */

static bool globs_match(char *const *globs, size_t n, const char *s, int flags) {
        if (!s)
                return false;
        for (size_t i = 0; i < n; i++)
                if (fnmatch(globs[i], s, flags) == 0)
                        return true;
        return false;
}

static bool config_file_matches(const struct config_file *f, const struct policy_subject *s) {
        static const int flags[_MATCH_KEY_MAX] = { [MATCH_EXECUTABLE] = FNM_PATHNAME };
        const char *fields[_MATCH_KEY_MAX] = {
                [MATCH_COMM] = s ? s->comm : NULL,
                [MATCH_EXECUTABLE] = s ? s->exe : NULL,
                [MATCH_UNIT] = s ? s->unit : NULL,
        };

        for (int m = 0; m < MATCH_USER; m++)
                if (f->given[m] && !globs_match(f->globs[m], f->n_globs[m], fields[m], flags[m]))
                        return false;
        if (f->given[MATCH_USER]) {
                bool any = false;

                for (size_t i = 0; s && s->uid != (uid_t) -1 && i < f->n_uids; i++)
                        any = any || f->uids[i] == s->uid;
                if (!any)
                        return false;
        }
        return true;
}

static void policy_apply(struct policy *out, const struct config_file *f) {
        for (int k = 0; k < _POLICY_KEY_MAX; k++)
                if (f->set[k])
                        policy_copy_key(out, &f->policy, (enum policy_key) k);
}

void config_resolve(const struct config *c, const struct policy_subject *s, struct policy *out) {
        policy_defaults(out);
        if (!c)
                return;
        if (c->main)
                policy_apply(out, c->main);
        for (size_t i = 0; i < c->n_files; i++)
                if (config_file_matches(c->files[i], s))
                        policy_apply(out, c->files[i]);
}
