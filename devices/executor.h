/*
 * For authors of device backends: the executor interface. Each executor
 * in devices/ exports one const struct hs_executor_ops, chosen by the
 * device's backend (hs__executor_for). The core never calls an executor:
 * a driver does, when the core's step_start hook tells it to run a step,
 * and reports the measured time back with hs_sched_step_done.
 */
#ifndef HS_EXECUTOR_H
#define HS_EXECUTOR_H

#include "hetsched.h"

/*
 * Where a real executor gets the tokens it works on and sends the tokens
 * it makes. Called from the thread that runs the step.
 */
typedef struct hs_executor_io_s {
	/* The tokens a joining job's KV cache is built from: its prompt,
	 * then what it generated before (a requeued job). *tokens stays
	 * valid until the step ends. 0 or HS_E*. */
	int (*prompt)(void *ud, uint64_t job, const uint32_t **tokens,
		      uint32_t *n);
	/* A token generated for a job (the first one ends its prefill). */
	void (*token)(void *ud, uint64_t job, uint32_t token);
	void *ud;
} hs_executor_io_t;

typedef struct hs_executor_opts_s {
	uint64_t seed; /* for anything random (sim noise, weights) */
	double noise; /* sim: relative spread of step times (0: none) */
	double skew; /* sim: max relative error of the profile, so
		      * that calibration has something to learn */
	const hs_executor_io_t *io; /* real executors: tokens in and out */
	const char *kernel_dir; /* opencl: where the .cl files are
				 * (NULL: $HETSCHED_KERNELS, else
				 * devices/kernels) */
	unsigned threads; /* cpu: worker threads (0: one per
			   * core of the device's cpuset) */
	unsigned mm_tile; /* opencl: most tokens a matmul work-
			   * item takes at once, 16, 6 or 3 (0:
			   * from the device's vector width;
			   * others: HS_EINVAL) */
	unsigned mm_items; /* opencl: matmul work-items per launch
			    * at most, each taking a run of panels
			    * (0: 8 per compute unit on a CPU, one
			    * per panel elsewhere) */
	uint64_t fail_after_steps; /* tests: fail every step after this
				    * many (0: never) */
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
	/*
	 * Optional, for executors that do no work (sim): time steps 0..n-1
	 * of a run (see hs_step_t.steps) at once, each exactly as run_step
	 * would, the first starting at start_ns; stop after the first that
	 * ends at or after until_ns. Returns how many were timed, in
	 * ns_out, the last ending at *end_ns; 0 for a step it cannot run.
	 */
	uint32_t (*run_steps)(void *exec, const hs_step_t *step, uint32_t n,
			      int64_t start_ns, int64_t until_ns,
			      int64_t *ns_out, int64_t *end_ns);
	/* The job left this device (done, cancelled, requeued): free its KV
	 * cache for the next. Optional. */
	void (*release)(void *exec, uint64_t job);
};

extern const struct hs_executor_ops hs__executor_sim;
extern const struct hs_executor_ops hs__executor_cpu;
extern const struct hs_executor_ops hs__executor_opencl;

/* The executor for a device's backend (cpu, opencl, sim). */
const struct hs_executor_ops *hs__executor_for(const hs_device_t *dev);

#endif /* HS_EXECUTOR_H */
