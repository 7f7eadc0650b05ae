/* output.c - memctl's one output backend: text tables with human units, or JSON with Go's MemStats names. */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ctl.h"

const char *output_bytes(char *buf, size_t size, uint64_t bytes) {
        static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
        double v = (double) bytes;
        unsigned u = 0;

        if (bytes < 1024) {
                snprintf(buf, size, "%" PRIu64 " B", bytes);
                return buf;
        }
        while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
                v /= 1024;
                u++;
        }
        /* One decimal, dropped when it is .0: "1.5 GiB", "200 MiB". */
        snprintf(buf, size, "%.1f", v);
        if (strlen(buf) > 2 && strcmp(buf + strlen(buf) - 2, ".0") == 0)
                buf[strlen(buf) - 2] = '\0';
        snprintf(buf + strlen(buf), size - strlen(buf), " %s", units[u]);
        return buf;
}

void output_json_string(const char *s) {
        putchar('"');
        for (; *s; s++) {
                unsigned char ch = (unsigned char) *s;

                if (ch == '"' || ch == '\\')
                        printf("\\%c", ch);
                else if (ch < 0x20)
                        printf("\\u%04x", ch);
                else
                        putchar(ch);
        }
        putchar('"');
}

/* ---- MemStats fields, declared once for text and JSON --------------------- */
enum field_kind { K_BYTES, K_COUNT, K_COUNT32, K_TIME_NS, K_DURATION_NS, K_FRACTION, K_PAUSES };

static const struct {
        const char *name;       /* Go's MemStats name, also the JSON key */
        size_t offset;
        enum field_kind kind;
} fields[] = {
#define M(name, kind) { #name, offsetof(struct memd_memstats, name), kind }
        M(Alloc, K_BYTES), M(TotalAlloc, K_BYTES), M(Sys, K_BYTES),
        M(Mallocs, K_COUNT), M(Frees, K_COUNT),
        M(HeapAlloc, K_BYTES), M(HeapSys, K_BYTES), M(HeapIdle, K_BYTES), M(HeapInuse, K_BYTES),
        M(HeapReleased, K_BYTES), M(HeapObjects, K_COUNT), M(BuckHashSys, K_BYTES),
        M(NextGC, K_BYTES), M(LastGC, K_TIME_NS), M(PauseTotalNs, K_DURATION_NS),
        M(PauseNs, K_PAUSES), M(PauseEnd, K_PAUSES),
        M(NumGC, K_COUNT32), M(NumForcedGC, K_COUNT32), M(GCCPUFraction, K_FRACTION),
        M(RSS, K_BYTES), M(RssAnon, K_BYTES), M(LazyFree, K_BYTES), M(Threads, K_COUNT32),
#undef M
};

static uint64_t field_u64(const struct memd_memstats *s, size_t i) {
        const char *p = (const char *) s + fields[i].offset;
        uint64_t v64;
        uint32_t v32;

        if (fields[i].kind == K_COUNT32) {
                memcpy(&v32, p, sizeof v32);
                return v32;
        }
        memcpy(&v64, p, sizeof v64);
        return v64;
}

/* pauses: PauseNs/PauseEnd too (memd sends them for one process only). */
static void json_memstats(const struct memd_memstats *s, bool pauses) {
        bool first = true;

        printf("{");
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
                if (fields[i].kind == K_PAUSES && !pauses)
                        continue;
                printf("%s\"%s\": ", first ? "" : ", ", fields[i].name);
                first = false;
                if (fields[i].kind == K_FRACTION)
                        printf("%.17g", s->GCCPUFraction);
                else if (fields[i].kind == K_PAUSES) {
                        const uint64_t *a = (const uint64_t *) ((const char *) s + fields[i].offset);

                        printf("[");
                        for (unsigned k = 0; k < PROTO_PAUSE_ENTRIES; k++)
                                printf("%s%" PRIu64, k ? ", " : "", a[k]);
                        printf("]");
                } else
                        printf("%" PRIu64, field_u64(s, i));
        }
        printf("}");
}

static void json_event(const struct proto_event *e) {
        printf("{\"pid\": %" PRIu32 ", \"event\": \"%s\", \"time_ns\": %" PRId64 ", \"forced\": %s, \"seq\": %" PRIu64
               ", \"duration_ns\": %" PRIu64, e->pid, e->kind == PROTO_EVENT_GC ? "gc" : "scvg", e->time_ns,
               e->forced ? "true" : "false", e->seq, e->duration_ns);
        if (e->kind == PROTO_EVENT_GC)
                printf(", \"heap_before_bytes\": %" PRIu64 ", \"heap_reclaimed_bytes\": %" PRIu64
                       ", \"heap_live_bytes\": %" PRIu64 ", \"goal_bytes\": %" PRIu64,
                       e->heap_before_bytes, e->heap_reclaimed_bytes, e->heap_live_bytes, e->goal_bytes);
        else
                printf(", \"released_bytes\": %" PRIu64 ", \"heap_inuse_bytes\": %" PRIu64
                       ", \"heap_idle_bytes\": %" PRIu64 ", \"heap_sys_bytes\": %" PRIu64,
                       e->released_bytes, e->heap_inuse_bytes, e->heap_idle_bytes, e->heap_sys_bytes);
        printf(", \"text\": ");
        output_json_string(e->text);
        printf("}");
}

static void json_process(const struct proto_process *p) {
        printf("{\"pid\": %" PRIu32 ", \"uid\": %" PRIu32 ", \"comm\": ", p->pid, p->uid);
        output_json_string(p->comm);
        printf(", \"unit\": ");
        output_json_string(p->unit);
        printf(", \"attached_ns\": %" PRId64 ", \"stats_time_ns\": %" PRId64 ", \"exited_ns\": %" PRId64,
               p->attached_ns, p->stats_time_ns, p->exited_ns);
        printf(", \"rate_bytes\": %" PRIu64 ", \"limit_bytes\": %" PRIu64 ", \"last_gc_ns\": %" PRId64
               ", \"last_scvg_ns\": %" PRId64, p->rate_bytes, p->limit_bytes, p->last_gc_ns, p->last_scvg_ns);
        printf(", \"idle_max_bytes\": %" PRIu64 ", \"idle_timeout_ns\": %" PRIu64 ", \"allowance_bytes\": %" PRIu64
               ", \"policy_actions\": %" PRIu64 ", \"policy_last\": ",
               p->idle_max_bytes, p->idle_timeout_ns, p->allowance_bytes, p->policy_actions);
        output_json_string(p->policy_last);
        if (p->policy[0]) {
                /* {"Key": {"value": "...", "source": "..."}, ...} */
                const char *line = p->policy;
                bool first = true;

                printf(", \"policy\": {");
                while (*line) {
                        size_t n = strcspn(line, "\n"), eq = strcspn(line, "="), tab = strcspn(line, "\t");
                        if (eq < tab && tab < n) {
                                char key[64], val[256], src[4200];
                                snprintf(key, sizeof key, "%.*s", (int) eq, line);
                                snprintf(val, sizeof val, "%.*s", (int) (tab - eq - 1), line + eq + 1);
                                snprintf(src, sizeof src, "%.*s", (int) (n - tab - 1), line + tab + 1);
                                printf("%s", first ? "" : ", ");
                                output_json_string(key);
                                printf(": {\"value\": ");
                                output_json_string(val);
                                printf(", \"source\": ");
                                output_json_string(src);
                                printf("}");
                                first = false;
                        }
                        line += n + (line[n] == '\n');
                }
                printf("}");
        }
        printf(", \"profile\": {\"buckets\": %" PRIu64 ", \"alloc_objects\": %" PRIu64 ", \"alloc_bytes\": %" PRIu64
               ", \"inuse_objects\": %" PRIu64 ", \"inuse_bytes\": %" PRIu64 "}",
               p->profile_buckets, p->profile_alloc_objects, p->profile_alloc_bytes, p->profile_inuse_objects,
               p->profile_inuse_bytes);
        if (p->rss_anon_bytes || p->rss_file_bytes || p->pss_bytes)
                printf(", \"rss\": {\"anon_bytes\": %" PRIu64 ", \"file_bytes\": %" PRIu64 ", \"shmem_bytes\": %" PRIu64
                       ", \"pss_bytes\": %" PRIu64 ", \"swap_bytes\": %" PRIu64 ", \"lazyfree_bytes\": %" PRIu64 "}",
                       p->rss_anon_bytes, p->rss_file_bytes, p->rss_shmem_bytes, p->pss_bytes, p->swap_bytes,
                       p->lazyfree_bytes);
        if (p->has_stats) {
                printf(", \"memstats\": ");
                json_memstats(&p->stats, p->has_pauses);
        }
        if (p->event_view.n) {
                printf(", \"events\": [");
                for (uint32_t i = 0; i < p->event_view.n; i++) {
                        struct proto_event e;
                        if (proto_decode_event_object(&p->event_view.items[i], &e) < 0)
                                continue;
                        printf("%s", i ? ", " : "");
                        json_event(&e);
                }
                printf("]");
        }
        printf("}");
}

/* ---- the status table ------------------------------------------------------ */
enum align { LEFT, RIGHT };
enum column_id { COL_PID, COL_COMM, COL_UNIT, COL_RSS, COL_INUSE, COL_IDLE, COL_RELEASED, COL_LIMIT, COL_LAST, _COL_MAX };

static const struct {
        const char *title;
        int width;
        enum align align;
} columns[_COL_MAX] = {
        [COL_PID] = { "PID", 7, RIGHT },
        [COL_COMM] = { "COMMAND", 15, LEFT },
        [COL_UNIT] = { "UNIT", 28, LEFT },
        [COL_RSS] = { "RSS", 10, RIGHT },
        [COL_INUSE] = { "HEAP-INUSE", 10, RIGHT },
        [COL_IDLE] = { "HEAP-IDLE", 10, RIGHT },
        [COL_RELEASED] = { "RELEASED", 10, RIGHT },
        [COL_LIMIT] = { "LIMIT", 10, RIGHT },
        [COL_LAST] = { "LAST-GC/SCVG", 12, RIGHT },
};

/* "4s ago", "12m ago", "3h ago", "-" for never. */
static const char *output_age(char *buf, size_t size, int64_t ns) {
        struct timespec now;
        int64_t s;

        if (ns <= 0)
                return "-";
        clock_gettime(CLOCK_REALTIME, &now);
        s = (int64_t) now.tv_sec - ns / 1000000000;
        if (s < 0)
                s = 0;
        if (s < 120)
                snprintf(buf, size, "%llds ago", (long long) s);
        else if (s < 7200)
                snprintf(buf, size, "%lldm ago", (long long) (s / 60));
        else if (s < 2 * 86400)
                snprintf(buf, size, "%lldh ago", (long long) (s / 3600));
        else
                snprintf(buf, size, "%lldd ago", (long long) (s / 86400));
        return buf;
}

static void print_row(const char *const cells[_COL_MAX]) {
        for (int i = 0; i < _COL_MAX; i++) {
                int w = columns[i].width;
                printf("%s%*s", i ? "  " : "", columns[i].align == RIGHT ? w : -w, cells[i]);
        }
        /* Trailing blanks from the last column never matter; keep lines clean anyway. */
        printf("\n");
}

void output_status_begin(const struct ctl *ctl) {
        const char *titles[_COL_MAX];

        if (ctl->json) {
                printf("{\"processes\": [");
                return;
        }
        for (int i = 0; i < _COL_MAX; i++)
                titles[i] = columns[i].title;
        print_row(titles);
}

void output_status_row(const struct ctl *ctl, const struct proto_process *p, size_t i) {
        char pid[16], rss[32], inuse[32], idle[32], rel[32], limit[32], last[32];
        int64_t last_ns = p->last_gc_ns > p->last_scvg_ns ? p->last_gc_ns : p->last_scvg_ns;
        const char *cells[_COL_MAX] = {
                [COL_PID] = pid, [COL_COMM] = p->comm,
                [COL_UNIT] = p->unit[0] ? p->unit : "-",
                [COL_RSS] = "-", [COL_INUSE] = "-", [COL_IDLE] = "-", [COL_RELEASED] = "-",
                [COL_LIMIT] = p->limit_bytes ? output_bytes(limit, sizeof limit, p->limit_bytes) : "-",
                [COL_LAST] = output_age(last, sizeof last, last_ns),
        };

        if (ctl->json) {
                printf("%s", i ? ", " : "");
                json_process(p);
                return;
        }
        snprintf(pid, sizeof pid, "%" PRIu32, p->pid);
        if (p->has_stats) {
                cells[COL_RSS] = output_bytes(rss, sizeof rss, p->stats.RSS);
                cells[COL_INUSE] = output_bytes(inuse, sizeof inuse, p->stats.HeapInuse);
                cells[COL_IDLE] = output_bytes(idle, sizeof idle, p->stats.HeapIdle);
                cells[COL_RELEASED] = output_bytes(rel, sizeof rel, p->stats.HeapReleased);
        } else if (p->stats_time_ns) { /* a brief row */
                cells[COL_RSS] = output_bytes(rss, sizeof rss, p->rss_bytes);
                cells[COL_INUSE] = output_bytes(inuse, sizeof inuse, p->heap_inuse_bytes);
                cells[COL_IDLE] = output_bytes(idle, sizeof idle, p->heap_idle_bytes);
                cells[COL_RELEASED] = output_bytes(rel, sizeof rel, p->heap_released_bytes);
        }
        print_row(cells);
}

void output_status_end(const struct ctl *ctl) {
        if (ctl->json)
                printf("]}\n");
}

static void print_time_ns(int64_t ns) {
        time_t t = (time_t) (ns / 1000000000);
        struct tm tm;
        char buf[64];

        if (ns <= 0) {
                printf("never\n");
                return;
        }
        localtime_r(&t, &tm);
        strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S %Z", &tm);
        printf("%s\n", buf);
}

/* The RSS breakdown memd read, and why RSS exceeds the heap in use. */
static void print_rss(const struct proto_process *p) {
        const struct memd_memstats *s = &p->stats;
        char a[32], b[32], c[32], d[32], e[32];
        uint64_t resident_idle = s->HeapIdle > s->HeapReleased ? s->HeapIdle - s->HeapReleased : 0;

        printf("RSS:           %s", output_bytes(a, sizeof a, s->RSS));
        if (p->rss_anon_bytes || p->rss_file_bytes)
                printf(" = anon %s + file %s + shmem %s; PSS %s, swap %s\n",
                       output_bytes(b, sizeof b, p->rss_anon_bytes), output_bytes(c, sizeof c, p->rss_file_bytes),
                       output_bytes(d, sizeof d, p->rss_shmem_bytes), output_bytes(e, sizeof e, p->pss_bytes),
                       output_bytes(a, sizeof a, p->swap_bytes));
        else
                printf("\n");
        if (s->RSS <= s->HeapInuse)
                return;
        printf("  RSS - HeapInuse = %s:\n", output_bytes(a, sizeof a, s->RSS - s->HeapInuse));
        printf("    %-11s idle heap still resident (HeapIdle - HeapReleased): the allocator keeps it for\n"
               "                reuse; 'memctl free-os-memory %" PRIu32 "' returns it to the OS\n",
               output_bytes(b, sizeof b, resident_idle), p->pid);
        if (s->LazyFree)
                printf("    %-11s LazyFree: freed with MADV_FREE, counted in RSS until the kernel needs it\n",
                       output_bytes(c, sizeof c, s->LazyFree));
        if (s->RSS > s->RssAnon)
                printf("    %-11s file-backed and shared pages (code, mapped files): not heap\n",
                       output_bytes(d, sizeof d, s->RSS - s->RssAnon));
}

static void print_event_lines(const struct proto_event *e, const char *indent) {
        const char *t = e->text;

        while (*t) {
                size_t n = strcspn(t, "\n");
                printf("%s%.*s\n", indent, (int) n, t);
                t += n + (t[n] == '\n');
        }
}

/* The policy in force, a value and where it came from per line, then the
 * idle allowance and the last action. */
static void print_policy(const struct proto_process *p) {
        char a[32];
        const char *line = p->policy;

        printf("Policy:\n");
        while (*line) {
                size_t n = strcspn(line, "\n"), k = strcspn(line, "\t");
                if (k < n)
                        printf("  %-28.*s from %.*s\n", (int) k, line, (int) (n - k - 1), line + k + 1);
                else
                        printf("  %.*s\n", (int) n, line);
                line += n + (line[n] == '\n');
        }
        printf("  idle allowance now %s (recent peak of the heap used over HeapInuse now, decaying over IdleTimeout)\n",
               output_bytes(a, sizeof a, p->allowance_bytes));
        if (p->policy_actions)
                printf("  %" PRIu64 " action%s; the last: %s\n", p->policy_actions, p->policy_actions == 1 ? "" : "s",
                       p->policy_last);
        else
                printf("  no action taken\n");
}

static void print_profile_and_events(const struct proto_process *p) {
        char a[32], b[32], c[32];

        printf("Profile:       %" PRIu64 " stacks at rate %s; in use ~%s in ~%" PRIu64 " objects, allocated ~%s\n",
               p->profile_buckets, output_bytes(a, sizeof a, p->rate_bytes),
               output_bytes(b, sizeof b, p->profile_inuse_bytes), p->profile_inuse_objects,
               output_bytes(c, sizeof c, p->profile_alloc_bytes));
        print_policy(p);
        if (!p->event_view.n) {
                printf("Recent events: none\n");
                return;
        }
        printf("Recent events (oldest first):\n");
        for (uint32_t i = 0; i < p->event_view.n; i++) {
                struct proto_event e;

                if (proto_decode_event_object(&p->event_view.items[i], &e) >= 0)
                        print_event_lines(&e, "  ");
        }
}

void output_gc(const struct ctl *ctl, uint32_t pid, const struct proto_gc_result *g) {
        char a[32], b[32], c[32];

        if (ctl->json) {
                printf("{\"pid\": %" PRIu32 ", \"freed_bytes\": %" PRIu64 ", \"heap_before_bytes\": %" PRIu64
                       ", \"heap_after_bytes\": %" PRIu64 ", \"duration_ns\": %" PRIu64 ", \"text\": ",
                       pid, g->freed_bytes, g->heap_before_bytes, g->heap_after_bytes, g->duration_ns);
                output_json_string(g->text);
                printf("}\n");
                return;
        }
        printf("%s\n", g->text);
        printf("reclaimers freed %s; HeapAlloc %s -> %s in %.3f ms\n", output_bytes(a, sizeof a, g->freed_bytes),
               output_bytes(b, sizeof b, g->heap_before_bytes), output_bytes(c, sizeof c, g->heap_after_bytes),
               (double) g->duration_ns / 1e6);
}

void output_scavenge(const struct ctl *ctl, uint32_t pid, const struct proto_scavenge_result *v) {
        char a[32], b[32], c[32];
        const char *t = v->text;

        if (ctl->json) {
                printf("{\"pid\": %" PRIu32 ", \"released_bytes\": %" PRIu64 ", \"rss_before_bytes\": %" PRIu64
                       ", \"rss_after_bytes\": %" PRIu64 ", \"duration_ns\": %" PRIu64 ", \"text\": ",
                       pid, v->released_bytes, v->rss_before_bytes, v->rss_after_bytes, v->duration_ns);
                output_json_string(v->text);
                printf("}\n");
                return;
        }
        while (*t) {
                size_t n = strcspn(t, "\n");
                printf("%.*s\n", (int) n, t);
                t += n + (t[n] == '\n');
        }
        printf("RSS %s -> %s (released %s) in %.3f ms\n", output_bytes(a, sizeof a, v->rss_before_bytes),
               output_bytes(b, sizeof b, v->rss_after_bytes), output_bytes(c, sizeof c, v->released_bytes),
               (double) v->duration_ns / 1e6);
}

void output_event(const struct ctl *ctl, const struct proto_event *e) {
        char prefix[32];

        if (ctl->json) {
                json_event(e);
                printf("\n");
                return;
        }
        snprintf(prefix, sizeof prefix, "%" PRIu32 ": ", e->pid);
        print_event_lines(e, prefix);
}

void output_status_one(const struct ctl *ctl, const struct proto_process *p) {
        char buf[32];

        if (ctl->json) {
                json_process(p);
                printf("\n");
                return;
        }
        printf("%-14s %" PRIu32 "\n", "PID:", p->pid);
        printf("%-14s %s\n", "Command:", p->comm);
        printf("%-14s %s\n", "Unit:", p->unit[0] ? p->unit : "-");
        printf("%-14s %" PRIu32 "\n", "UID:", p->uid);
        printf("%-14s ", "Attached:");
        print_time_ns(p->attached_ns);
        if (p->exited_ns) {
                printf("%-14s ", "Exited:");
                print_time_ns(p->exited_ns);
                printf("%-14s the figures below are its last; memctl heap %" PRIu32 " gives its last profile\n", "",
                       p->pid);
        }
        if (!p->has_stats) {
                printf("%-14s none received yet\n", "MemStats:");
                return;
        }
        printf("%-14s ", "MemStats at:");
        print_time_ns(p->stats_time_ns);
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
                const struct memd_memstats *s = &p->stats;
                uint64_t v;

                printf("  %-14s ", fields[i].name);
                switch (fields[i].kind) {
                case K_BYTES:
                        printf("%12s\n", output_bytes(buf, sizeof buf, field_u64(s, i)));
                        break;
                case K_COUNT:
                case K_COUNT32:
                        printf("%12" PRIu64 "\n", field_u64(s, i));
                        break;
                case K_TIME_NS:
                        print_time_ns((int64_t) field_u64(s, i));
                        break;
                case K_DURATION_NS:
                        printf("%12.3f ms\n", (double) field_u64(s, i) / 1e6);
                        break;
                case K_FRACTION:
                        printf("%12.4f %%\n", s->GCCPUFraction * 100);
                        break;
                case K_PAUSES: {
                        const uint64_t *a = (const uint64_t *) ((const char *) s + fields[i].offset);

                        if (s->NumGC == 0) {
                                printf("%12s\n", "-");
                                break;
                        }
                        /* Latest first, at most 8 of the 256-entry ring. */
                        for (uint32_t k = 0; k < s->NumGC && k < 8; k++) {
                                v = a[(s->NumGC - 1 - k) % PROTO_PAUSE_ENTRIES];
                                if (fields[i].kind == K_PAUSES && strcmp(fields[i].name, "PauseNs") == 0)
                                        printf("%s%.3f ms", k ? ", " : "(latest first) ", (double) v / 1e6);
                                else
                                        printf("%s%" PRIu64, k ? ", " : "(latest first) ", v);
                        }
                        printf("\n");
                        break;
                }
                }
        }
        print_rss(p);
        print_profile_and_events(p);
}
