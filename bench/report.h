/*
 * Private to hetsched's bench/: the figures of a benchmark and the report
 * files made from them (report.json, report.md, report.html).
 */
#ifndef HS_REPORT_H
#define HS_REPORT_H

#include "internal.h"

typedef struct hs_pct_s {
	double p50, p90, p99, mean;
} hs_pct_t;

/* A point of a time series (one bin). */
typedef struct hs_series_pt_s {
	double t_s; /* bin start, seconds from the first arrival */
	double power_avg_w;
	double power_max_w;
	double budget_w; /* 0: none */
	double tokens_per_s; /* output tokens finished in the bin / bin */
} hs_series_pt_t;

typedef struct hs_device_fig_s {
	char name[128];
	char profile[64];
	double utilisation; /* busy time / run time */
	double energy_j; /* its steps' energy */
	uint64_t output_tokens;
	bool failed;
} hs_device_fig_t;

/* The figures of one policy's run. */
typedef struct hs_run_fig_s {
	char policy[16];
	uint64_t submitted, completed, refused, failed;
	double duration_s; /* first arrival to last event */
	double output_tokens_per_s;
	double total_tokens_per_s; /* prompt + output */
	double requests_per_s;
	hs_pct_t ttft_ms, tpot_ms, e2e_ms, queue_ms;
	double slo_attainment; /* -1 when no SLO given */
	double energy_j; /* node energy: steps + idle */
	double joules_per_output_token;
	bool energy_modeled;
	double power_avg_w, power_peak_w, budget_w;
	uint64_t power_violations;
	double max_violation_w;
	double lp_bound_fraction; /* -1 when no bound */
	double sched_ns_per_decision;
	uint64_t decisions;
	uint64_t replans; /* plans the policy solved (lp) */
	double perf_mean_rel_error;
	double perf_calibrated_error; /* after each fit's warm-up */
	uint64_t power_waits, paused;
	hs_device_fig_t *devices;
	size_t n_devices;
	hs_series_pt_t *series;
	size_t n_series;
	/* Latency CDF: sorted end-to-end latencies, sampled to at most
	 * HS_CDF_POINTS points. */
	double *cdf_e2e_ms;
	size_t n_cdf;
} hs_run_fig_t;

#define HS_CDF_POINTS 200

/* What went in. */
typedef struct hs_bench_inputs_s {
	char trace[512]; /* path, or "synthetic: ..." */
	char format[16];
	char models[256]; /* model or mix as given */
	char fleet[512]; /* path or "default" */
	size_t n_jobs;
	size_t n_devices;
	double rate_scale;
	double power_budget_w; /* 0: none */
	double time_limit_s; /* 0: none */
	uint64_t seed;
	double slo_ttft_ms; /* 0: none */
	double slo_tpot_ms;
	double offered_output_tokens_per_s;
	char version[32];
} hs_bench_inputs_t;

typedef struct hs_bench_report_s {
	hs_bench_inputs_t in;
	double upper_bound_tokens_per_s; /* -1: none */
	hs_run_fig_t *runs;
	size_t n_runs;
} hs_bench_report_t;

/* Free what the runs own (devices, series, cdf) and the runs array. */
void hs_bench_report_release(hs_bench_report_t *rep);

/*
 * The report as JSON: {"inputs": {...}, "upper_bound_tokens_per_s",
 * "runs": [{"policy", "jobs": {"submitted", "completed", "refused",
 * "failed"}, "output_tokens_per_s", "total_tokens_per_s", "requests_per_s",
 * "ttft_ms": {"p50", "p90", "p99", "mean"}, "tpot_ms", "e2e_ms",
 * "queue_ms", "slo_attainment", "energy_j", "joules_per_output_token",
 * "energy_modeled", "power_w": {"budget", "avg", "peak"},
 * "power_violations", "max_violation_w", "lp_bound_fraction",
 * "sched_ns_per_decision", "devices": [...], "series": [...]}]}.
 * with_series false leaves out the time series and CDF (stdout --json).
 * New reference; NULL when out of memory.
 */
json_t *hs_bench_report_json(const hs_bench_report_t *rep, bool with_series);

/* The comparison table people read (stdout). */
void hs_bench_report_table(const hs_bench_report_t *rep, FILE *f);

/* Write DIR/report.json, DIR/report.md, DIR/report.html (DIR created if
 * missing). 0 or HS_EIO/HS_ENOMEM with err naming the file. */
int hs_bench_report_write(const hs_bench_report_t *rep, const char *dir,
			  hs_error_t *err);

/*
 * Between report.c and report-html.c. hs__report_cell fills buf with the
 * heading of column col of the comparison table (run NULL) or with run's
 * cell, and returns whether that cell holds the column's best value.
 * hs__report_num formats a figure as the tables do ("-" if not finite).
 * hs__report_html appends the page report.html to sb: 0 or HS_ENOMEM.
 */
#define HS__REPORT_NCOLS 13
bool hs__report_cell(const hs_bench_report_t *rep, const hs_run_fig_t *run,
		     unsigned col, char *buf, size_t size);
void hs__report_num(double v, char *buf, size_t size);
int hs__report_html(const hs_bench_report_t *rep, hs__strbuf_t *sb);

#endif /* HS_REPORT_H */
