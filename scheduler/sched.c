/*
 * The scheduler core: queues, batches, the power governor and the policy
 * calls, as a state machine driven by timestamped events.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sched-internal.h"

#define NONE UINT32_MAX
#define MAX_MODELS 64
#define MAX_PRIORITY 1000
#define POWER_EPS 1e-6

/*
 * Four lanes a vector (doubles, or 64-bit integers). The lanes must round
 * as the scalar code does:
 * GCC contracts nothing into fused multiply-adds in ISO C mode, and clang
 * is told the same for this file.
 */
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
typedef double v4d __attribute__((vector_size(32)));
typedef int64_t v4i __attribute__((vector_size(32)));

/* ---- configuration ---------------------------------------------------- */

void hs_sched_config_init(hs_sched_config_t *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->policy = "eft";
	cfg->max_batch_jobs = 32;
	cfg->max_step_tokens = 8192;
	cfg->min_batch_jobs = 1;
	cfg->max_wait_ns = 50000000;
	cfg->aging_ns = 1000000000;
	cfg->kv_reserve = 0.05;
	cfg->lp_epoch_ns = 1000000000;
	cfg->power_lease_ns = 1000000000;
}

static int check_config(hs_sched_config_t *c, hs_error_t *err)
{
	unsigned i;

#define BAD(field, ...) \
	hs__error_set(err, HS_EINVAL, "scheduler config", 0, field, __VA_ARGS__)
	if (c->max_batch_jobs < 1 || c->max_batch_jobs > HS__MAX_BATCH)
		return BAD("max_batch_jobs", "must be 1 to %u, is %u",
			   HS__MAX_BATCH, c->max_batch_jobs);
	if (c->max_step_tokens < 1)
		return BAD("max_step_tokens", "must be at least 1");
	if (c->min_batch_jobs < 1 || c->min_batch_jobs > c->max_batch_jobs)
		return BAD("min_batch_jobs", "must be 1 to max_batch_jobs (%u)",
			   c->max_batch_jobs);
	if (c->max_wait_ns < 0)
		return BAD("max_wait_ns", "must not be negative");
	if (c->aging_ns < 1000)
		return BAD("aging_ns", "must be at least 1 us");
	if (!(c->kv_reserve >= 0 && c->kv_reserve < 1))
		return BAD("kv_reserve", "must be in [0, 1)");
	if (c->lp_epoch_ns < 1000000)
		return BAD("lp_epoch_ns", "must be at least 1 ms");
	if (c->power_lease_ns < 0)
		return BAD("power_lease_ns", "must not be negative");
	if (c->n_buckets > HS_MAX_BUCKETS)
		return BAD("bucket_edges", "at most %d buckets",
			   HS_MAX_BUCKETS);
	for (i = 0; i < c->n_buckets; i++)
		if (c->bucket_edges[i] == 0 ||
		    (i && c->bucket_edges[i] <= c->bucket_edges[i - 1]))
			return BAD("bucket_edges",
				   "edges must be positive and ascending "
				   "(edge %u is %u)",
				   i, c->bucket_edges[i]);
	if (c->n_buckets == 0) {
		/* Powers of two from 128 to 1M tokens. */
		for (i = 0; i < 14; i++)
			c->bucket_edges[i] = 128u << i;
		c->n_buckets = 14;
	}
	if (c->power_budget_w < 0)
		c->power_budget_w = 0;
#undef BAD
	return 0;
}

/* ---- small helpers ---------------------------------------------------- */

static inline hs__jobrec_t *rec_of(const hs_sched_t *s, uint32_t slot)
{
	return &s->jobs[slot];
}

/* Bring a job's record in, both lines of it (128 bytes from a line
 * boundary), for reading and writing. */
static inline void rec_prefetch(const hs_sched_t *s, uint32_t slot)
{
	const char *c = (const char *)rec_of(s, slot);

	__builtin_prefetch(c, 1);
	__builtin_prefetch(c + sizeof(hs__jobrec_t) - 1, 1);
}

static inline uint32_t slot_of_id(uint64_t id)
{
	return (uint32_t)(id & 0xffffffffu);
}

static inline uint32_t qindex(const hs_sched_t *s, int owner, uint32_t m,
			      unsigned b)
{
	return ((uint32_t)(owner + 1) * s->n_models + m) * s->n_buckets + b;
}

static inline int queue_owner(const hs_sched_t *s, uint32_t q)
{
	return s->queues[q].owner;
}

/* The first edge >= ctx among all but the last; longer contexts go to
 * the last bucket. A binary search, for the table below. */
static unsigned bucket_search(const hs_sched_t *s, uint32_t ctx)
{
	unsigned lo = 0, hi = s->n_buckets - 1;

	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;

		if (s->cfg.bucket_edges[mid] < ctx)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* For each bit length of a context, the buckets its contexts may fall
 * in: [bucket_lo, bucket_hi]. */
static void bucket_table(hs_sched_t *s)
{
	unsigned l;

	for (l = 0; l <= 32; l++) {
		uint32_t least = l ? 1u << (l - 1) : 0,
			 most = l == 32 ? UINT32_MAX : (1u << l) - 1;

		s->bucket_lo[l] = (uint8_t)bucket_search(s, least);
		s->bucket_hi[l] = (uint8_t)bucket_search(s, most);
	}
}

/*
 * The bucket of a context, from the table of its bit length: no search
 * that waits on load after load. With edges at powers of two a length
 * spans one edge at most, and the one compare goes the same way for
 * nearly every context.
 */
unsigned hs__sched_bucket_of(const hs_sched_t *s, uint32_t ctx)
{
	unsigned l = ctx ? 32 - (unsigned)__builtin_clz(ctx) : 0;
	unsigned b = s->bucket_lo[l], hi = s->bucket_hi[l];

	while (b < hi && s->cfg.bucket_edges[b] < ctx)
		b++;
	return b;
}

/* Smaller rank goes first: earlier arrival, higher priority. A job gains
 * one priority level per aging_ns of waiting, so between two jobs the
 * order never changes while they wait: the rank is fixed at arrival. */
static int64_t job_rank(const hs_sched_t *s, const hs_job_t *j)
{
	return j->arrival_ns - (int64_t)j->priority * s->cfg.aging_ns;
}

static double level_speed(const hs__dev_t *dv, int level)
{
	if (dv->d.n_levels == 0)
		return 1.0;
	return dv->d.levels[level].speed;
}

static double level_cap(const hs__dev_t *dv, int level)
{
	if (dv->d.n_levels == 0)
		return dv->d.max_w;
	return dv->d.levels[level].cap_w;
}

static unsigned n_levels(const hs__dev_t *dv)
{
	return dv->d.n_levels ? dv->d.n_levels : 1;
}

static void set_idle(hs_sched_t *s, uint32_t d, bool idle)
{
	hs__bit_set(s->idle, d, idle);
}

/* Whether device d has work of its own (see kick). */
static void set_work(hs_sched_t *s, uint32_t d, bool work)
{
	hs__bit_set(s->work, d, work);
}

/* Model m has jobs waiting and no device running it: bit m of unserved,
 * kept as the counts change, so that the starvation check looks at no
 * model when every waiting one is served. */
static inline void unserved_update(hs_sched_t *s, uint32_t m)
{
	uint64_t bit = 1ull << m;

	if (s->model_queued[m] && !s->model_devices[m])
		s->unserved |= bit;
	else
		s->unserved &= ~bit;
}

/* The finish-time entry of (model m, device d) needs a fresh look. */
static inline void cost_stale(hs_sched_t *s, uint32_t d, uint32_t m)
{
	hs__bit_set(&s->cost_stale[m * s->dev_words], d, true);
}

/* Work of cost ns more (or less) weighs on device d. */
static inline void backlog_add(hs_sched_t *s, uint32_t d, double cost)
{
	s->backlog[d] += cost;
	s->backlog_f[d] = (float)(s->backlog[d] - s->backlog_base);
	s->base_fresh = false;
}

/* The least backlog as the float copies' base, and the copies anew. */
static void backlog_rebase(hs_sched_t *s)
{
	double base = HUGE_VAL;
	uint32_t d;

	for (d = 0; d < s->n_devs; d++)
		base = s->backlog[d] < base ? s->backlog[d] : base;
	s->backlog_base = base;
	for (d = 0; d < s->n_devs; d++)
		s->backlog_f[d] = (float)(s->backlog[d] - base);
	s->base_fresh = true;
}

void hs__sched_cost_stale_all(const hs_sched_t *s)
{
	uint32_t m, w;

	for (m = 0; m < s->n_models; m++)
		for (w = 0; w < s->dev_words; w++)
			s->cost_stale[m * s->dev_words + w] =
				s->n_devs - w * 64 >= 64
					? ~0ull
					: (1ull << (s->n_devs - w * 64)) - 1;
}

/* ---- queues: a sorted ring and a heap --------------------------------- */

/*
 * Jobs mostly come in rank order (the rank is the arrival time, less a
 * priority's head start): those go to the back of a sorted ring, and leave
 * from its front, touching one entry each. The others (a higher priority,
 * a requeued job) go to a binary heap beside it. The queue's first entry
 * is the earlier of the ring's front and the heap's root, kept at hand in
 * top.
 *
 * An entry whose job left the queue (cancelled, moved, failed) stays,
 * dead, until it comes to the top or the queue compacts: taking an entry
 * out of the middle would need every job to know its place, and every
 * sift would then write to the records of the jobs it moves, cold ones
 * when many wait. The top is always a live entry.
 */
static inline bool q_live(const hs_sched_t *s, uint32_t qi, hs__qent_t e)
{
	const hs__jobrec_t *r = rec_of(s, e.slot);

	return r->queue == qi && r->qgen == e.qgen;
}

static bool q_less(const hs__qent_t *a, const hs__qent_t *b)
{
	return a->rank < b->rank || (a->rank == b->rank && a->slot < b->slot);
}

/* Entry i of the ring, from its front. */
static inline hs__qent_t *ring_at(const hs__queue_t *q, uint32_t i)
{
	return &q->ring[(q->head + i) & (q->cap_ring - 1)];
}

/* Entry i of the queue: the ring's, then the heap's; i < n_ring + n. */
static inline hs__qent_t q_entry(const hs__queue_t *q, uint32_t i)
{
	return i < q->n_ring ? *ring_at(q, i) : q->heap[i - q->n_ring];
}

/* top: the earlier of the ring's front and the heap's root (left as it
 * is when the queue has no entry). */
static void q_top_update(hs__queue_t *q)
{
	if (q->n_ring && (!q->n || q_less(ring_at(q, 0), &q->heap[0])))
		*q->top = *ring_at(q, 0);
	else if (q->n)
		*q->top = q->heap[0];
}

static void q_up(hs__queue_t *q, uint32_t i)
{
	hs__qent_t e = q->heap[i];

	while (i > 0) {
		uint32_t p = (i - 1) / 2;

		if (q_less(&q->heap[p], &e))
			break;
		q->heap[i] = q->heap[p];
		i = p;
	}
	q->heap[i] = e;
}

static void q_down(hs__queue_t *q, uint32_t i)
{
	hs__qent_t e = q->heap[i];

	for (;;) {
		uint32_t c = 2 * i + 1;

		if (c >= q->n)
			break;
		if (c + 1 < q->n && q_less(&q->heap[c + 1], &q->heap[c]))
			c++;
		if (!q_less(&q->heap[c], &e))
			break;
		q->heap[i] = q->heap[c];
		i = c;
	}
	q->heap[i] = e;
}

static void mark_nonempty(hs_sched_t *s, uint32_t q, bool on)
{
	const hs__queue_t *qu = &s->queues[q];
	uint32_t owner1 = (uint32_t)(qu->owner + 1);

	hs__bit_set(&s->nonempty[owner1 * s->words_per_owner],
		    (uint32_t)qu->model * s->n_buckets + qu->bucket, on);
}

/* Double the ring, its entries kept in order from the same head. */
static int ring_grow(hs__queue_t *q)
{
	size_t cap = q->cap_ring, old = cap;

	if (hs__grow((void **)&q->ring, &cap, old + 1, sizeof(*q->ring)))
		return HS_ENOMEM;
	/* The entries that wrapped past the old end follow it now. */
	if (q->head + q->n_ring > old)
		memcpy(q->ring + old, q->ring,
		       (q->head + q->n_ring - old) * sizeof(*q->ring));
	q->cap_ring = (uint32_t)cap;
	return 0;
}

/*
 * Put e where order allows and room is: the ring's back (not before its
 * last) or front (before its first), else the heap. A job taken from the
 * top and put back goes where it came from, so that cannot fail.
 */
static int q_insert(hs__queue_t *q, hs__qent_t e)
{
	bool back = !q->n_ring || !q_less(&e, ring_at(q, q->n_ring - 1));
	bool front = !back && q_less(&e, ring_at(q, 0));
	size_t cap;

	if ((back || front) &&
	    (q->n_ring < q->cap_ring || (q->n == q->cap && !ring_grow(q)))) {
		if (front)
			q->head = (q->head - 1) & (q->cap_ring - 1);
		*ring_at(q, front ? 0 : q->n_ring) = e;
		q->n_ring++;
		return 0;
	}
	cap = q->cap;
	if (q->n == q->cap) {
		if (hs__grow((void **)&q->heap, &cap, q->n + 1,
			     sizeof(*q->heap)))
			return HS_ENOMEM;
		q->cap = (uint32_t)cap;
	}
	q->heap[q->n++] = e;
	q_up(q, q->n - 1);
	return 0;
}

static void runs_check(hs_sched_t *s, uint32_t qi);

static int q_push(hs_sched_t *s, uint32_t qi, uint32_t slot)
{
	hs__queue_t *q = &s->queues[qi];
	hs__jobrec_t *r = rec_of(s, slot);
	hs__qent_t e = {.rank = job_rank(s, &r->pub), .slot = slot};
	int owner = queue_owner(s, qi);

	/* A new mark: a dead entry of the job's in this queue stays dead. */
	e.qgen = r->qgen + 1;
	if (q_insert(q, e))
		return HS_ENOMEM;
	r->qgen++;
	r->queue = qi;
	if (q->live++ == 0) {
		*q->top = e;
		mark_nonempty(s, qi, true);
	} else if (q_less(&e, q->top)) {
		*q->top = e;
	}
	s->model_queued[r->pub.model]++;
	unserved_update(s, r->pub.model);
	if (s->owner_queued[owner + 1]++ == 0 && owner >= 0)
		set_work(s, (uint32_t)owner, true);
	s->st.queued++;
	r->pub.state = HS_JOB_QUEUED;
	return 0;
}

/* Drop the top entry: the ring's front or the heap's root. */
static void q_pop(hs__queue_t *q)
{
	const hs__qent_t *f = q->n_ring ? ring_at(q, 0) : NULL;

	if (f && f->slot == q->top->slot && f->qgen == q->top->qgen) {
		q->head = (q->head + 1) & (q->cap_ring - 1);
		q->n_ring--;
	} else if (--q->n) {
		q->heap[0] = q->heap[q->n];
		q_down(q, 0);
	}
	q_top_update(q);
}

/* Keep the live entries only: the ring's in order, the heap rebuilt
 * (Floyd's method). */
static void q_compact(hs_sched_t *s, uint32_t qi)
{
	hs__queue_t *q = &s->queues[qi];
	uint32_t i, n = 0;

	for (i = 0; i < q->n_ring; i++)
		if (q_live(s, qi, *ring_at(q, i)))
			*ring_at(q, n++) = *ring_at(q, i);
	q->n_ring = n;
	for (i = 0, n = 0; i < q->n; i++)
		if (q_live(s, qi, q->heap[i]))
			q->heap[n++] = q->heap[i];
	q->n = n;
	for (i = n / 2; i-- > 0;)
		q_down(q, i);
	q_top_update(q);
}

static void q_remove(hs_sched_t *s, uint32_t slot)
{
	hs__jobrec_t *r = rec_of(s, slot);
	uint32_t qi = r->queue;
	hs__queue_t *q = &s->queues[qi];
	int owner = queue_owner(s, qi);
	bool head = q->top->slot == slot;

	r->queue = NONE;
	if (--q->live == 0) {
		q->n = q->n_ring = 0; /* the dead go with it */
		mark_nonempty(s, qi, false);
	} else if (head) {
		/* The top, live: drop it and any dead ones that surface (none
		 * when every entry is live). The new top's record is read
		 * when the job is taken, long after it was written: it comes
		 * from memory while other work goes on. */
		q_pop(q);
		while (q->n_ring + q->n > q->live && !q_live(s, qi, *q->top))
			q_pop(q);
		rec_prefetch(s, q->top->slot);
	} else if (q->n + q->n_ring > 2 * q->live + 16) {
		q_compact(s, qi);
	}
	s->model_queued[r->pub.model]--;
	unserved_update(s, r->pub.model);
	if (--s->owner_queued[owner + 1] == 0 && owner >= 0 &&
	    !s->devs[owner].n_members)
		set_work(s, (uint32_t)owner, false);
	s->st.queued--;
	if (head)
		runs_check(s, qi);
}

static const hs__qent_t *q_head(const hs_sched_t *s, uint32_t qi)
{
	const hs__queue_t *q = &s->queues[qi];

	return q->live ? q->top : NULL;
}

/* ---- job slots --------------------------------------------------------- */

/* In a device's joining list, beside the slot: the job's first token
 * comes with its first step. Slots stay below it (2^31 jobs held at once,
 * 256 GiB of records). */
#define JOIN_FIRST 0x80000000u

/*
 * Twice the slots, the records kept on line boundaries: the block grows in
 * place or moves (the C library remaps a big one), and the records follow
 * the boundary if the block's own offset from it changed.
 */
static int slots_grow(hs_sched_t *s)
{
	size_t elem = sizeof(*s->jobs), cap = s->cap_slots ? s->cap_slots : 8,
	       old = s->cap_slots ? (size_t)s->cap_slots * elem + 64 : 0,
	       pad_old = s->jobs ? (size_t)((char *)s->jobs - s->jobs_mem) : 0,
	       pad;
	char *mem;

	if (s->cap_slots) {
		if (cap > SIZE_MAX / 2 / elem - 1)
			return HS_ENOMEM;
		cap *= 2;
	}
	mem = hs__realloc(s->jobs_mem, old, cap * elem + 64);
	if (!mem)
		return HS_ENOMEM;
	pad = (64 - (uintptr_t)mem % 64) % 64;
	if (pad != pad_old)
		memmove(mem + pad, mem + pad_old, (size_t)s->n_slots * elem);
	s->jobs_mem = mem;
	s->jobs = (hs__jobrec_t *)(void *)(mem + pad);
	s->cap_slots = (uint32_t)cap;
	return 0;
}

static int slot_alloc(hs_sched_t *s, uint32_t *slot)
{
	if (s->free_head != NONE) {
		*slot = s->free_head;
		s->free_head = (uint32_t)s->jobs[*slot].pub.device;
		return 0;
	}
	if (s->n_slots == JOIN_FIRST - 1)
		return HS_EFULL;
	if (s->n_slots == s->cap_slots && slots_grow(s))
		return HS_ENOMEM;
	*slot = s->n_slots++;
	s->jobs[*slot].gen = 0;
	s->jobs[*slot].qgen = 0;
	return 0;
}

static void slot_free(hs_sched_t *s, uint32_t slot)
{
	hs__jobrec_t *r = rec_of(s, slot);

	r->gen++;
	r->pub.id = 0;
	r->pub.device = (int32_t)s->free_head;
	s->free_head = slot;
}

/* ---- devices, memory, residency --------------------------------------- */

static uint64_t usable_memory(const hs_sched_t *s, const hs__dev_t *dv)
{
	return dv->usable_bytes;
}

static uint64_t job_kv(const hs_sched_t *s, const hs_job_t *j)
{
	return ((uint64_t)j->ctx_tokens + j->gen_tokens) *
	       s->models[j->model].kv_bytes_per_token;
}

static bool fits(const hs_sched_t *s, uint32_t d, uint32_t m, uint64_t kv)
{
	const hs__dev_t *dv = &s->devs[d];
	uint64_t w = s->models[m].weight_bytes, mem = usable_memory(s, dv);

	return w <= mem && kv <= mem - w;
}

bool hs__sched_job_fits(const hs_sched_t *s, int d, const hs_job_t *job)
{
	return d >= 0 && (uint32_t)d < s->n_devs &&
	       fits(s, (uint32_t)d, job->model, job_kv(s, job));
}

/* KV bytes the batch may use for model m once it is resident, evicting
 * other models (least recently used first) when that makes room. */
static uint64_t kv_room(const hs_sched_t *s, const hs__dev_t *dv, uint32_t m)
{
	uint64_t mem = usable_memory(s, dv), w = s->models[m].weight_bytes;

	/* Evicting is free, so the room is the memory minus this model's
	 * weights; make_resident() evicts to honour it. */
	return w <= mem ? mem - w : 0;
}

static int64_t load_ns(const hs_sched_t *s, const hs__dev_t *dv, uint32_t m)
{
	double gbs;

	/* The real executors load every runnable model's weights when they
	 * open: on their devices a switch costs nothing. */
	if ((dv->resident & (1ull << m)) || dv->d.backend != HS_BACKEND_SIM)
		return 0;
	gbs = dv->d.host_link_gbs > 0 ? dv->d.host_link_gbs : 16.0;
	return (int64_t)((double)s->models[m].weight_bytes / (gbs * 1e9) * 1e9);
}

/* Load model m, evicting LRU models until it and kv_needed fit. */
static void make_resident(hs_sched_t *s, hs__dev_t *dv, uint32_t m,
			  uint64_t kv_needed)
{
	uint64_t mem = usable_memory(s, dv), was = dv->resident, changed;

	if (!(dv->resident & (1ull << m))) {
		dv->resident |= 1ull << m;
		dv->resident_bytes += s->models[m].weight_bytes;
	}
	dv->lru[m] = dv->seq;
	while (dv->resident_bytes + kv_needed > mem) {
		uint64_t mask = dv->resident & ~(1ull << m);
		int victim = -1;

		while (mask) {
			int k = __builtin_ctzll(mask);

			if (victim < 0 || dv->lru[k] < dv->lru[victim])
				victim = k;
			mask &= mask - 1;
		}
		if (victim < 0)
			break;
		dv->resident &= ~(1ull << victim);
		dv->resident_bytes -= s->models[victim].weight_bytes;
	}
	/* Load times follow residency. */
	for (changed = was ^ dv->resident; changed; changed &= changed - 1)
		cost_stale(s, (uint32_t)dv->id,
			   (uint32_t)__builtin_ctzll(changed));
}

/* ---- the batch's members ---------------------------------------------- */

/*
 * A batch is at most max_batch_jobs: member i is ids[i], finish[i],
 * join[i] and emark[i], those joining in the running step first, and a
 * removal moves the last member into the gap. The earliest finish is kept
 * at hand. A scan of a few dozen finish steps costs less than sifting a
 * heap, whose comparisons of random finish steps the processor cannot
 * predict.
 */
static void finish_min_update(hs__dev_t *dv)
{
	uint64_t least = UINT64_MAX;
	uint32_t i;

	for (i = 0; i < dv->n_members; i++)
		least = dv->finish[i] < least ? dv->finish[i] : least;
	dv->finish_min = least;
}

/* Prefill length of a job joining (again): its prompt plus what it has
 * already generated, since a requeued job rebuilds its KV cache. */
static uint32_t prefill_len(const hs__jobrec_t *r)
{
	return r->pub.ctx_tokens + r->base_generated;
}

/* Member from takes the place of member to. */
static inline void member_move(hs__dev_t *dv, uint32_t to, uint32_t from)
{
	dv->ids[to] = dv->ids[from];
	dv->finish[to] = dv->finish[from];
	dv->join[to] = dv->join[from];
	dv->emark[to] = dv->emark[from];
}

/* Members i and j trade places. */
static void member_swap(hs__dev_t *dv, uint32_t i, uint32_t j)
{
	uint64_t id = dv->ids[i], fin = dv->finish[i], join = dv->join[i];
	double emark = dv->emark[i];

	member_move(dv, i, j);
	dv->ids[j] = id;
	dv->finish[j] = fin;
	dv->join[j] = join;
	dv->emark[j] = emark;
}

static void batch_add(hs_sched_t *s, hs__dev_t *dv, uint32_t slot, int64_t now)
{
	hs__jobrec_t *r = rec_of(s, slot);
	uint64_t step = dv->seq + 1;
	uint64_t fin = step + (r->pub.gen_tokens - r->base_generated) - 1;
	uint32_t i = dv->n_members++;

	r->pub.state = HS_JOB_RUNNING;
	r->pub.device = dv->id;
	r->pub.start_ns = now;
	dv->ids[i] = r->pub.id;
	dv->finish[i] = fin;
	dv->join[i] = step;
	dv->emark[i] = dv->energy_per_job;
	/* Joining ones first, as a step lists them (hs_step_t.jobs): the
	 * new member trades places with the first that is not joining. */
	if (dv->n_joining < i)
		member_swap(dv, dv->n_joining, i);
	if (fin < dv->finish_min)
		dv->finish_min = fin;
	if (dv->n_members == 1)
		set_work(s, (uint32_t)dv->id, true);
	dv->sum_ctx += prefill_len(r);
	dv->sum_join += step;
	dv->kv_used += job_kv(s, &r->pub);
	/* Decided here, where the record is at hand: the end of the step
	 * then writes it without reading it. */
	dv->joining[dv->n_joining++] =
		slot | (r->base_generated == 0 && r->pub.first_token_ns < 0
				? JOIN_FIRST
				: 0);
	s->st.running++;
}

/* Where the job of this id is in dv's batch, which holds it. Members do
 * not keep their index: the member moved into a gap would have its
 * record, cold by then, written at every removal. */
static uint32_t member_at(const hs__dev_t *dv, uint64_t id)
{
	uint32_t i = 0;

	while (i + 1 < dv->n_members && dv->ids[i] != id)
		i++;
	return i;
}

/* The member that finishes first, the lowest slot of those that finish
 * together: a failed device's jobs are placed again in that order, each
 * placement seeing the ones before. */
static uint32_t first_finish(const hs__dev_t *dv)
{
	uint32_t i, best = 0;

	for (i = 1; i < dv->n_members; i++)
		if (dv->finish[i] < dv->finish[best] ||
		    (dv->finish[i] == dv->finish[best] &&
		     slot_of_id(dv->ids[i]) < slot_of_id(dv->ids[best])))
			best = i;
	return best;
}

/* Member i leaves; finish_min is the caller's to bring up to date. */
static void batch_take(hs_sched_t *s, hs__dev_t *dv, uint32_t i)
{
	hs__jobrec_t *r = rec_of(s, slot_of_id(dv->ids[i]));
	uint32_t n = --dv->n_members;

	dv->sum_ctx -= prefill_len(r);
	dv->sum_join -= dv->join[i];
	dv->kv_used -= job_kv(s, &r->pub);
	r->pub.energy_j += dv->energy_per_job - dv->emark[i];
	if (i < n)
		member_move(dv, i, n);
	/* Its work no longer weighs on the device it was bound to. */
	if (r->owner >= 0)
		backlog_add(s, (uint32_t)r->owner, -r->cost_ns);
	r->owner = -1;
	r->cost_ns = 0;
	s->st.running--;
	if (dv->n_members == 0) {
		s->model_devices[dv->model]--;
		unserved_update(s, (uint32_t)dv->model);
		dv->model = -1;
		dv->draining = false;
		if (!s->owner_queued[dv->id + 1])
			set_work(s, (uint32_t)dv->id, false);
	}
}

static void batch_remove(hs_sched_t *s, hs__dev_t *dv, uint32_t slot)
{
	uint32_t i = member_at(dv, rec_of(s, slot)->pub.id);
	uint64_t fin = dv->finish[i];

	batch_take(s, dv, i);
	if (fin == dv->finish_min)
		finish_min_update(dv);
}

/* Tokens generated so far by a running job: up to the last step its
 * device reported (a running run's first step is seq). */
static uint32_t generated_now(const hs_sched_t *s, const hs__jobrec_t *r)
{
	const hs__dev_t *dv = &s->devs[r->pub.device];
	uint64_t done = dv->busy ? dv->seq - 1 + dv->run_got : dv->seq;
	uint64_t join = dv->join[member_at(dv, r->pub.id)];

	if (done < join)
		return r->base_generated;
	return r->base_generated + (uint32_t)(done - join + 1);
}

/* ---- power ------------------------------------------------------------ */

static void power_check(hs_sched_t *s)
{
	double over;

	if (s->power_w > s->st.peak_power_w)
		s->st.peak_power_w = s->power_w;
	s->st.power_floor_w = s->power_w;
	if (s->budget_w <= 0 || s->n_grace > 0)
		return;
	/* Idle draw is not the governor's to cut: a budget below it is an
	 * impossible budget (reported as such), not an overshoot. */
	over = s->power_w - (s->budget_w > s->st.power_floor_w
				     ? s->budget_w
				     : s->st.power_floor_w);
	if (over > POWER_EPS) {
		s->st.power_violations++;
		if (over > s->st.max_violation_w)
			s->st.max_violation_w = over;
	}
}

static void set_draw(hs_sched_t *s, hs__dev_t *dv, double w)
{
	s->power_w += w - dv->draw_w;
	dv->draw_w = w;
	power_check(s);
}

/* No power level of the device fits the budget with every other device
 * as it is now: not even the one that draws least. */
static inline bool no_level_fits(const hs_sched_t *s, const hs__dev_t *dv)
{
	return s->budget_w > 0 && !(s->power_w - dv->draw_w + dv->min_cap_w <=
				    s->budget_w + POWER_EPS);
}

/*
 * The fastest level whose draw, with every other device as it is now,
 * keeps the node within budget; -1 when none does.
 */
static inline int fastest_fitting_level(const hs_sched_t *s,
					const hs__dev_t *dv)
{
	double others = s->power_w - dv->draw_w,
	       limit = s->budget_w + POWER_EPS;
	unsigned l;

	if (s->budget_w <= 0)
		return 0;
	if (no_level_fits(s, dv))
		return -1;
	for (l = 0; l < n_levels(dv); l++)
		if (others + level_cap(dv, (int)l) <= limit)
			return (int)l;
	return -1;
}

/* ---- timers ----------------------------------------------------------- */

static void want_timer(hs_sched_t *s, int64_t when, int64_t now)
{
	if (when <= now)
		when = now + 1;
	if (s->timer_at >= 0 && s->timer_at <= when && s->timer_at > now)
		return;
	s->timer_at = when;
	if (s->hooks.timer)
		s->hooks.timer(s->hooks.ud, when);
}

/* ---- starting steps --------------------------------------------------- */

/* Whether queue qi may start a batch now (min_batch and max_wait). */
static bool ready_to_start(hs_sched_t *s, uint32_t qi, const hs__qent_t *h,
			   int64_t now)
{
	int64_t waited;
	uint32_t m, b, total;
	int owner = queue_owner(s, qi);

	if (s->cfg.min_batch_jobs <= 1)
		return true;
	m = s->queues[qi].model;
	b = s->queues[qi].bucket;
	total = s->queues[qi].live;
	if (owner >= 0)
		total += s->queues[qindex(s, -1, m, b)].live;
	if (total >= s->cfg.min_batch_jobs)
		return true;
	waited = now - rec_of(s, h->slot)->pub.arrival_ns;
	if (waited >= s->cfg.max_wait_ns)
		return true;
	want_timer(s, rec_of(s, h->slot)->pub.arrival_ns + s->cfg.max_wait_ns,
		   now);
	return false;
}

_Static_assert(HS_MAX_BUCKETS < 64, "a model's buckets fit a word");

/* Bit b: owner owner1's queue of model m, bucket b is not empty. */
static inline uint64_t class_bits(const hs_sched_t *s, uint32_t owner1,
				  uint32_t m)
{
	uint32_t lo = m * s->n_buckets, sh = lo % 64;
	const uint64_t *w = &s->nonempty[owner1 * s->words_per_owner + lo / 64];
	uint64_t bits = w[0] >> sh;

	/* n_buckets (at most 24) bits in a row, across two words at most. */
	if (sh + s->n_buckets > 64)
		bits |= w[1] << (64 - sh);
	return bits & ((1ull << s->n_buckets) - 1);
}

/*
 * A walk over the non-empty queues a device draws from: its own, then the
 * shared ones, through the bitmaps of non-empty queues.
 */
typedef struct qwalk_s {
	uint32_t d;
	int pass; /* 0: the device's own queues, 1: the shared ones */
	uint32_t w; /* bitmap word */
	uint64_t word; /* its bits not yet visited */
} qwalk_t;

static void qwalk_init(qwalk_t *it, const hs_sched_t *s, uint32_t d)
{
	it->d = d;
	it->pass = -1;
	it->w = s->words_per_owner;
	it->word = 0;
}

/* The next non-empty queue's index, or NONE at the end. */
static uint32_t qwalk_next(const hs_sched_t *s, qwalk_t *it)
{
	uint32_t per = s->n_models * s->n_buckets;

	for (;;) {
		uint32_t owner1 = it->pass == 0 ? it->d + 1 : 0;

		if (it->word) {
			uint32_t local = it->w * 64 +
					 (uint32_t)__builtin_ctzll(it->word);

			it->word &= it->word - 1;
			return owner1 * per + local;
		}
		if (++it->w < s->words_per_owner) {
			it->word = s->nonempty[owner1 * s->words_per_owner +
					       it->w];
			continue;
		}
		if (++it->pass > 1)
			return NONE;
		owner1 = it->pass == 0 ? it->d + 1 : 0;
		it->word = 0;
		/* An owner with nothing queued is skipped whole. */
		it->w = s->owner_queued[owner1] ? 0 : s->words_per_owner;
		if (!it->w)
			it->word = s->nonempty[owner1 * s->words_per_owner];
	}
}

/*
 * The default choice of class for an empty device: the head with the
 * smallest rank (longest wait for its priority) among the device's own
 * queues and the shared ones; ties go to a model already resident.
 */
static int default_select(hs_sched_t *s, int d, int64_t now, uint32_t *mo,
			  uint32_t *bo)
{
	const hs__dev_t *dv = &s->devs[d];
	uint32_t qi;
	bool found = false, best_res = false;
	int64_t best = 0;
	qwalk_t it;

	qwalk_init(&it, s, (uint32_t)d);
	while ((qi = qwalk_next(s, &it)) != NONE) {
		uint32_t m = s->queues[qi].model;
		const hs__qent_t *h = q_head(s, qi);
		bool res = (dv->resident >> m) & 1;

		if (!fits(s, (uint32_t)d, m,
			  job_kv(s, &rec_of(s, h->slot)->pub)))
			continue;
		if (!ready_to_start(s, qi, h, now))
			continue;
		if (!found || h->rank < best ||
		    (h->rank == best && res && !best_res)) {
			found = true;
			best = h->rank;
			best_res = res;
			*mo = m;
			*bo = s->queues[qi].bucket;
		}
	}
	return found ? 0 : HS_ENOENT;
}

/*
 * Whether a job of another model that this device could run, and that no
 * device is running now, has waited longer than aging_ns, in its own
 * queues or the shared ones. A batch keeps taking jobs of its model at
 * every step boundary; without this check a busy model would keep its
 * device forever and the others starve.
 */
static bool other_model_starving(const hs_sched_t *s, uint32_t d, uint32_t m,
				 int64_t now)
{
	uint32_t per = s->n_models * s->n_buckets, qm;
	int64_t limit = now - s->cfg.aging_ns;
	int pass;

	/* Most often every other model with jobs waiting runs somewhere:
	 * nothing to look at. */
	if (!(s->unserved & ~(1ull << m)))
		return false;
	for (pass = 0; pass < 2; pass++) {
		uint32_t owner1 = pass == 0 ? d + 1 : 0;

		if (!s->owner_queued[owner1])
			continue;
		for (qm = 0; qm < s->n_models; qm++) {
			uint64_t bits;

			/* A model some device is running will be served
			 * there. */
			if (qm == m || s->model_devices[qm])
				continue;
			for (bits = class_bits(s, owner1, qm); bits;
			     bits &= bits - 1) {
				uint32_t qi = owner1 * per + qm * s->n_buckets +
					      (uint32_t)__builtin_ctzll(bits);
				const hs_job_t *j =
					&s->jobs[q_head(s, qi)->slot].pub;

				if (j->arrival_ns <= limit &&
				    fits(s, d, qm, job_kv(s, j)))
					return true;
			}
		}
	}
	return false;
}

/* The better head of two queues (either may be empty); NONE if both are. */
static uint32_t better_head(const hs_sched_t *s, uint32_t a, uint32_t b)
{
	const hs__qent_t *ha = q_head(s, a), *hb = q_head(s, b);

	if (ha && (!hb || q_less(ha, hb)))
		return a;
	return hb ? b : NONE;
}

/*
 * The queue whose head joins next: the smallest rank among the device's
 * own queues and the shared ones of the batch's model, any context bucket.
 * Iteration-level batching reads the KV cache of each job as it is, so a
 * batch need not share a bucket; buckets order the queues and the plans.
 */
static uint32_t pick_joiner(const hs_sched_t *s, uint32_t d, uint32_t m)
{
	uint32_t per = s->n_models * s->n_buckets, lo = m * s->n_buckets;
	uint32_t pick = NONE, best_slot = UINT32_MAX;
	int64_t best_rank = INT64_MAX;
	int pass;

	for (pass = 0; pass < 2; pass++) {
		uint32_t owner1 = pass == 0 ? d + 1 : 0;
		uint64_t bits;

		if (!s->owner_queued[owner1])
			continue;
		/* Which head is first is as good as random: no branch on
		 * it. The first head seen beats the initial bound, as no
		 * entry has slot UINT32_MAX (NONE). */
		for (bits = class_bits(s, owner1, m); bits; bits &= bits - 1) {
			uint32_t qi = owner1 * per + lo +
				      (uint32_t)__builtin_ctzll(bits);
			const hs__qent_t *h = &s->tops[qi];
			uint64_t less = (uint64_t)(h->rank < best_rank) |
					((uint64_t)(h->rank == best_rank) &
					 (uint64_t)(h->slot < best_slot));
			uint64_t all = 0 - less;

			/* Masks: a select the compiler keeps (it turns a ?:
			 * of these back into a branch). */
			best_rank = (int64_t)(((uint64_t)h->rank & all) |
					      ((uint64_t)best_rank & ~all));
			best_slot = (uint32_t)((h->slot & all) |
					       (best_slot & ~all));
			pick = (uint32_t)((qi & all) | (pick & ~all));
		}
	}
	return pick;
}

/* An idle device has something to start: a batch or a queued job. */
static inline bool has_work(const hs_sched_t *s, const hs__dev_t *dv,
			    uint32_t d)
{
	return dv->n_members || s->owner_queued[d + 1] || s->owner_queued[0];
}

/* In a run that a joiner or a budget change may cut short. */
static inline bool in_run(const hs_sched_t *s, uint32_t d)
{
	return hs__bit_get(s->in_run, d);
}

static void set_in_run(hs_sched_t *s, uint32_t d, bool on)
{
	hs__bit_set(s->in_run, d, on);
}

/* dv has work that no power level lets it start, or no longer. */
static void set_waiting(hs_sched_t *s, hs__dev_t *dv, bool on)
{
	dv->waiting_power = on;
	hs__bit_set(s->waiting, (uint32_t)dv->id, on);
}

/* Whether a device with work waits for power. One that lost its work
 * (its jobs taken elsewhere or cancelled) stops waiting here. */
static bool others_wait(hs_sched_t *s)
{
	uint32_t w;

	for (w = 0; w < s->dev_words; w++) {
		uint64_t bits = s->waiting[w];

		for (; bits; bits &= bits - 1) {
			uint32_t d = w * 64 + (uint32_t)__builtin_ctzll(bits);
			hs__dev_t *dv = &s->devs[d];

			if (!dv->failed && has_work(s, dv, d))
				return true;
			set_waiting(s, dv, false);
		}
	}
	return false;
}

/* End dv's run at its next step boundary. */
static void cut(hs_sched_t *s, hs__dev_t *dv)
{
	uint32_t d = (uint32_t)dv->id;

	if (!dv->busy || dv->cut)
		return;
	dv->cut = true;
	set_in_run(s, d, false);
	/* A driver running a part of several steps stops it early; one
	 * that reports every step needs no word: the core ends the run at
	 * the next report. */
	if (dv->run_hand > 1 && s->hooks.cut)
		s->hooks.cut(s->hooks.ud, (int)d);
}

/*
 * Whether the join loop at dv's next step boundary would take a job:
 * what a quiet boundary must not be able to do. The loop stops at the
 * first candidate that does not fit.
 */
static bool could_join(const hs_sched_t *s, uint32_t d, uint32_t m)
{
	const hs__dev_t *dv = &s->devs[d];
	const hs__jobrec_t *r;
	uint32_t qi;

	if (dv->draining || dv->n_members >= s->cfg.max_batch_jobs)
		return false;
	qi = pick_joiner(s, d, m);
	if (qi == NONE)
		return false;
	r = rec_of(s, s->tops[qi].slot);
	return dv->n_members + prefill_len(r) <= s->cfg.max_step_tokens &&
	       dv->kv_used + job_kv(s, &r->pub) <= kv_room(s, dv, m);
}

/*
 * Queue qi's head changed (a push ahead of it, or its removal): cut the
 * runs of the devices that would now take a job at their next boundary.
 * Those draw from their own queues and the shared ones. A device in a run
 * could take none when its run started (fill_batch ends a run after one
 * step when a job waits for the next), and every change of a head since
 * was checked here: what a boundary takes is decided by the queues' heads
 * (pick_joiner), so a change behind a head changes nothing.
 */
static void runs_check(hs_sched_t *s, uint32_t qi)
{
	uint32_t m = s->queues[qi].model, w;
	int owner = queue_owner(s, qi);

	if (owner >= 0) {
		if (in_run(s, (uint32_t)owner) &&
		    s->devs[owner].model == (int32_t)m &&
		    could_join(s, (uint32_t)owner, m))
			cut(s, &s->devs[owner]);
		return;
	}
	for (w = 0; w < s->dev_words; w++) {
		uint64_t bits = s->in_run[w];

		while (bits) {
			uint32_t d = w * 64 + (uint32_t)__builtin_ctzll(bits);

			bits &= bits - 1;
			if (s->devs[d].model == (int32_t)m &&
			    could_join(s, d, m))
				cut(s, &s->devs[d]);
		}
	}
}

/* The job in slot was placed: if it waits in a queue, at its head, the
 * runs that would take it are cut. */
static void runs_check_placed(hs_sched_t *s, uint32_t slot)
{
	uint32_t qi = rec_of(s, slot)->queue;

	if (qi != NONE && s->tops[qi].slot == slot)
		runs_check(s, qi);
}

bool hs__sched_runs_quiet(const hs_sched_t *s)
{
	uint32_t d;

	for (d = 0; d < s->n_devs; d++)
		if (in_run(s, d) && s->devs[d].model >= 0 &&
		    could_join(s, d, (uint32_t)s->devs[d].model))
			return false;
	return true;
}

/* The lease of dv's power level still holds at this boundary. */
static inline bool lease_holds(const hs_sched_t *s, const hs__dev_t *dv,
			       int64_t now)
{
	/* With no budget there is nothing to divide: a level granted with
	 * none holds. One granted under a budget since lifted does not: it
	 * may be slower than the device can now run. */
	return now < dv->lease_until ||
	       (s->budget_w <= 0 && dv->step_budget_w <= 0);
}

/* Hand the driver the next part of dv's run: from step run_got on. */
static void hand_out(hs_sched_t *s, hs__dev_t *dv)
{
	uint32_t max = s->hooks.max_run > 1 ? s->hooks.max_run : 1;
	uint32_t i = dv->run_got, m = (uint32_t)dv->model;
	double B = dv->n_members, C = dv->step_ctx + (double)i * B;
	double P = i ? 0 : (double)dv->step_prefill;
	int64_t load = i ? 0 : dv->step_load_ns;
	hs_step_t st;

	if (max > HS__RUN_MAX)
		max = HS__RUN_MAX;
	dv->run_hand = dv->run_len - i < max ? dv->run_len - i : max;
	dv->part_got = 0;
	st.device = dv->id;
	st.seq = dv->seq + i;
	st.model = m;
	st.bucket = dv->bucket;
	st.batch = dv->n_members;
	st.joining = i ? 0 : dv->n_joining;
	st.jobs = dv->ids;
	st.ctx_tokens = (uint64_t)C;
	st.prefill_tokens = (uint64_t)P;
	st.level = dv->level;
	st.power_w = dv->cap_w;
	st.load_ns = load;
	st.predicted_ns =
		(int64_t)(hs__perf_predict_ns(
				  &s->perf[(uint32_t)dv->id * s->n_models + m],
				  B, C, P) /
			  dv->speed) +
		load;
	st.steps = dv->run_hand;
	st.until_ns = dv->run_hand > 1 ? dv->run_until : INT64_MAX;
	if (s->hooks.step_start)
		s->hooks.step_start(s->hooks.ud, &st);
}

/*
 * Fill dv's batch at a step boundary from the queues of model m (a new
 * batch from the class m, b chosen for it). Returns the prefill tokens of
 * the jobs that joined.
 */
static uint32_t fill_batch(hs_sched_t *s, uint32_t d, uint32_t m, uint32_t b,
			   int64_t now)
{
	hs__dev_t *dv = &s->devs[d];
	uint32_t qi, joined_tokens = 0;
	uint64_t room;

	dv->n_joining = 0;
	dv->join_next = false;
	room = kv_room(s, dv, m);
	while (!dv->draining && dv->n_members < s->cfg.max_batch_jobs) {
		hs__jobrec_t *r;
		uint32_t p, slot;

		/* A new batch starts with the class chosen for it. */
		if (dv->n_members == 0)
			qi = better_head(s, qindex(s, (int)d, m, b),
					 qindex(s, -1, m, b));
		else
			qi = pick_joiner(s, d, m);
		if (qi == NONE)
			break;
		/* A queue picked has a top: read where the pick read it. */
		slot = s->tops[qi].slot;
		r = rec_of(s, slot);
		p = prefill_len(r);
		if (dv->kv_used + job_kv(s, &r->pub) > room)
			break;
		/* Over this step's tokens with those that joined it, a job
		 * that fits a step of its own joins at the next boundary:
		 * the run ends there. */
		if (dv->n_members && dv->n_members + joined_tokens + p >
					     s->cfg.max_step_tokens) {
			dv->join_next = dv->n_members + p <=
					s->cfg.max_step_tokens;
			break;
		}
		q_remove(s, slot);
		/* A shared job's work now weighs on the device it joined:
		 * backlogs count running work as well as bound work. */
		if (r->owner < 0) {
			r->owner = (int32_t)d;
			r->cost_ns = (float)hs__sched_job_cost_ns(
				s, (int)d, &r->pub, s->cfg.max_batch_jobs);
			backlog_add(s, (uint32_t)d, r->cost_ns);
		}
		batch_add(s, dv, (uint32_t)(r - s->jobs), now);
		joined_tokens += p;
	}
	return joined_tokens;
}

/* A running batch stops taking jobs when another class starves. */
static void starve_check(hs_sched_t *s, uint32_t d, int64_t now)
{
	hs__dev_t *dv = &s->devs[d];

	if (!dv->draining && now >= dv->starve_check_ns) {
		dv->starve_check_ns = now + s->cfg.aging_ns / 8;
		dv->draining =
			other_model_starving(s, d, (uint32_t)dv->model, now);
	}
}

/*
 * Start a run of dv's batch at its level: the steps up to the first in
 * which a member finishes, at most HS__RUN_MAX, ending at the lease's end.
 */
static void start_run(hs_sched_t *s, uint32_t d, uint32_t m,
		      uint32_t joined_tokens, int64_t now)
{
	hs__dev_t *dv = &s->devs[d];
	uint64_t left;

	dv->step_load_ns = load_ns(s, dv, m);
	make_resident(s, dv, m, dv->kv_used);
	dv->seq++;
	dv->step_ctx = (double)dv->sum_ctx +
		       (double)dv->n_members * (double)dv->seq -
		       (double)dv->sum_join;
	dv->step_prefill = joined_tokens;
	dv->step_start_ns = now;
	left = dv->join_next ? 1 : dv->finish_min - dv->seq + 1;
	dv->run_len = left < HS__RUN_MAX ? (uint32_t)left : HS__RUN_MAX;
	dv->run_got = 0;
	dv->run_until = s->budget_w > 0 ? dv->lease_until : INT64_MAX;
	dv->run_energy_j = 0;
	dv->run_modeled_ns = 0;
	dv->run_busy_ns = 0;
	dv->cut = false;
	dv->busy = true;
	set_idle(s, d, false);
	set_waiting(s, dv, false);
	set_in_run(s, d, dv->run_len > 1);
	s->st.decisions++;
	hand_out(s, dv);
}

/* The governor grants dv a level (lo, the fastest that fits, or a slower
 * one the policy picks) and its lease. */
static void grant(hs_sched_t *s, hs__dev_t *dv, int lo, int64_t now)
{
	int level = lo;

	if (s->policy->level) {
		level = s->policy->level(s->policy_state, s, dv->id, lo);
		if (level < lo || level >= (int)n_levels(dv))
			level = lo;
	}
	dv->level = level;
	dv->cap_w = level_cap(dv, level);
	dv->speed = level_speed(dv, level);
	dv->step_budget_w = s->budget_w;
	dv->lease_until = now > INT64_MAX - s->cfg.power_lease_ns
				  ? INT64_MAX
				  : now + s->cfg.power_lease_ns;
	set_draw(s, dv, dv->cap_w);
}

/*
 * Try to start a run on an idle device: the governor grants a power
 * level and its lease, the batch fills at this step boundary, the driver
 * is told. Returns true if a run started.
 */
static bool try_start(hs_sched_t *s, uint32_t d, int64_t now)
{
	hs__dev_t *dv = &s->devs[d];
	uint32_t m, b, joined_tokens;
	int lo;

	if (dv->failed || dv->busy || !has_work(s, dv, d))
		return false;

	/* The governor first: with no level that fits, nothing joins and a
	 * running batch pauses. */
	lo = fastest_fitting_level(s, dv);
	if (lo < 0) {
		dv->power_wait_epoch = s->power_epoch;
		if (!dv->waiting_power) {
			set_waiting(s, dv, true);
			s->st.power_waits++;
			if (dv->n_members)
				s->st.paused++;
		}
		return false;
	}

	if (dv->n_members == 0) {
		if (s->policy->select) {
			if (s->policy->select(s->policy_state, s, (int)d, now,
					      &m, &b))
				return false;
		} else if (default_select(s, (int)d, now, &m, &b)) {
			return false;
		}
		if (m >= s->n_models || b >= s->n_buckets)
			return false;
	} else {
		m = (uint32_t)dv->model;
		b = dv->bucket;
		starve_check(s, d, now);
	}
	joined_tokens = fill_batch(s, d, m, b, now);
	if (dv->n_members == 0)
		return false;
	if (dv->model < 0) {
		dv->model = (int32_t)m;
		dv->bucket = b;
		s->model_devices[m]++;
		unserved_update(s, m);
	}
	grant(s, dv, lo, now);
	start_run(s, d, m, joined_tokens, now);
	return true;
}

/*
 * A run ended within its power lease: the batch goes on at the same
 * level with the jobs that join at this boundary. False when it has
 * nothing left to run.
 */
static bool go_on(hs_sched_t *s, uint32_t d, int64_t now)
{
	hs__dev_t *dv = &s->devs[d];
	uint32_t m, joined_tokens;

	if (dv->n_members == 0)
		return false;
	m = (uint32_t)dv->model;
	starve_check(s, d, now);
	joined_tokens = fill_batch(s, d, m, dv->bucket, now);
	start_run(s, d, m, joined_tokens, now);
	return true;
}

/*
 * Offer work to idle devices, starting from a rotating point so that no
 * device always comes first for power: kick_from up to the last device,
 * then the first ones up to kick_from, a word of the idle bitmap at a
 * time (the word of kick_from twice, its high bits first).
 */
static void kick(hs_sched_t *s, int64_t now)
{
	uint32_t words = s->dev_words, w = s->kick_from / 64, k;
	uint64_t high = ~0ull << (s->kick_from % 64);

	for (k = 0; k <= words; k++) {
		/* While the shared queue is empty, an idle device with no
		 * work of its own would refuse at once (has_work), and no
		 * refusal here gives any device work: only the others are
		 * offered. */
		uint64_t word = s->idle[w] &
				(s->owner_queued[0] ? ~0ull : s->work[w]);

		if (k == 0)
			word &= high;
		else if (k == words)
			word &= ~high;
		while (word) {
			uint32_t d = w * 64 + (uint32_t)__builtin_ctzll(word);
			const hs__dev_t *dv = &s->devs[d];

			word &= word - 1;
			/* Refused for want of power, and no power freed
			 * since. */
			if (dv->waiting_power &&
			    dv->power_wait_epoch == s->power_epoch)
				continue;
			try_start(s, d, now);
		}
		w = w + 1 < words ? w + 1 : 0;
	}
	/* kick_from < n_devs: the next one without a division. */
	s->kick_from = s->kick_from + 1 < s->n_devs ? s->kick_from + 1 : 0;
}

/* ---- lifecycle -------------------------------------------------------- */

/*
 * The power figures the governor compares with the budget: finite, a draw
 * not below zero, caps and speeds above it. Profiles loaded from JSON are
 * checked as they load; devices built through the API are checked here.
 */
static int check_device(const hs_device_t *dv, size_t d, hs_error_t *err)
{
	char path[64];
	unsigned l;

	if (!isfinite(dv->idle_w) || dv->idle_w < 0) {
		snprintf(path, sizeof(path), "devices[%zu].idle_w", d);
		return hs__error_set(err, HS_EINVAL, "scheduler devices", 0,
				     path,
				     "must be a finite draw of 0 W or "
				     "more, is %g",
				     dv->idle_w);
	}
	if (!isfinite(dv->max_w) || dv->max_w <= 0) {
		snprintf(path, sizeof(path), "devices[%zu].max_w", d);
		return hs__error_set(err, HS_EINVAL, "scheduler devices", 0,
				     path,
				     "must be a finite draw above 0 W, "
				     "is %g",
				     dv->max_w);
	}
	if (dv->n_levels > HS_MAX_POWER_LEVELS) {
		snprintf(path, sizeof(path), "devices[%zu].n_levels", d);
		return hs__error_set(err, HS_EINVAL, "scheduler devices", 0,
				     path, "at most %d power levels, has %u",
				     HS_MAX_POWER_LEVELS, dv->n_levels);
	}
	for (l = 0; l < dv->n_levels; l++) {
		const hs_power_level_t *lv = &dv->levels[l];

		if (isfinite(lv->cap_w) && lv->cap_w > 0 &&
		    isfinite(lv->speed) && lv->speed > 0)
			continue;
		snprintf(path, sizeof(path), "devices[%zu].levels[%u]", d, l);
		return hs__error_set(err, HS_EINVAL, "scheduler devices", 0,
				     path,
				     "cap_w (%g) and speed (%g) must "
				     "be finite and above 0",
				     lv->cap_w, lv->speed);
	}
	return 0;
}

/* The least fit limit of each model over the devices (fit_min). */
static void fit_min_update(hs_sched_t *s)
{
	uint32_t m, d;

	for (m = 0; m < s->n_models; m++) {
		uint64_t lo = UINT64_MAX;

		for (d = 0; d < s->n_devs; d++)
			if (s->fit_lim[m * s->n_devs + d] < lo)
				lo = s->fit_lim[m * s->n_devs + d];
		s->fit_min[m] = lo;
	}
}

/* A device's member arrays, n entries each, in one block, each from a
 * line boundary: a scan of the finish steps reads no line it need not. */
static int members_alloc(hs__dev_t *dv, uint32_t n)
{
	size_t a8 = ((size_t)n * 8 + 63) / 64 * 64,
	       a4 = ((size_t)n * 4 + 63) / 64 * 64;
	char *b = hs__calloc_lines(4 * a8 + a4, 1, &dv->members_mem);

	if (!b)
		return HS_ENOMEM;
	dv->finish = (uint64_t *)(void *)b;
	dv->ids = (uint64_t *)(void *)(b + a8);
	dv->join = (uint64_t *)(void *)(b + 2 * a8);
	dv->emark = (double *)(void *)(b + 3 * a8);
	dv->joining = (uint32_t *)(void *)(b + 4 * a8);
	return 0;
}

int hs_sched_new(hs_sched_t **out, const hs_sched_config_t *cfg,
		 const hs_model_catalog_t *models, const hs_device_t *devices,
		 size_t n_devices, const hs_sched_hooks_t *hooks,
		 hs_error_t *err)
{
	hs_sched_t *s;
	size_t n_models = hs_model_catalog_count(models);
	uint32_t d, m, l, words, i;
	int rc = HS_ENOMEM;

	hs__error_clear(err);
	*out = NULL;
	if (n_models == 0 || n_models > MAX_MODELS)
		return hs__error_set(err, HS_EINVAL, "scheduler config", 0,
				     "models", "needs 1 to %d models, has %zu",
				     MAX_MODELS, n_models);
	if (n_devices == 0 || n_devices > 65536)
		return hs__error_set(err, HS_EINVAL, "scheduler config", 0,
				     "devices",
				     "needs 1 to 65536 devices, "
				     "has %zu",
				     n_devices);
	for (d = 0; d < n_devices; d++)
		if ((rc = check_device(&devices[d], d, err)))
			return rc;
	s = hs__calloc(1, sizeof(*s));
	if (!s)
		return hs__error_set(err, HS_ENOMEM, NULL, 0, NULL,
				     "out of memory");
	s->cfg = *cfg;
	if ((rc = check_config(&s->cfg, err)))
		goto out_free;
	s->policy = hs__policy_find(s->cfg.policy ? s->cfg.policy : "eft");
	if (!s->policy) {
		rc = hs__error_set(err, HS_ENOENT, "scheduler config", 0,
				   "policy", "unknown policy \"%s\"",
				   s->cfg.policy);
		goto out_free;
	}
	s->cfg.policy = s->policy->name;
	if (hooks)
		s->hooks = *hooks;
	/* A run of several steps is cut short through the hook: without
	 * one, the driver gets a step at a time. */
	if (!s->hooks.cut)
		s->hooks.max_run = 1;
	s->catalog = models;
	s->n_models = (uint32_t)n_models;
	s->n_devs = (uint32_t)n_devices;
	s->n_buckets = s->cfg.n_buckets;
	s->free_head = NONE;
	s->timer_at = -1;
	s->first_arrival_ns = -1;
	s->budget_w = s->cfg.power_budget_w;
	s->st.budget_w = s->budget_w;

	rc = HS_ENOMEM;
	s->models = hs__calloc(n_models, sizeof(*s->models));
	s->devs = hs__calloc_lines(n_devices, sizeof(*s->devs), &s->devs_mem);
	s->perf = hs__calloc(n_devices * n_models, sizeof(*s->perf));
	bucket_table(s);
	s->n_queues = (s->n_devs + 1) * s->n_models * s->n_buckets;
	s->queues = hs__calloc_lines(s->n_queues, sizeof(*s->queues),
				     &s->queues_mem);
	s->tops = hs__calloc_lines(s->n_queues, sizeof(*s->tops), &s->tops_mem);
	for (i = 0; s->queues && s->tops && i < s->n_queues; i++) {
		s->queues[i].top = &s->tops[i];
		s->queues[i].owner =
			(int32_t)(i / (s->n_models * s->n_buckets)) - 1;
		s->queues[i].model = (uint16_t)(i / s->n_buckets % s->n_models);
		s->queues[i].bucket = (uint16_t)(i % s->n_buckets);
	}
	s->gone = hs__calloc(s->cfg.max_batch_jobs, sizeof(*s->gone));
	s->gone_fin = hs__calloc(s->cfg.max_batch_jobs, sizeof(*s->gone_fin));
	words = (s->n_models * s->n_buckets + 63) / 64;
	s->words_per_owner = words;
	s->nonempty =
		hs__calloc((size_t)(s->n_devs + 1) * words, sizeof(uint64_t));
	s->owner_queued = hs__calloc(s->n_devs + 1, sizeof(uint64_t));
	s->class_jobs = hs__calloc(n_models * s->n_buckets, sizeof(uint64_t));
	s->class_tokens = hs__calloc(n_models * s->n_buckets, sizeof(uint64_t));
	s->class_ctx = hs__calloc(n_models * s->n_buckets, sizeof(uint64_t));
	s->idle = hs__calloc((n_devices + 63) / 64, sizeof(uint64_t));
	s->work = hs__calloc((n_devices + 63) / 64, sizeof(uint64_t));
	s->in_run = hs__calloc((n_devices + 63) / 64, sizeof(uint64_t));
	s->waiting = hs__calloc((n_devices + 63) / 64, sizeof(uint64_t));
	s->model_devices = hs__calloc(n_models, sizeof(uint32_t));
	s->model_queued = hs__calloc(n_models, sizeof(uint64_t));
	s->finish = hs__calloc(n_devices ? n_devices : 1, sizeof(double));
	s->backlog = hs__calloc(n_devices, sizeof(double));
	s->backlog_f = hs__calloc(n_devices, sizeof(float));
	s->dev_words = (uint32_t)((n_devices + 63) / 64);
	s->cost = hs__calloc(n_models * HS__COST_N * n_devices, sizeof(double));
	s->cost_f =
		hs__calloc(n_models * HS__COST_N * n_devices, sizeof(float));
	s->cost_odd = hs__calloc(n_models, sizeof(uint32_t));
	s->fit_lim = hs__calloc(n_models * n_devices, sizeof(uint64_t));
	s->fit_min = hs__calloc(n_models, sizeof(uint64_t));
	s->cost_stale = hs__calloc(n_models * s->dev_words, sizeof(uint64_t));
	if (!s->models || !s->devs || !s->perf || !s->queues || !s->tops ||
	    !s->nonempty || !s->owner_queued || !s->class_jobs ||
	    !s->class_tokens || !s->class_ctx || !s->idle || !s->work ||
	    !s->in_run || !s->waiting || !s->model_devices ||
	    !s->model_queued || !s->finish || !s->backlog || !s->backlog_f ||
	    !s->cost || !s->cost_f || !s->cost_odd || !s->fit_lim ||
	    !s->fit_min || !s->cost_stale || !s->gone || !s->gone_fin)
		goto out_nomem;
	hs__sched_cost_stale_all(s);
	for (m = 0; m < n_models; m++)
		s->models[m] = *hs_model_catalog_get(models, m);
	for (d = 0; d < n_devices; d++) {
		hs__dev_t *dv = &s->devs[d];

		dv->d = devices[d];
		dv->d.id = (int)d;
		dv->id = (int32_t)d;
		set_idle(s, d, true);
		dv->model = -1;
		dv->usable_bytes = (uint64_t)((double)dv->d.memory_bytes *
					      (1.0 - s->cfg.kv_reserve));
		dv->draw_w = dv->d.idle_w;
		s->power_w += dv->d.idle_w;
		dv->min_cap_w = level_cap(dv, 0);
		for (l = 1; l < n_levels(dv); l++)
			if (level_cap(dv, (int)l) < dv->min_cap_w)
				dv->min_cap_w = level_cap(dv, (int)l);
		dv->finish_min = UINT64_MAX;
		if (members_alloc(dv, s->cfg.max_batch_jobs))
			goto out_nomem;
		dv->run_ns = hs__calloc(HS__RUN_MAX, sizeof(*dv->run_ns));
		if (!dv->run_ns)
			goto out_nomem;
		for (m = 0; m < n_models; m++) {
			uint64_t w = s->models[m].weight_bytes;

			hs__perf_init(&s->perf[d * n_models + m], &dv->d,
				      &s->models[m]);
			/* usable_bytes came from a double, so it is at most
			 * 2^64 - 2048: the + 1 cannot wrap. */
			if (w <= dv->usable_bytes)
				s->fit_lim[m * n_devices + d] =
					dv->usable_bytes - w + 1;
		}
	}
	fit_min_update(s);
	s->st.peak_power_w = s->power_w;
	s->st.power_floor_w = s->power_w;
	if (s->policy->init && (rc = s->policy->init(s, &s->policy_state))) {
		hs__error_set(err, rc, "scheduler", 0, "policy",
			      "policy %s failed to start: %s", s->policy->name,
			      hs_strerror(rc));
		goto out_free;
	}
	if (s->policy->on_change) {
		s->policy->on_change(s->policy_state, s, 0);
		s->next_epoch_ns = s->cfg.lp_epoch_ns;
	}
	*out = s;
	return 0;
out_nomem:
	rc = hs__error_set(err, HS_ENOMEM, NULL, 0, NULL, "out of memory");
out_free:
	hs_sched_free(s);
	return rc;
}

void hs_sched_free(hs_sched_t *s)
{
	uint32_t i;

	if (!s)
		return;
	if (s->policy && s->policy->fini)
		s->policy->fini(s->policy_state);
	for (i = 0; s->devs && i < s->n_devs; i++) {
		hs__free(s->devs[i].members_mem);
		hs__free(s->devs[i].run_ns);
	}
	for (i = 0; s->queues && i < s->n_queues; i++) {
		hs__free(s->queues[i].heap);
		hs__free(s->queues[i].ring);
	}
	hs__free(s->queues_mem);
	hs__free(s->tops_mem);
	hs__free(s->gone);
	hs__free(s->gone_fin);
	hs__free(s->nonempty);
	hs__free(s->owner_queued);
	hs__free(s->class_jobs);
	hs__free(s->class_tokens);
	hs__free(s->class_ctx);
	hs__free(s->idle);
	hs__free(s->work);
	hs__free(s->in_run);
	hs__free(s->waiting);
	hs__free(s->model_devices);
	hs__free(s->model_queued);
	hs__free(s->finish);
	hs__free(s->backlog);
	hs__free(s->cost);
	hs__free(s->cost_f);
	hs__free(s->cost_odd);
	hs__free(s->backlog_f);
	hs__free(s->fit_lim);
	hs__free(s->fit_min);
	hs__free(s->cost_stale);
	hs__free(s->jobs_mem);
	hs__free(s->perf);
	hs__free(s->devs_mem);
	hs__free(s->models);
	hs__free(s);
}

/* ---- events ----------------------------------------------------------- */

/* Epoch timer for policies that re-plan (lp). */
static void epoch(hs_sched_t *s, int64_t now)
{
	if (!s->policy->on_change)
		return;
	if (now >= s->next_epoch_ns) {
		s->policy->on_change(s->policy_state, s, now);
		s->st.decisions++;
		s->next_epoch_ns = now + s->cfg.lp_epoch_ns;
	}
	want_timer(s, s->next_epoch_ns, now);
}

static void advance(hs_sched_t *s, int64_t now)
{
	if (now > s->last_now)
		s->last_now = now;
}

/*
 * Place a job in a queue of bucket b (that of its prefill length): the
 * policy routes it to a device or the shared queue; a route to a device
 * that cannot take it falls back to shared, and so does a device queue
 * that cannot grow. HS_ENOMEM when not even the shared queue has room:
 * the job is then in no queue.
 */
static int place(hs_sched_t *s, uint32_t slot, unsigned b, int64_t now)
{
	hs__jobrec_t *r = rec_of(s, slot);
	int d;

	s->st.decisions++;
	d = s->policy->route(s->policy_state, s, &r->pub, now);
	if (d >= 0 && ((uint32_t)d >= s->n_devs || s->devs[d].failed ||
		       !hs__sched_job_fits(s, d, &r->pub)))
		d = -1;
	if (d >= 0) {
		r->owner = d;
		r->cost_ns = (float)hs__sched_job_cost_ns(
			s, d, &r->pub, s->cfg.max_batch_jobs);
		if (!q_push(s, qindex(s, d, r->pub.model, b), slot)) {
			backlog_add(s, (uint32_t)d, r->cost_ns);
			return 0;
		}
	}
	r->owner = -1;
	r->cost_ns = 0;
	return q_push(s, qindex(s, -1, r->pub.model, b), slot);
}

int hs_sched_submit(hs_sched_t *s, int64_t now, const hs_job_spec_t *spec,
		    uint64_t *id, hs_error_t *err)
{
	const hs_model_t *mod;
	hs__jobrec_t *r;
	uint64_t kv, best = 0;
	uint32_t slot, d;
	unsigned b;
	bool any = false, alive = false;
	int rc;

	hs__error_clear(err);
	advance(s, now);
	if (spec->model >= s->n_models)
		return hs__error_set(err, HS_EINVAL, "job", 0, "model",
				     "unknown model index %u", spec->model);
	mod = &s->models[spec->model];
	if (spec->gen_tokens < 1)
		return hs__error_set(err, HS_EINVAL, "job", 0, "max_tokens",
				     "must generate at least 1 token");
	if (spec->priority > MAX_PRIORITY || spec->priority < -MAX_PRIORITY)
		return hs__error_set(err, HS_EINVAL, "job", 0, "priority",
				     "must be within +-%d", MAX_PRIORITY);
	s->st.submitted++;
	if ((uint64_t)spec->ctx_tokens + spec->gen_tokens > mod->max_context) {
		s->st.refused++;
		return hs__error_set(err, HS_ENOFIT, "job", 0, NULL,
				     "%u prompt + %u generated tokens exceed "
				     "%s's context of %u",
				     spec->ctx_tokens, spec->gen_tokens,
				     mod->name, mod->max_context);
	}
	kv = ((uint64_t)spec->ctx_tokens + spec->gen_tokens) *
	     mod->kv_bytes_per_token;
	/* Some working device fits it: usually the first one asked. */
	for (d = 0; d < s->n_devs && !any; d++)
		any = kv < s->fit_lim[spec->model * s->n_devs + d];
	if (!any) {
		for (d = 0; d < s->n_devs; d++) {
			if (s->devs[d].failed)
				continue;
			alive = true;
			if (usable_memory(s, &s->devs[d]) > best)
				best = usable_memory(s, &s->devs[d]);
		}
		s->st.refused++;
		if (!alive)
			return hs__error_set(err, HS_ENOFIT, "job", 0, NULL,
					     "every device has failed");
		return hs__error_set(
			err, HS_ENOFIT, "job", 0, NULL,
			"fits no device: %s needs %.2f GB of weights plus "
			"%.2f GB of KV cache for %u tokens; the largest "
			"device has %.2f GB usable",
			mod->name, mod->weight_bytes / 1e9, kv / 1e9,
			spec->ctx_tokens + spec->gen_tokens, best / 1e9);
	}
	if ((rc = slot_alloc(s, &slot))) {
		s->st.submitted--;
		return hs__error_set(err, rc, "job", 0, NULL, "%s",
				     hs_strerror(rc));
	}
	r = rec_of(s, slot);
	/* Every field, one by one: a compound literal would clear the
	 * record with a string store, slow to start. qgen goes on across
	 * the slot's jobs: an entry left dead by the one before must not
	 * come alive. */
	r->gen++;
	r->pub.id = ((uint64_t)r->gen << 32) | slot;
	r->pub.model = spec->model;
	r->pub.ctx_tokens = spec->ctx_tokens;
	r->pub.gen_tokens = spec->gen_tokens;
	r->pub.generated = 0;
	r->pub.priority = spec->priority;
	r->pub.device = -1;
	r->pub.deadline_ns = spec->deadline_ns;
	r->pub.arrival_ns = now;
	r->pub.start_ns = -1;
	r->pub.first_token_ns = -1;
	r->pub.done_ns = -1;
	r->pub.energy_j = 0;
	r->pub.state = HS_JOB_QUEUED;
	r->pub.tag = spec->tag;
	r->queue = NONE;
	r->base_generated = 0;
	r->cost_ns = 0;
	r->owner = -1;
	r->cancel = false;
	b = hs__sched_bucket_of(s, spec->ctx_tokens);
	if ((rc = place(s, slot, b, now))) {
		slot_free(s, slot);
		s->st.submitted--;
		return hs__error_set(err, rc, "job", 0, NULL, "%s",
				     hs_strerror(rc));
	}
	{
		uint32_t c = spec->model * s->n_buckets + b;

		s->class_jobs[c]++;
		s->class_tokens[c] += spec->gen_tokens;
		s->class_ctx[c] += spec->ctx_tokens;
	}
	if (s->first_arrival_ns < 0)
		s->first_arrival_ns = now;
	*id = r->pub.id;
	if (r->owner >= 0) {
		if (!s->devs[r->owner].busy)
			try_start(s, (uint32_t)r->owner, now);
	} else {
		kick(s, now);
	}
	/* A running batch is cut for the new job only if no idle device
	 * took it. */
	runs_check_placed(s, slot);
	epoch(s, now);
	return 0;
}

static void emit(hs_sched_t *s, hs__jobrec_t *r, hs_job_event_t ev)
{
	if (s->hooks.job_event)
		s->hooks.job_event(s->hooks.ud, &r->pub, ev);
}

/* dv's run ends (or is abandoned); a step started under a higher (or no)
 * budget ends its grace. */
static void run_stop(hs_sched_t *s, hs__dev_t *dv)
{
	if (dv->busy && s->budget_w > 0 &&
	    (dv->step_budget_w <= 0 || dv->step_budget_w > s->budget_w) &&
	    s->n_grace > 0)
		s->n_grace--;
	dv->busy = false;
	set_in_run(s, (uint32_t)dv->id, false);
}

/* dv gives its power back: idle draw, and the others may take it. */
static void release(hs_sched_t *s, hs__dev_t *dv)
{
	if (!dv->failed)
		set_idle(s, (uint32_t)dv->id, true);
	set_draw(s, dv, dv->d.idle_w);
	s->power_epoch++;
}

/* The running step of dv ends (or is abandoned): power back to idle. */
static void end_step_bookkeeping(hs_sched_t *s, hs__dev_t *dv)
{
	run_stop(s, dv);
	release(s, dv);
}

/* Take the run_got steps of dv's run into account: calibrate on each
 * step, count them and their energy. The device stays busy. */
static void run_account(hs_sched_t *s, uint32_t device)
{
	hs__dev_t *dv = &s->devs[device];
	uint32_t n = dv->run_got, m = (uint32_t)dv->model;
	double B = dv->n_members, speed = dv->speed;
	double energy = dv->run_energy_j;
	hs__perf_t *perf = &s->perf[device * s->n_models + m];
	const int64_t *ns = dv->run_src;
	double theta[HS_PERF_NFEAT];

	/* The fit as the finish-time entries may have it. */
	memcpy(theta, perf->theta, sizeof(theta));

	/* Calibrate: the model predicts full-speed compute time, so the
	 * weight load is taken out and the level's slowdown undone. */
	{
		double t = (double)((ns[0] > 0 ? ns[0] : 0) - dv->step_load_ns);

		if (!hs__perf_observe(perf, B, dv->step_ctx,
				      (double)dv->step_prefill,
				      (t < 1 ? 1 : t) * speed))
			s->st.perf_outliers++;
	}
	/* The rest decode only, one more context token per job each. */
	if (n > 1)
		s->st.perf_outliers += hs__perf_observe_decode(
			perf, B, dv->step_ctx + B, B, ns + 1, n - 1, speed);
	/* The finish-time entries follow a fit that moved (a young fit
	 * refits at every sample), or is due to. */
	if (perf->dirty || memcmp(theta, perf->theta, sizeof(theta)))
		cost_stale(s, device, m);
	/* Steps no sensor measured: power level x time. */
	energy += dv->cap_w * (double)dv->run_modeled_ns / 1e9;
	s->st.energy_j += energy;
	s->st.steps += n;
	dv->st.energy_j += energy;
	dv->st.steps += n;
	dv->st.busy_ns += dv->run_busy_ns;
	dv->st.output_tokens += (uint64_t)n * dv->n_members;
	s->st.output_tokens += (uint64_t)n * dv->n_members;
	dv->energy_per_job += energy / (B > 0 ? B : 1);
	dv->seq += n - 1;
}

/*
 * The members of finish steps fin[0..n-1] that finish by step last, into
 * gone from the highest index down (a removal moves the last member into
 * the gap, one that stays); their count. *least: the earliest finish of
 * those that stay (UINT64_MAX: none). Four members at a time, without a
 * branch on which finish: step numbers stay below 2^63, so that signed
 * lanes compare them.
 */
HS__CLONES
static uint32_t finish_scan(const uint64_t *fin, uint32_t n, uint64_t last,
			    uint32_t *gone, uint64_t *least)
{
	const v4i lastv = {(int64_t)last, (int64_t)last, (int64_t)last,
			   (int64_t)last};
	v4i low = {INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX};
	uint64_t best = UINT64_MAX;
	uint32_t i = n, k = 0, l;

	/* Those past the last four first: the scan goes down. */
	while (i & 3) {
		uint64_t f = fin[--i], stays = 0 - (uint64_t)(f > last),
			 less = 0 - (uint64_t)(f < best);

		gone[k] = i;
		k += (uint32_t)(f <= last);
		best = (f & stays & less) | (best & ~(stays & less));
	}
	while (i) {
		v4i f, done, stays;

		i -= 4;
		memcpy(&f, fin + i, sizeof(f));
		done = f <= lastv;
		stays = ~done & (f < low);
		low = (f & stays) | (low & ~stays);
		if (done[0] | done[1] | done[2] | done[3]) {
			/* Lane by lane, each named: the lanes stay in
			 * registers. */
			uint64_t d0 = (uint64_t)done[0] & 1,
				 d1 = (uint64_t)done[1] & 1,
				 d2 = (uint64_t)done[2] & 1,
				 d3 = (uint64_t)done[3] & 1;

			gone[k] = i + 3;
			k += (uint32_t)d3;
			gone[k] = i + 2;
			k += (uint32_t)d2;
			gone[k] = i + 1;
			k += (uint32_t)d1;
			gone[k] = i;
			k += (uint32_t)d0;
		}
	}
	/* A lane that kept no member holds INT64_MAX: not a finish. */
	for (l = 0; l < 4; l++)
		if (low[l] != INT64_MAX && (uint64_t)low[l] < best)
			best = (uint64_t)low[l];
	*least = best;
	return k;
}

/*
 * The run of dv ended after run_got steps: count them, let finished and
 * cancelled jobs leave; then the batch goes on while the lease holds, or
 * gives its power back to the governor.
 */
static void run_end(hs_sched_t *s, uint32_t device, int64_t now)
{
	hs__dev_t *dv = &s->devs[device];
	/* The run's last step, as run_account leaves it in seq. */
	uint64_t last = dv->seq + dv->run_got - 1, least = UINT64_MAX;
	uint32_t i, k = 0, *gone = s->gone;

	/* Finished jobs leave at the step boundary. The batch is left the
	 * highest member first (a removal moves the last member into the
	 * gap, one that stays), the earliest finish of those that stay found
	 * in the same pass. They are found before the run is accounted for,
	 * so that their records, cold since they joined, are on their way
	 * in meanwhile. */
	if (dv->finish_min <= last) {
		k = finish_scan(dv->finish, dv->n_members, last, gone, &least);
		for (i = 0; i < k; i++)
			rec_prefetch(s, slot_of_id(dv->ids[gone[i]]));
	}
	run_account(s, device);
	run_stop(s, dv);

	/* They are told done in order of (finish, slot), as the slots they
	 * free are used again in that order. A job asked to cancel in its
	 * last step has finished all the same. */
	if (k) {
		uint32_t j;
		uint64_t *fin = s->gone_fin;

		dv->finish_min = least;
		for (i = 0; i < k; i++) {
			uint32_t at = gone[i], slot = slot_of_id(dv->ids[at]);
			uint64_t f = dv->finish[at];

			batch_take(s, dv, at);
			/* Insertion by (finish, slot): a handful at most. */
			for (j = i;
			     j > 0 && (fin[j - 1] > f ||
				       (fin[j - 1] == f && gone[j - 1] > slot));
			     j--) {
				fin[j] = fin[j - 1];
				gone[j] = gone[j - 1];
			}
			fin[j] = f;
			gone[j] = slot;
		}
		for (i = 0; i < k; i++) {
			hs__jobrec_t *r = rec_of(s, gone[i]);

			if (r->cancel) {
				r->cancel = false;
				dv->n_cancel--;
			}
			r->pub.generated = r->pub.gen_tokens;
			r->pub.done_ns = now;
			r->pub.state = HS_JOB_DONE;
			s->st.completed++;
			emit(s, r, HS_JOB_EV_DONE);
			slot_free(s, gone[i]);
		}
	}
	/* Cancelled ones too. */
	for (i = 0; dv->n_cancel && i < dv->n_members;) {
		uint32_t slot = slot_of_id(dv->ids[i]);
		hs__jobrec_t *r = rec_of(s, slot);

		if (!r->cancel) {
			i++;
			continue;
		}
		r->pub.generated = generated_now(s, r);
		batch_remove(s, dv, slot);
		r->pub.state = HS_JOB_CANCELLED;
		r->pub.done_ns = now;
		s->st.cancelled++;
		dv->n_cancel--;
		emit(s, r, HS_JOB_EV_CANCELLED);
		slot_free(s, slot);
		i = 0;
	}

	/* A lease that ended is renewed at once while no device waits for
	 * power: giving it back would hand it to nobody else. The governor
	 * grants the level anew, under the budget of now. */
	if (!lease_holds(s, dv, now) && !others_wait(s) && dv->n_members) {
		int lo = fastest_fitting_level(s, dv);

		if (lo >= 0)
			grant(s, dv, lo, now);
	}
	if (lease_holds(s, dv, now) && go_on(s, device, now)) {
		epoch(s, now);
		return;
	}
	release(s, dv);
	/* Devices waiting for the power this run freed go first; this one
	 * comes last, so that no device keeps the power to itself. */
	s->kick_from = device + 1 < s->n_devs ? device + 1 : 0;
	kick(s, now);
	epoch(s, now);
}

/* Keep n more steps of dv's run until it ends; the last ended at now
 * (-1: not said). */
static void take_steps(hs_sched_t *s, hs__dev_t *dv, uint32_t n,
		       const int64_t *step_ns, double energy_j, int64_t now)
{
	int64_t ns = 0, t0 = n && step_ns[0] > 0 ? step_ns[0] : 0;
	uint32_t i;

	/* The times stay where the driver has them while the report is
	 * handled; kept (run_keep) only if the run goes on. */
	if (dv->run_got == 0)
		dv->run_src = step_ns;
	else if (n)
		memcpy(dv->run_ns + dv->run_got, step_ns, n * sizeof(*step_ns));
	for (i = 0; i < n; i++)
		ns += step_ns[i] > 0 ? step_ns[i] : 0;
	dv->run_busy_ns += ns;
	if (energy_j >= 0) {
		dv->run_energy_j += energy_j;
	} else {
		dv->run_modeled_ns += ns;
		s->modeled_steps += n;
	}
	/* Joiners made their first token at the end of the run's first
	 * step: when the driver said so, or the run's start plus the step's
	 * time. */
	if (dv->run_got == 0 && n) {
		int64_t first = now >= 0 ? now - (ns - t0)
					 : dv->step_start_ns + t0;

		s->st.prefill_tokens += dv->step_prefill;
		for (i = 0; i < dv->n_joining; i++) {
			uint32_t j = dv->joining[i];
			hs__jobrec_t *r;

			if (!(j & JOIN_FIRST))
				continue;
			r = rec_of(s, j & ~JOIN_FIRST);
			r->pub.first_token_ns = first;
			r->pub.generated = 1;
			emit(s, r, HS_JOB_EV_FIRST_TOKEN);
		}
		dv->n_joining = 0;
	}
	dv->run_got += n;
	dv->part_got += n;
}

/* The run goes on past the report: its times so far in the core's
 * keeping. */
static void run_keep(hs__dev_t *dv)
{
	if (dv->run_src != dv->run_ns) {
		memcpy(dv->run_ns, dv->run_src,
		       dv->run_got * sizeof(*dv->run_ns));
		dv->run_src = dv->run_ns;
	}
}

/* A report of n steps that fits the part handed out; 0 or HS_E*. */
static int check_report(const hs_sched_t *s, int device, uint32_t n,
			const int64_t *step_ns)
{
	const hs__dev_t *dv;

	if (device < 0 || (uint32_t)device >= s->n_devs || (n && !step_ns))
		return HS_EINVAL;
	dv = &s->devs[device];
	if (!dv->busy || dv->failed)
		return HS_ESTATE;
	/* No step at all only ends a part whose steps were all reported. */
	if ((n < 1 && dv->part_got == 0) || n > dv->run_hand - dv->part_got)
		return HS_EINVAL;
	return 0;
}

int hs_sched_run_done(hs_sched_t *s, int64_t now, int device, uint32_t n,
		      const int64_t *step_ns, double energy_j)
{
	hs__dev_t *dv;
	int rc = check_report(s, device, n, step_ns);

	if (rc)
		return rc;
	dv = &s->devs[device];
	advance(s, now);
	take_steps(s, dv, n, step_ns, energy_j, now);
	/* The run goes on unless it took its steps, was cut, reached its
	 * lease's end, or the driver stopped the part short. */
	if (dv->run_got < dv->run_len && !dv->cut && now < dv->run_until &&
	    dv->part_got == dv->run_hand) {
		run_keep(dv);
		hand_out(s, dv);
		return 0;
	}
	run_end(s, (uint32_t)device, now);
	return 0;
}

int hs_sched_run_progress(hs_sched_t *s, int device, uint32_t n,
			  const int64_t *step_ns, double energy_j)
{
	int rc = check_report(s, device, n, step_ns);

	if (rc)
		return rc;
	if (n < 1 || n == s->devs[device].run_hand - s->devs[device].part_got)
		return HS_EINVAL; /* that ends the part: hs_sched_run_done */
	take_steps(s, &s->devs[device], n, step_ns, energy_j, -1);
	run_keep(&s->devs[device]);
	return 0;
}

int hs_sched_step_done(hs_sched_t *s, int64_t now, int device,
		       int64_t measured_ns, double energy_j)
{
	return hs_sched_run_done(s, now, device, 1, &measured_ns, energy_j);
}

int hs_sched_set_budget(hs_sched_t *s, int64_t now, double watts)
{
	uint32_t d;

	advance(s, now);
	if (!(watts >= 0) || isinf(watts))
		watts = 0;
	s->budget_w = watts;
	s->st.budget_w = watts;
	s->power_epoch++;
	/* Steps started under a higher (or no) budget run to their end: the
	 * change applies at each device's next step boundary. */
	s->n_grace = 0;
	for (d = 0; d < s->n_devs; d++) {
		hs__dev_t *dv = &s->devs[d];

		if (dv->busy && watts > 0 &&
		    (dv->step_budget_w <= 0 || dv->step_budget_w > watts))
			s->n_grace++;
		set_waiting(s, dv, false);
		/* Every lease ends with the budget it was granted under: the
		 * governor divides the new one at each device's next step
		 * boundary. */
		dv->lease_until = INT64_MIN;
		cut(s, dv);
	}
	power_check(s);
	if (s->policy->on_change) {
		s->policy->on_change(s->policy_state, s, now);
		s->st.decisions++;
	}
	kick(s, now);
	return 0;
}

int hs_sched_timer(hs_sched_t *s, int64_t now)
{
	advance(s, now);
	if (s->timer_at >= 0 && now >= s->timer_at)
		s->timer_at = -1;
	kick(s, now);
	epoch(s, now);
	return 0;
}

/* Whether any device still working can hold the job. */
static bool runnable(const hs_sched_t *s, const hs_job_t *job)
{
	uint32_t d;

	for (d = 0; d < s->n_devs; d++)
		if (!s->devs[d].failed && hs__sched_job_fits(s, (int)d, job))
			return true;
	return false;
}

/* An accepted job no working device can run: it ends, and says so. */
static void fail_job(hs_sched_t *s, uint32_t slot, int64_t now)
{
	hs__jobrec_t *r = rec_of(s, slot);

	r->pub.state = HS_JOB_FAILED;
	r->pub.done_ns = now;
	s->st.failed++;
	emit(s, r, HS_JOB_EV_FAILED);
	slot_free(s, slot);
}

/* Put a job back in a queue after its device failed; it keeps the tokens
 * it made and rebuilds its KV cache when it joins again. */
static int requeue(hs_sched_t *s, uint32_t slot, int64_t now)
{
	hs__jobrec_t *r = rec_of(s, slot);
	int32_t old = r->pub.device;
	int rc;

	r->pub.device = -1;
	r->owner = -1;
	if (!runnable(s, &r->pub)) {
		r->pub.device = old;
		fail_job(s, slot, now);
		return 0;
	}
	if ((rc = place(s, slot, hs__sched_bucket_of(s, prefill_len(r)),
			now))) {
		r->pub.device = old;
		return rc;
	}
	runs_check_placed(s, slot);
	s->st.requeued++;
	/* The event names the device the job left. */
	r->pub.device = old;
	emit(s, r, HS_JOB_EV_REQUEUED);
	r->pub.device = -1;
	return 0;
}

int hs_sched_device_failed(hs_sched_t *s, int64_t now, int device)
{
	hs__dev_t *dv;
	uint32_t m, b;
	int rc = 0;

	if (device < 0 || (uint32_t)device >= s->n_devs)
		return HS_EINVAL;
	dv = &s->devs[device];
	advance(s, now);
	if (dv->busy) {
		/* The steps reported made their tokens; the one abandoned
		 * made nothing. */
		if (dv->run_got)
			run_account(s, (uint32_t)device);
		else
			dv->seq--;
		end_step_bookkeeping(s, dv);
	}
	dv->failed = true;
	dv->st.failed = true;
	set_waiting(s, dv, false);
	for (m = 0; m < s->n_models; m++)
		s->fit_lim[m * s->n_devs + (uint32_t)device] = 0;
	fit_min_update(s);
	set_idle(s, (uint32_t)device, false);
	dv->n_joining = 0;
	/* A job leaves the batch or its queue only once another queue has
	 * taken it: out of memory, it stays where it is and a later call
	 * (hs_sched_device_failed again) moves it. */
	while (dv->n_members) {
		uint32_t slot = slot_of_id(dv->ids[first_finish(dv)]);
		hs__jobrec_t *r = rec_of(s, slot);

		r->pub.generated = generated_now(s, r);
		if (r->cancel) {
			dv->n_cancel--;
			batch_remove(s, dv, slot);
			r->pub.state = HS_JOB_CANCELLED;
			r->pub.done_ns = now;
			s->st.cancelled++;
			emit(s, r, HS_JOB_EV_CANCELLED);
			slot_free(s, slot);
			continue;
		}
		batch_remove(s, dv, slot);
		r->base_generated = r->pub.generated;
		if ((rc = requeue(s, slot, now))) {
			/* Kept in the failed device's batch for a retry. */
			batch_add(s, dv, slot, now);
			if (dv->model < 0) {
				dv->model = (int32_t)r->pub.model;
				s->model_devices[r->pub.model]++;
				unserved_update(s, r->pub.model);
			}
			goto out;
		}
	}
	for (m = 0; m < s->n_models; m++)
		for (b = 0; b < s->n_buckets; b++) {
			hs__queue_t *q = &s->queues[qindex(s, device, m, b)];

			while (q->live) {
				uint32_t slot = q->top->slot;
				hs__jobrec_t *r = rec_of(s, slot);

				q_remove(s, slot);
				if ((rc = requeue(s, slot, now))) {
					/* Its old place cannot fail
					 * (q_insert). */
					r->owner = device;
					q_push(s, qindex(s, device, m, b),
					       slot);
					goto out;
				}
			}
		}
	/* Nothing weighs on it any more (x - x is 0 exactly). */
	backlog_add(s, (uint32_t)device, -s->backlog[device]);
	/* Shared jobs that only the failed device could hold. */
	for (m = 0; m < s->n_models; m++)
		for (b = 0; b < s->n_buckets; b++) {
			hs__queue_t *q = &s->queues[qindex(s, -1, m, b)];
			uint32_t i = 0;

			while (i < q->n_ring + q->n) {
				hs__qent_t e = q_entry(q, i);
				uint32_t slot = e.slot;

				if (!q_live(s, qindex(s, -1, m, b), e) ||
				    runnable(s, &rec_of(s, slot)->pub)) {
					i++;
					continue;
				}
				q_remove(s, slot);
				fail_job(s, slot, now);
				i = 0;
			}
		}
out:
	set_draw(s, dv, dv->d.idle_w);
	if (s->policy->on_change)
		s->policy->on_change(s->policy_state, s, now);
	kick(s, now);
	return rc;
}

int hs_sched_cancel(hs_sched_t *s, int64_t now, uint64_t id)
{
	uint32_t slot = slot_of_id(id);
	hs__jobrec_t *r;

	advance(s, now);
	if (slot >= s->n_slots)
		return HS_ENOENT;
	r = rec_of(s, slot);
	if (r->pub.id != id || id == 0 || r->cancel)
		return HS_ENOENT;
	if (r->queue != NONE) {
		q_remove(s, slot);
		if (r->owner >= 0)
			backlog_add(s, (uint32_t)r->owner, -r->cost_ns);
	} else {
		hs__dev_t *dv = &s->devs[r->pub.device];

		if (dv->busy) {
			/* It is in a running step: it leaves at the end. */
			r->cancel = true;
			dv->n_cancel++;
			cut(s, dv);
			return 0;
		}
		r->pub.generated = generated_now(s, r);
		batch_remove(s, dv, slot);
	}
	r->pub.state = HS_JOB_CANCELLED;
	r->pub.done_ns = now;
	s->st.cancelled++;
	emit(s, r, HS_JOB_EV_CANCELLED);
	slot_free(s, slot);
	kick(s, now);
	return 0;
}

/* ---- queries ---------------------------------------------------------- */

const hs_job_t *hs_sched_job(const hs_sched_t *s, uint64_t id)
{
	uint32_t slot = slot_of_id(id);
	hs__jobrec_t *r;

	if (id == 0 || slot >= s->n_slots)
		return NULL;
	r = &s->jobs[slot];
	if (r->pub.id != id)
		return NULL;
	if (r->pub.state == HS_JOB_RUNNING)
		r->pub.generated = generated_now(s, r);
	return &r->pub;
}

void hs_sched_stats(const hs_sched_t *s, hs_sched_stats_t *out)
{
	uint32_t i;
	double sum = 0;
	uint64_t n = 0;

	*out = s->st;
	out->energy_measured = s->st.steps > 0 && s->modeled_steps == 0;
	out->power_w = s->power_w;
	for (i = 0; i < s->n_devs * s->n_models; i++) {
		if (s->perf[i].rel_err_n) {
			sum += s->perf[i].rel_err_sum;
			n += s->perf[i].rel_err_n;
		}
	}
	out->perf_mean_rel_error = n ? sum / (double)n : 0;
	for (i = 0, sum = 0, n = 0; i < s->n_devs * s->n_models; i++) {
		sum += s->perf[i].cal_err_sum;
		n += s->perf[i].cal_err_n;
	}
	out->perf_calibrated_error = n ? sum / (double)n : 0;
}

void hs_sched_device_stats(const hs_sched_t *s, int device,
			   hs_device_stats_t *out)
{
	memset(out, 0, sizeof(*out));
	if (device < 0 || (uint32_t)device >= s->n_devs)
		return;
	*out = s->devs[device].st;
	out->busy = s->devs[device].busy;
}

/* ---- accessors for policies ------------------------------------------- */

size_t hs__sched_n_devices(const hs_sched_t *s)
{
	return s->n_devs;
}

const hs_device_t *hs__sched_device(const hs_sched_t *s, int d)
{
	return &s->devs[d].d;
}

size_t hs__sched_n_models(const hs_sched_t *s)
{
	return s->n_models;
}

const hs_model_t *hs__sched_model(const hs_sched_t *s, uint32_t m)
{
	return &s->models[m];
}

unsigned hs__sched_n_buckets(const hs_sched_t *s)
{
	return s->n_buckets;
}

uint32_t hs__sched_bucket_edge(const hs_sched_t *s, unsigned b)
{
	return s->cfg.bucket_edges[b];
}

const hs_sched_config_t *hs__sched_config(const hs_sched_t *s)
{
	return &s->cfg;
}

double hs__sched_budget(const hs_sched_t *s)
{
	return s->budget_w;
}

bool hs__sched_device_usable(const hs_sched_t *s, int d)
{
	return d >= 0 && (uint32_t)d < s->n_devs && !s->devs[d].failed;
}

int hs__sched_device_model(const hs_sched_t *s, int d)
{
	return s->devs[d].model;
}

bool hs__sched_resident(const hs_sched_t *s, int d, uint32_t model)
{
	return (s->devs[d].resident >> model) & 1;
}

int64_t hs__sched_load_ns(const hs_sched_t *s, int d, uint32_t model)
{
	return load_ns(s, &s->devs[d], model);
}

uint32_t hs__sched_batch_size(const hs_sched_t *s, int d)
{
	return s->devs[d].n_members;
}

const struct hs_policy_ops *hs__sched_policy(const hs_sched_t *s)
{
	return s->policy;
}

void hs__sched_count_replan(hs_sched_t *s)
{
	s->st.replans++;
}

double hs__sched_backlog_ns(const hs_sched_t *s, int d)
{
	return s->backlog[d];
}

const double *hs__sched_backlogs(const hs_sched_t *s)
{
	return s->backlog;
}

uint32_t hs__sched_queued(const hs_sched_t *s, int owner, uint32_t model,
			  unsigned bucket)
{
	return s->queues[qindex(s, owner, model, bucket)].live;
}

const hs_job_t *hs__sched_queue_head(const hs_sched_t *s, int owner,
				     uint32_t model, unsigned bucket)
{
	const hs__qent_t *h = q_head(s, qindex(s, owner, model, bucket));

	return h ? &s->jobs[h->slot].pub : NULL;
}

double hs__sched_predict_ns(hs_sched_t *s, int d, uint32_t m, double B,
			    double C, double P, int level)
{
	const hs__dev_t *dv = &s->devs[d];

	if (level < 0 || level >= (int)n_levels(dv))
		level = 0;
	return hs__perf_predict_ns(&s->perf[(uint32_t)d * s->n_models + m], B,
				   C, P) /
	       level_speed(dv, level);
}

double hs__sched_job_cost_ns(hs_sched_t *s, int d, const hs_job_t *job,
			     uint32_t batch)
{
	hs__perf_t *p = &s->perf[(uint32_t)d * s->n_models + job->model];
	double B = batch ? batch : 1, ctx = job->ctx_tokens,
	       gen = job->gen_tokens;
	/* The model is linear: its coefficients give the cost without
	 * three predictions per device per job. */
	double step = hs__perf_predict_ns(p, B, B * (ctx + gen / 2), 0);
	double prefill = p->theta[HS_PERF_PREFILL] * ctx;

	return prefill + step * (gen / B) +
	       (double)load_ns(s, &s->devs[d], job->model) / B;
}

/* Whether an entry is one the float pass can bound (finish_float). */
static inline uint32_t cost_odd(double x)
{
	return !(x >= 0 && x < 1e30);
}

/* Entry k of (model m, device d), and its float copy. */
static inline void cost_set(hs_sched_t *s, uint32_t m, unsigned k, uint32_t d,
			    double v)
{
	size_t i = ((size_t)m * HS__COST_N + k) * s->n_devs + d;

	s->cost_odd[m] += cost_odd(v) - cost_odd(s->cost[i]);
	s->cost[i] = v;
	s->cost_f[i] = (float)v;
}

/*
 * Bring the stale entries of model m that the job fits up to date, the way
 * hs__sched_job_cost_ns would read them: a fit due to be re-solved is
 * solved here, exactly where the prediction would have solved it. Entries
 * the job does not fit stay stale, their fit untouched.
 */
static void cost_refresh(hs_sched_t *s, uint32_t m, uint64_t kv, double B)
{
	uint64_t *stale = &s->cost_stale[m * s->dev_words];
	const uint64_t *lim = &s->fit_lim[m * s->n_devs];
	uint32_t w;

	for (w = 0; w < s->dev_words; w++) {
		uint64_t word = stale[w];

		while (word) {
			uint32_t d = w * 64 + (uint32_t)__builtin_ctzll(word);
			hs__perf_t *p = &s->perf[d * s->n_models + m];

			word &= word - 1;
			if (!(kv < lim[d]))
				continue;
			if (p->dirty)
				hs__perf_solve(p);
			cost_set(s, m, HS__COST_STEP, d,
				 p->theta[HS_PERF_STEP] +
					 p->theta[HS_PERF_JOB] * B);
			cost_set(s, m, HS__COST_CTX, d, p->theta[HS_PERF_CTX]);
			cost_set(s, m, HS__COST_PREFILL, d,
				 p->theta[HS_PERF_PREFILL]);
			cost_set(s, m, HS__COST_LOAD, d,
				 (double)load_ns(s, &s->devs[d], m) / B);
			stale[w] &= ~(1ull << (d % 64));
		}
	}
}

/* What finish_quads reads: the cost rows of a model, the backlogs and
 * the job's figures. */
typedef struct finish_in_s {
	const double *k_step, *k_ctx, *k_prefill, *k_load, *backlog;
	double *finish;
	double C, ctx, per;
} finish_in_t;

/*
 * The finish times of the devices four at a time, up to the last four:
 * into in->finish (store), or each lane's first earliest into lane_best
 * and lane_pick (not store). Returns the first device not done. Inlined
 * with store a constant: two loops without a test inside.
 */
static inline __attribute__((always_inline)) uint32_t finish_quads(
	const finish_in_t *in, uint32_t n, bool store, v4d *lane_best,
	v4i *lane_pick)
{
	const v4d zero = {0, 0, 0, 0}, min = {HS_PERF_MIN_NS, HS_PERF_MIN_NS,
					      HS_PERF_MIN_NS, HS_PERF_MIN_NS};
	v4i idx = {0, 1, 2, 3}, four = {4, 4, 4, 4};
	uint32_t d;

	for (d = 0; d + 4 <= n; d += 4) {
		v4d ks, kc, kp, kl, bl, t, step, f;
		v4i above;

		/* Loads as copies: no alignment is promised. */
		memcpy(&ks, in->k_step + d, sizeof(ks));
		memcpy(&kc, in->k_ctx + d, sizeof(kc));
		memcpy(&kp, in->k_prefill + d, sizeof(kp));
		memcpy(&kl, in->k_load + d, sizeof(kl));
		memcpy(&bl, in->backlog + d, sizeof(bl));
		t = ks + kc * in->C + kp * zero;
		above = t > min;
		step = (v4d)(((v4i)t & above) | ((v4i)min & ~above));
		f = bl + (kp * in->ctx + step * in->per + kl);
		if (store) {
			memcpy(in->finish + d, &f, sizeof(f));
		} else {
			/* Each lane keeps its first earliest. */
			v4i lt = f < *lane_best;

			*lane_best =
				(v4d)(((v4i)f & lt) | ((v4i)*lane_best & ~lt));
			*lane_pick = (idx & lt) | (*lane_pick & ~lt);
			idx += four;
		}
	}
	return d;
}

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8s __attribute__((vector_size(32)));

/* The lesser of a and b in each lane (b where either is NaN). */
#define VMIN8(a, b) \
	((v8f)(((v8s)(a) & ((a) < (b))) | ((v8s)(b) & ~((a) < (b)))))

/*
 * The device of the earliest finish, told from float copies of the entries
 * and of the backlogs less their base, eight devices a vector (half the
 * work per device of the double pass); -1 when the floats cannot tell, and
 * the double pass decides: an entry outside [0, 1e30), a backlog below the
 * base, or another device within 2^-19 of the least float time (and of the
 * double pass's own rounding at the backlogs' size). With every term at
 * least 0, a float time is within ten roundings of 2^-24 of the exact one:
 * a device above that bound finishes later in double too, so that a device
 * alone within it is the one the double pass picks. Subtracting the least
 * backlog keeps hours of backlog from taking the floats' precision.
 */
static inline __attribute__((always_inline)) int float_pick(
	const float *ks, const float *kc, const float *kp, const float *kl,
	const float *bl, uint32_t n, double C, double ctx, double per,
	double base)
{
	const float min = HS_PERF_MIN_NS, Cf = (float)C, xf = (float)ctx,
		    pf = (float)per;
	const v8f minv = {min, min, min, min, min, min, min, min};
	v8f best = {HUGE_VALF, HUGE_VALF, HUGE_VALF, HUGE_VALF,
		    HUGE_VALF, HUGE_VALF, HUGE_VALF, HUGE_VALF},
	    second = best;
	v8s pick = {-1, -1, -1, -1, -1, -1, -1, -1},
	    idx = {0, 1, 2, 3, 4, 5, 6, 7}, eight = {8, 8, 8, 8, 8, 8, 8, 8},
	    sign = {0};
	float b1 = HUGE_VALF, b2 = HUGE_VALF;
	int p1 = -1, neg = 0;
	uint32_t d;

	for (d = 0; d + 8 <= n; d += 8) {
		v8f vks, vkc, vkp, vkl, vbl, t, step, f, hi;
		v8s above, lt, le;

		memcpy(&vks, ks + d, sizeof(vks));
		memcpy(&vkc, kc + d, sizeof(vkc));
		memcpy(&vkp, kp + d, sizeof(vkp));
		memcpy(&vkl, kl + d, sizeof(vkl));
		memcpy(&vbl, bl + d, sizeof(vbl));
		t = vks + vkc * Cf;
		above = t > min;
		step = (v8f)(((v8s)t & above) | ((v8s)minv & ~above));
		f = vbl + (vkp * xf + step * pf + vkl);
		lt = f < best;
		/* The greater of f and best, against the second. */
		hi = (v8f)(((v8s)best & lt) | ((v8s)f & ~lt));
		le = hi < second;
		second = (v8f)(((v8s)hi & le) | ((v8s)second & ~le));
		best = (v8f)(((v8s)f & lt) | ((v8s)best & ~lt));
		pick = (idx & lt) | (pick & ~lt);
		idx += eight;
		sign |= (v8s)vbl;
	}
	/* Across the lanes, in the vectors: the least in every lane, the
	 * lanes that hold it (one, unless a tie), their pick, and the least
	 * of the others' bests and of their seconds. */
	{
		v8f lo = VMIN8(best, __builtin_shufflevector(best, best, 4, 5,
							     6, 7, 0, 1, 2, 3)),
		    rest;
		v8s at, any, one;

		lo = VMIN8(lo, __builtin_shufflevector(lo, lo, 2, 3, 0, 1, 6, 7,
						       4, 5));
		lo = VMIN8(lo, __builtin_shufflevector(lo, lo, 1, 0, 3, 2, 5, 4,
						       7, 6));
		at = best == lo;
		rest = (v8f)(((v8s)second & at) | ((v8s)best & ~at));
		rest = VMIN8(rest, __builtin_shufflevector(rest, rest, 4, 5, 6,
							   7, 0, 1, 2, 3));
		rest = VMIN8(rest, __builtin_shufflevector(rest, rest, 2, 3, 0,
							   1, 6, 7, 4, 5));
		rest = VMIN8(rest, __builtin_shufflevector(rest, rest, 1, 0, 3,
							   2, 5, 4, 7, 6));
		/* pick and sign or-ed, the holders counted (as -1 each). */
		any = (pick & at) |
		      (sign & (v8s){INT32_MIN, INT32_MIN, INT32_MIN, INT32_MIN,
				    INT32_MIN, INT32_MIN, INT32_MIN,
				    INT32_MIN});
		one = at;
		any |= __builtin_shufflevector(any, any, 4, 5, 6, 7, 0, 1, 2,
					       3);
		one += __builtin_shufflevector(one, one, 4, 5, 6, 7, 0, 1, 2,
					       3);
		any |= __builtin_shufflevector(any, any, 2, 3, 0, 1, 6, 7, 4,
					       5);
		one += __builtin_shufflevector(one, one, 2, 3, 0, 1, 6, 7, 4,
					       5);
		any |= __builtin_shufflevector(any, any, 1, 0, 3, 2, 5, 4, 7,
					       6);
		one += __builtin_shufflevector(one, one, 1, 0, 3, 2, 5, 4, 7,
					       6);
		b1 = lo[0];
		b2 = one[0] == -1 ? rest[0] : b1;
		neg = any[0] < 0;
		p1 = any[0] & INT32_MAX;
	}
	for (; d < n; d++) {
		float t = ks[d] + kc[d] * Cf, step = t > min ? t : min;
		float f = bl[d] + (kp[d] * xf + step * pf + kl[d]);

		neg |= signbit(bl[d]) != 0;
		if (f < b1) {
			b2 = b1;
			b1 = f;
			p1 = (int)d;
		} else if (f < b2) {
			b2 = f;
		}
	}
	if (neg || !(b1 < 1e30f) ||
	    !(b2 > b1 * (1.0f + 0x1p-19f) +
			   (float)((fabs(base) + 2.0 * b1) * 0x1p-45)))
		return -1;
	return p1;
}

/* float_pick on model m's rows and the backlogs; when it cannot tell and
 * a backlog changed since the base was set, again from a fresh base. */
static inline __attribute__((always_inline)) int finish_float(
	hs_sched_t *s, uint32_t m, uint32_t n, double C, double ctx, double per)
{
	const float *row = &s->cost_f[(size_t)m * HS__COST_N * n];
	const float *ks = row + HS__COST_STEP * n, *kc = row + HS__COST_CTX * n,
		    *kp = row + HS__COST_PREFILL * n,
		    *kl = row + HS__COST_LOAD * n;
	int pick;

	if (s->cost_odd[m])
		return -1;
	pick = float_pick(ks, kc, kp, kl, s->backlog_f, n, C, ctx, per,
			  s->backlog_base);
	if (pick < 0 && !s->base_fresh) {
		backlog_rebase(s);
		pick = float_pick(ks, kc, kp, kl, s->backlog_f, n, C, ctx, per,
				  s->backlog_base);
	}
	return pick;
}

HS__CLONES
int hs__sched_float_pick(const float *ks, const float *kc, const float *kp,
			 const float *kl, const float *bl, uint32_t n, double C,
			 double ctx, double per, double base)
{
	return float_pick(ks, kc, kp, kl, bl, n, C, ctx, per, base);
}

/*
 * Finish times of a job on every device, into s->finish; with pick, the
 * first device of the earliest (-1: none below HUGE_VAL) instead, found in
 * the same pass (s->finish is then left partly stale). hs__sched_job_cost_ns,
 * operation for operation, on the entries: the step time of a batch of B with
 * the job's context and no prefill (P = 0 kept in, as the prediction adds it),
 * floored (NaN too). Every device first, without branches, four at a time: each
 * lane does what the scalar code does, in the same order (ISO C mode contracts
 * nothing into fused multiply-adds). Then those the job does not fit,
 * whose entries may be stale. A pick among devices that all fit the job is
 * first asked of finish_float, which answers it as this pass would in most
 * cases, at half the cost.
 */
HS__CLONES
static void finish_pass(hs_sched_t *s, const hs_job_t *job, uint32_t batch,
			int *pick)
{
	uint32_t m = job->model, n = s->n_devs, d;
	uint64_t kv = job_kv(s, job);
	double B = batch ? batch : 1, ctx = job->ctx_tokens,
	       gen = job->gen_tokens, C = B * (ctx + gen / 2), per = gen / B;
	const uint64_t *lim = &s->fit_lim[m * n];
	const double *row = &s->cost[(size_t)m * HS__COST_N * n];
	double *restrict finish = s->finish, best = HUGE_VAL;
	bool all_fit;
	v4d lane_best = {HUGE_VAL, HUGE_VAL, HUGE_VAL, HUGE_VAL};
	v4i lane_pick = {-1, -1, -1, -1};
	finish_in_t q = {.k_step = row + HS__COST_STEP * n,
			 .k_ctx = row + HS__COST_CTX * n,
			 .k_prefill = row + HS__COST_PREFILL * n,
			 .k_load = row + HS__COST_LOAD * n,
			 .backlog = s->backlog,
			 .finish = finish,
			 .C = C,
			 .ctx = ctx,
			 .per = per};
	unsigned l;

	if (batch != s->cost_batch) {
		hs__sched_cost_stale_all(s);
		s->cost_batch = batch;
	}
	cost_refresh(s, m, kv, B);
	/* Below every device's limit, the job fits them all. */
	all_fit = kv < s->fit_min[m];
	/* The earliest is picked in the lanes only when every device fits
	 * the job; then no entry but the last ones' is read back. */
	if (pick && all_fit) {
		*pick = finish_float(s, m, n, C, ctx, per);
		if (*pick >= 0)
			return;
		d = finish_quads(&q, n, false, &lane_best, &lane_pick);
	} else {
		d = finish_quads(&q, n, true, &lane_best, &lane_pick);
	}
	for (; d < n; d++) {
		double t = q.k_step[d] + q.k_ctx[d] * C + q.k_prefill[d] * 0.0;
		double step = t > HS_PERF_MIN_NS ? t : HS_PERF_MIN_NS;

		finish[d] = q.backlog[d] +
			    (q.k_prefill[d] * ctx + step * per + q.k_load[d]);
	}
	if (!all_fit)
		for (d = 0; d < n; d++)
			if (!(kv < lim[d]))
				finish[d] = HUGE_VAL;
	if (!pick)
		return;
	*pick = -1;
	if (!all_fit) {
		for (d = 0; d < n; d++)
			if (finish[d] < best) {
				best = finish[d];
				*pick = (int)d;
			}
		return;
	}
	/* Lane l holds the devices d % 4 == l: the earliest of the lanes,
	 * the lowest device on a tie; then those past the last four. */
	for (l = 0; l < 4; l++)
		if (lane_pick[l] >= 0 &&
		    (*pick < 0 || lane_best[l] < best ||
		     (lane_best[l] == best && lane_pick[l] < *pick))) {
			best = lane_best[l];
			*pick = (int)lane_pick[l];
		}
	for (d = n & ~3u; d < n; d++)
		if (finish[d] < best || (finish[d] == best && (int)d < *pick)) {
			best = finish[d];
			*pick = (int)d;
		}
}

const double *hs__sched_finish_ns(hs_sched_t *s, const hs_job_t *job,
				  uint32_t batch)
{
	finish_pass(s, job, batch, NULL);
	return s->finish;
}

int hs__sched_earliest(hs_sched_t *s, const hs_job_t *job, uint32_t batch)
{
	int pick;

	finish_pass(s, job, batch, &pick);
	return pick;
}

void hs__sched_class_demand(const hs_sched_t *s, uint32_t model,
			    unsigned bucket, double *jobs_per_s,
			    double *tokens_per_s, double *mean_ctx)
{
	uint32_t c = model * s->n_buckets + bucket;
	double span = (double)(s->last_now - s->first_arrival_ns) / 1e9;

	if (s->first_arrival_ns < 0 || span <= 0)
		span = 1;
	*jobs_per_s = (double)s->class_jobs[c] / span;
	*tokens_per_s = (double)s->class_tokens[c] / span;
	*mean_ctx = s->class_jobs[c]
			    ? (double)s->class_ctx[c] / (double)s->class_jobs[c]
			    : 0;
}
