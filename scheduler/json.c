/* The validating JSON reader behind every catalog, inventory and config. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "internal.h"

static int jv_fail(hs__jv_t *jv, int code, const char *fmt, ...)
	HS__PRINTF(3, 4);

static int jv_fail(hs__jv_t *jv, int code, const char *fmt, ...)
{
	char text[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	return hs__error_set(jv->err, code, jv->source, 0, jv->path, "%s",
			     text);
}

void hs__jv_child_key(hs__jv_t *child, const hs__jv_t *parent, const char *key)
{
	child->source = parent->source;
	child->err = parent->err;
	/* A path too deep for the buffer is cut; the message stays useful. */
	if (snprintf(child->path, sizeof(child->path), "%s.%s", parent->path,
		     key) >= (int)sizeof(child->path))
		child->path[sizeof(child->path) - 1] = '\0';
}

void hs__jv_child_index(hs__jv_t *child, const hs__jv_t *parent, size_t index)
{
	child->source = parent->source;
	child->err = parent->err;
	if (snprintf(child->path, sizeof(child->path), "%s[%zu]", parent->path,
		     index) >= (int)sizeof(child->path))
		child->path[sizeof(child->path) - 1] = '\0';
}

static int load_failed(hs_error_t *err, const char *source,
		       const json_error_t *jerr)
{
	int code = HS_EPARSE;

	/* jansson leaves the text empty when it could not even set up its
	 * lexer, which only an allocation failure causes. */
	if (json_error_code(jerr) == json_error_out_of_memory || !jerr->text[0])
		code = HS_ENOMEM;
	else if (strstr(jerr->text, "unable to open"))
		code = HS_EIO;
	hs__error_set(err, code, source, jerr->line > 0 ? jerr->line : 0, NULL,
		      "%s", jerr->text[0] ? jerr->text : hs_strerror(code));
	if (err && err->code == code && jerr->line > 0)
		err->column = jerr->column;
	return code;
}

json_t *hs__json_load_file(const char *path, hs_error_t *err)
{
	json_error_t jerr;
	json_t *root;
	FILE *f;

	f = fopen(path, "rb");
	if (!f) {
		hs__error_set(err, HS_EIO, path, 0, NULL, "cannot open: %s",
			      strerror(errno));
		return NULL;
	}
	root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
	fclose(f);
	if (!root)
		load_failed(err, path, &jerr);
	return root;
}

json_t *hs__json_loads(const char *text, const char *source, hs_error_t *err)
{
	json_error_t jerr;
	json_t *root;

	root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		load_failed(err, source, &jerr);
	return root;
}

int hs__json_build(void **out, size_t size, json_t *root, const char *source,
		   int (*parse)(void *obj, const json_t *root,
				const char *source, hs_error_t *err),
		   void (*free_fn)(void *obj), hs_error_t *err)
{
	void *obj;
	int rc;

	*out = NULL;
	if (!root)
		return err ? err->code : HS_EPARSE;
	obj = hs__calloc(1, size);
	if (!obj) {
		rc = hs__error_set(err, HS_ENOMEM, source, 0, NULL,
				   "out of memory");
	} else if ((rc = parse(obj, root, source, err))) {
		free_fn(obj);
	} else {
		*out = obj;
	}
	json_decref(root);
	return rc;
}

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "something else";
}

int hs__jv_expect_object(hs__jv_t *jv, const json_t *v)
{
	if (!json_is_object(v))
		return jv_fail(jv, HS_ETYPE, "expected an object, got %s",
			       type_name(v));
	return 0;
}

int hs__jv_expect_array(hs__jv_t *jv, const json_t *v)
{
	if (!json_is_array(v))
		return jv_fail(jv, HS_ETYPE, "expected an array, got %s",
			       type_name(v));
	return 0;
}

int hs__jv_check_keys(hs__jv_t *jv, const json_t *obj,
		      const char *const *allowed)
{
	const char *key;
	json_t *v;
	size_t i;

	json_object_foreach ((json_t *)obj, key, v) {
		for (i = 0; allowed[i]; i++)
			if (!strcmp(key, allowed[i]))
				break;
		if (!allowed[i])
			return jv_fail(jv, HS_EUNKNOWN_KEY,
				       "unknown key \"%s\"", key);
	}
	return 0;
}

/* obj[key] or NULL; HS_EMISSING when required and absent. */
static int lookup(hs__jv_t *jv, const json_t *obj, const char *key,
		  bool required, json_t **out)
{
	*out = json_object_get(obj, key);
	if (!*out && required)
		return jv_fail(jv, HS_EMISSING, "missing required key \"%s\"",
			       key);
	return 0;
}

int hs__jv_string(hs__jv_t *jv, const json_t *obj, const char *key,
		  bool required, char *out, size_t size)
{
	hs__jv_t c;
	json_t *v;
	int rc;

	if ((rc = lookup(jv, obj, key, required, &v)) || !v)
		return rc;
	hs__jv_child_key(&c, jv, key);
	if (!json_is_string(v))
		return jv_fail(&c, HS_ETYPE, "expected a string, got %s",
			       type_name(v));
	if (json_string_length(v) >= size)
		return jv_fail(&c, HS_ERANGE,
			       "string too long (%zu bytes, at most %zu)",
			       json_string_length(v), size - 1);
	if (memchr(json_string_value(v), '\0', json_string_length(v)))
		return jv_fail(&c, HS_EPARSE, "string contains a NUL byte");
	hs__strlcpy(out, json_string_value(v), size);
	return 0;
}

/* The value as a whole number, or an error for a fraction or non-number. */
static int whole_number(hs__jv_t *c, const json_t *v, double *out)
{
	if (json_is_integer(v)) {
		*out = (double)json_integer_value(v);
		return 0;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);

		if (d != floor(d) || !isfinite(d))
			return jv_fail(c, HS_ETYPE,
				       "expected an integer, got %g", d);
		*out = d;
		return 0;
	}
	return jv_fail(c, HS_ETYPE, "expected an integer, got %s",
		       type_name(v));
}

int hs__jv_u64(hs__jv_t *jv, const json_t *obj, const char *key, bool required,
	       uint64_t *out, uint64_t min, uint64_t max)
{
	hs__jv_t c;
	json_t *v;
	double d;
	int rc;

	if ((rc = lookup(jv, obj, key, required, &v)) || !v)
		return rc;
	hs__jv_child_key(&c, jv, key);
	if ((rc = whole_number(&c, v, &d)))
		return rc;
	/* json_int_t is 64-bit signed: compare integers exactly. */
	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);

		if (i < 0 || (uint64_t)i < min || (uint64_t)i > max)
			goto out_range;
		*out = (uint64_t)i;
		return 0;
	}
	if (d < (double)min || d > (double)max)
		goto out_range;
	*out = (uint64_t)d;
	return 0;
out_range:
	return jv_fail(&c, HS_ERANGE, "%.0f is out of range [%llu, %llu]", d,
		       (unsigned long long)min, (unsigned long long)max);
}

int hs__jv_u32(hs__jv_t *jv, const json_t *obj, const char *key, bool required,
	       uint32_t *out, uint32_t min, uint32_t max)
{
	uint64_t v = *out;
	int rc = hs__jv_u64(jv, obj, key, required, &v, min, max);

	if (!rc)
		*out = (uint32_t)v;
	return rc;
}

int hs__jv_int(hs__jv_t *jv, const json_t *obj, const char *key, bool required,
	       int *out, int min, int max)
{
	hs__jv_t c;
	json_t *v;
	double d;
	int rc;

	if ((rc = lookup(jv, obj, key, required, &v)) || !v)
		return rc;
	hs__jv_child_key(&c, jv, key);
	if ((rc = whole_number(&c, v, &d)))
		return rc;
	if (d < min || d > max)
		return jv_fail(&c, HS_ERANGE, "%.0f is out of range [%d, %d]",
			       d, min, max);
	*out = (int)d;
	return 0;
}

int hs__jv_double(hs__jv_t *jv, const json_t *obj, const char *key,
		  bool required, double *out, double min, double max)
{
	hs__jv_t c;
	json_t *v;
	double d;
	int rc;

	if ((rc = lookup(jv, obj, key, required, &v)) || !v)
		return rc;
	hs__jv_child_key(&c, jv, key);
	if (!json_is_number(v))
		return jv_fail(&c, HS_ETYPE, "expected a number, got %s",
			       type_name(v));
	d = json_number_value(v);
	if (!isfinite(d) || d < min || d > max)
		return jv_fail(&c, HS_ERANGE, "%g is out of range [%g, %g]", d,
			       min, max);
	*out = d;
	return 0;
}

int hs__jv_bool(hs__jv_t *jv, const json_t *obj, const char *key, bool required,
		bool *out)
{
	hs__jv_t c;
	json_t *v;
	int rc;

	if ((rc = lookup(jv, obj, key, required, &v)) || !v)
		return rc;
	hs__jv_child_key(&c, jv, key);
	if (!json_is_boolean(v))
		return jv_fail(&c, HS_ETYPE, "expected a boolean, got %s",
			       type_name(v));
	*out = json_is_true(v);
	return 0;
}

int hs__jv_power_levels(hs__jv_t *jv, const json_t *obj, const char *key,
			bool required, hs_power_level_t *levels,
			unsigned *n_levels, double max_w)
{
	static const char *const keys[] = {"cap_w", "speed", NULL};
	hs__jv_t c, e;
	json_t *arr, *lv;
	size_t i;
	int rc;

	if ((rc = lookup(jv, obj, key, required, &arr)) || !arr)
		return rc;
	hs__jv_child_key(&c, jv, key);
	if ((rc = hs__jv_expect_array(&c, arr)))
		return rc;
	if (json_array_size(arr) < 1 ||
	    json_array_size(arr) > HS_MAX_POWER_LEVELS)
		return jv_fail(&c, HS_ERANGE,
			       "needs 1 to %d power levels, has %zu",
			       HS_MAX_POWER_LEVELS, json_array_size(arr));
	json_array_foreach (arr, i, lv) {
		hs_power_level_t *l = &levels[i];

		hs__jv_child_index(&e, &c, i);
		if ((rc = hs__jv_expect_object(&e, lv)) ||
		    (rc = hs__jv_check_keys(&e, lv, keys)) ||
		    (rc = hs__jv_double(&e, lv, "cap_w", true, &l->cap_w, 1e-3,
					max_w)) ||
		    (rc = hs__jv_double(&e, lv, "speed", true, &l->speed, 1e-3,
					1.0)))
			return rc;
		if (i > 0 && !(l->cap_w < levels[i - 1].cap_w))
			return jv_fail(&e, HS_EINVAL,
				       "power levels must have strictly "
				       "descending cap_w (%g after %g)",
				       l->cap_w, levels[i - 1].cap_w);
		if (i > 0 && l->speed > levels[i - 1].speed)
			return jv_fail(&e, HS_EINVAL,
				       "a lower cap cannot be faster "
				       "(speed %g after %g)",
				       l->speed, levels[i - 1].speed);
	}
	*n_levels = (unsigned)json_array_size(arr);
	return 0;
}

int hs__jv_catalog(hs__jv_t *jv, const json_t *root, const char *list_key,
		   const char *what, json_t **list)
{
	const char *const keys[] = {"version", list_key, NULL};
	int version = 1, rc;
	hs__jv_t c;

	if ((rc = hs__jv_expect_object(jv, root)) ||
	    (rc = hs__jv_check_keys(jv, root, keys)) ||
	    (rc = hs__jv_int(jv, root, "version", false, &version, 1, 1)))
		return rc;
	*list = json_object_get(root, list_key);
	if (!*list)
		return jv_fail(jv, HS_EMISSING, "missing required key \"%s\"",
			       list_key);
	hs__jv_child_key(&c, jv, list_key);
	if ((rc = hs__jv_expect_array(&c, *list)))
		return rc;
	if (json_array_size(*list) == 0)
		return jv_fail(&c, HS_EINVAL, "the catalog has no %s", what);
	return 0;
}

void hs__json_put(json_t *obj, const char *key, json_t *v, bool *bad)
{
	/* jansson frees v when it fails, and fails on a NULL obj or v. */
	if (json_object_set_new(obj, key, v))
		*bad = true;
}

void hs__json_push(json_t *arr, json_t *v, bool *bad)
{
	if (json_array_append_new(arr, v))
		*bad = true;
}
