/* log.c - memd's log lines: "memd: ..." on stderr, or journal entries with structured fields. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>

#include <systemd/sd-journal.h>

#include "catalog.h"
#include "daemon.h"

static bool use_journal;

/* One MESSAGE_ID per MEMD_EVENT kind (systemd/memd.catalog explains them). */
static const char *message_id(const char *event) {
        static const struct {
                const char *event, *id;
        } ids[] = {
                { "attach", MEMD_MESSAGE_ATTACH_STR },
                { "detach", MEMD_MESSAGE_DETACH_STR },
                { "gc", MEMD_MESSAGE_GC_STR },
                { "scvg", MEMD_MESSAGE_SCVG_STR },
                { "policy", MEMD_MESSAGE_POLICY_STR },
        };

        for (size_t i = 0; event && i < sizeof(ids) / sizeof(ids[0]); i++)
                if (!strcmp(ids[i].event, event))
                        return ids[i].id;
        return NULL;
}

/* Under journald, stderr is a stream whose dev:ino systemd puts in $JOURNAL_STREAM. */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

void log_setup(enum log_target t) {
        use_journal = t == LOG_TARGET_JOURNAL || (t == LOG_TARGET_AUTO && stderr_is_journal());
}

static void log_write(int priority, const struct process *p, const char *event, const char *text) {
        if (!use_journal) {
                fprintf(stderr, "memd: %s\n", text);
                return;
        }
        if (p && message_id(event))
                sd_journal_send("MESSAGE=%s", text, "PRIORITY=%i", priority, "MESSAGE_ID=%s", message_id(event),
                                "MEMD_EVENT=%s", event, "MEMD_PID=%d", (int) p->pid,
                                "MEMD_COMM=%s", p->comm, "MEMD_UNIT=%s", p->unit, NULL);
        else if (p)
                sd_journal_send("MESSAGE=%s", text, "PRIORITY=%i", priority,
                                "MEMD_EVENT=%s", event, "MEMD_PID=%d", (int) p->pid,
                                "MEMD_COMM=%s", p->comm, "MEMD_UNIT=%s", p->unit, NULL);
        else
                sd_journal_send("MESSAGE=%s", text, "PRIORITY=%i", priority, NULL);
}

static void log_va(int priority, const struct process *p, const char *event, const char *fmt, va_list ap) {
        char text[1024];

        vsnprintf(text, sizeof text, fmt, ap);
        log_write(priority, p, event, text);
}

void log_msg(int priority, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        log_va(priority, NULL, NULL, fmt, ap);
        va_end(ap);
}

void log_event(const char *event, const struct process *p, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        log_va(LOG_INFO, p, event, fmt, ap);
        va_end(ap);
}

/* %m in fmt means r. */
int log_errno(int priority, int r, const char *fmt, ...) {
        va_list ap;

        errno = r < 0 ? -r : r;
        va_start(ap, fmt);
        log_va(priority, NULL, NULL, fmt, ap);
        va_end(ap);
        return r < 0 ? r : -r;
}

void log_cycle(const struct process *p, const struct proto_event *e) {
        const char *event = e->kind == PROTO_EVENT_GC ? "gc" : "scvg";

        if (!use_journal) {
                /* One line per trace line, each naming the process. */
                const char *t = e->text;
                while (*t) {
                        size_t n = strcspn(t, "\n");
                        fprintf(stderr, "memd: pid %d (%s): %.*s\n", (int) p->pid, p->comm, (int) n, t);
                        t += n + (t[n] == '\n');
                }
                return;
        }
        /* OBJECT_PID: journald adds the process's OBJECT_COMM, OBJECT_EXE,
         * OBJECT_SYSTEMD_UNIT... (trusted from a root sender). */
        if (e->kind == PROTO_EVENT_GC)
                sd_journal_send("MESSAGE=%s", e->text, "PRIORITY=%i", LOG_INFO, "MESSAGE_ID=%s", message_id(event),
                                "MEMD_EVENT=%s", event, "MEMD_PID=%d", (int) p->pid, "OBJECT_PID=%d", (int) p->pid,
                                "MEMD_COMM=%s", p->comm, "MEMD_UNIT=%s", p->unit,
                                "MEMD_FORCED=%d", e->forced, "MEMD_SEQ=%" PRIu64, e->seq,
                                "MEMD_DURATION_NS=%" PRIu64, e->duration_ns,
                                "MEMD_HEAP_BEFORE_BYTES=%" PRIu64, e->heap_before_bytes,
                                "MEMD_HEAP_RECLAIMED_BYTES=%" PRIu64, e->heap_reclaimed_bytes,
                                "MEMD_HEAP_LIVE_BYTES=%" PRIu64, e->heap_live_bytes,
                                "MEMD_GOAL_BYTES=%" PRIu64, e->goal_bytes, NULL);
        else
                sd_journal_send("MESSAGE=%s", e->text, "PRIORITY=%i", LOG_INFO, "MESSAGE_ID=%s", message_id(event),
                                "MEMD_EVENT=%s", event, "MEMD_PID=%d", (int) p->pid, "OBJECT_PID=%d", (int) p->pid,
                                "MEMD_COMM=%s", p->comm, "MEMD_UNIT=%s", p->unit,
                                "MEMD_FORCED=%d", e->forced, "MEMD_SEQ=%" PRIu64, e->seq,
                                "MEMD_DURATION_NS=%" PRIu64, e->duration_ns,
                                "MEMD_RELEASED_BYTES=%" PRIu64, e->released_bytes,
                                "MEMD_HEAP_INUSE_BYTES=%" PRIu64, e->heap_inuse_bytes,
                                "MEMD_HEAP_IDLE_BYTES=%" PRIu64, e->heap_idle_bytes,
                                "MEMD_HEAP_SYS_BYTES=%" PRIu64, e->heap_sys_bytes, NULL);
}

void log_policy(const struct process *p, const char *kind, const char *why) {
        const struct memd_memstats *s = &p->stats;

        if (!use_journal) {
                fprintf(stderr, "memd: pid %d (%s): policy %s: %s\n", (int) p->pid, p->comm, kind, why);
                return;
        }
        sd_journal_send("MESSAGE=policy %s: %s", kind, why, "PRIORITY=%i", LOG_INFO,
                        "MESSAGE_ID=%s", message_id("policy"), "MEMD_EVENT=policy", "MEMD_POLICY=%s", kind,
                        "MEMD_PID=%d", (int) p->pid, "OBJECT_PID=%d", (int) p->pid,
                        "MEMD_COMM=%s", p->comm, "MEMD_UNIT=%s", p->unit,
                        "MEMD_LIMIT_BYTES=%" PRIu64, p->values.memory_limit,
                        "MEMD_IDLE_MEMORY_MAX_BYTES=%" PRIu64, p->values.idle_memory_max,
                        "MEMD_HEAP_SYS_BYTES=%" PRIu64, s->HeapSys,
                        "MEMD_HEAP_RELEASED_BYTES=%" PRIu64, s->HeapReleased,
                        "MEMD_HEAP_IDLE_BYTES=%" PRIu64, s->HeapIdle,
                        "MEMD_HEAP_INUSE_BYTES=%" PRIu64, s->HeapInuse,
                        "MEMD_HEAP_ALLOC_BYTES=%" PRIu64, s->HeapAlloc, NULL);
}
