/*
 * fifo: what a plain shared queue does. Every job waits in the shared
 * queue; a free device takes the oldest job it can run (oldest for its
 * priority: the core's default choice) and fills its batch with that
 * job's class.
 */
#include "policy.h"

static int fifo_route(void *state, hs_sched_t *s, const hs_job_t *job,
		      int64_t now)
{
	return -1;
}

const struct hs_policy_ops hs__policy_fifo = {
	.name = "fifo",
	.summary = "one shared queue, oldest job first (baseline)",
	.route = fifo_route,
};
