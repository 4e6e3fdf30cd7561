/*
 * Private to hetsched's bench/: capacity planning. A scenario (demand,
 * device catalog with prices, sites, SLO) becomes per-device capacities
 * measured by running the scheduler core in simulation, then a MILP
 * (GLPK) that picks how many devices of each type go to each site, then a
 * validation run of the chosen fleet.
 */
#ifndef HS_PLAN_H
#define HS_PLAN_H

#include "trace.h"

#define HS_PLAN_MAX_TYPES 16
#define HS_PLAN_MAX_SITES 8
#define HS_PLAN_MAX_CLASSES 32

/* A demand class: one model, one context bucket (or one "rates" entry). */
typedef struct hs_plan_class_s {
	char name[96];
	uint32_t model;
	double jobs_per_s; /* growth included */
	double mean_ctx, mean_gen;
	hs_dist_t ctx, gen; /* what capacity probes draw */
} hs_plan_class_t;

/* A device type that may be bought. */
typedef struct hs_plan_type_s {
	hs_profile_t profile;
	double price_usd;
	double lifetime_years; /* 0 when hourly_usd is given */
	double hourly_usd; /* 0 when bought */
	double host_overhead_w;
	double capital_usd_per_h; /* derived */
} hs_plan_type_t;

typedef struct hs_plan_site_s {
	char name[64];
	double usd_per_kwh;
	double pue;
	double budget_kw;
	double rtt_ms;
	bool allowed[HS_PLAN_MAX_TYPES];
} hs_plan_site_t;

typedef struct hs_plan_scenario_s {
	char source[256];
	/* Demand: a trace, or rates. */
	char trace[512]; /* resolved path; "" for rates */
	char mix[256]; /* model or mix spec, for the trace */
	double rate_scale;
	double growth;
	hs_plan_class_t classes[HS_PLAN_MAX_CLASSES];
	size_t n_classes;
	hs_plan_type_t types[HS_PLAN_MAX_TYPES];
	size_t n_types;
	hs_plan_site_t sites[HS_PLAN_MAX_SITES];
	size_t n_sites;
	double slo_ttft_ms, slo_tpot_ms, slo_attainment;
	/* A trace's classes carry their busiest window's rate (the fleet is
	 * sized for it); this is the whole trace's mean. */
	double mean_output_tokens_per_s;
	/* The demand as a workload (trace scaled by rate_scale x growth, or
	 * synthetic from the rates), for validation. */
	hs_workload_t work;
	hs_model_mix_t mixv;
} hs_plan_scenario_t;

/*
 * Load and validate a scenario. data_dir resolves relative trace paths.
 * Every key is checked: unknown keys, wrong types, out-of-range numbers,
 * unknown profiles or models, duplicate names are errors naming the file
 * and the JSON path. Release with hs_plan_scenario_release.
 */
int hs_plan_scenario_load(hs_plan_scenario_t *sc, const char *path,
			  const char *data_dir,
			  const hs_profile_catalog_t *profiles,
			  const hs_model_catalog_t *models, hs_error_t *err);
void hs_plan_scenario_release(hs_plan_scenario_t *sc);
/* Load a scenario against data_dir's catalogs and drop it: 0 or the
 * loader's error (tests/cases). */
int hs_plan_scenario_check(const char *path, const char *data_dir,
			   hs_error_t *err);

/*
 * The MILP in plain numbers, so that it can be checked by hand.
 * Index [s][t][c]. cap 0: (s, t) cannot serve c. A device draws base_w[t]
 * whatever it does, plus busy_w[s][t][c] more per unit of its capacity
 * used by class c. Site power (x PUE) is bounded by budget_w (<= 0: none).
 */
typedef struct hs_plan_milp_s {
	size_t n_sites, n_types, n_classes;
	double demand[HS_PLAN_MAX_CLASSES]; /* jobs/s */
	double cap[HS_PLAN_MAX_SITES][HS_PLAN_MAX_TYPES][HS_PLAN_MAX_CLASSES];
	double busy_w[HS_PLAN_MAX_SITES][HS_PLAN_MAX_TYPES]
		     [HS_PLAN_MAX_CLASSES];
	double base_w[HS_PLAN_MAX_TYPES];
	double capital_usd_per_h[HS_PLAN_MAX_TYPES];
	bool allowed[HS_PLAN_MAX_SITES][HS_PLAN_MAX_TYPES];
	double usd_per_kwh[HS_PLAN_MAX_SITES];
	double pue[HS_PLAN_MAX_SITES];
	double budget_w[HS_PLAN_MAX_SITES];
	char site_name[HS_PLAN_MAX_SITES][64];
	char class_name[HS_PLAN_MAX_CLASSES][96];
} hs_plan_milp_t;

typedef struct hs_plan_solution_s {
	unsigned count[HS_PLAN_MAX_SITES][HS_PLAN_MAX_TYPES];
	double load[HS_PLAN_MAX_SITES][HS_PLAN_MAX_TYPES]
		   [HS_PLAN_MAX_CLASSES]; /* jobs/s */
	double site_w[HS_PLAN_MAX_SITES]; /* facility (x PUE) */
	double capital_usd_per_h, energy_usd_per_h;
	double cost_usd_per_h;
} hs_plan_solution_t;

/*
 * Minimise hourly cost. HS_EINFEASIBLE with err naming the binding
 * constraint ("site A power budget: need 412 kW, have 300 kW"), HS_ESOLVER
 * when GLPK fails.
 */
int hs_plan_milp_solve(const hs_plan_milp_t *m, hs_plan_solution_t *sol,
		       hs_error_t *err);

typedef struct hs_plan_opts_s {
	double probe_s; /* simulated seconds per probe (default 60) */
	unsigned probe_iters; /* bisection steps (default 8) */
	uint64_t seed;
	bool validate; /* run the chosen fleet (lp policy) */
	double validate_max_s; /* cut validation there (0: whole demand) */
	const char *validate_policy; /* default "lp" */
} hs_plan_opts_t;

/* Capacity of one device of a type for a class, as measured. */
typedef struct hs_plan_capacity_s {
	double jobs_per_s; /* 0: cannot meet the SLO at all */
	double avg_w; /* mean draw at that load */
	double attainment;
	unsigned probes;
} hs_plan_capacity_t;

/* A fleet to compare against the optimum: everything at one site. */
typedef struct hs_plan_candidate_s {
	char name[96];
	bool feasible;
	bool budget_lifted; /* infeasible within the budget */
	hs_plan_solution_t sol;
} hs_plan_candidate_t;

typedef struct hs_plan_result_s {
	hs_plan_milp_t milp;
	hs_plan_solution_t sol;
	hs_plan_candidate_t candidates[HS_PLAN_MAX_SITES + 1]; /* [0]: plan */
	size_t n_candidates;
	double output_tokens_per_s;
	double cost_per_million_output_tokens;
	double capital_share, energy_share;
	double joules_per_output_token; /* facility energy (x PUE) */
	size_t probes;
	bool validated;
	char validation_policy[16];
	double slo_attainment;
	bool meets_slo;
	size_t validation_jobs;
	double validation_peak_w;
} hs_plan_result_t;

int hs_plan_run(const hs_plan_scenario_t *sc, const hs_model_catalog_t *models,
		const hs_plan_opts_t *opts, hs_plan_result_t *res,
		hs_error_t *err);

/* Hourly cost of a solution's fleet at another electricity price (every
 * site), for the sensitivity chart. */
double hs_plan_cost_at(const hs_plan_milp_t *m, const hs_plan_solution_t *s,
		       double usd_per_kwh);

/* Reports (plan-report.c). */
json_t *hs_plan_report_json(const hs_plan_scenario_t *sc,
			    const hs_plan_result_t *r);
void hs_plan_report_table(const hs_plan_scenario_t *sc,
			  const hs_plan_result_t *r, FILE *f);
int hs_plan_report_write(const hs_plan_scenario_t *sc,
			 const hs_plan_result_t *r, const char *dir,
			 hs_error_t *err);

#endif /* HS_PLAN_H */
