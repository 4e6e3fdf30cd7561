/* The step-time model: roofline prior, online fit, outliers, save/load. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "perf.h"
#include "testutil.h"

#define assert_close(x, want, rel)                                           \
	do {                                                                 \
		double x_ = (x), w_ = (want);                                \
		if (!(fabs(x_ - w_) <= (rel)*fabs(w_)))                      \
			fail_msg("%s = %.10g, want %.10g within %g", #x, x_, \
				 w_, (double)(rel));                         \
	} while (0)

/* A fixed LCG, so that every run sees the same samples. */
static uint64_t rng_state;

static void rng_seed(uint64_t seed)
{
	rng_state = seed;
}

static double uniform(double lo, double hi)
{
	rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
	/* The top 53 bits, as a double in [0, 1). */
	return lo + (hi - lo) * ((double)(rng_state >> 11) / 0x1p53);
}

/* An integer in [lo, hi]. */
static double uniform_int(int lo, int hi)
{
	return floor(uniform(lo, hi + 1.0));
}

typedef struct law_s {
	double a, b, c, d; /* ns per step, job, context token, prefill token */
} law_t;

static double law_ns(const law_t *l, double B, double C, double P)
{
	return l->a + l->b * B + l->c * C + l->d * P;
}

/* Feature ranges of a workload. */
typedef struct range_s {
	int b_max;
	double c_min, c_max;
	int p_max;
} range_t;

/* The big workload of the fit test, and a small one around 1 ms steps. */
static const range_t wide = {32, 100, 50000, 2000};
static const range_t small = {16, 100, 8000, 256};

static void draw(const range_t *r, double *B, double *C, double *P)
{
	*B = uniform_int(1, r->b_max);
	*C = uniform(r->c_min, r->c_max);
	*P = uniform_int(0, r->p_max);
}

/* Uniform +-2% noise. */
static double noisy(double t)
{
	return t * (1.0 + uniform(-0.02, 0.02));
}

/* Feed n noisy samples of law l; returns how many were accepted. */
static int feed(hs__perf_t *p, const law_t *l, const range_t *r, double scale,
		int n)
{
	double B, C, P;
	int i, accepted = 0;

	for (i = 0; i < n; i++) {
		draw(r, &B, &C, &P);
		accepted += hs__perf_observe(p, B, C, P,
					     noisy(scale * law_ns(l, B, C, P)));
	}
	return accepted;
}

/* Worst relative error of predictions against law l at n fresh points. */
static double worst_error(hs__perf_t *p, const law_t *l, const range_t *r,
			  double scale, int n)
{
	double B, C, P, worst = 0;
	int i;

	for (i = 0; i < n; i++) {
		double want, got;

		draw(r, &B, &C, &P);
		want = scale * law_ns(l, B, C, P);
		got = hs__perf_predict_ns(p, B, C, P);
		if (fabs(got - want) / want > worst)
			worst = fabs(got - want) / want;
	}
	return worst;
}

static void make_device(hs_device_t *d, double bw_gbs, double tflops)
{
	memset(d, 0, sizeof(*d));
	hs__strlcpy(d->name, "test device", sizeof(d->name));
	d->mem_bw_gbs = bw_gbs;
	d->peak_tflops = tflops;
}

static void make_model(hs_model_t *m, uint64_t params, uint64_t active,
		       uint32_t dtype, uint64_t kv)
{
	memset(m, 0, sizeof(*m));
	hs__strlcpy(m->name, "test model", sizeof(m->name));
	m->params = params;
	m->active_params = active;
	m->dtype_bytes = dtype;
	m->weight_bytes = params * dtype;
	m->kv_bytes_per_token = kv;
}

/*
 * The fit test's pair: 8 GB of weights on a 1000 GB/s, 1000 TFLOP/s
 * device, whose prior is about {10.02 ms, 13.3 us, 164 ns, 13.5 us}.
 */
static void big_pair(hs__perf_t *p)
{
	hs_device_t dev;
	hs_model_t m;

	make_device(&dev, 1000, 1000);
	make_model(&m, 4000000000ull, 4000000000ull, 2, 131072);
	hs__perf_init(p, &dev, &m);
}

/* 0.8 GB of weights on the same device: steps of about 1 ms. */
static void small_pair(hs__perf_t *p)
{
	hs_device_t dev;
	hs_model_t m;

	make_device(&dev, 1000, 1000);
	make_model(&m, 400000000ull, 400000000ull, 2, 32768);
	hs__perf_init(p, &dev, &m);
}

/*
 * Far from the big pair's prior where the data can tell (37x the per-job
 * cost) and within 25% where it can barely (the intercept, which the
 * workload only reaches by extrapolation).
 */
static const law_t big_law = {12e6, 500000, 200, 12000};
static const law_t small_law = {0.9e6, 20000, 50, 1500};

static void test_prior_roofline(void **state)
{
	hs_device_t dev;
	hs_model_t m;
	hs__perf_t p;

	/* 1 GB of weights, 1000 GB/s at 80%, 100 TFLOP/s at 60%. */
	make_device(&dev, 1000, 100);
	make_model(&m, 500000000ull, 500000000ull, 2, 131072);
	hs__perf_init(&p, &dev, &m);
	/* 1e9 B / 800 B/ns + 20 us of launches. */
	assert_close(p.prior[HS_PERF_STEP], 1270000.0, 1e-12);
	/* 2 * 5e8 FLOP / 6e4 FLOP/ns. */
	assert_close(p.prior[HS_PERF_JOB], 16666.666666666667, 1e-12);
	/* 131072 B / 800 B/ns. */
	assert_close(p.prior[HS_PERF_CTX], 163.84, 1e-12);
	assert_close(p.prior[HS_PERF_PREFILL], 16830.506666666667, 1e-12);
	assert_memory_equal(p.theta, p.prior, sizeof(p.theta));
	/* One decoding job over 1000 context tokens. */
	assert_close(hs__perf_predict_ns(&p, 1, 1000, 0), 1450506.6666666667,
		     1e-12);
	/* A 512-token prefill on top. */
	assert_close(hs__perf_predict_ns(&p, 1, 1000, 512),
		     1450506.6666666667 + 512 * 16830.506666666667, 1e-12);
	assert_int_equal(p.samples, 0);
	assert_true(hs__perf_mean_rel_error(&p) == 0.0);
}

static void test_prior_moe_and_missing_figures(void **state)
{
	hs_device_t dev;
	hs_model_t m;
	hs__perf_t p;

	/* A step reads the 13e9 active parameters, not all 47e9. */
	make_device(&dev, 1000, 100);
	make_model(&m, 47000000000ull, 13000000000ull, 2, 131072);
	hs__perf_init(&p, &dev, &m);
	assert_close(p.prior[HS_PERF_STEP], 26e9 / 800 + 20000, 1e-12);
	assert_close(p.prior[HS_PERF_JOB], 26e9 / 6e4, 1e-12);

	/* Unknown bandwidth and FLOP/s: 1 GB/s and 0.01 TFLOP/s. */
	make_device(&dev, 0, 0);
	make_model(&m, 500000000ull, 0, 2, 131072);
	hs__perf_init(&p, &dev, &m);
	assert_close(p.prior[HS_PERF_STEP], 1e9 / 0.8 + 20000, 1e-12);
	assert_close(p.prior[HS_PERF_JOB], 1e9 / 6.0, 1e-12);
	assert_close(p.prior[HS_PERF_CTX], 131072 / 0.8, 1e-12);

	/* Nonsense figures are unknown ones; a model without dtype or
	 * weight bytes is taken as 16-bit. */
	make_device(&dev, NAN, -5);
	make_model(&m, 500000000ull, 0, 0, 131072);
	m.weight_bytes = 0;
	hs__perf_init(&p, &dev, &m);
	assert_close(p.prior[HS_PERF_STEP], 1e9 / 0.8 + 20000, 1e-12);
	assert_close(p.prior[HS_PERF_JOB], 1e9 / 6.0, 1e-12);
	assert_true(isfinite(hs__perf_predict_ns(&p, 64, 1e6, 4096)));
}

static void test_fit_recovers_law(void **state)
{
	double err20, err150, first, last, truth[HS_PERF_NFEAT];
	hs__perf_t p;
	int i;

	big_pair(&p);
	rng_seed(42);
	assert_int_equal(feed(&p, &big_law, &wide, 1, 20), 20);
	err20 = p.rel_err_sum;
	assert_int_equal(feed(&p, &big_law, &wide, 1, 130), 130);
	err150 = p.rel_err_sum;
	assert_int_equal(feed(&p, &big_law, &wide, 1, 50), 50);
	assert_int_equal(p.samples, 200);
	assert_int_equal(p.outliers, 0);

	hs__perf_predict_ns(&p, 1, 1, 1);
	truth[HS_PERF_STEP] = big_law.a;
	truth[HS_PERF_JOB] = big_law.b;
	truth[HS_PERF_CTX] = big_law.c;
	truth[HS_PERF_PREFILL] = big_law.d;
	for (i = 0; i < HS_PERF_NFEAT; i++)
		assert_close(p.theta[i], truth[i], 0.05);
	assert_true(worst_error(&p, &big_law, &wide, 1, 200) < 0.03);

	first = err20 / 20;
	last = (p.rel_err_sum - err150) / 50;
	print_message("mean relative error: first 20 %.4f, last 50 %.4f, "
		      "all %.4f\n",
		      first, last, hs__perf_mean_rel_error(&p));
	assert_true(first > last);
	assert_true(last < 0.03);
	assert_close(hs__perf_mean_rel_error(&p), p.rel_err_sum / 200, 1e-12);
}

static void test_outlier_rejected(void **state)
{
	double before[3], pred;
	hs__perf_t p;
	int i;

	small_pair(&p);
	rng_seed(7);
	assert_int_equal(feed(&p, &small_law, &small, 1, 20), 20);
	pred = hs__perf_predict_ns(&p, 4, 2000, 0);
	assert_true(pred > 0.5e6 && pred < 2e6);
	for (i = 0; i < 3; i++)
		before[i] = hs__perf_predict_ns(&p, 1 + 5 * i, 1000 + 3000 * i,
						100 * i);

	/* A 100 ms step where 1 ms was due, then one 10x too fast. */
	assert_false(hs__perf_observe(&p, 4, 2000, 0, 100e6));
	assert_false(hs__perf_observe(&p, 4, 2000, 0, pred / 10));
	assert_int_equal(p.outliers, 2);
	assert_int_equal(p.samples, 20);
	assert_int_equal(p.consecutive_outliers, 2);
	for (i = 0; i < 3; i++)
		assert_close(hs__perf_predict_ns(&p, 1 + 5 * i, 1000 + 3000 * i,
						 100 * i),
			     before[i], 0.01);
	/* Their misprediction is part of the reported error. */
	assert_true(hs__perf_mean_rel_error(&p) > 0.99 * 2 / 22);

	/* Twice as slow is within the factor of 4: a real sample. */
	assert_true(hs__perf_observe(&p, 4, 2000, 0, 2 * pred));
	assert_int_equal(p.samples, 21);
	assert_int_equal(p.consecutive_outliers, 0);
	assert_true(hs__perf_predict_ns(&p, 4, 2000, 0) > pred);

	/* Before the warm-up, nothing is an outlier. */
	small_pair(&p);
	assert_int_equal(feed(&p, &small_law, &small, 1, 3), 3);
	assert_true(hs__perf_observe(&p, 4, 2000, 0, 100e6));
	assert_int_equal(p.outliers, 0);
}

/*
 * A run's decode steps taken at once (hs__perf_observe_decode) against the
 * same steps one call each: the same outliers, resets and fit, here when
 * the device turns six times slower in the middle of a warm fit (the run's
 * first sixteen judged by the fit before it, the rest one at a time after
 * the reset), and on a run of ordinary noisy steps.
 */
static void test_decode_run(void **state)
{
	hs__perf_t p, q;
	int64_t ns[255];
	double B = 8, C = 9000, c, base;
	uint32_t i, out, out_seq;
	int slow;

	small_pair(&p);
	for (i = 0; i < 100; i++)
		hs__perf_observe(&p, B, 8000 + 8.0 * i, 0,
				 hs__perf_predict_ns(&p, B, 8000 + 8.0 * i, 0));
	for (slow = 0; slow < 2; slow++) {
		q = p;
		base = hs__perf_predict_ns(&p, B, C, 0);
		rng_seed(21 + (unsigned)slow);
		for (i = 0; i < 255; i++)
			ns[i] = (int64_t)((slow ? 6 : 1) * base *
					  (1 + uniform(-0.05, 0.05)));
		out = hs__perf_observe_decode(&p, B, C, B, ns, 255, 1.0);
		for (i = 0, c = C, out_seq = 0; i < 255; i++, c += B)
			out_seq +=
				!hs__perf_observe(&q, B, c, 0, (double)ns[i]);
		assert_int_equal(out, out_seq);
		assert_int_equal(p.outliers, q.outliers);
		assert_int_equal(p.resets, q.resets);
		assert_int_equal(p.samples, q.samples);
		assert_int_equal(p.rel_err_n, q.rel_err_n);
		assert_true(fabs(hs__perf_predict_ns(&p, B, C, 0) /
					 hs__perf_predict_ns(&q, B, C, 0) -
				 1) < 1e-3);
		assert_int_equal(p.resets, slow ? 1 : 0);
		if (slow)
			assert_int_equal(out, 15);
	}
}

/*
 * Runs of a warm fit, which hs__perf_observe_decode takes four steps at a
 * time, against the same steps one call each. The fit has so many samples
 * that no call refits it within a run, so both judge every step by the
 * same fit and must agree on every count and decision, and on the sums to
 * rounding. Runs of every length up to ten blocks and three, of ordinary
 * steps; with outliers inside a block of four and in the steps past the
 * last four; with a step slow enough to be looked at closely but no
 * outlier; with a step measured 0 ns; and with a device that turns six
 * times slower after the third step (a reset inside the run, then one by
 * one).
 */
static void test_decode_fast_path(void **state)
{
	hs__perf_t warm, p, q;
	int64_t ns[43];
	double B = 8, C = 9000, c, f;
	uint32_t n, i, out, out_seq;
	int kind, k, resets = 0, outliers = 0;

	small_pair(&warm);
	rng_seed(41);
	for (i = 0; i < 2000; i++) {
		c = uniform_int(8000, 12000);
		hs__perf_observe(&warm, B, c, 0,
				 noisy(law_ns(&small_law, B, c, 0)));
	}
	/* 43 steps pending do not call for a refit at 2000 samples. */
	hs__perf_refit(&warm);
	assert_true(43 * HS_PERF_REFIT_FRACTION < warm.samples);
	for (kind = 0; kind < 5; kind++) {
		for (n = 1; n <= 43; n++) {
			for (i = 0, c = C; i < n; i++, c += B) {
				f = kind == 4 && i >= 3 ? 6 : 1;
				ns[i] = (int64_t)noisy(
					f *
					hs__perf_predict_ns(&warm, B, c, 0));
			}
			if (kind == 1) {
				/* The same step below 3: no outlier. */
				ns[n / 2] *= 6;
				ns[n - 1] /= 6;
			} else if (kind == 2) {
				ns[n / 2] = ns[n / 2] * 7 / 2;
			} else if (kind == 3) {
				ns[n - 1] = 0;
			}
			p = warm;
			q = warm;
			out = hs__perf_observe_decode(&p, B, C, B, ns, n, 1.0);
			for (i = 0, c = C, out_seq = 0; i < n; i++, c += B)
				out_seq += !hs__perf_observe(
					&q, B, c, 0,
					(double)(ns[i] > 1 ? ns[i] : 1));
			assert_int_equal(out, out_seq);
			assert_int_equal(p.outliers, q.outliers);
			assert_int_equal(p.resets, q.resets);
			assert_int_equal(p.samples, q.samples);
			assert_int_equal(p.rel_err_n, q.rel_err_n);
			assert_int_equal(p.cal_err_n, q.cal_err_n);
			assert_int_equal(p.consecutive_outliers,
					 q.consecutive_outliers);
			assert_int_equal(p.pending, q.pending);
			assert_int_equal(p.dirty, q.dirty);
			assert_close(p.rel_err_sum, q.rel_err_sum, 1e-12);
			assert_close(p.cal_err_sum, q.cal_err_sum, 1e-12);
			for (k = 0; k < HS_PERF_NFEAT * HS_PERF_NFEAT; k++)
				assert_close(p.xtx[k], q.xtx[k], 1e-12);
			for (k = 0; k < HS_PERF_NFEAT; k++)
				assert_close(p.xty[k], q.xty[k], 1e-12);
			hs__perf_refit(&p);
			hs__perf_refit(&q);
			for (k = 0; k < HS_PERF_NFEAT; k++)
				assert_close(p.theta[k], q.theta[k], 1e-9);
			/* What each kind of run is for. */
			if (kind == 0 || kind == 2)
				assert_int_equal(out, 0);
			if (kind == 1)
				assert_int_equal(out, n < 3 ? 0 : 2);
			if (kind == 3)
				assert_int_equal(out, 1);
			if (kind == 4)
				assert_int_equal(p.resets,
						 n >= 3 + HS_PERF_RESET_RUN);
			resets += (int)p.resets;
			outliers += (int)out;
		}
	}
	assert_true(resets > 20);
	assert_true(outliers > 400);
}

/*
 * A tiny model on a CPU: prompts of tens of tokens that cost far more per
 * token than the roofline says, contexts of hundreds. The prior weighs as
 * one sample at the magnitudes the samples have, not at those of a big
 * model's batches: after a few dozen steps the prefills' cost is on the
 * prefill coefficient, and decode steps are predicted right.
 */
static void test_small_features(void **state)
{
	const law_t law = {2.0e6, 0, 2000, 800000};
	double err = 0;
	hs__perf_t p;
	int i;

	small_pair(&p);
	rng_seed(31);
	for (i = 0; i < 60; i++) {
		double C = uniform(50, 300),
		       P = i % 6 ? 0 : uniform_int(20, 80);

		hs__perf_observe(&p, 1, C + P, P,
				 noisy(law_ns(&law, 1, C + P, P)));
	}
	for (i = 0; i < 100; i++) {
		double C = uniform(50, 300);

		err += fabs(hs__perf_predict_ns(&p, 1, C, 0) -
			    law_ns(&law, 1, C, 0)) /
		       law_ns(&law, 1, C, 0);
	}
	print_message("decode error after 60 steps: %.3f\n", err / 100);
	assert_true(err / 100 < 0.1);
	/* And a prefill of 50 tokens. */
	assert_close(hs__perf_predict_ns(&p, 1, 250, 50),
		     law_ns(&law, 1, 250, 50), 0.1);
}

static void test_regime_change(void **state)
{
	hs__perf_t p;

	small_pair(&p);
	rng_seed(11);
	assert_int_equal(feed(&p, &small_law, &small, 1, 50), 50);
	/* The device now runs 10x slower: 15 outliers, then a reset. */
	assert_int_equal(feed(&p, &small_law, &small, 10, 15), 0);
	assert_int_equal(p.outliers, 15);
	assert_int_equal(p.resets, 0);
	assert_int_equal(feed(&p, &small_law, &small, 10, 1), 1);
	assert_int_equal(p.resets, 1);
	assert_int_equal(p.samples, 1);
	assert_int_equal(p.consecutive_outliers, 0);
	/* The fit now follows the new law. */
	assert_int_equal(feed(&p, &small_law, &small, 10, 200), 200);
	assert_int_equal(p.resets, 1);
	assert_true(worst_error(&p, &small_law, &small, 10, 200) < 0.05);

	/* A good sample inside the run breaks it: no reset. */
	small_pair(&p);
	rng_seed(12);
	assert_int_equal(feed(&p, &small_law, &small, 1, 50), 50);
	assert_int_equal(feed(&p, &small_law, &small, 10, 15), 0);
	assert_int_equal(feed(&p, &small_law, &small, 1, 1), 1);
	assert_int_equal(feed(&p, &small_law, &small, 10, 15), 0);
	assert_int_equal(p.resets, 0);
	assert_int_equal(p.outliers, 30);
	assert_true(worst_error(&p, &small_law, &small, 1, 200) < 0.05);
}

static void test_degenerate_design(void **state)
{
	double prior_pred, meas;
	hs__perf_t p;
	int i;

	/* One shape only: four unknowns, one direction of data. */
	big_pair(&p);
	prior_pred = hs__perf_predict_ns(&p, 1, 4096, 0);
	meas = 3 * prior_pred;
	for (i = 0; i < 200; i++)
		assert_true(hs__perf_observe(&p, 1, 4096, 0, meas));
	hs__perf_predict_ns(&p, 1, 4096, 0);
	for (i = 0; i < HS_PERF_NFEAT; i++)
		assert_true(isfinite(p.theta[i]) && p.theta[i] >= 0);
	assert_close(hs__perf_predict_ns(&p, 1, 4096, 0), meas, 0.01);
	/* No data on prefill: that coefficient is the prior's. */
	assert_close(p.theta[HS_PERF_PREFILL], p.prior[HS_PERF_PREFILL], 1e-9);
	/* Far from the data, still finite and positive. */
	assert_true(isfinite(hs__perf_predict_ns(&p, 64, 1e6, 4096)));
	assert_true(hs__perf_predict_ns(&p, 64, 1e6, 4096) > meas);
	assert_true(hs__perf_predict_ns(&p, 0, 0, 0) >= HS_PERF_MIN_NS);
}

static void test_negative_coefficient_pinned(void **state)
{
	/* Steps that get faster with context: the fit wants c < 0. */
	static const law_t odd = {30e6, 500000, -200, 12000};
	double B, C, P, sum = 0;
	hs__perf_t p;
	int i;

	big_pair(&p);
	rng_seed(5);
	assert_int_equal(feed(&p, &odd, &wide, 1, 200), 200);
	hs__perf_predict_ns(&p, 1, 1, 1);
	assert_true(p.theta[HS_PERF_CTX] == 0.0);
	for (i = 0; i < HS_PERF_NFEAT; i++)
		assert_true(isfinite(p.theta[i]) && p.theta[i] >= 0);
	/* The others were re-solved without it, not left at the prior:
	 * the intercept absorbs the mean context cost. */
	assert_true(p.theta[HS_PERF_STEP] > 20e6 &&
		    p.theta[HS_PERF_STEP] < 30e6);
	assert_close(p.theta[HS_PERF_JOB], odd.b, 0.25);
	for (i = 0; i < 200; i++) {
		draw(&wide, &B, &C, &P);
		sum += fabs(hs__perf_predict_ns(&p, B, C, P) -
			    law_ns(&odd, B, C, P)) /
		       law_ns(&odd, B, C, P);
	}
	assert_true(sum / 200 < 0.15);
	assert_true(hs__perf_predict_ns(&p, 0, 1e9, 0) >= HS_PERF_MIN_NS);
}

static void test_invalid_observations(void **state)
{
	hs__perf_t p, before;

	small_pair(&p);
	memcpy(&before, &p, sizeof(p));
	assert_false(hs__perf_observe(&p, NAN, 100, 0, 1e6));
	assert_false(hs__perf_observe(&p, 1, -1, 0, 1e6));
	assert_false(hs__perf_observe(&p, 1, 100, INFINITY, 1e6));
	assert_false(hs__perf_observe(&p, 1, 100, 0, 0));
	assert_false(hs__perf_observe(&p, 1, 100, 0, -1e6));
	assert_false(hs__perf_observe(&p, 1, 100, 0, NAN));
	assert_memory_equal(&p, &before, sizeof(p));
	/* NaN features cannot make a NaN prediction. */
	assert_true(hs__perf_predict_ns(&p, NAN, 1, 1) == HS_PERF_MIN_NS);
}

static void test_solve_fallback(void **state)
{
	double want;
	hs__perf_t p;

	/* Sums no samples can give (X'X indefinite): back to the prior. */
	big_pair(&p);
	want = hs__perf_predict_ns(&p, 8, 8192, 512);
	p.xtx[0 * HS_PERF_NFEAT + 1] = 1e9;
	p.xtx[1 * HS_PERF_NFEAT + 0] = 1e9;
	p.xty[0] = 5e12;
	p.dirty = true;
	assert_true(hs__perf_predict_ns(&p, 8, 8192, 512) == want);
	assert_memory_equal(p.theta, p.prior, sizeof(p.theta));
}

static void test_prediction_floor(void **state)
{
	/* A hand-written entry whose fit says steps are free. */
	static const char text[] =
		"{\"prior\": [0, 0, 0, 0], \"theta\": [0, 0, 0, 0],"
		" \"xtx\": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],"
		" \"xty\": [0, 0, 0, 0], \"samples\": 0, \"outliers\": 0,"
		" \"rel_err_sum\": 0, \"rel_err_n\": 0}";
	hs_error_t err = {0};
	hs__jv_t jv = {"perf.json", &err, "$"};
	hs__perf_t p;
	json_t *obj;

	obj = hs__json_loads(text, "perf.json", &err);
	assert_non_null(obj);
	big_pair(&p);
	assert_int_equal(hs__perf_from_json(&p, &jv, obj), 0);
	json_decref(obj);
	assert_true(hs__perf_predict_ns(&p, 1, 100, 0) == HS_PERF_MIN_NS);
	assert_true(hs__perf_predict_ns(&p, 64, 1e6, 4096) == HS_PERF_MIN_NS);
	assert_true(hs__perf_mean_rel_error(&p) == 0.0);
}

/* A trained model and its JSON text. */
static char *trained_json(hs__perf_t *p)
{
	json_t *obj;
	char *text;

	big_pair(p);
	rng_seed(99);
	feed(p, &big_law, &wide, 1, 100);
	/* Two outliers, then leave a sample unfitted: to_json must solve. */
	hs__perf_observe(p, 4, 2000, 0, 1e12);
	hs__perf_observe(p, 4, 2000, 0, 1e3);
	feed(p, &big_law, &wide, 1, 1);
	assert_true(p->dirty || p->pending);
	obj = hs__perf_to_json(p);
	assert_non_null(obj);
	text = json_dumps(obj, JSON_COMPACT);
	assert_non_null(text);
	json_decref(obj);
	return text;
}

static void test_json_roundtrip(void **state)
{
	hs__perf_t p, q, r;
	hs_error_t err = {0};
	hs__jv_t jv = {"perf.json", &err, "$"};
	double B, C, P, meas;
	json_t *obj, *theta;
	char *text;
	size_t i;

	text = trained_json(&p);
	obj = hs__json_loads(text, "perf.json", &err);
	assert_non_null(obj);
	/* The theta written is the fit of every sample: what predictions
	 * use once the model is refitted. */
	hs__perf_refit(&p);
	theta = json_object_get(obj, "theta");
	for (i = 0; i < HS_PERF_NFEAT; i++)
		assert_true(json_real_value(json_array_get(theta, i)) ==
			    p.theta[i]);

	/* Loaded over a model of another device: all of it replaced. */
	small_pair(&q);
	assert_int_equal(hs__perf_from_json(&q, &jv, obj), 0);
	assert_int_equal(err.code, 0);
	assert_int_equal(q.samples, 101);
	assert_int_equal(q.outliers, 2);
	assert_int_equal(q.rel_err_n, 103);
	assert_true(q.rel_err_sum == p.rel_err_sum);
	assert_memory_equal(q.prior, p.prior, sizeof(q.prior));
	assert_memory_equal(q.xtx, p.xtx, sizeof(q.xtx));
	rng_seed(3);
	for (i = 0; i < 50; i++) {
		draw(&wide, &B, &C, &P);
		assert_true(hs__perf_predict_ns(&q, B, C, P) ==
			    hs__perf_predict_ns(&p, B, C, P));
	}
	/* And both go on alike. */
	for (i = 0; i < 20; i++) {
		draw(&wide, &B, &C, &P);
		meas = noisy(law_ns(&big_law, B, C, P));
		assert_int_equal(hs__perf_observe(&q, B, C, P, meas),
				 hs__perf_observe(&p, B, C, P, meas));
	}
	assert_true(hs__perf_predict_ns(&q, 3, 3000, 300) ==
		    hs__perf_predict_ns(&p, 3, 3000, 300));
	assert_true(hs__perf_mean_rel_error(&q) == hs__perf_mean_rel_error(&p));

	/* "resets" may be absent (0). */
	json_object_del(obj, "resets");
	assert_int_equal(hs__perf_from_json(&r, &jv, obj), 0);
	assert_int_equal(r.resets, 0);
	json_decref(obj);
	free(text);
}

struct bad_case {
	const char *del; /* key to remove, or NULL */
	const char *merge; /* object whose keys replace the good ones */
	const char *whole; /* replaces the whole object */
	int code;
	const char *want; /* in the formatted error */
};

static const struct bad_case bad_cases[] = {
	{"xty", NULL, NULL, HS_EMISSING,
	 "$.entries[2]: missing required key \"xty\""},
	{"samples", NULL, NULL, HS_EMISSING,
	 "$.entries[2]: missing required key \"samples\""},
	{NULL, NULL, "[1, 2]", HS_ETYPE, "$.entries[2]: expected an object"},
	{NULL, "{\"thetas\": [1, 2, 3, 4]}", NULL, HS_EUNKNOWN_KEY,
	 "$.entries[2]: unknown key \"thetas\""},
	{NULL, "{\"theta\": [1, 2, 3]}", NULL, HS_ETYPE,
	 "$.entries[2].theta: expected an array of 4 numbers"},
	{NULL, "{\"theta\": \"1 2 3 4\"}", NULL, HS_ETYPE,
	 "$.entries[2].theta: expected an array of 4 numbers"},
	{NULL, "{\"xtx\": [1, 2, 3, 4]}", NULL, HS_ETYPE,
	 "$.entries[2].xtx: expected an array of 16 numbers"},
	{NULL, "{\"prior\": [1, \"2\", 3, 4]}", NULL, HS_ETYPE,
	 "$.entries[2].prior[1]: expected a number"},
	{NULL, "{\"xty\": [-1, 2, 3, 4]}", NULL, HS_ERANGE,
	 "$.entries[2].xty[0]: expected a number >= 0"},
	{NULL, "{\"samples\": \"101\"}", NULL, HS_ETYPE,
	 "$.entries[2].samples: expected an integer"},
	{NULL, "{\"samples\": -3}", NULL, HS_ERANGE,
	 "$.entries[2].samples: -3 is out of range"},
	{NULL, "{\"outliers\": 1.5}", NULL, HS_ETYPE,
	 "$.entries[2].outliers: expected an integer"},
	{NULL, "{\"rel_err_sum\": \"0.5\"}", NULL, HS_ETYPE,
	 "$.entries[2].rel_err_sum: expected a number"},
	{NULL, "{\"rel_err_sum\": -0.5}", NULL, HS_ERANGE,
	 "$.entries[2].rel_err_sum: -0.5 is out of range"},
	{NULL, "{\"rel_err_n\": 0, \"rel_err_sum\": 0.5}", NULL, HS_EINVAL,
	 "$.entries[2].rel_err_sum: 0.5 with rel_err_n 0"},
	{NULL,
	 "{\"samples\": 3, \"xtx\": [3, 5, 0, 0, 6, 9, 0, 0,"
	 " 0, 0, 0, 0, 0, 0, 0, 0]}",
	 NULL, HS_EINVAL, "$.entries[2].xtx: not symmetric at [1][0]"},
	{NULL,
	 "{\"samples\": 3, \"xtx\": [4, 0, 0, 0, 0, 0, 0, 0,"
	 " 0, 0, 0, 0, 0, 0, 0, 0]}",
	 NULL, HS_EINVAL,
	 "$.entries[2].xtx: first element 4 does not match samples 3"},
	{NULL,
	 "{\"samples\": 3, \"xtx\": [3, 1e9, 0, 0, 1e9, 0, 0, 0,"
	 " 0, 0, 0, 0, 0, 0, 0, 0]}",
	 NULL, HS_EINVAL, "$.entries[2].xtx: not the sums of any set"},
};

static void test_json_errors(void **state)
{
	hs__perf_t p, q, before;
	char *text, msg[512];
	json_t *good, *obj, *merge;
	size_t i;

	text = trained_json(&p);
	good = json_loads(text, 0, NULL);
	assert_non_null(good);
	small_pair(&q);
	hs__perf_predict_ns(&q, 1, 1, 1);
	memcpy(&before, &q, sizeof(q));
	for (i = 0; i < HS_ARRAY_SIZE(bad_cases); i++) {
		const struct bad_case *bc = &bad_cases[i];
		hs_error_t err = {0};
		hs__jv_t jv = {"perf.json", &err, "$.entries[2]"};
		int rc;

		if (bc->whole) {
			obj = json_loads(bc->whole, 0, NULL);
		} else {
			obj = json_deep_copy(good);
			if (bc->del)
				assert_int_equal(json_object_del(obj, bc->del),
						 0);
			if (bc->merge) {
				merge = json_loads(bc->merge, 0, NULL);
				assert_non_null(merge);
				assert_int_equal(json_object_update(obj, merge),
						 0);
				json_decref(merge);
			}
		}
		assert_non_null(obj);
		rc = hs__perf_from_json(&q, &jv, obj);
		hs_error_format(&err, msg, sizeof(msg));
		if (rc != bc->code || !strstr(msg, bc->want) ||
		    strncmp(msg, "perf.json: ", 11))
			fail_msg("case %zu: got %s \"%s\", want %s \"%s\"", i,
				 hs_err_name(rc), msg, hs_err_name(bc->code),
				 bc->want);
		assert_memory_equal(&q, &before, sizeof(q));
		json_decref(obj);
	}
	json_decref(good);
	free(text);
}

static void test_json_alloc_failures(void **state)
{
	json_t *obj = NULL;
	hs__perf_t p;
	long n;

	big_pair(&p);
	rng_seed(1);
	feed(&p, &big_law, &wide, 1, 10);
	for (n = 0;; n++) {
		hs_test_alloc_install(n);
		obj = hs__perf_to_json(&p);
		json_decref(obj);
		assert_int_equal(hs_test_alloc_live(), 0);
		hs_test_alloc_uninstall();
		if (obj)
			break;
	}
	/* An object, nine keys, four arrays of 32 reals at the least. */
	assert_true(n > 40);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prior_roofline),
		cmocka_unit_test(test_prior_moe_and_missing_figures),
		cmocka_unit_test(test_fit_recovers_law),
		cmocka_unit_test(test_outlier_rejected),
		cmocka_unit_test(test_small_features),
		cmocka_unit_test(test_regime_change),
		cmocka_unit_test(test_decode_run),
		cmocka_unit_test(test_decode_fast_path),
		cmocka_unit_test(test_degenerate_design),
		cmocka_unit_test(test_negative_coefficient_pinned),
		cmocka_unit_test(test_invalid_observations),
		cmocka_unit_test(test_solve_fallback),
		cmocka_unit_test(test_prediction_floor),
		cmocka_unit_test(test_json_roundtrip),
		cmocka_unit_test(test_json_errors),
		cmocka_unit_test(test_json_alloc_failures),
	};

	return cmocka_run_group_tests_name("perf", tests, NULL, NULL);
}
