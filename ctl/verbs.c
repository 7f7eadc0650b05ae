/* verbs.c - memctl's verbs (one table drives parsing and --help) and its blocking conversation with memd. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "ctl.h"
#include "top.h"

#define REPLY_TIMEOUT_SEC 10

struct client {
        int fd;
        struct proto_reader *reader;
        struct proto_msg msg;
        uint64_t next_id;
        int passed_fd;          /* the last descriptor memd passed (SCM_RIGHTS), or -1 */
};

static void client_done(struct client *cl) {
        proto_msg_done(&cl->msg);
        proto_reader_free(cl->reader);
        if (cl->fd >= 0)
                close(cl->fd);
        if (cl->passed_fd >= 0)
                close(cl->passed_fd);
}

/* recv() that keeps a descriptor memd passes with the bytes (only a
 * PROFILE_DATA with fd carries one, and memctl has one request in flight):
 * one still not taken when another arrives is closed. */
static ssize_t client_recv(struct client *cl, void *buf, size_t len) {
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(4 * sizeof(int))];
        } ctl;
        struct iovec iov = { buf, len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                             .msg_controllen = sizeof ctl.buf };
        ssize_t n = recvmsg(cl->fd, &mh, MSG_CMSG_CLOEXEC);

        if (n < 0)
                return n;
        for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h)) {
                size_t k;

                if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
                        continue;
                k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < k; i++) {
                        int fd;

                        memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof fd);
                        if (cl->passed_fd >= 0)
                                close(cl->passed_fd);
                        cl->passed_fd = fd;
                }
        }
        return n;
}

static int client_send(struct client *cl, const msgpack_sbuffer *sb) {
        size_t off = 0;

        while (off < sb->size) {
                ssize_t n = send(cl->fd, sb->data + off, sb->size - off, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                off += (size_t) n;
        }
        return 0;
}

/* Packs a request of type and sends it; *ret_id is its id.  Returns 0 or -errno. */
static int send_request(struct client *cl, uint32_t type, const struct proto_request *q, uint64_t *ret_id) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        int r;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        *ret_id = cl->next_id++;
        r = proto_pack_request(&pk, type, *ret_id, q);
        if (r >= 0)
                r = client_send(cl, &sb);
        msgpack_sbuffer_destroy(&sb);
        return r;
}

/* Waits for the reply to id into cl->msg.  Returns 1, or -errno. */
static int client_wait(struct client *cl, uint64_t id) {
        char buf[65536];
        int r;

        for (;;) {
                while ((r = proto_reader_next(cl->reader, &cl->msg)) > 0)
                        if (cl->msg.id == id)
                                return 1;
                if (r < 0)
                        return r;
                ssize_t n = client_recv(cl, buf, sizeof buf);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? -ETIMEDOUT : -errno;
                }
                if (n == 0)
                        return -ECONNRESET;
                r = proto_reader_feed(cl->reader, buf, (size_t) n);
                if (r < 0)
                        return r;
        }
}

/* Prints memd's ERROR reply as one line (callers that know better print their own). */
static int print_error_reply(struct client *cl, const char *what) {
        struct proto_error e = {};

        if (proto_decode_error(&cl->msg, &e) < 0)
                fprintf(stderr, "memctl: %s: memd sent a malformed error\n", what);
        else
                fprintf(stderr, "memctl: %s: %s (%s)\n", what, e.text, strerror((int) e.code));
        return EXIT_FAIL;
}

/* Connects and says HELLO.  Returns 0 or an exit code, having printed why. */
static int client_open(struct client *cl, const struct ctl *ctl) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct timeval tv = { .tv_sec = REPLY_TIMEOUT_SEC };
        struct proto_hello h = { .version = PROTO_VERSION, .role = PROTO_ROLE_CONTROL };
        msgpack_sbuffer sb;
        msgpack_packer pk;
        uint64_t id;
        int r;

        cl->fd = -1;
        cl->passed_fd = -1;
        cl->next_id = 1;
        proto_msg_init(&cl->msg);
        if (proto_reader_new(&cl->reader) < 0) {
                fprintf(stderr, "memctl: out of memory\n");
                return EXIT_FAIL;
        }
        if (strlen(ctl->socket_path) >= sizeof sa.sun_path) {
                fprintf(stderr, "memctl: socket path too long: %s\n", ctl->socket_path);
                return EXIT_USAGE;
        }
        strcpy(sa.sun_path, ctl->socket_path);
        cl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (cl->fd < 0) {
                fprintf(stderr, "memctl: cannot create a socket: %m\n");
                return EXIT_FAIL;
        }
        if (connect(cl->fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                if (errno == ENOENT)
                        fprintf(stderr, "memctl: memd is not running (no socket at %s): start it with "
                                "'systemctl start memd' or 'memd --socket %s'\n", ctl->socket_path, ctl->socket_path);
                else if (errno == ECONNREFUSED)
                        fprintf(stderr, "memctl: memd is not running (nothing answers at %s): start it with "
                                "'systemctl start memd' or 'memd --socket %s'\n", ctl->socket_path, ctl->socket_path);
                else if (errno == EACCES)
                        fprintf(stderr, "memctl: permission denied on %s: check its mode, or run as root\n",
                                ctl->socket_path);
                else
                        fprintf(stderr, "memctl: cannot connect to memd at %s: %m\n", ctl->socket_path);
                return EXIT_FAIL;
        }
        /* memd never makes us wait long; if it does, say so instead of hanging. */
        setsockopt(cl->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(cl->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);

        h.pid = (uint32_t) getpid();
        strcpy(h.comm, "memctl");
        strcpy(h.software, "memctl " MEMD_VERSION_STRING);
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        id = cl->next_id++;
        r = proto_pack_hello(&pk, id, &h);
        if (r >= 0)
                r = client_send(cl, &sb);
        msgpack_sbuffer_destroy(&sb);
        if (r >= 0)
                r = client_wait(cl, id);
        if (r < 0) {
                fprintf(stderr, "memctl: no answer from memd at %s: %s\n", ctl->socket_path, strerror(-r));
                return EXIT_FAIL;
        }
        if (cl->msg.type == PROTO_MSG_ERROR)
                return print_error_reply(cl, "memd refused the connection");
        if (cl->msg.type != PROTO_MSG_HELLO_OK) {
                fprintf(stderr, "memctl: memd answered HELLO with %s\n", proto_msg_type_name(cl->msg.type));
                return EXIT_FAIL;
        }
        return 0;
}

static int target_error(struct client *cl, uint32_t pid, const char *what);

static int parse_pid(const char *s, uint32_t *ret) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || end == s || *end || v == 0 || v > INT32_MAX || s[0] == '-' || s[0] == '+') {
                fprintf(stderr, "memctl: '%s' is not a process ID\n", s);
                return -EINVAL;
        }
        *ret = (uint32_t) v;
        return 0;
}

static int verb_status(struct ctl *ctl, int argc, char **argv) {
        struct client cl;
        struct proto_request q = {};
        struct proto_status_reply reply;
        struct proto_process *procs = NULL;
        uint64_t id;
        int r, ret;

        if (argc == 1 && parse_pid(argv[0], &q.pid) < 0)
                return EXIT_USAGE;
        /* The table needs a few figures per process; --json prints all. */
        q.brief = !q.pid && !ctl->json;
        ret = client_open(&cl, ctl);
        if (ret)
                goto out;
        ret = EXIT_FAIL;
        r = send_request(&cl, PROTO_MSG_STATUS_REQUEST, &q, &id);
        if (r >= 0)
                r = client_wait(&cl, id);
        if (r < 0) {
                fprintf(stderr, "memctl: no status from memd: %s\n", strerror(-r));
                goto out;
        }
        if (cl.msg.type == PROTO_MSG_ERROR) {
                target_error(&cl, q.pid, "status");
                goto out;
        }
        if (cl.msg.type != PROTO_MSG_STATUS_REPLY || proto_decode_status_reply(&cl.msg, &reply) < 0) {
                fprintf(stderr, "memctl: memd sent a malformed status reply\n");
                goto out;
        }
        /* One entry at a time: a thousand processes are 8 MiB of
         * proto_process, and memctl status should not fault them in. */
        procs = malloc(sizeof *procs);
        if (!procs) {
                fprintf(stderr, "memctl: out of memory\n");
                goto out;
        }
        /* proto_decode_status_reply validated every entry: these decode. */
        if (q.pid) {
                if (reply.processes.n != 1) {
                        fprintf(stderr, "memctl: process %" PRIu32 " is not attached to memd: "
                                "is it running with libmemd?\n", q.pid);
                        goto out;
                }
                proto_decode_process(&reply.processes.items[0], procs);
                output_status_one(ctl, procs);
        } else {
                output_status_begin(ctl);
                for (uint32_t i = 0; i < reply.processes.n; i++) {
                        proto_decode_process(&reply.processes.items[i], procs);
                        output_status_row(ctl, procs, i);
                }
                output_status_end(ctl);
        }
        ret = EXIT_OK;
out:
        free(procs);
        client_done(&cl);
        return ret;
}

/* Sends one request and waits for its reply into cl->msg.  Returns 0 or an
 * exit code, having printed why (ERROR replies are left to the caller). */
static int request(struct client *cl, uint32_t type, const struct proto_request *q, const char *what) {
        uint64_t id;
        int r;

        r = send_request(cl, type, q, &id);
        if (r >= 0)
                r = client_wait(cl, id);
        if (r < 0) {
                fprintf(stderr, "memctl: %s: no answer from memd: %s\n", what, strerror(-r));
                return EXIT_FAIL;
        }
        return 0;
}

/* memd's ERROR about process pid, said the way SPEC §5 wants: what happened
 * and what to do. */
static int target_error(struct client *cl, uint32_t pid, const char *what) {
        struct proto_error e = {};

        if (proto_decode_error(&cl->msg, &e) < 0) {
                fprintf(stderr, "memctl: %s: memd sent a malformed error\n", what);
                return EXIT_FAIL;
        }
        switch (e.code) {
        case ESRCH:
                /* memd says which: never attached, or gone while asked. */
                if (strcmp(e.text, "process is not attached to memd") == 0)
                        fprintf(stderr, "memctl: process %" PRIu32 " is not attached to memd: "
                                "is it running with libmemd?\n", pid);
                else
                        fprintf(stderr, "memctl: %s: process %" PRIu32 ": %s\n", what, pid, e.text);
                break;
        case EPERM:
                fprintf(stderr, "memctl: permission denied: process %" PRIu32 " belongs to another user "
                        "(run as root or as its owner)\n", pid);
                break;
        case ETIMEDOUT:
                fprintf(stderr, "memctl: %s: %s\n", what, e.text);
                break;
        default:
                fprintf(stderr, "memctl: %s: %s (%s)\n", what, e.text, strerror((int) e.code));
                break;
        }
        return EXIT_FAIL;
}

/* gc and free-os-memory run the application's reclaimers: memd gives them
 * its --request-timeout, and we give memd more than that. */
static void long_wait(struct client *cl) {
        struct timeval tv = { .tv_sec = 3600 };

        setsockopt(cl->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

/* gc and free-os-memory: one request about PID, one reply of reply_type,
 * printed by show. */
static int act_on(struct ctl *ctl, char **argv, uint32_t type, uint32_t reply_type, const char *what,
                  int (*show)(const struct ctl *ctl, uint32_t pid, const struct proto_msg *m)) {
        struct proto_request q = {};
        struct client cl;
        int ret;

        if (parse_pid(argv[0], &q.pid) < 0)
                return EXIT_USAGE;
        ret = client_open(&cl, ctl);
        if (ret)
                goto out;
        long_wait(&cl);
        ret = request(&cl, type, &q, what);
        if (ret)
                goto out;
        if (cl.msg.type == PROTO_MSG_ERROR)
                ret = target_error(&cl, q.pid, what);
        else if (cl.msg.type != reply_type || show(ctl, q.pid, &cl.msg) < 0) {
                fprintf(stderr, "memctl: %s: memd sent a malformed reply\n", what);
                ret = EXIT_FAIL;
        }
out:
        client_done(&cl);
        return ret;
}

static int show_gc(const struct ctl *ctl, uint32_t pid, const struct proto_msg *m) {
        struct proto_gc_result g;
        int r = proto_decode_gc_result(m, &g);

        if (r >= 0)
                output_gc(ctl, pid, &g);
        return r;
}

static int show_scavenge(const struct ctl *ctl, uint32_t pid, const struct proto_msg *m) {
        struct proto_scavenge_result v;
        int r = proto_decode_scavenge_result(m, &v);

        if (r >= 0)
                output_scavenge(ctl, pid, &v);
        return r;
}

static int verb_gc(struct ctl *ctl, int argc, char **argv) {
        (void) argc;
        return act_on(ctl, argv, PROTO_MSG_GC_REQUEST, PROTO_MSG_GC_RESULT, "gc", show_gc);
}

static int verb_free_os_memory(struct ctl *ctl, int argc, char **argv) {
        (void) argc;
        return act_on(ctl, argv, PROTO_MSG_SCAVENGE_REQUEST, PROTO_MSG_SCAVENGE_RESULT, "free-os-memory",
                      show_scavenge);
}

/* memctl set PID KEY=VALUE...: memd's policy for that process, until it
 * exits (like systemctl set-property --runtime).  memd checks the values:
 * one bad and none is set (exit 2). */
static int verb_set(struct ctl *ctl, int argc, char **argv) {
        struct proto_request *q = calloc(1, sizeof *q);
        struct client cl = { .fd = -1, .passed_fd = -1 };
        size_t len = 0;
        int ret = EXIT_USAGE;

        if (!q) {
                fprintf(stderr, "memctl: out of memory\n");
                return EXIT_FAIL;
        }
        if (parse_pid(argv[0], &q->pid) < 0)
                goto done;
        for (int i = 1; i < argc; i++) {
                size_t n = strlen(argv[i]);
                if (!strchr(argv[i], '=') || argv[i][0] == '=' || strchr(argv[i], '\n')) {
                        fprintf(stderr, "memctl: set: expected KEY=VALUE, not '%s' (keys: memory-limit, "
                                "idle-memory-max, idle-timeout, reclaim-on-pressure, gc-percent, profile-rate)\n", argv[i]);
                        goto done;
                }
                if (len + n + 2 > sizeof q->settings) {
                        fprintf(stderr, "memctl: set: too many settings\n");
                        goto done;
                }
                memcpy(q->settings + len, argv[i], n);
                len += n;
                q->settings[len++] = '\n';
        }
        ret = client_open(&cl, ctl);
        if (ret)
                goto out;
        ret = request(&cl, PROTO_MSG_SET_POLICY, q, "set");
        if (ret)
                goto out;
        if (cl.msg.type == PROTO_MSG_ERROR) {
                struct proto_error e = {};
                if (proto_decode_error(&cl.msg, &e) >= 0 && e.code == EINVAL) {
                        fprintf(stderr, "memctl: set: %s\n", e.text);
                        ret = EXIT_USAGE;
                } else
                        ret = target_error(&cl, q->pid, "set");
        } else if (cl.msg.type != PROTO_MSG_OK) {
                fprintf(stderr, "memctl: set: memd sent a malformed reply\n");
                ret = EXIT_FAIL;
        } else if (ctl->json) {
                printf("{\"pid\": %" PRIu32 ", \"set\": [", q->pid);
                for (int i = 1; i < argc; i++) {
                        printf("%s", i > 1 ? ", " : "");
                        output_json_string(argv[i]);
                }
                printf("]}\n");
        } else
                for (int i = 1; i < argc; i++)
                        printf("process %" PRIu32 ": %s (until it exits; memctl status %" PRIu32 " shows the policy)\n",
                               q->pid, argv[i], q->pid);
out:
        client_done(&cl);
done:
        free(q);
        return ret;
}

/* Follows events until memd goes away (exit 1) or we are interrupted. */
static int verb_trace(struct ctl *ctl, int argc, char **argv) {
        struct proto_request q = {};
        struct proto_event e;
        struct client cl;
        char buf[65536];
        uint64_t id;
        int r, ret;

        if (argc == 1 && parse_pid(argv[0], &q.pid) < 0)
                return EXIT_USAGE;
        ret = client_open(&cl, ctl);
        if (ret)
                goto out;
        id = cl.next_id;
        ret = request(&cl, PROTO_MSG_SUBSCRIBE, &q, "trace");
        if (ret)
                goto out;
        ret = EXIT_FAIL;
        if (cl.msg.type == PROTO_MSG_ERROR) {
                ret = target_error(&cl, q.pid, "trace");
                goto out;
        }
        if (cl.msg.type != PROTO_MSG_OK) {
                fprintf(stderr, "memctl: trace: memd answered SUBSCRIBE with %s\n", proto_msg_type_name(cl.msg.type));
                goto out;
        }
        if (q.pid)
                fprintf(stderr, "memctl: following gc/scvg events of process %" PRIu32 "; Ctrl-C stops\n", q.pid);
        else
                fprintf(stderr, "memctl: following gc/scvg events of every process you may see; Ctrl-C stops\n");
        setvbuf(stdout, NULL, _IOLBF, 0);
        long_wait(&cl);
        for (;;) {
                while ((r = proto_reader_next(cl.reader, &cl.msg)) > 0) {
                        if (cl.msg.type != PROTO_MSG_EVENT || cl.msg.id != id)
                                continue;
                        if (proto_decode_event(&cl.msg, &e) < 0) {
                                fprintf(stderr, "memctl: trace: memd sent a malformed event\n");
                                goto out;
                        }
                        output_event(ctl, &e);
                }
                if (r < 0) {
                        fprintf(stderr, "memctl: trace: bad data from memd: %s\n", strerror(-r));
                        goto out;
                }
                ssize_t n = recv(cl.fd, buf, sizeof buf, 0);
                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (n <= 0) {
                        fprintf(stderr, "memctl: trace: memd closed the connection%s%s\n", n < 0 ? ": " : "",
                                n < 0 ? strerror(errno) : "");
                        goto out;
                }
                r = proto_reader_feed(cl.reader, buf, (size_t) n);
                if (r < 0) {
                        fprintf(stderr, "memctl: trace: bad data from memd: %s\n", strerror(-r));
                        goto out;
                }
        }
out:
        client_done(&cl);
        return ret;
}

/* Writes all of [buf, buf + len) to fd.  Returns 0 or -errno. */
static int write_all(int fd, const void *buf, size_t len) {
        for (size_t off = 0; off < len;) {
                ssize_t n = write(fd, (const char *) buf + off, len - off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                off += (size_t) n;
        }
        return 0;
}

/* Copies the file memd passed (size bytes, from its start) to fd or mem:
 * copy_file_range or sendfile where the kernel can, else read and write. */
static int copy_passed(int from, uint64_t size, int fd, FILE *mem) {
        static char buf[1 << 16];
        struct stat st;
        uint64_t done = 0;
        bool kernel = !mem;

        if (fstat(from, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t) st.st_size != size)
                return -EBADMSG;
        while (done < size && kernel) {
                ssize_t n = copy_file_range(from, NULL, fd, NULL, size - done, 0);
                if (n < 0 && errno != EINTR) {
                        /* not two files (a pipe, a tty): sendfile; else by hand */
                        n = sendfile(fd, from, NULL, size - done);
                        if (n < 0 && errno != EINTR) {
                                if (done > 0 || (errno != EINVAL && errno != ENOSYS && errno != EXDEV))
                                        return -errno;
                                kernel = false;
                                break;
                        }
                }
                if (n == 0)
                        return -EBADMSG; /* shorter than it said */
                if (n > 0)
                        done += (uint64_t) n;
        }
        while (done < size) {
                ssize_t n = pread(from, buf, sizeof buf, (off_t) done);
                int r;

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : -EBADMSG;
                if (mem)
                        r = fwrite(buf, 1, (size_t) n, mem) == (size_t) n ? 0 : -ENOMEM;
                else
                        r = write_all(fd, buf, (size_t) n);
                if (r < 0)
                        return r;
                done += (uint64_t) n;
        }
        return 0;
}

/* Receives a formatted profile (PROFILE_DATA parts, id, or one with the
 * file passed) and writes it to fd, or to mem.  Returns 0 or an exit code,
 * having printed why. */
static int receive_profile(struct client *cl, uint64_t id, uint32_t pid, int fd, FILE *mem) {
        struct proto_profile_data d;
        uint32_t part = 0;
        int r;

        for (;;) {
                r = client_wait(cl, id);
                if (r < 0) {
                        fprintf(stderr, "memctl: heap: no answer from memd: %s\n", strerror(-r));
                        return EXIT_FAIL;
                }
                if (cl->msg.type == PROTO_MSG_ERROR)
                        return target_error(cl, pid, "heap");
                if (cl->msg.type != PROTO_MSG_PROFILE_DATA || proto_decode_profile_data(&cl->msg, &d) < 0 ||
                    d.part != part || (d.fd && cl->passed_fd < 0)) {
                        fprintf(stderr, "memctl: heap: memd sent a malformed profile\n");
                        return EXIT_FAIL;
                }
                if (d.fd) {
                        r = copy_passed(cl->passed_fd, d.size, fd, mem);
                        close(cl->passed_fd);
                        cl->passed_fd = -1;
                } else if (mem)
                        r = d.data.len && fwrite(d.data.ptr, 1, d.data.len, mem) != d.data.len ? -ENOMEM : 0;
                else
                        r = write_all(fd, d.data.ptr, d.data.len);
                if (r == -ENOMEM) {
                        fprintf(stderr, "memctl: out of memory\n");
                        return EXIT_FAIL;
                }
                if (r == -EBADMSG) {
                        fprintf(stderr, "memctl: heap: memd passed a malformed profile file\n");
                        return EXIT_FAIL;
                }
                if (r < 0) {
                        fprintf(stderr, "memctl: heap: cannot write the profile: %s\n", strerror(-r));
                        return EXIT_FAIL;
                }
                if (d.final)
                        return 0;
                part++;
        }
}

/* memctl heap PID [-o FILE] [--format proto|text|folded] [--debug=1] */
static int verb_heap(struct ctl *ctl, int argc, char **argv) {
        struct proto_request q = { .format = PROTO_PROFILE_PPROF, .fd = true };
        const char *out = NULL;
        struct client cl;
        uint64_t id;
        int fd = STDOUT_FILENO, r, ret;
        bool created = false;

        if (parse_pid(argv[0], &q.pid) < 0)
                return EXIT_USAGE;
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *v = NULL;

                if (!strcmp(a, "-o") && i + 1 < argc)
                        out = argv[++i];
                else if (!strncmp(a, "--format=", 9) || (!strcmp(a, "--format") && i + 1 < argc)) {
                        v = a[8] == '=' ? a + 9 : argv[++i];
                        if (!strcmp(v, "proto"))
                                q.format = PROTO_PROFILE_PPROF;
                        else if (!strcmp(v, "text"))
                                q.format = PROTO_PROFILE_TEXT;
                        else if (!strcmp(v, "folded"))
                                q.format = PROTO_PROFILE_FOLDED;
                        else {
                                fprintf(stderr, "memctl: heap: --format: expected proto, text or folded, not '%s'\n", v);
                                return EXIT_USAGE;
                        }
                } else if (!strcmp(a, "--debug=1"))
                        q.format = PROTO_PROFILE_TEXT; /* /debug/pprof/heap?debug=1 */
                else {
                        fprintf(stderr, "memctl: usage: memctl heap PID [-o FILE] [--format proto|text|folded] [--debug=1]\n");
                        return EXIT_USAGE;
                }
        }
        if (!out && q.format == PROTO_PROFILE_PPROF && isatty(STDOUT_FILENO)) {
                fprintf(stderr, "memctl: heap: the pprof profile is gzipped binary: write it with -o FILE "
                        "(or ask for --format text)\n");
                return EXIT_USAGE;
        }
        ret = client_open(&cl, ctl);
        if (ret)
                goto out;
        ret = EXIT_FAIL;
        if (out) {
                fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                if (fd < 0) {
                        fprintf(stderr, "memctl: heap: cannot create %s: %m\n", out);
                        goto out;
                }
                created = true;
        }
        r = send_request(&cl, PROTO_MSG_PROFILE_REQUEST, &q, &id);
        if (r < 0) {
                fprintf(stderr, "memctl: heap: cannot ask memd: %s\n", strerror(-r));
                goto out;
        }
        ret = receive_profile(&cl, id, q.pid, fd, NULL);
        if (ret == 0 && out && !ctl->json)
                fprintf(stderr, "memctl: heap profile of process %" PRIu32 " written to %s\n", q.pid, out);
out:
        if (created && close(fd) < 0 && ret == 0) {
                fprintf(stderr, "memctl: heap: cannot write %s: %m\n", out);
                ret = EXIT_FAIL;
        }
        if (created && ret != 0)
                unlink(out); /* no half profile left behind */
        client_done(&cl);
        return ret;
}

/* The samples format (docs/protocol.md, PROFILE_REQUEST format 4) parsed
 * for top_print: one allocation holds the text, frames and samples. */
struct samples {
        char *text;
        struct top_sample *v;
        struct top_frame *frames;
        size_t n;
};

static void samples_free(struct samples *s) {
        free(s->text);
        free(s->v);
        free(s->frames);
}

static int samples_parse(char *text, size_t len, struct samples *ret) {
        size_t lines = 0, fields = 0, nf = 0;

        *ret = (struct samples) { .text = text };
        for (size_t i = 0; i < len; i++) {
                lines += text[i] == '\n';
                fields += text[i] == '\t';
        }
        ret->v = calloc(lines ? lines : 1, sizeof(*ret->v));
        ret->frames = calloc(fields ? fields : 1, sizeof(*ret->frames));
        if (!ret->v || !ret->frames)
                return -ENOMEM;
        for (char *line = text, *eol; line < text + len && (eol = memchr(line, '\n', (size_t) (text + len - line)));
             line = eol + 1) {
                struct top_sample *sm = &ret->v[ret->n];
                char *f, *tab;

                *eol = 0;
                if (sscanf(line, "%" SCNd64 " %" SCNd64 " %" SCNd64 " %" SCNd64, &sm->values[0], &sm->values[1],
                           &sm->values[2], &sm->values[3]) != 4)
                        return -EBADMSG;
                sm->frames = &ret->frames[nf];
                for (f = strchr(line, '\t'); f; f = tab) {
                        struct top_frame *fr = &ret->frames[nf];

                        *f++ = 0;
                        tab = strchr(f, '\t');
                        if (tab)
                                *tab = 0;
                        if (f[0] == 0 || f[1] != ':')
                                return -EBADMSG;
                        if (f[0] == 'f' || f[0] == 'i') {
                                fr->name = f + 2;
                                fr->inlined = f[0] == 'i';
                        } else if (f[0] == 'm')
                                fr->objfile = f + 2;
                        else if (f[0] != 'u')
                                return -EBADMSG;
                        nf++;
                        sm->depth++;
                }
                ret->n++;
        }
        return 0;
}

/* memctl top PID [-n N] [--cum] [--sample inuse_space|inuse_objects|alloc_space|alloc_objects] */
static int verb_top(struct ctl *ctl, int argc, char **argv) {
        struct proto_request q = { .format = PROTO_PROFILE_SAMPLES, .fd = true };
        struct top_options opt = TOP_OPTIONS_INIT;
        struct samples sm = {};
        struct client cl;
        char *text = NULL;
        size_t len = 0;
        uint64_t id;
        FILE *mem;
        int r, ret;

        if (parse_pid(argv[0], &q.pid) < 0)
                return EXIT_USAGE;
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                char *end;

                if (!strcmp(a, "--cum"))
                        opt.cum = true;
                else if (!strcmp(a, "-n") && i + 1 < argc) {
                        long n = strtol(argv[++i], &end, 10);
                        if (*end || n <= 0 || n > INT32_MAX) {
                                fprintf(stderr, "memctl: top: -n: expected a count > 0, not '%s'\n", argv[i]);
                                return EXIT_USAGE;
                        }
                        opt.node_count = (int) n;
                } else if ((!strcmp(a, "--sample") || !strcmp(a, "--sample_index")) && i + 1 < argc) {
                        opt.sample_index = top_sample_index_parse(argv[++i]);
                        if (opt.sample_index < 0) {
                                fprintf(stderr, "memctl: top: --sample: expected inuse_space, inuse_objects, "
                                        "alloc_space or alloc_objects, not '%s'\n", argv[i]);
                                return EXIT_USAGE;
                        }
                } else {
                        fprintf(stderr, "memctl: usage: memctl top PID [-n N] [--cum] [--sample "
                                "inuse_space|inuse_objects|alloc_space|alloc_objects]\n");
                        return EXIT_USAGE;
                }
        }
        ret = client_open(&cl, ctl);
        if (ret)
                goto out;
        ret = EXIT_FAIL;
        mem = open_memstream(&text, &len);
        if (!mem) {
                fprintf(stderr, "memctl: out of memory\n");
                goto out;
        }
        r = send_request(&cl, PROTO_MSG_PROFILE_REQUEST, &q, &id);
        if (r < 0) {
                fprintf(stderr, "memctl: top: cannot ask memd: %s\n", strerror(-r));
                fclose(mem);
                goto out;
        }
        fflush(mem);
        ret = receive_profile(&cl, id, q.pid, -1, mem);
        if (fclose(mem) != 0 && ret == 0)
                ret = EXIT_FAIL;
        if (ret)
                goto out;
        ret = EXIT_FAIL;
        r = samples_parse(text, len, &sm);
        text = NULL; /* sm owns it */
        if (r < 0) {
                fprintf(stderr, "memctl: top: memd sent malformed samples\n");
                goto out;
        }
        r = top_print(stdout, sm.v, sm.n, &opt);
        if (r < 0) {
                fprintf(stderr, "memctl: top: %s\n", strerror(-r));
                goto out;
        }
        ret = EXIT_OK;
out:
        free(text);
        samples_free(&sm);
        client_done(&cl);
        return ret;
}

#define ARGS_MAX 64u

const struct verb verbs[] = {
        { "status", 0, 1, verb_status, "[PID]", "attached processes, or everything about one" },
        { "free-os-memory", 1, 1, verb_free_os_memory, "PID", "forced GC + return free memory to the OS" },
        { "gc", 1, 1, verb_gc, "PID", "forced GC cycle (the process's reclaimers)" },
        { "heap", 1, ARGS_MAX, verb_heap, "PID [-o FILE] [--format F]", "heap profile: proto (pprof, default), text, folded" },
        { "top", 1, ARGS_MAX, verb_top, "PID [-n N] [--cum] [--sample S]", "pprof's top table of its heap profile" },
        { "set", 2, ARGS_MAX, verb_set, "PID KEY=VALUE...", "runtime policy change, until the process exits" },
        { "trace", 0, 1, verb_trace, "[PID]", "follow gc/scvg events live" },
        {}
};

const struct verb *verb_find(const char *name) {
        for (const struct verb *v = verbs; v->name; v++)
                if (strcmp(v->name, name) == 0)
                        return v;
        return NULL;
}
