/*
 * Capacity planning: the fleet MILP on cases solved by hand, infeasible
 * demands naming their binding constraint, a small scenario planned end
 * to end with its cost per million tokens recomputed by hand, and the
 * malformed scenarios of tests/cases/scenario-*.
 */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "plan.h"
#include "testutil.h"

/*
 * One site, one class of 20 jobs/s, two device types:
 *   A: 10 jobs/s, $2/h, 100 W idle + 300 W busy -> $0.204 per job/s
 *   B:  4 jobs/s, $0.5/h, 50 W idle + 150 W busy -> $0.130 per job/s
 * at $0.10/kWh, PUE 1.
 */
static hs_plan_milp_t *two_types(double budget_w)
{
	hs_plan_milp_t *m = calloc(1, sizeof(*m));

	assert_non_null(m);
	m->n_sites = 1;
	m->n_types = 2;
	m->n_classes = 1;
	m->demand[0] = 20;
	m->cap[0][0][0] = 10;
	m->cap[0][1][0] = 4;
	m->busy_w[0][0][0] = 300;
	m->busy_w[0][1][0] = 150;
	m->base_w[0] = 100;
	m->base_w[1] = 50;
	m->capital_usd_per_h[0] = 2;
	m->capital_usd_per_h[1] = 0.5;
	m->allowed[0][0] = m->allowed[0][1] = true;
	m->usd_per_kwh[0] = 0.10;
	m->pue[0] = 1;
	m->budget_w[0] = budget_w;
	strcpy(m->site_name[0], "S");
	strcpy(m->class_name[0], "c");
	return m;
}

/* No binding budget: five B (exactly 20 jobs/s), 1 kW, $2.50 + $0.10. */
static void test_milp_cheapest(void **state)
{
	hs_plan_milp_t *m = two_types(0);
	hs_plan_solution_t sol;
	hs_error_t err = {0};

	assert_int_equal(hs_plan_milp_solve(m, &sol, &err), 0);
	assert_int_equal(sol.count[0][0], 0);
	assert_int_equal(sol.count[0][1], 5);
	assert_float_equal(sol.site_w[0], 1000, 1e-6);
	assert_float_equal(sol.capital_usd_per_h, 2.5, 1e-9);
	assert_float_equal(sol.energy_usd_per_h, 0.1, 1e-9);
	assert_float_equal(sol.cost_usd_per_h, 2.6, 1e-9);
	free(m);
}

/*
 * Under 900 W, five B (1000 W) no longer fit, nor one A and three B
 * (400 + 150 + 10/4 x 150 = 925 W): two A, 800 W, $4 + $0.08.
 */
static void test_milp_budget_binds(void **state)
{
	hs_plan_milp_t *m = two_types(900);
	hs_plan_solution_t sol;
	hs_error_t err = {0};

	assert_int_equal(hs_plan_milp_solve(m, &sol, &err), 0);
	assert_int_equal(sol.count[0][0], 2);
	assert_int_equal(sol.count[0][1], 0);
	assert_float_equal(sol.site_w[0], 800, 1e-6);
	assert_float_equal(sol.cost_usd_per_h, 4.08, 1e-9);
	/* PUE 1.5 makes two A draw 1200 W: the budget cannot hold. */
	m->pue[0] = 1.5;
	m->budget_w[0] = 1300;
	assert_int_equal(hs_plan_milp_solve(m, &sol, &err), 0);
	assert_int_equal(sol.count[0][0], 2);
	assert_float_equal(sol.site_w[0], 1200, 1e-6);
	free(m);
}

/* Two sites: B only at the dear one, A only at the cheap one; power at
 * $1/kWh makes B's 200 W per 4 jobs/s worse than A's 400 W per 10. */
static void test_milp_two_sites(void **state)
{
	hs_plan_milp_t *m = two_types(0);
	hs_plan_solution_t sol;
	hs_error_t err = {0};

	m->n_sites = 2;
	m->cap[1][0][0] = 10;
	m->cap[1][1][0] = 4;
	m->busy_w[1][0][0] = 300;
	m->busy_w[1][1][0] = 150;
	m->allowed[0][1] = false; /* S: A only */
	m->allowed[1][1] = true; /* T: B only */
	m->usd_per_kwh[0] = 0.10;
	m->usd_per_kwh[1] = 1.0;
	m->pue[1] = 1;
	strcpy(m->site_name[1], "T");
	/* A: 2 + 0.4 x 0.1 = 2.04 per 10; B: 0.5 + 0.2 x 1 = 0.70 per 4
	 * (0.175 per job/s, still cheaper): five B at T, $3.50. */
	assert_int_equal(hs_plan_milp_solve(m, &sol, &err), 0);
	assert_int_equal(sol.count[0][0], 0);
	assert_int_equal(sol.count[1][1], 5);
	assert_float_equal(sol.cost_usd_per_h, 3.5, 1e-9);
	/* T capped at 450 W: five B no longer fit there; one A and three B
	 * would need 525 W at T for its 10 jobs/s, one A and two B fall
	 * short (18 jobs/s). Two A at S: $4 + 800 W x $0.1 = $4.08. */
	m->budget_w[1] = 450;
	assert_int_equal(hs_plan_milp_solve(m, &sol, &err), 0);
	assert_int_equal(sol.count[1][1], 0);
	assert_int_equal(sol.count[0][0], 2);
	assert_float_equal(sol.cost_usd_per_h, 4.08, 1e-9);
	free(m);
}

static void test_milp_infeasible_site(void **state)
{
	hs_plan_milp_t *m = two_types(500);
	hs_plan_solution_t sol;
	hs_error_t err = {0};
	char buf[512];

	/* The least power that serves 20 jobs/s is two A: 800 W. */
	assert_int_equal(hs_plan_milp_solve(m, &sol, &err), HS_EINFEASIBLE);
	hs_error_format(&err, buf, sizeof(buf));
	assert_non_null(strstr(buf, "site S power budget: need 0.80 kW, "
				    "have 0.50 kW"));
	free(m);
}

static void test_milp_infeasible_total(void **state)
{
	hs_plan_milp_t *m = two_types(500);
	hs_plan_solution_t sol;
	hs_error_t err = {0};
	char buf[512];

	/* A second site T of 200 W with A only: T can take 3.3 jobs/s, and
	 * S then needs two A for the rest (200 W idle + 16.7 x 30 W). */
	m->n_sites = 2;
	m->cap[1][0][0] = 10;
	m->busy_w[1][0][0] = 300;
	m->allowed[1][0] = true;
	m->usd_per_kwh[1] = 0.1;
	m->pue[1] = 1;
	m->budget_w[1] = 200;
	strcpy(m->site_name[1], "T");
	assert_int_equal(hs_plan_milp_solve(m, &sol, &err), HS_EINFEASIBLE);
	hs_error_format(&err, buf, sizeof(buf));
	assert_non_null(strstr(buf, "site S power budget: need 0.70 kW, "
				    "have 0.50 kW"));
	/* A second class that only T serves: lifting one budget is not
	 * enough any more, and the message is about the total (two A at
	 * each site, 800 W each). */
	m->n_classes = 2;
	m->demand[1] = 20;
	m->cap[0][0][1] = m->cap[0][1][1] = 0;
	m->cap[1][0][1] = 10;
	m->busy_w[1][0][1] = 300;
	m->cap[1][0][0] = 0;
	strcpy(m->class_name[1], "d");
	memset(&err, 0, sizeof(err));
	assert_int_equal(hs_plan_milp_solve(m, &sol, &err), HS_EINFEASIBLE);
	hs_error_format(&err, buf, sizeof(buf));
	assert_non_null(strstr(buf, "total power budget: need 1.60 kW, "
				    "have 0.70 kW"));
	free(m);
}

static void test_milp_no_device(void **state)
{
	hs_plan_milp_t *m = two_types(0);
	hs_plan_solution_t sol;
	hs_error_t err = {0};
	char buf[512];

	/* Neither type meets the SLO for the class (e.g. the site's RTT
	 * eats the TTFT). */
	m->cap[0][0][0] = m->cap[0][1][0] = 0;
	assert_int_equal(hs_plan_milp_solve(m, &sol, &err), HS_EINFEASIBLE);
	hs_error_format(&err, buf, sizeof(buf));
	assert_non_null(strstr(buf, "class c: no site has an allowed device "
				    "type that meets the SLO"));
	free(m);
}

/* ------------------------------------------------------------------------ */

static char scenario_path[64];

static void write_scenario(const char *text)
{
	FILE *f;
	int fd;

	strcpy(scenario_path, "/tmp/hs-test-plan-XXXXXX");
	fd = mkstemp(scenario_path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Two sites, two types, a small rates demand: short probes keep it
 * quick. */
static const char small_scenario[] =
	"{\"demand\": {\"rates\": [{\"model\": \"Llama-3.1-8B\", "
	"\"jobs_per_s\": 6, \"ctx\": \"const:256\", \"gen\": \"const:64\"}],"
	" \"duration_s\": 10},"
	" \"catalog\": [{\"profile\": \"L40S\", \"price_usd\": 8760,"
	" \"lifetime_years\": 2, \"host_overhead_w\": 100},"
	" {\"profile\": \"H100-SXM\", \"hourly_usd\": 2.5}],"
	" \"sites\": [{\"name\": \"a\", \"electricity_usd_per_kwh\": 0.05,"
	" \"pue\": 1.2, \"budget_kw\": %s, \"rtt_ms\": 20,"
	" \"allowed\": [\"L40S\"]},"
	" {\"name\": \"b\", \"electricity_usd_per_kwh\": 0.2, \"pue\": 1.5,"
	" \"budget_kw\": 100, \"rtt_ms\": 5, \"allowed\": [\"H100-SXM\"]}],"
	" \"slo\": {\"ttft_ms\": 1000, \"tpot_ms\": 80, \"attainment\": 0.9}}";

struct loaded {
	hs_model_catalog_t *mc;
	hs_profile_catalog_t *pc;
	hs_plan_scenario_t *sc;
	hs_plan_result_t *r;
};

static int load(struct loaded *l, const char *budget_kw, hs_error_t *err)
{
	char text[2048];

	snprintf(text, sizeof(text), small_scenario, budget_kw);
	write_scenario(text);
	assert_int_equal(hs_model_catalog_load(&l->mc, "data/models.json", err),
			 0);
	assert_int_equal(
		hs_profile_catalog_load(&l->pc, "data/devices.json", err), 0);
	l->sc = calloc(1, sizeof(*l->sc));
	l->r = calloc(1, sizeof(*l->r));
	assert_non_null(l->sc);
	assert_non_null(l->r);
	return hs_plan_scenario_load(l->sc, scenario_path, "data", l->pc, l->mc,
				     err);
}

static void unload(struct loaded *l)
{
	hs_plan_scenario_release(l->sc);
	free(l->sc);
	free(l->r);
	hs_profile_catalog_free(l->pc);
	hs_model_catalog_free(l->mc);
	unlink(scenario_path);
}

static void test_plan_small(void **state)
{
	hs_plan_opts_t o = {
		.probe_s = 10, .probe_iters = 5, .seed = 1, .validate = true};
	struct loaded l = {0};
	hs_error_t err = {0};
	const hs_plan_result_t *r;
	const hs_plan_milp_t *m;
	double capital = 0, energy = 0, w_site[2] = {0}, tokens, per_m;
	size_t s, t;
	json_t *j;

	assert_int_equal(load(&l, "100", &err), 0);
	assert_int_equal(l.sc->n_classes, 1);
	assert_int_equal(l.sc->n_types, 2);
	/* L40S: $8760 over 2 years = $0.50/h; H100 rented at $2.50/h. */
	assert_float_equal(l.sc->types[0].capital_usd_per_h, 0.5, 1e-12);
	assert_float_equal(l.sc->types[1].capital_usd_per_h, 2.5, 1e-12);
	assert_int_equal(hs_plan_run(l.sc, l.mc, &o, l.r, &err), 0);
	r = l.r;
	m = &r->milp;
	assert_true(m->cap[0][0][0] > 0);
	assert_true(m->cap[1][1][0] > 0);
	/* Every job/s of demand is placed, within capacity. */
	{
		double placed = 0;

		for (s = 0; s < 2; s++)
			for (t = 0; t < 2; t++) {
				placed += r->sol.load[s][t][0];
				assert_true(r->sol.load[s][t][0] <=
					    r->sol.count[s][t] *
							    m->cap[s][t][0] +
						    1e-6);
			}
		assert_float_equal(placed, 6, 1e-6);
	}
	/* Cost per million output tokens from the scenario's own numbers:
	 * capital per device-hour, power = (idle + host overhead) per
	 * device + measured busy draw per unit of load, x PUE. */
	for (s = 0; s < 2; s++)
		for (t = 0; t < 2; t++) {
			const hs_plan_type_t *ty = &l.sc->types[t];
			unsigned n = r->sol.count[s][t];
			double w;

			capital += n * (t == 0 ? 8760.0 / (2 * 8760) : 2.5);
			w = n * (ty->profile.idle_w + (t == 0 ? 100 : 0));
			if (n)
				w += r->sol.load[s][t][0] / m->cap[s][t][0] *
				     m->busy_w[s][t][0];
			w *= s == 0 ? 1.2 : 1.5;
			w_site[s] += w;
			energy += w / 1000 * (s == 0 ? 0.05 : 0.2);
		}
	tokens = 6 * 64.0;
	per_m = (capital + energy) / (tokens * 3600) * 1e6;
	assert_float_equal(r->cost_per_million_output_tokens, per_m,
			   per_m * 1e-9);
	assert_float_equal(r->capital_share, capital / (capital + energy),
			   1e-9);
	assert_float_equal(r->joules_per_output_token,
			   (w_site[0] + w_site[1]) / tokens, 1e-6);
	assert_float_equal(r->sol.site_w[0], w_site[0], 1e-6);
	/* The validation ran and says something. */
	assert_true(r->validated);
	assert_true(r->slo_attainment >= 0 && r->slo_attainment <= 1);
	assert_true(r->validation_jobs > 0);
	j = hs_plan_report_json(l.sc, r);
	assert_non_null(j);
	assert_non_null(json_object_get(j, "cost_per_million_output_tokens"));
	assert_non_null(
		json_object_get(json_object_get(j, "validation"), "meets_slo"));
	assert_int_equal(json_array_size(json_object_get(j, "sites")), 2);
	json_decref(j);
	{
		char dir[] = "/tmp/hs-test-plan-out-XXXXXX";
		char path[128];

		assert_non_null(mkdtemp(dir));
		assert_int_equal(hs_plan_report_write(l.sc, r, dir, &err), 0);
		snprintf(path, sizeof(path), "%s/report.html", dir);
		assert_true(hs_test_exists(path));
		unlink(path);
		snprintf(path, sizeof(path), "%s/report.md", dir);
		assert_true(hs_test_exists(path));
		unlink(path);
		snprintf(path, sizeof(path), "%s/report.json", dir);
		assert_true(hs_test_exists(path));
		unlink(path);
		rmdir(dir);
	}
	unload(&l);
}

/* Site a alone cannot hold the demand under a tiny budget and site b has
 * the only other type: the message names a's budget or b's. */
static void test_plan_infeasible(void **state)
{
	hs_plan_opts_t o = {.probe_s = 10, .probe_iters = 4, .seed = 1};
	struct loaded l = {0};
	hs_error_t err = {0};
	char buf[512];

	assert_int_equal(load(&l, "0.01", &err), 0);
	/* b may not be used: only L40S at a, under 10 W. */
	l.sc->sites[1].allowed[1] = false;
	assert_int_equal(hs_plan_run(l.sc, l.mc, &o, l.r, &err),
			 HS_EINFEASIBLE);
	hs_error_format(&err, buf, sizeof(buf));
	assert_non_null(strstr(buf, "site a power budget: need "));
	assert_non_null(strstr(buf, "have 0.01 kW"));
	unload(&l);
}

/*
 * Trace demand: an Azure-format trace of 48 short prompts a second apart
 * and 12 long ones, at twice its rate: two classes, rates at least the
 * mean, means exact.
 */
static void test_trace_classes(void **state)
{
	char trace[] = "/tmp/hs-test-plan-trace-XXXXXX";
	char text[2048];
	hs_model_catalog_t *mc = NULL;
	hs_profile_catalog_t *pc = NULL;
	hs_plan_scenario_t *sc = calloc(1, sizeof(*sc));
	hs_error_t err = {0};
	FILE *f;
	int i, fd;

	assert_non_null(sc);
	fd = mkstemp(trace);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fputs("TIMESTAMP,ContextTokens,GeneratedTokens\n", f);
	for (i = 0; i < 60; i++)
		fprintf(f, "2023-11-16 18:%02d:%02d.0000000,%d,%d\n", i / 60,
			i % 60, i % 5 == 4 ? 1000 : 100, i % 5 == 4 ? 30 : 10);
	fclose(f);
	snprintf(text, sizeof(text),
		 "{\"demand\": {\"trace\": \"%s\", \"model\": "
		 "\"Llama-3.1-8B\", \"rate_scale\": 2},"
		 " \"catalog\": [{\"profile\": \"L40S\", \"hourly_usd\": 1}],"
		 " \"sites\": [{\"name\": \"a\", "
		 "\"electricity_usd_per_kwh\": 0.1, \"budget_kw\": 10}],"
		 " \"slo\": {\"ttft_ms\": 1000, \"tpot_ms\": 80}}",
		 trace);
	write_scenario(text);
	assert_int_equal(hs_model_catalog_load(&mc, "data/models.json", &err),
			 0);
	assert_int_equal(
		hs_profile_catalog_load(&pc, "data/devices.json", &err), 0);
	assert_int_equal(
		hs_plan_scenario_load(sc, scenario_path, "data", pc, mc, &err),
		0);
	assert_int_equal(sc->n_classes, 2);
	assert_string_equal(sc->classes[0].name, "Llama-3.1-8B ctx<=512");
	assert_string_equal(sc->classes[1].name, "Llama-3.1-8B ctx<=2048");
	assert_float_equal(sc->classes[0].mean_ctx, 100, 1e-9);
	assert_float_equal(sc->classes[1].mean_gen, 30, 1e-9);
	/* 59 s of trace at 2x: 29.5 s; 48 and 12 jobs. */
	assert_true(sc->classes[0].jobs_per_s >= 48 / 29.5 - 1e-9);
	assert_true(sc->classes[1].jobs_per_s >= 12 / 29.5 - 1e-9);
	assert_true(sc->classes[0].jobs_per_s < 2 * 48 / 29.5);
	assert_float_equal(sc->mean_output_tokens_per_s,
			   (48 * 10 + 12 * 30) / 29.5, 1e-9);
	assert_int_equal(sc->work.n_jobs, 60);
	hs_plan_scenario_release(sc);
	free(sc);
	hs_profile_catalog_free(pc);
	hs_model_catalog_free(mc);
	unlink(scenario_path);
	unlink(trace);
}

/* ------------------------------------------------------------------------ */

static void chomp(char *s)
{
	size_t n = strlen(s);

	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = '\0';
}

/* Every tests/cases/scenario-* fails with its expected message. */
static void test_bad_scenarios(void **state)
{
	DIR *d = opendir("tests/cases");
	struct dirent *e;
	unsigned n = 0;

	assert_non_null(d);
	while ((e = readdir(d))) {
		char input[600], path[600], msg[1024];
		hs_error_t err = {0};
		char *expect;

		if (strncmp(e->d_name, "scenario-", 9))
			continue;
		snprintf(input, sizeof(input), "tests/cases/%s/input.json",
			 e->d_name);
		snprintf(path, sizeof(path), "tests/cases/%s/error", e->d_name);
		expect = hs_test_read_file(path);
		assert_non_null(expect);
		chomp(expect);
		assert_int_not_equal(
			hs_plan_scenario_check(input, "data", &err), 0);
		hs_error_format(&err, msg, sizeof(msg));
		if (!strstr(msg, expect) || !strstr(msg, input))
			fail_msg("%s: got \"%s\", want \"%s\"", e->d_name, msg,
				 expect);
		free(expect);
		n++;
	}
	closedir(d);
	assert_true(n >= 8);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_milp_cheapest),
		cmocka_unit_test(test_milp_budget_binds),
		cmocka_unit_test(test_milp_two_sites),
		cmocka_unit_test(test_milp_infeasible_site),
		cmocka_unit_test(test_milp_infeasible_total),
		cmocka_unit_test(test_milp_no_device),
		cmocka_unit_test(test_plan_small),
		cmocka_unit_test(test_plan_infeasible),
		cmocka_unit_test(test_trace_classes),
		cmocka_unit_test(test_bad_scenarios),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
