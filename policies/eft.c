/*
 * eft: earliest predicted finish time, as HEFT and StarPU's dm policies do.
 * An arriving job goes to the device where it would finish first: the
 * work already bound to the device (queued and running) plus the job's own
 * predicted time there, weight load included.
 */
#include "policy.h"

static int eft_route(void *state, hs_sched_t *s, const hs_job_t *job,
		     int64_t now)
{
	size_t n = hs__sched_n_devices(s);
	uint32_t batch = hs__sched_config(s)->max_batch_jobs;
	double best = 0;
	int d, pick = -1;

	for (d = 0; d < (int)n; d++) {
		double finish;

		if (!hs__sched_device_usable(s, d) ||
		    !hs__sched_job_fits(s, d, job))
			continue;
		finish = hs__sched_backlog_ns(s, d) +
			 hs__sched_job_cost_ns(s, d, job, batch);
		if (pick < 0 || finish < best) {
			best = finish;
			pick = d;
		}
	}
	return pick;
}

const struct hs_policy_ops hs__policy_eft = {
	.name = "eft",
	.summary = "earliest predicted finish time (HEFT, StarPU dm)",
	.route = eft_route,
};
