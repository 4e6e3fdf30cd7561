/*
 * The figures of a benchmark as JSON, as the comparison table people read,
 * and as a report directory: report.json, report.md and report.html (the
 * page and its charts are in report-html.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "report.h"

void hs_bench_report_release(hs_bench_report_t *rep)
{
	size_t i;

	if (!rep)
		return;
	for (i = 0; i < rep->n_runs; i++) {
		hs__free(rep->runs[i].devices);
		hs__free(rep->runs[i].series);
		hs__free(rep->runs[i].cdf_e2e_ms);
	}
	hs__free(rep->runs);
	rep->runs = NULL;
	rep->n_runs = 0;
}

/* ------------------------------------------------------------------------ */
/* JSON                                                                     */
/* ------------------------------------------------------------------------ */

/*
 * Builders take a bool *bad and carry on after a failed allocation
 * (hs__json_put, hs__json_push): jansson frees a stolen value whatever
 * happens and refuses a NULL one, so the caller can check once, at the
 * end, and drop the whole tree.
 */

/* jansson has no NaN or infinity, and json_real would fail on them as if
 * out of memory. */
static json_t *real(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

/* -1 means none. */
static json_t *real_or_none(double v)
{
	return v < 0 ? json_null() : real(v);
}

/* 0 means none (budgets, limits, SLOs). */
static json_t *positive(double v)
{
	return v > 0 ? real(v) : json_null();
}

static json_t *count(uint64_t v)
{
	return json_integer(v > LLONG_MAX ? LLONG_MAX : (json_int_t)v);
}

/* Paths need not be UTF-8 and JSON strings must be: when jansson refuses
 * one, keep its ASCII part. */
static json_t *str(const char *s)
{
	char ascii[512];
	json_t *v = json_string(s);
	size_t i;

	if (v)
		return v;
	for (i = 0; s[i] && i < sizeof(ascii) - 1; i++)
		ascii[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
	ascii[i] = '\0';
	return json_string(ascii);
}

static json_t *pct_json(const hs_pct_t *p, bool *bad)
{
	json_t *o = json_object();

	hs__json_put(o, "p50", real(p->p50), bad);
	hs__json_put(o, "p90", real(p->p90), bad);
	hs__json_put(o, "p99", real(p->p99), bad);
	hs__json_put(o, "mean", real(p->mean), bad);
	return o;
}

static json_t *inputs_json(const hs_bench_inputs_t *in, bool *bad)
{
	json_t *o = json_object();
	char seed[24];

	hs__json_put(o, "trace", str(in->trace), bad);
	hs__json_put(o, "format", str(in->format), bad);
	hs__json_put(o, "models", str(in->models), bad);
	hs__json_put(o, "fleet", str(in->fleet), bad);
	hs__json_put(o, "n_jobs", count(in->n_jobs), bad);
	hs__json_put(o, "n_devices", count(in->n_devices), bad);
	hs__json_put(o, "rate_scale", real(in->rate_scale), bad);
	hs__json_put(o, "power_budget_w", positive(in->power_budget_w), bad);
	hs__json_put(o, "time_limit_s", positive(in->time_limit_s), bad);
	/* A seed is an identity, not a quantity: never clamp it. */
	if (in->seed > LLONG_MAX) {
		snprintf(seed, sizeof(seed), "%" PRIu64, in->seed);
		hs__json_put(o, "seed", json_string(seed), bad);
	} else {
		hs__json_put(o, "seed", count(in->seed), bad);
	}
	hs__json_put(o, "slo_ttft_ms", positive(in->slo_ttft_ms), bad);
	hs__json_put(o, "slo_tpot_ms", positive(in->slo_tpot_ms), bad);
	hs__json_put(o, "offered_output_tokens_per_s",
		     real(in->offered_output_tokens_per_s), bad);
	hs__json_put(o, "version", str(in->version), bad);
	return o;
}

static json_t *devices_json(const hs_run_fig_t *r, bool *bad)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; i < r->n_devices; i++) {
		const hs_device_fig_t *d = &r->devices[i];
		json_t *o = json_object();

		hs__json_put(o, "name", str(d->name), bad);
		hs__json_put(o, "profile", str(d->profile), bad);
		hs__json_put(o, "utilisation", real(d->utilisation), bad);
		hs__json_put(o, "energy_j", real(d->energy_j), bad);
		hs__json_put(o, "output_tokens", count(d->output_tokens), bad);
		hs__json_put(o, "failed", json_boolean(d->failed), bad);
		hs__json_push(a, o, bad);
	}
	return a;
}

static json_t *series_json(const hs_run_fig_t *r, bool *bad)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; i < r->n_series; i++) {
		const hs_series_pt_t *p = &r->series[i];
		json_t *o = json_object();

		hs__json_put(o, "t_s", real(p->t_s), bad);
		hs__json_put(o, "power_avg_w", real(p->power_avg_w), bad);
		hs__json_put(o, "power_max_w", real(p->power_max_w), bad);
		hs__json_put(o, "budget_w", positive(p->budget_w), bad);
		hs__json_put(o, "tokens_per_s", real(p->tokens_per_s), bad);
		hs__json_push(a, o, bad);
	}
	return a;
}

static json_t *cdf_json(const hs_run_fig_t *r, bool *bad)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; i < r->n_cdf; i++)
		hs__json_push(a, real(r->cdf_e2e_ms[i]), bad);
	return a;
}

static json_t *run_json(const hs_run_fig_t *r, bool with_series, bool *bad)
{
	json_t *o = json_object();
	json_t *jobs = json_object();
	json_t *power = json_object();

	hs__json_put(o, "policy", str(r->policy), bad);
	hs__json_put(jobs, "submitted", count(r->submitted), bad);
	hs__json_put(jobs, "completed", count(r->completed), bad);
	hs__json_put(jobs, "refused", count(r->refused), bad);
	hs__json_put(jobs, "failed", count(r->failed), bad);
	hs__json_put(o, "jobs", jobs, bad);
	hs__json_put(o, "duration_s", real(r->duration_s), bad);
	hs__json_put(o, "output_tokens_per_s", real(r->output_tokens_per_s),
		     bad);
	hs__json_put(o, "total_tokens_per_s", real(r->total_tokens_per_s), bad);
	hs__json_put(o, "requests_per_s", real(r->requests_per_s), bad);
	hs__json_put(o, "ttft_ms", pct_json(&r->ttft_ms, bad), bad);
	hs__json_put(o, "tpot_ms", pct_json(&r->tpot_ms, bad), bad);
	hs__json_put(o, "e2e_ms", pct_json(&r->e2e_ms, bad), bad);
	hs__json_put(o, "queue_ms", pct_json(&r->queue_ms, bad), bad);
	hs__json_put(o, "slo_attainment", real_or_none(r->slo_attainment), bad);
	hs__json_put(o, "energy_j", real(r->energy_j), bad);
	hs__json_put(o, "joules_per_output_token",
		     real(r->joules_per_output_token), bad);
	hs__json_put(o, "energy_modeled", json_boolean(r->energy_modeled), bad);
	hs__json_put(power, "budget", positive(r->budget_w), bad);
	hs__json_put(power, "avg", real(r->power_avg_w), bad);
	hs__json_put(power, "peak", real(r->power_peak_w), bad);
	hs__json_put(o, "power_w", power, bad);
	hs__json_put(o, "power_violations", count(r->power_violations), bad);
	hs__json_put(o, "max_violation_w", real(r->max_violation_w), bad);
	hs__json_put(o, "lp_bound_fraction", real_or_none(r->lp_bound_fraction),
		     bad);
	hs__json_put(o, "sched_ns_per_decision", real(r->sched_ns_per_decision),
		     bad);
	hs__json_put(o, "decisions", count(r->decisions), bad);
	hs__json_put(o, "replans", count(r->replans), bad);
	hs__json_put(o, "perf_mean_rel_error", real(r->perf_mean_rel_error),
		     bad);
	hs__json_put(o, "perf_calibrated_error", real(r->perf_calibrated_error),
		     bad);
	hs__json_put(o, "power_waits", count(r->power_waits), bad);
	hs__json_put(o, "paused", count(r->paused), bad);
	hs__json_put(o, "devices", devices_json(r, bad), bad);
	if (with_series) {
		hs__json_put(o, "series", series_json(r, bad), bad);
		hs__json_put(o, "cdf_e2e_ms", cdf_json(r, bad), bad);
	}
	return o;
}

json_t *hs_bench_report_json(const hs_bench_report_t *rep, bool with_series)
{
	json_t *root = json_object();
	json_t *runs = json_array();
	bool bad = false;
	size_t i;

	hs__json_put(root, "inputs", inputs_json(&rep->in, &bad), &bad);
	hs__json_put(root, "upper_bound_tokens_per_s",
		     real_or_none(rep->upper_bound_tokens_per_s), &bad);
	for (i = 0; i < rep->n_runs; i++)
		hs__json_push(runs, run_json(&rep->runs[i], with_series, &bad),
			      &bad);
	hs__json_put(root, "runs", runs, &bad);
	if (bad) {
		json_decref(root);
		return NULL;
	}
	return root;
}

/* ------------------------------------------------------------------------ */
/* The comparison table                                                     */
/* ------------------------------------------------------------------------ */

enum {
	COL_POLICY,
	COL_DONE,
	COL_OUT_TPS,
	COL_REQ_S,
	COL_TTFT,
	COL_TPOT,
	COL_E2E,
	COL_JTOK,
	COL_AVG_W,
	COL_PEAK_W,
	COL_VIOL,
	COL_BOUND,
	COL_NSDEC,
	N_COLS
};

_Static_assert(N_COLS == HS__REPORT_NCOLS, "report.h disagrees");

static const struct {
	const char *head;
	int better; /* +1 higher is better, -1 lower, 0 neither */
} cols[N_COLS] = {
	[COL_POLICY] = {"POLICY", 0},
	[COL_DONE] = {"DONE/SUBMITTED", +1},
	[COL_OUT_TPS] = {"OUT TOK/S", +1},
	[COL_REQ_S] = {"REQ/S", +1},
	[COL_TTFT] = {"TTFT p50/p99 (ms)", -1},
	[COL_TPOT] = {"TPOT p50 (ms)", -1},
	[COL_E2E] = {"E2E p99 (s)", -1},
	[COL_JTOK] = {"J/TOK", -1},
	/* Drawing less power is not better in itself: the budget and its
	 * violations say whether it was too much. */
	[COL_AVG_W] = {"AVG W", 0},
	[COL_PEAK_W] = {"PEAK W", 0},
	[COL_VIOL] = {"VIOL", -1},
	[COL_BOUND] = {"%BOUND", +1},
	[COL_NSDEC] = {"NS/DEC", -1},
};

void hs__report_num(double v, char *buf, size_t size)
{
	double a = fabs(v);

	if (!isfinite(v))
		snprintf(buf, size, "-");
	else if (a >= 100 || v == 0)
		snprintf(buf, size, "%.0f", v);
	else if (a >= 10)
		snprintf(buf, size, "%.1f", v);
	else if (a >= 1)
		snprintf(buf, size, "%.2f", v);
	else if (a >= 0.01)
		snprintf(buf, size, "%.3f", v);
	else
		snprintf(buf, size, "%.2g", v);
}

/* The value a column is ranked by; NaN where the run has none (latencies
 * of a run that completed nothing mean nothing). */
static double col_key(const hs_run_fig_t *r, unsigned col)
{
	bool lat = r->completed > 0;

	switch (col) {
	case COL_DONE:
		return r->submitted ? (double)r->completed / r->submitted : NAN;
	case COL_OUT_TPS:
		return r->output_tokens_per_s;
	case COL_REQ_S:
		return r->requests_per_s;
	case COL_TTFT:
		return lat ? r->ttft_ms.p99 : NAN;
	case COL_TPOT:
		return lat ? r->tpot_ms.p50 : NAN;
	case COL_E2E:
		return lat ? r->e2e_ms.p99 / 1000 : NAN;
	case COL_JTOK:
		return r->joules_per_output_token > 0
			       ? r->joules_per_output_token
			       : NAN;
	case COL_AVG_W:
		return r->power_avg_w;
	case COL_PEAK_W:
		return r->power_peak_w;
	case COL_VIOL:
		return (double)r->power_violations;
	case COL_BOUND:
		return r->lp_bound_fraction >= 0 ? r->lp_bound_fraction : NAN;
	case COL_NSDEC:
		return r->decisions ? r->sched_ns_per_decision : NAN;
	}
	return NAN;
}

/* Best only where there is a choice: two runs or more, not all equal. */
static bool col_best(const hs_bench_report_t *rep, const hs_run_fig_t *run,
		     unsigned col)
{
	double v = col_key(run, col), best = NAN;
	size_t i, n = 0;
	bool differ = false;

	if (!cols[col].better || !isfinite(v))
		return false;
	for (i = 0; i < rep->n_runs; i++) {
		double k = col_key(&rep->runs[i], col);

		if (!isfinite(k))
			continue;
		if (n++ && k != best)
			differ = true;
		if (n == 1 || (cols[col].better > 0 ? k > best : k < best))
			best = k;
	}
	return n > 1 && differ && v == best;
}

bool hs__report_cell(const hs_bench_report_t *rep, const hs_run_fig_t *run,
		     unsigned col, char *buf, size_t size)
{
	char a[32], b[32];
	double k;

	if (col >= N_COLS) {
		snprintf(buf, size, "%s", "");
		return false;
	}
	if (!run) {
		snprintf(buf, size, "%s", cols[col].head);
		return false;
	}
	k = col_key(run, col);
	switch (col) {
	case COL_POLICY:
		snprintf(buf, size, "%s", run->policy);
		break;
	case COL_DONE:
		snprintf(buf, size, "%" PRIu64 "/%" PRIu64, run->completed,
			 run->submitted);
		break;
	case COL_TTFT:
		hs__report_num(isfinite(k) ? run->ttft_ms.p50 : NAN, a,
			       sizeof(a));
		hs__report_num(k, b, sizeof(b));
		snprintf(buf, size, "%s/%s", a, b);
		break;
	case COL_VIOL:
		if (!run->power_violations) {
			snprintf(buf, size, "0");
			break;
		}
		hs__report_num(run->max_violation_w, a, sizeof(a));
		snprintf(buf, size, "%" PRIu64 " (+%s W)",
			 run->power_violations, a);
		break;
	case COL_BOUND:
		if (isfinite(k))
			snprintf(buf, size, "%.1f%%", 100 * k);
		else
			snprintf(buf, size, "-");
		break;
	case COL_NSDEC:
		if (isfinite(k))
			snprintf(buf, size, "%.0f", k);
		else
			snprintf(buf, size, "-");
		break;
	default:
		hs__report_num(k, buf, size);
		break;
	}
	return col_best(rep, run, col);
}

static bool any_modeled(const hs_bench_report_t *rep)
{
	size_t i;

	for (i = 0; i < rep->n_runs; i++)
		if (rep->runs[i].energy_modeled)
			return true;
	return false;
}

static bool any_slo(const hs_bench_report_t *rep)
{
	size_t i;

	for (i = 0; i < rep->n_runs; i++)
		if (rep->runs[i].slo_attainment >= 0)
			return true;
	return false;
}

static void describe_slo(const hs_bench_inputs_t *in, char *buf, size_t size)
{
	char a[32], b[32];

	hs__report_num(in->slo_ttft_ms, a, sizeof(a));
	hs__report_num(in->slo_tpot_ms, b, sizeof(b));
	if (in->slo_ttft_ms > 0 && in->slo_tpot_ms > 0)
		snprintf(buf, size, "TTFT <= %s ms, TPOT <= %s ms", a, b);
	else if (in->slo_ttft_ms > 0)
		snprintf(buf, size, "TTFT <= %s ms", a);
	else if (in->slo_tpot_ms > 0)
		snprintf(buf, size, "TPOT <= %s ms", b);
	else
		snprintf(buf, size, "none");
}

static void table_header(const hs_bench_report_t *rep, FILE *f)
{
	const hs_bench_inputs_t *in = &rep->in;
	char a[32], b[32], slo[96];

	fprintf(f, "hetsched bench%s%s\n", in->version[0] ? " " : "",
		in->version);
	fprintf(f, "trace   %s%s%s%s\n", in->trace, in->format[0] ? " (" : "",
		in->format, in->format[0] ? ")" : "");
	if (in->models[0])
		fprintf(f, "models  %s\n", in->models);
	hs__report_num(in->offered_output_tokens_per_s, a, sizeof(a));
	hs__report_num(in->rate_scale, b, sizeof(b));
	fprintf(f, "jobs    %zu, offered %s output tok/s, rate x%s\n",
		in->n_jobs, a, b);
	hs__report_num(in->power_budget_w, a, sizeof(a));
	fprintf(f, "fleet   %s, %zu devices, budget %s%s, seed %" PRIu64 "\n",
		in->fleet, in->n_devices, in->power_budget_w > 0 ? a : "none",
		in->power_budget_w > 0 ? " W" : "", in->seed);
	if (in->time_limit_s > 0) {
		hs__report_num(in->time_limit_s, a, sizeof(a));
		fprintf(f, "limit   %s s of simulated time\n", a);
	}
	if (in->slo_ttft_ms > 0 || in->slo_tpot_ms > 0) {
		describe_slo(in, slo, sizeof(slo));
		fprintf(f, "SLO     %s\n", slo);
	}
	if (rep->upper_bound_tokens_per_s >= 0) {
		hs__report_num(rep->upper_bound_tokens_per_s, a, sizeof(a));
		fprintf(f, "bound   %s output tok/s (LP upper bound)\n", a);
	} else {
		fprintf(f, "bound   none\n");
	}
}

/* One row of the aligned table; run NULL: the headings. */
static void table_row(const hs_bench_report_t *rep, const hs_run_fig_t *run,
		      const size_t *width, const bool *marked, FILE *f)
{
	char line[1024], cell[64];
	size_t n = 0;
	unsigned c;
	bool best;

	for (c = 0; c < N_COLS && n < sizeof(line); c++) {
		best = hs__report_cell(rep, run, c, cell, sizeof(cell));
		n += (size_t)snprintf(line + n, sizeof(line) - n,
				      c == COL_POLICY ? "%-*s%s" : "  %*s%s",
				      (int)width[c], cell,
				      marked[c] ? (best ? "*" : " ") : "");
	}
	if (n >= sizeof(line))
		n = sizeof(line) - 1;
	while (n && line[n - 1] == ' ')
		n--;
	line[n] = '\0';
	fprintf(f, "%s\n", line);
}

void hs_bench_report_table(const hs_bench_report_t *rep, FILE *f)
{
	size_t width[N_COLS], i;
	bool marked[N_COLS] = {false}, some = false;
	char cell[64], slo[96];
	unsigned c;

	for (c = 0; c < N_COLS; c++) {
		hs__report_cell(rep, NULL, c, cell, sizeof(cell));
		width[c] = strlen(cell);
		for (i = 0; i < rep->n_runs; i++) {
			if (hs__report_cell(rep, &rep->runs[i], c, cell,
					    sizeof(cell)))
				marked[c] = some = true;
			if (strlen(cell) > width[c])
				width[c] = strlen(cell);
		}
	}
	table_header(rep, f);
	fprintf(f, "\n");
	table_row(rep, NULL, width, marked, f);
	for (i = 0; i < rep->n_runs; i++)
		table_row(rep, &rep->runs[i], width, marked, f);
	fprintf(f, "\n");
	if (some)
		fprintf(f, "* best in its column.\n");
	if (rep->upper_bound_tokens_per_s >= 0)
		fprintf(f, "%%BOUND: output tokens/s as a share of the LP "
			   "upper bound (or of the offered load, if lower).\n");
	if (any_modeled(rep))
		fprintf(f, "Energy and power are MODELED from device profiles "
			   "(no sensor).\n");
	if (any_slo(rep)) {
		describe_slo(&rep->in, slo, sizeof(slo));
		if (strcmp(slo, "none"))
			fprintf(f, "SLO attainment (%s):", slo);
		else
			fprintf(f, "SLO attainment:");
		for (i = 0; i < rep->n_runs; i++) {
			const hs_run_fig_t *r = &rep->runs[i];

			if (r->slo_attainment >= 0)
				fprintf(f, " %s %.1f%%%s", r->policy,
					100 * r->slo_attainment,
					i + 1 < rep->n_runs ? "," : "");
		}
		fprintf(f, "\n");
	}
}

/* ------------------------------------------------------------------------ */
/* report.md                                                                */
/* ------------------------------------------------------------------------ */

/* What comes from the user (paths, model and device names) must neither
 * format nor break a table row. */
static void md_esc(hs__strbuf_t *sb, const char *s)
{
	size_t n;

	while (*s) {
		n = strcspn(s, "\\`*_[]<>|&~#!\n\r\t");
		if (n)
			hs__strbuf_addf(sb, "%.*s", (int)n, s);
		s += n;
		if (!*s)
			break;
		if (*s == '\n' || *s == '\r' || *s == '\t')
			hs__strbuf_add(sb, " ");
		else
			hs__strbuf_addf(sb, "\\%c", *s);
		s++;
	}
}

static void md_num(hs__strbuf_t *sb, double v)
{
	char buf[32];

	hs__report_num(v, buf, sizeof(buf));
	hs__strbuf_add(sb, buf);
}

static void md_item(hs__strbuf_t *sb, const char *label, const char *value)
{
	hs__strbuf_addf(sb, "- **%s:** ", label);
	md_esc(sb, value);
	hs__strbuf_add(sb, "\n");
}

static void md_inputs(const hs_bench_report_t *rep, hs__strbuf_t *sb)
{
	const hs_bench_inputs_t *in = &rep->in;
	char buf[96], a[32];

	hs__strbuf_add(sb, "## Inputs\n\n");
	hs__strbuf_add(sb, "- **Trace:** ");
	md_esc(sb, in->trace);
	if (in->format[0]) {
		hs__strbuf_add(sb, " (");
		md_esc(sb, in->format);
		hs__strbuf_add(sb, ")");
	}
	hs__strbuf_add(sb, "\n");
	md_item(sb, "Models", in->models[0] ? in->models : "from the trace");
	hs__strbuf_add(sb, "- **Fleet:** ");
	md_esc(sb, in->fleet);
	hs__strbuf_addf(sb, " (%zu devices)\n", in->n_devices);
	hs__strbuf_addf(sb, "- **Jobs:** %zu, offered ", in->n_jobs);
	md_num(sb, in->offered_output_tokens_per_s);
	hs__strbuf_add(sb, " output tokens/s\n- **Rate scale:** ");
	md_num(sb, in->rate_scale);
	hs__strbuf_add(sb, "\n- **Power budget:** ");
	if (in->power_budget_w > 0) {
		md_num(sb, in->power_budget_w);
		hs__strbuf_add(sb, " W");
	} else {
		hs__strbuf_add(sb, "none");
	}
	hs__strbuf_add(sb, "\n- **Time limit:** ");
	if (in->time_limit_s > 0) {
		md_num(sb, in->time_limit_s);
		hs__strbuf_add(sb, " s");
	} else {
		hs__strbuf_add(sb, "none");
	}
	hs__strbuf_addf(sb, "\n- **Seed:** %" PRIu64 "\n", in->seed);
	describe_slo(in, buf, sizeof(buf));
	md_item(sb, "SLO", buf);
	if (rep->upper_bound_tokens_per_s >= 0) {
		hs__report_num(rep->upper_bound_tokens_per_s, a, sizeof(a));
		snprintf(buf, sizeof(buf), "%s output tokens/s", a);
	} else {
		snprintf(buf, sizeof(buf), "none");
	}
	md_item(sb, "Upper bound (LP)", buf);
	md_item(sb, "Version", in->version[0] ? in->version : "unknown");
	hs__strbuf_add(sb, "\n");
}

static void md_comparison(const hs_bench_report_t *rep, hs__strbuf_t *sb)
{
	char cell[64], slo[96];
	unsigned c;
	size_t i;
	bool best;

	hs__strbuf_add(sb, "## Comparison\n\n|");
	for (c = 0; c < N_COLS; c++) {
		hs__report_cell(rep, NULL, c, cell, sizeof(cell));
		hs__strbuf_addf(sb, " %s |", cell);
	}
	hs__strbuf_add(sb, "\n|");
	for (c = 0; c < N_COLS; c++)
		hs__strbuf_add(sb, c == COL_POLICY ? ":---|" : "---:|");
	hs__strbuf_add(sb, "\n");
	for (i = 0; i < rep->n_runs; i++) {
		hs__strbuf_add(sb, "|");
		for (c = 0; c < N_COLS; c++) {
			best = hs__report_cell(rep, &rep->runs[i], c, cell,
					       sizeof(cell));
			hs__strbuf_add(sb, best ? " **" : " ");
			md_esc(sb, cell);
			hs__strbuf_add(sb, best ? "** |" : " |");
		}
		hs__strbuf_add(sb, "\n");
	}
	hs__strbuf_add(sb, "\nBest value per column in **bold**. ");
	if (rep->upper_bound_tokens_per_s >= 0)
		hs__strbuf_add(sb, "%BOUND: output tokens/s as a share of the "
				   "LP upper bound (or of the offered load, "
				   "if lower). ");
	hs__strbuf_add(sb, "VIOL: power budget overshoots (largest).\n");
	if (any_modeled(rep))
		hs__strbuf_add(sb, "\n> **Energy and power are modeled** from "
				   "device profiles: no power sensor was "
				   "read.\n");
	if (any_slo(rep)) {
		describe_slo(&rep->in, slo, sizeof(slo));
		hs__strbuf_add(sb, "\nSLO attainment");
		if (strcmp(slo, "none")) {
			hs__strbuf_add(sb, " (");
			md_esc(sb, slo);
			hs__strbuf_add(sb, ")");
		}
		hs__strbuf_add(sb, ":");
		for (i = 0; i < rep->n_runs; i++) {
			const hs_run_fig_t *r = &rep->runs[i];

			if (r->slo_attainment < 0)
				continue;
			hs__strbuf_add(sb, " ");
			md_esc(sb, r->policy);
			hs__strbuf_addf(sb, " %.1f%%%s",
					100 * r->slo_attainment,
					i + 1 < rep->n_runs ? "," : "");
		}
		hs__strbuf_add(sb, "\n");
	}
	hs__strbuf_add(sb, "\n");
}

static void md_pct(hs__strbuf_t *sb, const hs_pct_t *p, bool have)
{
	hs__strbuf_add(sb, " | ");
	md_num(sb, have ? p->p50 : NAN);
	hs__strbuf_add(sb, " | ");
	md_num(sb, have ? p->p90 : NAN);
	hs__strbuf_add(sb, " | ");
	md_num(sb, have ? p->p99 : NAN);
}

static void md_runs(const hs_bench_report_t *rep, hs__strbuf_t *sb)
{
	size_t i;

	hs__strbuf_add(sb,
		       "## Runs\n\n"
		       "| Policy | Submitted | Completed | Refused | Failed "
		       "| Duration (s) | Output tok/s | Total tok/s | Req/s "
		       "| Decisions | ns/decision | Perf model error |\n"
		       "|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:"
		       "|---:|---:|\n");
	for (i = 0; i < rep->n_runs; i++) {
		const hs_run_fig_t *r = &rep->runs[i];

		hs__strbuf_add(sb, "| ");
		md_esc(sb, r->policy);
		hs__strbuf_addf(sb,
				" | %" PRIu64 " | %" PRIu64 " | %" PRIu64
				" | %" PRIu64 " | ",
				r->submitted, r->completed, r->refused,
				r->failed);
		md_num(sb, r->duration_s);
		hs__strbuf_add(sb, " | ");
		md_num(sb, r->output_tokens_per_s);
		hs__strbuf_add(sb, " | ");
		md_num(sb, r->total_tokens_per_s);
		hs__strbuf_add(sb, " | ");
		md_num(sb, r->requests_per_s);
		hs__strbuf_addf(sb, " | %" PRIu64 " | %.0f | %.1f%% |\n",
				r->decisions, r->sched_ns_per_decision,
				100 * r->perf_mean_rel_error);
	}
	hs__strbuf_add(sb,
		       "\n## Latency (ms)\n\n"
		       "| Policy | TTFT p50 | TTFT p90 | TTFT p99 "
		       "| TPOT p50 | TPOT p90 | TPOT p99 | E2E p50 | E2E p90 "
		       "| E2E p99 | Queue p50 | Queue p90 | Queue p99 |\n"
		       "|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:"
		       "|---:|---:|---:|\n");
	for (i = 0; i < rep->n_runs; i++) {
		const hs_run_fig_t *r = &rep->runs[i];
		bool have = r->completed > 0;

		hs__strbuf_add(sb, "| ");
		md_esc(sb, r->policy);
		md_pct(sb, &r->ttft_ms, have);
		md_pct(sb, &r->tpot_ms, have);
		md_pct(sb, &r->e2e_ms, have);
		md_pct(sb, &r->queue_ms, have);
		hs__strbuf_add(sb, " |\n");
	}
	hs__strbuf_addf(sb,
			"\n## Energy and power%s\n\n"
			"| Policy | Energy (J) | J/output token "
			"| Output tokens/J | Avg W | Peak W | Budget W "
			"| Overshoots | Largest (W) | Power waits "
			"| Paused |\n"
			"|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:"
			"|---:|\n",
			any_modeled(rep) ? " (modeled)" : "");
	for (i = 0; i < rep->n_runs; i++) {
		const hs_run_fig_t *r = &rep->runs[i];
		double jpt = r->joules_per_output_token;

		hs__strbuf_add(sb, "| ");
		md_esc(sb, r->policy);
		hs__strbuf_add(sb, " | ");
		md_num(sb, r->energy_j);
		hs__strbuf_add(sb, " | ");
		md_num(sb, jpt > 0 ? jpt : NAN);
		hs__strbuf_add(sb, " | ");
		md_num(sb, jpt > 0 ? 1 / jpt : NAN);
		hs__strbuf_add(sb, " | ");
		md_num(sb, r->power_avg_w);
		hs__strbuf_add(sb, " | ");
		md_num(sb, r->power_peak_w);
		hs__strbuf_add(sb, " | ");
		md_num(sb, r->budget_w > 0 ? r->budget_w : NAN);
		hs__strbuf_addf(sb, " | %" PRIu64 " | ", r->power_violations);
		md_num(sb, r->power_violations ? r->max_violation_w : NAN);
		hs__strbuf_addf(sb, " | %" PRIu64 " | %" PRIu64 " |\n",
				r->power_waits, r->paused);
	}
	hs__strbuf_add(sb, "\n");
}

static void md_devices(const hs_bench_report_t *rep, hs__strbuf_t *sb)
{
	size_t i, j;

	hs__strbuf_add(sb, "## Devices\n");
	for (i = 0; i < rep->n_runs; i++) {
		const hs_run_fig_t *r = &rep->runs[i];

		hs__strbuf_add(sb, "\n### ");
		md_esc(sb, r->policy);
		hs__strbuf_add(sb, "\n\n| Device | Profile | Utilisation "
				   "| Energy (J) | Output tokens | State |\n"
				   "|:---|:---|---:|---:|---:|:---|\n");
		for (j = 0; j < r->n_devices; j++) {
			const hs_device_fig_t *d = &r->devices[j];

			hs__strbuf_add(sb, "| ");
			md_esc(sb, d->name);
			hs__strbuf_add(sb, " | ");
			md_esc(sb, d->profile);
			hs__strbuf_addf(sb, " | %.1f%% | ",
					100 * d->utilisation);
			md_num(sb, d->energy_j);
			hs__strbuf_addf(sb, " | %" PRIu64 " | %s |\n",
					d->output_tokens,
					d->failed ? "failed" : "ok");
		}
	}
}

static int markdown(const hs_bench_report_t *rep, hs__strbuf_t *sb)
{
	hs__strbuf_add(sb, "# hetsched bench report\n\n");
	md_inputs(rep, sb);
	md_comparison(rep, sb);
	md_runs(rep, sb);
	md_devices(rep, sb);
	return sb->failed ? HS_ENOMEM : 0;
}

/* ------------------------------------------------------------------------ */
/* Writing the directory                                                    */
/* ------------------------------------------------------------------------ */

static int dump_cb(const char *buf, size_t size, void *data)
{
	hs__strbuf_t *sb = data;

	return hs__strbuf_addf(sb, "%.*s", (int)size, buf) ? -1 : 0;
}

static bool is_dir(const char *path)
{
	struct stat st;

	return !stat(path, &st) && S_ISDIR(st.st_mode);
}

static int make_dirs(const char *dir, hs_error_t *err)
{
	char path[PATH_MAX];
	size_t n = strlen(dir), i;
	int e;

	if (!n)
		return hs__error_set(err, HS_EIO, dir, 0, NULL,
				     "no directory given");
	if (n >= sizeof(path))
		return hs__error_set(err, HS_EIO, dir, 0, NULL, "%s",
				     strerror(ENAMETOOLONG));
	memcpy(path, dir, n + 1);
	for (i = 1; i <= n; i++) {
		if ((path[i] != '/' && path[i]) || path[i - 1] == '/')
			continue;
		path[i] = '\0';
		/* mkdir on a read-only file system can fail with EROFS for a
		 * directory that is there. */
		if (mkdir(path, 0755) && errno != EEXIST) {
			e = errno;
			if (!is_dir(path))
				return hs__error_set(err, HS_EIO, path, 0, NULL,
						     "cannot create directory: "
						     "%s",
						     strerror(e));
		}
		path[i] = i < n ? '/' : '\0';
	}
	if (!is_dir(dir))
		return hs__error_set(err, HS_EIO, dir, 0, NULL,
				     "not a directory");
	return 0;
}

/* A reader never sees half a file: it is written beside its name, flushed
 * and renamed over it. */
static int write_file(const char *dir, const char *name, const hs__strbuf_t *sb,
		      hs_error_t *err)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	const char *what = "cannot write";
	size_t done = 0;
	ssize_t w;
	int fd, e;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >=
		    sizeof(path) ||
	    (size_t)snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, name) >=
		    sizeof(tmp))
		return hs__error_set(err, HS_EIO, dir, 0, NULL, "%s",
				     strerror(ENAMETOOLONG));
	fd = mkstemp(tmp);
	if (fd < 0)
		return hs__error_set(err, HS_EIO, path, 0, NULL,
				     "cannot create: %s", strerror(errno));
	while (done < sb->len) {
		w = write(fd, sb->buf + done, sb->len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (!w)
				errno = EIO;
			goto out_close;
		}
		done += (size_t)w;
	}
	/* mkstemp makes it private; a report is for reading. */
	if (fchmod(fd, 0644) || fsync(fd))
		goto out_close;
	e = close(fd);
	if (e)
		goto out_unlink;
	what = "cannot rename into place";
	if (rename(tmp, path))
		goto out_unlink;
	return 0;
out_close:
	e = errno;
	close(fd);
	errno = e;
out_unlink:
	e = errno;
	unlink(tmp);
	return hs__error_set(err, HS_EIO, path, 0, NULL, "%s: %s", what,
			     strerror(e));
}

int hs_bench_report_write(const hs_bench_report_t *rep, const char *dir,
			  hs_error_t *err)
{
	hs__strbuf_t json, md, html;
	json_t *root;
	int rc = HS_ENOMEM;

	hs__error_clear(err);
	hs__strbuf_init(&json);
	hs__strbuf_init(&md);
	hs__strbuf_init(&html);
	/* Everything is built before anything is written, so that running
	 * out of memory leaves the directory as it was. */
	root = hs_bench_report_json(rep, true);
	if (!root)
		goto out_nomem;
	if (json_dump_callback(root, dump_cb, &json, JSON_INDENT(2))) {
		json_decref(root);
		goto out_nomem;
	}
	json_decref(root);
	if (hs__strbuf_add(&json, "\n") || markdown(rep, &md) ||
	    hs__report_html(rep, &html))
		goto out_nomem;

	rc = make_dirs(dir, err);
	if (!rc)
		rc = write_file(dir, "report.json", &json, err);
	if (!rc)
		rc = write_file(dir, "report.md", &md, err);
	if (!rc)
		rc = write_file(dir, "report.html", &html, err);
	goto out_release;
out_nomem:
	hs__error_set(err, HS_ENOMEM, dir, 0, NULL,
		      "out of memory building the report");
out_release:
	hs__strbuf_release(&json);
	hs__strbuf_release(&md);
	hs__strbuf_release(&html);
	return rc;
}
