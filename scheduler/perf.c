/* The step-time model: a roofline prior refined online by ridge regression. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "perf.h"

/* Decode steps are summed four to a vector (hs__perf_observe_decode); the
 * lanes must round as the scalar code does, without fused multiply-adds,
 * which ISO C mode keeps GCC from forming. */
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

#define N HS_PERF_NFEAT

/*
 * Fractions of the datasheet figures that inference kernels reach.
 * Streaming the weights and the KV cache gets about 80% of peak bandwidth
 * on GPUs and CPUs alike (STREAM-like reads); matmuls at inference batch
 * sizes reach about 60% of peak FLOP/s, less than training GEMMs whose
 * shapes are larger.
 */
#define BW_EFFICIENCY 0.8
#define FLOP_EFFICIENCY 0.6
/* What a step costs beyond the roofline: kernel launches, host sync and
 * sampling, a few dozen launches of a few microseconds each. */
#define STEP_OVERHEAD_NS 20000.0
/* A profile without figures gets a floor slower than any real device, so
 * the scheduler prefers devices that are described until measurements
 * come in. */
#define MIN_BW_GBS 1.0
#define MIN_TFLOPS 0.01
/* When the catalog does not say, weights are 16-bit. */
#define DEFAULT_DTYPE_BYTES 2

/*
 * The prior weighs as PRIOR_WEIGHT samples taken at a typical magnitude of
 * each feature: lambda_i = w * s_i^2 penalises moving theta_i by the time
 * that move makes at s_i. One step, 8 jobs, 8192 context tokens and a 512
 * token prefill chunk are typical of the batches the core builds. The
 * prior keeps directions the data do not span (a device that only ever
 * sees one shape) at the roofline, and steadies fits to few noisy samples;
 * its pull on the rest falls as 1/n. One sample is the compromise we
 * measured: at 2 a fit restarted 10x away from its prior was still 7% off
 * after 150 samples, below 0.5 fits to 10 samples with 30% noise
 * extrapolated markedly worse. Columns are divided by s_i before solving,
 * which makes the ridge term w * I and brings C (up to 1e6) and B (1..64)
 * to similar scales. When the samples' own magnitudes are smaller than
 * these (a tiny model on a CPU), theirs are used (ridge_scale).
 */
#define PRIOR_WEIGHT 1.0
static const double feat_scale[N] = {1.0, 8.0, 8192.0, 512.0};
/* The smallest magnitude the prior is weighed at (see ridge_scale),
 * relative to the typical one: it keeps a feature the samples never vary
 * (a device that only ever sees one shape) at its prior. */
#define SCALE_MIN 1e-3

/* A Cholesky pivot this small relative to its diagonal means the sums are
 * not those of any sample set (the ridge alone keeps pivots >= w). */
#define PIVOT_EPS 1e-12

static double floor_figure(double v, double min)
{
	return isfinite(v) && v > min ? v : min;
}

void hs__perf_init(hs__perf_t *p, const hs_device_t *dev, const hs_model_t *m)
{
	/* 1 GB/s is 1 byte/ns; 1 TFLOP/s is 1e3 FLOP/ns. */
	double bw = floor_figure(dev->mem_bw_gbs, MIN_BW_GBS) * BW_EFFICIENCY;
	double flops = floor_figure(dev->peak_tflops, MIN_TFLOPS) * 1e3 *
		       FLOP_EFFICIENCY;
	double dtype = m->dtype_bytes ? m->dtype_bytes : DEFAULT_DTYPE_BYTES;
	double active =
		(double)(m->active_params ? m->active_params : m->params);
	double step_bytes, kv = (double)m->kv_bytes_per_token;

	step_bytes = m->weight_bytes ? (double)m->weight_bytes
				     : (double)m->params * dtype;
	/*
	 * A MoE step reads only the experts its tokens are routed to. Taking
	 * the active parameters as that set is exact for one token and low
	 * for large batches, which touch more experts; the fit corrects it.
	 */
	if (m->active_params && m->active_params < m->params)
		step_bytes = active * dtype;

	memset(p, 0, sizeof(*p));
	p->prior[HS_PERF_STEP] = step_bytes / bw + STEP_OVERHEAD_NS;
	p->prior[HS_PERF_JOB] = 2.0 * active / flops;
	p->prior[HS_PERF_CTX] = kv / bw;
	p->prior[HS_PERF_PREFILL] = 2.0 * active / flops + kv / bw;
	memcpy(p->theta, p->prior, sizeof(p->theta));
}

/*
 * Solve the n x n SPD system a x = b in place (x in b) by Cholesky.
 * Returns false when a pivot vanishes: a is not positive definite.
 */
static bool cholesky_solve(double a[N][N], double *b, int n)
{
	int i, j, k;

	for (j = 0; j < n; j++) {
		double d = a[j][j];

		for (k = 0; k < j; k++)
			d -= a[j][k] * a[j][k];
		if (!isfinite(d) || d <= PIVOT_EPS * a[j][j])
			return false;
		d = sqrt(d);
		a[j][j] = d;
		for (i = j + 1; i < n; i++) {
			double s = a[i][j];

			for (k = 0; k < j; k++)
				s -= a[i][k] * a[j][k];
			a[i][j] = s / d;
		}
	}
	for (i = 0; i < n; i++) {
		for (k = 0; k < i; k++)
			b[i] -= a[i][k] * b[k];
		b[i] /= a[i][i];
	}
	for (i = n - 1; i >= 0; i--) {
		for (k = i + 1; k < n; k++)
			b[i] -= a[k][i] * b[k];
		b[i] /= a[i][i];
	}
	return true;
}

/*
 * The magnitude at which feature i's prior weighs as one sample: the
 * typical one, or the samples' own (root mean square) when they are
 * smaller. A tiny model's steps (prompts of tens of tokens, contexts of
 * hundreds) would otherwise see the prior's guess at what a prefill token
 * costs outweigh a hundred measured prefills, and the step's intercept
 * take what the prefills cost.
 */
static void ridge_scale(const hs__perf_t *p, double *scale)
{
	int i;

	for (i = 0; i < N; i++) {
		double rms =
			p->samples
				? sqrt(p->xtx[i * N + i] / (double)p->samples)
				: feat_scale[i];

		scale[i] = rms < feat_scale[i] ? rms : feat_scale[i];
		if (!(scale[i] >= feat_scale[i] * SCALE_MIN))
			scale[i] = feat_scale[i] * SCALE_MIN;
	}
}

/*
 * Minimise sum (t - theta.x)^2 + sum_i lambda_i (theta_i - prior_i)^2 with
 * theta >= 0. A negative coefficient would predict shorter steps for more
 * work and, extrapolated, negative times; when the unconstrained solution
 * has one, the most negative is pinned to 0 and the rest re-solved, until
 * none is left (an active-set pass, exact when at most one coefficient
 * wants to go negative, which is what noise and collinear features
 * produce). When the system is not positive definite, which sums of real
 * samples cannot be, theta falls back to the prior and false is returned.
 */
bool hs__perf_solve(hs__perf_t *p)
{
	double phi[N] = {0}, sc[N];
	bool pinned[N] = {false};
	bool ok = true;
	int i, j;

	ridge_scale(p, sc);

	for (;;) {
		double a[N][N], b[N];
		int idx[N], n = 0, worst = -1;

		for (i = 0; i < N; i++)
			if (!pinned[i])
				idx[n++] = i;
		if (!n)
			break;
		/* Pinned coefficients are 0, so they drop out of b. */
		for (i = 0; i < n; i++) {
			int r = idx[i];

			for (j = 0; j < n; j++) {
				int c = idx[j];

				a[i][j] = p->xtx[r * N + c] / (sc[r] * sc[c]);
			}
			a[i][i] += PRIOR_WEIGHT;
			b[i] = p->xty[r] / sc[r] +
			       PRIOR_WEIGHT * p->prior[r] * sc[r];
		}
		if (!cholesky_solve(a, b, n)) {
			ok = false;
			break;
		}
		for (i = 0; i < n; i++) {
			phi[idx[i]] = b[i];
			if (b[i] < 0 && (worst < 0 || b[i] < phi[worst]))
				worst = idx[i];
		}
		if (worst < 0)
			break;
		pinned[worst] = true;
		phi[worst] = 0;
	}
	for (i = 0; i < N; i++)
		p->theta[i] = ok ? phi[i] / sc[i] : p->prior[i];
	p->dirty = false;
	p->pending = 0;
	return ok;
}

static bool valid_feature(double v)
{
	return isfinite(v) && v >= 0;
}

/* Forget the samples, keep the prior and the life-long error figures. */
static void reset_fit(hs__perf_t *p)
{
	memset(p->xtx, 0, sizeof(p->xtx));
	memset(p->xty, 0, sizeof(p->xty));
	memcpy(p->theta, p->prior, sizeof(p->theta));
	p->samples = 0;
	p->dirty = false;
	p->pending = 0;
}

/* A sample joins the fit. */
static void accept(hs__perf_t *p, double B, double C, double P,
		   double measured_ns)
{
	p->consecutive_outliers = 0;
	/* x = (1, B, C, P) and X'X is symmetric: each product is formed
	 * once, and every sum gets what the full outer product would add to
	 * it. */
	_Static_assert(N == 4, "the features are 1, B, C and P");
	{
		double *a = p->xtx, bc = B * C, bp = B * P, cp = C * P;

		/* The first row and column: x[0] times each feature. */
		a[0] += 1.0;
		a[1] += B;
		a[4] += B;
		a[2] += C;
		a[8] += C;
		a[3] += P;
		a[12] += P;
		/* The products of B, C and P, each at both its places. */
		a[5] += B * B;
		a[6] += bc;
		a[9] += bc;
		a[7] += bp;
		a[13] += bp;
		a[10] += C * C;
		a[11] += cp;
		a[14] += cp;
		a[15] += P * P;
		p->xty[0] += measured_ns;
		p->xty[1] += B * measured_ns;
		p->xty[2] += C * measured_ns;
		p->xty[3] += P * measured_ns;
	}
	p->samples++;
	/* Re-solving costs more than the step it models on a fast device:
	 * after the first samples, refit once the new ones are a few
	 * percent of the total. */
	p->pending++;
	if (p->samples <= HS_PERF_REFIT_ALL ||
	    p->pending * HS_PERF_REFIT_FRACTION >= p->samples)
		p->dirty = true;
}

bool hs__perf_observe(hs__perf_t *p, double B, double C, double P,
		      double measured_ns)
{
	double pred;

	if (!valid_feature(B) || !valid_feature(C) || !valid_feature(P) ||
	    !isfinite(measured_ns) || measured_ns <= 0)
		return false;
	pred = hs__perf_predict_ns(p, B, C, P);
	p->rel_err_sum += fabs(pred - measured_ns) / measured_ns;
	p->rel_err_n++;
	/* The error once calibrated: after the warm-up, samples judged by
	 * a fit rather than by the roofline. */
	if (p->samples >= HS_PERF_WARMUP) {
		p->cal_err_sum += fabs(pred - measured_ns) / measured_ns;
		p->cal_err_n++;
	}
	if (p->samples >= HS_PERF_WARMUP &&
	    (measured_ns > HS_PERF_OUTLIER_K * pred ||
	     measured_ns < pred / HS_PERF_OUTLIER_K)) {
		if (++p->consecutive_outliers < HS_PERF_RESET_RUN) {
			p->outliers++;
			return false;
		}
		/*
		 * Noise does not come sixteen times in a row: the device now
		 * runs at another clock, another driver, another sharing.
		 * The old samples describe a device that is gone, and the
		 * prior is a better start than a fit to them.
		 */
		reset_fit(p);
		p->resets++;
	}
	accept(p, B, C, P, measured_ns);
	return true;
}

/* Sums of decode samples not yet added to the normal equations. */
typedef struct decode_sums_s {
	double n, c, cc, t, tc;
} decode_sums_t;

static inline void decode_flush(hs__perf_t *p, double B, decode_sums_t *d)
{
	double *a = p->xtx;

	if (d->n == 0)
		return;
	a[0] += d->n;
	a[1] += B * d->n;
	a[4] += B * d->n;
	a[2] += d->c;
	a[8] += d->c;
	a[5] += B * B * d->n;
	a[6] += B * d->c;
	a[9] += B * d->c;
	a[10] += d->cc;
	p->xty[0] += d->t;
	p->xty[1] += B * d->t;
	p->xty[2] += d->tc;
	memset(d, 0, sizeof(*d));
}

/* A decode step's measured time, at least 1 ns, scaled to full speed. */
static inline double decode_ns(int64_t ns, double scale)
{
	return (double)(ns > 1 ? ns : 1) * scale;
}

/* Decode steps one call each; the outliers among them. */
static uint32_t observe_each(hs__perf_t *p, double B, double C, double dC,
			     const int64_t *ns, uint32_t n, double scale)
{
	uint32_t i, out = 0;

	for (i = 0; i < n; i++, C += dC)
		out += !hs__perf_observe(p, B, C, 0, decode_ns(ns[i], scale));
	return out;
}

/*
 * hs__perf_observe_decode step by step, for any input and any outcome
 * (outliers, a reset): what the fast path below leaves to it.
 */
static uint32_t observe_decode_steps(hs__perf_t *p, double B, double C,
				     double dC, const int64_t *ns, uint32_t n,
				     double scale)
{
	decode_sums_t d = {0};
	double err = 0, cal = 0, base = 0, slope = 0;
	uint64_t samples, pending;
	uint32_t i, out = 0, n_err = 0, n_cal = 0;

	if (!valid_feature(B) || !valid_feature(C) || !valid_feature(dC) ||
	    !(scale > 0) || !isfinite(scale))
		return observe_each(p, B, C, dC, ns, n, scale);
	/* While the fit is young every sample refits it: one at a time, as
	 * hs__perf_observe takes them, so that each is judged by the fit of
	 * those before. */
	for (; n && p->samples < HS_PERF_REFIT_ALL; n--, ns++, C += dC)
		out += observe_each(p, B, C, dC, ns, 1, scale);
	if (!n)
		return out;
	if (p->dirty)
		hs__perf_solve(p);
	samples = p->samples;
	pending = p->pending;
	/* The fit the run is judged by: the one before it. Samples that call
	 * for a refit get it at the next prediction. */
	base = p->theta[HS_PERF_STEP] + p->theta[HS_PERF_JOB] * B;
	slope = p->theta[HS_PERF_CTX];
	/* The figures in locals, back in p before anything reads them. */
#define SYNC()                          \
	do {                            \
		p->samples = samples;   \
		p->pending = pending;   \
		p->rel_err_sum += err;  \
		p->rel_err_n += n_err;  \
		p->cal_err_sum += cal;  \
		p->cal_err_n += n_cal;  \
		err = cal = 0;          \
		n_err = n_cal = 0;      \
		decode_flush(p, B, &d); \
	} while (0)
	for (i = 0; i < n; i++, C += dC) {
		double t = decode_ns(ns[i], scale), pred, e;

		/* As hs__perf_predict_ns adds them (P = 0 adds nothing). */
		pred = base + slope * C;
		if (!(pred >= HS_PERF_MIN_NS))
			pred = HS_PERF_MIN_NS;
		e = fabs(pred - t) / t;
		err += e;
		n_err++;
		if (samples >= HS_PERF_WARMUP) {
			cal += e;
			n_cal++;
			if (t > HS_PERF_OUTLIER_K * pred ||
			    t < pred / HS_PERF_OUTLIER_K) {
				if (++p->consecutive_outliers <
				    HS_PERF_RESET_RUN) {
					p->outliers++;
					out++;
					continue;
				}
				/* The device changed: the fit starts again
				 * from this sample and moves with each of
				 * the next, one at a time as
				 * hs__perf_observe takes them. */
				SYNC();
				reset_fit(p);
				p->resets++;
				accept(p, B, C, 0, t);
				return out + observe_each(p, B, C + dC, dC,
							  ns + i + 1, n - i - 1,
							  scale);
			}
		}
		p->consecutive_outliers = 0;
		d.n += 1;
		d.c += C;
		d.cc += C * C;
		d.t += t;
		d.tc += t * C;
		samples++;
		pending++;
		if (samples <= HS_PERF_REFIT_ALL ||
		    pending * HS_PERF_REFIT_FRACTION >= samples)
			p->dirty = true;
	}
	SYNC();
#undef SYNC
	return out;
}

/* Four doubles a vector, and halves (the file's top says why the lanes
 * round as the scalar code does). */
typedef double v4d __attribute__((vector_size(32)));
typedef double v2d __attribute__((vector_size(16)));
typedef uint64_t v4u __attribute__((vector_size(32)));
typedef uint64_t v2u __attribute__((vector_size(16)));

/*
 * A step whose relative error is at most this is no outlier: its time is
 * between pred / (1 + SURE_ERR) and pred / (1 - SURE_ERR), a factor of the
 * prediction short of HS_PERF_OUTLIER_K by far more than rounding moves
 * it. The lanes mark a step above it with one comparison instead of the
 * two of the outlier test, and the scalar code judges it with its run.
 */
#define SURE_ERR (0.9 * (1 - 1 / HS_PERF_OUTLIER_K))
/* Measured times taken without the scalar code's floor at 1 ns: those in
 * [1, 2^MAX_NS_BITS) ns, which the lanes also convert exactly. A time of
 * 0 needs no test of its own: its error is infinite. */
#define MAX_NS_BITS 51

/* Lanes 0 + 2 and 1 + 3. */
static inline v2d lanes_fold(const v4d *v)
{
	v2d lo, hi;

	memcpy(&lo, v, sizeof(lo));
	memcpy(&hi, (const char *)v + sizeof(lo), sizeof(hi));
	return lo + hi;
}

/*
 * The error, time and time x context sums (sums[0..2]) of n >= 4 steps
 * of a run, four at a time, judged by the fit base + slope C as
 * observe_decode_steps judges the steps of a warm fit: each lane with the
 * same operations in the same order, its sums added up in the same order
 * in both copies. The last four of the run are taken again for the n % 4
 * not yet taken. Contexts C + i dC must be whole numbers below 2^52 up to
 * i = n + 3 (the lanes run past the run). False when a step is measured
 * outside [1, 2^MAX_NS_BITS) ns or may be an outlier.
 */
static inline __attribute__((always_inline)) bool decode_blocks(
	const int64_t *ns, uint32_t n, double C, double dC, double base,
	double slope, double scale, double sums[3])
{
	const v4u bias = {0x4330000000000000, 0x4330000000000000,
			  0x4330000000000000, 0x4330000000000000},
		  magnitude = {INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX};
	const v4d two52 = {0x1p52, 0x1p52, 0x1p52, 0x1p52},
		  sure = {SURE_ERR, SURE_ERR, SURE_ERR, SURE_ERR},
		  lane = {0, 1, 2, 3};
	v4d vbase = {base, base, base, base},
	    vslope = {slope, slope, slope, slope},
	    vscale = {scale, scale, scale, scale},
	    step4 = {4 * dC, 4 * dC, 4 * dC, 4 * dC}, c = C + lane * dC;
	v4d err = {0}, st = {0}, stc = {0}, t, pred, e;
	const int64_t *q = ns, *end = ns + (n & ~3u);
	v4u bad = {0}, keep, u;
	v2d a, b, x;
	v2u any;

	/*
	 * Four steps, measured u ns as the driver gave them, at contexts
	 * c, into the sums of the lanes in keep (a mask the compiler drops
	 * where it is all ones). Where u is in range, t is positive and
	 * finite (or 0, and e infinite) and pred at least the floor: e is
	 * never NaN there, and one comparison marks what may be an outlier.
	 */
#define DECODE_FOUR()                                                 \
	do {                                                          \
		/* 2^52 + u as the bits of a double, less 2^52: u. */ \
		t = ((v4d)(u | bias) - two52) * vscale;               \
		pred = vbase + vslope * c;                            \
		e = (v4d)((v4u)(pred - t) & magnitude) / t;           \
		bad |= u | (v4u)(e > sure);                           \
		err += (v4d)((v4u)e & keep);                          \
		t = (v4d)((v4u)t & keep);                             \
		st += t;                                              \
		stc += t * c;                                         \
	} while (0)
	keep = (v4u){UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX};
	for (; q < end; q += 4, c += step4) {
		/* A load as a copy: no alignment is promised. */
		memcpy(&u, q, sizeof(u));
		DECODE_FOUR();
	}
	/* The last four again, for the n % 4 not yet taken: those taken
	 * already count in no sum, and mark bad as they did before. */
	if (n & 3) {
		double back = 4 - (n & 3);

		memcpy(&u, ns + n - 4, sizeof(u));
		c -= back * dC;
		keep = (v4u)(lane >= back);
		DECODE_FOUR();
	}
#undef DECODE_FOUR
	/* Lanes 0 + 2 and 1 + 3, then those two. */
	a = lanes_fold(&err);
	b = lanes_fold(&st);
	x = (v2d){a[0], b[0]} + (v2d){a[1], b[1]};
	sums[0] = x[0];
	sums[1] = x[1];
	a = lanes_fold(&stc);
	sums[2] = a[0] + a[1];
	memcpy(&any, &bad, sizeof(any));
	any |= (v2u){bad[2], bad[3]};
	return !((any[0] | any[1]) >> MAX_NS_BITS);
}

/* Whether x in [0, 2^52) is a whole number. */
static inline bool whole(double x)
{
	return (double)(int64_t)x == x;
}

/* hs__perf_observe_decode with the fit re-solved first (out of line: the
 * fast path then keeps nothing across a call). */
static uint32_t observe_decode_solved(hs__perf_t *p, double B, double C,
				      double dC, const int64_t *ns, uint32_t n,
				      double scale)
{
	hs__perf_solve(p);
	return hs__perf_observe_decode(p, B, C, dC, ns, n, scale);
}

/*
 * The steps of a warm fit when none may be an outlier, which is what
 * almost every run of a calibrated device is: four at a time (a run
 * shorter than four one by one, as one lane would take them); then the
 * sums go into the fit at once. The lanes hold contexts C + i dC: when
 * both are whole numbers and those reached below 2^52, they are exactly
 * the contexts the scalar code reaches by adding dC step by step.
 * Anything else, and a run with a step the fast path does not take, goes
 * to observe_decode_steps, which decides what it would not.
 */
HS__CLONES
uint32_t hs__perf_observe_decode(hs__perf_t *p, double B, double C, double dC,
				 const int64_t *ns, uint32_t n, double scale)
{
	double base, slope, nn = n, sums[3] = {0, 0, 0}, m, s1, s2;
	decode_sums_t d;
	uint64_t pending;

	/*
	 * What the fast path does not take goes to observe_decode_steps
	 * before p changes here (a dirty fit it would re-solve at this point
	 * too). B, C and dC are finite when their sum is; t and the errors
	 * are with scale at most DBL_MAX / 2^MAX_NS_BITS.
	 */
	if (!n || p->samples < HS_PERF_REFIT_ALL || !(B >= 0) || !(C >= 0) ||
	    !(dC >= 0) || !(B + C + dC <= DBL_MAX) || !(scale > 0) ||
	    !(scale <= DBL_MAX / (double)(1ull << MAX_NS_BITS)) ||
	    (n >= 4 &&
	     (!(C + (nn + 3) * dC < 0x1p52) || !whole(C) || !whole(dC))))
		return observe_decode_steps(p, B, C, dC, ns, n, scale);
	if (p->dirty)
		return observe_decode_solved(p, B, C, dC, ns, n, scale);
	/* As observe_decode_steps judges the run. The predictions grow with
	 * C when the slope is not negative (the fit keeps it so): above the
	 * floor at the first step, above it at all. */
	base = p->theta[HS_PERF_STEP] + p->theta[HS_PERF_JOB] * B;
	slope = p->theta[HS_PERF_CTX];
	if (!(slope >= 0) || !(base + slope * C >= HS_PERF_MIN_NS))
		return observe_decode_steps(p, B, C, dC, ns, n, scale);
	if (n >= 4) {
		if (!decode_blocks(ns, n, C, dC, base, slope, scale, sums))
			return observe_decode_steps(p, B, C, dC, ns, n, scale);
	} else {
		double c = C;
		uint32_t i;

		for (i = 0; i < n; i++, c += dC) {
			uint64_t u = (uint64_t)ns[i];
			double t = (double)ns[i] * scale,
			       e = fabs(base + slope * c - t) / t;

			if (u >> MAX_NS_BITS || !(e <= SURE_ERR))
				return observe_decode_steps(p, B, C, dC, ns, n,
							    scale);
			sums[0] += e;
			sums[1] += t;
			sums[2] += t * c;
		}
	}

	/* Every step joins the fit: the context sums in closed form, with
	 * s1 = sum i and s2 = sum i^2 over i < n. */
	s1 = nn * (nn - 1) / 2;
	s2 = s1 * (2 * nn - 1) / 3;
	m = s1 * dC;
	d.n = nn;
	d.c = nn * C + m;
	d.cc = C * (d.c + m) + dC * (dC * s2);
	d.t = sums[1];
	d.tc = sums[2];
	decode_flush(p, B, &d);
	/* The fit was warm: the calibrated error takes every step too. */
	p->rel_err_sum += sums[0];
	p->rel_err_n += n;
	p->cal_err_sum += sums[0];
	p->cal_err_n += n;
	p->consecutive_outliers = 0;
	/* accept's refit rule at the last step: pending * fraction - samples
	 * only grows from step to step, so no earlier one calls for a refit
	 * the last does not. */
	p->samples += n;
	pending = (uint64_t)p->pending + n;
	p->pending = (uint32_t)pending;
	if (pending * HS_PERF_REFIT_FRACTION >= p->samples)
		p->dirty = true;
	return 0;
}

void hs__perf_refit(hs__perf_t *p)
{
	if (p->pending || p->dirty)
		hs__perf_solve(p);
}

double hs__perf_mean_rel_error(const hs__perf_t *p)
{
	return p->rel_err_n ? p->rel_err_sum / (double)p->rel_err_n : 0.0;
}

/* ------------------------------------------------------------------------ */
/* Save and load                                                            */
/* ------------------------------------------------------------------------ */

static json_t *number_array(const double *v, size_t n)
{
	json_t *arr = json_array();
	size_t i;

	if (!arr)
		return NULL;
	for (i = 0; i < n; i++) {
		if (json_array_append_new(arr, json_real(v[i]))) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

json_t *hs__perf_to_json(const hs__perf_t *p)
{
	hs__perf_t fit = *p;
	json_t *obj;

	/* Write the theta of every sample, as loading recomputes it. */
	if (fit.dirty || fit.pending)
		hs__perf_solve(&fit);
	obj = json_object();
	if (!obj)
		return NULL;
	/* json_object_set_new fails on a NULL value, so one test per key
	 * covers both allocations. */
	if (json_object_set_new(obj, "prior", number_array(fit.prior, N)) ||
	    json_object_set_new(obj, "theta", number_array(fit.theta, N)) ||
	    json_object_set_new(obj, "xtx", number_array(fit.xtx, N * N)) ||
	    json_object_set_new(obj, "xty", number_array(fit.xty, N)) ||
	    json_object_set_new(obj, "samples",
				json_integer((json_int_t)fit.samples)) ||
	    json_object_set_new(obj, "outliers",
				json_integer((json_int_t)fit.outliers)) ||
	    json_object_set_new(obj, "resets", json_integer(fit.resets)) ||
	    json_object_set_new(obj, "rel_err_sum",
				json_real(fit.rel_err_sum)) ||
	    json_object_set_new(obj, "rel_err_n",
				json_integer((json_int_t)fit.rel_err_n))) {
		json_decref(obj);
		obj = NULL;
	}
	return obj;
}

static int read_numbers(hs__jv_t *jv, const json_t *obj, const char *key,
			double *out, size_t n)
{
	json_t *arr = json_object_get(obj, key), *v;
	hs__jv_t c, e;
	size_t i;

	if (!arr)
		return hs__error_set(jv->err, HS_EMISSING, jv->source, 0,
				     jv->path, "missing required key \"%s\"",
				     key);
	hs__jv_child_key(&c, jv, key);
	if (!json_is_array(arr) || json_array_size(arr) != n)
		return hs__error_set(c.err, HS_ETYPE, c.source, 0, c.path,
				     "expected an array of %zu numbers", n);
	json_array_foreach (arr, i, v) {
		hs__jv_child_index(&e, &c, i);
		if (!json_is_number(v))
			return hs__error_set(e.err, HS_ETYPE, e.source, 0,
					     e.path, "expected a number");
		/* Features and times are never negative, nor is any sum
		 * of their products. */
		out[i] = json_number_value(v);
		if (!isfinite(out[i]) || out[i] < 0)
			return hs__error_set(
				e.err, HS_ERANGE, e.source, 0, e.path,
				"expected a number >= 0, got %g", out[i]);
	}
	return 0;
}

int hs__perf_from_json(hs__perf_t *p, hs__jv_t *jv, const json_t *obj)
{
	static const char *const keys[] = {
		"prior",    "theta",  "xtx",	     "xty",	  "samples",
		"outliers", "resets", "rel_err_sum", "rel_err_n", NULL};
	hs__perf_t in;
	hs__jv_t c;
	int rc, i, j;

	memset(&in, 0, sizeof(in));
	if ((rc = hs__jv_expect_object(jv, obj)) ||
	    (rc = hs__jv_check_keys(jv, obj, keys)) ||
	    (rc = read_numbers(jv, obj, "prior", in.prior, N)) ||
	    (rc = read_numbers(jv, obj, "theta", in.theta, N)) ||
	    (rc = read_numbers(jv, obj, "xtx", in.xtx, N * N)) ||
	    (rc = read_numbers(jv, obj, "xty", in.xty, N)) ||
	    (rc = hs__jv_u64(jv, obj, "samples", true, &in.samples, 0,
			     INT64_MAX)) ||
	    (rc = hs__jv_u64(jv, obj, "outliers", true, &in.outliers, 0,
			     INT64_MAX)) ||
	    (rc = hs__jv_u32(jv, obj, "resets", false, &in.resets, 0,
			     UINT32_MAX)) ||
	    (rc = hs__jv_double(jv, obj, "rel_err_sum", true, &in.rel_err_sum,
				0, DBL_MAX)) ||
	    (rc = hs__jv_u64(jv, obj, "rel_err_n", true, &in.rel_err_n, 0,
			     INT64_MAX)))
		goto out;

	hs__jv_child_key(&c, jv, "xtx");
	for (i = 0; i < N; i++)
		for (j = 0; j < i; j++)
			if (in.xtx[i * N + j] != in.xtx[j * N + i]) {
				rc = hs__error_set(
					c.err, HS_EINVAL, c.source, 0, c.path,
					"not symmetric at [%d][%d]", i, j);
				goto out;
			}
	/* Every sample adds 1 * 1 to the first cell. */
	if (in.xtx[0] != (double)in.samples) {
		rc = hs__error_set(c.err, HS_EINVAL, c.source, 0, c.path,
				   "first element %g does not match "
				   "samples %llu",
				   in.xtx[0], (unsigned long long)in.samples);
		goto out;
	}
	if (!in.rel_err_n && in.rel_err_sum > 0) {
		hs__jv_child_key(&c, jv, "rel_err_sum");
		rc = hs__error_set(c.err, HS_EINVAL, c.source, 0, c.path,
				   "%g with rel_err_n 0", in.rel_err_sum);
		goto out;
	}
	in.dirty = true;
	if (!hs__perf_solve(&in)) {
		hs__jv_child_key(&c, jv, "xtx");
		rc = hs__error_set(c.err, HS_EINVAL, c.source, 0, c.path,
				   "not the sums of any set of samples "
				   "(not positive semi-definite)");
		goto out;
	}
	*p = in;
out:
	return rc;
}
