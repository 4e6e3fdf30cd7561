/*
 * OpenCL discovery on PoCL's CPU drivers: POCL_DEVICES="pthread basic"
 * gives a multi-core and a single-core device on any machine.
 *
 * The ICD loader reads the platforms once per process, so every test runs
 * in that one configuration.
 */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <CL/cl.h>

#include "devices-internal.h"

#define CATALOG "data/devices.json"

static hs_profile_catalog_t *profiles;
static hwloc_topology_t topo;
static const char *self_path = "/proc/self/exe";

/*
 * clGetDeviceInfo, interposed: the code under test links against this one,
 * which fails the queries a test lists and passes the others on to the ICD
 * loader.
 */
static const cl_device_info *failing_params;
static size_t n_failing_params;

cl_int CL_API_CALL clGetDeviceInfo(cl_device_id device,
				   cl_device_info param_name,
				   size_t param_value_size, void *param_value,
				   size_t *param_value_size_ret)
{
	typedef cl_int(CL_API_CALL * fn_t)(cl_device_id, cl_device_info, size_t,
					   void *, size_t *);
	static fn_t real;
	size_t i;

	for (i = 0; i < n_failing_params; i++)
		if (failing_params[i] == param_name)
			return CL_INVALID_VALUE;
	if (!real)
		real = (fn_t)dlsym(RTLD_NEXT, "clGetDeviceInfo");
	if (!real)
		return CL_INVALID_OPERATION;
	return real(device, param_name, param_value_size, param_value,
		    param_value_size_ret);
}

/* An allocator that fails once its budget is spent (-1: never). */
static long alloc_budget = -1;

static void *budget_malloc(size_t size)
{
	if (alloc_budget == 0)
		return NULL;
	if (alloc_budget > 0)
		alloc_budget--;
	return malloc(size);
}

static hs_node_t *node_new(void)
{
	hs_node_t *node = hs__calloc(1, sizeof(*node));

	assert_non_null(node);
	return node;
}

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static const hs_device_t *find_prefix(const hs_node_t *node, const char *prefix)
{
	size_t i;

	for (i = 0; i < node->n_devices; i++)
		if (starts_with(node->devices[i].name, prefix))
			return &node->devices[i];
	return NULL;
}

static bool has_warning(const hs_node_t *node, const char *a, const char *b)
{
	size_t i;

	for (i = 0; i < node->n_warnings; i++)
		if (strstr(node->warnings[i], a) &&
		    (!b || strstr(node->warnings[i], b)))
			return true;
	return false;
}

static void print_node(const hs_node_t *node)
{
	size_t i;

	for (i = 0; i < node->n_devices; i++) {
		const hs_device_t *d = &node->devices[i];

		print_message("  [%d] %s (%s, %s, cl %d.%d): %u CU @ %u MHz, "
			      "%llu B global, %llu B max alloc, %llu B local, "
			      "numa %d, cpuset \"%s\", pci \"%s\", \"%s\" / "
			      "\"%s\", profile \"%s\"\n",
			      d->id, d->name, hs_device_kind_name(d->kind),
			      hs_backend_name(d->backend), d->cl_platform,
			      d->cl_device, d->compute_units, d->clock_mhz,
			      (unsigned long long)d->memory_bytes,
			      (unsigned long long)d->max_alloc_bytes,
			      (unsigned long long)d->local_mem_bytes,
			      d->numa_node, d->cpuset, d->pci_busid, d->version,
			      d->driver_version, d->profile);
	}
	for (i = 0; i < node->n_warnings; i++)
		print_message("  warning: %s\n", node->warnings[i]);
}

/* What locate() should say for a CPU device: the whole machine, on the one
 * NUMA node that has CPUs, if there is only one. */
static void expected_locality(char *cpuset, size_t size, int *numa)
{
	hwloc_obj_t obj = NULL;
	int n = 0;

	hwloc_bitmap_list_snprintf(cpuset, size,
				   hwloc_topology_get_topology_cpuset(topo));
	*numa = -1;
	while ((obj = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_NUMANODE,
						 obj)) != NULL) {
		if (!obj->cpuset || hwloc_bitmap_iszero(obj->cpuset))
			continue;
		*numa = (int)obj->os_index;
		n++;
	}
	if (n != 1)
		*numa = -1;
}

static void check_pocl_device(const hs_device_t *d)
{
	assert_int_equal(d->backend, HS_BACKEND_OPENCL);
	assert_int_equal(d->kind, HS_KIND_CPU);
	assert_true(d->compute_units >= 1);
	assert_true(d->memory_bytes > 0);
	assert_true(d->max_alloc_bytes > 0);
	assert_true(d->max_alloc_bytes <= d->memory_bytes);
	assert_true(starts_with(d->version, "OpenCL"));
	assert_true(d->driver_version[0] != '\0');
	assert_true(d->vendor[0] != '\0');
	assert_true(d->cl_platform >= 0);
	assert_true(d->cl_device >= 0);
	assert_string_equal(d->pci_busid, "");
}

static void test_pocl_devices(void **state)
{
	const hs_device_t *basic, *pthread;
	hs_node_t *node = node_new();
	char cpuset[128];
	int numa;

	assert_int_equal(hs__opencl_discover(node, topo, profiles), 0);
	print_node(node);

	basic = find_prefix(node, "basic");
	pthread = find_prefix(node, "pthread");
	assert_non_null(basic);
	assert_non_null(pthread);
	check_pocl_device(basic);
	check_pocl_device(pthread);

	assert_int_equal(basic->compute_units, 1);
	if (sysconf(_SC_NPROCESSORS_ONLN) > 1)
		assert_int_not_equal(basic->compute_units,
				     pthread->compute_units);
	assert_int_equal(basic->cl_platform, pthread->cl_platform);
	assert_int_not_equal(basic->cl_device, pthread->cl_device);

	assert_string_equal(basic->profile, "pocl-cpu");
	assert_string_equal(pthread->profile, "pocl-cpu");
	/* The profile lends what the driver cannot tell. */
	assert_true(pthread->mem_bw_gbs > 0);
	assert_true(pthread->n_levels > 0);

	expected_locality(cpuset, sizeof(cpuset), &numa);
	assert_string_equal(basic->cpuset, cpuset);
	assert_string_equal(pthread->cpuset, cpuset);
	assert_int_equal(basic->numa_node, numa);
	assert_int_equal(pthread->numa_node, numa);

	assert_int_equal(node->n_warnings, 0);
	hs_node_free(node);
}

static void test_null_topology(void **state)
{
	hs_node_t *node = node_new();
	size_t i;

	assert_int_equal(hs__opencl_discover(node, NULL, profiles), 0);
	assert_true(node->n_devices >= 2);
	for (i = 0; i < node->n_devices; i++) {
		const hs_device_t *d = &node->devices[i];

		assert_int_equal(d->numa_node, -1);
		assert_string_equal(d->cpuset, "");
		assert_string_equal(d->pci_busid, "");
		assert_true(d->memory_bytes > 0);
	}
	assert_non_null(find_prefix(node, "basic"));
	assert_non_null(find_prefix(node, "pthread"));
	assert_string_equal(find_prefix(node, "basic")->profile, "pocl-cpu");
	hs_node_free(node);
}

/* Without a catalog every device is kept, unmatched, with a warning. */
static void test_no_profiles(void **state)
{
	hs_node_t *node = node_new();
	size_t i;

	assert_int_equal(hs__opencl_discover(node, topo, NULL), 0);
	assert_true(node->n_devices >= 2);
	for (i = 0; i < node->n_devices; i++) {
		const hs_device_t *d = &node->devices[i];

		assert_string_equal(d->profile, "");
		assert_true(d->memory_bytes > 0);
		assert_true(
			has_warning(node, d->name, "no cpu profile matches"));
	}
	hs_node_free(node);
}

/* A profile of another kind is no match: a GPU profile that matches the
 * PoCL names must not lend them GPU figures. */
static void test_profile_of_other_kind(void **state)
{
	static const char text[] =
		"{\"profiles\": [{\"name\": \"fake-gpu\", \"vendor\": \"x\","
		" \"kind\": \"gpu\", \"match\": [\"basic-*\", \"pthread-*\"],"
		" \"memory_gib\": 8, \"mem_bw_gbs\": 500,"
		" \"peak_tflops\": 50, \"host_link_gbs\": 32,"
		" \"idle_w\": 20, \"tdp_w\": 200,"
		" \"power_levels\": [{\"cap_w\": 200, \"speed\": 1.0}],"
		" \"source\": \"test\"}]}";
	hs_profile_catalog_t *gpu_only;
	hs_error_t err;
	hs_node_t *node = node_new();
	const hs_device_t *basic;

	assert_int_equal(
		hs_profile_catalog_parse(&gpu_only, text, "<test>", &err), 0);
	assert_int_equal(hs__opencl_discover(node, topo, gpu_only), 0);
	print_node(node);
	basic = find_prefix(node, "basic");
	assert_non_null(basic);
	assert_string_equal(basic->profile, "");
	assert_true(basic->mem_bw_gbs == 0);
	assert_true(has_warning(node, basic->name, "no cpu profile matches"));
	hs_node_free(node);
	hs_profile_catalog_free(gpu_only);
}

/* Queries a device refuses leave their fields unknown, with a warning
 * naming the query; the device and its other fields are kept. */
static void test_query_errors(void **state)
{
	static const cl_device_info fail[] = {
		CL_DEVICE_NAME,
		CL_DEVICE_MAX_CLOCK_FREQUENCY,
		CL_DEVICE_VERSION,
	};
	hs_node_t *node = node_new();
	size_t i;
	int rc;

	failing_params = fail;
	n_failing_params = HS_ARRAY_SIZE(fail);
	rc = hs__opencl_discover(node, topo, profiles);
	failing_params = NULL;
	n_failing_params = 0;
	print_node(node);
	assert_int_equal(rc, 0);

	assert_true(node->n_devices >= 2);
	for (i = 0; i < node->n_devices; i++) {
		const hs_device_t *d = &node->devices[i];
		char name[32];

		snprintf(name, sizeof(name), "opencl%dd%d", d->cl_platform,
			 d->cl_device);
		assert_string_equal(d->name, name);
		assert_int_equal(d->clock_mhz, 0);
		assert_string_equal(d->version, "");
		assert_true(d->compute_units >= 1);
		assert_true(d->memory_bytes > 0);
		assert_true(d->driver_version[0] != '\0');
		assert_true(has_warning(node, name,
					"CL_DEVICE_MAX_CLOCK_FREQUENCY"));
	}
	assert_true(has_warning(node, "CL_DEVICE_NAME", NULL));
	assert_true(has_warning(node, "CL_DEVICE_VERSION", NULL));
	hs_node_free(node);
}

/* Every allocation failure is reported as HS_ENOMEM and frees what was
 * taken (ASan's leak checker proves the second half). */
static void test_alloc_failure(void **state)
{
	long n;
	int rc = HS_ENOMEM;

	for (n = 0; n < 1000 && rc; n++) {
		hs_node_t *node = node_new();

		hs_set_alloc_funcs(budget_malloc, free);
		alloc_budget = n;
		rc = hs__opencl_discover(node, topo, profiles);
		alloc_budget = -1;
		hs_set_alloc_funcs(NULL, NULL);
		if (rc)
			assert_int_equal(rc, HS_ENOMEM);
		else
			assert_true(node->n_devices >= 2);
		hs_node_free(node);
	}
	assert_int_equal(rc, 0);
	assert_true(n > 1);
}

static size_t count_backend(const hs_node_t *node, hs_backend_t backend)
{
	size_t i, n = 0;

	for (i = 0; i < hs_node_device_count(node); i++)
		if (hs_node_device(node, i)->backend == backend)
			n++;
	return n;
}

/* Through the public entry point: the OpenCL devices join the node's CPUs,
 * placed with the topology discovery loaded, unless asked not to. */
static void test_node_discover(void **state)
{
	hs_discover_opts_t opts = {.profiles = profiles};
	const hs_device_t *basic;
	hs_node_t *node;
	hs_error_t err;

	assert_int_equal(hs_node_discover(&node, &opts, &err), 0);
	assert_true(count_backend(node, HS_BACKEND_CPU) >= 1);
	assert_int_equal(count_backend(node, HS_BACKEND_OPENCL), 2);
	basic = find_prefix(node, "basic");
	assert_non_null(basic);
	assert_int_equal(basic->backend, HS_BACKEND_OPENCL);
	assert_string_equal(basic->profile, "pocl-cpu");
	assert_true(basic->cpuset[0] != '\0');
	hs_node_free(node);

	opts.no_opencl = true;
	assert_int_equal(hs_node_discover(&node, &opts, &err), 0);
	assert_int_equal(count_backend(node, HS_BACKEND_OPENCL), 0);
	hs_node_free(node);
}

/*
 * The loader caches what it found, so a node without OpenCL is tried in a
 * fresh copy of this program pointed at an empty vendor directory.
 */
static int no_platform_child(void)
{
	hs_node_t *node = hs__calloc(1, sizeof(*node));
	int rc;

	if (!node)
		return 2;
	rc = hs__opencl_discover(node, NULL, NULL);
	print_node(node);
	if (rc == 0 && node->n_devices == 0 && node->n_warnings == 1 &&
	    has_warning(node, "no OpenCL platform", NULL))
		rc = 0;
	else
		rc = 1;
	hs_node_free(node);
	return rc;
}

static void test_no_platform(void **state)
{
	char dir[] = "/tmp/hs-test-opencl-XXXXXX";
	int status;
	pid_t pid;

	assert_non_null(mkdtemp(dir));
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		setenv("OCL_ICD_VENDORS", dir, 1);
		execl(self_path, self_path, "--no-platform", (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	rmdir(dir);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static int group_setup(void **state)
{
	hs_error_t err;
	char buf[512];

	if (hs_profile_catalog_load(&profiles, CATALOG, &err)) {
		fprintf(stderr, "%s\n",
			hs_error_format(&err, buf, sizeof(buf)));
		return -1;
	}
	if (hwloc_topology_init(&topo) || hwloc_topology_load(topo)) {
		fprintf(stderr, "cannot load this machine's topology\n");
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	hwloc_topology_destroy(topo);
	hs_profile_catalog_free(profiles);
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pocl_devices),
		cmocka_unit_test(test_null_topology),
		cmocka_unit_test(test_no_profiles),
		cmocka_unit_test(test_profile_of_other_kind),
		cmocka_unit_test(test_query_errors),
		cmocka_unit_test(test_alloc_failure),
		cmocka_unit_test(test_node_discover),
		cmocka_unit_test(test_no_platform),
	};

	/* Under valgrind /proc/self/exe is valgrind: prefer the path we
	 * were started by when it names a file. */
	if (argc > 0 && strchr(argv[0], '/'))
		self_path = argv[0];
	if (argc > 1 && !strcmp(argv[1], "--no-platform"))
		return no_platform_child();

	/* Before any OpenCL call: the ICD loader reads it once. */
	setenv("POCL_DEVICES", "pthread basic", 1);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
