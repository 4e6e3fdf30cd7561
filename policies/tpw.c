/*
 * tpw: tokens per joule first. An arriving job goes to the device where it
 * costs the least energy (at that device's most efficient power level),
 * as long as that device has less than FILL_NS of work bound to it; when
 * every such device is that full, to the one that would finish it first.
 * Steps run at the most energy-efficient level the budget allows.
 */
#include <math.h>

#include "policy.h"

/* How much work a device may hold before the next most efficient one is
 * used: about a second keeps latency bounded while the efficient devices
 * stay busy. */
#define FILL_NS 1e9

/* Tokens per joule of a level: speed per watt of cap (relative). */
static double level_eff(const hs_device_t *dev, unsigned l)
{
	if (dev->n_levels == 0)
		return dev->max_w > 0 ? 1.0 / dev->max_w : 0;
	return dev->levels[l].speed / dev->levels[l].cap_w;
}

static unsigned best_level(const hs_device_t *dev, unsigned lo)
{
	unsigned l, best = lo;

	for (l = lo + 1; l < dev->n_levels; l++)
		if (level_eff(dev, l) > level_eff(dev, best))
			best = l;
	return best;
}

/* Joules the job would take on device d at its most efficient level. */
static double job_energy(hs_sched_t *s, int d, const hs_job_t *job)
{
	const hs_device_t *dev = hs__sched_device(s, d);
	uint32_t batch = hs__sched_config(s)->max_batch_jobs;
	double ns = hs__sched_job_cost_ns(s, d, job, batch);
	unsigned l = best_level(dev, 0);
	double cap = dev->n_levels ? dev->levels[l].cap_w : dev->max_w;
	double speed = dev->n_levels ? dev->levels[l].speed : 1.0;

	return ns / speed * cap / 1e9;
}

static int tpw_route(void *state, hs_sched_t *s, const hs_job_t *job,
		     int64_t now)
{
	size_t n = hs__sched_n_devices(s);
	const double *finish = hs__sched_finish_ns(
		s, job, hs__sched_config(s)->max_batch_jobs);
	double best_e = 0, best_f = 0;
	int d, pick = -1, fallback = -1;

	for (d = 0; d < (int)n; d++) {
		double e, f = finish[d];

		if (f == HUGE_VAL)
			continue;
		if (fallback < 0 || f < best_f) {
			best_f = f;
			fallback = d;
		}
		if (hs__sched_backlog_ns(s, d) >= FILL_NS)
			continue;
		e = job_energy(s, d, job);
		if (pick < 0 || e < best_e) {
			best_e = e;
			pick = d;
		}
	}
	return pick >= 0 ? pick : fallback;
}

static int tpw_level(void *state, hs_sched_t *s, int device, int lo)
{
	return (int)best_level(hs__sched_device(s, device), (unsigned)lo);
}

const struct hs_policy_ops hs__policy_tpw = {
	.name = "tpw",
	.summary = "tokens per joule first: most efficient device and level",
	.route = tpw_route,
	.level = tpw_level,
};
