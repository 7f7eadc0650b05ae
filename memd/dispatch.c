/* dispatch.c - memd's message handlers: one table {type, who may send it, handler}. */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "daemon.h"

#define WHO_AGENT   (1u << PROTO_ROLE_AGENT)
#define WHO_CONTROL (1u << PROTO_ROLE_CONTROL)

/* Handlers return 0, or -errno to close the connection (after logging why). */
typedef int (*dispatch_fn)(struct conn *c, const struct proto_msg *m);

static int reply_error(struct conn *c, uint64_t id, int code, const char *text) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        int r;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        r = proto_pack_error(&pk, id, code, text);
        if (r >= 0)
                r = conn_send(c, &sb);
        msgpack_sbuffer_destroy(&sb);
        if (r < 0)
                log_errno(LOG_WARNING, r, "closing connection of pid %d: cannot reply: %m", (int) c->pid);
        return r;
}

/* A malformed body: said to the peer (ERROR EBADMSG, best effort) and
 * logged; the caller closes the connection. */
static int bad_body(struct conn *c, const struct proto_msg *m, int r) {
        char text[96];

        snprintf(text, sizeof text, "malformed %s message", proto_msg_type_name(m->type));
        reply_error(c, m->id, EBADMSG, text);
        log_errno(LOG_WARNING, r, "closing connection of pid %d: bad %s message: %m", (int) c->pid,
                  proto_msg_type_name(m->type));
        return r;
}

/* Sends what pk packed into sb, with fd when >= 0 (taken, conn_send_fd); on
 * failure the connection is closed by the caller (returns -errno, logged). */
static int send_packed_fd(struct conn *c, msgpack_sbuffer *sb, int r, int fd) {
        if (r >= 0 && sb->size > PROTO_MAX_FRAME_BYTES)
                r = -EMSGSIZE;
        if (r >= 0)
                r = fd >= 0 ? conn_send_fd(c, sb, fd) : conn_send(c, sb);
        else if (fd >= 0)
                close(fd);
        msgpack_sbuffer_destroy(sb);
        if (r < 0)
                return log_errno(LOG_WARNING, r, "closing connection of pid %d: cannot reply: %m", (int) c->pid);
        return 0;
}

static int send_packed(struct conn *c, msgpack_sbuffer *sb, int r) {
        return send_packed_fd(c, sb, r, -1);
}

#define PACK_INIT(sb, pk)                                             \
        msgpack_sbuffer_init(&(sb));                                  \
        msgpack_packer_init(&(pk), &(sb), msgpack_sbuffer_write)

static int dispatch_hello(struct conn *c, const struct proto_msg *m) {
        struct proto_hello h = {};
        struct proto_hello_ok ok = { .version = PROTO_VERSION };
        msgpack_sbuffer sb;
        msgpack_packer pk;
        int r;

        r = proto_decode_hello(m, &h);
        if (r < 0)
                return bad_body(c, m, r);
        if (h.version != PROTO_VERSION) {
                reply_error(c, m->id, EPROTONOSUPPORT, "unsupported protocol version");
                log_info("closing connection of pid %d: protocol version %u", (int) c->pid, h.version);
                return -EPROTONOSUPPORT;
        }
        if (h.role != PROTO_ROLE_AGENT && h.role != PROTO_ROLE_CONTROL) {
                reply_error(c, m->id, EINVAL, "unknown role");
                log_info("closing connection of pid %d: unknown role %u", (int) c->pid, h.role);
                return -EINVAL;
        }
        if (h.pid != 0 && h.pid != (uint32_t) c->pid)
                log_warning("pid %d claims to be pid %u in HELLO; using SO_PEERCRED", (int) c->pid, h.pid);
        if (h.role == PROTO_ROLE_AGENT) {
                r = registry_attach(c->server, c);
                if (r < 0) {
                        reply_error(c, m->id, -r, "cannot attach this process");
                        return log_errno(LOG_INFO, r, "cannot attach pid %d: %m", (int) c->pid);
                }
        }
        c->role = h.role;
        if (c->process && h.rate_bytes)
                c->process->rate_bytes = h.rate_bytes;

        ok.pid = (uint32_t) c->pid;
        ok.uid = (uint32_t) c->uid;
        strcpy(ok.software, "memd " MEMD_VERSION_STRING);
        PACK_INIT(sb, pk);
        return send_packed(c, &sb, proto_pack_hello_ok(&pk, m->id, &ok));
}

static int dispatch_memstats(struct conn *c, const struct proto_msg *m) {
        struct proto_memstats *ms;
        int r;

        ms = malloc(sizeof *ms);
        if (!ms)
                return log_errno(LOG_WARNING, -ENOMEM, "closing connection of pid %d: %m", (int) c->pid);
        memset(ms, 0, sizeof *ms);
        r = proto_decode_memstats(m, ms);
        if (r < 0) {
                free(ms);
                return bad_body(c, m, r);
        }
        if (c->process) {
                registry_update_stats(c->process, ms);
                policy_stats(c->process);
        }
        free(ms);
        return 0;
}

static bool may_see(const struct conn *c, const struct process *p) {
        return c->uid == 0 || c->uid == p->uid;
}

/* ---- from agents ---- */

static int dispatch_profile(struct conn *c, const struct proto_msg *m) {
        struct process *p = c->process;
        struct proto_profile h;
        struct profile_record *rec;
        int r;

        r = proto_decode_profile(m, &h);
        if (r < 0)
                return bad_body(c, m, r);
        if (!p)
                return 0;
        if (m->type == PROTO_MSG_PROFILE_SNAPSHOT) {
                if (h.part == 0) {
                        store_clear(&p->profile);
                        p->profile.generation = h.generation;
                        p->profile.complete = false;
                } else if (h.generation != p->profile.generation || p->profile.complete) {
                        log_info("pid %d: dropping part %u of snapshot %" PRIu64 " (expected snapshot %" PRIu64 ")",
                                 (int) c->pid, h.part, h.generation, p->profile.generation);
                        return 0;
                }
        }
        rec = malloc(sizeof(*rec));
        if (!rec)
                return log_errno(LOG_WARNING, -ENOMEM, "closing connection of pid %d: %m", (int) c->pid);
        for (uint32_t i = 0; i < h.buckets.n; i++) {
                proto_decode_bucket(&h.buckets.items[i], rec); /* validated by proto_decode_profile */
                r = store_add(&p->profile, rec);
                if (r == -ENOSPC) {
                        log_warning("pid %d: more than %u stacks; the rest of its profile is dropped",
                                    (int) c->pid, STORE_MAX_RECORDS);
                        break;
                }
                if (r < 0) {
                        free(rec);
                        return log_errno(LOG_WARNING, r, "closing connection of pid %d: %m", (int) c->pid);
                }
        }
        free(rec);
        p->profile.rate_bytes = h.rate_bytes;
        p->profile.time_ns = h.time_ns;
        if (m->type == PROTO_MSG_PROFILE_DELTA)
                p->profile.deltas++;
        else if (h.final) {
                p->profile.complete = true;
                p->profile.snapshots++;
        }
        return 0;
}

static int dispatch_mappings(struct conn *c, const struct proto_msg *m) {
        struct proto_mappings h;
        int r;

        r = proto_decode_mappings(m, &h);
        if (r < 0)
                return bad_body(c, m, r);
        if (c->process && (r = mappings_set(&c->process->mappings, &h)) < 0)
                return log_errno(LOG_WARNING, r, "closing connection of pid %d: %m", (int) c->pid);
        return 0;
}

/* Streams e to every subscriber that may see p. */
static void publish(struct process *p, struct proto_event *e) {
        struct server *s = p->server;
        struct conn *x, *next;

        e->pid = (uint32_t) p->pid;
        for (x = s->conns; x; x = next) {
                msgpack_sbuffer sb;
                msgpack_packer pk;
                int r;

                next = x->next;
                if (!x->sub.on || !may_see(x, p) || (x->sub.pid && x->sub.pid != p->pid))
                        continue;
                PACK_INIT(sb, pk);
                r = proto_pack_event(&pk, x->sub.id, e);
                if (r >= 0)
                        r = conn_send(x, &sb);
                msgpack_sbuffer_destroy(&sb);
                if (r < 0) {
                        log_errno(LOG_INFO, r, "closing subscriber pid %d: %m", (int) x->pid);
                        conn_free(x); /* a control client: never p's agent, never next */
                }
        }
}

static int dispatch_event(struct conn *c, const struct proto_msg *m) {
        struct proto_event *e;
        int r;

        e = malloc(sizeof(*e));
        if (!e)
                return log_errno(LOG_WARNING, -ENOMEM, "closing connection of pid %d: %m", (int) c->pid);
        r = proto_decode_event(m, e);
        if (r < 0) {
                free(e);
                return bad_body(c, m, r);
        }
        if (c->process) {
                log_cycle(c->process, e);
                registry_add_event(c->process, e);
                publish(c->process, e);
        }
        free(e);
        return 0;
}

static int dispatch_agent_reply(struct conn *c, const struct proto_msg *m) {
        int r = forward_reply(c, m);

        return r < 0 ? bad_body(c, m, r) : 0;
}

/* ---- from control clients ---- */

/* The target of a control request: attached, and the caller's to act on.
 * NULL after replying with the error. */
static struct process *target(struct conn *c, const struct proto_msg *m, const struct proto_request *q, int *ret) {
        struct process *p;

        *ret = 0;
        if (q->pid == 0) {
                *ret = reply_error(c, m->id, EINVAL, "a pid is required");
                return NULL;
        }
        p = registry_find(c->server, (pid_t) q->pid);
        if (!p) {
                *ret = reply_error(c, m->id, ESRCH, "process is not attached to memd");
                return NULL;
        }
        if (!may_see(c, p)) {
                *ret = reply_error(c, m->id, EPERM, "process belongs to another user");
                return NULL;
        }
        return p;
}

/* A request about one process: its body decoded into q and its target
 * found and allowed, or NULL with *ret what the dispatcher returns (the
 * error already answered, or a bad body's close). */
static struct process *request_target(struct conn *c, const struct proto_msg *m, struct proto_request *q,
                                      int *ret) {
        int r = proto_decode_request(m, q);

        if (r < 0) {
                *ret = bad_body(c, m, r);
                return NULL;
        }
        return target(c, m, q, ret);
}

static int dispatch_forward(struct conn *c, const struct proto_msg *m) {
        struct proto_request q = {};
        struct process *p;
        int r;

        p = request_target(c, m, &q, &r);
        if (!p)
                return r;
        r = forward_request(p, c, m->id, m->type, &q);
        if (r == -ESRCH)
                return reply_error(c, m->id, ESRCH, "process went away");
        if (r < 0)
                return reply_error(c, m->id, -r, "cannot send the request to the process");
        return 0;
}

/* SET_POLICY (memctl set): memd's own business, the agent hears only of a
 * new ProfileRate.  All the settings or none. */
static int dispatch_set_policy(struct conn *c, const struct proto_msg *m) {
        struct proto_request q = {};
        struct process *p;
        msgpack_sbuffer sb;
        msgpack_packer pk;
        char err[512];
        int r;

        p = request_target(c, m, &q, &r);
        if (!p)
                return r;
        if (p->exited_ns)
                return reply_error(c, m->id, ESRCH, "process exited");
        r = policy_set_runtime(p, q.settings, err, sizeof err);
        if (r < 0)
                return reply_error(c, m->id, -r, err);
        log_event("policy", p, "pid %d (%s): memctl set by uid %u", (int) p->pid, p->comm, (unsigned) c->uid);
        PACK_INIT(sb, pk);
        return send_packed(c, &sb, proto_pack_ok(&pk, m->id, UINT64_MAX));
}

/* A formatted profile, written from memd's copy on the heap worker
 * (heap.c), answered here on the loop: the memfd itself (fd, taken) when
 * the client takes descriptors (one PROFILE_DATA with fd, the file passed
 * with SCM_RIGHTS: no copy through the socket, 17 MiB for a text profile of
 * 10,000 stacks), else PROFILE_DATA parts of at most PROTO_DATA_PART_BYTES. */
int dispatch_profile_written(struct conn *c, uint64_t id, uint32_t pid, uint32_t format, bool pass_fd, int r,
                             int fd, size_t len) {
        struct proto_profile_data d = { .pid = pid, .format = format };
        msgpack_sbuffer sb;
        msgpack_packer pk;
        size_t off = 0;
        char *buf;

        if (r < 0)
                return reply_error(c, id, -r, "cannot write the profile");
        if (pass_fd && c->out_fd < 0) {
                d.final = true;
                d.fd = true;
                d.size = len;
                PACK_INIT(sb, pk);
                return send_packed_fd(c, &sb, proto_pack_profile_data(&pk, id, &d), fd);
        }
        buf = malloc(PROTO_DATA_PART_BYTES);
        if (!buf) {
                close(fd);
                return reply_error(c, id, ENOMEM, "out of memory");
        }
        do {
                size_t k = len - off < PROTO_DATA_PART_BYTES ? len - off : PROTO_DATA_PART_BYTES;
                ssize_t got = k ? pread(fd, buf, k, (off_t) off) : 0;

                if (got < 0 || (size_t) got != k) {
                        r = reply_error(c, id, EIO, "cannot read the profile back");
                        break;
                }
                d.data = (struct proto_bin) { buf, (uint32_t) k };
                d.final = off + k == len;
                PACK_INIT(sb, pk);
                r = send_packed(c, &sb, proto_pack_profile_data(&pk, id, &d));
                d.part++;
                off += k;
        } while (r >= 0 && off < len);
        free(buf);
        close(fd);
        return r;
}

/* Queues the profile for the heap worker; the answer goes out when it is
 * written (dispatch_profile_written). */
static int formatted(struct conn *c, uint64_t id, const struct process *p, uint32_t format, bool pass_fd) {
        int r = heap_request(c, id, p, format, pass_fd);

        return r < 0 ? reply_error(c, id, -r, "cannot write the profile") : 0;
}

/* PROFILE_REQUEST: memd answers from its own copy (MAPPINGS, then the
 * snapshot parts, the last with final), so a stopped process still has a
 * profile. */
#define PARTS_BUCKETS 4096u
static int dispatch_profile_request(struct conn *c, const struct proto_msg *m) {
        struct proto_request q = {};
        struct proto_mapping *pm;
        struct profile_record *recs;
        struct process *p;
        msgpack_sbuffer sb;
        msgpack_packer pk;
        size_t n, off = 0;
        uint32_t part = 0;
        int r;

        p = request_target(c, m, &q, &r);
        if (!p)
                return r;
        if (q.format != PROTO_PROFILE_RAW)
                return formatted(c, m->id, p, q.format, q.fd);
        n = p->mappings.n;
        pm = calloc(n ? n : 1, sizeof(*pm));
        recs = calloc(PARTS_BUCKETS, sizeof(*recs));
        if (!pm || !recs) {
                free(pm);
                free(recs);
                return reply_error(c, m->id, ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < n; i++) {
                const struct mapping *x = &p->mappings.v[i];
                pm[i].start = x->start;
                pm[i].limit = x->limit;
                pm[i].offset = x->offset;
                snprintf(pm[i].path, sizeof(pm[i].path), "%s", x->path);
                memcpy(pm[i].build_id, x->build_id, x->build_id_len);
                pm[i].build_id_len = x->build_id_len;
        }
        PACK_INIT(sb, pk);
        r = send_packed(c, &sb, proto_pack_mappings(&pk, m->id, (uint32_t) p->pid, pm, n));
        free(pm);
        do {
                size_t k = p->profile.n - off < PARTS_BUCKETS ? p->profile.n - off : PARTS_BUCKETS;
                struct proto_profile h = {
                        .pid = (uint32_t) p->pid,
                        .generation = p->profile.generation,
                        .part = part++,
                        .final = off + k == p->profile.n,
                        .rate_bytes = p->profile.rate_bytes ? p->profile.rate_bytes : p->rate_bytes,
                        .time_ns = p->profile.time_ns,
                };

                if (r < 0)
                        break;
                for (size_t i = 0; i < k; i++) {
                        const struct profile_record *x = p->profile.recs[off + i];
                        /* Records are stored short: copy field by field. */
                        memset(&recs[i], 0, sizeof(recs[i]));
                        memcpy(&recs[i], x, offsetof(struct profile_record, pcs) + x->depth * sizeof(uintptr_t));
                }
                PACK_INIT(sb, pk);
                r = send_packed(c, &sb, proto_pack_profile(&pk, PROTO_MSG_PROFILE_SNAPSHOT, m->id, &h, recs, k));
                off += k;
        } while (off < p->profile.n);
        free(recs);
        return r;
}

static int dispatch_subscribe(struct conn *c, const struct proto_msg *m) {
        struct proto_request q = {};
        msgpack_sbuffer sb;
        msgpack_packer pk;
        int r;

        r = proto_decode_request(m, &q);
        if (r < 0)
                return bad_body(c, m, r);
        if (q.pid != 0 && !target(c, m, &q, &r))
                return r;
        c->sub = (struct subscription) { .on = true, .id = m->id, .pid = (pid_t) q.pid };
        PACK_INIT(sb, pk);
        return send_packed(c, &sb, proto_pack_ok(&pk, m->id, UINT64_MAX));
}

/* STATUS_REQUEST.  For every process (the list): the scalars of MemStats
 * only, packed one process at a time.  For one PID: everything, with the
 * pause arrays, the RSS breakdown read now, and the recent events. */
static int dispatch_status(struct conn *c, const struct proto_msg *m) {
        struct server *s = c->server;
        struct proto_request q = {};
        struct proto_process *one;
        struct proto_event *events = NULL;
        struct process *p = NULL;
        msgpack_sbuffer sb;
        msgpack_packer pk;
        size_t n = 0;
        int r;

        r = proto_decode_request(m, &q);
        if (r < 0)
                return bad_body(c, m, r);
        if (q.pid != 0) {
                p = registry_find(s, (pid_t) q.pid);
                if (!p)
                        return reply_error(c, m->id, ESRCH, "process is not attached to memd");
                if (!may_see(c, p))
                        return reply_error(c, m->id, EPERM, "process belongs to another user");
        }
        one = malloc(sizeof *one);
        if (!one)
                return reply_error(c, m->id, ENOMEM, "out of memory");
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        if (p) {
                uint64_t k = p->n_events < EVENT_HISTORY ? p->n_events : EVENT_HISTORY;

                registry_fill(p, one);
                policy_describe(p, one->policy, sizeof one->policy);
                one->has_pauses = one->has_stats;
                registry_read_rss(p, one);
                events = k ? calloc(k, sizeof(*events)) : NULL;
                if (events && p->events) {
                        for (uint64_t i = 0; i < k; i++) {
                                const struct event *e = &p->events[(p->n_events - k + i) % EVENT_HISTORY];
                                events[i] = e->figures;
                                snprintf(events[i].text, sizeof(events[i].text), "%s", e->text ? e->text : "");
                                events[i].pid = (uint32_t) p->pid;
                        }
                        one->events = events;
                        one->n_events = k;
                }
                r = proto_pack_status_begin(&pk, m->id, 1);
                if (r >= 0)
                        r = proto_pack_process(&pk, one);
        } else {
                /* The list is of attached processes: not the exited ones
                 * kept for their last profile. */
                for (struct process *x = s->processes; x; x = x->next)
                        n += may_see(c, x) && !x->exited_ns;
                r = proto_pack_status_begin(&pk, m->id, n);
                for (struct process *x = s->processes; x && r >= 0; x = x->next)
                        if (may_see(c, x) && !x->exited_ns) {
                                if (q.brief)
                                        registry_fill_brief(x, one);
                                else
                                        registry_fill(x, one);
                                r = proto_pack_process(&pk, one);
                        }
        }
        free(one);
        free(events);
        if (r >= 0 && sb.size > PROTO_MAX_FRAME_BYTES)
                r = -EMSGSIZE;
        if (r < 0) {
                msgpack_sbuffer_destroy(&sb);
                return reply_error(c, m->id, -r, "status too large for one message");
        }
        r = conn_send(c, &sb);
        msgpack_sbuffer_destroy(&sb);
        if (r < 0)
                return log_errno(LOG_WARNING, r, "closing connection of pid %d: cannot reply: %m", (int) c->pid);
        return 0;
}

static int dispatch_bye(struct conn *c, const struct proto_msg *m) {
        (void) m;
        log_info("pid %d said BYE", (int) c->pid);
        return -ECONNRESET;
}

static const struct {
        uint32_t type;
        unsigned who;
        dispatch_fn fn;
} handlers[] = {
        { PROTO_MSG_BYE, WHO_AGENT | WHO_CONTROL, dispatch_bye },
        { PROTO_MSG_MEMSTATS, WHO_AGENT, dispatch_memstats },
        { PROTO_MSG_PROFILE_SNAPSHOT, WHO_AGENT, dispatch_profile },
        { PROTO_MSG_PROFILE_DELTA, WHO_AGENT, dispatch_profile },
        { PROTO_MSG_MAPPINGS, WHO_AGENT, dispatch_mappings },
        { PROTO_MSG_EVENT, WHO_AGENT, dispatch_event },
        { PROTO_MSG_OK, WHO_AGENT, dispatch_agent_reply },
        { PROTO_MSG_ERROR, WHO_AGENT, dispatch_agent_reply },
        { PROTO_MSG_GC_RESULT, WHO_AGENT, dispatch_agent_reply },
        { PROTO_MSG_SCAVENGE_RESULT, WHO_AGENT, dispatch_agent_reply },
        { PROTO_MSG_STATUS_REQUEST, WHO_CONTROL, dispatch_status },
        { PROTO_MSG_GC_REQUEST, WHO_CONTROL, dispatch_forward },
        { PROTO_MSG_SCAVENGE_REQUEST, WHO_CONTROL, dispatch_forward },
        { PROTO_MSG_PROFILE_REQUEST, WHO_CONTROL, dispatch_profile_request },
        { PROTO_MSG_SET_RATE, WHO_CONTROL, dispatch_forward },
        { PROTO_MSG_SET_MEMORY_LIMIT, WHO_CONTROL, dispatch_forward },
        { PROTO_MSG_SET_POLICY, WHO_CONTROL, dispatch_set_policy },
        { PROTO_MSG_SUBSCRIBE, WHO_CONTROL, dispatch_subscribe },
};

int dispatch_message(struct conn *c, const struct proto_msg *m) {
        if (c->role == 0) {
                if (m->type != PROTO_MSG_HELLO) {
                        reply_error(c, m->id, EBADMSG, "HELLO must come first");
                        log_info("closing connection of pid %d: %s before HELLO", (int) c->pid,
                                 proto_msg_type_name(m->type));
                        return -EBADMSG;
                }
                return dispatch_hello(c, m);
        }
        for (size_t i = 0; i < sizeof handlers / sizeof handlers[0]; i++)
                if (handlers[i].type == m->type) {
                        if (!(handlers[i].who & (1u << c->role)))
                                break;
                        return handlers[i].fn(c, m);
                }
        /* Well-formed but not this role's to send: the connection stays. */
        return reply_error(c, m->id, EPERM, "message type not allowed for this role");
}
