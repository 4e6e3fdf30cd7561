/* The error table, the model and profile catalogs and inventories. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "devices-internal.h"
#include "testutil.h"

static void test_error_table(void **state)
{
	static const int codes[] = {
#define HS__ERR_CODE(name, num, msg) HS_E##name,
		HS_ERRNO_MAP(HS__ERR_CODE)
#undef HS__ERR_CODE
	};
	size_t i, j;

	assert_string_equal(hs_strerror(0), "success");
	assert_string_equal(hs_err_name(0), "HS_OK");
	assert_string_equal(hs_err_name(HS_EPARSE), "HS_EPARSE");
	assert_string_equal(hs_strerror(HS_ENOMEM), "out of memory");
	assert_string_equal(hs_strerror(-9999), "unknown error");
	for (i = 0; i < HS_ARRAY_SIZE(codes); i++) {
		assert_true(codes[i] < 0);
		assert_string_not_equal(hs_strerror(codes[i]), "unknown error");
		for (j = 0; j < i; j++) {
			assert_int_not_equal(codes[i], codes[j]);
			assert_string_not_equal(hs_err_name(codes[i]),
						hs_err_name(codes[j]));
		}
	}
}

static void test_error_format(void **state)
{
	hs_error_t err = {0};
	char buf[256];

	hs__error_set(&err, HS_ERANGE, "f.json", 0, "$.a[1].b", "too big: %d",
		      7);
	assert_string_equal(hs_error_format(&err, buf, sizeof(buf)),
			    "f.json: $.a[1].b: too big: 7");
	/* The first error wins. */
	hs__error_set(&err, HS_EIO, "g", 0, NULL, "later");
	assert_int_equal(err.code, HS_ERANGE);
	hs__error_clear(&err);
	hs__error_set(&err, HS_EPARSE, "t.csv", 12, NULL, "bad row");
	assert_string_equal(hs_error_format(&err, buf, sizeof(buf)),
			    "t.csv:12: bad row");
	/* Truncation keeps a NUL-terminated prefix. */
	hs_error_format(&err, buf, 5);
	assert_string_equal(buf, "t.cs");
}

static void test_models(void **state)
{
	hs_model_catalog_t *cat = NULL;
	const hs_model_t *m;
	hs_error_t err;
	uint64_t d, per_layer;

	assert_int_equal(hs_model_catalog_load(&cat, "data/models.json", &err),
			 0);
	assert_true(hs_model_catalog_count(cat) >= 7);

	/* tiny-test: params derived from the shape, recomputed by hand. */
	m = hs_model_catalog_find(cat, "tiny-test");
	assert_non_null(m);
	assert_true(m->runnable);
	assert_int_equal(m->head_dim, 16);
	d = 64;
	per_layer = d * 64 + 2 * d * 32 + 64 * d + 3 * d * 128 + 2 * d;
	assert_int_equal(m->params, 256 * d + 2 * per_layer + d + 256 * d);
	assert_int_equal(m->weight_bytes, m->params * 4);
	assert_int_equal(m->kv_bytes_per_token, 2 * 2 * 2 * 16 * 2);
	assert_false(m->kv_bytes_given);

	m = hs_model_catalog_find(cat, "Llama-3.1-8B");
	assert_non_null(m);
	assert_int_equal(m->kv_bytes_per_token, 2ull * 32 * 8 * 128 * 2);
	assert_int_equal(m->active_params, m->params);

	m = hs_model_catalog_find(cat, "Mixtral-8x7B");
	assert_non_null(m);
	assert_true(m->active_params < m->params);
	assert_int_equal(m->n_experts, 8);

	m = hs_model_catalog_find(cat, "DeepSeek-V3");
	assert_non_null(m);
	assert_true(m->kv_bytes_given);
	assert_int_equal(m->kv_bytes_per_token, 70272);
	assert_true(m->kv_bytes_per_token < hs_model_kv_bytes_derived(m));

	assert_null(hs_model_catalog_find(cat, "no-such-model"));
	assert_null(hs_model_catalog_get(cat, 1000));
	hs_model_catalog_free(cat);
}

static void expect_model_error(const char *text, int code, const char *msg)
{
	hs_model_catalog_t *cat = (void *)1;
	hs_error_t err;
	char buf[512];

	assert_int_equal(hs_model_catalog_parse(&cat, text, "<t>", &err), code);
	assert_null(cat);
	hs_error_format(&err, buf, sizeof(buf));
	if (!strstr(buf, msg))
		fail_msg("error \"%s\" lacks \"%s\"", buf, msg);
}

static void test_model_errors(void **state)
{
	expect_model_error("{\"models\": [{\"name\": \"a\", \"layers\": 1, "
			   "\"d_model\": 8, \"n_heads\": 2, \"n_kv_heads\": 2,"
			   " \"d_ff\": 8, \"vocab\": 4, \"max_context\": 8, "
			   "\"n_experts\": 4, \"experts_per_token\": 2}]}",
			   HS_EMISSING,
			   "$.models[0]: missing required key "
			   "\"params\"");
	expect_model_error("{\"models\": [{\"name\": \"a\", \"layers\": 1, "
			   "\"d_model\": 8, \"n_heads\": 3, \"n_kv_heads\": 2,"
			   " \"d_ff\": 8, \"vocab\": 4, \"max_context\": 8}]}",
			   HS_EINVAL, "multiple of n_kv_heads");
	/* A runnable model's byte widths are the executors'. */
	expect_model_error("{\"models\": [{\"name\": \"a\", \"layers\": 1, "
			   "\"d_model\": 8, \"n_heads\": 2, \"n_kv_heads\": 2,"
			   " \"d_ff\": 8, \"vocab\": 4, \"max_context\": 8, "
			   "\"runnable\": true, \"dtype_bytes\": 4, "
			   "\"kv_dtype_bytes\": 4}]}",
			   HS_EINVAL, "$.models[0].kv_dtype_bytes: a runnable");
	expect_model_error("{\"models\": [{\"name\": \"a\", \"layers\": 1, "
			   "\"d_model\": 8, \"n_heads\": 2, \"n_kv_heads\": 2,"
			   " \"d_ff\": 8, \"vocab\": 4, \"max_context\": 8, "
			   "\"runnable\": true}]}",
			   HS_EINVAL, "$.models[0].dtype_bytes: a runnable");
	expect_model_error("{\"models\": [{\"name\": \"a\", \"layers\": 1, "
			   "\"d_model\": 8, \"n_heads\": 2, \"n_kv_heads\": 2,"
			   " \"d_ff\": 8, \"vocab\": 4, \"max_context\": 8, "
			   "\"runnable\": true, \"dtype_bytes\": 4, "
			   "\"kv_bytes_per_token\": 100}]}",
			   HS_EINVAL,
			   "$.models[0].kv_bytes_per_token: a "
			   "runnable model's KV cache takes the 32 "
			   "bytes");
	expect_model_error("{\"models\": []}", HS_EINVAL, "no models");
	expect_model_error("[1]", HS_ETYPE, "<t>: $: expected an object");
	expect_model_error("{\"models\": 1", HS_EPARSE, "<t>:1");
}

static void test_profiles(void **state)
{
	hs_profile_catalog_t *cat = NULL;
	const hs_profile_t *p;
	hs_error_t err;

	assert_int_equal(
		hs_profile_catalog_load(&cat, "data/devices.json", &err), 0);
	p = hs_profile_catalog_match(cat, "NVIDIA H100 80GB HBM3", HS_KIND_GPU);
	assert_non_null(p);
	assert_string_equal(p->name, "H100-SXM");
	assert_int_equal(p->max_w, 700);
	assert_true(p->n_levels >= 2);
	assert_true(p->levels[0].cap_w == p->max_w);
	p = hs_profile_catalog_match(cat, "NVIDIA H800", HS_KIND_GPU);
	assert_string_equal(p->name, "H800-SXM");
	p = hs_profile_catalog_match(cat, "Tesla V100-SXM3-32GB-H",
				     HS_KIND_GPU);
	assert_string_equal(p->name, "V100-SXM-32G");
	p = hs_profile_catalog_match(cat, "nvidia h20", HS_KIND_GPU);
	assert_string_equal(p->name, "H20");
	p = hs_profile_catalog_match(cat, "AMD EPYC 9654 96-Core Processor",
				     HS_KIND_CPU);
	assert_string_equal(p->name, "EPYC-9654");
	/* The catch-all CPU profile never claims an unknown GPU. */
	assert_null(hs_profile_catalog_match(cat, "Mystery Accel 9000",
					     HS_KIND_ACCEL));
	p = hs_profile_catalog_match(cat, "Some Future CPU", HS_KIND_CPU);
	assert_string_equal(p->name, "cpu-generic");
	p = hs_profile_catalog_find(cat, "ascend-910b");
	assert_non_null(p);
	assert_int_equal(p->kind, HS_KIND_ACCEL);
	assert_non_null(strstr(p->source, "disagree"));
	hs_profile_catalog_free(cat);
}

static void test_inventory(void **state)
{
	hs_profile_catalog_t *cat = NULL;
	hs_discover_opts_t opts = {0};
	const hs_device_t *d;
	hs_node_t *node = NULL;
	hs_error_t err;
	size_t i, n_h20 = 0;

	assert_int_equal(
		hs_profile_catalog_load(&cat, "data/devices.json", &err), 0);
	opts.profiles = cat;
	opts.inventory = "data/inventories/h20-910b-node.json";
	assert_int_equal(hs_node_discover(&node, &opts, &err), 0);
	assert_int_equal(hs_node_device_count(node), 8);
	for (i = 0; i < hs_node_device_count(node); i++) {
		d = hs_node_device(node, i);
		assert_int_equal(d->id, (int)i);
		assert_int_equal(d->backend, HS_BACKEND_SIM);
		assert_int_equal(d->sensor, HS_SENSOR_NONE);
		if (!strcmp(d->profile, "H20")) {
			n_h20++;
			assert_int_equal(d->numa_node, 0);
			assert_true(d->max_w == 400);
		}
	}
	assert_int_equal(n_h20, 4);
	d = hs_node_device(node, 7);
	assert_int_equal(d->kind, HS_KIND_CPU);
	assert_int_equal(d->compute_units, 56);
	assert_int_equal(hs_node_topology(node)->packages, 2);
	hs_node_free(node);

	opts.topology_xml = "x.xml";
	assert_int_equal(hs_node_discover(&node, &opts, &err), HS_EINVAL);
	assert_null(node);
	hs_profile_catalog_free(cat);
}

static void test_node_json(void **state)
{
	hs_profile_catalog_t *cat = NULL;
	hs_discover_opts_t opts = {0};
	hs_node_t *node = NULL;
	hs_error_t err;
	json_t *j, *dev;

	assert_int_equal(
		hs_profile_catalog_load(&cat, "data/devices.json", &err), 0);
	opts.profiles = cat;
	opts.inventory = "data/inventories/h20-910b-node.json";
	assert_int_equal(hs_node_discover(&node, &opts, &err), 0);
	j = hs__node_to_json(node);
	assert_non_null(j);
	assert_int_equal(json_integer_value(json_object_get(
				 json_object_get(j, "topology"), "packages")),
			 2);
	dev = json_array_get(json_object_get(j, "devices"), 0);
	assert_string_equal(json_string_value(json_object_get(dev, "backend")),
			    "sim");
	assert_string_equal(json_string_value(json_object_get(dev, "kind")),
			    "gpu");
	assert_string_equal(json_string_value(json_object_get(
				    json_object_get(dev, "power"), "sensor")),
			    "modeled");
	assert_true(json_is_true(
		json_object_get(json_object_get(dev, "power"), "modeled")));
	json_decref(j);
	hs_node_free(node);
	hs_profile_catalog_free(cat);
}

/*
 * Fail every allocation in turn: each loader must fail cleanly (or succeed
 * once enough allocations pass) and hold nothing afterwards. jansson
 * reports some allocation failures inside its parser as syntax errors, so
 * only failures past parsing are required to say HS_ENOMEM; at least one
 * must.
 */
static void test_alloc_failures(void **state)
{
	hs_profile_catalog_t *cat = NULL;
	hs_model_catalog_t *models = NULL;
	hs_discover_opts_t opts = {0};
	hs_node_t *node = NULL;
	hs_error_t err;
	long n, nomem = 0;
	int rc;

	for (n = 0;; n++) {
		hs_test_alloc_install(n);
		rc = hs_model_catalog_load(&models, "data/models.json", &err);
		if (rc) {
			assert_true(rc == HS_ENOMEM || rc == HS_EPARSE);
			assert_int_equal(err.code, rc);
			assert_null(models);
			nomem += rc == HS_ENOMEM;
		}
		hs_model_catalog_free(models);
		models = NULL;
		assert_int_equal(hs_test_alloc_live(), 0);
		hs_test_alloc_uninstall();
		if (!rc)
			break;
	}
	assert_true(n > 2);
	assert_true(nomem > 0);

	nomem = 0;
	for (n = 0;; n++) {
		hs_test_alloc_install(n);
		rc = hs_profile_catalog_load(&cat, "data/devices.json", &err);
		if (!rc) {
			opts.profiles = cat;
			opts.inventory = "data/inventories/h20-910b-node.json";
			rc = hs_node_discover(&node, &opts, &err);
			hs_node_free(node);
			node = NULL;
		}
		if (rc) {
			assert_true(rc == HS_ENOMEM || rc == HS_EPARSE);
			nomem += rc == HS_ENOMEM;
		}
		hs_profile_catalog_free(cat);
		cat = NULL;
		assert_int_equal(hs_test_alloc_live(), 0);
		hs_test_alloc_uninstall();
		if (!rc)
			break;
	}
	assert_true(n > 2);
	assert_true(nomem > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_error_table),
		cmocka_unit_test(test_error_format),
		cmocka_unit_test(test_models),
		cmocka_unit_test(test_model_errors),
		cmocka_unit_test(test_profiles),
		cmocka_unit_test(test_inventory),
		cmocka_unit_test(test_node_json),
		cmocka_unit_test(test_alloc_failures),
	};

	return cmocka_run_group_tests_name("catalog", tests, NULL, NULL);
}
