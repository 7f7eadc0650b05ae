/* fuzz-input.h - the layout of one fuzz-memd input: who the two connections are, where the payload is cut, which connection gets each piece (fuzz-memd.c reads it, make-corpus.c writes it). */
#ifndef MEMD_FUZZ_INPUT_H
#define MEMD_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/*
 *   byte 0     connection A: bits 0-1 its SO_PEERCRED pid (enum fuzz_pid),
 *              bit 2 uid 1000 instead of 0; connection B: bits 3-5 the same
 *   byte 1     bit k (k < FUZZ_CHUNKS): chunk k goes to B instead of A
 *   bytes 2-7  FUZZ_CHUNKS - 1 little-endian uint16: where the payload is
 *              cut (each clamped to the payload's length, then sorted)
 *   the rest   the payload: bytes as peers would write them
 *
 * An input shorter than the header reads as flags 0 and an empty payload.
 */
#define FUZZ_HEADER_BYTES 8
#define FUZZ_CHUNKS 4
#define FUZZ_CONN_BITS 3
#define FUZZ_UID_OTHER 1000

enum fuzz_pid {
        FUZZ_PID_SELF,  /* getpid(): attaches with a pidfd */
        FUZZ_PID_INIT,  /* 1: another live process (attaches; STATUS_REQUEST can name it) */
        FUZZ_PID_ZERO,  /* 0: pidfd_open() refuses it, exit noticed by EOF only */
        FUZZ_PID_GONE,  /* above PID_MAX_LIMIT: registry_attach() says ESRCH */
};
#define FUZZ_PID_GONE_VALUE 0x3fffffff

/* One connection's bits of byte 0. */
static inline uint8_t fuzz_conn_bits(enum fuzz_pid pid, int other_uid) {
        return (uint8_t) (pid | (other_uid ? 4 : 0));
}

/* Writes the header: a, b from fuzz_conn_bits(), to_b a mask of chunks. */
static inline void fuzz_header_pack(uint8_t hdr[FUZZ_HEADER_BYTES], uint8_t a, uint8_t b, uint8_t to_b,
                                    const uint16_t cuts[FUZZ_CHUNKS - 1]) {
        hdr[0] = (uint8_t) (a | b << FUZZ_CONN_BITS);
        hdr[1] = to_b;
        for (int i = 0; i < FUZZ_CHUNKS - 1; i++) {
                hdr[2 + 2 * i] = (uint8_t) cuts[i];
                hdr[3 + 2 * i] = (uint8_t) (cuts[i] >> 8);
        }
}

#endif
