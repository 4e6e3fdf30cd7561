/* hetsched devices, hetsched models: the inventory and the catalog. */
#include <string.h>

#include "cli.h"
#include "devices-internal.h"

static void devices_usage(FILE *f)
{
	fprintf(f,
		"usage: hetsched devices [--topology FILE.xml | --inventory "
		"FILE.json] [--catalog FILE] [--no-opencl] [--json]\n"
		"\n"
		"List the node's devices: one cpu device per NUMA node "
		"(hwloc), "
		"every OpenCL\n"
		"device (ICD loader), their locality, memory and power "
		"figures. Power that no\n"
		"sensor measures is marked modeled.\n"
		"\n"
		"  --topology FILE.xml   read an hwloc XML topology instead of "
		"this machine;\n"
		"                        its GPUs become sim devices\n"
		"  --inventory FILE.json a node described by hand (sim "
		"devices)\n"
		"  --catalog FILE        device profiles (default: "
		"%s)\n"
		"  --no-opencl           skip OpenCL enumeration\n"
		"  --json                machine-readable output\n"
		"  --help                this text\n",
		hs__cli_data_path("devices.json"));
}

static void print_table(const hs_node_t *node)
{
	const hs_topology_info_t *t = hs_node_topology(node);
	char mem[32], cu[16], numa[16];
	size_t i;

	printf("node: %u package%s, %u NUMA node%s, %u cores, %u PUs, "
	       "%s%s%s\n\n",
	       t->packages, t->packages == 1 ? "" : "s", t->numa_nodes,
	       t->numa_nodes == 1 ? "" : "s", t->cores, t->pus,
	       hs__cli_bytes(t->memory_bytes, mem, sizeof(mem)),
	       t->cpu_model[0] ? ", " : "", t->cpu_model);
	printf("%-3s %-40s %-6s %-7s %5s %10s %4s %-12s %8s %8s %7s %7s %-8s "
	       "%s\n",
	       "ID", "NAME", "KIND", "BACKEND", "CU", "MEMORY", "NUMA",
	       "CPUSET", "TFLOP/S", "GB/S", "IDLE W", "MAX W", "POWER",
	       "PROFILE");
	for (i = 0; i < hs_node_device_count(node); i++) {
		const hs_device_t *d = hs_node_device(node, i);

		snprintf(cu, sizeof(cu), "%u", d->compute_units);
		snprintf(numa, sizeof(numa), "%d", d->numa_node);
		printf("%-3d %-40.40s %-6s %-7s %5s %10s %4s %-12.12s %8.1f "
		       "%8.0f %7.0f %7.0f %-8s %s\n",
		       d->id, d->name, hs_device_kind_name(d->kind),
		       hs_backend_name(d->backend), d->compute_units ? cu : "-",
		       hs__cli_bytes(d->memory_bytes, mem, sizeof(mem)),
		       d->numa_node >= 0 ? numa : "-",
		       d->cpuset[0] ? d->cpuset : "-", d->peak_tflops,
		       d->mem_bw_gbs, d->idle_w, d->max_w,
		       hs_sensor_name(d->sensor),
		       d->profile[0] ? d->profile : "(none)");
	}
	for (i = 0; i < hs_node_warning_count(node); i++)
		printf("%swarning: %s\n", i ? "" : "\n",
		       hs_node_warning(node, i));
	printf("\npower figures marked \"modeled\" come from the device "
	       "profile, not from a sensor.\n");
}

int hs__cmd_devices(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"topology", required_argument, NULL, 't'},
		{"inventory", required_argument, NULL, 'i'},
		{"catalog", required_argument, NULL, 'c'},
		{"no-opencl", no_argument, NULL, 'n'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	hs_discover_opts_t opts = {0};
	hs_profile_catalog_t *profiles = NULL;
	const char *catalog = NULL;
	hs_node_t *node = NULL;
	bool json = false;
	hs_error_t err;
	int status = HS_EXIT_USAGE;
	int c;

	while ((c = hs__cli_getopt("devices", argc, argv, "h", longopts)) !=
	       -1) {
		switch (c) {
		case 't':
			opts.topology_xml = optarg;
			break;
		case 'i':
			opts.inventory = optarg;
			break;
		case 'c':
			catalog = optarg;
			break;
		case 'n':
			opts.no_opencl = true;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			devices_usage(stdout);
			return HS_EXIT_OK;
		default:
			return HS_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "hetsched devices: unexpected argument '%s'\n",
			argv[optind]);
		return HS_EXIT_USAGE;
	}
	if (!catalog)
		catalog = hs__cli_data_path("devices.json");
	if (hs_profile_catalog_load(&profiles, catalog, &err)) {
		hs__cli_error("devices", &err);
		return HS_EXIT_USAGE;
	}
	opts.profiles = profiles;
	if (hs_node_discover(&node, &opts, &err)) {
		hs__cli_error("devices", &err);
		status = err.code == HS_ENOMEM || err.code == HS_EBACKEND
				 ? HS_EXIT_FAIL
				 : HS_EXIT_USAGE;
		goto out_free_profiles;
	}
	status = HS_EXIT_OK;
	if (json) {
		json_t *v = hs__node_to_json(node);

		if (hs__cli_print_json(v))
			status = HS_EXIT_FAIL;
		json_decref(v);
	} else {
		print_table(node);
	}
	hs_node_free(node);
out_free_profiles:
	hs_profile_catalog_free(profiles);
	return status;
}

static void models_usage(FILE *f)
{
	fprintf(f,
		"usage: hetsched models [--catalog FILE] [--json]\n"
		"\n"
		"List the model catalog: shapes, parameters (total and "
		"active), "
		"weight bytes and\n"
		"KV-cache bytes per token (derived from the shape, or given "
		"for "
		"latent attention).\n"
		"\n"
		"  --catalog FILE  model catalog (default: %s)\n"
		"  --json          machine-readable output\n"
		"  --help          this text\n",
		hs__cli_data_path("models.json"));
}

static json_t *model_to_json(const hs_model_t *m)
{
	return json_pack(
		"{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
		"s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:b, s:s}",
		"name", m->name, "family", m->family, "params",
		(json_int_t)m->params, "active_params",
		(json_int_t)m->active_params, "layers", (json_int_t)m->layers,
		"d_model", (json_int_t)m->d_model, "n_heads",
		(json_int_t)m->n_heads, "n_kv_heads", (json_int_t)m->n_kv_heads,
		"head_dim", (json_int_t)m->head_dim, "d_ff",
		(json_int_t)m->d_ff, "vocab", (json_int_t)m->vocab,
		"max_context", (json_int_t)m->max_context, "n_experts",
		(json_int_t)m->n_experts, "experts_per_token",
		(json_int_t)m->experts_per_token, "dtype_bytes",
		(json_int_t)m->dtype_bytes, "weight_bytes",
		(json_int_t)m->weight_bytes, "kv_bytes_per_token",
		(json_int_t)m->kv_bytes_per_token, "kv_bytes_given",
		m->kv_bytes_given, "runnable", m->runnable, "source",
		m->source);
}

static int print_models_json(const hs_model_catalog_t *cat)
{
	json_t *arr = json_array();
	json_t *root = json_pack("{s:o}", "models", arr);
	int rc = root ? 0 : HS_ENOMEM;
	size_t i;

	for (i = 0; !rc && i < hs_model_catalog_count(cat); i++)
		if (json_array_append_new(
			    arr, model_to_json(hs_model_catalog_get(cat, i))))
			rc = HS_ENOMEM;
	if (!rc)
		rc = hs__cli_print_json(root);
	json_decref(root);
	return rc;
}

static const char *count(uint64_t n, char *buf, size_t size)
{
	if (n >= 1000000000ull)
		snprintf(buf, size, "%.1fB", n / 1e9);
	else if (n >= 1000000ull)
		snprintf(buf, size, "%.1fM", n / 1e6);
	else
		snprintf(buf, size, "%.1fK", n / 1e3);
	return buf;
}

static void print_models_table(const hs_model_catalog_t *cat)
{
	char p[16], a[16], w[32], kv[32];
	size_t i;

	printf("%-16s %8s %8s %6s %7s %5s %4s %8s %10s %11s %s\n", "NAME",
	       "PARAMS", "ACTIVE", "LAYERS", "D_MODEL", "HEADS", "KV",
	       "CONTEXT", "WEIGHTS", "KV/TOKEN", "RUNNABLE");
	for (i = 0; i < hs_model_catalog_count(cat); i++) {
		const hs_model_t *m = hs_model_catalog_get(cat, i);

		snprintf(kv, sizeof(kv), "%s%s", m->kv_bytes_given ? "*" : "",
			 hs__cli_bytes(m->kv_bytes_per_token, w, sizeof(w)));
		printf("%-16s %8s %8s %6u %7u %5u %4u %8u %10s %11s %s\n",
		       m->name, count(m->params, p, sizeof(p)),
		       count(m->active_params, a, sizeof(a)), m->layers,
		       m->d_model, m->n_heads, m->n_kv_heads, m->max_context,
		       hs__cli_bytes(m->weight_bytes, w, sizeof(w)), kv,
		       m->runnable ? "yes" : "no");
	}
	printf("\n* KV bytes per token given by the catalog (latent "
	       "attention), not derived.\n");
}

int hs__cmd_models(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"catalog", required_argument, NULL, 'c'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	hs_model_catalog_t *cat = NULL;
	const char *path = NULL;
	bool json = false;
	hs_error_t err;
	int status = HS_EXIT_OK;
	int c;

	while ((c = hs__cli_getopt("models", argc, argv, "h", longopts)) !=
	       -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			models_usage(stdout);
			return HS_EXIT_OK;
		default:
			return HS_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "hetsched models: unexpected argument '%s'\n",
			argv[optind]);
		return HS_EXIT_USAGE;
	}
	if (!path)
		path = hs__cli_data_path("models.json");
	if (hs_model_catalog_load(&cat, path, &err)) {
		hs__cli_error("models", &err);
		return HS_EXIT_USAGE;
	}
	if (json) {
		if (print_models_json(cat))
			status = HS_EXIT_FAIL;
	} else {
		print_models_table(cat);
	}
	hs_model_catalog_free(cat);
	return status;
}
