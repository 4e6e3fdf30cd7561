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
#define HS_ERRNO_MAP(XX)                                                   \
	XX(NOMEM, 1, "out of memory")                                      \
	XX(INVAL, 2, "invalid argument")                                   \
	XX(IO, 3, "input/output error")                                    \
	XX(PARSE, 4, "malformed input")                                    \
	XX(NOENT, 5, "not found")                                          \
	XX(EXIST, 6, "already exists")                                     \
	XX(RANGE, 7, "value out of range")                                 \
	XX(TYPE, 8, "wrong type")                                          \
	XX(UNKNOWN_KEY, 9, "unknown key")                                  \
	XX(MISSING, 10, "required value missing")                          \
	XX(NODEV, 11, "no such device")                                    \
	XX(BACKEND, 12, "device backend error")                            \
	XX(UNSUPP, 13, "not supported")                                    \
	XX(NOFIT, 14, "job fits no device")                                \
	XX(FULL, 15, "queue full")                                         \
	XX(STATE, 16, "operation not valid in this state")                 \
	XX(SOLVER, 17, "solver failed")                                    \
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
	int code;           /* HS_E* */
	int line;           /* 1-based line, 0 if none */
	int column;         /* 1-based column, 0 if none */
	char source[256];   /* file or label */
	char path[128];     /* JSON path or field name, "" if none */
	char text[256];     /* the problem */
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
	char family[32];          /* "llama", "qwen2", "mixtral", ... */
	uint64_t params;          /* total parameters */
	uint64_t active_params;   /* parameters used per token (MoE < total) */
	uint32_t layers;
	uint32_t d_model;
	uint32_t n_heads;
	uint32_t n_kv_heads;
	uint32_t head_dim;
	uint32_t d_ff;
	uint32_t vocab;
	uint32_t max_context;
	uint32_t n_experts;       /* 0 for dense models */
	uint32_t experts_per_token;
	uint32_t dtype_bytes;     /* bytes per weight */
	uint32_t kv_dtype_bytes;  /* bytes per KV-cache element */
	uint64_t weight_bytes;    /* derived: params * dtype_bytes */
	uint64_t kv_bytes_per_token; /* derived, or given (latent attention) */
	bool kv_bytes_given;      /* true when the catalog gave it explicitly */
	bool runnable;            /* runs here with synthetic weights */
	uint64_t seed;            /* seed of the synthetic weights */
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
const hs_model_t *hs_model_catalog_get(const hs_model_catalog_t *cat,
				       size_t i);
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
	char name[64];                /* catalog key, e.g. "H100-SXM" */
	char vendor[32];
	hs_device_kind_t kind;
	/* Glob patterns (fnmatch, case-insensitive) matched against the names
	 * drivers report, e.g. "NVIDIA H100 80GB HBM3". */
	char match[HS_MAX_MATCH][96];
	unsigned n_match;
	uint64_t memory_bytes;
	double mem_bw_gbs;            /* GB/s, 1e9 bytes */
	double peak_tflops;           /* dense BF16/FP16 */
	double host_link_gbs;         /* host to device, for weight loads */
	double idle_w;
	double max_w;                 /* TDP */
	hs_power_level_t levels[HS_MAX_POWER_LEVELS]; /* descending cap */
	unsigned n_levels;
	double price_usd;             /* purchase price, 0 if unknown */
	char source[512];             /* where the figures come from */
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
	int id;                       /* index in its node */
	char name[128];               /* as the driver or hwloc reports it */
	char vendor[64];
	char profile[64];             /* matched catalog profile, "" if none */
	hs_device_kind_t kind;
	hs_backend_t backend;
	unsigned compute_units;
	unsigned clock_mhz;           /* 0 if unknown */
	uint64_t memory_bytes;
	uint64_t max_alloc_bytes;     /* 0 if unknown */
	uint64_t local_mem_bytes;     /* 0 if unknown */
	int numa_node;                /* -1 if unknown */
	char cpuset[128];             /* hwloc list syntax, e.g. "0-15" */
	char pci_busid[32];           /* "0000:17:00.0", "" if not on PCI */
	char version[64];             /* backend version (OpenCL C, ...) */
	char driver_version[64];
	double peak_tflops;
	double mem_bw_gbs;
	double host_link_gbs;
	double idle_w;
	double max_w;
	hs_power_level_t levels[HS_MAX_POWER_LEVELS];
	unsigned n_levels;
	hs_sensor_t sensor;           /* HS_SENSOR_NONE: power is modeled */
	char sensor_path[256];        /* sysfs file or NVML index */
	double price_usd;
	int cl_platform;              /* OpenCL indices, -1 if not OpenCL */
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
} hs_job_state_t;

/*
 * An inference job. Times are nanoseconds on the driver's clock (real or
 * virtual); -1 when the event has not happened.
 */
typedef struct hs_job_s {
	uint64_t id;
	uint32_t model;               /* index in the model catalog */
	uint32_t ctx_tokens;          /* prompt length */
	uint32_t gen_tokens;          /* tokens to generate */
	uint32_t generated;           /* tokens generated so far */
	int32_t priority;             /* higher runs first */
	int32_t device;               /* device it ran on, -1 if none */
	int64_t deadline_ns;          /* -1: none */
	int64_t arrival_ns;
	int64_t first_token_ns;
	int64_t done_ns;
	double energy_j;              /* energy attributed to the job */
	hs_job_state_t state;
} hs_job_t;

const char *hs_job_state_name(hs_job_state_t state);

#ifdef __cplusplus
}
#endif

#endif /* HETSCHED_H */
