// symprog-cxx.cc - C++ call sites (namespaces, templates, a method) for memd's symbolizer tests: demangled names.  Same output as symprog.c (FUNC 0 for the method).

#include <cstdio>
#include <unistd.h>

#include "symprog.h"

SYM_NOIPA void *ret_addr() {
        void *r = __builtin_return_address(0);
        __asm__ volatile("" : : "r"(r) : "memory");
        return r;
}

namespace memd_test {

template <typename T> struct Box {
        T v;
        SYM_NOIPA void *get(int *line) const {
                void *r = ret_addr(); *line = __LINE__;
                sym_sink(r);
                return r;
        }
};

template <typename T> SYM_NOIPA void *twice(T x, int *line) {
        (void) x;
        void *r = ret_addr(); *line = __LINE__;
        sym_sink(r);
        return r;
}

namespace inner {
SYM_NOIPA void *free_fn(int, const char *, int *line) {
        void *r = ret_addr(); *line = __LINE__;
        sym_sink(r);
        return r;
}
} // namespace inner

} // namespace memd_test

int main() {
        int l_method, l_template, l_ns;
        memd_test::Box<int> box{7};
        void *r_method = box.get(&l_method);
        void *r_template = memd_test::twice<long>(3, &l_template);
        void *r_ns = memd_test::inner::free_fn(1, "x", &l_ns);
        char buf[256];

        // A member function's address as a plain pointer: GCC's bound member
        // function extension is not needed, the symbol is what matters.
        std::printf("site method %p %p %d\n", r_method, (void *) 0, l_method);
        std::printf("site template %p %p %d\n", r_template, (void *) &memd_test::twice<long>, l_template);
        std::printf("site namespace %p %p %d\n", r_ns, (void *) &memd_test::inner::free_fn, l_ns);
        std::printf("ready\n");
        std::fflush(stdout);
        while (read(STDIN_FILENO, buf, sizeof(buf)) > 0)
                ;
        return 0;
}
