/*
 * Private to hetsched's bench/: workload traces and synthetic workloads,
 * turned into the sorted job lists the simulation driver replays.
 */
#ifndef HS_TRACE_H
#define HS_TRACE_H

#include "sim.h"

typedef enum {
	HS_TRACE_AUTO, /* detect from the header / first line */
	HS_TRACE_AZURE, /* CSV: TIMESTAMP,ContextTokens,GeneratedTokens */
	HS_TRACE_MOONCAKE, /* JSONL: timestamp (ms), input_length,
			    * output_length */
	HS_TRACE_BURSTGPT, /* CSV: Timestamp,Model,Request tokens,
			    * Response tokens,Total tokens,Log Type */
	HS_TRACE_JSONL, /* ours: {"t": s, "model", "ctx", "gen",
			 * "priority"?} per line */
} hs_trace_format_t;

/* "azure", "mooncake", "burstgpt", "jsonl"; HS_EINVAL for others. */
int hs_trace_format_parse(const char *name, hs_trace_format_t *out);
const char *hs_trace_format_name(hs_trace_format_t f);

/* Which model each job of a trace without models gets: one model, or a
 * weighted mix drawn with the seed ("Llama-3.1-8B:3,Qwen2.5-7B:1"). */
typedef struct hs_model_mix_s {
	uint32_t models[16];
	double weights[16]; /* normalised to sum 1 */
	unsigned n;
} hs_model_mix_t;

/* Parse "NAME" or "NAME:W,NAME:W" against the catalog; err names the
 * unknown model or bad weight. */
int hs_model_mix_parse(hs_model_mix_t *mix, const char *spec,
		       const hs_model_catalog_t *models, hs_error_t *err);

typedef struct hs_trace_opts_s {
	hs_trace_format_t format;
	const hs_model_catalog_t *models;
	const hs_model_mix_t *mix; /* for traces without a model; may be
				    * NULL only for traces that name them */
	double rate_scale; /* > 0: arrivals X times as fast */
	uint64_t seed; /* for the mix draw */
	bool skip_bad_rows; /* count malformed rows instead of
			     * failing on the first */
	size_t max_jobs; /* 0: all */
} hs_trace_opts_t;

typedef struct hs_workload_s {
	hs_sim_job_t *jobs; /* sorted by arrival, first at 0 */
	size_t n_jobs;
	size_t skipped; /* rows skipped (bad, or BurstGPT
			 * failures with 0 response tokens) */
	size_t skipped_failed; /* of which BurstGPT failures */
	hs_trace_format_t format; /* as detected */
} hs_workload_t;

/*
 * Load a trace file. Every row is validated: a malformed row, a negative
 * or absurd token count (over 10M), a timestamp going backwards, an empty
 * file or an unknown format is an error naming the file and line (unless
 * skip_bad_rows, which counts them). Times are rebased so the first job
 * arrives at 0, then divided by rate_scale. Free with
 * hs_workload_release.
 */
int hs_trace_load(hs_workload_t *w, const char *path,
		  const hs_trace_opts_t *opts, hs_error_t *err);

/* A token-count distribution: "const:N", "uniform:LO:HI",
 * "lognormal:MEDIAN:SIGMA" (clamped to [1, 1M]), "exp:MEAN". */
typedef struct hs_dist_s {
	enum {
		HS_DIST_CONST,
		HS_DIST_UNIFORM,
		HS_DIST_LOGNORMAL,
		HS_DIST_EXP
	} kind;
	double a, b;
} hs_dist_t;

int hs_dist_parse(hs_dist_t *d, const char *spec, const char *what,
		  hs_error_t *err);

typedef struct hs_synth_opts_s {
	enum { HS_ARRIVAL_POISSON, HS_ARRIVAL_GAMMA } arrival;
	double rate; /* jobs per second */
	double duration_s;
	double gamma_cv; /* coefficient of variation for gamma (> 0;
			  * 1 is Poisson, > 1 bursty) */
	hs_dist_t ctx, gen;
	const hs_model_mix_t *mix;
	uint64_t seed;
} hs_synth_opts_t;

/* A synthetic workload; same seed, same jobs. */
int hs_synth_generate(hs_workload_t *w, const hs_synth_opts_t *opts,
		      hs_error_t *err);

void hs_workload_release(hs_workload_t *w);

#endif /* HS_TRACE_H */
