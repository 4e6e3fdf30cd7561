/*
 * For authors of device backends: the executor interface. Each executor
 * in devices/ exports one const struct hs_executor_ops, chosen by name
 * (hs__executor_find). The core never calls an executor: a driver does,
 * when the core's step_start hook tells it to run a step, and reports the
 * measured time back with hs_sched_step_done.
 */
#ifndef HS_EXECUTOR_H
#define HS_EXECUTOR_H

#include "hetsched.h"

typedef struct hs_executor_opts_s {
	uint64_t seed;       /* for anything random (sim noise, weights) */
	double noise;        /* sim: relative spread of step times (0: none) */
	double skew;         /* sim: max relative error of the profile, so
			      * that calibration has something to learn */
} hs_executor_opts_t;

struct hs_executor_ops {
	const char *name;
	/* Open an executor for one device. 0 or HS_E*; *exec owned by the
	 * caller, closed with close(). */
	int (*open)(void **exec, const hs_device_t *dev,
		    const hs_model_catalog_t *models,
		    const hs_executor_opts_t *opts);
	void (*close)(void *exec);
	/*
	 * Run one step. Real executors block (call them from a worker
	 * thread); sim returns at once. *duration_ns is what the step took
	 * (measured, or simulated), *energy_j the measured energy or -1 when
	 * no sensor measured it. HS_EBACKEND when the device failed.
	 */
	int (*run_step)(void *exec, const hs_step_t *step, int64_t *duration_ns,
			double *energy_j);
};

extern const struct hs_executor_ops hs__executor_sim;

/* By name ("sim", ...); NULL when unknown. */
const struct hs_executor_ops *hs__executor_find(const char *name);

#endif /* HS_EXECUTOR_H */
