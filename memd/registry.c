/* registry.c - the processes attached to memd: one entry per agent pid, their latest MemStats, exit detection by pidfd. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <systemd/sd-login.h>

#include "daemon.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

static void read_comm(pid_t pid, char *buf, size_t size) {
        char path[64];
        ssize_t n;
        int fd;

        snprintf(path, sizeof path, "/proc/%d/comm", (int) pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        n = fd >= 0 ? read(fd, buf, size - 1) : -1;
        if (fd >= 0)
                close(fd);
        if (n <= 0) {
                snprintf(buf, size, "?");
                return;
        }
        buf[n] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
}

static void process_drop(struct process *p);

static void linger_done(struct ev_loop *loop, ev_timer *w, int revents) {
        struct process *p = w->data;

        (void) loop;
        (void) revents;
        if (p->exited_ns)
                process_drop(p); /* detach was logged at the exit */
        else
                registry_detach(p, "its agent went away");
}

/* The process is gone: its entry and last profile stay keep_exited_s. */
static void process_exited(struct ev_loop *loop, ev_io *w, int revents) {
        struct process *p = w->data;
        struct server *s = p->server;
        struct conn *c = p->conn;

        (void) revents;
        if (c) {
                c->process = NULL;
                p->conn = NULL;
                conn_free(c);
        }
        log_event("detach", p, "detach pid %d (%s): process exited; its last profile is kept %g s", (int) p->pid,
                  p->comm, s->keep_exited_s);
        forward_process_gone(p);
        ev_io_stop(loop, &p->pidfd_io);
        close(p->pidfd);
        p->pidfd = -1;
        p->exited_ns = now_ns();
        s->n_exited++;
        ev_timer_stop(loop, &p->linger);
        ev_timer_set(&p->linger, s->keep_exited_s, 0.);
        ev_timer_start(loop, &p->linger);
        notify_status(s);
}

void registry_disconnected(struct process *p) {
        struct server *s = p->server;

        p->conn = NULL;
        forward_process_gone(p);
        if (p->pidfd < 0 || s->conn_grace_s <= 0) {
                /* No pidfd: exit is known by EOF only. */
                registry_detach(p, "connection closed");
                return;
        }
        ev_timer_stop(s->loop, &p->linger);
        ev_timer_set(&p->linger, s->conn_grace_s, 0.);
        ev_timer_start(s->loop, &p->linger);
}

struct process *registry_find(struct server *s, pid_t pid) {
        for (struct process *p = s->processes; p; p = p->next)
                if (p->pid == pid)
                        return p;
        return NULL;
}

int registry_attach(struct server *s, struct conn *c) {
        struct process *p = registry_find(s, c->pid);
        char *unit = NULL;
        int fd;

        if (p && p->exited_ns) {
                /* The pid was reused: the old process's profile goes. */
                process_drop(p);
                p = NULL;
        }
        if (p) {
                /* A reconnect (or a second agent thread) of the same process:
                 * the newest connection wins. */
                struct conn *old = p->conn;

                ev_timer_stop(s->loop, &p->linger);
                if (old) {
                        old->process = NULL;
                        conn_free(old);
                }
                /* What the old connection was asked is lost with it. */
                forward_process_gone(p);
                p->conn = c;
                c->process = p;
                p->uid = c->uid; /* an exec of a setuid program changes it */
                read_comm(p->pid, p->comm, sizeof p->comm); /* and the name */
                policy_update(p); /* so its policy may have changed */
                log_event("attach", p, "reattach pid %d (%s)", (int) p->pid, p->comm);
                return 0;
        }

        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        fd = (int) syscall(SYS_pidfd_open, c->pid, 0);
        if (fd < 0 && errno == ESRCH) {
                free(p);
                return -ESRCH;
        }
        if (fd < 0)
                log_errno(LOG_WARNING, -errno, "pidfd_open(%d) failed, its exit is noticed by EOF only: %m",
                          (int) c->pid);
        p->server = s;
        p->pid = c->pid;
        p->uid = c->uid;
        p->pidfd = fd;
        p->attached_ns = now_ns();
        store_init(&p->profile);
        ev_timer_init(&p->linger, linger_done, CONN_GRACE_S, 0.);
        p->linger.data = p;
        read_comm(p->pid, p->comm, sizeof p->comm);
        if (sd_pid_get_unit(p->pid, &unit) >= 0 && unit) {
                snprintf(p->unit, sizeof p->unit, "%s", unit);
                free(unit);
        }
        if (fd >= 0) {
                ev_io_init(&p->pidfd_io, process_exited, fd, EV_READ);
                p->pidfd_io.data = p;
                ev_io_start(s->loop, &p->pidfd_io);
        }
        p->conn = c;
        c->process = p;
        p->next = s->processes;
        if (s->processes)
                s->processes->prev = p;
        s->processes = p;
        s->n_processes++;
        policy_attach(p);
        log_event("attach", p, "attach pid %d (%s)%s%s", (int) p->pid, p->comm,
                  p->unit[0] ? " unit " : "", p->unit);
        notify_status(s);
        return 0;
}

static void process_free(struct process *p) {
        struct server *s = p->server;

        ev_timer_stop(s->loop, &p->linger);
        if (p->exited_ns)
                s->n_exited--;
        if (p->pidfd >= 0) {
                ev_io_stop(s->loop, &p->pidfd_io);
                close(p->pidfd);
        }
        if (p->prev)
                p->prev->next = p->next;
        else
                s->processes = p->next;
        if (p->next)
                p->next->prev = p->prev;
        s->n_processes--;
        store_free(&p->profile);
        mappings_free(&p->mappings);
        if (p->events)
                for (unsigned i = 0; i < EVENT_HISTORY; i++)
                        free(p->events[i].text);
        free(p->events);
        free(p);
}

/* Frees an entry without logging (an exited one: its detach was logged). */
static void process_drop(struct process *p) {
        struct server *s = p->server;

        process_free(p);
        notify_status(s);
}

void registry_detach(struct process *p, const char *why) {
        struct server *s = p->server;

        log_event("detach", p, "detach pid %d (%s): %s", (int) p->pid, p->comm, why);
        forward_process_gone(p);
        process_free(p);
        notify_status(s);
}

void registry_update_stats(struct process *p, struct proto_memstats *m) {
        /* Without pause arrays the last ones stand (they change with NumGC). */
        if (!m->has_pauses && p->has_stats) {
                memcpy(m->stats.PauseNs, p->stats.PauseNs, sizeof p->stats.PauseNs);
                memcpy(m->stats.PauseEnd, p->stats.PauseEnd, sizeof p->stats.PauseEnd);
        }
        p->stats = m->stats;
        p->stats_time_ns = m->time_ns;
        p->received_ns = now_ns();
        p->has_stats = true;
}

void registry_fill(const struct process *p, struct proto_process *ret) {
        struct store_totals t;

        memset(ret, 0, sizeof *ret);
        ret->pid = (uint32_t) p->pid;
        ret->uid = (uint32_t) p->uid;
        snprintf(ret->comm, sizeof ret->comm, "%s", p->comm);
        snprintf(ret->unit, sizeof ret->unit, "%s", p->unit);
        ret->attached_ns = p->attached_ns;
        ret->exited_ns = p->exited_ns;
        ret->stats_time_ns = p->has_stats ? p->stats_time_ns : 0;
        ret->has_stats = p->has_stats;
        if (p->has_stats) {
                ret->stats = p->stats;
                ret->last_gc_ns = (int64_t) p->stats.LastGC;
        }
        if (p->last_gc_ns > ret->last_gc_ns)
                ret->last_gc_ns = p->last_gc_ns;
        ret->last_scvg_ns = p->last_scvg_ns;
        ret->rate_bytes = p->profile.rate_bytes ? p->profile.rate_bytes : p->rate_bytes;
        store_totals(&p->profile, &t);
        ret->profile_buckets = t.buckets;
        ret->profile_alloc_objects = t.alloc_objects;
        ret->profile_alloc_bytes = t.alloc_bytes;
        ret->profile_inuse_objects = t.inuse_objects;
        ret->profile_inuse_bytes = t.inuse_bytes;
        ret->limit_bytes = p->policy.memory_limit;
        ret->idle_max_bytes = p->policy.idle_memory_max;
        ret->idle_timeout_ns = p->policy.idle_timeout_ns;
        ret->allowance_bytes = policy_process_allowance(p);
        ret->policy_actions = p->track.actions;
        snprintf(ret->policy_last, sizeof ret->policy_last, "%s", p->track.last);
}

/* memctl status's table row and no more: a tenth of the bytes of a full
 * entry for a list of a thousand processes. */
void registry_fill_brief(const struct process *p, struct proto_process *ret) {
        memset(ret, 0, sizeof *ret);
        ret->pid = (uint32_t) p->pid;
        ret->uid = (uint32_t) p->uid;
        snprintf(ret->comm, sizeof ret->comm, "%s", p->comm);
        snprintf(ret->unit, sizeof ret->unit, "%s", p->unit);
        ret->limit_bytes = p->policy.memory_limit;
        ret->last_gc_ns = p->has_stats ? (int64_t) p->stats.LastGC : 0;
        if (p->last_gc_ns > ret->last_gc_ns)
                ret->last_gc_ns = p->last_gc_ns;
        ret->last_scvg_ns = p->last_scvg_ns;
        if (p->has_stats) {
                ret->stats_time_ns = p->stats_time_ns;
                ret->rss_bytes = p->stats.RSS;
                ret->heap_inuse_bytes = p->stats.HeapInuse;
                ret->heap_idle_bytes = p->stats.HeapIdle;
                ret->heap_released_bytes = p->stats.HeapReleased;
        }
}

void registry_add_event(struct process *p, const struct proto_event *e) {
        struct event *slot;

        if (e->kind == PROTO_EVENT_GC)
                p->last_gc_ns = e->time_ns;
        else
                p->last_scvg_ns = e->time_ns;
        if (!p->events) {
                p->events = calloc(EVENT_HISTORY, sizeof(*p->events));
                if (!p->events)
                        return; /* the journal has it; the history misses it */
        }
        slot = &p->events[p->n_events % EVENT_HISTORY];
        free(slot->text);
        slot->figures = *e;
        slot->figures.text[0] = 0;
        slot->text = strdup(e->text);
        p->n_events++;
}

/* "Key:   123 kB" lines of a /proc file, in bytes. */
static void read_kb_fields(const char *path, const char *const *keys, uint64_t *const *out, size_t n) {
        char line[256];
        FILE *f = fopen(path, "re");

        if (!f)
                return;
        while (fgets(line, sizeof line, f))
                for (size_t i = 0; i < n; i++) {
                        size_t k = strlen(keys[i]);
                        unsigned long long v;
                        if (!strncmp(line, keys[i], k) && line[k] == ':' &&
                            sscanf(line + k + 1, "%llu", &v) == 1)
                                *out[i] = (uint64_t) v * 1024;
                }
        fclose(f);
}

void registry_read_rss(const struct process *p, struct proto_process *ret) {
        static const char *const status_keys[] = { "RssAnon", "RssFile", "RssShmem", "VmSwap" };
        static const char *const smaps_keys[] = { "Pss", "LazyFree" };
        uint64_t *const status_out[] = { &ret->rss_anon_bytes, &ret->rss_file_bytes, &ret->rss_shmem_bytes,
                                         &ret->swap_bytes };
        uint64_t *const smaps_out[] = { &ret->pss_bytes, &ret->lazyfree_bytes };
        char path[64];

        snprintf(path, sizeof path, "/proc/%d/status", (int) p->pid);
        read_kb_fields(path, status_keys, status_out, 4);
        snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int) p->pid);
        read_kb_fields(path, smaps_keys, smaps_out, 2);
}

void registry_done(struct server *s) {
        while (s->processes) {
                struct process *p = s->processes;

                if (p->conn) {
                        p->conn->process = NULL;
                        p->conn = NULL;
                }
                process_free(p);
        }
}
