/* main.c - memd, the memory daemon: options, the event loop, sd_notify and signals. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <msgpack.h>
#include <systemd/sd-daemon.h>

#include "config.h"
#include "daemon.h"

#define DEFAULT_SOCKET "/run/memd/memd.sock"

int64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void notify_status(struct server *s) {
        unsigned n = s->n_processes - s->n_exited;

        sd_notifyf(0, "STATUS=%u process%s", n, n == 1 ? "" : "es");
}

static void help(void) {
        printf("memd [--socket PATH] [--config-dir DIR] [--user] [--log-target auto|journal|stderr]\n"
               "     [--version] [--help]\n\n"
               "The memory daemon: processes running libmemd attach to it and report their\n"
               "MemStats; memctl asks it about them.  Runs in the foreground.\n\n"
               "  --socket PATH       listen on PATH (default " DEFAULT_SOCKET ",\n"
               "                      with --user $XDG_RUNTIME_DIR/memd/memd.sock);\n"
               "                      a socket passed by systemd wins\n"
               "  --config-dir DIR    configuration: DIR/memd.conf, DIR/policy.d/*.policy\n"
               "                      (default /etc/memd; docs/config.md)\n"
               "  --user              per-user daemon under $XDG_RUNTIME_DIR\n"
               "  --log-target T      auto (journal under systemd, else stderr), journal, stderr\n"
               "  --request-timeout S seconds a process has to answer gc/free-os-memory\n"
               "                      (default 10)\n"
               "  --keep-exited S     seconds the last profile of an exited process is kept\n"
               "                      for memctl heap (default 600)\n");
}

/* SIGHUP reloads the configuration (SPEC §4): bad files are logged and
 * skipped, every process's policy is resolved again. */
static void on_reload(struct ev_loop *loop, ev_signal *w, int revents) {
        (void) loop;
        (void) revents;
        sd_notify(0, "RELOADING=1");
        log_info("SIGHUP: reloading the configuration");
        policy_load(w->data);
        sd_notify(0, "READY=1");
}

static void on_stop(struct ev_loop *loop, ev_signal *w, int revents) {
        (void) revents;
        sd_notify(0, "STOPPING=1");
        log_info("signal %d, stopping", w->signum);
        ev_break(loop, EVBREAK_ALL);
}

static void on_watchdog(struct ev_loop *loop, ev_timer *w, int revents) {
        (void) loop;
        (void) w;
        (void) revents;
        sd_notify(0, "WATCHDOG=1");
}

int main(int argc, char **argv) {
        enum { ARG_SOCKET = 0x100, ARG_CONFIG_DIR, ARG_USER, ARG_LOG_TARGET, ARG_REQUEST_TIMEOUT, ARG_KEEP_EXITED };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "config-dir", required_argument, NULL, ARG_CONFIG_DIR },
                { "user", no_argument, NULL, ARG_USER },
                { "log-target", required_argument, NULL, ARG_LOG_TARGET },
                { "request-timeout", required_argument, NULL, ARG_REQUEST_TIMEOUT },
                { "keep-exited", required_argument, NULL, ARG_KEEP_EXITED },
                {}
        };
        enum log_target target = LOG_TARGET_AUTO;
        const char *socket_path = NULL;
        char user_path[4096];
        bool user = false;
        struct server s = { .listen_fd = -1, .request_timeout_s = REQUEST_TIMEOUT_S, .keep_exited_s = KEEP_EXITED_S,
                             .conn_grace_s = CONN_GRACE_S };
        struct rlimit nofile;
        struct ev_loop *loop;
        ev_signal sigterm, sigint, sighup;
        ev_timer watchdog;
        uint64_t watchdog_usec = 0;
        int c;

        while ((c = getopt_long(argc, argv, "hV", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case 'V':
                        printf("memd %s (libev %d.%d, msgpack-c %s)\n", MEMD_VERSION_STRING,
                               ev_version_major(), ev_version_minor(), msgpack_version());
                        return 0;
                case ARG_SOCKET:
                        socket_path = optarg;
                        break;
                case ARG_CONFIG_DIR:
                        s.config_dir = optarg;
                        break;
                case ARG_USER:
                        user = true;
                        break;
                case ARG_LOG_TARGET:
                        if (strcmp(optarg, "auto") == 0)
                                target = LOG_TARGET_AUTO;
                        else if (strcmp(optarg, "journal") == 0)
                                target = LOG_TARGET_JOURNAL;
                        else if (strcmp(optarg, "stderr") == 0)
                                target = LOG_TARGET_STDERR;
                        else {
                                fprintf(stderr, "memd: --log-target: expected auto, journal or stderr, not '%s'\n", optarg);
                                return 2;
                        }
                        break;
                case ARG_REQUEST_TIMEOUT: {
                        char *end;
                        double t = strtod(optarg, &end);
                        if (end == optarg || *end || !(t > 0 && t <= 3600)) {
                                fprintf(stderr, "memd: --request-timeout: expected seconds in (0, 3600], not '%s'\n", optarg);
                                return 2;
                        }
                        s.request_timeout_s = t;
                        break;
                }
                case ARG_KEEP_EXITED: {
                        char *end;
                        double t = strtod(optarg, &end);
                        if (end == optarg || *end || !(t >= 0 && t <= 7 * 86400)) {
                                fprintf(stderr, "memd: --keep-exited: expected seconds in [0, 604800], not '%s'\n", optarg);
                                return 2;
                        }
                        s.keep_exited_s = t;
                        break;
                }
                default:
                        return 2;
                }
        if (optind < argc) {
                fprintf(stderr, "memd: unexpected argument '%s'; see memd --help\n", argv[optind]);
                return 2;
        }
        log_setup(target);

        if (!socket_path && user) {
                const char *rt = getenv("XDG_RUNTIME_DIR");

                if (!rt || rt[0] != '/') {
                        log_msg(LOG_ERR, "--user needs $XDG_RUNTIME_DIR (or --socket PATH)");
                        return 1;
                }
                snprintf(user_path, sizeof user_path, "%s/memd/memd.sock", rt);
                socket_path = user_path;
        }
        if (!socket_path)
                socket_path = DEFAULT_SOCKET;

        /* Two descriptors per attached process (its connection and its
         * pidfd): take the hard limit, as systemd leaves the soft one at 1024. */
        if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
                if (nofile.rlim_cur < nofile.rlim_max) {
                        nofile.rlim_cur = nofile.rlim_max;
                        setrlimit(RLIMIT_NOFILE, &nofile);
                }
                if (nofile.rlim_cur < 4096)
                        log_warning("only %llu file descriptors (RLIMIT_NOFILE): about %llu processes can attach; "
                                    "raise LimitNOFILE=", (unsigned long long) nofile.rlim_cur,
                                    (unsigned long long) (nofile.rlim_cur / 2));
        }

        /* A peer that vanished mid-write must not kill us. */
        signal(SIGPIPE, SIG_IGN);
        if (server_open(&s, socket_path) < 0)
                return 1;

        loop = ev_default_loop(EVFLAG_AUTO);
        if (!loop) {
                log_msg(LOG_ERR, "cannot initialize libev");
                server_stop(&s);
                return 1;
        }
        /* A thousand agents report once a second each: take their readiness
         * in batches (10 ms at most) rather than a wakeup per message. */
        s.collect_s = 0.01;
        ev_set_io_collect_interval(loop, s.collect_s);
        server_start(&s, loop);
        policy_load(&s);
        pressure_start(&s);
        ev_signal_init(&sigterm, on_stop, SIGTERM);
        ev_signal_start(loop, &sigterm);
        ev_signal_init(&sigint, on_stop, SIGINT);
        ev_signal_start(loop, &sigint);
        ev_signal_init(&sighup, on_reload, SIGHUP);
        sighup.data = &s;
        ev_signal_start(loop, &sighup);
        if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) {
                ev_timer_init(&watchdog, on_watchdog, 0., (double) watchdog_usec / 2e6);
                ev_timer_again(loop, &watchdog);
        }

        sd_notify(0, "READY=1");
        notify_status(&s);
        log_info("memd %s ready", MEMD_VERSION_STRING);
        ev_run(loop, 0);

        server_stop(&s);
        ev_loop_destroy(loop);
        log_info("stopped");
        return 0;
}
