/* forward.c - requests memctl makes of a process (gc, free-os-memory, set rate/limit): relayed to its agent, answered or timed out. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "daemon.h"

/*
 * memd never waits for an agent: a request is sent, remembered here with a
 * timer, and the control client is answered when the agent replies, when the
 * timer fires (ETIMEDOUT: a stopped or busy process), or when the process
 * goes away (ESRCH).  The agent sees memd's own ids, never memctl's.
 */

struct pending {
        struct server *server;
        struct process *proc;
        uint64_t agent_id;
        struct conn *ctl;               /* NULL once the client went away */
        uint64_t ctl_id;
        uint32_t type;
        bool policy;                    /* asked by memd's policy engine: it hears of the end */
        ev_timer timer;
        struct pending *prev, *next;
};

static void pending_free(struct pending *q) {
        struct server *s = q->server;

        if (q->policy)
                policy_request_done(q->proc);
        ev_timer_stop(s->loop, &q->timer);
        if (q->prev)
                q->prev->next = q->next;
        else
                s->pending = q->next;
        if (q->next)
                q->next->prev = q->prev;
        free(q);
}

/* Sends sb to the client of q, closing it if it stopped reading. */
static void reply(struct pending *q, msgpack_sbuffer *sb) {
        struct conn *c = q->ctl;

        if (!c)
                return;
        if (conn_send(c, sb) < 0) {
                log_info("closing connection of pid %d: it does not read its replies", (int) c->pid);
                conn_free(c); /* forgets q's ctl: q itself is freed by our caller */
        }
}

static void reply_error(struct pending *q, int code, const char *text) {
        msgpack_sbuffer sb;
        msgpack_packer pk;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        if (proto_pack_error(&pk, q->ctl_id, code, text) >= 0)
                reply(q, &sb);
        msgpack_sbuffer_destroy(&sb);
}

static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents) {
        struct pending *q = w->data;
        char text[160];

        (void) loop;
        (void) revents;
        snprintf(text, sizeof(text), "process %d did not answer within %g s (stopped, or busy in a long reclaim?)",
                 (int) q->proc->pid, q->server->request_timeout_s);
        log_info("pid %d: %s timed out", (int) q->proc->pid, proto_msg_type_name(q->type));
        reply_error(q, ETIMEDOUT, text);
        pending_free(q);
}

static int forward_send(struct process *p, struct conn *c, uint64_t ctl_id, uint32_t type,
                        const struct proto_request *q, bool policy) {
        struct server *s = p->server;
        struct proto_request out = { .value = q->value, .automatic = q->automatic, .scavenge_only = q->scavenge_only };
        struct pending *x;
        msgpack_sbuffer sb;
        msgpack_packer pk;
        int r;

        if (!p->conn)
                return -ESRCH;
        x = calloc(1, sizeof(*x));
        if (!x)
                return -ENOMEM;
        x->server = s;
        x->proc = p;
        x->agent_id = ++s->next_agent_id;
        x->ctl = c;
        x->ctl_id = ctl_id;
        x->type = type;
        x->policy = policy;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        r = proto_pack_request(&pk, type, x->agent_id, &out);
        if (r >= 0)
                r = conn_send(p->conn, &sb);
        msgpack_sbuffer_destroy(&sb);
        if (r < 0) {
                free(x);
                /* An agent that does not read what memd sends is as good as
                 * gone.  Shut it down and let the loop free it (EOF): freeing
                 * it here fails its pending requests towards their clients,
                 * and closing one that stopped reading too could free c,
                 * whose message is being handled. */
                if (r == -ENOBUFS) {
                        log_info("closing connection of pid %d: it does not read memd's requests", (int) p->pid);
                        shutdown(p->conn->fd, SHUT_RDWR);
                        return -ESRCH;
                }
                return r;
        }
        ev_timer_init(&x->timer, on_timeout, s->request_timeout_s, 0);
        x->timer.data = x;
        ev_timer_start(s->loop, &x->timer);
        x->next = s->pending;
        if (s->pending)
                s->pending->prev = x;
        s->pending = x;
        return 0;
}

int forward_request(struct process *p, struct conn *c, uint64_t ctl_id, uint32_t type, const struct proto_request *q) {
        return forward_send(p, c, ctl_id, type, q, false);
}

int forward_policy_request(struct process *p, uint32_t type, const struct proto_request *q) {
        return forward_send(p, NULL, 0, type, q, true);
}

int forward_reply(struct conn *agent, const struct proto_msg *m) {
        struct server *s = agent->server;
        struct pending *q;
        msgpack_sbuffer sb;
        msgpack_packer pk;
        int r;

        for (q = s->pending; q; q = q->next)
                if (q->proc == agent->process && q->agent_id == m->id)
                        break;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        /* Decoded whether or not anyone waits: a bad body closes the agent. */
        switch (m->type) {
        case PROTO_MSG_GC_RESULT: {
                struct proto_gc_result *g = malloc(sizeof(*g));
                r = g ? proto_decode_gc_result(m, g) : -ENOMEM;
                if (r >= 0 && q) {
                        g->pid = (uint32_t) agent->pid;
                        r = proto_pack_gc_result(&pk, q->ctl_id, g);
                }
                free(g);
                break;
        }
        case PROTO_MSG_SCAVENGE_RESULT: {
                struct proto_scavenge_result *v = malloc(sizeof(*v));
                r = v ? proto_decode_scavenge_result(m, v) : -ENOMEM;
                if (r >= 0 && q) {
                        v->pid = (uint32_t) agent->pid;
                        r = proto_pack_scavenge_result(&pk, q->ctl_id, v);
                }
                free(v);
                break;
        }
        case PROTO_MSG_OK: {
                struct proto_ok ok;
                r = proto_decode_ok(m, &ok);
                if (r >= 0 && q)
                        r = proto_pack_ok(&pk, q->ctl_id, ok.previous);
                break;
        }
        default: { /* PROTO_MSG_ERROR */
                struct proto_error *e = malloc(sizeof(*e));
                r = e ? proto_decode_error(m, e) : -ENOMEM;
                if (r >= 0 && q)
                        r = proto_pack_error(&pk, q->ctl_id, (int) e->code, e->text);
                free(e);
                break;
        }
        }
        if (r >= 0 && q)
                reply(q, &sb);
        msgpack_sbuffer_destroy(&sb);
        if (q)
                pending_free(q);
        return r < 0 ? r : 0;
}

void forward_process_gone(struct process *p) {
        struct pending *q = p->server->pending, *next;

        for (; q; q = next) {
                next = q->next;
                if (q->proc != p)
                        continue;
                /* Closing a client that stopped reading only forgets its
                 * pending requests (forward_conn_gone): the list holds. */
                reply_error(q, ESRCH, "process went away before answering");
                pending_free(q);
        }
}

void forward_conn_gone(struct conn *c) {
        for (struct pending *q = c->server->pending; q; q = q->next)
                if (q->ctl == c)
                        q->ctl = NULL;
}

void forward_done(struct server *s) {
        while (s->pending)
                pending_free(s->pending);
}
