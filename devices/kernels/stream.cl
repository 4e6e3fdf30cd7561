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
