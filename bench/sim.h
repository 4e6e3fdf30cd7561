/*
 * The discrete-event simulation driver: feeds the scheduler core in virtual
 * time from a list of jobs, runs each step on a sim executor, and records
 * what a report needs. Same seed, same inputs: byte-identical results.
 * Private to hetsched (bench/ and tests).
 */
#ifndef HS_SIM_H
#define HS_SIM_H

#include "executor.h"
#include "internal.h"

/* One job of a workload. */
typedef struct hs_sim_job_s {
	int64_t arrival_ns;
	uint32_t model;
	uint32_t ctx_tokens;
	uint32_t gen_tokens;
	int32_t priority;
} hs_sim_job_t;

/* A budget change or a device failure at a point in virtual time. */
typedef struct hs_sim_event_s {
	int64_t at_ns;
	double budget_w; /* budget changes */
	int device; /* failures */
} hs_sim_event_t;

/* What became of one job (completed ones only). */
typedef struct hs_sim_record_s {
	float ttft_ms;
	float e2e_ms;
	float tpot_ms; /* (e2e - ttft) / (generated - 1); 0 if 1 token */
	float queue_ms; /* arrival to joining a batch (the last time) */
	float energy_j;
	uint32_t gen_tokens;
	int32_t device;
} hs_sim_record_t;

/* Power over time, in fixed bins. */
typedef struct hs_sim_power_bin_s {
	float avg_w; /* time-weighted mean in the bin */
	float max_w;
	float budget_w; /* at the end of the bin; 0: none */
	uint32_t tokens; /* output tokens finished in the bin */
} hs_sim_power_bin_t;

typedef struct hs_sim_opts_s {
	uint64_t seed;
	double noise; /* relative spread of step times */
	double skew; /* per-device profile error (max, relative) */
	const hs_sim_event_t *budget_changes; /* sorted by at_ns */
	size_t n_budget_changes;
	const hs_sim_event_t *failures; /* sorted by at_ns */
	size_t n_failures;
	int64_t time_limit_ns; /* stop then (0: run to the end) */
	int64_t bin_ns; /* power/throughput bin (0: no timeline) */
	bool keep_records; /* fill records (one per completed job) */
	bool want_upper_bound; /* compute upper_bound_tps at the end */
	/* Hand the core every step rather than runs of them (the same
	 * decisions, more events: a check of the shortcut). */
	bool single_steps;
	/* Executors per device (NULL entries, or NULL: sim). Real ones run
	 * each step for real, one at a time, and their measured times are
	 * laid on the virtual timeline as if the devices ran side by side;
	 * they get synthetic prompt tokens drawn from the seed. */
	const struct hs_executor_ops *const *executors;
	const char *kernel_dir; /* for opencl executors */
	/* Called every `progress_every` completions (0: never). */
	void (*progress)(void *ud, int64_t now_ns, uint64_t done,
			 uint64_t total);
	uint64_t progress_every;
	void *progress_ud;
} hs_sim_opts_t;

typedef struct hs_sim_result_s {
	hs_sched_stats_t stats;
	hs_device_stats_t *devices; /* n_devices */
	size_t n_devices;
	hs_sim_record_t *records; /* completed jobs, completion order */
	size_t n_records;
	hs_sim_power_bin_t *bins;
	size_t n_bins;
	int64_t bin_ns;
	int64_t end_ns; /* virtual time of the last event */
	int64_t first_arrival_ns;
	uint64_t submit_failures; /* refused at submission */
	/* The driver's own check of the power budget, independent of the
	 * core's: instants above the budget outside the grace of steps
	 * started under a higher budget. */
	uint64_t power_violations;
	double max_violation_w;
	double peak_power_w;
	double energy_j;
	uint64_t events;
	uint64_t lost_jobs; /* accepted, never finished (bug) */
	uint64_t duplicate_done; /* finished twice (bug) */
	double sched_cpu_ns; /* time inside the core's calls,
			      * estimated from one call in 16
			      * unless the policy re-plans (lp) */
	double upper_bound_tps; /* LP bound for the mix seen; -1 if
				 * not asked or not solvable */
	uint64_t device_failures; /* steps that failed on a device */
} hs_sim_result_t;

/*
 * Run the workload (jobs sorted by arrival) on sim devices under the
 * config. The model catalog and devices are borrowed. On success the
 * caller releases res with hs_sim_result_release.
 */
int hs_sim_run(const hs_sched_config_t *cfg, const hs_model_catalog_t *models,
	       const hs_device_t *devices, size_t n_devices,
	       const hs_sim_job_t *jobs, size_t n_jobs,
	       const hs_sim_opts_t *opts, hs_sim_result_t *res,
	       hs_error_t *err);
void hs_sim_result_release(hs_sim_result_t *res);

#endif /* HS_SIM_H */
