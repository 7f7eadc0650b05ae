/* dispatch.c - memd's message handlers: one table {type, who may send it, handler}. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

static int bad_body(struct conn *c, const struct proto_msg *m, int r) {
        log_errno(LOG_WARNING, r, "closing connection of pid %d: bad %s message: %m", (int) c->pid,
                  proto_msg_type_name(m->type));
        return r;
}

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

        ok.pid = (uint32_t) c->pid;
        ok.uid = (uint32_t) c->uid;
        strcpy(ok.software, "memd " MEMD_VERSION_STRING);
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        r = proto_pack_hello_ok(&pk, m->id, &ok);
        if (r >= 0)
                r = conn_send(c, &sb);
        msgpack_sbuffer_destroy(&sb);
        if (r < 0)
                return log_errno(LOG_WARNING, r, "closing connection of pid %d: cannot reply: %m", (int) c->pid);
        return 0;
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
        if (c->process)
                registry_update_stats(c->process, ms);
        free(ms);
        return 0;
}

static bool may_see(const struct conn *c, const struct process *p) {
        return c->uid == 0 || c->uid == p->uid;
}

static int dispatch_status(struct conn *c, const struct proto_msg *m) {
        struct server *s = c->server;
        struct proto_request q = {};
        struct proto_process *procs;
        msgpack_sbuffer sb;
        msgpack_packer pk;
        size_t n = 0;
        int r;

        r = proto_decode_request(m, &q);
        if (r < 0)
                return bad_body(c, m, r);
        if (q.pid != 0) {
                struct process *p = registry_find(s, (pid_t) q.pid);

                if (!p)
                        return reply_error(c, m->id, ESRCH, "process is not attached to memd");
                if (!may_see(c, p))
                        return reply_error(c, m->id, EPERM, "process belongs to another user");
        }
        procs = calloc(s->n_processes ? s->n_processes : 1, sizeof *procs);
        if (!procs)
                return reply_error(c, m->id, ENOMEM, "out of memory");
        for (struct process *p = s->processes; p; p = p->next)
                if (q.pid != 0 ? p->pid == (pid_t) q.pid : may_see(c, p))
                        registry_fill(p, &procs[n++]);

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        r = proto_pack_status_reply(&pk, m->id, procs, n);
        free(procs);
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

static int dispatch_not_implemented(struct conn *c, const struct proto_msg *m) {
        return reply_error(c, m->id, ENOSYS, "not implemented yet in this memd");
}

/* Replies and snapshots memd does not use yet: accepted and dropped. */
static int dispatch_ignore(struct conn *c, const struct proto_msg *m) {
        (void) c;
        (void) m;
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
        { PROTO_MSG_PROFILE_SNAPSHOT, WHO_AGENT, dispatch_ignore },
        { PROTO_MSG_PROFILE_DELTA, WHO_AGENT, dispatch_ignore },
        { PROTO_MSG_MAPPINGS, WHO_AGENT, dispatch_ignore },
        { PROTO_MSG_EVENT, WHO_AGENT, dispatch_ignore },
        { PROTO_MSG_OK, WHO_AGENT, dispatch_ignore },
        { PROTO_MSG_ERROR, WHO_AGENT, dispatch_ignore },
        { PROTO_MSG_GC_RESULT, WHO_AGENT, dispatch_ignore },
        { PROTO_MSG_SCAVENGE_RESULT, WHO_AGENT, dispatch_ignore },
        { PROTO_MSG_STATUS_REQUEST, WHO_CONTROL, dispatch_status },
        { PROTO_MSG_GC_REQUEST, WHO_CONTROL, dispatch_not_implemented },
        { PROTO_MSG_SCAVENGE_REQUEST, WHO_CONTROL, dispatch_not_implemented },
        { PROTO_MSG_PROFILE_REQUEST, WHO_CONTROL, dispatch_not_implemented },
        { PROTO_MSG_SET_RATE, WHO_CONTROL, dispatch_not_implemented },
        { PROTO_MSG_SET_MEMORY_LIMIT, WHO_CONTROL, dispatch_not_implemented },
        { PROTO_MSG_SUBSCRIBE, WHO_CONTROL, dispatch_not_implemented },
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
