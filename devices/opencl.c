/*
 * OpenCL discovery: every device of every platform the ICD loader knows,
 * CPU-type devices included (hwloc has no object for those), placed on the
 * machine through hwloc and matched to a device profile.
 *
 * A device that answers some queries and not others is kept with what it
 * did answer: each failed query is a warning and leaves its field unknown.
 */
#include <ctype.h>
#include <string.h>

#include <CL/cl_ext.h>
#include <hwloc/opencl.h>

#include "devices-internal.h"

/* A query and its name, for the warning when it fails. */
#define PARAM(param) param, #param

/* One device being probed: where it is, for the warnings that name it. */
struct probe {
	hs_node_t *node;
	cl_device_id id;
	unsigned platform;
	unsigned index;
	hs_device_t *dev;
};

static int warn_query(const struct probe *p, const char *param, cl_int rc)
{
	return hs__node_warn(p->node,
			     "OpenCL device %u.%u%s%s%s: %s failed (CL error "
			     "%d); left unknown",
			     p->platform, p->index, p->dev->name[0] ? " (" : "",
			     p->dev->name, p->dev->name[0] ? ")" : "", param,
			     (int)rc);
}

/* Copy src into dst without its leading and trailing blanks: some drivers
 * pad their device names to a fixed width. */
static void copy_trimmed(char *dst, size_t size, const char *src)
{
	size_t len;

	while (isspace((unsigned char)*src))
		src++;
	len = strlen(src);
	while (len > 0 && isspace((unsigned char)src[len - 1]))
		len--;
	if (len >= size)
		len = size - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/*
 * Strings are read at their full length and truncated here, because
 * clGetDeviceInfo refuses a buffer too short for the whole string.
 */
static int get_string(const struct probe *p, cl_device_info param,
		      const char *what, char *dst, size_t size)
{
	size_t len = 0;
	char *buf;
	cl_int rc;
	int err = 0;

	rc = clGetDeviceInfo(p->id, param, 0, NULL, &len);
	if (rc != CL_SUCCESS)
		return warn_query(p, what, rc);
	if (len == 0)
		return 0;

	buf = hs__malloc(len + 1);
	if (!buf)
		return HS_ENOMEM;
	rc = clGetDeviceInfo(p->id, param, len, buf, NULL);
	if (rc != CL_SUCCESS) {
		err = warn_query(p, what, rc);
		goto out_free_buf;
	}
	buf[len] = '\0';
	copy_trimmed(dst, size, buf);

out_free_buf:
	hs__free(buf);
	return err;
}

static int get_uint(const struct probe *p, cl_device_info param,
		    const char *what, unsigned *out)
{
	cl_uint v;
	cl_int rc;

	rc = clGetDeviceInfo(p->id, param, sizeof(v), &v, NULL);
	if (rc != CL_SUCCESS)
		return warn_query(p, what, rc);
	*out = v;
	return 0;
}

static int get_ulong(const struct probe *p, cl_device_info param,
		     const char *what, uint64_t *out)
{
	cl_ulong v;
	cl_int rc;

	rc = clGetDeviceInfo(p->id, param, sizeof(v), &v, NULL);
	if (rc != CL_SUCCESS)
		return warn_query(p, what, rc);
	*out = v;
	return 0;
}

/* A device can carry several type bits (DEFAULT among them); the most
 * specific one decides. *is_cpu is true only for a pure CPU device. */
static int get_kind(const struct probe *p, bool *is_cpu)
{
	cl_device_type type;
	cl_int rc;

	*is_cpu = false;
	rc = clGetDeviceInfo(p->id, CL_DEVICE_TYPE, sizeof(type), &type, NULL);
	if (rc != CL_SUCCESS)
		return warn_query(p, "CL_DEVICE_TYPE", rc);

	if (type & CL_DEVICE_TYPE_GPU) {
		p->dev->kind = HS_KIND_GPU;
	} else if (type &
		   (CL_DEVICE_TYPE_ACCELERATOR | CL_DEVICE_TYPE_CUSTOM)) {
		p->dev->kind = HS_KIND_ACCEL;
	} else if (type & CL_DEVICE_TYPE_CPU) {
		p->dev->kind = HS_KIND_CPU;
		*is_cpu = true;
	}
	return 0;
}

/*
 * The NUMA node a cpuset lives in, by OS index (the number numactl and
 * sysfs use); -1 when it spans several nodes and so has no single home.
 * Memory-only nodes have no CPUs and never match.
 */
static int numa_of(hwloc_topology_t topo, hwloc_const_cpuset_t set)
{
	hwloc_obj_t numa = NULL;
	int found = -1;

	while ((numa = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_NUMANODE,
						  numa)) != NULL) {
		if (!numa->cpuset ||
		    !hwloc_bitmap_intersects(numa->cpuset, set))
			continue;
		if (found >= 0)
			return -1;
		found = (int)numa->os_index;
	}
	return found;
}

/*
 * PCI bus id, cpuset and NUMA node. Only devices whose driver reports a
 * PCI address (AMD and NVIDIA extensions) have a known place; other
 * accelerators stay unplaced rather than claim the whole machine.
 */
static int locate(const struct probe *p, hwloc_topology_t topo, bool is_cpu)
{
	hs_device_t *dev = p->dev;
	unsigned domain, bus, slot, func;
	hwloc_bitmap_t set;
	int n;

	set = hwloc_bitmap_alloc();
	if (!set)
		return HS_ENOMEM;

	if (hwloc_opencl_get_device_pci_busid(p->id, &domain, &bus, &slot,
					      &func) == 0) {
		snprintf(dev->pci_busid, sizeof(dev->pci_busid),
			 "%04x:%02x:%02x.%x", domain, bus, slot, func);
		if (hwloc_opencl_get_device_cpuset(topo, p->id, set) < 0)
			goto out_free_set;
	} else if (is_cpu) {
		/*
		 * A CPU driver (PoCL, Intel's) runs its work items on
		 * threads that the OS may put on any core we may use, so the
		 * whole machine is where it lives: one NUMA node only when
		 * the machine has one. The topology's cpuset, not the
		 * complete one, leaves out offline and forbidden cores, as
		 * the cpu devices do.
		 */
		hwloc_bitmap_copy(set,
				  hwloc_topology_get_topology_cpuset(topo));
	} else {
		goto out_free_set;
	}

	/* A truncated list would name the wrong cores: keep none. */
	n = hwloc_bitmap_list_snprintf(dev->cpuset, sizeof(dev->cpuset), set);
	if (n < 0 || (size_t)n >= sizeof(dev->cpuset))
		dev->cpuset[0] = '\0';
	dev->numa_node = numa_of(topo, set);

out_free_set:
	hwloc_bitmap_free(set);
	return 0;
}

static int probe_device(hs_node_t *node, cl_device_id id, unsigned platform,
			unsigned index, hwloc_topology_t topo,
			const hs_profile_catalog_t *profiles)
{
	hs_device_t dev;
	struct probe p = {
		.node = node,
		.id = id,
		.platform = platform,
		.index = index,
		.dev = &dev,
	};
	const hs_profile_t *prof;
	bool is_cpu = false;
	int err;

	hs__device_init(&dev);
	dev.backend = HS_BACKEND_OPENCL;
	dev.cl_platform = (int)platform;
	dev.cl_device = (int)index;

	err = get_string(&p, PARAM(CL_DEVICE_NAME), dev.name, sizeof(dev.name));
	if (err)
		return err;
	/* Without a name, hwloc's name for the device still identifies it. */
	if (!dev.name[0])
		snprintf(dev.name, sizeof(dev.name), "opencl%ud%u", platform,
			 index);

	err = get_string(&p, PARAM(CL_DEVICE_VENDOR), dev.vendor,
			 sizeof(dev.vendor));
	if (!err)
		err = get_kind(&p, &is_cpu);
	if (!err)
		err = get_uint(&p, PARAM(CL_DEVICE_MAX_COMPUTE_UNITS),
			       &dev.compute_units);
	if (!err)
		err = get_uint(&p, PARAM(CL_DEVICE_MAX_CLOCK_FREQUENCY),
			       &dev.clock_mhz);
	if (!err)
		err = get_ulong(&p, PARAM(CL_DEVICE_GLOBAL_MEM_SIZE),
				&dev.memory_bytes);
	if (!err)
		err = get_ulong(&p, PARAM(CL_DEVICE_MAX_MEM_ALLOC_SIZE),
				&dev.max_alloc_bytes);
	if (!err)
		err = get_ulong(&p, PARAM(CL_DEVICE_LOCAL_MEM_SIZE),
				&dev.local_mem_bytes);
	if (!err)
		err = get_string(&p, PARAM(CL_DEVICE_VERSION), dev.version,
				 sizeof(dev.version));
	if (!err)
		err = get_string(&p, PARAM(CL_DRIVER_VERSION),
				 dev.driver_version,
				 sizeof(dev.driver_version));
	if (err)
		return err;

	if (topo) {
		err = locate(&p, topo, is_cpu);
		if (err)
			return err;
	}

	/* Applied last: the profile fills what the driver left unknown. */
	prof = hs_profile_catalog_match(profiles, dev.name, dev.kind);
	if (prof) {
		hs__device_apply_profile(&dev, prof);
	} else {
		err = hs__node_warn(node,
				    "OpenCL device %s: no %s profile matches; "
				    "its speed and power are unknown",
				    dev.name, hs_device_kind_name(dev.kind));
		if (err)
			return err;
	}

	return hs__node_add_device(node, &dev);
}

static int discover_platform(hs_node_t *node, cl_platform_id platform,
			     unsigned index, hwloc_topology_t topo,
			     const hs_profile_catalog_t *profiles)
{
	cl_device_id *ids;
	cl_uint n = 0, i;
	cl_int rc;
	int err = 0;

	rc = clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 0, NULL, &n);
	if (rc == CL_DEVICE_NOT_FOUND || (rc == CL_SUCCESS && n == 0))
		return 0;
	if (rc != CL_SUCCESS)
		return hs__node_warn(node,
				     "OpenCL platform %u: cannot list its "
				     "devices (CL error %d)",
				     index, (int)rc);

	ids = hs__calloc(n, sizeof(*ids));
	if (!ids)
		return HS_ENOMEM;
	rc = clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, n, ids, NULL);
	if (rc != CL_SUCCESS) {
		err = hs__node_warn(node,
				    "OpenCL platform %u: cannot list its "
				    "devices (CL error %d)",
				    index, (int)rc);
		goto out_free_ids;
	}

	for (i = 0; i < n; i++) {
		err = probe_device(node, ids[i], index, i, topo, profiles);
		if (err)
			goto out_free_ids;
	}

out_free_ids:
	hs__free(ids);
	return err;
}

int hs__opencl_discover(hs_node_t *node, hwloc_topology_t topo,
			const hs_profile_catalog_t *profiles)
{
	cl_platform_id *platforms;
	cl_uint n = 0, got = 0, i;
	cl_int rc;
	int err = 0;

	/* The ICD loader answers NOT_FOUND_KHR when no driver is installed:
	 * a node without OpenCL, not a failure. */
	rc = clGetPlatformIDs(0, NULL, &n);
	if (rc == CL_PLATFORM_NOT_FOUND_KHR || (rc == CL_SUCCESS && n == 0))
		return hs__node_warn(node, "no OpenCL platform found");
	if (rc != CL_SUCCESS)
		return hs__node_warn(node,
				     "no OpenCL platform found: cannot list "
				     "platforms (CL error %d)",
				     (int)rc);

	/* OpenCL devices are on this machine: a topology read from elsewhere
	 * says nothing about where they are. */
	if (topo && !hwloc_topology_is_thissystem(topo))
		topo = NULL;

	platforms = hs__calloc(n, sizeof(*platforms));
	if (!platforms)
		return HS_ENOMEM;
	rc = clGetPlatformIDs(n, platforms, &got);
	if (rc != CL_SUCCESS) {
		err = hs__node_warn(node,
				    "no OpenCL platform found: cannot list "
				    "platforms (CL error %d)",
				    (int)rc);
		goto out_free_platforms;
	}
	if (got < n)
		n = got;

	for (i = 0; i < n; i++) {
		err = discover_platform(node, platforms[i], i, topo, profiles);
		if (err)
			goto out_free_platforms;
	}

out_free_platforms:
	hs__free(platforms);
	return err;
}
