/* unit.h - the one main() every Check suite shares: run it, turn the result into an exit code meson reads. */
#ifndef MEMD_TEST_UNIT_H
#define MEMD_TEST_UNIT_H

#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

/* needs_fork: the suite relies on a fresh process per test (global tables);
 * with CK_FORK=no it is a skip (77), never a pass. */
static inline int unit_main(Suite *suite, const char *name, bool needs_fork) {
        SRunner *sr = srunner_create(suite);
        int failed;

        if (needs_fork && srunner_fork_status(sr) == CK_NOFORK) {
                fprintf(stderr, "%s needs Check's fork mode (CK_FORK=no is set)\n", name);
                srunner_free(sr);
                return 77;
        }
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
