/*
 * The cpu executor: the decoder of llm.c in plain C on a pool of worker
 * threads bound with hwloc to the cores of the device's cpuset (one NUMA
 * node). Thread 0 runs a step's forward pass; each of its phases (matmul
 * rows, tokens, attention heads) is shared out between all the threads.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <hwloc.h>

#include "internal.h"
#include "llm.h"

/* Polls before an idle thread sleeps: a phase of a step is a few to a few
 * hundred microseconds, so sleeping between phases would cost more than
 * they do; not spinning forever leaves the cores to the other executors
 * of the node between steps. */
#define SPIN_POLLS 4000

/* claim: the phase id in the high half, the next unclaimed item in the
 * low one. Id 0 is "no phase". */
#define ITEM_BITS 32
#define ITEM_MASK ((1ull << ITEM_BITS) - 1)

struct cpu_s;
typedef void (*job_fn)(struct cpu_s *c);

/* The KV caches of one model: one block per slot of its pool. */
struct kv_store {
	hs__kv_t **slot;
	size_t n;
	size_t cap;
};

/* The phase being run: fn over items [0, n), grain items per claim. */
struct phase {
	atomic_uintptr_t fn;
	atomic_uintptr_t arg;
	atomic_size_t n;
	atomic_size_t grain;
	atomic_size_t done; /* items finished */
};

/*
 * Thread 0 takes jobs (a step, a copy) from the caller and runs them; a
 * job hands its phases to every thread. Items are claimed a range at a
 * time, so a thread the OS has put aside holds no work back: the others
 * finish the phase without it. (Static shares and a barrier per phase
 * made a step wait a whole time slice whenever another process took one
 * of the cores.)
 */
typedef struct cpu_s {
	hs__llm_exec_t base; /* first: see llm.h */
	hs__llm_weights_t **weights; /* [n_models]; NULL: not runnable */
	struct kv_store *kv; /* [n_models] */
	hs__llm_scratch_t scratch;
	hs__llm_fwd_t fwd;

	hwloc_topology_t topo;
	unsigned n_threads;
	pthread_t *threads;
	unsigned n_started;
	bool bound; /* every thread is bound */

	pthread_mutex_t mu;
	pthread_cond_t cv_job;
	pthread_cond_t cv_done;
	job_fn job; /* for thread 0; NULL when done */
	bool quit;

	_Atomic uint64_t claim;
	struct phase cur;
	uint64_t phase_id; /* thread 0 only */
	atomic_uint wake; /* futex word: bumped by each phase and by stop */
	atomic_uint sleepers;
	atomic_bool stop;

	/* hs__cpu_stream_gbs */
	char *copy_src;
	char *copy_dst;
	size_t copy_bytes;
	size_t copy_chunk;
} cpu_t;

struct worker_arg {
	cpu_t *c;
	unsigned tid;
};

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static void futex_wait(atomic_uint *addr, unsigned val)
{
	syscall(SYS_futex, (unsigned *)addr, FUTEX_WAIT_PRIVATE, val, NULL,
		NULL, 0);
}

static void futex_wake_all(atomic_uint *addr)
{
	syscall(SYS_futex, (unsigned *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL,
		NULL, 0);
}

/*
 * Claim and run ranges of the current phase until none is left. The
 * phase's fields are read as in a seqlock, claim being its sequence: they
 * belong to the phase that claim names if claim still names it when the
 * claim succeeds, for thread 0 clears claim before it rewrites them. Every
 * range claimed is counted in done before thread 0 starts the next phase,
 * so no thread still works on a phase whose fields are rewritten.
 */
static void help(cpu_t *c)
{
	struct phase *p = &c->cur;

	for (;;) {
		uint64_t cl =
			atomic_load_explicit(&c->claim, memory_order_acquire);
		uint64_t id = cl >> ITEM_BITS, lo = cl & ITEM_MASK, hi;
		hs__llm_range_fn fn = (hs__llm_range_fn)atomic_load_explicit(
			&p->fn, memory_order_relaxed);
		void *arg = (void *)atomic_load_explicit(&p->arg,
							 memory_order_relaxed);
		size_t n = atomic_load_explicit(&p->n, memory_order_relaxed);
		size_t grain =
			atomic_load_explicit(&p->grain, memory_order_relaxed);

		atomic_thread_fence(memory_order_acquire);
		if (id == 0 || lo >= n)
			return;
		hi = lo + grain < n ? lo + grain : n;
		if (!atomic_compare_exchange_weak_explicit(
			    &c->claim, &cl, (id << ITEM_BITS) | hi,
			    memory_order_acq_rel, memory_order_relaxed))
			continue;
		fn(arg, lo, hi);
		atomic_fetch_add_explicit(&p->done, hi - lo,
					  memory_order_release);
	}
}

/* The pass's pfor, on thread 0: publish the phase, help, wait for it. */
static void pool_pfor(void *ud, size_t n, size_t grain, hs__llm_range_fn fn,
		      void *arg)
{
	cpu_t *c = ud;
	struct phase *p = &c->cur;
	uint64_t id;
	unsigned i;

	if (c->n_threads == 1 || n <= grain) {
		fn(arg, 0, n);
		return;
	}
	id = ++c->phase_id & ITEM_MASK;
	if (id == 0)
		id = ++c->phase_id & ITEM_MASK;
	/*
	 * Close the last phase before its fields change: a thread that read
	 * its exhausted claim and then one of the new fields would otherwise
	 * still win that claim (the seqlock writer's first increment).
	 */
	atomic_store_explicit(&c->claim, 0, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&p->fn, (uintptr_t)fn, memory_order_relaxed);
	atomic_store_explicit(&p->arg, (uintptr_t)arg, memory_order_relaxed);
	atomic_store_explicit(&p->n, n, memory_order_relaxed);
	atomic_store_explicit(&p->grain, grain, memory_order_relaxed);
	atomic_store_explicit(&p->done, 0, memory_order_relaxed);
	atomic_store_explicit(&c->claim, id << ITEM_BITS, memory_order_release);
	atomic_fetch_add(&c->wake, 1);
	if (atomic_load(&c->sleepers))
		futex_wake_all(&c->wake);

	help(c);
	for (i = 0; atomic_load_explicit(&p->done, memory_order_acquire) < n;
	     i++) {
		if (i < SPIN_POLLS)
			cpu_relax();
		else
			sched_yield();
	}
}

static void helper_loop(cpu_t *c)
{
	unsigned w, i;

	for (;;) {
		w = atomic_load(&c->wake);
		if (atomic_load(&c->stop))
			return;
		help(c);
		for (i = 0; i < SPIN_POLLS && atomic_load(&c->wake) == w; i++)
			cpu_relax();
		if (atomic_load(&c->wake) != w)
			continue;
		atomic_fetch_add(&c->sleepers, 1);
		while (atomic_load(&c->wake) == w)
			futex_wait(&c->wake, w);
		atomic_fetch_sub(&c->sleepers, 1);
	}
}

static void job_loop(cpu_t *c)
{
	job_fn fn;

	for (;;) {
		pthread_mutex_lock(&c->mu);
		while (!c->job && !c->quit)
			pthread_cond_wait(&c->cv_job, &c->mu);
		fn = c->job;
		pthread_mutex_unlock(&c->mu);
		if (!fn)
			return;

		fn(c);

		pthread_mutex_lock(&c->mu);
		c->job = NULL;
		pthread_cond_signal(&c->cv_done);
		pthread_mutex_unlock(&c->mu);
	}
}

static void *worker_main(void *p)
{
	struct worker_arg *a = p;
	cpu_t *c = a->c;
	unsigned tid = a->tid;

	hs__free(a);
	if (tid == 0)
		job_loop(c);
	else
		helper_loop(c);
	return NULL;
}

/* Run a job on the pool and wait for it. */
static void pool_run(cpu_t *c, job_fn fn)
{
	pthread_mutex_lock(&c->mu);
	c->job = fn;
	pthread_cond_signal(&c->cv_job);
	while (c->job)
		pthread_cond_wait(&c->cv_done, &c->mu);
	pthread_mutex_unlock(&c->mu);
}

static void pool_stop(cpu_t *c)
{
	unsigned i;

	pthread_mutex_lock(&c->mu);
	c->quit = true;
	pthread_cond_broadcast(&c->cv_job);
	pthread_mutex_unlock(&c->mu);
	atomic_store(&c->stop, true);
	atomic_fetch_add(&c->wake, 1);
	futex_wake_all(&c->wake);
	for (i = 0; i < c->n_started; i++)
		pthread_join(c->threads[i], NULL);
	c->n_started = 0;
}

/*
 * The cores of the device's cpuset, one per thread: a thread that stays
 * on its core keeps its share of the weights in that core's caches. An
 * empty or unreadable cpuset (a device described by hand) leaves the
 * threads unbound, one per online CPU.
 */
static int pool_plan(cpu_t *c, const hs_device_t *dev, unsigned want,
		     hwloc_bitmap_t **sets)
{
	hwloc_bitmap_t set = NULL;
	unsigned n_cores = 0, i;
	int err = 0;

	*sets = NULL;
	if (dev->cpuset[0] && hwloc_topology_init(&c->topo) == 0) {
		if (hwloc_topology_load(c->topo) < 0) {
			hwloc_topology_destroy(c->topo);
			c->topo = NULL;
		}
	}
	if (c->topo) {
		set = hwloc_bitmap_alloc();
		if (!set)
			return HS_ENOMEM;
		if (hwloc_bitmap_list_sscanf(set, dev->cpuset) < 0)
			hwloc_bitmap_zero(set);
		hwloc_bitmap_and(set, set,
				 hwloc_topology_get_topology_cpuset(c->topo));
		if (!hwloc_bitmap_iszero(set)) {
			int n = hwloc_get_nbobjs_inside_cpuset_by_type(
				c->topo, set, HWLOC_OBJ_CORE);

			n_cores = n > 0 ? (unsigned)n : 0;
		}
	}

	if (want)
		c->n_threads = want;
	else if (n_cores)
		c->n_threads = n_cores;
	else if (set && !hwloc_bitmap_iszero(set))
		c->n_threads = (unsigned)hwloc_bitmap_weight(set);
	else
		c->n_threads = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	if (c->n_threads == 0)
		c->n_threads = 1;

	if (!set || hwloc_bitmap_iszero(set))
		goto out_free_set;
	*sets = hs__calloc(c->n_threads, sizeof(**sets));
	if (!*sets) {
		err = HS_ENOMEM;
		goto out_free_set;
	}
	for (i = 0; i < c->n_threads; i++) {
		hwloc_bitmap_t s = hwloc_bitmap_dup(set);

		if (!s) {
			err = HS_ENOMEM;
			goto out_free_set;
		}
		if (n_cores) {
			hwloc_obj_t core = hwloc_get_obj_inside_cpuset_by_type(
				c->topo, set, HWLOC_OBJ_CORE, i % n_cores);

			if (core && core->cpuset)
				hwloc_bitmap_and(s, s, core->cpuset);
		}
		(*sets)[i] = s;
	}

out_free_set:
	hwloc_bitmap_free(set);
	return err;
}

static int pool_start(cpu_t *c, const hs_device_t *dev, unsigned want)
{
	hwloc_bitmap_t *sets;
	unsigned i;
	int err;

	err = pool_plan(c, dev, want, &sets);
	if (err)
		goto out_free_sets;
	c->threads = hs__calloc(c->n_threads, sizeof(*c->threads));
	if (!c->threads) {
		err = HS_ENOMEM;
		goto out_free_sets;
	}
	c->bound = sets != NULL;
	for (i = 0; i < c->n_threads; i++) {
		struct worker_arg *a = hs__malloc(sizeof(*a));

		if (!a) {
			err = HS_ENOMEM;
			goto out_free_sets;
		}
		a->c = c;
		a->tid = i;
		if (pthread_create(&c->threads[i], NULL, worker_main, a)) {
			hs__free(a);
			err = HS_EBACKEND;
			goto out_free_sets;
		}
		c->n_started++;
		/* Best effort: a container may forbid binding; the work is
		 * the same, only slower. */
		if (sets && hwloc_set_thread_cpubind(c->topo, c->threads[i],
						     sets[i], 0) < 0)
			c->bound = false;
	}

out_free_sets:
	if (sets) {
		for (i = 0; i < c->n_threads; i++)
			hwloc_bitmap_free(sets[i]);
		hs__free(sets);
	}
	return err;
}

/* Make room for every slot the model's pool has handed out. */
static int kv_reserve(cpu_t *c, uint32_t model)
{
	struct kv_store *kv = &c->kv[model];
	uint32_t need = c->base.pools[model].n_slots;
	size_t values = hs__llm_kv_slot_values(&c->base.shapes[model]);

	if (hs__grow((void **)&kv->slot, &kv->cap, need, sizeof(*kv->slot)))
		return HS_ENOMEM;
	while (kv->n < need) {
		kv->slot[kv->n] = hs__malloc(values * sizeof(hs__kv_t));
		if (!kv->slot[kv->n])
			return HS_ENOMEM;
		kv->n++;
	}
	return 0;
}

static int cpu_zero_slot(hs__llm_exec_t *ex, uint32_t model, uint32_t slot)
{
	cpu_t *c = (cpu_t *)ex;
	int err = kv_reserve(c, model);

	if (err)
		return err;
	memset(c->kv[model].slot[slot], 0,
	       hs__llm_kv_slot_values(&ex->shapes[model]) * sizeof(hs__kv_t));
	return 0;
}

static void cpu_close(void *exec)
{
	cpu_t *c = exec;
	size_t m, i;

	if (!c)
		return;
	pool_stop(c);
	for (m = 0; m < c->base.n_models; m++) {
		if (c->weights)
			hs__llm_weights_free(c->weights[m]);
		if (!c->kv)
			continue;
		for (i = 0; i < c->kv[m].n; i++)
			hs__free(c->kv[m].slot[i]);
		hs__free(c->kv[m].slot);
	}
	hs__free(c->weights);
	hs__free(c->kv);
	hs__llm_scratch_release(&c->scratch);
	hs__free(c->threads);
	hs__free(c->copy_src);
	hs__free(c->copy_dst);
	if (c->topo)
		hwloc_topology_destroy(c->topo);
	pthread_cond_destroy(&c->cv_job);
	pthread_cond_destroy(&c->cv_done);
	pthread_mutex_destroy(&c->mu);
	hs__llm_exec_release(&c->base);
	hs__free(c);
}

static int cpu_open(void **exec, const hs_device_t *dev,
		    const hs_model_catalog_t *models,
		    const hs_executor_opts_t *opts)
{
	cpu_t *c;
	size_t m;
	int err;

	*exec = NULL;
	c = hs__calloc(1, sizeof(*c));
	if (!c)
		return HS_ENOMEM;
	err = hs__llm_exec_init(&c->base, models, opts);
	if (err) {
		hs__free(c);
		return err;
	}
	c->base.zero_slot = cpu_zero_slot;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv_job, NULL);
	pthread_cond_init(&c->cv_done, NULL);

	c->weights = hs__calloc(c->base.n_models ? c->base.n_models : 1,
				sizeof(*c->weights));
	c->kv = hs__calloc(c->base.n_models ? c->base.n_models : 1,
			   sizeof(*c->kv));
	if (!c->weights || !c->kv) {
		err = HS_ENOMEM;
		goto out_close;
	}
	for (m = 0; m < c->base.n_models; m++) {
		if (!c->base.runnable[m])
			continue;
		err = hs__llm_weights_new(&c->weights[m],
					  hs_model_catalog_get(models, m));
		if (err)
			goto out_close;
	}
	err = pool_start(c, dev, opts->threads);
	if (!err)
		err = hs__executor_warm_up(&hs__executor_cpu, c);
	if (err)
		goto out_close;
	*exec = c;
	return 0;

out_close:
	cpu_close(c);
	return err;
}

static void forward_job(cpu_t *c)
{
	hs__llm_forward(&c->fwd);
}

static int cpu_run_step(void *exec, const hs_step_t *step, int64_t *duration_ns,
			double *energy_j)
{
	cpu_t *c = exec;
	int64_t t0 = hs__llm_now_ns();
	hs__llm_batch_t *b = &c->base.batch;
	int err;

	/* No RAPL reading yet: the core models the energy (a package
	 * counter delta over the step could go here for cpu devices with a
	 * RAPL sensor). */
	*energy_j = -1;
	err = hs__llm_exec_begin(&c->base, step);
	if (err)
		goto out;
	err = kv_reserve(c, step->model);
	if (!err)
		err = hs__llm_scratch_reserve(&c->scratch,
					      &c->base.shapes[step->model],
					      b->n_tokens, b->n_jobs);
	if (err) {
		c->base.failed = true;
		goto out;
	}
	c->fwd.w = c->weights[step->model];
	c->fwd.b = b;
	c->fwd.kv = c->kv[step->model].slot;
	c->fwd.s = &c->scratch;
	c->fwd.pfor = pool_pfor;
	c->fwd.ud = c;
	pool_run(c, forward_job);
	hs__llm_exec_end(&c->base);

out:
	*duration_ns = hs__llm_now_ns() - t0;
	return err;
}

static void cpu_release(void *exec, uint64_t job)
{
	hs__llm_exec_drop(exec, job);
}

/* Items are chunks of copy_chunk bytes. */
static void copy_range(void *arg, size_t lo, size_t hi)
{
	cpu_t *c = arg;
	size_t a = lo * c->copy_chunk, b = hi * c->copy_chunk;

	if (b > c->copy_bytes)
		b = c->copy_bytes;
	memcpy(c->copy_dst + a, c->copy_src + a, b - a);
}

static void touch_range(void *arg, size_t lo, size_t hi)
{
	cpu_t *c = arg;
	size_t a = lo * c->copy_chunk, b = hi * c->copy_chunk;

	if (b > c->copy_bytes)
		b = c->copy_bytes;
	memset(c->copy_src + a, 1, b - a);
	memset(c->copy_dst + a, 2, b - a);
}

static size_t copy_chunks(const cpu_t *c)
{
	return (c->copy_bytes + c->copy_chunk - 1) / c->copy_chunk;
}

static void copy_job(cpu_t *c)
{
	pool_pfor(c, copy_chunks(c), 1, copy_range, c);
}

static void touch_job(cpu_t *c)
{
	pool_pfor(c, copy_chunks(c), 1, touch_range, c);
}

int hs__cpu_stream_gbs(void *exec, size_t bytes, unsigned reps, double *gbs)
{
	cpu_t *c = exec;
	int64_t best = INT64_MAX, t;
	unsigned r;
	int err = 0;

	c->copy_src = hs__malloc(bytes);
	c->copy_dst = hs__malloc(bytes);
	if (!c->copy_src || !c->copy_dst) {
		err = HS_ENOMEM;
		goto out_free;
	}
	c->copy_bytes = bytes;
	/* Many chunks per thread, so that the copy is shared out evenly
	 * whoever runs when; each long enough to stream. */
	c->copy_chunk = (size_t)1 << 20;
	/* Pages touched by the pool's threads lie on the device's NUMA
	 * node, as its weights would. */
	pool_run(c, touch_job);
	for (r = 0; r < (reps ? reps : 1); r++) {
		t = hs__llm_now_ns();
		pool_run(c, copy_job);
		t = hs__llm_now_ns() - t;
		if (t < best)
			best = t;
	}
	*gbs = 2.0 * (double)bytes / (double)(best > 0 ? best : 1);

out_free:
	hs__free(c->copy_src);
	hs__free(c->copy_dst);
	c->copy_src = c->copy_dst = NULL;
	return err;
}

const struct hs_executor_ops hs__executor_cpu = {
	.name = "cpu",
	.open = cpu_open,
	.close = cpu_close,
	.run_step = cpu_run_step,
	.release = cpu_release,
};
