/*
 * The linear program of the lp policy on fleets small enough to solve by
 * hand. Each case gives its hand solution.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"
#include "lp.h"
#include "testutil.h"

#define EPS 1e-6
#define MAX_C 2
#define MAX_D 3
#define N_X (MAX_C * MAX_D * HS_MAX_POWER_LEVELS)

/* cmocka 1.1 compares floats only. */
#define assert_near(a, b, eps) \
	check_near((a), (b), (eps), #a, __FILE__, __LINE__)

static void check_near(double got, double want, double eps, const char *what,
		       const char *file, int line)
{
	if (fabs(got - want) <= eps)
		return;
	print_error("%s = %.12g, expected %.12g within %g\n", what, got, want,
		    eps);
	_fail(file, line);
}

/* A problem of up to MAX_C classes and MAX_D devices with its solution. */
struct fleet {
	unsigned n_levels[MAX_D];
	double rate[N_X];
	double cap_w[MAX_D * HS_MAX_POWER_LEVELS];
	double idle_w[MAX_D];
	double demand[MAX_C];
	double mix[MAX_C];
	double x[N_X];
	hs__lp_problem_t p;
	hs__lp_solution_t sol;
};

static void fleet_init(struct fleet *f, unsigned n_classes, unsigned n_devices)
{
	unsigned d;

	memset(f, 0, sizeof(*f));
	f->p.n_classes = n_classes;
	f->p.n_devices = n_devices;
	f->p.n_levels = f->n_levels;
	f->p.rate = f->rate;
	f->p.cap_w = f->cap_w;
	f->p.idle_w = f->idle_w;
	f->sol.x = f->x;
	for (d = 0; d < MAX_D; d++)
		f->n_levels[d] = 1;
}

static void set_level(struct fleet *f, unsigned d, unsigned l, double cap_w)
{
	f->cap_w[d * HS_MAX_POWER_LEVELS + l] = cap_w;
	if (f->n_levels[d] < l + 1)
		f->n_levels[d] = l + 1;
}

static void set_rate(struct fleet *f, unsigned c, unsigned d, unsigned l,
		     double rate)
{
	f->rate[hs__lp_index(&f->p, c, d, l)] = rate;
}

static double x_of(const struct fleet *f, unsigned c, unsigned d, unsigned l)
{
	return f->x[hs__lp_index(&f->p, c, d, l)];
}

static int solve(struct fleet *f)
{
	int rc = hs__lp_solve(&f->p, &f->sol);

	assert_int_equal(f->sol.status, rc);
	return rc;
}

/*
 * One class on two devices: 100 tok/s at 300 W and 50 tok/s at 200 W, both
 * 50 W idle.
 */
static void two_devices(struct fleet *f)
{
	fleet_init(f, 1, 2);
	set_level(f, 0, 0, 300);
	set_level(f, 1, 0, 200);
	f->idle_w[0] = f->idle_w[1] = 50;
	set_rate(f, 0, 0, 0, 100);
	set_rate(f, 0, 1, 0, 50);
}

/* No budget: both devices all the time, 150 tok/s at 300 + 200 W. */
static void test_no_budget(void **state)
{
	struct fleet f;

	two_devices(&f);
	assert_int_equal(solve(&f), 0);
	assert_near(f.sol.tokens_per_s, 150, EPS);
	assert_near(x_of(&f, 0, 0, 0), 1, EPS);
	assert_near(x_of(&f, 0, 1, 0), 1, EPS);
	assert_near(f.sol.power_w, 500, EPS);
}

/*
 * 400 W: 100 + 250 x1 + 150 x2 <= 400. Device 1 gives 0.4 tok/J over idle,
 * device 2 0.33: x1 = 1 takes 250 W, the 50 W left give x2 = 1/3, so
 * 100 + 50/3 tok/s at exactly 400 W.
 */
static void test_budget(void **state)
{
	struct fleet f;

	two_devices(&f);
	f.p.budget_w = 400;
	assert_int_equal(solve(&f), 0);
	assert_near(f.sol.tokens_per_s, 100 + 50.0 / 3, EPS);
	assert_near(x_of(&f, 0, 0, 0), 1, EPS);
	assert_near(x_of(&f, 0, 1, 0), 1.0 / 3, EPS);
	assert_near(f.sol.power_w, 400, EPS);

	/* Exactly the idle draws: feasible, nothing runs. */
	f.p.budget_w = 100;
	assert_int_equal(solve(&f), 0);
	assert_near(f.sol.tokens_per_s, 0, EPS);
	assert_near(f.sol.power_w, 100, EPS);
}

/*
 * One device, 50 W idle, level 0: 100 tok/s at 300 W, level 1: 80 tok/s at
 * 200 W.
 */
static void two_levels(struct fleet *f)
{
	fleet_init(f, 1, 1);
	f->idle_w[0] = 50;
	set_level(f, 0, 0, 300);
	set_level(f, 0, 1, 200);
	set_rate(f, 0, 0, 0, 100);
	set_rate(f, 0, 0, 1, 80);
}

static void test_levels(void **state)
{
	struct fleet f;

	two_levels(&f);
	/* No budget: the fast level all the time. */
	assert_int_equal(solve(&f), 0);
	assert_near(f.sol.tokens_per_s, 100, EPS);
	assert_near(x_of(&f, 0, 0, 0), 1, EPS);
	assert_near(x_of(&f, 0, 0, 1), 0, EPS);

	/* 200 W: 250 x0 + 150 x1 <= 150, so x1 = 1 alone fits: 80 tok/s. */
	f.p.budget_w = 200;
	assert_int_equal(solve(&f), 0);
	assert_near(f.sol.tokens_per_s, 80, EPS);
	assert_near(x_of(&f, 0, 0, 0), 0, EPS);
	assert_near(x_of(&f, 0, 0, 1), 1, EPS);
	assert_near(f.sol.power_w, 200, EPS);

	/*
	 * 250 W: on average, 250 x0 + 150 x1 <= 200 and x0 + x1 <= 1 would
	 * allow x0 = x1 = 0.5 and 90 tok/s; but level 0 draws 300 W whenever
	 * it runs, which the budget never allows: x1 = 1, 80 tok/s at 200 W.
	 */
	f.p.budget_w = 250;
	assert_int_equal(solve(&f), 0);
	assert_near(f.sol.tokens_per_s, 80, EPS);
	assert_near(x_of(&f, 0, 0, 0), 0, EPS);
	assert_near(x_of(&f, 0, 0, 1), 1, EPS);
	assert_near(f.sol.power_w, 200, EPS);

	/* 300 W: level 0 fits, all the time. */
	f.p.budget_w = 300;
	assert_int_equal(solve(&f), 0);
	assert_near(f.sol.tokens_per_s, 100, EPS);
	assert_near(x_of(&f, 0, 0, 0), 1, EPS);
}

/*
 * Two devices with two levels each, 50 W idle: device 1 makes 100 tok/s at
 * 300 W or 60 at 150 W, device 2 50 at 200 W or 40 at 150 W. At 350 W,
 * device 1's level 0 fits only with device 2 idle (300 + 50) and device
 * 2's level 0 with device 1 idle (200 + 50 <= 350): both are variables.
 * On average 100 + sum x (cap - 50) <= 350. Per watt over idle: device 1
 * 0.4 (level 0) and 0.6 (level 1), device 2 0.333 and 0.4. Device 1 at
 * level 1 all the time takes 100 W and makes 60; the 150 W left go to
 * device 2 at level 1 (0.4 tok/J, all of its time: 100 W, 40 tok/s), then
 * 50 W of device 1's upgrade to level 0 (40 more tok/s for 150 W more,
 * 0.267 tok/J, against device 2's 10 more for 50 W, 0.2): x10 = 1/3,
 * x11 = 2/3, 100/3 + 40 + 40 = 113.33 tok/s.
 */
static void test_levels_shared(void **state)
{
	struct fleet f;

	fleet_init(&f, 1, 2);
	f.idle_w[0] = f.idle_w[1] = 50;
	set_level(&f, 0, 0, 300);
	set_level(&f, 0, 1, 150);
	set_level(&f, 1, 0, 200);
	set_level(&f, 1, 1, 150);
	set_rate(&f, 0, 0, 0, 100);
	set_rate(&f, 0, 0, 1, 60);
	set_rate(&f, 0, 1, 0, 50);
	set_rate(&f, 0, 1, 1, 40);
	f.p.budget_w = 350;
	assert_int_equal(solve(&f), 0);
	assert_near(f.sol.tokens_per_s, 100.0 / 3 + 40 + 40, EPS);
	assert_near(x_of(&f, 0, 0, 0), 1.0 / 3, EPS);
	assert_near(x_of(&f, 0, 0, 1), 2.0 / 3, EPS);
	assert_near(x_of(&f, 0, 1, 0), 0, EPS);
	assert_near(x_of(&f, 0, 1, 1), 1, EPS);
	assert_near(f.sol.power_w, 350, EPS);

	/* 300 W: device 1's level 0 (300 + 50) never fits. */
	f.p.budget_w = 300;
	assert_int_equal(solve(&f), 0);
	assert_near(x_of(&f, 0, 0, 0), 0, EPS);
}

static void test_demand(void **state)
{
	struct fleet f;

	/*
	 * 30 tok/s asked of the two devices: met, and by the device with
	 * the most tokens per joule over idle, x1 = 0.3: 100 + 0.3 * 250 W.
	 */
	two_devices(&f);
	f.demand[0] = 30;
	f.p.demand = f.demand;
	assert_int_equal(solve(&f), 0);
	assert_near(f.sol.tokens_per_s, 30, EPS);
	assert_near(x_of(&f, 0, 0, 0), 0.3, EPS);
	assert_near(x_of(&f, 0, 1, 0), 0, EPS);
	assert_near(f.sol.power_w, 175, EPS);

	/* More than the fleet makes: the cap does not bind. */
	f.demand[0] = 1000;
	assert_int_equal(solve(&f), 0);
	assert_near(f.sol.tokens_per_s, 150, EPS);

	/* A negative demand is no cap. */
	f.demand[0] = -1;
	assert_int_equal(solve(&f), 0);
	assert_near(f.sol.tokens_per_s, 150, EPS);

	/*
	 * 40 tok/s on the two-level device: level 0 would take 0.4 of the
	 * time at 250 W over idle (100 W), level 1 0.5 at 150 W (75 W):
	 * the slow level, 50 + 75 W.
	 */
	two_levels(&f);
	f.demand[0] = 40;
	f.p.demand = f.demand;
	assert_int_equal(solve(&f), 0);
	assert_near(f.sol.tokens_per_s, 40, EPS);
	assert_near(x_of(&f, 0, 0, 0), 0, EPS);
	assert_near(x_of(&f, 0, 0, 1), 0.5, EPS);
	assert_near(f.sol.power_w, 125, EPS);
}

/*
 * Two classes A, B on two devices, no idle draw, 100 W busy. Device 1 makes
 * 100 tok/s of A or 20 of B, device 2 50 of either. Mix 1:1, so A = B =
 * lambda / 2. Device 1 has the edge on A (5:1 against 1:1): device 2 makes
 * B all the time (50) and device 1 splits, 100 a = 20 (1 - a) + 50, so
 * a = 7/12, A = B = 175/3 and lambda = 350/3. Without the mix, everything
 * on A: 150.
 */
static void mixed_fleet(struct fleet *f)
{
	fleet_init(f, 2, 2);
	set_level(f, 0, 0, 100);
	set_level(f, 1, 0, 100);
	set_rate(f, 0, 0, 0, 100);
	set_rate(f, 1, 0, 0, 20);
	set_rate(f, 0, 1, 0, 50);
	set_rate(f, 1, 1, 0, 50);
}

static void test_mix(void **state)
{
	struct fleet f;

	mixed_fleet(&f);
	assert_int_equal(solve(&f), 0);
	assert_near(f.sol.tokens_per_s, 150, EPS);

	f.mix[0] = f.mix[1] = 0.5;
	f.p.mix = f.mix;
	assert_int_equal(solve(&f), 0);
	assert_near(f.sol.tokens_per_s, 350.0 / 3, EPS);
	assert_near(x_of(&f, 0, 0, 0), 7.0 / 12, EPS);
	assert_near(x_of(&f, 1, 0, 0), 5.0 / 12, EPS);
	assert_near(x_of(&f, 0, 1, 0), 0, EPS);
	assert_near(x_of(&f, 1, 1, 0), 1, EPS);
	assert_near(f.sol.power_w, 200, EPS);

	/* Shares are scaled: 3:3 is 1:1. */
	f.mix[0] = f.mix[1] = 3;
	assert_int_equal(solve(&f), 0);
	assert_near(f.sol.tokens_per_s, 350.0 / 3, EPS);

	/* All B: device 1 makes 20, device 2 50, and A gets no time. */
	f.mix[0] = 0;
	f.mix[1] = 1;
	assert_int_equal(solve(&f), 0);
	assert_near(f.sol.tokens_per_s, 70, EPS);
	assert_near(x_of(&f, 0, 0, 0), 0, EPS);
	assert_near(x_of(&f, 0, 1, 0), 0, EPS);
	assert_near(f.sol.power_w, 200, EPS);

	/*
	 * 150 W of budget (no idle draw): 1.5 devices of time. Per unit of
	 * lambda the cheapest is still device 2 on B (2/100 of its time per
	 * tok/s of B) and device 1 on A (1/100): lambda / 2 of each costs
	 * lambda * (1/200 + 1/100) of time and 100 W per unit of time, so
	 * lambda = 150 / (100 * 0.015) = 100 with device 2 all on B (50) and
	 * device 1 on A for 0.5.
	 */
	f.mix[0] = f.mix[1] = 0.5;
	f.p.budget_w = 150;
	assert_int_equal(solve(&f), 0);
	assert_near(f.sol.tokens_per_s, 100, EPS);
	assert_near(x_of(&f, 0, 0, 0), 0.5, EPS);
	assert_near(x_of(&f, 1, 1, 0), 1, EPS);
	assert_near(f.sol.power_w, 150, EPS);
}

/*
 * Capacity the mix cannot use: A runs only on device 1 (100 tok/s), B only
 * on device 2 (50). At 1:1, B's 50 holds lambda at 100 and A needs half of
 * device 1; the other half still makes A (x = 1, 150 tok/s made) while the
 * bound stays 100. A demand of 70 on A stops it at x = 0.7.
 */
static void test_mix_spare(void **state)
{
	struct fleet f;

	mixed_fleet(&f);
	set_rate(&f, 1, 0, 0, 0);
	set_rate(&f, 0, 1, 0, 0);
	f.mix[0] = f.mix[1] = 0.5;
	f.p.mix = f.mix;
	assert_int_equal(solve(&f), 0);
	assert_near(f.sol.tokens_per_s, 100, EPS);
	assert_near(x_of(&f, 0, 0, 0), 1, EPS);
	assert_near(x_of(&f, 1, 1, 0), 1, EPS);
	assert_near(f.sol.power_w, 200, EPS);

	f.demand[0] = 70;
	f.demand[1] = -1;
	f.p.demand = f.demand;
	assert_int_equal(solve(&f), 0);
	assert_near(f.sol.tokens_per_s, 100, EPS);
	assert_near(x_of(&f, 0, 0, 0), 0.7, EPS);
	assert_near(x_of(&f, 1, 1, 0), 1, EPS);
	assert_near(f.sol.power_w, 170, EPS);
}

/* A class of the mix that no device can run holds the bound at 0; the
 * fleet still makes the other class, beyond the mix. */
static void test_mix_unservable(void **state)
{
	struct fleet f;

	mixed_fleet(&f);
	set_rate(&f, 1, 0, 0, 0);
	set_rate(&f, 1, 1, 0, 0);
	f.mix[0] = 0.9;
	f.mix[1] = 0.1;
	f.p.mix = f.mix;
	assert_int_equal(solve(&f), 0);
	assert_near(f.sol.tokens_per_s, 0, EPS);
	assert_near(x_of(&f, 0, 0, 0), 1, EPS);
	assert_near(x_of(&f, 0, 1, 0), 1, EPS);
	assert_near(f.sol.power_w, 200, EPS);
}

static void test_infeasible(void **state)
{
	struct fleet f;
	unsigned i;

	two_devices(&f);
	f.p.budget_w = 99;
	f.x[0] = 7;
	assert_int_equal(solve(&f), HS_EINFEASIBLE);
	assert_near(f.sol.tokens_per_s, 0, 0);
	for (i = 0; i < N_X; i++)
		assert_true(f.x[i] == 0);
}

/* A fleet that can run nothing: 0 tok/s at idle, not an error. */
static void test_nothing_runs(void **state)
{
	struct fleet f;

	two_devices(&f);
	set_rate(&f, 0, 0, 0, 0);
	set_rate(&f, 0, 1, 0, 0);
	f.p.budget_w = 1000;
	assert_int_equal(solve(&f), 0);
	assert_near(f.sol.tokens_per_s, 0, 0);
	assert_near(f.sol.power_w, 100, EPS);

	fleet_init(&f, 0, 0);
	assert_int_equal(solve(&f), 0);
	assert_near(f.sol.tokens_per_s, 0, 0);
}

static void test_invalid(void **state)
{
	struct fleet f;

	two_devices(&f);
	f.n_levels[1] = 0;
	assert_int_equal(solve(&f), HS_EINVAL);
	f.n_levels[1] = HS_MAX_POWER_LEVELS + 1;
	assert_int_equal(solve(&f), HS_EINVAL);

	two_devices(&f);
	set_rate(&f, 0, 1, 0, -5);
	assert_int_equal(solve(&f), HS_EINVAL);

	two_devices(&f);
	f.idle_w[0] = NAN;
	assert_int_equal(solve(&f), HS_EINVAL);

	/* A mix with no share would leave lambda unbounded. */
	two_devices(&f);
	f.p.mix = f.mix;
	assert_int_equal(solve(&f), HS_EINVAL);
}

/*
 * Three devices, three levels, two classes, budget and demand together:
 * whatever the optimum, it must respect every constraint.
 */
static void test_constraints_hold(void **state)
{
	static const double caps[MAX_D][3] = {
		{700, 500, 350}, {400, 300, 250}, {250, 180, 120}};
	static const double speed[3] = {1, 0.85, 0.6};
	static const double base[MAX_C][MAX_D] = {{900, 400, 120},
						  {300, 250, 90}};
	double budget, made[MAX_C], time, power;
	struct fleet f;
	unsigned c, d, l;

	for (budget = 500; budget <= 1500; budget += 125) {
		fleet_init(&f, 2, 3);
		for (d = 0; d < MAX_D; d++) {
			f.idle_w[d] = 60 + 20.0 * d;
			for (l = 0; l < 3; l++) {
				set_level(&f, d, l, caps[d][l]);
				for (c = 0; c < MAX_C; c++)
					set_rate(&f, c, d, l,
						 base[c][d] * speed[l]);
			}
		}
		f.demand[0] = 700;
		f.demand[1] = 250;
		f.p.demand = f.demand;
		f.p.budget_w = budget;
		assert_int_equal(solve(&f), 0);

		power = 0;
		made[0] = made[1] = 0;
		for (d = 0; d < MAX_D; d++) {
			time = 0;
			power += f.idle_w[d];
			for (c = 0; c < MAX_C; c++) {
				for (l = 0; l < 3; l++) {
					double x = x_of(&f, c, d, l);

					assert_true(x >= 0);
					time += x;
					made[c] += x * base[c][d] * speed[l];
					power += x * (caps[d][l] - f.idle_w[d]);
				}
			}
			assert_true(time <= 1 + EPS);
		}
		assert_true(made[0] <= 700 + EPS);
		assert_true(made[1] <= 250 + EPS);
		assert_true(power <= budget + EPS);
		assert_near(power, f.sol.power_w, EPS);
		assert_near(made[0] + made[1], f.sol.tokens_per_s,
			    1e-6 * f.sol.tokens_per_s);
	}
}

/* ---- the bound against the scheduler core ---------------------------- */

#define N_SIM_DEV 2
#define N_SIM_JOBS 240

/*
 * A minimal virtual-time driver: job i of N_SIM_JOBS arrives at i * gap_ns,
 * one in three with a long prompt and a short answer; steps take their
 * predicted time.
 */
struct driver {
	hs_sched_t *s;
	int64_t now;
	int64_t gap_ns;
	uint32_t model;
	int submitted;
	uint64_t tokens; /* output tokens asked for */
	int64_t end[N_SIM_DEV]; /* -1: idle */
	int64_t took[N_SIM_DEV];
	int64_t timer; /* -1: none asked */
};

static void on_step(void *ud, const hs_step_t *step)
{
	struct driver *dr = ud;

	assert_true(step->device >= 0 && step->device < N_SIM_DEV);
	assert_true(step->predicted_ns > 0);
	dr->took[step->device] = step->predicted_ns;
	dr->end[step->device] = dr->now + step->predicted_ns;
}

static void on_timer(void *ud, int64_t when)
{
	struct driver *dr = ud;

	if (dr->timer < 0 || when < dr->timer)
		dr->timer = when;
}

static void driver_init(struct driver *dr, hs_sched_hooks_t *hooks,
			uint32_t model, int64_t gap_ns)
{
	memset(dr, 0, sizeof(*dr));
	dr->model = model;
	dr->gap_ns = gap_ns;
	dr->timer = -1;
	dr->end[0] = dr->end[1] = -1;
	memset(hooks, 0, sizeof(*hooks));
	hooks->step_start = on_step;
	hooks->timer = on_timer;
	hooks->ud = dr;
}

static void submit_next(struct driver *dr)
{
	hs_job_spec_t spec = {.model = dr->model, .deadline_ns = -1};
	bool long_prompt = dr->submitted % 3 == 0;
	hs_error_t err;
	uint64_t id;

	spec.ctx_tokens = long_prompt ? 3000 : 400;
	spec.gen_tokens = long_prompt ? 50 : 200;
	assert_int_equal(hs_sched_submit(dr->s, dr->now, &spec, &id, &err), 0);
	dr->tokens += spec.gen_tokens;
	dr->submitted++;
}

/* Run until every job is done; the time it took. */
static int64_t drive(struct driver *dr)
{
	hs_sched_stats_t st;
	int64_t next, arrival;
	int d, which;

	for (;;) {
		hs_sched_stats(dr->s, &st);
		if (dr->submitted == N_SIM_JOBS && st.completed == st.submitted)
			return dr->now;
		arrival = dr->submitted < N_SIM_JOBS
				  ? dr->submitted * dr->gap_ns
				  : -1;
		next = arrival;
		which = -2;
		for (d = 0; d < N_SIM_DEV; d++) {
			if (dr->end[d] >= 0 &&
			    (next < 0 || dr->end[d] < next)) {
				next = dr->end[d];
				which = d;
			}
		}
		if (dr->timer >= 0 && (next < 0 || dr->timer < next)) {
			next = dr->timer;
			which = -1;
		}
		assert_true(next >= 0);
		dr->now = next > dr->now ? next : dr->now;
		if (which >= 0) {
			dr->end[which] = -1;
			assert_int_equal(
				hs_sched_step_done(dr->s, dr->now, which,
						   dr->took[which], -1),
				0);
		} else if (which == -1) {
			dr->timer = -1;
			assert_int_equal(hs_sched_timer(dr->s, dr->now), 0);
		} else {
			submit_next(dr);
		}
	}
}

/* An H100-like device and a smaller one, with three and two levels. */
static void sim_devices(hs_device_t *dev)
{
	memset(dev, 0, N_SIM_DEV * sizeof(*dev));
	hs__strlcpy(dev[0].name, "big", sizeof(dev[0].name));
	dev[0].memory_bytes = 80ull << 30;
	dev[0].mem_bw_gbs = 3350;
	dev[0].peak_tflops = 989;
	dev[0].idle_w = 100;
	dev[0].max_w = 700;
	dev[0].levels[0] = (hs_power_level_t){700, 1.0};
	dev[0].levels[1] = (hs_power_level_t){500, 0.8};
	dev[0].levels[2] = (hs_power_level_t){300, 0.5};
	dev[0].n_levels = 3;
	hs__strlcpy(dev[1].name, "small", sizeof(dev[1].name));
	dev[1].memory_bytes = 24ull << 30;
	dev[1].mem_bw_gbs = 864;
	dev[1].peak_tflops = 180;
	dev[1].idle_w = 30;
	dev[1].max_w = 300;
	dev[1].levels[0] = (hs_power_level_t){300, 1.0};
	dev[1].levels[1] = (hs_power_level_t){200, 0.75};
	dev[1].n_levels = 2;
	for (int d = 0; d < N_SIM_DEV; d++) {
		dev[d].id = d;
		dev[d].kind = HS_KIND_GPU;
		dev[d].backend = HS_BACKEND_SIM;
		dev[d].numa_node = -1;
		dev[d].cl_platform = dev[d].cl_device = -1;
	}
}

static uint32_t model_index(const hs_model_catalog_t *cat, const char *name)
{
	size_t i;

	for (i = 0; i < hs_model_catalog_count(cat); i++)
		if (!strcmp(hs_model_catalog_get(cat, i)->name, name))
			return (uint32_t)i;
	fail_msg("no model %s", name);
	return 0;
}

/*
 * Every policy makes no more output tokens per second than the bound, on a
 * burst (gap 0) or on arrivals faster than the fleet; and the bound is no
 * fluke of units: the best policy comes within a factor of it.
 */
static void bound_holds(const hs_model_catalog_t *cat, double budget_w,
			int64_t gap_ns)
{
	const char *const *names = hs_policy_names();
	double bound = 0, achieved, best = 0, b;
	hs_device_t dev[N_SIM_DEV];
	hs_sched_hooks_t hooks;
	hs_sched_config_t cfg;
	struct driver dr;
	hs_error_t err;
	size_t p;

	sim_devices(dev);
	for (p = 0; names[p]; p++) {
		driver_init(&dr, &hooks, model_index(cat, "Llama-3.1-8B"),
			    gap_ns);
		hs_sched_config_init(&cfg);
		cfg.policy = names[p];
		assert_int_equal(hs_sched_new(&dr.s, &cfg, cat, dev, N_SIM_DEV,
					      &hooks, &err),
				 0);
		if (budget_w > 0)
			assert_int_equal(hs_sched_set_budget(dr.s, 0, budget_w),
					 0);
		assert_int_equal(hs_sched_upper_bound(dr.s, &b), HS_ENOENT);
		achieved = (double)drive(&dr) / 1e9;
		achieved = (double)dr.tokens / achieved;
		assert_int_equal(hs_sched_upper_bound(dr.s, &b), 0);
		assert_true(b > 0);
		/* The bound depends on the fleet and the mix, not on the
		 * policy, but for the calibration that each run's steps
		 * leave in the performance models. */
		if (p == 0)
			bound = b;
		assert_near(b, bound, 1e-3 * bound);
		print_message("policy %-5s budget %4.0f W gap %3.0f ms: "
			      "%7.1f tok/s, bound %7.1f\n",
			      names[p], budget_w, (double)gap_ns / 1e6,
			      achieved, bound);
		assert_true(achieved <= bound);
		if (achieved > best)
			best = achieved;
		hs_sched_free(dr.s);
	}
	assert_true(best > 0.25 * bound);
}

static void test_upper_bound(void **state)
{
	hs_model_catalog_t *cat;
	hs_error_t err;

	assert_int_equal(hs_model_catalog_load(&cat, "data/models.json", &err),
			 0);
	bound_holds(cat, 0, 0);
	bound_holds(cat, 500, 0);
	bound_holds(cat, 0, 50000000);
	bound_holds(cat, 500, 80000000);
	hs_model_catalog_free(cat);
}

/*
 * lp re-plans when what it plans for moves: a steady stream of arrivals
 * settles its observed demand and the plan stays; a budget change, or a
 * new class, makes a new one.
 */
static void test_replan(void **state)
{
	hs_model_catalog_t *cat;
	hs_device_t dev[N_SIM_DEV];
	hs_sched_hooks_t hooks;
	hs_sched_config_t cfg;
	hs_sched_stats_t st;
	struct driver dr;
	hs_error_t err;
	uint64_t settled = 0, epoch;

	assert_int_equal(hs_model_catalog_load(&cat, "data/models.json", &err),
			 0);
	sim_devices(dev);
	driver_init(&dr, &hooks, model_index(cat, "Llama-3.1-8B"), 0);
	hs_sched_config_init(&cfg);
	cfg.policy = "lp";
	assert_int_equal(
		hs_sched_new(&dr.s, &cfg, cat, dev, N_SIM_DEV, &hooks, &err),
		0);
	/* Three jobs a second (one long prompt in three), epochs of 1 s, no
	 * step ever ends: only the demand moves, less and less. */
	for (epoch = 0; epoch < 40; epoch++) {
		int k;

		for (k = 0; k < 3; k++) {
			dr.now = (int64_t)epoch * 1000000000 + k * 333333333;
			submit_next(&dr);
		}
		assert_int_equal(hs_sched_timer(dr.s, dr.now + 400000000), 0);
		if (epoch == 19) {
			hs_sched_stats(dr.s, &st);
			settled = st.replans;
		}
	}
	hs_sched_stats(dr.s, &st);
	assert_true(settled >= 1);
	/* The second half changed nothing worth a plan, but for the one
	 * made every 30 epochs regardless. */
	assert_true(st.replans <= settled + 1);
	settled = st.replans;
	assert_true(st.decisions > st.replans + 40);
	/* A budget is new input; the same budget again is not. */
	assert_int_equal(hs_sched_set_budget(dr.s, dr.now + 500000000, 600), 0);
	hs_sched_stats(dr.s, &st);
	assert_int_equal(st.replans, settled + 1);
	assert_int_equal(hs_sched_set_budget(dr.s, dr.now + 600000000, 600), 0);
	hs_sched_stats(dr.s, &st);
	assert_int_equal(st.replans, settled + 1);
	/* A model not seen before is a new class. */
	dr.model = model_index(cat, "Qwen2.5-7B");
	dr.now += 700000000;
	submit_next(&dr);
	assert_int_equal(hs_sched_timer(dr.s, dr.now + 1000000000), 0);
	hs_sched_stats(dr.s, &st);
	assert_int_equal(st.replans, settled + 2);
	hs_sched_free(dr.s);
	hs_model_catalog_free(cat);
}

/* Budgets the bound answers without running anything. */
static void test_upper_bound_budget(void **state)
{
	double full, capped, idle;
	hs_model_catalog_t *cat;
	hs_device_t dev[N_SIM_DEV];
	hs_sched_hooks_t hooks;
	hs_sched_config_t cfg;
	struct driver dr;
	hs_error_t err;

	assert_int_equal(hs_model_catalog_load(&cat, "data/models.json", &err),
			 0);
	sim_devices(dev);
	driver_init(&dr, &hooks, model_index(cat, "Llama-3.1-8B"), 0);
	hs_sched_config_init(&cfg);
	assert_int_equal(
		hs_sched_new(&dr.s, &cfg, cat, dev, N_SIM_DEV, &hooks, &err),
		0);
	submit_next(&dr);
	assert_int_equal(hs_sched_upper_bound(dr.s, &full), 0);
	assert_int_equal(hs_sched_set_budget(dr.s, 0, 600), 0);
	assert_int_equal(hs_sched_upper_bound(dr.s, &capped), 0);
	assert_true(capped > 0 && capped < full);
	/* The idle draws (130 W) and nothing more: nothing runs. */
	assert_int_equal(hs_sched_set_budget(dr.s, 0, 130), 0);
	assert_int_equal(hs_sched_upper_bound(dr.s, &idle), 0);
	assert_near(idle, 0, 1e-9);
	assert_int_equal(hs_sched_set_budget(dr.s, 0, 129), 0);
	assert_int_equal(hs_sched_upper_bound(dr.s, &idle), HS_EINFEASIBLE);
	hs_sched_free(dr.s);
	hs_model_catalog_free(cat);
}

static uint64_t rng_state;

static double unif(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return (double)((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
}

/* A random fleet of up to MAX_C classes, MAX_D devices and 3 levels, with
 * or without a budget, a demand and a mix. */
static void random_fleet(struct fleet *f)
{
	unsigned c, d, l, nc = 1 + (unsigned)(unif() * MAX_C),
			  nd = 1 + (unsigned)(unif() * MAX_D);
	double idle_sum = 0, max_sum = 0, cap, any = 0;

	fleet_init(f, nc, nd);
	for (d = 0; d < nd; d++) {
		f->n_levels[d] = 1 + (unsigned)(unif() * 3);
		f->idle_w[d] = 100 * unif();
		cap = f->idle_w[d] + 50 + 600 * unif();
		idle_sum += f->idle_w[d];
		max_sum += cap;
		for (l = 0; l < f->n_levels[d]; l++) {
			f->cap_w[d * HS_MAX_POWER_LEVELS + l] = cap;
			for (c = 0; c < nc; c++)
				if (unif() > 0.2)
					set_rate(f, c, d, l,
						 (10 + 990 * unif()) *
							 (1 - 0.25 * l));
			cap = f->idle_w[d] + (cap - f->idle_w[d]) * 0.7;
		}
	}
	if (unif() < 0.67)
		f->p.budget_w = idle_sum + (max_sum - idle_sum) * 1.2 * unif();
	if (unif() < 0.5) {
		for (c = 0; c < nc; c++)
			f->demand[c] = unif() < 0.2 ? -1 : 2000 * unif();
		f->p.demand = f->demand;
	}
	if (unif() < 0.5) {
		for (c = 0; c < nc; c++) {
			f->mix[c] = unif() < 0.3 ? 0 : unif();
			any += f->mix[c];
		}
		if (any == 0)
			f->mix[0] = 1;
		f->p.mix = f->mix;
	}
}

/*
 * Random problems: every solution keeps every constraint, and, without a
 * mix, is worth at least the best single variable pushed as far as the
 * constraints let it go.
 */
static void test_random_problems(void **state)
{
	int i;

	rng_state = 42;
	for (i = 0; i < 2000; i++) {
		double made[MAX_C] = {0}, time, power = 0, mix_sum = 0;
		double idle_sum = 0, alone, x, r, w, best = 0, tol;
		unsigned c, d, l;
		struct fleet f;

		random_fleet(&f);
		assert_int_equal(solve(&f), 0);
		tol = 1e-6 * (1 + f.sol.tokens_per_s);
		for (d = 0; d < f.p.n_devices; d++)
			idle_sum += f.idle_w[d];
		power = idle_sum;
		for (d = 0; d < f.p.n_devices; d++) {
			time = 0;
			for (c = 0; c < f.p.n_classes; c++) {
				for (l = 0; l < f.n_levels[d]; l++) {
					x = x_of(&f, c, d, l);
					r = f.rate[hs__lp_index(&f.p, c, d, l)];
					w = f.cap_w[d * HS_MAX_POWER_LEVELS +
						    l] -
					    f.idle_w[d];
					alone = idle_sum + w;
					assert_true(x >= 0 && x <= 1);
					if (r == 0 ||
					    (f.p.budget_w > 0 &&
					     alone > f.p.budget_w * (1 + 1e-9)))
						assert_true(x == 0);
					time += x;
					made[c] += x * r;
					power += x * w;
				}
			}
			assert_true(time <= 1 + 1e-7);
		}
		assert_near(power, f.sol.power_w, 1e-6 * power);
		if (f.p.budget_w > 0)
			assert_true(power <= f.p.budget_w * (1 + 1e-7));
		for (c = 0; c < f.p.n_classes; c++) {
			if (f.p.demand && f.demand[c] >= 0)
				assert_true(made[c] <= f.demand[c] + tol);
			if (f.p.mix)
				mix_sum += f.mix[c];
		}
		if (f.p.mix) {
			for (c = 0; c < f.p.n_classes; c++)
				assert_true(made[c] >=
					    f.sol.tokens_per_s * f.mix[c] /
							    mix_sum -
						    tol);
			continue;
		}
		for (c = 0, r = 0; c < f.p.n_classes; c++)
			r += made[c];
		assert_near(r, f.sol.tokens_per_s, tol);
		for (c = 0; c < f.p.n_classes; c++) {
			for (d = 0; d < f.p.n_devices; d++) {
				for (l = 0; l < f.n_levels[d]; l++) {
					r = f.rate[hs__lp_index(&f.p, c, d, l)];
					w = f.cap_w[d * HS_MAX_POWER_LEVELS +
						    l] -
					    f.idle_w[d];
					if (r == 0)
						continue;
					if (f.p.budget_w > 0 &&
					    idle_sum + w > f.p.budget_w)
						continue;
					x = 1;
					if (f.p.budget_w > 0 && w > 0)
						x = fmin(x, (f.p.budget_w -
							     idle_sum) /
								    w);
					if (f.p.demand && f.demand[c] >= 0)
						x = fmin(x, f.demand[c] / r);
					best = fmax(best, x * r);
				}
			}
		}
		assert_true(f.sol.tokens_per_s >= best - tol);
	}
}

/* Every allocation that fails is reported and leaks nothing. */
static void test_alloc_failures(void **state)
{
	struct fleet f;
	long n;
	int rc;

	for (n = 0;; n++) {
		mixed_fleet(&f);
		f.mix[0] = f.mix[1] = 0.5;
		f.p.mix = f.mix;
		f.p.budget_w = 150;
		hs_test_alloc_install(n);
		rc = solve(&f);
		hs_test_alloc_uninstall();
		assert_int_equal(hs_test_alloc_live(), 0);
		if (rc == 0)
			break;
		assert_int_equal(rc, HS_ENOMEM);
	}
	assert_true(n > 0);
	assert_near(f.sol.tokens_per_s, 100, EPS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_budget),
		cmocka_unit_test(test_budget),
		cmocka_unit_test(test_levels),
		cmocka_unit_test(test_levels_shared),
		cmocka_unit_test(test_demand),
		cmocka_unit_test(test_mix),
		cmocka_unit_test(test_mix_spare),
		cmocka_unit_test(test_mix_unservable),
		cmocka_unit_test(test_infeasible),
		cmocka_unit_test(test_nothing_runs),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_constraints_hold),
		cmocka_unit_test(test_random_problems),
		cmocka_unit_test(test_alloc_failures),
		cmocka_unit_test(test_upper_bound),
		cmocka_unit_test(test_upper_bound_budget),
		cmocka_unit_test(test_replan),
	};

	return cmocka_run_group_tests_name("lp", tests, NULL, NULL);
}
