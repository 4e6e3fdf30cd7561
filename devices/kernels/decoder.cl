/*
 * hetsched: the decoder of a llama-style transformer, batched over the
 * tokens of a step (every joining job's prompt, then one token for every
 * running job). Built at run time by the device's compiler; the host side
 * is devices/opencl-exec.c, the reference it is checked against
 * devices/llm.c.
 *
 * A step is five kernels per layer: the QKV matmul (with the RMSNorm
 * before it, RoPE and the KV-cache store after it), attention, the output
 * matmul (adding to the residual), the gate/up matmul (with the RMSNorm
 * before it and SwiGLU after it), the down matmul (adding to the
 * residual); then the logits matmul (with the final norm) and the greedy
 * pick.
 *
 * Layouts (floats):
 *   activations   [token][feature], row strides given
 *   matrices      panels of 16 output rows, P[panel][k][16], so that one
 *                 work-item streams its panel once per step whatever the
 *                 batch and every load is a whole float16; a norm's gains
 *                 are folded into the columns of the matrix after it; the
 *                 gate/up panel p holds gate rows 8p..8p+7 in lanes 0-7
 *                 and the matching up rows in lanes 8-15
 *   K cache       per slot and layer, [kv_head][pos / 16][head_dim][16]:
 *                 16 positions side by side, so a query scores them with
 *                 float16 vectors
 *   V cache       per slot and layer, [kv_head][pos][head_dim]
 *   K and V are FP16 (half: stored with vstore_half_rte, read with
 *   vload_half, which OpenCL has without cl_khr_fp16); all maths is FP32
 *   RoPE table    [pos][head_dim / 2][cos, sin]
 */

#define PANEL 16
/* Tokens one matmul work-item takes: a decode step (batch <= 64) is one
 * chunk, so its weights are read once; a long prefill is spread wider. */
#define TCHUNK 64
/* Attention keeps the query heads of a KV group in private memory. */
#define GROUP_MAX 8
#define HD_MAX 128
/* K blocks of 16 positions that attention scores before each softmax
 * update. */
#define ATT_CHUNK 4
/* Cache lines a matmul work-item prefetches ahead of its panel. */
#define PREFETCH_LINES 64

/*
 * Software prefetch. A CPU's hardware prefetchers stop at every 4 KB page,
 * and a batched matmul does too much work per cache line for the core to
 * run far enough ahead by itself: the loads then wait on memory. Clang
 * based compilers (PoCL's) have the builtin; elsewhere the standard
 * prefetch() stands in.
 */
#if defined(__clang__)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) prefetch((const global uchar *)(p), 64)
#endif

/* Lane sums and maxima in a fixed order: a token's result must not
 * depend on the batch around it. */
float hsum16(float16 v)
{
	float8 a = v.lo + v.hi;
	float4 b = a.lo + a.hi;
	float2 c = b.lo + b.hi;

	return c.x + c.y;
}

/* Plain compares: scores are never NaN, and fmax's NaN rules cost. */
float hmax16(float16 v)
{
	float8 a = v.lo > v.hi ? v.lo : v.hi;
	float4 b = a.lo > a.hi ? a.lo : a.hi;
	float2 c = b.lo > b.hi ? b.lo : b.hi;

	return c.x > c.y ? c.x : c.y;
}

/* 1 / RMS of a row: the RMSNorm scale, its gains being in the weights. */
float inv_rms(global const float *x, uint d, float eps)
{
	float16 s = (float16)(0.0f), s1 = s, s2 = s, s3 = s;
	float r = 0.0f;
	uint i = 0;

	for (; i + 64 <= d; i += 64) {
		float16 v0 = vload16(0, x + i), v1 = vload16(1, x + i);
		float16 v2 = vload16(2, x + i), v3 = vload16(3, x + i);

		s = fma(v0, v0, s);
		s1 = fma(v1, v1, s1);
		s2 = fma(v2, v2, s2);
		s3 = fma(v3, v3, s3);
	}
	s = (s + s1) + (s2 + s3);
	for (; i + 16 <= d; i += 16) {
		float16 v = vload16(0, x + i);

		s = fma(v, v, s);
	}
	for (; i < d; i++)
		r = fma(x[i], x[i], r);
	return rsqrt((hsum16(s) + r) / (float)d + eps);
}

/*
 * One tile: NT tokens against panel pb. Each output is one fma chain over
 * k in order, the same for every NT, so that a token's result does not
 * depend on the batch it is in. The loops over the tile are unrolled so
 * that the accumulators live in registers. ROW(t) is the activation row
 * of token t; with NORM the result is scaled by the row's inverse RMS,
 * worked out at the work-item's first panel and kept for the others;
 * EPI(v, t) consumes the 16 results of token t.
 */
#define MM_TILE(NT, ROW, NORM, EPI)                                        \
	do {                                                               \
		float16 acc_[NT];                                          \
		global const float *xr_[NT];                               \
		uint j_, k_;                                               \
		_Pragma("unroll") for (j_ = 0; j_ < NT; j_++)              \
		{                                                          \
			acc_[j_] = (float16)(0.0f);                        \
			xr_[j_] = x + (size_t)(ROW(t + j_)) * ldx;         \
		}                                                          \
		for (k_ = 0; k_ < K; k_++) {                               \
			float16 w_ = vload16(k_, p);                       \
			PREFETCH(p + (size_t)(k_ + PREFETCH_LINES) * 16);  \
			_Pragma("unroll") for (j_ = 0; j_ < NT; j_++)      \
				acc_[j_] = fma(w_, (float16)(xr_[j_][k_]), \
					       acc_[j_]);                  \
		}                                                          \
		_Pragma("unroll") for (j_ = 0; j_ < NT; j_++)              \
		{                                                          \
			float16 v_ = acc_[j_];                             \
			if (NORM) {                                        \
				if (pb == pb0)                             \
					rs_[t - t0 + j_] =                 \
						inv_rms(xr_[j_], K, eps);  \
				v_ *= rs_[t - t0 + j_];                    \
			}                                                  \
			EPI(v_, t + j_);                                   \
		}                                                          \
		t += NT;                                                   \
	} while (0)

/*
 * Tiles over the work-item's chunk, the largest first. MM_TILE_MAX, set by
 * the host from the device's vector width, is the most accumulators the
 * registers hold: 16, 8, 4, 1 tokens with 32 vector registers; 6, 4, 1
 * with 16 registers of 8 floats; 3, 1 with 4-float registers.
 */
#ifndef MM_TILE_MAX
#define MM_TILE_MAX 16
#endif
#define MM_TRY(NT, ROW, NORM, EPI) \
	while (end - t >= NT)      \
	MM_TILE(NT, ROW, NORM, EPI)
/* The conditions are constants: the compiler keeps one set of tiles. */
#define MM_TILES(ROW, NORM, EPI)                               \
	do {                                                   \
		if (MM_TILE_MAX >= 16) {                       \
			MM_TRY(16, ROW, NORM, EPI);            \
			MM_TRY(8, ROW, NORM, EPI);             \
		}                                              \
		if (MM_TILE_MAX >= 6 && MM_TILE_MAX < 16)      \
			MM_TRY(6, ROW, NORM, EPI);             \
		if (MM_TILE_MAX >= 4)                          \
			MM_TRY(4, ROW, NORM, EPI);             \
		else                                           \
			MM_TRY(3, ROW, NORM, EPI);             \
		MM_TRY(1, ROW, NORM, EPI);                     \
	} while (0)

/*
 * The work-item's panels and chunk of tokens. The host launches as many
 * work-items along dimension 0 as it wants the panels spread over: each
 * takes its share of n_panels (the matrix's) in a row, so that on a CPU,
 * where a few long work-items per core serve best, a norm's inverse RMS
 * is worked out once per token for all of them.
 */
#define MM_SETUP(n_panels)                                                   \
	uint np_ = ((n_panels) + (uint)get_global_size(0) - 1) /             \
		   (uint)get_global_size(0);                                 \
	uint pb0 = (uint)get_global_id(0) * np_;                             \
	uint pb_end = min((uint)(n_panels), pb0 + np_);                      \
	uint t0 = get_global_id(1) * TCHUNK;                                 \
	uint end = min(T, t0 + TCHUNK);                                      \
	float rs_[TCHUNK];                                                   \
	uint pb, t, r0;                                                      \
	global const float *p

#define MM_LOOP(ROW, NORM, EPI)                                    \
	for (pb = pb0; pb < pb_end; pb++) {                        \
		r0 = pb * PANEL;                                   \
		p = W + w_off + (size_t)pb * K * PANEL;            \
		t = t0;                                            \
		MM_TILES(ROW, NORM, EPI);                          \
	}

#define ROW_SELF(t) (t)
#define ROW_GATHER(t) (idx[t])

void store_rows(global float *y, float16 v, uint n, uint add)
{
	float a[PANEL];
	uint i;

	if (n >= PANEL) {
		if (add)
			v += vload16(0, y);
		vstore16(v, 0, y);
		return;
	}
	vstore16(v, 0, a);
	for (i = 0; i < n; i++)
		y[i] = add ? y[i] + a[i] : a[i];
}

/* y[t][r] (= or +=) sum_k W[r][k] x[t][k]: the batch loop is inside, so
 * the weights stream once per step for the whole batch. */
kernel void matmul(global const float *W, ulong w_off, global const float *x,
		   uint ldx, global float *y, uint ldy, uint R, uint K, uint T,
		   uint add)
{
	const float eps = 0.0f;
	MM_SETUP((R + PANEL - 1) / PANEL);
#define EPI_STORE(v, tt) store_rows(y + (size_t)(tt)*ldy + r0, v, R - r0, add)
	MM_LOOP(ROW_SELF, 0, EPI_STORE);
}

/* The logits: RMSNorm of each job's last token (row idx[t] of x), then
 * the output matrix. */
kernel void matmul_norm(global const float *W, ulong w_off,
			global const float *x, uint ldx, global const uint *idx,
			global float *y, uint ldy, uint R, uint K, uint T,
			float eps)
{
	const uint add = 0;
	MM_SETUP((R + PANEL - 1) / PANEL);
	MM_LOOP(ROW_GATHER, 1, EPI_STORE);
}

/*
 * RMSNorm, Q, K and V, RoPE on Q and K, and K and V into the job's cache
 * at the token's position. A panel lies in one of Q, K or V (their sizes
 * are multiples of 16) and holds whole RoPE pairs.
 */
void qkv_out(float16 v, uint t, uint r0, global float *q, uint q_dim,
	     uint kv_dim, uint hd, global const float *rope,
	     global const uint *pos, global const uint *slot, global half *kv,
	     ulong slot_values, ulong k_off, ulong v_off, uint ctx_cap)
{
	const float16 sign = (float16)(-1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1,
				       1, -1, 1, -1, 1);
	uint ps = pos[t], i;
	/* The panel's rows lie in one head (heads are whole panels): where
	 * they start in it, and which head, are worked out once, not per
	 * row. */
	uint in_head = r0 % hd;

	if (r0 < q_dim + kv_dim) {
		/* RoPE. Row in_head + i's pair is (in_head + i) / 2: its cos
		 * and sin are at 2 * pair = in_head + i, so the panel's 8
		 * pairs read 16 floats: (x0, x1) becomes (x0 c - x1 s,
		 * x1 c + x0 s). */
		float16 cs = vload16(0, rope + (size_t)ps * hd + in_head);

		v = v * cs.s0022446688aaccee +
		    v.s1032547698badcfe * (cs.s1133557799bbddff * sign);
	}
	if (r0 < q_dim) {
		vstore16(v, 0, q + (size_t)t * q_dim + r0);
		return;
	}
	if (r0 < q_dim + kv_dim) {
		/* K rows lie 16 halves apart in the cache: the panel is
		 * converted at once, then stored row by row. */
		ushort h[PANEL];
		global ushort *kb =
			(global ushort *)(kv + slot[t] * slot_values + k_off +
					  (size_t)((r0 - q_dim) / hd) *
						  ctx_cap * hd +
					  (size_t)(ps / 16) * hd * 16 +
					  ps % 16 + (size_t)in_head * 16);

		vstore_half16_rte(v, 0, (private half *)h);
		for (i = 0; i < PANEL; i++)
			kb[(size_t)i * 16] = h[i];
		return;
	}
	vstore_half16_rte(v, 0,
			  kv + slot[t] * slot_values + v_off +
				  (size_t)((r0 - q_dim - kv_dim) / hd) *
					  ctx_cap * hd +
				  (size_t)ps * hd + in_head);
}

kernel void matmul_qkv(global const float *W, ulong w_off,
		       global const float *x, uint ldx, uint K, uint T,
		       float eps, ulong rope_off, global const uint *pos,
		       global const uint *slot, global float *q, uint q_dim,
		       uint kv_dim, uint hd, global half *kv,
		       ulong slot_values, ulong k_off, ulong v_off,
		       uint ctx_cap)
{
	global const float *rope = W + rope_off;
	MM_SETUP((q_dim + 2 * kv_dim) / PANEL);
#define EPI_QKV(v, tt)                                                \
	qkv_out(v, tt, r0, q, q_dim, kv_dim, hd, rope, pos, slot, kv, \
		slot_values, k_off, v_off, ctx_cap)
	MM_LOOP(ROW_SELF, 1, EPI_QKV);
}

/* RMSNorm, gate and up, SwiGLU: 8 outputs per panel. */
kernel void matmul_swiglu(global const float *W, ulong w_off,
			  global const float *x, uint ldx, uint K, uint T,
			  float eps, global float *g, uint d_ff)
{
	MM_SETUP(2 * d_ff / PANEL);
#define EPI_SWIGLU(v, tt)                                   \
	vstore8((v).lo / (1.0f + exp(-(v).lo)) * (v).hi, 0, \
		g + (size_t)(tt)*d_ff + r0 / 2)
	MM_LOOP(ROW_SELF, 1, EPI_SWIGLU);
}

/* The first layer's residual stream: each token's embedding row, one
 * work-item per token (one per float took 38 us of a batch-16 step on an
 * AVX2 CPU, this 4). */
kernel void embed(global const uint *tok, global const float *W, ulong e_off,
		  global float *x, uint d)
{
	size_t t = get_global_id(0);
	global const float *src = W + e_off + (size_t)tok[t] * d;
	global float *dst = x + t * d;
	uint i = 0;

	for (; i + 16 <= d; i += 16)
		vstore16(vload16(0, src + i), 0, dst + i);
	for (; i < d; i++)
		dst[i] = src[i];
}

/*
 * Causal attention of one token for the G query heads of one KV head: the
 * group shares each K and V row it reads, converted from half once. Online
 * softmax over chunks of ATT_CHUNK blocks of 16 positions, so one pass
 * over the cache, and the running maximum, the rescale and the sums are
 * worked out once per chunk. Where G is a constant (see attention), the
 * group's scores of a block and its value sums over 16 dimensions live in
 * registers: the scores of a block are one fma chain per head over its K
 * rows, and the values are taken 16 dimensions at a time, one chain per
 * head over the chunk's positions (the sums of all dimensions go through
 * private memory once per chunk).
 * On an AVX2 CPU at batch 16 this is 1.5x faster at context 128 (1.3x at
 * 1024) than taking one head at a time with G a variable, whose value
 * sums lived in memory.
 */
__attribute__((always_inline)) void
attend(const uint G, global const float *qt, global const half *kb,
       global const half *vb, uint n, uint hd, global float *o)
{
	float qs[GROUP_MAX][HD_MAX], e[GROUP_MAX][16 * ATT_CHUNK];
	float16 acc[GROUP_MAX][HD_MAX / 16];
	float m[GROUP_MAX], l[GROUP_MAX], c[GROUP_MAX];
	float scale = rsqrt((float)hd);
	const float16 lane =
		(float16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
	uint h16 = hd / 16, g, i, b, b0, j;

	/* The first two blocks, before the queries are read: their lines
	 * would otherwise arrive one miss at a time. */
	for (i = 0; i < 2 * hd * 16; i += 32) {
		if (i < (n + 15) / 16 * 16 * hd)
			PREFETCH(kb + i);
		if (i < n * hd)
			PREFETCH(vb + i);
	}
#pragma unroll
	for (g = 0; g < G; g++) {
		for (i = 0; i < hd; i++)
			qs[g][i] = qt[(size_t)g * hd + i] * scale;
		for (j = 0; j < h16; j++)
			acc[g][j] = (float16)(0.0f);
		m[g] = -INFINITY;
		l[g] = 0.0f;
	}
	for (b0 = 0; b0 * 16 < n; b0 += ATT_CHUNK) {
		uint nb = min((uint)ATT_CHUNK, (n + 15) / 16 - b0);
		uint left = min(16u * ATT_CHUNK, n - b0 * 16);
		float16 mx[GROUP_MAX];

#pragma unroll
		for (g = 0; g < G; g++)
			mx[g] = (float16)(-INFINITY);
		/* The chunk's scores, block by block: one fma chain per head
		 * over the block's K rows. */
		for (b = b0; b < b0 + nb; b++) {
			global const half *kblk = kb + (size_t)b * hd * 16;
			global const half *pk, *pv;
			uint in = min(16u, n - b * 16);
			int16 valid = isless(lane, (float16)((float)in));
			bool more = in == 16 && (b + 1) * 16 < n;
			float16 s[GROUP_MAX];

#pragma unroll
			for (g = 0; g < G; g++)
				s[g] = (float16)(0.0f);
			/* The next block's K and V, a line (32 halves) of each
			 * per two K rows (the last block touches its own). */
			pk = kb + (size_t)(more ? b + 1 : b) * hd * 16;
			pv = vb + (size_t)(more ? b + 1 : b) * 16 * hd;
			for (i = 0; i < hd; i += 2) {
				float16 k0 = vload_half16(i, kblk);
				float16 k1 = vload_half16(i + 1, kblk);

				PREFETCH(pk + (size_t)i * 16);
				PREFETCH(pv + (size_t)i * 16);
#pragma unroll
				for (g = 0; g < G; g++) {
					s[g] = fma((float16)(qs[g][i]), k0,
						   s[g]);
					s[g] = fma((float16)(qs[g][i + 1]), k1,
						   s[g]);
				}
			}
#pragma unroll
			for (g = 0; g < G; g++) {
				float16 sv = select((float16)(-INFINITY), s[g],
						    valid);

				mx[g] = select(sv, mx[g], isgreater(mx[g], sv));
				vstore16(sv, b - b0, e[g]);
			}
		}
		/* Softmax once per chunk: the running maximum, the rescale
		 * of what was summed before, the chunk's exponentials. */
#pragma unroll
		for (g = 0; g < G; g++) {
			float mn = hmax16(mx[g]);
			float16 sum = (float16)(0.0f);

			mn = m[g] > mn ? m[g] : mn;
			c[g] = exp(m[g] - mn);
			for (b = 0; b < nb; b++) {
				float16 ex = exp(vload16(b, e[g]) - mn);

				sum += ex;
				vstore16(ex, b, e[g]);
			}
			l[g] = l[g] * c[g] + hsum16(sum);
			m[g] = mn;
		}
		/* The values, 16 dimensions at a time: one fma chain per
		 * head over the chunk's positions. */
		for (j = 0; j < h16; j++) {
			global const half *vr = vb + (size_t)b0 * 16 * hd + j * 16;
			float16 a[GROUP_MAX];

#pragma unroll
			for (g = 0; g < G; g++)
				a[g] = acc[g][j] * c[g];
			for (i = 0; i < left; i++) {
				float16 v = vload_half16(0, vr + (size_t)i * hd);

#pragma unroll
				for (g = 0; g < G; g++)
					a[g] = fma((float16)(e[g][i]), v, a[g]);
			}
#pragma unroll
			for (g = 0; g < G; g++)
				acc[g][j] = a[g];
		}
	}
#pragma unroll
	for (g = 0; g < G; g++)
		for (j = 0; j < h16; j++)
			vstore16(acc[g][j] / l[g], j, o + (size_t)g * hd);
}

/*
 * One work-item per (token, KV head). The common group sizes get their
 * own copy of attend with G a constant; others take the general one.
 */
kernel void attention(global const float *q, uint q_dim, global const half *kv,
		      ulong slot_values, ulong k_off, ulong v_off, uint ctx_cap,
		      global const uint *pos, global const uint *slot,
		      global float *out, uint ldo, uint n_heads, uint n_kv,
		      uint hd)
{
	uint gid = get_global_id(0);
	uint t = gid / n_kv, kh = gid % n_kv;
	uint G = n_heads / n_kv, n = pos[t] + 1;
	size_t base = (size_t)slot[t] * slot_values + (size_t)kh * ctx_cap * hd;
	global const float *qt = q + (size_t)t * q_dim + (size_t)kh * G * hd;
	global const half *kb = kv + base + k_off;
	global const half *vb = kv + base + v_off;
	global float *o = out + (size_t)t * ldo + (size_t)kh * G * hd;

	if (G == 1)
		attend(1, qt, kb, vb, n, hd, o);
	else if (G == 2)
		attend(2, qt, kb, vb, n, hd, o);
	else if (G == 3)
		attend(3, qt, kb, vb, n, hd, o);
	else if (G == 4)
		attend(4, qt, kb, vb, n, hd, o);
	else
		attend(G, qt, kb, vb, n, hd, o);
}

/* Greedy pick; ties go to the lowest id, as in the CPU reference. */
kernel void argmax(global const float *logits, uint vocab, global uint *out)
{
	uint j = get_global_id(0), v, best = 0;
	global const float *lg = logits + (size_t)j * vocab;

	for (v = 1; v < vocab; v++)
		if (lg[v] > lg[best])
			best = v;
	out[j] = best;
}
