/* The benchmark's figures, on runs small enough to check by hand. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "bench.h"
#include "perf.h"
#include "schedutil.h"

#define NEAR(a, b, rel) \
	(fabs((double)(a) - (double)(b)) <= (rel)*fabs((double)(b)) + 1e-9)

static void test_percentiles(void **state)
{
	double v[] = {5, 1, 4, 2, 3};
	double w[101];
	hs_pct_t p;
	int i;

	p = hs_bench_percentiles(v, 5);
	assert_true(p.p50 == 3);
	assert_true(p.mean == 3);
	/* p90 of 1..5: position 0.9 * 4 = 3.6 -> 4 + 0.6 = 4.6 */
	assert_true(NEAR(p.p90, 4.6, 1e-12));
	assert_true(NEAR(p.p99, 4.96, 1e-12));
	for (i = 0; i <= 100; i++)
		w[i] = 100 - i;
	p = hs_bench_percentiles(w, 101);
	assert_true(p.p50 == 50 && p.p90 == 90 && p.p99 == 99);
	p = hs_bench_percentiles(w, 0);
	assert_true(p.p50 == 0);
}

/*
 * One device, one job, no noise: every figure follows from the step times
 * of the roofline prior, computed here the same way the sim device does.
 */
static void test_single_job_by_hand(void **state)
{
	hs_model_catalog_t *models = hs_test_models();
	hs_device_t d = hs_test_device("d", 80, 1000, 100, 50, 300, 0, NULL);
	hs_sim_job_t job = {.arrival_ns = 0,
			    .model = 0,
			    .ctx_tokens = 100,
			    .gen_tokens = 10};
	hs_workload_t w = {.jobs = &job, .n_jobs = 1};
	const char *pol[] = {"fifo", NULL};
	hs_bench_config_t cfg = {0};
	hs_bench_report_t rep;
	hs_error_t err;
	hs__perf_t truth;
	const hs_run_fig_t *f;
	double load_s, first_s, rest_s = 0, busy_s, energy;
	int k;

	d.id = 0;
	hs__perf_init(&truth, &d, hs_model_catalog_get(models, 0));
	/* 1 GB of weights over a 32 GB/s link before the first step. */
	load_s = 1e9 / 32e9;
	first_s = hs__perf_predict_ns(&truth, 1, 100, 100) / 1e9;
	for (k = 1; k < 10; k++)
		rest_s += hs__perf_predict_ns(&truth, 1, 100 + k, 0) / 1e9;
	busy_s = load_s + first_s + rest_s;
	energy = 300 * busy_s; /* busy the whole run: no idle time */

	cfg.models = models;
	cfg.devices = &d;
	cfg.n_devices = 1;
	cfg.workload = &w;
	cfg.policies = pol;
	hs_sched_config_init(&cfg.sched);
	cfg.seed = 1;
	cfg.slo_ttft_ms = (load_s + first_s) * 1e3 * 1.001;
	assert_int_equal(hs_bench_run(&cfg, &rep, &err), 0);
	assert_int_equal(rep.n_runs, 1);
	f = &rep.runs[0];
	assert_int_equal(f->completed, 1);
	assert_true(NEAR(f->duration_s, busy_s, 1e-6));
	assert_true(NEAR(f->ttft_ms.p50, (load_s + first_s) * 1e3, 1e-5));
	assert_true(NEAR(f->e2e_ms.p99, busy_s * 1e3, 1e-5));
	assert_true(NEAR(f->tpot_ms.p50, rest_s / 9 * 1e3, 1e-5));
	assert_true(NEAR(f->output_tokens_per_s, 10 / busy_s, 1e-6));
	assert_true(NEAR(f->total_tokens_per_s, 110 / busy_s, 1e-6));
	assert_true(NEAR(f->energy_j, energy, 1e-6));
	assert_true(NEAR(f->joules_per_output_token, energy / 10, 1e-6));
	assert_true(NEAR(f->power_avg_w, 300, 1e-6));
	assert_true(f->power_peak_w == 300);
	assert_true(f->energy_modeled);
	assert_true(NEAR(f->devices[0].utilisation, 1.0, 1e-6));
	assert_true(f->slo_attainment == 1.0);
	assert_int_equal(f->power_violations, 0);
	hs_bench_report_release(&rep);

	/* A TTFT target just below what the job got: attainment 0. */
	cfg.slo_ttft_ms = (load_s + first_s) * 1e3 * 0.999;
	assert_int_equal(hs_bench_run(&cfg, &rep, &err), 0);
	assert_true(rep.runs[0].slo_attainment == 0.0);
	hs_bench_report_release(&rep);
	hs_model_catalog_free(models);
}

/*
 * A workload out of arrival order is refused, naming the first job out of
 * order: in the middle of the run, and past a time limit that stops the run
 * before it.
 */
static void test_sim_unsorted(void **state)
{
	hs_model_catalog_t *models = hs_test_models();
	hs_device_t d = hs_test_device("d", 80, 1000, 100, 50, 300, 0, NULL);
	hs_sim_job_t jobs[5];
	hs_sim_opts_t opts = {.seed = 1};
	hs_sched_config_t cfg;
	hs_sim_result_t res;
	hs_error_t err;
	int i;

	(void)state;
	d.id = 0;
	for (i = 0; i < 5; i++)
		jobs[i] = (hs_sim_job_t){.arrival_ns = i * 10000000,
					 .model = 0,
					 .ctx_tokens = 100,
					 .gen_tokens = 10};
	hs_sched_config_init(&cfg);
	assert_int_equal(
		hs_sim_run(&cfg, models, &d, 1, jobs, 5, &opts, &res, &err), 0);
	assert_int_equal(res.stats.completed, 5);
	hs_sim_result_release(&res);
	jobs[3].arrival_ns = 15000000; /* before job 2 */
	assert_int_equal(
		hs_sim_run(&cfg, models, &d, 1, jobs, 5, &opts, &res, &err),
		HS_EINVAL);
	assert_non_null(strstr(err.text, "not sorted by arrival (job 3)"));
	/* Stopped at 5 ms, before jobs 1 to 4 arrive. */
	opts.time_limit_ns = 5000000;
	assert_int_equal(
		hs_sim_run(&cfg, models, &d, 1, jobs, 5, &opts, &res, &err),
		HS_EINVAL);
	assert_non_null(strstr(err.text, "not sorted by arrival (job 3)"));
	jobs[3].arrival_ns = 30000000;
	assert_int_equal(
		hs_sim_run(&cfg, models, &d, 1, jobs, 5, &opts, &res, &err), 0);
	hs_sim_result_release(&res);
	hs_model_catalog_free(models);
}

/* Every policy is measured against the same bound, and none beats it. */
static void test_bound_fraction(void **state)
{
	hs_model_catalog_t *models = hs_test_models();
	hs_device_t d[3] = {
		hs_test_device("a", 80, 2000, 300, 50, 400, 0, NULL),
		hs_test_device("b", 80, 1000, 100, 40, 300, 0, NULL),
		hs_test_device("c", 24, 500, 50, 20, 200, 0, NULL),
	};
	const char *const *pol = hs_policy_names();
	hs_sim_job_t jobs[600];
	hs_workload_t w = {.jobs = jobs, .n_jobs = 600};
	hs_bench_config_t cfg = {0};
	hs_bench_report_t rep;
	hs_error_t err;
	size_t i;

	for (i = 0; i < 600; i++) {
		jobs[i].arrival_ns = (int64_t)i * 20000000;
		jobs[i].model = (uint32_t)(i % 2);
		jobs[i].ctx_tokens = 200 + (uint32_t)(i * 37 % 1500);
		jobs[i].gen_tokens = 20 + (uint32_t)(i * 13 % 200);
	}
	for (i = 0; i < 3; i++)
		d[i].id = (int)i;
	cfg.models = models;
	cfg.devices = d;
	cfg.n_devices = 3;
	cfg.workload = &w;
	cfg.policies = pol;
	hs_sched_config_init(&cfg.sched);
	cfg.sched.power_budget_w = 700;
	cfg.seed = 3;
	assert_int_equal(hs_bench_run(&cfg, &rep, &err), 0);
	assert_true(rep.upper_bound_tokens_per_s > 0);
	for (i = 0; i < rep.n_runs; i++) {
		const hs_run_fig_t *f = &rep.runs[i];
		double cap = rep.in.offered_output_tokens_per_s <
					     rep.upper_bound_tokens_per_s
				     ? rep.in.offered_output_tokens_per_s
				     : rep.upper_bound_tokens_per_s;

		assert_int_equal(f->completed + f->refused + f->failed, 600);
		assert_true(f->output_tokens_per_s <=
			    rep.upper_bound_tokens_per_s * 1.0001);
		assert_true(NEAR(f->lp_bound_fraction,
				 f->output_tokens_per_s / cap, 1e-9));
		assert_true(f->lp_bound_fraction <= 1.0001);
		assert_true(f->power_peak_w <= 700 + 1e-6);
		assert_int_equal(f->power_violations, 0);
		assert_true(f->sched_ns_per_decision > 0);
	}
	hs_bench_report_release(&rep);
	hs_model_catalog_free(models);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_percentiles),
		cmocka_unit_test(test_single_job_by_hand),
		cmocka_unit_test(test_bound_fraction),
		cmocka_unit_test(test_sim_unsorted),
	};

	return cmocka_run_group_tests_name("bench", tests, NULL, NULL);
}
