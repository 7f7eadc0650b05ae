/* pressure.c - memd under memory pressure: a PSI trigger (the system's, or MEMD_PRESSURE_WATCH's) that makes it ask cooperating processes to reclaim. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "daemon.h"
#include "pressure.h"

/*
 * What is watched (docs/policy.md):
 *   - $MEMD_PRESSURE_WATCH when set, with $MEMD_PRESSURE_WRITE (base64, the
 *     trigger to write): the semantics of systemd's MEMORY_PRESSURE_WATCH /
 *     MEMORY_PRESSURE_WRITE (libmemd's pressure.c: a PSI file, a FIFO, a
 *     character device or an AF_UNIX socket), under names of memd's own,
 *     because systemd (MemoryPressureWatch=auto, v254 on) sets those for
 *     every service to its own cgroup's memory.pressure, and memd must watch
 *     the machine, or a cgroup given on purpose; "/dev/null" turns it off;
 *   - else the system's /proc/pressure/memory with PRESSURE_TRIGGER.
 * libev has no POLLPRI, so the descriptor sits in an epoll set of its own
 * whose descriptor libev watches for reading.
 */
#define PRESSURE_FILE "/proc/pressure/memory"
/* 100 ms of stall within 2 s: a window unprivileged triggers also accept
 * (they need multiples of 2 s).  With its NUL: the kernel makes the last
 * byte written the string's end. */
#define PRESSURE_TRIGGER "some 100000 2000000"

static void pressure_event(struct ev_loop *loop, ev_io *w, int revents) {
        struct server *s = w->data;
        struct epoll_event ev[4];
        short pev = 0;
        char what[4200];
        int n, r;

        (void) loop;
        (void) revents;
        n = epoll_wait(s->pressure_epfd, ev, 4, 0);
        for (int i = 0; i < n; i++)
                pev |= (short) ((ev[i].events & EPOLLIN ? POLLIN : 0) | (ev[i].events & EPOLLPRI ? POLLPRI : 0) |
                                (ev[i].events & EPOLLHUP ? POLLHUP : 0) | (ev[i].events & EPOLLERR ? POLLERR : 0));
        if (n <= 0)
                return;
        r = pressure_handle(s->pressure, pev);
        if (r < 0) {
                log_errno(LOG_WARNING, r, "memory pressure: %s went away (%m); no longer watching", s->pressure->path);
                pressure_stop(s);
                return;
        }
        if (r == 0)
                return;
        snprintf(what, sizeof what, "memory pressure (%s)", s->pressure->path);
        s->pressure_events++;
        if (policy_pressure(s, what) == 0)
                log_msg(LOG_INFO, "%s: no process to ask (none with ReclaimOnPressure, or all asked within 2 s)", what);
}

int pressure_start(struct server *s) {
        const char *watch = getenv("MEMD_PRESSURE_WATCH"), *why = "";
        struct epoll_event ev = {};
        struct pressure *p;
        int r;

        s->pressure_epfd = -1;
        p = calloc(1, sizeof *p);
        if (!p)
                return log_errno(LOG_WARNING, -ENOMEM, "memory pressure: not watching: %m");
        if (watch) {
                r = pressure_parse(p, watch, getenv("MEMD_PRESSURE_WRITE"), &why);
                if (r == 0) {
                        log_msg(LOG_INFO, "memory pressure: not watched (MEMD_PRESSURE_WATCH=%s)", watch);
                        free(p);
                        return 0;
                }
        } else {
                r = pressure_parse(p, PRESSURE_FILE, NULL, &why);
                memcpy(p->write, PRESSURE_TRIGGER, sizeof PRESSURE_TRIGGER);
                p->write_len = sizeof PRESSURE_TRIGGER;
        }
        if (r >= 0)
                r = pressure_open(p, &why);
        if (r < 0) {
                log_errno(LOG_WARNING, r, "memory pressure: %s: %s (%m); not watching", p->path[0] ? p->path : watch,
                          why);
                free(p);
                return 0;
        }
        s->pressure_epfd = epoll_create1(EPOLL_CLOEXEC);
        ev.events = p->events == POLLPRI ? EPOLLPRI : EPOLLIN;
        if (s->pressure_epfd < 0 || epoll_ctl(s->pressure_epfd, EPOLL_CTL_ADD, p->fd.fd, &ev) < 0) {
                r = -errno;
                if (s->pressure_epfd >= 0)
                        close(s->pressure_epfd);
                s->pressure_epfd = -1;
                pressure_close(p);
                free(p);
                return log_errno(LOG_WARNING, r, "memory pressure: cannot poll: %m");
        }
        s->pressure = p;
        ev_io_init(&s->pressure_io, pressure_event, s->pressure_epfd, EV_READ);
        s->pressure_io.data = s;
        ev_io_start(s->loop, &s->pressure_io);
        if (p->events == POLLPRI)
                log_msg(LOG_INFO, "memory pressure: watching %s for \"%.*s\"", p->path,
                        (int) strnlen((const char *) p->write, p->write_len), (const char *) p->write);
        else
                log_msg(LOG_INFO, "memory pressure: watching %s (a FIFO, device or socket)", p->path);
        return 0;
}

/* Safe on a zeroed server that never started watching (pressure NULL). */
void pressure_stop(struct server *s) {
        if (!s->pressure)
                return;
        ev_io_stop(s->loop, &s->pressure_io);
        close(s->pressure_epfd);
        s->pressure_epfd = -1;
        pressure_close(s->pressure);
        free(s->pressure);
        s->pressure = NULL;
}
