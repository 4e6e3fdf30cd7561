/*
 * The decoder both real executors run: synthetic weights, the byte
 * tokenizer, the jobs and KV slots of an executor, and the CPU reference
 * forward pass (see llm.h).
 */
#include <math.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include "internal.h"
#include "llm.h"

/* ------------------------------------------------------------------------ */
/* Shapes and weights                                                       */
/* ------------------------------------------------------------------------ */

/* K or V values the reference attention converts to FP32 at a time: at
 * least one head's row. */
#define ATT_BUF 8192

bool hs__llm_runnable(const hs_model_t *m)
{
	return m->runnable && m->n_experts == 0 && m->layers && m->d_model &&
	       m->n_heads && m->n_kv_heads && m->n_heads % m->n_kv_heads == 0 &&
	       m->head_dim && m->head_dim % 2 == 0 && m->head_dim <= ATT_BUF &&
	       m->d_ff && m->vocab && m->max_context;
}

int hs__llm_shape(hs__llm_shape_t *s, const hs_model_t *m)
{
	if (!hs__llm_runnable(m))
		return HS_EUNSUPP;
	s->layers = m->layers;
	s->d = m->d_model;
	s->n_heads = m->n_heads;
	s->n_kv = m->n_kv_heads;
	s->hd = m->head_dim;
	s->d_ff = m->d_ff;
	s->vocab = m->vocab;
	s->max_ctx = m->max_context;
	s->q_dim = s->n_heads * s->hd;
	s->kv_dim = s->n_kv * s->hd;
	s->qkv_dim = s->q_dim + 2 * s->kv_dim;
	return 0;
}

static size_t layer_floats(const hs__llm_shape_t *s)
{
	return 2 * (size_t)s->d + (size_t)s->qkv_dim * s->d +
	       (size_t)s->d * s->q_dim + 2 * (size_t)s->d_ff * s->d +
	       (size_t)s->d * s->d_ff;
}

uint64_t hs__llm_weight_bytes_read(const hs__llm_shape_t *s)
{
	uint64_t n = (uint64_t)s->layers * layer_floats(s) + s->d +
		     (uint64_t)s->vocab * s->d + s->d;

	return n * sizeof(float);
}

/* ------------------------------------------------------------------------ */
/* FP16 KV values                                                           */
/* ------------------------------------------------------------------------ */

void hs__kv_to_floats_portable(float *dst, const hs__kv_t *src, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		dst[i] = hs__kv_to_float(src[i]);
}

void hs__kv_from_floats_portable(hs__kv_t *dst, const float *src, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		dst[i] = hs__kv_from_float(src[i]);
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx,f16c"))) static void to_floats_f16c(
	float *dst, const hs__kv_t *src, size_t n)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(
						  (const __m128i *)(src + i))));
	/* Clean upper halves before SSE code runs again: gcc 12 left them
	 * dirty across the tail call, and the SSE code after it ran 2-4
	 * times slower. */
	_mm256_zeroupper();
	hs__kv_to_floats_portable(dst + i, src + i, n - i);
}

__attribute__((target("avx,f16c"))) static void from_floats_f16c(
	hs__kv_t *dst, const float *src, size_t n)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8)
		_mm_storeu_si128((__m128i *)(dst + i),
				 _mm256_cvtps_ph(_mm256_loadu_ps(src + i),
						 _MM_FROUND_TO_NEAREST_INT));
	_mm256_zeroupper();
	hs__kv_from_floats_portable(dst + i, src + i, n - i);
}

/* F16C and AVX, and an OS that saves the AVX registers (OSXSAVE, XCR0
 * bits 1 and 2): asked once, through cpuid (compilers disagree on the
 * feature names __builtin_cpu_supports takes). */
static bool f16c_usable(void)
{
	unsigned a, b, c, d, lo, hi;

	if (!__get_cpuid(1, &a, &b, &c, &d))
		return false;
	if (!(c & bit_F16C) || !(c & bit_AVX) || !(c & bit_OSXSAVE))
		return false;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	(void)hi;
	return (lo & 6) == 6;
}

bool hs__kv_f16c(void)
{
	static atomic_int has = -1; /* -1: not asked yet */
	int h = atomic_load_explicit(&has, memory_order_relaxed);

	if (h < 0) {
		h = f16c_usable();
		atomic_store_explicit(&has, h, memory_order_relaxed);
	}
	return h;
}
#else
bool hs__kv_f16c(void)
{
	return false;
}
#endif

void hs__kv_to_floats(float *dst, const hs__kv_t *src, size_t n)
{
#if defined(__x86_64__) || defined(__i386__)
	if (hs__kv_f16c()) {
		to_floats_f16c(dst, src, n);
		return;
	}
#endif
	hs__kv_to_floats_portable(dst, src, n);
}

void hs__kv_from_floats(hs__kv_t *dst, const float *src, size_t n)
{
#if defined(__x86_64__) || defined(__i386__)
	if (hs__kv_f16c()) {
		from_floats_f16c(dst, src, n);
		return;
	}
#endif
	hs__kv_from_floats_portable(dst, src, n);
}

uint64_t hs__llm_kv_bytes_per_token(const hs__llm_shape_t *s)
{
	return 2ull * s->layers * s->kv_dim * sizeof(hs__kv_t);
}

size_t hs__llm_kv_offset(const hs__llm_shape_t *s, uint32_t layer, uint32_t kv)
{
	return ((size_t)layer * 2 + kv) * s->max_ctx * s->kv_dim;
}

size_t hs__llm_kv_slot_values(const hs__llm_shape_t *s)
{
	return (size_t)s->layers * 2 * s->max_ctx * s->kv_dim;
}

/* splitmix64: small, fast, and the same sequence on every machine. */
static uint64_t next_u64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [-1, 1), exactly representable as a float. */
static float uniform_pm1(uint64_t *x)
{
	return (float)(next_u64(x) >> 40) * 0x1.0p-23f - 1.0f;
}

static void fill_matrix(float *w, size_t rows, size_t cols, uint64_t *rng)
{
	float scale = 1.0f / sqrtf((float)cols);
	size_t i;

	for (i = 0; i < rows * cols; i++)
		w[i] = uniform_pm1(rng) * scale;
}

static void fill_gain(float *w, size_t n, uint64_t *rng)
{
	size_t i;

	for (i = 0; i < n; i++)
		w[i] = 1.0f + 0.1f * uniform_pm1(rng);
}

static void fill_rope(float *rope, const hs__llm_shape_t *s)
{
	uint32_t half = s->hd / 2, p, i;

	for (p = 0; p < s->max_ctx; p++) {
		for (i = 0; i < half; i++) {
			double f = pow(HS_LLM_ROPE_THETA,
				       -2.0 * i / (double)s->hd);
			double a = p * f;

			rope[((size_t)p * half + i) * 2] = (float)cos(a);
			rope[((size_t)p * half + i) * 2 + 1] = (float)sin(a);
		}
	}
}

int hs__llm_weights_new(hs__llm_weights_t **out, const hs_model_t *m)
{
	hs__llm_weights_t *w;
	hs__llm_shape_t s;
	uint64_t rng;
	size_t n, l;
	float *p;
	int err;

	*out = NULL;
	err = hs__llm_shape(&s, m);
	if (err)
		return err;

	w = hs__calloc(1, sizeof(*w));
	if (!w)
		return HS_ENOMEM;
	w->shape = s;
	w->layer = hs__calloc(s.layers, sizeof(*w->layer));
	n = 2 * (size_t)s.vocab * s.d + s.d + s.layers * layer_floats(&s) +
	    (size_t)s.max_ctx * s.hd;
	w->blob = hs__malloc(n * sizeof(float));
	if (!w->layer || !w->blob) {
		hs__llm_weights_free(w);
		return HS_ENOMEM;
	}
	w->n_floats = n;

	/* The seed is mixed with the shape so that two catalog entries
	 * sharing a seed still differ. */
	rng = m->seed ^ (0x5851f42d4c957f2dull * (m->d_model + 1)) ^
	      ((uint64_t)m->layers << 32);
	p = w->blob;
	w->embed = p;
	p += (size_t)s.vocab * s.d;
	for (n = 0; n < (size_t)s.vocab * s.d; n++)
		w->embed[n] = uniform_pm1(&rng);
	for (l = 0; l < s.layers; l++) {
		hs__llm_layer_t *ly = &w->layer[l];

		ly->attn_norm = p;
		p += s.d;
		fill_gain(ly->attn_norm, s.d, &rng);
		ly->wqkv = p;
		p += (size_t)s.qkv_dim * s.d;
		fill_matrix(ly->wqkv, s.qkv_dim, s.d, &rng);
		ly->wo = p;
		p += (size_t)s.d * s.q_dim;
		fill_matrix(ly->wo, s.d, s.q_dim, &rng);
		ly->ffn_norm = p;
		p += s.d;
		fill_gain(ly->ffn_norm, s.d, &rng);
		ly->w13 = p;
		p += 2 * (size_t)s.d_ff * s.d;
		fill_matrix(ly->w13, 2 * (size_t)s.d_ff, s.d, &rng);
		ly->w2 = p;
		p += (size_t)s.d * s.d_ff;
		fill_matrix(ly->w2, s.d, s.d_ff, &rng);
	}
	w->final_norm = p;
	p += s.d;
	fill_gain(w->final_norm, s.d, &rng);
	w->out = p;
	p += (size_t)s.vocab * s.d;
	fill_matrix(w->out, s.vocab, s.d, &rng);
	w->rope = p;
	fill_rope(w->rope, &s);

	*out = w;
	return 0;
}

void hs__llm_weights_free(hs__llm_weights_t *w)
{
	if (!w)
		return;
	hs__free(w->blob);
	hs__free(w->layer);
	hs__free(w);
}

/* ------------------------------------------------------------------------ */
/* Byte-level tokenizer                                                     */
/* ------------------------------------------------------------------------ */

size_t hs__tok_encode(const char *text, uint32_t *ids, size_t cap)
{
	size_t n = strlen(text), i;

	for (i = 0; i < n && i < cap; i++)
		ids[i] = (unsigned char)text[i];
	return n;
}

size_t hs__tok_decode(const uint32_t *ids, size_t n, char *buf, size_t size)
{
	size_t i;

	if (size == 0)
		return 0;
	for (i = 0; i < n && i < size - 1; i++)
		buf[i] = ids[i] == 0 || ids[i] > 255 ? '?' : (char)ids[i];
	buf[i] = '\0';
	return i;
}

/* ------------------------------------------------------------------------ */
/* Jobs, KV slots and steps                                                 */
/* ------------------------------------------------------------------------ */

int64_t hs__llm_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int hs__llm_exec_init(hs__llm_exec_t *ex, const hs_model_catalog_t *models,
		      const hs_executor_opts_t *opts)
{
	size_t m, n = hs_model_catalog_count(models);

	memset(ex, 0, sizeof(*ex));
	if (!opts || !opts->io || !opts->io->prompt)
		return HS_EINVAL;
	ex->io = *opts->io;
	ex->fail_after = opts->fail_after_steps;
	ex->n_models = n;
	ex->shapes = hs__calloc(n ? n : 1, sizeof(*ex->shapes));
	ex->runnable = hs__calloc(n ? n : 1, sizeof(*ex->runnable));
	ex->pools = hs__calloc(n ? n : 1, sizeof(*ex->pools));
	if (!ex->shapes || !ex->runnable || !ex->pools) {
		hs__free(ex->shapes);
		hs__free(ex->runnable);
		hs__free(ex->pools);
		return HS_ENOMEM;
	}
	for (m = 0; m < n; m++)
		ex->runnable[m] = !hs__llm_shape(
			&ex->shapes[m], hs_model_catalog_get(models, m));
	pthread_mutex_init(&ex->lock, NULL);
	return 0;
}

void hs__llm_exec_release(hs__llm_exec_t *ex)
{
	size_t m;

	for (m = 0; m < ex->n_models; m++)
		hs__free(ex->pools[m].free);
	hs__free(ex->pools);
	hs__free(ex->shapes);
	hs__free(ex->runnable);
	hs__free(ex->jobs);
	hs__free(ex->batch.tok);
	hs__free(ex->batch.pos);
	hs__free(ex->batch.slot);
	hs__free(ex->batch.ids);
	hs__free(ex->batch.last);
	hs__free(ex->batch.out);
	hs__free(ex->batch.logits);
	pthread_mutex_destroy(&ex->lock);
}

static hs__llm_job_t *job_find(hs__llm_exec_t *ex, uint64_t id)
{
	size_t i;

	for (i = 0; i < ex->n_jobs; i++)
		if (ex->jobs[i].id == id)
			return &ex->jobs[i];
	return NULL;
}

/* The free list is grown with the pool, so that freeing never fails. */
static int slot_alloc(hs__llm_pool_t *pool, uint32_t *slot)
{
	if (pool->n_free) {
		*slot = pool->free[--pool->n_free];
		return 0;
	}
	if (hs__grow((void **)&pool->free, &pool->cap_free,
		     (size_t)pool->n_slots + 1, sizeof(*pool->free)))
		return HS_ENOMEM;
	*slot = pool->n_slots++;
	return 0;
}

static void slot_free(hs__llm_pool_t *pool, uint32_t slot)
{
	pool->free[pool->n_free++] = slot;
}

static void job_remove(hs__llm_exec_t *ex, hs__llm_job_t *job)
{
	slot_free(&ex->pools[job->model], job->slot);
	*job = ex->jobs[--ex->n_jobs];
}

static int job_add(hs__llm_exec_t *ex, uint64_t id, uint32_t model,
		   hs__llm_job_t **out)
{
	hs__llm_job_t *job;
	uint32_t slot;

	if (hs__grow((void **)&ex->jobs, &ex->cap_jobs, ex->n_jobs + 1,
		     sizeof(*ex->jobs)))
		return HS_ENOMEM;
	if (slot_alloc(&ex->pools[model], &slot))
		return HS_ENOMEM;
	job = &ex->jobs[ex->n_jobs++];
	memset(job, 0, sizeof(*job));
	job->id = id;
	job->model = model;
	job->slot = slot;
	*out = job;
	return 0;
}

void hs__llm_exec_drop(hs__llm_exec_t *ex, uint64_t id)
{
	hs__llm_job_t *job;

	pthread_mutex_lock(&ex->lock);
	job = job_find(ex, id);
	if (job)
		job_remove(ex, job);
	pthread_mutex_unlock(&ex->lock);
}

static int batch_reserve(hs__llm_batch_t *b, size_t tokens, size_t jobs,
			 uint32_t vocab)
{
	size_t cap;

	if (tokens > b->cap_tokens) {
		cap = b->cap_tokens;
		if (hs__grow((void **)&b->tok, &cap, tokens, sizeof(*b->tok)))
			return HS_ENOMEM;
		cap = b->cap_tokens;
		if (hs__grow((void **)&b->pos, &cap, tokens, sizeof(*b->pos)))
			return HS_ENOMEM;
		cap = b->cap_tokens;
		if (hs__grow((void **)&b->slot, &cap, tokens, sizeof(*b->slot)))
			return HS_ENOMEM;
		b->cap_tokens = cap;
	}
	if (jobs > b->cap_jobs) {
		cap = b->cap_jobs;
		if (hs__grow((void **)&b->ids, &cap, jobs, sizeof(*b->ids)))
			return HS_ENOMEM;
		cap = b->cap_jobs;
		if (hs__grow((void **)&b->last, &cap, jobs, sizeof(*b->last)))
			return HS_ENOMEM;
		cap = b->cap_jobs;
		if (hs__grow((void **)&b->out, &cap, jobs, sizeof(*b->out)))
			return HS_ENOMEM;
		b->cap_jobs = cap;
	}
	if (jobs * vocab > b->cap_logits &&
	    hs__grow((void **)&b->logits, &b->cap_logits, jobs * vocab,
		     sizeof(*b->logits)))
		return HS_ENOMEM;
	return 0;
}

/* Jobs held but absent from the step left without a release(). */
static int drop_absent(hs__llm_exec_t *ex, const hs_step_t *step)
{
	size_t i;
	uint32_t j;

	for (i = 0; i < ex->n_jobs; i++)
		ex->jobs[i].seen = false;
	for (j = 0; j < step->batch; j++) {
		hs__llm_job_t *job = job_find(ex, step->jobs[j]);

		if (job)
			job->seen = true;
	}
	for (i = 0; i < ex->n_jobs;) {
		if (ex->jobs[i].seen)
			i++;
		else
			job_remove(ex, &ex->jobs[i]);
	}
	return 0;
}

static int plan_joiner(hs__llm_exec_t *ex, const hs_step_t *step, uint64_t id)
{
	const hs__llm_shape_t *s = &ex->shapes[step->model];
	hs__llm_batch_t *b = &ex->batch;
	static const uint32_t bos;
	const uint32_t *toks = NULL;
	hs__llm_job_t *job;
	uint32_t n = 0, i;
	int err;

	err = ex->io.prompt(ex->io.ud, id, &toks, &n);
	if (err)
		return err;
	if (n == 0) {
		toks = &bos;
		n = 1;
	}
	if (n > s->max_ctx)
		return HS_ERANGE;
	if (!toks)
		return HS_EINVAL;
	for (i = 0; i < n; i++)
		if (toks[i] >= s->vocab)
			return HS_EINVAL;

	job = job_find(ex, id);
	if (job && job->model != step->model) {
		job_remove(ex, job);
		job = NULL;
	}
	if (!job) {
		err = job_add(ex, id, step->model, &job);
		if (err)
			return err;
	}
	job->seen = true;
	job->len = 0;

	err = batch_reserve(b, (size_t)b->n_tokens + n, step->batch, s->vocab);
	if (err)
		return err;
	for (i = 0; i < n; i++) {
		b->tok[b->n_tokens] = toks[i];
		b->pos[b->n_tokens] = i;
		b->slot[b->n_tokens] = job->slot;
		b->n_tokens++;
	}
	b->ids[b->n_jobs] = id;
	b->last[b->n_jobs] = b->n_tokens - 1;
	b->n_jobs++;
	return 0;
}

static int plan_runner(hs__llm_exec_t *ex, const hs_step_t *step, uint64_t id)
{
	const hs__llm_shape_t *s = &ex->shapes[step->model];
	hs__llm_batch_t *b = &ex->batch;
	hs__llm_job_t *job = job_find(ex, id);
	int err;

	if (!job || job->model != step->model || job->len == 0)
		return HS_ESTATE;
	if (job->len >= s->max_ctx)
		return HS_ERANGE;
	err = batch_reserve(b, (size_t)b->n_tokens + 1, step->batch, s->vocab);
	if (err)
		return err;
	b->tok[b->n_tokens] = job->next;
	b->pos[b->n_tokens] = job->len;
	b->slot[b->n_tokens] = job->slot;
	b->ids[b->n_jobs] = id;
	b->last[b->n_jobs] = b->n_tokens;
	b->n_tokens++;
	b->n_jobs++;
	return 0;
}

int hs__llm_exec_begin(hs__llm_exec_t *ex, const hs_step_t *step)
{
	hs__llm_batch_t *b = &ex->batch;
	uint32_t j;
	int err = 0;

	pthread_mutex_lock(&ex->lock);
	ex->steps++;
	b->n_jobs = 0;
	b->n_tokens = 0;
	if (ex->fail_after && ex->steps > ex->fail_after) {
		err = HS_EBACKEND;
		goto out_unlock;
	}
	if (step->model >= ex->n_models || step->joining > step->batch ||
	    step->batch == 0 || !step->jobs) {
		err = HS_EINVAL;
		goto out_unlock;
	}
	if (!ex->runnable[step->model]) {
		err = HS_EUNSUPP;
		goto out_unlock;
	}
	b->model = step->model;
	b->vocab = ex->shapes[step->model].vocab;

	err = drop_absent(ex, step);
	for (j = 0; !err && j < step->joining; j++)
		err = plan_joiner(ex, step, step->jobs[j]);
	for (j = step->joining; !err && j < step->batch; j++)
		err = plan_runner(ex, step, step->jobs[j]);

out_unlock:
	if (err)
		b->n_jobs = b->n_tokens = 0;
	ex->failed = err != 0;
	pthread_mutex_unlock(&ex->lock);
	return err;
}

void hs__llm_exec_end(hs__llm_exec_t *ex)
{
	hs__llm_batch_t *b = &ex->batch;
	uint32_t j;

	pthread_mutex_lock(&ex->lock);
	for (j = 0; j < b->n_jobs; j++) {
		hs__llm_job_t *job = job_find(ex, b->ids[j]);

		if (!job) {
			/* Released during the step: nobody wants it. */
			b->ids[j] = UINT64_MAX;
			continue;
		}
		job->len = b->pos[b->last[j]] + 1;
		job->next = b->out[j];
	}
	pthread_mutex_unlock(&ex->lock);

	if (!ex->io.token || ex->warming)
		return;
	for (j = 0; j < b->n_jobs; j++)
		if (b->ids[j] != UINT64_MAX)
			ex->io.token(ex->io.ud, b->ids[j], b->out[j]);
}

/* ------------------------------------------------------------------------ */
/* The CPU reference forward pass                                           */
/* ------------------------------------------------------------------------ */

/* Room for need floats in *buf; its contents need not survive. */
static int scratch_grow(float **buf, size_t *cap, size_t need)
{
	float *p;

	if (need <= *cap)
		return 0;
	p = hs__malloc(need * sizeof(float));
	if (!p)
		return HS_ENOMEM;
	hs__free(*buf);
	*buf = p;
	*cap = need;
	return 0;
}

int hs__llm_scratch_reserve(hs__llm_scratch_t *s, const hs__llm_shape_t *sh,
			    size_t n_tokens, size_t n_jobs)
{
	size_t xn = sh->d > sh->q_dim ? sh->d : sh->q_dim;

	/* Each buffer grows alone: a failure leaves s valid, if bigger. */
	if (scratch_grow(&s->x, &s->cap_x, n_tokens * sh->d) ||
	    scratch_grow(&s->xn, &s->cap_xn, n_tokens * xn) ||
	    scratch_grow(&s->qkv, &s->cap_qkv, n_tokens * sh->qkv_dim) ||
	    scratch_grow(&s->h, &s->cap_h, n_tokens * 2 * sh->d_ff) ||
	    scratch_grow(&s->g, &s->cap_g, n_tokens * sh->d_ff) ||
	    scratch_grow(&s->lx, &s->cap_lx, n_jobs * sh->d))
		return HS_ENOMEM;
	return 0;
}

void hs__llm_scratch_release(hs__llm_scratch_t *s)
{
	hs__free(s->x);
	hs__free(s->xn);
	hs__free(s->qkv);
	hs__free(s->h);
	hs__free(s->g);
	hs__free(s->lx);
	memset(s, 0, sizeof(*s));
}

/*
 * Partial sums in eight lanes, as two four-float vectors: the width every
 * x86-64 has, so that GCC and Clang keep them in registers. The sum order
 * is fixed by the lanes, not by the compiler.
 */
typedef float v4f __attribute__((vector_size(16)));

static inline v4f load4(const float *p)
{
	v4f v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static inline float hsum8(v4f lo, v4f hi)
{
	v4f s = lo + hi;

	return (s[0] + s[1]) + (s[2] + s[3]);
}

static inline void put(float *y, float v, bool add)
{
	if (add)
		*y += v;
	else
		*y = v;
}

/*
 * y[t][r] (= or +=) W[r] . x[t] for rows [lo, hi) and every token: each
 * weight row is read once for the whole step. Four tokens share a pass
 * over the row; a lone token takes the same lanes in the same order, so
 * its result does not depend on the tokens around it.
 */
static void matmul(float *y, size_t ldy, const float *W, const float *x,
		   size_t ldx, size_t K, size_t T, size_t lo, size_t hi,
		   bool add)
{
	size_t r, t, k, K8 = K & ~(size_t)7;

	for (r = lo; r < hi; r++) {
		const float *w = W + r * K;

		for (t = 0; t + 4 <= T; t += 4) {
			const float *x0 = x + t * ldx, *x1 = x0 + ldx;
			const float *x2 = x1 + ldx, *x3 = x2 + ldx;
			v4f a0 = {0}, b0 = {0}, a1 = {0}, b1 = {0};
			v4f a2 = {0}, b2 = {0}, a3 = {0}, b3 = {0};
			float s0 = 0, s1 = 0, s2 = 0, s3 = 0;

			for (k = 0; k < K8; k += 8) {
				v4f wl = load4(w + k), wh = load4(w + k + 4);

				a0 += wl * load4(x0 + k);
				b0 += wh * load4(x0 + k + 4);
				a1 += wl * load4(x1 + k);
				b1 += wh * load4(x1 + k + 4);
				a2 += wl * load4(x2 + k);
				b2 += wh * load4(x2 + k + 4);
				a3 += wl * load4(x3 + k);
				b3 += wh * load4(x3 + k + 4);
			}
			for (; k < K; k++) {
				s0 += w[k] * x0[k];
				s1 += w[k] * x1[k];
				s2 += w[k] * x2[k];
				s3 += w[k] * x3[k];
			}
			put(&y[t * ldy + r], s0 + hsum8(a0, b0), add);
			put(&y[(t + 1) * ldy + r], s1 + hsum8(a1, b1), add);
			put(&y[(t + 2) * ldy + r], s2 + hsum8(a2, b2), add);
			put(&y[(t + 3) * ldy + r], s3 + hsum8(a3, b3), add);
		}
		for (; t < T; t++) {
			const float *x0 = x + t * ldx;
			v4f a0 = {0}, b0 = {0};
			float s0 = 0;

			for (k = 0; k < K8; k += 8) {
				a0 += load4(w + k) * load4(x0 + k);
				b0 += load4(w + k + 4) * load4(x0 + k + 4);
			}
			for (; k < K; k++)
				s0 += w[k] * x0[k];
			put(&y[t * ldy + r], s0 + hsum8(a0, b0), add);
		}
	}
}

static void rmsnorm(float *out, const float *x, const float *g, size_t d)
{
	double ss = 0;
	float scale;
	size_t i;

	for (i = 0; i < d; i++)
		ss += (double)x[i] * x[i];
	scale = 1.0f / sqrtf((float)(ss / (double)d) + HS_LLM_NORM_EPS);
	for (i = 0; i < d; i++)
		out[i] = x[i] * scale * g[i];
}

static void rope(float *v, const float *cs, uint32_t heads, uint32_t hd)
{
	uint32_t h, i;

	for (h = 0; h < heads; h++) {
		float *p = v + (size_t)h * hd;

		for (i = 0; i < hd / 2; i++) {
			float c = cs[2 * i], s = cs[2 * i + 1];
			float a = p[2 * i], b = p[2 * i + 1];

			p[2 * i] = a * c - b * s;
			p[2 * i + 1] = a * s + b * c;
		}
	}
}

/* Positions scored at a time: the softmax is exact and online across
 * blocks, so attention needs no scratch as long as its context. */
#define ATT_BLOCK 64
/* K and V of one KV head: [pos][hd], rows contiguous. */
static void attend(float *out, const float *q, const hs__kv_t *K,
		   const hs__kv_t *V, uint32_t n, const hs__llm_shape_t *s)
{
	uint32_t hd = s->hd, b, p, i, len;
	uint32_t blk = ATT_BUF / hd < ATT_BLOCK ? ATT_BUF / hd : ATT_BLOCK;
	float scale = 1.0f / sqrtf((float)hd), m = -INFINITY, sum = 0;
	float sc[ATT_BLOCK], buf[ATT_BUF];

	for (i = 0; i < hd; i++)
		out[i] = 0;
	for (b = 0; b < n; b += blk) {
		float bm = -INFINITY, c;

		len = n - b < blk ? n - b : blk;
		hs__kv_to_floats(buf, K + (size_t)b * hd, (size_t)len * hd);
		for (p = 0; p < len; p++) {
			const float *k = buf + (size_t)p * hd;
			float dot = 0;

			for (i = 0; i < hd; i++)
				dot += q[i] * k[i];
			sc[p] = dot * scale;
			if (sc[p] > bm)
				bm = sc[p];
		}
		if (bm > m) {
			c = expf(m - bm);
			sum *= c;
			for (i = 0; i < hd; i++)
				out[i] *= c;
			m = bm;
		}
		hs__kv_to_floats(buf, V + (size_t)b * hd, (size_t)len * hd);
		for (p = 0; p < len; p++) {
			const float *v = buf + (size_t)p * hd;
			float e = expf(sc[p] - m);

			sum += e;
			for (i = 0; i < hd; i++)
				out[i] += e * v[i];
		}
	}
	for (i = 0; i < hd; i++)
		out[i] /= sum;
}

/* One phase of the pass: the pass and the layer it works on. */
struct phase {
	const hs__llm_fwd_t *f;
	uint32_t l;
};

static void run_phase(const hs__llm_fwd_t *f, uint32_t l, size_t n,
		      size_t grain, hs__llm_range_fn fn)
{
	struct phase ph = {f, l};

	if (n == 0)
		return;
	if (f->pfor)
		f->pfor(f->ud, n, grain ? grain : 1, fn, &ph);
	else
		fn(&ph, 0, n);
}

/* Rows of a matrix per range: a few dozen ranges for the smallest. */
#define ROW_GRAIN 16

static size_t ldxn(const hs__llm_shape_t *s)
{
	return s->d > s->q_dim ? s->d : s->q_dim;
}

static void ph_attn_norm(void *arg, size_t lo, size_t hi)
{
	const struct phase *ph = arg;
	const hs__llm_weights_t *w = ph->f->w;
	const hs__llm_shape_t *s = &w->shape;
	hs__llm_scratch_t *sc = ph->f->s;
	size_t t;

	for (t = lo; t < hi; t++) {
		if (ph->l == 0)
			memcpy(sc->x + t * s->d,
			       w->embed + (size_t)ph->f->b->tok[t] * s->d,
			       s->d * sizeof(float));
		rmsnorm(sc->xn + t * ldxn(s), sc->x + t * s->d,
			w->layer[ph->l].attn_norm, s->d);
	}
}

static void ph_qkv(void *arg, size_t lo, size_t hi)
{
	const struct phase *ph = arg;
	const hs__llm_shape_t *s = &ph->f->w->shape;
	hs__llm_scratch_t *sc = ph->f->s;

	matmul(sc->qkv, s->qkv_dim, ph->f->w->layer[ph->l].wqkv, sc->xn,
	       ldxn(s), s->d, ph->f->b->n_tokens, lo, hi, false);
}

static void ph_rope(void *arg, size_t lo, size_t hi)
{
	const struct phase *ph = arg;
	const hs__llm_weights_t *w = ph->f->w;
	const hs__llm_shape_t *s = &w->shape;
	const hs__llm_batch_t *b = ph->f->b;
	size_t koff = hs__llm_kv_offset(s, ph->l, 0);
	size_t voff = hs__llm_kv_offset(s, ph->l, 1);
	size_t t;

	for (t = lo; t < hi; t++) {
		float *q = ph->f->s->qkv + t * s->qkv_dim, *k = q + s->q_dim;
		const float *cs = w->rope + (size_t)b->pos[t] * s->hd;
		hs__kv_t *kv = ph->f->kv[b->slot[t]];
		size_t at = (size_t)b->pos[t] * s->hd, h, head;

		rope(q, cs, s->n_heads, s->hd);
		rope(k, cs, s->n_kv, s->hd);
		for (h = 0; h < s->n_kv; h++) {
			head = h * s->max_ctx * s->hd + at;
			hs__kv_from_floats(kv + koff + head, k + h * s->hd,
					   s->hd);
			hs__kv_from_floats(kv + voff + head,
					   k + s->kv_dim + h * s->hd, s->hd);
		}
	}
}

/* Items are (token, head) pairs. */
static void ph_attention(void *arg, size_t lo, size_t hi)
{
	const struct phase *ph = arg;
	const hs__llm_shape_t *s = &ph->f->w->shape;
	const hs__llm_batch_t *b = ph->f->b;
	hs__llm_scratch_t *sc = ph->f->s;
	size_t koff = hs__llm_kv_offset(s, ph->l, 0);
	size_t voff = hs__llm_kv_offset(s, ph->l, 1);
	size_t i, group = s->n_heads / s->n_kv;

	for (i = lo; i < hi; i++) {
		size_t t = i / s->n_heads, h = i % s->n_heads;
		size_t kvh = h / group;
		const hs__kv_t *kv = ph->f->kv[b->slot[t]];

		attend(sc->xn + t * ldxn(s) + h * s->hd,
		       sc->qkv + t * s->qkv_dim + h * s->hd,
		       kv + koff + kvh * s->max_ctx * s->hd,
		       kv + voff + kvh * s->max_ctx * s->hd, b->pos[t] + 1, s);
	}
}

static void ph_wo(void *arg, size_t lo, size_t hi)
{
	const struct phase *ph = arg;
	const hs__llm_shape_t *s = &ph->f->w->shape;
	hs__llm_scratch_t *sc = ph->f->s;

	matmul(sc->x, s->d, ph->f->w->layer[ph->l].wo, sc->xn, ldxn(s),
	       s->q_dim, ph->f->b->n_tokens, lo, hi, true);
}

static void ph_ffn_norm(void *arg, size_t lo, size_t hi)
{
	const struct phase *ph = arg;
	const hs__llm_shape_t *s = &ph->f->w->shape;
	hs__llm_scratch_t *sc = ph->f->s;
	size_t t;

	for (t = lo; t < hi; t++)
		rmsnorm(sc->xn + t * ldxn(s), sc->x + t * s->d,
			ph->f->w->layer[ph->l].ffn_norm, s->d);
}

static void ph_w13(void *arg, size_t lo, size_t hi)
{
	const struct phase *ph = arg;
	const hs__llm_shape_t *s = &ph->f->w->shape;
	hs__llm_scratch_t *sc = ph->f->s;

	matmul(sc->h, 2 * (size_t)s->d_ff, ph->f->w->layer[ph->l].w13, sc->xn,
	       ldxn(s), s->d, ph->f->b->n_tokens, lo, hi, false);
}

static void ph_swiglu(void *arg, size_t lo, size_t hi)
{
	const struct phase *ph = arg;
	const hs__llm_shape_t *s = &ph->f->w->shape;
	hs__llm_scratch_t *sc = ph->f->s;
	size_t t, j;

	for (t = lo; t < hi; t++) {
		const float *h = sc->h + t * 2 * s->d_ff;
		float *g = sc->g + t * s->d_ff;

		for (j = 0; j < s->d_ff; j++) {
			float a = h[j];

			g[j] = a / (1.0f + expf(-a)) * h[s->d_ff + j];
		}
	}
}

static void ph_w2(void *arg, size_t lo, size_t hi)
{
	const struct phase *ph = arg;
	const hs__llm_shape_t *s = &ph->f->w->shape;
	hs__llm_scratch_t *sc = ph->f->s;

	matmul(sc->x, s->d, ph->f->w->layer[ph->l].w2, sc->g, s->d_ff, s->d_ff,
	       ph->f->b->n_tokens, lo, hi, true);
}

/* Items are jobs: the norm of each job's last token. */
static void ph_final_norm(void *arg, size_t lo, size_t hi)
{
	const struct phase *ph = arg;
	const hs__llm_weights_t *w = ph->f->w;
	const hs__llm_shape_t *s = &w->shape;
	hs__llm_scratch_t *sc = ph->f->s;
	size_t j;

	for (j = lo; j < hi; j++)
		rmsnorm(sc->lx + j * s->d,
			sc->x + (size_t)ph->f->b->last[j] * s->d, w->final_norm,
			s->d);
}

static void ph_logits(void *arg, size_t lo, size_t hi)
{
	const struct phase *ph = arg;
	const hs__llm_shape_t *s = &ph->f->w->shape;

	matmul(ph->f->b->logits, s->vocab, ph->f->w->out, ph->f->s->lx, s->d,
	       s->d, ph->f->b->n_jobs, lo, hi, false);
}

static void ph_pick(void *arg, size_t lo, size_t hi)
{
	const struct phase *ph = arg;
	const hs__llm_shape_t *s = &ph->f->w->shape;
	hs__llm_batch_t *b = ph->f->b;
	size_t j, v;

	for (j = lo; j < hi; j++) {
		const float *lg = b->logits + j * s->vocab;
		uint32_t best = 0;

		/* Ties go to the lowest id, as the argmax kernel does. */
		for (v = 1; v < s->vocab; v++)
			if (lg[v] > lg[best])
				best = (uint32_t)v;
		b->out[j] = best;
	}
}

void hs__llm_forward(const hs__llm_fwd_t *f)
{
	const hs__llm_shape_t *s = &f->w->shape;
	size_t T = f->b->n_tokens, B = f->b->n_jobs;
	uint32_t l;

	for (l = 0; l < s->layers; l++) {
		run_phase(f, l, T, 1, ph_attn_norm);
		run_phase(f, l, s->qkv_dim, ROW_GRAIN, ph_qkv);
		run_phase(f, l, T, 1, ph_rope);
		run_phase(f, l, T * s->n_heads, 1, ph_attention);
		run_phase(f, l, s->d, ROW_GRAIN, ph_wo);
		run_phase(f, l, T, 1, ph_ffn_norm);
		run_phase(f, l, 2 * (size_t)s->d_ff, ROW_GRAIN, ph_w13);
		run_phase(f, l, T, 1, ph_swiglu);
		run_phase(f, l, s->d, ROW_GRAIN, ph_w2);
	}
	run_phase(f, 0, B, 1, ph_final_norm);
	run_phase(f, 0, s->vocab, ROW_GRAIN, ph_logits);
	run_phase(f, 0, B, 1, ph_pick);
}

/* ------------------------------------------------------------------------ */
/* For tests and benchmarks                                                 */
/* ------------------------------------------------------------------------ */

int hs__executor_last_logits(void *exec, uint64_t job, const float **logits,
			     uint32_t *vocab)
{
	hs__llm_exec_t *ex = exec;
	const hs__llm_batch_t *b = &ex->batch;
	uint32_t j;

	if (ex->failed)
		return HS_ENOENT;
	for (j = 0; j < b->n_jobs; j++) {
		if (b->ids[j] != job)
			continue;
		*logits = b->logits + (size_t)j * b->vocab;
		*vocab = b->vocab;
		return 0;
	}
	return HS_ENOENT;
}

uint32_t hs__executor_kv_slots(void *exec, uint32_t model)
{
	hs__llm_exec_t *ex = exec;
	uint32_t n = 0;

	pthread_mutex_lock(&ex->lock);
	if (model < ex->n_models)
		n = ex->pools[model].n_slots;
	pthread_mutex_unlock(&ex->lock);
	return n;
}

int hs__executor_adopt(void *exec, uint32_t model, uint64_t id, uint32_t len,
		       uint32_t next)
{
	hs__llm_exec_t *ex = exec;
	hs__llm_job_t *job;
	int err;

	pthread_mutex_lock(&ex->lock);
	if (model >= ex->n_models || !ex->runnable[model]) {
		err = HS_EUNSUPP;
		goto out_unlock;
	}
	if (len == 0 || len >= ex->shapes[model].max_ctx ||
	    next >= ex->shapes[model].vocab) {
		err = HS_ERANGE;
		goto out_unlock;
	}
	if (job_find(ex, id)) {
		err = HS_EEXIST;
		goto out_unlock;
	}
	err = job_add(ex, id, model, &job);
	if (err)
		goto out_unlock;
	job->len = len;
	job->next = next;
	err = ex->zero_slot(ex, model, job->slot);
	if (err)
		job_remove(ex, job);

out_unlock:
	pthread_mutex_unlock(&ex->lock);
	return err;
}

/* The scratch job's context; its id, one per model, is none the core
 * hands out (ids there are a slot's generation and index). */
#define WARM_CONTEXT 32
#define WARM_JOB(m) (UINT64_MAX - 1 - (m)) /* UINT64_MAX: dropped */

int hs__executor_step(const struct hs_executor_ops *ops, void *exec,
		      uint32_t model, const uint64_t *ids, uint32_t n,
		      uint32_t joining, int64_t *ns)
{
	hs_step_t st;
	double e;

	memset(&st, 0, sizeof(st));
	st.model = model;
	st.batch = n;
	st.joining = joining;
	st.jobs = ids;
	return ops->run_step(exec, &st, ns, &e);
}

int hs__executor_warm_up(const struct hs_executor_ops *ops, void *exec)
{
	hs__llm_exec_t *ex = exec;
	uint64_t fail_after = ex->fail_after;
	uint32_t m;
	int err = 0;

	pthread_mutex_lock(&ex->lock);
	ex->fail_after = 0;
	ex->warming = true;
	pthread_mutex_unlock(&ex->lock);
	for (m = 0; !err && m < ex->n_models; m++) {
		uint64_t id = WARM_JOB(m);
		unsigned s;

		if (!ex->runnable[m] ||
		    ex->shapes[m].max_ctx <= WARM_CONTEXT + HS__WARM_STEPS)
			continue;
		err = hs__executor_adopt(exec, m, id, WARM_CONTEXT, 'a');
		for (s = 0; !err && s < HS__WARM_STEPS; s++) {
			int64_t ns;

			err = hs__executor_step(ops, exec, m, &id, 1, 0, &ns);
		}
		ops->release(exec, id);
	}
	pthread_mutex_lock(&ex->lock);
	ex->fail_after = fail_after;
	ex->warming = false;
	ex->steps = 0;
	pthread_mutex_unlock(&ex->lock);
	return err;
}
