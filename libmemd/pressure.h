/* pressure.h - systemd's memory-pressure protocol and the descriptor guard it uses: shared by libmemd's monitor and by memd (pressure_lib). */
#ifndef MEMD_PRESSURE_H
#define MEMD_PRESSURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ownfd.c: a descriptor the application may close behind our back (daemons
 * closing every fd): we only use it while fstat still names the file we
 * opened.  ownfd_set moves fd above the low numbers programs reuse and takes
 * it over (closed on failure); ownfd_close closes it only if it is still ours. */
struct own_fd {
        int fd;
        dev_t dev;
        ino_t ino;
};
int ownfd_set(struct own_fd *o, int fd);
bool ownfd_ok(const struct own_fd *o);
void ownfd_close(struct own_fd *o);

/* pressure.c: systemd's memory-pressure protocol */
struct pressure {
        char path[4096];                /* MEMORY_PRESSURE_WATCH */
        uint8_t write[256];             /* MEMORY_PRESSURE_WRITE, decoded */
        size_t write_len;
        struct own_fd fd;               /* -1 when not watching */
        short events;                   /* POLLPRI (PSI) or POLLIN */
        bool stream;                    /* FIFO, device or socket: read what comes */
};
int pressure_unbase64(const char *s, uint8_t *out, size_t max, size_t *ret_len);
int pressure_parse(struct pressure *p, const char *watch, const char *write_b64, const char **ret_why);
int pressure_open(struct pressure *p, const char **ret_why);
int pressure_handle(struct pressure *p, short revents);
void pressure_close(struct pressure *p);

#endif
