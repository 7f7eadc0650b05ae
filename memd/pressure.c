/* pressure.c - memd under memory pressure: a PSI trigger (or systemd's MEMORY_PRESSURE_WATCH) that makes it ask cooperating processes to reclaim. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"

/*
 * What is watched (docs/policy.md):
 *   - $MEMORY_PRESSURE_WATCH when set (systemd's memory-pressure protocol:
 *     a unit's MemoryPressureWatch= sets it, with $MEMORY_PRESSURE_WRITE,
 *     base64, the trigger to write; "/dev/null" turns watching off);
 *   - else the system's /proc/pressure/memory with PRESSURE_TRIGGER.
 * A PSI file signals with POLLPRI, a FIFO with POLLIN (its bytes are
 * drained).  libev has no POLLPRI, so the file sits in an epoll set of its
 * own whose descriptor libev watches for reading.
 */
#define PRESSURE_FILE "/proc/pressure/memory"
/* 100 ms of stall within 2 s: a window unprivileged triggers also accept
 * (they need multiples of 2 s), and systemd's own default threshold. */
#define PRESSURE_TRIGGER "some 100000 2000000"

static int b64_value(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decodes base64 (padding optional); returns the length or -EINVAL. */
static ssize_t b64_decode(const char *in, char *out, size_t out_len) {
        uint32_t acc = 0;
        size_t n = 0;
        int bits = 0;

        for (; *in && *in != '='; in++) {
                int v = b64_value(*in);
                if (v < 0)
                        return -EINVAL;
                acc = acc << 6 | (uint32_t) v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        if (n >= out_len)
                                return -EINVAL;
                        out[n++] = (char) (acc >> bits & 0xff);
                }
        }
        return (ssize_t) n;
}

static void pressure_event(struct ev_loop *loop, ev_io *w, int revents) {
        struct server *s = w->data;
        struct epoll_event ev[4];
        char what[256], buf[256];
        int n;

        (void) loop;
        (void) revents;
        n = epoll_wait(s->pressure_epfd, ev, 4, 0);
        if (n <= 0)
                return;
        if (ev[0].events & (EPOLLERR | EPOLLHUP) && !(ev[0].events & (EPOLLPRI | EPOLLIN))) {
                log_msg(LOG_WARNING, "memory pressure: %s went away; no longer watching", s->pressure_path);
                pressure_stop(s);
                return;
        }
        if (ev[0].events & EPOLLIN) /* a FIFO: what was written is only a signal */
                while (read(s->pressure_fd, buf, sizeof buf) > 0)
                        ;
        snprintf(what, sizeof what, "memory pressure (%s)", s->pressure_path);
        s->pressure_events++;
        if (policy_pressure(s, what) == 0)
                log_msg(LOG_INFO, "%s: no process to ask (none with ReclaimOnPressure, or all asked within 2 s)", what);
}

int pressure_start(struct server *s) {
        const char *path = getenv("MEMORY_PRESSURE_WATCH"), *wr = getenv("MEMORY_PRESSURE_WRITE");
        char trigger[256];
        ssize_t trigger_len;
        struct epoll_event ev = {};
        struct stat st;
        int fd;

        s->pressure_fd = s->pressure_epfd = -1;
        if (path && !strcmp(path, "/dev/null")) {
                log_msg(LOG_INFO, "memory pressure: not watched (MEMORY_PRESSURE_WATCH=/dev/null)");
                return 0;
        }
        if (path && *path) {
                trigger_len = wr && *wr ? b64_decode(wr, trigger, sizeof trigger) : 0;
                if (trigger_len < 0) {
                        log_msg(LOG_WARNING, "memory pressure: MEMORY_PRESSURE_WRITE is not base64; not watching %s", path);
                        return 0;
                }
        } else {
                path = PRESSURE_FILE;
                trigger_len = (ssize_t) sizeof PRESSURE_TRIGGER; /* with its NUL, as the kernel wants */
                memcpy(trigger, PRESSURE_TRIGGER, (size_t) trigger_len);
        }
        /* O_RDWR: a PSI trigger is written; a FIFO so opened always has a
         * writer (us), so it never reads as hung up. */
        fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                log_errno(LOG_INFO, -errno, "memory pressure: cannot open %s, not watching: %m", path);
                return 0;
        }
        if (fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISFIFO(st.st_mode))) {
                log_msg(LOG_WARNING, "memory pressure: %s is neither a PSI file nor a FIFO; not watching", path);
                close(fd);
                return 0;
        }
        if (S_ISREG(st.st_mode) && trigger_len > 0 && write(fd, trigger, (size_t) trigger_len) < 0) {
                log_errno(LOG_WARNING, -errno, "memory pressure: %s refused the trigger, not watching: %m", path);
                close(fd);
                return 0;
        }
        s->pressure_epfd = epoll_create1(EPOLL_CLOEXEC);
        ev.events = S_ISFIFO(st.st_mode) ? EPOLLIN : EPOLLPRI;
        if (s->pressure_epfd < 0 || epoll_ctl(s->pressure_epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                int r = -errno;
                if (s->pressure_epfd >= 0)
                        close(s->pressure_epfd);
                s->pressure_epfd = -1;
                close(fd);
                return log_errno(LOG_WARNING, r, "memory pressure: cannot poll %s: %m", path);
        }
        s->pressure_fd = fd;
        s->pressure_path = strdup(path);
        ev_io_init(&s->pressure_io, pressure_event, s->pressure_epfd, EV_READ);
        s->pressure_io.data = s;
        ev_io_start(s->loop, &s->pressure_io);
        if (S_ISFIFO(st.st_mode))
                log_msg(LOG_INFO, "memory pressure: watching %s (a FIFO)", path);
        else
                log_msg(LOG_INFO, "memory pressure: watching %s for \"%.*s\"", path,
                        (int) strnlen(trigger, (size_t) trigger_len), trigger);
        return 0;
}

/* Safe on a zeroed server that never started watching (pressure_path NULL). */
void pressure_stop(struct server *s) {
        if (s->pressure_path) {
                ev_io_stop(s->loop, &s->pressure_io);
                close(s->pressure_epfd);
                close(s->pressure_fd);
        }
        s->pressure_fd = s->pressure_epfd = -1;
        free(s->pressure_path);
        s->pressure_path = NULL;
}
