/* The scheduler core, event by event, on hand-checkable cases. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "executor.h"
#include "policy.h"
#include "sched-internal.h"
#include "schedutil.h"
#include "testutil.h"

#define MS 1000000ll
#define S 1000000000ll
#define MAX_STEPS 256
#define MAX_EVENTS 256
#define MAX_RUN 64
#define MAX_DEVS 16

/* What the hooks saw. */
typedef struct rec_s {
	hs_step_t steps[MAX_STEPS];
	uint64_t step_jobs[MAX_STEPS][8];
	size_t n_steps;
	struct {
		uint64_t id;
		hs_job_event_t ev;
		int64_t first_token_ns;
		int64_t done_ns;
		int device;
		uint32_t generated;
		uint64_t tag;
	} events[MAX_EVENTS];
	size_t n_events;
	int64_t timer;
	bool busy[MAX_DEVS];
	int cuts[MAX_EVENTS]; /* devices the cut hook named */
	size_t n_cuts;
} rec_t;

static void rec_step(void *ud, const hs_step_t *st)
{
	rec_t *r = ud;
	uint32_t i;

	assert_true(r->n_steps < MAX_STEPS);
	assert_true(st->device >= 0 && st->device < MAX_DEVS);
	assert_false(r->busy[st->device]);
	r->busy[st->device] = true;
	r->steps[r->n_steps] = *st;
	for (i = 0; i < st->batch && i < 8; i++)
		r->step_jobs[r->n_steps][i] = st->jobs[i];
	r->steps[r->n_steps].jobs = NULL;
	r->n_steps++;
}

static void rec_job(void *ud, const hs_job_t *job, hs_job_event_t ev)
{
	rec_t *r = ud;

	assert_true(r->n_events < MAX_EVENTS);
	r->events[r->n_events].id = job->id;
	r->events[r->n_events].ev = ev;
	r->events[r->n_events].first_token_ns = job->first_token_ns;
	r->events[r->n_events].done_ns = job->done_ns;
	r->events[r->n_events].device = job->device;
	r->events[r->n_events].generated = job->generated;
	r->events[r->n_events].tag = job->tag;
	r->n_events++;
}

static void rec_timer(void *ud, int64_t when)
{
	((rec_t *)ud)->timer = when;
}

static void rec_cut(void *ud, int device)
{
	rec_t *r = ud;

	assert_true(r->n_cuts < MAX_EVENTS);
	r->cuts[r->n_cuts++] = device;
}

typedef struct fx_s {
	hs_model_catalog_t *models;
	hs_sched_t *s;
	rec_t rec;
} fx_t;

/* A core whose driver runs up to max_run steps at once (0: one at a
 * time); the cut hook is there either way. */
static fx_t *fx_new_runs(const hs_sched_config_t *cfg, const hs_device_t *devs,
			 size_t n, uint32_t max_run)
{
	fx_t *fx = test_calloc(1, sizeof(*fx));
	hs_sched_hooks_t hooks = {.step_start = rec_step,
				  .job_event = rec_job,
				  .timer = rec_timer,
				  .cut = rec_cut,
				  .max_run = max_run};
	hs_error_t err;

	fx->models = hs_test_models();
	assert_non_null(fx->models);
	fx->rec.timer = -1;
	hooks.ud = &fx->rec;
	if (hs_sched_new(&fx->s, cfg, fx->models, devs, n, &hooks, &err))
		fail_msg("hs_sched_new: %s", err.text);
	return fx;
}

static fx_t *fx_new(const hs_sched_config_t *cfg, const hs_device_t *devs,
		    size_t n)
{
	return fx_new_runs(cfg, devs, n, 0);
}

static void fx_free(fx_t *fx)
{
	hs_sched_free(fx->s);
	hs_model_catalog_free(fx->models);
	test_free(fx);
}

static uint64_t submit(fx_t *fx, int64_t now, uint32_t model, uint32_t ctx,
		       uint32_t gen, int32_t prio)
{
	hs_job_spec_t spec = {.model = model,
			      .ctx_tokens = ctx,
			      .gen_tokens = gen,
			      .priority = prio,
			      .deadline_ns = -1};
	hs_error_t err;
	uint64_t id = 0;

	if (hs_sched_submit(fx->s, now, &spec, &id, &err))
		fail_msg("submit: %s", err.text);
	return id;
}

/* Finish the running step of a device after `ns`. */
static void finish(fx_t *fx, int64_t now, int d, int64_t ns)
{
	fx->rec.busy[d] = false;
	assert_int_equal(hs_sched_step_done(fx->s, now, d, ns, -1), 0);
}

static size_t count_events(const fx_t *fx, hs_job_event_t ev)
{
	size_t i, n = 0;

	for (i = 0; i < fx->rec.n_events; i++)
		n += fx->rec.events[i].ev == ev;
	return n;
}

static const double lv2[] = {300, 1.0, 200, 0.8};

static void test_buckets(void **state)
{
	hs_sched_config_t cfg;
	hs_device_t d = hs_test_device("d", 80, 1000, 100, 50, 300, 0, NULL);
	fx_t *fx;

	hs_sched_config_init(&cfg);
	fx = fx_new(&cfg, &d, 1);
	assert_int_equal(hs__sched_bucket_of(fx->s, 1), 0);
	assert_int_equal(hs__sched_bucket_of(fx->s, 128), 0);
	assert_int_equal(hs__sched_bucket_of(fx->s, 129), 1);
	assert_int_equal(hs__sched_bucket_of(fx->s, 1024), 3);
	assert_int_equal(hs__sched_bucket_of(fx->s, 1025), 4);
	assert_int_equal(hs__sched_bucket_of(fx->s, 4000000),
			 hs__sched_n_buckets(fx->s) - 1);
	fx_free(fx);

	cfg.n_buckets = 3;
	cfg.bucket_edges[0] = 100;
	cfg.bucket_edges[1] = 1000;
	cfg.bucket_edges[2] = 8192;
	fx = fx_new(&cfg, &d, 1);
	assert_int_equal(hs__sched_bucket_of(fx->s, 100), 0);
	assert_int_equal(hs__sched_bucket_of(fx->s, 101), 1);
	assert_int_equal(hs__sched_bucket_of(fx->s, 5000), 2);
	assert_int_equal(hs__sched_bucket_edge(fx->s, 1), 1000);
	fx_free(fx);

	/* Edges at the top of the range. */
	hs_sched_config_init(&cfg);
	cfg.n_buckets = 3;
	cfg.bucket_edges[0] = UINT32_MAX - 2;
	cfg.bucket_edges[1] = UINT32_MAX - 1;
	cfg.bucket_edges[2] = UINT32_MAX;
	fx = fx_new(&cfg, &d, 1);
	assert_int_equal(hs__sched_bucket_of(fx->s, 1u << 31), 0);
	assert_int_equal(hs__sched_bucket_of(fx->s, UINT32_MAX - 2), 0);
	assert_int_equal(hs__sched_bucket_of(fx->s, UINT32_MAX - 1), 1);
	assert_int_equal(hs__sched_bucket_of(fx->s, UINT32_MAX), 2);
	fx_free(fx);

	/* Against a linear search: edges crowded into one bit length,
	 * spread over many, one bucket, the most; contexts at, around and
	 * between the edges, 0 and the largest. */
	{
		uint64_t x = 42;
		int round;

		for (round = 0; round < 40; round++) {
			uint32_t ctx[8 * HS_MAX_BUCKETS + 64], e = 0;
			unsigned i, n, b, k = 0;

			hs_sched_config_init(&cfg);
			n = round == 0 ? 1
				       : 1 + (unsigned)(round * 7 %
							HS_MAX_BUCKETS);
			for (i = 0; i < n; i++) {
				x = x * 6364136223846793005ull +
				    1442695040888963407ull;
				/* Steps of 1 to 4 (crowded) or up to 2^20. */
				e += 1 + (uint32_t)((x >> 33) %
						    (round % 2 ? 4 : 1u << 20));
				cfg.bucket_edges[i] = e;
				ctx[k++] = e - 1;
				ctx[k++] = e;
				ctx[k++] = e + 1;
				ctx[k++] = e / 2 + 1;
			}
			cfg.n_buckets = n;
			for (i = 0; i < 32; i++)
				ctx[k++] = (uint32_t)(x >> i) ^ (1u << i);
			ctx[k++] = 0;
			ctx[k++] = UINT32_MAX;
			fx = fx_new(&cfg, &d, 1);
			for (i = 0; i < k; i++) {
				for (b = 0;
				     b + 1 < n && cfg.bucket_edges[b] < ctx[i];
				     b++)
					;
				assert_int_equal(
					hs__sched_bucket_of(fx->s, ctx[i]), b);
			}
			fx_free(fx);
		}
	}
}

static void test_bad_config(void **state)
{
	hs_model_catalog_t *models = hs_test_models();
	hs_device_t d = hs_test_device("d", 80, 1000, 100, 50, 300, 0, NULL);
	hs_sched_config_t cfg;
	hs_sched_t *s = NULL;
	hs_error_t err;

	hs_sched_config_init(&cfg);
	cfg.policy = "nope";
	assert_int_equal(hs_sched_new(&s, &cfg, models, &d, 1, NULL, &err),
			 HS_ENOENT);
	assert_non_null(strstr(err.text, "unknown policy \"nope\""));
	hs_sched_config_init(&cfg);
	cfg.n_buckets = 2;
	cfg.bucket_edges[0] = 500;
	cfg.bucket_edges[1] = 100;
	assert_int_equal(hs_sched_new(&s, &cfg, models, &d, 1, NULL, &err),
			 HS_EINVAL);
	assert_string_equal(err.path, "bucket_edges");
	hs_sched_config_init(&cfg);
	cfg.max_batch_jobs = 0;
	assert_int_equal(hs_sched_new(&s, &cfg, models, &d, 1, NULL, &err),
			 HS_EINVAL);
	assert_null(s);
	hs_model_catalog_free(models);
}

/* Devices built through the API: power figures the governor could not
 * compare are refused, with the device and the field named. */
static void test_bad_devices(void **state)
{
	static const double levels[] = {300, 1.0, 200, 0.8};
	hs_model_catalog_t *models = hs_test_models();
	hs_device_t d[2];
	hs_sched_config_t cfg;
	hs_sched_t *s = NULL;
	hs_error_t err;

	hs_sched_config_init(&cfg);
	d[0] = hs_test_device("a", 80, 1000, 100, 50, 300, 2, levels);
	d[1] = d[0];
	d[1].levels[0].cap_w = NAN;
	assert_int_equal(hs_sched_new(&s, &cfg, models, d, 2, NULL, &err),
			 HS_EINVAL);
	assert_null(s);
	assert_string_equal(err.path, "devices[1].levels[0]");
	d[1] = d[0];
	d[1].levels[1].speed = 0;
	assert_int_equal(hs_sched_new(&s, &cfg, models, d, 2, NULL, &err),
			 HS_EINVAL);
	assert_string_equal(err.path, "devices[1].levels[1]");
	d[1] = d[0];
	d[1].idle_w = -1;
	assert_int_equal(hs_sched_new(&s, &cfg, models, d, 2, NULL, &err),
			 HS_EINVAL);
	assert_string_equal(err.path, "devices[1].idle_w");
	d[1] = d[0];
	d[1].max_w = INFINITY;
	assert_int_equal(hs_sched_new(&s, &cfg, models, d, 2, NULL, &err),
			 HS_EINVAL);
	assert_string_equal(err.path, "devices[1].max_w");
	d[1] = d[0];
	d[1].n_levels = HS_MAX_POWER_LEVELS + 1;
	assert_int_equal(hs_sched_new(&s, &cfg, models, d, 2, NULL, &err),
			 HS_EINVAL);
	assert_string_equal(err.path, "devices[1].n_levels");
	/* Both as they were: accepted. */
	d[1] = d[0];
	assert_int_equal(hs_sched_new(&s, &cfg, models, d, 2, NULL, &err), 0);
	hs_sched_free(s);
	hs_model_catalog_free(models);
}

static void test_refusals(void **state)
{
	hs_sched_config_t cfg;
	/* 2 GB: m-small's 0.5 GB weights fit, m-big's 5 GB do not. */
	hs_device_t d = hs_test_device("d", 2, 1000, 100, 50, 300, 0, NULL);
	hs_job_spec_t spec = {.model = 1,
			      .ctx_tokens = 10,
			      .gen_tokens = 10,
			      .deadline_ns = -1};
	hs_sched_stats_t st;
	hs_error_t err;
	uint64_t id;
	fx_t *fx;

	hs_sched_config_init(&cfg);
	fx = fx_new(&cfg, &d, 1);
	assert_int_equal(hs_sched_submit(fx->s, 0, &spec, &id, &err),
			 HS_ENOFIT);
	assert_non_null(strstr(err.text, "fits no device"));
	assert_non_null(strstr(err.text, "m-big"));
	spec.model = 0;
	spec.ctx_tokens = 8000;
	spec.gen_tokens = 500;
	assert_int_equal(hs_sched_submit(fx->s, 0, &spec, &id, &err),
			 HS_ENOFIT);
	assert_non_null(strstr(err.text, "exceed m-small's context of 8192"));
	spec.ctx_tokens = 10;
	spec.gen_tokens = 0;
	assert_int_equal(hs_sched_submit(fx->s, 0, &spec, &id, &err),
			 HS_EINVAL);
	spec.model = 7;
	assert_int_equal(hs_sched_submit(fx->s, 0, &spec, &id, &err),
			 HS_EINVAL);
	hs_sched_stats(fx->s, &st);
	assert_int_equal(st.refused, 2);
	assert_int_equal(st.queued, 0);
	fx_free(fx);
}

/* One device, batches of one: the order jobs start in is the queue order. */
static void test_priority_and_aging(void **state)
{
	hs_sched_config_t cfg;
	hs_device_t d = hs_test_device("d", 80, 1000, 100, 50, 300, 0, NULL);
	uint64_t a, b, c, first;
	fx_t *fx;

	hs_sched_config_init(&cfg);
	cfg.policy = "fifo";
	cfg.max_batch_jobs = 1;
	cfg.aging_ns = S;
	fx = fx_new(&cfg, &d, 1);
	first = submit(fx, 0, 0, 100, 1, 0); /* occupies the device */
	assert_int_equal(fx->rec.n_steps, 1);
	a = submit(fx, 1 * MS, 0, 100, 1, 0);
	/* b arrives 0.5 s later but one priority level higher: one level is
	 * worth one second of waiting, so b goes first. */
	b = submit(fx, 500 * MS, 0, 100, 1, 1);
	/* c: same priority as a, later. */
	c = submit(fx, 600 * MS, 0, 100, 1, 0);
	finish(fx, 1 * S, 0, S);
	finish(fx, 2 * S, 0, S);
	finish(fx, 3 * S, 0, S);
	finish(fx, 4 * S, 0, S);
	assert_int_equal(fx->rec.n_steps, 4);
	assert_int_equal(fx->rec.step_jobs[0][0], first);
	assert_int_equal(fx->rec.step_jobs[1][0], b);
	assert_int_equal(fx->rec.step_jobs[2][0], a);
	assert_int_equal(fx->rec.step_jobs[3][0], c);
	assert_int_equal(count_events(fx, HS_JOB_EV_DONE), 4);
	fx_free(fx);
}

/* Iteration-level batching: joiners prefill at a step boundary, finished
 * jobs leave at one. */
static void test_iteration_batching(void **state)
{
	hs_sched_config_t cfg;
	hs_device_t d = hs_test_device("d", 80, 1000, 100, 50, 300, 0, NULL);
	const hs_job_t *jb;
	uint64_t a, b;
	fx_t *fx;

	hs_sched_config_init(&cfg);
	cfg.policy = "fifo";
	fx = fx_new(&cfg, &d, 1);
	a = submit(fx, 0, 0, 100, 3, 0);
	assert_int_equal(fx->rec.n_steps, 1);
	assert_int_equal(fx->rec.steps[0].batch, 1);
	assert_int_equal(fx->rec.steps[0].joining, 1);
	assert_int_equal(fx->rec.steps[0].prefill_tokens, 100);
	assert_int_equal(fx->rec.steps[0].ctx_tokens, 100);
	b = submit(fx, 1 * MS, 0, 50, 2, 0); /* waits for the boundary */
	assert_int_equal(fx->rec.n_steps, 1);
	assert_int_equal(hs_sched_job(fx->s, b)->state, HS_JOB_QUEUED);
	finish(fx, 10 * MS, 0, 10 * MS);
	/* Step 2: a decodes (context 101), b joins with its prefill. */
	assert_int_equal(fx->rec.n_steps, 2);
	assert_int_equal(fx->rec.steps[1].batch, 2);
	assert_int_equal(fx->rec.steps[1].joining, 1);
	assert_int_equal(fx->rec.step_jobs[1][0], b);
	assert_int_equal(fx->rec.step_jobs[1][1], a);
	assert_int_equal(fx->rec.steps[1].prefill_tokens, 50);
	assert_int_equal(fx->rec.steps[1].ctx_tokens, 101 + 50);
	jb = hs_sched_job(fx->s, a);
	assert_int_equal(jb->generated, 1);
	assert_int_equal(jb->first_token_ns, 10 * MS);
	finish(fx, 20 * MS, 0, 10 * MS);
	/* Step 3: a's third token, b's second: both finish at its end. */
	assert_int_equal(fx->rec.steps[2].batch, 2);
	assert_int_equal(fx->rec.steps[2].joining, 0);
	assert_int_equal(fx->rec.steps[2].ctx_tokens, 102 + 51);
	finish(fx, 30 * MS, 0, 10 * MS);
	assert_int_equal(fx->rec.n_steps, 3);
	assert_int_equal(count_events(fx, HS_JOB_EV_DONE), 2);
	assert_int_equal(count_events(fx, HS_JOB_EV_FIRST_TOKEN), 2);
	assert_null(hs_sched_job(fx->s, a));
	fx_free(fx);
}

/* KV memory limits the batch: what the device has after weights. */
static void test_kv_fit(void **state)
{
	hs_sched_config_t cfg;
	/* 1.5 GB usable (kv_reserve 0): 1 GB of weights, 0.5 GB of KV =
	 * 500,000 tokens of m-small's 1000 B. */
	hs_device_t d = hs_test_device("d", 1.5, 1000, 100, 50, 300, 0, NULL);
	fx_t *fx;

	hs_sched_config_init(&cfg);
	cfg.policy = "fifo";
	cfg.kv_reserve = 0;
	cfg.max_step_tokens = 1000000;
	fx = fx_new(&cfg, &d, 1);
	submit(fx, 0, 0, 100, 1, 0); /* a first step, so the rest queue */
	submit(fx, 0, 0, 4000, 96, 0);
	submit(fx, 0, 0, 4000, 96, 0);
	submit(fx, 0, 0, 4000, 96, 0);
	finish(fx, 1 * MS, 0, 1 * MS);
	/* Each needs 4096 x 1000 B; 500,000 / 4096 = 122 would fit, so
	 * all three join the first job's batch. */
	assert_int_equal(fx->rec.steps[1].batch, 3);
	fx_free(fx);

	d = hs_test_device("d", 1.01, 1000, 100, 50, 300, 0, NULL);
	fx = fx_new(&cfg, &d, 1);
	/* 10 MB of KV room: 10,000 tokens: two 4096-token jobs, not 3. */
	submit(fx, 0, 0, 100, 1, 0);
	submit(fx, 0, 0, 4000, 96, 0);
	submit(fx, 0, 0, 4000, 96, 0);
	submit(fx, 0, 0, 4000, 96, 0);
	finish(fx, 1 * MS, 0, 1 * MS);
	assert_int_equal(fx->rec.steps[1].batch, 2);
	fx_free(fx);
}

/* The governor: modeled draw of busy devices plus idle of the others
 * never exceeds the budget. */
static void test_governor(void **state)
{
	hs_device_t d[2] = {
		hs_test_device("a", 80, 1000, 100, 50, 300, 2, lv2),
		hs_test_device("b", 80, 1000, 100, 50, 300, 2, lv2),
	};
	hs_sched_config_t cfg;
	hs_sched_stats_t st;
	fx_t *fx;

	hs_sched_config_init(&cfg);
	cfg.policy = "rr";
	cfg.power_budget_w = 400;
	fx = fx_new(&cfg, d, 2);
	submit(fx, 0, 0, 100, 5, 0); /* to a: 300 + 50 = 350 W */
	submit(fx, 0, 0, 100, 5, 0); /* to b: 300 + 300 or 300 + 200: no */
	assert_int_equal(fx->rec.n_steps, 1);
	assert_int_equal(fx->rec.steps[0].level, 0);
	hs_sched_stats(fx->s, &st);
	assert_true(st.power_w <= 400);
	assert_int_equal(st.power_waits, 1);
	/* Budget up to 500: b runs at 200 W while a holds 300 W. */
	hs_sched_set_budget(fx->s, 1 * MS, 500);
	assert_int_equal(fx->rec.n_steps, 2);
	assert_int_equal(fx->rec.steps[1].device, 1);
	assert_int_equal(fx->rec.steps[1].level, 1);
	assert_true(fx->rec.steps[1].power_w == 200);
	hs_sched_stats(fx->s, &st);
	assert_true(st.power_w == 500);
	assert_int_equal(st.power_violations, 0);
	fx_free(fx);
}

/* A budget drop applies at the next step boundary; below every level, the
 * batch pauses and nothing is lost. */
static void test_budget_drop(void **state)
{
	hs_device_t d = hs_test_device("a", 80, 1000, 100, 50, 300, 2, lv2);
	hs_sched_config_t cfg;
	hs_sched_stats_t st;
	fx_t *fx;

	hs_sched_config_init(&cfg);
	cfg.policy = "fifo";
	fx = fx_new(&cfg, &d, 1);
	submit(fx, 0, 0, 100, 3, 0);
	assert_int_equal(fx->rec.steps[0].level, 0);
	/* Drop to 250 W while the 300 W step runs: it runs on (grace). */
	hs_sched_set_budget(fx->s, 1 * MS, 250);
	hs_sched_stats(fx->s, &st);
	assert_int_equal(st.power_violations, 0);
	finish(fx, 10 * MS, 0, 10 * MS);
	/* Next step at the 200 W level. */
	assert_int_equal(fx->rec.n_steps, 2);
	assert_int_equal(fx->rec.steps[1].level, 1);
	/* Below the lowest level: the batch pauses. */
	hs_sched_set_budget(fx->s, 11 * MS, 150);
	finish(fx, 20 * MS, 0, 10 * MS);
	assert_int_equal(fx->rec.n_steps, 2);
	hs_sched_stats(fx->s, &st);
	assert_int_equal(st.paused, 1);
	assert_int_equal(st.running, 1);
	assert_int_equal(st.completed, 0);
	assert_true(st.power_w <= 150);
	/* Budget back: it finishes. */
	hs_sched_set_budget(fx->s, 30 * MS, 0);
	finish(fx, 40 * MS, 0, 10 * MS);
	hs_sched_stats(fx->s, &st);
	assert_int_equal(st.completed, 1);
	assert_int_equal(st.power_violations, 0);
	fx_free(fx);
}

static void test_device_failure(void **state)
{
	hs_device_t d[2] = {
		hs_test_device("a", 80, 1000, 100, 50, 300, 0, NULL),
		hs_test_device("b", 80, 1000, 100, 50, 300, 0, NULL),
	};
	hs_sched_config_t cfg;
	hs_sched_stats_t st;
	uint64_t a, b, c;
	const hs_job_t *j;
	fx_t *fx;

	hs_sched_config_init(&cfg);
	cfg.policy = "rr";
	fx = fx_new(&cfg, d, 2);
	a = submit(fx, 0, 0, 100, 4, 0); /* device a */
	b = submit(fx, 0, 0, 100, 4, 0); /* device b */
	c = submit(fx, 0, 0, 100, 4, 0); /* queued for a */
	finish(fx, 10 * MS, 0, 10 * MS); /* a: one token; c joins */
	fx->rec.busy[0] = false;
	assert_int_equal(fx->rec.steps[2].device, 0);
	assert_int_equal(fx->rec.steps[2].batch, 2);
	assert_int_equal(hs_sched_device_failed(fx->s, 15 * MS, 0), 0);
	j = hs_sched_job(fx->s, a);
	assert_non_null(j);
	assert_int_equal(j->state, HS_JOB_QUEUED);
	assert_int_equal(j->generated, 1);
	hs_sched_stats(fx->s, &st);
	assert_int_equal(st.requeued, 2);
	/* Everything completes on b. */
	while (fx->rec.busy[1])
		finish(fx,
		       fx->rec.steps[fx->rec.n_steps - 1].seq * 10 * MS +
			       20 * MS,
		       1, 10 * MS);
	hs_sched_stats(fx->s, &st);
	assert_int_equal(st.completed, 3);
	assert_null(hs_sched_job(fx->s, a));
	assert_null(hs_sched_job(fx->s, b));
	assert_null(hs_sched_job(fx->s, c));
	/* Nothing more goes to the failed device. */
	submit(fx, 1 * S, 0, 100, 1, 0);
	assert_int_equal(fx->rec.steps[fx->rec.n_steps - 1].device, 1);
	fx_free(fx);
}

static void test_cancel(void **state)
{
	hs_device_t d = hs_test_device("a", 80, 1000, 100, 50, 300, 0, NULL);
	hs_sched_config_t cfg;
	hs_sched_stats_t st;
	uint64_t a, b;
	fx_t *fx;

	hs_sched_config_init(&cfg);
	cfg.policy = "fifo";
	cfg.max_batch_jobs = 1;
	fx = fx_new(&cfg, &d, 1);
	a = submit(fx, 0, 0, 100, 5, 0);
	b = submit(fx, 0, 0, 100, 5, 0);
	assert_int_equal(hs_sched_cancel(fx->s, 1 * MS, b), 0);
	assert_null(hs_sched_job(fx->s, b));
	assert_int_equal(hs_sched_cancel(fx->s, 1 * MS, b), HS_ENOENT);
	/* a is in a running step: it leaves at the boundary. */
	assert_int_equal(hs_sched_cancel(fx->s, 2 * MS, a), 0);
	assert_non_null(hs_sched_job(fx->s, a));
	finish(fx, 10 * MS, 0, 10 * MS);
	assert_null(hs_sched_job(fx->s, a));
	hs_sched_stats(fx->s, &st);
	assert_int_equal(st.cancelled, 2);
	assert_int_equal(st.running + st.queued, 0);
	assert_int_equal(count_events(fx, HS_JOB_EV_CANCELLED), 2);
	assert_int_equal(hs_sched_cancel(fx->s, 0, 12345), HS_ENOENT);
	fx_free(fx);
}

/*
 * Many queued jobs cancelled out of the middle of their queue (the heap
 * keeps them dead until they surface or it compacts), their slots reused
 * by new jobs in the same queue: the rest start in rank order, each once.
 */
static void test_cancel_queued_many(void **state)
{
	hs_device_t d = hs_test_device("a", 80, 1000, 100, 50, 300, 0, NULL);
	hs_sched_config_t cfg;
	hs_sched_stats_t st;
	uint64_t ids[100], late[10];
	bool gone[100] = {false};
	uint32_t i, k, started = 0;
	int64_t now = 0, prev_rank = INT64_MIN;
	fx_t *fx;

	hs_sched_config_init(&cfg);
	cfg.policy = "fifo";
	cfg.max_batch_jobs = 1;
	fx = fx_new(&cfg, &d, 1);
	(void)submit(fx, 0, 0, 100, 1, 0); /* runs at once */
	for (i = 0; i < 100; i++)
		ids[i] = submit(fx, 0, 0, 100, 1, (int32_t)(i % 7) - 3);
	/* 80 of them, in a scattered order. */
	for (i = 0, k = 0; k < 80; i = (i + 37) % 100) {
		if (gone[i])
			continue;
		assert_int_equal(hs_sched_cancel(fx->s, 0, ids[i]), 0);
		gone[i] = true;
		k++;
	}
	assert_int_equal(hs__sched_queued(fx->s, -1, 0, 0), 20);
	/* New jobs in the freed slots, same queue, lowest priority. */
	for (i = 0; i < 10; i++)
		late[i] = submit(fx, 0, 0, 100, 1, -5);
	assert_int_equal(hs__sched_queued(fx->s, -1, 0, 0), 30);
	/* One job a step: the survivors by rank (priority, then
	 * arrival), the late ones last. */
	for (k = 1; k <= 31; k++) {
		const hs_job_t *j;
		int64_t rank;

		assert_true(fx->rec.n_steps == k);
		j = hs_sched_job(fx->s, fx->rec.step_jobs[k - 1][0]);
		assert_non_null(j);
		rank = j->arrival_ns - (int64_t)j->priority * cfg.aging_ns;
		/* The first one ran before the others queued. */
		if (k > 1) {
			assert_true(rank >= prev_rank);
			prev_rank = rank;
			started++;
		}
		now += 10 * MS;
		finish(fx, now, 0, 10 * MS);
	}
	assert_int_equal(started, 30);
	for (i = 0; i < 10; i++)
		assert_null(hs_sched_job(fx->s, late[i]));
	hs_sched_stats(fx->s, &st);
	assert_int_equal(st.completed, 31);
	assert_int_equal(st.cancelled, 80);
	assert_int_equal(st.queued + st.running, 0);
	assert_int_equal(count_events(fx, HS_JOB_EV_DONE), 31);
	assert_int_equal(hs__sched_queued(fx->s, -1, 0, 0), 0);
	fx_free(fx);
}

/* The job each step ran, for test_queue_order. */
typedef struct order_rec_s {
	uint64_t job;
	size_t steps;
	bool busy;
} order_rec_t;

static void order_step(void *ud, const hs_step_t *st)
{
	order_rec_t *o = ud;

	o->job = st->jobs[0];
	o->steps++;
	o->busy = true;
}

/*
 * A queue keeps jobs that come in rank order in a ring and the others in
 * a heap. Thousands of arrivals of random priorities (some before the
 * ring's front, some between its entries, most after its back), scattered
 * cancellations and one job a step: every step takes the queued job of
 * least rank, as a sorted list of the queued jobs says, through the
 * ring's wrapping and growth.
 */
static void test_queue_order(void **state)
{
	enum { N = 3000 };
	hs_device_t d = hs_test_device("a", 80, 1000, 100, 50, 300, 0, NULL);
	hs_sched_hooks_t hooks = {.step_start = order_step};
	hs_model_catalog_t *models = hs_test_models();
	static uint64_t ids[N];
	static int64_t ranks[N];
	static bool queued[N];
	hs_sched_config_t cfg;
	hs_sched_stats_t st;
	order_rec_t o = {0};
	hs_sched_t *s = NULL;
	hs_error_t err;
	uint32_t n = 0, i, rng = 7, cancels = 0, heads = 0;
	int64_t now = 0;
	size_t seen = 0;

	hs_sched_config_init(&cfg);
	cfg.policy = "fifo";
	cfg.max_batch_jobs = 1;
	hooks.ud = &o;
	assert_non_null(models);
	assert_int_equal(hs_sched_new(&s, &cfg, models, &d, 1, &hooks, &err),
			 0);
	while (n < N || o.steps < n - cancels) {
		uint32_t r = (rng = rng * 1103515245u + 12345u) >> 16;

		now += 1000; /* all within one aging_ns: ranks stay apart */
		if (n < N && r % 10 < 6) {
			/* Mostly priority 0 (in order), now and then a
			 * higher or lower one. */
			int32_t prio = r % 7 == 0 ? (int32_t)(r / 7 % 5) - 2
						  : 0;
			hs_job_spec_t spec = {.model = 0,
					      .ctx_tokens = 100,
					      .gen_tokens = 1,
					      .priority = prio,
					      .deadline_ns = -1};

			assert_int_equal(
				hs_sched_submit(s, now, &spec, &ids[n], &err),
				0);
			ranks[n] = now - (int64_t)prio * cfg.aging_ns;
			queued[n++] = true;
		} else if (n && r % 10 == 6) {
			i = r % n;
			if (queued[i] && hs_sched_cancel(s, now, ids[i]) == 0) {
				queued[i] = false;
				cancels++;
			}
		} else if (o.busy) {
			o.busy = false;
			assert_int_equal(
				hs_sched_step_done(s, now, 0, 1000, -1), 0);
		}
		/* A step that started took the least rank queued. */
		if (o.steps > seen) {
			uint32_t best = N;

			seen = o.steps;
			for (i = 0; i < n; i++)
				if (queued[i] &&
				    (best == N || ranks[i] < ranks[best]))
					best = i;
			assert_true(best < N);
			assert_true(o.job == ids[best]);
			heads += ranks[best] < now - 1000 * 3000; /* a jump */
			queued[best] = false;
		}
	}
	if (o.busy)
		assert_int_equal(hs_sched_step_done(s, now, 0, 1000, -1), 0);
	hs_sched_stats(s, &st);
	print_message("%u cancelled, %u jumped ahead\n", cancels, heads);
	assert_int_equal(st.completed + st.cancelled, N);
	assert_int_equal(st.queued + st.running, 0);
	assert_true(cancels > 100);
	assert_true(heads > 0);
	hs_sched_free(s);
	hs_model_catalog_free(models);
}

/*
 * Jobs that finish at the same step are told done, and free their slots,
 * in slot order: the slots are used again in that order, and two jobs of
 * equal rank (same arrival, same priority) are taken in slot order. L runs
 * alone; A and B join it and finish together, A told first; C and D then
 * arrive at once and take the freed slots, the last freed (B's) first: D
 * has A's, the lower, and joins first.
 */
static void test_done_order(void **state)
{
	hs_device_t d = hs_test_device("a", 80, 1000, 100, 50, 300, 0, NULL);
	hs_sched_config_t cfg;
	uint64_t a, b, c, dd;
	size_t i, done_a = 0, done_b = 0;
	int64_t t = 0;
	fx_t *fx;

	hs_sched_config_init(&cfg);
	cfg.policy = "fifo";
	cfg.max_batch_jobs = 3;
	cfg.max_step_tokens = 150; /* one 100-token prompt joins a step */
	fx = fx_new(&cfg, &d, 1);
	(void)submit(fx, 0, 0, 10, 100, 0); /* L, alone at once */
	a = submit(fx, 0, 0, 10, 2, 0);
	b = submit(fx, 0, 0, 10, 2, 0);
	for (i = 0; i < 3; i++)
		finish(fx, t += MS, 0, MS);
	/* A and B finished together, in slot order. */
	for (i = 0; i < fx->rec.n_events; i++) {
		if (fx->rec.events[i].ev != HS_JOB_EV_DONE)
			continue;
		done_a = fx->rec.events[i].id == a ? i + 1 : done_a;
		done_b = fx->rec.events[i].id == b ? i + 1 : done_b;
	}
	assert_true(done_a && done_b && done_a < done_b);
	c = submit(fx, t + 1, 0, 100, 5, 0);
	dd = submit(fx, t + 1, 0, 100, 5, 0);
	/* The freed slots come back last freed first. */
	assert_true((uint32_t)c == (uint32_t)b && (uint32_t)dd == (uint32_t)a);
	finish(fx, t += MS, 0, MS);
	i = fx->rec.n_steps - 1;
	assert_int_equal(fx->rec.steps[i].joining, 1);
	assert_true(fx->rec.step_jobs[i][0] == dd);
	fx_free(fx);
}

/*
 * Seven members (three past the last four, four in a vector) leave as
 * they finish, told in (step, slot) order, and after every step the
 * device's earliest finish is that of the members left (UINT64_MAX when
 * none is).
 */
static void test_finish_scan(void **state)
{
	static const uint32_t gen[7] = {3, 1, 3, 2, 5, 1, 3};
	hs_device_t d = hs_test_device("a", 80, 1000, 100, 50, 300, 0, NULL);
	hs_sched_config_t cfg;
	int64_t t = 0, last_ns = -1;
	uint32_t last_slot = 0, j, most = 0;
	size_t i, n = 0;
	fx_t *fx;

	(void)state;
	hs_sched_config_init(&cfg);
	cfg.policy = "fifo";
	cfg.max_batch_jobs = 7;
	fx = fx_new(&cfg, &d, 1);
	for (i = 0; i < 7; i++)
		(void)submit(fx, 0, 0, 10, gen[i], 0);
	for (i = 0; i < 20 && count_events(fx, HS_JOB_EV_DONE) < 7; i++) {
		const hs__dev_t *dv = &fx->s->devs[0];
		uint64_t least = UINT64_MAX;

		finish(fx, t += MS, 0, MS);
		most = dv->n_members > most ? dv->n_members : most;
		for (j = 0; j < dv->n_members; j++)
			least = dv->finish[j] < least ? dv->finish[j] : least;
		assert_true(dv->finish_min == least);
	}
	assert_int_equal(most, 7);
	for (i = 0; i < fx->rec.n_events; i++) {
		if (fx->rec.events[i].ev != HS_JOB_EV_DONE)
			continue;
		assert_true(fx->rec.events[i].done_ns > last_ns ||
			    (uint32_t)fx->rec.events[i].id > last_slot);
		last_ns = fx->rec.events[i].done_ns;
		last_slot = (uint32_t)fx->rec.events[i].id;
		n++;
	}
	assert_int_equal(n, 7);
	assert_int_equal(fx->s->devs[0].n_members, 0);
	assert_true(fx->s->devs[0].finish_min == UINT64_MAX);
	fx_free(fx);
}

/*
 * Seventy devices and power for one at a time: those waiting for power
 * span two words of the waiting bitmap, and each runs its job in turn
 * without the budget ever being exceeded.
 */
static void test_power_wait_many(void **state)
{
	enum { N = 70 };
	hs_device_t d[N];
	hs_model_catalog_t *models = hs_test_models();
	hs_sched_config_t cfg;
	hs_sched_stats_t st;
	hs_device_stats_t ds;
	hs_sched_t *s = NULL;
	hs_error_t err;
	int64_t t = 0;
	uint64_t id;
	int i, rounds;

	(void)state;
	assert_non_null(models);
	for (i = 0; i < N; i++)
		d[i] = hs_test_device("d", 80, 1000, 100, 50, 300, 0, NULL);
	hs_sched_config_init(&cfg);
	cfg.policy = "rr";
	cfg.power_budget_w = N * 50 + 250 + 10; /* one device at 300 W */
	if (hs_sched_new(&s, &cfg, models, d, N, NULL, &err))
		fail_msg("hs_sched_new: %s", err.text);
	for (i = 0; i < N; i++) {
		hs_job_spec_t spec = {.model = 0,
				      .ctx_tokens = 10,
				      .gen_tokens = 3,
				      .deadline_ns = -1};

		assert_int_equal(hs_sched_submit(s, 0, &spec, &id, &err), 0);
	}
	hs_sched_stats(s, &st);
	assert_true(st.power_waits >= N - 1);
	for (rounds = 0; rounds < 10 * N; rounds++) {
		int busy = 0;

		t += MS;
		for (i = 0; i < N; i++) {
			hs_sched_device_stats(s, i, &ds);
			if (!ds.busy)
				continue;
			busy++;
			assert_int_equal(hs_sched_step_done(s, t, i, MS, -1),
					 0);
			break;
		}
		hs_sched_stats(s, &st);
		if (st.completed == N || !busy)
			break;
	}
	assert_int_equal(st.completed, N);
	assert_int_equal(st.power_violations, 0);
	assert_true(st.peak_power_w <= cfg.power_budget_w);
	for (i = 0; i < N; i++) {
		hs_sched_device_stats(s, i, &ds);
		assert_true(ds.steps == 3);
	}
	hs_sched_free(s);
	hs_model_catalog_free(models);
}

/*
 * A job left out of a step because the jobs joining it took its tokens
 * joins at the next boundary, not when the run would have ended (at the
 * first member's finish).
 */
static void test_join_next_boundary(void **state)
{
	hs_device_t d = hs_test_device("a", 80, 1000, 100, 50, 300, 0, NULL);
	hs_sched_config_t cfg;
	uint64_t a, b;
	int64_t t = 0;
	int runs;
	fx_t *fx;

	(void)state;
	hs_sched_config_init(&cfg);
	cfg.policy = "fifo";
	cfg.max_step_tokens = 150;
	/* Told every step, and in runs: the same. */
	for (runs = 0; runs < 2; runs++) {
		fx = fx_new_runs(&cfg, &d, 1, runs ? MAX_RUN : 0);
		(void)submit(fx, 0, 0, 10, 100, 0); /* alone at once */
		a = submit(fx, 0, 0, 100, 20, 0);
		b = submit(fx, 0, 0, 100, 20, 0);
		/* The first boundary: a joins; b (1 + 100 + 100 > 150) does
		 * not, and fits the next step (2 + 100): the run handed out
		 * is that one step. */
		finish(fx, t += MS, 0, MS);
		assert_int_equal(hs_sched_job(fx->s, a)->state, HS_JOB_RUNNING);
		assert_int_equal(hs_sched_job(fx->s, b)->state, HS_JOB_QUEUED);
		assert_int_equal(fx->rec.steps[fx->rec.n_steps - 1].steps, 1);
		finish(fx, t += MS, 0, MS);
		assert_int_equal(hs_sched_job(fx->s, b)->state, HS_JOB_RUNNING);
		assert_int_equal(fx->rec.steps[fx->rec.n_steps - 1].joining, 1);
		fx_free(fx);
	}
}

/*
 * No device in a run could take a job at its next boundary, after every
 * call of a random mix of arrivals (some ahead of the queues' heads by
 * priority), steps, and cancellations of queued and running jobs: what
 * lets a queue change behind a head skip the check.
 */
static void test_runs_quiet(void **state)
{
	static const char *const policies[] = {"fifo", "rr", "eft"};
	hs_device_t d[3];
	uint64_t x = 7, ids[400];
	size_t p, n_ids;
	int i;

	(void)state;
	for (i = 0; i < 3; i++)
		d[i] = hs_test_device("a", 80, 1000, 100, 50, 300, 0, NULL);
	for (p = 0; p < 3; p++) {
		hs_sched_config_t cfg;
		int64_t t = 0;
		fx_t *fx;

		hs_sched_config_init(&cfg);
		cfg.policy = policies[p];
		cfg.max_step_tokens = 300;
		cfg.max_batch_jobs = 6;
		fx = fx_new(&cfg, d, 3);
		n_ids = 0;
		for (i = 0; i < 1500; i++) {
			uint32_t r;
			int dev;

			/* Only busy[] is read here: the logs start over. */
			fx->rec.n_steps = fx->rec.n_events = fx->rec.n_cuts = 0;
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			r = (uint32_t)(x >> 33);
			t += MS / 4;
			if (r % 8 < 3 && n_ids < 400) {
				ids[n_ids++] =
					submit(fx, t, r % 2, 10 + r / 7 % 330,
					       1 + r / 11 % 30,
					       (int32_t)(r / 13 % 3) - 1);
			} else if (r % 8 == 3 && n_ids) {
				(void)hs_sched_cancel(fx->s, t,
						      ids[r / 17 % n_ids]);
			} else {
				dev = (int)(r / 19 % 3);
				if (fx->rec.busy[dev])
					finish(fx, t, dev, MS / 4);
			}
			assert_true(hs__sched_runs_quiet(fx->s));
		}
		fx_free(fx);
	}
}

/*
 * A job's tag comes back in every event of the job and in hs_sched_job,
 * and a slot used again carries its new job's tag, not the one before.
 */
static void test_job_tag(void **state)
{
	hs_device_t d = hs_test_device("a", 80, 1000, 100, 50, 300, 0, NULL);
	hs_sched_config_t cfg;
	uint64_t ids[4], tags[4] = {7, 0xfeedfacecafebeefull, 0, 7};
	size_t i, k, seen = 0;
	int64_t t = 0;
	hs_error_t err;
	fx_t *fx;

	(void)state;
	hs_sched_config_init(&cfg);
	cfg.policy = "fifo";
	cfg.max_batch_jobs = 2;
	fx = fx_new(&cfg, &d, 1);
	for (k = 0; k < 4; k++) {
		hs_job_spec_t spec = {.model = 0,
				      .ctx_tokens = 10,
				      .gen_tokens = 2 + (uint32_t)k,
				      .deadline_ns = -1,
				      .tag = tags[k]};

		if (k == 2)
			while (fx->rec.n_events < 2 * 2) /* a and b done */
				finish(fx, t += MS, 0, MS);
		assert_int_equal(
			hs_sched_submit(fx->s, t, &spec, &ids[k], &err), 0);
		assert_true(hs_sched_job(fx->s, ids[k])->tag == tags[k]);
	}
	/* The third job took a slot the first two freed. */
	assert_true((uint32_t)ids[2] == (uint32_t)ids[0] ||
		    (uint32_t)ids[2] == (uint32_t)ids[1]);
	for (i = 0; i < 50 && count_events(fx, HS_JOB_EV_DONE) < 4; i++)
		finish(fx, t += MS, 0, MS);
	assert_int_equal(count_events(fx, HS_JOB_EV_DONE), 4);
	for (i = 0; i < fx->rec.n_events; i++)
		for (k = 0; k < 4; k++)
			if (fx->rec.events[i].id == ids[k]) {
				assert_true(fx->rec.events[i].tag == tags[k]);
				seen++;
			}
	assert_int_equal(seen, fx->rec.n_events);
	fx_free(fx);
}

/*
 * A failed device's jobs go back to the queues first-finishing first: rr
 * then hands the one that finishes first (j0) to the next device, d1,
 * whichever place it has in its batch.
 */
static void test_failure_requeue_order(void **state)
{
	static const uint32_t gen[6] = {5, 50, 50, 100, 50, 50};
	hs_device_t d[3];
	hs_sched_config_t cfg;
	uint64_t ids[6];
	bool in_d1 = false, in_d2 = false;
	size_t i, k;
	fx_t *fx;

	for (i = 0; i < 3; i++)
		d[i] = hs_test_device("a", 80, 1000, 100, 50, 300, 0, NULL);
	hs_sched_config_init(&cfg);
	cfg.policy = "rr";
	fx = fx_new(&cfg, d, 3);
	for (i = 0; i < 6; i++)
		ids[i] = submit(fx, (int64_t)i, 0, 100, gen[i], 0);
	for (i = 0; i < 3; i++)
		finish(fx, MS, (int)i, MS);
	for (i = 0; i < 3; i++)
		finish(fx, 2 * MS, (int)i, MS);
	k = fx->rec.n_steps;
	fx->rec.busy[0] = false;
	assert_int_equal(hs_sched_device_failed(fx->s, 2 * MS + MS / 2, 0), 0);
	for (i = 1; i < 3; i++)
		finish(fx, 3 * MS, (int)i, MS);
	for (; k < fx->rec.n_steps; k++)
		for (i = 0; i < fx->rec.steps[k].batch && i < 8; i++) {
			in_d1 |= fx->rec.steps[k].device == 1 &&
				 fx->rec.step_jobs[k][i] == ids[0];
			in_d2 |= fx->rec.steps[k].device == 2 &&
				 fx->rec.step_jobs[k][i] == ids[3];
		}
	assert_true(in_d1);
	assert_true(in_d2);
	fx_free(fx);
}

/* A job cancelled during its last step has finished: it is done, with
 * every token, and the device forgets the cancel. */
static void test_cancel_last_step(void **state)
{
	hs_device_t d = hs_test_device("a", 80, 1000, 100, 50, 300, 0, NULL);
	hs_sched_config_t cfg;
	hs_sched_stats_t st;
	const hs_job_t *j;
	uint64_t id, id2;
	fx_t *fx;

	hs_sched_config_init(&cfg);
	fx = fx_new(&cfg, &d, 1);
	id = submit(fx, 0, 0, 10, 1, 0);
	assert_int_equal(hs_sched_cancel(fx->s, 10, id), 0);
	finish(fx, MS, 0, MS);
	hs_sched_stats(fx->s, &st);
	assert_int_equal(st.completed, 1);
	assert_int_equal(st.cancelled, 0);
	assert_int_equal(count_events(fx, HS_JOB_EV_DONE), 1);
	/* The next job runs and is cancelled as any other. */
	id2 = submit(fx, 2 * MS, 0, 10, 5, 0);
	assert_int_equal(hs_sched_cancel(fx->s, 2 * MS + 10, id2), 0);
	finish(fx, 3 * MS, 0, MS);
	j = hs_sched_job(fx->s, id2);
	assert_null(j);
	hs_sched_stats(fx->s, &st);
	assert_int_equal(st.cancelled, 1);
	assert_int_equal(st.queued + st.running, 0);
	fx_free(fx);
}

/* min_batch: an idle device waits for company until max_wait. */
static void test_max_wait(void **state)
{
	hs_device_t d = hs_test_device("a", 80, 1000, 100, 50, 300, 0, NULL);
	hs_sched_config_t cfg;
	fx_t *fx;

	hs_sched_config_init(&cfg);
	cfg.policy = "fifo";
	cfg.min_batch_jobs = 3;
	cfg.max_wait_ns = 50 * MS;
	fx = fx_new(&cfg, &d, 1);
	submit(fx, 0, 0, 100, 5, 0);
	assert_int_equal(fx->rec.n_steps, 0);
	assert_int_equal(fx->rec.timer, 50 * MS);
	submit(fx, 10 * MS, 0, 100, 5, 0);
	assert_int_equal(fx->rec.n_steps, 0);
	hs_sched_timer(fx->s, 50 * MS);
	assert_int_equal(fx->rec.n_steps, 1);
	assert_int_equal(fx->rec.steps[0].batch, 2);
	fx_free(fx);

	fx = fx_new(&cfg, &d, 1);
	submit(fx, 0, 0, 100, 5, 0);
	submit(fx, 1, 0, 100, 5, 0);
	submit(fx, 2, 0, 100, 5, 0); /* the third: a batch at once */
	assert_int_equal(fx->rec.n_steps, 1);
	assert_int_equal(fx->rec.steps[0].batch, 3);
	fx_free(fx);
}

/* Policies on cases checked by hand. */
static void test_policy_rr(void **state)
{
	hs_device_t d[3] = {
		hs_test_device("a", 80, 1000, 100, 50, 300, 0, NULL),
		hs_test_device("b", 80, 100, 10, 50, 300, 0, NULL),
		hs_test_device("c", 80, 1000, 100, 50, 300, 0, NULL),
	};
	hs_sched_config_t cfg;
	fx_t *fx;
	size_t i;

	hs_sched_config_init(&cfg);
	cfg.policy = "rr";
	fx = fx_new(&cfg, d, 3);
	for (i = 0; i < 3; i++)
		submit(fx, 0, 0, 100, 5, 0);
	/* One each, whatever their speed. */
	assert_int_equal(fx->rec.n_steps, 3);
	for (i = 0; i < 3; i++)
		assert_int_equal(fx->rec.steps[i].device, (int)i);
	fx_free(fx);
}

static void test_policy_eft(void **state)
{
	hs_device_t d[2] = {
		hs_test_device("slow", 80, 100, 10, 50, 300, 0, NULL),
		hs_test_device("fast", 80, 1000, 100, 50, 300, 0, NULL),
	};
	hs_sched_config_t cfg;
	fx_t *fx;

	hs_sched_config_init(&cfg);
	cfg.policy = "eft";
	fx = fx_new(&cfg, d, 2);
	/* Both idle: the fast one finishes first. */
	submit(fx, 0, 0, 100, 5, 0);
	assert_int_equal(fx->rec.steps[0].device, 1);
	/* Load the fast one far beyond what the slow one needs for a
	 * small job: the slow one wins. */
	{
		int i;

		for (i = 0; i < 200; i++)
			submit(fx, 0, 0, 4000, 2000, 0);
	}
	assert_true(hs__sched_backlog_ns(fx->s, 1) >
		    hs__sched_backlog_ns(fx->s, 0));
	fx_free(fx);
}

static void test_policy_tpw(void **state)
{
	/* Same speed; b draws half the power: b is twice as efficient. */
	hs_device_t d[2] = {
		hs_test_device("hungry", 80, 1000, 100, 50, 600, 0, NULL),
		hs_test_device("frugal", 80, 1000, 100, 50, 300, 0, NULL),
	};
	const double lv[] = {300, 1.0, 150, 0.9};
	hs_sched_config_t cfg;
	fx_t *fx;

	hs_sched_config_init(&cfg);
	cfg.policy = "tpw";
	fx = fx_new(&cfg, d, 2);
	submit(fx, 0, 0, 100, 5, 0);
	assert_int_equal(fx->rec.steps[0].device, 1);
	fx_free(fx);

	/* Levels: 0.9 speed for half the power is more tokens per joule. */
	d[1] = hs_test_device("frugal", 80, 1000, 100, 50, 300, 2, lv);
	fx = fx_new(&cfg, d, 2);
	submit(fx, 0, 0, 100, 5, 0);
	assert_int_equal(fx->rec.steps[0].device, 1);
	assert_int_equal(fx->rec.steps[0].level, 1);
	fx_free(fx);
}

static void test_policy_fifo_shared(void **state)
{
	hs_device_t d[2] = {
		hs_test_device("a", 80, 1000, 100, 50, 300, 0, NULL),
		hs_test_device("b", 80, 1000, 100, 50, 300, 0, NULL),
	};
	hs_sched_config_t cfg;
	fx_t *fx;

	hs_sched_config_init(&cfg);
	cfg.policy = "fifo";
	cfg.max_batch_jobs = 1;
	fx = fx_new(&cfg, d, 2);
	submit(fx, 0, 0, 100, 5, 0);
	submit(fx, 0, 0, 100, 5, 0);
	submit(fx, 0, 0, 100, 5, 0);
	assert_int_equal(fx->rec.n_steps, 2);
	/* The third waits in the shared queue and goes to whichever
	 * device frees first: b. */
	finish(fx, 5 * MS, 1, 5 * MS);
	assert_int_equal(fx->rec.n_steps, 3);
	assert_int_equal(fx->rec.steps[2].device, 1);
	fx_free(fx);
}

/* A model switch costs its weight load, which the step includes. */
static void test_residency(void **state)
{
	hs_device_t d = hs_test_device("a", 80, 1000, 100, 50, 300, 0, NULL);
	hs_sched_config_t cfg;
	fx_t *fx;

	hs_sched_config_init(&cfg);
	cfg.policy = "fifo";
	fx = fx_new(&cfg, &d, 1);
	submit(fx, 0, 0, 100, 1, 0);
	/* 1 GB over a 32 GB/s link: 31.25 ms. */
	assert_int_equal(fx->rec.steps[0].load_ns, 31250000);
	assert_true(hs__sched_resident(fx->s, 0, 0));
	finish(fx, 40 * MS, 0, 40 * MS);
	submit(fx, 50 * MS, 0, 100, 1, 0);
	assert_int_equal(fx->rec.steps[1].load_ns, 0);
	finish(fx, 60 * MS, 0, 10 * MS);
	submit(fx, 70 * MS, 1, 100, 1, 0);
	assert_int_equal(fx->rec.steps[2].load_ns, 312500000);
	fx_free(fx);
}

/* A busy model does not keep its device forever: once a job of another
 * model no device runs has waited aging_ns, the batch drains and that job
 * runs. */
static void test_model_starvation(void **state)
{
	hs_device_t d = hs_test_device("a", 80, 1000, 100, 50, 300, 0, NULL);
	hs_sched_config_t cfg;
	const hs_job_t *j;
	int64_t now = 0;
	uint64_t big;
	int i;

	hs_sched_config_init(&cfg);
	cfg.policy = "fifo";
	cfg.max_batch_jobs = 4;
	cfg.aging_ns = 100 * MS;
	{
		fx_t *fx = fx_new(&cfg, &d, 1);

		submit(fx, 0, 0, 100, 3, 0);
		big = submit(fx, 1, 1, 100, 2, 0);
		/* A new m-small job every step keeps its batch busy. */
		for (i = 0; i < 60; i++) {
			now += 10 * MS;
			submit(fx, now - 1, 0, 100, 3, 0);
			finish(fx, now, 0, 10 * MS);
			j = hs_sched_job(fx->s, big);
			if (!j || j->state == HS_JOB_RUNNING)
				break;
		}
		/* Within the aging bound plus the drain of a batch of
		 * three-token jobs, not never. */
		assert_true(i < 60);
		assert_true(now <= 100 * MS + 6 * 10 * MS);
		fx_free(fx);
	}
}

/* A node's calibration survives a restart: saved, loaded, same
 * predictions; a bad file is refused whole with its path. */
static void test_perf_save_load(void **state)
{
	hs_device_t d = hs_test_device("a", 80, 1000, 100, 50, 300, 0, NULL);
	const char *path = "/tmp/hs-test-calibration.json";
	hs_sched_config_t cfg;
	hs_error_t err;
	double before, prior, after;
	fx_t *fx, *fy;
	int i;
	FILE *f;

	hs_sched_config_init(&cfg);
	cfg.policy = "fifo";
	fx = fx_new(&cfg, &d, 1);
	prior = hs__sched_predict_ns(fx->s, 0, 0, 1, 200, 0, 0);
	submit(fx, 0, 0, 100, 60, 0);
	/* The device is about three times slower than its profile says. */
	for (i = 1; i <= 60; i++)
		finish(fx, i * 10 * MS, 0,
		       (int64_t)(3 * prior * (i == 1 ? 1.5 : 1.0)));
	before = hs__sched_predict_ns(fx->s, 0, 0, 1, 200, 0, 0);
	assert_true(before > 2 * prior);
	assert_int_equal(hs_sched_perf_save(fx->s, path, &err), 0);

	fy = fx_new(&cfg, &d, 1);
	assert_true(hs__sched_predict_ns(fy->s, 0, 0, 1, 200, 0, 0) == prior);
	assert_int_equal(hs_sched_perf_load(fy->s, path, &err), 0);
	after = hs__sched_predict_ns(fy->s, 0, 0, 1, 200, 0, 0);
	assert_true(after == before);

	f = fopen(path, "w");
	assert_non_null(f);
	fputs("{\"version\": 1, \"entries\": [{\"device_id\": 0, "
	      "\"device\": \"a\", \"model\": \"m-small\", \"fit\": "
	      "{\"prior\": 1}}]}",
	      f);
	fclose(f);
	fx_free(fy);
	fy = fx_new(&cfg, &d, 1);
	assert_int_not_equal(hs_sched_perf_load(fy->s, path, &err), 0);
	assert_non_null(strstr(err.path, "$.entries[0].fit"));
	assert_string_equal(err.source, path);
	/* Refused whole: the prior is untouched. */
	assert_true(hs__sched_predict_ns(fy->s, 0, 0, 1, 200, 0, 0) == prior);
	assert_int_equal(hs_sched_perf_load(fy->s, "/nonexistent/x.json", &err),
			 HS_EIO);
	remove(path);
	fx_free(fy);
	fx_free(fx);
}

/* Every allocation of the core may fail: creation and submissions report
 * HS_ENOMEM, accepted jobs still run, and nothing leaks. */
static void test_alloc_failures(void **state)
{
	hs_device_t d[2] = {
		hs_test_device("a", 80, 1000, 100, 50, 300, 2, lv2),
		hs_test_device("b", 80, 1000, 100, 50, 300, 2, lv2),
	};
	hs_model_catalog_t *models = hs_test_models();
	const char *const *pol = hs_policy_names();
	long n, nomem = 0;
	size_t p;

	for (p = 0; pol[p]; p++) {
		for (n = 0;; n++) {
			hs_sched_config_t cfg;
			hs_sched_stats_t st;
			hs_sched_t *s = NULL;
			hs_error_t err;
			uint64_t id;
			int i, rc, accepted = 0;

			hs_sched_config_init(&cfg);
			cfg.policy = pol[p];
			hs_test_alloc_install(n);
			rc = hs_sched_new(&s, &cfg, models, d, 2, NULL, &err);
			if (rc) {
				assert_int_equal(rc, HS_ENOMEM);
				assert_null(s);
				nomem++;
				assert_int_equal(hs_test_alloc_live(), 0);
				hs_test_alloc_uninstall();
				continue;
			}
			for (i = 0; i < 40; i++) {
				hs_job_spec_t spec = {.model =
							      (uint32_t)(i % 2),
						      .ctx_tokens = 100 + i,
						      .gen_tokens = 3,
						      .deadline_ns = -1};

				rc = hs_sched_submit(s, i, &spec, &id, &err);
				if (rc)
					assert_int_equal(rc, HS_ENOMEM);
				else
					accepted++;
			}
			hs_sched_stats(s, &st);
			assert_int_equal(st.queued + st.running,
					 (uint64_t)accepted);
			hs_sched_free(s);
			assert_int_equal(hs_test_alloc_live(), 0);
			hs_test_alloc_uninstall();
			if (accepted == 40 && n > 0)
				break;
		}
	}
	assert_true(nomem > 10);
	hs_model_catalog_free(models);
}

/* An allocator whose blocks start 16, 32 or 48 bytes past a line, in turn:
 * a block that grows moves to another offset each time. */
static unsigned shift_n;

static void *shift_malloc(size_t n)
{
	size_t k = 1 + shift_n++ % 3;
	char *raw = aligned_alloc(64, (n + 64 + 63) / 64 * 64), *p;

	if (!raw)
		return NULL;
	p = raw + 16 * k;
	memcpy(p - sizeof(raw), &raw, sizeof(raw));
	return p;
}

static void shift_free(void *p)
{
	char *raw;

	if (!p)
		return;
	memcpy(&raw, (char *)p - sizeof(raw), sizeof(raw));
	free(raw);
}

/*
 * The job records keep to line boundaries (two lines a record) as their
 * block grows and moves to other offsets: every record is where and what it
 * was, and the jobs run to the end.
 */
static void test_slots_grow(void **state)
{
	hs_device_t d = hs_test_device("a", 80, 1000, 100, 50, 300, 0, NULL);
	hs_model_catalog_t *models = hs_test_models();
	hs_sched_config_t cfg;
	hs_sched_stats_t st;
	hs_sched_t *s;
	hs_error_t err;
	uint64_t ids[300];
	int64_t ns[1] = {MS};
	size_t i, k;

	(void)state;
	hs_set_alloc_funcs(shift_malloc, shift_free);
	hs_sched_config_init(&cfg);
	cfg.policy = "fifo";
	assert_int_equal(hs_sched_new(&s, &cfg, models, &d, 1, NULL, &err), 0);
	for (k = 0; k < 300; k++) {
		hs_job_spec_t spec = {.model = (uint32_t)(k % 2),
				      .ctx_tokens = 10 + (uint32_t)k,
				      .gen_tokens = 1 + (uint32_t)(k % 3),
				      .deadline_ns = -1,
				      .tag = 1000 + k};

		assert_int_equal(hs_sched_submit(s, 0, &spec, &ids[k], &err),
				 0);
	}
	for (k = 0; k < 300; k++) {
		const hs_job_t *j = hs_sched_job(s, ids[k]);

		assert_non_null(j);
		assert_int_equal((uintptr_t)j % 64, 0);
		assert_true(j->tag == 1000 + k);
		assert_int_equal(j->ctx_tokens, 10 + k);
		assert_int_equal(j->gen_tokens, 1 + k % 3);
		assert_int_equal(j->model, k % 2);
	}
	for (i = 1; i < 10000; i++) {
		hs_sched_stats(s, &st);
		if (st.completed == 300)
			break;
		assert_int_equal(
			hs_sched_run_done(s, (int64_t)i * MS, 0, 1, ns, -1), 0);
	}
	hs_sched_stats(s, &st);
	assert_int_equal(st.completed, 300);
	hs_sched_free(s);
	hs_set_alloc_funcs(NULL, NULL);
	hs_model_catalog_free(models);
}

/* The first n steps of a device's run ended at `now`, each `ns` long. */
static int run_done(fx_t *fx, int64_t now, int d, uint32_t n, int64_t ns)
{
	int64_t t[MAX_RUN];
	uint32_t i;

	assert_true(n <= MAX_RUN);
	for (i = 0; i < n; i++)
		t[i] = ns;
	fx->rec.busy[d] = false;
	return hs_sched_run_done(fx->s, now, d, n, t, -1);
}

/*
 * A driver of runs (max_run 64): a batch with nothing to decide runs in
 * parts of up to 64 steps; a job that arrives and could join cuts the run
 * (the cut hook), which the driver ends at its next boundary, where the
 * job joins; so does cancelling a running job. Reports of no step or of
 * more than were handed out are refused.
 */
static void test_run_cut_by_arrival(void **state)
{
	hs_device_t d = hs_test_device("a", 80, 1000, 100, 50, 300, 0, NULL);
	int64_t t[MAX_RUN + 1];
	hs_sched_config_t cfg;
	hs_sched_stats_t st;
	uint64_t a, b;
	fx_t *fx;
	size_t i;

	for (i = 0; i <= MAX_RUN; i++)
		t[i] = 10 * MS;
	hs_sched_config_init(&cfg);
	cfg.policy = "fifo";

	/* Alone, 100 tokens: a part of 64 steps, then the other 36. */
	fx = fx_new_runs(&cfg, &d, 1, MAX_RUN);
	a = submit(fx, 0, 0, 100, 100, 0);
	assert_int_equal(fx->rec.n_steps, 1);
	assert_int_equal(fx->rec.steps[0].steps, MAX_RUN);
	assert_int_equal(fx->rec.steps[0].seq, 1);
	assert_int_equal(fx->rec.steps[0].joining, 1);
	assert_true(fx->rec.steps[0].until_ns == INT64_MAX);
	assert_int_equal(run_done(fx, 640 * MS, 0, MAX_RUN, 10 * MS), 0);
	assert_int_equal(fx->rec.n_steps, 2);
	assert_int_equal(fx->rec.steps[1].seq, MAX_RUN + 1);
	assert_int_equal(fx->rec.steps[1].steps, 100 - MAX_RUN);
	assert_int_equal(fx->rec.steps[1].joining, 0);
	assert_int_equal(fx->rec.steps[1].prefill_tokens, 0);
	assert_int_equal(fx->rec.steps[1].ctx_tokens, 100 + MAX_RUN);
	assert_int_equal(run_done(fx, 1000 * MS, 0, 100 - MAX_RUN, 10 * MS), 0);
	assert_int_equal(count_events(fx, HS_JOB_EV_DONE), 1);
	hs_sched_stats(fx->s, &st);
	assert_int_equal(st.steps, 100);
	assert_int_equal(st.output_tokens, 100);
	assert_int_equal(fx->rec.n_cuts, 0);
	fx_free(fx);

	fx = fx_new_runs(&cfg, &d, 1, MAX_RUN);
	a = submit(fx, 0, 0, 100, 100, 0);
	assert_int_equal(fx->rec.steps[0].steps, MAX_RUN);
	/* b arrives 5 ms into the first step: the run is cut, once. */
	b = submit(fx, 5 * MS, 0, 50, 10, 0);
	assert_int_equal(fx->rec.n_cuts, 1);
	assert_int_equal(fx->rec.cuts[0], 0);
	assert_int_equal(hs_sched_job(fx->s, b)->state, HS_JOB_QUEUED);
	submit(fx, 6 * MS, 0, 50, 10, 0);
	assert_int_equal(fx->rec.n_cuts, 1);
	/* Reports of no step, of more steps than handed out, of another
	 * device or of no times are refused and change nothing. */
	assert_int_equal(hs_sched_run_done(fx->s, 10 * MS, 0, 0, t, -1),
			 HS_EINVAL);
	assert_int_equal(
		hs_sched_run_done(fx->s, 10 * MS, 0, MAX_RUN + 1, t, -1),
		HS_EINVAL);
	assert_int_equal(hs_sched_run_done(fx->s, 10 * MS, 1, 1, t, -1),
			 HS_EINVAL);
	assert_int_equal(hs_sched_run_done(fx->s, 10 * MS, 0, 1, NULL, -1),
			 HS_EINVAL);
	assert_int_equal(hs_sched_run_progress(fx->s, 0, 0, t, -1), HS_EINVAL);
	assert_int_equal(hs_sched_run_progress(fx->s, 0, MAX_RUN, t, -1),
			 HS_EINVAL);
	assert_int_equal(fx->rec.n_steps, 1);
	hs_sched_stats(fx->s, &st);
	assert_int_equal(st.steps, 0);
	/* The driver stops at the boundary after the cut, 10 ms: both
	 * join at the next step, which starts a run of b's 10 tokens. */
	assert_int_equal(run_done(fx, 10 * MS, 0, 1, 10 * MS), 0);
	assert_int_equal(fx->rec.n_steps, 2);
	assert_int_equal(fx->rec.steps[1].joining, 2);
	assert_int_equal(fx->rec.steps[1].batch, 3);
	assert_int_equal(fx->rec.step_jobs[1][0], b);
	assert_int_equal(fx->rec.step_jobs[1][2], a);
	assert_int_equal(fx->rec.steps[1].seq, 2);
	assert_int_equal(fx->rec.steps[1].steps, 10);
	assert_int_equal(fx->rec.steps[1].prefill_tokens, 100);
	assert_int_equal(hs_sched_job(fx->s, a)->generated, 1);
	assert_int_equal(hs_sched_job(fx->s, a)->first_token_ns, 10 * MS);
	/* A report past the part handed out is refused too. */
	assert_int_equal(hs_sched_run_done(fx->s, 20 * MS, 0, 11, t, -1),
			 HS_EINVAL);
	fx_free(fx);

	/* One step, then a joiner: the run of the next boundary. */
	fx = fx_new_runs(&cfg, &d, 1, MAX_RUN);
	a = submit(fx, 0, 0, 100, 100, 0);
	b = submit(fx, 5 * MS, 0, 50, 10, 0);
	assert_int_equal(fx->rec.n_cuts, 1);
	assert_int_equal(run_done(fx, 10 * MS, 0, 1, 10 * MS), 0);
	assert_int_equal(fx->rec.steps[1].joining, 1);
	assert_int_equal(fx->rec.steps[1].batch, 2);
	assert_int_equal(fx->rec.steps[1].steps, 10);
	assert_int_equal(fx->rec.steps[1].ctx_tokens, 101 + 50);
	/* Cancelling a, which runs, cuts the run: it leaves at the next
	 * boundary and b goes on alone. */
	assert_int_equal(hs_sched_cancel(fx->s, 15 * MS, a), 0);
	assert_int_equal(fx->rec.n_cuts, 2);
	assert_int_equal(fx->rec.cuts[1], 0);
	assert_int_equal(count_events(fx, HS_JOB_EV_CANCELLED), 0);
	assert_int_equal(run_done(fx, 20 * MS, 0, 1, 10 * MS), 0);
	assert_int_equal(count_events(fx, HS_JOB_EV_CANCELLED), 1);
	assert_int_equal(fx->rec.n_steps, 3);
	assert_int_equal(fx->rec.steps[2].batch, 1);
	assert_int_equal(fx->rec.steps[2].joining, 0);
	assert_int_equal(fx->rec.step_jobs[2][0], b);
	assert_int_equal(fx->rec.steps[2].seq, 3);
	assert_int_equal(fx->rec.steps[2].steps, 9);
	/* Progress of some steps (not all: that is run_done), then the
	 * rest: b is done. */
	assert_int_equal(hs_sched_run_progress(fx->s, 0, 9, t, -1), HS_EINVAL);
	assert_int_equal(hs_sched_run_progress(fx->s, 0, 4, t, -1), 0);
	assert_int_equal(hs_sched_run_done(fx->s, 110 * MS, 0, 6, t, -1),
			 HS_EINVAL);
	assert_int_equal(run_done(fx, 110 * MS, 0, 5, 10 * MS), 0);
	assert_int_equal(fx->rec.n_steps, 3);
	assert_int_equal(count_events(fx, HS_JOB_EV_DONE), 1);
	assert_null(hs_sched_job(fx->s, b));
	hs_sched_stats(fx->s, &st);
	assert_int_equal(st.completed, 1);
	assert_int_equal(st.cancelled, 1);
	assert_int_equal(st.steps, 11);
	assert_int_equal(st.output_tokens, 1 + 2 + 9);
	assert_int_equal(fx->rec.n_cuts, 2);
	fx_free(fx);

	/* A driver of one step at a time is never told to cut: the core
	 * ends its run at the next report, with the same decisions. */
	fx = fx_new_runs(&cfg, &d, 1, 0);
	a = submit(fx, 0, 0, 100, 100, 0);
	assert_int_equal(fx->rec.steps[0].steps, 1);
	b = submit(fx, 5 * MS, 0, 50, 10, 0);
	assert_int_equal(hs_sched_cancel(fx->s, 6 * MS, a), 0);
	finish(fx, 10 * MS, 0, 10 * MS);
	assert_int_equal(fx->rec.n_cuts, 0);
	assert_int_equal(fx->rec.steps[1].joining, 1);
	assert_int_equal(fx->rec.steps[1].batch, 1);
	assert_int_equal(fx->rec.step_jobs[1][0], b);
	fx_free(fx);
}

/*
 * A running job's progress (hs_job_t.generated, which the agent reads
 * after every step to stream tokens) counts the steps reported, within a
 * run as at its end: as it did before runs.
 */
static void test_run_job_progress(void **state)
{
	hs_device_t d = hs_test_device("a", 80, 1000, 100, 50, 300, 0, NULL);
	hs_sched_config_t cfg;
	uint32_t got[2];
	uint64_t a;
	fx_t *fx;
	int i;

	hs_sched_config_init(&cfg);
	cfg.policy = "fifo";
	/* One step at a time: ten steps of a 100-token run. */
	fx = fx_new(&cfg, &d, 1);
	a = submit(fx, 0, 0, 100, 100, 0);
	for (i = 1; i <= 10; i++)
		finish(fx, i * 10 * MS, 0, 10 * MS);
	assert_int_equal(fx->rec.n_steps, 11);
	got[0] = hs_sched_job(fx->s, a)->generated;
	fx_free(fx);
	/* Runs: a part of 64 steps reported, the run goes on. */
	fx = fx_new_runs(&cfg, &d, 1, MAX_RUN);
	a = submit(fx, 0, 0, 100, 100, 0);
	assert_int_equal(run_done(fx, 640 * MS, 0, MAX_RUN, 10 * MS), 0);
	assert_int_equal(fx->rec.n_steps, 2);
	got[1] = hs_sched_job(fx->s, a)->generated;
	fx_free(fx);
	assert_int_equal(got[0], 10);
	assert_int_equal(got[1], MAX_RUN);
}

/*
 * What a review of runs and leases found, each fixed: a budget lifted
 * lets a throttled device run at its fastest level again at its next
 * boundary; a lease of INT64_MAX does not overflow; a driver of runs
 * without a cut hook gets one step at a time; a part fully reported
 * through run_progress ends with run_done(0); a one-step driver's first
 * token is stamped when it reports the step.
 */
static void test_runs_review(void **state)
{
	static const double lv[] = {300, 1.0, 150, 0.6};
	hs_device_t d = hs_test_device("a", 80, 1000, 100, 50, 300, 2, lv);
	hs_sched_config_t cfg;
	hs_sched_hooks_t hooks = {0};
	hs_sched_stats_t st;
	hs_error_t err;
	int64_t t[3] = {10 * MS, 10 * MS, 10 * MS};
	uint64_t a;
	fx_t *fx;
	size_t k;

	hs_sched_config_init(&cfg);
	cfg.policy = "fifo";
	cfg.power_budget_w = 200;
	fx = fx_new(&cfg, &d, 1);
	(void)submit(fx, 0, 0, 100, 1000, 0);
	assert_int_equal(fx->rec.steps[0].level, 1);
	assert_int_equal(hs_sched_set_budget(fx->s, 5 * MS, 0), 0);
	finish(fx, 10 * MS, 0, 10 * MS);
	k = fx->rec.n_steps - 1;
	assert_int_equal(fx->rec.steps[k].level, 0);
	finish(fx, 20 * MS, 0, 10 * MS);
	assert_int_equal(fx->rec.steps[fx->rec.n_steps - 1].level, 0);
	/* The first token when the step was reported. */
	for (k = 0; k < fx->rec.n_events; k++)
		if (fx->rec.events[k].ev == HS_JOB_EV_FIRST_TOKEN)
			assert_int_equal(fx->rec.events[k].first_token_ns,
					 10 * MS);
	fx_free(fx);

	/* A lease that never ends. */
	cfg.power_lease_ns = INT64_MAX;
	fx = fx_new_runs(&cfg, &d, 1, MAX_RUN);
	(void)submit(fx, 5 * MS, 0, 100, 1000, 0);
	assert_int_equal(fx->rec.steps[0].steps, MAX_RUN);
	assert_true(fx->rec.steps[0].until_ns == INT64_MAX);
	/* Three steps said as progress, then the part ends with none. */
	assert_int_equal(hs_sched_run_progress(fx->s, 0, 0, t, -1), HS_EINVAL);
	assert_int_equal(hs_sched_run_progress(fx->s, 0, 3, t, -1), 0);
	fx->rec.busy[0] = false;
	assert_int_equal(hs_sched_run_done(fx->s, 40 * MS, 0, 0, NULL, -1), 0);
	hs_sched_stats(fx->s, &st);
	assert_int_equal(st.steps, 3);
	assert_int_equal(fx->rec.n_steps, 2);
	assert_int_equal(fx->rec.steps[1].seq, 4);
	fx_free(fx);

	/* max_run without a cut hook: one step at a time. */
	hooks.step_start = rec_step;
	hooks.max_run = MAX_RUN;
	fx = test_calloc(1, sizeof(*fx));
	fx->models = hs_test_models();
	hooks.ud = &fx->rec;
	cfg.power_lease_ns = 0;
	assert_int_equal(
		hs_sched_new(&fx->s, &cfg, fx->models, &d, 1, &hooks, &err), 0);
	a = submit(fx, 0, 0, 100, 1000, 0);
	assert_int_equal(fx->rec.steps[0].steps, 1);
	assert_non_null(hs_sched_job(fx->s, a));
	fx_free(fx);
}

/*
 * eft prices a job from cached finish-time entries: they follow the fit
 * when a run moves it, also a young fit that refits at every sample and
 * ends the run with no refit due (the review's case: an outlier, an
 * accepted step off the prediction, an outlier after the refit).
 */
static void test_cost_cache_follows_fit(void **state)
{
	hs_device_t d = hs_test_device("gpu", 80, 1000, 100, 50, 300, 0, NULL);
	hs_sched_config_t cfg;
	const hs_job_t *pj;
	const double *f;
	int64_t ns[3], now = 0, p;
	uint64_t probe;
	int k;
	fx_t *fx;

	hs_sched_config_init(&cfg);
	cfg.policy = "eft";
	fx = fx_new_runs(&cfg, &d, 1, MAX_RUN);
	/* A young fit, warmed by runs of three steps as predicted. */
	for (k = 0; k < 4; k++) {
		(void)submit(fx, now, 0, 10, 3, 0);
		assert_int_equal(fx->rec.steps[fx->rec.n_steps - 1].steps, 3);
		p = fx->rec.steps[fx->rec.n_steps - 1].predicted_ns;
		now += 3 * p;
		assert_int_equal(run_done(fx, now, 0, 3, p), 0);
	}
	(void)submit(fx, now, 0, 10, 3, 0);
	p = fx->rec.steps[fx->rec.n_steps - 1].predicted_ns;
	probe = submit(fx, now, 0, 10, 3, 0); /* queued: the device runs */
	pj = hs_sched_job(fx->s, probe);
	(void)hs__sched_finish_ns(fx->s, pj, 1); /* the entries, cached */
	ns[0] = 100 * p;
	ns[1] = 3 * p;
	ns[2] = 100 * p;
	now += ns[0] + ns[1] + ns[2];
	fx->rec.busy[0] = false;
	assert_int_equal(hs_sched_run_done(fx->s, now, 0, 3, ns, -1), 0);
	pj = hs_sched_job(fx->s, probe);
	f = hs__sched_finish_ns(fx->s, pj, 1);
	assert_true(fabs(f[0] - hs__sched_backlog_ns(fx->s, 0) -
			 hs__sched_job_cost_ns(fx->s, 0, pj, 1)) <=
		    1e-9 * f[0]);
	fx_free(fx);
}

/* The first device of the least finish time, as the double pass has it;
 * *near: whether another is within 2^-18 of it. */
static int earliest_by_hand(hs_sched_t *s, const hs_job_t *pj, uint32_t batch,
			    size_t n, bool *near)
{
	const double *f = hs__sched_finish_ns(s, pj, batch);
	double best = HUGE_VAL, second = HUGE_VAL;
	int pick = -1;
	size_t k;

	for (k = 0; k < n; k++) {
		if (f[k] < best) {
			second = best;
			best = f[k];
			pick = (int)k;
		} else if (f[k] < second) {
			second = f[k];
		}
	}
	*near = second - best <= best * 0x1p-18;
	return pick;
}

/*
 * Submit 2000 jobs to an eft core of these devices that never finish a
 * step, cancelling one in ten, and check each time that eft picks for a
 * queued job what the double pass does; count the picks with another
 * device near. Jobs come in bursts of one kind (every job of it, with
 * one_kind), which identical devices take in turn: their backlogs meet.
 * Returns the backlog of the last device.
 */
static double eft_agrees(const hs_device_t *d, size_t n_devs, bool one_kind,
			 size_t *near_n, size_t *clear_n)
{
	hs_sched_config_t cfg;
	uint64_t ids[2000], rng = 11;
	size_t n = 0, i;
	double backlog;
	fx_t *fx;

	hs_sched_config_init(&cfg);
	cfg.policy = "eft";
	fx = fx_new(&cfg, d, n_devs);
	for (i = 0; i < 2000; i++) {
		const hs_job_t *pj;
		uint32_t batch = i % 3 ? cfg.max_batch_jobs : 1;
		bool burst = one_kind || (i / 8) % 2, near;
		int want;

		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		if (burst)
			ids[n++] = submit(fx, 0, 0, 500, 200, 0);
		else
			ids[n++] = submit(fx, 0, (uint32_t)(rng >> 63),
					  1 + (uint32_t)(rng >> 40) % 4000,
					  1 + (uint32_t)(rng >> 20) % 4000, 0);
		if (i % 10 == 9)
			(void)hs_sched_cancel(fx->s, 0, ids[(rng >> 8) % n]);
		pj = hs_sched_job(fx->s,
				  burst ? ids[n - 1] : ids[(rng >> 16) % n]);
		if (!pj || pj->state != HS_JOB_QUEUED)
			continue;
		/* The double pass first or second: each may set the float
		 * copies' base. */
		if (i % 2) {
			want = earliest_by_hand(fx->s, pj, batch, n_devs,
						&near);
			assert_int_equal(hs__sched_earliest(fx->s, pj, batch),
					 want);
		} else {
			int got = hs__sched_earliest(fx->s, pj, batch);

			want = earliest_by_hand(fx->s, pj, batch, n_devs,
						&near);
			assert_int_equal(got, want);
		}
		*near_n += near;
		*clear_n += !near;
	}
	backlog = hs__sched_backlog_ns(fx->s, (int)n_devs - 1);
	fx_free(fx);
	return backlog;
}

/*
 * eft tells the earliest device from float copies of its entries and
 * backlogs when their rounding leaves no doubt, and from the double pass
 * otherwise: either way the first device of the least finish time, through
 * exact ties (identical devices), near ties (devices 3e-8 apart, less than a
 * float tells), backlogs of minutes, and backlogs that fall below the copies'
 * base (cancelled jobs).
 */
static void test_eft_float_agrees(void **state)
{
	hs_device_t d[10];
	size_t near_n = 0, clear_n = 0;

	d[0] = hs_test_device("same", 80, 1000, 100, 50, 300, 0, NULL);
	d[1] = d[0];
	d[2] = d[0];
	d[3] = hs_test_device("near", 80, 2000, 200, 50, 400, 0, NULL);
	d[4] = hs_test_device("near+", 80, 2000 * (1 + 3e-8), 200, 50, 400, 0,
			      NULL);
	d[5] = hs_test_device("near-", 80, 2000 * (1 - 3e-8), 200, 50, 400, 0,
			      NULL);
	d[6] = hs_test_device("slow", 48, 300, 50, 30, 200, 0, NULL);
	d[7] = hs_test_device("fast", 80, 3350, 990, 70, 700, 0, NULL);
	d[8] = hs_test_device("mid", 80, 900, 150, 40, 300, 0, NULL);
	d[9] = d[6];
	/* A mixed fleet, mostly clear picks, backlogs of minutes. */
	assert_true(eft_agrees(d, 10, false, &near_n, &clear_n) > 1e10);
	assert_true(clear_n > 1000);
	/* Identical and near devices alone: ties at every turn. */
	near_n = 0;
	(void)eft_agrees(d, 6, true, &near_n, &clear_n);
	assert_true(near_n > 300);
}

/* xorshift64, for the float bound's cases. */
static uint64_t fz_next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static double fz_unit(uint64_t *x)
{
	return (double)(fz_next(x) >> 11) * 0x1p-53;
}

/* A finish-time entry: 0, a few ns, or anywhere up to 1e29. */
static double fz_entry(uint64_t *x)
{
	switch (fz_next(x) % 5) {
	case 0:
		return 0;
	case 1:
		return fz_unit(x) * 10;
	case 2:
		return exp(fz_unit(x) * 60);
	case 3:
		return 1e29 * fz_unit(x);
	default:
		return exp(fz_unit(x) * 25);
	}
}

/*
 * eft's float pre-pass answers only what the double pass would answer:
 * 200,000 random fleets of 1 to 70 devices, entries from 0 to 1e29,
 * backlogs of any size, equal (at 1e12 ns, where a double's last bit is
 * 1e-4 ns) or near; half the devices twins of the one before, or 1e-3 or
 * 1e-5 ns apart from it, or trading load for backlog with it. Its pick,
 * when it makes one, is the first device of the least double finish time,
 * computed as the double pass does; nearly half the picks are made, the
 * rest left to the double pass. It fails without the margin for the
 * floats' rounding, with a margin of two float steps instead of 2^-19,
 * and without the slack for the doubles' own rounding at 1e12.
 */
static void test_eft_float_bound(void **state)
{
	uint64_t x = 7;
	int it, decided = 0, left = 0;

	(void)state;
	for (it = 0; it < 200000; it++) {
		double ks[70], kc[70], kp[70], kl[70], bl[70], base = HUGE_VAL,
							       best = HUGE_VAL;
		float fks[70], fkc[70], fkp[70], fkl[70], fbl[70];
		uint32_t n = 1 + (uint32_t)(fz_next(&x) % 70), d;
		double C = (double)(fz_next(&x) % 300000),
		       ctx = (double)(fz_next(&x) % 9000),
		       per = (double)(1 + fz_next(&x) % 1024) /
			     (double)(1 + fz_next(&x) % 32);
		int kind = (int)(fz_next(&x) % 4), want = -1, got;

		for (d = 0; d < n; d++) {
			ks[d] = fz_entry(&x);
			kc[d] = fz_entry(&x) * 1e-3;
			kp[d] = fz_entry(&x) * 1e-2;
			kl[d] = fz_entry(&x);
			bl[d] = kind == 0   ? fz_entry(&x)
				: kind == 1 ? 3.6e11 + fz_unit(&x) * 1e7
				: kind == 2 ? 1e12
					    : 0;
			if (d && fz_next(&x) % 2 == 0) {
				/* A twin of the one before, or nearly, or one
				 * whose load and backlog trade a share of its
				 * load: finish times that the floats round
				 * apart from the doubles. */
				double shift = fz_next(&x) % 2
						       ? fz_unit(&x) * kl[d - 1]
						       : 0;

				ks[d] = ks[d - 1];
				kc[d] = kc[d - 1];
				kp[d] = kp[d - 1];
				kl[d] = kl[d - 1] - shift +
					(double)(fz_next(&x) % 3) *
						(fz_next(&x) % 2 ? 1e-3 : 1e-5);
				bl[d] = bl[d - 1] + shift;
			}
			base = bl[d] < base ? bl[d] : base;
		}
		for (d = 0; d < n; d++) {
			double t = ks[d] + kc[d] * C + kp[d] * 0.0;
			double step = t > HS_PERF_MIN_NS ? t : HS_PERF_MIN_NS;
			double f = bl[d] + (kp[d] * ctx + step * per + kl[d]);

			if (f < best) {
				best = f;
				want = (int)d;
			}
			fks[d] = (float)ks[d];
			fkc[d] = (float)kc[d];
			fkp[d] = (float)kp[d];
			fkl[d] = (float)kl[d];
			fbl[d] = (float)(bl[d] - base);
		}
		got = hs__sched_float_pick(fks, fkc, fkp, fkl, fbl, n, C, ctx,
					   per, base);
		if (got >= 0) {
			if (got != want)
				fail_msg(
					"case %d: floats picked %d, the double "
					"pass %d",
					it, got, want);
			decided++;
		} else {
			left++;
		}
	}
	assert_true(decided > 60000);
	assert_true(left > 1000);
}

/*
 * The sim executor times a step at a level it was told of, and a level
 * outside those (a device described with more levels than a device can
 * have, opened directly) at full speed, not from past its table: every
 * step of a run as the same step alone.
 */
static void test_sim_executor_levels(void **state)
{
	static const double lv[] = {300, 1.0, 200, 0.5};
	hs_device_t d = hs_test_device("a", 80, 1000, 100, 50, 300, 2, lv);
	hs_model_catalog_t *models = hs_test_models();
	hs_executor_opts_t opts = {.seed = 3, .noise = 0.1, .skew = 0.1};
	hs_step_t st = {.model = 0,
			.batch = 4,
			.ctx_tokens = 400,
			.prefill_tokens = 100,
			.seq = 7,
			.steps = 5,
			.until_ns = INT64_MAX};
	int64_t one[5], run[5], end;
	double e;
	void *ex;
	int level, i;

	d.n_levels = 12; /* more than HS_MAX_POWER_LEVELS */
	assert_int_equal(hs__executor_sim.open(&ex, &d, models, &opts), 0);
	for (level = -1; level <= 10; level++) {
		hs_step_t s1 = st;

		st.level = level;
		assert_int_equal(hs__executor_sim.run_steps(
					 ex, &st, 5, 0, INT64_MAX, run, &end),
				 5);
		s1.level = level;
		for (i = 0; i < 5; i++) {
			assert_int_equal(
				hs__executor_sim.run_step(ex, &s1, &one[i], &e),
				0);
			assert_int_equal(one[i], run[i]);
			assert_true(one[i] > 0);
			s1.seq++;
			s1.ctx_tokens += s1.batch;
			s1.prefill_tokens = 0;
		}
	}
	/* Level 1 is half as fast as level 0; past the table, full speed. */
	st.level = 1;
	hs__executor_sim.run_step(ex, &st, &one[0], &e);
	st.level = 9;
	hs__executor_sim.run_step(ex, &st, &one[1], &e);
	st.level = 0;
	hs__executor_sim.run_step(ex, &st, &one[2], &e);
	assert_int_equal(one[1], one[2]);
	assert_true(one[0] > one[2] * 3 / 2);
	hs__executor_sim.close(ex);
	hs_model_catalog_free(models);
}

/*
 * The sim executor times a run four steps at a time: a run of any length,
 * cut by until_ns at any step, is its steps as each alone, and writes
 * nothing past the n it was asked for. A step of 2^52 ns or more (a level
 * a billion times slow) is rounded as the others, past the vector's
 * rounding.
 */
static void test_sim_executor_runs(void **state)
{
	static const double lv[] = {300, 1.0, 200, 1e-9};
	hs_device_t d = hs_test_device("a", 80, 1000, 100, 50, 300, 2, lv);
	hs_model_catalog_t *models = hs_test_models();
	hs_executor_opts_t opts = {.seed = 5, .noise = 0.1, .skew = 0.1};
	hs_step_t st = {.model = 1,
			.batch = 3,
			.ctx_tokens = 100,
			.prefill_tokens = 50,
			.load_ns = 777,
			.seq = 5,
			.steps = 13,
			.until_ns = INT64_MAX};
	int64_t one[13], ends[13], run[13 + 4], end, at = 1000;
	double e;
	void *ex;
	uint32_t n, k, i;

	assert_int_equal(hs__executor_sim.open(&ex, &d, models, &opts), 0);
	for (i = 0; i < 13; i++) {
		hs_step_t s1 = st;

		s1.seq += i;
		s1.ctx_tokens += i * st.batch;
		if (i) {
			s1.prefill_tokens = 0;
			s1.load_ns = 0;
		}
		assert_int_equal(
			hs__executor_sim.run_step(ex, &s1, &one[i], &e), 0);
		at += one[i];
		ends[i] = at;
	}
	for (n = 1; n <= 13; n++)
		for (k = 0; k < 13; k++) {
			/* Until the end of step k, or just past it. */
			int64_t until = ends[k] + (int64_t)(n % 2);
			uint32_t want = k + 1 + n % 2;

			if (want > n)
				want = n;
			for (i = 0; i < 13 + 4; i++)
				run[i] = -1;
			assert_int_equal(hs__executor_sim.run_steps(ex, &st, n,
								    1000, until,
								    run, &end),
					 want);
			assert_int_equal(end, ends[want - 1]);
			for (i = 0; i < want; i++)
				assert_int_equal(run[i], one[i]);
			for (i = n; i < 13 + 4; i++)
				assert_int_equal(run[i], -1);
		}
	/* The same steps a billion times slower. */
	st.level = 1;
	assert_int_equal(
		hs__executor_sim.run_steps(ex, &st, 6, 0, INT64_MAX, run, &end),
		6);
	for (i = 0; i < 6; i++) {
		double slow = (double)(run[i] - (i ? 0 : st.load_ns)),
		       fast = (double)(one[i] - (i ? 0 : st.load_ns)) * 1e9;

		assert_true(slow >= 0x1p52);
		assert_true(fabs(slow - fast) <= 1e9);
	}
	hs__executor_sim.close(ex);
	hs_model_catalog_free(models);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buckets),
		cmocka_unit_test(test_bad_config),
		cmocka_unit_test(test_bad_devices),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_priority_and_aging),
		cmocka_unit_test(test_iteration_batching),
		cmocka_unit_test(test_kv_fit),
		cmocka_unit_test(test_governor),
		cmocka_unit_test(test_budget_drop),
		cmocka_unit_test(test_device_failure),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_cancel_queued_many),
		cmocka_unit_test(test_queue_order),
		cmocka_unit_test(test_done_order),
		cmocka_unit_test(test_job_tag),
		cmocka_unit_test(test_finish_scan),
		cmocka_unit_test(test_join_next_boundary),
		cmocka_unit_test(test_runs_quiet),
		cmocka_unit_test(test_power_wait_many),
		cmocka_unit_test(test_failure_requeue_order),
		cmocka_unit_test(test_cancel_last_step),
		cmocka_unit_test(test_max_wait),
		cmocka_unit_test(test_policy_rr),
		cmocka_unit_test(test_policy_eft),
		cmocka_unit_test(test_eft_float_agrees),
		cmocka_unit_test(test_eft_float_bound),
		cmocka_unit_test(test_policy_tpw),
		cmocka_unit_test(test_policy_fifo_shared),
		cmocka_unit_test(test_residency),
		cmocka_unit_test(test_perf_save_load),
		cmocka_unit_test(test_model_starvation),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_slots_grow),
		cmocka_unit_test(test_run_cut_by_arrival),
		cmocka_unit_test(test_run_job_progress),
		cmocka_unit_test(test_runs_review),
		cmocka_unit_test(test_cost_cache_follows_fit),
		cmocka_unit_test(test_sim_executor_levels),
		cmocka_unit_test(test_sim_executor_runs),
	};

	return cmocka_run_group_tests_name("sched", tests, NULL, NULL);
}
