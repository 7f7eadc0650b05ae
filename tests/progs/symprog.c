/* symprog.c - known call sites for memd's symbolizer tests (tests/unit/test-memd-symbolize.c): prints their return addresses and source lines, then waits. */

/*
 * Built -g -O2 without -rdynamic (so .symtab is the only table naming the
 * static and most global functions), as PIE, non-PIE and stripped.
 * Each site returns the return address of a call it makes (the caller's
 * PC after the call), and the line of that call.  Output, one per site:
 *
 *   site NAME 0xRET 0xFUNC LINE[,LINE...]
 *
 * FUNC is the address of the (physical) function holding the call.
 * NAME: static (static_site), global (global_site), inline (inner_inline
 * inlined in middle_inline inlined in inline_site: three lines, innermost
 * first), lib (lib_static_site in libsymtestlib.so), asm (asm_site: no
 * symbol size, x86-64 only; line 0).  Then "ready", and the
 * program waits until its stdin reaches EOF.
 */

#include <stdio.h>
#include <unistd.h>

#include "symprog.h"

void *symlib_site(int *line, void **func);

/* Returns its own return address: a PC just after the call in its caller. */
SYM_NOIPA void *ret_addr(void) {
        void *r = __builtin_return_address(0);
        __asm__ volatile("" : : "r"(r) : "memory");
        return r;
}

SYM_NOIPA static void *static_site(int *line) {
        void *r = ret_addr(); *line = __LINE__;
        sym_sink(r);
        return r;
}

SYM_NOIPA void *global_site(int *line) {
        void *r = ret_addr(); *line = __LINE__;
        sym_sink(r);
        return r;
}

static inline __attribute__((always_inline)) void *inner_inline(int *lines) {
        void *r = ret_addr(); lines[0] = __LINE__;
        sym_sink(r);
        return r;
}

static inline __attribute__((always_inline)) void *middle_inline(int *lines) {
        void *r = inner_inline(lines); lines[1] = __LINE__;
        sym_sink(r);
        return r;
}

SYM_NOIPA void *inline_site(int *lines) {
        void *r = middle_inline(lines); lines[2] = __LINE__;
        sym_sink(r);
        return r;
}

#if defined(__x86_64__)
/* A function without a size, as hand-written assembly often is: its
 * symbol has st_size 0.  It calls ret_addr and returns what it returns. */
void *asm_site(void);
__asm__(".text\n"
        ".globl asm_site\n"
        ".type asm_site, @function\n"
        "asm_site:\n"
        "        push %rbx\n"
        "        call ret_addr\n"
        "        pop %rbx\n"
        "        ret\n");
#endif

int main(void) {
        int l_static, l_global, l_inline[3], l_lib;
        void *r_static = static_site(&l_static);
        void *r_global = global_site(&l_global);
        void *r_inline = inline_site(l_inline);
        void *f_lib;
        void *r_lib = symlib_site(&l_lib, &f_lib);
        char buf[256];

        printf("site static %p %p %d\n", r_static, (void *) static_site, l_static);
        printf("site global %p %p %d\n", r_global, (void *) global_site, l_global);
        printf("site inline %p %p %d,%d,%d\n", r_inline, (void *) inline_site, l_inline[0], l_inline[1],
               l_inline[2]);
        printf("site lib %p %p %d\n", r_lib, f_lib, l_lib);
#if defined(__x86_64__)
        printf("site asm %p %p 0\n", asm_site(), (void *) asm_site);
#endif
        printf("ready\n");
        fflush(stdout);
        while (read(STDIN_FILENO, buf, sizeof(buf)) > 0)
                ;
        return 0;
}
