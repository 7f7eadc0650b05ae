/* fake-agent.c - a minimal memd agent for the daemon's tests: HELLO (role agent), one MEMSTATS with known figures, then sleeps until killed.
 *
 * fake-agent SOCKET [--exit-keeping-socket]: with the option, the agent
 * forks a child that keeps the connection open and prints "holder PID", then
 * exits: memd must notice the exit by its pidfd, not by EOF. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"

/* The figures the integration test checks (tests/integration/test-memd-status.sh). */
#define FAKE_HEAP_ALLOC    123456789ull
#define FAKE_HEAP_INUSE    (200ull << 20)
#define FAKE_HEAP_IDLE     (100ull << 20)
#define FAKE_HEAP_RELEASED (50ull << 20)
#define FAKE_RSS           (3ull << 29)  /* 1.5 GiB */

static int send_buf(int fd, msgpack_sbuffer *sb) {
        size_t off = 0;

        while (off < sb->size) {
                ssize_t n = send(fd, sb->data + off, sb->size - off, MSG_NOSIGNAL);
                if (n < 0 && errno != EINTR)
                        return -errno;
                if (n > 0)
                        off += (size_t) n;
        }
        sb->size = 0;
        return 0;
}

int main(int argc, char **argv) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct proto_hello h = { .version = PROTO_VERSION, .role = PROTO_ROLE_AGENT };
        struct memd_memstats *s = calloc(1, sizeof *s);
        struct proto_reader *r;
        struct proto_msg m;
        msgpack_sbuffer sb;
        msgpack_packer pk;
        struct timespec ts;
        char buf[4096];
        int fd, k = 0;

        bool exit_keeping = argc == 3 && strcmp(argv[2], "--exit-keeping-socket") == 0;

        if ((argc != 2 && !exit_keeping) || strlen(argv[1]) >= sizeof sa.sun_path || !s) {
                fprintf(stderr, "usage: fake-agent SOCKET\n");
                return 2;
        }
        strcpy(sa.sun_path, argv[1]);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                fprintf(stderr, "fake-agent: connect %s: %m\n", argv[1]);
                return 1;
        }
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        h.pid = (uint32_t) getpid();
        strcpy(h.comm, "fake-agent");
        strcpy(h.software, "fake-agent 1");
        if (proto_pack_hello(&pk, 1, &h) < 0 || send_buf(fd, &sb) < 0) {
                fprintf(stderr, "fake-agent: cannot send HELLO\n");
                return 1;
        }

        if (proto_reader_new(&r) < 0)
                return 1;
        proto_msg_init(&m);
        while (k == 0) {
                ssize_t n = recv(fd, buf, sizeof buf, 0);
                if (n <= 0 || proto_reader_feed(r, buf, (size_t) n) < 0) {
                        fprintf(stderr, "fake-agent: no HELLO_OK\n");
                        return 1;
                }
                k = proto_reader_next(r, &m);
                if (k < 0)
                        return 1;
        }
        if (m.type != PROTO_MSG_HELLO_OK) {
                fprintf(stderr, "fake-agent: memd answered %s\n", proto_msg_type_name(m.type));
                return 1;
        }

        s->HeapAlloc = s->Alloc = FAKE_HEAP_ALLOC;
        s->HeapInuse = FAKE_HEAP_INUSE;
        s->HeapIdle = FAKE_HEAP_IDLE;
        s->HeapReleased = FAKE_HEAP_RELEASED;
        s->HeapSys = FAKE_HEAP_INUSE + FAKE_HEAP_IDLE;
        s->RSS = FAKE_RSS;
        s->Mallocs = 1000;
        s->Frees = 400;
        s->HeapObjects = 600;
        s->Threads = 1;
        clock_gettime(CLOCK_REALTIME, &ts);
        if (proto_pack_memstats(&pk, 0, 0, (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec, s, true) < 0 ||
            send_buf(fd, &sb) < 0) {
                fprintf(stderr, "fake-agent: cannot send MEMSTATS\n");
                return 1;
        }
        printf("ready %d\n", (int) getpid());
        fflush(stdout);
        if (exit_keeping) {
                pid_t child = fork();

                if (child < 0)
                        return 1;
                if (child > 0) {
                        printf("holder %d\n", (int) child);
                        return 0;
                }
        }
        for (;;)
                pause();
}
