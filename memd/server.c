/* server.c - memd's libev glue: the listening socket, non-blocking connections, bounded output. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "daemon.h"

static int mkdir_parents(const char *path) {
        char *dir = strdup(path), *p;

        if (!dir)
                return -ENOMEM;
        for (p = dir + 1; (p = strchr(p, '/')); p++) {
                *p = '\0';
                if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
                        int r = -errno;
                        free(dir);
                        return r;
                }
                *p = '/';
        }
        free(dir);
        return 0;
}

/* 1 if a daemon answers on path, 0 if nothing does (no file, or a stale one), -errno otherwise. */
static int socket_answers(const struct sockaddr_un *sa) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), r;

        if (fd < 0)
                return -errno;
        r = connect(fd, (const struct sockaddr *) sa, sizeof *sa) < 0 ? -errno : 1;
        close(fd);
        if (r == -ENOENT || r == -ECONNREFUSED)
                return 0;
        return r;
}

int server_open(struct server *s, const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX }, tmp_sa = { .sun_family = AF_UNIX };
        bool bound = false;
        struct stat st;
        int n, fd, r;

        s->listen_fd = -1;
        n = sd_listen_fds(1);
        if (n < 0)
                return log_error_errno(n, "Failed to get sockets from systemd: %m");
        if (n > 1)
                return log_error_errno(-EINVAL, "systemd passed %d sockets, expected one", n);
        if (n == 1) {
                fd = SD_LISTEN_FDS_START;
                r = sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0);
                if (r <= 0)
                        return log_error_errno(r < 0 ? r : -EINVAL,
                                               "The socket systemd passed is not a listening Unix stream socket");
                if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
                        return log_error_errno(-errno, "Failed to make the systemd socket non-blocking: %m");
                s->listen_fd = fd;
                log_info("listening on the socket systemd passed");
                return 0;
        }

        if (strlen(path) >= sizeof sa.sun_path)
                return log_error_errno(-ENAMETOOLONG, "Socket path too long: %s", path);
        strcpy(sa.sun_path, path);
        r = mkdir_parents(path);
        if (r < 0)
                return log_error_errno(r, "Failed to create the directory of %s: %m", path);
        r = socket_answers(&sa);
        if (r < 0)
                return log_error_errno(r, "Failed to check %s: %m", path);
        if (r > 0)
                return log_error_errno(-EADDRINUSE, "another memd is already answering on %s", path);
        if (unlink(path) < 0 && errno != ENOENT)
                return log_error_errno(-errno, "Failed to remove the stale socket %s: %m", path);

        /* Bound and listening under a temporary name, then renamed into
         * place: whoever sees the socket appear (agents watch the directory
         * with inotify) can connect at once, never before listen(). */
        if (snprintf(tmp_sa.sun_path, sizeof tmp_sa.sun_path, "%s.%d.tmp", path, (int) getpid()) >=
            (int) sizeof tmp_sa.sun_path)
                return log_error_errno(-ENAMETOOLONG, "Socket path too long: %s", path);
        (void) unlink(tmp_sa.sun_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_error_errno(-errno, "Failed to create a socket: %m");
        if (bind(fd, (struct sockaddr *) &tmp_sa, sizeof tmp_sa) < 0) {
                r = log_error_errno(-errno, "Failed to bind %s: %m", tmp_sa.sun_path);
                goto fail;
        }
        bound = true;
        /* Anyone may connect; every request is checked against SO_PEERCRED. */
        if (chmod(tmp_sa.sun_path, 0666) < 0) {
                r = log_error_errno(-errno, "Failed to chmod %s: %m", tmp_sa.sun_path);
                goto fail;
        }
        if (listen(fd, SOMAXCONN) < 0) {
                r = log_error_errno(-errno, "Failed to listen on %s: %m", path);
                goto fail;
        }
        if (rename(tmp_sa.sun_path, path) < 0) {
                r = log_error_errno(-errno, "Failed to move the socket to %s: %m", path);
                goto fail;
        }
        bound = false;
        s->socket_created = true;
        s->socket_path = strdup(path);
        if (!s->socket_path) {
                r = -ENOMEM;
                goto fail;
        }
        if (stat(path, &st) == 0) {
                s->socket_dev = st.st_dev;
                s->socket_ino = st.st_ino;
        }
        s->listen_fd = fd;
        log_info("listening on %s", path);
        return 0;
fail:
        close(fd);
        if (bound)
                unlink(tmp_sa.sun_path);
        if (s->socket_created)
                unlink(path);
        s->socket_created = false;
        return r;
}

/* Batching wakeups (the collect interval) paces a big reply at one socket
 * buffer per interval: while any connection has output waiting, memd does
 * not batch. */
static void conn_set_draining(struct conn *c, bool on) {
        struct server *s = c->server;

        if (c->draining == on)
                return;
        c->draining = on;
        s->n_draining += on ? 1 : -1;
        if (s->n_draining == (on ? 1u : 0u))
                ev_set_io_collect_interval(s->loop, on ? 0. : s->collect_s);
}

static void conn_update_events(struct conn *c) {
        int events = EV_READ | (c->out_len > c->out_off ? EV_WRITE : 0);

        conn_set_draining(c, events & EV_WRITE);
        if ((c->io.events & (EV_READ | EV_WRITE)) == events)
                return;
        ev_io_stop(c->server->loop, &c->io);
        ev_io_set(&c->io, c->fd, events);
        ev_io_start(c->server->loop, &c->io);
}

/* Sends the bytes from out_off, passing out_fd with its byte. */
static ssize_t conn_write(struct conn *c) {
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } ctl = {};
        struct iovec iov = { c->out + c->out_off, c->out_len - c->out_off };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t n;

        if (c->out_fd < 0)
                return write(c->fd, iov.iov_base, iov.iov_len);
        if (c->out_off < c->out_fd_at) {        /* the bytes before it first */
                iov.iov_len = c->out_fd_at - c->out_off;
                return write(c->fd, iov.iov_base, iov.iov_len);
        }
        mh.msg_control = ctl.buf;
        mh.msg_controllen = sizeof ctl.buf;
        ctl.h.cmsg_level = SOL_SOCKET;
        ctl.h.cmsg_type = SCM_RIGHTS;
        ctl.h.cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(&ctl.h), &c->out_fd, sizeof(int));
        n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (n > 0) {
                close(c->out_fd);
                c->out_fd = -1;
        }
        return n;
}

/* Writes what the socket takes.  Returns 0 or -errno (close the peer). */
static int conn_flush(struct conn *c) {
        while (c->out_off < c->out_len) {
                ssize_t n = conn_write(c);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        return -errno;
                }
                c->out_off += (size_t) n;
        }
        if (c->out_off == c->out_len)
                c->out_off = c->out_len = 0;
        conn_update_events(c);
        return 0;
}

/* Appends buf to the output; with fd >= 0, the descriptor goes with buf's
 * first byte.  fd is taken: closed here on failure, else once sent or with
 * the connection. */
static int conn_queue(struct conn *c, const msgpack_sbuffer *buf, int fd) {
        size_t pending = c->out_len - c->out_off;
        int r = 0;

        if (pending + buf->size > CONN_OUT_MAX_BYTES)
                r = -ENOBUFS;
        else if (fd >= 0 && (c->out_fd >= 0 || buf->size == 0))
                r = -EBUSY;
        if (r < 0) {
                if (fd >= 0)
                        close(fd);
                return r;
        }
        /* Compact only when the sent part is most of the buffer: a reply
         * queued in parts must not move the unsent bytes for each part. */
        if (c->out_off > 0 && (c->out_off >= c->out_cap / 2 || c->out_len + buf->size > c->out_cap)) {
                memmove(c->out, c->out + c->out_off, pending);
                if (c->out_fd >= 0)
                        c->out_fd_at -= c->out_off;
                c->out_off = 0;
                c->out_len = pending;
        }
        if (c->out_len + buf->size > c->out_cap) {
                size_t cap = c->out_cap ? c->out_cap : 4096;
                char *p;

                while (cap < c->out_len + buf->size)
                        cap *= 2;
                p = realloc(c->out, cap);
                if (!p) {
                        if (fd >= 0)
                                close(fd);
                        return -ENOMEM;
                }
                c->out = p;
                c->out_cap = cap;
        }
        if (fd >= 0) {
                c->out_fd = fd;
                c->out_fd_at = c->out_len;
        }
        memcpy(c->out + c->out_len, buf->data, buf->size);
        c->out_len += buf->size;
        return conn_flush(c);
}

int conn_send(struct conn *c, const msgpack_sbuffer *buf) {
        return conn_queue(c, buf, -1);
}

int conn_send_fd(struct conn *c, const msgpack_sbuffer *buf, int fd) {
        return conn_queue(c, buf, fd);
}

void conn_free(struct conn *c) {
        if (!c)
                return;
        conn_set_draining(c, false);
        forward_conn_gone(c);
        heap_conn_gone(c);
        if (c->process)
                registry_disconnected(c->process);
        ev_io_stop(c->server->loop, &c->io);
        close(c->fd);
        proto_msg_done(&c->msg);
        proto_reader_free(c->reader);
        free(c->out);
        if (c->out_fd >= 0)
                close(c->out_fd);
        if (c->prev)
                c->prev->next = c->next;
        else
                c->server->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        free(c);
}

static void conn_io(struct ev_loop *loop, ev_io *w, int revents) {
        struct conn *c = w->data;
        char buf[CONN_READ_BYTES];
        ssize_t n;
        int r;

        (void) loop;
        if (revents & EV_WRITE) {
                r = conn_flush(c);
                if (r < 0) {
                        log_errno(LOG_INFO, r, "closing connection of pid %d: write failed: %m", (int) c->pid);
                        conn_free(c);
                        return;
                }
        }
        if (!(revents & EV_READ))
                return;
        /* One read per wakeup: a chatty peer cannot starve the others. */
        n = read(c->fd, buf, sizeof buf);
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return;
                log_errno(LOG_INFO, -errno, "closing connection of pid %d: read failed: %m", (int) c->pid);
                conn_free(c);
                return;
        }
        if (n == 0) {
                conn_free(c);
                return;
        }
        if (conn_input(c, buf, (size_t) n) < 0)
                conn_free(c);
}

int conn_input(struct conn *c, const void *buf, size_t n) {
        int r;

        r = proto_reader_feed(c->reader, buf, n);
        while (r >= 0 && (r = proto_reader_next(c->reader, &c->msg)) > 0) {
                r = dispatch_message(c, &c->msg);
                if (r < 0)
                        return r;
        }
        if (r < 0) {
                /* Said to the peer too (best effort, id 0: the message had
                 * none we could read), then the caller closes. */
                msgpack_sbuffer sb;
                msgpack_packer pk;

                msgpack_sbuffer_init(&sb);
                msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
                if (proto_pack_error(&pk, 0, r == -EMSGSIZE ? EMSGSIZE : EBADMSG,
                                     r == -EMSGSIZE ? "message too large" : "malformed message") >= 0)
                        (void) conn_send(c, &sb);
                msgpack_sbuffer_destroy(&sb);
                log_errno(LOG_WARNING, r, "closing connection of pid %d: bad message: %m", (int) c->pid);
        }
        return r < 0 ? r : 0;
}

struct conn *conn_new(struct server *s, int fd, pid_t pid, uid_t uid) {
        struct conn *c = calloc(1, sizeof *c);

        if (!c || proto_reader_new(&c->reader) < 0) {
                free(c);
                return NULL;
        }
        c->server = s;
        c->fd = fd;
        c->out_fd = -1;
        c->pid = pid;
        c->uid = uid;
        proto_msg_init(&c->msg);
        ev_io_init(&c->io, conn_io, fd, EV_READ);
        c->io.data = c;
        ev_io_start(s->loop, &c->io);
        c->next = s->conns;
        if (s->conns)
                s->conns->prev = c;
        s->conns = c;
        return c;
}

/* Takes up to ACCEPT_BATCH connections per wakeup: the loop batches its
 * wakeups (ev_set_io_collect_interval), so one accept per wakeup would cap
 * memd at a few hundred connections a second. */
#define ACCEPT_BATCH 256
static void server_accept(struct ev_loop *loop, ev_io *w, int revents) {
        struct server *s = w->data;

        (void) revents;
        for (int i = 0; i < ACCEPT_BATCH; i++) {
                struct ucred cred;
                socklen_t len = sizeof cred;
                int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

                if (fd < 0) {
                        if (errno == EMFILE || errno == ENFILE) {
                                /* The connection waits in the backlog: stop
                                 * looking at it for a second instead of
                                 * spinning on it. */
                                log_errno(LOG_WARNING, -errno, "accept failed: %m; not accepting for 1 s");
                                ev_io_stop(loop, &s->listen_io);
                                ev_timer_set(&s->accept_retry, 1., 0.);
                                ev_timer_start(loop, &s->accept_retry);
                        } else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                                log_errno(LOG_WARNING, -errno, "accept failed: %m");
                        return;
                }
                if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                        log_errno(LOG_WARNING, -errno, "SO_PEERCRED failed, dropping connection: %m");
                        close(fd);
                        continue;
                }
                if (!conn_new(s, fd, cred.pid, cred.uid)) {
                        log_warning("out of memory, dropping connection of pid %d", (int) cred.pid);
                        close(fd);
                }
        }
}

static void accept_again(struct ev_loop *loop, ev_timer *w, int revents) {
        struct server *s = w->data;

        (void) revents;
        ev_io_start(loop, &s->listen_io);
}

int server_start(struct server *s, struct ev_loop *loop) {
        s->loop = loop;
        ev_timer_init(&s->accept_retry, accept_again, 1., 0.);
        s->accept_retry.data = s;
        ev_io_init(&s->listen_io, server_accept, s->listen_fd, EV_READ);
        s->listen_io.data = s;
        ev_io_start(loop, &s->listen_io);
        return 0;
}

void server_stop(struct server *s) {
        struct stat st;

        ev_timer_stop(s->loop, &s->accept_retry);
        while (s->conns)
                conn_free(s->conns);
        pressure_stop(s);
        forward_done(s);
        registry_done(s);
        policy_done(s);
        heap_done(s);
        if (s->listen_fd >= 0) {
                ev_io_stop(s->loop, &s->listen_io);
                close(s->listen_fd);
                s->listen_fd = -1;
        }
        /* Only our own socket: a newer memd may have replaced it meanwhile. */
        if (s->socket_created && stat(s->socket_path, &st) == 0 &&
            st.st_dev == s->socket_dev && st.st_ino == s->socket_ino)
                unlink(s->socket_path);
        free(s->socket_path);
        s->socket_path = NULL;
}
