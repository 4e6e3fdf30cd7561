/*
 * hwloc discovery and power sensors on recorded inputs: synthetic
 * topologies, hand-written XML topologies (tests/data/gpu-node.xml,
 * tests/data/dgx-h100.xml) and a recorded sysfs tree (tests/data/sysfs),
 * so that they pass on any machine and mean the same on all.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices-internal.h"
#include "testutil.h"

#define CATALOG "data/devices.json"
#define GPU_NODE "tests/data/gpu-node.xml"
#define DGX "tests/data/dgx-h100.xml"
#define SYSFS "tests/data/sysfs"

#define GIB (1024ull * 1024 * 1024)

static hs_profile_catalog_t *profiles;

static int setup(void **state)
{
	hs_error_t err;
	char msg[512];

	if (hs_profile_catalog_load(&profiles, CATALOG, &err)) {
		fprintf(stderr, "%s\n",
			hs_error_format(&err, msg, sizeof(msg)));
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	hs_profile_catalog_free(profiles);
	return 0;
}

static hs_node_t *node_new(void)
{
	hs_node_t *node = hs__calloc(1, sizeof(*node));

	assert_non_null(node);
	return node;
}

static hwloc_topology_t load_synthetic(const char *desc)
{
	hs_discover_opts_t opts = {.topology_synthetic = desc};
	hwloc_topology_t topo;
	hs_error_t err = {0};

	assert_int_equal(hs__topo_load(&topo, &opts, &err), 0);
	assert_non_null(topo);
	return topo;
}

static hwloc_topology_t load_xml(const char *path)
{
	hs_discover_opts_t opts = {.topology_xml = path};
	hwloc_topology_t topo;
	hs_error_t err = {0};

	assert_int_equal(hs__topo_load(&topo, &opts, &err), 0);
	assert_non_null(topo);
	return topo;
}

/* The devices of one kind, in node order. */
static size_t devices_of_kind(const hs_node_t *node, hs_device_kind_t kind,
			      const hs_device_t **out, size_t max)
{
	size_t i, n = 0;

	for (i = 0; i < node->n_devices; i++)
		if (node->devices[i].kind == kind && n < max)
			out[n++] = &node->devices[i];
	return n;
}

/* The warnings that contain every one of the NULL-terminated needles. */
static size_t warnings_with(const hs_node_t *node, ...)
{
	size_t i, n = 0;

	for (i = 0; i < node->n_warnings; i++) {
		const char *needle;
		bool all = true;
		va_list ap;

		va_start(ap, node);
		while ((needle = va_arg(ap, const char *)))
			if (!strstr(node->warnings[i], needle))
				all = false;
		va_end(ap);
		n += all;
	}
	return n;
}

/* ------------------------------------------------------------------------ */
/* Synthetic topologies                                                     */
/* ------------------------------------------------------------------------ */

static void test_synthetic_two_packages(void **state)
{
	hwloc_topology_t topo = load_synthetic("pack:2 numa:1 core:4 pu:2");
	hs_topology_info_t info;
	hs_node_t *node = node_new();
	const hs_device_t *d;

	hs__topo_summary(topo, &info);
	assert_int_equal(info.packages, 2);
	assert_int_equal(info.numa_nodes, 2);
	assert_int_equal(info.cores, 8);
	assert_int_equal(info.pus, 16);
	assert_string_equal(info.cpu_model, "");

	assert_int_equal(
		hs__topo_add_cpus(node, topo, profiles, HS_BACKEND_SIM), 0);
	assert_int_equal(node->n_devices, 2);
	d = &node->devices[0];
	assert_int_equal(d->id, 0);
	assert_int_equal(d->kind, HS_KIND_CPU);
	assert_int_equal(d->backend, HS_BACKEND_SIM);
	assert_string_equal(d->name, "CPU");
	assert_int_equal(d->compute_units, 4);
	assert_int_equal(d->numa_node, 0);
	assert_string_equal(d->cpuset, "0-7");
	d = &node->devices[1];
	assert_int_equal(d->id, 1);
	assert_int_equal(d->compute_units, 4);
	assert_int_equal(d->numa_node, 1);
	assert_string_equal(d->cpuset, "8-15");
	/* The catalog's catch-all cpu profile takes a CPU with no model. */
	assert_string_equal(d->profile, "cpu-generic");
	assert_int_equal(d->sensor, HS_SENSOR_NONE);
	assert_int_equal(node->devices[0].memory_bytes +
				 node->devices[1].memory_bytes,
			 info.memory_bytes);

	hs_node_free(node);
	hwloc_topology_destroy(topo);
}

static void test_synthetic_numa_without_packages(void **state)
{
	hwloc_topology_t topo = load_synthetic("numa:4 core:2 pu:1");
	hs_topology_info_t info;
	hs_node_t *node = node_new();
	static const char *const sets[] = {"0-1", "2-3", "4-5", "6-7"};
	size_t i;

	hs__topo_summary(topo, &info);
	assert_int_equal(info.packages, 0);
	assert_int_equal(info.numa_nodes, 4);
	assert_int_equal(info.cores, 8);
	assert_int_equal(info.pus, 8);

	assert_int_equal(hs__topo_add_cpus(node, topo, NULL, HS_BACKEND_CPU),
			 0);
	assert_int_equal(node->n_devices, 4);
	for (i = 0; i < 4; i++) {
		assert_int_equal(node->devices[i].compute_units, 2);
		assert_int_equal(node->devices[i].numa_node, (int)i);
		assert_int_equal(node->devices[i].backend, HS_BACKEND_CPU);
		assert_string_equal(node->devices[i].cpuset, sets[i]);
		assert_string_equal(node->devices[i].profile, "");
	}
	/* No catalog: every device kept, and said to be unmatched. */
	assert_int_equal(warnings_with(node, "no profile catalog", NULL), 4);

	hs_node_free(node);
	hwloc_topology_destroy(topo);
}

static void test_synthetic_single_socket(void **state)
{
	/*
	 * The NUMA level is spelled out: left implicit, hwloc 2.9 inserts it
	 * with an overlapping memcpy that valgrind reports.
	 */
	hwloc_topology_t topo =
		load_synthetic("pack:1 numa:1 l3:1 l2:6 core:1 pu:2");
	hs_topology_info_t info;
	hs_node_t *node = node_new();

	hs__topo_summary(topo, &info);
	assert_int_equal(info.packages, 1);
	assert_int_equal(info.numa_nodes, 1);
	assert_int_equal(info.cores, 6);
	assert_int_equal(info.pus, 12);

	assert_int_equal(
		hs__topo_add_cpus(node, topo, profiles, HS_BACKEND_SIM), 0);
	assert_int_equal(node->n_devices, 1);
	assert_int_equal(node->devices[0].compute_units, 6);
	assert_string_equal(node->devices[0].cpuset, "0-11");

	hs_node_free(node);
	hwloc_topology_destroy(topo);
}

static void test_synthetic_invalid(void **state)
{
	hs_discover_opts_t opts = {.topology_synthetic = "pack:banana"};
	hwloc_topology_t topo = (hwloc_topology_t)&opts;
	hs_error_t err = {0};

	assert_int_equal(hs__topo_load(&topo, &opts, &err), HS_EPARSE);
	assert_null(topo);
	assert_int_equal(err.code, HS_EPARSE);
	assert_non_null(strstr(err.text, "pack:banana"));
}

/* ------------------------------------------------------------------------ */
/* XML topologies                                                           */
/* ------------------------------------------------------------------------ */

static void test_gpu_node_summary(void **state)
{
	hwloc_topology_t topo = load_xml(GPU_NODE);
	hs_topology_info_t info;

	hs__topo_summary(topo, &info);
	assert_int_equal(info.packages, 2);
	assert_int_equal(info.numa_nodes, 2);
	assert_int_equal(info.cores, 4);
	assert_int_equal(info.pus, 8);
	assert_int_equal(info.memory_bytes, 32 * GIB);
	assert_string_equal(info.cpu_model, "Intel(R) Xeon(R) Platinum 8480+");
	hwloc_topology_destroy(topo);
}

static void test_gpu_node_one_device_per_pci(void **state)
{
	hwloc_topology_t topo = load_xml(GPU_NODE);
	hs_node_t *node = node_new();
	const hs_device_t *gpus[8];
	size_t i;

	assert_int_equal(hs__topo_add_gpus(node, topo, profiles), 0);
	/* Three backends report each H100; two H100s and one stranger. */
	assert_int_equal(node->n_devices, 3);
	assert_int_equal(devices_of_kind(node, HS_KIND_GPU, gpus, 8), 2);
	for (i = 0; i < 2; i++) {
		assert_string_equal(gpus[i]->name, "NVIDIA H100 80GB HBM3");
		assert_string_equal(gpus[i]->vendor, "NVIDIA Corporation");
		assert_string_equal(gpus[i]->profile, "H100-SXM");
		assert_int_equal(gpus[i]->backend, HS_BACKEND_SIM);
		assert_int_equal(gpus[i]->numa_node, (int)i);
		assert_int_equal(gpus[i]->compute_units, 132);
		/* CUDAGlobalMemorySize is in KiB: 81559 MiB. */
		assert_int_equal(gpus[i]->memory_bytes, 81559ull * 1024 * 1024);
		assert_true(gpus[i]->max_w > 0);
		assert_true(gpus[i]->mem_bw_gbs > 0);
		assert_int_equal(gpus[i]->sensor, HS_SENSOR_NONE);
	}
	assert_string_equal(gpus[0]->pci_busid, "0000:17:00.0");
	assert_string_equal(gpus[0]->cpuset, "0-3");
	assert_string_equal(gpus[1]->pci_busid, "0000:b1:00.0");
	assert_string_equal(gpus[1]->cpuset, "4-7");
	/* The H100s matched: no warning names them. */
	assert_int_equal(warnings_with(node, "H100", NULL), 0);

	hs_node_free(node);
	hwloc_topology_destroy(topo);
}

static void test_gpu_node_unmatched_kept(void **state)
{
	hwloc_topology_t topo = load_xml(GPU_NODE);
	hs_node_t *node = node_new();
	const hs_device_t *acc[4];

	assert_int_equal(hs__topo_add_gpus(node, topo, profiles), 0);
	assert_int_equal(devices_of_kind(node, HS_KIND_ACCEL, acc, 4), 1);
	assert_string_equal(acc[0]->name, "Mystery Accel 9000");
	assert_string_equal(acc[0]->profile, "");
	assert_string_equal(acc[0]->pci_busid, "0000:ca:00.0");
	assert_int_equal(acc[0]->numa_node, 1);
	assert_int_equal(acc[0]->memory_bytes, 32 * GIB);
	assert_int_equal(acc[0]->compute_units, 64);
	/* Unknown figures stay unknown rather than borrowed. */
	assert_true(acc[0]->max_w == 0.0);
	assert_int_equal(node->n_warnings, 1);
	assert_int_equal(warnings_with(node, "Mystery Accel 9000", "OpenCL",
				       "0000:ca:00.0",
				       "no profile in the catalog matches",
				       NULL),
			 1);

	hs_node_free(node);
	hwloc_topology_destroy(topo);
}

static void test_gpu_node_discover(void **state)
{
	hs_discover_opts_t opts = {.profiles = profiles,
				   .topology_xml = GPU_NODE,
				   .sysfs_root = SYSFS};
	const hs_device_t *cpus[4];
	hs_error_t err = {0};
	hs_node_t *node;
	size_t i;

	assert_int_equal(hs_node_discover(&node, &opts, &err), 0);
	assert_int_equal(hs_node_device_count(node), 5);
	assert_int_equal(devices_of_kind(node, HS_KIND_CPU, cpus, 4), 2);
	assert_int_equal(cpus[0]->compute_units, 2);
	assert_int_equal(cpus[0]->memory_bytes, 16 * GIB);
	assert_string_equal(cpus[0]->profile, "Xeon-8480+");
	assert_string_equal(cpus[0]->vendor, "GenuineIntel");
	/* A described node is simulated: none of this machine's sensors. */
	for (i = 0; i < hs_node_device_count(node); i++) {
		assert_int_equal(hs_node_device(node, i)->backend,
				 HS_BACKEND_SIM);
		assert_int_equal(hs_node_device(node, i)->sensor,
				 HS_SENSOR_NONE);
	}
	hs_node_free(node);
}

static void test_dgx_h100(void **state)
{
	hwloc_topology_t topo = load_xml(DGX);
	hs_node_t *node = node_new();
	const hs_device_t *gpus[16], *cpus[4];
	hs_topology_info_t info;
	unsigned per_numa[2] = {0, 0};
	size_t i, n;

	hs__topo_summary(topo, &info);
	assert_int_equal(info.packages, 2);
	assert_int_equal(info.numa_nodes, 2);
	assert_int_equal(info.cores, 112);
	assert_true(info.memory_bytes > 1900 * GIB);

	assert_int_equal(
		hs__topo_add_cpus(node, topo, profiles, HS_BACKEND_SIM), 0);
	assert_int_equal(hs__topo_add_gpus(node, topo, profiles), 0);
	assert_int_equal(devices_of_kind(node, HS_KIND_CPU, cpus, 4), 2);
	for (i = 0; i < 2; i++) {
		assert_int_equal(cpus[i]->compute_units, 56);
		assert_int_equal(cpus[i]->numa_node, (int)i);
		assert_string_equal(cpus[i]->profile, "Xeon-8480+");
		assert_true(cpus[i]->memory_bytes > 1000 * GIB);
	}
	assert_string_equal(cpus[0]->cpuset, "0-55");
	assert_string_equal(cpus[1]->cpuset, "56-111");

	n = devices_of_kind(node, HS_KIND_GPU, gpus, 16);
	assert_int_equal(n, 8);
	for (i = 0; i < n; i++) {
		assert_string_equal(gpus[i]->name, "NVIDIA H100 80GB HBM3");
		assert_string_equal(gpus[i]->profile, "H100-SXM");
		assert_true(gpus[i]->numa_node == 0 || gpus[i]->numa_node == 1);
		per_numa[gpus[i]->numa_node]++;
		assert_string_equal(gpus[i]->cpuset,
				    gpus[i]->numa_node ? "56-111" : "0-55");
	}
	assert_int_equal(per_numa[0], 4);
	assert_int_equal(per_numa[1], 4);
	assert_string_equal(gpus[0]->pci_busid, "0000:1b:00.0");
	assert_string_equal(gpus[7]->pci_busid, "0000:df:00.0");
	/* The NICs are not compute devices, and nothing went unmatched. */
	assert_int_equal(node->n_devices, 10);
	assert_int_equal(node->n_warnings, 0);

	hs_node_free(node);
	hwloc_topology_destroy(topo);
}

static void test_xml_missing(void **state)
{
	const char *path = "tests/data/no-such-topology.xml";
	hs_discover_opts_t opts = {.topology_xml = path};
	hwloc_topology_t topo;
	hs_error_t err = {0};
	char msg[512];

	assert_int_equal(hs__topo_load(&topo, &opts, &err), HS_ENOENT);
	assert_null(topo);
	hs_error_format(&err, msg, sizeof(msg));
	assert_non_null(strstr(msg, path));
	assert_non_null(strstr(msg, "cannot open"));
}

/* Write text to a fresh temporary .xml file; its path goes to path. */
static void write_temp(char *path, size_t size, const char *text)
{
	FILE *f;
	int fd;

	snprintf(path, size, "/tmp/hs-test-topology-XXXXXX.xml");
	fd = mkstemps(path, 4);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void check_invalid_xml(const char *text)
{
	char path[64], msg[512];
	hwloc_topology_t topo;
	hs_discover_opts_t opts = {.topology_xml = path};
	hs_error_t err = {0};

	write_temp(path, sizeof(path), text);
	assert_int_equal(hs__topo_load(&topo, &opts, &err), HS_EPARSE);
	assert_null(topo);
	hs_error_format(&err, msg, sizeof(msg));
	assert_non_null(strstr(msg, path));
	assert_non_null(strstr(msg, "not a valid hwloc XML"));
	unlink(path);
}

static void test_xml_garbage(void **state)
{
	check_invalid_xml("this is not XML at all <<<\n");
}

static void test_xml_not_hwloc(void **state)
{
	check_invalid_xml("<?xml version=\"1.0\"?>\n<html><body/></html>\n");
}

/* Every allocation failure is reported, and frees what it took. */
static void test_gpus_alloc_failures(void **state)
{
	hwloc_topology_t topo = load_xml(GPU_NODE);
	long fail_at;
	int rc = HS_ENOMEM;

	for (fail_at = 0; rc == HS_ENOMEM; fail_at++) {
		hs_node_t *node;

		hs_test_alloc_install(fail_at);
		node = hs__calloc(1, sizeof(*node));
		if (node) {
			rc = hs__topo_add_cpus(node, topo, profiles,
					       HS_BACKEND_SIM);
			if (!rc)
				rc = hs__topo_add_gpus(node, topo, profiles);
			assert_true(rc == 0 || rc == HS_ENOMEM);
			if (!rc)
				assert_int_equal(node->n_devices, 5);
			hs_node_free(node);
		}
		assert_int_equal(hs_test_alloc_live(), 0);
		hs_test_alloc_uninstall();
	}
	assert_true(fail_at > 1);
	hwloc_topology_destroy(topo);
}

/* ------------------------------------------------------------------------ */
/* Sensors                                                                  */
/* ------------------------------------------------------------------------ */

static void add(hs_node_t *node, hs_device_kind_t kind, hs_backend_t backend,
		int numa, const char *cpuset, const char *busid)
{
	hs_device_t dev;

	hs__device_init(&dev);
	dev.kind = kind;
	dev.backend = backend;
	dev.numa_node = numa;
	hs__strlcpy(dev.cpuset, cpuset, sizeof(dev.cpuset));
	hs__strlcpy(dev.pci_busid, busid, sizeof(dev.pci_busid));
	assert_int_equal(hs__node_add_device(node, &dev), 0);
}

/*
 * The recorded tree: package-0 RAPL with a dram sub-zone, an hwmon power
 * file for the PCI device 0000:17:00.0, a coretemp hwmon without power,
 * CPUs 0 and 4 on packages 0 and 1.
 */
static hs_node_t *sensor_node(void)
{
	hs_node_t *node = node_new();

	add(node, HS_KIND_CPU, HS_BACKEND_CPU, 0, "0-3", "");
	add(node, HS_KIND_CPU, HS_BACKEND_CPU, 1, "4-7", "");
	add(node, HS_KIND_GPU, HS_BACKEND_OPENCL, 0, "0-3", "0000:17:00.0");
	add(node, HS_KIND_GPU, HS_BACKEND_OPENCL, 1, "4-7", "0000:b1:00.0");
	/* Same bus id, but described, not here. */
	add(node, HS_KIND_GPU, HS_BACKEND_SIM, 0, "0-3", "0000:17:00.0");
	add(node, HS_KIND_CPU, HS_BACKEND_SIM, 0, "0-3", "");
	return node;
}

static void test_sensors_recorded_sysfs(void **state)
{
	hs_node_t *node = sensor_node();
	const hs_device_t *d = node->devices;
	double joules = 0, watts = 0;

	hs__sensors_attach(node, SYSFS);

	assert_int_equal(d[0].sensor, HS_SENSOR_RAPL);
	assert_string_equal(d[0].sensor_path,
			    SYSFS "/class/powercap/intel-rapl:0/energy_uj");
	assert_int_equal(hs__sensor_read_energy_j(&d[0], &joules), 0);
	assert_true(joules > 123456.789011 && joules < 123456.789013);

	/* Package 1 has no RAPL zone in the recording. */
	assert_int_equal(d[1].sensor, HS_SENSOR_NONE);

	assert_int_equal(d[2].sensor, HS_SENSOR_HWMON);
	assert_string_equal(d[2].sensor_path,
			    SYSFS "/class/hwmon/hwmon0/power1_average");
	assert_int_equal(hs__sensor_read_power_w(&d[2], &watts), 0);
	assert_true(watts > 245.4999 && watts < 245.5001);

	assert_int_equal(d[3].sensor, HS_SENSOR_NONE);
	assert_int_equal(d[4].sensor, HS_SENSOR_NONE);
	assert_int_equal(d[5].sensor, HS_SENSOR_NONE);

	hs_node_free(node);
}

static void test_sensors_no_tree(void **state)
{
	hs_node_t *node = sensor_node();
	size_t i;

	hs__sensors_attach(node, "tests/data/no-such-sysfs");
	for (i = 0; i < node->n_devices; i++)
		assert_int_equal(node->devices[i].sensor, HS_SENSOR_NONE);
	hs_node_free(node);
}

static void test_sensor_read_errors(void **state)
{
	hs_device_t dev;
	double v = -1;

	hs__device_init(&dev);
	assert_int_equal(hs__sensor_read_energy_j(&dev, &v), HS_EINVAL);
	assert_int_equal(hs__sensor_read_power_w(&dev, &v), HS_EINVAL);

	dev.sensor = HS_SENSOR_RAPL;
	hs__strlcpy(dev.sensor_path, SYSFS "/class/powercap/gone/energy_uj",
		    sizeof(dev.sensor_path));
	assert_int_equal(hs__sensor_read_energy_j(&dev, &v), HS_EIO);
	/* Not a number: the name file of a zone. */
	hs__strlcpy(dev.sensor_path, SYSFS "/class/powercap/intel-rapl:0/name",
		    sizeof(dev.sensor_path));
	assert_int_equal(hs__sensor_read_energy_j(&dev, &v), HS_EPARSE);
	/* An hwmon reader does not read a RAPL counter. */
	assert_int_equal(hs__sensor_read_power_w(&dev, &v), HS_EINVAL);
	assert_true(v == -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_synthetic_two_packages),
		cmocka_unit_test(test_synthetic_numa_without_packages),
		cmocka_unit_test(test_synthetic_single_socket),
		cmocka_unit_test(test_synthetic_invalid),
		cmocka_unit_test(test_gpu_node_summary),
		cmocka_unit_test(test_gpu_node_one_device_per_pci),
		cmocka_unit_test(test_gpu_node_unmatched_kept),
		cmocka_unit_test(test_gpu_node_discover),
		cmocka_unit_test(test_dgx_h100),
		cmocka_unit_test(test_xml_missing),
		cmocka_unit_test(test_xml_garbage),
		cmocka_unit_test(test_xml_not_hwloc),
		cmocka_unit_test(test_gpus_alloc_failures),
		cmocka_unit_test(test_sensors_recorded_sysfs),
		cmocka_unit_test(test_sensors_no_tree),
		cmocka_unit_test(test_sensor_read_errors),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
