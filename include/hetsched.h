/*
 * hetsched — a scheduler for LLM inference on mixed hardware.
 *
 * This is the public API: the error model, the data model (models, device
 * profiles, devices, jobs) and the catalogs and node discovery that fill it.
 * Containers are opaque handles; the records they hold are plain structs
 * that callers read through const pointers (as hwloc does with hwloc_obj).
 *
 * Conventions: actions return 0 or a negative HS_E* code; predicates return
 * bool; _new/_free pair heap objects. A function that takes an hs_error_t *
 * fills it on failure (it may be NULL when the caller does not want it).
 */
#ifndef HETSCHED_H
#define HETSCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HS_VERSION_MAJOR 0
#define HS_VERSION_MINOR 1
#define HS_VERSION_PATCH 0
#define HS_VERSION_STRING "0.1.0"

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * The one error table: every HS_E* code, its name and its message come from
 * here. Codes are negative; 0 is success.
 */
#define HS_ERRNO_MAP(XX)                                   \
	XX(NOMEM, 1, "out of memory")                      \
	XX(INVAL, 2, "invalid argument")                   \
	XX(IO, 3, "input/output error")                    \
	XX(PARSE, 4, "malformed input")                    \
	XX(NOENT, 5, "not found")                          \
	XX(EXIST, 6, "already exists")                     \
	XX(RANGE, 7, "value out of range")                 \
	XX(TYPE, 8, "wrong type")                          \
	XX(UNKNOWN_KEY, 9, "unknown key")                  \
	XX(MISSING, 10, "required value missing")          \
	XX(NODEV, 11, "no such device")                    \
	XX(BACKEND, 12, "device backend error")            \
	XX(UNSUPP, 13, "not supported")                    \
	XX(NOFIT, 14, "job fits no device")                \
	XX(FULL, 15, "queue full")                         \
	XX(STATE, 16, "operation not valid in this state") \
	XX(SOLVER, 17, "solver failed")                    \
	XX(INFEASIBLE, 18, "infeasible")

typedef enum {
#define HS__ERR_ENUM(name, num, msg) HS_E##name = -(num),
	HS_ERRNO_MAP(HS__ERR_ENUM)
#undef HS__ERR_ENUM
} hs_errno_t;

/* Message for an HS_E* code ("success" for 0, "unknown error" otherwise). */
const char *hs_strerror(int err);
/* Name of an HS_E* code, e.g. "HS_EPARSE" ("HS_OK" for 0). */
const char *hs_err_name(int err);

/*
 * What a loader fills when it rejects its input: the source (a file path or
 * a label such as "<inventory>"), the place in it (a line number for text
 * formats, a JSON path such as "$.models[2].layers" for JSON; line 0 and an
 * empty path when not applicable) and the problem in words.
 */
typedef struct hs_error_s {
	int code; /* HS_E* */
	int line; /* 1-based line, 0 if none */
	int column; /* 1-based column, 0 if none */
	char source[256]; /* file or label */
	char path[128]; /* JSON path or field name, "" if none */
	char text[256]; /* the problem */
} hs_error_t;

/*
 * Format an error as one line: "SOURCE:LINE: PATH: TEXT" with the parts that
 * are present. Returns buf.
 */
const char *hs_error_format(const hs_error_t *err, char *buf, size_t size);

/*
 * Replace the allocator used by hetsched (and, through
 * json_set_alloc_funcs, by jansson). Used by tests to fail the Nth
 * allocation. Passing NULLs restores malloc/free.
 */
typedef void *(*hs_malloc_fn)(size_t size);
typedef void (*hs_free_fn)(void *ptr);
void hs_set_alloc_funcs(hs_malloc_fn malloc_fn, hs_free_fn free_fn);

/* ------------------------------------------------------------------------ */
/* Models                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * A transformer's shape. Small models are runnable on this machine with
 * deterministic synthetic weights; large ones are shapes for simulation and
 * planning. Derived fields are filled by the catalog loader.
 */
typedef struct hs_model_s {
	char name[64];
	char family[32]; /* "llama", "qwen2", "mixtral", ... */
	uint64_t params; /* total parameters */
	uint64_t active_params; /* parameters used per token (MoE < total) */
	uint32_t layers;
	uint32_t d_model;
	uint32_t n_heads;
	uint32_t n_kv_heads;
	uint32_t head_dim;
	uint32_t d_ff;
	uint32_t vocab;
	uint32_t max_context;
	uint32_t n_experts; /* 0 for dense models */
	uint32_t experts_per_token;
	uint32_t dtype_bytes; /* bytes per weight */
	uint32_t kv_dtype_bytes; /* bytes per KV-cache element */
	uint64_t weight_bytes; /* derived: params * dtype_bytes */
	uint64_t kv_bytes_per_token; /* derived, or given (latent attention) */
	bool kv_bytes_given; /* true when the catalog gave it explicitly */
	bool runnable; /* runs here with synthetic weights */
	uint64_t seed; /* seed of the synthetic weights */
	char source[256];
} hs_model_t;

typedef struct hs_model_catalog_s hs_model_catalog_t;

/*
 * Load a model catalog from a JSON file. Every key is checked: unknown keys,
 * wrong types, zero or negative sizes, inconsistent shapes and duplicate
 * names are errors naming the file and the JSON path. On success *out owns
 * the catalog (free with hs_model_catalog_free); on failure *out is NULL.
 */
int hs_model_catalog_load(hs_model_catalog_t **out, const char *path,
			  hs_error_t *err);
/* The same, from a string; source names it in errors. */
int hs_model_catalog_parse(hs_model_catalog_t **out, const char *text,
			   const char *source, hs_error_t *err);
void hs_model_catalog_free(hs_model_catalog_t *cat);
size_t hs_model_catalog_count(const hs_model_catalog_t *cat);
const hs_model_t *hs_model_catalog_get(const hs_model_catalog_t *cat, size_t i);
/* By exact name; NULL when absent. */
const hs_model_t *hs_model_catalog_find(const hs_model_catalog_t *cat,
					const char *name);
/* KV-cache bytes per token derived from the shape (2 x layers x kv heads x
 * head_dim x kv_dtype_bytes). */
uint64_t hs_model_kv_bytes_derived(const hs_model_t *m);

/* ------------------------------------------------------------------------ */
/* Device profiles                                                          */
/* ------------------------------------------------------------------------ */

typedef enum {
	HS_KIND_CPU,
	HS_KIND_GPU,
	HS_KIND_ACCEL,
} hs_device_kind_t;

typedef enum {
	HS_BACKEND_CPU,
	HS_BACKEND_OPENCL,
	HS_BACKEND_SIM,
} hs_backend_t;

typedef enum {
	HS_SENSOR_NONE, /* power is modeled */
	HS_SENSOR_RAPL,
	HS_SENSOR_HWMON,
	HS_SENSOR_NVML,
} hs_sensor_t;

#define HS_MAX_POWER_LEVELS 8
#define HS_MAX_MATCH 8

/* A power level: the device capped at cap_w runs at speed x full speed. */
typedef struct hs_power_level_s {
	double cap_w;
	double speed;
} hs_power_level_t;

/* A catalog entry: what a kind of device can do and what it costs. */
typedef struct hs_profile_s {
	char name[64]; /* catalog key, e.g. "H100-SXM" */
	char vendor[32];
	hs_device_kind_t kind;
	/* Glob patterns (fnmatch, case-insensitive) matched against the names
	 * drivers report, e.g. "NVIDIA H100 80GB HBM3". */
	char match[HS_MAX_MATCH][96];
	unsigned n_match;
	uint64_t memory_bytes;
	double mem_bw_gbs; /* GB/s, 1e9 bytes */
	double peak_tflops; /* dense BF16/FP16 */
	double host_link_gbs; /* host to device, for weight loads */
	double idle_w;
	double max_w; /* TDP */
	hs_power_level_t levels[HS_MAX_POWER_LEVELS]; /* descending cap */
	unsigned n_levels;
	double price_usd; /* purchase price, 0 if unknown */
	char source[512]; /* where the figures come from */
} hs_profile_t;

typedef struct hs_profile_catalog_s hs_profile_catalog_t;

/* Load/parse a device profile catalog; same contract as the model catalog. */
int hs_profile_catalog_load(hs_profile_catalog_t **out, const char *path,
			    hs_error_t *err);
int hs_profile_catalog_parse(hs_profile_catalog_t **out, const char *text,
			     const char *source, hs_error_t *err);
void hs_profile_catalog_free(hs_profile_catalog_t *cat);
size_t hs_profile_catalog_count(const hs_profile_catalog_t *cat);
const hs_profile_t *hs_profile_catalog_get(const hs_profile_catalog_t *cat,
					   size_t i);
/* By catalog name (exact, case-insensitive); NULL when absent. */
const hs_profile_t *hs_profile_catalog_find(const hs_profile_catalog_t *cat,
					    const char *name);
/*
 * The first profile whose patterns match a driver-reported device name and
 * whose kind fits the device: cpu profiles match only cpu devices, gpu and
 * accelerator profiles only gpu and accelerator devices (so a catch-all CPU
 * profile never claims an unknown GPU). NULL when none does.
 */
const hs_profile_t *hs_profile_catalog_match(const hs_profile_catalog_t *cat,
					     const char *device_name,
					     hs_device_kind_t kind);

/* ------------------------------------------------------------------------ */
/* Devices                                                                  */
/* ------------------------------------------------------------------------ */

/* One schedulable device of a node. */
typedef struct hs_device_s {
	int id; /* index in its node */
	char name[128]; /* as the driver or hwloc reports it */
	char vendor[64];
	char profile[64]; /* matched catalog profile, "" if none */
	hs_device_kind_t kind;
	hs_backend_t backend;
	unsigned compute_units;
	unsigned clock_mhz; /* 0 if unknown */
	uint64_t memory_bytes;
	uint64_t max_alloc_bytes; /* 0 if unknown */
	uint64_t local_mem_bytes; /* 0 if unknown */
	int numa_node; /* -1 if unknown */
	char cpuset[128]; /* hwloc list syntax, e.g. "0-15" */
	char pci_busid[32]; /* "0000:17:00.0", "" if not on PCI */
	char version[128]; /* backend version (OpenCL, ...) */
	char driver_version[64];
	double peak_tflops;
	double mem_bw_gbs;
	double host_link_gbs;
	double idle_w;
	double max_w;
	hs_power_level_t levels[HS_MAX_POWER_LEVELS];
	unsigned n_levels;
	hs_sensor_t sensor; /* HS_SENSOR_NONE: power is modeled */
	char sensor_path[256]; /* sysfs file or NVML index */
	double price_usd;
	int cl_platform; /* OpenCL indices, -1 if not OpenCL */
	int cl_device;
} hs_device_t;

const char *hs_device_kind_name(hs_device_kind_t kind);
const char *hs_backend_name(hs_backend_t backend);
/* "modeled" for HS_SENSOR_NONE, else "rapl", "hwmon", "nvml". */
const char *hs_sensor_name(hs_sensor_t sensor);

/* ------------------------------------------------------------------------ */
/* Node discovery                                                           */
/* ------------------------------------------------------------------------ */

/* What hwloc says about the node's CPUs and memory. */
typedef struct hs_topology_info_s {
	unsigned packages;
	unsigned numa_nodes;
	unsigned cores;
	unsigned pus;
	uint64_t memory_bytes;
	char cpu_model[128];
} hs_topology_info_t;

typedef struct hs_discover_opts_s {
	/* Where the device profiles come from (required for matching). */
	const hs_profile_catalog_t *profiles;
	/* Read an hwloc XML topology instead of this machine; its GPUs and
	 * co-processors become sim devices. NULL: this machine. */
	const char *topology_xml;
	/* An hwloc synthetic description ("pack:2 numa:1 core:4 pu:2"),
	 * for tests. NULL: not used. */
	const char *topology_synthetic;
	/* A node described by hand: sim devices only. NULL: not used. */
	const char *inventory;
	/* Skip OpenCL enumeration (it is skipped anyway with an XML,
	 * synthetic or inventory node). */
	bool no_opencl;
	/* Root of the sysfs tree searched for power sensors ("" or NULL:
	 * "/sys"); tests point it at a recorded tree. */
	const char *sysfs_root;
} hs_discover_opts_t;

typedef struct hs_node_s hs_node_t;

/*
 * Discover a node: CPUs through hwloc (one cpu device per NUMA node),
 * OpenCL devices through the ICD loader, power sensors through sysfs and
 * NVML; or read it from an XML topology or an inventory. Devices that cannot
 * be matched to a profile are kept and reported in the warnings, never
 * dropped. On failure *out is NULL and err names the problem.
 */
int hs_node_discover(hs_node_t **out, const hs_discover_opts_t *opts,
		     hs_error_t *err);
void hs_node_free(hs_node_t *node);
const hs_topology_info_t *hs_node_topology(const hs_node_t *node);
size_t hs_node_device_count(const hs_node_t *node);
const hs_device_t *hs_node_device(const hs_node_t *node, size_t i);
size_t hs_node_warning_count(const hs_node_t *node);
const char *hs_node_warning(const hs_node_t *node, size_t i);

/* ------------------------------------------------------------------------ */
/* Jobs                                                                     */
/* ------------------------------------------------------------------------ */

typedef enum {
	HS_JOB_QUEUED,
	HS_JOB_RUNNING,
	HS_JOB_DONE,
	HS_JOB_CANCELLED,
	HS_JOB_REFUSED,
	HS_JOB_FAILED, /* its devices failed and no other can run it */
} hs_job_state_t;

/*
 * An inference job. Times are nanoseconds on the driver's clock (real or
 * virtual); -1 when the event has not happened.
 */
typedef struct hs_job_s {
	uint64_t id;
	uint32_t model; /* index in the model catalog */
	uint32_t ctx_tokens; /* prompt length */
	uint32_t gen_tokens; /* tokens to generate */
	uint32_t generated; /* tokens generated so far */
	int32_t priority; /* higher runs first */
	int32_t device; /* device it ran on, -1 if none */
	int64_t deadline_ns; /* -1: none */
	int64_t arrival_ns;
	int64_t start_ns; /* joined a batch (last time) */
	int64_t first_token_ns;
	int64_t done_ns;
	double energy_j; /* energy attributed to the job */
	hs_job_state_t state;
	uint64_t tag; /* hs_job_spec_t.tag: a driver finds its own record of
		       * the job without a lookup by id */
} hs_job_t;

const char *hs_job_state_name(hs_job_state_t state);

/* ------------------------------------------------------------------------ */
/* The scheduler core                                                       */
/* ------------------------------------------------------------------------ */

/*
 * A deterministic state machine with no threads, no I/O and no clock: every
 * call below is an event carrying its timestamp `now` (ns on the driver's
 * clock, never decreasing). After each event the core asks the policy what
 * to start and tells the driver through hooks. The node agent (real time)
 * and the simulation driver (virtual time) drive the same core.
 */
typedef struct hs_sched_s hs_sched_t;

#define HS_MAX_BUCKETS 24

typedef struct hs_sched_config_s {
	const char *policy; /* "fifo", "rr", "eft", "tpw", "lp" */
	uint32_t max_batch_jobs; /* jobs per device batch (default 32) */
	uint32_t max_step_tokens; /* prefill + decode tokens per step
				   * (default 8192); a single joiner with a
				   * longer prompt still runs, alone */
	uint32_t min_batch_jobs; /* an idle device starts a batch of fewer
				  * jobs only once the oldest has waited
				  * max_wait_ns (default 1: never waits) */
	int64_t max_wait_ns; /* default 50 ms */
	int64_t aging_ns; /* a waiting job gains one priority level
			   * per aging_ns (default 1 s); a running
			   * batch stops taking jobs once a job of
			   * another class it could run has waited
			   * that long, so that no class starves */
	uint32_t bucket_edges[HS_MAX_BUCKETS]; /* upper context edges,
						* ascending; n_buckets 0: powers
						* of two from 128 up to 1M */
	unsigned n_buckets;
	double power_budget_w; /* <= 0: no budget */
	double kv_reserve; /* fraction of device memory kept free
			    * (default 0.05) */
	int64_t lp_epoch_ns; /* lp policy re-solve period (default 1 s) */
	int64_t power_lease_ns; /* under a budget, a device keeps the power
				 * level it was granted this long while its
				 * batch has work (default 1 s), as a
				 * power cap is held on real hardware; the
				 * governor re-divides the budget when a
				 * lease ends, the batch empties or the
				 * budget changes. 0: at every step */
} hs_sched_config_t;

/* Fill cfg with the defaults (policy "eft"). */
void hs_sched_config_init(hs_sched_config_t *cfg);

/* One step a device is told to run. */
typedef struct hs_step_s {
	int device;
	uint64_t seq; /* step number on this device, from 1 */
	uint32_t model;
	uint32_t bucket;
	uint32_t batch; /* jobs in the step */
	uint32_t joining; /* of which prefill this step */
	const uint64_t *jobs; /* batch ids, joining ones first; valid
			       * during the hook only */
	uint64_t ctx_tokens; /* C: context tokens attended over */
	uint64_t prefill_tokens; /* P */
	int level; /* power level index of the device */
	double power_w; /* modeled draw during the step */
	int64_t load_ns; /* weight load first (model switch) */
	int64_t predicted_ns; /* of this step (step 0 of a run), at this
			       * level, load included */
	/*
	 * A run: the driver may go on with up to `steps` steps (never more
	 * than hooks.max_run) of the same batch at the same level, back to
	 * back, without asking the core: step i (from 0) is step seq + i,
	 * attends over ctx_tokens + i * batch tokens, and only step 0
	 * prefills or loads weights. It stops after the first step that
	 * ends at or after until_ns, and at the first boundary after the
	 * cut hook, then reports what ran with hs_sched_run_done. A driver
	 * with max_run 0 or 1 always gets steps 1 and reports each step
	 * with hs_sched_step_done; the core decides the same either way.
	 */
	uint32_t steps;
	int64_t until_ns; /* INT64_MAX: no such limit */
} hs_step_t;

typedef enum {
	HS_JOB_EV_FIRST_TOKEN, /* prefill done, first token out */
	HS_JOB_EV_DONE, /* every token generated; freed after */
	HS_JOB_EV_CANCELLED, /* freed after */
	HS_JOB_EV_REQUEUED, /* its device failed; queued again */
	HS_JOB_EV_FAILED, /* no remaining device can run it; freed
			   * after */
} hs_job_event_t;

/*
 * How the core talks to its driver. Hooks run inside the event call that
 * caused them and must not call back into the core.
 */
typedef struct hs_sched_hooks_s {
	/* Run the step and call hs_sched_step_done when it ends. */
	void (*step_start)(void *ud, const hs_step_t *step);
	/* A job changed state; the record is valid during the call only. */
	void (*job_event)(void *ud, const hs_job_t *job, hs_job_event_t ev);
	/* Call hs_sched_timer at or after `when` (an earlier request may be
	 * superseded; extra calls are harmless). */
	void (*timer)(void *ud, int64_t when);
	void *ud;
	/* Steps the driver can run back to back (hs_step_t.steps); 0 or 1:
	 * one at a time. Without a cut hook the core hands out one at a
	 * time whatever this says. */
	uint32_t max_run;
	/*
	 * Drivers with max_run > 1: end the device's running part at its
	 * next step boundary (a job may join or leave, or the budget
	 * changed), then report it with hs_sched_run_done, fewer steps than
	 * handed out. Called from inside any hs_sched_* call (a submit, a
	 * cancel, a budget change, another device's report); like every
	 * hook it must not call back into the core. A part that already
	 * ended but is not reported yet ends where it ended.
	 */
	void (*cut)(void *ud, int device);
} hs_sched_hooks_t;

/*
 * Create a core over n devices (copied) and a model catalog (borrowed: it
 * must outlive the core). Fails with HS_ENOENT for an unknown policy and
 * HS_EINVAL for bad settings, naming the setting in err.
 */
int hs_sched_new(hs_sched_t **out, const hs_sched_config_t *cfg,
		 const hs_model_catalog_t *models, const hs_device_t *devices,
		 size_t n_devices, const hs_sched_hooks_t *hooks,
		 hs_error_t *err);
void hs_sched_free(hs_sched_t *s);

/* What a job asks for. */
typedef struct hs_job_spec_s {
	uint32_t model; /* index in the model catalog */
	uint32_t ctx_tokens;
	uint32_t gen_tokens; /* >= 1 */
	int32_t priority; /* higher first; |priority| <= 1000 */
	int64_t deadline_ns; /* -1: none */
	uint64_t tag; /* the caller's own, handed back in hs_job_t.tag */
} hs_job_spec_t;

/*
 * A job arrives. On success *id names it. A job that fits no device (its
 * model's weights plus its KV cache exceed every device's memory, or it is
 * longer than the model's context) is refused with HS_ENOFIT and err says
 * why; a malformed spec gets HS_EINVAL; HS_EFULL while the core holds
 * 2^31 - 1 jobs.
 */
int hs_sched_submit(hs_sched_t *s, int64_t now, const hs_job_spec_t *spec,
		    uint64_t *id, hs_error_t *err);
/* The step a device was running ended after measured_ns; energy_j is the
 * measured energy, or a negative value when no sensor measured it (the
 * core then models it as power x time). */
int hs_sched_step_done(hs_sched_t *s, int64_t now, int device,
		       int64_t measured_ns, double energy_j);
/*
 * The next n steps of the part of a run handed out last ended (at most
 * hs_step_t.steps less what hs_sched_run_progress reported), the last at
 * now, having taken step_ns[0..n-1]; energy_j as for hs_sched_step_done,
 * for all n. A part that ends with fewer steps than handed out ends the
 * run; n = 0 ends it after the steps run_progress reported.
 */
int hs_sched_run_done(hs_sched_t *s, int64_t now, int device, uint32_t n,
		      const int64_t *step_ns, double energy_j);
/* Some steps of a run ended and it goes on (fewer than the part has
 * left): what a driver of several steps at once says before
 * hs_sched_device_failed, so that the tokens they made count. */
int hs_sched_run_progress(hs_sched_t *s, int device, uint32_t n,
			  const int64_t *step_ns, double energy_j);
/* The power budget changed (<= 0: none); applied at step boundaries. */
int hs_sched_set_budget(hs_sched_t *s, int64_t now, double watts);
/* A timer the core asked for fired. */
int hs_sched_timer(hs_sched_t *s, int64_t now);
/* A device failed: its jobs are queued again for the others, nothing is
 * lost; it takes no more work. A running step is abandoned. */
int hs_sched_device_failed(hs_sched_t *s, int64_t now, int device);
/* Cancel a queued or running job (HS_ENOENT if unknown or finished). */
int hs_sched_cancel(hs_sched_t *s, int64_t now, uint64_t id);

/* A live (queued or running) job; NULL when unknown or finished. */
const hs_job_t *hs_sched_job(const hs_sched_t *s, uint64_t id);

typedef struct hs_sched_stats_s {
	uint64_t submitted, refused, completed, cancelled, requeued;
	uint64_t failed; /* accepted, then no device left for
			  * them (hs_sched_device_failed) */
	uint64_t queued, running; /* now */
	uint64_t decisions; /* policy calls */
	uint64_t replans; /* plans the policy solved (lp) */
	uint64_t steps;
	uint64_t output_tokens; /* generated */
	uint64_t prefill_tokens;
	double energy_j; /* modeled unless energy_measured */
	bool energy_measured; /* every step's energy was measured */
	double budget_w; /* in force; 0: none */
	double power_floor_w; /* idle draw of every device: a
			       * budget below it cannot be met */
	double power_w; /* modeled draw now */
	double peak_power_w;
	uint64_t power_violations; /* instants above the budget */
	double max_violation_w;
	uint64_t power_waits; /* starts refused for want of power */
	uint64_t paused; /* batches paused by the governor */
	uint64_t perf_outliers;
	double perf_mean_rel_error; /* over every (device, model) fit */
	double perf_calibrated_error; /* the same, once each fit had its
				       * warm-up samples */
} hs_sched_stats_t;

void hs_sched_stats(const hs_sched_t *s, hs_sched_stats_t *out);

typedef struct hs_device_stats_s {
	uint64_t steps;
	uint64_t output_tokens;
	int64_t busy_ns;
	double energy_j;
	bool failed;
	bool busy;
} hs_device_stats_t;

void hs_sched_device_stats(const hs_sched_t *s, int device,
			   hs_device_stats_t *out);

/*
 * The throughput bound (output tokens/s) of this fleet under the power
 * budget, for the mix of (model, context bucket) classes observed so far:
 * the LP of the lp policy without the demand cap (GLPK). HS_ENOENT before
 * any job arrived, HS_EINFEASIBLE when the budget is below the idle draw,
 * HS_ESOLVER if GLPK fails.
 */
int hs_sched_upper_bound(hs_sched_t *s, double *tokens_per_s);

/* Save and load the calibrated performance models (JSON). Entries for
 * devices or models the core does not have are skipped on load. */
int hs_sched_perf_save(const hs_sched_t *s, const char *path, hs_error_t *err);
int hs_sched_perf_load(hs_sched_t *s, const char *path, hs_error_t *err);

/* The names of the policies, NULL-terminated. */
const char *const *hs_policy_names(void);

#ifdef __cplusplus
}
#endif

#endif /* HETSCHED_H */
