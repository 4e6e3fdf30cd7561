/* Test support for the scheduler core: catalogs and devices by hand. */
#ifndef HS_SCHEDUTIL_H
#define HS_SCHEDUTIL_H

#include "hetsched.h"

/*
 * A catalog of two small models: "m-small" (1 GB of weights, 1 KB of KV
 * per token, context 8192) and "m-big" (10 GB, 4 KB per token, 8192).
 */
hs_model_catalog_t *hs_test_models(void);

/*
 * A sim device: memory in GB, bandwidth GB/s, TFLOP/s, idle and max W,
 * and levels as {cap, speed} pairs (n may be 0: one level at max_w).
 */
hs_device_t hs_test_device(const char *name, double mem_gb, double bw_gbs,
			   double tflops, double idle_w, double max_w,
			   unsigned n_levels, const double *levels);

#endif /* HS_SCHEDUTIL_H */
