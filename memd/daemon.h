/* daemon.h - memd's internal objects: the server, its connections, the registry of attached processes, logging. */
#ifndef MEMD_DAEMON_H
#define MEMD_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <syslog.h>

#include <ev.h>

#include "memd-config.h"
#include "memd.h"
#include "policy.h"
#include "proto.h"

/* A peer that stops reading is closed once this much output waits for it:
 * memd never blocks on a client, and never holds unbounded memory for one. */
#define CONN_OUT_MAX_BYTES (64u * 1024 * 1024)
#define CONN_READ_BYTES 65536

struct process;
struct pending;

/* A control client's SUBSCRIBE (memctl trace). */
struct subscription {
        bool on;
        uint64_t id;            /* the SUBSCRIBE's id: every EVENT streamed carries it */
        pid_t pid;              /* 0: every process the client may see */
};

/* One process's profile as memd holds it (store.c).  Records are allocated
 * with only the pcs they have: never copy one by value. */
#define STORE_MAX_RECORDS 65536u
struct store {
        struct profile_record **recs;
        uint64_t *hashes;
        size_t n, cap;
        uint32_t *index;        /* open addressing: positions in recs */
        size_t index_cap;
        uint64_t rate_bytes;    /* the period of the last snapshot/delta */
        int64_t time_ns;        /* when the agent read its table */
        uint64_t generation;    /* of the snapshot being (or last) received */
        bool complete;          /* the last snapshot's final part arrived */
        uint64_t snapshots, deltas;
};

struct store_totals {
        uint64_t buckets, alloc_bytes, alloc_objects, inuse_bytes, inuse_objects; /* estimates, rounded */
};

struct mapping {
        uint64_t start, limit, offset;
        char *path;
        uint8_t build_id[PROTO_MAX_BUILD_ID_BYTES];
        uint32_t build_id_len;
};

struct mappings {
        struct mapping *v;
        size_t n;
};

/* A gc/scvg event as kept in a process's history (the text allocated). */
struct event {
        struct proto_event figures; /* text[] unused: see text */
        char *text;
};
#define EVENT_HISTORY 32

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
        int out_fd;             /* -1, or a descriptor to pass (SCM_RIGHTS) with the byte at out_fd_at */
        size_t out_fd_at;
        struct subscription sub;
        bool draining;          /* output waits for the socket (counted in server.n_draining) */
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
        uint64_t rate_bytes;    /* HELLO's, then the profile's */
        struct store profile;
        struct mappings mappings;
        struct event *events;   /* ring of EVENT_HISTORY, allocated on the first */
        uint64_t n_events;      /* ever received */
        int64_t last_gc_ns, last_scvg_ns;
        struct policy policy;           /* in force: the files', then memctl set's (sources into server.config) */
        struct policy runtime;          /* memctl set's values... */
        bool runtime_set[_POLICY_KEY_MAX]; /* ...for these keys, until the process exits */
        struct policy_values values;    /* what the decisions read, from policy */
        struct policy_track track;
        /* Without a connection: the process exited (kept for post-mortem
         * profiles until the timer fires), or its agent went away and may
         * come back (a reconnect, an exec) within CONN_GRACE_S. */
        int64_t exited_ns;      /* 0 = alive */
        ev_timer linger;
        struct process *prev, *next;
};

struct server {
        struct ev_loop *loop;
        int listen_fd;
        ev_io listen_io;
        ev_timer accept_retry;  /* accepting again after EMFILE */
        char *socket_path;      /* what we bound; NULL when systemd passed the socket */
        bool socket_created;
        dev_t socket_dev;
        ino_t socket_ino;
        struct conn *conns;
        struct process *processes;
        unsigned n_processes;   /* entries, exited ones included */
        unsigned n_exited;
        double keep_exited_s;   /* --keep-exited */
        double conn_grace_s;    /* CONN_GRACE_S; 0: a closed connection detaches at once */
        struct pending *pending;        /* requests forwarded to agents */
        struct heap_worker *heap;       /* heap.c: the profile writer thread, made on the first request */
        double collect_s;       /* libev's io collect interval while nobody waits on output */
        unsigned n_draining;    /* connections with output waiting: no batching meanwhile */
        uint64_t next_agent_id;
        double request_timeout_s;
        struct pressure *pressure;      /* pressure.c: what is watched; NULL = nothing */
        int pressure_epfd;
        ev_io pressure_io;
        uint64_t pressure_events;
        const char *config_dir;         /* --config-dir */
        struct config *config;          /* loaded from it; NULL = the built-in defaults */
};

/* pressure.c: starts watching (never fails for a missing PSI: it logs). */
int pressure_start(struct server *s);
void pressure_stop(struct server *s);

/* server.c */
int server_open(struct server *s, const char *path);
int server_start(struct server *s, struct ev_loop *loop);
void server_stop(struct server *s);
/* Queues a packed message for conn and writes what the socket takes now.
 * Returns 0, or -ENOBUFS when the peer has too much unread output (the
 * caller closes it). */
int conn_send(struct conn *c, const msgpack_sbuffer *buf);
/* The same, passing fd with the message's first byte (SCM_RIGHTS).  fd is
 * taken, even on failure; -EBUSY while another one waits to go. */
int conn_send_fd(struct conn *c, const msgpack_sbuffer *buf, int fd);
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
/* p's connection closed: p stays (exited: for post-mortem profiles; alive:
 * for CONN_GRACE_S, in case the agent comes back). */
void registry_disconnected(struct process *p);
#define CONN_GRACE_S 2.0
#define KEEP_EXITED_S 600.0
struct process *registry_find(struct server *s, pid_t pid);
void registry_update_stats(struct process *p, struct proto_memstats *m);
void registry_fill(const struct process *p, struct proto_process *ret);
void registry_fill_brief(const struct process *p, struct proto_process *ret);
void registry_done(struct server *s);

/* registry.c: history */
void registry_add_event(struct process *p, const struct proto_event *e);
/* Fills the RSS breakdown from /proc/PID/status and smaps_rollup. */
void registry_read_rss(const struct process *p, struct proto_process *ret);

/* store.c */
void store_init(struct store *s);
void store_clear(struct store *s);
void store_free(struct store *s);
/* Adds r's figures to the record of its stack (made if new).  -ENOSPC past
 * STORE_MAX_RECORDS, -ENOMEM. */
int store_add(struct store *s, const struct profile_record *r);
void store_totals(const struct store *s, struct store_totals *t);
int mappings_set(struct mappings *m, const struct proto_mappings *in);
void mappings_free(struct mappings *m);

/* heap.c: p's profile in a PROTO_PROFILE_* format (not RAW), written on
 * memd's heap worker thread from a copy taken now; c's request id is
 * answered on the loop when it is done (dispatch_profile_written).  0, or
 * -errno and nothing queued. */
int heap_request(struct conn *c, uint64_t id, const struct process *p, uint32_t format, bool pass_fd);
/* c is going away: its pending profiles are dropped unanswered. */
void heap_conn_gone(struct conn *c);
/* Stops the worker, drops what is pending, frees the symbolizer. */
void heap_done(struct server *s);

/* dispatch.c: answers a profile heap.c wrote (r < 0: the error; else fd,
 * len bytes from its start, taken).  -errno: close c. */
int dispatch_profile_written(struct conn *c, uint64_t id, uint32_t pid, uint32_t format, bool pass_fd, int r,
                             int fd, size_t len);

/* forward.c: requests relayed from control clients to agents */
#define REQUEST_TIMEOUT_S 10.0
/* Sends a request of type (GC_REQUEST, ...) to p's agent on behalf of
 * control client c (its request id ctl_id).  The answer, a timeout
 * (ETIMEDOUT) or the process going away (ESRCH) is relayed to c.  Returns 0
 * or -errno (then nothing was sent; the caller replies). */
int forward_request(struct process *p, struct conn *c, uint64_t ctl_id, uint32_t type, const struct proto_request *q);
/* The same from memd's policy engine: no client; policy_request_done(p)
 * when it ends, however it ends. */
int forward_policy_request(struct process *p, uint32_t type, const struct proto_request *q);
/* An agent's reply (GC_RESULT, SCAVENGE_RESULT, OK, ERROR) to a forwarded
 * request.  Returns 0 (unknown ids are dropped) or -errno for a bad body. */
int forward_reply(struct conn *agent, const struct proto_msg *m);
/* Fails every request forwarded to p (ESRCH) or, with a control conn,
 * forgets the requests it made. */
void forward_process_gone(struct process *p);
void forward_conn_gone(struct conn *c);
void forward_done(struct server *s);

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
/* A gc/scvg cycle of p: MESSAGE = its seed-grammar line(s), with the figures
 * as MEMD_* fields. */
void log_cycle(const struct process *p, const struct proto_event *e);
/* A policy action (MEMD_EVENT=policy): kind limit, idle or pressure. */
void log_policy(const struct process *p, const char *kind, const char *why);
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_error_errno(r, ...) log_errno(LOG_ERR, r, __VA_ARGS__)
#define log_warning_errno(r, ...) log_errno(LOG_WARNING, r, __VA_ARGS__)

int64_t now_ns(void);
void notify_status(struct server *s);

#endif
