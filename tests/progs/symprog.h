/* symprog.h - shared by symprog.c, symprog-cxx.cc and symlib.c: keeping call sites where the source says they are. */
#ifndef MEMD_SYMPROG_H
#define MEMD_SYMPROG_H

/* Neither inlined, cloned (.constprop, .isra) nor analysed across: the
 * function stays one symbol and its calls stay calls.  (clang has no
 * noipa, and no clones with other names either.) */
#if defined(__has_attribute) && __has_attribute(noipa)
#define SYM_NOIPA __attribute__((noipa, noinline, used))
#else
#define SYM_NOIPA __attribute__((noinline, used))
#endif

/* Makes r used after the call, so the call is never a tail call. */
static inline __attribute__((always_inline)) void sym_sink(void *r) {
        __asm__ volatile("" : : "r"(r) : "memory");
}

#endif
