/*
 * tpw: tokens per joule first. An arriving job goes to the device where it
 * costs the least energy (at that device's most efficient power level),
 * as long as that device has less than FILL_NS of work bound to it; when
 * every such device is that full, to the one that would finish it first.
 * Steps run at the most energy-efficient level the budget allows.
 */
#include <math.h>

#include "internal.h"
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

/*
 * What best_level answers for each device and each lowest level allowed,
 * and the most efficient level's figures: the profiles never change, and
 * routing asks for every device at every arrival.
 */
typedef struct tpw_state_s {
	uint8_t *best; /* [d * HS_MAX_POWER_LEVELS + lo] */
	double *cap; /* [d]: cap of best_level(dev, 0) */
	double *speed; /* [d]: its speed */
} tpw_state_t;

static void tpw_fini(void *state)
{
	tpw_state_t *st = state;

	if (!st)
		return;
	hs__free(st->best);
	hs__free(st->cap);
	hs__free(st->speed);
	hs__free(st);
}

static int tpw_init(hs_sched_t *s, void **state)
{
	size_t n = hs__sched_n_devices(s), d;
	tpw_state_t *st = hs__calloc(1, sizeof(*st));

	if (!st)
		return HS_ENOMEM;
	st->best = hs__calloc(n * HS_MAX_POWER_LEVELS, sizeof(*st->best));
	st->cap = hs__calloc(n, sizeof(*st->cap));
	st->speed = hs__calloc(n, sizeof(*st->speed));
	if (!st->best || !st->cap || !st->speed) {
		tpw_fini(st);
		return HS_ENOMEM;
	}
	for (d = 0; d < n; d++) {
		const hs_device_t *dev = hs__sched_device(s, (int)d);
		unsigned lo, l = best_level(dev, 0);

		for (lo = 0; lo < HS_MAX_POWER_LEVELS; lo++)
			st->best[d * HS_MAX_POWER_LEVELS + lo] =
				(uint8_t)best_level(dev, lo);
		st->cap[d] = dev->n_levels ? dev->levels[l].cap_w : dev->max_w;
		st->speed[d] = dev->n_levels ? dev->levels[l].speed : 1.0;
	}
	*state = st;
	return 0;
}

/* Joules the job would take on device d at its most efficient level. */
static double job_energy(const tpw_state_t *st, hs_sched_t *s, int d,
			 const hs_job_t *job)
{
	uint32_t batch = hs__sched_config(s)->max_batch_jobs;
	double ns = hs__sched_job_cost_ns(s, d, job, batch);

	return ns / st->speed[d] * st->cap[d] / 1e9;
}

static int tpw_route(void *state, hs_sched_t *s, const hs_job_t *job,
		     int64_t now)
{
	const tpw_state_t *st = state;
	size_t n = hs__sched_n_devices(s);
	const double *finish = hs__sched_finish_ns(
		s, job, hs__sched_config(s)->max_batch_jobs);
	const double *backlog = hs__sched_backlogs(s);
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
		if (backlog[d] >= FILL_NS)
			continue;
		e = job_energy(st, s, d, job);
		if (pick < 0 || e < best_e) {
			best_e = e;
			pick = d;
		}
	}
	return pick >= 0 ? pick : fallback;
}

static int tpw_level(void *state, hs_sched_t *s, int device, int lo)
{
	const tpw_state_t *st = state;

	return st->best[(size_t)device * HS_MAX_POWER_LEVELS + (unsigned)lo];
}

const struct hs_policy_ops hs__policy_tpw = {
	.name = "tpw",
	.summary = "tokens per joule first: most efficient device and level",
	.init = tpw_init,
	.fini = tpw_fini,
	.route = tpw_route,
	.level = tpw_level,
};
