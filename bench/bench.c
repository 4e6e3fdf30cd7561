/* A benchmark: every policy on the same workload, fleet and seed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double pct(const double *v, size_t n, double q)
{
	double pos, frac;
	size_t i;

	if (!n)
		return 0;
	pos = q * (double)(n - 1);
	i = (size_t)pos;
	frac = pos - (double)i;
	if (i + 1 >= n)
		return v[n - 1];
	return v[i] + (v[i + 1] - v[i]) * frac;
}

hs_pct_t hs_bench_percentiles(double *v, size_t n)
{
	hs_pct_t p = {0};
	double sum = 0;
	size_t i;

	if (!n)
		return p;
	qsort(v, n, sizeof(*v), cmp_double);
	for (i = 0; i < n; i++)
		sum += v[i];
	p.p50 = pct(v, n, 0.50);
	p.p90 = pct(v, n, 0.90);
	p.p99 = pct(v, n, 0.99);
	p.mean = sum / (double)n;
	return p;
}

typedef struct progress_s {
	const char *policy;
	size_t total;
} progress_t;

static void show_progress(void *ud, int64_t now_ns, uint64_t done,
			  uint64_t total)
{
	const progress_t *p = ud;

	fprintf(stderr, "\r  %-5s simulated %8.1f s, %llu/%zu jobs done ",
		p->policy, (double)now_ns / 1e9, (unsigned long long)done,
		p->total);
	fflush(stderr);
}

/* Latencies of the completed jobs: percentiles, CDF, SLO attainment. */
static int latency_figures(const hs_bench_config_t *cfg,
			   const hs_sim_result_t *res, hs_run_fig_t *f)
{
	size_t n = res->n_records, i, n_tpot = 0, met = 0;
	double *v = hs__calloc(n ? n : 1, sizeof(double));

	if (!v)
		return HS_ENOMEM;
	for (i = 0; i < n; i++) {
		const hs_sim_record_t *r = &res->records[i];
		bool ok = true;

		if (cfg->slo_ttft_ms > 0 && r->ttft_ms > cfg->slo_ttft_ms)
			ok = false;
		if (cfg->slo_tpot_ms > 0 && r->gen_tokens > 1 &&
		    r->tpot_ms > cfg->slo_tpot_ms)
			ok = false;
		met += ok;
	}
	/* Refused and failed jobs miss the SLO too. */
	f->slo_attainment = cfg->slo_ttft_ms > 0 || cfg->slo_tpot_ms > 0
				    ? (double)met / (double)f->submitted
				    : -1;
	for (i = 0; i < n; i++)
		v[i] = res->records[i].ttft_ms;
	f->ttft_ms = hs_bench_percentiles(v, n);
	for (i = 0; i < n; i++)
		v[i] = res->records[i].queue_ms;
	f->queue_ms = hs_bench_percentiles(v, n);
	for (i = 0; i < n; i++)
		if (res->records[i].gen_tokens > 1)
			v[n_tpot++] = res->records[i].tpot_ms;
	f->tpot_ms = hs_bench_percentiles(v, n_tpot);
	for (i = 0; i < n; i++)
		v[i] = res->records[i].e2e_ms;
	f->e2e_ms = hs_bench_percentiles(v, n);

	/* v is sorted by e2e now: sample the CDF. */
	f->n_cdf = n < HS_CDF_POINTS ? n : HS_CDF_POINTS;
	f->cdf_e2e_ms = hs__calloc(f->n_cdf ? f->n_cdf : 1, sizeof(double));
	if (!f->cdf_e2e_ms) {
		hs__free(v);
		return HS_ENOMEM;
	}
	for (i = 0; i < f->n_cdf; i++)
		f->cdf_e2e_ms[i] =
			f->n_cdf > 1 ? v[i * (n - 1) / (f->n_cdf - 1)] : v[0];
	hs__free(v);
	return 0;
}

static int run_figures(const hs_bench_config_t *cfg, const char *policy,
		       const hs_sim_result_t *res, hs_run_fig_t *f)
{
	const hs_sched_stats_t *st = &res->stats;
	double dur = (double)(res->end_ns - res->first_arrival_ns) / 1e9;
	size_t i;
	int rc;

	hs__strlcpy(f->policy, policy, sizeof(f->policy));
	f->submitted = cfg->workload->n_jobs;
	f->completed = st->completed;
	f->refused = res->submit_failures;
	f->failed = st->failed;
	if (dur <= 0)
		dur = 1e-9;
	f->duration_s = dur;
	f->output_tokens_per_s = (double)st->output_tokens / dur;
	f->total_tokens_per_s =
		(double)(st->output_tokens + st->prefill_tokens) / dur;
	f->requests_per_s = (double)st->completed / dur;
	f->energy_j = res->energy_j;
	f->joules_per_output_token =
		st->output_tokens ? res->energy_j / (double)st->output_tokens
				  : 0;
	f->energy_modeled = !st->energy_measured;
	f->power_avg_w = res->energy_j / dur;
	f->power_peak_w = res->peak_power_w;
	f->budget_w = cfg->sched.power_budget_w;
	f->power_violations = res->power_violations;
	f->max_violation_w = res->max_violation_w;
	f->decisions = st->decisions;
	f->replans = st->replans;
	f->sched_ns_per_decision =
		st->decisions ? res->sched_cpu_ns / (double)st->decisions : 0;
	f->perf_mean_rel_error = st->perf_mean_rel_error;
	f->perf_calibrated_error = st->perf_calibrated_error;
	f->power_waits = st->power_waits;
	f->paused = st->paused;
	f->lp_bound_fraction = -1;

	f->n_devices = res->n_devices;
	f->devices = hs__calloc(res->n_devices, sizeof(*f->devices));
	f->n_series = res->n_bins;
	f->series =
		hs__calloc(res->n_bins ? res->n_bins : 1, sizeof(*f->series));
	if (!f->devices || !f->series)
		return HS_ENOMEM;
	for (i = 0; i < res->n_devices; i++) {
		hs_device_fig_t *d = &f->devices[i];

		hs__strlcpy(d->name, cfg->devices[i].name, sizeof(d->name));
		hs__strlcpy(d->profile, cfg->devices[i].profile,
			    sizeof(d->profile));
		d->utilisation = (double)res->devices[i].busy_ns / 1e9 / dur;
		d->energy_j = res->devices[i].energy_j;
		d->output_tokens = res->devices[i].output_tokens;
		d->failed = res->devices[i].failed;
	}
	/* Bins past the end of the run are empty: leave them out. */
	for (i = 0; i < res->n_bins; i++) {
		double t = (double)i * (double)res->bin_ns / 1e9;

		if (t > dur) {
			f->n_series = i;
			break;
		}
		f->series[i].t_s = t;
		f->series[i].power_avg_w = res->bins[i].avg_w;
		f->series[i].power_max_w = res->bins[i].max_w;
		f->series[i].budget_w = res->bins[i].budget_w;
		f->series[i].tokens_per_s =
			res->bins[i].tokens / ((double)res->bin_ns / 1e9);
	}
	rc = latency_figures(cfg, res, f);
	return rc;
}

/* A bin width that gives a chart a few hundred points. */
static int64_t bin_for(const hs_workload_t *w)
{
	int64_t span = w->n_jobs ? w->jobs[w->n_jobs - 1].arrival_ns : 0;
	int64_t bin = span / 300;

	return bin < 10000000 ? 10000000 : bin;
}

int hs_bench_run(const hs_bench_config_t *cfg, hs_bench_report_t *rep,
		 hs_error_t *err)
{
	const hs_workload_t *w = cfg->workload;
	size_t n_pol = 0, i;
	double offered = 0, bound = -1;
	int rc = 0;

	hs__error_clear(err);
	memset(rep, 0, sizeof(*rep));
	rep->in = cfg->inputs;
	rep->upper_bound_tokens_per_s = -1;
	while (cfg->policies[n_pol])
		n_pol++;
	if (!n_pol || !w->n_jobs)
		return hs__error_set(err, HS_EINVAL, "bench", 0, NULL,
				     "nothing to run: %zu policies, %zu jobs",
				     n_pol, w->n_jobs);
	rep->runs = hs__calloc(n_pol, sizeof(*rep->runs));
	if (!rep->runs)
		return hs__error_set(err, HS_ENOMEM, NULL, 0, NULL,
				     "out of memory");
	{
		uint64_t gen = 0;
		double span = (double)w->jobs[w->n_jobs - 1].arrival_ns / 1e9;

		for (i = 0; i < w->n_jobs; i++)
			gen += w->jobs[i].gen_tokens;
		offered = span > 0 ? (double)gen / span : 0;
		rep->in.offered_output_tokens_per_s = offered;
	}

	for (i = 0; i < n_pol; i++) {
		hs_sched_config_t sc = cfg->sched;
		hs_sim_opts_t opts = {0};
		progress_t prog = {cfg->policies[i], w->n_jobs};
		hs_sim_result_t res;

		sc.policy = cfg->policies[i];
		opts.seed = cfg->seed;
		opts.noise = cfg->noise;
		opts.skew = cfg->skew;
		opts.time_limit_ns = (int64_t)(cfg->time_limit_s * 1e9);
		opts.bin_ns = bin_for(w);
		opts.keep_records = true;
		opts.want_upper_bound = true;
		opts.executors = cfg->executors;
		if (cfg->progress) {
			opts.progress = show_progress;
			opts.progress_ud = &prog;
			opts.progress_every = w->n_jobs / 50 + 1;
		}
		rc = hs_sim_run(&sc, cfg->models, cfg->devices, cfg->n_devices,
				w->jobs, w->n_jobs, &opts, &res, err);
		if (cfg->progress)
			fprintf(stderr, "\r%60s\r", "");
		if (rc)
			goto out_fail;
		rep->n_runs = i + 1;
		rc = run_figures(cfg, cfg->policies[i], &res, &rep->runs[i]);
		/* The bound is a property of the fleet, the budget and the
		 * mix; each run's core computes it from its own calibrated
		 * model, so keep the largest (the loosest, never unfair). */
		if (res.upper_bound_tps > bound)
			bound = res.upper_bound_tps;
		hs_sim_result_release(&res);
		if (rc) {
			hs__error_set(err, rc, NULL, 0, NULL, "out of memory");
			goto out_fail;
		}
	}
	rep->upper_bound_tokens_per_s = bound;
	if (bound > 0)
		for (i = 0; i < rep->n_runs; i++) {
			/* Nobody can serve more than was offered. */
			double cap = offered > 0 && offered < bound ? offered
								    : bound;

			rep->runs[i].lp_bound_fraction =
				rep->runs[i].output_tokens_per_s / cap;
		}
	return 0;
out_fail:
	hs_bench_report_release(rep);
	return rc;
}
