/*
 * Private to hetsched's devices/ layer: not part of the public API.
 *
 * The decoder that the real executors (cpu, opencl) run: a llama-style
 * transformer (token embedding, RMSNorm, attention with RoPE over a KV
 * cache with grouped KV heads, SwiGLU MLP, final norm, logits, greedy
 * pick) with deterministic synthetic weights, a byte-level tokenizer, the
 * bookkeeping both executors share (jobs, KV-cache slots, the tokens of a
 * step) and the CPU reference forward pass that the OpenCL kernels are
 * checked against.
 *
 * Both executors put an hs__llm_exec_t first in their state, so that the
 * hs__executor_* helpers at the end work on either through the void * that
 * hs_executor_ops.open returns.
 */
#ifndef HS_LLM_H
#define HS_LLM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "executor.h"

/* RMSNorm epsilon and RoPE base, as in Llama 2. */
#define HS_LLM_NORM_EPS 1e-5f
#define HS_LLM_ROPE_THETA 10000.0

/* ------------------------------------------------------------------------ */
/* Shapes and weights                                                       */
/* ------------------------------------------------------------------------ */

/* A runnable model's shape as the decoder uses it. */
typedef struct hs__llm_shape_s {
	uint32_t layers;
	uint32_t d; /* d_model */
	uint32_t n_heads;
	uint32_t n_kv; /* KV heads; n_heads is a multiple of it */
	uint32_t hd; /* head_dim, even (RoPE rotates pairs) */
	uint32_t d_ff;
	uint32_t vocab;
	uint32_t max_ctx;
	uint32_t q_dim; /* n_heads * hd */
	uint32_t kv_dim; /* n_kv * hd */
	uint32_t qkv_dim; /* q_dim + 2 * kv_dim */
} hs__llm_shape_t;

/*
 * Whether a model can run here: runnable in the catalog, dense, with a
 * shape the decoder supports (n_heads a multiple of n_kv_heads, even
 * head_dim). Weights are float32 whatever dtype_bytes says.
 */
bool hs__llm_runnable(const hs_model_t *m);
/* Fill s from m. HS_EUNSUPP unless hs__llm_runnable(m). */
int hs__llm_shape(hs__llm_shape_t *s, const hs_model_t *m);

/*
 * Matrices are row-major [out][in]: a row is the weights of one output, so
 * that a matmul streams each row once for all the tokens of a step.
 */
typedef struct hs__llm_layer_s {
	float *attn_norm; /* [d] */
	float *wqkv; /* [qkv_dim][d]: q rows, k rows, v rows */
	float *wo; /* [d][q_dim] */
	float *ffn_norm; /* [d] */
	float *w13; /* [2 d_ff][d]: gate rows, then up rows */
	float *w2; /* [d][d_ff] */
} hs__llm_layer_t;

typedef struct hs__llm_weights_s {
	hs__llm_shape_t shape;
	float *embed; /* [vocab][d] */
	hs__llm_layer_t *layer;
	float *final_norm; /* [d] */
	float *out; /* [vocab][d] */
	float *rope; /* [max_ctx][hd / 2][2]: cos, sin */
	float *blob; /* everything above, one block */
	size_t n_floats;
} hs__llm_weights_t;

/*
 * Build the synthetic weights of a model. They depend on the model alone
 * (its shape and its catalog seed), so every device that runs it runs the
 * same network and a job requeued from one to another continues the same
 * text: splitmix64 uniforms in [-1, 1) scaled by 1/sqrt(fan_in) for the
 * matrices, norm gains in [0.9, 1.1), an embedding of unit scale. The RoPE
 * table is computed in double. On success *out is owned by the caller.
 * HS_EUNSUPP for a model that is not runnable, HS_ENOMEM.
 */
int hs__llm_weights_new(hs__llm_weights_t **out, const hs_model_t *m);
void hs__llm_weights_free(hs__llm_weights_t *w);

/*
 * Bytes a decode step reads for its weights, whatever the batch: every
 * matrix and gain, but one embedding row per token (counted once here).
 */
uint64_t hs__llm_weight_bytes_read(const hs__llm_shape_t *s);
/*
 * The KV cache holds IEEE 754 binary16 values (FP16, as most inference
 * engines keep it), rounded to nearest even as they are stored; the maths
 * around them is FP32. A batched decode step reads every job's cache, so
 * half the bytes is half the memory traffic of attention.
 */
typedef uint16_t hs__kv_t;

/* FP32 to FP16, rounded to nearest even; NaN stays NaN, too large is inf. */
static inline hs__kv_t hs__kv_from_float(float f)
{
	union {
		float f;
		uint32_t u;
	} x = {f}, t;
	uint32_t sign = (x.u >> 16) & 0x8000u, a = x.u & 0x7fffffffu;

	if (a >= 0x7f800000u) /* inf, NaN (kept quiet) */
		return (hs__kv_t)(sign | 0x7c00u |
				  (a > 0x7f800000u ? 0x200u : 0));
	if (a >= 0x477ff000u) /* 65520 and up round to inf */
		return (hs__kv_t)(sign | 0x7c00u);
	if (a < 0x38800000u) { /* below 2^-14: a subnormal half, or zero */
		/* Adding 0.5 leaves units of 2^-24 in the low bits, rounded
		 * by the FPU to nearest even. */
		x.u = a;
		t.f = x.f + 0.5f;
		return (hs__kv_t)(sign | (t.u - 0x3f000000u));
	}
	/* Rebias the exponent; round the 13 bits dropped to nearest even. */
	a += 0xc8000fffu + ((a >> 13) & 1);
	return (hs__kv_t)(sign | (a >> 13));
}

/* FP16 to FP32: exact. */
static inline float hs__kv_to_float(hs__kv_t h)
{
	union {
		uint32_t u;
		float f;
	} o = {(uint32_t)(h & 0x7fffu) << 13}, sub = {113u << 23};
	uint32_t e = o.u & (0x7c00u << 13);

	o.u += (127u - 15u) << 23;
	if (e == 0x7c00u << 13) { /* inf, NaN */
		o.u += (128u - 16u) << 23;
	} else if (e == 0) { /* zero, subnormal: renormalise */
		o.u += 1u << 23;
		o.f -= sub.f;
	}
	o.u |= (uint32_t)(h & 0x8000u) << 16;
	return o.f;
}

/*
 * n values at a time, as the two functions above convert them: with the
 * x86 F16C instructions where the CPU has them (the same rounding; only a
 * NaN's payload bits may differ, a NaN either way), one at a time
 * elsewhere. hs__kv_f16c tells which (tests compare the two).
 */
void hs__kv_to_floats(float *dst, const hs__kv_t *src, size_t n);
void hs__kv_from_floats(hs__kv_t *dst, const float *src, size_t n);
void hs__kv_to_floats_portable(float *dst, const hs__kv_t *src, size_t n);
void hs__kv_from_floats_portable(hs__kv_t *dst, const float *src, size_t n);
bool hs__kv_f16c(void);

/* Bytes of K and V one token of context adds to a job's cache. */
uint64_t hs__llm_kv_bytes_per_token(const hs__llm_shape_t *s);
/* Offset, in values, of K (kv 0) or V (kv 1) of a layer in a slot's
 * cache as the reference lays it out, [layer][K|V][kv_head][pos][hd].
 * (The OpenCL kernels block K by 16 positions: see decoder.cl.) */
size_t hs__llm_kv_offset(const hs__llm_shape_t *s, uint32_t layer, uint32_t kv);
/* Values in one slot's cache: layers x 2 x max_ctx x kv_dim. */
size_t hs__llm_kv_slot_values(const hs__llm_shape_t *s);

/* ------------------------------------------------------------------------ */
/* Byte-level tokenizer                                                     */
/* ------------------------------------------------------------------------ */

/*
 * Text to token ids: one id per byte (0..255), which is the whole
 * vocabulary of the runnable models. Writes at most cap ids; returns the
 * number the whole text needs (strlen), so a caller can size and retry.
 */
size_t hs__tok_encode(const char *text, uint32_t *ids, size_t cap);
/*
 * Token ids to text, NUL-terminated in buf (size > 0); ids above 255 and
 * NUL bytes become '?'. Returns the number of ids decoded (at most
 * size - 1).
 */
size_t hs__tok_decode(const uint32_t *ids, size_t n, char *buf, size_t size);

/* ------------------------------------------------------------------------ */
/* Jobs, KV slots and steps: what both executors share                      */
/* ------------------------------------------------------------------------ */

/* A job an executor holds: where its cache is and how far it got. */
typedef struct hs__llm_job_s {
	uint64_t id;
	uint32_t model;
	uint32_t slot; /* in the model's pool */
	uint32_t len; /* positions in its cache */
	uint32_t next; /* the token it feeds at the next step */
	bool seen; /* in the step being planned */
} hs__llm_job_t;

/*
 * The KV-cache slots of one model: slot indices are handed out from a
 * free list, so a finished job's slot (and its memory) is reused by the
 * next job; n_slots only grows when more jobs run at once than ever
 * before. Backends size their storage by n_slots.
 */
typedef struct hs__llm_pool_s {
	uint32_t n_slots;
	uint32_t *free;
	uint32_t n_free;
	size_t cap_free;
} hs__llm_pool_t;

/*
 * One step as the maths sees it: its tokens in order (each joining job's
 * prefill tokens, then one token per running job), where each goes in
 * which cache, and per job the index of its last token (whose logits pick
 * its next token). Backends fill out[] and logits[].
 */
typedef struct hs__llm_batch_s {
	uint32_t model;
	uint32_t n_jobs;
	uint32_t n_tokens;
	uint32_t *tok; /* [n_tokens] token ids */
	uint32_t *pos; /* [n_tokens] position in the job's cache */
	uint32_t *slot; /* [n_tokens] the job's KV slot */
	uint64_t *ids; /* [n_jobs] job ids, in step order */
	uint32_t *last; /* [n_jobs] index of the job's last token */
	uint32_t *out; /* [n_jobs] the token each job made */
	float *logits; /* [n_jobs][vocab] of the last tokens */
	uint32_t vocab;
	size_t cap_tokens;
	size_t cap_jobs;
	size_t cap_logits;
} hs__llm_batch_t;

/*
 * The state both executors start with. The lock guards the job table and
 * the pools: release() may come from another thread than run_step, even
 * during a step.
 */
typedef struct hs__llm_exec_s {
	size_t n_models;
	hs__llm_shape_t *shapes; /* [n_models] */
	bool *runnable; /* [n_models] */
	hs__llm_pool_t *pools; /* [n_models] */
	hs__llm_job_t *jobs; /* held jobs, unordered */
	size_t n_jobs;
	size_t cap_jobs;
	hs__llm_batch_t batch;
	hs_executor_io_t io;
	uint64_t fail_after; /* steps before injected faults; 0: none */
	bool warming; /* hs__executor_warm_up runs: no io calls */
	uint64_t steps; /* run_step calls so far */
	bool failed; /* the last step failed */
	/* The backend's part of hs__executor_adopt: make room for the slot
	 * and zero its cache. Called with the lock held. */
	int (*zero_slot)(struct hs__llm_exec_s *ex, uint32_t model,
			 uint32_t slot);
	pthread_mutex_t lock;
} hs__llm_exec_t;

/*
 * Set up the shared state for a catalog. opts->io with a prompt callback
 * is required (HS_EINVAL without). 0, HS_EINVAL or HS_ENOMEM; on failure
 * nothing is left to release.
 */
int hs__llm_exec_init(hs__llm_exec_t *ex, const hs_model_catalog_t *models,
		      const hs_executor_opts_t *opts);
void hs__llm_exec_release(hs__llm_exec_t *ex);

/*
 * Plan a step into ex->batch: count it against fail_after_steps (then
 * HS_EBACKEND), drop the jobs held that are not in it (they left and
 * release() was missed), give each joining job a slot (its old one if it
 * had one) and its tokens from io->prompt (an empty prompt is fed a single
 * token 0), and queue one token for every running job. HS_EUNSUPP for a
 * model that is not runnable, HS_EINVAL for a bad step or token id,
 * HS_ESTATE for a running job the executor does not hold, HS_ERANGE when a
 * job would outgrow the model's context, HS_ENOMEM, or what io->prompt
 * returned.
 */
int hs__llm_exec_begin(hs__llm_exec_t *ex, const hs_step_t *step);
/*
 * Commit a step whose out[] the backend filled: advance each job still
 * held and hand its token to io->token. Call without ex->lock held.
 */
void hs__llm_exec_end(hs__llm_exec_t *ex);
/* Forget a job and free its slot (release()). Unknown ids are ignored. */
void hs__llm_exec_drop(hs__llm_exec_t *ex, uint64_t job);

/* The measured wall time of a step: CLOCK_MONOTONIC in ns. */
int64_t hs__llm_now_ns(void);

/* ------------------------------------------------------------------------ */
/* The CPU reference forward pass                                           */
/* ------------------------------------------------------------------------ */

/* Activations of a step, grown to the largest step seen. */
typedef struct hs__llm_scratch_s {
	float *x; /* [T][d] residual stream */
	float *xn; /* [T][max(d, q_dim)] normed input, attention out */
	float *qkv; /* [T][qkv_dim] */
	float *h; /* [T][2 d_ff] gate and up */
	float *g; /* [T][d_ff] SwiGLU */
	float *lx; /* [B][d] normed last tokens */
	/* Floats each holds: a step of another model (other widths) may
	 * need more with fewer tokens. */
	size_t cap_x, cap_xn, cap_qkv, cap_h, cap_g, cap_lx;
} hs__llm_scratch_t;

/* Grow s for a step of n_tokens tokens and n_jobs jobs. 0 or HS_ENOMEM
 * (s unchanged, still valid). */
int hs__llm_scratch_reserve(hs__llm_scratch_t *s, const hs__llm_shape_t *sh,
			    size_t n_tokens, size_t n_jobs);
void hs__llm_scratch_release(hs__llm_scratch_t *s);

/* Work on items [lo, hi) of a phase of the pass. */
typedef void (*hs__llm_range_fn)(void *arg, size_t lo, size_t hi);

/* A forward pass over one batch. kv[slot] is that slot's cache. */
typedef struct hs__llm_fwd_s {
	const hs__llm_weights_t *w;
	hs__llm_batch_t *b;
	hs__kv_t *const *kv;
	hs__llm_scratch_t *s;
	/*
	 * Run fn over items [0, n) in ranges of about grain items, on any
	 * threads, and return once every range is done (its writes visible
	 * to the caller). NULL: the calling thread runs them all.
	 */
	void (*pfor)(void *ud, size_t n, size_t grain, hs__llm_range_fn fn,
		     void *arg);
	void *ud;
} hs__llm_fwd_t;

/*
 * Run the pass: a sequence of phases (norms, matmuls by weight rows, RoPE,
 * attention by token and head, SwiGLU, logits, greedy pick), each handed
 * to f->pfor. Fills b->logits and b->out. Each result is computed by one
 * call in an order that depends neither on the batch nor on how the items
 * are shared out, so a job's tokens are the same alone or batched, and on
 * any number of threads.
 */
void hs__llm_forward(const hs__llm_fwd_t *f);

/* ------------------------------------------------------------------------ */
/* For tests and benchmarks, on an open cpu or opencl executor              */
/* ------------------------------------------------------------------------ */

/*
 * The logits a job's token was picked from at the last step (vocab
 * floats, valid until the next step). HS_ENOENT when the job was not in
 * it.
 */
int hs__executor_last_logits(void *exec, uint64_t job, const float **logits,
			     uint32_t *vocab);
/* KV-cache slots a model's pool has ever handed out at once. */
uint32_t hs__executor_kv_slots(void *exec, uint32_t model);
/*
 * Benchmarks: hold a job as if it had run len positions (a zeroed cache)
 * and feeds `next` at the next step, so that a decode step at a long
 * context can be timed without its prefill. 0, HS_EUNSUPP, HS_ERANGE,
 * HS_EEXIST (already held), HS_ENOMEM, HS_EBACKEND.
 */
int hs__executor_adopt(void *exec, uint32_t model, uint64_t job, uint32_t len,
		       uint32_t next);

/*
 * Warm an executor that just opened: HS__WARM_STEPS decode steps of a
 * scratch job for each runnable model. A device's first steps run far
 * slower than the rest (code and caches cold, clocks ramping: 7 ms down to
 * 2 ms a step over the first dozen on PoCL's pthread device), and measured
 * steps calibrate the scheduler's model, which those would mislead. The
 * steps count toward no injected fault. 0 or the step's error.
 */
#define HS__WARM_STEPS 16
int hs__executor_warm_up(const struct hs_executor_ops *ops, void *exec);
/* One step of n jobs (the first `joining` of them joining), outside any
 * core: for the warm-up and the benchmarks. *ns the step's time. */
int hs__executor_step(const struct hs_executor_ops *ops, void *exec,
		      uint32_t model, const uint64_t *ids, uint32_t n,
		      uint32_t joining, int64_t *ns);

/*
 * STREAM-style copy bandwidth of the device an executor runs on, in GB/s
 * (1e9 bytes; a copy of n bytes counts 2n, read and written), best of
 * reps copies of a buffer of `bytes`: the cpu executor's memcpy by its own
 * bound threads, the opencl executor's copy kernel. 0, HS_ENOMEM,
 * HS_EBACKEND.
 */
int hs__cpu_stream_gbs(void *exec, size_t bytes, unsigned reps, double *gbs);
int hs__opencl_stream_gbs(void *exec, size_t bytes, unsigned reps, double *gbs);

/*
 * The compute roofline of an OpenCL executor's device, in GFLOP/s (an fma
 * counts 2): independent chains of float16 fmas in registers on every
 * compute unit, best of reps runs of tens of milliseconds on a CPU (a
 * GPU's run is sized for its many work-items, and is no longer than
 * that where it has a few thousand lanes). 0 or HS_EBACKEND.
 */
int hs__opencl_fma_gflops(void *exec, unsigned reps, double *gflops);

/*
 * The build log of the last failed clBuildProgram in this process
 * (also printed on stderr), "" if none. The string stays valid until the
 * next failed build.
 */
const char *hs__opencl_last_build_log(void);

#endif /* HS_LLM_H */
