/* The device profile catalog: what each kind of device can do. */
#include <fnmatch.h>
#include <strings.h>
#include <string.h>

#include "internal.h"

struct hs_profile_catalog_s {
	hs_profile_t *profiles;
	size_t n;
};

#define GIB (1024.0 * 1024.0 * 1024.0)

static int parse_kind(hs__jv_t *jv, const json_t *o, hs_device_kind_t *kind)
{
	static const char *const names[] = {"cpu", "gpu", "accelerator"};
	char s[32];
	hs__jv_t c;
	size_t i;
	int rc;

	if ((rc = hs__jv_string(jv, o, "kind", true, s, sizeof(s))))
		return rc;
	for (i = 0; i < HS_ARRAY_SIZE(names); i++)
		if (!strcmp(s, names[i])) {
			*kind = (hs_device_kind_t)i;
			return 0;
		}
	hs__jv_child_key(&c, jv, "kind");
	return hs__error_set(jv->err, HS_EINVAL, jv->source, 0, c.path,
			     "unknown kind \"%s\" (expected \"cpu\", "
			     "\"gpu\" or \"accelerator\")",
			     s);
}

static int parse_match(hs__jv_t *jv, const json_t *o, hs_profile_t *p)
{
	hs__jv_t c, e;
	json_t *arr, *s;
	size_t i;
	int rc;

	hs__jv_child_key(&c, jv, "match");
	arr = json_object_get(o, "match");
	if (!arr)
		return hs__error_set(jv->err, HS_EMISSING, jv->source, 0,
				     jv->path,
				     "missing required key \"match\"");
	if ((rc = hs__jv_expect_array(&c, arr)))
		return rc;
	if (json_array_size(arr) < 1 || json_array_size(arr) > HS_MAX_MATCH)
		return hs__error_set(jv->err, HS_ERANGE, jv->source, 0, c.path,
				     "needs 1 to %d patterns, has %zu",
				     HS_MAX_MATCH, json_array_size(arr));
	json_array_foreach (arr, i, s) {
		hs__jv_child_index(&e, &c, i);
		if (!json_is_string(s) || json_string_length(s) == 0)
			return hs__error_set(jv->err, HS_ETYPE, jv->source, 0,
					     e.path,
					     "expected a non-empty string");
		if (json_string_length(s) >= sizeof(p->match[0]))
			return hs__error_set(jv->err, HS_ERANGE, jv->source, 0,
					     e.path, "pattern too long");
		hs__strlcpy(p->match[i], json_string_value(s),
			    sizeof(p->match[i]));
	}
	p->n_match = (unsigned)json_array_size(arr);
	return 0;
}

static int parse_profile(hs__jv_t *jv, const json_t *o, hs_profile_t *p)
{
	static const char *const keys[] = {
		"name",	      "vendor",	    "kind",	    "match",
		"memory_gib", "mem_bw_gbs", "peak_tflops",  "host_link_gbs",
		"idle_w",     "tdp_w",	    "power_levels", "price_usd",
		"source",     NULL};
	double mem_gib = 0;
	hs__jv_t c;
	int rc;

	memset(p, 0, sizeof(*p));
	if ((rc = hs__jv_expect_object(jv, o)) ||
	    (rc = hs__jv_check_keys(jv, o, keys)) ||
	    (rc = hs__jv_string(jv, o, "name", true, p->name,
				sizeof(p->name))) ||
	    (rc = hs__jv_string(jv, o, "vendor", true, p->vendor,
				sizeof(p->vendor))) ||
	    (rc = parse_kind(jv, o, &p->kind)) ||
	    (rc = parse_match(jv, o, p)) ||
	    (rc = hs__jv_double(jv, o, "memory_gib", true, &mem_gib, 1e-3,
				1e6)) ||
	    (rc = hs__jv_double(jv, o, "mem_bw_gbs", true, &p->mem_bw_gbs, 1e-3,
				1e6)) ||
	    (rc = hs__jv_double(jv, o, "peak_tflops", true, &p->peak_tflops,
				1e-6, 1e6)) ||
	    (rc = hs__jv_double(jv, o, "host_link_gbs", true, &p->host_link_gbs,
				1e-3, 1e6)) ||
	    (rc = hs__jv_double(jv, o, "tdp_w", true, &p->max_w, 1e-3, 1e5)) ||
	    (rc = hs__jv_double(jv, o, "idle_w", true, &p->idle_w, 0,
				p->max_w)) ||
	    (rc = hs__jv_power_levels(jv, o, "power_levels", true, p->levels,
				      &p->n_levels, p->max_w)) ||
	    (rc = hs__jv_double(jv, o, "price_usd", false, &p->price_usd, 0,
				1e9)) ||
	    (rc = hs__jv_string(jv, o, "source", true, p->source,
				sizeof(p->source))))
		return rc;
	p->memory_bytes = (uint64_t)(mem_gib * GIB);
	hs__jv_child_key(&c, jv, "idle_w");
	if (!(p->idle_w < p->max_w))
		return hs__error_set(jv->err, HS_EINVAL, jv->source, 0, c.path,
				     "idle_w (%g) must be below tdp_w (%g)",
				     p->idle_w, p->max_w);
	hs__jv_child_key(&c, jv, "power_levels");
	if (p->levels[p->n_levels - 1].cap_w <= p->idle_w)
		return hs__error_set(jv->err, HS_EINVAL, jv->source, 0, c.path,
				     "the lowest cap (%g W) must be above "
				     "idle_w (%g W)",
				     p->levels[p->n_levels - 1].cap_w,
				     p->idle_w);
	return 0;
}

static int parse_catalog(hs_profile_catalog_t *cat, const json_t *root,
			 const char *source, hs_error_t *err)
{
	hs__jv_t jv = {.source = source, .err = err, .path = "$"};
	hs__jv_t list, e;
	json_t *arr, *o;
	size_t i, j;
	int rc;

	if ((rc = hs__jv_catalog(&jv, root, "profiles", "profiles", &arr)))
		return rc;
	hs__jv_child_key(&list, &jv, "profiles");
	cat->profiles = hs__calloc(json_array_size(arr), sizeof(hs_profile_t));
	if (!cat->profiles)
		return hs__error_set(err, HS_ENOMEM, source, 0, NULL,
				     "out of memory");
	json_array_foreach (arr, i, o) {
		hs__jv_child_index(&e, &list, i);
		if ((rc = parse_profile(&e, o, &cat->profiles[i])))
			return rc;
		for (j = 0; j < i; j++)
			if (!strcasecmp(cat->profiles[j].name,
					cat->profiles[i].name))
				return hs__error_set(
					err, HS_EEXIST, source, 0, e.path,
					"duplicate profile name \"%s\" (first "
					"at $.profiles[%zu])",
					cat->profiles[i].name, j);
		cat->n = i + 1;
	}
	return 0;
}

static int parse_any(void *cat, const json_t *root, const char *source,
		     hs_error_t *err)
{
	return parse_catalog(cat, root, source, err);
}

static void free_any(void *cat)
{
	hs_profile_catalog_free(cat);
}

static int catalog_from_json(hs_profile_catalog_t **out, json_t *root,
			     const char *source, hs_error_t *err)
{
	void *cat = NULL;
	int rc = hs__json_build(&cat, sizeof(**out), root, source, parse_any,
				free_any, err);

	*out = cat;
	return rc;
}

int hs_profile_catalog_load(hs_profile_catalog_t **out, const char *path,
			    hs_error_t *err)
{
	hs__error_clear(err);
	return catalog_from_json(out, hs__json_load_file(path, err), path, err);
}

int hs_profile_catalog_parse(hs_profile_catalog_t **out, const char *text,
			     const char *source, hs_error_t *err)
{
	hs__error_clear(err);
	return catalog_from_json(out, hs__json_loads(text, source, err), source,
				 err);
}

void hs_profile_catalog_free(hs_profile_catalog_t *cat)
{
	if (!cat)
		return;
	hs__free(cat->profiles);
	hs__free(cat);
}

size_t hs_profile_catalog_count(const hs_profile_catalog_t *cat)
{
	return cat ? cat->n : 0;
}

const hs_profile_t *hs_profile_catalog_get(const hs_profile_catalog_t *cat,
					   size_t i)
{
	return cat && i < cat->n ? &cat->profiles[i] : NULL;
}

const hs_profile_t *hs_profile_catalog_find(const hs_profile_catalog_t *cat,
					    const char *name)
{
	size_t i;

	for (i = 0; cat && i < cat->n; i++)
		if (!strcasecmp(cat->profiles[i].name, name))
			return &cat->profiles[i];
	return NULL;
}

const hs_profile_t *hs_profile_catalog_match(const hs_profile_catalog_t *cat,
					     const char *device_name,
					     hs_device_kind_t kind)
{
	bool want_cpu = kind == HS_KIND_CPU;
	size_t i;
	unsigned k;

	for (i = 0; cat && i < cat->n; i++) {
		if ((cat->profiles[i].kind == HS_KIND_CPU) != want_cpu)
			continue;
		for (k = 0; k < cat->profiles[i].n_match; k++)
			if (!fnmatch(cat->profiles[i].match[k], device_name,
				     FNM_CASEFOLD))
				return &cat->profiles[i];
	}
	return NULL;
}
