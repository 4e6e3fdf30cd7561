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
	/* The first of the earliest; a device that cannot run it never. */
	return hs__sched_earliest(s, job, hs__sched_config(s)->max_batch_jobs);
}

const struct hs_policy_ops hs__policy_eft = {
	.name = "eft",
	.summary = "earliest predicted finish time (HEFT, StarPU dm)",
	.route = eft_route,
};
