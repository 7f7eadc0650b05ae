/* symlib.c - a shared library with known call sites for memd's symbolizer tests (symprog.c calls it): a static function and an exported one. */

#include "symprog.h"

/* Returns its own return address: a PC just after the call in its caller. */
SYM_NOIPA static void *lib_ret_addr(void) {
        void *r = __builtin_return_address(0);
        __asm__ volatile("" : : "r"(r) : "memory");
        return r;
}

SYM_NOIPA static void *lib_static_site(int *line) {
        void *r = lib_ret_addr(); *line = __LINE__;
        sym_sink(r);
        return r;
}

SYM_NOIPA void *symlib_site(int *line, void **func) {
        void *r = lib_static_site(line);
        *func = (void *) lib_static_site;
        sym_sink(r);
        return r;
}
