/*
 * rr: what a round-robin load balancer in front of identical servers does.
 * Each arriving job goes to the next device in turn (skipping devices that
 * failed or cannot hold it), whatever their speed or load.
 */
#include "internal.h"
#include "policy.h"

typedef struct rr_state_s {
	size_t next;
} rr_state_t;

static int rr_init(hs_sched_t *s, void **state)
{
	*state = hs__calloc(1, sizeof(rr_state_t));
	return *state ? 0 : HS_ENOMEM;
}

static void rr_fini(void *state)
{
	hs__free(state);
}

static int rr_route(void *state, hs_sched_t *s, const hs_job_t *job,
		    int64_t now)
{
	rr_state_t *rr = state;
	size_t n = hs__sched_n_devices(s), k;

	for (k = 0; k < n; k++) {
		int d = (int)((rr->next + k) % n);

		if (hs__sched_device_usable(s, d) &&
		    hs__sched_job_fits(s, d, job)) {
			rr->next = (size_t)d + 1;
			return d;
		}
	}
	return -1;
}

const struct hs_policy_ops hs__policy_rr = {
	.name = "rr",
	.summary = "round-robin over devices (baseline load balancer)",
	.init = rr_init,
	.fini = rr_fini,
	.route = rr_route,
};
