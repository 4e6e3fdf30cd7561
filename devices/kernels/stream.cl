/*
 * hetsched: STREAM-style copy, for the roofline of the micro-benchmark
 * (bench/bench-exec.c). Each work-item copies `per` consecutive float16,
 * so that a CPU device streams long runs as a memcpy would.
 */
kernel void stream_copy(global const float16 *src, global float16 *dst,
			uint per)
{
	size_t i = get_global_id(0) * (size_t)per, j;

	for (j = 0; j < per; j++)
		dst[i + j] = src[i + j];
}

/*
 * The compute roofline: FMA_CHAINS independent chains of float16 fmas,
 * `iters` long, in registers (the host sets FMA_CHAINS from the vector
 * registers, as MM_TILE_MAX). Each chain starts from its own value, so
 * that no compiler may fold chains that would compute the same thing.
 */
#ifndef FMA_CHAINS
#define FMA_CHAINS 6
#endif
kernel void fma_peak(global float *out, uint iters, float a, float b)
{
	float16 acc[FMA_CHAINS], s = (float16)(0.0f);
	float seed = (float)get_global_id(0);
	uint i, c;

	_Pragma("unroll") for (c = 0; c < FMA_CHAINS; c++)
		acc[c] = (float16)(seed + (float)c);
	for (i = 0; i < iters; i++)
		_Pragma("unroll") for (c = 0; c < FMA_CHAINS; c++)
			acc[c] = fma(acc[c], (float16)(a), (float16)(b));
	_Pragma("unroll") for (c = 0; c < FMA_CHAINS; c++)
		s += acc[c];
	/* Every lane, so that none of the chains' lanes is dead code. */
	{
		float8 h = s.lo + s.hi;
		float4 q = h.lo + h.hi;

		out[get_global_id(0)] = (q.x + q.y) + (q.z + q.w);
	}
}
