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

/*
 * A step's time is the same bits on every x86-64 machine, from either copy
 * of sim_run_steps: GCC contracts nothing into fused multiply-adds in ISO C
 * mode, and clang is told the same for this file.
 */
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

/* What timing a step reads comes first, in a cache line or two (the block
 * starts on one). */
typedef struct sim_s {
	void *mem; /* the block, for hs__free */
	uint32_t n_models;
	double spread; /* noise / 2^31: per unit of a step's 32-bit hash */
	uint32_t key; /* the device's and the seed's: hashed with seq */
	unsigned n_levels;
	double full; /* the multiplier at full speed: the skew factor */
	double mult[HS_MAX_POWER_LEVELS]; /* factor / speed of each level */
	/* Per model: the law's coefficients, in the same block (no pointer
	 * to follow before a run is timed). */
	double theta[][HS_PERF_NFEAT];
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
	size_t n_models = hs_model_catalog_count(models), m;
	char *mem;
	sim_t *sm = hs__calloc_lines(
		1, sizeof(*sm) + n_models * sizeof(sm->theta[0]), &mem);
	uint64_t rng;
	double factor = 1.0, noise;

	if (!sm)
		return HS_ENOMEM;
	sm->mem = mem;
	sm->n_models = (uint32_t)n_models;
	/* The law: the roofline prior, fixed. */
	for (m = 0; m < sm->n_models; m++) {
		hs__perf_t law;

		hs__perf_init(&law, dev, hs_model_catalog_get(models, m));
		memcpy(sm->theta[m], law.theta, sizeof(sm->theta[m]));
	}
	rng = (opts ? opts->seed : 0) ^
	      (0x632be59bd9b4e019ull * (uint64_t)(dev->id + 1));
	if (opts && opts->skew > 0)
		factor = 1.0 + opts->skew * uniform_pm1(&rng);
	/* A step's time is multiplied once, by factor / speed: not divided
	 * by the speed, then multiplied by the factor. */
	sm->full = factor;
	sm->n_levels = dev->n_levels < HS_MAX_POWER_LEVELS
			       ? dev->n_levels
			       : HS_MAX_POWER_LEVELS;
	for (m = 0; m < sm->n_levels; m++)
		/* A speed no step can have (the core refuses such a device;
		 * a driver may open one directly) counts as full speed. */
		sm->mult[m] = dev->levels[m].speed > 0 &&
					      isfinite(dev->levels[m].speed)
				      ? factor / dev->levels[m].speed
				      : factor;
	noise = opts ? fabs(opts->noise) : 0;
	sm->spread = noise > 0 ? noise * 0x1p-31 : 0;
	sm->key = (uint32_t)(next_u64(&rng) >> 32);
	*exec = sm;
	return 0;
}

static void sim_close(void *exec)
{
	if (exec)
		hs__free(((sim_t *)exec)->mem);
}

/* Four steps a vector. */
typedef double v4d __attribute__((vector_size(32)));
typedef int64_t v4i __attribute__((vector_size(32)));
typedef uint64_t v4q __attribute__((vector_size(32)));
typedef uint32_t v4u __attribute__((vector_size(16)));
typedef int32_t v4s __attribute__((vector_size(16)));

/* Below this a lane's time is rounded in the vector; from it on (a step of
 * 52 days, a law no device has) by round_ns. */
#define EXACT_NS (1ull << 52)

/* What times the steps of one model at one level, in locals. */
typedef struct step_law_s {
	double ctx; /* per token of context */
	double mult; /* the level's speed and the skew, in one */
	double spread; /* mult x noise / 2^31 */
} step_law_t;

/*
 * Four steps' times, load excluded, into q (and before rounding, into t):
 * lane l that of context C[l], with base[l] = theta . [1, B, 0, P] for its
 * prefill P, and of hash input h[l] = key + seq. The law (floored at
 * HS_PERF_MIN_NS, as the prediction is) times the level's multiplier,
 * spread by the noise of the step's number, rounded half up (as llround)
 * to whole ns, at least 1. Every lane does the same operations in the
 * same order, so that the AVX2 copy and the default one give the same
 * bits. The noise is a function of the step's number, not of the steps
 * drawn before, so that a driver that times a run ahead and cuts it short
 * leaves the later steps what they would have been; its hash (lowbias32,
 * a 32-bit multiply-xorshift: uniform enough for a spread of a few
 * percent) has 32-bit lanes so that a vector holds them, and repeats
 * after 2^32 steps of a device. The rounding is the 2^52 trick: a lane of
 * EXACT_NS or more is to be rounded from t (exact_lanes).
 */
static inline void steps4(const step_law_t *sl, const v4d *C, const v4d *base,
			  v4u h, v4d *t, v4q *q)
{
	const v4d min = {HS_PERF_MIN_NS, HS_PERF_MIN_NS, HS_PERF_MIN_NS,
			 HS_PERF_MIN_NS},
		  one = {1, 1, 1, 1}, half = {0.5, 0.5, 0.5, 0.5},
		  magic = {0x1p52, 0x1p52, 0x1p52, 0x1p52};
	v4d x = sl->ctx * *C + *base, u, y;
	v4i keep;

	keep = x >= min; /* NaN too is floored */
	x = (v4d)(((v4i)x & keep) | ((v4i)min & ~keep));
	h ^= h >> 16;
	h *= 0x7feb352du;
	h ^= h >> 15;
	h *= 0x846ca68bu;
	h ^= h >> 16;
	u = __builtin_convertvector((v4s)h, v4d); /* [-2^31, 2^31) */
	x = x * (sl->mult + sl->spread * u);
	keep = x >= one;
	x = (v4d)(((v4i)x & keep) | ((v4i)one & ~keep));
	y = x + magic;
	/* A half rounded down to even rounds up. */
	*q = (v4q)y - (v4q)magic - (v4q)(x - (y - magic) == half);
	*t = x;
}

/* The lanes past the vector's rounding, rounded from their times. */
__attribute__((noinline, cold)) static void exact_lanes(v4q *q, const v4d *t)
{
	uint64_t ns[4];
	double x[4];
	int l;

	memcpy(ns, q, sizeof(ns));
	memcpy(x, t, sizeof(x));
	for (l = 0; l < 4; l++)
		if (ns[l] >= EXACT_NS)
			ns[l] = (uint64_t)round_ns(x[l]);
	memcpy(q, ns, sizeof(ns));
}

/*
 * The steps of a run, four at a time: each a function of its own number,
 * whether timed in a run or alone (sim_run_step, a run of one), lane for
 * lane the same operations. Four that end before until_ns are taken
 * whole, the last of the run a step at a time; lanes past the run are
 * timed and dropped. The first step carries the prefill and the load.
 */
HS__CLONES
static uint32_t sim_run_steps(void *exec, const hs_step_t *step, uint32_t n,
			      int64_t start_ns, int64_t until_ns,
			      int64_t *ns_out, int64_t *end_ns)
{
	const sim_t *sm = exec;
	const double *theta;
	double B = step->batch, C0 = (double)step->ctx_tokens, base, pre;
	int64_t at;
	uint64_t room;
	step_law_t sl;
	v4d C, dC, b, later, t;
	v4u h, four = {4, 4, 4, 4};
	v4q q;
	uint32_t i = 0, whole, m, l;

	if (step->model >= sm->n_models || n == 0)
		return 0;
	theta = sm->theta[step->model];
	/* The prefill's term with the batch's, once a run; P = 0 in every
	 * step but the first, kept in as a step alone of no prefill has it. */
	base = theta[HS_PERF_STEP] + theta[HS_PERF_JOB] * B;
	pre = base + theta[HS_PERF_PREFILL] * (double)step->prefill_tokens;
	base = base + theta[HS_PERF_PREFILL] * 0.0;
	b = (v4d){pre, base, base, base};
	later = (v4d){base, base, base, base};
	sl.ctx = theta[HS_PERF_CTX];
	sl.mult = step->level >= 0 && (unsigned)step->level < sm->n_levels
			  ? sm->mult[step->level]
			  : sm->full;
	sl.spread = sl.mult * sm->spread;
	C = (v4d){C0, C0 + B, C0 + B + B, C0 + B + B + B};
	dC = (v4d){4 * B, 4 * B, 4 * B, 4 * B};
	h = (uint32_t)step->seq + sm->key + (v4u){0, 1, 2, 3};
	/* The load is the first step's: in the end from the start on, in
	 * its time once the run is timed. Loaded past until_ns, the run is
	 * its first step. */
	at = start_ns + step->load_ns;
	if (at >= until_ns)
		n = 1;
	whole = n & ~3u;
	do {
		uint64_t sum;

		/* What four taken whole may add: less than is left before
		 * until_ns, and below EXACT_NS (each rounded in the
		 * vector). */
		room = (uint64_t)until_ns - (uint64_t)at;
		if (room > EXACT_NS)
			room = EXACT_NS;
		for (;;) {
			steps4(&sl, &C, &b, h, &t, &q);
			C += dC;
			h += four;
			b = later;
			sum = q[0] + q[1] + q[2] + q[3];
			if (!(i < whole && sum < room))
				break;
			memcpy(ns_out + i, &q, sizeof(q));
			at += (int64_t)sum;
			room -= sum;
			i += 4;
			if (i == n)
				goto out;
		}
		if (sum >= EXACT_NS)
			exact_lanes(&q, &t);
		m = n - i < 4 ? n - i : 4;
		for (l = 0; l < m; l++) {
			ns_out[i + l] = (int64_t)q[l];
			at += (int64_t)q[l];
			if (at >= until_ns) {
				i += l + 1;
				goto out;
			}
		}
		i += m;
	} while (i < n);
out:
	ns_out[0] += step->load_ns;
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
