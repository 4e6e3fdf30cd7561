/*
 * Data-driven bad-input cases: tests/cases/<loader>-<what>/ holds an input
 * file (input.json, input.xml) and `error`, a line the loader's formatted
 * error must contain. The prefix names the loader: models, profiles,
 * inventory, topology, trace, scenario. Every case must fail, name its file,
 * and leak nothing.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices-internal.h"
#include "plan.h"
#include "testutil.h"
#include "trace.h"

#define CASES "tests/cases"

static hs_profile_catalog_t *profiles;

/* A bad trace must fail with no jobs, whatever its format. */
static int load_trace(const char *input, hs_error_t *err)
{
	hs_trace_opts_t topts = {.format = HS_TRACE_AUTO, .rate_scale = 1};
	hs_model_catalog_t *mc = NULL;
	hs_model_mix_t mix;
	hs_workload_t w;
	int rc;

	assert_int_equal(hs_model_catalog_load(&mc, "data/models.json", err),
			 0);
	assert_int_equal(hs_model_mix_parse(&mix, "Llama-3.1-8B", mc, err), 0);
	topts.models = mc;
	topts.mix = &mix;
	rc = hs_trace_load(&w, input, &topts, err);
	assert_null(w.jobs);
	assert_int_equal(w.n_jobs, 0);
	hs_model_catalog_free(mc);
	return rc;
}

static int run_loader(const char *name, const char *input, hs_error_t *err)
{
	hs_discover_opts_t opts = {.profiles = profiles, .no_opencl = true};
	hs_profile_catalog_t *pc = NULL;
	hs_model_catalog_t *mc = NULL;
	hs_node_t *node = NULL;
	int rc = 0;

	if (!strncmp(name, "models-", 7)) {
		rc = hs_model_catalog_load(&mc, input, err);
		assert_null(mc);
	} else if (!strncmp(name, "profiles-", 9)) {
		rc = hs_profile_catalog_load(&pc, input, err);
		assert_null(pc);
	} else if (!strncmp(name, "inventory-", 10)) {
		opts.inventory = input;
		rc = hs_node_discover(&node, &opts, err);
		assert_null(node);
	} else if (!strncmp(name, "topology-", 9)) {
		opts.topology_xml = input;
		rc = hs_node_discover(&node, &opts, err);
		assert_null(node);
	} else if (!strncmp(name, "trace-", 6)) {
		rc = load_trace(input, err);
	} else if (!strncmp(name, "scenario-", 9)) {
		rc = hs_plan_scenario_check(input, "data", err);
	} else {
		fail_msg("case %s: unknown loader prefix", name);
	}
	return rc;
}

static void chomp(char *s)
{
	size_t n = strlen(s);

	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = '\0';
}

static void find_input(const char *dir, char *out, size_t size)
{
	static const char *const names[] = {"input.json", "input.xml",
					    "input.csv", "input.jsonl"};
	size_t i;

	for (i = 0; i < HS_ARRAY_SIZE(names); i++) {
		snprintf(out, size, "%s/%s", dir, names[i]);
		if (hs_test_exists(out))
			return;
	}
	fail_msg("%s: no input file", dir);
}

static void test_case(void **state)
{
	const char *name = *state;
	char dir[512], input[600], path[600], msg[1024];
	hs_error_t err;
	char *expect;
	int rc;

	snprintf(dir, sizeof(dir), "%s/%s", CASES, name);
	find_input(dir, input, sizeof(input));
	snprintf(path, sizeof(path), "%s/error", dir);
	expect = hs_test_read_file(path);
	assert_non_null(expect);
	chomp(expect);

	rc = run_loader(name, input, &err);
	hs_error_format(&err, msg, sizeof(msg));
	if (rc == 0)
		fail_msg("case %s: accepted bad input", name);
	assert_int_equal(rc, err.code);
	if (!strstr(msg, expect))
		fail_msg("case %s: error \"%s\" lacks \"%s\"", name, msg,
			 expect);
	if (!strstr(msg, "input."))
		fail_msg("case %s: error \"%s\" does not name the file", name,
			 msg);
	free(expect);
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(((const struct CMUnitTest *)a)->name,
		      ((const struct CMUnitTest *)b)->name);
}

int main(void)
{
	struct CMUnitTest *tests = NULL;
	size_t n = 0, cap = 0, i;
	struct dirent *de;
	hs_error_t err;
	DIR *d;
	int rc;

	if (hs_profile_catalog_load(&profiles, "data/devices.json", &err)) {
		fprintf(stderr, "cannot load data/devices.json\n");
		return 1;
	}
	d = opendir(CASES);
	if (!d) {
		fprintf(stderr, "cannot open %s\n", CASES);
		return 1;
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			tests = realloc(tests, cap * sizeof(*tests));
			if (!tests)
				return 1;
		}
		memset(&tests[n], 0, sizeof(tests[n]));
		tests[n].name = strdup(de->d_name);
		tests[n].test_func = test_case;
		tests[n].initial_state = (void *)tests[n].name;
		n++;
	}
	closedir(d);
	qsort(tests, n, sizeof(*tests), cmp_names);
	rc = _cmocka_run_group_tests("cases", tests, n, NULL, NULL);
	for (i = 0; i < n; i++)
		free((void *)tests[i].name);
	free(tests);
	hs_profile_catalog_free(profiles);
	return rc;
}
