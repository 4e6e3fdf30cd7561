/*
 * For authors of scheduling policies. A policy is one file in policies/
 * exporting one const struct hs_policy_ops, listed in policies/registry.c.
 * It sees the core only through the functions below (never its structs).
 *
 * How the core uses a policy:
 *   1. A job arrives: route() says where it waits — bound to one device's
 *      queue (early binding: rr, eft, lp) or in the shared queue that any
 *      device may draw from (late binding: fifo).
 *   2. A device with an empty batch is free: select() picks the class
 *      (model, context bucket) it starts a batch of. Jobs of that class
 *      join from the device's own queue and the shared one, in priority
 *      order (aging included), up to the batch limits.
 *   3. Before each step the governor lists the power levels that fit the
 *      budget; level() picks one (default: the fastest).
 * Optional methods may be NULL; new methods are appended (room to grow).
 */
#ifndef HS_POLICY_H
#define HS_POLICY_H

#include "hetsched.h"

struct hs_policy_ops {
	const char *name;
	const char *summary;
	/* Allocate private state (*state may stay NULL). 0 or HS_E*. */
	int (*init)(hs_sched_t *s, void **state);
	void (*fini)(void *state);
	/* Where a job waits: a usable device that fits it, or -1 for the
	 * shared queue. Required. */
	int (*route)(void *state, hs_sched_t *s, const hs_job_t *job,
		     int64_t now);
	/* Which class an idle device with an empty batch starts: 0 and
	 * *model, *bucket set, or HS_ENOENT to stay idle. NULL: the class
	 * whose head job has waited longest for its priority (aging), among
	 * the device's own queues and the shared ones. */
	int (*select)(void *state, hs_sched_t *s, int device, int64_t now,
		      uint32_t *model, uint32_t *bucket);
	/* Power level for a step: one of the levels in [lo, n_levels), all of
	 * which fit the budget (lower index: faster, more power). NULL: lo. */
	int (*level)(void *state, hs_sched_t *s, int device, int lo);
	/* The budget changed or an epoch passed (lp re-solves). */
	void (*on_change)(void *state, hs_sched_t *s, int64_t now);
};

/* Every policy, NULL-terminated, and lookup by name. */
extern const struct hs_policy_ops *const hs__policies[];
const struct hs_policy_ops *hs__policy_find(const char *name);

/* ---- What a policy may ask the core ---------------------------------- */

size_t hs__sched_n_devices(const hs_sched_t *s);
const hs_device_t *hs__sched_device(const hs_sched_t *s, int d);
size_t hs__sched_n_models(const hs_sched_t *s);
const hs_model_t *hs__sched_model(const hs_sched_t *s, uint32_t m);
unsigned hs__sched_n_buckets(const hs_sched_t *s);
/* Upper context edge of a bucket, and the bucket of a context length. */
uint32_t hs__sched_bucket_edge(const hs_sched_t *s, unsigned b);
unsigned hs__sched_bucket_of(const hs_sched_t *s, uint32_t ctx_tokens);
const hs_sched_config_t *hs__sched_config(const hs_sched_t *s);
/* Budget in force (0: none). */
double hs__sched_budget(const hs_sched_t *s);

/* Not failed. */
bool hs__sched_device_usable(const hs_sched_t *s, int d);
/* The device could ever run this job: weights and the job's KV cache fit
 * its memory. */
bool hs__sched_job_fits(const hs_sched_t *s, int d, const hs_job_t *job);
/* Model whose batch the device runs now, -1 if its batch is empty. */
int hs__sched_device_model(const hs_sched_t *s, int d);
/* The model's weights are on the device (no load needed). */
bool hs__sched_resident(const hs_sched_t *s, int d, uint32_t model);
/* Weight load time if the model is not resident, else 0. */
int64_t hs__sched_load_ns(const hs_sched_t *s, int d, uint32_t model);
/* Jobs in the device's batch. */
uint32_t hs__sched_batch_size(const hs_sched_t *s, int d);
/* Predicted work bound to the device and not yet done (ns at full
 * speed): what eft counts as its queue. */
double hs__sched_backlog_ns(const hs_sched_t *s, int d);
/* The same for every device at once: the core's array, read only, valid
 * until the next event. */
const double *hs__sched_backlogs(const hs_sched_t *s);
/* The policy the core runs. */
const struct hs_policy_ops *hs__sched_policy(const hs_sched_t *s);
/* The policy solved a new plan (counted in the stats' replans). */
void hs__sched_count_replan(hs_sched_t *s);
/* Jobs waiting in a queue: owner -1 is the shared queue. */
uint32_t hs__sched_queued(const hs_sched_t *s, int owner, uint32_t model,
			  unsigned bucket);
/* The head job of a queue (NULL if empty). */
const hs_job_t *hs__sched_queue_head(const hs_sched_t *s, int owner,
				     uint32_t model, unsigned bucket);

/*
 * Predicted step time (ns) on device d for model m at power level `level`
 * with B jobs, C context tokens and P prefill tokens.
 */
double hs__sched_predict_ns(hs_sched_t *s, int d, uint32_t m, double B,
			    double C, double P, int level);
/*
 * The time a job adds to a device (ns at full speed) when it shares a
 * typical batch there: its prefill plus its tokens at the per-token cost of
 * a batch of `batch` jobs of its length. What eft and tpw compare.
 */
double hs__sched_job_cost_ns(hs_sched_t *s, int d, const hs_job_t *job,
			     uint32_t batch);
/*
 * For every device at once: when the job would finish there, its backlog
 * plus hs__sched_job_cost_ns; HUGE_VAL where the device failed or the job
 * does not fit. The array is the core's, valid until the next call.
 */
const double *hs__sched_finish_ns(hs_sched_t *s, const hs_job_t *job,
				  uint32_t batch);
/* The first device of the earliest in what hs__sched_finish_ns would
 * answer, found as it is computed (the array is not left with it); -1
 * when the job fits none. */
int hs__sched_earliest(hs_sched_t *s, const hs_job_t *job, uint32_t batch);

/* Demand seen so far for a class: jobs and output tokens per second of
 * driver time, and mean context. */
void hs__sched_class_demand(const hs_sched_t *s, uint32_t model,
			    unsigned bucket, double *jobs_per_s,
			    double *tokens_per_s, double *mean_ctx);

#endif /* HS_POLICY_H */
