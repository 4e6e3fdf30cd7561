/* Support for hetsched's tests. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "hetsched.h"
#include "testutil.h"

/* Executors allocate and free on their worker threads too: the counts
 * are atomic, or a race would show as a leak or a double free. */
static long fail_at = -1;
static _Atomic long attempts;
static _Atomic long live;

static void *counting_malloc(size_t size)
{
	long n = attempts++;
	void *p;

	if (fail_at >= 0 && n >= fail_at)
		return NULL;
	p = malloc(size);
	if (p)
		live++;
	return p;
}

static void counting_free(void *p)
{
	if (p) {
		live--;
		free(p);
	}
}

void hs_test_alloc_install(long n)
{
	fail_at = n;
	attempts = 0;
	live = 0;
	hs_set_alloc_funcs(counting_malloc, counting_free);
}

void hs_test_alloc_uninstall(void)
{
	hs_set_alloc_funcs(NULL, NULL);
	fail_at = -1;
}

long hs_test_alloc_live(void)
{
	return live;
}

long hs_test_alloc_count(void)
{
	return attempts;
}

char *hs_test_read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET))
		goto out_close;
	buf = malloc((size_t)n + 1);
	if (!buf)
		goto out_close;
	if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
		goto out_close;
	}
	buf[n] = '\0';
out_close:
	fclose(f);
	return buf;
}

bool hs_test_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}
