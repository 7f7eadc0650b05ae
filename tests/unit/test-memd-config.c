/* test-memd-config.c - Check suite for memd/config.c: values, every error with its FILE:LINE, precedence, matching, on real files. */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "memd-config.h"
#include "unit.h"

/* ---- helpers ------------------------------------------------------------- */

#define MIB (UINT64_C(1) << 20)
#define SEC UINT64_C(1000000000)

static char root[256];             /* one mkdtemp per tcase, removed after it */

struct errs {
        char msg[16][PATH_MAX + 600];
        int n;
};

static void collect(const char *msg, void *userdata) {
        struct errs *e = userdata;

        ck_assert_int_lt(e->n, 16);
        snprintf(e->msg[e->n++], sizeof(e->msg[0]), "%s", msg);
}

static void setup(void) {
        strcpy(root, "/tmp/test-memd-config-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(root));
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st; (void) flag; (void) ftw;
        return remove(path);
}

static void teardown(void) {
        nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh config dir with an empty policy.d (the tests of a tcase share
 * root, each in its own forked process). */
static const char *new_dir(char *buf) {
        char sub[PATH_MAX + 32];

        snprintf(buf, PATH_MAX, "%s/XXXXXX", root);
        ck_assert_ptr_nonnull(mkdtemp(buf));
        snprintf(sub, sizeof(sub), "%s/policy.d", buf);
        ck_assert_int_eq(mkdir(sub, 0755), 0);
        return buf;
}

static void write_file(const char *dir, const char *name, const char *text, size_t len) {
        char path[PATH_MAX + 64];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(text, 1, len, f), len);
        ck_assert_int_eq(fclose(f), 0);
}

static void put(const char *dir, const char *name, const char *text) {
        write_file(dir, name, text, strlen(text));
}

static struct config *load(const char *dir, struct errs *e) {
        struct config *c = NULL;

        memset(e, 0, sizeof(*e));
        ck_assert_int_eq(config_load(dir, &c, collect, e), 0);
        ck_assert_ptr_nonnull(c);
        return c;
}

static struct policy resolve(const struct config *c, const char *comm, const char *exe, const char *unit, uid_t uid) {
        struct policy_subject s = { .comm = comm, .exe = exe, .unit = unit, .uid = uid };
        struct policy p;

        config_resolve(c, &s, &p);
        return p;
}

/* "DIR/NAME:LINE" */
static const char *where(const char *dir, const char *name, int line) {
        static char buf[PATH_MAX + 128];

        if (line)
                snprintf(buf, sizeof(buf), "%s/%s:%d", dir, name, line);
        else
                snprintf(buf, sizeof(buf), "%s/%s", dir, name);
        return buf;
}

static void assert_defaults(const struct policy *p) {
        ck_assert_uint_eq(p->memory_limit, 0);
        ck_assert_uint_eq(p->idle_memory_max, 32 * MIB);
        ck_assert_uint_eq(p->idle_timeout_ns, 30 * SEC);
        ck_assert(p->reclaim_on_pressure);
        ck_assert_int_eq(p->gc_percent, -1);
        ck_assert(!p->profile_rate_set);
        ck_assert_uint_eq(p->profile_rate, 0);
        for (int k = 0; k < _POLICY_KEY_MAX; k++)
                ck_assert_str_eq(p->source[k], "default");
}

/* ---- values -------------------------------------------------------------- */

struct value_case {
        const char *s;
        int r;
        uint64_t v;
};

/* Each case through parse: its return, and its value (untouched on error). */
static void check_values(int (*parse)(const char *, uint64_t *), const struct value_case *cases, size_t n) {
        for (size_t i = 0; i < n; i++) {
                uint64_t v = 12345;
                int r = parse(cases[i].s, &v);

                ck_assert_msg(r == cases[i].r, "%s: %d", cases[i].s, r);
                ck_assert_msg(v == (r ? 12345 : cases[i].v), "%s: %ju", cases[i].s, (uintmax_t) v);
        }
}

START_TEST(test_bytes) {
        static const struct value_case cases[] = {
                { "0", 0, 0 }, { "1", 0, 1 }, { "1048576", 0, 1048576 }, { "7B", 0, 7 },
                { "512K", 0, 512 << 10 }, { "512k", 0, 512 << 10 }, { "512KiB", 0, 512 << 10 }, { "512KB", 0, 512 << 10 },
                { "16M", 0, 16 * MIB }, { "16m", 0, 16 * MIB }, { "2G", 0, UINT64_C(2) << 30 }, { "3T", 0, UINT64_C(3) << 40 },
                { "16777215T", 0, UINT64_C(16777215) << 40 },
                { "", -EINVAL, 0 }, { "K", -EINVAL, 0 }, { "-1", -EINVAL, 0 }, { " 1", -EINVAL, 0 }, { "1 ", -EINVAL, 0 },
                { "12Q", -EINVAL, 0 }, { "1.5M", -EINVAL, 0 }, { "1KiBx", -EINVAL, 0 }, { "1iB", -EINVAL, 0 }, { "+1", -EINVAL, 0 },
                { "18446744073709551616", -ERANGE, 0 }, { "16777216T", -ERANGE, 0 },
        };

        check_values(config_parse_bytes, cases, sizeof(cases) / sizeof(cases[0]));
        ck_assert_int_eq(config_parse_bytes(NULL, &(uint64_t){ 0 }), -EINVAL);
}
END_TEST

START_TEST(test_durations) {
        static const struct value_case cases[] = {
                { "30s", 0, 30 * SEC }, { "30", 0, 30 * SEC }, { "0", 0, 0 }, { "30sec", 0, 30 * SEC },
                { "1second", 0, SEC }, { "2seconds", 0, 2 * SEC },
                { "500ms", 0, 500000000 }, { "500msec", 0, 500000000 }, { "10us", 0, 10000 }, { "10usec", 0, 10000 },
                { "7ns", 0, 7 }, { "7nsec", 0, 7 },
                { "5min", 0, 300 * SEC }, { "5m", 0, 300 * SEC }, { "1minute", 0, 60 * SEC }, { "2minutes", 0, 120 * SEC },
                { "2h", 0, 7200 * SEC }, { "2hr", 0, 7200 * SEC }, { "1hour", 0, 3600 * SEC }, { "3hours", 0, 10800 * SEC },
                { "1d", 0, 86400 * SEC }, { "2days", 0, 172800 * SEC }, { "1day", 0, 86400 * SEC },
                { "1w", 0, 604800 * SEC }, { "1week", 0, 604800 * SEC }, { "2weeks", 0, 1209600 * SEC },
                { "1h 30min", 0, 5400 * SEC }, { "1h30min", 0, 5400 * SEC }, { "1min 5", 0, 65 * SEC },
                { "infinity", 0, UINT64_MAX },
                { "", -EINVAL, 0 }, { "s", -EINVAL, 0 }, { "1.5s", -EINVAL, 0 }, { "-1s", -EINVAL, 0 },
                { "5mins", -EINVAL, 0 }, { "5S", -EINVAL, 0 }, { "30s x", -EINVAL, 0 }, { " 30s", -EINVAL, 0 },
                { "never", -EINVAL, 0 },
                { "30000000w", -ERANGE, 0 }, { "18446744073709551615ns 1ns", -ERANGE, 0 },
        };

        check_values(config_parse_duration_ns, cases, sizeof(cases) / sizeof(cases[0]));
}
END_TEST

START_TEST(test_bools) {
        static const char *const yes[] = { "yes", "true", "on", "1" }, *const no[] = { "no", "false", "off", "0" };
        static const char *const bad[] = { "", "Yes", "y", "2", "enabled", " yes" };
        bool b;

        for (size_t i = 0; i < 4; i++) {
                b = false;
                ck_assert_int_eq(config_parse_bool(yes[i], &b), 0);
                ck_assert(b);
                ck_assert_int_eq(config_parse_bool(no[i], &b), 0);
                ck_assert(!b);
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                ck_assert_msg(config_parse_bool(bad[i], &b) == -EINVAL, "%s", bad[i]);
}
END_TEST

START_TEST(test_key_names) {
        static const char *const names[] = { "MemoryLimit", "IdleMemoryMax", "IdleTimeout", "ReclaimOnPressure", "GCPercent", "ProfileRate" };
        static const char *const kebab[] = { "memory-limit", "idle-memory-max", "idle-timeout", "reclaim-on-pressure", "gc-percent", "profile-rate" };

        for (int k = 0; k < _POLICY_KEY_MAX; k++) {
                ck_assert_str_eq(policy_key_name(k), names[k]);
                ck_assert_str_eq(policy_key_kebab_name(k), kebab[k]);
                ck_assert_int_eq(policy_key_from_name(names[k]), k);
                ck_assert_int_eq(policy_key_from_name(kebab[k]), k);
        }
        ck_assert_ptr_null(policy_key_name(_POLICY_KEY_MAX));
        ck_assert_int_eq(policy_key_from_name("memorylimit"), -EINVAL);
        ck_assert_int_eq(policy_key_from_name("Memory-Limit"), -EINVAL);
        ck_assert_int_eq(policy_key_from_name(NULL), -EINVAL);
}
END_TEST

/* Every key in both spellings, through the one entry memctl set uses. */
START_TEST(test_policy_set) {
        static const struct { const char *key, *value; } sets[] = {
                { "MemoryLimit", "256M" }, { "IdleMemoryMax", "8M" }, { "IdleTimeout", "5min" },
                { "ReclaimOnPressure", "no" }, { "GCPercent", "150" }, { "ProfileRate", "1" },
        };
        struct policy p, q;
        char err[256];

        for (int kebab = 0; kebab < 2; kebab++) {
                policy_defaults(&p);
                for (int k = 0; k < _POLICY_KEY_MAX; k++) {
                        const char *key = kebab ? policy_key_kebab_name(k) : sets[k].key;

                        err[0] = 0;
                        ck_assert_int_eq(policy_set(&p, key, sets[k].value, "memctl set", err, sizeof(err)), 0);
                        ck_assert_str_eq(err, "");
                        ck_assert_str_eq(p.source[k], "memctl set");
                        /* the other keys keep their sources */
                        for (int j = k + 1; j < _POLICY_KEY_MAX; j++)
                                ck_assert_str_eq(p.source[j], "default");
                }
                ck_assert_uint_eq(p.memory_limit, 256 * MIB);
                ck_assert_uint_eq(p.idle_memory_max, 8 * MIB);
                ck_assert_uint_eq(p.idle_timeout_ns, 300 * SEC);
                ck_assert(!p.reclaim_on_pressure);
                ck_assert_int_eq(p.gc_percent, 150);
                ck_assert(p.profile_rate_set);
                ck_assert_uint_eq(p.profile_rate, 1);
        }

        /* off / none / 0 */
        ck_assert_int_eq(policy_set(&p, "memory-limit", "off", "x", err, sizeof(err)), 0);
        ck_assert_uint_eq(p.memory_limit, 0);
        p.memory_limit = 5;
        ck_assert_int_eq(policy_set(&p, "MemoryLimit", "none", "x", err, sizeof(err)), 0);
        ck_assert_uint_eq(p.memory_limit, 0);
        p.memory_limit = 5;
        ck_assert_int_eq(policy_set(&p, "MemoryLimit", "0", "x", err, sizeof(err)), 0);
        ck_assert_uint_eq(p.memory_limit, 0);
        ck_assert_int_eq(policy_set(&p, "GCPercent", "off", "x", err, sizeof(err)), 0);
        ck_assert_int_eq(p.gc_percent, -1);
        ck_assert_int_eq(policy_set(&p, "GCPercent", "0", "x", err, sizeof(err)), 0);
        ck_assert_int_eq(p.gc_percent, 0);
        ck_assert_int_eq(policy_set(&p, "ProfileRate", "0", "x", err, sizeof(err)), 0);
        ck_assert(p.profile_rate_set);
        ck_assert_uint_eq(p.profile_rate, 0);
        ck_assert_int_eq(policy_set(&p, "ProfileRate", "512K", "x", err, sizeof(err)), 0);
        ck_assert_uint_eq(p.profile_rate, 512 << 10);

        /* bad values: the message, and p untouched */
        policy_defaults(&p);
        q = p;
        ck_assert_int_eq(policy_set(&p, "MemoryLimit", "12Q", "x", err, sizeof(err)), -EINVAL);
        ck_assert_str_eq(err, "MemoryLimit: not a byte count (e.g. 256M) or off: 12Q");
        ck_assert_int_eq(policy_set(&p, "memory-limit", "12Q", "x", err, sizeof(err)), -EINVAL);
        ck_assert_str_eq(err, "MemoryLimit: not a byte count (e.g. 256M) or off: 12Q");
        ck_assert_int_eq(policy_set(&p, "idle-timeout", "soon", "x", err, sizeof(err)), -EINVAL);
        ck_assert_str_eq(err, "IdleTimeout: not a duration (e.g. 30s, 5min, 500ms) or infinity: soon");
        ck_assert_int_eq(policy_set(&p, "ReclaimOnPressure", "maybe", "x", err, sizeof(err)), -EINVAL);
        ck_assert_str_eq(err, "ReclaimOnPressure: not a boolean (yes/no): maybe");
        ck_assert_int_eq(policy_set(&p, "GCPercent", "-1", "x", err, sizeof(err)), -EINVAL);
        ck_assert_str_eq(err, "GCPercent: not a percentage >= 0 or off: -1");
        ck_assert_int_eq(policy_set(&p, "GCPercent", "2147483648", "x", err, sizeof(err)), -EINVAL);
        ck_assert_int_eq(policy_set(&p, "IdleMemoryMax", "off", "x", err, sizeof(err)), -EINVAL);
        ck_assert_str_eq(err, "IdleMemoryMax: not a byte count (e.g. 32M): off");
        ck_assert_int_eq(policy_set(&p, "ProfileRate", "", "x", err, sizeof(err)), -EINVAL);
        ck_assert_int_eq(policy_set(&p, "IdleMemoryMax", "99999999T", "x", err, sizeof(err)), -EINVAL);
        ck_assert_str_eq(err, "IdleMemoryMax: not a byte count (e.g. 32M) (too large): 99999999T");
        ck_assert_int_eq(policy_set(&p, "memorylimit", "1M", "x", err, sizeof(err)), -EINVAL);
        ck_assert_ptr_nonnull(strstr(err, "unknown key memorylimit"));
        ck_assert_int_eq(policy_set(&p, "Memory-Limit", "1M", "x", err, sizeof(err)), -EINVAL);
        ck_assert(!memcmp(&p, &q, sizeof(p)));
}
END_TEST

/* ---- loading ------------------------------------------------------------- */

START_TEST(test_missing_dir) {
        char path[PATH_MAX + 32];
        struct config *c;
        struct errs e;
        struct policy p;

        snprintf(path, sizeof(path), "%s/no-such-dir", root);
        c = load(path, &e);
        ck_assert_int_eq(e.n, 0);
        ck_assert_uint_eq(config_n_files(c), 0);
        p = resolve(c, "x", "/bin/x", "x.service", 0);
        assert_defaults(&p);
        config_free(c);

        /* no memd.conf, no policy.d */
        snprintf(path, sizeof(path), "%s/empty", root);
        ck_assert_int_eq(mkdir(path, 0755), 0);
        c = load(path, &e);
        ck_assert_int_eq(e.n, 0);
        ck_assert_uint_eq(config_n_files(c), 0);
        config_free(c);

        policy_defaults(&p);
        assert_defaults(&p);
        config_resolve(NULL, NULL, &p);
        assert_defaults(&p);
        config_free(NULL);
        ck_assert_uint_eq(config_n_files(NULL), 0);
}
END_TEST

START_TEST(test_every_key) {
        char dir[PATH_MAX];
        struct config *c;
        struct errs e;
        struct policy p;

        new_dir(dir);
        put(dir, "memd.conf",
            "# memd.conf\n"
            "[Policy]\n"
            "MemoryLimit=1G\n"
            "IdleMemoryMax = 4M\n"
            "IdleTimeout=2min\n"
            "\n"
            "ReclaimOnPressure=off\n"
            "GCPercent=80\n"
            "ProfileRate=64K\n");
        c = load(dir, &e);
        ck_assert_int_eq(e.n, 0);
        ck_assert_uint_eq(config_n_files(c), 1);
        p = resolve(c, NULL, NULL, NULL, (uid_t) -1);
        ck_assert_uint_eq(p.memory_limit, UINT64_C(1) << 30);
        ck_assert_uint_eq(p.idle_memory_max, 4 * MIB);
        ck_assert_uint_eq(p.idle_timeout_ns, 120 * SEC);
        ck_assert(!p.reclaim_on_pressure);
        ck_assert_int_eq(p.gc_percent, 80);
        ck_assert(p.profile_rate_set);
        ck_assert_uint_eq(p.profile_rate, 64 << 10);
        for (int k = 0; k < _POLICY_KEY_MAX; k++)
                ck_assert_str_eq(p.source[k], where(dir, "memd.conf", k < 3 ? k + 3 : k + 4));
        config_free(c);
}
END_TEST

/* The SPEC's example, as it is written there: '#' after values and an
 * indented '#' line (a comment, not a continuation: inih looks for comments
 * first). */
START_TEST(test_spec_example) {
        char dir[PATH_MAX];
        struct config *c;
        struct errs e;
        struct policy p;

        new_dir(dir);
        put(dir, "policy.d/cache.policy",
            "[Match]            # all given keys must match; globs allowed\n"
            "Comm=cache         # /proc/PID/comm\n"
            "Executable=/usr/bin/*\n"
            "Unit=redis-server.service\n"
            "User=root\n"
            "\n"
            "[Policy]\n"
            "MemoryLimit=256M   # like GOMEMLIMIT: bound on heap memory held from the OS\n"
            "                   # (HeapSys - HeapReleased); above it memd forces a GC, then scavenges\n"
            "IdleMemoryMax=32M  # idle resident heap (HeapIdle - HeapReleased) tolerated ...\n"
            "IdleTimeout=30s    # ... for this long before memd scavenges on its own\n"
            "ReclaimOnPressure=yes  # ask this process to GC + scavenge under memory pressure (PSI)\n"
            "GCPercent=off      # like GOGC (see MEMD_GCPERCENT); NextGC in MemStats is its goal\n"
            "ProfileRate=512K\n"
            "\t# a tab-indented comment\n"
            "; an inih comment\n"
            "GCPercent=20 ; inih's own inline comment\n");
        c = load(dir, &e);
        ck_assert_msg(e.n == 0, "%s", e.msg[0]);
        ck_assert_uint_eq(config_n_files(c), 1);
        p = resolve(c, "cache", "/usr/bin/cache", "redis-server.service", 0);
        ck_assert_uint_eq(p.memory_limit, 256 * MIB);
        ck_assert_str_eq(p.source[POLICY_MEMORY_LIMIT], where(dir, "policy.d/cache.policy", 8));
        ck_assert_uint_eq(p.idle_memory_max, 32 * MIB);
        ck_assert_str_eq(p.source[POLICY_IDLE_MEMORY_MAX], where(dir, "policy.d/cache.policy", 10));
        ck_assert_uint_eq(p.idle_timeout_ns, 30 * SEC);
        ck_assert(p.reclaim_on_pressure);
        ck_assert_int_eq(p.gc_percent, 20);
        ck_assert_str_eq(p.source[POLICY_GC_PERCENT], where(dir, "policy.d/cache.policy", 17));
        ck_assert_uint_eq(p.profile_rate, 512 << 10);
        /* "Comm=cache # ..." is "cache", not "cache         # /proc/PID/comm" */
        p = resolve(c, "cache2", "/usr/bin/cache", "redis-server.service", 0);
        ck_assert_str_eq(p.source[POLICY_MEMORY_LIMIT], "default");
        config_free(c);

        /* '#' inside a value (no blank before it) is part of it */
        new_dir(dir);
        put(dir, "policy.d/a.policy", "[Match]\nComm=a#1 # comment\n[Policy]\nGCPercent=5#\n");
        c = load(dir, &e);
        ck_assert_int_eq(e.n, 2);
        ck_assert_ptr_nonnull(strstr(e.msg[0], ":4: GCPercent: not a percentage >= 0 or off: 5#"));
        config_free(c);
        new_dir(dir);
        put(dir, "policy.d/a.policy", "[Match]\nComm=a#1 # comment\n[Policy]\nGCPercent=5\n");
        c = load(dir, &e);
        ck_assert_int_eq(e.n, 0);
        ck_assert_int_eq(resolve(c, "a#1", NULL, NULL, 0).gc_percent, 5);
        ck_assert_int_eq(resolve(c, "a", NULL, NULL, 0).gc_percent, -1);
        config_free(c);
}
END_TEST

/* Each error kind: the right FILE:LINE, and only that file skipped. */
START_TEST(test_errors) {
        static const struct { const char *text; int line; const char *what; } cases[] = {
                { "[Service]\nGCPercent=5\n", 1, "unknown section [Service] (expected [Match] or [Policy])" },
                { "[Policy]\nFoo=1\n", 2, "unknown key Foo in [Policy]" },
                { "[Policy]\nmemory-limit=1M\n", 2, "unknown key memory-limit in [Policy], did you mean MemoryLimit" },
                { "[Match]\nPid=1\n[Policy]\nGCPercent=5\n", 2, "unknown key Pid in [Match] (one of Comm, Executable, Unit, User)" },
                { "[Policy]\n# c\nMemoryLimit=12Q  # too big\n", 3, "MemoryLimit: not a byte count (e.g. 256M) or off: 12Q" },
                { "[Policy]\nIdleTimeout=\n", 2, "IdleTimeout: not a duration (e.g. 30s, 5min, 500ms) or infinity: " },
                { "\n# top\nGCPercent=5\n[Policy]\n", 3, "GCPercent= outside a section (put it under [Policy])" },
                { "[Match]\nComm=a\n[Match]\nComm=b\n", 3, "duplicate [Match] section" },
                { "[Policy]\nGCPercent=1\n\n[Policy]\n", 4, "duplicate [Policy] section" },
                { "[Policy]\nGCPercent\n", 2, "expected Key=Value, a [Section] or a # comment: GCPercent" },
                { "[Policy]\nGCPercent: 5\n", 2, "expected Key=Value ('=', not ':'): GCPercent: 5" },
                { "[Policy\nGCPercent=5\n", 1, "section header without ']'" },
                { "[Policy] extra\n", 1, "text after the section header: extra" },
                { "[Policy]\nGCPercent=5\n  10\n", 3, "continuation lines are not supported (start a comment line with '#')" },
                { "[Match]\nUser=root no-such-user-memd-test\n", 2, "User: unknown user no-such-user-memd-test" },
                { "[Match]\nUser=4294967295\n", 2, "User: uid out of range: 4294967295" },
                { "[Match]\nComm=   # nothing\n", 2, "Comm: empty value" },
                { "[Policy]\nGCPercent=5\nGC\0Percent=6\n", 3, "NUL byte in line" },
                { "[Policy]\r\nGCPercent=50%\r\n", 2, "GCPercent: not a percentage >= 0 or off: 50%" },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char dir[PATH_MAX], want[PATH_MAX + 600];
                const char *text = cases[i].text;
                size_t len = strlen(text);
                struct config *c;
                struct errs e;
                struct policy p;

                /* the NUL case: its length runs past the NUL */
                if (strstr(cases[i].what, "NUL"))
                        len += 1 + strlen(text + len + 1);
                new_dir(dir);
                put(dir, "memd.conf", "[Policy]\nIdleTimeout=1min\n");
                put(dir, "policy.d/10-good.policy", "[Policy]\nMemoryLimit=10M\n");
                write_file(dir, "policy.d/50-bad.policy", text, len);
                put(dir, "policy.d/90-good.policy", "[Policy]\nIdleMemoryMax=90M\n");
                c = load(dir, &e);
                ck_assert_msg(e.n == 2, "case %zu: %d messages: %s", i, e.n, e.msg[0]);
                snprintf(want, sizeof(want), "%s: %s", where(dir, "policy.d/50-bad.policy", cases[i].line), cases[i].what);
                ck_assert_str_eq(e.msg[0], want);
                snprintf(want, sizeof(want), "%s: 1 error, file ignored", where(dir, "policy.d/50-bad.policy", 0));
                ck_assert_str_eq(e.msg[1], want);
                ck_assert_uint_eq(config_n_files(c), 3);
                p = resolve(c, "x", "/x", "x.service", 0);
                ck_assert_uint_eq(p.idle_timeout_ns, 60 * SEC);
                ck_assert_uint_eq(p.memory_limit, 10 * MIB);
                ck_assert_uint_eq(p.idle_memory_max, 90 * MIB);
                ck_assert_int_eq(p.gc_percent, -1);
                ck_assert_str_eq(p.source[POLICY_GC_PERCENT], "default");
                config_free(c);
        }
}
END_TEST

/* Several errors in one file: each reported, lines counted on past a too-long line. */
START_TEST(test_errors_many) {
        char dir[PATH_MAX], text[1024], want[PATH_MAX + 600];
        struct config *c;
        struct errs e;
        int n;

        new_dir(dir);
        n = snprintf(text, sizeof(text), "[Policy]\n# %0300d\nGCPercent=x\n\n[Nope]\nA=1\n[Match]\nComm=a\n", 0);
        ck_assert_int_lt(n, (int) sizeof(text));
        put(dir, "policy.d/a.policy", text);
        c = load(dir, &e);
        ck_assert_int_eq(e.n, 4);
        snprintf(want, sizeof(want), "%s: line longer than", where(dir, "policy.d/a.policy", 2));
        ck_assert_ptr_nonnull(strstr(e.msg[0], want));
        snprintf(want, sizeof(want), "%s: GCPercent: not a percentage >= 0 or off: x", where(dir, "policy.d/a.policy", 3));
        ck_assert_str_eq(e.msg[1], want);
        snprintf(want, sizeof(want), "%s: unknown section [Nope]", where(dir, "policy.d/a.policy", 5));
        ck_assert_ptr_nonnull(strstr(e.msg[2], want));
        snprintf(want, sizeof(want), "%s: 3 errors, file ignored", where(dir, "policy.d/a.policy", 0));
        ck_assert_str_eq(e.msg[3], want);
        ck_assert_uint_eq(config_n_files(c), 0);
        config_free(c);
}
END_TEST

/* memd.conf: [Policy] only; a bad memd.conf leaves the policy.d files. */
START_TEST(test_main_conf_errors) {
        char dir[PATH_MAX], want[PATH_MAX + 600];
        struct config *c;
        struct errs e;
        struct policy p;

        new_dir(dir);
        put(dir, "memd.conf", "[Policy]\nMemoryLimit=1G\n[Match]\nComm=x\n");
        put(dir, "policy.d/a.policy", "[Policy]\nGCPercent=7\n");
        c = load(dir, &e);
        ck_assert_int_eq(e.n, 2);
        snprintf(want, sizeof(want), "%s: [Match] is not allowed in memd.conf (matching policies go in policy.d/*.policy)",
                 where(dir, "memd.conf", 3));
        ck_assert_str_eq(e.msg[0], want);
        ck_assert_uint_eq(config_n_files(c), 1);
        p = resolve(c, "x", NULL, NULL, 0);
        ck_assert_uint_eq(p.memory_limit, 0);
        ck_assert_int_eq(p.gc_percent, 7);
        config_free(c);
}
END_TEST

START_TEST(test_file_limits) {
        char dir[PATH_MAX], want[PATH_MAX + 600], *big;
        size_t max = CONFIG_FILE_MAX_BYTES;
        struct config *c;
        struct errs e;

        /* exactly 64 KiB loads; one byte more is an error */
        big = malloc(max + 2);
        ck_assert_ptr_nonnull(big);
        memset(big, '\n', max + 1);
        memcpy(big, "[Policy]\nGCPercent=3\n", 21);
        new_dir(dir);
        write_file(dir, "policy.d/a.policy", big, max);
        write_file(dir, "policy.d/b.policy", big, max + 1);
        free(big);
        /* neither a FIFO nor a directory hangs or crashes the load */
        snprintf(want, sizeof(want), "%s/policy.d/c.policy", dir);
        ck_assert_int_eq(mkfifo(want, 0644), 0);
        snprintf(want, sizeof(want), "%s/policy.d/d.policy", dir);
        ck_assert_int_eq(mkdir(want, 0755), 0);
        c = load(dir, &e);
        ck_assert_int_eq(e.n, 3);
        snprintf(want, sizeof(want), "%s: larger than 64 KiB", where(dir, "policy.d/b.policy", 0));
        ck_assert_str_eq(e.msg[0], want);
        snprintf(want, sizeof(want), "%s: not a regular file", where(dir, "policy.d/c.policy", 0));
        ck_assert_str_eq(e.msg[1], want);
        snprintf(want, sizeof(want), "%s: not a regular file", where(dir, "policy.d/d.policy", 0));
        ck_assert_str_eq(e.msg[2], want);
        ck_assert_uint_eq(config_n_files(c), 1);
        ck_assert_int_eq(resolve(c, NULL, NULL, NULL, 0).gc_percent, 3);
        config_free(c);

        /* policy.d that is not a directory */
        new_dir(dir);
        snprintf(want, sizeof(want), "%s/policy.d", dir);
        ck_assert_int_eq(rmdir(want), 0);
        put(dir, "policy.d", "x");
        put(dir, "memd.conf", "[Policy]\nGCPercent=4\n");
        c = load(dir, &e);
        ck_assert_int_eq(e.n, 1);
        ck_assert_ptr_nonnull(strstr(e.msg[0], "/policy.d: cannot read: "));
        ck_assert_uint_eq(config_n_files(c), 1);
        ck_assert_int_eq(resolve(c, NULL, NULL, NULL, 0).gc_percent, 4);
        config_free(c);
}
END_TEST

/* ---- precedence and matching --------------------------------------------- */

START_TEST(test_precedence) {
        char dir[PATH_MAX];
        struct config *c;
        struct errs e;
        struct policy p;

        new_dir(dir);
        put(dir, "memd.conf", "[Policy]\nMemoryLimit=1G\nIdleTimeout=1min\n");
        /* strcmp order: "10-a" < "20-b" < "9-c" */
        put(dir, "policy.d/9-c.policy", "[Policy]\nGCPercent=75\n");
        put(dir, "policy.d/20-b.policy", "[Match]\nComm=cache\n[Policy]\nMemoryLimit=200M\nGCPercent=60\n");
        put(dir, "policy.d/10-a.policy", "[Policy]\nMemoryLimit=100M\nGCPercent=50\nIdleMemoryMax=1M\nIdleMemoryMax=2M\n");
        /* not policies: never read (their contents would be errors) */
        put(dir, "policy.d/README", "junk\n");
        put(dir, "policy.d/x.policy~", "junk\n");
        put(dir, "policy.d/x.policy.bak", "junk\n");
        put(dir, "policy.d/.hidden.policy", "junk\n");
        put(dir, "policy.d/.policy", "junk\n");
        put(dir, "policy.d/x.conf", "junk\n");
        c = load(dir, &e);
        ck_assert_msg(e.n == 0, "%s", e.msg[0]);
        ck_assert_uint_eq(config_n_files(c), 4);

        p = resolve(c, "cache", NULL, NULL, 0);
        ck_assert_uint_eq(p.memory_limit, 200 * MIB);
        ck_assert_str_eq(p.source[POLICY_MEMORY_LIMIT], where(dir, "policy.d/20-b.policy", 4));
        ck_assert_int_eq(p.gc_percent, 75);
        ck_assert_str_eq(p.source[POLICY_GC_PERCENT], where(dir, "policy.d/9-c.policy", 2));
        ck_assert_uint_eq(p.idle_timeout_ns, 60 * SEC);
        ck_assert_str_eq(p.source[POLICY_IDLE_TIMEOUT], where(dir, "memd.conf", 3));
        /* a key twice in one file: the later line */
        ck_assert_uint_eq(p.idle_memory_max, 2 * MIB);
        ck_assert_str_eq(p.source[POLICY_IDLE_MEMORY_MAX], where(dir, "policy.d/10-a.policy", 5));
        ck_assert(p.reclaim_on_pressure);
        ck_assert_str_eq(p.source[POLICY_RECLAIM_ON_PRESSURE], "default");
        ck_assert_str_eq(p.source[POLICY_PROFILE_RATE], "default");

        p = resolve(c, "other", NULL, NULL, 0);
        ck_assert_uint_eq(p.memory_limit, 100 * MIB);
        ck_assert_str_eq(p.source[POLICY_MEMORY_LIMIT], where(dir, "policy.d/10-a.policy", 2));
        ck_assert_int_eq(p.gc_percent, 75);
        config_free(c);
}
END_TEST

START_TEST(test_globs) {
        char dir[PATH_MAX];
        struct config *c;
        struct errs e;

        new_dir(dir);
        put(dir, "policy.d/comm.policy", "[Match]\nComm=cache* redis\n[Policy]\nGCPercent=1\n");
        put(dir, "policy.d/exe.policy", "[Match]\nExecutable=/usr/bin/*\n[Policy]\nIdleMemoryMax=2M\n");
        put(dir, "policy.d/unit.policy", "[Match]\nUnit=*.service\tfoo-?.scope\n[Policy]\nIdleTimeout=3s\n");
        /* all keys given must match; a key twice adds to its list */
        put(dir, "policy.d/all.policy", "[Match]\nComm=w[0-9]\nComm=web\nUnit=www.service\n[Policy]\nMemoryLimit=4M\n");
        c = load(dir, &e);
        ck_assert_msg(e.n == 0, "%s", e.msg[0]);

        ck_assert_int_eq(resolve(c, "cache", NULL, NULL, 0).gc_percent, 1);
        ck_assert_int_eq(resolve(c, "cache-2", NULL, NULL, 0).gc_percent, 1);
        ck_assert_int_eq(resolve(c, "redis", NULL, NULL, 0).gc_percent, 1);
        ck_assert_int_eq(resolve(c, "redis2", NULL, NULL, 0).gc_percent, -1);
        ck_assert_int_eq(resolve(c, "xcache", NULL, NULL, 0).gc_percent, -1);
        ck_assert_int_eq(resolve(c, NULL, NULL, NULL, 0).gc_percent, -1);

        ck_assert_uint_eq(resolve(c, NULL, "/usr/bin/foo", NULL, 0).idle_memory_max, 2 * MIB);
        /* '*' stops at '/' in Executable (FNM_PATHNAME) */
        ck_assert_uint_eq(resolve(c, NULL, "/usr/bin/x/foo", NULL, 0).idle_memory_max, 32 * MIB);
        ck_assert_uint_eq(resolve(c, NULL, "/usr/sbin/foo", NULL, 0).idle_memory_max, 32 * MIB);

        ck_assert_uint_eq(resolve(c, NULL, NULL, "a.service", 0).idle_timeout_ns, 3 * SEC);
        ck_assert_uint_eq(resolve(c, NULL, NULL, "foo-1.scope", 0).idle_timeout_ns, 3 * SEC);
        ck_assert_uint_eq(resolve(c, NULL, NULL, "foo-12.scope", 0).idle_timeout_ns, 30 * SEC);
        ck_assert_uint_eq(resolve(c, NULL, NULL, "a.socket", 0).idle_timeout_ns, 30 * SEC);

        ck_assert_uint_eq(resolve(c, "w1", NULL, "www.service", 0).memory_limit, 4 * MIB);
        ck_assert_uint_eq(resolve(c, "web", NULL, "www.service", 0).memory_limit, 4 * MIB);
        ck_assert_uint_eq(resolve(c, "web", NULL, "api.service", 0).memory_limit, 0);
        ck_assert_uint_eq(resolve(c, "web", NULL, NULL, 0).memory_limit, 0);
        ck_assert_uint_eq(resolve(c, "wx", NULL, "www.service", 0).memory_limit, 0);
        config_free(c);
}
END_TEST

START_TEST(test_users) {
        char dir[PATH_MAX];
        struct config *c;
        struct errs e;

        new_dir(dir);
        put(dir, "policy.d/root.policy", "[Match]\nUser=root\n[Policy]\nGCPercent=1\n");
        put(dir, "policy.d/uids.policy", "[Match]\nUser=1000 4242\n[Policy]\nMemoryLimit=1M\n");
        c = load(dir, &e);
        ck_assert_msg(e.n == 0, "%s", e.msg[0]);
        ck_assert_int_eq(resolve(c, NULL, NULL, NULL, 0).gc_percent, 1);
        ck_assert_int_eq(resolve(c, NULL, NULL, NULL, 1000).gc_percent, -1);
        ck_assert_uint_eq(resolve(c, NULL, NULL, NULL, 1000).memory_limit, MIB);
        ck_assert_uint_eq(resolve(c, NULL, NULL, NULL, 4242).memory_limit, MIB);
        ck_assert_uint_eq(resolve(c, NULL, NULL, NULL, 0).memory_limit, 0);
        /* unknown uid */
        ck_assert_int_eq(resolve(c, NULL, NULL, NULL, (uid_t) -1).gc_percent, -1);
        ck_assert_uint_eq(resolve(c, NULL, NULL, NULL, (uid_t) -1).memory_limit, 0);
        config_free(c);
}
END_TEST

static Suite *config_suite(void) {
        Suite *s = suite_create("memd-config");
        TCase *tc = tcase_create("values");

        tcase_add_test(tc, test_bytes);
        tcase_add_test(tc, test_durations);
        tcase_add_test(tc, test_bools);
        tcase_add_test(tc, test_key_names);
        tcase_add_test(tc, test_policy_set);
        suite_add_tcase(s, tc);

        tc = tcase_create("files");
        tcase_add_unchecked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_missing_dir);
        tcase_add_test(tc, test_every_key);
        tcase_add_test(tc, test_spec_example);
        tcase_add_test(tc, test_errors);
        tcase_add_test(tc, test_errors_many);
        tcase_add_test(tc, test_main_conf_errors);
        tcase_add_test(tc, test_file_limits);
        tcase_add_test(tc, test_precedence);
        tcase_add_test(tc, test_globs);
        tcase_add_test(tc, test_users);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_main(config_suite(), "test-memd-config", false);
}
