/*
 * The real executors (cpu, opencl) on tiny-test: the OpenCL logits against
 * the CPU reference, batch invariance of greedy decoding, KV-cache slot
 * reuse, build errors with their log, injected faults, and the core
 * requeueing a failed device's jobs onto another without losing one.
 *
 * POCL_DEVICES="pthread basic" gives two OpenCL devices on any machine;
 * the ICD loader reads it once, so main() sets it before anything else.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "executor.h"
#include "internal.h"
#include "llm.h"
#include "testutil.h"

#define MAX_JOBS 256
#define MAX_TOKENS 512

/* tiny-test as in data/models.json, and a shape that does not run here. */
static const char catalog_json[] =
	"{\"version\": 1, \"models\": ["
	"{\"name\": \"tiny-test\", \"layers\": 2, \"d_model\": 64,"
	" \"n_heads\": 4, \"n_kv_heads\": 2, \"d_ff\": 128, \"vocab\": 256,"
	" \"max_context\": 512, \"dtype_bytes\": 4, \"kv_dtype_bytes\": 2,"
	" \"runnable\": true, \"seed\": 1},"
	"{\"name\": \"shape-only\", \"layers\": 4, \"d_model\": 256,"
	" \"n_heads\": 4, \"n_kv_heads\": 4, \"d_ff\": 512, \"vocab\": 1000,"
	" \"max_context\": 4096}]}";

static hs_model_catalog_t *models;
static hs_profile_catalog_t *profiles;
static hs_node_t *node;
static const hs_device_t *cpu_dev, *pthread_dev, *basic_dev;

/* ------------------------------------------------------------------------ */
/* A driver for one executor: jobs' tokens in and out                       */
/* ------------------------------------------------------------------------ */

struct tjob {
	uint64_t id;
	uint32_t n_prompt;
	uint32_t n_gen;
	uint32_t toks[MAX_TOKENS]; /* prompt, then what was generated */
};

struct driver {
	struct tjob jobs[MAX_JOBS];
	size_t n;
	hs_executor_io_t io;
};

static struct tjob *tjob_find(struct driver *d, uint64_t id)
{
	size_t i;

	for (i = 0; i < d->n; i++)
		if (d->jobs[i].id == id)
			return &d->jobs[i];
	return NULL;
}

static int io_prompt(void *ud, uint64_t id, const uint32_t **tokens,
		     uint32_t *n)
{
	struct tjob *j = tjob_find(ud, id);

	if (!j)
		return HS_ENOENT;
	*tokens = j->toks;
	*n = j->n_prompt + j->n_gen;
	return 0;
}

static void io_token(void *ud, uint64_t id, uint32_t token)
{
	struct tjob *j = tjob_find(ud, id);

	assert_non_null(j);
	assert_true(token < 256);
	assert_true(j->n_prompt + j->n_gen < MAX_TOKENS);
	j->toks[j->n_prompt + j->n_gen++] = token;
}

static void driver_init(struct driver *d)
{
	memset(d, 0, sizeof(*d));
	d->io.prompt = io_prompt;
	d->io.token = io_token;
	d->io.ud = d;
}

static struct tjob *driver_add(struct driver *d, uint64_t id, const char *text)
{
	struct tjob *j;

	assert_true(d->n < MAX_JOBS);
	j = &d->jobs[d->n++];
	memset(j, 0, sizeof(*j));
	j->id = id;
	j->n_prompt = (uint32_t)hs__tok_encode(text, j->toks, MAX_TOKENS);
	assert_true(j->n_prompt < MAX_TOKENS);
	return j;
}

/* The matmul tile and work-items open_exec asks the opencl executor for
 * (0: its own). */
static unsigned mm_tile, mm_items;

static void *open_exec(const struct hs_executor_ops *ops,
		       const hs_device_t *dev, struct driver *d,
		       uint64_t fail_after)
{
	hs_executor_opts_t opts = {0};
	void *ex = NULL;

	opts.io = &d->io;
	opts.mm_tile = mm_tile;
	opts.mm_items = mm_items;
	opts.fail_after_steps = fail_after;
	assert_int_equal(ops->open(&ex, dev, models, &opts), 0);
	assert_non_null(ex);
	return ex;
}

static int run(const struct hs_executor_ops *ops, void *ex, uint32_t model,
	       const uint64_t *ids, uint32_t n, uint32_t joining)
{
	hs_step_t st;
	int64_t ns = -1;
	double e = 0;
	int rc;

	memset(&st, 0, sizeof(st));
	st.model = model;
	st.batch = n;
	st.joining = joining;
	st.jobs = ids;
	rc = ops->run_step(ex, &st, &ns, &e);
	assert_true(ns >= 0);
	assert_true(e < 0);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Pieces                                                                   */
/* ------------------------------------------------------------------------ */

static void test_tokenizer(void **state)
{
	uint32_t ids[32];
	char buf[32];

	(void)state;
	assert_int_equal(hs__tok_encode("h\xc3\xa9!", ids, 32), 4);
	assert_int_equal(ids[0], 'h');
	assert_int_equal(ids[1], 0xc3);
	assert_int_equal(ids[3], '!');
	assert_int_equal(hs__tok_decode(ids, 4, buf, sizeof(buf)), 4);
	assert_string_equal(buf, "h\xc3\xa9!");
	/* Too small a buffer truncates; too many ids are counted. */
	assert_int_equal(hs__tok_decode(ids, 4, buf, 3), 2);
	assert_string_equal(buf, "h\xc3");
	assert_int_equal(hs__tok_encode("hello", ids, 2), 5);
	ids[0] = 300;
	assert_int_equal(hs__tok_decode(ids, 1, buf, sizeof(buf)), 1);
	assert_string_equal(buf, "?");
}

/*
 * The KV cache's FP16: every half converts to a float and back to itself;
 * the midpoint between two neighbours rounds to the even one and anything
 * off it to the nearer one; out of range is inf; NaN stays NaN.
 */
static void test_kv_half(void **state)
{
	static const struct {
		float f;
		hs__kv_t h;
	} known[] = {
		{0.0f, 0x0000},		  {-0.0f, 0x8000},
		{1.0f, 0x3c00},		  {-2.0f, 0xc000},
		{0.5f, 0x3800},		  {65504.0f, 0x7bff},
		{65519.99f, 0x7bff},	  {65520.0f, 0x7c00},
		{1e10f, 0x7c00},	  {-1e10f, 0xfc00},
		{0x1p-14f, 0x0400},	  {0x1p-24f, 0x0001},
		{0x1p-25f, 0x0000},	  {0x3p-25f, 0x0002},
		{0x1.8p-24f, 0x0002},	  {0x1p-26f, 0x0000},
		{1.0009765625f, 0x3c01}, /* 1 + 2^-10 */
		{1.00048828125f, 0x3c00}, /* 1 + 2^-11: a tie, to even */
		{1.00146484375f, 0x3c02}, /* 1 + 3 * 2^-11: a tie, to even */
	};
	uint32_t h;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (hs__kv_from_float(known[i].f) != known[i].h)
			fail_msg("%a: got %#x, want %#x", (double)known[i].f,
				 hs__kv_from_float(known[i].f), known[i].h);
	assert_true(isinf(hs__kv_to_float(0x7c00)));
	assert_true(isnan(hs__kv_to_float(hs__kv_from_float(NAN))));
	assert_true(hs__kv_to_float(0x0001) == 0x1p-24f);
	assert_true(hs__kv_to_float(0x8003) == -0x3p-24f);
	assert_true(hs__kv_to_float(0x03ff) == 0x3ffp-24f);
	assert_true(hs__kv_to_float(0x3555) == 0x1.554p-2f);
	assert_true(hs__kv_to_float(0x8000) == 0.0f &&
		    signbit(hs__kv_to_float(0x8000)));

	for (h = 0; h < 0x10000; h++) {
		float f = hs__kv_to_float((hs__kv_t)h), g, mid;
		hs__kv_t even;

		if (isnan(f)) {
			assert_true(
				isnan(hs__kv_to_float(hs__kv_from_float(f))));
			continue;
		}
		if (hs__kv_from_float(f) != h)
			fail_msg("%#x -> %a -> %#x", h, (double)f,
				 hs__kv_from_float(f));
		/* Its neighbour away from zero, unless that is inf or NaN. */
		if ((h & 0x7fffu) >= 0x7bffu)
			continue;
		g = hs__kv_to_float((hs__kv_t)(h + 1));
		mid = (float)(((double)f + (double)g) / 2);
		even = (hs__kv_t)(h & 1 ? h + 1 : h);
		if (hs__kv_from_float(mid) != even)
			fail_msg("midpoint %a of %#x: got %#x", (double)mid, h,
				 hs__kv_from_float(mid));
		if (hs__kv_from_float(nextafterf(mid, f)) != h ||
		    hs__kv_from_float(nextafterf(mid, g)) != h + 1)
			fail_msg("beside the midpoint of %#x", h);
	}
}

/* The bulk conversions (F16C where the CPU has it) agree with the
 * portable ones on every half, on every midpoint between two halves and
 * its neighbours, and on floats of every exponent; they write n values,
 * not one more. */
static void test_kv_half_bulk(void **state)
{
	enum { N = 1 << 18, SENTINEL = 0x5a5a };
	float *f = test_malloc(N * sizeof(float)), *g;
	hs__kv_t *h = test_malloc(N * sizeof(hs__kv_t)), *k;
	uint64_t rng = 7;
	uint32_t i, n = 0;

	(void)state;
	g = test_malloc(N * sizeof(float));
	k = test_malloc(N * sizeof(hs__kv_t));
	print_message("bulk FP16 conversions: %s\n",
		      hs__kv_f16c() ? "F16C" : "portable only");
	for (i = 0; i < 0x10000; i++)
		h[i] = (hs__kv_t)i;
	/* An odd count: the vector loop and its tail. */
	f[0x10000 - 3] = g[0x10000 - 3] = 42.0f;
	hs__kv_to_floats(f, h, 0x10000 - 3);
	hs__kv_to_floats_portable(g, h, 0x10000 - 3);
	assert_true(f[0x10000 - 3] == 42.0f && g[0x10000 - 3] == 42.0f);
	for (i = 0; i < 0x10000 - 3; i++)
		if (!(isnan(f[i]) && isnan(g[i]) &&
		      signbit(f[i]) == signbit(g[i])) &&
		    memcmp(&f[i], &g[i], sizeof(float)))
			fail_msg("half %#x: %a and %a", i, (double)f[i],
				 (double)g[i]);

	/* Midpoints between neighbours, and the floats either side. */
	for (i = 0; i < 0x10000 && n + 3 <= N / 2; i++) {
		float lo = hs__kv_to_float((hs__kv_t)i), hi, mid;

		if ((i & 0x7fffu) >= 0x7bffu)
			continue;
		hi = hs__kv_to_float((hs__kv_t)(i + 1));
		mid = (float)(((double)lo + (double)hi) / 2);
		f[n++] = mid;
		f[n++] = nextafterf(mid, lo);
		f[n++] = nextafterf(mid, hi);
	}
	/* Random bit patterns: every exponent, NaN and inf included. */
	for (; n < N - 5; n++) {
		union {
			uint32_t u;
			float f;
		} x;

		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		x.u = (uint32_t)(rng >> 32);
		f[n] = x.f;
	}
	h[n] = k[n] = SENTINEL;
	hs__kv_from_floats(h, f, n);
	hs__kv_from_floats_portable(k, f, n);
	assert_int_equal(h[n], SENTINEL);
	assert_int_equal(k[n], SENTINEL);
	for (i = 0; i < n; i++)
		if (h[i] != k[i] && !(isnan(hs__kv_to_float(h[i])) &&
				      isnan(hs__kv_to_float(k[i])) &&
				      (h[i] & 0x8000) == (k[i] & 0x8000)))
			fail_msg("%a: %#x and %#x", (double)f[i], h[i], k[i]);
	test_free(f);
	test_free(g);
	test_free(h);
	test_free(k);
}

static void test_weights_deterministic(void **state)
{
	const hs_model_t *m = hs_model_catalog_find(models, "tiny-test");
	hs__llm_weights_t *a, *b, *c;
	hs_model_t other;

	(void)state;
	assert_int_equal(hs__llm_weights_new(&a, m), 0);
	assert_int_equal(hs__llm_weights_new(&b, m), 0);
	assert_int_equal(a->n_floats, b->n_floats);
	assert_memory_equal(a->blob, b->blob, a->n_floats * sizeof(float));
	other = *m;
	other.seed++;
	assert_int_equal(hs__llm_weights_new(&c, &other), 0);
	assert_memory_not_equal(a->blob, c->blob, 64 * sizeof(float));
	/* The weight bytes a step reads are the catalog's, minus all but
	 * one embedding row. */
	assert_int_equal(hs__llm_weight_bytes_read(&a->shape),
			 m->weight_bytes -
				 (uint64_t)(m->vocab - 1) * m->d_model * 4);
	assert_int_equal(hs__llm_kv_bytes_per_token(&a->shape),
			 m->kv_bytes_per_token);
	hs__llm_weights_free(a);
	hs__llm_weights_free(b);
	hs__llm_weights_free(c);

	assert_int_equal(hs__llm_weights_new(&a, hs_model_catalog_find(
							 models, "shape-only")),
			 HS_EUNSUPP);
	assert_null(a);
}

/* ------------------------------------------------------------------------ */
/* (1) OpenCL logits against the CPU reference                              */
/* ------------------------------------------------------------------------ */

static double max_abs_diff(const float *a, const float *b, uint32_t n)
{
	double m = 0;
	uint32_t i;

	for (i = 0; i < n; i++)
		if (fabs((double)a[i] - b[i]) > m)
			m = fabs((double)a[i] - b[i]);
	return m;
}

static void check_logits_on(const hs_device_t *dev, uint32_t model)
{
	static struct driver dc, dg;
	/* The third is long enough that its prefill and decode cross
	 * attention blocks of both executors (16 and 64 positions). */
	static const char *const prompts[] = {
		"The quick brown fox",
		"hetsched",
		("A scheduler for LLM inference on mixed hardware batches "
		 "jobs by model and context length, step by step."),
	};
	uint64_t ids[3];
	void *cpu, *gpu;
	double worst = 0;
	uint32_t step, n, joining, j;

	assert_non_null(dev);
	driver_init(&dc);
	driver_init(&dg);
	for (j = 0; j < 3; j++) {
		driver_add(&dc, 10 + j, prompts[j]);
		driver_add(&dg, 10 + j, prompts[j]);
	}
	cpu = open_exec(&hs__executor_cpu, cpu_dev, &dc, 0);
	gpu = open_exec(&hs__executor_opencl, dev, &dg, 0);

	/* Jobs 10 and 11 join at once; 12 joins at step 5, prefilling
	 * while the others decode. 32 tokens for job 10, 28 for job 12. */
	for (step = 1; step <= 32; step++) {
		if (step == 1) {
			ids[0] = 10;
			ids[1] = 11;
			n = 2;
			joining = 2;
		} else if (step == 5) {
			ids[0] = 12;
			ids[1] = 10;
			ids[2] = 11;
			n = 3;
			joining = 1;
		} else {
			n = step < 5 ? 2 : 3;
			joining = 0;
		}
		assert_int_equal(
			run(&hs__executor_cpu, cpu, model, ids, n, joining), 0);
		assert_int_equal(
			run(&hs__executor_opencl, gpu, model, ids, n, joining),
			0);
		for (j = 0; j < n; j++) {
			const float *lc, *lg;
			uint32_t vc, vg;
			double diff;

			assert_int_equal(
				hs__executor_last_logits(cpu, ids[j], &lc, &vc),
				0);
			assert_int_equal(
				hs__executor_last_logits(gpu, ids[j], &lg, &vg),
				0);
			assert_int_equal(vc, 256);
			assert_int_equal(vg, 256);
			diff = max_abs_diff(lc, lg, 256);
			if (diff > worst)
				worst = diff;
			assert_true(diff < 1e-3);
		}
	}
	print_message("  %s, %s: max |logit difference| over 32 steps %.3g\n",
		      dev->name, hs_model_catalog_get(models, model)->name,
		      worst);
	for (j = 0; j < 3; j++) {
		assert_int_equal(dc.jobs[j].n_gen, dg.jobs[j].n_gen);
		assert_memory_equal(dc.jobs[j].toks, dg.jobs[j].toks,
				    (dc.jobs[j].n_prompt + dc.jobs[j].n_gen) *
					    sizeof(uint32_t));
	}
	assert_int_equal(dc.jobs[0].n_gen, 32);
	hs__executor_cpu.close(cpu);
	hs__executor_opencl.close(gpu);
}

static void test_logits_pthread(void **state)
{
	(void)state;
	check_logits_on(pthread_dev, 0);
}

static void test_logits_basic(void **state)
{
	(void)state;
	check_logits_on(basic_dev, 0);
}

/*
 * The attention kernel has a copy for each query-group size from 1 to 4
 * and a general one for larger groups: each against the CPU reference,
 * with head_dim 16 to 128 (tiny-test is G 2, head_dim 16). The catalog of
 * the other tests is put back by the teardown, even when a check fails.
 */
#define GROUP_MODEL(name, d, heads, kv)                                   \
	"{\"name\": \"" name "\", \"layers\": 1, \"d_model\": " #d        \
	", \"n_heads\": " #heads ", \"n_kv_heads\": " #kv                 \
	", \"d_ff\": 128, \"vocab\": 256, \"max_context\": 512,"          \
	" \"dtype_bytes\": 4, \"kv_dtype_bytes\": 2, \"runnable\": true," \
	" \"seed\": 3}"
/* One model per line. */
/* clang-format off */
static const char groups_json[] = "{\"version\": 1, \"models\": ["
	GROUP_MODEL("g1-hd32", 64, 2, 2) ","
	GROUP_MODEL("g2-hd48", 96, 2, 1) ","
	GROUP_MODEL("g3-hd64", 192, 3, 1) ","
	GROUP_MODEL("g4-hd16", 64, 4, 1) ","
	GROUP_MODEL("g5-hd16", 80, 5, 1) ","
	GROUP_MODEL("g8-hd128", 1024, 8, 1) "]}";
/* clang-format on */
#undef GROUP_MODEL
static hs_model_catalog_t *saved_models;

static int groups_setup(void **state)
{
	hs_error_t err = {0};
	hs_model_catalog_t *groups = NULL;

	(void)state;
	if (hs_model_catalog_parse(&groups, groups_json, "<groups>", &err))
		return -1;
	saved_models = models;
	models = groups;
	return 0;
}

static int groups_teardown(void **state)
{
	(void)state;
	hs_model_catalog_free(models);
	models = saved_models;
	return 0;
}

static void test_logits_groups(void **state)
{
	uint32_t m;

	(void)state;
	assert_int_equal(hs_model_catalog_count(models), 6);
	for (m = 0; m < hs_model_catalog_count(models); m++)
		check_logits_on(pthread_dev, m);
}

/* ------------------------------------------------------------------------ */
/* (2) A job's tokens are the same alone and in a batch of 16               */
/* ------------------------------------------------------------------------ */

#define WATCHED "Batching must not change what a job says."

static void decode_alone(const struct hs_executor_ops *ops,
			 const hs_device_t *dev, struct tjob *out)
{
	static struct driver d;
	uint64_t id = 7;
	void *ex;
	int i;

	driver_init(&d);
	driver_add(&d, id, WATCHED);
	ex = open_exec(ops, dev, &d, 0);
	assert_int_equal(run(ops, ex, 0, &id, 1, 1), 0);
	for (i = 1; i < 16; i++)
		assert_int_equal(run(ops, ex, 0, &id, 1, 0), 0);
	ops->close(ex);
	*out = d.jobs[0];
}

/* *out: the watched job; all (if not NULL): the 16 jobs. */
static void decode_batched(const struct hs_executor_ops *ops,
			   const hs_device_t *dev, struct tjob *out,
			   struct tjob *all)
{
	static struct driver d;
	uint64_t ids[16];
	char text[64];
	uint32_t i, n = 0;
	void *ex;
	int step;

	driver_init(&d);
	for (i = 0; i < 16; i++) {
		snprintf(text, sizeof(text), "job %u says %.*s", i, (int)i,
			 "abcdefghijklmnop");
		driver_add(&d, 100 + i, i == 12 ? WATCHED : text);
	}
	ex = open_exec(ops, dev, &d, 0);
	/* Ten join first; the other six (the watched job among them) join
	 * two steps later, while the ten decode. */
	for (i = 0; i < 10; i++)
		ids[n++] = 100 + i;
	assert_int_equal(run(ops, ex, 0, ids, n, n), 0);
	assert_int_equal(run(ops, ex, 0, ids, n, 0), 0);
	for (i = 0; i < 6; i++)
		ids[i] = 110 + i;
	for (i = 0; i < 10; i++)
		ids[6 + i] = 100 + i;
	n = 16;
	assert_int_equal(run(ops, ex, 0, ids, n, 6), 0);
	for (step = 1; step < 16; step++)
		assert_int_equal(run(ops, ex, 0, ids, n, 0), 0);
	ops->close(ex);
	*out = d.jobs[12];
	if (all)
		memcpy(all, d.jobs, 16 * sizeof(*all));
}

static void check_batch_invariance(const struct hs_executor_ops *ops,
				   const hs_device_t *dev)
{
	struct tjob alone, batched;
	char text[16 * 3 + 1];
	int i;

	assert_non_null(dev);
	decode_alone(ops, dev, &alone);
	decode_batched(ops, dev, &batched, NULL);
	assert_int_equal(alone.n_gen, 16);
	assert_int_equal(batched.n_gen, 16);
	assert_memory_equal(alone.toks, batched.toks,
			    (alone.n_prompt + 16) * sizeof(uint32_t));
	/* Synthetic weights say nothing readable: the ids, then. */
	for (i = 0; i < 16; i++)
		snprintf(text + 3 * i, 4, "%02x ",
			 alone.toks[alone.n_prompt + i]);
	print_message("  %s on %s: %s\n", ops->name, dev->name, text);
}

static void test_batch_invariance_cpu(void **state)
{
	(void)state;
	check_batch_invariance(&hs__executor_cpu, cpu_dev);
}

/*
 * Every matmul tile the kernels have (16 tokens for AVX-512 registers, 6
 * for AVX2, 3 for SSE), whichever this machine's device would pick, and
 * work-items taking uneven runs of panels (1: all of a matrix's; 3 and 7:
 * runs of several lengths, and work-items with none), whatever the
 * device's compute units: a token's outputs are the same fma chains in
 * any tile and any run, so every job of the batch says the same with
 * each, and the watched one what it says alone.
 */
static void test_batch_invariance_opencl(void **state)
{
	static const unsigned tiles[][2] = {
		{16, 0}, {6, 0}, {3, 0}, {0, 1}, {0, 3}, {3, 7},
	};
	static struct tjob ref[16], got[16];
	struct tjob alone, batched;
	size_t i, j;

	(void)state;
	check_batch_invariance(&hs__executor_opencl, pthread_dev);
	decode_alone(&hs__executor_opencl, pthread_dev, &alone);
	decode_batched(&hs__executor_opencl, pthread_dev, &batched, ref);
	for (i = 0; i < sizeof(tiles) / sizeof(tiles[0]); i++) {
		mm_tile = tiles[i][0];
		mm_items = tiles[i][1];
		decode_batched(&hs__executor_opencl, pthread_dev, &batched,
			       got);
		mm_tile = mm_items = 0;
		assert_memory_equal(alone.toks, batched.toks,
				    (alone.n_prompt + 16) * sizeof(uint32_t));
		for (j = 0; j < 16; j++) {
			assert_int_equal(got[j].n_gen, ref[j].n_gen);
			assert_memory_equal(got[j].toks, ref[j].toks,
					    (ref[j].n_prompt + ref[j].n_gen) *
						    sizeof(uint32_t));
		}
	}
}

/* A tile the kernels do not have is refused, not rounded. */
static void test_bad_tile_opencl(void **state)
{
	static struct driver d;
	hs_executor_opts_t opts = {0};
	void *ex = (void *)&opts;

	(void)state;
	assert_non_null(pthread_dev);
	driver_init(&d);
	opts.io = &d.io;
	opts.mm_tile = 5;
	assert_int_equal(
		hs__executor_opencl.open(&ex, pthread_dev, models, &opts),
		HS_EINVAL);
	assert_null(ex);
}

/*
 * The cpu executor's results do not depend on its thread count, nor on
 * which thread took which rows: three threads on this machine's two cores
 * are put aside by the OS mid-phase, and the others finish for them.
 */
static void test_cpu_threads(void **state)
{
	static struct driver d1, d3;
	hs_executor_opts_t opts = {0};
	uint64_t ids[8];
	char text[32];
	void *e1, *e3;
	int i;

	(void)state;
	driver_init(&d1);
	driver_init(&d3);
	for (i = 0; i < 8; i++) {
		ids[i] = 1 + (uint64_t)i;
		snprintf(text, sizeof(text), "thread test %d", i);
		driver_add(&d1, ids[i], text);
		driver_add(&d3, ids[i], text);
	}
	opts.io = &d1.io;
	opts.threads = 1;
	assert_int_equal(hs__executor_cpu.open(&e1, cpu_dev, models, &opts), 0);
	opts.io = &d3.io;
	opts.threads = 3;
	assert_int_equal(hs__executor_cpu.open(&e3, cpu_dev, models, &opts), 0);
	for (i = 0; i < 24; i++) {
		assert_int_equal(
			run(&hs__executor_cpu, e1, 0, ids, 8, i == 0 ? 8 : 0),
			0);
		assert_int_equal(
			run(&hs__executor_cpu, e3, 0, ids, 8, i == 0 ? 8 : 0),
			0);
	}
	for (i = 0; i < 8; i++) {
		assert_int_equal(d3.jobs[i].n_gen, 24);
		assert_memory_equal(d1.jobs[i].toks, d3.jobs[i].toks,
				    sizeof(d1.jobs[i].toks));
	}
	hs__executor_cpu.close(e1);
	hs__executor_cpu.close(e3);
}

/* ------------------------------------------------------------------------ */
/* (3) A finished job's KV cache is reused                                  */
/* ------------------------------------------------------------------------ */

static void check_kv_reuse(const struct hs_executor_ops *ops,
			   const hs_device_t *dev)
{
	static struct driver d;
	uint64_t ids[2];
	void *ex;
	uint32_t i;
	int s;

	assert_non_null(dev);
	driver_init(&d);
	for (i = 0; i < 200; i++)
		driver_add(&d, 1000 + i, i % 2 ? "odd job" : "even");
	ex = open_exec(ops, dev, &d, 0);

	/* 100 jobs one after the other, each released when done. */
	for (i = 0; i < 100; i++) {
		ids[0] = 1000 + i;
		assert_int_equal(run(ops, ex, 0, ids, 1, 1), 0);
		for (s = 0; s < 3; s++)
			assert_int_equal(run(ops, ex, 0, ids, 1, 0), 0);
		ops->release(ex, ids[0]);
		assert_int_equal(hs__executor_kv_slots(ex, 0), 1);
	}
	/* 100 more, overlapping by one step and never released: a job
	 * missing from a step has left, and its slot goes to the next. */
	for (i = 100; i < 200; i++) {
		ids[0] = 1000 + i;
		ids[1] = 1000 + i - 1;
		assert_int_equal(run(ops, ex, 0, ids, i == 100 ? 1 : 2, 1), 0);
		ids[1] = ids[0];
		assert_int_equal(run(ops, ex, 0, &ids[1], 1, 0), 0);
		assert_true(hs__executor_kv_slots(ex, 0) <= 2);
	}
	assert_int_equal(d.jobs[199].n_gen, 2);
	ops->close(ex);
}

static void test_kv_reuse_cpu(void **state)
{
	(void)state;
	check_kv_reuse(&hs__executor_cpu, cpu_dev);
}

static void test_kv_reuse_opencl(void **state)
{
	(void)state;
	check_kv_reuse(&hs__executor_opencl, pthread_dev);
}

/*
 * bench-exec's two roofs on an OpenCL device: a copy's bandwidth and the
 * fma peak, each a finite figure within what a device can do; a copy too
 * small for one work-item's run is refused.
 */
static void test_rooflines_opencl(void **state)
{
	static struct driver d;
	double gbs = -1, gflops = -1;
	void *ex;

	(void)state;
	assert_non_null(pthread_dev);
	driver_init(&d);
	ex = open_exec(&hs__executor_opencl, pthread_dev, &d, 0);
	assert_int_equal(hs__opencl_stream_gbs(ex, 4 << 20, 2, &gbs), 0);
	assert_true(gbs > 0.1 && gbs < 1e5);
	assert_int_equal(hs__opencl_stream_gbs(ex, 16, 1, &gbs), HS_EINVAL);
	assert_int_equal(hs__opencl_fma_gflops(ex, 1, &gflops), 0);
	assert_true(gflops > 0.1 && gflops < 1e6);
	print_message("  %s: copy %.1f GB/s, fma peak %.1f GFLOP/s\n",
		      pthread_dev->name, gbs, gflops);
	hs__executor_opencl.close(ex);
}

/* ------------------------------------------------------------------------ */
/* (4) Build errors come with the build log                                 */
/* ------------------------------------------------------------------------ */

static void test_build_error(void **state)
{
	static struct driver d;
	hs_executor_opts_t opts = {0};
	char dir[] = "/tmp/hs-test-kernels-XXXXXX", path[128];
	void *ex = (void *)1;
	FILE *f;

	(void)state;
	driver_init(&d);
	opts.io = &d.io;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/broken.cl", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("kernel void broken(global float *x)\n"
	      "{\n\tx[0] = hs_no_such_symbol;\n}\n",
	      f);
	fclose(f);

	opts.kernel_dir = dir;
	assert_int_equal(
		hs__executor_opencl.open(&ex, pthread_dev, models, &opts),
		HS_EBACKEND);
	assert_null(ex);
	assert_non_null(
		strstr(hs__opencl_last_build_log(), "hs_no_such_symbol"));

	/* The environment names the directory when the options do not. */
	opts.kernel_dir = NULL;
	setenv("HETSCHED_KERNELS", dir, 1);
	assert_int_equal(
		hs__executor_opencl.open(&ex, basic_dev, models, &opts),
		HS_EBACKEND);
	unsetenv("HETSCHED_KERNELS");

	unlink(path);
	assert_int_equal(
		hs__executor_opencl.open(&ex, pthread_dev, models, &opts) == 0,
		1);
	hs__executor_opencl.close(ex);
	opts.kernel_dir = dir;
	assert_int_equal(
		hs__executor_opencl.open(&ex, pthread_dev, models, &opts),
		HS_ENOENT);
	rmdir(dir);
	opts.kernel_dir = "/nonexistent/hetsched-kernels";
	assert_int_equal(
		hs__executor_opencl.open(&ex, pthread_dev, models, &opts),
		HS_ENOENT);
}

/* ------------------------------------------------------------------------ */
/* (5) Injected faults, refusals                                            */
/* ------------------------------------------------------------------------ */

static void check_fault(const struct hs_executor_ops *ops,
			const hs_device_t *dev)
{
	static struct driver d;
	uint64_t id = 5;
	void *ex;

	assert_non_null(dev);
	driver_init(&d);
	driver_add(&d, id, "fault");
	ex = open_exec(ops, dev, &d, 3);
	assert_int_equal(run(ops, ex, 0, &id, 1, 1), 0);
	assert_int_equal(run(ops, ex, 0, &id, 1, 0), 0);
	assert_int_equal(run(ops, ex, 0, &id, 1, 0), 0);
	assert_int_equal(run(ops, ex, 0, &id, 1, 0), HS_EBACKEND);
	assert_int_equal(run(ops, ex, 0, &id, 1, 1), HS_EBACKEND);
	assert_int_equal(d.jobs[0].n_gen, 3);
	ops->release(ex, id);
	ops->close(ex);
}

static void test_fault_cpu(void **state)
{
	(void)state;
	check_fault(&hs__executor_cpu, cpu_dev);
}

static void test_fault_opencl(void **state)
{
	(void)state;
	check_fault(&hs__executor_opencl, pthread_dev);
}

static void check_refusals(const struct hs_executor_ops *ops,
			   const hs_device_t *dev)
{
	static struct driver d;
	hs_executor_opts_t opts = {0};
	uint64_t id = 9, other = 10;
	void *ex = (void *)1;

	driver_init(&d);
	driver_add(&d, id, "");
	/* No io: a real executor has nowhere to get tokens from. */
	assert_int_equal(ops->open(&ex, dev, models, &opts), HS_EINVAL);
	assert_null(ex);

	ex = open_exec(ops, dev, &d, 0);
	assert_int_equal(run(ops, ex, 1, &id, 1, 1), HS_EUNSUPP);
	assert_int_equal(run(ops, ex, 2, &id, 1, 1), HS_EINVAL);
	/* A running job it never saw join. */
	assert_int_equal(run(ops, ex, 0, &other, 1, 0), HS_ESTATE);
	/* A job the driver does not know. */
	assert_int_equal(run(ops, ex, 0, &other, 1, 1), HS_ENOENT);
	/* An empty prompt is fed one token 0 and still decodes. */
	assert_int_equal(run(ops, ex, 0, &id, 1, 1), 0);
	assert_int_equal(run(ops, ex, 0, &id, 1, 0), 0);
	assert_int_equal(d.jobs[0].n_gen, 2);
	/* A long context can be adopted without its prefill. */
	assert_int_equal(hs__executor_adopt(ex, 0, 77, 500, 'a'), 0);
	assert_int_equal(hs__executor_adopt(ex, 0, 77, 500, 'a'), HS_EEXIST);
	assert_int_equal(hs__executor_adopt(ex, 0, 78, 512, 'a'), HS_ERANGE);
	assert_int_equal(hs__executor_adopt(ex, 1, 78, 5, 'a'), HS_EUNSUPP);
	ops->close(ex);
}

static void test_refusals_cpu(void **state)
{
	(void)state;
	check_refusals(&hs__executor_cpu, cpu_dev);
}

static void test_refusals_opencl(void **state)
{
	(void)state;
	check_refusals(&hs__executor_opencl, pthread_dev);
}

/* ------------------------------------------------------------------------ */
/* The core requeues a failed device's jobs: none is lost                   */
/* ------------------------------------------------------------------------ */

#define CORE_JOBS 8
#define CORE_GEN 6

/* A synchronous driver: the core on two real executors, one step at a
 * time, in the virtual time the executors measure. */
struct core_fx {
	hs_sched_t *s;
	struct driver io;
	const struct hs_executor_ops *ops[2];
	void *ex[2];
	hs_step_t step[2];
	uint64_t ids[2][MAX_JOBS];
	bool pending[2];
	int64_t now, timer;
	unsigned done, requeued;
};

static void on_step(void *ud, const hs_step_t *step)
{
	struct core_fx *fx = ud;
	int d = step->device;

	assert_true(d >= 0 && d < 2);
	assert_false(fx->pending[d]);
	assert_true(step->batch <= MAX_JOBS);
	fx->step[d] = *step;
	memcpy(fx->ids[d], step->jobs, step->batch * sizeof(uint64_t));
	fx->step[d].jobs = fx->ids[d];
	fx->pending[d] = true;
}

static void on_job(void *ud, const hs_job_t *job, hs_job_event_t ev)
{
	struct core_fx *fx = ud;

	if (ev == HS_JOB_EV_DONE)
		fx->done++;
	if (ev == HS_JOB_EV_REQUEUED)
		fx->requeued++;
	assert_int_not_equal(ev, HS_JOB_EV_FAILED);
	if (ev != HS_JOB_EV_FIRST_TOKEN && job->device >= 0 && job->device < 2)
		fx->ops[job->device]->release(fx->ex[job->device], job->id);
}

static void on_timer(void *ud, int64_t when)
{
	struct core_fx *fx = ud;

	fx->timer = when;
}

static void run_core(struct core_fx *fx)
{
	int guard = 0;

	for (;;) {
		bool ran = false;
		int d;

		assert_true(++guard < 1000);
		for (d = 0; d < 2; d++) {
			int64_t ns;
			double e;
			int rc;

			if (!fx->pending[d])
				continue;
			fx->pending[d] = false;
			ran = true;
			rc = fx->ops[d]->run_step(fx->ex[d], &fx->step[d], &ns,
						  &e);
			fx->now += ns > 0 ? ns : 1;
			if (rc) {
				assert_int_equal(rc, HS_EBACKEND);
				assert_int_equal(hs_sched_device_failed(
							 fx->s, fx->now, d),
						 0);
			} else {
				assert_int_equal(hs_sched_step_done(fx->s,
								    fx->now, d,
								    ns, e),
						 0);
			}
		}
		if (ran)
			continue;
		if (fx->timer < 0)
			break;
		if (fx->timer > fx->now)
			fx->now = fx->timer;
		fx->timer = -1;
		assert_int_equal(hs_sched_timer(fx->s, fx->now), 0);
	}
}

static void test_fault_requeue(void **state)
{
	static struct core_fx fx;
	static struct driver ref;
	static const char *const texts[CORE_JOBS] = {
		"alpha", "bravo charlie", "delta", "echo foxtrot golf",
		"hotel", "india juliet",  "kilo",  "lima mike november",
	};
	hs_device_t devs[2] = {*cpu_dev, *pthread_dev};
	hs_sched_hooks_t hooks = {
		.step_start = on_step,
		.job_event = on_job,
		.timer = on_timer,
		.ud = &fx,
	};
	hs_sched_config_t cfg;
	hs_sched_stats_t st;
	hs_error_t err = {0};
	uint64_t id;
	void *rex;
	unsigned i, k;

	(void)state;
	memset(&fx, 0, sizeof(fx));
	driver_init(&fx.io);
	fx.timer = -1;
	fx.ops[0] = &hs__executor_cpu;
	fx.ops[1] = &hs__executor_opencl;
	/* The cpu device fails at its fourth step, mid-generation. */
	fx.ex[0] = open_exec(fx.ops[0], cpu_dev, &fx.io, 3);
	fx.ex[1] = open_exec(fx.ops[1], pthread_dev, &fx.io, 0);
	devs[0].id = 0;
	devs[1].id = 1;
	hs_sched_config_init(&cfg);
	cfg.policy = "rr";
	assert_int_equal(
		hs_sched_new(&fx.s, &cfg, models, devs, 2, &hooks, &err), 0);

	for (i = 0; i < CORE_JOBS; i++) {
		hs_job_spec_t spec = {0};

		spec.model = 0;
		spec.ctx_tokens = (uint32_t)strlen(texts[i]);
		spec.gen_tokens = CORE_GEN;
		spec.deadline_ns = -1;
		assert_int_equal(
			hs_sched_submit(fx.s, fx.now, &spec, &id, &err), 0);
		driver_add(&fx.io, id, texts[i]);
	}
	run_core(&fx);

	hs_sched_stats(fx.s, &st);
	assert_int_equal(st.completed, CORE_JOBS);
	assert_int_equal(st.failed, 0);
	assert_true(st.requeued >= 1);
	assert_int_equal(fx.done, CORE_JOBS);
	assert_true(fx.requeued >= 1);

	/* Every job has all its tokens, and the same ones it makes alone on
	 * a device that never fails: the requeued ones went on where they
	 * had stopped. */
	driver_init(&ref);
	rex = open_exec(&hs__executor_cpu, cpu_dev, &ref, 0);
	for (i = 0; i < CORE_JOBS; i++) {
		struct tjob *j = &fx.io.jobs[i], *r;

		r = driver_add(&ref, j->id, texts[i]);
		assert_int_equal(run(&hs__executor_cpu, rex, 0, &j->id, 1, 1),
				 0);
		for (k = 1; k < CORE_GEN; k++)
			assert_int_equal(
				run(&hs__executor_cpu, rex, 0, &j->id, 1, 0),
				0);
		assert_int_equal(j->n_gen, CORE_GEN);
		assert_memory_equal(j->toks, r->toks,
				    (j->n_prompt + CORE_GEN) *
					    sizeof(uint32_t));
	}
	print_message("  %u jobs done, %u requeued from the failed device\n",
		      fx.done, fx.requeued);
	hs__executor_cpu.close(rex);
	hs_sched_free(fx.s);
	fx.ops[0]->close(fx.ex[0]);
	fx.ops[1]->close(fx.ex[1]);
}

/* ------------------------------------------------------------------------ */
/* Allocation failures free what they took                                  */
/* ------------------------------------------------------------------------ */

static void check_alloc_failures(const struct hs_executor_ops *ops,
				 const hs_device_t *dev)
{
	static struct driver d;
	hs_executor_opts_t opts = {0};
	uint64_t ids[2] = {1, 2};
	long n;

	for (n = 0;; n++) {
		void *ex = NULL;
		int rc;

		driver_init(&d);
		driver_add(&d, 1, "allocation");
		driver_add(&d, 2, "failures");
		opts.io = &d.io;
		hs_test_alloc_install(n);
		rc = ops->open(&ex, dev, models, &opts);
		if (rc == 0) {
			rc = run(ops, ex, 0, ids, 2, 2);
			if (rc == 0)
				rc = run(ops, ex, 0, ids, 2, 0);
			ops->close(ex);
		} else {
			assert_null(ex);
		}
		hs_test_alloc_uninstall();
		assert_int_equal(hs_test_alloc_live(), 0);
		if (rc == 0)
			break;
		assert_int_equal(rc, HS_ENOMEM);
		assert_true(n < 1000);
	}
	print_message("  %s: %ld allocation failures survived\n", ops->name, n);
}

static void test_alloc_failures_cpu(void **state)
{
	(void)state;
	check_alloc_failures(&hs__executor_cpu, cpu_dev);
}

static void test_alloc_failures_opencl(void **state)
{
	(void)state;
	check_alloc_failures(&hs__executor_opencl, pthread_dev);
}

/* ------------------------------------------------------------------------ */
/* Setup                                                                    */
/* ------------------------------------------------------------------------ */

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int group_setup(void **state)
{
	hs_discover_opts_t dopts = {0};
	hs_error_t err = {0};
	size_t i;

	(void)state;
	if (hs_model_catalog_parse(&models, catalog_json, "<test>", &err) ||
	    hs_profile_catalog_load(&profiles, "data/devices.json", &err))
		return -1;
	dopts.profiles = profiles;
	if (hs_node_discover(&node, &dopts, &err))
		return -1;
	for (i = 0; i < hs_node_device_count(node); i++) {
		const hs_device_t *d = hs_node_device(node, i);

		if (d->backend == HS_BACKEND_CPU && !cpu_dev)
			cpu_dev = d;
		else if (d->backend == HS_BACKEND_OPENCL &&
			 starts_with(d->name, "pthread"))
			pthread_dev = d;
		else if (d->backend == HS_BACKEND_OPENCL &&
			 starts_with(d->name, "basic"))
			basic_dev = d;
	}
	return cpu_dev && pthread_dev && basic_dev ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	hs_node_free(node);
	hs_profile_catalog_free(profiles);
	hs_model_catalog_free(models);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tokenizer),
		cmocka_unit_test(test_kv_half),
		cmocka_unit_test(test_kv_half_bulk),
		cmocka_unit_test(test_weights_deterministic),
		cmocka_unit_test(test_logits_pthread),
		cmocka_unit_test(test_logits_basic),
		cmocka_unit_test_setup_teardown(test_logits_groups,
						groups_setup, groups_teardown),
		cmocka_unit_test(test_batch_invariance_cpu),
		cmocka_unit_test(test_batch_invariance_opencl),
		cmocka_unit_test(test_bad_tile_opencl),
		cmocka_unit_test(test_cpu_threads),
		cmocka_unit_test(test_kv_reuse_cpu),
		cmocka_unit_test(test_kv_reuse_opencl),
		cmocka_unit_test(test_rooflines_opencl),
		cmocka_unit_test(test_build_error),
		cmocka_unit_test(test_fault_cpu),
		cmocka_unit_test(test_fault_opencl),
		cmocka_unit_test(test_refusals_cpu),
		cmocka_unit_test(test_refusals_opencl),
		cmocka_unit_test(test_fault_requeue),
		cmocka_unit_test(test_alloc_failures_cpu),
		cmocka_unit_test(test_alloc_failures_opencl),
	};

	setenv("POCL_DEVICES", "pthread basic", 1);
	return cmocka_run_group_tests_name("exec", tests, group_setup,
					   group_teardown);
}
