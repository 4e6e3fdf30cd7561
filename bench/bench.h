/*
 * Private to hetsched's bench/: one benchmark = one workload replayed
 * against each policy on the same fleet, with the same seed, and the
 * figures of each run.
 */
#ifndef HS_BENCH_H
#define HS_BENCH_H

#include "report.h"
#include "trace.h"

typedef struct hs_bench_config_s {
	const hs_model_catalog_t *models;
	const hs_device_t *devices; /* the fleet (sim devices) */
	size_t n_devices;
	const hs_workload_t *workload;
	const char *const *policies; /* NULL-terminated */
	hs_sched_config_t sched; /* policy field ignored */
	double noise; /* sim step-time spread */
	double skew; /* sim per-device profile error */
	uint64_t seed;
	double time_limit_s; /* 0: none */
	double slo_ttft_ms; /* 0: none */
	double slo_tpot_ms; /* 0: none */
	bool progress; /* a progress line on stderr */
	/* Per device (NULL: all sim): real executors run each step for real
	 * and their measured times make the timeline. */
	const struct hs_executor_ops *const *executors;
	hs_bench_inputs_t inputs; /* copied into the report */
} hs_bench_config_t;

/*
 * Run the workload against every policy and fill rep (released with
 * hs_bench_report_release). 0 or HS_E* with err set.
 */
int hs_bench_run(const hs_bench_config_t *cfg, hs_bench_report_t *rep,
		 hs_error_t *err);

/* Percentiles of n values (sorted in place), linear interpolation. */
hs_pct_t hs_bench_percentiles(double *v, size_t n);

#endif /* HS_BENCH_H */
