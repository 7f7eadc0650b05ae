/* memd-config.h - memd.conf and policy.d/NAME.policy: parsing, matching a process, resolving its policy (docs/config.md). */
#ifndef MEMD_CONFIG_H
#define MEMD_CONFIG_H

/* Not "config.h": that name is meson's generated header (MEMD_VERSION_STRING),
 * which main.c and dispatch.c include and a memd/config.h would shadow. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CONFIG_DIR_DEFAULT "/etc/memd"
#define CONFIG_FILE_MAX_BYTES (64u * 1024)

enum policy_key {
        POLICY_MEMORY_LIMIT,
        POLICY_IDLE_MEMORY_MAX,
        POLICY_IDLE_TIMEOUT,
        POLICY_RECLAIM_ON_PRESSURE,
        POLICY_GC_PERCENT,
        POLICY_PROFILE_RATE,
        _POLICY_KEY_MAX
};

struct policy {
        uint64_t memory_limit;          /* bytes; 0 = none */
        uint64_t idle_memory_max;       /* bytes */
        uint64_t idle_timeout_ns;       /* UINT64_MAX = never ("infinity") */
        bool reclaim_on_pressure;
        int gc_percent;                 /* -1 = off */
        uint64_t profile_rate;          /* bytes; meaningful only when profile_rate_set */
        bool profile_rate_set;          /* false: leave the process's rate alone */
        /* Where each value came from: "default", "/etc/memd/memd.conf:12",
         * "/etc/memd/policy.d/cache.policy:7", "memctl set" ...  Static or
         * owned by the struct config resolved from (or by policy_set's caller);
         * never NULL. */
        const char *source[_POLICY_KEY_MAX];
};

/* What memd knows of a process.  NULL (or uid (uid_t) -1) = unknown: it
 * never matches a [Match] key that is given. */
struct policy_subject {
        const char *comm;
        const char *exe;
        const char *unit;
        uid_t uid;
};

struct config;

/* msg = "FILE:LINE: what is wrong" (or "FILE: what is wrong" for the file as
 * a whole: cannot open, too large, skipped). */
typedef void (*config_error_fn)(const char *msg, void *userdata);

/* Loads DIR/memd.conf and DIR/policy.d/NAME.policy.  Never fails on bad files:
 * each error goes to err (may be NULL) and a file with any error is skipped
 * whole; the other files still load.  A missing DIR or memd.conf is fine (the
 * built-in defaults).  Returns 0 and *ret (free with config_free), or -ENOMEM. */
int config_load(const char *dir, struct config **ret, config_error_fn err, void *userdata);
void config_free(struct config *c);

/* Files loaded without error (memd.conf included), for the log line. */
size_t config_n_files(const struct config *c);

/* The built-in defaults, every source "default". */
void policy_defaults(struct policy *p);

/* The policy of s: the defaults, then memd.conf's [Policy], then each
 * policy.d file whose [Match] matches s, in strcmp order of file name, a
 * later file overriding an earlier one key by key.  out's sources point into
 * c (c may be NULL: the defaults). */
void config_resolve(const struct config *c, const struct policy_subject *s, struct policy *out);

/* Parses one Key=Value into p (shared with `memctl set`).  key: the INI name
 * (MemoryLimit) or kebab-case (memory-limit), case-sensitive.  source is
 * stored as is (the caller keeps it alive).  Returns 0, or -EINVAL with a
 * message in err ("MemoryLimit: not a byte count (e.g. 256M) or off: 12Q"),
 * p untouched. */
int policy_set(struct policy *p, const char *key, const char *value, const char *source, char *err, size_t err_len);

/* "MemoryLimit", ...; NULL out of range. */
const char *policy_key_name(enum policy_key k);
/* "memory-limit", ...; NULL out of range. */
const char *policy_key_kebab_name(enum policy_key k);
/* Either spelling to its key, or -EINVAL. */
int policy_key_from_name(const char *name);

/* The value parsers, exposed for memctl and the tests.  0 or -EINVAL/-ERANGE. */
int config_parse_bytes(const char *s, uint64_t *ret_bytes);
int config_parse_duration_ns(const char *s, uint64_t *ret_ns);
int config_parse_bool(const char *s, bool *ret);

#endif
