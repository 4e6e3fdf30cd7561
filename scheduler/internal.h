/*
 * Private to hetsched: not part of the public API, may change at any time.
 *
 * Ground-floor helpers shared by every layer: the allocator, error filling,
 * a string builder and a validating JSON reader for catalogs, inventories,
 * configs and traces.
 */
#ifndef HS_INTERNAL_H
#define HS_INTERNAL_H

#include <stdarg.h>
#include <stdio.h>

#include <jansson.h>

#include "hetsched.h"

#define HS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define HS__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define HS__PRINTF(f, a)
#endif

/*
 * For the few loops written in vector lanes (GCC vector extensions): an
 * AVX2 copy and a default one (two SSE2 halves a lane pair, any x86-64),
 * picked at load time. Every lane must round as the scalar code does, so
 * that the copies give the same bits on every machine: GCC contracts
 * nothing into fused multiply-adds in ISO C mode, and a file with such
 * loops says #pragma clang fp contract(off) for clang.
 */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define HS__CLONES __attribute__((target_clones("avx2", "default")))
#else
#define HS__CLONES
#endif

/* Bit i of a bitmap of 64-bit words. */
static inline bool hs__bit_get(const uint64_t *map, size_t i)
{
	return (map[i / 64] >> (i % 64)) & 1;
}

static inline void hs__bit_set(uint64_t *map, size_t i, bool on)
{
	if (on)
		map[i / 64] |= 1ull << (i % 64);
	else
		map[i / 64] &= ~(1ull << (i % 64));
}

/* Allocation through the replaceable allocator (hs_set_alloc_funcs). */
void *hs__malloc(size_t size);
void *hs__calloc(size_t n, size_t size);
/* n zeroed elements of size from a cache line boundary on, in a block *mem
 * that hs__free releases; NULL when out of memory. For what is read a few
 * lines at a time, from its start: no line is shared with a neighbour's
 * data or read for a few bytes. */
void *hs__calloc_lines(size_t n, size_t size, char **mem);
/* realloc in terms of malloc/free of the current allocator; the caller
 * passes the old size. On failure the old block is left untouched. */
void *hs__realloc(void *ptr, size_t old_size, size_t new_size);
void hs__free(void *ptr);
char *hs__strdup(const char *s);

/*
 * Grow a dynamic array so that it holds at least `need` elements of `elem`
 * bytes; *cap is updated. Returns 0 or HS_ENOMEM (the array is unchanged).
 */
int hs__grow(void **array, size_t *cap, size_t need, size_t elem);

/* Copy a string into a fixed buffer, truncating; always NUL-terminates. */
void hs__strlcpy(char *dst, const char *src, size_t size);

/*
 * Fill err (when not NULL) and return code. source, path may be NULL.
 * An error already set (err->code != 0) is not overwritten, so the first,
 * most precise error wins.
 */
int hs__error_set(hs_error_t *err, int code, const char *source, int line,
		  const char *path, const char *fmt, ...) HS__PRINTF(6, 7);
void hs__error_clear(hs_error_t *err);

/* A growable string. buf is always NUL-terminated once initialised. */
typedef struct hs__strbuf_s {
	char *buf;
	size_t len;
	size_t cap;
	int failed; /* HS_ENOMEM after a failed append; later appends no-op */
} hs__strbuf_t;

void hs__strbuf_init(hs__strbuf_t *sb);
void hs__strbuf_release(hs__strbuf_t *sb);
int hs__strbuf_addf(hs__strbuf_t *sb, const char *fmt, ...) HS__PRINTF(2, 3);
int hs__strbuf_add(hs__strbuf_t *sb, const char *s);

/* ------------------------------------------------------------------------ */
/* Validating JSON reader                                                   */
/* ------------------------------------------------------------------------ */

/*
 * A reading context: the source named in errors, the error to fill and the
 * JSON path of the value being read ("$", "$.models[3]"). Readers append
 * ".key" to the path in their messages.
 */
typedef struct hs__jv_s {
	const char *source;
	hs_error_t *err;
	char path[128];
} hs__jv_t;

/* A child context for obj[key] or array[index]. */
void hs__jv_child_key(hs__jv_t *child, const hs__jv_t *parent, const char *key);
void hs__jv_child_index(hs__jv_t *child, const hs__jv_t *parent, size_t index);

/*
 * Parse JSON text or a file (duplicate keys rejected). On failure returns
 * NULL and fills err with the line, column and jansson's message.
 */
json_t *hs__json_load_file(const char *path, hs_error_t *err);
json_t *hs__json_loads(const char *text, const char *source, hs_error_t *err);
/*
 * An object built from a parsed document: size bytes, zeroed, filled by
 * parse; freed with free_fn if parse fails. Takes the reference to root
 * (NULL: the load failed and err says why). 0 with *out set, or HS_E*.
 */
int hs__json_build(void **out, size_t size, json_t *root, const char *source,
		   int (*parse)(void *obj, const json_t *root,
				const char *source, hs_error_t *err),
		   void (*free_fn)(void *obj), hs_error_t *err);

/*
 * Build JSON and remember a failure instead of returning it: set obj[key]
 * or append to arr, stealing v (NULL v, from a failed allocation, counts
 * as a failure too); *bad becomes true on any failure. The caller checks
 * *bad once at the end.
 */
void hs__json_put(json_t *obj, const char *key, json_t *v, bool *bad);
void hs__json_push(json_t *arr, json_t *v, bool *bad);

/* Fail with "expected an object/array" unless v has that type. */
int hs__jv_expect_object(hs__jv_t *jv, const json_t *v);
int hs__jv_expect_array(hs__jv_t *jv, const json_t *v);
/* HS_EUNKNOWN_KEY naming the first key of obj not in the NULL-terminated
 * list. */
int hs__jv_check_keys(hs__jv_t *jv, const json_t *obj,
		      const char *const *allowed);

/*
 * Typed getters for obj[key]. When the key is absent: HS_EMISSING if
 * required, else 0 with *out untouched (so callers preset defaults).
 * Strings longer than size-1 are HS_ERANGE, not truncated. Numbers outside
 * [min, max] are HS_ERANGE with the bounds in the message; integers must be
 * JSON integers (or reals with no fractional part).
 */
int hs__jv_string(hs__jv_t *jv, const json_t *obj, const char *key,
		  bool required, char *out, size_t size);
int hs__jv_u64(hs__jv_t *jv, const json_t *obj, const char *key, bool required,
	       uint64_t *out, uint64_t min, uint64_t max);
int hs__jv_u32(hs__jv_t *jv, const json_t *obj, const char *key, bool required,
	       uint32_t *out, uint32_t min, uint32_t max);
int hs__jv_int(hs__jv_t *jv, const json_t *obj, const char *key, bool required,
	       int *out, int min, int max);
int hs__jv_double(hs__jv_t *jv, const json_t *obj, const char *key,
		  bool required, double *out, double min, double max);
int hs__jv_bool(hs__jv_t *jv, const json_t *obj, const char *key, bool required,
		bool *out);

/*
 * The top of a catalog file: an object with "version" (1, optional) and
 * list_key, a non-empty array returned in *list (borrowed). Errors name
 * the source and say "the catalog has no <what>" for an empty list.
 */
int hs__jv_catalog(hs__jv_t *jv, const json_t *root, const char *list_key,
		   const char *what, json_t **list);

/* Power levels: an array of {cap_w, speed}, caps strictly descending,
 * speeds in (0, 1], caps in (0, max_w]. */
int hs__jv_power_levels(hs__jv_t *jv, const json_t *obj, const char *key,
			bool required, hs_power_level_t *levels,
			unsigned *n_levels, double max_w);

#endif /* HS_INTERNAL_H */
