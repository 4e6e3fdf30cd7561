/*
 * bench-exec: what the real executors do on this machine's devices, with
 * tiny-15m (or --model NAME): decode tokens/s by batch (1, 4, 16, 32) and
 * context (128, 1024), prefill tokens/s, the batching gain (batch 16 over
 * batch 1), the memory bandwidth a batch-1 decode achieves against a
 * STREAM-style copy measured on the same device (the roofline fraction),
 * and on an OpenCL device the flops a batch-16 decode achieves against
 * chains of fmas in registers (the compute roof that bounds the gain).
 * Devices: the cpu executor on every NUMA node, and every OpenCL device
 * (POCL_DEVICES="pthread basic" unless set). A benchmark prints figures; it
 * does not pass or fail.
 *
 *   build/bench-exec [--json] [--model NAME] [--device SUBSTRING] [--quick]
 *
 * Decode steps start from jobs adopted at the context (a zeroed KV cache
 * of that length): a decode step's work does not depend on what the cache
 * holds, and a prefill of 32 x 1024 tokens would take minutes here. The
 * context grows by one per step; contexts at the model's limit start a few
 * tokens short of it. Every (batch, context) pair is sampled in each of
 * several interleaved rounds, and its figure is the median step over all
 * of them (see decode_round).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "executor.h"
#include "llm.h"

/* A copy larger than any last-level cache: DRAM bandwidth. */
#define DRAM_BYTES ((size_t)256 << 20)
#define PREFILL_JOBS 4
#define PREFILL_LEN 128

static const uint32_t batches[] = {1, 4, 16, 32};
static const uint32_t contexts[] = {128, 1024};
#define N_B (sizeof(batches) / sizeof(batches[0]))
#define N_C (sizeof(contexts) / sizeof(contexts[0]))
/* The pairs the batching gain compares, as indices of b * N_C + c. */
#define B1_C128 (0 * N_C + 0)
#define B16_C128 (2 * N_C + 0)

/*
 * Decode is measured in rounds: every round runs every (batch, context)
 * pair in turn, so that the pairs a figure compares (batch 16 against
 * batch 1 for the batching gain) are sampled side by side, and a burst of
 * other work on a shared machine falls on all of them alike rather than
 * on whichever pair ran at that moment. A pair's figure is the median of
 * all its steps over all rounds. The batching gain is also worked out
 * within each round, and their range printed: one run shows how steady
 * the figure is on this machine.
 */
#define ROUNDS 7
#define ROUND_STEPS 12 /* at most, per pair and round */
#define MAX_STEPS (ROUNDS * ROUND_STEPS)

struct result {
	double decode[N_B][N_C]; /* tokens/s */
	double prefill; /* tokens/s */
	double stream_gbs; /* a copy with the weights' footprint */
	double fma_gflops; /* the device's fma peak (0: not measured) */
	double b16_gflops; /* what batch 16 at context 128 computes */
	size_t stream_bytes; /* its source (and destination) size */
	double dram_gbs; /* a copy of DRAM_BYTES */
	double b1_gbs; /* bytes a batch-1 step reads / its time */
	double round_gain[ROUNDS]; /* the gain within each round */
	int rounds;
};

static uint32_t prompt_buf[PREFILL_LEN];

/* Every job asks for the same prompt: only its length matters here. */
static int io_prompt(void *ud, uint64_t job, const uint32_t **tokens,
		     uint32_t *n)
{
	*tokens = prompt_buf;
	*n = PREFILL_LEN;
	return 0;
}

static const hs_executor_io_t io = {.prompt = io_prompt};

static uint64_t next_id = 1;
static bool quick;

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

struct samples {
	int64_t t[MAX_STEPS]; /* the executor's own step times */
	double ctx_sum; /* contexts attended over, summed */
	int n;
};

/*
 * One round of a pair: B jobs adopted at context about C, two steps to
 * warm up (the pair before may have evicted the weights from the caches),
 * then steps until 60 ms have passed (at least 3, at most ROUND_STEPS).
 * The context grows by one per step; contexts at the model's limit start
 * a few tokens short of it.
 */
static int decode_round(const struct hs_executor_ops *ops, void *ex,
			uint32_t model, const hs__llm_shape_t *s, uint32_t B,
			uint32_t C, struct samples *sm)
{
	const int warm = 2, min_steps = 3;
	const int max_steps = quick ? min_steps : ROUND_STEPS;
	const int64_t window = quick ? 20000000 : 60000000;
	int64_t total = 0, ns;
	uint64_t ids[64];
	uint32_t i, start = C;
	int n = 0, k, err = 0;

	if (start + warm + max_steps >= s->max_ctx)
		start = s->max_ctx - 1 - (uint32_t)(warm + max_steps);
	for (i = 0; i < B && !err; i++) {
		ids[i] = next_id++;
		err = hs__executor_adopt(ex, model, ids[i], start, 'a');
	}
	for (k = 0; !err && k < warm; k++)
		err = hs__executor_step(ops, ex, model, ids, B, 0, &ns);
	while (!err && n < max_steps && (n < min_steps || total < window)) {
		err = hs__executor_step(ops, ex, model, ids, B, 0, &ns);
		total += ns;
		sm->t[sm->n++] = ns;
		sm->ctx_sum += start + warm + n + 1;
		n++;
	}
	for (i = 0; i < B; i++)
		ops->release(ex, ids[i]);
	return err;
}

/* The median of n step times (sorted in place; n > 0). */
static double median_ns(int64_t *t, int n)
{
	qsort(t, (size_t)n, sizeof(t[0]), cmp_i64);
	return n % 2 ? (double)t[n / 2]
		     : ((double)t[n / 2 - 1] + (double)t[n / 2]) / 2;
}

/* Tokens/s of a pair from the median step; *med_ns that step's time and
 * *mean_ctx the mean context attended over. */
static void decode_figure(struct samples *sm, uint32_t B, double *tps,
			  double *med_ns, double *mean_ctx)
{
	int n = sm->n;

	*med_ns = median_ns(sm->t, n);
	*tps = (double)B / (*med_ns / 1e9);
	*mean_ctx = sm->ctx_sum / n;
}

/* One step in which PREFILL_JOBS jobs join with PREFILL_LEN tokens each;
 * best of three. */
static int prefill(const struct hs_executor_ops *ops, void *ex, uint32_t model,
		   double *tps)
{
	int64_t best = INT64_MAX, ns;
	uint64_t ids[PREFILL_JOBS];
	int r, i, err = 0;

	for (r = 0; r < (quick ? 1 : 3) && !err; r++) {
		for (i = 0; i < PREFILL_JOBS; i++)
			ids[i] = next_id++;
		err = hs__executor_step(ops, ex, model, ids, PREFILL_JOBS,
					PREFILL_JOBS, &ns);
		for (i = 0; i < PREFILL_JOBS; i++)
			ops->release(ex, ids[i]);
		if (!err && ns < best)
			best = ns;
	}
	if (err)
		return err;
	*tps = (double)PREFILL_JOBS * PREFILL_LEN / ((double)best / 1e9);
	return 0;
}

/*
 * What a decode token computes at context ctx: two flops (a multiply-add)
 * per weight the step reads, and per layer two products of the query
 * heads with ctx cached positions (scores, then values).
 */
static double flops_per_token(const hs__llm_shape_t *s, double ctx)
{
	return 2.0 * (double)hs__llm_weight_bytes_read(s) / sizeof(float) +
	       4.0 * ctx * s->q_dim * s->layers;
}

static int stream(const hs_device_t *dev, void *ex, size_t bytes, double *gbs)
{
	unsigned reps = quick ? 3 : 10;

	if (dev->backend == HS_BACKEND_CPU)
		return hs__cpu_stream_gbs(ex, bytes, reps, gbs);
	return hs__opencl_stream_gbs(ex, bytes, reps, gbs);
}

static int bench_device(const hs_device_t *dev,
			const hs_model_catalog_t *models, uint32_t model,
			struct result *res)
{
	const struct hs_executor_ops *ops = dev->backend == HS_BACKEND_CPU
						    ? &hs__executor_cpu
						    : &hs__executor_opencl;
	hs__llm_shape_t s;
	hs_executor_opts_t opts;
	double ns = 0, ctx = 0, n2, c2;
	struct samples *sm;
	void *ex = NULL;
	size_t b, c;
	int r, err;

	memset(res, 0, sizeof(*res));
	err = hs__llm_shape(&s, hs_model_catalog_get(models, model));
	if (err)
		return err;
	memset(&opts, 0, sizeof(opts));
	opts.io = &io;
	err = ops->open(&ex, dev, models, &opts);
	if (err)
		return err;

	sm = calloc(N_B * N_C, sizeof(*sm));
	if (!sm) {
		ops->close(ex);
		return HS_ENOMEM;
	}
	for (r = 0; r < (quick ? 2 : ROUNDS) && !err; r++) {
		int n1 = sm[B1_C128].n, n16 = sm[B16_C128].n;

		for (b = 0; b < N_B && !err; b++)
			for (c = 0; c < N_C && !err; c++)
				err = decode_round(ops, ex, model, &s,
						   batches[b], contexts[c],
						   &sm[b * N_C + c]);
		if (!err)
			res->round_gain[res->rounds++] =
				(double)batches[B16_C128 / N_C] /
				batches[B1_C128 / N_C] *
				median_ns(sm[B1_C128].t + n1,
					  sm[B1_C128].n - n1) /
				median_ns(sm[B16_C128].t + n16,
					  sm[B16_C128].n - n16);
	}
	for (b = 0; b < N_B && !err; b++)
		for (c = 0; c < N_C; c++) {
			decode_figure(&sm[b * N_C + c], batches[b],
				      &res->decode[b][c], &n2, &c2);
			if (b == 0 && c == 0) {
				ns = n2;
				ctx = c2;
			}
			if (b * N_C + c == B16_C128)
				res->b16_gflops = res->decode[b][c] *
						  flops_per_token(&s, c2) / 1e9;
		}
	free(sm);
	if (!err)
		err = prefill(ops, ex, model, &res->prefill);
	/*
	 * The roofline is a copy whose source and destination together are
	 * as large as the weights a step streams: a small model's weights
	 * may sit partly in the last-level cache, and so does that copy, so
	 * the two are compared at the same level of the memory hierarchy.
	 * The DRAM copy is printed beside it.
	 */
	res->stream_bytes = (size_t)hs__llm_weight_bytes_read(&s) / 2;
	if (!err)
		err = stream(dev, ex, res->stream_bytes, &res->stream_gbs);
	if (!err)
		err = stream(dev, ex, DRAM_BYTES, &res->dram_gbs);
	/* The compute roof is an extra: without it the rest still stands. */
	if (!err && dev->backend == HS_BACKEND_OPENCL &&
	    hs__opencl_fma_gflops(ex, quick ? 2 : 5, &res->fma_gflops))
		res->fma_gflops = 0;
	if (!err && ns > 0)
		res->b1_gbs = ((double)hs__llm_weight_bytes_read(&s) +
			       (double)hs__llm_kv_bytes_per_token(&s) * ctx) /
			      ns;
	ops->close(ex);
	return err;
}

/* Batch 16 over batch 1 at context 128, from the medians of all rounds. */
static double gain_b16(const struct result *r)
{
	return r->decode[B16_C128 / N_C][B16_C128 % N_C] /
	       r->decode[B1_C128 / N_C][B1_C128 % N_C];
}

static json_t *result_json(const hs_device_t *dev, const char *model,
			   const struct result *r)
{
	json_t *o = json_object(), *d = json_object(), *g = json_array();
	char key[32];
	size_t b, c;
	int i;

	for (b = 0; b < N_B; b++)
		for (c = 0; c < N_C; c++) {
			snprintf(key, sizeof(key), "b%u_c%u", batches[b],
				 contexts[c]);
			json_object_set_new(d, key, json_real(r->decode[b][c]));
		}
	json_object_set_new(o, "device", json_string(dev->name));
	json_object_set_new(o, "backend",
			    json_string(hs_backend_name(dev->backend)));
	json_object_set_new(o, "model", json_string(model));
	json_object_set_new(o, "decode_tokens_per_s", d);
	json_object_set_new(o, "prefill_tokens_per_s", json_real(r->prefill));
	json_object_set_new(o, "batching_gain_b16", json_real(gain_b16(r)));
	for (i = 0; i < r->rounds; i++)
		json_array_append_new(g, json_real(r->round_gain[i]));
	json_object_set_new(o, "batching_gain_b16_rounds", g);
	json_object_set_new(o, "stream_gbs", json_real(r->stream_gbs));
	json_object_set_new(o, "stream_bytes",
			    json_integer((json_int_t)r->stream_bytes));
	json_object_set_new(o, "stream_dram_gbs", json_real(r->dram_gbs));
	json_object_set_new(o, "b1_decode_gbs", json_real(r->b1_gbs));
	json_object_set_new(o, "roofline_fraction_b1",
			    json_real(r->b1_gbs / r->stream_gbs));
	json_object_set_new(o, "b16_decode_gflops", json_real(r->b16_gflops));
	json_object_set_new(o, "fma_peak_gflops",
			    r->fma_gflops > 0 ? json_real(r->fma_gflops)
					      : json_null());
	json_object_set_new(o, "compute_fraction_b16",
			    r->fma_gflops > 0
				    ? json_real(r->b16_gflops / r->fma_gflops)
				    : json_null());
	return o;
}

static void print_table(const hs_device_t *dev, const char *model,
			const struct result *r)
{
	double lo = 0, hi = 0;
	size_t b, c;
	int i;

	for (i = 0; i < r->rounds; i++) {
		if (i == 0 || r->round_gain[i] < lo)
			lo = r->round_gain[i];
		if (i == 0 || r->round_gain[i] > hi)
			hi = r->round_gain[i];
	}

	printf("%s (%s), %s\n", dev->name, hs_backend_name(dev->backend),
	       model);
	printf("  decode tokens/s ");
	for (b = 0; b < N_B; b++)
		printf("  %8s%-2u", "batch ", batches[b]);
	printf("\n");
	for (c = 0; c < N_C; c++) {
		printf("    context %-5u", contexts[c]);
		for (b = 0; b < N_B; b++)
			printf("  %10.1f", r->decode[b][c]);
		printf("\n");
	}
	printf("  prefill tokens/s   %10.1f  (%d jobs x %d tokens in one "
	       "step)\n",
	       r->prefill, PREFILL_JOBS, PREFILL_LEN);
	printf("  batching gain      %10.2fx (batch 16 over batch 1, context "
	       "128; rounds %.2f-%.2f)\n",
	       gain_b16(r), lo, hi);
	printf("  stream copy        %10.2f GB/s (%.1f MB to %.1f MB, the "
	       "weights' footprint)\n",
	       r->stream_gbs, r->stream_bytes / 1e6, r->stream_bytes / 1e6);
	printf("  stream copy, DRAM  %10.2f GB/s (%zu MiB)\n", r->dram_gbs,
	       DRAM_BYTES >> 20);
	printf("  batch-1 decode     %10.2f GB/s (weights + KV read per "
	       "step): %.0f %% of stream\n",
	       r->b1_gbs, 100.0 * r->b1_gbs / r->stream_gbs);
	if (r->fma_gflops > 0)
		printf("  fma peak           %10.1f GFLOP/s (independent fma "
		       "chains in registers)\n",
		       r->fma_gflops);
	printf("  batch-16 decode    %10.1f GFLOP/s (context %u)",
	       r->b16_gflops, contexts[0]);
	if (r->fma_gflops > 0)
		printf(": %.0f %% of the fma peak",
		       100.0 * r->b16_gflops / r->fma_gflops);
	printf("\n\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'},
		{"model", required_argument, NULL, 'm'},
		{"quick", no_argument, NULL, 'q'},
		{"device", required_argument, NULL, 'd'},
		{NULL, 0, NULL, 0},
	};
	const char *model_name = "tiny-15m", *only = NULL;
	hs_model_catalog_t *models = NULL;
	hs_profile_catalog_t *profiles = NULL;
	hs_discover_opts_t dopts;
	hs_node_t *node = NULL;
	hs_error_t err;
	const hs_model_t *m;
	bool json = false;
	uint32_t model;
	size_t i;
	int c, rc = 1;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'm':
			model_name = optarg;
			break;
		case 'q':
			quick = true;
			break;
		case 'd':
			only = optarg;
			break;
		default:
			fprintf(stderr,
				"usage: %s [--json] [--model NAME] "
				"[--device SUBSTRING] [--quick]\n",
				argv[0]);
			return 2;
		}
	}
	/* Before the ICD loader reads it, at the first OpenCL call. */
	setenv("POCL_DEVICES", "pthread basic", 0);
	for (i = 0; i < PREFILL_LEN; i++)
		prompt_buf[i] = (uint32_t) "hetsched bench "[i % 15];

	memset(&err, 0, sizeof(err));
	if (hs_model_catalog_load(&models, "data/models.json", &err) ||
	    hs_profile_catalog_load(&profiles, "data/devices.json", &err)) {
		char buf[512];

		fprintf(stderr, "bench-exec: %s\n",
			hs_error_format(&err, buf, sizeof(buf)));
		goto out_free;
	}
	for (model = 0; model < hs_model_catalog_count(models); model++)
		if (!strcmp(hs_model_catalog_get(models, model)->name,
			    model_name))
			break;
	m = hs_model_catalog_find(models, model_name);
	if (!m || !hs__llm_runnable(m)) {
		fprintf(stderr, "bench-exec: no runnable model %s\n",
			model_name);
		goto out_free;
	}
	memset(&dopts, 0, sizeof(dopts));
	dopts.profiles = profiles;
	if (hs_node_discover(&node, &dopts, &err)) {
		char buf[512];

		fprintf(stderr, "bench-exec: %s\n",
			hs_error_format(&err, buf, sizeof(buf)));
		goto out_free;
	}

	rc = 0;
	for (i = 0; i < hs_node_device_count(node); i++) {
		const hs_device_t *dev = hs_node_device(node, i);
		struct result r;
		int e;

		if (dev->backend != HS_BACKEND_CPU &&
		    dev->backend != HS_BACKEND_OPENCL)
			continue;
		if (only && !strstr(dev->name, only) &&
		    strcmp(only, hs_backend_name(dev->backend)))
			continue;
		e = bench_device(dev, models, model, &r);
		if (e) {
			fprintf(stderr, "bench-exec: %s: %s\n", dev->name,
				hs_strerror(e));
			rc = 1;
			continue;
		}
		if (json) {
			json_t *o = result_json(dev, m->name, &r);
			char *s = json_dumps(o, JSON_COMPACT |
							JSON_REAL_PRECISION(6));

			printf("%s\n", s);
			free(s);
			json_decref(o);
		} else {
			print_table(dev, m->name, &r);
		}
		fflush(stdout);
	}

out_free:
	hs_node_free(node);
	hs_profile_catalog_free(profiles);
	hs_model_catalog_free(models);
	return rc;
}
