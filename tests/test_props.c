/*
 * Properties of the core over hundreds of seeded random workloads and
 * fleets, run by the simulation driver in virtual time.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "schedutil.h"
#include "sim.h"

#define MS 1000000ll

static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double unif(void)
{
	return (double)(rnd() >> 11) * 0x1.0p-53;
}

static uint32_t range(uint32_t lo, uint32_t hi)
{
	return lo + (uint32_t)(rnd() % (hi - lo + 1));
}

/* Five kinds of device, different in speed, memory and power. */
static hs_device_t random_device(void)
{
	static const double big[] = {700, 1.0, 500, 0.88, 350, 0.7};
	static const double mid[] = {400, 1.0, 300, 0.85};
	static const double low[] = {300, 1.0, 200, 0.8, 150, 0.6};

	switch (rnd() % 5) {
	case 4: /* too small for m-big: its jobs are refused on such fleets */
		return hs_test_device("edge", 2, 100, 20, 5, 60, 0, NULL);
	case 0:
		return hs_test_device("big", 80, 3350, 989, 70, 700, 3, big);
	case 1:
		return hs_test_device("mid", 96, 4000, 148, 60, 400, 2, mid);
	case 2:
		return hs_test_device("low", 24, 1000, 165, 20, 300, 3, low);
	default:
		return hs_test_device("cpu", 64, 200, 5, 80, 300, 0, NULL);
	}
}

typedef struct scenario_s {
	hs_device_t devs[8];
	size_t n_devs;
	hs_sim_job_t *jobs;
	size_t n_jobs;
	hs_sim_event_t budget[4];
	size_t n_budget;
	double idle_w;
	double max_w;
} scenario_t;

static void make_scenario(scenario_t *sc, uint64_t seed, double rate_per_s,
			  size_t n_jobs)
{
	int64_t t = 0;
	size_t i;

	rng_state = seed;
	sc->n_devs = range(1, 8);
	sc->idle_w = sc->max_w = 0;
	for (i = 0; i < sc->n_devs; i++) {
		sc->devs[i] = random_device();
		sc->idle_w += sc->devs[i].idle_w;
		sc->max_w += sc->devs[i].max_w;
	}
	sc->n_jobs = n_jobs;
	sc->jobs = test_calloc(n_jobs, sizeof(*sc->jobs));
	for (i = 0; i < n_jobs; i++) {
		t += (int64_t)(-log(1.0 - unif()) / rate_per_s * 1e9);
		sc->jobs[i].arrival_ns = t;
		sc->jobs[i].model = (uint32_t)(rnd() % 2);
		sc->jobs[i].ctx_tokens = range(1, 4000);
		sc->jobs[i].gen_tokens = range(1, 300);
		sc->jobs[i].priority = (int32_t)(rnd() % 3) - 1;
	}
}

static void free_scenario(scenario_t *sc)
{
	test_free(sc->jobs);
}

/*
 * Every accepted job completes exactly once, and the modeled power never
 * exceeds the budget at any instant, across budget drops and device
 * failures, for every policy.
 */
static void test_complete_once_within_budget(void **state)
{
	const char *const *policies = hs_policy_names();
	hs_model_catalog_t *models = hs_test_models();
	uint64_t seed, runs = 0, refused = 0, drops = 0, waits = 0, failed = 0;

	for (seed = 1; seed <= 240; seed++) {
		hs_sched_config_t cfg;
		hs_sim_event_t fail = {0};
		hs_sim_opts_t opts = {0};
		hs_sim_result_t res;
		scenario_t sc;
		hs_error_t err;
		size_t p, n_pol = 0;
		int64_t end;

		while (policies[n_pol])
			n_pol++;
		make_scenario(&sc, seed, 20 + (double)(seed % 7) * 30, 150);
		end = sc.jobs[sc.n_jobs - 1].arrival_ns;
		hs_sched_config_init(&cfg);
		cfg.policy = policies[seed % n_pol];
		cfg.max_batch_jobs = range(1, 48);
		cfg.min_batch_jobs = range(1, 4);
		if (cfg.min_batch_jobs > cfg.max_batch_jobs)
			cfg.min_batch_jobs = cfg.max_batch_jobs;
		/* A budget between the idle floor and full power, a drop
		 * (sometimes below what any device needs) and a rise to no
		 * budget, so that every job can finish. */
		cfg.power_budget_w = sc.idle_w + (sc.max_w - sc.idle_w) *
							 (0.2 + 0.8 * unif());
		sc.budget[0].at_ns = end / 3;
		sc.budget[0].budget_w =
			sc.idle_w + (sc.max_w - sc.idle_w) * unif() * 0.5;
		if (seed % 5 == 0)
			sc.budget[0].budget_w = sc.idle_w * 0.9;
		sc.budget[1].at_ns = end / 3 * 2;
		sc.budget[1].budget_w = 0;
		opts.seed = seed;
		opts.noise = 0.1;
		opts.skew = 0.3;
		opts.budget_changes = sc.budget;
		opts.n_budget_changes = 2;
		if (seed % 4 == 0 && sc.n_devs > 1) {
			fail.at_ns = end / 2;
			fail.device = (int)(rnd() % sc.n_devs);
			opts.failures = &fail;
			opts.n_failures = 1;
		}
		if (hs_sim_run(&cfg, models, sc.devs, sc.n_devs, sc.jobs,
			       sc.n_jobs, &opts, &res, &err))
			fail_msg("seed %llu (%s): %s", (unsigned long long)seed,
				 cfg.policy, err.text);
		if (res.lost_jobs || res.duplicate_done ||
		    res.stats.completed + res.submit_failures +
				    res.stats.failed !=
			    sc.n_jobs ||
		    res.power_violations || res.stats.power_violations)
			fail_msg("seed %llu (%s): completed %llu + refused "
				 "%llu of %zu, lost %llu, twice %llu, power "
				 "violations %llu/%llu (max %.1f W over)",
				 (unsigned long long)seed, cfg.policy,
				 (unsigned long long)res.stats.completed,
				 (unsigned long long)res.submit_failures,
				 sc.n_jobs, (unsigned long long)res.lost_jobs,
				 (unsigned long long)res.duplicate_done,
				 (unsigned long long)res.power_violations,
				 (unsigned long long)res.stats.power_violations,
				 res.max_violation_w);
		assert_int_equal(res.stats.queued + res.stats.running, 0);
		refused += res.submit_failures;
		failed += res.stats.failed;
		drops += res.stats.paused;
		waits += res.stats.power_waits;
		runs++;
		for (p = 0; p < res.n_devices; p++)
			assert_true(res.devices[p].busy_ns >= 0);
		hs_sim_result_release(&res);
		free_scenario(&sc);
	}
	/* The scenarios must have exercised what they claim to. */
	assert_int_equal(runs, 240);
	assert_true(refused > 0); /* big jobs on small-memory fleets */
	assert_true(waits > 0); /* the governor held devices back */
	assert_true(drops > 0); /* and paused running batches */
	assert_true(failed > 0); /* jobs only a failed device could run */
	hs_model_catalog_free(models);
}

/*
 * With capacity free (light load, more devices than concurrent jobs), no
 * job waits longer than the max wait plus one step (jobs join at step
 * boundaries).
 */
static void test_light_load_wait_bound(void **state)
{
	static const char *const policies[] = {"fifo", "eft"};
	hs_model_catalog_t *models = hs_test_models();
	uint64_t seed, checked = 0;

	for (seed = 1000; seed < 1100; seed++) {
		hs_sched_config_t cfg;
		hs_sim_opts_t opts = {0};
		hs_sim_result_t res;
		scenario_t sc;
		hs_error_t err;
		double worst_step_ms = 0, bound;
		size_t i;

		make_scenario(&sc, seed, 0.5, 60);
		/* Eight fast devices: capacity is free. */
		for (i = 0; i < 8; i++)
			sc.devs[i] = hs_test_device("big", 80, 3350, 989, 70,
						    700, 0, NULL);
		sc.n_devs = 8;
		hs_sched_config_init(&cfg);
		cfg.policy = policies[seed % 2];
		cfg.min_batch_jobs = 2;
		cfg.max_wait_ns = 20 * MS;
		opts.seed = seed;
		opts.keep_records = true;
		if (hs_sim_run(&cfg, models, sc.devs, sc.n_devs, sc.jobs,
			       sc.n_jobs, &opts, &res, &err))
			fail_msg("seed %llu: %s", (unsigned long long)seed,
				 err.text);
		/* The longest step any job could be waiting behind. */
		for (i = 0; i < res.n_records; i++) {
			const hs_sim_record_t *r = &res.records[i];
			double step = r->tpot_ms > r->ttft_ms - r->queue_ms
					      ? r->tpot_ms
					      : r->ttft_ms - r->queue_ms;

			if (step > worst_step_ms)
				worst_step_ms = step;
		}
		bound = 20 + worst_step_ms + 1e-3;
		for (i = 0; i < res.n_records; i++) {
			if (res.records[i].queue_ms > bound)
				fail_msg(
					"seed %llu (%s): a job waited %.3f ms, "
					"bound %.3f ms",
					(unsigned long long)seed, cfg.policy,
					res.records[i].queue_ms, bound);
			checked++;
		}
		hs_sim_result_release(&res);
		free_scenario(&sc);
	}
	assert_true(checked > 1000);
	hs_model_catalog_free(models);
}

/* FNV-1a of n bytes, from h. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;

	while (n--)
		h = (h ^ *c++) * 0x100000001b3ull;
	return h;
}

/*
 * The figures of a seeded run per policy, to the bit: what every job got
 * (its record), when the run ended and what it decided. A change that
 * means to keep the decisions (a faster core) must leave them; one that
 * means to change them updates the table from what this test prints
 * (HS_GOLDEN_PRINT=1 prints every row).
 */
static void test_golden_figures(void **state)
{
	static const struct {
		const char *policy;
		uint64_t decisions, steps, records_fnv;
		int64_t end_ns;
	} want[] = {
		{"fifo", 3266, 7662, 0x6664745d7347eba6ull, 1163954479511},
		{"rr", 4542, 33596, 0x42d4c2b1dd8e8bdfull, 3696189691910},
		{"eft", 3292, 8017, 0x23d33ff25c7fd436ull, 699124930566},
		{"tpw", 3344, 8461, 0xa237f9f02374d8abull, 703713916947},
		{"lp", 3854, 8111, 0x1190415dd1a24a06ull, 559602327028},
	};
	hs_model_catalog_t *models = hs_test_models();
	bool print = getenv("HS_GOLDEN_PRINT") != NULL;
	size_t p, bad = 0;
	scenario_t sc;

	(void)state;
	make_scenario(&sc, 91, 60, 1500);
	/* Gaps without the C library's log, whose last bits may differ by
	 * machine (glibc picks a copy by CPU): uniform, 1/60 s on average. */
	{
		int64_t t = 0;
		size_t i;

		for (i = 0; i < sc.n_jobs; i++) {
			t += (int64_t)(rnd() % (2 * 1000000000ull / 60));
			sc.jobs[i].arrival_ns = t;
		}
	}
	for (p = 0; p < sizeof(want) / sizeof(want[0]); p++) {
		hs_sched_config_t cfg;
		hs_sim_opts_t opts = {0};
		hs_sim_result_t res;
		hs_error_t err;
		uint64_t h;
		bool off;

		hs_sched_config_init(&cfg);
		cfg.policy = want[p].policy;
		cfg.power_budget_w = sc.idle_w + (sc.max_w - sc.idle_w) * 0.6;
		opts.seed = 3;
		opts.noise = 0.05;
		opts.skew = 0.1;
		opts.keep_records = true;
		if (hs_sim_run(&cfg, models, sc.devs, sc.n_devs, sc.jobs,
			       sc.n_jobs, &opts, &res, &err))
			fail_msg("%s: %s", want[p].policy, err.text);
		h = fnv(0xcbf29ce484222325ull, res.records,
			res.n_records * sizeof(*res.records));
		off = res.stats.decisions != want[p].decisions ||
		      res.stats.steps != want[p].steps ||
		      h != want[p].records_fnv || res.end_ns != want[p].end_ns;
		if (print || off) {
			print_message("\t\t{\"%s\", %llu, %llu, 0x%016llxull, "
				      "%lld},\n",
				      want[p].policy,
				      (unsigned long long)res.stats.decisions,
				      (unsigned long long)res.stats.steps,
				      (unsigned long long)h,
				      (long long)res.end_ns);
			bad += off;
		}
		hs_sim_result_release(&res);
	}
	free_scenario(&sc);
	hs_model_catalog_free(models);
	assert_int_equal(bad, 0);
}

/* Same seed, same inputs: identical results, byte for byte. */
static void test_deterministic(void **state)
{
	hs_model_catalog_t *models = hs_test_models();
	hs_sim_result_t a, b;
	hs_sched_config_t cfg;
	hs_sim_opts_t opts = {0};
	scenario_t sc;
	hs_error_t err;

	make_scenario(&sc, 77, 200, 400);
	hs_sched_config_init(&cfg);
	cfg.power_budget_w = sc.idle_w + (sc.max_w - sc.idle_w) * 0.5;
	opts.seed = 5;
	opts.noise = 0.2;
	opts.skew = 0.2;
	opts.keep_records = true;
	opts.bin_ns = 100 * MS;
	assert_int_equal(hs_sim_run(&cfg, models, sc.devs, sc.n_devs, sc.jobs,
				    sc.n_jobs, &opts, &a, &err),
			 0);
	assert_int_equal(hs_sim_run(&cfg, models, sc.devs, sc.n_devs, sc.jobs,
				    sc.n_jobs, &opts, &b, &err),
			 0);
	assert_int_equal(a.n_records, b.n_records);
	assert_true(a.n_records > 0);
	assert_memory_equal(a.records, b.records,
			    a.n_records * sizeof(*a.records));
	assert_int_equal(a.n_bins, b.n_bins);
	assert_memory_equal(a.bins, b.bins, a.n_bins * sizeof(*a.bins));
	assert_int_equal(a.end_ns, b.end_ns);
	assert_true(a.energy_j == b.energy_j);
	hs_sim_result_release(&b);
	/* A different noise seed gives different times. */
	opts.seed = 6;
	assert_int_equal(hs_sim_run(&cfg, models, sc.devs, sc.n_devs, sc.jobs,
				    sc.n_jobs, &opts, &b, &err),
			 0);
	assert_true(a.end_ns != b.end_ns);
	hs_sim_result_release(&a);
	hs_sim_result_release(&b);
	free_scenario(&sc);
	hs_model_catalog_free(models);
}

/* The core's modeled energy equals what the driver integrated. */
static void test_energy_accounting(void **state)
{
	hs_model_catalog_t *models = hs_test_models();
	hs_sched_config_t cfg;
	hs_sim_opts_t opts = {0};
	hs_sim_result_t res;
	scenario_t sc;
	hs_error_t err;
	double busy_energy = 0, step_energy, idle_energy = 0;
	size_t d;

	make_scenario(&sc, 3, 100, 300);
	hs_sched_config_init(&cfg);
	cfg.policy = "fifo";
	opts.seed = 1;
	assert_int_equal(hs_sim_run(&cfg, models, sc.devs, sc.n_devs, sc.jobs,
				    sc.n_jobs, &opts, &res, &err),
			 0);
	for (d = 0; d < res.n_devices; d++) {
		busy_energy += res.devices[d].energy_j;
		idle_energy += sc.devs[d].idle_w *
			       (double)(res.end_ns - res.first_arrival_ns -
					res.devices[d].busy_ns) /
			       1e9;
	}
	step_energy = res.stats.energy_j;
	assert_true(fabs(step_energy - busy_energy) < 1e-6 * busy_energy);
	/* Driver: whole-node energy = steps + idle time of every device. */
	assert_true(fabs(res.energy_j - (busy_energy + idle_energy)) <
		    1e-6 * res.energy_j);
	assert_false(res.stats.energy_measured);
	hs_sim_result_release(&res);
	free_scenario(&sc);
	hs_model_catalog_free(models);
}

/*
 * On steady loads the lp policy serves at least what every other policy
 * serves (within 2 %), and no policy beats the LP upper bound.
 */
static void test_lp_steady(void **state)
{
	const char *const *policies = hs_policy_names();
	hs_model_catalog_t *models = hs_test_models();
	uint64_t seed, checked = 0;

	for (seed = 500; seed < 512; seed++) {
		hs_sched_config_t cfg;
		hs_sim_opts_t opts = {0};
		hs_sim_result_t res;
		scenario_t sc;
		hs_error_t err;
		double tps[8] = {0}, bound = 0, best = 0, lp = -1, rate;
		size_t p, i;

		/* Probe the fleet's bound, then load it steadily: a quarter
		 * of the fluid bound, which batching cannot fully reach. */
		make_scenario(&sc, seed, 50, 300);
		hs_sched_config_init(&cfg);
		cfg.policy = "lp";
		opts.seed = seed;
		opts.want_upper_bound = true;
		assert_int_equal(hs_sim_run(&cfg, models, sc.devs, sc.n_devs,
					    sc.jobs, sc.n_jobs, &opts, &res,
					    &err),
				 0);
		bound = res.upper_bound_tps;
		hs_sim_result_release(&res);
		free_scenario(&sc);
		if (bound <= 0)
			continue;
		/* Mean output per job is about 150 tokens. */
		rate = 0.25 * bound / 150.0;
		make_scenario(&sc, seed, rate, 3000);
		for (i = 0; i < sc.n_jobs; i++)
			sc.jobs[i].priority = 0;
		for (p = 0; policies[p] && p < 8; p++) {
			cfg.policy = policies[p];
			assert_int_equal(hs_sim_run(&cfg, models, sc.devs,
						    sc.n_devs, sc.jobs,
						    sc.n_jobs, &opts, &res,
						    &err),
					 0);
			tps[p] = (double)res.stats.output_tokens /
				 ((double)(res.end_ns - res.first_arrival_ns) /
				  1e9);
			if (res.upper_bound_tps > 0 &&
			    tps[p] > res.upper_bound_tps * 1.0001)
				fail_msg("seed %llu: %s at %.1f tok/s beats "
					 "the bound %.1f",
					 (unsigned long long)seed, policies[p],
					 tps[p], res.upper_bound_tps);
			if (!strcmp(policies[p], "lp"))
				lp = tps[p];
			else if (tps[p] > best)
				best = tps[p];
			hs_sim_result_release(&res);
		}
		assert_true(lp > 0);
		if (lp < best * 0.98)
			fail_msg("seed %llu: lp %.1f tok/s, best other %.1f",
				 (unsigned long long)seed, lp, best);
		checked++;
		free_scenario(&sc);
	}
	assert_true(checked >= 10);
	hs_model_catalog_free(models);
}

/* A steady stream of m-big jobs, all of one priority. */
static void steady_jobs(hs_sim_job_t *jobs, size_t n, double rate_per_s,
			uint64_t seed)
{
	int64_t t = 0;
	size_t i;

	rng_state = seed;
	for (i = 0; i < n; i++) {
		t += (int64_t)(-log(1.0 - unif()) / rate_per_s * 1e9);
		jobs[i].arrival_ns = t;
		jobs[i].model = 1;
		jobs[i].ctx_tokens = range(1, 2000);
		jobs[i].gen_tokens = range(1, 300);
		jobs[i].priority = 0;
	}
}

/*
 * Under a budget that binds at every instant, lp serves within 2 % of tpw
 * (which runs every device at its most efficient level) and no more than
 * the bound. Eight devices of four kinds, whose fastest levels draw 3700 W
 * together and whose most efficient ones 1900 W, share 1800 W under a
 * steady load above what the fleet serves. The LP holds the budget only on
 * average over time: steps at the fastest level that fits when they start
 * leave the next devices waiting for power, and the fleet serves less
 * than at efficient levels.
 */
static void test_lp_budget_steady(void **state)
{
	static const double h100[] = {700, 1.0, 550, 0.95, 400, 0.85, 300, 0.7};
	static const double h20[] = {400, 1.0, 350, 0.96, 300, 0.9, 250, 0.8};
	static const double a100[] = {400, 1.0,	 330, 0.95,
				      250, 0.85, 200, 0.74};
	static const double l40s[] = {350, 1.0,	 300, 0.95,
				      250, 0.87, 200, 0.75};
	hs_model_catalog_t *models = hs_test_models();
	hs_device_t devs[8];
	hs_sim_job_t *jobs;
	hs_sched_config_t cfg;
	hs_sim_opts_t opts = {0};
	hs_sim_result_t res;
	hs_error_t err;
	double tps[2], sum[2] = {0, 0};
	size_t i, n = 3000, p;
	uint64_t seed;

	for (i = 0; i < 2; i++) {
		devs[i] =
			hs_test_device("h100", 80, 3350, 989, 70, 700, 4, h100);
		devs[2 + i] =
			hs_test_device("h20", 96, 4000, 148, 60, 400, 4, h20);
		devs[4 + i] =
			hs_test_device("a100", 80, 2039, 312, 50, 400, 4, a100);
		devs[6 + i] =
			hs_test_device("l40s", 48, 864, 362, 35, 350, 4, l40s);
	}
	jobs = test_calloc(n, sizeof(*jobs));
	hs_sched_config_init(&cfg);
	cfg.power_budget_w = 1800;
	opts.want_upper_bound = true;
	for (seed = 1; seed <= 4; seed++) {
		/* About 9000 output tokens/s, a tenth more than tpw serves. */
		steady_jobs(jobs, n, 60, 4241 + seed);
		opts.seed = seed;
		for (p = 0; p < 2; p++) {
			cfg.policy = p ? "lp" : "tpw";
			assert_int_equal(hs_sim_run(&cfg, models, devs, 8, jobs,
						    n, &opts, &res, &err),
					 0);
			assert_int_equal(res.stats.power_violations, 0);
			tps[p] = (double)res.stats.output_tokens /
				 ((double)(res.end_ns - res.first_arrival_ns) /
				  1e9);
			assert_true(res.upper_bound_tps > 0);
			assert_true(tps[p] <= res.upper_bound_tps * 1.0001);
			hs_sim_result_release(&res);
		}
		/* Each seed within 5 %, the seeds together within 2 %: one
		 * seed's arrivals may favour either policy a little. */
		if (tps[1] < tps[0] * 0.95)
			fail_msg("seed %llu: lp %.1f tok/s, tpw %.1f",
				 (unsigned long long)seed, tps[1], tps[0]);
		sum[0] += tps[0];
		sum[1] += tps[1];
	}
	if (sum[1] < sum[0] * 0.98)
		fail_msg("lp %.1f tok/s, tpw %.1f over the seeds", sum[1] / 4,
			 sum[0] / 4);
	test_free(jobs);
	hs_model_catalog_free(models);
}

/* ---- runs and single steps decide the same ---------------------------- */

/*
 * Where two results of the same scenario first differ ("" when they do
 * not): every count and figure of the core and of the driver, doubles and
 * floats bit for bit. Not events (a run is one event, its steps many) nor
 * sched_cpu_ns (wall clock).
 */
typedef struct diff_s {
	char text[160];
} diff_t;

static bool differ_u(diff_t *df, const char *what, long i, uint64_t u,
		     uint64_t v)
{
	if (u == v)
		return false;
	if (i >= 0)
		snprintf(df->text, sizeof(df->text), "%s[%ld]: %llu vs %llu",
			 what, i, (unsigned long long)u, (unsigned long long)v);
	else
		snprintf(df->text, sizeof(df->text), "%s: %llu vs %llu", what,
			 (unsigned long long)u, (unsigned long long)v);
	return true;
}

static bool differ_i(diff_t *df, const char *what, long i, int64_t u, int64_t v)
{
	if (u == v)
		return false;
	if (i >= 0)
		snprintf(df->text, sizeof(df->text), "%s[%ld]: %lld vs %lld",
			 what, i, (long long)u, (long long)v);
	else
		snprintf(df->text, sizeof(df->text), "%s: %lld vs %lld", what,
			 (long long)u, (long long)v);
	return true;
}

static bool differ_d(diff_t *df, const char *what, long i, double u, double v)
{
	if (!memcmp(&u, &v, sizeof(u)))
		return false;
	if (i >= 0)
		snprintf(df->text, sizeof(df->text), "%s[%ld]: %.17g vs %.17g",
			 what, i, u, v);
	else
		snprintf(df->text, sizeof(df->text), "%s: %.17g vs %.17g", what,
			 u, v);
	return true;
}

static bool differ_f(diff_t *df, const char *what, long i, float u, float v)
{
	if (!memcmp(&u, &v, sizeof(u)))
		return false;
	snprintf(df->text, sizeof(df->text), "%s[%ld]: %.9g vs %.9g", what, i,
		 (double)u, (double)v);
	return true;
}

/* A field appended to these structs must be added to the comparison. */
_Static_assert(offsetof(hs_sched_stats_t, perf_calibrated_error) +
			       sizeof(double) ==
		       sizeof(hs_sched_stats_t),
	       "compare every field of hs_sched_stats_t in results_differ");
_Static_assert(offsetof(hs_device_stats_t, busy) + sizeof(bool) +
			       sizeof(double) >
		       sizeof(hs_device_stats_t),
	       "compare every field of hs_device_stats_t in results_differ");
/* Records and bins are compared whole: no padding in them. */
_Static_assert(sizeof(hs_sim_record_t) == 7 * 4, "hs_sim_record_t padded");
_Static_assert(sizeof(hs_sim_power_bin_t) == 4 * 4,
	       "hs_sim_power_bin_t padded");

#define DIFF_U(f) differ_u(df, #f, -1, a->f, b->f)
#define DIFF_I(f) differ_i(df, #f, -1, a->f, b->f)
#define DIFF_D(f) differ_d(df, #f, -1, a->f, b->f)
#define DIFF_DEV_U(f) differ_u(df, "devices." #f, (long)i, da->f, db->f)
#define DIFF_DEV_I(f) differ_i(df, "devices." #f, (long)i, da->f, db->f)
#define DIFF_DEV_D(f) differ_d(df, "devices." #f, (long)i, da->f, db->f)
#define DIFF_REC_U(f) differ_u(df, "records." #f, (long)i, ra->f, rb->f)
#define DIFF_REC_F(f) differ_f(df, "records." #f, (long)i, ra->f, rb->f)
#define DIFF_REC_I(f) differ_i(df, "records." #f, (long)i, ra->f, rb->f)
#define DIFF_BIN_U(f) differ_u(df, "bins." #f, (long)i, ba->f, bb->f)
#define DIFF_BIN_F(f) differ_f(df, "bins." #f, (long)i, ba->f, bb->f)

static bool results_differ(const hs_sim_result_t *a, const hs_sim_result_t *b,
			   diff_t *df)
{
	size_t i;

	df->text[0] = 0;
	/* The core's counts and figures, field by field (the struct has
	 * padding after energy_measured). */
	if (DIFF_U(stats.submitted) || DIFF_U(stats.refused) ||
	    DIFF_U(stats.completed) || DIFF_U(stats.cancelled) ||
	    DIFF_U(stats.requeued) || DIFF_U(stats.failed) ||
	    DIFF_U(stats.queued) || DIFF_U(stats.running) ||
	    DIFF_U(stats.decisions) || DIFF_U(stats.replans) ||
	    DIFF_U(stats.steps) || DIFF_U(stats.output_tokens) ||
	    DIFF_U(stats.prefill_tokens) || DIFF_D(stats.energy_j) ||
	    DIFF_U(stats.energy_measured) || DIFF_D(stats.budget_w) ||
	    DIFF_D(stats.power_floor_w) || DIFF_D(stats.power_w) ||
	    DIFF_D(stats.peak_power_w) || DIFF_U(stats.power_violations) ||
	    DIFF_D(stats.max_violation_w) || DIFF_U(stats.power_waits) ||
	    DIFF_U(stats.paused) || DIFF_U(stats.perf_outliers) ||
	    DIFF_D(stats.perf_mean_rel_error) ||
	    DIFF_D(stats.perf_calibrated_error))
		return true;
	if (DIFF_U(n_devices))
		return true;
	for (i = 0; i < a->n_devices; i++) {
		const hs_device_stats_t *da = &a->devices[i],
					*db = &b->devices[i];

		if (DIFF_DEV_U(steps) || DIFF_DEV_U(output_tokens) ||
		    DIFF_DEV_I(busy_ns) || DIFF_DEV_D(energy_j) ||
		    DIFF_DEV_U(failed) || DIFF_DEV_U(busy))
			return true;
	}
	/* The driver's. */
	if (DIFF_I(end_ns) || DIFF_I(first_arrival_ns) || DIFF_D(energy_j) ||
	    DIFF_U(power_violations) || DIFF_D(max_violation_w) ||
	    DIFF_D(peak_power_w) || DIFF_U(lost_jobs) ||
	    DIFF_U(duplicate_done) || DIFF_U(submit_failures) ||
	    DIFF_U(device_failures) || DIFF_D(upper_bound_tps))
		return true;
	if (DIFF_U(n_records))
		return true;
	if (a->n_records &&
	    memcmp(a->records, b->records, a->n_records * sizeof(*a->records)))
		for (i = 0; i < a->n_records; i++) {
			const hs_sim_record_t *ra = &a->records[i],
					      *rb = &b->records[i];

			if (DIFF_REC_F(ttft_ms) || DIFF_REC_F(e2e_ms) ||
			    DIFF_REC_F(tpot_ms) || DIFF_REC_F(queue_ms) ||
			    DIFF_REC_F(energy_j) || DIFF_REC_U(gen_tokens) ||
			    DIFF_REC_I(device))
				return true;
		}
	if (DIFF_U(n_bins) || DIFF_I(bin_ns))
		return true;
	if (a->n_bins && memcmp(a->bins, b->bins, a->n_bins * sizeof(*a->bins)))
		for (i = 0; i < a->n_bins; i++) {
			const hs_sim_power_bin_t *ba = &a->bins[i],
						 *bb = &b->bins[i];

			if (DIFF_BIN_F(avg_w) || DIFF_BIN_F(max_w) ||
			    DIFF_BIN_F(budget_w) || DIFF_BIN_U(tokens))
				return true;
		}
	return false;
}

/* What one scenario of test_runs_same_as_steps exercises. */
typedef struct runs_case_s {
	scenario_t sc;
	hs_sched_config_t cfg;
	hs_sim_opts_t opts;
	hs_sim_event_t fail[2];
	bool contended; /* see runs_case */
	char desc[256];
} runs_case_t;

/* The scenario in words, for failure messages. */
static void runs_case_describe(runs_case_t *rc, uint64_t seed)
{
	const scenario_t *sc = &rc->sc;
	const hs_sched_config_t *cfg = &rc->cfg;
	const hs_sim_opts_t *opts = &rc->opts;
	size_t n = opts->n_failures;

	snprintf(rc->desc, sizeof(rc->desc),
		 "seed %llu: policy %s, %zu devices, %zu jobs, lease %lld ns, "
		 "budget %.1f W with %zu changes, %zu failures, noise %.1f, "
		 "batches %u..%u wait %lld ns",
		 (unsigned long long)seed, cfg->policy, sc->n_devs, sc->n_jobs,
		 (long long)cfg->power_lease_ns, cfg->power_budget_w,
		 sc->n_budget, n, opts->noise, cfg->min_batch_jobs,
		 cfg->max_batch_jobs, (long long)cfg->max_wait_ns);
}

/*
 * A random scenario for a seed: the policy and the power lease (0: at
 * every step, the default, 2 s) from the seed, so that every pair comes
 * up; a budget or none, with changes that drop below the draw (sometimes
 * below the idle floor) and rise again, some at the instant a job arrives
 * or a device fails; device failures; noise or none; batches that wait
 * for company.
 */
static void runs_case(runs_case_t *rc, uint64_t seed)
{
	static const int64_t leases[] = {0, -1, 2000 * MS};
	const char *const *policies = hs_policy_names();
	scenario_t *sc = &rc->sc;
	hs_sched_config_t *cfg = &rc->cfg;
	hs_sim_opts_t *opts = &rc->opts;
	size_t n_jobs = 40 + (size_t)(seed * 37 % 160);
	bool contended = seed / 5 % 3 == 2 && seed % 8 == 2;
	int64_t end;
	double span;
	int n;

	make_scenario(sc, seed, 20 + (double)(seed % 7) * 30, n_jobs);
	/* Some scenarios of a long lease under a budget (one of each
	 * policy) are of two devices of a kind with power levels, only one
	 * of which the budget lets run at a time, the first busy from the
	 * first arrival on with a long job: see pin_to_steps. */
	rc->contended = contended;
	if (contended) {
		while (sc->devs[0].n_levels < 2)
			sc->devs[0] = random_device();
		sc->devs[1] = sc->devs[0];
		sc->n_devs = 2;
		sc->idle_w = 2 * sc->devs[0].idle_w;
		sc->max_w = 2 * sc->devs[0].max_w;
		sc->jobs[0].model = 0;
		sc->jobs[0].ctx_tokens = 100;
		sc->jobs[0].gen_tokens = 300;
	}
	end = sc->jobs[sc->n_jobs - 1].arrival_ns;
	span = sc->max_w - sc->idle_w;
	hs_sched_config_init(cfg);
	cfg->policy = policies[seed % 5];
	if (leases[seed / 5 % 3] >= 0)
		cfg->power_lease_ns = leases[seed / 5 % 3];
	cfg->max_batch_jobs = range(1, 48);
	if (seed % 2) {
		cfg->min_batch_jobs = range(2, 4);
		cfg->max_wait_ns = range(1, 50) * MS;
		if (cfg->min_batch_jobs > cfg->max_batch_jobs)
			cfg->min_batch_jobs = cfg->max_batch_jobs;
	}
	if (seed % 6 == 0)
		cfg->aging_ns = 100 * MS;
	memset(opts, 0, sizeof(*opts));
	opts->seed = seed;
	opts->noise = (double)(seed / 3 % 3) * 0.1;
	opts->skew = 0.2;
	opts->keep_records = true;
	opts->bin_ns = 25 * MS;
	sc->n_budget = 0;
	switch (seed % 4) {
	case 0: /* no budget */
		break;
	case 1: /* one budget throughout */
		cfg->power_budget_w = sc->idle_w + span * (0.2 + 0.8 * unif());
		break;
	case 2:
		/* A budget, a drop below the draw (or below the idle floor),
		 * a rise at the instant a device may fail, then none. */
		cfg->power_budget_w = sc->idle_w + span * (0.4 + 0.6 * unif());
		sc->budget[0].at_ns = end / 4;
		sc->budget[0].budget_w =
			seed % 8 == 6 ? sc->idle_w * 0.9
				      : sc->idle_w + span * 0.1 * unif();
		sc->budget[1].at_ns = end / 2;
		sc->budget[1].budget_w =
			sc->idle_w + span * (0.5 + 0.5 * unif());
		sc->budget[2].at_ns = end / 4 * 3;
		sc->budget[2].budget_w = 0;
		sc->n_budget = 3;
		break;
	default:
		/* None, then a budget below the draw from the instant a job
		 * arrives, then none again. */
		sc->budget[0].at_ns = sc->jobs[sc->n_jobs / 3].arrival_ns;
		sc->budget[0].budget_w = sc->idle_w + span * 0.3 * unif();
		sc->budget[1].at_ns = end / 3 * 2 > sc->budget[0].at_ns
					      ? end / 3 * 2
					      : sc->budget[0].at_ns + 1;
		sc->budget[1].budget_w = 0;
		sc->n_budget = 2;
		break;
	}
	if (contended) {
		/* One device at its fastest level and the other idle fit,
		 * not both busy at any level. */
		const hs_device_t *dv = &sc->devs[0];
		double low = dv->levels[dv->n_levels - 1].cap_w;

		cfg->power_budget_w = dv->levels[0].cap_w + dv->idle_w +
				      (low - dv->idle_w) * 0.5 * unif();
	}
	opts->budget_changes = sc->budget;
	opts->n_budget_changes = sc->n_budget;
	n = 0;
	if (seed % 3 == 0 && sc->n_devs > 1) {
		rc->fail[n].at_ns = end / 2;
		rc->fail[n++].device = (int)(rnd() % sc->n_devs);
		if (seed % 9 == 0 && sc->n_devs > 2) {
			rc->fail[n].at_ns = end / 4 * 3;
			rc->fail[n].device =
				(rc->fail[0].device + 1) % (int)sc->n_devs;
			n++;
		}
	}
	opts->failures = rc->fail;
	opts->n_failures = (size_t)n;
	runs_case_describe(rc, seed);
}

/*
 * The last event at or before x of the scenario as it stands, run one step
 * at a time: mostly a step's end. Changes made at that instant or later
 * leave everything before it as it was, so it stays an event; with runs,
 * it is usually a boundary inside a run, where a tie of a change and a
 * step's end must be ordered as a driver of single steps orders it.
 */
static int64_t step_end_before(const runs_case_t *rc,
			       const hs_model_catalog_t *models, int64_t x)
{
	hs_sim_opts_t o = rc->opts;
	hs_sim_result_t res;
	hs_error_t err;
	int64_t at;

	o.single_steps = true;
	o.keep_records = false;
	o.bin_ns = 0;
	o.time_limit_ns = x - rc->sc.jobs[0].arrival_ns;
	if (o.time_limit_ns <= 0)
		return -1;
	if (hs_sim_run(&rc->cfg, models, rc->sc.devs, rc->sc.n_devs,
		       rc->sc.jobs, rc->sc.n_jobs, &o, &res, &err))
		fail_msg("%s: probe: %s", rc->desc, err.text);
	at = res.end_ns;
	hs_sim_result_release(&res);
	return at;
}

/* A short job of each model arrives at `at`, after those already due. */
static void arrive_at(scenario_t *sc, int64_t at)
{
	size_t i = sc->n_jobs, k;

	sc->jobs = test_realloc(sc->jobs, (sc->n_jobs + 2) * sizeof(*sc->jobs));
	assert_non_null(sc->jobs);
	while (i > 0 && sc->jobs[i - 1].arrival_ns > at)
		i--;
	memmove(&sc->jobs[i + 2], &sc->jobs[i],
		(sc->n_jobs - i) * sizeof(*sc->jobs));
	for (k = 0; k < 2; k++) {
		sc->jobs[i + k].arrival_ns = at;
		sc->jobs[i + k].model = (uint32_t)k;
		sc->jobs[i + k].ctx_tokens = range(1, 200);
		sc->jobs[i + k].gen_tokens = range(1, 100);
		sc->jobs[i + k].priority = 0;
	}
	sc->n_jobs += 2;
}

static bool is_arrival(const scenario_t *sc, int64_t at)
{
	size_t i;

	for (i = 0; i < sc->n_jobs; i++)
		if (sc->jobs[i].arrival_ns == at)
			return true;
	return false;
}

/*
 * Move the scenario's changes onto the ends of steps, in time order (each
 * probe sees the ones before it in place): on contended fleets the end of
 * the first lease, the first budget drop, jobs at 30 % and 40 % of the
 * arrivals, and on some seeds the first failure.
 */
static void pin_to_steps(runs_case_t *rc, const hs_model_catalog_t *models,
			 uint64_t seed)
{
	int64_t end = rc->sc.jobs[rc->sc.n_jobs - 1].arrival_ns, at;
	int64_t first = rc->sc.jobs[0].arrival_ns;

	/* On a contended fleet (see runs_case), the lease of the device
	 * granted power at the first arrival ends where one of its steps
	 * ends: only it runs, so the last event before the probe's limit
	 * that is not an arrival is the end of one of its steps. */
	if (rc->contended) {
		int64_t x = first + (int64_t)(40 + seed % 10 * 4) * MS;
		int tries;

		if (rc->sc.n_budget && x >= rc->sc.budget[0].at_ns)
			x = rc->sc.budget[0].at_ns - 1;
		for (tries = 0; tries < 16; tries++) {
			at = step_end_before(rc, models, x);
			if (at <= first || !is_arrival(&rc->sc, at))
				break;
			x = at - 1;
		}
		if (at > first)
			rc->cfg.power_lease_ns = at - first;
	}
	if (seed % 4 == 2) {
		at = step_end_before(rc, models, rc->sc.budget[0].at_ns - 1);
		if (at >= 0)
			rc->sc.budget[0].at_ns = at;
	}
	at = step_end_before(rc, models, end / 10 * 3);
	if (at >= 0)
		arrive_at(&rc->sc, at);
	at = step_end_before(rc, models, end / 10 * 4);
	if (at >= 0)
		arrive_at(&rc->sc, at);
	if (rc->opts.n_failures && seed % 2 == 0) {
		at = step_end_before(rc, models, rc->fail[0].at_ns - 1);
		if (at >= 0)
			rc->fail[0].at_ns = at;
	}
}

/*
 * The design promise of runs: the core decides exactly the same whether
 * the driver hears of every step (single_steps) or of runs of them. Every
 * count, figure and record of the two simulations is equal, bit for bit;
 * only the number of events (and the wall-clock cost) differs.
 */
static void test_runs_same_as_steps(void **state)
{
	hs_model_catalog_t *models = hs_test_models();
	uint64_t seed, n_pol = 0, runs = 0, events[2] = {0, 0};
	uint64_t waits = 0, paused = 0, requeued = 0, leased = 0, replans = 0;
	uint64_t completed = 0;

	while (hs_policy_names()[n_pol])
		n_pol++;
	assert_int_equal(n_pol, 5);
	for (seed = 1; seed <= 150; seed++) {
		hs_sim_result_t res[2];
		runs_case_t rc;
		hs_error_t err;
		diff_t df;
		int single;

		runs_case(&rc, seed);
		pin_to_steps(&rc, models, seed);
		runs_case_describe(&rc, seed);
		for (single = 0; single < 2; single++) {
			rc.opts.single_steps = single;
			if (hs_sim_run(&rc.cfg, models, rc.sc.devs,
				       rc.sc.n_devs, rc.sc.jobs, rc.sc.n_jobs,
				       &rc.opts, &res[single], &err))
				fail_msg("%s, single_steps %d: %s", rc.desc,
					 single, err.text);
			events[single] += res[single].events;
		}
		if (results_differ(&res[0], &res[1], &df))
			fail_msg("%s: runs and single steps differ first in "
				 "%s (runs vs single steps)",
				 rc.desc, df.text);
		completed += res[0].stats.completed;
		waits += res[0].stats.power_waits;
		paused += res[0].stats.paused;
		requeued += res[0].stats.requeued;
		replans += res[0].stats.replans;
		leased += rc.cfg.power_budget_w > 0 &&
			  rc.cfg.power_lease_ns > 0 &&
			  res[0].stats.power_waits > 0;
		runs++;
		hs_sim_result_release(&res[0]);
		hs_sim_result_release(&res[1]);
		free_scenario(&rc.sc);
	}
	/* The scenarios exercised what they claim to: runs of several steps
	 * (far fewer events), the governor holding devices back and pausing
	 * batches, long leases under contention, failures, re-plans. */
	assert_int_equal(runs, 150);
	assert_true(completed > 10000);
	assert_true(events[0] * 2 < events[1]);
	assert_true(waits > 0);
	assert_true(paused > 0);
	assert_true(leased > 0);
	assert_true(requeued > 0);
	assert_true(replans > 0);
	hs_model_catalog_free(models);
}

/*
 * The same promise when a device fails in the middle of a run: a slow
 * device starts a long job at 0, fails at 100 ms, and a fast one takes the
 * job over and finishes it. The core decides the same either way.
 *
 * The failed device's completion goes with it: a stale one would stay due
 * where the whole run would have ended, and the loop would run on to it
 * (end_ns, and the driver's energy and bins up to it, would differ).
 */
static void test_runs_same_after_failure(void **state)
{
	hs_model_catalog_t *models = hs_test_models();
	hs_device_t devs[2] = {
		hs_test_device("cpu", 64, 200, 5, 80, 300, 0, NULL),
		hs_test_device("big", 80, 3350, 989, 70, 700, 0, NULL),
	};
	hs_sim_job_t job = {.model = 0, .ctx_tokens = 100, .gen_tokens = 300};
	hs_sim_event_t fail = {.at_ns = 100 * MS, .device = 0};
	hs_sim_result_t res[2];
	hs_sched_config_t cfg;
	hs_sim_opts_t opts = {0};
	hs_error_t err;
	diff_t df;
	bool differ;
	int single;

	hs_sched_config_init(&cfg);
	cfg.policy = "fifo";
	opts.seed = 1;
	opts.keep_records = true;
	opts.bin_ns = 25 * MS;
	opts.failures = &fail;
	opts.n_failures = 1;
	for (single = 0; single < 2; single++) {
		opts.single_steps = single;
		assert_int_equal(hs_sim_run(&cfg, models, devs, 2, &job, 1,
					    &opts, &res[single], &err),
				 0);
		/* The job ran on both and finished on the fast one. */
		assert_int_equal(res[single].stats.completed, 1);
		assert_int_equal(res[single].stats.requeued, 1);
		assert_true(res[single].devices[0].failed);
		assert_true(res[single].devices[0].steps > 0);
		assert_int_equal(res[single].n_records, 1);
		assert_int_equal(res[single].records[0].device, 1);
	}
	differ = results_differ(&res[0], &res[1], &df);
	if (differ)
		print_message("after a device failure, runs and single steps "
			      "differ first in %s\n",
			      df.text);
	assert_false(differ);
	/* The run ends with the job, not where the failed run would
	 * have. */
	assert_true(res[0].end_ns <=
		    res[0].first_arrival_ns +
			    (int64_t)(res[0].records[0].e2e_ms * 1e6) +
			    1000000);
	hs_sim_result_release(&res[0]);
	hs_sim_result_release(&res[1]);
	hs_model_catalog_free(models);
}

/* ---- power leases, event by event ------------------------------------- */

#define LEASE_STEP_NS (10 * MS)
#define LEASE_MAX_STEPS 128
#define LEASE_MAX_RUN 64

/* A driver of two devices whose steps all take 10 ms. */
typedef struct lease_fx_s {
	hs_model_catalog_t *models;
	hs_sched_t *s;
	struct {
		int device, level;
		int64_t at, until_ns;
		uint32_t steps;
		double power_w;
	} steps[LEASE_MAX_STEPS];
	size_t n_steps;
	int64_t end[2]; /* the running part's end; -1: idle */
	uint32_t part[2]; /* its steps */
	int cuts[2];
	int64_t now;
} lease_fx_t;

static void lease_on_step(void *ud, const hs_step_t *st)
{
	lease_fx_t *fx = ud;
	size_t i = fx->n_steps++;
	uint32_t n = 0;
	int64_t at = fx->now;

	assert_true(i < LEASE_MAX_STEPS);
	assert_true(st->device == 0 || st->device == 1);
	assert_true(fx->end[st->device] < 0);
	fx->steps[i].device = st->device;
	fx->steps[i].level = st->level;
	fx->steps[i].at = fx->now;
	fx->steps[i].until_ns = st->until_ns;
	fx->steps[i].steps = st->steps;
	fx->steps[i].power_w = st->power_w;
	/* Up to the first step that ends at or after until_ns. */
	while (n < st->steps) {
		at += LEASE_STEP_NS;
		n++;
		if (at >= st->until_ns)
			break;
	}
	fx->end[st->device] = at;
	fx->part[st->device] = n;
}

static void lease_on_cut(void *ud, int device)
{
	lease_fx_t *fx = ud;
	int64_t start = fx->end[device] - fx->part[device] * LEASE_STEP_NS;
	uint32_t n = (uint32_t)((fx->now - start) / LEASE_STEP_NS) + 1;

	fx->cuts[device]++;
	/* The run ends at its first boundary after now. */
	if (n < fx->part[device]) {
		fx->part[device] = n;
		fx->end[device] = start + n * LEASE_STEP_NS;
	}
}

static lease_fx_t *lease_new(int64_t lease_ns, double budget_w,
			     uint32_t max_run)
{
	static const double lv[] = {300, 1.0, 200, 0.8};
	hs_device_t d[2] = {
		hs_test_device("a", 80, 1000, 100, 50, 300, 2, lv),
		hs_test_device("b", 80, 1000, 100, 50, 300, 2, lv),
	};
	lease_fx_t *fx = test_calloc(1, sizeof(*fx));
	hs_sched_hooks_t hooks = {.step_start = lease_on_step,
				  .cut = lease_on_cut,
				  .max_run = max_run,
				  .ud = fx};
	hs_sched_config_t cfg;
	hs_error_t err;

	hs_sched_config_init(&cfg);
	cfg.policy = "rr";
	cfg.power_budget_w = budget_w;
	cfg.power_lease_ns = lease_ns;
	fx->models = hs_test_models();
	fx->end[0] = fx->end[1] = -1;
	if (hs_sched_new(&fx->s, &cfg, fx->models, d, 2, &hooks, &err))
		fail_msg("hs_sched_new: %s", err.text);
	return fx;
}

static void lease_free(lease_fx_t *fx)
{
	hs_sched_free(fx->s);
	hs_model_catalog_free(fx->models);
	test_free(fx);
}

/* One job for each device (rr binds the first to a, the second to b). */
static void lease_jobs(lease_fx_t *fx, uint32_t gen)
{
	hs_job_spec_t spec = {.model = 0,
			      .ctx_tokens = 100,
			      .gen_tokens = gen,
			      .deadline_ns = -1};
	uint64_t id;
	int i;

	for (i = 0; i < 2; i++)
		assert_int_equal(
			hs_sched_submit(fx->s, fx->now, &spec, &id, NULL), 0);
}

/* Report the parts that end up to `until`, in time order. */
static void lease_run(lease_fx_t *fx, int64_t until)
{
	int64_t ns[LEASE_MAX_RUN];
	size_t i;

	for (i = 0; i < LEASE_MAX_RUN; i++)
		ns[i] = LEASE_STEP_NS;
	for (;;) {
		int d = -1, k;

		for (k = 0; k < 2; k++)
			if (fx->end[k] >= 0 && fx->end[k] <= until &&
			    (d < 0 || fx->end[k] < fx->end[d]))
				d = k;
		if (d < 0)
			break;
		fx->now = fx->end[d];
		fx->end[d] = -1;
		assert_int_equal(hs_sched_run_done(fx->s, fx->now, d,
						   fx->part[d], ns, -1),
				 0);
	}
	if (until > fx->now)
		fx->now = until;
}

/*
 * Two devices, each fitting the budget of 360 W alone at its fastest level
 * (300 W + the other's 50 W idle) and neither together at any level: the
 * device granted the power keeps it for its lease, then the other gets it.
 */
static void test_power_lease(void **state)
{
	hs_sched_stats_t st;
	lease_fx_t *fx;
	size_t i;

	/* A lease of 100 ms, steps of 10 ms: ten steps each in turn. */
	fx = lease_new(100 * MS, 360, 0);
	lease_jobs(fx, 25);
	assert_int_equal(fx->n_steps, 1);
	hs_sched_stats(fx->s, &st);
	assert_int_equal(st.power_waits, 1); /* b waits */
	lease_run(fx, INT64_MAX);
	assert_int_equal(fx->n_steps, 50);
	for (i = 0; i < 40; i++) {
		assert_int_equal(fx->steps[i].at, (int64_t)i * LEASE_STEP_NS);
		assert_int_equal(fx->steps[i].device, (int)(i / 10 % 2));
		assert_int_equal(fx->steps[i].level, 0);
		assert_int_equal(fx->steps[i].steps, 1);
	}
	/* a's last five steps, then b's once a is done. */
	for (i = 40; i < 50; i++)
		assert_int_equal(fx->steps[i].device, i < 45 ? 0 : 1);
	hs_sched_stats(fx->s, &st);
	/* b at the start, then one device at each of four handovers. */
	assert_int_equal(st.power_waits, 5);
	assert_int_equal(st.completed, 2);
	assert_int_equal(st.power_violations, 0);
	lease_free(fx);

	/* No lease: the power passes at every step boundary. */
	fx = lease_new(0, 360, 0);
	lease_jobs(fx, 25);
	lease_run(fx, INT64_MAX);
	assert_int_equal(fx->n_steps, 50);
	for (i = 0; i < 50; i++) {
		assert_int_equal(fx->steps[i].device, (int)(i % 2));
		assert_int_equal(fx->steps[i].at, (int64_t)i * LEASE_STEP_NS);
		assert_int_equal(fx->steps[i].level, 0);
	}
	hs_sched_stats(fx->s, &st);
	assert_int_equal(st.power_waits, 49);
	assert_int_equal(st.power_violations, 0);
	lease_free(fx);

	/* A budget change ends the lease at the next step boundary: down to
	 * 300 W at 35 ms, a's step of 30..40 ms runs on at 300 W (grace),
	 * and at 40 ms the governor divides the new budget: b at its 200 W
	 * level (250 W with a idle), a waiting. */
	fx = lease_new(100 * MS, 360, 0);
	lease_jobs(fx, 25);
	lease_run(fx, 35 * MS);
	assert_int_equal(fx->n_steps, 4);
	assert_int_equal(hs_sched_set_budget(fx->s, 35 * MS, 300), 0);
	assert_int_equal(fx->n_steps, 4);
	hs_sched_stats(fx->s, &st);
	assert_int_equal(st.power_violations, 0);
	lease_run(fx, 40 * MS);
	assert_int_equal(fx->n_steps, 5);
	assert_int_equal(fx->steps[4].device, 1);
	assert_int_equal(fx->steps[4].at, 40 * MS);
	assert_int_equal(fx->steps[4].level, 1);
	assert_true(fx->steps[4].power_w == 200);
	/* b's lease, granted under the new budget, holds 100 ms. */
	lease_run(fx, 140 * MS);
	for (i = 4; i < fx->n_steps; i++)
		assert_int_equal(fx->steps[i].device, i < 14 ? 1 : 0);
	assert_int_equal(fx->n_steps, 15);
	assert_int_equal(fx->steps[14].at, 140 * MS);
	assert_int_equal(fx->steps[14].level, 1);
	hs_sched_stats(fx->s, &st);
	assert_int_equal(st.power_violations, 0);
	lease_free(fx);

	/* A driver of runs gets the lease as until_ns: a's run stops at
	 * 100 ms and b's starts, until 200 ms; a budget change cuts the
	 * run in progress, which ends at its next boundary. */
	fx = lease_new(100 * MS, 360, LEASE_MAX_RUN);
	lease_jobs(fx, 25);
	assert_int_equal(fx->n_steps, 1);
	assert_int_equal(fx->steps[0].steps, 25);
	assert_int_equal(fx->steps[0].until_ns, 100 * MS);
	lease_run(fx, 100 * MS);
	assert_int_equal(fx->n_steps, 2);
	assert_int_equal(fx->steps[1].device, 1);
	assert_int_equal(fx->steps[1].at, 100 * MS);
	assert_int_equal(fx->steps[1].until_ns, 200 * MS);
	assert_int_equal(fx->steps[1].steps, 25);
	fx->now = 135 * MS;
	assert_int_equal(hs_sched_set_budget(fx->s, fx->now, 300), 0);
	assert_int_equal(fx->cuts[1], 1);
	assert_int_equal(fx->cuts[0], 0); /* a is idle */
	lease_run(fx, 140 * MS);
	assert_int_equal(fx->n_steps, 3);
	assert_int_equal(fx->steps[2].device, 0);
	assert_int_equal(fx->steps[2].at, 140 * MS);
	assert_int_equal(fx->steps[2].level, 1);
	assert_int_equal(fx->steps[2].until_ns, 240 * MS);
	lease_run(fx, INT64_MAX);
	hs_sched_stats(fx->s, &st);
	assert_int_equal(st.completed, 2);
	assert_int_equal(st.steps, 50);
	assert_int_equal(st.power_violations, 0);
	lease_free(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_complete_once_within_budget),
		cmocka_unit_test(test_light_load_wait_bound),
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_golden_figures),
		cmocka_unit_test(test_energy_accounting),
		cmocka_unit_test(test_lp_steady),
		cmocka_unit_test(test_lp_budget_steady),
		cmocka_unit_test(test_runs_same_as_steps),
		cmocka_unit_test(test_runs_same_after_failure),
		cmocka_unit_test(test_power_lease),
	};

	return cmocka_run_group_tests_name("properties", tests, NULL, NULL);
}
