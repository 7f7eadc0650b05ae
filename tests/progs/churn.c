/* churn.c - a steady workload: the same amount allocated and freed again and again, for memd's idle-memory policy (it must not be scavenged over and over). */

/*
 * usage: churn [-m MIB] [-p PERIOD_MS] [-d SECONDS]
 * Each period: MIB MiB in 4 KiB blocks allocated and touched, then all freed,
 * then it sleeps the rest of the period.  The last block of the first round
 * stays: it pins the top of the heap, so the allocator cannot
 * give the freed space back by itself (glibc trims a free top) and the
 * memory stays idle between rounds, as in a real program.  After the first round it prints
 * "waiting pid=N"; at the end "done rounds=N".  The heap it holds swings
 * between MIB and 0 each period: idle memory that is about to be used again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
        size_t mib = 64, n;
        double period = 0.5, seconds = 20, end;
        unsigned long rounds = 0;
        void **blocks, *pin = NULL;
        int c;

        while ((c = getopt(argc, argv, "m:p:d:")) != -1)
                switch (c) {
                case 'm': mib = strtoul(optarg, NULL, 10); break;
                case 'p': period = strtod(optarg, NULL) / 1000; break;
                case 'd': seconds = strtod(optarg, NULL); break;
                default:
                        fprintf(stderr, "usage: churn [-m MIB] [-p PERIOD_MS] [-d SECONDS]\n");
                        return 2;
                }
        n = mib * 256;
        blocks = calloc(n, sizeof(*blocks));
        if (!blocks)
                return 1;
        setvbuf(stdout, NULL, _IONBF, 0);
        end = now() + seconds;
        while (now() < end) {
                double t0 = now(), rest;

                for (size_t i = 0; i < n; i++) {
                        blocks[i] = malloc(4000);
                        if (blocks[i])
                                memset(blocks[i], (int) i, 4000);
                }
                if (!pin) { /* the first round's last block, the highest */
                        pin = blocks[n - 1];
                        blocks[n - 1] = NULL;
                }
                for (size_t i = 0; i < n; i++)
                        free(blocks[i]);
                if (!rounds++)
                        printf("waiting pid=%d\n", (int) getpid());
                rest = period - (now() - t0);
                if (rest > 0)
                        usleep((useconds_t) (rest * 1e6));
        }
        printf("done rounds=%lu\n", rounds);
        free(blocks);
        free(pin);
        return 0;
}
