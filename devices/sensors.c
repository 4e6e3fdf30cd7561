/*
 * Power sensors: RAPL package energy through powercap, hwmon power files
 * of PCI devices, and NVML for NVIDIA GPUs. A device with none keeps
 * HS_SENSOR_NONE and its power is modeled.
 *
 * Only devices that run here (backend cpu or opencl) get a sensor: a sim
 * device read from an XML topology describes another machine, and a sensor
 * of this one would lie about it.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "devices-internal.h"

/* Paths that do not fit a device's sensor_path are not sensors. */
#define SENSOR_PATH_SIZE sizeof(((hs_device_t *)0)->sensor_path)

/* Build a path; false when it does not fit, and the caller skips it. */
static bool HS__PRINTF(3, 4)
	path_fmt(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n >= 0 && (size_t)n < size;
}

static bool runs_here(const hs_device_t *dev)
{
	return dev->backend == HS_BACKEND_CPU ||
	       dev->backend == HS_BACKEND_OPENCL;
}

/* The first line of a small sysfs file, without its newline. */
static int read_line(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	int rc = 0;

	if (!f)
		return HS_EIO;
	if (!fgets(buf, (int)size, f))
		rc = HS_EIO;
	else
		buf[strcspn(buf, "\n")] = '\0';
	fclose(f);
	return rc;
}

static int read_u64(const char *path, uint64_t *out)
{
	unsigned long long v;
	char buf[64], *end;
	int rc;

	rc = read_line(path, buf, sizeof(buf));
	if (rc)
		return rc;
	errno = 0;
	v = strtoull(buf, &end, 10);
	if (errno || end == buf || *end != '\0')
		return HS_EPARSE;
	*out = v;
	return 0;
}

/* "0000:17:00.0" and NVML's "00000000:17:00.0" alike, as dddd:bb:dd.f in
 * lower case; false if s is not a PCI bus id. */
static bool busid_normalize(const char *s, char *out, size_t size)
{
	unsigned dom, bus, dev, fn;
	int end = 0;

	if (sscanf(s, "%x:%x:%x.%x%n", &dom, &bus, &dev, &fn, &end) != 4 ||
	    s[end] != '\0' || dom > 0xffff || bus > 0xff || dev > 0x1f ||
	    fn > 7)
		return false;
	snprintf(out, size, "%04x:%02x:%02x.%x", dom, bus, dev, fn);
	return true;
}

/* The device of the node, running here and still without a sensor, on the
 * PCI device busid; NULL if none. */
static hs_device_t *device_on_pci(hs_node_t *node, const char *busid)
{
	char want[32], have[32];
	size_t i;

	if (!busid_normalize(busid, want, sizeof(want)))
		return NULL;
	for (i = 0; i < node->n_devices; i++) {
		hs_device_t *dev = &node->devices[i];

		if (!runs_here(dev) || dev->sensor != HS_SENSOR_NONE ||
		    !busid_normalize(dev->pci_busid, have, sizeof(have)))
			continue;
		if (!strcmp(want, have))
			return dev;
	}
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* RAPL                                                                     */
/* ------------------------------------------------------------------------ */

/* The package of a cpu device: that of the first CPU of its cpuset, as
 * sysfs tells it. -1 if unknown. */
static int cpu_device_package(const char *root, const hs_device_t *dev)
{
	char path[PATH_MAX];
	hwloc_bitmap_t set;
	uint64_t pkg;
	int cpu;

	if (!dev->cpuset[0])
		return -1;
	set = hwloc_bitmap_alloc();
	if (!set)
		return -1;
	cpu = hwloc_bitmap_list_sscanf(set, dev->cpuset) < 0
		      ? -1
		      : hwloc_bitmap_first(set);
	hwloc_bitmap_free(set);
	if (cpu < 0)
		return -1;
	if (!path_fmt(
		    path, sizeof(path),
		    "%s/devices/system/cpu/cpu%d/topology/physical_package_id",
		    root, cpu) ||
	    read_u64(path, &pkg) || pkg > INT_MAX)
		return -1;
	return (int)pkg;
}

/*
 * Give the package-N energy counter to the cpu devices of package N. When
 * sysfs does not say which package a device's CPUs are on, devices are
 * taken to follow package order (the n-th cpu device on package n), which
 * holds for one NUMA node per package but not for sub-NUMA clustering.
 * With several NUMA nodes per package every one of them gets the package
 * counter: the figure is the package's, shared, not the node's.
 */
static void attach_rapl_zone(hs_node_t *node, const char *root, unsigned pkg,
			     const char *energy)
{
	size_t i, nth = 0;

	for (i = 0; i < node->n_devices; i++) {
		hs_device_t *dev = &node->devices[i];
		int dev_pkg;

		if (dev->kind != HS_KIND_CPU || dev->backend != HS_BACKEND_CPU)
			continue;
		dev_pkg = cpu_device_package(root, dev);
		if (dev_pkg < 0)
			dev_pkg = (int)nth;
		nth++;
		if (dev_pkg != (int)pkg || dev->sensor != HS_SENSOR_NONE)
			continue;
		dev->sensor = HS_SENSOR_RAPL;
		hs__strlcpy(dev->sensor_path, energy, sizeof(dev->sensor_path));
	}
}

static void attach_rapl(hs_node_t *node, const char *root)
{
	char dir[PATH_MAX], path[PATH_MAX], name[64];
	char energy[SENSOR_PATH_SIZE];
	struct dirent *de;
	unsigned zone, pkg;
	uint64_t uj;
	DIR *d;
	int end;

	if (!path_fmt(dir, sizeof(dir), "%s/class/powercap", root))
		return;
	d = opendir(dir);
	if (!d)
		return;
	while ((de = readdir(d))) {
		/* Top-level zones only: "intel-rapl:0:0" is a sub-zone
		 * (core, uncore, dram) of package 0. */
		end = 0;
		if (sscanf(de->d_name, "intel-rapl:%u%n", &zone, &end) != 1 ||
		    de->d_name[end] != '\0')
			continue;
		if (!path_fmt(path, sizeof(path), "%s/%s/name", dir,
			      de->d_name) ||
		    read_line(path, name, sizeof(name)))
			continue;
		end = 0;
		if (sscanf(name, "package-%u%n", &pkg, &end) != 1 ||
		    name[end] != '\0')
			continue;
		/* energy_uj is root-only on kernels since 5.10: a counter we
		 * cannot read is no sensor. */
		if (!path_fmt(energy, sizeof(energy), "%s/%s/energy_uj", dir,
			      de->d_name) ||
		    read_u64(energy, &uj))
			continue;
		attach_rapl_zone(node, root, pkg, energy);
	}
	closedir(d);
}

/* ------------------------------------------------------------------------ */
/* hwmon                                                                    */
/* ------------------------------------------------------------------------ */

static void attach_hwmon(hs_node_t *node, const char *root)
{
	static const char *const files[] = {"power1_average", "power1_input"};
	char dir[PATH_MAX], path[PATH_MAX], target[PATH_MAX];
	char power[SENSOR_PATH_SIZE];
	const char *busid;
	struct dirent *de;
	hs_device_t *dev;
	uint64_t uw;
	ssize_t n;
	size_t i;
	DIR *d;

	if (!path_fmt(dir, sizeof(dir), "%s/class/hwmon", root))
		return;
	d = opendir(dir);
	if (!d)
		return;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "hwmon", 5))
			continue;
		if (!path_fmt(path, sizeof(path), "%s/%s/device", dir,
			      de->d_name))
			continue;
		n = readlink(path, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		busid = strrchr(target, '/');
		busid = busid ? busid + 1 : target;
		dev = device_on_pci(node, busid);
		if (!dev)
			continue;
		for (i = 0; i < HS_ARRAY_SIZE(files); i++) {
			if (!path_fmt(power, sizeof(power), "%s/%s/%s", dir,
				      de->d_name, files[i]) ||
			    read_u64(power, &uw))
				continue;
			dev->sensor = HS_SENSOR_HWMON;
			hs__strlcpy(dev->sensor_path, power,
				    sizeof(dev->sensor_path));
			break;
		}
	}
	closedir(d);
}

/* ------------------------------------------------------------------------ */
/* NVML                                                                     */
/* ------------------------------------------------------------------------ */

/* The few NVML declarations used here (nvml.h is not a build dependency);
 * the layouts are those of NVML's stable ABI. */
typedef int nvml_return_t;
typedef struct nvml_device_s *nvml_device_t;

#define NVML_SUCCESS 0

struct nvml_pci_info {
	char bus_id_legacy[16];
	unsigned int domain;
	unsigned int bus;
	unsigned int device;
	unsigned int pci_device_id;
	unsigned int pci_subsystem_id;
	char bus_id[32];
};

struct nvml_api {
	nvml_return_t (*init)(void);
	nvml_return_t (*shutdown)(void);
	nvml_return_t (*count)(unsigned int *count);
	nvml_return_t (*handle)(unsigned int index, nvml_device_t *dev);
	nvml_return_t (*pci_info)(nvml_device_t dev, struct nvml_pci_info *pci);
	nvml_return_t (*power)(nvml_device_t dev, unsigned int *mw);
};

/* dlsym returns an object pointer; POSIX lets it hold a function's. */
static bool nvml_sym(void *lib, const char *name, void *fn, size_t size)
{
	void *p = dlsym(lib, name);

	if (!p || size != sizeof(p))
		return false;
	memcpy(fn, &p, size);
	return true;
}

#define NVML_SYM(lib, field, name) \
	nvml_sym((lib), (name), &(field), sizeof(field))

static bool nvml_resolve(void *lib, struct nvml_api *api)
{
	return NVML_SYM(lib, api->init, "nvmlInit_v2") &&
	       NVML_SYM(lib, api->shutdown, "nvmlShutdown") &&
	       NVML_SYM(lib, api->count, "nvmlDeviceGetCount_v2") &&
	       NVML_SYM(lib, api->handle, "nvmlDeviceGetHandleByIndex_v2") &&
	       NVML_SYM(lib, api->pci_info, "nvmlDeviceGetPciInfo_v3") &&
	       NVML_SYM(lib, api->power, "nvmlDeviceGetPowerUsage");
}

static void attach_nvml(hs_node_t *node)
{
	struct nvml_pci_info pci;
	struct nvml_api api;
	nvml_device_t h;
	unsigned int n, i, mw;
	hs_device_t *dev;
	void *lib;

	/* No driver, no NVML: not an error, the GPUs stay modeled. */
	lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!lib)
		return;
	if (!nvml_resolve(lib, &api) || api.init() != NVML_SUCCESS)
		goto out_close;
	if (api.count(&n) != NVML_SUCCESS)
		goto out_shutdown;
	for (i = 0; i < n; i++) {
		memset(&pci, 0, sizeof(pci));
		if (api.handle(i, &h) != NVML_SUCCESS ||
		    api.pci_info(h, &pci) != NVML_SUCCESS)
			continue;
		pci.bus_id[sizeof(pci.bus_id) - 1] = '\0';
		dev = device_on_pci(node, pci.bus_id);
		/* A GPU whose power cannot be read has no sensor. */
		if (!dev || api.power(h, &mw) != NVML_SUCCESS)
			continue;
		dev->sensor = HS_SENSOR_NVML;
		snprintf(dev->sensor_path, sizeof(dev->sensor_path), "%u", i);
	}
out_shutdown:
	api.shutdown();
out_close:
	dlclose(lib);
}

void hs__sensors_attach(hs_node_t *node, const char *sysfs_root)
{
	const char *root = sysfs_root && sysfs_root[0] ? sysfs_root : "/sys";

	attach_rapl(node, root);
	attach_hwmon(node, root);
	/* NVML sees this machine's GPUs whatever tree sysfs_root names: a
	 * recorded tree gets no live sensors mixed in. */
	if (!strcmp(root, "/sys"))
		attach_nvml(node);
}

/* ------------------------------------------------------------------------ */
/* Readers                                                                  */
/* ------------------------------------------------------------------------ */

int hs__sensor_read_energy_j(const hs_device_t *dev, double *joules)
{
	uint64_t uj;
	int rc;

	if (dev->sensor != HS_SENSOR_RAPL || !dev->sensor_path[0])
		return HS_EINVAL;
	rc = read_u64(dev->sensor_path, &uj);
	if (rc)
		return rc;
	*joules = (double)uj / 1e6;
	return 0;
}

int hs__sensor_read_power_w(const hs_device_t *dev, double *watts)
{
	uint64_t uw;
	int rc;

	if (dev->sensor != HS_SENSOR_HWMON || !dev->sensor_path[0])
		return HS_EINVAL;
	rc = read_u64(dev->sensor_path, &uw);
	if (rc)
		return rc;
	*watts = (double)uw / 1e6;
	return 0;
}
