/* ownfd.c - descriptors libmemd's threads keep in the application's fd table, guarded against the application closing or reusing them. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define HIGH_FD 512                     /* out of the way of programs that reuse low fds */

int ownfd_set(struct own_fd *o, int fd) {
        struct stat st;
        int hi;

        /* F_DUPFD fails when RLIMIT_NOFILE is below HIGH_FD: keep fd then. */
        hi = fcntl(fd, F_DUPFD_CLOEXEC, HIGH_FD);
        if (hi >= 0) {
                close(fd);
                fd = hi;
        }
        if (fstat(fd, &st) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        o->fd = fd;
        o->dev = st.st_dev;
        o->ino = st.st_ino;
        return 0;
}

bool ownfd_ok(const struct own_fd *o) {
        struct stat st;

        return o->fd >= 0 && fstat(o->fd, &st) == 0 && st.st_dev == o->dev && st.st_ino == o->ino;
}

void ownfd_close(struct own_fd *o) {
        if (ownfd_ok(o))
                close(o->fd);
        o->fd = -1;
}
