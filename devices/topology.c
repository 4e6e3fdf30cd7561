/*
 * hwloc discovery: the node's packages, NUMA nodes and cores, one cpu
 * device per NUMA node, and the GPUs and co-processors of an XML topology
 * as sim devices.
 *
 * hwloc reports one GPU several times, once per backend that sees it (CUDA
 * "cuda0", NVML "nvml0", OpenCL "opencl0d0"); the PCI device they hang
 * from is what makes them one device.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "devices-internal.h"

static int load_xml(hwloc_topology_t topo, const char *path, hs_error_t *err)
{
	FILE *f;

	/* hwloc says only "invalid argument" for a file it cannot read. */
	f = fopen(path, "r");
	if (!f)
		return hs__error_set(
			err, errno == ENOENT ? HS_ENOENT : HS_EIO, path, 0,
			NULL, "cannot open the topology: %s", strerror(errno));
	fclose(f);
	if (hwloc_topology_set_xml(topo, path) < 0)
		return hs__error_set(err, HS_EPARSE, path, 0, NULL,
				     "not a valid hwloc XML topology");
	/* What the file describes is what the user wants scheduled. */
	hwloc_topology_set_type_filter(topo, HWLOC_OBJ_OS_DEVICE,
				       HWLOC_TYPE_FILTER_KEEP_ALL);
	return 0;
}

int hs__topo_load(hwloc_topology_t *out, const hs_discover_opts_t *opts,
		  hs_error_t *err)
{
	const char *xml = opts ? opts->topology_xml : NULL;
	const char *synth = opts ? opts->topology_synthetic : NULL;
	const char *source = xml ? xml : synth ? "<synthetic>" : "<hwloc>";
	hwloc_topology_t topo;
	int rc;

	*out = NULL;
	if (hwloc_topology_init(&topo) < 0)
		return hs__error_set(err, HS_ENOMEM, source, 0, NULL,
				     "cannot initialise hwloc: %s",
				     strerror(errno));
	hwloc_topology_set_io_types_filter(topo,
					   HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
	if (xml) {
		rc = load_xml(topo, xml, err);
		if (rc)
			goto out_destroy;
	} else if (synth) {
		if (hwloc_topology_set_synthetic(topo, synth) < 0) {
			rc = hs__error_set(err, HS_EPARSE, source, 0, NULL,
					   "invalid synthetic topology \"%s\"",
					   synth);
			goto out_destroy;
		}
	}
	if (hwloc_topology_load(topo) < 0) {
		/* Well-formed XML that hwloc rejects (another schema, no
		 * Machine, inconsistent sets) fails here, not above. */
		if (xml)
			rc = hs__error_set(err, HS_EPARSE, source, 0, NULL,
					   "not a valid hwloc XML topology "
					   "(hwloc cannot build it: %s)",
					   strerror(errno));
		else
			rc = hs__error_set(
				err, HS_EBACKEND, source, 0, NULL,
				"hwloc cannot build the topology: %s",
				strerror(errno));
		goto out_destroy;
	}
	*out = topo;
	return 0;
out_destroy:
	hwloc_topology_destroy(topo);
	return rc;
}

/* An info attribute of obj or of its nearest ancestor that has it. */
static const char *inherited_info(hwloc_obj_t obj, const char *name)
{
	const char *v;

	for (; obj; obj = obj->parent) {
		v = hwloc_obj_get_info_by_name(obj, name);
		if (v && v[0])
			return v;
	}
	return NULL;
}

void hs__topo_summary(hwloc_topology_t topo, hs_topology_info_t *info)
{
	hwloc_obj_t root = hwloc_get_root_obj(topo);
	hwloc_obj_t numa = NULL, pkg;
	const char *model = NULL;
	int n;

	memset(info, 0, sizeof(*info));
	n = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE);
	info->packages = n > 0 ? (unsigned)n : 0;
	n = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
	info->numa_nodes = n > 0 ? (unsigned)n : 0;
	n = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
	info->cores = n > 0 ? (unsigned)n : 0;
	n = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
	info->pus = n > 0 ? (unsigned)n : 0;

	while ((numa = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_NUMANODE,
						  numa)))
		info->memory_bytes += numa->attr->numanode.local_memory;
	if (!info->memory_bytes)
		info->memory_bytes = root->total_memory;

	/* Some platforms put the CPU model on the machine, not a package. */
	pkg = hwloc_get_obj_by_type(topo, HWLOC_OBJ_PACKAGE, 0);
	if (pkg)
		model = hwloc_obj_get_info_by_name(pkg, "CPUModel");
	if (!model)
		model = hwloc_obj_get_info_by_name(root, "CPUModel");
	hs__strlcpy(info->cpu_model, model ? model : "",
		    sizeof(info->cpu_model));
}

/* Record a cpuset in hwloc's list syntax; false if it did not fit. */
static bool format_cpuset(char *buf, size_t size, hwloc_const_cpuset_t set)
{
	int n;

	if (!set) {
		buf[0] = '\0';
		return true;
	}
	n = hwloc_bitmap_list_snprintf(buf, size, set);
	return n >= 0 && (size_t)n < size;
}

/* One cpu device for the CPUs of set, with the memory of numa (may be
 * NULL: the whole machine). */
static int add_cpu(hs_node_t *node, hwloc_topology_t topo, hwloc_obj_t numa,
		   hwloc_const_cpuset_t set,
		   const hs_profile_catalog_t *profiles, hs_backend_t backend)
{
	const char *model = NULL, *vendor = NULL;
	const hs_profile_t *p;
	hwloc_obj_t pu;
	hs_device_t dev;
	int cores, rc;

	hs__device_init(&dev);
	dev.kind = HS_KIND_CPU;
	dev.backend = backend;

	/* A NUMA node may hang above several packages: ask its first PU. */
	pu = hwloc_get_next_obj_inside_cpuset_by_type(topo, set, HWLOC_OBJ_PU,
						      NULL);
	if (pu) {
		model = inherited_info(pu, "CPUModel");
		vendor = inherited_info(pu, "CPUVendor");
	}
	hs__strlcpy(dev.name, model ? model : "CPU", sizeof(dev.name));
	hs__strlcpy(dev.vendor, vendor ? vendor : "", sizeof(dev.vendor));

	cores = hwloc_get_nbobjs_inside_cpuset_by_type(topo, set,
						       HWLOC_OBJ_CORE);
	if (cores <= 0)
		cores = hwloc_get_nbobjs_inside_cpuset_by_type(topo, set,
							       HWLOC_OBJ_PU);
	dev.compute_units = cores > 0 ? (unsigned)cores : 0;
	if (numa) {
		dev.memory_bytes = numa->attr->numanode.local_memory;
		dev.numa_node = (int)numa->os_index;
	} else {
		dev.memory_bytes = hwloc_get_root_obj(topo)->total_memory;
	}
	if (!format_cpuset(dev.cpuset, sizeof(dev.cpuset), set)) {
		rc = hs__node_warn(
			node,
			"cpu device %s (NUMA node %d): its cpuset is too long "
			"to record and was cut to \"%s\"",
			dev.name, dev.numa_node, dev.cpuset);
		if (rc)
			return rc;
	}

	p = hs_profile_catalog_match(profiles, dev.name, HS_KIND_CPU);
	if (p) {
		hs__device_apply_profile(&dev, p);
	} else {
		rc = hs__node_warn(node,
				   "cpu device %s (NUMA node %d): %s; its "
				   "speed and power are unknown",
				   dev.name, dev.numa_node,
				   profiles ? "no cpu profile in the catalog "
					      "matches that name"
					    : "no profile catalog was given");
		if (rc)
			return rc;
	}
	return hs__node_add_device(node, &dev);
}

int hs__topo_add_cpus(hs_node_t *node, hwloc_topology_t topo,
		      const hs_profile_catalog_t *profiles,
		      hs_backend_t backend)
{
	hwloc_obj_t numa = NULL;
	bool any = false;
	int rc;

	while ((numa = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_NUMANODE,
						  numa))) {
		/* Memory without CPUs (CXL, HBM-only, GPU memory) runs
		 * nothing: it is not a cpu device. */
		if (!numa->cpuset || hwloc_bitmap_iszero(numa->cpuset))
			continue;
		rc = add_cpu(node, topo, numa, numa->cpuset, profiles, backend);
		if (rc)
			return rc;
		any = true;
	}
	if (any)
		return 0;
	return add_cpu(node, topo, NULL,
		       hwloc_topology_get_topology_cpuset(topo), profiles,
		       backend);
}

/* ------------------------------------------------------------------------ */
/* GPUs and co-processors                                                   */
/* ------------------------------------------------------------------------ */

/* What the OS devices of one PCI device say about it, together. */
struct gpu {
	hwloc_obj_t key; /* the PCI device, or the lone OS device */
	hwloc_obj_t pci; /* NULL when not on PCI */
	char name[128];
	int name_rank; /* how much the name is trusted */
	char vendor[64];
	char backends[96]; /* "CUDA, NVML, OpenCL" */
	bool is_gpu;
	uint64_t memory_bytes;
	unsigned compute_units;
};

struct gpu_list {
	struct gpu *v;
	size_t n;
	size_t cap;
};

static bool info_is(hwloc_obj_t obj, const char *name, const char *value)
{
	const char *v = hwloc_obj_get_info_by_name(obj, name);

	return v && !strcasecmp(v, value);
}

/* A backend name for an OS device: its Backend attribute, its subtype
 * (hwloc 2 files the backend there too), or its name. */
static const char *osdev_backend(hwloc_obj_t osdev)
{
	const char *b = hwloc_obj_get_info_by_name(osdev, "Backend");

	if (b && b[0])
		return b;
	if (osdev->subtype && osdev->subtype[0])
		return osdev->subtype;
	return osdev->name ? osdev->name : "?";
}

/*
 * Names from the vendor libraries (CUDA, NVML, ROCm SMI) are the marketing
 * names the catalog is written against; OpenCL and Level Zero names come
 * next, then the PCI database, then hwloc's own name ("cuda0").
 */
static int name_rank(const char *backend)
{
	if (!strcasecmp(backend, "CUDA") || !strcasecmp(backend, "NVML") ||
	    !strcasecmp(backend, "RSMI"))
		return 4;
	return 3;
}

static uint64_t info_u64(hwloc_obj_t obj, const char *name)
{
	const char *v = hwloc_obj_get_info_by_name(obj, name);
	unsigned long long x;
	char *end;

	if (!v)
		return 0;
	errno = 0;
	x = strtoull(v, &end, 10);
	if (errno || end == v)
		return 0;
	return x;
}

static void add_backend(struct gpu *g, const char *backend)
{
	size_t len = strlen(g->backends), blen = strlen(backend);
	const char *s = g->backends;

	/* A backend already listed is not listed again. */
	while ((s = strstr(s, backend))) {
		if ((s == g->backends || s[-1] == ' ') &&
		    (s[blen] == '\0' || s[blen] == ','))
			return;
		s += blen;
	}
	snprintf(g->backends + len, sizeof(g->backends) - len, "%s%s",
		 len ? ", " : "", backend);
}

static int find_or_add(struct gpu_list *l, hwloc_obj_t key, struct gpu **out)
{
	size_t i;

	for (i = 0; i < l->n; i++) {
		if (l->v[i].key == key) {
			*out = &l->v[i];
			return 0;
		}
	}
	if (hs__grow((void **)&l->v, &l->cap, l->n + 1, sizeof(*l->v)))
		return HS_ENOMEM;
	*out = &l->v[l->n++];
	memset(*out, 0, sizeof(**out));
	(*out)->key = key;
	(*out)->name_rank = -1;
	return 0;
}

static void merge_osdev(struct gpu *g, hwloc_obj_t osdev)
{
	const char *backend = osdev_backend(osdev);
	const char *model, *vendor;
	uint64_t mem;
	int rank;

	add_backend(g, backend);

	if (osdev->attr->osdev.type == HWLOC_OBJ_OSDEV_GPU ||
	    !strcasecmp(backend, "CUDA") ||
	    info_is(osdev, "OpenCLDeviceType", "GPU") ||
	    info_is(osdev, "LevelZeroDeviceType", "GPU"))
		g->is_gpu = true;

	model = hwloc_obj_get_info_by_name(osdev, "GPUModel");
	rank = model && model[0] ? name_rank(backend) : 0;
	if (!rank)
		model = osdev->name;
	if (rank > g->name_rank && model) {
		hs__strlcpy(g->name, model, sizeof(g->name));
		g->name_rank = rank;
	}
	vendor = hwloc_obj_get_info_by_name(osdev, "GPUVendor");
	if (!g->vendor[0] && vendor)
		hs__strlcpy(g->vendor, vendor, sizeof(g->vendor));

	/* hwloc reports device memory in KiB. */
	mem = info_u64(osdev, "CUDAGlobalMemorySize");
	if (!mem)
		mem = info_u64(osdev, "OpenCLGlobalMemorySize");
	if (mem && !g->memory_bytes)
		g->memory_bytes = mem * 1024;
	if (!g->compute_units) {
		g->compute_units =
			(unsigned)info_u64(osdev, "CUDAMultiProcessors");
		if (!g->compute_units)
			g->compute_units =
				(unsigned)info_u64(osdev, "OpenCLComputeUnits");
	}
}

/* The PCI database names a device when no backend did better. */
static void merge_pci(struct gpu *g)
{
	const char *v;

	if (!g->pci)
		return;
	if ((g->pci->attr->pcidev.class_id >> 8) == 0x03)
		g->is_gpu = true;
	v = hwloc_obj_get_info_by_name(g->pci, "PCIDevice");
	if (v && v[0] && g->name_rank < 2) {
		hs__strlcpy(g->name, v, sizeof(g->name));
		g->name_rank = 2;
	}
	v = hwloc_obj_get_info_by_name(g->pci, "PCIVendor");
	if (!g->vendor[0] && v)
		hs__strlcpy(g->vendor, v, sizeof(g->vendor));
}

/* Where the device sits: the cpuset and NUMA node of its nearest non-I/O
 * ancestor. A device hanging from the whole machine has no NUMA node. */
static void locate_gpu(hwloc_topology_t topo, const struct gpu *g,
		       hs_device_t *dev)
{
	hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(topo, g->key);
	int first;

	if (!anc)
		return;
	format_cpuset(dev->cpuset, sizeof(dev->cpuset), anc->cpuset);
	if (!anc->nodeset || hwloc_bitmap_iszero(anc->nodeset))
		return;
	if (hwloc_bitmap_weight(anc->nodeset) > 1 &&
	    anc == hwloc_get_root_obj(topo))
		return;
	first = hwloc_bitmap_first(anc->nodeset);
	if (first >= 0)
		dev->numa_node = first;
}

static int add_gpu(hs_node_t *node, hwloc_topology_t topo, const struct gpu *g,
		   const hs_profile_catalog_t *profiles)
{
	const hs_profile_t *p;
	hs_device_t dev;
	int rc;

	hs__device_init(&dev);
	dev.kind = g->is_gpu ? HS_KIND_GPU : HS_KIND_ACCEL;
	dev.backend = HS_BACKEND_SIM;
	hs__strlcpy(dev.name, g->name[0] ? g->name : "unnamed device",
		    sizeof(dev.name));
	hs__strlcpy(dev.vendor, g->vendor, sizeof(dev.vendor));
	dev.memory_bytes = g->memory_bytes;
	dev.compute_units = g->compute_units;
	if (g->pci)
		snprintf(dev.pci_busid, sizeof(dev.pci_busid),
			 "%04x:%02x:%02x.%01x",
			 (unsigned)g->pci->attr->pcidev.domain,
			 (unsigned)g->pci->attr->pcidev.bus,
			 (unsigned)g->pci->attr->pcidev.dev,
			 (unsigned)g->pci->attr->pcidev.func);
	locate_gpu(topo, g, &dev);

	/* gpu and accelerator profiles match either kind, which matters
	 * here: hwloc files CUDA devices as co-processors. */
	p = hs_profile_catalog_match(profiles, dev.name, dev.kind);
	if (p) {
		/* The catalog knows a GPU from an accelerator better than
		 * hwloc's device types do. */
		dev.kind = p->kind;
		hs__device_apply_profile(&dev, p);
	} else {
		rc = hs__node_warn(
			node,
			"%s \"%s\" (%s%s, reported by %s): %s; kept with "
			"unknown speed and power",
			hs_device_kind_name(dev.kind), dev.name,
			dev.pci_busid[0] ? "PCI " : "not on PCI", dev.pci_busid,
			g->backends,
			profiles ? "no profile in the catalog matches that name"
				 : "no profile catalog was given");
		if (rc)
			return rc;
	}
	return hs__node_add_device(node, &dev);
}

int hs__topo_add_gpus(hs_node_t *node, hwloc_topology_t topo,
		      const hs_profile_catalog_t *profiles)
{
	struct gpu_list list = {0};
	hwloc_obj_t osdev = NULL, parent;
	struct gpu *g;
	size_t i;
	int rc = 0;

	while ((osdev = hwloc_get_next_osdev(topo, osdev))) {
		if (osdev->attr->osdev.type != HWLOC_OBJ_OSDEV_GPU &&
		    osdev->attr->osdev.type != HWLOC_OBJ_OSDEV_COPROC)
			continue;
		parent = osdev->parent;
		if (parent && parent->type != HWLOC_OBJ_PCI_DEVICE)
			parent = NULL;
		rc = find_or_add(&list, parent ? parent : osdev, &g);
		if (rc)
			goto out_free_list;
		g->pci = parent;
		merge_osdev(g, osdev);
	}
	for (i = 0; i < list.n; i++) {
		merge_pci(&list.v[i]);
		rc = add_gpu(node, topo, &list.v[i], profiles);
		if (rc)
			goto out_free_list;
	}
out_free_list:
	hs__free(list.v);
	return rc;
}
