/*
 * Private to scheduler/: the core's state. Policies never see this; they
 * use the accessors of policies/policy.h.
 */
#ifndef HS_SCHED_INTERNAL_H
#define HS_SCHED_INTERNAL_H

#include "internal.h"
#include "perf.h"
#include "policy.h"

/* The most jobs in a batch (hs_sched_config_t.max_batch_jobs). */
#define HS__MAX_BATCH 4096

/* The most steps in one run. */
#define HS__RUN_MAX 256

/* A queue entry: jobs with a smaller rank go first. */
typedef struct hs__qent_s {
	int64_t rank;
	uint32_t slot;
	uint32_t qgen; /* the job's qgen when pushed: live while equal */
} hs__qent_t;

typedef struct hs__queue_s {
	/* The first live entry, at hand: in hs_sched_s.tops, where a pick
	 * compares the tops of a model's buckets in a line or two. */
	hs__qent_t *top;
	hs__qent_t *ring; /* entries pushed in rank order, sorted */
	hs__qent_t *heap; /* the others: a binary heap by rank */
	uint32_t head; /* ring index of the ring's first entry */
	uint32_t n_ring; /* ring entries, the dead ones included */
	uint32_t cap_ring; /* a power of two, or 0 */
	uint32_t n; /* heap entries, the dead ones included */
	uint32_t cap;
	uint32_t live; /* jobs in the queue */
	/* Whose and which class it is, for a division's price. */
	int32_t owner; /* device, -1: shared */
	uint16_t model;
	uint16_t bucket;
} __attribute__((aligned(64))) hs__queue_t; /* a cache line */
_Static_assert(sizeof(hs__queue_t) == 64, "a queue is one cache line");

#define HS__NO_QUEUE UINT32_MAX

/* A job as the core keeps it; hs_sched_submit sets each field. */
typedef struct hs__jobrec_s {
	hs_job_t pub;
	uint32_t gen; /* slot generation: ids are gen << 32 | slot */
	uint32_t queue; /* queue index while queued, else NO_QUEUE */
	uint32_t qgen; /* pushes of the slot into a queue, ever */
	uint32_t base_generated; /* tokens made before it (re)joined */
	float cost_ns; /* backlog it adds to its bound device */
	int32_t owner; /* bound device, -1: shared queue */
	bool cancel; /* leave at the next step boundary */
} hs__jobrec_t;

/* What a step boundary reads comes first, in a few cache lines; the
 * device's description (over a kilobyte) and the residency clock last. */
typedef struct hs__dev_s {
	int32_t id; /* d.id */
	double cap_w, speed; /* of the level granted */
	uint64_t usable_bytes; /* memory less the configured reserve */
	bool failed;
	bool busy; /* a step is running */
	bool waiting_power; /* has work, the budget lets no level run */
	uint64_t power_wait_epoch; /* power_epoch when it was refused */
	int level; /* of the running step */
	double draw_w; /* modeled draw now */
	double min_cap_w; /* the least any power level draws */
	double step_budget_w; /* budget when its step started */
	int64_t step_start_ns;
	int64_t step_load_ns; /* weight load included in the step */
	double step_ctx; /* its C and P, for the calibration */
	uint64_t step_prefill;
	uint64_t seq; /* the run's first step (its last once it ended) */
	/*
	 * The run: steps of one batch at one level with nothing to decide
	 * between them (see hs_step_t.steps). A driver may report it a part
	 * at a time; the core takes it as a whole when it ends, so that it
	 * decides the same whether it hears of every step or of the run.
	 */
	uint32_t run_len; /* steps it may take: up to the first finish */
	uint32_t run_got; /* steps reported so far */
	uint32_t run_hand; /* steps of the part handed out last */
	uint32_t part_got; /* of which reported */
	bool cut; /* ends at the next step boundary */
	int64_t run_until; /* ends at the first boundary at or after */
	int64_t *run_ns; /* HS__RUN_MAX: the steps' measured times, kept
			  * while a run goes on past a report */
	const int64_t *run_src; /* where they are: run_ns, or the
				 * driver's while its report is handled */
	int64_t run_modeled_ns; /* time of the steps no sensor measured */
	int64_t run_busy_ns; /* time of all its steps so far */
	double run_energy_j; /* measured energy of the steps so far */
	int64_t lease_until; /* its power level is its until then */
	/* The batch: one model, one bucket. */
	int32_t model; /* -1: empty */
	uint32_t bucket;
	/* Beside ids, of each member: the step at whose end it finishes,
	 * the step it joined at, energy_per_job when it joined. */
	uint64_t *finish;
	uint64_t *join;
	double *emark;
	char *members_mem; /* the block of finish, ids, join, emark and
			    * joining, each from a line boundary */
	uint64_t finish_min; /* the least of them (UINT64_MAX: none) */
	uint32_t n_members;
	uint32_t n_joining; /* of the running step */
	uint32_t n_cancel; /* members to drop at the step's end */
	bool draining; /* another class starves: no more joiners */
	bool join_next; /* a job over this step's tokens joins at the next
			 * boundary (fill_batch): the run is one step */
	int64_t starve_check_ns; /* next look for a starving class */
	uint32_t *joining; /* slots that joined in the running step, with
			    * JOIN_FIRST (sched.c) when the step makes
			    * the job's first token */
	uint64_t *ids; /* the batch's job ids, those joining in the
			* running step first (hs_step_t.jobs); a removal
			* moves the last into the gap */
	uint64_t sum_ctx; /* sum of prefill lengths in the batch */
	uint64_t sum_join; /* sum of join in the batch */
	uint64_t kv_used; /* KV bytes reserved by the batch */
	uint64_t resident; /* bit m: weights of model m loaded */
	uint64_t resident_bytes; /* their weights' bytes */
	double energy_per_job; /* accumulated step energy / batch size */
	hs_device_stats_t st;
	hs_device_t d;
	uint64_t lru[64]; /* last use of each resident model (seq) */
} __attribute__((aligned(64))) hs__dev_t;

/* The rows of hs_sched_s.cost, for batch B: theta_step + theta_job * B,
 * theta_ctx, theta_prefill, weight load / B. */
enum {
	HS__COST_STEP,
	HS__COST_CTX,
	HS__COST_PREFILL,
	HS__COST_LOAD,
	HS__COST_N
};

struct hs_sched_s {
	hs_sched_config_t cfg;
	hs_sched_hooks_t hooks;
	const struct hs_policy_ops *policy;
	void *policy_state;
	const hs_model_catalog_t *catalog;
	hs_model_t *models; /* copies, n_models */
	uint32_t n_models;
	hs__dev_t *devs; /* in devs_mem, from a line boundary */
	char *devs_mem;
	uint32_t n_devs;
	hs__perf_t *perf; /* [d * n_models + m] */
	unsigned n_buckets;
	/* Contexts of bit length l fall in buckets bucket_lo[l] to
	 * bucket_hi[l] (hs__sched_bucket_of). */
	uint8_t bucket_lo[33], bucket_hi[33];

	/* Queues: owner o (0 shared, d + 1 device d), model m, bucket b at
	 * (o * n_models + m) * n_buckets + b. */
	hs__queue_t *queues; /* in queues_mem, from a line boundary */
	char *queues_mem;
	hs__qent_t *tops; /* per queue: its top (hs__queue_t.top) */
	char *tops_mem;
	uint32_t n_queues;
	uint64_t *nonempty; /* bitmap per owner of non-empty queues */
	uint32_t words_per_owner;
	uint64_t *owner_queued; /* jobs waiting per owner */

	/* Job slots. */
	uint32_t *gone; /* max_batch_jobs: members leaving a batch */
	uint64_t *gone_fin; /* max_batch_jobs: their finish steps */
	hs__jobrec_t *jobs; /* in jobs_mem, from a line boundary: a record
			     * is two lines, not three */
	char *jobs_mem;
	uint32_t n_slots;
	uint32_t cap_slots;
	uint32_t free_head; /* free list through pub.device, or NONE */

	/* Demand per class. */
	uint64_t *class_jobs;
	uint64_t *class_tokens;
	uint64_t *class_ctx;
	int64_t first_arrival_ns;
	int64_t last_now;

	/* Power. */
	double budget_w;
	double power_w;
	uint32_t n_grace; /* steps started under a higher budget */
	uint64_t power_epoch; /* bumped whenever power is freed */
	int64_t timer_at; /* requested wake-up, -1 none */
	int64_t next_epoch_ns;
	uint32_t kick_from;
	uint64_t *idle; /* bitmap: not busy, not failed */
	uint64_t *work; /* bitmap: a batch or jobs bound to it */
	uint64_t *in_run; /* bitmap: in a run that a join may cut */
	uint64_t *waiting; /* bitmap: waiting_power */
	uint32_t *model_devices; /* per model: devices whose batch runs it */
	uint64_t *model_queued; /* per model: jobs waiting, any queue */
	uint64_t unserved; /* bit m: model m waits and no device runs it */
	double *finish; /* n_devs: hs__sched_finish_ns's answer */
	double *backlog; /* n_devs: hs__sched_backlog_ns */
	float *backlog_f; /* n_devs: the same less backlog_base, in float */
	double backlog_base; /* at most every backlog when it was set */
	bool base_fresh; /* no backlog changed since it was set */

	/*
	 * What hs__sched_finish_ns needs of each (model, device), laid out
	 * per model as arrays over the devices so that its loop over the
	 * fleet reads them in a row. An entry is stale (bit d of the model's
	 * cost_stale words) from any change of the device's fit, residency
	 * or failure until the next hs__sched_finish_ns that looks at it;
	 * fit_lim is kept current at all times.
	 */
	double *cost; /* [(m * HS__COST_N + k) * n_devs + d] */
	float *cost_f; /* the same, rounded to float */
	uint32_t *cost_odd; /* per model: entries not in [0, 1e30) */
	uint64_t *fit_lim; /* [m * n_devs + d]: a job's KV bytes fit
			    * the device iff below it (0: never) */
	uint64_t *fit_min; /* per model: the least of its fit_lim */
	uint64_t *cost_stale; /* [m * dev_words + d / 64] */
	uint32_t dev_words; /* 64-bit words of a bitmap of devices */
	uint32_t cost_batch; /* the batch the entries are for */

	hs_sched_stats_t st;
	uint64_t modeled_steps; /* steps whose energy no sensor measured */
};

/* Every device's perf model may have changed (a calibration was loaded or
 * refit): hs__sched_finish_ns re-reads them all. */
void hs__sched_cost_stale_all(const hs_sched_t *s);

/* Whether no device in a run could take a job at its next boundary: what
 * lets a queue change behind a head skip the check (for tests). */
bool hs__sched_runs_quiet(const hs_sched_t *s);

/*
 * eft's float pre-pass on rows of its own (for tests): the device of the
 * least float finish time ks + kc C (floored at HS_PERF_MIN_NS) times per,
 * plus kp ctx + kl + bl, where bl is each backlog less base, when the floats
 * leave no doubt that the double pass picks it; -1 otherwise. Entries are
 * those of finish-time rows in [0, 1e30), rounded to float.
 */
int hs__sched_float_pick(const float *ks, const float *kc, const float *kp,
			 const float *kl, const float *bl, uint32_t n, double C,
			 double ctx, double per, double base);

#endif /* HS_SCHED_INTERNAL_H */
