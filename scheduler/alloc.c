/* The replaceable allocator, a string builder and small string helpers. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static hs_malloc_fn do_malloc = malloc;
static hs_free_fn do_free = free;

void hs_set_alloc_funcs(hs_malloc_fn malloc_fn, hs_free_fn free_fn)
{
	do_malloc = malloc_fn ? malloc_fn : malloc;
	do_free = free_fn ? free_fn : free;
	json_set_alloc_funcs(do_malloc, do_free);
}

void *hs__malloc(size_t size)
{
	return do_malloc(size ? size : 1);
}

void *hs__calloc(size_t n, size_t size)
{
	void *p;

	if (size && n > SIZE_MAX / size)
		return NULL;
	p = hs__malloc(n * size);
	if (p)
		memset(p, 0, n * size);
	return p;
}

void *hs__realloc(void *ptr, size_t old_size, size_t new_size)
{
	void *p;

	/* The C library's own realloc moves a big block by remapping its
	 * pages, not by copying them: queues of a million jobs grow in
	 * place. A replaced allocator gets a new block and a copy. */
	if (do_malloc == malloc && do_free == free)
		return realloc(ptr, new_size ? new_size : 1);
	p = hs__malloc(new_size);

	if (!p)
		return NULL;
	if (ptr) {
		memcpy(p, ptr, old_size < new_size ? old_size : new_size);
		do_free(ptr);
	}
	return p;
}

void *hs__calloc_lines(size_t n, size_t size, char **mem)
{
	*mem = hs__calloc(n + (64 + size - 1) / size, size);
	if (!*mem)
		return NULL;
	return *mem + (64 - (uintptr_t)*mem % 64) % 64;
}

void hs__free(void *ptr)
{
	if (ptr)
		do_free(ptr);
}

char *hs__strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = hs__malloc(n);

	if (p)
		memcpy(p, s, n);
	return p;
}

int hs__grow(void **array, size_t *cap, size_t need, size_t elem)
{
	size_t ncap;
	void *p;

	if (need <= *cap)
		return 0;
	ncap = *cap ? *cap : 8;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2 / elem)
			return HS_ENOMEM;
		ncap *= 2;
	}
	p = hs__realloc(*array, *cap * elem, ncap * elem);
	if (!p)
		return HS_ENOMEM;
	*array = p;
	*cap = ncap;
	return 0;
}

void hs__strlcpy(char *dst, const char *src, size_t size)
{
	size_t n;

	if (!size)
		return;
	n = strlen(src);
	if (n >= size)
		n = size - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

void hs__strbuf_init(hs__strbuf_t *sb)
{
	sb->buf = NULL;
	sb->len = 0;
	sb->cap = 0;
	sb->failed = 0;
}

void hs__strbuf_release(hs__strbuf_t *sb)
{
	hs__free(sb->buf);
	hs__strbuf_init(sb);
}

static int strbuf_vaddf(hs__strbuf_t *sb, const char *fmt, va_list ap)
{
	va_list ap2;
	int n;

	if (sb->failed)
		return sb->failed;
	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return sb->failed = HS_EINVAL;
	if (hs__grow((void **)&sb->buf, &sb->cap, sb->len + (size_t)n + 1, 1))
		return sb->failed = HS_ENOMEM;
	vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap);
	sb->len += (size_t)n;
	return 0;
}

int hs__strbuf_addf(hs__strbuf_t *sb, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = strbuf_vaddf(sb, fmt, ap);
	va_end(ap);
	return rc;
}

int hs__strbuf_add(hs__strbuf_t *sb, const char *s)
{
	return hs__strbuf_addf(sb, "%s", s);
}
