/*
 * Support for hetsched's tests: a failing allocator and file helpers.
 * Include after <cmocka.h>'s prerequisites (stdarg, stddef, setjmp, stdint).
 */
#ifndef HS_TESTUTIL_H
#define HS_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Route hetsched's and jansson's allocations through a counting allocator
 * that fails the allocation numbered n (0-based) and every one after it;
 * n < 0 never fails.
 */
void hs_test_alloc_install(long fail_at);
/* Back to malloc/free. */
void hs_test_alloc_uninstall(void);
/* Allocations made through the counting allocator and not yet freed. */
long hs_test_alloc_live(void);
/* Allocations attempted since install. */
long hs_test_alloc_count(void);

/* Read a whole file; NULL if it cannot be read. Free with free(). */
char *hs_test_read_file(const char *path);
/* Whether a path exists. */
bool hs_test_exists(const char *path);

#endif /* HS_TESTUTIL_H */
