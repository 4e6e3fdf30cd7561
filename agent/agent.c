/*
 * The node agent's loop: the real-time driver of the scheduler core.
 *
 * Every event reaches the core from a libuv callback on the loop thread,
 * stamped with the monotonic clock. Steps run in one of two ways: sim
 * devices end their step on the loop's wake timer when the simulated time
 * has passed (the same executor the bench uses, but in real time); real
 * executors block, so each such device has a worker thread that runs the
 * step and wakes the loop through a uv_async_t.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "devices-internal.h"

#define TICK_MS 250

static const double ttft_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025,
				     0.05,  0.1,    0.25,  0.5,	 1,
				     2.5,   5,	    10,	   30,	 60};
static const double latency_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1,
					0.25,  0.5,  1,	    2.5,  5,
					10,    30,   60,    120,  300};

int64_t hs__agent_now(const hs__agent_t *a)
{
	return (int64_t)(uv_hrtime() - a->t0);
}

int64_t hs__unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_idle(uv_idle_t *h);

void hs__agent_kick(hs__agent_t *a)
{
	if (a->handles_up && !a->stopping &&
	    !uv_is_active((uv_handle_t *)&a->idle))
		uv_idle_start(&a->idle, on_idle);
}

void hs__agent_cancel_later(hs__agent_t *a, uint64_t id)
{
	size_t cap = a->cap_cancels;

	if (hs__grow((void **)&a->cancels, &cap, a->n_cancels + 1,
		     sizeof(*a->cancels)))
		return; /* the job then runs to its end: nothing is lost */
	a->cap_cancels = cap;
	a->cancels[a->n_cancels++] = id;
	hs__agent_kick(a);
}

/* ---- worker threads ------------------------------------------------------ */

static int io_prompt(void *ud, uint64_t job, const uint32_t **tokens,
		     uint32_t *n)
{
	hs__adev_t *d = ud;
	uint32_t i;

	for (i = 0; i < d->n_snap; i++)
		if (d->snap[i].id == job) {
			*tokens = d->snap[i].tokens;
			*n = d->snap[i].n;
			return 0;
		}
	return HS_ENOENT;
}

static void io_token(void *ud, uint64_t job, uint32_t token)
{
	hs__adev_t *d = ud;
	size_t cap = d->cap_out;

	/* A token that finds no memory is made up later (fill_tokens). */
	if (hs__grow((void **)&d->out, &cap, (size_t)d->n_out + 1,
		     sizeof(*d->out)))
		return;
	d->cap_out = (uint32_t)cap;
	d->out[d->n_out].id = job;
	d->out[d->n_out].token = token;
	d->n_out++;
}

static void worker(void *arg)
{
	hs__adev_t *d = arg;

	uv_mutex_lock(&d->mu);
	for (;;) {
		while (!d->quit && d->wstate != 1 && !d->n_release)
			uv_cond_wait(&d->cv, &d->mu);
		if (d->quit)
			break;
		while (d->n_release) {
			uint64_t id = d->release[--d->n_release];

			uv_mutex_unlock(&d->mu);
			d->ops->release(d->exec, id);
			uv_mutex_lock(&d->mu);
		}
		if (d->wstate == 1) {
			int64_t dur = 0;
			double energy = -1;
			int rc;

			uv_mutex_unlock(&d->mu);
			rc = d->ops->run_step(d->exec, &d->step, &dur, &energy);
			if (!rc && d->sleep_steps && dur > 0) {
				struct timespec ts = {
					.tv_sec = dur / 1000000000,
					.tv_nsec = dur % 1000000000,
				};

				while (nanosleep(&ts, &ts) && errno == EINTR)
					;
			}
			uv_mutex_lock(&d->mu);
			d->rc = rc;
			d->dur_ns = dur;
			d->energy_j = energy;
			d->wstate = 2;
			uv_async_send(&d->a->async);
		}
	}
	uv_mutex_unlock(&d->mu);
}

static void free_snaps(hs__adev_t *d)
{
	uint32_t i;

	for (i = 0; i < d->n_snap; i++)
		hs__free(d->snap[i].tokens);
	d->n_snap = 0;
}

/* Hand a step to its worker, with the joining jobs' tokens copied: the
 * worker must not read the job table. */
static void post_step(hs__agent_t *a, hs__adev_t *d)
{
	uint32_t i;

	d->dispatch = false;
	free_snaps(d);
	if (d->cap_snap < d->step.joining) {
		size_t cap = d->cap_snap;

		if (hs__grow((void **)&d->snap, &cap, d->step.joining,
			     sizeof(*d->snap)))
			goto out_post;
		d->cap_snap = (uint32_t)cap;
	}
	for (i = 0; i < d->step.joining; i++) {
		hs__ajob_t *job = hs__job_by_core(a, d->ids[i]);
		uint32_t n;

		if (!job)
			continue;
		n = job->n_prompt + job->n_out;
		d->snap[d->n_snap].tokens =
			hs__malloc((n ? n : 1) * sizeof(uint32_t));
		if (!d->snap[d->n_snap].tokens)
			break;
		memcpy(d->snap[d->n_snap].tokens, job->tokens,
		       n * sizeof(uint32_t));
		d->snap[d->n_snap].id = d->ids[i];
		d->snap[d->n_snap].n = n;
		d->n_snap++;
	}
out_post:
	d->n_out = 0;
	uv_mutex_lock(&d->mu);
	d->wstate = 1;
	uv_cond_signal(&d->cv);
	uv_mutex_unlock(&d->mu);
}

static void release_job(hs__agent_t *a, int device, uint64_t core_id)
{
	hs__adev_t *d;
	size_t cap;

	if (device < 0 || (size_t)device >= a->n_devs)
		return;
	d = &a->devs[device];
	if (!d->ops->release || d->failed)
		return;
	if (!d->threaded) {
		d->ops->release(d->exec, core_id);
		return;
	}
	uv_mutex_lock(&d->mu);
	cap = d->cap_release;
	if (!hs__grow((void **)&d->release, &cap, (size_t)d->n_release + 1,
		      sizeof(*d->release))) {
		d->cap_release = (uint32_t)cap;
		d->release[d->n_release++] = core_id;
		uv_cond_signal(&d->cv);
	}
	uv_mutex_unlock(&d->mu);
}

/* ---- the core's hooks ---------------------------------------------------- */

static void mark_running(hs__agent_t *a, hs__ajob_t *job, int device,
			 int64_t now)
{
	if (job->state == HS_JOB_QUEUED) {
		job->state = HS_JOB_RUNNING;
		a->running_by_model[job->model]++;
	}
	job->device = device;
	if (job->start_ns < 0) {
		job->start_ns = now;
		hs__hist_observe(&a->queue_wait,
				 (double)(now - job->arrival_ns) / 1e9);
	}
}

static void on_step_start(void *ud, const hs_step_t *st)
{
	hs__agent_t *a = ud;
	hs__adev_t *d = &a->devs[st->device];
	const hs_model_t *m = hs_model_catalog_get(a->models, st->model);
	uint64_t kv = 0;
	uint32_t i;

	if (d->cap_ids < st->batch) {
		size_t cap = d->cap_ids;

		/* Without room for the ids the step still runs; only the
		 * agent's view of which jobs run is incomplete. */
		if (!hs__grow((void **)&d->ids, &cap, st->batch,
			      sizeof(*d->ids)))
			d->cap_ids = (uint32_t)cap;
	}
	d->step = *st;
	if (d->step.batch > d->cap_ids)
		d->step.batch = d->cap_ids;
	if (d->step.joining > d->step.batch)
		d->step.joining = d->step.batch;
	memcpy(d->ids, st->jobs, d->step.batch * sizeof(*d->ids));
	d->step.jobs = d->ids;
	d->busy = true;
	d->started_ns = a->core_now;
	d->power_w = st->power_w;
	d->rc = 0;
	for (i = 0; i < d->step.batch; i++) {
		hs__ajob_t *job = hs__job_by_core(a, d->ids[i]);

		if (!job)
			continue;
		mark_running(a, job, st->device, a->core_now);
		kv += ((uint64_t)job->n_prompt + job->max_tokens) *
		      m->kv_bytes_per_token;
	}
	d->kv_bytes = kv;
	d->weight_bytes = m->weight_bytes;
	if (d->threaded) {
		d->dispatch = true;
		return;
	}
	/* The sim executor answers at once with the step's duration. */
	d->rc = d->ops->run_step(d->exec, &d->step, &d->dur_ns, &d->energy_j);
	d->due_ns = a->core_now + (d->rc ? 0 : d->dur_ns);
}

/* Give the client of a completion what it has not seen yet. */
static void progress(hs__agent_t *a, hs__ajob_t *job, uint32_t generated)
{
	hs__job_fill_tokens(a, job, generated);
	if (job->waiter)
		hs__api_job_progress(a, job);
}

static void on_job_event(void *ud, const hs_job_t *cj, hs_job_event_t ev)
{
	hs__agent_t *a = ud;
	hs__ajob_t *job = hs__job_by_core(a, cj->id);
	hs_job_state_t state;

	if (!job)
		return;
	switch (ev) {
	case HS_JOB_EV_FIRST_TOKEN:
		job->first_token_ns = cj->first_token_ns;
		hs__hist_observe(
			&a->ttft,
			(double)(cj->first_token_ns - job->arrival_ns) / 1e9);
		progress(a, job, cj->generated);
		return;
	case HS_JOB_EV_REQUEUED:
		if (job->state == HS_JOB_RUNNING) {
			job->state = HS_JOB_QUEUED;
			a->running_by_model[job->model]--;
		}
		return;
	case HS_JOB_EV_DONE:
		state = HS_JOB_DONE;
		a->finished_done++;
		break;
	case HS_JOB_EV_CANCELLED:
		state = HS_JOB_CANCELLED;
		a->finished_cancelled++;
		break;
	default:
		state = HS_JOB_FAILED;
		a->finished_failed++;
		break;
	}
	job->energy_j = cj->energy_j;
	job->done_ns = cj->done_ns;
	if (cj->device >= 0)
		job->device = cj->device;
	if (job->first_token_ns < 0 && cj->first_token_ns >= 0)
		job->first_token_ns = cj->first_token_ns;
	hs__job_fill_tokens(a, job, cj->generated);
	if (state == HS_JOB_DONE)
		hs__hist_observe(&a->latency,
				 (double)(cj->done_ns - job->arrival_ns) / 1e9);
	release_job(a, cj->device, cj->id);
	/* Journal first: the state in the end line is the final one. */
	{
		hs_job_state_t was = job->state;

		job->state = state;
		hs__journal_end(a, job);
		job->state = was;
	}
	hs__job_finish(a, job, state);
	if (job->waiter)
		hs__api_job_finished(a, job);
	if (a->draining && !a->live)
		hs__agent_kick(a);
}

static void on_timer(void *ud, int64_t when)
{
	hs__agent_t *a = ud;

	if (a->core_timer_at < 0 || when < a->core_timer_at ||
	    a->core_timer_at <= a->core_now)
		a->core_timer_at = when;
}

/* ---- after every call into the core -------------------------------------- */

static void on_wake(uv_timer_t *t);

static void rearm(hs__agent_t *a)
{
	int64_t next = INT64_MAX, now;
	uint64_t ms;
	size_t i;

	if (a->stopping)
		return;
	if (a->core_timer_at >= 0)
		next = a->core_timer_at;
	for (i = 0; i < a->n_devs; i++) {
		const hs__adev_t *d = &a->devs[i];

		if (d->busy && !d->threaded && d->due_ns < next)
			next = d->due_ns;
	}
	if (next == INT64_MAX) {
		uv_timer_stop(&a->wake);
		a->wake_at = -1;
		return;
	}
	if (next == a->wake_at && uv_is_active((uv_handle_t *)&a->wake))
		return;
	uv_update_time(&a->loop);
	now = hs__agent_now(a);
	ms = next <= now ? 0 : (uint64_t)((next - now + 999999) / 1000000);
	uv_timer_start(&a->wake, on_wake, ms, 0);
	a->wake_at = next;
}

static void after_core(hs__agent_t *a)
{
	size_t i;

	for (i = 0; i < a->n_devs; i++)
		if (a->devs[i].dispatch)
			post_step(a, &a->devs[i]);
	rearm(a);
}

int hs__agent_submit(hs__agent_t *a, hs__ajob_t *job, const hs_job_spec_t *spec,
		     hs_error_t *err)
{
	const hs_job_t *cj;
	uint64_t cid;
	int rc;

	a->core_now = hs__agent_now(a);
	job->arrival_ns = a->core_now;
	rc = hs_sched_submit(a->core, a->core_now, spec, &cid, err);
	if (rc) {
		after_core(a);
		return rc;
	}
	rc = hs__job_attach(a, job, cid);
	if (rc) {
		hs_sched_cancel(a->core, a->core_now, cid);
		after_core(a);
		return hs__error_set(err, rc, "job", 0, NULL, "out of memory");
	}
	/* It may have joined a batch inside the call, before the agent
	 * knew its id. */
	cj = hs_sched_job(a->core, cid);
	if (cj && cj->state == HS_JOB_RUNNING)
		mark_running(a, job, cj->device, a->core_now);
	after_core(a);
	return 0;
}

int hs__agent_cancel(hs__agent_t *a, hs__ajob_t *job)
{
	int rc;

	if (!job->core_id)
		return HS_ENOENT;
	a->core_now = hs__agent_now(a);
	rc = hs_sched_cancel(a->core, a->core_now, job->core_id);
	after_core(a);
	return rc;
}

int hs__agent_set_budget(hs__agent_t *a, double watts)
{
	int rc;

	a->core_now = hs__agent_now(a);
	rc = hs_sched_set_budget(a->core, a->core_now, watts);
	after_core(a);
	return rc;
}

/* A step ended (or its device failed). */
static void step_ended(hs__agent_t *a, hs__adev_t *d, int rc, int64_t dur,
		       double energy)
{
	uint32_t i, n = d->step.batch;

	a->core_now = hs__agent_now(a);
	d->busy = false;
	d->power_w = d->dev.idle_w;
	d->kv_bytes = 0;
	if (rc) {
		fprintf(stderr,
			"hetsched serve: device %d (%s) failed: %s; "
			"its jobs go to the others\n",
			d->index, d->dev.name, hs_strerror(rc));
		d->failed = true;
		hs_sched_device_failed(a->core, a->core_now, d->index);
		return;
	}
	/* The next step may start inside step_done and reuse d->ids. */
	if (a->cap_scratch < n) {
		size_t cap = a->cap_scratch;

		if (hs__grow((void **)&a->scratch, &cap, n,
			     sizeof(*a->scratch)))
			n = 0;
		else
			a->cap_scratch = (uint32_t)cap;
	}
	memcpy(a->scratch, d->ids, n * sizeof(*a->scratch));
	for (i = 0; i < d->n_out; i++) {
		hs__ajob_t *job = hs__job_by_core(a, d->out[i].id);

		if (job)
			hs__job_push_token(job, d->out[i].token);
	}
	d->n_out = 0;
	hs_sched_step_done(a->core, a->core_now, d->index, dur, energy);
	for (i = 0; i < n; i++) {
		hs__ajob_t *job = hs__job_by_core(a, a->scratch[i]);
		const hs_job_t *cj;

		if (!job)
			continue;
		cj = hs_sched_job(a->core, a->scratch[i]);
		if (cj)
			progress(a, job, cj->generated);
	}
}

static void on_wake(uv_timer_t *t)
{
	hs__agent_t *a = t->data;
	int64_t now = hs__agent_now(a);
	size_t i;

	a->wake_at = -1;
	for (i = 0; i < a->n_devs; i++) {
		hs__adev_t *d = &a->devs[i];

		if (d->busy && !d->threaded && d->due_ns <= now)
			step_ended(a, d, d->rc, d->dur_ns, d->energy_j);
	}
	if (a->core_timer_at >= 0 && a->core_timer_at <= now) {
		a->core_timer_at = -1;
		a->core_now = now;
		hs_sched_timer(a->core, now);
	}
	after_core(a);
}

static void on_async(uv_async_t *h)
{
	hs__agent_t *a = h->data;
	size_t i;

	for (i = 0; i < a->n_devs; i++) {
		hs__adev_t *d = &a->devs[i];
		int64_t dur;
		double energy;
		int rc, st;

		if (!d->threaded || !d->busy)
			continue;
		uv_mutex_lock(&d->mu);
		st = d->wstate;
		rc = d->rc;
		dur = d->dur_ns;
		energy = d->energy_j;
		if (st == 2)
			d->wstate = 0;
		uv_mutex_unlock(&d->mu);
		if (st == 2)
			step_ended(a, d, rc, dur, energy);
	}
	after_core(a);
}

/* ---- idle work, ticks, signals, stopping --------------------------------- */

static void stop(hs__agent_t *a);

static void on_idle(uv_idle_t *h)
{
	hs__agent_t *a = h->data;
	size_t i;

	/* Cancels may queue more cancels (through hooks): take a batch. */
	while (a->n_cancels) {
		size_t n = a->n_cancels;
		uint64_t *ids = a->cancels;

		a->cancels = NULL;
		a->cap_cancels = 0;
		a->n_cancels = 0;
		for (i = 0; i < n; i++) {
			hs__ajob_t *job = hs__job_find(a, ids[i]);

			if (job && job->core_id)
				hs__agent_cancel(a, job);
		}
		hs__free(ids);
	}
	while (!hs__list_empty(&a->resume) && !a->stopping)
		hs__http_resume(hs__container_of(a->resume.next, hs__conn_t,
						 resume_node));
	hs__journal_flush(a);
	if (a->draining && !a->live) {
		stop(a);
		return;
	}
	if (!a->n_cancels && hs__list_empty(&a->resume))
		uv_idle_stop(h);
}

static void on_check(uv_check_t *h)
{
	hs__journal_flush(h->data);
}

static void sample(hs__agent_t *a)
{
	int64_t now = hs__agent_now(a);
	size_t i, slot = a->sample_at;

	for (i = 0; i < a->n_devs; i++) {
		hs__adev_t *d = &a->devs[i];
		hs_device_stats_t ds;
		double j, w;

		hs_sched_device_stats(a->core, (int)i, &ds);
		d->busy_samples[slot] =
			ds.busy_ns + (d->busy ? now - d->started_ns : 0);
		if (d->dev.sensor == HS_SENSOR_HWMON &&
		    !hs__sensor_read_power_w(&d->dev, &w)) {
			d->measured_w = w;
		} else if (d->dev.sensor == HS_SENSOR_RAPL &&
			   !hs__sensor_read_energy_j(&d->dev, &j)) {
			if (d->rapl_last_ns && j >= d->rapl_last_j)
				d->measured_w = (j - d->rapl_last_j) * 1e9 /
						(double)(now - d->rapl_last_ns);
			d->rapl_last_j = j;
			d->rapl_last_ns = now;
		}
	}
	a->sample_ns[slot] = now;
	a->sample_at = (slot + 1) % HS__SAMPLES;
	if (a->n_samples < HS__SAMPLES)
		a->n_samples++;
}

double hs__device_utilisation(const hs__agent_t *a, const hs__adev_t *d)
{
	size_t last, first;
	double span;

	if (a->n_samples < 2)
		return d->busy ? 1 : 0;
	last = (a->sample_at + HS__SAMPLES - 1) % HS__SAMPLES;
	first = a->n_samples < HS__SAMPLES ? 0 : a->sample_at;
	span = (double)(a->sample_ns[last] - a->sample_ns[first]);
	if (span <= 0)
		return 0;
	span = (double)(d->busy_samples[last] - d->busy_samples[first]) / span;
	return span < 0 ? 0 : span > 1 ? 1 : span;
}

static void on_tick(uv_timer_t *t)
{
	hs__agent_t *a = t->data;

	hs__http_sweep(a);
	sample(a);
	if (a->draining &&
	    (uint64_t)hs__unix_ms() >= (uint64_t)a->drain_deadline_ms) {
		if (a->live)
			fprintf(stderr,
				"hetsched serve: drain timeout: %llu "
				"jobs left in the journal for the "
				"next start\n",
				(unsigned long long)a->live);
		stop(a);
	}
}

static void on_signal(uv_signal_t *h, int signum)
{
	hs__agent_t *a = h->data;

	if (a->draining) {
		fprintf(stderr, "hetsched serve: %s again: stopping now\n",
			strsignal(signum));
		stop(a);
		return;
	}
	a->draining = true;
	a->drain_deadline_ms =
		hs__unix_ms() + (int64_t)(a->cfg->drain_timeout * 1000);
	fprintf(stderr, "hetsched serve: %s: draining (%llu jobs live)\n",
		strsignal(signum), (unsigned long long)a->live);
	hs__agent_kick(a);
}

static void stop_workers(hs__agent_t *a)
{
	size_t i;

	for (i = 0; i < a->n_devs; i++) {
		hs__adev_t *d = &a->devs[i];

		if (!d->thread_started)
			continue;
		uv_mutex_lock(&d->mu);
		d->quit = true;
		uv_cond_signal(&d->cv);
		uv_mutex_unlock(&d->mu);
		/* A running step ends first; its jobs stay in the journal. */
		uv_thread_join(&d->thread);
		d->thread_started = false;
	}
}

static void close_handle(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void stop(hs__agent_t *a)
{
	hs__list_t *n, *next;

	if (a->stopping)
		return;
	a->stopping = true;
	for (n = a->conns.next; n != &a->conns; n = next) {
		next = n->next;
		hs__http_close(hs__container_of(n, hs__conn_t, node));
	}
	stop_workers(a);
	/* Connections close with their own callback; the rest with none. */
	uv_walk(&a->loop, close_handle, NULL);
}

/* ---- start ------------------------------------------------------------------
 */

static int mkdir_p(const char *path)
{
	char buf[4096], *p;

	if (strlen(path) >= sizeof(buf))
		return HS_ERANGE;
	strcpy(buf, path);
	for (p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) && errno != EEXIST)
			return HS_EIO;
		*p = '/';
	}
	if (mkdir(buf, 0700) && errno != EEXIST)
		return HS_EIO;
	return 0;
}

static int read_token(hs__agent_t *a, const char *path, hs_error_t *err)
{
	size_t n;
	FILE *f;

	f = fopen(path, "r");
	if (!f)
		return hs__error_set(err, HS_EIO, path, 0, NULL,
				     "cannot read the token file: %s",
				     strerror(errno));
	n = fread(a->token, 1, sizeof(a->token) - 1, f);
	fclose(f);
	a->token[n] = '\0';
	while (n && (a->token[n - 1] == '\n' || a->token[n - 1] == '\r' ||
		     a->token[n - 1] == ' ' || a->token[n - 1] == '\t'))
		a->token[--n] = '\0';
	if (!n || strpbrk(a->token, " \t\r\n"))
		return hs__error_set(err, HS_EINVAL, path, 0, NULL,
				     "the token file must hold one token "
				     "(no spaces)");
	a->token_len = n;
	return 0;
}

/* The devices the core schedules: every device with a profile and an
 * executor; sim ones for a fleet or a topology. */
static int pick_devices(hs__agent_t *a, hs_device_t **out, size_t *n_out,
			hs_error_t *err)
{
	const hs__agent_config_t *cfg = a->cfg;
	hs_discover_opts_t opts = {.profiles = a->profiles,
				   .no_opencl = cfg->no_opencl};
	hs_device_t *devs;
	size_t i, k = 0, n;
	int rc;

	a->sim = cfg->fleet || cfg->topology;
	opts.inventory = cfg->fleet;
	opts.topology_xml = cfg->topology;
	if (a->sim)
		opts.no_opencl = true;
	rc = hs_node_discover(&a->node, &opts, err);
	if (rc)
		return rc;
	n = hs_node_device_count(a->node);
	devs = hs__calloc(n ? n : 1, sizeof(*devs));
	a->node_index = hs__calloc(n ? n : 1, sizeof(*a->node_index));
	if (!devs || !a->node_index) {
		hs__free(devs);
		return hs__error_set(err, HS_ENOMEM, NULL, 0, NULL,
				     "out of memory");
	}
	for (i = 0; i < n; i++) {
		const hs_device_t *d = hs_node_device(a->node, i);

		if (!d->profile[0]) {
			fprintf(stderr,
				"hetsched serve: %s has no device "
				"profile; not used\n",
				d->name);
			continue;
		}
		devs[k] = *d;
		if (a->sim) {
			devs[k].backend = HS_BACKEND_SIM;
			devs[k].sensor = HS_SENSOR_NONE;
		}
		devs[k].id = (int)k;
		a->node_index[k] = (int)i;
		k++;
	}
	if (!k) {
		hs__free(devs);
		return hs__error_set(err, HS_ENODEV, "devices", 0, NULL,
				     "no device to run jobs on%s",
				     a->sim ? ""
					    : " (serve sim devices with "
					      "--fleet or --topology)");
	}
	*out = devs;
	*n_out = k;
	return 0;
}

static int open_devices(hs__agent_t *a, const hs_device_t *devs, size_t n,
			hs_error_t *err)
{
	const hs__agent_config_t *cfg = a->cfg;
	bool threads = !strcmp(cfg->sim_mode, "thread");
	size_t i;
	int rc;

	a->devs = hs__calloc(n, sizeof(*a->devs));
	if (!a->devs)
		return hs__error_set(err, HS_ENOMEM, NULL, 0, NULL,
				     "out of memory");
	a->n_devs = n;
	for (i = 0; i < n; i++) {
		hs__adev_t *d = &a->devs[i];
		hs_executor_opts_t eo = {.seed = cfg->seed,
					 .noise = cfg->noise,
					 .skew = cfg->skew,
					 .kernel_dir = cfg->kernel_dir,
					 .threads = (unsigned)cfg->cpu_threads};

		d->a = a;
		d->index = (int)i;
		d->dev = devs[i];
		d->power_w = d->dev.idle_w;
		d->measured_w = -1;
		d->io.prompt = io_prompt;
		d->io.token = io_token;
		d->io.ud = d;
		eo.io = &d->io;
		d->ops = hs__executor_for(&d->dev);
		d->threaded = !a->sim || threads;
		d->sleep_steps = a->sim && threads;
		rc = d->ops->open(&d->exec, &d->dev, a->models, &eo);
		if (rc)
			return hs__error_set(err, rc, d->dev.name, 0, NULL,
					     "cannot open its %s executor: %s",
					     d->ops->name, hs_strerror(rc));
		if (!d->threaded)
			continue;
		if (uv_mutex_init(&d->mu) || uv_cond_init(&d->cv)) {
			d->ops->close(d->exec);
			d->exec = NULL;
			return hs__error_set(err, HS_ENOMEM, NULL, 0, NULL,
					     "cannot create a mutex");
		}
		if (uv_thread_create(&d->thread, worker, d)) {
			uv_cond_destroy(&d->cv);
			uv_mutex_destroy(&d->mu);
			d->ops->close(d->exec);
			d->exec = NULL;
			return hs__error_set(err, HS_EIO, NULL, 0, NULL,
					     "cannot start a worker thread");
		}
		d->thread_started = true;
	}
	return 0;
}

static int lock_state(hs__agent_t *a, const char *dir, hs_error_t *err)
{
	char path[4200];

	snprintf(path, sizeof(path), "%s/lock", dir);
	a->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (a->lock_fd < 0)
		return hs__error_set(err, HS_EIO, path, 0, NULL, "%s",
				     strerror(errno));
	if (flock(a->lock_fd, LOCK_EX | LOCK_NB))
		return hs__error_set(err, HS_ESTATE, path, 0, NULL,
				     "another agent uses this state "
				     "directory");
	return 0;
}

/* Queue the journal's pending jobs again, oldest first. */
static void resubmit(hs__agent_t *a, hs__ajob_t **pending, size_t n)
{
	int64_t now_ms = hs__unix_ms();
	size_t i;

	for (i = 0; i < n; i++) {
		hs__ajob_t *job = pending[i];
		hs_job_spec_t spec = {.model = job->model,
				      .ctx_tokens = job->n_prompt,
				      .gen_tokens = job->max_tokens,
				      .priority = job->priority,
				      .deadline_ns = -1};
		hs_error_t err;

		if (job->deadline_ms >= 0)
			spec.deadline_ns =
				hs__agent_now(a) +
				(job->deadline_ms > now_ms
					 ? (job->deadline_ms - now_ms) * 1000000
					 : 0);
		/* Tokens made before the restart are made again. */
		job->n_out = 0;
		if (!hs__agent_submit(a, job, &spec, &err))
			continue;
		fprintf(stderr,
			"hetsched serve: journal: job j-%llu cannot "
			"run here any more: %s\n",
			(unsigned long long)job->id, err.text);
		if (hs__map_put(&a->by_id, job->id, job)) {
			hs__job_free(job);
			continue;
		}
		job->state = HS_JOB_FAILED;
		hs__journal_end(a, job);
		hs__job_finish(a, job, HS_JOB_FAILED);
	}
}

static void init_handles(hs__agent_t *a)
{
	uv_timer_init(&a->loop, &a->wake);
	uv_timer_init(&a->loop, &a->tick);
	uv_idle_init(&a->loop, &a->idle);
	uv_check_init(&a->loop, &a->check);
	uv_timer_init(&a->loop, &a->journal.sync_timer);
	uv_signal_init(&a->loop, &a->sigterm);
	uv_signal_init(&a->loop, &a->sigint);
	a->wake.data = a->tick.data = a->idle.data = a->check.data = a;
	a->journal.sync_timer.data = a;
	a->sigterm.data = a->sigint.data = a->async.data = a;
	a->handles_up = true;
}

static void free_all(hs__agent_t *a)
{
	size_t i;

	for (i = 0; i < a->by_id.cap; i++)
		if (a->by_id.keys[i])
			hs__job_free(a->by_id.vals[i]);
	hs__map_release(&a->by_id);
	for (i = 0; a->devs && i < a->n_devs; i++) {
		hs__adev_t *d = &a->devs[i];

		if (d->exec)
			d->ops->close(d->exec);
		if (d->threaded && d->ops) {
			uv_cond_destroy(&d->cv);
			uv_mutex_destroy(&d->mu);
		}
		free_snaps(d);
		hs__free(d->snap);
		hs__free(d->out);
		hs__free(d->release);
		hs__free(d->ids);
	}
	hs__free(a->devs);
	hs_sched_free(a->core);
	hs__free(a->by_slot);
	hs__free(a->cancels);
	hs__free(a->scratch);
	hs__free(a->live_by_model);
	hs__free(a->running_by_model);
	hs__free(a->node_index);
	hs_node_free(a->node);
	hs_model_catalog_free(a->models);
	hs_profile_catalog_free(a->profiles);
	hs__hist_release(&a->ttft);
	hs__hist_release(&a->latency);
	hs__hist_release(&a->queue_wait);
	hs__strbuf_release(&a->out);
	if (a->lock_fd >= 0)
		close(a->lock_fd);
	hs__free(a);
}

int hs__agent_run(const hs__agent_config_t *cfg, hs_error_t *err)
{
	hs_sched_hooks_t hooks = {.step_start = on_step_start,
				  .job_event = on_job_event,
				  .timer = on_timer};
	hs__ajob_t **pending = NULL;
	hs_device_t *devs = NULL;
	char path[4200];
	size_t n_devs = 0, n_pending = 0, n_models;
	bool loop_up = false;
	hs__agent_t *a;
	int rc;

	hs__error_clear(err);
	a = hs__calloc(1, sizeof(*a));
	if (!a)
		return hs__error_set(err, HS_ENOMEM, NULL, 0, NULL,
				     "out of memory");
	a->cfg = cfg;
	a->t0 = uv_hrtime() - 1;
	a->started_ms = hs__unix_ms();
	a->core_timer_at = -1;
	a->wake_at = -1;
	a->lock_fd = -1;
	a->journal.fd = -1;
	hs__list_init(&a->finished);
	hs__list_init(&a->conns);
	hs__list_init(&a->resume);
	hs__list_init(&a->commit_waiters);
	hs__hist_init(&a->ttft, ttft_bounds, HS_ARRAY_SIZE(ttft_bounds));
	hs__hist_init(&a->latency, latency_bounds,
		      HS_ARRAY_SIZE(latency_bounds));
	hs__hist_init(&a->queue_wait, ttft_bounds, HS_ARRAY_SIZE(ttft_bounds));
	if (!a->ttft.counts || !a->latency.counts || !a->queue_wait.counts) {
		rc = hs__error_set(err, HS_ENOMEM, NULL, 0, NULL,
				   "out of memory");
		goto out_free;
	}

	if ((rc = hs_model_catalog_load(&a->models, cfg->models, err)) ||
	    (rc = hs_profile_catalog_load(&a->profiles, cfg->catalog, err)))
		goto out_free;
	n_models = hs_model_catalog_count(a->models);
	a->live_by_model = hs__calloc(n_models + 1, sizeof(uint64_t));
	a->running_by_model = hs__calloc(n_models + 1, sizeof(uint64_t));
	if (!a->live_by_model || !a->running_by_model) {
		rc = hs__error_set(err, HS_ENOMEM, NULL, 0, NULL,
				   "out of memory");
		goto out_free;
	}
	if (cfg->token_file && (rc = read_token(a, cfg->token_file, err)))
		goto out_free;
	if ((rc = pick_devices(a, &devs, &n_devs, err)))
		goto out_free;
	if (mkdir_p(cfg->state_dir)) {
		rc = hs__error_set(err, HS_EIO, cfg->state_dir, 0, NULL,
				   "cannot create the state directory: %s",
				   strerror(errno));
		goto out_free;
	}
	if ((rc = lock_state(a, cfg->state_dir, err)))
		goto out_free;

	hs_sched_config_init(&a->sc);
	a->sc.policy = cfg->policy;
	a->sc.max_batch_jobs = (uint32_t)cfg->max_batch;
	a->sc.max_wait_ns = (int64_t)(cfg->max_wait_ms * 1e6);
	a->sc.power_lease_ns = (int64_t)(cfg->power_lease_ms * 1e6);
	a->sc.power_budget_w = cfg->power_budget;
	hooks.ud = a;
	if ((rc = hs_sched_new(&a->core, &a->sc, a->models, devs, n_devs,
			       &hooks, err)))
		goto out_free;
	snprintf(path, sizeof(path), "%s/perf.json", cfg->state_dir);
	if (!access(path, R_OK)) {
		hs_error_t perr;

		if (hs_sched_perf_load(a->core, path, &perr))
			fprintf(stderr, "hetsched serve: %s: %s (ignored)\n",
				path, perr.text);
	}

	if ((rc = uv_loop_init(&a->loop))) {
		rc = hs__error_set(err, HS_EIO, NULL, 0, NULL, "libuv: %s",
				   uv_strerror(rc));
		goto out_free;
	}
	loop_up = true;
	if (uv_async_init(&a->loop, &a->async, on_async)) {
		rc = hs__error_set(err, HS_EIO, NULL, 0, NULL,
				   "cannot create an async handle");
		goto out_loop;
	}
	init_handles(a);
	if ((rc = open_devices(a, devs, n_devs, err)))
		goto out_loop;

	if (!cfg->journal)
		snprintf(path, sizeof(path), "%s/journal.jsonl",
			 cfg->state_dir);
	else
		hs__strlcpy(path, cfg->journal, sizeof(path));
	rc = hs__journal_open(a, strcmp(path, "off") ? path : NULL, &pending,
			      &n_pending, err);
	if (rc)
		goto out_loop;
	/* A budget set over the API before the restart: the lower of it and
	 * the configured one holds (0: none), so that neither authority's
	 * cap is ever exceeded. */
	if (a->api_budget) {
		double w = a->api_budget_w, c = cfg->power_budget;

		if (w <= 0 || (c > 0 && c < w))
			w = c;
		if (w != cfg->power_budget)
			hs__agent_set_budget(a, w);
		fprintf(stderr,
			"hetsched serve: journal: budget %.0f W set over the "
			"API; %.0f W in force (0: none)\n",
			a->api_budget_w, w);
	}
	resubmit(a, pending, n_pending);
	hs__free(pending);
	if (n_pending)
		fprintf(stderr,
			"hetsched serve: journal: %zu accepted jobs "
			"queued again\n",
			n_pending);

	if ((rc = hs__http_listen(a, err)))
		goto out_loop;
	uv_timer_start(&a->tick, on_tick, TICK_MS, TICK_MS);
	uv_check_start(&a->check, on_check);
	uv_signal_start(&a->sigterm, on_signal, SIGTERM);
	uv_signal_start(&a->sigint, on_signal, SIGINT);
	signal(SIGPIPE, SIG_IGN);
	rearm(a);
	printf("listening on %s\n", a->listen_addr);
	fflush(stdout);

	uv_run(&a->loop, UV_RUN_DEFAULT);
	rc = a->fatal;

	snprintf(path, sizeof(path), "%s/perf.json", cfg->state_dir);
	if (hs_sched_perf_save(a->core, path, NULL))
		fprintf(stderr, "hetsched serve: cannot save %s\n", path);
out_loop:
	if (!a->stopping)
		stop(a);
	uv_run(&a->loop, UV_RUN_DEFAULT);
	uv_loop_close(&a->loop);
	hs__journal_close(a);
	(void)loop_up;
out_free:
	hs__free(devs);
	free_all(a);
	return rc;
}
