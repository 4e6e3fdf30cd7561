/* A node described by hand: every device a sim device of a known profile. */
#include <string.h>

#include "devices-internal.h"

#define MAX_PER_ENTRY 4096

static int parse_entry(hs_node_t *node, hs__jv_t *jv, const json_t *o,
		       const hs_profile_catalog_t *profiles)
{
	static const char *const keys[] = {
		"profile", "count", "numa_node", "name", "compute_units", NULL};
	char pname[64], name[128] = "";
	const hs_profile_t *p;
	unsigned cu = 0;
	hs_device_t dev;
	int numa = -1;
	int count = 1;
	hs__jv_t c;
	int i, rc;

	if ((rc = hs__jv_expect_object(jv, o)) ||
	    (rc = hs__jv_check_keys(jv, o, keys)) ||
	    (rc = hs__jv_string(jv, o, "profile", true, pname,
				sizeof(pname))) ||
	    (rc = hs__jv_int(jv, o, "count", false, &count, 1,
			     MAX_PER_ENTRY)) ||
	    (rc = hs__jv_int(jv, o, "numa_node", false, &numa, 0, 1023)) ||
	    (rc = hs__jv_string(jv, o, "name", false, name, sizeof(name))) ||
	    (rc = hs__jv_u32(jv, o, "compute_units", false, &cu, 1, 1u << 20)))
		return rc;
	p = hs_profile_catalog_find(profiles, pname);
	if (!p) {
		hs__jv_child_key(&c, jv, "profile");
		return hs__error_set(jv->err, HS_ENOENT, jv->source, 0, c.path,
				     "unknown device profile \"%s\" (see "
				     "data/devices.json)",
				     pname);
	}
	for (i = 0; i < count; i++) {
		hs__device_init(&dev);
		hs__strlcpy(dev.name, name[0] ? name : p->name,
			    sizeof(dev.name));
		dev.kind = p->kind;
		dev.backend = HS_BACKEND_SIM;
		dev.numa_node = numa;
		dev.compute_units = cu;
		hs__device_apply_profile(&dev, p);
		if (hs__node_add_device(node, &dev))
			return hs__error_set(jv->err, HS_ENOMEM, jv->source, 0,
					     NULL, "out of memory");
	}
	return 0;
}

static int parse_topology(hs_node_t *node, hs__jv_t *jv, const json_t *root)
{
	static const char *const keys[] = {"packages", "numa_nodes", "cores",
					   "pus",      "memory_gib", NULL};
	hs_topology_info_t *t = &node->topo;
	json_t *o = json_object_get(root, "topology");
	double mem_gib = 0;
	hs__jv_t c;
	int rc;

	if (!o)
		return 0;
	hs__jv_child_key(&c, jv, "topology");
	if ((rc = hs__jv_expect_object(&c, o)) ||
	    (rc = hs__jv_check_keys(&c, o, keys)) ||
	    (rc = hs__jv_u32(&c, o, "packages", true, &t->packages, 1, 1024)) ||
	    (rc = hs__jv_u32(&c, o, "numa_nodes", true, &t->numa_nodes, 1,
			     1024)) ||
	    (rc = hs__jv_u32(&c, o, "cores", true, &t->cores, 1, 1u << 20)) ||
	    (rc = hs__jv_u32(&c, o, "pus", true, &t->pus, 1, 1u << 20)) ||
	    (rc = hs__jv_double(&c, o, "memory_gib", true, &mem_gib, 1e-3,
				1e7)))
		return rc;
	t->memory_bytes = (uint64_t)(mem_gib * 1024.0 * 1024.0 * 1024.0);
	return 0;
}

/* Without a "topology" object, count the CPU devices as sockets. */
static void derive_topology(hs_node_t *node)
{
	hs_topology_info_t *t = &node->topo;
	size_t i;

	if (t->packages)
		return;
	for (i = 0; i < node->n_devices; i++) {
		const hs_device_t *d = &node->devices[i];

		if (d->kind != HS_KIND_CPU)
			continue;
		t->packages++;
		t->numa_nodes++;
		t->cores += d->compute_units;
		t->pus += d->compute_units;
		t->memory_bytes += d->memory_bytes;
	}
}

int hs__inventory_load(hs_node_t *node, const char *path,
		       const hs_profile_catalog_t *profiles, hs_error_t *err)
{
	static const char *const keys[] = {"version", "name", "topology",
					   "devices", NULL};
	hs__jv_t jv = {.source = path, .err = err, .path = "$"};
	char name[64] = "";
	json_t *root, *arr, *o;
	int version = 1;
	hs__jv_t list, e;
	size_t i;
	int rc;

	root = hs__json_load_file(path, err);
	if (!root)
		return err ? err->code : HS_EPARSE;
	if ((rc = hs__jv_expect_object(&jv, root)) ||
	    (rc = hs__jv_check_keys(&jv, root, keys)) ||
	    (rc = hs__jv_int(&jv, root, "version", false, &version, 1, 1)) ||
	    (rc = hs__jv_string(&jv, root, "name", false, name,
				sizeof(name))) ||
	    (rc = parse_topology(node, &jv, root)))
		goto out_put;
	arr = json_object_get(root, "devices");
	hs__jv_child_key(&list, &jv, "devices");
	if (!arr) {
		rc = hs__error_set(err, HS_EMISSING, path, 0, "$",
				   "missing required key \"devices\"");
		goto out_put;
	}
	if ((rc = hs__jv_expect_array(&list, arr)))
		goto out_put;
	if (json_array_size(arr) == 0) {
		rc = hs__error_set(err, HS_EINVAL, path, 0, list.path,
				   "the inventory has no devices");
		goto out_put;
	}
	json_array_foreach (arr, i, o) {
		hs__jv_child_index(&e, &list, i);
		if ((rc = parse_entry(node, &e, o, profiles)))
			goto out_put;
	}
	derive_topology(node);
out_put:
	json_decref(root);
	return rc;
}
