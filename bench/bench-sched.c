/*
 * bench-sched: how fast the scheduler core decides, and how much memory a
 * waiting job costs. Simulates N jobs (default 1,000,000) on 64 sim
 * devices of 4 kinds under a power budget, in virtual time, on one core.
 * A benchmark prints figures; it does not pass or fail.
 *
 *   build/bench-sched [--jobs N] [--devices N] [--policy NAME]
 *                     [--max-batch N] [--lease-ms MS] [--rate R]
 *                     [--single-steps] [--json]
 *
 * --single-steps hands the core every step instead of runs of them: the
 * same decisions and figures, at the cost of an event per step. --rate is
 * the arrival rate per device (default 6 jobs/s: about 35 % more than this
 * fleet serves under the budget, so that queues grow; about 4.5 is what it
 * serves).
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "sim.h"

/* Live bytes through the replaceable allocator: a size header per block. */
static size_t live_bytes;

static void *counting_malloc(size_t size)
{
	size_t *p = malloc(size + sizeof(size_t) * 2);

	if (!p)
		return NULL;
	p[0] = size;
	live_bytes += size;
	return p + 2;
}

static void counting_free(void *ptr)
{
	size_t *p = ptr;

	if (!p)
		return;
	live_bytes -= p[-2];
	free(p - 2);
}

static uint64_t rng = 0x2545f4914f6cdd1dull;

static double unif(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return (double)((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
}

static double normal(void)
{
	double u = unif(), v = unif();

	return sqrt(-2 * log(u + 1e-300)) * cos(2 * M_PI * v);
}

static uint32_t lognormal(double median, double sigma, uint32_t lo, uint32_t hi)
{
	double x = median * exp(sigma * normal());

	if (x < lo)
		return lo;
	if (x > hi)
		return hi;
	return (uint32_t)x;
}

/* A number from the command line in [lo, hi]. */
static int in_range(const char *arg, const char *opt, double lo, double hi,
		    double *out)
{
	char *end;
	double v = strtod(arg, &end);

	if (end == arg || *end || !(v >= lo && v <= hi)) {
		fprintf(stderr,
			"bench-sched: %s: '%s' is not a number in [%g, %g]\n",
			opt, arg, lo, hi);
		return 2;
	}
	*out = v;
	return 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int load_fleet(hs_device_t *devs, size_t n, double *max_w,
		      double *idle_w)
{
	static const char *const kinds[] = {"H100-SXM", "H20", "A100-SXM-80G",
					    "L40S"};
	hs_profile_catalog_t *cat = NULL;
	hs_error_t err;
	size_t i;

	if (hs_profile_catalog_load(&cat, "data/devices.json", &err)) {
		fprintf(stderr, "bench-sched: %s: %s\n", err.source, err.text);
		return 1;
	}
	*max_w = *idle_w = 0;
	for (i = 0; i < n; i++) {
		const hs_profile_t *p =
			hs_profile_catalog_find(cat, kinds[i % 4]);

		memset(&devs[i], 0, sizeof(devs[i]));
		snprintf(devs[i].name, sizeof(devs[i].name), "%s", p->name);
		snprintf(devs[i].profile, sizeof(devs[i].profile), "%s",
			 p->name);
		devs[i].kind = p->kind;
		devs[i].backend = HS_BACKEND_SIM;
		devs[i].memory_bytes = p->memory_bytes;
		devs[i].mem_bw_gbs = p->mem_bw_gbs;
		devs[i].peak_tflops = p->peak_tflops;
		devs[i].host_link_gbs = p->host_link_gbs;
		devs[i].idle_w = p->idle_w;
		devs[i].max_w = p->max_w;
		devs[i].n_levels = p->n_levels;
		memcpy(devs[i].levels, p->levels, sizeof(devs[i].levels));
		devs[i].numa_node = -1;
		*max_w += p->max_w;
		*idle_w += p->idle_w;
	}
	hs_profile_catalog_free(cat);
	return 0;
}

/* Bytes the core holds per waiting job: submit n jobs to a core whose
 * devices never finish a step, and count. */
static double bytes_per_pending(const hs_model_catalog_t *models,
				const hs_device_t *devs, size_t n_devs,
				size_t n, uint32_t model)
{
	hs_sched_config_t cfg;
	hs_sched_t *s = NULL;
	hs_error_t err;
	size_t i, before;
	uint64_t id;
	double per = -1;
	hs_sched_stats_t st;

	hs_set_alloc_funcs(counting_malloc, counting_free);
	hs_sched_config_init(&cfg);
	cfg.policy = "fifo";
	if (hs_sched_new(&s, &cfg, models, devs, n_devs, NULL, &err)) {
		fprintf(stderr, "bench-sched: %s\n", err.text);
		goto out;
	}
	before = live_bytes;
	for (i = 0; i < n; i++) {
		hs_job_spec_t spec = {.model = model,
				      .ctx_tokens = lognormal(800, 1, 1, 8000),
				      .gen_tokens =
					      lognormal(150, 0.8, 1, 1024),
				      .deadline_ns = -1};

		if (hs_sched_submit(s, 0, &spec, &id, &err)) {
			fprintf(stderr, "bench-sched: %s\n", err.text);
			break;
		}
	}
	hs_sched_stats(s, &st);
	if (st.queued)
		per = (double)(live_bytes - before) /
		      (double)(st.queued + st.running);
out:
	hs_sched_free(s);
	hs_set_alloc_funcs(NULL, NULL);
	return per;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"jobs", required_argument, NULL, 'n'},
		{"devices", required_argument, NULL, 'd'},
		{"policy", required_argument, NULL, 'p'},
		{"max-batch", required_argument, NULL, 'b'},
		{"json", no_argument, NULL, 'j'},
		{"single-steps", no_argument, NULL, 's'},
		{"lease-ms", required_argument, NULL, 'l'},
		{"rate", required_argument, NULL, 'r'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	size_t n_jobs = 1000000, n_devs = 64, i;
	const char *policy = "eft";
	hs_model_catalog_t *models = NULL;
	hs_sim_job_t *jobs;
	hs_device_t *devs;
	hs_sched_config_t cfg;
	hs_sim_opts_t opts = {0};
	hs_sim_result_t res;
	hs_error_t err;
	struct rusage ru;
	double max_w, idle_w, t0, wall, rate, per_pending, t = 0;
	bool json = false;
	unsigned long max_batch = 0;
	double lease_ms = -1, per_dev_rate = 6.0;
	uint32_t m8 = 0, mq = 0;
	int c;

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			n_jobs = strtoull(optarg, NULL, 10);
			break;
		case 'd':
			n_devs = strtoull(optarg, NULL, 10);
			break;
		case 'p':
			policy = optarg;
			break;
		case 'b':
			max_batch = strtoul(optarg, NULL, 10);
			break;
		case 'j':
			json = true;
			break;
		case 's':
			opts.single_steps = true;
			break;
		case 'l':
			if (in_range(optarg, "--lease-ms", 0, 3.6e6, &lease_ms))
				return 2;
			break;
		case 'r':
			if (in_range(optarg, "--rate", 1e-3, 1e6,
				     &per_dev_rate))
				return 2;
			break;
		case 'h':
			printf("usage: bench-sched [--jobs N] [--devices N] "
			       "[--policy NAME] [--max-batch N] "
			       "[--lease-ms MS] [--rate R] [--single-steps] "
			       "[--json]\n");
			return 0;
		default:
			return 2;
		}
	}
	if (n_jobs < 1 || n_devs < 1) {
		fprintf(stderr, "bench-sched: --jobs and --devices must be "
				"positive\n");
		return 2;
	}
	if (hs_model_catalog_load(&models, "data/models.json", &err)) {
		fprintf(stderr, "bench-sched: %s: %s\n", err.source, err.text);
		return 1;
	}
	devs = calloc(n_devs, sizeof(*devs));
	jobs = calloc(n_jobs, sizeof(*jobs));
	if (!devs || !jobs || load_fleet(devs, n_devs, &max_w, &idle_w))
		return 1;

	/* Llama-3.1-8B and Qwen2.5-7B, the Azure conversation trace's
	 * shape (median context ~800, generated ~150), arriving as a
	 * Poisson process, by default faster than the fleet serves them
	 * under the budget (see --rate). */
	for (i = 0; i < hs_model_catalog_count(models); i++) {
		const char *nm = hs_model_catalog_get(models, i)->name;

		if (!strcmp(nm, "Llama-3.1-8B"))
			m8 = (uint32_t)i;
		if (!strcmp(nm, "Qwen2.5-7B"))
			mq = (uint32_t)i;
	}
	{
		rate = per_dev_rate * (double)n_devs;
		for (i = 0; i < n_jobs; i++) {
			t += -log(1 - unif()) / rate;
			jobs[i].arrival_ns = (int64_t)(t * 1e9);
			jobs[i].model = i % 3 ? m8 : mq;
			jobs[i].ctx_tokens = lognormal(800, 1, 1, 8000);
			jobs[i].gen_tokens = lognormal(150, 0.8, 1, 1024);
		}
	}
	hs_sched_config_init(&cfg);
	cfg.policy = policy;
	cfg.power_budget_w = idle_w + 0.7 * (max_w - idle_w);
	if (max_batch)
		cfg.max_batch_jobs = (uint32_t)max_batch;
	if (lease_ms >= 0)
		cfg.power_lease_ns = (int64_t)(lease_ms * 1e6);
	opts.seed = 1;
	opts.noise = 0.05;

	t0 = now_s();
	if (hs_sim_run(&cfg, models, devs, n_devs, jobs, n_jobs, &opts, &res,
		       &err)) {
		fprintf(stderr, "bench-sched: %s\n", err.text);
		return 1;
	}
	wall = now_s() - t0;
	getrusage(RUSAGE_SELF, &ru);
	per_pending = bytes_per_pending(
		models, devs, n_devs, n_jobs < 1000000 ? n_jobs : 1000000, m8);

	if (json) {
		printf("{\"jobs\": %zu, \"devices\": %zu, \"policy\": \"%s\", "
		       "\"wall_s\": %.3f, \"jobs_per_s\": %.0f, "
		       "\"decisions\": %llu, \"decisions_per_s\": %.0f, "
		       "\"sched_ns_per_decision\": %.1f, \"steps\": %llu, "
		       "\"bytes_per_pending_job\": %.1f, "
		       "\"peak_rss_bytes\": %ld, \"power_violations\": %llu, "
		       "\"power_budget_w\": %.0f, \"simulated_s\": %.1f, "
		       "\"completed\": %llu}\n",
		       n_jobs, n_devs, policy, wall, (double)n_jobs / wall,
		       (unsigned long long)res.stats.decisions,
		       (double)res.stats.decisions / wall,
		       res.sched_cpu_ns / (double)res.stats.decisions,
		       (unsigned long long)res.stats.steps, per_pending,
		       ru.ru_maxrss * 1024L,
		       (unsigned long long)(res.power_violations +
					    res.stats.power_violations),
		       cfg.power_budget_w,
		       (double)(res.end_ns - res.first_arrival_ns) / 1e9,
		       (unsigned long long)res.stats.completed);
	} else {
		printf("bench-sched: %zu jobs on %zu sim devices (H100, H20, "
		       "A100, L40S), policy %s,\n"
		       "budget %.0f W (modeled power), one core\n\n",
		       n_jobs, n_devs, policy, cfg.power_budget_w);
		printf("  wall time              %10.3f s\n", wall);
		printf("  simulated time         %10.1f s\n",
		       (double)(res.end_ns - res.first_arrival_ns) / 1e9);
		printf("  jobs completed         %10llu\n",
		       (unsigned long long)res.stats.completed);
		printf("  simulated jobs/s       %10.0f\n",
		       (double)n_jobs / wall);
		printf("  steps simulated        %10llu\n",
		       (unsigned long long)res.stats.steps);
		printf("  decisions              %10llu\n",
		       (unsigned long long)res.stats.decisions);
		printf("  decisions/s            %10.0f\n",
		       (double)res.stats.decisions / wall);
		printf("  core time/decision     %10.1f ns\n",
		       res.sched_cpu_ns / (double)res.stats.decisions);
		if (res.stats.replans)
			printf("  plans solved           %10llu\n",
			       (unsigned long long)res.stats.replans);
		printf("  bytes per pending job  %10.1f\n", per_pending);
		printf("  peak RSS               %10.1f MiB\n",
		       ru.ru_maxrss / 1024.0);
		printf("  power violations       %10llu\n",
		       (unsigned long long)(res.power_violations +
					    res.stats.power_violations));
	}
	hs_sim_result_release(&res);
	hs_model_catalog_free(models);
	free(jobs);
	free(devs);
	return 0;
}
