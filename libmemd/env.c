/* env.c - reading libmemd's environment once at load: bad values get one warning and the default. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define DEFAULT_PROFILE_RATE 524288
#define DEFAULT_SOCKET "/run/memd/memd.sock"

/* "512K", "16M", "2G", "1048576", "64KiB", "1MB": binary multiples, as
 * systemd and GOMEMLIMIT read them.  Returns 0 or -EINVAL / -ERANGE. */
int env_parse_size(const char *s, uint64_t *ret_bytes) {
        unsigned long long v;
        uint64_t mult = 1;
        char *end;

        /* strtoull would skip blanks and wrap "-5" around: digits only. */
        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (end == s)
                return -EINVAL;
        if (errno == ERANGE)
                return -ERANGE;
        switch (*end) {
        case 'K': case 'k': mult = 1ULL << 10; end++; break;
        case 'M': case 'm': mult = 1ULL << 20; end++; break;
        case 'G': case 'g': mult = 1ULL << 30; end++; break;
        case 'T': case 't': mult = 1ULL << 40; end++; break;
        }
        if (mult > 1 && end[0] == 'i' && end[1] == 'B')
                end += 2;
        else if (*end == 'B')
                end++;
        if (*end)
                return -EINVAL;
        if (v > UINT64_MAX / mult)
                return -ERANGE;
        *ret_bytes = v * mult;
        return 0;
}

static void warn_default(const char *name, const char *value, const char *why, const char *dflt) {
        char msg[400];
        struct buf b = { msg, 0, sizeof(msg) - 1 };

        buf_puts(&b, name);
        buf_puts(&b, "=");
        buf_puts(&b, value);
        buf_puts(&b, ": ");
        buf_puts(&b, why);
        buf_puts(&b, "; using ");
        buf_puts(&b, dflt);
        msg[b.len] = 0;
        memd_warn(msg);
}

static int parse_bool(const char *s, bool *ret) {
        if (!strcmp(s, "1") || !strcmp(s, "yes") || !strcmp(s, "true") || !strcmp(s, "on")) {
                *ret = true;
                return 0;
        }
        if (!strcmp(s, "0") || !strcmp(s, "no") || !strcmp(s, "false") || !strcmp(s, "off")) {
                *ret = false;
                return 0;
        }
        return -EINVAL;
}

/* MEMD_DEBUG is GODEBUG-shaped: "gctrace=1,scavtrace=1".  Our own keys:
 * fastbins=1 keeps glibc's fastbins (see docs/libmemd.md), unwind=libunwind|backtrace. */
static int parse_debug(struct memd_config *c, const char *s) {
        char copy[256], *item, *save = NULL;
        struct memd_config t = *c;

        if (strlen(s) >= sizeof(copy))
                return -E2BIG;
        strcpy(copy, s);
        for (item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
                char *eq = strchr(item, '=');
                bool v;

                if (!eq)
                        return -EINVAL;
                *eq++ = 0;
                if (!strcmp(item, "unwind")) {
                        if (!strcmp(eq, "backtrace"))
                                t.unwinder = UNWIND_BACKTRACE;
                        else if (!strcmp(eq, "libunwind"))
                                t.unwinder = UNWIND_LIBUNWIND;
                        else
                                return -EINVAL;
                        continue;
                }
                if (parse_bool(eq, &v) < 0)
                        return -EINVAL;
                if (!strcmp(item, "gctrace"))
                        t.gctrace = v;
                else if (!strcmp(item, "scavtrace"))
                        t.scavtrace = v;
                else if (!strcmp(item, "fastbins"))
                        t.keep_fastbins = v;
                else
                        return -ENOENT;
        }
        *c = t;
        return 0;
}

void env_load(struct memd_config *c) {
        const char *s;
        uint64_t v;

        c->profile_rate = DEFAULT_PROFILE_RATE;
        c->memory_limit = 0;
        c->gcpercent = -1;
        strcpy(c->socket_path, DEFAULT_SOCKET);

        s = getenv("MEMD_PROFILE_RATE");
        if (s) {
                if (env_parse_size(s, &v) < 0)
                        warn_default("MEMD_PROFILE_RATE", s, "not a byte count (e.g. 512K, 1, 0 for off)", "524288");
                else
                        c->profile_rate = v;
        }

        c->last_rate = c->profile_rate ? c->profile_rate : DEFAULT_PROFILE_RATE;

        s = getenv("MEMD_MEMORY_LIMIT");
        if (s && strcmp(s, "off") && strcmp(s, "")) {
                if (env_parse_size(s, &v) < 0)
                        warn_default("MEMD_MEMORY_LIMIT", s, "not a byte count (e.g. 256M) or off", "no limit");
                else
                        c->memory_limit = v;
        }

        s = getenv("MEMD_GCPERCENT");
        if (s && strcmp(s, "off")) {
                char *end;
                long p;

                errno = 0;
                p = strtol(s, &end, 10);
                if (!*s || *end || errno || p < 0 || p > INT_MAX)
                        warn_default("MEMD_GCPERCENT", s, "not a percentage >= 0 or off", "off");
                else
                        c->gcpercent = (int) p;
        }

        s = getenv("MEMD_DEBUG");
        if (s && *s) {
                int r = parse_debug(c, s);
                if (r == -ENOENT)
                        warn_default("MEMD_DEBUG", s, "unknown key (known: gctrace, scavtrace, fastbins, unwind)", "the defaults");
                else if (r < 0)
                        warn_default("MEMD_DEBUG", s, "expected key=value[,key=value] with 0/1 values", "the defaults");
        }

        s = getenv("MEMD_MEMPROFILE");
        if (s && *s) {
                if (strlen(s) >= sizeof(c->memprofile))
                        warn_default("MEMD_MEMPROFILE", "...", "path too long", "no profile at exit");
                else
                        strcpy(c->memprofile, s);
        }

        s = getenv("MEMD_SOCKET");
        if (s && *s) {
                if (strlen(s) >= sizeof(c->socket_path))
                        warn_default("MEMD_SOCKET", s, "path longer than a Unix socket address allows", DEFAULT_SOCKET);
                else
                        strcpy(c->socket_path, s);
        }
}
