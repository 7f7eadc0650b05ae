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

static void json_string(const char *s) {
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

static void json_memstats(const struct memd_memstats *s) {
        printf("{");
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
                printf("%s\"%s\": ", i ? ", " : "", fields[i].name);
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

static void json_process(const struct proto_process *p) {
        printf("{\"pid\": %" PRIu32 ", \"uid\": %" PRIu32 ", \"comm\": ", p->pid, p->uid);
        json_string(p->comm);
        printf(", \"unit\": ");
        json_string(p->unit);
        printf(", \"attached_ns\": %" PRId64 ", \"stats_time_ns\": %" PRId64, p->attached_ns, p->stats_time_ns);
        if (p->has_stats) {
                printf(", \"memstats\": ");
                json_memstats(&p->stats);
        }
        printf("}");
}

/* ---- the status table ------------------------------------------------------ */
enum align { LEFT, RIGHT };
enum column_id { COL_PID, COL_COMM, COL_UNIT, COL_RSS, COL_INUSE, COL_IDLE, COL_RELEASED, _COL_MAX };

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
};

static void print_row(const char *const cells[_COL_MAX]) {
        for (int i = 0; i < _COL_MAX; i++) {
                int w = columns[i].width;
                printf("%s%*s", i ? "  " : "", columns[i].align == RIGHT ? w : -w, cells[i]);
        }
        /* Trailing blanks from the last column never matter; keep lines clean anyway. */
        printf("\n");
}

void output_status_list(const struct ctl *ctl, const struct proto_process *p, size_t n) {
        if (ctl->json) {
                printf("{\"processes\": [");
                for (size_t i = 0; i < n; i++) {
                        printf("%s", i ? ", " : "");
                        json_process(&p[i]);
                }
                printf("]}\n");
                return;
        }
        const char *titles[_COL_MAX];
        for (int i = 0; i < _COL_MAX; i++)
                titles[i] = columns[i].title;
        print_row(titles);
        for (size_t i = 0; i < n; i++) {
                char pid[16], rss[32], inuse[32], idle[32], rel[32];
                const char *cells[_COL_MAX] = {
                        [COL_PID] = pid, [COL_COMM] = p[i].comm,
                        [COL_UNIT] = p[i].unit[0] ? p[i].unit : "-",
                        [COL_RSS] = "-", [COL_INUSE] = "-", [COL_IDLE] = "-", [COL_RELEASED] = "-",
                };

                snprintf(pid, sizeof pid, "%" PRIu32, p[i].pid);
                if (p[i].has_stats) {
                        cells[COL_RSS] = output_bytes(rss, sizeof rss, p[i].stats.RSS);
                        cells[COL_INUSE] = output_bytes(inuse, sizeof inuse, p[i].stats.HeapInuse);
                        cells[COL_IDLE] = output_bytes(idle, sizeof idle, p[i].stats.HeapIdle);
                        cells[COL_RELEASED] = output_bytes(rel, sizeof rel, p[i].stats.HeapReleased);
                }
                print_row(cells);
        }
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
        if (p->stats.RSS > p->stats.HeapInuse) {
                char gap[32], idle[32], lazy[32];
                uint64_t resident_idle = p->stats.HeapIdle > p->stats.HeapReleased ?
                        p->stats.HeapIdle - p->stats.HeapReleased : 0;

                printf("RSS - HeapInuse is %s: idle heap not yet released %s, LazyFree (MADV_FREE, still counted) %s\n",
                       output_bytes(gap, sizeof gap, p->stats.RSS - p->stats.HeapInuse),
                       output_bytes(idle, sizeof idle, resident_idle),
                       output_bytes(lazy, sizeof lazy, p->stats.LazyFree));
        }
}
