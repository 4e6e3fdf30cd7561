/* The model catalog: transformer shapes and what follows from them. */
#include <string.h>

#include "internal.h"

struct hs_model_catalog_s {
	hs_model_t *models;
	size_t n;
};

#define U32_MAX_DIM (1u << 24)

uint64_t hs_model_kv_bytes_derived(const hs_model_t *m)
{
	return 2ull * m->layers * m->n_kv_heads * m->head_dim *
	       m->kv_dtype_bytes;
}

/* Parameters of a dense llama-style decoder from its shape. */
static uint64_t derived_params(const hs_model_t *m, bool tied)
{
	uint64_t d = m->d_model, q = (uint64_t)m->n_heads * m->head_dim;
	uint64_t kv = (uint64_t)m->n_kv_heads * m->head_dim;
	uint64_t per_layer =
		d * q + 2 * d * kv + q * d + 3 * d * m->d_ff + 2 * d;

	return (uint64_t)m->vocab * d + m->layers * per_layer + d +
	       (tied ? 0 : (uint64_t)m->vocab * d);
}

/*
 * What the executors run: synthetic FP32 weights and an FP16 KV cache of
 * the shape's size (devices/llm.h). A runnable model declares exactly
 * that, so that the scheduler's memory figures are the executors'.
 */
static int check_runnable(hs__jv_t *jv, const hs_model_t *m)
{
	const char *key = NULL;
	hs__jv_t c;

	if (m->dtype_bytes != 4)
		key = "dtype_bytes";
	else if (m->kv_dtype_bytes != 2)
		key = "kv_dtype_bytes";
	if (key) {
		hs__jv_child_key(&c, jv, key);
		return hs__error_set(jv->err, HS_EINVAL, jv->source, 0, c.path,
				     "a runnable model has FP32 weights "
				     "(dtype_bytes 4) and an FP16 KV cache "
				     "(kv_dtype_bytes 2), as the executors "
				     "run it");
	}
	if (m->kv_bytes_per_token != hs_model_kv_bytes_derived(m)) {
		hs__jv_child_key(&c, jv, "kv_bytes_per_token");
		return hs__error_set(
			jv->err, HS_EINVAL, jv->source, 0, c.path,
			"a runnable model's KV cache takes the "
			"%llu bytes per token its shape gives",
			(unsigned long long)hs_model_kv_bytes_derived(m));
	}
	return 0;
}

static int parse_model(hs__jv_t *jv, const json_t *o, hs_model_t *m)
{
	static const char *const keys[] = {"name",
					   "family",
					   "source",
					   "layers",
					   "d_model",
					   "n_heads",
					   "n_kv_heads",
					   "head_dim",
					   "d_ff",
					   "vocab",
					   "max_context",
					   "params",
					   "active_params",
					   "tie_embeddings",
					   "n_experts",
					   "experts_per_token",
					   "dtype_bytes",
					   "kv_dtype_bytes",
					   "kv_bytes_per_token",
					   "runnable",
					   "seed",
					   NULL};
	bool tied = false;
	hs__jv_t c;
	int rc;

	memset(m, 0, sizeof(*m));
	m->dtype_bytes = 2;
	m->kv_dtype_bytes = 2;
	if ((rc = hs__jv_expect_object(jv, o)) ||
	    (rc = hs__jv_check_keys(jv, o, keys)) ||
	    (rc = hs__jv_string(jv, o, "name", true, m->name,
				sizeof(m->name))) ||
	    (rc = hs__jv_string(jv, o, "family", false, m->family,
				sizeof(m->family))) ||
	    (rc = hs__jv_string(jv, o, "source", false, m->source,
				sizeof(m->source))) ||
	    (rc = hs__jv_u32(jv, o, "layers", true, &m->layers, 1, 4096)) ||
	    (rc = hs__jv_u32(jv, o, "d_model", true, &m->d_model, 1,
			     U32_MAX_DIM)) ||
	    (rc = hs__jv_u32(jv, o, "n_heads", true, &m->n_heads, 1, 4096)) ||
	    (rc = hs__jv_u32(jv, o, "n_kv_heads", true, &m->n_kv_heads, 1,
			     4096)) ||
	    (rc = hs__jv_u32(jv, o, "d_ff", true, &m->d_ff, 1, U32_MAX_DIM)) ||
	    (rc = hs__jv_u32(jv, o, "vocab", true, &m->vocab, 1,
			     U32_MAX_DIM)) ||
	    (rc = hs__jv_u32(jv, o, "max_context", true, &m->max_context, 1,
			     U32_MAX_DIM)) ||
	    (rc = hs__jv_u32(jv, o, "n_experts", false, &m->n_experts, 0,
			     65536)) ||
	    (rc = hs__jv_u32(jv, o, "experts_per_token", false,
			     &m->experts_per_token, 0, 65536)) ||
	    (rc = hs__jv_u32(jv, o, "dtype_bytes", false, &m->dtype_bytes, 1,
			     8)) ||
	    (rc = hs__jv_u32(jv, o, "kv_dtype_bytes", false, &m->kv_dtype_bytes,
			     1, 8)) ||
	    (rc = hs__jv_bool(jv, o, "tie_embeddings", false, &tied)) ||
	    (rc = hs__jv_bool(jv, o, "runnable", false, &m->runnable)) ||
	    (rc = hs__jv_u64(jv, o, "seed", false, &m->seed, 0, UINT64_MAX)))
		return rc;

	if (m->n_heads % m->n_kv_heads)
		return hs__error_set(jv->err, HS_EINVAL, jv->source, 0,
				     jv->path,
				     "n_heads (%u) must be a multiple of "
				     "n_kv_heads (%u)",
				     m->n_heads, m->n_kv_heads);
	m->head_dim = m->d_model / m->n_heads;
	if ((rc = hs__jv_u32(jv, o, "head_dim", false, &m->head_dim, 1, 65536)))
		return rc;
	if (m->head_dim == 0)
		return hs__error_set(jv->err, HS_EINVAL, jv->source, 0,
				     jv->path,
				     "d_model (%u) is smaller than n_heads "
				     "(%u); give head_dim",
				     m->d_model, m->n_heads);
	if ((m->n_experts == 0) != (m->experts_per_token == 0) ||
	    m->experts_per_token > m->n_experts)
		return hs__error_set(jv->err, HS_EINVAL, jv->source, 0,
				     jv->path,
				     "experts_per_token (%u) must be between "
				     "1 and n_experts (%u) for a MoE model, "
				     "and both absent for a dense one",
				     m->experts_per_token, m->n_experts);

	hs__jv_child_key(&c, jv, "params");
	if (m->n_experts) {
		if ((rc = hs__jv_u64(jv, o, "params", true, &m->params, 1,
				     UINT64_MAX)) ||
		    (rc = hs__jv_u64(jv, o, "active_params", true,
				     &m->active_params, 1, m->params)))
			return rc;
	} else {
		m->params = derived_params(m, tied);
		if ((rc = hs__jv_u64(jv, o, "params", false, &m->params, 1,
				     UINT64_MAX)))
			return rc;
		m->active_params = m->params;
		if ((rc = hs__jv_u64(jv, o, "active_params", false,
				     &m->active_params, 1, m->params)))
			return rc;
	}
	if (m->params > UINT64_MAX / m->dtype_bytes)
		return hs__error_set(jv->err, HS_ERANGE, jv->source, 0, c.path,
				     "weight bytes overflow");
	m->weight_bytes = m->params * m->dtype_bytes;

	m->kv_bytes_per_token = hs_model_kv_bytes_derived(m);
	m->kv_bytes_given = json_object_get(o, "kv_bytes_per_token") != NULL;
	if ((rc = hs__jv_u64(jv, o, "kv_bytes_per_token", false,
			     &m->kv_bytes_per_token, 1, UINT64_MAX / 2)))
		return rc;
	return m->runnable ? check_runnable(jv, m) : 0;
}

static int parse_catalog(hs_model_catalog_t *cat, const json_t *root,
			 const char *source, hs_error_t *err)
{
	hs__jv_t jv = {.source = source, .err = err, .path = "$"};
	hs__jv_t list, e;
	json_t *arr, *o;
	size_t i, j;
	int rc;

	if ((rc = hs__jv_catalog(&jv, root, "models", "models", &arr)))
		return rc;
	hs__jv_child_key(&list, &jv, "models");
	cat->models = hs__calloc(json_array_size(arr), sizeof(hs_model_t));
	if (!cat->models)
		return hs__error_set(err, HS_ENOMEM, source, 0, NULL,
				     "out of memory");
	json_array_foreach (arr, i, o) {
		hs__jv_child_index(&e, &list, i);
		if ((rc = parse_model(&e, o, &cat->models[i])))
			return rc;
		for (j = 0; j < i; j++)
			if (!strcmp(cat->models[j].name, cat->models[i].name))
				return hs__error_set(
					err, HS_EEXIST, source, 0, e.path,
					"duplicate model name \"%s\" (first "
					"at $.models[%zu])",
					cat->models[i].name, j);
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
	hs_model_catalog_free(cat);
}

static int catalog_from_json(hs_model_catalog_t **out, json_t *root,
			     const char *source, hs_error_t *err)
{
	void *cat = NULL;
	int rc = hs__json_build(&cat, sizeof(**out), root, source, parse_any,
				free_any, err);

	*out = cat;
	return rc;
}

int hs_model_catalog_load(hs_model_catalog_t **out, const char *path,
			  hs_error_t *err)
{
	hs__error_clear(err);
	return catalog_from_json(out, hs__json_load_file(path, err), path, err);
}

int hs_model_catalog_parse(hs_model_catalog_t **out, const char *text,
			   const char *source, hs_error_t *err)
{
	hs__error_clear(err);
	return catalog_from_json(out, hs__json_loads(text, source, err), source,
				 err);
}

void hs_model_catalog_free(hs_model_catalog_t *cat)
{
	if (!cat)
		return;
	hs__free(cat->models);
	hs__free(cat);
}

size_t hs_model_catalog_count(const hs_model_catalog_t *cat)
{
	return cat ? cat->n : 0;
}

const hs_model_t *hs_model_catalog_get(const hs_model_catalog_t *cat, size_t i)
{
	return cat && i < cat->n ? &cat->models[i] : NULL;
}

const hs_model_t *hs_model_catalog_find(const hs_model_catalog_t *cat,
					const char *name)
{
	size_t i;

	for (i = 0; cat && i < cat->n; i++)
		if (!strcmp(cat->models[i].name, name))
			return &cat->models[i];
	return NULL;
}
