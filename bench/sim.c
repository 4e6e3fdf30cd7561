/* The discrete-event driver: the scheduler core in virtual time. */
#include <math.h>
#include <string.h>
#include <time.h>

#include "policy.h"
#include "sim.h"

#define POWER_EPS 1e-6
/* One core call in this many is timed (see CORE). */
#define CORE_SAMPLE 64
/* The most steps of a run the driver takes at once (hs_step_t.steps). */
#define SIM_RUN_MAX 256

/* A device as the driver sees it: one cache line. */
typedef struct sim_dev_s {
	const struct hs_executor_ops *ops;
	void *exec;
	double draw_w;
	double idle_w; /* its profile's, at hand */
	double step_budget_w;
	/* The run: n_run steps from run_start, each run_ns[i] long. */
	int64_t run_start;
	int64_t *run_ns; /* SIM_RUN_MAX, from a line boundary */
	uint32_t step_batch;
	uint16_t n_run;
	bool fail_pending; /* its step failed: tell the core */
	bool busy;
} __attribute__((aligned(64))) sim_dev_t;
_Static_assert(SIM_RUN_MAX <= UINT16_MAX, "n_run fits 16 bits");

typedef struct done_ev_s {
	int64_t at;
	uint32_t device;
} done_ev_t;

/* No step of the device is due. */
#define NOT_DUE INT64_MAX

/* Tokens of a job run by a real executor: prompt, then generated. */
typedef struct job_tokens_s {
	uint32_t *tok;
	uint32_t n;
	uint32_t cap;
} job_tokens_t;

typedef struct sim_s {
	const hs_sim_opts_t *opts;
	const hs_sim_job_t *jobs;
	size_t n_jobs;
	hs_sched_t *core;
	sim_dev_t *devs; /* in devs_mem, from a line boundary */
	char *devs_mem;
	char *run_ns_mem; /* the devices' run_ns, one block */
	job_tokens_t *tokens; /* per job, real executors only */
	bool any_fail_pending;
	size_t n_devs;
	/* Step completions, at most one per device, first by (at, device):
	 * a tournament tree over the devices. */
	int64_t *due; /* per leaf: completion, or NOT_DUE */
	uint32_t *win; /* node i: the leaf due first below it;
			* leaf d is node n_leaves + d */
	size_t n_leaves; /* a power of two, >= n_devs */
	size_t n_due; /* devices with a completion due */
	bool first_taken; /* the first is handled: the next push
			   * or due_settle removes it */
	uint32_t taken; /* its device */
	int64_t now;
	int64_t timer_at; /* -1: none */
	double budget_w;
	double idle_floor_w; /* a budget below it cannot be met */
	double power_w;
	int64_t power_since;
	/* id -> job index for real executors, which ask for a job's tokens
	 * by id (job events carry the index as their tag), through the id's
	 * slot part: slots are reused, so the whole id is kept to tell a
	 * stale entry. */
	struct slot_map {
		uint64_t id;
		uint32_t job;
	} * slot_job;
	size_t cap_slot_job;
	int64_t submitting; /* job being submitted, -1: none */
	uint64_t *done; /* bit per job: finished or refused; a bitmap
			 * stays in cache, jobs finish out of order */
	uint64_t started_steps;
	hs_executor_io_t io;
	bool real; /* some device runs steps for real */
	hs_sim_result_t *res;
	size_t cap_records;
	int failed; /* first error inside a hook */
	unsigned untimed; /* core calls before the next timed one */
	unsigned sample; /* core calls timed: one in this many */
	unsigned timing; /* inside a timed core call: its weight */
	/* Where the loop is in its order of events: (time, device) of the
	 * step completion being handled; device -1 before the completions
	 * of that time, n_devs after them. A cut run ends at its first
	 * boundary after it, the one a driver hearing of every step would
	 * have handled next. */
	int64_t pos_t;
	int64_t pos_d;
} sim_t;

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- step completions ------------------------------------------------- */

/*
 * A device has one step at most, so its completion sits at its own leaf of
 * a tournament tree: a change climbs one path, one comparison a level, and
 * the root names the first (earliest, then lowest device) of all, the one
 * a heap ordered by (at, device) would yield. A device that fails loses
 * its completion at once.
 */
static void due_set(sim_t *sm, uint32_t d, int64_t at)
{
	const int64_t *due = sm->due;
	uint32_t *win = sm->win;
	size_t i = (sm->n_leaves + d) / 2;

	sm->n_due += (at != NOT_DUE) - (due[d] != NOT_DUE);
	sm->due[d] = at;
	for (; i; i /= 2) {
		/* The left child's leaves are the lower devices: it wins
		 * ties. */
		uint32_t l = win[2 * i], r = win[2 * i + 1];

		win[i] = due[r] < due[l] ? r : l;
	}
}

/* The first completion; only while n_due. */
static inline done_ev_t due_first(const sim_t *sm)
{
	uint32_t d = sm->win[1];

	return (done_ev_t){.at = sm->due[d], .device = d};
}

/* Drop a taken first event that no push replaced. */
static void due_settle(sim_t *sm)
{
	if (!sm->first_taken)
		return;
	sm->first_taken = false;
	due_set(sm, sm->taken, NOT_DUE);
}

static void due_push(sim_t *sm, done_ev_t e)
{
	/* A device that finished usually starts another step: its event
	 * replaces the one taken, one climb instead of two. */
	if (sm->first_taken) {
		sm->first_taken = false;
		if (sm->taken != e.device)
			due_set(sm, sm->taken, NOT_DUE);
	}
	due_set(sm, e.device, e.at);
}

/* The earliest event, taken but left in place until the next push
 * replaces it or due_settle drops it. */
static done_ev_t due_take(sim_t *sm)
{
	done_ev_t e = due_first(sm);

	sm->first_taken = true;
	sm->taken = e.device;
	return e;
}

/* ---- power timeline and the driver's own budget check ----------------- */

static void bins_add(sim_t *sm, int64_t from, int64_t to, double w)
{
	hs_sim_result_t *res = sm->res;
	int64_t bin = res->bin_ns;

	if (bin <= 0 || to <= from)
		return;
	while (from < to) {
		size_t i = (size_t)((from - res->first_arrival_ns) / bin);
		int64_t end = res->first_arrival_ns + (int64_t)(i + 1) * bin;
		int64_t upto = end < to ? end : to;

		if (from < res->first_arrival_ns || i >= res->n_bins)
			return;
		res->bins[i].avg_w +=
			(float)(w * (double)(upto - from) / (double)bin);
		if (w > res->bins[i].max_w)
			res->bins[i].max_w = (float)w;
		res->bins[i].budget_w = (float)sm->budget_w;
		from = upto;
	}
}

static void bins_tokens(sim_t *sm, int64_t at, uint32_t tokens)
{
	hs_sim_result_t *res = sm->res;
	size_t i;

	if (res->bin_ns <= 0 || at < res->first_arrival_ns)
		return;
	i = (size_t)((at - res->first_arrival_ns) / res->bin_ns);
	if (i < res->n_bins)
		res->bins[i].tokens += tokens;
}

/* The power from power_since to now was sm->power_w. */
static void power_advance(sim_t *sm)
{
	bins_add(sm, sm->power_since, sm->now, sm->power_w);
	sm->res->energy_j +=
		sm->power_w * (double)(sm->now - sm->power_since) / 1e9;
	sm->power_since = sm->now;
}

static void set_draw(sim_t *sm, size_t d, double w)
{
	/* A run that goes on at its level is no change: the timeline is not
	 * split, so that it sums the same however the runs are told. */
	if (w == sm->devs[d].draw_w)
		return;
	power_advance(sm);
	sm->power_w += w - sm->devs[d].draw_w;
	sm->devs[d].draw_w = w;
}

/* Check the state that holds from now until the next event. */
static void power_check(sim_t *sm)
{
	hs_sim_result_t *res = sm->res;
	double over = sm->power_w - (sm->budget_w > sm->idle_floor_w
					     ? sm->budget_w
					     : sm->idle_floor_w);
	size_t d;

	if (sm->power_w > res->peak_power_w)
		res->peak_power_w = sm->power_w;
	if (sm->budget_w <= 0 || over <= POWER_EPS)
		return;
	for (d = 0; d < sm->n_devs; d++) {
		const sim_dev_t *dv = &sm->devs[d];

		if (dv->busy && (dv->step_budget_w <= 0 ||
				 dv->step_budget_w > sm->budget_w))
			return; /* a step from before the drop still runs */
	}
	res->power_violations++;
	if (over > res->max_violation_w)
		res->max_violation_w = over;
}

/* ---- hooks ------------------------------------------------------------ */

static void on_step_start(void *ud, const hs_step_t *st)
{
	sim_t *sm = ud;
	sim_dev_t *dv = &sm->devs[st->device];
	int64_t at = sm->now, t0 = sm->timing ? mono_ns() : 0;
	double energy;
	uint32_t i = 0;
	int rc = 0;

	/* The run's steps as the executor times them, up to the first that
	 * ends at or after until_ns. An executor that times no run ahead (a
	 * real one) gets a step at a time: the driver asked for no more. */
	if (dv->ops->run_steps) {
		uint32_t n = st->steps < SIM_RUN_MAX ? st->steps : SIM_RUN_MAX;

		i = dv->ops->run_steps(dv->exec, st, n, sm->now, st->until_ns,
				       dv->run_ns, &at);
		if (!i)
			rc = HS_EINVAL;
	} else if (!(rc = dv->ops->run_step(dv->exec, st, &dv->run_ns[0],
					    &energy))) {
		at += dv->run_ns[0];
		i = 1;
	}
	/* A real step runs inside this hook, inside a core call: its time is
	 * the device's, not the scheduler's. */
	if (sm->timing)
		sm->res->sched_cpu_ns -= (double)(mono_ns() - t0) * sm->timing;
	if (rc == HS_EBACKEND && i == 0) {
		/* The device failed: the core hears of it once this hook
		 * returns; the step never completes. */
		dv->fail_pending = true;
		sm->any_fail_pending = true;
		sm->res->device_failures++;
		return;
	}
	if (rc && !sm->failed)
		sm->failed = rc;
	if (i == 0)
		return;
	dv->busy = true;
	dv->n_run = i;
	dv->run_start = sm->now;
	dv->step_batch = st->batch;
	dv->step_budget_w = sm->budget_w;
	set_draw(sm, (size_t)st->device, st->power_w);
	due_push(sm, (done_ev_t){.at = at, .device = (uint32_t)st->device});
	sm->started_steps += i;
}

/* The core ends a device's run at its next step boundary. */
static void on_cut(void *ud, int device)
{
	sim_t *sm = ud;
	sim_dev_t *dv = &sm->devs[device];
	int64_t at = dv->run_start;
	uint32_t j;

	if (!dv->busy)
		return;
	for (j = 0; j + 1 < dv->n_run; j++) {
		at += dv->run_ns[j];
		if (at > sm->pos_t || (at == sm->pos_t && device > sm->pos_d))
			break;
	}
	if (j + 1 >= dv->n_run)
		return; /* it ends at its last step anyway */
	dv->n_run = j + 1;
	due_set(sm, (uint32_t)device, at);
}

static int note_slot(sim_t *sm, uint64_t id, size_t job)
{
	size_t slot = (size_t)(id & 0xffffffffu);

	if (slot >= sm->cap_slot_job) {
		size_t cap = sm->cap_slot_job;

		if (hs__grow((void **)&sm->slot_job, &cap, slot + 1,
			     sizeof(*sm->slot_job)))
			return HS_ENOMEM;
		sm->cap_slot_job = cap;
	}
	sm->slot_job[slot].id = id;
	sm->slot_job[slot].job = (uint32_t)job;
	return 0;
}

/*
 * The workload index of a job a real executor asks about. An id the map does
 * not know yet can only be the job being submitted: the core may start its
 * first step (and ask for its prompt) before hs_sched_submit returns its id.
 */
static size_t job_index(sim_t *sm, uint64_t id)
{
	size_t slot = (size_t)(id & 0xffffffffu);

	if ((slot >= sm->cap_slot_job || sm->slot_job[slot].id != id) &&
	    sm->submitting >= 0 && note_slot(sm, id, (size_t)sm->submitting)) {
		sm->failed = HS_ENOMEM;
		return (size_t)sm->submitting;
	}
	return sm->slot_job[slot].job;
}

static void on_job_event(void *ud, const hs_job_t *job, hs_job_event_t ev)
{
	sim_t *sm = ud;
	hs_sim_result_t *res = sm->res;
	size_t idx;

	if (ev == HS_JOB_EV_FIRST_TOKEN)
		return;
	idx = (size_t)job->tag;
	/* It left its device: its KV cache there is free again. */
	if (job->device >= 0 && (size_t)job->device < sm->n_devs) {
		sim_dev_t *dv = &sm->devs[job->device];

		if (dv->ops->release)
			dv->ops->release(dv->exec, job->id);
	}
	if (ev == HS_JOB_EV_REQUEUED)
		return;
	if (sm->tokens) {
		hs__free(sm->tokens[idx].tok);
		memset(&sm->tokens[idx], 0, sizeof(sm->tokens[idx]));
	}
	if (hs__bit_get(sm->done, idx)) {
		res->duplicate_done++;
		return;
	}
	hs__bit_set(sm->done, idx, true);
	if (ev != HS_JOB_EV_DONE || !sm->opts->keep_records)
		return;
	if (res->n_records == sm->cap_records &&
	    hs__grow((void **)&res->records, &sm->cap_records,
		     res->n_records + 1, sizeof(*res->records))) {
		sm->failed = HS_ENOMEM;
		return;
	}
	{
		hs_sim_record_t *r = &res->records[res->n_records++];
		double ttft = (double)(job->first_token_ns - job->arrival_ns);
		double e2e = (double)(job->done_ns - job->arrival_ns);

		r->ttft_ms = (float)(ttft / 1e6);
		r->e2e_ms = (float)(e2e / 1e6);
		r->tpot_ms = job->gen_tokens > 1
				     ? (float)((e2e - ttft) / 1e6 /
					       (job->gen_tokens - 1))
				     : 0;
		r->queue_ms =
			(float)((double)(job->start_ns - job->arrival_ns) /
				1e6);
		r->energy_j = (float)job->energy_j;
		r->gen_tokens = job->gen_tokens;
		r->device = job->device;
	}
}

static void on_timer(void *ud, int64_t when)
{
	sim_t *sm = ud;

	if (sm->timer_at < 0 || when < sm->timer_at || sm->timer_at <= sm->now)
		sm->timer_at = when;
}

/* Synthetic prompts for real executors: the same tokens for the same job
 * and seed, followed by what the job generated before a requeue. */
static int io_prompt(void *ud, uint64_t id, const uint32_t **tokens,
		     uint32_t *n)
{
	sim_t *sm = ud;
	size_t idx = job_index(sm, id);
	const hs_sim_job_t *j = &sm->jobs[idx];
	job_tokens_t *t = &sm->tokens[idx];
	uint32_t i;

	if (!t->tok) {
		size_t cap = (size_t)j->ctx_tokens + j->gen_tokens;
		uint64_t x = sm->opts->seed ^ (0x9e3779b97f4a7c15ull * idx);

		t->tok = hs__malloc(cap * sizeof(*t->tok));
		if (!t->tok)
			return HS_ENOMEM;
		t->cap = (uint32_t)cap;
		for (i = 0; i < j->ctx_tokens; i++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			t->tok[i] = (uint32_t)(x >> 56);
		}
		t->n = j->ctx_tokens;
	}
	*tokens = t->tok;
	*n = t->n;
	return 0;
}

static void io_token(void *ud, uint64_t id, uint32_t token)
{
	sim_t *sm = ud;
	job_tokens_t *t = &sm->tokens[job_index(sm, id)];

	if (t->tok && t->n < t->cap)
		t->tok[t->n++] = token;
}

/* ---- the loop --------------------------------------------------------- */

/*
 * Time a call into the core: the scheduler's own cost per decision. With a
 * policy whose cost is even (no re-plans), one call in CORE_SAMPLE is
 * timed and counts for CORE_SAMPLE: reading the clock around every call
 * would cost more than many of the calls. A policy that re-plans (lp)
 * spends most of its time in a few calls, which sampling would catch or
 * miss by chance: every call is timed.
 */
#define CORE(sm, rc, call)                                                \
	do {                                                              \
		if (--(sm)->untimed) {                                    \
			(rc) = (call);                                    \
		} else {                                                  \
			int64_t t0_ = mono_ns();                          \
			(sm)->untimed = (sm)->sample;                     \
			(sm)->timing = (sm)->sample;                      \
			(rc) = (call);                                    \
			(sm)->timing = 0;                                 \
			(sm)->res->sched_cpu_ns +=                        \
				(double)(mono_ns() - t0_) * (sm)->sample; \
		}                                                         \
	} while (0)

static int64_t next_time(const sim_t *sm, size_t ai, size_t bi, size_t fi)
{
	const hs_sim_opts_t *o = sm->opts;
	int64_t t = INT64_MAX;

	if (ai < sm->n_jobs && sm->jobs[ai].arrival_ns < t)
		t = sm->jobs[ai].arrival_ns;
	if (sm->n_due && due_first(sm).at < t)
		t = due_first(sm).at;
	if (bi < o->n_budget_changes && o->budget_changes[bi].at_ns < t)
		t = o->budget_changes[bi].at_ns;
	if (fi < o->n_failures && o->failures[fi].at_ns < t)
		t = o->failures[fi].at_ns;
	if (sm->timer_at >= 0 && sm->timer_at < t)
		t = sm->timer_at;
	return t;
}

static int setup(sim_t *sm, const hs_sched_config_t *cfg,
		 const hs_model_catalog_t *models, const hs_device_t *devices,
		 size_t n_devices, hs_error_t *err)
{
	static const hs_executor_io_t io_tmpl = {.prompt = io_prompt,
						 .token = io_token};
	hs_executor_opts_t eo = {.seed = sm->opts->seed,
				 .noise = sm->opts->noise,
				 .skew = sm->opts->skew,
				 .kernel_dir = sm->opts->kernel_dir};
	hs_sched_hooks_t hooks = {.step_start = on_step_start,
				  .job_event = on_job_event,
				  .timer = on_timer,
				  .cut = on_cut,
				  .ud = sm};
	hs_sim_result_t *res = sm->res;
	int64_t *run_ns;
	size_t d;
	int rc;

	sm->io = io_tmpl;
	sm->io.ud = sm;
	eo.io = &sm->io;
	sm->devs =
		hs__calloc_lines(n_devices, sizeof(*sm->devs), &sm->devs_mem);
	run_ns = hs__calloc_lines(n_devices * SIM_RUN_MAX, sizeof(*run_ns),
				  &sm->run_ns_mem);
	for (sm->n_leaves = 1; sm->n_leaves < n_devices; sm->n_leaves *= 2)
		;
	sm->due = hs__calloc(sm->n_leaves, sizeof(*sm->due));
	sm->win = hs__calloc(2 * sm->n_leaves, sizeof(*sm->win));
	sm->done = hs__calloc(sm->n_jobs / 64 + 1, sizeof(*sm->done));
	for (d = 0; sm->opts->executors && d < n_devices; d++)
		if (sm->opts->executors[d] &&
		    sm->opts->executors[d] != &hs__executor_sim)
			sm->real = true;
	if (sm->real) {
		sm->tokens = hs__calloc(sm->n_jobs ? sm->n_jobs : 1,
					sizeof(*sm->tokens));
		if (!sm->tokens)
			return hs__error_set(err, HS_ENOMEM, NULL, 0, NULL,
					     "out of memory");
	}
	res->devices = hs__calloc(n_devices, sizeof(*res->devices));
	if (!sm->devs || !run_ns || !sm->due || !sm->win || !sm->done ||
	    !res->devices)
		return hs__error_set(err, HS_ENOMEM, NULL, 0, NULL,
				     "out of memory");
	/* Nothing due: every node names the lowest leaf below it. */
	for (d = 0; d < sm->n_leaves; d++) {
		sm->due[d] = NOT_DUE;
		sm->win[sm->n_leaves + d] = (uint32_t)d;
	}
	for (d = sm->n_leaves - 1; d >= 1; d--)
		sm->win[d] = sm->win[2 * d];
	res->n_devices = n_devices;
	for (d = 0; d < n_devices; d++) {
		sm->devs[d].ops = sm->opts->executors && sm->opts->executors[d]
					  ? sm->opts->executors[d]
					  : &hs__executor_sim;
		rc = sm->devs[d].ops->open(&sm->devs[d].exec, &devices[d],
					   models, &eo);
		if (rc)
			return hs__error_set(err, rc, NULL, 0, NULL,
					     "cannot open sim device %zu: %s",
					     d, hs_strerror(rc));
		sm->devs[d].draw_w = sm->devs[d].idle_w = devices[d].idle_w;
		sm->power_w += devices[d].idle_w;
		sm->devs[d].run_ns = run_ns + d * SIM_RUN_MAX;
	}
	/* Real steps cannot be taken back when a run is cut: they run one
	 * at a time, and so do all when the options ask. */
	hooks.max_run = sm->real || sm->opts->single_steps ? 1 : SIM_RUN_MAX;
	sm->idle_floor_w = sm->power_w;
	sm->budget_w = cfg->power_budget_w > 0 ? cfg->power_budget_w : 0;
	res->first_arrival_ns = sm->n_jobs ? sm->jobs[0].arrival_ns : 0;
	sm->power_since = res->first_arrival_ns;
	sm->now = res->first_arrival_ns;
	if (sm->opts->bin_ns > 0 && sm->n_jobs) {
		int64_t span = sm->jobs[sm->n_jobs - 1].arrival_ns -
			       res->first_arrival_ns;

		/* Room for the arrivals and a tail of four times as long;
		 * whatever runs later is not binned. */
		res->bin_ns = sm->opts->bin_ns;
		res->n_bins = (size_t)(span * 4 / res->bin_ns) + 16;
		if (res->n_bins > 100000)
			res->n_bins = 100000;
		res->bins = hs__calloc(res->n_bins, sizeof(*res->bins));
		if (!res->bins)
			return hs__error_set(err, HS_ENOMEM, NULL, 0, NULL,
					     "out of memory");
	}
	return hs_sched_new(&sm->core, cfg, models, devices, n_devices, &hooks,
			    err);
}

static void submit(sim_t *sm, size_t i)
{
	const hs_sim_job_t *j = &sm->jobs[i];
	hs_job_spec_t spec = {.model = j->model,
			      .ctx_tokens = j->ctx_tokens,
			      .gen_tokens = j->gen_tokens,
			      .priority = j->priority,
			      .deadline_ns = -1,
			      .tag = i};
	uint64_t id;
	int rc;

	sm->submitting = (int64_t)i;
	CORE(sm, rc, hs_sched_submit(sm->core, sm->now, &spec, &id, NULL));
	sm->submitting = -1;
	if (rc) {
		sm->res->submit_failures++;
		hs__bit_set(sm->done, i, true);
		return;
	}
	/* Real executors ask for a job's tokens by id. */
	if (sm->real && note_slot(sm, id, i) && !sm->failed)
		sm->failed = HS_ENOMEM;
}

static int unsorted(size_t job, hs_error_t *err)
{
	return hs__error_set(err, HS_EINVAL, "workload", 0, NULL,
			     "jobs are not sorted by arrival (job %zu)", job);
}

int hs_sim_run(const hs_sched_config_t *cfg, const hs_model_catalog_t *models,
	       const hs_device_t *devices, size_t n_devices,
	       const hs_sim_job_t *jobs, size_t n_jobs,
	       const hs_sim_opts_t *opts, hs_sim_result_t *res, hs_error_t *err)
{
	static const hs_sim_opts_t defaults = {0};
	size_t ai = 0, bi = 0, fi = 0, d, i;
	uint64_t idle_timers = 0, last_steps = 0, progress_next;
	sim_t sm = {0};
	int rc;

	hs__error_clear(err);
	memset(res, 0, sizeof(*res));
	sm.opts = opts ? opts : &defaults;
	sm.jobs = jobs;
	sm.n_jobs = n_jobs;
	sm.n_devs = n_devices;
	sm.res = res;
	sm.timer_at = -1;
	sm.submitting = -1;
	rc = setup(&sm, cfg, models, devices, n_devices, err);
	if (rc)
		goto out;
	sm.sample = hs__sched_policy(sm.core)->on_change ? 1 : CORE_SAMPLE;
	sm.untimed = sm.sample;
	progress_next = sm.opts->progress_every;

	for (;;) {
		int64_t t = next_time(&sm, ai, bi, fi);
		hs_sched_stats_t st;

		if (t == INT64_MAX)
			break;
		if (sm.opts->time_limit_ns > 0 &&
		    t > res->first_arrival_ns + sm.opts->time_limit_ns)
			break;
		/* Only timers left and nothing happening: the jobs still
		 * queued wait for a budget that will not come. */
		if (ai == n_jobs && !sm.n_due &&
		    bi == sm.opts->n_budget_changes &&
		    fi == sm.opts->n_failures) {
			hs_sched_stats(sm.core, &st);
			if (st.queued + st.running == 0)
				break;
			if (sm.started_steps == last_steps && ++idle_timers > 2)
				break;
			last_steps = sm.started_steps;
		}
		sm.now = t;
		sm.pos_t = t;
		sm.pos_d = -1;
		res->events++;
		while (bi < sm.opts->n_budget_changes &&
		       sm.opts->budget_changes[bi].at_ns == t) {
			power_advance(&sm);
			sm.budget_w = sm.opts->budget_changes[bi].budget_w;
			CORE(&sm, rc,
			     hs_sched_set_budget(sm.core, t, sm.budget_w));
			bi++;
		}
		while (fi < sm.opts->n_failures &&
		       sm.opts->failures[fi].at_ns == t) {
			int dev = sm.opts->failures[fi].device;

			if (dev >= 0 && (size_t)dev < n_devices) {
				/* Its run will never report: its completion
				 * goes, wherever the run would have ended. */
				if (sm.devs[dev].busy) {
					sim_dev_t *dv = &sm.devs[dev];
					int64_t at = dv->run_start;
					uint32_t j = 0;

					/* The steps of its run that ended
					 * before count. */
					while (j + 1 < dv->n_run &&
					       at + dv->run_ns[j] < t) {
						at += dv->run_ns[j++];
						bins_tokens(&sm, at,
							    dv->step_batch);
					}
					if (j)
						CORE(&sm, rc,
						     hs_sched_run_progress(
							     sm.core, dev, j,
							     dv->run_ns, -1));
					sm.devs[dev].busy = false;
					due_set(&sm, (uint32_t)dev, NOT_DUE);
					set_draw(&sm, (size_t)dev,
						 sm.devs[dev].idle_w);
				}
				CORE(&sm, rc,
				     hs_sched_device_failed(sm.core, t, dev));
			}
			fi++;
		}
		while (sm.n_due && due_first(&sm).at == t) {
			done_ev_t e = due_take(&sm);
			sim_dev_t *dv = &sm.devs[e.device];

			sm.pos_d = e.device;
			if (dv->busy) {
				int64_t at = dv->run_start;

				dv->busy = false;
				for (i = 0; res->bin_ns > 0 && i < dv->n_run;
				     i++) {
					at += dv->run_ns[i];
					bins_tokens(&sm, at, dv->step_batch);
				}
				CORE(&sm, rc,
				     hs_sched_run_done(sm.core, t,
						       (int)e.device, dv->n_run,
						       dv->run_ns, -1));
				/* Its power goes back unless it went on. */
				if (!dv->busy)
					set_draw(&sm, e.device, dv->idle_w);
			}
			due_settle(&sm);
		}
		sm.pos_d = (int64_t)n_devices;
		while (ai < n_jobs && jobs[ai].arrival_ns == t)
			submit(&sm, ai++);
		/* The order of arrivals is checked as they come: a pass
		 * over them first would read the workload twice. */
		if (ai < n_jobs && ai && jobs[ai].arrival_ns < t) {
			rc = unsorted(ai, err);
			goto out;
		}
		if (sm.timer_at >= 0 && sm.timer_at <= t) {
			sm.timer_at = -1;
			CORE(&sm, rc, hs_sched_timer(sm.core, t));
		}
		rc = 0;
		/* Devices whose step failed inside a hook. */
		while (sm.any_fail_pending) {
			sm.any_fail_pending = false;
			for (d = 0; d < n_devices; d++) {
				if (!sm.devs[d].fail_pending)
					continue;
				sm.devs[d].fail_pending = false;
				CORE(&sm, rc,
				     hs_sched_device_failed(sm.core, t,
							    (int)d));
			}
		}
		rc = 0;
		power_check(&sm);
		if (sm.failed) {
			rc = hs__error_set(err, sm.failed, NULL, 0, NULL,
					   "simulation failed: %s",
					   hs_strerror(sm.failed));
			goto out;
		}
		if (progress_next && sm.opts->progress) {
			hs_sched_stats(sm.core, &st);
			if (st.completed >= progress_next) {
				sm.opts->progress(sm.opts->progress_ud, t,
						  st.completed, n_jobs);
				progress_next =
					st.completed + sm.opts->progress_every;
			}
		}
	}
	/* Stopped before the last arrival: the rest is checked all the
	 * same. */
	for (i = ai > 0 ? ai : 1; i < n_jobs; i++)
		if (jobs[i].arrival_ns < jobs[i - 1].arrival_ns) {
			rc = unsorted(i, err);
			goto out;
		}
	power_advance(&sm);
	res->end_ns = sm.now;
	res->upper_bound_tps = -1;
	if (sm.opts->want_upper_bound) {
		double tps;

		if (!hs_sched_upper_bound(sm.core, &tps))
			res->upper_bound_tps = tps;
	}
	hs_sched_stats(sm.core, &res->stats);
	for (d = 0; d < n_devices; d++)
		hs_sched_device_stats(sm.core, (int)d, &res->devices[d]);
	for (i = 0; i < n_jobs; i++)
		if (!hs__bit_get(sm.done, i))
			res->lost_jobs++;
	/* Jobs still queued or running at a time limit are not lost. */
	if (res->lost_jobs >= res->stats.queued + res->stats.running)
		res->lost_jobs -= res->stats.queued + res->stats.running;
	if (sm.opts->time_limit_ns <= 0 && res->stats.queued == 0 &&
	    res->stats.running == 0 && res->lost_jobs)
		rc = hs__error_set(err, HS_ESTATE, NULL, 0, NULL,
				   "%llu accepted jobs never finished",
				   (unsigned long long)res->lost_jobs);
out:
	for (d = 0; sm.devs && d < n_devices; d++) {
		if (sm.devs[d].exec)
			sm.devs[d].ops->close(sm.devs[d].exec);
	}
	hs_sched_free(sm.core);
	hs__free(sm.devs_mem);
	hs__free(sm.run_ns_mem);
	hs__free(sm.due);
	hs__free(sm.win);
	hs__free(sm.done);
	for (i = 0; sm.tokens && i < n_jobs; i++)
		hs__free(sm.tokens[i].tok);
	hs__free(sm.tokens);
	hs__free(sm.slot_job);
	if (rc)
		hs_sim_result_release(res);
	return rc;
}

void hs_sim_result_release(hs_sim_result_t *res)
{
	hs__free(res->devices);
	hs__free(res->records);
	hs__free(res->bins);
	res->devices = NULL;
	res->records = NULL;
	res->bins = NULL;
	res->n_records = 0;
	res->n_bins = 0;
}
