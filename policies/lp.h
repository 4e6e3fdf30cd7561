/*
 * Private to hetsched: not part of the public API, may change at any time.
 *
 * The linear program behind the lp policy and hs_sched_upper_bound(): a
 * fluid model of a fleet in which each device splits its time between
 * classes of jobs (a model and a context bucket) and power levels. It knows
 * nothing of the scheduler core, so that it can be tested on problems
 * solved by hand.
 */
#ifndef HS_LP_H
#define HS_LP_H

#include "hetsched.h"

/*
 * x[c,d,l] is the fraction of device d's time spent on class c at power
 * level l, indexed like rate. The solver maximises the output tokens/s
 * under:
 *
 *   time     for each device:  sum over c, l of x <= 1
 *   power    when budget_w > 0:
 *            sum_d idle_w[d] + sum x * (cap_w[d,l] - idle_w[d]) <= budget_w
 *            (the time-averaged draw: a schedule whose instantaneous draw
 *            never exceeds the budget meets it, so the bound holds); and
 *            a level whose cap plus the other devices' idle draws exceeds
 *            the budget gets no variable, since it could never run
 *   demand   when demand is given, for each class c with demand[c] >= 0:
 *            sum over d, l of x * rate <= demand[c]
 *   mix      when mix is given: see below
 *
 * Without mix the objective is the total rate, sum x * rate. With mix it is
 * the total of a mix-proportional output: a variable lambda with, for each
 * class c with mix[c] > 0, sum over d, l of x * rate >= lambda * mix[c], and
 * the objective lambda. Any schedule that serves the mix at T tokens/s
 * spends time fractions that satisfy these rows with lambda = T, so the
 * optimum bounds every policy from above; output beyond the mix does not
 * count.
 *
 * Among the optimal points the solver then picks, with a mix, one of most
 * total output (so that capacity the mix cannot use serves the classes'
 * remaining demand instead of idling), and then one of least power (so that
 * a demand met with room to spare goes to the most efficient devices and
 * levels rather than to an arbitrary vertex): each a further solve with the
 * objectives before it held at their optimum. tokens_per_s stays the first
 * optimum.
 *
 * Variables whose rate is 0 (the device cannot run the class) are left out.
 *
 * The instantaneous budget is only relaxed: two devices that the solution
 * keeps busy at once may together draw more than the budget for part of
 * the time. The optimum is a bound, not a schedule.
 */
typedef struct hs__lp_problem_s {
	unsigned n_classes, n_devices;
	/* [d]: levels of device d, 1 .. HS_MAX_POWER_LEVELS */
	const unsigned *n_levels;
	/* rate[(c * n_devices + d) * HS_MAX_POWER_LEVELS + l]: output
	 * tokens/s when device d spends all its time on class c at level l
	 * (0: cannot) */
	const double *rate;
	/* [d * HS_MAX_POWER_LEVELS + l]: draw of device d busy at level l */
	const double *cap_w;
	/* [d]: draw of device d idle */
	const double *idle_w;
	/* [c]: tokens/s cap (< 0: none for that class); NULL: no cap */
	const double *demand;
	/* [c]: shares of output tokens, scaled to sum to 1; NULL: no mix */
	const double *mix;
	/* <= 0: none */
	double budget_w;
} hs__lp_problem_t;

/* Index of x[c,d,l] and rate[c,d,l]. */
static inline size_t hs__lp_index(const hs__lp_problem_t *p, unsigned c,
				  unsigned d, unsigned l)
{
	return ((size_t)c * p->n_devices + d) * HS_MAX_POWER_LEVELS + l;
}

typedef struct hs__lp_solution_s {
	/* Caller-allocated, n_classes * n_devices * HS_MAX_POWER_LEVELS
	 * entries indexed like rate; filled with the time fractions (0 where
	 * no variable, and everywhere on failure). */
	double *x;
	/* The optimum: sum x * rate, or lambda with a mix. */
	double tokens_per_s;
	/* The time-averaged draw of x, idle draws included. */
	double power_w;
	/* What hs__lp_solve returned. */
	int status;
} hs__lp_solution_t;

/*
 * Solve p with GLPK's simplex (scaled, no presolver, silent). Returns, and
 * stores in sol->status, 0; HS_EINFEASIBLE when the budget is below the sum
 * of the idle draws; HS_EINVAL for a malformed problem (a level count out
 * of range, a negative or non-finite figure, a mix with no positive share);
 * HS_ERANGE for one too large for GLPK's int indices; HS_ENOMEM; HS_ESOLVER
 * when GLPK fails. On failure x is all zero and the figures are 0. A fleet
 * that can run nothing is not an error: its optimum is 0 tokens/s at idle
 * power.
 */
int hs__lp_solve(const hs__lp_problem_t *p, hs__lp_solution_t *sol);

#endif /* HS_LP_H */
