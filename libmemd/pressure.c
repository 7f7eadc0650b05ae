/* pressure.c - systemd's memory-pressure protocol (MEMORY_PRESSURE_WATCH, MEMORY_PRESSURE_WRITE): opening the watched source and reading its events. */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

/*
 * As systemd documents it (sd_event_add_memory_pressure(3), "Memory Pressure
 * Handling" in systemd's docs): MEMORY_PRESSURE_WATCH names
 *   - a PSI file (/proc/pressure/memory, a cgroup's memory.pressure): open it,
 *     write the trigger from MEMORY_PRESSURE_WRITE, wait for POLLPRI;
 *   - a FIFO or a character device: wait for POLLIN and read what came;
 *   - an AF_UNIX stream socket: connect, write MEMORY_PRESSURE_WRITE to it,
 *     wait for POLLIN and read;
 *   - /dev/null or "": explicitly off.
 * MEMORY_PRESSURE_WRITE is base64.  Without MEMORY_PRESSURE_WATCH nothing is
 * watched: libmemd does not pick a cgroup file on its own (sd-event does; an
 * interposer in every process of a unit should not add triggers unasked).
 */

static const char *b64_alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard base64 with optional '=' padding; blanks and newlines skipped.
 * Returns 0, -EINVAL (not base64) or -ENOBUFS (more than max bytes). */
int pressure_unbase64(const char *s, uint8_t *out, size_t max, size_t *ret_len) {
        uint32_t acc = 0;
        size_t n = 0;
        int bits = 0, pad = 0;

        for (; *s; s++) {
                const char *c;

                if (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')
                        continue;
                if (*s == '=') {
                        pad++;
                        continue;
                }
                c = strchr(b64_alphabet, *s);
                if (pad || !c)
                        return -EINVAL; /* data after padding, or not in the alphabet */
                acc = (acc << 6) | (uint32_t) (c - b64_alphabet);
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        if (n >= max)
                                return -ENOBUFS;
                        out[n++] = (uint8_t) (acc >> bits);
                }
        }
        /* Leftover bits must be the zero padding of a short final group. */
        if (bits >= 6 || (acc & ((1u << bits) - 1)) || pad > 2)
                return -EINVAL;
        *ret_len = n;
        return 0;
}

/* Validates and keeps the two variables (copied: the environment may change).
 * Returns 1 when there is something to watch, 0 when unset or explicitly
 * off, -EINVAL with *ret_why set on a bad value. */
int pressure_parse(struct pressure *p, const char *watch, const char *write_b64, const char **ret_why) {
        memset(p, 0, sizeof(*p));
        p->fd.fd = -1;
        if (!watch)
                return 0;
        if (!*watch || !strcmp(watch, "/dev/null"))
                return 0;
        if (watch[0] != '/') {
                *ret_why = "not an absolute path";
                return -EINVAL;
        }
        if (strlen(watch) >= sizeof(p->path)) {
                *ret_why = "path too long";
                return -EINVAL;
        }
        strcpy(p->path, watch);
        if (write_b64 && pressure_unbase64(write_b64, p->write, sizeof(p->write), &p->write_len) < 0) {
                *ret_why = "MEMORY_PRESSURE_WRITE is not base64 of at most 256 bytes";
                return -EINVAL;
        }
        return 1;
}

/* In one write: the kernel reads a PSI trigger from a single write(2), and
 * 256 bytes into a fresh socket or a FIFO always fit. */
static int write_once(int fd, const uint8_t *b, size_t len) {
        ssize_t n;

        do
                n = write(fd, b, len);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        return (size_t) n == len ? 0 : -EIO;
}

static int open_socket(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

/* Opens what p->path names and writes the trigger.  Returns 0, or -errno
 * with *ret_why saying what was wrong. */
int pressure_open(struct pressure *p, const char **ret_why) {
        struct stat st;
        struct statfs sfs;
        int fd, r;

        if (stat(p->path, &st) < 0) {
                *ret_why = "cannot stat the path";
                return -errno;
        }
        if (S_ISSOCK(st.st_mode)) {
                fd = open_socket(p->path);
                if (fd < 0) {
                        *ret_why = "cannot connect to the socket";
                        return fd;
                }
                p->events = POLLIN;
                p->stream = true;
        } else if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
                /* A FIFO is opened read-write even with nothing to write: we
                 * are then a writer too, so the last real writer closing
                 * does not leave it in POLLHUP for ever. */
                fd = open(p->path, (S_ISFIFO(st.st_mode) || p->write_len ? O_RDWR : O_RDONLY) |
                                           O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
                if (fd < 0) {
                        *ret_why = "cannot open it";
                        return -errno;
                }
                p->events = POLLIN;
                p->stream = true;
        } else if (S_ISREG(st.st_mode)) {
                /* Only a PSI file signals with POLLPRI, and only once a
                 * trigger was written to it. */
                if (!p->write_len) {
                        *ret_why = "a PSI file needs a trigger in MEMORY_PRESSURE_WRITE";
                        return -EINVAL;
                }
                fd = open(p->path, O_RDWR | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
                if (fd < 0) {
                        *ret_why = "cannot open it for writing the trigger";
                        return -errno;
                }
                if (fstatfs(fd, &sfs) < 0 || (sfs.f_type != PROC_SUPER_MAGIC && sfs.f_type != CGROUP2_SUPER_MAGIC)) {
                        close(fd);
                        *ret_why = "a regular file that is not in /proc or a cgroup (not a PSI file)";
                        return -ENOTTY;
                }
                p->events = POLLPRI;
                p->stream = false;
        } else {
                *ret_why = "neither a PSI file, a FIFO nor a socket";
                return -EBADF;
        }
        if (p->write_len && (r = write_once(fd, p->write, p->write_len)) < 0) {
                close(fd);
                *ret_why = p->events == POLLPRI ? "the kernel refused the trigger" : "cannot write MEMORY_PRESSURE_WRITE to it";
                return r;
        }
        r = ownfd_set(&p->fd, fd);
        if (r < 0) {
                *ret_why = "cannot keep the descriptor";
                return r;
        }
        if (S_ISFIFO(st.st_mode) && p->write_len)
                pressure_handle(p, POLLIN); /* our own write, read back: not an event */
        return 0;
}

/* After poll() said revents: 1 when memory pressure was signalled, 0 when
 * nothing was, -errno when the source is gone (a socket's peer closed, a
 * cgroup removed): the caller closes it and stops watching. */
int pressure_handle(struct pressure *p, short revents) {
        char buf[256];
        bool got = false;

        if (!p->stream) {
                if (revents & (POLLERR | POLLNVAL))
                        return -EIO;
                return (revents & POLLPRI) ? 1 : 0;
        }
        if (revents & POLLNVAL)
                return -EBADF;
        for (;;) {
                ssize_t n = read(p->fd.fd, buf, sizeof(buf));
                if (n > 0) {
                        got = true;
                        continue;
                }
                if (n == 0)
                        return got ? 1 : -EPIPE; /* a socket's peer closed */
                if (errno == EINTR)
                        continue;
                if (errno == EAGAIN)
                        break;
                return -errno;
        }
        if (!got && (revents & (POLLHUP | POLLERR)))
                return -EPIPE;
        return got ? 1 : 0;
}

void pressure_close(struct pressure *p) {
        ownfd_close(&p->fd);
}
