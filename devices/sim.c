/*
 * The sim executor: no work is done; a step takes the time the performance
 * model's roofline prior gives for the device's profile, spread by seeded
 * noise (a function of the device, the seed and the step's number) and
 * skewed by a per-device factor (the device is a little faster
 * or slower than its profile says, as real ones are). The prior is fixed
 * here, apart from the core's model that calibrates against these times,
 * so that the core learns the skew instead of chasing its own tail. Energy
 * is left to the core to model (power level x time): no sensor measures a
 * simulated device.
 */
#include <math.h>
#include <string.h>

#include "executor.h"
#include "internal.h"
#include "perf.h"

/* What timing a step reads comes first, in a cache line or two. */
typedef struct sim_s {
	double (*theta)[HS_PERF_NFEAT]; /* per model: the law's coefficients */
	size_t n_models;
	uint64_t rng;
	double noise;
	double factor; /* true time / profile time */
	unsigned n_levels;
	double speed[HS_MAX_POWER_LEVELS]; /* of each power level */
} sim_t;

/* splitmix64: small, fast, and the same sequence on every machine. */
static uint64_t next_u64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static double uniform_pm1(uint64_t *x)
{
	return (double)(next_u64(x) >> 11) * 0x1.0p-52 - 1.0;
}

/*
 * llround for the t >= 0 a step takes, without the library call: below
 * 2^62 the fraction t - trunc(t) is exact, and a half rounds up (away from
 * zero), as llround does.
 */
static int64_t round_ns(double t)
{
	int64_t i;

	if (!(t >= 0 && t < 0x1p62))
		return llround(t);
	i = (int64_t)t;
	return i + (t - (double)i >= 0.5);
}

static int sim_open(void **exec, const hs_device_t *dev,
		    const hs_model_catalog_t *models,
		    const hs_executor_opts_t *opts)
{
	sim_t *sm = hs__calloc(1, sizeof(*sm));
	size_t m;

	if (!sm)
		return HS_ENOMEM;
	sm->n_models = hs_model_catalog_count(models);
	sm->theta =
		hs__calloc(sm->n_models ? sm->n_models : 1, sizeof(*sm->theta));
	if (!sm->theta) {
		hs__free(sm);
		return HS_ENOMEM;
	}
	/* The law: the roofline prior, fixed. */
	for (m = 0; m < sm->n_models; m++) {
		hs__perf_t law;

		hs__perf_init(&law, dev, hs_model_catalog_get(models, m));
		memcpy(sm->theta[m], law.theta, sizeof(sm->theta[m]));
	}
	sm->n_levels = dev->n_levels < HS_MAX_POWER_LEVELS
			       ? dev->n_levels
			       : HS_MAX_POWER_LEVELS;
	for (m = 0; m < sm->n_levels; m++)
		/* A speed no step can have (the core refuses such a device;
		 * a driver may open one directly) counts as full speed. */
		sm->speed[m] = dev->levels[m].speed > 0 &&
					       isfinite(dev->levels[m].speed)
				       ? dev->levels[m].speed
				       : 1.0;
	sm->rng = (opts ? opts->seed : 0) ^
		  (0x632be59bd9b4e019ull * (uint64_t)(dev->id + 1));
	sm->noise = opts ? fabs(opts->noise) : 0;
	sm->factor = 1.0;
	if (opts && opts->skew > 0)
		sm->factor = 1.0 + opts->skew * uniform_pm1(&sm->rng);
	*exec = sm;
	return 0;
}

static void sim_close(void *exec)
{
	sim_t *sm = exec;

	if (!sm)
		return;
	hs__free(sm->theta);
	hs__free(sm);
}

/* What times the steps of one model at one level, in locals. */
typedef struct step_law_s {
	double theta[HS_PERF_NFEAT]; /* the law: the roofline prior */
	double B, speed, factor, noise;
	uint64_t rng;
} step_law_t;

static void step_law(const sim_t *sm, const hs_step_t *step, step_law_t *sl)
{
	memcpy(sl->theta, sm->theta[step->model], sizeof(sl->theta));
	sl->B = step->batch;
	sl->speed = 1.0;
	if (step->level >= 0 && (unsigned)step->level < sm->n_levels)
		sl->speed = sm->speed[step->level];
	sl->factor = sm->factor;
	sl->noise = sm->noise;
	sl->rng = sm->rng;
}

/*
 * A step's time, load excluded: the law at the level's speed (the
 * prediction as hs__perf_predict_ns makes it, floored), skewed, with the
 * noise of step seq: a function of its number, not of the steps drawn
 * before, so that a driver that times a run ahead and cuts it short
 * leaves the later steps what they would have been.
 */
static inline int64_t step_ns(const step_law_t *sl, double C, double P,
			      uint64_t seq)
{
	double t = sl->theta[HS_PERF_STEP] + sl->theta[HS_PERF_JOB] * sl->B +
		   sl->theta[HS_PERF_CTX] * C + sl->theta[HS_PERF_PREFILL] * P;

	if (!(t >= HS_PERF_MIN_NS))
		t = HS_PERF_MIN_NS;
	t = t / sl->speed * sl->factor;
	if (sl->noise > 0) {
		/* A multiply-xorshift of the step's number: uniform enough
		 * for a spread of a few percent, and cheap. */
		uint64_t x = (sl->rng + seq) * 0xd1b54a32d192ed03ull;

		x ^= x >> 31;
		x *= 0x94d049bb133111ebull;
		x ^= x >> 29;
		t *= 1.0 + sl->noise * ((double)(x >> 11) * 0x1.0p-52 - 1.0);
	}
	return round_ns(t < 1 ? 1 : t);
}

/* The steps of a run: each a function of its own number, whether timed
 * in a run or alone (sim_run_step). */
static uint32_t sim_run_steps(void *exec, const hs_step_t *step, uint32_t n,
			      int64_t start_ns, int64_t until_ns,
			      int64_t *ns_out, int64_t *end_ns)
{
	const sim_t *sm = exec;
	double C = (double)step->ctx_tokens;
	int64_t at = start_ns, t;
	step_law_t sl;
	uint32_t i;

	if (step->model >= sm->n_models || n == 0)
		return 0;
	step_law(sm, step, &sl);
	t = step_ns(&sl, C, (double)step->prefill_tokens, step->seq) +
	    step->load_ns;
	ns_out[0] = t;
	at += t;
	for (i = 1; i < n && at < until_ns; i++) {
		C += sl.B;
		t = step_ns(&sl, C, 0, step->seq + i);
		ns_out[i] = t;
		at += t;
	}
	*end_ns = at;
	return i;
}

/* One step: a run of one. */
static int sim_run_step(void *exec, const hs_step_t *step, int64_t *duration_ns,
			double *energy_j)
{
	int64_t end;

	if (!sim_run_steps(exec, step, 1, 0, INT64_MAX, duration_ns, &end))
		return HS_EINVAL;
	*energy_j = -1;
	return 0;
}

const struct hs_executor_ops hs__executor_sim = {
	.name = "sim",
	.open = sim_open,
	.close = sim_close,
	.run_step = sim_run_step,
	.run_steps = sim_run_steps,
};
