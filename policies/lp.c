/*
 * The lp policy: every epoch, a linear program over (model, context bucket)
 * classes, devices and power levels, solved with GLPK, plans the most
 * output tokens/s that the fleet can make for the observed mix of classes
 * under the power budget, each class capped at its observed demand; jobs
 * are dispatched in proportion to the plan's shares, and steps run at
 * levels chosen for every device busy at once (see plan_levels). The same
 * program without the demand cap is the throughput bound that the bench
 * reports every policy against (hs_sched_upper_bound): it holds the budget
 * on average over time, where the governor holds it at every instant, a
 * relaxation that bounds what any policy serves.
 */
#include <limits.h>
#include <math.h>
#include <string.h>

#include <glpk.h>

#include "internal.h"
#include "lp.h"
#include "policy.h"

/* Slack, relative to an optimum, that the solves after it may lose. */
#define LP_HOLD_REL 1e-9

/* Simplex iterations allowed: far more than a solve takes (tens for a few
 * hundred variables). */
#define LP_IT_BASE 1000
#define LP_IT_PER 50
/* The primal simplex's leash in a refinement (see run_refine). */
#define LP_IT_PER_REFINE 2

/* Rounding allowed when a level's draw is compared with the budget. */
#define LP_BUDGET_REL 1e-12

/* Head room over the observed demand, so that a growing class is not
 * starved until the next epoch measures it. */
#define LP_DEMAND_HEADROOM 1.1

/* An epoch re-plans only when a class's demand or the plan's output moved
 * by more than this (relative) since the plan was made, or the budget or
 * the fleet changed (see plan_current): a solve costs O(classes x devices
 * x levels) simplex work, and most epochs of a steady load would find the
 * same plan. */
#define LP_REPLAN_REL 0.05
/* ... and at least this often (epochs). */
#define LP_REPLAN_MAX_EPOCHS 30

/* A solution drawing this close to the budget is limited by it. */
#define LP_BOUND_REL 1e-6

/* How much later than the best device the planned one may finish a job
 * before the job goes to the best one. Tuned on simulated bursts and
 * overloads: 1.5 and 3 did no better overall. */
#define LP_BEHIND 2.0

/* ------------------------------------------------------------------------ */
/* The linear program                                                       */
/* ------------------------------------------------------------------------ */

static bool nonneg(double v)
{
	return isfinite(v) && v >= 0;
}

static int check_problem(const hs__lp_problem_t *p, double *idle_sum)
{
	bool any_mix = false;
	unsigned c, d, l;

	*idle_sum = 0;
	if (!p->n_levels || !p->rate || !p->cap_w || !p->idle_w ||
	    isnan(p->budget_w))
		return HS_EINVAL;
	if ((size_t)p->n_classes * p->n_devices >
	    (size_t)(INT_MAX / 8) / HS_MAX_POWER_LEVELS)
		return HS_ERANGE;
	for (d = 0; d < p->n_devices; d++) {
		if (p->n_levels[d] < 1 ||
		    p->n_levels[d] > HS_MAX_POWER_LEVELS ||
		    !nonneg(p->idle_w[d]))
			return HS_EINVAL;
		for (l = 0; l < p->n_levels[d]; l++)
			if (!nonneg(p->cap_w[d * HS_MAX_POWER_LEVELS + l]))
				return HS_EINVAL;
		*idle_sum += p->idle_w[d];
	}
	for (c = 0; c < p->n_classes; c++) {
		if (p->demand && isnan(p->demand[c]))
			return HS_EINVAL;
		if (p->mix && !nonneg(p->mix[c]))
			return HS_EINVAL;
		if (p->mix && p->mix[c] > 0)
			any_mix = true;
		for (d = 0; d < p->n_devices; d++)
			for (l = 0; l < p->n_levels[d]; l++)
				if (!nonneg(p->rate[hs__lp_index(p, c, d, l)]))
					return HS_EINVAL;
	}
	if (p->mix && !any_mix)
		return HS_EINVAL;
	return 0;
}

/*
 * Whether x[c,d,l] is a variable: the device can run the class, and the
 * level's draw with every other device idle fits the budget. The budget
 * holds at every instant, so a level that never fits never runs, however
 * little of the time the average would give it.
 */
static bool has_var(const hs__lp_problem_t *p, unsigned c, unsigned d,
		    unsigned l, double idle_sum)
{
	double alone_w;

	if (l >= p->n_levels[d] || !(p->rate[hs__lp_index(p, c, d, l)] > 0))
		return false;
	alone_w =
		idle_sum - p->idle_w[d] + p->cap_w[d * HS_MAX_POWER_LEVELS + l];
	return !(p->budget_w > 0 &&
		 alone_w > p->budget_w * (1 + LP_BUDGET_REL));
}

static bool capped(const hs__lp_problem_t *p, unsigned c)
{
	return p->demand && p->demand[c] >= 0 && isfinite(p->demand[c]);
}

/*
 * Rows and columns of a problem: which x each column is, and the row of
 * each constraint (0: none). The hold row carries the objective of the
 * first solve (the total output, or lambda with a mix) and the total row,
 * with a mix only, the total output; both are free until a later solve
 * holds them at their optimum.
 */
struct lp_layout {
	size_t *col_x; /* [j - 1]: index of column j's x */
	int n_x; /* x columns: 1 .. n_x */
	int lambda_col; /* 0 without mix */
	int *dev_row; /* [d] */
	int *dem_row; /* [c] */
	int *mix_row; /* [c] */
	int power_row;
	int hold_row;
	int total_row;
	int n_rows;
	int nnz;
};

static void layout_release(struct lp_layout *lo)
{
	hs__free(lo->col_x);
	hs__free(lo->dev_row);
	hs__free(lo->dem_row);
	hs__free(lo->mix_row);
}

static int layout_init(struct lp_layout *lo, const hs__lp_problem_t *p,
		       double idle_sum)
{
	unsigned c, d, l;
	size_t n = 0;

	memset(lo, 0, sizeof(*lo));
	for (c = 0; c < p->n_classes; c++)
		for (d = 0; d < p->n_devices; d++)
			for (l = 0; l < p->n_levels[d]; l++)
				n += has_var(p, c, d, l, idle_sum);
	lo->col_x = hs__calloc(n, sizeof(*lo->col_x));
	lo->dev_row = hs__calloc(p->n_devices, sizeof(*lo->dev_row));
	lo->dem_row = hs__calloc(p->n_classes, sizeof(*lo->dem_row));
	lo->mix_row = hs__calloc(p->n_classes, sizeof(*lo->mix_row));
	if (!lo->col_x || !lo->dev_row || !lo->dem_row || !lo->mix_row) {
		layout_release(lo);
		return HS_ENOMEM;
	}

	for (c = 0; c < p->n_classes; c++) {
		for (d = 0; d < p->n_devices; d++) {
			for (l = 0; l < p->n_levels[d]; l++) {
				if (!has_var(p, c, d, l, idle_sum))
					continue;
				lo->col_x[lo->n_x++] = hs__lp_index(p, c, d, l);
				if (!lo->dev_row[d])
					lo->dev_row[d] = ++lo->n_rows;
				if (capped(p, c) && !lo->dem_row[c])
					lo->dem_row[c] = ++lo->n_rows;
			}
		}
		/* A mix class that no device can run still gets its row: it
		 * holds lambda, and so the bound, at 0. */
		if (p->mix && p->mix[c] > 0)
			lo->mix_row[c] = ++lo->n_rows;
	}
	if (p->budget_w > 0)
		lo->power_row = ++lo->n_rows;
	lo->hold_row = ++lo->n_rows;
	if (p->mix) {
		lo->total_row = ++lo->n_rows;
		lo->lambda_col = lo->n_x + 1;
	}
	/* Per x: device, power, demand, mix and hold or total rows; lambda:
	 * its mix rows and the hold row. */
	lo->nnz = 5 * lo->n_x + (p->mix ? (int)p->n_classes + 1 : 0);
	return 0;
}

/* Coordinates of x in its problem. */
static void x_coords(const hs__lp_problem_t *p, size_t i, unsigned *c,
		     unsigned *d, unsigned *l)
{
	*l = i % HS_MAX_POWER_LEVELS;
	i /= HS_MAX_POWER_LEVELS;
	*d = i % p->n_devices;
	*c = i / p->n_devices;
}

static double marginal_w(const hs__lp_problem_t *p, unsigned d, unsigned l)
{
	return p->cap_w[d * HS_MAX_POWER_LEVELS + l] - p->idle_w[d];
}

/* The constraint matrix as GLPK loads it: 1-based triplets. */
struct lp_matrix {
	int *ia, *ja;
	double *ar;
	int ne;
};

static void put(struct lp_matrix *a, int row, int col, double v)
{
	a->ne++;
	a->ia[a->ne] = row;
	a->ja[a->ne] = col;
	a->ar[a->ne] = v;
}

static void set_bounds(glp_prob *lp, const hs__lp_problem_t *p,
		       const struct lp_layout *lo, double idle_sum)
{
	unsigned c, d;

	for (d = 0; d < p->n_devices; d++)
		if (lo->dev_row[d])
			glp_set_row_bnds(lp, lo->dev_row[d], GLP_UP, 0, 1);
	if (lo->power_row)
		glp_set_row_bnds(lp, lo->power_row, GLP_UP, 0,
				 p->budget_w - idle_sum);
	for (c = 0; c < p->n_classes; c++) {
		if (lo->dem_row[c])
			glp_set_row_bnds(lp, lo->dem_row[c], GLP_UP, 0,
					 p->demand[c]);
		if (lo->mix_row[c])
			glp_set_row_bnds(lp, lo->mix_row[c], GLP_LO, 0, 0);
	}
	glp_set_row_bnds(lp, lo->hold_row, GLP_FR, 0, 0);
	if (lo->total_row)
		glp_set_row_bnds(lp, lo->total_row, GLP_FR, 0, 0);
}

/* Rows, columns, bounds, the first objective and the matrix. */
static int load_problem(glp_prob *lp, const hs__lp_problem_t *p,
			const struct lp_layout *lo, double idle_sum)
{
	struct lp_matrix a;
	double mix_sum = 0;
	unsigned c, d, l;
	int j, term, rc = 0;

	a.ne = 0;
	a.ia = hs__calloc((size_t)lo->nnz + 1, sizeof(*a.ia));
	a.ja = hs__calloc((size_t)lo->nnz + 1, sizeof(*a.ja));
	a.ar = hs__calloc((size_t)lo->nnz + 1, sizeof(*a.ar));
	if (!a.ia || !a.ja || !a.ar) {
		rc = HS_ENOMEM;
		goto out_free;
	}

	glp_add_rows(lp, lo->n_rows);
	glp_add_cols(lp, lo->n_x + (lo->lambda_col ? 1 : 0));
	set_bounds(lp, p, lo, idle_sum);
	for (j = 1; j <= lo->n_x; j++) {
		size_t i = lo->col_x[j - 1];
		double r = p->rate[i], w;

		x_coords(p, i, &c, &d, &l);
		w = marginal_w(p, d, l);
		glp_set_col_bnds(lp, j, GLP_LO, 0, 0);
		glp_set_obj_coef(lp, j, p->mix ? 0 : r);
		put(&a, lo->dev_row[d], j, 1);
		if (lo->power_row && w != 0)
			put(&a, lo->power_row, j, w);
		if (lo->dem_row[c])
			put(&a, lo->dem_row[c], j, r);
		if (lo->mix_row[c])
			put(&a, lo->mix_row[c], j, r);
		put(&a, p->mix ? lo->total_row : lo->hold_row, j, r);
	}
	if (lo->lambda_col) {
		j = lo->lambda_col;
		for (c = 0; c < p->n_classes; c++)
			mix_sum += p->mix[c];
		glp_set_col_bnds(lp, j, GLP_LO, 0, 0);
		glp_set_obj_coef(lp, j, 1);
		for (c = 0; c < p->n_classes; c++)
			if (lo->mix_row[c])
				put(&a, lo->mix_row[c], j,
				    -p->mix[c] / mix_sum);
		put(&a, lo->hold_row, j, 1);
	}
	glp_set_obj_dir(lp, GLP_MAX);
	glp_load_matrix(lp, a.ne, a.ia, a.ja, a.ar);
	/* Rates run to thousands and time fractions to 1. Scaling reports
	 * on the terminal, which is not ours to write to. */
	term = glp_term_out(GLP_OFF);
	glp_scale_prob(lp, GLP_SF_AUTO);
	glp_term_out(term);

out_free:
	hs__free(a.ia);
	hs__free(a.ja);
	hs__free(a.ar);
	return rc;
}

/*
 * Without the presolver: it drops bound tightenings it deems too small, so
 * that a solution could exceed a demand cap by 1e-4 of it, and each solve
 * after the first starts from the last basis instead of from scratch. The
 * first solve uses the dual simplex (falling back on the primal). The
 * iteration limit bounds an epoch's work, and unlike a time limit it keeps
 * runs deterministic.
 */
static int simplex(glp_prob *lp, int meth, int it_per)
{
	glp_smcp parm;

	glp_init_smcp(&parm);
	parm.msg_lev = GLP_MSG_OFF;
	parm.presolve = GLP_OFF;
	parm.meth = meth;
	parm.it_lim = LP_IT_BASE +
		      it_per * (glp_get_num_rows(lp) + glp_get_num_cols(lp));
	if (glp_simplex(lp, &parm) != 0 || glp_get_status(lp) != GLP_OPT)
		return HS_ESOLVER;
	return 0;
}

static int run_simplex(glp_prob *lp)
{
	return simplex(lp, GLP_DUALP, LP_IT_PER);
}

/*
 * A refinement starts from an optimal basis, still primal feasible under
 * the new objective: the primal simplex goes on from there, where the dual
 * one first has to regain dual feasibility (with 64 devices, thousands of
 * iterations against tens). On the degenerate problems that holding an
 * optimum makes it can stall, so it gets a short leash, and the dual
 * simplex the rest.
 */
static int run_refine(glp_prob *lp)
{
	if (simplex(lp, GLP_PRIMAL, LP_IT_PER_REFINE) == 0)
		return 0;
	return run_simplex(lp);
}

static void read_x(glp_prob *lp, const struct lp_layout *lo, double *x)
{
	int j;

	for (j = 1; j <= lo->n_x; j++)
		x[lo->col_x[j - 1]] = fmin(fmax(glp_get_col_prim(lp, j), 0), 1);
}

/* Keep a row, which carries an objective already optimised, at its
 * optimum z while the next objective is solved for. */
static void hold(glp_prob *lp, int row, double z)
{
	glp_set_row_bnds(lp, row, GLP_LO, z - LP_HOLD_REL * fabs(z), 0);
}

/*
 * Among the optimal points, with a mix, one of most total output: spare
 * capacity serves the classes' remaining demand rather than idling, which
 * matters to the policy when the fleet is overloaded. Then, among those,
 * one of least power. A failure leaves the last point found, which is
 * optimal for the first objective all the same.
 */
static void refine(glp_prob *lp, const hs__lp_problem_t *p,
		   const struct lp_layout *lo, double z, double *x)
{
	unsigned c, d, l;
	int j;

	hold(lp, lo->hold_row, z);
	if (lo->lambda_col) {
		for (j = 1; j <= lo->n_x; j++)
			glp_set_obj_coef(lp, j, p->rate[lo->col_x[j - 1]]);
		glp_set_obj_coef(lp, lo->lambda_col, 0);
		if (run_refine(lp))
			return;
		read_x(lp, lo, x);
		hold(lp, lo->total_row, glp_get_obj_val(lp));
	}
	for (j = 1; j <= lo->n_x; j++) {
		x_coords(p, lo->col_x[j - 1], &c, &d, &l);
		glp_set_obj_coef(lp, j, marginal_w(p, d, l));
	}
	glp_set_obj_dir(lp, GLP_MIN);
	if (run_refine(lp) == 0)
		read_x(lp, lo, x);
}

int hs__lp_solve(const hs__lp_problem_t *p, hs__lp_solution_t *sol)
{
	size_t n_x = (size_t)p->n_classes * p->n_devices * HS_MAX_POWER_LEVELS;
	struct lp_layout lo;
	glp_prob *lp = NULL;
	double idle_sum, z, power;
	unsigned c, d, l;
	size_t i;
	int rc;

	memset(sol->x, 0, n_x * sizeof(*sol->x));
	sol->tokens_per_s = 0;
	sol->power_w = 0;
	rc = check_problem(p, &idle_sum);
	if (rc)
		goto out;
	if (p->budget_w > 0 && p->budget_w < idle_sum) {
		rc = HS_EINFEASIBLE;
		goto out;
	}
	rc = layout_init(&lo, p, idle_sum);
	if (rc)
		goto out;
	if (lo.n_x == 0) {
		sol->power_w = idle_sum;
		goto out_layout;
	}

	lp = glp_create_prob();
	rc = load_problem(lp, p, &lo, idle_sum);
	if (rc)
		goto out_prob;
	rc = run_simplex(lp);
	if (rc)
		goto out_prob;
	z = fmax(glp_get_obj_val(lp), 0);
	read_x(lp, &lo, sol->x);
	refine(lp, p, &lo, z, sol->x);

	power = idle_sum;
	for (i = 0; i < n_x; i++) {
		if (sol->x[i] == 0)
			continue;
		x_coords(p, i, &c, &d, &l);
		power += sol->x[i] * marginal_w(p, d, l);
	}
	sol->tokens_per_s = z;
	sol->power_w = power;

out_prob:
	if (rc)
		memset(sol->x, 0, n_x * sizeof(*sol->x));
	glp_delete_prob(lp);
out_layout:
	layout_release(&lo);
out:
	sol->status = rc;
	return rc;
}

/* ------------------------------------------------------------------------ */
/* The fleet as the core sees it                                            */
/* ------------------------------------------------------------------------ */

/*
 * A problem built from the core: classes are (model, bucket) pairs, class
 * c = model * n_buckets + bucket. observed[c] is the class's demand in
 * output tokens/s so far.
 */
struct lp_fleet {
	unsigned n_models, n_buckets;
	hs__lp_problem_t prob;
	unsigned *n_levels;
	double *rate;
	double *cap_w;
	double *idle_w;
	double *observed;
	double *x;
};

static size_t fleet_n_x(const struct lp_fleet *f)
{
	return (size_t)f->prob.n_classes * f->prob.n_devices *
	       HS_MAX_POWER_LEVELS;
}

static void fleet_release(struct lp_fleet *f)
{
	hs__free(f->n_levels);
	hs__free(f->rate);
	hs__free(f->cap_w);
	hs__free(f->idle_w);
	hs__free(f->observed);
	hs__free(f->x);
	memset(f, 0, sizeof(*f));
}

static int fleet_init(struct lp_fleet *f, const hs_sched_t *s)
{
	size_t nd = hs__sched_n_devices(s), nm = hs__sched_n_models(s);
	unsigned nb = hs__sched_n_buckets(s);
	size_t n_x;

	memset(f, 0, sizeof(*f));
	if (nd > UINT_MAX || nm > UINT_MAX / (nb ? nb : 1))
		return HS_ERANGE;
	f->n_models = (unsigned)nm;
	f->n_buckets = nb;
	f->prob.n_classes = (unsigned)nm * nb;
	f->prob.n_devices = (unsigned)nd;
	n_x = fleet_n_x(f);
	f->n_levels = hs__calloc(nd, sizeof(*f->n_levels));
	f->rate = hs__calloc(n_x, sizeof(*f->rate));
	f->cap_w = hs__calloc(nd * HS_MAX_POWER_LEVELS, sizeof(*f->cap_w));
	f->idle_w = hs__calloc(nd, sizeof(*f->idle_w));
	f->observed = hs__calloc(f->prob.n_classes, sizeof(*f->observed));
	f->x = hs__calloc(n_x, sizeof(*f->x));
	if (!f->n_levels || !f->rate || !f->cap_w || !f->idle_w ||
	    !f->observed || !f->x) {
		fleet_release(f);
		return HS_ENOMEM;
	}
	f->prob.n_levels = f->n_levels;
	f->prob.rate = f->rate;
	f->prob.cap_w = f->cap_w;
	f->prob.idle_w = f->idle_w;
	return 0;
}

static uint32_t to_u32(double v)
{
	if (!(v > 0))
		return 0;
	return v >= UINT32_MAX ? UINT32_MAX : (uint32_t)lround(v);
}

/*
 * Jobs of ctx prompt and gen output tokens that device d keeps in a batch
 * in steady state, 0 if one does not fit. The bound is the first of: the
 * batch limit; the KV cache that the device's memory holds after the
 * weights and the reserve, each job holding ctx + gen tokens as admission
 * counts them; and the step limit, since in steady state a batch of B jobs
 * that each live gen steps decodes B and prefills B * ctx / gen tokens a
 * step. The core's own admission decides for real; this only has to be
 * close.
 */
static double steady_batch(const hs_sched_t *s, int d, uint32_t m, double ctx,
			   double gen)
{
	const hs_sched_config_t *cfg = hs__sched_config(s);
	const hs_device_t *dev = hs__sched_device(s, d);
	const hs_model_t *mod = hs__sched_model(s, m);
	double b, kv, room, per_step;
	hs_job_t job;

	/* Only the model and the lengths matter to the fit. */
	memset(&job, 0, sizeof(job));
	job.model = m;
	job.ctx_tokens = to_u32(ctx);
	job.gen_tokens = to_u32(gen) ? to_u32(gen) : 1;
	job.device = -1;
	if (!dev || !mod || !hs__sched_job_fits(s, d, &job))
		return 0;

	b = cfg->max_batch_jobs ? cfg->max_batch_jobs : 1;
	kv = (ctx + gen) * (double)mod->kv_bytes_per_token;
	room = (double)dev->memory_bytes * (1 - cfg->kv_reserve) -
	       (double)mod->weight_bytes;
	if (kv > 0 && room / kv < b)
		b = floor(room / kv);
	per_step = 1 + ctx / gen;
	if (cfg->max_step_tokens && b * per_step > cfg->max_step_tokens)
		b = floor(cfg->max_step_tokens / per_step);
	return b < 1 ? 1 : b;
}

/* Output tokens/s of device d running class jobs of mean ctx and gen at
 * level l back to back, at the steady batch. */
static double class_rate(hs_sched_t *s, int d, uint32_t m, double b, double ctx,
			 double gen, int l)
{
	double t = hs__sched_predict_ns(s, d, m, b, b * (ctx + gen / 2),
					b * ctx / gen, l);

	return isfinite(t) && t > 0 ? b / t * 1e9 : 0;
}

/* Fill the devices' power figures, the classes' observed demand and every
 * rate from the core's current performance models. */
static void fleet_fill(struct lp_fleet *f, hs_sched_t *s)
{
	unsigned nd = f->prob.n_devices, m, b, c, d, l;
	double jobs, tokens, ctx, gen, batch;

	for (d = 0; d < nd; d++) {
		const hs_device_t *dev = hs__sched_device(s, (int)d);
		unsigned nl = dev->n_levels;

		f->idle_w[d] = dev->idle_w;
		if (nl == 0 || nl > HS_MAX_POWER_LEVELS) {
			/* A device without levels runs at its TDP. */
			f->n_levels[d] = 1;
			f->cap_w[d * HS_MAX_POWER_LEVELS] = dev->max_w;
			continue;
		}
		f->n_levels[d] = nl;
		for (l = 0; l < nl; l++)
			f->cap_w[d * HS_MAX_POWER_LEVELS + l] =
				dev->levels[l].cap_w;
	}

	memset(f->rate, 0, fleet_n_x(f) * sizeof(*f->rate));
	for (m = 0; m < f->n_models; m++) {
		for (b = 0; b < f->n_buckets; b++) {
			c = m * f->n_buckets + b;
			hs__sched_class_demand(s, m, b, &jobs, &tokens, &ctx);
			if (!(jobs > 0 && tokens > 0 && isfinite(tokens) &&
			      isfinite(ctx) && ctx >= 0)) {
				f->observed[c] = 0;
				continue;
			}
			f->observed[c] = tokens;
			gen = fmax(tokens / jobs, 1);
			for (d = 0; d < nd; d++) {
				if (!hs__sched_device_usable(s, (int)d))
					continue;
				batch = steady_batch(s, (int)d, m, ctx, gen);
				if (batch <= 0)
					continue;
				for (l = 0; l < f->n_levels[d]; l++)
					f->rate[hs__lp_index(&f->prob, c, d,
							     l)] =
						class_rate(s, (int)d, m, batch,
							   ctx, gen, (int)l);
			}
		}
	}
}

int hs_sched_upper_bound(hs_sched_t *s, double *tokens_per_s)
{
	hs__lp_solution_t sol;
	struct lp_fleet f;
	double total = 0;
	unsigned c;
	int rc;

	if (!s || !tokens_per_s)
		return HS_EINVAL;
	*tokens_per_s = 0;
	rc = fleet_init(&f, s);
	if (rc)
		return rc;
	fleet_fill(&f, s);
	for (c = 0; c < f.prob.n_classes; c++)
		total += f.observed[c];
	if (!(total > 0)) {
		rc = HS_ENOENT;
		goto out_fleet;
	}
	/* The solver scales the shares; classes never seen have none. */
	f.prob.mix = f.observed;
	f.prob.budget_w = hs__sched_budget(s);
	sol.x = f.x;
	rc = hs__lp_solve(&f.prob, &sol);
	if (rc == 0)
		*tokens_per_s = sol.tokens_per_s;

out_fleet:
	fleet_release(&f);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* The policy                                                               */
/* ------------------------------------------------------------------------ */

struct lp_state {
	struct lp_fleet fleet;
	double *demand; /* [c]: the cap, observed with head room */
	/* [c * n_devices + d]: output tokens/s the solution gives class c on
	 * device d, all levels together; all 0 when unsolved */
	double *share;
	/* [c * n_devices + d]: smooth weighted round-robin counters, in
	 * output tokens owed to the device */
	double *credit;
	/* What the plan was made from: demand per class, every rate, the
	 * budget (see LP_REPLAN_REL). */
	double *plan_observed;
	double *plan_rate;
	double plan_budget_w;
	unsigned plan_epochs; /* epochs the plan has been kept */
	/* [d]: the fastest level a step on device d may take (see
	 * plan_levels); 0 where nothing limits it */
	unsigned *top;
	/* [d * HS_MAX_POWER_LEVELS + l]: output tokens/s of device d at level
	 * l on the observed mix; scratch of plan_levels */
	double *mix_rate;
	bool solved;
	bool budget_bound; /* the solution draws all the budget */
};

static void lp_fini(void *state)
{
	struct lp_state *st = state;

	if (!st)
		return;
	fleet_release(&st->fleet);
	hs__free(st->demand);
	hs__free(st->share);
	hs__free(st->credit);
	hs__free(st->plan_observed);
	hs__free(st->plan_rate);
	hs__free(st->top);
	hs__free(st->mix_rate);
	hs__free(st);
}

static int lp_init(hs_sched_t *s, void **state)
{
	struct lp_state *st;
	size_t n;
	int rc;

	*state = NULL;
	st = hs__calloc(1, sizeof(*st));
	if (!st)
		return HS_ENOMEM;
	rc = fleet_init(&st->fleet, s);
	if (rc) {
		hs__free(st);
		return rc;
	}
	n = (size_t)st->fleet.prob.n_classes * st->fleet.prob.n_devices;
	st->demand = hs__calloc(st->fleet.prob.n_classes, sizeof(*st->demand));
	st->share = hs__calloc(n, sizeof(*st->share));
	st->credit = hs__calloc(n, sizeof(*st->credit));
	st->plan_observed = hs__calloc(st->fleet.prob.n_classes,
				       sizeof(*st->plan_observed));
	st->plan_rate =
		hs__calloc(fleet_n_x(&st->fleet), sizeof(*st->plan_rate));
	st->top = hs__calloc(st->fleet.prob.n_devices, sizeof(*st->top));
	st->mix_rate = hs__calloc((size_t)st->fleet.prob.n_devices *
					  HS_MAX_POWER_LEVELS,
				  sizeof(*st->mix_rate));
	if (!st->demand || !st->share || !st->credit || !st->plan_observed ||
	    !st->plan_rate || !st->top || !st->mix_rate) {
		lp_fini(st);
		return HS_ENOMEM;
	}
	st->fleet.prob.demand = st->demand;
	*state = st;
	return 0;
}

/* Whether a figure moved from the one the plan used: zero to non-zero (a
 * class appears, a device fails) always counts. */
static bool moved(double was, double now)
{
	if (was == now)
		return false;
	if (was == 0 || now == 0)
		return true;
	return fabs(now - was) > LP_REPLAN_REL * fabs(was);
}

/*
 * Whether the plan in force was made for about what the core sees now: the
 * same budget, the same classes and runnable (device, level) pairs, and for
 * every class its demand, and the output the plan gives it at today's
 * rates, within LP_REPLAN_REL of what they were. Single rates wander with
 * each refit of a device's model; what matters is whether the plan still
 * delivers what it promised each class. Every LP_REPLAN_MAX_EPOCHS epochs
 * it is made again all the same, so that a device the plan leaves out is
 * looked at again when its rates improve.
 */
static bool plan_current(const struct lp_state *st, double budget_w)
{
	const struct lp_fleet *f = &st->fleet;
	unsigned c, nd = f->prob.n_devices, d, l;

	if (!st->solved || budget_w != st->plan_budget_w)
		return false;
	for (c = 0; c < f->prob.n_classes; c++) {
		double then = 0, now = 0;

		if (moved(st->plan_observed[c], f->observed[c]))
			return false;
		for (d = 0; d < nd; d++)
			for (l = 0; l < HS_MAX_POWER_LEVELS; l++) {
				size_t i = hs__lp_index(&f->prob, c, d, l);

				if ((st->plan_rate[i] > 0) != (f->rate[i] > 0))
					return false;
				then += f->x[i] * st->plan_rate[i];
				now += f->x[i] * f->rate[i];
			}
		if (moved(then, now))
			return false;
	}
	return true;
}

static double cap_at(const struct lp_fleet *f, unsigned d, unsigned l)
{
	return f->cap_w[d * HS_MAX_POWER_LEVELS + l];
}

/* The level of the device that makes the most output per watt on the
 * observed mix; UINT_MAX where the device can run no observed class. */
static unsigned efficient_level(const struct lp_state *st, unsigned d)
{
	const struct lp_fleet *f = &st->fleet;
	const double *r = &st->mix_rate[d * HS_MAX_POWER_LEVELS];
	unsigned l, best = UINT_MAX;

	for (l = 0; l < f->n_levels[d]; l++) {
		if (!(r[l] > 0))
			continue;
		/* r / cap, compared without dividing by a cap of 0 */
		if (best == UINT_MAX ||
		    r[l] * cap_at(f, d, best) > r[best] * cap_at(f, d, l))
			best = l;
	}
	return best;
}

/*
 * The fastest level each device may take. The solution holds the budget on
 * average over time, the governor at every instant: a device that takes
 * the fastest level that fits when its step starts leaves too little for
 * the next one to start, and under load, with every device busy at once,
 * the fleet makes fewer tokens than at efficient levels. So the levels are
 * chosen for every device busy at once: each device that can run an
 * observed class starts at its most efficient level; then, while the draw
 * of all of them stays within the budget, the step up that buys the most
 * output per watt is taken (on the mix's rates: a greedy choice of one
 * level per device under the budget). Without a budget, or where every
 * device fits at its fastest level, nothing is limited and the governor's
 * choice stands. The solution's own levels are not used: it spreads them
 * over time, where the governor needs them side by side.
 */
static void plan_levels(struct lp_state *st)
{
	struct lp_fleet *f = &st->fleet;
	unsigned nd = f->prob.n_devices, c, d, l, up_d, up_l;
	double total = 0, draw = 0, budget = f->prob.budget_w, gain, best;

	memset(st->top, 0, nd * sizeof(*st->top));
	for (c = 0; c < f->prob.n_classes; c++)
		total += f->observed[c];
	if (!st->solved || !(budget > 0) || !(total > 0))
		return;
	for (d = 0; d < nd; d++) {
		double *r = &st->mix_rate[d * HS_MAX_POWER_LEVELS];

		for (l = 0; l < f->n_levels[d]; l++) {
			r[l] = 0;
			for (c = 0; c < f->prob.n_classes; c++)
				r[l] += f->observed[c] / total *
					f->rate[hs__lp_index(&f->prob, c, d,
							     l)];
		}
		l = efficient_level(st, d);
		if (l == UINT_MAX) {
			draw += f->idle_w[d];
			continue;
		}
		st->top[d] = l;
		draw += cap_at(f, d, l);
	}
	for (;;) {
		best = -1;
		up_d = up_l = 0;
		for (d = 0; d < nd; d++) {
			const double *r =
				&st->mix_rate[d * HS_MAX_POWER_LEVELS];
			unsigned at = st->top[d];

			for (l = 0; l < at; l++) {
				double dw = cap_at(f, d, l) - cap_at(f, d, at);

				if (!(r[l] > r[at]) ||
				    draw + dw > budget * (1 + LP_BUDGET_REL))
					continue;
				gain = dw > 0 ? (r[l] - r[at]) / dw : INFINITY;
				if (gain > best) {
					best = gain;
					up_d = d;
					up_l = l;
				}
			}
		}
		if (best < 0)
			break;
		draw += cap_at(f, up_d, up_l) - cap_at(f, up_d, st->top[up_d]);
		st->top[up_d] = up_l;
	}
}

static void lp_on_change(void *state, hs_sched_t *s, int64_t now)
{
	struct lp_state *st = state;
	struct lp_fleet *f = &st->fleet;
	unsigned nd = f->prob.n_devices, c, d, l;
	hs__lp_solution_t sol;
	double *share, total = 0;

	fleet_fill(f, s);
	if (++st->plan_epochs < LP_REPLAN_MAX_EPOCHS &&
	    plan_current(st, hs__sched_budget(s)))
		return;
	memcpy(st->plan_observed, f->observed,
	       f->prob.n_classes * sizeof(*f->observed));
	memcpy(st->plan_rate, f->rate, fleet_n_x(f) * sizeof(*f->rate));
	st->plan_budget_w = hs__sched_budget(s);
	st->plan_epochs = 0;
	for (c = 0; c < f->prob.n_classes; c++) {
		st->demand[c] = f->observed[c] * LP_DEMAND_HEADROOM;
		total += f->observed[c];
	}
	/* The mix keeps an overloaded fleet serving every class in
	 * proportion, where the total alone would starve the slow ones:
	 * every accepted job must run. */
	f->prob.mix = total > 0 ? f->observed : NULL;
	f->prob.budget_w = hs__sched_budget(s);
	sol.x = f->x;
	st->solved = hs__lp_solve(&f->prob, &sol) == 0;
	if (st->solved)
		hs__sched_count_replan(s);
	st->budget_bound = st->solved && f->prob.budget_w > 0 &&
			   sol.power_w >= f->prob.budget_w * (1 - LP_BOUND_REL);
	plan_levels(st);

	/* Counters from the old shares would skew the first rounds of the
	 * new ones. */
	memset(st->credit, 0,
	       (size_t)f->prob.n_classes * nd * sizeof(*st->credit));
	for (c = 0; c < f->prob.n_classes; c++) {
		for (d = 0; d < nd; d++) {
			share = &st->share[(size_t)c * nd + d];
			*share = 0;
			for (l = 0; l < f->n_levels[d]; l++) {
				size_t i = hs__lp_index(&f->prob, c, d, l);

				*share += f->x[i] * f->rate[i];
			}
		}
	}
}

static bool candidate(hs_sched_t *s, int d, const hs_job_t *job)
{
	return hs__sched_device_usable(s, d) && hs__sched_job_fits(s, d, job);
}

/* When the job would finish on device d (ns at full speed): the work
 * bound to it plus the job's own, at the device's steady batch. */
static double finish_ns(hs_sched_t *s, int d, const hs_job_t *job)
{
	double batch = steady_batch(s, d, job->model, job->ctx_tokens,
				    job->gen_tokens ? job->gen_tokens : 1);

	return hs__sched_backlog_ns(s, d) +
	       hs__sched_job_cost_ns(s, d, job,
				     batch > 0 ? (uint32_t)batch : 1);
}

/* Nothing running, nothing waiting. */
static bool idle(const hs_sched_t *s, int d)
{
	return hs__sched_batch_size(s, d) == 0 &&
	       hs__sched_backlog_ns(s, d) <= 0;
}

/* The device that would finish the job first, -1 if none can run it. */
static int earliest(hs_sched_t *s, const hs_job_t *job, double *when)
{
	int d, nd = (int)hs__sched_n_devices(s), best = -1;
	double t;

	*when = INFINITY;
	for (d = 0; d < nd; d++) {
		if (!candidate(s, d, job))
			continue;
		t = finish_ns(s, d, job);
		if (isnan(t))
			continue;
		if (best < 0 || t < *when) {
			best = d;
			*when = t;
		}
	}
	return best;
}

/*
 * Smooth weighted round-robin over the devices the solution gives the
 * job's class, weighted by their shares and charged in output tokens: over
 * any stretch, each device receives the class's tokens in proportion to
 * its share, within one job.
 *
 * The solution is a fluid plan: it knows neither the batches that drain
 * when a device switches class nor the budget instant by instant, and a
 * device can fall behind its share. A job whose planned device would
 * finish it more than LP_BEHIND times later than the first device to
 * finish it goes to that one instead; the planned device's turn is used up
 * all the same, so that the plan resumes once it has caught up. And unless
 * the budget is what limits the plan, a job never waits on a busy device
 * while another that can run it is idle: light load goes where it starts
 * at once, as the plan's shares matter only to a busy fleet.
 *
 * A job the solution has no share for (no solve yet, a class first seen
 * this epoch, an infeasible budget) goes where it would finish first: the
 * device with the highest rate for it when queues are even, without piling
 * a whole epoch's arrivals onto that one device.
 */
static int lp_route(void *state, hs_sched_t *s, const hs_job_t *job,
		    int64_t now)
{
	struct lp_state *st = state;
	struct lp_fleet *f = &st->fleet;
	unsigned nd = f->prob.n_devices, c, d;
	double total = 0, cost, first_t, *credit, *share;
	int first, planned = -1;

	first = earliest(s, job, &first_t);
	if (!st->solved || job->model >= f->n_models)
		return first;
	c = job->model * f->n_buckets + hs__sched_bucket_of(s, job->ctx_tokens);
	if (c >= f->prob.n_classes)
		return first;
	share = &st->share[(size_t)c * nd];
	credit = &st->credit[(size_t)c * nd];
	for (d = 0; d < nd; d++)
		if (share[d] > 0 && candidate(s, (int)d, job))
			total += share[d];
	if (!(total > 0))
		return first;

	cost = job->gen_tokens ? job->gen_tokens : 1;
	for (d = 0; d < nd; d++) {
		if (!(share[d] > 0) || !candidate(s, (int)d, job))
			continue;
		credit[d] += cost * share[d] / total;
		if (planned < 0 || credit[d] > credit[planned])
			planned = (int)d;
	}
	credit[planned] -= cost;
	if (first >= 0 && finish_ns(s, planned, job) > LP_BEHIND * first_t)
		return first;
	if (!st->budget_bound && !idle(s, planned) && first >= 0 &&
	    idle(s, first))
		return first;
	return planned;
}

/* The fastest level that fits now, unless the plan keeps the device
 * slower so that the others fit beside it (see plan_levels). */
static int lp_level(void *state, hs_sched_t *s, int device, int lo)
{
	struct lp_state *st = state;

	if (device < 0 || (unsigned)device >= st->fleet.prob.n_devices)
		return lo;
	return (int)st->top[device] > lo ? (int)st->top[device] : lo;
}

const struct hs_policy_ops hs__policy_lp = {
	.name = "lp",
	.summary = "LP over model x bucket classes, devices and power levels "
		   "(GLPK): most throughput for the observed mix under the "
		   "budget; dispatch follows its shares",
	.init = lp_init,
	.fini = lp_fini,
	.route = lp_route,
	.select = NULL,
	.level = lp_level,
	.on_change = lp_on_change,
};
