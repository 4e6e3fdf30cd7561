/* A node: its topology, its devices and what discovery had to say. */
#include <string.h>

#include "devices-internal.h"

const char *hs_device_kind_name(hs_device_kind_t kind)
{
	switch (kind) {
	case HS_KIND_CPU:
		return "cpu";
	case HS_KIND_GPU:
		return "gpu";
	case HS_KIND_ACCEL:
		return "accelerator";
	}
	return "unknown";
}

const char *hs_backend_name(hs_backend_t backend)
{
	switch (backend) {
	case HS_BACKEND_CPU:
		return "cpu";
	case HS_BACKEND_OPENCL:
		return "opencl";
	case HS_BACKEND_SIM:
		return "sim";
	}
	return "unknown";
}

const char *hs_job_state_name(hs_job_state_t state)
{
	switch (state) {
	case HS_JOB_QUEUED:
		return "queued";
	case HS_JOB_RUNNING:
		return "running";
	case HS_JOB_DONE:
		return "done";
	case HS_JOB_CANCELLED:
		return "cancelled";
	case HS_JOB_REFUSED:
		return "refused";
	case HS_JOB_FAILED:
		return "failed";
	}
	return "unknown";
}

const char *hs_sensor_name(hs_sensor_t sensor)
{
	switch (sensor) {
	case HS_SENSOR_NONE:
		return "modeled";
	case HS_SENSOR_RAPL:
		return "rapl";
	case HS_SENSOR_HWMON:
		return "hwmon";
	case HS_SENSOR_NVML:
		return "nvml";
	}
	return "unknown";
}

void hs__device_init(hs_device_t *dev)
{
	memset(dev, 0, sizeof(*dev));
	dev->id = -1;
	dev->numa_node = -1;
	dev->cl_platform = -1;
	dev->cl_device = -1;
	dev->sensor = HS_SENSOR_NONE;
}

void hs__device_apply_profile(hs_device_t *dev, const hs_profile_t *p)
{
	hs__strlcpy(dev->profile, p->name, sizeof(dev->profile));
	if (!dev->vendor[0])
		hs__strlcpy(dev->vendor, p->vendor, sizeof(dev->vendor));
	if (!dev->memory_bytes)
		dev->memory_bytes = p->memory_bytes;
	dev->peak_tflops = p->peak_tflops;
	dev->mem_bw_gbs = p->mem_bw_gbs;
	dev->host_link_gbs = p->host_link_gbs;
	dev->idle_w = p->idle_w;
	dev->max_w = p->max_w;
	memcpy(dev->levels, p->levels, sizeof(dev->levels));
	dev->n_levels = p->n_levels;
	dev->price_usd = p->price_usd;
}

int hs__node_add_device(hs_node_t *node, const hs_device_t *dev)
{
	if (hs__grow((void **)&node->devices, &node->cap_devices,
		     node->n_devices + 1, sizeof(*node->devices)))
		return HS_ENOMEM;
	node->devices[node->n_devices] = *dev;
	node->devices[node->n_devices].id = (int)node->n_devices;
	node->n_devices++;
	return 0;
}

int hs__node_warn(hs_node_t *node, const char *fmt, ...)
{
	char text[512];
	va_list ap;
	char *w;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (hs__grow((void **)&node->warnings, &node->cap_warnings,
		     node->n_warnings + 1, sizeof(*node->warnings)))
		return HS_ENOMEM;
	w = hs__strdup(text);
	if (!w)
		return HS_ENOMEM;
	node->warnings[node->n_warnings++] = w;
	return 0;
}

void hs_node_free(hs_node_t *node)
{
	size_t i;

	if (!node)
		return;
	for (i = 0; i < node->n_warnings; i++)
		hs__free(node->warnings[i]);
	hs__free(node->warnings);
	hs__free(node->devices);
	hs__free(node);
}

/* This machine, an XML file or a synthetic description, through hwloc. */
static int discover_hwloc(hs_node_t *node, const hs_discover_opts_t *opts,
			  hs_error_t *err)
{
	bool real = !opts->topology_xml && !opts->topology_synthetic;
	hwloc_topology_t topo;
	int rc;

	rc = hs__topo_load(&topo, opts, err);
	if (rc)
		return rc;
	hs__topo_summary(topo, &node->topo);
	rc = hs__topo_add_cpus(node, topo, opts->profiles,
			       real ? HS_BACKEND_CPU : HS_BACKEND_SIM);
	if (!rc && opts->topology_xml)
		rc = hs__topo_add_gpus(node, topo, opts->profiles);
	if (!rc && real && !opts->no_opencl)
		rc = hs__opencl_discover(node, topo, opts->profiles);
	hwloc_topology_destroy(topo);
	if (!rc && real)
		hs__sensors_attach(node, opts->sysfs_root);
	if (rc)
		hs__error_set(err, rc, opts->topology_xml, 0, NULL,
			      "device discovery failed: %s", hs_strerror(rc));
	return rc;
}

int hs_node_discover(hs_node_t **out, const hs_discover_opts_t *opts,
		     hs_error_t *err)
{
	hs_node_t *node;
	int rc;

	hs__error_clear(err);
	*out = NULL;
	if (!opts)
		return hs__error_set(err, HS_EINVAL, NULL, 0, NULL,
				     "no discovery options");
	if (opts->inventory && (opts->topology_xml || opts->topology_synthetic))
		return hs__error_set(err, HS_EINVAL, NULL, 0, NULL,
				     "an inventory and a topology cannot be "
				     "combined");
	node = hs__calloc(1, sizeof(*node));
	if (!node)
		return hs__error_set(err, HS_ENOMEM, NULL, 0, NULL,
				     "out of memory");
	if (opts->inventory)
		rc = hs__inventory_load(node, opts->inventory, opts->profiles,
					err);
	else
		rc = discover_hwloc(node, opts, err);
	if (rc) {
		hs_node_free(node);
		return rc;
	}
	*out = node;
	return 0;
}

const hs_topology_info_t *hs_node_topology(const hs_node_t *node)
{
	return &node->topo;
}

size_t hs_node_device_count(const hs_node_t *node)
{
	return node->n_devices;
}

const hs_device_t *hs_node_device(const hs_node_t *node, size_t i)
{
	return i < node->n_devices ? &node->devices[i] : NULL;
}

size_t hs_node_warning_count(const hs_node_t *node)
{
	return node->n_warnings;
}

const char *hs_node_warning(const hs_node_t *node, size_t i)
{
	return i < node->n_warnings ? node->warnings[i] : NULL;
}

static json_t *str_or_null(const char *s)
{
	return s[0] ? json_string(s) : json_null();
}

json_t *hs__device_to_json(const hs_device_t *d)
{
	json_t *o = json_object(), *power = json_object(),
	       *levels = json_array();
	bool failed = !o || !power || !levels, *bad = &failed;
	unsigned i;

	for (i = 0; !failed && i < d->n_levels; i++)
		hs__json_push(levels,
			      json_pack("{s:f, s:f}", "cap_w",
					d->levels[i].cap_w, "speed",
					d->levels[i].speed),
			      bad);
	if (failed)
		goto out_fail;
	hs__json_put(power, "idle_w", json_real(d->idle_w), bad);
	hs__json_put(power, "max_w", json_real(d->max_w), bad);
	hs__json_put(power, "levels", levels, bad);
	levels = NULL;
	hs__json_put(power, "sensor", json_string(hs_sensor_name(d->sensor)),
		     bad);
	hs__json_put(power, "modeled",
		     json_boolean(d->sensor == HS_SENSOR_NONE), bad);

	hs__json_put(o, "id", json_integer(d->id), bad);
	hs__json_put(o, "name", json_string(d->name), bad);
	hs__json_put(o, "kind", json_string(hs_device_kind_name(d->kind)), bad);
	hs__json_put(o, "backend", json_string(hs_backend_name(d->backend)),
		     bad);
	hs__json_put(o, "vendor", json_string(d->vendor), bad);
	hs__json_put(o, "compute_units", json_integer(d->compute_units), bad);
	hs__json_put(o, "clock_mhz", json_integer(d->clock_mhz), bad);
	hs__json_put(o, "memory_bytes",
		     json_integer((json_int_t)d->memory_bytes), bad);
	hs__json_put(o, "max_alloc_bytes",
		     json_integer((json_int_t)d->max_alloc_bytes), bad);
	hs__json_put(o, "numa_node",
		     d->numa_node >= 0 ? json_integer(d->numa_node)
				       : json_null(),
		     bad);
	hs__json_put(o, "cpuset", str_or_null(d->cpuset), bad);
	hs__json_put(o, "pci_busid", str_or_null(d->pci_busid), bad);
	hs__json_put(o, "version", str_or_null(d->version), bad);
	hs__json_put(o, "driver_version", str_or_null(d->driver_version), bad);
	hs__json_put(o, "peak_tflops", json_real(d->peak_tflops), bad);
	hs__json_put(o, "mem_bw_gbs", json_real(d->mem_bw_gbs), bad);
	hs__json_put(o, "host_link_gbs", json_real(d->host_link_gbs), bad);
	hs__json_put(o, "price_usd", json_real(d->price_usd), bad);
	hs__json_put(o, "power", power, bad);
	power = NULL;
	hs__json_put(o, "profile", str_or_null(d->profile), bad);
	if (failed)
		goto out_fail;
	return o;
out_fail:
	json_decref(levels);
	json_decref(power);
	json_decref(o);
	return NULL;
}

json_t *hs__node_to_json(const hs_node_t *node)
{
	const hs_topology_info_t *t = &node->topo;
	json_t *root, *topo, *devs, *warns;
	bool failed;
	size_t i;

	root = json_object();
	topo = json_pack("{s:I, s:I, s:I, s:I, s:I, s:s}", "packages",
			 (json_int_t)t->packages, "numa_nodes",
			 (json_int_t)t->numa_nodes, "cores",
			 (json_int_t)t->cores, "pus", (json_int_t)t->pus,
			 "memory_bytes", (json_int_t)t->memory_bytes,
			 "cpu_model", t->cpu_model);
	devs = json_array();
	warns = json_array();
	failed = !root || !topo || !devs || !warns;
	for (i = 0; !failed && i < node->n_devices; i++)
		if (json_array_append_new(
			    devs, hs__device_to_json(&node->devices[i])))
			failed = true;
	for (i = 0; !failed && i < node->n_warnings; i++)
		if (json_array_append_new(warns,
					  json_string(node->warnings[i])))
			failed = true;
	if (failed) {
		json_decref(topo);
		json_decref(devs);
		json_decref(warns);
		json_decref(root);
		return NULL;
	}
	failed = false;
	hs__json_put(root, "topology", topo, &failed);
	hs__json_put(root, "devices", devs, &failed);
	hs__json_put(root, "warnings", warns, &failed);
	if (failed) {
		json_decref(root);
		return NULL;
	}
	return root;
}
