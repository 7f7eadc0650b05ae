/* daemon.h - memd's internal objects: the server, its connections, the registry of attached processes, logging. */
#ifndef MEMD_DAEMON_H
#define MEMD_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <syslog.h>

#include <ev.h>

#include "memd.h"
#include "proto.h"

/* A peer that stops reading is closed once this much output waits for it:
 * memd never blocks on a client, and never holds unbounded memory for one. */
#define CONN_OUT_MAX_BYTES (64u * 1024 * 1024)
#define CONN_READ_BYTES 65536

struct process;

struct conn {
        struct server *server;
        int fd;
        ev_io io;
        struct proto_reader *reader;
        struct proto_msg msg;
        pid_t pid;              /* SO_PEERCRED */
        uid_t uid;              /* SO_PEERCRED */
        uint32_t role;          /* 0 until HELLO */
        struct process *process; /* agents: their registry entry */
        char *out;
        size_t out_len, out_off, out_cap;
        struct conn *prev, *next;
};

struct process {
        struct server *server;
        pid_t pid;
        uid_t uid;
        char comm[PROTO_COMM_MAX];
        char unit[PROTO_COMM_MAX * 4];
        int pidfd;              /* -1: exit detected by EOF only */
        ev_io pidfd_io;
        struct conn *conn;
        int64_t attached_ns;
        int64_t stats_time_ns;  /* when the agent read its stats; 0 = none yet */
        int64_t received_ns;    /* when memd received them */
        bool has_stats;
        struct memd_memstats stats;
        struct process *prev, *next;
};

struct server {
        struct ev_loop *loop;
        int listen_fd;
        ev_io listen_io;
        char *socket_path;      /* what we bound; NULL when systemd passed the socket */
        bool socket_created;
        dev_t socket_dev;
        ino_t socket_ino;
        struct conn *conns;
        struct process *processes;
        unsigned n_processes;
};

/* server.c */
int server_open(struct server *s, const char *path);
int server_start(struct server *s, struct ev_loop *loop);
void server_stop(struct server *s);
/* Queues a packed message for conn and writes what the socket takes now.
 * Returns 0, or -ENOBUFS when the peer has too much unread output (the
 * caller closes it). */
int conn_send(struct conn *c, const msgpack_sbuffer *buf);
/* A connection over fd (non-blocking) from the peer SO_PEERCRED named;
 * NULL when out of memory (fd is then the caller's). */
struct conn *conn_new(struct server *s, int fd, pid_t pid, uid_t uid);
void conn_free(struct conn *c);
/* Feeds bytes read from c's socket to its reader and dispatches every whole
 * message.  Returns 0, or -errno when c must be closed (already logged). */
int conn_input(struct conn *c, const void *buf, size_t n);

/* registry.c */
/* Attaches conn as the agent of its SO_PEERCRED pid; an older connection of
 * the same pid is closed.  Returns 0 or -errno (the process is gone). */
int registry_attach(struct server *s, struct conn *c);
/* Drops p (logs "detach"); its connection, if any, is left to the caller. */
void registry_detach(struct process *p, const char *why);
struct process *registry_find(struct server *s, pid_t pid);
void registry_update_stats(struct process *p, const struct proto_memstats *m);
void registry_fill(const struct process *p, struct proto_process *ret);
void registry_done(struct server *s);

/* dispatch.c */
/* Handles one message from c.  Returns 0 to go on, or -errno to close c
 * (the reason was logged). */
int dispatch_message(struct conn *c, const struct proto_msg *m);

/* log.c */
enum log_target { LOG_TARGET_AUTO, LOG_TARGET_JOURNAL, LOG_TARGET_STDERR };
void log_setup(enum log_target t);
void log_msg(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* attach/detach events: structured fields MEMD_EVENT, MEMD_PID, MEMD_COMM, MEMD_UNIT. */
void log_event(const char *event, const struct process *p, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
int log_errno(int priority, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_error_errno(r, ...) log_errno(LOG_ERR, r, __VA_ARGS__)
#define log_warning_errno(r, ...) log_errno(LOG_WARNING, r, __VA_ARGS__)

int64_t now_ns(void);
void notify_status(struct server *s);

#endif
