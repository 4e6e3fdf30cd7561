/* Test support for the scheduler core. */
#include <stdio.h>
#include <string.h>

#include "schedutil.h"

hs_model_catalog_t *hs_test_models(void)
{
	static const char text[] =
		"{\"models\": ["
		"{\"name\": \"m-small\", \"layers\": 4, \"d_model\": 256, "
		"\"n_heads\": 4, \"n_kv_heads\": 4, \"d_ff\": 512, "
		"\"vocab\": 256, \"max_context\": 8192, "
		"\"params\": 500000000, \"kv_bytes_per_token\": 1000},"
		"{\"name\": \"m-big\", \"layers\": 8, \"d_model\": 512, "
		"\"n_heads\": 8, \"n_kv_heads\": 8, \"d_ff\": 1024, "
		"\"vocab\": 256, \"max_context\": 8192, "
		"\"params\": 5000000000, \"kv_bytes_per_token\": 4000}]}";
	hs_model_catalog_t *cat = NULL;
	hs_error_t err;

	if (hs_model_catalog_parse(&cat, text, "<test models>", &err))
		fprintf(stderr, "test models: %s\n", err.text);
	return cat;
}

hs_device_t hs_test_device(const char *name, double mem_gb, double bw_gbs,
			   double tflops, double idle_w, double max_w,
			   unsigned n_levels, const double *levels)
{
	hs_device_t d;
	unsigned i;

	memset(&d, 0, sizeof(d));
	snprintf(d.name, sizeof(d.name), "%s", name);
	snprintf(d.profile, sizeof(d.profile), "%s", name);
	d.kind = HS_KIND_GPU;
	d.backend = HS_BACKEND_SIM;
	d.memory_bytes = (uint64_t)(mem_gb * 1e9);
	d.mem_bw_gbs = bw_gbs;
	d.peak_tflops = tflops;
	d.host_link_gbs = 32;
	d.idle_w = idle_w;
	d.max_w = max_w;
	d.numa_node = -1;
	d.cl_platform = -1;
	d.cl_device = -1;
	if (n_levels == 0) {
		d.n_levels = 1;
		d.levels[0].cap_w = max_w;
		d.levels[0].speed = 1;
	}
	for (i = 0; i < n_levels && i < HS_MAX_POWER_LEVELS; i++) {
		d.levels[i].cap_w = levels[2 * i];
		d.levels[i].speed = levels[2 * i + 1];
		d.n_levels = i + 1;
	}
	return d;
}
