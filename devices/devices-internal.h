/*
 * Private to hetsched's devices/ layer: the node under construction and the
 * discovery back-ends that fill it. Not part of the public API.
 */
#ifndef HS_DEVICES_INTERNAL_H
#define HS_DEVICES_INTERNAL_H

#include <hwloc.h>

#include "internal.h"

struct hs_node_s {
	hs_topology_info_t topo;
	hs_device_t *devices;
	size_t n_devices;
	size_t cap_devices;
	char **warnings;
	size_t n_warnings;
	size_t cap_warnings;
};

/* Append a copy of dev (its id is set to its index). 0 or HS_ENOMEM. */
int hs__node_add_device(hs_node_t *node, const hs_device_t *dev);
/* Append a warning (formatted). 0 or HS_ENOMEM. */
int hs__node_warn(hs_node_t *node, const char *fmt, ...) HS__PRINTF(2, 3);

/* A device record with every field at its "unknown" value (numa_node -1,
 * cl indices -1, strings empty, sensor none). */
void hs__device_init(hs_device_t *dev);
/* Copy the figures of a profile (memory when the device did not report
 * it, bandwidth, FLOP/s, power, price) and its name into dev->profile. */
void hs__device_apply_profile(hs_device_t *dev, const hs_profile_t *p);

/*
 * hwloc. Load the topology of this machine, of an XML file or of a
 * synthetic description (opts decides). On failure returns a negative code
 * and fills err naming the file. The caller destroys *out.
 */
int hs__topo_load(hwloc_topology_t *out, const hs_discover_opts_t *opts,
		  hs_error_t *err);
/* Fill node->topo from a loaded topology. */
void hs__topo_summary(hwloc_topology_t topo, hs_topology_info_t *info);
/* One cpu device per NUMA node, matched to a CPU profile by the CPU model
 * string; backend cpu (this machine) or sim (XML/synthetic). */
int hs__topo_add_cpus(hs_node_t *node, hwloc_topology_t topo,
		      const hs_profile_catalog_t *profiles,
		      hs_backend_t backend);
/* GPU and co-processor OS devices of an XML topology become sim devices,
 * one per PCI device however many backends report it, matched to a
 * profile by name; unmatched ones are kept with a warning. */
int hs__topo_add_gpus(hs_node_t *node, hwloc_topology_t topo,
		      const hs_profile_catalog_t *profiles);

/*
 * OpenCL through the ICD loader: every platform and device. topo (may be
 * NULL) gives locality through hwloc/opencl.h. No platform at all is not an
 * error (a warning is recorded).
 */
int hs__opencl_discover(hs_node_t *node, hwloc_topology_t topo,
			const hs_profile_catalog_t *profiles);

/* Attach power sensors (RAPL powercap, hwmon, NVML) to the node's devices;
 * devices without one keep HS_SENSOR_NONE (modeled). */
void hs__sensors_attach(hs_node_t *node, const char *sysfs_root);

/*
 * Energy counter of a RAPL device, in joules (energy_uj / 1e6). The counter
 * wraps at max_energy_range_uj: callers work with differences and allow for
 * one wrap. 0, HS_EINVAL (no RAPL sensor), HS_EIO (cannot read) or
 * HS_EPARSE (not a number).
 */
int hs__sensor_read_energy_j(const hs_device_t *dev, double *joules);
/* Power of an hwmon device, in watts (the file holds microwatts). Same
 * codes; HS_EINVAL for a device without an hwmon sensor. */
int hs__sensor_read_power_w(const hs_device_t *dev, double *watts);

/* A node described by hand: a JSON inventory of sim devices. */
int hs__inventory_load(hs_node_t *node, const char *path,
		       const hs_profile_catalog_t *profiles, hs_error_t *err);

/* The node as the JSON of `hetsched devices --json` and GET /v1/devices:
 * {"topology": {...}, "devices": [...], "warnings": [...]}. New reference,
 * NULL when out of memory. */
json_t *hs__node_to_json(const hs_node_t *node);
/* One device as JSON (new reference, NULL when out of memory). */
json_t *hs__device_to_json(const hs_device_t *dev);

#endif /* HS_DEVICES_INTERNAL_H */
