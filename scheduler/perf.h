/*
 * Private to hetsched: not part of the public API, may change at any time.
 *
 * The step-time model of one (device, model) pair. A step's time at full
 * speed is linear in four features, theta . [1, B, C, P]:
 *
 *   B  jobs in the step (each decodes one token),
 *   C  context tokens attended over: the sum over the batch of the tokens
 *      already in each job's KV cache plus the new ones,
 *   P  prefill tokens processed this step.
 *
 * theta starts from a roofline of the device profile and is refined online
 * by least squares on measured step times, pulled toward the roofline by a
 * ridge term worth a few samples. The struct holds no heap memory: the core
 * embeds one per (device, model) and copies it freely.
 */
#ifndef HS_PERF_H
#define HS_PERF_H

#include <stdbool.h>
#include <stdint.h>

#include "internal.h"

#define HS_PERF_NFEAT 4 /* [1, B, C, P] */

/* Index of each feature in theta, prior and xty. */
enum {
	HS_PERF_STEP = 0, /* per step: weights read once, launches */
	HS_PERF_JOB = 1, /* per job in the batch: one decoded token */
	HS_PERF_CTX = 2, /* per context token: KV cache read */
	HS_PERF_PREFILL = 3, /* per prefill token: matmuls, KV cache write */
};

/* No prediction is shorter: a step has a floor of launch and sync costs
 * even when the fit says less. */
#define HS_PERF_MIN_NS 1000.0
/* A sample more than this factor slower or faster than predicted is an
 * outlier (page faults, preemption, a clock that hiccuped). */
#define HS_PERF_OUTLIER_K 4.0
/* Samples accepted unconditionally before outliers are judged: until then
 * the prediction is mostly the roofline, which may be off by this much. */
#define HS_PERF_WARMUP 8
/* Outliers in a row that mean the device itself changed. */
#define HS_PERF_RESET_RUN 16
/* Every sample refits the model up to this many; after that, a refit
 * waits until the unfitted samples are 1/HS_PERF_REFIT_FRACTION of all. */
#define HS_PERF_REFIT_ALL 64
#define HS_PERF_REFIT_FRACTION 32

typedef struct hs__perf_s {
	double prior[HS_PERF_NFEAT]; /* theta from the roofline, ns per unit */
	double theta[HS_PERF_NFEAT]; /* current fit; valid when !dirty */
	/* Normal equations of the samples in the fit (row-major X'X, X'y). */
	double xtx[HS_PERF_NFEAT * HS_PERF_NFEAT];
	double xty[HS_PERF_NFEAT];
	uint64_t samples; /* accepted since the last reset (xtx[0]) */
	uint64_t outliers; /* rejected, over the model's life */
	uint32_t consecutive_outliers;
	uint32_t resets; /* fits dropped after a run of outliers */
	double rel_err_sum; /* sum |pred - meas| / meas, pred before update */
	uint64_t rel_err_n;
	double cal_err_sum; /* the same, once warmed up (not saved) */
	uint64_t cal_err_n;
	bool dirty; /* theta needs re-solving */
	uint32_t pending; /* samples since theta was solved */
} hs__perf_t;

/*
 * Set p to the roofline prior of model m on device dev at full speed, with
 * no samples. Figures the profile lacks (0 bandwidth or FLOP/s) get a
 * conservative floor, so the prior is always finite and positive.
 */
void hs__perf_init(hs__perf_t *p, const hs_device_t *dev, const hs_model_t *m);

/* Re-solve theta from the samples (predictions do it when they need to);
 * false, theta at the prior, when the sums are not those of any samples. */
bool hs__perf_solve(hs__perf_t *p);

/*
 * Predicted time in ns of a step with B jobs, C context tokens and P
 * prefill tokens, at full speed: the caller divides by the speed of the
 * device's power level. Never below HS_PERF_MIN_NS, never NaN. Re-solves
 * the fit when samples came in since the last call (hence not const);
 * p->theta is current after it returns. Inline: policies call it for
 * every device on every arrival.
 */
static inline double hs__perf_predict_ns(hs__perf_t *p, double B, double C,
					 double P)
{
	double t;

	if (p->dirty)
		hs__perf_solve(p);
	t = p->theta[HS_PERF_STEP] + p->theta[HS_PERF_JOB] * B +
	    p->theta[HS_PERF_CTX] * C + p->theta[HS_PERF_PREFILL] * P;
	/* Written so that NaN lands on the floor too. */
	return t >= HS_PERF_MIN_NS ? t : HS_PERF_MIN_NS;
}

/*
 * Record a step measured at full speed. Its prediction error counts
 * toward hs__perf_mean_rel_error whether or not it is accepted. Returns
 * true when the sample joins the fit; false for an outlier (counted in
 * p->outliers, see HS_PERF_OUTLIER_K) and for input no step can produce
 * (negative or non-finite features, a time that is not positive and
 * finite; not counted anywhere). The HS_PERF_RESET_RUN-th outlier in a row
 * is taken to mean the device changed: the fit restarts from the prior
 * with that sample, which is accepted.
 */
bool hs__perf_observe(hs__perf_t *p, double B, double C, double P,
		      double measured_ns);

/*
 * Record n decode steps of one batch at full speed, in order, as n calls
 * of hs__perf_observe would, but judged (error figures, outliers) by the
 * fit as it was before the first: a refit they call for comes at the next
 * prediction. While the fit has fewer than HS_PERF_REFIT_ALL samples, and
 * after a reset (a run of outliers: the device changed), they go one at a
 * time, each judged by the fit of those before. B jobs,
 * no prefill, C context tokens in the first, dC more in each next; step i
 * measured max(ns[i], 1) * scale ns. Returns how many were outliers.
 * What it adds to the fit and the error figures may differ in the last
 * bits from a step-by-step sum (steps are added four at a time where the
 * run allows); counts, outliers and refit decisions do not, and every
 * machine gets the same bits.
 */
uint32_t hs__perf_observe_decode(hs__perf_t *p, double B, double C, double dC,
				 const int64_t *ns, uint32_t n, double scale);

/* Solve for every accepted sample now (before saving, or to compare). */
void hs__perf_refit(hs__perf_t *p);

/* Mean of |pred - meas| / meas over observed steps; 0 when none. */
double hs__perf_mean_rel_error(const hs__perf_t *p);

/*
 * The calibration as a JSON object: "prior", "theta", "xtx", "xty" (arrays
 * of numbers), "samples", "outliers", "resets", "rel_err_sum",
 * "rel_err_n". The caller owns the result; NULL when out of memory.
 */
json_t *hs__perf_to_json(const hs__perf_t *p);

/*
 * Read what hs__perf_to_json wrote into p, replacing all of it (prior
 * included). Every key and value is checked; errors go to jv->err with the
 * path of the offending value, e.g. "$.entries[2].theta: expected an array
 * of 4 numbers". theta is re-derived from the sums, so a file cannot carry
 * a fit its data do not support; sums no set of samples could produce are
 * rejected. Returns 0, or a negative HS_E* code with p untouched.
 */
int hs__perf_from_json(hs__perf_t *p, hs__jv_t *jv, const json_t *obj);

#endif /* HS_PERF_H */
