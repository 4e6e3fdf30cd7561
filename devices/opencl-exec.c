/*
 * The opencl executor: the decoder of llm.c as OpenCL kernels (the .cl
 * files of devices/kernels, built at open() by the device's compiler), one
 * context and in-order queue per device. Weights stay on the device from
 * open() to close(), repacked into 16-row panels; each model's KV caches
 * are one device buffer of slots that grows (by copy) when more jobs run
 * at once than ever before. A step is a chain of kernels over the whole
 * batch and one blocking read of the picked tokens and their logits.
 *
 * Any OpenCL error is HS_EBACKEND: the driver then tells the core that
 * the device failed and the core requeues its jobs elsewhere.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CL/cl.h>

#include "internal.h"
#include "llm.h"

#define PANEL 16 /* rows per panel, as in decoder.cl */
#define TCHUNK 64 /* tokens per matmul work-item, as in decoder.cl */
#define GROUP_MAX 8 /* query heads per KV head, as in decoder.cl */
#define HD_MAX 128 /* head_dim, as in decoder.cl */
#define KBLOCK 16 /* positions per K-cache block, as in decoder.cl */
#define KV_MIN_SLOTS 4
/* Matmul work-items per compute unit of a CPU device: few and long, so
 * that each works out a norm once for several panels, and enough that
 * the cores finish together. */
#define MM_ITEMS_PER_CU 8
#define PROF_MAX 256 /* launches a profiled step keeps events for */

#define KERNELS(XX)                        \
	XX(EMBED, "embed")                 \
	XX(MATMUL, "matmul")               \
	XX(MATMUL_NORM, "matmul_norm")     \
	XX(MATMUL_QKV, "matmul_qkv")       \
	XX(MATMUL_SWIGLU, "matmul_swiglu") \
	XX(ATTENTION, "attention")         \
	XX(ARGMAX, "argmax")               \
	XX(STREAM_COPY, "stream_copy")     \
	XX(FMA_PEAK, "fma_peak")

enum {
#define XX(e, name) K_##e,
	KERNELS(XX)
#undef XX
		K_COUNT
};

static const char *const kernel_names[] = {
#define XX(e, name) name,
	KERNELS(XX)
#undef XX
};

/* Offsets, in floats, of one layer's matrices in the weight buffer. */
struct layer_off {
	cl_ulong wqkv, wo, w13, w2;
};

struct model_dev {
	bool ok; /* runnable here */
	cl_mem w; /* packed weights */
	cl_mem kv; /* kv_cap slots */
	uint32_t kv_cap;
	cl_uint ctx_cap; /* positions per cache, KBLOCK multiple */
	cl_ulong slot_values; /* one slot's K and V, every layer (FP16) */
	cl_ulong embed, out, rope;
	struct layer_off *layer;
};

typedef struct ocl_s {
	hs__llm_exec_t base; /* first: see llm.h */
	cl_context ctx;
	cl_device_id dev;
	cl_command_queue q;
	cl_program prog;
	cl_kernel k[K_COUNT];
	cl_ulong max_alloc;
	struct model_dev *models;

	/* Activations, for cap_t tokens and cap_b jobs of any model. */
	cl_mem x, qb, att, g, logits;
	cl_mem tok, pos, slot, last, out;
	size_t cap_t, cap_b;
	size_t max_d, max_q, max_dff, max_vocab;
	bool cpu; /* a CPU device */
	cl_uint units; /* its compute units (1 when it does not say) */
	size_t mm_items; /* matmul work-items per launch, at most (0: one
			  * per panel) */
	unsigned fma_chains; /* fma_peak's float16 chains, as built */

	/* HETSCHED_CL_PROFILE: each launch's device time, per kernel,
	 * printed when the executor closes. */
	bool prof;
	cl_event prof_ev[PROF_MAX];
	uint8_t prof_k[PROF_MAX];
	unsigned prof_n;
	uint64_t prof_ns[K_COUNT], prof_calls[K_COUNT];
	uint64_t prof_steps;
} ocl_t;

/* ------------------------------------------------------------------------ */
/* Build log                                                                */
/* ------------------------------------------------------------------------ */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
/* malloc, not hs__malloc: it outlives every executor and allocation-
 * counting tests should not see it. */
static char *last_log;

const char *hs__opencl_last_build_log(void)
{
	const char *s;

	pthread_mutex_lock(&log_lock);
	s = last_log ? last_log : "";
	pthread_mutex_unlock(&log_lock);
	return s;
}

static void keep_build_log(const ocl_t *o, const char *dir)
{
	char name[128] = "";
	size_t len = 0;
	char *log;

	clGetDeviceInfo(o->dev, CL_DEVICE_NAME, sizeof(name) - 1, name, NULL);
	if (clGetProgramBuildInfo(o->prog, o->dev, CL_PROGRAM_BUILD_LOG, 0,
				  NULL, &len) != CL_SUCCESS)
		len = 0;
	log = malloc(len + 1);
	if (!log)
		return;
	if (len == 0 ||
	    clGetProgramBuildInfo(o->prog, o->dev, CL_PROGRAM_BUILD_LOG, len,
				  log, NULL) != CL_SUCCESS)
		len = 0;
	log[len] = '\0';
	fprintf(stderr,
		"hetsched: OpenCL kernels in %s failed to build on %s:\n%s\n",
		dir, name, log);

	pthread_mutex_lock(&log_lock);
	free(last_log);
	last_log = log;
	pthread_mutex_unlock(&log_lock);
}

/* ------------------------------------------------------------------------ */
/* Program                                                                  */
/* ------------------------------------------------------------------------ */

static int ends_with_cl(const struct dirent *e)
{
	size_t n = strlen(e->d_name);

	return n > 3 && !strcmp(e->d_name + n - 3, ".cl");
}

static int read_file(const char *path, char **out)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;
	int err = 0;

	*out = NULL;
	if (!f)
		return HS_EIO;
	if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET)) {
		err = HS_EIO;
		goto out_close;
	}
	buf = hs__malloc((size_t)n + 1);
	if (!buf) {
		err = HS_ENOMEM;
		goto out_close;
	}
	if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
		hs__free(buf);
		err = HS_EIO;
		goto out_close;
	}
	buf[n] = '\0';
	*out = buf;

out_close:
	fclose(f);
	return err;
}

/*
 * The most tokens a matmul work-item multiplies against its panel at once
 * (decoder.cl's MM_TILE_MAX). Each token keeps a float16 accumulator, and
 * they must all stay in registers: a CPU whose native float vector is 16
 * wide (AVX-512, 32 registers) holds 16 of them, an 8 wide one (AVX2, 16
 * registers, two per float16) holds 6 beside the panel row it loads, a 4
 * wide one 3. A tile too large for the registers spills every
 * accumulator at every k: on an AVX2 CPU the 16-token tile ran batch 16
 * at a third of the speed of the 6-token one. Other devices keep 16.
 */
static unsigned mm_tile_max(const ocl_t *o)
{
	cl_uint width = 0;

	if (!o->cpu ||
	    clGetDeviceInfo(o->dev, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT,
			    sizeof(width), &width, NULL) != CL_SUCCESS ||
	    width >= 16)
		return 16;
	return width >= 8 ? 6 : 3;
}

/* Every .cl file of the directory, in name order, as one program. */
static int build_program(ocl_t *o, const char *dir, unsigned tile)
{
	struct dirent **ents = NULL;
	char **src = NULL;
	char path[4096];
	cl_int rc;
	int n, i, err = 0;

	n = scandir(dir, &ents, ends_with_cl, alphasort);
	if (n < 0)
		return HS_ENOENT;
	if (n == 0) {
		err = HS_ENOENT;
		goto out_free;
	}
	src = hs__calloc((size_t)n, sizeof(*src));
	if (!src) {
		err = HS_ENOMEM;
		goto out_free;
	}
	for (i = 0; i < n && !err; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, ents[i]->d_name);
		err = read_file(path, &src[i]);
	}
	if (err)
		goto out_free;

	o->prog = clCreateProgramWithSource(o->ctx, (cl_uint)n,
					    (const char **)src, NULL, &rc);
	if (rc != CL_SUCCESS) {
		err = HS_EBACKEND;
		goto out_free;
	}
	{
		char opts[64];
		unsigned tile_max = mm_tile_max(o);

		/* fma_peak's chains: 12 of the 16 or 32 vector registers, in
		 * float16 units (one register each with 16-float vectors),
		 * sized from the same register file as the matmul tile. */
		o->fma_chains = tile_max >= 16 ? 12 : tile_max >= 6 ? 6 : 3;
		snprintf(opts, sizeof(opts),
			 "-cl-std=CL1.2 -DMM_TILE_MAX=%u -DFMA_CHAINS=%u",
			 tile ? tile : tile_max, o->fma_chains);
		rc = clBuildProgram(o->prog, 1, &o->dev, opts, NULL, NULL);
	}
	if (rc != CL_SUCCESS) {
		keep_build_log(o, dir);
		err = HS_EBACKEND;
		goto out_free;
	}
	for (i = 0; i < K_COUNT; i++) {
		o->k[i] = clCreateKernel(o->prog, kernel_names[i], &rc);
		if (rc != CL_SUCCESS) {
			fprintf(stderr,
				"hetsched: OpenCL kernel %s missing from %s "
				"(CL error %d)\n",
				kernel_names[i], dir, (int)rc);
			err = HS_EBACKEND;
			goto out_free;
		}
	}

out_free:
	for (i = 0; src && i < n; i++)
		hs__free(src[i]);
	hs__free(src);
	for (i = 0; i < n; i++)
		free(ents[i]);
	free(ents);
	return err;
}

static int pick_device(ocl_t *o, const hs_device_t *dev)
{
	cl_platform_id *plats = NULL;
	cl_device_id *devs = NULL;
	cl_uint np = 0, nd = 0;
	int err = HS_ENODEV;

	if (dev->cl_platform < 0 || dev->cl_device < 0)
		return HS_ENODEV;
	if (clGetPlatformIDs(0, NULL, &np) != CL_SUCCESS ||
	    (cl_uint)dev->cl_platform >= np)
		return HS_ENODEV;
	plats = hs__calloc(np, sizeof(*plats));
	if (!plats)
		return HS_ENOMEM;
	if (clGetPlatformIDs(np, plats, NULL) != CL_SUCCESS)
		goto out_free;
	if (clGetDeviceIDs(plats[dev->cl_platform], CL_DEVICE_TYPE_ALL, 0, NULL,
			   &nd) != CL_SUCCESS ||
	    (cl_uint)dev->cl_device >= nd)
		goto out_free;
	devs = hs__calloc(nd, sizeof(*devs));
	if (!devs) {
		err = HS_ENOMEM;
		goto out_free;
	}
	if (clGetDeviceIDs(plats[dev->cl_platform], CL_DEVICE_TYPE_ALL, nd,
			   devs, NULL) != CL_SUCCESS)
		goto out_free;
	o->dev = devs[dev->cl_device];
	if (clGetDeviceInfo(o->dev, CL_DEVICE_MAX_MEM_ALLOC_SIZE,
			    sizeof(o->max_alloc), &o->max_alloc,
			    NULL) != CL_SUCCESS)
		o->max_alloc = 0;
	{
		cl_device_type type = 0;

		o->cpu = clGetDeviceInfo(o->dev, CL_DEVICE_TYPE, sizeof(type),
					 &type, NULL) == CL_SUCCESS &&
			 (type & CL_DEVICE_TYPE_CPU);
	}
	if (clGetDeviceInfo(o->dev, CL_DEVICE_MAX_COMPUTE_UNITS,
			    sizeof(o->units), &o->units, NULL) != CL_SUCCESS ||
	    o->units == 0)
		o->units = 1;
	o->mm_items = o->cpu ? (size_t)o->units * MM_ITEMS_PER_CU : 0;
	err = 0;

out_free:
	hs__free(devs);
	hs__free(plats);
	return err;
}

/* ------------------------------------------------------------------------ */
/* Weights                                                                  */
/* ------------------------------------------------------------------------ */

static size_t panel_floats(size_t rows, size_t cols)
{
	return (rows + PANEL - 1) / PANEL * PANEL * cols;
}

/*
 * Row-major [rows][cols] into panels [rows / 16][cols][16], padded with
 * zero rows, each column scaled by its gain (the RMSNorm before the
 * matrix; NULL: none). Interleaved (the gate/up matrix, rows = 2 d_ff):
 * panel p takes gate rows 8p..8p+7 and up rows d_ff + 8p.. in its lanes.
 */
static void pack_panels(float *dst, const float *src, size_t rows, size_t cols,
			const float *gain, bool interleave)
{
	size_t pb, k, i, n = (rows + PANEL - 1) / PANEL, half = rows / 2;

	for (pb = 0; pb < n; pb++)
		for (k = 0; k < cols; k++)
			for (i = 0; i < PANEL; i++) {
				size_t r = pb * PANEL + i;
				float v;

				if (interleave)
					r = i < PANEL / 2
						    ? pb * PANEL / 2 + i
						    : half + pb * PANEL / 2 +
							      i - PANEL / 2;
				v = r < rows ? src[r * cols + k] : 0.0f;
				*dst++ = gain ? v * gain[k] : v;
			}
}

struct packer {
	float *buf;
	size_t at;
};

static cl_ulong put_plain(struct packer *p, const float *src, size_t n)
{
	size_t at = p->at;

	if (p->buf)
		memcpy(p->buf + at, src, n * sizeof(float));
	/* 16-float alignment keeps every panel on a 64-byte line. */
	p->at += (n + PANEL - 1) / PANEL * PANEL;
	return at;
}

static cl_ulong put_panels(struct packer *p, const float *src, size_t rows,
			   size_t cols, const float *gain, bool interleave)
{
	size_t at = p->at;

	if (p->buf)
		pack_panels(p->buf + at, src, rows, cols, gain, interleave);
	p->at += panel_floats(rows, cols);
	return at;
}

/* Lay the weights out (buf NULL: only count), filling the offsets. */
static size_t layout(struct model_dev *md, const hs__llm_weights_t *w,
		     float *buf)
{
	const hs__llm_shape_t *s = &w->shape;
	struct packer p = {buf, 0};
	uint32_t l;

	md->embed = put_plain(&p, w->embed, (size_t)s->vocab * s->d);
	for (l = 0; l < s->layers; l++) {
		const hs__llm_layer_t *ly = &w->layer[l];
		struct layer_off *o = &md->layer[l];

		o->wqkv = put_panels(&p, ly->wqkv, s->qkv_dim, s->d,
				     ly->attn_norm, false);
		o->wo = put_panels(&p, ly->wo, s->d, s->q_dim, NULL, false);
		o->w13 = put_panels(&p, ly->w13, 2 * (size_t)s->d_ff, s->d,
				    ly->ffn_norm, true);
		o->w2 = put_panels(&p, ly->w2, s->d, s->d_ff, NULL, false);
	}
	md->out = put_panels(&p, w->out, s->vocab, s->d, w->final_norm, false);
	md->rope = put_plain(&p, w->rope, (size_t)s->max_ctx * s->hd);
	return p.at;
}

/* The kernels' private arrays bound the attention shape; panels must
 * not straddle Q, K and V, nor split a gate/up pair. */
static bool kernels_fit(const hs__llm_shape_t *s)
{
	return s->hd % 16 == 0 && s->hd <= HD_MAX &&
	       s->n_heads / s->n_kv <= GROUP_MAX && s->d_ff % 8 == 0;
}

static int upload_model(ocl_t *o, struct model_dev *md, const hs_model_t *m)
{
	hs__llm_weights_t *w = NULL;
	float *buf = NULL;
	size_t n;
	cl_int rc;
	int err;

	err = hs__llm_weights_new(&w, m);
	if (err)
		return err;
	md->layer = hs__calloc(w->shape.layers, sizeof(*md->layer));
	if (!md->layer) {
		err = HS_ENOMEM;
		goto out_free;
	}
	n = layout(md, w, NULL);
	buf = hs__malloc(n * sizeof(float));
	if (!buf) {
		err = HS_ENOMEM;
		goto out_free;
	}
	memset(buf, 0, n * sizeof(float));
	layout(md, w, buf);
	if (o->max_alloc && n * sizeof(float) > o->max_alloc) {
		err = HS_EBACKEND;
		goto out_free;
	}
	md->w = clCreateBuffer(o->ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
			       n * sizeof(float), buf, &rc);
	if (rc != CL_SUCCESS) {
		md->w = NULL;
		err = HS_EBACKEND;
		goto out_free;
	}
	md->ctx_cap = (w->shape.max_ctx + KBLOCK - 1) / KBLOCK * KBLOCK;
	md->slot_values = (cl_ulong)w->shape.layers * 2 * w->shape.n_kv *
			  md->ctx_cap * w->shape.hd;
	md->ok = true;

out_free:
	hs__free(buf);
	hs__llm_weights_free(w);
	return err;
}

/* ------------------------------------------------------------------------ */
/* Device memory                                                            */
/* ------------------------------------------------------------------------ */

static void release_mem(cl_mem *m)
{
	if (*m)
		clReleaseMemObject(*m);
	*m = NULL;
}

static cl_mem new_buffer(ocl_t *o, size_t bytes, cl_int *rc)
{
	cl_mem m;

	if (*rc != CL_SUCCESS)
		return NULL;
	m = clCreateBuffer(o->ctx, CL_MEM_READ_WRITE, bytes ? bytes : 4, NULL,
			   rc);
	return *rc == CL_SUCCESS ? m : NULL;
}

static void release_acts(ocl_t *o)
{
	release_mem(&o->x);
	release_mem(&o->qb);
	release_mem(&o->att);
	release_mem(&o->g);
	release_mem(&o->tok);
	release_mem(&o->pos);
	release_mem(&o->slot);
	release_mem(&o->logits);
	release_mem(&o->last);
	release_mem(&o->out);
	o->cap_t = o->cap_b = 0;
}

/* Activations for T tokens and B jobs, grown by doubling. */
static int reserve_acts(ocl_t *o, size_t T, size_t B)
{
	size_t f = sizeof(float), u = sizeof(cl_uint);
	cl_int rc = CL_SUCCESS;

	if (T <= o->cap_t && B <= o->cap_b)
		return 0;
	if (T < 2 * o->cap_t)
		T = 2 * o->cap_t;
	if (B < 2 * o->cap_b)
		B = 2 * o->cap_b;
	if (T < 16)
		T = 16;
	if (B < 16)
		B = 16;
	release_acts(o);
	o->x = new_buffer(o, T * o->max_d * f, &rc);
	o->qb = new_buffer(o, T * o->max_q * f, &rc);
	o->att = new_buffer(o, T * o->max_q * f, &rc);
	o->g = new_buffer(o, T * o->max_dff * f, &rc);
	o->tok = new_buffer(o, T * u, &rc);
	o->pos = new_buffer(o, T * u, &rc);
	o->slot = new_buffer(o, T * u, &rc);
	o->logits = new_buffer(o, B * o->max_vocab * f, &rc);
	o->last = new_buffer(o, B * u, &rc);
	o->out = new_buffer(o, B * u, &rc);
	if (rc != CL_SUCCESS) {
		release_acts(o);
		return HS_EBACKEND;
	}
	o->cap_t = T;
	o->cap_b = B;
	return 0;
}

/* Room for every slot the pool handed out; old caches are copied over. */
static int reserve_kv(ocl_t *o, uint32_t model)
{
	struct model_dev *md = &o->models[model];
	uint32_t need = o->base.pools[model].n_slots, cap;
	size_t slot_bytes = md->slot_values * sizeof(cl_half);
	cl_mem kv;
	cl_int rc;

	if (need <= md->kv_cap)
		return 0;
	cap = md->kv_cap * 2;
	if (cap < need)
		cap = need;
	if (cap < KV_MIN_SLOTS)
		cap = KV_MIN_SLOTS;
	if (o->max_alloc && (cl_ulong)cap * slot_bytes > o->max_alloc)
		cap = need;
	if (o->max_alloc && (cl_ulong)cap * slot_bytes > o->max_alloc)
		return HS_EBACKEND;
	kv = clCreateBuffer(o->ctx, CL_MEM_READ_WRITE, cap * slot_bytes, NULL,
			    &rc);
	if (rc != CL_SUCCESS)
		return HS_EBACKEND;
	if (md->kv_cap) {
		rc = clEnqueueCopyBuffer(o->q, md->kv, kv, 0, 0,
					 md->kv_cap * slot_bytes, 0, NULL,
					 NULL);
		if (rc != CL_SUCCESS) {
			clReleaseMemObject(kv);
			return HS_EBACKEND;
		}
	}
	/* The queue is in order: the copy finishes before any later use,
	 * and OpenCL keeps the old buffer alive until then. */
	release_mem(&md->kv);
	md->kv = kv;
	md->kv_cap = cap;
	return 0;
}

static int ocl_zero_slot(hs__llm_exec_t *ex, uint32_t model, uint32_t slot)
{
	ocl_t *o = (ocl_t *)ex;
	size_t bytes = o->models[model].slot_values * sizeof(cl_half);
	cl_half zero = 0;
	int err;

	if (!o->models[model].ok)
		return HS_EUNSUPP;
	err = reserve_kv(o, model);
	if (err)
		return err;
	if (clEnqueueFillBuffer(o->q, o->models[model].kv, &zero, sizeof(zero),
				slot * bytes, bytes, 0, NULL,
				NULL) != CL_SUCCESS ||
	    clFinish(o->q) != CL_SUCCESS)
		return HS_EBACKEND;
	return 0;
}

/* The finished launches' device times, added to their kernels' totals. */
static void prof_collect(ocl_t *o)
{
	cl_ulong t0, t1;
	unsigned i;

	for (i = 0; i < o->prof_n; i++) {
		if (clGetEventProfilingInfo(
			    o->prof_ev[i], CL_PROFILING_COMMAND_START,
			    sizeof(t0), &t0, NULL) == CL_SUCCESS &&
		    clGetEventProfilingInfo(
			    o->prof_ev[i], CL_PROFILING_COMMAND_END, sizeof(t1),
			    &t1, NULL) == CL_SUCCESS &&
		    o->prof_k[i] < K_COUNT && t1 >= t0) {
			o->prof_ns[o->prof_k[i]] += t1 - t0;
			o->prof_calls[o->prof_k[i]]++;
		}
		clReleaseEvent(o->prof_ev[i]);
	}
	o->prof_n = 0;
}

static void prof_print(const ocl_t *o)
{
	char name[128] = "";
	uint64_t total = 0;
	int i;

	for (i = 0; i < K_COUNT; i++)
		total += o->prof_ns[i];
	if (!o->prof_steps || !total)
		return;
	clGetDeviceInfo(o->dev, CL_DEVICE_NAME, sizeof(name) - 1, name, NULL);
	fprintf(stderr, "hetsched: kernel time on %s over %llu steps:\n", name,
		(unsigned long long)o->prof_steps);
	for (i = 0; i < K_COUNT; i++)
		if (o->prof_calls[i])
			fprintf(stderr,
				"  %-14s %8llu launches %10.3f ms/step %5.1f "
				"%%\n",
				kernel_names[i],
				(unsigned long long)o->prof_calls[i],
				(double)o->prof_ns[i] / 1e6 /
					(double)o->prof_steps,
				100.0 * (double)o->prof_ns[i] / (double)total);
}

/* ------------------------------------------------------------------------ */
/* Open and close                                                           */
/* ------------------------------------------------------------------------ */

static void ocl_close(void *exec)
{
	ocl_t *o = exec;
	size_t m;
	int i;

	if (!o)
		return;
	if (o->q)
		clFinish(o->q);
	prof_collect(o);
	prof_print(o);
	release_acts(o);
	for (m = 0; o->models && m < o->base.n_models; m++) {
		release_mem(&o->models[m].w);
		release_mem(&o->models[m].kv);
		hs__free(o->models[m].layer);
	}
	hs__free(o->models);
	for (i = 0; i < K_COUNT; i++)
		if (o->k[i])
			clReleaseKernel(o->k[i]);
	if (o->prog)
		clReleaseProgram(o->prog);
	if (o->q)
		clReleaseCommandQueue(o->q);
	if (o->ctx)
		clReleaseContext(o->ctx);
	hs__llm_exec_release(&o->base);
	hs__free(o);
}

static const char *kernel_dir(const hs_executor_opts_t *opts)
{
	const char *env;

	if (opts->kernel_dir)
		return opts->kernel_dir;
	env = getenv("HETSCHED_KERNELS");
	return env && env[0] ? env : "devices/kernels";
}

static int ocl_open(void **exec, const hs_device_t *dev,
		    const hs_model_catalog_t *models,
		    const hs_executor_opts_t *opts)
{
	ocl_t *o;
	cl_int rc;
	size_t m;
	int err;

	*exec = NULL;
	if (opts->mm_tile && opts->mm_tile != 3 && opts->mm_tile != 6 &&
	    opts->mm_tile != 16)
		return HS_EINVAL;
	o = hs__calloc(1, sizeof(*o));
	if (!o)
		return HS_ENOMEM;
	err = hs__llm_exec_init(&o->base, models, opts);
	if (err) {
		hs__free(o);
		return err;
	}
	o->base.zero_slot = ocl_zero_slot;
	o->models = hs__calloc(o->base.n_models ? o->base.n_models : 1,
			       sizeof(*o->models));
	if (!o->models) {
		err = HS_ENOMEM;
		goto out_close;
	}

	err = pick_device(o, dev);
	if (err)
		goto out_close;
	if (opts->mm_items)
		o->mm_items = opts->mm_items;
	o->ctx = clCreateContext(NULL, 1, &o->dev, NULL, NULL, &rc);
	if (rc != CL_SUCCESS) {
		o->ctx = NULL;
		err = HS_EBACKEND;
		goto out_close;
	}
	{
		const char *env = getenv("HETSCHED_CL_PROFILE");
		cl_queue_properties props[] = {CL_QUEUE_PROPERTIES,
					       CL_QUEUE_PROFILING_ENABLE, 0};

		o->prof = env && env[0] && strcmp(env, "0") != 0;
		o->q = clCreateCommandQueueWithProperties(
			o->ctx, o->dev, o->prof ? props : NULL, &rc);
	}
	if (rc != CL_SUCCESS) {
		o->q = NULL;
		err = HS_EBACKEND;
		goto out_close;
	}
	err = build_program(o, kernel_dir(opts), opts->mm_tile);
	if (err)
		goto out_close;

	for (m = 0; m < o->base.n_models; m++) {
		const hs__llm_shape_t *s = &o->base.shapes[m];

		if (!o->base.runnable[m])
			continue;
		if (!kernels_fit(s)) {
			/* run_step then refuses it with HS_EUNSUPP. */
			o->base.runnable[m] = false;
			continue;
		}
		err = upload_model(o, &o->models[m],
				   hs_model_catalog_get(models, m));
		if (err)
			goto out_close;
		if (s->d > o->max_d)
			o->max_d = s->d;
		if (s->q_dim > o->max_q)
			o->max_q = s->q_dim;
		if (s->d_ff > o->max_dff)
			o->max_dff = s->d_ff;
		if (s->vocab > o->max_vocab)
			o->max_vocab = s->vocab;
	}
	err = hs__executor_warm_up(&hs__executor_opencl, o);
	if (err)
		goto out_close;
	*exec = o;
	return 0;

out_close:
	ocl_close(o);
	return err;
}

/* ------------------------------------------------------------------------ */
/* A step                                                                   */
/* ------------------------------------------------------------------------ */

/* Kernel arguments; the first failure sticks in *rc. */
#define ARG(k, i, v)                                                     \
	do {                                                             \
		if (*rc == CL_SUCCESS)                                   \
			*rc = clSetKernelArg((k), (i), sizeof(v), &(v)); \
	} while (0)

static void launch(ocl_t *o, cl_kernel k, cl_uint dims, const size_t *global,
		   const size_t *local, cl_int *rc)
{
	cl_event *ev = NULL;
	unsigned i;

	if (*rc != CL_SUCCESS)
		return;
	/* A step of more launches than PROF_MAX: fold in those done. */
	if (o->prof && o->prof_n == PROF_MAX &&
	    clWaitForEvents(o->prof_n, o->prof_ev) == CL_SUCCESS)
		prof_collect(o);
	if (o->prof && o->prof_n < PROF_MAX) {
		for (i = 0; i < K_COUNT && o->k[i] != k; i++)
			;
		o->prof_k[o->prof_n] = (uint8_t)i;
		ev = &o->prof_ev[o->prof_n];
	}
	*rc = clEnqueueNDRangeKernel(o->q, k, dims, NULL, global, local, 0,
				     NULL, ev);
	if (ev && *rc == CL_SUCCESS)
		o->prof_n++;
}

/* Along dimension 0 the panels, each work-item taking a run of them (one
 * each but on a CPU device, see MM_ITEMS_PER_CU); along dimension 1 the
 * chunks of tokens. Each is a long loop, and a work-group of one lets a
 * CPU device spread them over its cores. */
static void launch_matmul(ocl_t *o, cl_kernel k, cl_uint rows, cl_uint T,
			  cl_int *rc)
{
	size_t panels = (rows + PANEL - 1) / PANEL;
	size_t per = o->mm_items && panels > o->mm_items
			     ? (panels + o->mm_items - 1) / o->mm_items
			     : 1;
	size_t global[2] = {(panels + per - 1) / per,
			    (T + TCHUNK - 1) / TCHUNK};
	size_t local[2] = {1, 1};

	launch(o, k, 2, global, local, rc);
}

static void matmul(ocl_t *o, cl_mem w, cl_ulong off, cl_mem x, cl_uint ldx,
		   cl_mem y, cl_uint ldy, cl_uint R, cl_uint K, cl_uint T,
		   cl_uint add, cl_int *rc)
{
	cl_kernel k = o->k[K_MATMUL];

	ARG(k, 0, w);
	ARG(k, 1, off);
	ARG(k, 2, x);
	ARG(k, 3, ldx);
	ARG(k, 4, y);
	ARG(k, 5, ldy);
	ARG(k, 6, R);
	ARG(k, 7, K);
	ARG(k, 8, T);
	ARG(k, 9, add);
	launch_matmul(o, k, R, T, rc);
}

static void attention_block(ocl_t *o, const hs__llm_shape_t *s,
			    struct model_dev *md, uint32_t l, cl_uint T,
			    cl_int *rc)
{
	const struct layer_off *lo = &md->layer[l];
	cl_uint d = s->d, q_dim = s->q_dim, kv_dim = s->kv_dim;
	cl_uint n_heads = s->n_heads, n_kv = s->n_kv, hd = s->hd;
	cl_ulong k_off = (cl_ulong)l * 2 * n_kv * md->ctx_cap * hd;
	cl_ulong v_off = k_off + (cl_ulong)n_kv * md->ctx_cap * hd;
	cl_float eps = HS_LLM_NORM_EPS;
	cl_uint one = 1;
	size_t n = (size_t)T * n_kv, one_wi = 1;
	cl_kernel k = o->k[K_MATMUL_QKV];

	ARG(k, 0, md->w);
	ARG(k, 1, lo->wqkv);
	ARG(k, 2, o->x);
	ARG(k, 3, d);
	ARG(k, 4, d);
	ARG(k, 5, T);
	ARG(k, 6, eps);
	ARG(k, 7, md->rope);
	ARG(k, 8, o->pos);
	ARG(k, 9, o->slot);
	ARG(k, 10, o->qb);
	ARG(k, 11, q_dim);
	ARG(k, 12, kv_dim);
	ARG(k, 13, hd);
	ARG(k, 14, md->kv);
	ARG(k, 15, md->slot_values);
	ARG(k, 16, k_off);
	ARG(k, 17, v_off);
	ARG(k, 18, md->ctx_cap);
	launch_matmul(o, k, s->qkv_dim, T, rc);

	k = o->k[K_ATTENTION];
	ARG(k, 0, o->qb);
	ARG(k, 1, q_dim);
	ARG(k, 2, md->kv);
	ARG(k, 3, md->slot_values);
	ARG(k, 4, k_off);
	ARG(k, 5, v_off);
	ARG(k, 6, md->ctx_cap);
	ARG(k, 7, o->pos);
	ARG(k, 8, o->slot);
	ARG(k, 9, o->att);
	ARG(k, 10, q_dim);
	ARG(k, 11, n_heads);
	ARG(k, 12, n_kv);
	ARG(k, 13, hd);
	/* One work-item per (token, KV head) is little parallelism at
	 * batch 1: groups of one keep every core busy. */
	launch(o, k, 1, &n, &one_wi, rc);

	matmul(o, md->w, lo->wo, o->att, q_dim, o->x, d, d, q_dim, T, one, rc);
}

static void mlp_block(ocl_t *o, const hs__llm_shape_t *s, struct model_dev *md,
		      uint32_t l, cl_uint T, cl_int *rc)
{
	const struct layer_off *lo = &md->layer[l];
	cl_uint d = s->d, d_ff = s->d_ff, one = 1;
	cl_float eps = HS_LLM_NORM_EPS;
	cl_kernel k = o->k[K_MATMUL_SWIGLU];

	ARG(k, 0, md->w);
	ARG(k, 1, lo->w13);
	ARG(k, 2, o->x);
	ARG(k, 3, d);
	ARG(k, 4, d);
	ARG(k, 5, T);
	ARG(k, 6, eps);
	ARG(k, 7, o->g);
	ARG(k, 8, d_ff);
	launch_matmul(o, k, 2 * d_ff, T, rc);

	matmul(o, md->w, lo->w2, o->g, d_ff, o->x, d, d, d_ff, T, one, rc);
}

static int forward(ocl_t *o, uint32_t model)
{
	const hs__llm_shape_t *s = &o->base.shapes[model];
	struct model_dev *md = &o->models[model];
	hs__llm_batch_t *b = &o->base.batch;
	cl_uint T = b->n_tokens, B = b->n_jobs, d = s->d, vocab = s->vocab;
	cl_float eps = HS_LLM_NORM_EPS;
	size_t u = sizeof(cl_uint), nt = T, one_wi = 1, nb = B;
	cl_int r = CL_SUCCESS, *rc = &r;
	cl_kernel k;
	uint32_t l;

	r = clEnqueueWriteBuffer(o->q, o->tok, CL_FALSE, 0, T * u, b->tok, 0,
				 NULL, NULL);
	if (r == CL_SUCCESS)
		r = clEnqueueWriteBuffer(o->q, o->pos, CL_FALSE, 0, T * u,
					 b->pos, 0, NULL, NULL);
	if (r == CL_SUCCESS)
		r = clEnqueueWriteBuffer(o->q, o->slot, CL_FALSE, 0, T * u,
					 b->slot, 0, NULL, NULL);
	if (r == CL_SUCCESS)
		r = clEnqueueWriteBuffer(o->q, o->last, CL_FALSE, 0, B * u,
					 b->last, 0, NULL, NULL);

	k = o->k[K_EMBED];
	ARG(k, 0, o->tok);
	ARG(k, 1, md->w);
	ARG(k, 2, md->embed);
	ARG(k, 3, o->x);
	ARG(k, 4, d);
	launch(o, k, 1, &nt, &one_wi, rc);

	for (l = 0; l < s->layers; l++) {
		attention_block(o, s, md, l, T, rc);
		mlp_block(o, s, md, l, T, rc);
	}

	k = o->k[K_MATMUL_NORM];
	ARG(k, 0, md->w);
	ARG(k, 1, md->out);
	ARG(k, 2, o->x);
	ARG(k, 3, d);
	ARG(k, 4, o->last);
	ARG(k, 5, o->logits);
	ARG(k, 6, vocab);
	ARG(k, 7, vocab);
	ARG(k, 8, d);
	ARG(k, 9, B);
	ARG(k, 10, eps);
	launch_matmul(o, k, vocab, B, rc);

	k = o->k[K_ARGMAX];
	ARG(k, 0, o->logits);
	ARG(k, 1, vocab);
	ARG(k, 2, o->out);
	launch(o, k, 1, &nb, NULL, rc);

	/* The host arrays written above stay untouched until this blocking
	 * read returns, which is when the queue has run everything. */
	if (r == CL_SUCCESS)
		r = clEnqueueReadBuffer(o->q, o->logits, CL_FALSE, 0,
					(size_t)B * vocab * sizeof(float),
					b->logits, 0, NULL, NULL);
	if (r == CL_SUCCESS)
		r = clEnqueueReadBuffer(o->q, o->out, CL_TRUE, 0, B * u, b->out,
					0, NULL, NULL);
	if (r != CL_SUCCESS) {
		/* Nothing may still write into b once we return. */
		clFinish(o->q);
		return HS_EBACKEND;
	}
	return 0;
}

static int ocl_run_step(void *exec, const hs_step_t *step, int64_t *duration_ns,
			double *energy_j)
{
	ocl_t *o = exec;
	int64_t t0 = hs__llm_now_ns();
	hs__llm_batch_t *b = &o->base.batch;
	int err;

	/* OpenCL has no energy counter; the core models it. */
	*energy_j = -1;
	err = hs__llm_exec_begin(&o->base, step);
	if (err)
		goto out;
	err = reserve_kv(o, step->model);
	if (!err)
		err = reserve_acts(o, b->n_tokens, b->n_jobs);
	if (!err)
		err = forward(o, step->model);
	if (o->prof) {
		prof_collect(o);
		o->prof_steps++;
	}
	if (err) {
		o->base.failed = true;
		goto out;
	}
	hs__llm_exec_end(&o->base);

out:
	*duration_ns = hs__llm_now_ns() - t0;
	return err;
}

static void ocl_release(void *exec, uint64_t job)
{
	hs__llm_exec_drop(exec, job);
}

/*
 * *best: the fastest of reps launches of k over n work-items, each timed
 * from enqueue to finish. The profiler leaves them out: they are no
 * step's work.
 */
static cl_int best_launch_ns(ocl_t *o, cl_kernel k, size_t n,
			     const size_t *local, unsigned reps, int64_t *best)
{
	bool prof = o->prof;
	cl_int r = CL_SUCCESS;
	int64_t t;
	unsigned i;

	o->prof = false;
	*best = INT64_MAX;
	for (i = 0; r == CL_SUCCESS && i < (reps ? reps : 1); i++) {
		t = hs__llm_now_ns();
		launch(o, k, 1, &n, local, &r);
		if (r == CL_SUCCESS)
			r = clFinish(o->q);
		t = hs__llm_now_ns() - t;
		if (t < *best)
			*best = t;
	}
	o->prof = prof;
	if (*best < 1)
		*best = 1;
	return r;
}

int hs__opencl_stream_gbs(void *exec, size_t bytes, unsigned reps, double *gbs)
{
	ocl_t *o = exec;
	cl_kernel k = o->k[K_STREAM_COPY];
	cl_uint per = 64;
	size_t chunk = 16 * sizeof(float) * per, n = bytes / chunk;
	int64_t best;
	cl_mem src = NULL, dst = NULL;
	cl_float one = 1;
	cl_int r = CL_SUCCESS, *rc = &r;
	int err = 0;

	if (n == 0)
		return HS_EINVAL;
	bytes = n * chunk;
	src = new_buffer(o, bytes, &r);
	dst = new_buffer(o, bytes, &r);
	if (r == CL_SUCCESS)
		r = clEnqueueFillBuffer(o->q, src, &one, sizeof(one), 0, bytes,
					0, NULL, NULL);
	if (r == CL_SUCCESS)
		r = clEnqueueFillBuffer(o->q, dst, &one, sizeof(one), 0, bytes,
					0, NULL, NULL);
	ARG(k, 0, src);
	ARG(k, 1, dst);
	ARG(k, 2, per);
	if (r == CL_SUCCESS)
		r = clFinish(o->q);
	if (r == CL_SUCCESS)
		r = best_launch_ns(o, k, n, NULL, reps, &best);
	if (r != CL_SUCCESS)
		err = HS_EBACKEND;
	else
		*gbs = 2.0 * (double)bytes / (double)best;
	release_mem(&src);
	release_mem(&dst);
	return err;
}

int hs__opencl_fma_gflops(void *exec, unsigned reps, double *gflops)
{
	ocl_t *o = exec;
	cl_kernel k = o->k[K_FMA_PEAK];
	cl_float a = 0.999999f, b = 1e-7f;
	/* Tens of milliseconds on a CPU, as long on a GPU's many items. */
	cl_uint iters = o->cpu ? 1u << 20 : 1u << 12;
	/* Four work-groups of one work-item per compute unit keep a CPU's
	 * cores busy to the end (left to choose, a CPU runtime may put them
	 * all in one group, on one core); a GPU's units need thousands of
	 * work-items in flight, in groups of its choosing. */
	size_t n = (size_t)o->units * (o->cpu ? 4 : 2048), one = 1;
	int64_t best;
	cl_mem out = NULL;
	cl_int r = CL_SUCCESS, *rc = &r;

	out = new_buffer(o, n * sizeof(float), &r);
	ARG(k, 0, out);
	ARG(k, 1, iters);
	ARG(k, 2, a);
	ARG(k, 3, b);
	if (r == CL_SUCCESS)
		r = best_launch_ns(o, k, n, o->cpu ? &one : NULL, reps, &best);
	release_mem(&out);
	if (r != CL_SUCCESS)
		return HS_EBACKEND;
	*gflops = (double)n * iters * o->fma_chains * 16 * 2 / (double)best;
	return 0;
}

const struct hs_executor_ops hs__executor_opencl = {
	.name = "opencl",
	.open = ocl_open,
	.close = ocl_close,
	.run_step = ocl_run_step,
	.release = ocl_release,
};
