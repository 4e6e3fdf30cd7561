/*
 * eft: earliest predicted finish time, as HEFT and StarPU's dm policies do.
 * An arriving job goes to the device where it would finish first: the
 * work already bound to the device (queued and running) plus the job's own
 * predicted time there, weight load included.
 */
#include <math.h>

#include "policy.h"

static int eft_route(void *state, hs_sched_t *s, const hs_job_t *job,
		     int64_t now)
{
	size_t n = hs__sched_n_devices(s), d;
	const double *finish = hs__sched_finish_ns(
		s, job, hs__sched_config(s)->max_batch_jobs);
	double best = HUGE_VAL;
	int pick = -1;

	/* The first of the earliest; HUGE_VAL (cannot run it) never. */
	for (d = 0; d < n; d++)
		if (finish[d] < best) {
			best = finish[d];
			pick = (int)d;
		}
	return pick;
}

const struct hs_policy_ops hs__policy_eft = {
	.name = "eft",
	.summary = "earliest predicted finish time (HEFT, StarPU dm)",
	.route = eft_route,
};
